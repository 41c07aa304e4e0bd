//! A budget: several GCRA dimensions booked together, a cooldown gate, and the server's word.
//!
//! A request costs something in one or more [`Dimension`]s (one request; for LLM APIs also
//! tokens). A booking takes every dimension of the [`Cost`] at the same instant, all or nothing:
//! it leaves when its slowest dimension is ready, and every dimension is booked *for that
//! instant*, so a request never holds tokens while it waits for a request slot or the reverse.
//! Bookings go through the `ledger`, so that one dropped anywhere in the queue gives its units
//! back exactly (the `reservation` module hands them out).
//!
//! The cooldown gate is how the server's own word (Retry-After, a reset) stops a whole lane:
//! [`Budget::cool_down`] sets an instant before which nothing leaves, including reservations
//! already waiting. The server's count of what remains ([`Budget::sync`]) brings a dimension to
//! that count; the reservations still waiting were not seen by the server, so a window's count,
//! or a bucket's that leaves too little for them, applies ahead of them and they book again
//! behind it, in their order.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::charge::{Charges, SharedCharges};
use super::cost::{Blocked, Cost, Dimension, Limit, DIMENSIONS};
use super::departure::Departures;
use super::gcra::{Gcra, Nanos};
use super::ledger::{self, Cells, Change, Grants, Ledger, Place};
use crate::time::Epoch;

/// What a dimension keeps beside its GCRA cell.
#[derive(Debug, Default)]
struct Cell {
    /// The same rate, charged at the instants units really leave ([`Budget::depart`]): a slot
    /// whose timer fired late pushes the next departure back, so the spacing holds as sent.
    sent: Departures,
    /// Whether a cost above the burst is refused (LLM token budgets) rather than paid back as debt.
    strict: bool,
    cooldown_until: Nanos,
}

#[derive(Debug, Default)]
struct State {
    /// The GCRA cell of each dimension: the schedule of bookings.
    gcras: Cells,
    cells: [Cell; DIMENSIONS],
    /// Every change of `gcras` since the oldest waiting reservation, to take any one out.
    ledger: Ledger,
    /// A cooldown of the whole lane, whatever the cost's dimensions.
    cooldown_until: Nanos,
    /// Reservations neither settled nor dropped.
    outstanding: u64,
}

impl State {
    /// Books `cost` for the instant `at` (no earlier than `floor`) as a reservation, written in
    /// the ledger so that it can be dropped from anywhere in the queue.
    fn reserve(&mut self, cost: &Cost, floor: Nanos, at: Nanos, now: Nanos) -> Place {
        let before = self.gcras;
        let grants = ledger::book_at(&mut self.gcras, cost, at, now);
        self.outstanding += 1;
        self.ledger.waiting(before, cost, floor, at, grants)
    }

    /// Applies `change` to `dimension`'s cell at `now`, and records it for a later replay.
    fn change(&mut self, dimension: Dimension, change: Change, now: Nanos) {
        change.apply(&mut self.gcras[dimension.index()], now);
        self.ledger.change(dimension, change, now);
    }

    fn cooldown_for(&self, cost: &Cost) -> (Nanos, Option<Dimension>) {
        let mut until = (self.cooldown_until, None);
        for (dimension, _) in cost.iter() {
            let cell_until = self.cells[dimension.index()].cooldown_until;
            if cell_until > until.0 {
                until = (cell_until, Some(dimension));
            }
        }
        until
    }
}

/// The rate `gcra` keeps.
fn limit_of(gcra: &Gcra) -> Limit {
    Limit {
        interval: gcra.interval(),
        burst: gcra.burst(),
    }
}

/// A booking that waits for its slot: where it stands, and the charge factors and generation
/// it was booked under.
#[derive(Debug)]
pub(super) struct Queued {
    pub(super) place: Place,
    pub(super) applied: Charges,
    pub(super) generation: u64,
}

/// What [`Budget::book_or_use`] did.
#[derive(Debug)]
pub(super) enum Booked {
    /// The units may leave now and are counted as used: what they hold, and the charge factors
    /// they were priced at.
    Used { grants: Grants, applied: Charges },
    /// The units wait for their slot.
    Queued(Queued),
}

