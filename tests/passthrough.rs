//! `Policy::passthrough()`: a host under it is sent to exactly as the bare client would (no
//! retry, no breaker, no pause, no cap, no lane), while a host with a policy in the same
//! throttle still gets all of it. In virtual time, against a scripted origin that answers every
//! request with the status it is told and counts what reaches it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
use reqwest_throttle::retry::RetryPolicy;
use reqwest_throttle::{Error, Outcome, Policy, Rate, Throttle};
use tokio::time::Instant;

const THROTTLED: &str = "http://throttled.test/";
const OTHER: &str = "http://other.test/";

/// Answers every request with `status` (and `retry-after`, if set) after holding it `hold`;
/// counts the requests per host and the most in flight at once.
#[derive(Clone, Default)]
struct Origin {
    status: u16,
    retry_after: Option<&'static str>,
    hold: Duration,
    received: Arc<Mutex<HashMap<String, usize>>>,
    in_flight: Arc<AtomicUsize>,
    most_in_flight: Arc<AtomicUsize>,
}

impl Origin {
    fn answering(status: u16) -> Origin {
        Origin {
            status,
            ..Origin::default()
        }
    }

    fn received(&self, url: &str) -> usize {
        let host = reqwest::Url::parse(url)
            .unwrap()
            .host_str()
            .unwrap()
            .to_owned();
        self.received
            .lock()
            .unwrap()
            .get(&host)
            .copied()
            .unwrap_or(0)
    }
}

#[async_trait::async_trait]
impl Middleware for Origin {
    async fn handle(
        &self,
        request: Request,
        _: &mut Extensions,
        _: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let host = request.url().host_str().unwrap_or_default().to_owned();
        *self.received.lock().unwrap().entry(host).or_default() += 1;
        let now = self.in_flight.fetch_add(1, Relaxed) + 1;
        self.most_in_flight.fetch_max(now, Relaxed);
        tokio::time::sleep(self.hold).await;
        self.in_flight.fetch_sub(1, Relaxed);
        let mut response = http::Response::builder().status(self.status);
        if let Some(retry_after) = self.retry_after {
            response = response.header("retry-after", retry_after);
        }
        Ok(Response::from(response.body(String::new()).unwrap()))
    }
}

/// `throttled.test` under `policy`, every other host passed through.
fn client(policy: Policy, origin: &Origin) -> (Throttle, ClientWithMiddleware) {
    let throttle = Throttle::builder()
        .host("throttled.test", policy)
        .default_policy(Policy::passthrough())
        .build()
        .unwrap();
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(throttle.clone())
        .with(origin.clone())
        .build();
    (throttle, client)
}

#[tokio::test(start_paused = true)]
async fn an_unmatched_host_is_not_retried_on_503_or_429() {
    for status in [503, 429] {
        let origin = Origin {
            retry_after: Some("1"),
            ..Origin::answering(status)
        };
        let (_, client) = client(Policy::new(), &origin);
        let response = client.get(OTHER).send().await.unwrap();
        assert_eq!(response.status().as_u16(), status);
        assert_eq!(origin.received(OTHER), 1, "{status}: sent once");
        let response = client.get(THROTTLED).send().await.unwrap();
        assert_eq!(response.status().as_u16(), status);
        assert!(
            origin.received(THROTTLED) > 1,
            "{status}: the throttled host is retried"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn no_breaker_opens_for_an_unmatched_host() {
    let origin = Origin::answering(500);
    let retry = RetryPolicy::disabled();
    let (_, client) = client(Policy::new().retry(retry), &origin);
    for n in 1..=50 {
        let response = client.get(OTHER).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 500);
        assert_eq!(
            origin.received(OTHER),
            n,
            "every failure reaches the server"
        );
    }
    // The throttled host's breaker opens after its 5 consecutive failures.
    let mut refused = None;
    for _ in 0..50 {
        if let Err(error) = client.get(THROTTLED).send().await {
            refused = Some(error);
            break;
        }
    }
    let refused = refused.expect("the throttled host's circuit opens");
    assert!(matches!(
        Error::from_middleware(&refused),
        Some(Error::CircuitOpen { .. })
    ));
    assert_eq!(origin.received(THROTTLED), 5);
}

#[tokio::test(start_paused = true)]
async fn a_429_with_retry_after_pauses_nothing_on_an_unmatched_host() {
    let origin = Origin {
        retry_after: Some("60"),
        ..Origin::answering(429)
    };
    let policy = Policy::new()
        .retry(RetryPolicy::disabled())
        .max_wait(Duration::from_secs(1));
    let (_, client) = client(policy, &origin);
    let start = Instant::now();
    for n in 1..=3 {
        let response = client.get(OTHER).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 429);
        assert_eq!(origin.received(OTHER), n);
    }
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "the next request went at once"
    );
    // The throttled host pauses for the minute the server asked for.
    client.get(THROTTLED).send().await.unwrap();
    let error = client.get(THROTTLED).send().await.unwrap_err();
    let error = Error::from_middleware(&error).expect("the throttle's error");
    assert!(matches!(error, Error::CoolingDown { .. }), "{error}");
    assert!(error
        .retry_in()
        .is_some_and(|wait| wait > Duration::from_secs(50)));
    assert_eq!(origin.received(THROTTLED), 1);
}

