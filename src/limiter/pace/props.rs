//! Property tests of the pace learner against a fake clock: no HTTP, no runtime.
//!
//! A small client model applies the learner's actions to a GCRA cell and a cooldown instant
//! (as a lane applies them to its budget) and sends as fast as they allow, one request at a
//! time, to a server model with its **own** rules (a fixed window that refuses with a
//! whole-second Retry-After, or one that announces `remaining` and `reset`).

use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;

use super::fixtures::plain;
use super::{Action, Actions, Answer, InFlight, Observation, PaceConfig, PaceLearner, Pause};
use crate::limiter::{Dimension, Gcra, Limit};
use crate::signals::{HeaderFamily, RateLimits, Window};

fn config(configured: Option<Limit>, cap: Duration) -> PaceConfig {
    let mut limits = [None; 4];
    limits[0] = configured;
    PaceConfig {
        configured: limits,
        max_wait: cap,
    }
}

fn requests_window(
    family: HeaderFamily,
    limit: Option<u64>,
    remaining: u64,
    reset_in: Duration,
) -> RateLimits {
    RateLimits {
        family,
        requests: Some(Window {
            limit,
            remaining: Some(remaining),
            reset_in: Some(reset_in),
        }),
        tokens: None,
        input_tokens: None,
        output_tokens: None,
        resource: None,
    }
}

/// The client side: a GCRA cell for requests and a cooldown, driven by the learner's actions.
struct Client {
    learner: PaceLearner,
    cell: Option<Gcra>,
    cooldown: Instant,
    epoch: Instant,
}

