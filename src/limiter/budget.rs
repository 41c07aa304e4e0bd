//! A budget: several GCRA dimensions reserved together, and a cooldown gate.
//!
//! A request costs something in one or more [`Dimension`]s (one request; for LLM APIs also
//! tokens). [`Budget::reserve`] books every dimension of the [`Cost`] at the same instant, all or
//! nothing: the reservation leaves when its slowest dimension is ready, and every dimension is
//! booked *for that instant*, so a request never holds tokens while it waits for a request slot
//! or the reverse.
//!
//! A [`Reservation`] is cancellation-safe: dropped before it is [settled](Reservation::settle),
//! it gives its units back wherever it stands in the queue, and the reservations booked after it
//! move up into the time it held, in their order (see the `ledger` module). A caller that gives
//! up never leaves a phantom booking behind, and the limit is never exceeded for it.
//!
//! The cooldown gate is how the server's own word (Retry-After, a reset) stops a whole lane:
//! [`Budget::cool_down`] sets an instant before which nothing leaves, including reservations
//! that were already waiting — [`Reservation::wait`] checks the gate again every time it wakes.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::gcra::{Gcra, Nanos};
use super::ledger::{self, Cells, Change, Grants, Ledger, Place};
use crate::time::Epoch;

/// One thing a budget counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dimension {
    /// Requests sent.
    Requests,
    /// Tokens, input and output together (OpenAI's TPM).
    Tokens,
    /// Input (prompt) tokens (Anthropic's ITPM).
    InputTokens,
    /// Output (completion) tokens (Anthropic's OTPM).
    OutputTokens,
}

impl Dimension {
    /// Every dimension, in index order.
    pub const ALL: [Dimension; 4] = [
        Dimension::Requests,
        Dimension::Tokens,
        Dimension::InputTokens,
        Dimension::OutputTokens,
    ];

    pub(crate) const fn index(self) -> usize {
        self as usize
    }

    /// A lower-case name for messages and stats: `requests`, `tokens`, `input tokens`, `output tokens`.
    pub const fn name(self) -> &'static str {
        match self {
            Dimension::Requests => "requests",
            Dimension::Tokens => "tokens",
            Dimension::InputTokens => "input tokens",
            Dimension::OutputTokens => "output tokens",
        }
    }
}

impl std::fmt::Display for Dimension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

pub(super) const DIMENSIONS: usize = Dimension::ALL.len();

/// What one request costs, per dimension.
///
/// ```
/// use reqwest_throttle::limiter::{Cost, Dimension};
///
/// let cost = Cost::requests(1).with(Dimension::Tokens, 1_200);
/// assert_eq!(cost.get(Dimension::Requests), 1);
/// assert_eq!(cost.get(Dimension::Tokens), 1_200);
/// assert_eq!(Cost::default(), Cost::requests(1));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cost {
    units: [u64; DIMENSIONS],
}

impl Cost {
    /// A cost of `n` requests and nothing else.
    pub const fn requests(n: u64) -> Cost {
        Cost {
            units: [n, 0, 0, 0],
        }
    }

    /// A cost of nothing at all.
    pub const fn zero() -> Cost {
        Cost {
            units: [0; DIMENSIONS],
        }
    }

    /// This cost with `units` in `dimension`.
    #[must_use]
    pub const fn with(mut self, dimension: Dimension, units: u64) -> Cost {
        self.units[dimension.index()] = units;
        self
    }

    /// The units in `dimension`.
    pub const fn get(&self, dimension: Dimension) -> u64 {
        self.units[dimension.index()]
    }

    /// The dimensions this cost touches, with their units.
    pub fn iter(&self) -> impl Iterator<Item = (Dimension, u64)> + '_ {
        Dimension::ALL
            .into_iter()
            .map(|d| (d, self.get(d)))
            .filter(|(_, units)| *units > 0)
    }
}

impl Default for Cost {
    /// One request.
    fn default() -> Cost {
        Cost::requests(1)
    }
}

/// The share of an interval the spacing as sent adds as a guard (1 %)...
const SENT_GUARD_DIVISOR: u32 = 100;
/// ...up to this much.
const MAX_SENT_GUARD: Duration = Duration::from_micros(250);

/// `limit` as departures keep it: each interval a little longer. The server reads arrivals on
/// its own clock, through two schedulers and a network, in whole milliseconds (nginx): spaced
/// exactly 20 ms apart as sent at 50/s, a request now and then arrived "19 ms" after the one
/// before and a leaky bucket without burst refused it. A guard of 1 % of the interval (200 µs
/// at 50/s, never more than 250 µs) absorbs that jitter for the price of 1 % of the rate:
/// against real nginx without burst, 2 refusals in 8 runs of 500 requests (9 with a guard of
/// 0.5 %, each a second's pause when the server sends `Retry-After: 1`).
fn guarded(limit: Limit) -> Limit {
    let guard = (limit.interval / SENT_GUARD_DIVISOR).min(MAX_SENT_GUARD);
    Limit {
        interval: limit.interval.saturating_add(guard),
        ..limit
    }
}

