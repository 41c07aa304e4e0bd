//! The simulated server as an OpenAI-compatible LLM API (feature `llm`).
//!
//! A POST whose path ends with one of the server's own routes ([`Api::of_path`]:
//! `…/chat/completions`, `…/responses`, `…/completions`, `…/embeddings`, `…/messages`) with a
//! JSON object as its body is an LLM call. It is charged, against the tokens limit, what the
//! server's [`TokenRule`] counts when the request arrives (OpenAI documents that its limiter
//! counts the prompt and the completion allowance then); nothing is given back when the
//! completion turns out shorter. The answer's `usage` reports the prompt by the server's
//! [`UsageRule`], which need not be what its limiter charged.
//!
//! None of this reads the client's code, except [`TokenRule::ScaledEstimate`], which scales the
//! client's estimate on purpose.
//!
//! The completion is deterministic: `1 + (a hash of the request's sequence number) mod
//! allowance` tokens (none for embeddings), so runs are reproducible and the usage varies.
//! The answer has the provider's JSON shape with a `usage` object; with `"stream": true` it is
//! a server-sent event stream whose final chunk carries the usage when
//! `stream_options.include_usage` is set (Responses and Anthropic streams always report it,
//! as those APIs do).

use serde_json::{json, Value};

use super::{TokenRule, UsageRule};

/// The allowance the server books when a chat, Responses or Messages call names no maximum
/// ([`TokenRule::CharsOver4`]): the server's own choice.
const DEFAULT_ALLOWANCE: u64 = 1_024;

/// OpenAI's documented default `max_tokens` of the legacy `/completions` endpoint.
const LEGACY_DEFAULT_ALLOWANCE: u64 = 16;

/// Characters per token of [`TokenRule::CharsOver4`].
const CHARS_PER_TOKEN: u64 = 4;

/// Tokens per message and for the reply in [`UsageRule::Words`].
const WORDS_FRAMING: u64 = 3;

/// The LLM APIs the simulated server answers, by its own routing table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Api {
    Chat,
    Responses,
    Completions,
    Embeddings,
    Messages,
}

/// The server's routes, matched on the end of the path (after any prefix such as `/v1` or an
/// Azure deployment), the longest first so that a chat is not read as a legacy completion.
const ROUTES: [(&str, Api); 5] = [
    ("/chat/completions", Api::Chat),
    ("/completions", Api::Completions),
    ("/responses", Api::Responses),
    ("/embeddings", Api::Embeddings),
    ("/messages", Api::Messages),
];

impl Api {
    /// The API a path (query excluded) routes to, if any.
    pub(crate) fn of_path(path: &str) -> Option<Api> {
        let path = path.trim_end_matches('/');
        ROUTES
            .iter()
            .find(|(route, _)| path.ends_with(route))
            .map(|&(_, api)| api)
    }

    /// The client's name for the same endpoint, for the one rule that scales the client's
    /// estimate on purpose.
    fn client_endpoint(self) -> crate::llm::Endpoint {
        use crate::llm::Endpoint;
        match self {
            Api::Chat => Endpoint::ChatCompletions,
            Api::Responses => Endpoint::Responses,
            Api::Completions => Endpoint::Completions,
            Api::Embeddings => Endpoint::Embeddings,
            Api::Messages => Endpoint::Messages,
        }
    }
}

/// One LLM call as the simulated server sees it.
#[derive(Clone, Debug)]
pub(crate) struct LlmCall {
    api: Api,
    model: String,
    /// Prompt tokens, as the limiter charges them.
    prompt: u64,
    /// Prompt tokens, as the answer's `usage` reports them.
    reported: u64,
    /// Output tokens the limiter charges on arrival.
    allowance: u64,
    /// The longest completion the answer may report.
    longest: u64,
    stream: bool,
    include_usage: bool,
}

/// The tokens an answered call reports.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Generated {
    pub(crate) prompt: u64,
    pub(crate) completion: u64,
}

impl Generated {
    /// Prompt and completion together, as `total_tokens` reports them.
    pub(crate) fn total(&self) -> u64 {
        self.prompt.saturating_add(self.completion)
    }
}

