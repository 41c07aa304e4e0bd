//! What a lane is allowed to do: [`Rate`], [`Policy`] and the [`HostRules`] that pick a policy
//! for a host.
//!
//! Policies are plain values, validated once when the [`Throttle`](crate::Throttle) is built:
//! every nonsense setting (a zero rate, a zero concurrency, a burst that overflows) is refused
//! with a [`PolicyError`] that names the field, never discovered later as a panic or a hang.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::assess::Classifier;
use crate::breaker::{BreakerConfig, BreakerConfigError};
use crate::cost::CostModel;
use crate::limiter::{Dimension, Limit};
use crate::retry::RetryPolicy;

/// The concurrency cap of the default policy: requests in flight at once to one lane.
///
/// Browsers open at most 6 connections per host over HTTP/1.1; 8 keeps a little headroom for
/// HTTP/2 multiplexing while staying polite to a host nobody configured.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// Why a policy or rate was refused. The message names the field and the way out.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// `breaker`: an invalid circuit-breaker setting.
    #[error("{0}")]
    Breaker(#[from] BreakerConfigError),
    /// `rate`: the count of a rate is zero.
    #[error("rate: the count must be at least 1 per period (got 0); remove the rate for no limit")]
    ZeroRate,
    /// `rate`: the period of a rate is zero.
    #[error("rate: the period must be longer than zero")]
    ZeroPeriod,
    /// `rate`: more than one unit per nanosecond, which the limiter cannot represent.
    #[error("rate: {count} per {period:?} is more than one per nanosecond; use a longer period or no rate")]
    TooFast {
        /// The count asked for.
        count: u64,
        /// The period asked for.
        period: Duration,
    },
    /// `burst`: zero.
    #[error("burst: must be at least 1 (got 0)")]
    ZeroBurst,
    /// `burst`: so large that burst × interval overflows the limiter's 64-bit nanoseconds.
    #[error("burst: {burst} units of {interval:?} each overflow the limiter (about 584 years); use a smaller burst")]
    BurstOverflow {
        /// The burst asked for.
        burst: u64,
        /// The emission interval of the rate.
        interval: Duration,
    },
    /// `concurrency`: zero would never let a request through.
    #[error("concurrency: must be at least 1 (got 0); remove the cap for no limit")]
    ZeroConcurrency,
    /// `max_lanes`: zero.
    #[error("max_lanes: must be at least 1 (got 0)")]
    ZeroMaxLanes,
    /// A host rule that is not a host name, a `host:port` or a `*.suffix`.
    #[error("host rule {pattern:?}: {reason}")]
    BadHostRule {
        /// The rule as written.
        pattern: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A rate written as text that does not parse.
    #[error("rate {text:?}: expected COUNT/PERIOD such as \"10/s\", \"600/min\", \"5000/h\" or \"100/10s\"")]
    BadRateText {
        /// The text as written.
        text: String,
    },
}

/// A rate: `count` units per `period`, of which `burst` may go at once.
///
/// ```
/// use std::time::Duration;
/// use reqwest_throttle::Rate;
///
/// let rate = Rate::per_minute(600).burst(10);
/// assert_eq!(rate.interval(), Duration::from_millis(100));
/// assert_eq!(rate.burst_size(), 10);
/// assert_eq!("5000/h".parse::<Rate>().unwrap(), Rate::per_hour(5_000));
/// assert!(Rate::per_second(0).validate().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    count: u64,
    period: Duration,
    burst: Option<u64>,
}

impl Rate {
    /// `count` units per `period`; the burst defaults to `count` (the whole period's allowance).
    pub const fn new(count: u64, period: Duration) -> Rate {
        Rate {
            count,
            period,
            burst: None,
        }
    }

    /// `count` units per second.
    pub const fn per_second(count: u64) -> Rate {
        Rate::new(count, Duration::from_secs(1))
    }

    /// `count` units per minute.
    pub const fn per_minute(count: u64) -> Rate {
        Rate::new(count, Duration::from_secs(60))
    }

