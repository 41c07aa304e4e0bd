//! The middleware: a request's way through its lane.
//!
//! ```text
//! lane   = lane_for(&req)                     user key, cost model's key, or scheme://host:port
//! cost   = RequestCost extension, the policy's cost model, or one request
//! loop {                                      one pass per attempt
//!   lane.breaker.admit()?                     open → Error::CircuitOpen: nothing sent, no budget
//!   admit():  book(cost)                      GCRA slot in every dimension; too far → typed error now
//!             wait for the slot and any cooldown (re-book if a cooldown outlived the slot)
//!             lane + global concurrency slots (and the cooldown checked again)
//!   resp   = next.run(req)
//!   cost model inspects resp                  settles the booking with the real usage
//!   lane.observe(signals)                     Retry-After → cooldown; rate-limit headers → pace
//!   lane.breaker.record(outcome)
//!   retry.decide(..)                          Stop(reason) → return | Wait(delay) → sleep, again
//! }
//! ```
//!
//! A task never holds a concurrency slot while it waits for rate, and a request cancelled at
//! any point gives back its reservation and its permits (all are guards).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::Instrument;

use crate::breaker::Outcome as BreakerOutcome;
use crate::cost::{Inspection, Settlement};
use crate::error::Error;
use crate::lane::{Gauge, Lane, LaneKey};
use crate::lanes::Lanes;
use crate::limiter::{Blocked, Booking, Commitment, Cost, Reservation, Waited};
use crate::policy::HostRules;
use crate::retry::{
    classify, Attempt, AttemptFacts, Idempotency, RetryDecision, StopReason, Verdict,
};
use crate::signals::Signals;
use crate::stats::ThrottleStats;

/// Per-request override of the policy's `max_wait`, set through `http::Extensions`.
///
/// ```
/// use std::time::Duration;
/// use reqwest_throttle::MaxWait;
///
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new()).build();
/// let request = client
///     .get("http://127.0.0.1:9/")
///     .with_extension(MaxWait(Duration::from_millis(200)));
/// # drop(request);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxWait(pub Duration);

/// Per-request override of what the request costs, set through `http::Extensions`.
///
/// ```
/// use reqwest_throttle::{Cost, Dimension, RequestCost};
///
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new()).build();
/// // A batch endpoint that counts as ten requests against the server's limit.
/// let request = client
///     .post("http://127.0.0.1:9/batch")
///     .with_extension(RequestCost(Cost::requests(10)));
/// # drop(request);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestCost(pub Cost);

mod builder;
mod control;

pub use builder::ThrottleBuilder;
pub use control::BreakerControl;

type KeyFn = dyn Fn(&Request) -> Option<LaneKey> + Send + Sync;

struct Inner {
    rules: HostRules,
    lanes: Lanes,
    lane_key: Option<Box<KeyFn>>,
    global: Option<Arc<Semaphore>>,
}

/// The throttling middleware. Cheap to clone: clones share every lane.
///
/// ```
/// use reqwest_throttle::{Policy, Rate, Throttle};
///
/// let throttle = Throttle::builder()
///     .host("api.github.com", Policy::new().rate(Rate::per_hour(5_000)).concurrency(8))
///     .host("*.example.com", Policy::new().rate(Rate::per_second(2)))
///     .build()?;
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(throttle.clone())
///     .build();
/// # drop(client);
/// # Ok::<(), reqwest_throttle::Error>(())
/// ```
#[derive(Clone)]
pub struct Throttle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("rules", &self.inner.rules)
            .field("lanes", &self.inner.lanes.len())
            .finish_non_exhaustive()
    }
}

impl Throttle {
    /// Starts configuring a throttle.
    pub fn builder() -> ThrottleBuilder {
        ThrottleBuilder::default()
    }

    /// A snapshot of every lane's counters.
    pub fn stats(&self) -> ThrottleStats {
        let now = Instant::now();
        let mut lanes: Vec<_> = self
            .inner
            .lanes
            .all()
            .iter()
            .map(|lane| lane.stats(now))
            .collect();
        lanes.sort_by(|a, b| a.key.cmp(&b.key));
        ThrottleStats { lanes }
    }

