//! The shared budget (feature `redis`) against a real `redis-server` that each test starts on a
//! free port of its own (so it can kill and restart it), killed when the test ends.
//!
//! Redis's clock is real time, so these tests run in real time, with small rates (a second or
//! two each). They assert counts and outcomes, not durations: the only waits are bounds that
//! turn a hang into a failure. Under `CI=true` a missing `redis-server` fails the tests; elsewhere
//! they print why and skip. `RT_REDIS` names the binary if it is not on `PATH`.

use std::time::Duration;

use reqwest_middleware::ClientWithMiddleware;
use reqwest_throttle::limiter::{Gcra, Limit};
use reqwest_throttle::sim::{HeaderStyle, SimulatedApi};
use reqwest_throttle::store::OnStoreDown;
use reqwest_throttle::{Cost, Dimension, Error, Policy, Rate, Throttle};

mod redis_server;
use redis_server::{store, store_of, RedisServer};

mod store_clients;
use store_clients::{client, client_with, send_all, NO_HANG, URL};

/// The real limiters (nginx), the measured run, and its fleet variant; not all of it is used
/// here.
#[allow(dead_code)]
mod real;
mod strict_fleet;
use strict_fleet::{assert_within, Strict, CONFIGURED, NOTHING};

/// The in-memory GCRA, cell by cell, as `Budget` books: every dimension at the slowest one's
/// instant. The script must decide exactly as this does.
struct Reference {
    cells: [Option<Gcra>; 4],
}

impl Reference {
    fn book(
        &mut self,
        cost: &Cost,
        now: u64,
    ) -> (u64, [Option<reqwest_throttle::limiter::Grant>; 4]) {
        let mut at = now;
        for (dimension, units) in cost.iter() {
            if let Some(cell) = &self.cells[dimension as usize] {
                at = at.max(cell.ready_at(units, now));
            }
        }
        let mut grants = [None; 4];
        for (dimension, units) in cost.iter() {
            if let Some(cell) = self.cells[dimension as usize].as_mut() {
                grants[dimension as usize] = Some(cell.reserve_at(units, at, now));
            }
        }
        (at - now, grants)
    }
}

/// The second booking of two at one instant waits one interval of the slower of the caller's
/// limit and the one the fleet learned.
async fn second_wait(
    probe: &reqwest_throttle::store::StoreProbe,
    lane: &str,
    own: Limit,
    at: Duration,
) -> Duration {
    let limits = [Some(own), None, None, None];
    let cost = Cost::requests(1);
    for _ in 0..2 {
        let booked = probe
            .book_at(lane, &cost, &limits, at)
            .await
            .expect("the store answers")
            .expect("nothing is refused without a max wait");
        if !booked.wait.is_zero() {
            return booked.wait;
        }
    }
    Duration::ZERO
}

/// A limit the fleet learned applies to every booking, but a caller whose own limit is slower
/// (it has just slowed down and its decrease is on its way) books at its own: never faster than
/// either.
#[tokio::test]
async fn a_booking_is_never_faster_than_the_callers_own_limit_or_the_fleets() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let probe = store(&server, "slower").__probe();
    probe
        .learn("lane", Limit::new(Duration::from_millis(10), 1), None)
        .await
        .expect("the store answers");
    let slow = Limit::new(Duration::from_millis(100), 1);
    let fast = Limit::new(Duration::from_millis(1), 1);
    let origin = Duration::from_secs(1_000);
    let wait = second_wait(&probe, "lane", slow, origin).await;
    assert!(
        wait.abs_diff(Duration::from_millis(100)) < Duration::from_millis(1),
        "{wait:?}"
    );
    let later = origin + Duration::from_secs(10);
    let wait = second_wait(&probe, "lane", fast, later).await;
    assert!(
        wait.abs_diff(Duration::from_millis(10)) < Duration::from_millis(1),
        "{wait:?}"
    );
}

/// A worker growing on a curve the fleet has since decreased from would set the fleet back to
/// the pace it gave up: its pace is not shared until it has read the decrease.
#[tokio::test]
async fn a_pace_on_a_curve_the_fleet_decreased_from_is_not_shared() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let probe = store(&server, "stale").__probe();
    let own = Limit::new(Duration::from_micros(100), 1);
    // The fleet's first decrease: 10 per second, share 1.
    probe
        .share_decrease("lane", Limit::new(Duration::from_millis(100), 1), None)
        .await
        .expect("the store answers");
    // A worker still on the curve before it (share 0) grows to 100 per second: refused.
    probe
        .learn("lane", Limit::new(Duration::from_millis(10), 1), Some(0))
        .await
        .expect("the store answers");
    let origin = Duration::from_secs(1_000);
    let wait = second_wait(&probe, "lane", own, origin).await;
    assert!(
        wait.abs_diff(Duration::from_millis(100)) < Duration::from_millis(1),
        "{wait:?}"
    );
    // On the fleet's latest curve, its growth is the fleet's.
    probe
        .learn("lane", Limit::new(Duration::from_millis(10), 1), Some(1))
        .await
        .expect("the store answers");
    let later = origin + Duration::from_secs(10);
    let wait = second_wait(&probe, "lane", own, later).await;
    assert!(
        wait.abs_diff(Duration::from_millis(10)) < Duration::from_millis(1),
        "{wait:?}"
    );
}

