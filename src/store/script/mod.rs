//! The Lua scripts that keep a lane's budget in Redis, and the translation of their arguments
//! and replies. Pure: nothing here talks to a server, so the parsing is tested without one.
//!
//! # State
//!
//! One hash per lane (`{prefix:lane}`), with for each dimension `d` (0..3, in
//! [`Dimension::ALL`] order) `t<d>`, the GCRA cell's theoretical arrival time, `s<d>`, its
//! booking number (what [`Gcra`](crate::limiter::Gcra) calls `seq`), and `g<d>`, where its
//! schedule last restarted after a gap (see [`SETTLE`]); `c` is the end of a pause
//! of the whole lane and `c<d>` of one dimension. Times are microseconds of the server's clock
//! (`TIME`), held as Lua numbers: doubles, exact to a quarter of a microsecond at today's epoch,
//! so one booking rounds by less than a microsecond where the in-memory cell counts nanoseconds.
//! Every caller sends the limits it books under (configured, or learned from the server's
//! headers), so a rate change takes effect at the next booking. A limit one worker learned from
//! the server is shared (`l<d>`: `interval,burst,strict`, see [`LEARN`]) and applies in every
//! booking, so the fleet paces as one client even when only one worker was told; a caller whose
//! own limit is slower (it has just slowed down, and its decrease is on its way to Redis) books
//! at its own, never faster than either. `lx` keeps the hash a minute past the latest one
//! learned.
//!
//! Every script sets the hash to expire one second after the last instant it holds (the latest
//! theoretical arrival time or pause end): past that instant the state is back at rest (a cell
//! whose `tat` is behind the clock is an empty cell), so forgetting it changes nothing, and a
//! million lanes leave nothing behind once idle.
//!
//! # The booking
//!
//! The same GCRA with future reservations as [`Budget`](crate::limiter::Budget): every
//! dimension of the cost is ready at `max(now, tat + min(c·T, τ) − τ)` (an oversized cost goes
//! when the cell is empty and leaves its excess as debt), the booking leaves at the slowest
//! dimension's instant (and not before a pause that applies to it), and every dimension is
//! booked for that instant, all or nothing. A cost above a strict dimension's burst, or a wait
//! above what the caller may wait, books nothing.

use std::time::Duration;

use crate::limiter::{Cost, Dimension, Limit, Settled};
use crate::time::duration_to_nanos;

use super::StoreError;

const DIMENSIONS: usize = Dimension::ALL.len();

/// What every script starts with: its key, `now` (the server's clock unless the caller gives
/// one), `fmt` (a number written so that it reads back exactly) and `ttl_ms` (how long the state
/// must live to hold instants up to `horizon`: one second past it, at most ten years, so an
/// absurd debt never makes an invalid expiry).
macro_rules! prelude {
    () => {
        r#"
local key = KEYS[1]
local function fmt(x) return string.format('%.17g', x) end
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function ttl_ms(horizon)
  return math.min(math.ceil((horizon - now) / 1000) + 1000, 315360000000)
end
local function set_learned(d, interval, burst, strict, fresh)
  redis.call('HSET', key, 'l' .. d, interval .. ',' .. burst .. ',' .. strict)
  if fresh == '1' then
    local spent = now + tonumber(interval) * tonumber(burst)
    if spent > (tonumber(redis.call('HGET', key, 't' .. d)) or 0) then
      redis.call('HSET', key, 't' .. d, fmt(spent))
      redis.call('HINCRBY', key, 's' .. d, 1)
      redis.call('HSET', key, 'g' .. d, fmt(spent))
    end
  end
end
local function limit_of(learned, interval, burst, strict)
  local own_i, own_b = tonumber(interval), tonumber(burst)
  if learned then
    local i, b, s = string.match(learned, '^([^,]+),([^,]+),([01])$')
    i, b = tonumber(i), tonumber(b)
    if i and b then
      if own_i and own_b then
        return math.max(i, own_i), math.min(b, own_b), s == '1' or strict == '1'
      end
      return i, b, s == '1'
    end
  end
  return own_i, own_b, strict == '1'
end
"#
    };
}

mod learned;

pub(super) use learned::{
    learn_args, parse_curve, parse_shared, share_cubic_args, CURVE, LEARN, SHARE_CUBIC,
};
pub(crate) use learned::{FleetCubic, Stretch, ASK_BEFORE, STRETCH_AFTER};

