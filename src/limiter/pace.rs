//! The pace learner: what the server's answers teach about the rate it allows.
//!
//! A [`PaceLearner`] is a value type, pure in `now` like [`Gcra`](super::Gcra): it takes
//! [`Observation`]s (how the server answered, its parsed signals, when the attempt left and
//! what it cost) and returns [`Actions`] (set a dimension's limit, cool a dimension or the whole
//! lane down until an instant, sync a token budget down to what the server says remains) that
//! its owner applies to a [`Budget`](super::Budget). It reads no clock, holds no lock and knows
//! no HTTP type beyond the plain values of [`signals`](crate::signals), so every behaviour below
//! is tested with a fake clock and no sockets.
//!
//! # What it learns
//!
//! - **From a window's headers** (GitHub, IETF, Flask-Limiter's `X-RateLimit-*`: `remaining` R,
//!   `reset` T at the window's end): the lane sends no faster than R/T until the reset, and
//!   R = 0 pauses it until then. Successive windows' resets tell the window's length W (the step
//!   between two of them, so a quantised or late announcement cancels out); once W and the
//!   quota L are known the lane paces at L/W, with `remaining` as the hard cap until the window's
//!   end. Requests still in flight when the server answered are taken off R.
//! - **From a bucket's headers** (OpenAI, Anthropic: `reset` is the time until the bucket is full
//!   again): limit L is the burst and (L − remaining) / reset the refill rate, for requests and
//!   tokens alike and whatever the period; the budget is synced to the announced `remaining`
//!   both ways. A learned token limit is *strict* (a cost above it is refused before it is sent)
//!   only while its announcement is fresh; it is replaced as soon as the server announces
//!   another one, and forgotten when no answer re-announces it within a minute.
//! - **From refusals with Retry-After and no headers**: the requests the server accepted over an
//!   *active* measurement period (from the first departure after the previous pause or after an
//!   idle gap, to the end of this pause) are the first guess of its rate. The lane then ramps up
//!   from it, a step with every accepted request (doubling every quarter cycle), and once
//!   refused resumes at the step before, which the server accepted, less 2 %. Refused again
//!   within a cycle of that resume, the server counts a fixed window: what it accepted since
//!   the pause is its quota per cycle, probed 5 % higher each window until a refusal says that
//!   is too much; then the lane backs off 5 % and holds (additive increase, multiplicative
//!   decrease).
//! - **From plain refusals** (a 429 with neither Retry-After nor headers, nginx `limit_req`'s
//!   way): CUBIC, as AWS's adaptive retry mode: β·r after a refusal at rate r (β 0.7; 0.9 once
//!   two refusals came at about the same rate), then a cubic regrowth that flattens near r; one
//!   decrease per congestion. A configured rate first only stops bursting.
//!
//! # Guarantees
//!
//! - Never faster than a configured rate: every limit it sets has the longer interval and the
//!   smaller burst of the learned one and the configured one.
//! - Every wait it derives from a server value (a cooldown, a pace's interval) is at most the
//!   configured cap ([`PaceConfig::max_wait`]), whatever the server sent.

use std::time::Duration;

use tokio::time::Instant;

use super::shape::{Shape, ShapeReader};
use super::{Dimension, Limit};
use crate::signals::{HeaderFamily, RateLimits, Window};
use crate::time::later;

/// Windows a quota guessed from refusals is held, once a probe was refused, before the lane
/// probes upwards again (the server's quota may have grown).
const HOLD_WINDOWS: u32 = 60;

/// How long a learned token limit lasts without being announced again (OpenAI's and
/// Anthropic's documented period), and the slowest refill a token bucket is read at.
const TOKEN_WINDOW: Duration = Duration::from_secs(60);

/// A learned token limit is strict at least this long after its announcement.
const MIN_FRESH: Duration = Duration::from_secs(1);

/// An idle gap between two departures shorter than this never restarts a measurement.
const MIN_IDLE_GAP: Duration = Duration::from_secs(1);

/// Two announced resets closer than this belong to one window (rounding, jitter).
const MIN_WINDOW_STEP: Duration = Duration::from_millis(250);

/// The server's current window, as its announcements tell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct WindowTrack {
    /// Its announced reset (the first announcement of it).
    announced: Instant,
    /// When its first answer arrived: it opened no later than that.
    opened: Instant,
    /// The last `remaining` it announced.
    remaining: u64,
    /// The time to its reset when it was first announced: about its length, or more by the
    /// announcement's lateness.
    first_reset_in: Duration,
}

/// CUBIC's multiplicative decrease after a plain refusal (AWS adaptive retry mode's β).
const BETA: f64 = 0.7;
/// The gentler decrease once two refusals in a row came at about the same rate: the server's
/// ceiling is known, and the lane only probes around it.
const BETA_NEAR_CEILING: f64 = 0.9;
/// The decrease of a configured rate that was refused even without bursting: the
/// documentation was a little optimistic, or the clocks disagree by a hair.
const BETA_CONFIGURED: f64 = 0.97;
/// CUBIC's growth scale, in requests per second per second³ (AWS: 0.4).
const SCALE: f64 = 0.4;
/// The slowest pace refusals can teach: one request every two seconds.
const MIN_RATE: f64 = 0.5;
/// The shortest period an offered rate is measured over (a burst of simultaneous requests is
/// not an infinite rate).
const MIN_MEASURE: Duration = Duration::from_millis(10);

/// The index of a dimension in per-dimension arrays.
const fn slot(dimension: Dimension) -> usize {
    dimension as usize
}

/// What the learner is told once, when a lane is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PaceConfig {
    /// The configured limit of each dimension (indexed as [`Dimension::ALL`]); the learner never
    /// paces faster than these.
    pub configured: [Option<Limit>; Dimension::ALL.len()],
    /// The longest wait any server value may cause: cooldowns and pace intervals are capped here.
    pub max_wait: Duration,
}

impl PaceConfig {
    fn configured(&self, dimension: Dimension) -> Option<Limit> {
        self.configured[slot(dimension)]
    }

    /// `learned`, never faster nor burstier than the configured limit of `dimension`: the
    /// longer interval and the smaller burst of the two (a lane that flipped between the two
    /// bursts would turn a full bucket into a second of delay at each flip).
    fn never_faster(&self, dimension: Dimension, learned: Limit) -> Limit {
        match self.configured(dimension) {
            Some(configured) => Limit {
                interval: configured.interval.max(learned.interval),
                burst: configured.burst.min(learned.burst).max(1),
            },
            None => learned,
        }
    }
}

/// How the server answered one attempt, as the lane's classifier judged it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A 2xx: the server accepted the request.
    Accepted,
    /// The server said "too many requests" (429, GitHub's rate-limit 403).
    RateLimited,
    /// The server is overloaded (503): its Retry-After pauses the lane, it teaches no quota.
    Unavailable,
    /// Anything else: only its headers are read.
    Other,
}

/// A pause the server asked for: of the whole lane, or of the one dimension it named exhausted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pause {
    /// The exhausted dimension; `None` pauses the whole lane.
    pub dimension: Option<Dimension>,
    /// How long, as the server said it (uncapped).
    pub delay: Duration,
}

/// What is still in flight in the lane when an answer arrives (the answered request included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InFlight {
    /// Requests in flight.
    pub requests: u64,
    /// Units of each dimension (indexed as [`Dimension::ALL`]) in flight, as estimated when
    /// they left.
    pub units: [u64; Dimension::ALL.len()],
}

/// One answer, with what the learner needs to know about it.
#[derive(Clone, Copy, Debug)]
pub struct Observation<'a> {
    /// When the answer arrived.
    pub now: Instant,
    /// When the answered attempt left.
    pub departed: Instant,
    /// How the server answered.
    pub answer: Answer,
    /// The pause the server asked for (Retry-After on a refusal), uncapped: the learner caps it.
    pub pause: Option<Pause>,
    /// The rate-limit headers, if any.
    pub limits: Option<&'a RateLimits>,
    /// The answered attempt's estimated units per dimension (indexed as [`Dimension::ALL`]).
    pub answered: [u64; Dimension::ALL.len()],
    /// What was in flight when it arrived, the answered attempt included.
    pub in_flight: InFlight,
}

