//! Configuring a [`Throttle`]: host rules, bounds and hooks, validated once by `build`.

use std::sync::Arc;

use reqwest::Request;
use tokio::sync::Semaphore;

use super::{Inner, KeyFn, Throttle};
use crate::breaker::Transition;
use crate::lane::{LaneKey, TransitionHook};
use crate::lanes::{Lanes, DEFAULT_MAX_LANES};
use crate::policy::{HostRules, Policy, PolicyError};

/// Builds a [`Throttle`]; every setting is validated by [`build`](ThrottleBuilder::build).
#[must_use]
#[non_exhaustive]
pub struct ThrottleBuilder {
    rules: Result<HostRules, PolicyError>,
    max_lanes: usize,
    global_concurrency: Option<usize>,
    lane_key: Option<Box<KeyFn>>,
    on_transition: Option<TransitionHook>,
    #[cfg(feature = "redis")]
    store: Option<crate::store::RedisStore>,
}

impl Default for ThrottleBuilder {
    fn default() -> Self {
        ThrottleBuilder {
            rules: Ok(HostRules::default()),
            max_lanes: DEFAULT_MAX_LANES,
            global_concurrency: None,
            lane_key: None,
            on_transition: None,
            #[cfg(feature = "redis")]
            store: None,
        }
    }
}

impl ThrottleBuilder {
    /// The policy for hosts matching `pattern`: `api.github.com`, `127.0.0.1:8080` or `*.example.com`
    /// (see [`HostRules`]).
    pub fn host(mut self, pattern: &str, policy: Policy) -> Self {
        self.rules = self.rules.and_then(|rules| rules.with(pattern, policy));
        self
    }

    /// The policy for hosts no rule matches (default: [`Policy::default`], the polite default:
    /// server signals honoured, safe retries, a concurrency cap and a circuit breaker, so that a
    /// host nobody thought of is not hammered). To leave the hosts you did not name alone, as
    /// the bare client would send to them, give [`Policy::passthrough`]:
    ///
    /// ```
    /// use reqwest_throttle::{Policy, Rate, Throttle};
    ///
    /// let throttle = Throttle::builder()
    ///     .host("api.github.com", Policy::new().rate(Rate::per_hour(5_000)))
    ///     .default_policy(Policy::passthrough())
    ///     .build()?;
    /// # drop(throttle);
    /// # Ok::<(), reqwest_throttle::PolicyError>(())
    /// ```
    pub fn default_policy(mut self, policy: Policy) -> Self {
        self.rules = self.rules.and_then(|rules| rules.with_default(policy));
        self
    }

    /// Host rules built elsewhere, replacing any set so far. Their policies, the default's
    /// included, are validated by [`build`](Self::build).
    pub fn rules(mut self, rules: HostRules) -> Self {
        self.rules = Ok(rules);
        self
    }

    #[cfg(feature = "serde")]
    pub(crate) fn rules_result(mut self, rules: Result<HostRules, PolicyError>) -> Self {
        self.rules = rules;
        self
    }

    /// A configuration error found while reading a file, reported by `build` after any error
    /// of the rules.
    #[cfg(feature = "serde")]
    pub(crate) fn refuse(mut self, error: PolicyError) -> Self {
        self.rules = self.rules.and(Err(error));
        self
    }

    /// At most `max_lanes` lanes are kept (default 10 000); idle ones are forgotten beyond that.
    pub fn max_lanes(mut self, max_lanes: usize) -> Self {
        self.max_lanes = max_lanes;
        self
    }

    /// At most `max` requests in flight over all lanes together (default: no global cap).
    /// Requests to [passthrough](Policy::passthrough) hosts have no lane and are not counted.
    pub fn global_concurrency(mut self, max: usize) -> Self {
        self.global_concurrency = Some(max);
        self
    }

