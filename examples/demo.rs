//! The demo: the same batch of requests against a rate-limited API, sent four ways, then the
//! API goes down for a few seconds.
//!
//! ```text
//! cargo run --release --example demo
//! ```
//!
//! Everything runs locally: a simulated API (`reqwest_throttle::sim`) listens on `127.0.0.1`
//! (real sockets, real time). It allows `LIMIT` requests per one-second window and answers
//! `429 Too Many Requests` with `Retry-After` beyond that. The batch goes through
//!
//! - (a) a bare `reqwest::Client`,
//! - (b) reqwest-retry's `RetryTransientMiddleware` with its default exponential backoff,
//! - (c1) the throttle with the server's rate configured,
//! - (c2) the throttle with no rate configured, the server announcing OpenAI-style
//!   `x-ratelimit-*` headers (the throttle paces itself from them),
//!
//! and a table compares them, and a chart of answers per second over time for each client
//! against the server's limit is written to `target/demo.svg`. Then the server answers 503 for a few seconds: the throttle's
//! circuit breaker opens, callers fail fast with `Error::CircuitOpen`, the server is left alone,
//! and traffic recovers when it comes back. The whole demo takes about half a minute. Built with
//! the `redis` feature (and a `redis-server` it can start), a last phase runs several workers
//! against one API, each with its own budget, then sharing one through Redis
//! (`examples/demo/fleet.rs`); otherwise it says why it is skipped.

#[path = "demo/fleet.rs"]
mod fleet;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use reqwest_retry::policies::ExponentialBackoff;
use reqwest_retry::RetryTransientMiddleware;
use reqwest_throttle::breaker::{BreakerConfig, BreakerState};
use reqwest_throttle::sim::{HeaderStyle, Outage, SimServer, SimulatedApi, TokenRule, UsageRule};
use reqwest_throttle::{Error, Policy, Rate, Throttle};
use tokio::time::Instant;

/// The server's limit: requests per `WINDOW`.
const LIMIT: u64 = 100;
const WINDOW: Duration = Duration::from_secs(1);
/// The batch each client sends, and how many tasks share it.
const REQUESTS: usize = 400;
const TASKS: usize = 50;
/// How long the server takes to answer (a small, realistic service time).
const LATENCY: Duration = Duration::from_millis(10);

/// The outage phase: healthy, down (503), healthy again.
const HEALTHY_BEFORE: Duration = Duration::from_secs(2);
const OUTAGE: Duration = Duration::from_secs(4);
const HEALTHY_AFTER: Duration = Duration::from_secs(3);
/// Callers during the outage phase: each sends one request every `CALLER_PERIOD`.
const CALLERS: usize = 8;
const CALLER_PERIOD: Duration = Duration::from_millis(20);

type DemoResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::main]
async fn main() -> DemoResult<()> {
    let progress = MultiProgress::new();
    println!(
        "A simulated API on 127.0.0.1 allows {LIMIT} requests per {WINDOW:?} and answers 429 + Retry-After beyond.\n\
         Each client sends the same {REQUESTS} GETs from {TASKS} concurrent tasks.\n"
    );

    let mut rows = Vec::new();
    rows.push(
        run_batch(&progress, "(a) bare reqwest", HeaderStyle::None, |_| {
            Ok(Client::Bare(reqwest::Client::new()))
        })
        .await?,
    );
    rows.push(
        run_batch(
            &progress,
            "(b) reqwest-retry (exp. backoff)",
            HeaderStyle::None,
            |_| {
                let backoff = ExponentialBackoff::builder().build_with_max_retries(3);
                let client = ClientBuilder::new(reqwest::Client::new())
                    .with(RetryTransientMiddleware::new_with_policy(backoff))
                    .build();
                Ok(Client::Middleware(client))
            },
        )
        .await?,
    );
    rows.push(
        run_batch(
            &progress,
            "(c1) throttle, rate 99/s configured",
            HeaderStyle::None,
            |server| {
                // A fixed window admits `LIMIT` per window, so the configured rate has no burst
                // beyond one: a GCRA burst of `LIMIT` on top of the steady rate would put up to
                // twice the limit into the first window (51 × 429 in this demo). And 1 % under
                // the limit: the server's window opens when the first request *arrives* (after
                // a TCP connect), so at exactly the limit the 101st request can arrive a few
                // milliseconds before that window ends; its `Retry-After: 1` (whole seconds,
                // rounded up) then pauses the lane for a whole second (5 × 429 and 71 % of the
                // limit at 100/s here, none and 99 % at 99/s).
                let rate = Rate::new(LIMIT - LIMIT / 100, WINDOW).burst(1);
                let host = server.addr().to_string();
                let throttle = Throttle::builder()
                    .host(&host, Policy::new().rate(rate))
                    .build()?;
                Ok(Client::throttled(throttle))
            },
        )
        .await?,
    );
    rows.push(
        run_batch(
            &progress,
            "(c2) throttle, no rate, headers",
            HeaderStyle::OpenAi,
            |_| {
                // Nothing configured: the polite defaults, paced by what the server announces.
                let throttle = Throttle::builder().build()?;
                Ok(Client::throttled(throttle))
            },
        )
        .await?,
    );
    print_table(&rows);
    let chart = write_chart(&rows)?;
    println!(
        "\nchart (answers per second over time, each client against the limit): {}",
        chart.display()
    );

    // A bar of its own: the batch bars' area ends above the table printed since.
    server_goes_down().await?;

    // LLM token budgets, in virtual time: a minute-scale limit would make a real-time demo long.
    tokio::task::spawn_blocking(token_budgets).await??;

    // Several workers sharing one budget through Redis (feature `redis`), or why not.
    fleet::fleet_phase().await?;

    Ok(())
}

