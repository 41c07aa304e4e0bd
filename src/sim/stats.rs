//! What the simulated server counts: each request as it was decided ([`RecordedRequest`]) and
//! the totals ([`SimStats`]).

use std::time::Duration;

use http::{Method, StatusCode};
use tokio::time::Instant;

/// What the simulated server did with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// Admitted and answered with 200.
    Ok,
    /// Refused by the limiter and answered with the limited status (429 by default).
    Limited,
    /// Answered with an error status by an [`Outage::Status`](super::Outage::Status) or
    /// [`SimulatedApiBuilder::fail_every`](super::SimulatedApiBuilder::fail_every).
    Failed,
    /// Dropped without an answer ([`Outage::Refuse`](super::Outage::Refuse) or
    /// [`Outage::Hangup`](super::Outage::Hangup)).
    Refused,
}

/// One request the simulated server received, as
/// [`SimulatedApi::requests`](super::SimulatedApi::requests) returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordedRequest {
    /// Arrival number, from 1; the `id` of a successful answer's body.
    pub seq: u64,
    /// When it arrived (and was decided).
    pub at: Instant,
    /// Its method.
    pub method: Method,
    /// Its path and query (`/v1/models?limit=2`).
    pub path: String,
    /// What the server did with it.
    pub outcome: Outcome,
    /// The status it was answered with; `None` if it was dropped without an answer.
    pub status: Option<StatusCode>,
}

/// A snapshot of the simulated server's counters; see
/// [`SimulatedApi::stats`](super::SimulatedApi::stats).
///
/// Once no request is in flight, `received == ok + limited + failed + refused`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SimStats {
    /// Requests that reached the server (answered or dropped). Connections refused by a
    /// closed port never reach it and are not counted.
    pub received: u64,
    /// Requests admitted and answered with 200.
    pub ok: u64,
    /// Requests refused by the limiter (429, or the configured limited status such as 403).
    pub limited: u64,
    /// Requests answered with an outage or `fail_every` status (5xx, typically).
    pub failed: u64,
    /// Requests dropped without an answer ([`Outage::Refuse`](super::Outage::Refuse),
    /// [`Outage::Hangup`](super::Outage::Hangup)).
    pub refused: u64,
    /// Requests being handled right now (including their latency).
    pub in_flight: u64,
    /// The most requests ever handled at once.
    pub max_in_flight: u64,
    /// When the first request arrived.
    pub first_request: Option<Instant>,
    /// When the last request arrived.
    pub last_request: Option<Instant>,
    /// Tokens charged against the tokens limit by admitted LLM calls (prompt + completion
    /// allowance on arrival, or the usage of each answer with a limit counted after the answer;
    /// see the [module docs](super#llm-calls-feature-llm)).
    pub tokens_charged: u64,
    /// Prompt tokens reported in the `usage` of admitted LLM calls.
    pub prompt_tokens: u64,
    /// Completion tokens reported in the `usage` of admitted LLM calls.
    pub completion_tokens: u64,
}

impl SimStats {
    /// Time between the first and the last request's arrival (zero before two requests).
    pub fn elapsed(&self) -> Duration {
        match (self.first_request, self.last_request) {
            (Some(first), Some(last)) => last.saturating_duration_since(first),
            _ => Duration::ZERO,
        }
    }
}
