//! Defects found against misbehaving servers, each reproduced through the middleware in virtual
//! time (the pace learner's own tests are in `tests/pace_props.rs` and `src/limiter/pace.rs`):
//!
//! - a pace from rate-limit headers with an absurd reset waited a day, past `max_retry_after`;
//! - a refusal announcing an exhausted window far beyond the cap was retried cap after cap;
//! - the pace learned from refusals counted idle time as if it were traffic;
//! - a learned token limit was sticky: once too small, nothing was ever sent to correct it;
//! - a server hang-up was neither retried nor counted by the breaker.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use http::{Extensions, StatusCode};
use reqwest::{Request, Response};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
use reqwest_throttle::breaker::{BreakerConfig, BreakerState};
use reqwest_throttle::retry::RetryPolicy;
use reqwest_throttle::sim::SimulatedApi;
use reqwest_throttle::{Error, MaxWait, Policy, Throttle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

const URL: &str = "http://api.test/v1/things";

type Answer = dyn Fn(usize, &Request) -> http::Response<String> + Send + Sync;

/// A terminal middleware that answers the n-th request (from 0) as its closure says.
#[derive(Clone)]
struct Scripted {
    answer: Arc<Answer>,
    received: Arc<AtomicUsize>,
}

impl Scripted {
    fn new(
        answer: impl Fn(usize, &Request) -> http::Response<String> + Send + Sync + 'static,
    ) -> Scripted {
        Scripted {
            answer: Arc::new(answer),
            received: Arc::default(),
        }
    }

    fn received(&self) -> usize {
        self.received.load(Relaxed)
    }
}

#[async_trait::async_trait]
impl Middleware for Scripted {
    async fn handle(
        &self,
        request: Request,
        _: &mut Extensions,
        _: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let n = self.received.fetch_add(1, Relaxed);
        Ok(Response::from((self.answer)(n, &request)))
    }
}

fn client(throttle: &Throttle, terminal: impl Middleware) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(throttle.clone())
        .with(terminal)
        .build()
}

fn answer(status: StatusCode, headers: &[(&str, &str)]) -> http::Response<String> {
    let mut response = http::Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(*name, *value);
    }
    response.body(String::new()).expect("valid response")
}

