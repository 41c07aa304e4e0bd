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
//! `…/chat/completions`, `…/responses`, `…/completions`, `…/embeddings` or `…/messages` with a
//! JSON body is charged, against the tokens limit, what OpenAI documents its limiter counts
//! when the request arrives: the prompt tokens plus the completion allowance; nothing is given
//! back when the completion is shorter. Both are counted by the [`TokenRule`] chosen with
//! [`SimulatedApiBuilder::token_rule`]:
//!
//! - [`TokenRule::ClientEstimate`] (the default): the client's own estimator,
//!   `reqwest_throttle::llm::estimate`. It **shares the code under test**, so it suits tests of
//!   pacing and retries but can never show an estimate to be wrong;
//! - [`TokenRule::CharsOver4`]: the server's own count, ⌈characters of the whole body / 4⌉
//!   plus `max_tokens` × `n` (1 024 × `n` when absent);
//! - [`TokenRule::ScaledEstimate`]: the client's estimate times a fixed factor, so the client
//!   is off by a known amount.
//!
//! The `usage` in the answer reports the prompt as charged. The completion is
//! `1 + hash(seq) mod allowance` tokens, so runs are reproducible. The answer has the provider's JSON shape and a `usage` object; with
//! `"stream": true` it is a server-sent event stream whose final chunk carries the usage when
//! `stream_options.include_usage` is set. With [`HeaderStyle::OpenAi`] every answer carries
//! `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`; a refusal's body says
//! `"type": "tokens"` or `"type": "requests"`, and [`Outage::InsufficientQuota`] answers as an
//! account without credit does.
//!
//! # Time
//!
//! The limits run on [`tokio::time::Instant`], so under
//! `#[tokio::test(start_paused = true)]` a 10-second window passes in no real time. Header
//! values that are wall-clock times (GitHub's epoch `x-ratelimit-reset`, `Date`, Anthropic's
//! RFC 3339 reset, an HTTP-date `Retry-After`) are `SystemTime::now()` plus the remaining
//! delay at the moment the answer is built. Under paused time the wall clock does not follow
//! the virtual clock, so these values are only approximate there (and they have one-second
//! resolution anyway); delays in seconds, milliseconds and Go durations are exact (rounded up).
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

mod headers;
mod limiter;
#[cfg(feature = "llm")]
mod llm;
#[cfg(not(feature = "llm"))]
#[path = "llm_off.rs"]
mod llm;
mod server;
mod token_rule;

pub use server::SimServer;
pub use token_rule::TokenRule;

use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use http::{Extensions, Method, StatusCode, Version};
use reqwest::ResponseBuilderExt as _;
use reqwest_middleware::{Middleware, Next};
use tokio::sync::watch;
use tokio::time::Instant;

use limiter::{Cost, Dimension, Limiter, LimiterConfig, Quota, Verdict};
use llm::{Generated, LlmCall};

/// Which family of rate-limit headers the simulated server announces on admitted and limited
/// answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HeaderStyle {
    /// No rate-limit headers (a server that only answers 429).
    #[default]
    None,
    /// OpenAI / Azure OpenAI: `x-ratelimit-limit-requests: 100`,
    /// `x-ratelimit-remaining-requests: 57`, `x-ratelimit-reset-requests: 6m0s`
    /// (time until the budget is whole again, as a Go duration: `17ms`, `6.5s`, `6m0s`).
    OpenAi,
    /// Anthropic: `anthropic-ratelimit-requests-limit`, `-remaining` and `-reset`, the reset
    /// an RFC 3339 UTC time (`2025-01-01T12:00:05Z`).
    Anthropic,
    /// GitHub: `x-ratelimit-limit`, `x-ratelimit-remaining`, `x-ratelimit-used`,
    /// `x-ratelimit-reset` (Unix epoch seconds, read against `Date`) and
    /// `x-ratelimit-resource: core`. Pair it with
    /// [`limited_status(StatusCode::FORBIDDEN)`](SimulatedApiBuilder::limited_status) for
    /// GitHub's 403 on an exhausted primary limit.
    GitHub,
    /// The IETF draft's structured fields (draft-ietf-httpapi-ratelimit-headers):
    /// `RateLimit-Policy: "default";q=100;w=10` and `RateLimit: "default";r=57;t=4`
    /// (`w` and `t` in whole seconds, rounded up).
    Ietf,
    /// The draft's older trio: `RateLimit-Limit: 100`, `RateLimit-Remaining: 57`,
    /// `RateLimit-Reset: 4` (delta seconds).
    IetfLegacy,
    /// Flask-Limiter (and slowapi): `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
    /// `X-RateLimit-Reset`, the reset a Unix epoch in whole seconds written as Flask-Limiter
    /// writes it, `1 + int(window end)`: up to one second **late** (a whole second when the
    /// window ends on a whole second, as a clock-aligned window does). No `used`, no
    /// `resource`: unlike [`HeaderStyle::GitHub`], nothing tells the client which family it
    /// is. Only requests are announced.
    FlaskLimiter,
}

