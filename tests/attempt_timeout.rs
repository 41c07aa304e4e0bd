//! A server that accepts connections and never answers cannot hold a lane: with
//! `Policy::attempt_timeout`, each attempt is abandoned at the timeout as a transport failure —
//! retried when safe, counted by the breaker, its concurrency slot given back — and the caller
//! gets `Error::AttemptTimedOut`.
//!
//! The server is a real loopback socket: it accepts, reads each request whole and never writes
//! a byte. Time is virtual, so timeouts, backoffs and breaker periods take no real time. Because
//! paused time jumps ahead whenever the runtime is idle, even while loopback I/O is still under
//! way, a pump keeps the runtime busy from the moment an attempt leaves the throttle until the
//! server has read it: every attempt really reaches the server before its timeout runs.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
use reqwest_throttle::breaker::{BreakerConfig, BreakerState};
use reqwest_throttle::{Error, Policy, Throttle};
use tokio::io::AsyncReadExt;
use tokio::sync::Notify;
use tokio::time::{timeout, Instant};

const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Attempts that left the throttle, and requests the server has read whole.
#[derive(Default)]
struct Counts {
    sent: AtomicUsize,
    read: AtomicUsize,
    sent_one: Notify,
}

/// Accepts every connection, reads each request's head and never writes a byte.
async fn silent_server(counts: Arc<Counts>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counts = Arc::clone(&counts);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0u8; 4096];
                while let Ok(n @ 1..) = socket.read(&mut buffer).await {
                    head.extend_from_slice(&buffer[..n]);
                    if head.windows(4).any(|w| w == b"\r\n\r\n") {
                        counts.read.fetch_add(1, Relaxed);
                        head.clear();
                    }
                }
            });
        }
    });
    addr
}

/// Keeps the runtime busy (so paused time stands still) while an attempt is on its way to the
/// server and not read yet; gives up after a million turns, so a request that never arrives
/// fails `Setup::attempts` instead of hanging the test.
fn pump(counts: Arc<Counts>) {
    tokio::spawn(async move {
        let mut turns = 0u32;
        loop {
            if counts.sent.load(Relaxed) > counts.read.load(Relaxed) && turns < 1_000_000 {
                turns += 1;
                tokio::task::yield_now().await;
            } else {
                turns = 0;
                counts.sent_one.notified().await;
            }
        }
    });
}

/// Counts the attempts the throttle lets through to the transport.
struct CountAttempts(Arc<Counts>);

#[async_trait::async_trait]
impl Middleware for CountAttempts {
    async fn handle(
        &self,
        request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        self.0.sent.fetch_add(1, Relaxed);
        self.0.sent_one.notify_one();
        next.run(request, extensions).await
    }
}

struct Setup {
    throttle: Throttle,
    client: ClientWithMiddleware,
    counts: Arc<Counts>,
    url: String,
    lane: String,
}

impl Setup {
    /// Attempts sent, each checked to have reached the server.
    fn attempts(&self) -> usize {
        let sent = self.counts.sent.load(Relaxed);
        assert_eq!(
            sent,
            self.counts.read.load(Relaxed),
            "every attempt reached the server"
        );
        sent
    }
}

async fn setup(policy: Policy) -> Setup {
    let counts = Arc::new(Counts::default());
    let addr = silent_server(Arc::clone(&counts)).await;
    pump(Arc::clone(&counts));
    let throttle = Throttle::builder().default_policy(policy).build().unwrap();
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(throttle.clone())
        .with(CountAttempts(Arc::clone(&counts)))
        .build();
    Setup {
        throttle,
        client,
        counts,
        url: format!("http://{addr}/"),
        lane: format!("http://{addr}"),
    }
}

fn assert_timed_out(result: reqwest_middleware::Result<Response>) {
    let error = result.expect_err("the server never answers");
    match Error::from_middleware(&error) {
        Some(Error::AttemptTimedOut { timeout, .. }) => assert_eq!(*timeout, ATTEMPT_TIMEOUT),
        other => panic!("expected AttemptTimedOut, got {other:?} ({error})"),
    }
}

