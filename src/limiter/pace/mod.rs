//! The pace learner: what the server's answers teach about the rate it allows.
//!
//! A [`PaceLearner`] is a value type, pure in `now` like [`Gcra`](super::Gcra): it takes
//! [`Observation`]s (how the server answered, its parsed signals, when the attempt left and
//! what it cost) and returns [`Actions`] (set a dimension's limit, cool a dimension or the whole
//! lane down until an instant, sync a token budget down to what the server says remains) that
//! its owner applies to a [`Budget`](super::Budget). It reads no clock, holds no lock and knows
//! no HTTP type beyond the plain values of [`signals`](crate::signals), so every behaviour is
//! tested with a fake clock and no sockets.
//!
//! # What it learns, one idea a file
//!
//! - `window`: from a window's headers (GitHub, IETF, Flask-Limiter), R remaining until the
//!   reset T paces at R/T; successive resets tell the window's length W, and the quota L then
//!   paces at L/W.
//! - `bucket`: from a bucket's headers (OpenAI, Anthropic), the burst and the refill rate of
//!   every dimension, and the budget synced to the announced `remaining`; a fixed window
//!   spoken in a bucket's headers is told apart.
//! - `charged`: from successive `remaining` of a token dimension, what the server charged for
//!   each request, handed to the budget's charge learner.
//! - `refusal`: from refusals with Retry-After and no headers, a quota guessed, ramped up,
//!   resumed, probed and held, as explicit phases.
//! - `cubic`: from plain refusals (a 429 with neither Retry-After nor headers), CUBIC.
//! - `burst`: a configured burst nobody stated, earned before it opens.
//!
//! `protocol` holds the values that go in and out, `pacing` the limits as last set (the one
//! place that turns a decision into an action), `measure` the active period the refusal
//! learners count over. Each source of a window's quota excludes the others: the [`Quota`]
//! below is announced by headers or guessed from refusals, never both.
//!
//! # Guarantees
//!
//! - Never faster than a configured rate: every limit it sets has the longer interval and the
//!   smaller burst of the learned one and the configured one.
//! - Every wait it derives from a server value (a cooldown, a pace's interval) is at most the
//!   configured cap ([`PaceConfig::max_wait`]), whatever the server sent.

use std::time::Duration;

use tokio::time::Instant;

use self::bucket::{is_bucket, Buckets};
use self::burst::Burst;
use self::cubic::CubicPace;
use self::measure::{idle_gap, Measure};
use self::pacing::Pacing;
use self::refusal::Phase;
use self::window::{LearnedWindow, WindowReader};
use super::{Dimension, Limit};

pub use self::cubic::SharedCubic;
pub use self::protocol::{Action, Actions, Answer, InFlight, Observation, PaceConfig, Pause};

mod bucket;
mod burst;
mod charged;
mod cubic;
#[cfg(test)]
mod fixtures;
mod measure;
mod pacing;
#[cfg(test)]
mod props;
mod protocol;
mod refusal;
mod window;

/// The quota of the server's window, from one source at a time: headers that name a quota
/// replace a guess, and a refusal with Retry-After after announced headers starts a guess anew.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Quota {
    /// Announced by a window's headers.
    FromHeaders(LearnedWindow),
    /// Guessed from refusals with Retry-After, or still being measured for the first one.
    FromRefusals(Phase),
}

impl Default for Quota {
    fn default() -> Quota {
        Quota::FromRefusals(Phase::Measuring)
    }
}

impl Quota {
    /// The window the headers announced, if they did.
    fn announced(&self) -> Option<LearnedWindow> {
        match self {
            Quota::FromHeaders(window) => Some(*window),
            Quota::FromRefusals(_) => None,
        }
    }

    /// Whether the quota was guessed from refusals.
    fn is_guessed(&self) -> bool {
        matches!(self, Quota::FromRefusals(phase) if phase.is_guessed())
    }

    /// The window's length (or the cycle a guess counts over), if known.
    fn length(&self) -> Option<Duration> {
        match self {
            Quota::FromHeaders(window) => Some(window.length),
            Quota::FromRefusals(phase) => phase.length(),
        }
    }
}

/// The pace learner of one lane; see the [module documentation](self).
#[derive(Clone, Debug)]
pub struct PaceLearner {
    /// The limits as last set, never faster than configured.
    pacing: Pacing,
    /// The quota of the server's window, announced or guessed.
    quota: Quota,
    /// The active period, counted for the refusal learners.
    measure: Measure,
    /// Windows measured from announced resets.
    windows: WindowReader,
    /// Buckets and token limits from announcements.
    buckets: Buckets,
    /// The pace learned from plain refusals.
    cubic: CubicPace,
    /// The configured burst, earned.
    burst: Burst,
    /// The workers of the fleet whose budget the lane shares (`None`: its process alone).
    fleet: Option<u32>,
}

