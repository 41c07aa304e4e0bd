//! What a request will cost in tokens, read from its JSON body before it is sent.
//!
//! The count follows the provider's own accounting against its tokens-per-minute limit:
//! **prompt tokens + the completion allowance**, where the allowance is
//! `max_tokens` / `max_completion_tokens` / `max_output_tokens` × `n` (× the number of prompts
//! of a legacy completion, × `best_of` when larger than `n`). OpenAI documents that its limiter
//! counts `max_tokens` when the request arrives, whatever the completion turns out to be.
//!
//! Prompt tokens are counted as OpenAI's cookbook counts chat messages (and as tiktoken-rs's
//! `num_tokens_from_messages` does): 3 tokens of framing per message, the role, the content,
//! the name (+1), each tool or function call's name and arguments (+1), and 3 tokens priming
//! the reply. The other endpoints reuse that framing:
//!
//! | endpoint | prompt | completion allowance when absent |
//! |---|---|---|
//! | `/chat/completions` | `messages` (text parts; an image part [`IMAGE_TOKENS`]), `tools`/`functions` as JSON text | [`DEFAULT_COMPLETION_TOKENS`] × `n` |
//! | `/responses` | `instructions` as a system message, `input` (a string is one user message; items as messages, function calls and outputs) | [`DEFAULT_COMPLETION_TOKENS`] |
//! | `/completions` (legacy) | `prompt`: a string, strings, or token arrays (their length) | 16 (OpenAI's documented default) × `max(n, best_of)` × prompts |
//! | `/embeddings` | `input`: a string, strings, or token arrays | none |
//! | `/messages` (Anthropic) | `system`, `messages` (text, tool use and tool result blocks) | `max_tokens` is required by the API; [`DEFAULT_COMPLETION_TOKENS`] if missing |
//!
//! A body that is not JSON, or a path that is none of these, is priced as one request and no
//! tokens. Token counts use [`count_tokens`](super::count_tokens): exact with the `tiktoken`
//! feature, about four characters per token without.

use serde_json::Value;

use super::tokens::Counter;

/// The completion allowance booked when a chat or Responses request sets no
/// `max_tokens` / `max_completion_tokens` / `max_output_tokens`.
///
/// OpenAI does not document what its limiter counts then; this crate (and its simulated
/// server) counts this allowance, like an explicit `max_tokens: 1024`, and charges the excess
/// if the completion turns out longer. Set `max_tokens` to budget tightly: the booking is what
/// decides how many requests fit in a minute.
pub const DEFAULT_COMPLETION_TOKENS: u64 = 1_024;

/// OpenAI's documented default `max_tokens` of the legacy `/completions` endpoint.
pub const LEGACY_DEFAULT_MAX_TOKENS: u64 = 16;

/// Tokens counted for one image in a chat message: a 512×512 tile at high detail plus the
/// base (85 + 170), OpenAI's documented price of a small image. Large images cost more and are
/// reconciled from `usage`.
pub const IMAGE_TOKENS: u64 = 255;

/// Framing tokens per message, reply priming and per-call overhead (OpenAI cookbook).
const TOKENS_PER_MESSAGE: u64 = 3;
const REPLY_PRIMING: u64 = 3;
const CALL_OVERHEAD: u64 = 1;

/// The LLM endpoint a request path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// `…/chat/completions` (OpenAI, Azure OpenAI and compatible servers).
    ChatCompletions,
    /// `…/responses` (OpenAI's Responses API).
    Responses,
    /// `…/completions` (legacy text completions).
    Completions,
    /// `…/embeddings`.
    Embeddings,
    /// `…/messages` (Anthropic's Messages API).
    Messages,
}

