//! Observations and learners shared by the unit tests of the pace learner's parts.

use std::time::Duration;

use tokio::time::Instant;

use super::protocol::{Answer, InFlight, Observation, PaceConfig};
use super::PaceLearner;
use crate::signals::{HeaderFamily, RateLimits, Window};

/// A learner with nothing configured and a cap of `cap`.
pub(super) fn learner(cap: Duration) -> PaceLearner {
    PaceLearner::new(PaceConfig {
        configured: [None; 4],
        max_wait: cap,
    })
}

/// GitHub's headers with a `requests` window, or OpenAI's with only `tokens`.
pub(super) fn limits(requests: Option<Window>, tokens: Option<Window>) -> RateLimits {
    RateLimits {
        family: if requests.is_some() {
            HeaderFamily::GitHub
        } else {
            HeaderFamily::OpenAi
        },
        requests,
        tokens,
        input_tokens: None,
        output_tokens: None,
        resource: None,
    }
}

/// A request of ten tokens, alone in flight, accepted at the instant it left, with `limits`.
pub(super) fn accepted<'a>(now: Instant, limits: &'a RateLimits) -> Observation<'a> {
    Observation {
        now,
        departed: now,
        booked: now,
        answer: Answer::Accepted,
        pause: None,
        limits: Some(limits),
        answered: [1, 10, 0, 0],
        estimated: [0; 4],
        seq: 0,
        in_flight: InFlight {
            requests: 1,
            units: [1, 10, 0, 0],
        },
    }
}

/// A request alone in flight, answered at the instant it left with no header and no pause.
pub(super) fn plain(now: Instant, answer: Answer) -> Observation<'static> {
    Observation {
        now,
        departed: now,
        booked: now,
        answer,
        pause: None,
        limits: None,
        answered: [1, 0, 0, 0],
        estimated: [0; 4],
        seq: 0,
        in_flight: InFlight {
            requests: 1,
            units: [1, 0, 0, 0],
        },
    }
}
