//! A fleet: N worker processes, each with its own `Throttle`, against one simulated API that
//! allows 50 requests per second, first each with a budget of its own, then sharing one budget
//! through Redis; then the same shared run with Redis killed for 3 s in the middle. Last, an
//! OpenAI-shaped API limiting requests and tokens (10 requests/s, 400 tokens/s), with
//! `Policy::openai()` and the limits configured, without and with the store.
//!
//! ```sh
//! cargo run --release --example fleet --features redis,test-util
//! ```
//!
//! The example starts `redis-server` itself on a free loopback port (or uses `REDIS_URL`), and
//! serves the simulated API on 127.0.0.1; the workers are this binary started again with
//! `worker` as first argument. The server's own counters are the truth: 429s and goodput.
//! With `FLEET_TRACE=1` the workers log the crate's `tracing` events (debug) to stderr.
//!
//! `--strict [sim|nginx]` measures instead 4 worker processes × 125 GETs from 4 tasks each
//! against a strict server (50/s, no burst, plain 429s: the simulator's, or real nginx
//! `limit_req` on `/fleet`, found as the real-limiter tests find it, `RT_NGINX`): each its own
//! budget told the rate, one budget shared through Redis told the rate, and shared told
//! nothing; goodput as the real-limiter tests count it (served per second over the limit, from
//! the first request to the last answer) and the server's 429s. `FLEET_MODES=shared,nothing`
//! runs only those; `FLEET_TRACE=1` logs each worker's events to stderr (`FLEET_FILTER` sets
//! the filter, e.g. `reqwest_throttle=trace` for every grant and departure on the store's
//! clock); `FLEET_LOG_DIR=dir` keeps nginx's log of each run (status, path, instant).
//!
//! `--faults [runs]` repeats only the fault run (default 5 times) and breaks it into phases:
//! before the kill, Redis down, restarted but not every worker back, every worker back; with
//! each 429 and whether its worker was then on the fallback budget (`FLEET_DEBUG=1`: also
//! when each worker's store went down and came back).

// The real limiters of the `real_limiters` tests (nginx); this example needs only part of it.
#[allow(dead_code)]
#[path = "../tests/real/mod.rs"]
mod real;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest_middleware::ClientBuilder;
use reqwest_throttle::retry::RetryPolicy;
use reqwest_throttle::sim::{HeaderStyle, SimulatedApi};
use reqwest_throttle::store::RedisStore;
use reqwest_throttle::{Error, Policy, Rate, Throttle};

const WORKERS: u32 = 8;
const RATE: u64 = 50;
/// The server's burst; each worker is told one less (timers of different processes fire a
/// little apart).
const SERVER_BURST: u64 = 10;
const REQUESTS_PER_WORKER: usize = 40;
/// The OpenAI-shaped phase: requests and tokens per second, and their bursts.
const LLM_RATE: u64 = 10;
const LLM_BURST: u64 = 10;
const LLM_TOKENS: u64 = 400;
const LLM_TOKEN_BURST: u64 = 2_000;
const LLM_REQUESTS_PER_WORKER: usize = 6;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("worker") {
        return worker(&args[2], args.get(3).map(String::as_str), false);
    }
    if args.get(1).map(String::as_str) == Some("llm-worker") {
        return worker(&args[2], args.get(3).map(String::as_str), true);
    }
    if args.get(1).map(String::as_str) == Some("strict-worker") {
        return strict_worker(&args[2], &args[3], &args[4]);
    }
    if args.get(1).map(String::as_str) == Some("--strict") {
        let server = args.get(2).cloned().unwrap_or_else(|| "sim".to_owned());
        return tokio::runtime::Runtime::new()?.block_on(strict(&server));
    }
    if args.get(1).map(String::as_str) == Some("--faults") {
        let runs = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(5);
        return tokio::runtime::Runtime::new()?.block_on(faults_only(runs));
    }
    tokio::runtime::Runtime::new()?.block_on(lead())
}