impl Endpoint {
    /// The endpoint of a URL path (query excluded), matched on its last segments so that
    /// `/v1/…`, Azure's `/openai/deployments/NAME/…` and proxies' prefixes all work.
    ///
    /// ```
    /// use reqwest_throttle::llm::Endpoint;
    ///
    /// assert_eq!(Endpoint::from_path("/v1/chat/completions"), Some(Endpoint::ChatCompletions));
    /// assert_eq!(Endpoint::from_path("/openai/deployments/gpt4o/completions"), Some(Endpoint::Completions));
    /// assert_eq!(Endpoint::from_path("/v1/models"), None);
    /// ```
    pub fn from_path(path: &str) -> Option<Endpoint> {
        let path = path.trim_end_matches('/');
        if path.ends_with("/chat/completions") {
            Some(Endpoint::ChatCompletions)
        } else if path.ends_with("/responses") {
            Some(Endpoint::Responses)
        } else if path.ends_with("/completions") {
            Some(Endpoint::Completions)
        } else if path.ends_with("/embeddings") {
            Some(Endpoint::Embeddings)
        } else if path.ends_with("/messages") {
            Some(Endpoint::Messages)
        } else {
            None
        }
    }
}

/// The tokens a request will be charged, before it is sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenEstimate {
    /// The model the body names (`None` when it names none, as with Azure deployments).
    pub model: Option<String>,
    /// Prompt (input) tokens.
    pub input: u64,
    /// The completion (output) allowance: the most the completion may use.
    pub output: u64,
}

impl TokenEstimate {
    /// An estimate of `input` prompt tokens and an `output` allowance, for no named model.
    pub fn new(input: u64, output: u64) -> TokenEstimate {
        TokenEstimate {
            model: None,
            input,
            output,
        }
    }

    /// Input and output together: what counts against a tokens-per-minute limit.
    pub fn total(&self) -> u64 {
        self.input.saturating_add(self.output)
    }
}

/// Estimates the tokens of a request to `endpoint` from its JSON `body`; `None` when the body
/// is not a JSON object.
///
/// ```
/// use reqwest_throttle::llm::{estimate, Endpoint};
///
/// let body = br#"{"model": "gpt-4o-mini", "max_tokens": 100, "n": 2,
///                 "messages": [{"role": "user", "content": "Say hello"}]}"#;
/// let estimate = estimate(Endpoint::ChatCompletions, body).unwrap();
/// assert_eq!(estimate.model.as_deref(), Some("gpt-4o-mini"));
/// assert_eq!(estimate.output, 200); // max_tokens × n
/// assert!(estimate.input > 6); // framing + "user" + "Say hello" + priming
/// ```
pub fn estimate(endpoint: Endpoint, body: &[u8]) -> Option<TokenEstimate> {
    let body: Value = serde_json::from_slice(body).ok()?;
    let body = body.as_object()?;
    let model = body.get("model").and_then(Value::as_str);
    let counter = Counter::for_model(model.unwrap_or(""));
    let count = Count { counter, model };
    let n = body.get("n").and_then(Value::as_u64).unwrap_or(1).max(1);
    let max_of = |keys: &[&str]| keys.iter().find_map(|key| body.get(*key)?.as_u64());
    let (input, output) = match endpoint {
        Endpoint::ChatCompletions => {
            let mut input = REPLY_PRIMING;
            for message in array(body.get("messages")) {
                input = input.saturating_add(count.chat_message(message));
            }
            for key in ["tools", "functions"] {
                if let Some(tools) = body.get(key) {
                    input = input.saturating_add(count.json(tools));
                }
            }
            let max = max_of(&["max_completion_tokens", "max_tokens"])
                .unwrap_or(DEFAULT_COMPLETION_TOKENS);
            (input, max.saturating_mul(n))
        }
        Endpoint::Responses => {
            let mut input = REPLY_PRIMING;
            if let Some(instructions) = body.get("instructions").and_then(Value::as_str) {
                input = input.saturating_add(count.message("system", instructions));
            }
            match body.get("input") {
                Some(Value::String(text)) => {
                    input = input.saturating_add(count.message("user", text));
                }
                other => {
                    for item in array(other) {
                        input = input.saturating_add(count.response_item(item));
                    }
                }
            }
            if let Some(tools) = body.get("tools") {
                input = input.saturating_add(count.json(tools));
            }
            let max = max_of(&["max_output_tokens"]).unwrap_or(DEFAULT_COMPLETION_TOKENS);
            (input, max)
        }
        Endpoint::Completions => {
            let (input, prompts) = count.prompts(body.get("prompt"));
            let choices = body
                .get("best_of")
                .and_then(Value::as_u64)
                .map_or(n, |best_of| best_of.max(n));
            let max = max_of(&["max_tokens"]).unwrap_or(LEGACY_DEFAULT_MAX_TOKENS);
            let output = max.saturating_mul(choices).saturating_mul(prompts.max(1));
            (input, output)
        }
        Endpoint::Embeddings => (count.prompts(body.get("input")).0, 0),
        Endpoint::Messages => {
            let mut input = REPLY_PRIMING;
            if let Some(system) = body.get("system") {
                input = input.saturating_add(TOKENS_PER_MESSAGE);
                input = input.saturating_add(count.content(system));
            }
            for message in array(body.get("messages")) {
                input = input.saturating_add(count.chat_message(message));
            }
            if let Some(tools) = body.get("tools") {
                input = input.saturating_add(count.json(tools));
            }
            let max = max_of(&["max_tokens"]).unwrap_or(DEFAULT_COMPLETION_TOKENS);
            (input, max)
        }
    };
    Some(TokenEstimate {
        model: model.map(str::to_owned),
        input,
        output,
    })
}

