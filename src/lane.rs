//! One lane: the runtime state shared by every request to one host (or API key, or model).
//!
//! A lane owns its budget (rate and cooldown), its concurrency semaphore and its counters. It is
//! created from a [`Policy`] the first time its key is seen and lives in the
//! [`Lanes`](crate::lanes::Lanes) registry while it matters.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::breaker::{Breaker, BreakerState, Transition};
pub(crate) use crate::key::LaneKey;
use crate::limiter::{Budget, Cost, Dimension, Limit};
use crate::policy::Policy;
use crate::retry::{is_rate_limited, RetryBudget};
use crate::signals::{HeaderFamily, RateLimits, Signals, Window};
use crate::stats::LaneStats;

/// Counters of one lane, updated without locks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub sent: AtomicU64,
    pub completed: AtomicU64,
    pub errors: AtomicU64,
    pub rejected: AtomicU64,
    pub waited_total_ns: AtomicU64,
    pub waited_max_ns: AtomicU64,
    pub in_flight: AtomicU64,
    pub queued: AtomicU64,
    pub retries: AtomicU64,
    pub retry_budget_exhausted: AtomicU64,
    pub cooldowns: AtomicU64,
    pub paced: AtomicU64,
    pub rate_limited: AtomicU64,
    pub circuit_rejected: AtomicU64,
}

impl Counters {
    pub fn record_wait(&self, waited: Duration) {
        let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        self.waited_total_ns.fetch_add(nanos, Relaxed);
        self.waited_max_ns.fetch_max(nanos, Relaxed);
    }
}

/// Decrements a gauge when dropped, so a cancelled request never leaves it counted.
pub(crate) struct Gauge<'a>(&'a AtomicU64);

impl<'a> Gauge<'a> {
    pub fn enter(gauge: &'a AtomicU64) -> Gauge<'a> {
        gauge.fetch_add(1, Relaxed);
        Gauge(gauge)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// A request in flight in a lane; see [`Lane::take_off`].
pub(crate) struct Flight<'a> {
    lane: &'a Lane,
    cost: Cost,
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        self.lane.counters.in_flight.fetch_sub(1, Relaxed);
        for (dimension, units) in self.cost.iter() {
            self.lane.in_flight_units[dimension as usize].fetch_sub(units, Relaxed);
        }
    }
}

/// A user callback on every breaker transition of every lane.
pub(crate) type TransitionHook = Arc<dyn Fn(&LaneKey, &Transition) + Send + Sync>;

/// The quota of the server's window, as its rate-limit headers told it.
#[derive(Clone, Copy, Debug, Default)]
struct LearnedWindow {
    limit: Option<u64>,
    length: Option<Duration>,
    /// Guessed from refusals rather than announced.
    from_refusals: bool,
    /// Windows to hold a guessed quota before probing upwards again; 0 while probing.
    hold: u32,
}

/// Windows a quota guessed from refusals is held, once a probe was refused, before the lane
/// probes upwards again (the server's quota may have grown).
const HOLD_WINDOWS: u32 = 60;

/// The runtime state of one lane.
#[derive(Debug)]
pub(crate) struct Lane {
    pub key: LaneKey,
    pub policy: Arc<Policy>,
    pub budget: Arc<Budget>,
    pub concurrency: Option<Arc<Semaphore>>,
    pub counters: Counters,
    /// Nanoseconds since the registry's epoch at the last use, for idle eviction.
    pub last_used: AtomicU64,
    pub retry_budget: RetryBudget,
    pub breaker: Option<Breaker>,
    /// Until when (nanoseconds since `created`) a pace learned from rate-limit headers holds; 0: none.
    learned_until: AtomicU64,
    /// What the headers said about the whole window, to pace the next window before it speaks.
    learned_window: std::sync::Mutex<LearnedWindow>,
    /// Successful responses since the last refusal that taught a pace.
    oks_since_refusal: AtomicU64,
    /// Units of each dimension (indexed as [`Dimension::ALL`]) of the requests in flight, as
    /// estimated when they left: what the server may not have counted yet when it answers.
    in_flight_units: [AtomicU64; Dimension::ALL.len()],
    /// When (nanoseconds since `created`) the successes counted above began to count.
    measured_from: AtomicU64,
    created: Instant,
}

/// A limit of `limit` units per minute, with the whole minute as burst; `None` for a limit of
/// zero or one too fast to represent (more than one unit per nanosecond).
fn per_minute_limit(limit: u64) -> Option<Limit> {
    if limit == 0 {
        return None;
    }
    let interval = Duration::from_secs(60).as_nanos() / u128::from(limit);
    let interval = u64::try_from(interval).ok().filter(|nanos| *nanos > 0)?;
    Some(Limit {
        interval: Duration::from_nanos(interval),
        burst: limit,
    })
}

impl Lane {
    pub fn new(key: LaneKey, policy: Arc<Policy>, on_transition: Option<&TransitionHook>) -> Lane {
        let budget = Budget::new();
        for dimension in Dimension::ALL {
            if let Some(rate) = policy.configured_limit(dimension) {
                // Validated when the rules were built; an invalid rate here means no limit.
                budget.set_limit(dimension, rate.limit().ok());
                // A token cost above the whole budget would be refused by the server too.
                budget.set_strict(dimension, dimension != Dimension::Requests);
            }
        }
        let concurrency = policy.concurrency.map(|max| Arc::new(Semaphore::new(max)));
        let retry_budget = RetryBudget::new(policy.retry.budget_config());
        let breaker = policy.breaker.clone().map(|config| {
            let mut breaker = Breaker::new(config);
            if let Some(hook) = on_transition {
                let hook = Arc::clone(hook);
                let lane = key.clone();
                breaker.on_transition(move |transition| hook(&lane, transition));
            }
            breaker
        });
        Lane {
            key,
            policy,
            budget,
            concurrency,
            counters: Counters::default(),
            last_used: AtomicU64::new(0),
            retry_budget,
            breaker,
            learned_until: AtomicU64::new(0),
            learned_window: std::sync::Mutex::new(LearnedWindow::default()),
            oks_since_refusal: AtomicU64::new(0),
            in_flight_units: Default::default(),
            measured_from: AtomicU64::new(0),
            created: Instant::now(),
        }
    }

