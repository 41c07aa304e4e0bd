//! Several limits per dimension and per model, through the middleware, in virtual time.
//!
//! - A day's limit beside a minute's (1 000 a day and 60 a minute, as a provider states RPD
//!   and RPM for one key) is never exceeded in any rolling day, nor the minute's in any
//!   rolling minute: counted as a terminal receives the requests, with twice a day's worth
//!   queued at once.
//! - A spent window refuses a request that may not wait for it with an error naming it.
//! - Two models on one host, each with its own policy, are budgeted apart, under their own
//!   limits, and a model without one falls back to the host's.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
use reqwest_throttle::{Dimension, Error, Policy, Rate, Throttle};
use tokio::time::Instant;

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(86_400);

/// A terminal that answers every request `200 {}` and notes when it arrived and what it was.
#[derive(Clone, Default)]
struct Terminal {
    received: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Terminal {
    fn arrivals(&self) -> Vec<(Instant, String)> {
        self.received.lock().unwrap().clone()
    }

    fn count(&self, what: &str) -> usize {
        self.arrivals().iter().filter(|(_, w)| w == what).count()
    }
}

#[async_trait::async_trait]
impl Middleware for Terminal {
    async fn handle(
        &self,
        request: Request,
        _: &mut Extensions,
        _: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let body = request
            .body()
            .and_then(|body| body.as_bytes())
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
            .unwrap_or_default();
        self.received.lock().unwrap().push((Instant::now(), body));
        let answer = http::Response::builder()
            .header("content-type", "application/json")
            .body("{}")
            .unwrap();
        Ok(Response::from(answer))
    }
}

fn client(throttle: Throttle, terminal: &Terminal) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(throttle)
        .with(terminal.clone())
        .build()
}

/// The most arrivals in any span of `span` that starts at an arrival (the busiest span of a
/// sorted series always starts at one).
fn busiest(arrivals: &[Instant], span: Duration) -> usize {
    let mut end = 0;
    let mut most = 0;
    for (start, at) in arrivals.iter().enumerate() {
        while end < arrivals.len() && arrivals[end] < *at + span {
            end += 1;
        }
        most = most.max(end - start);
    }
    most
}

#[tokio::test(start_paused = true)]
async fn a_day_beside_a_minute_is_never_exceeded() {
    let throttle = Throttle::builder()
        .host(
            "api.test",
            Policy::new()
                .requests([Rate::per_minute(60), Rate::per_day(1_000)])
                .unlimited_concurrency(),
        )
        .build()
        .unwrap();
    let terminal = Terminal::default();
    let client = client(throttle, &terminal);
    // Two days' worth and a half, all queued at once.
    let tasks: Vec<_> = (0..2_500)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.get("http://api.test/v1/things").send().await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().status(), 200);
    }
    let mut arrivals: Vec<_> = terminal.arrivals().into_iter().map(|(at, _)| at).collect();
    arrivals.sort();
    assert_eq!(arrivals.len(), 2_500);
    assert_eq!(busiest(&arrivals, DAY), 1_000);
    assert!(busiest(&arrivals, MINUTE) <= 60);
}

#[tokio::test(start_paused = true)]
async fn a_spent_window_refuses_naming_itself() {
    let throttle = Throttle::builder()
        .host(
            "api.test",
            Policy::new()
                .requests([Rate::per_second(1).burst(1), Rate::per_day(3)])
                .max_wait(MINUTE),
        )
        .build()
        .unwrap();
    let terminal = Terminal::default();
    let client = client(throttle, &terminal);
    for _ in 0..3 {
        client.get("http://api.test/").send().await.unwrap();
    }
    let refused = client.get("http://api.test/").send().await.unwrap_err();
    let Some(Error::WindowSpent {
        dimension: Dimension::Requests,
        quota: 3,
        period,
        wait,
        ..
    }) = Error::from_middleware(&refused)
    else {
        panic!("{refused:?}");
    };
    assert_eq!(*period, DAY);
    assert!(*wait > MINUTE, "{wait:?}");
    assert!(
        refused.to_string().contains("window of 3 requests per 24h"),
        "{refused}"
    );
    assert_eq!(terminal.arrivals().len(), 3);
}

/// `gpt-4o-mini` has a policy of its own on the host, `gpt-4o` and `o3` the host's: each model
/// is a lane of its own, spending its own limit.
#[cfg(feature = "llm")]
#[tokio::test(start_paused = true)]
async fn two_models_on_one_host_are_budgeted_apart() {
    let host = Policy::openai()
        .requests([Rate::per_minute(2).burst(2), Rate::per_day(100)])
        .max_wait(Duration::from_secs(1));
    let mini = host
        .clone()
        .requests([Rate::per_minute(5).burst(5), Rate::per_day(6)]);
    let throttle = Throttle::builder()
        .host("api.openai.com", host.model("gpt-4o-mini", mini))
        .build()
        .unwrap();
    let terminal = Terminal::default();
    let client = client(throttle.clone(), &terminal);
    let ask = |model: &'static str| {
        let client = client.clone();
        async move {
            let body = format!(
                r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}],"max_tokens":10}}"#
            );
            let result = client
                .post("https://api.openai.com/v1/chat/completions")
                .header("authorization", "Bearer sk-test")
                .body(body)
                .send()
                .await;
            match result {
                Ok(response) => Ok(response.status()),
                Err(error) => Err(Error::from_middleware(&error).map(ToString::to_string)),
            }
        }
    };
    // Each model until its lane refuses: the host's 2 a minute, the mini's own 5.
    for model in ["gpt-4o", "gpt-4o-mini", "o3"] {
        while ask(model).await.is_ok() {}
    }
    let sent = |model: &str| {
        terminal.count(&format!(
            r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}],"max_tokens":10}}"#
        ))
    };
    assert_eq!((sent("gpt-4o"), sent("gpt-4o-mini"), sent("o3")), (2, 5, 2));
    // A minute later the mini's day is what binds: one more, then a refusal that names it.
    tokio::time::advance(MINUTE).await;
    assert!(ask("gpt-4o-mini").await.is_ok());
    let refusal = ask("gpt-4o-mini").await.unwrap_err().unwrap();
    assert!(
        refusal.contains("window of 6 requests per 24h"),
        "{refusal}"
    );
    assert!(ask("gpt-4o").await.is_ok());
    // Three lanes, the mini's under its own rate.
    let stats = throttle.stats();
    let lanes: Vec<_> = stats.lanes.iter().map(|lane| lane.key.as_str()).collect();
    assert_eq!(lanes.len(), 3, "{lanes:?}");
    let mini_lane = stats
        .lanes
        .iter()
        .find(|lane| lane.key.model() == Some("gpt-4o-mini"))
        .unwrap();
    let per_minute = mini_lane.rate.unwrap() * 60.0;
    assert!((per_minute - 5.0).abs() < 1e-6, "{per_minute}");
}
