//! Buckets from headers: what a bucket family's announcements (OpenAI, Anthropic: `reset` is
//! the time until the bucket is full again) tell about each dimension's limit, and how the
//! budget is kept in step with the announced `remaining`.
//!
//! A bucket of limit L announcing `remaining` R and reset T refills L − R units in T, whatever
//! its period: the lane takes L as the burst and the refill rate from [`Refill`], for requests
//! and tokens alike. The budget is synced to R both ways (an over-estimate is given back),
//! less what is still in flight and so not yet counted by the server. That sync applies to
//! every family's token dimensions, windows' included.
//!
//! A learned token limit is *strict* (a cost above it is refused before it is sent) only while
//! its announcement is fresh; it is replaced as soon as the server announces another one, and
//! forgotten when no answer re-announces it within a minute.
//!
//! A requests limit announced without any reset (an LLM proxy's OpenAI-shaped headers) says
//! nothing of when it comes back: it is read as the per-minute limit OpenAI documents and
//! spread evenly, one at a time, which no minute of the server's can exceed; its `remaining`
//! may take units from the budget but never gives any back.
//!
//! Every answer's `remaining` of a token dimension also goes to the `charged` reader, which
//! tells what the server charged each request (see that module).
//!
//! # A bucket, or a fixed window in a bucket's headers?
//!
//! Some gateways speak the same headers over fixed, clock-aligned windows (an RPM counted per
//! calendar minute), where `reset` is the window's end and nothing comes back before it. Read
//! as a bucket, such a window looks like a refill of (L − R) / T, which grows as the window
//! runs out: near its end the lane believes the bucket refills fast and is refused. The two
//! shapes differ in one observable way. Take two announcements of the same dimension in which
//! `remaining` went down (something was spent), answered Δt apart:
//!
//! - a bucket is full at `now + reset`; spending c units moves that instant later by c / rate,
//!   and `remaining` can only go down if more was spent than refilled (c > rate · Δt), so the
//!   instant moved later by more than Δt;
//! - a fixed window ends at the same instant whatever is spent: it moved by nothing (up to the
//!   announcements' rounding and the answers' differing latencies).
//!
//! So `remaining` down and the announced end moved by less than half of Δt is a window; moved
//! by about Δt or more is a bucket ([`ShapeReader`]). The answers' latencies cancel out of the
//! bucket's bound (the end is measured from each answer's arrival, and so is Δt), so no latency
//! makes a bucket look like a window. Announcements rounded to whole seconds (or milliseconds)
//! are compared only once Δt is at least twice the rounding. A window is paced at its limit
//! over its length, and the budget told that nothing refills before its end.
//!
//! # Guarantees
//!
//! - Never faster or burstier than configured, and a token bucket is read as refilling at
//!   least once per cap (or per minute, if longer).
//! - Only an answer newer than every answer synced before may give units back.

use std::time::Duration;

use tokio::time::Instant;

use super::charged::{ChargeReader, Reading};
use super::pacing::Pacing;
use super::protocol::{slot, Action, Actions, Answer, Observation};
use super::window::fixed_window_pace;
use crate::limiter::{Dimension, Limit};
use crate::signals::{HeaderFamily, RateLimits, Window};
use crate::time::later;

/// How long a learned token limit lasts without being announced again (OpenAI's and
/// Anthropic's documented period), and the slowest refill a token bucket is read at.
const TOKEN_WINDOW: Duration = Duration::from_secs(60);

/// A learned token limit is strict at least this long after its announcement.
const MIN_FRESH: Duration = Duration::from_secs(1);

/// Whether a header family announces token buckets: `reset` is the time until the bucket is
/// full again (OpenAI's `x-ratelimit-reset-*`, Anthropic's `*-reset`), not a window's end.
pub(super) fn is_bucket(family: HeaderFamily) -> bool {
    matches!(family, HeaderFamily::OpenAi | HeaderFamily::Anthropic)
}

/// A learned limit slowed no further than the cap allows: a request waits at most the cap for
/// its slot, and a token bucket refills at least once per cap (or per minute, if longer).
fn capped(cap: Duration, dimension: Dimension, learned: Limit) -> Limit {
    let longest = if dimension == Dimension::Requests {
        cap
    } else {
        cap.max(TOKEN_WINDOW) / u32::try_from(learned.burst).unwrap_or(u32::MAX).max(1)
    };
    Limit {
        interval: learned.interval.min(longest.max(Duration::from_nanos(1))),
        ..learned
    }
}

