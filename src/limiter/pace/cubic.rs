//! CUBIC for plain refusals: a 429 with neither Retry-After nor rate-limit headers (nginx
//! `limit_req`'s way) says only "too fast", so the lane finds the rate by congestion control,
//! as AWS's adaptive retry mode does.
//!
//! After a refusal at rate `r` the lane sends at β·r, then grows along
//!
//! ```text
//! rate(t) = SCALE · (t − K)³ + r,    K = ∛(r · (1 − β) / SCALE)
//! ```
//!
//! which is back at `r` after `K` seconds, flattens there (where the server refused) and
//! probes beyond it only slowly; the curve is clamped between β·r and 2·r. β is 0.7, or 0.9
//! once two refusals came at about the same rate (the server's ceiling is known, the lane only
//! probes around it).
//!
//! # Guarantees
//!
//! - One decrease per congestion: refusals of attempts booked before the last decrease are
//!   answers to the rate already given up, even those that left after it (a grant in a budget
//!   shared by a fleet keeps the slot it was given at the faster pace).
//! - A configured rate is never exceeded. Refused, a lane at a configured rate first stops
//!   bursting (the server allows less burst than was assumed); refused without bursting, it
//!   slows by 3 % only (the documented rate was a little optimistic, or the clocks disagree).
//! - Idle time does not advance the curve: a lane resumes where it stood.
//! - A worker of a fleet sharing its budget paces on the fleet's latest curve. It sees only its
//!   share of the answers, so it never reads a spent window, a quota or a streak from its own
//!   refusals in a row (the rules below are one process's); once the ceiling is known its
//!   curve flattens just below the rate refused, since a probe past it costs a fleet every
//!   grant made ahead at that pace.
//!
//! # Refusals that cluster
//!
//! A leaky bucket refuses a pace a little too fast now and then and accepts the next request
//! at the slower pace. A window counter (a fixed window spent, or a sliding counter that also
//! counts the refused requests) refuses everything until its window clears, however slowly
//! the lane retries: decrease after decrease is refused with nothing accepted in between, and
//! each early retry costs a refusal (or, against a counter of every request, keeps the window
//! spent). A decrease that follows another with nothing accepted between halves the pace, and
//! after [`CLUSTER_DECREASES`] such decreases spanning [`CLUSTER_SPAN`] (longer than a bucket
//! takes to refill a token, so a bucket's burst spent is not taken for a window) the lane stops
//! retrying inside the window: it cools down until a window's length after the cluster's
//! first refusal (a second, the common length, doubled each time that was not enough) and
//! resumes just below the rate the server accepted over the active period (the window's quota
//! over its length), where it holds for [`WINDOW_HOLD`] windows before the curve probes above
//! it: against a window counter every probe too far costs a refusal.
//!
//! Within a streak each retry waits at least [`STREAK_FIRST_GAP`] plus twice as long as the
//! streak has lasted, so a spent window is found in three or four probes rather than in one
//! refusal per halving of the callers' burst rate, and a bucket's refill within one or two.

use std::time::Duration;

use tokio::time::Instant;

use super::pacing::{interval_of, Pacing, MIN_RATE};
use super::protocol::Actions;
use crate::limiter::{Dimension, Limit};
use crate::time::later;

