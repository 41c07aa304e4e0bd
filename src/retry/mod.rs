//! Safe retries: classification, backoff with jitter, a retry budget, and the decision.
//!
//! [`RetryPolicy::decide`] is the one place that says whether an attempt is tried again. It
//! retries only what is worth retrying ([`Verdict`]) and safe to repeat ([`Idempotency`]), only a
//! request whose body can be sent again (a streaming body is sent once), never beyond the retry
//! count, never into a Retry-After longer than the policy accepts, never past the request's
//! deadline, and only while the lane's [`RetryBudget`] allows. Everything here is free of
//! transport: the middleware feeds it plain values.

mod backoff;
mod budget;
mod classify;
mod state;

use std::time::Duration;

use tokio::time::Instant;

pub use backoff::{Backoff, Delays, Jitter, DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_CAP};
pub use budget::{RetryBudget, RetryBudgetConfig};
pub(crate) use classify::{classify, is_rate_limited, may_retry};
pub use classify::{Attempt, Idempotency, Verdict};
pub(crate) use state::{Answered, RetryState};

/// The default cap on a server-requested delay that is slept on.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// The most [`RetryPolicy::max_retry_after`] can be: one day, the longest window public APIs
/// announce (daily quotas). Every wait derived from a server value (a Retry-After, a reset, a
/// learned pace's interval) is capped at `max_retry_after`, so none exceeds this, whatever the
/// server sends or the policy asks for.
pub const MAX_RETRY_AFTER_CEILING: Duration = Duration::from_secs(86_400);

/// Default number of retries of a rate-limited refusal while the lane paces itself; see
/// [`RetryPolicy::max_rate_limited_retries`].
pub const DEFAULT_MAX_RATE_LIMITED_RETRIES: u32 = 10;

/// How a lane retries.
///
/// ```
/// use std::time::Duration;
/// use reqwest_throttle::retry::{Backoff, Jitter, RetryPolicy};
///
/// let retry = RetryPolicy::new()
///     .max_retries(5)
///     .backoff(Backoff::exponential(Duration::from_millis(100), Duration::from_secs(30)).jitter(Jitter::Equal))
///     .max_retry_after(Duration::from_secs(60));
/// assert_eq!(retry.configured_max_retries(), 5);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RetryPolicy {
    max_retries: u32,
    backoff: Backoff,
    max_retry_after: Duration,
    fail_on_long_retry_after: bool,
    retry_non_idempotent: bool,
    budget: RetryBudgetConfig,
    max_rate_limited_retries: u32,
}

impl Default for RetryPolicy {
    /// Three retries, exponential backoff from 200 ms capped at 20 s with full jitter, Retry-After
    /// honoured up to 120 s, a 20 % retry budget, non-idempotent requests retried only when the
    /// server provably did not act.
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            backoff: Backoff::default(),
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
            fail_on_long_retry_after: false,
            retry_non_idempotent: false,
            budget: RetryBudgetConfig::default(),
            max_rate_limited_retries: DEFAULT_MAX_RATE_LIMITED_RETRIES,
        }
    }
}

/// Why the middleware stops and hands the caller the last outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// A success or a status another attempt would not change.
    Final,
    /// Retryable, but repeating the request could do harm (not idempotent).
    NotSafe,
    /// The request body cannot be sent twice (a stream).
    NotCloneable,
    /// The retries allowed are used up (or the custom backoff ended).
    RetriesExhausted,
    /// The lane's retry budget is spent: the service is failing for many requests.
    BudgetExhausted,
    /// The server asked for a longer pause than the policy's `max_retry_after`.
    RetryAfterTooLong(Duration),
    /// The next attempt could not start before the request's deadline.
    DeadlineTooClose,
    /// A retry was decided, but the lane refused its turn (its wait would pass the request's
    /// deadline, the circuit opened, the shared store failed fast): the last outcome is
    /// returned instead of the refusal.
    TurnRefused,
}

/// What to do after an attempt.
///
/// This type is frozen: a decision is to stop or to wait, and nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryDecision {
    /// Hand the last outcome to the caller.
    Stop(StopReason),
    /// Wait this long, then go through the lane's budget again for another attempt.
    Wait(Duration),
}

