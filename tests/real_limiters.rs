//! Against real third-party limiters on loopback (nginx `limit_req`, Flask-Limiter), started by
//! the tests from configs they write: the limiters really limit, the harness counts the same
//! 429s as the servers do, and every request sent through reqwest-throttle ends as an answer or
//! an error, none lost.
//!
//! Real servers mean real time (a few seconds per test); nothing here asserts on timing, only on
//! counts. Goodput is measured ([`real::measure::Report::goodput`]) but not judged here: the
//! table is `cargo run --example real_limiters`. Under `CI=true` a missing nginx or Flask fails
//! these tests; elsewhere they print why and skip.

// Shared with `examples/real_limiters.rs`; each uses only part of it.
#[allow(dead_code)]
mod real;

use std::time::Duration;

use real::contenders::Contender;
use real::flask::{self, FlaskLimiter};
use real::measure::{measure, CountedClient, Load, RealServer, Report};
use real::nginx::{self, Nginx};
use reqwest_throttle::Rate;

/// `tasks` GETs at once through a plain client (no middleware but the counter).
async fn burst(server: &impl RealServer, path: &str, tasks: usize, limit: u32) -> Report {
    let client = CountedClient::new(Vec::new());
    let load = Load {
        requests: tasks,
        tasks,
        timeout: Duration::from_secs(10),
        limit_per_second: limit,
    };
    measure(&client, server, path, load).await.unwrap()
}

/// Every request accounted for, and the server saw exactly what left the client.
fn assert_accounted(report: &Report) {
    assert_eq!(
        report.completed + report.failed,
        report.requests as u64,
        "requests lost or still pending at the bound: {report:#?}"
    );
    assert_eq!(
        report.client, report.server,
        "attempts and 429s counted below the client differ from the server's own: {report:#?}"
    );
}

#[tokio::test]
async fn nginx_burst0_refuses_most_of_a_simultaneous_burst() {
    let Some(nginx) = Nginx::start().await else {
        return;
    };
    let report = burst(&nginx, "/burst0", 20, nginx::RATE_PER_SECOND).await;
    assert_accounted(&report);
    assert!(report.completed >= 1, "{report:#?}");
    assert!(
        report.server.rate_limited >= 10,
        "nginx limit_req without burst let most of 20 simultaneous GETs through: {report:#?}"
    );
}

#[tokio::test]
async fn nginx_burst10_admits_the_burst_and_refuses_the_rest() {
    let Some(nginx) = Nginx::start().await else {
        return;
    };
    for path in ["/burst10nodelay", "/burst10"] {
        let report = burst(&nginx, path, 30, nginx::RATE_PER_SECOND).await;
        assert_accounted(&report);
        // One at the rate plus the burst of 10, whether answered at once or queued.
        assert!(report.completed >= 11, "{path}: {report:#?}");
        assert!(report.server.rate_limited >= 1, "{path}: {report:#?}");
    }
}

#[tokio::test]
async fn nginx_retryafter_is_sent_on_429s_only() {
    let Some(nginx) = Nginx::start().await else {
        return;
    };
    let client = reqwest::Client::new();
    let url = nginx.url("/retryafter");
    let answers = futures_util::future::join_all((0..10).map(|_| client.get(&url).send())).await;
    let mut refused = 0;
    for answer in answers {
        let answer = answer.unwrap();
        let retry_after = answer.headers().get("retry-after").cloned();
        if answer.status() == 429 {
            refused += 1;
            assert_eq!(retry_after.as_ref().map(|v| v.as_bytes()), Some(&b"1"[..]));
        } else {
            assert_eq!(answer.status(), 200);
            assert_eq!(retry_after, None, "Retry-After on a 200");
        }
    }
    assert!(
        refused >= 1,
        "10 simultaneous GETs at 50 r/s, burst 0, all admitted"
    );
}

#[tokio::test]
async fn flask_limiter_announces_its_limit_and_refuses_beyond_it() {
    let Some(flask) = FlaskLimiter::start().await else {
        return;
    };
    let client = reqwest::Client::new();
    for path in flask::ENDPOINTS {
        let url = flask.url(path);
        let answers =
            futures_util::future::join_all((0..20).map(|_| client.get(&url).send())).await;
        let mut refused = 0;
        for answer in answers {
            let answer = answer.unwrap();
            let header = |name: &str| {
                answer
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            assert_eq!(header("x-ratelimit-limit").as_deref(), Some("10"), "{path}");
            assert!(header("x-ratelimit-remaining").is_some(), "{path}");
            assert!(header("x-ratelimit-reset").is_some(), "{path}");
            if answer.status() == 429 {
                refused += 1;
                assert!(
                    header("retry-after").is_some(),
                    "{path}: 429 without Retry-After"
                );
            }
        }
        assert!(
            refused >= 5,
            "{path}: 20 simultaneous GETs at 10/s, only {refused} refused"
        );
        let counts = flask.counts(path).await.unwrap();
        assert_eq!(counts.attempts, 20, "{path}: the server's own count");
        assert_eq!(
            counts.rate_limited, refused,
            "{path}: the server's own 429 count"
        );
    }
}

#[tokio::test]
async fn flask_limiter_counts_match_the_clients() {
    let Some(flask) = FlaskLimiter::start().await else {
        return;
    };
    for path in flask::ENDPOINTS {
        let report = burst(&flask, path, 20, flask::LIMIT_PER_SECOND).await;
        assert_accounted(&report);
        assert!(report.server.rate_limited >= 5, "{path}: {report:#?}");
    }
}

/// reqwest-throttle, configured or not, against each real limiter: every request ends as an
/// answer or an error within the bound, and the 429s it provoked are the server's.
async fn throttle_loses_no_request(
    server: &impl RealServer,
    path: &str,
    contender: Contender,
    load: Load,
) -> Report {
    let client = CountedClient::new(contender.layers().unwrap());
    let report = measure(&client, server, path, load).await.unwrap();
    println!(
        "{} on {path}: completed {}, failed {}, 429s {}, goodput {:.0} %",
        contender.name(),
        report.completed,
        report.failed,
        report.server.rate_limited,
        100.0 * report.goodput()
    );
    assert_accounted(&report);
    report
}

#[tokio::test]
async fn throttle_loses_no_request_against_nginx() {
    let load = Load {
        requests: 30,
        tasks: 8,
        timeout: Duration::from_secs(20),
        limit_per_second: nginx::RATE_PER_SECOND,
    };
    let documented = Rate::per_second(u64::from(nginx::RATE_PER_SECOND));
    for contender in [
        Contender::ThrottleDefaults,
        Contender::ThrottleConfigured(documented),
    ] {
        let Some(nginx) = Nginx::start().await else {
            return;
        };
        throttle_loses_no_request(&nginx, "/retryafter", contender, load).await;
    }
}

#[tokio::test]
async fn throttle_loses_no_request_against_flask() {
    let load = Load {
        requests: 20,
        tasks: 8,
        timeout: Duration::from_secs(20),
        limit_per_second: flask::LIMIT_PER_SECOND,
    };
    let documented = Rate::per_second(u64::from(flask::LIMIT_PER_SECOND));
    for contender in [
        Contender::ThrottleDefaults,
        Contender::ThrottleConfigured(documented),
    ] {
        let Some(flask) = FlaskLimiter::start().await else {
            return;
        };
        throttle_loses_no_request(&flask, "/fixed", contender, load).await;
    }
}