/// CUBIC's multiplicative decrease after a plain refusal (AWS adaptive retry mode's β).
const BETA: f64 = 0.7;
/// The gentler decrease once two refusals in a row came at about the same rate: the server's
/// ceiling is known, and the lane only probes around it.
const BETA_NEAR_CEILING: f64 = 0.9;
/// The decrease of a configured rate that was refused even without bursting: the
/// documentation was a little optimistic, or the clocks disagree by a hair.
const BETA_CONFIGURED: f64 = 0.97;
/// CUBIC's growth scale, in requests per second per second³ (AWS: 0.4).
const SCALE: f64 = 0.4;
/// Decreases refused in a row, nothing accepted between them, that make a cluster: a window
/// spent rather than a pace too fast.
const CLUSTER_DECREASES: u32 = 3;
/// The decrease of a refusal that follows another with nothing accepted between them.
const BETA_IN_STREAK: f64 = 0.5;
/// The shortest streak of refusals that makes a cluster: a bucket refusing a pace too fast
/// accepts again within its refill interval, well within this for any rate above 20/s.
const CLUSTER_SPAN: Duration = Duration::from_millis(50);
/// The first guess of the window a cluster waits out: the most common length of a counter's
/// window.
const CLUSTER_WINDOW: Duration = Duration::from_secs(1);
/// The first retry inside a streak of refusals waits at least this long; each later one at
/// least twice as long as the streak has lasted (see [`streak_rate`]).
const STREAK_FIRST_GAP: Duration = Duration::from_millis(5);
/// The share of a window's quota a lane resumes at once it waited the window out: just below
/// what the server accepted, as a refusal costs a whole window.
const WINDOW_RESUME_SHARE: f64 = 0.98;
/// Windows a lane holds just below a waited-out window's quota before its curve probes above
/// it again (the server's quota may have grown).
const WINDOW_HOLD: u32 = 30;

/// Where a fleet's curve flattens, as a share of the rate refused, once two refusals came at
/// about the same rate.
const FLEET_CEILING_SHADE: f64 = 0.97;

/// Units per second of `limit` (its interval is never zero).
fn rate_of(limit: Limit) -> f64 {
    1.0 / limit.interval.as_secs_f64().max(1e-9)
}

/// The curve after one refusal (see the [module documentation](self)).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Cubic {
    /// The rate at the last refusal.
    last_max: f64,
    /// The decrease applied then.
    beta: f64,
    /// When the curve started (shifted by idle periods, which teach nothing).
    since: Instant,
}

impl Cubic {
    fn after_refusal(
        offered: f64,
        previous: Option<Cubic>,
        configured: bool,
        now: Instant,
    ) -> Cubic {
        let last_max = offered.max(MIN_RATE);
        let near_ceiling = previous.is_some_and(|previous| {
            (last_max - previous.last_max).abs() <= previous.last_max * 0.15
        });
        let beta = match (configured, near_ceiling) {
            (true, _) => BETA_CONFIGURED,
            (false, true) => BETA_NEAR_CEILING,
            (false, false) => BETA,
        };
        Cubic {
            last_max,
            beta,
            since: now,
        }
    }

    /// Seconds from the refusal until the curve is back at `last_max`.
    fn plateau(&self) -> f64 {
        (self.last_max * (1.0 - self.beta) / SCALE).cbrt()
    }

    fn rate_at(&self, now: Instant) -> f64 {
        let t = now.saturating_duration_since(self.since).as_secs_f64();
        let rate = SCALE * (t - self.plateau()).powi(3) + self.last_max;
        rate.clamp(self.last_max * self.beta, self.last_max * 2.0)
            .max(MIN_RATE)
    }
}

/// The pace a lane learned from plain refusals, as a fleet shares it: the curve, and the
/// instant of its latest decrease (refusals of attempts that left before it answer that
/// decrease).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SharedCubic {
    /// The rate, per second, at the refusal the curve starts from.
    pub last_max: f64,
    /// The decrease applied then.
    pub beta: f64,
    /// When the curve started.
    pub since: Instant,
    /// The latest decrease.
    pub after: Instant,
}

/// Refusals in a row with nothing accepted between them (see
/// [Refusals that cluster](self#refusals-that-cluster)).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Streak {
    /// The first refusal of the streak.
    since: Instant,
    /// Decreases since then.
    decreases: u32,
}

