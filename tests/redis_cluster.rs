//! The shared budget (feature `cluster`) on a real Redis Cluster of 3 primaries and 3 replicas
//! that each test starts on free loopback ports (`redis-server --cluster-enabled yes`, joined by
//! `redis-cli --cluster create`), killed when the test ends.
//!
//! The cluster's clock and its failure detection are real time, so these tests run in real
//! time: they assert counts and outcomes, and their only waits are bounds that turn a hang into
//! a failure (a request: 5 s; a failover: 20 s, with `cluster-node-timeout` at 1 s). Under
//! `CI=true` a missing `redis-server` or `redis-cli` fails them; elsewhere they print why and
//! skip.

use std::time::{Duration, Instant};

use reqwest_middleware::ClientBuilder;
use reqwest_throttle::retry::RetryPolicy;
use reqwest_throttle::sim::SimulatedApi;
use reqwest_throttle::store::RedisStore;
use reqwest_throttle::{Policy, Rate, Throttle};

mod redis_server;
use redis_server::RedisCluster;

mod store_clients;
use store_clients::{client, send, send_all, NO_HANG};

/// The real limiters (nginx) and the measured run, for the strict fleet; not all of it is used
/// here.
#[allow(dead_code)]
mod real;
mod strict_fleet;
use strict_fleet::{assert_within, Strict, Targets, CONFIGURED, NOTHING};

/// The Redis key of the lane `URL` goes in, under `prefix`.
fn lane_key(prefix: &str) -> String {
    format!("{{{prefix}:http://api.test:80}}")
}

/// A store on `cluster`, with a timeout of a second: connecting to every node of a cluster
/// takes this unoptimised test build, on a busy machine, longer than the default 100 ms.
fn cluster_store(cluster: &RedisCluster, prefix: &str) -> RedisStore {
    RedisStore::cluster(cluster.urls())
        .expect("valid node URLs")
        .prefix(prefix)
        .timeout(Duration::from_secs(1))
}

/// How many bookings the lane at `key` counts (its requests cell's booking number) on the
/// node on `port`.
fn bookings_on(cluster: &RedisCluster, port: u16, key: &str) -> u64 {
    redis::cmd("HGET")
        .arg(key)
        .arg("s0")
        .query::<Option<u64>>(&mut cluster.connection(port))
        .expect("the node serves the lane's slot")
        .unwrap_or(0)
}

