//! Rolling windows: at most `quota` units in any span of `period`, beside a dimension's rate.
//!
//! # Why not a second GCRA cell
//!
//! A provider that states requests per minute *and* per day means both: never more than the
//! day's count in a day. A GCRA cell of `N` per period with a burst of `b` admits up to
//! `b + N` units in a span of one period (a full bucket, then its refill); with the usual
//! burst of a whole period's count that is twice the day's quota, and with a burst of one it
//! spreads the day evenly and never lets a burst through. A rolling window counts what was
//! really booked in the span instead.
//!
//! # The algorithm
//!
//! Time is cut into buckets of width `q = ⌈period / 256⌉`, and each holds the units booked in
//! it. A booking of `c` units at `t` is admitted when the units in the buckets from `t`'s back
//! to the one `period` before it, plus `c`, stay within the quota. Any span of length `period`
//! that contains `t` lies within those buckets (`period ≤ 256·q`), and no unit is booked after
//! `t` (bookings are appended: none goes before the latest instant already booked, the
//! window's *frontier*), so no span containing `t` ever holds more than the quota, and spans
//! that do not contain `t` did not change. The first admissible instant is where enough of the
//! oldest buckets have left the span. The price of buckets is at most one bucket's width: a
//! steady stream gets `quota` per `period + q`, 99.6 % of the quota.
//!
//! Appending keeps arrival order in the window (a small cost never jumps ahead of a large one
//! waiting for room), and admission only gets easier as time passes, so the instant a whole
//! [`Budget`](super::Budget) books at is simply the latest of its cells' and windows' own.
//!
//! Buckets are sums, so units come out exactly: a dropped reservation, a refund or a charge
//! after the fact adds to or subtracts from the bucket it was booked in, whenever it happens.
//! The ledger replays the waiters behind a change (see the `ledger` module) from the frontier
//! they were booked after. A window keeps its buckets for one period behind now and as far
//! ahead as bookings wait: at most 257 buckets, plus one per bucket of queue.

use std::collections::BTreeMap;

use super::cost::{Cost, Dimension, RollingWindow, DIMENSIONS};
use super::gcra::Nanos;
use crate::time::duration_to_nanos;

/// Buckets per period: the window's resolution.
const BUCKETS: u64 = 256;

/// One rolling window's buckets.
#[derive(Clone, Debug)]
pub(super) struct Window {
    limit: RollingWindow,
    /// Nanoseconds per bucket; never zero.
    width: Nanos,
    /// Buckets behind a booking's own that a span of `period` can reach.
    span: u64,
    /// The units booked in each bucket that holds any, by the bucket's index since the budget's
    /// epoch (sparse: a booking far ahead costs one entry, not the buckets up to it).
    buckets: BTreeMap<u64, u64>,
    /// The latest instant booked: nothing is booked before it.
    frontier: Nanos,
}

impl Window {
    fn new(limit: RollingWindow) -> Window {
        let period = duration_to_nanos(limit.period).max(1);
        let width = period.div_ceil(BUCKETS).max(1);
        Window {
            limit: RollingWindow {
                quota: limit.quota.max(1),
                period: limit.period,
            },
            width,
            span: period.div_ceil(width),
            buckets: BTreeMap::new(),
            frontier: 0,
        }
    }

    fn bucket(&self, at: Nanos) -> u64 {
        at / self.width
    }

    /// The buckets from index `from` on, with their indexes.
    fn buckets_from(&self, from: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.buckets
            .range(from..)
            .map(|(&index, &units)| (index, units))
    }

    /// The units a booking at `at` (no earlier than the frontier) shares its spans with.
    fn held(&self, at: Nanos) -> u64 {
        let lowest = self.bucket(at).saturating_sub(self.span);
        self.buckets_from(lowest)
            .map(|(_, units)| units)
            .fold(0, u64::saturating_add)
    }