/// A decrease stretches what the fleet's schedule has booked ahead (every worker moves its
/// waiting grants alike): the next booking goes after the stretched schedule, at the new pace;
/// a faster pace stretches nothing.
#[tokio::test]
async fn a_decrease_stretches_the_schedule_booked_ahead() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let probe = store(&server, "stretch").__probe();
    let fast = Limit::new(Duration::from_millis(10), 1);
    let slow = Limit::new(Duration::from_millis(20), 1);
    probe
        .learn("lane", fast, None)
        .await
        .expect("the store answers");
    let origin = Duration::from_secs(1_000);
    let limits = [Some(fast), None, None, None];
    let book = |at: Duration| {
        let probe = &probe;
        async move {
            probe
                .book_at("lane", &Cost::requests(1), &limits, at)
                .await
                .expect("the store answers")
                .expect("nothing is refused without a max wait")
                .wait
        }
    };
    // Ten requests at 100 per second: booked up to 100 ms past the origin.
    for _ in 0..10 {
        book(origin).await;
    }
    // 10 ms later the fleet halves its pace: past the pivot 20 ms after the decrease (the
    // grants before it keep their instants), the 70 ms booked become 140.
    let decrease = origin + Duration::from_millis(10);
    let (first, stretch) = probe
        .share_decrease("lane", slow, Some(decrease))
        .await
        .expect("the store answers")
        .expect("a decrease from the fleet's pace is shared");
    assert_eq!(stretch, 2.0);
    let wait = book(decrease).await;
    assert!(
        wait.abs_diff(Duration::from_millis(20 + 140)) < Duration::from_micros(10),
        "{wait:?}"
    );
    // Another worker's decrease to a pace above the fleet's (it answered the same congestion
    // from a faster pace) is stale: not shared, the fleet keeps its pace.
    let stale = probe
        .share_decrease("lane", fast, Some(decrease))
        .await
        .expect("the store answers");
    assert_eq!(stale, None);
    let wait = book(decrease).await;
    assert!(
        wait.abs_diff(Duration::from_millis(20 + 140 + 20)) < Duration::from_micros(10),
        "{wait:?}"
    );
    // A further decrease is the next share; from a schedule at the new pace, it stretches by
    // the ratio of the two.
    let slower = Limit::new(Duration::from_millis(30), 1);
    let (second, stretch) = probe
        .share_decrease("lane", slower, Some(decrease))
        .await
        .expect("the store answers")
        .expect("a decrease from the fleet's pace is shared");
    assert_eq!(second, first + 1);
    assert!((stretch - 1.5).abs() < 1e-9, "{stretch}");
}

