//! Helpers shared by the fuzz targets.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};

/// Every header name `reqwest_throttle::signals` reads.
pub const NAMES: &[&str] = &[
    "retry-after",
    "retry-after-ms",
    "x-ms-retry-after-ms",
    "date",
    "x-should-retry",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    "anthropic-ratelimit-requests-limit",
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-requests-reset",
    "anthropic-ratelimit-tokens-limit",
    "anthropic-ratelimit-tokens-remaining",
    "anthropic-ratelimit-tokens-reset",
    "anthropic-ratelimit-input-tokens-reset",
    "anthropic-ratelimit-output-tokens-reset",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-used",
    "x-ratelimit-reset",
    "x-ratelimit-resource",
    "x-rate-limit-limit",
    "x-rate-limit-remaining",
    "x-rate-limit-reset",
    "ratelimit",
    "ratelimit-policy",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
];

/// Splits the first eight bytes off as a wall-clock reading (seconds since the epoch, any
/// value, including ones `SystemTime` cannot add), returning it and the rest.
pub fn clock_and_rest(data: &[u8]) -> (SystemTime, &[u8]) {
    let (head, rest) = data.split_at(data.len().min(8));
    let mut secs = [0u8; 8];
    secs[..head.len()].copy_from_slice(head);
    let now = UNIX_EPOCH
        .checked_add(Duration::from_secs(u64::from_le_bytes(secs)))
        .unwrap_or(UNIX_EPOCH);
    (now, rest)
}

/// Builds a header map from fuzz input: lines of `<selector byte><value bytes>`, where the
/// selector picks a name from [`NAMES`]. Values a `HeaderValue` cannot hold are skipped.
pub fn header_map(data: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Some((selector, value)) = line.split_first() else {
            continue;
        };
        let name = HeaderName::from_static(NAMES[usize::from(*selector) % NAMES.len()]);
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(name, value);
        }
    }
    headers
}
