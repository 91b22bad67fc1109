//! An empty filesystem image built on this computer for `fastboot format`, as Google's
//! client builds one: the device says what the partition holds (`partition-type:<p>`) and
//! how large it is (`partition-size:<p>`), a host tool lays out an empty filesystem of
//! exactly that size, and the image goes to the device as an Android sparse image.
//!
//! The tools and their options are Google's (AOSP `fastboot/fs.cpp`), run from Debian's
//! packages: ext4 with `mke2fs -t ext4 -b 4096 [-E stride=S,stripe-width=W] -O uninit_bg
//! FILE BLOCKS` (e2fsprogs), the stride and stripe width from the device's
//! `logical-block-size` and `erase-block-size` as Google computes them; f2fs with
//! `mkfs.f2fs -g android FILE` (f2fs-tools) on a file of the partition's size, where
//! Google's own `make_f2fs` takes the size with `-S`. Google's `mke2fs` writes the sparse
//! image itself (`-E android_sparse`); Debian's is built without that output
//! ("Unimplemented ext2 library function"), so flashline writes a plain image and encodes
//! it here: the ranges the tool wrote (found with `SEEK_DATA`/`SEEK_HOLE`) as RAW or FILL
//! chunks, the holes it never wrote as DONT_CARE, as Google's sparse output leaves them.
//! The encoded image is hashed once written, and again on its way to the device.
//!
//! It is the one image flashline sends that no package signature covers: it comes from
//! this computer's own tools, only on the user's explicit confirmation, holds nothing but
//! an empty filesystem, and its command line and hash are printed and recorded.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::device::{ImageSource, SendReader};
use crate::hashing::{HashingReader, HashingWriter};
use crate::protocol::sparse::Header;

/// The block size Google's client formats ext4 with, and the sparse image's block size.
const BLOCK: u64 = 4096;
/// Chunk header: type, reserved, blocks, total bytes.
const CHUNK_HEADER_LEN: u32 = 12;
const CHUNK_RAW: u16 = 0xCAC1;
const CHUNK_FILL: u16 = 0xCAC2;
const CHUNK_DONT_CARE: u16 = 0xCAC3;
/// Where the tools live on systems that keep `sbin` out of a user's `PATH` (Debian).
const SBIN: [&str; 3] = ["/usr/sbin", "/sbin", "/usr/local/sbin"];

/// A filesystem `format` can build: the `partition-type` values Google's client knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filesystem {
    /// `ext4`, by e2fsprogs' `mke2fs`.
    Ext4,
    /// `f2fs`, by f2fs-tools' `mkfs.f2fs`.
    F2fs,
}

impl Filesystem {
    /// The filesystem a device's `partition-type` names, if `format` can build it.
    pub fn from_partition_type(kind: &str) -> Option<Self> {
        match kind.trim() {
            "ext4" => Some(Filesystem::Ext4),
            "f2fs" => Some(Filesystem::F2fs),
            _ => None,
        }
    }

    /// Its name, as devices report it.
    pub fn name(self) -> &'static str {
        match self {
            Filesystem::Ext4 => "ext4",
            Filesystem::F2fs => "f2fs",
        }
    }

    fn tool(self) -> &'static str {
        match self {
            Filesystem::Ext4 => "mke2fs",
            Filesystem::F2fs => "mkfs.f2fs",
        }
    }

    fn package(self) -> &'static str {
        match self {
            Filesystem::Ext4 => "e2fsprogs",
            Filesystem::F2fs => "f2fs-tools",
        }
    }
}

/// The device's flash geometry (`erase-block-size`, `logical-block-size`); 0 where it
/// reports none or a value that is not a power of two, as Google's client takes them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlashGeometry {
    /// `erase-block-size` in bytes.
    pub erase_block: u64,
    /// `logical-block-size` in bytes.
    pub logical_block: u64,
}

impl FlashGeometry {
    /// A reported size, kept only if it is a power of two.
    pub fn size(value: Option<u64>) -> u64 {
        value.filter(|v| v.is_power_of_two()).unwrap_or(0)
    }

