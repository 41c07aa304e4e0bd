//! One lane: the runtime state shared by every request to one host (or API key, or model).
//!
//! A lane owns its budget (rate and cooldown), its pace learner, its concurrency semaphore, its
//! retry budget, its circuit breaker and its counters, and shows a request four verbs:
//!
//! - [`Lane::cost_of`] prices the request once: its [`Plan`] (cost, deadline, rollout side,
//!   retries);
//! - [`Lane::admit`] gives it its turn for an attempt, a [`Ticket`]: waited for when enforced
//!   (breaker, booking through the lane's [`Booker`], cooldown, concurrency slots, in that
//!   order), taken at once and recorded when shadowed;
//! - [`Ticket::send`] sends the attempt and reads what came back once, through the lane's
//!   [`Classifier`](crate::assess::Classifier): the one [`Assessment`](crate::assess::Assessment)
//!   drives the counters, the pace learner and the breaker;
//! - [`Plan::decide`] retries or returns, from that assessment.
//!
//! A ticket is a guard: dropped at any point (the caller gave up) it gives back its
//! reservation, its concurrency slots, its in-flight counts and its breaker probe.
//!
//! A lane is created from a [`Policy`] the first time its key is seen and lives in the
//! [`Lanes`](crate::lanes::Lanes) registry while it matters.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::assess::{Classifier, DefaultClassifier};
use crate::booker::Booker;
use crate::breaker::{Breaker, BreakerState, Transition};
use crate::cost::CostModel;
pub(crate) use crate::key::LaneKey;
use crate::limiter::pace::{Action, Actions, PaceConfig, PaceLearner};
use crate::limiter::{Budget, Cost, Dimension};
use crate::policy::Policy;
use crate::retry::RetryBudget;
use crate::stats::LaneStats;
use crate::time::{duration_to_nanos, Epoch};

mod admit;
mod first_contact;
mod plan;
mod rollout;
mod ticket;

pub(crate) use plan::{Plan, Then};

/// Counters of one lane, updated without locks.
#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    completed: AtomicU64,
    errors: AtomicU64,
    rejected: AtomicU64,
    waited_total_ns: AtomicU64,
    waited_max_ns: AtomicU64,
    in_flight: AtomicU64,
    queued: AtomicU64,
    retries: AtomicU64,
    retry_budget_exhausted: AtomicU64,
    cooldowns: AtomicU64,
    paced: AtomicU64,
    rate_limited: AtomicU64,
    circuit_rejected: AtomicU64,
}

impl Counters {
    fn record_wait(&self, waited: Duration) {
        let nanos = duration_to_nanos(waited);
        self.waited_total_ns.fetch_add(nanos, Relaxed);
        self.waited_max_ns.fetch_max(nanos, Relaxed);
    }
}

/// Decrements a gauge when dropped, so a cancelled request never leaves it counted.
struct Gauge<'a>(&'a AtomicU64);

