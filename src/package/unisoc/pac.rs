//! Vendor `.pac` firmware files, read as spreadtrum_flash's `unpac` reads them, and
//! imported into signed flashline packages.
//!
//! Layout (little-endian; `unpac/unpac.c`, `sprd_head_t` and `sprd_file_t`): a 2124-byte
//! header (version, size, firmware name and version as UTF-16, the file count and the
//! offset of the file table, which is the header's size, and the magic `!0x50005`), then
//! one 2580-byte entry per file: `id` and `name` (UTF-16), the size and the offset of its
//! bytes in the .pac (each with a high word), its type (unpac: 0 operation, 1 file, 2 xml,
//! 0x101 FDL) and up to five addresses, the first of which is a loader's load address.
//!
//! flashline takes the first two FDL entries as FDL1 and FDL2 (the order the download runs
//! them), and each file entry as the image of the partition its `id` names. A vendor .pac
//! whose ids are not partition names (its XML maps them, which flashline does not read)
//! imports all the same, and its writes are refused at flash time because the device lists
//! no such partitions: nothing is written to a guessed place.
//!
//! Everything declared is checked against the file before a byte is copied: counts,
//! struct sizes, offsets and sizes that run past the end, sizes past flashline's image
//! limit. Image bytes are streamed, never held whole.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::super::manifest::MAX_IMAGE_SIZE;
use super::super::pack::{pack, PackSummary};
use super::super::PackageError;

/// Size of the header.
pub const HEADER_LEN: u64 = 2124;
/// Size of one file entry.
pub const ENTRY_LEN: u64 = 2580;
/// The header's magic (`~0x50005`).
pub const MAGIC: u32 = !0x50005;
/// Most file entries (unpac refuses `file_count >> 10`).
pub const MAX_FILES: u32 = 1023;
/// Entry type of a loader.
pub const TYPE_FDL: u32 = 0x101;
/// Entry type of a file to flash.
pub const TYPE_FILE: u32 = 1;

/// One file entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacEntry {
    /// The id (printable ASCII).
    pub id: String,
    /// The file name (printable ASCII).
    pub name: String,
    /// unpac's type.
    pub kind: u32,
    /// Bytes.
    pub size: u64,
    /// Where they start in the .pac.
    pub offset: u64,
    /// The first address, if the entry has any.
    pub address: Option<u32>,
}

/// What a .pac holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pac {
    /// The firmware name from the header.
    pub firmware: String,
    /// The firmware version from the header.
    pub version: String,
    /// Every entry, in order.
    pub entries: Vec<PacEntry>,
}

