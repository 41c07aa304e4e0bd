//! How long the server asked us to wait: `Retry-After` (RFC 9110 §10.2.3) and the
//! millisecond variants `retry-after-ms` / `x-ms-retry-after-ms` (OpenAI, Azure).
//!
//! Real servers send more than the RFC's grammar: fractional seconds (`1.5`) are accepted;
//! signs, exponents, `inf`/`nan` and garbage are not. An HTTP-date is turned into a delay
//! against the response's own `Date` header when it has one, so a client whose clock is
//! off still waits as long as the server meant. Huge values saturate instead of failing:
//! capping a delay is the caller's policy, not the parser's.

use std::time::{Duration, SystemTime};

use http::header::RETRY_AFTER;
use http::HeaderMap;

use super::duration::{parse_decimal, trim_ows, NANOS_PER_MILLI, NANOS_PER_SEC};
use super::{consistent_value, reference_time};

/// The millisecond headers, in order of precedence; both beat `Retry-After` when valid.
const RETRY_AFTER_MS_HEADERS: [&str; 2] = ["retry-after-ms", "x-ms-retry-after-ms"];

/// Parses `Retry-After`'s delay-seconds form: `1*DIGIT`, plus a non-negative decimal
/// fraction (`0.1`, `1.5`) because real servers send one. Spaces and tabs around the value
/// are ignored.
///
/// A sign, an exponent, `inf`, `nan`, an empty value or anything else gives `None`. An
/// enormous integer (`99999999999999999999`) saturates to [`Duration::MAX`]: the caller caps
/// it (see the policy's `max_retry_after`).
///
/// ```
/// use std::time::Duration;
/// use reqwest_throttle::signals::parse_delay_seconds;
///
/// assert_eq!(parse_delay_seconds("120"), Some(Duration::from_secs(120)));
/// assert_eq!(parse_delay_seconds(" 1.5 "), Some(Duration::from_millis(1_500)));
/// assert_eq!(parse_delay_seconds("-1"), None);
/// assert_eq!(parse_delay_seconds("99999999999999999999"), Some(Duration::MAX));
/// ```
pub fn parse_delay_seconds(s: &str) -> Option<Duration> {
    parse_decimal(s, NANOS_PER_SEC)
}

/// Parses an HTTP-date in any of the three forms a recipient must accept (RFC 9110 §5.6.7:
/// IMF-fixdate, RFC 850, asctime) and returns the delay until it.
///
/// The delay is measured from `date`, the response's own `Date` header, when given (so a
/// skewed local clock does not matter), else from `now`. A date in the past gives
/// [`Duration::ZERO`]; anything that is not an HTTP-date gives `None`.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use reqwest_throttle::signals::parse_http_date_delay;
///
/// let server_date = httpdate::parse_http_date("Fri, 31 Dec 1999 23:59:00 GMT").ok();
/// let local_clock = SystemTime::now(); // ignored: the server's Date is known
/// assert_eq!(
///     parse_http_date_delay("Fri, 31 Dec 1999 23:59:59 GMT", server_date, local_clock),
///     Some(Duration::from_secs(59)),
/// );
/// ```
pub fn parse_http_date_delay(
    s: &str,
    date: Option<SystemTime>,
    now: SystemTime,
) -> Option<Duration> {
    let target = httpdate::parse_http_date(trim_ows(s)).ok()?;
    let reference = date.unwrap_or(now);
    Some(target.duration_since(reference).unwrap_or(Duration::ZERO))
}

/// Parses one `Retry-After` value: delay-seconds first, else an HTTP-date (see
/// [`parse_delay_seconds`] and [`parse_http_date_delay`]).
pub fn parse_retry_after(s: &str, date: Option<SystemTime>, now: SystemTime) -> Option<Duration> {
    parse_delay_seconds(s).or_else(|| parse_http_date_delay(s, date, now))
}

/// Parses a millisecond delay as in `retry-after-ms` (`1500`, `12.5`): the same grammar as
/// [`parse_delay_seconds`], in milliseconds.
pub fn parse_delay_millis(s: &str) -> Option<Duration> {
    parse_decimal(s, NANOS_PER_MILLI)
}

