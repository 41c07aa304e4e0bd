//! A latency histogram of fixed size: log-linear buckets counted with atomics.
//!
//! Durations are counted in whole microseconds. Below 16 µs every microsecond has its own
//! bucket; above, each power of two is cut into 16 buckets of equal width, so a bucket is at
//! most 1/16 of its lower bound wide. A percentile is reported as the middle of its bucket:
//! **exact to the microsecond below 16 µs, within 3.2 % above**, up to about 71 minutes
//! (2³² µs); longer durations are counted in the last bucket and reported as 71 minutes.
//! 464 counters (3.7 KiB) whatever the traffic, and recording is one atomic add.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Buckets per power of two, as a power of two.
const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
/// The largest power of two counted (in microseconds); above it everything is in the last bucket.
const TOP_EXPONENT: u32 = 32;
const BUCKETS: usize = (SUB as usize) * (TOP_EXPONENT - SUB_BITS + 1) as usize;

/// The 50th, 95th and 99th percentiles of a set of durations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Percentiles {
    /// The median.
    pub p50: Duration,
    /// The 95th percentile.
    pub p95: Duration,
    /// The 99th percentile.
    pub p99: Duration,
}

/// Counts of durations in log-linear buckets (see the module doc).
pub(crate) struct LatencyHistogram {
    buckets: Box<[AtomicU64]>,
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyHistogram")
            .field("count", &self.count())
            .finish()
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// The bucket of `micros`.
fn bucket_of(micros: u64) -> usize {
    if micros < SUB {
        return micros as usize;
    }
    let exponent = (u64::BITS - 1 - micros.leading_zeros()).min(TOP_EXPONENT);
    if exponent == TOP_EXPONENT {
        return BUCKETS - 1;
    }
    let offset = (micros >> (exponent - SUB_BITS)) & (SUB - 1);
    ((exponent - SUB_BITS + 1) as u64 * SUB + offset) as usize
}

/// The middle of bucket `index`, in microseconds.
fn middle_of(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB {
        return index;
    }
    let exponent = (index / SUB) as u32 + SUB_BITS - 1;
    let width = 1u64 << (exponent - SUB_BITS);
    let lower = (1u64 << exponent) + (index % SUB) * width;
    lower + width / 2
}

impl LatencyHistogram {
    /// Counts one duration.
    pub fn record(&self, duration: Duration) {
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(micros)].fetch_add(1, Relaxed);
    }

    /// How many durations were counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }

    /// The 50th, 95th and 99th percentiles; zeros when nothing was counted.
    pub fn percentiles(&self) -> Percentiles {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        let at = |quantile: f64| {
            if total == 0 {
                return Duration::ZERO;
            }
            // The smallest value with at least `quantile` of the counts at or below it.
            let rank = ((quantile * total as f64).ceil() as u64).clamp(1, total);
            let mut seen = 0u64;
            for (index, count) in counts.iter().enumerate() {
                seen += count;
                if seen >= rank {
                    return Duration::from_micros(middle_of(index));
                }
            }
            Duration::from_micros(middle_of(BUCKETS - 1))
        };
        Percentiles {
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_their_middles_fall_inside() {
        let mut last = 0;
        for micros in (0..100_000u64).chain([1 << 31, (1 << 32) - 1, 1 << 32, u64::MAX]) {
            let index = bucket_of(micros);
            assert!(index >= last, "{micros}");
            assert!(index < BUCKETS);
            last = index;
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        for index in 1..BUCKETS - 1 {
            assert_eq!(bucket_of(middle_of(index)), index, "{index}");
        }
    }

    #[test]
    fn a_reported_percentile_is_within_the_stated_accuracy() {
        for micros in [1u64, 15, 16, 17, 100, 999, 12_345, 1_000_000, 3_600_000_000] {
            let histogram = LatencyHistogram::default();
            histogram.record(Duration::from_micros(micros));
            let reported = histogram.percentiles().p50.as_micros() as f64;
            let error = (reported - micros as f64).abs() / micros as f64;
            assert!(error <= 1.0 / 32.0, "{micros}: reported {reported}");
        }
    }

    #[test]
    fn percentiles_follow_ranks() {
        let histogram = LatencyHistogram::default();
        for ms in 1..=100u64 {
            histogram.record(Duration::from_millis(ms));
        }
        let p = histogram.percentiles();
        let near = |d: Duration, ms: f64| (d.as_secs_f64() * 1e3 - ms).abs() / ms <= 1.0 / 32.0;
        assert!(near(p.p50, 50.0), "{p:?}");
        assert!(near(p.p95, 95.0), "{p:?}");
        assert!(near(p.p99, 99.0), "{p:?}");
        assert_eq!(histogram.count(), 100);
        assert_eq!(
            LatencyHistogram::default().percentiles(),
            Percentiles::default()
        );
    }
}
