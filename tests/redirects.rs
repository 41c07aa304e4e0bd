//! Redirects, as the README documents them: reqwest follows them below the middleware, so the
//! whole chain is the origin's request — a redirect target's 429 cools the origin's lane and the
//! target's own rule is never applied. With redirects off in reqwest and followed above the
//! throttle, each hop goes through its own lane.

use std::time::Duration;

use reqwest::header::LOCATION;
use reqwest::{redirect, StatusCode, Url};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use reqwest_throttle::retry::RetryPolicy;
use reqwest_throttle::{Policy, Rate, Throttle};
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// An origin that redirects `/start` to a target that refuses with 429 and `Retry-After: 30`.
async fn origin_and_target() -> (MockServer, MockServer) {
    let origin = MockServer::start().await;
    let target = MockServer::start().await;
    Mock::given(path("/start"))
        .respond_with(
            ResponseTemplate::new(302).insert_header("location", format!("{}/end", target.uri())),
        )
        .mount(&origin)
        .await;
    Mock::given(path("/end"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "30"))
        .mount(&target)
        .await;
    (origin, target)
}

/// No retries, so one request shows what one response does to the lanes; the target has a rule
/// of its own (one request a minute) that a followed redirect never meets.
fn throttle(target: &MockServer) -> Throttle {
    let port = target.address().port();
    Throttle::builder()
        .default_policy(Policy::new().retry(RetryPolicy::disabled()))
        .host(
            &format!("127.0.0.1:{port}"),
            Policy::new()
                .rate(Rate::per_minute(1))
                .retry(RetryPolicy::disabled()),
        )
        .build()
        .unwrap()
}

fn client(http: reqwest::Client, throttle: &Throttle) -> ClientWithMiddleware {
    ClientBuilder::new(http).with(throttle.clone()).build()
}

#[tokio::test(start_paused = true)]
async fn a_followed_redirect_targets_429_cools_the_origins_lane() {
    let (origin, target) = origin_and_target().await;
    let throttle = throttle(&target);
    let client = client(reqwest::Client::new(), &throttle);
    let response = client
        .get(format!("{}/start", origin.uri()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let stats = throttle.stats();
    assert_eq!(stats.lanes.len(), 1, "only the origin's lane: {stats:?}");
    let origin_lane = stats.lane(&origin.uri()).expect("origin lane");
    assert_eq!(origin_lane.rate_limited, 1);
    let pause = origin_lane
        .cooldown_remaining
        .expect("the origin cools down");
    assert!(pause > Duration::from_secs(25), "{pause:?}");
}

#[tokio::test(start_paused = true)]
async fn redirects_followed_above_the_throttle_go_through_each_hosts_lane() {
    let (origin, target) = origin_and_target().await;
    let throttle = throttle(&target);
    let http = reqwest::Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .unwrap();
    let client = client(http, &throttle);
    // The redirect loop of a misconfigured server.
    let mut url = Url::parse(&format!("{}/start", origin.uri())).unwrap();
    let mut response = client.get(url.clone()).send().await.unwrap();
    for _ in 0..10 {
        let Some(location) = response.headers().get(LOCATION) else {
            break;
        };
        if !response.status().is_redirection() {
            break;
        }
        url = url.join(location.to_str().unwrap()).unwrap();
        response = client.get(url.clone()).send().await.unwrap();
    }
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let stats = throttle.stats();
    let origin_lane = stats.lane(&origin.uri()).expect("origin lane");
    assert_eq!(
        (origin_lane.rate_limited, origin_lane.cooldown_remaining),
        (0, None),
        "the origin only redirected"
    );
    let target_lane = stats.lane(&target.uri()).expect("target lane");
    assert_eq!(target_lane.rate_limited, 1);
    assert!(target_lane.cooldown_remaining.is_some());
}