/// How a limited answer tells the client when to come back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RetryAfterStyle {
    /// No retry hint at all.
    None,
    /// `Retry-After: 5`: whole seconds, rounded up (RFC 9110 delay-seconds).
    #[default]
    Seconds,
    /// `retry-after-ms: 4200`: whole milliseconds, rounded up, as OpenAI and Azure send.
    Millis,
    /// `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`: an HTTP-date, rounded up to the second
    /// (approximate under paused time, see the [module docs](self#time)).
    HttpDate,
}

/// A period during which the simulated server is down; see [`SimulatedApi::set_outage`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outage {
    /// Every request is answered with this status (typically 503 or 502), without rate-limit
    /// headers and without charging the limiter.
    Status(StatusCode),
    /// As [`Outage::Status`], with a retry hint of this delay in the configured
    /// [`RetryAfterStyle`] (`Retry-After` in seconds if the style is `None`).
    StatusWithRetryAfter(StatusCode, Duration),
    /// Connections are refused. Over sockets the server stops listening (a connect fails with
    /// `ECONNREFUSED`) and closes its open connections; in middleware mode the request fails
    /// with an [`io::Error`] of kind [`io::ErrorKind::ConnectionRefused`].
    Refuse,
    /// Connections are accepted and requests read, but closed without an answer (the client
    /// cannot know whether the server acted). In middleware mode the request fails with an
    /// [`io::Error`] of kind [`io::ErrorKind::ConnectionReset`].
    Hangup,
    /// The account has no credit left: every request is answered `429` with OpenAI's
    /// `insufficient_quota` body and no retry hint (retrying cannot help).
    InsufficientQuota,
}

/// What the simulated server did with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// Admitted and answered with 200.
    Ok,
    /// Refused by the limiter and answered with the limited status (429 by default).
    Limited,
    /// Answered with an error status by an [`Outage::Status`] or
    /// [`SimulatedApiBuilder::fail_every`].
    Failed,
    /// Dropped without an answer ([`Outage::Refuse`] or [`Outage::Hangup`]).
    Refused,
}

/// One request the simulated server received, as [`SimulatedApi::requests`] returns it.
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

/// A snapshot of the simulated server's counters; see [`SimulatedApi::stats`].
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
    /// Requests dropped without an answer ([`Outage::Refuse`], [`Outage::Hangup`]).
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
    /// allowance, see the [module docs](self#llm-calls-feature-llm)).
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

/// Builds a [`SimulatedApi`]; see [`SimulatedApi::builder`].
///
/// Without a limit the server admits everything. Defaults: no rate-limit headers,
/// `Retry-After` in seconds on limited answers, 429 as the limited status, no latency, and
/// the first 100 000 requests recorded.
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct SimulatedApiBuilder {
    config: Config,
}

#[derive(Clone, Debug)]
struct Config {
    requests: Option<LimiterConfig>,
    tokens: Option<LimiterConfig>,
    headers: HeaderStyle,
    retry_after: RetryAfterStyle,
    limited_status: StatusCode,
    latency: Duration,
    fail_every: Option<StatusCode>,
    record_limit: usize,
    token_rule: TokenRule,
    window_origin: Option<Instant>,
    reset_late: Duration,
}

impl Default for SimulatedApiBuilder {
    fn default() -> Self {
        SimulatedApiBuilder {
            config: Config {
                requests: None,
                tokens: None,
                headers: HeaderStyle::None,
                retry_after: RetryAfterStyle::Seconds,
                limited_status: StatusCode::TOO_MANY_REQUESTS,
                latency: Duration::ZERO,
                fail_every: None,
                record_limit: 100_000,
                token_rule: TokenRule::ClientEstimate,
                window_origin: None,
                reset_late: Duration::ZERO,
            },
        }
    }
}

