//! A sliding time window of counts, in constant memory at any event rate.
//!
//! A [`SlidingCounter`] divides its window into `N` buckets of `window / N` each. Time is cut
//! into *periods* of one bucket's length, numbered from the first event counted; the bucket of
//! period `p` lives in slot `p % N` and is reset when a later period reuses the slot. The live
//! buckets at `now` are those of the `N` periods up to and including the current one, so an
//! event leaves the window between `window - window / N` and `window` after it was counted:
//! the price of constant memory is `1 / N` of expiry granularity.
//!
//! Callers read the clock before they take the lock around the counter, so a `now` may arrive
//! after a later one was counted. Such a lagging `now` counts in the current (latest) period:
//! never in a bucket that has expired (which would resurrect it), never lost.
//!
//! What a bucket holds is the caller's: calls and failures for the circuit breaker, requests
//! and retries for the retry budget. An unused bucket holds `T::default()`, which should
//! therefore count nothing.

use std::time::Duration;

use tokio::time::Instant;

use crate::time::{duration_to_nanos, Epoch};

/// Counts of type `T` over a sliding window of `N` buckets (see the module doc).
#[derive(Debug)]
pub(crate) struct SlidingCounter<const N: usize, T> {
    /// The length of one bucket's period, never zero.
    period_nanos: u64,
    /// Period 0 starts at the first event counted: the counter needs no clock of its own.
    origin: Option<Epoch>,
    /// The highest period counted so far: a lagging `now` lands here.
    latest: u64,
    buckets: [Bucket<T>; N],
}

#[derive(Debug, Default)]
struct Bucket<T> {
    /// The period these counts belong to.
    period: u64,
    counts: T,
}

impl<const N: usize, T: Default> SlidingCounter<N, T> {
    /// An empty counter over `window`, in `N` buckets of `window / N` (at least a nanosecond).
    pub(crate) fn new(window: Duration) -> Self {
        const { assert!(N > 0, "a sliding counter needs at least one bucket") };
        SlidingCounter {
            period_nanos: (duration_to_nanos(window) / N as u64).max(1),
            origin: None,
            latest: 0,
            buckets: std::array::from_fn(|_| Bucket::default()),
        }
    }

    /// The period `now` counts in: its own, or the latest counted if `now` lags behind it.
    fn period(&self, origin: Epoch, now: Instant) -> u64 {
        (origin.nanos(now) / self.period_nanos).max(self.latest)
    }

    /// The counts of the bucket `now` falls in, to add to; a bucket left by an expired period is
    /// reset first.
    pub(crate) fn current(&mut self, now: Instant) -> &mut T {
        let origin = *self.origin.get_or_insert(Epoch::at(now));
        let period = self.period(origin, now);
        self.latest = period;
        let bucket = &mut self.buckets[(period % N as u64) as usize];
        if bucket.period != period {
            *bucket = Bucket {
                period,
                counts: T::default(),
            };
        }
        &mut bucket.counts
    }

    /// The counts of every bucket still inside the window at `now` (none before the first
    /// event).
    pub(crate) fn live(&self, now: Instant) -> impl Iterator<Item = &T> {
        let live_periods = self.origin.map(|origin| {
            let current = self.period(origin, now);
            current.saturating_sub(N as u64 - 1)..=current
        });
        self.buckets
            .iter()
            .filter(move |bucket| {
                live_periods
                    .as_ref()
                    .is_some_and(|periods| periods.contains(&bucket.period))
            })
            .map(|bucket| &bucket.counts)
    }

    /// Forgets every count; the next event starts period 0 again.
    pub(crate) fn clear(&mut self) {
        self.origin = None;
        self.latest = 0;
        self.buckets = std::array::from_fn(|_| Bucket::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A window of one second in ten buckets of 100 ms, counting events.
    fn counter() -> SlidingCounter<10, u32> {
        SlidingCounter::new(Duration::from_secs(1))
    }

    fn count(counter: &SlidingCounter<10, u32>, now: Instant) -> u32 {
        counter.live(now).sum()
    }

    const fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn an_empty_counter_counts_nothing() {
        let t0 = Instant::now();
        let counter = counter();
        assert_eq!(counter.live(t0).count(), 0);
    }

    #[test]
    fn an_event_expires_with_its_bucket() {
        let t0 = Instant::now();
        let mut counter = counter();
        *counter.current(t0) += 1;
        *counter.current(t0 + ms(99)) += 1; // same bucket: period 0 is [t0, t0 + 100ms)
        *counter.current(t0 + ms(100)) += 1;
        assert_eq!(count(&counter, t0 + ms(999)), 3);
        // Period 0 leaves the window when period 10 begins, period 1 when period 11 begins.
        assert_eq!(count(&counter, t0 + ms(1_000)), 1);
        assert_eq!(count(&counter, t0 + ms(1_099)), 1);
        assert_eq!(count(&counter, t0 + ms(1_100)), 0);
    }

    #[test]
    fn a_reused_slot_starts_from_nothing() {
        let t0 = Instant::now();
        let mut counter = counter();
        *counter.current(t0 + ms(50)) += 5;
        // Period 10 takes period 0's slot.
        *counter.current(t0 + ms(1_050)) += 1;
        assert_eq!(count(&counter, t0 + ms(1_050)), 1);
        // Far later, every slot is stale.
        *counter.current(t0 + ms(60_000)) += 2;
        assert_eq!(count(&counter, t0 + ms(60_000)), 2);
    }

    #[test]
    fn a_lagging_now_counts_in_the_latest_bucket() {
        let t0 = Instant::now();
        let mut counter = counter();
        // The first event is the origin: period 0 is [t0 + 500ms, t0 + 600ms).
        *counter.current(t0 + ms(500)) += 1;
        // A clock read before the origin: counted in period 0, not lost.
        *counter.current(t0) += 1;
        assert_eq!(count(&counter, t0 + ms(500)), 2);
        *counter.current(t0 + ms(1_700)) += 3; // period 12: period 0 has expired
                                               // Far behind: counted in period 12, not in period 0's expired bucket.
        *counter.current(t0 + ms(600)) += 1;
        assert_eq!(count(&counter, t0 + ms(1_700)), 4);
        // A lagging read sees the window as of the latest period, not period 0's.
        assert_eq!(count(&counter, t0 + ms(600)), 4);
        // Period 12 leaves the window when period 22 begins.
        assert_eq!(count(&counter, t0 + ms(2_699)), 4);
        assert_eq!(count(&counter, t0 + ms(2_700)), 0);
    }

    #[test]
    fn clear_forgets_counts_and_origin() {
        let t0 = Instant::now();
        let mut counter = counter();
        *counter.current(t0) += 3;
        counter.clear();
        assert_eq!(count(&counter, t0), 0);
        // The next event starts period 0 again.
        *counter.current(t0 + ms(5_000)) += 1;
        assert_eq!(count(&counter, t0 + ms(5_999)), 1);
        assert_eq!(count(&counter, t0 + ms(6_000)), 0);
    }

    #[test]
    fn degenerate_windows_do_not_panic() {
        let t0 = Instant::now();
        let mut tiny = SlidingCounter::<10, u32>::new(Duration::ZERO);
        *tiny.current(t0) += 1;
        assert_eq!(tiny.live(t0).sum::<u32>(), 1);
        assert_eq!(tiny.live(t0 + Duration::from_nanos(10)).sum::<u32>(), 0);
        let mut huge = SlidingCounter::<10, u32>::new(Duration::MAX);
        *huge.current(t0) += 1;
        assert_eq!(huge.live(t0 + ms(86_400_000)).sum::<u32>(), 1);
    }
}
