//! Any bytes as an Android sparse image: validation, layout scanning and splitting.
#![no_main]

use flashline::protocol::sparse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sparse::expand(data, &mut sparse::Validate);
    if let Ok(layout) = sparse::scan_sparse(data) {
        for limit in [4096 + 68, 64 * 1024, 1 << 20] {
            if let Ok(pieces) = sparse::split(&layout, limit) {
                let mut cursor = sparse::SourceCursor::new(data);
                let mut scratch = vec![0u8; 4096];
                for piece in &pieces {
                    let mut out = std::io::sink();
                    if piece
                        .write(&layout, &mut cursor, &mut out, &mut scratch)
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    }
});
