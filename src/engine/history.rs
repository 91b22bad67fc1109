//! flashline's local record of what it flashed onto which device.
//!
//! Devices that report no firmware version still get a downgrade check: the last package
//! flashline wrote to that serial number stands in for the version. Serial numbers come
//! from devices, so they are only ever keys inside this JSON file, never file names.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// What flashline last wrote to one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Product the device reported.
    pub product: String,
    /// Package name.
    pub package: String,
    /// Package version.
    pub version: String,
    /// Package security version.
    pub security_version: u64,
    /// When, RFC 3339.
    pub flashed_at: String,
}

/// Why the history could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// Reading or writing the file failed.
    #[error("history file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The failure.
        source: std::io::Error,
    },
    /// The file is not valid; a damaged history could hide a downgrade, so it is not ignored.
    #[error("history file {path} is damaged ({source}); move it aside to start a new one")]
    Damaged {
        /// The file.
        path: String,
        /// The parse error.
        source: serde_json::Error,
    },
}

/// The whole history, by serial number.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct History {
    devices: BTreeMap<String, HistoryEntry>,
}

impl History {
    /// Reads the history; a missing file is an empty history.
    pub fn load(path: &Path) -> Result<Self, HistoryError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(HistoryError::Io {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        serde_json::from_str(&text).map_err(|source| HistoryError::Damaged {
            path: path.display().to_string(),
            source,
        })
    }

    /// The entry for a serial number.
    pub fn get(&self, serial: &str) -> Option<&HistoryEntry> {
        self.devices.get(serial)
    }

    /// Records a successful flash and saves the file atomically.
    ///
    /// Jobs flashing several devices at once record one after another, so none of their
    /// entries is lost between reading and replacing the file.
    pub fn record(path: &Path, serial: &str, entry: HistoryEntry) -> Result<(), HistoryError> {
        static RECORDING: Mutex<()> = Mutex::new(());
        let _one_at_a_time = RECORDING.lock().unwrap_or_else(|p| p.into_inner());
        let mut history = Self::load(path)?;
        history.devices.insert(serial.to_string(), entry);
        let io = |source| HistoryError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(&history).expect("history serialises");
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_damage_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.json");
        assert!(History::load(&path).unwrap().get("S1").is_none());
        let entry = HistoryEntry {
            product: "p".into(),
            package: "pkg".into(),
            version: "1.2.3".into(),
            security_version: 4,
            flashed_at: "now".into(),
        };
        History::record(&path, "../S1", entry.clone()).unwrap();
        assert_eq!(History::load(&path).unwrap().get("../S1"), Some(&entry));
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(
            History::load(&path),
            Err(HistoryError::Damaged { .. })
        ));
    }
}
