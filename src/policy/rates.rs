//! [`Rates`]: the limits of one dimension, a rate and any longer windows beside it (requests
//! per minute *and* per day), and their validation.

use super::error::{limit_field, PolicyError};
use super::rate::Rate;
use crate::limiter::{Dimension, Limit, RollingWindow};

/// The limits of one dimension: one [`Rate`], or several of different periods, such as the
/// requests per minute *and* per day a provider states for one key.
///
/// Whatever converts into it goes where a policy takes a limit
/// ([`Policy::requests`](crate::Policy::requests), [`tokens`](crate::Policy::tokens), …): a
/// `Rate`, an array, a slice or a `Vec` of them, in any order.
///
/// ```
/// use reqwest_throttle::{Policy, Rate, Rates};
///
/// let policy = Policy::new().requests([Rate::per_day(10_000), Rate::per_minute(500)]);
/// let requests = policy.configured_limits(reqwest_throttle::Dimension::Requests);
/// // The shortest first: it is the dimension's rate.
/// assert_eq!(requests.rate(), Some(Rate::per_minute(500)));
/// assert_eq!(requests.as_slice(), [Rate::per_minute(500), Rate::per_day(10_000)]);
/// assert_eq!(Rates::from(Rate::per_second(5)).as_slice(), [Rate::per_second(5)]);
/// ```
///
/// # What each limit does
///
/// The shortest is the dimension's **rate**, exactly as a single rate is: an exact GCRA with
/// its burst ([`Rate::burst`], earned when unstated), and the one the server's rate-limit
/// headers refine (a limit they announce replaces it, a refusal slows it). Each longer one is a
/// **rolling window**: at most its count in *any* span of its period (10 000 a day is never
/// 10 001 in 24 hours, however the minutes were spent), counted as requests leave and given
/// back when they are dropped or cost less than estimated. The windows book with the rate, all
/// or nothing; the server's signals do not change them, since a server announces one window
/// per dimension and its count of that one says nothing of a day's. With a shared store
/// (feature `redis`), the rate is the fleet's and the windows are each process's own.
///
/// Validated with the policy: two limits of one period, a longer limit that allows no more
/// than a shorter one (which would then never bind), or a burst on a longer limit (a window has
/// none) are refused, with the field and the fix named.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rates {
    /// Shortest period first (stable for equal periods, which validation refuses).
    rates: Vec<Rate>,
}

impl Rates {
    /// No limit.
    pub const fn none() -> Rates {
        Rates { rates: Vec::new() }
    }

    /// Whether there is no limit.
    pub fn is_empty(&self) -> bool {
        self.rates.is_empty()
    }

    /// The dimension's rate: the limit of the shortest period.
    pub fn rate(&self) -> Option<Rate> {
        self.rates.first().copied()
    }

    /// The longer limits, the rolling windows beside the rate, shortest first.
    pub fn windows(&self) -> &[Rate] {
        self.rates.get(1..).unwrap_or_default()
    }

    /// Every limit, shortest period first.
    pub fn as_slice(&self) -> &[Rate] {
        &self.rates
    }

    /// These limits with the rate's (the shortest one's) burst at `burst`.
    #[cfg_attr(not(feature = "serde"), allow(dead_code))]
    pub(crate) fn with_burst(mut self, burst: u64) -> Rates {
        if let Some(rate) = self.rates.first_mut() {
            *rate = rate.burst(burst);
        }
        self
    }

    /// Checks each rate and how they stand together; the error names `field` (`rate`,
    /// `tokens`, `input_tokens`, `output_tokens`, as a configuration file writes it).
    pub(crate) fn validate(&self, dimension: Dimension) -> Result<(), PolicyError> {
        let field = limit_field(dimension);
        for rate in &self.rates {
            rate.validate().map_err(|error| error.of_limit(dimension))?;
        }
        for pair in self.rates.windows(2) {
            let [shorter, longer] = [pair[0], pair[1]];
            if shorter.period() == longer.period() {
                return Err(PolicyError::SamePeriod {
                    field,
                    period: shorter.period(),
                    counts: [shorter.count(), longer.count()],
                });
            }
            if longer.count() <= shorter.count().max(shorter.burst_size()) {
                return Err(PolicyError::LongerAllowsLess {
                    field,
                    shorter: (shorter.count(), shorter.burst_size(), shorter.period()),
                    longer: (longer.count(), longer.period()),
                });
            }
        }
        if let Some(rate) = self.windows().iter().find(|rate| rate.is_burst_stated()) {
            return Err(PolicyError::BurstOnWindow {
                field,
                count: rate.count(),
                period: rate.period(),
            });
        }
        Ok(())
    }

