//! Throttle configuration from a file or the environment (`serde` feature).
//!
//! Any serde format works (TOML, JSON, YAML); durations are written as `"30s"`, `"1m30s"`,
//! `"1h 30m"`, `"250ms"` or a number of seconds ([`ConfigDuration`]), rates as `"600/min"`, `"5000/h"`, `"10000/d"`,
//! `"100/10s"`, and several limits of one dimension as a list (`["500/min", "10000/d"]`, see
//! [`Rates`]). A host's `models` table gives a model its own policy
//! ([`Policy::model`]): the host's, with the model's table on top. Each value
//! is parsed while deserializing (a bad rate or duration, or an unknown field, fails at load time
//! with its line); values that make no sense together or as a policy (`burst` without `rate`,
//! `concurrency = 0`, a NaN `budget_ratio`) are refused by [`PolicyConfig::into_policy`] and
//! [`ThrottleBuilder::build`], with the host rule and the field named. Nothing is silently
//! dropped or read as something else.
//!
//! ```
//! use reqwest_throttle::ThrottleConfig; // also `reqwest_throttle::config::ThrottleConfig`
//!
//! let config: ThrottleConfig = toml::from_str(r#"
//!     max_lanes = 5000
//!
//!     [default]
//!     concurrency = 8
//!
//!     [hosts."api.github.com"]
//!     rate = "5000/h"
//!     burst = 100
//!     max_wait = "30s"
//!
//!     [hosts."api.example.com"]
//!     rate = "20/s"
//!     enforce_percent = 30   # the rest is shadowed: see reqwest_throttle::rollout
//!
//!     [hosts."*.example.com"]
//!     rate = ["2/s", "5000/d"]   # 2 a second, never more than 5 000 in a day
//!     retry = { max_retries = 5, base = "100ms", cap = "10s", jitter = "equal" }
//!     breaker = { consecutive_failures = 3, open_base = "2s", open_max = "1h 30m" }
//!
//!     [hosts."*.internal"]
//!     passthrough = true   # sent to as by the bare client: see Policy::passthrough
//! "#).unwrap();
//! let throttle = config.into_builder().build().unwrap();
//! # drop(throttle);
//! ```
//!
//! A `[store]` section ([`StoreConfig`], feature `redis`) shares every lane's budget through
//! Redis:
//!
//! ```
//! # #[cfg(feature = "redis")] {
//! use reqwest_throttle::ThrottleConfig;
//!
//! let config: ThrottleConfig = toml::from_str(r#"
//!     [default]
//!     rate = "50/s"
//!
//!     [store]
//!     url = "redis://127.0.0.1:6379/"
//!     prefix = "billing"
//!     expected_workers = 8
//! "#).unwrap();
//! // Nothing connects until the first request.
//! let throttle = config.into_builder().build().unwrap();
//! # drop(throttle);
//! # }
//! ```
//!
//! ```
//! use reqwest_throttle::ThrottleConfig;
//!
//! // Environment: the same structure as JSON in one variable.
//! let json = r#"{ "hosts": { "api.openai.com":
//!     { "preset": "openai", "rate": "500/min", "tokens": "200000/min" } } }"#;
//! let config: ThrottleConfig = serde_json::from_str(json).unwrap();
//! assert_eq!(config.hosts.len(), 1);
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::breaker::BreakerConfig;
use crate::limiter::Dimension;
use crate::policy::{
    validate_retry_budget, HostRules, Policy, PolicyError, Rate, Rates, RetryBudgetNames,
};
use crate::retry::{
    Backoff, Jitter, RetryBudgetConfig, RetryPolicy, DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_CAP,
};
use crate::signals::parse_go_duration;
use crate::throttle::ThrottleBuilder;

mod store;

pub use store::{OnDown, StoreConfig};

