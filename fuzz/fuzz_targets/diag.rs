//! Any bytes as a DIAG stream, and as Sahara command-mode answers: frames decode or are
//! refused, a frame never grows past its cap, and a decoded frame encodes back to itself.
#![no_main]

use flashline::protocol::diag::{decode, encode, FrameReader, MAX_FRAME_LEN};
use flashline::protocol::sahara::identity::{parse_chip_id_v3, parse_serial, trim_pk_hash};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut reader = FrameReader::new();
    for frame in reader.push(data).into_iter().flatten() {
        assert!(frame.len() <= 2 * MAX_FRAME_LEN);
        let framed = encode(&frame);
        assert_eq!(decode(&framed[..framed.len() - 1]).unwrap(), frame);
    }
    let _ = (parse_serial(data), parse_chip_id_v3(data), trim_pk_hash(data));
});
