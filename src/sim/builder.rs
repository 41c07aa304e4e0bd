//! [`SimulatedApiBuilder`]: the limits, headers, latency and failures a simulated API is built
//! with.

use std::time::{Duration, SystemTime};

use http::StatusCode;
use tokio::time::Instant;

use super::api::{SimulatedApi, WallClock};
use super::config::Config;
use super::headers::{HeaderStyle, RetryAfterStyle};
use super::limiter::{Dimension, LimiterConfig};
use super::token_rule::{TokenRule, UsageRule};

/// Builds a [`SimulatedApi`]; see [`SimulatedApi::builder`].
///
/// Without a limit the server admits everything. Defaults: no rate-limit headers,
/// `Retry-After` in seconds on limited answers, 429 as the limited status, no latency, and
/// the first 100 000 requests recorded.
#[derive(Clone, Debug, Default)]
#[must_use = "a builder does nothing until `build` is called"]
#[non_exhaustive]
pub struct SimulatedApiBuilder {
    config: Config,
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
    /// [module docs](super#llm-calls-feature-llm)). Requests that are not LLM calls cost no
    /// tokens. Announced as `x-ratelimit-{limit,remaining,reset}-tokens` with
    /// [`HeaderStyle::OpenAi`]; a refusal's body says `"type": "tokens"`.
    pub fn tokens_per_minute(self, tpm: u64) -> Self {
        self.tokens(
            LimiterConfig::refilled_over(tpm, Duration::from_secs(60)),
            false,
        )
    }

