//! A lane's side of the store: its key, its fallback budget, and the booking it holds while it
//! waits (a guard: dropped before it leaves, it gives the booking back).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::script::{
    self, Booked, FleetCubic, Reconcile, Shape, Shapes, SharedGrant, SharedGrants,
};
use super::stretch::{Stretches, Waiting};
use super::{OnStoreDown, Store, StoreError};
use crate::key::LaneKey;
use crate::limiter::pace::SharedCubic;
use crate::limiter::{Budget, Cost, Dimension, Limit, Settled};
use crate::time::duration_to_nanos;

/// Where a lane keeps its budget when a store applies to it.
#[derive(Debug)]
pub(crate) struct SharedBudget {
    store: Arc<Store>,
    key: Arc<str>,
    /// The budget this process books in while the store is down (by [`OnStoreDown::Fallback`]).
    fallback: Arc<Budget>,
    /// The store's outage the fallback budget was last started for.
    outage: AtomicU64,
    /// The outage whose fallback bookings were last carried over to the store.
    carried: AtomicU64,
    /// Per dimension, how far ahead (in nanoseconds) the store's latest answer to this lane
    /// said the fleet's schedule was booked: the requests booked there still leave after the
    /// store is gone, so the fallback starts after them.
    fleet_ahead: [AtomicU64; Dimension::ALL.len()],
    /// The limits the store's latest answer booked under (learned by any worker of the fleet,
    /// or this lane's own): what the fallback takes its share of.
    fleet_limits: Mutex<[Option<Limit>; Dimension::ALL.len()]>,
    /// The pace learned from plain refusals: the fleet's as the latest booking read it, and the
    /// one this lane published or took last.
    cubic: Arc<Mutex<CubicSeen>>,
    /// How the fleet's decreases stretched the schedule booked ahead, to move the grants
    /// waiting here alike.
    stretches: Arc<Stretches>,
}

/// The pace learned from plain refusals, as a lane has seen it.
#[derive(Debug, Default)]
struct CubicSeen {
    /// The fleet's, as the latest booking read it.
    fleet: Option<FleetCubic>,
    /// The share of the fleet's this lane has read (taken, or known as its own).
    seq: u64,
    /// The curve this lane published or took last, on its own clock.
    local: Option<SharedCubic>,
}

fn lock(seen: &Mutex<CubicSeen>) -> MutexGuard<'_, CubicSeen> {
    // Plain values: consistent even if a holder panicked.
    seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The store's answer to one booking.
#[derive(Debug)]
pub(crate) enum SharedOutcome {
    /// Booked: leave at [`SharedBooking::ready_at`].
    Granted(SharedBooking),
    /// Not booked: the wait is longer than the request may wait (`None`: a pause decides).
    TooLong {
        dimension: Option<Dimension>,
        wait: Duration,
    },
    /// Not booked: the cost is above a strict dimension's burst.
    NeverFits { dimension: Dimension, burst: u64 },
}

impl SharedBudget {
    pub fn new(store: &Arc<Store>, lane: &LaneKey) -> SharedBudget {
        SharedBudget {
            store: Arc::clone(store),
            key: store.key_for(lane).into(),
            fallback: Budget::new(),
            outage: AtomicU64::new(0),
            carried: AtomicU64::new(0),
            fleet_ahead: Default::default(),
            fleet_limits: Mutex::default(),
            cubic: Arc::default(),
            stretches: Arc::default(),
        }
    }

