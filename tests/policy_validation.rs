//! No public way of giving the throttle a policy lets an invalid one through.
//!
//! Every invalid policy below goes through every public path that supplies a policy to a
//! [`Throttle`]; each must be refused by `build()` (or earlier) with the field named, and the
//! same path with a valid policy must build, so a path that refused everything would fail too.
//!
//! The paths:
//! 1. `ThrottleBuilder::host(pattern, policy)`
//! 2. `ThrottleBuilder::default_policy(policy)`
//! 3. `ThrottleBuilder::rules(HostRules::new(policy))` (built fine before, then hung or ran
//!    unlimited)
//! 4. `ThrottleBuilder::rules(HostRules::…::with(pattern, policy)?)`
//! 5. `ThrottleBuilder::rules(HostRules::…::with_default(policy)?)`
//! 6. `config::PolicyConfig::into_policy` and `config::ThrottleConfig::into_builder`, for
//!    `[default]` and `[hosts."…"]` (`serde` feature)
//! 7. the presets `Policy::openai()` and `Policy::anthropic()` through paths 1–5 (`llm` feature)
//!
//! and the builder's own bounds (`max_lanes`, `global_concurrency`).

use std::time::Duration;

use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{ClientBuilder, Middleware, Next};
use reqwest_throttle::breaker::BreakerConfig;
use reqwest_throttle::retry::{RetryBudgetConfig, RetryPolicy};
use reqwest_throttle::{Error, HostRules, Policy, PolicyError, Rate, Throttle};

/// Invalid policies, each with the field its error must name.
fn invalid_policies(base: fn() -> Policy) -> Vec<(&'static str, Policy)> {
    let budget = |change: fn(&mut RetryBudgetConfig)| {
        let mut config = RetryBudgetConfig::default();
        change(&mut config);
        RetryPolicy::new().budget(config)
    };
    vec![
        ("concurrency:", base().concurrency(0)),
        ("rate:", base().rate(Rate::per_second(0))),
        ("rate:", base().rate(Rate::new(1, Duration::MAX))),
        ("rate:", base().rate(Rate::new(5, Duration::ZERO))),
        ("burst:", base().rate(Rate::per_second(5).burst(0))),
        // A token limit's errors name the token dimension, not the requests rate.
        ("tokens:", base().tokens(Rate::per_minute(0))),
        ("input_tokens:", base().input_tokens(Rate::per_minute(0))),
        (
            "output_tokens burst:",
            base().output_tokens(Rate::per_hour(1).burst(u64::MAX)),
        ),
        ("attempt_timeout:", base().attempt_timeout(Duration::ZERO)),
        (
            "retry budget ratio:",
            base().retry(budget(|b| b.ratio = f64::NAN)),
        ),
        (
            "retry budget ratio:",
            base().retry(budget(|b| b.ratio = -0.5)),
        ),
        (
            "retry budget min_per_sec:",
            base().retry(budget(|b| b.min_per_sec = f64::INFINITY)),
        ),
        (
            "retry budget ttl:",
            base().retry(budget(|b| b.ttl = Duration::ZERO)),
        ),
        (
            "consecutive_failures",
            base().breaker(BreakerConfig::default().consecutive_failures(0)),
        ),
        (
            "rate: two limits per 1m",
            base().requests([Rate::per_minute(5), Rate::per_minute(6)]),
        ),
        (
            "tokens: the limit of 400 per 1h",
            base().tokens([Rate::per_minute(500), Rate::per_hour(400)]),
        ),
        (
            "output_tokens: a burst applies to the shortest limit only",
            base().output_tokens([Rate::per_minute(10), Rate::per_day(1_000).burst(5)]),
        ),
        // Without a cost model: no lane is a model's; with one: a model's policy with models.
        (
            "models:",
            base()
                .model("m", base())
                .model("n", base().model("x", base())),
        ),
    ]
}

type Path = fn(Policy) -> Result<Throttle, PolicyError>;

/// Every public way of handing a built `Policy` to a throttle.
fn paths() -> Vec<(&'static str, Path)> {
    fn with(rules: Result<HostRules, PolicyError>) -> Result<Throttle, PolicyError> {
        Throttle::builder().rules(rules?).build()
    }
    vec![
        ("builder.host", |policy| {
            Throttle::builder().host("api.example.com", policy).build()
        }),
        ("builder.default_policy", |policy| {
            Throttle::builder().default_policy(policy).build()
        }),
        ("builder.rules(HostRules::new)", |policy| {
            Throttle::builder().rules(HostRules::new(policy)).build()
        }),
        ("builder.rules(HostRules::with)", |policy| {
            with(HostRules::default().with("*.example.com", policy))
        }),
        ("builder.rules(HostRules::with_default)", |policy| {
            with(HostRules::default().with_default(policy))
        }),
    ]
}

