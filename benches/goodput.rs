//! Goodput against a server whose limit the client is not told.
//!
//! ```text
//! cargo bench --bench goodput
//! RUST_LOG=reqwest_throttle=debug cargo bench --bench goodput 2>events.log   # every decision
//! ```
//!
//! A simulated API on `127.0.0.1` allows `LIMIT` requests per one-second window (a fixed window,
//! opened by its first request, as GitHub's and OpenAI's announced resets behave) and answers
//! `429` with `Retry-After` (whole seconds, rounded up) beyond it; it announces no rate-limit
//! headers. `TASKS` tasks send GETs as fast as they are answered for `RUN` seconds, through
//!
//! - this crate's defaults (`Throttle::builder().build()`: no rate, 8 in flight, Retry-After
//!   pauses the lane, 3 retries inside a 20 % retry budget), and
//! - reqwest-retry's `RetryTransientMiddleware` with its default exponential backoff (3 retries),
//!
//! each against a fresh server, in the same run. Printed per client: goodput (callers' 200s
//! within the run) as a fraction of what the server allows in that time, and the 429s provoked,
//! per request started and per attempt the server saw. Targets (issue 3): goodput ≥ 90 % of the
//! limit, ≤ 5 % of requests provoking a 429.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use reqwest_retry::policies::ExponentialBackoff;
use reqwest_retry::RetryTransientMiddleware;
use reqwest_throttle::sim::{Outcome, SimulatedApi};
use reqwest_throttle::Throttle;
use tokio::time::Instant;

/// The server's limit, per `WINDOW`.
const LIMIT: u64 = 50;
const WINDOW: Duration = Duration::from_secs(1);
/// The server's service time.
const LATENCY: Duration = Duration::from_millis(10);
/// Concurrent callers, and how long each client runs.
const TASKS: usize = 32;
const RUN: Duration = Duration::from_secs(15);

struct Measured {
    name: &'static str,
    /// Requests callers started (the ones still in flight at the end are cancelled).
    started: u64,
    /// Callers that got a 200 within the run.
    ok: u64,
    /// Callers that got a final 429 (the client gave up on it).
    gave_up: u64,
    /// What the server saw.
    received: u64,
    limited: u64,
    /// The server's windows: how many opened, how many saw a 429, the most 429s in one.
    windows: Windows,
    throttle: Option<Throttle>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    println!(
        "server: {LIMIT} requests per {WINDOW:?} (fixed window), 429 + Retry-After, no rate-limit headers, \
         {LATENCY:?} latency; {TASKS} tasks for {RUN:?} per client\n"
    );

    let throttle = Throttle::builder().build()?;
    let defaults = ClientBuilder::new(reqwest::Client::new())
        .with(throttle.clone())
        .build();
    let crate_defaults = measure("reqwest-throttle defaults", defaults, Some(throttle)).await?;

    let retry = RetryTransientMiddleware::new_with_policy(
        ExponentialBackoff::builder().build_with_max_retries(3),
    );
    let retrying = ClientBuilder::new(reqwest::Client::new())
        .with(retry)
        .build();
    let reqwest_retry = measure("reqwest-retry exponential", retrying, None).await?;

    let allowed = LIMIT as f64 * RUN.as_secs_f64() / WINDOW.as_secs_f64();
    println!(
        "{:<28} {:>8} {:>8} {:>9} {:>10} {:>9} {:>12} {:>14}",
        "client", "started", "ok", "goodput", "attempts", "429s", "429/request", "429/attempt"
    );
    for row in [&crate_defaults, &reqwest_retry] {
        let per = |n: u64, d: u64| {
            if d == 0 {
                0.0
            } else {
                100.0 * n as f64 / d as f64
            }
        };
        println!(
            "{:<28} {:>8} {:>8} {:>8.1}% {:>10} {:>9} {:>11.1}% {:>13.1}%",
            row.name,
            row.started,
            row.ok,
            100.0 * row.ok as f64 / allowed,
            row.received,
            row.limited,
            per(row.limited, row.started),
            per(row.limited, row.received),
        );
    }
    println!(
        "\ngoodput: callers' 200s / the {allowed:.0} the server allows in {RUN:?}. targets: goodput ≥ 90 %, 429/request ≤ 5 %."
    );
    for row in [&crate_defaults, &reqwest_retry] {
        let Windows {
            opened,
            with_429,
            most_429,
        } = row.windows;
        println!(
            "{}: {} callers got a final 429; the server opened {opened} windows, {with_429} of them saw 429s (at most {most_429} in one)",
            row.name, row.gave_up,
        );
        if let Some(throttle) = &row.throttle {
            for lane in throttle.stats().lanes {
                println!(
                    "  lane {}: sent {}, retries {}, rate-limited answers {}, cooldowns {}, paced {}, \
                     retry budget exhausted {}, waited max {:?}",
                    lane.key,
                    lane.sent,
                    lane.retries,
                    lane.rate_limited,
                    lane.cooldowns,
                    lane.paced,
                    lane.retry_budget_exhausted,
                    lane.waited_max
                );
            }
        }
    }
    Ok(())
}

async fn measure(
    name: &'static str,
    client: ClientWithMiddleware,
    throttle: Option<Throttle>,
) -> Result<Measured, Box<dyn std::error::Error + Send + Sync>> {
    let api = SimulatedApi::builder()
        .limit(LIMIT, WINDOW)
        .latency(LATENCY)
        .build();
    let server = api.serve().await?;
    let url = server.url("/v1/items");
    let (started, ok, gave_up) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let start = Instant::now();
    let deadline = start + RUN;
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            let (started, ok, gave_up) = (started.clone(), ok.clone(), gave_up.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    started.fetch_add(1, Relaxed);
                    // A request still waiting or retrying at the end of the run is cancelled.
                    let sent = tokio::time::timeout_at(deadline, client.get(&url).send()).await;
                    match sent {
                        Ok(Ok(response)) if response.status().is_success() => {
                            if response.bytes().await.is_ok() && Instant::now() <= deadline {
                                ok.fetch_add(1, Relaxed);
                            }
                        }
                        Ok(Ok(response)) if response.status() == 429 => {
                            gave_up.fetch_add(1, Relaxed);
                        }
                        Ok(_) | Err(_) => {}
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    let stats = api.stats();
    let windows = windows(&api);
    Ok(Measured {
        name,
        started: started.load(Relaxed),
        ok: ok.load(Relaxed),
        gave_up: gave_up.load(Relaxed),
        received: stats.received,
        limited: stats.limited,
        windows,
        throttle,
    })
}

#[derive(Clone, Copy, Default)]
struct Windows {
    opened: u64,
    with_429: u64,
    most_429: u64,
}

/// Replays the server's log into its windows: a window opens with the first request after the
/// previous one ended.
fn windows(api: &SimulatedApi) -> Windows {
    let mut windows = Windows::default();
    let mut window_start: Option<Instant> = None;
    let mut limited_in_window = 0;
    let close = |windows: &mut Windows, limited: u64| {
        if limited > 0 {
            windows.with_429 += 1;
            windows.most_429 = windows.most_429.max(limited);
        }
    };
    for request in api.requests() {
        if window_start.is_none_or(|start| request.at >= start + WINDOW) {
            close(&mut windows, limited_in_window);
            limited_in_window = 0;
            windows.opened += 1;
            window_start = Some(request.at);
        }
        if request.outcome == Outcome::Limited {
            limited_in_window += 1;
        }
    }
    close(&mut windows, limited_in_window);
    windows
}
