//! Numbers of time units as servers write them: Go-style durations (`6m0s`, `17ms`) and the
//! plain decimals (`120`, `1.5`) behind delay-seconds and millisecond headers.
//!
//! All arithmetic is done in `u128` nanoseconds with saturation, so an absurd value becomes
//! [`Duration::MAX`] (a value for the caller to cap) instead of an overflow or a panic.

use std::time::Duration;

use crate::time::nanos_to_duration;

pub(crate) const NANOS_PER_MICRO: u128 = 1_000;
pub(crate) const NANOS_PER_MILLI: u128 = 1_000_000;
pub(crate) const NANOS_PER_SEC: u128 = 1_000_000_000;
const NANOS_PER_MIN: u128 = 60 * NANOS_PER_SEC;
const NANOS_PER_HOUR: u128 = 60 * NANOS_PER_MIN;

/// Fraction digits beyond this many are dropped: 10^-19 of an hour is far below a nanosecond,
/// and keeping the fraction below 10^19 lets `fraction * unit` stay inside `u128`.
const MAX_FRACTION_DIGITS: usize = 19;

/// Parses a Go-style duration as OpenAI and Azure OpenAI send in `x-ratelimit-reset-*`:
/// `1s`, `6m0s`, `17ms`, `4m12.172s`, `23h18m29.144s`, `1.5s`, `0s`, `250us`, `250µs`, `3ns`.
///
/// The grammar is Go's `time.ParseDuration`: an optional `+`, then one or more
/// `number unit` pairs where the number may have a fraction (`1.5h`, `.5s`) and the unit is
/// one of `ns`, `us`, `µs` (U+00B5), `μs` (U+03BC), `ms`, `s`, `m`, `h`; a lone `0` is also
/// accepted. Surrounding spaces and tabs are ignored.
///
/// Returns `None` for a negative duration (it has no meaning as a time to wait), a missing or
/// unknown unit, or anything else that is not the grammar above. A value too large for
/// [`Duration`] saturates to [`Duration::MAX`] rather than failing, like
/// [`parse_delay_seconds`](super::retry_after::parse_delay_seconds): the caller caps it.
/// Fractions are truncated to whole nanoseconds.
///
/// ```
/// use std::time::Duration;
/// use reqwest_throttle::signals::parse_go_duration;
///
/// assert_eq!(parse_go_duration("6m0s"), Some(Duration::from_secs(360)));
/// assert_eq!(parse_go_duration("4m12.172s"), Some(Duration::from_millis(252_172)));
/// assert_eq!(parse_go_duration("17ms"), Some(Duration::from_millis(17)));
/// assert_eq!(parse_go_duration("-1s"), None);
/// assert_eq!(parse_go_duration("12"), None); // a unit is required
/// ```
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = trim_ows(s);
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Some(Duration::ZERO);
    }
    if s.is_empty() {
        return None;
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let (integer, after) = split_digits(rest);
        let (fraction, after) = match after.strip_prefix('.') {
            Some(after_dot) => split_digits(after_dot),
            None => ("", after),
        };
        if integer.is_empty() && fraction.is_empty() {
            return None;
        }
        // The unit runs until the next number, as in Go; `find` yields a char boundary.
        let unit_len = after
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let unit_nanos = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => NANOS_PER_MICRO,
            "ms" => NANOS_PER_MILLI,
            "s" => NANOS_PER_SEC,
            "m" => NANOS_PER_MIN,
            "h" => NANOS_PER_HOUR,
            _ => return None,
        };
        total = total.saturating_add(decimal_nanos(integer, fraction, unit_nanos));
        rest = after;
    }
    Some(nanos_to_duration(total))
}

/// Parses `1*DIGIT [ "." 1*DIGIT ]` (after trimming spaces and tabs) as a count of units of
/// `unit_nanos` nanoseconds. No sign, no exponent, no `inf`/`nan`; enormous values saturate
/// to [`Duration::MAX`]. One parser serves delay-seconds, `retry-after-ms` and epoch resets.
pub(crate) fn parse_decimal(s: &str, unit_nanos: u128) -> Option<Duration> {
    let (integer, rest) = split_digits(trim_ows(s));
    if integer.is_empty() {
        return None;
    }
    let fraction = match rest.strip_prefix('.') {
        None if rest.is_empty() => "",
        None => return None,
        Some(after_dot) => {
            let (fraction, rest) = split_digits(after_dot);
            if fraction.is_empty() || !rest.is_empty() {
                return None;
            }
            fraction
        }
    };
    Some(nanos_to_duration(decimal_nanos(
        integer, fraction, unit_nanos,
    )))
}