impl SimulatedApiBuilder {
    /// At most `requests` requests per fixed window of length `per`. A window opens with the
    /// first request after the previous window ended (as GitHub's and OpenAI's announced
    /// resets behave), so `reset` is the time left in the current window.
    ///
    /// `limit(0, ..)` refuses everything; a zero `per` never limits. Replaces a
    /// [`token_bucket`](Self::token_bucket).
    pub fn limit(mut self, requests: u64, per: Duration) -> Self {
        self.config.requests = Some(LimiterConfig::FixedWindow {
            limit: requests,
            per,
        });
        self
    }

    /// A token bucket instead of a fixed window: `burst` requests at once, refilled at
    /// `rate_per_sec`. `reset` is then the time until the bucket is full again, and the IETF
    /// window `w` the time to refill the whole burst.
    ///
    /// The rate is clamped to `[1e-6, 1e9]` per second (NaN counts as the minimum); a burst
    /// of 0 refuses everything. Replaces a [`limit`](Self::limit).
    pub fn token_bucket(mut self, rate_per_sec: f64, burst: u64) -> Self {
        self.config.requests = Some(LimiterConfig::token_bucket(rate_per_sec, burst));
        self
    }

    /// At most `rpm` requests per minute, replenished continuously (a token bucket of `rpm`
    /// refilled over a minute), as OpenAI and Anthropic document their limits. Replaces a
    /// [`limit`](Self::limit) or [`token_bucket`](Self::token_bucket).
    pub fn requests_per_minute(mut self, rpm: u64) -> Self {
        self.config.requests = Some(LimiterConfig::refilled_over(rpm, Duration::from_secs(60)));
        self
    }

    /// At most `tpm` tokens per minute, replenished continuously, charged to LLM calls as
    /// OpenAI documents (prompt + `max_tokens` × `n` when the request arrives; see the
    /// [module docs](self#llm-calls-feature-llm)). Requests that are not LLM calls cost no
    /// tokens. Announced as `x-ratelimit-{limit,remaining,reset}-tokens` with
    /// [`HeaderStyle::OpenAi`]; a refusal's body says `"type": "tokens"`.
    pub fn tokens_per_minute(mut self, tpm: u64) -> Self {
        self.config.tokens = Some(LimiterConfig::refilled_over(tpm, Duration::from_secs(60)));
        self
    }

    /// At most `tokens` tokens per fixed window of length `per` (see [`limit`](Self::limit)
    /// for how windows open). Replaces [`tokens_per_minute`](Self::tokens_per_minute).
    pub fn tokens_limit(mut self, tokens: u64, per: Duration) -> Self {
        self.config.tokens = Some(LimiterConfig::FixedWindow { limit: tokens, per });
        self
    }

    /// A token bucket for tokens: `burst` tokens at once, refilled at `rate_per_sec`, as
    /// OpenAI keeps its limits (a short-reset bucket: `x-ratelimit-reset-tokens` is the time
    /// until the bucket is full again, `50ms` or `1.2s` rather than a minute). Same clamping
    /// as [`token_bucket`](Self::token_bucket). Replaces
    /// [`tokens_per_minute`](Self::tokens_per_minute) or a tokens window.
    ///
    /// ```
    /// use reqwest_throttle::sim::{HeaderStyle, SimulatedApi};
    ///
    /// // OpenAI-shaped: 20 requests/s (burst 10), 1 000 tokens/s (burst 1 000).
    /// let api = SimulatedApi::builder()
    ///     .token_bucket(20.0, 10)
    ///     .tokens_bucket(1_000.0, 1_000)
    ///     .headers(HeaderStyle::OpenAi)
    ///     .build();
    /// # let _ = api;
    /// ```
    pub fn tokens_bucket(mut self, rate_per_sec: f64, burst: u64) -> Self {
        self.config.tokens = Some(LimiterConfig::token_bucket(rate_per_sec, burst));
        self
    }

