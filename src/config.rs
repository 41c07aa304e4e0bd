//! Throttle configuration from a file or the environment (`serde` feature).
//!
//! Any serde format works (TOML, JSON, YAML); durations are written as `"30s"`, `"1m30s"`,
//! `"250ms"` or a number of seconds, rates as `"600/min"`, `"5000/h"`, `"100/10s"`. Each value
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
//!     rate = "2/s"
//!     retry = { max_retries = 5, base = "100ms", cap = "10s", jitter = "equal" }
//!     breaker = { consecutive_failures = 3, open_base = "2s", open_max = "1m" }
//! "#).unwrap();
//! let throttle = config.into_builder().build().unwrap();
//! # drop(throttle);
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
use crate::policy::{
    validate_retry_budget, HostRules, Policy, PolicyError, Rate, RetryBudgetNames,
};
use crate::retry::{
    Backoff, Jitter, RetryBudgetConfig, RetryPolicy, DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_CAP,
};
use crate::signals::parse_go_duration;
use crate::throttle::ThrottleBuilder;

/// A duration written as `"30s"`, `"1m30s"`, `"250ms"` or a number of seconds.
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
            DurationText::Text(text) => parse_go_duration(text.trim())
                .map(ConfigDuration)
                .ok_or_else(|| {
                    format!("{text:?} is not a duration such as \"30s\", \"1m30s\" or \"250ms\"")
                }),
        }
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Rate, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
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
/// [`Policy::default`], or of the `preset`'s policy.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PolicyConfig {
    /// The LLM preset to start from, `"openai"` or `"anthropic"` (`llm` feature): it brings the
    /// cost model a token limit needs.
    pub preset: Option<Preset>,
    /// Requests rate, `"600/min"`.
    pub rate: Option<Rate>,
    /// Burst of the requests rate (default: its whole count).
    pub burst: Option<u64>,
    /// Tokens rate (LLM TPM), `"200000/min"`; needs a `preset`.
    pub tokens: Option<Rate>,
    /// Input tokens rate; needs a `preset`.
    pub input_tokens: Option<Rate>,
    /// Output tokens rate; needs a `preset`.
    pub output_tokens: Option<Rate>,
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
}

