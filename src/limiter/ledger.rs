//! The ledger of a [`Budget`](super::Budget): what happened to its cells since the oldest
//! reservation still waiting, so that a reservation dropped anywhere in the queue gives its slot
//! back exactly.
//!
//! # Why a ledger
//!
//! A GCRA cell is one number, the end of its schedule. Only the latest booking can be taken off
//! that end ([`Gcra::refund`]); a reservation dropped *inside* the queue leaves a hole that the
//! number cannot express, and every later booking stays scheduled behind it. With callers that
//! give up (timeouts, `select!`), such holes pile up until every newcomer is booked behind dead
//! slots.
//!
//! # How it works
//!
//! While at least one reservation waits, every change of the cells is written down in order:
//! waiting reservations (with the cells as they were just before them), bookings that left at
//! once or whose reservation was used, and every other change (a rate set or restarted, units
//! charged or given back). A reservation dropped while it waits is struck out and the ledger is
//! replayed from the state just before it, as if it had never been booked:
//!
//! - a booking already used keeps its instant (it has left);
//! - a reservation still waiting is booked again at the replay's `now` with the cells as
//!   rebuilt so far: it moves up into the freed time (every step is monotone in the schedule it
//!   starts from), never into the past;
//! - a reservation whose slot has come but which has not been used yet keeps its slot;
//! - every other change is applied again at the instant it first happened; a server's count
//!   of what remains is applied as that count, not as the difference it made then (the server
//!   never counted the dropped reservation), which may move a waiter back by less than one
//!   interval's rounding.
//!
//! The rebuilt schedule is one the cells could have produced by themselves, one booking fewer:
//! the GCRA bound holds for it as it does for any, waiters keep their first-come order, and a
//! waiter that moved up is woken to leave at its new slot. Dropping the latest booking restores
//! the cells as they were before it, which is the exact refund.
//!
//! Used bookings and changes at the front of the ledger are forgotten as soon as no waiting
//! reservation precedes them, so with nobody waiting the ledger is empty and costs nothing; it
//! holds at most what happens while the oldest waiter waits.
//!
//! # Rolling windows
//!
//! A budget's longer windows (see the `window` module) are sums, not one number: a replay takes
//! the units of every waiter it will book again out of them first (those whose slot has not
//! come), puts each window's frontier back where it stood before the first of them, and
//! appends them again in their order as they are booked. A used booking, or a waiter whose
//! slot has come, keeps its units where they are. The first-come order and the quota hold for
//! the rebuilt windows as they do for any; the shortcut that stops a replay once the cells
//! come back to a schedule already booked is not taken when there are windows.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use super::cost::{Cost, Dimension, Limit, DIMENSIONS};
use super::gcra::{Gcra, Grant, Nanos};
use super::window::{Spent, Windows};

/// The GCRA cell of each dimension (indexed as [`Dimension::ALL`]); `None`: unlimited.
pub(super) type Cells = [Option<Gcra>; DIMENSIONS];

/// What a booking holds: its grant in each dimension's cell, and the instant it is counted at
/// in the rolling windows.
#[derive(Clone, Copy, Debug)]
pub(super) struct Grants {
    pub(super) cells: [Option<Grant>; DIMENSIONS],
    /// `None`: the booking is in no window.
    pub(super) windows_at: Option<Nanos>,
}

impl Grants {
    /// A booking that holds nothing.
    pub(super) const NONE: Grants = Grants {
        cells: [None; DIMENSIONS],
        windows_at: None,
    };
}

/// What holds a booking back: a dimension's cell, or one of its windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Held {
    Cell(Dimension),
    Window(Spent),
}

/// The instant a waiting reservation may leave, shared with it: a replay moves it earlier.
///
/// Waking every waiter that moved would cost a wake-up per waiter per dropped reservation. Only
/// the first one is woken; the others are *relayed*: a waiter whose wait ends wakes the next one
/// whose timer is set for a slot it no longer has ([`Ledger::relay`]). Slots are in queue
/// order, so each learns its new slot no later than it comes.
#[derive(Debug)]
pub(super) struct Slot {
    ready_at: AtomicU64,
    /// The slot the waiter's timer is set for; [`NOT_WAITING`] outside a wait.
    armed: AtomicU64,
    moved: tokio::sync::Notify,
}

