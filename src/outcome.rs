//! [`Outcome`]: what the throttle did for one response, carried in the response's extensions.

use std::time::Duration;

use crate::retry::{Attempt, StopReason};

/// What the throttle did for a response: how many attempts it took, how long the request
/// waited for its turns, and why no further attempt followed. Every response that comes out of
/// a throttled lane carries one in its extensions; a response from a
/// [passthrough](crate::Policy::passthrough) host carries none.
///
/// The one to look at first is [`retries_exhausted`](Self::retries_exhausted): when retries run
/// out, the last 429 or 503 is handed back as a plain `Ok(Response)` (as reqwest-retry does),
/// and this says so.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use reqwest_throttle::sim::SimulatedApi;
/// use reqwest_throttle::{Outcome, Throttle};
///
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(Throttle::builder().build()?)
///     .with(SimulatedApi::builder().build())
///     .build();
/// let response = client.get("http://api.test/").send().await?;
/// let outcome = response.extensions().get::<Outcome>().expect("a throttled lane's response");
/// assert_eq!(outcome.attempts, 1);
/// assert!(!outcome.retries_exhausted);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Outcome {
    /// Attempts sent for this request, this response's included (1 when it was not retried).
    pub attempts: u32,
    /// Time spent waiting for turns (rate, server-asked pauses, concurrency slots), summed over
    /// the attempts; the backoff slept between attempts is in
    /// [`retry_delays`](Self::retry_delays).
    pub waited: Duration,
    /// Time slept between attempts (backoff, or the pause the server asked for).
    pub retry_delays: Duration,
    /// The response is a failure the throttle would have retried (a 429, a 503, a 5xx on an
    /// idempotent request), and it is handed back because the retries ran out: the policy's
    /// attempts, the lane's retry budget, the request's deadline, or the turn of the next
    /// attempt (see [`stop`](Self::stop)).
    pub retries_exhausted: bool,
    /// Why no further attempt followed ([`StopReason::Final`] for a success or a status no
    /// retry changes).
    pub stop: StopReason,
    /// What the last attempt that was retried came back as (`Status(429)`, `ConnectError`,
    /// …); `None` when nothing was retried.
    pub last_retry: Option<Attempt>,
}

impl Outcome {
    /// The outcome of a request that ended for `stop` after `attempts`, having waited `waited`
    /// for its turns and slept `retry_delays` between attempts.
    pub(crate) fn new(
        attempts: u32,
        waited: Duration,
        retry_delays: Duration,
        stop: StopReason,
        last_retry: Option<Attempt>,
    ) -> Outcome {
        let retries_exhausted = matches!(
            stop,
            StopReason::RetriesExhausted
                | StopReason::BudgetExhausted
                | StopReason::DeadlineTooClose
                | StopReason::TurnRefused
        );
        Outcome {
            attempts,
            waited,
            retry_delays,
            retries_exhausted,
            stop,
            last_retry,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_retry_cut_short_counts_as_exhausted() {
        let exhausted = [
            StopReason::RetriesExhausted,
            StopReason::BudgetExhausted,
            StopReason::DeadlineTooClose,
            StopReason::TurnRefused,
        ];
        let not = [
            StopReason::Final,
            StopReason::NotSafe,
            StopReason::NotCloneable,
            StopReason::RetryAfterTooLong(Duration::from_secs(600)),
        ];
        for (stop, expected) in exhausted
            .into_iter()
            .map(|stop| (stop, true))
            .chain(not.into_iter().map(|stop| (stop, false)))
        {
            let outcome = Outcome::new(2, Duration::ZERO, Duration::ZERO, stop, None);
            assert_eq!(outcome.retries_exhausted, expected, "{stop:?}");
        }
    }
}
