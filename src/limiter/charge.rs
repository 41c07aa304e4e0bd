//! What the server charges per unit the client estimated, learned from settled answers.
//!
//! A server that counts tokens by its own rule charges more (or less) than the client's
//! estimate, and its `remaining` says so only after the requests in flight have spent it. A
//! [`ChargeLearner`] follows, per dimension, the ratio of what each answer was charged to what
//! was estimated for it (a moving average), and how far single answers stray from that ratio
//! (their average deviation). [`ChargeLearner::corrected`] books an estimate at the ratio plus
//! that deviation, so that an answer charged a little above the mean still fits what was booked.
//!
//! Guarantees: the requests dimension is never corrected (a request is one request); a
//! corrected cost is never below its estimate (what is charged less is given back when the
//! booking is settled) and never above [`MAX_CHARGE`] times it; and each answer is read against
//! the factor its booking was priced at, so bookings that waited while the factor moved do not
//! feed the factor back into itself.
//!
//! The learner is a plain value. [`SharedCharges`] keeps one in atomics, so that pricing a
//! booking takes no lock.

use std::sync::atomic::{AtomicU64, Ordering};

use super::cost::{Cost, Dimension, DIMENSIONS};

/// How fast the learned charge follows each settled answer (a moving average over about five).
const CHARGE_WEIGHT: f64 = 0.2;
/// The most the learned charge scales an estimate by.
const MAX_CHARGE: f64 = 4.0;

/// A charge factor per dimension (indexed as [`Dimension::ALL`]).
pub(super) type Charges = [f64; DIMENSIONS];

/// The server's charge per estimated unit and its spread, per dimension.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct ChargeLearner {
    /// What the server charges per unit estimated: a moving average.
    charge: Charges,
    /// How far one answer's charge per unit estimated strays from `charge`, on average.
    spread: Charges,
}

impl Default for ChargeLearner {
    /// Nothing learned yet: the server charges what was estimated.
    fn default() -> Self {
        ChargeLearner {
            charge: [1.0; DIMENSIONS],
            spread: [0.0; DIMENSIONS],
        }
    }
}

impl ChargeLearner {
    /// `estimate` scaled in every dimension but requests by what the server has been charging
    /// per unit estimated, plus the average deviation of single answers; never below the
    /// estimate.
    pub(super) fn corrected(&self, estimate: Cost) -> Cost {
        let mut corrected = estimate;
        for (dimension, units) in estimate.iter() {
            if dimension == Dimension::Requests {
                continue;
            }
            let factor = self.factor(dimension.index());
            if factor > 1.0 {
                let scaled = (units as f64 * factor).ceil();
                corrected = corrected.with(dimension, scaled.min(u64::MAX as f64) as u64);
            }
        }
        corrected
    }

    /// The factor [`corrected`](Self::corrected) applies now, per dimension: what a booking
    /// keeps so that its answer can later be read at the price it was booked at.
    pub(super) fn applied(&self) -> Charges {
        std::array::from_fn(|i| self.factor(i))
    }

    /// Follows what one answer was charged (`actual`) against what was booked for it
    /// (`booked`, priced at the factors `applied`).
    pub(super) fn learn(&mut self, booked: &Cost, actual: &Cost, applied: &Charges) {
        for (dimension, units) in booked.iter() {
            let used = actual.get(dimension);
            if dimension == Dimension::Requests || used == 0 {
                continue;
            }
            let i = dimension.index();
            let current = self.charge[i];
            // `booked` is the estimate times the factor applied then, so this is what the
            // server charged per unit *estimated*, whatever the factor became since.
            let observed = used as f64 / units as f64 * applied[i];
            self.charge[i] = (current + CHARGE_WEIGHT * (observed - current))
                .clamp(1.0 / MAX_CHARGE, MAX_CHARGE);
            let deviation = (observed - current).abs();
            let spread = self.spread[i];
            self.spread[i] = (spread + CHARGE_WEIGHT * (deviation - spread)).clamp(0.0, MAX_CHARGE);
        }
    }

    fn factor(&self, i: usize) -> f64 {
        (self.charge[i] + self.spread[i]).clamp(1.0, MAX_CHARGE)
    }
}

/// A [`ChargeLearner`] shared by every booking of a budget, as `f64` bits in atomics: pricing
/// a booking reads it without a lock.
///
/// Two answers settled at once in the same dimension may each learn from the same state and
/// one of them count for nothing; a moving average does not need every sample.
#[derive(Debug)]
pub(super) struct SharedCharges {
    charge: [AtomicU64; DIMENSIONS],
    spread: [AtomicU64; DIMENSIONS],
}

impl Default for SharedCharges {
    fn default() -> Self {
        let learner = ChargeLearner::default();
        SharedCharges {
            charge: learner.charge.map(|f| AtomicU64::new(f.to_bits())),
            spread: learner.spread.map(|f| AtomicU64::new(f.to_bits())),
        }
    }
}

