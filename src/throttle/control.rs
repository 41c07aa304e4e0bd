//! Operator controls of a lane's circuit breaker.

use std::sync::Arc;

use tokio::time::Instant;

use crate::breaker::{Breaker, BreakerState};
use crate::lane::Lane;

/// Operator controls of one lane's circuit breaker; see [`Throttle::breaker`](crate::Throttle::breaker).
#[derive(Clone)]
pub struct BreakerControl {
    pub(super) lane: Arc<Lane>,
}

impl std::fmt::Debug for BreakerControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreakerControl")
            .field("lane", self.lane.key())
            .finish()
    }
}

impl BreakerControl {
    fn breaker(&self) -> Option<&Breaker> {
        self.lane.breaker()
    }

    /// Opens the circuit until [`force_closed`](Self::force_closed) or [`reset`](Self::reset):
    /// every request to the lane fails at once with [`Error::CircuitOpen`](crate::Error::CircuitOpen).
    pub fn force_open(&self) {
        if let Some(breaker) = self.breaker() {
            breaker.force_open(Instant::now());
        }
    }

    /// Closes the circuit and keeps it closed whatever happens, until [`reset`](Self::reset).
    pub fn force_closed(&self) {
        if let Some(breaker) = self.breaker() {
            breaker.force_closed();
        }
    }

    /// Back to a fresh closed breaker: counts, trips and holds cleared.
    pub fn reset(&self) {
        if let Some(breaker) = self.breaker() {
            breaker.reset();
        }
    }

    /// The breaker's state now.
    pub fn state(&self) -> Option<BreakerState> {
        self.breaker().map(Breaker::state)
    }
}
