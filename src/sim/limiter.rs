//! The simulated server's own limits, kept the way real APIs keep them.
//!
//! A [`Limiter`] guards one *dimension* of the budget: requests, or tokens (an
//! OpenAI-compatible server's tokens per minute, each request costing its prompt tokens plus its
//! completion allowance). A request is admitted only if every dimension admits it, so checking is split from
//! charging: [`Limiter::peek`] is a pure function of `now`, [`Limiter::commit`] charges.
//!
//! Three models:
//! - **fixed window** (GitHub, OpenAI's announced resets): the first request opens a window of
//!   length `per`; at most `limit` units are admitted until it ends; the first request after
//!   the end opens the next one. `reset` is the time left in the window.
//! - **clock-aligned fixed window** (an RPM counted per calendar minute, as Flask-Limiter and
//!   many API gateways count): windows are `[origin + k·per, origin + (k+1)·per)` for every
//!   integer `k`, whether or not a request came; at most `limit` units per window. `reset` is
//!   the time to the next boundary, so a client that starts late in a window sees a short one.
//! - **sliding counter** (a log of the last `per`, as Redis sorted-set limiters and many
//!   middleware keep it): a request is admitted while fewer than `limit` requests were counted
//!   in the `per` before it. Counted are the admitted requests, or, in the variant that counts
//!   refusals too, every request that arrived: a client that retries early keeps the count
//!   full and is refused until it waits a whole `per`. `reset` is the time until the oldest
//!   counted request leaves the log.
//! - **token bucket**, written as GCRA over a debt in nanoseconds: every unit adds `interval`
//!   of debt, the debt drains in real (virtual) time, and a request is admitted while the debt
//!   stays within `interval × burst`. Exact integer arithmetic, no refill loop.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::time::nanos_to_duration;

/// One dimension of the simulated budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dimension {
    /// Requests: every request costs one.
    Requests,
    /// Tokens: a request costs its prompt tokens plus its completion allowance.
    Tokens,
}

impl Dimension {
    /// The name used in OpenAI / Anthropic header names and in error bodies.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Dimension::Requests => "requests",
            Dimension::Tokens => "tokens",
        }
    }

    /// The policy name announced in IETF `RateLimit` / `RateLimit-Policy` fields.
    pub(crate) fn ietf_policy(self) -> &'static str {
        match self {
            Dimension::Requests => "default",
            Dimension::Tokens => "tokens",
        }
    }
}

/// What one request costs in every dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cost {
    /// Units of [`Dimension::Requests`]: one.
    pub(crate) requests: u64,
    /// Units of [`Dimension::Tokens`].
    pub(crate) tokens: u64,
}

impl Cost {
    /// The cost of one request of `tokens` tokens.
    pub(crate) const fn request(tokens: u64) -> Cost {
        Cost {
            requests: 1,
            tokens,
        }
    }

    /// This cost in one dimension.
    pub(crate) fn of(self, dimension: Dimension) -> u64 {
        match dimension {
            Dimension::Requests => self.requests,
            Dimension::Tokens => self.tokens,
        }
    }
}

/// The numbers a server announces about one dimension after deciding a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Quota {
    /// Units per window (fixed window) or the burst (token bucket).
    pub(crate) limit: u64,
    /// Units still available now (after charging this request, if it was admitted).
    pub(crate) remaining: u64,
    /// Units used in the current window: `limit - remaining`.
    pub(crate) used: u64,
    /// Time until the budget is whole again (window end, or bucket full).
    pub(crate) reset_in: Duration,
    /// The length of the window (fixed window) or the time to refill the whole burst.
    pub(crate) window: Duration,
}

/// A limiter's answer for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The request fits; the quota is what remains once it is charged.
    Admit(Quota),
    /// The request does not fit; it would fit after `retry_in` (unless it is larger than the
    /// whole limit, in which case it never fits).
    Limit {
        /// The quota as it is, without this request.
        quota: Quota,
        /// How long the client should wait before trying again.
        retry_in: Duration,
    },
}

impl Verdict {
    /// The quota announced with this verdict.
    pub(crate) fn quota(&self) -> Quota {
        match self {
            Verdict::Admit(quota) | Verdict::Limit { quota, .. } => *quota,
        }
    }
}