    fn since_created(&self, instant: Instant) -> u64 {
        u64::try_from(instant.saturating_duration_since(self.created).as_nanos())
            .unwrap_or(u64::MAX)
    }

    fn configured_limit(&self) -> Option<Limit> {
        self.policy.rate.and_then(|rate| rate.limit().ok())
    }

    /// Counts a request that leaves now, with its estimated `cost`, as in flight until the
    /// returned guard is dropped (answered, failed or cancelled).
    pub fn take_off(&self, cost: &Cost) -> Flight<'_> {
        self.counters.in_flight.fetch_add(1, Relaxed);
        for (dimension, units) in cost.iter() {
            self.in_flight_units[dimension as usize].fetch_add(units, Relaxed);
        }
        Flight {
            lane: self,
            cost: *cost,
        }
    }

    /// When the pace learned from rate-limit headers ends (the server's window resets), if one holds.
    pub fn learned_reset(&self) -> Option<Instant> {
        match self.learned_until.load(Relaxed) {
            0 => None,
            until => self.created.checked_add(Duration::from_nanos(until)),
        }
    }

    /// Once the server's window has reset, the pace learned from its headers no longer holds.
    /// If the headers told the window's quota (limit L over a window W), the new window is paced
    /// at L/W until its own headers arrive; otherwise the configured rate (or none) applies again.
    /// Called before every reservation: one atomic load when nothing was learned.
    pub fn expire_learned_pace(&self, now: Instant) {
        let until = self.learned_until.load(Relaxed);
        if until == 0 || self.since_created(now) < until {
            return;
        }
        // Only one caller renews; a concurrent new pace from headers wins over it.
        if self
            .learned_until
            .compare_exchange(until, 0, Relaxed, Relaxed)
            .is_err()
        {
            return;
        }
        let window = {
            let mut learned = self
                .learned_window
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if learned.from_refusals {
                if learned.hold == 0 {
                    // Probing: a quota guessed from refusals is tried 5 % higher each window,
                    // until a refusal says it is too high.
                    learned.limit = learned.limit.map(|limit| limit + (limit / 20).max(1));
                } else {
                    learned.hold -= 1;
                }
            }
            *learned
        };
        match (window.limit, window.length) {
            (Some(limit), Some(length)) if limit > 0 && !length.is_zero() => {
                let interval = length / u32::try_from(limit).unwrap_or(u32::MAX);
                self.set_pace(Limit { interval, burst: 1 }, now, length);
                tracing::debug!(target: "reqwest_throttle", lane = %self.key, limit, window_ms = length.as_millis() as u64, "rate-limit window reset; pacing the new window at its quota");
            }
            _ => {
                self.budget
                    .set_limit(Dimension::Requests, self.configured_limit());
                tracing::debug!(target: "reqwest_throttle", lane = %self.key, "rate-limit window reset; configured pace restored");
            }
        }
    }