    /// The circuit breaker of the lane named `key` (as in [`LaneKey::as_str`]), for operators:
    /// [`force_open`](Breaker::force_open), [`force_closed`](Breaker::force_closed),
    /// [`reset`](Breaker::reset). `None` when the lane does not exist (yet) or has no breaker.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use reqwest_throttle::Throttle;
    ///
    /// let throttle = Throttle::builder().build().unwrap();
    /// assert!(throttle.breaker("https://api.example.com:443").is_none());
    /// # }
    /// ```
    pub fn breaker(&self, key: &str) -> Option<BreakerControl> {
        let lane = self.inner.lanes.get(key)?;
        lane.breaker.as_ref()?;
        Some(BreakerControl { lane })
    }

    /// Lanes evicted from the registry so far.
    pub fn evicted_lanes(&self) -> u64 {
        self.inner.lanes.evicted()
    }

    /// Benchmark hook: looks up (or creates) the lane named `key`, as the middleware does, and
    /// reserves one request in it without waiting. `true` when the request could go at once.
    #[doc(hidden)]
    pub fn __bench_lane_reserve(&self, key: &str) -> bool {
        let now = Instant::now();
        let rules = &self.inner.rules;
        let lane = self
            .inner
            .lanes
            .lane(key, now, || Arc::clone(rules.default_policy()));
        matches!(
            lane.budget
                .acquire(&Cost::requests(1), Some(Duration::ZERO), now),
            Ok(Booking::Ready(_))
        )
    }