/// The pace of a requests limit announced without a reset (an LLM proxy's OpenAI-shaped
/// headers): OpenAI documents these limits per minute, and nothing tells when the server's
/// minute turns. One at a time, spread evenly over a minute, the lane never sends more than the
/// limit in any minute, wherever the server's minutes begin.
fn unannounced_reset_pace(limit: u64) -> Option<Limit> {
    fixed_window_pace(limit, TOKEN_WINDOW).map(|pace| Limit { burst: 1, ..pace })
}

/// A limit learned from an announcement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LearnedLimit {
    /// What the server announced (units per window).
    announced: u64,
    /// Whether a cost above it is still refused before it is sent.
    strict: bool,
    /// Strict until then; merely pacing after.
    fresh_until: Instant,
    /// Forgotten then, unless announced again.
    expires: Instant,
}

/// What each dimension's announcements taught (see the [module documentation](self)).
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Buckets {
    /// The limit each dimension learned from its last announcement.
    learned: [Option<LearnedLimit>; Dimension::ALL.len()],
    /// What each dimension's bucket announcements tell about its refill rate.
    refills: [Refill; Dimension::ALL.len()],
    /// Whether each dimension's announcements describe a bucket or a fixed window.
    shapes: [ShapeReader; Dimension::ALL.len()],
    /// Departure of the newest answered attempt synced, per dimension.
    synced: [Option<Instant>; Dimension::ALL.len()],
    /// What the server charged each request, read from successive `remaining`.
    charges: ChargeReader,
}