    /// Applies a learned pace (never faster than the configured rate) until `now + holds_for`.
    fn set_pace(&self, learned: Limit, now: Instant, holds_for: Duration) {
        let effective = match self.configured_limit() {
            Some(configured) if configured.interval >= learned.interval => configured,
            _ => learned,
        };
        if self.budget.limit(Dimension::Requests) != Some(effective) {
            self.budget.set_limit(Dimension::Requests, Some(effective));
        }
        // In nanoseconds since the lane's creation, saturating: a huge pace window cannot overflow.
        let holds_for = u64::try_from(holds_for.as_nanos()).unwrap_or(u64::MAX);
        let until = self.since_created(now).saturating_add(holds_for).max(1);
        self.learned_until.store(until, Relaxed);
    }

    /// Acts on what a response said: a Retry-After on a 429/503 (or GitHub's rate-limit 403)
    /// pauses the whole lane; announced rate-limit headers pace it before the server refuses.
    /// Retry-After wins over rate-limit headers when both are present. Every pause is capped by
    /// the policy's `max_retry_after`, so no wait is unbounded.
    ///
    /// When the response named one exhausted dimension (a 429 whose body says the token limit,
    /// not the request limit, was hit), only that dimension pauses.
    ///
    /// Announced token windows (tokens, input and output tokens) keep the token budgets in
    /// step with the server; see [`sync_tokens`](Self::sync_tokens). `cost` is what the
    /// answered request was estimated to cost when it left (it is still counted in flight).
    pub fn observe(
        &self,
        status: http::StatusCode,
        signals: &Signals,
        exhausted: Option<Dimension>,
        cost: &Cost,
        now: Instant,
    ) {
        let cap = self.policy.retry.configured_max_retry_after();
        if let Some(limits) = signals.rate_limits.as_ref() {
            self.sync_tokens(limits, cost);
        }
        let rate_limited = is_rate_limited(status, signals);
        if rate_limited {
            self.counters.rate_limited.fetch_add(1, Relaxed);
        }
        if status.is_success() {
            self.oks_since_refusal.fetch_add(1, Relaxed);
        }
        let throttled = rate_limited || status == http::StatusCode::SERVICE_UNAVAILABLE;
        if throttled {
            if let Some(delay) = signals.retry_after {
                let delay = delay.min(cap);
                self.cool_down(exhausted, delay, now, "Retry-After");
                if rate_limited && exhausted.is_none() && signals.rate_limits.is_none() {
                    self.learn_from_refusal(delay, now);
                }
                return;
            }
        }
        let requests = signals
            .rate_limits
            .as_ref()
            .and_then(|limits| limits.requests);
        if let Some(window) = requests {
            self.pace_from(window, now, cap);
        }
    }

