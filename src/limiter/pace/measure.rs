//! The lane's active period: the departures and accepted requests counted since it last went
//! idle or was paused.
//!
//! Learning from refusals reads a rate as "requests accepted over the time they took", and
//! CUBIC reads the rate the lane offered; either is wrong if it counts time in which the lane
//! sent nothing. So a [`Measure`] restarts after an idle gap (a second, or two paced
//! intervals, whichever is longer) and after each pause a refusal asked for, and it ignores
//! answers to attempts that left before that pause ended.

use std::time::Duration;

use tokio::time::Instant;

use super::protocol::Answer;
use crate::limiter::Limit;

/// An idle gap between two departures shorter than this never restarts a measurement.
pub(super) const MIN_IDLE_GAP: Duration = Duration::from_secs(1);

/// The shortest period an offered rate is measured over (a burst of simultaneous requests is
/// not an infinite rate).
const MIN_MEASURE: Duration = Duration::from_millis(10);

/// The idle gap of a lane paced at `requests`: two intervals, and at least [`MIN_IDLE_GAP`].
pub(super) fn idle_gap(requests: Option<Limit>) -> Duration {
    requests
        .map_or(MIN_IDLE_GAP, |limit| limit.interval.saturating_mul(2))
        .max(MIN_IDLE_GAP)
}

/// The active period over which accepted requests are counted, to learn from a refusal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Measure {
    /// Departure of the first accepted request counted.
    since: Option<Instant>,
    /// Accepted requests counted.
    accepted: u64,
    /// Attempts that left before this instant (during or before the previous pause) teach nothing.
    after: Option<Instant>,
    /// The latest departure seen, to tell an idle gap.
    last_departure: Option<Instant>,
    /// First departure of the active period, and attempts since, to measure the offered rate.
    first_departure: Option<Instant>,
    departures: u64,
}

impl Measure {
    /// Counts an answer to an attempt that left at `departed`, restarting the measurement
    /// first if the lane was idle for longer than `idle_gap`. Returns how long it was idle
    /// then: time in which nothing was learned.
    pub(super) fn note(
        &mut self,
        departed: Instant,
        answer: Answer,
        idle_gap: Duration,
    ) -> Option<Duration> {
        if self.predates_pause(departed) {
            return None;
        }
        let idle = self
            .last_departure
            .map(|last| departed.saturating_duration_since(last))
            .filter(|gap| *gap > idle_gap);
        if idle.is_some() {
            self.since = None;
            self.accepted = 0;
            self.first_departure = None;
            self.departures = 0;
        }
        self.departures += 1;
        if self.first_departure.is_none_or(|first| departed < first) {
            self.first_departure = Some(departed);
        }
        if self.last_departure.is_none_or(|last| departed > last) {
            self.last_departure = Some(departed);
        }
        if answer == Answer::Accepted {
            self.accepted += 1;
            self.since = Some(self.since.map_or(departed, |since| since.min(departed)));
        }
        idle
    }

    /// Whether an attempt that left at `departed` left before the last pause ended: its answer
    /// belongs to a congestion already learned from.
    pub(super) fn predates_pause(&self, departed: Instant) -> bool {
        self.after.is_some_and(|after| departed < after)
    }

    /// Ends the measurement at a refusal whose pause ends at `resumes`, and returns it; the
    /// next one counts attempts that leave from then on.
    pub(super) fn restart_after(&mut self, resumes: Instant) -> Measure {
        let measured = *self;
        *self = Measure {
            after: Some(resumes),
            last_departure: measured.last_departure,
            ..Measure::default()
        };
        measured
    }

    /// The accepted requests counted and the departure of the first of them, if any.
    pub(super) fn accepted(&self) -> Option<(u64, Instant)> {
        self.since
            .filter(|_| self.accepted > 0)
            .map(|since| (self.accepted, since))
    }

    /// Whether nothing left for longer than `gap` before `now`.
    pub(super) fn idle_at(&self, now: Instant, gap: Duration) -> bool {
        self.last_departure
            .is_some_and(|last| now.saturating_duration_since(last) > gap)
    }

    /// Requests per second sent over the active period, up to `now`.
    pub(super) fn offered_rate(&self, now: Instant) -> Option<f64> {
        let first = self.first_departure?;
        let elapsed = now.saturating_duration_since(first).max(MIN_MEASURE);
        Some(self.departures as f64 / elapsed.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::learner;
    use super::super::protocol::{InFlight, Observation, Pause};
    use super::*;
    use crate::limiter::Dimension;

    #[test]
    fn idle_time_is_not_measured_as_traffic() {
        let mut learner = learner(Duration::from_secs(120));
        let start = Instant::now();
        let answer = |at: Instant, answer: Answer, pause: Option<Pause>| Observation {
            now: at,
            departed: at,
            booked: at,
            answer,
            pause,
            limits: None,
            answered: [1, 0, 0, 0],
            estimated: [0; 4],
            seq: 0,
            in_flight: InFlight::default(),
        };
        learner.observe(&answer(start, Answer::Accepted, None));
        // 20 s idle, then 20 accepted in 100 ms and a refusal asking for 1 s.
        let busy = start + Duration::from_secs(20);
        for i in 0..20 {
            learner.observe(&answer(
                busy + Duration::from_millis(5 * i),
                Answer::Accepted,
                None,
            ));
        }
        let refused_at = busy + Duration::from_millis(100);
        let pause = Pause {
            dimension: None,
            delay: Duration::from_secs(1),
        };
        learner.observe(&answer(refused_at, Answer::RateLimited, Some(pause)));
        // 20 over the 1.1 s active cycle, not 21 over 21.1 s.
        let rate = 1.0
            / learner
                .limit(Dimension::Requests)
                .unwrap()
                .interval
                .as_secs_f64();
        assert!((17.0..=20.0).contains(&rate), "{rate}/s");
    }
}
