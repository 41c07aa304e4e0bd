//! Sliding windows of call outcomes for the failure-rate trip condition.
//!
//! A count window is a ring of the last `n` outcomes with running totals: O(1) per call.
//! A time window is a [`SlidingCounter`] of [`TIME_BUCKETS`] buckets of `window / TIME_BUCKETS`
//! each: constant memory at any request rate, at the price of expiring a call between
//! `window - window / TIME_BUCKETS` and `window` after it was recorded. Its origin is the first
//! call recorded (the breaker has no clock of its own), and a caller whose `now` lags behind
//! another's (read before the lock) counts in the current bucket.

use std::time::Duration;

use tokio::time::Instant;

use super::config::FailureWindow;
use crate::sliding_counter::SlidingCounter;

/// Buckets of a time window (Hystrix's default): 10 % expiry granularity.
pub(super) const TIME_BUCKETS: usize = 10;

/// Calls and failures currently inside a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Totals {
    pub(super) calls: u32,
    pub(super) failures: u32,
}

#[derive(Debug)]
pub(super) enum RateWindow {
    Count(CountWindow),
    Time(TimeWindow),
}

impl RateWindow {
    pub(super) fn new(window: FailureWindow) -> Self {
        match window {
            FailureWindow::Count(n) => RateWindow::Count(CountWindow::new(n)),
            FailureWindow::Time(d) => RateWindow::Time(TimeWindow::new(d)),
        }
    }

    pub(super) fn record(&mut self, failed: bool, now: Instant) {
        match self {
            RateWindow::Count(w) => w.record(failed),
            RateWindow::Time(w) => w.record(failed, now),
        }
    }

    pub(super) fn totals(&self, now: Instant) -> Totals {
        match self {
            RateWindow::Count(w) => w.totals,
            RateWindow::Time(w) => w.totals(now),
        }
    }

    pub(super) fn clear(&mut self) {
        match self {
            RateWindow::Count(w) => w.clear(),
            RateWindow::Time(w) => w.clear(),
        }
    }
}

#[derive(Debug)]
pub(super) struct CountWindow {
    /// `true` = failure; grows up to `capacity`, then overwritten oldest first.
    outcomes: Vec<bool>,
    capacity: usize,
    next: usize,
    totals: Totals,
}

impl CountWindow {
    fn new(n: u32) -> Self {
        let capacity = usize::try_from(n).unwrap_or(usize::MAX).max(1);
        CountWindow {
            outcomes: Vec::new(),
            capacity,
            next: 0,
            totals: Totals::default(),
        }
    }

    fn record(&mut self, failed: bool) {
        if self.outcomes.len() < self.capacity {
            self.outcomes.push(failed);
            self.totals.calls = self.totals.calls.saturating_add(1);
        } else if let Some(slot) = self.outcomes.get_mut(self.next) {
            if std::mem::replace(slot, failed) {
                self.totals.failures = self.totals.failures.saturating_sub(1);
            }
        }
        if failed {
            self.totals.failures = self.totals.failures.saturating_add(1);
        }
        self.next = (self.next + 1) % self.capacity;
    }

    fn clear(&mut self) {
        self.outcomes.clear();
        self.next = 0;
        self.totals = Totals::default();
    }
}

/// A time window: calls and failures in a [`SlidingCounter`] of [`TIME_BUCKETS`] buckets.
#[derive(Debug)]
pub(super) struct TimeWindow(SlidingCounter<TIME_BUCKETS, Totals>);

impl TimeWindow {
    fn new(window: Duration) -> Self {
        TimeWindow(SlidingCounter::new(window))
    }

    fn record(&mut self, failed: bool, now: Instant) {
        let bucket = self.0.current(now);
        bucket.calls = bucket.calls.saturating_add(1);
        if failed {
            bucket.failures = bucket.failures.saturating_add(1);
        }
    }

    fn totals(&self, now: Instant) -> Totals {
        self.0.live(now).fold(Totals::default(), |sum, b| Totals {
            calls: sum.calls.saturating_add(b.calls),
            failures: sum.failures.saturating_add(b.failures),
        })
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_window_keeps_only_the_last_n_outcomes() {
        let now = Instant::now();
        let mut window = RateWindow::new(FailureWindow::Count(3));
        for failed in [true, true, false] {
            window.record(failed, now);
        }
        assert_eq!(
            window.totals(now),
            Totals {
                calls: 3,
                failures: 2
            }
        );
        window.record(false, now); // pushes out the first failure
        assert_eq!(
            window.totals(now),
            Totals {
                calls: 3,
                failures: 1
            }
        );
        window.record(false, now);
        window.record(true, now);
        assert_eq!(
            window.totals(now),
            Totals {
                calls: 3,
                failures: 1
            }
        );
        window.clear();
        assert_eq!(window.totals(now), Totals::default());
    }

    #[test]
    fn time_window_expires_calls_within_one_bucket_of_the_window() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut window = RateWindow::new(FailureWindow::Time(ms(1000)));
        window.record(true, t0);
        window.record(false, t0 + ms(50));
        window.record(true, t0 + ms(450));
        assert_eq!(
            window.totals(t0 + ms(899)),
            Totals {
                calls: 3,
                failures: 2
            }
        );
        // Bucket 0 (t0 .. t0+100ms) leaves the window at t0+1000ms.
        assert_eq!(
            window.totals(t0 + ms(999)),
            Totals {
                calls: 3,
                failures: 2
            }
        );
        assert_eq!(
            window.totals(t0 + ms(1000)),
            Totals {
                calls: 1,
                failures: 1
            }
        );
        assert_eq!(
            window.totals(t0 + ms(1399)),
            Totals {
                calls: 1,
                failures: 1
            }
        );
        assert_eq!(window.totals(t0 + ms(1400)), Totals::default());
        // A bucket slot is reused for a new period without leaking the old counts.
        window.record(false, t0 + ms(2000));
        assert_eq!(
            window.totals(t0 + ms(2000)),
            Totals {
                calls: 1,
                failures: 0
            }
        );
    }

    #[test]
    fn time_window_puts_a_lagging_now_in_the_current_bucket() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut window = RateWindow::new(FailureWindow::Time(ms(1000)));
        window.record(true, t0 + ms(500));
        // A caller that read the clock before the first one: not before the origin, not lost.
        window.record(true, t0);
        assert_eq!(
            window.totals(t0 + ms(500)),
            Totals {
                calls: 2,
                failures: 2
            }
        );
        window.record(false, t0 + ms(1700));
        window.record(true, t0 + ms(100)); // far behind: counted now, not in an expired bucket
        assert_eq!(
            window.totals(t0 + ms(1700)),
            Totals {
                calls: 2,
                failures: 1
            }
        );
    }
}
