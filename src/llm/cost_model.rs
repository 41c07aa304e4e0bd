//! The LLM cost model: estimate before, reconcile after, read refusals.
//!
//! How responses are read without holding them back is documented on [`TokenCost`]; the
//! mechanics (a bounded prefix, a wrapping body) are in `body.rs`.

use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::StatusCode;
use http_body::Body as _;
use reqwest::{Request, Response};
use serde_json::Value;

use super::body::{self, Stop, UsageStream};
use super::estimate::{estimate, Endpoint, TokenEstimate};
use super::key;
use super::usage::{JsonUsage, SseUsage, Usage, UsageScanner};
use crate::cost::{CostModel, Inspection, Settlement};
use crate::key::LaneKey;
use crate::limiter::{Cost, Dimension};

/// How a provider charges output tokens against its limit once the real usage is known.
///
/// Both ways charge the prompt exactly: the booking is brought to the `usage` the server reports
/// (an under-estimate is debited, an over-estimate refunded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Accounting {
    /// The output allowance booked when the request arrived stays booked, however short the
    /// completion (OpenAI: "your rate limit is calculated as the maximum of `max_tokens` and the
    /// estimated number of tokens" of the request, counted at request time; nothing is given
    /// back after the completion). Refunding it on the client would make the client believe in
    /// capacity the server does not have, and provoke 429s. A completion longer than the
    /// allowance (possible only when no maximum was set) is debited.
    ReservedOutput,
    /// Output is charged as used: the allowance is an estimate, adjusted to the real output
    /// when the response ends (Anthropic documents that its output-tokens-per-minute limit is
    /// "estimated based on `max_tokens` at the beginning of the request and adjusted at the end
    /// of the request to reflect the actual number of output tokens used").
    UsedOutput,
}

/// The cost model of OpenAI-style and Anthropic APIs: lanes per model and API key, the token
/// cost of each request estimated from its JSON body, reconciled from the `usage` the server
/// reports, and the server's refusals read (which dimension is exhausted; `insufficient_quota`
/// is permanent).
///
/// The cost of a request booked in its lane is `{requests: 1, tokens: input + output,
/// input tokens: input, output tokens: output}` (see [`estimate`](super::estimate)); only the
/// dimensions the policy limits (or the server announces) are counted.
///
/// ```
/// use reqwest_throttle::llm::{Accounting, TokenCost};
/// use reqwest_throttle::{Policy, Rate};
///
/// // An OpenAI-compatible server that charges completions as used, not as reserved.
/// let policy = Policy::openai()
///     .cost_model(TokenCost::openai().accounting(Accounting::UsedOutput))
///     .tokens(Rate::per_minute(100_000));
/// # drop(policy);
/// ```
///
/// # Reading responses without holding them back
///
/// Only a request that booked tokens has its response read; any other (`GET /v1/models`, a
/// request priced by a [`RequestCost`](crate::RequestCost) without tokens) goes to the caller
/// untouched, whatever its status. For the others, the caller waits for the status at most
/// [`TokenCost::inspection_timeout`], and no more than a bounded part of a body is held:
///
/// - **A streamed answer** (`text/event-stream`, any case) is handed on at once, wrapped: its
///   events are read as the caller reads them, and the usage they report settles the booking
///   when the stream ends or is dropped.
/// - **A JSON answer** is read up to [`TokenCost::usage_body_limit`] bytes within the
///   inspection timeout. Whole by then, its usage settles the booking before the caller sees
///   it, so the next request is booked against the true cost. Still arriving, it is handed on
///   with the bytes read in front of the rest, and settles as the caller reads it, if it ends
///   within the limit. Larger than the limit (announced by `Content-Length`, or read), it
///   passes through unread and the estimate stands: a usage at the end of a 100 MB embedding
///   answer is not worth 100 MB of memory.
/// - **A 429** is read up to [`TokenCost::REFUSAL_PREFIX`] bytes within the inspection timeout, enough for
///   any refusal a provider sends, to learn which dimension is exhausted; any other refusal is
///   not read at all (nothing in it changes what the lane does).
///
/// Whatever was read is handed back in front of what was not: the caller always reads the
/// same bytes, in the same order, with the same status, headers and size hint.
///
/// Why settle as the caller reads rather than always before: waiting for the whole body
/// would hold the status back for as long as a slow server trickles, and buffering it would
/// cost its size in memory. Why not always as the caller reads: a caller that keeps a
/// response unread would keep its over-estimate booked, so an answer that is already here
/// is settled at once.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TokenCost {
    accounting: Accounting,
    usage_body_limit: usize,
    inspection_timeout: Duration,
}

