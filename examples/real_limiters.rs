//! reqwest-throttle beside its baselines against real third-party rate limiters on loopback:
//! nginx `limit_req` (50 r/s; no burst, burst 10 nodelay, burst 10 queued, and no burst with
//! `Retry-After: 1`) and Flask-Limiter (10/second; fixed and moving window, `X-RateLimit-*`).
//!
//! ```text
//! bash .ci/run                      # once: installs nginx-light and the flask venv (or set RT_NGINX / RT_PYTHON)
//! cargo run --example real_limiters
//! ```
//!
//! Each client runs against a freshly started server (fresh limiter state), sends a fixed number
//! of GETs from 16 tasks, and is cut off at a wall-clock bound. Per row: callers' 2xx
//! (completed), final errors or non-2xx (failed), requests cut off by the bound (cut), the 429s
//! counted below the client's middlewares and by the server itself, and goodput:
//! `completed / max(elapsed, requests / limit) / limit`. Takes about 7 minutes, most of it the
//! limits themselves. `RT_ONLY=burst0,throttle` keeps only the endpoints and clients whose
//! names contain one of the comma-separated words (both lists are filtered).

// The harness the `real_limiters` tests use; this example needs only part of it.
#[allow(dead_code)]
#[path = "../tests/real/mod.rs"]
mod real;

use std::time::Duration;

use real::contenders::Contender;
use real::flask::{self, FlaskLimiter};
use real::measure::{measure, CountedClient, Load, RealServer, Report};
use real::nginx::{self, Nginx};
use reqwest_throttle::Rate;

const NGINX_REQUESTS: usize = 500;
const NGINX_TASKS: usize = 16;
/// Four times the 10 s that 500 requests take at 50 r/s.
const NGINX_TIMEOUT: Duration = Duration::from_secs(40);

const FLASK_REQUESTS: usize = 200;
const FLASK_TASKS: usize = 16;
/// Three times the 20 s that 200 requests take at 10/s.
const FLASK_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> Result<(), String> {
    let nginx_load = Load {
        requests: NGINX_REQUESTS,
        tasks: NGINX_TASKS,
        timeout: NGINX_TIMEOUT,
        limit_per_second: nginx::RATE_PER_SECOND,
    };
    for path in nginx::ENDPOINTS.iter().filter(|path| chosen(path)) {
        print_header(&format!("nginx limit_req {path}"), nginx_load);
        for contender in contenders(nginx::RATE_PER_SECOND)
            .into_iter()
            .filter(|c| chosen(&c.name()))
        {
            let Some(server) = Nginx::start().await else {
                return Ok(());
            };
            print_row(
                &contender,
                &run(contender, &server, path, nginx_load).await?,
            );
        }
    }

    let flask_load = Load {
        requests: FLASK_REQUESTS,
        tasks: FLASK_TASKS,
        timeout: FLASK_TIMEOUT,
        limit_per_second: flask::LIMIT_PER_SECOND,
    };
    for path in flask::ENDPOINTS.iter().filter(|path| chosen(path)) {
        print_header(&format!("Flask-Limiter {path}"), flask_load);
        for contender in contenders(flask::LIMIT_PER_SECOND)
            .into_iter()
            .filter(|c| chosen(&c.name()))
        {
            let Some(server) = FlaskLimiter::start().await else {
                return Ok(());
            };
            print_row(
                &contender,
                &run(contender, &server, path, flask_load).await?,
            );
        }
    }
    Ok(())
}

/// Whether `name` is among the words of `RT_ONLY` (everything without it). An endpoint is
/// kept when any word names it or no word names any endpoint; likewise for clients.
fn chosen(name: &str) -> bool {
    let Ok(only) = std::env::var("RT_ONLY") else {
        return true;
    };
    let endpoints: Vec<&str> = nginx::ENDPOINTS
        .iter()
        .chain(flask::ENDPOINTS.iter())
        .copied()
        .collect();
    let names_endpoint = |word: &&str| endpoints.iter().any(|e| e.contains(*word));
    let is_endpoint = endpoints.contains(&name);
    let words: Vec<&str> = only
        .split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .filter(|w| names_endpoint(w) == is_endpoint)
        .collect();
    words.is_empty() || words.iter().any(|w| name.contains(w))
}

/// The four clients of the comparison, plus reqwest-throttle told the limit with a burst of 1
/// (the server's own burst at `/burst0`; `Rate::per_second(n)` alone allows a burst of `n`).
fn contenders(per_second: u32) -> Vec<Contender> {
    let mut all = Contender::all(per_second).to_vec();
    let paced = Rate::per_second(u64::from(per_second)).burst(1);
    all.insert(2, Contender::ThrottleConfigured(paced));
    all
}

async fn run(
    contender: Contender,
    server: &impl RealServer,
    path: &str,
    load: Load,
) -> Result<Report, String> {
    let client = CountedClient::new(contender.layers()?);
    measure(&client, server, path, load).await
}

fn print_header(title: &str, load: Load) {
    println!(
        "\n{title}: {} GETs from {} tasks, documented limit {}/s, bound {:?}",
        load.requests, load.tasks, load.limit_per_second, load.timeout
    );
    println!(
        "| {:<34} | {:>9} | {:>6} | {:>4} | {:>11} | {:>11} | {:>8} | {:>7} |",
        "client", "completed", "failed", "cut", "429s client", "429s server", "elapsed", "goodput"
    );
    println!(
        "|{:-<36}|{:->11}|{:->8}|{:->6}|{:->13}|{:->13}|{:->10}|{:->9}|",
        "", "", "", "", "", "", "", ""
    );
}

fn print_row(contender: &Contender, report: &Report) {
    println!(
        "| {:<34} | {:>9} | {:>6} | {:>4} | {:>11} | {:>11} | {:>7.1}s | {:>6.1}% |",
        contender.name(),
        report.completed,
        report.failed,
        report.unfinished,
        report.client.rate_limited,
        report.server.rate_limited,
        report.elapsed.as_secs_f64(),
        100.0 * report.goodput()
    );
    if let Some(failure) = &report.first_failure {
        println!("|   first failure: {failure}");
    }
}
