//! What the server charges per unit the client estimated, learned from two sources.
//!
//! A server that counts tokens by its own rule charges more (or less) than the client's
//! estimate. Two things tell what it charged:
//!
//! - **its limiter's own count**, read from successive `remaining` announcements (the
//!   difference between two answers, net of what refilled between them, is what the requests
//!   in between were charged; the pace learner reads it and hands each reading over as
//!   [`ChargeLearner::learn_charged`]). This is what decides whether the next request fits, so
//!   once a dimension has a reading it is the only source of that dimension;
//! - **the `usage` an answer reports** ([`ChargeLearner::learn`]), for servers that announce no
//!   `remaining`. It is the model's tokenizer count, which a provider's limiter need not share.
//!
//! From the usage, the learner follows the ratio of what each answer was charged to what was
//! booked for it (a running mean over the first answers, then a moving average over about
//! five), and how far single answers stray from it (their average deviation); an estimate is
//! booked at the ratio plus that deviation.
//!
//! From the limiter's count, it fits the charge as `a × estimate + b` by least squares over
//! the last readings (about ten): a server that counts the whole JSON body charges a fixed
//! framing beyond the prompt, which a ratio alone books too little for small requests and too
//! much for large ones. While the estimates barely vary, `b` cannot be told from `a` and the
//! fit is a ratio. An estimate is booked at the fit plus twice the readings' average distance
//! from it (the server's count of `remaining` is rounded down, and its rule has its own
//! rounding). The first reading alone gives the ratio, so the correction holds from the second
//! answer on.
//!
//! Guarantees: the requests dimension is never corrected (a request is one request); a
//! corrected cost is never below its estimate (what is charged less is given back when the
//! booking is settled, or by the next `remaining`) and never above [`MAX_CHARGE`] times it;
//! and each usage is read against the factor its booking was priced at, so bookings that
//! waited while the factor moved do not feed the factor back into itself.
//!
//! The learner is a plain value. [`SharedCharges`] keeps one behind a lock for learning and
//! publishes its prices in atomics, so that pricing a booking takes no lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::cost::{Cost, Dimension, DIMENSIONS};

/// How fast the learned charge follows each settled answer once past the first few (a moving
/// average over about five).
const CHARGE_WEIGHT: f64 = 0.2;
/// The most the learned charge scales an estimate by.
const MAX_CHARGE: f64 = 4.0;
/// How much each reading of the limiter's count weighs against the one before it: the fit
/// forgets a reading's weight by this factor at each new one (a memory of about ten).
const READING_MEMORY: f64 = 0.9;
/// Estimates that vary by less than this (relative standard deviation) cannot tell a fixed
/// charge from a factor: the fit is a ratio.
const MIN_SPREAD_FOR_OFFSET: f64 = 0.1;
/// The margin a fit books above itself, in average distances of the readings from it.
const READING_MARGIN: f64 = 2.0;

/// A charge factor per dimension (indexed as [`Dimension::ALL`]).
pub(super) type Charges = [f64; DIMENSIONS];

/// The weight of the `samples`-th sample of a moving average: a running mean over the first
/// ones, so that the first answers are learned at once, then `CHARGE_WEIGHT`.
fn weight(samples: u32) -> f64 {
    (1.0 / f64::from(samples.max(1))).max(CHARGE_WEIGHT)
}

/// The limiter's charge as a function of the estimate, fitted to its readings.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Fit {
    /// Sums over the readings, each weighed down by [`READING_MEMORY`] per newer one.
    weight: f64,
    estimated: f64,
    charged: f64,
    estimated_sq: f64,
    product: f64,
    /// The readings' average distance from the fit as it stood before each.
    distance: f64,
    readings: u32,
}

impl Fit {
    /// Takes one reading: the server charged `charged` for a request estimated at `estimated`.
    fn learn(&mut self, estimated: f64, charged: f64) {
        self.readings = self.readings.saturating_add(1);
        if let Some(predicted) = self.predict(estimated) {
            let distance = (charged - predicted).abs();
            let weight = weight(self.readings - 1);
            self.distance += weight * (distance - self.distance);
        }
        self.weight = READING_MEMORY * self.weight + 1.0;
        self.estimated = READING_MEMORY * self.estimated + estimated;
        self.charged = READING_MEMORY * self.charged + charged;
        self.estimated_sq = READING_MEMORY * self.estimated_sq + estimated * estimated;
        self.product = READING_MEMORY * self.product + estimated * charged;
    }

