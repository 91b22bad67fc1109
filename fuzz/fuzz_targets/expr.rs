//! Any text as a rawprogram/patch expression, evaluated against a small fake disk.
#![no_main]

use flashline::package::qualcomm::expr::{Expr, ExprContext};
use libfuzzer_sys::fuzz_target;

struct Disk;

impl ExprContext for Disk {
    type Error = std::io::Error;
    fn num_disk_sectors(&self) -> u64 {
        131_072
    }
    fn crc32(&mut self, start_sector: u64, len: u64) -> Result<u32, std::io::Error> {
        Ok((start_sector ^ len) as u32)
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(expr) = Expr::parse(text) {
            let _ = expr.eval(&mut Disk);
            let _ = Expr::parse(expr.as_str());
        }
    }
});