    /// Keeps each token budget in step with the token windows the server announces.
    ///
    /// OpenAI and Anthropic announce token limits per minute and replenish them continuously
    /// (a token bucket: `reset` is the time until the bucket is full again), so:
    /// - a limit `L` the policy did not set is learned as `L` per minute with a burst of `L`
    ///   (never faster than a configured rate), and a cost above it is refused at once
    ///   ([`Error::CostTooLarge`](crate::Error::CostTooLarge)), as the server would refuse it;
    /// - the lane never believes more tokens are available than the `remaining` the server
    ///   announced: the difference is booked. Requests already sent but not yet seen by the
    ///   server were booked by this lane when they left, so they are not counted twice, and an
    ///   older answer (a larger `remaining`) never gives anything back.
    ///
    /// Token windows read from other header families (IETF `qu="tokens"`) have no stated
    /// period; they only sync a token budget that has a limit already.
    fn sync_tokens(&self, limits: &RateLimits, answered: &Cost) {
        let per_minute = matches!(
            limits.family,
            HeaderFamily::OpenAi | HeaderFamily::Anthropic
        );
        let windows = [
            (Dimension::Tokens, limits.tokens),
            (Dimension::InputTokens, limits.input_tokens),
            (Dimension::OutputTokens, limits.output_tokens),
        ];
        for (dimension, window) in windows {
            let Some(window) = window else {
                continue;
            };
            let mut remaining = window.remaining;
            if per_minute {
                if let Some(learned) = window.limit.and_then(per_minute_limit) {
                    let configured = self
                        .policy
                        .configured_limit(dimension)
                        .and_then(|rate| rate.limit().ok());
                    let effective = match configured {
                        Some(configured) if configured.interval >= learned.interval => configured,
                        _ => learned,
                    };
                    let current = self.budget.limit(dimension);
                    if current.is_none() {
                        // Requests that left before the limit was known were not booked in this
                        // dimension, and the server charges them when they arrive: the first
                        // answer usually comes from the first to arrive, so none of the others
                        // is in its `remaining` yet. Book them all, at their estimated cost (a
                        // guess per request from this answer alone would be far off when sizes
                        // vary, and the sync never gives back what it booked).
                        let unseen = self.in_flight_units[dimension as usize]
                            .load(Relaxed)
                            .saturating_sub(answered.get(dimension));
                        remaining = remaining.map(|r| r.saturating_sub(unseen));
                    }
                    if current != Some(effective) {
                        self.budget.set_limit(dimension, Some(effective));
                        self.budget.set_strict(dimension, true);
                        tracing::debug!(target: "reqwest_throttle", lane = %self.key, %dimension, burst = effective.burst, "token limit learned from rate-limit headers");
                    }
                }
            }
            let (Some(remaining), Some(available)) = (remaining, self.budget.available(dimension))
            else {
                continue;
            };
            let excess = available.saturating_sub(remaining);
            if excess == 0 {
                continue;
            }
            // Book what the server says is gone.
            self.budget.debit(dimension, excess);
            self.counters.paced.fetch_add(1, Relaxed);
            tracing::trace!(target: "reqwest_throttle", lane = %self.key, %dimension, excess, remaining, "token budget synced down to the server's remaining");
        }
    }