    /// mke2fs's `-E stride=…,stripe-width=…` for this geometry: the stride is the logical
    /// block (at least 8 KiB), the stripe the erase block (at least the stride), both in
    /// filesystem blocks; none unless the device reports both.
    fn ext4_extended(self) -> Option<String> {
        if self.erase_block == 0 || self.logical_block == 0 {
            return None;
        }
        let stride = self.logical_block.max(8192) / BLOCK;
        let stripe = (self.erase_block / BLOCK).max(stride);
        Some(format!("stride={stride},stripe-width={stripe}"))
    }
}

/// Why no filesystem image was built.
#[derive(Debug, thiserror::Error)]
pub enum FilesystemError {
    /// The host tool for this filesystem is not installed.
    #[error(
        "building an empty {filesystem} image needs `{tool}`, which is not installed on this \
         computer: install {package} (Debian/Ubuntu: `sudo apt install {package}`), then run \
         the command again"
    )]
    MissingTool {
        /// The filesystem.
        filesystem: &'static str,
        /// The program.
        tool: &'static str,
        /// The package that has it.
        package: &'static str,
    },
    /// The tool ran and failed.
    #[error("`{command}` failed ({status}): {output}")]
    ToolFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed.
        output: String,
    },
    /// The partition cannot hold a filesystem of whole blocks.
    #[error("the partition is {0} bytes, too small for a filesystem of 4096-byte blocks")]
    TooSmall(u64),
    /// The image could not be written or encoded.
    #[error("the filesystem image could not be written: {0}")]
    Io(#[from] io::Error),
}

/// An empty filesystem image, encoded as an Android sparse image in a private folder
/// that goes away with it.
#[derive(Debug)]
pub struct EmptyImage {
    /// The filesystem.
    pub filesystem: Filesystem,
    /// The partition size it was made for, in bytes.
    pub size: u64,
    /// The command that built it, as run.
    pub command: String,
    /// Bytes of the sparse image.
    pub sparse_len: u64,
    /// SHA-256 of the sparse image.
    pub sha256: [u8; 32],
    sparse: PathBuf,
    _dir: tempfile::TempDir,
}

/// Builds an empty `filesystem` of `size` bytes for a device with `geometry`.
pub fn build(
    filesystem: Filesystem,
    size: u64,
    geometry: FlashGeometry,
) -> Result<EmptyImage, FilesystemError> {
    if size / BLOCK == 0 {
        return Err(FilesystemError::TooSmall(size));
    }
    let tool = find_tool(filesystem.tool()).ok_or(FilesystemError::MissingTool {
        filesystem: filesystem.name(),
        tool: filesystem.tool(),
        package: filesystem.package(),
    })?;
    let dir = tempfile::Builder::new()
        .prefix("flashline-format-")
        .tempdir()?;
    let raw = dir.path().join(format!("empty.{}", filesystem.name()));
    let mut args: Vec<String> = Vec::new();
    match filesystem {
        Filesystem::Ext4 => {
            args.extend(["-t", "ext4", "-b", "4096"].map(String::from));
            if let Some(extended) = geometry.ext4_extended() {
                args.extend(["-E".to_string(), extended]);
            }
            args.extend(["-O", "uninit_bg"].map(String::from));
            args.push(raw.display().to_string());
            args.push((size / BLOCK).to_string());
        }
        Filesystem::F2fs => {
            File::create(&raw)?.set_len(size)?;
            args.extend(["-g", "android"].map(String::from));
            args.push(raw.display().to_string());
        }
    }
    let command = format!("{} {}", tool.display(), args.join(" "));
    tracing::info!(%command, "building an empty filesystem image");
    let out = Command::new(&tool)
        .args(&args)
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        return Err(FilesystemError::ToolFailed {
            command,
            status: out.status.to_string(),
            output: String::from_utf8_lossy(&[out.stdout, out.stderr].concat())
                .trim()
                .to_string(),
        });
    }
    let sparse = dir.path().join("empty.simg");
    let (sparse_len, sha256) = encode(&raw, size, &sparse)?;
    std::fs::remove_file(&raw)?;
    Ok(EmptyImage {
        filesystem,
        size,
        command,
        sparse_len,
        sha256,
        sparse,
        _dir: dir,
    })
}

/// `name` on `PATH`, or in the `sbin` folders.
fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SBIN.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// What a run of blocks of the sparse image holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    /// Bytes of the plain image at the run's own offset.
    Raw,
    /// One 32-bit word repeated.
    Fill(u32),
}