impl TokenCost {
    /// The most of a 429's body read to classify it: provider refusals are a few hundred bytes.
    pub const REFUSAL_PREFIX: usize = 64 * 1024;

    /// The default of [`usage_body_limit`](TokenCost::usage_body_limit): 4 MiB, far above any
    /// chat completion, below what a large embedding batch answers.
    pub const DEFAULT_USAGE_BODY_LIMIT: usize = 4 * 1024 * 1024;

    /// The default of [`inspection_timeout`](TokenCost::inspection_timeout): 1 s. An answer's
    /// body follows its headers at once unless the server streams it.
    pub const DEFAULT_INSPECTION_TIMEOUT: Duration = Duration::from_secs(1);

    fn with_accounting(accounting: Accounting) -> TokenCost {
        TokenCost {
            accounting,
            usage_body_limit: TokenCost::DEFAULT_USAGE_BODY_LIMIT,
            inspection_timeout: TokenCost::DEFAULT_INSPECTION_TIMEOUT,
        }
    }

    /// OpenAI (and Azure OpenAI, and compatible servers): [`Accounting::ReservedOutput`].
    pub fn openai() -> TokenCost {
        TokenCost::with_accounting(Accounting::ReservedOutput)
    }

    /// Anthropic's Messages API: [`Accounting::UsedOutput`].
    pub fn anthropic() -> TokenCost {
        TokenCost::with_accounting(Accounting::UsedOutput)
    }

    /// How output tokens are charged once the usage is known.
    #[must_use]
    pub fn accounting(mut self, accounting: Accounting) -> TokenCost {
        self.accounting = accounting;
        self
    }

    /// The configured accounting.
    pub fn configured_accounting(&self) -> Accounting {
        self.accounting
    }

    /// The largest JSON answer whose `usage` is read (default
    /// [`DEFAULT_USAGE_BODY_LIMIT`](TokenCost::DEFAULT_USAGE_BODY_LIMIT)). A larger answer
    /// passes through unread, and the estimate stands; `0` never reads a JSON answer.
    ///
    /// ```
    /// use reqwest_throttle::llm::TokenCost;
    ///
    /// let model = TokenCost::openai().usage_body_limit(256 * 1024);
    /// assert_eq!(model.configured_usage_body_limit(), 256 * 1024);
    /// ```
    #[must_use]
    pub fn usage_body_limit(mut self, bytes: usize) -> TokenCost {
        self.usage_body_limit = bytes;
        self
    }

    /// The configured usage body limit.
    pub fn configured_usage_body_limit(&self) -> usize {
        self.usage_body_limit
    }

    /// The longest the caller waits for a body to be read before it gets the response
    /// (default [`DEFAULT_INSPECTION_TIMEOUT`](TokenCost::DEFAULT_INSPECTION_TIMEOUT)). After
    /// it, the response goes on with what was read in front of the rest: a JSON answer then
    /// settles as the caller reads it, a 429 names no exhausted dimension.
    ///
    /// ```
    /// use std::time::Duration;
    /// use reqwest_throttle::llm::TokenCost;
    ///
    /// let model = TokenCost::anthropic().inspection_timeout(Duration::from_millis(200));
    /// assert_eq!(model.configured_inspection_timeout(), Duration::from_millis(200));
    /// ```
    #[must_use]
    pub fn inspection_timeout(mut self, timeout: Duration) -> TokenCost {
        self.inspection_timeout = timeout;
        self
    }

    /// The configured inspection timeout.
    pub fn configured_inspection_timeout(&self) -> Duration {
        self.inspection_timeout
    }

