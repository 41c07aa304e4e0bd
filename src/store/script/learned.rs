//! The scripts that share what a worker learned with the fleet: a limit ([`LEARN`]) and the
//! pace learned from plain refusals ([`SHARE_CUBIC`]), with the translation of their arguments.

use std::time::Duration;

use crate::limiter::{Dimension, Limit};

use super::micros;

/// How long a learned limit keeps the lane's hash alive without any booking, in µs.
const LEARNED_FOR_US: &str = "60000000";

/// Shares a limit a worker learned from the server (or forgets it, when it learned there is
/// none): every booking then uses it, unless its caller's own is slower.
///
/// KEYS\[1\]: the lane's hash. ARGV\[1\]: now in µs or `''`; ARGV\[2\]: the dimension;
/// ARGV\[3\]: the interval in µs (`''`: forget the learned limit); ARGV\[4\]: the burst;
/// ARGV\[5\]: `1` when strict; ARGV\[6\]: `1` when the cell starts anew with its burst spent
/// (the server refused the pace it was booked at; bookings already granted keep their slots).
/// ARGV\[7\]: how long the hash lives without bookings, µs. ARGV\[8\]: the share of the
/// pace learned from plain refusals (`rs`, see [`SHARE_CUBIC`]) the caller paces on, when the
/// limit is that pace, else `''`: a worker that has not read the fleet's latest decrease yet
/// would set the fleet back to the pace it gave up, and is answered `'stale'` instead.
pub(in crate::store) const LEARN: &str = concat!(
    prelude!(),
    r#"
local d = ARGV[2]
local on = tonumber(ARGV[8])
if on and (tonumber(redis.call('HGET', key, 'rs')) or 0) > on then return 'stale' end
if ARGV[3] == '' then
  redis.call('HDEL', key, 'l' .. d)
else
  set_learned(d, ARGV[3], ARGV[4], ARGV[5], ARGV[6])
end
local until_us = now + tonumber(ARGV[7])
redis.call('HSET', key, 'lx', fmt(until_us))
local ttl = ttl_ms(until_us)
if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
return 'ok'
"#
);

/// Shares the pace a worker learned from plain refusals (field `rf`:
/// `seq,last_max,beta,since,after,stretch_at,stretch`: a number that grows with every share,
/// the curve's rate at its refusal, its decrease, its start and the decrease's instant in µs of
/// the server's clock, then the stretch of the schedule it made, see below); the latest share
/// wins (workers share only new decreases, so the latest is the fleet's latest, and comparing
/// instants converted by different offsets would not be exact). The bookings' replies carry it
/// to every worker, which paces on it (see `SharedBudget::share_cubic`).
///
/// A decrease that slows the requests' learned limit stretches the schedule already booked
/// past a pivot [`STRETCH_AFTER`] from now: the requests' `tat`, if past the pivot, moves to
/// `pivot + (tat − pivot) · k`, with `k` the new interval over the old one (at most
/// [`MAX_STRETCH`]). Every worker moves its waiting grants the same way (those booked before
/// this share, see `Stretches`): the grants made at the pace given up keep their order and
/// leave at the new pace, no slot is left empty and none is refused for being booked too
/// close. The grants before the pivot keep their instants: a worker that has not heard of the
/// stretch yet asks the store just before such a grant leaves (see [`CURVE`]).
///
/// KEYS\[1\]: the lane's hash. ARGV\[1\]: now in µs or `''`; ARGV\[2\]..ARGV\[5\]: the four
/// values; ARGV\[6\]: how long the hash lives without bookings, µs; ARGV\[7\]..ARGV\[10\]:
/// the requests' limit the decrease set (interval in µs, or `''` for none; burst; strict;
/// fresh), written with the curve in one step (as [`LEARN`] would), so that no booking sees the
/// new curve under the old pace; ARGV\[11\]: [`MAX_STRETCH`]; ARGV\[12\]: [`STRETCH_AFTER`]
/// in µs. Replies `{seq, pivot, stretch}`, or `{'stale'}` when the limit is faster than the
/// fleet's (another worker's decrease answered the same congestion further): nothing is
/// written, and the worker takes the fleet's curve.
pub(in crate::store) const SHARE_CUBIC: &str = concat!(
    prelude!(),
    r#"
local old = tonumber(string.match(redis.call('HGET', key, 'l0') or '', '^([^,]+),'))
local new = tonumber(ARGV[7])
if old and new and new < old then return {'stale'} end
local seq = redis.call('HINCRBY', key, 'rs', 1)
local stretch, pivot = 1, now + (tonumber(ARGV[12]) or 0)
if new then
  if old and old > 0 and new > old then
    stretch = math.min(new / old, tonumber(ARGV[11]) or 1)
    local tat = tonumber(redis.call('HGET', key, 't0'))
    if tat and tat > pivot then
      redis.call('HSET', key, 't0', fmt(pivot + (tat - pivot) * stretch))
      redis.call('HINCRBY', key, 's0', 1)
    end
  end
  set_learned('0', ARGV[7], ARGV[8], ARGV[9], ARGV[10])
end
redis.call('HSET', key, 'rf', seq .. ',' .. ARGV[2] .. ',' .. ARGV[3] .. ',' .. ARGV[4] .. ',' .. ARGV[5]
                             .. ',' .. fmt(pivot) .. ',' .. fmt(stretch))
local until_us = now + tonumber(ARGV[6])
redis.call('HSET', key, 'lx', fmt(math.max(until_us, tonumber(redis.call('HGET', key, 'lx')) or 0)))
local horizon = math.max(until_us, tonumber(redis.call('HGET', key, 't0')) or 0)
local ttl = ttl_ms(horizon)
if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
return {tostring(seq), fmt(pivot), fmt(stretch)}
"#
);