/// The requests pace learned from plain refusals, if any.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct CubicPace {
    curve: Option<Cubic>,
    /// Refusals of attempts that left before this instant belong to a congestion the lane has
    /// already reacted to.
    after: Option<Instant>,
    /// The refusals since the last accepted request, if the last answer was a refusal.
    streak: Option<Streak>,
    /// The window a cluster waits out; doubled when a cluster outlasts it.
    window: Duration,
}

impl Default for CubicPace {
    fn default() -> CubicPace {
        CubicPace {
            curve: None,
            after: None,
            streak: None,
            window: CLUSTER_WINDOW,
        }
    }
}

impl CubicPace {
    /// A plain refusal of an attempt booked at `booked`: the lane was too fast. A
    /// configured rate first stops bursting; then, or without a configured rate, the pace drops
    /// multiplicatively, once per congestion. `unpaced` is the rate the lane's callers offered,
    /// for a lane that paced nothing.
    ///
    /// `accepted` is what the server accepted over the active period (how many, and when the
    /// first of them left), read when the refusals cluster. `fleet`: the workers sharing the
    /// lane's budget, when it is shared; this process saw its share of their acceptances, and
    /// the pace it sets is the whole fleet's.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn back_off(
        &mut self,
        booked: Instant,
        now: Instant,
        unpaced: Option<f64>,
        accepted: Option<(u64, Instant)>,
        fleet: Option<u32>,
        pacing: &mut Pacing,
        actions: &mut Actions,
    ) {
        if self.after.is_some_and(|after| booked < after) {
            return;
        }
        self.after = Some(now);
        let streak = self.streak.map_or(
            Streak {
                since: now,
                decreases: 1,
            },
            |streak| Streak {
                decreases: streak.decreases.saturating_add(1),
                ..streak
            },
        );
        self.streak = Some(streak);
        // A worker of a fleet sees only its share of the answers: its streak is no evidence of
        // a window spent or of a pace far too fast (the others' requests may have been
        // accepted meanwhile), and the quota it would read from its own acceptances is its
        // share of the fleet's. A fleet keeps to its curve: one decrease per congestion.
        if fleet.is_none()
            && streak.decreases >= CLUSTER_DECREASES
            && now.saturating_duration_since(streak.since) >= CLUSTER_SPAN
        {
            self.wait_out_window(streak, now, accepted, pacing, actions);
            return;
        }
        let current = pacing.limit(Dimension::Requests);
        if let Some(limit) = current.filter(|limit| limit.burst > 1) {
            let single = Limit { burst: 1, ..limit };
            pacing.set(Dimension::Requests, Some(single), false, true, actions);
            return;
        }
        // Paced, the lane sent at its pace; unpaced, as fast as its callers asked.
        let Some(offered) = current.map(rate_of).or(unpaced) else {
            return;
        };
        let configured = pacing.config().configured(Dimension::Requests).is_some();
        let mut curve = Cubic::after_refusal(offered, self.curve, configured, now);
        if fleet.is_some() && curve.beta == BETA_NEAR_CEILING {
            // A fleet's probe past the ceiling costs more than one process's: every grant made
            // ahead at that pace is refused or given up. Once the ceiling is known, the curve
            // flattens just below the rate refused.
            curve.last_max *= FLEET_CEILING_SHADE;
        }
        if streak.decreases > 1 && !configured && fleet.is_none() {
            // Refused again with nothing accepted since the last decrease: the pace is still
            // far too fast (a burst's rate), or a window is spent; halve it.
            curve.beta = curve.beta.min(BETA_IN_STREAK);
        }
        self.curve = Some(curve);
        // The streak's spacing is this process's own retries; a fleet's workers book in one
        // schedule, where it would hold every worker to it (and the grants made meanwhile
        // keep their slots): a fleet keeps to its curve.
        let rate = if configured || fleet.is_some() {
            curve.rate_at(now)
        } else {
            curve.rate_at(now).min(streak_rate(streak, now))
        };
        // Waiters booked at the refused pace book again at the new one.
        set_cubic_pace(rate, true, pacing, actions);
    }

    /// Refusals cluster (see [Refusals that cluster](self#refusals-that-cluster)): the lane
    /// cools down until the window is over and resumes at the rate the server accepted.
    fn wait_out_window(
        &mut self,
        streak: Streak,
        now: Instant,
        accepted: Option<(u64, Instant)>,
        pacing: &mut Pacing,
        actions: &mut Actions,
    ) {
        let cap = pacing.config().max_wait;
        // A cluster that outlasted the window waited for was refused in a longer window.
        while later(streak.since, self.window) <= now && self.window < cap {
            self.window = self.window.saturating_mul(2).min(cap);
        }
        let clears = later(streak.since, self.window);
        let delay = clears.saturating_duration_since(now);
        pacing.cool_down(None, delay, now, "refusals cluster", actions);
        // Refusals of attempts that leave before the window clears answer this same cluster.
        self.after = Some(later(now, delay));
        self.streak = None;
        let Some((count, first)) = accepted else {
            return;
        };
        let span = later(now, delay).saturating_duration_since(first);
        let quota_rate = count as f64 / span.as_secs_f64().max(1e-3);
        let configured = pacing.config().configured(Dimension::Requests).is_some();
        // Just below the window's quota, held there for many windows before the curve probes
        // above it: the curve stands at β·r from `since` on, and only then starts to grow.
        let curve = Cubic::after_refusal(quota_rate, self.curve, configured, now);
        let hold = self.window.saturating_mul(WINDOW_HOLD);
        let curve = Cubic {
            beta: curve.beta.max(WINDOW_RESUME_SHARE),
            since: later(now, delay.saturating_add(hold)),
            ..curve
        };
        self.curve = Some(curve);
        set_cubic_pace(curve.rate_at(later(now, delay)), true, pacing, actions);
    }

    /// An accepted request while paced from plain refusals: the rate grows along the curve.
    pub(super) fn grow(&mut self, now: Instant, pacing: &mut Pacing, actions: &mut Actions) {
        self.streak = None;
        let Some(curve) = self.curve else {
            return;
        };
        let rate = curve.rate_at(now);
        let current = pacing
            .limit(Dimension::Requests)
            .map_or(f64::INFINITY, rate_of);
        // Small steps are not worth a budget update.
        if (rate - current).abs() > current * 0.01 {
            set_cubic_pace(rate, false, pacing, actions);
        }
    }

    /// The curve and the latest decrease, for a fleet that learns together; `None` before any
    /// plain refusal.
    pub(super) fn shared(&self) -> Option<SharedCubic> {
        let (curve, after) = (self.curve?, self.after?);
        Some(SharedCubic {
            last_max: curve.last_max,
            beta: curve.beta,
            since: curve.since,
            after,
        })
    }

    /// Takes the curve the fleet paces on (the latest decrease any worker shared): the lane
    /// paces on it, and a refusal of an
    /// attempt booked before that decrease, or before this lane's own, answers it, not a new
    /// congestion.
    pub(super) fn adopt(
        &mut self,
        shared: SharedCubic,
        now: Instant,
        pacing: &mut Pacing,
        actions: &mut Actions,
    ) {
        if !(shared.last_max.is_finite() && shared.beta.is_finite()) {
            return;
        }
        let curve = Cubic {
            last_max: shared.last_max.max(MIN_RATE),
            beta: shared.beta.clamp(BETA_IN_STREAK, BETA_CONFIGURED),
            since: shared.since,
        };
        // Taken already: nothing changes.
        if self.curve == Some(curve) && self.after.is_some_and(|after| after >= shared.after) {
            return;
        }
        self.curve = Some(curve);
        self.after = Some(
            self.after
                .map_or(shared.after, |after| after.max(shared.after)),
        );
        self.streak = None;
        // The waiters keep their grants: the decrease stretched the fleet's schedule, and each
        // worker moves its waiting grants with it (booked again, each would leave its slot
        // empty and go to the back of the queue).
        set_cubic_pace(curve.rate_at(now), false, pacing, actions);
    }

    /// The lane was idle for `gap`: the curve resumes where it stood.
    pub(super) fn skip_idle(&mut self, gap: Duration) {
        if let Some(curve) = self.curve.as_mut() {
            curve.since = later(curve.since, gap);
        }
    }
}