#[tokio::test(start_paused = true)]
async fn an_unmatched_host_has_no_concurrency_cap() {
    const REQUESTS: usize = 20;
    let origin = Origin {
        hold: Duration::from_secs(1),
        ..Origin::answering(200)
    };
    let (_, client) = client(Policy::new().concurrency(2), &origin);
    let send_all = |url: &'static str| {
        let requests = (0..REQUESTS).map(|_| client.get(url).send());
        futures_util::future::join_all(requests)
    };
    for response in send_all(OTHER).await {
        assert_eq!(response.unwrap().status().as_u16(), 200);
    }
    assert_eq!(origin.most_in_flight.swap(0, Relaxed), REQUESTS);
    // Beyond the default policy's cap too.
    const { assert!(REQUESTS > reqwest_throttle::DEFAULT_CONCURRENCY) };
    for response in send_all(THROTTLED).await {
        assert_eq!(response.unwrap().status().as_u16(), 200);
    }
    assert_eq!(origin.most_in_flight.load(Relaxed), 2);
}

#[tokio::test(start_paused = true)]
async fn an_unmatched_host_makes_no_lane_and_no_outcome() {
    let origin = Origin::answering(200);
    let (throttle, client) = client(Policy::new().rate(Rate::per_second(10)), &origin);
    let response = client.get(OTHER).send().await.unwrap();
    assert!(response.extensions().get::<Outcome>().is_none());
    let response = client.get(THROTTLED).send().await.unwrap();
    assert!(response.extensions().get::<Outcome>().is_some());
    let lanes: Vec<_> = throttle
        .stats()
        .lanes
        .into_iter()
        .map(|lane| lane.key)
        .collect();
    assert_eq!(lanes.len(), 1, "{lanes:?}");
    assert!(lanes[0].as_str().contains("throttled.test"), "{lanes:?}");
}

/// A host pattern can be passed through while the default stays throttled.
#[tokio::test(start_paused = true)]
async fn a_host_pattern_can_be_passed_through() {
    let origin = Origin::answering(503);
    let throttle = Throttle::builder()
        .host("*.test", Policy::passthrough())
        .build()
        .unwrap();
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(throttle)
        .with(origin.clone())
        .build();
    client.get("http://a.test/").send().await.unwrap();
    assert_eq!(origin.received("http://a.test/"), 1);
    client.get("http://a.example/").send().await.unwrap();
    assert!(
        origin.received("http://a.example/") > 1,
        "the default retries"
    );
}

#[test]
fn a_passthrough_policy_refuses_the_settings_it_would_not_apply() {
    let cases = [
        (Policy::passthrough().rate(Rate::per_second(1)), "rate:"),
        (Policy::passthrough().concurrency(4), "concurrency:"),
        (Policy::passthrough().retry(RetryPolicy::new()), "retry:"),
        (
            Policy::passthrough().breaker(Default::default()),
            "breaker:",
        ),
        (
            Policy::passthrough().max_wait(Duration::from_secs(1)),
            "max_wait:",
        ),
        (Policy::passthrough().shadow(), "enforce_percent:"),
    ];
    for (policy, field) in cases {
        let message = policy.validate().unwrap_err().to_string();
        assert!(message.starts_with(field), "{message}");
        let built = Throttle::builder().default_policy(policy).build();
        assert!(built.is_err());
    }
    // Settings that agree with it are fine.
    let agreeing = Policy::passthrough()
        .unlimited_concurrency()
        .no_breaker()
        .retry(RetryPolicy::disabled());
    assert!(agreeing.validate().is_ok());
    assert!(!Policy::new().is_passthrough());
}
