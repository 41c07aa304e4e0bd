//! The vocabulary of a budget: what it counts ([`Dimension`]), what a request costs in it
//! ([`Cost`]), the rate of one dimension ([`Limit`]; its longer limits are
//! [`RollingWindow`]s), and why a booking was refused ([`Blocked`]).
//!
//! These are plain values: they hold no state and know nothing of clocks, locks or queues, so
//! every other part of the limiter can speak them without depending on one another.

use std::time::Duration;

/// One thing a budget counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Dimension {
    /// Requests sent.
    Requests,
    /// Tokens, input and output together (OpenAI's TPM).
    Tokens,
    /// Input (prompt) tokens (Anthropic's ITPM).
    InputTokens,
    /// Output (completion) tokens (Anthropic's OTPM).
    OutputTokens,
}

impl Dimension {
    /// Every dimension, in index order.
    pub const ALL: [Dimension; 4] = [
        Dimension::Requests,
        Dimension::Tokens,
        Dimension::InputTokens,
        Dimension::OutputTokens,
    ];

    pub(crate) const fn index(self) -> usize {
        self as usize
    }

    /// A lower-case name for messages and stats: `requests`, `tokens`, `input tokens`, `output tokens`.
    pub const fn name(self) -> &'static str {
        match self {
            Dimension::Requests => "requests",
            Dimension::Tokens => "tokens",
            Dimension::InputTokens => "input tokens",
            Dimension::OutputTokens => "output tokens",
        }
    }
}

impl std::fmt::Display for Dimension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How many dimensions there are: the length of every per-dimension array.
pub(super) const DIMENSIONS: usize = Dimension::ALL.len();

/// What one request costs, per dimension.
///
/// ```
/// use reqwest_throttle::limiter::{Cost, Dimension};
///
/// let cost = Cost::requests(1).with(Dimension::Tokens, 1_200);
/// assert_eq!(cost.get(Dimension::Requests), 1);
/// assert_eq!(cost.get(Dimension::Tokens), 1_200);
/// assert_eq!(Cost::default(), Cost::requests(1));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Cost {
    units: [u64; DIMENSIONS],
}

impl Cost {
    /// A cost of `n` requests and nothing else.
    pub const fn requests(n: u64) -> Cost {
        Cost {
            units: [n, 0, 0, 0],
        }
    }

    /// A cost of nothing at all.
    pub const fn zero() -> Cost {
        Cost {
            units: [0; DIMENSIONS],
        }
    }

    /// This cost with `units` in `dimension`.
    #[must_use]
    pub const fn with(mut self, dimension: Dimension, units: u64) -> Cost {
        self.units[dimension.index()] = units;
        self
    }

    /// The units in `dimension`.
    pub const fn get(&self, dimension: Dimension) -> u64 {
        self.units[dimension.index()]
    }

    /// The dimensions this cost touches, with their units.
    pub fn iter(&self) -> impl Iterator<Item = (Dimension, u64)> + '_ {
        Dimension::ALL
            .into_iter()
            .map(|d| (d, self.get(d)))
            .filter(|(_, units)| *units > 0)
    }
}

impl Default for Cost {
    /// One request.
    fn default() -> Cost {
        Cost::requests(1)
    }
}

/// A rate for one dimension of a budget, as the GCRA sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limit {
    /// How long one unit occupies the dimension (period / rate).
    pub interval: Duration,
    /// How many units may go at once.
    pub burst: u64,
}

impl Limit {
    /// One unit per `interval`, `burst` at once.
    ///
    /// ```
    /// use std::time::Duration;
    /// use reqwest_throttle::limiter::Limit;
    ///
    /// let ten_per_second = Limit::new(Duration::from_millis(100), 10);
    /// assert_eq!(ten_per_second.burst, 10);
    /// ```
    pub const fn new(interval: Duration, burst: u64) -> Limit {
        Limit { interval, burst }
    }
}

/// At most `quota` units in any span of `period`: a longer limit of one dimension, beside its
/// rate (see [`Budget::set_windows`](super::Budget::set_windows)).
///
/// ```
/// use std::time::Duration;
/// use reqwest_throttle::limiter::RollingWindow;
///
/// let per_day = RollingWindow::new(10_000, Duration::from_secs(86_400));
/// assert_eq!(per_day.quota, 10_000);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct RollingWindow {
    /// The most units any span of `period` holds.
    pub quota: u64,
    /// The length of the span.
    pub period: Duration,
}

impl RollingWindow {
    /// At most `quota` units in any span of `period`.
    pub const fn new(quota: u64, period: Duration) -> RollingWindow {
        RollingWindow { quota, period }
    }
}

#[cfg(test)]
impl Limit {
    /// `rate` units a second, `burst` at once: the unit tests' shorthand.
    pub(super) fn per_second(rate: u32, burst: u64) -> Limit {
        Limit {
            interval: Duration::from_secs(1) / rate,
            burst,
        }
    }
}

/// Why a reservation could not be made within the time allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Blocked {
    /// The dimension's rate: the slot is `wait` away.
    Rate {
        /// The dimension that is slowest.
        dimension: Dimension,
        /// How long until the slot.
        wait: Duration,
    },
    /// A longer window of the dimension ([`Budget::set_windows`](super::Budget::set_windows))
    /// is spent: it has room for the cost `wait` from now.
    Window {
        /// The dimension whose window is spent.
        dimension: Dimension,
        /// The window: its quota and period.
        window: RollingWindow,
        /// How long until it has room.
        wait: Duration,
    },
    /// A cooldown set by the server (Retry-After, rate-limit reset) lasts `wait` longer.
    Cooldown {
        /// The dimension cooling down; `None` when the whole lane is.
        dimension: Option<Dimension>,
        /// How long the cooldown still lasts.
        wait: Duration,
    },
    /// The cost is larger than the dimension could ever admit at once.
    NeverFits {
        /// The dimension that is too small.
        dimension: Dimension,
        /// The cost in that dimension.
        cost: u64,
        /// The most the dimension admits at once (its burst, or the quota of a window smaller
        /// than that).
        burst: u64,
    },
}

impl Blocked {
    /// How long the caller would have to wait; `None` for a cost that never fits.
    pub fn wait(&self) -> Option<Duration> {
        match self {
            Blocked::Rate { wait, .. }
            | Blocked::Window { wait, .. }
            | Blocked::Cooldown { wait, .. } => Some(*wait),
            Blocked::NeverFits { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cost_iterates_only_the_dimensions_it_touches() {
        let cost = Cost::zero()
            .with(Dimension::InputTokens, 300)
            .with(Dimension::OutputTokens, 50);
        assert_eq!(
            cost.iter().collect::<Vec<_>>(),
            vec![(Dimension::InputTokens, 300), (Dimension::OutputTokens, 50)]
        );
        assert_eq!(Cost::zero().iter().count(), 0);
    }

    #[test]
    fn only_a_cost_that_never_fits_has_no_wait() {
        let wait = Duration::from_secs(2);
        let rate = Blocked::Rate {
            dimension: Dimension::Tokens,
            wait,
        };
        let cooldown = Blocked::Cooldown {
            dimension: None,
            wait,
        };
        assert_eq!(rate.wait(), Some(wait));
        assert_eq!(cooldown.wait(), Some(wait));
        let never = Blocked::NeverFits {
            dimension: Dimension::Tokens,
            cost: 2,
            burst: 1,
        };
        assert_eq!(never.wait(), None);
    }
}
