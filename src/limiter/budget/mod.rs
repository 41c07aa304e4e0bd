//! A budget: several dimensions booked together, each with a rate and any longer windows, a
//! cooldown gate, and the server's word.
//!
//! A request costs something in one or more [`Dimension`]s (one request; for LLM APIs also
//! tokens). A dimension has a rate (a GCRA cell, [`Budget::set_limit`]) and may have longer
//! [`RollingWindow`]s beside it ([`Budget::set_windows`]: 10 000 a day beside 500 a minute). A
//! booking takes every window of every dimension of the [`Cost`] at the same instant, all or
//! nothing: it leaves when its slowest cell or window is ready, and each is booked *for that
//! instant*, so a request never holds tokens while it waits for a request slot or the reverse,
//! nor a minute's slot while it waits for the day's. Bookings go through the `ledger`, so that
//! one dropped anywhere in the queue gives its units back exactly, to the rate and to the
//! windows (the `reservation` module hands them out).
//!
//! The cooldown gate is how the server's own word (Retry-After, a reset) stops a whole lane:
//! [`Budget::cool_down`] sets an instant before which nothing leaves, including reservations
//! already waiting. The server's count of what remains ([`Budget::sync`]) brings a dimension to
//! that count; the reservations still waiting were not seen by the server, so a window's count,
//! or a bucket's that leaves too little for them, applies ahead of them and they book again
//! behind it, in their order (see the `sync` module; the server's word concerns a dimension's
//! rate, never its longer windows).

mod sync;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::charge::{Charges, SharedCharges};
use super::cost::{Blocked, Cost, Dimension, Limit, RollingWindow, DIMENSIONS};
use super::departure::Departures;
use super::gcra::{Gcra, Nanos};
use super::ledger::{self, Cells, Change, Grants, Held, Ledger, Place};
use super::reservation::Settled;
use super::window::Windows;
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
    /// The longer windows of each dimension, beside its cell.
    windows: Windows,
    /// Every change of `gcras` and `windows` since the oldest waiting reservation, to take any
    /// one out.
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
        let frontiers = self.windows.frontiers();
        let grants = ledger::book_at(&mut self.gcras, &mut self.windows, cost, at, now);
        self.outstanding += 1;
        self.ledger
            .waiting(before, frontiers, cost, floor, at, grants)
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

