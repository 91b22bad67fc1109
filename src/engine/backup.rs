//! Backups of the partitions that make a device itself: IMEI, NV items, RF calibration.
//!
//! These partitions (modemst1, modemst2, fsg, fsc, persist, …) are unique per device and
//! cannot be rebuilt from any firmware package, so they are read back and stored before
//! anything is erased or written. A backup is one folder: one file per partition, named by
//! flashline (never by what the device calls it), and `backup.json` recording where each
//! came from and its SHA-256, sealed by this station's key in `backup.sig` (see
//! [`super::station`]). A restore writes them back to the same sectors and checks the
//! device's own digest afterwards.
//!
//! Backups are private (folders 0700, files 0600, never written through a symbolic link:
//! see [`crate::secure_fs`]) and pruned by [`prune`].

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::hashing::HashingWriter;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::report::{now, safe_name};
use super::station::StationKey;
use crate::device::{DeviceError, DeviceInfo, Driver, ImageSource, SendReader, Target};

/// The file that describes a backup folder.
pub const MANIFEST: &str = "backup.json";
/// The station's seal over `backup.json`.
pub const SEAL: &str = "backup.sig";
/// Largest `backup.json` read back: the folder may have been edited by hand.
const MAX_MANIFEST_LEN: u64 = 1024 * 1024;
/// Largest partition backed up. Identity partitions are a few MiB; a device claiming more
/// is not allowed to fill the host's disk.
pub const MAX_PARTITION_LEN: u64 = 256 * 1024 * 1024;

/// Why a backup or restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Reading or writing local files failed.
    #[error("backup folder {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// The device failed to read or write.
    #[error("partition {label}: {source}")]
    Device {
        /// The partition.
        label: String,
        /// The failure.
        source: DeviceError,
    },
    /// What the device sent does not match what was stored, or the device's digest after a
    /// write differs from the backup.
    #[error("partition {label}: {what}")]
    Mismatch {
        /// The partition.
        label: String,
        /// What differed.
        what: String,
    },
    /// `backup.json` is missing, damaged or names files flashline would not have written.
    #[error("{path} is not a flashline backup: {reason}")]
    Invalid {
        /// The folder.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Where one backed-up partition lives on the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupEntry {
    /// Partition label as the device's partition table names it.
    pub label: String,
    /// File in the backup folder.
    pub file: String,
    /// LUN.
    pub lun: u32,
    /// First sector.
    pub start_sector: u64,
    /// Number of sectors.
    pub sectors: u64,
    /// Bytes per sector.
    pub sector_size: u32,
    /// SHA-256 of the file, hex.
    pub sha256: String,
}

impl BackupEntry {
    /// The device range this entry came from.
    pub fn target(&self) -> Target {
        Target::Sectors {
            lun: self.lun,
            start: self.start_sector,
            count: self.sectors,
            sector_size: self.sector_size,
        }
    }

    /// Bytes in the file.
    pub fn len(&self) -> u64 {
        self.sectors.saturating_mul(u64::from(self.sector_size))
    }

    /// Never true for a valid entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The contents of `backup.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupManifest {
    /// Serial number the device reported.
    pub serial: Option<String>,
    /// Product the device reported.
    pub product: Option<String>,
    /// When, RFC 3339.
    pub created_at: String,
    /// The partitions.
    pub entries: Vec<BackupEntry>,
}

/// A partition to back up.
#[derive(Debug, Clone)]
pub struct Wanted {
    /// Its label.
    pub label: String,
    /// Where it is.
    pub target: Target,
}

