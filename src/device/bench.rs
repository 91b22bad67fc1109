//! The virtual bench: how flashline's virtual serial devices show up in discovery.
//!
//! A real USB modem appears as a tty with USB IDs the operating system reports. A virtual
//! device lives on a pseudo-terminal, which no OS lists, so each virtual device announces
//! itself with one small JSON file in the bench folder (`$FLASHLINE_HOME/bench`), carrying
//! the same facts a USB port would: address, USB IDs, serial number. When the device
//! "re-enumerates" (a modem switching to download mode), its announcement is withdrawn and
//! a new one appears, exactly as a USB device leaves and comes back with other IDs.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Announcements larger than this are ignored: the folder is user-writable.
const MAX_ENTRY_LEN: u64 = 4096;

/// What a virtual device announces: the facts USB enumeration would give.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchEntry {
    /// The address to open it with (`serial:/dev/pts/7`).
    pub address: String,
    /// USB vendor ID it pretends to have.
    pub vid: u16,
    /// USB product ID it pretends to have.
    pub pid: u16,
    /// USB serial number string.
    pub serial: String,
    /// USB product string.
    pub product: String,
    /// The USB interface number of this tty, for a composition with several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<u8>,
    /// Where it is plugged in (`usb:1-1`): the same for every mode the device re-enumerates
    /// in, and for each of its ttys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_path: Option<String>,
}

/// A published announcement; dropping it withdraws the device.
#[derive(Debug)]
pub struct Announcement {
    path: PathBuf,
}

impl Announcement {
    /// Withdraws the device now.
    pub fn withdraw(self) {}
}

impl Drop for Announcement {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The default bench folder.
pub fn default_dir() -> PathBuf {
    crate::paths::home().join("bench")
}

/// Publishes `entry` in `dir`. The file name is generated, never taken from the entry, and
/// the file is written like every file under flashline's home (see [`crate::secure_fs`]).
pub fn announce(dir: &Path, entry: &BenchEntry) -> std::io::Result<Announcement> {
    let mut id = [0u8; 8];
    getrandom::getrandom(&mut id).map_err(|e| std::io::Error::other(e.to_string()))?;
    let path = dir.join(format!("{}.json", hex::encode(id)));
    let tmp = path.with_extension("tmp");
    crate::secure_fs::write_new(
        &tmp,
        &serde_json::to_vec(entry).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&tmp, &path)?;
    Ok(Announcement { path })
}

/// Every valid announcement in `dir` whose serial port still exists, and every virtual
/// phone announced on this computer's loopback (`tcp:127.0.0.1:PORT`; it withdraws its
/// announcement when it stops).
pub fn list(dir: &Path) -> Vec<BenchEntry> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut entries: Vec<BenchEntry> = read
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() <= MAX_ENTRY_LEN))
        .filter_map(|p| serde_json::from_slice::<BenchEntry>(&std::fs::read(p).ok()?).ok())
        .filter(|e| {
            e.address
                .strip_prefix("serial:")
                .is_some_and(|tty| Path::new(tty).exists())
                || is_loopback_tcp(&e.address)
        })
        .collect();
    entries.sort_by(|a, b| a.address.cmp(&b.address));
    entries
}

/// Whether `address` is a TCP address on this computer's loopback: only there can a
/// network device be one of flashline's virtual phones, so a bench file naming another
/// host never makes that host's device virtual.
pub fn is_loopback_tcp(address: &str) -> bool {
    address
        .strip_prefix("tcp:")
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
        .is_some_and(|a| a.ip().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_come_and_go() {
        let dir = tempfile::tempdir().unwrap();
        let entry = BenchEntry {
            address: "serial:/dev/null".into(),
            vid: 0x19d2,
            pid: 0x1403,
            serial: "../../etc".into(),
            product: "MF833V".into(),
            ..BenchEntry::default()
        };
        let a = announce(dir.path(), &entry).unwrap();
        assert_eq!(list(dir.path()), vec![entry.clone()]);
        let gone = BenchEntry {
            address: "serial:/dev/pts/does-not-exist".into(),
            ..entry
        };
        let _b = announce(dir.path(), &gone).unwrap();
        assert_eq!(
            list(dir.path()).len(),
            1,
            "entries whose tty is gone are not listed"
        );
        std::fs::write(dir.path().join("junk.json"), "{").unwrap();
        assert_eq!(list(dir.path()).len(), 1);
        a.withdraw();
        assert!(list(dir.path()).is_empty());
        let phone = BenchEntry {
            address: "tcp:127.0.0.1:5554".into(),
            ..BenchEntry::default()
        };
        let _p = announce(dir.path(), &phone).unwrap();
        let _q = announce(
            dir.path(),
            &BenchEntry {
                address: "tcp:192.0.2.7:5554".into(),
                ..BenchEntry::default()
            },
        )
        .unwrap();
        assert_eq!(
            list(dir.path()),
            vec![phone],
            "only loopback phones are listed"
        );
    }
}