/// What the learner asks its owner to do to the lane's budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Set the limit of `dimension` (`None`: no limit); `strict` refuses costs above the burst;
    /// `fresh` starts the dimension's cell anew instead of keeping what it booked (a token limit
    /// replaced by another announcement: the server's `remaining` that follows is the truth).
    SetLimit {
        /// The dimension.
        dimension: Dimension,
        /// The new limit.
        limit: Option<Limit>,
        /// Whether a cost above the burst is refused.
        strict: bool,
        /// Whether the cell starts anew.
        fresh: bool,
    },
    /// Nothing in `dimension` (or, with `None`, nothing at all) leaves before `until`.
    CoolDown {
        /// The dimension, or the whole lane.
        dimension: Option<Dimension>,
        /// The end of the pause; at most the cap after the answer.
        until: Instant,
        /// What asked for it, for the trace.
        why: &'static str,
    },
    /// The server says `remaining` units of `dimension` are left: book what it counts as gone,
    /// give back what it says is still there (an over-estimate, a renewed window).
    Sync {
        /// The dimension.
        dimension: Dimension,
        /// What the server says remains, less what it has not seen yet.
        remaining: u64,
        /// Whether units may be given back: only an answer newer than every answer synced
        /// before may say more remains (an older one knew less of what is in flight).
        credit: bool,
        /// A fixed window's end: `remaining` is all there is until then, so the budget refills
        /// nothing before it (what its pace would refill by then is owed first). `None`: a
        /// bucket, refilling from now.
        refills_from: Option<Instant>,
    },
}

/// The actions of one observation: at most a few, without allocating.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Actions {
    items: [Option<Action>; 8],
    len: usize,
}

impl Actions {
    fn push(&mut self, action: Action) {
        // Eight is more than one observation can produce (a limit and a sync per token
        // dimension, and one pause or pace); a ninth would be a bug, and is dropped.
        if let Some(item) = self.items.get_mut(self.len) {
            *item = Some(action);
            self.len += 1;
        }
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The actions, in the order they are to be applied.
    pub fn iter(&self) -> impl Iterator<Item = Action> + '_ {
        self.items[..self.len].iter().flatten().copied()
    }
}

/// Slow start after a first refusal with Retry-After, as a ramp: the rate doubles every
/// quarter of the cycle, growing with each accepted request (at most twofold per request, as
/// TCP's slow start per round trip) rather than once per cycle. Doubling once per one-second
/// cycle took six cycles from 1/s to nginx's 50/s, and the refusal that ended it left the
/// lane at half the rate; growing per request, a refusal comes within one small step of the
/// rate (6 % at 50/s), and the lane resumes at the step before, which the server accepted.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Ramp {
    /// Requests per second now.
    rate: f64,
    /// The rate before the last step: what the server accepted.
    before: f64,
    /// The rate at which the last accepted request really left after the one before it
    /// (slower than the pace by the round trip between an answer and the next booking).
    sent: f64,
    /// When the request of the last step left.
    last_departure: Option<Instant>,
}

/// The share of the rate accepted during a ramp that it resumes at once refused.
const RAMP_RESUME_MARGIN: f64 = 0.98;
/// Quarters of the cycle in which a ramp doubles its rate.
const RAMP_DOUBLINGS_PER_CYCLE: u32 = 4;
/// A ramp refused within this factor of the rate it last had accepted holds that rate (the
/// server's is known closely); refused after a larger step, it probes upwards from there.
const RAMP_CLOSE: f64 = 1.1;

impl Ramp {
    fn at(rate: f64) -> Ramp {
        Ramp {
            rate: rate.max(MIN_RATE),
            before: rate.max(MIN_RATE),
            sent: rate.max(MIN_RATE),
            last_departure: None,
        }
    }

    /// One more accepted request, which left at `departed`: the rate grows so that it doubles
    /// every `doubling`, at most twofold, and never beyond twice the rate at which the last two
    /// requests left (a lane whose callers send slowly learns nothing about the server's rate).
    fn step(self, departed: Instant, doubling: Duration) -> Ramp {
        let per_doubling = (1.0 / self.rate) / doubling.as_secs_f64().max(1e-3);
        let grown = self.rate * 2f64.powf(per_doubling.min(1.0));
        if self.last_departure.is_some_and(|last| departed <= last) {
            // An answer to an earlier request, overtaken: no step of its own.
            return self;
        }
        let sent = self
            .last_departure
            .map(|last| departed.saturating_duration_since(last).as_secs_f64())
            .filter(|gap| *gap > 0.0)
            .map_or(self.rate, |gap| 1.0 / gap);
        Ramp {
            rate: grown.min((2.0 * sent).max(self.rate)),
            before: self.rate,
            sent,
            last_departure: Some(departed),
        }
    }

    /// The rate to resume at once refused: the step before, or the rate the last accepted
    /// request really left at, whichever is slower, less a margin for the jitter of that
    /// measure (a refusal costs a whole pause; the margin, 2 % of the rate).
    fn accepted(self) -> f64 {
        (self.before.min(self.sent) * RAMP_RESUME_MARGIN).max(MIN_RATE)
    }

    fn interval(self, cap: Duration) -> Duration {
        interval_of(self.rate, cap)
    }
}

/// The quota of the server's window, as its headers or its refusals told it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct LearnedWindow {
    limit: Option<u64>,
    length: Option<Duration>,
    /// Guessed from refusals rather than announced.
    from_refusals: bool,
    /// Windows to hold a guessed quota before probing upwards again; 0 while probing.
    hold: u32,
    /// Growing the guessed rate until a refusal (TCP's slow start): the first guess, what the
    /// server accepted before it first refused, is a burst's worth, far below its rate.
    ramp: Option<Ramp>,
    /// Resumed after a ramp's refusal and not refused since.
    after_ramp: bool,
}

/// The active period over which accepted requests are counted, to learn from a refusal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Measure {
    /// Departure of the first accepted request counted.
    since: Option<Instant>,
    /// Accepted requests counted.
    accepted: u64,
    /// Attempts that left before this instant (during or before the previous pause) teach nothing.
    after: Option<Instant>,
    /// The latest departure seen, to tell an idle gap.
    last_departure: Option<Instant>,
    /// First departure of the active period, and attempts since, to measure the offered rate.
    first_departure: Option<Instant>,
    departures: u64,
}

impl Measure {
    /// Requests per second sent over the active period, up to `now`.
    fn offered_rate(&self, now: Instant) -> Option<f64> {
        let first = self.first_departure?;
        let elapsed = now.saturating_duration_since(first).max(MIN_MEASURE);
        Some(self.departures as f64 / elapsed.as_secs_f64())
    }
}

/// The rate learned from plain refusals (a 429 with neither Retry-After nor rate-limit
/// headers): CUBIC, as AWS's adaptive retry mode. After a refusal at rate `r` the lane sends at
/// β·r, then grows along a cubic curve that flattens as it nears `r` again (where the server
/// refused) and probes beyond it only slowly.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Cubic {
    /// The rate at the last refusal.
    last_max: f64,
    /// The decrease applied then.
    beta: f64,
    /// When the curve started (shifted by idle periods, which teach nothing).
    since: Instant,
}

impl Cubic {
    fn after_refusal(
        offered: f64,
        previous: Option<Cubic>,
        configured: bool,
        now: Instant,
    ) -> Cubic {
        let last_max = offered.max(MIN_RATE);
        let near_ceiling = previous.is_some_and(|previous| {
            (last_max - previous.last_max).abs() <= previous.last_max * 0.15
        });
        let beta = match (configured, near_ceiling) {
            (true, _) => BETA_CONFIGURED,
            (false, true) => BETA_NEAR_CEILING,
            (false, false) => BETA,
        };
        Cubic {
            last_max,
            beta,
            since: now,
        }
    }

    /// Seconds from the refusal until the curve is back at `last_max`.
    fn plateau(&self) -> f64 {
        (self.last_max * (1.0 - self.beta) / SCALE).cbrt()
    }

    fn rate_at(&self, now: Instant) -> f64 {
        let t = now.saturating_duration_since(self.since).as_secs_f64();
        let rate = SCALE * (t - self.plateau()).powi(3) + self.last_max;
        rate.clamp(self.last_max * self.beta, self.last_max * 2.0)
            .max(MIN_RATE)
    }
}

/// Units per second of `limit` (its interval is never zero).
fn rate_of(limit: Limit) -> f64 {
    1.0 / limit.interval.as_secs_f64().max(1e-9)
}

/// An interval of one request at `rate` per second, never longer than `cap`.
fn interval_of(rate: f64, cap: Duration) -> Duration {
    Duration::try_from_secs_f64(1.0 / rate.max(MIN_RATE)).map_or(cap, |interval| interval.min(cap))
}

/// A token limit learned from an announcement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LearnedTokens {
    /// What the server announced (units per window).
    announced: u64,
    /// Whether a cost above it is still refused before it is sent.
    strict: bool,
    /// Strict until then; merely pacing after.
    fresh_until: Instant,
    /// Forgotten then, unless announced again.
    expires: Instant,
}

