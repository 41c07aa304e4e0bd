//! A circuit breaker: stop sending to a service that is down, fail callers fast, probe gently,
//! and come back at full speed once it recovers.
//!
//! # States
//!
//! ```text
//!            trip: n consecutive failures,            open period elapsed
//!            or failure rate ≥ threshold              (next admit)
//!   Closed ──────────────────────────────▶ Open ─────────────────────▶ HalfOpen
//!     ▲                                     ▲                              │
//!     │                                     └── a probe fails or hangs ────┤
//!     └──────────────── successes_to_close probes succeed ─────────────────┘
//! ```
//!
//! - **Closed**: every call is admitted; outcomes feed the consecutive-failure count and the
//!   optional failure-rate window. [`Outcome::Ignored`] (429 throttling) feeds nothing.
//! - **Open**: every call is rejected at once with [`Rejected::retry_in`], the time left until
//!   the breaker half-opens. The open period starts at `base`, doubles on each repeated trip
//!   (a failed probe, or a trip within `healthy_after` of the last close), is capped at `max`,
//!   and is shortened by a random jitter so clients that tripped together probe apart.
//! - **HalfOpen**: at most `half_open_probes` calls are in flight at a time; `successes_to_close`
//!   successful probes close the breaker, any failed (or timed-out) probe reopens it.
//!
//! Operators can [`force_open`](Breaker::force_open) (held until released, not timed),
//! [`force_closed`](Breaker::force_closed) (admits everything and never trips, until released)
//! and [`reset`](Breaker::reset) (back to a fresh closed breaker).
//!
//! # Guarantees
//!
//! - **Pure functions of `now`**: the breaker never reads a clock (except the convenience
//!   [`Breaker::state`]); callers pass `tokio::time::Instant`s, so tests run in virtual time.
//! - **Cheap when closed**: [`Breaker::admit`] is one atomic load and no lock while closed;
//!   [`Breaker::record`] of a success takes no lock either unless failures were pending or a
//!   failure-rate window is configured.
//! - **No stale outcomes**: every state change starts a new generation, and an outcome recorded
//!   for an [`Admission`] of an older generation is ignored (a slow call admitted while closed
//!   neither closes a half-open breaker nor extends an open one).
//! - **Cancellation-safe probes**: an [`Admission`] holding a half-open probe slot releases it
//!   when dropped unrecorded, so a cancelled request cannot wedge the breaker half-open.
//! - **Observable**: every state change emits a `tracing` event (target
//!   `reqwest_throttle::breaker`, fields `from`, `to`, `reason`, `open_for`) and calls the
//!   [`on_transition`](Breaker::on_transition) callbacks, in order, outside the state lock.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tokio::time::Instant;
//! use reqwest_throttle::breaker::{Breaker, BreakerConfig, BreakerState, Outcome};
//!
//! let breaker = Breaker::new(
//!     BreakerConfig::default()
//!         .consecutive_failures(2)
//!         .open_for(Duration::from_secs(5), Duration::from_secs(60))
//!         .jitter(0.0),
//! );
//! let t0 = Instant::now();
//! for _ in 0..2 {
//!     let admission = breaker.admit(t0).expect("closed breakers admit");
//!     breaker.record(admission, Outcome::Failure, t0);
//! }
//! let rejected = breaker.admit(t0).unwrap_err();
//! assert_eq!(rejected.state, BreakerState::Open);
//! assert_eq!(rejected.retry_in, Duration::from_secs(5));
//!
//! // Five seconds later one probe goes through; its success closes the breaker.
//! let t1 = t0 + Duration::from_secs(5);
//! let probe = breaker.admit(t1).expect("the open period has elapsed");
//! assert!(probe.is_probe());
//! assert!(breaker.admit(t1).is_err(), "only one probe at a time");
//! breaker.record(probe, Outcome::Success, t1);
//! assert_eq!(breaker.snapshot(t1).state, BreakerState::Closed);
//! ```

