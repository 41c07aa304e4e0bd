//! Refusals with Retry-After and no rate-limit headers: the server says "too many, come back
//! in T" and nothing of its quota, so the lane guesses the quota from what it accepted, then
//! refines the guess refusal by refusal. The guess moves through explicit [`Phase`]s:
//!
//! | phase | on | becomes | transition |
//! |---|---|---|---|
//! | Measuring | a refusal | Ramping | [`first_guess`](Phase::first_guess) |
//! | Ramping | an accepted request | Ramping, a step up | [`ramp_up`](Phase::ramp_up) |
//! | Ramping | a refusal | Resumed | [`resume`](Phase::resume) |
//! | Resumed | a refusal within a cycle, the first or with far fewer accepted than a cycle did | Resumed, 5 % slower | [`slip`](Phase::slip) |
//! | Resumed, slipped | a refusal within a cycle, about a cycle's quota accepted | Probing | [`probe`](Phase::probe) |
//! | Resumed | a refusal after a cycle | Holding, at the last quota a cycle accepted | [`hold`](Phase::hold) |
//! | Probing, Holding | a refusal | Holding | [`back_off`](Phase::back_off) |
//! | Holding | its last held window's end | Probing | [`renew`](Phase::renew) |
//! | any | an idle gap | Measuring | the learner's `tick` |
//!
//! - **Measuring**: the requests the server accepted over the *active* period (from the first
//!   departure after the previous pause or after an idle gap, to the end of this pause) are
//!   the first guess of its rate: a burst's worth, far below it.
//! - **Ramping**: the rate grows with every accepted request, doubling every quarter cycle (as
//!   TCP's slow start), until refused.
//! - **Resumed**: refused while ramping, the lane resumes at the step before, which the server
//!   accepted, less 2 %, and closes in on the refused step (less 2 %) a quarter of the gap a
//!   cycle: a refusal costs a whole pause, so the lane never probes beyond where it was
//!   refused, and the probe that is refused, if one is, was a small step above the last
//!   accepted one.
//! - **Slipped**: refused within a cycle of resuming, the pace is within the jitter of a
//!   bucket's rate (an arrival came a hair early), or a fixed window was spent. The lane takes
//!   the cheaper mistake first: 5 % slower, closing in again from there.
//! - **Probing**: refused within a cycle again after about a cycle's quota, the server counts
//!   a fixed window (its count, not the rate, was exceeded; a leaky bucket refuses a pace a
//!   little too fast only now and then). What it accepted since the pause is its quota per
//!   cycle, probed 5 % higher each window. Far fewer accepted than a whole cycle did before is
//!   no window's quota: the lane slips again.
//! - **Holding**: a probe refused, the quota backs off 5 % and holds a while before probing
//!   again (additive increase, multiplicative decrease).
//!
//! An idle lane forgets its guess: the guess is a measure of a busy period, and after an idle
//! one the server's window has long reset.
//!
//! # Guarantees
//!
//! - Each refusal is learned from once: answers to attempts that left before the pause it
//!   asked for ended teach nothing.
//! - Every pace holds from the end of the pause for a whole cycle, so the requests the pause
//!   piled up leave at that pace, not all at once.

use std::time::Duration;

use tokio::time::Instant;

use super::measure::Measure;
use super::pacing::{interval_of, spacing, Pacing, MIN_RATE};
use super::protocol::Actions;
use super::window::LearnedWindow;
use crate::limiter::Limit;
use crate::time::later;

/// Windows a quota guessed from refusals is held, once a probe was refused, before the lane
/// probes upwards again (the server's quota may have grown).
const HOLD_WINDOWS: u32 = 60;
/// The share of the rate accepted during a ramp that it resumes at once refused.
const RAMP_RESUME_MARGIN: f64 = 0.98;
/// The share of its pace a lane resumed after a ramp slows to when refused within a cycle
/// (see [`Phase::slip`]).
const SLIP_SHARE: f64 = 0.95;
/// Quarters of the cycle in which a ramp doubles its rate.
const RAMP_DOUBLINGS_PER_CYCLE: u32 = 4;

/// Slow start after a first refusal with Retry-After, as a ramp: the rate doubles every
/// quarter of the cycle, growing with each accepted request (at most twofold per request, as
/// TCP's slow start per round trip) rather than once per cycle. A refusal then comes within one
/// small step of the server's rate, and the lane resumes at the step before, which the server
/// accepted.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Ramp {
    /// Requests per second now.
    rate: f64,
    /// The rate before the last step: what the server accepted.
    before: f64,
    /// The rate at which the last accepted request really left after the one before it
    /// (slower than the pace by the round trip between an answer and the next booking).
    sent: f64,
    /// When the request of the last step left.
    last_departure: Option<Instant>,
}

