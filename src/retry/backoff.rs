//! How long to wait before the next attempt.
//!
//! The three schedules of the AWS Architecture Blog's "Exponential Backoff and Jitter", with
//! `exp(n) = min(cap, base · 2ⁿ)` for retry `n` (0-based):
//!
//! | jitter | delay |
//! |---|---|
//! | [`Jitter::Full`] (default) | `random(0, exp(n))` |
//! | [`Jitter::Equal`] | `exp(n)/2 + random(0, exp(n)/2)` |
//! | [`Jitter::Decorrelated`] | `min(cap, random(base, 3 · previous))` |
//! | [`Jitter::None`] | `exp(n)` |
//!
//! Full jitter spreads a crowd of clients that failed together the most, which is what a
//! rate-limited API needs. When the server named a delay (Retry-After), the wait is at least that
//! delay; the jittered backoff only ever adds to it, never shortens it.
//!
//! The jitter draws from [`fastrand`]; [`Backoff::seed`] makes it reproducible in tests.
//!
//! Any schedule can be plugged in instead with [`Backoff::custom`] (and, with the `backon`
//! feature, any `backon::BackoffBuilder` through [`Backoff::backon`]).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The randomisation applied to the exponential schedule; in a configuration file (`serde`
/// feature) `"none"`, `"full"`, `"equal"` or `"decorrelated"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "lowercase")
)]
#[non_exhaustive]
pub enum Jitter {
    /// No randomisation: `exp(n)`.
    None,
    /// `random(0, exp(n))`.
    #[default]
    Full,
    /// `exp(n)/2 + random(0, exp(n)/2)`.
    Equal,
    /// `min(cap, random(base, 3 · previous))`.
    Decorrelated,
}

type Schedule = dyn Fn() -> Box<dyn Iterator<Item = Duration> + Send> + Send + Sync;

/// A backoff schedule: exponential with jitter, or a custom one.
///
/// ```
/// use std::time::Duration;
/// use reqwest_throttle::retry::{Backoff, Jitter};
///
/// let backoff = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(10))
///     .jitter(Jitter::None);
/// let mut delays = backoff.start();
/// assert_eq!(delays.next_delay(), Some(Duration::from_millis(100)));
/// assert_eq!(delays.next_delay(), Some(Duration::from_millis(200)));
/// assert_eq!(delays.next_delay(), Some(Duration::from_millis(400)));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct Backoff {
    kind: Kind,
    /// The generator every schedule forks its own from, when seeded (see [`Backoff::seed`]).
    seeded: Option<Arc<Mutex<fastrand::Rng>>>,
}

#[derive(Clone)]
enum Kind {
    Exponential {
        base: Duration,
        cap: Duration,
        jitter: Jitter,
    },
    Custom(Arc<Schedule>),
}

impl fmt::Debug for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Exponential { base, cap, jitter } => f
                .debug_struct("Backoff::Exponential")
                .field("base", base)
                .field("cap", cap)
                .field("jitter", jitter)
                .finish(),
            Kind::Custom(_) => f.write_str("Backoff::Custom"),
        }
    }
}

/// The first delay of [`Backoff::default`].
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(200);

/// The largest delay of [`Backoff::default`].
pub const DEFAULT_BACKOFF_CAP: Duration = Duration::from_secs(20);

impl Default for Backoff {
    /// Exponential from [`DEFAULT_BACKOFF_BASE`] (200 ms), capped at [`DEFAULT_BACKOFF_CAP`]
    /// (20 s), full jitter.
    fn default() -> Backoff {
        Backoff::exponential(DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_CAP)
    }
}