mod config;
#[cfg(test)]
mod tests;
mod window;

pub use config::{
    BreakerConfig, BreakerConfigError, FailureRate, FailureWindow, Outcome, MAX_COUNT_WINDOW,
};

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Duration;

use tokio::time::Instant;

use window::RateWindow;

/// The `tracing` target of breaker events.
const TARGET: &str = "reqwest_throttle::breaker";

/// The state of a breaker as callers see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls flow; outcomes are counted.
    Closed,
    /// Calls are rejected until the open period elapses (or an operator releases it).
    Open,
    /// A limited number of probe calls test whether the service has recovered.
    HalfOpen,
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        })
    }
}

/// Why a breaker changed state.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum TransitionReason {
    /// Closed → open: this many failures in a row.
    ConsecutiveFailures {
        /// Failures in a row when it tripped.
        failures: u32,
    },
    /// Closed → open: the failure rate over the window reached the threshold.
    FailureRate {
        /// Failed calls in the window.
        failures: u32,
        /// All counted calls in the window.
        calls: u32,
    },
    /// Open → half-open: the open period elapsed.
    OpenElapsed,
    /// Half-open → open: a probe failed.
    ProbeFailed,
    /// Half-open → open: a probe was neither recorded nor dropped within the probe timeout.
    ProbeTimedOut,
    /// Half-open → closed: enough probes succeeded.
    ProbesSucceeded {
        /// Successful probes.
        successes: u32,
    },
    /// An operator called [`Breaker::force_open`].
    ForcedOpen,
    /// An operator called [`Breaker::force_closed`].
    ForcedClosed,
    /// An operator called [`Breaker::reset`].
    Reset,
}

impl fmt::Display for TransitionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransitionReason::ConsecutiveFailures { failures } => {
                write!(f, "{failures} consecutive failures")
            }
            TransitionReason::FailureRate { failures, calls } => {
                write!(f, "{failures} of the last {calls} calls failed")
            }
            TransitionReason::OpenElapsed => f.write_str("open period elapsed"),
            TransitionReason::ProbeFailed => f.write_str("probe failed"),
            TransitionReason::ProbeTimedOut => f.write_str("probe timed out"),
            TransitionReason::ProbesSucceeded { successes } => {
                write!(f, "{successes} probes succeeded")
            }
            TransitionReason::ForcedOpen => f.write_str("forced open by operator"),
            TransitionReason::ForcedClosed => f.write_str("forced closed by operator"),
            TransitionReason::Reset => f.write_str("reset by operator"),
        }
    }
}

/// One state change, as given to [`Breaker::on_transition`] callbacks.
///
/// Forced states report as their plain counterparts (`Open`, `Closed`), so a change of mode
/// only (timed open → held open) is a transition from `Open` to `Open`; `reason` tells them apart.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    /// The state left.
    pub from: BreakerState,
    /// The state entered.
    pub to: BreakerState,
    /// Why.
    pub reason: TransitionReason,
    /// For a timed open: how long it stays open (jitter applied). `None` otherwise.
    pub open_for: Option<Duration>,
}

/// A call refused by the breaker: fail fast, without touching the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// `Open`, or `HalfOpen` when all probe slots are taken.
    pub state: BreakerState,
    /// A hint for when to try again. Open: the time left until the breaker half-opens.
    /// Half-open: the base open duration, or less if the running probe times out sooner
    /// (the probe may settle it earlier). Held open by an operator: the base open duration,
    /// as a polling interval.
    pub retry_in: Duration,
    /// Held open by an operator ([`Breaker::force_open`]) rather than by failures.
    pub forced: bool,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.forced, self.state) {
            (true, _) => write!(
                f,
                "circuit breaker is held open by an operator; check again in {:?}",
                self.retry_in
            ),
            (false, BreakerState::HalfOpen) => write!(
                f,
                "circuit breaker is half-open and its probe slots are taken; retry in {:?}",
                self.retry_in
            ),
            (false, _) => write!(
                f,
                "circuit breaker is {}; retry in {:?}",
                self.state, self.retry_in
            ),
        }
    }
}

