//! The crate's runtime error type.
//!
//! The middleware returns these inside `reqwest_middleware::Error::Middleware`; get them back out
//! with [`Error::from_middleware`]. Each variant says which lane, what happened and what to do.
//! A configuration the throttle cannot run with is refused earlier, when it is built, with a
//! [`PolicyError`](crate::PolicyError): matching on an `Error` never has to handle one.

use std::time::Duration;

use std::fmt;

use crate::key::LaneKey;
use crate::limiter::Dimension;

/// Everything the throttle can refuse or fail with while it handles a request.
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
    #[error("lane {lane}: the next {dimension} slot is {} away, more than the {} this request may wait; raise max_wait or send less", for_people(wait), for_people(max_wait))]
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
    /// A longer window of the lane's budget (10 000 requests a day beside 500 a minute, see
    /// [`Policy::requests`](crate::Policy::requests)) is spent, and has room for the request
    /// again later than it may wait.
    #[error("lane {lane}: its window of {quota} {dimension} per {} is spent and has room again in {}, more than the {} this request may wait; raise max_wait or send less", for_people(period), for_people(wait), for_people(max_wait))]
    WindowSpent {
        /// The lane.
        lane: LaneKey,
        /// The dimension whose window is spent.
        dimension: Dimension,
        /// The window's quota.
        quota: u64,
        /// The window's period.
        period: Duration,
        /// How long until the window has room for the request.
        wait: Duration,
        /// The most it was allowed to wait.
        max_wait: Duration,
    },
    /// Every concurrency slot (of the lane, or the global cap) stayed busy for as long as the
    /// request may wait.
    #[error("lane {lane}: no concurrency slot came free within the {} this request may wait; raise max_wait or the concurrency cap", for_people(max_wait))]
    Saturated {
        /// The lane.
        lane: LaneKey,
        /// The most the request was allowed to wait.
        max_wait: Duration,
    },
    /// The lane is paused by the server (Retry-After, rate-limit reset) longer than the request may wait.
    #[error("lane {lane} is cooling down for {} more ({}); the request's {} deadline cannot be met", for_people(wait), cooling_what(*dimension), for_people(max_wait))]
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
    #[error(
        "lane {lane}: circuit open after repeated failures; nothing was sent; retry in {}",
        for_people(retry_in)
    )]
    CircuitOpen {
        /// The lane.
        lane: LaneKey,
        /// When the breaker will let a probe through.
        retry_in: Duration,
    },
    /// The server asked for a pause longer than the policy accepts (`max_retry_after`), and the
    /// policy asked for an error rather than the response.
    #[error("lane {lane}: the server asked to retry in {}, more than the {} the policy waits; try later or raise max_retry_after", for_people(retry_after), for_people(max))]
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
    #[error("lane {lane}: no response within the {} attempt timeout; the server may or may not have acted on the request; raise attempt_timeout if its answers are that slow", for_people(timeout))]
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
}

/// A duration as people read it in a message: `250ms`, `4.2s`, `10s`, `1m 30s`, `2h 5m`, rounded to
/// the unit shown (a wait of 59.996338857 s prints as `1m`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ForPeople(pub(crate) Duration);

/// `duration` for a message (see [`ForPeople`]).
pub(crate) fn for_people(duration: &Duration) -> ForPeople {
    ForPeople(*duration)
}

