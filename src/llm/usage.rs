//! What a request really cost, read back from the response: the `usage` object of a JSON
//! answer, or of the final events of a streamed (server-sent events) answer.
//!
//! Understood shapes:
//! - OpenAI chat completions, legacy completions and embeddings:
//!   `"usage": {"prompt_tokens": P, "completion_tokens": C, "total_tokens": T}`; when streamed
//!   with `stream_options: {"include_usage": true}`, the last chunk before `data: [DONE]` holds
//!   it (earlier chunks carry `"usage": null`);
//! - OpenAI Responses API: `"usage": {"input_tokens": I, "output_tokens": O}`, streamed inside the
//!   `response.completed` event's `response`;
//! - Anthropic Messages: `"usage": {"input_tokens": I, "output_tokens": O,
//!   "cache_creation_input_tokens": W, "cache_read_input_tokens": R}`; input counted against the
//!   limit is `I + W` (Anthropic documents that cache reads do not count towards input tokens per
//!   minute). Streamed, `message_start` carries the input and `message_delta` the cumulative output.
//!
//! Both readers are bounded: a JSON document is read only up to a size limit ([`JsonUsage`]),
//! an event stream one line at a time, a line no longer than [`MAX_LINE`] ([`SseUsage`]).

use serde::Deserialize;
use serde_json::Value;

/// Tokens a request really used, as the server reported them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Usage {
    /// Prompt (input) tokens.
    pub input_tokens: u64,
    /// Completion (output) tokens, reasoning included.
    pub output_tokens: u64,
}

impl Usage {
    /// A usage of `input_tokens` in and `output_tokens` out.
    pub fn new(input_tokens: u64, output_tokens: u64) -> Usage {
        Usage {
            input_tokens,
            output_tokens,
        }
    }

    /// Reads the usage of a JSON response body; `None` when it reports none.
    ///
    /// ```
    /// use reqwest_throttle::llm::Usage;
    ///
    /// let body = br#"{"id":"chatcmpl-1","choices":[],
    ///                 "usage":{"prompt_tokens":12,"completion_tokens":30,"total_tokens":42}}"#;
    /// assert_eq!(Usage::from_json(body), Some(Usage::new(12, 30)));
    /// assert_eq!(Usage::from_json(b"{\"usage\":null}"), None);
    /// ```
    pub fn from_json(body: &[u8]) -> Option<Usage> {
        // Only the three members that may hold a usage are kept; the rest of the document
        // (choices, embeddings) is checked for syntax and skipped, never built as values.
        let document: UsageMembers = serde_json::from_slice(body).ok()?;
        let mut value = serde_json::Map::new();
        for (key, member) in [
            ("usage", document.usage),
            ("response", document.response),
            ("message", document.message),
        ] {
            if let Some(member) = member {
                value.insert(key.to_owned(), member);
            }
        }
        let (input, output) = usage_fields(&Value::Object(value))?;
        Some(Usage {
            input_tokens: input.unwrap_or(0),
            output_tokens: output.unwrap_or(0),
        })
    }
}

/// The members of a JSON document where [`usage_fields`] looks.
#[derive(Deserialize)]
struct UsageMembers {
    usage: Option<Value>,
    response: Option<Value>,
    message: Option<Value>,
}

/// Reads a response body as it passes, for the usage it reports.
///
/// Feed it the body's chunks in order, split anywhere; [`finish`](UsageScanner::finish) says
/// what was found once the body ended (or stopped).
pub(crate) trait UsageScanner: Send + Sync + Unpin + 'static {
    /// Reads the next chunk of the body.
    fn feed(&mut self, chunk: &[u8]);
    /// The usage reported, if any.
    fn finish(&mut self) -> Option<Usage>;
}

/// Keeps a JSON body up to `limit` bytes, to read its usage when it ends; a longer body is let
/// go (the estimate stands), so no more than `limit` bytes are ever held.
#[derive(Debug)]
pub(crate) struct JsonUsage {
    document: Vec<u8>,
    limit: usize,
    over_limit: bool,
}

impl JsonUsage {
    /// A reader of documents up to `limit` bytes; `expected` is the body's size when known.
    pub(crate) fn new(limit: usize, expected: Option<u64>) -> JsonUsage {
        let expected = expected.and_then(|size| usize::try_from(size).ok());
        JsonUsage {
            document: Vec::with_capacity(expected.filter(|&size| size <= limit).unwrap_or(0)),
            limit,
            over_limit: expected.is_some_and(|size| size > limit),
        }
    }
}

impl UsageScanner for JsonUsage {
    fn feed(&mut self, chunk: &[u8]) {
        if self.over_limit {
            return;
        }
        if self.document.len().saturating_add(chunk.len()) > self.limit {
            self.over_limit = true;
            self.document = Vec::new();
        } else {
            self.document.extend_from_slice(chunk);
        }
    }

    fn finish(&mut self) -> Option<Usage> {
        if self.over_limit {
            return None;
        }
        Usage::from_json(&std::mem::take(&mut self.document))
    }
}

/// The input and output tokens reported in a JSON document's `usage`, or that of its `response`
/// (Responses API stream events) or `message` (Anthropic's `message_start`); `None` when it
/// reports neither.
fn usage_fields(value: &Value) -> Option<(Option<u64>, Option<u64>)> {
    fn object(value: Option<&Value>) -> Option<&Value> {
        value.filter(|usage| usage.is_object())
    }
    let usage = object(value.get("usage"))
        .or_else(|| object(value.get("response")?.get("usage")))
        .or_else(|| object(value.get("message")?.get("usage")))?;
    let field = |key: &str| usage.get(key).and_then(Value::as_u64);
    let input = field("prompt_tokens")
        .or_else(|| field("input_tokens"))
        .map(|input| input.saturating_add(field("cache_creation_input_tokens").unwrap_or(0)));
    let output = field("completion_tokens").or_else(|| field("output_tokens"));
    (input.is_some() || output.is_some()).then_some((input, output))
}