/// How a limiter is configured; [`LimiterConfig::start`] makes a fresh limiter from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LimiterConfig {
    /// `limit` units per window of `per`, the window opened by its first request.
    FixedWindow {
        /// Units per window.
        limit: u64,
        /// Window length.
        per: Duration,
    },
    /// `limit` units per window of `per`, the windows aligned on multiples of `per` from an
    /// origin given to [`LimiterConfig::start`].
    FixedWindowAligned {
        /// Units per window.
        limit: u64,
        /// Window length.
        per: Duration,
    },
    /// At most `limit` units counted in any span of `per`: the admitted units, or every unit
    /// that arrived when `counts_refused`.
    SlidingCounter {
        /// Units per span.
        limit: u64,
        /// Span length.
        per: Duration,
        /// Whether refused units are counted too.
        counts_refused: bool,
    },
    /// A bucket of `burst` units refilled by one unit every `interval_nanos`.
    TokenBucket {
        /// Nanoseconds to earn one unit; at least 1.
        interval_nanos: u128,
        /// Bucket capacity.
        burst: u64,
    },
}

/// The smallest and largest token bucket rates accepted, in units per second. Outside this
/// range the interval between units would round to zero or overflow the arithmetic.
pub(crate) const MIN_RATE_PER_SEC: f64 = 1e-6;
pub(crate) const MAX_RATE_PER_SEC: f64 = 1e9;

impl LimiterConfig {
    /// A token bucket from a user's rate, clamped into the supported range (NaN counts as
    /// the minimum) so that no configuration can make the arithmetic fail.
    pub(crate) fn token_bucket(rate_per_sec: f64, burst: u64) -> Self {
        let rate = if rate_per_sec.is_nan() {
            MIN_RATE_PER_SEC
        } else {
            rate_per_sec.clamp(MIN_RATE_PER_SEC, MAX_RATE_PER_SEC)
        };
        // In range: 1e9 / rate lies in [1, 1e15], so the cast neither truncates nor saturates.
        let interval_nanos = ((1e9 / rate).round() as u128).max(1);
        LimiterConfig::TokenBucket {
            interval_nanos,
            burst,
        }
    }

    /// A token bucket of `limit` units refilled evenly over `per` (`limit` per minute, as
    /// OpenAI and Anthropic replenish their limits continuously). Exact integer interval; a zero
    /// `limit` refuses everything and a zero `per` is one nanosecond per unit.
    pub(crate) fn refilled_over(limit: u64, per: Duration) -> Self {
        let interval_nanos = (per.as_nanos() / u128::from(limit.max(1))).max(1);
        LimiterConfig::TokenBucket {
            interval_nanos,
            burst: limit,
        }
    }

    /// A limiter in its initial state: no window open, bucket full. `origin` is an instant on
    /// which aligned windows start (any window boundary, past or future); other models
    /// ignore it.
    pub(crate) fn start(self, origin: Instant) -> Limiter {
        match self {
            LimiterConfig::FixedWindowAligned { limit, per } => {
                Limiter::FixedWindowAligned(FixedWindowAligned {
                    limit,
                    per,
                    origin,
                    window: None,
                    used: 0,
                })
            }
            LimiterConfig::SlidingCounter {
                limit,
                per,
                counts_refused,
            } => Limiter::SlidingCounter(SlidingCounter {
                limit,
                per,
                counts_refused,
                counted: VecDeque::new(),
            }),
            LimiterConfig::FixedWindow { limit, per } => Limiter::FixedWindow(FixedWindow {
                limit,
                per,
                opened_at: None,
                used: 0,
            }),
            LimiterConfig::TokenBucket {
                interval_nanos,
                burst,
            } => Limiter::TokenBucket(TokenBucket {
                interval_nanos,
                burst,
                debt_nanos: 0,
                updated_at: None,
            }),
        }
    }
}

/// A limiter's running state.
#[derive(Clone, Debug)]
pub(crate) enum Limiter {
    /// See [`LimiterConfig::FixedWindow`].
    FixedWindow(FixedWindow),
    /// See [`LimiterConfig::FixedWindowAligned`].
    FixedWindowAligned(FixedWindowAligned),
    /// See [`LimiterConfig::SlidingCounter`].
    SlidingCounter(SlidingCounter),
    /// See [`LimiterConfig::TokenBucket`].
    TokenBucket(TokenBucket),
}

