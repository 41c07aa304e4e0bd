//! GitHub's REST API, paced by its own `x-ratelimit-*` headers.
//!
//! ```text
//! cargo run --example github --features test-util
//! ```
//!
//! GitHub announces its primary limit on every answer (`x-ratelimit-limit`, `-remaining`,
//! `-used`, `-reset` as Unix epoch seconds, `-resource`) and answers **403** with
//! `x-ratelimit-remaining: 0` once it is spent. The crate's simulated API answers the same way
//! (`HeaderStyle::GitHub`, 60 requests an hour as for an unauthenticated client), and 150 GETs
//! from 4 tasks go through four clients: bare reqwest; a throttle with nothing configured;
//! one with nothing configured but `max_retry_after` raised to GitHub's hour, so that the
//! headers pace it; and one told the documented 60 an hour. The simulated API is a terminal
//! middleware and the run is in virtual time, so its hours take a moment.
//!
//! With the defaults, a server value is believed only up to `max_retry_after` (120 s): a reset
//! an hour away is read as 120 s away, so the lane spends the hour's quota in two minutes, and
//! the 403s that follow (their reset too far to wait for) are returned to the caller. For an
//! hourly limit, raise `max_retry_after` to the hour or configure the rate.
//!
//! Against the real API only the client changes: no `.with(api)`, a token, and the limit of
//! an authenticated client:
//!
//! ```no_run
//! # use std::time::Duration;
//! # use reqwest_throttle::{Policy, Rate, Throttle};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let throttle = Throttle::builder()
//!     .host("api.github.com", Policy::new().rate(Rate::per_hour(5_000)))
//!     .build()?;
//! let http = reqwest::Client::builder()
//!     .user_agent("my-app") // GitHub refuses requests without one
//!     .timeout(Duration::from_secs(30))
//!     .build()?;
//! let client = reqwest_middleware::ClientBuilder::new(http).with(throttle).build();
//! # drop(client); Ok(()) }
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use reqwest_middleware::ClientBuilder;
use reqwest_throttle::retry::RetryPolicy;
use reqwest_throttle::sim::{HeaderStyle, RetryAfterStyle, SimulatedApi};
use reqwest_throttle::{Policy, Rate, Throttle};
use tokio::time::Instant;

const URL: &str = "https://api.github.test/repos/rust-lang/rust/issues";
const REQUESTS: usize = 150;
const TASKS: usize = 4;
const PER_HOUR: u64 = 60;

fn github() -> SimulatedApi {
    SimulatedApi::builder()
        .limit(PER_HOUR, Duration::from_secs(3600))
        .headers(HeaderStyle::GitHub)
        .limited_status(StatusCode::FORBIDDEN)
        .retry_after(RetryAfterStyle::None)
        .latency(Duration::from_millis(50))
        .build()
}

/// Sends the batch through `throttle` (none: bare reqwest) to a fresh simulated GitHub.
async fn run(name: &str, throttle: Option<Throttle>) -> Result<(), Box<dyn std::error::Error>> {
    let api = github();
    let http = reqwest::Client::builder()
        .user_agent("reqwest-throttle-example")
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut client = ClientBuilder::new(http);
    if let Some(throttle) = &throttle {
        client = client.with(throttle.clone());
    }
    let client = client.with(api.clone()).build();

    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        let (client, next) = (client.clone(), Arc::clone(&next));
        tasks.spawn(async move {
            let mut ok = 0;
            while next.fetch_add(1, Ordering::Relaxed) < REQUESTS {
                let sent = client.get(URL).send().await;
                ok += usize::from(sent.is_ok_and(|answer| answer.status().is_success()));
            }
            ok
        });
    }
    let mut ok = 0;
    while let Some(task) = tasks.join_next().await {
        ok += task?;
    }
    let stats = api.stats();
    println!(
        "{name:<34} {ok:>4}/{REQUESTS} {:>6} {:>9.1} min",
        stats.limited,
        start.elapsed().as_secs_f64() / 60.0,
    );
    Ok(())
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // One answer's headers, as GitHub writes them.
    let api = github();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let client = ClientBuilder::new(http).with(api.clone()).build();
    let answer = client.get(URL).send().await?;
    println!("{}", answer.status());
    for (name, value) in answer.headers() {
        if name.as_str().starts_with("x-ratelimit") {
            println!("  {name}: {}", value.to_str().unwrap_or("?"));
        }
    }
    println!();

    println!(
        "{:<34} {:>9} {:>6} {:>13}",
        "client", "ok", "403s", "elapsed"
    );
    run("bare reqwest", None).await?;
    run("throttle, defaults", Some(Throttle::builder().build()?)).await?;
    let headers_believed = Throttle::builder()
        .host(
            "api.github.test",
            Policy::new().retry(RetryPolicy::new().max_retry_after(Duration::from_secs(3600))),
        )
        .build()?;
    run("throttle, max_retry_after 1h", Some(headers_believed)).await?;
    let documented = Throttle::builder()
        .host(
            "api.github.test",
            Policy::new().rate(Rate::per_hour(PER_HOUR)),
        )
        .build()?;
    run("throttle, 60/h configured", Some(documented)).await?;
    Ok(())
}
