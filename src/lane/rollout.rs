//! A lane's part in a rollout (see [`crate::rollout`]): which side a request is on, the
//! comparison's counters, and a shadowed request's turn: what [`Lane::admit`] would have done,
//! worked out without waiting, the request counted as sent at once.
//!
//! The would-have wait comes from a shadow budget that follows the lane's limits and cooldowns
//! and keeps every booking (shadowed and enforced) where the throttle would have put it, so
//! that the queue the throttle would have kept builds up as it would have. The lane's own
//! budget counts what the server counted: a shadowed request is charged when it leaves if it
//! could have left at once, otherwise (its booking released as the real request goes) once the
//! server has accepted it; a refused one costs nothing.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::admit::try_acquire;
use super::plan::Plan;
use super::ticket::{Permits, Ticket};
use super::Lane;
use crate::assess::Assessment;
use crate::cost::Settlement;
use crate::limiter::{Blocked, Booking, Budget, Cost, Dimension};
use crate::policy::Policy;
use crate::retry::RetryBudget;
use crate::rollout::{
    Comparison, Enforcement, Foresight, Outcome, RolloutKey, RolloutStats, Side, WouldRefuse,
    BASIS_POINTS,
};

/// A lane's part in a rollout: the comparison's counters and the shadow budgets.
pub(crate) struct LaneRollout {
    comparison: Comparison,
    /// The queue the throttle would have kept for the shadowed requests.
    budget: Arc<Budget>,
    /// The retries it would have spent on them.
    retry_budget: RetryBudget,
}

impl LaneRollout {
    fn new(policy: &Policy) -> Box<LaneRollout> {
        // The longer windows are the policy's alone (nothing learns them): set once.
        let budget = Budget::new();
        for dimension in Dimension::ALL {
            let windows = policy.configured_limits(dimension).rolling_windows();
            if !windows.is_empty() {
                budget.set_windows(dimension, &windows);
            }
        }
        Box::new(LaneRollout {
            comparison: Comparison::default(),
            budget,
            retry_budget: RetryBudget::new(policy.retry.configured_budget()),
        })
    }

    /// When `cost` would have left the shadow queue, booked at `now` under the lane's current
    /// limits and cooldown; the booking stays there as if the request had waited for it.
    fn turn(
        &self,
        lane_budget: &Budget,
        cost: &Cost,
        max_wait: Option<Duration>,
        now: Instant,
    ) -> Result<Duration, Blocked> {
        self.follow(lane_budget, cost);
        match self.budget.acquire(cost, max_wait, now)? {
            Booking::Ready(_) => Ok(Duration::ZERO),
            Booking::Wait(reservation) => {
                let wait = reservation.ready_at().saturating_duration_since(now);
                let _kept_in_the_queue = reservation.commit();
                Ok(wait)
            }
        }
    }

    /// Takes on the lane's current limits (set or learned) and the cooldown that holds `cost`.
    fn follow(&self, lane_budget: &Budget, cost: &Cost) {
        let (lane_shapes, shadow_shapes) = (lane_budget.shapes(), self.budget.shapes());
        for dimension in Dimension::ALL {
            let shape = lane_shapes[dimension as usize];
            if shape != shadow_shapes[dimension as usize] {
                self.budget
                    .set_limit(dimension, shape.map(|(limit, _)| limit));
                self.budget
                    .set_strict(dimension, shape.is_some_and(|(_, strict)| strict));
            }
        }
        if let Some(until) = lane_budget.cooldown_until(cost) {
            self.budget.cool_down(None, until);
        }
    }
}

impl Lane {
    /// The side of the rollout a request is on (see [`Side::of`]); a lane whose policy shares out
    /// enforcement, or that sees a request with a rollout extension, keeps the comparison (and
    /// the would-have queue) from then on.
    #[inline]
    pub(super) fn rollout_side(
        &self,
        enforcement: Option<&Enforcement>,
        key: Option<&RolloutKey>,
    ) -> Side {
        let share = self.policy.enforced.basis_points();
        let side = Side::of(share, enforcement, key, &self.key);
        let in_rollout = share < BASIS_POINTS || enforcement.is_some() || key.is_some();
        if side == Side::Shadowed || in_rollout {
            self.rollout();
        }
        side
    }

    fn rollout(&self) -> &LaneRollout {
        self.rollout.get_or_init(|| LaneRollout::new(&self.policy))
    }

    /// The retries the throttle would have spent on shadowed requests.
    pub(super) fn shadow_retry_budget(&self) -> &RetryBudget {
        &self.rollout().retry_budget
    }

    /// An enforced request, in line since `now`, was admitted: the would-have queue books it
    /// too (at `now`, where the lane booked it), so that shadowed requests queue behind enforced
    /// ones as they would have if they had been enforced.
    #[inline]
    pub(super) fn rollout_admitted(&self, cost: &Cost, now: Instant) {
        if let Some(rollout) = self.rollout.get() {
            rollout.follow(&self.budget, cost);
            // No wait is limited: the would-have queue only records the order.
            if let Ok(Booking::Wait(reservation)) = rollout.budget.acquire(cost, None, now) {
                let _kept_in_the_queue = reservation.commit();
            }
        }
    }

    /// An attempt on `side` came back (counted when the lane keeps a comparison).
    #[inline]
    pub(super) fn rollout_attempted(&self, side: Side, rate_limited: bool) {
        if let Some(rollout) = self.rollout.get() {
            rollout.comparison.attempted(side, rate_limited);
        }
    }

