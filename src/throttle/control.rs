//! Operator controls at runtime: a lane's circuit breaker, a policy's enforced share.

use std::sync::atomic::{AtomicU16, Ordering::Relaxed};
use std::sync::Arc;

use tokio::time::Instant;

use crate::breaker::{Breaker, BreakerState};
use crate::lane::Lane;
use crate::policy::PolicyError;
use crate::rollout::basis_points;

/// Operator controls of one lane's circuit breaker; see [`Throttle::breaker`](crate::Throttle::breaker).
#[derive(Clone)]
#[non_exhaustive]
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

/// The share of a policy's requests that is enforced, changed at runtime without a rebuild;
/// see [`Throttle::rollout`](crate::Throttle::rollout) and [`crate::rollout`].
#[derive(Clone)]
#[non_exhaustive]
pub struct RolloutControl {
    pub(super) basis_points: Arc<AtomicU16>,
}

impl std::fmt::Debug for RolloutControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RolloutControl")
            .field("enforced_percent", &self.enforced_percent())
            .finish()
    }
}

impl RolloutControl {
    /// Enforces the policy for `percent` of its requests (0: shadow mode, 100: all), from the
    /// next request on; a key enforced at a share stays enforced at any higher one.
    ///
    /// ```
    /// use reqwest_throttle::{Policy, Throttle};
    ///
    /// let throttle = Throttle::builder()
    ///     .host("api.example.com", Policy::new().shadow())
    ///     .build()?;
    /// let rollout = throttle.rollout("api.example.com");
    /// rollout.set_enforced_percent(30.0)?;
    /// assert_eq!(rollout.enforced_percent(), 30.0);
    /// assert!(rollout.set_enforced_percent(130.0).is_err());
    /// # Ok::<(), reqwest_throttle::PolicyError>(())
    /// ```
    pub fn set_enforced_percent(&self, percent: f64) -> Result<(), PolicyError> {
        let share = basis_points(percent).ok_or(PolicyError::EnforcePercent { percent })?;
        self.basis_points.store(share, Relaxed);
        tracing::info!(target: "reqwest_throttle", enforced_percent = percent, "enforced share changed");
        Ok(())
    }

    /// The share enforced now, in percent.
    pub fn enforced_percent(&self) -> f64 {
        f64::from(self.basis_points.load(Relaxed)) / 100.0
    }
}