/// Finds each labelled partition on the device; returns those found and the labels that
/// are not there.
pub fn locate(labels: &[String], device: &DeviceInfo) -> (Vec<Wanted>, Vec<String>) {
    let mut wanted = Vec::new();
    let mut missing = Vec::new();
    for label in labels {
        let found = device.layout.iter().find(|p| &p.label == label);
        let lun = found.and_then(|p| device.luns.iter().find(|l| l.index == p.lun));
        // Only ranges inside their LUN and of a plausible size are read.
        let sane = found.zip(lun).is_some_and(|(p, l)| {
            p.start_sector
                .checked_add(p.sectors)
                .is_some_and(|end| end <= l.sectors)
                && p.sectors.saturating_mul(u64::from(l.sector_size)) <= MAX_PARTITION_LEN
        });
        let sector_size = lun.filter(|_| sane).map(|l| l.sector_size);
        match (found, sector_size) {
            (Some(p), Some(sector_size)) => wanted.push(Wanted {
                label: label.clone(),
                target: Target::Sectors {
                    lun: p.lun,
                    start: p.start_sector,
                    count: p.sectors,
                    sector_size,
                },
            }),
            _ => missing.push(label.clone()),
        }
    }
    (wanted, missing)
}

/// The NV backup step of a download-mode job (ZXIC, Unisoc): backs up `wanted` sealed
/// with the station key, announces each partition, and records the folder in the report.
/// A failed backup ends the job before anything is written.
pub(super) fn back_up_nv(
    req: &super::JobRequest,
    device: &DeviceInfo,
    product: Option<&str>,
    wanted: &[Wanted],
    driver: &mut dyn Driver,
    report: &mut super::Report,
    emit: &mut dyn FnMut(super::Event),
) -> Result<(PathBuf, BackupManifest), super::job::Stop> {
    let key = super::qualcomm::station_key(req)?;
    let (dir, manifest) = create(
        &req.options.backups_dir,
        device.serial.as_deref(),
        product,
        wanted,
        &key,
        driver,
        &mut |_, _| {},
    )
    .map_err(|e| {
        (
            super::Outcome::DeviceError,
            format!("the backup of the NV partitions failed, so nothing was written: {e}"),
        )
    })?;
    for e in &manifest.entries {
        emit(super::Event::BackupWritten {
            label: e.label.clone(),
            sha256: e.sha256.clone(),
        });
    }
    report.backup = Some(super::report::BackupFacts {
        dir: dir.clone(),
        partitions: manifest.entries.clone(),
    });
    Ok((dir, manifest))
}

/// Reads every `wanted` partition from the device into a new folder under `root`, sealed
/// with `key`.
///
/// Each file is hashed as it is written and compared with the driver's hash of the bytes it
/// read, and with the device's own digest where it has one: a backup that cannot be proven
/// is an error, and the job must not go on.
pub fn create(
    root: &Path,
    serial: Option<&str>,
    product: Option<&str>,
    wanted: &[Wanted],
    key: &StationKey,
    driver: &mut dyn Driver,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<(PathBuf, BackupManifest), BackupError> {
    let created_at = now();
    let stamp: String = created_at
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BackupError::Io { path, source }
    };
    let stem = format!("{}-{stamp}", safe_name(serial.unwrap_or("unknown-device")));
    let dir = crate::secure_fs::new_private_dir(root, &stem).map_err(io_err(root))?;
    let mut entries = Vec::new();
    for (i, w) in wanted.iter().enumerate() {
        let Target::Sectors {
            lun,
            start,
            count,
            sector_size,
        } = w.target
        else {
            return Err(BackupError::Mismatch {
                label: w.label.clone(),
                what: "only sector ranges can be backed up".into(),
            });
        };
        let file = format!("{:02}-{}.bin", i, safe_name(&w.label));
        let path = dir.join(&file);
        let out = crate::secure_fs::create_new(&path).map_err(io_err(&path))?;
        let mut out = HashingWriter::new(BufWriter::new(out));
        let device_err = |source| BackupError::Device {
            label: w.label.clone(),
            source,
        };
        let read_hash = driver
            .read(&w.target, &mut out, &mut |done| progress(&w.label, done))
            .map_err(device_err)?;
        let (mut written, stored) = out.finish();
        written.flush().map_err(io_err(&path))?;
        written.get_ref().sync_all().map_err(io_err(&path))?;
        if stored != read_hash {
            return Err(BackupError::Mismatch {
                label: w.label.clone(),
                what: "the bytes stored differ from the bytes read".into(),
            });
        }
        if let Some(device) = driver.digest(&w.target).map_err(device_err)? {
            if device != stored {
                return Err(BackupError::Mismatch {
                    label: w.label.clone(),
                    what: "the device's own digest differs from the bytes read".into(),
                });
            }
        }
        entries.push(BackupEntry {
            label: w.label.clone(),
            file,
            lun,
            start_sector: start,
            sectors: count,
            sector_size,
            sha256: hex::encode(stored),
        });
    }
    let manifest = BackupManifest {
        serial: serial.map(str::to_string),
        product: product.map(str::to_string),
        created_at,
        entries,
    };
    let path = dir.join(MANIFEST);
    let json = serde_json::to_vec_pretty(&manifest).expect("backup manifests serialise");
    crate::secure_fs::write_new(&path, &json).map_err(io_err(&path))?;
    let seal = dir.join(SEAL);
    crate::secure_fs::write_new(&seal, key.seal(&json).as_bytes()).map_err(io_err(&seal))?;
    // Backups without a serial number cannot be told apart by device, so none is pruned.
    if let Some(serial) = serial {
        if let Err(e) = prune(root, serial, key, SystemTime::now()) {
            tracing::warn!("old backups were not pruned: {e}");
        }
    }
    Ok((dir, manifest))
}