    /// At most `requests` requests per **clock-aligned** window of length `per`: the
    /// windows are fixed slices of time, `[origin + k·per, origin + (k+1)·per)`, as an API
    /// that counts its RPM per calendar minute does, whether or not any request came. `reset`
    /// is the time to the next boundary. By default the boundaries fall on multiples of `per`
    /// since the Unix epoch on the wall clock at [`build`](Self::build) (then follow the
    /// virtual clock); [`window_origin`](Self::window_origin) places them exactly.
    ///
    /// A zero `per` never limits. Replaces [`limit`](Self::limit) or
    /// [`token_bucket`](Self::token_bucket).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use reqwest_throttle::sim::{HeaderStyle, SimulatedApi};
    /// use tokio::time::Instant;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // 100 per calendar minute; this minute started 45 s ago.
    /// let api = SimulatedApi::builder()
    ///     .limit_aligned(100, Duration::from_secs(60))
    ///     .window_origin(Instant::now() - Duration::from_secs(45))
    ///     .headers(HeaderStyle::IetfLegacy)
    ///     .build();
    /// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
    ///     .with(api.clone())
    ///     .build();
    /// let answer = client.get("http://api.test/").send().await?;
    /// assert_eq!(answer.headers()["ratelimit-remaining"], "99");
    /// assert_eq!(answer.headers()["ratelimit-reset"], "15");
    /// # Ok(())
    /// # }
    /// ```
    pub fn limit_aligned(mut self, requests: u64, per: Duration) -> Self {
        self.config.requests = Some(LimiterConfig::FixedWindowAligned {
            limit: requests,
            per,
        });
        self
    }

    /// At most `tokens` tokens per clock-aligned window of length `per` (see
    /// [`limit_aligned`](Self::limit_aligned)). Replaces any other tokens limit.
    pub fn tokens_limit_aligned(mut self, tokens: u64, per: Duration) -> Self {
        self.config.tokens = Some(LimiterConfig::FixedWindowAligned { limit: tokens, per });
        self
    }

    /// Where the boundaries of clock-aligned windows fall: at `origin` and every multiple of
    /// the window's length before and after it (`origin` may be in the past or the future).
    /// Without it they fall on wall-clock multiples of the length, which is realistic but not
    /// reproducible.
    pub fn window_origin(mut self, origin: Instant) -> Self {
        self.config.window_origin = Some(origin);
        self
    }

    /// How the server counts an LLM call's tokens: [`TokenRule::ClientEstimate`] (the
    /// default, which shares the client's estimator and so cannot catch it being wrong),
    /// [`TokenRule::CharsOver4`] (the server's own count) or
    /// [`TokenRule::ScaledEstimate`] (the client off by a known factor). The answer's
    /// `usage` reports the prompt as charged.
    ///
    /// ```
    /// use reqwest_throttle::sim::{SimulatedApi, TokenRule};
    ///
    /// // A provider whose tokenizer counts 25 % more than the client estimates.
    /// let api = SimulatedApi::builder()
    ///     .tokens_per_minute(40_000)
    ///     .token_rule(TokenRule::ScaledEstimate(1.25))
    ///     .build();
    /// # let _ = api;
    /// ```
    pub fn token_rule(mut self, rule: TokenRule) -> Self {
        self.config.token_rule = rule;
        self
    }

    /// Announces every reset `extra` later than it is, as a server whose limiter rounds its
    /// reset up by a whole second (Flask-Limiter's `1 + reset`): every rate-limit header's
    /// reset (delta seconds, Go duration, epoch or RFC 3339) and the limited answer's retry
    /// hint, both computed from the same reset on such servers. The limit itself is not
    /// changed: a client that believes the header waits `extra` too long, never too short.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use reqwest_throttle::sim::{HeaderStyle, SimulatedApi};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let api = SimulatedApi::builder()
    ///     .limit(10, Duration::from_secs(4))
    ///     .headers(HeaderStyle::IetfLegacy)
    ///     .reset_announced_late(Duration::from_secs(1))
    ///     .build();
    /// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
    ///     .with(api.clone())
    ///     .build();
    /// let answer = client.get("http://api.test/").send().await?;
    /// assert_eq!(answer.headers()["ratelimit-reset"], "5"); // the window ends in 4 s
    /// # Ok(())
    /// # }
    /// ```
    pub fn reset_announced_late(mut self, extra: Duration) -> Self {
        self.config.reset_late = extra;
        self
    }

    /// The rate-limit headers to announce.
    pub fn headers(mut self, style: HeaderStyle) -> Self {
        self.config.headers = style;
        self
    }

    /// How limited answers carry their retry hint.
    pub fn retry_after(mut self, style: RetryAfterStyle) -> Self {
        self.config.retry_after = style;
        self
    }