impl std::error::Error for Rejected {}

/// Permission to make one call, from [`Breaker::admit`]; hand it back to [`Breaker::record`]
/// with the call's outcome.
///
/// Dropping it unrecorded records nothing; if it held a half-open probe slot, the slot is
/// released (a cancelled probe must not wedge the breaker).
#[must_use = "hand the admission back to Breaker::record with the call's outcome"]
pub struct Admission {
    /// Address of the breaker's shared state: an admission recorded on another breaker is ignored.
    breaker: usize,
    generation: u64,
    probe: Option<ProbeSlot>,
}

/// A held half-open probe slot. Only probes keep the breaker alive (for the release on drop),
/// so the closed fast path clones no `Arc`.
struct ProbeSlot {
    shared: Arc<Shared>,
    id: u64,
}

impl Admission {
    /// Whether this call is a half-open probe (its outcome decides whether the breaker closes).
    pub fn is_probe(&self) -> bool {
        self.probe.is_some()
    }
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("generation", &self.generation)
            .field("probe", &self.probe.as_ref().map(|p| p.id))
            .finish()
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(probe) = self.probe.take() {
            probe.shared.release_probe(self.generation, probe.id);
        }
    }
}

/// Everything observable about a breaker at one instant, from [`Breaker::snapshot`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct BreakerSnapshot {
    /// The state as of `now`: an open breaker whose period has elapsed reports `HalfOpen`
    /// (the next admit will probe).
    pub state: BreakerState,
    /// Held by an operator ([`Breaker::force_open`] / [`Breaker::force_closed`]).
    pub forced: bool,
    /// Failures in a row since the last success (closed only).
    pub consecutive_failures: u32,
    /// Calls in the failure-rate window (0 without one).
    pub window_calls: u32,
    /// Failed calls in the failure-rate window (0 without one).
    pub window_failures: u32,
    /// Trips since the breaker was created (or reset).
    pub trips: u64,
    /// Repeated trips driving the exponential open duration; 0 once healthy for `healthy_after`.
    pub trip_streak: u32,
    /// Calls rejected since the breaker was created (or reset).
    pub rejected: u64,
    /// Half-open probes in flight.
    pub probes_in_flight: u32,
    /// Timed open: the time left until half-open. `None` in any other state.
    pub retry_in: Option<Duration>,
    /// When the breaker last opened, while it is open.
    pub open_since: Option<Instant>,
}

type Listener = Box<dyn Fn(&Transition) + Send + Sync>;

/// A circuit breaker: see the [module documentation](self) for the state machine.
///
/// `Send + Sync`; share it through an `Arc`. Callbacks are added with `&mut self`
/// ([`on_transition`](Self::on_transition)) before sharing.
pub struct Breaker {
    shared: Arc<Shared>,
    /// Sanitized: every field valid, so the state machine needs no error paths.
    config: BreakerConfig,
    listeners: Vec<Listener>,
    /// Held while delivering transitions, so callbacks run one at a time and in order.
    emitting: Mutex<()>,
}

/// State shared with outstanding probe admissions.
struct Shared {
    /// `generation << MODE_BITS | mode`: the closed fast path reads this one word. Written only
    /// under the `inner` lock.
    packed: AtomicU64,
    /// Failures in a row; written under the lock, read without it by the success fast path.
    consecutive_failures: AtomicU32,
    rejected: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
    ForcedOpen = 3,
    ForcedClosed = 4,
}

const MODE_BITS: u32 = 3;
const MODE_MASK: u64 = (1 << MODE_BITS) - 1;

impl Mode {
    fn from_packed(packed: u64) -> Mode {
        match packed & MODE_MASK {
            0 => Mode::Closed,
            1 => Mode::Open,
            2 => Mode::HalfOpen,
            3 => Mode::ForcedOpen,
            _ => Mode::ForcedClosed,
        }
    }