#[tokio::test]
async fn the_script_books_exactly_as_the_in_memory_gcra() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let probe = store(&server, "exact").__probe();
    // 10 requests/s with a burst of 3; 1 000 tokens/s with a burst of 1 000 (oversized costs
    // become debt, as in memory: the probe books nothing strictly).
    let requests = Limit::new(Duration::from_millis(100), 3);
    let tokens = Limit::new(Duration::from_millis(1), 1_000);
    let limits = [Some(requests), Some(tokens), None, None];
    let mut reference = Reference {
        cells: [
            Some(Gcra::new(requests.interval, requests.burst)),
            Some(Gcra::new(tokens.interval, tokens.burst)),
            None,
            None,
        ],
    };
    // A fixed pseudo-random sequence of steps, costs, cancellations and settlements.
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |bound: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % bound
    };
    let origin = Duration::from_secs(1_000);
    let mut now = origin;
    let mut worst = Duration::ZERO;
    let (mut cancelled, mut refunded, mut debited) = (0, 0, 0);
    let mut earlier: Option<(
        reqwest_throttle::store::ProbeBooking,
        Cost,
        reqwest_throttle::limiter::Grant,
    )> = None;
    for step in 0..300 {
        now += Duration::from_micros(next(120_000));
        let nanos = now.as_nanos() as u64;
        let cost = Cost::requests(1 + next(2)).with(Dimension::Tokens, next(1_400));
        let booked = probe
            .book_at("lane", &cost, &limits, now)
            .await
            .expect("the store answers")
            .expect("nothing is refused without a max wait");
        let before = reference.cells;
        let (wait, grants) = reference.book(&cost, nanos);
        let diff = booked.wait.abs_diff(Duration::from_nanos(wait));
        worst = worst.max(diff);
        assert!(
            diff < Duration::from_millis(1),
            "step {step}: the script waits {:?}, the in-memory GCRA {:?}",
            booked.wait,
            Duration::from_nanos(wait)
        );
        match next(6) {
            // Dropped before it left: the latest booking comes back whole, the cells as they
            // were before it (what `Budget`'s ledger does for the latest booking).
            0 => {
                reference.cells = before;
                let returned = probe.cancel_at("lane", &booked, now).await.unwrap();
                assert_eq!(returned, cost.iter().count() as u64, "step {step}");
                cancelled += 1;
                // The restored cells would take a refund the script (whose booking numbers
                // moved on) refuses; keep the comparison to what both define alike.
                earlier = None;
            }
            // Settled with what it really cost, in tokens.
            1 | 2 => {
                let used = next(2_000);
                let actual = cost.with(Dimension::Tokens, used);
                let booked_tokens = cost.get(Dimension::Tokens);
                let cell = reference.cells[1].as_mut().unwrap();
                let mut expect_returned = 0;
                if let Some(grant) = grants[1].filter(|_| used < booked_tokens) {
                    if cell.refund(&grant, booked_tokens - used) {
                        expect_returned = 1;
                        refunded += 1;
                    }
                } else if used > booked_tokens {
                    let charged = used.min(booked_tokens.max(tokens.burst)) - booked_tokens;
                    if charged > 0 {
                        cell.debit(charged, nanos);
                        debited += 1;
                    }
                }
                let returned = probe
                    .settle_at("lane", &booked, &actual, now)
                    .await
                    .unwrap();
                assert_eq!(returned, expect_returned, "step {step}");
            }
            // Kept, to try to refund it later, when it is no longer the latest.
            3 => {
                if let Some(grant) = grants[1] {
                    earlier = Some((booked, cost, grant));
                }
            }
            _ => {}
        }
        if step % 25 == 24 {
            // An earlier booking can no longer give back: forfeited in both.
            if let Some((old, old_cost, grant)) = earlier.take() {
                let used = Cost::requests(old_cost.get(Dimension::Requests));
                let in_memory = reference.cells[1]
                    .as_mut()
                    .unwrap()
                    .refund(&grant, old_cost.get(Dimension::Tokens));
                let returned = probe.settle_at("lane", &old, &used, now).await.unwrap();
                assert_eq!(returned, u64::from(in_memory), "step {step}");
            }
        }
    }
    assert!(
        cancelled > 10 && refunded > 10 && debited > 10,
        "{cancelled} {refunded} {debited}"
    );
    eprintln!("largest difference between the script and the in-memory GCRA: {worst:?}");
    // The state lives under the lane's hash tag, and expires once back at rest.
    let mut redis = server.connection();
    let ttl: i64 = redis::cmd("PTTL")
        .arg("{exact:lane}")
        .query(&mut redis)
        .unwrap();
    assert!(ttl > 0, "the lane's state has no expiry: {ttl}");
}

#[tokio::test]
async fn two_throttles_sharing_a_budget_stay_within_it_together() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    // The server allows 40/s with a burst of 5; each throttle is told the same 40/s, burst 4
    // (one unit below the server's: the workers' timers fire a little apart).
    let rate = Rate::per_second(40).burst(4);
    let api = SimulatedApi::builder().token_bucket(40.0, 5).build();
    let (first, one) = client(rate, Some(store(&server, "pair")), &api);
    let (second, two) = client(rate, Some(store(&server, "pair")), &api);
    let outcomes = send_all(&[&one, &two], 30, NO_HANG * 2).await;
    assert!(outcomes.iter().all(|o| *o == Ok(200)), "{outcomes:?}");
    let stats = api.stats();
    assert_eq!((stats.received, stats.limited), (60, 0), "{stats:?}");
    for throttle in [&first, &second] {
        let store = throttle.stats().store.expect("store stats");
        assert!(store.up && store.round_trips >= 30, "{store:?}");
        assert_eq!(store.fallbacks, 0, "{store:?}");
    }

    // The same two throttles without the store: each alone keeps the rate, together they
    // send twice too much and the server refuses.
    let api = SimulatedApi::builder().token_bucket(40.0, 5).build();
    let (_, one) = client(rate, None, &api);
    let (_, two) = client(rate, None, &api);
    let outcomes = send_all(&[&one, &two], 10, NO_HANG * 2).await;
    assert!(outcomes.contains(&Ok(429)), "{outcomes:?}");
}

#[tokio::test]
async fn with_redis_killed_requests_fail_fast_then_share_again_once_it_is_back() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let api = SimulatedApi::builder().build();
    let store = store(&server, "fast").on_down(OnStoreDown::FailFast);
    let (throttle, client) = client(Rate::per_second(100), Some(store), &api);
    assert_eq!(send_all(&[&client], 3, NO_HANG * 2).await, vec![Ok(200); 3]);

    let port = server.kill();
    let outcomes = send_all(&[&client], 5, NO_HANG * 2).await;
    assert!(
        outcomes.iter().all(|o| o
            .as_ref()
            .is_err_and(|e| e.contains("store is unavailable"))),
        "{outcomes:?}"
    );
    let error = client.get(URL).send().await.unwrap_err();
    assert!(
        matches!(
            Error::from_middleware(&error),
            Some(Error::StoreUnavailable { .. })
        ),
        "{error}"
    );
    let down = throttle.stats().store.unwrap();
    assert!(
        !down.up && down.unavailable >= 6 && down.failures >= 1,
        "{down:?}"
    );
    assert_eq!(
        api.stats().received,
        3,
        "a request left while its budget was unknown"
    );

    // A lane that limits nothing (no rate configured, none learned) has nothing to refuse.
    let (_, unlimited) = client_with(
        Policy::new(),
        Some(store_of(port, "fast").on_down(OnStoreDown::FailFast)),
        &api,
    );
    assert_eq!(
        send_all(&[&unlimited], 2, NO_HANG * 2).await,
        vec![Ok(200); 2]
    );

    let _server = RedisServer::start_on(port).expect("redis-server restarts");
    let back = wait_until_shared(&throttle, &client).await;
    assert!(back.reconnects >= 1, "{back:?}");
}