/// Everything [`RetryPolicy::decide`] looks at, as plain values.
#[derive(Debug)]
#[non_exhaustive]
pub struct AttemptFacts {
    /// How the outcome classifies.
    pub verdict: Verdict,
    /// How the request may be repeated.
    pub idempotency: Idempotency,
    /// Whether the request can be sent again (its body is not a stream).
    pub cloneable: bool,
    /// Retries already made for this request.
    pub retries_done: u32,
    /// The delay the server asked for, if any.
    pub server_delay: Option<Duration>,
    /// When the request's whole time runs out, if it has a deadline.
    pub deadline: Option<Instant>,
    /// The lane paces itself to what the server allows (learned from its refusals or its
    /// headers): a rate-limited refusal is then retried at the lane's pace, not after a backoff,
    /// up to [`max_rate_limited_retries`](RetryPolicy::max_rate_limited_retries), and costs no
    /// retry budget (the pace, not the budget, bounds the load).
    pub paced: bool,
}

impl AttemptFacts {
    /// The facts of a first attempt that came back as `verdict`, for a request of
    /// `idempotency` that can be sent again: no retry done yet, no server delay, no deadline,
    /// not paced. Set the other fields as needed.
    pub fn new(verdict: Verdict, idempotency: Idempotency) -> AttemptFacts {
        AttemptFacts {
            verdict,
            idempotency,
            cloneable: true,
            retries_done: 0,
            server_delay: None,
            deadline: None,
            paced: false,
        }
    }
}

impl RetryPolicy {
    /// The default retry policy (see [`RetryPolicy::default`]).
    pub fn new() -> RetryPolicy {
        RetryPolicy::default()
    }

    /// A policy that never retries (server signals still pace the lane).
    pub fn disabled() -> RetryPolicy {
        RetryPolicy::default()
            .max_retries(0)
            .max_rate_limited_retries(0)
    }

    /// At most `n` retries per request (default 3).
    #[must_use]
    pub fn max_retries(mut self, n: u32) -> RetryPolicy {
        self.max_retries = n;
        self
    }

    /// The backoff schedule.
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> RetryPolicy {
        self.backoff = backoff;
        self
    }

    /// A server-requested delay longer than this is not slept on (default 120 s): the response
    /// is returned as it is, or an error with [`fail_on_long_retry_after`](Self::fail_on_long_retry_after).
    /// Lane cooldowns set from server signals are capped to it too, so no wait is ever unbounded.
    /// A value above [`MAX_RETRY_AFTER_CEILING`] (one day; `Duration::MAX` included) is taken as
    /// that ceiling: a server can never pause a lane longer, and the pause is never disabled.
    #[must_use]
    pub fn max_retry_after(mut self, max: Duration) -> RetryPolicy {
        self.max_retry_after = max.min(MAX_RETRY_AFTER_CEILING);
        self
    }

    /// Return [`Error::RetryAfterTooLong`](crate::Error::RetryAfterTooLong) instead of the
    /// response when the server asks for more than `max_retry_after`.
    #[must_use]
    pub fn fail_on_long_retry_after(mut self, fail: bool) -> RetryPolicy {
        self.fail_on_long_retry_after = fail;
        self
    }

    /// Retry non-idempotent requests (POST, PATCH without `Idempotency-Key`) on any retryable
    /// outcome, not only when the server provably did not act. Off by default: a duplicated POST
    /// can charge a card twice.
    #[must_use]
    pub fn retry_non_idempotent(mut self, retry: bool) -> RetryPolicy {
        self.retry_non_idempotent = retry;
        self
    }

    /// The lane's retry budget.
    #[must_use]
    pub fn budget(mut self, budget: RetryBudgetConfig) -> RetryPolicy {
        self.budget = budget;
        self
    }

    /// The backoff schedule.
    pub fn configured_backoff(&self) -> &Backoff {
        &self.backoff
    }

    /// The retry count.
    pub fn configured_max_retries(&self) -> u32 {
        self.max_retries
    }

