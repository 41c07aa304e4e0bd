//! What one attempt's outcome means, decided once for every consumer.
//!
//! After each attempt a [`Classifier`] turns what came back (a status or a transport error, the
//! parsed [`Signals`], what the cost model read in the body) into one [`Assessment`]: whether a
//! retry could help and is safe ([`Verdict`]), what the circuit breaker records, whether the
//! server said "rate limited", and which pause it asked for. The retry decision, the breaker,
//! the pace learner and the counters all read that one assessment; nobody decides again.
//!
//! [`DefaultClassifier`] holds the crate's rules; a policy can plug in its own
//! ([`Policy::classifier`](crate::Policy::classifier)), as reqwest-retry's `RetryableStrategy`
//! allows. A [`CostModel`](crate::cost::CostModel) refines the outcome through its
//! [`Inspection`] (a refusal that names the exhausted token dimension, an out-of-quota refusal no
//! retry can change).

use std::time::Duration;

use http::StatusCode;

use crate::breaker::{BreakerConfig, Outcome as BreakerOutcome};
use crate::cost::Inspection;
pub use crate::limiter::pace::{Answer, Pause};
use crate::retry::{classify, is_rate_limited, Answered, Attempt, Verdict};
use crate::signals::Signals;

/// What came back from one attempt, as a classifier sees it.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Attempted<'a> {
    /// The status, or the kind of transport error.
    pub attempt: Attempt,
    /// The response's signal headers (empty for a transport error).
    pub signals: &'a Signals,
    /// What the policy's cost model read in the response ([`Inspection::NOTHING`] without one).
    pub inspection: Inspection,
    /// The lane's breaker configuration, if it has a breaker (its failure statuses).
    pub breaker: Option<&'a BreakerConfig>,
}

/// What one attempt means, for every part of the throttle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Assessment {
    /// The attempt's outcome.
    pub attempt: Attempt,
    /// Whether another attempt could help, and under which condition.
    pub verdict: Verdict,
    /// What the circuit breaker records.
    pub breaker: BreakerOutcome,
    /// The server said "too many requests" (429, GitHub's rate-limit 403).
    pub rate_limited: bool,
    /// How the pace learner reads the answer.
    pub answer: Answer,
    /// The pause the server asked for (of the lane, or of one exhausted dimension); the lane
    /// caps it at the policy's `max_retry_after`.
    pub pause: Option<Pause>,
    /// The least delay before a retry, as the server said it (Retry-After, or the reset of a
    /// window whose `remaining` is 0 on a refusal), uncapped: a delay above the policy's
    /// `max_retry_after` is not slept on, the response is returned.
    pub server_delay: Option<Duration>,
    /// The lane was pacing itself to what the server allows when the answer came (set by the
    /// lane, not the classifier): a rate-limited refusal is then retried at the lane's pace.
    pub paced: bool,
}

impl Assessment {
    /// An assessment with the given parts and no pause or server delay; for custom classifiers
    /// (the struct is non-exhaustive so that fields can be added).
    ///
    /// ```
    /// use reqwest_throttle::assess::{Answer, Assessment};
    /// use reqwest_throttle::breaker::Outcome;
    /// use reqwest_throttle::retry::{Attempt, Verdict};
    ///
    /// let ok = Assessment::new(Attempt::Status(http::StatusCode::OK), Verdict::Final, Outcome::Success, Answer::Accepted);
    /// assert!(!ok.rate_limited);
    /// ```
    pub fn new(
        attempt: Attempt,
        verdict: Verdict,
        breaker: BreakerOutcome,
        answer: Answer,
    ) -> Assessment {
        Assessment {
            attempt,
            verdict,
            breaker,
            rate_limited: answer == Answer::RateLimited,
            answer,
            pause: None,
            server_delay: None,
            paced: false,
        }
    }

    /// What the retry decision reads of this assessment.
    pub(crate) fn answered(&self) -> Answered {
        Answered {
            verdict: self.verdict,
            server_delay: self.server_delay,
            paced: self.paced && self.rate_limited,
        }
    }

    /// This assessment with a pause the server asked for.
    #[must_use]
    pub fn with_pause(mut self, pause: Pause) -> Assessment {
        self.pause = Some(pause);
        self.server_delay = Some(
            self.server_delay
                .map_or(pause.delay, |d| d.max(pause.delay)),
        );
        self
    }
}