impl SharedCharges {
    /// What has been learned so far.
    pub(super) fn load(&self) -> ChargeLearner {
        let load = |cell: &AtomicU64| f64::from_bits(cell.load(Ordering::Relaxed));
        ChargeLearner {
            charge: std::array::from_fn(|i| load(&self.charge[i])),
            spread: std::array::from_fn(|i| load(&self.spread[i])),
        }
    }

    /// [`ChargeLearner::learn`] on the shared learner.
    pub(super) fn learn(&self, booked: &Cost, actual: &Cost, applied: &Charges) {
        let before = self.load();
        let mut after = before;
        after.learn(booked, actual, applied);
        // Only what this answer changed is written: an answer learned meanwhile in another
        // dimension is kept.
        let changed = |cells: &[AtomicU64; DIMENSIONS], before: &Charges, after: &Charges| {
            for ((cell, before), after) in cells.iter().zip(before).zip(after) {
                if before.to_bits() != after.to_bits() {
                    cell.store(after.to_bits(), Ordering::Relaxed);
                }
            }
        };
        changed(&self.charge, &before.charge, &after.charge);
        changed(&self.spread, &before.spread, &after.spread);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(units: u64) -> Cost {
        Cost::requests(1).with(Dimension::Tokens, units)
    }

    #[test]
    fn nothing_learned_corrects_nothing() {
        let learner = ChargeLearner::default();
        let estimate = tokens(100).with(Dimension::OutputTokens, 7);
        assert_eq!(learner.corrected(estimate), estimate);
        assert_eq!(learner.applied(), [1.0; DIMENSIONS]);
    }

    #[test]
    fn the_learned_charge_follows_the_server_plus_its_spread() {
        let mut learner = ChargeLearner::default();
        let estimate = tokens(100);
        for _ in 0..20 {
            let (booked, applied) = (learner.corrected(estimate), learner.applied());
            // The server charges 125 tokens for every 100 estimated.
            learner.learn(&booked, &tokens(125), &applied);
        }
        // 125, and a little more while the charge was still being learned.
        let corrected = learner.corrected(estimate).get(Dimension::Tokens);
        assert!((125..=128).contains(&corrected), "{corrected}");
    }

    #[test]
    fn requests_are_never_corrected_nor_an_estimate_lowered() {
        let mut learner = ChargeLearner::default();
        let estimate = Cost::requests(2).with(Dimension::Tokens, 100);
        for _ in 0..50 {
            // Half the tokens estimated, and twice the requests: neither is learned.
            let actual = Cost::requests(4).with(Dimension::Tokens, 50);
            let applied = learner.applied();
            learner.learn(&estimate, &actual, &applied);
        }
        assert_eq!(learner.corrected(estimate), estimate);
    }

    #[test]
    fn the_correction_is_capped() {
        let mut learner = ChargeLearner::default();
        for _ in 0..50 {
            let (booked, applied) = (learner.corrected(tokens(10)), learner.applied());
            learner.learn(&booked, &tokens(u64::MAX), &applied);
        }
        assert_eq!(
            learner.corrected(tokens(10)),
            tokens(10 * MAX_CHARGE as u64)
        );
        assert_eq!(learner.applied()[Dimension::Tokens.index()], MAX_CHARGE);
    }

    /// Each answer is read at the factor its booking was priced at: bookings that waited
    /// while the factor grew are not read as charged more again.
    #[test]
    fn the_charge_factor_is_learned_at_the_price_booked() {
        let mut learner = ChargeLearner::default();
        // The server charges 1.5 × the estimate on average (1.2 and 1.8 in turn).
        let estimate = tokens(100);
        let actual = |i: usize| tokens([120, 180][i % 2]);
        // A queue of 8: each answer is learned eight bookings after it was priced.
        let mut queue = std::collections::VecDeque::new();
        let mut factors = Vec::new();
        for i in 0..200 {
            queue.push_back((learner.corrected(estimate), learner.applied()));
            if queue.len() > 8 {
                if let Some((booked, applied)) = queue.pop_front() {
                    learner.learn(&booked, &actual(i), &applied);
                }
            }
            factors.push(learner.corrected(estimate).get(Dimension::Tokens) as f64 / 100.0);
        }
        // The average charge plus its learned spread (0.3), steady.
        let settled = &factors[100..];
        assert!(
            settled.iter().all(|f| (1.5..2.0).contains(f)),
            "{settled:?}"
        );
    }

    #[test]
    fn a_shared_learner_learns_like_a_plain_one() {
        let shared = SharedCharges::default();
        let mut plain = ChargeLearner::default();
        assert_eq!(shared.load(), plain);
        for used in [130, 90, 170, 110] {
            let (booked, applied) = (plain.corrected(tokens(100)), plain.applied());
            plain.learn(&booked, &tokens(used), &applied);
            shared.learn(&booked, &tokens(used), &applied);
        }
        assert_eq!(shared.load(), plain);
    }
}
