//! The virtual device's flash: `DIR/flash.img` (the whole SPI NAND, as a sparse file) and
//! `DIR/partition.bin` (the table the device keeps, as `set partitions` replaces it).
//!
//! A new device is born with its factory table and identity data in its NV partitions
//! (IMEI, serial, calibration-like bytes), so tests can prove a flash kept them. Existing
//! files are used as they are: they hold what earlier runs wrote. Host numbers reach the
//! file only through [`Storage::span`], which checks them as the device does.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::protocol::zxic::PartitionTable;

use super::ZxicConfig;

/// The flash file in `dir`.
pub fn flash_path(dir: &Path) -> PathBuf {
    dir.join("flash.img")
}

/// The device's current partition table in `dir`.
pub fn table_path(dir: &Path) -> PathBuf {
    dir.join("partition.bin")
}

/// The identity bytes a new device holds at the start of NV partition `name`: a header
/// naming the IMEI and serial, then bytes that differ per device and partition.
pub fn identity_bytes(cfg: &ZxicConfig, name: &str, len: usize) -> Vec<u8> {
    let mut out = format!("ZXNV {name} IMEI={} SN={}\n", cfg.imei, cfg.serial).into_bytes();
    let mut counter = 0u64;
    while out.len() < len {
        let block = Sha256::digest(format!("{} {name} {counter}", cfg.serial));
        out.extend_from_slice(&block);
        counter += 1;
    }
    out.truncate(len);
    out
}

/// Why a host's range is refused, as the device words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// `FAIL INVALID PARTITION`.
    Partition,
    /// `FAIL INVALID OFFSET`.
    Offset,
    /// `FAIL INVALID SIZE`.
    Size,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Partition => "INVALID PARTITION",
            Refusal::Offset => "INVALID OFFSET",
            Refusal::Size => "INVALID SIZE",
        }
    }
}

/// The flash and the table.
pub(super) struct Storage {
    dir: PathBuf,
    flash_size: u64,
}

impl Storage {
    /// Creates the flash (with identity data) and the factory table when missing.
    pub fn open(dir: &Path, cfg: &ZxicConfig) -> io::Result<Storage> {
        fs::create_dir_all(dir)?;
        let storage = Storage {
            dir: dir.to_path_buf(),
            flash_size: u64::from(cfg.flash_size),
        };
        let flash = flash_path(dir);
        if !flash.exists() {
            let tmp = dir.join(".flash.img.new");
            let file = File::create(&tmp)?;
            file.set_len(storage.flash_size)?;
            let mut file = file;
            for name in &cfg.nv {
                let p = cfg.table.find(name).expect("checked by the config");
                let bytes = identity_bytes(cfg, name, p.size as usize);
                file.seek(SeekFrom::Start(u64::from(p.address)))?;
                file.write_all(&bytes)?;
            }
            file.sync_all()?;
            fs::rename(&tmp, &flash)?;
        } else if fs::metadata(&flash)?.len() != storage.flash_size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is not {} bytes; remove it or declare the same flash size",
                    flash.display(),
                    storage.flash_size
                ),
            ));
        }
        if !table_path(dir).exists() {
            storage.set_table(&cfg.table)?;
        }
        Ok(storage)
    }

    /// The table the device holds now.
    pub fn table(&self) -> io::Result<PartitionTable> {
        let bytes = fs::read(table_path(&self.dir))?;
        PartitionTable::parse(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Replaces the table.
    pub fn set_table(&self, table: &PartitionTable) -> io::Result<()> {
        let tmp = self.dir.join(".partition.bin.new");
        fs::write(&tmp, table.encode())?;
        fs::rename(tmp, table_path(&self.dir))
    }

    /// Flash size in bytes.
    pub fn flash_size(&self) -> u64 {
        self.flash_size
    }

    /// The flash offset of `len` bytes at `offset` of `partition`, checked as the device
    /// checks a `compat_write` / `compat_read`.
    pub fn span(&self, partition: &str, offset: u32, len: u32) -> Result<u64, Refusal> {
        let table = self.table().map_err(|_| Refusal::Partition)?;
        let p = table
            .find(partition)
            .filter(|p| p.in_flash())
            .ok_or(Refusal::Partition)?;
        if offset >= p.size {
            return Err(Refusal::Offset);
        }
        if len == 0 || u64::from(offset) + u64::from(len) > u64::from(p.size) {
            return Err(Refusal::Size);
        }
        Ok(u64::from(p.address) + u64::from(offset))
    }

    fn open_flash(&self) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(flash_path(&self.dir))
    }

    /// Writes `bytes` at flash offset `at`.
    pub fn write(&self, at: u64, bytes: &[u8]) -> io::Result<()> {
        let mut f = self.open_flash()?;
        f.seek(SeekFrom::Start(at))?;
        f.write_all(bytes)
    }

    /// Reads `out.len()` bytes at flash offset `at`.
    pub fn read(&self, at: u64, out: &mut [u8]) -> io::Result<()> {
        let mut f = self.open_flash()?;
        f.seek(SeekFrom::Start(at))?;
        f.read_exact(out)
    }

    /// Fills `len` bytes at `at` with 0xFF, as an erased NAND reads.
    pub fn erase(&self, at: u64, len: u64) -> io::Result<()> {
        let mut f = self.open_flash()?;
        f.seek(SeekFrom::Start(at))?;
        let block = vec![0xFFu8; 256 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            f.write_all(&block[..n])?;
            left -= n as u64;
        }
        Ok(())
    }
}