fn slot_of(cluster: &RedisCluster, port: u16, key: &str) -> u16 {
    redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query(&mut cluster.connection(port))
        .expect("CLUSTER KEYSLOT answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_throttles_share_one_budget_through_a_cluster() {
    let Some(cluster) = RedisCluster::start(3, 1) else {
        return;
    };
    // The server allows 40/s with a burst of 10; each throttle is told the same 40/s, burst 4
    // (six units below the server's: this test is about the cluster, not about how exactly
    // the workers' timers fire on a busy machine).
    let rate = Rate::per_second(40).burst(4);
    let server = || SimulatedApi::builder().token_bucket(40.0, 10).build();
    let api = server();
    let (first, one) = client(rate, Some(cluster_store(&cluster, "pair")), &api);
    let (second, two) = client(rate, Some(cluster_store(&cluster, "pair")), &api);
    let outcomes = send_all(&[&one, &two], 30, NO_HANG).await;
    assert!(outcomes.iter().all(|o| *o == Ok(200)), "{outcomes:?}");
    let stats = api.stats();
    assert_eq!((stats.received, stats.limited), (60, 0), "{stats:?}");
    for throttle in [&first, &second] {
        let store = throttle.stats().store.expect("store stats");
        assert!(store.up && store.round_trips >= 30, "{store:?}");
        assert_eq!(store.fallbacks, 0, "{store:?}");
    }
    // Booked on the primary of the lane's slot: 60 bookings in one schedule.
    let key = lane_key("pair");
    let primary = cluster.primary_of(&key).expect("a primary serves the lane");
    assert_eq!(bookings_on(&cluster, primary, &key), 60);

    // Two budgets of their own (the same rate, in memory) send twice too much: refused.
    let alone = server();
    let own = |api: &SimulatedApi| {
        let throttle = Throttle::builder()
            .default_policy(Policy::new().rate(rate).retry(RetryPolicy::disabled()))
            .build()
            .expect("a valid throttle");
        ClientBuilder::new(reqwest::Client::new())
            .with(throttle)
            .with(api.clone())
            .build()
    };
    let outcomes = send_all(&[&own(&alone), &own(&alone)], 30, NO_HANG).await;
    assert!(outcomes.contains(&Ok(429)), "{outcomes:?}");

    // A fleet-wide cap keeps its leases in a second key of the lane, in the same slot.
    let leases = format!("{key}:leases");
    assert_eq!(
        slot_of(&cluster, primary, &leases),
        slot_of(&cluster, primary, &key)
    );
    let slow = SimulatedApi::builder()
        .latency(Duration::from_millis(100))
        .build();
    let capped = || cluster_store(&cluster, "capped").concurrency(1);
    let (_, one) = client(Rate::per_second(100), Some(capped()), &slow);
    let (_, two) = client(Rate::per_second(100), Some(capped()), &slow);
    assert_eq!(send_all(&[&one, &two], 3, NO_HANG).await, vec![Ok(200); 6]);
    assert_eq!(slow.stats().max_in_flight, 1, "{:?}", slow.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookings_continue_after_a_primary_fails_over() {
    let Some(mut cluster) = RedisCluster::start(3, 1) else {
        return;
    };
    let api = SimulatedApi::builder().build();
    let store = cluster_store(&cluster, "failover").expected_workers(2);
    let (throttle, client) = client(Rate::per_second(50), Some(store), &api);
    assert_eq!(send_all(&[&client], 5, NO_HANG).await, vec![Ok(200); 5]);
    let key = lane_key("failover");
    let failed = cluster.primary_of(&key).expect("a primary serves the lane");
    let before = bookings_on(&cluster, failed, &key);
    assert_eq!(before, 5);

    cluster.kill(failed);
    let killed_at = Instant::now();
    // Requests keep going (the fallback, at half the rate, while no primary serves the slot)
    // and none hangs, until a promoted replica serves the slot and books them again.
    let deadline = killed_at + Duration::from_secs(30);
    let (promoted, sent) = loop {
        assert_eq!(send(&client, NO_HANG).await, Ok(200));
        let stats = throttle.stats().store.expect("store stats");
        let promoted = cluster
            .primary_of(&key)
            .filter(|primary| *primary != failed);
        let booked = promoted.map(|primary| bookings_on(&cluster, primary, &key));
        if let (Some(primary), Some(booked)) = (promoted, booked) {
            if stats.up && booked > before {
                break (primary, stats);
            }
        }
        assert!(
            Instant::now() < deadline,
            "bookings never reached a promoted replica (promoted: {promoted:?}, its bookings: \
             {booked:?}, before: {before}): {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "failover: the lane booked in Redis again {:?} after its primary was killed",
        killed_at.elapsed()
    );
    assert!(sent.failures >= 1, "the store never noticed: {sent:?}");
    assert!(sent.fallbacks >= 1, "{sent:?}");

    // From now on every booking is in the shared budget, on the promoted replica.
    let booked = bookings_on(&cluster, promoted, &key);
    assert_eq!(send_all(&[&client], 10, NO_HANG).await, vec![Ok(200); 10]);
    let after = throttle.stats().store.expect("store stats");
    assert_eq!(after.fallbacks, sent.fallbacks, "{after:?}");
    assert_eq!(bookings_on(&cluster, promoted, &key), booked + 10);
}

/// Four workers through a cluster against a strict server (see `strict_fleet`), the measured
/// run of `redis_store.rs` on one server; the store's timeout is the default (100 ms), as a
/// release build's.
async fn strict_fleet_through_a_cluster(strict: Strict, configured: bool, targets: Targets) {
    let Some(cluster) = RedisCluster::start(3, 1) else {
        return;
    };
    let store = || {
        RedisStore::cluster(cluster.urls())
            .expect("valid node URLs")
            .prefix("fleet")
    };
    if let Some(report) = strict_fleet::run(strict, configured, store).await {
        assert_within(&report, targets);
    }
}

#[ignore = "a measurement in real time against a strict server: run alone on a quiet machine, `cargo test --release --all-features --test redis_cluster fleet -- --ignored --test-threads=1`"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_configured_keeps_a_strict_simulated_server_exact_through_a_cluster() {
    strict_fleet_through_a_cluster(Strict::Sim, true, CONFIGURED).await;
}

#[ignore = "a measurement in real time against a strict server: run alone on a quiet machine, `cargo test --release --all-features --test redis_cluster fleet -- --ignored --test-threads=1`"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_configured_keeps_real_nginx_without_burst_exact_through_a_cluster() {
    strict_fleet_through_a_cluster(Strict::Nginx, true, CONFIGURED).await;
}

#[ignore = "a measurement in real time against a strict server: run alone on a quiet machine, `cargo test --release --all-features --test redis_cluster fleet -- --ignored --test-threads=1`"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_told_nothing_learns_a_strict_simulated_server_through_a_cluster() {
    strict_fleet_through_a_cluster(Strict::Sim, false, NOTHING).await;
}

#[ignore = "a measurement in real time against a strict server: run alone on a quiet machine, `cargo test --release --all-features --test redis_cluster fleet -- --ignored --test-threads=1`"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_told_nothing_learns_real_nginx_without_burst_through_a_cluster() {
    strict_fleet_through_a_cluster(Strict::Nginx, false, NOTHING).await;
}