impl Backoff {
    /// Exponential backoff from `base`, capped at `cap`, with full jitter.
    pub fn exponential(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            kind: Kind::Exponential {
                base,
                cap: cap.max(base),
                jitter: Jitter::Full,
            },
            seeded: None,
        }
    }

    /// The first delay, the largest and the jitter of an exponential schedule; `None` for a
    /// custom one.
    pub fn exponential_settings(&self) -> Option<(Duration, Duration, Jitter)> {
        match &self.kind {
            Kind::Exponential { base, cap, jitter } => Some((*base, *cap, *jitter)),
            Kind::Custom(_) => None,
        }
    }

    /// Makes the jitter reproducible: the schedules started from this backoff (and its clones)
    /// draw from one generator seeded with `seed`, so the same requests, in the same order,
    /// get the same delays in every run. For tests; unseeded, each schedule draws from a
    /// generator of its own, which is what spreads clients that failed together.
    ///
    /// ```
    /// use reqwest_throttle::retry::Backoff;
    ///
    /// let delays = |backoff: &Backoff| {
    ///     let mut schedule = backoff.start();
    ///     [(); 4].map(|_| schedule.next_delay())
    /// };
    /// assert_eq!(delays(&Backoff::default().seed(7)), delays(&Backoff::default().seed(7)));
    /// ```
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Backoff {
        self.seeded = Some(Arc::new(Mutex::new(fastrand::Rng::with_seed(seed))));
        self
    }

    /// Changes the jitter of an exponential schedule (no effect on a custom one).
    #[must_use]
    pub fn jitter(mut self, jitter: Jitter) -> Backoff {
        if let Kind::Exponential { jitter: j, .. } = &mut self.kind {
            *j = jitter;
        }
        self
    }

    /// Any schedule: `make` is called once per request and its iterator gives the delay before
    /// each retry. When it ends, retries end.
    ///
    /// ```
    /// use std::time::Duration;
    /// use reqwest_throttle::retry::Backoff;
    ///
    /// let constant = Backoff::custom(|| Box::new(std::iter::repeat(Duration::from_secs(1)).take(2)));
    /// let mut delays = constant.start();
    /// assert_eq!(delays.next_delay(), Some(Duration::from_secs(1)));
    /// assert_eq!(delays.next_delay(), Some(Duration::from_secs(1)));
    /// assert_eq!(delays.next_delay(), None);
    /// ```
    pub fn custom(
        make: impl Fn() -> Box<dyn Iterator<Item = Duration> + Send> + Send + Sync + 'static,
    ) -> Backoff {
        Backoff {
            kind: Kind::Custom(Arc::new(make)),
            seeded: None,
        }
    }

    /// A `backon` schedule.
    #[cfg(feature = "backon")]
    #[cfg_attr(docsrs, doc(cfg(feature = "backon")))]
    pub fn backon<B>(builder: B) -> Backoff
    where
        B: backon::BackoffBuilder + Clone + Send + Sync + 'static,
        B::Backoff: Send + 'static,
    {
        Backoff::custom(move || Box::new(builder.clone().build()))
    }

    /// A fresh schedule for one request.
    pub fn start(&self) -> Delays {
        let state = match &self.kind {
            Kind::Exponential { base, cap, jitter } => DelayState::Exponential {
                base: *base,
                cap: *cap,
                jitter: *jitter,
                retry: 0,
                previous: *base,
                rng: match &self.seeded {
                    // A poisoned lock still holds a usable generator.
                    Some(shared) => shared.lock().unwrap_or_else(|p| p.into_inner()).fork(),
                    None => fastrand::Rng::new(),
                },
            },
            Kind::Custom(make) => DelayState::Custom(make()),
        };
        Delays { state }
    }
}

/// The delays of one request's retries, in order.
#[non_exhaustive]
pub struct Delays {
    state: DelayState,
}

impl fmt::Debug for Delays {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Delays")
    }
}

enum DelayState {
    Exponential {
        base: Duration,
        cap: Duration,
        jitter: Jitter,
        retry: u32,
        previous: Duration,
        rng: fastrand::Rng,
    },
    Custom(Box<dyn Iterator<Item = Duration> + Send>),
}

/// A uniform draw in `[low, high]`, in nanoseconds (a span beyond 584 years is cut there).
fn random_between(rng: &mut fastrand::Rng, low: Duration, high: Duration) -> Duration {
    if high <= low {
        return low;
    }
    let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.u64(nanos(low)..=nanos(high)))
}