    /// What the server would charge for `estimated`, by the fit; `None` before any reading.
    fn predict(&self, estimated: f64) -> Option<f64> {
        if self.readings == 0 || self.estimated_sq <= 0.0 {
            return None;
        }
        let ratio = self.product / self.estimated_sq;
        let mean = self.estimated / self.weight;
        let variance = (self.estimated_sq / self.weight - mean * mean).max(0.0);
        let affine = (variance.sqrt() >= MIN_SPREAD_FOR_OFFSET * mean)
            .then(|| {
                let slope = (self.weight * self.product - self.estimated * self.charged)
                    / (self.weight * self.estimated_sq - self.estimated * self.estimated);
                let offset = (self.charged - slope * self.estimated) / self.weight;
                (slope, offset)
            })
            // A fit that says larger requests cost less is noise, not a rule.
            .filter(|(slope, _)| slope.is_finite() && *slope > 0.0);
        let predicted = match affine {
            Some((slope, offset)) => slope * estimated + offset,
            None => ratio * estimated,
        };
        predicted
            .is_finite()
            .then(|| predicted.clamp(estimated / MAX_CHARGE, estimated * MAX_CHARGE))
    }

    /// What to book for `estimated`: the fit and its margin.
    fn booked(&self, estimated: f64) -> Option<f64> {
        let predicted = self.predict(estimated)?;
        Some(predicted + READING_MARGIN * self.distance)
    }
}

/// The server's charge per estimated unit, per dimension; see the [module documentation](self).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct ChargeLearner {
    /// From the usage: what the server charges per unit estimated, a moving average.
    charge: Charges,
    /// How far one answer's charge per unit estimated strays from `charge`, on average.
    spread: Charges,
    /// Usages learned so far, per dimension.
    samples: [u32; DIMENSIONS],
    /// From the limiter's own count, once read: replaces the usage.
    read: [Fit; DIMENSIONS],
}

impl Default for ChargeLearner {
    /// Nothing learned yet: the server charges what was estimated.
    fn default() -> Self {
        ChargeLearner {
            charge: [1.0; DIMENSIONS],
            spread: [0.0; DIMENSIONS],
            samples: [0; DIMENSIONS],
            read: [Fit::default(); DIMENSIONS],
        }
    }
}

impl ChargeLearner {
    /// `estimate` in every dimension but requests at what the server charges for it: the
    /// limiter's count fitted, else the usage's ratio plus its deviation; never below the
    /// estimate.
    pub(super) fn corrected(&self, estimate: Cost) -> Cost {
        let mut corrected = estimate;
        for (dimension, units) in estimate.iter() {
            if dimension == Dimension::Requests {
                continue;
            }
            let i = dimension.index();
            let estimated = units as f64;
            let booked = self.read[i]
                .booked(estimated)
                .unwrap_or_else(|| estimated * self.factor(i));
            if booked > estimated {
                let booked = booked
                    .ceil()
                    .min(estimated * MAX_CHARGE)
                    .min(u64::MAX as f64);
                corrected = corrected.with(dimension, (booked as u64).max(units));
            }
        }
        corrected
    }

    /// The factor the usage's ratio applies now, per dimension: what a booking keeps so that
    /// its answer's usage can later be read at the price it was booked at.
    pub(super) fn applied(&self) -> Charges {
        std::array::from_fn(|i| self.factor(i))
    }

    /// Whether `dimension`'s charge is read from the limiter's own count (its usage is then
    /// not what the limiter charged, and no longer learned).
    pub(super) fn reads_limiter(&self, dimension: Dimension) -> bool {
        self.read[dimension.index()].readings > 0
    }

    /// Follows what one answer's usage says it was charged (`actual`) against what was booked
    /// for it (`booked`, priced at the factors `applied`), in every dimension whose limiter's
    /// count is not read.
    pub(super) fn learn(&mut self, booked: &Cost, actual: &Cost, applied: &Charges) {
        for (dimension, units) in booked.iter() {
            let used = actual.get(dimension);
            if dimension == Dimension::Requests || used == 0 || self.reads_limiter(dimension) {
                continue;
            }
            let i = dimension.index();
            self.samples[i] = self.samples[i].saturating_add(1);
            let weight = weight(self.samples[i]);
            let current = self.charge[i];
            // `booked` is the estimate times the factor applied then, so this is what the
            // server charged per unit *estimated*, whatever the factor became since.
            let observed = used as f64 / units as f64 * applied[i];
            let learned = if self.samples[i] == 1 {
                observed
            } else {
                current + weight * (observed - current)
            };
            self.charge[i] = learned.clamp(1.0 / MAX_CHARGE, MAX_CHARGE);
            if self.samples[i] > 1 {
                let deviation = (observed - current).abs();
                let spread = self.spread[i];
                self.spread[i] = (spread + weight * (deviation - spread)).clamp(0.0, MAX_CHARGE);
            }
        }
    }