impl LlmCall {
    /// Reads a request and counts its tokens by the server's rules; `None` when it is not an
    /// LLM call.
    pub(crate) fn parse(
        method: &http::Method,
        path: &str,
        body: &[u8],
        rule: TokenRule,
        usage: UsageRule,
    ) -> Option<LlmCall> {
        if method != http::Method::POST {
            return None;
        }
        let path = path.split('?').next().unwrap_or(path);
        let api = Api::of_path(path)?;
        let json: Value = serde_json::from_slice(body).ok()?;
        if !json.is_object() {
            return None;
        }
        let asked = asked_output(api, &json);
        let (prompt, allowance) = match rule {
            TokenRule::CharsOver4 => (chars_over_4(body), asked.unwrap_or(default_allowance(api))),
            TokenRule::CharsOver4FixedOutput(output) => {
                let output = if api == Api::Embeddings { 0 } else { output };
                (chars_over_4(body), output)
            }
            TokenRule::ScaledEstimate(factor) => {
                let estimate = crate::llm::estimate(api.client_endpoint(), body)?;
                let factor = sane_factor(factor);
                let total = scale(estimate.total(), factor);
                let prompt = scale(estimate.input, factor).min(total);
                (prompt, total - prompt)
            }
        };
        let longest = match rule {
            TokenRule::CharsOver4FixedOutput(_) => asked.unwrap_or(allowance),
            _ => allowance,
        };
        let reported = match usage {
            UsageRule::AsCharged => prompt,
            UsageRule::Words => words(&json),
        };
        let model = json
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("sim")
            .to_owned();
        let stream = json.get("stream").and_then(Value::as_bool) == Some(true);
        let include_usage = json
            .get("stream_options")
            .and_then(|options| options.get("include_usage"))
            .and_then(Value::as_bool)
            == Some(true);
        Some(LlmCall {
            api,
            model,
            prompt,
            reported,
            allowance,
            longest,
            stream,
            include_usage,
        })
    }

    /// What the call is charged against the tokens limit when it arrives.
    pub(crate) fn charge(&self) -> u64 {
        self.prompt.saturating_add(self.allowance)
    }

    /// The tokens the answer to the `seq`-th request reports.
    pub(crate) fn generate(&self, seq: u64) -> Generated {
        let completion = match self.longest {
            0 => 0,
            longest => 1 + mix(seq) % longest,
        };
        Generated {
            prompt: self.reported,
            completion,
        }
    }

    /// The answer's content type and body.
    pub(crate) fn render(&self, seq: u64, generated: Generated) -> (&'static str, String) {
        let (p, c, total) = (generated.prompt, generated.completion, generated.total());
        let model = &self.model;
        let text = "Simulated completion.";
        let openai_usage =
            json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": total});
        let io_usage = json!({"input_tokens": p, "output_tokens": c, "total_tokens": total});
        if !self.stream {
            let body = match self.api {
                Api::Chat => json!({
                    "id": format!("chatcmpl-{seq}"), "object": "chat.completion", "created": 0,
                    "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": "stop"}],
                    "usage": openai_usage,
                }),
                Api::Completions => json!({
                    "id": format!("cmpl-{seq}"), "object": "text_completion", "created": 0,
                    "model": model,
                    "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
                    "usage": openai_usage,
                }),
                Api::Embeddings => json!({
                    "object": "list", "model": model,
                    "data": [{"object": "embedding", "index": 0, "embedding": [0.0, 0.0, 0.0]}],
                    "usage": {"prompt_tokens": p, "total_tokens": p},
                }),
                Api::Responses => json!({
                    "id": format!("resp_{seq}"), "object": "response", "status": "completed",
                    "model": model,
                    "output": [{"type": "message", "role": "assistant",
                                "content": [{"type": "output_text", "text": text}]}],
                    "usage": io_usage,
                }),
                _ => json!({
                    "id": format!("msg_{seq}"), "type": "message", "role": "assistant",
                    "model": model, "content": [{"type": "text", "text": text}],
                    "stop_reason": "end_turn",
                    "usage": {"input_tokens": p, "output_tokens": c},
                }),
            };
            return ("application/json", body.to_string());
        }
        let mut events = String::new();
        let mut data = |event: Option<&str>, value: Value| {
            if let Some(event) = event {
                events.push_str("event: ");
                events.push_str(event);
                events.push('\n');
            }
            events.push_str("data: ");
            events.push_str(&value.to_string());
            events.push_str("\n\n");
        };
        match self.api {
            Api::Responses => {
                data(
                    Some("response.created"),
                    json!({"type": "response.created", "response": {"id": format!("resp_{seq}"), "usage": null}}),
                );
                data(
                    Some("response.output_text.delta"),
                    json!({"type": "response.output_text.delta", "delta": text}),
                );
                data(
                    Some("response.completed"),
                    json!({"type": "response.completed", "response": {"id": format!("resp_{seq}"), "status": "completed", "usage": io_usage}}),
                );
            }
            Api::Messages => {
                data(
                    Some("message_start"),
                    json!({"type": "message_start", "message": {"id": format!("msg_{seq}"), "model": model, "usage": {"input_tokens": p, "output_tokens": 1}}}),
                );
                data(
                    Some("content_block_delta"),
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
                );
                data(
                    Some("message_delta"),
                    json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": c}}),
                );
                data(Some("message_stop"), json!({"type": "message_stop"}));
            }
            _ => {
                let chunk = |delta: Value, finish: Value| {
                    let mut chunk = json!({
                        "id": format!("chatcmpl-{seq}"), "object": "chat.completion.chunk",
                        "created": 0, "model": model,
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                    });
                    if self.include_usage {
                        chunk["usage"] = Value::Null;
                    }
                    chunk
                };
                data(
                    None,
                    chunk(json!({"role": "assistant", "content": text}), Value::Null),
                );
                data(None, chunk(json!({}), json!("stop")));
                if self.include_usage {
                    data(
                        None,
                        json!({"id": format!("chatcmpl-{seq}"), "object": "chat.completion.chunk",
                               "created": 0, "model": model, "choices": [], "usage": openai_usage}),
                    );
                }
                events.push_str("data: [DONE]\n\n");
            }
        }
        ("text/event-stream", events)
    }
}

