//! Acting on server signals, in virtual time against the simulated API (no sockets):
//! a Retry-After pauses the whole lane, rate-limit headers pace a client that was told nothing,
//! the retry budget bounds the load on a failing service, and a POST is never sent twice.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};

use http::StatusCode;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use reqwest_throttle::retry::{Backoff, RetryPolicy};
use reqwest_throttle::sim::{HeaderStyle, RetryAfterStyle, SimulatedApi};
use reqwest_throttle::{Error, Policy, Throttle};
use tokio::time::Instant;

const URL: &str = "http://api.test/v1/things";

fn client(throttle: &Throttle, api: &SimulatedApi) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(throttle.clone())
        .with(api.clone())
        .build()
}

/// Sends `total` GETs from `tasks` concurrent tasks; returns the statuses the callers saw.
async fn run_load(client: &ClientWithMiddleware, tasks: usize, total: usize) -> Vec<StatusCode> {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let client = client.clone();
            let next = next.clone();
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
                    let response = client.get(URL).send().await.expect("request failed");
                    statuses.push(response.status());
                }
                statuses
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for handle in handles {
        statuses.extend(handle.await.expect("task panicked"));
    }
    statuses
}

/// Answers 429 with `Retry-After: 5` to the first request and 200 to every other, after
/// `latency`, recording the virtual instant each request arrived.
#[derive(Clone, Default)]
struct FirstRefused {
    arrivals: Arc<Mutex<Vec<Instant>>>,
    latency: Duration,
}

impl FirstRefused {
    fn arrivals_since(&self, start: Instant) -> Vec<Duration> {
        let arrivals = self.arrivals.lock().unwrap();
        arrivals.iter().map(|at| *at - start).collect()
    }
}

#[async_trait::async_trait]
impl Middleware for FirstRefused {
    async fn handle(
        &self,
        _request: Request,
        _extensions: &mut Extensions,
        _next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let first = {
            let mut arrivals = self.arrivals.lock().unwrap();
            arrivals.push(Instant::now());
            arrivals.len() == 1
        };
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let response = if first {
            http::Response::builder()
                .status(429)
                .header("retry-after", "5")
                .body("slow down")
        } else {
            http::Response::builder().status(200).body("ok")
        };
        Ok(Response::from(response.unwrap()))
    }
}

#[tokio::test(start_paused = true)]
async fn a_cooldown_holds_back_requests_queued_for_a_concurrency_slot() {
    // Found by the goodput bench: callers queued on the lane's semaphore were sent, one after
    // another, into a cooldown the lane already knew about.
    let server = FirstRefused {
        latency: Duration::from_millis(100),
        ..FirstRefused::default()
    };
    let throttle = Throttle::builder()
        .default_policy(Policy::new().concurrency(1))
        .build()
        .unwrap();
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(throttle)
        .with(server.clone())
        .build();
    let start = Instant::now();
    let statuses = run_load(&client, 3, 3).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    let arrivals = server.arrivals_since(start);
    // The first is answered at 100 ms with a 5 s pause: nothing else arrives before 5.1 s (the
    // two queued callers and the first one's retry).
    assert_eq!(arrivals.len(), 4, "{arrivals:?}");
    assert!(
        arrivals[1..]
            .iter()
            .all(|at| *at >= Duration::from_millis(5_100)),
        "sent into a known cooldown: {arrivals:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_pauses_the_whole_lane() {
    let server = FirstRefused::default();
    let throttle = Throttle::builder().build().unwrap();
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(throttle.clone())
        .with(server.clone())
        .build();

    let start = Instant::now();
    let statuses = run_load(&client, 20, 20).await;
    assert_eq!(statuses.len(), 20);
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );

    let arrivals = server.arrivals_since(start);
    // 20 requests and the one retry.
    assert_eq!(arrivals.len(), 21);
    assert_eq!(arrivals[0], Duration::ZERO);
    // Nothing reached the server during the 5 s it asked for: not the retry, not the 19 other
    // tasks that were already waiting.
    assert!(
        arrivals[1..].iter().all(|at| *at >= Duration::from_secs(5)),
        "{arrivals:?}"
    );
    let lane = throttle.stats().lanes.pop().unwrap();
    assert_eq!((lane.rate_limited, lane.cooldowns, lane.retries), (1, 1, 1));
}

/// The header families a server may pace with, and the scenario of issue 3: a server allowing
/// 100 requests per 10 s window announces its headers; a client with no configured rate sends
/// 1 000 requests from 50 tasks.
async fn paced_by_headers(style: HeaderStyle, limited_status: StatusCode) {
    let api = SimulatedApi::builder()
        .limit(100, Duration::from_secs(10))
        .headers(style)
        .limited_status(limited_status)
        .build();
    let throttle = Throttle::builder().build().unwrap();
    let client = client(&throttle, &api);

    let start = Instant::now();
    let statuses = run_load(&client, 50, 1_000).await;
    let elapsed = Instant::now() - start;
    let stats = api.stats();

    assert_eq!(statuses.len(), 1_000);
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "a caller saw a refusal"
    );
    let provoked = stats.limited as f64 / 1_000.0;
    assert!(
        provoked < 0.01,
        "{style:?}: {} refusals provoked",
        stats.limited
    );
    // Ideal: 1 000 requests at 100 per 10 s take 100 s (the first window opens at once, so 90 s
    // is the floor); 110 % of 100 s is the bound.
    assert!(
        elapsed <= Duration::from_secs(110),
        "{style:?}: took {elapsed:?}, more than 110 % of the ideal 100 s"
    );
    let lane = throttle.stats().lanes.pop().unwrap();
    assert!(lane.paced > 0, "{style:?}: headers were never used");
}