    /// Books `cost` under `shapes` in the shared budget: one round trip.
    pub async fn book(
        &self,
        cost: &Cost,
        shapes: &Shapes,
        max_wait: Option<Duration>,
    ) -> Result<SharedOutcome, StoreError> {
        let outage = self.outage.load(Relaxed);
        if self.carried.load(Relaxed) != outage && self.carry_over(shapes).await {
            self.carried.store(outage, Relaxed);
        }
        let sent = Instant::now();
        let booked = self
            .store
            .book(&self.key, cost, shapes, max_wait, None)
            .await?;
        let received = Instant::now();
        // The store answered: a good moment to say this worker is alive.
        self.store.beat();
        Ok(match booked {
            Booked::Granted {
                wait,
                grants,
                ahead,
                ran_at,
                cubic,
            } => {
                if let Some(cubic) = cubic {
                    self.lock_cubic().fleet = Some(cubic);
                }
                self.hear(ran_at, cubic);
                // The grant is an instant of the server's clock: placed on this worker's by the
                // best measured offset, so that the fleet's departures keep the grants' spacing
                // (see the `clock` module).
                let ready_at = self.store.clock.grant_at(ran_at, wait, sent, received);
                tracing::trace!(target: "reqwest_throttle", grant_us = ran_at + wait.as_secs_f64() * 1e6, placed_us = self.store.clock.server_us(ready_at), "granted");
                for (kept, ahead) in self.fleet_ahead.iter().zip(ahead) {
                    if let Some(ahead) = ahead {
                        kept.store(duration_to_nanos(ahead), Relaxed);
                    }
                }
                *self.lock_fleet_limits() =
                    std::array::from_fn(|i| grants[i].as_ref().map(SharedGrant::limit));
                SharedOutcome::Granted(SharedBooking {
                    store: Arc::clone(&self.store),
                    key: Arc::clone(&self.key),
                    cost: *cost,
                    grants,
                    waiting: Waiting {
                        grant_us: ran_at + wait.as_secs_f64() * 1e6,
                        ready_at,
                        // Booked after every share up to the one its reply carried.
                        seen: cubic.map_or(0, |cubic| cubic.seq),
                    },
                    committed: false,
                    lease: None,
                })
            }
            Booked::TooLong { dimension, wait } => SharedOutcome::TooLong { dimension, wait },
            Booked::NeverFits { dimension, burst } => SharedOutcome::NeverFits { dimension, burst },
        })
    }