/// Decides what an attempt's outcome means; see the [module documentation](self).
///
/// ```
/// use reqwest_throttle::assess::{Assessment, Attempted, Classifier, DefaultClassifier};
/// use reqwest_throttle::retry::{Attempt, Verdict};
///
/// /// An API that answers 409 when a lock is briefly held: worth a retry, not a failure.
/// struct RetryConflicts;
///
/// impl Classifier for RetryConflicts {
///     fn assess(&self, attempted: &Attempted<'_>) -> Assessment {
///         let mut assessment = DefaultClassifier.assess(attempted);
///         if attempted.attempt == Attempt::Status(http::StatusCode::CONFLICT) {
///             assessment.verdict = Verdict::RetryIfSafe;
///         }
///         assessment
///     }
/// }
/// ```
pub trait Classifier: Send + Sync + 'static {
    /// The one assessment of an attempt.
    fn assess(&self, attempted: &Attempted<'_>) -> Assessment;
}

/// The crate's rules:
///
/// - **rate limited**: 429, or 403 with the announced requests `remaining` at 0 (GitHub's primary
///   limit); never a breaker success or failure; retried whatever the method (the server did not
///   act); a pause with its Retry-After; without Retry-After, an exhausted window's reset is the
///   least delay before a retry;
/// - **503**: a pause with its Retry-After (retried whatever the method then); without one,
///   retried only when safe;
/// - **transport failures**: a connection that could not be made is retried whatever the method;
///   a timeout or a hang-up (connection closed or reset before the response completed) only when
///   safe; all three are breaker failures;
/// - anything else as the crate's [`Verdict`] rules say, and as the breaker's
///   [`failure_statuses`](BreakerConfig::failure_statuses) say; a cost model's
///   [`Inspection::permanent`] makes the response final, its [`Inspection::exhausted`] pauses
///   only that dimension.
///
/// ```
/// use reqwest_throttle::assess::{Attempted, Classifier, DefaultClassifier};
/// use reqwest_throttle::breaker::Outcome;
/// use reqwest_throttle::retry::{Attempt, Verdict};
/// use reqwest_throttle::signals::Signals;
///
/// let signals = Signals::default();
/// let hang_up = DefaultClassifier.assess(&Attempted::new(Attempt::Disconnected, &signals));
/// assert_eq!(hang_up.verdict, Verdict::RetryIfSafe);
/// assert_eq!(hang_up.breaker, Outcome::Failure);
/// ```
///
/// This type is frozen: a unit value; the crate's rules change in its `assess`, not its shape.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultClassifier;

impl<'a> Attempted<'a> {
    /// What came back, with no cost model inspection and no breaker.
    pub fn new(attempt: Attempt, signals: &'a Signals) -> Attempted<'a> {
        Attempted {
            attempt,
            signals,
            inspection: Inspection::NOTHING,
            breaker: None,
        }
    }

    /// With what the cost model read.
    #[must_use]
    pub fn with_inspection(mut self, inspection: Inspection) -> Attempted<'a> {
        self.inspection = inspection;
        self
    }