    /// The most retries any request may get: the larger of
    /// [`max_retries`](Self::max_retries) and
    /// [`max_rate_limited_retries`](Self::max_rate_limited_retries). A request is kept for a
    /// retry while fewer than this were done.
    pub fn most_retries(&self) -> u32 {
        self.max_rate_limited_retries.max(self.max_retries)
    }

    /// The cap on server-requested delays.
    pub fn configured_max_retry_after(&self) -> Duration {
        self.max_retry_after.min(MAX_RETRY_AFTER_CEILING)
    }

    /// Whether a too-long Retry-After is an error rather than a returned response.
    pub fn fails_on_long_retry_after(&self) -> bool {
        self.fail_on_long_retry_after
    }

    /// How many times a request refused as rate limited (429, GitHub's rate-limit 403) may be
    /// retried while its lane paces itself to the server (default 10): each retry waits for the
    /// lane's pace, so it adds no load, and a request is not failed for being early. Without a
    /// pace the ordinary [`max_retries`](Self::max_retries) and backoff apply.
    #[must_use]
    pub fn max_rate_limited_retries(mut self, n: u32) -> RetryPolicy {
        self.max_rate_limited_retries = n;
        self
    }

    /// The retry budget configuration.
    pub fn configured_budget(&self) -> RetryBudgetConfig {
        self.budget
    }

    /// A fresh backoff schedule for one request.
    pub fn delays(&self) -> Delays {
        self.backoff.start()
    }

