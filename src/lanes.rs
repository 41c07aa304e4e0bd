//! The lane registry: one [`Lane`] per key, bounded, forgetting lanes nobody needs.
//!
//! # Guarantees
//!
//! - A lane that is in use (a request holds it: waiting, in flight, or holding a reservation) is
//!   never evicted, so no request ever sees its lane's state vanish under it.
//! - The registry holds at most `max_lanes` lanes while fewer than that are in use: when it is full,
//!   idle lanes are forgotten, first those whose state is fully at rest (nothing is lost), then the
//!   least recently used of those still holding rate debt or a cooldown. A client that visits a
//!   million distinct hosts stays within the bound.
//! - Eviction runs in batches down to 90 % of the bound, so its cost is amortised: one sweep per
//!   `max_lanes / 10` new lanes, not one per request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::time::Instant;

use crate::booker::Booker;
use crate::lane::{Lane, LaneKey, TransitionHook};
use crate::limiter::Nanos;
use crate::policy::Policy;
use crate::time::Epoch;

/// The default bound on the number of lanes.
pub const DEFAULT_MAX_LANES: usize = 10_000;

type LaneMap = HashMap<LaneKey, Arc<Lane>, foldhash::fast::RandomState>;

/// A bounded registry of lanes.
pub(crate) struct Lanes {
    map: RwLock<LaneMap>,
    max_lanes: usize,
    epoch: Epoch,
    evicted: AtomicU64,
    on_transition: Option<TransitionHook>,
    /// Where new lanes share their budget with other processes, if anywhere.
    #[cfg(feature = "redis")]
    store: Option<Arc<crate::store::Store>>,
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes")
            .field("len", &self.len())
            .field("max_lanes", &self.max_lanes)
            .finish_non_exhaustive()
    }
}

impl Lanes {
    pub fn new(max_lanes: usize, on_transition: Option<TransitionHook>) -> Lanes {
        Lanes {
            map: RwLock::new(LaneMap::default()),
            max_lanes: max_lanes.max(1),
            epoch: Epoch::now(),
            evicted: AtomicU64::new(0),
            on_transition,
            #[cfg(feature = "redis")]
            store: None,
        }
    }

    /// New lanes keep their budget in `store` (those it applies to).
    #[cfg(feature = "redis")]
    pub fn with_store(mut self, store: Arc<crate::store::Store>) -> Lanes {
        self.store = Some(store);
        self
    }

    /// The store's counters, if lanes share their budget through one.
    pub fn store_stats(&self) -> Option<crate::stats::StoreStats> {
        #[cfg(feature = "redis")]
        if let Some(store) = &self.store {
            return Some(store.stats());
        }
        None
    }

    /// The lane named `key`, if it exists (never creates one).
    pub fn get(&self, key: &str) -> Option<Arc<Lane>> {
        self.read().get(key).cloned()
    }

