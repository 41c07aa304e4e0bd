//! Rolling a throttle out in front of traffic that already works: shadow mode, then 30 % of
//! the tenants, then all of them, the share changed at runtime, with the comparison
//! `Throttle::stats()` gives after each step. Against the simulated API (10 requests at once,
//! one more every 100 ms), in virtual time: it runs in well under a second.
//!
//! ```text
//! cargo run --example rollout --features test-util
//! ```
//!
//! The workload: 40 tenants, bursts of 12 requests every 1.5 s (8 per second on average, below
//! the server's 10, but each burst above its 10 at once).

use std::error::Error;
use std::time::Duration;

use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use reqwest_throttle::rollout::{RolloutKey, RolloutStats, SideStats};
use reqwest_throttle::sim::SimulatedApi;
use reqwest_throttle::{Policy, Rate, Throttle};
use tokio::time::Instant;

const HOST: &str = "api.test";
const BURSTS: u32 = 40;
const BURST: u32 = 12;
const EVERY: Duration = Duration::from_millis(1_500);

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), Box<dyn Error>> {
    let api = SimulatedApi::builder()
        .token_bucket(10.0, 10)
        .latency(Duration::from_millis(30))
        .build();
    // The documented limit, in shadow mode to begin with.
    let throttle = Throttle::builder()
        .host(HOST, Policy::new().rate(Rate::per_second(10)).shadow())
        .build()?;
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(throttle.clone())
        .with(api.clone())
        .build();
    let rollout = throttle.rollout(HOST);
    let mut previous = RolloutStats::default();
    let mut waited_before = Duration::ZERO;
    for percent in [0.0, 30.0, 100.0] {
        rollout.set_enforced_percent(percent)?;
        let before = api.stats();
        send_bursts(&client).await;
        let server = api.stats();
        let lane = throttle.stats().lane("http://api.test:80").cloned();
        let lane = lane.ok_or("the lane exists")?;
        let stats = lane.rollout.ok_or("the lane takes part in the rollout")?;
        println!(
            "step: {percent} % enforced; the server answered {} OK and {} 429s",
            server.ok - before.ok,
            server.limited - before.limited
        );
        print_side("  enforced", &stats.enforced, &previous.enforced);
        println!(
            "  enforced requests waited {:.1} s in all",
            (lane.waited_total - waited_before).as_secs_f64()
        );
        waited_before = lane.waited_total;
        print_side("  shadowed", &stats.shadowed, &previous.shadowed);
        let would = &stats.would_have;
        let earlier = &previous.would_have;
        println!(
            "  shadowed, enforcing would have: made {} wait ({:.1} s in all), refused {}, retried {}",
            would.waited - earlier.waited,
            (would.waited_total - earlier.waited_total).as_secs_f64(),
            would.refused_total() - earlier.refused_total(),
            would.retried - earlier.retried
        );
        previous = stats;
    }
    println!("(latency percentiles are over the whole run so far, within 3.2 %)");
    Ok(())
}

/// The workload: `BURSTS` bursts of `BURST` requests, each from one of 40 tenants.
async fn send_bursts(client: &ClientWithMiddleware) {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for burst in 0..BURSTS {
        for n in 0..BURST {
            let client = client.clone();
            let tenant = (burst * BURST + n) % 40;
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep_until(start + EVERY * burst).await;
                client
                    .get("http://api.test/v1/things")
                    .with_extension(RolloutKey::new(format!("tenant-{tenant}")))
                    .send()
                    .await
            }));
        }
    }
    for task in tasks {
        // Errors are counted in the stats; the example only waits for every request.
        let _ = task.await;
    }
}

fn print_side(name: &str, now: &SideStats, before: &SideStats) {
    let requests = now.requests - before.requests;
    if requests == 0 {
        println!("{name}: no requests");
        return;
    }
    println!(
        "{name}: {requests} requests, {} 429s, {} succeeded; latency p50 {:?} p95 {:?} p99 {:?}",
        now.rate_limited - before.rate_limited,
        now.succeeded - before.succeeded,
        now.latency.p50,
        now.latency.p95,
        now.latency.p99,
    );
}