#[tokio::test(start_paused = true)]
async fn openai_headers_pace_an_unconfigured_client() {
    paced_by_headers(HeaderStyle::OpenAi, StatusCode::TOO_MANY_REQUESTS).await;
}

#[tokio::test(start_paused = true)]
async fn github_headers_pace_an_unconfigured_client() {
    // GitHub answers 403 with remaining 0 when the primary limit is hit.
    paced_by_headers(HeaderStyle::GitHub, StatusCode::FORBIDDEN).await;
}

#[tokio::test(start_paused = true)]
async fn ietf_headers_pace_an_unconfigured_client() {
    paced_by_headers(HeaderStyle::Ietf, StatusCode::TOO_MANY_REQUESTS).await;
}

#[tokio::test(start_paused = true)]
async fn ietf_legacy_headers_pace_an_unconfigured_client() {
    paced_by_headers(HeaderStyle::IetfLegacy, StatusCode::TOO_MANY_REQUESTS).await;
}

#[tokio::test(start_paused = true)]
async fn retry_budget_bounds_the_load_on_a_failing_service() {
    let api = SimulatedApi::builder()
        .fail_every(StatusCode::SERVICE_UNAVAILABLE)
        .build();
    let throttle = Throttle::builder()
        // The breaker would stop the load on its own; this test is about the retry budget.
        .default_policy(Policy::new().no_breaker().concurrency(50))
        .build()
        .unwrap();
    let client = client(&throttle, &api);

    let requests = 1_000;
    let statuses = run_load(&client, 50, requests).await;
    // The last response is handed back unchanged after the retries.
    assert!(statuses
        .iter()
        .all(|s| *s == StatusCode::SERVICE_UNAVAILABLE));
    let attempts = api.stats().received;
    let lane = throttle.stats().lanes.pop().unwrap();
    // Default floor: 1 retry per second over each 10 s window the run touched.
    let windows = 1 + api.stats().elapsed().as_secs() / 10;
    let floor = 10 * windows;
    assert!(
        attempts as f64 <= 1.25 * requests as f64 + floor as f64,
        "{attempts} attempts for {requests} requests (floor {floor})"
    );
    assert!(lane.retry_budget_exhausted > 0);
    assert_eq!(lane.sent, attempts);
}

#[tokio::test(start_paused = true)]
async fn post_without_idempotency_key_is_sent_once() {
    let api = SimulatedApi::builder()
        .fail_every(StatusCode::INTERNAL_SERVER_ERROR)
        .build();
    let throttle = Throttle::builder().build().unwrap();
    let client = client(&throttle, &api);

    let response = client
        .post(URL)
        .body("charge the card")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(api.stats().received, 1);

    // The same POST with an Idempotency-Key is safe to repeat: 500 is then retried.
    let response = client
        .post(URL)
        .header("idempotency-key", "c0ffee")
        .body("charge the card")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(api.stats().received, 1 + 4);
}

#[tokio::test(start_paused = true)]
async fn retry_after_beyond_the_cap_is_not_slept_on() {
    let api = SimulatedApi::builder()
        .limit(1, Duration::from_secs(3_600))
        .retry_after(RetryAfterStyle::Seconds)
        .build();
    let throttle = Throttle::builder()
        .default_policy(
            Policy::new().retry(
                RetryPolicy::new()
                    .max_retry_after(Duration::from_secs(60))
                    .fail_on_long_retry_after(true),
            ),
        )
        .build()
        .unwrap();
    let client = client(&throttle, &api);
    client.get(URL).send().await.unwrap();

    let before = Instant::now();
    let err = client.get(URL).send().await.unwrap_err();
    assert_eq!(Instant::now(), before, "slept on an hour-long Retry-After");
    match Error::from_middleware(&err) {
        Some(Error::RetryAfterTooLong {
            retry_after, max, ..
        }) => {
            assert_eq!(*retry_after, Duration::from_secs(3_600));
            assert_eq!(*max, Duration::from_secs(60));
        }
        other => panic!("expected RetryAfterTooLong, got {other:?}"),
    }
    // The lane pauses for at most the cap, never for the hour.
    let lane = throttle.stats().lanes.pop().unwrap();
    assert_eq!(lane.cooldown_remaining, Some(Duration::from_secs(60)));
}

