//! What goes into the pace learner and what comes out of it: an [`Observation`] of one answer
//! in, [`Actions`] on the lane's budget out, and the [`PaceConfig`] it is told once.
//!
//! These are plain values. The learner's owner builds an observation from what the classifier
//! judged and the signals parsed, and applies the actions to its
//! [`Budget`](crate::limiter::Budget); nothing here reads a clock or knows an HTTP type.

use std::time::Duration;

use tokio::time::Instant;

use crate::limiter::{Dimension, Limit};
use crate::signals::RateLimits;

/// The index of a dimension in per-dimension arrays.
pub(super) const fn slot(dimension: Dimension) -> usize {
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
    pub(super) fn configured(&self, dimension: Dimension) -> Option<Limit> {
        self.configured[slot(dimension)]
    }

    /// `learned`, never faster nor burstier than the configured limit of `dimension`: the
    /// longer interval and the smaller burst of the two (a lane that flipped between the two
    /// bursts would turn a full bucket into a second of delay at each flip).
    pub(super) fn never_faster(&self, dimension: Dimension, learned: Limit) -> Limit {
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
#[non_exhaustive]
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
#[non_exhaustive]
pub struct Pause {
    /// The exhausted dimension; `None` pauses the whole lane.
    pub dimension: Option<Dimension>,
    /// How long, as the server said it (uncapped).
    pub delay: Duration,
}

impl Pause {
    /// A pause of `delay`, of the whole lane (`dimension: None`) or of one exhausted dimension.
    ///
    /// ```
    /// use std::time::Duration;
    /// use reqwest_throttle::assess::Pause;
    ///
    /// let pause = Pause::new(None, Duration::from_secs(2));
    /// assert_eq!(pause.delay, Duration::from_secs(2));
    /// ```
    pub const fn new(dimension: Option<Dimension>, delay: Duration) -> Pause {
        Pause { dimension, delay }
    }
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
    /// When the answered attempt was booked (at or before `departed`): a refusal of an attempt
    /// booked before the pace last decreased answers the pace given up, even when it left
    /// after (a grant of a budget shared by a fleet keeps its slot when another worker slows
    /// the fleet down).
    pub booked: Instant,
    /// How the server answered.
    pub answer: Answer,
    /// The pause the server asked for (Retry-After on a refusal), uncapped: the learner caps it.
    pub pause: Option<Pause>,
    /// The rate-limit headers, if any.
    pub limits: Option<&'a RateLimits>,
    /// The answered attempt's booked units per dimension (indexed as [`Dimension::ALL`]): its
    /// estimate as corrected by what the server was learned to charge.
    pub answered: [u64; Dimension::ALL.len()],
    /// The answered attempt's estimate per dimension, before any correction; zeros when it was
    /// not estimated (a cost given by the caller), so that nothing is learned from it.
    pub estimated: [u64; Dimension::ALL.len()],
    /// The answered attempt's departure number in its lane: the server decided the lane's
    /// attempts in that order.
    pub seq: u64,
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
    /// The server charged `charged` units of `dimension` for a request the client estimated at
    /// `estimated`, as its own `remaining` tells: learn what it charges.
    Charged {
        /// The dimension.
        dimension: Dimension,
        /// What the client estimated.
        estimated: u64,
        /// What the server's limiter charged.
        charged: u64,
    },
}

/// The actions of one observation: at most a few, without allocating.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Actions {
    items: [Option<Action>; 16],
    len: usize,
}

impl Actions {
    pub(super) fn push(&mut self, action: Action) {
        // Sixteen is more than one observation can produce (per dimension a limit, a sync and
        // three charges read, and one pause or pace); more would be a bug, and is dropped.
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
