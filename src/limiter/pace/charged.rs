//! What the server charged, read from its own `remaining`.
//!
//! Every answer of a server that announces `remaining` tells its limiter's level just after it
//! decided that request. Take two attempts that left one right after the other (the lane's
//! departures `n` and `n + 1`): the server decided nothing of this lane's in between, so the
//! second one's charge is the level the first left, plus what refilled between the two
//! decisions, less the level the second left:
//!
//! - a bucket refilling at `r` per second: `min(L, R₁ + r · Δt) − R₂`, with `Δt` measured
//!   between the two departures (the time to reach the server cancels out, and the answers'
//!   latencies, which vary far more, play no part);
//! - a fixed window: `R₁ − R₂` while both fall in the same window (a window renewed in between
//!   tells nothing).
//!
//! A refusal of one dimension tells the refused request's charge too: it fits once the bucket
//! holds it, which the server announces as its delay, so it costs `R + r · delay`.
//!
//! The lane's very first departure has no neighbour before it, but a limit nobody has spent
//! from is full: it cost `L − R`. That is only an upper bound (another client on the same key
//! may have spent some), so it is taken only when it is plausible, at most
//! [`FIRST_PLAUSIBLE`] times the estimate; then the requests held for the lane's first answer
//! already book at the server's price.
//!
//! Readings are kept by departure, so answers that arrive out of order are paired all the same.
//! Each charge read goes out as an [`Action::Charged`], with what the client had estimated for
//! that request, for the lane's charge learner.
//!
//! Guarantees: pure in the instants given; a reading is only paired with its departure
//! neighbours; no arithmetic on server values can overflow or panic.

use std::time::Duration;

use tokio::time::Instant;

use super::protocol::{Action, Actions};
use crate::limiter::Dimension;

/// Readings kept per dimension: enough for the answers of a lane's requests in flight to find
/// their neighbours, bounded whatever the server sends.
const KEPT: usize = 32;

/// The most a first departure's `L − R` may exceed its estimate by (as a factor) to be read as
/// its charge rather than as other clients' spending.
const FIRST_PLAUSIBLE: u64 = 2;

/// Two announcements of one window's end closer than this are the same window (the end is
/// measured from each answer's arrival and rounded by the server).
const SAME_WINDOW: Duration = Duration::from_millis(500);

/// One answer's word on one dimension, and what the client knew of the answered attempt.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Reading {
    /// The attempt's departure number in its lane.
    pub(super) seq: u64,
    /// When it left.
    pub(super) departed: Instant,
    /// The level the server announced after deciding it.
    pub(super) remaining: u64,
    /// The limit announced with it (a bucket holds no more).
    pub(super) limit: Option<u64>,
    /// What the client estimated it would cost (0: not estimated, learned from nothing).
    pub(super) estimated: u64,
    /// Whether the server admitted it (and so charged it).
    pub(super) admitted: bool,
    /// A fixed window's end, if the dimension is one; `None`: a bucket.
    pub(super) window_end: Option<Instant>,
}

/// The readings of every dimension; see the [module documentation](self).
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct ChargeReader {
    readings: [Vec<Reading>; Dimension::ALL.len()],
}

impl ChargeReader {
    /// Takes one answer's reading of `dimension`, whose bucket (if it is one) refills
    /// `per_second`: the charges it tells, paired with the departures just before and just
    /// after it, go out as [`Action::Charged`].
    pub(super) fn read(
        &mut self,
        dimension: Dimension,
        reading: Reading,
        per_second: Option<f64>,
        actions: &mut Actions,
    ) {
        let kept = &mut self.readings[dimension as usize];
        let neighbour = |seq: Option<u64>| {
            seq.and_then(|seq| kept.iter().find(|kept| kept.seq == seq).copied())
        };
        if let Some(charged) = first_charge(&reading) {
            actions.push(Action::Charged {
                dimension,
                estimated: reading.estimated,
                charged,
            });
        }
        let before = neighbour(reading.seq.checked_sub(1));
        let after = neighbour(reading.seq.checked_add(1));
        let pairs = [before.map(|b| (b, reading)), after.map(|a| (reading, a))];
        for (first, second) in pairs.into_iter().flatten() {
            if let Some(charged) = charged_between(&first, &second, per_second) {
                actions.push(Action::Charged {
                    dimension,
                    estimated: second.estimated,
                    charged,
                });
            }
        }
        if kept.iter().any(|kept| kept.seq == reading.seq) {
            return;
        }
        if kept.len() >= KEPT {
            // The oldest departure has had its chance to meet its neighbours.
            if let Some(oldest) = kept
                .iter()
                .enumerate()
                .min_by_key(|(_, kept)| kept.seq)
                .map(|(i, _)| i)
            {
                kept.swap_remove(oldest);
            }
        }
        kept.push(reading);
    }

