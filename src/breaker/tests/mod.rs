//! State-machine tests in virtual time: every `now` is an offset from one `Instant`.

use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use http::StatusCode;
use tokio::time::Instant;

use super::*;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Default HTTP config without jitter, so open periods are exact.
fn exact() -> BreakerConfig {
    BreakerConfig::default().jitter(0.0)
}

fn record_n(breaker: &Breaker, outcome: Outcome, n: u32, now: Instant) {
    for _ in 0..n {
        match breaker.admit(now) {
            Ok(admission) => breaker.record(admission, outcome, now),
            Err(rejected) => panic!("expected admission, got {rejected}"),
        }
    }
}

fn admitted(breaker: &Breaker, now: Instant) -> Admission {
    match breaker.admit(now) {
        Ok(admission) => admission,
        Err(rejected) => panic!("expected admission at {now:?}, got {rejected}"),
    }
}

fn rejected(breaker: &Breaker, now: Instant) -> Rejected {
    match breaker.admit(now) {
        Ok(admission) => panic!("expected rejection at {now:?}, got {admission:?}"),
        Err(rejected) => rejected,
    }
}

/// Collects every transition delivered to callbacks.
fn recorded_transitions(breaker: &mut Breaker) -> Arc<Mutex<Vec<Transition>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    breaker.on_transition(move |t| sink.lock().unwrap().push(t.clone()));
    seen
}

/// Trips a `consecutive_failures(1)` breaker and returns when it half-opens.
fn trip_once(breaker: &Breaker, now: Instant) -> Instant {
    record_n(breaker, Outcome::Failure, 1, now);
    now + rejected(breaker, now).retry_in
}

#[test]
fn four_consecutive_failures_do_not_trip_five_do() {
    let breaker = Breaker::new(exact());
    let t0 = Instant::now();
    record_n(&breaker, Outcome::Failure, 4, t0);
    assert_eq!(breaker.state_at(t0), BreakerState::Closed);
    assert_eq!(breaker.snapshot(t0).consecutive_failures, 4);

    record_n(&breaker, Outcome::Failure, 1, t0);
    let rejection = rejected(&breaker, t0 + ms(1));
    assert_eq!(rejection.state, BreakerState::Open);
    assert!(!rejection.forced);
    assert_eq!(rejection.retry_in, secs(5) - ms(1));
    assert_eq!(breaker.state_at(t0), BreakerState::Open);
}

#[test]
fn a_success_restarts_the_consecutive_count() {
    let breaker = Breaker::new(exact());
    let t0 = Instant::now();
    record_n(&breaker, Outcome::Failure, 4, t0);
    record_n(&breaker, Outcome::Success, 1, t0);
    assert_eq!(breaker.snapshot(t0).consecutive_failures, 0);
    record_n(&breaker, Outcome::Failure, 4, t0);
    assert_eq!(breaker.state_at(t0), BreakerState::Closed);
    record_n(&breaker, Outcome::Failure, 1, t0);
    assert_eq!(breaker.state_at(t0), BreakerState::Open);
}

#[test]
fn ignored_outcomes_neither_count_nor_reset() {
    let breaker = Breaker::new(exact());
    let t0 = Instant::now();
    record_n(&breaker, Outcome::Failure, 4, t0);
    record_n(&breaker, Outcome::Ignored, 100, t0);
    assert_eq!(breaker.snapshot(t0).consecutive_failures, 4);
    record_n(&breaker, Outcome::Failure, 1, t0);
    assert_eq!(breaker.state_at(t0), BreakerState::Open);
}

#[test]
fn a_429_storm_never_trips() {
    let config = exact().failure_rate(0.1, FailureWindow::Count(100), 10);
    let breaker = Breaker::new(config);
    let t0 = Instant::now();
    let outcome = breaker
        .config()
        .classify_status(StatusCode::TOO_MANY_REQUESTS);
    for i in 0..10_000u64 {
        record_n(&breaker, outcome, 1, t0 + ms(i));
    }
    let snapshot = breaker.snapshot(t0 + secs(10));
    assert_eq!(snapshot.state, BreakerState::Closed);
    assert_eq!(snapshot.trips, 0);
    assert_eq!(snapshot.window_calls, 0);
    assert_eq!(snapshot.consecutive_failures, 0);
}