    fn lane_for(&self, request: &Request, now: Instant) -> Result<Arc<Lane>, Error> {
        let url = request.url();
        let no_host = || Error::NoHost {
            url: url.to_string(),
        };
        let host = url.host_str().ok_or_else(no_host)?;
        let policy = self
            .inner
            .rules
            .policy_for(host, url.port_or_known_default());
        // The user's key function first, then the policy's cost model (per model, per API key),
        // then scheme://host:port.
        let key = self
            .inner
            .lane_key
            .as_ref()
            .and_then(|key| key(request))
            .or_else(|| {
                policy
                    .configured_cost_model()
                    .and_then(|model| model.lane_key(request))
            });
        if let Some(key) = key {
            return Ok(self
                .inner
                .lanes
                .lane(key.as_str(), now, || Arc::clone(policy)));
        }
        // The default key, written into a reused buffer: a lane that exists is found without
        // allocating (the key is only copied when a lane is created).
        thread_local! {
            static KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        KEY.with(|buffer| {
            let mut buffer = buffer.borrow_mut();
            buffer.clear();
            LaneKey::write_url_key(&mut buffer, url).ok_or_else(no_host)?;
            Ok(self
                .inner
                .lanes
                .lane(buffer.as_str(), now, || Arc::clone(policy)))
        })
    }

    /// Waits for the request's turn: rate and cooldown first, then a concurrency slot.
    async fn admit(
        &self,
        lane: &Lane,
        cost: &Cost,
        max_wait: Option<Duration>,
        deadline: Option<Instant>,
        started: Instant,
    ) -> Result<(Permits, Commitment), Error> {
        let _queued = Gauge::enter(&lane.counters.queued);
        let mut now = started;
        loop {
            let booked = self.book(lane, cost, max_wait, deadline, now).await?;
            let lane_permit = acquire(lane.concurrency.as_ref(), deadline)
                .await
                .map_err(|()| concurrency_refusal(lane, max_wait))?;
            let global_permit = acquire(self.inner.global.as_ref(), deadline)
                .await
                .map_err(|()| concurrency_refusal(lane, max_wait))?;
            // A cooldown set while this request queued for a slot (a 429 seen by the request
            // that held it) holds it back too: nothing leaves the lane before the pause ends,
            // and then it books again under what the lane learned meanwhile.
            if let Some(until) = lane.budget.cooldown_until(cost) {
                drop((lane_permit, global_permit, booked));
                if deadline.is_some_and(|deadline| until > deadline) {
                    let wait = until.saturating_duration_since(Instant::now());
                    let blocked = Blocked::Cooldown {
                        dimension: None,
                        wait,
                    };
                    return Err(refusal(lane, blocked, max_wait));
                }
                tokio::time::sleep_until(until).await;
                now = Instant::now();
                continue;
            }
            // The units leave now: they are spent even if the caller later drops the request.
            // (A reservation that had to wait is committed only here, so a caller that gave up
            // while waiting for a concurrency slot still gets it refunded.)
            let commitment = booked.unwrap_or_else(Reservation::commit);

            let waited = started.elapsed();
            tracing::Span::current().record("waited_ms", waited.as_millis() as u64);
            if !waited.is_zero() {
                lane.counters.record_wait(waited);
                tracing::debug!(target: "reqwest_throttle", waited_ms = waited.as_millis() as u64, "admitted after waiting");
            }
            let permits = Permits {
                _lane: lane_permit,
                _global: global_permit,
            };
            return Ok((permits, commitment));
        }
    }

    /// Books the request's cost and waits for its slot: `Ok(commitment)` when it could leave at
    /// once, `Err(reservation)` once a reservation's slot has come.
    async fn book(
        &self,
        lane: &Lane,
        cost: &Cost,
        max_wait: Option<Duration>,
        deadline: Option<Instant>,
        now: Instant,
    ) -> Result<Result<Commitment, Reservation>, Error> {
        let mut now = now;
        loop {
            lane.expire_learned_pace(now);
            let max_wait = deadline
                .map(|d| d.saturating_duration_since(now))
                .or(max_wait);
            let reservation = match lane.budget.acquire(cost, max_wait, now) {
                Ok(Booking::Ready(commitment)) => return Ok(Ok(commitment)),
                Ok(Booking::Wait(reservation)) => reservation,
                Err(blocked) => return Err(refusal(lane, blocked, max_wait)),
            };
            // A slot booked beyond the server's reset was priced with a pace that ends there:
            // give it back (it is the latest booking, so exactly) and book again at the reset,
            // with what the server says then.
            if let Some(reset) = lane.learned_reset() {
                if reservation.ready_at() > reset {
                    drop(reservation);
                    tokio::time::sleep_until(reset).await;
                    now = Instant::now();
                    continue;
                }
            }
            let waited = reservation
                .wait(deadline)
                .await
                .map_err(|blocked| refusal(lane, blocked, max_wait))?;
            match waited {
                Waited::OnTime => return Ok(Err(reservation)),
                // Booked before the server asked for a pause: its slot is long past, and the
                // lane may have learned a pace since. Book again, so the waiters that the pause
                // piled up leave at that pace instead of all at once.
                Waited::PastCooldown => {
                    drop(reservation);
                    now = Instant::now();
                }
            }
        }
    }
}

/// Concurrency slots held while a request is in flight.
struct Permits {
    _lane: Option<OwnedSemaphorePermit>,
    _global: Option<OwnedSemaphorePermit>,
}

/// A permit from `semaphore` (if there is one), waiting no later than `deadline`.
async fn acquire(
    semaphore: Option<&Arc<Semaphore>>,
    deadline: Option<Instant>,
) -> Result<Option<OwnedSemaphorePermit>, ()> {
    let Some(semaphore) = semaphore else {
        return Ok(None);
    };
    // The common case, a free slot, needs no future and no clock.
    if let Ok(permit) = Arc::clone(semaphore).try_acquire_owned() {
        return Ok(Some(permit));
    }
    let acquire = Arc::clone(semaphore).acquire_owned();
    let permit = match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, acquire)
            .await
            .map_err(|_| ())?,
        None => acquire.await,
    };
    // The semaphores are never closed.
    permit.map(Some).map_err(|_| ())
}