/// The fleet's pace learned from plain refusals as it stands (`rf`, see [`SHARE_CUBIC`]), for a
/// worker about to send a grant it may not have heard the latest stretch of.
///
/// KEYS\[1\]: the lane's hash. ARGV\[1\]: now in µs or `''`. Replies `{now, rf or ''}`.
pub(in crate::store) const CURVE: &str = concat!(
    prelude!(),
    r#"
return {fmt(now), redis.call('HGET', key, 'rf') or ''}
"#
);

/// How far past a decrease its stretch starts (see [`SHARE_CUBIC`]): the grants before keep
/// their instants, and a worker has this long to hear of it before one of its grants after
/// leaves (it asks the store [`ASK_BEFORE`] before its grant, unless a reply since told it).
pub(crate) const STRETCH_AFTER: Duration = Duration::from_millis(20);

/// How long before its grant a worker that may not have heard of the latest stretch asks the
/// store (see [`CURVE`]): well within [`STRETCH_AFTER`], with a round trip to spare.
pub(crate) const ASK_BEFORE: Duration = Duration::from_millis(5);

/// The most a decrease stretches the schedule booked ahead (see [`SHARE_CUBIC`]): a halving
/// and then some; a steeper decrease leaves the rest of the schedule a little fast, and its
/// refusals answer the same congestion.
pub(crate) const MAX_STRETCH: f64 = 4.0;

/// How a decrease moved the schedule booked ahead: every grant after `at_us` (µs of the
/// server's clock) is now `factor` times as far past it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Stretch {
    /// When the decrease was shared, in µs of the server's clock.
    pub at_us: f64,
    /// The new interval over the old one; 1 for none.
    pub factor: f64,
}

impl Stretch {
    /// Where a grant at `grant_us`, booked before the decrease, now leaves.
    pub fn of(self, grant_us: f64) -> f64 {
        if grant_us > self.at_us {
            self.at_us + (grant_us - self.at_us) * self.factor
        } else {
            grant_us
        }
    }

    /// Reads a script's `at,factor` values; `None` for anything but finite numbers and a factor
    /// of at least 1 (a stretch never moves a grant earlier).
    fn parse(at_us: &str, factor: &str) -> Option<Stretch> {
        let finite = |text: &str| text.parse::<f64>().ok().filter(|value| value.is_finite());
        let stretch = Stretch {
            at_us: finite(at_us)?,
            factor: finite(factor)?,
        };
        (stretch.factor >= 1.0).then_some(stretch)
    }
}

/// The reply of [`CURVE`]: when it ran (µs of the server's clock) and the fleet's curve, if any;
/// `None` for a garbled reply.
pub(in crate::store) fn parse_curve(reply: &[String]) -> Option<(f64, Option<FleetCubic>)> {
    match reply {
        [now, field] => {
            let now = now.parse::<f64>().ok().filter(|now| now.is_finite())?;
            Some((now, FleetCubic::parse(field)))
        }
        _ => None,
    }
}