fn rate_only(threshold: f64, window: FailureWindow, min_calls: u32) -> BreakerConfig {
    exact()
        .without_consecutive_failures()
        .failure_rate(threshold, window, min_calls)
}

#[test]
fn failure_rate_waits_for_min_calls() {
    let breaker = Breaker::new(rate_only(0.5, FailureWindow::Count(10), 6));
    let t0 = Instant::now();
    // 100 % failures, but only 5 calls: not yet evaluated.
    record_n(&breaker, Outcome::Failure, 5, t0);
    assert_eq!(breaker.state_at(t0), BreakerState::Closed);
    record_n(&breaker, Outcome::Failure, 1, t0);
    assert_eq!(breaker.state_at(t0), BreakerState::Open);
}

#[test]
fn failure_rate_trips_at_the_threshold_not_below() {
    let t0 = Instant::now();
    let below = Breaker::new(rate_only(0.5, FailureWindow::Count(10), 6));
    for outcome in [Outcome::Success, Outcome::Failure].repeat(2) {
        record_n(&below, outcome, 1, t0);
    }
    record_n(&below, Outcome::Success, 2, t0); // 2 of 6 failed
    assert_eq!(below.state_at(t0), BreakerState::Closed);

    let at = Breaker::new(rate_only(0.5, FailureWindow::Count(10), 6));
    for outcome in [Outcome::Success, Outcome::Failure].repeat(3) {
        record_n(&at, outcome, 1, t0); // 3 of 6 failed = 0.5
    }
    assert_eq!(at.state_at(t0), BreakerState::Open);
    assert_eq!(at.snapshot(t0).trips, 1);
}

#[test]
fn count_window_slides_old_outcomes_out() {
    let breaker = Breaker::new(rate_only(0.5, FailureWindow::Count(4), 4));
    let t0 = Instant::now();
    record_n(&breaker, Outcome::Failure, 1, t0);
    record_n(&breaker, Outcome::Success, 3, t0); // [F S S S]: 25 %
    record_n(&breaker, Outcome::Success, 1, t0); // [S S S S]: the failure slid out
    let snapshot = breaker.snapshot(t0);
    assert_eq!((snapshot.window_calls, snapshot.window_failures), (4, 0));
    record_n(&breaker, Outcome::Failure, 1, t0); // [S S S F]: 25 %
    assert_eq!(breaker.state_at(t0), BreakerState::Closed);
    // [S S F F]: 50 % of the window, though only 3 of the 7 calls ever made failed.
    record_n(&breaker, Outcome::Failure, 1, t0);
    assert_eq!(breaker.state_at(t0), BreakerState::Open);
}

#[test]
fn time_window_respects_min_calls_and_expires_old_calls() {
    let breaker = Breaker::new(rate_only(0.5, FailureWindow::Time(secs(10)), 4));
    let t0 = Instant::now();
    record_n(&breaker, Outcome::Failure, 3, t0);
    assert_eq!(breaker.state_at(t0), BreakerState::Closed, "3 < min_calls");
    // Ten seconds later those three have left the window: one more failure is 1 call, not 4.
    let t1 = t0 + secs(10);
    record_n(&breaker, Outcome::Failure, 1, t1);
    let snapshot = breaker.snapshot(t1);
    assert_eq!((snapshot.window_calls, snapshot.window_failures), (1, 1));
    assert_eq!(snapshot.state, BreakerState::Closed);
    record_n(&breaker, Outcome::Failure, 3, t1 + secs(1));
    assert_eq!(breaker.state_at(t1 + secs(1)), BreakerState::Open);
}

#[test]
fn time_window_expires_old_successes_too() {
    let breaker = Breaker::new(rate_only(0.5, FailureWindow::Time(secs(10)), 4));
    let t0 = Instant::now();
    record_n(&breaker, Outcome::Success, 4, t0);
    record_n(&breaker, Outcome::Failure, 2, t0 + secs(5));
    record_n(&breaker, Outcome::Failure, 1, t0 + ms(9_900)); // 3 of 7
    assert_eq!(breaker.state_at(t0 + ms(9_900)), BreakerState::Closed);
    // The four successes expire at t0 + 10 s: 4 failures of 4.
    record_n(&breaker, Outcome::Failure, 1, t0 + secs(10));
    assert_eq!(breaker.state_at(t0 + secs(10)), BreakerState::Open);
}

