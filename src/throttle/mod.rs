//! The middleware: a request's way through its lane, four verbs.
//!
//! ```text
//! handle(req)
//!   lane = lane_for(&req)                  user key, cost model's key, or scheme://host:port
//!   plan = lane.cost_of(&req, ext)         cost, deadline, rollout side, retry state
//!   loop {                                 one pass per attempt
//!     ticket = lane.admit(&plan)           enforced: waits for breaker, budget, cooldown,
//!                                          slots; shadowed: the turn recorded, never waited on
//!                                          (a guard: dropped, it gives everything back)
//!     (resp, a) = ticket.send(req, next)   ONE assessment from the lane's classifier; the pace
//!                                          learner, the breaker and the counters act on it
//!     plan.decide(&a)                      Return(reason) → return | Retry(delay) → sleep, again
//!   }
//! ```
//!
//! A task never holds a concurrency slot while it waits for rate, and a request cancelled at
//! any point gives back its reservation and its permits. A shadowed request (see
//! [`crate::rollout`]) goes the same way, sent at once and once.

use std::sync::Arc;

use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::Instrument;

use crate::error::Error;
use crate::lane::{Lane, LaneKey, Plan, Then};
use crate::lanes::Lanes;
use crate::policy::{HostRules, Policy};
use crate::retry::StopReason;
use crate::stats::ThrottleStats;

mod builder;
mod control;

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
#[non_exhaustive]
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
        let policy = self.policy_for(&request)?;
        if policy.passthrough {
            // No lane, no clock read, no extension: as if the throttle were not there.
            return next.run(request, extensions).await;
        }
        // One clock read serves the lane lookup, the deadline and the first attempt.
        let now = Instant::now();
        let lane = self.lane_for(&request, policy, now)?;
        let mut plan = lane.cost_of(&request, extensions, now);
        let span = tracing::debug_span!(
            target: "reqwest_throttle",
            "throttle",
            lane = %lane.key(),
            method = %request.method(),
            attempt = tracing::field::Empty,
            waited_ms = tracing::field::Empty,
        );
        let result = self
            .run(&lane, &mut plan, request, extensions, next)
            .instrument(span)
            .await;
        plan.ended(&result);
        result
    }
}

impl Throttle {
    /// The loop of DESIGN.md: admit, send and assess once, retry or return.
    async fn run(
        &self,
        lane: &Arc<Lane>,
        plan: &mut Plan<'_>,
        mut request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        // The outcome of the previous attempt, handed back if a retry cannot even start.
        let mut last: Option<reqwest_middleware::Result<Response>> = None;
        // When the attempt asked for its turn (the first: when the request entered).
        let mut asked = plan.entered();
        loop {
            tracing::Span::current().record("attempt", plan.attempt());
            let ticket = match lane.admit(plan, self.inner.global.as_ref()).await {
                Ok(ticket) => ticket,
                Err(error) => {
                    return match last {
                        Some(last) => plan.stop(StopReason::TurnRefused, last),
                        None => Err(error.into()),
                    }
                }
            };
            drop(last.take());
            let waited = ticket.departed().saturating_duration_since(asked);
            let may_retry = plan.may_retry();
            let spare = may_retry.then(|| request.try_clone()).flatten();
            let (result, assessment) = ticket.send(request, extensions, next.clone()).await;
            plan.waited(waited);
            // With no retry left, no copy was made: the decision is then that the retries ran
            // out (it cannot be to retry), not that the request could not be copied.
            let cloneable = spare.is_some() || !may_retry;
            match (plan.decide(&assessment, cloneable), spare) {
                (Then::Retry(delay), Some(spare)) => {
                    last = Some(result);
                    tokio::time::sleep(delay).await;
                    asked = Instant::now();
                    request = spare;
                }
                (Then::Return(reason), _) => return plan.stop(reason, result),
                // `decide` only retries a request that could be cloned.
                (Then::Retry(_), None) => return plan.stop(StopReason::NotCloneable, result),
            }
        }
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

    /// Does nothing: every [`telemetry`](crate::telemetry) metric, gauges included, is
    /// recorded at the moment it changes, so nothing needs to be called before a scrape.
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    #[deprecated(
        since = "0.1.0",
        note = "metrics are recorded as they change; remove the call"
    )]
    pub fn record_metrics(&self) {}

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

    /// The policy of the request's host.
    fn policy_for(&self, request: &Request) -> Result<&Arc<Policy>, Error> {
        let url = request.url();
        let host = url.host_str().ok_or_else(|| Error::NoHost {
            url: url.to_string(),
        })?;
        Ok(self
            .inner
            .rules
            .policy_for(host, url.port_or_known_default()))
    }

    /// The request's lane, under the policy of its host.
    fn lane_for(
        &self,
        request: &Request,
        policy: &Arc<Policy>,
        now: Instant,
    ) -> Result<Arc<Lane>, Error> {
        let url = request.url();
        let no_host = || Error::NoHost {
            url: url.to_string(),
        };
        // The user's key function first, then the policy's cost model (per model, per API key,
        // and then the model's own policy, if it has one), then scheme://host:port.
        if let Some(key) = self.inner.lane_key.as_ref().and_then(|key| key(request)) {
            return Ok(self
                .inner
                .lanes
                .lane(key.as_str(), now, || Arc::clone(policy)));
        }
        let per_model = policy
            .configured_cost_model()
            .and_then(|model| model.lane_key(request));
        if let Some(key) = per_model {
            return Ok(self
                .inner
                .lanes
                .lane(key.as_str(), now, || policy.for_lane(&key)));
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
