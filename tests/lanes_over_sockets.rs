//! Lanes through real sockets (wiremock on 127.0.0.1), in virtual time: hosts are limited
//! independently, unknown hosts get the default policy, and `max_wait` fails fast.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};

use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use reqwest_throttle::{Dimension, Error, MaxWait, Policy, Rate, Throttle};
use tokio::time::Instant;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn ok_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    server
}

fn client(throttle: &Throttle) -> ClientWithMiddleware {
    ClientBuilder::new(plain_client())
        .with(throttle.clone())
        .build()
}

/// No idle connections, so no pool timers for paused time to jump to.
fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// Records, per URL authority, the virtual instant each request left the throttle. Waiting on
/// real sockets lets paused time jump ahead, so completion times say nothing; departure times
/// are exact.
#[derive(Clone, Default)]
struct Departures(Arc<Mutex<Vec<(String, Instant)>>>);

#[async_trait::async_trait]
impl Middleware for Departures {
    async fn handle(
        &self,
        request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let authority = request.url().authority().to_owned();
        self.0.lock().unwrap().push((authority, Instant::now()));
        next.run(request, extensions).await
    }
}

impl Departures {
    /// Departure offsets from `start` of requests to `server`, sorted.
    fn of(&self, server: &MockServer, start: Instant) -> Vec<Duration> {
        let authority = host_port(server);
        let mut times: Vec<_> = self
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(a, _)| *a == authority)
            .map(|(_, at)| *at - start)
            .collect();
        times.sort();
        times
    }
}

fn host_port(server: &MockServer) -> String {
    server.address().to_string()
}

/// Sends `n` concurrent GETs to `url`, each expected to succeed.
async fn burst(client: &ClientWithMiddleware, url: String, n: usize) {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let client = client.clone();
            let url = url.clone();
            tokio::spawn(async move {
                let response = client.get(url).send().await.expect("request failed");
                assert_eq!(response.status(), 200);
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task panicked");
    }
}

#[tokio::test(start_paused = true)]
async fn two_hosts_with_different_policies_are_limited_independently() {
    let slow = ok_server().await;
    let fast = ok_server().await;
    let throttle = Throttle::builder()
        .host(
            &host_port(&slow),
            Policy::new().rate(Rate::per_second(1).burst(1)),
        )
        .host(
            &host_port(&fast),
            Policy::new().rate(Rate::per_second(10).burst(1)),
        )
        .build()
        .unwrap();
    let departures = Departures::default();
    let client = ClientBuilder::new(plain_client())
        .with(throttle.clone())
        .with(departures.clone())
        .build();

    let start = Instant::now();
    tokio::join!(burst(&client, slow.uri(), 5), burst(&client, fast.uri(), 5),);
    let slow_left = departures.of(&slow, start);
    let fast_left = departures.of(&fast, start);
    // The slow host paces one request per second: they leave at 0, 1, 2, 3 and 4 s.
    let seconds = |n: u64| Duration::from_secs(n);
    assert_eq!(slow_left, (0..5).map(seconds).collect::<Vec<_>>());
    // The fast host is not held back by the slow one: one every 100 ms.
    let tenths = |n: u64| Duration::from_millis(100 * n);
    assert_eq!(fast_left, (0..5).map(tenths).collect::<Vec<_>>());
    assert_eq!(slow.received_requests().await.unwrap().len(), 5);
    assert_eq!(fast.received_requests().await.unwrap().len(), 5);

    let stats = throttle.stats();
    assert_eq!(stats.lanes.len(), 2);
    let slow_lane = stats.lane(&format!("http://{}", host_port(&slow))).unwrap();
    assert_eq!(slow_lane.sent, 5);
    assert_eq!(slow_lane.completed, 5);
    assert_eq!(slow_lane.rate, Some(1.0));
    assert!(slow_lane.waited_max >= Duration::from_secs(4));
}

#[tokio::test(start_paused = true)]
async fn unknown_host_gets_the_default_policy() {
    let configured = ok_server().await;
    let unknown = ok_server().await;
    let throttle = Throttle::builder()
        .host(
            &host_port(&configured),
            Policy::new().rate(Rate::per_second(100)),
        )
        .default_policy(
            Policy::new()
                .rate(Rate::new(1, Duration::from_secs(86_400)))
                .max_wait(Duration::ZERO),
        )
        .build()
        .unwrap();
    let client = client(&throttle);

    for _ in 0..3 {
        client.get(configured.uri()).send().await.unwrap();
    }
    client.get(unknown.uri()).send().await.unwrap();
    let err = client.get(unknown.uri()).send().await.unwrap_err();
    assert!(
        matches!(Error::from_middleware(&err), Some(Error::WouldWait { .. })),
        "{err}"
    );
    assert_eq!(unknown.received_requests().await.unwrap().len(), 1);

    let stats = throttle.stats();
    let unknown_lane = stats
        .lane(&format!("http://{}", host_port(&unknown)))
        .unwrap();
    assert_eq!(unknown_lane.rate, Some(1.0 / 86_400.0));
    assert_eq!(unknown_lane.rejected, 1);
}

#[tokio::test(start_paused = true)]
async fn the_built_in_default_has_no_rate_cap() {
    let server = ok_server().await;
    let throttle = Throttle::builder().build().unwrap();
    let client = client(&throttle);
    burst(&client, server.uri(), 40).await;
    let lane = throttle.stats().lanes.pop().unwrap();
    assert_eq!(lane.rate, None);
    assert_eq!(lane.sent, 40);
    assert_eq!(lane.completed, 40);
    assert_eq!((lane.in_flight, lane.queued, lane.rejected), (0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn max_wait_fails_fast_with_the_typed_error() {
    let server = ok_server().await;
    let throttle = Throttle::builder()
        .default_policy(
            Policy::new()
                .rate(Rate::per_minute(1))
                .max_wait(Duration::from_secs(1)),
        )
        .build()
        .unwrap();
    let client = client(&throttle);
    client.get(server.uri()).send().await.unwrap();

    let before = Instant::now();
    let err = client.get(server.uri()).send().await.unwrap_err();
    // Failed without sleeping: virtual time did not move.
    assert_eq!(Instant::now(), before);
    match Error::from_middleware(&err) {
        Some(Error::WouldWait {
            dimension,
            wait,
            max_wait,
            lane,
        }) => {
            assert_eq!(*dimension, Dimension::Requests);
            // Paused time may have jumped while the first request waited on its socket.
            assert!(
                *wait <= Duration::from_secs(60) && *wait > Duration::from_secs(1),
                "{wait:?}"
            );
            assert_eq!(*max_wait, Duration::from_secs(1));
            assert_eq!(lane.as_str(), format!("http://{}", host_port(&server)));
        }
        other => panic!("expected WouldWait, got {other:?}"),
    }
    assert!(err.to_string().contains("raise max_wait"), "{err}");

    // A per-request MaxWait overrides the policy: this one waits its minute and goes.
    let response = client
        .get(server.uri())
        .with_extension(MaxWait(Duration::from_secs(120)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(Instant::now() - before >= Duration::from_secs(60) - Duration::from_secs(1));
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}