    fn lock_cubic(&self) -> MutexGuard<'_, CubicSeen> {
        lock(&self.cubic)
    }

    /// Shares the pace this lane learned from plain refusals with every worker (in the
    /// background), with the requests' limit it set (`paced`: `(limit, strict, fresh)`), if the
    /// curve changed since this lane last published or took one: one worker's refusal slows
    /// every worker, once. The script keeps the latest decrease of the fleet. `true` when
    /// shared (the limit with it).
    pub fn share_cubic(&self, shared: SharedCubic, paced: Option<(Limit, bool, bool)>) -> bool {
        let clock = &self.store.clock;
        let (Some(since_us), Some(after_us)) =
            (clock.server_us(shared.since), clock.server_us(shared.after))
        else {
            return false;
        };
        {
            let mut seen = self.lock_cubic();
            // The same curve (taken from the fleet, or shared already): nothing new.
            if seen.local.is_some_and(|local| {
                (local.last_max, local.beta, local.since)
                    == (shared.last_max, shared.beta, shared.since)
            }) {
                return false;
            }
            seen.local = Some(shared);
            // The fleet's curve as read so far is older than this decrease: only a later one
            // (this one read back, or another worker's) is news.
            seen.seq = seen.fleet.map_or(seen.seq, |fleet| fleet.seq);
        }
        let fleet = FleetCubic {
            seq: 0,
            last_max: shared.last_max,
            beta: shared.beta,
            since_us,
            after_us,
            stretch: None,
        };
        let (stretches, seen) = (Arc::clone(&self.stretches), Arc::clone(&self.cubic));
        self.in_background(move |store, key| async move {
            match store.share_cubic(&key, fleet, paced, None).await? {
                // This worker's own waiting grants move with the fleet's schedule at once.
                Some((seq, stretch)) => stretches.record(seq, stretch),
                // The fleet paces slower already: the next booking's reply brings its curve
                // as news, to be taken.
                None => lock(&seen).seq = 0,
            }
            Ok(())
        });
        true
    }

    /// Waits until `booking`'s grant comes, moved with the fleet's schedule by every decrease
    /// shared meanwhile (see [`Stretches`]).
    pub async fn wait_for(&self, booking: &mut SharedBooking) {
        let ask = || async {
            // Only a decrease learned from plain refusals stretches the schedule: before the
            // fleet shared one, there is nothing to ask.
            if self.lock_cubic().fleet.is_none() {
                return;
            }
            // Unanswered, the grant leaves where it stands: what the store cannot say, no
            // other worker heard either.
            if let Ok((ran_at, cubic)) = self.store.curve(&self.key).await {
                if let Some(cubic) = cubic {
                    let mut seen = self.lock_cubic();
                    if seen.fleet.is_none_or(|fleet| fleet.seq < cubic.seq) {
                        seen.fleet = Some(cubic);
                    }
                }
                self.hear(ran_at, cubic);
            }
        };
        booking.waiting = self.stretches.wait(booking.waiting, ask).await;
    }

    /// A script that ran at `ran_at` (µs of the server's clock) answered with the fleet's
    /// latest share, `cubic`: its stretch, if any, moves the grants waiting here.
    fn hear(&self, ran_at: f64, cubic: Option<FleetCubic>) {
        if let Some(cubic) = cubic {
            if let Some(stretch) = cubic.stretch {
                self.stretches.record(cubic.seq, stretch);
            }
        }
        self.stretches.heard(ran_at);
    }

    /// The share of the fleet's pace learned from plain refusals this lane paces on, as last
    /// read (0 before any).
    pub fn curve_seq(&self) -> u64 {
        self.lock_cubic().seq
    }

    /// The pace the fleet learned from plain refusals, on this worker's clock, once per share
    /// that is not this lane's own. The fleet's latest curve is the truth: every worker paces
    /// on it, so that they grow alike, even when this lane decreased on its own meanwhile
    /// (another worker's decrease answered the same congestion).
    pub fn cubic_news(&self) -> Option<SharedCubic> {
        let mut seen = self.lock_cubic();
        let fleet = seen.fleet.filter(|fleet| fleet.seq != seen.seq)?;
        seen.seq = fleet.seq;
        // This lane's own share read back: nothing to take.
        if seen
            .local
            .is_some_and(|local| local.last_max == fleet.last_max && local.beta == fleet.beta)
        {
            return None;
        }
        let clock = &self.store.clock;
        let shared = SharedCubic {
            last_max: fleet.last_max,
            beta: fleet.beta,
            since: clock.local(fleet.since_us)?,
            after: clock.local(fleet.after_us)?,
        };
        seen.local = Some(shared);
        Some(shared)
    }

    fn lock_fleet_limits(&self) -> MutexGuard<'_, [Option<Limit>; Dimension::ALL.len()]> {
        // Plain values: consistent even if a holder panicked.
        self.fleet_limits
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The budget to book in while the store is down, brought to the policy's share of the
    /// fleet's limits as the store last applied them (else the lane's own); `None` when the
    /// policy fails fast instead (unless nothing is limited: then there is nothing to refuse).
    pub fn fallback(&self, own: &Shapes) -> Option<&Arc<Budget>> {
        let fleet = *self.lock_fleet_limits();
        let shapes: Shapes = std::array::from_fn(|i| match (fleet[i], own[i]) {
            (Some(limit), own) => Some(Shape {
                limit,
                strict: own.is_some_and(|own| own.strict),
            }),
            (None, own) => own,
        });
        let share = match self.store.on_down() {
            // Nothing limited, here or in the fleet as last seen: nothing to share, nothing to
            // refuse (the lane books in an unlimited budget whatever the policy).
            _ if shapes.iter().all(Option::is_none) => 1.0,
            OnStoreDown::Fallback { share } => {
                self.store.fell_back();
                if share.is_nan() {
                    f64::MIN_POSITIVE
                } else {
                    share.clamp(f64::MIN_POSITIVE, 1.0)
                }
            }
            OnStoreDown::FailFast => {
                self.store.refused();
                return None;
            }
        };
        // Each outage starts the fallback booked as far ahead as the store last said the
        // fleet's schedule was, with its burst spent there: the requests granted in the shared
        // budget still leave (they are not spent twice), and they used the server's burst (the
        // workers bursting together at its end is what the server refuses). The schedule went
        // on growing after that answer while the fleet was busy, about as fast as time passes:
        // counted from now rather than from the answer, the guess errs late, never early.
        let outage = self.store.outages();
        let new_outage = self.outage.swap(outage, Relaxed) != outage;
        for (dimension, shape) in Dimension::ALL.into_iter().zip(shapes) {
            let wanted = shape.map(|shape| share_of(shape.limit, share));
            if new_outage {
                self.fallback.reprice(dimension, wanted);
                let ahead = self.fleet_ahead[dimension.index()].load(Relaxed);
                if let Some(units) = wanted.and_then(|limit| units_in(ahead, limit)) {
                    self.fallback.debit(dimension, units);
                }
            } else if self.fallback.limit(dimension) != wanted {
                // Only a change is written: setting the same rate again costs a lock for nothing.
                self.fallback.set_limit(dimension, wanted);
            }
            self.fallback
                .set_strict(dimension, shape.is_some_and(|shape| shape.strict));
        }
        Some(&self.fallback)
    }

    /// Back from an outage: makes the shared budget at least as full as this lane's fallback
    /// budget was, with its burst spent where the fallback's schedule ends. The fallback ran at
    /// a share of the rate, so the time it is booked ahead is the fleet's fill seen from this
    /// worker (its units count `1 / share` times at the fleet's rate), and its waiters still
    /// leave on it; the shared budget's first new request leaves after them. A Redis restarted
    /// without persistence forgot the fleet's schedule and would grant a fresh burst on top of
    /// what the workers just sent alone; a fill, unlike a charge, is the same whichever worker
    /// comes back first or how many do.
    ///
    /// `true` when done (or nothing to carry); while the store is still down it costs nothing
    /// and is tried again with the next booking.
    async fn carry_over(&self, shapes: &Shapes) -> bool {
        let ahead: [Option<Duration>; Dimension::ALL.len()] = std::array::from_fn(|i| {
            let shape = shapes[i]?;
            let ahead = self
                .fallback
                .booked_ahead(Dimension::ALL[i])
                .filter(|ahead| !ahead.is_zero())?;
            // Booked up to `ahead + τ − T`, the next unit goes `ahead` from now.
            let spent = shape.limit.interval.saturating_mul(
                u32::try_from(shape.limit.burst.saturating_sub(1)).unwrap_or(u32::MAX),
            );
            Some(ahead.saturating_add(spent))
        });
        if ahead.iter().all(Option::is_none) {
            return true;
        }
        let filled = self.store.fill(&self.key, &ahead).await;
        if filled.is_ok() {
            tracing::debug!(target: "reqwest_throttle", ?ahead, "shared budget filled to what the fallback had booked");
        }
        filled.is_ok()
    }

    /// Takes a fleet-wide concurrency slot for `booking` (whose rate already lets it leave), if
    /// the store caps concurrency, waiting for one no later than `deadline`; `Err(())` when none
    /// came in time. While the store does not answer, the booking goes without one.
    pub async fn lease_into(
        &self,
        booking: &mut SharedBooking,
        deadline: Option<Instant>,
    ) -> Result<(), ()> {
        if self.store.concurrency().is_none() {
            return Ok(());
        }
        let key: Arc<str> = format!("{}:leases", self.key).into();
        let id = lease_id();
        loop {
            match self.store.acquire(&key, &id).await {
                Ok(None) => {
                    booking.lease = Some(Lease::held(&self.store, key, id));
                    return Ok(());
                }
                Ok(Some(until_expiry)) => {
                    // Slots usually come back when answers arrive, long before they expire.
                    let next = Instant::now() + until_expiry.clamp(LEASE_POLL_MIN, LEASE_POLL);
                    if deadline.is_some_and(|deadline| next > deadline) {
                        return Err(());
                    }
                    tokio::time::sleep_until(next).await;
                }
                Err(error) => {
                    tracing::debug!(target: "reqwest_throttle", %error, "no fleet-wide concurrency slot: Redis unavailable");
                    return Ok(());
                }
            }
        }
    }

    /// `at` on the store's clock, µs (`None` before any offset was measured).
    pub fn server_us(&self, at: Instant) -> Option<f64> {
        self.store.clock.server_us(at)
    }

    /// The workers sharing this budget, as last counted (at least this one).
    pub fn workers(&self) -> u32 {
        self.store.live_workers()
    }

    /// Shares a limit this lane learned from the server with every worker (in the background:
    /// the lane's own budget already has it). `on_curve`: the limit is the pace of the fleet's
    /// curve learned from plain refusals; it is not shared if the fleet decreased since this
    /// lane last read the curve.
    pub fn learn(
        &self,
        dimension: Dimension,
        limit: Option<Limit>,
        (strict, fresh): (bool, bool),
        on_curve: bool,
    ) {
        let on_curve = on_curve.then(|| self.curve_seq());
        self.in_background(move |store, key| async move {
            store
                .learn(&key, dimension, limit, (strict, fresh), on_curve)
                .await
        });
    }

    /// Charges the shared `dimension` down to the `remaining` units the server announced;
    /// `limit` is the lane's own, used unless the fleet learned one. Never gives units back:
    /// the server's count does not include the other workers' requests in flight.
    pub fn sync(&self, dimension: Dimension, remaining: u64, limit: Option<Limit>) {
        let Some(limit) = limit else {
            return;
        };
        self.in_background(move |store, key| async move {
            store.sync(&key, dimension, remaining, limit).await
        });
    }

    /// Runs a call to the store without waiting for it: the caller is reading an answer.
    fn in_background<F, Fut>(&self, call: F)
    where
        F: FnOnce(Arc<Store>, Arc<str>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), StoreError>> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        let key = Arc::clone(&self.key);
        spawn(async move {
            if let Err(error) = call(store, key).await {
                tracing::debug!(target: "reqwest_throttle", %error, "not shared: Redis unavailable");
            }
        });
    }

    /// Pauses the lane (or one dimension) for every worker until `until`, in the background: the
    /// lane's own budget already holds the pause for this process.
    pub fn cool_down(&self, dimension: Option<Dimension>, until: Instant) {
        let pause = until.saturating_duration_since(Instant::now());
        if pause.is_zero() {
            return;
        }
        self.in_background(move |store, key| async move {
            store.cool_down(&key, dimension, pause).await
        });
    }
}