    /// The first instant from `from` (and the frontier) at which `units` fit. A cost above the
    /// quota goes when the window is empty, as an oversized cost does in a GCRA cell.
    fn ready_at(&self, units: u64, from: Nanos) -> Nanos {
        let from = from.max(self.frontier);
        let room = self.limit.quota - units.min(self.limit.quota);
        let mut held = self.held(from);
        if held <= room {
            return from;
        }
        let lowest = self.bucket(from).saturating_sub(self.span);
        for (index, units) in self.buckets_from(lowest) {
            held = held.saturating_sub(units);
            if held <= room {
                // Bucket `index` leaves the span of every booking from bucket `index + span + 1`.
                let leaves = index.saturating_add(self.span).saturating_add(1);
                return leaves.saturating_mul(self.width).max(from);
            }
        }
        from
    }

    /// Adds `units` to the bucket of `at` (takes them off with a negative `units`); what lies
    /// beyond every span a booking from `now` on can reach is not kept.
    fn add(&mut self, units: i128, at: Nanos, now: Nanos) {
        let index = self.bucket(at);
        if units == 0 || index.saturating_add(self.span) < self.bucket(now) {
            return;
        }
        let magnitude = u64::try_from(units.unsigned_abs()).unwrap_or(u64::MAX);
        let bucket = self.buckets.entry(index).or_insert(0);
        *bucket = if units < 0 {
            bucket.saturating_sub(magnitude)
        } else {
            bucket.saturating_add(magnitude)
        };
        if *bucket == 0 {
            self.buckets.remove(&index);
        }
    }

    /// Forgets the buckets no booking from `now` on can reach.
    fn prune(&mut self, now: Nanos) {
        let lowest = self.bucket(now).saturating_sub(self.span);
        while self
            .buckets
            .first_key_value()
            .is_some_and(|(&index, _)| index < lowest)
        {
            self.buckets.pop_first();
        }
    }

    /// Units that could be booked at `now` without waiting.
    fn available(&self, now: Nanos) -> u64 {
        if self.frontier > now {
            return 0;
        }
        self.limit.quota.saturating_sub(self.held(now))
    }

    fn is_at_rest(&self, now: Nanos) -> bool {
        self.frontier <= now && self.held(now) == 0
    }
}

/// Why a cost waits for a window, or never fits in one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Spent {
    pub(super) dimension: Dimension,
    pub(super) window: RollingWindow,
}

/// The rolling windows of every dimension of a budget.
#[derive(Clone, Debug)]
pub(super) struct Windows {
    by_dimension: [Vec<Window>; DIMENSIONS],
    /// No dimension has a window (the common case): every booking skips this type at once.
    empty: bool,
}

impl Default for Windows {
    fn default() -> Windows {
        Windows {
            by_dimension: Default::default(),
            empty: true,
        }
    }
}

impl Windows {
    /// Whether no dimension has a window: then nothing here costs anything.
    pub(super) fn is_empty(&self) -> bool {
        self.empty
    }

    /// Replaces the windows of `dimension`; a window of the same period and quota as one it
    /// replaces keeps what that one counted.
    pub(super) fn set(&mut self, dimension: Dimension, limits: &[RollingWindow]) {
        let old = std::mem::take(&mut self.by_dimension[dimension.index()]);
        self.by_dimension[dimension.index()] = limits
            .iter()
            .map(|limit| {
                old.iter()
                    .find(|window| window.limit == *limit)
                    .cloned()
                    .unwrap_or_else(|| Window::new(*limit))
            })
            .collect();
        self.empty = self.by_dimension.iter().all(Vec::is_empty);
    }

    /// The windows of `dimension`.
    pub(super) fn limits(&self, dimension: Dimension) -> Vec<RollingWindow> {
        self.by_dimension[dimension.index()]
            .iter()
            .map(|window| window.limit)
            .collect()
    }

