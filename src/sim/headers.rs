//! The simulated server's headers, in the exact formats real APIs send: the rate-limit family
//! it announces ([`HeaderStyle`]) and how a limited answer says when to come back
//! ([`RetryAfterStyle`]).
//!
//! Every delay is rounded *up* (to the millisecond, or to the second where the format only
//! carries seconds), so a client that believes the headers never comes back too early.
//! Wall-clock values (GitHub's epoch reset, `Date`, Anthropic's RFC 3339 reset, an HTTP-date
//! `Retry-After`) are the wall clock at the moment the response is built plus the delay.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{HeaderMap, HeaderName, HeaderValue, DATE, RETRY_AFTER};

use super::limiter::{Dimension, Quota};

/// Which family of rate-limit headers the simulated server announces on admitted and limited
/// answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HeaderStyle {
    /// No rate-limit headers (a server that only answers 429).
    #[default]
    None,
    /// OpenAI / Azure OpenAI: `x-ratelimit-limit-requests: 100`,
    /// `x-ratelimit-remaining-requests: 57`, `x-ratelimit-reset-requests: 6m0s`
    /// (time until the budget is whole again, as a Go duration: `17ms`, `6.5s`, `6m0s`).
    OpenAi,
    /// An LLM proxy's OpenAI-shaped headers (LiteLLM's per-key limits):
    /// `x-ratelimit-limit-requests: 30`, `x-ratelimit-remaining-requests: 17` and the same for
    /// tokens, with **no** reset: nothing says when the limit comes back but a refusal's
    /// `Retry-After`.
    LiteLlm,
    /// Anthropic: `anthropic-ratelimit-requests-limit`, `-remaining` and `-reset`, the reset
    /// an RFC 3339 UTC time (`2025-01-01T12:00:05Z`).
    Anthropic,
    /// GitHub: `x-ratelimit-limit`, `x-ratelimit-remaining`, `x-ratelimit-used`,
    /// `x-ratelimit-reset` (Unix epoch seconds, read against `Date`) and
    /// `x-ratelimit-resource: core`. Pair it with
    /// [`limited_status(StatusCode::FORBIDDEN)`](super::SimulatedApiBuilder::limited_status) for
    /// GitHub's 403 on an exhausted primary limit.
    GitHub,
    /// The IETF draft's structured fields (draft-ietf-httpapi-ratelimit-headers):
    /// `RateLimit-Policy: "default";q=100;w=10` and `RateLimit: "default";r=57;t=4`
    /// (`w` and `t` in whole seconds, rounded up).
    Ietf,
    /// The draft's older trio: `RateLimit-Limit: 100`, `RateLimit-Remaining: 57`,
    /// `RateLimit-Reset: 4` (delta seconds).
    IetfLegacy,
    /// Flask-Limiter (and slowapi): `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
    /// `X-RateLimit-Reset`, the reset a Unix epoch in whole seconds written as Flask-Limiter
    /// writes it, `1 + int(window end)`: up to one second **late** (a whole second when the
    /// window ends on a whole second, as a clock-aligned window does). No `used`, no
    /// `resource`: unlike [`HeaderStyle::GitHub`], nothing tells the client which family it
    /// is. Only requests are announced.
    FlaskLimiter,
}

/// How a limited answer tells the client when to come back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RetryAfterStyle {
    /// No retry hint at all.
    None,
    /// `Retry-After: 5`: whole seconds, rounded up (RFC 9110 delay-seconds).
    #[default]
    Seconds,
    /// `retry-after-ms: 4200`: whole milliseconds, rounded up, as OpenAI and Azure send.
    Millis,
    /// `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`: an HTTP-date, rounded up to the second
    /// (approximate under paused time, see the [module docs](super#time)).
    HttpDate,
}