fn refusal(lane: &Lane, blocked: Blocked, max_wait: Option<Duration>) -> Error {
    lane.counters.rejected.fetch_add(1, Relaxed);
    let max_wait = max_wait.unwrap_or(Duration::MAX);
    let error = match blocked {
        Blocked::Rate { dimension, wait } => Error::WouldWait {
            lane: lane.key.clone(),
            dimension,
            wait,
            max_wait,
        },
        Blocked::Cooldown { dimension, wait } => Error::CoolingDown {
            lane: lane.key.clone(),
            dimension,
            wait,
            max_wait,
        },
        Blocked::NeverFits {
            dimension,
            cost,
            burst,
        } => Error::CostTooLarge {
            lane: lane.key.clone(),
            dimension,
            cost,
            burst,
        },
    };
    tracing::info!(target: "reqwest_throttle", error = %error, "request refused");
    error
}

fn concurrency_refusal(lane: &Lane, max_wait: Option<Duration>) -> Error {
    lane.counters.rejected.fetch_add(1, Relaxed);
    let max_wait = max_wait.unwrap_or(Duration::MAX);
    let error = Error::Saturated {
        lane: lane.key.clone(),
        max_wait,
    };
    tracing::info!(target: "reqwest_throttle", error = %error, "no concurrency slot within max_wait");
    error
}

/// One request's fixed facts, gathered once before its first attempt.
struct RequestPlan {
    lane: Arc<Lane>,
    cost: Cost,
    deadline: Option<Instant>,
    idempotency: Idempotency,
    started: Instant,
}

impl Throttle {
    /// The loop of DESIGN.md: breaker, budget, concurrency, send, read signals, decide.
    async fn run(
        &self,
        plan: RequestPlan,
        mut request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let RequestPlan {
            lane,
            cost,
            deadline,
            idempotency,
            started,
        } = plan;
        let retry = &lane.policy.retry;
        let mut delays = retry.delays();
        lane.retry_budget.deposit(started);
        let mut now = started;
        let mut retries_done = 0u32;
        // The outcome of the previous attempt, handed back if a retry cannot even start.
        let mut last: Option<reqwest_middleware::Result<Response>> = None;

        loop {
            tracing::Span::current().record("attempt", retries_done + 1);
            // An open circuit costs nothing: no budget, no connection.
            let admission = match lane.breaker.as_ref().map(|b| b.admit(now)) {
                None => None,
                Some(Ok(admission)) => Some(admission),
                Some(Err(rejected)) => {
                    lane.counters.circuit_rejected.fetch_add(1, Relaxed);
                    tracing::debug!(target: "reqwest_throttle", retry_in_ms = rejected.retry_in.as_millis() as u64, "circuit open: not sent");
                    return last.unwrap_or_else(|| {
                        Err(Error::CircuitOpen {
                            lane: lane.key.clone(),
                            retry_in: rejected.retry_in,
                        }
                        .into())
                    });
                }
            };
            let max_wait = deadline.map(|d| d.saturating_duration_since(now));
            let admitted = self.admit(&lane, &cost, max_wait, deadline, now).await;
            let (permits, commitment) = match admitted {
                Ok(admitted) => admitted,
                Err(error) => return last.unwrap_or_else(|| Err(error.into())),
            };
            drop(last.take());

            let spare = if retries_done < retry.configured_max_retries() {
                request.try_clone()
            } else {
                None
            };
            let in_flight = lane.take_off(&cost);
            lane.counters.sent.fetch_add(1, Relaxed);
            let (result, inspection) = match (
                next.clone().run(request, extensions).await,
                lane.policy.configured_cost_model(),
            ) {
                (Ok(response), Some(model)) => {
                    let settlement = Settlement::new(Arc::clone(&lane.budget), commitment);
                    let (response, inspection) = model.inspect(response, settlement).await;
                    (Ok(response), inspection)
                }
                // Without a cost model (or a response to read) the estimate stands.
                (result, _) => (result, Inspection::NOTHING),
            };
            now = Instant::now();

            let (attempt, signals) = match &result {
                Ok(response) => (
                    Attempt::Status(response.status()),
                    // The wall clock only turns HTTP-dates and epoch resets into delays.
                    Signals::read_with_clock(response.headers(), SystemTime::now),
                ),
                Err(error) => (Attempt::of_error(error), Signals::default()),
            };
            let counter = match &result {
                Ok(_) => &lane.counters.completed,
                Err(_) => &lane.counters.errors,
            };
            counter.fetch_add(1, Relaxed);
            if let Ok(response) = &result {
                lane.observe(
                    response.status(),
                    &signals,
                    inspection.exhausted,
                    &cost,
                    now,
                );
            }
            drop(in_flight);
            drop(permits);
            if let (Some(breaker), Some(admission)) = (lane.breaker.as_ref(), admission) {
                let outcome = match attempt {
                    Attempt::Status(status) => breaker.config().classify_status(status),
                    Attempt::ConnectError | Attempt::Timeout => BreakerOutcome::Failure,
                    Attempt::OtherError => BreakerOutcome::Ignored,
                };
                breaker.record(admission, outcome, now);
            }

            let facts = AttemptFacts {
                // A refusal the cost model knows to be permanent (out of quota) is not retried.
                verdict: if inspection.permanent {
                    Verdict::Final
                } else {
                    classify(attempt, &signals)
                },
                idempotency,
                cloneable: spare.is_some(),
                retries_done,
                server_delay: signals.retry_after,
                deadline,
            };
            match retry.decide(&facts, &mut delays, &lane.retry_budget, now) {
                RetryDecision::Stop(reason) => {
                    return self.stop(&lane, reason, result);
                }
                RetryDecision::Wait(delay) => {
                    // `decide` only retries a request that could be cloned.
                    let Some(spare) = spare else {
                        return result;
                    };
                    lane.counters.retries.fetch_add(1, Relaxed);
                    tracing::debug!(target: "reqwest_throttle", ?attempt, delay_ms = delay.as_millis() as u64, "retrying");
                    last = Some(result);
                    tokio::time::sleep(delay).await;
                    now = Instant::now();
                    request = spare;
                    retries_done += 1;
                }
            }
        }
    }

