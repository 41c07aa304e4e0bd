//! Whether the store answers, and the counters that say how it went.
//!
//! A failed call (an error, or no answer within the timeout) marks the store *down*: until the
//! next probe is due, bookings do not try it at all (no request pays the timeout twice in a
//! row), and they take the policy's way instead (the fallback budget, or a typed error). Once a
//! probe is due, one booking (only one at a time) tries the store again; when it answers, the
//! store is *up* and every lane books in it again. Probes back off from 250 ms to 500 ms while
//! the store stays down (a probe costs a refused connection, or at worst one timeout): a
//! longer interval leaves longer the mix of workers back on the shared budget at the fleet's
//! rate and workers still sending their fallback share, which the server refuses. The
//! connection manager reconnects in the background meanwhile; a probe is also what makes it
//! try again after it gave up.
//!
//! Probes fall on whole multiples of their interval on the wall clock (the one clock a fleet
//! shares while Redis is down): every worker probes at the same instants, so when Redis is
//! back they all return to the shared budget within the same few milliseconds, instead of
//! some booking there at the fleet's full rate while others still send their fallback share.

use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::stats::StoreStats;
use crate::time::{duration_to_nanos, Epoch};

const FIRST_PROBE: Duration = Duration::from_millis(250);
const LONGEST_PROBE: Duration = Duration::from_millis(500);
/// `next_probe` while the store is up.
const UP: u64 = 0;

/// The store's health and counters, shared by every lane.
#[derive(Debug)]
pub(super) struct Health {
    epoch: Epoch,
    /// Nanoseconds since `epoch` at which a booking may try the down store again; [`UP`] while
    /// it answers.
    next_probe: AtomicU64,
    /// The current probe interval, in nanoseconds.
    backoff: AtomicU64,
    probing: AtomicBool,
    round_trips: AtomicU64,
    failures: AtomicU64,
    fallbacks: AtomicU64,
    unavailable: AtomicU64,
    reconnects: AtomicU64,
    /// Times the store went down.
    outages: AtomicU64,
    /// The wall clock, as a span since the Unix epoch (fixed in unit tests).
    wall_clock: fn() -> Duration,
}

/// What a booking may do with the store now.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Attempt {
    /// Call it (it is up, or this booking is the probe).
    Call {
        /// Whether this call is the one probe of a down store.
        probe: bool,
    },
    /// Do not: it is down and the next probe is not due (or another booking probes).
    Skip,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            epoch: Epoch::now(),
            next_probe: AtomicU64::new(UP),
            backoff: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            round_trips: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            outages: AtomicU64::new(0),
            wall_clock: || {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
            },
        }
    }
}

/// The wait from `wall` (the wall clock) to the next whole multiple of `interval` on it: in
/// `(0, interval]`.
fn until_aligned(interval: Duration, wall: Duration) -> Duration {
    let interval = duration_to_nanos(interval).max(1);
    let into = u64::try_from(wall.as_nanos() % u128::from(interval)).unwrap_or(0);
    Duration::from_nanos(interval - into)
}

impl Health {
    fn since_epoch(&self, now: Instant) -> u64 {
        // Counted from 1: 0 means "up".
        self.epoch.nanos(now).saturating_add(1)
    }

    /// Whether a booking at `now` should call the store.
    pub fn attempt(&self, now: Instant) -> Attempt {
        let next_probe = self.next_probe.load(Acquire);
        if next_probe == UP {
            return Attempt::Call { probe: false };
        }
        if self.since_epoch(now) < next_probe
            || self
                .probing
                .compare_exchange(false, true, AcqRel, Acquire)
                .is_err()
        {
            return Attempt::Skip;
        }
        Attempt::Call { probe: true }
    }

    /// Ends a probe (whichever way it ended, even dropped half-way by a caller that gave up),
    /// so that a later booking may probe again.
    pub fn probe_ended(&self) {
        self.probing.store(false, Relaxed);
    }

    /// A call answered. Returns `true` when the store was down until now.
    pub fn answered(&self) -> bool {
        self.round_trips.fetch_add(1, Relaxed);
        crate::telemetry::store_answered();
        let was_down = self.next_probe.swap(UP, AcqRel) != UP;
        if was_down {
            self.backoff.store(0, Relaxed);
            self.reconnects.fetch_add(1, Relaxed);
        }
        was_down
    }