impl Buckets {
    /// Keeps each budget in step with what the server announces: for a bucket family the
    /// limit of every dimension is learned as [`Refill`] says; for any family, token
    /// dimensions with a limit are synced to the announced `remaining`, less what is still in
    /// flight (the server may not have seen it yet).
    pub(super) fn sync(
        &mut self,
        limits: &RateLimits,
        observation: &Observation<'_>,
        pacing: &mut Pacing,
        actions: &mut Actions,
    ) {
        let bucket = is_bucket(limits.family);
        let windows = [
            (Dimension::Requests, limits.requests.filter(|_| bucket)),
            (Dimension::Tokens, limits.tokens),
            (Dimension::InputTokens, limits.input_tokens),
            (Dimension::OutputTokens, limits.output_tokens),
        ];
        let now = observation.now;
        let cap = pacing.config().max_wait;
        for (dimension, window) in windows {
            let Some(window) = window else {
                continue;
            };
            // What the server has not seen yet: attempts still in flight besides this one.
            let unseen = observation.in_flight.units[slot(dimension)]
                .saturating_sub(observation.answered[slot(dimension)]);
            let remaining = window.remaining.map(|r| r.saturating_sub(unseen));
            let shape = match (window.remaining, window.reset_in) {
                (Some(remaining), Some(reset_in)) if bucket => {
                    self.shapes[slot(dimension)].observe(now, remaining, reset_in)
                }
                _ => None,
            };
            // A fixed window spoken in a bucket's headers: `remaining` until its end, nothing
            // refilled before.
            let window_end = window
                .reset_in
                .filter(|_| shape == Some(Shape::FixedWindow))
                .map(|reset_in| later(now, reset_in.min(cap)));
            if let Some(announced) = window.limit.filter(|_| bucket) {
                let current = pacing.limit(dimension);
                let refill = match self.shapes[slot(dimension)].window_length() {
                    Some(length) if window_end.is_some() => fixed_window_pace(announced, length),
                    _ if window.reset_in.is_none() && dimension == Dimension::Requests => {
                        unannounced_reset_pace(announced)
                    }
                    _ => self.refills[slot(dimension)].observe(window, announced, current),
                };
                if let Some(learned) = refill {
                    let learned = capped(cap, dimension, learned);
                    let effective = pacing.config().never_faster(dimension, learned);
                    let known = self.learned[slot(dimension)];
                    let replaced = known.is_some_and(|known| known.announced != announced);
                    let fresh_for = window
                        .reset_in
                        .unwrap_or(MIN_FRESH)
                        .clamp(MIN_FRESH, TOKEN_WINDOW);
                    // A request costs one unit: only token dimensions refuse a cost too large.
                    let strict = dimension != Dimension::Requests;
                    self.learned[slot(dimension)] = Some(LearnedLimit {
                        announced,
                        strict,
                        fresh_until: later(now, fresh_for),
                        expires: later(now, TOKEN_WINDOW),
                    });
                    let was_strict = known.is_some_and(|known| known.strict);
                    // Spread one at a time, the pace counts from the request that taught it
                    // (it has left): the cell starts spent, not full.
                    let spread = window.reset_in.is_none() && known.is_none();
                    if current != Some(effective) || replaced || was_strict != strict {
                        pacing.announce(dimension, effective, strict, replaced || spread, actions);
                    }
                }
            }
            if let (Some(level), true) = (window.remaining, dimension != Dimension::Requests) {
                // The server's own rate, as announced; else the pace it is held to.
                let per_second = self.refills[slot(dimension)].per_second().or_else(|| {
                    pacing
                        .limit(dimension)
                        .map(|limit| 1.0 / limit.interval.as_secs_f64())
                });
                let reading = Reading {
                    seq: observation.seq,
                    departed: observation.departed,
                    remaining: level,
                    limit: window.limit,
                    estimated: observation.estimated[slot(dimension)],
                    admitted: observation.answer == Answer::Accepted,
                    window_end,
                };
                self.charges.read(dimension, reading, per_second, actions);
                let refusal = observation
                    .pause
                    .filter(|pause| pause.dimension == Some(dimension));
                if let (Answer::RateLimited, Some(pause)) = (observation.answer, refusal) {
                    self.charges
                        .refused(dimension, &reading, pause.delay, per_second, actions);
                }
            }
            if pacing.limit(dimension).is_none() {
                continue;
            }
            if let Some(remaining) = remaining {
                if window_end.is_some_and(|end| end <= now) {
                    // Its window has ended: what it says of it is past.
                    continue;
                }
                let newest = self.synced[slot(dimension)]
                    .is_none_or(|synced| observation.departed >= synced);
                if newest {
                    self.synced[slot(dimension)] = Some(observation.departed);
                }
                actions.push(Action::Sync {
                    dimension,
                    remaining,
                    // Without a reset, `remaining` is no bucket's level (nothing says when it
                    // refills): it may take units the lane believed it had, never give any back.
                    credit: newest && window.reset_in.is_some(),
                    refills_from: window_end,
                });
            }
        }
    }

    /// What time alone changes: an announcement no longer fresh is no longer strict, and one
    /// no longer current is forgotten (the configured limit applies again).
    pub(super) fn tick(&mut self, now: Instant, pacing: &mut Pacing, actions: &mut Actions) {
        for dimension in Dimension::ALL {
            let Some(learned) = self.learned[slot(dimension)] else {
                continue;
            };
            let configured = pacing.config().configured(dimension);
            if now >= learned.expires {
                self.learned[slot(dimension)] = None;
                pacing.set(dimension, configured, configured.is_some(), false, actions);
            } else if learned.strict && now >= learned.fresh_until {
                self.learned[slot(dimension)] = Some(LearnedLimit {
                    strict: false,
                    ..learned
                });
                if configured.is_none() {
                    // Still paced, no longer strict: a cost above an old announcement is sent,
                    // so the server can say whether its limit changed.
                    actions.push(Action::SetLimit {
                        dimension,
                        limit: pacing.limit(dimension),
                        strict: false,
                        fresh: false,
                    });
                }
            }
        }
    }

    /// The next instant at which [`tick`](Self::tick) has something to do, if any.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.learned
            .iter()
            .flatten()
            .map(|learned| {
                if learned.strict {
                    learned.fresh_until.min(learned.expires)
                } else {
                    learned.expires
                }
            })
            .min()
    }
}

