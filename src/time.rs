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
}