    fn state(self) -> BreakerState {
        match self {
            Mode::Closed | Mode::ForcedClosed => BreakerState::Closed,
            Mode::Open | Mode::ForcedOpen => BreakerState::Open,
            Mode::HalfOpen => BreakerState::HalfOpen,
        }
    }

    fn is_forced(self) -> bool {
        matches!(self, Mode::ForcedOpen | Mode::ForcedClosed)
    }
}

struct Inner {
    mode: Mode,
    generation: u64,
    window: Option<RateWindow>,
    /// Timed open: when it half-opens. `None` if `now + open_for` overflowed (stays open).
    open_until: Option<Instant>,
    open_since: Option<Instant>,
    /// When the breaker last closed from half-open: the start of the healthy period.
    closed_since: Option<Instant>,
    trip_streak: u32,
    trips: u64,
    probes: Vec<Probe>,
    next_probe_id: u64,
    probe_successes: u32,
    /// Transitions not yet delivered to tracing and callbacks, in order.
    pending: VecDeque<Transition>,
}

struct Probe {
    id: u64,
    started: Instant,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The state is updated without panicking paths, so a poisoned lock (a panic elsewhere
        // while held) still guards consistent state.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn release_probe(&self, generation: u64, id: u64) {
        let mut inner = self.lock();
        if inner.generation == generation && inner.mode == Mode::HalfOpen {
            inner.probes.retain(|p| p.id != id);
        }
    }

    /// Enters `mode` as a new generation, invalidating every outstanding admission.
    fn set_mode(&self, inner: &mut Inner, mode: Mode) {
        inner.mode = mode;
        inner.generation = inner.generation.wrapping_add(1) & (u64::MAX >> MODE_BITS);
        inner.probes.clear();
        inner.probe_successes = 0;
        self.packed.store(
            (inner.generation << MODE_BITS) | mode as u64,
            Ordering::Release,
        );
    }

    fn clear_counts(&self, inner: &mut Inner) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        if let Some(window) = &mut inner.window {
            window.clear();
        }
    }
}

impl Breaker {
    /// A closed breaker. An invalid `config` does not panic: each invalid setting falls back
    /// to its default (or the nearest valid value) and a warning is logged; use
    /// [`try_new`](Self::try_new) to refuse it instead.
    pub fn new(config: BreakerConfig) -> Breaker {
        if let Err(error) = config.validate() {
            tracing::warn!(target: TARGET, %error, "invalid breaker config: invalid settings fall back to their defaults");
        }
        Breaker::build(config.sanitized())
    }

    /// A closed breaker, or the first problem [`BreakerConfig::validate`] finds.
    pub fn try_new(config: BreakerConfig) -> Result<Breaker, BreakerConfigError> {
        config.validate()?;
        Ok(Breaker::build(config))
    }

    fn build(config: BreakerConfig) -> Breaker {
        let inner = Inner {
            mode: Mode::Closed,
            generation: 0,
            window: config
                .failure_rate_condition()
                .map(|rate| RateWindow::new(rate.window)),
            open_until: None,
            open_since: None,
            closed_since: None,
            trip_streak: 0,
            trips: 0,
            probes: Vec::new(),
            next_probe_id: 0,
            probe_successes: 0,
            pending: VecDeque::new(),
        };
        Breaker {
            shared: Arc::new(Shared {
                packed: AtomicU64::new(Mode::Closed as u64),
                consecutive_failures: AtomicU32::new(0),
                rejected: AtomicU64::new(0),
                inner: Mutex::new(inner),
            }),
            config,
            listeners: Vec::new(),
            emitting: Mutex::new(()),
        }
    }

    /// The (sanitized) configuration, e.g. for [`BreakerConfig::classify_status`].
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// Adds a callback run on every state change, in order, after the state lock is released
    /// (so it may call back into the breaker). It runs on the thread that caused the change:
    /// keep it short, hand slow work to a channel. A panicking callback propagates to that caller.
    pub fn on_transition(&mut self, f: impl Fn(&Transition) + Send + Sync + 'static) -> &mut Self {
        self.listeners.push(Box::new(f));
        self
    }

