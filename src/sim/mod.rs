//! A simulated rate-limited HTTP API, for tests, benches, demos and users' own tests.
//!
//! [`SimulatedApi`] is a small server with its own limits and headers. It answers requests in
//! two ways, from the same shared state:
//!
//! - as a **terminal middleware**: placed last in a `reqwest_middleware` chain (after the
//!   throttle), it answers every request itself and never calls `next`, so a test needs no
//!   socket and runs entirely in virtual time. The URL's host can be anything
//!   (`http://api.test/`).
//! - over **real sockets**: [`SimulatedApi::serve`] starts an HTTP/1.1 server on
//!   `127.0.0.1` whose answers come from the same state, for tests of the real transport
//!   (connection errors, refused connections, pools).
//!
//! # What the simulated server does
//!
//! For each request, in this order:
//! 1. an [`Outage`] set by [`SimulatedApi::set_outage`] answers it (a status such as 503, or
//!    no answer at all);
//! 2. a server built with [`SimulatedApiBuilder::fail_every`] answers it with that status;
//! 3. the limiters admit it (one for requests: [`SimulatedApiBuilder::limit`],
//!    [`limit_aligned`](SimulatedApiBuilder::limit_aligned),
//!    [`token_bucket`](SimulatedApiBuilder::token_bucket) or
//!    [`requests_per_minute`](SimulatedApiBuilder::requests_per_minute); one for LLM tokens:
//!    [`tokens_per_minute`](SimulatedApiBuilder::tokens_per_minute),
//!    [`tokens_bucket`](SimulatedApiBuilder::tokens_bucket),
//!    [`tokens_limit`](SimulatedApiBuilder::tokens_limit) or
//!    [`tokens_limit_aligned`](SimulatedApiBuilder::tokens_limit_aligned)), or it is answered
//!    with the limited status (429 by default) and a `Retry-After`;
//! 4. an admitted request gets `200 OK`.
//!
//! Admitted and limited answers carry rate-limit headers in the chosen [`HeaderStyle`];
//! every answer carries `Date`, `Content-Type: application/json` and a small JSON body
//! (`{"id":7,"ok":true}` on success, an OpenAI-shaped `{"error":{...}}` otherwise). The
//! decision is taken when the request arrives; the configured latency is slept after it,
//! before the answer leaves. Every decision is counted in [`SimStats`] and recorded in
//! [`SimulatedApi::requests`].
//!
//! The server never panics on a request and is safe to use from many tasks at once.
//!
//! # LLM calls (feature `llm`)
//!
//! With the `llm` feature the server is also an OpenAI-compatible LLM API. A POST to
//! `…/chat/completions`, `…/responses`, `…/completions`, `…/embeddings` or `…/messages` (the
//! server's own routing table) with a JSON body is charged, against the tokens limit, what
//! OpenAI documents its limiter counts when the request arrives: the prompt tokens plus the
//! completion allowance; nothing is given back when the completion is shorter. Both are counted
//! by the [`TokenRule`] chosen with [`SimulatedApiBuilder::token_rule`]:
//!
//! - [`TokenRule::CharsOver4`] (the default): the server's own count, ⌈characters of the whole
//!   body / 4⌉ plus `max_tokens` × `n` (1 024 × `n` when absent);
//! - [`TokenRule::CharsOver4FixedOutput`]: the same prompt count plus a flat output charge;
//! - [`TokenRule::ScaledEstimate`]: the client's estimate times a fixed factor, so the client
//!   is off by a known amount (this one shares the client's estimator, on purpose).
//!
//! A tokens limit set with [`SimulatedApiBuilder::tokens_counted_after`] counts the usage of
//! each answer once it has left instead, as an LLM proxy does.
//!
//! The `usage` in the answer reports the prompt by the [`UsageRule`] chosen with
//! [`SimulatedApiBuilder::usage_rule`]: as charged (the default), or by the server's own
//! tokenizer, which is not what its limiter charged (as with real providers). The completion is
//! `1 + hash(seq) mod allowance` tokens, so runs are reproducible. The answer has the
//! provider's JSON shape and a `usage` object; with `"stream": true` it is a server-sent event
//! stream whose final chunk carries the usage when `stream_options.include_usage` is set.
//! With [`HeaderStyle::OpenAi`] every answer carries
//! `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`; a refusal's body says
//! `"type": "tokens"` or `"type": "requests"`, and [`Outage::InsufficientQuota`] answers as an
//! account without credit does.
//!
//! # Time
//!
//! The limits run on [`tokio::time::Instant`], so under
//! `#[tokio::test(start_paused = true)]` a 10-second window passes in no real time. Header
//! values that are wall-clock times (GitHub's epoch `x-ratelimit-reset`, `Date`, Anthropic's
//! RFC 3339 reset, an HTTP-date `Retry-After`) are read off the server's own wall clock: the
//! real time when the API was built, advanced by the tokio clock since. Under paused time the
//! `Date` header and every epoch therefore follow the virtual clock, as a real server's follow
//! real time (with their one-second resolution); delays in seconds, milliseconds and Go
//! durations are exact (rounded up).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//!
//! use reqwest_throttle::sim::{HeaderStyle, SimulatedApi};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let api = SimulatedApi::builder()
//!     .limit(2, Duration::from_secs(10))
//!     .headers(HeaderStyle::OpenAi)
//!     .build();
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(api.clone())
//!     .build();
//!
//! let first = client.get("http://api.test/v1/models").send().await?;
//! assert_eq!(first.headers()["x-ratelimit-remaining-requests"], "1");
//! client.get("http://api.test/v1/models").send().await?;
//! let third = client.get("http://api.test/v1/models").send().await?;
//! assert_eq!(third.status(), 429);
//! assert_eq!(third.headers()["retry-after"], "10");
//!
//! let stats = api.stats();
//! assert_eq!((stats.received, stats.ok, stats.limited), (3, 2, 1));
//! # Ok(())
//! # }
//! ```

mod api;
mod builder;
mod config;
mod headers;
mod limiter;
mod listening;
#[cfg(feature = "llm")]
mod llm;
#[cfg(not(feature = "llm"))]
#[path = "llm_off.rs"]
mod llm;
mod middleware;
mod outage;
mod respond;
mod server;
mod stats;
mod token_rule;

pub use api::SimulatedApi;
pub use builder::SimulatedApiBuilder;
pub use headers::{HeaderStyle, RetryAfterStyle};
pub use outage::Outage;
pub use server::SimServer;
pub use stats::{Outcome, RecordedRequest, SimStats};
pub use token_rule::{TokenRule, UsageRule};
