//! Work per request, for counting instructions under callgrind (a count does not move with a
//! shared machine's noise the way a time does).
//!
//! ```text
//! cargo build --release --example instructions
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/instructions throttle 2000
//! ```
//!
//! Runs `count` requests through one chain, sequentially, each answered in memory by a terminal
//! middleware (no socket): `terminal_only` (the baseline: the chain with nothing in it),
//! `reqwest_retry`, `throttle` (default policy, no concurrency cap), or, without HTTP, a lane
//! lookup plus booking over 100 keys (`lane_reserve`) beside governor's keyed check
//! (`governor_check_key`). Two runs with different counts give the cost of one request as the
//! difference of their totals over the difference of their counts (set-up cancels out).

use std::hint::black_box;
use std::num::NonZeroU32;

use http::Extensions;
use reqwest_middleware::{ClientBuilder, Middleware, Next};
use reqwest_retry::policies::ExponentialBackoff;
use reqwest_retry::RetryTransientMiddleware;
use reqwest_throttle::{Policy, Rate, Throttle};

/// Answers every request itself with a small 200.
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let chain = args.next().unwrap_or_else(|| "throttle".to_owned());
    let count: u64 = args.next().map_or(Ok(1_000), |n| n.parse())?;
    let keys: Vec<String> = (0..100)
        .map(|i| format!("https://host-{i}.example.com:443"))
        .collect();
    match chain.as_str() {
        "lane_reserve" => {
            let throttle = Throttle::builder()
                .default_policy(
                    Policy::new().rate(Rate::per_second(1_000_000_000).burst(1_000_000)),
                )
                .build()?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let _guard = runtime.enter();
            for i in 0..count {
                let key = &keys[(i % 100) as usize];
                assert!(throttle.__bench_lane_reserve(black_box(key)));
            }
            return Ok(());
        }
        "governor_check_key" => {
            let governor = governor::RateLimiter::keyed(governor::Quota::per_second(
                NonZeroU32::new(1_000_000_000).unwrap_or(NonZeroU32::MAX),
            ));
            for i in 0..count {
                let key = &keys[(i % 100) as usize];
                assert!(governor.check_key(black_box(key)).is_ok());
            }
            return Ok(());
        }
        _ => {}
    }
    let builder = ClientBuilder::new(reqwest::Client::new());
    let builder = match chain.as_str() {
        "terminal_only" => builder,
        "reqwest_retry" => builder.with(RetryTransientMiddleware::new_with_policy(
            ExponentialBackoff::builder().build_with_max_retries(3),
        )),
        "throttle" => builder.with(
            Throttle::builder()
                .default_policy(Policy::new().unlimited_concurrency())
                .build()?,
        ),
        other => return Err(format!("unknown chain {other}").into()),
    };
    let client = builder.with(Terminal).build();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        for _ in 0..count {
            let response = client.get("http://127.0.0.1:9/").send().await?;
            black_box(response.bytes().await?);
        }
        Ok::<(), reqwest_middleware::Error>(())
    })?;
    Ok(())
}