/// The pace learner of one lane; see the [module documentation](self).
///
/// ```
/// use std::time::Duration;
/// use tokio::time::Instant;
/// use reqwest_throttle::limiter::pace::{Action, Answer, Observation, PaceConfig, PaceLearner};
/// use reqwest_throttle::signals::{HeaderFamily, RateLimits, Window};
/// use reqwest_throttle::Dimension;
///
/// let mut learner = PaceLearner::new(PaceConfig {
///     configured: [None; 4],
///     max_wait: Duration::from_secs(10),
/// });
/// let now = Instant::now();
/// // 10 requests left until a reset in 5 s: one every 500 ms.
/// let limits = RateLimits {
///     requests: Some(Window {
///         limit: Some(100),
///         remaining: Some(10),
///         reset_in: Some(Duration::from_secs(5)),
///     }),
///     family: HeaderFamily::Ietf,
///     tokens: None,
///     input_tokens: None,
///     output_tokens: None,
///     resource: None,
/// };
/// let actions = learner.observe(&Observation {
///     now,
///     departed: now,
///     answer: Answer::Accepted,
///     pause: None,
///     limits: Some(&limits),
///     answered: [1, 0, 0, 0],
///     in_flight: Default::default(),
/// });
/// let set = actions.iter().find_map(|action| match action {
///     Action::SetLimit { dimension: Dimension::Requests, limit, .. } => limit,
///     _ => None,
/// });
/// assert_eq!(set.unwrap().interval, Duration::from_millis(500));
/// ```
#[derive(Clone, Debug)]
pub struct PaceLearner {
    config: PaceConfig,
    /// The limit of each dimension as last set (by the configuration or by this learner).
    current: [Option<Limit>; Dimension::ALL.len()],
    /// Until when the requests pace learned from the server holds.
    pace_until: Option<Instant>,
    window: LearnedWindow,
    measure: Measure,
    tokens: [Option<LearnedTokens>; Dimension::ALL.len()],
    /// The rate learned from plain refusals, if any.
    cubic: Option<Cubic>,
    /// The server's current window, from its announced resets.
    window_track: Option<WindowTrack>,
    /// The window's length, from the steps between successive windows' resets.
    window_length: Option<Duration>,
    /// What each dimension's bucket announcements tell about its refill rate.
    refills: [Refill; Dimension::ALL.len()],
    /// Whether each dimension's announcements describe a bucket or a fixed window.
    shapes: [ShapeReader; Dimension::ALL.len()],
    /// The server's window was seen to move on without renewing (a moving window: a slot
    /// frees as the oldest request in it expires, not only at the window's end).
    sliding: bool,
    /// Departure of the newest answered attempt synced, per dimension.
    synced: [Option<Instant>; Dimension::ALL.len()],
    /// Refusals of attempts that left before this instant belong to a congestion the lane has
    /// already reacted to.
    cubic_after: Option<Instant>,
    /// Requests still to be accepted, one at a time, before the configured burst is earned
    /// (see [`earn_burst`](Self::earn_burst)).
    earning: Option<u64>,
    /// The configured burst was earned, and opens at the lane's next lull.
    earned: bool,
}

impl PaceLearner {
    /// A learner that has learned nothing yet: the configured limits apply.
    pub fn new(config: PaceConfig) -> PaceLearner {
        PaceLearner {
            config,
            current: config.configured,
            pace_until: None,
            window: LearnedWindow::default(),
            measure: Measure::default(),
            tokens: [None; Dimension::ALL.len()],
            cubic: None,
            cubic_after: None,
            window_track: None,
            window_length: None,
            refills: [Refill::default(); Dimension::ALL.len()],
            shapes: [ShapeReader::default(); Dimension::ALL.len()],
            sliding: false,
            synced: [None; Dimension::ALL.len()],
            earning: None,
            earned: false,
        }
    }

    /// The configured requests burst was not stated, only defaulted (see
    /// [`Rate::is_burst_stated`](crate::Rate::is_burst_stated)): the lane starts one request at
    /// a time, and the burst is earned once the server has accepted as many requests as it
    /// holds without a refusal in between; a refusal first (the server allows less burst) keeps
    /// it at one. An earned burst opens at the lane's next lull
    /// ([`open_earned_burst`](Self::open_earned_burst)): a burst is for after a lull, and a
    /// busy lane with a burst catches up on every late departure (gaps of 18 ms at 50/s after
    /// one of 22 ms), which a server without burst refuses. Returns the limit to start with,
    /// if there is a burst to earn.
    ///
    /// ```
    /// use std::time::Duration;
    /// use reqwest_throttle::limiter::pace::{PaceConfig, PaceLearner};
    /// use reqwest_throttle::limiter::{Dimension, Limit};
    ///
    /// let configured = Limit { interval: Duration::from_millis(20), burst: 50 };
    /// let mut learner = PaceLearner::new(PaceConfig {
    ///     configured: [Some(configured), None, None, None],
    ///     max_wait: Duration::from_secs(10),
    /// });
    /// let start = learner.earn_burst().unwrap();
    /// assert_eq!(start.burst, 1);
    /// assert_eq!(learner.limit(Dimension::Requests), Some(start));
    /// ```
    pub fn earn_burst(&mut self) -> Option<Limit> {
        let configured = self.config.configured(Dimension::Requests)?;
        if configured.burst <= 1 {
            return None;
        }
        let spaced = Limit {
            burst: 1,
            ..configured
        };
        self.current[slot(Dimension::Requests)] = Some(spaced);
        self.earning = Some(configured.burst);
        Some(spaced)
    }

    /// Whether an unstated burst was earned and waits for a lull to open.
    pub fn has_earned_burst(&self) -> bool {
        self.earned
    }

    /// Opens an earned burst (see [`earn_burst`](Self::earn_burst)), as empty as the spaced
    /// bucket was: it fills during the lull that follows. Nothing if none was earned, or if
    /// something else was learned meanwhile (a server's headers, a refusal).
    pub fn open_earned_burst(&mut self) -> Actions {
        let mut actions = Actions::default();
        if !std::mem::take(&mut self.earned) {
            return actions;
        }
        let configured = self.config.configured(Dimension::Requests);
        let spaced = configured.map(|limit| Limit { burst: 1, ..limit });
        if self.current[slot(Dimension::Requests)] == spaced {
            self.set(Dimension::Requests, configured, false, false, &mut actions);
            actions.push(Action::Sync {
                dimension: Dimension::Requests,
                remaining: 0,
                credit: false,
                refills_from: None,
            });
        }
        actions
    }

    /// Counts an answer towards an unstated burst (see [`earn_burst`](Self::earn_burst)).
    fn earn(&mut self, answer: Answer) {
        match (answer, self.earning) {
            (Answer::RateLimited, _) => {
                self.earning = None;
                self.earned = false;
            }
            (Answer::Accepted, Some(left)) if left <= 1 => {
                self.earning = None;
                self.earned = true;
            }
            (Answer::Accepted, Some(left)) => self.earning = Some(left - 1),
            _ => {}
        }
    }

    /// The configuration.
    pub fn config(&self) -> &PaceConfig {
        &self.config
    }

    /// The limit of `dimension` as the learner last set it.
    pub fn limit(&self, dimension: Dimension) -> Option<Limit> {
        self.current[slot(dimension)]
    }

    /// When the requests pace learned from the server ends (its window resets), if one holds.
    /// A reservation booked beyond it was priced with a pace that no longer holds then.
    pub fn reset_at(&self) -> Option<Instant> {
        self.pace_until
    }

    /// The next instant at which [`tick`](Self::tick) has something to do, if any.
    pub fn next_due(&self) -> Option<Instant> {
        let tokens = self.tokens.iter().flatten().map(|learned| {
            if learned.strict {
                learned.fresh_until.min(learned.expires)
            } else {
                learned.expires
            }
        });
        self.pace_until.into_iter().chain(tokens).min()
    }

