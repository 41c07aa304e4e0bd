//! Windows measured from headers: what a window family's `remaining` R and `reset` T (GitHub,
//! IETF, Flask-Limiter's `X-RateLimit-*`, T at the window's end) tell about its quota.
//!
//! The lane sends no faster than R/T until the reset, and R = 0 pauses it until then.
//! Requests still in flight when the server answered are taken off R: the server had not
//! counted them yet. Successive windows' resets tell the window's length W: the step between
//! two of them, so a reset quantised to whole seconds or announced late cancels out in the
//! difference. Once W and the quota L are known the lane paces at L/W, with `remaining` as
//! the hard cap until the window's end, and the next window at L/W from its start.
//!
//! A moving window (a slot frees as the oldest request in it expires) shows as resets that
//! move on while `remaining` holds, or as a spent window that accepts a later request and is
//! spent again; once seen, R = 0 pauses only until the next slot frees, not until the
//! announced reset.
//!
//! A reset in whole seconds (an epoch against a `Date` of whole seconds, as Flask-Limiter and
//! slowapi send it, or delta seconds) places the window's end only to within a second, and may
//! be announced a second late: the remaining is paced over a second less than announced (the
//! pause at R = 0 still lasts until the announced end), a renewal is told by `remaining` rather
//! than by the reset's step, and the step between two windows' resets is rounded to whole
//! seconds.
//!
//! # Guarantees
//!
//! - No pace, and no pause at R = 0, lasts beyond the announced reset or the cap.
//! - A jittering reset (the same `remaining`, the end moved by less than half a window) is
//!   never read as a new window.

use std::time::Duration;

use tokio::time::Instant;

use super::measure::MIN_IDLE_GAP;
use super::pacing::{spacing, Pacing};
use super::protocol::{Actions, Answer, Observation};
use crate::limiter::Limit;
use crate::signals::Window;
use crate::time::later;

/// Two announced resets closer than this belong to one window (rounding, jitter).
const MIN_WINDOW_STEP: Duration = Duration::from_millis(250);

/// A window's quota: `limit` requests per `length`, announced by headers or guessed from
/// refusals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct LearnedWindow {
    pub(super) limit: u64,
    pub(super) length: Duration,
}

impl LearnedWindow {
    /// The interval that paces a whole window at its quota, if neither is zero.
    pub(super) fn interval(self) -> Option<Duration> {
        (self.limit > 0 && !self.length.is_zero()).then(|| spacing(self.length, self.limit))
    }
}

/// A fixed window of `limit` units per `length`, paced evenly: one unit per length / limit,
/// the whole limit as burst (the window allows it at once).
pub(super) fn fixed_window_pace(limit: u64, length: Duration) -> Option<Limit> {
    if limit == 0 {
        return None;
    }
    let interval = spacing(length, limit);
    (!interval.is_zero()).then_some(Limit {
        interval,
        burst: limit,
    })
}

/// The server's current window, as its announcements tell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct WindowTrack {
    /// Its announced reset (the first announcement of it).
    announced: Instant,
    /// When its first answer arrived: it opened no later than that.
    opened: Instant,
    /// When the request of its latest answer so far left.
    departed: Instant,
    /// The last `remaining` it announced.
    remaining: u64,
    /// The time to its reset when it was first announced: about its length, or more by the
    /// announcement's lateness.
    first_reset_in: Duration,
}

/// Follows a window family's announced resets (see the [module documentation](self)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct WindowReader {
    /// The server's current window, from its announced resets.
    current: Option<WindowTrack>,
    /// The window's length, from the steps between successive windows' resets.
    length: Option<Duration>,
    /// The server's window was seen to move on without renewing (a moving window: a slot
    /// frees as the oldest request in it expires, not only at the window's end).
    sliding: bool,
}