/// What a bucket's announcements tell about its refill rate.
///
/// A bucket of `limit` L announces `remaining` R and the time T until it is full again, so it
/// refills L − R units in T, whatever its period: a minute, a second or 50 ms. But R is the
/// bucket's level rounded *down* (the level is fractional between refills), so L − R overstates
/// what is missing by up to one unit: one announcement only bounds the rate between
/// (L − R − 1) / T and (L − R) / T. With a small bucket (10 requests) that range is wide enough
/// to be refused again and again at its upper end, so the bounds of successive announcements
/// are intersected: each narrows them, and the lane refills at their middle. Bounds that stop
/// overlapping mean the server changed its rate: the newest announcement starts them anew.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Refill {
    /// The limit the bounds were learned for.
    limit: u64,
    /// Units per second, at least.
    lower: f64,
    /// Units per second, at most.
    upper: f64,
}

impl Refill {
    /// The refill rate known so far, in units per second: the middle of its bounds, or their
    /// upper end while nothing bounds it from below.
    fn per_second(&self) -> Option<f64> {
        let rate = if self.lower > 0.0 {
            (self.lower + self.upper) / 2.0
        } else {
            self.upper
        };
        (self.limit > 0 && rate.is_finite() && rate > 0.0).then_some(rate)
    }

    /// Takes one announcement of a bucket of `limit` into account; returns the limit to pace
    /// at: the bucket as burst, refilled at the middle of the bounds known (or at their upper
    /// end while no announcement bounded the rate from below: a lane that never empties the
    /// bucket by more than a unit is not held back by it). A full bucket, or one without a
    /// reset, tells no rate: the rate known so far stands, else nothing is learned.
    fn observe(&mut self, window: Window, limit: u64, known: Option<Limit>) -> Option<Limit> {
        if limit == 0 {
            return None;
        }
        let missing = window
            .remaining
            .map(|remaining| limit.saturating_sub(remaining));
        let bounded = match (missing, window.reset_in) {
            (Some(missing), Some(reset)) if missing > 0 && !reset.is_zero() => {
                let reset = reset.as_secs_f64();
                let lower = (missing - 1) as f64 / reset;
                let upper = missing as f64 / reset;
                let overlap = self.limit == limit && lower <= self.upper && self.lower <= upper;
                *self = if overlap {
                    Refill {
                        limit,
                        lower: lower.max(self.lower),
                        upper: upper.min(self.upper),
                    }
                } else {
                    Refill {
                        limit,
                        lower,
                        upper,
                    }
                };
                true
            }
            _ => false,
        };
        if !bounded || self.limit != limit {
            // A full bucket: the lane sends slower than it refills, and nothing constrains it
            // yet.
            return known.map(|known| Limit {
                burst: limit,
                ..known
            });
        }
        let interval = Duration::try_from_secs_f64(1.0 / self.per_second()?).ok()?;
        Some(Limit {
            interval: interval.max(Duration::from_nanos(1)),
            burst: limit,
        })
    }
}

/// What the announcements of one dimension describe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// `reset` is the time until the bucket is full again: it refills continuously.
    Bucket,
    /// `reset` is the end of a fixed window: `remaining` is all there is until then.
    FixedWindow,
}

/// One announcement, as the lane received it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Announcement {
    /// When it arrived.
    at: Instant,
    /// When it said the bucket is full, or the window ends.
    end: Instant,
    remaining: u64,
}

/// Tells a bucket from a fixed window by successive announcements of one dimension (see the
/// [module documentation](self)), and learns a fixed window's length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ShapeReader {
    /// The announcement the next one is compared with: the first since `remaining` last grew.
    anchor: Option<Announcement>,
    /// The coarsest unit every reset so far was a whole number of (a second, a millisecond).
    resolution: Option<Duration>,
    shape: Option<Shape>,
    /// The longest reset announced: a window is at least this long.
    longest_reset: Duration,
    /// The shortest step between two successive windows' ends.
    step: Option<Duration>,
}

