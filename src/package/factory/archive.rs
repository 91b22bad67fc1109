//! Reading factory zips without trusting them.
//!
//! A factory zip comes from a download, so every number in it is checked before it is used:
//! the entry count, each name (nothing that could leave the staging folder), duplicate
//! names, entries sharing compressed bytes, each declared size against the caps and against
//! what its compressed bytes can hold, and, while inflating, the bytes actually produced
//! against the declared size. Entries are inflated straight to a file through one fixed
//! buffer; nothing is held in memory whole except the small text files.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::DeflateDecoder;
use zip::read::ZipArchive;
use zip::CompressionMethod;

use super::error::{shown, FactoryError};

/// Most entries read from one zip: a factory zip has about ten, its image zip about forty.
pub const MAX_ENTRIES: usize = 1024;
/// Largest entry extracted (32 GiB): above any partition image Google ships.
pub const MAX_ENTRY_SIZE: u64 = 32 << 30;
/// Most bytes extracted from one zip in all (64 GiB).
pub const MAX_TOTAL_SIZE: u64 = 64 << 30;
/// Longest entry name.
pub const MAX_NAME_LEN: usize = 255;
/// Deflate emits at most 258 bytes per 2-bit code, so no deflated entry can inflate to
/// more than about 1032 times its compressed size; a declared size beyond that is a lie.
const MAX_DEFLATE_RATIO: u64 = 1032;
/// Copy buffer.
const BUFFER_LEN: usize = 1 << 20;

/// A zip opened for extraction, its entries checked.
pub struct ZipSource {
    path: PathBuf,
    archive: ZipArchive<File>,
    /// Entry name → index, for files (directories are left out).
    entries: BTreeMap<String, usize>,
    /// Bytes extracted so far.
    extracted: u64,
}

impl ZipSource {
    /// Opens `file` and checks every entry's name, size and placement; messages call the
    /// zip `path` (an image zip staged from a factory zip is named as inside it).
    pub fn open(file: &Path, path: &Path) -> Result<Self, FactoryError> {
        let file = File::open(file).map_err(FactoryError::io(file))?;
        let invalid = |e: zip::result::ZipError| FactoryError::ZipInvalid {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let mut archive = ZipArchive::new(file).map_err(invalid)?;
        if archive.len() > MAX_ENTRIES {
            return Err(FactoryError::TooManyEntries {
                path: path.to_owned(),
                count: archive.len(),
                max: MAX_ENTRIES,
            });
        }
        // The zip reader keeps one entry per name, so duplicates are asked of it; which of
        // two same-named entries a tool extracts is up to the tool, so both are refused.
        if archive.has_duplicate_names() {
            return Err(FactoryError::DuplicateEntry {
                path: path.to_owned(),
            });
        }
        if archive.has_overlapping_entries().map_err(invalid)? {
            return Err(FactoryError::OverlappingEntries {
                path: path.to_owned(),
            });
        }
        // Local headers that disagree with the central directory ("zip cloaking") would
        // let another tool extract other bytes than those checked here.
        archive.validate_header_consistency().map_err(invalid)?;
        let mut entries = BTreeMap::new();
        for index in 0..archive.len() {
            let entry = archive.by_index_raw(index).map_err(invalid)?;
            let name = entry_name(path, entry.name_raw())?;
            if entry.is_dir() {
                continue;
            }
            check_size(
                path,
                &name,
                entry.size(),
                entry.compressed_size(),
                entry.compression(),
            )?;
            if entry.encrypted() {
                return Err(FactoryError::EntryUnsupported {
                    path: path.to_owned(),
                    name,
                    what: "encrypted".into(),
                });
            }
            entries.insert(name, index);
        }
        Ok(ZipSource {
            path: path.to_owned(),
            archive,
            entries,
            extracted: 0,
        })
    }

    /// The zip's own path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Names of the file entries, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Reads a small text entry (android-info.txt, fastboot-info.txt) whole, at most `max`
    /// bytes.
    pub fn read_text(&mut self, name: &str, max: u64) -> Result<String, FactoryError> {
        let mut bytes = Vec::new();
        self.inflate(name, Some(max), &mut bytes)?;
        String::from_utf8(bytes).map_err(|_| FactoryError::NotText {
            file: name.to_owned(),
        })
    }

    /// Inflates entry `name` into a new file `dest` (which must not exist); `max` caps
    /// files that are read whole afterwards.
    pub fn extract(
        &mut self,
        name: &str,
        dest: &Path,
        max: Option<u64>,
    ) -> Result<(), FactoryError> {
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
            .map_err(FactoryError::io(dest))?;
        self.inflate(name, max, &mut out)?;
        out.flush().map_err(FactoryError::io(dest))
    }

    /// Inflates one entry into `out`, proving it yields exactly its declared size and
    /// passes its CRC. `max` caps text entries.
    fn inflate(
        &mut self,
        name: &str,
        max: Option<u64>,
        out: &mut impl Write,
    ) -> Result<(), FactoryError> {
        let path = self.path.clone();
        let index = *self
            .entries
            .get(name)
            .ok_or_else(|| FactoryError::MissingFile {
                file: name.to_owned(),
                needed_by: format!("was looked for in {}", path.display()),
            })?;
        let damaged = |reason: String| FactoryError::EntryDamaged {
            path: path.clone(),
            name: name.to_owned(),
            reason,
        };
        // The raw bytes are inflated here rather than by the zip reader, so that the
        // declared size and the CRC are checked by this code, with errors that say which.
        let entry = self
            .archive
            .by_index_raw(index)
            .map_err(|e| damaged(e.to_string()))?;
        let declared = entry.size();
        let crc = entry.crc32();
        if let Some(max) = max {
            if declared > max {
                return Err(FactoryError::TextTooLarge {
                    file: name.to_owned(),
                    max,
                });
            }
        }
        self.extracted = self.extracted.saturating_add(declared);
        if self.extracted > MAX_TOTAL_SIZE {
            return Err(FactoryError::TotalTooLarge {
                path,
                max: MAX_TOTAL_SIZE,
            });
        }
        let inflated: Box<dyn Read> = match entry.compression() {
            CompressionMethod::Deflated => Box::new(DeflateDecoder::new(entry)),
            // Only stored and deflated entries pass `open`.
            _ => Box::new(entry),
        };
        // One byte past the declared size is enough to know the entry lies.
        let mut limited = inflated.take(declared.saturating_add(1));
        let mut buf = vec![0u8; BUFFER_LEN.min(declared as usize + 1)];
        let mut hasher = crc32fast::Hasher::new();
        let mut written = 0u64;
        loop {
            let n = match limited.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(damaged(e.to_string())),
            };
            written += n as u64;
            if written > declared {
                return Err(FactoryError::EntryOverrun {
                    path,
                    name: name.to_owned(),
                    declared,
                });
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|e| damaged(format!("cannot write it out: {e}")))?;
        }
        if written < declared {
            return Err(damaged(format!(
                "it ends after {written} of its declared {declared} bytes"
            )));
        }
        if hasher.finalize() != crc {
            return Err(damaged("its bytes do not match its CRC-32".into()));
        }
        Ok(())
    }
}