    /// The booked cost of a token estimate: one request, input and output together in
    /// `Tokens`, and each apart in `InputTokens` and `OutputTokens`.
    ///
    /// ```
    /// use reqwest_throttle::llm::{TokenCost, TokenEstimate};
    /// use reqwest_throttle::Dimension;
    ///
    /// let cost = TokenCost::cost_of(&TokenEstimate::new(120, 400));
    /// assert_eq!(cost.get(Dimension::Requests), 1);
    /// assert_eq!(cost.get(Dimension::Tokens), 520);
    /// assert_eq!(cost.get(Dimension::OutputTokens), 400);
    /// ```
    pub fn cost_of(estimate: &TokenEstimate) -> Cost {
        Cost::requests(1)
            .with(Dimension::Tokens, estimate.total())
            .with(Dimension::InputTokens, estimate.input)
            .with(Dimension::OutputTokens, estimate.output)
    }

    /// What a request really cost, given what was booked and what the server reported.
    ///
    /// ```
    /// use reqwest_throttle::llm::{Accounting, TokenCost, Usage};
    /// use reqwest_throttle::{Cost, Dimension};
    ///
    /// let booked = Cost::requests(1)
    ///     .with(Dimension::Tokens, 600)
    ///     .with(Dimension::InputTokens, 100)
    ///     .with(Dimension::OutputTokens, 500);
    /// let usage = Usage::new(110, 40);
    /// // OpenAI keeps the 500-token allowance booked; only the prompt is corrected.
    /// let openai = TokenCost::openai().actual_cost(&booked, usage);
    /// assert_eq!(openai.get(Dimension::Tokens), 610);
    /// // Anthropic charges output as used.
    /// let anthropic = TokenCost::anthropic().actual_cost(&booked, usage);
    /// assert_eq!(anthropic.get(Dimension::Tokens), 150);
    /// ```
    pub fn actual_cost(&self, booked: &Cost, usage: Usage) -> Cost {
        let output = match self.accounting {
            Accounting::ReservedOutput => {
                usage.output_tokens.max(booked.get(Dimension::OutputTokens))
            }
            Accounting::UsedOutput => usage.output_tokens,
        };
        Cost::requests(booked.get(Dimension::Requests))
            .with(Dimension::Tokens, usage.input_tokens.saturating_add(output))
            .with(Dimension::InputTokens, usage.input_tokens)
            .with(Dimension::OutputTokens, output)
    }
}

/// Reads an error body: which dimension the server says is exhausted, and whether the refusal is
/// permanent (`insufficient_quota`: the account has no credit left; retrying cannot help).
///
/// ```
/// use reqwest_throttle::llm::read_refusal;
/// use reqwest_throttle::Dimension;
///
/// let tpm = br#"{"error":{"message":"Rate limit reached for gpt-4o on tokens per min (TPM)","type":"tokens","code":"rate_limit_exceeded"}}"#;
/// assert_eq!(read_refusal(tpm).exhausted, Some(Dimension::Tokens));
/// let quota = br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#;
/// assert!(read_refusal(quota).permanent);
/// ```
pub fn read_refusal(body: &[u8]) -> Inspection {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Inspection::NOTHING;
    };
    let Some(error) = value.get("error") else {
        return Inspection::NOTHING;
    };
    let field = |key: &str| error.get(key).and_then(Value::as_str).unwrap_or("");
    let (kind, code, message) = (field("type"), field("code"), field("message"));
    if kind == "insufficient_quota" || code == "insufficient_quota" {
        return Inspection::permanent();
    }
    let message = message.to_ascii_lowercase();
    let exhausted = match kind {
        "tokens" | "tokens_usage_based" => Some(Dimension::Tokens),
        "input_tokens" => Some(Dimension::InputTokens),
        "output_tokens" => Some(Dimension::OutputTokens),
        "requests" => None,
        // Anthropic names the limit in its message.
        _ if message.contains("input tokens per minute") => Some(Dimension::InputTokens),
        _ if message.contains("output tokens per minute") => Some(Dimension::OutputTokens),
        _ if message.contains("tokens per min") || message.contains("(tpm)") => {
            Some(Dimension::Tokens)
        }
        _ => None,
    };
    match exhausted {
        Some(dimension) => Inspection::exhausted(dimension),
        None => Inspection::NOTHING,
    }
}

