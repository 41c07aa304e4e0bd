//! Four workers against a strict 50/s server (the simulator's, or real nginx `limit_req`
//! without burst), sharing one budget through a store: the in-process measurement that
//! `redis_store.rs` (one `redis-server`) and `redis_cluster.rs` (a Redis Cluster) run alike.
//!
//! Real time, and so `#[ignore]`d where it is used: a loaded machine moves the figures by
//! several points. The processes' measurement is the `fleet` example's `--strict`.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use reqwest_throttle::sim::{HeaderStyle, RetryAfterStyle, SimServer, SimulatedApi};
use reqwest_throttle::store::RedisStore;
use reqwest_throttle::{Policy, Rate, Throttle};

use super::real::measure::{measure_fleet, CountedClient, Load, RealServer, Report, ServerCounts};
use super::real::nginx::{self, Nginx};

/// The targets told the server's rate: at most 1 % refused, at least 95 % goodput.
pub const CONFIGURED: Targets = Targets {
    refused: 0.01,
    goodput: 0.95,
};
/// ...and told nothing: at most 5 % refused, at least 90 % goodput.
pub const NOTHING: Targets = Targets {
    refused: 0.05,
    goodput: 0.90,
};

/// What a run must reach: the server's refusals over its attempts at most `refused`, the
/// goodput at least `goodput`.
#[derive(Clone, Copy, Debug)]
pub struct Targets {
    pub refused: f64,
    pub goodput: f64,
}

/// The strict server a run goes to.
#[derive(Clone, Copy, Debug)]
pub enum Strict {
    /// The simulator's token bucket of one at 50/s, plain 429s.
    Sim,
    /// Real nginx `limit_req` at 50 r/s without burst, one zone for every client.
    Nginx,
}

/// The simulator's strict server on loopback: 50 requests/s without burst (a token bucket of
/// one), plain 429s without headers or Retry-After, as nginx `limit_req` answers.
struct StrictSim {
    api: SimulatedApi,
    server: SimServer,
}

impl StrictSim {
    async fn start() -> StrictSim {
        let api = SimulatedApi::builder()
            .token_bucket(f64::from(nginx::RATE_PER_SECOND), 1)
            .headers(HeaderStyle::None)
            .retry_after(RetryAfterStyle::None)
            .build();
        let server = api.serve().await.expect("a loopback port");
        StrictSim { api, server }
    }
}

impl RealServer for StrictSim {
    fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    async fn counts(&self, _path: &str) -> Result<ServerCounts, String> {
        let stats = self.api.stats();
        Ok(ServerCounts {
            attempts: stats.received,
            rate_limited: stats.limited,
        })
    }
}

/// Four workers, each its own `Throttle` with its own store from `store` (as four processes
/// would be), told the server's rate or nothing; default policy otherwise (retries included).
fn fleet_of_four(store: &impl Fn() -> RedisStore, configured: bool) -> Vec<CountedClient> {
    (0..4)
        .map(|_| {
            let builder = Throttle::builder();
            let builder = if configured {
                let rate = Rate::per_second(u64::from(nginx::RATE_PER_SECOND));
                builder.host("127.0.0.1", Policy::new().rate(rate))
            } else {
                builder
            };
            let throttle = builder.store(store()).build().expect("a valid throttle");
            CountedClient::new(vec![Arc::new(throttle)])
        })
        .collect()
}

/// 4 workers × 4 tasks send 500 GETs together to the `strict` server through one budget
/// shared by the stores `store` makes, told its rate (`configured`) or nothing; the run as
/// counted, printed. `None` (the reason printed) outside CI without nginx.
pub async fn run(
    strict: Strict,
    configured: bool,
    store: impl Fn() -> RedisStore,
) -> Option<Report> {
    let clients = fleet_of_four(&store, configured);
    let load = Load {
        requests: 500,
        tasks: 16,
        timeout: Duration::from_secs(60),
        limit_per_second: nginx::RATE_PER_SECOND,
    };
    let report = match strict {
        Strict::Sim => {
            let sim = StrictSim::start().await;
            measure_fleet(&clients, &sim, "/v1/things", load).await
        }
        Strict::Nginx => {
            let nginx = Nginx::start().await?;
            measure_fleet(&clients, &nginx, nginx::FLEET, load).await
        }
    }
    .unwrap();
    println!(
        "fleet of 4 against {strict:?}, {}: completed {}/{}, attempts {}, 429s {} ({:.1} %), goodput {:.1} %",
        if configured {
            "configured"
        } else {
            "nothing configured"
        },
        report.completed,
        report.requests,
        report.server.attempts,
        report.server.rate_limited,
        100.0 * refused_share(&report),
        100.0 * report.goodput()
    );
    Some(report)
}

fn refused_share(report: &Report) -> f64 {
    report.server.rate_limited as f64 / report.server.attempts.max(1) as f64
}

/// Every request answered, and the run within `targets`.
pub fn assert_within(report: &Report, targets: Targets) {
    assert_eq!(report.completed as usize, report.requests, "{report:#?}");
    assert!(refused_share(report) <= targets.refused, "{report:#?}");
    assert!(report.goodput() >= targets.goodput, "{report:#?}");
}
