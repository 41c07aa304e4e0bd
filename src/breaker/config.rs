//! What trips a breaker, how long it stays open, and what counts as a failure.

use std::time::Duration;

use http::StatusCode;

/// The largest [`FailureWindow::Count`] accepted: the window keeps one bit of memory per call,
/// and a rate over more than a million calls reacts too slowly to protect anything.
pub const MAX_COUNT_WINDOW: u32 = 1_000_000;

/// What a finished call means to the breaker.
///
/// # Example
///
/// ```
/// use http::StatusCode;
/// use reqwest_throttle::breaker::{BreakerConfig, Outcome};
///
/// let config = BreakerConfig::default();
/// assert_eq!(config.classify_status(StatusCode::SERVICE_UNAVAILABLE), Outcome::Failure);
/// assert_eq!(config.classify_status(StatusCode::NOT_FOUND), Outcome::Success);
/// assert_eq!(config.classify_status(StatusCode::TOO_MANY_REQUESTS), Outcome::Ignored);
/// ```
///
/// This type is frozen: an attempt succeeded, failed, or does not count, and nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The service answered: closes a half-open breaker, resets the consecutive-failure count.
    Success,
    /// The service is unwell (connect error, timeout, a failure status): counts toward a trip.
    Failure,
    /// Says nothing about the service's health (429 throttling, a call cancelled by the caller):
    /// counted nowhere, and a half-open probe slot it held is released.
    Ignored,
}

/// The sliding window over which [`BreakerConfig::failure_rate`] is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureWindow {
    /// The last `n` calls (1 ..= [`MAX_COUNT_WINDOW`]).
    Count(u32),
    /// The calls of the last `d`. Measured in ten buckets of `d / 10`, so a call leaves the
    /// window between `0.9 × d` and `d` after it was recorded, and memory stays constant at any
    /// request rate.
    Time(Duration),
}

/// A failure-rate trip condition: see [`BreakerConfig::failure_rate`].
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct FailureRate {
    /// Fraction of failed calls, in `(0, 1]`, at or above which the breaker trips.
    pub threshold: f64,
    /// The window the rate is measured over.
    pub window: FailureWindow,
    /// The rate is not evaluated until the window holds at least this many calls.
    pub min_calls: u32,
}

/// Configuration of a [`Breaker`](super::Breaker): builder-style setters over HTTP defaults.
///
/// | setting | default | why |
/// |---|---|---|
/// | [`consecutive_failures`](Self::consecutive_failures) | 5 | a handful of failures in a row is an outage, not noise |
/// | [`failure_rate`](Self::failure_rate) | off | opt in for services that fail partially |
/// | [`open_for`](Self::open_for) | 5 s, doubling to 60 s | fail fast, but probe again soon |
/// | [`jitter`](Self::jitter) | 0.2 | clients that tripped together do not probe together |
/// | [`healthy_after`](Self::healthy_after) | 60 s | a minute closed forgives past trips |
/// | [`half_open_probes`](Self::half_open_probes) | 1 | one request tests the water |
/// | [`successes_to_close`](Self::successes_to_close) | 1 | one good answer reopens the floodgates |
/// | [`probe_timeout`](Self::probe_timeout) | 60 s | a hung probe must not wedge the breaker half-open |
/// | [`failure_statuses`](Self::failure_statuses) | 408, 500, 502, 503, 504 | the server (or a proxy) says it cannot serve |
///
/// 429 is never a failure: it is throttling, handled by the lane's cooldown, and a storm of
/// them must not cut a lane off. Other 4xx are successes: the service answered.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use reqwest_throttle::breaker::{BreakerConfig, FailureWindow};
///
/// let config = BreakerConfig::default()
///     .consecutive_failures(10)
///     .failure_rate(0.5, FailureWindow::Time(Duration::from_secs(30)), 20)
///     .open_for(Duration::from_secs(2), Duration::from_secs(30))
///     .half_open_probes(2)
///     .successes_to_close(2);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct BreakerConfig {
    consecutive_failures: Option<u32>,
    failure_rate: Option<FailureRate>,
    open_base: Duration,
    open_max: Duration,
    jitter: f64,
    healthy_after: Duration,
    half_open_probes: u32,
    successes_to_close: u32,
    probe_timeout: Option<Duration>,
    failure_statuses: Vec<StatusCode>,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            consecutive_failures: Some(5),
            failure_rate: None,
            open_base: Duration::from_secs(5),
            open_max: Duration::from_secs(60),
            jitter: 0.2,
            healthy_after: Duration::from_secs(60),
            half_open_probes: 1,
            successes_to_close: 1,
            probe_timeout: Some(Duration::from_secs(60)),
            failure_statuses: default_failure_statuses(),
        }
    }
}

