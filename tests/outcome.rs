//! The `Outcome` extension each throttled response carries: attempts, time waited for turns,
//! and whether a 429/503 came back because the retries ran out. In virtual time, against a
//! scripted origin that answers the n-th request with the n-th status of its script (the last
//! one repeated).

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use http::{Extensions, StatusCode};
use reqwest::{Request, Response};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
use reqwest_throttle::retry::{
    Attempt, Backoff, Jitter, RetryBudgetConfig, RetryPolicy, StopReason,
};
use reqwest_throttle::{Outcome, Policy, Rate, Throttle};

const URL: &str = "http://api.test/";

#[derive(Clone)]
struct Script {
    statuses: &'static [u16],
    received: Arc<AtomicUsize>,
}

impl Script {
    fn new(statuses: &'static [u16]) -> Script {
        Script {
            statuses,
            received: Arc::default(),
        }
    }
}

#[async_trait::async_trait]
impl Middleware for Script {
    async fn handle(
        &self,
        _: Request,
        _: &mut Extensions,
        _: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let n = self.received.fetch_add(1, Relaxed);
        let status = self.statuses[n.min(self.statuses.len() - 1)];
        let response = http::Response::builder().status(status);
        Ok(Response::from(response.body(String::new()).unwrap()))
    }
}

fn retry(max_retries: u32) -> RetryPolicy {
    RetryPolicy::new()
        .max_retries(max_retries)
        .max_rate_limited_retries(max_retries)
        .backoff(
            Backoff::exponential(Duration::from_millis(100), Duration::from_secs(1))
                .jitter(Jitter::None),
        )
}

fn client(policy: Policy, script: &Script) -> ClientWithMiddleware {
    let throttle = Throttle::builder().default_policy(policy).build().unwrap();
    ClientBuilder::new(reqwest::Client::new())
        .with(throttle)
        .with(script.clone())
        .build()
}

async fn outcome_of(client: &ClientWithMiddleware) -> (StatusCode, Outcome) {
    let response = client.get(URL).send().await.unwrap();
    let outcome = *response
        .extensions()
        .get::<Outcome>()
        .expect("a throttled response carries its outcome");
    (response.status(), outcome)
}

#[tokio::test(start_paused = true)]
async fn a_clean_200_took_one_attempt_and_nothing_ran_out() {
    let script = Script::new(&[200]);
    let (status, outcome) = outcome_of(&client(Policy::new(), &script)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(outcome.attempts, 1);
    assert!(!outcome.retries_exhausted);
    assert_eq!(outcome.stop, StopReason::Final);
    assert_eq!(outcome.last_retry, None);
    assert_eq!(outcome.waited, Duration::ZERO);
    assert_eq!(outcome.retry_delays, Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn the_last_429_after_the_retries_ran_out_is_flagged() {
    let script = Script::new(&[429]);
    let (status, outcome) = outcome_of(&client(Policy::new().retry(retry(2)), &script)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(script.received.load(Relaxed), 3);
    assert_eq!(outcome.attempts, 3);
    assert_eq!(outcome.stop, StopReason::RetriesExhausted);
    assert!(outcome.retries_exhausted);
    assert_eq!(
        outcome.last_retry,
        Some(Attempt::Status(StatusCode::TOO_MANY_REQUESTS))
    );
    // The refusals slowed the lane: the retries waited, for a backoff or for the pace it
    // learned from them.
    assert!(
        outcome.retry_delays + outcome.waited > Duration::ZERO,
        "{outcome:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_503_returned_because_the_retry_budget_is_spent_is_flagged() {
    let script = Script::new(&[503]);
    // No budget at all: not even the first retry is allowed.
    let mut budget = RetryBudgetConfig::default();
    budget.ratio = 0.0;
    budget.min_per_sec = 0.0;
    let policy = Policy::new().retry(retry(3).budget(budget));
    let (status, outcome) = outcome_of(&client(policy, &script)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(outcome.attempts, 1);
    assert!(outcome.retries_exhausted);
    assert_eq!(outcome.stop, StopReason::BudgetExhausted);
}

#[tokio::test(start_paused = true)]
async fn a_retry_that_succeeded_names_what_it_retried() {
    let script = Script::new(&[503, 503, 200]);
    let (status, outcome) = outcome_of(&client(Policy::new().retry(retry(3)), &script)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(outcome.attempts, 3);
    assert!(!outcome.retries_exhausted);
    assert_eq!(outcome.stop, StopReason::Final);
    assert_eq!(
        outcome.last_retry,
        Some(Attempt::Status(StatusCode::SERVICE_UNAVAILABLE))
    );
    // Two backoffs without jitter: 100 ms, then 200 ms.
    assert_eq!(outcome.retry_delays, Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn a_status_no_retry_changes_is_final_not_exhausted() {
    let script = Script::new(&[404]);
    let (status, outcome) = outcome_of(&client(Policy::new(), &script)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(outcome.attempts, 1);
    assert!(!outcome.retries_exhausted);
    assert_eq!(outcome.stop, StopReason::Final);
}

#[tokio::test(start_paused = true)]
async fn the_time_waited_for_a_turn_is_counted() {
    let script = Script::new(&[200]);
    let policy = Policy::new().rate(Rate::per_second(1).burst(1));
    let client = client(policy, &script);
    let (_, first) = outcome_of(&client).await;
    assert_eq!(first.waited, Duration::ZERO);
    let (_, second) = outcome_of(&client).await;
    // The second waits for the rate's next slot, a second after the first.
    assert!(second.waited > Duration::from_millis(900), "{second:?}");
    assert!(second.waited <= Duration::from_secs(1), "{second:?}");
    assert_eq!(second.attempts, 1);
}