/// The delay the server asked for, read from a response's headers.
///
/// Precedence: `retry-after-ms`, then `x-ms-retry-after-ms`, then `Retry-After`; the first
/// header that yields a valid value wins. For each header, every line is parsed; invalid
/// lines are ignored, identical values count once, and lines whose values disagree make the
/// header unusable (`None` for it). An HTTP-date is measured against the response's `Date`
/// header when that is present and unambiguous, else against `now`.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use http::HeaderMap;
/// use reqwest_throttle::signals::retry_after;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("retry-after", "120".parse().unwrap());
/// assert_eq!(retry_after(&headers, SystemTime::now()), Some(Duration::from_secs(120)));
///
/// headers.insert("retry-after-ms", "1500".parse().unwrap());
/// assert_eq!(retry_after(&headers, SystemTime::now()), Some(Duration::from_millis(1_500)));
/// ```
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    RETRY_AFTER_MS_HEADERS
        .iter()
        .find_map(|name| consistent_value(headers, *name, parse_delay_millis))
        .or_else(|| {
            let reference = reference_time(headers, now);
            consistent_value(headers, RETRY_AFTER, |s| {
                parse_retry_after(s, None, reference)
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::time::UNIX_EPOCH;

    /// 1999-12-31T23:59:59Z, the RFC 9110 §10.2.3 example date.
    const RFC_DATE_SECS: u64 = 946_684_799;

    fn secs(n: u64) -> Option<Duration> {
        Some(Duration::from_secs(n))
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            let name = http::HeaderName::from_bytes(name.as_bytes()).unwrap_or(RETRY_AFTER);
            if let Ok(value) = HeaderValue::from_bytes(value) {
                map.append(name, value);
            }
        }
        map
    }

    #[test]
    fn rfc9110_section_10_2_3_examples() {
        let now = at(RFC_DATE_SECS - 100);
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 1999 23:59:59 GMT", None, now),
            secs(100)
        );
        assert_eq!(parse_retry_after("120", None, now), secs(120));
    }

    #[test]
    fn rfc9110_section_5_6_7_three_date_forms() {
        // 1994-11-06T08:49:37Z
        let now = at(784_111_777 - 7);
        for form in [
            "Sun, 06 Nov 1994 08:49:37 GMT",  // IMF-fixdate
            "Sunday, 06-Nov-94 08:49:37 GMT", // obsolete RFC 850
            "Sun Nov  6 08:49:37 1994",       // ANSI C asctime()
        ] {
            assert_eq!(parse_http_date_delay(form, None, now), secs(7), "{form}");
        }
    }

    #[test]
    fn http_date_uses_the_response_date_and_clamps_the_past() {
        let server_date = Some(at(RFC_DATE_SECS - 30));
        let local_clock_far_ahead = at(RFC_DATE_SECS + 3_600);
        let value = "Fri, 31 Dec 1999 23:59:59 GMT";
        assert_eq!(
            parse_http_date_delay(value, server_date, local_clock_far_ahead),
            secs(30)
        );
        assert_eq!(
            parse_http_date_delay(value, None, local_clock_far_ahead),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_http_date_delay("yesterday", None, at(0)), None);
    }

    #[test]
    fn delay_seconds_edge_cases() {
        assert_eq!(parse_delay_seconds(" 7 "), secs(7));
        assert_eq!(parse_delay_seconds("0"), secs(0));
        assert_eq!(parse_delay_seconds("0.1"), Some(Duration::from_millis(100)));
        assert_eq!(
            parse_delay_seconds("99999999999999999999"),
            Some(Duration::MAX)
        );
        for bad in [
            "", " ", "-5", "+5", "1e3", "inf", "nan", "NaN", "5s", "5,5", "0x1",
        ] {
            assert_eq!(parse_delay_seconds(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn millisecond_headers_win_over_retry_after() {
        let now = at(0);
        let map = headers(&[("retry-after", b"5"), ("retry-after-ms", b"1500.5")]);
        assert_eq!(
            retry_after(&map, now),
            Some(Duration::from_micros(1_500_500))
        );
        let map = headers(&[("retry-after", b"5"), ("x-ms-retry-after-ms", b"250")]);
        assert_eq!(retry_after(&map, now), Some(Duration::from_millis(250)));
        let map = headers(&[("retry-after-ms", b"10"), ("x-ms-retry-after-ms", b"250")]);
        assert_eq!(retry_after(&map, now), Some(Duration::from_millis(10)));
    }

    #[test]
    fn invalid_millisecond_header_falls_back_to_retry_after() {
        let map = headers(&[("retry-after", b"5"), ("retry-after-ms", b"-1")]);
        assert_eq!(retry_after(&map, at(0)), secs(5));
    }

    #[test]
    fn repeated_lines_agree_or_are_ignored() {
        let now = at(RFC_DATE_SECS - 120);
        let same = headers(&[("retry-after", b"120"), ("retry-after", b"120")]);
        assert_eq!(retry_after(&same, now), secs(120));
        // The same delay written two ways is still one delay.
        let same_instant = headers(&[
            ("retry-after", b"120"),
            ("retry-after", b"Fri, 31 Dec 1999 23:59:59 GMT"),
        ]);
        assert_eq!(retry_after(&same_instant, now), secs(120));
        let disagree = headers(&[("retry-after", b"120"), ("retry-after", b"30")]);
        assert_eq!(retry_after(&disagree, now), None);
        let garbage_and_valid = headers(&[("retry-after", b"soon"), ("retry-after", b"30")]);
        assert_eq!(retry_after(&garbage_and_valid, now), secs(30));
    }

    #[test]
    fn retry_after_date_is_measured_against_the_date_header() {
        let map = headers(&[
            ("date", b"Fri, 31 Dec 1999 23:59:00 GMT"),
            ("retry-after", b"Fri, 31 Dec 1999 23:59:59 GMT"),
        ]);
        // The local clock is a day late; the server's own Date decides.
        assert_eq!(retry_after(&map, at(RFC_DATE_SECS + 86_400)), secs(59));
    }

    #[test]
    fn non_utf8_and_empty_values_are_ignored() {
        let map = headers(&[("retry-after", b"\xff\xfe"), ("retry-after-ms", b"")]);
        assert_eq!(retry_after(&map, at(0)), None);
        assert_eq!(retry_after(&HeaderMap::new(), at(0)), None);
    }
}