impl fmt::Display for ForPeople {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MINUTE: u128 = 60;
        const HOUR: u128 = 60 * MINUTE;
        let nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        let tenths_of_ms = (nanos + 50_000) / 100_000;
        if tenths_of_ms < 100 {
            // Under 10 ms: one decimal, so that 2.5ms is not read as 3ms.
            return write!(f, "{}.{}ms", tenths_of_ms / 10, tenths_of_ms % 10);
        }
        let ms = (nanos + 500_000) / 1_000_000;
        if ms < 1_000 {
            return write!(f, "{ms}ms");
        }
        let tenths = (nanos + 50_000_000) / 100_000_000;
        if tenths < 600 {
            return match tenths % 10 {
                0 => write!(f, "{}s", tenths / 10),
                tenth => write!(f, "{}.{tenth}s", tenths / 10),
            };
        }
        let seconds = (nanos + 500_000_000) / 1_000_000_000;
        if seconds < HOUR {
            let (minutes, seconds) = (seconds / MINUTE, seconds % MINUTE);
            return match seconds {
                0 => write!(f, "{minutes}m"),
                _ => write!(f, "{minutes}m {seconds}s"),
            };
        }
        let minutes = (seconds + MINUTE / 2) / MINUTE;
        match (minutes / 60, minutes % 60) {
            (hours, 0) => write!(f, "{hours}h"),
            (hours, minutes) => write!(f, "{hours}h {minutes}m"),
        }
    }
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

    /// How long until trying again could succeed, whatever the variant calls it: the wait for
    /// the lane's next slot ([`WouldWait`](Error::WouldWait)), for a spent window to have room
    /// ([`WindowSpent`](Error::WindowSpent)), for the server's pause to end
    /// ([`CoolingDown`](Error::CoolingDown)), for the circuit to let a probe through
    /// ([`CircuitOpen`](Error::CircuitOpen)), or the delay the server asked for
    /// ([`RetryAfterTooLong`](Error::RetryAfterTooLong)). `None` when nobody knows (a busy
    /// concurrency slot, a store that is down, a timeout) or when trying again cannot help (a
    /// request too large for the budget, a URL without a host).
    ///
    /// ```
    /// use std::time::Duration;
    /// use reqwest_throttle::{Error, LaneKey};
    ///
    /// let open = Error::CircuitOpen {
    ///     lane: LaneKey::new("https://api.example.com:443"),
    ///     retry_in: Duration::from_secs(5),
    /// };
    /// assert_eq!(open.retry_in(), Some(Duration::from_secs(5)));
    /// assert!(open.is_refusal());
    /// ```
    pub fn retry_in(&self) -> Option<Duration> {
        match self {
            Error::WouldWait { wait, .. }
            | Error::WindowSpent { wait, .. }
            | Error::CoolingDown { wait, .. } => Some(*wait),
            Error::CircuitOpen { retry_in, .. } => Some(*retry_in),
            Error::RetryAfterTooLong { retry_after, .. } => Some(*retry_after),
            Error::Saturated { .. }
            | Error::CostTooLarge { .. }
            | Error::AttemptTimedOut { .. }
            | Error::StoreUnavailable { .. }
            | Error::NoHost { .. } => None,
        }
    }

    /// Whether the throttle refused to send the request: a limit, a pause or a busy slot it
    /// may not wait for, a cost the budget can never admit, an open circuit, a shared store
    /// that fails fast. Nothing was sent, so the request is safe to send again, whatever its
    /// method ([`retry_in`](Self::retry_in) says when, if anyone knows). `false` when something
    /// was sent ([`RetryAfterTooLong`](Error::RetryAfterTooLong): the server refused it;
    /// [`AttemptTimedOut`](Error::AttemptTimedOut): the server may have acted) and for a URL
    /// without a host, which cannot be sent at all.
    pub fn is_refusal(&self) -> bool {
        match self {
            Error::WouldWait { .. }
            | Error::WindowSpent { .. }
            | Error::Saturated { .. }
            | Error::CoolingDown { .. }
            | Error::CostTooLarge { .. }
            | Error::CircuitOpen { .. }
            | Error::StoreUnavailable { .. } => true,
            Error::RetryAfterTooLong { .. }
            | Error::AttemptTimedOut { .. }
            | Error::NoHost { .. } => false,
        }
    }

    /// The lane the error is about, when it is about one.
    pub fn lane(&self) -> Option<&LaneKey> {
        match self {
            Error::WouldWait { lane, .. }
            | Error::WindowSpent { lane, .. }
            | Error::CoolingDown { lane, .. }
            | Error::Saturated { lane, .. }
            | Error::CostTooLarge { lane, .. }
            | Error::CircuitOpen { lane, .. }
            | Error::RetryAfterTooLong { lane, .. }
            | Error::AttemptTimedOut { lane, .. }
            | Error::StoreUnavailable { lane, .. } => Some(lane),
            Error::NoHost { .. } => None,
        }
    }
}

