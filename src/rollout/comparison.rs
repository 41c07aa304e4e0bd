//! What a lane in a rollout counts: its enforced and its shadowed requests side by side, and
//! what the throttle would have done to the shadowed ones.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::histogram::{LatencyHistogram, Percentiles};
use super::Side;
use crate::time::duration_to_nanos;

/// Why the throttle would have refused a shadowed request (it was sent anyway).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WouldRefuse {
    /// Its turn for rate was further away than its `max_wait` ([`Error::WouldWait`](crate::Error::WouldWait)).
    WouldWait,
    /// A cooldown ran past its `max_wait` ([`Error::CoolingDown`](crate::Error::CoolingDown)).
    CoolingDown,
    /// Its cost exceeds a whole burst ([`Error::CostTooLarge`](crate::Error::CostTooLarge)).
    CostTooLarge,
    /// The lane's circuit was open ([`Error::CircuitOpen`](crate::Error::CircuitOpen)).
    CircuitOpen,
}

impl WouldRefuse {
    /// Every reason, in the order of [`WouldHave::refused`].
    pub const ALL: [WouldRefuse; 4] = [
        WouldRefuse::WouldWait,
        WouldRefuse::CoolingDown,
        WouldRefuse::CostTooLarge,
        WouldRefuse::CircuitOpen,
    ];

    /// The reason as a metrics label: `would_wait`, `cooling_down`, `cost_too_large`, `circuit_open`
    /// (the same words as `reqwest_throttle_refused_total`'s).
    pub fn as_str(self) -> &'static str {
        match self {
            WouldRefuse::WouldWait => "would_wait",
            WouldRefuse::CoolingDown => "cooling_down",
            WouldRefuse::CostTooLarge => "cost_too_large",
            WouldRefuse::CircuitOpen => "circuit_open",
        }
    }
}

/// One side of a rollout (enforced or shadowed requests) of one lane.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SideStats {
    /// Requests handled on this side (each counted once, whatever its retries).
    pub requests: u64,
    /// Attempts sent to the server (retries count; shadowed requests make one each).
    pub attempts: u64,
    /// Attempts the server answered "rate limited" (429, GitHub's 403 with nothing remaining).
    pub rate_limited: u64,
    /// Requests whose final outcome was a 2xx answer: the goodput.
    pub succeeded: u64,
    /// Requests that ended in an error (the throttle's own refusal or a transport failure).
    pub failed: u64,
    /// Time from the request entering the throttle to its final outcome, as the caller saw it
    /// (waits and retries included); from a fixed-size log histogram, within 3.2 % (exact
    /// below 16 µs).
    pub latency: Percentiles,
}

/// What the throttle would have done to the shadowed requests of one lane, had it enforced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WouldHave {
    /// Shadowed requests that would have waited for their turn (rate or cooldown).
    pub waited: u64,
    /// The sum of those waits: what the lane's budget would have made them wait.
    pub waited_total: Duration,
    /// The longest of those waits.
    pub waited_max: Duration,
    /// Percentiles of the would-have wait over every shadowed request not refused (zero waits
    /// included), within 3.2 % like [`SideStats::latency`].
    pub wait: Percentiles,
    /// Shadowed requests that found no free concurrency slot: they would have queued for one
    /// (for how long depends on when the holders finish, which shadowing does not tell).
    pub queued_for_slot: u64,
    /// Shadowed requests the throttle would have refused, by reason (indexed as
    /// [`WouldRefuse::ALL`]).
    pub refused: [u64; WouldRefuse::ALL.len()],
    /// Shadowed attempts the throttle would have retried (the retry was not made).
    pub retried: u64,
}

impl WouldHave {
    /// Would-have refusals for `reason`.
    pub fn refused(&self, reason: WouldRefuse) -> u64 {
        self.refused[reason as usize]
    }

    /// Would-have refusals for every reason.
    pub fn refused_total(&self) -> u64 {
        self.refused.iter().sum()
    }
}

/// A lane's rollout, compared: see [`LaneStats::rollout`](crate::LaneStats::rollout).
///
/// ```
/// use reqwest_throttle::rollout::RolloutStats;
///
/// let stats = RolloutStats::default();
/// // Before raising the share: enforced traffic should see fewer 429s per attempt at the
/// // same goodput.
/// assert_eq!(stats.enforced.rate_limited, 0);
/// assert_eq!(stats.shadowed.succeeded, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct RolloutStats {
    /// The share of requests the lane's policy enforces now, in percent.
    pub enforced_percent: f64,
    /// The requests the throttle enforced.
    pub enforced: SideStats,
    /// The requests sent at once in shadow mode.
    pub shadowed: SideStats,
    /// What enforcing would have done to the shadowed requests.
    pub would_have: WouldHave,
}

