//! Operator controls: hold a breaker open or closed, or reset it. Each change is delivered
//! like any other transition.

use std::sync::atomic::Ordering;

use tokio::time::Instant;

use super::machine::Breaker;
use super::shared::{Inner, Mode};
use super::transition::{BreakerState, Transition, TransitionReason};

impl Breaker {
    /// Opens the breaker and holds it open (not timed) until [`force_closed`](Self::force_closed)
    /// or [`reset`](Self::reset). Does not count as a trip.
    pub fn force_open(&self, now: Instant) {
        self.operate(|inner| {
            if inner.mode == Mode::ForcedOpen {
                return None;
            }
            let from = inner.mode.state();
            self.shared.set_mode(inner, Mode::ForcedOpen);
            inner.open_until = None;
            inner.open_since = Some(now);
            Some((from, BreakerState::Open, TransitionReason::ForcedOpen))
        });
    }

    /// Closes the breaker and holds it closed: every call is admitted and it never trips
    /// (outcomes are still counted, for observation) until [`force_open`](Self::force_open)
    /// or [`reset`](Self::reset).
    pub fn force_closed(&self) {
        self.operate(|inner| {
            if inner.mode == Mode::ForcedClosed {
                return None;
            }
            let from = inner.mode.state();
            self.shared.set_mode(inner, Mode::ForcedClosed);
            self.shared.clear_counts(inner);
            inner.open_until = None;
            inner.open_since = None;
            Some((from, BreakerState::Closed, TransitionReason::ForcedClosed))
        });
    }

    /// Back to a fresh closed breaker: counts, trip streak and statistics cleared, operator
    /// holds released, outstanding admissions ignored.
    pub fn reset(&self) {
        self.operate(|inner| {
            let from = inner.mode;
            self.shared.set_mode(inner, Mode::Closed);
            self.shared.clear_counts(inner);
            self.shared.rejected.store(0, Ordering::Relaxed);
            inner.open_until = None;
            inner.open_since = None;
            inner.closed_since = None;
            inner.trip_streak = 0;
            inner.trips = 0;
            (from != Mode::Closed).then_some((
                from.state(),
                BreakerState::Closed,
                TransitionReason::Reset,
            ))
        });
    }

    fn operate(
        &self,
        change: impl FnOnce(&mut Inner) -> Option<(BreakerState, BreakerState, TransitionReason)>,
    ) {
        let mut inner = self.shared.lock();
        if let Some((from, to, reason)) = change(&mut inner) {
            inner.pending.push_back(Transition {
                from,
                to,
                reason,
                open_for: None,
            });
        }
        let deliver = !inner.pending.is_empty();
        drop(inner);
        if deliver {
            self.deliver_transitions();
        }
    }
}