/// Books a cost: see the module doc.
///
/// KEYS\[1\]: the lane's hash. ARGV\[1\]: now in µs, or `''` for the server's `TIME`;
/// ARGV\[2\]: the most the caller may wait in µs, or `''`; then per dimension `d`, at
/// ARGV\[3 + 4d\]..ARGV\[6 + 4d\]: its units, its interval in µs (`''`: unlimited), its burst,
/// `1` when strict. A limit a worker learned and shared (`l<d>`) applies unless the caller's is
/// slower.
/// ARGV\[19\]..ARGV\[21\]: the guard between departures of different workers, a share of
/// the requests' interval, its most and its least in µs (`''`: none; never above 5 % of the
/// interval): each request occupies the shared cell that much longer than its interval (see
/// [`FLEET_GUARD`]).
///
/// Replies `{'ok', wait, (seq, start, end, previous tat, interval, burst) per dimension ('' when
/// not booked; interval and burst: the limit booked under, '' when unlimited), now, the pace
/// the fleet learned from plain refusals (`rf`, see [`SHARE_CUBIC`]) or ''}`,
/// `{'wait', dimension or -1 for a pause, wait}`, or `{'never', dimension, burst}`.
pub(super) const BOOK: &str = concat!(
    prelude!(),
    r#"
local max_wait = tonumber(ARGV[2])
local guard, guard_cap = tonumber(ARGV[19]) or 0, tonumber(ARGV[20]) or 0
local guard_floor = tonumber(ARGV[21]) or 0
local state = redis.call('HMGET', key, 't0', 't1', 't2', 't3', 'c', 'c0', 'c1', 'c2', 'c3', 'lx',
                         'l0', 'l1', 'l2', 'l3', 'rf')
local floor = math.max(now, tonumber(state[5]) or 0)
local cells, limits = {}, {}
for d = 0, 3 do
  local units = tonumber(ARGV[3 + 4 * d]) or 0
  local interval, burst, strict =
    limit_of(state[11 + d], ARGV[4 + 4 * d], ARGV[5 + 4 * d], ARGV[6 + 4 * d])
  if interval and d == 0 then
    interval = interval + math.min(math.max(math.min(interval * guard, guard_cap), guard_floor),
                                   interval * 0.05)
  end
  if interval then limits[d] = {interval = interval, burst = burst} end
  if units > 0 then
    floor = math.max(floor, tonumber(state[6 + d]) or 0)
    if interval then
      if strict and units > burst then
        return {'never', tostring(d), fmt(burst)}
      end
      cells[d] = {units = units, interval = interval, tolerance = interval * burst,
                  raw = state[1 + d], tat = tonumber(state[1 + d]) or 0}
    end
  end
end
local at, blocker = floor, -1
for d = 0, 3 do
  local cell = cells[d]
  if cell then
    local needed = math.min(cell.interval * cell.units, cell.tolerance)
    local ready = math.max(now, cell.tat + needed - cell.tolerance)
    if ready > at then at, blocker = ready, d end
  end
end
local wait = at - now
if max_wait and wait > max_wait then
  return {'wait', tostring(blocker), fmt(wait)}
end
local reply = {'ok', fmt(wait)}
local horizon = math.max(floor, tonumber(state[10]) or 0)
for d = 0, 3 do
  local cell, limit = cells[d], limits[d]
  if cell then
    local start = math.max(cell.tat, at)
    local finish = fmt(start + cell.interval * cell.units)
    redis.call('HSET', key, 't' .. d, finish)
    -- Booked after a gap in the schedule: no booking before it can give its time back.
    if start > cell.tat then redis.call('HSET', key, 'g' .. d, fmt(start)) end
    local seq = redis.call('HINCRBY', key, 's' .. d, 1)
    horizon = math.max(horizon, tonumber(finish))
    for _, v in ipairs({tostring(seq), fmt(start), finish, cell.raw or ''}) do
      table.insert(reply, v)
    end
  else
    horizon = math.max(horizon, tonumber(state[1 + d]) or 0, tonumber(state[6 + d]) or 0)
    for _ = 1, 4 do table.insert(reply, '') end
  end
  if limit then
    table.insert(reply, fmt(limit.interval))
    table.insert(reply, fmt(limit.burst))
  else
    for _ = 1, 2 do table.insert(reply, '') end
  end
end
redis.call('PEXPIRE', key, ttl_ms(horizon))
table.insert(reply, fmt(now))
table.insert(reply, state[15] or '')
return reply
"#
);

