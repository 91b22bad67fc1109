//! Any bytes as a package file: opening and verifying must fail cleanly, never panic or
//! allocate what a header claims.
#![no_main]

use std::io::Write;
use std::sync::OnceLock;

use flashline::package::{Package, TrustStore};
use libfuzzer_sys::fuzz_target;

fn trust() -> &'static TrustStore {
    static TRUST: OnceLock<TrustStore> = OnceLock::new();
    TRUST.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/demo-keys");
        TrustStore::load_dir(std::path::Path::new(dir)).expect("demo key loads")
    })
}

fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(data).expect("write");
    if let Ok(package) = Package::open(file.path()) {
        let _ = package.manifest().images.len();
        let _ = package.verify(trust());
    }
});
