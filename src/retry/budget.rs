//! The retry budget: retries may add only a fraction of a lane's recent traffic.
//!
//! The idea of Finagle's `RetryBudget` and gRPC's retry throttling: over a sliding window
//! (`ttl`, default 10 s), retries may number at most `ratio` (default 20 %) of the original
//! requests in the window plus a floor of `min_per_sec` (default 1) per second of the window, so a
//! lane with little traffic can still retry. A service that fails every request therefore sees at
//! most about `(1 + ratio)` times its normal load, never `(1 + max_retries)` times: an outage is
//! not turned into a retry storm.
//!
//! The window is a [`SlidingCounter`] of ten slots of `ttl / 10`, counted in
//! `tokio::time::Instant` (virtual in tests) from the first request or retry counted. A caller
//! whose `now` lags behind another's (read before the lock) counts in the current slot.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::sliding_counter::SlidingCounter;

const SLOTS: usize = 10;

/// How much retrying a lane's budget allows.
///
/// ```
/// use std::time::Duration;
/// use reqwest_throttle::retry::RetryBudgetConfig;
///
/// let config = RetryBudgetConfig::default();
/// assert_eq!(config.ratio, 0.2);
/// assert_eq!(config.ttl, Duration::from_secs(10));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct RetryBudgetConfig {
    /// Retries allowed per original request in the window (0.2 = 20 %).
    pub ratio: f64,
    /// Retries allowed per second of the window regardless of traffic.
    pub min_per_sec: f64,
    /// The length of the sliding window.
    pub ttl: Duration,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        RetryBudgetConfig {
            ratio: 0.2,
            min_per_sec: 1.0,
            ttl: Duration::from_secs(10),
        }
    }
}

/// What one slot of the window counts.
#[derive(Debug, Default)]
struct Slot {
    requests: u64,
    retries: u64,
}

/// A lane's retry budget (see the module doc).
#[derive(Debug)]
#[non_exhaustive]
pub struct RetryBudget {
    config: RetryBudgetConfig,
    slots: Mutex<SlidingCounter<SLOTS, Slot>>,
}

impl RetryBudget {
    /// A budget with `config`; a non-finite or negative ratio or floor counts as zero.
    pub fn new(config: RetryBudgetConfig) -> RetryBudget {
        let ttl = config.ttl.max(Duration::from_millis(SLOTS as u64));
        RetryBudget {
            config,
            slots: Mutex::new(SlidingCounter::new(ttl)),
        }
    }

    fn slots(&self) -> MutexGuard<'_, SlidingCounter<SLOTS, Slot>> {
        // The counts stay consistent even if a holder panicked: every update is one increment.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts an original request (not a retry).
    pub fn deposit(&self, now: Instant) {
        let mut slots = self.slots();
        let slot = slots.current(now);
        slot.requests = slot.requests.saturating_add(1);
    }

    /// Asks for one retry: `true` (and counted) when the budget allows it.
    pub fn try_withdraw(&self, now: Instant) -> bool {
        let ratio = finite_non_negative(self.config.ratio);
        let floor = finite_non_negative(self.config.min_per_sec) * self.config.ttl.as_secs_f64();
        let mut slots = self.slots();
        let (requests, retries) = slots.live(now).fold((0u64, 0u64), |(req, ret), slot| {
            (
                req.saturating_add(slot.requests),
                ret.saturating_add(slot.retries),
            )
        });
        let allowed = ratio * requests as f64 + floor;
        if (retries as f64) + 1.0 <= allowed {
            let slot = slots.current(now);
            slot.retries = slot.retries.saturating_add(1);
            true
        } else {
            false
        }
    }
}

fn finite_non_negative(value: f64) -> f64 {
    if value.is_finite() && value > 0.0 {
        value
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(ratio: f64, min_per_sec: f64) -> RetryBudgetConfig {
        RetryBudgetConfig {
            ratio,
            min_per_sec,
            ttl: Duration::from_secs(10),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_a_fraction_of_requests_plus_a_floor() {
        let budget = RetryBudget::new(config(0.2, 1.0));
        for _ in 0..100 {
            budget.deposit(Instant::now());
        }
        let granted = (0..1_000)
            .filter(|_| budget.try_withdraw(Instant::now()))
            .count();
        // 20 % of 100 plus 1/s over a 10 s window.
        assert_eq!(granted, 30);
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_slides() {
        let budget = RetryBudget::new(config(0.5, 0.0));
        for _ in 0..10 {
            budget.deposit(Instant::now());
        }
        assert_eq!(
            (0..100)
                .filter(|_| budget.try_withdraw(Instant::now()))
                .count(),
            5
        );
        // Ten seconds later the old requests and retries have left the window.
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(!budget.try_withdraw(Instant::now()));
        for _ in 0..4 {
            budget.deposit(Instant::now());
        }
        assert_eq!(
            (0..100)
                .filter(|_| budget.try_withdraw(Instant::now()))
                .count(),
            2
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lagging_now_counts_in_the_current_slot() {
        let budget = RetryBudget::new(config(0.5, 0.0));
        let t0 = Instant::now();
        budget.deposit(t0);
        // Ten and a half seconds on, the current slot is the one period 0 used.
        let now = t0 + Duration::from_millis(10_500);
        for _ in 0..4 {
            budget.deposit(now);
        }
        // A caller that read the clock at t0 reaches the budget only now: its retry counts in the
        // current slot, against the current window, and does not wipe the four requests.
        assert!(budget.try_withdraw(t0));
        assert!(budget.try_withdraw(now));
        assert!(!budget.try_withdraw(now));
    }

    #[tokio::test(start_paused = true)]
    async fn nonsense_ratios_allow_nothing_but_do_not_panic() {
        let budget = RetryBudget::new(RetryBudgetConfig {
            ratio: f64::NAN,
            min_per_sec: -3.0,
            ttl: Duration::ZERO,
        });
        budget.deposit(Instant::now());
        assert!(!budget.try_withdraw(Instant::now()));
    }
}
