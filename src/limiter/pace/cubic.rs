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
//! - One decrease per congestion: refusals of attempts that left before the last decrease are
//!   answers to the rate already given up.
//! - A configured rate is never exceeded. Refused, a lane at a configured rate first stops
//!   bursting (the server allows less burst than was assumed); refused without bursting, it
//!   slows by 3 % only (the documented rate was a little optimistic, or the clocks disagree).
//! - Idle time does not advance the curve: a lane resumes where it stood.

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

/// The requests pace learned from plain refusals, if any.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct CubicPace {
    curve: Option<Cubic>,
    /// Refusals of attempts that left before this instant belong to a congestion the lane has
    /// already reacted to.
    after: Option<Instant>,
}

impl CubicPace {
    /// A plain refusal of an attempt that left at `departed`: the lane was too fast. A
    /// configured rate first stops bursting; then, or without a configured rate, the pace drops
    /// multiplicatively, once per congestion. `unpaced` is the rate the lane's callers offered,
    /// for a lane that paced nothing.
    pub(super) fn back_off(
        &mut self,
        departed: Instant,
        now: Instant,
        unpaced: Option<f64>,
        pacing: &mut Pacing,
        actions: &mut Actions,
    ) {
        if self.after.is_some_and(|after| departed < after) {
            return;
        }
        self.after = Some(now);
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
        let curve = Cubic::after_refusal(offered, self.curve, configured, now);
        self.curve = Some(curve);
        // Waiters booked at the refused pace book again at the new one.
        set_cubic_pace(curve.rate_at(now), true, pacing, actions);
    }

    /// An accepted request while paced from plain refusals: the rate grows along the curve.
    pub(super) fn grow(&self, now: Instant, pacing: &mut Pacing, actions: &mut Actions) {
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

    /// The lane was idle for `gap`: the curve resumes where it stood.
    pub(super) fn skip_idle(&mut self, gap: Duration) {
        if let Some(curve) = self.curve.as_mut() {
            curve.since = later(curve.since, gap);
        }
    }
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
    use super::*;

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