impl PaceLearner {
    /// A learner that has learned nothing yet: the configured limits apply.
    pub fn new(config: PaceConfig) -> PaceLearner {
        PaceLearner {
            pacing: Pacing::new(config),
            quota: Quota::default(),
            measure: Measure::default(),
            windows: WindowReader::default(),
            buckets: Buckets::default(),
            cubic: CubicPace::default(),
            burst: Burst::default(),
            fleet: None,
        }
    }

    /// The configured requests burst was not stated, only defaulted (see
    /// [`Rate::is_burst_stated`](crate::Rate::is_burst_stated)): the lane starts one request at
    /// a time, and the burst is earned once the server has accepted as many requests as it
    /// holds without a refusal in between; a refusal first keeps it at one. An earned burst
    /// opens at the lane's next lull ([`open_earned_burst`](Self::open_earned_burst)). Returns
    /// the limit to start with, if there is a burst to earn.
    pub fn earn_burst(&mut self) -> Option<Limit> {
        self.burst.start(&mut self.pacing)
    }

    /// Whether an unstated burst was earned and waits for a lull to open.
    pub fn has_earned_burst(&self) -> bool {
        self.burst.is_earned()
    }

    /// Opens an earned burst (see [`earn_burst`](Self::earn_burst)), as empty as the spaced
    /// bucket was: it fills during the lull that follows. Nothing if none was earned, or if
    /// something else was learned meanwhile (a server's headers, a refusal).
    pub fn open_earned_burst(&mut self) -> Actions {
        self.burst.open(&mut self.pacing)
    }

    /// The limit of `dimension` as the learner last set it. The owner hears of every change
    /// through [`Action::SetLimit`]; tests read it here.
    #[cfg(test)]
    pub fn limit(&self, dimension: Dimension) -> Option<Limit> {
        self.pacing.limit(dimension)
    }

    /// When the requests pace learned from the server ends (its window resets), if one holds.
    /// A reservation booked beyond it was priced with a pace that no longer holds then.
    pub fn reset_at(&self) -> Option<Instant> {
        self.pacing.until()
    }

    /// The next instant at which [`tick`](Self::tick) has something to do, if any.
    pub fn next_due(&self) -> Option<Instant> {
        self.pacing
            .until()
            .into_iter()
            .chain(self.buckets.next_due())
            .min()
    }

    /// What time alone changes, called before every booking: a server window that has reset
    /// (the next window is paced at its quota, or the configured rate applies again), a token
    /// announcement that is no longer fresh (no longer strict) or no longer current (forgotten).
    pub fn tick(&mut self, now: Instant) -> Actions {
        let mut actions = Actions::default();
        if self.pacing.ended(now) {
            if self.quota.is_guessed() && self.idle_since_last_departure(now) {
                // A quota guessed from refusals is a measure of a busy period: after an idle
                // one the server's window has long reset, and the lane learns afresh.
                self.quota = Quota::default();
                self.measure = Measure::default();
            }
            self.renew_window(now, &mut actions);
        }
        self.buckets.tick(now, &mut self.pacing, &mut actions);
        actions
    }

    /// Learns from one answer; see the [module documentation](self).
    pub fn observe(&mut self, observation: &Observation<'_>) -> Actions {
        let mut actions = Actions::default();
        let (now, departed) = (observation.now, observation.departed);
        // The pace a refusal answers is the one the attempt was booked at.
        let booked = observation.booked.min(departed);
        let idle_gap = idle_gap(self.pacing.limit(Dimension::Requests));
        if let Some(idle) = self.measure.note(departed, observation.answer, idle_gap) {
            self.cubic.skip_idle(idle);
        }
        self.burst.earn(observation.answer);
        if let Some(limits) = observation.limits {
            self.buckets
                .sync(limits, observation, &mut self.pacing, &mut actions);
        }
        // Retry-After wins over rate-limit headers when both are present.
        if let Some(pause) = observation.pause {
            let delay = pause.delay.min(self.pacing.config().max_wait);
            self.pacing
                .cool_down(pause.dimension, delay, now, "Retry-After", &mut actions);
            if observation.answer == Answer::RateLimited
                && pause.dimension.is_none()
                && observation.limits.is_none()
            {
                let configured = self.pacing.config().configured(Dimension::Requests);
                if configured.is_some() {
                    // A documented rate is close: only its burst (or a hair of its rate) was
                    // too much.
                    self.back_off(booked, now, &mut actions);
                } else {
                    self.learn_from_refusal(departed, delay, now, &mut actions);
                }
            }
            return actions;
        }
        let requests = observation.limits.and_then(|limits| limits.requests);
        let bucket = observation
            .limits
            .is_some_and(|limits| is_bucket(limits.family));
        match (requests, observation.answer) {
            // A bucket's requests were synced with its tokens.
            (Some(_), _) if bucket => {}
            (Some(window), _) => {
                let announced = self.quota.announced();
                let learned = self.windows.pace_from(
                    window,
                    observation,
                    announced,
                    &mut self.pacing,
                    &mut actions,
                );
                if let Some(learned) = learned {
                    self.quota = Quota::FromHeaders(learned);
                }
            }
            (None, Answer::RateLimited) => self.back_off(booked, now, &mut actions),
            (None, Answer::Accepted) => {
                self.cubic.grow(now, &mut self.pacing, &mut actions);
                if let Quota::FromRefusals(phase) = &mut self.quota {
                    phase.ramp_up(&self.measure, departed, now, &mut self.pacing, &mut actions);
                }
            }
            _ => {}
        }
        actions
    }

