//! The sparse file format itself: the file and chunk headers, and the strict streaming
//! reader that walks chunks. Kept apart from scanning and splitting, which build on it.

use std::io::{self, Read};

use super::*;

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
        let u32_at = |o: usize| le_u32(bytes, o);
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
        if header.blk_sz == 0 || !header.blk_sz.is_multiple_of(4) {
            return Err(SparseError::BadHeader(
                "block size must be a non-zero multiple of 4",
            ));
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
pub fn expand<R: Read, S: RegionSink + ?Sized>(
    mut r: R,
    sink: &mut S,
) -> Result<Header, SparseError> {
    let header = read_header(&mut r)?;
    sink.begin(&header)?;
    let blk = u64::from(header.blk_sz);
    let mut buf = vec![0u8; 256 * 1024];
    let mut chunks = ChunkWalker::new(header);
    while let Some(chunk) = chunks.next(&mut r)? {
        let offset = u64::from(chunk.start_block) * blk;
        let len = u64::from(chunk.blocks) * blk;
        match chunk.kind {
            ChunkKind::Raw => {
                let mut done = 0u64;
                while done < len {
                    let n = (len - done).min(buf.len() as u64) as usize;
                    read_full(&mut r, &mut buf[..n])?;
                    sink.data(offset + done, &buf[..n])?;
                    done += n as u64;
                }
            }
            ChunkKind::Fill => {
                let mut pattern = [0u8; 4];
                read_full(&mut r, &mut pattern)?;
                sink.fill(offset, len, pattern)?;
            }
            ChunkKind::DontCare => sink.skip(offset, len)?,
            ChunkKind::Crc32 => read_full(&mut r, &mut [0u8; 4])?,
        }
    }
    Ok(header)
}

/// The four chunk types of format v1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChunkKind {
    Raw,
    Fill,
    DontCare,
    Crc32,
}

impl ChunkKind {
    /// The name the format uses, for error messages.
    fn name(self) -> &'static str {
        match self {
            ChunkKind::Raw => "RAW",
            ChunkKind::Fill => "FILL",
            ChunkKind::DontCare => "DONT_CARE",
            ChunkKind::Crc32 => "CRC32",
        }
    }
}

/// A chunk header that passed validation; its payload (RAW: `blocks × blk_sz` bytes, FILL
/// and CRC32: 4 bytes, DONT_CARE: none) is next in the stream.
pub(super) struct ChunkRecord {
    pub(super) kind: ChunkKind,
    pub(super) start_block: u32,
    pub(super) blocks: u32,
    /// Offset of the payload from the start of the sparse file.
    pub(super) payload_offset: u64,
}

/// Walks the chunk headers of a sparse stream, enforcing the rules of libsparse's reader.
///
/// The caller consumes each chunk's payload before asking for the next chunk; both
/// [`expand`] and [`scan_sparse`] go through here so they accept exactly the same files.
pub(super) struct ChunkWalker {
    header: Header,
    next_index: u32,
    /// First block not yet covered by a chunk.
    block: u32,
    /// Offset of the next chunk header in the file.
    pub(super) offset: u64,
}

impl ChunkWalker {
    pub(super) fn new(header: Header) -> Self {
        ChunkWalker {
            header,
            next_index: 0,
            block: 0,
            offset: u64::from(header.file_hdr_sz),
        }
    }

    /// Reads the next chunk header, or checks the block count once all chunks are read.
    pub(super) fn next<R: Read>(&mut self, r: &mut R) -> Result<Option<ChunkRecord>, SparseError> {
        let header = self.header;
        if self.next_index == header.total_chunks {
            if self.block != header.total_blks {
                return Err(SparseError::BlockCountMismatch {
                    covered: u64::from(self.block),
                    declared: u64::from(header.total_blks),
                });
            }
            return Ok(None);
        }
        let index = self.next_index;
        let mut ch = [0u8; CHUNK_HEADER_LEN];
        read_full(r, &mut ch)?;
        skip(r, u64::from(header.chunk_hdr_sz) - CHUNK_HEADER_LEN as u64)?;
        let blocks = le_u32(&ch, 4);
        let total_sz = u64::from(le_u32(&ch, 8));
        let bad = |reason: String| SparseError::BadChunk { index, reason };
        let payload = total_sz
            .checked_sub(u64::from(header.chunk_hdr_sz))
            .ok_or_else(|| bad(format!("total size {total_sz} is smaller than its header")))?;
        let (kind, expected) = match u16::from_le_bytes([ch[0], ch[1]]) {
            CHUNK_RAW => (ChunkKind::Raw, u64::from(blocks) * u64::from(header.blk_sz)),
            CHUNK_FILL => (ChunkKind::Fill, 4),
            CHUNK_DONT_CARE => (ChunkKind::DontCare, 0),
            CHUNK_CRC32 => (ChunkKind::Crc32, 4),
            other => return Err(bad(format!("unknown chunk type {other:#06x}"))),
        };
        let start_block = self.block;
        if kind != ChunkKind::Crc32 {
            let end = u64::from(start_block) + u64::from(blocks);
            self.block = u32::try_from(end)
                .ok()
                .filter(|&end| end <= header.total_blks)
                .ok_or_else(|| {
                    bad(format!(
                        "blocks {start_block}..{end} run past the image end at {}",
                        header.total_blks
                    ))
                })?;
        }
        if payload != expected {
            return Err(bad(format!(
                "{} payload is {payload} bytes, {expected} expected",
                kind.name()
            )));
        }
        let record = ChunkRecord {
            kind,
            start_block,
            blocks,
            payload_offset: self.offset + u64::from(header.chunk_hdr_sz),
        };
        self.next_index += 1;
        self.offset += total_sz;
        Ok(Some(record))
    }
}

pub(super) fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

pub(super) fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<(), SparseError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => SparseError::Truncated,
        _ => SparseError::Io(e),
    })
}

pub(super) fn skip<R: Read>(r: &mut R, n: u64) -> Result<(), SparseError> {
    let copied = io::copy(&mut r.by_ref().take(n), &mut io::sink())?;
    if copied != n {
        return Err(SparseError::Truncated);
    }
    Ok(())
}