#[test]
fn open_duration_doubles_on_repeated_trips_and_is_capped() {
    let config = exact().consecutive_failures(1).open_for(secs(1), secs(8));
    let breaker = Breaker::new(config);
    let mut now = Instant::now();
    record_n(&breaker, Outcome::Failure, 1, now);
    let mut periods = Vec::new();
    for _ in 0..5 {
        let retry_in = rejected(&breaker, now).retry_in;
        periods.push(retry_in);
        now += retry_in;
        let probe = admitted(&breaker, now);
        assert!(probe.is_probe());
        breaker.record(probe, Outcome::Failure, now);
    }
    assert_eq!(periods, [secs(1), secs(2), secs(4), secs(8), secs(8)]);
    assert_eq!(breaker.snapshot(now).trips, 6);
}

#[test]
fn a_healthy_period_forgets_past_trips() {
    let config = exact()
        .consecutive_failures(1)
        .open_for(secs(1), secs(60))
        .healthy_after(secs(30));
    let breaker = Breaker::new(config);
    let t0 = Instant::now();
    let half_open = trip_once(&breaker, t0);
    let probe = admitted(&breaker, half_open);
    breaker.record(probe, Outcome::Success, half_open);
    let closed_at = half_open;

    // Tripping again 29 s after closing is a repeated trip: 2 s.
    let t1 = closed_at + secs(29);
    assert_eq!(breaker.snapshot(t1).trip_streak, 1);
    let half_open = trip_once(&breaker, t1);
    assert_eq!(half_open - t1, secs(2));
    let probe = admitted(&breaker, half_open);
    breaker.record(probe, Outcome::Success, half_open);

    // 30 s closed and healthy: back to the base period.
    let t2 = half_open + secs(30);
    assert_eq!(breaker.snapshot(t2).trip_streak, 0);
    let half_open = trip_once(&breaker, t2);
    assert_eq!(half_open - t2, secs(1));
}

#[test]
fn jitter_shortens_the_open_period_within_bounds() {
    let config = BreakerConfig::default()
        .consecutive_failures(1)
        .open_for(secs(10), secs(10))
        .jitter(0.5);
    let mut breaker = Breaker::new(config);
    let seen = recorded_transitions(&mut breaker);
    let mut now = Instant::now();
    for _ in 0..200 {
        now = trip_once(&breaker, now);
        breaker.reset();
    }
    let periods: Vec<Duration> = seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(|t| t.open_for)
        .collect();
    assert_eq!(periods.len(), 200);
    for period in &periods {
        assert!((secs(5)..=secs(10)).contains(period), "{period:?}");
    }
    // Spread over the range rather than stuck at one value.
    assert!(periods.iter().any(|p| *p < ms(7_500)));
    assert!(periods.iter().any(|p| *p > ms(7_500)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_admits_exactly_the_probe_limit_under_100_concurrent_callers() {
    for limit in [1u32, 3] {
        let config = exact()
            .consecutive_failures(1)
            .open_for(secs(1), secs(1))
            .half_open_probes(limit);
        let breaker = Arc::new(Breaker::new(config));
        let t0 = Instant::now();
        let half_open = trip_once(&breaker, t0);
        let rejected_before = breaker.snapshot(t0).rejected;

        let barrier = Arc::new(tokio::sync::Barrier::new(100));
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let breaker = Arc::clone(&breaker);
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    barrier.wait().await;
                    breaker.admit(half_open)
                })
            })
            .collect();
        let mut probes = Vec::new();
        let mut rejections = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                Ok(admission) => probes.push(admission),
                Err(rejection) => rejections.push(rejection),
            }
        }
        assert_eq!(probes.len(), limit as usize);
        assert!(probes.iter().all(Admission::is_probe));
        assert_eq!(rejections.len(), 100 - limit as usize);
        for rejection in &rejections {
            assert_eq!(rejection.state, BreakerState::HalfOpen);
            assert_eq!(rejection.retry_in, secs(1));
        }
        let snapshot = breaker.snapshot(half_open);
        assert_eq!(snapshot.probes_in_flight, limit);
        assert_eq!(snapshot.rejected - rejected_before, 100 - u64::from(limit));
    }
}

