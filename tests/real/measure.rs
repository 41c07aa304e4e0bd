//! One measured run: `requests` GETs from `tasks` tasks through a client, against one path of a
//! real server, bounded in wall time, counted twice: by an [`AttemptCounter`] placed innermost
//! (below every middleware of the client under test, so it sees each attempt the client lets
//! out, retries included) and by the server itself.
//!
//! The [`Report`] holds counts only; judging them (goodput targets, 429 budgets) is left to the
//! tests and tables that use it.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
use tokio::time::Instant;

/// A real server whose own counts can be read back.
pub trait RealServer {
    /// `http://127.0.0.1:PORT{path}`.
    fn url(&self, path: &str) -> String;

    /// Requests the server has answered on `path`, and how many of them with 429.
    fn counts(&self, path: &str) -> impl Future<Output = Result<ServerCounts, String>>;
}

/// Attempts and 429s, as one side counted them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerCounts {
    pub attempts: u64,
    pub rate_limited: u64,
}

/// Counts what leaves the client under test: the innermost middleware, just above the transport.
#[derive(Clone, Default)]
pub struct AttemptCounter {
    attempts: Arc<AtomicU64>,
    rate_limited: Arc<AtomicU64>,
}

impl AttemptCounter {
    pub fn counts(&self) -> ServerCounts {
        ServerCounts {
            attempts: self.attempts.load(Relaxed),
            rate_limited: self.rate_limited.load(Relaxed),
        }
    }
}

#[async_trait::async_trait]
impl Middleware for AttemptCounter {
    async fn handle(
        &self,
        request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        self.attempts.fetch_add(1, Relaxed);
        let response = next.run(request, extensions).await;
        if matches!(&response, Ok(answer) if answer.status() == 429) {
            self.rate_limited.fetch_add(1, Relaxed);
        }
        response
    }
}

/// A client under test with an [`AttemptCounter`] below all its middlewares.
#[derive(Clone)]
pub struct CountedClient {
    pub client: ClientWithMiddleware,
    pub counter: AttemptCounter,
}

impl CountedClient {
    /// `layers` outermost first, then the counter, then a plain `reqwest::Client`.
    pub fn new(layers: Vec<Arc<dyn Middleware>>) -> CountedClient {
        let counter = AttemptCounter::default();
        let builder = layers.into_iter().fold(
            ClientBuilder::new(reqwest::Client::new()),
            |builder, layer| builder.with_arc(layer),
        );
        CountedClient {
            client: builder.with(counter.clone()).build(),
            counter,
        }
    }
}

/// How much to send, and the wall-clock bound of the whole run.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub requests: usize,
    pub tasks: usize,
    /// Requests not finished by then are cancelled and reported as `unfinished`.
    pub timeout: Duration,
    /// The server's documented limit, for [`Report::goodput`].
    pub limit_per_second: u32,
}

/// What one run did. `completed + failed + unfinished == requests`, always.
#[derive(Clone, Debug)]
pub struct Report {
    pub requests: usize,
    /// Callers that got a 2xx and its body.
    pub completed: u64,
    /// Callers that got an error or a final non-2xx.
    pub failed: u64,
    /// Requests cancelled (or never started) at the wall-clock bound.
    pub unfinished: u64,
    /// From the first request to the last answer (or the bound).
    pub elapsed: Duration,
    /// Counted innermost, below the client under test.
    pub client: ServerCounts,
    /// Counted by the server.
    pub server: ServerCounts,
    pub limit_per_second: u32,
    /// The first failure a caller saw, for diagnostics.
    pub first_failure: Option<String>,
}

impl Report {
    /// `completed / max(elapsed, requests / limit) / limit`: 1.0 is every request served at
    /// exactly the documented limit; finishing faster than the limit allows cannot exceed 1.0.
    pub fn goodput(&self) -> f64 {
        let limit = f64::from(self.limit_per_second);
        let ideal = self.requests as f64 / limit;
        let span = self.elapsed.as_secs_f64().max(ideal);
        if span <= 0.0 {
            return 0.0;
        }
        self.completed as f64 / span / limit
    }
}

/// How long a server's own counts may lag its answers (nginx logs after it responds).
const SERVER_COUNT_SETTLE: Duration = Duration::from_secs(2);

/// Sends `load.requests` GETs to `server`'s `path` through `client` and counts what happened.
pub async fn measure(
    client: &CountedClient,
    server: &impl RealServer,
    path: &str,
    load: Load,
) -> Result<Report, String> {
    measure_fleet(std::slice::from_ref(client), server, path, load).await
}

/// The same through a fleet of `clients` (each its own throttle, as separate processes would
/// be): task `i` sends through client `i % clients.len()`; the client counts are their sums.
pub async fn measure_fleet(
    clients: &[CountedClient],
    server: &impl RealServer,
    path: &str,
    load: Load,
) -> Result<Report, String> {
    if clients.is_empty() {
        return Err("a fleet of no clients".to_owned());
    }
    let url = server.url(path);
    let next_request = Arc::new(AtomicUsize::new(0));
    let completed = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let first_failure = Arc::new(Mutex::new(None::<String>));
    let start = Instant::now();
    let deadline = start + load.timeout;
    let tasks: Vec<_> = (0..load.tasks)
        .map(|task| {
            let client = clients[task % clients.len()].client.clone();
            let url = url.clone();
            let (next_request, completed, failed) =
                (next_request.clone(), completed.clone(), failed.clone());
            let first_failure = first_failure.clone();
            tokio::spawn(async move {
                while next_request.fetch_add(1, Relaxed) < load.requests {
                    let Ok(outcome) = tokio::time::timeout_at(deadline, get(&client, &url)).await
                    else {
                        break;
                    };
                    match outcome {
                        Ok(()) => completed.fetch_add(1, Relaxed),
                        Err(failure) => {
                            let mut first = first_failure.lock().unwrap_or_else(|e| e.into_inner());
                            first.get_or_insert(failure);
                            failed.fetch_add(1, Relaxed)
                        }
                    };
                }
            })
        })
        .collect();
    for task in tasks {
        task.await
            .map_err(|e| format!("a request task panicked: {e}"))?;
    }
    let elapsed = start.elapsed();
    let client_counts = clients.iter().fold(ServerCounts::default(), |sum, client| {
        let counts = client.counter.counts();
        ServerCounts {
            attempts: sum.attempts + counts.attempts,
            rate_limited: sum.rate_limited + counts.rate_limited,
        }
    });
    let server_counts = settled_counts(server, path, client_counts.attempts).await?;
    let (completed, failed) = (completed.load(Relaxed), failed.load(Relaxed));
    let first_failure = first_failure
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    Ok(Report {
        requests: load.requests,
        completed,
        failed,
        unfinished: (load.requests as u64).saturating_sub(completed + failed),
        elapsed,
        client: client_counts,
        server: server_counts,
        limit_per_second: load.limit_per_second,
        first_failure,
    })
}

/// One GET, body read: `Ok` for a 2xx, else what went wrong.
async fn get(client: &ClientWithMiddleware, url: &str) -> Result<(), String> {
    let response = client.get(url).send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    response.bytes().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("final status {status}"))
    }
}

/// The server's counts once they have caught up with the `attempts` the client let out
/// (bounded: a server that lost requests reports fewer, and the caller sees it).
async fn settled_counts(
    server: &impl RealServer,
    path: &str,
    attempts: u64,
) -> Result<ServerCounts, String> {
    let deadline = Instant::now() + SERVER_COUNT_SETTLE;
    loop {
        let counts = server.counts(path).await?;
        if counts.attempts >= attempts || Instant::now() >= deadline {
            return Ok(counts);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
