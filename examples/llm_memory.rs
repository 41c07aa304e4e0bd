//! Peak memory of one 100 MB answer on an LLM lane, beside bare reqwest in the same process.
//!
//! A local axum server (its own thread) answers with 100 MB in 1 MiB chunks: a 200 JSON answer
//! whose `usage` comes last (chunked, and with `Content-Length`), a 500 to `GET /v1/models`
//! (a request that books no tokens), and a 429 to a chat completion. The caller reads every
//! body chunk by chunk and keeps nothing, so what it costs is what the client stack holds.
//! Each case reports the peak of live heap bytes above the level before it (a counting global
//! allocator) and, on Linux, the peak resident set above the one before it (`VmHWM`, reset
//! through `/proc/self/clear_refs`).
//!
//! ```text
//! cargo run --release --example llm_memory --features llm
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Query;
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use reqwest_middleware::ClientBuilder;
use reqwest_throttle::retry::RetryPolicy;
use reqwest_throttle::{Policy, Rate, Throttle};
use serde::Deserialize;

/// Counts live heap bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let live = LIVE
        .fetch_add(bytes, Ordering::Relaxed)
        .saturating_add(bytes);
    PEAK.fetch_max(live, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let pointer = System.alloc(layout);
        if !pointer.is_null() {
            grew(layout.size());
        }
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let pointer = System.alloc_zeroed(layout);
        if !pointer.is_null() {
            grew(layout.size());
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        System.dealloc(pointer, layout);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let moved = System.realloc(pointer, layout, new_size);
        if !moved.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const ANSWER_MIB: usize = 100;
const CHUNK: usize = 1 << 20;

#[derive(Deserialize)]
struct Answer {
    status: u16,
    #[serde(default)]
    length: bool,
}

/// `{"data":"xxxx…","usage":{…}}`, 100 MiB in 1 MiB chunks that share one buffer.
async fn answer(Query(answer): Query<Answer>) -> Response {
    let head = Bytes::from_static(br#"{"data":""#);
    let tail = Bytes::from_static(
        br#"","usage":{"prompt_tokens":10,"completion_tokens":10,"total_tokens":20}}"#,
    );
    let filler = Bytes::from(vec![b'x'; CHUNK]);
    let length = head.len() + ANSWER_MIB * CHUNK + tail.len();
    let chunks = std::iter::once(head)
        .chain(std::iter::repeat_n(filler, ANSWER_MIB))
        .chain(std::iter::once(tail))
        .map(Ok::<_, std::io::Error>);
    let mut response = Response::builder()
        .status(StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK))
        .header(header::CONTENT_TYPE, "application/json");
    if answer.length {
        response = response.header(header::CONTENT_LENGTH, length);
    }
    response
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .unwrap_or_default()
}

fn start_server() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let address = listener.local_addr().expect("local address");
    listener.set_nonblocking(true).expect("non-blocking");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("server runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let app = Router::new().fallback(answer);
            axum::serve(listener, app).await.expect("server");
        });
    });
    address
}

/// The peak resident set, after resetting it to the current one (Linux); `None` elsewhere.
fn reset_resident_peak() -> Option<u64> {
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    status_kib("VmHWM:")
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

const MIB: f64 = 1024.0 * 1024.0;

/// Runs `case`, reporting the heap and resident peaks above the levels before it.
async fn measure<F: std::future::Future<Output = (u16, usize)>>(name: &str, case: F) {
    let resident_before = reset_resident_peak();
    let live_before = LIVE.load(Ordering::Relaxed);
    PEAK.store(live_before, Ordering::Relaxed);
    let (status, received) = case.await;
    let heap_peak = PEAK.load(Ordering::Relaxed).saturating_sub(live_before);
    let resident = resident_before
        .zip(status_kib("VmHWM:"))
        .map(|(before, peak)| format!("{:>7.1} MiB", peak.saturating_sub(before) as f64 / 1024.0))
        .unwrap_or_else(|| "      n/a".to_owned());
    println!(
        "{name:<52} {status} {:>6.1} MiB read   heap peak {:>7.1} MiB   resident peak {resident}",
        received as f64 / MIB,
        heap_peak as f64 / MIB,
    );
}

/// Reads a response chunk by chunk, keeping nothing.
async fn drain(response: reqwest::Response) -> (u16, usize) {
    let status = response.status().as_u16();
    let mut response = response;
    let mut received = 0;
    while let Ok(Some(chunk)) = response.chunk().await {
        received += chunk.len();
    }
    (status, received)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let address = start_server();
    let base = format!("http://{address}");
    let chat = serde_json::json!({"model": "gpt-4o", "max_tokens": 100,
                                  "messages": [{"role": "user", "content": "hi"}]})
    .to_string();

    let bare = reqwest::Client::new();
    let throttle = Throttle::builder()
        .default_policy(
            Policy::openai()
                .tokens(Rate::per_minute(1_000_000))
                // One answer per case: a retried 500 or 429 would be measured four times.
                .retry(RetryPolicy::disabled()),
        )
        .build()
        .expect("valid policy");
    let lane = ClientBuilder::new(reqwest::Client::new())
        .with(throttle)
        .build();

    // Warm both clients up (connection pools, lazily built state) outside the measurement.
    for url in ["/v1/models?status=204", "/v1/chat/completions?status=204"] {
        let _ = drain(
            bare.get(format!("{base}{url}"))
                .send()
                .await
                .expect("warm-up"),
        )
        .await;
        let _ = drain(
            lane.get(format!("{base}{url}"))
                .send()
                .await
                .expect("warm-up"),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;

    let url = |path: &str| format!("{base}{path}");
    measure("bare reqwest: POST chat, 200 JSON, chunked", async {
        let request = bare
            .post(url("/v1/chat/completions?status=200"))
            .body(chat.clone());
        drain(request.send().await.expect("response")).await
    })
    .await;
    measure("LLM lane: POST chat, 200 JSON, chunked", async {
        let request = lane
            .post(url("/v1/chat/completions?status=200"))
            .body(chat.clone());
        drain(request.send().await.expect("response")).await
    })
    .await;
    measure("LLM lane: POST chat, 200 JSON, Content-Length", async {
        let request = lane
            .post(url("/v1/chat/completions?status=200&length=true"))
            .body(chat.clone());
        drain(request.send().await.expect("response")).await
    })
    .await;
    measure("bare reqwest: GET /v1/models, 500", async {
        drain(
            bare.get(url("/v1/models?status=500"))
                .send()
                .await
                .expect("response"),
        )
        .await
    })
    .await;
    measure("LLM lane: GET /v1/models, 500 (books no tokens)", async {
        drain(
            lane.get(url("/v1/models?status=500"))
                .send()
                .await
                .expect("response"),
        )
        .await
    })
    .await;
    measure("LLM lane: POST chat, 429", async {
        let request = lane
            .post(url("/v1/chat/completions?status=429"))
            .body(chat.clone());
        drain(request.send().await.expect("response")).await
    })
    .await;
    measure(
        "bare reqwest: POST chat, 200 JSON, .bytes() (reference)",
        async {
            let request = bare
                .post(url("/v1/chat/completions?status=200"))
                .body(chat.clone());
            let response = request.send().await.expect("response");
            let status = response.status().as_u16();
            (status, response.bytes().await.map_or(0, |b| b.len()))
        },
    )
    .await;
}