/// A duration written as `"30s"`, `"1m30s"`, `"1h 30m"`, `"250ms"`, `"2days"` or a number of
/// seconds: Go's syntax (`"1m30.5s"`, as rate-limit headers write it) or
/// [`humantime`](https://docs.rs/humantime)'s (`"1h 30m"`, `"2min"`), whichever reads it.
///
/// ```
/// use std::time::Duration;
/// use reqwest_throttle::config::ConfigDuration;
///
/// let read = |text: &str| serde_json::from_str::<ConfigDuration>(text).map(|d| d.0);
/// assert_eq!(read(r#""1h 30m""#).unwrap(), Duration::from_secs(5_400));
/// assert_eq!(read(r#""1m30.5s""#).unwrap(), Duration::from_millis(90_500));
/// assert_eq!(read(r#""250ms""#).unwrap(), Duration::from_millis(250));
/// assert_eq!(read("2.5").unwrap(), Duration::from_millis(2_500));
/// assert!(read(r#""soon""#).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "DurationText")]
#[non_exhaustive]
pub struct ConfigDuration(pub Duration);

#[derive(Deserialize)]
#[serde(untagged)]
enum DurationText {
    Seconds(f64),
    Text(String),
}

impl TryFrom<DurationText> for ConfigDuration {
    type Error = String;

