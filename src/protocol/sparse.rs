//! Android sparse images (libsparse format, v1.x): a strict streaming reader.
//!
//! A sparse image describes a partition as a list of chunks: RAW data, a FILL pattern, or
//! DONT_CARE blocks that keep whatever the partition held. All fields are little-endian.
//! The reader never trusts a length it has not checked against the header and never
//! allocates from a declared size: data flows through a fixed buffer to a [`RegionSink`].

use std::io::{self, Read};

/// First four bytes of every sparse image (little-endian `0xED26FF3A`).
pub const MAGIC: u32 = 0xED26_FF3A;
/// Size of the v1.0 file header.
pub const FILE_HEADER_LEN: usize = 28;
/// Size of the v1.0 chunk header.
pub const CHUNK_HEADER_LEN: usize = 12;

const CHUNK_RAW: u16 = 0xCAC1;
const CHUNK_FILL: u16 = 0xCAC2;
const CHUNK_DONT_CARE: u16 = 0xCAC3;
const CHUNK_CRC32: u16 = 0xCAC4;

/// Largest header size we skip over; real images use 28 and 12.
const MAX_HEADER_LEN: u16 = 1024;

/// Why a sparse image was rejected.
#[derive(Debug, thiserror::Error)]
pub enum SparseError {
    /// The stream does not start with the sparse magic.
    #[error("not a sparse image (bad magic)")]
    BadMagic,
    /// A major version other than 1.
    #[error("unsupported sparse format version {0}")]
    UnsupportedVersion(u16),
    /// A header field is out of range.
    #[error("invalid sparse header: {0}")]
    BadHeader(&'static str),
    /// A chunk does not follow the rules for its type.
    #[error("invalid sparse chunk {index}: {reason}")]
    BadChunk {
        /// Zero-based chunk number.
        index: u32,
        /// What is wrong with it.
        reason: String,
    },
    /// The chunks do not cover exactly the blocks the header declares.
    #[error("sparse chunks cover {covered} blocks but the header declares {declared}")]
    BlockCountMismatch {
        /// Sum of all chunk sizes.
        covered: u64,
        /// `total_blks` from the header.
        declared: u64,
    },
    /// The stream ended inside the header or a chunk.
    #[error("sparse image is truncated")]
    Truncated,
    /// Reading the source or writing to the sink failed.
    #[error("I/O error while processing sparse image: {0}")]
    Io(#[from] io::Error),
}

/// The file header of a sparse image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Header length as stored (≥ 28).
    pub file_hdr_sz: u16,
    /// Chunk header length as stored (≥ 12).
    pub chunk_hdr_sz: u16,
    /// Block size in bytes (non-zero multiple of 4).
    pub blk_sz: u32,
    /// Blocks in the expanded image.
    pub total_blks: u32,
    /// Number of chunk records.
    pub total_chunks: u32,
    /// CRC32 of the expanded data; writers put 0.
    pub image_checksum: u32,
}

impl Header {
    /// Parses and validates the first [`FILE_HEADER_LEN`] bytes.
    pub fn parse(bytes: &[u8; FILE_HEADER_LEN]) -> Result<Self, SparseError> {
        let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
        if u32_at(0) != MAGIC {
            return Err(SparseError::BadMagic);
        }
        let major = u16_at(4);
        if major != 1 {
            return Err(SparseError::UnsupportedVersion(major));
        }
        let header = Header {
            file_hdr_sz: u16_at(8),
            chunk_hdr_sz: u16_at(10),
            blk_sz: u32_at(12),
            total_blks: u32_at(16),
            total_chunks: u32_at(20),
            image_checksum: u32_at(24),
        };
        if !(FILE_HEADER_LEN as u16..=MAX_HEADER_LEN).contains(&header.file_hdr_sz) {
            return Err(SparseError::BadHeader("file header size out of range"));
        }
        if !(CHUNK_HEADER_LEN as u16..=MAX_HEADER_LEN).contains(&header.chunk_hdr_sz) {
            return Err(SparseError::BadHeader("chunk header size out of range"));
        }
        if header.blk_sz == 0 || header.blk_sz % 4 != 0 {
            return Err(SparseError::BadHeader("block size must be a non-zero multiple of 4"));
        }
        Ok(header)
    }