/// One way of sending a request.
#[derive(Clone)]
enum Client {
    Bare(reqwest::Client),
    Middleware(ClientWithMiddleware),
    Throttled(ClientWithMiddleware, Throttle),
}

/// What a caller got back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Got {
    Ok,
    Status(u16),
    CircuitOpen,
    /// Any other error (a transport error, or another refusal of the throttle).
    Error,
}

impl Client {
    fn throttled(throttle: Throttle) -> Client {
        let client = ClientBuilder::new(reqwest::Client::new())
            .with(throttle.clone())
            .build();
        Client::Throttled(client, throttle)
    }

    fn throttle(&self) -> Option<&Throttle> {
        match self {
            Client::Throttled(_, throttle) => Some(throttle),
            Client::Bare(_) | Client::Middleware(_) => None,
        }
    }

    async fn get(&self, url: &str) -> Got {
        let result = match self {
            Client::Bare(client) => client.get(url).send().await.map_err(Into::into),
            Client::Middleware(client) | Client::Throttled(client, _) => {
                client.get(url).send().await
            }
        };
        match result {
            Ok(response) if response.status().is_success() => {
                // Read the body, as a real caller would; the connection goes back to the pool.
                match response.bytes().await {
                    Ok(_) => Got::Ok,
                    Err(_) => Got::Error,
                }
            }
            Ok(response) => Got::Status(response.status().as_u16()),
            Err(error) => match Error::from_middleware(&error) {
                Some(Error::CircuitOpen { .. }) => Got::CircuitOpen,
                _ => Got::Error,
            },
        }
    }
}

/// One line of the table.
struct Row {
    name: &'static str,
    /// Requests whose caller got a 200.
    ok: u64,
    /// What the server counted.
    received: u64,
    limited: u64,
    /// Retries the throttle counted itself (a cross-check of `received - REQUESTS`).
    throttle_retries: Option<u64>,
    elapsed: Duration,
    /// When each answer left the server (from the batch's start) and whether it was a 429,
    /// as the server recorded them.
    answers: Vec<(Duration, bool)>,
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:<36} [{bar:30}] {pos:>3}/{len} {elapsed:>4} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// Starts a fresh server, builds a client for it and sends the batch through it.
async fn run_batch(
    progress: &MultiProgress,
    name: &'static str,
    headers: HeaderStyle,
    make_client: impl FnOnce(&SimServer) -> DemoResult<Client>,
) -> DemoResult<Row> {
    let api = SimulatedApi::builder()
        .limit(LIMIT, WINDOW)
        .headers(headers)
        .latency(LATENCY)
        .build();
    let server = api.serve().await?;
    let client = make_client(&server)?;

    let bar = progress.add(ProgressBar::new(REQUESTS as u64));
    bar.set_style(bar_style());
    bar.set_prefix(name);

    let next = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (client, next, ok, bar, api) = (
                client.clone(),
                Arc::clone(&next),
                Arc::clone(&ok),
                bar.clone(),
                api.clone(),
            );
            let urls: Vec<String> = (0..REQUESTS)
                .map(|i| server.url(&format!("/v1/items/{i}")))
                .collect();
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Relaxed);
                    let Some(url) = urls.get(i) else { break };
                    if client.get(url).await == Got::Ok {
                        ok.fetch_add(1, Relaxed);
                    }
                    bar.inc(1);
                    bar.set_message(format!(
                        "{} ok, {} × 429 provoked",
                        ok.load(Relaxed),
                        api.stats().limited
                    ));
                }
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed();
    bar.finish();

    let stats = api.stats();
    let answers = api
        .requests()
        .iter()
        .filter_map(|request| {
            let limited = request.status? == 429;
            Some((request.at.saturating_duration_since(started), limited))
        })
        .collect();
    Ok(Row {
        name,
        answers,
        ok: ok.load(Relaxed),
        received: stats.received,
        limited: stats.limited,
        throttle_retries: client
            .throttle()
            .map(|throttle| throttle.stats().lanes.iter().map(|lane| lane.retries).sum()),
        elapsed,
    })
}