    /// A server that refuses with Retry-After but announces no rate-limit headers still tells
    /// its quota by its refusals: the requests it accepted since the end of the previous pause,
    /// over the time from then to the end of this one, is its rate. The lane is paced at it, so
    /// the next windows are spread evenly instead of rushed and the requests in flight when a
    /// quota runs out stop provoking refusals; then it probes 5 % higher each window until a
    /// refusal says that is too much, backs off 5 % and holds there for a while (additive
    /// increase, multiplicative decrease). Rate-limit headers, when a server sends them, take
    /// precedence.
    fn learn_from_refusal(&self, delay: Duration, now: Instant) {
        // Refusals of requests that were already in flight when the previous pause began carry
        // no new measure: the first one took it.
        let measured_from = self.measured_from.load(Relaxed);
        if self.since_created(now) < measured_from {
            return;
        }
        let resumes = self.since_created(now.checked_add(delay).unwrap_or(now));
        self.measured_from.store(resumes, Relaxed);
        let oks = self.oks_since_refusal.swap(0, Relaxed);
        if oks == 0 || resumes <= measured_from {
            return;
        }
        let mut learned = self
            .learned_window
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (quota, cycle, hold) = match (learned.from_refusals, learned.limit, learned.length) {
            // Paced from refusals and refused again: the quota probed was too high. Back off
            // 5 % and hold there a while.
            (true, Some(limit), Some(length)) => ((limit * 95 / 100).max(1), length, HOLD_WINDOWS),
            // First refusal: what the server accepted over the whole cycle (the cycle is
            // measured to the end of the pause, which a whole-second Retry-After rounds up, so
            // this already errs low); then probe upwards.
            _ => (oks, Duration::from_nanos(resumes - measured_from), 0),
        };
        *learned = LearnedWindow {
            limit: Some(quota),
            length: Some(cycle),
            from_refusals: true,
            hold,
        };
        drop(learned);
        let interval = cycle / u32::try_from(quota).unwrap_or(u32::MAX);
        // Paced from the end of the pause on, and for a whole cycle after it.
        self.set_pace(Limit { interval, burst: 1 }, now, delay + cycle);
        tracing::info!(target: "reqwest_throttle", lane = %self.key, accepted = oks, cycle_ms = cycle.as_millis() as u64, "pace learned from the server's refusals");
    }

    fn cool_down(
        &self,
        dimension: Option<Dimension>,
        delay: Duration,
        now: Instant,
        why: &'static str,
    ) {
        let Some(until) = now.checked_add(delay) else {
            return;
        };
        self.budget.cool_down(dimension, until);
        self.counters.cooldowns.fetch_add(1, Relaxed);
        tracing::info!(target: "reqwest_throttle", lane = %self.key, pause_ms = delay.as_millis() as u64, why, "lane cooling down");
    }

    /// With `remaining` R and `reset` T, sends no faster than R/T until the reset (never faster
    /// than the configured rate); R = 0 pauses the lane until the reset.
    fn pace_from(&self, window: Window, now: Instant, cap: Duration) {
        let (Some(remaining), Some(reset_in)) = (window.remaining, window.reset_in) else {
            return;
        };
        if reset_in.is_zero() {
            return;
        }
        // Requests already on their way were not counted by the server when it answered.
        let unseen = self.counters.in_flight.load(Relaxed).saturating_sub(1);
        let remaining = remaining.saturating_sub(unseen);
        if remaining == 0 {
            self.cool_down(None, reset_in.min(cap), now, "rate-limit remaining 0");
            return;
        }
        // A day bounds the arithmetic; no real window is longer.
        let reset_in = reset_in.min(Duration::from_secs(86_400));
        let interval = reset_in / u32::try_from(remaining).unwrap_or(u32::MAX);
        self.set_pace(Limit { interval, burst: 1 }, now, reset_in);
        if let Some(limit) = window.limit {
            let mut learned = self
                .learned_window
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // The longest reset seen is the best estimate of the window's length.
            let length = learned
                .length
                .map_or(reset_in, |length| length.max(reset_in));
            *learned = LearnedWindow {
                limit: Some(limit),
                length: Some(length),
                from_refusals: false,
                hold: 0,
            };
        }
        self.counters.paced.fetch_add(1, Relaxed);
        tracing::trace!(target: "reqwest_throttle", lane = %self.key, remaining, reset_ms = reset_in.as_millis() as u64, "paced from rate-limit headers");
    }

    /// Whether the lane could be forgotten without changing anything: nobody is using it (the
    /// caller checks the `Arc` count), nothing waits or flies, and its budget is at rest.
    pub fn is_idle(&self) -> bool {
        self.counters.in_flight.load(Relaxed) == 0
            && self.counters.queued.load(Relaxed) == 0
            && self
                .concurrency
                .as_ref()
                .zip(self.policy.concurrency)
                .is_none_or(|(semaphore, max)| semaphore.available_permits() == max)
    }