impl Delays {
    /// The delay before the next retry; `None` when a custom schedule is exhausted.
    pub fn next_delay(&mut self) -> Option<Duration> {
        match &mut self.state {
            DelayState::Custom(delays) => delays.next(),
            DelayState::Exponential {
                base,
                cap,
                jitter,
                retry,
                previous,
                rng,
            } => {
                let factor = 1u32.checked_shl(*retry).unwrap_or(u32::MAX);
                let exp = base.checked_mul(factor).unwrap_or(*cap).min(*cap);
                *retry = retry.saturating_add(1);
                let delay = match jitter {
                    Jitter::None => exp,
                    Jitter::Full => random_between(rng, Duration::ZERO, exp),
                    Jitter::Equal => exp / 2 + random_between(rng, Duration::ZERO, exp / 2),
                    Jitter::Decorrelated => {
                        let high = previous.checked_mul(3).unwrap_or(*cap);
                        random_between(rng, *base, high).min(*cap)
                    }
                };
                *previous = delay.max(*base);
                Some(delay)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(100);
    const CAP: Duration = Duration::from_secs(5);

    fn exp(n: u32) -> Duration {
        (BASE * 2u32.pow(n)).min(CAP)
    }

    #[test]
    fn schedules_stay_within_their_bounds() {
        for _ in 0..200 {
            let mut none = Backoff::exponential(BASE, CAP).jitter(Jitter::None).start();
            let mut full = Backoff::exponential(BASE, CAP).start();
            let mut equal = Backoff::exponential(BASE, CAP)
                .jitter(Jitter::Equal)
                .start();
            let mut decorrelated = Backoff::exponential(BASE, CAP)
                .jitter(Jitter::Decorrelated)
                .start();
            let mut previous = BASE;
            for n in 0..12 {
                assert_eq!(none.next_delay(), Some(exp(n)));
                assert!(full.next_delay().unwrap() <= exp(n));
                let e = equal.next_delay().unwrap();
                assert!(e >= exp(n) / 2 && e <= exp(n), "{e:?} vs {:?}", exp(n));
                let d = decorrelated.next_delay().unwrap();
                assert!(d >= BASE && d <= CAP && d <= previous * 3, "{d:?}");
                previous = d;
            }
        }
    }

    #[test]
    fn full_jitter_spreads_delays() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let mut delays = Backoff::exponential(BASE, CAP).start();
            delays.next_delay();
            delays.next_delay();
            seen.insert(delays.next_delay().unwrap());
        }
        assert!(
            seen.len() > 10,
            "full jitter produced only {} distinct delays",
            seen.len()
        );
    }

    /// Issue 12: jitter could not be seeded, so tests switched it off.
    #[test]
    fn a_seeded_jitter_is_reproducible_and_still_spreads() {
        let draws = |backoff: &Backoff| -> Vec<Duration> {
            (0..5)
                .flat_map(|_| {
                    let mut delays = backoff.start();
                    (0..4).filter_map(move |_| delays.next_delay())
                })
                .collect()
        };
        for jitter in [Jitter::Full, Jitter::Equal, Jitter::Decorrelated] {
            let seeded = |seed| Backoff::exponential(BASE, CAP).jitter(jitter).seed(seed);
            let first = draws(&seeded(42));
            assert_eq!(first, draws(&seeded(42)), "{jitter:?}");
            assert_ne!(first, draws(&seeded(43)), "{jitter:?}");
            // Schedules of one seeded backoff differ from each other (jitter still spreads).
            assert_ne!(first[..4], first[4..8], "{jitter:?}");
        }
        // Clones share the generator: the sequence goes on, it does not restart.
        let backoff = Backoff::default().seed(9);
        let clone = backoff.clone();
        let (a, b) = (draws(&backoff), draws(&clone));
        assert_ne!(a, b);
        assert_eq!([a, b].concat(), {
            let fresh = Backoff::default().seed(9);
            [draws(&fresh), draws(&fresh)].concat()
        });
    }

    #[cfg(feature = "backon")]
    #[test]
    fn a_backon_schedule_plugs_in() {
        let builder = backon::ConstantBuilder::default()
            .with_delay(Duration::from_millis(300))
            .with_max_times(2);
        let mut delays = Backoff::backon(builder).start();
        assert_eq!(delays.next_delay(), Some(Duration::from_millis(300)));
        assert_eq!(delays.next_delay(), Some(Duration::from_millis(300)));
        assert_eq!(delays.next_delay(), None);
        // Each request gets a fresh schedule.
        assert_eq!(
            Backoff::backon(builder).start().next_delay(),
            Some(Duration::from_millis(300))
        );
    }

    #[test]
    fn huge_retry_counts_saturate_at_the_cap() {
        let mut delays = Backoff::exponential(Duration::from_secs(1), Duration::from_secs(30))
            .jitter(Jitter::None)
            .start();
        let last = (0..100).filter_map(|_| delays.next_delay()).last();
        assert_eq!(last, Some(Duration::from_secs(30)));
    }
}