    /// Takes one reading of the limiter's own count: a request estimated at `estimated` units
    /// of `dimension` was charged `charged`. From then on `dimension` is priced by these
    /// readings only.
    pub(super) fn learn_charged(&mut self, dimension: Dimension, estimated: u64, charged: u64) {
        if dimension == Dimension::Requests || estimated == 0 {
            return;
        }
        // A reading beyond what any correction books is not a charge but someone else's
        // spending (another process on the same key): it would only inflate the fit.
        let estimated = estimated as f64;
        let charged = (charged as f64).clamp(estimated / MAX_CHARGE, estimated * MAX_CHARGE);
        self.read[dimension.index()].learn(estimated, charged);
    }

    fn factor(&self, i: usize) -> f64 {
        (self.charge[i] + self.spread[i]).clamp(1.0, MAX_CHARGE)
    }
}

/// A [`ChargeLearner`] shared by every booking of a budget: learned under a lock (once per
/// answer), read without one (once per booking) from what the last lesson published.
#[derive(Debug, Default)]
pub(super) struct SharedCharges {
    learner: Mutex<ChargeLearner>,
    /// The learner as last published, one `f64` as bits per field.
    published: Published,
}

/// A learner's numbers, readable without a lock: written under the learner's lock, read by
/// pricing. A pricing that reads while a lesson is written may mix two consecutive lessons'
/// numbers, which differ by one answer's worth.
#[derive(Debug)]
struct Published {
    snapshot: [AtomicU64; SNAPSHOT_LEN],
}

/// The numbers of a learner per dimension: the usage's charge, spread and samples, and the
/// fit's sums, distance and readings.
const PER_DIMENSION: usize = 10;
const SNAPSHOT_LEN: usize = PER_DIMENSION * DIMENSIONS;

impl Default for Published {
    fn default() -> Self {
        let published = Published {
            snapshot: std::array::from_fn(|_| AtomicU64::new(0)),
        };
        published.store(&ChargeLearner::default());
        published
    }
}

impl Published {
    fn store(&self, learner: &ChargeLearner) {
        for i in 0..DIMENSIONS {
            let fit = &learner.read[i];
            let values = [
                learner.charge[i],
                learner.spread[i],
                f64::from(learner.samples[i]),
                fit.weight,
                fit.estimated,
                fit.charged,
                fit.estimated_sq,
                fit.product,
                fit.distance,
                f64::from(fit.readings),
            ];
            for (j, value) in values.into_iter().enumerate() {
                self.snapshot[i * PER_DIMENSION + j].store(value.to_bits(), Ordering::Relaxed);
            }
        }
    }

    fn load(&self) -> ChargeLearner {
        let value = |i: usize, j: usize| {
            f64::from_bits(self.snapshot[i * PER_DIMENSION + j].load(Ordering::Relaxed))
        };
        let mut learner = ChargeLearner::default();
        for i in 0..DIMENSIONS {
            learner.charge[i] = value(i, 0);
            learner.spread[i] = value(i, 1);
            // Stored from `u32`s: the casts back are exact.
            learner.samples[i] = value(i, 2) as u32;
            learner.read[i] = Fit {
                weight: value(i, 3),
                estimated: value(i, 4),
                charged: value(i, 5),
                estimated_sq: value(i, 6),
                product: value(i, 7),
                distance: value(i, 8),
                readings: value(i, 9) as u32,
            };
        }
        learner
    }
}

impl SharedCharges {
    /// What has been learned so far, as last published (no lock).
    pub(super) fn load(&self) -> ChargeLearner {
        self.published.load()
    }

    fn learner(&self) -> MutexGuard<'_, ChargeLearner> {
        // A plain value: consistent even if a holder panicked.
        self.learner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// [`ChargeLearner::learn`] on the shared learner.
    pub(super) fn learn(&self, booked: &Cost, actual: &Cost, applied: &Charges) {
        let mut learner = self.learner();
        learner.learn(booked, actual, applied);
        self.published.store(&learner);
    }