    /// Encodes a v1.0 header (28-byte file header, 12-byte chunk headers).
    pub fn encode(blk_sz: u32, total_blks: u32, total_chunks: u32) -> [u8; FILE_HEADER_LEN] {
        let mut out = [0u8; FILE_HEADER_LEN];
        out[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        out[4..6].copy_from_slice(&1u16.to_le_bytes());
        out[6..8].copy_from_slice(&0u16.to_le_bytes());
        out[8..10].copy_from_slice(&(FILE_HEADER_LEN as u16).to_le_bytes());
        out[10..12].copy_from_slice(&(CHUNK_HEADER_LEN as u16).to_le_bytes());
        out[12..16].copy_from_slice(&blk_sz.to_le_bytes());
        out[16..20].copy_from_slice(&total_blks.to_le_bytes());
        out[20..24].copy_from_slice(&total_chunks.to_le_bytes());
        out
    }

    /// Size of the expanded image in bytes.
    pub fn expanded_len(&self) -> u64 {
        u64::from(self.blk_sz) * u64::from(self.total_blks)
    }
}

/// True if `prefix` starts with the sparse magic.
pub fn looks_sparse(prefix: &[u8]) -> bool {
    prefix.len() >= 4 && prefix[..4] == MAGIC.to_le_bytes()
}

/// Reads and validates the file header, skipping any extra header bytes.
pub fn read_header<R: Read>(r: &mut R) -> Result<Header, SparseError> {
    let mut bytes = [0u8; FILE_HEADER_LEN];
    read_full(r, &mut bytes)?;
    let header = Header::parse(&bytes)?;
    skip(r, u64::from(header.file_hdr_sz) - FILE_HEADER_LEN as u64)?;
    Ok(header)
}

/// Receives the regions of an expanded sparse image, in increasing offset order.
pub trait RegionSink {
    /// Called once with the validated header, before any region.
    fn begin(&mut self, header: &Header) -> io::Result<()>;
    /// Bytes to write at `offset` of the expanded image.
    fn data(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()>;
    /// `len` bytes at `offset` filled with the 4-byte `pattern` repeated.
    fn fill(&mut self, offset: u64, len: u64, pattern: [u8; 4]) -> io::Result<()>;
    /// `len` bytes at `offset` that the image leaves untouched.
    fn skip(&mut self, offset: u64, len: u64) -> io::Result<()>;
}

/// A sink that discards everything: [`expand`] into it validates a whole image.
pub struct Validate;

impl RegionSink for Validate {
    fn begin(&mut self, _: &Header) -> io::Result<()> {
        Ok(())
    }
    fn data(&mut self, _: u64, _: &[u8]) -> io::Result<()> {
        Ok(())
    }
    fn fill(&mut self, _: u64, _: u64, _: [u8; 4]) -> io::Result<()> {
        Ok(())
    }
    fn skip(&mut self, _: u64, _: u64) -> io::Result<()> {
        Ok(())
    }
}

/// Reads a whole sparse image from `r`, validating it and handing each region to `sink`.
///
/// Regions are delivered as they are read, so a sink that writes to a device sees an image
/// that later turns out malformed only partly applied; validate first with [`Validate`]
/// when that matters. CRC32 chunks are accepted and not checked, as libsparse does when
/// not asked to verify.
pub fn expand<R: Read, S: RegionSink + ?Sized>(mut r: R, sink: &mut S) -> Result<Header, SparseError> {
    let header = read_header(&mut r)?;
    sink.begin(&header)?;
    let blk = u64::from(header.blk_sz);
    let mut block: u64 = 0;
    let mut buf = vec![0u8; 256 * 1024];
    for index in 0..header.total_chunks {
        let mut ch = [0u8; CHUNK_HEADER_LEN];
        read_full(&mut r, &mut ch)?;
        skip(&mut r, u64::from(header.chunk_hdr_sz) - CHUNK_HEADER_LEN as u64)?;
        let kind = u16::from_le_bytes([ch[0], ch[1]]);
        let blocks = u64::from(u32::from_le_bytes(ch[4..8].try_into().unwrap()));
        let total_sz = u64::from(u32::from_le_bytes(ch[8..12].try_into().unwrap()));
        let hdr = u64::from(header.chunk_hdr_sz);
        let bad = |reason: String| SparseError::BadChunk { index, reason };
        let payload = total_sz
            .checked_sub(hdr)
            .ok_or_else(|| bad(format!("total size {total_sz} is smaller than its header")))?;
        if kind != CHUNK_CRC32 && block + blocks > u64::from(header.total_blks) {
            return Err(bad(format!(
                "blocks {block}..{} run past the image end at {}",
                block + blocks,
                header.total_blks
            )));
        }
        let offset = block * blk;
        let len = blocks * blk;
        match kind {
            CHUNK_RAW => {
                if payload != len {
                    return Err(bad(format!("RAW payload is {payload} bytes, {len} expected")));
                }
                let mut done = 0u64;
                while done < len {
                    let n = (len - done).min(buf.len() as u64) as usize;
                    read_full(&mut r, &mut buf[..n])?;
                    sink.data(offset + done, &buf[..n])?;
                    done += n as u64;
                }
            }
            CHUNK_FILL => {
                if payload != 4 {
                    return Err(bad(format!("FILL payload is {payload} bytes, 4 expected")));
                }
                let mut pattern = [0u8; 4];
                read_full(&mut r, &mut pattern)?;
                sink.fill(offset, len, pattern)?;
            }
            CHUNK_DONT_CARE => {
                if payload != 0 {
                    return Err(bad(format!("DONT_CARE carries {payload} payload bytes")));
                }
                sink.skip(offset, len)?;
            }
            CHUNK_CRC32 => {
                if payload != 4 {
                    return Err(bad(format!("CRC32 payload is {payload} bytes, 4 expected")));
                }
                let mut crc = [0u8; 4];
                read_full(&mut r, &mut crc)?;
                continue;
            }
            other => return Err(bad(format!("unknown chunk type {other:#06x}"))),
        }
        block += blocks;
    }
    if block != u64::from(header.total_blks) {
        return Err(SparseError::BlockCountMismatch {
            covered: block,
            declared: u64::from(header.total_blks),
        });
    }
    Ok(header)
}

fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<(), SparseError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => SparseError::Truncated,
        _ => SparseError::Io(e),
    })
}

fn skip<R: Read>(r: &mut R, n: u64) -> Result<(), SparseError> {
    let copied = io::copy(&mut r.by_ref().take(n), &mut io::sink())?;
    if copied != n {
        return Err(SparseError::Truncated);
    }
    Ok(())
}