impl ShapeReader {
    /// Takes one announcement (`remaining` units, `reset_in` until the bucket is full or the
    /// window ends) arrived at `now` into account; returns the shape known so far.
    fn observe(&mut self, now: Instant, remaining: u64, reset_in: Duration) -> Option<Shape> {
        if reset_in.is_zero() {
            return self.shape;
        }
        let resolution = resolution_of(reset_in);
        self.resolution = Some(self.resolution.map_or(resolution, |r| r.min(resolution)));
        self.longest_reset = self.longest_reset.max(reset_in);
        let current = Announcement {
            at: now,
            end: later(now, reset_in),
            remaining,
        };
        let Some(anchor) = self.anchor else {
            self.anchor = Some(current);
            return self.shape;
        };
        if remaining >= anchor.remaining {
            if remaining > anchor.remaining {
                // Capacity came back: a refill, or a window that renewed. A window's end steps
                // on by its length (a constant lateness or rounding cancels out).
                let step = current.end.saturating_duration_since(anchor.end);
                if self.shape == Some(Shape::FixedWindow)
                    && step.saturating_mul(2) > self.longest_reset
                    && step <= self.longest_reset.saturating_mul(2)
                {
                    self.step = Some(self.step.map_or(step, |known| known.min(step)));
                }
                self.anchor = Some(current);
            }
            return self.shape;
        }
        let elapsed = now.saturating_duration_since(anchor.at);
        let rounding = self.resolution.unwrap_or(resolution);
        if elapsed < rounding.saturating_mul(2) {
            return self.shape;
        }
        let moved = current.end.saturating_duration_since(anchor.end);
        if moved.saturating_mul(2) <= elapsed && moved < elapsed.saturating_sub(rounding) {
            self.shape = Some(Shape::FixedWindow);
        } else if moved.saturating_add(rounding) >= elapsed {
            self.shape = Some(Shape::Bucket);
        }
        self.anchor = Some(current);
        self.shape
    }

    /// A fixed window's length: the shortest step between two windows' ends once one renewed,
    /// else the longest reset announced; `None` before any announcement.
    fn window_length(&self) -> Option<Duration> {
        self.step
            .or(Some(self.longest_reset).filter(|longest| !longest.is_zero()))
    }
}