/// Reads and checks a backup folder: `backup.json` sealed by `key` (this station's), every
/// file present, of the recorded size and hash.
pub fn open(dir: &Path, key: &StationKey) -> Result<BackupManifest, BackupError> {
    let manifest = sealed_manifest(dir, key)?;
    for e in &manifest.entries {
        let invalid = |reason: String| BackupError::Invalid {
            path: dir.to_path_buf(),
            reason,
        };
        let (len, digest) =
            hash_file(&dir.join(&e.file)).map_err(|err| invalid(format!("{}: {err}", e.file)))?;
        if len != e.len() {
            return Err(invalid(format!(
                "{} holds {len} bytes, {} recorded",
                e.file,
                e.len()
            )));
        }
        if hex::encode(digest) != e.sha256 {
            return Err(invalid(format!(
                "{} does not match its recorded SHA-256",
                e.file
            )));
        }
    }
    Ok(manifest)
}

/// `backup.json`, checked against its seal and for plain file names and possible ranges;
/// the files it names are not read.
fn sealed_manifest(dir: &Path, key: &StationKey) -> Result<BackupManifest, BackupError> {
    let invalid = |reason: String| BackupError::Invalid {
        path: dir.to_path_buf(),
        reason,
    };
    let path = dir.join(MANIFEST);
    let file = File::open(&path).map_err(|e| invalid(format!("cannot read {MANIFEST}: {e}")))?;
    let mut text = Vec::new();
    file.take(MAX_MANIFEST_LEN + 1)
        .read_to_end(&mut text)
        .map_err(|e| invalid(e.to_string()))?;
    if text.len() as u64 > MAX_MANIFEST_LEN {
        return Err(invalid(format!("{MANIFEST} is too large")));
    }
    let seal = super::station::read_small(&dir.join(SEAL)).map_err(|e| {
        invalid(if e.kind() == io::ErrorKind::NotFound {
            format!(
                "it has no seal ({SEAL}): only backups this station made and sealed are \
                 restored"
            )
        } else {
            format!("cannot read its seal {SEAL}: {e}")
        })
    })?;
    key.check(&text, &seal)
        .map_err(|why| invalid(format!("{MANIFEST} cannot be trusted: {why}")))?;
    let manifest: BackupManifest =
        serde_json::from_slice(&text).map_err(|e| invalid(format!("{MANIFEST}: {e}")))?;
    let mut labels = std::collections::BTreeSet::new();
    if let Some(e) = manifest
        .entries
        .iter()
        .find(|e| !labels.insert(e.label.as_str()))
    {
        return Err(invalid(format!("partition {:?} appears twice", e.label)));
    }
    for e in &manifest.entries {
        let plain = !e.file.is_empty()
            && e.file.len() <= 64
            && e.file
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            && !e.file.starts_with('.');
        if !plain {
            return Err(invalid(format!(
                "entry {:?} names file {:?}",
                e.label, e.file
            )));
        }
        if !matches!(e.sector_size, 512 | 4096) || e.sectors == 0 {
            return Err(invalid(format!(
                "entry {:?} has an impossible range",
                e.label
            )));
        }
    }
    Ok(manifest)
}