fn print_table(rows: &[Row]) {
    // Two: a progress bar as wide as the terminal leaves the cursor waiting to wrap.
    println!("\n");
    println!(
        "{:<36} {:>10} {:>9} {:>8} {:>9} {:>9} {:>9}",
        "client", "completed", "429s", "retries", "elapsed", "ok/s", "of limit"
    );
    let limit_per_sec = LIMIT as f64 / WINDOW.as_secs_f64();
    for row in rows {
        let retries = row.received.saturating_sub(REQUESTS as u64);
        let retries = match row.throttle_retries {
            Some(counted) if counted != retries => format!("{retries} ({counted})"),
            _ => retries.to_string(),
        };
        let secs = row.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            row.ok as f64 / secs
        } else {
            0.0
        };
        println!(
            "{:<36} {:>10} {:>9} {:>8} {:>8.1}s {:>9.1} {:>8.0}%",
            row.name,
            format!("{}/{REQUESTS}", row.ok),
            row.limited,
            retries,
            secs,
            rate,
            100.0 * rate / limit_per_sec,
        );
    }
    println!(
        "\ncompleted: callers that got a 200; 429s: refusals the server counted; retries: requests the \
         server saw beyond the {REQUESTS}.\nok/s: completed / elapsed, against the server's {limit_per_sec:.0}/s \
         (a client that gives up early can exceed it over its short run).\n(c2) is told nothing: it reads \
         x-ratelimit-remaining/-reset from each answer and spreads what is left over what remains of the window."
    );
}

/// The width of one point of the chart.
const CHART_BUCKET: Duration = Duration::from_millis(250);

/// Answers per second in each `CHART_BUCKET`, of 200s (`limited == false`) or of 429s.
fn per_second(answers: &[(Duration, bool)], limited: bool, buckets: usize) -> Vec<(f64, f64)> {
    let mut counts = vec![0u32; buckets];
    for (at, _) in answers.iter().filter(|(_, l)| *l == limited) {
        let bucket = (at.as_secs_f64() / CHART_BUCKET.as_secs_f64()) as usize;
        if let Some(count) = counts.get_mut(bucket) {
            *count += 1;
        }
    }
    let width = CHART_BUCKET.as_secs_f64();
    (0..buckets)
        .map(|i| ((i as f64 + 0.5) * width, f64::from(counts[i]) / width))
        .collect()
}

