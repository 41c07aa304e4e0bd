//! What the throttle has done: counters per lane and a snapshot of them.
//!
//! [`Throttle::stats`](crate::Throttle::stats) takes a [`ThrottleStats`] snapshot at any time
//! without stopping traffic (the counters are atomics). Every decision is also a `tracing` event
//! under the `reqwest_throttle` target, inside a span per request with its lane and attempt.

use std::time::Duration;

use crate::breaker::BreakerSnapshot;
use crate::key::LaneKey;
use crate::rollout::RolloutStats;

/// A snapshot of one lane's counters.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct LaneStats {
    /// The lane.
    pub key: LaneKey,
    /// Requests handed to the next middleware (each attempt counts).
    pub sent: u64,
    /// Attempts that came back with a response, whatever its status.
    pub completed: u64,
    /// Attempts that came back with a transport error.
    pub errors: u64,
    /// Requests refused by the throttle itself (would wait too long, cost too large).
    pub rejected: u64,
    /// Total time requests spent waiting for their turn (rate, cooldown and concurrency).
    pub waited_total: Duration,
    /// The longest single wait.
    pub waited_max: Duration,
    /// Requests in flight now.
    pub in_flight: u64,
    /// Requests waiting for their turn now.
    pub queued: u64,
    /// Budget reservations booked and not yet used or given back (requests waiting for a slot).
    pub outstanding: u64,
    /// The lane's current request rate limit, per second; `None` when it has none.
    pub rate: Option<f64>,
    /// How long the lane's cooldown still lasts, if one runs.
    pub cooldown_remaining: Option<Duration>,
    /// Retries made (attempts after the first).
    pub retries: u64,
    /// Retries refused because the lane's retry budget was spent.
    pub retry_budget_exhausted: u64,
    /// Responses that said "rate limited" (429, GitHub's 403 with nothing remaining).
    pub rate_limited: u64,
    /// Pauses of the whole lane set from server signals.
    pub cooldowns: u64,
    /// Responses whose rate-limit headers re-paced the lane.
    pub paced: u64,
    /// Requests refused at once because the lane's circuit was open.
    pub circuit_rejected: u64,
    /// Reported costs (an LLM response's `usage`) above what the lane's limit admits at once,
    /// charged only up to it; each is also a `tracing` warning (see
    /// [`Budget::settle`](crate::limiter::Budget::settle)).
    pub clamped_reports: u64,
    /// The circuit breaker's state and counters, when the lane has one.
    pub breaker: Option<BreakerSnapshot>,
    /// Enforced vs shadowed requests and what the throttle would have done to the shadowed
    /// ones, when the lane takes part in a rollout (its policy enforces less than 100 %, or a
    /// request was shadowed): see [`crate::rollout`].
    pub rollout: Option<RolloutStats>,
}

/// What the shared store (feature `redis`) has done, over every lane.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// Whether the store answered its latest call.
    pub up: bool,
    /// Calls that came back with an answer.
    pub round_trips: u64,
    /// Calls that failed or timed out (each marks the store down).
    pub failures: u64,
    /// Bookings made in this process's fallback budget because the store was down.
    pub fallbacks: u64,
    /// Requests refused with `Error::StoreUnavailable` because the store was down.
    pub unavailable: u64,
    /// Times the store answered again after being down.
    pub reconnects: u64,
}

/// A snapshot of every lane the throttle knows.
///
/// ```
/// use reqwest_throttle::Throttle;
///
/// let throttle = Throttle::builder().build().unwrap();
/// let stats = throttle.stats();
/// assert!(stats.lanes.is_empty());
/// assert_eq!(stats.total_sent(), 0);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ThrottleStats {
    /// One entry per lane, sorted by key.
    pub lanes: Vec<LaneStats>,
    /// The shared store's counters, when the throttle has one (feature `redis`).
    pub store: Option<StoreStats>,
}

impl ThrottleStats {
    /// The stats of the lane named `key` (as in [`LaneKey::as_str`]).
    pub fn lane(&self, key: &str) -> Option<&LaneStats> {
        self.lanes.iter().find(|lane| lane.key.as_str() == key)
    }

    /// The lanes of `host` (written as in a URL: `api.openai.com`, `[::1]`; case and a
    /// trailing dot do not matter), whatever their port, model or API key. An LLM lane's name
    /// carries its key's fingerprint, which the caller need not know to find it.
    ///
    /// ```
    /// use reqwest_throttle::Throttle;
    ///
    /// let throttle = Throttle::builder().build().unwrap();
    /// let stats = throttle.stats();
    /// let sent: u64 = stats.lanes_for_host("api.openai.com").map(|lane| lane.sent).sum();
    /// assert_eq!(sent, 0);
    /// ```
    pub fn lanes_for_host<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a LaneStats> {
        let host = host.strip_suffix('.').unwrap_or(host);
        self.lanes.iter().filter(move |lane| {
            lane.key
                .host()
                .is_some_and(|lane_host| lane_host.eq_ignore_ascii_case(host))
        })
    }

    /// The lanes of `model` at `host` (LLM lanes: one per API key).
    pub fn lanes_for_model<'a>(
        &'a self,
        host: &'a str,
        model: &'a str,
    ) -> impl Iterator<Item = &'a LaneStats> {
        self.lanes_for_host(host)
            .filter(move |lane| lane.key.model() == Some(model))
    }

    /// Attempts sent over all lanes.
    pub fn total_sent(&self) -> u64 {
        self.lanes.iter().map(|lane| lane.sent).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(key: &str, sent: u64) -> LaneStats {
        LaneStats {
            key: LaneKey::new(key),
            sent,
            completed: 0,
            errors: 0,
            rejected: 0,
            waited_total: Duration::ZERO,
            waited_max: Duration::ZERO,
            in_flight: 0,
            queued: 0,
            outstanding: 0,
            rate: None,
            cooldown_remaining: None,
            retries: 0,
            retry_budget_exhausted: 0,
            rate_limited: 0,
            cooldowns: 0,
            paced: 0,
            circuit_rejected: 0,
            clamped_reports: 0,
            breaker: None,
            rollout: None,
        }
    }

    /// An LLM lane's name carries its API key's fingerprint; callers find it by host and model
    /// without knowing the key.
    #[test]
    fn llm_lanes_are_found_by_host_and_model_without_the_key() {
        let stats = ThrottleStats {
            lanes: vec![
                lane("https://api.openai.com:443/gpt-4o/key:0a1b2c3d", 1),
                lane("https://api.openai.com:443/gpt-4o/key:ffee0011", 2),
                lane("https://api.openai.com:443/gpt-4o-mini/key:0a1b2c3d", 4),
                lane("https://api.openai.com:443/-/key:none", 8),
                lane(
                    "https://api.openai.com.evil.test:443/gpt-4o/key:0a1b2c3d",
                    16,
                ),
                lane("http://[::1]:8080", 32),
                lane("tenant:api.openai.com", 64),
            ],
            store: None,
        };
        fn sent<'a>(lanes: impl Iterator<Item = &'a LaneStats>) -> u64 {
            lanes.map(|lane| lane.sent).sum()
        }
        assert_eq!(sent(stats.lanes_for_host("api.openai.com")), 15);
        assert_eq!(sent(stats.lanes_for_host("API.OpenAI.com.")), 15);
        assert_eq!(sent(stats.lanes_for_model("api.openai.com", "gpt-4o")), 3);
        assert_eq!(sent(stats.lanes_for_model("api.openai.com", "gpt-4")), 0);
        assert_eq!(sent(stats.lanes_for_host("[::1]")), 32);
    }
}
