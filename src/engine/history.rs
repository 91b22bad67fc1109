//! flashline's local record of what it flashed onto which device: a downgrade floor.
//!
//! A device's own version report can be wrong, missing or reset (a phone whose version
//! partition was wiped reports the factory version again; modems and EDL devices report no
//! security version at all). So the version a package is compared with is the *higher* of
//! what the device reports and what flashline last wrote to it ([`version_floor`],
//! [`security_floor`]); the security version recorded for a device never goes down.
//!
//! Entries are keyed by product *and* serial number: placeholder serials such as
//! `0123456789ABCDEF` are shared by many devices of different models. Serial numbers come
//! from devices, so they are only ever keys inside this JSON file, never file names.
//!
//! The file is shared by every flashline process on the computer: each read-modify-write
//! holds an exclusive lock on `history.json.lock`, and the file is replaced atomically
//! (see [`crate::state_file`]); a symbolic link planted for the file or its folder is
//! refused, so the job stops at preflight rather than reading or writing through it. A damaged file is never reset silently: it is renamed aside
//! with a timestamp and the caller is told where it went.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::device::{DeviceInfo, Mode};
use crate::package::VerifiedPackage;
use crate::state_file;

/// A security version no device can hold: the largest `u64` (what an unset or erased
/// counter reads as). It is shown as impossible and never used as a floor.
pub const IMPOSSIBLE_SECURITY_VERSION: u64 = u64::MAX;

/// Larger history files are not read: about 300 000 devices' entries.
const MAX_HISTORY_BYTES: u64 = 64 * 1024 * 1024;

/// What flashline last wrote to one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Product the device reported (or the package's target, for a device that reports none).
    pub product: String,
    /// Package name.
    pub package: String,
    /// Package version.
    pub version: String,
    /// The highest security version flashline ever wrote to this device (it never goes
    /// down, even when an older package is installed on purpose).
    pub security_version: u64,
    /// When, RFC 3339.
    pub flashed_at: String,
}

/// Why the history could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// Reading, locking or writing the file failed.
    #[error("history file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The failure.
        source: std::io::Error,
    },
    /// The file was not valid. A damaged history could hide a downgrade, so it is kept
    /// aside for a person to look at, never ignored or overwritten.
    #[error(
        "flashline's history file {path} was damaged ({reason}); it was kept as {kept} and a new \
         history is started, so the downgrade floors it held are lost: check the device's \
         versions, restore the file if it can be repaired, and run the job again"
    )]
    Damaged {
        /// The file.
        path: String,
        /// Where the damaged file was moved.
        kept: String,
        /// The parse error.
        reason: String,
    },
}

/// The whole history: by product, then by serial number.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct History {
    /// The current layout.
    #[serde(default)]
    products: BTreeMap<String, BTreeMap<String, HistoryEntry>>,
    /// The layout of earlier builds (by serial alone); read, folded into `products` by the
    /// product each entry names, and never written again.
    #[serde(default, skip_serializing)]
    devices: BTreeMap<String, HistoryEntry>,
}

impl History {
    /// Reads the history; a missing file is an empty history. A damaged file is renamed
    /// aside and reported as [`HistoryError::Damaged`].
    pub fn load(path: &Path) -> Result<Self, HistoryError> {
        let _lock = lock(path)?;
        Self::read(path)
    }

    /// The entry for a device of `product` with `serial`.
    pub fn get(&self, product: &str, serial: &str) -> Option<&HistoryEntry> {
        self.products.get(product)?.get(serial)
    }

