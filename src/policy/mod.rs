//! What a lane is allowed to do: [`Rate`] (and [`Rates`], one dimension's limits), [`Policy`]
//! (with policies per model) and the [`HostRules`] that pick a policy for a host.
//!
//! Policies are plain values, validated once when the [`Throttle`](crate::Throttle) is built:
//! every nonsense setting (a zero rate, a zero concurrency, a burst that overflows) is refused
//! with a [`PolicyError`] that names the field, never discovered later as a panic or a hang.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::assess::Classifier;
use crate::breaker::BreakerConfig;
use crate::cost::CostModel;
use crate::key::LaneKey;
use crate::limiter::Dimension;
use crate::retry::{RetryBudgetConfig, RetryPolicy};
use crate::rollout::EnforcedShare;

mod error;
mod host_pattern;
mod host_rules;
mod models;
mod rate;
mod rates;

pub use error::PolicyError;
pub use host_rules::HostRules;
use models::Models;
pub use rate::Rate;
pub use rates::Rates;

/// The concurrency cap of the default policy: requests in flight at once to one lane.
///
/// Browsers open at most 6 connections per host over HTTP/1.1; 8 keeps a little headroom for
/// HTTP/2 multiplexing while staying polite to a host nobody configured.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// What one lane may do: its rate, its concurrency cap and how long a request may wait.
///
/// ```
/// use std::time::Duration;
/// use reqwest_throttle::{Policy, Rate};
///
/// let github = Policy::new()
///     .rate(Rate::per_hour(5_000).burst(100))
///     .concurrency(8)
///     .max_wait(Duration::from_secs(30));
/// assert!(github.validate().is_ok());
/// assert!(Policy::new().concurrency(0).validate().is_err());
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Policy {
    /// The limits of each dimension, indexed by [`Dimension::index`].
    limits: [Rates; Dimension::ALL.len()],
    /// The policies of models that have their own (see [`Policy::model`]).
    models: Models,
    pub(crate) cost_model: Option<CostModelHandle>,
    pub(crate) classifier: Option<ClassifierHandle>,
    pub(crate) concurrency: Option<usize>,
    pub(crate) max_wait: Option<Duration>,
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) retry: RetryPolicy,
    pub(crate) breaker: Option<BreakerConfig>,
    /// The share of requests enforced; the others are shadowed (see [`crate::rollout`]).
    pub(crate) enforced: EnforcedShare,
    /// How long later requests wait for a new lane's first answer (see
    /// [`Policy::first_contact`]); `None`: they do not.
    pub(crate) first_contact: Option<Duration>,
    /// Requests are sent as the bare client would send them, with no lane (see
    /// [`Policy::passthrough`]).
    pub(crate) passthrough: bool,
}

impl Default for Policy {
    /// The polite default for a host nobody configured: no proactive rate cap (the server's own
    /// signals pace it: Retry-After pauses the lane, rate-limit headers slow it down before it is
    /// refused), at most [`DEFAULT_CONCURRENCY`] requests in flight, no limit on how long a
    /// request waits for its turn (every wait is still finite), no per-attempt timeout (set one
    /// with [`attempt_timeout`](Policy::attempt_timeout), or a timeout on the `reqwest::Client`,
    /// so that a server that never answers cannot hold the lane), [`RetryPolicy::default`] (three
    /// safe retries with jittered backoff inside a 20 % retry budget) and
    /// [`BreakerConfig::default`] (opens after 5 consecutive failures).
    fn default() -> Policy {
        Policy {
            limits: Default::default(),
            models: Models::default(),
            cost_model: None,
            classifier: None,
            concurrency: Some(DEFAULT_CONCURRENCY),
            max_wait: None,
            attempt_timeout: None,
            retry: RetryPolicy::default(),
            breaker: Some(BreakerConfig::default()),
            enforced: EnforcedShare::default(),
            first_contact: None,
            passthrough: false,
        }
    }
}

impl Policy {
    /// The default policy (see [`Policy::default`]), to build on.
    pub fn new() -> Policy {
        Policy::default()
    }

