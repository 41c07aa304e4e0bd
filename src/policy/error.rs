//! [`PolicyError`]: why a configuration was refused, with the field named and the way out.

use std::time::Duration;

use crate::breaker::BreakerConfigError;
use crate::error::for_people;
use crate::limiter::Dimension;

/// Why a policy or rate was refused. The message names the field and the way out.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// `store`: the Redis URL could not be used (the URL itself is not repeated: it may hold a
    /// password).
    #[error(
        "store: the Redis URL is not valid ({reason}); expected redis://host:port/db or rediss://…"
    )]
    StoreUrl {
        /// What the Redis client said of it.
        reason: String,
    },
    /// `store`: a setting of the `RedisStore` (feature `redis`) that cannot work.
    #[error("store {field}: {expected} (got {value}); {fix}")]
    StoreSetting {
        /// The setting, as the store's setter names it (`concurrency`, `lease`, …).
        field: &'static str,
        /// The value given, written for people.
        value: String,
        /// What the setting must be.
        expected: &'static str,
        /// Why, or what to write instead.
        fix: &'static str,
    },
    /// `breaker`: an invalid circuit-breaker setting.
    #[error("{0}")]
    Breaker(#[from] BreakerConfigError),
    /// `rate` (or `tokens`, `input_tokens`, `output_tokens`: the limit's field): the count of
    /// a rate is zero.
    #[error("{field}: the count must be at least 1 per period (got 0); remove it for no limit")]
    ZeroRate {
        /// The limit's field: `rate`, `tokens`, `input_tokens` or `output_tokens`.
        field: &'static str,
    },
    /// `rate` (or a token limit's field): the period of a rate is zero.
    #[error("{field}: the period must be longer than zero")]
    ZeroPeriod {
        /// The limit's field: `rate`, `tokens`, `input_tokens` or `output_tokens`.
        field: &'static str,
    },
    /// `rate` (or a token limit's field): one unit takes longer than the limiter's 64-bit
    /// nanoseconds (about 584 years).
    #[error(
        "{field}: {count} per {} leaves more than 584 years between units; use a shorter period",
        for_people(period)
    )]
    TooSlow {
        /// The limit's field: `rate`, `tokens`, `input_tokens` or `output_tokens`.
        field: &'static str,
        /// The count asked for.
        count: u64,
        /// The period asked for.
        period: Duration,
    },
    /// `rate` (or a token limit's field): more than one unit per nanosecond, which the limiter
    /// cannot represent.
    #[error(
        "{field}: {count} per {} is more than one per nanosecond; use a longer period or no limit",
        for_people(period)
    )]
    TooFast {
        /// The limit's field: `rate`, `tokens`, `input_tokens` or `output_tokens`.
        field: &'static str,
        /// The count asked for.
        count: u64,
        /// The period asked for.
        period: Duration,
    },
    /// `burst` (of the requests rate, or of a token limit): zero.
    #[error("{}: must be at least 1 (got 0)", burst_field(field))]
    ZeroBurst {
        /// The limit's field: `rate`, `tokens`, `input_tokens` or `output_tokens`.
        field: &'static str,
    },
    /// `burst` (of the requests rate, or of a token limit): so large that burst × interval
    /// overflows the limiter's 64-bit nanoseconds.
    #[error(
        "{}: {burst} units of {} each overflow the limiter (about 584 years); use a smaller burst",
        burst_field(field),
        for_people(interval)
    )]
    BurstOverflow {
        /// The limit's field: `rate`, `tokens`, `input_tokens` or `output_tokens`.
        field: &'static str,
        /// The burst asked for.
        burst: u64,
        /// The emission interval of the rate.
        interval: Duration,
    },
    /// `concurrency`: zero would never let a request through.
    #[error("concurrency: must be at least 1 (got 0); remove the cap for no limit")]
    ZeroConcurrency,
    /// `global_concurrency`: zero would never let a request through.
    #[error("global_concurrency: must be at least 1 (got 0); leave it unset for no global cap")]
    ZeroGlobalConcurrency,
    /// `max_lanes`: zero.
    #[error("max_lanes: must be at least 1 (got 0)")]
    ZeroMaxLanes,
    /// `attempt_timeout`: zero would fail every attempt before it is sent.
    #[error("attempt_timeout: must be longer than zero; remove it to leave attempts unbounded")]
    ZeroAttemptTimeout,
    /// A number of the retry budget that is negative, NaN or infinite (which the budget would
    /// otherwise read as zero, or as no budget at all).
    #[error("{field}: must be a finite number >= 0 (got {value}); the default is {default}")]
    RetryBudgetNumber {
        /// The field, as the API or the configuration file names it.
        field: &'static str,
        /// The value given.
        value: f64,
        /// The default value, a sensible starting point.
        default: f64,
    },
    /// `ttl` of the retry budget: zero.
    #[error("retry budget ttl: must be longer than zero; the default is 10s")]
    ZeroRetryBudgetTtl,
    /// A configuration value that only means something beside another one that is missing or
    /// contradicts it (`burst` without `rate`, `concurrency` with `unlimited_concurrency`).
    #[error("{field}: {reason}")]
    Inconsistent {
        /// The field, as the configuration file names it.
        field: &'static str,
        /// What is wrong and how to fix it.
        reason: &'static str,
    },
    /// A host rule that is not a host name, a `host:port` or a `*.suffix`, or that could never
    /// match a request's URL.
    #[error("host rule {pattern:?}: {reason}")]
    BadHostRule {
        /// The rule as written.
        pattern: String,
        /// What is wrong with it, and what to write instead.
        reason: String,
    },
    /// An invalid policy, with the host rule it was given for (`host rule "api.example.com"` or
    /// `the default policy`).
    #[error("{rule}: {error}")]
    InRule {
        /// Which rule: `host rule "api.example.com"` or `the default policy`.
        rule: String,
        /// What is wrong with its policy.
        error: Box<PolicyError>,
    },
    /// A token limit on a policy without a cost model: no request would ever cost a token, so
    /// the limit would never bind.
    #[error("{}: a token limit needs a cost model that prices each request in tokens: start from Policy::openai() or Policy::anthropic() (`preset = \"openai\"` in a file) or set Policy::cost_model; without one no request costs a token and the limit never binds", limit_field(*dimension))]
    TokensWithoutCostModel {
        /// The token dimension that is limited.
        dimension: Dimension,
    },
    /// `enforce_percent`: not a percentage from 0 to 100.
    #[error("enforce_percent: must be a number from 0 (shadow mode: nothing enforced) to 100 (everything enforced), got {percent}")]
    EnforcePercent {
        /// The value given.
        percent: f64,
    },
    /// A rate written as text that does not parse.
    #[error("rate {text:?}: expected COUNT/PERIOD such as \"10/s\", \"600/min\", \"5000/h\", \"10000/d\" or \"100/10s\"")]
    BadRateText {
        /// The text as written.
        text: String,
    },
    /// Two limits of one dimension with the same period (see [`Rates`](crate::Rates)).
    #[error("{field}: two limits per {} ({} and {}); keep one", for_people(period), counts[0], counts[1])]
    SamePeriod {
        /// The dimension's field: `rate`, `tokens`, `input_tokens` or `output_tokens`.
        field: &'static str,
        /// The period they share.
        period: Duration,
        /// Their counts.
        counts: [u64; 2],
    },
    /// A longer limit of one dimension that allows no more than a shorter one (its count, or
    /// its burst when larger), which would then never bind.
    #[error("{}", longer_allows_less(field, *shorter, *longer))]
    LongerAllowsLess {
        /// The dimension's field: `rate`, `tokens`, `input_tokens` or `output_tokens`.
        field: &'static str,
        /// The shorter limit: its count, its burst and its period.
        shorter: (u64, u64, Duration),
        /// The longer limit, which allows no more: its count and its period.
        longer: (u64, Duration),
    },
    /// A burst on a limit longer than the dimension's rate: a longer limit is a rolling window,
    /// which has none.
    #[error("{field}: a burst applies to the shortest limit only; the {count} per {} limit is a rolling window (at most {count} in any {}): remove its burst", for_people(period), for_people(period))]
    BurstOnWindow {
        /// The dimension's field: `rate`, `tokens`, `input_tokens` or `output_tokens`.
        field: &'static str,
        /// The longer limit's count.
        count: u64,
        /// The longer limit's period.
        period: Duration,
    },
    /// Policies per model ([`Policy::model`](crate::Policy::model)) on a policy without a cost
    /// model: no lane would ever be a model's.
    #[error("models: a policy per model needs a cost model that gives each model its own lane: start the host's policy from Policy::openai() or Policy::anthropic() (`preset = \"openai\"` in a file); without one no lane is ever a model's")]
    ModelsWithoutCostModel,
    /// A model name no request can send.
    #[error("model {model:?}: a model is named as requests name it in their `model` (such as \"gpt-4o-mini\"), not empty or \"-\"")]
    ModelName {
        /// The name as given.
        model: String,
    },
    /// Two model names that name the same lanes (a lane's name writes `/`, spaces and other
    /// characters outside printable ASCII as `_`).
    #[error("models {first:?} and {second:?} both name the lanes of model {lane:?} (a lane's name writes `/`, spaces and non-ASCII as `_`); keep one")]
    SameModelLane {
        /// The first name.
        first: String,
        /// The second name.
        second: String,
        /// The model as lane names write it.
        lane: String,
    },
    /// A model's policy with models of its own.
    #[error(
        "models: a model's policy cannot have models of its own; give them to the host's policy"
    )]
    NestedModels,
    /// A model's policy without a cost model under a host whose lanes are per model.
    #[error("cost model: a model's policy needs one, or its requests are neither priced in tokens nor settled from `usage`; build it from Policy::openai() or Policy::anthropic(), or from the host's policy (`host.clone().requests(…)`)")]
    ModelWithoutCostModel,
    /// A [passthrough](crate::Policy::passthrough) policy with a setting it would not apply.
    #[error("{field}: a passthrough policy sends requests as the bare client would and applies no {field}; remove it, or start from Policy::new() to throttle these hosts")]
    PassthroughSetting {
        /// The setting, as a configuration file names it.
        field: &'static str,
    },
    /// An invalid policy of one model, with the model named.
    #[error("model {model:?}: {error}")]
    InModel {
        /// The model, as given to [`Policy::model`](crate::Policy::model).
        model: String,
        /// What is wrong with its policy.
        error: Box<PolicyError>,
    },
}