impl Ramp {
    fn at(rate: f64) -> Ramp {
        Ramp {
            rate: rate.max(MIN_RATE),
            before: rate.max(MIN_RATE),
            sent: rate.max(MIN_RATE),
            last_departure: None,
        }
    }

    /// One more accepted request, which left at `departed`: the rate grows so that it doubles
    /// every `doubling`, at most twofold, and never beyond twice the rate at which the last two
    /// requests left (a lane whose callers send slowly learns nothing about the server's rate).
    fn step(self, departed: Instant, doubling: Duration) -> Ramp {
        let per_doubling = (1.0 / self.rate) / doubling.as_secs_f64().max(1e-3);
        let grown = self.rate * 2f64.powf(per_doubling.min(1.0));
        if self.last_departure.is_some_and(|last| departed <= last) {
            // An answer to an earlier request, overtaken: no step of its own.
            return self;
        }
        let sent = self
            .last_departure
            .map(|last| departed.saturating_duration_since(last).as_secs_f64())
            .filter(|gap| *gap > 0.0)
            .map_or(self.rate, |gap| 1.0 / gap);
        Ramp {
            rate: grown.min((2.0 * sent).max(self.rate)),
            before: self.rate,
            sent,
            last_departure: Some(departed),
        }
    }

    /// The rate to resume at once refused: the step before, or the rate the last accepted
    /// request really left at, whichever is slower, less a margin for the jitter of that
    /// measure (a refusal costs a whole pause).
    fn accepted(self) -> f64 {
        (self.before.min(self.sent) * RAMP_RESUME_MARGIN).max(MIN_RATE)
    }

    fn interval(self, cap: Duration) -> Duration {
        interval_of(self.rate, cap)
    }
}

/// Where the quota guessed from refusals stands (see the [module documentation](self)).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) enum Phase {
    /// Nothing guessed yet: accepted requests are counted for the first refusal to read.
    #[default]
    Measuring,
    /// Growing the guessed rate with every accepted request, until a refusal.
    Ramping {
        ramp: Ramp,
        /// The cycle the first guess was measured over.
        cycle: Duration,
    },
    /// Resumed at the ramp's last accepted step, and not refused since.
    Resumed {
        window: LearnedWindow,
        /// The quota per cycle just below the refused step, which the lane closes in on and
        /// never passes.
        ceiling: u64,
        /// The last quota a whole cycle accepted.
        clean: u64,
        /// Refused within a cycle once already, and slowed down for it.
        slipped: bool,
    },
    /// A fixed window's quota, probed upwards a window at a time.
    Probing { window: LearnedWindow },
    /// A probe was refused: the quota backed off, and holds before probing again.
    Holding {
        window: LearnedWindow,
        /// Windows still to hold, at least one (the last one held turns into probing).
        windows: u32,
    },
}

impl Phase {
    /// Whether a quota was guessed (the lane is past measuring).
    pub(super) fn is_guessed(&self) -> bool {
        *self != Phase::Measuring
    }

    /// The cycle a guessed quota counts over.
    pub(super) fn length(&self) -> Option<Duration> {
        match self {
            Phase::Measuring => None,
            Phase::Ramping { cycle, .. } => Some(*cycle),
            Phase::Resumed { window, .. }
            | Phase::Probing { window }
            | Phase::Holding { window, .. } => Some(window.length),
        }
    }

    /// A refusal with Retry-After and no rate-limit headers of an attempt that left at
    /// `departed`, pausing the lane for `delay`: paces the lane from the end of the pause on,
    /// for a whole cycle after it, and returns the next phase; `None` if it taught nothing.
    pub(super) fn learn_from_refusal(
        self,
        measure: &mut Measure,
        departed: Instant,
        delay: Duration,
        now: Instant,
        pacing: &mut Pacing,
        actions: &mut Actions,
    ) -> Option<Phase> {
        // Refusals of requests that left before the previous pause ended carry no new measure.
        if measure.predates_pause(departed) {
            return None;
        }
        let resumes = later(now, delay);
        let measured = measure.restart_after(resumes);
        let (next, interval) = match self {
            Phase::Measuring => Phase::first_guess(&measured, delay, resumes)?,
            Phase::Ramping { ramp, cycle } => Phase::resume(ramp, cycle, pacing.config().max_wait),
            Phase::Resumed {
                window,
                clean,
                slipped,
                ..
            } => match measured.accepted() {
                Some((accepted, since))
                    if now.saturating_duration_since(since) <= window.length =>
                {
                    // The first time, a pace within a hair of a bucket's rate, refused for
                    // arrivals that came closer together than they left, or a window spent.
                    if !slipped {
                        Phase::slip(window, clean)
                    } else {
                        Phase::probe(accepted, window.length)
                    }
                }
                // Refused closing in: the server's rate lies between the last quota a whole
                // cycle accepted and the one refused, a small step apart; hold the first.
                _ => Phase::hold(LearnedWindow {
                    limit: clean,
                    ..window
                }),
            },
            Phase::Probing { window } | Phase::Holding { window, .. } => Phase::back_off(window),
        };
        let cycle = next.length().unwrap_or_default();
        pacing.set_pace(
            Limit { interval, burst: 1 },
            now,
            delay.saturating_add(cycle),
            false,
            actions,
        );
        Some(next)
    }