    /// Asks to make one call at `now`.
    ///
    /// Closed: always admitted, with one atomic load and no lock. Open: rejected with the time
    /// left, until the open period has elapsed; then the breaker half-opens and this call is
    /// the first probe. Half-open: admitted as a probe while fewer than `half_open_probes` are
    /// in flight, rejected otherwise.
    pub fn admit(&self, now: Instant) -> Result<Admission, Rejected> {
        let packed = self.shared.packed.load(Ordering::Acquire);
        match Mode::from_packed(packed) {
            Mode::Closed | Mode::ForcedClosed => Ok(Admission {
                breaker: self.id(),
                generation: packed >> MODE_BITS,
                probe: None,
            }),
            _ => self.admit_slow(now),
        }
    }

    #[cold]
    fn admit_slow(&self, now: Instant) -> Result<Admission, Rejected> {
        let mut inner = self.shared.lock();
        let result = match inner.mode {
            Mode::Closed | Mode::ForcedClosed => Ok(self.admission(&inner, None)),
            Mode::ForcedOpen => Err(Rejected {
                state: BreakerState::Open,
                retry_in: self.config.open_durations().0,
                forced: true,
            }),
            Mode::Open => match inner.open_until {
                Some(until) if now >= until => {
                    self.shared.set_mode(&mut inner, Mode::HalfOpen);
                    inner.open_until = None;
                    inner.open_since = None;
                    inner.pending.push_back(Transition {
                        from: BreakerState::Open,
                        to: BreakerState::HalfOpen,
                        reason: TransitionReason::OpenElapsed,
                        open_for: None,
                    });
                    self.take_probe(&mut inner, now)
                }
                until => Err(Rejected {
                    state: BreakerState::Open,
                    retry_in: until.map_or(self.config.open_durations().1, |until| {
                        until.saturating_duration_since(now)
                    }),
                    forced: false,
                }),
            },
            Mode::HalfOpen => self.take_probe(&mut inner, now),
        };
        let deliver = !inner.pending.is_empty();
        drop(inner);
        if result.is_err() {
            self.shared.rejected.fetch_add(1, Ordering::Relaxed);
        }
        if deliver {
            self.deliver_transitions();
        }
        result
    }

    fn take_probe(&self, inner: &mut Inner, now: Instant) -> Result<Admission, Rejected> {
        let oldest = inner.probes.iter().map(|p| p.started).min();
        let timeout_at = oldest
            .zip(self.config.probe_deadline())
            .map(|(started, timeout)| started.checked_add(timeout));
        if let Some(Some(timeout_at)) = timeout_at {
            if now >= timeout_at {
                let open_for = self.trip(inner, now, TransitionReason::ProbeTimedOut);
                return Err(Rejected {
                    state: BreakerState::Open,
                    retry_in: open_for,
                    forced: false,
                });
            }
        }
        let limit = usize::try_from(self.config.probe_limit()).unwrap_or(usize::MAX);
        if inner.probes.len() < limit {
            let id = inner.next_probe_id;
            inner.next_probe_id = id.wrapping_add(1);
            inner.probes.push(Probe { id, started: now });
            let slot = ProbeSlot {
                shared: Arc::clone(&self.shared),
                id,
            };
            return Ok(self.admission(inner, Some(slot)));
        }
        let base = self.config.open_durations().0;
        let retry_in = match timeout_at {
            Some(Some(at)) => base.min(at.saturating_duration_since(now)),
            _ => base,
        };
        Err(Rejected {
            state: BreakerState::HalfOpen,
            retry_in,
            forced: false,
        })
    }

    fn admission(&self, inner: &Inner, probe: Option<ProbeSlot>) -> Admission {
        Admission {
            breaker: self.id(),
            generation: inner.generation,
            probe,
        }
    }