#[tokio::test]
async fn with_redis_killed_requests_fall_back_to_a_share_then_share_again() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let api = SimulatedApi::builder().build();
    let store = store(&server, "fallback").expected_workers(4);
    let (throttle, client) = client(Rate::per_second(100), Some(store), &api);
    assert_eq!(send_all(&[&client], 3, NO_HANG * 2).await, vec![Ok(200); 3]);

    let port = server.kill();
    // At a quarter of 100/s (25/s, burst 25), every request still goes, from this process.
    let outcomes = send_all(&[&client], 10, NO_HANG * 2).await;
    assert_eq!(outcomes, vec![Ok(200); 10]);
    let down = throttle.stats().store.unwrap();
    assert!(
        !down.up && down.fallbacks >= 10 && down.failures >= 1,
        "{down:?}"
    );
    assert_eq!(down.round_trips, 3, "{down:?}");

    let _server = RedisServer::start_on(port).expect("redis-server restarts");
    let back = wait_until_shared(&throttle, &client).await;
    assert!(back.reconnects >= 1 && back.round_trips > 3, "{back:?}");
}

#[tokio::test]
async fn a_paused_redis_takes_the_timeout_path_instead_of_hanging() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let api = SimulatedApi::builder().build();
    let store = store(&server, "slow")
        .timeout(Duration::from_millis(100))
        .on_down(OnStoreDown::FailFast);
    let (throttle, client) = client(Rate::per_second(100), Some(store), &api);
    assert_eq!(send_all(&[&client], 1, NO_HANG * 2).await, vec![Ok(200)]);
    // Every client's commands wait for a second: the booking cannot be answered in time.
    let mut admin = server.connection();
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1_000)
        .arg("ALL")
        .query::<()>(&mut admin)
        .unwrap();
    let error = tokio::time::timeout(NO_HANG, client.get(URL).send())
        .await
        .expect("a paused Redis made the request hang")
        .unwrap_err();
    match Error::from_middleware(&error) {
        Some(Error::StoreUnavailable { reason, .. }) => {
            assert!(reason.contains("did not answer within"), "{reason}")
        }
        other => panic!("expected StoreUnavailable, got {other:?}"),
    }
    redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query::<()>(&mut admin)
        .unwrap();
    wait_until_shared(&throttle, &client).await;
}

