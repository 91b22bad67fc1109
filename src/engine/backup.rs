//! Backups of the partitions that make a device itself: IMEI, NV items, RF calibration.
//!
//! These partitions (modemst1, modemst2, fsg, fsc, persist, …) are unique per device and
//! cannot be rebuilt from any firmware package, so they are read back and stored before
//! anything is erased or written. A backup is one folder: one file per partition, named by
//! flashline (never by what the device calls it), and `backup.json` recording where each
//! came from and its SHA-256. A restore writes them back to the same sectors and checks the
//! device's own digest afterwards.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};

use crate::hashing::HashingWriter;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::report::{now, safe_name};
use crate::device::{DeviceError, DeviceInfo, Driver, ImageSource, SendReader, Target};

/// The file that describes a backup folder.
pub const MANIFEST: &str = "backup.json";
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

/// Reads every `wanted` partition from the device into a new folder under `root`.
///
/// Each file is hashed as it is written and compared with the driver's hash of the bytes it
/// read, and with the device's own digest where it has one: a backup that cannot be proven
/// is an error, and the job must not go on.
pub fn create(
    root: &Path,
    serial: Option<&str>,
    product: Option<&str>,
    wanted: &[Wanted],
    driver: &mut dyn Driver,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<(PathBuf, BackupManifest), BackupError> {
    let created_at = now();
    let stamp: String = created_at
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let dir = root.join(format!(
        "{}-{stamp}",
        safe_name(serial.unwrap_or("unknown-device"))
    ));
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BackupError::Io { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
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
        let out = File::create(&path).map_err(io_err(&path))?;
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
    std::fs::write(&path, json).map_err(io_err(&path))?;
    Ok((dir, manifest))
}

/// Reads and checks a backup folder: every file present, of the recorded size and hash.
pub fn open(dir: &Path) -> Result<BackupManifest, BackupError> {
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

/// Writes every entry of a checked backup back to the device and checks its digest.
pub fn restore(
    dir: &Path,
    manifest: &BackupManifest,
    driver: &mut dyn Driver,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<(), BackupError> {
    for e in &manifest.entries {
        let image = FileImage {
            path: dir.join(&e.file),
            len: e.len(),
            sha256: e.sha256.clone(),
        };
        let target = e.target();
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
