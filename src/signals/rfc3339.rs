//! RFC 3339 timestamps (`2024-08-01T12:00:30Z`, `2024-08-01T14:00:30.5+02:00`), as Anthropic
//! sends in `anthropic-ratelimit-*-reset`.
//!
//! A small strict parser rather than a date-time crate: the grammar is one fixed layout, the
//! crate needs only "which instant is this", and writing it here keeps offsets (which
//! `humantime`'s parser rejects) and keeps the dependency tree small. Calendar fields are
//! validated (month length, leap years), so `2023-02-29` is rejected, not rolled over.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::duration::NANOS_PER_SEC;
use crate::time::nanos_to_duration;

/// Parses an RFC 3339 `date-time` into the instant it names.
///
/// Accepts `T`, `t` or a space between date and time (RFC 3339 §5.6 note), a fraction of a
/// second of any length (truncated to nanoseconds), a leap second `:60` (counted as the next
/// second) and an offset `Z`, `z` or `±hh:mm`. Surrounding spaces and tabs are ignored.
/// Anything else, including out-of-range fields, gives `None`.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use reqwest_throttle::signals::parse_rfc3339;
///
/// let t = parse_rfc3339("1970-01-01T01:00:00+01:00");
/// assert_eq!(t, Some(UNIX_EPOCH));
/// assert_eq!(parse_rfc3339("1970-01-01T00:00:01.5Z"), Some(UNIX_EPOCH + Duration::from_millis(1_500)));
/// assert_eq!(parse_rfc3339("2023-02-29T00:00:00Z"), None);
/// ```
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = super::duration::trim_ows(s).as_bytes();
    let year = digits(b.get(0..4)?)?;
    let month = digits(b.get(5..7)?)?;
    let day = digits(b.get(8..10)?)?;
    let hour = digits(b.get(11..13)?)?;
    let minute = digits(b.get(14..16)?)?;
    let second = digits(b.get(17..19)?)?;
    let separators_ok = b.get(4) == Some(&b'-')
        && b.get(7) == Some(&b'-')
        && matches!(b.get(10), Some(b'T' | b't' | b' '))
        && b.get(13) == Some(&b':')
        && b.get(16) == Some(&b':');
    if !separators_ok
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }

    let mut rest = b.get(19..)?;
    let mut fraction_nanos: u128 = 0;
    if let Some((b'.', after_dot)) = rest.split_first() {
        let len = after_dot.iter().take_while(|c| c.is_ascii_digit()).count();
        if len == 0 {
            return None;
        }
        let (fraction, after) = after_dot.split_at(len);
        // Only the first nine digits can matter at nanosecond resolution.
        let kept = fraction.get(..9).unwrap_or(fraction);
        let value = kept
            .iter()
            .fold(0u128, |acc, d| acc * 10 + u128::from(d - b'0'));
        fraction_nanos = value * 10u128.pow(9 - kept.len() as u32);
        rest = after;
    }

    let offset_secs: i64 = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hours = digits(&[*h1, *h2])?;
            let minutes = digits(&[*m1, *m2])?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let magnitude = i64::from(hours * 3600 + minutes * 60);
            if *sign == b'-' {
                -magnitude
            } else {
                magnitude
            }
        }
        _ => return None,
    };

    // Every field is bounded above (year ≤ 9999), so this i64 arithmetic cannot overflow.
    let days = days_from_civil(i64::from(year), i64::from(month), i64::from(day));
    let local_secs =
        days * 86_400 + i64::from(hour) * 3_600 + i64::from(minute) * 60 + i64::from(second);
    let utc_nanos =
        i128::from(local_secs - offset_secs) * NANOS_PER_SEC as i128 + fraction_nanos as i128;
    let magnitude = nanos_to_duration(utc_nanos.unsigned_abs());
    if utc_nanos >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    }
}

/// The delay from `reference` until the RFC 3339 instant `s`; an instant in the past gives
/// [`Duration::ZERO`].
pub(crate) fn rfc3339_delay(s: &str, reference: SystemTime) -> Option<Duration> {
    let target = parse_rfc3339(s)?;
    Some(target.duration_since(reference).unwrap_or(Duration::ZERO))
}

/// Parses a run of ASCII digits (at most four here) into a number.
fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0')))
}

fn is_leap_year(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`: shift the year to start in March so the leap day is last).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y.rem_euclid(400);
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> Option<SystemTime> {
        Some(UNIX_EPOCH + Duration::from_secs(secs))
    }

    #[test]
    fn rfc3339_section_5_8_examples() {
        // 1985-04-12T23:20:50.52Z is 482196050.52 s after the epoch.
        assert_eq!(
            parse_rfc3339("1985-04-12T23:20:50.52Z"),
            Some(UNIX_EPOCH + Duration::from_millis(482_196_050_520))
        );
        // 1996-12-19T16:39:57-08:00 is the same instant as 1996-12-20T00:39:57Z.
        assert_eq!(
            parse_rfc3339("1996-12-19T16:39:57-08:00"),
            parse_rfc3339("1996-12-20T00:39:57Z")
        );
        assert_eq!(parse_rfc3339("1996-12-20T00:39:57Z"), at(851_042_397));
        // A leap second is the next second.
        assert_eq!(
            parse_rfc3339("1990-12-31T23:59:60Z"),
            parse_rfc3339("1991-01-01T00:00:00Z")
        );
    }

    #[test]
    fn anthropic_reset_and_calendar_edges() {
        assert_eq!(parse_rfc3339("2024-08-01T12:00:30Z"), at(1_722_513_630));
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), at(951_782_400));
        assert_eq!(parse_rfc3339("2024-08-01t12:00:30z"), at(1_722_513_630));
        assert_eq!(parse_rfc3339("2024-08-01 12:00:30Z"), at(1_722_513_630));
        assert_eq!(
            parse_rfc3339("1969-12-31T23:59:59Z"),
            UNIX_EPOCH.checked_sub(Duration::from_secs(1))
        );
    }

    #[test]
    fn rejects_malformed_and_out_of_range() {
        for bad in [
            "",
            "2024-08-01",
            "2024-08-01T12:00:30",
            "2024-08-01T12:00:30+0200",
            "2024-08-01T12:00:30+02",
            "2024-13-01T00:00:00Z",
            "2024-00-01T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2024-08-01T24:00:00Z",
            "2024-08-01T12:60:00Z",
            "2024-08-01T12:00:61Z",
            "2024-08-01T12:00:30.Z",
            "2024-08-01T12:00:30+24:00",
            "2024-08-01T12:00:30Zjunk",
            "2024-08-01X12:00:30Z",
            "+024-08-01T12:00:30Z",
            "2024-08-01T12:00:30\u{b5}",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn delay_is_zero_in_the_past() {
        let reference = UNIX_EPOCH + Duration::from_secs(1_722_513_600);
        assert_eq!(
            rfc3339_delay("2024-08-01T12:00:30Z", reference),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            rfc3339_delay("2024-08-01T11:00:00Z", reference),
            Some(Duration::ZERO)
        );
    }
}