fn pac_error(path: &Path, reason: impl Into<String>) -> PackageError {
    PackageError::Pac {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn le32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// UTF-16LE up to its NUL, printable ASCII only (other characters become `?`, as unpac
/// prints them).
fn utf16(bytes: &[u8]) -> String {
    bytes
        .chunks_exact(2)
        .map(|u| u16::from_le_bytes([u[0], u[1]]))
        .take_while(|&c| c != 0)
        .map(|c| match u8::try_from(c) {
            Ok(b) if b.is_ascii_graphic() || b == b' ' => char::from(b),
            _ => '?',
        })
        .collect()
}

/// Reads and checks the header and file table of the .pac at `path`.
pub fn read(path: &Path) -> Result<Pac, PackageError> {
    let mut file = File::open(path).map_err(PackageError::io(path))?;
    let len = file.metadata().map_err(PackageError::io(path))?.len();
    read_from(&mut file, len, path)
}

fn read_from(file: &mut File, len: u64, path: &Path) -> Result<Pac, PackageError> {
    if len < HEADER_LEN {
        return Err(pac_error(
            path,
            format!("it is {len} bytes, shorter than a .pac header"),
        ));
    }
    let mut head = vec![0u8; HEADER_LEN as usize];
    file.read_exact(&mut head).map_err(PackageError::io(path))?;
    if le32(&head, 2116) != MAGIC {
        return Err(pac_error(path, "it is not a .pac (bad magic)"));
    }
    let count = le32(&head, 1076);
    let dir = u64::from(le32(&head, 1080));
    if dir != HEADER_LEN {
        return Err(pac_error(
            path,
            format!("its file table is at {dir}, not after the header"),
        ));
    }
    if count > MAX_FILES {
        return Err(pac_error(
            path,
            format!("it declares {count} files; at most {MAX_FILES} are accepted"),
        ));
    }
    let table_end = HEADER_LEN + u64::from(count) * ENTRY_LEN;
    if table_end > len {
        return Err(pac_error(
            path,
            format!("its table of {count} files ends at byte {table_end}, past the end of the file ({len} bytes)"),
        ));
    }
    let mut entries = Vec::with_capacity(count as usize);
    let mut raw = vec![0u8; ENTRY_LEN as usize];
    for i in 0..count {
        file.read_exact(&mut raw).map_err(PackageError::io(path))?;
        if u64::from(le32(&raw, 0)) != ENTRY_LEN {
            return Err(pac_error(
                path,
                format!("file entry {i} has an unexpected struct size"),
            ));
        }
        let size = u64::from(le32(&raw, 1532)) << 32 | u64::from(le32(&raw, 1540));
        let offset = u64::from(le32(&raw, 1536)) << 32 | u64::from(le32(&raw, 1552));
        let id = utf16(&raw[4..516]);
        let name = utf16(&raw[516..1028]);
        let what = if id.is_empty() {
            name.clone()
        } else {
            id.clone()
        };
        if size > 0 {
            if size > MAX_IMAGE_SIZE {
                return Err(pac_error(path, format!("file {what:?} declares {size} bytes, more than any image flashline accepts")));
            }
            let end = offset.checked_add(size).filter(|&e| e <= len);
            if offset < table_end || end.is_none() {
                return Err(pac_error(
                    path,
                    format!("file {what:?} lies at {offset}+{size}, outside the .pac's data ({table_end}..{len})"),
                ));
            }
        }
        let addr_num = le32(&raw, 1560);
        let address = (1..=5)
            .contains(&addr_num)
            .then(|| le32(&raw, 1564))
            .filter(|&a| a != 0);
        entries.push(PacEntry {
            id,
            name,
            kind: le32(&raw, 1544),
            size,
            offset,
            address,
        });
    }
    Ok(Pac {
        firmware: utf16(&head[52..564]),
        version: utf16(&head[564..1076]),
        entries,
    })
}

/// What the importer is told besides the .pac.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The product the package is for (the quirks file's name of the device).
    pub target: String,
    /// The package's name; from the .pac's firmware name when `None`.
    pub name: Option<String>,
    /// The release version.
    pub version: semver::Version,
    /// The anti-rollback counter.
    pub security_version: u64,
}

/// A name made of the identifier characters only (letters, digits, `-`, `_`, `.`).
fn identifier(text: &str, fallback: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    let cleaned = cleaned.trim_matches(|c| c == '-' || c == '.').to_string();
    if cleaned.is_empty() {
        fallback.to_string()
    } else {
        cleaned
    }
}

/// Imports the .pac at `pac_path` into a package at `out` signed with `key_file`.
///
/// The loaders and the file entries are streamed out of the .pac into a private folder
/// beside `out`, described by a manifest with a `[unisoc]` table, and packed from there
/// exactly as a release engineer's folder is; the folder is removed afterwards.
pub fn import(
    pac_path: &Path,
    key_file: &Path,
    out: &Path,
    options: &ImportOptions,
) -> Result<PackSummary, PackageError> {
    let pac = read(pac_path)?;
    let loaders: Vec<&PacEntry> = pac
        .entries
        .iter()
        .filter(|e| e.kind == TYPE_FDL && e.size > 0)
        .collect();
    let [fdl1, fdl2, ..] = loaders[..] else {
        return Err(pac_error(
            pac_path,
            format!(
                "it names {} loader(s) (type 0x101); a Unisoc download needs FDL1 and FDL2",
                loaders.len()
            ),
        ));
    };
    for fdl in [fdl1, fdl2] {
        if fdl.address.is_none() {
            return Err(pac_error(
                pac_path,
                format!("loader {:?} has no load address", fdl.id),
            ));
        }
    }
    let files: Vec<&PacEntry> = pac
        .entries
        .iter()
        .filter(|e| e.kind == TYPE_FILE && e.size > 0 && !e.name.is_empty())
        .collect();
    let dir_parent = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let dir = crate::secure_fs::new_private_dir(dir_parent, ".pac-import")
        .map_err(PackageError::io(dir_parent))?;
    let result = (|| {
        let mut source = File::open(pac_path).map_err(PackageError::io(pac_path))?;
        let mut extract = |index: usize, entry: &PacEntry| -> Result<String, PackageError> {
            let file = format!("{index:03}-{}", identifier(&entry.name, "image"));
            copy_range(
                &mut source,
                entry.offset,
                entry.size,
                &dir.join(&file),
                pac_path,
            )?;
            Ok(file)
        };
        let fdl1_file = extract(0, fdl1)?;
        let fdl2_file = extract(1, fdl2)?;
        let mut partitions = toml::map::Map::new();
        for (i, entry) in files.iter().enumerate() {
            let file = extract(i + 2, entry)?;
            if partitions
                .insert(entry.id.clone(), toml::Value::String(file))
                .is_some()
            {
                return Err(pac_error(
                    pac_path,
                    format!("two files are for {:?}", entry.id),
                ));
            }
        }
        let name = options
            .name
            .clone()
            .unwrap_or_else(|| identifier(&pac.firmware, "unisoc-pac"));
        use toml::Value;
        let description: String = format!("imported from a .pac: {} {}", pac.firmware, pac.version)
            .chars()
            .take(200)
            .collect();
        let mut target = toml::map::Map::new();
        target.insert("product".into(), Value::String(options.target.clone()));
        let mut unisoc = toml::map::Map::new();
        unisoc.insert("fdl1".into(), Value::String(fdl1_file));
        unisoc.insert(
            "fdl1_address".into(),
            Value::Integer(i64::from(fdl1.address.unwrap_or_default())),
        );
        unisoc.insert("fdl2".into(), Value::String(fdl2_file));
        unisoc.insert(
            "fdl2_address".into(),
            Value::Integer(i64::from(fdl2.address.unwrap_or_default())),
        );
        unisoc.insert("partitions".into(), Value::Table(partitions));
        let mut manifest = toml::map::Map::new();
        manifest.insert("name".into(), Value::String(name));
        manifest.insert("version".into(), Value::String(options.version.to_string()));
        let security = i64::try_from(options.security_version)
            .map_err(|_| pac_error(pac_path, "the security version is too large"))?;
        manifest.insert("security_version".into(), Value::Integer(security));
        manifest.insert("min_battery_percent".into(), Value::Integer(0));
        manifest.insert("description".into(), Value::String(description));
        manifest.insert("target".into(), Value::Array(vec![Value::Table(target)]));
        manifest.insert("unisoc".into(), Value::Table(unisoc));
        let manifest = toml::to_string(&manifest)
            .map_err(|e| pac_error(pac_path, format!("cannot describe it as a manifest: {e}")))?;
        let manifest_path = dir.join("manifest.toml");
        std::fs::write(&manifest_path, manifest).map_err(PackageError::io(&manifest_path))?;
        pack(&manifest_path, key_file, out)
    })();
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        tracing::warn!("the import folder {} was not removed: {e}", dir.display());
    }
    result
}

/// Streams `len` bytes at `offset` of `source` into a new file at `to`.
fn copy_range(
    source: &mut File,
    offset: u64,
    len: u64,
    to: &Path,
    pac_path: &Path,
) -> Result<(), PackageError> {
    source
        .seek(SeekFrom::Start(offset))
        .map_err(PackageError::io(pac_path))?;
    let mut out = crate::secure_fs::create_new(to).map_err(PackageError::io(to))?;
    let copied =
        io::copy(&mut (&mut *source).take(len), &mut out).map_err(PackageError::io(pac_path))?;
    out.flush().map_err(PackageError::io(to))?;
    if copied != len {
        return Err(pac_error(
            pac_path,
            "the file ended while a part of it was copied",
        ));
    }
    Ok(())
}
