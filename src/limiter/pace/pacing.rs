//! The limits the learner has set, and the one way to change them.
//!
//! Every sub-learner decides a pace from its own evidence; [`Pacing`] is where those decisions
//! become [`Action`]s. It remembers each dimension's limit as last set, so the owner hears only
//! of changes, and until when the requests pace learned from the server holds. A requests pace
//! much faster than the current one starts the cell anew, so waiters booked at the slower pace
//! book again instead of holding the lane back.
//!
//! Also here: the conversions between a rate and an interval that every learner shares.

use std::time::Duration;

use tokio::time::Instant;

use super::protocol::{slot, Action, Actions, PaceConfig};
use crate::limiter::{Dimension, Limit};
use crate::time::later;

/// The slowest pace refusals can teach: one request every two seconds.
pub(super) const MIN_RATE: f64 = 0.5;

/// An interval of one request at `rate` per second, never longer than `cap`.
pub(super) fn interval_of(rate: f64, cap: Duration) -> Duration {
    Duration::try_from_secs_f64(1.0 / rate.max(MIN_RATE)).map_or(cap, |interval| interval.min(cap))
}

/// The interval that spreads `count` units evenly over `span`. `count` is never zero: every
/// caller checks it first.
pub(super) fn spacing(span: Duration, count: u64) -> Duration {
    // A count of zero (a server announcing a limit of 0) spaces by the whole span, never panics.
    span / u32::try_from(count).unwrap_or(u32::MAX).max(1)
}

/// Whether `new` paces a third faster or more than `old` (no limit is the fastest of all).
fn much_faster(old: Option<Limit>, new: Option<Limit>) -> bool {
    match (old, new) {
        (Some(_), None) => true,
        (Some(old), Some(new)) => new.interval.saturating_mul(4) < old.interval.saturating_mul(3),
        (None, _) => false,
    }
}

/// Each dimension's limit as last set (by the configuration or by a learner), and until when
/// the requests pace learned from the server holds.
#[derive(Clone, Debug)]
pub(super) struct Pacing {
    config: PaceConfig,
    current: [Option<Limit>; Dimension::ALL.len()],
    /// Until when the requests pace learned from the server holds.
    until: Option<Instant>,
}

impl Pacing {
    /// The configured limits, and no pace learned.
    pub(super) fn new(config: PaceConfig) -> Pacing {
        Pacing {
            config,
            current: config.configured,
            until: None,
        }
    }

    pub(super) fn config(&self) -> &PaceConfig {
        &self.config
    }

    /// The limit of `dimension` as last set.
    pub(super) fn limit(&self, dimension: Dimension) -> Option<Limit> {
        self.current[slot(dimension)]
    }

    /// When the requests pace learned from the server ends, if one holds.
    pub(super) fn until(&self) -> Option<Instant> {
        self.until
    }

    /// Whether the requests pace learned from the server has ended by `now`; it is then
    /// forgotten, and whoever asked says what paces the next window.
    pub(super) fn ended(&mut self, now: Instant) -> bool {
        let ended = self.until.is_some_and(|until| now >= until);
        if ended {
            self.until = None;
        }
        ended
    }

    /// Records `limit` as `dimension`'s without an action: the owner sets it itself.
    pub(super) fn record(&mut self, dimension: Dimension, limit: Option<Limit>) {
        self.current[slot(dimension)] = limit;
    }

    /// Sets `dimension`'s limit, asking the owner only when it changes. A requests pace a third
    /// faster or more than the current one starts the cell anew (`fresh`), so requests that
    /// wait at slots booked at the slower pace book again at the new one instead of keeping
    /// the lane below what the server grants.
    pub(super) fn set(
        &mut self,
        dimension: Dimension,
        limit: Option<Limit>,
        strict: bool,
        fresh: bool,
        actions: &mut Actions,
    ) {
        let current = self.current[slot(dimension)];
        if current == limit && !fresh {
            return;
        }
        let fresh = fresh || (dimension == Dimension::Requests && much_faster(current, limit));
        self.current[slot(dimension)] = limit;
        actions.push(Action::SetLimit {
            dimension,
            limit,
            strict,
            fresh,
        });
    }

    /// Sets `dimension`'s limit to one read from a server's announcement and tells the owner
    /// as it is, whether or not the limit changed: the caller decided that `strict` or `fresh`
    /// is news, and the announced `remaining` that follows, not a reprice, settles the cell.
    pub(super) fn announce(
        &mut self,
        dimension: Dimension,
        limit: Limit,
        strict: bool,
        fresh: bool,
        actions: &mut Actions,
    ) {
        self.record(dimension, Some(limit));
        actions.push(Action::SetLimit {
            dimension,
            limit: Some(limit),
            strict,
            fresh,
        });
    }

    /// Paces requests at `learned` (never faster than configured, never an interval above the
    /// cap) until `now + holds_for`; `reprice` starts the cell anew, as in [`set`](Self::set).
    pub(super) fn set_pace(
        &mut self,
        learned: Limit,
        now: Instant,
        holds_for: Duration,
        reprice: bool,
        actions: &mut Actions,
    ) {
        let learned = Limit {
            interval: learned.interval.min(self.config.max_wait),
            ..learned
        };
        let effective = self.config.never_faster(Dimension::Requests, learned);
        self.set(
            Dimension::Requests,
            Some(effective),
            false,
            reprice,
            actions,
        );
        self.until = Some(later(now, holds_for));
    }

    /// Returns requests to the configured limit.
    pub(super) fn set_configured(&mut self, actions: &mut Actions) {
        let configured = self.config.configured(Dimension::Requests);
        self.set(Dimension::Requests, configured, false, false, actions);
    }

    /// Nothing in `dimension` (or the whole lane) leaves for `delay`, at most the cap.
    pub(super) fn cool_down(
        &self,
        dimension: Option<Dimension>,
        delay: Duration,
        now: Instant,
        why: &'static str,
        actions: &mut Actions,
    ) {
        let delay = delay.min(self.config.max_wait);
        actions.push(Action::CoolDown {
            dimension,
            until: later(now, delay),
            why,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requests_limit(actions: &Actions) -> Option<(Limit, bool)> {
        actions.iter().find_map(|action| match action {
            Action::SetLimit {
                dimension: Dimension::Requests,
                limit: Some(limit),
                fresh,
                ..
            } => Some((limit, fresh)),
            _ => None,
        })
    }

    /// A pace a third faster or more than the current one restarts the cell (`fresh`), so
    /// waiters booked at the slower pace book again; a small step keeps their slots.
    #[test]
    fn a_much_faster_pace_reprices_and_a_small_step_does_not() {
        let mut pacing = Pacing::new(PaceConfig {
            configured: [None; 4],
            max_wait: Duration::from_secs(10),
        });
        let slow = Limit {
            interval: Duration::from_millis(500),
            burst: 1,
        };
        let mut actions = Actions::default();
        pacing.set(Dimension::Requests, Some(slow), false, false, &mut actions);
        let faster = Limit {
            interval: Duration::from_millis(450),
            ..slow
        };
        let mut actions = Actions::default();
        pacing.set(
            Dimension::Requests,
            Some(faster),
            false,
            false,
            &mut actions,
        );
        assert_eq!(requests_limit(&actions), Some((faster, false)));
        let much_faster = Limit {
            interval: Duration::from_millis(100),
            ..slow
        };
        let mut actions = Actions::default();
        pacing.set(
            Dimension::Requests,
            Some(much_faster),
            false,
            false,
            &mut actions,
        );
        assert_eq!(requests_limit(&actions), Some((much_faster, true)));
    }
}