/// `text/event-stream`, whatever its case and parameters (media types are case-insensitive,
/// RFC 9110 §8.3.1).
fn is_event_stream(response: &Response) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case("text/event-stream"))
}

impl TokenCost {
    /// Settles a successful answer: a stream as the caller reads it; a JSON answer now when it
    /// arrives whole within the limit and the timeout, else as the caller reads it (within the
    /// limit), else never (the estimate stands).
    async fn settle_answer(&self, response: Response, settlement: Settlement) -> Response {
        let streamed = is_event_stream(&response);
        let (parts, mut inner) = body::split(response);
        if streamed {
            let body = self.usage_stream(inner, SseUsage::default(), settlement);
            return body::join(parts, body);
        }
        let limit = self.usage_body_limit;
        // A body announced larger than the limit is not even started.
        if inner.size_hint().lower() > u64::try_from(limit).unwrap_or(u64::MAX) {
            return body::join(parts, inner);
        }
        let prefix = body::read_prefix(&mut inner, limit, self.inspection_timeout).await;
        match prefix.stop {
            Stop::Complete => {
                if let Some(usage) = Usage::from_json(&prefix.bytes()) {
                    let actual = self.actual_cost(settlement.estimate(), usage);
                    settlement.settle(&actual);
                }
                body::join(parts, prefix.into_body(inner))
            }
            // Still arriving: read the rest as the caller does (the prefix passes again).
            Stop::TimedOut => {
                let whole = prefix.into_body(inner);
                let scanner = JsonUsage::new(limit, whole.size_hint().exact());
                body::join(parts, self.usage_stream(whole, scanner, settlement))
            }
            Stop::OverLimit | Stop::Failed => body::join(parts, prefix.into_body(inner)),
        }
    }

    /// `inner` passed through `scanner`; the usage it finds settles the booking when the
    /// caller has read (or dropped) the body. Without a usage the estimate stands.
    fn usage_stream(
        &self,
        inner: reqwest::Body,
        scanner: impl UsageScanner,
        settlement: Settlement,
    ) -> reqwest::Body {
        let model = self.clone();
        let on_end = Box::new(move |usage: Option<Usage>| {
            if let Some(usage) = usage {
                let actual = model.actual_cost(settlement.estimate(), usage);
                settlement.settle(&actual);
            }
        });
        reqwest::Body::wrap(UsageStream::new(inner, scanner, on_end))
    }

    /// Reads a 429's body only as far as [`read_refusal`] needs: [`TokenCost::REFUSAL_PREFIX`] bytes,
    /// within the inspection timeout. The caller gets the bytes read in front of the rest.
    async fn read_refusal_prefix(&self, response: Response) -> (Response, Inspection) {
        let (parts, mut inner) = body::split(response);
        let prefix = body::read_prefix(
            &mut inner,
            TokenCost::REFUSAL_PREFIX,
            self.inspection_timeout,
        )
        .await;
        // A refusal cut short is not JSON: it names nothing, and the lane cools down whole.
        let inspection = match prefix.stop {
            Stop::Complete => read_refusal(&prefix.bytes()),
            Stop::OverLimit | Stop::TimedOut | Stop::Failed => Inspection::NOTHING,
        };
        (body::join(parts, prefix.into_body(inner)), inspection)
    }
}

#[async_trait::async_trait]
impl CostModel for TokenCost {
    fn lane_key(&self, request: &Request) -> Option<LaneKey> {
        key::lane_key(request)
    }

    fn estimate(&self, request: &Request) -> Cost {
        let estimate = Endpoint::from_path(request.url().path()).and_then(|endpoint| {
            let body = request.body()?.as_bytes()?;
            estimate(endpoint, body)
        });
        estimate.map_or_else(|| Cost::requests(1), |e| TokenCost::cost_of(&e))
    }