    /// At most `tokens` tokens per fixed window of length `per` (see [`limit`](Self::limit)
    /// for how windows open). Replaces [`tokens_per_minute`](Self::tokens_per_minute).
    pub fn tokens_limit(self, tokens: u64, per: Duration) -> Self {
        self.tokens(LimiterConfig::FixedWindow { limit: tokens, per }, false)
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
    pub fn tokens_bucket(self, rate_per_sec: f64, burst: u64) -> Self {
        self.tokens(LimiterConfig::token_bucket(rate_per_sec, burst), false)
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

    /// At most `requests` requests in any span of `per` (a sliding counter, as a log of
    /// recent requests keeps it): a request is admitted while fewer than `requests` were
    /// admitted in the `per` before it. Replaces any other requests limit.
    pub fn sliding_limit(mut self, requests: u64, per: Duration) -> Self {
        self.config.requests = Some(LimiterConfig::SlidingCounter {
            limit: requests,
            per,
            counts_refused: false,
        });
        self
    }

    /// As [`sliding_limit`](Self::sliding_limit), but every request that arrives is counted,
    /// the refused ones too: a client that retries within the span keeps it full.
    pub fn sliding_limit_counting_refusals(mut self, requests: u64, per: Duration) -> Self {
        self.config.requests = Some(LimiterConfig::SlidingCounter {
            limit: requests,
            per,
            counts_refused: true,
        });
        self
    }

    /// The server's wall clock when the API is built (default: the real time then); it
    /// advances with the tokio clock from there. Clock-aligned windows fall on its multiples
    /// of their length, and `Date`, epoch resets and HTTP-date `Retry-After`s are read off it:
    /// a test that sets it runs the same way every time, whatever the real time's fraction of
    /// a second.
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    ///
    /// use reqwest_throttle::sim::{HeaderStyle, SimulatedApi};
    ///
    /// // 300 ms into a second: the first aligned one-second window has 700 ms left.
    /// let api = SimulatedApi::builder()
    ///     .limit_aligned(10, Duration::from_secs(1))
    ///     .headers(HeaderStyle::FlaskLimiter)
    ///     .wall_clock(UNIX_EPOCH + Duration::from_millis(1_800_000_000_300))
    ///     .build();
    /// # drop(api);
    /// ```
    pub fn wall_clock(mut self, at_build: SystemTime) -> Self {
        self.config.wall_clock = Some(at_build);
        self
    }

    /// At most `tokens` tokens per clock-aligned window of length `per` (see
    /// [`limit_aligned`](Self::limit_aligned)). Replaces any other tokens limit.
    pub fn tokens_limit_aligned(self, tokens: u64, per: Duration) -> Self {
        self.tokens(
            LimiterConfig::FixedWindowAligned { limit: tokens, per },
            false,
        )
    }

    /// Where the boundaries of clock-aligned windows fall: at `origin` and every multiple of
    /// the window's length before and after it (`origin` may be in the past or the future).
    /// Without it they fall on wall-clock multiples of the length, which is realistic but not
    /// reproducible.
    pub fn window_origin(mut self, origin: Instant) -> Self {
        self.config.window_origin = Some(origin);
        self
    }

    /// At most `tokens` tokens per clock-aligned window of length `per` (see
    /// [`limit_aligned`](Self::limit_aligned)), **counted after the answer** as an LLM proxy
    /// counts them (LiteLLM's per-key TPM): a call is admitted while the window's count is
    /// below the limit, whatever it will cost, and the tokens its answer reports in `usage`
    /// (prompt + completion, by the [`UsageRule`]) are counted once the answer has left. The
    /// announced `remaining` is what the window had left when the call arrived. Replaces any
    /// other tokens limit.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use reqwest_throttle::sim::{HeaderStyle, SimulatedApi};
    ///
    /// // A proxy's key: 30 requests and 1 500 tokens per calendar minute.
    /// let proxy = SimulatedApi::builder()
    ///     .limit_aligned(30, Duration::from_secs(60))
    ///     .tokens_counted_after(1_500, Duration::from_secs(60))
    ///     .headers(HeaderStyle::OpenAi)
    ///     .build();
    /// # let _ = proxy;
    /// ```
    pub fn tokens_counted_after(self, tokens: u64, per: Duration) -> Self {
        self.tokens(
            LimiterConfig::FixedWindowAligned { limit: tokens, per },
            true,
        )
    }

    /// Sets the tokens limit, charged on arrival or counted after the answer.
    fn tokens(mut self, limiter: LimiterConfig, after_answer: bool) -> Self {
        self.config.tokens = Some(limiter);
        self.config.tokens_after_answer = after_answer;
        self
    }

    /// How the server's limiter counts an LLM call's tokens on arrival:
    /// [`TokenRule::CharsOver4`] (the default: characters of the whole body / 4 plus the
    /// completion allowance), [`TokenRule::CharsOver4FixedOutput`] (a flat output charge) or
    /// [`TokenRule::ScaledEstimate`] (the client's own estimate off by a known factor).
    ///
    /// ```
    /// use reqwest_throttle::sim::{SimulatedApi, TokenRule};
    ///
    /// // A mock that charges ⌈body / 4⌉ + 20 output tokens on arrival.
    /// let api = SimulatedApi::builder()
    ///     .tokens_bucket(1_000.0, 1_000)
    ///     .token_rule(TokenRule::CharsOver4FixedOutput(20))
    ///     .build();
    /// # let _ = api;
    /// ```
    pub fn token_rule(mut self, rule: TokenRule) -> Self {
        self.config.token_rule = rule;
        self
    }

    /// What the answer's `usage` reports as the prompt tokens: [`UsageRule::AsCharged`] (the
    /// default) or [`UsageRule::Words`], the server's own tokenizer, which is not what its
    /// limiter charged (as with real providers).
    ///
    /// ```
    /// use reqwest_throttle::sim::{SimulatedApi, UsageRule};
    ///
    /// let api = SimulatedApi::builder()
    ///     .tokens_per_minute(40_000)
    ///     .usage_rule(UsageRule::Words)
    ///     .build();
    /// # let _ = api;
    /// ```
    pub fn usage_rule(mut self, rule: UsageRule) -> Self {
        self.config.usage_rule = rule;
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
    /// are still counted in [`SimStats`](super::SimStats). Default 100 000.
    pub fn record_limit(mut self, requests: usize) -> Self {
        self.config.record_limit = requests;
        self
    }

    /// The simulated API, with an empty history and full budget.
    pub fn build(self) -> SimulatedApi {
        let wall = WallClock::start(self.config.wall_clock);
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
                .unwrap_or_else(|| wall_clock_boundary(now, wall.now(), limiter));
            Some((dimension, limiter.start(origin)))
        })
        .collect();
        SimulatedApi::new(self.config, limits, wall)
    }
}

/// The next instant at which an aligned window's boundary falls on a wall-clock multiple of
/// its length since the Unix epoch (the next calendar minute for a minute); `now` for other
/// limiters. Computed forwards, so no instant before `now` has to exist.
fn wall_clock_boundary(now: Instant, wall_now: SystemTime, limiter: LimiterConfig) -> Instant {
    let LimiterConfig::FixedWindowAligned { per, .. } = limiter else {
        return now;
    };
    let per_nanos = per.as_nanos();
    if per_nanos == 0 {
        return now;
    }
    let since_epoch = wall_now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    let into = since_epoch % per_nanos;
    let to_next = crate::time::nanos_to_duration((per_nanos - into) % per_nanos);
    now.checked_add(to_next).unwrap_or(now)
}
