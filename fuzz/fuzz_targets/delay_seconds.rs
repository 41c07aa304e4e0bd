#![no_main]
//! `parse_delay_seconds` and `parse_delay_millis` on arbitrary text: never panic, accept only
//! digits and one dot, and seconds are exactly a thousand times milliseconds' unit.

use libfuzzer_sys::fuzz_target;
use reqwest_throttle::signals::{parse_delay_millis, parse_delay_seconds};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let seconds = parse_delay_seconds(text);
    let millis = parse_delay_millis(text);
    assert_eq!(seconds.is_some(), millis.is_some());
    if seconds.is_some() {
        let core = text.trim_matches([' ', '\t']);
        assert!(core.bytes().all(|b| b.is_ascii_digit() || b == b'.'), "{text:?}");
        assert!(core.bytes().filter(|b| *b == b'.').count() <= 1, "{text:?}");
    }
    if let (Some(s), Some(ms)) = (seconds, millis) {
        assert!(s >= ms, "{text:?}: {s:?} < {ms:?}");
    }
});