impl PolicyConfig {
    /// The policy this describes, validated; the error names the field.
    pub fn into_policy(self) -> Result<Policy, PolicyError> {
        let mut policy = match self.preset {
            Some(preset) => preset.policy()?,
            None => Policy::new(),
        };
        match (self.rate, self.burst) {
            (Some(rate), Some(burst)) => policy = policy.rate(rate.burst(burst)),
            (Some(rate), None) => policy = policy.rate(rate),
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
        if let Some(rate) = self.tokens {
            policy = policy.tokens(rate);
        }
        if let Some(rate) = self.input_tokens {
            policy = policy.input_tokens(rate);
        }
        if let Some(rate) = self.output_tokens {
            policy = policy.output_tokens(rate);
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
        policy.validate()?;
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
        builder
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_round_trips_into_policies() {
        let config: ThrottleConfig = toml::from_str(
            r#"
            [default]
            unlimited_concurrency = true
            max_wait = 2.5

            [hosts."api.github.com"]
            rate = "5000/h"
            burst = 100
            breaker = { enabled = false }
            "#,
        )
        .unwrap();
        let github = config.hosts["api.github.com"]
            .clone()
            .into_policy()
            .unwrap();
        assert_eq!(
            github.configured_rate(),
            Some(Rate::per_hour(5_000).burst(100))
        );
        assert!(github.configured_breaker().is_none());
        let default = config.default.clone().unwrap().into_policy().unwrap();
        assert_eq!(default.configured_concurrency(), None);
        assert_eq!(
            default.configured_max_wait(),
            Some(Duration::from_millis(2_500))
        );
        assert!(config.into_builder().build().is_ok());
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases = [
            (
                r#"[hosts."a.com"]
                rate = "ten per second""#,
                "rate",
            ),
            (
                r#"[hosts."a.com"]
                max_wait = "soon""#,
                "max_wait",
            ),
            (
                r#"[hosts."a.com"]
                concurency = 3"#,
                "concurency",
            ),
            (
                r#"[default]
                rate = "0/s""#,
                "rate",
            ),
        ];
        for (text, field) in cases {
            let err = toml::from_str::<ThrottleConfig>(text)
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{text}: {err}");
        }
        let zero: ThrottleConfig = toml::from_str(
            r#"[hosts."a.com"]
               concurrency = 0"#,
        )
        .unwrap();
        let err = zero.into_builder().build().unwrap_err().to_string();
        assert!(err.contains("concurrency"), "{err}");
    }

    #[test]
    fn a_rollout_share_is_read_and_checked() {
        let config: ThrottleConfig = toml::from_str(
            r#"
            [hosts."api.example.com"]
            rate = "10/s"
            enforce_percent = 30

            [hosts."new.example.com"]
            enforce_percent = 0
            "#,
        )
        .unwrap();
        let partial = config.hosts["api.example.com"].clone().into_policy();
        assert_eq!(partial.unwrap().configured_enforce_percent(), 30.0);
        let throttle = config.into_builder().build().unwrap();
        assert_eq!(throttle.rollout("new.example.com").enforced_percent(), 0.0);
        assert_eq!(throttle.rollout("elsewhere.test").enforced_percent(), 100.0);
        let bad: ThrottleConfig = toml::from_str(
            r#"[hosts."a.com"]
               enforce_percent = 150"#,
        )
        .unwrap();
        let err = bad.into_builder().build().unwrap_err().to_string();
        assert!(
            err.contains("enforce_percent") && err.contains("a.com"),
            "{err}"
        );
    }

    /// Without a preset's cost model no request costs a token, so a token limit would never
    /// bind: it is refused, and the error names its host rule.
    #[test]
    fn a_token_limit_without_a_preset_is_refused_naming_its_rule() {
        for field in ["tokens", "input_tokens", "output_tokens"] {
            let config: ThrottleConfig = toml::from_str(&format!(
                r#"
                [hosts."api.github.com"]
                rate = "5000/h"

                [hosts."llm.example.com"]
                {field} = "10/min"
                max_wait = "1s"
                "#
            ))
            .unwrap();
            let err = config.into_builder().build().unwrap_err().to_string();
            let prefix =
                format!("host rule \"llm.example.com\": {field}: a token limit needs a cost model");
            assert!(err.starts_with(&prefix), "{err}");
            assert!(err.contains("preset"), "{err}");
        }
    }

    #[test]
    fn errors_name_the_host_rule_among_many() {
        let mut text = String::new();
        for n in 0..10 {
            let concurrency = if n == 7 { 0 } else { n + 1 };
            text.push_str(&format!(
                "[hosts.\"h{n}.example.com\"]\nconcurrency = {concurrency}\n"
            ));
        }
        let config: ThrottleConfig = toml::from_str(&text).unwrap();
        let err = config.into_builder().build().unwrap_err().to_string();
        assert!(
            err.starts_with("host rule \"h7.example.com\": concurrency: must be at least 1"),
            "{err}"
        );
        let unknown = toml::from_str::<ThrottleConfig>(
            r#"[hosts."a.com"]
               preset = "gemini""#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            unknown.contains("gemini") && unknown.contains("openai"),
            "{unknown}"
        );
    }

    /// Absent settings keep the values of the policy they change, rather than defaults of their
    /// own that would override a preset's.
    #[test]
    fn absent_settings_keep_the_values_of_the_policy_they_change() {
        let config: PolicyConfig = toml::from_str(r#"retry = { jitter = "none" }"#).unwrap();
        let policy = config.into_policy().unwrap();
        let (base, cap, _) = Backoff::default().exponential_settings().unwrap();
        assert_eq!(
            policy
                .configured_retry()
                .configured_backoff()
                .exponential_settings(),
            Some((base, cap, Jitter::None))
        );
        let breaker: PolicyConfig =
            toml::from_str(r#"breaker = { consecutive_failures = 2 }"#).unwrap();
        let policy = breaker.into_policy().unwrap();
        assert_eq!(
            policy.configured_breaker(),
            Some(&BreakerConfig::default().consecutive_failures(2))
        );
    }

    /// The real types read themselves, with the same rules and defaults as a file's policy.
    #[test]
    fn the_real_types_deserialize_themselves() {
        #[derive(Deserialize)]
        struct Mine {
            policy: Policy,
            retry: RetryPolicy,
            breaker: BreakerConfig,
        }
        let mine: Mine = toml::from_str(
            r#"
            policy = { rate = "10/s", concurrency = 2 }
            retry = { max_retries = 7 }
            breaker = { consecutive_failures = 9 }
            "#,
        )
        .unwrap();
        assert_eq!(mine.policy.configured_rate(), Some(Rate::per_second(10)));
        assert_eq!(mine.policy.configured_concurrency(), Some(2));
        assert_eq!(mine.retry.configured_max_retries(), 7);
        assert_eq!(
            mine.breaker,
            BreakerConfig::default().consecutive_failures(9)
        );
        let invalid = toml::from_str::<Mine>(
            r#"
            policy = { tokens = "10/min" }
            retry = {}
            breaker = {}
            "#,
        );
        let err = invalid.err().unwrap().to_string();
        assert!(
            err.contains("tokens: a token limit needs a cost model"),
            "{err}"
        );
    }

    #[cfg(feature = "llm")]
    #[test]
    fn a_preset_brings_its_cost_model_and_its_retry_schedule() {
        let config: ThrottleConfig = toml::from_str(
            r#"
            [hosts."api.openai.com"]
            preset = "openai"
            rate = "500/min"
            tokens = "200000/min"
            retry = { jitter = "equal" }

            [hosts."api.anthropic.com"]
            preset = "anthropic"
            input_tokens = "40000/min"
            output_tokens = "8000/min"
            "#,
        )
        .unwrap();
        let openai = config.hosts["api.openai.com"]
            .clone()
            .into_policy()
            .unwrap();
        assert!(openai.configured_cost_model().is_some());
        assert_eq!(
            openai.configured_concurrency(),
            Some(crate::llm::LLM_CONCURRENCY)
        );
        // The preset's own schedule (500 ms to 8 s), only its jitter changed.
        let (base, cap, _) = crate::llm::llm_retry_policy()
            .configured_backoff()
            .exponential_settings()
            .unwrap();
        assert_eq!(
            openai
                .configured_retry()
                .configured_backoff()
                .exponential_settings(),
            Some((base, cap, Jitter::Equal))
        );
        let anthropic = config.hosts["api.anthropic.com"]
            .clone()
            .into_policy()
            .unwrap();
        assert!(anthropic.configured_cost_model().is_some());
        assert!(config.into_builder().build().is_ok());
    }
}