    fn id(&self) -> usize {
        Arc::as_ptr(&self.shared) as usize
    }

    /// Records the outcome of an admitted call finished at `now`.
    ///
    /// Closed: a failure counts toward a trip, a success resets the consecutive count, both
    /// feed the failure-rate window. Half-open probe: a success counts toward closing, a failure
    /// reopens. [`Outcome::Ignored`] counts nowhere (and frees a probe slot). An admission from
    /// before the last state change (or from another breaker) changes nothing.
    pub fn record(&self, mut admission: Admission, outcome: Outcome, now: Instant) {
        if admission.breaker != self.id() {
            return; // its drop releases a probe slot on the breaker it came from
        }
        let probe = admission.probe.take();
        if probe.is_none() {
            match outcome {
                Outcome::Ignored => return,
                // Success with nothing to reset: the common case stays lock-free.
                Outcome::Success
                    if self.config.failure_rate_condition().is_none()
                        && self.shared.consecutive_failures.load(Ordering::Relaxed) == 0 =>
                {
                    return
                }
                _ => {}
            }
        }
        let mut inner = self.shared.lock();
        if inner.generation != admission.generation {
            return;
        }
        match (inner.mode, probe) {
            (Mode::HalfOpen, Some(probe)) => {
                let before = inner.probes.len();
                inner.probes.retain(|p| p.id != probe.id);
                if inner.probes.len() == before {
                    return;
                }
                match outcome {
                    Outcome::Success => {
                        inner.probe_successes = inner.probe_successes.saturating_add(1);
                        if inner.probe_successes >= self.config.close_after() {
                            self.close(&mut inner, now);
                        }
                    }
                    Outcome::Failure => {
                        self.trip(&mut inner, now, TransitionReason::ProbeFailed);
                    }
                    Outcome::Ignored => {}
                }
            }
            (Mode::Closed | Mode::ForcedClosed, None) => self.count(&mut inner, outcome, now),
            _ => {}
        }
        let deliver = !inner.pending.is_empty();
        drop(inner);
        if deliver {
            self.deliver_transitions();
        }
    }

    /// Counts a closed-state outcome and trips if a condition is met.
    fn count(&self, inner: &mut Inner, outcome: Outcome, now: Instant) {
        let failed = match outcome {
            Outcome::Success => false,
            Outcome::Failure => true,
            Outcome::Ignored => return,
        };
        let consecutive = if failed {
            self.shared
                .consecutive_failures
                .load(Ordering::Relaxed)
                .saturating_add(1)
        } else {
            0
        };
        self.shared
            .consecutive_failures
            .store(consecutive, Ordering::Relaxed);
        let totals = inner.window.as_mut().map(|window| {
            window.record(failed, now);
            window.totals(now)
        });
        if inner.mode == Mode::ForcedClosed {
            return;
        }
        if self
            .config
            .consecutive_failure_threshold()
            .is_some_and(|n| consecutive >= n)
        {
            let reason = TransitionReason::ConsecutiveFailures {
                failures: consecutive,
            };
            self.trip(inner, now, reason);
        } else if let Some((rate, totals)) = self.config.failure_rate_condition().zip(totals) {
            let reached = f64::from(totals.failures) >= rate.threshold * f64::from(totals.calls);
            if totals.calls >= rate.min_calls && reached {
                let reason = TransitionReason::FailureRate {
                    failures: totals.failures,
                    calls: totals.calls,
                };
                self.trip(inner, now, reason);
            }
        }
    }

    /// Opens the breaker for the next (exponentially longer) period; returns the period.
    fn trip(&self, inner: &mut Inner, now: Instant, reason: TransitionReason) -> Duration {
        let from = inner.mode.state();
        inner.trip_streak = self.effective_streak(inner, now).saturating_add(1);
        let open_for = self.open_duration(inner.trip_streak);
        self.shared.set_mode(inner, Mode::Open);
        self.shared.clear_counts(inner);
        inner.open_until = now.checked_add(open_for);
        inner.open_since = Some(now);
        inner.trips = inner.trips.saturating_add(1);
        inner.pending.push_back(Transition {
            from,
            to: BreakerState::Open,
            reason,
            open_for: Some(open_for),
        });
        open_for
    }

