//! The device's flash: one raw file `DIR/lun<N>.img` per LUN (physical partition).
//!
//! A new LUN is born the way a factory-programmed device leaves the line: with a GPT
//! describing the configured partitions and with per-device identity data (calibration,
//! IMEI storage and the like on a real modem) in the identity partitions, so tests can
//! prove that a flash kept them. An existing LUN file is used as it is: it holds whatever
//! earlier runs wrote. Host-supplied numbers reach the files only through [`Storage::span`],
//! which checks them against the LUN the way a programmer does.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::protocol::firehose::SectorRange;
use crate::protocol::gpt::Gpt;

use super::{EdlConfig, EdlConfigError};

/// Size of the buffers that move LUN data.
pub(super) const IO_BUF_LEN: usize = 256 * 1024;

/// The file that holds LUN `lun` in `dir`.
pub fn lun_path(dir: &Path, lun: usize) -> PathBuf {
    dir.join(format!("lun{lun}.img"))
}

/// A checked byte range of one LUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    /// The LUN.
    pub lun: u32,
    /// Byte offset in the LUN file.
    pub offset: u64,
    /// Length in bytes (never 0).
    pub len: u64,
}

/// The LUN files of one device.
#[derive(Debug)]
pub(super) struct Storage {
    dir: PathBuf,
    sector_size: u32,
    /// Size of each LUN in sectors.
    luns: Vec<u64>,
}

impl Storage {
    /// Creates the missing LUN files (with `tables[n]` and identity data) and checks the
    /// size of existing ones. A LUN file of another size is refused rather than resized:
    /// that would destroy what an earlier run stored.
    pub fn open(
        dir: &Path,
        cfg: &EdlConfig,
        tables: &[Option<Gpt>],
    ) -> Result<Self, EdlConfigError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| EdlConfigError::Io { path, source }
        };
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let sector = u64::from(cfg.sector_size);
        for (lun, (&sectors, gpt)) in cfg.luns.iter().zip(tables).enumerate() {
            let path = lun_path(dir, lun);
            let declared = sectors * sector;
            match fs::metadata(&path) {
                Ok(meta) if meta.len() == declared => {}
                Ok(meta) => {
                    return Err(EdlConfigError::SizeMismatch {
                        path,
                        actual: meta.len(),
                        lun,
                        declared,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // Built under a temporary name, so a failure never leaves a LUN that
                    // a later run would take for a finished one.
                    let tmp = dir.join(format!(".lun{lun}.img.new"));
                    create_lun(&tmp, declared, gpt.as_ref(), cfg).map_err(io_err(&tmp))?;
                    fs::rename(&tmp, &path).map_err(io_err(&path))?;
                }
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        Ok(Storage {
            dir: dir.to_path_buf(),
            sector_size: cfg.sector_size,
            luns: cfg.luns.clone(),
        })
    }

    /// Sector size of every LUN.
    pub fn sector_size(&self) -> u32 {
        self.sector_size
    }

    /// Number of LUNs.
    pub fn lun_count(&self) -> usize {
        self.luns.len()
    }

    /// Size of LUN `lun` in sectors, if it exists.
    pub fn lun_sectors(&self, lun: u32) -> Option<u64> {
        usize::try_from(lun)
            .ok()
            .and_then(|i| self.luns.get(i))
            .copied()
    }

    /// Checks a host-supplied sector range as a programmer does before any data moves:
    /// the sector size must be the device's, the LUN must exist, the range must be
    /// non-empty and end inside the LUN. The error is the text the device logs.
    pub fn span(&self, range: &SectorRange) -> Result<Span, String> {
        let lun_sectors = self.check_lun(range.lun, range.sector_size)?;
        if range.num_sectors == 0 {
            return Err("num_partition_sectors is 0".into());
        }
        match range.start_sector.checked_add(range.num_sectors) {
            Some(end) if end <= lun_sectors => Ok(Span {
                lun: range.lun,
                offset: range.start_sector * u64::from(self.sector_size),
                len: range.num_sectors * u64::from(self.sector_size),
            }),
            _ => Err(format!(
                "sectors {}+{} lie beyond the end of LUN {} ({lun_sectors} sectors)",
                range.start_sector, range.num_sectors, range.lun
            )),
        }
    }

    /// The whole of LUN `lun`, checked like [`Storage::span`].
    pub fn lun_span(&self, lun: u32, sector_size: u32) -> Result<Span, String> {
        let sectors = self.check_lun(lun, sector_size)?;
        Ok(Span {
            lun,
            offset: 0,
            len: sectors * u64::from(self.sector_size),
        })
    }

    /// `len` bytes at `byte` of LUN `lun`, checked against the LUN's end.
    pub fn byte_span(
        &self,
        lun: u32,
        sector_size: u32,
        byte: u64,
        len: u64,
    ) -> Result<Span, String> {
        let sectors = self.check_lun(lun, sector_size)?;
        let lun_len = sectors * u64::from(self.sector_size);
        match byte.checked_add(len) {
            Some(end) if len > 0 && end <= lun_len => Ok(Span {
                lun,
                offset: byte,
                len,
            }),
            _ => Err(format!(
                "{len} bytes at byte {byte} lie outside LUN {lun} ({lun_len} bytes)"
            )),
        }
    }

    fn check_lun(&self, lun: u32, sector_size: u32) -> Result<u64, String> {
        if sector_size != self.sector_size {
            return Err(format!(
                "SECTOR_SIZE_IN_BYTES {sector_size} does not match the device's {} bytes",
                self.sector_size
            ));
        }
        self.lun_sectors(lun).ok_or_else(|| {
            format!(
                "physical_partition_number {lun} does not exist (the device has {} LUNs)",
                self.luns.len()
            )
        })
    }

    /// The LUN file opened for reading and writing, positioned at the span's start.
    pub fn open_at(&self, span: &Span) -> io::Result<File> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(lun_path(&self.dir, span.lun as usize))?;
        file.seek(SeekFrom::Start(span.offset))?;
        Ok(file)
    }

    /// Fills the span with zeros.
    pub fn zero(&self, span: &Span) -> io::Result<()> {
        let file = self.open_at(span)?;
        let copied = io::copy(&mut io::repeat(0).take(span.len), &mut { file })?;
        check_len(copied, span.len)
    }

    /// SHA-256 of the span's bytes.
    pub fn sha256(&self, span: &Span) -> io::Result<[u8; 32]> {
        let file = self.open_at(span)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; IO_BUF_LEN];
        let mut left = file.take(span.len);
        loop {
            let n = left.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        check_len(span.len - left.limit(), span.len)?;
        Ok(hasher.finalize().into())
    }

    /// Writes `bytes` at the span's start; callers pass at most `span.len` bytes.
    pub fn write_bytes(&self, span: &Span, bytes: &[u8]) -> io::Result<()> {
        self.open_at(span)?.write_all(bytes)
    }
}

fn check_len(done: u64, expected: u64) -> io::Result<()> {
    if done == expected {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the LUN file ended after {done} of {expected} bytes"),
        ))
    }
}