/// [`Slot::armed`] when nobody waits on the slot.
const NOT_WAITING: Nanos = u64::MAX;
/// [`Slot::armed`] while a waiter reads its slot, before its timer is set.
const ARMING: Nanos = u64::MAX - 1;

impl Slot {
    fn new(ready_at: Nanos) -> Slot {
        Slot {
            ready_at: AtomicU64::new(ready_at),
            armed: AtomicU64::new(NOT_WAITING),
            moved: tokio::sync::Notify::new(),
        }
    }

    /// When the reservation may leave, in nanoseconds since the budget's epoch.
    pub(super) fn ready_at(&self) -> Nanos {
        self.ready_at.load(Ordering::SeqCst)
    }

    /// Starts a wait: a move from now on is seen by a relay, or resolves the returned future.
    pub(super) fn arming(&self) -> tokio::sync::futures::Notified<'_> {
        self.armed.store(ARMING, Ordering::SeqCst);
        self.moved.notified()
    }

    /// The waiter's timer is set for `ready_at`.
    pub(super) fn armed(&self, ready_at: Nanos) {
        self.armed.store(ready_at, Ordering::SeqCst);
    }

    /// The wait ended.
    pub(super) fn disarmed(&self) {
        self.armed.store(NOT_WAITING, Ordering::SeqCst);
    }

    /// Whether a waiter sleeps until a later instant than its slot.
    fn is_stale(&self) -> bool {
        let armed = self.armed.load(Ordering::SeqCst);
        armed != NOT_WAITING && self.ready_at() < armed
    }

    fn wake(&self) {
        // A stored permit: a waiter that is not asleep yet still sees it.
        self.moved.notify_one();
    }
}

/// A change of one cell other than a booking.
#[derive(Clone, Copy, Debug)]
pub(super) enum Change {
    /// A new rate keeping what is booked ([`Gcra::set_rate`]); `None` removes the limit.
    Limit(Option<Limit>),
    /// A fresh cell whose burst was just spent; `None` removes the limit.
    Restart(Option<Limit>),
    /// Units charged after the fact ([`Gcra::debit`]).
    Debit(u64),
    /// The server's word: this many units remain now. What is booked beyond it is charged, what
    /// is missing given back ([`Gcra::debit`], [`Gcra::credit`]).
    Sync(u64),
    /// Units given back ([`Gcra::credit`]).
    Credit(u64),
    /// Virtual time a refund of the latest grant took off the schedule.
    GiveBack(Nanos),
}

impl Change {
    /// Applies the change to `cell` at `now`.
    pub(super) fn apply(self, cell: &mut Option<Gcra>, now: Nanos) {
        match (self, cell.as_mut()) {
            (Change::Limit(None) | Change::Restart(None), _) => *cell = None,
            (Change::Limit(Some(limit)), Some(gcra)) => {
                gcra.set_rate(limit.interval, limit.burst, now);
            }
            (Change::Limit(Some(limit)), None) => {
                *cell = Some(Gcra::new(limit.interval, limit.burst));
            }
            (Change::Restart(Some(limit)), _) => {
                let mut gcra = Gcra::new(limit.interval, limit.burst);
                gcra.debit(limit.burst, now);
                *cell = Some(gcra);
            }
            (Change::Debit(units), Some(gcra)) => gcra.debit(units, now),
            (Change::Sync(remaining), Some(gcra)) => {
                let available = gcra.available(now);
                if available > remaining {
                    gcra.debit(available - remaining, now);
                } else {
                    gcra.credit(remaining.min(gcra.burst()) - available, now);
                }
            }
            (Change::Credit(units), Some(gcra)) => gcra.credit(units, now),
            (Change::GiveBack(nanos), Some(gcra)) => gcra.give_back(nanos),
            (
                Change::Debit(_) | Change::Sync(_) | Change::Credit(_) | Change::GiveBack(_),
                None,
            ) => {}
        }
    }
}

