//! Prompt estimates of real request bodies against token counts computed independently with
//! tiktoken-rs's own message counting (`num_tokens_from_messages`, the OpenAI cookbook's method)
//! and its BPE encoders, for the gpt-4o family, the o-series, the gpt-3.5 / gpt-4 family and
//! embeddings.

use reqwest_throttle::llm::{estimate, Endpoint, TokenCost};
use reqwest_throttle::Dimension;
use serde_json::{json, Value};
use tiktoken_rs::{num_tokens_from_messages, ChatCompletionRequestMessage, FunctionCall};

/// A realistic conversation: system prompt, named user, assistant with a tool call, tool reply,
/// non-ASCII text, code.
fn conversation() -> Value {
    json!([
        {"role": "system", "content": "You are a helpful assistant. Answer in at most three sentences, and cite sources when you can."},
        {"role": "user", "name": "alice_42", "content": "What's the weather like in Zürich today? Also, résumé the forecast for the weekend ☀️."},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Zürich\",\"days\":3}"}}
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"today\":\"sunny, 24°C\",\"sat\":\"rain\",\"sun\":\"cloudy\"}"},
        {"role": "user", "content": "fn main() {\n    println!(\"{}\", (1..=10).map(|x| x * x).sum::<u32>());\n}\nWhat does this print?"}
    ])
}

/// The same conversation as tiktoken-rs's message type.
fn as_tiktoken(messages: &Value) -> Vec<ChatCompletionRequestMessage> {
    messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| ChatCompletionRequestMessage {
            role: m["role"].as_str().unwrap().to_owned(),
            content: m["content"].as_str().map(str::to_owned),
            name: m["name"].as_str().map(str::to_owned),
            tool_calls: m["tool_calls"]
                .as_array()
                .map(|calls| {
                    calls
                        .iter()
                        .map(|c| FunctionCall {
                            name: c["function"]["name"].as_str().unwrap().to_owned(),
                            arguments: c["function"]["arguments"].as_str().unwrap().to_owned(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            ..Default::default()
        })
        .collect()
}

#[test]
fn chat_prompts_match_tiktoken_message_counting_for_each_model_family() {
    let messages = conversation();
    for model in [
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4o-2024-08-06",
        "gpt-4.1",
        "o1",
        "o3-mini",
        "o4-mini",
        "gpt-4",
        "gpt-3.5-turbo",
        "gpt-3.5-turbo-0301",
    ] {
        let body = json!({"model": model, "messages": messages, "max_tokens": 256, "n": 3});
        let ours = estimate(Endpoint::ChatCompletions, body.to_string().as_bytes()).unwrap();
        let theirs = num_tokens_from_messages(model, &as_tiktoken(&messages)).unwrap() as u64;
        assert_eq!(ours.input, theirs, "{model}");
        assert_eq!(ours.output, 256 * 3, "{model}");
    }
    // The two encodings really differ on this text, so the family choice is tested.
    let o200k = num_tokens_from_messages("gpt-4o", &as_tiktoken(&messages)).unwrap();
    let cl100k = num_tokens_from_messages("gpt-4", &as_tiktoken(&messages)).unwrap();
    assert_ne!(o200k, cl100k);
}

#[test]
fn content_parts_count_as_their_text() {
    let model = "gpt-4o-mini";
    let text = "Describe the three primary colours and why they are called primary.";
    let parts = json!({"model": model, "messages": [
        {"role": "user", "content": [{"type": "text", "text": text}]}
    ]});
    let plain = vec![ChatCompletionRequestMessage {
        role: "user".into(),
        content: Some(text.into()),
        ..Default::default()
    }];
    let ours = estimate(Endpoint::ChatCompletions, parts.to_string().as_bytes()).unwrap();
    assert_eq!(
        ours.input,
        num_tokens_from_messages(model, &plain).unwrap() as u64
    );
}

#[test]
fn embeddings_count_each_input_with_the_models_encoding() {
    let inputs = [
        "The quick brown fox jumps over the lazy dog.",
        "Rate limits are quantized: 60 000 requests per minute may be enforced as 1 000 per second.",
        "日本語のテキストもトークンに数えられます。",
    ];
    let cl100k = tiktoken_rs::cl100k_base_singleton();
    let expected: usize = inputs
        .iter()
        .map(|text| cl100k.encode_with_special_tokens(text).len())
        .sum();
    for model in [
        "text-embedding-3-small",
        "text-embedding-3-large",
        "text-embedding-ada-002",
    ] {
        let body = json!({"model": model, "input": inputs});
        let ours = estimate(Endpoint::Embeddings, body.to_string().as_bytes()).unwrap();
        assert_eq!(ours.input, expected as u64, "{model}");
        assert_eq!(ours.output, 0);
    }
    let single = json!({"model": "text-embedding-3-small", "input": inputs[2]});
    let ours = estimate(Endpoint::Embeddings, single.to_string().as_bytes()).unwrap();
    assert_eq!(
        ours.input,
        cl100k.encode_with_special_tokens(inputs[2]).len() as u64
    );
}

#[test]
fn legacy_completions_and_responses_reuse_the_same_counts() {
    let prompt = "Once upon a time, in a land far away,";
    let instruct =
        json!({"model": "gpt-3.5-turbo-instruct", "prompt": prompt, "max_tokens": 50, "n": 2});
    let ours = estimate(Endpoint::Completions, instruct.to_string().as_bytes()).unwrap();
    let cl100k = tiktoken_rs::cl100k_base_singleton();
    assert_eq!(
        ours.input,
        cl100k.encode_with_special_tokens(prompt).len() as u64
    );
    assert_eq!(ours.output, 100);

    // The Responses API: instructions are a system message, a string input a user message.
    let model = "gpt-4o";
    let responses = json!({"model": model, "instructions": "Be brief.", "input": prompt, "max_output_tokens": 64});
    let ours = estimate(Endpoint::Responses, responses.to_string().as_bytes()).unwrap();
    let as_chat = vec![
        ChatCompletionRequestMessage {
            role: "system".into(),
            content: Some("Be brief.".into()),
            ..Default::default()
        },
        ChatCompletionRequestMessage {
            role: "user".into(),
            content: Some(prompt.into()),
            ..Default::default()
        },
    ];
    assert_eq!(
        ours.input,
        num_tokens_from_messages(model, &as_chat).unwrap() as u64
    );
    assert_eq!(ours.output, 64);
}

#[test]
fn the_cost_model_books_estimates_from_the_request() {
    use reqwest_throttle::cost::CostModel;
    let body = json!({"model": "gpt-4o", "max_tokens": 100, "messages": conversation()});
    let request = reqwest::Client::new()
        .post("https://api.openai.com/v1/chat/completions")
        .body(body.to_string())
        .build()
        .unwrap();
    let cost = TokenCost::openai().estimate(&request);
    let prompt = num_tokens_from_messages("gpt-4o", &as_tiktoken(&conversation())).unwrap() as u64;
    assert_eq!(cost.get(Dimension::Requests), 1);
    assert_eq!(cost.get(Dimension::InputTokens), prompt);
    assert_eq!(cost.get(Dimension::Tokens), prompt + 100);
    // Not an LLM endpoint: one request, no tokens.
    let models = reqwest::Client::new()
        .get("https://api.openai.com/v1/models")
        .build()
        .unwrap();
    assert_eq!(
        TokenCost::openai().estimate(&models),
        reqwest_throttle::Cost::requests(1)
    );
}
