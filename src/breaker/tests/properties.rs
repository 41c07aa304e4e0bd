//! Properties of the breaker's state machine under random sequences of calls and time.

use proptest::prelude::*;

use super::*;

#[derive(Clone, Debug)]
enum Op {
    Admit,
    Record(usize, Outcome),
    Drop(usize),
    Advance(u64),
    ForceOpen,
    ForceClosed,
    Reset,
}

fn op() -> impl Strategy<Value = Op> {
    let outcome = prop_oneof![
        Just(Outcome::Success),
        Just(Outcome::Failure),
        Just(Outcome::Ignored)
    ];
    prop_oneof![
        6 => Just(Op::Admit),
        6 => (any::<usize>(), outcome).prop_map(|(i, o)| Op::Record(i, o)),
        2 => any::<usize>().prop_map(Op::Drop),
        3 => (0u64..3_000).prop_map(Op::Advance),
        1 => Just(Op::ForceOpen),
        1 => Just(Op::ForceClosed),
        1 => Just(Op::Reset),
    ]
}

fn config() -> impl Strategy<Value = BreakerConfig> {
    (
        1u32..5,
        1u32..4,
        1u32..4,
        100u64..2_000,
        0.0..0.5f64,
        proptest::option::of((0.2..1.0f64, 1u32..8)),
        proptest::option::of(500u64..5_000),
    )
        .prop_map(
            |(consecutive, probes, to_close, base, jitter, rate, probe_timeout)| {
                let base = ms(base);
                let mut config = BreakerConfig::default()
                    .consecutive_failures(consecutive)
                    .half_open_probes(probes)
                    .successes_to_close(to_close)
                    .open_for(base, base * 4)
                    .jitter(jitter)
                    .healthy_after(secs(5));
                if let Some((threshold, window)) = rate {
                    config = config.failure_rate(threshold, FailureWindow::Count(window), 1);
                }
                match probe_timeout {
                    Some(timeout) => config.probe_timeout(ms(timeout)),
                    None => config.without_probe_timeout(),
                }
            },
        )
}

proptest! {
    #[test]
    fn probes_are_bounded_and_force_closed_never_opens(
        config in config(),
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        prop_assert_eq!(config.validate(), Ok(()));
        let limit = config.probe_limit() as usize;
        let breaker = Breaker::new(config);
        let mut now = Instant::now();
        let mut held: Vec<Admission> = Vec::new();
        let mut force_closed = false;
        for op in ops {
            match op {
                Op::Admit => match breaker.admit(now) {
                    Ok(admission) => held.push(admission),
                    Err(rejection) => {
                        prop_assert!(!force_closed, "rejected while forced closed: {}", rejection);
                    }
                },
                Op::Record(i, outcome) => {
                    if !held.is_empty() {
                        let admission = held.swap_remove(i % held.len());
                        breaker.record(admission, outcome, now);
                    }
                }
                Op::Drop(i) => {
                    if !held.is_empty() {
                        drop(held.swap_remove(i % held.len()));
                    }
                }
                Op::Advance(millis) => now += ms(millis),
                Op::ForceOpen => {
                    breaker.force_open(now);
                    force_closed = false;
                }
                Op::ForceClosed => {
                    breaker.force_closed();
                    force_closed = true;
                }
                Op::Reset => {
                    breaker.reset();
                    force_closed = false;
                }
            }
            let inner = breaker.shared.lock();
            let live_probes = held
                .iter()
                .filter(|a| a.is_probe() && a.generation == inner.generation)
                .count();
            prop_assert!(live_probes <= limit, "{} probes in flight, limit {}", live_probes, limit);
            prop_assert_eq!(inner.probes.len(), live_probes);
            drop(inner);
            if force_closed {
                prop_assert_eq!(breaker.state_at(now), BreakerState::Closed);
                prop_assert_eq!(breaker.snapshot(now).state, BreakerState::Closed);
            }
        }
    }
}