#[tokio::test(start_paused = true)]
async fn retries_respect_the_deadline() {
    let api = SimulatedApi::builder()
        .fail_every(StatusCode::BAD_GATEWAY)
        .build();
    let throttle = Throttle::builder()
        .default_policy(
            Policy::new().max_wait(Duration::from_secs(3)).retry(
                RetryPolicy::new().max_retries(10).backoff(
                    Backoff::exponential(Duration::from_secs(1), Duration::from_secs(60))
                        .jitter(reqwest_throttle::retry::Jitter::None),
                ),
            ),
        )
        .build()
        .unwrap();
    let client = client(&throttle, &api);
    let start = Instant::now();
    let response = client.get(URL).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    // 1 s, then 2 s of backoff fit in 3 s; the next 4 s would not.
    assert_eq!(api.stats().received, 3);
    assert!(Instant::now() - start <= Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn refusals_without_headers_teach_the_lane_a_pace() {
    // 50 requests per 1 s window, 429 with Retry-After, and not a single rate-limit header: the
    // situation of the goodput bench, in virtual time with 10 ms of latency.
    let api = SimulatedApi::builder()
        .limit(50, Duration::from_secs(1))
        .retry_after(RetryAfterStyle::Seconds)
        .latency(Duration::from_millis(10))
        .build();
    let throttle = Throttle::builder().build().unwrap();
    let client = client(&throttle, &api);

    let start = Instant::now();
    let statuses = run_load(&client, 32, 1_000).await;
    let elapsed = Instant::now() - start;
    let stats = api.stats();

    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "a caller saw a refusal"
    );
    let provoked = stats.limited as f64 / 1_000.0;
    assert!(
        provoked <= 0.05,
        "{} refusals provoked for 1 000 requests",
        stats.limited
    );
    // Goodput: 1 000 requests at 50/s take 20 s at best. The lane ramps its rate up per
    // request after a first refusal, which a leaky bucket needs; against this fixed window its
    // first resumed rate overshoots the count, which costs a pause, and the first refusal
    // within a cycle is taken for a bucket's jitter (a hair too fast) before a second one shows
    // the window: two pauses, about 82 %. Taking the first for a window at once read a real
    // nginx bucket refusing an arrival that came early as a window of a third of its rate.
    let goodput = 20.0 / elapsed.as_secs_f64();
    assert!(
        goodput >= 0.8,
        "took {elapsed:?}: {:.1} % of the limit",
        goodput * 100.0
    );
}

/// Answers every request with 429 and the given hostile `Retry-After` and rate-limit headers.
#[derive(Clone)]
struct Hostile(&'static [(&'static str, &'static str)]);

#[async_trait::async_trait]
impl Middleware for Hostile {
    async fn handle(
        &self,
        _request: Request,
        _extensions: &mut Extensions,
        _next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let mut response = http::Response::builder().status(429);
        for (name, value) in self.0 {
            response = response.header(*name, *value);
        }
        Ok(Response::from(response.body("no").unwrap()))
    }
}

#[tokio::test(start_paused = true)]
async fn hostile_server_values_are_capped_not_slept_on_and_never_panic() {
    let cases: [&'static [(&'static str, &'static str)]; 4] = [
        &[("retry-after", "99999999999999999999")],
        &[("retry-after-ms", "1e400"), ("retry-after", "-5")],
        &[
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "9999999999h"),
        ],
        &[
            ("ratelimit", "\"default\";r=0;t=99999999999999"),
            ("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT"),
        ],
    ];
    for headers in cases {
        let throttle = Throttle::builder().build().unwrap();
        let client = ClientBuilder::new(reqwest::Client::new())
            .with(throttle.clone())
            .with(Hostile(headers))
            .build();
        let start = Instant::now();
        let response = client.get(URL).send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "{headers:?}"
        );
        // Whatever the server said, the lane pauses for at most the 120 s cap.
        let lane = throttle.stats().lanes.pop().unwrap();
        assert!(
            lane.cooldown_remaining.unwrap_or_default() <= Duration::from_secs(120),
            "{headers:?}: {lane:?}"
        );
        assert!(
            Instant::now() - start <= Duration::from_secs(4 * 120),
            "{headers:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn no_free_concurrency_slot_within_max_wait_is_a_typed_error() {
    let api = SimulatedApi::builder()
        .latency(Duration::from_secs(10))
        .build();
    let throttle = Throttle::builder()
        .default_policy(
            Policy::new()
                .concurrency(1)
                .max_wait(Duration::from_secs(2)),
        )
        .build()
        .unwrap();
    let client = client(&throttle, &api);
    let busy = tokio::spawn({
        let client = client.clone();
        async move { client.get(URL).send().await.unwrap().status() }
    });
    tokio::task::yield_now().await;
    let start = Instant::now();
    let err = client.get(URL).send().await.unwrap_err();
    // It waited its 2 s for the slot, not the 10 s the busy request holds it.
    assert_eq!(Instant::now() - start, Duration::from_secs(2));
    match Error::from_middleware(&err) {
        Some(Error::Saturated { max_wait, .. }) => assert_eq!(*max_wait, Duration::from_secs(2)),
        other => panic!("expected Saturated, got {other:?}"),
    }
    assert!(err.to_string().contains("concurrency"), "{err}");
    assert_eq!(busy.await.unwrap(), StatusCode::OK);
    assert_eq!(api.stats().received, 1);
}
