//! Sliding windows of call outcomes for the failure-rate trip condition.
//!
//! A count window is a ring of the last `n` outcomes with running totals: O(1) per call.
//! A time window is [`TIME_BUCKETS`] buckets of `window / TIME_BUCKETS` each, reused in a ring:
//! constant memory at any request rate, at the price of expiring a call between
//! `window - window / TIME_BUCKETS` and `window` after it was recorded.

use std::time::Duration;

use tokio::time::Instant;

use super::config::FailureWindow;
use crate::time::{duration_to_nanos, Epoch};

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

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    index: u64,
    totals: Totals,
}

#[derive(Debug)]
pub(super) struct TimeWindow {
    bucket_nanos: u64,
    /// Time zero of bucket indices: the first call recorded (the breaker has no clock of its own).
    origin: Option<Epoch>,
    /// The highest bucket index recorded: a caller whose `now` lags behind another's (read
    /// before the lock) lands in the current bucket rather than resurrecting an expired one.
    latest: u64,
    buckets: [Bucket; TIME_BUCKETS],
}

impl TimeWindow {
    fn new(window: Duration) -> Self {
        TimeWindow {
            bucket_nanos: (duration_to_nanos(window) / TIME_BUCKETS as u64).max(1),
            origin: None,
            latest: 0,
            buckets: [Bucket::default(); TIME_BUCKETS],
        }
    }

    fn index_at(&self, origin: Epoch, now: Instant) -> u64 {
        origin.nanos(now) / self.bucket_nanos
    }

    fn record(&mut self, failed: bool, now: Instant) {
        let origin = *self.origin.get_or_insert(Epoch::at(now));
        let index = self.index_at(origin, now).max(self.latest);
        self.latest = index;
        let slot = (index % TIME_BUCKETS as u64) as usize;
        if let Some(bucket) = self.buckets.get_mut(slot) {
            if bucket.index != index {
                *bucket = Bucket {
                    index,
                    totals: Totals::default(),
                };
            }
            bucket.totals.calls = bucket.totals.calls.saturating_add(1);
            if failed {
                bucket.totals.failures = bucket.totals.failures.saturating_add(1);
            }
        }
    }

    fn totals(&self, now: Instant) -> Totals {
        let Some(origin) = self.origin else {
            return Totals::default();
        };
        let current = self.index_at(origin, now).max(self.latest);
        let oldest = current.saturating_sub(TIME_BUCKETS as u64 - 1);
        self.buckets
            .iter()
            .filter(|b| (oldest..=current).contains(&b.index))
            .fold(Totals::default(), |sum, b| Totals {
                calls: sum.calls.saturating_add(b.totals.calls),
                failures: sum.failures.saturating_add(b.totals.failures),
            })
    }

    fn clear(&mut self) {
        self.origin = None;
        self.latest = 0;
        self.buckets = [Bucket::default(); TIME_BUCKETS];
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
