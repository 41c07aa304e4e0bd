//! What [`Breaker::admit`](super::Breaker::admit) answers: an [`Admission`] to hand back with
//! the call's outcome, or a [`Rejected`] call that fails fast.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::shared::Shared;
use super::transition::BreakerState;

/// A call refused by the breaker: fail fast, without touching the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rejected {
    /// `Open`, or `HalfOpen` when all probe slots are taken.
    pub state: BreakerState,
    /// A hint for when to try again. Open: the time left until the breaker half-opens.
    /// Half-open: the base open duration, or less if the running probe times out sooner
    /// (the probe may settle it earlier). Held open by an operator: the base open duration,
    /// as a polling interval.
    pub retry_in: Duration,
    /// Held open by an operator ([`Breaker::force_open`](super::Breaker::force_open)) rather
    /// than by failures.
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

/// Permission to make one call, from [`Breaker::admit`](super::Breaker::admit); hand it back
/// to [`Breaker::record`](super::Breaker::record) with the call's outcome.
///
/// Dropping it unrecorded records nothing; if it held a half-open probe slot, the slot is
/// released (a cancelled probe must not wedge the breaker).
#[must_use = "hand the admission back to Breaker::record with the call's outcome"]
#[non_exhaustive]
pub struct Admission {
    /// Address of the breaker's shared state: an admission recorded on another breaker is ignored.
    pub(super) breaker: usize,
    pub(super) generation: u64,
    pub(super) probe: Option<ProbeSlot>,
}

/// A held half-open probe slot. Only probes keep the breaker alive (for the release on drop),
/// so the closed fast path clones no `Arc`.
pub(super) struct ProbeSlot {
    pub(super) shared: Arc<Shared>,
    pub(super) id: u64,
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
