//! Server signals parsed into plain values: how long to wait ([`retry_after`]), whether the
//! server says a retry is safe (`x-should-retry`), and its announced rate limits
//! ([`rate_limits`]).
//!
//! This module knows nothing of limiters or of the middleware; it only reads headers.
//! Every parser is total: any bytes in, `Option` out, never a panic, saturating arithmetic
//! throughout. The wall clock is never read here: callers pass `now`, so results are
//! deterministic and testable.
//!
//! Values are read as UTF-8 (not only visible ASCII), so a Go duration written with `µs`
//! still parses; bytes that are not UTF-8 make that header line invalid. When a header is
//! repeated, invalid lines are skipped, identical values count once, and values that
//! disagree make the header unusable: a server that contradicts itself is not obeyed.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use http::HeaderMap;
//! use reqwest_throttle::signals::{HeaderFamily, Signals};
//!
//! let mut headers = HeaderMap::new();
//! headers.insert("retry-after", "2".parse().unwrap());
//! headers.insert("x-should-retry", "true".parse().unwrap());
//! headers.insert("x-ratelimit-remaining-requests", "0".parse().unwrap());
//! headers.insert("x-ratelimit-reset-requests", "1.5s".parse().unwrap());
//!
//! let signals = Signals::read(&headers, SystemTime::now());
//! assert_eq!(signals.retry_after, Some(Duration::from_secs(2)));
//! assert_eq!(signals.should_retry, Some(true));
//! let limits = signals.rate_limits.unwrap();
//! assert_eq!(limits.family, HeaderFamily::OpenAi);
//! assert_eq!(limits.requests.unwrap().reset_in, Some(Duration::from_millis(1_500)));
//! ```

use std::time::{Duration, SystemTime};

use http::header::{AsHeaderName, DATE};
use http::{HeaderMap, HeaderValue};

mod duration;
mod ratelimit;
mod retry_after;
mod rfc3339;

pub use duration::parse_go_duration;
pub use ratelimit::{
    anthropic_limits, github_limits, ietf_legacy_limits, ietf_limits, ietf_service_limits,
    openai_limits, rate_limits, HeaderFamily, IetfServiceLimit, RateLimits, Window,
};
pub use retry_after::{
    parse_delay_millis, parse_delay_seconds, parse_http_date_delay, parse_retry_after, retry_after,
};
pub use rfc3339::parse_rfc3339;

/// Everything a response's headers say about pacing and retrying, parsed once.
///
/// Fields are independent: which one wins (Retry-After over the `RateLimit` reset, for
/// instance) is the caller's decision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Signals {
    /// The delay the server asked for (`retry-after-ms`, `x-ms-retry-after-ms`,
    /// `Retry-After`); see [`retry_after`]. May be [`Duration::MAX`]: cap it.
    pub retry_after: Option<Duration>,
    /// The server's own verdict from `x-should-retry: true|false` (OpenAI, Anthropic), which
    /// overrides the status-based decision.
    pub should_retry: Option<bool>,
    /// Announced rate limits from whichever header family is present; see [`rate_limits`].
    pub rate_limits: Option<RateLimits>,
}

impl Signals {
    /// Reads every signal from a response's headers. `now` is the local wall clock, used only
    /// when the response has no `Date` header to measure HTTP-dates and timestamps against.
    ///
    /// ```
    /// use std::time::SystemTime;
    /// use http::HeaderMap;
    /// use reqwest_throttle::signals::Signals;
    ///
    /// assert_eq!(Signals::read(&HeaderMap::new(), SystemTime::now()), Signals::default());
    /// ```
    pub fn read(headers: &HeaderMap, now: SystemTime) -> Signals {
        Signals::read_with_clock(headers, || now)
    }

    /// [`read`](Self::read), asking the wall clock only if a signal header is present.
    pub(crate) fn read_with_clock(
        headers: &HeaderMap,
        clock: impl FnOnce() -> SystemTime,
    ) -> Signals {
        // Most responses carry no signal at all: one pass over the names decides which parsers
        // have anything to read, so the common case costs a scan, not forty lookups.
        let present = Present::scan(headers);
        if !present.retry_after && !present.should_retry && !present.any_rate_limit() {
            return Signals::default();
        }
        let now = clock();
        Signals {
            retry_after: present
                .retry_after
                .then(|| retry_after(headers, now))
                .flatten(),
            should_retry: present
                .should_retry
                .then(|| should_retry(headers))
                .flatten(),
            rate_limits: present
                .any_rate_limit()
                .then(|| rate_limits(headers, now))
                .flatten(),
        }
    }
}