/// Wall-clock delays are capped here before they are added to `SystemTime::now()`, so no
/// configuration can overflow the wall clock (a window of a century is still a century).
const MAX_WALL_DELAY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Adds the rate-limit headers of `style` for every dimension's quota, each reset announced
/// `late` after it really falls.
pub(crate) fn rate_limit(
    style: HeaderStyle,
    quotas: &[(Dimension, Quota)],
    late: Duration,
    wall_now: SystemTime,
    headers: &mut HeaderMap,
) {
    for &(dimension, mut quota) in quotas {
        quota.reset_in = quota.reset_in.saturating_add(late);
        let name = dimension.name();
        match style {
            HeaderStyle::None => {}
            HeaderStyle::OpenAi | HeaderStyle::LiteLlm => {
                insert(headers, &format!("x-ratelimit-limit-{name}"), quota.limit);
                insert(
                    headers,
                    &format!("x-ratelimit-remaining-{name}"),
                    quota.remaining,
                );
                if style == HeaderStyle::OpenAi {
                    insert(
                        headers,
                        &format!("x-ratelimit-reset-{name}"),
                        go_duration(quota.reset_in),
                    );
                }
            }
            HeaderStyle::Anthropic => {
                let reset = rfc3339(wall_after(wall_now, quota.reset_in));
                insert(
                    headers,
                    &format!("anthropic-ratelimit-{name}-limit"),
                    quota.limit,
                );
                insert(
                    headers,
                    &format!("anthropic-ratelimit-{name}-remaining"),
                    quota.remaining,
                );
                insert(headers, &format!("anthropic-ratelimit-{name}-reset"), reset);
            }
            // GitHub, Flask-Limiter and the IETF draft announce one quota per response; only
            // requests are limited by those servers, so other dimensions are not announced.
            HeaderStyle::GitHub if dimension == Dimension::Requests => {
                let reset = epoch_secs_ceil(wall_after(wall_now, quota.reset_in));
                insert(headers, "x-ratelimit-limit", quota.limit);
                insert(headers, "x-ratelimit-remaining", quota.remaining);
                insert(headers, "x-ratelimit-used", quota.used);
                insert(headers, "x-ratelimit-reset", reset);
                insert(headers, "x-ratelimit-resource", "core");
            }
            HeaderStyle::Ietf if dimension == Dimension::Requests => {
                let policy = dimension.ietf_policy();
                let window = secs_ceil(quota.window);
                let reset = secs_ceil(quota.reset_in);
                insert(
                    headers,
                    "ratelimit-policy",
                    format!("\"{policy}\";q={};w={window}", quota.limit),
                );
                insert(
                    headers,
                    "ratelimit",
                    format!("\"{policy}\";r={};t={reset}", quota.remaining),
                );
            }
            HeaderStyle::IetfLegacy if dimension == Dimension::Requests => {
                insert(headers, "ratelimit-limit", quota.limit);
                insert(headers, "ratelimit-remaining", quota.remaining);
                insert(headers, "ratelimit-reset", secs_ceil(quota.reset_in));
            }
            HeaderStyle::FlaskLimiter if dimension == Dimension::Requests => {
                // Flask-Limiter writes `1 + int(reset)`: truncated, then a second added. The
                // window's end is on tokio's clock and `wall_now` on the wall clock, read a few
                // microseconds apart: a window ending on a whole second could read as a hair
                // before it and be truncated a second short, so it is rounded to the
                // millisecond first.
                let end = quota.reset_in.saturating_add(Duration::from_micros(500));
                let reset = epoch_secs_floor(wall_after(wall_now, end)).saturating_add(1);
                insert(headers, "x-ratelimit-limit", quota.limit);
                insert(headers, "x-ratelimit-remaining", quota.remaining);
                insert(headers, "x-ratelimit-reset", reset);
            }
            HeaderStyle::GitHub
            | HeaderStyle::Ietf
            | HeaderStyle::IetfLegacy
            | HeaderStyle::FlaskLimiter => {}
        }
    }
}

/// Adds the header telling the client to come back after `delay`, in `style`.
pub(crate) fn retry_after(
    style: RetryAfterStyle,
    delay: Duration,
    wall_now: SystemTime,
    headers: &mut HeaderMap,
) {
    let value = match style {
        RetryAfterStyle::None => return,
        RetryAfterStyle::Seconds => secs_ceil(delay).to_string(),
        RetryAfterStyle::Millis => {
            insert(headers, "retry-after-ms", millis_ceil(delay));
            return;
        }
        RetryAfterStyle::HttpDate => {
            // Rounded up to the next whole second, the resolution of an HTTP-date, so that
            // the date minus `Date` (which is truncated) is never shorter than `delay`.
            let secs = epoch_secs_ceil(wall_after(wall_now, delay));
            httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs))
        }
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(RETRY_AFTER, value);
    }
}

/// Adds `Date`, as every real server does (and as clients need to read epoch resets and
/// HTTP-dates against the server's clock).
pub(crate) fn date(wall_now: SystemTime, headers: &mut HeaderMap) {
    if let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(wall_now)) {
        headers.insert(DATE, value);
    }
}

/// Inserts a header whose name and value are built by this module (always valid ASCII; an
/// invalid one would be skipped rather than panic).
fn insert(headers: &mut HeaderMap, name: &str, value: impl ToString) {
    if let (Ok(name), Ok(value)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(&value.to_string()),
    ) {
        headers.insert(name, value);
    }
}