/// The spacing as sent at a new `limit`: what was sent is rescaled to the new rate (as in a
/// booking cell), but the next departure never waits more than one new interval. Rescaled
/// alone, eight requests sent in one burst at a configured rate held the next departure for
/// seven seconds once the server's slower pace was learned, with the lane's concurrency slots
/// held all that time.
fn respace(sent: &mut Option<Gcra>, limit: Option<Limit>, now: Nanos) {
    let limit = limit.map(guarded);
    Change::Limit(limit).apply(sent, now);
    let (Some(cell), Some(limit)) = (sent.as_mut(), limit) else {
        return;
    };
    let interval = u64::try_from(limit.interval.as_nanos()).unwrap_or(u64::MAX);
    let latest = now.saturating_add(interval);
    if cell.ready_at(1, now) > latest {
        let mut fresh = Gcra::new(limit.interval, limit.burst);
        // A whole burst spent one interval before `latest`: one unit may leave then.
        fresh.debit(fresh.burst(), now);
        *cell = fresh;
    }
}

/// A rate for one dimension of a budget, as the GCRA sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// How long one unit occupies the dimension (period / rate).
    pub interval: Duration,
    /// How many units may go at once.
    pub burst: u64,
}

/// Why a reservation could not be made within the time allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocked {
    /// The dimension's rate: the slot is `wait` away.
    Rate {
        /// The dimension that is slowest.
        dimension: Dimension,
        /// How long until the slot.
        wait: Duration,
    },
    /// A cooldown set by the server (Retry-After, rate-limit reset) lasts `wait` longer.
    Cooldown {
        /// The dimension cooling down; `None` when the whole lane is.
        dimension: Option<Dimension>,
        /// How long the cooldown still lasts.
        wait: Duration,
    },
    /// The cost is larger than the dimension could ever admit at once.
    NeverFits {
        /// The dimension that is too small.
        dimension: Dimension,
        /// The cost in that dimension.
        cost: u64,
        /// The most the dimension admits at once.
        burst: u64,
    },
}

impl Blocked {
    /// How long the caller would have to wait; `None` for a cost that never fits.
    pub fn wait(&self) -> Option<Duration> {
        match self {
            Blocked::Rate { wait, .. } | Blocked::Cooldown { wait, .. } => Some(*wait),
            Blocked::NeverFits { .. } => None,
        }
    }
}

/// What a dimension keeps beside its GCRA cell.
#[derive(Debug, Default)]
struct Cell {
    /// The same rate, charged at the instants units really leave ([`Budget::depart`]): a slot
    /// whose timer fired late pushes the next departure back, so the spacing holds as sent.
    sent: Option<Gcra>,
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

/// A set of GCRA dimensions reserved together, and a cooldown gate.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use reqwest_throttle::limiter::{Budget, Cost, Dimension, Limit};
///
/// let budget = Budget::new();
/// budget.set_limit(Dimension::Requests, Some(Limit { interval: Duration::from_millis(100), burst: 1 }));
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
    /// What the server charges per unit estimated, per dimension, as `f64` bits (see
    /// [`Budget::corrected`]).
    charge: [AtomicU64; DIMENSIONS],
    /// How far one answer's charge per unit estimated strays from `charge`, on average, per
    /// dimension, as `f64` bits: the margin [`Budget::corrected`] adds.
    spread: [AtomicU64; DIMENSIONS],
}

/// How fast the learned charge follows each settled answer (a moving average over about five).
const CHARGE_WEIGHT: f64 = 0.2;
/// The most the learned charge scales an estimate by.
const MAX_CHARGE: f64 = 4.0;

/// A charge factor per dimension (indexed as [`Dimension::ALL`]).
type Charges = [f64; DIMENSIONS];

