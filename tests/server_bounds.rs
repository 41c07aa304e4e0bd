//! No server value blocks a lane beyond a documented bound, in virtual time:
//!
//! - a reported `usage` is charged at most one burst of the token dimension (with the default
//!   burst, one minute of a per-minute limit): `prompt_tokens: 18446744073709551615` and 4 M
//!   tokens against 40 000/min cost the next request at most that, not 584.9 years or 1.65 h;
//!   each such report is counted in the lane's stats;
//! - `max_retry_after(Duration::MAX)` neither disables the pause a Retry-After asks for nor
//!   overflows: the pause is honoured, and an absurd one is capped at
//!   [`MAX_RETRY_AFTER_CEILING`] (one day).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{ClientBuilder, Middleware, Next};
use reqwest_throttle::retry::{RetryPolicy, MAX_RETRY_AFTER_CEILING};
use reqwest_throttle::{Policy, Rate, Throttle};
use tokio::time::Instant;

const CHAT: &str = "http://api.openai.test/v1/chat/completions";

/// Answers every chat with a JSON body reporting `prompt_tokens` of the first answer, then 10.
#[derive(Clone)]
struct Reporting {
    first_prompt_tokens: u64,
    answered: Arc<Mutex<Vec<Instant>>>,
}

#[async_trait::async_trait]
impl Middleware for Reporting {
    async fn handle(
        &self,
        _: Request,
        _: &mut Extensions,
        _: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let prompt_tokens = {
            let mut answered = self.answered.lock().unwrap_or_else(|p| p.into_inner());
            answered.push(Instant::now());
            if answered.len() == 1 {
                self.first_prompt_tokens
            } else {
                10
            }
        };
        let body = format!(
            r#"{{"id":"c","object":"chat.completion","choices":[],"usage":{{"prompt_tokens":{prompt_tokens},"completion_tokens":5,"total_tokens":{prompt_tokens}}}}}"#
        );
        let response = http::Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(body)
            .map_err(reqwest_middleware::Error::middleware)?;
        Ok(Response::from(response))
    }
}

fn chat() -> String {
    r#"{"model":"gpt-4o","max_tokens":20,"messages":[{"role":"user","content":"hello there"}]}"#
        .to_owned()
}

/// The wait of the request after one whose answer reported `prompt_tokens`.
async fn wait_after_a_report_of(prompt_tokens: u64) -> (Duration, u64) {
    let throttle = Throttle::builder()
        .host(
            "api.openai.test",
            Policy::openai().tokens(Rate::per_minute(40_000)),
        )
        .build()
        .expect("a valid policy");
    let server = Reporting {
        first_prompt_tokens: prompt_tokens,
        answered: Arc::default(),
    };
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(throttle.clone())
        .with(server.clone())
        .build();
    for _ in 0..2 {
        let response = client
            .post(CHAT)
            .bearer_auth("sk-test")
            .header("content-type", "application/json")
            .body(chat())
            .send()
            .await
            .expect("answered");
        response.bytes().await.expect("the body");
    }
    let answered = server
        .answered
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let clamped = throttle
        .stats()
        .lanes
        .iter()
        .map(|lane| lane.clamped_reports)
        .sum();
    (answered[1] - answered[0], clamped)
}

#[tokio::test(start_paused = true)]
async fn an_absurd_usage_costs_at_most_one_window() {
    for reported in [u64::MAX, 4_000_000] {
        let (waited, clamped) = wait_after_a_report_of(reported).await;
        eprintln!("after a report of {reported} tokens the next request waited {waited:?}");
        // One burst (the whole minute) is charged, no more: the next request waits for its own
        // tokens to come back, well within the minute.
        assert!(
            waited <= Duration::from_secs(60),
            "{reported}: waited {waited:?}"
        );
        assert!(
            !waited.is_zero(),
            "{reported}: the report was not charged at all"
        );
        assert_eq!(clamped, 1);
    }
    // A plausible report is charged whole, and not counted.
    let (_, clamped) = wait_after_a_report_of(30_000).await;
    assert_eq!(clamped, 0);
}

/// Answers the first request 429 with `Retry-After: retry_after`, then 200.
#[derive(Clone)]
struct RefusedOnce {
    retry_after: &'static str,
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

#[async_trait::async_trait]
impl Middleware for RefusedOnce {
    async fn handle(
        &self,
        _: Request,
        _: &mut Extensions,
        _: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let first = {
            let mut arrivals = self.arrivals.lock().unwrap_or_else(|p| p.into_inner());
            arrivals.push(Instant::now());
            arrivals.len() == 1
        };
        let response = if first {
            http::Response::builder()
                .status(429)
                .header("retry-after", self.retry_after)
        } else {
            http::Response::builder().status(200)
        };
        let response = response
            .body("")
            .map_err(reqwest_middleware::Error::middleware)?;
        Ok(Response::from(response))
    }
}

#[tokio::test(start_paused = true)]
async fn max_retry_after_of_duration_max_keeps_the_pause_and_its_bound() {
    assert_eq!(
        RetryPolicy::new()
            .max_retry_after(Duration::MAX)
            .configured_max_retry_after(),
        MAX_RETRY_AFTER_CEILING
    );
    for (retry_after, pause) in [
        ("2", Duration::from_secs(2)),
        ("99999999999", MAX_RETRY_AFTER_CEILING),
    ] {
        let throttle = Throttle::builder()
            .default_policy(Policy::new().retry(RetryPolicy::new().max_retry_after(Duration::MAX)))
            .build()
            .expect("a valid policy");
        let server = RefusedOnce {
            retry_after,
            arrivals: Arc::default(),
        };
        let client = ClientBuilder::new(reqwest::Client::new())
            .with(throttle.clone())
            .with(server.clone())
            .build();
        let start = Instant::now();
        let response = client
            .get("http://api.test/")
            .send()
            .await
            .expect("an answer");
        let arrivals = server
            .arrivals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        eprintln!(
            "Retry-After {retry_after}: status {}, {} arrivals, {:?} virtual",
            response.status(),
            arrivals.len(),
            Instant::now() - start
        );
        if pause < MAX_RETRY_AFTER_CEILING {
            // The pause is honoured: the retry arrives when the server asked, not before.
            assert_eq!(response.status(), 200);
            assert_eq!(arrivals.len(), 2);
            assert_eq!(arrivals[1] - arrivals[0], pause);
        } else {
            // Beyond the ceiling: not slept on, the refusal is handed back at once, and the lane
            // pauses for the ceiling, never for the 3 000 years asked.
            assert_eq!(response.status(), 429);
            assert_eq!(Instant::now(), start);
            let lane = throttle.stats().lanes.pop().expect("the lane");
            assert_eq!(lane.cooldown_remaining, Some(MAX_RETRY_AFTER_CEILING));
        }
    }
}