/// A new LUN file: zeros, the GPT at both ends, identity data in the identity partitions
/// (NAND: zeros only).
fn create_lun(path: &Path, len: u64, gpt: Option<&Gpt>, cfg: &EdlConfig) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.set_len(len)?;
    let Some(gpt) = gpt else {
        return file.sync_all();
    };
    let sector = u64::from(gpt.sector_size);
    file.write_all(&gpt.encode_primary())?;
    file.seek(SeekFrom::Start(gpt.backup_entries_lba() * sector))?;
    file.write_all(&gpt.encode_backup())?;
    if cfg.habits.damaged_primary_gpt {
        // The primary header (LBA 1) is gone; the backup at the end survives.
        file.seek(SeekFrom::Start(sector))?;
        file.write_all(&vec![0xff; sector as usize])?;
    }
    for part in gpt
        .partitions
        .iter()
        .filter(|p| cfg.identity_labels.contains(&p.label))
    {
        file.seek(SeekFrom::Start(part.first_lba * sector))?;
        let len = part.sectors() * sector;
        let copied = io::copy(
            &mut IdentityData::new(&cfg.serial, &part.label, len),
            &mut file,
        )?;
        check_len(copied, len)?;
    }
    file.sync_all()
}

/// The recognisable per-device content of an identity partition, generated as a stream:
/// lines `FLASHLINE-IDENTITY serial=<serial> part=<label> offset=<n>\n`, where `n` is the
/// byte offset of the line in the partition, repeated to `len` bytes (the last line cut
/// short). Tests compare a partition read back with this to prove it survived a flash.
#[derive(Debug, Clone)]
pub struct IdentityData {
    serial: String,
    label: String,
    /// Bytes produced so far.
    pos: u64,
    len: u64,
    /// The current line and how much of it was produced.
    line: Vec<u8>,
    line_pos: usize,
}

impl IdentityData {
    /// The identity data of partition `label` of device `serial`, `len` bytes long.
    pub fn new(serial: &str, label: &str, len: u64) -> IdentityData {
        IdentityData {
            serial: serial.to_string(),
            label: label.to_string(),
            pos: 0,
            len,
            line: Vec::new(),
            line_pos: 0,
        }
    }
}

impl Read for IdentityData {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() && self.pos < self.len {
            if self.line_pos == self.line.len() {
                self.line = format!(
                    "FLASHLINE-IDENTITY serial={} part={} offset={}\n",
                    self.serial, self.label, self.pos
                )
                .into_bytes();
                self.line_pos = 0;
            }
            let left = usize::try_from(self.len - self.pos).unwrap_or(usize::MAX);
            let take = (self.line.len() - self.line_pos)
                .min(buf.len() - n)
                .min(left);
            buf[n..n + take].copy_from_slice(&self.line[self.line_pos..self.line_pos + take]);
            self.line_pos += take;
            self.pos += take as u64;
            n += take;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_lines_carry_their_offsets_whatever_the_read_size() {
        let mut whole = Vec::new();
        IdentityData::new("SN1", "fsg", 200)
            .read_to_end(&mut whole)
            .unwrap();
        assert_eq!(whole.len(), 200);
        let text = String::from_utf8(whole.clone()).unwrap();
        let first = "FLASHLINE-IDENTITY serial=SN1 part=fsg offset=0\n";
        assert!(text.starts_with(first));
        assert!(text[first.len()..].starts_with(&format!(
            "FLASHLINE-IDENTITY serial=SN1 part=fsg offset={}\n",
            first.len()
        )));

        let mut data = IdentityData::new("SN1", "fsg", 200);
        let mut bytewise = Vec::new();
        let mut one = [0u8; 7];
        loop {
            let n = data.read(&mut one).unwrap();
            if n == 0 {
                break;
            }
            bytewise.extend_from_slice(&one[..n]);
        }
        assert_eq!(bytewise, whole);
    }
}
