//! What the throttle costs per request when no limit is engaged.
//!
//! ```text
//! cargo bench --bench overhead -- --warm-up-time 1 --measurement-time 5
//! ```
//!
//! One local axum server on `127.0.0.1` (its own thread and runtime), one client runtime, and in
//! the same run, with identically built `reqwest::Client`s:
//!
//! - `bare_reqwest`: a plain `reqwest::Client`, the baseline;
//! - `middleware_none`: a `ClientWithMiddleware` with no middleware (the chain's own cost);
//! - `reqwest_retry`: reqwest-retry's `RetryTransientMiddleware` (exponential backoff, 3 retries);
//! - `throttle`: the full `Throttle`, default policy with no concurrency cap (no rate, so nothing
//!   waits; retry policy and circuit breaker on, as by default);
//! - `throttle_no_breaker`: the same with `Policy::no_breaker()`, so the breaker's share can be
//!   read off.
//!
//! Each runs sequentially (one request at a time) and with 16 requests in flight. A request is
//! sent and its body read. A loopback round trip takes tens of microseconds, so differences of
//! tens of nanoseconds drown in its noise. Hence three more measurements:
//!
//! - `in_memory`: the middleware's own CPU per request, each chain ending in a middleware that
//!   answers at once (no socket);
//! - `breaker`: a closed breaker's `admit` + `record`, beside an empty closure;
//! - last, printed as a table, the five clients interleaved round by round (see
//!   [`interleaved`]): on a machine shared with other work, criterion's variants run seconds
//!   apart under different load, and only a per-round ratio to bare reqwest is trustworthy.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, Criterion, Throughput};
use futures_util::future::join_all;
use http::Extensions;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
use reqwest_retry::policies::ExponentialBackoff;
use reqwest_retry::RetryTransientMiddleware;
use reqwest_throttle::breaker::{Breaker, BreakerConfig, Outcome};
use reqwest_throttle::{Policy, Throttle};
use tokio::runtime::Runtime;

/// Requests in flight at once in the concurrent group.
const CONCURRENT: usize = 16;

/// Starts the server on its own thread (so that it does not share the client's runtime) and
/// returns its address.
fn start_server() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("server runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind 127.0.0.1");
            tx.send(listener.local_addr().expect("local addr"))
                .expect("send addr");
            let app = Router::new().route("/", get(|| async { "ok" }));
            axum::serve(listener, app).await.expect("server");
        });
    });
    rx.recv().expect("server address")
}

/// Every client is built the same way, so only the middleware differs.
fn reqwest_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENT)
        .build()
        .expect("reqwest client")
}

#[derive(Clone)]
enum Client {
    Bare(reqwest::Client),
    Middleware(ClientWithMiddleware),
}

impl Client {
    async fn get(&self, url: &str) {
        let response = match self {
            Client::Bare(client) => client.get(url).send().await.expect("request"),
            Client::Middleware(client) => client.get(url).send().await.expect("request"),
        };
        assert!(response.status().is_success());
        black_box(response.bytes().await.expect("body"));
    }
}

fn clients() -> Vec<(&'static str, Client)> {
    let throttle = |policy: Policy| {
        let throttle = Throttle::builder()
            .default_policy(policy)
            .build()
            .expect("throttle");
        Client::Middleware(ClientBuilder::new(reqwest_client()).with(throttle).build())
    };
    let retry = RetryTransientMiddleware::new_with_policy(
        ExponentialBackoff::builder().build_with_max_retries(3),
    );
    vec![
        ("bare_reqwest", Client::Bare(reqwest_client())),
        (
            "middleware_none",
            Client::Middleware(ClientBuilder::new(reqwest_client()).build()),
        ),
        (
            "reqwest_retry",
            Client::Middleware(ClientBuilder::new(reqwest_client()).with(retry).build()),
        ),
        ("throttle", throttle(Policy::new().unlimited_concurrency())),
        (
            "throttle_no_breaker",
            throttle(Policy::new().unlimited_concurrency().no_breaker()),
        ),
    ]
}

fn requests(c: &mut Criterion) {
    let url = format!("http://{}/", start_server());
    let runtime: Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let clients = clients();

    let mut sequential = c.benchmark_group("overhead/sequential");
    sequential.throughput(Throughput::Elements(1));
    sequential.sample_size(30);
    for (name, client) in &clients {
        sequential.bench_function(*name, |b| {
            b.to_async(&runtime).iter(|| client.get(&url));
        });
    }
    sequential.finish();

    let mut concurrent = c.benchmark_group(format!("overhead/concurrent{CONCURRENT}"));
    concurrent.throughput(Throughput::Elements(CONCURRENT as u64));
    concurrent.sample_size(30);
    for (name, client) in &clients {
        concurrent.bench_function(*name, |b| {
            b.to_async(&runtime)
                .iter(|| join_all((0..CONCURRENT).map(|_| client.get(&url))));
        });
    }
    concurrent.finish();
}

/// Answers every request itself with a small 200, like the local server but without a socket:
/// placed last in the chain, it leaves only the middleware's own work to measure.
struct Terminal;

#[async_trait::async_trait]
impl Middleware for Terminal {
    async fn handle(
        &self,
        _request: reqwest::Request,
        _extensions: &mut Extensions,
        _next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let response = http::Response::builder()
            .status(200)
            .header("content-type", "text/plain; charset=utf-8")
            .header("content-length", "2")
            .body("ok")
            .map_err(reqwest_middleware::Error::middleware)?;
        Ok(reqwest::Response::from(response))
    }
}

