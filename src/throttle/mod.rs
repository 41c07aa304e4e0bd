//! The middleware: a request's way through its lane.
//!
//! ```text
//! handle(req)
//!   lane = lane_for(&req)                  user key, cost model's key, or scheme://host:port
//!   cost = RequestCost extension, the policy's cost model, or one request
//!   run: loop {                            one pass per attempt
//!     ticket = lane.admit(&cost, deadline) breaker, budget, cooldown, concurrency (a guard:
//!                                          dropping it at any point gives everything back)
//!     resp   = next.run(req)               } within the policy's attempt_timeout, if set (its
//!     cost model inspects resp             } expiry is a transport failure); settles the booking
//!     a      = ticket.finish(&resp)        ONE assessment from the lane's classifier; the pace
//!                                          learner, the breaker and the counters act on it
//!     lane.decide(&a)                      Stop(reason) → return | Wait(delay) → sleep, again
//!   }
//! ```
//!
//! A task never holds a concurrency slot while it waits for rate, and a request cancelled at
//! any point gives back its reservation and its permits (the ticket is a guard).
//!
//! A request the rollout shadows (see [`crate::rollout`]) takes `shadow.rs`'s way instead: its
//! turn is foreseen, not waited for, and it is sent once, as the bare client would send it.

use std::sync::Arc;
use std::time::Duration;

use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::Instrument;

use crate::cost::{CostModel, Inspection, Settlement};
use crate::error::Error;
use crate::lane::{Lane, LaneKey, RetryState};
use crate::lanes::Lanes;
use crate::limiter::Cost;
use crate::policy::HostRules;
use crate::retry::{Idempotency, RetryDecision};
use crate::rollout::Side;
use crate::stats::ThrottleStats;
use crate::telemetry::RequestMetrics;

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

/// Sends one attempt within the policy's `attempt_timeout`, letting the cost model read the
/// answer and settle the ticket's booking; evaluates to `(result, inspection)`.
///
/// A macro, so that the enforced and the shadowed paths share it while the enforced path pays
/// nothing for the sharing: as an `async fn` it cost about 130 more instructions per request
/// (callgrind), its future moved once more.
macro_rules! send_attempt {
    ($lane:expr, $ticket:expr, $request:expr, $extensions:expr, $next:expr) => {{
        let settlement = $ticket.settlement();
        let attempt = async {
            let result = $next.run($request, $extensions).await;
            inspect(result, settlement, $lane.cost_model()).await
        };
        match $ticket.attempt_timeout() {
            None => attempt.await,
            Some(timeout) => tokio::time::timeout(timeout, attempt)
                .await
                .unwrap_or_else(|_| timed_out(&$lane, timeout)),
        }
    }};
}

mod builder;
mod control;
mod shadow;

pub use builder::ThrottleBuilder;
pub use control::{BreakerControl, RolloutControl};

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
/// # Ok::<(), reqwest_throttle::PolicyError>(())
/// ```
#[derive(Clone)]
pub struct Throttle {
    inner: Arc<Inner>,
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
        let cost = match (extensions.get::<RequestCost>(), lane.cost_model()) {
            (Some(cost), _) => cost.0,
            (None, Some(model)) => lane.corrected(model.estimate(&request)),
            (None, None) => Cost::default(),
        };
        let max_wait = extensions
            .get::<MaxWait>()
            .map(|max_wait| max_wait.0)
            .or(lane.max_wait());
        let deadline = max_wait.and_then(|wait| now.checked_add(wait));
        let idempotency = Idempotency::of(request.method(), request.headers());
        let span = tracing::debug_span!(
            target: "reqwest_throttle",
            "throttle",
            lane = %lane.key(),
            method = %request.method(),
            attempt = tracing::field::Empty,
            waited_ms = tracing::field::Empty,
        );
        let side = lane.rollout_side(extensions.get(), extensions.get());
        let retry = lane.retry_state(idempotency, deadline, now);
        let plan = RequestPlan {
            metrics: RequestMetrics::for_lane(lane.key()),
            lane: Arc::clone(&lane),
            cost,
            deadline,
            retry,
            started: now,
        };
        let result = match side {
            Side::Enforced => {
                self.run(plan, request, extensions, next)
                    .instrument(span)
                    .await
            }
            // Boxed: the common path's future does not grow by the shadow path's size.
            Side::Shadowed => {
                Box::pin(self.run_shadowed(plan, request, extensions, next))
                    .instrument(span)
                    .await
            }
        };
        lane.rollout_ended(side, &result, now);
        result
    }
}

/// One request's fixed facts, gathered once before its first attempt.
struct RequestPlan {
    lane: Arc<Lane>,
    cost: Cost,
    deadline: Option<Instant>,
    retry: RetryState,
    started: Instant,
    metrics: RequestMetrics,
}