impl WindowReader {
    /// With `remaining` R and `reset` T, sends no faster than R/T until the reset; R = 0
    /// pauses the lane until the reset. T is capped, so no pace waits longer than the cap.
    /// `announced` is the window the headers taught before, if they did; returns the one they
    /// teach now, if they name a quota.
    pub(super) fn pace_from(
        &mut self,
        window: Window,
        observation: &Observation<'_>,
        announced: Option<LearnedWindow>,
        pacing: &mut Pacing,
        actions: &mut Actions,
    ) -> Option<LearnedWindow> {
        let (now, in_flight) = (observation.now, observation.in_flight.requests);
        let (Some(announced_remaining), Some(reset_in)) = (window.remaining, window.reset_in)
        else {
            return None;
        };
        if reset_in.is_zero() {
            return None;
        }
        // The span the remaining is paced over: the soonest the window may reset.
        let paced_over = earliest_reset(reset_in).min(pacing.config().max_wait);
        let reset_in = reset_in.min(pacing.config().max_wait);
        let length = self.track(
            reset_in,
            announced_remaining,
            window.limit,
            now,
            observation.departed,
            observation.answer == Answer::Accepted,
        );
        // Requests already on their way were not counted by the server when it answered.
        let unseen = in_flight.saturating_sub(1);
        let remaining = announced_remaining.saturating_sub(unseen);
        // The window's end: the announced reset, or sooner when the window's length is known
        // and the announcement is late (whole seconds rounded up, a reset announced a second
        // late): the window opened at most this long ago.
        let announced_end = later(now, reset_in);
        let end = match (length, self.current) {
            (Some(length), Some(track)) => {
                let estimated = later(track.opened, length);
                if estimated > now && estimated < announced_end {
                    estimated
                } else {
                    announced_end
                }
            }
            _ => announced_end,
        };
        let until_end = end.saturating_duration_since(now);
        if remaining == 0 {
            // A moving window frees its next slot when its oldest request expires: one quota
            // interval after the lane's own pace spent it, long before the announced reset.
            // Counted from when the answered request left: paced at the quota, the next one is
            // due then, and a pause from its answer would hold every departure back by the
            // round trip.
            let pause = match (length, window.limit) {
                (Some(length), Some(limit)) if self.sliding && limit > 0 => {
                    let frees = later(observation.departed, spacing(length, limit));
                    until_end.min(frees.saturating_duration_since(now))
                }
                _ => until_end,
            };
            pacing.cool_down(None, pause, now, "rate-limit remaining 0", actions);
            return None;
        }
        // Paced at the window's quota over its length once both are known (the reset alone,
        // quantised or late, would halve the pace); else the remaining over the time left.
        let interval = match (length, window.limit) {
            (Some(length), Some(limit)) if limit > 0 => spacing(length, limit),
            _ => spacing(paced_over, remaining),
        };
        pacing.set_pace(
            Limit { interval, burst: 1 },
            now,
            until_end.max(Duration::from_nanos(1)),
            false,
            actions,
        );
        let limit = window.limit?;
        // Until successive resets tell the window's length, the longest reset seen is the best
        // estimate of it.
        let longest = announced.map_or(reset_in, |known| known.length.max(reset_in));
        Some(LearnedWindow {
            limit,
            length: length.unwrap_or(longest),
        })
    }

