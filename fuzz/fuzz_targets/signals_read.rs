#![no_main]
//! `Signals::read` (Retry-After and friends, x-should-retry, every rate-limit family) on an
//! arbitrary header map and clock: never panics, and is a pure function of its inputs.

use libfuzzer_sys::fuzz_target;
use reqwest_throttle::signals::Signals;
use reqwest_throttle_fuzz::{clock_and_rest, header_map};

fuzz_target!(|data: &[u8]| {
    let (now, rest) = clock_and_rest(data);
    let headers = header_map(rest);
    let signals = Signals::read(&headers, now);
    assert_eq!(signals, Signals::read(&headers, now));
});