#[test]
fn enough_probe_successes_close_the_breaker() {
    let config = exact()
        .consecutive_failures(1)
        .half_open_probes(2)
        .successes_to_close(3);
    let mut breaker = Breaker::new(config);
    let seen = recorded_transitions(&mut breaker);
    let now = trip_once(&breaker, Instant::now());
    let first = admitted(&breaker, now);
    let second = admitted(&breaker, now);
    assert!(breaker.admit(now).is_err(), "two probes at a time");
    breaker.record(first, Outcome::Success, now);
    breaker.record(second, Outcome::Success, now);
    assert_eq!(breaker.state_at(now), BreakerState::HalfOpen);
    let third = admitted(&breaker, now);
    breaker.record(third, Outcome::Success, now);
    assert_eq!(breaker.state_at(now), BreakerState::Closed);
    let last = seen.lock().unwrap().last().cloned();
    assert_eq!(
        last.map(|t| (t.from, t.to, t.reason)),
        Some((
            BreakerState::HalfOpen,
            BreakerState::Closed,
            TransitionReason::ProbesSucceeded { successes: 3 }
        ))
    );
    // Closed again: a fresh count, the fast path admits.
    let admission = admitted(&breaker, now);
    assert!(!admission.is_probe());
}

#[test]
fn any_probe_failure_reopens_and_later_probes_are_ignored() {
    let config = exact()
        .consecutive_failures(1)
        .open_for(secs(1), secs(60))
        .half_open_probes(3)
        .successes_to_close(3);
    let breaker = Breaker::new(config);
    let now = trip_once(&breaker, Instant::now());
    let probes: Vec<Admission> = (0..3).map(|_| admitted(&breaker, now)).collect();
    let mut probes = probes.into_iter();
    let (a, b, c) = match (probes.next(), probes.next(), probes.next()) {
        (Some(a), Some(b), Some(c)) => (a, b, c),
        _ => panic!("three probes"),
    };
    breaker.record(a, Outcome::Success, now);
    breaker.record(b, Outcome::Failure, now);
    let rejection = rejected(&breaker, now);
    assert_eq!(
        (rejection.state, rejection.retry_in),
        (BreakerState::Open, secs(2))
    );
    // The third probe belonged to the previous half-open period.
    breaker.record(c, Outcome::Success, now);
    assert_eq!(breaker.state_at(now), BreakerState::Open);
}