/// How many units of `limit` fill `nanos` of its schedule (rounded up); `None` for none.
fn units_in(nanos: u64, limit: Limit) -> Option<u64> {
    let interval = duration_to_nanos(limit.interval).max(1);
    Some(nanos.div_ceil(interval)).filter(|&units| units > 0)
}

/// `share` of `limit`: the interval stretched, the burst shrunk (never below one unit).
fn share_of(limit: Limit, share: f64) -> Limit {
    let interval =
        Duration::try_from_secs_f64(limit.interval.as_secs_f64() / share).unwrap_or(Duration::MAX);
    // `as` saturates; a burst is at least one unit.
    let burst = ((limit.burst as f64 * share).floor() as u64).max(1);
    Limit { interval, burst }
}

/// A booking in the shared budget that has not left yet: dropped, it is given back (an
/// earlier booking than the latest too, unless a gap in the schedule since absorbed it: see
/// the `SETTLE` script).
#[derive(Debug)]
pub(crate) struct SharedBooking {
    store: Arc<Store>,
    key: Arc<str>,
    cost: Cost,
    grants: Box<SharedGrants>,
    /// Its grant, as moved by the decreases shared since it was booked.
    waiting: Waiting,
    committed: bool,
    /// The fleet-wide concurrency slot it holds, if the store caps concurrency.
    lease: Option<Lease>,
}