/// When `cost` could leave, booked at `now` no earlier than `floor`, and what decides it
/// (`None`: the floor does).
pub(super) fn ready_at(
    cells: &Cells,
    windows: &Windows,
    cost: &Cost,
    floor: Nanos,
    now: Nanos,
) -> (Nanos, Option<Held>) {
    let mut at = (floor.max(now), None);
    for (dimension, units) in cost.iter() {
        if let Some(gcra) = &cells[dimension.index()] {
            let ready = gcra.ready_at(units, now);
            if ready > at.0 {
                at = (ready, Some(Held::Cell(dimension)));
            }
        }
    }
    // Every window admits from its first instant on, and so does every cell.
    match windows.ready_at(cost, at.0) {
        (ready, Some(spent)) if ready > at.0 => (ready, Some(Held::Window(spent))),
        _ => at,
    }
}

/// Books `cost` in every dimension's cell for the instant `at` (no earlier than [`ready_at`]).
fn book_cells(
    cells: &mut Cells,
    cost: &Cost,
    at: Nanos,
    now: Nanos,
) -> [Option<Grant>; DIMENSIONS] {
    let mut grants = [None; DIMENSIONS];
    for (dimension, units) in cost.iter() {
        if let Some(gcra) = cells[dimension.index()].as_mut() {
            grants[dimension.index()] = Some(gcra.reserve_at(units, at, now));
        }
    }
    grants
}

/// Books `cost` in every cell and window for the instant `at` (no earlier than [`ready_at`]).
pub(super) fn book_at(
    cells: &mut Cells,
    windows: &mut Windows,
    cost: &Cost,
    at: Nanos,
    now: Nanos,
) -> Grants {
    Grants {
        cells: book_cells(cells, cost, at, now),
        windows_at: windows.book(cost, at, now),
    }
}

#[derive(Debug)]
enum Entry {
    /// A reservation neither used nor dropped.
    Waiting(Box<Waiting>),
    /// A booking that left at `at`.
    Used { cost: Cost, at: Nanos, now: Nanos },
    /// Any other change of one cell.
    Change {
        dimension: Dimension,
        change: Change,
        now: Nanos,
    },
    /// A reservation that was dropped: replayed as nothing.
    Dropped,
}

#[derive(Debug)]
struct Waiting {
    cost: Cost,
    /// No earlier than this (the booking instant, or a cooldown's end then).
    floor: Nanos,
    /// The cells just before this booking.
    before: Cells,
    /// The windows' frontiers just before this booking.
    frontiers: Vec<Nanos>,
    grants: Grants,
    slot: std::sync::Arc<Slot>,
}

/// Where a waiting reservation stands in its budget's ledger.
#[derive(Debug)]
pub(super) struct Place {
    position: u64,
    pub(super) slot: std::sync::Arc<Slot>,
}

/// The record of a budget's cells since its oldest waiting reservation.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    entries: VecDeque<Entry>,
    /// The position of `entries[0]` since the budget began.
    first: u64,
}

