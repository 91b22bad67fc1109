//! Reading regions of an open package file by position, and the re-hashing image reader.
//!
//! All reads are positional (`pread` on unix, `seek_read` on Windows) on the one handle the
//! package was verified through: no shared cursor, so several image readers can exist at
//! once, and the path is never reopened, so the file verified is the file read.

use std::fs::File;
use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use super::{PackageError, Sha256Sum};
use crate::hashing::{BlockHashes, BlockVerifier};

/// Buffer size for hashing and streaming: large enough for full disk throughput, fixed so a
/// declared size never decides an allocation.
pub(crate) const BUFFER_LEN: usize = 1 << 20;

/// One positional read; may return fewer bytes than asked, 0 at end of file.
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    loop {
        match crate::platform::read_at(file, buf, offset) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Reads until `buf` is full or the file ends; returns how many bytes were read.
pub(crate) fn fill_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let n = read_at(file, &mut buf[done..], offset + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

/// Feeds `len` bytes starting at `offset` to `sink` in chunks of `buf`'s size; returns how
/// many bytes existed (fewer than `len` if the file ended early).
pub(crate) fn stream_at(
    file: &File,
    offset: u64,
    len: u64,
    buf: &mut [u8],
    mut sink: impl FnMut(&[u8]),
) -> io::Result<u64> {
    let mut done = 0u64;
    while done < len {
        let want = (len - done).min(buf.len() as u64) as usize;
        let n = fill_at(file, &mut buf[..want], offset + done)?;
        sink(&buf[..n]);
        done += n as u64;
        if n < want {
            break;
        }
    }
    Ok(done)
}

/// Reads one verified image from the package, checking every byte it hands out.
///
/// Obtained from [`super::VerifiedPackage::open_image`]. A file can be rewritten after it
/// was verified by another process (RAUC CVE-2020-25860), so what is read is checked again
/// as it is read, in one of two ways:
///
/// * an image with signed block hashes: each block is read whole and compared with its
///   signed hash before any of its bytes is handed out, so a changed byte never leaves
///   (this is the only time such an image is hashed);
/// * an image of an older package without them: every byte is hashed as it is handed out,
///   and [`ImageReader::finish`] proves that the bytes read were the signed ones. Call it
///   before committing anything on the device.
pub struct ImageReader {
    partition: String,
    size: u64,
    read: u64,
    check: Check,
    /// Where the bytes this reader hashes are counted (see [`ImageReader::counting`]).
    hashed: Option<Arc<AtomicU64>>,
}

/// How an [`ImageReader`] checks what it reads.
enum Check {
    /// Hashes everything and compares at the end (packages without block hashes).
    Whole {
        file: Arc<File>,
        offset: u64,
        hasher: Sha256,
        expected: Sha256Sum,
    },
    /// Checks each block before handing it out.
    Blocks {
        verifier: BlockVerifier<PlanningReader>,
        signed: Sha256Sum,
    },
}

impl ImageReader {
    pub(crate) fn new(
        file: Arc<File>,
        partition: String,
        offset: u64,
        size: u64,
        expected: Sha256Sum,
    ) -> Self {
        ImageReader {
            partition,
            size,
            read: 0,
            check: Check::Whole {
                file,
                offset,
                hasher: Sha256::new(),
                expected,
            },
            hashed: None,
        }
    }

    /// A reader over the image from block `first` of `blocks` on, checking each block.
    pub(crate) fn by_blocks(
        file: Arc<File>,
        partition: String,
        offset: u64,
        size: u64,
        blocks: BlockHashes,
        first: usize,
        signed: Sha256Sum,
    ) -> Self {
        let skip = (first as u64 * blocks.block() as u64).min(size);
        let source = PlanningReader::new(file, offset, size).skipping(skip);
        ImageReader {
            partition,
            size: size - skip,
            read: 0,
            check: Check::Blocks {
                verifier: BlockVerifier::from_block(source, blocks, first),
                signed,
            },
            hashed: None,
        }
    }

    /// Adds every byte this reader hashes to `counter`, so that the package it came from
    /// can say how many bytes its readers hashed: once per byte sent is the promise.
    pub(crate) fn counting(mut self, counter: Arc<AtomicU64>) -> Self {
        self.hashed = Some(counter);
        self
    }

    /// The partition this image is for.
    pub fn partition(&self) -> &str {
        &self.partition
    }

    /// Bytes this reader hands out in all: the signed size of the image, less any blocks
    /// it starts after.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes handed out so far.
    pub fn position(&self) -> u64 {
        self.read
    }

    /// Confirms that exactly the signed number of bytes was read and that they were the
    /// signed ones (hashed whole, or every block checked as it was read); returns the
    /// image's signed sha256.
    pub fn finish(self) -> Result<Sha256Sum, PackageError> {
        if self.read != self.size {
            return Err(PackageError::SizeMismatch {
                partition: self.partition,
                expected: self.size,
                actual: self.read,
            });
        }
        match self.check {
            Check::Whole {
                hasher, expected, ..
            } => {
                let digest = Sha256Sum(hasher.finalize().into());
                if digest != expected {
                    return Err(PackageError::HashMismatch {
                        partition: self.partition,
                    });
                }
                Ok(digest)
            }
            // Every byte handed out came from a block that matched its signed hash.
            Check::Blocks { verifier, signed } if verifier.is_complete() => Ok(signed),
            Check::Blocks { .. } => Err(PackageError::HashMismatch {
                partition: self.partition,
            }),
        }
    }
}

impl Read for ImageReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (self.size - self.read).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        // Counted also when a block fails its check: it was hashed all the same.
        let (result, hashed) = match &mut self.check {
            Check::Whole {
                file,
                offset,
                hasher,
                ..
            } => {
                let n = read_at(file, &mut buf[..want], *offset + self.read)?;
                hasher.update(&buf[..n]);
                (Ok(n), n as u64)
            }
            Check::Blocks { verifier, .. } => {
                let before = verifier.hashed();
                let result = verifier.read(&mut buf[..want]);
                (result, verifier.hashed() - before)
            }
        };
        if let Some(counter) = &self.hashed {
            counter.fetch_add(hashed, Ordering::Relaxed);
        }
        let n = result?;
        self.read += n as u64;
        Ok(n)
    }
}

/// Reads one image's bytes without hashing them, for planning only (e.g. finding the
/// blocks a sparse split can leave out). Nothing read through it is trusted or sent: the
/// bytes that go to a device come from an [`ImageReader`].
///
/// Obtained from [`super::VerifiedPackage::open_image_for_planning`].
#[derive(Debug)]
pub struct PlanningReader {
    file: Arc<File>,
    offset: u64,
    left: u64,
}

impl PlanningReader {
    pub(crate) fn new(file: Arc<File>, offset: u64, size: u64) -> Self {
        PlanningReader {
            file,
            offset,
            left: size,
        }
    }

    /// Starts `skip` bytes into the image instead (at its end if it is shorter).
    pub fn skipping(mut self, skip: u64) -> Self {
        let skip = skip.min(self.left);
        self.offset += skip;
        self.left -= skip;
        self
    }
}

impl Read for PlanningReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = self.left.min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = read_at(&self.file, &mut buf[..want], self.offset)?;
        self.offset += n as u64;
        self.left -= n as u64;
        Ok(n)
    }
}

impl std::fmt::Debug for ImageReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageReader")
            .field("partition", &self.partition)
            .field("size", &self.size)
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}
