//! LLM lanes read response bodies only as far as they must, and never hold the status back:
//! a JSON answer beyond the usage limit and a refusal beyond the classified prefix pass through
//! byte for byte (over real sockets, wiremock); an unpriced request's body is never touched; a
//! body that trickles (an in-process terminal middleware, virtual time) costs the caller at
//! most the inspection timeout before it gets the status; `Text/Event-Stream` is a stream.
//!
//! Whether a usage settled is seen through the budget: with `max_wait(0)`, a second request
//! that only fits if the first one's over-estimate was given back fails at once otherwise.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use http::Extensions;
use reqwest::{Request, Response, ResponseBuilderExt as _};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
use reqwest_throttle::llm::TokenCost;
use reqwest_throttle::retry::RetryPolicy;
use reqwest_throttle::{Error, Policy, Rate, Throttle};
use serde_json::json;
use tokio::time::Instant;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The token budget of every test: a per-hour rate, so that the few milliseconds a real-socket
/// test takes refill nothing that matters.
const TOKENS_PER_HOUR: u64 = 10_000;
/// The `max_tokens` of the first request: with its prompt, more than half the budget.
const FIRST_MAX_TOKENS: u64 = 6_000;

/// A chat request asking for `max_tokens`.
fn chat(max_tokens: u64) -> String {
    json!({"model": "gpt-4o", "max_tokens": max_tokens,
           "messages": [{"role": "user", "content": "hi"}]})
    .to_string()
}

/// Output charged as used (so a short completion gives its allowance back), a budget of
/// `TOKENS_PER_HOUR`, no waiting, no retries.
fn policy(model: TokenCost) -> Policy {
    Policy::openai()
        .cost_model(model)
        .tokens(Rate::per_hour(TOKENS_PER_HOUR))
        .max_wait(Duration::ZERO)
        .retry(RetryPolicy::disabled())
}

fn anthropic_accounting() -> TokenCost {
    TokenCost::openai().accounting(reqwest_throttle::llm::Accounting::UsedOutput)
}

fn client(policy: Policy, terminal: Option<Trickle>) -> ClientWithMiddleware {
    let throttle = Throttle::builder()
        .default_policy(policy)
        .build()
        .expect("valid policy");
    let builder = ClientBuilder::new(reqwest::Client::new()).with(throttle);
    match terminal {
        Some(terminal) => builder.with(terminal).build(),
        None => builder.build(),
    }
}