/// The message of [`PolicyError::LongerAllowsLess`].
fn longer_allows_less(
    field: &str,
    shorter: (u64, u64, Duration),
    longer: (u64, Duration),
) -> String {
    let ((count, burst, short), (longer_count, long)) = (shorter, longer);
    let (short, long) = (for_people(&short), for_people(&long));
    let bound = count.max(burst);
    let burst = if burst > count {
        format!(" (its burst is {burst})")
    } else {
        String::new()
    };
    format!(
        "{field}: the limit of {longer_count} per {long} allows no more than the {count} per {short} before it{burst}, which would then never bind; raise the {long} limit above {bound} or remove the {short} one"
    )
}

/// The name of a limit's burst in messages: `burst` for the requests rate (as a file writes
/// it), `tokens burst` for a token limit's.
fn burst_field(field: &str) -> String {
    match field {
        "rate" => "burst".to_owned(),
        field => format!("{field} burst"),
    }
}

/// The name of a dimension's limit, as a configuration file writes it (and errors name it).
pub(crate) fn limit_field(dimension: Dimension) -> &'static str {
    match dimension {
        Dimension::Requests => "rate",
        Dimension::Tokens => "tokens",
        Dimension::InputTokens => "input_tokens",
        Dimension::OutputTokens => "output_tokens",
    }
}

