//! Any bytes as what a modem sends: line splitting, result codes and +CBC parsing.
#![no_main]

use flashline::protocol::at::{BatteryReading, FinalResult, LineReader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut reader = LineReader::new(2048);
    for chunk in data.chunks(7) {
        let _ = reader.feed(chunk);
        while let Some(line) = reader.next_line() {
            let _ = FinalResult::parse(&line);
            let _ = BatteryReading::parse(&line);
        }
    }
});