    /// Decides whether to retry (see the module doc). A retry is counted against `budget` only
    /// when every other check passed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use tokio::time::Instant;
    /// use reqwest_throttle::retry::*;
    ///
    /// let policy = RetryPolicy::new();
    /// let budget = RetryBudget::new(RetryBudgetConfig::default());
    /// let mut delays = policy.delays();
    /// // A 429 to a POST: safe to retry, the server did not act.
    /// let mut facts = AttemptFacts::new(Verdict::RetryNotActed, Idempotency::None);
    /// facts.server_delay = Some(Duration::from_secs(5));
    /// let decision = policy.decide(&facts, &mut delays, &budget, Instant::now());
    /// assert_eq!(decision, RetryDecision::Wait(Duration::from_secs(5)));
    /// # }
    /// ```
    pub fn decide(
        &self,
        facts: &AttemptFacts,
        delays: &mut Delays,
        budget: &RetryBudget,
        now: Instant,
    ) -> RetryDecision {
        use RetryDecision::Stop;
        if facts.verdict == Verdict::Final {
            return Stop(StopReason::Final);
        }
        if !may_retry(facts.verdict, facts.idempotency, self.retry_non_idempotent) {
            return Stop(StopReason::NotSafe);
        }
        if !facts.cloneable {
            return Stop(StopReason::NotCloneable);
        }
        // A rate-limited refusal in a paced lane: retried at the lane's pace.
        let paced = facts.paced && facts.verdict == Verdict::RetryNotActed;
        let max_retries = if paced {
            self.most_retries()
        } else {
            self.max_retries
        };
        if facts.retries_done >= max_retries {
            return Stop(StopReason::RetriesExhausted);
        }
        if let Some(delay) = facts.server_delay {
            if delay > self.configured_max_retry_after() {
                return Stop(StopReason::RetryAfterTooLong(delay));
            }
        }
        if paced {
            let delay = facts.server_delay.unwrap_or(Duration::ZERO);
            if let Some(deadline) = facts.deadline {
                if now.checked_add(delay).is_none_or(|at| at > deadline) {
                    return Stop(StopReason::DeadlineTooClose);
                }
            }
            return RetryDecision::Wait(delay);
        }
        let Some(backoff) = delays.next_delay() else {
            return Stop(StopReason::RetriesExhausted);
        };
        // The server's delay is a floor: backoff never sends earlier than asked.
        let delay = facts
            .server_delay
            .map_or(backoff, |server| server.max(backoff));
        if let Some(deadline) = facts.deadline {
            if now.checked_add(delay).is_none_or(|at| at > deadline) {
                return Stop(StopReason::DeadlineTooClose);
            }
        }
        if !budget.try_withdraw(now) {
            return Stop(StopReason::BudgetExhausted);
        }
        RetryDecision::Wait(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(verdict: Verdict) -> AttemptFacts {
        AttemptFacts {
            verdict,
            idempotency: Idempotency::Method,
            cloneable: true,
            retries_done: 0,
            server_delay: None,
            deadline: None,
            paced: false,
        }
    }

    fn decide(policy: &RetryPolicy, facts: &AttemptFacts) -> RetryDecision {
        let budget = RetryBudget::new(RetryBudgetConfig::default());
        policy.decide(facts, &mut policy.delays(), &budget, Instant::now())
    }

    #[tokio::test(start_paused = true)]
    async fn each_stop_reason_is_reached() {
        let policy = RetryPolicy::new();
        assert_eq!(
            decide(&policy, &facts(Verdict::Final)),
            RetryDecision::Stop(StopReason::Final)
        );
        let post = AttemptFacts {
            idempotency: Idempotency::None,
            ..facts(Verdict::RetryIfSafe)
        };
        assert_eq!(
            decide(&policy, &post),
            RetryDecision::Stop(StopReason::NotSafe)
        );
        let stream = AttemptFacts {
            cloneable: false,
            ..facts(Verdict::RetryIfSafe)
        };
        assert_eq!(
            decide(&policy, &stream),
            RetryDecision::Stop(StopReason::NotCloneable)
        );
        let third = AttemptFacts {
            retries_done: 3,
            ..facts(Verdict::RetryIfSafe)
        };
        assert_eq!(
            decide(&policy, &third),
            RetryDecision::Stop(StopReason::RetriesExhausted)
        );
        let long = AttemptFacts {
            server_delay: Some(Duration::from_secs(121)),
            ..facts(Verdict::RetryNotActed)
        };
        assert_eq!(
            decide(&policy, &long),
            RetryDecision::Stop(StopReason::RetryAfterTooLong(Duration::from_secs(121)))
        );
        let tight = AttemptFacts {
            server_delay: Some(Duration::from_secs(5)),
            deadline: Some(Instant::now() + Duration::from_secs(4)),
            ..facts(Verdict::RetryNotActed)
        };
        assert_eq!(
            decide(&policy, &tight),
            RetryDecision::Stop(StopReason::DeadlineTooClose)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn server_delay_is_a_floor_and_backoff_applies_without_it() {
        let policy = RetryPolicy::new().backoff(
            Backoff::exponential(Duration::from_secs(1), Duration::from_secs(8))
                .jitter(Jitter::None),
        );
        let with_delay = AttemptFacts {
            server_delay: Some(Duration::from_millis(300)),
            ..facts(Verdict::RetryNotActed)
        };
        assert_eq!(
            decide(&policy, &with_delay),
            RetryDecision::Wait(Duration::from_secs(1))
        );
        let with_long_delay = AttemptFacts {
            server_delay: Some(Duration::from_secs(7)),
            ..facts(Verdict::RetryNotActed)
        };
        assert_eq!(
            decide(&policy, &with_long_delay),
            RetryDecision::Wait(Duration::from_secs(7))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn spent_budget_stops_retries() {
        let policy = RetryPolicy::new().budget(RetryBudgetConfig {
            ratio: 0.0,
            min_per_sec: 0.1,
            ttl: Duration::from_secs(10),
        });
        let budget = RetryBudget::new(policy.configured_budget());
        let now = Instant::now();
        let facts = facts(Verdict::RetryIfSafe);
        assert!(matches!(
            policy.decide(&facts, &mut policy.delays(), &budget, now),
            RetryDecision::Wait(_)
        ));
        assert_eq!(
            policy.decide(&facts, &mut policy.delays(), &budget, now),
            RetryDecision::Stop(StopReason::BudgetExhausted)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn opt_in_retries_non_idempotent_requests() {
        let policy = RetryPolicy::new().retry_non_idempotent(true);
        let post = AttemptFacts {
            idempotency: Idempotency::None,
            ..facts(Verdict::RetryIfIdempotent)
        };
        assert!(matches!(decide(&policy, &post), RetryDecision::Wait(_)));
    }
}