/// Reconciles a booking: gives it back (cancelled), gives part of it back (over-estimated) or
/// charges more (under-estimated); or fills a cell up to at least an instant (`fill`: a lane
/// back from an outage, see `SharedBudget`).
///
/// KEYS\[1\]: the lane's hash. ARGV\[1\]: now in µs or `''`; then per dimension `d`, at
/// ARGV\[2 + 6d\]..ARGV\[7 + 6d\]: the change (`''`, `cancel`, `drop` (a cancel that never closes
/// the schedule up: a cell without burst), `refund`, `debit` or `fill`), the grant's
/// booking number, start, end and previous `tat`, and the amount in µs (refund, debit); or for
/// `sync` the server's remaining units, the caller's interval in µs and burst (a learned limit
/// replaces them), and three empty fields. A sync only charges: the server's `remaining` does
/// not count the other workers' requests in flight, so more remaining than the shared cell
/// holds is no reason to give units back.
///
/// A cancelled latest booking puts the cell back as it was before it. A cancelled earlier one
/// gives its span back when no booking since started after a gap in the schedule (`g<d>`: the
/// start of the latest that did; a fill, a debit from rest or a fresh limit count as gaps too):
/// the cell's `tat` then moves back by its span, as if it had never been booked, and every
/// grant keeps its instant (none moves earlier; the next booking goes where it would have gone
/// without the cancelled one). Otherwise it is forfeited: the fleet sends a little less, never
/// more. A settlement refunds only the latest booking of a cell, as
/// [`Gcra::refund`](crate::limiter::Gcra::refund) does (every later one was scheduled around
/// it). Replies how many dimensions gave time back.
pub(super) const SETTLE: &str = concat!(
    prelude!(),
    r#"
local returned = 0
local function restart_at(d, at)
  redis.call('HSET', key, 'g' .. d, fmt(math.max(at, tonumber(redis.call('HGET', key, 'g' .. d)) or 0)))
end
for d = 0, 3 do
  local base = 2 + 6 * d
  local change = ARGV[base]
  if change ~= '' then
    local tat_field, seq_field = 't' .. d, 's' .. d
    local raw = redis.call('HGET', key, tat_field)
    local latest = raw == ARGV[base + 3] and redis.call('HGET', key, seq_field) == ARGV[base + 1]
    local amount = tonumber(ARGV[base + 5]) or 0
    if change == 'fill' then
      local filled = now + amount
      if filled > (tonumber(raw) or 0) then
        redis.call('HSET', key, tat_field, fmt(filled))
        redis.call('HINCRBY', key, seq_field, 1)
        restart_at(d, filled)
      end
    elseif change == 'debit' then
      local from = math.max(tonumber(raw) or 0, now)
      if from > (tonumber(raw) or 0) then restart_at(d, from) end
      redis.call('HSET', key, tat_field, fmt(from + amount))
      redis.call('HINCRBY', key, seq_field, 1)
    elseif change == 'sync' then
      -- The server says `remaining` units are left: charge what it counts as gone.
      local interval, burst =
        limit_of(redis.call('HGET', key, 'l' .. d), ARGV[base + 2], ARGV[base + 3], '')
      local remaining = tonumber(ARGV[base + 1])
      if interval and remaining then
        local tat = tonumber(raw) or 0
        local available = math.min(burst, math.max(0, math.floor((now + interval * burst - tat) / interval)))
        if available > remaining then
          if now > tat then restart_at(d, now) end
          redis.call('HSET', key, tat_field, fmt(math.max(tat, now) + (available - remaining) * interval))
          redis.call('HINCRBY', key, seq_field, 1)
        end
      end
    elseif latest and (change == 'cancel' or change == 'drop') then
      if ARGV[base + 4] == '' then
        redis.call('HDEL', key, tat_field)
      else
        redis.call('HSET', key, tat_field, ARGV[base + 4])
      end
      redis.call('HINCRBY', key, seq_field, 1)
      returned = returned + 1
    elseif change == 'cancel' and raw then
      -- An earlier booking: the schedule closes up behind it, as if it had never been booked,
      -- when every booking since followed on without a gap (each then would have been booked
      -- its span earlier; leaving at their later slots they stay within the rate). Otherwise a
      -- gap absorbed it: forfeited.
      local start, finish = tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
      local gap = tonumber(redis.call('HGET', key, 'g' .. d)) or 0
      if start and finish and start >= gap then
        redis.call('HSET', key, tat_field, fmt(tonumber(raw) - (finish - start)))
        redis.call('HINCRBY', key, seq_field, 1)
        returned = returned + 1
      end
    elseif latest and change == 'refund' then
      local held = tonumber(ARGV[base + 3]) - tonumber(ARGV[base + 2])
      redis.call('HSET', key, tat_field, fmt(tonumber(raw) - math.min(amount, held)))
      redis.call('HINCRBY', key, seq_field, 1)
      returned = returned + 1
    end
  end
end
local state = redis.call('HMGET', key, 't0', 't1', 't2', 't3', 'c', 'c0', 'c1', 'c2', 'c3')
local horizon = now
for _, v in ipairs(state) do horizon = math.max(horizon, tonumber(v) or 0) end
redis.call('PEXPIRE', key, ttl_ms(horizon))
return returned
"#
);