/// One worker: `REQUESTS_PER_WORKER` GETs (or `LLM_REQUESTS_PER_WORKER` chats) from 8 tasks;
/// prints `ok limited errors round-trips fallbacks reconnects`, then on a second line the
/// instants (µs since the Unix epoch) at which its store went down and came back, in turn.
fn worker(url: &str, redis: Option<&str>, llm: bool) -> Result<()> {
    if std::env::var_os("FLEET_TRACE").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter("reqwest_throttle=debug")
            .with_writer(std::io::stderr)
            .init();
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let policy = if llm {
            Policy::openai()
                .requests(Rate::per_second(LLM_RATE).burst(LLM_BURST - 1))
                .tokens(Rate::per_second(LLM_TOKENS).burst(LLM_TOKEN_BURST - 100))
        } else {
            Policy::new().rate(Rate::per_second(RATE).burst(SERVER_BURST - 1))
        }
        .retry(RetryPolicy::disabled())
        .no_breaker();
        let mut builder = Throttle::builder().default_policy(policy);
        if let Some(redis) = redis {
            builder = builder.store(
                RedisStore::new(redis)?
                    .prefix("fleet-example")
                    .expected_workers(WORKERS),
            );
        }
        let throttle = builder.build()?;
        let transitions = Arc::new(Mutex::new(Vec::new()));
        let watcher = tokio::spawn(watch_store(throttle.clone(), Arc::clone(&transitions)));
        let client = ClientBuilder::new(reqwest::Client::new())
            .with(throttle.clone())
            .build();
        let mut tasks = Vec::new();
        for task in 0..8 {
            let client = client.clone();
            let url = url.to_owned();
            tasks.push(tokio::spawn(async move {
                let (mut ok, mut limited, mut errors) = (0u64, 0u64, 0u64);
                let requests = if llm {
                    LLM_REQUESTS_PER_WORKER
                } else {
                    REQUESTS_PER_WORKER
                };
                for i in (task..requests).step_by(8) {
                    let request = if llm {
                        client
                            .post(&url)
                            .header("authorization", "Bearer sk-fleet-example")
                            .header("content-type", "application/json")
                            .body(chat(i))
                    } else {
                        client.get(&url)
                    };
                    match request.send().await {
                        Ok(response) if response.status() == 429 => limited += 1,
                        Ok(_) => ok += 1,
                        Err(error) => {
                            if !matches!(
                                Error::from_middleware(&error),
                                Some(Error::StoreUnavailable { .. })
                            ) {
                                eprintln!("worker error: {error}");
                            }
                            errors += 1
                        }
                    }
                }
                (ok, limited, errors)
            }));
        }
        let (mut ok, mut limited, mut errors) = (0, 0, 0);
        for task in tasks {
            let (o, l, e) = task.await?;
            ok += o;
            limited += l;
            errors += e;
        }
        let store = throttle.stats().store.unwrap_or_default();
        watcher.abort();
        println!(
            "{ok} {limited} {errors} {} {} {}",
            store.round_trips, store.fallbacks, store.reconnects
        );
        let transitions: Vec<String> = transitions
            .lock()
            .map_err(|_| "watcher panicked")?
            .iter()
            .map(u128::to_string)
            .collect();
        println!("{}", transitions.join(" "));
        Ok(())
    })
}