    /// `count` units per hour.
    pub const fn per_hour(count: u64) -> Rate {
        Rate::new(count, Duration::from_secs(3_600))
    }

    /// At most `burst` units at once (default: the whole `count`).
    #[must_use]
    pub const fn burst(mut self, burst: u64) -> Rate {
        self.burst = Some(burst);
        self
    }

    /// Units per period.
    pub const fn count(&self) -> u64 {
        self.count
    }

    /// The period.
    pub const fn period(&self) -> Duration {
        self.period
    }

    /// Units that may go at once.
    pub const fn burst_size(&self) -> u64 {
        match self.burst {
            Some(burst) => burst,
            None => self.count,
        }
    }

    /// How long one unit occupies the limiter: `period / count` (zero for an invalid rate).
    pub fn interval(&self) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let nanos = self.period.as_nanos() / u128::from(self.count);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Units per second, for display and stats.
    pub fn per_second_f64(&self) -> f64 {
        if self.period.is_zero() {
            return f64::INFINITY;
        }
        self.count as f64 / self.period.as_secs_f64()
    }

    /// Checks the rate can be represented exactly by the limiter.
    pub fn validate(&self) -> Result<(), PolicyError> {
        self.limit().map(|_| ())
    }

    /// The limiter's view of this rate, validated.
    pub fn limit(&self) -> Result<Limit, PolicyError> {
        if self.count == 0 {
            return Err(PolicyError::ZeroRate);
        }
        if self.period.is_zero() {
            return Err(PolicyError::ZeroPeriod);
        }
        let interval = self.interval();
        if interval.is_zero() {
            return Err(PolicyError::TooFast {
                count: self.count,
                period: self.period,
            });
        }
        let burst = self.burst_size();
        if burst == 0 {
            return Err(PolicyError::ZeroBurst);
        }
        let tolerance = interval.as_nanos().checked_mul(u128::from(burst));
        if tolerance.is_none_or(|nanos| nanos > u128::from(u64::MAX)) {
            return Err(PolicyError::BurstOverflow { burst, interval });
        }
        Ok(Limit { interval, burst })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{:?}", self.count, self.period)?;
        if let Some(burst) = self.burst {
            write!(f, " (burst {burst})")?;
        }
        Ok(())
    }
}

impl FromStr for Rate {
    type Err = PolicyError;

    /// Parses `COUNT/PERIOD`: `10/s`, `600/min`, `5000/h`, `100/10s`, `1/500ms`, `86400/d`.
    fn from_str(text: &str) -> Result<Rate, PolicyError> {
        let bad = || PolicyError::BadRateText {
            text: text.to_owned(),
        };
        let (count, period) = text.trim().split_once('/').ok_or_else(bad)?;
        let count: u64 = count.trim().parse().map_err(|_| bad())?;
        let period = period.trim();
        let split = period.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (multiplier, unit) = period.split_at(split);
        let multiplier: u32 = if multiplier.is_empty() {
            1
        } else {
            multiplier.parse().map_err(|_| bad())?
        };
        let unit = match unit {
            "ms" => Duration::from_millis(1),
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3_600),
            "d" | "day" => Duration::from_secs(86_400),
            _ => return Err(bad()),
        };
        let period = unit.checked_mul(multiplier).ok_or_else(bad)?;
        let rate = Rate::new(count, period);
        rate.validate()?;
        Ok(rate)
    }
}

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
pub struct Policy {
    /// The request rate (the `Requests` dimension).
    pub(crate) rate: Option<Rate>,
    /// Rates of the token dimensions: tokens, input tokens, output tokens.
    pub(crate) token_rates: [Option<Rate>; 3],
    pub(crate) cost_model: Option<CostModelHandle>,
    pub(crate) classifier: Option<ClassifierHandle>,
    pub(crate) concurrency: Option<usize>,
    pub(crate) max_wait: Option<Duration>,
    pub(crate) retry: RetryPolicy,
    pub(crate) breaker: Option<BreakerConfig>,
}