    /// What time alone changes, called before every booking: a server window that has reset
    /// (the next window is paced at its quota, or the configured rate applies again), a token
    /// announcement that is no longer fresh (no longer strict) or no longer current (forgotten).
    pub fn tick(&mut self, now: Instant) -> Actions {
        let mut actions = Actions::default();
        if self.pace_until.is_some_and(|until| now >= until) {
            self.pace_until = None;
            if self.window.from_refusals && self.idle_since_last_departure(now) {
                // A quota guessed from refusals is a measure of a busy period: after an idle
                // one the server's window has long reset, and the lane learns afresh.
                self.window = LearnedWindow::default();
                self.measure = Measure::default();
            }
            self.renew_window(now, &mut actions);
        }
        for dimension in Dimension::ALL {
            let Some(learned) = self.tokens[slot(dimension)] else {
                continue;
            };
            if now >= learned.expires {
                self.tokens[slot(dimension)] = None;
                let configured = self.config.configured(dimension);
                self.set(
                    dimension,
                    configured,
                    configured.is_some(),
                    false,
                    &mut actions,
                );
            } else if learned.strict && now >= learned.fresh_until {
                self.tokens[slot(dimension)] = Some(LearnedTokens {
                    strict: false,
                    ..learned
                });
                if self.config.configured(dimension).is_none() {
                    // Still paced, no longer strict: a cost above an old announcement is sent,
                    // so the server can say whether its limit changed.
                    let limit = self.current[slot(dimension)];
                    actions.push(Action::SetLimit {
                        dimension,
                        limit,
                        strict: false,
                        fresh: false,
                    });
                }
            }
        }
        actions
    }

    /// Learns from one answer; see the [module documentation](self).
    pub fn observe(&mut self, observation: &Observation<'_>) -> Actions {
        let mut actions = Actions::default();
        let now = observation.now;
        self.note_departure(observation);
        self.earn(observation.answer);
        if let Some(limits) = observation.limits {
            self.sync_buckets(limits, observation, &mut actions);
        }
        // Retry-After wins over rate-limit headers when both are present.
        if let Some(pause) = observation.pause {
            let delay = pause.delay.min(self.config.max_wait);
            self.cool_down(pause.dimension, delay, now, "Retry-After", &mut actions);
            if observation.answer == Answer::RateLimited
                && pause.dimension.is_none()
                && observation.limits.is_none()
            {
                if self.config.configured(Dimension::Requests).is_some() {
                    // A documented rate is close: only its burst (or a hair of its rate) was
                    // too much.
                    self.back_off(observation.departed, now, &mut actions);
                } else {
                    self.learn_from_refusal(observation.departed, delay, now, &mut actions);
                }
            }
            return actions;
        }
        let requests = observation.limits.and_then(|limits| limits.requests);
        let bucket = observation
            .limits
            .is_some_and(|limits| is_bucket(limits.family));
        match (requests, observation.answer) {
            // A bucket's requests were synced with its tokens.
            (Some(_), _) if bucket => {}
            (Some(window), _) => {
                self.pace_from(window, observation, &mut actions);
            }
            (None, Answer::RateLimited) => {
                self.back_off(observation.departed, now, &mut actions);
            }
            (None, Answer::Accepted) => {
                self.grow(now, &mut actions);
                self.ramp_up(observation.departed, now, &mut actions);
            }
            _ => {}
        }
        actions
    }

    /// Whether the lane paces itself (a configured rate, or one learned from the server): a
    /// request it sent too early is then retried at that pace rather than after a backoff.
    pub fn is_pacing(&self) -> bool {
        self.current[slot(Dimension::Requests)].is_some()
    }

    /// A plain refusal (no Retry-After, no headers): the lane was too fast. A configured rate
    /// first stops bursting (the server allows less burst than the client assumed); then, or
    /// without a configured rate, the pace drops multiplicatively, once per congestion: refusals
    /// of attempts that left before the previous decrease are of the same congestion.
    fn back_off(&mut self, departed: Instant, now: Instant, actions: &mut Actions) {
        if self.cubic_after.is_some_and(|after| departed < after) {
            return;
        }
        self.cubic_after = Some(now);
        let current = self.current[slot(Dimension::Requests)];
        if let Some(limit) = current.filter(|limit| limit.burst > 1) {
            let single = Limit { burst: 1, ..limit };
            self.set(Dimension::Requests, Some(single), false, true, actions);
            return;
        }
        let paced_rate = current.map(rate_of);
        // Paced, the lane sent at its pace; unpaced, as fast as its callers asked.
        let Some(offered) = paced_rate.or_else(|| self.measure.offered_rate(now)) else {
            return;
        };
        let configured = self.config.configured(Dimension::Requests).is_some();
        let cubic = Cubic::after_refusal(offered, self.cubic, configured, now);
        self.cubic = Some(cubic);
        // Waiters booked at the refused pace book again at the new one.
        self.set_cubic_pace(cubic.rate_at(now), true, actions);
    }

    /// An accepted request while paced from plain refusals: the rate grows along the curve.
    fn grow(&mut self, now: Instant, actions: &mut Actions) {
        let Some(cubic) = self.cubic else {
            return;
        };
        let rate = cubic.rate_at(now);
        let current = self.current[slot(Dimension::Requests)].map_or(f64::INFINITY, rate_of);
        // Small steps are not worth a budget update.
        if (rate - current).abs() > current * 0.01 {
            self.set_cubic_pace(rate, false, actions);
        }
    }

    fn set_cubic_pace(&mut self, rate: f64, reprice: bool, actions: &mut Actions) {
        let learned = Limit {
            interval: interval_of(rate, self.config.max_wait),
            burst: 1,
        };
        let effective = self.config.never_faster(Dimension::Requests, learned);
        let effective = Limit {
            burst: 1,
            ..effective
        };
        self.set(
            Dimension::Requests,
            Some(effective),
            false,
            reprice,
            actions,
        );
    }

    /// Whether nothing left for longer than an idle gap (a second, or two learned intervals,
    /// or the learned cycle, whichever is longest) before `now`.
    fn idle_since_last_departure(&self, now: Instant) -> bool {
        let gap = self.idle_gap().max(self.window.length.unwrap_or_default());
        self.measure
            .last_departure
            .is_some_and(|last| now.saturating_duration_since(last) > gap)
    }

    fn idle_gap(&self) -> Duration {
        self.current[slot(Dimension::Requests)]
            .map_or(MIN_IDLE_GAP, |limit| limit.interval.saturating_mul(2))
            .max(MIN_IDLE_GAP)
    }

    /// Counts an accepted request towards the measurement, and restarts the measurement after
    /// an idle gap: learning measures active time only.
    fn note_departure(&mut self, observation: &Observation<'_>) {
        let departed = observation.departed;
        let idle_gap = self.idle_gap();
        let measure = &mut self.measure;
        if measure.after.is_some_and(|after| departed < after) {
            return;
        }
        let idle = measure
            .last_departure
            .is_some_and(|last| departed.saturating_duration_since(last) > idle_gap);
        if idle {
            measure.since = None;
            measure.accepted = 0;
            measure.first_departure = None;
            measure.departures = 0;
            // An idle period teaches nothing: the curve resumes where it stood.
            if let (Some(cubic), Some(last)) = (self.cubic.as_mut(), measure.last_departure) {
                cubic.since = later(cubic.since, departed.saturating_duration_since(last));
            }
        }
        measure.departures += 1;
        if measure.first_departure.is_none_or(|first| departed < first) {
            measure.first_departure = Some(departed);
        }
        if measure.last_departure.is_none_or(|last| departed > last) {
            measure.last_departure = Some(departed);
        }
        if observation.answer == Answer::Accepted {
            measure.accepted += 1;
            measure.since = Some(measure.since.map_or(departed, |since| since.min(departed)));
        }
    }

    /// Sets `dimension`'s limit, asking the owner only when it changes. A requests pace a third
    /// faster or more than the current one starts the cell anew (`fresh`), so requests that
    /// wait at slots booked at the slower pace book again at the new one instead of keeping
    /// the lane below what the server grants.
    fn set(
        &mut self,
        dimension: Dimension,
        limit: Option<Limit>,
        strict: bool,
        fresh: bool,
        actions: &mut Actions,
    ) {
        let current = self.current[slot(dimension)];
        if current == limit && !fresh {
            return;
        }
        let fresh = fresh || (dimension == Dimension::Requests && much_faster(current, limit));
        self.current[slot(dimension)] = limit;
        actions.push(Action::SetLimit {
            dimension,
            limit,
            strict,
            fresh,
        });
    }