#[test]
fn a_dropped_probe_releases_its_slot() {
    let breaker = Breaker::new(exact().consecutive_failures(1));
    let now = trip_once(&breaker, Instant::now());
    let probe = admitted(&breaker, now);
    assert_eq!(rejected(&breaker, now).state, BreakerState::HalfOpen);
    drop(probe);
    assert_eq!(breaker.snapshot(now).probes_in_flight, 0);
    let probe = admitted(&breaker, now);
    assert!(probe.is_probe());
    breaker.record(probe, Outcome::Success, now);
    assert_eq!(breaker.state_at(now), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_request_does_not_wedge_half_open() {
    let breaker = Arc::new(Breaker::new(exact().consecutive_failures(1)));
    let now = trip_once(&breaker, Instant::now());
    let probe = admitted(&breaker, now);
    // The request future owns its admission and never finishes; the caller gives up on it.
    let request = tokio::spawn(async move {
        let _probe = probe;
        std::future::pending::<()>().await;
    });
    tokio::task::yield_now().await;
    assert_eq!(rejected(&breaker, now).state, BreakerState::HalfOpen);
    request.abort();
    assert!(request.await.is_err_and(|e| e.is_cancelled()));
    assert!(admitted(&breaker, now).is_probe());
}

#[test]
fn an_ignored_probe_frees_its_slot_without_deciding() {
    let breaker = Breaker::new(exact().consecutive_failures(1));
    let now = trip_once(&breaker, Instant::now());
    let probe = admitted(&breaker, now);
    breaker.record(probe, Outcome::Ignored, now);
    assert_eq!(breaker.state_at(now), BreakerState::HalfOpen);
    let probe = admitted(&breaker, now);
    breaker.record(probe, Outcome::Success, now);
    assert_eq!(breaker.state_at(now), BreakerState::Closed);
}

#[test]
fn a_hung_probe_times_out_and_reopens() {
    let config = exact()
        .consecutive_failures(1)
        .open_for(secs(1), secs(60))
        .probe_timeout(secs(10));
    let mut breaker = Breaker::new(config);
    let seen = recorded_transitions(&mut breaker);
    let now = trip_once(&breaker, Instant::now());
    let hung = admitted(&breaker, now);
    // While the probe runs, callers are told to come back in at most the base period.
    assert_eq!(rejected(&breaker, now + secs(3)).retry_in, secs(1));
    assert_eq!(rejected(&breaker, now + ms(9_500)).retry_in, ms(500));
    let rejection = rejected(&breaker, now + secs(10));
    assert_eq!(
        (rejection.state, rejection.retry_in),
        (BreakerState::Open, secs(2))
    );
    let last = seen.lock().unwrap().last().map(|t| t.reason);
    assert_eq!(last, Some(TransitionReason::ProbeTimedOut));
    // Its late answer no longer decides anything.
    breaker.record(hung, Outcome::Success, now + secs(11));
    assert_eq!(breaker.state_at(now + secs(11)), BreakerState::Open);
}

#[test]
fn outcomes_admitted_before_a_state_change_are_ignored() {
    let breaker = Breaker::new(exact());
    let t0 = Instant::now();
    let slow = admitted(&breaker, t0);
    record_n(&breaker, Outcome::Failure, 5, t0);
    let half_open = t0 + secs(5);
    let probe = admitted(&breaker, half_open);
    // The slow call admitted while closed answers now: it is no probe, it must not close.
    breaker.record(slow, Outcome::Success, half_open);
    assert_eq!(breaker.state_at(half_open), BreakerState::HalfOpen);
    breaker.record(probe, Outcome::Success, half_open);
    assert_eq!(breaker.state_at(half_open), BreakerState::Closed);
}

#[test]
fn a_failure_sent_before_recovery_does_not_count_after_it() {
    let breaker = Breaker::new(exact().consecutive_failures(2));
    let t0 = Instant::now();
    let sent_during_outage = admitted(&breaker, t0);
    record_n(&breaker, Outcome::Failure, 2, t0);
    let half_open = t0 + secs(5);
    let probe = admitted(&breaker, half_open);
    breaker.record(probe, Outcome::Success, half_open);
    record_n(&breaker, Outcome::Failure, 1, half_open);
    // It timed out long ago; it says nothing about the recovered service.
    breaker.record(sent_during_outage, Outcome::Failure, half_open);
    assert_eq!(breaker.snapshot(half_open).consecutive_failures, 1);
    assert_eq!(breaker.state_at(half_open), BreakerState::Closed);
}

#[test]
fn an_admission_from_another_breaker_changes_nothing_here() {
    let one = Breaker::new(exact().consecutive_failures(1));
    let other = Breaker::new(exact().consecutive_failures(1));
    let now = trip_once(&one, Instant::now());
    let probe = admitted(&one, now);
    other.record(probe, Outcome::Failure, now);
    assert_eq!(other.state_at(now), BreakerState::Closed);
    // ...and the probe slot it held on its own breaker is free again.
    assert_eq!(one.snapshot(now).probes_in_flight, 0);
    assert!(admitted(&one, now).is_probe());
}

#[test]
fn force_open_holds_until_released() {
    let breaker = Breaker::new(exact());
    let t0 = Instant::now();
    breaker.force_open(t0);
    for later in [t0, t0 + secs(60), t0 + secs(86_400)] {
        let rejection = rejected(&breaker, later);
        assert_eq!(rejection.state, BreakerState::Open);
        assert!(rejection.forced);
        assert_eq!(rejection.retry_in, secs(5));
        assert_eq!(breaker.state_at(later), BreakerState::Open);
    }
    let snapshot = breaker.snapshot(t0 + secs(86_400));
    assert!(snapshot.forced);
    assert_eq!(snapshot.retry_in, None);
    assert_eq!(snapshot.open_since, Some(t0));
    assert_eq!(snapshot.trips, 0, "an operator hold is not a trip");
    breaker.force_closed();
    assert!(!admitted(&breaker, t0).is_probe());
}

#[test]
fn force_closed_admits_everything_and_never_trips() {
    let breaker = Breaker::new(exact().failure_rate(0.1, FailureWindow::Count(10), 1));
    let t0 = Instant::now();
    record_n(&breaker, Outcome::Failure, 1, t0); // 1 of 1 calls failed
    assert_eq!(breaker.state_at(t0), BreakerState::Open);
    breaker.force_closed();
    record_n(&breaker, Outcome::Failure, 100, t0);
    let snapshot = breaker.snapshot(t0);
    assert_eq!(snapshot.state, BreakerState::Closed);
    assert!(snapshot.forced);
    assert_eq!(
        snapshot.consecutive_failures, 100,
        "still counted, for observation"
    );
    // reset releases the hold: the normal rules apply again.
    breaker.reset();
    record_n(&breaker, Outcome::Success, 9, t0);
    record_n(&breaker, Outcome::Failure, 1, t0);
    assert_eq!(breaker.state_at(t0), BreakerState::Open);
}

#[test]
fn reset_forgets_counts_trips_and_streak() {
    let breaker = Breaker::new(exact().consecutive_failures(3).open_for(secs(1), secs(60)));
    let t0 = Instant::now();
    record_n(&breaker, Outcome::Failure, 3, t0);
    let half_open = t0 + secs(1);
    let probe = admitted(&breaker, half_open);
    breaker.record(probe, Outcome::Failure, half_open);
    assert_eq!(breaker.snapshot(half_open).trip_streak, 2);
    breaker.reset();
    let snapshot = breaker.snapshot(half_open);
    assert_eq!(
        (
            snapshot.state,
            snapshot.trips,
            snapshot.trip_streak,
            snapshot.rejected
        ),
        (BreakerState::Closed, 0, 0, 0)
    );
    record_n(&breaker, Outcome::Failure, 2, half_open);
    assert_eq!(breaker.state_at(half_open), BreakerState::Closed);
    record_n(&breaker, Outcome::Failure, 1, half_open);
    assert_eq!(
        rejected(&breaker, half_open).retry_in,
        secs(1),
        "streak restarted"
    );
}

#[test]
fn callbacks_see_every_transition_in_order() {
    let config = exact().consecutive_failures(2).open_for(secs(1), secs(60));
    let mut breaker = Breaker::new(config);
    let seen = recorded_transitions(&mut breaker);
    let t0 = Instant::now();
    record_n(&breaker, Outcome::Failure, 2, t0);
    let t1 = t0 + secs(1);
    let probe = admitted(&breaker, t1);
    breaker.record(probe, Outcome::Failure, t1);
    let t2 = t1 + secs(2);
    let probe = admitted(&breaker, t2);
    breaker.record(probe, Outcome::Success, t2);
    breaker.force_open(t2);
    breaker.force_closed();
    breaker.reset();
    breaker.reset(); // already closed: no transition

    use BreakerState::{Closed, HalfOpen, Open};
    let t = |from, to, reason, open_for| Transition {
        from,
        to,
        reason,
        open_for,
    };
    let expected = vec![
        t(
            Closed,
            Open,
            TransitionReason::ConsecutiveFailures { failures: 2 },
            Some(secs(1)),
        ),
        t(Open, HalfOpen, TransitionReason::OpenElapsed, None),
        t(HalfOpen, Open, TransitionReason::ProbeFailed, Some(secs(2))),
        t(Open, HalfOpen, TransitionReason::OpenElapsed, None),
        t(
            HalfOpen,
            Closed,
            TransitionReason::ProbesSucceeded { successes: 1 },
            None,
        ),
        t(Closed, Open, TransitionReason::ForcedOpen, None),
        t(Open, Closed, TransitionReason::ForcedClosed, None),
        t(Closed, Closed, TransitionReason::Reset, None),
    ];
    assert_eq!(*seen.lock().unwrap(), expected);
}

#[test]
fn a_callback_may_call_back_into_the_breaker() {
    let mut breaker = Breaker::new(exact().consecutive_failures(1));
    let seen = recorded_transitions(&mut breaker);
    let handle: Arc<OnceLock<Weak<Breaker>>> = Arc::new(OnceLock::new());
    let callback_handle = Arc::clone(&handle);
    // An operator policy: never stay open; it re-enters the breaker from inside a callback.
    breaker.on_transition(move |t| {
        if let Some(breaker) = callback_handle.get().and_then(Weak::upgrade) {
            if t.to == BreakerState::Open && t.reason != TransitionReason::ForcedOpen {
                assert_eq!(breaker.snapshot(Instant::now()).trips, 1);
                breaker.force_closed();
            }
        }
    });
    let breaker = Arc::new(breaker);
    assert!(handle.set(Arc::downgrade(&breaker)).is_ok());
    let now = Instant::now();
    record_n(&breaker, Outcome::Failure, 1, now);
    let reasons: Vec<_> = seen.lock().unwrap().iter().map(|t| t.reason).collect();
    assert_eq!(
        reasons,
        [
            TransitionReason::ConsecutiveFailures { failures: 1 },
            TransitionReason::ForcedClosed
        ]
    );
    assert!(!admitted(&breaker, now).is_probe());
}

#[tokio::test(start_paused = true)]
async fn state_follows_the_virtual_clock() {
    let breaker = Breaker::new(exact().consecutive_failures(1));
    record_n(&breaker, Outcome::Failure, 1, Instant::now());
    assert_eq!(breaker.state(), BreakerState::Open);
    tokio::time::advance(ms(4_999)).await;
    assert_eq!(breaker.state(), BreakerState::Open);
    assert_eq!(breaker.snapshot(Instant::now()).retry_in, Some(ms(1)));
    tokio::time::advance(ms(1)).await;
    // Eligible for half-open: reported so before any caller has probed.
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    assert_eq!(
        breaker.snapshot(Instant::now()).retry_in,
        Some(Duration::ZERO)
    );
    assert!(admitted(&breaker, Instant::now()).is_probe());
}

#[test]
fn snapshot_counts_trips_and_rejections() {
    let breaker = Breaker::new(exact().failure_rate(0.5, FailureWindow::Count(10), 10));
    let t0 = Instant::now();
    record_n(&breaker, Outcome::Success, 3, t0);
    record_n(&breaker, Outcome::Failure, 2, t0);
    let snapshot = breaker.snapshot(t0);
    assert_eq!(
        (
            snapshot.consecutive_failures,
            snapshot.window_calls,
            snapshot.window_failures
        ),
        (2, 5, 2)
    );
    record_n(&breaker, Outcome::Failure, 3, t0);
    for _ in 0..7 {
        let _ = rejected(&breaker, t0 + secs(1));
    }
    let snapshot = breaker.snapshot(t0 + secs(1));
    assert_eq!(snapshot.state, BreakerState::Open);
    assert_eq!(snapshot.trips, 1);
    assert_eq!(snapshot.rejected, 7);
    assert_eq!(snapshot.retry_in, Some(secs(4)));
    assert_eq!(snapshot.open_since, Some(t0));
    assert_eq!(
        (snapshot.consecutive_failures, snapshot.window_calls),
        (0, 0),
        "counts restart with each period"
    );
}

#[test]
fn an_invalid_config_is_refused_by_try_new_and_sanitized_by_new() {
    let config = exact().consecutive_failures(0).half_open_probes(0);
    assert_eq!(
        Breaker::try_new(config.clone()).map(|_| ()),
        Err(BreakerConfigError::ConsecutiveFailuresZero)
    );
    let breaker = Breaker::new(config);
    let now = Instant::now();
    record_n(&breaker, Outcome::Failure, 4, now);
    assert_eq!(
        breaker.state_at(now),
        BreakerState::Closed,
        "fell back to 5"
    );
    record_n(&breaker, Outcome::Failure, 1, now);
    let half_open = now + secs(5);
    assert!(
        admitted(&breaker, half_open).is_probe(),
        "at least one probe"
    );
}

/// Properties of the state machine under random sequences of calls and time.
mod properties;

#[test]
fn breaker_types_cross_threads_and_awaits() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Breaker>();
    send_sync::<Admission>();
    send_sync::<Rejected>();
    send_sync::<BreakerSnapshot>();
    send_sync::<Transition>();
}
