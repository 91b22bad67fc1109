//! Any bytes as a Sahara packet.
#![no_main]

use flashline::protocol::sahara::Packet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Packet::parse(data) {
        let _ = Packet::parse(&p.encode());
    }
});