fn assert_refused(result: Result<Throttle, PolicyError>, field: &str, context: &str) {
    match result {
        Err(error) => {
            let message = error.to_string();
            assert!(message.contains(field), "{context}: {message}");
        }
        Ok(_) => panic!("{context}: an invalid policy was accepted"),
    }
}

fn every_path_refuses_every_invalid_policy(preset: &str, base: fn() -> Policy) -> usize {
    let mut checked = 0;
    for (path, build) in paths() {
        assert!(build(base()).is_ok(), "{preset} via {path}: a valid policy");
        for (field, policy) in invalid_policies(base) {
            assert_refused(build(policy), field, &format!("{preset} via {path}"));
            checked += 1;
        }
    }
    checked
}

#[test]
fn every_builder_path_refuses_every_invalid_policy() {
    let checked = every_path_refuses_every_invalid_policy("Policy::new", Policy::new);
    assert_eq!(checked, 5 * 18);
}

#[cfg(feature = "llm")]
#[test]
fn the_llm_presets_are_validated_on_every_path() {
    every_path_refuses_every_invalid_policy("Policy::openai", Policy::openai);
    every_path_refuses_every_invalid_policy("Policy::anthropic", Policy::anthropic);
}

/// The issue's report, exactly: it built, then every request hung (concurrency 0) or went
/// unlimited (a zero rate).
#[test]
fn rules_built_elsewhere_are_validated_at_build() {
    let hung = Throttle::builder()
        .rules(HostRules::new(Policy::new().concurrency(0)))
        .build()
        .unwrap_err();
    assert_eq!(
        hung.to_string(),
        "the default policy: concurrency: must be at least 1 (got 0); remove the cap for no limit"
    );
    let unlimited = Throttle::builder()
        .rules(HostRules::new(Policy::new().rate(Rate::per_second(0))))
        .build()
        .unwrap_err();
    assert!(unlimited
        .to_string()
        .contains("rate: the count must be at least 1"));
}

/// Issue 12: `build()` returned the runtime `Error`, so matching on runtime errors had to
/// handle a configuration error; it now returns the configuration error alone.
#[test]
fn build_returns_the_configuration_error_not_the_runtime_error() {
    let result: Result<Throttle, PolicyError> = Throttle::builder().max_lanes(0).build();
    assert_eq!(result.unwrap_err(), PolicyError::ZeroMaxLanes);
}

#[test]
fn an_invalid_host_rule_names_the_rule() {
    let error = Throttle::builder()
        .host("api.example.com", Policy::new().concurrency(0))
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("host rule \"api.example.com\": concurrency:"),
        "{error}"
    );
}

#[test]
fn the_builders_own_bounds_are_validated() {
    let lanes = Throttle::builder().max_lanes(0).build().unwrap_err();
    assert!(lanes.to_string().contains("max_lanes:"), "{lanes}");
    let global = Throttle::builder()
        .global_concurrency(0)
        .build()
        .unwrap_err();
    assert!(
        global.to_string().contains("global_concurrency:"),
        "{global}"
    );
}

#[test]
fn host_rules_that_could_never_match_are_refused_on_every_path() {
    let never = [
        ("::1", "[::1]"),
        ("2001:db8::1", "[2001:db8::1]"),
        ("api.example.com:65536", "1 to 65535"),
        ("api.example.com:http", "1 to 65535"),
        ("api.example.com:0", "1 to 65535"),
        ("*.example.com:443", "cannot name a port"),
        ("*.127.0.0.1", "not an IP address"),
    ];
    for (pattern, hint) in never {
        let via_builder = Throttle::builder()
            .host(pattern, Policy::new())
            .build()
            .unwrap_err()
            .to_string();
        assert!(
            via_builder.contains(hint) && via_builder.contains(pattern),
            "{pattern}: {via_builder}"
        );
        let via_rules = HostRules::default()
            .with(pattern, Policy::new())
            .unwrap_err();
        assert!(
            matches!(via_rules, PolicyError::BadHostRule { .. }),
            "{pattern}: {via_rules}"
        );
    }
}

/// The end of the chain: answers 200 to everything, so no DNS and no socket is needed.
struct Answer;

#[async_trait::async_trait]
impl Middleware for Answer {
    async fn handle(
        &self,
        _: Request,
        _: &mut Extensions,
        _: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        Ok(Response::from(http::Response::new("")))
    }
}