impl Default for Budget {
    fn default() -> Self {
        Budget {
            epoch: Epoch::now(),
            state: Mutex::default(),
            engaged: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            repriced: tokio::sync::Notify::new(),
            clamped: AtomicU64::new(0),
            charge: std::array::from_fn(|_| AtomicU64::new(1.0_f64.to_bits())),
            spread: std::array::from_fn(|_| AtomicU64::new(0.0_f64.to_bits())),
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

    /// Sets (or with `None` removes) the rate of `dimension`, keeping what is already booked.
    pub fn set_limit(&self, dimension: Dimension, limit: Option<Limit>) {
        let now = self.epoch.nanos(Instant::now());
        let mut state = self.lock();
        if limit.is_some() {
            self.engaged.store(true, Ordering::Release);
        }
        state.change(dimension, Change::Limit(limit), now);
        respace(&mut state.cells[dimension.index()].sent, limit, now);
    }

    /// Starts `dimension` anew at `limit` and makes every waiting reservation book again.
    ///
    /// [`set_limit`](Self::set_limit) keeps what is booked (waiters leave at the slots they
    /// were given). When the lane learns it was too fast (the server refused), those slots are
    /// wrong: a reservation booked before this call wakes with [`Waited::Repriced`] (at its old
    /// slot, or at once if that has passed), so its holder books again at the new rate, in the
    /// order they wake. The new cell starts empty (its burst just spent), so the first of them
    /// leaves one interval from now.
    pub fn reprice(&self, dimension: Dimension, limit: Option<Limit>) {
        let now = self.epoch.nanos(Instant::now());
        let mut state = self.lock();
        if limit.is_some() {
            self.engaged.store(true, Ordering::Release);
        }
        // The new cell starts empty: the refused pace just spent its burst.
        state.change(dimension, Change::Restart(limit), now);
        respace(&mut state.cells[dimension.index()].sent, limit, now);
        drop(state);
        self.next_generation();
    }

    /// Records that `cost` leaves at `now`, if the spacing *as sent* allows it; otherwise the
    /// instant it will (the caller waits until then and asks again: a departure is recorded
    /// when it really happens, so that lateness pushes the next one back).
    ///
    /// Bookings schedule slots; timers fire a little late, and a request that left late
    /// followed by one on time would reach the server closer together than the rate allows
    /// (a leaky bucket without burst, nginx's `limit_req`, refuses exactly that). The requests
    /// dimension therefore also keeps its rate over the instants requests really left: a
    /// departure waits until it conforms there too (at most one interval), so lateness pushes
    /// later departures back instead of bunching them. Token dimensions are buckets whose
    /// bookings are settled and refunded after the answer; spacing their units as sent would
    /// charge them twice (a 6 000-token request waited 12 minutes at 10 000 tokens an hour
    /// after its first request's usage had been given back).
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
        let Some(sent) = state.cells[Dimension::Requests.index()].sent.as_mut() else {
            return Ok(());
        };
        let ready = sent.ready_at(units, at);
        if ready > at {
            return Err(self.epoch.instant(ready));
        }
        sent.reserve_at(units, at, at);
        Ok(())
    }

    /// How many times the budget was [repriced](Self::reprice): a booking made under another
    /// generation must be made again.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The rate of `dimension`, if it has one.
    pub fn limit(&self, dimension: Dimension) -> Option<Limit> {
        self.lock().gcras[dimension.index()]
            .as_ref()
            .map(|gcra| Limit {
                interval: gcra.interval(),
                burst: gcra.burst(),
            })
    }

    /// The limit of every dimension and whether it is strict, read at once (indexed as
    /// [`Dimension::ALL`]): what a lane whose budget is shared through a store books under
    /// there, while this budget keeps learning them; what a lane's shadow budget follows.
    pub(crate) fn shapes(&self) -> [Option<(Limit, bool)>; DIMENSIONS] {
        let state = self.lock();
        std::array::from_fn(|i| {
            state.gcras[i].as_ref().map(|gcra| {
                let limit = Limit {
                    interval: gcra.interval(),
                    burst: gcra.burst(),
                };
                (limit, state.cells[i].strict)
            })
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
    /// back, never beyond the burst. Giving back at least `min_credit` units makes the waiting
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
    /// budget.set_limit(Dimension::Tokens, Some(Limit { interval, burst: 900 }));
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
            // below zero, and its next unit comes as late as the window allows. The server has
            // seen none of the waiting reservations, so its word applies ahead of them: they
            // book again behind it, in their order.
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
            ledger.change_ahead(dimension, change, gcras, now);
            if charged < 0 {
                if let Some(sent) = state.cells[dimension.index()].sent.as_mut() {
                    sent.credit(units, now);
                }
            }
            return charged;
        }
        // Recorded as the server's number, not as a difference: replayed without a dropped
        // reservation, the cell comes to the same `remaining` (the server never counted it).
        // Nor may more leave at once than remains: the spacing as sent follows (a burst that
        // opened empty, waiters booked ahead, let the first of them leave as far ahead of the
        // late departures as they had fallen behind its slot: 4 ms early, refused).
        if let Some(sent) = state.cells[dimension.index()].sent.as_mut() {
            let beyond = sent.available(now).saturating_sub(remaining);
            if beyond > 0 {
                sent.debit(beyond, now);
            }
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
        if let Some(sent) = state.cells[dimension.index()].sent.as_mut() {
            sent.credit(missing, now);
        }
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

    /// Replaces what `commitment` booked in this budget by `actual`: over-estimates are given
    /// back (when they still can be, see [`Gcra::refund`]), under-estimates are charged so later
    /// reservations wait for them.
    ///
    /// A reported cost is not trusted without limit: one answer is charged at most a full burst
    /// of each dimension (with a [`Rate`](crate::Rate)'s default burst, one period's allowance),
    /// or its estimate when that was larger. No server could have served more than that under
    /// this limit at once (a strict dimension even refuses such costs up front), so a larger
    /// report is an error (`prompt_tokens: 18446744073709551615`), not usage, and the wait it
    /// adds for later reservations is at most one burst's worth of time (`burst × interval`).
    /// Each clamped report is a `tracing` warning and counted ([`clamped_reports`](Self::clamped_reports)).
    pub fn settle(&self, commitment: Commitment, actual: &Cost) {
        self.learn_charge(&commitment.cost, actual, &commitment.applied);
        let mut state = self.lock();
        self.reconcile(&mut state, &commitment.cost, &commitment.grants, actual);
    }

    /// How many reported costs were charged only up to what one answer can use (see
    /// [`settle`](Self::settle)).
    pub fn clamped_reports(&self) -> u64 {
        self.clamped.load(Relaxed)
    }

    /// `estimate` scaled by what the server has been charging per unit estimated, in every
    /// dimension but requests (a server that counts tokens by its own rule charges more than the
    /// client's estimate, and its `remaining` says so only after the requests in flight have
    /// spent it), plus how far single answers have strayed from that on average (the server's
    /// count of one request varies around the mean; booked at the mean alone, the last request
    /// of a window was charged more than was left, and refused, window after window). Never
    /// below the estimate: what is charged less is given back at settlement.
    ///
    /// ```
    /// use reqwest_throttle::limiter::{Budget, Cost, Dimension};
    ///
    /// let budget = Budget::new();
    /// let estimate = Cost::requests(1).with(Dimension::Tokens, 100);
    /// assert_eq!(budget.corrected(estimate), estimate);
    /// for _ in 0..20 {
    ///     let booked = budget.reserve(&budget.corrected(estimate), None).unwrap();
    ///     // The server charges 125 tokens for every 100 estimated.
    ///     budget.settle(booked.commit(), &Cost::requests(1).with(Dimension::Tokens, 125));
    /// }
    /// // 125, and a little more while the charge was still being learned.
    /// let corrected = budget.corrected(estimate).get(Dimension::Tokens);
    /// assert!((125..=128).contains(&corrected), "{corrected}");
    /// ```
    pub fn corrected(&self, estimate: Cost) -> Cost {
        let mut corrected = estimate;
        for (dimension, units) in estimate.iter() {
            if dimension == Dimension::Requests {
                continue;
            }
            let charge = f64::from_bits(self.charge[dimension.index()].load(Ordering::Relaxed));
            let spread = f64::from_bits(self.spread[dimension.index()].load(Ordering::Relaxed));
            let charge = (charge + spread).min(MAX_CHARGE);
            if charge > 1.0 {
                let scaled = (units as f64 * charge).ceil();
                corrected = corrected.with(dimension, scaled.min(u64::MAX as f64) as u64);
            }
        }
        corrected
    }

    /// Follows what one answer was charged against what was booked for it.
    /// The factor [`corrected`](Self::corrected) applies now, per dimension.
    fn applied_charges(&self) -> Charges {
        std::array::from_fn(|i| {
            let charge = f64::from_bits(self.charge[i].load(Ordering::Relaxed));
            let spread = f64::from_bits(self.spread[i].load(Ordering::Relaxed));
            (charge + spread).clamp(1.0, MAX_CHARGE)
        })
    }

    fn learn_charge(&self, booked: &Cost, actual: &Cost, applied: &Charges) {
        for (dimension, units) in booked.iter() {
            let used = actual.get(dimension);
            if dimension == Dimension::Requests || used == 0 {
                continue;
            }
            let cell = &self.charge[dimension.index()];
            let current = f64::from_bits(cell.load(Ordering::Relaxed));
            let spread_cell = &self.spread[dimension.index()];
            let spread = f64::from_bits(spread_cell.load(Ordering::Relaxed));
            // Booked at the estimate times the factor `corrected` applied then (not now: with
            // a queue, the factor moved while it waited, and reading it at today's factor fed
            // the factor back into itself): per unit *estimated*, the server charged this much.
            let applied = applied[dimension.index()];
            let observed = used as f64 / units as f64 * applied;
            let next = (current + CHARGE_WEIGHT * (observed - current))
                .clamp(1.0 / MAX_CHARGE, MAX_CHARGE);
            cell.store(next.to_bits(), Ordering::Relaxed);
            let deviation = (observed - current).abs();
            let spread = (spread + CHARGE_WEIGHT * (deviation - spread)).clamp(0.0, MAX_CHARGE);
            spread_cell.store(spread.to_bits(), Ordering::Relaxed);
        }
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

    /// Books `cost` in every dimension at once.
    ///
    /// With `max_wait`, a reservation that could not leave within it is not made at all and the
    /// reason comes back as [`Blocked`], without sleeping: there is no point waiting for a slot
    /// that is already known to be too late.
    pub fn reserve(
        self: &Arc<Self>,
        cost: &Cost,
        max_wait: Option<Duration>,
    ) -> Result<Reservation, Blocked> {
        self.reserve_at(cost, max_wait, Instant::now())
    }

    /// [`reserve`](Self::reserve) with the clock already read: `now` is the caller's current
    /// instant (one clock read per request is enough).
    pub fn reserve_at(
        self: &Arc<Self>,
        cost: &Cost,
        max_wait: Option<Duration>,
        now: Instant,
    ) -> Result<Reservation, Blocked> {
        let now = self.epoch.nanos(now);
        let mut state = self.lock();
        let (at, floor) = self.schedule(&state, cost, max_wait, now)?;
        let place = state.reserve(cost, floor, at, now);
        Ok(self.reservation(cost, place))
    }

    /// Books `cost` like [`reserve_at`](Self::reserve_at), and when the units may leave at once
    /// returns them already used ([`Booking::Ready`]): one lock for the common case of a lane
    /// that is not saturated.
    pub fn acquire(
        self: &Arc<Self>,
        cost: &Cost,
        max_wait: Option<Duration>,
        now: Instant,
    ) -> Result<Booking, Blocked> {
        if !self.engaged.load(Ordering::Acquire) {
            return Ok(Booking::Ready(Commitment {
                cost: *cost,
                grants: [None; DIMENSIONS],
                applied: self.applied_charges(),
            }));
        }
        let now = self.epoch.nanos(now);
        let mut state = self.lock();
        let (at, floor) = self.schedule(&state, cost, max_wait, now)?;
        if at > now {
            let place = state.reserve(cost, floor, at, now);
            return Ok(Booking::Wait(self.reservation(cost, place)));
        }
        let grants = ledger::book_at(&mut state.gcras, cost, at, now);
        state.ledger.used(cost, at, now);
        Ok(Booking::Ready(Commitment {
            cost: *cost,
            grants,
            applied: self.applied_charges(),
        }))
    }

    fn reservation(self: &Arc<Self>, cost: &Cost, place: Place) -> Reservation {
        Reservation {
            budget: Arc::clone(self),
            cost: *cost,
            applied: self.applied_charges(),
            place,
            settled: false,
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
    fn release(&self, place: &Place, used: bool) -> Grants {
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

    /// Brings the booking of `reserved` (held as `grants`) to `actual`: refunds what was not
    /// used (when it still can be, see [`Gcra::refund`]), debits what was used beyond it, up to
    /// what one answer can use (see [`settle`](Self::settle)).
    fn reconcile(&self, state: &mut State, reserved: &Cost, grants: &Grants, actual: &Cost) {
        if actual == reserved {
            return;
        }
        let now = self.epoch.nanos(Instant::now());
        for dimension in Dimension::ALL {
            let booked = reserved.get(dimension);
            let used = actual.get(dimension);
            let Some(gcra) = state.gcras[dimension.index()].as_mut() else {
                continue;
            };
            match grants[dimension.index()] {
                Some(grant) if used < booked => {
                    if let Some(returned) = gcra.refund_nanos(&grant, booked - used) {
                        state
                            .ledger
                            .change(dimension, Change::GiveBack(returned), now);
                    }
                }
                _ if used > booked => {
                    let most = booked.max(gcra.burst());
                    if used > most {
                        self.clamped.fetch_add(1, Relaxed);
                        tracing::warn!(target: "reqwest_throttle", %dimension, reported = used, charged = most, "reported cost above what the limit admits at once: charged only up to it");
                    }
                    let extra = used.min(most) - booked;
                    if extra > 0 {
                        // Charged ahead of the reservations still waiting: they were booked
                        // behind this one's estimate, and now stand behind what it really cost.
                        let State { gcras, ledger, .. } = state;
                        ledger.change_ahead(dimension, Change::Debit(extra), gcras, now);
                    }
                }
                _ => {}
            }
        }
    }
}

/// Units booked in a [`Budget`], waiting to leave or in use.
///
/// Dropped without [`settle`](Reservation::settle), it gives its units back, wherever it stands
/// in the queue: the reservations booked after it move up (see [`Budget`]), so a request that
/// was cancelled while waiting leaves nothing behind.
#[derive(Debug)]
#[must_use = "a reservation gives its units back when dropped"]
pub struct Reservation {
    budget: Arc<Budget>,
    cost: Cost,
    /// The charge factors [`Budget::corrected`] applied when it was booked.
    applied: Charges,
    place: Place,
    settled: bool,
    generation: u64,
}

impl Reservation {
    /// When the booked units may leave (a later cooldown can still hold them back; see
    /// [`wait`](Self::wait)). It only ever moves earlier: when a reservation booked before this
    /// one is dropped.
    pub fn ready_at(&self) -> Instant {
        self.budget.epoch.instant(self.place.slot.ready_at())
    }

    /// The cost that was booked.
    pub fn cost(&self) -> &Cost {
        &self.cost
    }

    /// Sleeps until the units may leave and no cooldown holds them back.
    ///
    /// A cooldown set while this reservation waits (a 429 seen by another request) is honoured:
    /// the gate is checked again each time the sleep ends, and the result says so
    /// ([`Waited::PastCooldown`]): the slot was booked before the server spoke, so a caller may
    /// prefer to book again under what the lane learned meanwhile. With a `deadline`, a cooldown
    /// that would end after it fails at once with [`Blocked::Cooldown`] instead of sleeping in vain.
    /// A slot that moves earlier (a reservation ahead was dropped) wakes the wait at once.
    pub async fn wait(&self, deadline: Option<Instant>) -> Result<Waited, Blocked> {
        // However the wait ends (even dropped), the next waiter learns whether its slot moved.
        let _relay = Relay(self);
        let mut waited = Waited::OnTime;
        loop {
            let now = Instant::now();
            // Registered before the generation is read, so a reprice in between still wakes us.
            let repriced = self.budget.repriced.notified();
            tokio::pin!(repriced);
            repriced.as_mut().enable();
            if self.budget.generation.load(Ordering::Acquire) != self.generation {
                return Ok(Waited::Repriced);
            }
            // Made before the slot is read: a move in between leaves a permit that wakes us.
            let moved = self.place.slot.arming();
            let ready_at = self.ready_at();
            let cooldown = self.budget.cooldown_until(&self.cost);
            if cooldown.is_some_and(|cooldown| cooldown > ready_at) {
                waited = Waited::PastCooldown;
            }
            let until = cooldown.map_or(ready_at, |c| c.max(ready_at));
            if until <= now {
                return Ok(waited);
            }
            self.place.slot.armed(self.budget.epoch.nanos(ready_at));
            if let (Some(deadline), Some(cooldown)) = (deadline, cooldown) {
                if cooldown > deadline {
                    let state = self.budget.lock();
                    let (_, dimension) = state.cooldown_for(&self.cost);
                    return Err(Blocked::Cooldown {
                        dimension,
                        wait: cooldown - now,
                    });
                }
            }
            tokio::select! {
                () = tokio::time::sleep_until(until) => {}
                () = repriced => {}
                () = moved => {}
            }
        }
    }

    /// Ends the reservation as *used*, keeping the right to reconcile it later with what it
    /// really cost (for example the token usage an LLM API reports in its response).
    pub fn commit(mut self) -> Commitment {
        self.settled = true;
        let grants = self.budget.release(&self.place, true);
        Commitment {
            cost: self.cost,
            grants,
            applied: self.applied,
        }
    }

    /// Ends the reservation: the units were used.
    ///
    /// With `actual`, the booking is reconciled with what was really used: units reserved but not
    /// used are given back (when they still can be, see [`Gcra::refund`]) and units used beyond
    /// the reservation are charged (up to what one answer can use, see [`Budget::settle`]), so
    /// later reservations wait for them.
    pub fn settle(self, actual: Option<&Cost>) {
        let budget = Arc::clone(&self.budget);
        let commitment = self.commit();
        if let Some(actual) = actual {
            budget.settle(commitment, actual);
        }
    }
}

/// Ends a [`Reservation::wait`]: passes on the news of moved slots (see the `ledger` module).
struct Relay<'r>(&'r Reservation);

impl Drop for Relay<'_> {
    fn drop(&mut self) {
        let reservation = self.0;
        reservation.place.slot.disarmed();
        reservation.budget.lock().ledger.relay(&reservation.place);
    }
}

/// How a [`Reservation::wait`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waited {
    /// At the reserved slot.
    OnTime,
    /// Later than the reserved slot, held back by a cooldown set after the booking.
    PastCooldown,
    /// Not sent: the budget was [repriced](Budget::reprice) after the booking; book again.
    Repriced,
}

/// The outcome of [`Budget::acquire`].
#[derive(Debug)]
pub enum Booking {
    /// The units may leave now; they are already counted as used.
    Ready(Commitment),
    /// The units leave at [`Reservation::ready_at`]; wait for them.
    Wait(Reservation),
}

/// A used reservation that can still be reconciled with what it really cost, through
/// [`Budget::settle`] on the budget it came from.
///
/// Dropped without that, the estimate stands. It holds no reference to its budget, so the
/// common case (nothing to reconcile) costs nothing.
#[derive(Debug)]
pub struct Commitment {
    cost: Cost,
    grants: Grants,
    /// The charge factors [`Budget::corrected`] applied when it was booked.
    applied: Charges,
}

impl Commitment {
    /// The cost that was booked.
    pub fn cost(&self) -> &Cost {
        &self.cost
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled {
            self.budget.release(&self.place, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn per_second(budget: &Budget, dimension: Dimension, rate: u32, burst: u64) {
        budget.set_limit(
            dimension,
            Some(Limit {
                interval: Duration::from_secs(1) / rate,
                burst,
            }),
        );
    }

    /// Waiters booked at a slow pace, then a pace ten times faster with a reprice: each wakes
    /// `Repriced` and books again at the new pace, in order, all within a second.
    #[tokio::test(start_paused = true)]
    async fn waiters_repriced_faster_book_again_at_the_new_pace() {
        let budget = Arc::new(Budget::new());
        per_second(&budget, Dimension::Requests, 1, 1);
        let first = budget.reserve(&Cost::requests(1), None).unwrap();
        first.settle(None);
        let start = Instant::now();
        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let budget = Arc::clone(&budget);
                let reservation = budget.reserve(&Cost::requests(1), None).unwrap();
                tokio::spawn(async move {
                    let mut reservation = reservation;
                    loop {
                        match reservation.wait(None).await.unwrap() {
                            Waited::OnTime => break,
                            _ => {
                                drop(reservation);
                                reservation = budget.reserve(&Cost::requests(1), None).unwrap();
                            }
                        }
                    }
                    reservation.settle(None);
                    Instant::now()
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        budget.reprice(
            Dimension::Requests,
            Some(Limit {
                interval: Duration::from_millis(100),
                burst: 1,
            }),
        );
        let mut left = Vec::new();
        for waiter in waiters {
            left.push(waiter.await.unwrap() - start);
        }
        let last = *left.iter().max().unwrap();
        assert!(last <= Duration::from_millis(1_000), "{left:?}");
    }

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
        per_second(&budget, Dimension::Requests, 10, 10);
        per_second(&budget, Dimension::Tokens, 100, 100);
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

    /// Eight requests sent in one burst at a configured rate, then a pace ten times slower:
    /// the next departure waits at most one new interval, not eight.
    #[tokio::test(start_paused = true)]
    async fn a_new_rate_spaces_the_next_departure_by_one_interval() {
        let budget = Budget::new();
        per_second(&budget, Dimension::Requests, 10, 10);
        let now = Instant::now();
        for _ in 0..8 {
            assert_eq!(budget.depart(&Cost::requests(1), now), Ok(()));
        }
        per_second(&budget, Dimension::Requests, 1, 1);
        // One interval, and its guard as sent (1 %, at most 250 µs).
        assert_eq!(
            budget.depart(&Cost::requests(1), now),
            Err(now + Duration::from_secs(1) + Duration::from_micros(250))
        );
        // Faster again: no longer than the new interval either.
        per_second(&budget, Dimension::Requests, 10, 1);
        assert_eq!(
            budget.depart(&Cost::requests(1), now),
            Err(now + Duration::from_millis(100) + Duration::from_micros(250))
        );
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
        per_second(&budget, Dimension::Requests, 1, 1);
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

    #[tokio::test(start_paused = true)]
    async fn dropped_reservation_refunds() {
        let budget = Budget::new();
        per_second(&budget, Dimension::Requests, 1, 1);
        let first = budget.reserve(&Cost::requests(1), None).unwrap();
        let queued = budget.reserve(&Cost::requests(1), None).unwrap();
        drop(queued);
        let again = budget.reserve(&Cost::requests(1), None).unwrap();
        assert_eq!(again.ready_at() - Instant::now(), Duration::from_secs(1));
        first.settle(None);
        again.settle(None);
        assert_eq!(budget.outstanding(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn settle_reconciles_over_and_under_estimates() {
        let budget = Budget::new();
        per_second(&budget, Dimension::Tokens, 100, 1_000);
        let estimate = Cost::requests(1).with(Dimension::Tokens, 600);
        let r = budget.reserve(&estimate, None).unwrap();
        r.settle(Some(&Cost::requests(1).with(Dimension::Tokens, 200)));
        assert_eq!(budget.available(Dimension::Tokens), Some(800));
        let r = budget.reserve(&estimate, None).unwrap();
        r.settle(Some(&Cost::requests(1).with(Dimension::Tokens, 1_000)));
        // 200 + 1 000 used out of 1 000: 2 s of debt at 100 tokens/s.
        assert_eq!(budget.available(Dimension::Tokens), Some(0));
        let next = budget
            .reserve(&Cost::requests(1).with(Dimension::Tokens, 1), None)
            .unwrap();
        assert_eq!(
            next.ready_at() - Instant::now(),
            Duration::from_millis(2_010)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_reported_cost_is_charged_at_most_one_burst() {
        for reported in [u64::MAX, 4_000_000] {
            // 40 000 tokens a minute, the whole minute as burst.
            let budget = Budget::new();
            budget.set_limit(
                Dimension::Tokens,
                Some(Limit {
                    interval: Duration::from_millis(1_500),
                    burst: 40_000,
                }),
            );
            let estimate = Cost::requests(1).with(Dimension::Tokens, 1_000);
            let r = budget.reserve(&estimate, None).unwrap();
            r.settle(Some(&Cost::requests(1).with(Dimension::Tokens, reported)));
            assert_eq!(budget.clamped_reports(), 1);
            // The whole minute is spent, no more: 1 000 more tokens wait 1 000 intervals.
            let next = budget.reserve(&estimate, None).unwrap();
            assert_eq!(next.ready_at() - Instant::now(), Duration::from_secs(1_500));
            // Within the limit nothing is clamped: a report below one burst is charged whole.
            let budget = Budget::new();
            per_second(&budget, Dimension::Tokens, 100, 1_000);
            let r = budget
                .reserve(&Cost::requests(1).with(Dimension::Tokens, 10), None)
                .unwrap();
            r.settle(Some(&Cost::requests(1).with(Dimension::Tokens, 1_000)));
            assert_eq!(budget.clamped_reports(), 0);
            assert_eq!(budget.available(Dimension::Tokens), Some(0));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_dropped_mid_queue_lets_the_ones_behind_move_up() {
        let budget = Budget::new();
        per_second(&budget, Dimension::Requests, 10, 1);
        let start = Instant::now();
        let queue: Vec<_> = (0..5)
            .map(|_| budget.reserve(&Cost::requests(1), None).unwrap())
            .collect();
        let slots = |queue: &[Reservation]| -> Vec<u128> {
            queue
                .iter()
                .map(|r| (r.ready_at() - start).as_millis())
                .collect()
        };
        assert_eq!(slots(&queue), vec![0, 100, 200, 300, 400]);
        let mut queue = queue;
        drop(queue.remove(2));
        assert_eq!(slots(&queue), vec![0, 100, 200, 300]);
        // A newcomer goes after every live waiter, into the slot the dropped one freed.
        let newcomer = budget.reserve(&Cost::requests(1), None).unwrap();
        assert_eq!((newcomer.ready_at() - start).as_millis(), 400);
        // The front is dropped at its slot's instant: the others keep the spacing from now.
        tokio::time::advance(Duration::from_millis(50)).await;
        drop(queue.remove(0));
        assert_eq!(slots(&queue), vec![50, 150, 250]);
        assert_eq!((newcomer.ready_at() - start).as_millis(), 350);
        // A waiter that is asleep is woken at its new slot.
        let last = queue.pop().unwrap();
        let waiting = tokio::spawn(async move {
            last.wait(None).await.unwrap();
            Instant::now()
        });
        tokio::task::yield_now().await;
        drop(queue.remove(0));
        assert_eq!(waiting.await.unwrap() - start, Duration::from_millis(150));
        drop((queue, newcomer));
        assert_eq!(budget.outstanding(), 0);
    }

    /// Found by `llm_budget`: a server's count of what remains, replayed as the difference it
    /// made, gave back the dropped waiter's tokens a second time.
    #[tokio::test(start_paused = true)]
    async fn a_sync_replayed_after_a_drop_keeps_the_servers_count() {
        let budget = Budget::new();
        per_second(&budget, Dimension::Requests, 1, 1);
        per_second(&budget, Dimension::Tokens, 100, 100);
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
        per_second(&budget, Dimension::Requests, 1, 10);
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

    /// The charge factor is learned against the factor each booking was priced at: requests
    /// that waited while the factor grew are not read as charged more again (with a queue,
    /// reading them at the newer factor fed the factor into itself).
    #[tokio::test(start_paused = true)]
    async fn the_charge_factor_is_learned_at_the_price_booked() {
        let budget = Budget::new();
        per_second(&budget, Dimension::Tokens, 1_000, 1_000);
        // The server charges 1.5 × the estimate on average (1.2 and 1.8 in turn).
        let estimate = Cost::requests(1).with(Dimension::Tokens, 100);
        let actual = |i: usize| Cost::requests(1).with(Dimension::Tokens, [120, 180][i % 2]);
        // A queue of 8: each request is settled eight bookings after it was priced.
        let mut queue = std::collections::VecDeque::new();
        let mut factors = Vec::new();
        for i in 0..200 {
            queue.push_back(budget.reserve(&budget.corrected(estimate), None).unwrap());
            if queue.len() > 8 {
                queue.pop_front().unwrap().settle(Some(&actual(i)));
            }
            factors.push(budget.corrected(estimate).get(Dimension::Tokens) as f64 / 100.0);
        }
        // The average charge plus its learned spread (0.3), steady. Read at the factor of the
        // moment instead, it swung between 1.2 and 4.0 (the cap).
        let settled = &factors[100..];
        assert!(
            settled.iter().all(|f| (1.5..2.0).contains(f)),
            "{settled:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn strict_dimension_refuses_what_never_fits() {
        let budget = Budget::new();
        per_second(&budget, Dimension::Tokens, 100, 1_000);
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
    async fn cooldown_holds_back_waiting_and_new_reservations() {
        let budget = Budget::new();
        let waiting = budget.reserve(&Cost::requests(1), None).unwrap();
        let start = Instant::now();
        budget.cool_down(None, start + Duration::from_secs(5));
        // An earlier cooldown never shortens the running one.
        budget.cool_down(None, start + Duration::from_secs(1));
        waiting.wait(None).await.unwrap();
        assert_eq!(Instant::now() - start, Duration::from_secs(5));

        budget.cool_down(None, Instant::now() + Duration::from_secs(3));
        let blocked = budget
            .reserve(&Cost::requests(1), Some(Duration::from_secs(1)))
            .unwrap_err();
        assert_eq!(
            blocked,
            Blocked::Cooldown {
                dimension: None,
                wait: Duration::from_secs(3)
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cooldown_beyond_the_deadline_fails_without_sleeping() {
        let budget = Budget::new();
        let r = budget.reserve(&Cost::requests(1), None).unwrap();
        let start = Instant::now();
        budget.cool_down(Some(Dimension::Requests), start + Duration::from_secs(10));
        let err = r
            .wait(Some(start + Duration::from_secs(2)))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            Blocked::Cooldown {
                dimension: Some(Dimension::Requests),
                wait: Duration::from_secs(10)
            }
        );
        assert_eq!(Instant::now(), start);
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
        per_second(&budget, Dimension::Requests, 1, 1);
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