/// Writes the batches' answers per second over time (200s solid, 429s dashed, the server's
/// limit in black) as an SVG (plotters' SVG backend: text is left to the viewer's fonts) to
/// `$CARGO_TARGET_DIR/demo.svg` (default `target/demo.svg`); returns its path.
fn write_chart(rows: &[Row]) -> DemoResult<PathBuf> {
    use plotters::prelude::*;

    let dir =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("demo.svg");
    let longest = rows.iter().map(|row| row.elapsed).max().unwrap_or(WINDOW);
    let buckets = (longest.as_secs_f64() / CHART_BUCKET.as_secs_f64()).ceil() as usize + 1;
    let limit = LIMIT as f64 / WINDOW.as_secs_f64();
    // The bare client's first burst (hundreds of 429s in a quarter second) would flatten
    // everything else: rates above four times the limit are drawn at the top.
    let top = 4.0 * limit;
    let clip = |points: Vec<(f64, f64)>| -> Vec<(f64, f64)> {
        points
            .into_iter()
            .map(|(x, rate)| (x, rate.min(top)))
            .collect()
    };
    let series: Vec<_> = rows
        .iter()
        .map(|row| {
            let ok = clip(per_second(&row.answers, false, buckets));
            let limited = clip(per_second(&row.answers, true, buckets));
            (row.name, ok, limited)
        })
        .collect();
    let x_end = buckets as f64 * CHART_BUCKET.as_secs_f64();

    let root = SVGBackend::new(&path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{REQUESTS} GETs from {TASKS} tasks against {LIMIT} per {WINDOW:?}: answers per second (200 solid, 429 dashed; cut at {top:.0}/s)"),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_end, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the batch started")
        .y_desc("answers per second")
        .draw()?;
    chart
        .draw_series(LineSeries::new(
            [(0.0, limit), (x_end, limit)],
            BLACK.stroke_width(2),
        ))?
        .label(format!("server limit ({limit:.0}/s)"))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    for (i, (name, ok, limited)) in series.into_iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(ok, color.stroke_width(2)))?
            .label(format!("{name}: 200s"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        if limited.iter().any(|&(_, rate)| rate > 0.0) {
            chart
                .draw_series(DashedLineSeries::new(limited, 6, 4, color.stroke_width(1)))?
                .label(format!("{name}: 429s"))
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], color.stroke_width(1))
                });
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    // The backend borrows the path until it is dropped (and writes the file then too).
    drop(chart);
    drop(root);
    Ok(path)
}

/// One request of the outage phase, as its caller saw it.
struct Call {
    /// When it was sent, from the start of the phase.
    at: Duration,
    took: Duration,
    got: Got,
}

/// The "server goes down" phase: healthy, 503 for `OUTAGE`, healthy again.
async fn server_goes_down() -> DemoResult<()> {
    println!(
        "\nServer goes down: {CALLERS} callers each send a GET every {CALLER_PERIOD:?} through the throttle; \
         the server is healthy for {HEALTHY_BEFORE:?},\nanswers 503 for {OUTAGE:?}, then is healthy again. \
         Breaker: opens after 5 consecutive failures, open 1 s doubling up to 2 s (the default is 5 s up to 60 s).\n"
    );
    let api = SimulatedApi::builder()
        .latency(Duration::from_millis(5))
        .build();
    let server = api.serve().await?;
    let breaker = BreakerConfig::default().open_for(Duration::from_secs(1), Duration::from_secs(2));
    let throttle = Throttle::builder()
        .host(&server.addr().to_string(), Policy::new().breaker(breaker))
        .build()?;
    let client = Client::throttled(throttle.clone());
    let url = server.url("/v1/items/1");

    let total = HEALTHY_BEFORE + OUTAGE + HEALTHY_AFTER;
    let bar = ProgressBar::new(total.as_millis() as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:<36} [{bar:30}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix("server goes down");

    let started = Instant::now();
    let end = started + total;
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let mut calls = Vec::new();
                let mut tick = tokio::time::interval(CALLER_PERIOD);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while Instant::now() < end {
                    tick.tick().await;
                    let sent = Instant::now();
                    let got = client.get(&url).await;
                    calls.push(Call {
                        at: sent.saturating_duration_since(started),
                        took: sent.elapsed(),
                        got,
                    });
                }
                calls
            })
        })
        .collect();

    // The conductor: switches the outage on and off, watches the breaker, draws the bar.
    let outage_start = started + HEALTHY_BEFORE;
    let outage_end = outage_start + OUTAGE;
    let mut received_at_outage_start = None;
    let mut received_during_outage = None;
    let mut transitions: Vec<(Duration, BreakerState)> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tick.tick().await;
        let now = Instant::now();
        if now >= outage_start && received_at_outage_start.is_none() {
            received_at_outage_start = Some(api.stats().received);
            api.set_outage(Some(Outage::Status(http::StatusCode::SERVICE_UNAVAILABLE)));
        }
        if now >= outage_end && received_during_outage.is_none() {
            api.set_outage(None);
            let before = received_at_outage_start.unwrap_or(0);
            received_during_outage = Some(api.stats().received.saturating_sub(before));
        }
        let lane = throttle.stats().lanes.into_iter().next();
        let state = lane
            .as_ref()
            .and_then(|lane| lane.breaker.as_ref())
            .map_or(BreakerState::Closed, |breaker| breaker.state);
        if transitions.last().map(|(_, last)| *last) != Some(state) {
            transitions.push((now.saturating_duration_since(started), state));
        }
        let server_state = match api.outage() {
            Some(_) => "DOWN (503)",
            None => "up",
        };
        let stats = api.stats();
        bar.set_position(now.saturating_duration_since(started).as_millis() as u64);
        bar.set_message(format!(
            "server {server_state:<10} breaker {state:<9} server saw {} ({} × 503), callers failed fast {}",
            stats.received,
            stats.failed,
            lane.map_or(0, |lane| lane.circuit_rejected),
        ));
        if now >= end {
            break;
        }
    }
    let mut calls = Vec::new();
    for caller in callers {
        calls.extend(caller.await?);
    }
    bar.finish();

    report_outage(
        &calls,
        &transitions,
        received_during_outage.unwrap_or(0),
        &throttle,
    );
    Ok(())
}

