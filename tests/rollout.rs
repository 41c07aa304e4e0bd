//! Shadow mode and gradual enforcement (issue 13), through the public API against the
//! simulated API, in virtual time.
//!
//! The simulated API limits by its own token bucket; the throttle's policy is written
//! independently of it (a GCRA rate), as a user would write it from the API's documentation.

use std::error::Error as StdError;
use std::time::Duration;

use http::StatusCode;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use reqwest_throttle::rollout::{Enforcement, RolloutKey, RolloutStats, WouldRefuse};
use reqwest_throttle::sim::{Outage, Outcome, SimulatedApi};
use reqwest_throttle::{LaneKey, MaxWait, Policy, Rate, Throttle};
use tokio::time::Instant;

type TestResult = Result<(), Box<dyn StdError>>;

const HOST: &str = "api.test";
const URL: &str = "http://api.test/v1/things";
const LANE: &str = "http://api.test:80";

/// The workload of the shadow tests: `REQUESTS` requests arriving every `GAP` (20 per second,
/// twice what the server allows), each sent as soon as it arrives (open loop).
const REQUESTS: u32 = 200;
const GAP: Duration = Duration::from_millis(50);

/// A server that admits 10 requests at once and one more every 100 ms, answering in 20 ms.
fn limited_api() -> SimulatedApi {
    SimulatedApi::builder()
        .token_bucket(10.0, 10)
        .latency(Duration::from_millis(20))
        .build()
}

/// The policy a user would write for that server (10 per second, a burst of 10), with no
/// breaker so that the comparison is about pacing alone.
fn paced() -> Policy {
    Policy::new()
        .rate(Rate::per_second(10))
        .unlimited_concurrency()
        .no_breaker()
}

fn client(api: &SimulatedApi, throttle: Option<&Throttle>) -> ClientWithMiddleware {
    let builder = ClientBuilder::new(reqwest::Client::new());
    let builder = match throttle {
        Some(throttle) => builder.with(throttle.clone()),
        None => builder,
    };
    builder.with(api.clone()).build()
}

/// Sends the workload and returns what the server saw: (arrival after the start, outcome).
async fn run_workload(
    api: &SimulatedApi,
    client: &ClientWithMiddleware,
) -> Vec<(Duration, Outcome)> {
    let start = Instant::now();
    let tasks: Vec<_> = (0..REQUESTS)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(start + GAP * n).await;
                client.get(URL).send().await.map(|r| r.status())
            })
        })
        .collect();
    for task in tasks {
        // Every request gets an answer: shadowed ones are never refused by the throttle.
        task.await.expect("task").expect("answer");
    }
    api.requests()
        .iter()
        .map(|request| (request.at.saturating_duration_since(start), request.outcome))
        .collect()
}

fn rollout(throttle: &Throttle) -> RolloutStats {
    throttle
        .stats()
        .lane(LANE)
        .and_then(|lane| lane.rollout)
        .expect("the lane takes part in a rollout")
}