    /// With the lane's breaker configuration.
    #[must_use]
    pub fn with_breaker(mut self, breaker: Option<&'a BreakerConfig>) -> Attempted<'a> {
        self.breaker = breaker;
        self
    }
}

impl Classifier for DefaultClassifier {
    fn assess(&self, attempted: &Attempted<'_>) -> Assessment {
        let Attempted {
            attempt,
            signals,
            inspection,
            breaker,
        } = *attempted;
        let status = match attempt {
            Attempt::Status(status) => Some(status),
            _ => None,
        };
        let rate_limited = status.is_some_and(|status| is_rate_limited(status, signals));
        let unavailable = status == Some(StatusCode::SERVICE_UNAVAILABLE);
        let answer = match status {
            _ if rate_limited => Answer::RateLimited,
            _ if unavailable => Answer::Unavailable,
            Some(status) if status.is_success() => Answer::Accepted,
            _ => Answer::Other,
        };
        let verdict = if inspection.permanent {
            Verdict::Final
        } else {
            classify(attempt, signals)
        };
        let breaker = match attempt {
            Attempt::Status(_) if rate_limited => BreakerOutcome::Ignored,
            Attempt::Status(status) => breaker.map_or(BreakerOutcome::Ignored, |config| {
                config.classify_status(status)
            }),
            Attempt::ConnectError | Attempt::Timeout | Attempt::Disconnected => {
                BreakerOutcome::Failure
            }
            Attempt::OtherError => BreakerOutcome::Ignored,
        };
        let mut assessment = Assessment::new(attempt, verdict, breaker, answer);
        if rate_limited || unavailable {
            if let Some(delay) = signals.retry_after {
                assessment = assessment.with_pause(Pause {
                    dimension: inspection.exhausted,
                    delay,
                });
            } else if rate_limited {
                // No Retry-After: a window announced empty says how long the server refuses.
                assessment.server_delay = signals
                    .rate_limits
                    .as_ref()
                    .and_then(|limits| limits.requests)
                    .filter(|window| window.remaining == Some(0))
                    .and_then(|window| window.reset_in);
            }
        }
        assessment
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signals::{HeaderFamily, RateLimits, Window};

    fn github_exhausted() -> Signals {
        Signals {
            rate_limits: Some(RateLimits {
                family: HeaderFamily::GitHub,
                requests: Some(Window {
                    limit: Some(5_000),
                    remaining: Some(0),
                    reset_in: Some(Duration::from_secs(600)),
                }),
                tokens: None,
                input_tokens: None,
                output_tokens: None,
                resource: Some("core".into()),
            }),
            ..Signals::default()
        }
    }

    /// The four old rules disagreed on GitHub's rate-limit 403: retry said rate limited, the
    /// breaker counted a success. Now every consumer reads one answer.
    #[test]
    fn githubs_rate_limit_403_is_rate_limited_for_every_consumer() {
        let signals = github_exhausted();
        let breaker = BreakerConfig::default();
        let assessment = DefaultClassifier.assess(
            &Attempted::new(Attempt::Status(StatusCode::FORBIDDEN), &signals)
                .with_breaker(Some(&breaker)),
        );
        assert!(assessment.rate_limited);
        assert_eq!(assessment.answer, Answer::RateLimited);
        assert_eq!(assessment.breaker, BreakerOutcome::Ignored);
        assert_eq!(assessment.verdict, Verdict::RetryNotActed);
        // No Retry-After: the reset is the least delay before a retry.
        assert_eq!(assessment.server_delay, Some(Duration::from_secs(600)));
        assert_eq!(assessment.pause, None);
    }

    #[test]
    fn a_plain_403_is_a_final_breaker_success() {
        let signals = Signals::default();
        let breaker = BreakerConfig::default();
        let assessment = DefaultClassifier.assess(
            &Attempted::new(Attempt::Status(StatusCode::FORBIDDEN), &signals)
                .with_breaker(Some(&breaker)),
        );
        assert!(!assessment.rate_limited);
        assert_eq!(assessment.breaker, BreakerOutcome::Success);
        assert_eq!(assessment.verdict, Verdict::Final);
    }

    #[test]
    fn retry_after_on_429_and_503_pauses_and_an_exhausted_dimension_pauses_alone() {
        let signals = Signals {
            retry_after: Some(Duration::from_secs(3)),
            ..Signals::default()
        };
        let tokens = crate::limiter::Dimension::Tokens;
        for status in [
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::SERVICE_UNAVAILABLE,
        ] {
            let assessment = DefaultClassifier.assess(
                &Attempted::new(Attempt::Status(status), &signals)
                    .with_inspection(Inspection::exhausted(tokens)),
            );
            assert_eq!(
                assessment.pause,
                Some(Pause {
                    dimension: Some(tokens),
                    delay: Duration::from_secs(3)
                })
            );
            assert_eq!(assessment.server_delay, Some(Duration::from_secs(3)));
            assert_eq!(assessment.verdict, Verdict::RetryNotActed);
        }
        // A 500 with Retry-After is no pause.
        let assessment = DefaultClassifier.assess(&Attempted::new(
            Attempt::Status(StatusCode::INTERNAL_SERVER_ERROR),
            &signals,
        ));
        assert_eq!(assessment.pause, None);
    }

    #[test]
    fn a_permanent_refusal_is_final_and_transport_failures_trip_the_breaker() {
        let signals = Signals::default();
        let quota = DefaultClassifier.assess(
            &Attempted::new(Attempt::Status(StatusCode::TOO_MANY_REQUESTS), &signals)
                .with_inspection(Inspection::permanent()),
        );
        assert_eq!(quota.verdict, Verdict::Final);
        for attempt in [
            Attempt::ConnectError,
            Attempt::Timeout,
            Attempt::Disconnected,
        ] {
            let assessment = DefaultClassifier.assess(&Attempted::new(attempt, &signals));
            assert_eq!(assessment.breaker, BreakerOutcome::Failure, "{attempt:?}");
            assert_ne!(assessment.verdict, Verdict::Final, "{attempt:?}");
        }
        let other = DefaultClassifier.assess(&Attempted::new(Attempt::OtherError, &signals));
        assert_eq!(
            (other.breaker, other.verdict),
            (BreakerOutcome::Ignored, Verdict::Final)
        );
    }
}