/// Writes every entry of a checked backup back to the device, each to its target in
/// `targets` (one per entry, in order: where the device's partition table has the label
/// now), and checks its digest.
pub fn restore(
    dir: &Path,
    manifest: &BackupManifest,
    targets: &[Target],
    driver: &mut dyn Driver,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<(), BackupError> {
    for (e, target) in manifest.entries.iter().zip(targets) {
        let image = FileImage {
            path: dir.join(&e.file),
            len: e.len(),
            sha256: e.sha256.clone(),
        };
        let target = target.clone();
        let device_err = |source| BackupError::Device {
            label: e.label.clone(),
            source,
        };
        driver
            .write_image(&target, &image, &mut |done| progress(&e.label, done))
            .map_err(device_err)?;
        match driver.digest(&target).map_err(device_err)? {
            Some(d) if hex::encode(d) == e.sha256 => {}
            Some(_) => {
                return Err(BackupError::Mismatch {
                    label: e.label.clone(),
                    what: "after the restore the device's digest differs from the backup".into(),
                })
            }
            None => {
                return Err(BackupError::Mismatch {
                    label: e.label.clone(),
                    what: "the device cannot confirm the restore with a digest".into(),
                })
            }
        }
    }
    Ok(())
}

/// The pruning policy: every backup of the last [`KEEP_DAYS`] days is kept, and of older
/// ones the [`KEEP_NEWEST`] newest of each serial number.
///
/// Only backups that [`open`] accepts (sealed by this station, every file intact) count and
/// are ever deleted; anything else in the folder is left for a person to look at. Because
/// the newest good backups of a serial are always among those kept, pruning can never remove
/// the last good backup of a device, even one whose newer backups were damaged.
pub const KEEP_NEWEST: usize = 3;
/// See [`KEEP_NEWEST`].
pub const KEEP_DAYS: u64 = 30;

/// Deletes the backups of `serial` in `root` that the policy of [`KEEP_NEWEST`] no longer
/// keeps, as of `now`; returns the folders deleted.
pub fn prune(
    root: &Path,
    serial: &str,
    key: &StationKey,
    now: SystemTime,
) -> Result<Vec<PathBuf>, BackupError> {
    let io_err = |source| BackupError::Io {
        path: root.to_path_buf(),
        source,
    };
    let mut good = Vec::new();
    for entry in std::fs::read_dir(root).map_err(io_err)? {
        let dir = entry.map_err(io_err)?.path();
        // Only real folders: a link is never followed into, nor deleted through.
        if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        // The seal first (cheap), then, for this serial only, every file's hash.
        let Ok(manifest) = sealed_manifest(&dir, key) else {
            continue;
        };
        if manifest.serial.as_deref() != Some(serial) || open(&dir, key).is_err() {
            continue;
        }
        if let Ok(created) = humantime::parse_rfc3339(&manifest.created_at) {
            good.push((created, dir));
        }
    }
    good.sort_by(|a, b| b.cmp(a));
    let recent = now
        .checked_sub(Duration::from_secs(KEEP_DAYS * 24 * 60 * 60))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut deleted = Vec::new();
    for (created, dir) in good.into_iter().skip(KEEP_NEWEST) {
        if created < recent {
            std::fs::remove_dir_all(&dir).map_err(|source| BackupError::Io {
                path: dir.clone(),
                source,
            })?;
            deleted.push(dir);
        }
    }
    Ok(deleted)
}

fn hash_file(path: &Path) -> io::Result<(u64, [u8; 32])> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok((len, hasher.finalize().into()));
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
}

/// A local file with a known SHA-256, sent to a device like a package image.
pub struct FileImage {
    /// The file.
    pub path: PathBuf,
    /// Its length.
    pub len: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
}

