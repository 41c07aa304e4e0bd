//! Membership: how many workers share the store, counted by heartbeat, for the fallback share.
//!
//! While Redis is down each worker books alone at a share of every limit. A share the user
//! guessed ([`RedisStore::expected_workers`](super::RedisStore::expected_workers)) is static
//! and wrong as soon as the fleet scales; by default the share is instead `1 / N` of the last
//! number of live workers Redis counted. Every worker that books renews its entry in one
//! sorted set of the store (`{prefix}:members`, scored by when the entry expires) at most
//! every [`HEARTBEAT`], and reads the count back; an entry not renewed for [`MEMBER_TTL`] is
//! dropped, so a worker that crashed or went idle stops counting within that time, and the
//! set itself expires when nobody renews it.
//!
//! Guarantees:
//! - the share is `1 / N` of the largest count read since the store last came back, until the
//!   store has been up for [`MEMBER_TTL`] (a Redis restarted empty counts its workers again as
//!   they return: a count read meanwhile is too low, and would let each fall back to too much);
//! - before any count (Redis never answered a heartbeat), the whole limit, as without
//!   membership: a single worker must not be throttled to nothing by a guess.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use std::time::Duration;

use tokio::time::Instant;

use crate::time::{duration_to_nanos, Epoch};

/// How often a booking worker renews its entry.
pub(super) const HEARTBEAT: Duration = Duration::from_millis(500);
/// How long an entry lives without renewal.
pub(super) const MEMBER_TTL: Duration = Duration::from_secs(3);

/// Renews a worker's entry and counts the live ones.
///
/// KEYS\[1\]: the members' sorted set. ARGV\[1\]: now in µs or `''`; ARGV\[2\]: the worker's
/// id; ARGV\[3\]: how long its entry lives, µs. Replies the number of live entries.
pub(super) const HEARTBEAT_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(ARGV[1]) or (tonumber(t[1]) * 1000000 + tonumber(t[2]))
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.17g', now))
redis.call('ZADD', KEYS[1], string.format('%.17g', now + ttl), ARGV[2])
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl / 1000) + 1000)
return redis.call('ZCARD', KEYS[1])
"#;

/// This worker's view of the fleet's membership.
#[derive(Debug)]
pub(super) struct Members {
    epoch: Epoch,
    /// The worker's id in the set.
    id: String,
    /// Nanoseconds since `epoch` of the next heartbeat due (0: at once).
    next_heartbeat: AtomicU64,
    /// Whether a heartbeat is running.
    beating: AtomicBool,
    /// The live workers last counted (0: never counted).
    live: AtomicU32,
    /// Nanoseconds since `epoch` before which a lower count is not believed (the store came
    /// back, and its workers are still registering again).
    lower_from: AtomicU64,
}

impl Members {
    pub fn new(id: String) -> Members {
        Members {
            epoch: Epoch::now(),
            id,
            next_heartbeat: AtomicU64::new(0),
            beating: AtomicBool::new(false),
            live: AtomicU32::new(0),
            lower_from: AtomicU64::new(0),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether a heartbeat is due at `now`; if so, the caller runs it and reports with
    /// [`counted`](Self::counted) or [`missed`](Self::missed).
    pub fn due(&self, now: Instant) -> bool {
        self.epoch.nanos(now) >= self.next_heartbeat.load(Relaxed)
            && !self.beating.swap(true, Relaxed)
    }

    /// A heartbeat counted `live` workers at `now`.
    pub fn counted(&self, live: u64, now: Instant) {
        let live = u32::try_from(live).unwrap_or(u32::MAX).max(1);
        let now = self.epoch.nanos(now);
        if live >= self.live.load(Relaxed) || now >= self.lower_from.load(Relaxed) {
            self.live.store(live, Relaxed);
        }
        self.next_heartbeat
            .store(now.saturating_add(duration_to_nanos(HEARTBEAT)), Relaxed);
        self.beating.store(false, Relaxed);
    }

    /// A heartbeat got no answer: the next booking tries again.
    pub fn missed(&self) {
        self.beating.store(false, Relaxed);
    }

    /// The store answers again at `now`: heartbeat at once, and keep the count read before the
    /// outage until the workers have had time to register again.
    pub fn back(&self, now: Instant) {
        let now = self.epoch.nanos(now);
        self.lower_from
            .store(now.saturating_add(duration_to_nanos(MEMBER_TTL)), Relaxed);
        self.next_heartbeat.store(0, Relaxed);
    }

    /// The share of each limit one worker takes alone: `1 / live`, or the whole limit before
    /// any count.
    pub fn share(&self) -> f64 {
        1.0 / f64::from(self.live.load(Relaxed).max(1))
    }

    /// The live workers last counted (0: never counted).
    pub fn live(&self) -> u32 {
        self.live.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_share_follows_the_count_but_not_a_store_restarted_empty() {
        let members = Members::new("w".into());
        let start = Instant::now();
        assert_eq!(members.share(), 1.0);
        assert!(members.due(start));
        // One heartbeat at a time.
        assert!(!members.due(start));
        members.counted(4, start);
        assert_eq!(members.share(), 0.25);
        assert!(!members.due(start + HEARTBEAT / 2));
        assert!(members.due(start + HEARTBEAT));
        // The fleet shrank: believed at once.
        members.counted(2, start + HEARTBEAT);
        assert_eq!(members.live(), 2);
        // Redis came back empty: the first counts are low, not believed for a while...
        let back = start + Duration::from_secs(10);
        members.back(back);
        assert!(members.due(back));
        members.counted(1, back);
        assert_eq!(members.live(), 2);
        // ...unless higher.
        assert!(members.due(back + HEARTBEAT));
        members.counted(3, back + HEARTBEAT);
        assert_eq!(members.live(), 3);
        assert!(members.due(back + MEMBER_TTL));
        members.counted(1, back + MEMBER_TTL);
        assert_eq!(members.share(), 1.0);
        // A missed heartbeat lets the next booking try.
        assert!(members.due(back + MEMBER_TTL + HEARTBEAT));
        members.missed();
        assert!(members.due(back + MEMBER_TTL + HEARTBEAT));
    }
}