/// A set of GCRA dimensions reserved together, and a cooldown gate.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use reqwest_throttle::limiter::{Budget, Cost, Dimension, Limit};
///
/// let budget = Budget::new();
/// budget.set_limit(Dimension::Requests, Some(Limit::new(Duration::from_millis(100), 1)));
///
/// let first = budget.reserve(&Cost::requests(1), None).unwrap();
/// let second = budget.reserve(&Cost::requests(1), None).unwrap();
/// assert_eq!(second.ready_at() - first.ready_at(), Duration::from_millis(100));
///
/// // A third would wait 200 ms; with 150 ms allowed it fails at once instead of sleeping.
/// assert!(budget.reserve(&Cost::requests(1), Some(Duration::from_millis(150))).is_err());
/// second.wait(None).await.unwrap();
/// second.settle(None);
/// first.settle(None);
/// assert_eq!(budget.outstanding(), 0);
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct Budget {
    epoch: Epoch,
    state: Mutex<State>,
    /// Whether a limit or a cooldown was ever set. Until then every cost may leave at once, and
    /// [`acquire`](Budget::acquire) says so without taking the lock: the common case of a lane
    /// nobody configured and no server has paused costs no shared write.
    engaged: AtomicBool,
    /// Bumped by [`reprice`](Budget::reprice) and by a [`sync`](Budget::sync) that gives
    /// units back: reservations booked before it wake at once and book again.
    generation: AtomicU64,
    /// Wakes the waiting reservations when the generation moves.
    repriced: tokio::sync::Notify,
    /// Reported costs that were charged only up to the most one answer can use (see
    /// [`Budget::settle`]).
    clamped: AtomicU64,
    /// What the server charges per unit estimated (see [`Budget::corrected`]).
    charges: SharedCharges,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            epoch: Epoch::now(),
            state: Mutex::default(),
            engaged: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            repriced: tokio::sync::Notify::new(),
            clamped: AtomicU64::new(0),
            charges: SharedCharges::default(),
        }
    }
}

impl Budget {
    /// A budget with no limit in any dimension (only the cooldown gate applies), shared.
    pub fn new() -> Arc<Budget> {
        Arc::new(Budget::default())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked: every update is a plain store.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The origin of this budget's nanoseconds.
    pub(super) fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// Sets (or with `None` removes) the rate of `dimension`, keeping what is already booked.
    pub fn set_limit(&self, dimension: Dimension, limit: Option<Limit>) {
        self.change_rate(dimension, Change::Limit(limit), limit);
    }

    /// Starts `dimension` anew at `limit` and makes every waiting reservation book again.
    ///
    /// [`set_limit`](Self::set_limit) keeps what is booked (waiters leave at the slots they
    /// were given). When the lane learns it was too fast (the server refused), those slots are
    /// wrong: a reservation booked before this call wakes with
    /// [`Waited::Repriced`](super::Waited::Repriced) (at its old slot, or at once if that has
    /// passed), so its holder books again at the new rate, in the order they wake. The new cell
    /// starts empty (its burst just spent), so the first of them leaves one interval from now.
    pub fn reprice(&self, dimension: Dimension, limit: Option<Limit>) {
        // The new cell starts empty: the refused pace just spent its burst.
        self.change_rate(dimension, Change::Restart(limit), limit);
        self.next_generation();
    }

    /// Applies `change`, a new `limit` of `dimension`, to its booking cell and to its spacing
    /// as sent.
    fn change_rate(&self, dimension: Dimension, change: Change, limit: Option<Limit>) {
        let now = self.epoch.nanos(Instant::now());
        let mut state = self.lock();
        if limit.is_some() {
            self.engaged.store(true, Ordering::Release);
        }
        state.change(dimension, change, now);
        state.cells[dimension.index()].sent.set_limit(limit, now);
    }

    /// Records that `cost` leaves at `now`, if the spacing *as sent* allows it; otherwise the
    /// instant it will: the caller waits until then and asks again, so that a departure is
    /// recorded when it really happens and lateness pushes the next one back (see the
    /// `departure` module). Only requests are spaced so: token dimensions are settled and
    /// refunded after the answer, and spacing their units as sent would charge them twice.
    pub fn depart(&self, cost: &Cost, now: Instant) -> Result<(), Instant> {
        if !self.engaged.load(Ordering::Acquire) {
            return Ok(());
        }
        let units = cost.get(Dimension::Requests);
        if units == 0 {
            return Ok(());
        }
        let at = self.epoch.nanos(now);
        let mut state = self.lock();
        state.cells[Dimension::Requests.index()]
            .sent
            .depart(units, at)
            .map_err(|ready| self.epoch.instant(ready))
    }

    /// How many times the budget was [repriced](Self::reprice): a booking made under another
    /// generation must be made again.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Resolves when the generation moves; enabled before the generation is read, it misses
    /// no move in between.
    pub(super) fn repriced(&self) -> tokio::sync::futures::Notified<'_> {
        self.repriced.notified()
    }

