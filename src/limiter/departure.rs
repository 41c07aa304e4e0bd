//! Departures spaced as sent, and the sleep that keeps them.
//!
//! A budget books slots; timers fire a little late, and a request that left late followed by one
//! on time would reach the server closer together than the rate allows (a leaky bucket without
//! burst, nginx's `limit_req`, refuses exactly that). [`Departures`] keeps a dimension's rate a
//! second time, over the instants units really left: a departure waits until it conforms there
//! too, so lateness pushes the next departure back instead of bunching them.
//!
//! Guarantees:
//! - beyond the burst, departures recorded here are at least one *guarded* interval apart: the
//!   interval plus 1 % (at most 250 µs), so that the server's clock, which reads arrivals after
//!   two schedulers and a network, sees no two closer than the rate allows;
//! - a new rate holds the next departure back by at most one new interval;
//! - [`sleep_exactly_until`] never ends before its instant, and ends within some tens of
//!   microseconds after it rather than on the timer's next millisecond tick.

use std::time::Duration;

use tokio::time::Instant;

use super::cost::Limit;
use super::gcra::{Gcra, Nanos};
use super::ledger::Change;

/// The share of an interval the spacing as sent adds as a guard (1 %)...
const SENT_GUARD_DIVISOR: u32 = 100;
/// ...up to this much.
const MAX_SENT_GUARD: Duration = Duration::from_micros(250);

/// `limit` as departures keep it: each interval a little longer. The server reads arrivals on
/// its own clock, through two schedulers and a network, in whole milliseconds (nginx): two
/// requests spaced exactly one interval apart as sent may arrive a little closer, and a leaky
/// bucket without burst refuses the second. The guard absorbs that jitter for 1 % of the rate.
fn guarded(limit: Limit) -> Limit {
    let guard = (limit.interval / SENT_GUARD_DIVISOR).min(MAX_SENT_GUARD);
    Limit {
        interval: limit.interval.saturating_add(guard),
        ..limit
    }
}

/// One dimension's rate, charged at the instants its units really left.
#[derive(Debug, Default)]
pub(super) struct Departures {
    /// `None` while the dimension has no limit.
    sent: Option<Gcra>,
}