impl Ledger {
    /// Records a reservation booked at `at` (so its cells were `before`, and its windows'
    /// frontiers `frontiers`, just before it).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn waiting(
        &mut self,
        before: Cells,
        frontiers: Vec<Nanos>,
        cost: &Cost,
        floor: Nanos,
        at: Nanos,
        grants: Grants,
    ) -> Place {
        let slot = std::sync::Arc::new(Slot::new(at));
        let position = self.first + self.entries.len() as u64;
        self.entries.push_back(Entry::Waiting(Box::new(Waiting {
            cost: *cost,
            floor,
            before,
            frontiers,
            grants,
            slot: std::sync::Arc::clone(&slot),
        })));
        Place { position, slot }
    }

    /// Records a booking that left at once, if anybody waits (otherwise nothing can move).
    pub(super) fn used(&mut self, cost: &Cost, at: Nanos, now: Nanos) {
        if !self.entries.is_empty() {
            self.entries.push_back(Entry::Used {
                cost: *cost,
                at,
                now,
            });
        }
    }

    /// Records a change of `dimension`'s cell, if anybody waits.
    pub(super) fn change(&mut self, dimension: Dimension, change: Change, now: Nanos) {
        if !self.entries.is_empty() {
            self.entries.push_back(Entry::Change {
                dimension,
                change,
                now,
            });
        }
    }

    /// Applies `change` to `dimension`'s cell as if it had happened before every waiting
    /// reservation: the server's word about what it has seen, which none of them is part of.
    /// The waiters are booked again behind it in their order (earlier after a credit, later
    /// after a debit), and the first one that moved up is woken, as after a
    /// [`cancel`](Self::cancel).
    ///
    /// Returns whether the waiters must book again themselves instead: a rate changed since the
    /// first of them was booked, so the cells recorded before it count at the old rate, and the
    /// change's units (at the current rate) replayed there would be worth another span of time
    /// (a debit at a slow rate once learned pushed every waiter minutes out). The change then
    /// applies now, behind them, and the caller makes them book again
    /// ([`Waited::Repriced`](super::Waited::Repriced)), in the order they wake.
    pub(super) fn change_ahead(
        &mut self,
        dimension: Dimension,
        change: Change,
        cells: &mut Cells,
        windows: &mut Windows,
        now: Nanos,
    ) -> bool {
        self.rebook_waiters(Some((dimension, change)), cells, windows, now)
    }

    /// Books every waiting reservation again, in order, after `change` (if any) applied ahead
    /// of them; without a waiter the change simply applies. What a charge to a window after the
    /// fact needs: the waiters behind it were counted without it.
    pub(super) fn rebook_waiters(
        &mut self,
        change: Option<(Dimension, Change)>,
        cells: &mut Cells,
        windows: &mut Windows,
        now: Nanos,
    ) -> bool {
        let first = self
            .entries
            .iter()
            .position(|entry| matches!(entry, Entry::Waiting(_)));
        let rate_changed = |index: usize| {
            self.entries.range(index..).any(|entry| {
                matches!(
                    entry,
                    Entry::Change {
                        change: Change::Limit(_) | Change::Restart(_),
                        ..
                    }
                )
            })
        };
        let Some((index, Entry::Waiting(waiting))) = first
            .filter(|&index| !rate_changed(index))
            .and_then(|index| Some((index, self.entries.get(index)?)))
        else {
            if let Some((dimension, change)) = change {
                change.apply(&mut cells[dimension.index()], now);
                self.change(dimension, change, now);
            }
            return first.is_some();
        };
        let mut rebuilt = waiting.before;
        if let Some((dimension, change)) = change {
            change.apply(&mut rebuilt[dimension.index()], now);
        }
        if !windows.is_empty() {
            windows.restore(&waiting.frontiers);
            self.lift_moving(index, windows, now);
        }
        for entry in self.entries.range_mut(index..) {
            replay(entry, &mut rebuilt, windows, now);
        }
        install(cells, rebuilt);
        self.wake_from(index);
        false
    }

    /// Takes the window units of every waiter from `index` on whose slot has not come out of
    /// `windows`: a replay appends them again as it books them.
    fn lift_moving(&self, index: usize, windows: &mut Windows, now: Nanos) {
        for entry in self.entries.range(index.min(self.entries.len())..) {
            if let Entry::Waiting(waiting) = entry {
                if let (Some(at), true) = (waiting.grants.windows_at, waiting.slot.ready_at() > now)
                {
                    windows.unbook(&waiting.cost, at, now);
                }
            }
        }
    }

    /// A used booking of `booked` units of `dimension` (holding `grant`) really cost `used`.
    /// What it did not use is given back while its grant is still the latest of the cell
    /// ([`Gcra::refund`]); what it used beyond is charged ahead of the reservations still
    /// waiting: they were booked behind its estimate, and now stand behind what it cost.
    /// Returns whether the waiters must book again (see [`change_ahead`](Self::change_ahead)).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn settle(
        &mut self,
        cells: &mut Cells,
        windows: &mut Windows,
        dimension: Dimension,
        booked: u64,
        used: u64,
        grant: Option<Grant>,
        now: Nanos,
    ) -> bool {
        let Some(gcra) = cells[dimension.index()].as_mut() else {
            return false;
        };
        match grant {
            Some(grant) if used < booked => {
                if let Some(returned) = gcra.refund_nanos(&grant, booked - used) {
                    self.change(dimension, Change::GiveBack(returned), now);
                }
            }
            _ if used > booked => {
                let debit = Change::Debit(used - booked);
                return self.change_ahead(dimension, debit, cells, windows, now);
            }
            _ => {}
        }
        false
    }

    /// The units of `dimension` booked by reservations still waiting: the server has not seen
    /// them.
    pub(super) fn waiting_units(&self, dimension: Dimension) -> u64 {
        self.entries
            .iter()
            .filter_map(|entry| match entry {
                Entry::Waiting(waiting) => Some(waiting.cost.get(dimension)),
                _ => None,
            })
            .fold(0, u64::saturating_add)
    }

    fn index(&self, place: &Place) -> Option<usize> {
        let index = usize::try_from(place.position.checked_sub(self.first)?).ok()?;
        (index < self.entries.len()).then_some(index)
    }

    /// The reservation at `place` is used: it keeps its slot for good. Returns what it holds.
    pub(super) fn commit(&mut self, place: &Place) -> Grants {
        let Some(index) = self.index(place) else {
            return Grants::NONE;
        };
        let entry = std::mem::replace(&mut self.entries[index], Entry::Dropped);
        let Entry::Waiting(waiting) = entry else {
            self.entries[index] = entry;
            return Grants::NONE;
        };
        self.entries[index] = Entry::Used {
            cost: waiting.cost,
            at: waiting.slot.ready_at(),
            now: waiting.floor,
        };
        self.relay(place);
        self.forget_settled();
        waiting.grants
    }

    /// The reservation at `place` is dropped unused: `cells` and `windows` become what they
    /// would be had it never been booked, and the reservations waiting behind it move up.
    pub(super) fn cancel(
        &mut self,
        place: &Place,
        cells: &mut Cells,
        windows: &mut Windows,
        now: Nanos,
    ) {
        let Some(index) = self.index(place) else {
            return;
        };
        let entry = std::mem::replace(&mut self.entries[index], Entry::Dropped);
        let Entry::Waiting(cancelled) = entry else {
            self.entries[index] = entry;
            return;
        };
        let mut rebuilt = cancelled.before;
        let windowed = !windows.is_empty();
        if windowed {
            if let Some(at) = cancelled.grants.windows_at {
                windows.unbook(&cancelled.cost, at, now);
            }
            windows.restore(&cancelled.frontiers);
            self.lift_moving(index + 1, windows, now);
        }
        let mut converged = false;
        for entry in self.entries.range_mut(index + 1..) {
            if let Entry::Waiting(waiting) = entry {
                // From here on the replay would repeat what is booked: the cancelled time was
                // absorbed (a gap, a slot that keeps its instant). Windows are sums: a replay
                // goes to the end.
                if !windowed && same_schedules(&waiting.before, &rebuilt) {
                    converged = true;
                    break;
                }
            }
            replay(entry, &mut rebuilt, windows, now);
        }
        // The first waiter that moved is woken; the others learn of it in turn (see `Slot`).
        self.wake_after(index);
        if converged {
            self.forget_settled();
            return;
        }
        install(cells, rebuilt);
        self.forget_settled();
    }

    /// The wait at `place` ended (or it was used without one): wakes the next waiter whose
    /// timer is set for a slot it no longer has, which in its turn wakes the next.
    pub(super) fn relay(&self, place: &Place) {
        if let Some(index) = self.index(place) {
            self.wake_after(index);
        }
    }

    /// Wakes the first waiter after `index` whose timer is set for a slot it no longer has,
    /// unless a waiter on time comes first (it relays when its own wait ends). Reservations
    /// nobody waits on are passed over: they read their slot when they wait.
    fn wake_after(&self, index: usize) {
        self.wake_from(index + 1);
    }

    /// [`wake_after`](Self::wake_after) from `index` on, itself included.
    fn wake_from(&self, index: usize) {
        for entry in self.entries.range(index.min(self.entries.len())..) {
            let Entry::Waiting(waiting) = entry else {
                continue;
            };
            if waiting.slot.is_stale() {
                waiting.slot.wake();
                return;
            }
            if waiting.slot.armed.load(Ordering::SeqCst) != NOT_WAITING {
                // It waits on time, and relays when its own wait ends.
                return;
            }
        }
    }

    /// Forgets what no waiting reservation precedes any more.
    fn forget_settled(&mut self) {
        while self
            .entries
            .front()
            .is_some_and(|entry| !matches!(entry, Entry::Waiting(_)))
        {
            self.entries.pop_front();
            self.first += 1;
        }
        if self.entries.is_empty() {
            // Give memory back after a long queue.
            self.entries.shrink_to(64);
        }
    }
}