    /// The rate as the limiter books it (an invalid one as none: validation refuses it first).
    pub(crate) fn limit(&self) -> Option<Limit> {
        self.rate().and_then(|rate| rate.limit().ok())
    }

    /// The longer limits as the limiter's rolling windows.
    pub(crate) fn rolling_windows(&self) -> Vec<RollingWindow> {
        self.windows()
            .iter()
            .map(|rate| RollingWindow::new(rate.count(), rate.period()))
            .collect()
    }
}

impl From<Rate> for Rates {
    fn from(rate: Rate) -> Rates {
        Rates { rates: vec![rate] }
    }
}

impl From<Vec<Rate>> for Rates {
    fn from(mut rates: Vec<Rate>) -> Rates {
        rates.sort_by_key(Rate::period);
        Rates { rates }
    }
}

impl From<&[Rate]> for Rates {
    fn from(rates: &[Rate]) -> Rates {
        Rates::from(rates.to_vec())
    }
}

impl<const N: usize> From<[Rate; N]> for Rates {
    fn from(rates: [Rate; N]) -> Rates {
        Rates::from(rates.to_vec())
    }
}

impl From<Option<Rate>> for Rates {
    /// One rate, or none.
    fn from(rate: Option<Rate>) -> Rates {
        Rates::from(Vec::from_iter(rate))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn limits_sort_by_period_and_split_into_a_rate_and_windows() {
        let rates = Rates::from([Rate::per_day(10_000), Rate::per_minute(500)]);
        assert_eq!(rates.rate(), Some(Rate::per_minute(500)));
        assert_eq!(rates.windows(), [Rate::per_day(10_000)]);
        assert_eq!(
            rates.rolling_windows(),
            [RollingWindow::new(10_000, Duration::from_secs(86_400))]
        );
        assert!(Rates::none().windows().is_empty());
        assert_eq!(Rates::from(None), Rates::none());
        assert!(rates.validate(Dimension::Requests).is_ok());
    }

    #[test]
    fn limits_that_make_no_sense_together_name_the_field_and_the_fix() {
        let cases = [
            (
                Dimension::Requests,
                vec![Rate::per_minute(500), Rate::per_minute(600)],
                "rate: two limits per 1m (500 and 600); keep one",
            ),
            (
                Dimension::Tokens,
                vec![Rate::per_minute(500), Rate::per_hour(400)],
                "tokens: the limit of 400 per 1h allows no more than the 500 per 1m before it, \
                 which would then never bind; raise the 1h limit above 500 or remove the 1m one",
            ),
            (
                Dimension::Requests,
                vec![Rate::per_minute(60).burst(100), Rate::per_hour(100)],
                "rate: the limit of 100 per 1h allows no more than the 60 per 1m before it (its \
                 burst is 100), which would then never bind; raise the 1h limit above 100 or \
                 remove the 1m one",
            ),
            (
                Dimension::OutputTokens,
                vec![Rate::per_minute(8_000), Rate::per_day(100_000).burst(10)],
                "output_tokens: a burst applies to the shortest limit only; the 100000 per 24h \
                 limit is a rolling window (at most 100000 in any 24h): remove its burst",
            ),
            (
                Dimension::InputTokens,
                vec![Rate::per_minute(10), Rate::per_day(0)],
                "input_tokens: the count must be at least 1 per period (got 0); remove it for no \
                 limit",
            ),
        ];
        for (dimension, rates, message) in cases {
            let error = Rates::from(rates).validate(dimension).unwrap_err();
            assert_eq!(error.to_string(), message);
        }
    }
}