    // The map stays consistent even if a holder panicked: every update is a single insert or
    // remove.
    fn read(&self) -> RwLockReadGuard<'_, LaneMap> {
        self.map
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, LaneMap> {
        self.map
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The lane for `key`, created with the policy `policy()` gives if it does not exist yet.
    pub fn lane(&self, key: &str, now: Instant, policy: impl FnOnce() -> Arc<Policy>) -> Arc<Lane> {
        let now = self.epoch.nanos(now);
        // Lanes that exist are found under a shared lock: concurrent requests do not queue here.
        if let Some(lane) = self.read().get(key) {
            lane.touch(now);
            return Arc::clone(lane);
        }
        let mut map = self.write();
        // Another request may have created it between the two locks.
        if let Some(lane) = map.get(key) {
            lane.touch(now);
            return Arc::clone(lane);
        }
        if map.len() >= self.max_lanes {
            self.evict(&mut map);
        }
        let key = LaneKey::new(key);
        #[cfg(feature = "redis")]
        let booker = Booker::for_lane(self.store.as_ref(), &key);
        #[cfg(not(feature = "redis"))]
        let booker = Booker::Local;
        let lane = Arc::new(Lane::new(
            key,
            policy(),
            self.on_transition.as_ref(),
            booker,
        ));
        lane.touch(now);
        map.insert(lane.key().clone(), Arc::clone(&lane));
        lane
    }

    /// Forgets idle lanes until the registry is at 90 % of its bound (or only busy lanes remain).
    fn evict(&self, map: &mut LaneMap) {
        let target = self.max_lanes - self.max_lanes / 10 - 1;
        let excess = map.len().saturating_sub(target);
        if excess == 0 {
            return;
        }
        // Only the registry holds an idle lane's `Arc`; any other holder is a request using it.
        let mut candidates: Vec<(bool, Nanos, LaneKey)> = map
            .values()
            .filter(|lane| Arc::strong_count(lane) == 1 && lane.is_idle())
            .map(|lane| (lane.holds_state(), lane.last_used(), lane.key().clone()))
            .collect();
        let excess = excess.min(candidates.len());
        if excess < candidates.len() {
            candidates.select_nth_unstable(excess);
        }
        for (holds_state, _, key) in candidates.into_iter().take(excess) {
            if holds_state {
                tracing::debug!(target: "reqwest_throttle", lane = %key, "evicting idle lane that still holds rate state");
            }
            map.remove(&key);
        }
        self.evicted.fetch_add(excess as u64, Relaxed);
    }

    /// Every lane, for a stats snapshot.
    pub fn all(&self) -> Vec<Arc<Lane>> {
        self.read().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn evicted(&self) -> u64 {
        self.evicted.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Rate;

    fn default_policy() -> Arc<Policy> {
        Arc::new(Policy::default())
    }

    #[tokio::test(start_paused = true)]
    async fn a_million_hosts_stay_under_the_bound() {
        let lanes = Lanes::new(1_000, None);
        let busy = lanes.lane("https://busy.example:443", Instant::now(), default_policy);
        let mut max_seen = 0;
        for i in 0..1_000_000u32 {
            let _ = lanes.lane(
                &format!("https://h{i}.example:443"),
                Instant::now(),
                default_policy,
            );
            max_seen = max_seen.max(lanes.len());
        }
        assert!(max_seen <= 1_000, "registry grew to {max_seen}");
        // The busy lane survived every sweep: the same lane, not a fresh one.
        let again = lanes.lane("https://busy.example:443", Instant::now(), default_policy);
        assert!(Arc::ptr_eq(&busy, &again));
        assert!(lanes.evicted() >= 999_000);
    }

    #[tokio::test(start_paused = true)]
    async fn lanes_with_rate_debt_go_last() {
        let lanes = Lanes::new(10, None);
        let limited = Arc::new(Policy::new().rate(Rate::per_hour(1)));
        let debtor = lanes.lane("debtor", Instant::now(), || Arc::clone(&limited));
        assert!(debtor.try_book_now(Instant::now()));
        drop(debtor);
        for i in 0..9 {
            let _ = lanes.lane(&format!("idle{i}"), Instant::now(), default_policy);
        }
        // Full: the next insert evicts lanes at rest first, keeping the debtor's state.
        let _ = lanes.lane("new", Instant::now(), default_policy);
        let debtor = lanes.lane("debtor", Instant::now(), || Arc::clone(&limited));
        assert!(debtor.holds_state(), "the rate debt was forgotten");
    }

    #[tokio::test(start_paused = true)]
    async fn when_every_lane_is_busy_nothing_is_evicted() {
        let lanes = Lanes::new(4, None);
        let held: Vec<_> = (0..4)
            .map(|i| lanes.lane(&format!("busy{i}"), Instant::now(), default_policy))
            .collect();
        let extra = lanes.lane("extra", Instant::now(), default_policy);
        assert_eq!(lanes.len(), 5);
        for lane in &held {
            assert!(Arc::ptr_eq(
                lane,
                &lanes.lane(lane.key().as_str(), Instant::now(), default_policy)
            ));
        }
        drop((held, extra));
    }
}
