//! Cancellation at any position of the queue, as properties of the [`Budget`] in virtual time.
//!
//! Every reservation is held by a task that waits for its slot ([`Reservation::wait`]), leaves
//! (records the instant and commits) and ends. The test interleaves new reservations, tasks
//! aborted wherever their reservation stands (the front, the middle, the back of the queue, or
//! at the very instant it is due), pauses, and rate changes; the tokio clock is paused, so every
//! instant is exact. Then, checked in integer nanoseconds:
//!
//! - **window bound**: in every window `[s, s+W]`, the units that left satisfy
//!   `units·T ≤ W + max(τ, c·T)`, `c` the largest oversized cost among them (`c·T > τ`): the
//!   issue's `burst + rate·W`, plus one oversized cost. Across rate changes, the units booked
//!   under each rate satisfy that rate's bound among themselves, and when the rate only
//!   decreases, every window mixing them satisfies `Σ c·T_own ≤ W + max(τ_all, oversized)`.
//! - **throughput**: while live demand exceeds supply, the units that left by the horizon `H`
//!   are at least 99 % of `H/T`, however many were cancelled on the way.
//! - **FIFO**: live waiters leave in booking order.
//! - the same for a two-dimension budget (requests and tokens, every cost touching both).
//! - **rolling window**: with a longer window beside the rate, no span of its period holds
//!   more than its quota, and live waiters still leave in booking order.
//! - nothing is left outstanding.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use reqwest_throttle::limiter::{Budget, Cost, Dimension, Limit, Nanos, RollingWindow};
use tokio::task::JoinHandle;
use tokio::time::{sleep, Instant};

const MS: Nanos = 1_000_000;

#[derive(Clone, Debug)]
enum Step {
    /// A new reservation after `gap_ms`, costing `cost` (requests, or tokens in two dimensions).
    Reserve { gap_ms: u64, cost: u64 },
    /// The holder of a live reservation gives up: `pick` chooses which, anywhere in the queue.
    Cancel { pick: usize },
    /// Time passes.
    Pause { ms: u64 },
    /// The rate changes to one unit per `interval_ms` with `burst`.
    SetRate { interval_ms: u64, burst: u64 },
}

/// A reservation that left.
#[derive(Clone, Copy, Debug)]
struct Left {
    at: Nanos,
    /// Booking order.
    order: usize,
    /// Units in each dimension (requests, tokens).
    units: [u64; 2],
    /// The rate phase it was booked in.
    phase: usize,
}

#[derive(Clone, Copy, Debug)]
struct Phase {
    interval: Nanos,
    burst: u64,
}

fn steps(max_cost: u64, with_set_rate: bool) -> impl Strategy<Value = Vec<Step>> {
    let set_rate_weight = if with_set_rate { 1 } else { 0 };
    let step = prop_oneof![
        6 => (0u64..=150, 1u64..=max_cost).prop_map(|(gap_ms, cost)| Step::Reserve { gap_ms, cost }),
        3 => any::<usize>().prop_map(|pick| Step::Cancel { pick }),
        2 => (0u64..=400).prop_map(|ms| Step::Pause { ms }),
        set_rate_weight => (25u64..=500, 1u64..=6)
            .prop_map(|(interval_ms, burst)| Step::SetRate { interval_ms, burst }),
    ];
    prop::collection::vec(step, 1..150)
}

fn limit(phase: Phase) -> Limit {
    Limit::new(Duration::from_nanos(phase.interval), phase.burst)
}

/// The cost of a reservation of `units`: requests only, or one request and `units` tokens.
fn cost_of(units: u64, two_dimensions: bool) -> Cost {
    if two_dimensions {
        Cost::requests(1).with(Dimension::Tokens, units)
    } else {
        Cost::requests(units)
    }
}

struct Run {
    left: Vec<Left>,
    phases: Vec<Phase>,
    outstanding_at_end: u64,
}