impl SharedBooking {
    /// When the booked units may leave.
    pub fn ready_at(&self) -> Instant {
        self.waiting.ready_at
    }

    /// The units leave now: spent, but still to be reconciled with what they really cost.
    pub fn commit(mut self) -> SharedCommitment {
        self.committed = true;
        SharedCommitment {
            store: Arc::clone(&self.store),
            key: Arc::clone(&self.key),
            cost: self.cost,
            grants: std::mem::take(&mut self.grants),
            _lease: self.lease.take(),
        }
    }
}

impl Drop for SharedBooking {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        let store = Arc::clone(&self.store);
        let key = Arc::clone(&self.key);
        let (cost, grants) = (self.cost, std::mem::take(&mut self.grants));
        spawn(async move {
            let _ = store
                .reconcile(&key, &grants, &cost, &Cost::zero(), Reconcile::Cancel, None)
                .await;
        });
    }
}

/// A shared booking whose units left, to be settled with what they really cost. It holds the
/// request's fleet-wide concurrency slot, if any, until the answer has been read.
#[derive(Debug)]
pub(crate) struct SharedCommitment {
    store: Arc<Store>,
    key: Arc<str>,
    cost: Cost,
    grants: Box<SharedGrants>,
    _lease: Option<Lease>,
}

/// How often a request waiting for a fleet-wide concurrency slot asks again, at most and at
/// least.
const LEASE_POLL: Duration = Duration::from_millis(25);
const LEASE_POLL_MIN: Duration = Duration::from_millis(2);