    /// The rate of `dimension`, if it has one.
    pub fn limit(&self, dimension: Dimension) -> Option<Limit> {
        self.lock().gcras[dimension.index()].as_ref().map(limit_of)
    }

    /// The limit of every dimension and whether it is strict, read at once (indexed as
    /// [`Dimension::ALL`]): what a lane whose budget is shared through a store books under
    /// there, while this budget keeps learning them; what a lane's shadow budget follows.
    pub(crate) fn shapes(&self) -> [Option<(Limit, bool)>; DIMENSIONS] {
        let state = self.lock();
        std::array::from_fn(|i| {
            let strict = state.cells[i].strict;
            state.gcras[i].as_ref().map(|gcra| (limit_of(gcra), strict))
        })
    }

    /// How far ahead of now `dimension` is booked (its fill, and any waiters); `None` when
    /// unlimited. What a lane that booked here while its store was down carries over to the
    /// store when it is back.
    #[cfg(feature = "redis")]
    pub(crate) fn booked_ahead(&self, dimension: Dimension) -> Option<Duration> {
        let now = self.epoch.nanos(Instant::now());
        self.lock().gcras[dimension.index()]
            .as_ref()
            .map(|gcra| Duration::from_nanos(gcra.tat().saturating_sub(now)))
    }

    /// Makes `dimension` refuse, with [`Blocked::NeverFits`], a cost above its burst instead of
    /// admitting it as debt. Token budgets use this: a prompt larger than the whole
    /// tokens-per-minute budget would be refused by the server too.
    pub fn set_strict(&self, dimension: Dimension, strict: bool) {
        self.lock().cells[dimension.index()].strict = strict;
    }

    fn next_generation(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.repriced.notify_waiters();
    }

    /// Brings `dimension` to `remaining` units available now, as the server says: what it
    /// counts as gone is charged ([`debit`](Self::debit)); what it says is still there and
    /// this budget believed spent (an over-estimated cost, a window that renewed) is given
    /// back, never beyond the burst. The reservations still waiting are not among what the
    /// server counted: when what it says remains is less than they need, the difference is
    /// charged ahead of them. Giving back at least `min_credit` units makes the waiting
    /// reservations book again at once, so they use it in their order instead of a newcomer.
    /// Returns the units charged (positive) or given back (negative).
    pub fn sync(&self, dimension: Dimension, remaining: u64, min_credit: u64) -> i128 {
        self.sync_until(dimension, remaining, None, min_credit)
    }