/// The coarsest unit `reset` is a whole number of: a second, a millisecond or a microsecond.
fn resolution_of(reset: Duration) -> Duration {
    if reset.subsec_nanos() == 0 {
        Duration::from_secs(1)
    } else if reset.subsec_nanos().is_multiple_of(1_000_000) {
        Duration::from_millis(1)
    } else {
        Duration::from_micros(1)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::super::fixtures::{accepted, learner, limits};
    use super::super::protocol::{Action, Actions, Answer, InFlight, Observation, PaceConfig};
    use super::super::PaceLearner;
    use super::*;

    fn token_limit(actions: &Actions) -> Option<(Limit, bool, bool)> {
        actions.iter().find_map(|action| match action {
            Action::SetLimit {
                dimension: Dimension::Tokens,
                limit: Some(limit),
                strict,
                fresh,
            } => Some((limit, strict, fresh)),
            _ => None,
        })
    }

    #[test]
    fn a_learned_token_limit_goes_stale_is_replaced_and_expires() {
        let mut learner = learner(Duration::from_secs(120));
        let start = Instant::now();
        let reset = Duration::from_secs(6);
        let small = limits(
            None,
            Some(Window {
                limit: Some(100),
                remaining: Some(90),
                reset_in: Some(reset),
            }),
        );
        let (limit, strict, _) = token_limit(&learner.observe(&accepted(start, &small))).unwrap();
        assert_eq!((limit.burst, strict), (100, true));
        // Fresh for the announced reset: nothing changes before it.
        assert!(learner.tick(start + reset / 2).is_empty());
        // Stale: still paced, no longer strict, so a larger cost is sent and heard about.
        let (limit, strict, _) = token_limit(&learner.tick(start + reset)).unwrap();
        assert_eq!((limit.burst, strict), (100, false));
        // The server says otherwise: replaced at once, strict again, the cell started anew.
        let large = limits(
            None,
            Some(Window {
                limit: Some(40_000),
                remaining: Some(39_000),
                reset_in: Some(reset),
            }),
        );
        let later = start + reset * 2;
        let (limit, strict, fresh) =
            token_limit(&learner.observe(&accepted(later, &large))).unwrap();
        assert_eq!((limit.burst, strict, fresh), (40_000, true, true));
        // Not announced again within a window: forgotten.
        let actions = learner.tick(later + TOKEN_WINDOW);
        assert!(actions.iter().any(|action| action
            == Action::SetLimit {
                dimension: Dimension::Tokens,
                limit: None,
                strict: false,
                fresh: false,
            }));
        assert_eq!(learner.limit(Dimension::Tokens), None);
        assert_eq!(learner.next_due(), None);
    }

    fn openai(requests: Window, tokens: Window) -> RateLimits {
        RateLimits {
            family: HeaderFamily::OpenAi,
            requests: Some(requests),
            tokens: Some(tokens),
            input_tokens: None,
            output_tokens: None,
            resource: None,
        }
    }

    /// OpenAI-shaped limits of 20 requests/s (burst 10) and 1 000 tokens/s (burst 1 000),
    /// announced with resets like `50ms`: learned as such, whatever the bucket's period, not
    /// as per-minute limits.
    #[test]
    fn resets_are_read_as_the_time_until_the_bucket_is_full() {
        let mut learner = PaceLearner::new(PaceConfig {
            configured: [None; 4],
            max_wait: Duration::from_secs(120),
        });
        let now = Instant::now();
        let limits = openai(
            Window {
                limit: Some(10),
                remaining: Some(9),
                reset_in: Some(Duration::from_millis(50)),
            },
            Window {
                limit: Some(1_000),
                remaining: Some(900),
                reset_in: Some(Duration::from_millis(100)),
            },
        );
        learner.observe(&Observation {
            now,
            departed: now,
            booked: now,
            answer: Answer::Accepted,
            pause: None,
            limits: Some(&limits),
            answered: [1, 100, 0, 0],
            estimated: [0; 4],
            seq: 0,
            in_flight: InFlight {
                requests: 1,
                units: [1, 100, 0, 0],
            },
        });
        let requests = learner.limit(Dimension::Requests).unwrap();
        let tokens = learner.limit(Dimension::Tokens).unwrap();
        assert_eq!(
            (requests.interval, requests.burst),
            (Duration::from_millis(50), 10)
        );
        // 100 missing of 1 000 in 100 ms: between 990/s and 1 000/s, paced at the middle.
        assert_eq!(tokens.burst, 1_000);
        let per_second = 1.0 / tokens.interval.as_secs_f64();
        assert!((per_second - 995.0).abs() < 0.01, "{per_second}");
    }

    /// OpenAI's headers over a clock-aligned minute window (RPM 30): `remaining` falls while
    /// the announced end stays put. Read as a bucket, the refill would grow as the window runs
    /// out and the lane be refused near its end; read as a window, the lane paces at 30 per
    /// minute and the budget is told that nothing refills before the end.
    #[test]
    fn a_window_in_a_buckets_headers_is_paced_as_a_window() {
        let mut learner = PaceLearner::new(PaceConfig {
            configured: [None; 4],
            max_wait: Duration::from_secs(120),
        });
        let start = Instant::now();
        let end = start + Duration::from_secs(60);
        let mut syncs = Vec::new();
        for (ms, remaining) in [(50, 29), (300, 28), (900, 20)] {
            let now = start + Duration::from_millis(ms);
            let window = |limit, remaining| Window {
                limit: Some(limit),
                remaining: Some(remaining),
                reset_in: Some(end - now),
            };
            let limits = openai(
                window(30, remaining),
                window(900, 900 - 30 * (30 - remaining)),
            );
            let actions = learner.observe(&Observation {
                now,
                departed: now,
                booked: now,
                answer: Answer::Accepted,
                pause: None,
                limits: Some(&limits),
                answered: [1, 30, 0, 0],
                estimated: [0; 4],
                seq: 0,
                in_flight: InFlight {
                    requests: 1,
                    units: [1, 30, 0, 0],
                },
            });
            syncs.extend(actions.iter().filter_map(|action| match action {
                Action::Sync {
                    dimension: Dimension::Requests,
                    remaining,
                    refills_from,
                    ..
                } => Some((remaining, refills_from)),
                _ => None,
            }));
        }
        // The first answer alone cannot tell: read as a bucket.
        assert_eq!(syncs[0], (29, None));
        assert_eq!(syncs[1..], [(28, Some(end)), (20, Some(end))]);
        let requests = learner.limit(Dimension::Requests).unwrap();
        assert_eq!(requests.burst, 30);
        // 30 over the longest reset announced (59.95 s).
        assert_eq!(requests.interval, Duration::from_millis(59_950) / 30);
        let tokens = learner.limit(Dimension::Tokens).unwrap();
        assert_eq!(tokens.interval, Duration::from_millis(59_950) / 900);
    }

    /// An LLM proxy announces its limit and what remains, never when it comes back: read as
    /// the per-minute limit OpenAI documents, spread evenly, one at a time.
    #[test]
    fn a_requests_limit_without_a_reset_is_spread_over_a_minute() {
        let mut learner = PaceLearner::new(PaceConfig {
            configured: [None; 4],
            max_wait: Duration::from_secs(120),
        });
        let now = Instant::now();
        let window = |limit, remaining| Window {
            limit: Some(limit),
            remaining: Some(remaining),
            reset_in: None,
        };
        let limits = openai(window(30, 29), window(2_000, 2_000));
        let actions = learner.observe(&accepted(now, &limits));
        let requests = learner.limit(Dimension::Requests).unwrap();
        assert_eq!(
            (requests.interval, requests.burst),
            (Duration::from_secs(2), 1)
        );
        // From the request that taught it: the next one leaves an interval later.
        assert!(actions.iter().any(|action| matches!(
            action,
            Action::SetLimit {
                dimension: Dimension::Requests,
                fresh: true,
                ..
            }
        )));
        assert!(actions.iter().any(|action| matches!(
            action,
            Action::Sync {
                dimension: Dimension::Requests,
                credit: false,
                ..
            }
        )));
        // Tokens tell no pace without a reset.
        assert_eq!(learner.limit(Dimension::Tokens), None);
    }

    #[test]
    fn a_full_bucket_keeps_the_rate_known_so_far() {
        let known = Limit {
            interval: Duration::from_millis(50),
            burst: 10,
        };
        let full = Window {
            limit: Some(12),
            remaining: Some(12),
            reset_in: Some(Duration::ZERO),
        };
        let mut refill = Refill::default();
        assert_eq!(
            refill.observe(full, 12, Some(known)),
            Some(Limit { burst: 12, ..known })
        );
        assert_eq!(refill.observe(full, 60, None), None);
        assert_eq!(refill.observe(full, 0, Some(known)), None);
    }

    #[test]
    fn refill_bounds_narrow_and_start_anew_when_the_rate_changes() {
        let window = |remaining, reset_ms| Window {
            limit: Some(10),
            remaining: Some(remaining),
            reset_in: Some(Duration::from_millis(reset_ms)),
        };
        let per_second = |limit: Option<Limit>| 1.0 / limit.unwrap().interval.as_secs_f64();
        let mut refill = Refill::default();
        // 20/s: one unit missing says at most 20/s, and nothing below.
        assert!((per_second(refill.observe(window(9, 50), 10, None)) - 20.0).abs() < 1e-6);
        // Level 7.6 of 10 reads "7, full in 120 ms": 16.7/s to 25/s, intersected: 16.7 to 20.
        let rate = per_second(refill.observe(window(7, 120), 10, None));
        assert!((rate - (2.0 / 0.12 + 20.0) / 2.0).abs() < 1e-6, "{rate}");
        // Never above the tightest upper bound, whatever the order of announcements.
        let rate = per_second(refill.observe(window(6, 180), 10, None));
        assert!(rate <= 20.0 + 1e-9, "{rate}");
        // The server halves its rate: the old bounds no longer overlap, the new ones hold.
        let rate = per_second(refill.observe(window(0, 1_000), 10, None));
        assert!((rate - 9.5).abs() < 1e-6, "{rate}");
    }
    #[test]
    fn successive_announcements_narrow_the_refill_rate() {
        let window = |remaining, reset_ms| Window {
            limit: Some(10),
            remaining: Some(remaining),
            reset_in: Some(Duration::from_millis(reset_ms)),
        };
        let mut refill = Refill::default();
        // 20 per second, level 8.6: "8 remaining, full in 70 ms" reads 28.6/s alone.
        refill.observe(window(8, 70), 10, None);
        // Emptied by a burst, "0 remaining, full in 500 ms": between 18/s and 20/s.
        let limit = refill.observe(window(0, 500), 10, None).unwrap();
        let per_second = 1.0 / limit.interval.as_secs_f64();
        assert!((per_second - 19.0).abs() < 1e-6, "{per_second}");
        assert_eq!(limit.burst, 10);
    }

    #[test]
    fn a_minute_window_whose_end_stays_put_is_a_fixed_window() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut reader = ShapeReader::default();
        // A minute window: 900 tokens, 843 left 59.95 s before its end...
        assert_eq!(
            reader.observe(at(50), 843, Duration::from_millis(59_950)),
            None
        );
        // ...and 786 left 200 ms later, the end where it was: a fixed window.
        let shape = reader.observe(at(250), 786, Duration::from_millis(59_750));
        assert_eq!(shape, Some(Shape::FixedWindow));
        assert_eq!(reader.window_length(), Some(Duration::from_millis(59_950)));
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A bucket of 900 refilling 15 per second, emptied faster than it refills: whatever the
    /// answers' latencies, never read as a window.
    #[test]
    fn a_bucket_spent_faster_than_it_refills_is_a_bucket() {
        let start = Instant::now();
        let rate = 15.0;
        let mut reader = ShapeReader::default();
        let mut level = 900.0_f64;
        let mut server_at = 0.0_f64;
        for (i, latency_ms) in [50u64, 400, 20, 900, 10, 300, 5, 700]
            .into_iter()
            .enumerate()
        {
            // 60 tokens every 100 ms (server time): more than the 1.5 refilled.
            server_at += 0.1;
            level = (level + rate * 0.1).min(900.0) - 60.0;
            let reset = Duration::from_secs_f64((900.0 - level) / rate);
            let arrived = start + Duration::from_secs_f64(server_at) + ms(latency_ms);
            let shape = reader.observe(arrived, level.floor() as u64, reset);
            assert_ne!(shape, Some(Shape::FixedWindow), "answer {i}");
        }
        assert_eq!(reader.shape, Some(Shape::Bucket));
    }

    #[test]
    fn a_fixed_window_is_read_as_one_and_its_length_learned_from_renewals() {
        let start = Instant::now();
        let mut reader = ShapeReader::default();
        // A 60 s window opened 10 s before the first answer: its first reset says 50 s.
        let window = |at: u64, remaining| {
            let into = (at + 10_000) % 60_000;
            (start + ms(at), remaining, ms(60_000 - into))
        };
        for (at, remaining) in [(0, 29), (300, 28), (800, 27)] {
            let (at, remaining, reset) = window(at, remaining);
            reader.observe(at, remaining, reset);
        }
        assert_eq!(reader.shape, Some(Shape::FixedWindow));
        // Before a renewal, the longest reset is the best guess of the length.
        assert_eq!(reader.window_length(), Some(ms(50_000)));
        // The next window: its end 60 s after the first one's.
        let (at, remaining, reset) = window(50_100, 29);
        reader.observe(at, remaining, reset);
        let (at, remaining, reset) = window(50_400, 28);
        reader.observe(at, remaining, reset);
        assert_eq!(reader.window_length(), Some(ms(60_000)));
        assert_eq!(reader.shape, Some(Shape::FixedWindow));
    }

    #[test]
    fn resets_in_whole_seconds_are_compared_only_seconds_apart() {
        let start = Instant::now();
        let mut reader = ShapeReader::default();
        // A window whose resets are rounded up to whole seconds: 300 ms apart tells nothing.
        reader.observe(start, 10, Duration::from_secs(30));
        reader.observe(start + ms(300), 9, Duration::from_secs(30));
        assert_eq!(reader.shape, None);
        // Three seconds later the end has not moved: a window.
        reader.observe(start + ms(3_300), 8, Duration::from_secs(27));
        assert_eq!(reader.shape, Some(Shape::FixedWindow));
    }

    #[test]
    fn nothing_spent_tells_nothing() {
        let start = Instant::now();
        let mut reader = ShapeReader::default();
        for i in 0..5 {
            reader.observe(start + ms(i * 100), 10, ms(5_000 - i * 100));
        }
        assert_eq!(reader.shape, None);
        assert_eq!(reader.observe(start, 10, Duration::ZERO), None);
    }
}
