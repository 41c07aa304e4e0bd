//! The crate's one error type.
//!
//! The middleware returns these inside `reqwest_middleware::Error::Middleware`; get them back out
//! with [`Error::from_middleware`]. Each variant says which lane, what happened and what to do.

use std::time::Duration;

use crate::key::LaneKey;
use crate::limiter::Dimension;
use crate::policy::PolicyError;

/// Everything the throttle can refuse or fail with.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// use reqwest_throttle::{Error, Policy, Rate, Throttle};
///
/// let throttle = Throttle::builder()
///     .default_policy(Policy::new().rate(Rate::per_minute(1)).max_wait(Duration::from_secs(1)))
///     .build()
///     .unwrap();
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(throttle)
///     .build();
/// // The first request spends the minute's only slot (its connection fails: nothing listens there).
/// let _ = client.get("http://127.0.0.1:9/").send().await;
/// let err = client.get("http://127.0.0.1:9/").send().await.unwrap_err();
/// match Error::from_middleware(&err) {
///     Some(Error::WouldWait { wait, .. }) => assert!(*wait > Duration::from_secs(1)),
///     other => panic!("unexpected {other:?}"),
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request's turn under the lane's rate is further away than it may wait.
    #[error("lane {lane}: the next {dimension} slot is {wait:?} away, more than the {max_wait:?} this request may wait; raise max_wait or send less")]
    WouldWait {
        /// The lane.
        lane: LaneKey,
        /// The dimension whose rate is binding.
        dimension: Dimension,
        /// How long the request would have had to wait.
        wait: Duration,
        /// The most it was allowed to wait.
        max_wait: Duration,
    },
    /// Every concurrency slot (of the lane, or the global cap) stayed busy for as long as the
    /// request may wait.
    #[error("lane {lane}: no concurrency slot came free within the {max_wait:?} this request may wait; raise max_wait or the concurrency cap")]
    Saturated {
        /// The lane.
        lane: LaneKey,
        /// The most the request was allowed to wait.
        max_wait: Duration,
    },
    /// The lane is paused by the server (Retry-After, rate-limit reset) longer than the request may wait.
    #[error("lane {lane} is cooling down for {wait:?} more ({}); the request's {max_wait:?} deadline cannot be met", cooling_what(*dimension))]
    CoolingDown {
        /// The lane.
        lane: LaneKey,
        /// The dimension paused, or `None` when the whole lane is.
        dimension: Option<Dimension>,
        /// How much longer the pause lasts.
        wait: Duration,
        /// The most the request was allowed to wait.
        max_wait: Duration,
    },
    /// The request costs more in one dimension than the lane's budget admits at once: it could
    /// never be sent under this policy.
    #[error("lane {lane}: the request costs {cost} {dimension} but the budget admits at most {burst} at once; split the request or raise the limit")]
    CostTooLarge {
        /// The lane.
        lane: LaneKey,
        /// The dimension too small.
        dimension: Dimension,
        /// The request's cost in that dimension.
        cost: u64,
        /// The most the dimension admits at once.
        burst: u64,
    },
    /// The lane's circuit breaker is open: the service failed repeatedly and is left alone for
    /// a while. Nothing was sent.
    #[error("lane {lane}: circuit open after repeated failures; nothing was sent; retry in {retry_in:?}")]
    CircuitOpen {
        /// The lane.
        lane: LaneKey,
        /// When the breaker will let a probe through.
        retry_in: Duration,
    },
    /// The server asked for a pause longer than the policy accepts (`max_retry_after`), and the
    /// policy asked for an error rather than the response.
    #[error("lane {lane}: the server asked to retry in {retry_after:?}, more than the {max:?} the policy waits; try later or raise max_retry_after")]
    RetryAfterTooLong {
        /// The lane.
        lane: LaneKey,
        /// The delay the server asked for.
        retry_after: Duration,
        /// The policy's cap.
        max: Duration,
    },
    /// No response came within the policy's [`attempt_timeout`](crate::Policy::attempt_timeout),
    /// and no retry followed (the request was not safe to repeat, or its retries ran out). The
    /// server may or may not have acted on the request.
    #[error("lane {lane}: no response within the {timeout:?} attempt timeout; the server may or may not have acted on the request; raise attempt_timeout if its answers are that slow")]
    AttemptTimedOut {
        /// The lane.
        lane: LaneKey,
        /// The policy's per-attempt timeout.
        timeout: Duration,
    },
    /// The lane keeps its budget in a shared store (feature `redis`) that did not answer, and
    /// the store's policy is to fail fast rather than fall back to a budget of this process.
    /// Nothing was sent.
    #[error("lane {lane}: the shared budget's store is unavailable ({reason}); nothing was sent; retry later, or let the store fall back to a local share of the limit")]
    StoreUnavailable {
        /// The lane.
        lane: LaneKey,
        /// What went wrong with the store.
        reason: String,
    },
    /// The request's URL has no host, so no lane (and no policy) can be chosen for it.
    #[error("the request URL {url} has no host; the throttle needs one to choose a lane")]
    NoHost {
        /// The URL as given.
        url: String,
    },
    /// A policy or the throttle's configuration is invalid.
    #[error("invalid throttle configuration: {0}")]
    InvalidPolicy(#[from] PolicyError),
}

fn cooling_what(dimension: Option<Dimension>) -> String {
    match dimension {
        None => "the server asked for a pause".to_owned(),
        Some(dimension) => format!("the server paused its {dimension} budget"),
    }
}

impl Error {
    /// This crate's error inside a `reqwest_middleware::Error`, if that is what it holds.
    pub fn from_middleware(error: &reqwest_middleware::Error) -> Option<&Error> {
        match error {
            reqwest_middleware::Error::Middleware(inner) => inner.downcast_ref::<Error>(),
            reqwest_middleware::Error::Reqwest(_) => None,
        }
    }

    /// The lane the error is about, when it is about one.
    pub fn lane(&self) -> Option<&LaneKey> {
        match self {
            Error::WouldWait { lane, .. }
            | Error::CoolingDown { lane, .. }
            | Error::Saturated { lane, .. }
            | Error::CostTooLarge { lane, .. }
            | Error::CircuitOpen { lane, .. }
            | Error::RetryAfterTooLong { lane, .. }
            | Error::AttemptTimedOut { lane, .. }
            | Error::StoreUnavailable { lane, .. } => Some(lane),
            Error::NoHost { .. } | Error::InvalidPolicy(_) => None,
        }
    }
}

impl From<Error> for reqwest_middleware::Error {
    fn from(error: Error) -> Self {
        reqwest_middleware::Error::middleware(error)
    }
}
