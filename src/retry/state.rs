//! One request's retries: what it carries from attempt to attempt, and the decision after each.
//!
//! A [`RetryState`] is made when the request enters its lane (depositing into the lane's retry
//! budget), asked once after every attempt, and dropped with the request. It borrows the lane's
//! policy and budget, so it costs no allocation.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::{AttemptFacts, Delays, Idempotency, RetryBudget, RetryDecision, RetryPolicy, Verdict};

/// What one attempt's assessment tells the retry decision.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Answered {
    /// How the outcome classifies.
    pub verdict: Verdict,
    /// The delay the server asked for, if any.
    pub server_delay: Option<Duration>,
    /// The lane paces itself to what the server allows (see [`AttemptFacts::paced`]).
    pub paced: bool,
}

/// One request's retries so far, and the means to decide the next.
#[derive(Debug)]
pub(crate) struct RetryState<'l> {
    policy: &'l RetryPolicy,
    budget: &'l RetryBudget,
    /// In a mutex only so that a plan can be shared while its request waits (a custom
    /// schedule's iterator need not be `Sync`); reached through `get_mut`, never locked.
    delays: Mutex<Delays>,
    idempotency: Idempotency,
    deadline: Option<Instant>,
    retries_done: u32,
}

impl<'l> RetryState<'l> {
    /// The retries of a request entering its lane at `now`, which may run until `deadline`;
    /// deposits into `budget` (a request that is never retried earns retries for others).
    pub fn new(
        policy: &'l RetryPolicy,
        budget: &'l RetryBudget,
        idempotency: Idempotency,
        deadline: Option<Instant>,
        now: Instant,
    ) -> RetryState<'l> {
        budget.deposit(now);
        RetryState {
            policy,
            budget,
            delays: Mutex::new(policy.delays()),
            idempotency,
            deadline,
            retries_done: 0,
        }
    }

    /// Which attempt comes next, counting from 1.
    pub fn attempt(&self) -> u32 {
        self.retries_done + 1
    }

    /// Whether another attempt could still follow the one about to start (so its request is
    /// worth cloning first).
    pub fn may_retry(&self) -> bool {
        self.retries_done < self.policy.most_retries()
    }

    /// Retry, or stop, after an attempt answered `answered`; `cloneable` says whether the
    /// request could be sent again. A retry is counted here.
    pub fn decide(&mut self, answered: Answered, cloneable: bool, now: Instant) -> RetryDecision {
        let facts = AttemptFacts {
            verdict: answered.verdict,
            idempotency: self.idempotency,
            cloneable,
            retries_done: self.retries_done,
            server_delay: answered.server_delay,
            deadline: self.deadline,
            paced: answered.paced,
        };
        let delays = self
            .delays
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        let decision = self.policy.decide(&facts, delays, self.budget, now);
        if let RetryDecision::Wait(_) = decision {
            self.retries_done += 1;
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::{RetryBudgetConfig, StopReason};

    fn throttled() -> Answered {
        Answered {
            verdict: Verdict::RetryNotActed,
            server_delay: Some(Duration::from_secs(1)),
            paced: false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_counted_until_the_policy_stops_them() {
        let policy = RetryPolicy::new()
            .max_retries(2)
            .max_rate_limited_retries(2);
        let budget = RetryBudget::new(RetryBudgetConfig::default());
        let now = Instant::now();
        let mut state = RetryState::new(&policy, &budget, Idempotency::Method, None, now);
        assert_eq!(state.attempt(), 1);
        assert!(state.may_retry());
        for attempt in 2..=3 {
            assert!(matches!(
                state.decide(throttled(), true, now),
                RetryDecision::Wait(_)
            ));
            assert_eq!(state.attempt(), attempt);
        }
        assert!(!state.may_retry());
        assert_eq!(
            state.decide(throttled(), true, now),
            RetryDecision::Stop(StopReason::RetriesExhausted)
        );
        assert_eq!(state.attempt(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_cannot_be_cloned_is_not_retried() {
        let policy = RetryPolicy::new();
        let budget = RetryBudget::new(RetryBudgetConfig::default());
        let now = Instant::now();
        let mut state = RetryState::new(&policy, &budget, Idempotency::Method, None, now);
        assert_eq!(
            state.decide(throttled(), false, now),
            RetryDecision::Stop(StopReason::NotCloneable)
        );
        assert_eq!(state.attempt(), 1);
    }
}
