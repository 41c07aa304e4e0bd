//! Properties of the `signals` parsers: any input is survived (no panic), and values the
//! servers' own formatters produce parse back to what was formatted.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use reqwest_throttle::signals::{
    openai_limits, parse_delay_millis, parse_delay_seconds, parse_go_duration,
    parse_http_date_delay, parse_retry_after, parse_rfc3339, rate_limits, retry_after, Signals,
    Window, HEADER_NAMES,
};

/// 9999-12-31T23:59:59Z, the last instant an HTTP-date can name.
const LAST_HTTP_DATE_SECS: u64 = 253_402_300_799;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// A header value made of the characters these parsers care about, plus anything.
fn value_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..40),
        "[0-9.;=,:\" a-zA-Z+-]{0,40}".prop_map(String::into_bytes),
        "[0-9]{1,25}(\\.[0-9]{0,12})?".prop_map(String::into_bytes),
        "\"[a-z]{1,5}\";[qrtw]=-?[0-9]{1,20}(;qu=\"[a-z-]{1,12}\")?(, ?\"[a-z]{1,5}\";[qrtw]=[0-9]{1,4})*"
            .prop_map(String::into_bytes),
    ]
}

/// Maps of the names the parsers read ([`HEADER_NAMES`]) with arbitrary values, so they hit
/// real code paths.
fn header_map() -> impl Strategy<Value = HeaderMap> {
    proptest::collection::vec((0..HEADER_NAMES.len(), value_bytes()), 0..12).prop_map(|pairs| {
        let mut headers = HeaderMap::new();
        for (index, value) in pairs {
            let name = HeaderName::from_static(HEADER_NAMES[index]);
            // Bytes a HeaderValue cannot hold (CR, LF, NUL) cannot reach a parser anyway.
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                headers.append(name, value);
            }
        }
        headers
    })
}