impl From<Error> for reqwest_middleware::Error {
    fn from(error: Error) -> Self {
        reqwest_middleware::Error::middleware(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_rounded_to_the_unit_shown() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_micros(2_460), "2.5ms"),
            (Duration::from_micros(999_600), "1s"),
            (Duration::from_millis(42_020), "42s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_millis(4_240), "4.2s"),
            (Duration::from_nanos(59_996_338_857), "1m"),
            (Duration::from_secs(90), "1m 30s"),
            (Duration::from_secs(3_599), "59m 59s"),
            (Duration::from_secs(2 * 3_600 + 5 * 60 + 10), "2h 5m"),
            (Duration::from_secs(86_400), "24h"),
        ];
        for (duration, shown) in cases {
            assert_eq!(for_people(&duration).to_string(), shown, "{duration:?}");
        }
        // No overflow at the extreme.
        assert!(for_people(&Duration::MAX).to_string().contains('h'));
    }

    /// Every variant, with what `retry_in` and `is_refusal` must say of it.
    #[test]
    fn every_variant_says_when_to_retry_and_whether_it_was_refused() {
        let lane = || LaneKey::new("https://api.example.com:443");
        let (wait, max_wait) = (Duration::from_secs(7), Duration::from_secs(1));
        let cases = [
            (
                Error::WouldWait {
                    lane: lane(),
                    dimension: Dimension::Tokens,
                    wait,
                    max_wait,
                },
                Some(wait),
                true,
            ),
            (
                Error::WindowSpent {
                    lane: lane(),
                    dimension: Dimension::Requests,
                    quota: 10,
                    period: Duration::from_secs(86_400),
                    wait,
                    max_wait,
                },
                Some(wait),
                true,
            ),
            (
                Error::Saturated {
                    lane: lane(),
                    max_wait,
                },
                None,
                true,
            ),
            (
                Error::CoolingDown {
                    lane: lane(),
                    dimension: None,
                    wait,
                    max_wait,
                },
                Some(wait),
                true,
            ),
            (
                Error::CostTooLarge {
                    lane: lane(),
                    dimension: Dimension::Tokens,
                    cost: 9,
                    burst: 8,
                },
                None,
                true,
            ),
            (
                Error::CircuitOpen {
                    lane: lane(),
                    retry_in: wait,
                },
                Some(wait),
                true,
            ),
            (
                Error::StoreUnavailable {
                    lane: lane(),
                    reason: "timed out".to_owned(),
                },
                None,
                true,
            ),
            (
                Error::RetryAfterTooLong {
                    lane: lane(),
                    retry_after: wait,
                    max: max_wait,
                },
                Some(wait),
                false,
            ),
            (
                Error::AttemptTimedOut {
                    lane: lane(),
                    timeout: max_wait,
                },
                None,
                false,
            ),
            (
                Error::NoHost {
                    url: "data:,".to_owned(),
                },
                None,
                false,
            ),
        ];
        for (error, retry_in, refusal) in cases {
            assert_eq!(error.retry_in(), retry_in, "{error:?}");
            assert_eq!(error.is_refusal(), refusal, "{error:?}");
        }
    }

    /// Waits in messages are rounded for people: `1m`, not `59.996338857s`.
    #[test]
    fn error_messages_print_durations_for_people() {
        let error = Error::WouldWait {
            lane: LaneKey::new("https://api.example.com:443"),
            dimension: Dimension::Requests,
            wait: Duration::from_nanos(59_996_338_857),
            max_wait: Duration::from_secs(1),
        };
        assert_eq!(
            error.to_string(),
            "lane https://api.example.com:443: the next requests slot is 1m away, more than the \
             1s this request may wait; raise max_wait or send less"
        );
        let spent = Error::WindowSpent {
            lane: LaneKey::new("https://api.example.com:443"),
            dimension: Dimension::Requests,
            quota: 10_000,
            period: Duration::from_secs(86_400),
            wait: Duration::from_secs(3 * 3_600 + 600),
            max_wait: Duration::from_secs(30),
        };
        assert_eq!(
            spent.to_string(),
            "lane https://api.example.com:443: its window of 10000 requests per 24h is spent and \
             has room again in 3h 10m, more than the 30s this request may wait; raise max_wait \
             or send less"
        );
    }
}