impl Default for Policy {
    /// The polite default for a host nobody configured: no proactive rate cap (the server's own
    /// signals pace it: Retry-After pauses the lane, rate-limit headers slow it down before it is
    /// refused), at most [`DEFAULT_CONCURRENCY`] requests in flight, no limit on how long a
    /// request waits for its turn (every wait is still finite), [`RetryPolicy::default`] (three
    /// safe retries with jittered backoff inside a 20 % retry budget) and
    /// [`BreakerConfig::default`] (opens after 5 consecutive failures).
    fn default() -> Policy {
        Policy {
            rate: None,
            token_rates: [None; 3],
            cost_model: None,
            classifier: None,
            concurrency: Some(DEFAULT_CONCURRENCY),
            max_wait: None,
            retry: RetryPolicy::default(),
            breaker: Some(BreakerConfig::default()),
        }
    }
}

impl Policy {
    /// The default policy (see [`Policy::default`]), to build on.
    pub fn new() -> Policy {
        Policy::default()
    }

    /// Limits the lane to `rate` requests.
    #[must_use]
    pub fn rate(mut self, rate: Rate) -> Policy {
        self.rate = Some(rate);
        self
    }

    /// Limits the lane to `rate` requests (the same as [`rate`](Self::rate), reads better beside
    /// [`tokens`](Self::tokens)).
    #[must_use]
    pub fn requests(self, rate: Rate) -> Policy {
        self.rate(rate)
    }

    /// Limits `dimension` to `rate` units. A cost larger than a token dimension's burst is
    /// refused with [`Error::CostTooLarge`](crate::Error::CostTooLarge): the server would refuse it too.
    #[must_use]
    pub fn limit(mut self, dimension: Dimension, rate: Rate) -> Policy {
        match dimension {
            Dimension::Requests => self.rate = Some(rate),
            Dimension::Tokens => self.token_rates[0] = Some(rate),
            Dimension::InputTokens => self.token_rates[1] = Some(rate),
            Dimension::OutputTokens => self.token_rates[2] = Some(rate),
        }
        self
    }

    /// Limits the lane to `rate` tokens (input and output together, OpenAI's TPM).
    #[must_use]
    pub fn tokens(self, rate: Rate) -> Policy {
        self.limit(Dimension::Tokens, rate)
    }

    /// Limits the lane to `rate` input tokens (Anthropic's ITPM).
    #[must_use]
    pub fn input_tokens(self, rate: Rate) -> Policy {
        self.limit(Dimension::InputTokens, rate)
    }

    /// Limits the lane to `rate` output tokens (Anthropic's OTPM).
    #[must_use]
    pub fn output_tokens(self, rate: Rate) -> Policy {
        self.limit(Dimension::OutputTokens, rate)
    }