    /// Learns as one worker of a fleet of `workers` sharing the lane's budget (`None`: alone):
    /// what this process sees of refusals and acceptances is then its share of the fleet's.
    pub fn set_fleet(&mut self, workers: Option<u32>) {
        self.fleet = workers.map(|workers| workers.max(1));
    }

    /// The pace learned from plain refusals (CUBIC's curve and its latest decrease), for the
    /// other workers of a fleet; `None` before any.
    pub fn shared_cubic(&self) -> Option<SharedCubic> {
        self.cubic.shared()
    }

    /// Paces on the curve the fleet learned from plain refusals (the latest decrease any worker
    /// shared): one refusal slows the fleet once, and every worker grows alike.
    pub fn adopt_cubic(&mut self, shared: SharedCubic, now: Instant) -> Actions {
        let mut actions = Actions::default();
        self.cubic
            .adopt(shared, now, &mut self.pacing, &mut actions);
        actions
    }

    /// Whether the lane paces itself (a configured rate, or one learned from the server): a
    /// request it sent too early is then retried at that pace rather than after a backoff.
    pub fn is_pacing(&self) -> bool {
        self.pacing.limit(Dimension::Requests).is_some()
    }

    /// A plain refusal of an attempt booked at `booked`: CUBIC backs off from the pace the lane
    /// kept, or, unpaced, from the rate its callers offered.
    fn back_off(&mut self, booked: Instant, now: Instant, actions: &mut Actions) {
        let unpaced = self.measure.offered_rate(now);
        let accepted = self.measure.accepted();
        self.cubic.back_off(
            booked,
            now,
            unpaced,
            accepted,
            self.fleet,
            &mut self.pacing,
            actions,
        );
    }

    /// A refusal with Retry-After and no rate-limit headers moves the guessed quota on a phase;
    /// a quota the headers announced is no guess, and refusals start measuring anew.
    fn learn_from_refusal(
        &mut self,
        departed: Instant,
        delay: Duration,
        now: Instant,
        actions: &mut Actions,
    ) {
        let phase = match self.quota {
            Quota::FromRefusals(phase) => phase,
            Quota::FromHeaders(_) => Phase::Measuring,
        };
        let next = phase.learn_from_refusal(
            &mut self.measure,
            departed,
            delay,
            now,
            &mut self.pacing,
            actions,
        );
        if let Some(next) = next {
            self.quota = Quota::FromRefusals(next);
        }
    }

    /// Whether nothing left for longer than an idle gap (a second, or two learned intervals,
    /// or the learned cycle, whichever is longest) before `now`.
    fn idle_since_last_departure(&self, now: Instant) -> bool {
        let gap = idle_gap(self.pacing.limit(Dimension::Requests))
            .max(self.quota.length().unwrap_or_default());
        self.measure.idle_at(now, gap)
    }

    /// The server's window has reset: pace the new one at the quota it told (limit L over a
    /// window W: L/W), or at the quota guessed from refusals; with no quota known, return to
    /// the configured rate.
    fn renew_window(&mut self, now: Instant, actions: &mut Actions) {
        let cap = self.pacing.config().max_wait;
        let pace = match &mut self.quota {
            Quota::FromHeaders(window) => {
                window.interval().map(|interval| (interval, window.length))
            }
            Quota::FromRefusals(phase) => phase.renew(cap),
        };
        match pace {
            Some((interval, holds_for)) => {
                let limit = Limit { interval, burst: 1 };
                self.pacing.set_pace(limit, now, holds_for, false, actions);
            }
            None => self.pacing.set_configured(actions),
        }
    }
}