/// Pauses the lane (field `c`) or one dimension (`c<d>`) for every worker.
///
/// KEYS\[1\]: the lane's hash. ARGV\[1\]: now in µs or `''`; ARGV\[2\]: the field; ARGV\[3\]: the
/// pause in µs from now. A pause only ever extends. Replies the pause's end, µs.
pub(super) const COOL_DOWN: &str = concat!(
    prelude!(),
    r#"
local until_us = math.max(tonumber(redis.call('HGET', key, ARGV[2])) or 0, now + tonumber(ARGV[3]))
redis.call('HSET', key, ARGV[2], fmt(until_us))
local ttl = ttl_ms(until_us)
if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
return fmt(until_us)
"#
);

/// Takes one of a lane's fleet-wide concurrency slots: a lease in a sorted set of lease
/// deadlines (its own key, under the lane's hash tag), after dropping the expired ones.
///
/// KEYS\[1\]: the lane's leases. ARGV\[1\]: now in µs or `''`; ARGV\[2\]: the cap; ARGV\[3\]:
/// how long the lease lasts unless renewed, µs; ARGV\[4\]: the lease's id. Replies `{'ok'}`, or
/// `{'full', µs until the earliest lease expires}`.
pub(super) const ACQUIRE: &str = concat!(
    prelude!(),
    r#"
redis.call('ZREMRANGEBYSCORE', key, '-inf', fmt(now))
if redis.call('ZCARD', key) < tonumber(ARGV[2]) then
  redis.call('ZADD', key, fmt(now + tonumber(ARGV[3])), ARGV[4])
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  redis.call('PEXPIRE', key, ttl_ms(tonumber(last[2])))
  return {'ok'}
end
local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return {'full', fmt(math.max(0, tonumber(first[2]) - now))}
"#
);

/// Renews a lease (ARGV as [`ACQUIRE`], without the cap: ARGV\[2\] is unused), if it is still
/// held; replies 1 when it was, 0 when it had expired (and another may hold the slot now).
pub(super) const RENEW: &str = concat!(
    prelude!(),
    r#"
if not redis.call('ZSCORE', key, ARGV[4]) then return 0 end
local deadline = now + tonumber(ARGV[3])
redis.call('ZADD', key, 'XX', fmt(deadline), ARGV[4])
if redis.call('PTTL', key) < ttl_ms(deadline) then redis.call('PEXPIRE', key, ttl_ms(deadline)) end
return 1
"#
);

/// Gives a lease back. KEYS\[1\]: the lane's leases; ARGV\[1\]: the lease's id.
pub(super) const RELEASE: &str = "return redis.call('ZREM', KEYS[1], ARGV[1])";

/// The arguments of [`ACQUIRE`] and [`RENEW`] after KEYS.
pub(super) fn lease_args(cap: usize, lease: Duration, id: &str) -> Vec<String> {
    vec![String::new(), cap.to_string(), micros(lease), id.to_owned()]
}

/// What the booking script needs to know of one dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shape {
    /// The dimension's rate.
    pub limit: Limit,
    /// Whether a cost above the burst is refused rather than admitted as debt.
    pub strict: bool,
}

/// The limits a lane books under, per dimension (indexed as [`Dimension::ALL`]).
pub(crate) type Shapes = [Option<Shape>; DIMENSIONS];