    /// A refusal of `dimension` whose server asked for `delay`: the refused request fits a
    /// bucket refilling `per_second` from its announced level after that delay, so that is its
    /// charge. A window's delay is its end, which tells nothing of the charge.
    pub(super) fn refused(
        &self,
        dimension: Dimension,
        reading: &Reading,
        delay: Duration,
        per_second: Option<f64>,
        actions: &mut Actions,
    ) {
        let Some(rate) = per_second.filter(|rate| rate.is_finite() && *rate > 0.0) else {
            return;
        };
        if reading.window_end.is_some() || reading.estimated == 0 {
            return;
        }
        let charged = reading.remaining as f64 + rate * delay.as_secs_f64();
        if let Some(charged) = whole(charged) {
            actions.push(Action::Charged {
                dimension,
                estimated: reading.estimated,
                charged,
            });
        }
    }
}

/// What the lane's first departure was charged, if the limit it was taken from was full and
/// the charge plausible (see the [module documentation](self)).
fn first_charge(reading: &Reading) -> Option<u64> {
    if reading.seq != 0 || !reading.admitted || reading.estimated == 0 {
        return None;
    }
    let charged = reading.limit?.checked_sub(reading.remaining)?;
    (charged >= 1 && charged <= reading.estimated.saturating_mul(FIRST_PLAUSIBLE))
        .then_some(charged)
}

/// What `second` was charged, read from the levels `first` and `second` left; `None` when the
/// two tell nothing (`second` refused or not estimated, windows apart, no refill rate known for
/// a bucket, or nothing spent).
fn charged_between(first: &Reading, second: &Reading, per_second: Option<f64>) -> Option<u64> {
    if !second.admitted || second.estimated == 0 || second.seq != first.seq.checked_add(1)? {
        return None;
    }
    let before = match (first.window_end, second.window_end) {
        (Some(first_end), Some(second_end)) => {
            let apart = if first_end > second_end {
                first_end - second_end
            } else {
                second_end - first_end
            };
            if apart > SAME_WINDOW {
                return None;
            }
            first.remaining as f64
        }
        (None, None) => {
            let rate = per_second.filter(|rate| rate.is_finite() && *rate > 0.0)?;
            let between = second.departed.saturating_duration_since(first.departed);
            let refilled = first.remaining as f64 + rate * between.as_secs_f64();
            match first.limit.or(second.limit) {
                Some(limit) => refilled.min(limit as f64),
                None => refilled,
            }
        }
        // The shape became known between the two: they are read alike from the next pair on.
        _ => return None,
    };
    whole(before - second.remaining as f64)
}