    /// A learned limit slowed no further than the cap allows: a request waits at most the cap
    /// for its slot, and a token bucket refills at least once per cap (or per minute, if longer).
    fn capped(&self, dimension: Dimension, learned: Limit) -> Limit {
        let cap = self.config.max_wait;
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

    /// Paces requests at `learned` (never faster than configured, never an interval above the
    /// cap) until `now + holds_for`.
    fn set_pace(
        &mut self,
        learned: Limit,
        now: Instant,
        holds_for: Duration,
        actions: &mut Actions,
    ) {
        let learned = Limit {
            interval: learned.interval.min(self.config.max_wait),
            ..learned
        };
        let effective = self.config.never_faster(Dimension::Requests, learned);
        self.set(Dimension::Requests, Some(effective), false, false, actions);
        self.pace_until = Some(later(now, holds_for));
    }

    fn cool_down(
        &mut self,
        dimension: Option<Dimension>,
        delay: Duration,
        now: Instant,
        why: &'static str,
        actions: &mut Actions,
    ) {
        let delay = delay.min(self.config.max_wait);
        actions.push(Action::CoolDown {
            dimension,
            until: later(now, delay),
            why,
        });
    }

    /// The server's window has reset: pace the new one at the quota it told (limit L over a
    /// window W: L/W), probing a quota guessed from refusals upwards; or, with no quota known,
    /// return to the configured rate.
    fn renew_window(&mut self, now: Instant, actions: &mut Actions) {
        if let (Some(ramp), Some(length)) = (self.window.ramp, self.window.length) {
            // Ramping: the rate grows with accepted requests, not with windows.
            let interval = ramp.interval(self.config.max_wait);
            self.set_pace(Limit { interval, burst: 1 }, now, length, actions);
            return;
        }
        let window = &mut self.window;
        if window.from_refusals {
            if window.hold == 0 {
                window.limit = window.limit.map(|limit| limit + (limit / 20).max(1));
            } else {
                window.hold -= 1;
            }
        }
        match (window.limit, window.length) {
            (Some(limit), Some(length)) if limit > 0 && !length.is_zero() => {
                let interval = length / u32::try_from(limit).unwrap_or(u32::MAX);
                self.set_pace(Limit { interval, burst: 1 }, now, length, actions);
            }
            _ => {
                let configured = self.config.configured(Dimension::Requests);
                self.set(Dimension::Requests, configured, false, false, actions);
            }
        }
    }

    /// With `remaining` R and `reset` T, sends no faster than R/T until the reset; R = 0
    /// pauses the lane until the reset. T is capped, so no pace waits longer than the cap.
    fn pace_from(&mut self, window: Window, observation: &Observation<'_>, actions: &mut Actions) {
        let (now, in_flight) = (observation.now, observation.in_flight.requests);
        let (Some(announced_remaining), Some(reset_in)) = (window.remaining, window.reset_in)
        else {
            return;
        };
        if reset_in.is_zero() {
            return;
        }
        let reset_in = reset_in.min(self.config.max_wait);
        let length = self.track_window(reset_in, announced_remaining, now);
        // Requests already on their way were not counted by the server when it answered.
        let unseen = in_flight.saturating_sub(1);
        let remaining = announced_remaining.saturating_sub(unseen);
        // The window's end: the announced reset, or sooner when the window's length is known
        // and the announcement is late (whole seconds rounded up, a reset announced a second
        // late): the window opened at most this long ago.
        let announced_end = later(now, reset_in);
        let end = match (length, self.window_track) {
            (Some(length), Some(track)) => {
                let estimated = later(track.opened, length);
                if estimated > now && estimated < announced_end {
                    estimated
                } else {
                    announced_end
                }
            }
            _ => announced_end,
        };
        let until_end = end.saturating_duration_since(now);
        if remaining == 0 {
            // A moving window frees its next slot when its oldest request expires: one quota
            // interval after the lane's own pace spent it, long before the announced reset
            // (the whole window, rounded up to a second). Counted from when the answered
            // request left, not from its answer: paced at the quota, the next one is due then,
            // and a pause from the answer held every departure back by the round trip (93 %
            // of Flask-Limiter's moving window at its documented rate).
            let pause = match (length, window.limit) {
                (Some(length), Some(limit)) if self.sliding && limit > 0 => {
                    let frees = later(
                        observation.departed,
                        length / u32::try_from(limit).unwrap_or(u32::MAX),
                    );
                    until_end.min(frees.saturating_duration_since(now))
                }
                _ => until_end,
            };
            self.cool_down(None, pause, now, "rate-limit remaining 0", actions);
            return;
        }
        // Paced at the window's quota over its length once both are known (the reset alone,
        // quantised or late, would halve the pace); else the remaining over the time left.
        let interval = match (length, window.limit) {
            (Some(length), Some(limit)) if limit > 0 => {
                length / u32::try_from(limit).unwrap_or(u32::MAX)
            }
            _ => reset_in / u32::try_from(remaining).unwrap_or(u32::MAX),
        };
        self.set_pace(
            Limit { interval, burst: 1 },
            now,
            until_end.max(Duration::from_nanos(1)),
            actions,
        );
        if let Some(limit) = window.limit {
            // Until successive resets tell the window's length, the longest reset seen is the
            // best estimate of it.
            let longest = self
                .window
                .length
                .filter(|_| !self.window.from_refusals)
                .map_or(reset_in, |longest| longest.max(reset_in));
            self.window = LearnedWindow {
                limit: Some(limit),
                length: Some(length.unwrap_or(longest)),
                from_refusals: false,
                hold: 0,
                ramp: None,
                after_ramp: false,
            };
        }
    }

    /// Follows the announced resets: a later reset with more remaining than before is a new
    /// window, and the shortest step between two windows' resets is the window's length (a
    /// constant lateness or rounding cancels out in the difference). Returns the length once
    /// known.
    fn track_window(
        &mut self,
        reset_in: Duration,
        remaining: u64,
        now: Instant,
    ) -> Option<Duration> {
        let announced = later(now, reset_in);
        let fresh = WindowTrack {
            announced,
            opened: now,
            remaining,
            first_reset_in: reset_in,
        };
        match self.window_track {
            Some(track) if announced > later(track.announced, MIN_WINDOW_STEP) => {
                let step = announced.duration_since(track.announced);
                // The server freed capacity: more remains than before (a fixed window renewed),
                // or as much as before while the reset moved on by half the window as first
                // announced or more (a moving window: its oldest requests expired while the
                // lane kept spending; half, so the jitter of a reset given in whole seconds
                // from now is never read as a window).
                let renewed = remaining > track.remaining;
                let slid = remaining == track.remaining
                    && remaining > 0
                    && step.saturating_mul(2) >= track.first_reset_in;
                self.sliding |= slid && !renewed;
                if renewed || slid {
                    // Windows back to back step by their length; after an idle gap the step is
                    // longer than a window was ever announced to be, and teaches nothing.
                    if step <= track.first_reset_in.saturating_add(MIN_IDLE_GAP) {
                        self.window_length =
                            Some(self.window_length.map_or(step, |length| length.min(step)));
                    }
                    self.window_track = Some(fresh);
                } else {
                    self.window_track = Some(WindowTrack { remaining, ..track });
                }
            }
            Some(ref mut track) => track.remaining = remaining,
            None => self.window_track = Some(fresh),
        }
        self.window_length
    }

    /// A refusal with Retry-After and no rate-limit headers: the requests accepted over the
    /// active period that ends with this pause are the server's quota per that cycle.
    fn learn_from_refusal(
        &mut self,
        departed: Instant,
        delay: Duration,
        now: Instant,
        actions: &mut Actions,
    ) {
        // Refusals of requests that left before the previous pause ended carry no new measure.
        if self.measure.after.is_some_and(|after| departed < after) {
            return;
        }
        let resumes = later(now, delay);
        let measure = std::mem::take(&mut self.measure);
        self.measure = Measure {
            after: Some(resumes),
            last_departure: measure.last_departure,
            ..Measure::default()
        };
        let cycle = match self.window {
            // Ramping and refused: the server's rate lies between the last step and the one
            // before, which it accepted. Resume there; hold it when the step was small.
            LearnedWindow {
                from_refusals: true,
                ramp: Some(ramp),
                length: Some(length),
                ..
            } => {
                let close = ramp.rate <= ramp.before * RAMP_CLOSE;
                let accepted = ramp.accepted();
                let quota = (accepted * length.as_secs_f64()).floor().max(1.0) as u64;
                self.window = LearnedWindow {
                    limit: Some(quota),
                    length: Some(length),
                    from_refusals: true,
                    hold: if close { HOLD_WINDOWS } else { 0 },
                    ramp: None,
                    after_ramp: true,
                };
                let interval = interval_of(accepted, self.config.max_wait);
                // Paced from the end of the pause on, and for a whole cycle after it.
                self.set_pace(
                    Limit { interval, burst: 1 },
                    now,
                    delay.saturating_add(length),
                    actions,
                );
                return;
            }
            // Resumed after a ramp and refused within one cycle: the server counts a fixed
            // window (its count, not the rate, was exceeded; a leaky bucket refuses a pace a
            // little too fast only now and then). What it accepted since the pause is its
            // quota per cycle, a low guess (the cycle measured to the end of a pause that a
            // whole-second Retry-After rounds up): probe upwards from there.
            LearnedWindow {
                from_refusals: true,
                after_ramp: true,
                length: Some(length),
                ..
            } if measure.accepted > 0
                && measure
                    .since
                    .is_some_and(|since| now.saturating_duration_since(since) <= length) =>
            {
                self.window = LearnedWindow {
                    limit: Some(measure.accepted),
                    length: Some(length),
                    from_refusals: true,
                    hold: 0,
                    ramp: None,
                    after_ramp: false,
                };
                length
            }
            // Paced from refusals and refused again: the quota probed was too high. Back off
            // 5 % and hold there a while.
            LearnedWindow {
                from_refusals: true,
                limit: Some(limit),
                length: Some(length),
                ..
            } => {
                let quota = limit * 95 / 100;
                self.window = LearnedWindow {
                    limit: Some(quota.max(1)),
                    length: Some(length),
                    from_refusals: true,
                    hold: HOLD_WINDOWS,
                    ramp: None,
                    after_ramp: false,
                };
                length
            }
            // First refusal: what the server accepted over the active cycle (measured to the end
            // of the pause, which a whole-second Retry-After rounds up, so it errs low), then
            // ramped up until refused.
            _ => {
                let (quota, cycle) = match measure.since {
                    Some(since) if measure.accepted > 0 && resumes > since => {
                        (measure.accepted, resumes.duration_since(since))
                    }
                    // Nothing accepted yet (a first burst refused whole, its one success still
                    // on its way): one request per pause, ramped from there, so that the
                    // refused requests do not all come back at once when the pause ends.
                    _ if !delay.is_zero() => (1, delay),
                    _ => return,
                };
                self.window = LearnedWindow {
                    limit: Some(quota),
                    length: Some(cycle),
                    from_refusals: true,
                    hold: 0,
                    ramp: Some(Ramp::at(quota as f64 / cycle.as_secs_f64().max(1e-9))),
                    after_ramp: false,
                };
                cycle
            }
        };
        let quota = self.window.limit.unwrap_or(1).max(1);
        let interval = cycle / u32::try_from(quota).unwrap_or(u32::MAX);
        // Paced from the end of the pause on, and for a whole cycle after it.
        self.set_pace(
            Limit { interval, burst: 1 },
            now,
            delay.saturating_add(cycle),
            actions,
        );
    }

    /// An accepted request while ramping after a first refusal: one step up (see [`Ramp`]).
    fn ramp_up(&mut self, departed: Instant, now: Instant, actions: &mut Actions) {
        let (Some(ramp), Some(length)) = (self.window.ramp, self.window.length) else {
            return;
        };
        // Answers to requests sent before the pause ended were paced by something else.
        if self.measure.after.is_some_and(|after| departed < after) {
            return;
        }
        let stepped = ramp.step(departed, length / RAMP_DOUBLINGS_PER_CYCLE);
        if stepped == ramp {
            return;
        }
        self.window.ramp = Some(stepped);
        let learned = Limit {
            interval: stepped.interval(self.config.max_wait),
            burst: 1,
        };
        let effective = self.config.never_faster(Dimension::Requests, learned);
        // Waiters booked at the slower step book again: left at their slots, a queue of sixteen
        // kept the lane sixteen steps behind its ramp, and the ramp reached twice the server's
        // rate before the first refusal told it so.
        self.set(Dimension::Requests, Some(effective), false, true, actions);
        self.pace_until = Some(later(now, length));
    }

    /// Keeps each budget in step with what the server announces: for a bucket family
    /// (OpenAI, Anthropic) the limit of every dimension is learned as [`Refill`] says;
    /// for any family, token dimensions with a limit are synced to the announced `remaining`,
    /// less what is still in flight (the server may not have seen it yet).
    fn sync_buckets(
        &mut self,
        limits: &RateLimits,
        observation: &Observation<'_>,
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
                .map(|reset_in| later(now, reset_in.min(self.config.max_wait)));
            if let Some(announced) = window.limit.filter(|_| bucket) {
                let current = self.current[slot(dimension)];
                let refill = match self.shapes[slot(dimension)].window_length() {
                    Some(length) if window_end.is_some() => fixed_window_pace(announced, length),
                    _ => self.refills[slot(dimension)].observe(window, announced, current),
                };
                if let Some(learned) = refill {
                    let learned = self.capped(dimension, learned);
                    let effective = self.config.never_faster(dimension, learned);
                    let known = self.tokens[slot(dimension)];
                    let replaced = known.is_some_and(|known| known.announced != announced);
                    let fresh_for = window
                        .reset_in
                        .unwrap_or(MIN_FRESH)
                        .clamp(MIN_FRESH, TOKEN_WINDOW);
                    // A request costs one unit: only token dimensions refuse a cost too large.
                    let strict = dimension != Dimension::Requests;
                    self.tokens[slot(dimension)] = Some(LearnedTokens {
                        announced,
                        strict,
                        fresh_until: later(now, fresh_for),
                        expires: later(now, TOKEN_WINDOW),
                    });
                    let was_strict = known.is_some_and(|known| known.strict);
                    if current != Some(effective) || replaced || was_strict != strict {
                        self.current[slot(dimension)] = Some(effective);
                        actions.push(Action::SetLimit {
                            dimension,
                            limit: Some(effective),
                            strict,
                            fresh: replaced,
                        });
                    }
                }
            }
            if self.current[slot(dimension)].is_none() {
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
                    credit: newest,
                    refills_from: window_end,
                });
            }
        }
    }
}