/// What one booking holds in one dimension of the shared cell, to give it back later. The
/// times are kept as the server wrote them, so that "is it still the latest booking" compares
/// exactly; all empty when the cost did not touch the (limited) dimension.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SharedGrant {
    seq: String,
    start: String,
    end: String,
    previous: String,
    /// Microseconds one unit occupies the cell, as sent with the booking.
    interval_us: f64,
    /// The dimension's burst when booked: the most one answer is charged (see `Budget::settle`).
    burst: u64,
}

impl SharedGrant {
    /// The most one answer booked as `booked` is charged: a full burst, or its estimate.
    fn most(&self, booked: u64) -> u64 {
        booked.max(self.burst)
    }

    /// The limit the booking was made under (the fleet's learned one, or the caller's).
    pub(super) fn limit(&self) -> Limit {
        Limit {
            interval: Duration::try_from_secs_f64(self.interval_us / 1e6).unwrap_or(Duration::MAX),
            burst: self.burst,
        }
    }
}

/// What a booking holds in each dimension.
pub(crate) type SharedGrants = [Option<SharedGrant>; DIMENSIONS];

/// The booking script's answer.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Booked {
    /// Booked: the units may leave `wait` after the script ran.
    Granted {
        /// How long the caller waits.
        wait: Duration,
        /// What was booked, per dimension (boxed: the usual outcome is a short refusal or this).
        grants: Box<SharedGrants>,
        /// How far past the script's run each booked dimension's cell is now booked: the end
        /// of the fleet's schedule, which still leaves if the store goes down.
        ahead: [Option<Duration>; DIMENSIONS],
        /// When the script ran, in µs of the server's clock: the grant is `wait` after it.
        ran_at: f64,
        /// The pace the fleet learned from plain refusals, if any.
        cubic: Option<FleetCubic>,
    },
    /// Not booked: the wait (for `dimension`'s rate, or with `None` for a pause) is longer than
    /// the caller may wait.
    TooLong {
        /// The slowest dimension; `None` when a pause decides.
        dimension: Option<Dimension>,
        /// How long the caller would wait.
        wait: Duration,
    },
    /// Not booked: the cost exceeds a strict dimension's burst.
    NeverFits {
        /// The dimension that is too small.
        dimension: Dimension,
        /// Its burst.
        burst: u64,
    },
}

/// Microseconds as the scripts read them: exact for any whole number of nanoseconds.
pub(super) fn micros(duration: Duration) -> String {
    let nanos = duration_to_nanos(duration);
    format!("{}.{:03}", nanos / 1_000, nanos % 1_000)
}

/// A non-negative number of microseconds from a script as a duration; garbage is an error, not
/// a panic (the server is outside this process).
fn duration_of(micros: &str) -> Result<Duration, StoreError> {
    micros
        .parse::<f64>()
        .ok()
        .filter(|us| *us >= 0.0)
        .and_then(|us| Duration::try_from_secs_f64(us / 1e6).ok())
        .ok_or_else(|| StoreError::Reply(format!("not a duration in µs: {micros:?}")))
}

fn dimension_of(index: &str) -> Result<Option<Dimension>, StoreError> {
    match index.parse::<i64>() {
        Ok(-1) => Ok(None),
        Ok(i) => usize::try_from(i)
            .ok()
            .and_then(|i| Dimension::ALL.get(i).copied())
            .map(Some)
            .ok_or_else(|| StoreError::Reply(format!("no dimension {i}"))),
        Err(_) => Err(StoreError::Reply(format!("not a dimension: {index:?}"))),
    }
}

/// The guard the shared schedule keeps between requests, a share of their interval...
///
/// Every worker leaves at its grant to some tens of microseconds (its clock placed on the
/// server's, see `clock`), but what one process guarantees by the spacing as sent (a departure
/// that left late pushes the next one back) does not hold between processes: one worker's
/// request that leaves a little late is not seen by the next worker, whose on-time request
/// then reaches the server less than an interval after it. A server without burst (nginx
/// `limit_req`, which also reads arrivals in whole milliseconds) refuses that one. The shared
/// cell spaces requests this much further apart, twice the guard of one process.
pub(crate) const FLEET_GUARD: f64 = 0.02;
/// ...up to this much.
pub(crate) const MAX_FLEET_GUARD: Duration = Duration::from_millis(1);