/// Puts `rebuilt` in place of `cells`, each newer than the one it replaces (no grant of the
/// old schedule refunds into the new one).
fn install(cells: &mut Cells, rebuilt: Cells) {
    for (cell, rebuilt) in cells.iter_mut().zip(rebuilt) {
        match (rebuilt, cell.as_ref()) {
            (Some(mut gcra), Some(replaced)) => {
                gcra.supersede(replaced);
                *cell = Some(gcra);
            }
            (rebuilt, _) => *cell = rebuilt,
        }
    }
}

/// Whether two sets of cells hold the same schedules (whatever their booking numbers).
fn same_schedules(a: &Cells, b: &Cells) -> bool {
    a.iter().zip(b).all(|pair| match pair {
        (Some(a), Some(b)) => a.same_schedule(b),
        (None, None) => true,
        _ => false,
    })
}

/// Applies `entry` to the `cells` and `windows` being rebuilt at `now` (the window units of a
/// waiter whose slot has not come were taken out before: see [`Ledger::lift_moving`]).
fn replay(entry: &mut Entry, cells: &mut Cells, windows: &mut Windows, now: Nanos) {
    match entry {
        Entry::Waiting(waiting) => {
            waiting.before = *cells;
            if !windows.is_empty() {
                waiting.frontiers = windows.frontiers();
            }
            let slot = waiting.slot.ready_at();
            if slot <= now {
                // Its slot has come: it may be leaving right now, so it keeps it.
                waiting.grants.cells = book_cells(cells, &waiting.cost, slot, waiting.floor);
                if let Some(at) = waiting.grants.windows_at {
                    windows.keep(&waiting.cost, at);
                }
                return;
            }
            // Booked again now, never in the past.
            let (at, _) = ready_at(cells, windows, &waiting.cost, waiting.floor, now);
            waiting.grants = book_at(cells, windows, &waiting.cost, at, now);
            // Earlier, as a rule; later only if the server's word (a sync) took back time the
            // dropped reservation had freed: the waiter reads its slot again when it wakes.
            if at != slot {
                waiting.slot.ready_at.store(at, Ordering::SeqCst);
            }
        }
        Entry::Used { cost, at, now } => {
            book_cells(cells, cost, *at, *now);
            windows.keep(cost, *at);
        }
        Entry::Change {
            dimension,
            change,
            now,
        } => change.apply(&mut cells[dimension.index()], *now),
        Entry::Dropped => {}
    }
}