/// `wall_now + delay`, the delay capped so the addition cannot overflow.
pub(crate) fn wall_after(wall_now: SystemTime, delay: Duration) -> SystemTime {
    wall_now
        .checked_add(delay.min(MAX_WALL_DELAY))
        .unwrap_or(wall_now)
}

/// Whole seconds, rounded up.
pub(crate) fn secs_ceil(delay: Duration) -> u128 {
    delay.as_nanos().div_ceil(1_000_000_000)
}

/// Whole milliseconds, rounded up.
pub(crate) fn millis_ceil(delay: Duration) -> u128 {
    delay.as_nanos().div_ceil(1_000_000)
}

/// Seconds since the Unix epoch, rounded up (0 for a time before the epoch).
pub(crate) fn epoch_secs_ceil(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|since| u64::try_from(secs_ceil(since)).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Seconds since the Unix epoch, truncated (0 for a time before the epoch).
pub(crate) fn epoch_secs_floor(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs())
        .unwrap_or(0)
}

/// A delay the way Go's `time.Duration.String()` prints it, which is what OpenAI sends in
/// `x-ratelimit-reset-*`: `17ms`, `1s`, `6.5s`, `6m0s`, `1h2m3.004s`. Rounded up to the
/// millisecond, the finest unit OpenAI sends.
pub(crate) fn go_duration(delay: Duration) -> String {
    let millis = millis_ceil(delay);
    if millis == 0 {
        return "0s".to_owned();
    }
    if millis < 1000 {
        return format!("{millis}ms");
    }
    let (secs, frac) = (millis / 1000, millis % 1000);
    let (hours, minutes, seconds) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if hours > 0 {
        let _ = write!(out, "{hours}h");
    }
    if hours > 0 || minutes > 0 {
        let _ = write!(out, "{minutes}m");
    }
    let _ = write!(out, "{seconds}");
    if frac > 0 {
        let digits = format!("{frac:03}");
        let _ = write!(out, ".{}", digits.trim_end_matches('0'));
    }
    out.push('s');
    out
}

/// An RFC 3339 UTC timestamp (`2024-05-01T12:00:05Z`), rounded up to the second, as
/// Anthropic sends in `anthropic-ratelimit-*-reset`.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    let secs = epoch_secs_ceil(time);
    let (days, in_day) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, restricted to non-negative days so it needs no signed arithmetic).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days.saturating_add(719_468);
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_match_go_formatting() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(1), "1ms"),
            (Duration::from_millis(17), "17ms"),
            (Duration::from_secs(1), "1s"),
            (Duration::from_millis(6500), "6.5s"),
            (Duration::from_secs(360), "6m0s"),
            (Duration::from_millis(252_172), "4m12.172s"),
            (Duration::from_millis(83_909_144), "23h18m29.144s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_micros(1_000_001), "1.001s"),
        ];
        for (delay, expected) in cases {
            assert_eq!(go_duration(delay), expected, "{delay:?}");
        }
        // Must not panic at the extreme.
        assert!(go_duration(Duration::MAX).ends_with('s'));
    }

    #[test]
    fn rfc3339_agrees_with_httpdate_on_the_calendar() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
        // Cross-check instants over two centuries against httpdate's own calendar:
        // "2000-02-29T00:00:00Z" must read "29 Feb 2000 00:00:00" in the HTTP-date.
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        for secs in (0..6_000_000_000u64).step_by(7_777_777) {
            let time = UNIX_EPOCH + Duration::from_secs(secs);
            let ours = rfc3339(time);
            let (date, clock) = ours
                .trim_end_matches('Z')
                .split_once('T')
                .unwrap_or_default();
            let date: Vec<&str> = date.split('-').collect();
            let month: usize = date.get(1).and_then(|m| m.parse().ok()).unwrap_or(0);
            let expected = format!(
                "{} {} {} {clock} GMT",
                date.get(2).unwrap_or(&""),
                MONTHS.get(month.wrapping_sub(1)).unwrap_or(&"?"),
                date.first().unwrap_or(&""),
            );
            assert!(
                httpdate::fmt_http_date(time).ends_with(&expected),
                "{ours} vs {}",
                httpdate::fmt_http_date(time)
            );
        }
    }

    #[test]
    fn rounding_is_up() {
        assert_eq!(secs_ceil(Duration::from_millis(1001)), 2);
        assert_eq!(secs_ceil(Duration::from_secs(3)), 3);
        assert_eq!(millis_ceil(Duration::from_micros(1500)), 2);
        assert_eq!(epoch_secs_ceil(UNIX_EPOCH + Duration::from_millis(10)), 1);
        assert_eq!(
            epoch_secs_floor(UNIX_EPOCH + Duration::from_millis(1010)),
            1
        );
    }
}