impl Limiter {
    /// Whether a request of `cost` units would be admitted at `now`, without charging it.
    pub(crate) fn peek(&self, now: Instant, cost: u64) -> Verdict {
        match self {
            Limiter::FixedWindow(window) => window.peek(now, cost),
            Limiter::FixedWindowAligned(window) => window.peek(now, cost),
            Limiter::SlidingCounter(counter) => counter.peek(now, cost),
            Limiter::TokenBucket(bucket) => bucket.peek(now, cost),
        }
    }

    /// Charges `cost` units at `now` (after [`Limiter::peek`] admitted them).
    pub(crate) fn commit(&mut self, now: Instant, cost: u64) {
        match self {
            Limiter::FixedWindow(window) => window.commit(now, cost),
            Limiter::FixedWindowAligned(window) => window.commit(now, cost),
            Limiter::SlidingCounter(counter) => counter.count(now, cost),
            Limiter::TokenBucket(bucket) => bucket.commit(now, cost),
        }
    }

    /// Notes `cost` units refused at `now`: only a counter of every request counts them.
    pub(crate) fn refuse(&mut self, now: Instant, cost: u64) {
        if let Limiter::SlidingCounter(counter) = self {
            if counter.counts_refused {
                counter.count(now, cost);
            }
        }
    }
}

/// State of a sliding counter: the instants of the units counted in the last span.
#[derive(Clone, Debug)]
pub(crate) struct SlidingCounter {
    limit: u64,
    per: Duration,
    counts_refused: bool,
    /// One entry per unit, oldest first; never more than a span's worth after pruning.
    counted: VecDeque<Instant>,
}

impl SlidingCounter {
    /// The units counted in the span ending at `now`: entries within `per` before it.
    fn live(&self, now: Instant) -> impl Iterator<Item = &Instant> {
        self.counted
            .iter()
            .filter(move |at| now.saturating_duration_since(**at) < self.per)
    }

    fn peek(&self, now: Instant, cost: u64) -> Verdict {
        let used = self.live(now).count() as u64;
        // The oldest counted unit leaves the span `per` after it was counted.
        let reset_in = self.live(now).next().map_or(Duration::ZERO, |oldest| {
            (*oldest + self.per).saturating_duration_since(now)
        });
        window_verdict(self.limit, self.per, used, cost, reset_in)
    }

    fn count(&mut self, now: Instant, cost: u64) {
        while self
            .counted
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= self.per)
        {
            self.counted.pop_front();
        }
        // A counter of every request keeps at most what arrived within a span; bounded here so
        // that a flood cannot grow it without end.
        let room = usize::try_from(self.limit.saturating_mul(4).max(1024)).unwrap_or(usize::MAX);
        for _ in 0..cost.min(room as u64) {
            if self.counted.len() >= room {
                self.counted.pop_front();
            }
            self.counted.push_back(now);
        }
    }
}

/// State of a fixed window.
#[derive(Clone, Debug)]
pub(crate) struct FixedWindow {
    limit: u64,
    per: Duration,
    opened_at: Option<Instant>,
    used: u64,
}

impl FixedWindow {
    /// The window that applies at `now`: its age and the units used in it. A request after the
    /// end of the last window would open a new one, aged zero and empty.
    fn current(&self, now: Instant) -> (Duration, u64) {
        match self.opened_at {
            Some(opened_at) => {
                let age = now.saturating_duration_since(opened_at);
                if age < self.per {
                    (age, self.used)
                } else {
                    (Duration::ZERO, 0)
                }
            }
            None => (Duration::ZERO, 0),
        }
    }

    fn peek(&self, now: Instant, cost: u64) -> Verdict {
        let (age, used) = self.current(now);
        let reset_in = self.per.saturating_sub(age);
        window_verdict(self.limit, self.per, used, cost, reset_in)
    }

    fn commit(&mut self, now: Instant, cost: u64) {
        let (age, used) = self.current(now);
        if age.is_zero() && used == 0 {
            self.opened_at = Some(now);
        }
        self.used = used.saturating_add(cost);
    }
}

/// State of a clock-aligned fixed window: which window was last charged, and how much.
#[derive(Clone, Debug)]
pub(crate) struct FixedWindowAligned {
    limit: u64,
    per: Duration,
    origin: Instant,
    /// The index `k` of the window last charged (`None` before the first charge).
    window: Option<i128>,
    used: u64,
}