/// A JSON answer of about `size` bytes whose usage (10 in, 10 out) comes last.
fn big_answer(size: usize) -> Vec<u8> {
    let padding = "x".repeat(size);
    json!({"id": "chatcmpl-1", "choices": [{"message": {"content": padding}}],
           "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}})
    .to_string()
    .into_bytes()
}

/// Sends a first request answered with `answer` in 64 KiB chunks (no size announced), reads
/// it, then a second request that fits only if the first one settled.
async fn second_fits_after(answer: &[u8], limit: usize) -> bool {
    let chunks = answer
        .chunks(64 << 10)
        .map(|chunk| (Duration::ZERO, chunk))
        .collect();
    let trickle = Trickle::new(200, "application/json", chunks);
    let client = client(
        policy(anthropic_accounting().usage_body_limit(limit)),
        Some(trickle),
    );
    let url = "http://api.openai.test/v1/chat/completions";
    let first = client.post(url).body(chat(FIRST_MAX_TOKENS)).send().await;
    let received = first
        .expect("first request")
        .bytes()
        .await
        .expect("first body");
    assert!(received == answer, "the answer changed on its way");
    match client.post(url).body(chat(FIRST_MAX_TOKENS)).send().await {
        Ok(second) => {
            assert_eq!(second.status(), 200);
            true
        }
        Err(reqwest_middleware::Error::Middleware(error)) => {
            assert!(
                matches!(error.downcast_ref::<Error>(), Some(Error::WouldWait { .. })),
                "{error}"
            );
            false
        }
        Err(error) => panic!("{error}"),
    }
}

#[tokio::test(start_paused = true)]
async fn json_within_the_limit_settles_and_beyond_it_passes_through_with_the_estimate() {
    let answer = big_answer(1 << 20);
    // Control: a 1 MiB answer under a 2 MiB limit is read, and its usage gives the allowance back.
    assert!(second_fits_after(&answer, 2 << 20).await);
    // The same answer over a 64 KiB limit: byte for byte to the caller, and the estimate stands.
    assert!(!second_fits_after(&answer, 64 << 10).await);
}

#[tokio::test]
async fn json_answers_reach_the_caller_byte_for_byte_over_a_socket() {
    let server = MockServer::start().await;
    let answer = big_answer(1 << 20);
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(answer.clone(), "application/json"))
        .mount(&server)
        .await;
    let url = format!("{}/v1/chat/completions", server.uri());
    // Read whole and settled (2 MiB limit), then passed through unread (64 KiB limit).
    for limit in [2 << 20, 64 << 10] {
        let client = client(policy(anthropic_accounting().usage_body_limit(limit)), None);
        let response = client
            .post(&url)
            .body(chat(100))
            .send()
            .await
            .expect("a response");
        assert_eq!(response.status(), 200);
        assert_eq!(response.content_length(), Some(answer.len() as u64));
        let received = response.bytes().await.expect("body");
        assert!(
            received == answer,
            "limit {limit}: the answer changed on its way"
        );
    }
}

#[tokio::test]
async fn a_refusal_longer_than_the_prefix_reaches_the_caller_byte_for_byte() {
    let server = MockServer::start().await;
    // 1 MiB of refusal, 16 times the classified prefix, every byte distinct in its position.
    let refusal: Vec<u8> = (0..(1u32 << 20))
        .map(|i| b"0123456789abcdef"[(i % 16) as usize] ^ ((i >> 4) as u8 & 1))
        .collect();
    assert!(refusal.len() >= 16 * TokenCost::REFUSAL_PREFIX);
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).set_body_raw(refusal.clone(), "text/plain"))
        .mount(&server)
        .await;
    let client = client(policy(TokenCost::openai()), None);
    let response = client
        .post(format!("{}/v1/chat/completions", server.uri()))
        .body(chat(100))
        .send()
        .await
        .expect("the refusal is a response");
    assert_eq!(response.status(), 429);
    assert_eq!(response.content_length(), Some(refusal.len() as u64));
    let received = response.bytes().await.expect("body");
    assert_eq!(received.len(), refusal.len());
    assert!(received == refusal, "the refusal changed on its way");
}

/// A terminal middleware answering every request with `status`, `content_type` and a body of
/// `chunks`, each after its delay; it counts how often the body was polled.
#[derive(Clone)]
struct Trickle {
    status: u16,
    content_type: &'static str,
    chunks: Vec<(Duration, Bytes)>,
    polls: Arc<AtomicUsize>,
}