/// A charge in whole units; `None` for less than one (nothing measurable was spent).
fn whole(charged: f64) -> Option<u64> {
    // Float-to-integer `as` saturates; the value is finite and at least 1 here.
    (charged.is_finite() && charged >= 1.0).then(|| charged.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(seq: u64, departed: Instant, remaining: u64) -> Reading {
        Reading {
            seq,
            departed,
            remaining,
            limit: Some(1_000),
            estimated: 40,
            admitted: true,
            window_end: None,
        }
    }

    fn charges(actions: &Actions) -> Vec<(u64, u64)> {
        actions
            .iter()
            .filter_map(|action| match action {
                Action::Charged {
                    estimated, charged, ..
                } => Some((estimated, charged)),
                _ => None,
            })
            .collect()
    }

    fn read(reader: &mut ChargeReader, reading: Reading, rate: Option<f64>) -> Vec<(u64, u64)> {
        let mut actions = Actions::default();
        reader.read(Dimension::Tokens, reading, rate, &mut actions);
        charges(&actions)
    }

    /// A bucket of 1 000 refilling 1 000/s: 700 left, then 50 ms later 698 left: the second
    /// request was charged 700 + 50 − 698 = 52, whatever order the answers came in.
    #[test]
    fn two_neighbouring_departures_tell_the_charge_net_of_the_refill() {
        let start = Instant::now();
        let later = start + Duration::from_millis(50);
        let mut reader = ChargeReader::default();
        assert!(read(&mut reader, reading(7, start, 700), Some(1_000.0)).is_empty());
        assert_eq!(
            read(&mut reader, reading(8, later, 698), Some(1_000.0)),
            [(40, 52)]
        );
        // The same pair, the later answer first.
        let mut reader = ChargeReader::default();
        assert!(read(&mut reader, reading(8, later, 698), Some(1_000.0)).is_empty());
        assert_eq!(
            read(&mut reader, reading(7, start, 700), Some(1_000.0)),
            [(40, 52)]
        );
    }

    /// The lane's first departure, from a full limit: `L − R`, if plausible.
    #[test]
    fn the_first_departure_is_read_against_a_full_limit() {
        let start = Instant::now();
        let mut reader = ChargeReader::default();
        assert_eq!(
            read(&mut reader, reading(0, start, 948), Some(1_000.0)),
            [(40, 52)]
        );
        // Half the limit gone at the first answer: others spent it, not this request.
        let mut reader = ChargeReader::default();
        assert!(read(&mut reader, reading(0, start, 500), Some(1_000.0)).is_empty());
    }

    #[test]
    fn a_full_bucket_refills_no_further_than_its_limit() {
        let start = Instant::now();
        let mut reader = ChargeReader::default();
        read(&mut reader, reading(1, start, 990), Some(1_000.0));
        // A second later the bucket had long been full (1 000), not 1 990.
        let later = start + Duration::from_secs(1);
        assert_eq!(
            read(&mut reader, reading(2, later, 948), Some(1_000.0)),
            [(40, 52)]
        );
    }

    #[test]
    fn departures_that_are_not_neighbours_or_a_refusal_tell_nothing() {
        let start = Instant::now();
        let mut reader = ChargeReader::default();
        read(&mut reader, reading(1, start, 700), Some(1_000.0));
        // Departure 2 is still out: 3 cannot be read against 1.
        assert!(read(&mut reader, reading(3, start, 600), Some(1_000.0)).is_empty());
        // A refusal was charged nothing; it still anchors the next departure.
        let refused = Reading {
            admitted: false,
            ..reading(4, start, 600)
        };
        assert!(read(&mut reader, refused, Some(1_000.0)).is_empty());
        assert_eq!(
            read(&mut reader, reading(5, start, 550), Some(1_000.0)),
            [(40, 50)]
        );
        // No refill rate known: a bucket cannot be read.
        assert!(read(&mut reader, reading(6, start, 500), None).is_empty());
    }

    #[test]
    fn a_window_is_read_within_itself_only() {
        let start = Instant::now();
        let end = start + Duration::from_secs(60);
        let in_window = |seq, remaining, end| Reading {
            window_end: Some(end),
            ..reading(seq, start, remaining)
        };
        let mut reader = ChargeReader::default();
        read(&mut reader, in_window(1, 800, end), None);
        assert_eq!(read(&mut reader, in_window(2, 748, end), None), [(40, 52)]);
        // The next window: its level is not the last one's less a charge.
        let next = end + Duration::from_secs(60);
        assert!(read(&mut reader, in_window(3, 848, next), None).is_empty());
    }

    /// A request refused by a bucket with 30 left, told to come back in 22 ms at 1 000/s,
    /// costs 52.
    #[test]
    fn a_refusal_tells_the_refused_requests_charge() {
        let reader = ChargeReader::default();
        let refused = Reading {
            admitted: false,
            ..reading(9, Instant::now(), 30)
        };
        let mut actions = Actions::default();
        let delay = Duration::from_millis(22);
        reader.refused(
            Dimension::Tokens,
            &refused,
            delay,
            Some(1_000.0),
            &mut actions,
        );
        assert_eq!(charges(&actions), [(40, 52)]);
        let mut actions = Actions::default();
        let window = Reading {
            window_end: Some(Instant::now()),
            ..refused
        };
        reader.refused(
            Dimension::Tokens,
            &window,
            delay,
            Some(1_000.0),
            &mut actions,
        );
        assert!(actions.is_empty());
    }

    #[test]
    fn hostile_numbers_never_panic_and_memory_is_bounded() {
        let start = Instant::now();
        let mut reader = ChargeReader::default();
        for seq in [u64::MAX, u64::MAX - 1, 0, 1] {
            for remaining in [0, u64::MAX] {
                let hostile = Reading {
                    limit: Some(u64::MAX),
                    estimated: u64::MAX,
                    ..reading(seq, start, remaining)
                };
                read(&mut reader, hostile, Some(f64::MAX));
                read(&mut reader, hostile, Some(f64::NAN));
            }
        }
        for seq in 0..1_000 {
            read(&mut reader, reading(seq * 2, start, 10), Some(1.0));
        }
        assert!(reader.readings.iter().all(|kept| kept.len() <= KEPT));
    }
}
