#![no_main]
//! The IETF `RateLimit` / `RateLimit-Policy` structured fields from arbitrary bytes: never
//! panic, and every reported window comes from some parsed entry.

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use reqwest_throttle::signals::{ietf_limits, ietf_service_limits};

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    // Lines alternate between the two fields, so split lists are exercised too.
    for (index, line) in data.split(|b| *b == b'\n').enumerate() {
        let name = if index % 2 == 0 { "ratelimit" } else { "ratelimit-policy" };
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(name, value);
        }
    }
    let entries = ietf_service_limits(&headers);
    if let Some(limits) = ietf_limits(&headers) {
        for window in [limits.requests, limits.tokens, limits.input_tokens, limits.output_tokens]
            .into_iter()
            .flatten()
        {
            assert!(
                entries.iter().any(|e| e.remaining == window.remaining
                    && e.reset_in == window.reset_in
                    && e.quota == window.limit),
                "{window:?} not among {entries:?}"
            );
        }
    }
});