fn default_failure_statuses() -> Vec<StatusCode> {
    vec![
        StatusCode::REQUEST_TIMEOUT,
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::BAD_GATEWAY,
        StatusCode::SERVICE_UNAVAILABLE,
        StatusCode::GATEWAY_TIMEOUT,
    ]
}

impl BreakerConfig {
    /// Trip after `n` failures in a row (default 5): the `n`-th trips, the `n - 1`-th does not.
    /// A success in between starts the count again; an [`Outcome::Ignored`] does not.
    #[must_use]
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.consecutive_failures = Some(n);
        self
    }

    /// Do not trip on consecutive failures; only the [`failure_rate`](Self::failure_rate)
    /// condition (which must then be set) trips the breaker.
    #[must_use]
    pub fn without_consecutive_failures(mut self) -> Self {
        self.consecutive_failures = None;
        self
    }

    /// Also trip when at least `threshold` (a fraction in `(0, 1]`: 0.5 is 50 %) of the calls
    /// in `window` failed, once the window holds at least `min_calls` calls. Off by default.
    /// Either condition trips the breaker.
    #[must_use]
    pub fn failure_rate(mut self, threshold: f64, window: FailureWindow, min_calls: u32) -> Self {
        self.failure_rate = Some(FailureRate {
            threshold,
            window,
            min_calls,
        });
        self
    }

    /// Stay open for `base` after a first trip, doubling on each repeated trip (a failed probe,
    /// or a trip within [`healthy_after`](Self::healthy_after) of the last close), capped at `max`.
    #[must_use]
    pub fn open_for(mut self, base: Duration, max: Duration) -> Self {
        self.open_base = base;
        self.open_max = max;
        self
    }

    /// Shorten each open period by a random fraction of up to `fraction` (in `[0, 1]`), so many
    /// clients that tripped together spread their probes. The period never exceeds the nominal
    /// one (and so never the `max` of [`open_for`](Self::open_for)).
    #[must_use]
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction;
        self
    }

    /// After this long closed, past trips are forgotten: the next trip opens for the base
    /// duration again.
    #[must_use]
    pub fn healthy_after(mut self, d: Duration) -> Self {
        self.healthy_after = d;
        self
    }

    /// How many probe calls a half-open breaker lets through at a time (default 1).
    #[must_use]
    pub fn half_open_probes(mut self, n: u32) -> Self {
        self.half_open_probes = n;
        self
    }

    /// How many successful probes close a half-open breaker (default 1). Any failed probe
    /// reopens it.
    #[must_use]
    pub fn successes_to_close(mut self, n: u32) -> Self {
        self.successes_to_close = n;
        self
    }

    /// A probe neither recorded nor dropped within `d` counts as failed: the breaker reopens
    /// instead of waiting half-open forever on a hung call. Default 60 s; raise it for services
    /// whose healthy answers take longer (LLM completions).
    #[must_use]
    pub fn probe_timeout(mut self, d: Duration) -> Self {
        self.probe_timeout = Some(d);
        self
    }

    /// Wait for probes as long as they take (only recording or dropping them ends them).
    #[must_use]
    pub fn without_probe_timeout(mut self) -> Self {
        self.probe_timeout = None;
        self
    }

    /// The statuses that count as failures, replacing the default 408, 500, 502, 503, 504.
    /// 429 may not be listed (see [`validate`](Self::validate)).
    #[must_use]
    pub fn failure_statuses(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        let mut statuses: Vec<StatusCode> = statuses.into_iter().collect();
        statuses.sort_unstable();
        statuses.dedup();
        self.failure_statuses = statuses;
        self
    }

    /// Checks every setting; the error names the offending field and says how to fix it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use reqwest_throttle::breaker::BreakerConfig;
    ///
    /// let err = BreakerConfig::default()
    ///     .open_for(Duration::from_secs(10), Duration::from_secs(1))
    ///     .validate()
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("open_for"));
    /// ```
    pub fn validate(&self) -> Result<(), BreakerConfigError> {
        if self.consecutive_failures == Some(0) {
            return Err(BreakerConfigError::ConsecutiveFailuresZero);
        }
        if let Some(rate) = &self.failure_rate {
            if !(rate.threshold > 0.0 && rate.threshold <= 1.0) {
                return Err(BreakerConfigError::RateThreshold(rate.threshold));
            }
            if rate.min_calls == 0 {
                return Err(BreakerConfigError::MinCallsZero);
            }
            match rate.window {
                FailureWindow::Count(n) if n == 0 || n > MAX_COUNT_WINDOW => {
                    return Err(BreakerConfigError::CountWindow(n));
                }
                FailureWindow::Count(n) if rate.min_calls > n => {
                    return Err(BreakerConfigError::MinCallsAboveWindow {
                        min_calls: rate.min_calls,
                        window: n,
                    });
                }
                FailureWindow::Time(d) if d < Duration::from_millis(1) => {
                    return Err(BreakerConfigError::TimeWindow(d));
                }
                _ => {}
            }
        }
        if self.consecutive_failures.is_none() && self.failure_rate.is_none() {
            return Err(BreakerConfigError::NoTripCondition);
        }
        if self.open_base.is_zero() {
            return Err(BreakerConfigError::OpenForZero);
        }
        if self.open_max < self.open_base {
            return Err(BreakerConfigError::OpenForMaxBelowBase {
                base: self.open_base,
                max: self.open_max,
            });
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(BreakerConfigError::Jitter(self.jitter));
        }
        if self.half_open_probes == 0 {
            return Err(BreakerConfigError::HalfOpenProbesZero);
        }
        if self.successes_to_close == 0 {
            return Err(BreakerConfigError::SuccessesToCloseZero);
        }
        if self.probe_timeout.is_some_and(|d| d.is_zero()) {
            return Err(BreakerConfigError::ProbeTimeoutZero);
        }
        if self
            .failure_statuses
            .contains(&StatusCode::TOO_MANY_REQUESTS)
        {
            return Err(BreakerConfigError::TooManyRequestsAsFailure);
        }
        Ok(())
    }

    /// What a response status means to the breaker: 429 is [`Outcome::Ignored`] (throttling,
    /// never a failure), a listed [`failure_statuses`](Self::failure_statuses) entry is
    /// [`Outcome::Failure`], anything else is [`Outcome::Success`] (the service answered).
    pub fn classify_status(&self, status: StatusCode) -> Outcome {
        if status == StatusCode::TOO_MANY_REQUESTS {
            Outcome::Ignored
        } else if self.failure_statuses.binary_search(&status).is_ok() {
            Outcome::Failure
        } else {
            Outcome::Success
        }
    }

    /// The consecutive-failure threshold, or `None` when only the failure rate trips.
    pub fn configured_consecutive_failures(&self) -> Option<u32> {
        self.consecutive_failures
    }

    /// The failure-rate trip condition, if set.
    pub fn configured_failure_rate(&self) -> Option<FailureRate> {
        self.failure_rate
    }

    /// The base and maximum open durations.
    pub fn configured_open_for(&self) -> (Duration, Duration) {
        (self.open_base, self.open_max)
    }

    /// The statuses counted as failures, sorted.
    pub fn configured_failure_statuses(&self) -> &[StatusCode] {
        &self.failure_statuses
    }

    pub(super) fn jitter_fraction(&self) -> f64 {
        self.jitter
    }

    pub(super) fn healthy_period(&self) -> Duration {
        self.healthy_after
    }

    pub(super) fn probe_limit(&self) -> u32 {
        self.half_open_probes
    }

    pub(super) fn close_after(&self) -> u32 {
        self.successes_to_close
    }

    pub(super) fn probe_deadline(&self) -> Option<Duration> {
        self.probe_timeout
    }

    /// A copy in which every invalid field is replaced by its default (or the nearest valid
    /// value), so a breaker built from a bad config still behaves sensibly instead of panicking.
    pub(super) fn sanitized(mut self) -> Self {
        let defaults = BreakerConfig::default();
        if self.consecutive_failures == Some(0) {
            self.consecutive_failures = defaults.consecutive_failures;
        }
        if let Some(rate) = &mut self.failure_rate {
            let threshold_ok = rate.threshold > 0.0 && rate.threshold <= 1.0;
            let window_ok = match rate.window {
                FailureWindow::Count(n) => (1..=MAX_COUNT_WINDOW).contains(&n),
                FailureWindow::Time(d) => d >= Duration::from_millis(1),
            };
            if !threshold_ok || !window_ok {
                self.failure_rate = None;
            } else {
                rate.min_calls = rate.min_calls.max(1);
                if let FailureWindow::Count(n) = rate.window {
                    rate.min_calls = rate.min_calls.min(n);
                }
            }
        }
        if self.consecutive_failures.is_none() && self.failure_rate.is_none() {
            self.consecutive_failures = defaults.consecutive_failures;
        }
        if self.open_base.is_zero() {
            self.open_base = defaults.open_base;
        }
        self.open_max = self.open_max.max(self.open_base);
        if !(0.0..=1.0).contains(&self.jitter) {
            self.jitter = defaults.jitter;
        }
        self.half_open_probes = self.half_open_probes.max(1);
        self.successes_to_close = self.successes_to_close.max(1);
        if self.probe_timeout.is_some_and(|d| d.is_zero()) {
            self.probe_timeout = defaults.probe_timeout;
        }
        self.failure_statuses
            .retain(|s| *s != StatusCode::TOO_MANY_REQUESTS);
        self
    }
}