    /// A request on `side`, which entered the throttle at `started`, ended with `result`
    /// (counted when the lane keeps a comparison; no clock read otherwise).
    #[inline]
    pub(super) fn rollout_ended(
        &self,
        side: Side,
        result: &reqwest_middleware::Result<reqwest::Response>,
        started: Instant,
    ) {
        if let Some(rollout) = self.rollout.get() {
            let outcome = Outcome::of(result);
            rollout.comparison.ended(side, outcome, started.elapsed());
        }
    }

    pub(super) fn rollout_stats(&self) -> Option<RolloutStats> {
        let percent = f64::from(self.policy.enforced.basis_points()) / 100.0;
        Some(self.rollout.get()?.comparison.snapshot(percent))
    }

    /// A shadowed request's turn: works out what an enforced turn would have been (the
    /// breaker's verdict, the wait for rate and cooldown, a free slot), records it, and lets the
    /// request leave at once, counted as sent and in flight like any other, holding the slots
    /// that were free.
    pub(super) fn shadow_turn<'p>(
        self: &Arc<Self>,
        plan: &'p Plan<'_>,
        global: Option<&Arc<Semaphore>>,
        now: Instant,
    ) -> Ticket<'p> {
        let rollout = self.rollout();
        let cost = &plan.cost;
        let mut foresight = Foresight::default();
        let admission = match self.breaker.as_ref().map(|breaker| breaker.admit(now)) {
            None => None,
            Some(Ok(admission)) => Some(admission),
            Some(Err(_)) => {
                foresight.refused = Some(WouldRefuse::CircuitOpen);
                None
            }
        };
        self.tick(now);
        if foresight.refused.is_none() {
            let max_wait = plan
                .deadline
                .map(|deadline| deadline.saturating_duration_since(now));
            match rollout.turn(&self.budget, cost, max_wait, now) {
                Ok(wait) => foresight.wait = Some(wait),
                Err(blocked) => foresight.refused = Some(would_refuse(&blocked)),
            }
        }
        let settlement = self.charge_if_free(cost, now);
        foresight.charged = settlement.is_some();
        let lane_permit = try_acquire(self.concurrency.as_ref());
        let global_permit = try_acquire(global);
        foresight.queued_for_slot = lane_permit.is_none() || global_permit.is_none();
        let permits = Permits::new(lane_permit.flatten(), global_permit.flatten());
        rollout.record(&foresight);
        plan.metrics.foreseen(&foresight);
        self.depart(plan, plan.cost, settlement, admission, permits, now)
    }

    /// Books `cost` in the lane's budget if it may leave now: the server sees the request now,
    /// and so do the enforced requests booking after it. Otherwise nothing is booked (the
    /// booking would only stand in the way of enforced requests).
    fn charge_if_free(&self, cost: &Cost, now: Instant) -> Option<Settlement> {
        // A lane shared through a store books there, in a round trip a shadowed request does
        // not wait for.
        if self.booker.is_shared() {
            return None;
        }
        match self.budget.acquire(cost, Some(Duration::ZERO), now) {
            Ok(Booking::Ready(commitment)) => {
                Some(Settlement::new(Arc::clone(&self.budget), commitment))
            }
            Ok(Booking::Wait(_)) | Err(_) => None,
        }
    }

    /// The server accepted a shadowed request: the lane's budget counts what the server
    /// counted, so it is charged now if it was not when the request left.
    pub(super) fn shadow_accepted(&self, cost: &Cost, charged: bool) {
        if !charged && !self.booker.is_shared() {
            charge_up_to_empty(&self.budget, cost);
        }
    }

    /// The throttle would have retried a shadowed attempt after `delay`: recorded, not done.
    pub(super) fn would_retry(&self, assessment: &Assessment, delay: Duration) {
        self.rollout().comparison.would_retry();
        tracing::debug!(target: "reqwest_throttle", attempt = ?assessment.attempt, delay_ms = delay.as_millis() as u64, "shadow: would have retried");
    }
}

impl LaneRollout {
    fn record(&self, foresight: &Foresight) {
        if let Some(wait) = foresight.wait {
            self.comparison.would_wait(wait);
            if !wait.is_zero() {
                tracing::debug!(target: "reqwest_throttle", would_wait_ms = wait.as_millis() as u64, "shadow: would have waited");
            }
        }
        if let Some(reason) = foresight.refused {
            self.comparison.would_refuse(reason);
            tracing::info!(target: "reqwest_throttle", reason = reason.as_str(), "shadow: would have refused");
        }
        if foresight.queued_for_slot {
            self.comparison.would_queue_for_slot();
            tracing::debug!(target: "reqwest_throttle", "shadow: would have queued for a concurrency slot");
        }
    }
}

/// Charges `cost` to `budget`, but never beyond empty: the server took the request, so it had
/// the units; a budget that believed them gone already is behind the server, not ahead of it,
/// and charging more would build a backlog the enforced requests would wait behind.
fn charge_up_to_empty(budget: &Budget, cost: &Cost) {
    for (dimension, units) in cost.iter() {
        if let Some(available) = budget.available(dimension).filter(|&a| a > 0) {
            // Only ever charges (a credit needs at least `u64::MAX` units).
            budget.sync(dimension, available.saturating_sub(units), u64::MAX);
        }
    }
}

fn would_refuse(blocked: &Blocked) -> WouldRefuse {
    match blocked {
        Blocked::Rate { .. } | Blocked::Window { .. } => WouldRefuse::WouldWait,
        Blocked::Cooldown { .. } => WouldRefuse::CoolingDown,
        Blocked::NeverFits { .. } => WouldRefuse::CostTooLarge,
    }
}