    /// Hosts under this policy are left alone: each request goes to the next middleware (and
    /// the client) exactly as if the throttle were not there. No lane is made for them, so they
    /// cost no memory and appear in no [`Throttle::stats`](crate::Throttle::stats): no rate, no
    /// concurrency cap (the throttle's
    /// [`global_concurrency`](crate::ThrottleBuilder::global_concurrency) does not count them
    /// either), no wait, no retry, no circuit breaker, and a 429 or a `Retry-After`
    /// pauses nothing (the next request goes at once). Their responses carry no
    /// [`Outcome`](crate::Outcome).
    ///
    /// Use it for the hosts a throttle should not touch: as the default policy, so that only
    /// the hosts you name are throttled, or for one host pattern. A passthrough policy takes no
    /// other setting: [`validate`](Self::validate) refuses one with a limit, a concurrency cap,
    /// retries, a breaker or any other setting, rather than ignore it. In a configuration file:
    /// `passthrough = true`.
    ///
    /// ```
    /// use reqwest_throttle::{Policy, Rate, Throttle};
    ///
    /// // Only GitHub is throttled; every other host is sent to as by the bare client.
    /// let throttle = Throttle::builder()
    ///     .host("api.github.com", Policy::new().rate(Rate::per_hour(5_000)))
    ///     .default_policy(Policy::passthrough())
    ///     .build()?;
    /// # drop(throttle);
    /// assert!(Policy::passthrough().is_passthrough());
    /// assert!(Policy::passthrough().concurrency(4).validate().is_err());
    /// # Ok::<(), reqwest_throttle::PolicyError>(())
    /// ```
    pub fn passthrough() -> Policy {
        Policy {
            concurrency: None,
            retry: RetryPolicy::disabled(),
            breaker: None,
            passthrough: true,
            ..Policy::default()
        }
    }

    /// Whether this is a [`passthrough`](Self::passthrough) policy.
    pub fn is_passthrough(&self) -> bool {
        self.passthrough
    }

    /// Limits the lane to `rates` requests: one [`Rate`], or several of different periods
    /// (see [`Rates`]).
    #[must_use]
    pub fn rate(self, rates: impl Into<Rates>) -> Policy {
        self.limit(Dimension::Requests, rates)
    }

    /// Limits the lane to `rates` requests (the same as [`rate`](Self::rate), reads better
    /// beside [`tokens`](Self::tokens)): one [`Rate`], or several of different periods, each
    /// kept (see [`Rates`]).
    ///
    /// ```
    /// use reqwest_throttle::{Policy, Rate};
    ///
    /// // 500 a minute, and never more than 10 000 in a day.
    /// let policy = Policy::new().requests([Rate::per_minute(500), Rate::per_day(10_000)]);
    /// assert_eq!(policy.configured_rate(), Some(Rate::per_minute(500)));
    /// assert!(policy.validate().is_ok());
    /// // A day that allows less than a minute makes no sense.
    /// let nonsense = Policy::new().requests([Rate::per_minute(500), Rate::per_day(400)]);
    /// assert!(nonsense.validate().unwrap_err().to_string().starts_with("rate:"));
    /// ```
    #[must_use]
    pub fn requests(self, rates: impl Into<Rates>) -> Policy {
        self.rate(rates)
    }

    /// Limits `dimension` to `rates` units: one [`Rate`], or several of different periods (see
    /// [`Rates`]). A cost larger than a token dimension's burst (or than one of its windows) is
    /// refused with [`Error::CostTooLarge`](crate::Error::CostTooLarge): the server would refuse it too.
    #[must_use]
    pub fn limit(mut self, dimension: Dimension, rates: impl Into<Rates>) -> Policy {
        self.limits[dimension.index()] = rates.into();
        self
    }

    /// Limits the lane to `rates` tokens (input and output together, OpenAI's TPM, and TPD
    /// beside it if you like: `[Rate::per_minute(200_000), Rate::per_day(2_000_000)]`). A token
    /// limit needs a [cost model](Self::cost_model) (the LLM presets bring one):
    /// [`validate`](Self::validate) refuses it otherwise.
    #[must_use]
    pub fn tokens(self, rates: impl Into<Rates>) -> Policy {
        self.limit(Dimension::Tokens, rates)
    }

    /// Limits the lane to `rates` input tokens (Anthropic's ITPM).
    #[must_use]
    pub fn input_tokens(self, rates: impl Into<Rates>) -> Policy {
        self.limit(Dimension::InputTokens, rates)
    }

    /// Limits the lane to `rates` output tokens (Anthropic's OTPM).
    #[must_use]
    pub fn output_tokens(self, rates: impl Into<Rates>) -> Policy {
        self.limit(Dimension::OutputTokens, rates)
    }

    /// The rate of `dimension` (its shortest limit), if limited.
    pub fn configured_limit(&self, dimension: Dimension) -> Option<Rate> {
        self.limits[dimension.index()].rate()
    }