/// Reads `field` of the hash `key` every 10 ms until `done` holds of it (at most a second,
/// for what a worker writes in the background); its last value.
async fn poll_field<T: redis::FromRedisValue>(
    server: &RedisServer,
    key: &str,
    field: &str,
    done: impl Fn(&Option<T>) -> bool,
) -> Option<T> {
    let mut redis = server.connection();
    let mut value = None;
    for _ in 0..100 {
        value = redis::cmd("HGET")
            .arg(key)
            .arg(field)
            .query::<Option<T>>(&mut redis)
            .expect("HGET answers");
        if done(&value) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    value
}

/// Sends requests until the store answers again (at most [`NO_HANG`] twice): its stats then.
async fn wait_until_shared(
    throttle: &Throttle,
    client: &ClientWithMiddleware,
) -> reqwest_throttle::StoreStats {
    let deadline = tokio::time::Instant::now() + NO_HANG * 2;
    loop {
        let _ = client.get(URL).send().await;
        let stats = throttle.stats().store.unwrap();
        if stats.up {
            return stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the store never came back: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_pause_one_worker_is_told_holds_back_every_worker() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    // The first worker's server refuses everything with `Retry-After: 1`.
    let refusing = SimulatedApi::builder()
        .limit(0, Duration::from_secs(60))
        .build();
    let (_, told) = client(
        Rate::per_second(100),
        Some(store(&server, "pause")),
        &refusing,
    );
    assert_eq!(send_all(&[&told], 1, NO_HANG * 2).await, vec![Ok(429)]);
    // The pause reaches Redis in the background: wait (boundedly) until it is there.
    let pause: Option<String> =
        poll_field(&server, "{pause:http://api.test:80}", "c", Option::is_some).await;
    assert!(pause.is_some(), "the pause never reached Redis");
    // Another worker, whose server would accept, waits for the pause: with less time to wait
    // than it lasts, its request is refused before it is sent.
    let accepting = SimulatedApi::builder().build();
    let (_, other) = client(
        Rate::per_second(100),
        Some(store(&server, "pause")),
        &accepting,
    );
    let request = other
        .get(URL)
        .with_extension(reqwest_throttle::MaxWait(Duration::from_millis(200)));
    let error = request.send().await.unwrap_err();
    assert!(
        matches!(
            Error::from_middleware(&error),
            Some(Error::CoolingDown { .. })
        ),
        "{error}"
    );
    assert_eq!(accepting.stats().received, 0);
}

#[tokio::test]
async fn a_shared_wait_beyond_max_wait_is_refused_without_booking() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let api = SimulatedApi::builder().build();
    let policy_rate = Rate::per_second(1).burst(1);
    let (_, first) = client(policy_rate, Some(store(&server, "wait")), &api);
    let (_, second) = client(policy_rate, Some(store(&server, "wait")), &api);
    assert_eq!(send_all(&[&first], 1, NO_HANG * 2).await, vec![Ok(200)]);
    // The other worker's turn is a second away in the shared budget.
    for _ in 0..3 {
        let error = second
            .get(URL)
            .with_extension(reqwest_throttle::MaxWait(Duration::from_millis(100)))
            .send()
            .await
            .unwrap_err();
        match Error::from_middleware(&error) {
            Some(Error::WouldWait {
                wait, dimension, ..
            }) => {
                assert_eq!(*dimension, Dimension::Requests);
                // Refusals book nothing: the wait does not grow from one to the next.
                assert!(*wait <= Duration::from_secs(1), "{wait:?}");
            }
            other => panic!("expected WouldWait, got {other:?}"),
        }
    }
    assert_eq!(api.stats().received, 1);
}

#[tokio::test]
async fn a_request_dropped_while_it_waits_gives_its_shared_slot_back() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let api = SimulatedApi::builder().build();
    let rate = Rate::per_second(1).burst(1);
    let (_, first) = client(rate, Some(store(&server, "drop")), &api);
    let (_, second) = client(rate, Some(store(&server, "drop")), &api);
    assert_eq!(send_all(&[&first], 1, NO_HANG * 2).await, vec![Ok(200)]);
    // Booked a second ahead, then given up on after 100 ms.
    let gave_up = tokio::time::timeout(Duration::from_millis(100), first.get(URL).send()).await;
    assert!(gave_up.is_err(), "the second request left within a second");
    // The refund reaches Redis in the background: booking 1, booking 2, its cancellation.
    let bookings = poll_field(&server, "{drop:http://api.test:80}", "s0", |b| {
        *b == Some(3)
    })
    .await;
    assert_eq!(bookings, Some(3), "the dropped booking was not given back");
    // The other worker gets the slot the dropped request held (under a second away), not the
    // one after it (two seconds away): within 1.5 s it is booked, and sent.
    let response = second
        .get(URL)
        .with_extension(reqwest_throttle::MaxWait(Duration::from_millis(1_500)))
        .send()
        .await;
    assert_eq!(response.map(|r| r.status().as_u16()).ok(), Some(200));
    assert_eq!(api.stats().received, 2);
}

#[tokio::test]
async fn the_fallback_starts_where_the_fleets_schedule_ends_with_its_burst_spent() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let api = SimulatedApi::builder().build();
    // 10/s, burst 1: five requests at once are booked 100 ms apart in Redis. While it is down,
    // this worker of two falls back to 5/s, burst 1 (200 ms apart).
    let store = store(&server, "switch").expected_workers(2);
    let (throttle, client) = client(Rate::per_second(10).burst(1), Some(store), &api);
    let shared: Vec<_> = (0..5)
        .map(|_| tokio::spawn(client.get(URL).send()))
        .collect();
    let booked = poll_field(&server, "{switch:http://api.test:80}", "s0", |b| {
        *b == Some(5)
    })
    .await;
    assert_eq!(booked, Some(5u64));
    // Killed with four of the five still waiting for their slots: they leave on them.
    server.kill();
    let outcomes = send_all(&[&client], 2, NO_HANG * 2).await;
    assert_eq!(outcomes, vec![Ok(200); 2]);
    for request in shared {
        let response = request.await.expect("no panic").expect("sent");
        assert_eq!(response.status(), 200);
    }
    assert!(throttle.stats().store.unwrap().fallbacks >= 2);
    let mut arrivals: Vec<_> = api.requests().iter().map(|request| request.at).collect();
    arrivals.sort();
    assert_eq!(arrivals.len(), 7);
    // The fallback's first request leaves one fallback interval (200 ms) after the shared
    // schedule's last slot, not with it (the burst it would have had is what the shared
    // schedule already used); 150 ms leaves room for timers.
    let gap = arrivals[5] - arrivals[4];
    assert!(
        gap >= Duration::from_millis(150),
        "the fallback sent {gap:?} after the shared schedule's last request"
    );
}