/// The longest event line kept while looking for usage; a longer line is skipped (content
/// deltas are short, and usage events are small).
pub(crate) const MAX_LINE: usize = 1 << 20;

/// Reads `data:` lines of a server-sent event stream as it passes, keeping the usage reported.
///
/// Feed it the body's chunks in order, split anywhere. Usage fields seen later replace earlier
/// ones (Anthropic reports input first and output last; OpenAI reports everything once).
#[derive(Debug, Default)]
pub(crate) struct SseUsage {
    line: Vec<u8>,
    overlong: bool,
    input: Option<u64>,
    output: Option<u64>,
}

impl UsageScanner for SseUsage {
    fn feed(&mut self, mut chunk: &[u8]) {
        while let Some(end) = chunk.iter().position(|&b| b == b'\n') {
            let (head, rest) = chunk.split_at(end);
            self.push(head);
            let line = std::mem::take(&mut self.line);
            if !std::mem::take(&mut self.overlong) {
                self.line_done(&line);
            }
            self.line = line;
            self.line.clear();
            chunk = rest.get(1..).unwrap_or_default();
        }
        self.push(chunk);
    }

    /// The usage seen so far, if any event reported one. A last line without its newline
    /// (a stream that ends without one) is read too.
    fn finish(&mut self) -> Option<Usage> {
        if !self.line.is_empty() && !self.overlong {
            let line = std::mem::take(&mut self.line);
            self.line_done(&line);
        }
        if self.input.is_none() && self.output.is_none() {
            return None;
        }
        Some(Usage {
            input_tokens: self.input.unwrap_or(0),
            output_tokens: self.output.unwrap_or(0),
        })
    }
}

impl SseUsage {
    fn push(&mut self, bytes: &[u8]) {
        if self.line.len().saturating_add(bytes.len()) > MAX_LINE {
            self.overlong = true;
            self.line.clear();
        } else if !self.overlong {
            self.line.extend_from_slice(bytes);
        }
    }

    fn line_done(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        // Most chunks carry content, not usage: skip them without parsing.
        if !contains(data, b"\"usage\"") {
            return;
        }
        let Ok(value) = serde_json::from_slice::<Value>(data) else {
            return;
        };
        if let Some((input, output)) = usage_fields(&value) {
            self.input = input.or(self.input);
            self.output = output.or(self.output);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENAI_STREAM: &str = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}],\"usage\":null}\n\n\
data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}],\"usage\":null}\n\n\
data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n\
data: [DONE]\n\n";

    const ANTHROPIC_STREAM: &str = "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":5,\"output_tokens\":1}}}\r\n\r\n\
event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"Hi\"}}\r\n\r\n\
event: message_delta\r\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\r\n\r\n\
event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n";

    fn scan(stream: &str, split: usize) -> Option<Usage> {
        let mut scanner = SseUsage::default();
        for chunk in stream.as_bytes().chunks(split.max(1)) {
            scanner.feed(chunk);
        }
        scanner.finish()
    }

    #[test]
    fn usage_is_found_whatever_the_chunk_boundaries() {
        for split in [1, 2, 3, 7, 64, 10_000] {
            assert_eq!(
                scan(OPENAI_STREAM, split),
                Some(Usage::new(9, 2)),
                "split {split}"
            );
            assert_eq!(
                scan(ANTHROPIC_STREAM, split),
                Some(Usage::new(30, 15)),
                "split {split}"
            );
        }
    }

    #[test]
    fn a_stream_without_usage_reports_none() {
        let without = OPENAI_STREAM.replace(
            "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n",
            "",
        );
        assert_eq!(scan(&without, 5), None);
        assert_eq!(scan("data: {\"usage\": 12}\n\ngarbage\n\u{0}\n", 3), None);
    }

    #[test]
    fn responses_api_completed_event_and_final_line_without_newline() {
        let stream = "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"usage\":null}}\n\n\
event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":40,\"output_tokens\":7,\"total_tokens\":47}}}";
        assert_eq!(scan(stream, 4), Some(Usage::new(40, 7)));
    }

    #[test]
    fn overlong_lines_are_skipped_not_buffered() {
        let mut scanner = SseUsage::default();
        scanner.feed(b"data: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}, \"pad\":\"");
        scanner.feed(&vec![b'x'; MAX_LINE + 1]);
        scanner.feed(b"\"}\n");
        assert!(scanner.line.is_empty());
        scanner.feed(b"data: {\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n");
        assert_eq!(scanner.finish(), Some(Usage::new(3, 4)));
    }

    #[test]
    fn json_usage_shapes() {
        assert_eq!(
            Usage::from_json(
                br#"{"usage":{"input_tokens":10,"output_tokens":3,"cache_read_input_tokens":99}}"#
            ),
            Some(Usage::new(10, 3))
        );
        assert_eq!(
            Usage::from_json(br#"{"object":"list","usage":{"prompt_tokens":8,"total_tokens":8}}"#),
            Some(Usage::new(8, 0))
        );
        assert_eq!(Usage::from_json(b"{}"), None);
        assert_eq!(Usage::from_json(b"nope"), None);
    }
}