/// Plays `steps` against a budget of `requests` (and, with `tokens`, a token dimension; with
/// `window`, a longer window of requests), each reservation held by a task that waits for its
/// slot and leaves, and then lets every live waiter leave (or, with `horizon`, stops there).
fn play(
    steps: &[Step],
    requests: Phase,
    tokens: Option<Phase>,
    horizon: Option<Duration>,
    window: Option<RollingWindow>,
) -> Result<Run, TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    runtime.block_on(async {
        let budget = Budget::new();
        budget.set_limit(Dimension::Requests, Some(limit(requests)));
        if let Some(tokens) = tokens {
            budget.set_limit(Dimension::Tokens, Some(limit(tokens)));
        }
        if let Some(window) = window {
            budget.set_windows(Dimension::Requests, &[window]);
        }
        let epoch = Instant::now();
        let left = Arc::new(Mutex::new(Vec::new()));
        let mut phases = vec![requests];
        let mut live: Vec<JoinHandle<()>> = Vec::new();
        for (order, step) in steps.iter().enumerate() {
            match *step {
                Step::Reserve { gap_ms, cost } => {
                    sleep(Duration::from_millis(gap_ms)).await;
                    let cost = cost_of(cost, tokens.is_some());
                    let reservation = budget
                        .reserve(&cost, None)
                        .map_err(|b| TestCaseError::fail(format!("{b:?}")))?;
                    let left = Arc::clone(&left);
                    let phase = phases.len() - 1;
                    live.push(tokio::spawn(async move {
                        if reservation.wait(None).await.is_err() {
                            return;
                        }
                        let at = (Instant::now() - epoch).as_nanos() as Nanos;
                        let units = [cost.get(Dimension::Requests), cost.get(Dimension::Tokens)];
                        left.lock().unwrap_or_else(|p| p.into_inner()).push(Left {
                            at,
                            order,
                            units,
                            phase,
                        });
                        let _used = reservation.commit();
                    }));
                }
                Step::Cancel { pick } => {
                    live.retain(|task| !task.is_finished());
                    if !live.is_empty() {
                        let task = live.remove(pick % live.len());
                        task.abort();
                        // The abort drops the reservation once the task is polled again.
                        let _ = task.await;
                    }
                }
                Step::Pause { ms } => sleep(Duration::from_millis(ms)).await,
                Step::SetRate { interval_ms, burst } => {
                    if tokens.is_none() {
                        let phase = Phase {
                            interval: interval_ms * MS,
                            burst,
                        };
                        budget.set_limit(Dimension::Requests, Some(limit(phase)));
                        phases.push(phase);
                    }
                }
            }
        }
        if let Some(horizon) = horizon {
            tokio::time::sleep_until(epoch + horizon).await;
            for task in &live {
                task.abort();
            }
        }
        for task in live {
            let _ = task.await;
        }
        let left = left.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(Run {
            left,
            phases,
            outstanding_at_end: budget.outstanding(),
        })
    })
}

/// Checks every window `[s, s+W]` of `(instant, length, oversized)`:
/// `Σ length ≤ W + max(tolerance, largest oversized)`.
fn check_windows(mut left: Vec<(Nanos, u128, u128)>, tolerance: u128) -> Result<(), TestCaseError> {
    left.sort_by_key(|l| l.0);
    for i in 0..left.len() {
        let mut used = 0u128;
        let mut oversized = 0u128;
        for j in i..left.len() {
            used += left[j].1;
            oversized = oversized.max(left[j].2);
            let window = u128::from(left[j].0 - left[i].0);
            prop_assert!(
                used <= window + tolerance.max(oversized),
                "{} ns of units left in a window of {} ns (tolerance {} ns, oversized {} ns), from {} ns",
                used,
                window,
                tolerance,
                oversized,
                left[i].0
            );
        }
    }
    Ok(())
}

/// `(instant, units·T, oversized)` of each departure for one dimension under `phase`.
fn lengths(
    left: &[&Left],
    dimension: usize,
    phase: Phase,
    own: &[Phase],
) -> Vec<(Nanos, u128, u128)> {
    left.iter()
        .map(|l| {
            let interval = own.get(l.phase).map_or(phase.interval, |p| p.interval);
            let length = u128::from(l.units[dimension]) * u128::from(interval);
            let tolerance = u128::from(phase.burst) * u128::from(interval);
            (l.at, length, if length > tolerance { length } else { 0 })
        })
        .collect()
}

/// Checks that no span `[s, s + period)` holds more than `quota` requests that left.
fn check_rolling(left: &[Left], window: RollingWindow) -> Result<(), TestCaseError> {
    let period = window.period.as_nanos() as Nanos;
    let mut by_time = left.to_vec();
    by_time.sort_by_key(|l| l.at);
    for (i, first) in by_time.iter().enumerate() {
        let in_span: u64 = by_time[i..]
            .iter()
            .take_while(|l| l.at < first.at + period)
            .map(|l| l.units[0])
            .sum();
        prop_assert!(
            in_span <= window.quota,
            "{} requests left in the {} ns from {} ns (quota {})",
            in_span,
            period,
            first.at,
            window.quota
        );
    }
    Ok(())
}

fn check_fifo(left: &[Left]) -> Result<(), TestCaseError> {
    let mut by_order = left.to_vec();
    by_order.sort_by_key(|l| l.order);
    for pair in by_order.windows(2) {
        prop_assert!(
            pair[0].at <= pair[1].at,
            "booked {} left at {} ns, after booked {} at {} ns",
            pair[0].order,
            pair[0].at,
            pair[1].order,
            pair[1].at
        );
    }
    Ok(())
}