    /// Records a successful flash of `serial` (the entry names the product) and saves the
    /// file atomically, under the lock, so concurrent jobs (threads or processes) never lose
    /// each other's entries. The security version kept is the higher of the old and new.
    ///
    /// Returns a note when a damaged file had to be kept aside to record this.
    pub fn record(
        path: &Path,
        serial: &str,
        entry: HistoryEntry,
    ) -> Result<Option<String>, HistoryError> {
        let _lock = lock(path)?;
        let (mut history, note) = match Self::read(path) {
            Ok(history) => (history, None),
            Err(e @ HistoryError::Damaged { .. }) => (History::default(), Some(e.to_string())),
            Err(e) => return Err(e),
        };
        let serials = history.products.entry(entry.product.clone()).or_default();
        let floor = serials.get(serial).map_or(0, |old| old.security_version);
        let entry = HistoryEntry {
            security_version: entry.security_version.max(floor),
            ..entry
        };
        serials.insert(serial.to_string(), entry);
        let text = serde_json::to_string_pretty(&history).expect("the history serialises") + "\n";
        state_file::replace(path, text.as_bytes()).map_err(|source| HistoryError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Ok(note)
    }

    /// Reads the file; the caller holds the lock.
    fn read(path: &Path) -> Result<Self, HistoryError> {
        let bytes = match state_file::read(path, MAX_HISTORY_BYTES) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(Self::default()),
            Err(source) => {
                return Err(HistoryError::Io {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        match serde_json::from_slice::<History>(&bytes) {
            Ok(mut history) => {
                for (serial, entry) in std::mem::take(&mut history.devices) {
                    history
                        .products
                        .entry(entry.product.clone())
                        .or_default()
                        .entry(serial)
                        .or_insert(entry);
                }
                Ok(history)
            }
            Err(e) => Err(keep_aside(path, e.to_string())),
        }
    }
}

/// The product a device's history is kept under: what the device reports, or, for a device
/// that cannot say (EDL), the product the package is flashed as.
pub fn product_key(device: &DeviceInfo, package: &VerifiedPackage) -> Option<String> {
    super::product_of(device, package)
}

/// flashline's last record of this device, for preflight; `None` for a device without a
/// serial number (or product).
pub fn lookup(
    path: &Path,
    device: &DeviceInfo,
    package: &VerifiedPackage,
) -> Result<Option<HistoryEntry>, HistoryError> {
    let (Some(serial), Some(product)) = (&device.serial, product_key(device, package)) else {
        return Ok(None);
    };
    Ok(History::load(path)?.get(&product, serial).cloned())
}

/// A version a package is compared with, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Floor<T> {
    /// The version.
    pub value: T,
    /// Plain words: the device, flashline's history, or both.
    pub source: String,
}

fn from_history(h: &HistoryEntry) -> String {
    format!(
        "flashline's history of this device ({} flashed {})",
        h.package, h.flashed_at
    )
}

/// The firmware version to compare with, for a device that reports a comparable one: the
/// higher of it and the version flashline last wrote. A history entry whose version does
/// not parse is no floor (flashline writes only valid versions there).
pub fn version_floor(
    device: &semver::Version,
    history: Option<&HistoryEntry>,
) -> Floor<semver::Version> {
    let written = history.and_then(|h| Some((semver::Version::parse(&h.version).ok()?, h)));
    match written {
        Some((w, h)) if w > *device => Floor {
            value: w,
            source: format!("{}; the device reports only {device}", from_history(h)),
        },
        _ => Floor {
            value: device.clone(),
            source: "the device".into(),
        },
    }
}

/// The security version to compare with: the higher of the device's and the highest one
/// flashline wrote. An impossible device value ([`IMPOSSIBLE_SECURITY_VERSION`]) is no floor.
pub fn security_floor(device: Option<u64>, history: Option<&HistoryEntry>) -> Option<Floor<u64>> {
    let device = device.filter(|&v| v != IMPOSSIBLE_SECURITY_VERSION);
    match (device, history) {
        (Some(d), Some(h)) if h.security_version > d => Some(Floor {
            value: h.security_version,
            source: format!("{}; the device reports only {d}", from_history(h)),
        }),
        (Some(d), _) => Some(Floor {
            value: d,
            source: "the device".into(),
        }),
        (None, Some(h)) => Some(Floor {
            value: h.security_version,
            source: from_history(h),
        }),
        (None, None) => None,
    }
}

/// [`security_floor`] for preflight: the floor, with a note when it comes from history
/// alone because the device cannot report one; or, without any floor, what to show for
/// the device and why nothing could be compared.
pub fn device_security_floor(
    device: &DeviceInfo,
    history: Option<&HistoryEntry>,
) -> Result<Floor<u64>, (String, String)> {
    let never_reports = matches!(device.mode, Mode::Modem | Mode::Edl);
    let impossible = device.security_version == Some(IMPOSSIBLE_SECURITY_VERSION);
    match security_floor(device.security_version, history) {
        Some(mut floor) => {
            if impossible {
                floor.source += &format!(
                    "; the device's value {IMPOSSIBLE_SECURITY_VERSION} is impossible and was ignored"
                );
            } else if never_reports {
                floor.source += "; modems and EDL devices report no security version, so \
                                 flashline's history is the whole check";
            }
            Ok(floor)
        }
        None if impossible => Err((
            format!("{IMPOSSIBLE_SECURITY_VERSION} (impossible)"),
            format!(
                "the device reports security version {IMPOSSIBLE_SECURITY_VERSION}, which no device \
                 can hold, and flashline has not flashed it before; the device's own \
                 anti-rollback check still applies"
            ),
        )),
        None if never_reports => Err((
            "not reported".into(),
            "modems and EDL devices report no security version, so flashline's history is the \
             whole check, and flashline has not flashed this device before; the device's own \
             anti-rollback check still applies"
                .into(),
        )),
        None => Err((
            "not reported".into(),
            "the device reports no security version and flashline has not flashed it before; \
             the device's own anti-rollback check still applies"
                .into(),
        )),
    }
}

/// Takes the lock on the history file shared by every flashline process.
fn lock(path: &Path) -> Result<state_file::Lock, HistoryError> {
    state_file::Lock::take(path).map_err(|source| HistoryError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Renames a damaged history aside (`history.json.damaged-<time>`) and says where.
fn keep_aside(path: &Path, reason: String) -> HistoryError {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(':', "-");
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".damaged-{stamp}"));
    let mut kept = path.with_file_name(&name);
    for n in 1.. {
        if kept.symlink_metadata().is_err() {
            break;
        }
        kept = path.with_file_name(format!("{}-{n}", name.to_string_lossy()));
    }
    match std::fs::rename(path, &kept) {
        Ok(()) => HistoryError::Damaged {
            path: path.display().to_string(),
            kept: kept.display().to_string(),
            reason,
        },
        Err(source) => HistoryError::Io {
            path: path.display().to_string(),
            source: std::io::Error::other(format!(
                "it is damaged ({reason}) and could not be moved aside: {source}"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(product: &str, version: &str, security_version: u64) -> HistoryEntry {
        HistoryEntry {
            product: product.into(),
            package: "pkg".into(),
            version: version.into(),
            security_version,
            flashed_at: "now".into(),
        }
    }

    #[test]
    fn records_round_trip_by_product_and_serial() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.json");
        assert!(History::load(&path).unwrap().get("p", "S1").is_none());
        let e = entry("p", "1.2.3", 4);
        assert_eq!(History::record(&path, "../S1", e.clone()).unwrap(), None);
        let history = History::load(&path).unwrap();
        assert_eq!(history.get("p", "../S1"), Some(&e));
        assert_eq!(
            history.get("q", "../S1"),
            None,
            "another product, same serial"
        );
    }

    #[test]
    fn the_security_version_never_goes_down() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.json");
        History::record(&path, "S1", entry("p", "2.0.0", 9)).unwrap();
        History::record(&path, "S1", entry("p", "1.0.0", 3)).unwrap();
        let h = History::load(&path).unwrap();
        let e = h.get("p", "S1").unwrap();
        assert_eq!((e.version.as_str(), e.security_version), ("1.0.0", 9));
    }

    #[test]
    fn the_floor_is_the_higher_of_device_and_history() {
        let h = entry("p", "2.0.0", 9);
        let v1 = semver::Version::new(1, 0, 0);
        let floor = version_floor(&v1, Some(&h));
        assert_eq!(floor.value, semver::Version::new(2, 0, 0));
        assert!(
            floor.source.contains("reports only 1.0.0"),
            "{}",
            floor.source
        );
        let v3 = semver::Version::new(3, 0, 0);
        assert_eq!(version_floor(&v3, Some(&h)).value, v3);
        assert_eq!(security_floor(Some(5), Some(&h)).unwrap().value, 9);
        assert_eq!(security_floor(Some(12), Some(&h)).unwrap().value, 12);
        let impossible = security_floor(Some(IMPOSSIBLE_SECURITY_VERSION), Some(&h)).unwrap();
        assert_eq!(impossible.value, 9);
        assert!(security_floor(Some(IMPOSSIBLE_SECURITY_VERSION), None).is_none());
    }

    #[test]
    fn the_old_layout_is_read_by_product() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.json");
        let old = serde_json::json!({"devices": {"S1": entry("p", "1.0.0", 2)}});
        std::fs::write(&path, old.to_string()).unwrap();
        assert!(History::load(&path).unwrap().get("p", "S1").is_some());
    }

    #[test]
    fn a_damaged_file_is_kept_aside_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.json");
        std::fs::write(&path, "{").unwrap();
        let err = History::load(&path).unwrap_err();
        let HistoryError::Damaged { kept, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(std::fs::read_to_string(kept).unwrap(), "{");
        assert!(!path.exists());
        std::fs::write(&path, "[").unwrap();
        let note = History::record(&path, "S1", entry("p", "1.0.0", 1))
            .unwrap()
            .unwrap();
        assert!(note.contains("damaged"), "{note}");
        assert!(History::load(&path).unwrap().get("p", "S1").is_some());
        let aside = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains("damaged")
            })
            .count();
        assert_eq!(aside, 2, "both damaged files are kept");
    }

    #[test]
    fn concurrent_writers_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.json");
        std::thread::scope(|s| {
            for t in 0..4 {
                let path = &path;
                s.spawn(move || {
                    for i in 0..25 {
                        History::record(path, &format!("S{t}-{i}"), entry("p", "1.0.0", 1))
                            .unwrap();
                    }
                });
            }
        });
        let history = History::load(&path).unwrap();
        assert_eq!(history.products["p"].len(), 100);
    }
}