impl<'a> Gauge<'a> {
    fn enter(gauge: &'a AtomicU64) -> Gauge<'a> {
        gauge.fetch_add(1, Relaxed);
        Gauge(gauge)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Whether `budget` has a window in any dimension.
fn has_windows(budget: &Budget) -> bool {
    Dimension::ALL
        .into_iter()
        .any(|dimension| !budget.windows(dimension).is_empty())
}

/// A user callback on every breaker transition of every lane.
pub(crate) type TransitionHook = Arc<dyn Fn(&LaneKey, &Transition) + Send + Sync>;

/// The runtime state of one lane.
pub(crate) struct Lane {
    key: LaneKey,
    policy: Arc<Policy>,
    classifier: Arc<dyn Classifier>,
    budget: Arc<Budget>,
    pace: Mutex<PaceLearner>,
    /// Nanoseconds since `created` at which the pace learner next has something to do on its own
    /// (a window reset, an announcement going stale); `u64::MAX`: nothing. One atomic load per
    /// booking when nothing was learned.
    pace_due: AtomicU64,
    /// The learner earned the configured burst and opens it at the next lull.
    burst_earned: AtomicBool,
    concurrency: Option<Arc<Semaphore>>,
    counters: Counters,
    /// Units of each dimension (indexed as [`Dimension::ALL`]) of the requests in flight, as
    /// estimated when they left: what the server may not have counted yet when it answers.
    in_flight_units: [AtomicU64; Dimension::ALL.len()],
    /// The `remaining` of each dimension (indexed as [`Dimension::ALL`]) in the last answer that
    /// announced one; `u64::MAX`: none yet. For the trace of each attempt.
    remaining_seen: [AtomicU64; Dimension::ALL.len()],
    /// Nanoseconds since the registry's epoch at the last use, for idle eviction.
    last_used: AtomicU64,
    retry_budget: RetryBudget,
    breaker: Option<Breaker>,
    created: Epoch,
    /// The rollout's counters and would-have queue, made when the lane first takes part in one.
    rollout: std::sync::OnceLock<Box<rollout::LaneRollout>>,
    /// Until the first answer, only one request is out (see [`first_contact`]).
    first_contact: first_contact::FirstContact,
    /// Where the lane books: its own budget, or a store shared with other processes.
    booker: Booker,
    /// The longer windows of the policy's limits (see [`Rates`](crate::Rates)) when the rate
    /// is shared through a store: booked in this process, before the store. `None` when the
    /// lane's own budget holds them (it books locally) or there are none.
    windows: Option<Arc<Budget>>,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane")
            .field("key", &self.key)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Lane {
    pub fn new(
        key: LaneKey,
        policy: Arc<Policy>,
        on_transition: Option<&TransitionHook>,
        booker: Booker,
    ) -> Lane {
        let budget = Budget::new();
        let windows = booker.is_shared().then(Budget::new);
        let mut configured = [None; Dimension::ALL.len()];
        for dimension in Dimension::ALL {
            let limits = policy.configured_limits(dimension);
            // A token cost above the whole budget would be refused by the server too.
            let strict = dimension != Dimension::Requests;
            if limits.rate().is_some() {
                // Validated when the rules were built; an invalid rate here means no limit.
                let limit = limits.limit();
                configured[dimension as usize] = limit;
                budget.set_limit(dimension, limit);
                budget.set_strict(dimension, strict);
            }
            let rolling = limits.rolling_windows();
            if !rolling.is_empty() {
                let keeper = windows.as_ref().unwrap_or(&budget);
                keeper.set_windows(dimension, &rolling);
                keeper.set_strict(dimension, strict);
            }
        }
        let windows = windows.filter(|windows| has_windows(windows));
        let mut pace = PaceLearner::new(PaceConfig {
            configured,
            max_wait: policy.retry.configured_max_retry_after(),
        });
        if policy
            .configured_limit(Dimension::Requests)
            .is_some_and(|rate| !rate.is_burst_stated())
        {
            // A burst nobody stated is earned: one at a time until the server has accepted it.
            if let Some(spaced) = pace.earn_burst() {
                budget.set_limit(Dimension::Requests, Some(spaced));
            }
        }
        let concurrency = policy.concurrency.map(|max| Arc::new(Semaphore::new(max)));
        let retry_budget = RetryBudget::new(policy.retry.configured_budget());
        let breaker = policy.breaker.clone().map(|config| {
            let mut breaker = Breaker::new(config);
            if let Some(hook) = on_transition {
                let hook = Arc::clone(hook);
                let lane = key.clone();
                breaker.on_transition(move |transition| hook(&lane, transition));
            }
            breaker
        });
        let classifier = policy
            .configured_classifier()
            .cloned()
            .unwrap_or_else(|| Arc::new(DefaultClassifier));
        // A configured rate paces the first requests itself.
        let first_contact = first_contact::FirstContact::new(
            policy
                .first_contact
                .filter(|_| policy.configured_limit(Dimension::Requests).is_none()),
        );
        Lane {
            key,
            policy,
            classifier,
            budget,
            pace: Mutex::new(pace),
            pace_due: AtomicU64::new(u64::MAX),
            burst_earned: AtomicBool::new(false),
            concurrency,
            counters: Counters::default(),
            in_flight_units: Default::default(),
            remaining_seen: std::array::from_fn(|_| AtomicU64::new(u64::MAX)),
            last_used: AtomicU64::new(0),
            retry_budget,
            breaker,
            created: Epoch::now(),
            rollout: std::sync::OnceLock::new(),
            first_contact,
            booker,
            windows,
        }
    }

    /// The budget that keeps the longer windows apart from the rate, if any (a lane whose rate
    /// is shared through a store).
    pub(crate) fn windows(&self) -> Option<&Arc<Budget>> {
        self.windows.as_ref()
    }

    pub fn key(&self) -> &LaneKey {
        &self.key
    }

    /// The policy's cost model, if it has one.
    pub fn cost_model(&self) -> Option<&Arc<dyn CostModel>> {
        self.policy.configured_cost_model()
    }

    pub fn breaker(&self) -> Option<&Breaker> {
        self.breaker.as_ref()
    }

    /// Marks the lane used at `now` (nanoseconds since the registry's epoch).
    pub fn touch(&self, now: u64) {
        self.last_used.store(now, Relaxed);
    }

    /// When the lane was last used (nanoseconds since the registry's epoch).
    pub fn last_used(&self) -> u64 {
        self.last_used.load(Relaxed)
    }

    fn since_created(&self, instant: Instant) -> u64 {
        self.created.nanos(instant)
    }

    fn pace(&self) -> MutexGuard<'_, PaceLearner> {
        // The learner's state stays consistent even if a holder panicked: its updates are plain stores.
        self.pace
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Lets the pace learner act on what time alone changes, when it has something due.
    fn tick(&self, now: Instant) {
        // A lane whose budget a fleet shares keeps an unstated burst spaced: this process's
        // budget at rest says nothing of the fleet's schedule, and a burst opened while it is
        // busy would let this worker jump the queue (and, synced empty, push every worker's
        // next grant a burst's length away).
        if self.burst_earned.load(Relaxed) && !self.booker.is_shared() && self.budget.is_at_rest() {
            let mut pace = self.pace();
            let actions = pace.open_earned_burst();
            self.apply(&pace, &actions);
        }
        if self.since_created(now) < self.pace_due.load(Relaxed) {
            return;
        }
        let mut pace = self.pace();
        let actions = pace.tick(now);
        self.apply(&pace, &actions);
    }

    /// Records whether the learner has an earned burst waiting for a lull (see [`Lane::tick`]).
    fn note_earned_burst(&self, pace: &PaceLearner) {
        self.burst_earned.store(pace.has_earned_burst(), Relaxed);
    }

    /// Applies the learner's actions to the budget (under the learner's lock, so that two
    /// answers' actions never interleave) and records when it is next due.
    fn apply(&self, pace: &PaceLearner, actions: &Actions) {
        for action in actions.iter() {
            match action {
                Action::SetLimit {
                    dimension,
                    limit,
                    strict,
                    fresh,
                } => {
                    if fresh {
                        self.budget.reprice(dimension, limit);
                    } else {
                        self.budget.set_limit(dimension, limit);
                    }
                    self.budget.set_strict(dimension, strict);
                    // The fleet paces as one client: every worker books under what one learned,
                    // and on the curve of the latest decrease any of them made.
                    self.booker
                        .share_limit(dimension, limit, (strict, fresh), pace.shared_cubic());
                    crate::telemetry::learned_limit(&self.key, dimension, limit);
                    if dimension == Dimension::Requests {
                        self.counters.paced.fetch_add(1, Relaxed);
                    }
                    tracing::debug!(target: "reqwest_throttle", lane = %self.key, %dimension, per_second = limit.map(|l| 1.0 / l.interval.as_secs_f64().max(f64::MIN_POSITIVE)), burst = limit.map(|l| l.burst), strict, repriced = fresh, "pace set");
                }
                Action::CoolDown {
                    dimension,
                    until,
                    why,
                } => {
                    self.budget.cool_down(dimension, until);
                    self.booker.cool_down(dimension, until);
                    self.counters.cooldowns.fetch_add(1, Relaxed);
                    crate::telemetry::cooled_down(&self.key);
                    let pause_ms =
                        until.saturating_duration_since(Instant::now()).as_millis() as u64;
                    tracing::info!(target: "reqwest_throttle", lane = %self.key, pause_ms, why, "lane cooling down");
                }
                Action::Sync {
                    dimension,
                    remaining,
                    credit,
                    refills_from,
                } => {
                    // Small credits are noise (a refill between two answers), not worth waking
                    // every waiter: 1 % of the burst.
                    let min_credit = if credit {
                        self.budget
                            .limit(dimension)
                            .map_or(1, |limit| (limit.burst / 100).max(1))
                    } else {
                        u64::MAX
                    };
                    self.booker
                        .sync(dimension, remaining, self.budget.limit(dimension));
                    let synced =
                        self.budget
                            .sync_until(dimension, remaining, refills_from, min_credit);
                    if synced != 0 {
                        self.counters.paced.fetch_add(1, Relaxed);
                        tracing::trace!(target: "reqwest_throttle", lane = %self.key, %dimension, synced = synced as i64, remaining, "budget synced to the server's remaining");
                    }
                }
                Action::Charged {
                    dimension,
                    estimated,
                    charged,
                } => {
                    self.budget.learn_charged(dimension, estimated, charged);
                    tracing::trace!(target: "reqwest_throttle", lane = %self.key, %dimension, estimated, charged, "server's charge read from its remaining");
                }
            }
        }
        self.note_earned_burst(pace);
        let due = pace
            .next_due()
            .map_or(u64::MAX, |due| self.since_created(due));
        self.pace_due.store(due, Relaxed);
    }

    /// The `remaining` of each dimension as the lane last heard it (indexed as
    /// [`Dimension::ALL`]).
    fn remaining_seen(&self) -> [Option<u64>; Dimension::ALL.len()] {
        std::array::from_fn(|i| {
            Some(self.remaining_seen[i].load(Relaxed)).filter(|&r| r != u64::MAX)
        })
    }

    /// Notes the `remaining` an answer announced, per dimension.
    fn note_remaining(&self, announced: &[Option<u64>; Dimension::ALL.len()]) {
        for (seen, announced) in self.remaining_seen.iter().zip(announced) {
            if let Some(remaining) = announced {
                seen.store((*remaining).min(u64::MAX - 1), Relaxed);
            }
        }
    }

    /// Benchmark hook: books one request now without waiting; `true` when it could go at once.
    #[cfg(feature = "__bench")]
    pub fn try_book_now(&self, now: Instant) -> bool {
        matches!(
            self.budget
                .acquire(&Cost::requests(1), Some(Duration::ZERO), now),
            Ok(crate::limiter::Booking::Ready(_))
        )
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

    /// Whether forgetting the lane would lose rate, window, cooldown or breaker state.
    pub fn holds_state(&self) -> bool {
        !self.budget.is_at_rest()
            || self
                .windows
                .as_ref()
                .is_some_and(|windows| !windows.is_at_rest())
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
            clamped_reports: self.budget.clamped_reports(),
            breaker: self.breaker.as_ref().map(|breaker| breaker.snapshot(now)),
            rollout: self.rollout_stats(),
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
    use crate::limiter::pace::{Answer, InFlight, Observation};
    use crate::signals::Signals;
    use crate::signals::{HeaderFamily, RateLimits, Window};

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

    /// Applies what the learner makes of a 200 carrying `signals` for a request of `answered`.
    fn observe_ok(lane: &Lane, signals: &Signals, answered: &Cost) {
        let in_flight = InFlight {
            requests: lane.counters.in_flight.load(Relaxed),
            units: std::array::from_fn(|i| lane.in_flight_units[i].load(Relaxed)),
        };
        let now = Instant::now();
        let mut pace = lane.pace();
        let actions = pace.observe(&Observation {
            now,
            departed: now,
            booked: now,
            answer: Answer::Accepted,
            pause: None,
            limits: signals.rate_limits.as_ref(),
            answered: std::array::from_fn(|i| answered.get(Dimension::ALL[i])),
            estimated: [0; 4],
            seq: 0,
            in_flight,
        });
        lane.apply(&pace, &actions);
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_limit_learned_late_books_every_request_still_in_flight() {
        let lane = Arc::new(Lane::new(
            LaneKey::new("llm"),
            Arc::new(Policy::new().unlimited_concurrency()),
            None,
            Booker::Local,
        ));
        // Three requests of very different sizes left before the limit was known.
        let costs = [tokens(100), tokens(2_000), tokens(3_000)];
        let request = reqwest::Request::new(
            reqwest::Method::POST,
            "http://127.0.0.1:9/v1/chat".parse().unwrap(),
        );
        let plans: Vec<_> = costs
            .iter()
            .map(|cost| {
                let mut extensions = http::Extensions::new();
                extensions.insert(crate::RequestCost(*cost));
                lane.cost_of(&request, &extensions, Instant::now())
            })
            .collect();
        let mut tickets = Vec::new();
        for plan in &plans {
            tickets.push(lane.admit(plan, None).await.unwrap());
        }
        // The smallest is answered first: the server had charged it alone.
        observe_ok(&lane, &tokens_left(10_000, 9_900), &costs[0]);
        drop(tickets.remove(0));
        // The other two will be charged on arrival: 9 900 - 5 000, not 9 900 - 2 × 100.
        assert_eq!(
            lane.budget.limit(Dimension::Tokens).map(|l| l.burst),
            Some(10_000)
        );
        assert_eq!(lane.budget.available(Dimension::Tokens), Some(4_900));
        // A later answer that counted more of them books nothing twice: 7 900 less the 3 000
        // still on their way.
        observe_ok(&lane, &tokens_left(10_000, 7_900), &costs[1]);
        assert_eq!(lane.budget.available(Dimension::Tokens), Some(4_900));
        drop(tickets.remove(0));
        // The server charged the last one 1 000 less than estimated, and says so: given back.
        observe_ok(&lane, &tokens_left(10_000, 5_900), &costs[2]);
        assert_eq!(lane.budget.available(Dimension::Tokens), Some(5_900));
        drop(tickets);
        assert_eq!(lane.counters.in_flight.load(Relaxed), 0);
        assert!(lane
            .in_flight_units
            .iter()
            .all(|units| units.load(Relaxed) == 0));
    }
}