/// Checks an entry name: UTF-8, no control characters or backslashes, relative, no `.` or
/// `..` components, so it can never name a file outside the folder it is extracted to.
fn entry_name(path: &Path, raw: &[u8]) -> Result<String, FactoryError> {
    let unsafe_name = |reason| FactoryError::UnsafeEntryName {
        path: path.to_owned(),
        name: shown(&String::from_utf8_lossy(raw)),
        reason,
    };
    let name = std::str::from_utf8(raw).map_err(|_| unsafe_name("it is not UTF-8"))?;
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(unsafe_name("it is empty or too long"));
    }
    if name
        .chars()
        .any(|c| c.is_control() || c == '\\' || c == ':')
    {
        return Err(unsafe_name(
            "it contains a control character, a backslash or a colon",
        ));
    }
    if name.starts_with('/') {
        return Err(unsafe_name("it is an absolute path"));
    }
    let body = name.strip_suffix('/').unwrap_or(name);
    if body
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(unsafe_name("it has an empty, `.` or `..` component"));
    }
    Ok(name.to_owned())
}

/// Checks a declared size against the caps and against what the compressed bytes can hold.
fn check_size(
    path: &Path,
    name: &str,
    size: u64,
    compressed: u64,
    method: CompressionMethod,
) -> Result<(), FactoryError> {
    let too_large = |reason: String| FactoryError::EntryTooLarge {
        path: path.to_owned(),
        name: name.to_owned(),
        size,
        reason,
    };
    if size > MAX_ENTRY_SIZE {
        return Err(too_large(format!(
            "more than the {MAX_ENTRY_SIZE} bytes any partition image has"
        )));
    }
    match method {
        CompressionMethod::Stored if size != compressed => Err(too_large(format!(
            "but a stored entry holds exactly its {compressed} bytes"
        ))),
        CompressionMethod::Deflated
            if size
                > compressed
                    .saturating_mul(MAX_DEFLATE_RATIO)
                    .saturating_add(1024) =>
        {
            Err(too_large(format!(
                "more than deflate can produce from {compressed} compressed bytes"
            )))
        }
        CompressionMethod::Stored | CompressionMethod::Deflated => Ok(()),
        other => Err(FactoryError::EntryUnsupported {
            path: path.to_owned(),
            name: name.to_owned(),
            what: format!("compressed with {other}"),
        }),
    }
}