    /// Measuring, refused: what the server accepted over the active cycle (measured to the end
    /// of the pause, which a whole-second Retry-After rounds up, so it errs low) is the first
    /// guess, ramped up from there. Returns it with its interval.
    fn first_guess(
        measured: &Measure,
        delay: Duration,
        resumes: Instant,
    ) -> Option<(Phase, Duration)> {
        let (quota, cycle) = match measured.accepted() {
            Some((accepted, since)) if resumes > since => (accepted, resumes.duration_since(since)),
            // Nothing accepted yet (a first burst refused whole, its one success still on its
            // way): one request per pause, ramped from there, so that the refused requests do
            // not all come back at once when the pause ends.
            _ if !delay.is_zero() => (1, delay),
            _ => return None,
        };
        let ramp = Ramp::at(quota as f64 / cycle.as_secs_f64().max(1e-9));
        Some((Phase::Ramping { ramp, cycle }, spacing(cycle, quota)))
    }

    /// Ramping, refused: the server's rate lies between the last step and the one before,
    /// which it accepted. Resume there, and close in on the refused step from below.
    fn resume(ramp: Ramp, cycle: Duration, cap: Duration) -> (Phase, Duration) {
        let accepted = ramp.accepted();
        let quota = (accepted * cycle.as_secs_f64()).floor().max(1.0) as u64;
        // Accepted requests spaced wider than the ramp paced them were spaced by the server:
        // its rate is that spacing, not the refused step.
        let above = if ramp.sent < ramp.before * RAMP_RESUME_MARGIN {
            ramp.sent
        } else {
            ramp.rate
        };
        let refused = above * RAMP_RESUME_MARGIN * cycle.as_secs_f64();
        let ceiling = (refused.round().max(1.0) as u64).max(quota);
        let resumed = Phase::Resumed {
            window: LearnedWindow {
                limit: quota,
                length: cycle,
            },
            ceiling,
            clean: quota,
            slipped: false,
        };
        (resumed, interval_of(accepted, cap))
    }

    /// Resumed, and refused within a cycle for the first time: the pace the ramp found is
    /// within the jitter of the server's rate (a leaky bucket refuses an arrival that came a
    /// hair early), or a fixed window was spent. Taken as the first, the cheaper mistake: the
    /// lane slows to [`SLIP_SHARE`] of its pace and closes in on the refused pace again, a
    /// quarter of the gap a cycle (refused after a cycle, it holds the last clean quota);
    /// refused within a cycle again after about a cycle's quota, it is a fixed window
    /// ([`probe`](Phase::probe)). Taken as a window at once, a bucket of 50/s was paced at
    /// 17/s for good.
    fn slip(window: LearnedWindow, clean: u64) -> (Phase, Duration) {
        let refused = window.limit.max(clean);
        let limit = ((refused as f64) * SLIP_SHARE).floor().max(1.0) as u64;
        let window = LearnedWindow { limit, ..window };
        let slipped = Phase::Resumed {
            window,
            ceiling: refused,
            clean: limit,
            slipped: true,
        };
        (slipped, spacing(window.length, limit))
    }

    /// Resumed, and refused within a cycle: a fixed window, whose quota per cycle is what it
    /// accepted since the pause. A low guess (the cycle was measured to the end of a pause
    /// that a whole-second Retry-After rounds up), so it is probed upwards.
    fn probe(accepted: u64, length: Duration) -> (Phase, Duration) {
        let window = LearnedWindow {
            limit: accepted,
            length,
        };
        (Phase::Probing { window }, spacing(length, accepted))
    }