impl Departures {
    /// Follows a new `limit` of the dimension (`None`: no limit). What was sent is rescaled to
    /// the new rate, as in a booking cell, but the next departure never waits more than one new
    /// interval: rescaled alone, a burst sent at a fast rate would hold the next departure (and
    /// the lane's concurrency slots) for a burst's worth of slow intervals.
    pub(super) fn set_limit(&mut self, limit: Option<Limit>, now: Nanos) {
        let limit = limit.map(guarded);
        Change::Limit(limit).apply(&mut self.sent, now);
        let (Some(cell), Some(limit)) = (self.sent.as_mut(), limit) else {
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

    /// Records that `units` leave at `at`, if the spacing as sent allows it; otherwise the
    /// instant it will. The caller waits until then and asks again: a departure is recorded
    /// when it really happens, so that lateness pushes the next one back.
    pub(super) fn depart(&mut self, units: u64, at: Nanos) -> Result<(), Nanos> {
        let Some(sent) = self.sent.as_mut() else {
            return Ok(());
        };
        let ready = sent.ready_at(units, at);
        if ready > at {
            return Err(ready);
        }
        sent.reserve_at(units, at, at);
        Ok(())
    }

    /// Lets `units` more leave at once: the server gave them back.
    pub(super) fn credit(&mut self, units: u64, now: Nanos) {
        if let Some(sent) = self.sent.as_mut() {
            sent.credit(units, now);
        }
    }

    /// Lets no more than `remaining` units leave at once: what the server says remains. Without
    /// it, a burst that opened while waiters were booked ahead would let the first of them leave
    /// as far ahead of the late departures as they had fallen behind their slots.
    pub(super) fn cap(&mut self, remaining: u64, now: Nanos) {
        if let Some(sent) = self.sent.as_mut() {
            let beyond = sent.available(now).saturating_sub(remaining);
            if beyond > 0 {
                sent.debit(beyond, now);
            }
        }
    }
}

/// The resolution of tokio's timer: a sleep ends on the first whole-millisecond tick at or
/// after its deadline.
const TIMER_TICK: Duration = Duration::from_millis(1);

/// How late tokio's timer may end a sleep: it wakes on whole-millisecond ticks, and the worker
/// that drives it may notice the tick up to one more late.
const TIMER_LATENESS: Duration = Duration::from_millis(2);

/// How long a task that a thread of the blocking pool woke takes to run again, with a margin:
/// the thread wakes it this much before the instant due, and the task waits out what is left
/// itself.
const HANDOFF: Duration = Duration::from_micros(300);

/// Sleeps until `at`, to some tens of microseconds rather than to tokio's next millisecond
/// tick, and returns the instant reached: `at` or a little after.
///
/// A departure due one interval after one that left just past a tick would otherwise wake a
/// whole tick late, every time, and the lane would fall below its rate; nor can the spacing
/// simply be shortened (nginx `limit_req` without burst refuses anything closer than the
/// interval). Three stages, each ending before `at` by what the next one may overshoot:
///
/// - tokio's timer, to [`TIMER_LATENESS`] before (it may wake up to two ticks late);
/// - a thread of tokio's blocking pool, whose sleep the operating system ends within about a
///   hundred microseconds, to [`HANDOFF`] before `at` (waking the task from the thread takes
///   longer than the thread's own error);
/// - the task itself, yielding until `at`: at most the handoff, a small share of a core. A
///   longer spin would take a core from whatever else runs on the machine, a local server
///   included.
///
/// Under a paused clock (tests) time stands still across a yield and a timer ends only on a
/// tick: the sleep ends at the tick before `at` and reports `at` as reached, so that virtual
/// departures keep the schedule's spacing on average instead of gaining a tick each.
pub(crate) async fn sleep_exactly_until(at: Instant) -> Instant {
    if let Some(early) = at.checked_sub(TIMER_LATENESS) {
        if early > Instant::now() {
            tokio::time::sleep_until(early).await;
        }
    }
    let now = Instant::now();
    if now >= at {
        return now;
    }
    tokio::task::yield_now().await;
    let after_yield = Instant::now();
    if after_yield == now {
        // The clock stood still across a yield: paused (or without resolution). A paused
        // timer ends exactly on its tick: the one before `at`.
        if let Some(tick_before) = at.checked_sub(TIMER_TICK).filter(|&tick| tick > now) {
            tokio::time::sleep_until(tick_before).await;
        }
        return at;
    }
    let rest = at
        .saturating_duration_since(after_yield)
        .saturating_sub(HANDOFF);
    if !rest.is_zero()
        && tokio::task::spawn_blocking(move || std::thread::sleep(rest))
            .await
            .is_err()
    {
        // No blocking pool (the runtime is shutting down): the timer's tick will do.
        tokio::time::sleep_until(at).await;
    }
    loop {
        let now = Instant::now();
        if now >= at {
            return now;
        }
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Nanos = 1_000_000_000;
    const MILLI: Nanos = 1_000_000;
    const MICRO: Nanos = 1_000;

    fn limited(rate: u32, burst: u64) -> Departures {
        let mut departures = Departures::default();
        departures.set_limit(Some(Limit::per_second(rate, burst)), 0);
        departures
    }

    #[test]
    fn the_guard_is_a_percent_of_the_interval_up_to_250_micros() {
        let fast = Limit::per_second(50, 1);
        assert_eq!(guarded(fast).interval, Duration::from_micros(20_200));
        let slow = Limit::per_second(1, 3);
        assert_eq!(
            guarded(slow),
            Limit {
                interval: Duration::from_micros(1_000_250),
                burst: 3
            }
        );
    }

    #[test]
    fn departures_beyond_the_burst_are_a_guarded_interval_apart() {
        let mut departures = limited(50, 2);
        assert_eq!(departures.depart(1, 0), Ok(()));
        assert_eq!(departures.depart(1, 0), Ok(()));
        assert_eq!(departures.depart(1, 0), Err(20 * MILLI + 200 * MICRO));
        // Without a burst, a departure that left late pushes the next one back by as much.
        let mut departures = limited(50, 1);
        assert_eq!(departures.depart(1, 0), Ok(()));
        let late = 25 * MILLI;
        assert_eq!(departures.depart(1, late), Ok(()));
        assert_eq!(
            departures.depart(1, late),
            Err(late + 20 * MILLI + 200 * MICRO)
        );
    }

    /// Eight requests sent in one burst at a configured rate, then a pace ten times slower:
    /// the next departure waits at most one new interval, not eight.
    #[test]
    fn a_new_rate_spaces_the_next_departure_by_one_interval() {
        let mut departures = limited(10, 10);
        let now = 0;
        for _ in 0..8 {
            assert_eq!(departures.depart(1, now), Ok(()));
        }
        departures.set_limit(Some(Limit::per_second(1, 1)), now);
        // One interval, and its guard as sent (1 %, at most 250 µs).
        assert_eq!(departures.depart(1, now), Err(now + SECOND + 250 * MICRO));
        // Faster again: no longer than the new interval either.
        departures.set_limit(Some(Limit::per_second(10, 1)), now);
        assert_eq!(
            departures.depart(1, now),
            Err(now + 100 * MILLI + 250 * MICRO)
        );
    }

    #[test]
    fn without_a_limit_everything_leaves() {
        let mut departures = limited(1, 1);
        departures.set_limit(None, 0);
        for _ in 0..3 {
            assert_eq!(departures.depart(1, 0), Ok(()));
        }
        departures.credit(1, 0);
        departures.cap(0, 0);
        assert_eq!(departures.depart(1, 0), Ok(()));
    }

    #[test]
    fn the_servers_word_caps_and_credits_what_may_leave_at_once() {
        let mut departures = limited(1, 10);
        // The server says 2 remain: the third must wait, however full the burst looked.
        departures.cap(2, 0);
        assert_eq!(departures.depart(1, 0), Ok(()));
        assert_eq!(departures.depart(1, 0), Ok(()));
        assert!(departures.depart(1, 0).is_err());
        // It gives one back: that one may leave now.
        departures.credit(1, 0);
        assert_eq!(departures.depart(1, 0), Ok(()));
        assert!(departures.depart(1, 0).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn an_exact_sleep_under_a_paused_clock_reaches_its_instant_on_the_tick_before() {
        let start = Instant::now();
        let at = start + Duration::from_micros(20_300);
        assert_eq!(sleep_exactly_until(at).await, at);
        // The clock moved by whole ticks only, to the last one before `at`.
        assert_eq!(Instant::now() - start, Duration::from_millis(20));
        // An instant already past returns at once, as the clock reads.
        assert_eq!(sleep_exactly_until(start).await, Instant::now());
    }

    #[tokio::test]
    async fn an_exact_sleep_never_ends_early_on_the_real_clock() {
        for micros in [150, 1_000, 2_300, 4_700] {
            let at = Instant::now() + Duration::from_micros(micros);
            let reached = sleep_exactly_until(at).await;
            assert!(
                reached >= at && Instant::now() >= at,
                "woke before {micros} us"
            );
        }
    }
}