/// A GET is retried after each timeout (three retries by default), then the caller gets the
/// typed error; every slot comes back and the breaker counted every attempt.
#[tokio::test(start_paused = true)]
async fn a_hung_get_is_retried_then_fails_typed_and_gives_its_slot_back() {
    let policy = Policy::new()
        .concurrency(1)
        .attempt_timeout(ATTEMPT_TIMEOUT)
        .breaker(BreakerConfig::default().consecutive_failures(8));
    let s = setup(policy).await;
    let started = Instant::now();
    // Two callers share the lane's one slot: the second can only go if the first's comes back.
    let (first, second) = tokio::join!(s.client.get(&s.url).send(), s.client.get(&s.url).send());
    assert_timed_out(first);
    assert_timed_out(second);
    assert_eq!(s.attempts(), 8, "1 + 3 retries each");
    // 8 attempts of 5 s, one at a time, plus backoffs: bounded, nowhere near forever.
    let elapsed = started.elapsed();
    assert!(
        elapsed >= 8 * ATTEMPT_TIMEOUT && elapsed < Duration::from_secs(8 * 5 + 2 * 3 * 20),
        "{elapsed:?}"
    );
    let stats = s.throttle.stats();
    let lane = stats.lane(&s.lane).expect("lane");
    assert_eq!((lane.sent, lane.errors, lane.retries), (8, 8, 6));
    assert_eq!((lane.in_flight, lane.queued), (0, 0));
    let breaker = s.throttle.breaker(&s.lane).expect("breaker");
    assert_eq!(
        breaker.state(),
        Some(BreakerState::Open),
        "8 failures in a row"
    );
}

/// The breaker counts the timeouts: once open, nothing more is sent to the hung server.
#[tokio::test(start_paused = true)]
async fn timeouts_open_the_breaker() {
    let policy = Policy::new()
        .attempt_timeout(ATTEMPT_TIMEOUT)
        .breaker(BreakerConfig::default().consecutive_failures(4));
    let s = setup(policy).await;
    assert_timed_out(s.client.get(&s.url).send().await);
    assert_eq!(s.attempts(), 4);
    let refused = s.client.get(&s.url).send().await.unwrap_err();
    assert!(
        matches!(
            Error::from_middleware(&refused),
            Some(Error::CircuitOpen { .. })
        ),
        "{refused}"
    );
    assert_eq!(s.attempts(), 4, "nothing sent while open");
}

/// A POST is not repeated after a timeout (the server may have acted), and its slot comes back:
/// with one slot, the next request goes out.
#[tokio::test(start_paused = true)]
async fn a_hung_post_is_not_sent_again_and_frees_its_slot() {
    let policy = Policy::new()
        .concurrency(1)
        .attempt_timeout(ATTEMPT_TIMEOUT);
    let s = setup(policy).await;
    assert_timed_out(s.client.post(&s.url).body("charge").send().await);
    assert_eq!(s.attempts(), 1, "sent once");
    assert_timed_out(s.client.post(&s.url).body("again").send().await);
    assert_eq!(s.attempts(), 2, "the one slot came back");
    let stats = s.throttle.stats();
    let lane = stats.lane(&s.lane).expect("lane");
    assert_eq!((lane.errors, lane.retries, lane.in_flight), (2, 0, 0));
    let snapshot = lane.breaker.as_ref().expect("breaker");
    assert_eq!(snapshot.consecutive_failures, 2, "{snapshot:?}");
}

/// Without an attempt timeout (the default), the same request is still waiting a day later:
/// what the README warns about.
#[tokio::test(start_paused = true)]
async fn without_a_timeout_a_hung_server_holds_the_request() {
    let s = setup(Policy::new()).await;
    let day = Duration::from_secs(86_400);
    assert!(timeout(day, s.client.get(&s.url).send()).await.is_err());
    assert_eq!(s.attempts(), 1);
}
