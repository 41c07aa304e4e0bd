#![no_main]
//! `parse_http_date_delay` / `parse_retry_after` on arbitrary text and clocks: never panic,
//! and the response's Date, when given, makes the local clock irrelevant.

use libfuzzer_sys::fuzz_target;
use reqwest_throttle::signals::{parse_http_date_delay, parse_retry_after};
use reqwest_throttle_fuzz::clock_and_rest;

fuzz_target!(|data: &[u8]| {
    let (now, rest) = clock_and_rest(data);
    let (date, rest) = clock_and_rest(rest);
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let with_date = parse_http_date_delay(text, Some(date), now);
    assert_eq!(with_date, parse_http_date_delay(text, Some(date), date));
    let _ = parse_http_date_delay(text, None, now);
    let _ = parse_retry_after(text, Some(date), now);
});