    /// Every limit of `dimension`, shortest first (empty when unlimited).
    pub fn configured_limits(&self, dimension: Dimension) -> &Rates {
        &self.limits[dimension.index()]
    }

    /// Gives `model` a policy of its own on this policy's hosts: the lanes the cost model names
    /// for that model (`Policy::openai()` and `Policy::anthropic()` name one per model and API
    /// key, feature `llm`) are created with `policy`, and so budgeted under its limits; the
    /// other models keep this policy. `model` is written as requests send it in their `model`
    /// (an Azure deployment's name for Azure). Giving a model a policy again replaces it.
    ///
    /// The policy is whole, not a patch: build it from the host's (`host.clone().requests(…)`)
    /// to keep the cost model, retries and the rest. It is the host's policy that names the
    /// lanes, so a model's policy needs a cost model (to price and settle its requests) and
    /// cannot have models of its own; [`validate`](Self::validate) refuses either, and names
    /// the model in any error of its policy. Lanes named by a key function
    /// ([`ThrottleBuilder::lane_key`](crate::ThrottleBuilder::lane_key)) keep the host's
    /// policy. A model's policy keeps its own enforced share: [`Throttle::rollout`](crate::Throttle::rollout)
    /// changes the host's.
    ///
    /// Why on the policy rather than the builder: the models are part of a host's configuration,
    /// so they go wherever its policy goes (a host rule, the default policy, a file's host
    /// table) and need no host pattern of their own.
    ///
    /// ```
    /// # #[cfg(feature = "llm")] {
    /// use reqwest_throttle::{Policy, Rate, Throttle};
    ///
    /// let openai = Policy::openai()
    ///     .requests(Rate::per_minute(500))
    ///     .tokens(Rate::per_minute(30_000));
    /// let mini = openai
    ///     .clone()
    ///     .requests([Rate::per_minute(500), Rate::per_day(10_000)])
    ///     .tokens([Rate::per_minute(200_000), Rate::per_day(2_000_000)]);
    /// let throttle = Throttle::builder()
    ///     .host("api.openai.com", openai.model("gpt-4o-mini", mini))
    ///     .build()?;
    /// # drop(throttle);
    /// # }
    /// # Ok::<(), reqwest_throttle::PolicyError>(())
    /// ```
    #[must_use]
    pub fn model(mut self, model: impl Into<String>, policy: Policy) -> Policy {
        self.models.insert(model.into(), policy);
        self
    }

    /// The policy `model` was given with [`model`](Self::model), if any.
    pub fn configured_model(&self, model: &str) -> Option<&Policy> {
        self.models.get(model)
    }