    /// [`sync`](Self::sync) for a fixed window ending at `refills_from` (`None`: a bucket,
    /// as `sync`): `remaining` is all there is until then, so what this budget's pace would
    /// refill before it is owed first. Capacity before the window's end is then `remaining`,
    /// spread over the time left, and the pace goes on past it. The reservations still waiting
    /// were not seen by the server: the change applies ahead of them, and they book again
    /// behind it in their order. `min_credit` concerns buckets only: a window's credit, however
    /// small, moves the waiters up in their order without waking them all to book again.
    ///
    /// ```
    /// use std::time::Duration;
    /// use reqwest_throttle::limiter::{Budget, Dimension, Limit};
    /// use tokio::time::Instant;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let budget = Budget::new();
    /// // 900 tokens per minute: one every 66.7 ms.
    /// let interval = Duration::from_secs(60) / 900;
    /// budget.set_limit(Dimension::Tokens, Some(Limit::new(interval, 900)));
    /// // The window ends in 30 s with 100 left: 450 would refill by then, so 350 are owed.
    /// let end = Instant::now() + Duration::from_secs(30);
    /// assert_eq!(budget.sync_until(Dimension::Tokens, 100, Some(end), 1), 1_250);
    /// assert_eq!(budget.available(Dimension::Tokens), Some(0));
    /// # }
    /// ```
    pub fn sync_until(
        &self,
        dimension: Dimension,
        remaining: u64,
        refills_from: Option<Instant>,
        min_credit: u64,
    ) -> i128 {
        let now_instant = Instant::now();
        let now = self.epoch.nanos(now_instant);
        let mut state = self.lock();
        let outstanding = state.outstanding;
        let Some(gcra) = state.gcras[dimension.index()] else {
            return 0;
        };
        let available = gcra.available(now);
        if let Some(end) = refills_from {
            // What the pace refills before the window's end is owed: the cell's level may go
            // below zero, and its next unit comes as late as the window allows.
            let until_end = end.saturating_duration_since(now_instant).as_nanos();
            let owed = until_end / gcra.interval().as_nanos().max(1);
            let owed = i128::try_from(owed).unwrap_or(i128::MAX);
            let unseen = i128::from(state.ledger.waiting_units(dimension));
            let target = i128::from(remaining.min(gcra.burst())) - owed;
            let charged = (gcra.level(now) + unseen).saturating_sub(target);
            let units = u64::try_from(charged.unsigned_abs()).unwrap_or(u64::MAX);
            let change = match charged {
                0 => return 0,
                _ if charged < 0 => Change::Credit(units),
                _ => Change::Debit(units),
            };
            let State { gcras, ledger, .. } = &mut *state;
            let rebook = ledger.change_ahead(dimension, change, gcras, now);
            if charged < 0 {
                state.cells[dimension.index()].sent.credit(units, now);
            }
            drop(state);
            if rebook {
                self.next_generation();
            }
            return charged;
        }
        // Recorded as the server's number, not as a difference: replayed without a dropped
        // reservation, the cell comes to the same `remaining` (the server never counted it).
        // Nor may more leave at once than remains: the spacing as sent follows.
        state.cells[dimension.index()].sent.cap(remaining, now);
        // The reservations still waiting were not seen by the server: their units are not
        // among what it says remains. Booked as if spent, they hide that the server has less
        // than they will need; what the server lacks for them is charged ahead of them.
        let unseen = i128::from(state.ledger.waiting_units(dimension));
        let lacking =
            (gcra.level(now) + unseen).saturating_sub(i128::from(remaining.min(gcra.burst())));
        if unseen > 0 && lacking > 0 {
            let units = u64::try_from(lacking).unwrap_or(u64::MAX);
            let State { gcras, ledger, .. } = &mut *state;
            let rebook = ledger.change_ahead(dimension, Change::Debit(units), gcras, now);
            drop(state);
            if rebook {
                self.next_generation();
            }
            return lacking;
        }
        if available > remaining {
            state.change(dimension, Change::Sync(remaining), now);
            return i128::from(available - remaining);
        }
        let missing = remaining.min(gcra.burst()) - available.min(remaining);
        if missing == 0 || missing < min_credit {
            return 0;
        }
        state.change(dimension, Change::Sync(remaining), now);
        // The spacing as sent follows: what the server gives back may leave.
        state.cells[dimension.index()].sent.credit(missing, now);
        drop(state);
        if outstanding > 0 {
            self.next_generation();
        }
        -i128::from(missing)
    }