    /// Whether forgetting the lane would lose rate, cooldown or breaker state.
    pub fn holds_state(&self) -> bool {
        !self.budget.is_at_rest()
            || self.breaker.as_ref().is_some_and(|breaker| {
                breaker.state() != BreakerState::Closed
                    || breaker.snapshot(Instant::now()).consecutive_failures > 0
            })
    }

    pub fn stats(&self, now: Instant) -> LaneStats {
        let c = &self.counters;
        LaneStats {
            key: self.key.clone(),
            sent: c.sent.load(Relaxed),
            completed: c.completed.load(Relaxed),
            errors: c.errors.load(Relaxed),
            rejected: c.rejected.load(Relaxed),
            waited_total: Duration::from_nanos(c.waited_total_ns.load(Relaxed)),
            waited_max: Duration::from_nanos(c.waited_max_ns.load(Relaxed)),
            in_flight: c.in_flight.load(Relaxed),
            queued: c.queued.load(Relaxed),
            outstanding: self.budget.outstanding(),
            retries: c.retries.load(Relaxed),
            retry_budget_exhausted: c.retry_budget_exhausted.load(Relaxed),
            rate_limited: c.rate_limited.load(Relaxed),
            cooldowns: c.cooldowns.load(Relaxed),
            paced: c.paced.load(Relaxed),
            circuit_rejected: c.circuit_rejected.load(Relaxed),
            breaker: self.breaker.as_ref().map(|breaker| breaker.snapshot(now)),
            rate: self.budget.limit(Dimension::Requests).map(|limit| {
                if limit.interval.is_zero() {
                    f64::INFINITY
                } else {
                    1.0 / limit.interval.as_secs_f64()
                }
            }),
            cooldown_remaining: self
                .budget
                .cooldown_until(&Cost::requests(1))
                .map(|until| until.saturating_duration_since(now)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 200 announcing an OpenAI token window of `limit` with `remaining` left.
    fn tokens_left(limit: u64, remaining: u64) -> Signals {
        let window = Window {
            limit: Some(limit),
            remaining: Some(remaining),
            reset_in: Some(Duration::from_secs(1)),
        };
        Signals {
            rate_limits: Some(RateLimits {
                family: HeaderFamily::OpenAi,
                requests: None,
                tokens: Some(window),
                input_tokens: None,
                output_tokens: None,
                resource: None,
            }),
            ..Signals::default()
        }
    }

    fn tokens(units: u64) -> Cost {
        Cost::requests(1).with(Dimension::Tokens, units)
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_limit_learned_late_books_every_request_still_in_flight() {
        let lane = Lane::new(LaneKey::new("llm"), Arc::new(Policy::new()), None);
        // Three requests of very different sizes left before the limit was known.
        let costs = [tokens(100), tokens(2_000), tokens(3_000)];
        let flights: Vec<_> = costs.iter().map(|cost| lane.take_off(cost)).collect();
        // The smallest is answered first: the server had charged it alone.
        let ok = http::StatusCode::OK;
        lane.observe(
            ok,
            &tokens_left(10_000, 9_900),
            None,
            &costs[0],
            Instant::now(),
        );
        // The other two will be charged on arrival: 9 900 - 5 000, not 9 900 - 2 × 100.
        assert_eq!(
            lane.budget.limit(Dimension::Tokens).map(|l| l.burst),
            Some(10_000)
        );
        assert_eq!(lane.budget.available(Dimension::Tokens), Some(4_900));
        // A later answer that counted more of them gives nothing back, and books nothing twice.
        lane.observe(
            ok,
            &tokens_left(10_000, 7_900),
            None,
            &costs[1],
            Instant::now(),
        );
        assert_eq!(lane.budget.available(Dimension::Tokens), Some(4_900));
        drop(flights);
        assert_eq!(lane.counters.in_flight.load(Relaxed), 0);
        assert!(lane
            .in_flight_units
            .iter()
            .all(|units| units.load(Relaxed) == 0));
    }
}
