#![no_main]
//! `parse_rfc3339` on arbitrary text: never panics, and what it accepts has the fixed layout.

use libfuzzer_sys::fuzz_target;
use reqwest_throttle::signals::parse_rfc3339;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if parse_rfc3339(text).is_some() {
        let core = text.trim_matches([' ', '\t']).as_bytes();
        assert!(core.len() >= 20, "{text:?}");
        assert_eq!(core[4], b'-', "{text:?}");
        assert_eq!(core[13], b':', "{text:?}");
    }
});
