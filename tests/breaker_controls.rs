//! Operator controls and the transition hook, through the middleware (simulated API, no sockets).

use std::sync::{Arc, Mutex};

use http::StatusCode;
use reqwest_middleware::ClientBuilder;
use reqwest_throttle::breaker::BreakerState;
use reqwest_throttle::retry::RetryPolicy;
use reqwest_throttle::sim::{Outage, SimulatedApi};
use reqwest_throttle::{Error, Policy, Throttle};

const URL: &str = "http://api.test/";
const LANE: &str = "http://api.test:80";

#[tokio::test(start_paused = true)]
async fn operators_can_force_open_force_closed_and_reset() {
    let api = SimulatedApi::builder().build();
    let transitions = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&transitions);
    let throttle = Throttle::builder()
        .default_policy(Policy::new().retry(RetryPolicy::disabled()))
        .on_breaker_transition(move |lane, t| {
            seen.lock().unwrap().push((lane.to_string(), t.from, t.to));
        })
        .build()
        .unwrap();
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(throttle.clone())
        .with(api.clone())
        .build();

    assert!(
        throttle.breaker(LANE).is_none(),
        "no lane before the first request"
    );
    client.get(URL).send().await.unwrap();
    let control = throttle.breaker(LANE).unwrap();

    control.force_open();
    let err = client.get(URL).send().await.unwrap_err();
    assert!(matches!(
        Error::from_middleware(&err),
        Some(Error::CircuitOpen { .. })
    ));
    assert_eq!(
        api.stats().received,
        1,
        "a forced-open circuit sent a request"
    );

    // Forced closed: a failing service does not open it.
    control.force_closed();
    api.set_outage(Some(Outage::Status(StatusCode::SERVICE_UNAVAILABLE)));
    for _ in 0..20 {
        let response = client.get(URL).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(control.state(), Some(BreakerState::Closed));

    // Reset: a normal breaker again, which the outage now trips after 5 failures.
    control.reset();
    for _ in 0..5 {
        client.get(URL).send().await.unwrap();
    }
    let err = client.get(URL).send().await.unwrap_err();
    assert!(matches!(
        Error::from_middleware(&err),
        Some(Error::CircuitOpen { .. })
    ));
    assert!(err.to_string().contains(LANE), "{err}");
    assert_eq!(control.state(), Some(BreakerState::Open));

    let transitions = transitions.lock().unwrap();
    assert!(transitions.iter().all(|(lane, _, _)| lane == LANE));
    assert_eq!(
        transitions.last().map(|(_, from, to)| (*from, *to)),
        Some((BreakerState::Closed, BreakerState::Open))
    );
    assert!(transitions.len() >= 3, "{transitions:?}");
}