    /// The status of a limited answer: 429 by default; GitHub answers 403 with
    /// `x-ratelimit-remaining: 0` when the primary limit is exhausted.
    pub fn limited_status(mut self, status: StatusCode) -> Self {
        self.config.limited_status = status;
        self
    }

    /// How long the server takes to answer each request (a `tokio::time::sleep`, so virtual
    /// under paused time). Dropped requests are not delayed.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.config.latency = latency;
        self
    }

    /// A server that answers every request with `status` (a broken backend), before any
    /// limit is consulted.
    pub fn fail_every(mut self, status: StatusCode) -> Self {
        self.config.fail_every = Some(status);
        self
    }

    /// How many requests [`SimulatedApi::requests`] keeps (the first ones); later requests
    /// are still counted in [`SimStats`]. Default 100 000.
    pub fn record_limit(mut self, requests: usize) -> Self {
        self.config.record_limit = requests;
        self
    }

    /// The simulated API, with an empty history and full budget.
    pub fn build(self) -> SimulatedApi {
        let now = Instant::now();
        let limits = [
            (Dimension::Requests, self.config.requests),
            (Dimension::Tokens, self.config.tokens),
        ]
        .into_iter()
        .filter_map(|(dimension, limiter)| {
            let limiter = limiter?;
            let origin = self
                .config
                .window_origin
                .unwrap_or_else(|| wall_clock_boundary(now, limiter));
            Some((dimension, limiter.start(origin)))
        })
        .collect();
        let (outage, _) = watch::channel(None);
        SimulatedApi {
            inner: Arc::new(Inner {
                config: self.config,
                outage,
                state: Mutex::new(State {
                    limits,
                    stats: SimStats::default(),
                    log: Vec::new(),
                }),
                listeners: Mutex::new(Vec::new()),
            }),
        }
    }
}

/// The next instant at which an aligned window's boundary falls on a wall-clock multiple of
/// its length since the Unix epoch (the next calendar minute for a minute); `now` for other
/// limiters. Computed forwards, so no instant before `now` has to exist.
fn wall_clock_boundary(now: Instant, limiter: LimiterConfig) -> Instant {
    let LimiterConfig::FixedWindowAligned { per, .. } = limiter else {
        return now;
    };
    let per_nanos = per.as_nanos();
    if per_nanos == 0 {
        return now;
    }
    let since_epoch = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    let into = since_epoch % per_nanos;
    let to_next = crate::time::nanos_to_duration((per_nanos - into) % per_nanos);
    now.checked_add(to_next).unwrap_or(now)
}

/// A simulated rate-limited HTTP API. Cloning is cheap and every clone shares the same
/// limits, outage and counters.
///
/// Use it as the last middleware of a `reqwest_middleware` client, or serve it on a
/// loopback socket with [`serve`](Self::serve). See the [module docs](self) for what it
/// answers.
///
/// ```
/// use reqwest_throttle::sim::{Outage, SimulatedApi};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let api = SimulatedApi::builder().build();
/// let server = api.serve().await?;
/// let client = reqwest::Client::new();
///
/// assert_eq!(client.get(server.url("/health")).send().await?.status(), 200);
/// api.set_outage(Some(Outage::Status(http::StatusCode::SERVICE_UNAVAILABLE)));
/// assert_eq!(client.get(server.url("/health")).send().await?.status(), 503);
/// api.set_outage(None);
/// assert_eq!(client.get(server.url("/health")).send().await?.status(), 200);
/// assert_eq!((api.stats().ok, api.stats().failed), (2, 1));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct SimulatedApi {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    /// The current outage; the socket servers subscribe to it.
    outage: watch::Sender<Option<Outage>>,
    state: Mutex<State>,
    /// The sockets of running servers, closed and reopened by `set_outage` itself so that
    /// an outage takes effect before `set_outage` returns.
    listeners: Mutex<Vec<Weak<server::Listening>>>,
}

#[derive(Debug)]
struct State {
    /// One limiter per limited dimension; a request must fit all of them.
    limits: Vec<(Dimension, Limiter)>,
    stats: SimStats,
    log: Vec<RecordedRequest>,
}

/// A request as the simulated server sees it, whichever way it came in.
struct SimRequest {
    method: Method,
    path: String,
    body: Bytes,
}