/// A [`BreakerConfig`] setting that cannot work; the message names the field and the fix.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BreakerConfigError {
    /// `consecutive_failures(0)`.
    #[error("breaker consecutive_failures must be at least 1 (got 0); use without_consecutive_failures() to trip on the failure rate alone")]
    ConsecutiveFailuresZero,
    /// The failure-rate threshold is outside `(0, 1]`.
    #[error(
        "breaker failure_rate threshold must be a fraction in (0, 1] such as 0.5 for 50% (got {0})"
    )]
    RateThreshold(f64),
    /// `min_calls` of zero.
    #[error("breaker failure_rate min_calls must be at least 1 (got 0)")]
    MinCallsZero,
    /// A count window of zero calls or above [`MAX_COUNT_WINDOW`].
    #[error(
        "breaker failure_rate window Count({0}) must hold between 1 and {MAX_COUNT_WINDOW} calls"
    )]
    CountWindow(u32),
    /// `min_calls` larger than the count window: the rate could never be evaluated.
    #[error("breaker failure_rate min_calls ({min_calls}) exceeds the Count({window}) window, so the rate would never be evaluated; lower min_calls or widen the window")]
    MinCallsAboveWindow {
        /// The configured minimum.
        min_calls: u32,
        /// The window size.
        window: u32,
    },
    /// A time window under a millisecond.
    #[error("breaker failure_rate window Time({0:?}) must be at least 1ms")]
    TimeWindow(Duration),
    /// Neither trip condition is set.
    #[error("breaker has no trip condition: set consecutive_failures(n) or failure_rate(..)")]
    NoTripCondition,
    /// A zero base open duration.
    #[error("breaker open_for base must be positive (got 0s): a breaker that reopens at once protects nothing")]
    OpenForZero,
    /// The cap is below the base.
    #[error("breaker open_for max ({max:?}) is below its base ({base:?}); make max at least base")]
    OpenForMaxBelowBase {
        /// The base duration.
        base: Duration,
        /// The cap.
        max: Duration,
    },
    /// Jitter outside `[0, 1]`.
    #[error("breaker jitter must be a fraction in [0, 1] (got {0})")]
    Jitter(f64),
    /// `half_open_probes(0)`: the breaker could never close again.
    #[error("breaker half_open_probes must be at least 1 (got 0): without probes an open breaker never closes")]
    HalfOpenProbesZero,
    /// `successes_to_close(0)`.
    #[error("breaker successes_to_close must be at least 1 (got 0)")]
    SuccessesToCloseZero,
    /// A zero probe timeout: every probe would fail at once.
    #[error("breaker probe_timeout must be positive (got 0s); use without_probe_timeout() to wait for probes indefinitely")]
    ProbeTimeoutZero,
    /// 429 listed as a failure status.
    #[error("breaker failure_statuses lists 429 Too Many Requests: 429 is throttling, handled by the lane's cooldown, and never trips the breaker; remove it")]
    TooManyRequestsAsFailure,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_classify_http_statuses() {
        let config = BreakerConfig::default();
        assert_eq!(config.validate(), Ok(()));
        for code in [408, 500, 502, 503, 504] {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(config.classify_status(status), Outcome::Failure, "{code}");
        }
        for code in [
            200, 201, 204, 301, 304, 400, 401, 403, 404, 409, 422, 501, 505,
        ] {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(config.classify_status(status), Outcome::Success, "{code}");
        }
        assert_eq!(
            config.classify_status(StatusCode::TOO_MANY_REQUESTS),
            Outcome::Ignored
        );
    }

    #[test]
    fn custom_failure_statuses_replace_the_defaults() {
        let config = BreakerConfig::default().failure_statuses([
            StatusCode::NOT_IMPLEMENTED,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::NOT_IMPLEMENTED,
        ]);
        assert_eq!(
            config.configured_failure_statuses(),
            &[StatusCode::NOT_IMPLEMENTED, StatusCode::SERVICE_UNAVAILABLE]
        );
        assert_eq!(
            config.classify_status(StatusCode::NOT_IMPLEMENTED),
            Outcome::Failure
        );
        assert_eq!(
            config.classify_status(StatusCode::INTERNAL_SERVER_ERROR),
            Outcome::Success
        );
    }

    #[test]
    fn listing_429_is_rejected_and_still_ignored() {
        let config = BreakerConfig::default().failure_statuses([StatusCode::TOO_MANY_REQUESTS]);
        let err = config.validate().unwrap_err();
        assert_eq!(err, BreakerConfigError::TooManyRequestsAsFailure);
        assert!(err.to_string().contains("failure_statuses"));
        assert_eq!(
            config.classify_status(StatusCode::TOO_MANY_REQUESTS),
            Outcome::Ignored
        );
    }

    #[test]
    fn each_invalid_field_is_named_in_the_error() {
        let secs = Duration::from_secs;
        let cases: Vec<(BreakerConfig, &str)> = vec![
            (
                BreakerConfig::default().consecutive_failures(0),
                "consecutive_failures",
            ),
            (
                BreakerConfig::default().failure_rate(0.0, FailureWindow::Count(10), 5),
                "threshold",
            ),
            (
                BreakerConfig::default().failure_rate(f64::NAN, FailureWindow::Count(10), 5),
                "threshold",
            ),
            (
                BreakerConfig::default().failure_rate(1.5, FailureWindow::Count(10), 5),
                "threshold",
            ),
            (
                BreakerConfig::default().failure_rate(0.5, FailureWindow::Count(10), 0),
                "min_calls",
            ),
            (
                BreakerConfig::default().failure_rate(0.5, FailureWindow::Count(0), 1),
                "window",
            ),
            (
                BreakerConfig::default().failure_rate(
                    0.5,
                    FailureWindow::Count(MAX_COUNT_WINDOW + 1),
                    1,
                ),
                "window",
            ),
            (
                BreakerConfig::default().failure_rate(0.5, FailureWindow::Count(10), 11),
                "min_calls",
            ),
            (
                BreakerConfig::default().failure_rate(0.5, FailureWindow::Time(Duration::ZERO), 1),
                "window",
            ),
            (
                BreakerConfig::default().without_consecutive_failures(),
                "trip condition",
            ),
            (
                BreakerConfig::default().open_for(Duration::ZERO, secs(1)),
                "open_for",
            ),
            (
                BreakerConfig::default().open_for(secs(2), secs(1)),
                "open_for",
            ),
            (BreakerConfig::default().jitter(-0.1), "jitter"),
            (BreakerConfig::default().jitter(1.1), "jitter"),
            (BreakerConfig::default().jitter(f64::NAN), "jitter"),
            (
                BreakerConfig::default().half_open_probes(0),
                "half_open_probes",
            ),
            (
                BreakerConfig::default().successes_to_close(0),
                "successes_to_close",
            ),
            (
                BreakerConfig::default().probe_timeout(Duration::ZERO),
                "probe_timeout",
            ),
        ];
        for (config, field) in cases {
            let message = match config.validate() {
                Err(err) => err.to_string(),
                Ok(()) => panic!("{config:?} should be invalid ({field})"),
            };
            assert!(message.contains(field), "{message:?} should name {field}");
            // Whatever was wrong, the sanitized copy is usable.
            assert_eq!(config.sanitized().validate(), Ok(()), "{message}");
        }
    }

    #[test]
    fn rate_only_and_boundary_configs_are_valid() {
        let config = BreakerConfig::default()
            .without_consecutive_failures()
            .failure_rate(1.0, FailureWindow::Count(10), 10)
            .open_for(Duration::from_secs(1), Duration::from_secs(1))
            .jitter(0.0)
            .healthy_after(Duration::ZERO)
            .without_probe_timeout();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.clone().sanitized(), config);
    }
}