    /// Charges `units` of `dimension` that were used without a reservation (the server reports
    /// less remaining than this budget believes): later reservations wait for them.
    pub fn debit(&self, dimension: Dimension, units: u64) {
        let now = self.epoch.nanos(Instant::now());
        self.lock().change(dimension, Change::Debit(units), now);
    }

    /// How many reported costs were charged only up to what one answer can use (see
    /// [`settle`](Self::settle)).
    pub fn clamped_reports(&self) -> u64 {
        self.clamped.load(Relaxed)
    }

    /// Nothing in `dimension` (or, with `None`, nothing at all) leaves before `until`.
    ///
    /// A cooldown only ever extends: an earlier `until` than the current one is ignored.
    pub fn cool_down(&self, dimension: Option<Dimension>, until: Instant) {
        let until = self.epoch.nanos(until);
        let mut state = self.lock();
        self.engaged.store(true, Ordering::Release);
        let slot = match dimension {
            None => &mut state.cooldown_until,
            Some(dimension) => &mut state.cells[dimension.index()].cooldown_until,
        };
        *slot = (*slot).max(until);
    }

    /// When the cooldown that applies to `cost` ends, if it is still running.
    pub fn cooldown_until(&self, cost: &Cost) -> Option<Instant> {
        if !self.engaged.load(Ordering::Acquire) {
            return None;
        }
        let now = self.epoch.nanos(Instant::now());
        let (until, _) = self.lock().cooldown_for(cost);
        (until > now).then(|| self.epoch.instant(until))
    }

    /// Units of `dimension` that could be reserved now without waiting; `None` when unlimited.
    pub fn available(&self, dimension: Dimension) -> Option<u64> {
        let now = self.epoch.nanos(Instant::now());
        self.lock().gcras[dimension.index()]
            .as_ref()
            .map(|gcra| gcra.available(now))
    }

    /// Reservations that were neither settled nor dropped yet.
    pub fn outstanding(&self) -> u64 {
        self.lock().outstanding
    }

    /// Whether nothing is booked ahead of now and no cooldown runs: forgetting this budget and
    /// starting a fresh one would change nothing.
    pub fn is_at_rest(&self) -> bool {
        let now = self.epoch.nanos(Instant::now());
        let state = self.lock();
        state.outstanding == 0
            && state.cooldown_until <= now
            && state.cells.iter().all(|cell| cell.cooldown_until <= now)
            && state
                .gcras
                .iter()
                .all(|gcra| gcra.as_ref().is_none_or(|g| g.tat() <= now))
    }

    /// Books `cost` at `now` as a reservation that waits in the queue, even when its slot has
    /// come already; refused when it could not leave within `max_wait` or never fits.
    pub(super) fn book(
        &self,
        cost: &Cost,
        max_wait: Option<Duration>,
        now: Instant,
    ) -> Result<Queued, Blocked> {
        let now = self.epoch.nanos(now);
        let mut state = self.lock();
        let (at, floor) = self.schedule(&state, cost, max_wait, now)?;
        Ok(self.queue(&mut state, cost, floor, at, now))
    }

    /// Books `cost` at `now` like [`book`](Self::book), but when the units may leave at once
    /// uses them right away, without a place in the queue: one lock for the common case of a
    /// lane that is not saturated, none for a budget nothing has engaged.
    pub(super) fn book_or_use(
        &self,
        cost: &Cost,
        max_wait: Option<Duration>,
        now: Instant,
    ) -> Result<Booked, Blocked> {
        if !self.engaged.load(Ordering::Acquire) {
            return Ok(Booked::Used {
                grants: [None; DIMENSIONS],
                applied: self.charges.load().applied(),
            });
        }
        let now = self.epoch.nanos(now);
        let mut state = self.lock();
        let (at, floor) = self.schedule(&state, cost, max_wait, now)?;
        if at > now {
            return Ok(Booked::Queued(self.queue(&mut state, cost, floor, at, now)));
        }
        let grants = ledger::book_at(&mut state.gcras, cost, at, now);
        state.ledger.used(cost, at, now);
        Ok(Booked::Used {
            grants,
            applied: self.charges.load().applied(),
        })
    }