/// A rule written in Unicode, in brackets or with upper case applies to the request whose URL
/// names the same host: one request a minute, the second is refused at once.
#[tokio::test(start_paused = true)]
async fn idn_ipv6_and_port_rules_apply_to_the_hosts_they_name() {
    let once_a_minute = || {
        Policy::new()
            .rate(Rate::per_minute(1))
            .max_wait(Duration::ZERO)
    };
    let throttle = Throttle::builder()
        .host("Bücher.DE", once_a_minute())
        .host("[0::1]:8080", once_a_minute())
        .host("*.bücher.de", once_a_minute())
        .build()
        .unwrap();
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(throttle.clone())
        .with(Answer)
        .build();
    for (first, second) in [
        ("http://bücher.de/", "http://xn--bcher-kva.de/again"),
        ("http://[::1]:8080/", "http://[::1]:8080/again"),
        (
            "http://shop.xn--bcher-kva.de/",
            "http://SHOP.bücher.de/again",
        ),
    ] {
        client.get(first).send().await.expect(first);
        let refused = client.get(second).send().await.unwrap_err();
        assert!(
            matches!(
                Error::from_middleware(&refused),
                Some(Error::WouldWait { .. })
            ),
            "{second}: the rule's rate did not apply: {refused}"
        );
    }
    // A port the rule does not name is not limited by it.
    for _ in 0..3 {
        client.get("http://[::1]:9090/").send().await.unwrap();
    }
}

#[cfg(feature = "serde")]
mod config {
    use super::*;
    use reqwest_throttle::config::{PolicyConfig, ThrottleConfig};

    fn build(text: &str) -> Result<Throttle, String> {
        let config: ThrottleConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.into_builder().build().map_err(|e| e.to_string())
    }

    #[test]
    fn a_valid_file_builds() {
        let built = build(
            r#"
            [default]
            concurrency = 4
            attempt_timeout = "30s"
            retry = { budget_ratio = 0.5, budget_min_per_sec = 2 }

            [hosts."api.github.com"]
            rate = "5000/h"
            burst = 100

            [hosts."[::1]:8080"]
            unlimited_concurrency = true

            [hosts."bücher.de"]
            rate = "1/s"
            "#,
        );
        assert!(built.is_ok(), "{built:?}");
    }

    /// Values that make no sense, in `[default]` and in a host's table: each refused with the
    /// rule and the field named.
    #[test]
    fn nonsense_values_are_refused_with_the_field_named() {
        let cases = [
            ("burst = 10", "burst:"),
            ("retry = { budget_ratio = nan }", "retry.budget_ratio:"),
            ("retry = { budget_ratio = -0.5 }", "retry.budget_ratio:"),
            (
                "retry = { budget_min_per_sec = inf }",
                "retry.budget_min_per_sec:",
            ),
            ("concurrency = 0", "concurrency:"),
            (
                "concurrency = 4\nunlimited_concurrency = true",
                "concurrency:",
            ),
            ("attempt_timeout = \"0s\"", "attempt_timeout:"),
            ("retry = { base = \"10s\", cap = \"1s\" }", "retry.cap:"),
            (
                "breaker = { enabled = false, consecutive_failures = 3 }",
                "breaker.enabled:",
            ),
            (
                "breaker = { consecutive_failures = 0 }",
                "consecutive_failures",
            ),
            ("rate = \"1/s\"\nburst = 0", "burst:"),
        ];
        for (body, field) in cases {
            let default = build(&format!("[default]\n{body}")).unwrap_err();
            assert!(
                default.contains("the default policy") && default.contains(field),
                "[default] {body}: {default}"
            );
            let host = build(&format!("[hosts.\"a.example\"]\n{body}")).unwrap_err();
            assert!(
                host.contains("host rule \"a.example\"") && host.contains(field),
                "[hosts] {body}: {host}"
            );
            let config: PolicyConfig = toml::from_str(body).unwrap();
            let direct = config.into_policy().unwrap_err().to_string();
            assert!(direct.contains(field), "into_policy {body}: {direct}");
        }
    }

    #[test]
    fn host_patterns_and_bounds_in_a_file_are_validated() {
        let cases = [
            (r#"[hosts."::1"]"#, "[::1]"),
            (r#"[hosts."a.example:99999"]"#, "1 to 65535"),
            (r#"[hosts."a.example:https"]"#, "1 to 65535"),
            ("max_lanes = 0", "max_lanes:"),
            ("global_concurrency = 0", "global_concurrency:"),
        ];
        for (text, hint) in cases {
            let error = build(text).unwrap_err();
            assert!(error.contains(hint), "{text}: {error}");
        }
    }
}