    /// Follows the announced resets: a later reset with more remaining than before is a new
    /// window, and the shortest step between two windows' resets is the window's length (a
    /// constant lateness or rounding cancels out in the difference). Returns the length once
    /// known.
    fn track(
        &mut self,
        reset_in: Duration,
        remaining: u64,
        limit: Option<u64>,
        now: Instant,
        departed: Instant,
        accepted: bool,
    ) -> Option<Duration> {
        let announced = later(now, reset_in);
        let fresh = WindowTrack {
            announced,
            opened: now,
            departed,
            remaining,
            first_reset_in: reset_in,
        };
        // A reset in whole seconds moves on by up to a second within one window and by as
        // little as nothing from one window to the next, so its step tells no renewal from
        // jitter: a later answer that found more remaining than before does, and so does one
        // that found a whole window less one as before (a fixed window's first answer, after a
        // window that saw only its first).
        // An answer overtaken by a later one (its request left earlier) renews nothing.
        let whole_seconds_renewal = |track: &WindowTrack| {
            is_whole_seconds(reset_in)
                && departed > track.departed
                && announced > track.announced
                && (remaining > track.remaining
                    || (remaining == track.remaining && limit == Some(remaining.saturating_add(1))))
        };
        // A window that said it was spent accepted a later request and is spent again: a
        // slot freed without the window renewing (a moving window). A fixed window refuses
        // every request once spent, until it renews with a whole quota.
        let spent_yet_accepted = |track: &WindowTrack| {
            accepted && remaining == 0 && track.remaining == 0 && departed > track.departed
        };
        match self.current {
            Some(track)
                if announced > later(track.announced, MIN_WINDOW_STEP)
                    || whole_seconds_renewal(&track)
                    || spent_yet_accepted(&track) =>
            {
                let step = announced.duration_since(track.announced);
                // The server freed capacity: more remains than before (a fixed window renewed),
                // or as much as before while the reset moved on by half the window as first
                // announced or more (a moving window: its oldest requests expired while the
                // lane kept spending; half, so the jitter of a reset given in whole seconds
                // from now is never read as a window).
                let renewed = remaining > track.remaining || whole_seconds_renewal(&track);
                let moved_on = remaining == track.remaining
                    && remaining > 0
                    && step.saturating_mul(2) >= track.first_reset_in;
                let freed = spent_yet_accepted(&track);
                self.sliding |= (moved_on || freed) && !renewed;
                if renewed || moved_on || freed {
                    // Windows back to back step by their length; after an idle gap the step is
                    // longer than a window was ever announced to be, and teaches nothing. A slot
                    // freed in a spent window tells when its oldest request expired, not the
                    // window's length.
                    let measures = renewed || moved_on;
                    if measures && step <= track.first_reset_in.saturating_add(MIN_IDLE_GAP) {
                        let step = whole_seconds(step, reset_in);
                        self.length = Some(self.length.map_or(step, |length| length.min(step)));
                    }
                    self.current = Some(fresh);
                } else {
                    self.current = Some(WindowTrack {
                        remaining,
                        departed: departed.max(track.departed),
                        ..track
                    });
                }
            }
            Some(ref mut track) => {
                track.remaining = remaining;
                track.departed = departed.max(track.departed);
            }
            None => self.current = Some(fresh),
        }
        self.length
    }
}

/// The soonest the window may reset when it is announced to reset in `reset_in`: a second
/// sooner when the reset is given in whole seconds (rounded up, or measured against a `Date`
/// truncated to the second), never less than half the announcement. The remaining is paced
/// over this span; the pause at `remaining: 0` still lasts until the announced reset, so a
/// lane that spent the window early waits, and is not refused.
fn earliest_reset(reset_in: Duration) -> Duration {
    if !is_whole_seconds(reset_in) {
        return reset_in;
    }
    reset_in
        .saturating_sub(Duration::from_secs(1))
        .max(reset_in / 2)
}

/// Whether a reset is given in whole seconds (an epoch against a `Date` of whole seconds, or
/// delta seconds): it places the window's end only to within a second.
fn is_whole_seconds(reset_in: Duration) -> bool {
    reset_in.subsec_nanos() == 0
}

/// `span` rounded to the nearest whole second.
fn nearest_seconds(span: Duration) -> Duration {
    Duration::from_secs(span.as_secs_f64().round() as u64)
}

