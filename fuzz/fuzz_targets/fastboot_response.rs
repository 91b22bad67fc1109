//! Any bytes as a fastboot response (device → host) or command (host → device).
#![no_main]

use flashline::protocol::fastboot::{parse_number, Command, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Response::parse(data) {
        let _ = Response::parse(&r.encode());
    }
    let _ = Command::parse(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_number(text);
    }
});
