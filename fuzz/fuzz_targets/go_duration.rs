#![no_main]
//! `parse_go_duration` on arbitrary text: never panics, and a parsed value never came from
//! text holding a minus sign.

use libfuzzer_sys::fuzz_target;
use reqwest_throttle::signals::parse_go_duration;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if parse_go_duration(text).is_some() {
        assert!(!text.contains('-'), "negative accepted: {text:?}");
    }
});