    /// The models given a policy of their own, with it, in the order given.
    pub fn configured_models(&self) -> impl Iterator<Item = (&str, &Policy)> + '_ {
        self.models.iter()
    }

    /// The policy of the lane named `key` by this policy's cost model: its model's own, if it
    /// has one, else this one.
    pub(crate) fn for_lane(self: &Arc<Policy>, key: &LaneKey) -> Arc<Policy> {
        key.model()
            .and_then(|model| self.models.for_lane(model))
            .unwrap_or(self)
            .clone()
    }

    /// Prices each request (and reads its real cost back) with `model`; see [`CostModel`].
    #[must_use]
    pub fn cost_model(mut self, model: impl CostModel) -> Policy {
        self.cost_model = Some(CostModelHandle(Arc::new(model)));
        self
    }

    /// The cost model, if any.
    pub fn configured_cost_model(&self) -> Option<&Arc<dyn CostModel>> {
        self.cost_model.as_ref().map(|handle| &handle.0)
    }

    /// Removes the proactive rate limit (every limit of requests).
    #[must_use]
    pub fn no_rate(self) -> Policy {
        self.rate(Rates::none())
    }

    /// At most `max` requests of this lane in flight at once (waiters are served in order).
    #[must_use]
    pub fn concurrency(mut self, max: usize) -> Policy {
        self.concurrency = Some(max);
        self
    }

    /// No cap on requests in flight for this lane.
    #[must_use]
    pub fn unlimited_concurrency(mut self) -> Policy {
        self.concurrency = None;
        self
    }

    /// A request that would wait longer than `max_wait` for its turn fails at once with
    /// [`Error::WouldWait`](crate::Error::WouldWait) instead of sleeping. A request can override
    /// it with a [`MaxWait`](crate::MaxWait) extension.
    #[must_use]
    pub fn max_wait(mut self, max_wait: Duration) -> Policy {
        self.max_wait = Some(max_wait);
        self
    }

    /// Each attempt may take at most `timeout`, from the moment it leaves the lane (after its
    /// wait for rate and a concurrency slot) until its response head has arrived and the cost
    /// model, if any, has read what it needs. An attempt that takes longer is abandoned and
    /// counts as a transport failure, like a reqwest timeout: its concurrency slot comes back at
    /// once, the circuit breaker counts a failure, and it is retried when repeating it is safe
    /// (an idempotent method or an `Idempotency-Key`: the server may have acted). When no retry
    /// follows, the caller gets [`Error::AttemptTimedOut`](crate::Error::AttemptTimedOut).
    ///
    /// Default: none. Without it (or a timeout on the `reqwest::Client`), a server that accepts
    /// the connection and never answers holds the lane's slots for as long as it likes. The
    /// response body, once handed to the caller, is not covered: bound it with
    /// `reqwest::ClientBuilder::timeout` or `read_timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use reqwest_throttle::Policy;
    ///
    /// let policy = Policy::new().attempt_timeout(Duration::from_secs(30));
    /// assert_eq!(policy.configured_attempt_timeout(), Some(Duration::from_secs(30)));
    /// assert!(Policy::new().attempt_timeout(Duration::ZERO).validate().is_err());
    /// ```
    #[must_use]
    pub fn attempt_timeout(mut self, timeout: Duration) -> Policy {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// Until a new lane has heard its first answer, only its first request is sent; the
    /// others wait for that answer, at most `wait`, and then book under what it announced
    /// (rate-limit headers, a Retry-After). Without it, callers that start together all leave
    /// before the server has said anything, and a server with a small burst refuses the rest.
    /// The price is one round trip, once per lane, for the callers that start with the first.
    /// Ignored when the policy configures a request rate (that paces the first requests
    /// itself).
    ///
    /// Default: off; `Policy::openai()` and `Policy::anthropic()` (feature `llm`) wait up to a
    /// second.
    ///
    /// ```
    /// use std::time::Duration;
    /// use reqwest_throttle::Policy;
    ///
    /// let policy = Policy::new().first_contact(Duration::from_millis(500));
    /// assert_eq!(policy.configured_first_contact(), Some(Duration::from_millis(500)));
    /// assert_eq!(Policy::new().configured_first_contact(), None);
    /// ```
    #[must_use]
    pub fn first_contact(mut self, wait: Duration) -> Policy {
        self.first_contact = Some(wait).filter(|wait| !wait.is_zero());
        self
    }

    /// How long later requests wait for a new lane's first answer, if they do (see
    /// [`first_contact`](Policy::first_contact)).
    pub fn configured_first_contact(&self) -> Option<Duration> {
        self.first_contact
    }

    /// How requests of this lane are retried (default: [`RetryPolicy::default`]).
    #[must_use]
    pub fn retry(mut self, retry: RetryPolicy) -> Policy {
        self.retry = retry;
        self
    }

    /// The lane's circuit breaker (default: [`BreakerConfig::default`]).
    #[must_use]
    pub fn breaker(mut self, breaker: BreakerConfig) -> Policy {
        self.breaker = Some(breaker);
        self
    }

    /// No circuit breaker for this lane.
    #[must_use]
    pub fn no_breaker(mut self) -> Policy {
        self.breaker = None;
        self
    }

    /// Shadow mode: every request is sent at once, exactly as without the throttle, and what the
    /// throttle would have done (waits, refusals, retries) is recorded in
    /// [`LaneStats::rollout`](crate::LaneStats::rollout), `tracing` events and metrics. The same
    /// as [`enforce_percent(0.0)`](Self::enforce_percent); see [`crate::rollout`].
    ///
    /// ```
    /// use reqwest_throttle::{Policy, Rate};
    ///
    /// let policy = Policy::new().rate(Rate::per_second(10)).shadow();
    /// assert_eq!(policy.configured_enforce_percent(), 0.0);
    /// ```
    #[must_use]
    pub fn shadow(self) -> Policy {
        self.enforce_percent(0.0)
    }

    /// Enforces the policy for `percent` of the requests (from 0 to 100, default 100) and
    /// shadows the others, chosen by key so that one tenant is always on the same side (see
    /// [`crate::rollout`]). Change it at runtime with
    /// [`Throttle::rollout`](crate::Throttle::rollout).
    ///
    /// ```
    /// use reqwest_throttle::Policy;
    ///
    /// assert_eq!(Policy::new().enforce_percent(30.0).configured_enforce_percent(), 30.0);
    /// assert!(Policy::new().enforce_percent(120.0).validate().is_err());
    /// ```
    #[must_use]
    pub fn enforce_percent(mut self, percent: f64) -> Policy {
        self.enforced = EnforcedShare::percent(percent);
        self
    }

    /// The share of requests enforced now, in percent.
    pub fn configured_enforce_percent(&self) -> f64 {
        f64::from(self.enforced.basis_points()) / 100.0
    }

    /// Decides what each attempt's outcome means (retry, breaker, pause) with `classifier`
    /// instead of [`DefaultClassifier`](crate::assess::DefaultClassifier).
    ///
    /// ```
    /// use reqwest_throttle::assess::DefaultClassifier;
    /// use reqwest_throttle::Policy;
    ///
    /// let policy = Policy::new().classifier(DefaultClassifier);
    /// assert!(policy.configured_classifier().is_some());
    /// ```
    #[must_use]
    pub fn classifier(mut self, classifier: impl Classifier) -> Policy {
        self.classifier = Some(ClassifierHandle(Arc::new(classifier)));
        self
    }

    /// The classifier set with [`classifier`](Self::classifier), if any.
    pub fn configured_classifier(&self) -> Option<&Arc<dyn Classifier>> {
        self.classifier.as_ref().map(|handle| &handle.0)
    }

    /// The retry policy.
    pub fn configured_retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The breaker configuration, if the lane has a breaker.
    pub fn configured_breaker(&self) -> Option<&BreakerConfig> {
        self.breaker.as_ref()
    }

    /// The configured request rate (the shortest limit of requests), if any.
    pub fn configured_rate(&self) -> Option<Rate> {
        self.configured_limit(Dimension::Requests)
    }

    /// The configured concurrency cap, if any.
    pub fn configured_concurrency(&self) -> Option<usize> {
        self.concurrency
    }

    /// The configured maximum wait, if any.
    pub fn configured_max_wait(&self) -> Option<Duration> {
        self.max_wait
    }

    /// The configured per-attempt timeout, if any.
    pub fn configured_attempt_timeout(&self) -> Option<Duration> {
        self.attempt_timeout
    }

    /// Checks every field; the error names the first one that is wrong.
    ///
    /// [`ThrottleBuilder::build`](crate::ThrottleBuilder::build) calls it for every policy it is
    /// given, however it was given, so an invalid policy never reaches a lane.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if let Some(field) = self.passthrough_setting() {
            return Err(PolicyError::PassthroughSetting { field });
        }
        for dimension in Dimension::ALL {
            self.limits[dimension.index()].validate(dimension)?;
        }
        if self.cost_model.is_none() {
            let limited_tokens = Dimension::ALL.into_iter().find(|&dimension| {
                dimension != Dimension::Requests && self.configured_limit(dimension).is_some()
            });
            if let Some(dimension) = limited_tokens {
                return Err(PolicyError::TokensWithoutCostModel { dimension });
            }
        }
        if let Some(percent) = self.enforced.invalid() {
            return Err(PolicyError::EnforcePercent { percent });
        }
        if self.concurrency == Some(0) {
            return Err(PolicyError::ZeroConcurrency);
        }
        if self
            .attempt_timeout
            .is_some_and(|timeout| timeout.is_zero())
        {
            return Err(PolicyError::ZeroAttemptTimeout);
        }
        validate_retry_budget(&self.retry.configured_budget(), RETRY_BUDGET_API_NAMES)?;
        if let Some(breaker) = &self.breaker {
            breaker.validate()?;
        }
        self.models.validate(self.cost_model.is_some())
    }
}

