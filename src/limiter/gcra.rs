//! One GCRA cell: the generic cell rate algorithm as a small value type.
//!
//! # The algorithm
//!
//! A rate of `r` units per period with a burst of `b` units is described by two numbers:
//! the *emission interval* `T = period / r` (how long one unit "occupies" the cell) and the
//! *tolerance* `τ = b·T` (how far ahead of real time the cell may be booked). The whole state
//! is one number, the *theoretical arrival time* `tat`: the instant at which the cell would be
//! empty again if nothing else arrived.
//!
//! A reservation of `c` units at time `now` is given the virtual interval
//! `[max(tat, now), max(tat, now) + c·T)` and may leave at
//! `ready_at = max(now, tat + c·T − τ)`, the first instant at which the interval ends within
//! `τ` of real time. `tat` then moves to the interval's end. Because reservations are
//! *scheduled* rather than refused, and `tat` only moves forward, `ready_at` is non-decreasing in
//! arrival order: waiters are served first come, first served, and a large cost is never starved by
//! a stream of small ones.
//!
//! Each admitted interval starts no earlier than its `ready_at` and ends no later than
//! `ready_at + τ`, and intervals never overlap; so the units admitted in any window of length
//! `W` are at most `b + r·W`. A cost larger than the burst (`c·T > τ`) could never satisfy that;
//! it is admitted as soon as the cell is empty (`ready_at = max(now, tat)`) and its excess is paid
//! back as debt by the reservations that follow.
//!
//! All times are nanoseconds since an epoch chosen by the owner of the cell ([`super::Budget`]
//! uses a `tokio::time::Instant`), so every method is a pure function of `now` and tests need no
//! clock. Arithmetic saturates: an absurd cost or rate never overflows, it only waits longer.

use std::time::Duration;

use crate::time::duration_to_nanos;

/// Nanoseconds since the owner's epoch.
pub type Nanos = u64;

/// What a reservation booked in a [`Gcra`] cell: when it may go, and the virtual interval it holds.
///
/// Keep it to [`refund`](Gcra::refund) later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Grant {
    /// The instant (nanoseconds since the epoch) at which the reserved units may be used.
    pub ready_at: Nanos,
    /// Start of the virtual interval this grant occupies.
    pub start: Nanos,
    /// End of the virtual interval: the cell's `tat` right after this grant.
    pub end: Nanos,
    /// The cell's booking number for this grant: it can give capacity back only while no other
    /// booking, rate change or debit came after it.
    pub seq: u64,
}

/// A generic cell rate algorithm cell: one rate, one burst, one theoretical arrival time.
///
/// ```
/// use std::time::Duration;
/// use reqwest_throttle::limiter::Gcra;
///
/// // 10 units per second, burst of 2.
/// let mut cell = Gcra::new(Duration::from_millis(100), 2);
/// let now = 0;
/// assert_eq!(cell.reserve(1, now).ready_at, 0);
/// assert_eq!(cell.reserve(1, now).ready_at, 0);
/// // The burst is spent: the third unit is scheduled one emission interval later.
/// assert_eq!(cell.reserve(1, now).ready_at, 100_000_000);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Gcra {
    /// Emission interval `T`: nanoseconds one unit occupies. Never zero.
    interval: Nanos,
    /// Burst in units. Never zero.
    burst: u64,
    /// Theoretical arrival time.
    tat: Nanos,
    /// Bumped by every change of `tat` other than a refund's: identifies the latest grant.
    seq: u64,
}

impl Gcra {
    /// A full cell with emission interval `interval` per unit and a burst of `burst` units.
    ///
    /// A zero interval is raised to one nanosecond and a zero burst to one unit; validated
    /// rates never produce either (see [`crate::Rate`]).
    pub fn new(interval: Duration, burst: u64) -> Gcra {
        Gcra {
            interval: duration_to_nanos(interval).max(1),
            burst: burst.max(1),
            tat: 0,
            seq: 0,
        }
    }