/// Records when the store went down and came back, in turn (µs since the Unix epoch), polled
/// every 2 ms until aborted.
async fn watch_store(throttle: Throttle, transitions: Arc<Mutex<Vec<u128>>>) {
    let mut up = true;
    loop {
        let now_up = throttle.stats().store.is_none_or(|store| store.up);
        if now_up != up {
            up = now_up;
            let at = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_micros();
            if let Ok(mut transitions) = transitions.lock() {
                transitions.push(at);
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The `i`-th chat: a short prompt and 60 to 140 tokens of allowance.
fn chat(i: usize) -> String {
    serde_json::json!({
        "model": "gpt-4o",
        "max_tokens": 60 + (i * 37) % 81,
        "messages": [{"role": "user", "content": "Say something short about rate limits."}],
    })
    .to_string()
}

/// A `redis-server` this example started, killed when dropped.
struct RedisServer(Child, u16);

impl RedisServer {
    fn start(port: u16) -> Result<RedisServer> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start redis-server ({e}); install it or set REDIS_URL"))?;
        std::thread::sleep(Duration::from_millis(300));
        Ok(RedisServer(child, port))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn lead() -> Result<()> {
    let mut own_redis = None;
    let redis_url = match std::env::var("REDIS_URL") {
        Ok(url) => url,
        Err(_) => {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            own_redis = Some(RedisServer::start(port)?);
            format!("redis://127.0.0.1:{port}/")
        }
    };
    println!(
        "{WORKERS} worker processes × {REQUESTS_PER_WORKER} GETs against a server allowing {RATE}/s (burst {SERVER_BURST})\n"
    );
    println!(
        "{:<34} {:>9} {:>6} {:>7} {:>8} {:>7} {:>9}",
        "run", "ok", "429s", "errors", "elapsed", "ok/s", "of limit"
    );
    run("each worker its own budget", None, None).await?;
    run("one budget shared through Redis", Some(&redis_url), None).await?;
    println!(
        "\nOpenAI-shaped: {WORKERS} workers × {LLM_REQUESTS_PER_WORKER} chats, {LLM_RATE} requests/s (burst {LLM_BURST}), {LLM_TOKENS} tokens/s (burst {LLM_TOKEN_BURST})"
    );
    run_llm("llm: each worker its own budget", None).await?;
    run_llm("llm: one budget shared through Redis", Some(&redis_url)).await?;
    println!();
    if let Some(server) = own_redis.take() {
        let port = server.1;
        run(
            "shared, Redis killed 3 s mid-run",
            Some(&redis_url),
            Some((server, port)),
        )
        .await?;
    }
    Ok(())
}

/// `--faults [runs]`: only the fault run, `runs` times (default 5), each with a fresh Redis.
async fn faults_only(runs: usize) -> Result<()> {
    for run_number in 1..=runs {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let server = RedisServer::start(port)?;
        let url = format!("redis://127.0.0.1:{port}/");
        run(
            &format!("run {run_number}: Redis killed 3 s"),
            Some(&url),
            Some((server, port)),
        )
        .await?;
    }
    Ok(())
}

/// Starts the `WORKERS` worker processes (this binary again, as `role`), each sending to `url`
/// (`{worker}` in it replaced by the worker's number) and, with `redis`, sharing its budget
/// there.
fn spawn_workers(role: &str, url: &str, redis: Option<&str>) -> Result<Vec<Child>> {
    let exe = std::env::current_exe()?;
    let children = (0..WORKERS)
        .map(|worker| {
            let mut command = Command::new(&exe);
            command
                .arg(role)
                .arg(url.replace("{worker}", &worker.to_string()));
            if let Some(redis) = redis {
                command.arg(redis);
            }
            command.stdout(Stdio::piped()).spawn()
        })
        .collect::<std::io::Result<_>>()?;
    Ok(children)
}

/// Waits for every worker, off the runtime's threads, and collects what each printed.
async fn wait_for(children: Vec<Child>) -> Result<Vec<std::process::Output>> {
    let outputs = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|child| child.wait_with_output())
            .collect::<std::io::Result<Vec<_>>>()
    })
    .await??;
    Ok(outputs)
}

/// One run of the OpenAI-shaped phase.
async fn run_llm(name: &str, redis: Option<&str>) -> Result<()> {
    let api = SimulatedApi::builder()
        .token_bucket(LLM_RATE as f64, LLM_BURST)
        .tokens_bucket(LLM_TOKENS as f64, LLM_TOKEN_BURST)
        .headers(HeaderStyle::OpenAi)
        .build();
    let server = api.serve().await?;
    let url = server.url("/v1/chat/completions");
    let started = Instant::now();
    let children = spawn_workers("llm-worker", &url, redis)?;
    let outputs = wait_for(children).await?;
    let elapsed = started.elapsed();
    let mut errors = 0u64;
    for output in outputs {
        let line = String::from_utf8_lossy(&output.stdout);
        errors += line
            .split_whitespace()
            .nth(2)
            .and_then(|e| e.parse::<u64>().ok())
            .unwrap_or(0);
    }
    let stats = api.stats();
    let span = stats.elapsed().as_secs_f64().max(f64::MIN_POSITIVE);
    // Beyond the burst the server gave at once, the rate it admitted.
    let tokens_per_second = stats.tokens_charged.saturating_sub(LLM_TOKEN_BURST) as f64 / span;
    println!(
        "{name:<38} ok {:>3}/{} 429s {:>3} errors {errors} elapsed {:>5.1}s tokens/s beyond the burst {:>6.1} ({:.0}% of {LLM_TOKENS})",
        stats.ok,
        WORKERS as usize * LLM_REQUESTS_PER_WORKER,
        stats.limited,
        elapsed.as_secs_f64(),
        tokens_per_second,
        100.0 * tokens_per_second / LLM_TOKENS as f64,
    );
    Ok(())
}

/// One fleet run; with `fault`, Redis is killed 1 s in and restarted 3 s later.
async fn run(name: &str, redis: Option<&str>, fault: Option<(RedisServer, u16)>) -> Result<()> {
    let api = SimulatedApi::builder()
        .token_bucket(RATE as f64, SERVER_BURST)
        .build();
    let server = api.serve().await?;
    let url = server.url("/v1/things?worker={worker}");
    let started = Instant::now();
    // The workers report the wall clock; this pair turns it into this process's instants.
    let (wall_origin, origin) = (SystemTime::now(), Instant::now());
    let children = spawn_workers("worker", &url, redis)?;
    let faulty = fault.is_some();
    let fault = tokio::spawn(async move {
        let (server, port) = fault?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(server);
        let killed = Instant::now();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let restarted = Instant::now();
        // Off the runtime's threads: the simulated API answers from them meanwhile (a blocked
        // thread held its requests back and let them through all at once).
        let server = tokio::task::spawn_blocking(move || RedisServer::start(port).ok())
            .await
            .ok()??;
        Some((server, killed, restarted))
    });
    let outputs = wait_for(children).await?;
    let elapsed = started.elapsed();
    let restarted = fault.await?;
    let mut totals = [0u64; 6];
    // Per worker, the instants its store went down and came back, in turn.
    let mut transitions: Vec<Vec<Instant>> = Vec::new();
    for output in outputs {
        let text = String::from_utf8_lossy(&output.stdout);
        let mut lines = text.lines();
        let line = lines.next().unwrap_or_default();
        for (total, field) in totals.iter_mut().zip(line.split_whitespace()) {
            *total += field.parse::<u64>().unwrap_or(0);
        }
        let wall_micros = wall_origin.duration_since(UNIX_EPOCH)?.as_micros();
        transitions.push(
            lines
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|at| at.parse::<u128>().ok())
                .map(|at| {
                    let since = u64::try_from(at.saturating_sub(wall_micros)).unwrap_or(0);
                    origin + Duration::from_micros(since)
                })
                .collect(),
        );
    }
    let stats = api.stats();
    let span = stats.elapsed().as_secs_f64().max(f64::MIN_POSITIVE);
    let ok_per_second = stats.ok as f64 / span;
    println!(
        "{name:<34} {:>9} {:>6} {:>7} {:>7.1}s {:>7.1} {:>8.0}%",
        format!("{}/{}", stats.ok, WORKERS as usize * REQUESTS_PER_WORKER),
        stats.limited,
        totals[2],
        elapsed.as_secs_f64(),
        ok_per_second,
        100.0 * ok_per_second / RATE as f64,
    );
    if redis.is_some() {
        println!(
            "{:<34} store round trips {}, fallback bookings {}, reconnects {}",
            "", totals[3], totals[4], totals[5]
        );
    }
    if let (true, Some((_, killed, restarted)), Some(first)) =
        (faulty, restarted, stats.first_request)
    {
        let first = first.into_std();
        phases(&api, first, killed, restarted, &transitions);
    }
    Ok(())
}

/// The fault run, phase by phase (seconds after the server's first request): before Redis is
/// killed, while it is down, from its restart until every worker books there again, after.
/// Each 429 is listed with the worker it answered and whether that worker was then on its
/// fallback budget.
fn phases(
    api: &SimulatedApi,
    first: Instant,
    killed: Instant,
    restarted: Instant,
    transitions: &[Vec<Instant>],
) {
    let secs = |at: Instant| {
        if at >= first {
            at.duration_since(first).as_secs_f64()
        } else {
            -first.duration_since(at).as_secs_f64()
        }
    };
    // The last time each worker came back; `None` if it never went down, or never came back
    // (it had nothing left to book, so nothing probed the store).
    let back: Vec<Option<Instant>> = transitions
        .iter()
        .map(|t| t.last().copied().filter(|_| t.len() % 2 == 0))
        .collect();
    if std::env::var_os("FLEET_DEBUG").is_some() {
        for (worker, t) in transitions.iter().enumerate() {
            let t: Vec<String> = t.iter().map(|&at| format!("{:.3}", secs(at))).collect();
            println!("worker {worker} transitions {}", t.join(" "));
        }
    }
    let all_back = back.iter().flatten().max().copied().unwrap_or(restarted);
    let requests = api.requests();
    let end = requests.last().map_or(all_back, |r| r.at.into_std());
    let bounds = [
        ("before the kill", first, killed),
        ("Redis down", killed, restarted),
        (
            "restarted, not all back",
            restarted,
            all_back.max(restarted),
        ),
        ("every worker back", all_back.max(restarted), end),
    ];
    println!(
        "{:<34} Redis killed at {:.2} s, restarted at {:.2} s; workers back at {} s",
        "",
        secs(killed),
        secs(restarted),
        back.iter()
            .map(|b| b.map_or("-".to_owned(), |b| format!("{:.2}", secs(b))))
            .collect::<Vec<_>>()
            .join(" ")
    );
    for (phase, from, to) in bounds {
        let inside: Vec<_> = requests
            .iter()
            .filter(|r| (from..to).contains(&r.at.into_std()))
            .collect();
        let limited = inside
            .iter()
            .filter(|r| r.status.is_some_and(|s| s == 429))
            .count();
        let span = to.saturating_duration_since(from).as_secs_f64();
        println!(
            "{:<34} {phase:<24} {:>5.2} s: {:>3} received ({:>5.1}/s), {limited} × 429",
            "",
            span,
            inside.len(),
            inside.len() as f64 / span.max(f64::MIN_POSITIVE),
        );
    }
    for request in requests
        .iter()
        .filter(|r| r.status.is_some_and(|s| s == 429))
    {
        let at = request.at.into_std();
        let worker = request
            .path
            .rsplit_once("worker=")
            .and_then(|(_, w)| w.parse::<usize>().ok());
        let mode = worker
            .and_then(|w| transitions.get(w))
            .map(|t| {
                if t.iter().filter(|&&change| change <= at).count() % 2 == 1 {
                    "fallback"
                } else {
                    "shared"
                }
            })
            .unwrap_or("?");
        println!(
            "{:<34} 429 at {:.3} s to worker {} ({mode})",
            "",
            secs(at),
            worker.map_or("?".to_owned(), |w| w.to_string())
        );
    }
}

/// The strict runs: workers, GETs per worker, tasks per worker, the server's rate.
const STRICT_WORKERS: usize = 4;
const STRICT_REQUESTS: usize = 125;
const STRICT_TASKS: usize = 4;
const STRICT_RATE: u64 = 50;

/// One worker of a strict run: `mode` is `own`, `shared` or `nothing` (shared, told nothing);
/// prints `completed failed first_start_us last_end_us` (µs since the Unix epoch).
fn strict_worker(url: &str, redis: &str, mode: &str) -> Result<()> {
    if std::env::var_os("FLEET_TRACE").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(
                std::env::var("FLEET_FILTER")
                    .unwrap_or_else(|_| "reqwest_throttle=debug,fleet=info".to_owned()),
            )
            .with_writer(std::io::stderr)
            .init();
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let mut builder = Throttle::builder();
        if mode != "nothing" {
            builder = builder.host(
                "127.0.0.1",
                Policy::new().rate(Rate::per_second(STRICT_RATE)),
            );
        }
        if mode != "own" {
            builder = builder.store(RedisStore::new(redis)?.prefix("fleet-strict"));
        }
        let throttle = builder.build()?;
        let client = ClientBuilder::new(reqwest::Client::new())
            .with(throttle)
            .build();
        let wall = || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_micros()
        };
        let first = wall();
        let mut tasks = Vec::new();
        for task in 0..STRICT_TASKS {
            let (client, url) = (client.clone(), url.to_owned());
            let span = tracing::info_span!("worker", pid = std::process::id());
            tasks.push(tokio::spawn(tracing::Instrument::instrument(
                async move {
                    let (mut completed, mut failed) = (0u64, 0u64);
                    for _ in (task..STRICT_REQUESTS).step_by(STRICT_TASKS) {
                        let answer =
                            tokio::time::timeout(Duration::from_secs(60), client.get(&url).send())
                                .await;
                        match answer {
                            Ok(Ok(response)) if response.status().is_success() => {
                                let _ = response.bytes().await;
                                completed += 1
                            }
                            _ => failed += 1,
                        }
                    }
                    (completed, failed)
                },
                span,
            )));
        }
        let (mut completed, mut failed) = (0, 0);
        for task in tasks {
            let (c, f) = task.await?;
            completed += c;
            failed += f;
        }
        println!("{completed} {failed} {first} {}", wall());
        Ok(())
    })
}