/// The reply of [`SHARE_CUBIC`]: the share's number and the stretch it made (`None`: stale, not
/// shared); `Err(())` for a garbled reply.
pub(in crate::store) fn parse_shared(reply: &[String]) -> Result<Option<(u64, Stretch)>, ()> {
    match reply {
        [stale] if stale == "stale" => Ok(None),
        [seq, at_us, factor] => {
            let seq = seq.parse().map_err(drop)?;
            Ok(Some((seq, Stretch::parse(at_us, factor).ok_or(())?)))
        }
        _ => Err(()),
    }
}

/// The pace learned from plain refusals as the fleet shares it, in µs of the server's clock.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct FleetCubic {
    /// Grows with every share (0 before it is shared).
    pub seq: u64,
    pub last_max: f64,
    pub beta: f64,
    pub since_us: f64,
    pub after_us: f64,
    /// How the share stretched the schedule booked ahead (`None`: not at all, or a share of an
    /// older version).
    pub stretch: Option<Stretch>,
}

impl FleetCubic {
    /// Reads the `rf` field; `None` for anything but a sequence number and four finite numbers,
    /// optionally followed by a stretch.
    pub(in crate::store) fn parse(field: &str) -> Option<FleetCubic> {
        let (seq, values) = field.split_once(',')?;
        let values: Vec<&str> = values.split(',').collect();
        let (curve, stretch) = match values.as_slice() {
            [curve @ .., at_us, factor] if curve.len() == 4 => {
                (curve, Some(Stretch::parse(at_us, factor)?))
            }
            curve => (curve, None),
        };
        let curve: Vec<f64> = curve
            .iter()
            .map(|value| value.parse::<f64>().ok().filter(|value| value.is_finite()))
            .collect::<Option<_>>()?;
        let [last_max, beta, since_us, after_us] = curve.as_slice() else {
            return None;
        };
        Some(FleetCubic {
            seq: seq.parse().ok()?,
            last_max: *last_max,
            beta: *beta,
            since_us: *since_us,
            after_us: *after_us,
            stretch: stretch.filter(|stretch| stretch.factor > 1.0),
        })
    }
}

/// A limit as [`LEARN`] and [`SHARE_CUBIC`] take it: the interval in µs (`''`: none) and the
/// burst.
fn limit_args(limit: Option<Limit>) -> (String, String) {
    match limit {
        Some(limit) => (micros(limit.interval), limit.burst.max(1).to_string()),
        None => (String::new(), String::new()),
    }
}

/// The arguments of [`SHARE_CUBIC`] after KEYS: the curve, the requests' limit the decrease
/// set (`Some((limit, strict, fresh))`), and `now` (`None`: the server's clock).
pub(in crate::store) fn share_cubic_args(
    cubic: FleetCubic,
    paced: Option<(Limit, bool, bool)>,
    now: Option<Duration>,
) -> Vec<String> {
    let fmt = |value: f64| format!("{value:.3}");
    let (interval, burst) = limit_args(paced.map(|(limit, _, _)| limit));
    let (strict, fresh) = paced.map_or((false, false), |(_, strict, fresh)| (strict, fresh));
    vec![
        now.map(micros).unwrap_or_default(),
        format!("{}", cubic.last_max),
        format!("{}", cubic.beta),
        fmt(cubic.since_us),
        fmt(cubic.after_us),
        LEARNED_FOR_US.to_owned(),
        interval,
        burst,
        flag(strict),
        flag(fresh),
        MAX_STRETCH.to_string(),
        micros(STRETCH_AFTER),
    ]
}

/// The arguments of [`LEARN`] after KEYS; `on_curve`: the share of the fleet's curve the
/// caller paces on, when the limit is that curve's pace.
pub(in crate::store) fn learn_args(
    dimension: Dimension,
    limit: Option<Limit>,
    strict: bool,
    fresh: bool,
    on_curve: Option<u64>,
) -> Vec<String> {
    let (interval, burst) = limit_args(limit);
    vec![
        String::new(),
        dimension.index().to_string(),
        interval,
        burst,
        flag(strict),
        flag(fresh),
        LEARNED_FOR_US.to_owned(),
        on_curve.map(|seq| seq.to_string()).unwrap_or_default(),
    ]
}

fn flag(on: bool) -> String {
    if on { "1" } else { "0" }.to_owned()
}
