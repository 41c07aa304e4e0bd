//! One test per status × method through real sockets (wiremock): what is retried, and what is
//! sent exactly once. Generated from a table: the expected attempt counts follow the rules of
//! `reqwest_throttle::retry` (retryable: 429, 503, 502, 504, 408, and 500 for idempotent
//! requests; non-idempotent requests only when the server provably did not act: 429, or 503
//! with Retry-After).

use std::time::Duration;

use http::Method;
use reqwest_middleware::ClientBuilder;
use reqwest_throttle::retry::{Backoff, Jitter, RetryPolicy};
use reqwest_throttle::{Policy, Throttle};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Two retries at most, so a retried request is seen three times.
const MAX_RETRIES: u32 = 2;

async fn attempts_for(
    method: Method,
    status: u16,
    retry_after: Option<&str>,
    idempotency_key: bool,
) -> usize {
    let server = MockServer::start().await;
    let mut template = ResponseTemplate::new(status);
    if let Some(retry_after) = retry_after {
        template = template.insert_header("retry-after", retry_after);
    }
    Mock::given(any())
        .respond_with(template)
        .mount(&server)
        .await;
    let throttle = Throttle::builder()
        .default_policy(
            Policy::new().retry(
                RetryPolicy::new()
                    .max_retries(MAX_RETRIES)
                    // A 429 in a lane that learned a pace has its own, larger count (the pace
                    // bounds the load); this table counts every status alike.
                    .max_rate_limited_retries(MAX_RETRIES)
                    .backoff(
                        Backoff::exponential(Duration::from_millis(10), Duration::from_millis(100))
                            .jitter(Jitter::None),
                    ),
            ),
        )
        .build()
        .unwrap();
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(throttle)
        .build();
    let mut request = client.request(method, server.uri()).body("payload");
    if idempotency_key {
        request = request.header("idempotency-key", "4f1b2c");
    }
    let response = request.send().await.expect("transport failed");
    // After the last retry the last response is returned unchanged.
    assert_eq!(response.status().as_u16(), status);
    server.received_requests().await.unwrap().len()
}

macro_rules! status_tests {
    ($($name:ident: $method:ident $status:literal $retry_after:expr => $attempts:expr;)*) => {
        $(
            #[tokio::test(start_paused = true)]
            async fn $name() {
                let seen = attempts_for(Method::$method, $status, $retry_after, false).await;
                assert_eq!(seen, $attempts, "{} {}", stringify!($method), $status);
            }
        )*
    };
}

status_tests! {
    get_200: GET 200 None => 1;
    head_200: HEAD 200 None => 1;
    put_200: PUT 200 None => 1;
    delete_200: DELETE 200 None => 1;
    options_200: OPTIONS 200 None => 1;
    post_200: POST 200 None => 1;
    patch_200: PATCH 200 None => 1;
    get_201: GET 201 None => 1;
    head_201: HEAD 201 None => 1;
    put_201: PUT 201 None => 1;
    delete_201: DELETE 201 None => 1;
    options_201: OPTIONS 201 None => 1;
    post_201: POST 201 None => 1;
    patch_201: PATCH 201 None => 1;
    get_400: GET 400 None => 1;
    head_400: HEAD 400 None => 1;
    put_400: PUT 400 None => 1;
    delete_400: DELETE 400 None => 1;
    options_400: OPTIONS 400 None => 1;
    post_400: POST 400 None => 1;
    patch_400: PATCH 400 None => 1;
    get_404: GET 404 None => 1;
    head_404: HEAD 404 None => 1;
    put_404: PUT 404 None => 1;
    delete_404: DELETE 404 None => 1;
    options_404: OPTIONS 404 None => 1;
    post_404: POST 404 None => 1;
    patch_404: PATCH 404 None => 1;
    get_408: GET 408 None => 3;
    head_408: HEAD 408 None => 3;
    put_408: PUT 408 None => 3;
    delete_408: DELETE 408 None => 3;
    options_408: OPTIONS 408 None => 3;
    post_408: POST 408 None => 1;
    patch_408: PATCH 408 None => 1;
    get_429: GET 429 None => 3;
    head_429: HEAD 429 None => 3;
    put_429: PUT 429 None => 3;
    delete_429: DELETE 429 None => 3;
    options_429: OPTIONS 429 None => 3;
    post_429: POST 429 None => 3;
    patch_429: PATCH 429 None => 3;
    get_429_with_retry_after: GET 429 Some("1") => 3;
    head_429_with_retry_after: HEAD 429 Some("1") => 3;
    put_429_with_retry_after: PUT 429 Some("1") => 3;
    delete_429_with_retry_after: DELETE 429 Some("1") => 3;
    options_429_with_retry_after: OPTIONS 429 Some("1") => 3;
    post_429_with_retry_after: POST 429 Some("1") => 3;
    patch_429_with_retry_after: PATCH 429 Some("1") => 3;
    get_500: GET 500 None => 3;
    head_500: HEAD 500 None => 3;
    put_500: PUT 500 None => 3;
    delete_500: DELETE 500 None => 3;
    options_500: OPTIONS 500 None => 3;
    post_500: POST 500 None => 1;
    patch_500: PATCH 500 None => 1;
    get_502: GET 502 None => 3;
    head_502: HEAD 502 None => 3;
    put_502: PUT 502 None => 3;
    delete_502: DELETE 502 None => 3;
    options_502: OPTIONS 502 None => 3;
    post_502: POST 502 None => 1;
    patch_502: PATCH 502 None => 1;
    get_503: GET 503 None => 3;
    head_503: HEAD 503 None => 3;
    put_503: PUT 503 None => 3;
    delete_503: DELETE 503 None => 3;
    options_503: OPTIONS 503 None => 3;
    post_503: POST 503 None => 1;
    patch_503: PATCH 503 None => 1;
    get_503_with_retry_after: GET 503 Some("1") => 3;
    head_503_with_retry_after: HEAD 503 Some("1") => 3;
    put_503_with_retry_after: PUT 503 Some("1") => 3;
    delete_503_with_retry_after: DELETE 503 Some("1") => 3;
    options_503_with_retry_after: OPTIONS 503 Some("1") => 3;
    post_503_with_retry_after: POST 503 Some("1") => 3;
    patch_503_with_retry_after: PATCH 503 Some("1") => 3;
    get_504: GET 504 None => 3;
    head_504: HEAD 504 None => 3;
    put_504: PUT 504 None => 3;
    delete_504: DELETE 504 None => 3;
    options_504: OPTIONS 504 None => 3;
    post_504: POST 504 None => 1;
    patch_504: PATCH 504 None => 1;
}

/// An `Idempotency-Key` makes a POST safe to repeat on every retryable status.
#[tokio::test(start_paused = true)]
async fn post_with_idempotency_key_is_retried_like_put() {
    for status in [408, 500, 502, 503, 504] {
        let seen = attempts_for(Method::POST, status, None, true).await;
        assert_eq!(
            seen,
            1 + MAX_RETRIES as usize,
            "POST {status} with Idempotency-Key"
        );
    }
}

/// A streaming body cannot be sent twice: it is sent once even to a 503 with Retry-After.
#[tokio::test(start_paused = true)]
async fn streaming_body_is_sent_once() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", "1"))
        .mount(&server)
        .await;
    let throttle = Throttle::builder().build().unwrap();
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(throttle)
        .build();
    let chunks: Vec<Result<&'static str, std::io::Error>> = vec![Ok("a"), Ok("b")];
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let response = client.put(server.uri()).body(body).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}