#[tokio::test(start_paused = true)]
async fn a_pace_from_headers_never_waits_past_the_cap() {
    let server = Scripted::new(|_, _| {
        answer(
            StatusCode::OK,
            &[
                ("x-ratelimit-limit-requests", "100"),
                ("x-ratelimit-remaining-requests", "1"),
                ("x-ratelimit-reset-requests", "1000000h"),
            ],
        )
    });
    let policy = Policy::new().retry(RetryPolicy::new().max_retry_after(Duration::from_secs(10)));
    let throttle = Throttle::builder().default_policy(policy).build().unwrap();
    let client = client(&throttle, server.clone());
    client.get(URL).send().await.unwrap();
    // Before: the pace was one request per day (the reset clamped to 24 h), so this failed with
    // `WouldWait` of 24 h. Now the pace's interval obeys the 10 s cap.
    let start = Instant::now();
    let second = client
        .get(URL)
        .with_extension(MaxWait(Duration::from_secs(11)))
        .send()
        .await
        .expect("the pace must obey the 10 s cap");
    assert_eq!(second.status(), StatusCode::OK);
    assert!(
        start.elapsed() <= Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(server.received(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_refusal_with_an_exhausted_window_beyond_the_cap_comes_back_at_once() {
    let server = Scripted::new(|_, _| {
        answer(
            StatusCode::TOO_MANY_REQUESTS,
            &[
                ("x-ratelimit-limit-requests", "100"),
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "1000h"),
            ],
        )
    });
    let policy = Policy::new().retry(RetryPolicy::new().max_retry_after(Duration::from_secs(3)));
    let throttle = Throttle::builder().default_policy(policy).build().unwrap();
    let client = client(&throttle, server.clone());
    let start = Instant::now();
    let response = client.get(URL).send().await.unwrap();
    // Before: 4 attempts, one cap-long (3 s) wait before each retry.
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        server.received(),
        1,
        "a 1000 h reset is not waited out by retries"
    );
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
}

/// Sends `total` GETs from 8 tasks; returns the virtual time they took. Every one must succeed.
async fn batch(client: &ClientWithMiddleware, total: usize) -> Duration {
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (client, next) = (client.clone(), Arc::clone(&next));
            tokio::spawn(async move {
                while next.fetch_add(1, Relaxed) < total {
                    let response = client.get(URL).send().await.expect("request failed");
                    assert_eq!(response.status(), StatusCode::OK);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task panicked");
    }
    start.elapsed()
}

fn twenty_per_second() -> SimulatedApi {
    SimulatedApi::builder()
        .limit(20, Duration::from_secs(1))
        .latency(Duration::from_millis(5))
        .build()
}

#[tokio::test(start_paused = true)]
async fn learning_from_refusals_counts_active_time_only() {
    let fresh = {
        let throttle = Throttle::builder().build().unwrap();
        batch(&client(&throttle, twenty_per_second()), 60).await
    };
    let throttle = Throttle::builder().build().unwrap();
    let client = client(&throttle, twenty_per_second());
    client.get(URL).send().await.unwrap();
    tokio::time::sleep(Duration::from_secs(20)).await;
    // Before: 50 s (the 20 s idle counted as a cycle in which the server accepted 1 request).
    let after_idle = batch(&client, 60).await;
    tokio::time::sleep(Duration::from_secs(25)).await;
    // Before: 62 s.
    let later = batch(&client, 60).await;
    let bound = fresh.mul_f64(1.1);
    assert!(
        after_idle <= bound,
        "after idle {after_idle:?}, fresh {fresh:?}"
    );
    assert!(later <= bound, "25 s later {later:?}, fresh {fresh:?}");
    // And the fresh lane itself is near the server's 20/s: 60 requests in about 3 s.
    assert!(fresh <= Duration::from_secs(5), "fresh {fresh:?}");
}

/// A chat completion estimated at about `max_tokens` tokens.
fn chat(client: &ClientWithMiddleware, max_tokens: u64) -> reqwest_middleware::RequestBuilder {
    let body = format!(
        r#"{{"model":"gpt-4o-mini","max_tokens":{max_tokens},"messages":[{{"role":"user","content":"hi"}}]}}"#
    );
    client
        .post("https://api.openai.test/v1/chat/completions")
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-test")
        .body(body)
}

#[tokio::test(start_paused = true)]
async fn a_learned_token_limit_is_replaced_and_goes_stale() {
    // The first answer announces 100 tokens per minute, every later one 40 000.
    let server = Scripted::new(|n, _| {
        let (limit, remaining) = if n == 0 {
            ("100", "90")
        } else {
            ("40000", "39000")
        };
        answer(
            StatusCode::OK,
            &[
                ("x-ratelimit-limit-tokens", limit),
                ("x-ratelimit-remaining-tokens", remaining),
                ("x-ratelimit-reset-tokens", "6s"),
            ],
        )
    });
    let throttle = Throttle::builder()
        .default_policy(Policy::openai())
        .build()
        .unwrap();
    let client = client(&throttle, server.clone());
    chat(&client, 1).send().await.unwrap();
    // While the announcement of 100 is fresh, a 500-token chat is refused before it is sent.
    let refused = chat(&client, 500).send().await.unwrap_err();
    let cost_too_large = match &refused {
        reqwest_middleware::Error::Middleware(error) => {
            matches!(
                error.downcast_ref::<Error>(),
                Some(Error::CostTooLarge { .. })
            )
        }
        _ => false,
    };
    assert!(cost_too_large, "{refused}");
    assert_eq!(server.received(), 1);
    // Before: refused for ever (the announcement was never corrected, as nothing was sent).
    // Now, once the announcement is no longer fresh, the chat goes and the server corrects it.
    tokio::time::sleep(Duration::from_secs(7)).await;
    for _ in 0..5 {
        let response = chat(&client, 500).send().await.expect("sent once stale");
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(server.received(), 6);
}

/// A loopback server that hangs up on the first request (reads it, closes the connection
/// without answering) and answers 200 to every later one. Returns its address and a counter of
/// requests it read.
async fn hang_up_once() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 4096];
                let mut read = 0;
                while !buffer[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer[read..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read += n,
                    }
                }
                if counter.fetch_add(1, Relaxed) == 0 {
                    return; // hang up
                }
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test(start_paused = true)]
async fn a_hang_up_is_retried_for_a_get() {
    let (addr, seen) = hang_up_once().await;
    let throttle = Throttle::builder().build().unwrap();
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(throttle.clone())
        .build();
    let response = client
        .get(format!("http://{addr}/"))
        .send()
        .await
        .expect("a GET is retried after a hang-up");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(seen.load(Relaxed), 2);
    let stats = throttle.stats();
    let lane = stats.lane(&format!("http://{addr}")).expect("lane");
    assert_eq!((lane.errors, lane.retries), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_hang_up_is_a_breaker_failure_and_a_post_is_not_sent_again() {
    let (addr, seen) = hang_up_once().await;
    let policy = Policy::new().breaker(BreakerConfig::default().consecutive_failures(1));
    let throttle = Throttle::builder().default_policy(policy).build().unwrap();
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(throttle.clone())
        .build();
    let error = client
        .post(format!("http://{addr}/"))
        .body("charge")
        .send()
        .await
        .expect_err("a hang-up on a POST is returned");
    assert!(
        error.is_request() || error.to_string().contains("connection"),
        "{error}"
    );
    assert_eq!(seen.load(Relaxed), 1, "the POST was sent once");
    let key = format!("http://{addr}");
    assert_eq!(
        throttle.breaker(&key).and_then(|b| b.state()),
        Some(BreakerState::Open),
        "the hang-up counted as a failure"
    );
}