impl Policy {
    /// The first setting a passthrough policy has that it would not apply, as a file names it.
    fn passthrough_setting(&self) -> Option<&'static str> {
        if !self.passthrough {
            return None;
        }
        let limited = Dimension::ALL
            .into_iter()
            .find(|&dimension| !self.configured_limits(dimension).is_empty());
        let settings = [
            (
                limited.is_some(),
                limited.map_or("rate", error::limit_field),
            ),
            (self.concurrency.is_some(), "concurrency"),
            (self.retry.most_retries() > 0, "retry"),
            (self.breaker.is_some(), "breaker"),
            (self.max_wait.is_some(), "max_wait"),
            (self.attempt_timeout.is_some(), "attempt_timeout"),
            (self.first_contact.is_some(), "first_contact"),
            (self.cost_model.is_some(), "cost model"),
            (self.classifier.is_some(), "classifier"),
            (self.models.iter().next().is_some(), "models"),
            (
                self.configured_enforce_percent() != 100.0 || self.enforced.invalid().is_some(),
                "enforce_percent",
            ),
        ];
        settings
            .into_iter()
            .find_map(|(set, field)| set.then_some(field))
    }
}

/// What the retry budget's `ratio` and `min_per_sec` are called where they were written.
pub(crate) struct RetryBudgetNames {
    pub(crate) ratio: &'static str,
    pub(crate) min_per_sec: &'static str,
}