impl Client {
    fn new(config: PaceConfig, epoch: Instant) -> Client {
        Client {
            cell: config.configured[0].map(|l| Gcra::new(l.interval, l.burst)),
            learner: PaceLearner::new(config),
            cooldown: epoch,
            epoch,
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        at.duration_since(self.epoch).as_nanos() as u64
    }

    fn apply(&mut self, actions: Actions, now: Instant) {
        for action in actions.iter() {
            match action {
                Action::SetLimit {
                    dimension: Dimension::Requests,
                    limit,
                    ..
                } => {
                    let now = now.duration_since(self.epoch).as_nanos() as u64;
                    match (limit, self.cell.as_mut()) {
                        (None, _) => self.cell = None,
                        (Some(l), Some(cell)) => cell.set_rate(l.interval, l.burst, now),
                        (Some(l), None) => self.cell = Some(Gcra::new(l.interval, l.burst)),
                    }
                }
                Action::CoolDown { until, .. } => self.cooldown = self.cooldown.max(until),
                _ => {}
            }
        }
    }

    /// The next departure at or after `now`, booked.
    fn depart(&mut self, mut now: Instant) -> Instant {
        loop {
            let actions = self.learner.tick(now);
            self.apply(actions, now);
            let at = now.max(self.cooldown);
            let ready = self.cell.as_ref().map_or(at, |cell| {
                self.epoch + Duration::from_nanos(cell.ready_at(1, self.nanos(at)))
            });
            let at = at.max(ready);
            // Something learned meanwhile (a window reset) may change the answer: look again.
            if self.learner.next_due().is_some_and(|due| due <= at) && at > now {
                now = at;
                continue;
            }
            let nanos = self.nanos(at);
            if let Some(cell) = self.cell.as_mut() {
                cell.reserve_at(1, nanos, nanos);
            }
            return at;
        }
    }

    fn observe(&mut self, observation: Observation<'_>) {
        let actions = self.learner.observe(&observation);
        self.apply(actions, observation.now);
    }
}

/// A fixed window of `limit` per `per`, opened by the first request after the previous one
/// ended; refuses with `Retry-After` in whole seconds, rounded up. Announces nothing else.
struct FixedWindow {
    limit: u64,
    per: Duration,
    opened: Option<Instant>,
    used: u64,
}

impl FixedWindow {
    /// `None` when accepted, the Retry-After when refused.
    fn arrive(&mut self, at: Instant) -> Option<Duration> {
        if self.opened.is_none_or(|opened| at >= opened + self.per) {
            self.opened = Some(at);
            self.used = 0;
        }
        if self.used < self.limit {
            self.used += 1;
            return None;
        }
        let left = (self.opened.unwrap() + self.per).duration_since(at);
        Some(Duration::from_secs(
            left.as_nanos().div_ceil(1_000_000_000) as u64
        ))
    }
}

/// Runs the client against the window from `start` for `run`; returns when it stopped.
fn drive(client: &mut Client, server: &mut FixedWindow, start: Instant, run: Duration) -> Instant {
    let latency = Duration::from_millis(5);
    let mut now = start;
    while now < start + run {
        let departed = client.depart(now);
        let answered = departed + latency;
        let refused = server.arrive(departed);
        let answer = if refused.is_some() {
            Answer::RateLimited
        } else {
            Answer::Accepted
        };
        client.observe(Observation {
            departed,
            booked: departed,
            pause: refused.map(|delay| Pause {
                dimension: None,
                delay,
            }),
            ..plain(answered, answer)
        });
        now = answered;
    }
    now
}

/// A leaky bucket without burst, nginx `limit_req`'s way: a request is accepted when at least
/// `interval` has passed since the last accepted one; every refusal says `Retry-After: 1`.
struct LeakyBucket {
    interval: Duration,
    last_accepted: Option<Instant>,
}

impl LeakyBucket {
    /// `None` when accepted, the Retry-After when refused.
    fn arrive(&mut self, at: Instant) -> Option<Duration> {
        if self
            .last_accepted
            .is_some_and(|last| at < last + self.interval)
        {
            return Some(Duration::from_secs(1));
        }
        self.last_accepted = Some(at);
        None
    }
}

fn learned_rate(learner: &PaceLearner) -> f64 {
    learner
        .limit(Dimension::Requests)
        .map_or(f64::INFINITY, |l| 1.0 / l.interval.as_secs_f64())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// After refusals the learned rate is within 10 % of the server's true rate, and it is
    /// again after an idle period (the lane learns afresh, as fast as a new one).
    #[test]
    fn refusals_teach_the_true_rate_and_it_recovers_after_idle(
        limit in 5u64..=60,
        per_secs in prop::sample::select(vec![1u64, 2, 5]),
        idle_secs in 10u64..=120,
    ) {
        let per = Duration::from_secs(per_secs);
        let truth = limit as f64 / per.as_secs_f64();
        let epoch = Instant::now();
        let mut client = Client::new(config(None, Duration::from_secs(120)), epoch);
        let mut server = FixedWindow { limit, per, opened: None, used: 0 };
        let run = per * 20;
        let end = drive(&mut client, &mut server, epoch, run);
        let rate = learned_rate(&client.learner);
        prop_assert!((rate - truth).abs() <= truth * 0.1, "learned {rate:.2}/s, true {truth:.2}/s");

        let restart = end + Duration::from_secs(idle_secs);
        drive(&mut client, &mut server, restart, run);
        let rate = learned_rate(&client.learner);
        prop_assert!((rate - truth).abs() <= truth * 0.1, "after idle: learned {rate:.2}/s, true {truth:.2}/s");
    }

    /// Against a leaky bucket answering `Retry-After: 1`, a refusal costs a whole second: the
    /// learner converges to at least 95 % of the bucket's rate, never above it, and is refused
    /// at most three times in 500 requests.
    #[test]
    fn a_leaky_bucket_saying_retry_after_one_second_is_refused_rarely(
        // One request at a time with this latency can send 200/s: always above the rate.
        rate in 10u64..=80,
        latency_ms in 1u64..=5,
    ) {
        let interval = Duration::from_secs(1) / u32::try_from(rate).unwrap();
        let latency = Duration::from_millis(latency_ms);
        let epoch = Instant::now();
        let mut client = Client::new(config(None, Duration::from_secs(120)), epoch);
        let mut server = LeakyBucket { interval, last_accepted: None };
        let mut now = epoch;
        let mut refused = 0;
        for _ in 0..500 {
            let departed = client.depart(now);
            let refusal = server.arrive(departed);
            refused += usize::from(refusal.is_some());
            let answer = if refusal.is_some() { Answer::RateLimited } else { Answer::Accepted };
            client.observe(Observation {
                departed,
                booked: departed,
                pause: refusal.map(|delay| Pause { dimension: None, delay }),
                ..plain(departed + latency, answer)
            });
            now = departed + latency;
        }
        let learned = learned_rate(&client.learner);
        let truth = rate as f64;
        prop_assert!(refused <= 3, "{refused} refused; learned {learned:.2}/s of {truth}/s");
        prop_assert!(learned >= truth * 0.95 && learned <= truth, "learned {learned:.2}/s of {truth}/s");
    }

    /// The same bucket reached through a network that delays each arrival by up to a twentieth
    /// of the bucket's interval: two requests that left an interval apart may arrive closer, and
    /// a pace within a hair of the rate is refused now and then, soon after it resumed. That
    /// is no fixed window: taken for one, the quota was what the bucket accepted since the
    /// pause, a third of its rate, for good. The learner settles at 80 % of the rate or more,
    /// refused at most six times in 500 requests.
    #[test]
    fn a_leaky_bucket_refusing_an_arrival_that_came_early_is_not_taken_for_a_window(
        rate in 20u64..=80,
        seed in any::<u64>(),
    ) {
        let interval = Duration::from_secs(1) / u32::try_from(rate).unwrap();
        let latency = Duration::from_millis(1);
        let epoch = Instant::now();
        let mut client = Client::new(config(None, Duration::from_secs(120)), epoch);
        let mut server = LeakyBucket { interval, last_accepted: None };
        let mut jitter = seed | 1;
        let mut now = epoch;
        let mut refused = 0;
        for _ in 0..500 {
            let departed = client.depart(now);
            // xorshift: up to a twentieth of the interval on the way in.
            jitter ^= jitter << 13;
            jitter ^= jitter >> 7;
            jitter ^= jitter << 17;
            let delayed = interval / 20 * u32::try_from(jitter % 1_000).unwrap() / 1_000;
            let refusal = server.arrive(departed + delayed);
            refused += usize::from(refusal.is_some());
            let answer = if refusal.is_some() { Answer::RateLimited } else { Answer::Accepted };
            client.observe(Observation {
                departed,
                booked: departed,
                pause: refusal.map(|delay| Pause { dimension: None, delay }),
                ..plain(departed + latency + delayed, answer)
            });
            now = departed + latency + delayed;
        }
        let learned = learned_rate(&client.learner);
        let truth = rate as f64;
        prop_assert!(refused <= 6, "{refused} refused; learned {learned:.2}/s of {truth}/s");
        prop_assert!(learned >= truth * 0.8, "learned {learned:.2}/s of {truth}/s");
    }

    /// Against a server that announces its window (`remaining`, `reset`), a client told
    /// nothing never sends more than the quota in a window once it has heard the server.
    #[test]
    fn an_announced_quota_is_never_exceeded_within_its_window(
        limit in 2u64..=100,
        per_ms in 200u64..=5_000,
        latency_ms in 1u64..=20,
    ) {
        let per = Duration::from_millis(per_ms);
        let latency = Duration::from_millis(latency_ms);
        let epoch = Instant::now();
        let mut client = Client::new(config(None, Duration::from_secs(120)), epoch);
        let mut server = FixedWindow { limit, per, opened: None, used: 0 };
        let mut now = epoch;
        let mut refused_after_first_answer = 0;
        while now < epoch + per * 10 {
            let departed = client.depart(now);
            let refused = server.arrive(departed);
            if refused.is_some() && departed > epoch {
                refused_after_first_answer += 1;
            }
            let opened = server.opened.unwrap();
            let reset_in = (opened + per).saturating_duration_since(departed);
            // A window's announcement (IETF): `reset` is the window's end.
            let limits = requests_window(
                HeaderFamily::Ietf,
                Some(limit),
                limit - server.used.min(limit),
                reset_in,
            );
            client.observe(Observation {
                now: departed + latency,
                departed,
                booked: departed,
                answer: if refused.is_some() { Answer::RateLimited } else { Answer::Accepted },
                pause: None,
                limits: Some(&limits),
                answered: [1, 0, 0, 0],
                estimated: [0; 4],
                seq: 0,
                in_flight: InFlight { requests: 1, units: [1, 0, 0, 0] },
            });
            now = departed + latency;
        }
        prop_assert_eq!(refused_after_first_answer, 0);
    }

    /// Whatever the server says, the learner never paces faster than the configured rate, and
    /// no wait it derives from a server value (a cooldown, a pace's interval) exceeds the cap.
    #[test]
    fn never_faster_than_configured_and_every_wait_within_the_cap(
        configured_ms in prop::option::of(1u64..=2_000),
        cap_ms in 1u64..=30_000,
        family_bucket in any::<bool>(),
        steps in prop::collection::vec(
            (
                0u8..4,                                          // answer
                prop::option::of(0u64..=u64::MAX / 2),           // retry-after (ms)
                prop::option::of(0u64..=1_000_000),              // limit
                0u64..=1_000_000,                                // remaining
                prop::option::of(0u64..=u64::MAX / 2),           // reset (ms)
                0u64..=64,                                       // in flight
                0u64..=10_000,                                   // time step (ms)
            ),
            1..40,
        ),
    ) {
        let cap = Duration::from_millis(cap_ms);
        let configured = configured_ms.map(|ms| Limit { interval: Duration::from_millis(ms), burst: 1 });
        let mut learner = PaceLearner::new(config(configured, cap));
        let epoch = Instant::now();
        let mut now = epoch;
        for (answer, retry_after, limit, remaining, reset, in_flight, step) in steps {
            now += Duration::from_millis(step);
            let answer = [Answer::Accepted, Answer::RateLimited, Answer::Unavailable, Answer::Other][answer as usize];
            let family = if family_bucket { HeaderFamily::OpenAi } else { HeaderFamily::Ietf };
            let limits = reset.map(|ms| requests_window(family, limit, remaining, Duration::from_millis(ms)));
            let mut actions = learner.tick(now).iter().collect::<Vec<_>>();
            actions.extend(learner.observe(&Observation {
                now,
                departed: now,
                booked: now,
                answer,
                pause: retry_after
                    .filter(|_| matches!(answer, Answer::RateLimited | Answer::Unavailable))
                    .map(|ms| Pause { dimension: None, delay: Duration::from_millis(ms) }),
                limits: limits.as_ref(),
                answered: [1, 0, 0, 0],
                estimated: [0; 4],
                seq: 0,
                in_flight: InFlight { requests: in_flight.max(1), units: [in_flight.max(1), 0, 0, 0] },
            }).iter());
            for action in actions {
                match action {
                    Action::SetLimit { dimension: Dimension::Requests, limit: Some(set), .. } => {
                        if let Some(configured) = configured {
                            prop_assert!(set.interval >= configured.interval, "{set:?} faster than {configured:?}");
                        }
                        let bound = configured.map_or(cap, |c| c.interval.max(cap));
                        prop_assert!(set.interval <= bound, "{set:?}: interval above the cap {cap:?}");
                    }
                    Action::CoolDown { until, .. } => {
                        prop_assert!(until <= now + cap, "cooldown {:?} past the cap {cap:?}", until - now);
                    }
                    _ => {}
                }
            }
        }
    }
}