#[tokio::test]
async fn a_fleet_worker_never_opens_a_burst_nobody_stated() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    // A server that says nothing of its limits: the lane learns nothing but the burst.
    let api = SimulatedApi::builder().headers(HeaderStyle::None).build();
    // 20/s, its burst of 20 unstated: a lane alone earns it after 20 accepted requests and
    // opens it at its next lull. A worker of a fleet cannot tell the fleet's lull from its own.
    let (_, client) = client(Rate::per_second(20), Some(store(&server, "earned")), &api);
    let sent = 25;
    for i in 0..sent {
        if i == 22 {
            // A lull of this worker's (two intervals with nothing sent): where a lane alone
            // opens its earned burst.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(send_all(&[&client], 1, NO_HANG * 2).await, vec![Ok(200)]);
    }
    // Every request was booked in the shared cell (which expires soon after its last grant
    // unless a learned limit keeps it)...
    let lane = "{earned:http://api.test:80}";
    let bookings: Option<u64> = poll_field(&server, lane, "s0", |_| true).await;
    assert_eq!(bookings, Some(sent));
    // ...and the burst stayed spaced: opened, it would be shared as the fleet's limit (and
    // synced empty, pushing every worker's next grant a burst's length away).
    let learned: Option<String> = poll_field(&server, lane, "l0", Option::is_some).await;
    assert_eq!(
        learned, None,
        "a burst nobody stated was opened for the fleet"
    );
}

#[tokio::test]
async fn a_limit_one_worker_learns_from_headers_paces_every_worker() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    // 5 requests per second, burst 5, announced in IETF headers; no rate configured anywhere.
    let api = || {
        SimulatedApi::builder()
            .token_bucket(5.0, 5)
            .headers(HeaderStyle::Ietf)
            .build()
    };
    let shared = api();
    let (_, learner) = client_with(Policy::new(), Some(store(&server, "learn")), &shared);
    assert_eq!(send_all(&[&learner], 1, NO_HANG * 2).await, vec![Ok(200)]);
    let learned: Option<String> =
        poll_field(&server, "{learn:http://api.test:80}", "l0", Option::is_some).await;
    assert!(learned.is_some(), "the learned limit never reached Redis");
    // Another worker, told nothing yet, books its very first requests in the shared cell,
    // under the learned limit (without it, it would have no limit to book under and book
    // nothing there), and with the first worker they keep it together.
    let lane = "{learn:http://api.test:80}";
    let booked_before: Option<u64> = poll_field(&server, lane, "s0", |_| true).await;
    let (_, other) = client_with(Policy::new(), Some(store(&server, "learn")), &shared);
    let first = other.get(URL).send().await.map(|r| r.status().as_u16());
    assert_eq!(first.ok(), Some(200));
    // (`s0` counts bookings, and also the syncs to `remaining` that run in the background.)
    let booked_after: Option<u64> = poll_field(&server, lane, "s0", |_| true).await;
    assert!(
        booked_after.unwrap_or(0) > booked_before.unwrap_or(0),
        "the first request of a worker that knows no limit was not booked under the learned one"
    );
    let outcomes = send_all(&[&learner, &other], 5, NO_HANG * 2).await;
    assert_eq!(outcomes, vec![Ok(200); 10], "{learned:?}");
    assert_eq!(shared.stats().limited, 0);
}

#[tokio::test]
async fn an_earlier_dropped_booking_gives_its_span_back_unless_a_gap_absorbed_it() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let probe = store(&server, "holes").__probe();
    // 10 requests/s, burst 1: bookings made at once are 100 ms apart.
    let limits = [
        Some(Limit::new(Duration::from_millis(100), 1)),
        None,
        None,
        None,
    ];
    let t0 = Duration::from_secs(1_000);
    let book = |now: Duration| {
        let probe = &probe;
        async move {
            probe
                .book_at("lane", &Cost::requests(1), &limits, now)
                .await
                .expect("the store answers")
                .expect("nothing is refused without a max wait")
        }
    };
    let millis = |booking: &reqwest_throttle::store::ProbeBooking| booking.wait.as_secs_f64() * 1e3;
    let _first = book(t0).await;
    let second = book(t0).await;
    let third = book(t0).await;
    assert!((millis(&third) - 200.0).abs() < 1.0, "{third:?}");
    // The second, not the latest, is dropped. Without burst, closing the schedule up behind it
    // would put the next booking on the third's instant (two requests at once, refused by a
    // server without burst): it is forfeited, and the next booking goes after the third.
    assert_eq!(probe.cancel_at("lane", &second, t0).await.unwrap(), 0);
    let fourth = book(t0).await;
    assert!((millis(&fourth) - 300.0).abs() < 1.0, "{fourth:?}");
    // Ten seconds later the cell is at rest: a booking then starts after a gap. The fourth,
    // dropped only now, was absorbed by that gap: it gives nothing back, and the next booking
    // waits behind the fifth as if it had not been dropped.
    let later = t0 + Duration::from_secs(10);
    let fifth = book(later).await;
    assert_eq!(fifth.wait, Duration::ZERO);
    assert_eq!(probe.cancel_at("lane", &fourth, later).await.unwrap(), 0);
    let sixth = book(later).await;
    assert!((millis(&sixth) - 100.0).abs() < 1.0, "{sixth:?}");

    // With a burst of 2, two requests at once are within the rate: the schedule closes up
    // behind an earlier dropped booking, and the next one takes the place in line of the one
    // after it (200 ms, beside the fourth), not the one after that (300 ms).
    let limits = [
        Some(Limit::new(Duration::from_millis(100), 2)),
        None,
        None,
        None,
    ];
    let book = |now: Duration| {
        let probe = &probe;
        async move {
            probe
                .book_at("burst", &Cost::requests(1), &limits, now)
                .await
                .expect("the store answers")
                .expect("nothing is refused without a max wait")
        }
    };
    let _first = book(t0).await;
    let second = book(t0).await;
    let third = book(t0).await;
    let fourth = book(t0).await;
    assert_eq!(second.wait, Duration::ZERO);
    assert!((millis(&third) - 100.0).abs() < 1.0, "{third:?}");
    assert!((millis(&fourth) - 200.0).abs() < 1.0, "{fourth:?}");
    assert_eq!(probe.cancel_at("burst", &second, t0).await.unwrap(), 1);
    let fifth = book(t0).await;
    assert!((millis(&fifth) - 200.0).abs() < 1.0, "{fifth:?}");
}