    async fn inspect(&self, response: Response, settlement: Settlement) -> (Response, Inspection) {
        // A request that booked no tokens has nothing to settle and no token dimension to
        // pause: its body is never touched, whatever the status.
        if settlement.estimate().get(Dimension::Tokens) == 0 {
            return (response, Inspection::NOTHING);
        }
        let status = response.status();
        if status.is_success() {
            return (
                self.settle_answer(response, settlement).await,
                Inspection::NOTHING,
            );
        }
        // A refused request generated nothing: give its tokens back (the request stays counted).
        let requests = settlement.estimate().get(Dimension::Requests);
        settlement.settle(&Cost::requests(requests));
        // Only a 429's body is classified; any other answer goes on untouched.
        if status == StatusCode::TOO_MANY_REQUESTS {
            return self.read_refusal_prefix(response).await;
        }
        (response, Inspection::NOTHING)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use reqwest::ResponseBuilderExt as _;

    use super::*;
    use crate::limiter::Budget;
    use crate::Rate;

    const BURST: u64 = 10_000;
    const URL: &str = "http://api.test/v1/chat/completions";

    fn budget() -> Arc<Budget> {
        let budget = Budget::new();
        let limit = Rate::per_minute(BURST).limit().unwrap();
        budget.set_limit(Dimension::Tokens, Some(limit));
        budget
    }

    /// Books `input` + `output` tokens and sends them, as the middleware does.
    fn settlement(budget: &Arc<Budget>, input: u64, output: u64) -> Settlement {
        let estimate = TokenEstimate::new(input, output);
        let reservation = budget
            .reserve(&TokenCost::cost_of(&estimate), None)
            .unwrap();
        Settlement::new(Arc::clone(budget), reservation.commit())
    }

    fn response(status: u16, content_type: &str, body: &'static str) -> Response {
        let response = http::Response::builder()
            .status(status)
            .header(CONTENT_TYPE, content_type)
            .header("x-request-id", "req-1")
            .url(reqwest::Url::parse(URL).unwrap())
            .body(body)
            .unwrap();
        Response::from(response)
    }

    fn available(budget: &Budget) -> u64 {
        budget.available(Dimension::Tokens).unwrap()
    }

    const JSON: &str = r#"{"id":"chatcmpl-1","choices":[],"usage":{"prompt_tokens":90,"completion_tokens":40,"total_tokens":130}}"#;

    async fn inspect_json(model: TokenCost, input: u64, output: u64) -> u64 {
        let budget = budget();
        let settlement = settlement(&budget, input, output);
        assert_eq!(available(&budget), BURST - input - output);
        let (response, inspection) = model
            .inspect(response(200, "application/json", JSON), settlement)
            .await;
        assert_eq!(inspection, Inspection::NOTHING);
        // The caller gets the same response: status, headers, URL and bytes.
        assert_eq!(response.status(), 200);
        assert_eq!(response.url().as_str(), URL);
        assert_eq!(response.headers()["x-request-id"], "req-1");
        assert_eq!(response.bytes().await.unwrap(), JSON.as_bytes());
        BURST - available(&budget)
    }

    #[tokio::test(start_paused = true)]
    async fn json_usage_settles_over_and_under_estimates_exactly() {
        // Output charged as used: 100 + 500 booked, 90 + 40 used.
        assert_eq!(inspect_json(TokenCost::anthropic(), 100, 500).await, 130);
        // Under-estimated prompt (50 booked, 90 used): the difference is charged.
        assert_eq!(inspect_json(TokenCost::anthropic(), 50, 20).await, 130);
        // OpenAI keeps the output allowance; the prompt is corrected both ways.
        assert_eq!(inspect_json(TokenCost::openai(), 100, 500).await, 590);
        assert_eq!(inspect_json(TokenCost::openai(), 50, 500).await, 590);
        // A completion beyond the allowance (no max_tokens was sent) is charged.
        assert_eq!(inspect_json(TokenCost::openai(), 90, 10).await, 130);
    }

    const STREAM: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":90,\"completion_tokens\":40,\"total_tokens\":130}}\n\n\
data: [DONE]\n\n";
    const STREAM_WITHOUT_USAGE: &str =
        "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: [DONE]\n\n";

    #[tokio::test(start_paused = true)]
    async fn a_stream_settles_on_its_usage_chunk_once_read() {
        let budget = budget();
        let settlement = settlement(&budget, 100, 500);
        let (response, _) = TokenCost::anthropic()
            .inspect(response(200, "text/event-stream", STREAM), settlement)
            .await;
        // Nothing is settled before the caller reads the stream.
        assert_eq!(available(&budget), BURST - 600);
        assert_eq!(response.bytes().await.unwrap(), STREAM.as_bytes());
        assert_eq!(available(&budget), BURST - 130);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_without_usage_keeps_the_estimate() {
        let budget = budget();
        let settlement = settlement(&budget, 100, 500);
        let (response, _) = TokenCost::anthropic()
            .inspect(
                response(200, "text/event-stream", STREAM_WITHOUT_USAGE),
                settlement,
            )
            .await;
        assert_eq!(
            response.bytes().await.unwrap(),
            STREAM_WITHOUT_USAGE.as_bytes()
        );
        assert_eq!(available(&budget), BURST - 600);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_dropped_unread_keeps_the_estimate() {
        let budget = budget();
        let settlement = settlement(&budget, 100, 500);
        let (response, _) = TokenCost::anthropic()
            .inspect(response(200, "text/event-stream", STREAM), settlement)
            .await;
        drop(response);
        // Never read: no usage seen, the estimate stands.
        assert_eq!(available(&budget), BURST - 600);
    }

    /// A response whose body comes in `chunks`, each after its delay, with no size announced.
    fn streamed(status: u16, content_type: &str, chunks: Vec<(Duration, Vec<u8>)>) -> Response {
        let stream = futures_util::stream::unfold(chunks.into_iter(), |mut chunks| async move {
            let (delay, chunk) = chunks.next()?;
            tokio::time::sleep(delay).await;
            Some((Ok::<_, std::io::Error>(chunk), chunks))
        });
        let response = http::Response::builder()
            .status(status)
            .header(CONTENT_TYPE, content_type)
            .url(reqwest::Url::parse(URL).unwrap())
            .body(reqwest::Body::wrap_stream(stream))
            .unwrap();
        Response::from(response)
    }

    fn chunks_of(bytes: &[u8], size: usize) -> Vec<(Duration, Vec<u8>)> {
        bytes
            .chunks(size)
            .map(|chunk| (Duration::ZERO, chunk.to_vec()))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn json_beyond_the_limit_passes_through_and_the_estimate_stands() {
        let limit = JSON.len() - 1;
        let model = TokenCost::anthropic().usage_body_limit(limit);
        // Announced by its size (never read), then chunked (read up to the limit).
        let announced = response(200, "application/json", JSON);
        let chunked = streamed(200, "application/json", chunks_of(JSON.as_bytes(), 7));
        for answer in [announced, chunked] {
            let budget = budget();
            let (answer, _) = model.inspect(answer, settlement(&budget, 100, 500)).await;
            assert_eq!(answer.bytes().await.unwrap(), JSON.as_bytes());
            assert_eq!(available(&budget), BURST - 600);
        }
        // One byte more of limit: read, settled, and handed back with its size.
        let budget = budget();
        let model = model.usage_body_limit(JSON.len());
        let answer = streamed(200, "application/json", chunks_of(JSON.as_bytes(), 7));
        let (answer, _) = model.inspect(answer, settlement(&budget, 100, 500)).await;
        assert_eq!(available(&budget), BURST - 130);
        assert_eq!(answer.content_length(), Some(JSON.len() as u64));
        assert_eq!(answer.bytes().await.unwrap(), JSON.as_bytes());
    }

    #[tokio::test(start_paused = true)]
    async fn json_still_arriving_after_the_timeout_settles_as_the_caller_reads_it() {
        // Per hour, so that the seconds the body takes refill at most 17 tokens.
        let budget = Budget::new();
        budget.set_limit(Dimension::Tokens, Rate::per_hour(BURST).limit().ok());
        let (head, tail) = JSON.as_bytes().split_at(20);
        let chunks = vec![
            (Duration::ZERO, head.to_vec()),
            (Duration::from_secs(5), tail.to_vec()),
        ];
        let model = TokenCost::anthropic().inspection_timeout(Duration::from_secs(1));
        let start = tokio::time::Instant::now();
        let (answer, _) = model
            .inspect(
                streamed(200, "application/json", chunks),
                settlement(&budget, 100, 500),
            )
            .await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        // Not read yet: the estimate of 600 stands.
        assert!(
            available(&budget) <= BURST - 600 + 3,
            "{}",
            available(&budget)
        );
        assert_eq!(answer.bytes().await.unwrap(), JSON.as_bytes());
        // Read: settled to the 130 used.
        assert!(available(&budget) >= BURST - 130, "{}", available(&budget));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_read_only_as_far_as_its_prefix() {
        let padding = "x".repeat(2 * TokenCost::REFUSAL_PREFIX);
        let long = format!(r#"{{"error":{{"type":"tokens","message":"{padding}"}}}}"#);
        let budget = budget();
        let (refusal, inspection) = TokenCost::openai()
            .inspect(
                streamed(429, "application/json", chunks_of(long.as_bytes(), 1000)),
                settlement(&budget, 100, 500),
            )
            .await;
        // Cut short, it names nothing; the tokens still come back; the bytes are all there.
        assert_eq!(inspection, Inspection::NOTHING);
        assert_eq!(available(&budget), BURST);
        assert_eq!(refusal.bytes().await.unwrap(), long.as_bytes());
    }

    #[tokio::test(start_paused = true)]
    async fn other_refusals_and_unpriced_requests_are_not_read() {
        let forever = Duration::from_secs(86_400);
        let body = || vec![(forever, b"{}".to_vec())];
        let budget = budget();
        let start = tokio::time::Instant::now();
        let (refusal, _) = TokenCost::openai()
            .inspect(
                streamed(500, "application/json", body()),
                settlement(&budget, 100, 500),
            )
            .await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(available(&budget), BURST);
        drop(refusal);
        for status in [200, 429] {
            let (answer, _) = TokenCost::openai()
                .inspect(
                    streamed(status, "application/json", body()),
                    settlement(&budget, 0, 0),
                )
                .await;
            assert_eq!(start.elapsed(), Duration::ZERO);
            drop(answer);
        }
    }

    #[test]
    fn event_streams_are_recognised_in_any_case() {
        for content_type in [
            "text/event-stream",
            "Text/Event-Stream",
            "TEXT/EVENT-STREAM;charset=utf-8",
            "  text/event-stream ; charset=UTF-8",
        ] {
            assert!(
                is_event_stream(&response(200, content_type, "")),
                "{content_type}"
            );
        }
        for content_type in ["application/json", "text/event-streams", "text/plain"] {
            assert!(
                !is_event_stream(&response(200, content_type, "")),
                "{content_type}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_give_tokens_back_and_name_the_exhausted_dimension() {
        let budget = budget();
        let settlement = settlement(&budget, 100, 500);
        let body = r#"{"error":{"message":"Rate limit reached on tokens per min (TPM)","type":"tokens","code":"rate_limit_exceeded"}}"#;
        let (response, inspection) = TokenCost::openai()
            .inspect(response(429, "application/json", body), settlement)
            .await;
        assert_eq!(inspection, Inspection::exhausted(Dimension::Tokens));
        assert_eq!(available(&budget), BURST);
        assert_eq!(response.text().await.unwrap(), body);

        let anthropic = r#"{"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed the rate limit for your organization of 8,000 output tokens per minute."}}"#;
        assert_eq!(
            read_refusal(anthropic.as_bytes()),
            Inspection::exhausted(Dimension::OutputTokens)
        );
        let requests = r#"{"error":{"message":"Rate limit reached on requests per min (RPM)","type":"requests","code":"rate_limit_exceeded"}}"#;
        assert_eq!(read_refusal(requests.as_bytes()), Inspection::NOTHING);
        assert_eq!(read_refusal(b"<html>busy</html>"), Inspection::NOTHING);
    }
}