impl Trickle {
    fn new(status: u16, content_type: &'static str, chunks: Vec<(Duration, &[u8])>) -> Trickle {
        Trickle {
            status,
            content_type,
            chunks: chunks
                .into_iter()
                .map(|(delay, bytes)| (delay, Bytes::copy_from_slice(bytes)))
                .collect(),
            polls: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn whole(&self) -> Vec<u8> {
        self.chunks.iter().flat_map(|(_, b)| b.to_vec()).collect()
    }
}

/// The chunks of a [`Trickle`], each after its delay in (virtual) time.
struct TrickleBody {
    chunks: std::collections::VecDeque<(Duration, Bytes)>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    polls: Arc<AtomicUsize>,
}

impl Stream for TrickleBody {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        let Some((delay, _)) = self.chunks.front() else {
            return Poll::Ready(None);
        };
        let delay = *delay;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.sleep = None;
        Poll::Ready(self.chunks.pop_front().map(|(_, bytes)| Ok(bytes)))
    }
}

use std::future::Future as _;

#[async_trait::async_trait]
impl Middleware for Trickle {
    async fn handle(
        &self,
        request: Request,
        _extensions: &mut Extensions,
        _next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let body = TrickleBody {
            chunks: self.chunks.iter().cloned().collect(),
            sleep: None,
            polls: Arc::clone(&self.polls),
        };
        let response = http::Response::builder()
            .status(self.status)
            .header(http::header::CONTENT_TYPE, self.content_type)
            .url(request.url().clone())
            .body(reqwest::Body::wrap_stream(body))
            .expect("valid response");
        Ok(Response::from(response))
    }
}

const FOREVER: Duration = Duration::from_secs(3_600);

#[tokio::test(start_paused = true)]
async fn an_unpriced_request_gets_its_status_at_once_and_its_body_is_never_read() {
    for status in [200, 404, 429, 500] {
        let trickle = Trickle::new(
            status,
            "application/json",
            vec![(FOREVER, b"{\"error\":"), (FOREVER, b"{}}")],
        );
        // No retries, so a 429 or a 500 is handed back as it came.
        let client = client(policy(TokenCost::openai()), Some(trickle.clone()));
        let start = Instant::now();
        let response = client
            .get("http://api.openai.test/v1/models")
            .send()
            .await
            .expect("a response");
        assert_eq!(response.status(), status);
        assert_eq!(Instant::now() - start, Duration::ZERO, "status {status}");
        assert_eq!(trickle.polls.load(Ordering::SeqCst), 0, "status {status}");
        // The caller still reads all of it.
        assert_eq!(response.bytes().await.unwrap(), trickle.whole());
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_refusal_returns_its_status_within_the_inspection_timeout() {
    let timeout = Duration::from_millis(250);
    let trickle = Trickle::new(
        429,
        "application/json",
        vec![
            (Duration::ZERO, br#"{"error":{"type":"#),
            (FOREVER, br#""tokens","code":"rate_limit_exceeded"}}"#),
        ],
    );
    let client = client(
        policy(TokenCost::openai().inspection_timeout(timeout)),
        Some(trickle.clone()),
    );
    let start = Instant::now();
    let response = client
        .post("http://api.openai.test/v1/chat/completions")
        .body(chat(100))
        .send()
        .await
        .expect("a response");
    assert_eq!(response.status(), 429);
    assert!(
        Instant::now() - start <= timeout,
        "{:?}",
        Instant::now() - start
    );
    // The part read during inspection is handed back in front of the rest.
    assert_eq!(response.bytes().await.unwrap(), trickle.whole());
    assert!(Instant::now() - start >= FOREVER);
}

#[tokio::test(start_paused = true)]
async fn a_slow_answer_returns_its_status_within_the_timeout_and_settles_as_it_is_read() {
    let timeout = Duration::from_millis(250);
    let trickle = Trickle::new(
        200,
        "application/json",
        vec![
            (Duration::ZERO, br#"{"id":"chatcmpl-1","choices":[],"#),
            (
                Duration::from_secs(1),
                br#""usage":{"prompt_tokens":10,"completion_tokens":10}}"#,
            ),
        ],
    );
    // Per hour: the second of virtual time the body takes refills 2 tokens.
    let client = client(
        policy(anthropic_accounting().inspection_timeout(timeout)),
        Some(trickle.clone()),
    );
    let url = "http://api.openai.test/v1/chat/completions";
    let start = Instant::now();
    let first = client.post(url).body(chat(FIRST_MAX_TOKENS)).send().await;
    let first = first.expect("a response");
    assert!(Instant::now() - start <= timeout);
    // Not read yet: the estimate holds the budget.
    let refused = client.post(url).body(chat(FIRST_MAX_TOKENS)).send().await;
    assert!(
        refused.is_err(),
        "the second request fit before the first settled"
    );
    assert_eq!(first.bytes().await.unwrap(), trickle.whole());
    // Read: the allowance came back.
    let second = client.post(url).body(chat(FIRST_MAX_TOKENS)).send().await;
    assert_eq!(second.expect("fits once the first settled").status(), 200);
}

#[tokio::test(start_paused = true)]
async fn an_event_stream_in_any_case_is_handed_on_at_once() {
    for content_type in [
        "Text/Event-Stream",
        "TEXT/EVENT-STREAM; charset=utf-8",
        " text/event-stream ;charset=UTF-8",
    ] {
        let events: [&[u8]; 3] = [
            b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n",
            b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":10}}\n\n",
            b"data: [DONE]\n\n",
        ];
        let trickle = Trickle::new(
            200,
            content_type,
            events.iter().map(|event| (FOREVER, *event)).collect(),
        );
        let client = client(policy(anthropic_accounting()), Some(trickle.clone()));
        let start = Instant::now();
        let mut response = client
            .post("http://api.openai.test/v1/chat/completions")
            .body(chat(FIRST_MAX_TOKENS))
            .send()
            .await
            .expect("a response");
        assert_eq!(Instant::now() - start, Duration::ZERO, "{content_type}");
        let first = response.chunk().await.unwrap().unwrap();
        assert_eq!(&first[..], events[0], "{content_type}");
        assert_eq!(Instant::now() - start, FOREVER, "{content_type}");
    }
}