/// A fixed window of `limit` units per `length`, paced evenly: one unit per length / limit,
/// the whole limit as burst (the window allows it at once).
fn fixed_window_pace(limit: u64, length: Duration) -> Option<Limit> {
    let interval = length / u32::try_from(limit).unwrap_or(u32::MAX);
    (!interval.is_zero()).then_some(Limit {
        interval,
        burst: limit,
    })
}

/// Whether `new` paces a third faster or more than `old` (no limit is the fastest of all).
fn much_faster(old: Option<Limit>, new: Option<Limit>) -> bool {
    match (old, new) {
        (Some(_), None) => true,
        (Some(old), Some(new)) => new.interval.saturating_mul(4) < old.interval.saturating_mul(3),
        (None, _) => false,
    }
}

/// Whether a header family announces token buckets: `reset` is the time until the bucket is
/// full again (OpenAI's `x-ratelimit-reset-*`, Anthropic's `*-reset`), not a window's end.
fn is_bucket(family: HeaderFamily) -> bool {
    matches!(family, HeaderFamily::OpenAi | HeaderFamily::Anthropic)
}

/// What a bucket's announcements tell about its refill rate.
///
/// A bucket of `limit` L announces `remaining` R and the time T until it is full again, so it
/// refills L − R units in T, whatever its period: a minute, a second or 50 ms. But R is the
/// bucket's level rounded *down* (the level is fractional between refills), so L − R overstates
/// what is missing by up to one unit: one announcement only bounds the rate between
/// (L − R − 1) / T and (L − R) / T. With a small bucket (10 requests) that is a wide range (a
/// lane paced at (L − R) / T was refused again and again), so the bounds of successive
/// announcements are intersected: each narrows them, and the lane refills at their middle.
/// Bounds that stop overlapping mean the server changed its rate: the newest announcement
/// starts them anew.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Refill {
    /// The limit the bounds were learned for.
    limit: u64,
    /// Units per second, at least.
    lower: f64,
    /// Units per second, at most.
    upper: f64,
}