impl Throttle {
    /// The loop of DESIGN.md: admit, send, assess once, retry or return.
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
            mut retry,
            started,
            metrics,
        } = plan;
        let global = self.inner.global.as_ref();
        let mut now = started;
        // The outcome of the previous attempt, handed back if a retry cannot even start.
        let mut last: Option<reqwest_middleware::Result<Response>> = None;
        loop {
            tracing::Span::current().record("attempt", retry.attempt());
            let mut ticket = match lane.admit(&cost, deadline, global, now).await {
                Ok(ticket) => ticket,
                Err(error) => {
                    metrics.refused(&error);
                    return last.unwrap_or_else(|| Err(error.into()));
                }
            };
            let departed = metrics.admitted(now);
            lane.rollout_admitted(&cost, now);
            drop(last.take());
            let spare = lane
                .may_retry(&retry)
                .then(|| request.try_clone())
                .flatten();
            let (result, inspection) =
                send_attempt!(lane, ticket, request, extensions, next.clone());
            now = Instant::now();
            let assessment = ticket.finish(&result, inspection, now);
            metrics.attempted(retry.attempt(), departed, now, assessment.rate_limited);
            lane.rollout_attempted(Side::Enforced, assessment.rate_limited);
            match lane.decide(&assessment, &mut retry, spare.is_some(), now) {
                RetryDecision::Stop(reason) => return lane.stop(reason, result),
                RetryDecision::Wait(delay) => {
                    // `decide` only retries a request that could be cloned.
                    let Some(spare) = spare else { return result };
                    last = Some(result);
                    tokio::time::sleep(delay).await;
                    now = Instant::now();
                    request = spare;
                }
            }
        }
    }
}

/// An attempt abandoned at the policy's `attempt_timeout` (dropping it closes its connection):
/// a transport failure, assessed like any other.
fn timed_out(lane: &Lane, timeout: Duration) -> (reqwest_middleware::Result<Response>, Inspection) {
    tracing::info!(target: "reqwest_throttle", timeout_ms = timeout.as_millis() as u64, "attempt timed out");
    let error = Error::AttemptTimedOut {
        lane: lane.key().clone(),
        timeout,
    };
    (Err(error.into()), Inspection::NOTHING)
}

/// Lets the policy's cost model read the response and settle the booking; without a cost model
/// (or a response to read) the estimate stands.
async fn inspect(
    result: reqwest_middleware::Result<Response>,
    settlement: Option<Settlement>,
    model: Option<&Arc<dyn CostModel>>,
) -> (reqwest_middleware::Result<Response>, Inspection) {
    match (result, model, settlement) {
        (Ok(response), Some(model), Some(settlement)) => {
            let (response, inspection) = model.inspect(response, settlement).await;
            (Ok(response), inspection)
        }
        (result, _, _) => (result, Inspection::NOTHING),
    }
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
        ThrottleStats {
            lanes,
            store: self.inner.lanes.store_stats(),
        }
    }

    /// The runtime control of the enforced share of the policy `host` gets (the default
    /// policy's when no rule matches it): shadow mode, partial or full enforcement, changed
    /// without a rebuild, from the next request on. See [`crate::rollout`].
    ///
    /// ```
    /// use reqwest_throttle::{Policy, Rate, Throttle};
    ///
    /// let throttle = Throttle::builder()
    ///     .host("api.example.com", Policy::new().rate(Rate::per_second(10)).shadow())
    ///     .build()?;
    /// // Shadow mode proved itself: enforce for a third of the tenants.
    /// throttle.rollout("api.example.com").set_enforced_percent(30.0)?;
    /// # Ok::<(), reqwest_throttle::PolicyError>(())
    /// ```
    pub fn rollout(&self, host: &str) -> RolloutControl {
        let policy = self.inner.rules.policy_for(host, None);
        RolloutControl {
            basis_points: policy.enforced.handle(),
        }
    }

    /// The circuit breaker of the lane named `key` (as in [`LaneKey::as_str`]), for operators:
    /// [`force_open`](BreakerControl::force_open), [`force_closed`](BreakerControl::force_closed),
    /// [`reset`](BreakerControl::reset). `None` when the lane does not exist (yet) or has no breaker.
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
        lane.breaker()?;
        Some(BreakerControl { lane })
    }

    /// Sets the gauges (requests in flight, queued) and the per-lane counters (cooldowns,
    /// clamped usage reports) of the [`telemetry`](crate::telemetry) metrics from a snapshot of
    /// the lanes, summed by host; call it before each scrape or on an interval. The other
    /// metrics are recorded as requests go.
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn record_metrics(&self) {
        crate::telemetry::record_snapshot(&self.stats());
    }

    /// Lanes evicted from the registry so far.
    pub fn evicted_lanes(&self) -> u64 {
        self.inner.lanes.evicted()
    }

    /// Benchmark hook: looks up (or creates) the lane named `key`, as the middleware does, and
    /// reserves one request in it without waiting. `true` when the request could go at once.
    /// Only with the `__bench` feature, which only this crate's own dev builds enable.
    #[cfg(feature = "__bench")]
    #[doc(hidden)]
    pub fn __bench_lane_reserve(&self, key: &str) -> bool {
        let now = Instant::now();
        let rules = &self.inner.rules;
        let lane = self
            .inner
            .lanes
            .lane(key, now, || Arc::clone(rules.default_policy()));
        lane.try_book_now(now)
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
}
