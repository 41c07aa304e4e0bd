//! The throttle's metrics reach a real Prometheus exporter (metrics-exporter-prometheus on
//! 127.0.0.1), and a scrape finds the figures: attempts, 429s, refusals, waits, gauges, shadow
//! mode's, with a bounded `host` label and never the API key.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use reqwest_throttle::retry::RetryPolicy;
use reqwest_throttle::rollout::Enforcement;
use reqwest_throttle::sim::SimulatedApi;
use reqwest_throttle::{Policy, Throttle};

const SECRET: &str = "sk-proj-SECRET-0123456789";

/// The value of the sample named exactly `series` (name and labels) in a Prometheus text scrape.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

#[tokio::test(start_paused = true)]
async fn a_prometheus_scrape_finds_the_throttles_figures() {
    // A free loopback port for the exporter's listener.
    let address: SocketAddr = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap();
    let (recorder, exporter) = PrometheusBuilder::new()
        .with_http_listener(address)
        .build()
        .unwrap();
    metrics::set_global_recorder(recorder).unwrap();
    tokio::spawn(exporter);

    // 3 requests a minute; beyond, 429 with Retry-After. No retries and no waiting, so the
    // fourth request is refused by the server and the six after it by the throttle (the lane
    // cools down for the rest of the minute).
    let api = SimulatedApi::builder()
        .limit(3, Duration::from_secs(60))
        .build();
    let throttle = Throttle::builder()
        .default_policy(
            Policy::new()
                .retry(RetryPolicy::disabled())
                .max_wait(Duration::ZERO),
        )
        .build()
        .unwrap();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(throttle.clone())
        .with(api.clone())
        .build();
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let outcome = client
            .get("http://api.test/v1/items")
            .bearer_auth(SECRET)
            .send()
            .await;
        statuses.push(outcome.map(|response| response.status().as_u16()).ok());
    }
    assert_eq!(
        statuses,
        [
            Some(200),
            Some(200),
            Some(200),
            Some(429),
            None,
            None,
            None,
            None,
            None,
            None
        ]
    );
    // Two requests to another host in shadow mode: sent at once, both refused by the server
    // (its limit is spent), and neither pauses the lane (a shadowed refusal sets no cooldown).
    for _ in 0..2 {
        let response = client
            .get("http://shadow.test/v1/items")
            .with_extension(Enforcement::Shadow)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 429);
    }
    throttle.record_metrics();

    let scrape = reqwest::get(format!("http://{address}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let figure = |series: &str| {
        sample(&scrape, series).unwrap_or_else(|| panic!("{series} missing:\n{scrape}"))
    };
    assert_eq!(
        figure(r#"reqwest_throttle_attempts_total{host="api.test"}"#),
        4.0
    );
    assert_eq!(
        figure(r#"reqwest_throttle_rate_limited_total{host="api.test"}"#),
        1.0
    );
    assert_eq!(
        figure(r#"reqwest_throttle_wait_seconds_count{host="api.test"}"#),
        4.0
    );
    assert_eq!(
        figure(r#"reqwest_throttle_attempt_seconds_count{host="api.test"}"#),
        4.0
    );
    assert_eq!(
        figure(r#"reqwest_throttle_in_flight{host="api.test"}"#),
        0.0
    );
    assert_eq!(figure(r#"reqwest_throttle_queued{host="api.test"}"#), 0.0);
    assert_eq!(
        figure(r#"reqwest_throttle_cooldowns_total{host="api.test"}"#),
        1.0
    );
    assert_eq!(
        figure(r#"reqwest_throttle_shadowed_total{host="shadow.test"}"#),
        2.0
    );
    assert_eq!(
        figure(r#"reqwest_throttle_shadow_would_wait_seconds_count{host="shadow.test"}"#),
        2.0
    );
    assert_eq!(
        figure(r#"reqwest_throttle_rate_limited_total{host="shadow.test"}"#),
        2.0
    );
    assert_eq!(
        figure(r#"reqwest_throttle_cooldowns_total{host="shadow.test"}"#),
        0.0
    );
    let refused: f64 = scrape
        .lines()
        .filter(|line| line.starts_with("reqwest_throttle_refused_total{host=\"api.test\""))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(refused, 6.0, "{scrape}");
    assert!(
        !scrape.contains("SECRET") && !scrape.contains("key:"),
        "{scrape}"
    );
}