impl PolicyError {
    /// This error of a rate (which names `rate`) with the field of `dimension`'s limit instead.
    pub(crate) fn of_limit(self, dimension: Dimension) -> PolicyError {
        let field = limit_field(dimension);
        match self {
            PolicyError::ZeroRate { .. } => PolicyError::ZeroRate { field },
            PolicyError::ZeroPeriod { .. } => PolicyError::ZeroPeriod { field },
            PolicyError::TooSlow { count, period, .. } => PolicyError::TooSlow {
                field,
                count,
                period,
            },
            PolicyError::TooFast { count, period, .. } => PolicyError::TooFast {
                field,
                count,
                period,
            },
            PolicyError::ZeroBurst { .. } => PolicyError::ZeroBurst { field },
            PolicyError::BurstOverflow {
                burst, interval, ..
            } => PolicyError::BurstOverflow {
                field,
                burst,
                interval,
            },
            other => other,
        }
    }

    /// `error` in the policy of the host rule written `pattern`.
    pub(crate) fn in_rule(pattern: &str, error: PolicyError) -> PolicyError {
        PolicyError::InRule {
            rule: format!("host rule {pattern:?}"),
            error: Box::new(error),
        }
    }

    /// `error` in the default policy.
    pub(crate) fn in_default(error: PolicyError) -> PolicyError {
        PolicyError::InRule {
            rule: "the default policy".to_owned(),
            error: Box::new(error),
        }
    }
}