/// An id unique across the fleet (a lease's, a worker's): the process, its start, a counter.
pub(super) fn lease_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static PROCESS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let process = PROCESS.get_or_init(|| {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        format!("{:x}-{started:x}", std::process::id())
    });
    format!("{process}-{:x}", NEXT.fetch_add(1, Relaxed))
}

/// A fleet-wide concurrency slot: renewed in the background while held, given back when
/// dropped. A worker that dies renews nothing, and its slot expires.
#[derive(Debug)]
pub(crate) struct Lease {
    store: Arc<Store>,
    key: Arc<str>,
    id: Arc<str>,
    renewal: Option<tokio::task::AbortHandle>,
}

impl Lease {
    fn held(store: &Arc<Store>, key: Arc<str>, id: String) -> Lease {
        let id: Arc<str> = id.into();
        let period = store
            .concurrency()
            .map_or(super::DEFAULT_LEASE, |(_, lease)| lease)
            / 3;
        let renewal = tokio::runtime::Handle::try_current().ok().map(|runtime| {
            let (store, key, id) = (Arc::clone(store), Arc::clone(&key), Arc::clone(&id));
            runtime
                .spawn(async move {
                    loop {
                        tokio::time::sleep(period).await;
                        if let Ok(false) = store.renew(&key, &id).await {
                            tracing::debug!(target: "reqwest_throttle", "a fleet-wide concurrency lease expired before it was renewed");
                            return;
                        }
                    }
                })
                .abort_handle()
        });
        Lease {
            store: Arc::clone(store),
            key,
            id,
            renewal,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
        let (store, key, id) = (
            Arc::clone(&self.store),
            Arc::clone(&self.key),
            Arc::clone(&self.id),
        );
        spawn(async move {
            let _ = store.release(&key, &id).await;
        });
    }
}

impl SharedCommitment {
    /// What was booked.
    pub fn cost(&self) -> &Cost {
        &self.cost
    }

    /// Refunds an over-estimate, charges an under-estimate (in the background: the caller is
    /// reading a response and must not wait on Redis for it); says what is charged.
    pub fn settle(self, actual: &Cost) -> Settled {
        let settled = script::settled(&self.grants, &self.cost, actual);
        if *actual == self.cost {
            return settled;
        }
        let actual = *actual;
        spawn(async move {
            let _ = self
                .store
                .reconcile(
                    &self.key,
                    &self.grants,
                    &self.cost,
                    &actual,
                    Reconcile::Settle,
                    None,
                )
                .await;
        });
        settled
    }
}

/// Runs `task` on the current runtime, if there is one (a guard dropped outside any runtime
/// cannot reach Redis; its booking then expires with the state).
fn spawn(task: impl std::future::Future<Output = ()> + Send + 'static) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(task);
    }
}

/// The shapes a budget's limits give, for the booking script.
pub(crate) fn shapes_of(budget: &Budget) -> Shapes {
    budget
        .shapes()
        .map(|shape| shape.map(|(limit, strict)| Shape { limit, strict }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_stretches_the_interval_and_shrinks_the_burst() {
        let limit = Limit {
            interval: Duration::from_millis(20),
            burst: 50,
        };
        let eighth = share_of(limit, 1.0 / 8.0);
        assert_eq!(eighth.interval, Duration::from_millis(160));
        assert_eq!(eighth.burst, 6);
        // Never below one unit, never an overflow.
        assert_eq!(share_of(limit, 1e-300).burst, 1);
        assert_eq!(share_of(limit, 1e-300).interval, Duration::MAX);
    }
}
