//! [`Rate`]: so many units per period, its validation against what the limiter can represent,
//! and its text form (`600/min`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::error::PolicyError;
use crate::limiter::Limit;

/// What a rate's own errors name: a rate on its own is the requests rate (a policy's token
/// limits rename it, see `PolicyError::of_limit`).
const RATE: &str = "rate";

/// A rate: `count` units per `period`, of which `burst` may go at once.
///
/// ```
/// use std::time::Duration;
/// use reqwest_throttle::Rate;
///
/// let rate = Rate::per_minute(600).burst(10);
/// assert_eq!(rate.interval(), Duration::from_millis(100));
/// assert_eq!(rate.burst_size(), 10);
/// assert_eq!("5000/h".parse::<Rate>().unwrap(), Rate::per_hour(5_000));
/// assert!(Rate::per_second(0).validate().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rate {
    count: u64,
    period: Duration,
    burst: Option<u64>,
}

impl Rate {
    /// `count` units per `period`; the burst defaults to `count` (the whole period's allowance),
    /// earned by the lane first (see [`is_burst_stated`](Self::is_burst_stated)).
    pub const fn new(count: u64, period: Duration) -> Rate {
        Rate {
            count,
            period,
            burst: None,
        }
    }

    /// `count` units per second.
    pub const fn per_second(count: u64) -> Rate {
        Rate::new(count, Duration::from_secs(1))
    }

    /// `count` units per minute.
    pub const fn per_minute(count: u64) -> Rate {
        Rate::new(count, Duration::from_secs(60))
    }

    /// `count` units per hour.
    pub const fn per_hour(count: u64) -> Rate {
        Rate::new(count, Duration::from_secs(3_600))
    }

    /// `count` units per day (24 hours, not a calendar day): beside a shorter rate, a rolling
    /// window (see [`Rates`](crate::Rates)).
    ///
    /// ```
    /// use reqwest_throttle::Rate;
    ///
    /// assert_eq!(Rate::per_day(10_000), "10000/d".parse().unwrap());
    /// ```
    pub const fn per_day(count: u64) -> Rate {
        Rate::new(count, Duration::from_secs(86_400))
    }

    /// At most `burst` units at once (default: the whole `count`).
    #[must_use]
    pub const fn burst(mut self, burst: u64) -> Rate {
        self.burst = Some(burst);
        self
    }

    /// Units per period.
    pub const fn count(&self) -> u64 {
        self.count
    }

    /// The period.
    pub const fn period(&self) -> Duration {
        self.period
    }

    /// Whether the burst was stated ([`burst`](Self::burst)) rather than left to its default.
    /// A lane earns an unstated burst: it sends one request at a time until the server has
    /// accepted a whole burst's worth without refusing (a server without burst, such as nginx
    /// `limit_req` without `burst=`, refuses most of a burst sent at once), then allows the
    /// burst. A lane whose budget a fleet shares through a store never opens an unstated
    /// burst: no worker can tell the fleet's lull from its own; state it to have it there.
    ///
    /// ```
    /// use reqwest_throttle::Rate;
    ///
    /// assert!(!Rate::per_second(50).is_burst_stated());
    /// assert!(Rate::per_second(50).burst(50).is_burst_stated());
    /// ```
    pub const fn is_burst_stated(&self) -> bool {
        self.burst.is_some()
    }

    /// Units that may go at once.
    pub const fn burst_size(&self) -> u64 {
        match self.burst {
            Some(burst) => burst,
            None => self.count,
        }
    }

    /// How long one unit occupies the limiter: `period / count` (zero for an invalid rate).
    pub fn interval(&self) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let nanos = self.period.as_nanos() / u128::from(self.count);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Units per second, for display and stats.
    pub fn per_second_f64(&self) -> f64 {
        if self.period.is_zero() {
            return f64::INFINITY;
        }
        self.count as f64 / self.period.as_secs_f64()
    }

    /// Checks the rate can be represented exactly by the limiter.
    pub fn validate(&self) -> Result<(), PolicyError> {
        self.limit().map(|_| ())
    }

