//! OpenAI and Azure OpenAI: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, resets
//! as Go durations.

use http::HeaderMap;

use super::{HeaderFamily, RateLimits, Window};
use crate::signals::consistent_value;
use crate::signals::duration::{parse_count, parse_go_duration};
use crate::signals::retry_after::parse_delay_seconds;

/// Reads OpenAI / Azure OpenAI headers: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`.
///
/// Resets are Go durations (`6m0s`, `17ms`); a plain number of seconds is accepted too,
/// as some OpenAI-compatible servers send one. Azure's `-1` (unknown) is `None`.
///
/// ```
/// use std::time::Duration;
/// use http::HeaderMap;
/// use reqwest_throttle::signals::openai_limits;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("x-ratelimit-limit-tokens", "150000".parse().unwrap());
/// headers.insert("x-ratelimit-remaining-tokens", "149984".parse().unwrap());
/// headers.insert("x-ratelimit-reset-tokens", "6ms".parse().unwrap());
/// let tokens = openai_limits(&headers).unwrap().tokens.unwrap();
/// assert_eq!(tokens.remaining, Some(149_984));
/// assert_eq!(tokens.reset_in, Some(Duration::from_millis(6)));
/// ```
pub fn openai_limits(headers: &HeaderMap) -> Option<RateLimits> {
    let window = |[limit, remaining, reset]: [&str; 3]| {
        Window {
            limit: consistent_value(headers, limit, parse_count),
            remaining: consistent_value(headers, remaining, parse_count),
            reset_in: consistent_value(headers, reset, |s| {
                parse_go_duration(s).or_else(|| parse_delay_seconds(s))
            }),
        }
        .known()
    };
    RateLimits {
        requests: window([
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
        ]),
        tokens: window([
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-tokens",
        ]),
        ..RateLimits::new(HeaderFamily::OpenAi)
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
    fn openai_documented_header_set() {
        let headers = map(&[
            ("x-ratelimit-limit-requests", b"60"),
            ("x-ratelimit-limit-tokens", b"150000"),
            ("x-ratelimit-remaining-requests", b"59"),
            ("x-ratelimit-remaining-tokens", b"149984"),
            ("x-ratelimit-reset-requests", b"1s"),
            ("x-ratelimit-reset-tokens", b"6m0s"),
        ]);
        let limits = rate_limits(&headers, at(0));
        assert_eq!(
            limits,
            Some(RateLimits {
                requests: window(Some(60), Some(59), Some(1)),
                tokens: window(Some(150_000), Some(149_984), Some(360)),
                ..RateLimits::new(HeaderFamily::OpenAi)
            })
        );
    }

    #[test]
    fn openai_sub_second_and_micro_sign_resets() {
        let headers = map(&[
            ("x-ratelimit-remaining-requests", b"0"),
            ("x-ratelimit-reset-requests", b"4m12.172s"),
            ("x-ratelimit-reset-tokens", "250\u{b5}s".as_bytes()),
        ]);
        let limits = openai_limits(&headers).unwrap_or_else(|| panic!("usable"));
        assert_eq!(
            limits.requests.and_then(|w| w.reset_in),
            Some(Duration::from_millis(252_172))
        );
        assert_eq!(
            limits.tokens.and_then(|w| w.reset_in),
            Some(Duration::from_micros(250))
        );
    }

    #[test]
    fn azure_minus_one_is_unknown() {
        let headers = map(&[
            ("x-ratelimit-remaining-requests", b"-1"),
            ("x-ratelimit-remaining-tokens", b"-1"),
        ]);
        assert_eq!(rate_limits(&headers, at(0)), None);
        let headers = map(&[
            ("x-ratelimit-remaining-requests", b"-1"),
            ("x-ratelimit-remaining-tokens", b"9000"),
        ]);
        let limits = openai_limits(&headers).unwrap_or_else(|| panic!("usable"));
        assert_eq!(limits.requests, None);
        assert_eq!(limits.tokens, window(None, Some(9_000), None));
    }
}
