//! Any text as a rawprogram or patch file of a flat build.
#![no_main]

use flashline::package::qualcomm::{parse_patches, parse_rawprogram};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_rawprogram(text);
        let _ = parse_patches(text);
    }
});