    /// A guessed quota refused: the quota probed was too high. Back off 5 % and hold there a
    /// while.
    fn back_off(window: LearnedWindow) -> (Phase, Duration) {
        Phase::hold(LearnedWindow {
            // In u128: a quota probed for long enough must not overflow.
            limit: u64::try_from(u128::from(window.limit) * 95 / 100)
                .unwrap_or(u64::MAX)
                .max(1),
            ..window
        })
    }

    /// Holds `window` a while before probing again.
    fn hold(window: LearnedWindow) -> (Phase, Duration) {
        let holding = Phase::Holding {
            window,
            windows: HOLD_WINDOWS,
        };
        (holding, spacing(window.length, window.limit))
    }

    /// The server's window has reset: a ramp paces at its rate, a guessed quota is probed 5 %
    /// higher or held one window more. Returns the pace of the new window (its interval, and
    /// how long it holds), if a quota is guessed.
    pub(super) fn renew(&mut self, cap: Duration) -> Option<(Duration, Duration)> {
        let window = match self {
            Phase::Measuring => return None,
            Phase::Ramping { ramp, cycle } => return Some((ramp.interval(cap), *cycle)),
            Phase::Resumed {
                window,
                ceiling,
                clean,
                ..
            } => {
                // A quarter of the gap: refused, the probe was a small step above the last
                // quota a whole cycle accepted, which the lane then holds.
                *clean = window.limit;
                let gap = ceiling.saturating_sub(window.limit);
                if gap > 0 {
                    window.limit = window.limit.saturating_add((gap / 4).max(1));
                }
                *window
            }
            Phase::Probing { window } => {
                window.limit = window.limit.saturating_add((window.limit / 20).max(1));
                *window
            }
            Phase::Holding { window, windows } => {
                let window = *window;
                *windows -= 1;
                if *windows == 0 {
                    *self = Phase::Probing { window };
                }
                window
            }
        };
        window.interval().map(|interval| (interval, window.length))
    }