/// The middleware's own cost per request, without the network: each chain ends in [`Terminal`].
fn in_memory(c: &mut Criterion) {
    let runtime: Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let throttle = |policy: Policy| {
        Throttle::builder()
            .default_policy(policy)
            .build()
            .expect("throttle")
    };
    let retry = RetryTransientMiddleware::new_with_policy(
        ExponentialBackoff::builder().build_with_max_retries(3),
    );
    let chains = [
        ("terminal_only", ClientBuilder::new(reqwest_client())),
        (
            "reqwest_retry",
            ClientBuilder::new(reqwest_client()).with(retry),
        ),
        (
            "throttle",
            ClientBuilder::new(reqwest_client())
                .with(throttle(Policy::new().unlimited_concurrency())),
        ),
        (
            "throttle_no_breaker",
            ClientBuilder::new(reqwest_client())
                .with(throttle(Policy::new().unlimited_concurrency().no_breaker())),
        ),
        // Shadow mode: sent at once, with the would-have decisions and the comparison recorded.
        (
            "throttle_shadow",
            ClientBuilder::new(reqwest_client())
                .with(throttle(Policy::new().unlimited_concurrency().shadow())),
        ),
    ];
    let mut group = c.benchmark_group("in_memory");
    group.throughput(Throughput::Elements(1));
    // No network noise here: two seconds are plenty, and keep the whole bench under two minutes.
    group.measurement_time(Duration::from_secs(2));
    for (name, chain) in chains {
        let client = chain.with(Terminal).build();
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter(|| async {
                let response = client
                    .get("http://127.0.0.1:9/")
                    .send()
                    .await
                    .expect("request");
                black_box(response.bytes().await.expect("body"));
            });
        });
    }
    group.finish();
}

fn breaker(c: &mut Criterion) {
    let mut group = c.benchmark_group("breaker");
    group.measurement_time(Duration::from_secs(2));
    group.bench_function("empty_closure", |b| b.iter(|| {}));
    let breaker = Breaker::new(BreakerConfig::default());
    let now = tokio::time::Instant::now();
    group.bench_function("admit_record_closed", |b| {
        b.iter(|| {
            let admission = breaker
                .admit(black_box(now))
                .expect("closed breakers admit");
            breaker.record(admission, black_box(Outcome::Success), now);
        });
    });
    group.finish();
}

/// Rounds of the interleaved comparison, and the work of one variant in one round.
const ROUNDS: usize = 21;
const SEQUENTIAL_PER_ROUND: usize = 200;
const BATCHES_PER_ROUND: usize = 25;

/// The same comparison, interleaved: every round runs every variant once (in a rotating order),
/// and each variant is compared with bare reqwest *of the same round*. On a machine shared with
/// other work, criterion's variants run seconds apart under different load; the per-round ratio
/// cancels most of that drift. Prints the median time per request and the median throughput
/// ratio to bare reqwest.
fn interleaved() {
    let url = format!("http://{}/", start_server());
    let runtime: Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let clients = clients();
    let sequential = |client: &Client| {
        runtime.block_on(async {
            for _ in 0..SEQUENTIAL_PER_ROUND {
                client.get(&url).await;
            }
        });
        SEQUENTIAL_PER_ROUND
    };
    let concurrent = |client: &Client| {
        runtime.block_on(async {
            for _ in 0..BATCHES_PER_ROUND {
                join_all((0..CONCURRENT).map(|_| client.get(&url))).await;
            }
        });
        BATCHES_PER_ROUND * CONCURRENT
    };
    // Warm every pool first, so the first round pays no connection setup.
    for (_, client) in &clients {
        concurrent(client);
    }
    let modes: [(&str, &RunRound); 2] =
        [("sequential", &sequential), ("concurrent16", &concurrent)];
    println!("\ninterleaved: {ROUNDS} rounds, each variant once per round (rotating order)");
    println!(
        "{:<14} {:<20} {:>14} {:>12} {:>16}",
        "mode", "client", "µs/request", "requests/s", "vs bare (median)"
    );
    for (mode, run) in modes {
        let mut per_request: Vec<Vec<f64>> = vec![Vec::with_capacity(ROUNDS); clients.len()];
        for round in 0..ROUNDS {
            for k in 0..clients.len() {
                let index = (round + k) % clients.len();
                let started = std::time::Instant::now();
                let requests = run(&clients[index].1);
                per_request[index].push(started.elapsed().as_secs_f64() / requests as f64);
            }
        }
        let bare = &per_request[0];
        for ((name, _), times) in clients.iter().zip(&per_request) {
            let ratios: Vec<f64> = bare.iter().zip(times).map(|(b, t)| b / t).collect();
            let time = median(times.clone());
            println!(
                "{mode:<14} {name:<20} {:>14.1} {:>12.0} {:>15.1}%",
                time * 1e6,
                1.0 / time,
                100.0 * median(ratios)
            );
        }
    }
}

/// Runs one variant's share of a round; returns the requests it sent.
type RunRound<'a> = dyn Fn(&Client) -> usize + 'a;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

criterion_group! {
    name = benches;
    // No plots: drawing them takes longer than some of the measurements on a busy machine.
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).without_plots();
    targets = requests, in_memory, breaker
}

fn main() {
    benches();
    interleaved();
    Criterion::default().configure_from_args().final_summary();
}