    fn close(&self, inner: &mut Inner, now: Instant) {
        let successes = inner.probe_successes;
        self.shared.set_mode(inner, Mode::Closed);
        self.shared.clear_counts(inner);
        inner.closed_since = Some(now);
        inner.pending.push_back(Transition {
            from: BreakerState::HalfOpen,
            to: BreakerState::Closed,
            reason: TransitionReason::ProbesSucceeded { successes },
            open_for: None,
        });
    }

    /// The trip streak, forgetting past trips once closed and healthy for `healthy_after`.
    fn effective_streak(&self, inner: &Inner, now: Instant) -> u32 {
        let healthy = inner.mode == Mode::Closed
            && inner.closed_since.is_some_and(|since| {
                now.saturating_duration_since(since) >= self.config.healthy_period()
            });
        if healthy {
            0
        } else {
            inner.trip_streak
        }
    }

    /// `base × 2^(streak-1)`, capped at `max`, shortened by up to `jitter` of itself.
    fn open_duration(&self, streak: u32) -> Duration {
        let (base, max) = self.config.open_durations();
        let nominal = 2u32
            .checked_pow(streak.saturating_sub(1))
            .and_then(|factor| base.checked_mul(factor))
            .map_or(max, |d| d.min(max));
        let jitter = self.config.jitter_fraction();
        if jitter <= 0.0 {
            return nominal;
        }
        let cut = jitter * fastrand::f64();
        Duration::try_from_secs_f64(nominal.as_secs_f64() * (1.0 - cut))
            .map_or(nominal, |d| d.min(nominal))
    }

    /// The state now (reads `tokio::time::Instant::now()`, virtual under a paused test clock).
    /// An open breaker whose period has elapsed reports `HalfOpen`: the next admit will probe.
    /// See [`state_at`](Self::state_at) for the pure form.
    pub fn state(&self) -> BreakerState {
        self.state_at(Instant::now())
    }

    /// The state as of `now`; like [`state`](Self::state) without reading the clock.
    pub fn state_at(&self, now: Instant) -> BreakerState {
        let mode = Mode::from_packed(self.shared.packed.load(Ordering::Acquire));
        if mode != Mode::Open {
            return mode.state();
        }
        reported_state(&self.shared.lock(), now)
    }

    /// Opens the breaker and holds it open (not timed) until [`force_closed`](Self::force_closed)
    /// or [`reset`](Self::reset). Does not count as a trip.
    pub fn force_open(&self, now: Instant) {
        self.operate(|inner| {
            if inner.mode == Mode::ForcedOpen {
                return None;
            }
            let from = inner.mode.state();
            self.shared.set_mode(inner, Mode::ForcedOpen);
            inner.open_until = None;
            inner.open_since = Some(now);
            Some((from, BreakerState::Open, TransitionReason::ForcedOpen))
        });
    }

    /// Closes the breaker and holds it closed: every call is admitted and it never trips
    /// (outcomes are still counted, for observation) until [`force_open`](Self::force_open)
    /// or [`reset`](Self::reset).
    pub fn force_closed(&self) {
        self.operate(|inner| {
            if inner.mode == Mode::ForcedClosed {
                return None;
            }
            let from = inner.mode.state();
            self.shared.set_mode(inner, Mode::ForcedClosed);
            self.shared.clear_counts(inner);
            inner.open_until = None;
            inner.open_since = None;
            Some((from, BreakerState::Closed, TransitionReason::ForcedClosed))
        });
    }