    /// The rate of `dimension`, if limited.
    pub fn configured_limit(&self, dimension: Dimension) -> Option<Rate> {
        match dimension {
            Dimension::Requests => self.rate,
            Dimension::Tokens => self.token_rates[0],
            Dimension::InputTokens => self.token_rates[1],
            Dimension::OutputTokens => self.token_rates[2],
        }
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

    /// Removes the proactive rate limit.
    #[must_use]
    pub fn no_rate(mut self) -> Policy {
        self.rate = None;
        self
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
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The breaker configuration, if the lane has a breaker.
    pub fn breaker_config(&self) -> Option<&BreakerConfig> {
        self.breaker.as_ref()
    }

    /// The configured rate, if any.
    pub fn configured_rate(&self) -> Option<Rate> {
        self.rate
    }

    /// The configured concurrency cap, if any.
    pub fn configured_concurrency(&self) -> Option<usize> {
        self.concurrency
    }

    /// The configured maximum wait, if any.
    pub fn configured_max_wait(&self) -> Option<Duration> {
        self.max_wait
    }

    /// Checks every field; the error names the first one that is wrong.
    pub fn validate(&self) -> Result<(), PolicyError> {
        for rate in self.rate.iter().chain(self.token_rates.iter().flatten()) {
            rate.validate()?;
        }
        if self.concurrency == Some(0) {
            return Err(PolicyError::ZeroConcurrency);
        }
        if let Some(breaker) = &self.breaker {
            breaker.validate()?;
        }
        Ok(())
    }
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

/// Which policy applies to which host: exact hosts, `host:port`, `*.suffix` patterns and a default.
///
/// Lookup order: `host:port` exact, then host exact, then the longest matching `*.suffix`, then the
/// default. `*.example.com` matches `api.example.com` and `a.b.example.com` but not `example.com`
/// itself (as for TLS wildcards); add both rules to cover both. Hosts compare case-insensitively
/// and without a trailing dot.
///
/// ```
/// use reqwest_throttle::{HostRules, Policy, Rate};
///
/// let rules = HostRules::new(Policy::new())
///     .with("api.github.com", Policy::new().rate(Rate::per_hour(5_000)))?
///     .with("*.example.com", Policy::new().rate(Rate::per_second(5)))?;
/// assert_eq!(rules.policy_for("API.GitHub.com.", None).configured_rate(), Some(Rate::per_hour(5_000)));
/// assert_eq!(rules.policy_for("a.b.example.com", None).configured_rate(), Some(Rate::per_second(5)));
/// assert_eq!(rules.policy_for("example.com", None).configured_rate(), None);
/// # Ok::<(), reqwest_throttle::PolicyError>(())
/// ```
#[derive(Clone, Debug)]
pub struct HostRules {
    exact: HashMap<String, Arc<Policy>>,
    /// `(".example.com", policy)`, longest suffix first.
    suffixes: Vec<(String, Arc<Policy>)>,
    default: Arc<Policy>,
    /// Whether any exact rule names a port (saves a formatted lookup per request otherwise).
    has_port_rules: bool,
}

impl Default for HostRules {
    fn default() -> Self {
        HostRules::new(Policy::default())
    }
}

fn normalize_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

impl HostRules {
    /// Rules with only a default policy.
    pub fn new(default: Policy) -> HostRules {
        HostRules {
            exact: HashMap::new(),
            suffixes: Vec::new(),
            default: Arc::new(default),
            has_port_rules: false,
        }
    }

    /// Adds a rule: `pattern` is a host (`api.github.com`), a host and port (`127.0.0.1:8080`) or
    /// a wildcard (`*.example.com`). A later rule for the same pattern replaces the earlier one.
    pub fn with(mut self, pattern: &str, policy: Policy) -> Result<HostRules, PolicyError> {
        policy.validate()?;
        let bad = |reason| PolicyError::BadHostRule {
            pattern: pattern.to_owned(),
            reason,
        };
        let normalized = normalize_host(pattern.trim());
        if normalized.is_empty() {
            return Err(bad("empty; use the default policy for every host"));
        }
        if normalized.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(bad("a host pattern has no spaces, scheme or path"));
        }
        let policy = Arc::new(policy);
        if let Some(suffix) = normalized.strip_prefix("*.") {
            if suffix.is_empty() || suffix.contains('*') {
                return Err(bad("a wildcard is `*.` followed by a domain"));
            }
            let suffix = format!(".{suffix}");
            self.suffixes.retain(|(existing, _)| *existing != suffix);
            self.suffixes.push((suffix, policy));
            self.suffixes
                .sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        } else if normalized.contains('*') {
            return Err(bad("`*` is only allowed as a leading `*.`"));
        } else {
            self.has_port_rules |= normalized.contains(':');
            self.exact.insert(normalized, policy);
        }
        Ok(self)
    }

    /// Replaces the default policy.
    pub fn with_default(mut self, policy: Policy) -> Result<HostRules, PolicyError> {
        policy.validate()?;
        self.default = Arc::new(policy);
        Ok(self)
    }

    /// The policy for `host` (and `port`, when the URL has one).
    pub fn policy_for(&self, host: &str, port: Option<u16>) -> &Arc<Policy> {
        if self.exact.is_empty() && self.suffixes.is_empty() {
            return &self.default;
        }
        // URL hosts are already lower-case; only a trailing dot or a hand-made host needs work.
        let host: std::borrow::Cow<'_, str> =
            if host.ends_with('.') || host.bytes().any(|b| b.is_ascii_uppercase()) {
                normalize_host(host).into()
            } else {
                host.into()
            };
        if let Some(port) = port.filter(|_| self.has_port_rules) {
            if let Some(policy) = self.exact.get(&format!("{host}:{port}")) {
                return policy;
            }
        }
        if let Some(policy) = self.exact.get(host.as_ref()) {
            return policy;
        }
        self.suffixes
            .iter()
            .find(|(suffix, _)| host.ends_with(suffix.as_str()))
            .map_or(&self.default, |(_, policy)| policy)
    }

    /// The default policy.
    pub fn default_policy(&self) -> &Arc<Policy> {
        &self.default
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_interval_and_default_burst() {
        let rate = Rate::per_second(4);
        assert_eq!(rate.interval(), Duration::from_millis(250));
        assert_eq!(rate.burst_size(), 4);
        assert_eq!(rate.limit().unwrap().burst, 4);
    }

    #[test]
    fn every_invalid_rate_names_its_field() {
        let cases = [
            (Rate::per_second(0), "rate:"),
            (Rate::new(5, Duration::ZERO), "rate:"),
            (Rate::new(2_000_000_000, Duration::from_secs(1)), "rate:"),
            (Rate::per_second(1).burst(0), "burst:"),
            (Rate::per_hour(1).burst(u64::MAX), "burst:"),
        ];
        for (rate, field) in cases {
            let message = rate.validate().unwrap_err().to_string();
            assert!(message.starts_with(field), "{rate}: {message}");
        }
    }

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

    #[test]
    fn rates_parse_from_text() {
        assert_eq!("10/s".parse::<Rate>(), Ok(Rate::per_second(10)));
        assert_eq!(" 600 / min ".parse::<Rate>(), Ok(Rate::per_minute(600)));
        assert_eq!(
            "100/10s".parse::<Rate>(),
            Ok(Rate::new(100, Duration::from_secs(10)))
        );
        assert_eq!(
            "1/500ms".parse::<Rate>(),
            Ok(Rate::new(1, Duration::from_millis(500)))
        );
        for bad in [
            "",
            "10",
            "10/",
            "/s",
            "-1/s",
            "10/fortnight",
            "1.5/s",
            "0/s",
            "10/0s",
        ] {
            assert!(bad.parse::<Rate>().is_err(), "{bad:?} parsed");
        }
        let message = "10/x".parse::<Rate>().unwrap_err().to_string();
        assert!(message.contains("10/x"), "{message}");
    }

    #[test]
    fn host_rules_prefer_port_then_exact_then_longest_suffix() {
        let tagged = |n| Policy::new().concurrency(n);
        let rules = HostRules::new(tagged(1))
            .with("*.example.com", tagged(2))
            .unwrap()
            .with("*.api.example.com", tagged(3))
            .unwrap()
            .with("v1.api.example.com", tagged(4))
            .unwrap()
            .with("localhost:8080", tagged(5))
            .unwrap();
        let cap = |host, port| rules.policy_for(host, port).configured_concurrency();
        assert_eq!(cap("v1.api.example.com", None), Some(4));
        assert_eq!(cap("v2.api.example.com", None), Some(3));
        assert_eq!(cap("www.example.com", None), Some(2));
        assert_eq!(cap("example.com", None), Some(1));
        assert_eq!(cap("notexample.com", None), Some(1));
        assert_eq!(cap("localhost", Some(8080)), Some(5));
        assert_eq!(cap("localhost", Some(9090)), Some(1));
    }

    #[test]
    fn bad_host_rules_are_refused() {
        for pattern in ["", "*.", "a.*.com", "https://x.com", "x y", "**.com"] {
            let err = HostRules::default()
                .with(pattern, Policy::new())
                .unwrap_err();
            assert!(err.to_string().contains("host rule"), "{pattern:?}: {err}");
        }
        let err = HostRules::default()
            .with("ok.com", Policy::new().concurrency(0))
            .unwrap_err();
        assert_eq!(err, PolicyError::ZeroConcurrency);
    }
}