const RETRY_BUDGET_API_NAMES: RetryBudgetNames = RetryBudgetNames {
    ratio: "retry budget ratio",
    min_per_sec: "retry budget min_per_sec",
};

/// Refuses a retry budget whose numbers the budget could only read as zero or as no limit
/// (negative, NaN, infinite), naming each field as the caller wrote it.
pub(crate) fn validate_retry_budget(
    budget: &RetryBudgetConfig,
    names: RetryBudgetNames,
) -> Result<(), PolicyError> {
    let defaults = RetryBudgetConfig::default();
    let numbers = [
        (names.ratio, budget.ratio, defaults.ratio),
        (names.min_per_sec, budget.min_per_sec, defaults.min_per_sec),
    ];
    for (field, value, default) in numbers {
        if !(value.is_finite() && value >= 0.0) {
            return Err(PolicyError::RetryBudgetNumber {
                field,
                value,
                default,
            });
        }
    }
    if budget.ttl.is_zero() {
        return Err(PolicyError::ZeroRetryBudgetTtl);
    }
    Ok(())
}

/// A shared classifier, printable.
#[derive(Clone)]
pub(crate) struct ClassifierHandle(pub(crate) Arc<dyn Classifier>);

impl fmt::Debug for ClassifierHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Classifier")
    }
}

/// A shared cost model, printable.
#[derive(Clone)]
pub(crate) struct CostModelHandle(pub(crate) Arc<dyn CostModel>);

impl fmt::Debug for CostModelHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CostModel")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_invalid_policy_names_its_field() {
        let cases = [
            (Policy::new().concurrency(0), "concurrency:"),
            (Policy::new().rate(Rate::per_minute(0)), "rate:"),
            (Policy::new().rate(Rate::per_minute(10).burst(0)), "burst:"),
        ];
        for (policy, field) in cases {
            let message = policy.validate().unwrap_err().to_string();
            assert!(message.starts_with(field), "{policy:?}: {message}");
        }
    }

    /// A token limit without a cost model would never bind (no request costs a token): it is
    /// refused rather than let every request through silently.
    #[test]
    fn a_token_limit_without_a_cost_model_is_refused() {
        for (dimension, field) in [
            (Dimension::Tokens, "tokens:"),
            (Dimension::InputTokens, "input_tokens:"),
            (Dimension::OutputTokens, "output_tokens:"),
        ] {
            let policy = Policy::new().limit(dimension, Rate::per_minute(10));
            let error = policy.validate().unwrap_err();
            assert_eq!(error, PolicyError::TokensWithoutCostModel { dimension });
            assert!(error.to_string().starts_with(field), "{error}");
        }
        assert!(Policy::new().rate(Rate::per_minute(10)).validate().is_ok());
    }

    #[test]
    fn each_dimension_keeps_its_own_rate() {
        let rate = Rate::per_minute;
        let mut policy = Policy::new();
        for (n, dimension) in (1..).zip(Dimension::ALL) {
            policy = policy.limit(dimension, rate(n));
        }
        for (n, dimension) in (1..).zip(Dimension::ALL) {
            assert_eq!(
                policy.configured_limit(dimension),
                Some(rate(n)),
                "{dimension}"
            );
        }
        assert_eq!(policy.configured_rate(), Some(rate(1)));
        let tokens_only = Policy::new().tokens(rate(7));
        assert_eq!(tokens_only.configured_rate(), None);
        assert_eq!(tokens_only.configured_limit(Dimension::InputTokens), None);
        let bad_output = Policy::new().output_tokens(Rate::per_minute(0));
        assert_eq!(
            bad_output.validate(),
            Err(PolicyError::ZeroRate {
                field: "output_tokens"
            })
        );
    }
}
