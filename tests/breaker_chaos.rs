//! The circuit breaker through the middleware: a service that goes down and comes back, over
//! real sockets (the simulated API on 127.0.0.1) in virtual time.

use std::time::Duration;

use http::StatusCode;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use reqwest_throttle::breaker::{BreakerConfig, BreakerState};
use reqwest_throttle::retry::RetryPolicy;
use reqwest_throttle::sim::{Outage, SimulatedApi};
use reqwest_throttle::{Error, Policy, Throttle};
use tokio::time::Instant;

const THRESHOLD: u32 = 5;
const OPEN_FOR: Duration = Duration::from_secs(1);
const OUTAGE_STARTS: Duration = Duration::from_secs(2);
const OUTAGE_ENDS: Duration = Duration::from_secs(12);

fn breaker() -> BreakerConfig {
    BreakerConfig::default()
        .consecutive_failures(THRESHOLD)
        .open_for(OPEN_FOR, OPEN_FOR)
        .jitter(0.0)
        .half_open_probes(1)
}

#[derive(Debug)]
enum Seen {
    Ok,
    Failed,
    CircuitOpen { waited: Duration },
}

/// One caller sending a request every 20 ms for `total` virtual time, recording what it saw.
async fn caller(
    client: ClientWithMiddleware,
    url: String,
    total: Duration,
) -> Vec<(Duration, Seen)> {
    let start = Instant::now();
    let mut seen = Vec::new();
    while Instant::now() - start < total {
        let sent = Instant::now();
        let outcome = match client.get(&url).send().await {
            Ok(response) if response.status() == StatusCode::OK => Seen::Ok,
            Ok(_) => Seen::Failed,
            Err(err) => match Error::from_middleware(&err) {
                Some(Error::CircuitOpen { .. }) => Seen::CircuitOpen {
                    waited: Instant::now() - sent,
                },
                _ => Seen::Failed,
            },
        };
        seen.push((sent - start, outcome));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    seen
}

async fn outage_and_recovery(outage: Outage, retry: RetryPolicy) {
    let api = SimulatedApi::builder().build();
    let server = api.serve().await.unwrap();
    let throttle = Throttle::builder()
        .default_policy(Policy::new().breaker(breaker()).retry(retry))
        .build()
        .unwrap();
    let client = ClientBuilder::new(
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap(),
    )
    .with(throttle.clone())
    .build();

    let start = Instant::now();
    let load = tokio::spawn(caller(client, server.url("/"), Duration::from_secs(16)));
    tokio::time::sleep_until(start + OUTAGE_STARTS).await;
    api.set_outage(Some(outage));
    tokio::time::sleep_until(start + OUTAGE_ENDS).await;
    api.set_outage(None);
    let seen = load.await.unwrap();

    // During the outage the server saw at most the threshold, then one probe per open period.
    let during: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| {
            let at = r.at - start;
            at >= OUTAGE_STARTS && at < OUTAGE_ENDS
        })
        .collect();
    let open_periods =
        ((OUTAGE_ENDS - OUTAGE_STARTS).as_secs_f64() / OPEN_FOR.as_secs_f64()).ceil() as usize;
    assert!(
        during.len() <= THRESHOLD as usize + open_periods,
        "{} requests reached the server during the outage (threshold {THRESHOLD}, {open_periods} open periods)",
        during.len()
    );
    let refused_fast: Vec<_> = seen
        .iter()
        .filter_map(|(_, s)| match s {
            Seen::CircuitOpen { waited } => Some(*waited),
            _ => None,
        })
        .collect();
    // Most callers were answered by the breaker, at once: no connection, no wait.
    assert!(
        refused_fast.len() > 300,
        "only {} fast refusals",
        refused_fast.len()
    );
    assert!(refused_fast.iter().all(|waited| waited.is_zero()));

    // Back to full throughput within one open period plus one probe of the recovery.
    let first_ok_after = seen
        .iter()
        .find(|(at, s)| *at >= OUTAGE_ENDS && matches!(s, Seen::Ok))
        .map(|(at, _)| *at)
        .expect("never recovered");
    assert!(
        first_ok_after <= OUTAGE_ENDS + OPEN_FOR + Duration::from_millis(40),
        "recovered only at {first_ok_after:?}"
    );
    assert!(
        seen.iter()
            .filter(|(at, _)| *at > first_ok_after)
            .all(|(_, s)| matches!(s, Seen::Ok)),
        "failures after recovery"
    );
    let lane = throttle.stats().lanes.pop().unwrap();
    let breaker = lane.breaker.unwrap();
    assert_eq!(breaker.state, BreakerState::Closed);
    assert!(breaker.trips >= 1);
    // A retry stopped by the open breaker hands back the last response instead of an error, so
    // the breaker refused at least as many attempts as callers saw refused.
    assert!(lane.circuit_rejected as usize >= refused_fast.len());
}

#[tokio::test(start_paused = true)]
async fn outage_with_503_opens_probes_and_recovers() {
    outage_and_recovery(
        Outage::Status(StatusCode::SERVICE_UNAVAILABLE),
        RetryPolicy::disabled(),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn refused_connections_open_probe_and_recover() {
    outage_and_recovery(Outage::Refuse, RetryPolicy::disabled()).await;
}

#[tokio::test(start_paused = true)]
async fn retries_do_not_retry_into_an_open_breaker() {
    // With retries on, each failing request retries; the breaker still caps what the server sees.
    outage_and_recovery(
        Outage::Status(StatusCode::SERVICE_UNAVAILABLE),
        RetryPolicy::new(),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_429_storm_never_opens_the_breaker() {
    let api = SimulatedApi::builder()
        .limit(1, Duration::from_secs(3_600))
        .retry_after(reqwest_throttle::sim::RetryAfterStyle::None)
        .build();
    let throttle = Throttle::builder()
        .default_policy(
            Policy::new()
                .breaker(breaker())
                .retry(RetryPolicy::disabled()),
        )
        .build()
        .unwrap();
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(throttle.clone())
        .with(api.clone())
        .build();
    let mut limited = 0;
    for _ in 0..200 {
        let response = client.get("http://api.test/").send().await.unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
        }
    }
    assert_eq!(limited, 199);
    let breaker = throttle.stats().lanes.pop().unwrap().breaker.unwrap();
    assert_eq!(breaker.state, BreakerState::Closed);
    assert_eq!(breaker.trips, 0);
}
