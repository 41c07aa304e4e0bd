//! The scripts that share what a worker learned with the fleet: a limit ([`LEARN`]) and the
//! pace learned from plain refusals ([`SHARE_CUBIC`]), with the translation of their arguments.

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
/// `seq,last_max,beta,since,after`: a number that grows with every share, the curve's rate at
/// its refusal, its decrease, its start and the decrease's instant in µs of the server's
/// clock); the latest share wins (workers share only new decreases, so the latest is the
/// fleet's latest, and comparing instants converted by different offsets would not be
/// exact). The bookings' replies carry it to every worker, which paces on it (see
/// `SharedBudget::share_cubic`).
///
/// KEYS\[1\]: the lane's hash. ARGV\[1\]: now in µs or `''`; ARGV\[2\]..ARGV\[5\]: the four
/// values; ARGV\[6\]: how long the hash lives without bookings, µs; ARGV\[7\]..ARGV\[10\]:
/// the requests' limit the decrease set (interval in µs, or `''` for none; burst; strict;
/// fresh), written with the curve in one step (as [`LEARN`] would), so that no booking sees the
/// new curve under the old pace. Replies the new `seq`.
pub(in crate::store) const SHARE_CUBIC: &str = concat!(
    prelude!(),
    r#"
local seq = redis.call('HINCRBY', key, 'rs', 1)
redis.call('HSET', key, 'rf', seq .. ',' .. ARGV[2] .. ',' .. ARGV[3] .. ',' .. ARGV[4] .. ',' .. ARGV[5])
if ARGV[7] ~= '' then set_learned('0', ARGV[7], ARGV[8], ARGV[9], ARGV[10]) end
local until_us = now + tonumber(ARGV[6])
redis.call('HSET', key, 'lx', fmt(math.max(until_us, tonumber(redis.call('HGET', key, 'lx')) or 0)))
local ttl = ttl_ms(until_us)
if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
return seq
"#
);

/// The pace learned from plain refusals as the fleet shares it, in µs of the server's clock.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct FleetCubic {
    /// Grows with every share (0 before it is shared).
    pub seq: u64,
    pub last_max: f64,
    pub beta: f64,
    pub since_us: f64,
    pub after_us: f64,
}

impl FleetCubic {
    /// Reads the `rf` field; `None` for anything but a sequence number and four finite numbers.
    pub(in crate::store) fn parse(field: &str) -> Option<FleetCubic> {
        let (seq, values) = field.split_once(',')?;
        let mut values = values.split(',').map(|value| value.parse::<f64>().ok());
        let mut next = || values.next().flatten().filter(|value| value.is_finite());
        let cubic = FleetCubic {
            seq: seq.parse().ok()?,
            last_max: next()?,
            beta: next()?,
            since_us: next()?,
            after_us: next()?,
        };
        next().is_none().then_some(cubic)
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

/// The arguments of [`SHARE_CUBIC`] after KEYS: the curve, and the requests' limit the
/// decrease set (`Some((limit, strict, fresh))`).
pub(in crate::store) fn share_cubic_args(
    cubic: FleetCubic,
    paced: Option<(Limit, bool, bool)>,
) -> Vec<String> {
    let fmt = |value: f64| format!("{value:.3}");
    let (interval, burst) = limit_args(paced.map(|(limit, _, _)| limit));
    let (strict, fresh) = paced.map_or((false, false), |(_, strict, fresh)| (strict, fresh));
    vec![
        String::new(),
        format!("{}", cubic.last_max),
        format!("{}", cubic.beta),
        fmt(cubic.since_us),
        fmt(cubic.after_us),
        LEARNED_FOR_US.to_owned(),
        interval,
        burst,
        flag(strict),
        flag(fresh),
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