    fn try_from(text: DurationText) -> Result<Self, String> {
        match text {
            DurationText::Seconds(seconds) => Duration::try_from_secs_f64(seconds)
                .map(ConfigDuration)
                .map_err(|_| format!("{seconds} is not a number of seconds >= 0")),
            DurationText::Text(text) => {
                let trimmed = text.trim();
                parse_go_duration(trimmed)
                    .or_else(|| humantime::parse_duration(trimmed).ok())
                    .map(ConfigDuration)
                    .ok_or_else(|| {
                        format!("{text:?} is not a duration such as \"30s\", \"1m30s\", \"1h 30m\" or \"250ms\"")
                    })
            }
        }
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Rate, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One limit (`"600/min"`) or several of different periods (`["600/min", "10000/d"]`), each
/// read as a [`Rate`] is.
impl<'de> Deserialize<'de> for Rates {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Rates, D::Error> {
        limits_of(deserializer, Dimension::Requests)
    }
}

/// The limits of `dimension`, read as [`Rates`] are; an invalid rate's error names the
/// dimension's field (`tokens: the count must be at least 1…`), not `rate`.
fn limits_of<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
    dimension: Dimension,
) -> Result<Rates, D::Error> {
    struct RatesVisitor(Dimension);

    impl RatesVisitor {
        fn parse<E: serde::de::Error>(&self, text: &str) -> Result<Rate, E> {
            text.parse::<Rate>()
                .map_err(|error| E::custom(error.of_limit(self.0)))
        }
    }

    impl<'de> serde::de::Visitor<'de> for RatesVisitor {
        type Value = Rates;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(
                "a rate such as \"600/min\", or a list of them such as [\"600/min\", \"10000/d\"]",
            )
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Rates, E> {
            self.parse(text).map(Rates::from)
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Rates, A::Error> {
            let mut rates = Vec::new();
            while let Some(text) = seq.next_element::<String>()? {
                rates.push(self.parse::<A::Error>(&text)?);
            }
            Ok(Rates::from(rates))
        }
    }

    deserializer.deserialize_any(RatesVisitor(dimension))
}

fn token_limits<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Rates>, D::Error> {
    limits_of(d, Dimension::Tokens).map(Some)
}

fn input_token_limits<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Rates>, D::Error> {
    limits_of(d, Dimension::InputTokens).map(Some)
}

fn output_token_limits<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Rates>, D::Error> {
    limits_of(d, Dimension::OutputTokens).map(Some)
}

/// Retry settings of a policy; every field is optional, and an absent one keeps the value of
/// the policy it is applied to ([`RetryPolicy::default`], or the preset's retry policy).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RetryConfig {
    /// Retries per request.
    pub max_retries: Option<u32>,
    /// First backoff delay.
    pub base: Option<ConfigDuration>,
    /// Largest backoff delay.
    pub cap: Option<ConfigDuration>,
    /// `"full"`, `"equal"`, `"decorrelated"` or `"none"`.
    pub jitter: Option<Jitter>,
    /// The longest server-requested delay that is slept on.
    pub max_retry_after: Option<ConfigDuration>,
    /// Fail instead of returning the response when the server asks for longer.
    pub fail_on_long_retry_after: Option<bool>,
    /// Retry non-idempotent requests on any retryable outcome.
    pub retry_non_idempotent: Option<bool>,
    /// Retries allowed per original request in the budget window (0.2 = 20 %).
    pub budget_ratio: Option<f64>,
    /// Retries allowed per second regardless of traffic.
    pub budget_min_per_sec: Option<f64>,
}

impl RetryConfig {
    /// `policy` with the settings given here changed.
    fn apply(self, mut policy: RetryPolicy) -> Result<RetryPolicy, PolicyError> {
        if let Some(n) = self.max_retries {
            policy = policy.max_retries(n);
        }
        if let (Some(base), Some(cap)) = (self.base, self.cap) {
            if cap.0 < base.0 {
                return Err(PolicyError::Inconsistent {
                    field: "retry.cap",
                    reason: "the largest backoff delay is below the first (retry.base); raise cap or lower base",
                });
            }
        }
        if self.base.is_some() || self.cap.is_some() || self.jitter.is_some() {
            // Absent settings come from the schedule being changed (a custom one has none: the
            // default schedule's are used).
            let (base, cap, jitter) = policy
                .configured_backoff()
                .exponential_settings()
                .unwrap_or((DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_CAP, Jitter::default()));
            let base = self.base.map_or(base, |d| d.0);
            let cap = self.cap.map_or(cap.max(base), |d| d.0);
            let jitter = self.jitter.unwrap_or(jitter);
            policy = policy.backoff(Backoff::exponential(base, cap).jitter(jitter));
        }
        if let Some(max) = self.max_retry_after {
            policy = policy.max_retry_after(max.0);
        }
        if let Some(fail) = self.fail_on_long_retry_after {
            policy = policy.fail_on_long_retry_after(fail);
        }
        if let Some(retry) = self.retry_non_idempotent {
            policy = policy.retry_non_idempotent(retry);
        }
        if self.budget_ratio.is_some() || self.budget_min_per_sec.is_some() {
            let current = policy.configured_budget();
            let budget = RetryBudgetConfig {
                ratio: self.budget_ratio.unwrap_or(current.ratio),
                min_per_sec: self.budget_min_per_sec.unwrap_or(current.min_per_sec),
                ttl: current.ttl,
            };
            let names = RetryBudgetNames {
                ratio: "retry.budget_ratio",
                min_per_sec: "retry.budget_min_per_sec",
            };
            validate_retry_budget(&budget, names)?;
            policy = policy.budget(budget);
        }
        Ok(policy)
    }
}

/// Circuit-breaker settings of a policy; absent fields keep the value of the breaker they are
/// applied to ([`BreakerConfig::default`] unless the policy has none).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BreakerSettings {
    /// `false` removes the breaker.
    pub enabled: Option<bool>,
    /// Consecutive failures that open the circuit.
    pub consecutive_failures: Option<u32>,
    /// First open period.
    pub open_base: Option<ConfigDuration>,
    /// Longest open period.
    pub open_max: Option<ConfigDuration>,
    /// Probes admitted at once while half-open.
    pub half_open_probes: Option<u32>,
    /// Probe successes that close the circuit.
    pub successes_to_close: Option<u32>,
}