/// A set of dimensions reserved together (each a GCRA cell and any longer windows), and a
/// cooldown gate.
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

    /// Sets the longer windows of `dimension` beside its rate (an empty slice removes them):
    /// every booking that costs something in `dimension` must also fit in each of them. A
    /// window is exact where a rate is not: at most its quota in *any* span of its period (a
    /// rate of 1 000 a day with a full day's burst would let 2 000 through in a day: the burst,
    /// then the refill). Bookings are counted in each window at the instant they leave, given
    /// back when dropped or over-estimated, charged when under-estimated; a window of the same
    /// quota and period as one it replaces keeps what that one counted.
    ///
    /// Only the rate hears from the server ([`sync`](Self::sync), [`reprice`](Self::reprice)):
    /// a server announces one window per dimension, and its count of that window says nothing
    /// of the others.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use reqwest_throttle::limiter::{Blocked, Budget, Cost, Dimension, Limit, RollingWindow};
    ///
    /// let budget = Budget::new();
    /// // 60 a minute, at most 100 a day.
    /// budget.set_limit(Dimension::Requests, Some(Limit::new(Duration::from_secs(1), 60)));
    /// let day = RollingWindow::new(100, Duration::from_secs(86_400));
    /// budget.set_windows(Dimension::Requests, &[day]);
    /// for _ in 0..100 {
    ///     budget.reserve(&Cost::requests(1), None).unwrap().settle(None);
    /// }
    /// let blocked = budget.reserve(&Cost::requests(1), Some(Duration::from_secs(60))).unwrap_err();
    /// assert!(matches!(blocked, Blocked::Window { window, .. } if window == day));
    /// # }
    /// ```
    pub fn set_windows(&self, dimension: Dimension, windows: &[RollingWindow]) {
        let mut state = self.lock();
        if !windows.is_empty() {
            self.engaged.store(true, Ordering::Release);
        }
        state.windows.set(dimension, windows);
    }

    /// The longer windows of `dimension` (see [`set_windows`](Self::set_windows)).
    pub fn windows(&self, dimension: Dimension) -> Vec<RollingWindow> {
        self.lock().windows.limits(dimension)
    }

    /// Units of `dimension` that every window of it would admit now; `None` without a window.
    pub fn window_available(&self, dimension: Dimension) -> Option<u64> {
        let now = self.epoch.nanos(Instant::now());
        self.lock().windows.available(dimension, now)
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

    /// Whether nothing is booked ahead of now, no window holds a unit of the last period and no
    /// cooldown runs: forgetting this budget and starting a fresh one would change nothing.
    pub fn is_at_rest(&self) -> bool {
        let now = self.epoch.nanos(Instant::now());
        let state = self.lock();
        state.outstanding == 0
            && state.windows.is_at_rest(now)
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
        state.windows.prune(now);
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
                grants: Grants::NONE,
                applied: self.charges.load().applied(),
            });
        }
        let now = self.epoch.nanos(now);
        let mut state = self.lock();
        state.windows.prune(now);
        let (at, floor) = self.schedule(&state, cost, max_wait, now)?;
        if at > now {
            return Ok(Booked::Queued(self.queue(&mut state, cost, floor, at, now)));
        }
        let State {
            gcras,
            windows,
            ledger,
            ..
        } = &mut *state;
        let grants = ledger::book_at(gcras, windows, cost, at, now);
        ledger.used(cost, at, now);
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

    /// When `cost` may leave if booked at `now` (the slowest cell or window, or a cooldown
    /// decides), and no earlier than what (`now` or the cooldown's end); refused when that is
    /// beyond `max_wait` or the cost can never fit.
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
        let strict = |dimension: Dimension| state.cells[dimension.index()].strict;
        if let Some((spent, units)) = state.windows.never_fits(cost, strict) {
            return Err(Blocked::NeverFits {
                dimension: spent.dimension,
                cost: units,
                burst: spent.window.quota,
            });
        }
        let (cooldown, cooled_dimension) = state.cooldown_for(cost);
        let floor = now.max(cooldown);
        let (at, blocker) = ledger::ready_at(&state.gcras, &state.windows, cost, floor, now);
        let wait = Duration::from_nanos(at - now);
        match max_wait {
            Some(max_wait) if wait > max_wait => Err(match blocker {
                Some(Held::Cell(dimension)) => Blocked::Rate { dimension, wait },
                Some(Held::Window(spent)) => Blocked::Window {
                    dimension: spent.dimension,
                    window: spent.window,
                    wait,
                },
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
        let State {
            gcras,
            windows,
            ledger,
            ..
        } = &mut *state;
        ledger.cancel(place, gcras, windows, now);
        Grants::NONE
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
    /// used (when it still can be, see [`Gcra::refund`]; in a window, always), debits what was
    /// used beyond it, up to what one answer can use (see [`settle`](Self::settle)).
    pub(super) fn reconcile(&self, reserved: &Cost, grants: &Grants, actual: &Cost) -> Settled {
        let mut settled = Settled {
            charged: *actual,
            clamped: false,
        };
        if actual == reserved {
            return settled;
        }
        let mut state = self.lock();
        let State {
            gcras,
            windows,
            ledger,
            ..
        } = &mut *state;
        let now = self.epoch.nanos(Instant::now());
        let mut window_debited = false;
        let mut rebook = false;
        for dimension in Dimension::ALL {
            let burst = gcras[dimension.index()].as_ref().map(Gcra::burst);
            let quota = windows.limits(dimension).iter().map(|w| w.quota).min();
            // The most one answer can use: a burst of the rate, or else the smallest window.
            let Some(most) = burst.or(quota) else {
                continue;
            };
            let (booked, used) = (reserved.get(dimension), actual.get(dimension));
            let most = booked.max(most);
            if used > most {
                settled.clamped = true;
                self.clamped.fetch_add(1, Relaxed);
                tracing::warn!(target: "reqwest_throttle", %dimension, reported = used, charged = most, "reported cost above what the limit admits at once: charged only up to it");
            }
            let used = used.min(most);
            settled.charged = settled.charged.with(dimension, used);
            if let Some(at) = grants.windows_at {
                window_debited |= windows.adjust(dimension, at, booked, used, now);
            }
            let grant = grants.cells[dimension.index()];
            rebook |= ledger.settle(gcras, windows, dimension, booked, used, grant, now);
        }
        if window_debited {
            // The waiters were counted in the windows without what this answer used beyond
            // its estimate: they book again behind it.
            rebook |= ledger.rebook_waiters(None, gcras, windows, now);
        }
        drop(state);
        if rebook {
            self.next_generation();
        }
        settled
    }
}

#[cfg(test)]
mod tests;