/// What the server decided for one request.
enum Decision {
    Ok {
        quotas: Vec<(Dimension, Quota)>,
        /// The LLM call answered, and the tokens it reports.
        llm: Option<(LlmCall, Generated)>,
    },
    Limited {
        quotas: Vec<(Dimension, Quota)>,
        dimension: Dimension,
        retry_in: Duration,
    },
    Failed {
        status: StatusCode,
        retry_in: Option<Duration>,
    },
    InsufficientQuota,
    Refused(io::ErrorKind),
}

/// An answer, before it is turned into a `reqwest` or `hyper` response.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// The server's reply: an answer, or a dropped connection.
enum Reply {
    Answer(Answer),
    Drop(io::ErrorKind),
}

impl SimulatedApi {
    /// Starts building a simulated API.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use http::StatusCode;
    /// use reqwest_throttle::sim::{HeaderStyle, RetryAfterStyle, SimulatedApi};
    ///
    /// // GitHub: 5 000 requests per hour, 403 when exhausted, epoch resets.
    /// let github = SimulatedApi::builder()
    ///     .limit(5_000, Duration::from_secs(3600))
    ///     .headers(HeaderStyle::GitHub)
    ///     .limited_status(StatusCode::FORBIDDEN)
    ///     .retry_after(RetryAfterStyle::None)
    ///     .build();
    /// assert_eq!(github.stats().received, 0);
    /// ```
    pub fn builder() -> SimulatedApiBuilder {
        SimulatedApiBuilder::default()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SimStats {
        self.lock().stats.clone()
    }

    /// The requests received so far, in arrival order (at most the
    /// [`record_limit`](SimulatedApiBuilder::record_limit) first ones).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().log.clone()
    }

    /// The current outage, if any.
    pub fn outage(&self) -> Option<Outage> {
        *self.inner.outage.borrow()
    }

    /// Starts (`Some`) or ends (`None`) an outage. It applies to every request decided after
    /// this call, in middleware mode and on every socket server of this API; with
    /// [`Outage::Refuse`] the servers' ports are closed before this returns and reopened (on
    /// the same port) when the outage ends.
    ///
    /// During an outage the limiter is not charged.
    pub fn set_outage(&self, outage: Option<Outage>) {
        self.inner.outage.send_replace(outage);
        let refuse = matches!(outage, Some(Outage::Refuse));
        let mut listeners = self
            .inner
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        listeners.retain(|listening| listening.strong_count() > 0);
        for listening in listeners.iter().filter_map(Weak::upgrade) {
            listening.apply_outage(refuse);
        }
    }

    /// Serves this API over HTTP/1.1 on `127.0.0.1` (an ephemeral port), sharing its limits,
    /// outage and counters. The server stops when the returned [`SimServer`] is dropped.
    ///
    /// # Errors
    ///
    /// If no loopback port can be bound.
    pub async fn serve(&self) -> io::Result<SimServer> {
        server::start(self.clone()).await
    }