    /// The limiter's view of this rate, validated.
    pub fn limit(&self) -> Result<Limit, PolicyError> {
        if self.count == 0 {
            return Err(PolicyError::ZeroRate { field: RATE });
        }
        if self.period.is_zero() {
            return Err(PolicyError::ZeroPeriod { field: RATE });
        }
        let interval_nanos = self.period.as_nanos() / u128::from(self.count);
        if interval_nanos > u128::from(u64::MAX) {
            return Err(PolicyError::TooSlow {
                field: RATE,
                count: self.count,
                period: self.period,
            });
        }
        let interval = self.interval();
        if interval.is_zero() {
            return Err(PolicyError::TooFast {
                field: RATE,
                count: self.count,
                period: self.period,
            });
        }
        let burst = self.burst_size();
        if burst == 0 {
            return Err(PolicyError::ZeroBurst { field: RATE });
        }
        let tolerance = interval.as_nanos().checked_mul(u128::from(burst));
        if tolerance.is_none_or(|nanos| nanos > u128::from(u64::MAX)) {
            return Err(PolicyError::BurstOverflow {
                field: RATE,
                burst,
                interval,
            });
        }
        Ok(Limit { interval, burst })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{:?}", self.count, self.period)?;
        if let Some(burst) = self.burst {
            write!(f, " (burst {burst})")?;
        }
        Ok(())
    }
}

impl FromStr for Rate {
    type Err = PolicyError;

    /// Parses `COUNT/PERIOD`: `10/s`, `600/min`, `5000/h`, `100/10s`, `1/500ms`, `86400/d`.
    fn from_str(text: &str) -> Result<Rate, PolicyError> {
        let bad = || PolicyError::BadRateText {
            text: text.to_owned(),
        };
        let (count, period) = text.trim().split_once('/').ok_or_else(bad)?;
        let count: u64 = count.trim().parse().map_err(|_| bad())?;
        let period = period.trim();
        let split = period.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (multiplier, unit) = period.split_at(split);
        let multiplier: u32 = if multiplier.is_empty() {
            1
        } else {
            multiplier.parse().map_err(|_| bad())?
        };
        let unit = match unit {
            "ms" => Duration::from_millis(1),
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3_600),
            "d" | "day" => Duration::from_secs(86_400),
            _ => return Err(bad()),
        };
        let period = unit.checked_mul(multiplier).ok_or_else(bad)?;
        let rate = Rate::new(count, period);
        rate.validate()?;
        Ok(rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_interval_and_default_burst() {
        let rate = Rate::per_second(4);
        assert_eq!(rate.interval(), Duration::from_millis(250));
        assert_eq!(rate.burst_size(), 4);
        assert_eq!(rate.limit().unwrap().burst, 4);
    }

    #[test]
    fn every_invalid_rate_names_its_field() {
        let cases = [
            (Rate::per_second(0), "rate:"),
            (Rate::new(5, Duration::ZERO), "rate:"),
            (Rate::new(2_000_000_000, Duration::from_secs(1)), "rate:"),
            (Rate::per_second(1).burst(0), "burst:"),
            (Rate::per_hour(1).burst(u64::MAX), "burst:"),
            (Rate::new(1, Duration::MAX), "rate:"),
        ];
        for (rate, field) in cases {
            let message = rate.validate().unwrap_err().to_string();
            assert!(message.starts_with(field), "{rate}: {message}");
        }
    }

    #[test]
    fn rates_parse_from_text() {
        assert_eq!("10/s".parse::<Rate>(), Ok(Rate::per_second(10)));
        assert_eq!(" 600 / min ".parse::<Rate>(), Ok(Rate::per_minute(600)));
        assert_eq!(
            "100/10s".parse::<Rate>(),
            Ok(Rate::new(100, Duration::from_secs(10)))
        );
        assert_eq!(
            "1/500ms".parse::<Rate>(),
            Ok(Rate::new(1, Duration::from_millis(500)))
        );
        for bad in [
            "",
            "10",
            "10/",
            "/s",
            "-1/s",
            "10/fortnight",
            "1.5/s",
            "0/s",
            "10/0s",
        ] {
            assert!(bad.parse::<Rate>().is_err(), "{bad:?} parsed");
        }
        let message = "10/x".parse::<Rate>().unwrap_err().to_string();
        assert!(message.contains("10/x"), "{message}");
    }
}
