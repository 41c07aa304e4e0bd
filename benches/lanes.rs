//! Lane lookup plus one reservation over 100 hosts, beside governor's keyed limiter in the same
//! run.
//!
//! - `throttle_lane_reserve`: `Throttle::__bench_lane_reserve`, the middleware's own path: find
//!   (or create) the lane by key in the registry, reserve one request in its budget, settle.
//! - `governor_check_key`: `RateLimiter::keyed(..).check_key(&key)`.
//!
//! Both cycle over the same 100 precomputed keys, with a rate so high that nothing is refused.

use std::hint::black_box;
use std::num::NonZeroU32;

use criterion::{criterion_group, criterion_main, Criterion};
use governor::{Quota, RateLimiter};
use reqwest_throttle::{Policy, Rate, Throttle};

const HOSTS: usize = 100;

fn keys() -> Vec<String> {
    (0..HOSTS)
        .map(|i| format!("https://host-{i}.example.com:443"))
        .collect()
}

fn lanes(c: &mut Criterion) {
    let keys = keys();
    let mut group = c.benchmark_group("lanes/100_hosts");

    let throttle = match Throttle::builder()
        .default_policy(Policy::new().rate(Rate::per_second(1_000_000_000).burst(1_000_000)))
        .build()
    {
        Ok(throttle) => throttle,
        Err(error) => panic!("benchmark policy: {error}"),
    };
    let mut i = 0;
    group.bench_function("throttle_lane_reserve", |b| {
        b.iter(|| {
            i = (i + 1) % HOSTS;
            assert!(throttle.__bench_lane_reserve(black_box(&keys[i])));
        })
    });

    let governor = RateLimiter::keyed(Quota::per_second(
        NonZeroU32::new(1_000_000_000).unwrap_or(NonZeroU32::MAX),
    ));
    let mut i = 0;
    group.bench_function("governor_check_key", |b| {
        b.iter(|| {
            i = (i + 1) % HOSTS;
            assert!(governor.check_key(black_box(&keys[i])).is_ok());
        })
    });
    group.finish();
}

criterion_group!(benches, lanes);
criterion_main!(benches);