    /// Handles one request: decides, waits the latency, answers.
    async fn respond(&self, request: SimRequest) -> Reply {
        let _in_flight = InFlight::enter(self);
        let decision = self.decide(&request);
        let reply = self.render(decision);
        if matches!(reply, Reply::Answer(_)) && !self.inner.config.latency.is_zero() {
            tokio::time::sleep(self.inner.config.latency).await;
        }
        reply
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No code path panics while holding the lock; recover the state anyway rather than
        // propagate a poison into the caller's test.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Decides what to do with a request and counts it, all under one lock so that
    /// concurrent requests are decided in a single order.
    fn decide(&self, request: &SimRequest) -> (u64, Decision) {
        let outage = self.outage();
        let config = &self.inner.config;
        let call = LlmCall::parse(
            &request.method,
            &request.path,
            &request.body,
            config.token_rule,
        );
        let mut state = self.lock();
        let now = Instant::now();
        let decision = match (outage, config.fail_every) {
            (Some(Outage::InsufficientQuota), _) => Decision::InsufficientQuota,
            (Some(Outage::Refuse), _) => Decision::Refused(io::ErrorKind::ConnectionRefused),
            (Some(Outage::Hangup), _) => Decision::Refused(io::ErrorKind::ConnectionReset),
            (Some(Outage::Status(status)), _) => Decision::Failed {
                status,
                retry_in: None,
            },
            (Some(Outage::StatusWithRetryAfter(status, delay)), _) => Decision::Failed {
                status,
                retry_in: Some(delay),
            },
            (None, Some(status)) => Decision::Failed {
                status,
                retry_in: None,
            },
            (None, None) => {
                let cost = Cost::request(call.as_ref().map_or(0, LlmCall::charge));
                // The sequence number this request is about to get, below.
                let seq = state.stats.received.saturating_add(1);
                state.admit(now, cost, call.map(|call| (call.generate(seq), call)))
            }
        };
        let (outcome, status) = match &decision {
            Decision::Ok { .. } => (Outcome::Ok, Some(StatusCode::OK)),
            Decision::InsufficientQuota => (Outcome::Limited, Some(StatusCode::TOO_MANY_REQUESTS)),
            Decision::Limited { .. } => (Outcome::Limited, Some(config.limited_status)),
            Decision::Failed { status, .. } => (Outcome::Failed, Some(*status)),
            Decision::Refused(_) => (Outcome::Refused, None),
        };
        let stats = &mut state.stats;
        stats.received = stats.received.saturating_add(1);
        let seq = stats.received;
        if let Decision::Ok {
            llm: Some((call, generated)),
            ..
        } = &decision
        {
            stats.tokens_charged = stats.tokens_charged.saturating_add(call.charge());
            stats.prompt_tokens = stats.prompt_tokens.saturating_add(generated.prompt);
            stats.completion_tokens = stats.completion_tokens.saturating_add(generated.completion);
        }
        let counter = match outcome {
            Outcome::Ok => &mut stats.ok,
            Outcome::Limited => &mut stats.limited,
            Outcome::Failed => &mut stats.failed,
            Outcome::Refused => &mut stats.refused,
        };
        *counter = counter.saturating_add(1);
        stats.first_request.get_or_insert(now);
        stats.last_request = Some(now);
        if state.log.len() < config.record_limit {
            state.log.push(RecordedRequest {
                seq,
                at: now,
                method: request.method.clone(),
                path: request.path.clone(),
                outcome,
                status,
            });
        }
        drop(state);
        tracing::trace!(seq, method = %request.method, path = %request.path, ?outcome, "simulated API decided");
        (seq, decision)
    }

    /// Turns a decision into headers and a body.
    fn render(&self, (seq, decision): (u64, Decision)) -> Reply {
        let config = &self.inner.config;
        let wall_now = SystemTime::now();
        let mut headers = HeaderMap::new();
        headers::date(wall_now, &mut headers);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let (status, body) = match decision {
            Decision::Refused(kind) => return Reply::Drop(kind),
            Decision::Ok { quotas, llm } => {
                headers::rate_limit(
                    config.headers,
                    &quotas,
                    config.reset_late,
                    wall_now,
                    &mut headers,
                );
                match llm {
                    Some((call, generated)) => {
                        let (content_type, body) = call.render(seq, generated);
                        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
                        (StatusCode::OK, body)
                    }
                    None => (StatusCode::OK, format!("{{\"id\":{seq},\"ok\":true}}")),
                }
            }
            Decision::InsufficientQuota => (
                StatusCode::TOO_MANY_REQUESTS,
                "{\"error\":{\"message\":\"You exceeded your current quota, please check your plan and billing details.\",\"type\":\"insufficient_quota\",\"param\":null,\"code\":\"insufficient_quota\"}}".to_owned(),
            ),
            Decision::Limited {
                quotas,
                dimension,
                retry_in,
            } => {
                let late = config.reset_late;
                headers::rate_limit(config.headers, &quotas, late, wall_now, &mut headers);
                headers::retry_after(
                    config.retry_after,
                    retry_in.saturating_add(late),
                    wall_now,
                    &mut headers,
                );
                let quota = quotas
                    .iter()
                    .find(|(limited, _)| *limited == dimension)
                    .map(|(_, quota)| *quota);
                let limit = quota.map_or(0, |quota| quota.limit);
                let window = quota.map_or(Duration::ZERO, |quota| quota.window);
                let body = format!(
                    "{{\"error\":{{\"message\":\"Rate limit reached on {name}: limit {limit} per {window}. Please try again in {retry}.\",\"type\":\"{name}\",\"code\":\"rate_limit_exceeded\"}}}}",
                    name = dimension.name(),
                    window = headers::go_duration(window),
                    retry = headers::go_duration(retry_in),
                );
                (config.limited_status, body)
            }
            Decision::Failed { status, retry_in } => {
                if let Some(delay) = retry_in {
                    // The caller asked for a hint: give one even if limited answers have none.
                    let style = match config.retry_after {
                        RetryAfterStyle::None => RetryAfterStyle::Seconds,
                        style => style,
                    };
                    headers::retry_after(style, delay, wall_now, &mut headers);
                }
                let reason = status.canonical_reason().unwrap_or("error");
                let body = format!(
                    "{{\"error\":{{\"message\":\"simulated failure: {} {reason}\",\"type\":\"server_error\",\"code\":{}}}}}",
                    status.as_u16(),
                    status.as_u16()
                );
                (status, body)
            }
        };
        Reply::Answer(Answer {
            status,
            headers,
            body: Bytes::from(body),
        })
    }
}

impl State {
    /// Admits a request if every dimension has room for its cost (and charges them all), or
    /// reports the dimension that will be free last.
    fn admit(&mut self, now: Instant, cost: Cost, call: Option<(Generated, LlmCall)>) -> Decision {
        let verdicts: Vec<(Dimension, Verdict)> = self
            .limits
            .iter()
            .map(|(dimension, limiter)| (*dimension, limiter.peek(now, cost.of(*dimension))))
            .collect();
        let quotas = verdicts
            .iter()
            .map(|(dimension, verdict)| (*dimension, verdict.quota()))
            .collect();
        let limited = verdicts
            .iter()
            .filter_map(|(dimension, verdict)| match verdict {
                Verdict::Limit { retry_in, .. } => Some((*dimension, *retry_in)),
                Verdict::Admit(_) => None,
            })
            .max_by_key(|(_, retry_in)| *retry_in);
        match limited {
            Some((dimension, retry_in)) => Decision::Limited {
                quotas,
                dimension,
                retry_in,
            },
            None => {
                for (dimension, limiter) in &mut self.limits {
                    limiter.commit(now, cost.of(*dimension));
                }
                Decision::Ok {
                    quotas,
                    llm: call.map(|(generated, call)| (call, generated)),
                }
            }
        }
    }
}

/// Counts a request as in flight for as long as it lives (even if its future is dropped).
struct InFlight<'a> {
    api: &'a SimulatedApi,
}

