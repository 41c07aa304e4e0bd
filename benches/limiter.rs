//! Uncontended cost of one reservation, beside governor's `check()` in the same run.
//!
//! - `gcra_reserve`: the bare [`Gcra`] cell, time read from `std::time::Instant`, as governor
//!   reads its own clock on every check.
//! - `budget_reserve_settle`: what the middleware does per request: [`Budget::reserve`] (reads
//!   tokio's clock, takes the budget's lock) and [`Reservation::settle`].
//! - `governor_check`: `RateLimiter::direct(..).check()`.
//! - `gcra_reserve_fake_clock`, `std_instant_elapsed`, `tokio_instant_now`: the cell without a
//!   clock and the clocks alone, to tell the algorithm's cost from the clock's.
//!
//! "admitted": a rate so high that nothing ever waits. "refused": a rate of one per hour, spent,
//! so every call is refused (the fast-fail path of `max_wait`).

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use governor::{Quota, RateLimiter};
use reqwest_throttle::limiter::{Booking, Budget, Cost, Dimension, Gcra, Limit};

fn admitted(c: &mut Criterion) {
    let mut group = c.benchmark_group("limiter/admitted");

    // One unit per nanosecond with a burst of a second's worth: a call takes longer than the
    // emission interval, so the cell is never behind.
    let epoch = Instant::now();
    let mut cell = Gcra::new(Duration::from_nanos(1), 1_000_000_000);
    group.bench_function("gcra_reserve", |b| {
        b.iter(|| {
            let now = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
            black_box(cell.reserve(black_box(1), now))
        })
    });

    // The same cell with a clock that costs nothing, and the clock alone: where the time goes.
    let mut cell = Gcra::new(Duration::from_nanos(1), 1_000_000_000);
    let mut fake_now = 0u64;
    group.bench_function("gcra_reserve_fake_clock", |b| {
        b.iter(|| {
            fake_now += 20;
            black_box(cell.reserve(black_box(1), black_box(fake_now)))
        })
    });
    group.bench_function("std_instant_elapsed", |b| {
        b.iter(|| black_box(epoch.elapsed()))
    });
    group.bench_function("tokio_instant_now", |b| {
        b.iter(|| black_box(tokio::time::Instant::now()))
    });

    let budget = Budget::new();
    budget.set_limit(
        Dimension::Requests,
        Some(Limit::new(Duration::from_nanos(1), 1_000_000_000)),
    );
    let cost = Cost::requests(1);
    group.bench_function("budget_reserve_settle", |b| {
        b.iter(
            || match budget.reserve(black_box(&cost), Some(Duration::ZERO)) {
                Ok(reservation) => reservation.settle(None),
                Err(blocked) => panic!("the benchmark rate must never refuse: {blocked:?}"),
            },
        )
    });

    // The middleware's path: one clock read, one lock, the units used at once.
    group.bench_function("budget_acquire", |b| {
        b.iter(|| {
            match budget.acquire(
                black_box(&cost),
                Some(Duration::ZERO),
                tokio::time::Instant::now(),
            ) {
                Ok(Booking::Ready(commitment)) => black_box(commitment),
                other => panic!("the benchmark rate must never make a request wait: {other:?}"),
            }
        })
    });

    // The same rate as the cells above: one per nanosecond, a second's worth of burst.
    let governor = RateLimiter::direct(Quota::per_second(
        NonZeroU32::new(1_000_000_000).unwrap_or(NonZeroU32::MAX),
    ));
    group.bench_function("governor_check", |b| {
        b.iter(|| {
            if governor.check().is_err() {
                panic!("the benchmark quota must never refuse");
            }
        })
    });
    group.finish();
}

fn refused(c: &mut Criterion) {
    let mut group = c.benchmark_group("limiter/refused");

    let budget = Budget::new();
    budget.set_limit(
        Dimension::Requests,
        Some(Limit::new(Duration::from_secs(3_600), 1)),
    );
    let cost = Cost::requests(1);
    budget
        .reserve(&cost, None)
        .map(|first| first.settle(None))
        .ok();
    group.bench_function("budget_reserve", |b| {
        b.iter(|| {
            black_box(
                budget
                    .reserve(black_box(&cost), Some(Duration::ZERO))
                    .is_err(),
            )
        })
    });

    let governor = RateLimiter::direct(Quota::per_hour(NonZeroU32::MIN));
    let _ = governor.check();
    group.bench_function("governor_check", |b| {
        b.iter(|| black_box(governor.check().is_err()))
    });
    group.finish();
}

criterion_group!(benches, admitted, refused);
criterion_main!(benches);
