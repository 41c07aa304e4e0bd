//! Servers that say little, in virtual time against the simulated API with nothing configured:
//! window counters that answer a bare 429 (no Retry-After, no rate-limit headers), whether they
//! count only the requests they accepted or every request, and a fixed window of 10 per second
//! (slowapi's defaults: Flask-Limiter's `limits` underneath, headers off); and windows whose
//! headers announce their reset in whole seconds, late (Flask-Limiter, slowapi). Goodput is
//! `completed / max(elapsed, requests / limit) / limit`, as `examples/real_limiters.rs` counts.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use reqwest_throttle::sim::{HeaderStyle, RetryAfterStyle, SimulatedApi, SimulatedApiBuilder};
use reqwest_throttle::Throttle;
use tokio::time::Instant;

const URL: &str = "http://api.test/static";
const TASKS: usize = 16;

struct Report {
    failed: usize,
    refused: u64,
    goodput: f64,
}

/// `requests` GETs from sixteen tasks through a throttle with nothing configured.
async fn run(server: SimulatedApiBuilder, requests: usize, limit: f64) -> Report {
    let api = server.latency(Duration::from_millis(1)).build();
    let client: ClientWithMiddleware = ClientBuilder::new(reqwest::Client::new())
        .with(
            Throttle::builder()
                .build()
                .expect("nothing configured builds"),
        )
        .with(api.clone())
        .build();
    let next = Arc::new(AtomicUsize::new(0));
    let completed = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (client, next, completed) = (client.clone(), next.clone(), completed.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Relaxed) < requests {
                    if let Ok(response) = client.get(URL).send().await {
                        if response.status().is_success() {
                            completed.fetch_add(1, Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task panicked");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let completed = completed.load(Relaxed);
    let ideal = requests as f64 / limit;
    let report = Report {
        failed: requests - completed,
        refused: api.stats().limited,
        goodput: completed as f64 / elapsed.max(ideal) / limit,
    };
    println!(
        "completed {completed}, failed {}, refused {}, elapsed {elapsed:.2}s, goodput {:.1} %",
        report.failed,
        report.refused,
        report.goodput * 100.0
    );
    report
}

const SECOND: Duration = Duration::from_secs(1);

/// Every request completes, at most 5 % are refused and goodput is at least `goodput`.
fn assert_quiet_server_met(report: &Report, requests: usize, goodput: f64) {
    assert_eq!(report.failed, 0, "every request completes");
    assert!(
        report.refused as f64 <= requests as f64 * 0.05,
        "{} refused",
        report.refused
    );
    assert!(report.goodput >= goodput, "goodput {:.3}", report.goodput);
}

/// A sliding counter of accepted requests, 50 per second, bare 429s. Refused decrease after
/// decrease with nothing accepted between, the lane used to keep retrying inside the window:
/// CUBIC took each refusal as a pace too fast and fell far below the server's rate (16 % goodput,
/// one request refused past its retries). The lane now waits the window out.
#[tokio::test(start_paused = true)]
async fn a_sliding_counter_of_accepted_requests_is_waited_out_not_retried_inside() {
    let server = SimulatedApi::builder()
        .sliding_limit(50, SECOND)
        .retry_after(RetryAfterStyle::None);
    let report = run(server, 500, 50.0).await;
    assert_quiet_server_met(&report, 500, 0.9);
}

/// The same counter counting every request, the refused ones too: a retry inside the window
/// keeps it full, so only a whole window's wait clears it.
#[tokio::test(start_paused = true)]
async fn a_sliding_counter_of_every_request_is_waited_out_not_retried_inside() {
    let server = SimulatedApi::builder()
        .sliding_limit_counting_refusals(50, SECOND)
        .retry_after(RetryAfterStyle::None);
    let report = run(server, 500, 50.0).await;
    assert_quiet_server_met(&report, 500, 0.9);
}

/// A fixed window of 10 per second answering bare 429s (slowapi with its headers off). The
/// sixteen callers' first burst is refused six times (nothing is known yet); the window is then
/// found in three probes, each waiting twice as long as the streak of refusals has lasted, and
/// held just below its quota: no refusal after the first second.
#[tokio::test(start_paused = true)]
async fn a_fixed_window_of_ten_answering_bare_429s_is_found_in_its_first_second() {
    let server = SimulatedApi::builder()
        .limit(10, SECOND)
        .retry_after(RetryAfterStyle::None);
    let report = run(server, 100, 10.0).await;
    assert_eq!(report.failed, 0, "every request completes");
    assert!(report.goodput >= 0.9, "goodput {:.3}", report.goodput);
    // Six of the first burst, three probes; 4.5 % of the 200 the real harness sends.
    assert!(report.refused <= 9, "{} refused", report.refused);
}

/// Flask-Limiter's and slowapi's headers, 10 per second: the reset is `1 + ⌊end⌋`, an epoch
/// in whole seconds, read against a `Date` in whole seconds, so it announces the window's end up
/// to two seconds late, and successive windows' resets step by anything between nothing and two
/// seconds. Fixed windows aligned on the clock's seconds and moving windows, each with the
/// server's clock at every tenth of a second (where the windows fall against the lane's first
/// request). Read as they came, the announcements paced the lane at a quarter of the quota with
/// no refusal at all, or three times too fast (40 % to 74 % goodput at some of these phases).
#[tokio::test(start_paused = true)]
async fn resets_in_whole_seconds_announced_late_neither_slow_nor_hurry_the_lane() {
    for moving in [false, true] {
        for tenth in 0..10u64 {
            let server = SimulatedApi::builder();
            let server = if moving {
                server.sliding_limit(10, SECOND)
            } else {
                server.limit_aligned(10, SECOND)
            };
            let server = server
                .headers(HeaderStyle::FlaskLimiter)
                .retry_after(RetryAfterStyle::Seconds)
                .wall_clock(UNIX_EPOCH + Duration::from_millis(1_800_000_000_000 + tenth * 100));
            println!("moving {moving}, clock at .{tenth}:");
            let report = run(server, 200, 10.0).await;
            assert_quiet_server_met(&report, 200, 0.9);
        }
    }
}

/// A bucket of 50 per second with a burst of 10 (nginx `limit_req burst=10 nodelay`), bare
/// 429s: its burst spent, it refuses a few retries in a row, then accepts a token every 20 ms.
/// Not a window: waiting a second here halved goodput (36 %), so a cluster must outlast a
/// bucket's refill.
#[tokio::test(start_paused = true)]
async fn a_bucket_with_a_burst_spent_is_not_waited_out_as_a_window() {
    let server = SimulatedApi::builder()
        .token_bucket(50.0, 10)
        .retry_after(RetryAfterStyle::None);
    let report = run(server, 500, 50.0).await;
    assert_quiet_server_met(&report, 500, 0.95);
}
