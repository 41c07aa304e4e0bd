//! Time as the algorithms count it: nanoseconds (`u64`) since an [`Epoch`].
//!
//! This is the one place where `tokio::time::Instant`, `std::time::Duration` and nanoseconds
//! are converted into one another. Every conversion saturates instead of failing or panicking:
//! an instant before the epoch is 0, a span beyond `u64::MAX` nanoseconds (about 584 years) is
//! `u64::MAX`, and an instant the platform cannot represent becomes one a century ahead. A
//! hostile server value or an absurd configuration can make something wait very long, never
//! overflow.

use std::time::Duration;

use tokio::time::Instant;

/// How far ahead [`later`] saturates when `now + wait` cannot be represented: far beyond any
/// wait anybody means, and representable on every platform tokio supports.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 100);

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// The origin against which instants are counted in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Epoch(Instant);

impl Epoch {
    /// An epoch at the current (possibly virtual) instant.
    pub(crate) fn now() -> Epoch {
        Epoch(Instant::now())
    }

    /// An epoch at `origin`.
    pub(crate) fn at(origin: Instant) -> Epoch {
        Epoch(origin)
    }

    /// Nanoseconds from the epoch to `instant`: 0 for an instant before the epoch, `u64::MAX`
    /// for one more than about 584 years after it.
    pub(crate) fn nanos(self, instant: Instant) -> u64 {
        duration_to_nanos(instant.saturating_duration_since(self.0))
    }

    /// The instant `nanos` nanoseconds after the epoch, saturating as [`later`] does.
    pub(crate) fn instant(self, nanos: u64) -> Instant {
        later(self.0, Duration::from_nanos(nanos))
    }
}

/// `duration` in nanoseconds, saturating at `u64::MAX` (about 584 years).
pub(crate) fn duration_to_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// `nanos` nanoseconds as a [`Duration`], saturating at [`Duration::MAX`].
pub(crate) fn nanos_to_duration(nanos: u128) -> Duration {
    let subsec = (nanos % NANOS_PER_SEC) as u32; // < 10^9, always fits
    match u64::try_from(nanos / NANOS_PER_SEC) {
        // `subsec` is below one second, so `Duration::new` cannot carry into an overflow.
        Ok(secs) => Duration::new(secs, subsec),
        Err(_) => Duration::MAX,
    }
}

/// `now + wait`, saturating at a century ahead instead of panicking on an instant the platform
/// cannot represent (and at `now` should even that be unrepresentable).
pub(crate) fn later(now: Instant, wait: Duration) -> Instant {
    now.checked_add(wait)
        .or_else(|| now.checked_add(FAR_FUTURE))
        .unwrap_or(now)
}

/// The resolution of tokio's timer: a sleep ends on the first whole-millisecond tick at or
/// after its deadline.
const TIMER_TICK: Duration = Duration::from_millis(1);

/// How late tokio's timer may end a sleep: it wakes on whole-millisecond ticks, and the worker
/// that drives it may notice the tick up to one more late.
const TIMER_LATENESS: Duration = Duration::from_millis(2);

/// How long a task that a thread of the blocking pool woke takes to run again (measured: about
/// 260 µs on average on a 2-core machine with a busy lane): the thread wakes it this much
/// before the instant due, and the task waits out what is left itself.
const HANDOFF: Duration = Duration::from_micros(300);

/// Sleeps until `at`, to some tens of microseconds rather than to tokio's next millisecond
/// tick, and returns the instant reached: `at` or a little after.
///
/// A request that must leave one emission interval after one that left just past a tick was
/// woken a whole tick late, every time: spaced as sent at 50/s, the lane sent every 21 ms, 5 %
/// below the rate (nginx `limit_req` without burst refuses anything closer than 20 ms, so the
/// spacing cannot simply be shortened). Three stages, each ending before `at` by what the next
/// one may overshoot:
///
/// - tokio's timer, to two milliseconds before (it wakes up to two ticks late: one millisecond
///   before, as first written, woke after `at` seven times in ten);
/// - a thread of tokio's blocking pool, whose sleep the operating system ends within a hundred
///   microseconds, to the handoff before `at` (waking the task takes longer than the sleep's
///   own error: returning from the thread at `at` came back 360 µs late on average);
/// - the task itself, yielding until `at`: at most the handoff, a percent or two of a core at
///   50 requests a second. Spinning the whole last millisecond instead kept a core busy that a
///   server on the same machine needed, and delayed it by more than the rest.
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

    #[test]
    fn nanos_since_the_epoch_saturate_at_both_ends() {
        let origin = Instant::now();
        let epoch = Epoch::at(origin);
        assert_eq!(epoch.nanos(origin), 0);
        assert_eq!(epoch.nanos(origin + Duration::from_nanos(1_500)), 1_500);
        // An instant before the epoch (a caller that read the clock earlier) is the epoch.
        let earlier = origin.checked_sub(Duration::from_secs(1)).unwrap_or(origin);
        assert_eq!(epoch.nanos(earlier), 0);
        // More than u64::MAX nanoseconds after the epoch, where the platform can represent it.
        if let Some(far) = origin.checked_add(Duration::from_secs(600 * 365 * 86_400)) {
            assert_eq!(epoch.nanos(far), u64::MAX);
        }
    }

    #[test]
    fn instants_from_nanos_round_trip_and_never_panic() {
        let epoch = Epoch::now();
        for nanos in [0, 1, 1_000_000_007, 86_400 * NANOS_PER_SEC as u64] {
            assert_eq!(epoch.nanos(epoch.instant(nanos)), nanos);
        }
        // u64::MAX nanoseconds is about 584 years: representable or not, no panic, not earlier.
        assert!(epoch.instant(u64::MAX) >= epoch.instant(0));
    }

    #[test]
    fn durations_to_nanos_saturate() {
        assert_eq!(duration_to_nanos(Duration::ZERO), 0);
        assert_eq!(duration_to_nanos(Duration::new(2, 5)), 2_000_000_005);
        assert_eq!(duration_to_nanos(Duration::from_nanos(u64::MAX)), u64::MAX);
        assert_eq!(duration_to_nanos(Duration::MAX), u64::MAX);
    }

    #[test]
    fn nanos_to_durations_saturate() {
        assert_eq!(nanos_to_duration(0), Duration::ZERO);
        assert_eq!(
            nanos_to_duration(1_500_000_000),
            Duration::from_millis(1_500)
        );
        assert_eq!(
            nanos_to_duration(u128::from(u64::MAX)),
            Duration::from_nanos(u64::MAX)
        );
        assert_eq!(nanos_to_duration(Duration::MAX.as_nanos()), Duration::MAX);
        assert_eq!(nanos_to_duration(u128::MAX), Duration::MAX);
    }

    #[test]
    fn later_saturates_instead_of_panicking() {
        let now = Instant::now();
        assert_eq!(later(now, Duration::ZERO), now);
        assert_eq!(
            later(now, Duration::from_secs(3)),
            now + Duration::from_secs(3)
        );
        // Duration::MAX is beyond any platform's instants: a century ahead instead.
        let saturated = later(now, Duration::MAX);
        assert!(saturated >= now + Duration::from_secs(50 * 365 * 86_400));
        assert_eq!(saturated, later(now, FAR_FUTURE));
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