#[tokio::test(start_paused = true)]
async fn shadow_mode_sends_as_the_bare_client_and_predicts_the_enforced_waits() -> TestResult {
    // 1. The bare client.
    let bare_api = limited_api();
    let bare = run_workload(&bare_api, &client(&bare_api, None)).await;
    assert_eq!(bare.len(), REQUESTS as usize);
    let bare_limited = bare_api.stats().limited;
    assert!(
        bare_limited > 50,
        "the workload must exceed the limit: {bare_limited} 429s"
    );

    // 2. The same workload through the throttle in shadow mode.
    let shadow_api = limited_api();
    let shadow_throttle = Throttle::builder().host(HOST, paced().shadow()).build()?;
    let shadowed = run_workload(&shadow_api, &client(&shadow_api, Some(&shadow_throttle))).await;
    // Every request left exactly when the bare client's did, and met the same answer.
    assert_eq!(shadowed, bare);
    assert_eq!(shadow_api.stats().limited, bare_limited);
    let shadow = rollout(&shadow_throttle);
    assert_eq!(shadow.shadowed.requests, u64::from(REQUESTS));
    assert_eq!(shadow.shadowed.attempts, u64::from(REQUESTS));
    assert_eq!(shadow.shadowed.rate_limited, bare_limited);
    assert_eq!(shadow.enforced.requests, 0);
    let lane = shadow_throttle.stats().lane(LANE).cloned().expect("lane");
    assert_eq!(lane.retries, 0);
    assert_eq!(lane.waited_total, Duration::ZERO);
    // The 429s it would have retried, recorded and not made.
    assert_eq!(shadow.would_have.retried, bare_limited);
    let predicted = shadow.would_have.waited_total;

    // 3. The same workload, enforced.
    let enforced_api = limited_api();
    let enforced_throttle = Throttle::builder().host(HOST, paced()).build()?;
    run_workload(
        &enforced_api,
        &client(&enforced_api, Some(&enforced_throttle)),
    )
    .await;
    let enforced = enforced_throttle.stats().lane(LANE).cloned().expect("lane");
    assert_eq!(
        enforced.rate_limited, 0,
        "enforced, the server never refuses"
    );
    let real = enforced.waited_total;
    let error = (predicted.as_secs_f64() - real.as_secs_f64()).abs() / real.as_secs_f64();
    println!("shadow predicted {predicted:?} of waiting, enforced waited {real:?}; server: 429s bare {bare_limited}, shadow {}, enforced {}", shadow_api.stats().limited, enforced_api.stats().limited);
    assert!(
        error <= 0.05,
        "predicted {predicted:?} of waiting in shadow mode, {real:?} enforced ({:.2} %)",
        error * 100.0
    );
    // Enforcing costs no goodput: every request succeeded, where the bare client lost the 429s.
    assert_eq!(enforced_api.stats().ok, u64::from(REQUESTS));
    Ok(())
}

/// Sends `requests` requests, request `n` keyed `key(n)`, to a throttle enforcing `percent`;
/// returns the rollout stats.
async fn share_of(percent: f64, requests: u32, key: impl Fn(u32) -> String) -> RolloutStats {
    let api = SimulatedApi::builder().build();
    let throttle = Throttle::builder()
        .host(
            HOST,
            Policy::new()
                .unlimited_concurrency()
                .enforce_percent(percent),
        )
        .build()
        .expect("valid policy");
    let client = client(&api, Some(&throttle));
    for n in 0..requests {
        let response = client
            .get(URL)
            .with_extension(RolloutKey::new(key(n)))
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status(), StatusCode::OK);
    }
    rollout(&throttle)
}

#[tokio::test(start_paused = true)]
async fn the_enforced_share_matches_over_ten_thousand_requests() {
    for percent in [0.0, 30.0, 100.0] {
        let stats = share_of(percent, 10_000, |n| format!("request-{n}")).await;
        let total = stats.enforced.requests + stats.shadowed.requests;
        assert_eq!(total, 10_000);
        let share = stats.enforced.requests as f64 / total as f64 * 100.0;
        println!("{percent} % asked: {share:.2} % of 10 000 keyed requests enforced");
        assert!(
            (share - percent).abs() <= 2.0,
            "{percent} % asked, {share:.2} % enforced"
        );
        assert_eq!(stats.enforced_percent, percent);
    }
}