impl FixedWindowAligned {
    /// The window containing `now`: its index `k` (negative before the origin) and the time
    /// left until its end. `None` for a zero-length window, which never limits.
    fn locate(&self, now: Instant) -> Option<(i128, Duration)> {
        let per = i128::try_from(self.per.as_nanos())
            .ok()
            .filter(|&per| per > 0)?;
        // Signed nanoseconds from the origin; an `i128` holds any difference of two instants.
        let offset = if now >= self.origin {
            i128::try_from(now.saturating_duration_since(self.origin).as_nanos()).ok()?
        } else {
            -i128::try_from(self.origin.saturating_duration_since(now).as_nanos()).ok()?
        };
        let index = offset.div_euclid(per);
        let into = offset.rem_euclid(per);
        let left = u128::try_from(per - into).unwrap_or(0);
        Some((index, nanos_to_duration(left)))
    }

    /// The units already used in the window containing `now`.
    fn used_in(&self, index: i128) -> u64 {
        if self.window == Some(index) {
            self.used
        } else {
            0
        }
    }

    fn peek(&self, now: Instant, cost: u64) -> Verdict {
        let Some((index, reset_in)) = self.locate(now) else {
            return Verdict::Admit(Quota {
                limit: self.limit,
                remaining: self.limit,
                used: 0,
                reset_in: Duration::ZERO,
                window: self.per,
            });
        };
        let used = self.used_in(index);
        window_verdict(self.limit, self.per, used, cost, reset_in)
    }

    fn commit(&mut self, now: Instant, cost: u64) {
        if let Some((index, _)) = self.locate(now) {
            self.used = self.used_in(index).saturating_add(cost);
            self.window = Some(index);
        }
    }
}

/// State of a token bucket, as a GCRA debt: the time the bucket needs to be full again.
#[derive(Clone, Debug)]
pub(crate) struct TokenBucket {
    interval_nanos: u128,
    burst: u64,
    debt_nanos: u128,
    updated_at: Option<Instant>,
}

impl TokenBucket {
    /// The debt left at `now`, after draining since the last update.
    fn debt_at(&self, now: Instant) -> u128 {
        match self.updated_at {
            Some(updated_at) => self
                .debt_nanos
                .saturating_sub(now.saturating_duration_since(updated_at).as_nanos()),
            None => 0,
        }
    }

    /// The debt a full bucket may carry: `interval × burst`.
    fn capacity_nanos(&self) -> u128 {
        self.interval_nanos.saturating_mul(u128::from(self.burst))
    }

    fn quota(&self, debt: u128) -> Quota {
        let remaining = self.capacity_nanos().saturating_sub(debt) / self.interval_nanos.max(1);
        let remaining = u64::try_from(remaining).unwrap_or(u64::MAX).min(self.burst);
        Quota {
            limit: self.burst,
            remaining,
            used: self.burst - remaining,
            reset_in: nanos_to_duration(debt),
            window: nanos_to_duration(self.capacity_nanos()),
        }
    }

    fn peek(&self, now: Instant, cost: u64) -> Verdict {
        let debt = self.debt_at(now);
        let after = debt.saturating_add(self.interval_nanos.saturating_mul(u128::from(cost)));
        let capacity = self.capacity_nanos();
        if after <= capacity {
            Verdict::Admit(self.quota(after))
        } else {
            Verdict::Limit {
                quota: self.quota(debt),
                retry_in: nanos_to_duration(after - capacity),
            }
        }
    }

    fn commit(&mut self, now: Instant, cost: u64) {
        let debt = self.debt_at(now);
        self.debt_nanos = debt.saturating_add(self.interval_nanos.saturating_mul(u128::from(cost)));
        self.updated_at = Some(now);
    }
}