    /// The windows `cost` touches, with its units in their dimension.
    fn touched<'a>(&'a self, cost: &'a Cost) -> impl Iterator<Item = (Dimension, u64, &'a Window)> {
        cost.iter().flat_map(move |(dimension, units)| {
            self.by_dimension[dimension.index()]
                .iter()
                .map(move |window| (dimension, units, window))
        })
    }

    fn touched_mut<'a>(
        &'a mut self,
        cost: &'a Cost,
    ) -> impl Iterator<Item = (u64, &'a mut Window)> + 'a {
        self.by_dimension
            .iter_mut()
            .zip(Dimension::ALL)
            .flat_map(move |(windows, dimension)| {
                let units = cost.get(dimension);
                windows
                    .iter_mut()
                    .filter(move |_| units > 0)
                    .map(move |window| (units, window))
            })
    }

    /// The first window of a dimension that `strict` says refuses oversized costs, whose quota
    /// `cost` exceeds.
    pub(super) fn never_fits(
        &self,
        cost: &Cost,
        strict: impl Fn(Dimension) -> bool,
    ) -> Option<(Spent, u64)> {
        if self.empty {
            return None;
        }
        self.touched(cost)
            .find(|(dimension, units, window)| strict(*dimension) && *units > window.limit.quota)
            .map(|(dimension, units, window)| {
                let window = window.limit;
                (Spent { dimension, window }, units)
            })
    }

    /// The first instant from `from` at which `cost` fits in every window it touches, and the
    /// window that decides it (`None`: none holds it back).
    pub(super) fn ready_at(&self, cost: &Cost, from: Nanos) -> (Nanos, Option<Spent>) {
        let mut at = (from, None);
        if self.empty {
            return at;
        }
        for (dimension, units, window) in self.touched(cost) {
            let ready = window.ready_at(units, from);
            if ready > at.0 {
                let window = window.limit;
                at = (ready, Some(Spent { dimension, window }));
            }
        }
        at
    }

    /// Counts `cost` at `at` (no earlier than [`ready_at`](Self::ready_at)) in every window it
    /// touches; `Some(at)` when there are windows (what it turns out to have used is settled
    /// there, in whichever dimension).
    pub(super) fn book(&mut self, cost: &Cost, at: Nanos, now: Nanos) -> Option<Nanos> {
        if self.empty {
            return None;
        }
        for (units, window) in self.touched_mut(cost) {
            window.add(i128::from(units), at, now);
            window.frontier = window.frontier.max(at);
        }
        (!self.is_empty()).then_some(at)
    }

    /// Takes `cost`, counted at `at`, out of every window it touches (the frontier stays: the
    /// ledger puts it back where the bookings before it left it).
    pub(super) fn unbook(&mut self, cost: &Cost, at: Nanos, now: Nanos) {
        for (units, window) in self.touched_mut(cost) {
            window.add(-i128::from(units), at, now);
        }
    }

    /// `cost`, counted at `at`, keeps its place: the frontier of its windows is past it.
    pub(super) fn keep(&mut self, cost: &Cost, at: Nanos) {
        for (_, window) in self.touched_mut(cost) {
            window.frontier = window.frontier.max(at);
        }
    }

    /// A booking of `booked` units of `dimension`, counted at `at`, really used `used`.
    /// Returns whether it was charged more (the waiters behind it must book again).
    pub(super) fn adjust(
        &mut self,
        dimension: Dimension,
        at: Nanos,
        booked: u64,
        used: u64,
        now: Nanos,
    ) -> bool {
        let change = i128::from(used) - i128::from(booked);
        for window in &mut self.by_dimension[dimension.index()] {
            window.add(change, at, now);
        }
        change > 0 && !self.by_dimension[dimension.index()].is_empty()
    }

    /// The frontier of every window, in order: what a booking was appended after.
    pub(super) fn frontiers(&self) -> Vec<Nanos> {
        if self.empty {
            return Vec::new();
        }
        self.by_dimension
            .iter()
            .flatten()
            .map(|window| window.frontier)
            .collect()
    }

    /// Puts the frontiers back to `frontiers` (from [`frontiers`](Self::frontiers)).
    pub(super) fn restore(&mut self, frontiers: &[Nanos]) {
        for (window, frontier) in self.by_dimension.iter_mut().flatten().zip(frontiers) {
            window.frontier = *frontier;
        }
    }

    /// Forgets what no booking from `now` on can reach.
    pub(super) fn prune(&mut self, now: Nanos) {
        if self.empty {
            return;
        }
        for window in self.by_dimension.iter_mut().flatten() {
            window.prune(now);
        }
    }

    /// Units of `dimension` that every window would admit at `now`; `None` without a window.
    pub(super) fn available(&self, dimension: Dimension, now: Nanos) -> Option<u64> {
        self.by_dimension[dimension.index()]
            .iter()
            .map(|window| window.available(now))
            .min()
    }

    /// Whether no window holds anything a later booking would meet.
    pub(super) fn is_at_rest(&self, now: Nanos) -> bool {
        self.by_dimension
            .iter()
            .flatten()
            .all(|window| window.is_at_rest(now))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const SECOND: Nanos = 1_000_000_000;
    const DAY: Nanos = 86_400 * SECOND;

    fn day(quota: u64) -> Window {
        Window::new(RollingWindow::new(quota, Duration::from_secs(86_400)))
    }

    fn book(window: &mut Window, units: u64, from: Nanos) -> Nanos {
        let at = window.ready_at(units, from);
        window.add(i128::from(units), at, from);
        window.frontier = window.frontier.max(at);
        at
    }

    /// Whatever the arrivals, no span of one period holds more than the quota.
    #[test]
    fn no_span_of_a_period_holds_more_than_the_quota() {
        let mut window = day(100);
        let mut booked = Vec::new();
        let mut now = 0;
        for step in 0..2_000u64 {
            // Arrivals in bursts and lulls; costs of 1 to 7.
            now += if step % 50 == 0 {
                3 * 3_600 * SECOND
            } else {
                SECOND
            };
            let units = step % 7 + 1;
            let at = book(&mut window, units, now);
            window.prune(now);
            booked.push((at, units));
        }
        for &(start, _) in &booked {
            let in_span: u64 = booked
                .iter()
                .filter(|(at, _)| *at >= start && *at < start + DAY)
                .map(|(_, units)| units)
                .sum();
            assert!(in_span <= 100, "{in_span} units in the day from {start}");
        }
        // Arrival order holds: nothing was booked before an earlier booking.
        assert!(booked.windows(2).all(|pair| pair[0].0 <= pair[1].0));
    }

    /// A spent window opens again when its oldest bucket leaves the span, not a whole period
    /// after its last booking.
    #[test]
    fn a_spent_window_opens_as_its_oldest_units_leave() {
        let mut window = day(10);
        for _ in 0..10 {
            assert_eq!(book(&mut window, 1, 0), 0);
        }
        let next = book(&mut window, 1, 0);
        assert!((DAY..=DAY + DAY / 256).contains(&next), "{next}");
        assert_eq!(window.available(next), 9);
    }

    /// Units taken out (a dropped reservation, a refund) are room again at once.
    #[test]
    fn units_taken_out_are_room_again() {
        let mut window = day(3);
        for _ in 0..3 {
            book(&mut window, 1, 0);
        }
        assert_eq!(window.available(SECOND), 0);
        window.add(-1, 0, SECOND);
        assert_eq!(window.available(SECOND), 1);
        assert_eq!(book(&mut window, 1, SECOND), SECOND);
    }

    /// A cost above the quota goes when the window is empty, never forever.
    #[test]
    fn an_oversized_cost_waits_for_an_empty_window() {
        let mut window = day(10);
        book(&mut window, 4, 0);
        let at = book(&mut window, 50, 0);
        assert!((DAY..=DAY + DAY / 256).contains(&at), "{at}");
        window.prune(at);
        assert!(!window.is_at_rest(at));
        window.prune(at + 2 * DAY);
        assert!(window.is_at_rest(at + 2 * DAY));
        assert!(window.buckets.is_empty());
    }

    #[test]
    fn absurd_periods_and_instants_saturate() {
        let mut window = Window::new(RollingWindow::new(0, Duration::MAX));
        assert_eq!(window.limit.quota, 1);
        assert_eq!(book(&mut window, 1, u64::MAX - 1), u64::MAX - 1);
        let next = book(&mut window, 1, u64::MAX - 1);
        assert!(next >= u64::MAX - 1);
        let mut tiny = Window::new(RollingWindow::new(1, Duration::from_nanos(1)));
        assert_eq!(book(&mut tiny, 1, 0), 0);
        assert_eq!(book(&mut tiny, 1, 0), 2);
    }
}
