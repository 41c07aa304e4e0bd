//! The throttle's metrics reach a real Prometheus exporter (metrics-exporter-prometheus on
//! 127.0.0.1), and a dashboard can trust what it scrapes: counters never fall (not even when the
//! lanes that counted them are evicted), the gauges move as requests queue and fly with nothing
//! called before a scrape, every series is described, units booked and charged are counted per
//! dimension, and labels stay bounded (the host, never the API key).
//!
//! One recorder serves the whole test binary (a process has one global recorder), so each test
//! uses hosts of its own and reads only their series.

mod redis_server;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::Extensions;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use reqwest::{Request, Response};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
use reqwest_throttle::cost::{CostModel, Inspection, Settlement};
use reqwest_throttle::retry::RetryPolicy;
use reqwest_throttle::rollout::Enforcement;
use reqwest_throttle::sim::{HeaderStyle, SimulatedApi};
use reqwest_throttle::{Cost, Dimension, Policy, Rate, RequestCost, Throttle};
use tokio::sync::Semaphore;

use redis_server::{store, RedisServer};

const SECRET: &str = "sk-proj-SECRET-0123456789";

/// The exporter every test of this binary records into.
struct Exporter {
    address: SocketAddr,
    handle: PrometheusHandle,
}

/// Installs the exporter once: its HTTP listener runs on a runtime of its own, which outlives
/// each test's.
fn exporter() -> &'static Exporter {
    static EXPORTER: OnceLock<Exporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let address: SocketAddr = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let (recorder, serve) = PrometheusBuilder::new()
                    .with_http_listener(address)
                    .build()
                    .unwrap();
                sender.send(recorder).unwrap();
                let _ = serve.await;
            });
        });
        let recorder = receiver.recv().unwrap();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).unwrap();
        Exporter { address, handle }
    })
}

/// A scrape through the exporter's HTTP endpoint.
async fn scrape_http() -> String {
    let address = exporter().address;
    reqwest::get(format!("http://{address}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A scrape of the same exporter without a socket: it cannot let paused time run on while it
/// waits for its answer.
fn scrape() -> String {
    exporter().handle.render()
}

/// Every sample of a scrape (series with its labels, value).
fn samples(scrape: &str) -> BTreeMap<String, f64> {
    scrape
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The value of the sample named exactly `series` (name and labels).
fn sample(scrape: &str, series: &str) -> Option<f64> {
    samples(scrape).get(series).copied()
}

/// The sum of the samples of the metric `name` whose labels contain `label`.
fn sum(scrape: &str, name: &str, label: &str) -> f64 {
    samples(scrape)
        .into_iter()
        .filter(|(series, _)| series.starts_with(&format!("{name}{{")) && series.contains(label))
        .map(|(_, value)| value)
        .sum()
}

/// The samples that may only grow: counters, and the counts and sums of histograms (exported
/// as summaries).
fn monotonic(scrape: &str) -> BTreeMap<String, f64> {
    let mut kinds = BTreeMap::new();
    for line in scrape.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, kind)) = rest.split_once(' ') {
                kinds.insert(name.to_owned(), kind.to_owned());
            }
        }
    }
    samples(scrape)
        .into_iter()
        .filter(|(series, _)| {
            let name = series.split('{').next().unwrap_or(series);
            let base = name
                .strip_suffix("_count")
                .or_else(|| name.strip_suffix("_sum"))
                .unwrap_or(name);
            match kinds
                .get(name)
                .or_else(|| kinds.get(base))
                .map(String::as_str)
            {
                Some("counter") => true,
                Some("summary" | "histogram") => name != base,
                _ => false,
            }
        })
        .collect()
}

fn client(throttle: &Throttle, terminal: impl Middleware) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(throttle.clone())
        .with(terminal)
        .build()
}