/// The booking script's arguments after KEYS (see [`BOOK`]); `guard`: with [`FLEET_GUARD`],
/// and at least this much (how far this worker may misplace its grant on its clock).
pub(super) fn book_args(
    cost: &Cost,
    shapes: &Shapes,
    max_wait: Option<Duration>,
    now: Option<Duration>,
    guard: Option<Duration>,
) -> Vec<String> {
    let mut args = Vec::with_capacity(4 + 4 * DIMENSIONS);
    args.push(now.map(micros).unwrap_or_default());
    args.push(max_wait.map(micros).unwrap_or_default());
    for (dimension, shape) in Dimension::ALL.into_iter().zip(shapes) {
        args.push(cost.get(dimension).to_string());
        match shape {
            Some(shape) => {
                args.push(micros(shape.limit.interval));
                args.push(shape.limit.burst.max(1).to_string());
                args.push(if shape.strict { "1" } else { "0" }.to_owned());
            }
            None => args.extend([String::new(), String::new(), String::new()]),
        }
    }
    if let Some(floor) = guard {
        args.push(FLEET_GUARD.to_string());
        args.push(micros(MAX_FLEET_GUARD));
        args.push(micros(floor));
    }
    args
}

/// Reads the booking script's reply.
pub(super) fn parse_booked(reply: &[String]) -> Result<Booked, StoreError> {
    let field = |i: usize| {
        reply
            .get(i)
            .map(String::as_str)
            .ok_or_else(|| StoreError::Reply(format!("reply too short: {reply:?}")))
    };
    match field(0)? {
        "ok" => {
            let wait = duration_of(field(1)?)?;
            let now = field(2 + 6 * DIMENSIONS)?
                .parse::<f64>()
                .ok()
                .filter(|now| now.is_finite())
                .ok_or_else(|| StoreError::Reply(format!("not a time: {reply:?}")))?;
            let mut grants: Box<SharedGrants> = Box::default();
            let mut ahead = [None; DIMENSIONS];
            for (index, grant) in grants.iter_mut().enumerate() {
                let at = 2 + 6 * index;
                // The limit booked under (learned by the fleet, or the caller's); a limited
                // dimension the cost did not touch still gets a grant (without a booking
                // number): a settlement may charge it.
                let (interval, burst) = (field(at + 4)?, field(at + 5)?);
                if interval.is_empty() {
                    continue;
                }
                let number = |text: &str| {
                    text.parse::<f64>()
                        .ok()
                        .filter(|n| n.is_finite() && *n >= 0.0)
                        .ok_or_else(|| StoreError::Reply(format!("not a limit: {reply:?}")))
                };
                let end = field(at + 2)?;
                // A cell behind the clock is at rest: nothing booked ahead.
                ahead[index] = end
                    .parse::<f64>()
                    .ok()
                    .and_then(|end| Duration::try_from_secs_f64((end - now).max(0.0) / 1e6).ok());
                *grant = Some(SharedGrant {
                    seq: field(at)?.to_owned(),
                    start: field(at + 1)?.to_owned(),
                    end: end.to_owned(),
                    previous: field(at + 3)?.to_owned(),
                    interval_us: number(interval)?,
                    // `as` saturates; a burst is at least one unit.
                    burst: (number(burst)? as u64).max(1),
                });
            }
            Ok(Booked::Granted {
                wait,
                grants,
                ahead,
                ran_at: now,
                // Missing (a script of an older version) or garbage: nothing learned.
                cubic: reply
                    .get(3 + 6 * DIMENSIONS)
                    .and_then(|field| FleetCubic::parse(field)),
            })
        }
        "wait" => Ok(Booked::TooLong {
            dimension: dimension_of(field(1)?)?,
            wait: duration_of(field(2)?)?,
        }),
        "never" => Ok(Booked::NeverFits {
            dimension: dimension_of(field(1)?)?
                .ok_or_else(|| StoreError::Reply("never fits without a dimension".into()))?,
            burst: field(2)?
                .parse::<f64>()
                .ok()
                .filter(|burst| *burst >= 0.0)
                // `as` saturates.
                .map(|burst| burst as u64)
                .ok_or_else(|| StoreError::Reply(format!("not a burst: {reply:?}")))?,
        }),
        other => Err(StoreError::Reply(format!(
            "unknown booking reply {other:?}"
        ))),
    }
}

/// How a booking is reconciled, per dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reconcile {
    /// Given back whole: the request never left.
    Cancel,
    /// Brought to what was really used.
    Settle,
}