/// `--strict`: the three strict runs against `server` (`sim` or `nginx`).
async fn strict(server: &str) -> Result<()> {
    use real::measure::RealServer;

    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let _redis = RedisServer::start(port)?;
    let redis = format!("redis://127.0.0.1:{port}/");
    println!(
        "{STRICT_WORKERS} worker processes × {STRICT_REQUESTS} GETs from {STRICT_TASKS} tasks, a strict {STRICT_RATE}/s server ({server}), redis-server on loopback\n"
    );
    println!(
        "{:<34} {:>9} {:>6} {:>9} {:>9} {:>9}",
        "run", "served", "failed", "attempts", "429s", "goodput"
    );
    for (name, mode) in [
        ("each its own budget, told 50/s", "own"),
        ("shared through Redis, told 50/s", "shared"),
        ("shared through Redis, told nothing", "nothing"),
    ] {
        // `FLEET_MODES=shared,nothing`: only those runs.
        if std::env::var("FLEET_MODES").is_ok_and(|modes| !modes.split(',').any(|m| m == mode)) {
            continue;
        }
        // A fresh server each run: a fresh limiter state.
        let (url, counts): (String, Box<dyn Fn() -> (u64, u64)>) = if server == "nginx" {
            let nginx = real::nginx::Nginx::start()
                .await
                .ok_or("no nginx (set RT_NGINX)")?;
            let url = nginx.url(real::nginx::FLEET);
            let nginx = Arc::new(nginx);
            let runtime = tokio::runtime::Handle::current();
            (
                url,
                Box::new(move || {
                    let nginx = Arc::clone(&nginx);
                    let counts = std::thread::scope(|scope| {
                        scope
                            .spawn(|| runtime.block_on(nginx.counts(real::nginx::FLEET)))
                            .join()
                    });
                    if let Some(dir) = std::env::var_os("FLEET_LOG_DIR") {
                        let log: String = nginx
                            .timed_log()
                            .iter()
                            .map(|(status, uri, at)| format!("{at:.3} {status} {uri}\n"))
                            .collect();
                        let file =
                            std::path::Path::new(&dir).join(format!("nginx-{}.log", nginx.port()));
                        let _ = std::fs::write(file, log);
                    }
                    match counts {
                        Ok(Ok(counts)) => (counts.attempts, counts.rate_limited),
                        _ => (0, 0),
                    }
                }),
            )
        } else {
            let api = SimulatedApi::builder()
                .token_bucket(STRICT_RATE as f64, 1)
                .headers(HeaderStyle::None)
                .retry_after(reqwest_throttle::sim::RetryAfterStyle::None)
                .build();
            let served = api.serve().await?;
            let url = served.url("/v1/things");
            let keep = Arc::new(Mutex::new(Some(served)));
            (
                url,
                Box::new(move || {
                    let _alive = &keep;
                    let stats = api.stats();
                    (stats.received, stats.limited)
                }),
            )
        };
        let exe = std::env::current_exe()?;
        let children = (0..STRICT_WORKERS)
            .map(|_| {
                Command::new(&exe)
                    .args(["strict-worker", &url, &redis, mode])
                    .stdout(Stdio::piped())
                    .spawn()
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let outputs = wait_for(children).await?;
        let (mut completed, mut failed, mut first, mut last) = (0u64, 0u64, u128::MAX, 0u128);
        for output in outputs {
            let text = String::from_utf8_lossy(&output.stdout);
            let fields: Vec<u128> = text
                .split_whitespace()
                .filter_map(|field| field.parse().ok())
                .collect();
            if let [c, f, start, end] = fields[..] {
                completed += c as u64;
                failed += f as u64;
                first = first.min(start);
                last = last.max(end);
            }
        }
        // Let nginx's log catch up with its answers.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (attempts, refused) = tokio::task::block_in_place(counts);
        let requests = (STRICT_WORKERS * STRICT_REQUESTS) as f64;
        let span = (last.saturating_sub(first) as f64 / 1e6).max(requests / STRICT_RATE as f64);
        let goodput = completed as f64 / span / STRICT_RATE as f64;
        println!(
            "{name:<34} {:>9} {failed:>6} {attempts:>9} {:>9} {:>8.1}%",
            format!("{completed}/{}", requests as u64),
            format!(
                "{refused} ({:.1}%)",
                100.0 * refused as f64 / attempts.max(1) as f64
            ),
            100.0 * goodput
        );
    }
    Ok(())
}
