//! What a simulated API was built to do: the settings [`SimulatedApiBuilder`] collects, and
//! their defaults.
//!
//! [`SimulatedApiBuilder`]: super::SimulatedApiBuilder

use std::time::{Duration, SystemTime};

use http::StatusCode;
use tokio::time::Instant;

use super::headers::{HeaderStyle, RetryAfterStyle};
use super::limiter::LimiterConfig;
use super::token_rule::{TokenRule, UsageRule};

/// A simulated API's settings; each is described on the builder method that sets it.
#[derive(Clone, Debug)]
pub(super) struct Config {
    pub(super) requests: Option<LimiterConfig>,
    pub(super) tokens: Option<LimiterConfig>,
    pub(super) headers: HeaderStyle,
    pub(super) retry_after: RetryAfterStyle,
    pub(super) limited_status: StatusCode,
    pub(super) latency: Duration,
    pub(super) fail_every: Option<StatusCode>,
    pub(super) record_limit: usize,
    pub(super) token_rule: TokenRule,
    pub(super) usage_rule: UsageRule,
    /// Tokens are counted from each answer's usage once it has left, not charged on arrival.
    pub(super) tokens_after_answer: bool,
    pub(super) window_origin: Option<Instant>,
    /// The server's wall clock at build; the real time then when `None`.
    pub(super) wall_clock: Option<SystemTime>,
    pub(super) reset_late: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            requests: None,
            tokens: None,
            headers: HeaderStyle::None,
            retry_after: RetryAfterStyle::Seconds,
            limited_status: StatusCode::TOO_MANY_REQUESTS,
            latency: Duration::ZERO,
            fail_every: None,
            record_limit: 100_000,
            token_rule: TokenRule::default(),
            usage_rule: UsageRule::default(),
            tokens_after_answer: false,
            window_origin: None,
            wall_clock: None,
            reset_late: Duration::ZERO,
        }
    }
}
