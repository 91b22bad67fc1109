//! Where flashline keeps its own files: trust keys, reports, the per-device history.
//!
//! Everything lives under one home directory, `$FLASHLINE_HOME` if set (tests and
//! technicians with several benches use it), else the platform's config directory.

use std::path::PathBuf;

/// flashline's home directory.
pub fn home() -> PathBuf {
    if let Some(dir) = std::env::var_os("FLASHLINE_HOME") {
        return PathBuf::from(dir);
    }
    dirs::config_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("flashline")
}

/// The default trust directory: one `.pub` file per trusted signing key.
pub fn trust_dir() -> PathBuf {
    home().join("trust")
}

/// Where job reports are written unless `--report` says otherwise.
pub fn reports_dir() -> PathBuf {
    home().join("reports")
}

/// Where copies of identity partitions (IMEI, NV, calibration) are kept.
pub fn backups_dir() -> PathBuf {
    home().join("backups")
}

/// The local record of what was flashed onto which serial number.
pub fn history_file() -> PathBuf {
    home().join("history.json")
}

/// Per-device journals of jobs in progress, so an interrupted job can resume.
pub fn journal_dir() -> PathBuf {
    home().join("journal")
}
