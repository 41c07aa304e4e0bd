//! A Retry-After pause must also hold back the requests that had already passed the rate and
//! cooldown gate and were queued for a concurrency slot when the 429 came back (issue 3: "no
//! request to that lane leaves before it, including requests that were already waiting").
//!
//! Found by `benches/goodput.rs`: with the default policy (8 in flight) and 32 callers, up to 32
//! requests per server window were refused with 429, not 8: the 24 callers queued on the lane's
//! semaphore were sent one after another as soon as the refused ones gave their slots back, into
//! a cooldown the lane already knew about.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{ClientBuilder, Middleware, Next};
use reqwest_throttle::{Policy, Throttle};
use tokio::time::Instant;

/// Takes 100 ms to answer; answers 429 with `Retry-After: 5` to the first request and 200 to
/// every other. Records when each request arrived.
#[derive(Clone, Default)]
struct SlowFirstRefused(Arc<Mutex<Vec<Instant>>>);

#[async_trait::async_trait]
impl Middleware for SlowFirstRefused {
    async fn handle(
        &self,
        _request: Request,
        _extensions: &mut Extensions,
        _next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let first = {
            let mut arrivals = self.0.lock().unwrap();
            arrivals.push(Instant::now());
            arrivals.len() == 1
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
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
    let server = SlowFirstRefused::default();
    let throttle = Throttle::builder()
        .default_policy(Policy::new().concurrency(1))
        .build()
        .unwrap();
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(throttle)
        .with(server.clone())
        .build();

    let start = Instant::now();
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.get("http://api.test/").send().await.unwrap() })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().status(), 200);
    }

    let arrivals: Vec<Duration> = server
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|at| *at - start)
        .collect();
    // The first request is answered at 100 ms with a 5 s pause: nothing else may arrive before
    // 5.1 s (the two queued callers, and the first one's retry).
    assert_eq!(arrivals.len(), 4, "{arrivals:?}");
    assert!(
        arrivals[1..]
            .iter()
            .all(|at| *at >= Duration::from_millis(5_100)),
        "sent into a known cooldown: {arrivals:?}"
    );
}