/// Whole milliseconds per unit: tokio's timers fire on millisecond ticks, so every slot is an
/// instant the clock can show exactly.
fn rate() -> impl Strategy<Value = Phase> {
    (25u64..=500, 1u64..=6).prop_map(|(interval_ms, burst)| Phase {
        interval: interval_ms * MS,
        burst,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn cancelling_anywhere_keeps_the_bound_and_the_order(
        phase in rate(),
        steps in steps(8, false),
    ) {
        let run = play(&steps, phase, None, None, None)?;
        prop_assert_eq!(run.outstanding_at_end, 0);
        let left: Vec<&Left> = run.left.iter().collect();
        check_windows(lengths(&left, 0, phase, &[]), u128::from(phase.burst) * u128::from(phase.interval))?;
        check_fifo(&run.left)?;
    }

    #[test]
    fn cancelling_anywhere_across_rate_changes_keeps_each_rate(
        phase in rate(),
        steps in steps(8, true),
    ) {
        let run = play(&steps, phase, None, None, None)?;
        prop_assert_eq!(run.outstanding_at_end, 0);
        check_fifo(&run.left)?;
        for (index, phase) in run.phases.iter().enumerate() {
            let own: Vec<&Left> = run.left.iter().filter(|l| l.phase == index).collect();
            check_windows(lengths(&own, 0, *phase, &[]), u128::from(phase.burst) * u128::from(phase.interval))?;
        }
        // Slowing down only: every window, mixing rates, within the largest tolerance.
        if run.phases.windows(2).all(|p| p[1].interval >= p[0].interval) {
            let widest = run.phases.iter().map(|p| u128::from(p.burst) * u128::from(p.interval)).max().unwrap_or(0);
            let all: Vec<&Left> = run.left.iter().collect();
            let mut lengths = lengths(&all, 0, phase, &run.phases);
            for l in &mut lengths {
                // Oversized relative to the rate it was booked under.
                l.2 = if l.1 > widest { l.1 } else { 0 };
            }
            check_windows(lengths, widest)?;
        }
    }

    #[test]
    fn cancelling_anywhere_in_two_dimensions_keeps_both_bounds_and_the_order(
        requests in rate(),
        tokens_interval_ms in 1u64..=25,
        tokens_burst in 10u64..=60,
        steps in steps(80, false),
    ) {
        let tokens = Phase { interval: tokens_interval_ms * MS, burst: tokens_burst };
        let run = play(&steps, requests, Some(tokens), None, None)?;
        prop_assert_eq!(run.outstanding_at_end, 0);
        let left: Vec<&Left> = run.left.iter().collect();
        check_windows(lengths(&left, 0, requests, &[]), u128::from(requests.burst) * u128::from(requests.interval))?;
        check_windows(lengths(&left, 1, tokens, &[]), u128::from(tokens.burst) * u128::from(tokens.interval))?;
        check_fifo(&run.left)?;
    }

    #[test]
    fn cancelling_anywhere_beside_a_window_keeps_its_quota_and_the_order(
        phase in rate(),
        quota in 3u64..=20,
        period_ms in 1_000u64..=5_000,
        steps in steps(2, false),
    ) {
        let window = RollingWindow::new(quota, Duration::from_millis(period_ms));
        let run = play(&steps, phase, None, None, Some(window))?;
        prop_assert_eq!(run.outstanding_at_end, 0);
        check_rolling(&run.left, window)?;
        check_fifo(&run.left)?;
        let left: Vec<&Left> = run.left.iter().collect();
        check_windows(lengths(&left, 0, phase, &[]), u128::from(phase.burst) * u128::from(phase.interval))?;
    }

    /// A backlog of patient waiters far beyond the horizon, and any interleaving of other
    /// reservations and cancellations anywhere in the queue: the rate is kept up.
    #[test]
    fn cancelling_anywhere_keeps_the_rate_while_demand_exceeds_supply(
        phase in rate(),
        extra in steps(4, false),
        two_dimensions in any::<bool>(),
    ) {
        let horizon = Duration::from_secs(10);
        let supply = horizon.as_nanos() as u64 / phase.interval;
        // A backlog first: cancellations may pick any task, so it outlasts all of them.
        let mut steps: Vec<Step> = (0..2 * supply + 200)
            .map(|_| Step::Reserve { gap_ms: 0, cost: 1 })
            .collect();
        let cancels = extra.iter().filter(|s| matches!(s, Step::Cancel { .. })).count() as u64;
        steps.extend(extra);
        let tokens = two_dimensions.then_some(Phase { interval: (phase.interval / 10).max(MS) / MS * MS, burst: phase.burst * 10 });
        let run = play(&steps, phase, tokens, Some(horizon), None)?;
        let units: u64 = run
            .left
            .iter()
            .filter(|l| l.at <= horizon.as_nanos() as u64)
            .map(|l| l.units[0])
            .sum();
        prop_assert!(
            u128::from(units) * 100 >= u128::from(supply) * 99,
            "{} requests left in {:?} at {} per {} ns ({} cancelled on the way)",
            units, horizon, 1, phase.interval, cancels
        );
    }
}