    /// Puts `cost` in the queue for `at`, under the lock: the generation it is booked under is
    /// read before a reprice can move it.
    fn queue(&self, state: &mut State, cost: &Cost, floor: Nanos, at: Nanos, now: Nanos) -> Queued {
        let place = state.reserve(cost, floor, at, now);
        Queued {
            place,
            applied: self.charges.load().applied(),
            generation: self.generation.load(Ordering::Acquire),
        }
    }

    /// When `cost` may leave if booked at `now` (the slowest dimension or a cooldown decides),
    /// and no earlier than what (`now` or the cooldown's end); refused when that is beyond
    /// `max_wait` or the cost can never fit.
    fn schedule(
        &self,
        state: &State,
        cost: &Cost,
        max_wait: Option<Duration>,
        now: Nanos,
    ) -> Result<(Nanos, Nanos), Blocked> {
        for (dimension, units) in cost.iter() {
            if let Some(gcra) = &state.gcras[dimension.index()] {
                if state.cells[dimension.index()].strict && units > gcra.burst() {
                    return Err(Blocked::NeverFits {
                        dimension,
                        cost: units,
                        burst: gcra.burst(),
                    });
                }
            }
        }
        let (cooldown, cooled_dimension) = state.cooldown_for(cost);
        let floor = now.max(cooldown);
        let (at, blocker) = ledger::ready_at(&state.gcras, cost, floor, now);
        let wait = Duration::from_nanos(at - now);
        match max_wait {
            Some(max_wait) if wait > max_wait => Err(match blocker {
                Some(dimension) => Blocked::Rate { dimension, wait },
                None => Blocked::Cooldown {
                    dimension: cooled_dimension,
                    wait,
                },
            }),
            _ => Ok((at, floor)),
        }
    }

    /// A reservation ends: used (its booking stays, and comes back to reconcile), or dropped
    /// (its booking is taken out, wherever it stands).
    pub(super) fn release(&self, place: &Place, used: bool) -> Grants {
        let mut state = self.lock();
        state.outstanding = state.outstanding.saturating_sub(1);
        if used {
            return state.ledger.commit(place);
        }
        let now = self.epoch.nanos(Instant::now());
        let State { gcras, ledger, .. } = &mut *state;
        ledger.cancel(place, gcras, now);
        [None; DIMENSIONS]
    }

    /// The wait at `place` ended: the next waiter learns whether its slot moved.
    pub(super) fn relay(&self, place: &Place) {
        self.lock().ledger.relay(place);
    }

    /// The dimension whose cooldown holds `cost` back (`None`: the whole lane's, or none).
    pub(super) fn cooldown_dimension(&self, cost: &Cost) -> Option<Dimension> {
        self.lock().cooldown_for(cost).1
    }

    /// The budget's charge learner, which prices bookings and learns from their settlement.
    pub(super) fn charges(&self) -> &SharedCharges {
        &self.charges
    }