    /// A call failed at `now`. Returns `true` when the store was up until now.
    pub fn failed(&self, now: Instant) -> bool {
        self.failures.fetch_add(1, Relaxed);
        crate::telemetry::store_failed();
        let backoff = Duration::from_nanos(self.backoff.load(Relaxed));
        let backoff = if backoff.is_zero() {
            FIRST_PROBE
        } else {
            backoff.saturating_mul(2).min(LONGEST_PROBE)
        };
        self.backoff.store(duration_to_nanos(backoff), Relaxed);
        let wait = until_aligned(backoff, (self.wall_clock)());
        let next = self
            .since_epoch(now)
            .saturating_add(duration_to_nanos(wait));
        let was_up = self.next_probe.swap(next, AcqRel) == UP;
        if was_up {
            self.outages.fetch_add(1, Relaxed);
        }
        was_up
    }

    /// A booking went to the fallback budget.
    pub fn fell_back(&self) {
        self.fallbacks.fetch_add(1, Relaxed);
        crate::telemetry::store_fell_back();
    }

    /// A booking was refused with `Error::StoreUnavailable`.
    pub fn refused(&self) {
        self.unavailable.fetch_add(1, Relaxed);
    }

    /// How many times the store went down: a lane that falls back sees whether this is a new
    /// outage.
    pub fn outages(&self) -> u64 {
        self.outages.load(Relaxed)
    }

    pub fn is_up(&self) -> bool {
        self.next_probe.load(Acquire) == UP
    }

    pub fn stats(&self) -> StoreStats {
        StoreStats {
            up: self.is_up(),
            round_trips: self.round_trips.load(Relaxed),
            failures: self.failures.load(Relaxed),
            fallbacks: self.fallbacks.load(Relaxed),
            unavailable: self.unavailable.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A health whose wall clock stands at a whole second: probes fall a whole interval apart.
    fn health() -> Health {
        Health {
            wall_clock: || Duration::from_secs(1_000),
            ..Health::default()
        }
    }

    #[test]
    fn probes_fall_on_the_wall_clocks_multiples_of_their_interval() {
        let second = Duration::from_secs(1);
        assert_eq!(
            until_aligned(second, Duration::from_millis(10_300)),
            Duration::from_millis(700)
        );
        assert_eq!(until_aligned(second, Duration::from_secs(10)), second);
        assert_eq!(
            until_aligned(Duration::ZERO, Duration::from_millis(1)),
            Duration::from_nanos(1)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_down_store_is_probed_by_one_booking_with_backoff() {
        let health = health();
        assert_eq!(
            health.attempt(Instant::now()),
            Attempt::Call { probe: false }
        );
        assert!(health.failed(Instant::now()));
        assert!(!health.is_up());
        // Until the first probe is due nobody calls it.
        assert_eq!(health.attempt(Instant::now()), Attempt::Skip);
        tokio::time::advance(FIRST_PROBE).await;
        assert_eq!(
            health.attempt(Instant::now()),
            Attempt::Call { probe: true }
        );
        // Only one probe at a time.
        assert_eq!(health.attempt(Instant::now()), Attempt::Skip);
        assert!(!health.failed(Instant::now()));
        health.probe_ended();
        // The next probe waits twice as long.
        tokio::time::advance(FIRST_PROBE).await;
        assert_eq!(health.attempt(Instant::now()), Attempt::Skip);
        tokio::time::advance(FIRST_PROBE).await;
        assert_eq!(
            health.attempt(Instant::now()),
            Attempt::Call { probe: true }
        );
        assert!(health.answered());
        health.probe_ended();
        assert_eq!(
            health.attempt(Instant::now()),
            Attempt::Call { probe: false }
        );
        let stats = health.stats();
        assert_eq!(
            (stats.failures, stats.reconnects, stats.round_trips),
            (2, 1, 1)
        );
        assert!(stats.up);
    }

    #[tokio::test(start_paused = true)]
    async fn probes_back_off_no_further_than_the_longest() {
        let health = health();
        for _ in 0..20 {
            health.failed(Instant::now());
        }
        tokio::time::advance(LONGEST_PROBE).await;
        assert_eq!(
            health.attempt(Instant::now()),
            Attempt::Call { probe: true }
        );
    }
}
