//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod bench;
#[cfg(unix)]
pub mod edl;
pub mod fastboot;
#[cfg(feature = "gui")]
pub mod gui;
pub mod moto;
pub mod replay;

use std::path::{Path, PathBuf};

use flashline::device::quirks::Quirks;
use flashline::engine::{DeviceTarget, JobOptions, JobRequest};
use flashline::package::TrustStore;

/// Finds an independent peer program (e.g. Google's `fastboot`, `simg2img`).
///
/// Without it the calling test is skipped with a note, unless `FLASHLINE_REQUIRE_PEERS` is
/// set (CI sets it after installing the Debian packages), in which case the test fails.
pub fn peer(program: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var_os("FLASHLINE_REQUIRE_PEERS").is_some() {
            panic!("peer program `{program}` is not installed and FLASHLINE_REQUIRE_PEERS is set");
        }
        eprintln!("skipping: peer program `{program}` is not installed");
    }
    found
}

/// An in-process job on one of flashline's virtual devices at `address`, keeping every file
/// it writes under `dir`. Tests adjust `options` as they need.
pub fn virtual_job(package: &Path, trust: TrustStore, address: &str, dir: &Path) -> JobRequest {
    JobRequest {
        package: package.to_path_buf(),
        trust,
        device: DeviceTarget {
            address: address.to_string(),
            is_virtual: true,
            probe: false,
        },
        quirks: Quirks::builtin(),
        options: JobOptions::under(dir),
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on right now, for a peer server to take.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
