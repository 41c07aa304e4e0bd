//! Anthropic: `anthropic-ratelimit-*`, resets as RFC 3339 instants.

use std::time::SystemTime;

use http::HeaderMap;

use super::{HeaderFamily, RateLimits, Window};
use crate::signals::duration::parse_count;
use crate::signals::retry_after::parse_delay_seconds;
use crate::signals::rfc3339::rfc3339_delay;
use crate::signals::{consistent_value, reference_time};

/// Reads Anthropic headers:
/// `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}`.
///
/// Resets are RFC 3339 instants, turned into delays against the response's `Date` header
/// when present, else against `now`; a plain number of seconds is accepted too.
pub fn anthropic_limits(headers: &HeaderMap, now: SystemTime) -> Option<RateLimits> {
    let reference = reference_time(headers, now);
    let window = |[limit, remaining, reset]: [&str; 3]| {
        Window {
            limit: consistent_value(headers, limit, parse_count),
            remaining: consistent_value(headers, remaining, parse_count),
            reset_in: consistent_value(headers, reset, |s| {
                rfc3339_delay(s, reference).or_else(|| parse_delay_seconds(s))
            }),
        }
        .known()
    };
    RateLimits {
        requests: window([
            "anthropic-ratelimit-requests-limit",
            "anthropic-ratelimit-requests-remaining",
            "anthropic-ratelimit-requests-reset",
        ]),
        tokens: window([
            "anthropic-ratelimit-tokens-limit",
            "anthropic-ratelimit-tokens-remaining",
            "anthropic-ratelimit-tokens-reset",
        ]),
        input_tokens: window([
            "anthropic-ratelimit-input-tokens-limit",
            "anthropic-ratelimit-input-tokens-remaining",
            "anthropic-ratelimit-input-tokens-reset",
        ]),
        output_tokens: window([
            "anthropic-ratelimit-output-tokens-limit",
            "anthropic-ratelimit-output-tokens-remaining",
            "anthropic-ratelimit-output-tokens-reset",
        ]),
        ..RateLimits::new(HeaderFamily::Anthropic)
    }
    .usable()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::rate_limits;
    use super::super::tests::{at, map, window};
    use super::*;

    #[test]
    fn anthropic_header_set_against_the_date_header() {
        let headers = map(&[
            ("date", b"Thu, 01 Aug 2024 12:00:00 GMT"),
            ("anthropic-ratelimit-requests-limit", b"4000"),
            ("anthropic-ratelimit-requests-remaining", b"3999"),
            (
                "anthropic-ratelimit-requests-reset",
                b"2024-08-01T12:00:01Z",
            ),
            ("anthropic-ratelimit-tokens-limit", b"480000"),
            ("anthropic-ratelimit-tokens-remaining", b"479000"),
            (
                "anthropic-ratelimit-tokens-reset",
                b"2024-08-01T12:00:00.5Z",
            ),
            ("anthropic-ratelimit-input-tokens-limit", b"400000"),
            ("anthropic-ratelimit-input-tokens-remaining", b"399000"),
            (
                "anthropic-ratelimit-input-tokens-reset",
                b"2024-08-01T12:00:00Z",
            ),
            ("anthropic-ratelimit-output-tokens-limit", b"80000"),
            ("anthropic-ratelimit-output-tokens-remaining", b"80000"),
            (
                "anthropic-ratelimit-output-tokens-reset",
                b"2024-08-01T11:59:00Z",
            ),
        ]);
        // The local clock is an hour late: the Date header decides.
        let limits = rate_limits(&headers, at(1_722_513_600 + 3_600));
        assert_eq!(
            limits,
            Some(RateLimits {
                requests: window(Some(4_000), Some(3_999), Some(1)),
                tokens: Some(Window {
                    limit: Some(480_000),
                    remaining: Some(479_000),
                    reset_in: Some(Duration::from_millis(500)),
                }),
                input_tokens: window(Some(400_000), Some(399_000), Some(0)),
                output_tokens: window(Some(80_000), Some(80_000), Some(0)),
                ..RateLimits::new(HeaderFamily::Anthropic)
            })
        );
    }

    #[test]
    fn anthropic_without_date_uses_now() {
        let headers = map(&[(
            "anthropic-ratelimit-requests-reset",
            b"2024-08-01T12:00:30Z",
        )]);
        let limits = anthropic_limits(&headers, at(1_722_513_600));
        assert_eq!(
            limits.and_then(|l| l.requests),
            window(None, None, Some(30))
        );
    }
}
