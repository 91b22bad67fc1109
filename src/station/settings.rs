//! The station's settings: slot labels and the sound, kept in `station.toml` under
//! flashline's home, so labels survive restarts and the GUI and the CLI share them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The settings file's name under flashline's home.
pub const FILE: &str = "station.toml";
/// Largest settings file read.
const MAX_LEN: u64 = 256 * 1024;

/// What the technician set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Ring the terminal bell / play a tone when a slot finishes.
    pub sound: bool,
    /// Slot (USB port path or address) → label.
    pub labels: BTreeMap<String, String>,
}

impl Settings {
    /// Where the settings of the home `home` live.
    pub fn path(home: &Path) -> PathBuf {
        home.join(FILE)
    }

    /// Reads the settings; a missing file gives the defaults, a broken one too (with a
    /// warning), so a typo never stops a bench.
    pub fn load(home: &Path) -> Self {
        let path = Self::path(home);
        match crate::secure_fs::read(&path, MAX_LEN) {
            Ok(Some(bytes)) => match std::str::from_utf8(&bytes)
                .map_err(|e| e.to_string())
                .and_then(|t| toml::from_str(t).map_err(|e| e.to_string()))
            {
                Ok(settings) => settings,
                Err(e) => {
                    tracing::warn!("{}: {e}; using defaults", path.display());
                    Settings::default()
                }
            },
            Ok(None) => Settings::default(),
            Err(e) => {
                tracing::warn!("{}: {e}; using defaults", path.display());
                Settings::default()
            }
        }
    }

    /// Writes the settings atomically.
    pub fn save(&self, home: &Path) -> std::io::Result<()> {
        let text = toml::to_string(self).map_err(std::io::Error::other)?;
        crate::state_file::replace(&Self::path(home), text.as_bytes())
    }

    /// Sets or (with an empty text) clears a slot's label.
    pub fn set_label(&mut self, slot: &str, label: &str) {
        let label = label.trim();
        if label.is_empty() {
            self.labels.remove(slot);
        } else {
            self.labels.insert(slot.to_string(), label.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_and_broken_files_fall_back() {
        let home = tempfile::tempdir().unwrap();
        assert_eq!(Settings::load(home.path()), Settings::default());
        let mut s = Settings::default();
        s.set_label("usb:1-1.3", "left hub, port 3");
        s.sound = true;
        s.save(home.path()).unwrap();
        assert_eq!(Settings::load(home.path()), s);
        s.set_label("usb:1-1.3", " ");
        assert!(s.labels.is_empty());
        std::fs::write(Settings::path(home.path()), "labels = 3").unwrap();
        assert_eq!(Settings::load(home.path()), Settings::default());
    }
}
