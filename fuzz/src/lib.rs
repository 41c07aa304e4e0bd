//! Helpers shared by the fuzz targets.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};
use reqwest_throttle::signals::HEADER_NAMES;

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
/// selector picks a name from [`HEADER_NAMES`]. Values a `HeaderValue` cannot hold are
/// skipped.
pub fn header_map(data: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Some((selector, value)) = line.split_first() else {
            continue;
        };
        let name =
            HeaderName::from_static(HEADER_NAMES[usize::from(*selector) % HEADER_NAMES.len()]);
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(name, value);
        }
    }
    headers
}
