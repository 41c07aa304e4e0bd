//! What a booking costs through the Redis store, beside the in-memory budget, in the same run.
//!
//! ```text
//! cargo bench --bench store --features redis,test-util -- --warm-up-time 1 --measurement-time 5
//! ```
//!
//! The bench starts its own `redis-server` on a free loopback port (it is skipped, with a
//! message, when there is none). Each request goes through a `Throttle` whose only lane allows
//! a billion requests per second (so nothing waits: only the booking is measured) and ends in
//! the simulated API as a terminal middleware (no HTTP socket):
//!
//! - `in_memory`: the lane's budget in this process, the baseline;
//! - `redis`: the lane's budget in Redis: one EVALSHA round trip per request;
//! - `redis_16_in_flight`: the same with 16 requests at once (pipelined on one multiplexed
//!   connection), reported per request.
//!
//! Then, outside criterion, the bookings per second through one Redis from 1 process and from 8
//! (this binary started again as workers, 4 000 bookings each, 16 in flight). Compare with
//! `redis-benchmark -p <port> -n 100000 EVALSHA …` on the same machine for the server's
//! ceiling; the difference is the client's round trip.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use criterion::{criterion_group, Criterion, Throughput};
use futures_util::future::join_all;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use reqwest_throttle::retry::RetryPolicy;
use reqwest_throttle::sim::SimulatedApi;
use reqwest_throttle::store::RedisStore;
use reqwest_throttle::{Policy, Rate, Throttle};
use tokio::runtime::Runtime;

const URL: &str = "http://api.test/v1/things";

struct RedisServer(Child);

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> Option<(RedisServer, String)> {
    let port = TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|error| eprintln!("store bench skipped: no redis-server ({error})"))
        .ok()?;
    let url = format!("redis://127.0.0.1:{port}/");
    let client = redis::Client::open(url.as_str()).ok()?;
    for _ in 0..100 {
        let pong = client
            .get_connection_with_timeout(Duration::from_millis(100))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
        if pong.is_ok() {
            return Some((RedisServer(child), url));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    None
}

fn client(store: Option<RedisStore>) -> (Throttle, ClientWithMiddleware) {
    let policy = Policy::new()
        .rate(Rate::per_second(1_000_000_000))
        .retry(RetryPolicy::disabled())
        .no_breaker()
        .unlimited_concurrency();
    let mut builder = Throttle::builder().default_policy(policy);
    if let Some(store) = store {
        builder = builder.store(store.prefix("bench"));
    }
    let throttle = builder.build().expect("a valid throttle");
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(throttle.clone())
        .with(SimulatedApi::builder().build())
        .build();
    (throttle, client)
}

fn store(c: &mut Criterion) {
    let Some((_redis, url)) = start_redis() else {
        return;
    };
    let runtime = Runtime::new().expect("runtime");
    let (_, in_memory) = client(None);
    let (throttle, shared) = client(Some(RedisStore::new(&url).expect("a valid URL")));
    let mut group = c.benchmark_group("booking");
    group.throughput(Throughput::Elements(1));
    group.bench_function("in_memory", |b| {
        b.to_async(&runtime)
            .iter(|| async { in_memory.get(URL).send().await.expect("answered") });
    });
    group.bench_function("redis", |b| {
        b.to_async(&runtime)
            .iter(|| async { shared.get(URL).send().await.expect("answered") });
    });
    group.throughput(Throughput::Elements(16));
    group.bench_function("redis_16_in_flight", |b| {
        b.to_async(&runtime)
            .iter(|| async { join_all((0..16).map(|_| shared.get(URL).send())).await });
    });
    group.finish();
    // The bookings really went through Redis, not the fallback.
    let store = throttle.stats().store.expect("store stats");
    assert_eq!(store.fallbacks, 0, "{store:?}");
    eprintln!("store: {store:?}");
}

criterion_group!(benches, store);

/// Set in the worker processes the fleet measure starts: the Redis URL to book through.
const WORKER_ENV: &str = "RT_STORE_BENCH_WORKER";
/// Bookings each worker process makes, 16 in flight.
const WORKER_BOOKINGS: usize = 4_000;

/// A worker process: `WORKER_BOOKINGS` bookings through the store, 16 at a time; prints the
/// seconds they took.
fn worker(url: &str) {
    let runtime = Runtime::new().expect("runtime");
    let (_throttle, shared) = client(Some(RedisStore::new(url).expect("a valid URL")));
    let seconds = runtime.block_on(async {
        let start = std::time::Instant::now();
        for _ in 0..WORKER_BOOKINGS / 16 {
            join_all((0..16).map(|_| shared.get(URL).send())).await;
        }
        start.elapsed().as_secs_f64()
    });
    println!("{seconds}");
}

/// Bookings per second through one Redis from 1 process and from 8 (this binary started again
/// as workers), all at once; the rate is all bookings over the slowest worker's time.
fn fleet() {
    let Some((_redis, url)) = start_redis() else {
        return;
    };
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    for processes in [1, 8] {
        let workers: Vec<_> = (0..processes)
            .filter_map(|_| {
                Command::new(&exe)
                    .env(WORKER_ENV, &url)
                    .stdout(Stdio::piped())
                    .spawn()
                    .ok()
            })
            .collect();
        let slowest = workers
            .into_iter()
            .filter_map(|worker| worker.wait_with_output().ok())
            .filter_map(|output| {
                String::from_utf8_lossy(&output.stdout)
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .fold(0.0_f64, f64::max);
        if slowest > 0.0 {
            let bookings = (processes * WORKER_BOOKINGS) as f64;
            eprintln!(
                "store fleet: {processes} process(es) x {WORKER_BOOKINGS} bookings, 16 in flight each: {:.0} bookings/s",
                bookings / slowest
            );
        }
    }
}

fn main() {
    if let Ok(url) = std::env::var(WORKER_ENV) {
        worker(&url);
        return;
    }
    benches();
    fleet();
    Criterion::default().configure_from_args().final_summary();
}