/// What settling a booking (held as `grants`, booked as `booked`) at `actual` charges, by the
/// rule the settle script's arguments follow (see [`settle_args`]).
pub(super) fn settled(grants: &SharedGrants, booked: &Cost, actual: &Cost) -> Settled {
    let mut settled = Settled {
        charged: *actual,
        clamped: false,
    };
    for (dimension, grant) in Dimension::ALL.into_iter().zip(grants) {
        if let Some(grant) = grant {
            let (used, most) = (actual.get(dimension), grant.most(booked.get(dimension)));
            settled.clamped |= used > most;
            settled.charged = settled.charged.with(dimension, used.min(most));
        }
    }
    settled
}

/// The settle script's arguments after KEYS (see [`SETTLE`]): `booked` replaced by `actual`
/// (cancelled: by nothing).
pub(super) fn settle_args(
    grants: &SharedGrants,
    booked: &Cost,
    actual: &Cost,
    how: Reconcile,
    now: Option<Duration>,
) -> Vec<String> {
    let mut args = Vec::with_capacity(1 + 6 * DIMENSIONS);
    args.push(now.map(micros).unwrap_or_default());
    for (dimension, grant) in Dimension::ALL.into_iter().zip(grants) {
        let booked = booked.get(dimension);
        let used = actual.get(dimension);
        let change = match (grant, how) {
            (None, _) => None,
            // Without burst, closing the schedule up behind an earlier booking would put the
            // next booking on the instant of a later one already granted: two requests at once,
            // which a server without burst refuses (one process's spacing as sent would catch
            // it, a fleet's workers do not see each other's departures). Given back only when
            // it is the latest, else forfeited.
            (Some(grant), Reconcile::Cancel) if !grant.seq.is_empty() && grant.burst <= 1 => {
                Some(("drop", grant, 0))
            }
            (Some(grant), Reconcile::Cancel) if !grant.seq.is_empty() => Some(("cancel", grant, 0)),
            (Some(_), Reconcile::Cancel) => None,
            (Some(grant), Reconcile::Settle) if used < booked => {
                Some(("refund", grant, booked - used))
            }
            (Some(grant), Reconcile::Settle) if used > booked => {
                // As in memory: one answer is charged at most a full burst (or its estimate).
                let most = grant.most(booked);
                (used.min(most) > booked).then(|| ("debit", grant, used.min(most) - booked))
            }
            (Some(_), Reconcile::Settle) => None,
        };
        match change {
            Some((change, grant, units)) => {
                let amount = grant.interval_us * units as f64;
                args.extend([
                    change.to_owned(),
                    grant.seq.clone(),
                    grant.start.clone(),
                    grant.end.clone(),
                    grant.previous.clone(),
                    format!("{amount:.3}"),
                ]);
            }
            None => args.extend(std::iter::repeat_n(String::new(), 6)),
        }
    }
    args
}

/// The settle script's arguments that charge `dimension`'s cell down to `remaining` units
/// available now (what the server says), under `limit` unless the fleet learned another.
pub(super) fn sync_args(dimension: Dimension, remaining: u64, limit: Limit) -> Vec<String> {
    let mut args = vec![String::new(); 1 + 6 * DIMENSIONS];
    let base = 1 + 6 * dimension.index();
    args[base] = "sync".to_owned();
    args[base + 1] = remaining.to_string();
    args[base + 2] = micros(limit.interval);
    args[base + 3] = limit.burst.max(1).to_string();
    args
}

/// The settle script's arguments that fill each dimension's cell to at least `ahead` past now.
pub(super) fn fill_args(ahead: &[Option<Duration>; DIMENSIONS]) -> Vec<String> {
    let mut args = Vec::with_capacity(1 + 6 * DIMENSIONS);
    args.push(String::new());
    for ahead in ahead {
        match ahead {
            Some(ahead) => {
                args.push("fill".to_owned());
                args.extend(std::iter::repeat_n(String::new(), 4));
                args.push(micros(*ahead));
            }
            None => args.extend(std::iter::repeat_n(String::new(), 6)),
        }
    }
    args
}

/// The field of the cool-down script: the whole lane, or one dimension.
pub(super) fn cooldown_field(dimension: Option<Dimension>) -> String {
    match dimension {
        None => "c".to_owned(),
        Some(dimension) => format!("c{}", dimension.index()),
    }
}

#[cfg(test)]
mod tests;