/// A window of `limit` per `per` that has `used` units and resets in `reset_in`: admits `cost`
/// if it fits, else refuses until the reset.
fn window_verdict(limit: u64, per: Duration, used: u64, cost: u64, reset_in: Duration) -> Verdict {
    let quota = |used: u64, remaining: u64| Quota {
        limit,
        remaining,
        used,
        reset_in,
        window: per,
    };
    match used.checked_add(cost).filter(|&total| total <= limit) {
        Some(total) => Verdict::Admit(quota(total, limit - total)),
        None => Verdict::Limit {
            quota: quota(used, limit.saturating_sub(used)),
            retry_in: reset_in,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admit(limiter: &mut Limiter, now: Instant) -> Verdict {
        let verdict = limiter.peek(now, 1);
        if let Verdict::Admit(_) = verdict {
            limiter.commit(now, 1);
        }
        verdict
    }

    #[test]
    fn fixed_window_opens_at_first_request_and_resets_after_its_length() {
        let start = Instant::now();
        let mut limiter = LimiterConfig::FixedWindow {
            limit: 3,
            per: Duration::from_secs(10),
        }
        .start(Instant::now());
        let later = start + Duration::from_secs(4);
        for expected_remaining in [2, 1, 0] {
            match admit(&mut limiter, later) {
                Verdict::Admit(quota) => {
                    assert_eq!(quota.remaining, expected_remaining);
                    assert_eq!(quota.reset_in, Duration::from_secs(10));
                }
                other => panic!("expected admission, got {other:?}"),
            }
        }
        let third = later + Duration::from_secs(3);
        match admit(&mut limiter, third) {
            Verdict::Limit { retry_in, quota } => {
                assert_eq!(retry_in, Duration::from_secs(7));
                assert_eq!(quota.remaining, 0);
                assert_eq!(quota.used, 3);
            }
            other => panic!("expected a limit, got {other:?}"),
        }
        // The window ends exactly `per` after the request that opened it.
        let end = later + Duration::from_secs(10);
        assert!(matches!(admit(&mut limiter, end), Verdict::Admit(q) if q.remaining == 2));
    }

    #[test]
    fn fixed_window_with_zero_limit_never_admits_and_zero_length_never_limits() {
        let now = Instant::now();
        let mut closed = LimiterConfig::FixedWindow {
            limit: 0,
            per: Duration::from_secs(1),
        }
        .start(Instant::now());
        assert!(matches!(admit(&mut closed, now), Verdict::Limit { .. }));
        let mut open = LimiterConfig::FixedWindow {
            limit: 1,
            per: Duration::ZERO,
        }
        .start(Instant::now());
        for _ in 0..5 {
            assert!(matches!(admit(&mut open, now), Verdict::Admit(_)));
        }
    }

    #[test]
    fn aligned_window_resets_at_each_boundary_from_the_origin() {
        let origin = Instant::now();
        let minute = Duration::from_secs(60);
        let mut limiter = LimiterConfig::FixedWindowAligned {
            limit: 2,
            per: minute,
        }
        .start(origin);
        // 50 s into the first window: 10 s left, whatever came before.
        let late = origin + Duration::from_secs(50);
        assert!(
            matches!(admit(&mut limiter, late), Verdict::Admit(q) if q.remaining == 1 && q.reset_in == Duration::from_secs(10))
        );
        assert!(matches!(admit(&mut limiter, late), Verdict::Admit(q) if q.remaining == 0));
        match admit(&mut limiter, late + Duration::from_secs(9)) {
            Verdict::Limit { retry_in, quota } => {
                assert_eq!(retry_in, Duration::from_secs(1));
                assert_eq!(quota.remaining, 0);
            }
            other => panic!("expected a limit, got {other:?}"),
        }
        // The boundary at 60 s opens a whole new window, 60 s long.
        let boundary = origin + minute;
        assert!(
            matches!(admit(&mut limiter, boundary), Verdict::Admit(q) if q.remaining == 1 && q.reset_in == minute)
        );
    }

    #[test]
    fn aligned_window_before_its_origin_and_of_zero_length() {
        let now = Instant::now();
        // The origin 25 s ahead: the boundaries are at now + 25 s, now - 5 s, ...
        let mut limiter = LimiterConfig::FixedWindowAligned {
            limit: 1,
            per: Duration::from_secs(30),
        }
        .start(now + Duration::from_secs(25));
        assert!(
            matches!(admit(&mut limiter, now), Verdict::Admit(q) if q.reset_in == Duration::from_secs(25))
        );
        assert!(matches!(admit(&mut limiter, now), Verdict::Limit { .. }));
        let mut open = LimiterConfig::FixedWindowAligned {
            limit: 1,
            per: Duration::ZERO,
        }
        .start(now);
        for _ in 0..3 {
            assert!(matches!(admit(&mut open, now), Verdict::Admit(_)));
        }
    }

    #[test]
    fn a_sliding_counter_frees_a_slot_a_span_after_each_counted_request() {
        let start = Instant::now();
        let ms = |ms: u64| start + Duration::from_millis(ms);
        let config = |counts_refused| LimiterConfig::SlidingCounter {
            limit: 2,
            per: Duration::from_secs(1),
            counts_refused,
        };
        let mut accepted_only = config(false).start(start);
        assert!(matches!(
            admit(&mut accepted_only, ms(0)),
            Verdict::Admit(_)
        ));
        assert!(matches!(
            admit(&mut accepted_only, ms(500)),
            Verdict::Admit(_)
        ));
        // Full until the first leaves the span at 1 000 ms.
        match admit(&mut accepted_only, ms(900)) {
            Verdict::Limit { retry_in, .. } => assert_eq!(retry_in, Duration::from_millis(100)),
            other => panic!("expected a limit, got {other:?}"),
        }
        assert!(matches!(
            admit(&mut accepted_only, ms(1_000)),
            Verdict::Admit(_)
        ));

        // Counting refusals too: a retry at 900 ms is counted, so at 1 000 ms the span still
        // holds the requests of 500 and 900 ms.
        let mut every = config(true).start(start);
        for at in [0, 500] {
            assert!(matches!(admit(&mut every, ms(at)), Verdict::Admit(_)));
        }
        assert!(matches!(admit(&mut every, ms(900)), Verdict::Limit { .. }));
        every.refuse(ms(900), 1);
        assert!(matches!(
            admit(&mut every, ms(1_000)),
            Verdict::Limit { .. }
        ));
        every.refuse(ms(1_000), 1);
        // The refusals of 900 and 1 000 ms fill the span until 1 900 ms.
        assert!(matches!(
            admit(&mut every, ms(1_500)),
            Verdict::Limit { .. }
        ));
        assert!(matches!(admit(&mut every, ms(1_900)), Verdict::Admit(_)));
    }

    #[test]
    fn token_bucket_admits_the_burst_then_one_per_interval() {
        let start = Instant::now();
        // 2 per second, burst 4: interval 500 ms.
        let mut limiter = LimiterConfig::token_bucket(2.0, 4).start(Instant::now());
        for expected_remaining in [3, 2, 1, 0] {
            assert!(
                matches!(admit(&mut limiter, start), Verdict::Admit(q) if q.remaining == expected_remaining)
            );
        }
        match admit(&mut limiter, start) {
            Verdict::Limit { retry_in, quota } => {
                assert_eq!(retry_in, Duration::from_millis(500));
                assert_eq!(quota.reset_in, Duration::from_secs(2));
                assert_eq!(quota.window, Duration::from_secs(2));
            }
            other => panic!("expected a limit, got {other:?}"),
        }
        let refilled = start + Duration::from_millis(500);
        assert!(matches!(admit(&mut limiter, refilled), Verdict::Admit(q) if q.remaining == 0));
        assert!(matches!(
            admit(&mut limiter, refilled),
            Verdict::Limit { .. }
        ));
    }

    #[test]
    fn token_bucket_rates_out_of_range_are_clamped() {
        for rate in [f64::NAN, -1.0, 0.0, f64::INFINITY, f64::MAX, 1e-300] {
            let config = LimiterConfig::token_bucket(rate, u64::MAX);
            let mut limiter = config.start(Instant::now());
            let now = Instant::now();
            // Any result is fine; what matters is that nothing overflows or panics.
            let _ = limiter.peek(now, u64::MAX);
            limiter.commit(now, u64::MAX);
            let _ = limiter.peek(now + Duration::from_secs(1), 1);
        }
    }

    #[test]
    fn a_cost_larger_than_the_burst_is_never_admitted() {
        let now = Instant::now();
        let limiter = LimiterConfig::token_bucket(10.0, 5).start(Instant::now());
        assert!(matches!(limiter.peek(now, 6), Verdict::Limit { .. }));
        assert!(matches!(limiter.peek(now, 5), Verdict::Admit(q) if q.remaining == 0));
    }
}
