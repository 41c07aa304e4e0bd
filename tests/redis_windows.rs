//! Longer windows on a lane whose rate is shared through Redis (feature `redis`): the rate is
//! the fleet's, each window is each process's own, booked before the store.
//!
//! Runs in real time against a `redis-server` of its own (see `redis_store.rs`); skipped
//! without one outside CI.

use std::time::Duration;

use reqwest_middleware::ClientBuilder;
use reqwest_throttle::retry::RetryPolicy;
use reqwest_throttle::sim::SimulatedApi;
use reqwest_throttle::{Dimension, Error, Policy, Rate, Throttle};

mod redis_server;
use redis_server::{store, RedisServer};

#[tokio::test]
async fn each_process_keeps_its_own_windows_beside_the_fleets_rate() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let api = SimulatedApi::builder().build();
    let policy = Policy::new()
        .requests([Rate::per_second(2).burst(2), Rate::per_hour(3)])
        .max_wait(Duration::from_secs(1))
        .retry(RetryPolicy::disabled())
        .no_breaker();
    let mut outcomes = Vec::new();
    for _ in 0..2 {
        let throttle = Throttle::builder()
            .default_policy(policy.clone())
            .store(store(&server, "windows"))
            .build()
            .unwrap();
        let client = ClientBuilder::new(reqwest::Client::new())
            .with(throttle.clone())
            .with(api.clone())
            .build();
        for _ in 0..4 {
            let sent = tokio::time::timeout(
                Duration::from_secs(5),
                client.get("http://api.test/v1/things").send(),
            )
            .await
            .expect("no hang");
            outcomes.push(match sent {
                Ok(response) => Ok(response.status().as_u16()),
                Err(error) => Err(Error::from_middleware(&error).map(|e| match e {
                    Error::WindowSpent {
                        dimension, quota, ..
                    } => (*dimension, *quota),
                    other => panic!("{other}"),
                })),
            });
        }
        assert!(throttle.stats().store.unwrap().round_trips >= 3);
    }
    // Three each (the hour's window is each process's), and the fourth refused naming it.
    let spent = Err(Some((Dimension::Requests, 3)));
    let each = [Ok(200), Ok(200), Ok(200), spent];
    assert_eq!(outcomes, [each, each].concat());
    assert_eq!(api.stats().received, 6);
}