/// The step between two windows' announced resets, as far as the announcement can tell it.
/// Resets in whole seconds place each window's end only to within a second, so the step comes
/// out anywhere between a second short and a second long of the window's length: it is
/// rounded to the nearest whole second (the unit in which such a server counts its windows),
/// at least one. Read as it came, a step of a few hundred milliseconds paced a one-second window several times too
/// fast, and a rounding up of every step read it as two.
fn whole_seconds(step: Duration, reset_in: Duration) -> Duration {
    if !is_whole_seconds(reset_in) {
        return step;
    }
    nearest_seconds(step).max(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{accepted, learner, limits};
    use super::super::protocol::{Action, Answer};
    use super::*;
    use crate::limiter::Dimension;
    use crate::signals::{HeaderFamily, RateLimits};

    /// The requests pace the learner set, if it set one.
    fn requests_pace(actions: &Actions) -> Option<Limit> {
        actions.iter().find_map(|action| match action {
            Action::SetLimit {
                dimension: Dimension::Requests,
                limit,
                ..
            } => limit,
            _ => None,
        })
    }

    #[test]
    fn a_window_announcing_a_limit_of_zero_paces_nothing_and_never_panics() {
        assert_eq!(fixed_window_pace(0, Duration::from_secs(60)), None);
        assert_eq!(spacing(Duration::from_secs(1), 0), Duration::from_secs(1));
        let pace = fixed_window_pace(60, Duration::from_secs(60)).expect("a pace");
        assert_eq!((pace.interval, pace.burst), (Duration::from_secs(1), 60));
    }

    fn window_limits(remaining: u64, reset_in: Duration) -> RateLimits {
        RateLimits {
            family: HeaderFamily::Ietf,
            requests: Some(Window {
                limit: Some(10),
                remaining: Some(remaining),
                reset_in: Some(reset_in),
            }),
            tokens: None,
            input_tokens: None,
            output_tokens: None,
            resource: None,
        }
    }

    /// 10 requests left until a reset in 5 s, in whole seconds: one every 400 ms.
    #[test]
    fn the_remaining_over_the_time_to_the_reset_is_the_pace() {
        let mut learner = learner(Duration::from_secs(10));
        let now = Instant::now();
        let limits = RateLimits {
            requests: Some(Window {
                limit: Some(100),
                remaining: Some(10),
                reset_in: Some(Duration::from_secs(5)),
            }),
            family: HeaderFamily::Ietf,
            tokens: None,
            input_tokens: None,
            output_tokens: None,
            resource: None,
        };
        let actions = learner.observe(&Observation {
            now,
            departed: now,
            booked: now,
            answer: Answer::Accepted,
            pause: None,
            limits: Some(&limits),
            answered: [1, 0, 0, 0],
            estimated: [0; 4],
            seq: 0,
            in_flight: Default::default(),
        });
        let set = requests_pace(&actions);
        // Whole seconds: the reset may be up to a second sooner, so the ten go over 4 s.
        assert_eq!(set.unwrap().interval, Duration::from_millis(400));
    }

    /// A fixed window of 10 per second whose reset is an epoch in whole seconds, read against
    /// a `Date` in whole seconds (Flask-Limiter, slowapi): the first answer of one window came
    /// late in it (the lane had sat out its start), the first of the next early, so their
    /// announced resets step by a third of a second. Read as the window's length that step
    /// paced the lane three times too fast; in whole seconds it is one second.
    #[test]
    fn resets_in_whole_seconds_tell_a_window_in_whole_seconds() {
        let mut learner = learner(Duration::from_secs(10));
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let window = |remaining: u64| Window {
            limit: Some(10),
            remaining: Some(remaining),
            reset_in: Some(Duration::from_secs(2)),
        };
        // Window [0 s, 1 s), first answer at 0.70 s: reset 1 + ⌊1⌋ = 2, Date 0.
        let first = limits(Some(window(9)), None);
        learner.observe(&accepted(at(700), &first));
        // Window [1 s, 2 s), first answer at 1.02 s: reset 3, Date 1.
        let next = limits(Some(window(9)), None);
        let actions = learner.observe(&accepted(at(1_020), &next));
        let set = requests_pace(&actions);
        assert_eq!(set.expect("paced").interval, Duration::from_millis(100));
    }

    /// A reset given to the millisecond is taken as it is: 10 left over 2.5 s, one every 250 ms.
    #[test]
    fn a_reset_given_to_the_millisecond_is_paced_over_as_it_is() {
        let mut learner = learner(Duration::from_secs(10));
        let now = Instant::now();
        let window = Window {
            limit: Some(100),
            remaining: Some(10),
            reset_in: Some(Duration::from_millis(2_500)),
        };
        let limits = limits(Some(window), None);
        let actions = learner.observe(&accepted(now, &limits));
        let set = requests_pace(&actions);
        assert_eq!(set.expect("paced").interval, Duration::from_millis(250));
    }

    #[test]
    fn a_pace_from_an_absurd_reset_obeys_the_cap() {
        let mut learner = learner(Duration::from_secs(10));
        let now = Instant::now();
        let window = Window {
            limit: Some(100),
            remaining: Some(1),
            reset_in: Some(Duration::from_secs(3_600 * 1_000_000)),
        };
        let limits = limits(Some(window), None);
        let actions = learner.observe(&accepted(now, &limits));
        let set = requests_pace(&actions).expect("paced");
        // Not one request a day.
        assert_eq!(set.interval, Duration::from_secs(10));
        assert_eq!(learner.reset_at(), Some(now + Duration::from_secs(10)));
    }

    /// Flask-Limiter's moving window, 10 per second, announced as a whole-second epoch: once
    /// the lane paces near the quota, `remaining` stays put while the reset moves on a second
    /// at a time. A first step of two seconds (a window the lane sat out) must not be the
    /// length for good.
    #[test]
    fn a_moving_window_is_measured_by_resets_that_move_on() {
        let mut learner = learner(Duration::from_secs(10));
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let at = |ms: u64| start + Duration::from_millis(ms);
        // An answer at `ms` announcing the reset at `epoch` (both from the start).
        let reset_at = |ms: u64, epoch: u64| at(epoch) - at(ms);
        learner.observe(&accepted(at(0), &window_limits(3, reset_at(0, 1_500))));
        // The lane sat the next second out: the following announcement steps two seconds.
        learner.observe(&accepted(
            at(1_600),
            &window_limits(5, reset_at(1_600, 3_500)),
        ));
        // Paced at the guessed quota, remaining stays at 5 while the reset moves on a second.
        for (ms, epoch) in [(2_600, 4_500), (3_600, 5_500), (4_600, 6_500)] {
            learner.observe(&accepted(at(ms), &window_limits(5, reset_at(ms, epoch))));
        }
        assert_eq!(learner.windows.length, Some(second));
        let paced = learner.limit(Dimension::Requests).unwrap();
        assert_eq!(paced.interval, second / 10, "paced at the quota");
        // At remaining 0 it waits one quota interval, not the whole announced window.
        let actions = learner.observe(&accepted(
            at(4_700),
            &window_limits(0, reset_at(4_700, 6_500)),
        ));
        let until = actions.iter().find_map(|action| match action {
            Action::CoolDown { until, .. } => Some(until),
            _ => None,
        });
        assert_eq!(until, Some(at(4_700) + second / 10));
        // Counted from when the answered request left, not from its answer 30 ms later: the
        // next one is due a quota interval after it.
        let limits = window_limits(0, reset_at(4_830, 6_500));
        let actions = learner.observe(&Observation {
            departed: at(4_800),
            booked: at(4_800),
            ..accepted(at(4_830), &limits)
        });
        let until = actions.iter().find_map(|action| match action {
            Action::CoolDown { until, .. } => Some(until),
            _ => None,
        });
        assert_eq!(until, Some(at(4_800) + second / 10));
    }

    /// A reset announced in whole seconds from now jitters by up to a second with the same
    /// `remaining` (another client's request between two of ours): that is never a window.
    #[test]
    fn a_jittering_reset_with_the_same_remaining_is_not_a_window() {
        let mut learner = learner(Duration::from_secs(120));
        let start = Instant::now();
        learner.observe(&accepted(start, &window_limits(5, Duration::from_secs(60))));
        let later = start + Duration::from_millis(300);
        learner.observe(&accepted(later, &window_limits(5, Duration::from_secs(60))));
        assert_eq!(learner.windows.length, None);
    }
}