/// ⌈characters of the body / 4⌉, the body read as UTF-8 (an invalid sequence counts as one
/// character).
fn chars_over_4(body: &[u8]) -> u64 {
    let chars = String::from_utf8_lossy(body).chars().count();
    u64::try_from(chars)
        .unwrap_or(u64::MAX)
        .div_ceil(CHARS_PER_TOKEN)
}

/// The output the body asks for, by the server's own reading: the first maximum present × `n`
/// (at least 1); 0 for an embedding; `None` when the body names no maximum.
fn asked_output(api: Api, json: &Value) -> Option<u64> {
    if api == Api::Embeddings {
        return Some(0);
    }
    let maximum = ["max_tokens", "max_completion_tokens", "max_output_tokens"]
        .iter()
        .find_map(|key| json.get(key).and_then(Value::as_u64))?;
    let n = json.get("n").and_then(Value::as_u64).unwrap_or(1).max(1);
    Some(maximum.saturating_mul(n))
}

/// The allowance charged when the body names no maximum.
fn default_allowance(api: Api) -> u64 {
    match api {
        Api::Embeddings => 0,
        Api::Completions => LEGACY_DEFAULT_ALLOWANCE,
        _ => DEFAULT_ALLOWANCE,
    }
}

/// [`UsageRule::Words`]: words and other visible characters of every string value but the
/// model's name, plus the framing of each message and of the reply.
fn words(json: &Value) -> u64 {
    fn count(value: &Value, tokens: &mut u64) {
        match value {
            Value::String(text) => *tokens = tokens.saturating_add(pieces(text)),
            Value::Array(items) => items.iter().for_each(|item| count(item, tokens)),
            Value::Object(fields) => fields.values().for_each(|field| count(field, tokens)),
            _ => {}
        }
    }
    let mut tokens = WORDS_FRAMING;
    if let Some(fields) = json.as_object() {
        for (key, value) in fields {
            if key == "model" {
                continue;
            }
            count(value, &mut tokens);
        }
    }
    let messages = json
        .get("messages")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let framing = u64::try_from(messages)
        .unwrap_or(u64::MAX)
        .saturating_mul(WORDS_FRAMING);
    tokens.saturating_add(framing)
}

/// Runs of letters and digits count one each; every other visible character counts one.
fn pieces(text: &str) -> u64 {
    let mut pieces = 0u64;
    let mut in_word = false;
    for c in text.chars() {
        if c.is_alphanumeric() {
            if !in_word {
                pieces = pieces.saturating_add(1);
            }
            in_word = true;
        } else {
            in_word = false;
            if !c.is_whitespace() {
                pieces = pieces.saturating_add(1);
            }
        }
    }
    pieces
}

/// The factor of [`TokenRule::ScaledEstimate`], made safe to multiply by: within
/// `[0, 1000]`, NaN as 1.
fn sane_factor(factor: f64) -> f64 {
    if factor.is_nan() {
        1.0
    } else {
        factor.clamp(0.0, 1000.0)
    }
}

/// ⌈tokens × factor⌉, saturating (`factor` already sane: finite, non-negative).
fn scale(tokens: u64, factor: f64) -> u64 {
    // Float-to-integer `as` saturates, so no factor can overflow here.
    (tokens as f64 * factor).ceil() as u64
}

/// A 64-bit mix (splitmix64's finaliser): a well-spread, reproducible number per request.
fn mix(seq: u64) -> u64 {
    let mut z = seq.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