#[tokio::test(start_paused = true)]
async fn a_prometheus_scrape_finds_the_throttles_figures() {
    exporter();
    // 3 requests a minute; beyond, 429 with Retry-After. No retries and no waiting, so the
    // fourth request is refused by the server and the six after it by the throttle (the lane
    // cools down for the rest of the minute).
    let api = SimulatedApi::builder()
        .limit(3, Duration::from_secs(60))
        .build();
    let throttle = Throttle::builder()
        .default_policy(
            Policy::new()
                .retry(RetryPolicy::disabled())
                .max_wait(Duration::ZERO),
        )
        .build()
        .unwrap();
    let client = client(&throttle, api.clone());
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let outcome = client
            .get("http://api.test/v1/items")
            .bearer_auth(SECRET)
            .send()
            .await;
        statuses.push(outcome.map(|response| response.status().as_u16()).ok());
    }
    assert_eq!(
        statuses,
        [
            Some(200),
            Some(200),
            Some(200),
            Some(429),
            None,
            None,
            None,
            None,
            None,
            None
        ]
    );
    // Two requests to another host in shadow mode: sent at once, both refused by the server
    // (its limit is spent), and neither pauses the lane (a shadowed refusal sets no cooldown).
    for _ in 0..2 {
        let response = client
            .get("http://shadow.test/v1/items")
            .with_extension(Enforcement::Shadow)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 429);
    }

    // Nothing is called before the scrape: every figure was recorded as it changed.
    let scrape = scrape_http().await;
    let figure = |series: &str| {
        sample(&scrape, series).unwrap_or_else(|| panic!("{series} missing:\n{scrape}"))
    };
    assert_eq!(
        figure(r#"reqwest_throttle_attempts_total{host="api.test"}"#),
        4.0
    );
    assert_eq!(
        figure(r#"reqwest_throttle_rate_limited_total{host="api.test"}"#),
        1.0
    );
    assert_eq!(
        figure(r#"reqwest_throttle_wait_seconds_count{host="api.test"}"#),
        4.0
    );
    assert_eq!(
        figure(r#"reqwest_throttle_attempt_seconds_count{host="api.test"}"#),
        4.0
    );
    assert_eq!(
        figure(r#"reqwest_throttle_in_flight{host="api.test"}"#),
        0.0
    );
    assert_eq!(
        figure(r#"reqwest_throttle_cooldowns_total{host="api.test"}"#),
        1.0
    );
    // Four attempts left, each booked one request; nothing settled them, so their booking is
    // what was charged.
    assert_eq!(
        figure(r#"reqwest_throttle_booked_total{host="api.test",dimension="requests"}"#),
        4.0
    );
    assert_eq!(
        figure(r#"reqwest_throttle_charged_total{host="api.test",dimension="requests"}"#),
        4.0
    );
    assert_eq!(
        figure(r#"reqwest_throttle_shadowed_total{host="shadow.test"}"#),
        2.0
    );
    assert_eq!(
        figure(r#"reqwest_throttle_shadow_would_wait_seconds_count{host="shadow.test"}"#),
        2.0
    );
    assert_eq!(
        figure(r#"reqwest_throttle_rate_limited_total{host="shadow.test"}"#),
        2.0
    );
    assert_eq!(
        sample(
            &scrape,
            r#"reqwest_throttle_cooldowns_total{host="shadow.test"}"#
        ),
        None,
        "a shadowed refusal pauses nothing"
    );
    assert_eq!(
        sum(
            &scrape,
            "reqwest_throttle_refused_total",
            r#"host="api.test""#
        ),
        6.0,
        "{scrape}"
    );
    // Every series of the throttle is described, with its kind.
    let names: Vec<&str> = scrape
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE reqwest_throttle_"))
        .filter_map(|rest| rest.split(' ').next())
        .collect();
    assert!(names.len() >= 12, "{scrape}");
    for name in names {
        assert!(
            scrape.contains(&format!("# HELP reqwest_throttle_{name} ")),
            "reqwest_throttle_{name} has no HELP line:\n{scrape}"
        );
    }
    assert!(
        !scrape.contains("SECRET") && !scrape.contains("key:"),
        "{scrape}"
    );
}

/// Many hosts through a registry of two lanes: every lane is evicted soon after its first
/// requests, taking its own counters with it. What Prometheus scrapes never falls.
#[tokio::test(start_paused = true)]
async fn counters_never_fall_across_lane_eviction() {
    const HOSTS: usize = 30;
    exporter();
    // One request a minute over all hosts: every host's lane meets a 429 with Retry-After,
    // and cools down.
    let api = SimulatedApi::builder()
        .limit(1, Duration::from_secs(60))
        .build();
    let throttle = Throttle::builder()
        .max_lanes(2)
        .default_policy(
            Policy::new()
                .retry(RetryPolicy::disabled())
                .max_wait(Duration::ZERO),
        )
        .build()
        .unwrap();
    let client = client(&throttle, api);
    let mut before = monotonic(&scrape());
    for host in 0..HOSTS {
        for _ in 0..2 {
            let _ = client
                .get(format!("http://evict-{host}.test/v1/items"))
                .send()
                .await;
        }
        let after = monotonic(&scrape());
        for (series, earlier) in &before {
            let now = after.get(series).copied();
            assert!(
                now.is_some_and(|now| now >= *earlier),
                "{series} fell from {earlier} to {now:?} after host {host}"
            );
        }
        before = after;
    }
    assert!(throttle.stats().lanes.len() <= 2);
    assert!(throttle.evicted_lanes() >= (HOSTS - 2) as u64);
    let scrape = scrape();
    // Each host's lane cooled down once, though only two lanes are left to say so.
    let cooldowns = sum(&scrape, "reqwest_throttle_cooldowns_total", "evict-");
    assert_eq!(cooldowns, HOSTS as f64, "{scrape}");
    let kept: u64 = throttle
        .stats()
        .lanes
        .iter()
        .map(|lane| lane.cooldowns)
        .sum();
    assert!(kept < HOSTS as u64, "the lanes kept count only {kept}");
    assert_eq!(
        sum(&scrape, "reqwest_throttle_attempts_total", "evict-"),
        HOSTS as f64 + 1.0,
        "every host's first request, and the second of the first host"
    );
}

/// A terminal middleware that answers 200 only when the test lets it: a request stays in
/// flight (with no timer running) until then.
struct Gate(Arc<Semaphore>);

#[async_trait::async_trait]
impl Middleware for Gate {
    async fn handle(
        &self,
        _: Request,
        _: &mut Extensions,
        _: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        self.0.acquire().await.unwrap().forget();
        Ok(Response::from(http::Response::new("")))
    }
}

/// Yields until `done` holds (bounded): the spawned requests reach where they wait.
async fn yield_until(done: impl Fn() -> bool) {
    for _ in 0..10_000 {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the requests never got where the test waits for them");
}

#[tokio::test(start_paused = true)]
async fn gauges_move_as_requests_queue_and_fly_without_record_metrics() {
    exporter();
    let gate = Arc::new(Semaphore::new(0));
    let throttle = Throttle::builder()
        .host("gauges.test", Policy::new().concurrency(1))
        .build()
        .unwrap();
    let client = client(&throttle, Gate(Arc::clone(&gate)));
    let send = || {
        let client = client.clone();
        tokio::spawn(async move { client.get("http://gauges.test/items").send().await })
    };
    let gauge = |name: &str| {
        sample(
            &scrape(),
            &format!(r#"reqwest_throttle_{name}{{host="gauges.test"}}"#),
        )
    };
    let lane = |throttle: &Throttle| {
        let stats = throttle.stats();
        let lane = stats.lanes_for_host("gauges.test").next();
        lane.map(|lane| (lane.in_flight, lane.queued))
    };
    let requests: Vec<_> = (0..3).map(|_| send()).collect();
    yield_until(|| lane(&throttle) == Some((1, 2))).await;
    assert_eq!(gauge("in_flight"), Some(1.0));
    assert_eq!(gauge("queued"), Some(2.0));

    // A queued request whose caller gives up leaves the queue, and the gauge with it.
    let given_up = send();
    yield_until(|| lane(&throttle) == Some((1, 3))).await;
    assert_eq!(gauge("queued"), Some(3.0));
    given_up.abort();
    assert!(given_up.await.unwrap_err().is_cancelled());
    assert_eq!(gauge("queued"), Some(2.0));

    // Answered one by one: each leaves flight and the next leaves the queue.
    gate.add_permits(1);
    yield_until(|| lane(&throttle) == Some((1, 1))).await;
    assert_eq!(gauge("in_flight"), Some(1.0));
    assert_eq!(gauge("queued"), Some(1.0));
    gate.add_permits(2);
    for request in requests {
        assert_eq!(request.await.unwrap().unwrap().status(), 200);
    }
    assert_eq!(gauge("in_flight"), Some(0.0));
    assert_eq!(gauge("queued"), Some(0.0));
}

/// A cost model that settles each answer with the tokens its `x-used` header reports.
struct ReportedUsage;

#[async_trait::async_trait]
impl CostModel for ReportedUsage {
    fn estimate(&self, _: &Request) -> Cost {
        Cost::requests(1)
    }

    async fn inspect(&self, response: Response, settlement: Settlement) -> (Response, Inspection) {
        let used = response
            .headers()
            .get("x-used")
            .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
        if let Some(used) = used {
            settlement.settle(&Cost::requests(1).with(Dimension::Tokens, used));
        }
        (response, Inspection::NOTHING)
    }
}

/// Answers 200 with the request's `x-used` header copied back.
struct Echo;

#[async_trait::async_trait]
impl Middleware for Echo {
    async fn handle(
        &self,
        request: Request,
        _: &mut Extensions,
        _: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let mut response = http::Response::builder();
        if let Some(used) = request.headers().get("x-used") {
            response = response.header("x-used", used);
        }
        Ok(Response::from(response.body("").unwrap()))
    }
}

#[tokio::test(start_paused = true)]
async fn units_booked_and_charged_are_counted_per_dimension() {
    exporter();
    let throttle = Throttle::builder()
        .host(
            "usage.test",
            Policy::new()
                .tokens(Rate::per_minute(10_000))
                .cost_model(ReportedUsage),
        )
        .build()
        .unwrap();
    let client = client(&throttle, Echo);
    // Booked at 100 tokens each; the server reports 150, 150, then garbage.
    for used in ["150", "150", "18446744073709551615"] {
        let response = client
            .get("http://usage.test/v1/chat")
            .header("x-used", used)
            .with_extension(RequestCost(Cost::requests(1).with(Dimension::Tokens, 100)))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let scrape = scrape();
    let figure = |name: &str, dimension: &str| {
        let series =
            format!(r#"reqwest_throttle_{name}{{host="usage.test",dimension="{dimension}"}}"#);
        sample(&scrape, &series).unwrap_or_else(|| panic!("{series} missing:\n{scrape}"))
    };
    assert_eq!(figure("booked_total", "requests"), 3.0);
    assert_eq!(figure("booked_total", "tokens"), 300.0);
    assert_eq!(figure("charged_total", "requests"), 3.0);
    // The garbage is charged as the budget charged it: one burst (a minute's 10 000).
    assert_eq!(figure("charged_total", "tokens"), 150.0 + 150.0 + 10_000.0);
    assert_eq!(
        sample(
            &scrape,
            r#"reqwest_throttle_clamped_reports_total{host="usage.test"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test(start_paused = true)]
async fn a_limit_learned_from_headers_is_a_gauge_per_dimension() {
    exporter();
    let api = SimulatedApi::builder()
        .limit(120, Duration::from_secs(60))
        .headers(HeaderStyle::OpenAi)
        .build();
    let throttle = Throttle::builder().build().unwrap();
    let client = client(&throttle, api);
    for _ in 0..5 {
        let response = client
            .get("http://learn.test/v1/items")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let scrape = scrape();
    let learned = sample(
        &scrape,
        r#"reqwest_throttle_learned_limit{host="learn.test",dimension="requests"}"#,
    )
    .unwrap_or_else(|| panic!("no learned limit:\n{scrape}"));
    // What the lane paces at now, learned from the headers (not configured: there was none).
    let stats = throttle.stats();
    let rate = stats
        .lanes_for_host("learn.test")
        .find_map(|lane| lane.rate)
        .expect("the lane learned a rate");
    assert!(learned.is_finite() && learned > 0.0, "{learned}");
    assert!((learned - rate).abs() < 1e-9 * rate, "{learned} vs {rate}");
}

/// The shared store's round trips, failures and fallbacks, against a real `redis-server`
/// started by the test (real time: the store's timeouts run against a real socket).
#[tokio::test]
async fn store_round_trips_and_fallbacks_are_counted() {
    exporter();
    let Some(server) = RedisServer::start() else {
        return;
    };
    let throttle = Throttle::builder()
        .host("store.test", Policy::new().rate(Rate::per_second(1_000)))
        .store(store(&server, "metrics").timeout(Duration::from_millis(200)))
        .build()
        .unwrap();
    let api = SimulatedApi::builder()
        .limit(1_000, Duration::from_secs(1))
        .build();
    let client = client(&throttle, api);
    for _ in 0..3 {
        client.get("http://store.test/items").send().await.unwrap();
    }
    let up = scrape();
    let round_trips = sample(&up, "reqwest_throttle_store_round_trips_total").unwrap_or(0.0);
    assert!(round_trips >= 3.0, "{up}");
    assert!(sample(&up, "reqwest_throttle_store_round_trip_seconds_count").unwrap_or(0.0) >= 3.0);
    assert_eq!(sample(&up, "reqwest_throttle_store_up"), Some(1.0));

    server.kill();
    for _ in 0..3 {
        client.get("http://store.test/items").send().await.unwrap();
    }
    let down = scrape();
    assert!(sample(&down, "reqwest_throttle_store_failures_total").unwrap_or(0.0) >= 1.0);
    assert!(sample(&down, "reqwest_throttle_store_fallbacks_total").unwrap_or(0.0) >= 1.0);
    assert_eq!(sample(&down, "reqwest_throttle_store_up"), Some(0.0));
    assert_eq!(
        throttle.stats().store.map(|store| store.fallbacks),
        sample(&down, "reqwest_throttle_store_fallbacks_total").map(|f| f as u64)
    );
}