impl ImageSource for FileImage {
    fn len(&self) -> u64 {
        self.len
    }
    fn is_sparse(&self) -> bool {
        false
    }
    fn plan_reader(&self) -> io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(File::open(&self.path)?))
    }
    fn send_reader(&self) -> io::Result<Box<dyn SendReader + '_>> {
        Ok(Box::new(HashedFile {
            file: File::open(&self.path)?,
            hasher: Sha256::new(),
            read: 0,
            expected_len: self.len,
            expected: self.sha256.clone(),
        }))
    }
}

struct HashedFile {
    file: File,
    hasher: Sha256,
    read: u64,
    expected_len: u64,
    expected: String,
}

impl Read for HashedFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

impl SendReader for HashedFile {
    fn verify(self: Box<Self>) -> Result<(), String> {
        if self.read != self.expected_len {
            return Err(format!(
                "{} bytes read, {} expected",
                self.read, self.expected_len
            ));
        }
        if hex::encode(self.hasher.finalize()) != self.expected {
            return Err("the file changed since the backup was checked".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 60 * 60);

    /// A backup folder as [`create`] would leave it, of `serial`, made `age` before `now`.
    fn backup_at(
        root: &Path,
        key: &StationKey,
        serial: &str,
        now: SystemTime,
        age: Duration,
    ) -> PathBuf {
        let created = now - age;
        let dir = root.join(format!("{serial}-{}", (age.as_secs() / 3600)));
        std::fs::create_dir(&dir).unwrap();
        let bytes = vec![0x5Au8; 512];
        std::fs::write(dir.join("00-fsg.bin"), &bytes).unwrap();
        let manifest = BackupManifest {
            serial: Some(serial.into()),
            product: Some("MF833V".into()),
            created_at: humantime::format_rfc3339_millis(created).to_string(),
            entries: vec![BackupEntry {
                label: "fsg".into(),
                file: "00-fsg.bin".into(),
                lun: 0,
                start_sector: 34,
                sectors: 1,
                sector_size: 512,
                sha256: hex::encode(Sha256::digest(&bytes)),
            }],
        };
        let json = serde_json::to_vec_pretty(&manifest).unwrap();
        std::fs::write(dir.join(MANIFEST), &json).unwrap();
        std::fs::write(dir.join(SEAL), key.seal(&json)).unwrap();
        dir
    }

    #[test]
    fn pruning_keeps_recent_ones_the_newest_few_and_the_last_good_one() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("backups");
        std::fs::create_dir(&root).unwrap();
        let key = StationKey::open_or_create(&tmp.path().join("station.key")).unwrap();
        let now = SystemTime::now();
        let a: Vec<PathBuf> = [0, 1, 40, 50, 60, 70]
            .iter()
            .map(|d| backup_at(&root, &key, "A", now, DAY * *d))
            .collect();
        let lonely = backup_at(&root, &key, "B", now, DAY * 400);
        // C: one good backup long ago, three newer ones damaged.
        let c_good = backup_at(&root, &key, "C", now, DAY * 100);
        let c_bad: Vec<PathBuf> = [41, 42, 43]
            .iter()
            .map(|d| {
                let dir = backup_at(&root, &key, "C", now, DAY * *d);
                std::fs::write(dir.join("00-fsg.bin"), [0u8; 512]).unwrap();
                dir
            })
            .collect();
        // Something that is not a backup of this station.
        let foreign = root.join("C-notes");
        std::fs::create_dir(&foreign).unwrap();
        std::fs::write(foreign.join(MANIFEST), b"{}").unwrap();

        let mut deleted = prune(&root, "A", &key, now).unwrap();
        deleted.sort();
        let mut expected = a[3..].to_vec();
        expected.sort();
        assert_eq!(
            deleted, expected,
            "older than 30 days and not among the newest 3"
        );
        assert!(a[..3].iter().all(|d| d.is_dir()));

        assert!(prune(&root, "B", &key, now).unwrap().is_empty());
        assert!(
            lonely.is_dir(),
            "the only backup of a serial stays, however old"
        );

        assert!(prune(&root, "C", &key, now).unwrap().is_empty());
        assert!(c_good.is_dir(), "the last good backup stays");
        assert!(
            c_bad.iter().all(|d| d.is_dir()),
            "damaged ones are left for a person"
        );
        assert!(foreign.is_dir());
    }
}
