//! A request's plan: what it costs, how long it may wait, whether it is enforced or shadowed,
//! and its retries; priced once by [`Lane::cost_of`] before the first attempt.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use http::Extensions;
use reqwest::{Request, Response};
use tokio::time::Instant;

use super::Lane;
use crate::assess::Assessment;
use crate::error::Error;
use crate::limiter::Cost;
use crate::outcome::Outcome;
use crate::request::{MaxWait, RequestCost};
use crate::retry::{Attempt, Idempotency, RetryDecision, RetryState, StopReason};
use crate::rollout::Side;
use crate::telemetry::RequestMetrics;

/// One request's fixed facts and its retries so far.
pub(crate) struct Plan<'l> {
    pub(super) lane: &'l Lane,
    /// What the request costs as priced on entry: the estimate corrected by what the server
    /// was learned to charge, or the cost given. An enforced attempt is priced again when it
    /// books (see `Lane::admit`).
    pub(super) cost: Cost,
    /// The cost model's estimate, before any correction; zero when the cost was not estimated
    /// (given by the caller, or no cost model).
    pub(super) estimate: Cost,
    pub(super) deadline: Option<Instant>,
    /// Enforced (waits for its turn, retried) or shadowed (sent at once and once, what the
    /// throttle would have done recorded).
    pub(super) side: Side,
    /// When the request entered the throttle.
    pub(super) entered: Instant,
    pub(super) retry: RetryState<'l>,
    pub(super) metrics: RequestMetrics,
    /// What the request's attempts so far add up to, for its [`Outcome`].
    waited: Duration,
    retry_delays: Duration,
    last_retry: Option<Attempt>,
}

/// What comes after an attempt.
pub(crate) enum Then {
    /// Hand the outcome to the caller, for this reason.
    Return(StopReason),
    /// Sleep this long, then another attempt.
    Retry(Duration),
}

impl Lane {
    /// Prices `request`, entering the throttle at `now`: its cost (a [`RequestCost`] extension,
    /// else the policy's cost model's estimate corrected by what the server charges, else one
    /// request), its deadline (a [`MaxWait`] extension, else the policy's), its side of the
    /// rollout, and a fresh retry state.
    pub fn cost_of(&self, request: &Request, extensions: &Extensions, now: Instant) -> Plan<'_> {
        let (cost, estimate) = match (extensions.get::<RequestCost>(), self.cost_model()) {
            (Some(cost), _) => (cost.0, Cost::zero()),
            (None, Some(model)) => {
                let estimate = model.estimate(request);
                (self.budget.corrected(estimate), estimate)
            }
            (None, None) => (Cost::default(), Cost::zero()),
        };
        let max_wait = extensions
            .get::<MaxWait>()
            .map(|max_wait| max_wait.0)
            .or(self.policy.max_wait);
        let deadline = max_wait.and_then(|wait| now.checked_add(wait));
        let side = self.rollout_side(extensions.get(), extensions.get());
        let retry_budget = match side {
            Side::Enforced => &self.retry_budget,
            Side::Shadowed => self.shadow_retry_budget(),
        };
        let idempotency = Idempotency::of(request.method(), request.headers());
        Plan {
            lane: self,
            cost,
            estimate,
            deadline,
            side,
            entered: now,
            retry: RetryState::new(&self.policy.retry, retry_budget, idempotency, deadline, now),
            metrics: RequestMetrics::for_lane(&self.key),
            waited: Duration::ZERO,
            retry_delays: Duration::ZERO,
            last_retry: None,
        }
    }
}

impl Plan<'_> {
    /// When the request entered the throttle (its first attempt asked for its turn then).
    pub fn entered(&self) -> Instant {
        self.entered
    }

    /// The attempt that just ended waited `waited` for its turn.
    pub fn waited(&mut self, waited: Duration) {
        self.waited = self.waited.saturating_add(waited);
    }

    /// Which attempt comes next, counting from 1.
    pub fn attempt(&self) -> u32 {
        self.retry.attempt()
    }

    /// Whether another attempt could follow the one about to start (its request is worth
    /// cloning first).
    pub fn may_retry(&self) -> bool {
        self.retry.may_retry()
    }

    /// Retry or return, after an attempt assessed `assessment`; `cloned` says whether a copy of
    /// the request is at hand. A shadowed request is never retried: a retry the throttle would
    /// have made is recorded.
    pub fn decide(&mut self, assessment: &Assessment, cloned: bool) -> Then {
        match self
            .retry
            .decide(assessment.answered(), cloned, Instant::now())
        {
            RetryDecision::Stop(reason) => Then::Return(reason),
            RetryDecision::Wait(delay) if self.side == Side::Shadowed => {
                self.lane.would_retry(assessment, delay);
                self.metrics.would_retry();
                Then::Return(StopReason::Final)
            }
            RetryDecision::Wait(delay) => {
                self.lane.counters.retries.fetch_add(1, Relaxed);
                self.last_retry = Some(assessment.attempt);
                self.retry_delays = self.retry_delays.saturating_add(delay);
                tracing::debug!(target: "reqwest_throttle", attempt = ?assessment.attempt, delay_ms = delay.as_millis() as u64, "retrying");
                Then::Retry(delay)
            }
        }
    }

    /// Hands the caller the final outcome, counting and logging why it is final; a response
    /// carries its [`Outcome`].
    pub fn stop(
        &self,
        reason: StopReason,
        result: reqwest_middleware::Result<Response>,
    ) -> reqwest_middleware::Result<Response> {
        let lane = self.lane;
        match reason {
            StopReason::Final => {}
            StopReason::BudgetExhausted => {
                lane.counters.retry_budget_exhausted.fetch_add(1, Relaxed);
                tracing::warn!(target: "reqwest_throttle", "retry budget exhausted: returning the failure instead of retrying");
            }
            StopReason::RetryAfterTooLong(retry_after) => {
                let max = lane.policy.retry.configured_max_retry_after();
                tracing::warn!(target: "reqwest_throttle", retry_after_s = retry_after.as_secs(), max_s = max.as_secs(), "server asked for a pause longer than max_retry_after");
                if lane.policy.retry.fails_on_long_retry_after() {
                    return Err(Error::RetryAfterTooLong {
                        lane: lane.key.clone(),
                        retry_after,
                        max,
                    }
                    .into());
                }
            }
            other => {
                tracing::debug!(target: "reqwest_throttle", reason = ?other, "not retried");
            }
        }
        result.map(|mut response| {
            // The attempt counter moved on only if a retry was decided and then refused.
            let attempts = match reason {
                StopReason::TurnRefused => self.retry.attempt().saturating_sub(1),
                _ => self.retry.attempt(),
            };
            let outcome = Outcome::new(
                attempts,
                self.waited,
                self.retry_delays,
                reason,
                self.last_retry,
            );
            response.extensions_mut().insert(outcome);
            response
        })
    }

    /// The request ended with `result`: the rollout's comparison counts it.
    pub fn ended(&self, result: &reqwest_middleware::Result<Response>) {
        self.lane.rollout_ended(self.side, result, self.entered);
    }
}