    /// Hands the caller the final outcome, counting and logging why it is final.
    fn stop(
        &self,
        lane: &Lane,
        reason: StopReason,
        result: reqwest_middleware::Result<Response>,
    ) -> reqwest_middleware::Result<Response> {
        match reason {
            StopReason::Final => {}
            StopReason::BudgetExhausted => {
                lane.counters.retry_budget_exhausted.fetch_add(1, Relaxed);
                tracing::warn!(target: "reqwest_throttle", "retry budget exhausted: returning the failure instead of retrying");
            }
            StopReason::RetryAfterTooLong(retry_after) => {
                let max = lane.policy.retry.configured_max_retry_after();
                tracing::warn!(target: "reqwest_throttle", retry_after_s = retry_after.as_secs(), max_s = max.as_secs(), "server asked for a pause longer than max_retry_after");
                if lane.policy.retry.fails_on_long_retry_after() {
                    return Err(Error::RetryAfterTooLong {
                        lane: lane.key.clone(),
                        retry_after,
                        max,
                    }
                    .into());
                }
            }
            other => {
                tracing::debug!(target: "reqwest_throttle", reason = ?other, "not retried");
            }
        }
        result
    }
}

#[async_trait::async_trait]
impl Middleware for Throttle {
    async fn handle(
        &self,
        request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        // One clock read serves the lane lookup, the deadline and the first attempt.
        let now = Instant::now();
        let lane = self.lane_for(&request, now)?;
        let cost = match (
            extensions.get::<RequestCost>(),
            lane.policy.configured_cost_model(),
        ) {
            (Some(cost), _) => cost.0,
            (None, Some(model)) => model.estimate(&request),
            (None, None) => Cost::default(),
        };
        let max_wait = extensions
            .get::<MaxWait>()
            .map(|max_wait| max_wait.0)
            .or(lane.policy.max_wait);
        let deadline = max_wait.and_then(|wait| now.checked_add(wait));
        let idempotency = Idempotency::of(request.method(), request.headers());
        let span = tracing::debug_span!(
            target: "reqwest_throttle",
            "throttle",
            lane = %lane.key,
            method = %request.method(),
            attempt = tracing::field::Empty,
            waited_ms = tracing::field::Empty,
        );
        let plan = RequestPlan {
            lane,
            cost,
            deadline,
            idempotency,
            started: now,
        };
        self.run(plan, request, extensions, next)
            .instrument(span)
            .await
    }
}
