//! The simulated server as an OpenAI-compatible LLM API (feature `llm`).
//!
//! A POST to `…/chat/completions`, `…/responses`, `…/completions`, `…/embeddings` or
//! `…/messages` with a JSON body is an LLM call. It is charged, against the tokens limit, what
//! OpenAI documents its limiter counts when the request arrives: the prompt tokens plus the
//! completion allowance, both counted by the configured [`TokenRule`]. Nothing is given back
//! when the completion turns out shorter.
//!
//! The completion is deterministic: `1 + (a hash of the request's sequence number) mod
//! allowance` tokens (none for embeddings), so runs are reproducible and the usage varies.
//! The answer has the provider's JSON shape with a `usage` object; with `"stream": true` it is
//! a server-sent event stream whose final chunk carries the usage when
//! `stream_options.include_usage` is set (Responses and Anthropic streams always report it,
//! as those APIs do).

use serde_json::{json, Value};

use super::TokenRule;
use crate::llm::{estimate, Endpoint};

/// The allowance the server books when a chat, Responses or Messages call names no maximum
/// ([`TokenRule::CharsOver4`]). The server's own choice; it happens to equal the client's
/// `DEFAULT_COMPLETION_TOKENS`, which a test of the allowance can vary with an explicit
/// `max_tokens`.
const DEFAULT_ALLOWANCE: u64 = 1_024;

/// OpenAI's documented default `max_tokens` of the legacy `/completions` endpoint.
const LEGACY_DEFAULT_ALLOWANCE: u64 = 16;

/// Characters per token of [`TokenRule::CharsOver4`].
const CHARS_PER_TOKEN: u64 = 4;

/// One LLM call as the simulated server sees it.
#[derive(Clone, Debug)]
pub(crate) struct LlmCall {
    endpoint: Endpoint,
    model: String,
    prompt: u64,
    allowance: u64,
    stream: bool,
    include_usage: bool,
}

/// The tokens an answered call reports.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Generated {
    pub(crate) prompt: u64,
    pub(crate) completion: u64,
}

impl LlmCall {
    /// Reads a request and counts its tokens by `rule`; `None` when it is not an LLM call.
    pub(crate) fn parse(
        method: &http::Method,
        path: &str,
        body: &[u8],
        rule: TokenRule,
    ) -> Option<LlmCall> {
        if method != http::Method::POST {
            return None;
        }
        let path = path.split('?').next().unwrap_or(path);
        let endpoint = Endpoint::from_path(path)?;
        let json: Value = serde_json::from_slice(body).ok()?;
        if !json.is_object() {
            return None;
        }
        let (prompt, allowance) = match rule {
            TokenRule::ClientEstimate => {
                let estimate = estimate(endpoint, body)?;
                (estimate.input, estimate.output)
            }
            TokenRule::CharsOver4 => (chars_over_4(body), allowance(endpoint, &json)),
            TokenRule::ScaledEstimate(factor) => {
                let estimate = estimate(endpoint, body)?;
                let factor = sane_factor(factor);
                let total = scale(estimate.total(), factor);
                let prompt = scale(estimate.input, factor).min(total);
                (prompt, total - prompt)
            }
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
            endpoint,
            model,
            prompt,
            allowance,
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
        let completion = match self.allowance {
            0 => 0,
            allowance => 1 + mix(seq) % allowance,
        };
        Generated {
            prompt: self.prompt,
            completion,
        }
    }

    /// The answer's content type and body.
    pub(crate) fn render(&self, seq: u64, generated: Generated) -> (&'static str, String) {
        let (p, c) = (generated.prompt, generated.completion);
        let model = &self.model;
        let text = "Simulated completion.";
        let openai_usage =
            json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c});
        let io_usage = json!({"input_tokens": p, "output_tokens": c, "total_tokens": p + c});
        if !self.stream {
            let body = match self.endpoint {
                Endpoint::ChatCompletions => json!({
                    "id": format!("chatcmpl-{seq}"), "object": "chat.completion", "created": 0,
                    "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": "stop"}],
                    "usage": openai_usage,
                }),
                Endpoint::Completions => json!({
                    "id": format!("cmpl-{seq}"), "object": "text_completion", "created": 0,
                    "model": model,
                    "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
                    "usage": openai_usage,
                }),
                Endpoint::Embeddings => json!({
                    "object": "list", "model": model,
                    "data": [{"object": "embedding", "index": 0, "embedding": [0.0, 0.0, 0.0]}],
                    "usage": {"prompt_tokens": p, "total_tokens": p},
                }),
                Endpoint::Responses => json!({
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
        match self.endpoint {
            Endpoint::Responses => {
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
            Endpoint::Messages => {
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

/// The completion allowance by the server's own reading of the body: the first maximum
/// present × `n` (at least 1), or the endpoint's default × `n`.
fn allowance(endpoint: Endpoint, json: &Value) -> u64 {
    let maximum = ["max_tokens", "max_completion_tokens", "max_output_tokens"]
        .iter()
        .find_map(|key| json.get(key).and_then(Value::as_u64));
    let n = json.get("n").and_then(Value::as_u64).unwrap_or(1).max(1);
    let default = match endpoint {
        Endpoint::Embeddings => return 0,
        Endpoint::Completions => LEGACY_DEFAULT_ALLOWANCE,
        _ => DEFAULT_ALLOWANCE,
    };
    maximum.unwrap_or(default).saturating_mul(n)
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
