//! Clients of a shared store for the Redis tests (`redis_store`, `redis_tls`, `redis_cluster`):
//! a throttle with one lane and nothing that would hide an outcome (no retries, no breaker, no
//! concurrency cap), in front of the simulated API, and requests sent under a bound that turns a
//! hang into a failure.

use std::time::Duration;

use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use reqwest_throttle::retry::RetryPolicy;
use reqwest_throttle::sim::SimulatedApi;
use reqwest_throttle::store::RedisStore;
use reqwest_throttle::{Policy, Rate, Throttle};

/// The one URL the tests request.
pub const URL: &str = "http://api.test/v1/things";
/// Bounds every request: a store that hangs fails the test instead of stalling it.
pub const NO_HANG: Duration = Duration::from_secs(5);

/// A throttle whose only lane is limited to `rate`, sharing its budget through `store` if any;
/// no retries, no breaker: every request is one attempt and ends as a response or an error.
pub fn client(
    rate: Rate,
    store: Option<RedisStore>,
    api: &SimulatedApi,
) -> (Throttle, ClientWithMiddleware) {
    client_with(Policy::new().rate(rate), store, api)
}

/// The same with `policy` (its rate, if any), no retries, no breaker.
pub fn client_with(
    policy: Policy,
    store: Option<RedisStore>,
    api: &SimulatedApi,
) -> (Throttle, ClientWithMiddleware) {
    let policy = policy
        .retry(RetryPolicy::disabled())
        .no_breaker()
        .unlimited_concurrency();
    let builder = Throttle::builder().default_policy(policy);
    let builder = match store {
        Some(store) => builder.store(store),
        None => builder,
    };
    let throttle = builder.build().expect("a valid throttle");
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(throttle.clone())
        .with(api.clone())
        .build();
    (throttle, client)
}

/// One GET, which must end (as a status or the crate's error) within `bound`.
pub async fn send(client: &ClientWithMiddleware, bound: Duration) -> Result<u16, String> {
    match tokio::time::timeout(bound, client.get(URL).send()).await {
        Err(_) => panic!("a request hung"),
        Ok(Ok(response)) => Ok(response.status().as_u16()),
        Ok(Err(error)) => Err(error.to_string()),
    }
}

/// Sends `n` GETs at once through each client, each within `bound`; the statuses (or the
/// crate's errors) in order.
pub async fn send_all(
    clients: &[&ClientWithMiddleware],
    n: usize,
    bound: Duration,
) -> Vec<Result<u16, String>> {
    let mut tasks = Vec::new();
    for client in clients {
        for _ in 0..n {
            let client = (*client).clone();
            tasks.push(tokio::spawn(async move { send(&client, bound).await }));
        }
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("no panic"));
    }
    outcomes
}
