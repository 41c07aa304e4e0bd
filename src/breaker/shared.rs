//! The breaker's state, shared with the probe admissions it hands out: one packed atomic word
//! (generation and mode) that the closed fast path reads without a lock, two counters, and the
//! rest under a mutex.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::time::Instant;

use super::transition::{BreakerState, Transition};
use super::window::RateWindow;

/// State shared with outstanding probe admissions.
pub(super) struct Shared {
    /// `generation << MODE_BITS | mode`: the closed fast path reads this one word. Written only
    /// under the `inner` lock.
    pub(super) packed: AtomicU64,
    /// Failures in a row; written under the lock, read without it by the success fast path.
    pub(super) consecutive_failures: AtomicU32,
    pub(super) rejected: AtomicU64,
    pub(super) inner: Mutex<Inner>,
}

/// The breaker's state, and whether an operator holds it there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
    ForcedOpen = 3,
    ForcedClosed = 4,
}

/// Low bits of the packed word that hold the mode; the generation is above them.
pub(super) const MODE_BITS: u32 = 3;
const MODE_MASK: u64 = (1 << MODE_BITS) - 1;

impl Mode {
    pub(super) fn from_packed(packed: u64) -> Mode {
        match packed & MODE_MASK {
            0 => Mode::Closed,
            1 => Mode::Open,
            2 => Mode::HalfOpen,
            3 => Mode::ForcedOpen,
            _ => Mode::ForcedClosed,
        }
    }

    pub(super) fn state(self) -> BreakerState {
        match self {
            Mode::Closed | Mode::ForcedClosed => BreakerState::Closed,
            Mode::Open | Mode::ForcedOpen => BreakerState::Open,
            Mode::HalfOpen => BreakerState::HalfOpen,
        }
    }

    pub(super) fn is_forced(self) -> bool {
        matches!(self, Mode::ForcedOpen | Mode::ForcedClosed)
    }
}

/// Everything but the packed word and the counters read without the lock.
pub(super) struct Inner {
    pub(super) mode: Mode,
    pub(super) generation: u64,
    pub(super) window: Option<RateWindow>,
    /// Timed open: when it half-opens. `None` if `now + open_for` overflowed (stays open).
    pub(super) open_until: Option<Instant>,
    pub(super) open_since: Option<Instant>,
    /// When the breaker last closed from half-open: the start of the healthy period.
    pub(super) closed_since: Option<Instant>,
    pub(super) trip_streak: u32,
    pub(super) trips: u64,
    pub(super) probes: Vec<Probe>,
    pub(super) next_probe_id: u64,
    pub(super) probe_successes: u32,
    /// Transitions not yet delivered to tracing and callbacks, in order.
    pub(super) pending: VecDeque<Transition>,
}

/// A half-open probe in flight.
pub(super) struct Probe {
    pub(super) id: u64,
    pub(super) started: Instant,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        // The state is updated without panicking paths, so a poisoned lock (a panic elsewhere
        // while held) still guards consistent state.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Frees probe slot `id`, if it belongs to the current half-open generation.
    pub(super) fn release_probe(&self, generation: u64, id: u64) {
        let mut inner = self.lock();
        if inner.generation == generation && inner.mode == Mode::HalfOpen {
            inner.probes.retain(|p| p.id != id);
        }
    }

    /// Enters `mode` as a new generation, invalidating every outstanding admission.
    pub(super) fn set_mode(&self, inner: &mut Inner, mode: Mode) {
        inner.mode = mode;
        inner.generation = inner.generation.wrapping_add(1) & (u64::MAX >> MODE_BITS);
        inner.probes.clear();
        inner.probe_successes = 0;
        self.packed.store(
            (inner.generation << MODE_BITS) | mode as u64,
            Ordering::Release,
        );
    }

    /// Forgets the closed-state counts: failures in a row and the failure-rate window.
    pub(super) fn clear_counts(&self, inner: &mut Inner) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        if let Some(window) = &mut inner.window {
            window.clear();
        }
    }
}

/// The state as of `now`: an open breaker whose period has elapsed reports `HalfOpen` (the next
/// admit will probe).
pub(super) fn reported_state(inner: &Inner, now: Instant) -> BreakerState {
    match inner.mode {
        Mode::Open if inner.open_until.is_some_and(|until| now >= until) => BreakerState::HalfOpen,
        mode => mode.state(),
    }
}
