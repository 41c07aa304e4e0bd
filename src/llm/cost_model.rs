//! The LLM cost model: estimate before, reconcile after, read refusals.

use http::header::CONTENT_TYPE;
use http::StatusCode;
use reqwest::{Request, Response};
use serde_json::Value;

use super::body::{self, UsageStream};
use super::estimate::{estimate, Endpoint, TokenEstimate};
use super::key;
use super::usage::Usage;
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
#[derive(Clone, Debug)]
pub struct TokenCost {
    accounting: Accounting,
}

impl TokenCost {
    /// OpenAI (and Azure OpenAI, and compatible servers): [`Accounting::ReservedOutput`].
    pub fn openai() -> TokenCost {
        TokenCost {
            accounting: Accounting::ReservedOutput,
        }
    }

    /// Anthropic's Messages API: [`Accounting::UsedOutput`].
    pub fn anthropic() -> TokenCost {
        TokenCost {
            accounting: Accounting::UsedOutput,
        }
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

fn is_event_stream(response: &Response) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim_start().starts_with("text/event-stream"))
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
        let status = response.status();
        let priced_in_tokens = settlement.estimate().get(Dimension::Tokens) > 0;
        if status.is_success() {
            if !priced_in_tokens {
                return (response, Inspection::NOTHING);
            }
            if is_event_stream(&response) {
                let (parts, inner) = body::split(response);
                let model = self.clone();
                let on_end = Box::new(move |usage: Option<Usage>| {
                    // No usage chunk (the caller did not ask for one): the estimate stands.
                    if let Some(usage) = usage {
                        let actual = model.actual_cost(settlement.estimate(), usage);
                        settlement.settle(&actual);
                    }
                });
                let stream = UsageStream::new(inner, on_end);
                return (
                    body::join(parts, reqwest::Body::wrap(stream)),
                    Inspection::NOTHING,
                );
            }
            let (parts, inner) = body::split(response);
            return match body::buffer(inner).await {
                Ok(bytes) => {
                    if let Some(usage) = Usage::from_json(&bytes) {
                        let actual = self.actual_cost(settlement.estimate(), usage);
                        settlement.settle(&actual);
                    }
                    (
                        body::join(parts, reqwest::Body::from(bytes)),
                        Inspection::NOTHING,
                    )
                }
                Err(failed) => (body::join(parts, failed), Inspection::NOTHING),
            };
        }
        // A refused request generated nothing: give its tokens back (the request stays counted).
        let requests = settlement.estimate().get(Dimension::Requests);
        settlement.settle(&Cost::requests(requests));
        if !(status.is_client_error() || status.is_server_error()) {
            return (response, Inspection::NOTHING);
        }
        let (parts, inner) = body::split(response);
        match body::buffer(inner).await {
            Ok(bytes) => {
                let inspection = if status == StatusCode::TOO_MANY_REQUESTS {
                    read_refusal(&bytes)
                } else {
                    Inspection::NOTHING
                };
                (body::join(parts, reqwest::Body::from(bytes)), inspection)
            }
            Err(failed) => (body::join(parts, failed), Inspection::NOTHING),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

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
