//! [`BreakerSnapshot`]: everything observable about a breaker at one instant.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::machine::Breaker;
use super::shared::{reported_state, Mode};
use super::transition::BreakerState;

/// Everything observable about a breaker at one instant, from [`Breaker::snapshot`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct BreakerSnapshot {
    /// The state as of `now`: an open breaker whose period has elapsed reports `HalfOpen`
    /// (the next admit will probe).
    pub state: BreakerState,
    /// Held by an operator ([`Breaker::force_open`] / [`Breaker::force_closed`]).
    pub forced: bool,
    /// Failures in a row since the last success (closed only).
    pub consecutive_failures: u32,
    /// Calls in the failure-rate window (0 without one).
    pub window_calls: u32,
    /// Failed calls in the failure-rate window (0 without one).
    pub window_failures: u32,
    /// Trips since the breaker was created (or reset).
    pub trips: u64,
    /// Repeated trips driving the exponential open duration; 0 once healthy for `healthy_after`.
    pub trip_streak: u32,
    /// Calls rejected since the breaker was created (or reset).
    pub rejected: u64,
    /// Half-open probes in flight.
    pub probes_in_flight: u32,
    /// Timed open: the time left until half-open. `None` in any other state.
    pub retry_in: Option<Duration>,
    /// When the breaker last opened, while it is open.
    pub open_since: Option<Instant>,
}

impl Breaker {
    /// Everything observable as of `now` (for stats and dashboards).
    pub fn snapshot(&self, now: Instant) -> BreakerSnapshot {
        let inner = self.shared.lock();
        let totals = inner
            .window
            .as_ref()
            .map(|w| w.totals(now))
            .unwrap_or_default();
        let state = reported_state(&inner, now);
        BreakerSnapshot {
            state,
            forced: inner.mode.is_forced(),
            consecutive_failures: self.shared.consecutive_failures.load(Ordering::Relaxed),
            window_calls: totals.calls,
            window_failures: totals.failures,
            trips: inner.trips,
            trip_streak: self.effective_streak(&inner, now),
            rejected: self.shared.rejected.load(Ordering::Relaxed),
            probes_in_flight: u32::try_from(inner.probes.len()).unwrap_or(u32::MAX),
            retry_in: match inner.mode {
                Mode::Open => inner
                    .open_until
                    .map(|until| until.saturating_duration_since(now)),
                _ => None,
            },
            open_since: inner.open_since,
        }
    }
}