/// The fastest a lane retries inside a streak of refusals: the next attempt waits at least
/// [`STREAK_FIRST_GAP`] plus twice the time since the streak's first refusal. A bucket whose
/// burst is spent refills within one or two such gaps; a spent window is found in a few
/// probes, not in one refusal per halving of a caller's burst rate. Only until the next
/// accepted request: that one returns the lane to its curve.
fn streak_rate(streak: Streak, now: Instant) -> f64 {
    let lasted = now.saturating_duration_since(streak.since);
    let gap = STREAK_FIRST_GAP.saturating_add(lasted.saturating_mul(2));
    1.0 / gap.as_secs_f64()
}

/// Paces requests one at a time at `rate`, never faster than configured.
fn set_cubic_pace(rate: f64, reprice: bool, pacing: &mut Pacing, actions: &mut Actions) {
    let config = pacing.config();
    let learned = Limit {
        interval: interval_of(rate, config.max_wait),
        burst: 1,
    };
    let effective = Limit {
        burst: 1,
        ..config.never_faster(Dimension::Requests, learned)
    };
    pacing.set(
        Dimension::Requests,
        Some(effective),
        false,
        reprice,
        actions,
    );
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{learner, plain};
    use super::super::protocol::{Action, Answer, Observation};
    use super::*;

    /// The instant the lane is told to cool down until, if it is.
    fn cooled_until(actions: &Actions) -> Option<Instant> {
        actions.iter().find_map(|action| match action {
            Action::CoolDown { until, .. } => Some(until),
            _ => None,
        })
    }

    /// Ten accepted at once, then refusal after refusal, each of an attempt sent after the
    /// decrease before it: a window spent, not a pace too fast. Once three decreases span 50 ms
    /// the lane waits the window out, a second after the first refusal, and resumes near ten
    /// per second.
    #[test]
    fn refusals_that_cluster_wait_out_the_window() {
        let mut learner = learner(Duration::from_secs(60));
        let start = Instant::now();
        let ms = |ms: u64| start + Duration::from_millis(ms);
        for _ in 0..10 {
            learner.observe(&plain(start, Answer::Accepted));
        }
        // Three within 50 ms could be a bucket's burst spent, refilled a token at a time.
        for at in [10, 20, 30] {
            let actions = learner.observe(&plain(ms(at), Answer::RateLimited));
            assert_eq!(
                cooled_until(&actions),
                None,
                "a decrease, not yet a cluster"
            );
        }
        let actions = learner.observe(&plain(ms(70), Answer::RateLimited));
        assert_eq!(cooled_until(&actions), Some(ms(1_010)));
        let rate = 1.0
            / learner
                .limit(Dimension::Requests)
                .map_or(f64::INFINITY, |limit| limit.interval.as_secs_f64());
        // Ten accepted over the 1.01 s from the first of them to the window's end, less β.
        assert!((8.5..=10.0).contains(&rate), "{rate}");
        // Refusals of attempts sent during the wait belong to the same cluster.
        let actions = learner.observe(&plain(ms(500), Answer::RateLimited));
        assert!(actions.is_empty(), "{actions:?}");
    }

    /// The same streak as above, seen by one worker of a fleet of four: its own refusals in a
    /// row are no evidence of a window spent (the others' requests may have been accepted), so
    /// it never waits out a window nor spaces its retries as a streak; one decrease per
    /// congestion, never a halving.
    #[test]
    fn a_worker_of_a_fleet_keeps_to_its_curve_through_a_streak() {
        let run = |fleet: Option<u32>| {
            let mut learner = learner(Duration::from_secs(60));
            learner.set_fleet(fleet);
            let start = Instant::now();
            let ms = |ms: u64| start + Duration::from_millis(ms);
            for _ in 0..10 {
                learner.observe(&plain(start, Answer::Accepted));
            }
            let mut cooled = false;
            for at in [10, 20, 30, 70] {
                let actions = learner.observe(&plain(ms(at), Answer::RateLimited));
                cooled |= cooled_until(&actions).is_some();
            }
            let rate = 1.0
                / learner
                    .limit(Dimension::Requests)
                    .map_or(f64::INFINITY, |limit| limit.interval.as_secs_f64());
            (cooled, rate)
        };
        let (alone_cooled, _) = run(None);
        assert!(alone_cooled, "a process alone waits the window out");
        let (fleet_cooled, fleet_rate) = run(Some(4));
        assert!(!fleet_cooled, "a worker of a fleet does not");
        // Four decreases of β = 0.7 at most from the rate its callers offered, no halving and
        // no streak spacing (which would be a few per second).
        let offered = {
            let mut probe = learner(Duration::from_secs(60));
            let start = Instant::now();
            for _ in 0..10 {
                probe.observe(&plain(start, Answer::Accepted));
            }
            probe.observe(&plain(
                start + Duration::from_millis(10),
                Answer::RateLimited,
            ));
            1.0 / probe
                .limit(Dimension::Requests)
                .map_or(f64::INFINITY, |limit| limit.interval.as_secs_f64())
                / BETA
        };
        assert!(
            fleet_rate >= offered * BETA.powi(4) * 0.99,
            "{fleet_rate} against {offered}"
        );
    }

    /// A decrease taken from the fleet never books the lane's waiters again, however steep:
    /// the fleet's schedule was stretched, and their grants move with it.
    #[test]
    fn a_decrease_taken_from_the_fleet_keeps_the_waiters_grants() {
        let start = Instant::now();
        let ms = |ms: u64| start + Duration::from_millis(ms);
        let fresh = |actions: &Actions| {
            actions.iter().find_map(|action| match action {
                Action::SetLimit { fresh, .. } => Some(fresh),
                _ => None,
            })
        };
        for beta in [BETA_IN_STREAK, BETA, BETA_NEAR_CEILING] {
            let mut lane = learner(Duration::from_secs(60));
            for at in 0..20 {
                lane.observe(&plain(ms(at * 20), Answer::Accepted));
            }
            lane.observe(&plain(ms(400), Answer::RateLimited));
            let paced = rate_of(lane.limit(Dimension::Requests).expect("paced"));
            let shared = SharedCubic {
                last_max: paced,
                beta,
                since: ms(410),
                after: ms(410),
            };
            let actions = lane.adopt_cubic(shared, ms(410));
            assert_eq!(fresh(&actions), Some(false), "β = {beta}");
            let now = rate_of(lane.limit(Dimension::Requests).expect("paced"));
            assert!(
                (now - paced * beta).abs() < paced * 0.01,
                "β = {beta}: {now}"
            );
        }
    }

    /// A grant of a shared schedule keeps the slot it was given at the pace a refusal gave up:
    /// refused after the decrease, it answers that decrease all the same, since it was booked
    /// before it. An attempt booked after the decrease and refused is a congestion of its own.
    #[test]
    fn a_refusal_answers_the_pace_its_attempt_was_booked_at() {
        let start = Instant::now();
        let ms = |ms: u64| start + Duration::from_millis(ms);
        let mut learner = learner(Duration::from_secs(60));
        for at in 0..20 {
            learner.observe(&plain(ms(at * 20), Answer::Accepted));
        }
        assert!(!learner
            .observe(&plain(ms(400), Answer::RateLimited))
            .is_empty());
        let paced = learner.limit(Dimension::Requests);
        let granted_before = Observation {
            booked: ms(390),
            departed: ms(420),
            ..plain(ms(425), Answer::RateLimited)
        };
        assert!(learner.observe(&granted_before).is_empty());
        assert_eq!(learner.limit(Dimension::Requests), paced);
        let booked_after = Observation {
            booked: ms(410),
            departed: ms(430),
            ..plain(ms(435), Answer::RateLimited)
        };
        assert!(!learner.observe(&booked_after).is_empty());
        assert_ne!(learner.limit(Dimension::Requests), paced);
    }

    /// Two workers of a fleet: the first is refused and decreases; the second takes its curve
    /// and, refused for a request that left before that decrease, does not decrease again.
    #[test]
    fn a_curve_taken_from_another_worker_answers_the_refusals_before_it() {
        let start = Instant::now();
        let ms = |ms: u64| start + Duration::from_millis(ms);
        let mut first = learner(Duration::from_secs(60));
        let mut second = learner(Duration::from_secs(60));
        for worker in [&mut first, &mut second] {
            for at in 0..20 {
                worker.observe(&plain(ms(at * 20), Answer::Accepted));
            }
        }
        assert!(first.shared_cubic().is_none());
        first.observe(&plain(ms(400), Answer::RateLimited));
        let shared = first.shared_cubic().expect("a curve after a plain refusal");
        let actions = second.adopt_cubic(shared, ms(400));
        assert_eq!(
            second.limit(Dimension::Requests),
            first.limit(Dimension::Requests)
        );
        assert!(!actions.is_empty());
        // Taken once: the same curve again changes nothing.
        assert!(second.adopt_cubic(shared, ms(406)).is_empty());
        // A refusal of a request the second sent before the first's decrease: answered.
        let early = Observation {
            departed: ms(395),
            booked: ms(395),
            ..plain(ms(410), Answer::RateLimited)
        };
        assert!(second.observe(&early).is_empty());
        assert_eq!(second.shared_cubic(), Some(shared));
    }

    /// A refusal now and then between accepted requests (a leaky bucket, a pace a hair too
    /// fast) never makes a cluster.
    #[test]
    fn refusals_between_accepted_requests_never_cluster() {
        let mut learner = learner(Duration::from_secs(60));
        let start = Instant::now();
        for i in 0..30u64 {
            let at = start + Duration::from_millis(10 * i);
            let answer = if i % 2 == 0 {
                Answer::RateLimited
            } else {
                Answer::Accepted
            };
            let actions = learner.observe(&plain(at, answer));
            assert_eq!(cooled_until(&actions), None, "at {i}");
        }
    }

    #[test]
    fn the_curve_starts_at_beta_and_is_back_at_the_refused_rate_after_its_plateau() {
        let now = Instant::now();
        let curve = Cubic::after_refusal(10.0, None, false, now);
        assert!((curve.rate_at(now) - 7.0).abs() < 1e-9);
        let plateau = Duration::from_secs_f64(curve.plateau());
        assert!((curve.rate_at(now + plateau) - 10.0).abs() < 1e-6);
        // Never more than twice the refused rate, however long it grows.
        assert_eq!(curve.rate_at(now + Duration::from_secs(3_600)), 20.0);
    }

    #[test]
    fn a_second_refusal_near_the_first_decreases_less() {
        let now = Instant::now();
        let first = Cubic::after_refusal(10.0, None, false, now);
        assert_eq!(first.beta, BETA);
        let near = Cubic::after_refusal(11.0, Some(first), false, now);
        assert_eq!(near.beta, BETA_NEAR_CEILING);
        let far = Cubic::after_refusal(20.0, Some(first), false, now);
        assert_eq!(far.beta, BETA);
        let configured = Cubic::after_refusal(20.0, Some(first), true, now);
        assert_eq!(configured.beta, BETA_CONFIGURED);
    }
}