impl<'a> InFlight<'a> {
    fn enter(api: &'a SimulatedApi) -> Self {
        let mut state = api.lock();
        let stats = &mut state.stats;
        stats.in_flight = stats.in_flight.saturating_add(1);
        stats.max_in_flight = stats.max_in_flight.max(stats.in_flight);
        InFlight { api }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut state = self.api.lock();
        state.stats.in_flight = state.stats.in_flight.saturating_sub(1);
    }
}

/// The simulated API as the last middleware of a chain: it answers every request itself and
/// never calls `next`. The response's URL is the request's.
///
/// An [`Outage::Refuse`] or [`Outage::Hangup`] becomes
/// `reqwest_middleware::Error::Middleware` wrapping an [`io::Error`] of kind
/// `ConnectionRefused` or `ConnectionReset` (a `reqwest::Error` cannot be built outside
/// reqwest).
#[async_trait::async_trait]
impl Middleware for SimulatedApi {
    async fn handle(
        &self,
        req: reqwest::Request,
        _extensions: &mut Extensions,
        _next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let url = req.url();
        let path = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        let request = SimRequest {
            method: req.method().clone(),
            path,
            body: req
                .body()
                .and_then(|body| body.as_bytes())
                .map(Bytes::copy_from_slice)
                .unwrap_or_default(),
        };
        match self.respond(request).await {
            Reply::Answer(answer) => {
                let mut builder = http::Response::builder()
                    .status(answer.status)
                    .version(Version::HTTP_11)
                    .url(req.url().clone());
                if let Some(headers) = builder.headers_mut() {
                    *headers = answer.headers;
                }
                let response = builder
                    .body(answer.body)
                    .map_err(reqwest_middleware::Error::middleware)?;
                Ok(reqwest::Response::from(response))
            }
            Reply::Drop(kind) => Err(reqwest_middleware::Error::middleware(dropped(kind))),
        }
    }
}

/// The error a client sees when the simulated server drops its request.
fn dropped(kind: io::ErrorKind) -> io::Error {
    let what = match kind {
        io::ErrorKind::ConnectionRefused => "refused the connection (Outage::Refuse)",
        _ => "closed the connection without answering (Outage::Hangup)",
    };
    io::Error::new(kind, format!("simulated API {what}"))
}