#[tokio::test]
async fn a_fleet_wide_concurrency_cap_holds_across_workers_and_a_crashed_holder_expires() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let capped = || {
        store(&server, "leases")
            .concurrency(1)
            .lease(Duration::from_millis(300))
    };
    // Each answer takes 100 ms; two workers send three each at once, one at a time fleet-wide.
    let api = SimulatedApi::builder()
        .latency(Duration::from_millis(100))
        .build();
    let (_, one) = client(Rate::per_second(100), Some(capped()), &api);
    let (_, two) = client(Rate::per_second(100), Some(capped()), &api);
    assert_eq!(
        send_all(&[&one, &two], 3, NO_HANG * 2).await,
        vec![Ok(200); 6]
    );
    assert_eq!(api.stats().max_in_flight, 1, "{:?}", api.stats());

    // A worker takes the slot and dies without giving it back: another waits for it...
    let probe = capped().__probe();
    assert!(probe.lease_and_crash("http://api.test:80").await.unwrap());
    let error = one
        .get(URL)
        .with_extension(reqwest_throttle::MaxWait(Duration::from_millis(50)))
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(
            Error::from_middleware(&error),
            Some(Error::Saturated { .. })
        ),
        "{error}"
    );
    // ... only until the lease expires (300 ms), not for ever.
    let response = one
        .get(URL)
        .with_extension(reqwest_throttle::MaxWait(Duration::from_secs(2)))
        .send()
        .await;
    assert_eq!(response.map(|r| r.status().as_u16()).ok(), Some(200));

    // A request that runs longer than its lease keeps its slot: the lease (600 ms here) is
    // renewed every third of it while the request runs.
    let slow = SimulatedApi::builder()
        .latency(Duration::from_millis(1_500))
        .build();
    let renewed = || {
        store(&server, "renewed")
            .concurrency(1)
            .lease(Duration::from_millis(600))
    };
    let (_, one) = client(Rate::per_second(100), Some(renewed()), &slow);
    let (_, two) = client(Rate::per_second(100), Some(renewed()), &slow);
    assert_eq!(
        send_all(&[&one, &two], 1, NO_HANG * 2).await,
        vec![Ok(200); 2]
    );
    assert_eq!(slow.stats().max_in_flight, 1, "{:?}", slow.stats());
}

#[ignore = "a measurement in real time against a strict server: run alone on a quiet machine, `cargo test --all-features --test redis_store fleet -- --ignored --test-threads=1`"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_configured_keeps_a_strict_simulated_server_exact() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let store = || store_of(redis.port, "fleet");
    if let Some(report) = strict_fleet::run(Strict::Sim, true, store).await {
        assert_within(&report, CONFIGURED);
    }
}

#[ignore = "a measurement in real time against a strict server: run alone on a quiet machine, `cargo test --all-features --test redis_store fleet -- --ignored --test-threads=1`"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_configured_keeps_real_nginx_without_burst_exact() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let store = || store_of(redis.port, "fleet");
    if let Some(report) = strict_fleet::run(Strict::Nginx, true, store).await {
        assert_within(&report, CONFIGURED);
    }
}

#[ignore = "a measurement in real time against a strict server: run alone on a quiet machine, `cargo test --all-features --test redis_store fleet -- --ignored --test-threads=1`"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_told_nothing_learns_a_strict_simulated_server_together() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let store = || store_of(redis.port, "fleet");
    if let Some(report) = strict_fleet::run(Strict::Sim, false, store).await {
        assert_within(&report, NOTHING);
    }
}

#[ignore = "a measurement in real time against a strict server: run alone on a quiet machine, `cargo test --all-features --test redis_store fleet -- --ignored --test-threads=1`"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_told_nothing_learns_real_nginx_without_burst_together() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let store = || store_of(redis.port, "fleet");
    if let Some(report) = strict_fleet::run(Strict::Nginx, false, store).await {
        assert_within(&report, NOTHING);
    }
}

