//! What the throttle has done: counters per lane and a snapshot of them.
//!
//! [`Throttle::stats`](crate::Throttle::stats) takes a [`ThrottleStats`] snapshot at any time
//! without stopping traffic (the counters are atomics). Every decision is also a `tracing` event
//! under the `reqwest_throttle` target, inside a span per request with its lane and attempt.

use std::time::Duration;

use crate::breaker::BreakerSnapshot;
use crate::key::LaneKey;

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

    /// Attempts sent over all lanes.
    pub fn total_sent(&self) -> u64 {
        self.lanes.iter().map(|lane| lane.sent).sum()
    }
}