/// The elements of a JSON array, or none.
fn array(value: Option<&Value>) -> &[Value] {
    value.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

struct Count<'a> {
    counter: Counter,
    model: Option<&'a str>,
}

impl Count<'_> {
    fn text(&self, text: &str) -> u64 {
        self.counter.count(text)
    }

    fn str_field(&self, value: &Value, key: &str) -> u64 {
        value
            .get(key)
            .and_then(Value::as_str)
            .map_or(0, |text| self.text(text))
    }

    /// A value as the JSON text the server sees (tool schemas, tool inputs).
    fn json(&self, value: &Value) -> u64 {
        match value {
            Value::String(text) => self.text(text),
            other => self.text(&other.to_string()),
        }
    }

    /// A message of `role` with plain text content.
    fn message(&self, role: &str, content: &str) -> u64 {
        TOKENS_PER_MESSAGE + self.text(role) + self.text(content)
    }

    /// The cookbook's per-message count, for chat and Anthropic messages.
    fn chat_message(&self, message: &Value) -> u64 {
        let (per_message, per_name) = if self.model == Some("gpt-3.5-turbo-0301") {
            (4, 0)
        } else {
            (TOKENS_PER_MESSAGE, 1)
        };
        let mut tokens = per_message + self.str_field(message, "role");
        if let Some(content) = message.get("content") {
            tokens += self.content(content);
        }
        if let Some(name) = message.get("name").and_then(Value::as_str) {
            // gpt-3.5-turbo-0301: the name replaces the role (-1), folded into 4 - 1 = 3 above.
            tokens += self.text(name) + per_name;
            if per_name == 0 {
                tokens = tokens.saturating_sub(1);
            }
        }
        if let Some(call) = message.get("function_call") {
            tokens += self.call(call);
        }
        for call in array(message.get("tool_calls")) {
            tokens += self.call(call.get("function").unwrap_or(call));
        }
        tokens += self.str_field(message, "refusal");
        tokens
    }

    fn call(&self, call: &Value) -> u64 {
        self.str_field(call, "name") + self.str_field(call, "arguments") + CALL_OVERHEAD
    }

    /// Message content: a string, or parts (text, images, Anthropic blocks).
    fn content(&self, content: &Value) -> u64 {
        match content {
            Value::String(text) => self.text(text),
            Value::Array(parts) => parts.iter().map(|part| self.part(part)).sum(),
            _ => 0,
        }
    }

    fn part(&self, part: &Value) -> u64 {
        if let Some(text) = part.get("text").and_then(Value::as_str) {
            return self.text(text);
        }
        match part.get("type").and_then(Value::as_str) {
            Some("image_url" | "input_image" | "image") => IMAGE_TOKENS,
            // Anthropic: a tool call's input is JSON; a tool result holds content of its own.
            Some("tool_use") => {
                self.str_field(part, "name") + part.get("input").map_or(0, |i| self.json(i))
            }
            Some("tool_result") => part.get("content").map_or(0, |c| self.content(c)),
            _ => 0,
        }
    }

    /// One item of a Responses API `input` array.
    fn response_item(&self, item: &Value) -> u64 {
        match item.get("type").and_then(Value::as_str) {
            Some("function_call") => self.call(item),
            Some("function_call_output") => {
                TOKENS_PER_MESSAGE + item.get("output").map_or(0, |o| self.json(o))
            }
            _ => self.chat_message(item),
        }
    }

    /// A legacy prompt or embeddings input: its tokens and how many prompts it holds.
    fn prompts(&self, value: Option<&Value>) -> (u64, u64) {
        match value {
            Some(Value::String(text)) => (self.text(text), 1),
            Some(Value::Array(items)) => {
                // An array of integers is one prompt given as token ids.
                if items.iter().all(Value::is_number) {
                    return (items.len() as u64, 1);
                }
                let tokens = items
                    .iter()
                    .map(|item| match item {
                        Value::String(text) => self.text(text),
                        Value::Array(ids) => ids.len() as u64,
                        _ => 0,
                    })
                    .sum();
                (tokens, items.len() as u64)
            }
            _ => (0, 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_allowance_follows_each_endpoints_fields() {
        let chat = estimate(
            Endpoint::ChatCompletions,
            br#"{"model":"o3-mini","max_completion_tokens":300,"max_tokens":5,"messages":[]}"#,
        )
        .unwrap();
        assert_eq!(chat.output, 300);
        let defaulted = estimate(Endpoint::ChatCompletions, br#"{"messages":[]}"#).unwrap();
        assert_eq!(defaulted.output, DEFAULT_COMPLETION_TOKENS);
        assert_eq!(defaulted.input, REPLY_PRIMING);
        let responses = estimate(
            Endpoint::Responses,
            br#"{"model":"gpt-4.1","input":"hi","max_output_tokens":50}"#,
        )
        .unwrap();
        assert_eq!(responses.output, 50);
        let legacy = estimate(
            Endpoint::Completions,
            br#"{"model":"gpt-3.5-turbo-instruct","prompt":["a","b"],"n":2,"best_of":3}"#,
        )
        .unwrap();
        assert_eq!(legacy.output, LEGACY_DEFAULT_MAX_TOKENS * 3 * 2);
        let embeddings = estimate(
            Endpoint::Embeddings,
            br#"{"model":"text-embedding-3-small","input":[[1,2,3],[4,5]]}"#,
        )
        .unwrap();
        assert_eq!((embeddings.input, embeddings.output), (5, 0));
        let ids = estimate(Endpoint::Embeddings, br#"{"input":[1,2,3]}"#).unwrap();
        assert_eq!(ids.input, 3);
    }

    #[test]
    fn hostile_bodies_estimate_nothing_or_saturate() {
        assert_eq!(estimate(Endpoint::ChatCompletions, b"not json"), None);
        assert_eq!(estimate(Endpoint::ChatCompletions, b"[1,2]"), None);
        let huge = estimate(
            Endpoint::Completions,
            br#"{"max_tokens":18446744073709551615,"n":18446744073709551615,"prompt":"x"}"#,
        )
        .unwrap();
        assert_eq!(huge.output, u64::MAX);
        assert_eq!(huge.total(), u64::MAX);
        let odd = estimate(
            Endpoint::ChatCompletions,
            br#"{"messages":[{"role":5,"content":{"x":1}},"nope",null],"n":-3,"max_tokens":"many"}"#,
        )
        .unwrap();
        assert_eq!(odd.output, DEFAULT_COMPLETION_TOKENS);
    }

    #[test]
    fn images_and_tool_calls_are_counted() {
        let with_image = estimate(
            Endpoint::ChatCompletions,
            br#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:"}}]}]}"#,
        )
        .unwrap();
        let without = estimate(
            Endpoint::ChatCompletions,
            br#"{"messages":[{"role":"user","content":[]}]}"#,
        )
        .unwrap();
        assert_eq!(with_image.input - without.input, IMAGE_TOKENS);
        let call = estimate(
            Endpoint::ChatCompletions,
            br#"{"messages":[{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]}]}"#,
        )
        .unwrap();
        let empty = estimate(
            Endpoint::ChatCompletions,
            br#"{"messages":[{"role":"assistant"}]}"#,
        )
        .unwrap();
        assert!(call.input >= empty.input + CALL_OVERHEAD + 2);
    }
}