/// Four workers without `expected_workers`, Redis killed in the middle of a run: each falls
/// back to a quarter of the limit (the live workers Redis last counted), so the fleet keeps
/// within it; every worker books in Redis again soon after the restart; every request ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_killed_a_fleet_falls_back_to_its_counted_share_then_shares_again() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    const RATE: u64 = 40;
    let api = SimulatedApi::builder().record_limit(100_000).build();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            client(
                Rate::per_second(RATE),
                Some(store(&server, "members")),
                &api,
            )
        })
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (_, client) in &workers {
        for _ in 0..4 {
            let (client, stop) = (client.clone(), std::sync::Arc::clone(&stop));
            tasks.push(tokio::spawn(async move {
                // Bounded in count too: 40/s for a few seconds is far below this.
                for _ in 0..2_000 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    match tokio::time::timeout(NO_HANG, client.get(URL).send()).await {
                        Err(_) => panic!("a request hung"),
                        Ok(Ok(response)) => assert_eq!(response.status(), 200),
                        Ok(Err(error)) => panic!("a request failed: {error}"),
                    }
                }
            }));
        }
    }
    // Long enough for every worker to have counted the four.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let killed = tokio::time::Instant::now();
    let port = server.kill();
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let _server = RedisServer::start_on(port).expect("redis-server restarts");
    let restarted = tokio::time::Instant::now();
    // Every worker books in Redis again.
    let shared_again = loop {
        let all_up = workers
            .iter()
            .all(|(throttle, _)| throttle.stats().store.is_some_and(|store| store.up));
        if all_up {
            break tokio::time::Instant::now();
        }
        assert!(
            restarted.elapsed() < NO_HANG,
            "the store never came back for every worker"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in tasks {
        tokio::time::timeout(NO_HANG * 2, task)
            .await
            .expect("a worker hung")
            .expect("no request lost");
    }
    for (throttle, _) in &workers {
        let store = throttle.stats().store.unwrap();
        assert!(store.fallbacks > 0 && store.reconnects >= 1, "{store:?}");
    }
    // What the fleet sent while Redis was down: at most the limit and 10 %, over the outage
    // (from the first failed call, a little after the kill, until the restart).
    let down = restarted - killed;
    let sent = api
        .requests()
        .iter()
        .filter(|request| request.at >= killed && request.at < restarted)
        .count();
    let allowed = RATE as f64 * down.as_secs_f64() * 1.1;
    println!(
        "down {down:?}: {sent} sent (the limit and 10 %: {allowed:.0}); every worker shared again {:?} after the restart",
        shared_again - restarted
    );
    assert!(
        sent as f64 <= allowed,
        "{sent} sent in {down:?}, more than {allowed:.0}"
    );
    assert!(
        shared_again - restarted <= Duration::from_secs(2),
        "shared again only {:?} after the restart",
        shared_again - restarted
    );
}

/// One worker refused by a server without burst (plain 429s, nothing configured): the pace it
/// learns from the refusal, and its latest decrease, go into the lane's hash, and the other
/// worker paces on them at its next booking without having been refused itself.
#[tokio::test]
async fn a_pace_one_worker_learns_from_plain_refusals_paces_every_worker() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    // 100/s without burst: five at once are refused but one, and the pace learned from that
    // (well below 100/s) is accepted.
    let api = SimulatedApi::builder()
        .token_bucket(100.0, 1)
        .headers(HeaderStyle::None)
        .retry_after(reqwest_throttle::sim::RetryAfterStyle::None)
        .build();
    let lane_rate = |throttle: &Throttle| throttle.stats().lanes.first().and_then(|lane| lane.rate);
    let (told, told_client) = client_with(Policy::new(), Some(store(&server, "curve")), &api);
    let (other, other_client) = client_with(Policy::new(), Some(store(&server, "curve")), &api);
    assert_eq!(
        send_all(&[&other_client], 1, NO_HANG * 2).await,
        vec![Ok(200)]
    );
    assert_eq!(lane_rate(&other), None, "nothing learned yet");
    // Five at once: the server takes one, the others are refused and the worker decreases.
    let outcomes = send_all(&[&told_client], 5, NO_HANG * 2).await;
    assert!(outcomes.contains(&Ok(429)), "{outcomes:?}");
    let learned = lane_rate(&told).expect("a pace learned from the refusals");
    // The server's bucket refills: the other worker's requests are not refused for coming
    // right after the refused worker's last.
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The other worker's next bookings read the fleet's curve (it is shared in the
    // background, so the first may come before it).
    let mut taken = None;
    for _ in 0..20 {
        let _ = send_all(&[&other_client], 1, NO_HANG * 2).await;
        taken = lane_rate(&other);
        if taken.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The fleet's latest curve: the refused worker's latest decrease, grown a little along it
    // since (CUBIC grows with time).
    let taken = taken.expect("the other worker paces on the fleet's curve");
    assert!(
        (taken - learned).abs() <= learned * 0.25,
        "learned {learned}/s by the refused worker, {taken}/s taken by the other"
    );
    assert_eq!(
        other.stats().lanes[0].rate_limited,
        0,
        "the other worker was never refused"
    );
}