impl Refill {
    /// Takes one announcement of a bucket of `limit` into account; returns the limit to pace
    /// at: the bucket as burst, refilled at the middle of the bounds known (or at their upper
    /// end while no announcement bounded the rate from below: a lane that never empties the
    /// bucket by more than a unit is not held back by it). A full bucket, or one without a
    /// reset, tells no rate: the rate known so far stands, else nothing is learned.
    ///
    /// ```
    /// use std::time::Duration;
    /// use reqwest_throttle::limiter::pace::Refill;
    /// use reqwest_throttle::signals::Window;
    ///
    /// let window = |remaining, reset_ms| Window {
    ///     limit: Some(10),
    ///     remaining: Some(remaining),
    ///     reset_in: Some(Duration::from_millis(reset_ms)),
    /// };
    /// let mut refill = Refill::default();
    /// // 20 per second, level 8.6: "8 remaining, full in 70 ms" reads 28.6/s alone.
    /// refill.observe(window(8, 70), 10, None);
    /// // Emptied by a burst, "0 remaining, full in 500 ms": between 18/s and 20/s.
    /// let limit = refill.observe(window(0, 500), 10, None).unwrap();
    /// let per_second = 1.0 / limit.interval.as_secs_f64();
    /// assert!((per_second - 19.0).abs() < 1e-6, "{per_second}");
    /// assert_eq!(limit.burst, 10);
    /// ```
    pub fn observe(&mut self, window: Window, limit: u64, known: Option<Limit>) -> Option<Limit> {
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
        let rate = if self.lower > 0.0 {
            (self.lower + self.upper) / 2.0
        } else {
            self.upper
        };
        let interval = Duration::try_from_secs_f64(1.0 / rate).ok()?;
        Some(Limit {
            interval: interval.max(Duration::from_nanos(1)),
            burst: limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learner(cap: Duration) -> PaceLearner {
        PaceLearner::new(PaceConfig {
            configured: [None; 4],
            max_wait: cap,
        })
    }

    fn limits(requests: Option<Window>, tokens: Option<Window>) -> RateLimits {
        RateLimits {
            family: if requests.is_some() {
                HeaderFamily::GitHub
            } else {
                HeaderFamily::OpenAi
            },
            requests,
            tokens,
            input_tokens: None,
            output_tokens: None,
            resource: None,
        }
    }

    fn accepted<'a>(now: Instant, limits: &'a RateLimits) -> Observation<'a> {
        Observation {
            now,
            departed: now,
            answer: Answer::Accepted,
            pause: None,
            limits: Some(limits),
            answered: [1, 10, 0, 0],
            in_flight: InFlight {
                requests: 1,
                units: [1, 10, 0, 0],
            },
        }
    }

    fn plain(now: Instant, answer: Answer) -> Observation<'static> {
        Observation {
            now,
            departed: now,
            answer,
            pause: None,
            limits: None,
            answered: [1, 0, 0, 0],
            in_flight: InFlight {
                requests: 1,
                units: [1, 0, 0, 0],
            },
        }
    }