    /// The emission interval: how long one unit occupies the cell.
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval)
    }

    /// The burst in units.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// The theoretical arrival time: when the cell is empty again if nothing else arrives.
    pub fn tat(&self) -> Nanos {
        self.tat
    }

    fn tolerance(&self) -> Nanos {
        self.interval.saturating_mul(self.burst)
    }

    fn increment(&self, cost: u64) -> Nanos {
        self.interval.saturating_mul(cost)
    }

    /// When `cost` units could leave if reserved at `now`, without reserving them.
    pub fn ready_at(&self, cost: u64, now: Nanos) -> Nanos {
        // An oversized cost counts as exactly one full burst: it goes once the cell is empty.
        let needed = self.increment(cost).min(self.tolerance());
        now.max(
            self.tat
                .saturating_add(needed)
                .saturating_sub(self.tolerance()),
        )
    }

    /// Reserves `cost` units: books them and says when they may leave.
    ///
    /// Never fails: when the cell is busy the grant is scheduled into the future, after every
    /// earlier reservation.
    pub fn reserve(&mut self, cost: u64, now: Nanos) -> Grant {
        let ready_at = self.ready_at(cost, now);
        self.reserve_at(cost, ready_at, now)
    }

    /// Reserves `cost` units to leave at `at`, which the caller chose no earlier than
    /// [`ready_at`](Self::ready_at) (a multi-dimension budget leaves when its slowest cell is ready).
    pub fn reserve_at(&mut self, cost: u64, at: Nanos, now: Nanos) -> Grant {
        let at = at.max(self.ready_at(cost, now));
        let start = self.tat.max(at);
        let end = start.saturating_add(self.increment(cost));
        self.tat = end;
        self.seq = self.seq.wrapping_add(1);
        Grant {
            ready_at: at,
            start,
            end,
            seq: self.seq,
        }
    }

    /// Units that could be reserved at `now` without waiting.
    pub fn available(&self, now: Nanos) -> u64 {
        let booked_ahead = self.tat.saturating_sub(now);
        self.tolerance().saturating_sub(booked_ahead) / self.interval
    }

    /// Units that could be reserved at `now`, below zero when more is booked than the
    /// bucket holds (waiters, a debt): [`available`](Self::available) without the floor.
    pub fn level(&self, now: Nanos) -> i128 {
        let booked_ahead = i128::from(self.tat.saturating_sub(now));
        (i128::from(self.tolerance()) - booked_ahead).div_euclid(i128::from(self.interval))
    }

    /// Gives back `units` of `grant`.
    ///
    /// Only the latest grant can give capacity back: every later grant was scheduled around the
    /// interval it holds, so handing that interval to a newcomer would let two units share one
    /// slot. A refund of an earlier grant (or of one made before a rate change or a debit, whose
    /// interval no longer lines up with the cell) is therefore forfeited and `false` is returned;
    /// the cell never over-admits. A grant gives back at most once. Returns `true` when the
    /// capacity was returned.
    pub fn refund(&mut self, grant: &Grant, units: u64) -> bool {
        self.refund_nanos(grant, units).is_some()
    }

    /// [`refund`](Self::refund), saying how much virtual time was given back.
    pub(crate) fn refund_nanos(&mut self, grant: &Grant, units: u64) -> Option<Nanos> {
        if grant.seq != self.seq || self.tat != grant.end {
            return None;
        }
        let returned = self
            .increment(units)
            .min(grant.end.saturating_sub(grant.start));
        self.give_back(returned);
        Some(returned)
    }

    /// Takes `nanos` off the end of the schedule: what a refund of the latest grant does, and
    /// what replaying that refund does again.
    pub(crate) fn give_back(&mut self, nanos: Nanos) {
        self.tat = self.tat.saturating_sub(nanos);
        // Nothing is the latest grant any more: the one before was scheduled around this one.
        self.seq = self.seq.wrapping_add(1);
    }

    /// Whether `other` has the same rate and schedule (whatever its booking number).
    pub(crate) fn same_schedule(&self, other: &Gcra) -> bool {
        (self.interval, self.burst, self.tat) == (other.interval, other.burst, other.tat)
    }

    /// Makes this cell, rebuilt from an earlier state, newer than `replaced`: no grant handed out
    /// by either can refund into it (a rebuilt schedule lines up with none of them).
    pub(crate) fn supersede(&mut self, replaced: &Gcra) {
        self.seq = self.seq.max(replaced.seq).wrapping_add(1);
    }

    /// Charges `units` more than were reserved (a cost found to be larger after the fact):
    /// later reservations wait for them.
    pub fn debit(&mut self, units: u64, now: Nanos) {
        self.tat = self.tat.max(now).saturating_add(self.increment(units));
        self.seq = self.seq.wrapping_add(1);
    }

    /// Gives back `units` that the server says were never used (it announced more remaining
    /// than this cell believes): the cell never holds more than its burst.
    pub fn credit(&mut self, units: u64, now: Nanos) {
        self.tat = self.tat.saturating_sub(self.increment(units)).max(now);
        self.seq = self.seq.wrapping_add(1);
    }

    /// Changes the rate at `now`, keeping what is already booked.
    ///
    /// Units booked within the tolerance (the bucket's fill) are kept as *units*: they cost
    /// the new interval each, so a rate change neither forgives recent use nor double-charges
    /// it. Grants scheduled beyond the tolerance (waiters, or debt from an oversized cost) are
    /// kept as *time*: they leave at the instants they were given, and the next reservation is
    /// placed at least one new interval after the last of them, so arrival order holds across
    /// the change and no backlog is invented at the new price.
    pub fn set_rate(&mut self, interval: Duration, burst: u64, now: Nanos) {
        self.seq = self.seq.wrapping_add(1);
        let old_interval = self.interval;
        let old_tolerance = self.tolerance();
        let booked_ahead = self.tat.saturating_sub(now);
        self.interval = duration_to_nanos(interval).max(1);
        self.burst = burst.max(1);
        // units × new interval, in u128 so a large bucket cannot overflow
        let as_units = |nanos: Nanos| {
            let scaled = u128::from(nanos) * u128::from(self.interval) / u128::from(old_interval);
            u64::try_from(scaled).unwrap_or(u64::MAX)
        };
        let ahead = if booked_ahead > old_tolerance {
            let queued = booked_ahead - old_tolerance;
            queued.saturating_add(as_units(old_tolerance).max(self.tolerance()))
        } else {
            as_units(booked_ahead)
        };
        self.tat = now.saturating_add(ahead);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Nanos = 1_000_000;

    fn per_second(rate: u64, burst: u64) -> Gcra {
        Gcra::new(Duration::from_secs(1) / rate as u32, burst)
    }

    #[test]
    fn burst_is_immediate_then_paced() {
        let mut cell = per_second(10, 3);
        let ready: Vec<_> = (0..6).map(|_| cell.reserve(1, 0).ready_at).collect();
        assert_eq!(ready, vec![0, 0, 0, 100 * MS, 200 * MS, 300 * MS]);
    }

    #[test]
    fn waiting_refills_the_burst() {
        let mut cell = per_second(10, 3);
        for _ in 0..3 {
            cell.reserve(1, 0);
        }
        assert_eq!(cell.available(0), 0);
        assert_eq!(cell.available(150 * MS), 1);
        assert_eq!(cell.available(10_000 * MS), 3);
    }

    #[test]
    fn weighted_costs_are_served_in_arrival_order() {
        let mut cell = per_second(10, 5);
        let big = cell.reserve(5, 0);
        let small = cell.reserve(1, 0);
        let big_again = cell.reserve(4, 0);
        assert_eq!(big.ready_at, 0);
        assert_eq!(small.ready_at, 100 * MS);
        assert!(big_again.ready_at >= small.ready_at);
        assert_eq!(big_again.ready_at, 500 * MS);
    }

    #[test]
    fn oversized_cost_goes_when_empty_and_leaves_debt() {
        let mut cell = per_second(10, 2);
        let huge = cell.reserve(20, 0);
        assert_eq!(huge.ready_at, 0);
        // 2 s of debt: the next unit waits until the bucket is back to one free slot.
        assert_eq!(cell.reserve(1, 0).ready_at, 1_900 * MS);
        // A second oversized cost waits for the cell to be empty, never forever.
        let mut cell = per_second(10, 2);
        cell.reserve(1, 0);
        assert_eq!(cell.reserve(50, 0).ready_at, 100 * MS);
    }

    #[test]
    fn peek_does_not_consume() {
        let mut cell = per_second(10, 1);
        cell.reserve(1, 0);
        let before = cell;
        assert_eq!(cell.ready_at(1, 0), 100 * MS);
        assert_eq!(cell.available(0), 0);
        assert_eq!(cell, before);
    }

    #[test]
    fn refund_of_latest_grant_returns_capacity() {
        let mut cell = per_second(10, 1);
        cell.reserve(1, 0);
        let queued = cell.reserve(1, 0);
        assert_eq!(queued.ready_at, 100 * MS);
        assert!(cell.refund(&queued, 1));
        assert_eq!(cell.reserve(1, 0).ready_at, 100 * MS);
    }

    #[test]
    fn refund_of_earlier_grant_is_forfeited_not_double_booked() {
        let mut cell = per_second(1, 1);
        cell.reserve(1, 0);
        let second = cell.reserve(1, 0);
        let third = cell.reserve(1, 0);
        assert!(!cell.refund(&second, 1));
        // A newcomer must not share the third grant's slot.
        assert!(cell.reserve(1, 0).ready_at > third.ready_at);
    }

    #[test]
    fn partial_refund_keeps_the_rest() {
        let mut cell = per_second(10, 10);
        let grant = cell.reserve(10, 0);
        assert!(cell.refund(&grant, 4));
        assert_eq!(cell.available(0), 4);
        // Refunding more than was reserved gives back at most the grant itself.
        let grant = cell.reserve(4, 0);
        assert!(cell.refund(&grant, 1_000));
        assert_eq!(cell.available(0), 4);
    }

    #[test]
    fn a_grant_from_before_a_rate_change_cannot_free_a_newer_slot() {
        let mut cell = Gcra::new(Duration::from_nanos(2), 1);
        let old = cell.reserve(1, 0);
        cell.set_rate(Duration::from_nanos(1), 1, 0);
        let newer = cell.reserve(1, 0);
        assert_eq!(newer.end, old.end);
        assert!(!cell.refund(&old, 1));
        assert!(cell.reserve(1, 0).ready_at > newer.ready_at);
        // A grant gives back at most once.
        let latest = cell.reserve(1, 0);
        assert!(cell.refund(&latest, 1));
        assert!(!cell.refund(&latest, 1));
    }

    #[test]
    fn debit_delays_later_reservations() {
        let mut cell = per_second(10, 1);
        cell.reserve(1, 0);
        cell.debit(3, 0);
        assert_eq!(cell.reserve(1, 0).ready_at, 400 * MS);
    }

    #[test]
    fn set_rate_keeps_booked_units_and_the_schedule() {
        let mut cell = per_second(10, 2);
        cell.reserve(1, 0);
        // One unit booked at 10/s; at 1/s it costs a second.
        cell.set_rate(Duration::from_secs(1), 4, 0);
        assert_eq!(cell.tat(), 1_000 * MS);
        assert_eq!(cell.available(0), 3);

        // Grants scheduled into the future keep their instants: the next one is placed one new
        // interval after the last of them.
        let mut cell = per_second(10, 1);
        let last = (0..5).map(|_| cell.reserve(1, 0)).last().unwrap();
        assert_eq!(last.ready_at, 400 * MS);
        cell.set_rate(Duration::from_secs(1), 1, 0);
        assert_eq!(cell.reserve(1, 0).ready_at, 1_400 * MS);
        // Speeding up again, even with a larger burst, never goes before what was handed out.
        cell.set_rate(Duration::from_millis(10), 50, 0);
        assert_eq!(cell.reserve(1, 0).ready_at, 1_410 * MS);
    }

    #[test]
    fn set_rate_keeps_debt() {
        let mut cell = per_second(10, 2);
        cell.reserve(20, 0);
        // 2 s booked, 1.8 s of it beyond the bucket: that debt stays, whatever the new rate.
        cell.set_rate(Duration::from_millis(50), 2, 0);
        assert_eq!(cell.tat(), 1_900 * MS);
        assert_eq!(cell.reserve(1, 0).ready_at, 1_850 * MS);
    }

    #[test]
    fn absurd_values_saturate_instead_of_overflowing() {
        let mut cell = Gcra::new(Duration::from_secs(u64::MAX), u64::MAX);
        let grant = cell.reserve(u64::MAX, u64::MAX - 1);
        assert_eq!(grant.ready_at, u64::MAX - 1);
        assert_eq!(cell.tat(), u64::MAX);
        cell.set_rate(Duration::ZERO, 0, 0);
        assert_eq!(cell.interval(), Duration::from_nanos(1));
        assert_eq!(cell.burst(), 1);
    }
}
