//! [`Breaker`]: the state machine. Calls ask to be admitted (one atomic load while closed; the
//! slow path rejects while open, half-opens once the open period has elapsed, and hands out
//! probe slots); their recorded outcomes count toward a trip, probes close it again, and every
//! change is delivered to `tracing` and the callbacks in order.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::Duration;

use tokio::time::Instant;

use super::admission::{Admission, ProbeSlot, Rejected};
use super::config::{BreakerConfig, BreakerConfigError, Outcome};
use super::shared::{reported_state, Inner, Mode, Probe, Shared, MODE_BITS};
use super::transition::{trace_transition, BreakerState, Transition, TransitionReason, TARGET};
use super::window::RateWindow;

type Listener = Box<dyn Fn(&Transition) + Send + Sync>;

/// A circuit breaker: see the [module documentation](super) for the state machine.
///
/// `Send + Sync`; share it through an `Arc`. Callbacks are added with `&mut self`
/// ([`on_transition`](Self::on_transition)) before sharing.
#[non_exhaustive]
pub struct Breaker {
    pub(super) shared: Arc<Shared>,
    /// Sanitized: every field valid, so the state machine needs no error paths.
    pub(super) config: BreakerConfig,
    listeners: Vec<Listener>,
    /// Held while delivering transitions, so callbacks run one at a time and in order.
    emitting: Mutex<()>,
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
                .configured_failure_rate()
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
                retry_in: self.config.configured_open_for().0,
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
                    retry_in: until.map_or(self.config.configured_open_for().1, |until| {
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
        let base = self.config.configured_open_for().0;
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

    /// This breaker's identity: the address of its shared state.
    pub(super) fn id(&self) -> usize {
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
                    if self.config.configured_failure_rate().is_none()
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
            .configured_consecutive_failures()
            .is_some_and(|n| consecutive >= n)
        {
            let reason = TransitionReason::ConsecutiveFailures {
                failures: consecutive,
            };
            self.trip(inner, now, reason);
        } else if let Some((rate, totals)) = self.config.configured_failure_rate().zip(totals) {
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
    pub(super) fn effective_streak(&self, inner: &Inner, now: Instant) -> u32 {
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
        let (base, max) = self.config.configured_open_for();
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

    /// Delivers pending transitions to tracing and the callbacks, one deliverer at a time and
    /// outside the state lock. A transition queued while another thread (or a callback on this
    /// one) is delivering is picked up by that deliverer: it re-checks the queue after letting go.
    pub(super) fn deliver_transitions(&self) {
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