impl BreakerSettings {
    /// `breaker` (the policy's, if it has one) with the settings given here changed; `None`
    /// removes it.
    fn apply(self, breaker: Option<BreakerConfig>) -> Result<Option<BreakerConfig>, PolicyError> {
        let Self {
            enabled,
            consecutive_failures,
            open_base,
            open_max,
            half_open_probes,
            successes_to_close,
        } = self;
        if enabled == Some(false) {
            let tuned = consecutive_failures.is_some()
                || open_base.is_some()
                || open_max.is_some()
                || half_open_probes.is_some()
                || successes_to_close.is_some();
            if tuned {
                return Err(PolicyError::Inconsistent {
                    field: "breaker.enabled",
                    reason: "false removes the breaker, yet other breaker settings are given; remove them or `enabled = false`",
                });
            }
            return Ok(None);
        }
        let mut config = breaker.unwrap_or_default();
        if let Some(n) = consecutive_failures {
            config = config.consecutive_failures(n);
        }
        if open_base.is_some() || open_max.is_some() {
            let (base, max) = config.configured_open_for();
            let base = open_base.map_or(base, |d| d.0);
            let max = open_max.map_or(max.max(base), |d| d.0);
            config = config.open_for(base, max);
        }
        if let Some(n) = half_open_probes {
            config = config.half_open_probes(n);
        }
        if let Some(n) = successes_to_close {
            config = config.successes_to_close(n);
        }
        Ok(Some(config))
    }
}

/// The LLM preset a policy starts from, bringing its cost model, retry policy and concurrency
/// (`Policy::openai()`, `Policy::anthropic()`; `llm` feature).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub enum Preset {
    /// `"openai"`: OpenAI, Azure OpenAI and OpenAI-compatible APIs.
    #[serde(rename = "openai")]
    OpenAi,
    /// `"anthropic"`: Anthropic's Messages API.
    #[serde(rename = "anthropic")]
    Anthropic,
}

impl Preset {
    /// The policy this preset starts from.
    #[cfg(feature = "llm")]
    fn policy(self) -> Result<Policy, PolicyError> {
        Ok(match self {
            Preset::OpenAi => Policy::openai(),
            Preset::Anthropic => Policy::anthropic(),
        })
    }

    #[cfg(not(feature = "llm"))]
    fn policy(self) -> Result<Policy, PolicyError> {
        Err(PolicyError::Inconsistent {
            field: "preset",
            reason: "the LLM presets need the `llm` feature of reqwest-throttle",
        })
    }
}

/// One policy as written in a file. Every field is optional: absent means the value of
/// [`Policy::default`], or of the `preset`'s policy; in a model's table (`models`), the host's.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PolicyConfig {
    /// `true`: these hosts are left alone, each request sent as by the bare client
    /// ([`Policy::passthrough`]); no other setting may contradict it.
    pub passthrough: Option<bool>,
    /// The LLM preset to start from, `"openai"` or `"anthropic"` (`llm` feature): it brings the
    /// cost model a token limit needs.
    pub preset: Option<Preset>,
    /// Requests rate, `"600/min"`, or several limits, `["600/min", "10000/d"]` (see [`Rates`]).
    pub rate: Option<Rates>,
    /// Burst of the requests rate (of the shortest limit; default: its whole count).
    pub burst: Option<u64>,
    /// Tokens rate (LLM TPM), `"200000/min"`, or several limits (TPM and TPD:
    /// `["200000/min", "2000000/d"]`); needs a `preset`.
    #[serde(default, deserialize_with = "token_limits")]
    pub tokens: Option<Rates>,
    /// Input tokens rate, or several limits; needs a `preset`.
    #[serde(default, deserialize_with = "input_token_limits")]
    pub input_tokens: Option<Rates>,
    /// Output tokens rate, or several limits; needs a `preset`.
    #[serde(default, deserialize_with = "output_token_limits")]
    pub output_tokens: Option<Rates>,
    /// Requests in flight at once; `0` is refused, absent keeps the policy's cap
    /// ([`DEFAULT_CONCURRENCY`](crate::DEFAULT_CONCURRENCY) without a preset).
    pub concurrency: Option<usize>,
    /// `true` removes the concurrency cap.
    pub unlimited_concurrency: Option<bool>,
    /// How long a request may wait for its turn.
    pub max_wait: Option<ConfigDuration>,
    /// How long one attempt may take before it counts as a transport failure
    /// ([`Policy::attempt_timeout`]).
    pub attempt_timeout: Option<ConfigDuration>,
    /// How long a new lane's later requests wait for its first answer
    /// ([`Policy::first_contact`]; `0s` turns it off).
    pub first_contact: Option<ConfigDuration>,
    /// Retry settings.
    pub retry: Option<RetryConfig>,
    /// Circuit-breaker settings.
    pub breaker: Option<BreakerSettings>,
    /// The share of requests enforced, in percent (default 100); `0` is shadow mode: every
    /// request is sent at once and what the throttle would have done is recorded
    /// ([`Policy::enforce_percent`], [`crate::rollout`]).
    pub enforce_percent: Option<f64>,
    /// Policies of single models on this host (`[hosts."api.openai.com".models."gpt-4o-mini"]`,
    /// [`Policy::model`]): each is this table's policy with the model's table on top (a model's
    /// table takes no `preset` and no `models`). Needs a `preset`: its cost model names a lane
    /// per model.
    #[serde(default)]
    pub models: BTreeMap<String, PolicyConfig>,
}