fn report_outage(
    calls: &[Call],
    transitions: &[(Duration, BreakerState)],
    received_during_outage: u64,
    throttle: &Throttle,
) {
    let outage = HEALTHY_BEFORE..HEALTHY_BEFORE + OUTAGE;
    let during: Vec<&Call> = calls.iter().filter(|c| outage.contains(&c.at)).collect();
    let count = |got: Got| during.iter().filter(|c| c.got == got).count();
    let mut fast: Vec<Duration> = during
        .iter()
        .filter(|c| c.got == Got::CircuitOpen)
        .map(|c| c.took)
        .collect();
    fast.sort();
    let quantile = |q: f64| -> Duration {
        let index = ((fast.len() as f64 - 1.0) * q).round() as usize;
        fast.get(index).copied().unwrap_or_default()
    };

    println!("\nDuring the {OUTAGE:?} outage:");
    println!(
        "  callers sent {} requests: {} failed fast with Error::CircuitOpen, {} got the 503, {} got a 200, {} other",
        during.len(),
        fast.len(),
        count(Got::Status(503)),
        count(Got::Ok),
        during.len() - fast.len() - count(Got::Status(503)) - count(Got::Ok),
    );
    println!(
        "  the server saw {received_during_outage} requests (the failures that tripped the breaker, their retries, and one probe per open period)"
    );
    if !fast.is_empty() {
        println!(
            "  CircuitOpen latency (send() to error): median {:.1} µs, p99 {:.1} µs, max {:.1} µs",
            micros(quantile(0.5)),
            micros(quantile(0.99)),
            micros(quantile(1.0)),
        );
    }
    let timeline: Vec<String> = transitions
        .iter()
        .map(|(at, state)| format!("{:.2}s {state}", at.as_secs_f64()))
        .collect();
    println!("  breaker (polled every 20 ms): {}", timeline.join(" → "));

    let back = outage.end;
    let first_ok = calls
        .iter()
        .filter(|c| c.at >= back && c.got == Got::Ok)
        .map(|c| c.at)
        .min();
    let rate = |from: Duration, to: Duration| {
        let ok = calls
            .iter()
            .filter(|c| c.at >= from && c.at < to && c.got == Got::Ok)
            .count();
        ok as f64 / to.saturating_sub(from).as_secs_f64()
    };
    let end = HEALTHY_BEFORE + OUTAGE + HEALTHY_AFTER;
    let last_second = end.saturating_sub(Duration::from_secs(1));
    println!("After the server came back:");
    match first_ok {
        Some(at) => println!(
            "  first 200 {:.0} ms after recovery (the breaker's probe); last second {:.0} ok/s vs {:.0} ok/s before the outage",
            at.saturating_sub(back).as_secs_f64() * 1_000.0,
            rate(last_second, end),
            rate(Duration::ZERO, HEALTHY_BEFORE),
        ),
        None => println!("  no request succeeded after the server came back"),
    }
    if let Some(lane) = throttle.stats().lanes.first() {
        let trips = lane.breaker.as_ref().map_or(0, |breaker| breaker.trips);
        println!(
            "  throttle stats: {} attempts sent, {} retries, {} rejected by the open circuit, {trips} trips",
            lane.sent, lane.retries, lane.circuit_rejected
        );
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

// ── LLM token budgets (issue 5) ─────────────────────────────────────────────────────────────

/// RPM and TPM of the simulated chat-completions API.
const LLM_RPM: u64 = 500;
const LLM_TPM: u64 = 40_000;
const LLM_REQUESTS: usize = 400;

/// A chat body of varied size: a prompt of 20 to 600 words and a `max_tokens` of 16 to 400.
fn chat_body(i: u64) -> String {
    let spread = |salt: u64| i.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17) ^ salt;
    let words = 20 + spread(1) % 580;
    let prompt = vec!["tokens"; words as usize].join(" ");
    serde_json::json!({
        "model": "gpt-4o-mini",
        "max_tokens": 16 + spread(2) % 385,
        "messages": [{"role": "user", "content": prompt}],
    })
    .to_string()
}

/// Runs the LLM phase on a runtime of its own with paused time, so minutes pass in moments.
fn token_budgets() -> DemoResult<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()?;
    runtime.block_on(async {
        println!(
            "\nLLM API: a simulated chat-completions API allows {LLM_RPM} requests and {LLM_TPM} tokens per minute\n\
             (about four characters a token of the whole body + max_tokens counted on arrival, by the server's own\n\
             rule, and its usage by its own tokenizer). {LLM_REQUESTS} chats of varied size from 40 tasks, in virtual time."
        );
        println!(
            "\n{:<40} {:>9} {:>6} {:>10} {:>9} {:>9}",
            "client", "completed", "429s", "tokens/min", "req/min", "elapsed"
        );
        let rows: [(&str, Option<Policy>); 3] = [
            ("(a) no token budget (defaults)", None),
            (
                "(b) Policy::openai(), limits configured",
                Some(
                    Policy::openai()
                        .requests(Rate::per_minute(LLM_RPM))
                        .tokens(Rate::per_minute(LLM_TPM)),
                ),
            ),
            ("(c) Policy::openai(), limits from headers", Some(Policy::openai())),
        ];
        for (name, policy) in rows {
            let api = SimulatedApi::builder()
                .token_rule(TokenRule::CharsOver4)
                .usage_rule(UsageRule::Words)
                .requests_per_minute(LLM_RPM)
                .tokens_per_minute(LLM_TPM)
                .headers(HeaderStyle::OpenAi)
                .latency(Duration::from_millis(400))
                .build();
            let mut builder = Throttle::builder();
            if let Some(policy) = policy {
                builder = builder.host("api.openai.test", policy);
            }
            let client = ClientBuilder::new(reqwest::Client::new())
                .with(builder.build()?)
                .with(api.clone())
                .build();
            let start = Instant::now();
            let next = Arc::new(AtomicUsize::new(0));
            let tasks: Vec<_> = (0..40)
                .map(|_| {
                    let (client, next) = (client.clone(), Arc::clone(&next));
                    tokio::spawn(async move {
                        let mut completed = 0u64;
                        while let i @ 0..LLM_REQUESTS = next.fetch_add(1, Relaxed) {
                            let sent = client
                                .post("http://api.openai.test/v1/chat/completions")
                                .bearer_auth("sk-demo")
                                .header("content-type", "application/json")
                                .body(chat_body(i as u64))
                                .send()
                                .await;
                            if matches!(sent, Ok(ref response) if response.status().is_success()) {
                                completed += 1;
                            }
                        }
                        completed
                    })
                })
                .collect();
            let mut completed = 0;
            for task in tasks {
                completed += task.await?;
            }
            let elapsed = start.elapsed();
            let minutes = elapsed.as_secs_f64() / 60.0;
            let stats = api.stats();
            println!(
                "{name:<40} {:>5}/{LLM_REQUESTS} {:>6} {:>10.0} {:>9.0} {:>8.1}s",
                completed,
                stats.limited,
                stats.tokens_charged as f64 / minutes,
                stats.ok as f64 / minutes,
                elapsed.as_secs_f64(),
            );
        }
        println!(
            "tokens/min: what the server charged per minute of the run, against its {LLM_TPM}; \
             a run shorter than a minute can exceed it by the server's initial full bucket."
        );
        Ok(())
    })
}