    /// Brings the booking of `reserved` (held as `grants`) to `actual`: refunds what was not
    /// used (when it still can be, see [`Gcra::refund`]), debits what was used beyond it, up to
    /// what one answer can use (see [`settle`](Self::settle)).
    pub(super) fn reconcile(&self, reserved: &Cost, grants: &Grants, actual: &Cost) {
        let mut state = self.lock();
        let State { gcras, ledger, .. } = &mut *state;
        if actual == reserved {
            return;
        }
        let now = self.epoch.nanos(Instant::now());
        let mut rebook = false;
        for dimension in Dimension::ALL {
            let Some(burst) = gcras[dimension.index()].as_ref().map(Gcra::burst) else {
                continue;
            };
            let (booked, used) = (reserved.get(dimension), actual.get(dimension));
            let most = booked.max(burst);
            if used > most {
                self.clamped.fetch_add(1, Relaxed);
                tracing::warn!(target: "reqwest_throttle", %dimension, reported = used, charged = most, "reported cost above what the limit admits at once: charged only up to it");
            }
            let grant = grants[dimension.index()];
            rebook |= ledger.settle(gcras, dimension, booked, used.min(most), grant, now);
        }
        drop(state);
        if rebook {
            self.next_generation();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn unlimited_budget_admits_at_once() {
        let budget = Budget::new();
        let r = budget
            .reserve(&Cost::requests(1), Some(Duration::ZERO))
            .unwrap();
        assert_eq!(r.ready_at(), Instant::now());
        assert_eq!(budget.outstanding(), 1);
        drop(r);
        assert_eq!(budget.outstanding(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn dimensions_are_booked_for_the_slowest_instant() {
        let budget = Budget::new();
        budget.set_limit(Dimension::Requests, Some(Limit::per_second(10, 10)));
        budget.set_limit(Dimension::Tokens, Some(Limit::per_second(100, 100)));
        let cost = Cost::requests(1).with(Dimension::Tokens, 100);
        let first = budget.reserve(&cost, None).unwrap();
        let second = budget.reserve(&cost, None).unwrap();
        assert_eq!(second.ready_at() - first.ready_at(), Duration::from_secs(1));
        // The request dimension was booked for the instant the second request leaves (1 s), not
        // for now: its cell is booked up to 1.1 s, so with a 1 s tolerance a request-only cost
        // arriving now waits 200 ms instead of going at once.
        let request_only = budget.reserve(&Cost::requests(1), None).unwrap();
        assert_eq!(
            request_only.ready_at() - first.ready_at(),
            Duration::from_millis(200)
        );
        request_only.settle(None);
        first.settle(None);
        second.settle(None);
    }

    #[tokio::test(start_paused = true)]
    async fn only_requests_are_spaced_as_sent() {
        let budget = Budget::new();
        budget.set_limit(
            Dimension::Tokens,
            Some(Limit {
                interval: Duration::from_millis(360),
                burst: 10_000,
            }),
        );
        let cost = Cost::requests(1).with(Dimension::Tokens, 6_000);
        let now = Instant::now();
        assert_eq!(budget.depart(&cost, now), Ok(()));
        // A second large request, once its tokens were booked (the first one's usage given
        // back), leaves at once: token units are not spaced again at departure.
        assert_eq!(budget.depart(&cost, now), Ok(()));
        budget.set_limit(
            Dimension::Requests,
            Some(Limit {
                interval: Duration::from_millis(20),
                burst: 1,
            }),
        );
        assert_eq!(budget.depart(&cost, now), Ok(()));
        // 20 ms and the guard as sent: 1 % of it.
        assert_eq!(
            budget.depart(&cost, now),
            Err(now + Duration::from_millis(20) + Duration::from_micros(200))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn refused_reservation_books_nothing() {
        let budget = Budget::new();
        budget.set_limit(Dimension::Requests, Some(Limit::per_second(1, 1)));
        let first = budget.reserve(&Cost::requests(1), None).unwrap();
        let blocked = budget
            .reserve(&Cost::requests(1), Some(Duration::from_millis(500)))
            .unwrap_err();
        assert_eq!(
            blocked,
            Blocked::Rate {
                dimension: Dimension::Requests,
                wait: Duration::from_secs(1)
            }
        );
        assert_eq!(budget.outstanding(), 1);
        first.settle(None);
        // Nothing was booked by the refused attempt: the next slot is still 1 s away.
        let next = budget.reserve(&Cost::requests(1), None).unwrap();
        assert_eq!(next.ready_at() - Instant::now(), Duration::from_secs(1));
    }

    /// A server's count of what remains is replayed as that count, not as the difference it
    /// made: a waiter dropped after it gives back only what the server never counted.
    #[tokio::test(start_paused = true)]
    async fn a_sync_replayed_after_a_drop_keeps_the_servers_count() {
        let budget = Budget::new();
        budget.set_limit(Dimension::Requests, Some(Limit::per_second(1, 1)));
        budget.set_limit(Dimension::Tokens, Some(Limit::per_second(100, 100)));
        let cost = Cost::requests(1).with(Dimension::Tokens, 10);
        let first = budget.reserve(&cost, None).unwrap();
        // Held by the request dimension for 1 s; its tokens are booked for then.
        let waiting = budget.reserve(&cost, None).unwrap();
        assert_eq!(waiting.ready_at() - Instant::now(), Duration::from_secs(1));
        // The server has counted the first request only: 90 tokens remain.
        budget.sync(Dimension::Tokens, 90, 1);
        assert_eq!(budget.available(Dimension::Tokens), Some(80));
        drop(waiting);
        assert_eq!(budget.available(Dimension::Tokens), Some(90));
        first.settle(None);
    }

    /// A fixed window of 10 per 10 s with 2 left and 5 s to go: 5 would refill by its end at
    /// the even pace, so the budget's level goes to 2 − 5 = −3 (it believed 0: 3 charged);
    /// the waiters booked before the server's word stand behind it, in their order, and only
    /// 2 leave by the window's end.
    #[tokio::test(start_paused = true)]
    async fn a_window_sync_leaves_only_what_remains_before_the_end() {
        let budget = Budget::new();
        budget.set_limit(Dimension::Requests, Some(Limit::per_second(1, 10)));
        let start = Instant::now();
        let spent: Vec<_> = (0..10)
            .map(|_| budget.reserve(&Cost::requests(1), None).unwrap().commit())
            .collect();
        let waiters: Vec<_> = (0..7)
            .map(|_| budget.reserve(&Cost::requests(1), None).unwrap())
            .collect();
        // The server counted 8 of the 10 so far.
        let end = start + Duration::from_secs(5);
        assert_eq!(budget.sync_until(Dimension::Requests, 2, Some(end), 1), 3);
        let slots: Vec<_> = waiters.iter().map(|w| w.ready_at() - start).collect();
        let before_end = slots.iter().filter(|&&slot| slot <= Duration::from_secs(5));
        assert_eq!(before_end.count(), 2, "{slots:?}");
        assert!(slots.windows(2).all(|pair| pair[0] < pair[1]), "{slots:?}");
        // Said again, the same word changes nothing.
        assert_eq!(budget.sync_until(Dimension::Requests, 2, Some(end), 1), 0);
        // The server says more remains than the budget believes: the waiters move up, in order.
        let later: Vec<_> = waiters.iter().map(|w| w.ready_at()).collect();
        assert!(budget.sync_until(Dimension::Requests, 4, Some(end), 1) < 0);
        let moved: Vec<_> = waiters.iter().map(|w| w.ready_at()).collect();
        assert!(moved
            .iter()
            .zip(&later)
            .all(|(moved, later)| moved <= later));
        assert!(moved[0] < later[0]);
        assert!(moved.windows(2).all(|pair| pair[0] < pair[1]), "{moved:?}");
        drop(waiters);
        drop(spent);
    }

    #[tokio::test(start_paused = true)]
    async fn strict_dimension_refuses_what_never_fits() {
        let budget = Budget::new();
        budget.set_limit(Dimension::Tokens, Some(Limit::per_second(100, 1_000)));
        budget.set_strict(Dimension::Tokens, true);
        let blocked = budget
            .reserve(&Cost::requests(1).with(Dimension::Tokens, 1_001), None)
            .unwrap_err();
        assert_eq!(
            blocked,
            Blocked::NeverFits {
                dimension: Dimension::Tokens,
                cost: 1_001,
                burst: 1_000
            }
        );
        assert_eq!(blocked.wait(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn dimension_cooldown_spares_other_costs() {
        let budget = Budget::new();
        budget.cool_down(
            Some(Dimension::Tokens),
            Instant::now() + Duration::from_secs(60),
        );
        assert!(budget.cooldown_until(&Cost::requests(1)).is_none());
        assert!(budget
            .cooldown_until(&Cost::requests(1).with(Dimension::Tokens, 5))
            .is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn at_rest_only_when_nothing_is_booked_ahead() {
        let budget = Budget::new();
        budget.set_limit(Dimension::Requests, Some(Limit::per_second(1, 1)));
        assert!(budget.is_at_rest());
        budget
            .reserve(&Cost::requests(1), None)
            .unwrap()
            .settle(None);
        assert!(!budget.is_at_rest());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(budget.is_at_rest());
    }
}