impl PolicyConfig {
    /// The policy this describes, validated; the error names the field (and the model, in a
    /// model's table).
    pub fn into_policy(mut self) -> Result<Policy, PolicyError> {
        let base = match (self.preset, self.passthrough == Some(true)) {
            (Some(_), true) => return Err(PolicyError::PassthroughSetting { field: "preset" }),
            (Some(preset), false) => preset.policy()?,
            // The settings below that contradict it are refused by `validate`, by name.
            (None, true) => Policy::passthrough(),
            (None, false) => Policy::new(),
        };
        let models = std::mem::take(&mut self.models);
        let host = self.apply(base)?;
        let mut policy = host.clone();
        for (model, config) in models {
            let in_model = |error| PolicyError::InModel {
                model: model.clone(),
                error: Box::new(error),
            };
            if config.passthrough.is_some() {
                return Err(in_model(PolicyError::Inconsistent {
                    field: "passthrough",
                    reason: "a model's requests go to its host's lanes; set passthrough on the host, not the model",
                }));
            }
            if config.preset.is_some() {
                return Err(in_model(PolicyError::Inconsistent {
                    field: "preset",
                    reason:
                        "a model's table starts from its host's policy, preset included; remove it",
                }));
            }
            if !config.models.is_empty() {
                return Err(in_model(PolicyError::NestedModels));
            }
            let own = config.apply(host.clone()).map_err(in_model)?;
            policy = policy.model(model, own);
        }
        policy.validate()?;
        Ok(policy)
    }

    /// `policy` with the settings given here changed (all but `preset` and `models`),
    /// unvalidated.
    fn apply(self, mut policy: Policy) -> Result<Policy, PolicyError> {
        match (self.rate, self.burst) {
            (Some(rates), Some(burst)) => policy = policy.rate(rates.with_burst(burst)),
            (Some(rates), None) => policy = policy.rate(rates),
            (None, Some(_)) => {
                return Err(PolicyError::Inconsistent {
                    field: "burst",
                    reason: "is the burst of the requests rate, and no rate is set; add `rate = \"10/s\"` or remove burst",
                })
            }
            (None, None) => {}
        }
        if self.concurrency.is_some() && self.unlimited_concurrency == Some(true) {
            return Err(PolicyError::Inconsistent {
                field: "concurrency",
                reason: "is set together with `unlimited_concurrency = true`; keep one",
            });
        }
        if let Some(rates) = self.tokens {
            policy = policy.tokens(rates);
        }
        if let Some(rates) = self.input_tokens {
            policy = policy.input_tokens(rates);
        }
        if let Some(rates) = self.output_tokens {
            policy = policy.output_tokens(rates);
        }
        if let Some(max) = self.concurrency {
            policy = policy.concurrency(max);
        }
        if self.unlimited_concurrency == Some(true) {
            policy = policy.unlimited_concurrency();
        }
        if let Some(max_wait) = self.max_wait {
            policy = policy.max_wait(max_wait.0);
        }
        if let Some(timeout) = self.attempt_timeout {
            policy = policy.attempt_timeout(timeout.0);
        }
        if let Some(wait) = self.first_contact {
            policy = policy.first_contact(wait.0);
        }
        if let Some(retry) = self.retry {
            let retry = retry.apply(policy.configured_retry().clone())?;
            policy = policy.retry(retry);
        }
        if let Some(breaker) = self.breaker {
            policy = match breaker.apply(policy.configured_breaker().cloned())? {
                Some(config) => policy.breaker(config),
                None => policy.no_breaker(),
            };
        }
        if let Some(percent) = self.enforce_percent {
            policy = policy.enforce_percent(percent);
        }
        Ok(policy)
    }
}