    /// An accepted request, which left at `departed`, while ramping: one step up (see
    /// [`Ramp`]).
    pub(super) fn ramp_up(
        &mut self,
        measure: &Measure,
        departed: Instant,
        now: Instant,
        pacing: &mut Pacing,
        actions: &mut Actions,
    ) {
        let Phase::Ramping { ramp, cycle } = self else {
            return;
        };
        // Answers to requests sent before the pause ended were paced by something else.
        if measure.predates_pause(departed) {
            return;
        }
        let stepped = ramp.step(departed, *cycle / RAMP_DOUBLINGS_PER_CYCLE);
        if stepped == *ramp {
            return;
        }
        *ramp = stepped;
        let interval = stepped.interval(pacing.config().max_wait);
        // Waiters booked at the slower step book again: left at their slots, a queue would
        // keep the lane steps behind its ramp, and the ramp would overshoot the server's rate
        // before the first refusal told it so.
        pacing.set_pace(Limit { interval, burst: 1 }, now, *cycle, true, actions);
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{learner, plain};
    use super::super::protocol::{Answer, Observation, Pause};
    use super::super::PaceLearner;
    use super::*;
    use crate::limiter::Dimension;

    #[test]
    fn a_quota_probed_without_end_saturates_instead_of_overflowing() {
        let huge = LearnedWindow {
            limit: u64::MAX - 1,
            length: Duration::from_secs(1),
        };
        let mut probing = Phase::Probing { window: huge };
        assert!(probing.renew(Duration::from_secs(60)).is_some());
        assert!(matches!(probing, Phase::Probing { window } if window.limit == u64::MAX));
        let (holding, _) = Phase::back_off(huge);
        let Phase::Holding { window, .. } = holding else {
            panic!("a refused probe holds: {holding:?}");
        };
        assert_eq!(
            window.limit,
            u64::try_from(u128::from(huge.limit) * 95 / 100).unwrap()
        );
    }

    /// Retry-After refusals with no headers: the first measures what the server accepted over
    /// the cycle; accepted requests then ramp the rate up (doubling every quarter cycle, at
    /// most twofold per request) until a refusal, after which the lane resumes at the step
    /// before, which the server accepted, and holds it.
    #[test]
    fn retry_after_refusals_ramp_up_and_resume_at_the_step_before() {
        let mut learner = learner(Duration::from_secs(10));
        let start = Instant::now();
        let answer = retry_after_one_second;
        let ms = |ms: u64| start + Duration::from_millis(ms);
        for at in [100, 200, 300, 400, 500] {
            learner.observe(&answer(ms(at), Answer::Accepted));
        }
        learner.observe(&answer(ms(600), Answer::RateLimited));
        // Five accepted over the cycle from 100 ms to the end of the pause at 1 600 ms.
        let cycle = Duration::from_millis(1_500);
        assert_eq!(learner_rate_interval(&learner), learner_interval(cycle, 5));
        // Requests leave at the pace from the end of the pause on, each accepted.
        let mut at = ms(1_600);
        let mut rates = vec![1.0 / learner_rate_interval(&learner).as_secs_f64()];
        while *rates.last().unwrap() < 40.0 {
            at += learner_rate_interval(&learner);
            learner.observe(&answer(at, Answer::Accepted));
            rates.push(1.0 / learner_rate_interval(&learner).as_secs_f64());
        }
        for step in rates.windows(2) {
            assert!(
                step[1] > step[0] && step[1] <= step[0] * 2.0 + 1e-9,
                "{rates:?}"
            );
        }
        // From 3.3/s to 40/s, doubling every 375 ms: about 1.3 s, well within a few cycles.
        let ramp_time = at.duration_since(ms(1_600));
        assert!(ramp_time < Duration::from_millis(1_600), "{ramp_time:?}");
        let (refused_rate, accepted_rate) = (rates[rates.len() - 1], rates[rates.len() - 2]);
        // Refused at the last step: the lane resumes at the one before (less a 2 % margin), the
        // server's rate being within that small step.
        at += learner_rate_interval(&learner);
        learner.observe(&answer(at, Answer::RateLimited));
        let resumed = 1.0 / learner_rate_interval(&learner).as_secs_f64();
        let resumes_at = accepted_rate * RAMP_RESUME_MARGIN;
        assert!(
            (resumed - resumes_at).abs() < 1e-6,
            "{resumed} {accepted_rate}"
        );
        // The ramp's steps are small near 40/s: refused within a tenth of the step before.
        assert!(refused_rate <= accepted_rate * 1.1);
        // Cycle after cycle it closes in on the refused step from below, never past it less
        // the margin (a refusal costs a whole second), never back below where it resumed.
        let mut before = resumed;
        for _ in 0..6 {
            let end = learner.reset_at().unwrap();
            learner.observe(&answer(end - Duration::from_millis(1), Answer::Accepted));
            learner.tick(end);
            let rate = 1.0 / learner_rate_interval(&learner).as_secs_f64();
            assert!(rate >= before * 0.97, "{rate} after {before}");
            assert!(rate <= refused_rate * RAMP_RESUME_MARGIN + 1e-6, "{rate}");
            before = rate;
        }
    }

    /// A ramp refused after a large step (a slow server: twofold at 1/s) resumes at the step
    /// before and probes upwards from there, 5 % a cycle.
    #[test]
    fn a_ramp_refused_after_a_large_step_probes_upwards() {
        let mut learner = learner(Duration::from_secs(10));
        let start = Instant::now();
        let observation = retry_after_one_second;
        learner.observe(&observation(start, Answer::RateLimited));
        // Nothing accepted: one request per one-second pause.
        assert_eq!(learner_rate_interval(&learner), Duration::from_secs(1));
        let mut at = start + Duration::from_secs(1);
        learner.observe(&observation(at, Answer::Accepted));
        // Twofold at most: 2/s.
        assert_eq!(learner_rate_interval(&learner), Duration::from_millis(500));
        at += Duration::from_millis(500);
        learner.observe(&observation(at, Answer::RateLimited));
        // Back to the 1/s accepted (less the 2 % margin).
        let resumed = 1.0 / learner_rate_interval(&learner).as_secs_f64();
        assert!((resumed - RAMP_RESUME_MARGIN).abs() < 1e-6, "{resumed}");
        let end = learner.reset_at().unwrap();
        learner.observe(&observation(
            end - Duration::from_millis(1),
            Answer::Accepted,
        ));
        learner.tick(end);
        // One more per one-second cycle (5 %, at least one).
        assert_eq!(learner_rate_interval(&learner), Duration::from_millis(500));
    }

    /// One request answered at the instant it left: accepted, or refused with a Retry-After of
    /// one second and no rate-limit headers.
    fn retry_after_one_second(at: Instant, answer: Answer) -> Observation<'static> {
        Observation {
            pause: (answer == Answer::RateLimited).then_some(Pause {
                dimension: None,
                delay: Duration::from_secs(1),
            }),
            ..plain(at, answer)
        }
    }

    fn learner_rate_interval(learner: &PaceLearner) -> Duration {
        learner.limit(Dimension::Requests).unwrap().interval
    }

    fn learner_interval(cycle: Duration, quota: u32) -> Duration {
        cycle / quota
    }
}
