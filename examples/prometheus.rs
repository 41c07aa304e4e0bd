//! The throttle's metrics exported to Prometheus (`metrics` feature): metrics-exporter-prometheus
//! listens on 127.0.0.1, a burst of requests goes to a simulated API that allows 5 per second,
//! and the example scrapes the endpoint once and prints the throttle's lines.
//!
//! ```text
//! cargo run --example prometheus --features metrics,test-util
//! ```
//!
//! In an application, install the exporter once at start-up, before building the throttle (which
//! describes every series to it: the `# HELP` lines). Nothing needs to be called before a
//! scrape: counters, histograms and gauges are recorded as they change.

use std::error::Error;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use reqwest_throttle::sim::SimulatedApi;
use reqwest_throttle::{Policy, Rate, Throttle};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let address: SocketAddr = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?;
    PrometheusBuilder::new()
        .with_http_listener(address)
        .install()?;

    // A rate configured a little too high (10/s against 5/s): the first burst meets 429s, the
    // lane cools down and retries.
    let api = SimulatedApi::builder()
        .limit(5, Duration::from_secs(1))
        .build();
    let throttle = Throttle::builder()
        .host("api.test", Policy::new().rate(Rate::per_second(10)))
        .build()?;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(throttle.clone())
        .with(api)
        .build();
    let requests = (0..20).map(|i| client.get(format!("http://api.test/items/{i}")).send());
    let outcomes = futures_util::future::join_all(requests).await;
    let ok = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
    println!("{ok} of {} requests answered\n", outcomes.len());

    let scrape = reqwest::get(format!("http://{address}/metrics"))
        .await?
        .text()
        .await?;
    println!("GET http://{address}/metrics (the throttle's lines):");
    for line in scrape.lines().filter(|line| {
        line.starts_with("reqwest_throttle") || line.starts_with("# HELP reqwest_throttle")
    }) {
        println!("  {line}");
    }
    Ok(())
}