/// Go's `Duration.String()` for non-negative durations, as OpenAI's servers produce it.
fn go_format(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    let fraction = |value: u128, digits: usize| {
        let text = format!("{value:0digits$}");
        let text = text.trim_end_matches('0');
        if text.is_empty() {
            String::new()
        } else {
            format!(".{text}")
        }
    };
    if nanos < 1_000_000 {
        return format!("{}{}\u{b5}s", nanos / 1_000, fraction(nanos % 1_000, 3));
    }
    if nanos < 1_000_000_000 {
        return format!("{}{}ms", nanos / 1_000_000, fraction(nanos % 1_000_000, 6));
    }
    let secs = nanos / 1_000_000_000;
    let seconds = format!("{}{}s", secs % 60, fraction(nanos % 1_000_000_000, 9));
    match (secs / 3_600, (secs / 60) % 60) {
        (0, 0) => seconds,
        (0, m) => format!("{m}m{seconds}"),
        (h, m) => format!("{h}h{m}m{seconds}"),
    }
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` → `1994-11-06T08:49:37Z`, with httpdate as the oracle.
fn imf_to_rfc3339(imf: &str) -> Option<String> {
    let parts: Vec<&str> = imf.split([' ', ',']).filter(|p| !p.is_empty()).collect();
    let [_, day, month, year, time, _] = parts.as_slice() else {
        return None;
    };
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = months.iter().position(|m| m == month)? + 1;
    Some(format!("{year}-{month:02}-{day}T{time}Z"))
}

proptest! {
    #[test]
    fn string_parsers_never_panic(s in any::<String>(), now in 0..=LAST_HTTP_DATE_SECS, date in any::<Option<u64>>()) {
        let date = date.map(|d| at(d % LAST_HTTP_DATE_SECS));
        let _ = parse_go_duration(&s);
        let _ = parse_delay_seconds(&s);
        let _ = parse_delay_millis(&s);
        let _ = parse_rfc3339(&s);
        let _ = parse_http_date_delay(&s, date, at(now));
        let _ = parse_retry_after(&s, date, at(now));
    }

    #[test]
    fn arbitrary_header_maps_never_panic(headers in header_map(), now in 0..=LAST_HTTP_DATE_SECS) {
        let signals = Signals::read(&headers, at(now));
        // Reading is a pure function of its inputs.
        prop_assert_eq!(signals, Signals::read(&headers, at(now)));
    }

    #[test]
    fn extreme_clocks_never_panic(headers in header_map(), now in any::<u64>()) {
        let now = UNIX_EPOCH.checked_add(Duration::from_secs(now)).unwrap_or(UNIX_EPOCH);
        let _ = Signals::read(&headers, now);
    }

    #[test]
    fn integer_seconds_round_trip(secs in any::<u64>()) {
        prop_assert_eq!(parse_delay_seconds(&secs.to_string()), Some(Duration::from_secs(secs)));
    }

    #[test]
    fn fractional_seconds_and_millis_round_trip(millis in any::<u64>()) {
        let text = format!("{}.{:03}", millis / 1_000, millis % 1_000);
        prop_assert_eq!(parse_delay_seconds(&text), Some(Duration::from_millis(millis)));
        prop_assert_eq!(parse_delay_millis(&millis.to_string()), Some(Duration::from_millis(millis)));
    }

    #[test]
    fn signs_and_exponents_are_never_delays(n in any::<u32>(), prefix in "[+-]", exp in "e[0-9]") {
        prop_assert_eq!(parse_delay_seconds(&format!("{prefix}{n}")), None);
        prop_assert_eq!(parse_delay_seconds(&format!("{n}{exp}")), None);
    }

    #[test]
    fn http_date_of_now_plus_d_is_d(now in 0..LAST_HTTP_DATE_SECS / 2, d in 0..LAST_HTTP_DATE_SECS / 2, skewed in any::<u32>()) {
        let text = httpdate::fmt_http_date(at(now + d));
        prop_assert_eq!(parse_http_date_delay(&text, None, at(now)), Some(Duration::from_secs(d)));
        // With the server's Date known, the local clock does not matter.
        prop_assert_eq!(
            parse_http_date_delay(&text, Some(at(now)), at(u64::from(skewed))),
            Some(Duration::from_secs(d))
        );
        // Later clocks never mean longer waits, and the past is zero.
        prop_assert_eq!(parse_http_date_delay(&text, None, at(now + d + 1)), Some(Duration::ZERO));
    }

    #[test]
    fn go_durations_round_trip(nanos in prop_oneof![0..1_000_000_000u64, any::<u64>()]) {
        let d = Duration::from_nanos(nanos);
        let text = go_format(d);
        prop_assert_eq!(parse_go_duration(&text), Some(d), "{}", text);
    }

    #[test]
    fn rfc3339_agrees_with_httpdate(secs in 0..=LAST_HTTP_DATE_SECS) {
        let imf = httpdate::fmt_http_date(at(secs));
        let rfc3339 = imf_to_rfc3339(&imf);
        prop_assert!(rfc3339.is_some(), "{}", imf);
        prop_assert_eq!(parse_rfc3339(&rfc3339.unwrap_or_default()), Some(at(secs)));
    }

    #[test]
    fn retry_after_lines_agree_or_are_dropped(a in 0..100_000u64, b in 0..100_000u64, copies in 1..4usize) {
        let mut same = HeaderMap::new();
        for _ in 0..copies {
            same.append("retry-after", HeaderValue::from(a));
        }
        prop_assert_eq!(retry_after(&same, at(0)), Some(Duration::from_secs(a)));
        let mut mixed = same.clone();
        mixed.append("retry-after", HeaderValue::from(b));
        let expected = (a == b).then_some(Duration::from_secs(a));
        prop_assert_eq!(retry_after(&mixed, at(0)), expected);
    }

    #[test]
    fn openai_windows_round_trip(limit in any::<u64>(), remaining in any::<u64>(), reset_ms in any::<u32>()) {
        let reset = Duration::from_millis(u64::from(reset_ms));
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-limit-tokens", HeaderValue::from(limit));
        headers.insert("x-ratelimit-remaining-tokens", HeaderValue::from(remaining));
        let go = go_format(reset);
        headers.insert("x-ratelimit-reset-tokens", HeaderValue::from_bytes(go.as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?);
        let expected = Window::new(Some(limit), Some(remaining), Some(reset));
        prop_assert_eq!(openai_limits(&headers).and_then(|l| l.tokens), Some(expected));
        prop_assert_eq!(rate_limits(&headers, at(0)).and_then(|l| l.tokens), Some(expected));
    }
}