/// Parses a non-negative integer count (`1*DIGIT` after trimming); enormous values saturate to
/// `u64::MAX`. A sign (Azure's `-1` for "unknown") or any other byte gives `None`.
pub(crate) fn parse_count(s: &str) -> Option<u64> {
    let (digits, rest) = split_digits(trim_ows(s));
    if digits.is_empty() || !rest.is_empty() {
        return None;
    }
    Some(digits.bytes().fold(0u64, |acc, d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// Trims HTTP optional whitespace (SP and HTAB) from both ends.
pub(crate) fn trim_ows(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// Splits the leading ASCII digits off `s` (ASCII digits are one byte, so the split is on a
/// char boundary).
fn split_digits(s: &str) -> (&str, &str) {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    s.split_at(n)
}

/// `integer.fraction` units of `unit_nanos`, in saturating nanoseconds. Both strings hold only
/// ASCII digits.
fn decimal_nanos(integer: &str, fraction: &str, unit_nanos: u128) -> u128 {
    let whole = integer.bytes().fold(0u128, |acc, d| {
        acc.saturating_mul(10).saturating_add(u128::from(d - b'0'))
    });
    let kept = fraction.get(..MAX_FRACTION_DIGITS).unwrap_or(fraction);
    let (numerator, denominator) = kept.bytes().fold((0u128, 1u128), |(n, d), digit| {
        (n * 10 + u128::from(digit - b'0'), d * 10)
    });
    // numerator < 10^19 and unit_nanos < 2^42, so the product stays far below u128::MAX.
    whole
        .saturating_mul(unit_nanos)
        .saturating_add(numerator * unit_nanos / denominator)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[test]
    fn openai_examples() {
        assert_eq!(parse_go_duration("1s"), ms(1_000));
        assert_eq!(parse_go_duration("6m0s"), ms(360_000));
        assert_eq!(parse_go_duration("17ms"), ms(17));
        assert_eq!(parse_go_duration("4m12.172s"), ms(252_172));
        assert_eq!(
            parse_go_duration("23h18m29.144s"),
            ms(((23 * 60 + 18) * 60 + 29) * 1_000 + 144)
        );
        assert_eq!(parse_go_duration("1.5s"), ms(1_500));
        assert_eq!(parse_go_duration("0s"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
    }

    #[test]
    fn every_unit_and_both_micro_signs() {
        assert_eq!(parse_go_duration("3ns"), Some(Duration::from_nanos(3)));
        for micro in ["250us", "250\u{b5}s", "250\u{3bc}s"] {
            assert_eq!(parse_go_duration(micro), Some(Duration::from_micros(250)));
        }
        assert_eq!(parse_go_duration("2m"), ms(120_000));
        assert_eq!(parse_go_duration("1h"), ms(3_600_000));
        assert_eq!(parse_go_duration("1.5h"), ms(5_400_000));
        assert_eq!(parse_go_duration(".5s"), ms(500));
        assert_eq!(parse_go_duration("5.s"), ms(5_000));
        assert_eq!(
            parse_go_duration("1h1m1s1ms1us1ns").map(|d| d.as_nanos()),
            Some(3_661_001_001_001)
        );
        assert_eq!(parse_go_duration(" +2s\t"), ms(2_000));
    }

    #[test]
    fn rejects_what_go_rejects_and_negatives() {
        for bad in [
            "", " ", "12", "-1s", "-0s", "s", ".s", "1x", "1S", "1sec", "1 s", "1s ms", "1e3s",
            "inf", "nan", "1.2.3s", "++1s", "1s-", "\u{b5}", "1\u{b5}",
        ] {
            assert_eq!(parse_go_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn enormous_values_saturate_and_long_fractions_truncate() {
        assert_eq!(
            parse_go_duration("99999999999999999999999h"),
            Some(Duration::MAX)
        );
        assert_eq!(
            parse_go_duration(&format!("{}s", "9".repeat(500))),
            Some(Duration::MAX)
        );
        assert_eq!(
            parse_go_duration("0.123456789999999999999999999s"),
            Some(Duration::from_nanos(123_456_789))
        );
    }

    #[test]
    fn decimal_accepts_plain_numbers_only() {
        assert_eq!(parse_decimal(" 7 ", NANOS_PER_SEC), ms(7_000));
        assert_eq!(parse_decimal("0.1", NANOS_PER_SEC), ms(100));
        assert_eq!(
            parse_decimal("1.5", NANOS_PER_MILLI),
            Some(Duration::from_micros(1_500))
        );
        for bad in [
            "", ".5", "5.", "+5", "-5", "1e3", "inf", "nan", "0x10", "5 5", "5s",
        ] {
            assert_eq!(parse_decimal(bad, NANOS_PER_SEC), None, "{bad:?}");
        }
        assert_eq!(
            parse_decimal("99999999999999999999", NANOS_PER_SEC),
            Some(Duration::MAX)
        );
    }

    #[test]
    fn counts_saturate_and_reject_signs() {
        assert_eq!(parse_count(" 42 "), Some(42));
        assert_eq!(parse_count("99999999999999999999999"), Some(u64::MAX));
        for bad in ["-1", "+1", "", "1.0", "1k"] {
            assert_eq!(parse_count(bad), None, "{bad:?}");
        }
    }
}