#[tokio::test(start_paused = true)]
async fn a_tenant_is_always_on_the_same_side() -> TestResult {
    // One lane per tenant, so that each tenant's side can be read from the stats; the rollout
    // key is the lane's own (no extension).
    let api = SimulatedApi::builder().build();
    let throttle = Throttle::builder()
        .host(
            HOST,
            Policy::new().unlimited_concurrency().enforce_percent(30.0),
        )
        .lane_key(|request| {
            let tenant = request.headers().get("x-tenant")?.to_str().ok()?;
            Some(LaneKey::new(format!("tenant:{tenant}")))
        })
        .build()?;
    let client = client(&api, Some(&throttle));
    for round in 0..20 {
        for tenant in 0..50 {
            let response = client
                .get(URL)
                .header("x-tenant", format!("t{tenant}"))
                .send()
                .await?;
            assert_eq!(response.status(), StatusCode::OK, "round {round}");
        }
    }
    let stats = throttle.stats();
    let mut enforced_tenants = 0;
    for lane in &stats.lanes {
        let rollout = lane.rollout.expect("rollout stats");
        let sides = (rollout.enforced.requests, rollout.shadowed.requests);
        assert!(
            sides == (20, 0) || sides == (0, 20),
            "{}: {sides:?}",
            lane.key
        );
        enforced_tenants += usize::from(sides == (20, 0));
    }
    assert_eq!(stats.lanes.len(), 50);
    // The split is by the published hash: the same tenants in every process.
    let expected = (0..50)
        .filter(|tenant| reqwest_throttle::rollout::bucket(&format!("tenant:t{tenant}")) < 3_000)
        .count();
    assert_eq!(enforced_tenants, expected);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn raising_the_share_takes_effect_on_the_next_request() -> TestResult {
    let api = SimulatedApi::builder().build();
    let throttle = Throttle::builder()
        .host(HOST, Policy::new().shadow())
        .build()?;
    let client = client(&api, Some(&throttle));
    let send = |key: &'static str| client.get(URL).with_extension(RolloutKey::new(key)).send();
    send("tenant-a").await?;
    assert_eq!(rollout(&throttle).shadowed.requests, 1);
    let control = throttle.rollout(HOST);
    control.set_enforced_percent(100.0)?;
    send("tenant-a").await?;
    let stats = rollout(&throttle);
    assert_eq!((stats.enforced.requests, stats.shadowed.requests), (1, 1));
    assert_eq!(stats.enforced_percent, 100.0);
    // Raising a share only moves keys from shadowed to enforced.
    let keys: Vec<String> = (0..1_000).map(|n| format!("tenant-{n}")).collect();
    let enforced_at = |basis_points: u16| {
        keys.iter()
            .filter(|key| reqwest_throttle::rollout::bucket(key) < basis_points)
            .cloned()
            .collect::<Vec<_>>()
    };
    let (at_30, at_50) = (enforced_at(3_000), enforced_at(5_000));
    assert!(at_30.iter().all(|key| at_50.contains(key)));
    assert!(control.set_enforced_percent(-1.0).is_err());
    assert_eq!(control.enforced_percent(), 100.0);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_shadowed_request_is_sent_where_enforcing_would_refuse_or_retry() -> TestResult {
    let api = SimulatedApi::builder().build();
    let throttle = Throttle::builder()
        .host(
            HOST,
            Policy::new()
                .rate(Rate::per_second(1).burst(1))
                .max_wait(Duration::from_millis(100)),
        )
        .build()?;
    let client = client(&api, Some(&throttle));
    // The one request the second allows, enforced (by its own extension: every request of
    // this test is in the rollout, so that the comparison counts from the first).
    let enforce =
        |request: reqwest_middleware::RequestBuilder| request.with_extension(Enforcement::Enforce);
    enforce(client.get(URL)).send().await?;
    // Enforced, the next one would wait a second: refused at once.
    let refused = enforce(client.get(URL)).send().await;
    assert!(refused.is_err());
    // Shadowed by its own extension, it is sent, and the refusal is recorded instead.
    let shadowed = client
        .get(URL)
        .with_extension(Enforcement::Shadow)
        .send()
        .await?;
    assert_eq!(shadowed.status(), StatusCode::OK);
    let stats = rollout(&throttle);
    assert_eq!(stats.would_have.refused(WouldRefuse::WouldWait), 1);
    assert_eq!((stats.enforced.requests, stats.enforced.failed), (2, 1));
    assert_eq!(api.stats().received, 2);

    // A 503 is sent once, not retried; the retry enforcing would have made is recorded (with
    // time enough for any backoff: the policy's 100 ms would leave none).
    api.set_outage(Some(Outage::Status(StatusCode::SERVICE_UNAVAILABLE)));
    tokio::time::advance(Duration::from_secs(2)).await;
    let failed = client
        .get(URL)
        .with_extension(Enforcement::Shadow)
        .with_extension(MaxWait(Duration::from_secs(60)))
        .send()
        .await?;
    assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(api.stats().received, 3);
    let stats = rollout(&throttle);
    assert_eq!(stats.would_have.retried, 1);
    assert_eq!(stats.shadowed.requests, 2);
    assert_eq!(stats.shadowed.succeeded, 1);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_is_recorded_not_obeyed_in_shadow_mode() -> TestResult {
    let api = SimulatedApi::builder().build();
    let throttle = Throttle::builder()
        .host(HOST, Policy::new().shadow())
        .build()?;
    let client = client(&api, Some(&throttle));
    client.get(URL).send().await?;
    let breaker = throttle
        .breaker(LANE)
        .expect("the default policy has a breaker");
    breaker.force_open();
    let response = client.get(URL).send().await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(api.stats().received, 2);
    let stats = rollout(&throttle);
    assert_eq!(stats.would_have.refused(WouldRefuse::CircuitOpen), 1);
    assert_eq!(stats.would_have.refused_total(), 1);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_shadowed_request_dropped_in_flight_gives_back_its_slot() -> TestResult {
    let api = SimulatedApi::builder()
        .latency(Duration::from_secs(1))
        .build();
    let throttle = Throttle::builder()
        .host(HOST, Policy::new().concurrency(1).shadow())
        .build()?;
    let client = client(&api, Some(&throttle));
    // Given up halfway through the server's answer.
    let abandoned = tokio::time::timeout(Duration::from_millis(500), client.get(URL).send()).await;
    assert!(abandoned.is_err());
    let lane = throttle.stats().lane(LANE).cloned().expect("lane");
    assert_eq!((lane.sent, lane.in_flight), (1, 0));
    // The slot came back: the next request finds it free (no would-have queueing).
    client.get(URL).send().await?;
    assert_eq!(rollout(&throttle).would_have.queued_for_slot, 0);
    // Two at once with one slot: the second is sent too, and would have queued.
    let (first, second) = tokio::join!(client.get(URL).send(), client.get(URL).send());
    assert_eq!(
        (first?.status(), second?.status()),
        (StatusCode::OK, StatusCode::OK)
    );
    assert_eq!(rollout(&throttle).would_have.queued_for_slot, 1);
    Ok(())
}

/// Budgets stay truthful: a shadow phase at twice the server's limit leaves no backlog behind,
/// though the queue the throttle would have kept is seconds deep.
#[tokio::test(start_paused = true)]
async fn enforcing_after_a_shadow_phase_starts_from_what_the_server_counted() -> TestResult {
    let api = limited_api();
    let throttle = Throttle::builder().host(HOST, paced().shadow()).build()?;
    let client = client(&api, Some(&throttle));
    run_workload(&api, &client).await;
    let shadow = rollout(&throttle);
    assert!(
        shadow.would_have.waited_max > Duration::from_secs(5),
        "{shadow:?}"
    );
    throttle.rollout(HOST).set_enforced_percent(100.0)?;
    let asked = Instant::now();
    let response = client.get(URL).send().await?;
    assert_eq!(response.status(), StatusCode::OK);
    // At most one interval of the policy's rate, plus the server's 20 ms.
    assert!(
        asked.elapsed() <= Duration::from_millis(120),
        "{:?}",
        asked.elapsed()
    );
    Ok(())
}
