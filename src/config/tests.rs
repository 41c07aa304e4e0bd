//! The configuration file's unit tests: what parses, what is refused and how errors read.

use std::time::Duration;

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

/// A dimension's limits are one rate or a list of them; `burst` is the shortest one's.
#[test]
fn several_limits_of_a_dimension_are_a_list() {
    let config: ThrottleConfig = toml::from_str(
        r#"
        [hosts."api.example.com"]
        rate = ["10000/d", "500/min"]
        burst = 50

        [hosts."one.example.com"]
        rate = "5/s"
        "#,
    )
    .unwrap();
    let policy = config.hosts["api.example.com"]
        .clone()
        .into_policy()
        .unwrap();
    assert_eq!(
        policy
            .configured_limits(crate::Dimension::Requests)
            .as_slice(),
        [Rate::per_minute(500).burst(50), Rate::per_day(10_000)]
    );
    let one = config.hosts["one.example.com"].clone().into_policy();
    assert_eq!(one.unwrap().configured_rate(), Some(Rate::per_second(5)));
    assert!(config.into_builder().build().is_ok());
    let json: PolicyConfig = serde_json::from_str(r#"{ "rate": ["1/s", "100/h"] }"#).unwrap();
    assert_eq!(json.rate.unwrap().windows(), [Rate::per_hour(100)]);
}

/// Limits that make no sense together are refused with the rule, the field and the fix named;
/// a bad entry of a list names itself.
#[test]
fn limits_that_make_no_sense_together_are_refused() {
    let cases = [
        (
            r#"rate = ["500/min", "600/min"]"#,
            "host rule \"a.com\": rate: two limits per 1m (500 and 600); keep one",
        ),
        (
            r#"rate = ["500/min", "400/d"]"#,
            "host rule \"a.com\": rate: the limit of 400 per 24h allows no more than the 500 per \
             1m before it, which would then never bind; raise the 24h limit above 500 or remove \
             the 1m one",
        ),
        (
            "rate = [\"10/s\", \"500/min\"]\nburst = 600",
            "host rule \"a.com\": rate: the limit of 500 per 1m allows no more than the 10 per 1s \
             before it (its burst is 600), which would then never bind; raise the 1m limit above \
             600 or remove the 1s one",
        ),
    ];
    for (table, message) in cases {
        let config: ThrottleConfig =
            toml::from_str(&format!("[hosts.\"a.com\"]\n{table}")).unwrap();
        let error = config.into_builder().build().unwrap_err().to_string();
        assert_eq!(error, message, "{table}");
    }
    let bad = toml::from_str::<ThrottleConfig>(
        r#"[hosts."a.com"]
           rate = ["500/min", "lots/d"]"#,
    )
    .unwrap_err()
    .to_string();
    assert!(bad.contains("\"lots/d\"") && bad.contains("rate"), "{bad}");
    let not_a_rate = toml::from_str::<ThrottleConfig>(
        r#"[hosts."a.com"]
           rate = 500"#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        not_a_rate.contains("[\"600/min\", \"10000/d\"]"),
        "{not_a_rate}"
    );
}

/// A model's table is its host's policy with the model's values on top, in its own lanes.
#[cfg(feature = "llm")]
#[test]
fn a_models_table_is_its_hosts_policy_with_its_own_values() {
    let config: ThrottleConfig = toml::from_str(
        r#"
        [hosts."api.openai.com"]
        preset = "openai"
        rate = "500/min"
        tokens = "30000/min"
        max_wait = "10s"

        [hosts."api.openai.com".models."gpt-4o-mini"]
        rate = ["500/min", "10000/d"]
        tokens = ["200000/min", "2000000/d"]

        [hosts."api.openai.com".models."gpt-4o"]
        tokens = "30000/min"
        max_wait = "1m"
        "#,
    )
    .unwrap();
    let host = config.hosts["api.openai.com"]
        .clone()
        .into_policy()
        .unwrap();
    let tokens = crate::Dimension::Tokens;
    let mini = host.configured_model("gpt-4o-mini").unwrap();
    assert_eq!(
        mini.configured_limits(tokens).as_slice(),
        [Rate::per_minute(200_000), Rate::per_day(2_000_000)]
    );
    assert_eq!(mini.configured_max_wait(), Some(Duration::from_secs(10)));
    assert!(mini.configured_cost_model().is_some());
    let gpt4o = host.configured_model("gpt-4o").unwrap();
    assert_eq!(gpt4o.configured_rate(), Some(Rate::per_minute(500)));
    assert_eq!(gpt4o.configured_max_wait(), Some(Duration::from_secs(60)));
    let names: Vec<_> = host.configured_models().map(|(name, _)| name).collect();
    assert_eq!(names, ["gpt-4o", "gpt-4o-mini"]);
    assert_eq!(
        host.configured_limit(tokens),
        Some(Rate::per_minute(30_000))
    );
    assert!(config.into_builder().build().is_ok());
}

/// What a model's table cannot say is refused with the rule and the model named.
#[test]
fn a_models_table_is_checked() {
    let mut cases = vec![
        (
            r#"[hosts."a.com".models."m"]
               rate = "1/s""#,
            "host rule \"a.com\": models: a policy per model needs a cost model",
        ),
        (
            r#"[hosts."a.com".models."m".models."n"]
               rate = "1/s""#,
            "host rule \"a.com\": model \"m\": models: a model's policy cannot have models",
        ),
    ];
    if cfg!(feature = "llm") {
        cases.extend([
            (
                r#"[hosts."a.com"]
                   preset = "openai"
                   [hosts."a.com".models."m"]
                   preset = "anthropic""#,
                "host rule \"a.com\": model \"m\": preset: a model's table starts from its host's",
            ),
            (
                r#"[hosts."a.com"]
                   preset = "openai"
                   [hosts."a.com".models."m"]
                   rate = ["1/s", "1/s"]"#,
                "host rule \"a.com\": model \"m\": rate: two limits per 1s (1 and 1); keep one",
            ),
            (
                r#"[hosts."a.com"]
                   preset = "openai"
                   [hosts."a.com".models.""]
                   rate = "1/s""#,
                "host rule \"a.com\": model \"\": a model is named as requests name it",
            ),
            (
                r#"[hosts."a.com"]
                   preset = "openai"
                   [hosts."a.com".models."org/m"]
                   rate = "1/s"
                   [hosts."a.com".models."org_m"]
                   rate = "2/s""#,
                "host rule \"a.com\": models \"org/m\" and \"org_m\" both name the lanes of model \"org_m\"",
            ),
        ]);
    }
    for (text, start) in cases {
        let config: ThrottleConfig = toml::from_str(text).unwrap();
        let error = config.into_builder().build().unwrap_err().to_string();
        assert!(error.starts_with(start), "{text}\n{error}");
    }
}

#[test]
fn durations_are_read_in_go_and_humantime_syntax() {
    let cases = [
        ("\"30s\"", Duration::from_secs(30)),
        ("\"1m30s\"", Duration::from_secs(90)),
        ("\"4m12.172s\"", Duration::from_millis(252_172)),
        ("\"1h 30m\"", Duration::from_secs(5_400)),
        ("\"2min\"", Duration::from_secs(120)),
        ("\"250ms\"", Duration::from_millis(250)),
        ("\"2s\"", Duration::from_secs(2)),
        ("\" 1day \"", Duration::from_secs(86_400)),
        ("1.5", Duration::from_millis(1_500)),
    ];
    for (text, expected) in cases {
        let read: ConfigDuration = serde_json::from_str(text).unwrap();
        assert_eq!(read.0, expected, "{text}");
    }
    for bad in ["\"\"", "\"soon\"", "\"12\"", "\"-1s\"", "\"1h 30\""] {
        let error = serde_json::from_str::<ConfigDuration>(bad).unwrap_err();
        assert!(error.to_string().contains("1h 30m"), "{bad}: {error}");
    }
    // In a whole file, beside the other settings.
    let config: ThrottleConfig = toml::from_str(
        r#"
        [default]
        max_wait = "1h 30m"
        attempt_timeout = "250ms"
        retry = { base = "100ms", cap = "1min" }
        breaker = { open_base = "2s", open_max = "1h" }
        "#,
    )
    .unwrap();
    let policy = config.default.unwrap().into_policy().unwrap();
    assert_eq!(
        policy.configured_max_wait(),
        Some(Duration::from_secs(5_400))
    );
    assert_eq!(
        policy.configured_attempt_timeout(),
        Some(Duration::from_millis(250))
    );
}

#[test]
fn passthrough_is_read_and_refuses_what_it_would_not_apply() {
    let config: ThrottleConfig = toml::from_str(
        r#"
        [default]
        passthrough = true

        [hosts."api.github.com"]
        rate = "5000/h"

        [hosts."*.internal"]
        passthrough = true
        unlimited_concurrency = true
        breaker = { enabled = false }
        "#,
    )
    .unwrap();
    assert!(config
        .default
        .clone()
        .unwrap()
        .into_policy()
        .unwrap()
        .is_passthrough());
    assert!(config.hosts["*.internal"]
        .clone()
        .into_policy()
        .unwrap()
        .is_passthrough());
    assert!(!config.hosts["api.github.com"]
        .clone()
        .into_policy()
        .unwrap()
        .is_passthrough());
    assert!(config.into_builder().build().is_ok());
    let refused = [
        ("rate = \"10/s\"", "rate:"),
        ("tokens = \"10/s\"", "tokens:"),
        ("concurrency = 4", "concurrency:"),
        ("max_wait = \"1s\"", "max_wait:"),
        ("retry = { max_retries = 2 }", "retry:"),
        ("breaker = { consecutive_failures = 2 }", "breaker:"),
        ("enforce_percent = 50", "enforce_percent:"),
        ("preset = \"openai\"", "preset:"),
    ];
    for (setting, field) in refused {
        let text = format!("[hosts.\"a.com\"]\npassthrough = true\n{setting}");
        let config: ThrottleConfig = toml::from_str(&text).unwrap();
        let message = config.into_builder().build().unwrap_err().to_string();
        assert!(
            message.starts_with(&format!("host rule \"a.com\": {field}")),
            "{setting}: {message}"
        );
    }
}

/// A zero token rate names its dimension, not `rate`.
#[test]
fn a_bad_token_rate_names_its_dimension() {
    let cases = [
        ("rate = \"0/s\"", "rate: the count must be at least 1"),
        ("tokens = \"0/min\"", "tokens: the count must be at least 1"),
        (
            "input_tokens = \"0/min\"",
            "input_tokens: the count must be",
        ),
        (
            "output_tokens = \"0/min\"",
            "output_tokens: the count must be",
        ),
    ];
    for (setting, expected) in cases {
        // Refused while the file is read, with the field's line.
        let text = format!("[hosts.\"a.com\"]\npreset = \"openai\"\n{setting}");
        let message = toml::from_str::<ThrottleConfig>(&text)
            .unwrap_err()
            .to_string();
        assert!(message.contains(expected), "{setting}: {message}");
        let listed = setting.replace("= \"0/", "= [\"1/s\", \"0/") + "]";
        let message = toml::from_str::<ThrottleConfig>(&format!("[hosts.\"a.com\"]\n{listed}"))
            .unwrap_err()
            .to_string();
        assert!(message.contains(expected), "{listed}: {message}");
    }
    // Through the API, when the policy is validated.
    let policy = Policy::new().tokens(Rate::per_minute(0));
    let message = policy.validate().unwrap_err().to_string();
    assert!(message.starts_with("tokens: the count"), "{message}");
    let policy = Policy::new().input_tokens(Rate::per_minute(10).burst(0));
    let message = policy.validate().unwrap_err().to_string();
    assert!(
        message.starts_with("input_tokens burst: must be"),
        "{message}"
    );
}