    /// A burst nobody stated starts at one and opens, empty, once the server has accepted as
    /// many requests as it holds; a refusal first keeps it at one.
    #[test]
    fn an_unstated_burst_is_earned() {
        let configured = Limit {
            interval: Duration::from_millis(20),
            burst: 5,
        };
        let config = PaceConfig {
            configured: [Some(configured), None, None, None],
            max_wait: Duration::from_secs(10),
        };
        let now = Instant::now();
        let mut learner = PaceLearner::new(config);
        let spaced = learner.earn_burst().unwrap();
        assert_eq!(
            spaced,
            Limit {
                burst: 1,
                ..configured
            }
        );
        for _ in 0..5 {
            assert!(learner.observe(&plain(now, Answer::Accepted)).is_empty());
            assert_eq!(learner.limit(Dimension::Requests), Some(spaced));
        }
        // Earned: it opens when the lane has a lull, empty.
        assert!(learner.has_earned_burst());
        let opened: Vec<_> = learner.open_earned_burst().iter().collect();
        assert_eq!(
            opened,
            [
                Action::SetLimit {
                    dimension: Dimension::Requests,
                    limit: Some(configured),
                    strict: false,
                    fresh: false,
                },
                Action::Sync {
                    dimension: Dimension::Requests,
                    remaining: 0,
                    credit: false,
                    refills_from: None,
                },
            ]
        );
        assert!(learner.open_earned_burst().is_empty());
        // Refused before the burst was earned: it stays at one, however much is accepted after.
        let mut learner = PaceLearner::new(config);
        learner.earn_burst();
        learner.observe(&plain(now, Answer::Accepted));
        learner.observe(&plain(now, Answer::RateLimited));
        for _ in 0..10 {
            learner.observe(&plain(now, Answer::Accepted));
        }
        assert!(!learner.has_earned_burst());
        assert!(learner.open_earned_burst().is_empty());
        assert_eq!(learner.limit(Dimension::Requests).unwrap().burst, 1);
        // A stated burst (or none to earn) starts as configured.
        let mut learner = PaceLearner::new(PaceConfig {
            configured: [Some(spaced), None, None, None],
            ..config
        });
        assert_eq!(learner.earn_burst(), None);
    }

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
    fn a_pace_from_an_absurd_reset_obeys_the_cap() {
        let mut learner = learner(Duration::from_secs(10));
        let now = Instant::now();
        let window = Window {
            limit: Some(100),
            remaining: Some(1),
            reset_in: Some(Duration::from_secs(3_600 * 1_000_000)),
        };
        let limits = limits(Some(window), None);
        let actions = learner.observe(&accepted(now, &limits));
        let set = actions
            .iter()
            .find_map(|action| match action {
                Action::SetLimit {
                    dimension: Dimension::Requests,
                    limit,
                    ..
                } => limit,
                _ => None,
            })
            .expect("paced");
        // Before: one request a day.
        assert_eq!(set.interval, Duration::from_secs(10));
        assert_eq!(learner.reset_at(), Some(now + Duration::from_secs(10)));
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

    #[test]
    fn idle_time_is_not_measured_as_traffic() {
        let mut learner = learner(Duration::from_secs(120));
        let start = Instant::now();
        let answer = |at: Instant, answer: Answer, pause: Option<Pause>| Observation {
            now: at,
            departed: at,
            answer,
            pause,
            limits: None,
            answered: [1, 0, 0, 0],
            in_flight: InFlight::default(),
        };
        learner.observe(&answer(start, Answer::Accepted, None));
        // 20 s idle, then 20 accepted in 100 ms and a refusal asking for 1 s.
        let busy = start + Duration::from_secs(20);
        for i in 0..20 {
            learner.observe(&answer(
                busy + Duration::from_millis(5 * i),
                Answer::Accepted,
                None,
            ));
        }
        let refused_at = busy + Duration::from_millis(100);
        let pause = Pause {
            dimension: None,
            delay: Duration::from_secs(1),
        };
        learner.observe(&answer(refused_at, Answer::RateLimited, Some(pause)));
        // 20 over the 1.1 s active cycle, not 21 over 21.1 s.
        let rate = 1.0
            / learner
                .limit(Dimension::Requests)
                .unwrap()
                .interval
                .as_secs_f64();
        assert!((17.0..=20.0).contains(&rate), "{rate}/s");
    }

    fn window_limits(remaining: u64, reset_in: Duration) -> RateLimits {
        RateLimits {
            family: HeaderFamily::Ietf,
            requests: Some(Window {
                limit: Some(10),
                remaining: Some(remaining),
                reset_in: Some(reset_in),
            }),
            tokens: None,
            input_tokens: None,
            output_tokens: None,
            resource: None,
        }
    }

    fn requests_limit(actions: &Actions) -> Option<(Limit, bool)> {
        actions.iter().find_map(|action| match action {
            Action::SetLimit {
                dimension: Dimension::Requests,
                limit: Some(limit),
                fresh,
                ..
            } => Some((limit, fresh)),
            _ => None,
        })
    }

    /// Flask-Limiter's moving window, 10 per second, announced as a whole-second epoch: once
    /// the lane paces near the quota, `remaining` stays put while the reset moves on a second
    /// at a time. Before, only a rise of `remaining` counted as a new window, so a first step
    /// of two seconds (a window the lane sat out) was the length for good and the lane kept
    /// to 5/s with 5 remaining, for ever.
    #[test]
    fn a_moving_window_is_measured_by_resets_that_move_on() {
        let mut learner = learner(Duration::from_secs(10));
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let at = |ms: u64| start + Duration::from_millis(ms);
        // An answer at `ms` announcing the reset at `epoch` (both from the start).
        let reset_at = |ms: u64, epoch: u64| at(epoch) - at(ms);
        learner.observe(&accepted(at(0), &window_limits(3, reset_at(0, 1_500))));
        // The lane sat the next second out: the following announcement steps two seconds.
        learner.observe(&accepted(
            at(1_600),
            &window_limits(5, reset_at(1_600, 3_500)),
        ));
        // Paced at the guessed quota, remaining stays at 5 while the reset moves on a second.
        for (ms, epoch) in [(2_600, 4_500), (3_600, 5_500), (4_600, 6_500)] {
            learner.observe(&accepted(at(ms), &window_limits(5, reset_at(ms, epoch))));
        }
        assert_eq!(learner.window_length, Some(second));
        let paced = learner.limit(Dimension::Requests).unwrap();
        assert_eq!(paced.interval, second / 10, "paced at the quota");
        // At remaining 0 it waits one quota interval, not the whole announced window.
        let actions = learner.observe(&accepted(
            at(4_700),
            &window_limits(0, reset_at(4_700, 6_500)),
        ));
        let until = actions.iter().find_map(|action| match action {
            Action::CoolDown { until, .. } => Some(until),
            _ => None,
        });
        assert_eq!(until, Some(at(4_700) + second / 10));
        // Counted from when the answered request left, not from its answer 30 ms later: the
        // next one is due a quota interval after it.
        let limits = window_limits(0, reset_at(4_830, 6_500));
        let actions = learner.observe(&Observation {
            departed: at(4_800),
            ..accepted(at(4_830), &limits)
        });
        let until = actions.iter().find_map(|action| match action {
            Action::CoolDown { until, .. } => Some(until),
            _ => None,
        });
        assert_eq!(until, Some(at(4_800) + second / 10));
    }

    /// A reset announced in whole seconds from now jitters by up to a second with the same
    /// `remaining` (another client's request between two of ours): that is never a window.
    #[test]
    fn a_jittering_reset_with_the_same_remaining_is_not_a_window() {
        let mut learner = learner(Duration::from_secs(120));
        let start = Instant::now();
        learner.observe(&accepted(start, &window_limits(5, Duration::from_secs(60))));
        let later = start + Duration::from_millis(300);
        learner.observe(&accepted(later, &window_limits(5, Duration::from_secs(60))));
        assert_eq!(learner.window_length, None);
    }

    /// A pace a third faster or more than the current one restarts the cell (`fresh`), so
    /// waiters booked at the slower pace book again; a small step keeps their slots.
    #[test]
    fn a_much_faster_pace_reprices_and_a_small_step_does_not() {
        let mut learner = learner(Duration::from_secs(10));
        let slow = Limit {
            interval: Duration::from_millis(500),
            burst: 1,
        };
        let mut actions = Actions::default();
        learner.set(Dimension::Requests, Some(slow), false, false, &mut actions);
        let faster = Limit {
            interval: Duration::from_millis(450),
            ..slow
        };
        let mut actions = Actions::default();
        learner.set(
            Dimension::Requests,
            Some(faster),
            false,
            false,
            &mut actions,
        );
        assert_eq!(requests_limit(&actions), Some((faster, false)));
        let much_faster = Limit {
            interval: Duration::from_millis(100),
            ..slow
        };
        let mut actions = Actions::default();
        learner.set(
            Dimension::Requests,
            Some(much_faster),
            false,
            false,
            &mut actions,
        );
        assert_eq!(requests_limit(&actions), Some((much_faster, true)));
    }

    /// Retry-After refusals with no headers: the first measures what the server accepted over
    /// the cycle; accepted requests then ramp the rate up (doubling every quarter cycle, at
    /// most twofold per request) until a refusal, after which the lane resumes at the step
    /// before, which the server accepted, and holds it. Before, the quota doubled once per
    /// cycle and a refusal halved it: 30 % of nginx's 50 r/s over 500 requests.
    #[test]
    fn retry_after_refusals_ramp_up_and_resume_at_the_step_before() {
        let mut learner = learner(Duration::from_secs(10));
        let start = Instant::now();
        let answer = retry_after_one_second;
        let ms = |ms: u64| start + Duration::from_millis(ms);
        for at in [100, 200, 300, 400, 500] {
            learner.observe(&answer(ms(at), Answer::Accepted));
        }
        learner.observe(&answer(ms(600), Answer::RateLimited));
        // Five accepted over the cycle from 100 ms to the end of the pause at 1 600 ms.
        let cycle = Duration::from_millis(1_500);
        assert_eq!(learner_rate_interval(&learner), learner_interval(cycle, 5));
        // Requests leave at the pace from the end of the pause on, each accepted.
        let mut at = ms(1_600);
        let mut rates = vec![1.0 / learner_rate_interval(&learner).as_secs_f64()];
        while *rates.last().unwrap() < 40.0 {
            at += learner_rate_interval(&learner);
            learner.observe(&answer(at, Answer::Accepted));
            rates.push(1.0 / learner_rate_interval(&learner).as_secs_f64());
        }
        for step in rates.windows(2) {
            assert!(
                step[1] > step[0] && step[1] <= step[0] * 2.0 + 1e-9,
                "{rates:?}"
            );
        }
        // From 3.3/s to 40/s, doubling every 375 ms: about 1.3 s, not six cycles (9 s).
        let ramp_time = at.duration_since(ms(1_600));
        assert!(ramp_time < Duration::from_millis(1_600), "{ramp_time:?}");
        let (refused_rate, accepted_rate) = (rates[rates.len() - 1], rates[rates.len() - 2]);
        // Refused at the last step: the lane resumes at the one before (less a 2 % margin), the
        // server's rate being within that small step.
        at += learner_rate_interval(&learner);
        learner.observe(&answer(at, Answer::RateLimited));
        let resumed = 1.0 / learner_rate_interval(&learner).as_secs_f64();
        let resumes_at = accepted_rate * RAMP_RESUME_MARGIN;
        assert!(
            (resumed - resumes_at).abs() < 1e-6,
            "{resumed} {accepted_rate}"
        );
        assert!(refused_rate <= accepted_rate * RAMP_CLOSE);
        // It holds there (never faster than what was accepted) cycle after cycle.
        for _ in 0..3 {
            let end = learner.reset_at().unwrap();
            learner.observe(&answer(end - Duration::from_millis(1), Answer::Accepted));
            learner.tick(end);
            let rate = 1.0 / learner_rate_interval(&learner).as_secs_f64();
            assert!(rate <= resumes_at && rate >= resumes_at * 0.97, "{rate}");
        }
    }

    /// A ramp refused after a large step (a slow server: twofold at 1/s) resumes at the step
    /// before and probes upwards from there, 5 % a cycle.
    #[test]
    fn a_ramp_refused_after_a_large_step_probes_upwards() {
        let mut learner = learner(Duration::from_secs(10));
        let start = Instant::now();
        let observation = retry_after_one_second;
        learner.observe(&observation(start, Answer::RateLimited));
        // Nothing accepted: one request per one-second pause.
        assert_eq!(learner_rate_interval(&learner), Duration::from_secs(1));
        let mut at = start + Duration::from_secs(1);
        learner.observe(&observation(at, Answer::Accepted));
        // Twofold at most: 2/s.
        assert_eq!(learner_rate_interval(&learner), Duration::from_millis(500));
        at += Duration::from_millis(500);
        learner.observe(&observation(at, Answer::RateLimited));
        // Back to the 1/s accepted (less the 2 % margin).
        let resumed = 1.0 / learner_rate_interval(&learner).as_secs_f64();
        assert!((resumed - RAMP_RESUME_MARGIN).abs() < 1e-6, "{resumed}");
        let end = learner.reset_at().unwrap();
        learner.observe(&observation(
            end - Duration::from_millis(1),
            Answer::Accepted,
        ));
        learner.tick(end);
        // One more per one-second cycle (5 %, at least one).
        assert_eq!(learner_rate_interval(&learner), Duration::from_millis(500));
    }

    /// One request answered at the instant it left: accepted, or refused with a Retry-After of
    /// one second and no rate-limit headers.
    fn retry_after_one_second(at: Instant, answer: Answer) -> Observation<'static> {
        Observation {
            now: at,
            departed: at,
            answer,
            pause: (answer == Answer::RateLimited).then_some(Pause {
                dimension: None,
                delay: Duration::from_secs(1),
            }),
            limits: None,
            answered: [1, 0, 0, 0],
            in_flight: InFlight {
                requests: 1,
                units: [1, 0, 0, 0],
            },
        }
    }

    fn learner_rate_interval(learner: &PaceLearner) -> Duration {
        learner.limit(Dimension::Requests).unwrap().interval
    }

    fn learner_interval(cycle: Duration, quota: u32) -> Duration {
        cycle / quota
    }
}

#[cfg(test)]
mod bucket_tests {
    use super::*;

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
    /// announced with resets like `50ms`: learned as such, not as per-minute limits (which
    /// stalled the lane at a sixtieth of the server's rate).
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
            answer: Answer::Accepted,
            pause: None,
            limits: Some(&limits),
            answered: [1, 100, 0, 0],
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
    /// the announced end stays put. Read as a bucket, the refill grew as the window ran out
    /// and the lane was refused near its end; read as a window, the lane paces at 30 per
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
                answer: Answer::Accepted,
                pause: None,
                limits: Some(&limits),
                answered: [1, 30, 0, 0],
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
}