/// A [`Policy`] read directly (in a struct of your own, say), as a [`PolicyConfig`] would be.
impl<'de> Deserialize<'de> for Policy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Policy, D::Error> {
        PolicyConfig::deserialize(deserializer)?
            .into_policy()
            .map_err(serde::de::Error::custom)
    }
}

/// A [`RetryPolicy`] read directly, as a [`RetryConfig`] applied to [`RetryPolicy::default`].
impl<'de> Deserialize<'de> for RetryPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<RetryPolicy, D::Error> {
        RetryConfig::deserialize(deserializer)?
            .apply(RetryPolicy::default())
            .map_err(serde::de::Error::custom)
    }
}

/// A [`BreakerConfig`] read directly, as [`BreakerSettings`] applied to
/// [`BreakerConfig::default`] and validated (`enabled = false` has no meaning here: use
/// [`Policy::no_breaker`]).
impl<'de> Deserialize<'de> for BreakerConfig {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BreakerConfig, D::Error> {
        let config = BreakerSettings::deserialize(deserializer)?
            .apply(Some(BreakerConfig::default()))
            .map_err(serde::de::Error::custom)?
            .ok_or_else(|| {
                serde::de::Error::custom(
                    "breaker.enabled: a breaker configuration cannot disable itself; remove the breaker from the policy instead (`breaker = { enabled = false }`, Policy::no_breaker)",
                )
            })?;
        config.validate().map_err(serde::de::Error::custom)?;
        Ok(config)
    }
}

/// A whole throttle as written in a file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ThrottleConfig {
    /// The policy for hosts no rule matches.
    pub default: Option<PolicyConfig>,
    /// Policies by host pattern (`api.github.com`, `127.0.0.1:8080`, `*.example.com`).
    #[serde(default)]
    pub hosts: BTreeMap<String, PolicyConfig>,
    /// Bound on the number of lanes.
    pub max_lanes: Option<usize>,
    /// Requests in flight over all lanes.
    pub global_concurrency: Option<usize>,
    /// The Redis server every lane shares its budget through (feature `redis`; see
    /// [`StoreConfig`]).
    pub store: Option<StoreConfig>,
}

impl ThrottleConfig {
    /// A builder with this configuration; [`ThrottleBuilder::build`] validates it and names the
    /// host rule and field of the first invalid value.
    pub fn into_builder(self) -> ThrottleBuilder {
        let default = match self.default {
            Some(config) => config.into_policy().map_err(PolicyError::in_default),
            None => Ok(Policy::default()),
        };
        let mut rules =
            default.and_then(|default| HostRules::new(Policy::default()).with_default(default));
        for (pattern, config) in self.hosts {
            rules = rules.and_then(|rules| {
                let policy = config
                    .into_policy()
                    .map_err(|error| PolicyError::in_rule(&pattern, error))?;
                rules.with(&pattern, policy)
            });
        }
        let mut builder = ThrottleBuilder::default().rules_result(rules);
        if let Some(max) = self.max_lanes {
            builder = builder.max_lanes(max);
        }
        if let Some(max) = self.global_concurrency {
            builder = builder.global_concurrency(max);
        }
        if let Some(store) = self.store {
            builder = match store.into_store() {
                #[cfg(feature = "redis")]
                Ok(store) => builder.store(store),
                Err(error) => builder.refuse(error),
            };
        }
        builder
    }
}

#[cfg(test)]
mod tests;