    /// Back to a fresh closed breaker: counts, trip streak and statistics cleared, operator
    /// holds released, outstanding admissions ignored.
    pub fn reset(&self) {
        self.operate(|inner| {
            let from = inner.mode;
            self.shared.set_mode(inner, Mode::Closed);
            self.shared.clear_counts(inner);
            self.shared.rejected.store(0, Ordering::Relaxed);
            inner.open_until = None;
            inner.open_since = None;
            inner.closed_since = None;
            inner.trip_streak = 0;
            inner.trips = 0;
            (from != Mode::Closed).then_some((
                from.state(),
                BreakerState::Closed,
                TransitionReason::Reset,
            ))
        });
    }

    fn operate(
        &self,
        change: impl FnOnce(&mut Inner) -> Option<(BreakerState, BreakerState, TransitionReason)>,
    ) {
        let mut inner = self.shared.lock();
        if let Some((from, to, reason)) = change(&mut inner) {
            inner.pending.push_back(Transition {
                from,
                to,
                reason,
                open_for: None,
            });
        }
        let deliver = !inner.pending.is_empty();
        drop(inner);
        if deliver {
            self.deliver_transitions();
        }
    }

    /// Everything observable as of `now` (for stats and dashboards).
    pub fn snapshot(&self, now: Instant) -> BreakerSnapshot {
        let inner = self.shared.lock();
        let totals = inner
            .window
            .as_ref()
            .map(|w| w.totals(now))
            .unwrap_or_default();
        let state = reported_state(&inner, now);
        BreakerSnapshot {
            state,
            forced: inner.mode.is_forced(),
            consecutive_failures: self.shared.consecutive_failures.load(Ordering::Relaxed),
            window_calls: totals.calls,
            window_failures: totals.failures,
            trips: inner.trips,
            trip_streak: self.effective_streak(&inner, now),
            rejected: self.shared.rejected.load(Ordering::Relaxed),
            probes_in_flight: u32::try_from(inner.probes.len()).unwrap_or(u32::MAX),
            retry_in: match inner.mode {
                Mode::Open => inner
                    .open_until
                    .map(|until| until.saturating_duration_since(now)),
                _ => None,
            },
            open_since: inner.open_since,
        }
    }

    /// Delivers pending transitions to tracing and the callbacks, one deliverer at a time and
    /// outside the state lock. A transition queued while another thread (or a callback on this
    /// one) is delivering is picked up by that deliverer: it re-checks the queue after letting go.
    fn deliver_transitions(&self) {
        loop {
            let guard = match self.emitting.try_lock() {
                Ok(guard) => guard,
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => return,
            };
            loop {
                let next = self.shared.lock().pending.pop_front();
                let Some(transition) = next else { break };
                trace_transition(&transition);
                for listener in &self.listeners {
                    listener(&transition);
                }
            }
            drop(guard);
            if self.shared.lock().pending.is_empty() {
                return;
            }
        }
    }
}

fn reported_state(inner: &Inner, now: Instant) -> BreakerState {
    match inner.mode {
        Mode::Open if inner.open_until.is_some_and(|until| now >= until) => BreakerState::HalfOpen,
        mode => mode.state(),
    }
}

fn trace_transition(t: &Transition) {
    match t.to {
        BreakerState::Open => tracing::warn!(
            target: TARGET,
            from = %t.from, to = %t.to, reason = %t.reason, open_for = ?t.open_for,
            "circuit breaker opened"
        ),
        BreakerState::HalfOpen => tracing::info!(
            target: TARGET,
            from = %t.from, to = %t.to, reason = %t.reason,
            "circuit breaker half-open: probing"
        ),
        BreakerState::Closed => tracing::info!(
            target: TARGET,
            from = %t.from, to = %t.to, reason = %t.reason,
            "circuit breaker closed"
        ),
    }
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = Mode::from_packed(self.shared.packed.load(Ordering::Acquire));
        f.debug_struct("Breaker")
            .field("mode", &mode)
            .field("config", &self.config)
            .field("listeners", &self.listeners.len())
            .finish_non_exhaustive()
    }
}