    /// [`ChargeLearner::learn_charged`] on the shared learner.
    pub(super) fn learn_charged(&self, dimension: Dimension, estimated: u64, charged: u64) {
        let mut learner = self.learner();
        learner.learn_charged(dimension, estimated, charged);
        self.published.store(&learner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(units: u64) -> Cost {
        Cost::requests(1).with(Dimension::Tokens, units)
    }

    fn booked_tokens(learner: &ChargeLearner, estimate: u64) -> u64 {
        learner.corrected(tokens(estimate)).get(Dimension::Tokens)
    }

    #[test]
    fn nothing_learned_corrects_nothing() {
        let learner = ChargeLearner::default();
        let estimate = tokens(100).with(Dimension::OutputTokens, 7);
        assert_eq!(learner.corrected(estimate), estimate);
        assert_eq!(learner.applied(), [1.0; DIMENSIONS]);
        assert_eq!(SharedCharges::default().load(), learner);
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
    fn the_first_usage_is_learned_at_once() {
        let mut learner = ChargeLearner::default();
        let (booked, applied) = (learner.corrected(tokens(100)), learner.applied());
        learner.learn(&booked, &tokens(130), &applied);
        assert_eq!(booked_tokens(&learner, 100), 130);
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
            learner.learn_charged(Dimension::Tokens, 100, 50);
            learner.learn_charged(Dimension::Requests, 1, 3);
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
        let mut read = ChargeLearner::default();
        for _ in 0..50 {
            read.learn_charged(Dimension::Tokens, 10, u64::MAX);
        }
        assert_eq!(booked_tokens(&read, 10), 10 * MAX_CHARGE as u64);
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

    /// A server that counts the whole JSON body charges a fixed framing beyond the prompt:
    /// ⌈(body) / 4⌉ + 20 where the client counts the content alone. The readings of its count
    /// are fitted as `a × estimate + b`, so small and large requests are both booked at what
    /// they will be charged (a ratio would book small ones short, and be refused).
    #[test]
    fn readings_of_the_limiters_count_fit_a_fixed_framing() {
        let mut learner = ChargeLearner::default();
        // Three sizes in turn: the server charges 13 more than estimated, give or take the
        // rounding of its `remaining`.
        let sizes = [39u64, 51, 62];
        for i in 0..30 {
            let estimate = sizes[i % 3];
            let noise = [0, 1, 0, 0, 1][i % 5];
            learner.learn_charged(Dimension::Tokens, estimate, estimate + 13 - noise);
        }
        for estimate in sizes {
            let booked = booked_tokens(&learner, estimate);
            assert!(
                (estimate + 13..=estimate + 15).contains(&booked),
                "{estimate}: booked {booked}"
            );
        }
    }

    /// The first reading prices the next booking: the correction holds from the second answer.
    #[test]
    fn the_first_reading_is_a_ratio_and_holds_at_once() {
        let mut learner = ChargeLearner::default();
        learner.learn_charged(Dimension::Tokens, 40, 52);
        assert_eq!(booked_tokens(&learner, 40), 52);
        assert_eq!(booked_tokens(&learner, 80), 104);
    }

    /// Once the limiter's count is read, what the usage says is no longer learned: a model's
    /// tokenizer counting less than the limiter charged would undo the correction.
    #[test]
    fn readings_of_the_limiter_outrank_the_usage() {
        let mut learner = ChargeLearner::default();
        learner.learn_charged(Dimension::Tokens, 40, 52);
        assert!(learner.reads_limiter(Dimension::Tokens));
        assert!(!learner.reads_limiter(Dimension::InputTokens));
        for _ in 0..10 {
            let applied = learner.applied();
            learner.learn(&tokens(52), &tokens(30), &applied);
        }
        assert_eq!(booked_tokens(&learner, 40), 52);
    }

    #[test]
    fn hostile_readings_never_panic_nor_book_below_the_estimate() {
        let mut learner = ChargeLearner::default();
        for (estimated, charged) in [
            (0, 5),
            (1, 0),
            (u64::MAX, u64::MAX),
            (3, u64::MAX),
            (u64::MAX, 1),
        ] {
            learner.learn_charged(Dimension::Tokens, estimated, charged);
            for estimate in [0, 1, 40, u64::MAX] {
                assert!(booked_tokens(&learner, estimate) >= estimate);
            }
        }
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
        plain.learn_charged(Dimension::Tokens, 40, 55);
        shared.learn_charged(Dimension::Tokens, 40, 55);
        assert_eq!(shared.load(), plain);
    }
}
