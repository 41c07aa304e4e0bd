//! GitHub and X: `x-ratelimit-*` / `x-rate-limit-*`, resets as Unix epoch seconds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;

use super::{HeaderFamily, RateLimits, Window};
use crate::signals::duration::{parse_count, trim_ows};
use crate::signals::retry_after::parse_delay_seconds;
use crate::signals::{consistent_value, reference_time};

/// A reset value at or above this many seconds is a Unix timestamp, below it a delay: no
/// server means a delay of 31 years, and no epoch reset lies before September 2001. This
/// reads GitHub-style epochs and delta-seconds alike, whichever a server actually sends.
const EPOCH_THRESHOLD: Duration = Duration::from_secs(1_000_000_000);

/// Reads GitHub / X headers `x-ratelimit-{limit,remaining,used,reset}` into `requests`, and
/// `x-ratelimit-resource` into `resource`. X's API spells the same fields
/// `x-rate-limit-{limit,remaining,reset}`; those are read when the GitHub spelling is absent.
///
/// The reset is Unix epoch seconds, turned into a delay against the response's `Date`
/// header when present, else against `now` (a value below 10^9 is taken as a delay in
/// seconds instead, as some servers send under the same name). When `remaining` is missing
/// it is computed as `limit - used`.
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use http::HeaderMap;
/// use reqwest_throttle::signals::github_limits;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("x-ratelimit-limit", "5000".parse().unwrap());
/// headers.insert("x-ratelimit-remaining", "4999".parse().unwrap());
/// headers.insert("x-ratelimit-reset", "1372700873".parse().unwrap());
/// headers.insert("x-ratelimit-resource", "core".parse().unwrap());
/// let now = UNIX_EPOCH + Duration::from_secs(1_372_697_273);
/// let limits = github_limits(&headers, now).unwrap();
/// assert_eq!(limits.requests.unwrap().reset_in, Some(Duration::from_secs(3_600)));
/// assert_eq!(limits.resource.as_deref(), Some("core"));
/// ```
pub fn github_limits(headers: &HeaderMap, now: SystemTime) -> Option<RateLimits> {
    let reference = reference_time(headers, now);
    // GitHub's spelling first, then X's.
    let either = |github: &str, x: &str| {
        consistent_value(headers, github, parse_count)
            .or_else(|| consistent_value(headers, x, parse_count))
    };
    let limit = either("x-ratelimit-limit", "x-rate-limit-limit");
    let used = consistent_value(headers, "x-ratelimit-used", parse_count);
    let remaining = either("x-ratelimit-remaining", "x-rate-limit-remaining")
        .or_else(|| Some(limit?.saturating_sub(used?)));
    let reset_in = ["x-ratelimit-reset", "x-rate-limit-reset"]
        .into_iter()
        .find_map(|name| consistent_value(headers, name, |s| epoch_or_delay(s, reference)));
    let resource = consistent_value(headers, "x-ratelimit-resource", |s| {
        let s = trim_ows(s);
        (!s.is_empty()).then(|| s.to_owned())
    });
    RateLimits {
        requests: Window {
            limit,
            remaining,
            reset_in,
        }
        .known(),
        resource,
        ..RateLimits::new(HeaderFamily::GitHub)
    }
    .usable()
}

/// A reset written as seconds: a Unix timestamp when at least [`EPOCH_THRESHOLD`] (delay
/// measured from `reference`, zero if past), else a delay. The IETF legacy `RateLimit-Reset`
/// is read with it too, as some servers send an epoch there.
pub(super) fn epoch_or_delay(s: &str, reference: SystemTime) -> Option<Duration> {
    let seconds = parse_delay_seconds(s)?;
    if seconds < EPOCH_THRESHOLD {
        return Some(seconds);
    }
    // Beyond SystemTime's range the reset is "never": saturate like the other parsers.
    let Some(reset_at) = UNIX_EPOCH.checked_add(seconds) else {
        return Some(Duration::MAX);
    };
    Some(reset_at.duration_since(reference).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::super::rate_limits;
    use super::super::tests::{at, map, window};
    use super::*;

    #[test]
    fn github_documented_header_set() {
        let headers = map(&[
            ("date", b"Mon, 01 Jul 2013 17:27:06 GMT"),
            ("x-ratelimit-limit", b"60"),
            ("x-ratelimit-remaining", b"56"),
            ("x-ratelimit-used", b"4"),
            ("x-ratelimit-reset", b"1372700873"),
            ("x-ratelimit-resource", b"core"),
        ]);
        assert_eq!(
            rate_limits(&headers, at(0)),
            Some(RateLimits {
                requests: window(Some(60), Some(56), Some(1_372_700_873 - 1_372_699_626)),
                resource: Some("core".to_owned()),
                ..RateLimits::new(HeaderFamily::GitHub)
            })
        );
    }

    #[test]
    fn github_remaining_from_used_and_past_reset() {
        let headers = map(&[
            ("x-ratelimit-limit", b"5000"),
            ("x-ratelimit-used", b"5000"),
            ("x-ratelimit-reset", b"1372700873"),
        ]);
        let limits = github_limits(&headers, at(1_372_700_900));
        assert_eq!(
            limits.and_then(|l| l.requests),
            window(Some(5_000), Some(0), Some(0))
        );
    }

    #[test]
    fn x_spelling_is_read_as_github_family() {
        let headers = map(&[
            ("x-rate-limit-limit", b"900"),
            ("x-rate-limit-remaining", b"899"),
            ("x-rate-limit-reset", b"1700000900"),
        ]);
        assert_eq!(
            rate_limits(&headers, at(1_700_000_000)),
            Some(RateLimits {
                requests: window(Some(900), Some(899), Some(900)),
                ..RateLimits::new(HeaderFamily::GitHub)
            })
        );
    }

    #[test]
    fn small_reset_is_a_delay_and_huge_epoch_saturates() {
        assert_eq!(epoch_or_delay("30", at(5)), Some(Duration::from_secs(30)));
        assert_eq!(
            epoch_or_delay("1000000010", at(1_000_000_000)),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            epoch_or_delay("1470173023.5", at(1_470_173_023)),
            Some(Duration::from_millis(500))
        );
        let huge = epoch_or_delay("99999999999999999999", at(0));
        assert!(huge >= Some(Duration::from_secs(1 << 40)), "{huge:?}");
    }

    #[test]
    fn enormous_counts_saturate() {
        let headers = map(&[("x-ratelimit-remaining", b"99999999999999999999999999")]);
        assert_eq!(
            github_limits(&headers, at(0)).and_then(|l| l.requests),
            window(None, Some(u64::MAX), None)
        );
    }
}
