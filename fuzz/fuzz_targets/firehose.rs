//! Any text as a Firehose document: host commands as the device parses them, device
//! answers as the host parses them.
#![no_main]

use flashline::protocol::firehose::{Command, DeviceDoc};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(c) = Command::parse(text) {
            let _ = Command::parse(&c.to_xml());
        }
        let _ = DeviceDoc::parse(text);
    }
});