#[derive(Debug, Default)]
struct SideCounters {
    requests: AtomicU64,
    attempts: AtomicU64,
    rate_limited: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    latency: LatencyHistogram,
}

impl SideCounters {
    fn snapshot(&self) -> SideStats {
        SideStats {
            requests: self.requests.load(Relaxed),
            attempts: self.attempts.load(Relaxed),
            rate_limited: self.rate_limited.load(Relaxed),
            succeeded: self.succeeded.load(Relaxed),
            failed: self.failed.load(Relaxed),
            latency: self.latency.percentiles(),
        }
    }
}

/// The counters behind a [`RolloutStats`], updated without locks.
#[derive(Debug, Default)]
pub(crate) struct Comparison {
    enforced: SideCounters,
    shadowed: SideCounters,
    waited: AtomicU64,
    waited_total_ns: AtomicU64,
    waited_max_ns: AtomicU64,
    wait: LatencyHistogram,
    queued_for_slot: AtomicU64,
    refused: [AtomicU64; WouldRefuse::ALL.len()],
    retried: AtomicU64,
}

/// How a request ended, as the comparison counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Succeeded,
    Answered,
    Failed,
}

impl Outcome {
    /// How `result`, the request's final outcome, ends.
    pub fn of(result: &reqwest_middleware::Result<reqwest::Response>) -> Outcome {
        match result {
            Ok(response) if response.status().is_success() => Outcome::Succeeded,
            Ok(_) => Outcome::Answered,
            Err(_) => Outcome::Failed,
        }
    }
}

impl Comparison {
    fn side(&self, side: Side) -> &SideCounters {
        match side {
            Side::Enforced => &self.enforced,
            Side::Shadowed => &self.shadowed,
        }
    }

    /// An attempt on `side` came back.
    pub fn attempted(&self, side: Side, rate_limited: bool) {
        let counters = self.side(side);
        counters.attempts.fetch_add(1, Relaxed);
        if rate_limited {
            counters.rate_limited.fetch_add(1, Relaxed);
        }
    }

    /// A request on `side` ended with `outcome`, `latency` after it entered the throttle.
    pub fn ended(&self, side: Side, outcome: Outcome, latency: Duration) {
        let counters = self.side(side);
        counters.requests.fetch_add(1, Relaxed);
        match outcome {
            Outcome::Succeeded => counters.succeeded.fetch_add(1, Relaxed),
            Outcome::Failed => counters.failed.fetch_add(1, Relaxed),
            Outcome::Answered => 0,
        };
        counters.latency.record(latency);
    }

    /// A shadowed request would have waited `wait` for its turn (zero: it would have left at once).
    pub fn would_wait(&self, wait: Duration) {
        self.wait.record(wait);
        if !wait.is_zero() {
            let nanos = duration_to_nanos(wait);
            self.waited.fetch_add(1, Relaxed);
            self.waited_total_ns.fetch_add(nanos, Relaxed);
            self.waited_max_ns.fetch_max(nanos, Relaxed);
        }
    }

    /// A shadowed request would have been refused for `reason`.
    pub fn would_refuse(&self, reason: WouldRefuse) {
        self.refused[reason as usize].fetch_add(1, Relaxed);
    }

    /// A shadowed request found no free concurrency slot.
    pub fn would_queue_for_slot(&self) {
        self.queued_for_slot.fetch_add(1, Relaxed);
    }

    /// A shadowed attempt would have been retried.
    pub fn would_retry(&self) {
        self.retried.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self, enforced_percent: f64) -> RolloutStats {
        RolloutStats {
            enforced_percent,
            enforced: self.enforced.snapshot(),
            shadowed: self.shadowed.snapshot(),
            would_have: WouldHave {
                waited: self.waited.load(Relaxed),
                waited_total: Duration::from_nanos(self.waited_total_ns.load(Relaxed)),
                waited_max: Duration::from_nanos(self.waited_max_ns.load(Relaxed)),
                wait: self.wait.percentiles(),
                queued_for_slot: self.queued_for_slot.load(Relaxed),
                refused: std::array::from_fn(|i| self.refused[i].load(Relaxed)),
                retried: self.retried.load(Relaxed),
            },
        }
    }
}
