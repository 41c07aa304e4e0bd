//! One host with a documented rate: the README's quick start, beside bare reqwest.
//!
//! ```text
//! cargo run --example one_host --features test-util
//! ```
//!
//! Starts the crate's simulated API on 127.0.0.1 (a token bucket of 20 requests a second, bursts
//! of 20, 429 with `Retry-After` beyond) and sends 40 GETs at once, first through a bare reqwest
//! client, then through one throttled at the API's documented 20/s. It runs in real time (about
//! 2 s). For your own API, drop the simulator and use its host and documented rate.

use std::time::{Duration, Instant};

use reqwest_middleware::ClientWithMiddleware;
use reqwest_throttle::sim::SimulatedApi;
use reqwest_throttle::{Policy, Rate, Throttle};

const REQUESTS: usize = 40;

/// Sends `REQUESTS` GETs at once to a fresh simulated API and prints what came back.
async fn run(name: &str, client: ClientWithMiddleware) -> Result<(), Box<dyn std::error::Error>> {
    let api = SimulatedApi::builder().token_bucket(20.0, 20).build();
    let server = api.serve().await?;
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..REQUESTS {
        let (client, url) = (client.clone(), server.url(&format!("/v1/items/{i}")));
        tasks.spawn(async move { client.get(url).send().await });
    }
    let mut ok = 0;
    while let Some(sent) = tasks.join_next().await {
        ok += usize::from(sent??.status().is_success());
    }
    println!(
        "{name:<32} {ok:>3}/{REQUESTS} ok {:>5} × 429 {:>7.2}s",
        api.stats().limited,
        start.elapsed().as_secs_f64(),
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // reqwest has no timeout by default; always give it one.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;

    run(
        "bare reqwest",
        reqwest_middleware::ClientBuilder::new(http.clone()).build(),
    )
    .await?;

    let throttle = Throttle::builder()
        .host("127.0.0.1", Policy::new().rate(Rate::per_second(20)))
        .build()?;
    let client = reqwest_middleware::ClientBuilder::new(http)
        .with(throttle.clone())
        .build();
    run("throttled at 20/s", client).await?;

    let lane = &throttle.stats().lanes[0];
    println!(
        "the throttled lane: {} sent, {} retries, waited {:.1?} in all, {:.1?} at most",
        lane.sent, lane.retries, lane.waited_total, lane.waited_max
    );
    Ok(())
}