/// Every header name a parser of this module reads, lower-case as [`HeaderName`](http::HeaderName)
/// stores them: for tests and fuzzers that build header maps out of real names.
///
/// All but `date` are signals that [`Signals::read`] looks for; `date` is only the clock the
/// others' instants are measured against (see [`reference_time`]), and is not read alone.
///
/// ```
/// use reqwest_throttle::signals::HEADER_NAMES;
///
/// assert!(HEADER_NAMES.contains(&"retry-after"));
/// assert!(HEADER_NAMES.contains(&"anthropic-ratelimit-output-tokens-reset"));
/// ```
pub const HEADER_NAMES: &[&str] = &[
    // Retry-After and its millisecond variants.
    "retry-after",
    "retry-after-ms",
    "x-ms-retry-after-ms",
    "x-should-retry",
    "date",
    // OpenAI, Azure OpenAI.
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    // Anthropic.
    "anthropic-ratelimit-requests-limit",
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-requests-reset",
    "anthropic-ratelimit-tokens-limit",
    "anthropic-ratelimit-tokens-remaining",
    "anthropic-ratelimit-tokens-reset",
    "anthropic-ratelimit-input-tokens-limit",
    "anthropic-ratelimit-input-tokens-remaining",
    "anthropic-ratelimit-input-tokens-reset",
    "anthropic-ratelimit-output-tokens-limit",
    "anthropic-ratelimit-output-tokens-remaining",
    "anthropic-ratelimit-output-tokens-reset",
    // GitHub, then X's spelling.
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-used",
    "x-ratelimit-reset",
    "x-ratelimit-resource",
    "x-rate-limit-limit",
    "x-rate-limit-remaining",
    "x-rate-limit-reset",
    // IETF structured fields, then the legacy trio.
    "ratelimit",
    "ratelimit-policy",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
];

/// Which signal headers a map carries, from one pass over its names (lower-case, as
/// `HeaderName` keeps them).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Present {
    pub retry_after: bool,
    pub should_retry: bool,
    pub anthropic: bool,
    /// `x-ratelimit-*` (OpenAI, GitHub) or `x-rate-limit-*` (X).
    pub x_ratelimit: bool,
    /// `ratelimit` / `ratelimit-policy` (structured fields) or the older `ratelimit-*` trio.
    pub ietf: bool,
}

impl Present {
    pub(crate) fn scan(headers: &HeaderMap) -> Present {
        let mut present = Present::default();
        for name in headers.keys() {
            let name = name.as_str();
            if name.ends_with("retry-after") || name.ends_with("retry-after-ms") {
                present.retry_after = true;
            } else if name == "x-should-retry" {
                present.should_retry = true;
            } else if name.starts_with("anthropic-ratelimit-") {
                present.anthropic = true;
            } else if name.starts_with("x-ratelimit-") || name.starts_with("x-rate-limit-") {
                present.x_ratelimit = true;
            } else if name.starts_with("ratelimit") {
                present.ietf = true;
            }
        }
        present
    }

    fn any_rate_limit(self) -> bool {
        self.anthropic || self.x_ratelimit || self.ietf
    }
}

/// Reads `x-should-retry: true|false` (ASCII case-insensitive, trimmed). Anything else, or
/// repeated lines that disagree, gives `None`.
///
/// ```
/// use http::HeaderMap;
/// use reqwest_throttle::signals::should_retry;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("x-should-retry", "false".parse().unwrap());
/// assert_eq!(should_retry(&headers), Some(false));
/// ```
pub fn should_retry(headers: &HeaderMap) -> Option<bool> {
    consistent_value(headers, "x-should-retry", |s| {
        let s = duration::trim_ows(s);
        if s.eq_ignore_ascii_case("true") {
            Some(true)
        } else if s.eq_ignore_ascii_case("false") {
            Some(false)
        } else {
            None
        }
    })
}

/// The response's `Date` header as an instant, when present and unambiguous.
pub fn response_date(headers: &HeaderMap) -> Option<SystemTime> {
    consistent_value(headers, DATE, |s| {
        httpdate::parse_http_date(duration::trim_ows(s)).ok()
    })
}