    /// Chooses the lane of each request (per API key, per route, per model). Returning `None`
    /// falls back to the default key, `scheme://host:port`. The lane's policy is still chosen
    /// by the request's host.
    ///
    /// ```
    /// use reqwest_throttle::{LaneKey, Throttle};
    ///
    /// // One lane per tenant header, so each tenant has its own budget.
    /// let throttle = Throttle::builder()
    ///     .lane_key(|request| {
    ///         let tenant = request.headers().get("x-tenant")?.to_str().ok()?;
    ///         Some(LaneKey::new(format!("tenant:{tenant}")))
    ///     })
    ///     .build()?;
    /// # Ok::<(), reqwest_throttle::PolicyError>(())
    /// ```
    pub fn lane_key(
        mut self,
        key: impl Fn(&Request) -> Option<LaneKey> + Send + Sync + 'static,
    ) -> Self {
        self.lane_key = Some(Box::new(key));
        self
    }

    /// Calls `hook` on every circuit-breaker state change of every lane (after the `tracing`
    /// event), for alerting or metrics.
    ///
    /// ```
    /// use reqwest_throttle::Throttle;
    ///
    /// let throttle = Throttle::builder()
    ///     .on_breaker_transition(|lane, transition| {
    ///         eprintln!("{lane}: circuit {} -> {}", transition.from, transition.to);
    ///     })
    ///     .build()?;
    /// # Ok::<(), reqwest_throttle::PolicyError>(())
    /// ```
    pub fn on_breaker_transition(
        mut self,
        hook: impl Fn(&LaneKey, &Transition) + Send + Sync + 'static,
    ) -> Self {
        self.on_transition = Some(Arc::new(hook));
        self
    }

    /// Keeps the budget of every lane (or of those [`RedisStore::lanes`] chooses) in Redis,
    /// shared with every process that uses the same server and prefix (feature `redis`; see
    /// [`store`](crate::store) for what is shared and what happens when Redis is gone).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use reqwest_throttle::store::RedisStore;
    /// use reqwest_throttle::{Policy, Rate, Throttle};
    ///
    /// // Nothing connects until the first request.
    /// let throttle = Throttle::builder()
    ///     .default_policy(Policy::new().rate(Rate::per_second(50)))
    ///     .store(RedisStore::new("redis://127.0.0.1:6379/")?.expected_workers(8))
    ///     .build()?;
    /// # drop(throttle);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// [`RedisStore::lanes`]: crate::store::RedisStore::lanes
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn store(mut self, store: crate::store::RedisStore) -> Self {
        self.store = Some(store);
        self
    }

    /// Validates the configuration and builds the throttle: every policy, however it was
    /// given, and every bound. The error, a configuration error apart from the runtime
    /// [`Error`](crate::Error), names the rule and the field.
    pub fn build(self) -> Result<Throttle, PolicyError> {
        let rules = self.rules?;
        rules.validate()?;
        if self.max_lanes == 0 {
            return Err(PolicyError::ZeroMaxLanes);
        }
        if self.global_concurrency == Some(0) {
            return Err(PolicyError::ZeroGlobalConcurrency);
        }
        crate::telemetry::describe();
        #[cfg(feature = "metrics")]
        let on_transition: Option<TransitionHook> = {
            let user_hook = self.on_transition;
            Some(Arc::new(move |lane: &LaneKey, transition: &Transition| {
                crate::telemetry::breaker_transition(lane, transition.to);
                if let Some(hook) = &user_hook {
                    hook(lane, transition);
                }
            }))
        };
        #[cfg(not(feature = "metrics"))]
        let on_transition = self.on_transition;
        let lanes = Lanes::new(self.max_lanes, on_transition);
        #[cfg(feature = "redis")]
        let lanes = match self.store {
            Some(store) => lanes.with_store(store.into_store()?),
            None => lanes,
        };
        Ok(Throttle {
            inner: Arc::new(Inner {
                rules,
                lanes,
                lane_key: self.lane_key,
                global: self
                    .global_concurrency
                    .map(|max| Arc::new(Semaphore::new(max))),
            }),
        })
    }
}