/// Encodes the plain image `raw` (`size` bytes, a whole number of blocks are kept) as an
/// Android sparse image at `out`; returns its length and SHA-256.
fn encode(raw: &Path, size: u64, out: &Path) -> io::Result<(u64, [u8; 32])> {
    let total_blocks = u32::try_from(size / BLOCK)
        .map_err(|_| io::Error::other("the partition has more than 2^32 blocks"))?;
    let mut file = File::open(raw)?;
    let mut runs: Vec<(u32, u32, Run)> = Vec::new();
    let mut block = vec![0u8; BLOCK as usize];
    for range in crate::platform::data_ranges(&file, u64::from(total_blocks) * BLOCK, BLOCK)? {
        file.seek(SeekFrom::Start(range.start))?;
        for index in (range.start / BLOCK)..range.end.div_ceil(BLOCK) {
            file.read_exact(&mut block)?;
            let index = index as u32;
            let first = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
            let run = if block.chunks(4).all(|w| w == first.to_le_bytes()) {
                Run::Fill(first)
            } else {
                Run::Raw
            };
            match runs.last_mut() {
                Some((start, count, last)) if *start + *count == index && *last == run => {
                    *count += 1
                }
                _ => runs.push((index, 1, run)),
            }
        }
    }
    let mut chunks = 0u32;
    let mut next = 0u32;
    for &(start, count, _) in &runs {
        chunks += 1 + u32::from(start > next);
        next = start + count;
    }
    chunks += u32::from(next < total_blocks);

    let mut writer = HashingWriter::new(BufWriter::new(File::create(out)?));
    writer.write_all(&Header::encode(BLOCK as u32, total_blocks, chunks))?;
    let mut next = 0u32;
    for (start, count, run) in runs {
        if start > next {
            chunk_header(&mut writer, CHUNK_DONT_CARE, start - next, 0)?;
        }
        match run {
            Run::Fill(word) => {
                chunk_header(&mut writer, CHUNK_FILL, count, 4)?;
                writer.write_all(&word.to_le_bytes())?;
            }
            Run::Raw => {
                let len = u64::from(count) * BLOCK;
                chunk_header(&mut writer, CHUNK_RAW, count, len)?;
                file.seek(SeekFrom::Start(u64::from(start) * BLOCK))?;
                let copied = io::copy(&mut (&mut file).take(len), &mut writer)?;
                if copied != len {
                    return Err(io::Error::other(
                        "the filesystem image shrank while encoded",
                    ));
                }
            }
        }
        next = start + count;
    }
    if next < total_blocks {
        chunk_header(&mut writer, CHUNK_DONT_CARE, total_blocks - next, 0)?;
    }
    let (buffered, sha256) = writer.finish();
    let file = buffered.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok((file.metadata()?.len(), sha256))
}

fn chunk_header(out: &mut impl Write, kind: u16, blocks: u32, payload: u64) -> io::Result<()> {
    let total = u32::try_from(u64::from(CHUNK_HEADER_LEN) + payload)
        .map_err(|_| io::Error::other("a sparse chunk of 4 GiB or more"))?;
    out.write_all(&kind.to_le_bytes())?;
    out.write_all(&[0, 0])?;
    out.write_all(&blocks.to_le_bytes())?;
    out.write_all(&total.to_le_bytes())
}

impl ImageSource for EmptyImage {
    fn len(&self) -> u64 {
        self.sparse_len
    }

    fn is_sparse(&self) -> bool {
        true
    }

    fn plan_reader(&self) -> io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(File::open(&self.sparse)?))
    }

    fn send_reader(&self) -> io::Result<Box<dyn SendReader + '_>> {
        Ok(Box::new(Hashed {
            reader: HashingReader::new(File::open(&self.sparse)?),
            expected: self.sha256,
        }))
    }
}

/// The encoded image as it goes out, checked against the hash taken when it was written.
struct Hashed {
    reader: HashingReader<File>,
    expected: [u8; 32],
}

impl Read for Hashed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

impl SendReader for Hashed {
    fn verify(self: Box<Self>) -> Result<(), String> {
        if self.reader.finish() == self.expected {
            Ok(())
        } else {
            Err("the filesystem image changed between building and sending".into())
        }
    }
}