/// The clock to measure a response's absolute times (HTTP-dates, epoch resets) against.
///
/// The response's own `Date` when it disagrees with the local clock by more than its
/// one-second resolution: the two clocks are skewed and the server's is the one its other
/// headers were computed with. Otherwise the local clock, which is the more precise of two
/// clocks that agree (a `Date` is truncated to the second, which would make every delay up to a
/// second too long).
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use http::HeaderMap;
/// use reqwest_throttle::signals::reference_time;
///
/// let now = SystemTime::UNIX_EPOCH + Duration::from_millis(1_000_000_700);
/// let mut headers = HeaderMap::new();
/// headers.insert("date", httpdate::fmt_http_date(now).parse().unwrap());
/// assert_eq!(reference_time(&headers, now), now); // agrees within a second: local is finer
/// let later = now + Duration::from_secs(30);
/// assert_eq!(reference_time(&headers, later), now - Duration::from_millis(700)); // skewed
/// ```
pub fn reference_time(headers: &HeaderMap, now: SystemTime) -> SystemTime {
    let Some(date) = response_date(headers) else {
        return now;
    };
    let skew = match now.duration_since(date) {
        Ok(ahead) => ahead,
        Err(behind) => behind.duration(),
    };
    if skew >= std::time::Duration::from_secs(1) {
        date
    } else {
        now
    }
}

/// A header value as text. UTF-8 rather than `HeaderValue::to_str`'s visible ASCII, so that
/// values such as `250µs` are readable; other bytes make the value unreadable.
fn header_str(value: &HeaderValue) -> Option<&str> {
    std::str::from_utf8(value.as_bytes()).ok()
}

/// Parses every line of header `name`: invalid lines are skipped, equal values count once,
/// and if valid lines disagree the header is unusable (`None`).
fn consistent_value<T: PartialEq>(
    headers: &HeaderMap,
    name: impl AsHeaderName,
    mut parse: impl FnMut(&str) -> Option<T>,
) -> Option<T> {
    let mut agreed: Option<T> = None;
    for value in headers.get_all(name) {
        let Some(parsed) = header_str(value).and_then(&mut parse) else {
            continue;
        };
        match &agreed {
            Some(previous) if *previous != parsed => return None,
            Some(_) => {}
            None => agreed = Some(parsed),
        }
    }
    agreed
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderName;
    use std::time::UNIX_EPOCH;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn every_listed_name_is_seen_by_the_scan() {
        let mut unique = HEADER_NAMES.to_vec();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), HEADER_NAMES.len(), "a name is listed twice");
        for name in HEADER_NAMES {
            let mut headers = HeaderMap::new();
            // `from_static` refuses upper case: the list holds names as `HeaderName` keeps them.
            headers.insert(HeaderName::from_static(name), HeaderValue::from_static("1"));
            let present = Present::scan(&headers);
            let seen = present.retry_after || present.should_retry || present.any_rate_limit();
            // `Date` only dates the other signals: alone it is none, and costs no parse.
            assert_eq!(seen, *name != DATE.as_str(), "{name}");
        }
    }

    #[test]
    fn should_retry_values() {
        assert_eq!(
            should_retry(&map(&[("x-should-retry", "true")])),
            Some(true)
        );
        assert_eq!(
            should_retry(&map(&[("x-should-retry", " FALSE ")])),
            Some(false)
        );
        assert_eq!(should_retry(&map(&[("x-should-retry", "yes")])), None);
        assert_eq!(should_retry(&map(&[("x-should-retry", "1")])), None);
        let contradiction = map(&[("x-should-retry", "true"), ("x-should-retry", "false")]);
        assert_eq!(should_retry(&contradiction), None);
        assert_eq!(should_retry(&HeaderMap::new()), None);
    }

    #[test]
    fn response_date_requires_agreement() {
        let one = map(&[("date", "Thu, 01 Jan 1970 00:01:00 GMT")]);
        assert_eq!(
            response_date(&one),
            Some(UNIX_EPOCH + Duration::from_secs(60))
        );
        let two = map(&[
            ("date", "Thu, 01 Jan 1970 00:01:00 GMT"),
            ("date", "Thu, 01 Jan 1970 00:02:00 GMT"),
        ]);
        assert_eq!(response_date(&two), None);
    }

    #[test]
    fn read_collects_all_three_signals() {
        // An Anthropic 429 as the API sends it.
        let headers = map(&[
            ("date", "Thu, 01 Aug 2024 12:00:00 GMT"),
            ("retry-after", "30"),
            ("x-should-retry", "true"),
            ("anthropic-ratelimit-requests-limit", "50"),
            ("anthropic-ratelimit-requests-remaining", "0"),
            ("anthropic-ratelimit-requests-reset", "2024-08-01T12:00:30Z"),
        ]);
        let signals = Signals::read(&headers, UNIX_EPOCH);
        assert_eq!(signals.retry_after, Some(Duration::from_secs(30)));
        assert_eq!(signals.should_retry, Some(true));
        let limits = signals
            .rate_limits
            .unwrap_or_else(|| panic!("limits expected"));
        assert_eq!(limits.family, HeaderFamily::Anthropic);
        assert_eq!(
            limits.requests,
            Some(Window {
                limit: Some(50),
                remaining: Some(0),
                reset_in: Some(Duration::from_secs(30)),
            })
        );
    }
}
