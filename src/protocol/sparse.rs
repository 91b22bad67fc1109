//! Android sparse images (libsparse format, v1.x): a strict streaming reader, and the
//! splitter that cuts an image into pieces a fastboot device can download.
//!
//! A sparse image describes a partition as a list of chunks: RAW data, a FILL pattern, or
//! DONT_CARE blocks that keep whatever the partition held. All fields are little-endian.
//! The reader never trusts a length it has not checked against the header and never
//! allocates from a declared size: data flows through a fixed buffer to a [`RegionSink`].
//!
//! Splitting follows Google's fastboot client (libsparse `sparse_file_resparse`) block for
//! block, so a device sees exactly the downloads it would see from `fastboot flash`:
//! [`scan_raw`] or [`scan_sparse`] reads the source once to build a [`Layout`], [`split`]
//! cuts it into [`Piece`]s no larger than the device's `max-download-size`, and
//! [`Piece::write`] streams each piece, pulling RAW data through one [`SourceCursor`] that
//! reads every source byte exactly once, in order.

use std::io::{self, Read, Write};
use std::ops::Range;

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

/// Block size libsparse uses when it imports a raw (non-sparse) image.
pub const RAW_BLOCK_SIZE: u32 = 4096;

/// Bytes [`split`] keeps free in every piece, as libsparse's resparse does: the file
/// header, a trailing DONT_CARE chunk header, and a CRC32 chunk (header and value) that
/// the pieces never actually carry. Keeping the same reserve keeps the same cut points.
const PIECE_RESERVE: u64 = FILE_HEADER_LEN as u64 + 2 * CHUNK_HEADER_LEN as u64 + 4;

/// Bytes [`scan_raw`] reads at a time (a whole number of blocks).
const SCAN_BUFFER_LEN: usize = 16 * RAW_BLOCK_SIZE as usize;

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
    /// The source ended before the bytes an image or layout needs from it.
    #[error("the source ended before byte {needed}")]
    SourceEnded {
        /// Offset one past the last byte that was needed.
        needed: u64,
    },
    /// A source read was asked for bytes the cursor has already passed.
    #[error("source byte {requested} was already passed (cursor at {position}); pieces must be written once, in order")]
    SourceOrder {
        /// Offset asked for.
        requested: u64,
        /// Bytes consumed so far.
        position: u64,
    },
    /// A raw image with more blocks than a sparse header can count.
    #[error("a {0}-byte image has more blocks than a sparse header can count")]
    ImageTooLarge(u64),
    /// A [`Layout`] whose chunks are not ordered, non-empty and inside the image.
    #[error("invalid sparse layout at chunk {index}: {reason}")]
    InvalidLayout {
        /// Zero-based chunk number.
        index: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A piece limit too small for a piece to carry even one block.
    #[error("a piece limit of {limit} bytes cannot carry one block; at least {minimum} is needed")]
    PieceLimitTooSmall {
        /// The limit asked for.
        limit: u64,
        /// The smallest usable limit for this layout.
        minimum: u64,
    },
    /// A piece limit above the 32-bit sizes libsparse and the chunk format work with.
    #[error("a piece limit of {0} bytes exceeds the 4 GiB the sparse format can describe")]
    PieceLimitTooLarge(u64),
    /// [`Piece::write`] was given a layout the piece was not split from.
    #[error("the piece does not belong to this layout")]
    PieceLayoutMismatch,
    /// [`Piece::write`] was given an empty scratch buffer.
    #[error("the scratch buffer for writing a piece is empty")]
    EmptyScratch,
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
enum ChunkKind {
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
struct ChunkRecord {
    kind: ChunkKind,
    start_block: u32,
    blocks: u32,
    /// Offset of the payload from the start of the sparse file.
    payload_offset: u64,
}

/// Walks the chunk headers of a sparse stream, enforcing the rules of libsparse's reader.
///
/// The caller consumes each chunk's payload before asking for the next chunk; both
/// [`expand`] and [`scan_sparse`] go through here so they accept exactly the same files.
struct ChunkWalker {
    header: Header,
    next_index: u32,
    /// First block not yet covered by a chunk.
    block: u32,
    /// Offset of the next chunk header in the file.
    offset: u64,
}

impl ChunkWalker {
    fn new(header: Header) -> Self {
        ChunkWalker {
            header,
            next_index: 0,
            block: 0,
            offset: u64::from(header.file_hdr_sz),
        }
    }

    /// Reads the next chunk header, or checks the block count once all chunks are read.
    fn next<R: Read>(&mut self, r: &mut R) -> Result<Option<ChunkRecord>, SparseError> {
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

/// Where every block of an image comes from: the chunk list libsparse builds when it
/// imports an image, before it writes any sparse file.
///
/// Chunks are in block order and do not overlap; blocks between them are DONT_CARE.
/// Memory grows with the number of chunks only, never with the image size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Block size in bytes.
    pub blk_sz: u32,
    /// Blocks in the expanded image; every piece declares this same count.
    pub total_blks: u32,
    /// Bytes of the source the layout refers to. RAW bytes at or past this offset are the
    /// zero padding of a raw image's partial last block.
    pub source_len: u64,
    /// The chunks carrying data or a fill pattern.
    pub chunks: Vec<Chunk>,
}

/// A run of blocks with the same kind of content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// First block of the run.
    pub start_block: u32,
    /// Length of the run in blocks (non-zero).
    pub blocks: u32,
    /// What the blocks hold.
    pub data: ChunkData,
}

/// The content of a [`Chunk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkData {
    /// Bytes copied from the source, starting at `source_offset` (a raw image: the block's
    /// own offset; a sparse image: the RAW chunk's payload).
    Raw {
        /// Offset of the first byte in the source.
        source_offset: u64,
    },
    /// The little-endian 32-bit pattern repeated over every block.
    Fill(u32),
}

impl ChunkData {
    /// Payload bytes of a chunk of `blocks` blocks in a sparse file.
    fn payload_len(self, blocks: u32, blk_sz: u32) -> u64 {
        match self {
            ChunkData::Raw { .. } => u64::from(blocks) * u64::from(blk_sz),
            ChunkData::Fill(_) => 4,
        }
    }
}

impl Layout {
    /// Appends a run, merging it into the previous chunk where libsparse merges blocks:
    /// adjacent RAW runs that are contiguous in the source, adjacent FILL runs with the
    /// same pattern. (Two RAW chunks of a sparse file are never contiguous in the source,
    /// a chunk header sits between them, so they stay separate, as in libsparse.)
    fn push(&mut self, start_block: u32, blocks: u32, data: ChunkData) {
        if let Some(last) = self.chunks.last_mut() {
            let adjacent = last.start_block + last.blocks == start_block;
            let continues = match (last.data, data) {
                (ChunkData::Raw { source_offset: a }, ChunkData::Raw { source_offset: b }) => {
                    a + u64::from(last.blocks) * u64::from(self.blk_sz) == b
                }
                (ChunkData::Fill(a), ChunkData::Fill(b)) => a == b,
                _ => false,
            };
            if adjacent && continues {
                last.blocks += blocks;
                return;
            }
        }
        self.chunks.push(Chunk {
            start_block,
            blocks,
            data,
        });
    }

    /// Checks what [`split`] relies on: a usable block size and ordered, non-empty chunks
    /// inside the image.
    fn validate(&self) -> Result<(), SparseError> {
        if self.blk_sz == 0 || !self.blk_sz.is_multiple_of(4) {
            return Err(SparseError::InvalidLayout {
                index: 0,
                reason: "block size must be a non-zero multiple of 4",
            });
        }
        let mut next_free = 0u64;
        for (index, chunk) in self.chunks.iter().enumerate() {
            let bad = |reason| SparseError::InvalidLayout { index, reason };
            if chunk.blocks == 0 {
                return Err(bad("chunk has no blocks"));
            }
            if u64::from(chunk.start_block) < next_free {
                return Err(bad("chunk overlaps or precedes the previous one"));
            }
            next_free = u64::from(chunk.start_block) + u64::from(chunk.blocks);
            if next_free > u64::from(self.total_blks) {
                return Err(bad("chunk runs past the end of the image"));
            }
        }
        Ok(())
    }
}

/// Imports a raw image of `len` bytes the way libsparse does for `fastboot flash` and
/// `img2simg`: 4096-byte blocks, a whole block whose 32-bit words are all equal becomes a
/// FILL, anything else RAW (including a partial last block, which counts as a whole,
/// zero-padded block). No DONT_CARE is ever produced here.
///
/// Reads exactly `len` bytes from `r`; a shorter source is an error.
pub fn scan_raw<R: Read>(mut r: R, len: u64) -> Result<Layout, SparseError> {
    let blk = RAW_BLOCK_SIZE as usize;
    let total_blks =
        u32::try_from(len.div_ceil(blk as u64)).map_err(|_| SparseError::ImageTooLarge(len))?;
    let mut layout = Layout {
        blk_sz: RAW_BLOCK_SIZE,
        total_blks,
        source_len: len,
        chunks: Vec::new(),
    };
    let mut buf = vec![0u8; SCAN_BUFFER_LEN];
    let mut offset = 0u64;
    let mut block = 0u32;
    while offset < len {
        let n = (len - offset).min(buf.len() as u64) as usize;
        r.read_exact(&mut buf[..n])
            .map_err(|e| source_error(e, len))?;
        for data in buf[..n].chunks(blk) {
            let kind = match uniform_word(data) {
                Some(word) if data.len() == blk => ChunkData::Fill(word),
                _ => ChunkData::Raw {
                    source_offset: u64::from(block) * blk as u64,
                },
            };
            layout.push(block, 1, kind);
            block += 1;
        }
        offset += n as u64;
    }
    Ok(layout)
}

/// The 32-bit word that `block` repeats, if it consists of one repeated word.
fn uniform_word(block: &[u8]) -> Option<u32> {
    let first = block.get(..4)?;
    block
        .chunks(4)
        .all(|word| word == first)
        .then(|| le_u32(first, 0))
}

/// Reads a sparse image front to back (payloads are read past, never seeked over) and
/// returns its chunk list, validated as strictly as [`expand`] does. DONT_CARE chunks
/// become gaps, CRC32 chunks are ignored, block size and block count are kept. Chunks
/// of zero blocks carry nothing and are dropped.
pub fn scan_sparse<R: Read>(mut r: R) -> Result<Layout, SparseError> {
    let header = read_header(&mut r)?;
    let mut layout = Layout {
        blk_sz: header.blk_sz,
        total_blks: header.total_blks,
        source_len: 0,
        chunks: Vec::new(),
    };
    let mut chunks = ChunkWalker::new(header);
    while let Some(chunk) = chunks.next(&mut r)? {
        let data = match chunk.kind {
            ChunkKind::Raw => {
                skip(&mut r, u64::from(chunk.blocks) * u64::from(header.blk_sz))?;
                ChunkData::Raw {
                    source_offset: chunk.payload_offset,
                }
            }
            ChunkKind::Fill => {
                let mut pattern = [0u8; 4];
                read_full(&mut r, &mut pattern)?;
                ChunkData::Fill(u32::from_le_bytes(pattern))
            }
            ChunkKind::DontCare => continue,
            ChunkKind::Crc32 => {
                read_full(&mut r, &mut [0u8; 4])?;
                continue;
            }
        };
        if chunk.blocks > 0 {
            layout.push(chunk.start_block, chunk.blocks, data);
        }
    }
    layout.source_len = chunks.offset;
    Ok(layout)
}

/// One download for a fastboot device: a complete sparse file that describes the whole
/// image (same block size and block count as the layout) but carries only some of its
/// chunks; the blocks before, between and after them are DONT_CARE.
///
/// A piece refers to its [`Layout`] by chunk index, so it is written with the layout it
/// was split from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// Layout chunks this piece carries (the first and last possibly in part).
    chunks: Range<usize>,
    /// First block carried.
    start_block: u32,
    /// One past the last block carried.
    end_block: u32,
    /// Chunk records in the encoded piece, DONT_CARE included.
    total_chunks: u32,
    encoded_len: u64,
}

impl Piece {
    /// Exact size of the piece as [`Piece::write`] produces it, known before writing, as
    /// fastboot's `download:%08x` needs it.
    pub fn encoded_len(&self) -> u64 {
        self.encoded_len
    }

    /// Blocks from the first to the last one this piece carries: at most what writing it
    /// puts on storage.
    pub fn blocks(&self) -> u32 {
        self.end_block - self.start_block
    }

    /// One past the last block this piece carries.
    pub fn end_block(&self) -> u32 {
        self.end_block
    }

    /// Writes this piece to `out`: exactly [`Piece::encoded_len`] bytes, RAW data streamed
    /// from `src` through `scratch`. The header's image checksum is 0 and no CRC32 chunk is
    /// written, as libsparse does for fastboot.
    ///
    /// Pieces must be written in order, each once, from one [`SourceCursor`] over the
    /// same source the layout was scanned from.
    pub fn write<R: Read, W: Write>(
        &self,
        layout: &Layout,
        src: &mut SourceCursor<R>,
        out: &mut W,
        scratch: &mut [u8],
    ) -> Result<(), SparseError> {
        if scratch.is_empty() {
            return Err(SparseError::EmptyScratch);
        }
        let chunks = layout
            .chunks
            .get(self.chunks.clone())
            .ok_or(SparseError::PieceLayoutMismatch)?;
        let blk = u64::from(layout.blk_sz);
        let mut out = CountingWriter {
            inner: out,
            count: 0,
        };
        out.write_all(&Header::encode(
            layout.blk_sz,
            layout.total_blks,
            self.total_chunks,
        ))?;
        let mut next_block = 0u32;
        for chunk in chunks {
            let start = chunk.start_block.max(self.start_block);
            let end = chunk
                .start_block
                .checked_add(chunk.blocks)
                .ok_or(SparseError::PieceLayoutMismatch)?
                .min(self.end_block);
            let blocks = end
                .checked_sub(start)
                .filter(|&b| b > 0)
                .ok_or(SparseError::PieceLayoutMismatch)?;
            if start > next_block {
                write_chunk_header(&mut out, CHUNK_DONT_CARE, start - next_block, 0)?;
            }
            let payload = chunk.data.payload_len(blocks, layout.blk_sz);
            let kind = match chunk.data {
                ChunkData::Raw { .. } => CHUNK_RAW,
                ChunkData::Fill(_) => CHUNK_FILL,
            };
            write_chunk_header(&mut out, kind, blocks, payload)?;
            match chunk.data {
                ChunkData::Raw { source_offset } => {
                    let from = source_offset + u64::from(start - chunk.start_block) * blk;
                    copy_source(
                        src,
                        from..from + payload,
                        layout.source_len,
                        &mut out,
                        scratch,
                    )?;
                }
                ChunkData::Fill(pattern) => out.write_all(&pattern.to_le_bytes())?,
            }
            next_block = end;
        }
        if next_block < layout.total_blks {
            write_chunk_header(&mut out, CHUNK_DONT_CARE, layout.total_blks - next_block, 0)?;
        }
        if out.count != self.encoded_len {
            return Err(SparseError::PieceLayoutMismatch);
        }
        Ok(())
    }
}

/// Cuts `layout` into pieces of at most `max_piece_len` encoded bytes, exactly as
/// libsparse's `sparse_file_resparse` does for `fastboot flash` and `simg2simg`.
///
/// Chunks are taken in order while they fit in the budget (`max_piece_len` minus the
/// reserve of a file header, two chunk headers and a CRC value), a gap before a chunk
/// costing one DONT_CARE header. The first chunk that does not fit is cut at a block
/// boundary to fill the piece if the piece is still empty or more than 1/8 of the budget
/// is left after its header; either way the piece ends there. Like libsparse, a cut that
/// happens to take the whole final chunk still leaves one more, all-DONT_CARE piece.
///
/// Where libsparse would emit a zero-block chunk (less than one block left but more than
/// 1/8 of the budget, possible only below 32 KiB budgets) the piece simply ends instead.
/// A limit that cannot carry one RAW block is an error.
pub fn split(layout: &Layout, max_piece_len: u64) -> Result<Vec<Piece>, SparseError> {
    layout.validate()?;
    if max_piece_len > u64::from(u32::MAX) {
        return Err(SparseError::PieceLimitTooLarge(max_piece_len));
    }
    let minimum = PIECE_RESERVE + CHUNK_HEADER_LEN as u64 + u64::from(layout.blk_sz);
    if max_piece_len < minimum {
        return Err(SparseError::PieceLimitTooSmall {
            limit: max_piece_len,
            minimum,
        });
    }
    let budget = max_piece_len - PIECE_RESERVE;
    let mut pieces = Vec::new();
    // Next chunk to place, and how many of its blocks earlier pieces already carry.
    let (mut index, mut done) = (0usize, 0u32);
    loop {
        let mut piece = PieceBuilder::new(index);
        let mut cut = false;
        while let Some(chunk) = layout.chunks.get(index) {
            let start = chunk.start_block + done;
            let blocks = chunk.blocks - done;
            let cost = piece.cost(start, chunk.data.payload_len(blocks, layout.blk_sz));
            if piece.body_len + cost > budget {
                let room = budget.saturating_sub(piece.body_len + CHUNK_HEADER_LEN as u64);
                if piece.is_empty() || room > budget / 8 {
                    let fitting =
                        u32::try_from(room / u64::from(layout.blk_sz)).unwrap_or(u32::MAX);
                    let take = blocks.min(fitting);
                    if take > 0 {
                        piece.add(
                            index,
                            start,
                            take,
                            chunk.data.payload_len(take, layout.blk_sz),
                        );
                        done += take;
                        if done == chunk.blocks {
                            index += 1;
                            done = 0;
                        }
                    }
                }
                cut = true;
                break;
            }
            piece.add(
                index,
                start,
                blocks,
                chunk.data.payload_len(blocks, layout.blk_sz),
            );
            index += 1;
            done = 0;
        }
        pieces.push(piece.finish(layout.total_blks));
        if !cut {
            return Ok(pieces);
        }
    }
}

/// Accumulates one piece during [`split`], counting its encoded size as libsparse does.
struct PieceBuilder {
    first: usize,
    end: usize,
    start_block: u32,
    end_block: u32,
    total_chunks: u32,
    /// Encoded bytes after the file header, without the trailing DONT_CARE.
    body_len: u64,
}

impl PieceBuilder {
    fn new(first: usize) -> Self {
        PieceBuilder {
            first,
            end: first,
            start_block: 0,
            end_block: 0,
            total_chunks: 0,
            body_len: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.end == self.first
    }

    /// Encoded bytes a chunk with `payload` bytes starting at `start` adds to the piece.
    fn cost(&self, start: u32, payload: u64) -> u64 {
        let gap = if start > self.end_block {
            CHUNK_HEADER_LEN as u64
        } else {
            0
        };
        gap + CHUNK_HEADER_LEN as u64 + payload
    }

    fn add(&mut self, index: usize, start: u32, blocks: u32, payload: u64) {
        if self.is_empty() {
            self.start_block = start;
        }
        if start > self.end_block {
            self.total_chunks += 1;
        }
        self.body_len += self.cost(start, payload);
        self.total_chunks += 1;
        self.end_block = start + blocks;
        self.end = index + 1;
    }

    fn finish(mut self, total_blks: u32) -> Piece {
        if self.end_block < total_blks {
            self.total_chunks += 1;
            self.body_len += CHUNK_HEADER_LEN as u64;
        }
        Piece {
            chunks: self.first..self.end,
            start_block: self.start_block,
            end_block: self.end_block,
            total_chunks: self.total_chunks,
            encoded_len: FILE_HEADER_LEN as u64 + self.body_len,
        }
    }
}

/// Reads a source front to back for [`Piece::write`]: skipped bytes are read and
/// discarded rather than seeked over, so a hashing reader underneath sees every byte of
/// the source exactly once, in order.
#[derive(Debug)]
pub struct SourceCursor<R> {
    inner: R,
    position: u64,
}

impl<R: Read> SourceCursor<R> {
    /// Starts at the first byte of `inner`.
    pub fn new(inner: R) -> Self {
        SourceCursor { inner, position: 0 }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Fills `buf` from `offset`, consuming any bytes between the current position and
    /// `offset`. Offsets behind the position are an error: the source is never re-read.
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), SparseError> {
        let gap = offset
            .checked_sub(self.position)
            .ok_or(SparseError::SourceOrder {
                requested: offset,
                position: self.position,
            })?;
        let skipped = io::copy(&mut self.inner.by_ref().take(gap), &mut io::sink())?;
        self.position += skipped;
        if skipped < gap {
            return Err(SparseError::SourceEnded { needed: offset });
        }
        let end = offset + buf.len() as u64;
        self.inner
            .read_exact(buf)
            .map_err(|e| source_error(e, end))?;
        self.position = end;
        Ok(())
    }

    /// Consumes the rest of the source (bytes no piece carried, such as FILL blocks of a
    /// raw image) and returns the total number of bytes read.
    pub fn drain_to_end(&mut self) -> Result<u64, SparseError> {
        self.position += io::copy(&mut self.inner, &mut io::sink())?;
        Ok(self.position)
    }

    /// Gives back the underlying reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

/// Streams `range` of the source to `out`; bytes at or past `source_len` are zeros.
fn copy_source<R: Read, W: Write>(
    src: &mut SourceCursor<R>,
    range: Range<u64>,
    source_len: u64,
    out: &mut W,
    scratch: &mut [u8],
) -> Result<(), SparseError> {
    let data_end = range.end.min(source_len).max(range.start);
    let mut at = range.start;
    while at < data_end {
        let n = (data_end - at).min(scratch.len() as u64) as usize;
        src.read_at(at, &mut scratch[..n])?;
        out.write_all(&scratch[..n])?;
        at += n as u64;
    }
    scratch.fill(0);
    while at < range.end {
        let n = (range.end - at).min(scratch.len() as u64) as usize;
        out.write_all(&scratch[..n])?;
        at += n as u64;
    }
    Ok(())
}

fn write_chunk_header<W: Write>(
    out: &mut W,
    kind: u16,
    blocks: u32,
    payload: u64,
) -> Result<(), SparseError> {
    let total_sz = u32::try_from(CHUNK_HEADER_LEN as u64 + payload)
        .map_err(|_| SparseError::PieceLayoutMismatch)?;
    let mut header = [0u8; CHUNK_HEADER_LEN];
    header[0..2].copy_from_slice(&kind.to_le_bytes());
    header[4..8].copy_from_slice(&blocks.to_le_bytes());
    header[8..12].copy_from_slice(&total_sz.to_le_bytes());
    out.write_all(&header)?;
    Ok(())
}

/// Counts the bytes written through it, to check a piece against its announced length.
struct CountingWriter<'a, W> {
    inner: &'a mut W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Maps an early end of the source to [`SparseError::SourceEnded`].
fn source_error(e: io::Error, needed: u64) -> SparseError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => SparseError::SourceEnded { needed },
        _ => SparseError::Io(e),
    }
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
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

#[cfg(test)]
mod tests {
    use super::*;

    const BLK: usize = RAW_BLOCK_SIZE as usize;
    const MIB: usize = 1 << 20;

    /// Deterministic noise (xorshift64), so failures reproduce.
    fn noise(len: usize, mut seed: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            out.extend_from_slice(&seed.to_le_bytes());
        }
        out.truncate(len);
        out
    }

    fn pattern_block(word: [u8; 4]) -> Vec<u8> {
        word.repeat(BLK / 4)
    }

    /// Writes a device would do with a piece: data and fills land, DONT_CARE is untouched.
    struct Apply<'a>(&'a mut [u8]);

    impl RegionSink for Apply<'_> {
        fn begin(&mut self, header: &Header) -> io::Result<()> {
            assert_eq!(
                header.expanded_len(),
                self.0.len() as u64,
                "piece covers the whole image"
            );
            assert_eq!(header.image_checksum, 0);
            Ok(())
        }
        fn data(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
            self.0[offset as usize..][..bytes.len()].copy_from_slice(bytes);
            Ok(())
        }
        fn fill(&mut self, offset: u64, len: u64, pattern: [u8; 4]) -> io::Result<()> {
            for word in self.0[offset as usize..][..len as usize].chunks_mut(4) {
                word.copy_from_slice(&pattern);
            }
            Ok(())
        }
        fn skip(&mut self, _: u64, _: u64) -> io::Result<()> {
            Ok(())
        }
    }

    /// Counts what the cursor pulls from the source.
    struct Counted<'a> {
        data: &'a [u8],
        read: u64,
    }

    impl Read for Counted<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.data.read(buf)?;
            self.read += n as u64;
            Ok(n)
        }
    }

    /// Writes every piece in order, checking announced lengths and that the source is read
    /// exactly once.
    fn write_pieces(layout: &Layout, pieces: &[Piece], source: &[u8]) -> Vec<Vec<u8>> {
        let mut src = SourceCursor::new(Counted {
            data: source,
            read: 0,
        });
        let mut scratch = vec![0u8; 3000]; // deliberately not a block multiple
        let files: Vec<Vec<u8>> = pieces
            .iter()
            .map(|piece| {
                let mut out = Vec::new();
                piece
                    .write(layout, &mut src, &mut out, &mut scratch)
                    .unwrap();
                assert_eq!(out.len() as u64, piece.encoded_len());
                out
            })
            .collect();
        assert_eq!(src.drain_to_end().unwrap(), source.len() as u64);
        assert_eq!(src.into_inner().read, source.len() as u64);
        files
    }

    /// Applies all pieces over a zeroed partition.
    fn apply(files: &[Vec<u8>], expanded_len: usize) -> Vec<u8> {
        let mut partition = vec![0u8; expanded_len];
        for file in files {
            expand(&file[..], &mut Apply(&mut partition)).unwrap();
        }
        partition
    }

    /// (type, chunk_sz) of every chunk in a sparse file.
    fn chunk_list(file: &[u8]) -> Vec<(u16, u32)> {
        let mut out = Vec::new();
        let mut at = FILE_HEADER_LEN;
        while at < file.len() {
            let kind = u16::from_le_bytes([file[at], file[at + 1]]);
            out.push((kind, le_u32(file, at + 4)));
            at += le_u32(file, at + 8) as usize;
        }
        assert_eq!(out.len() as u32, le_u32(file, 20), "total_chunks matches");
        out
    }

    fn raw(start_block: u32, blocks: u32, source_offset: u64) -> Chunk {
        Chunk {
            start_block,
            blocks,
            data: ChunkData::Raw { source_offset },
        }
    }

    fn fill(start_block: u32, blocks: u32, value: u32) -> Chunk {
        Chunk {
            start_block,
            blocks,
            data: ChunkData::Fill(value),
        }
    }

    /// A layout over `total_blks` blocks whose RAW chunks read the source at block offsets.
    fn layout(total_blks: u32, chunks: Vec<Chunk>) -> Layout {
        Layout {
            blk_sz: RAW_BLOCK_SIZE,
            total_blks,
            source_len: u64::from(total_blks) * BLK as u64,
            chunks,
        }
    }

    fn block_ranges(pieces: &[Piece]) -> Vec<Range<u32>> {
        pieces.iter().map(|p| p.start_block..p.end_block).collect()
    }

    #[test]
    fn scan_raw_finds_fill_blocks_and_merges_runs() {
        let p = [1, 2, 3, 4];
        let mut image = Vec::new();
        image.extend(vec![0u8; 2 * BLK]);
        image.extend(pattern_block(p));
        image.extend(noise(2 * BLK, 1));
        image.extend(pattern_block(p));
        image.extend(pattern_block([9, 9, 9, 8]));
        image.extend(vec![0u8; BLK + 100]); // whole zero block, then a partial one
        let layout = scan_raw(&image[..], image.len() as u64).unwrap();
        assert_eq!(layout.blk_sz, 4096);
        assert_eq!(layout.total_blks, 9);
        assert_eq!(layout.source_len, image.len() as u64);
        assert_eq!(
            layout.chunks,
            vec![
                fill(0, 2, 0),
                fill(2, 1, 0x0403_0201),
                raw(3, 2, 3 * BLK as u64),
                fill(5, 1, 0x0403_0201),
                fill(6, 1, 0x0809_0909),
                fill(7, 1, 0),
                // libsparse never turns a partial block into FILL, even all zeros.
                raw(8, 1, 8 * BLK as u64),
            ]
        );
    }

    #[test]
    fn scan_raw_reads_exactly_len_bytes() {
        let image = noise(3 * BLK + 10, 2);
        let mut src = io::Cursor::new(&image);
        let layout = scan_raw(&mut src, 2 * BLK as u64).unwrap();
        assert_eq!(src.position(), 2 * BLK as u64);
        assert_eq!(layout.chunks, vec![raw(0, 2, 0)]);

        let err = scan_raw(&image[..], image.len() as u64 + 1).unwrap_err();
        assert!(
            matches!(err, SparseError::SourceEnded { needed } if needed == image.len() as u64 + 1)
        );
    }

    #[test]
    fn scan_raw_of_empty_image() {
        let layout = scan_raw(&[][..], 0).unwrap();
        assert_eq!((layout.total_blks, layout.chunks.len()), (0, 0));
        let pieces = split(&layout, MIB as u64).unwrap();
        let files = write_pieces(&layout, &pieces, &[]);
        assert_eq!(files, vec![Header::encode(4096, 0, 0).to_vec()]);
    }

    /// protocols.md §1.6: what Google's client sent for 3 MiB noise + 2 MiB zeros at 1 MiB.
    #[test]
    fn split_matches_the_observed_fastboot_pieces() {
        let mut image = noise(3 * MIB, 3);
        image.extend(vec![0u8; 2 * MIB]);
        let layout = scan_raw(&image[..], image.len() as u64).unwrap();
        let pieces = split(&layout, MIB as u64).unwrap();
        let lens: Vec<u64> = pieces.iter().map(Piece::encoded_len).collect();
        assert_eq!(lens, vec![0xff034, 0xff040, 0xff040, 0x3044]);
        let files = write_pieces(&layout, &pieces, &image);
        let lists: Vec<_> = files.iter().map(|f| chunk_list(f)).collect();
        assert_eq!(
            lists,
            vec![
                vec![(CHUNK_RAW, 255), (CHUNK_DONT_CARE, 1025)],
                vec![
                    (CHUNK_DONT_CARE, 255),
                    (CHUNK_RAW, 255),
                    (CHUNK_DONT_CARE, 770)
                ],
                vec![
                    (CHUNK_DONT_CARE, 510),
                    (CHUNK_RAW, 255),
                    (CHUNK_DONT_CARE, 515)
                ],
                vec![(CHUNK_DONT_CARE, 765), (CHUNK_RAW, 3), (CHUNK_FILL, 512)],
            ]
        );
        assert_eq!(apply(&files, image.len()), image);
    }

    #[test]
    fn a_chunk_that_exactly_fits_stays_whole() {
        let layout = layout(10, vec![raw(0, 10, 0)]);
        let exact = PIECE_RESERVE + 12 + 10 * BLK as u64;
        let pieces = split(&layout, exact).unwrap();
        assert_eq!(block_ranges(&pieces), vec![0..10]);
        assert_eq!(pieces[0].encoded_len(), 28 + 12 + 10 * BLK as u64);

        let pieces = split(&layout, exact - 1).unwrap();
        assert_eq!(block_ranges(&pieces), vec![0..9, 9..10]);
        let image = noise(10 * BLK, 4);
        assert_eq!(
            apply(&write_pieces(&layout, &pieces, &image), image.len()),
            image
        );
    }

    #[test]
    fn the_next_chunk_is_cut_only_when_more_than_an_eighth_is_left() {
        // 11 RAW blocks, a one-block gap, then 5 RAW blocks. After the first chunk
        // (12 + 11 blocks) and the second's header plus gap header (24), a budget of 51520
        // leaves exactly budget/8 = 6440 bytes: not enough to cut, the piece closes.
        let layout = layout(17, vec![raw(0, 11, 0), raw(12, 5, 12 * BLK as u64)]);
        let budget = 51_520;
        let pieces = split(&layout, PIECE_RESERVE + budget).unwrap();
        assert_eq!(block_ranges(&pieces), vec![0..11, 12..17]);
        // Eight bytes more leave 6448 > 6441: one block of the second chunk is cut off.
        let pieces = split(&layout, PIECE_RESERVE + budget + 8).unwrap();
        assert_eq!(block_ranges(&pieces), vec![0..13, 13..17]);
        let image = noise(17 * BLK, 5);
        let mut expected = image.clone();
        expected[11 * BLK..12 * BLK].fill(0); // the gap is DONT_CARE
        for pieces in [
            &pieces[..],
            &split(&layout, PIECE_RESERVE + budget).unwrap()[..],
        ] {
            let files = write_pieces(&layout, pieces, &image);
            for (file, piece) in files.iter().zip(pieces) {
                assert!(file.len() as u64 <= PIECE_RESERVE + budget + 8);
                assert_eq!(file.len() as u64, piece.encoded_len());
            }
            assert_eq!(apply(&files, image.len()), expected);
        }
    }

    #[test]
    fn a_cut_that_takes_the_last_chunk_whole_still_ends_the_piece() {
        // The gap header makes the chunk "not fit" by up to 12 bytes although its blocks
        // do; libsparse then takes it whole and still emits one more, empty, piece.
        let layout = layout(4, vec![raw(1, 3, BLK as u64)]);
        let limit = PIECE_RESERVE + 12 + 3 * BLK as u64 + 11;
        let pieces = split(&layout, limit).unwrap();
        assert_eq!(block_ranges(&pieces), vec![1..4, 0..0]);
        let image = noise(4 * BLK, 6);
        let files = write_pieces(&layout, &pieces, &image);
        assert_eq!(
            chunk_list(&files[0]),
            vec![(CHUNK_DONT_CARE, 1), (CHUNK_RAW, 3)]
        );
        assert_eq!(chunk_list(&files[1]), vec![(CHUNK_DONT_CARE, 4)]);
    }

    #[test]
    fn fill_chunks_cost_sixteen_bytes() {
        // Three chunks: RAW 1, FILL 1000 blocks, RAW 1. Budget for RAW + FILL exactly.
        let layout = layout(
            1002,
            vec![
                raw(0, 1, 0),
                fill(1, 1000, 7),
                raw(1001, 1, 1001 * BLK as u64),
            ],
        );
        let budget = (12 + BLK as u64) + 16;
        let pieces = split(&layout, PIECE_RESERVE + budget).unwrap();
        assert_eq!(pieces[0].end_block, 1001);
        assert_eq!(pieces[0].encoded_len(), 28 + 12 + BLK as u64 + 16 + 12);
    }

    #[test]
    fn limits_that_cannot_carry_a_block_are_rejected() {
        let layout = layout(4, vec![raw(0, 4, 0)]);
        let minimum = PIECE_RESERVE + 12 + BLK as u64;
        let err = split(&layout, minimum - 1).unwrap_err();
        assert!(
            matches!(err, SparseError::PieceLimitTooSmall { limit, minimum: m } if limit == minimum - 1 && m == minimum)
        );
        let pieces = split(&layout, minimum).unwrap();
        // The last block "does not fit" by its gap header, so a last empty piece follows.
        assert_eq!(block_ranges(&pieces), vec![0..1, 1..2, 2..3, 3..4, 0..0]);
        assert!(pieces.iter().all(|p| p.encoded_len() <= minimum));
        let err = split(&layout, u64::from(u32::MAX) + 1).unwrap_err();
        assert!(matches!(err, SparseError::PieceLimitTooLarge(_)));
    }

    #[test]
    fn malformed_layouts_are_rejected() {
        let overlapping = layout(8, vec![raw(0, 4, 0), raw(3, 2, 0)]);
        let past_end = layout(8, vec![raw(6, 4, 0)]);
        let empty_chunk = layout(8, vec![raw(0, 0, 0)]);
        for bad in [overlapping, past_end, empty_chunk] {
            assert!(matches!(
                split(&bad, MIB as u64),
                Err(SparseError::InvalidLayout { .. })
            ));
        }
    }

    /// A sparse file with leading and inner DONT_CARE, mergeable FILLs, adjacent RAW
    /// chunks and a CRC32 chunk.
    fn handmade_sparse(data: &[u8]) -> Vec<u8> {
        let mut file = Header::encode(4096, 20, 9).to_vec();
        let mut chunk = |kind: u16, blocks: u32, payload: &[u8]| {
            write_chunk_header(&mut file, kind, blocks, payload.len() as u64).unwrap();
            file.extend_from_slice(payload);
        };
        chunk(CHUNK_DONT_CARE, 2, &[]);
        chunk(CHUNK_RAW, 3, &data[..3 * BLK]);
        chunk(CHUNK_FILL, 2, &0xdead_beef_u32.to_le_bytes());
        chunk(CHUNK_FILL, 1, &0xdead_beef_u32.to_le_bytes());
        chunk(CHUNK_DONT_CARE, 4, &[]);
        chunk(CHUNK_CRC32, 0, &[1, 2, 3, 4]);
        chunk(CHUNK_RAW, 1, &data[3 * BLK..4 * BLK]);
        chunk(CHUNK_RAW, 2, &data[4 * BLK..6 * BLK]);
        chunk(CHUNK_FILL, 5, &[0; 4]);
        file
    }

    #[test]
    fn scan_sparse_keeps_gaps_and_merges_like_libsparse() {
        let data = noise(6 * BLK, 7);
        let file = handmade_sparse(&data);
        let layout = scan_sparse(&file[..]).unwrap();
        let first_raw = (28 + 12 + 12) as u64;
        let second_raw = first_raw + 3 * BLK as u64 + 16 + 16 + 12 + 16 + 12;
        assert_eq!(layout.total_blks, 20);
        assert_eq!(layout.source_len, file.len() as u64);
        assert_eq!(
            layout.chunks,
            vec![
                raw(2, 3, first_raw),
                fill(5, 3, 0xdead_beef),
                raw(12, 1, second_raw),
                raw(13, 2, second_raw + BLK as u64 + 12),
                fill(15, 5, 0),
            ]
        );

        let mut whole = vec![0u8; 20 * BLK];
        expand(&file[..], &mut Apply(&mut whole)).unwrap();
        for limit in [
            PIECE_RESERVE + 12 + BLK as u64,
            3 * BLK as u64,
            5 * BLK as u64,
            MIB as u64,
        ] {
            let pieces = split(&layout, limit).unwrap();
            let files = write_pieces(&layout, &pieces, &file);
            assert!(files.iter().all(|f| f.len() as u64 <= limit));
            assert_eq!(apply(&files, whole.len()), whole, "limit {limit}");
        }
    }

    #[test]
    fn scan_sparse_rejects_what_expand_rejects() {
        let data = noise(6 * BLK, 8);
        let mut file = handmade_sparse(&data);
        file[16] = 21; // total_blks one more than the chunks cover
        assert!(matches!(
            scan_sparse(&file[..]),
            Err(SparseError::BlockCountMismatch { .. })
        ));
        let file = handmade_sparse(&data);
        assert!(matches!(
            scan_sparse(&file[..file.len() - 1]),
            Err(SparseError::Truncated)
        ));
    }

    #[test]
    fn random_layouts_split_within_the_limit_and_reproduce_the_image() {
        let mut seed = 0x5eed_u64;
        for round in 0..40 {
            let choices = noise(64, seed);
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(round);
            let mut chunks = Vec::new();
            let mut block = 0u32;
            for pair in choices.chunks(2) {
                let blocks = 1 + u32::from(pair[0] % 40);
                block += u32::from(pair[1] % 3); // sometimes a gap
                chunks.push(match pair[1] % 4 {
                    0 => fill(block, blocks, u32::from(pair[0])),
                    _ => raw(block, blocks, u64::from(block) * BLK as u64),
                });
                block += blocks;
            }
            let layout = layout(block + 2, chunks);
            let image = noise((block as usize + 2) * BLK, seed | 1);
            let mut expected = vec![0u8; image.len()];
            for chunk in &layout.chunks {
                let range = chunk.start_block as usize * BLK
                    ..(chunk.start_block + chunk.blocks) as usize * BLK;
                match chunk.data {
                    ChunkData::Raw { .. } => expected[range.clone()].copy_from_slice(&image[range]),
                    ChunkData::Fill(v) => expected[range]
                        .chunks_mut(4)
                        .for_each(|w| w.copy_from_slice(&v.to_le_bytes())),
                }
            }
            let limit = PIECE_RESERVE + 12 + BLK as u64 + u64::from(choices[0]) * 997;
            let pieces = split(&layout, limit).unwrap();
            let files = write_pieces(&layout, &pieces, &image);
            assert!(
                files.iter().all(|f| f.len() as u64 <= limit),
                "round {round}"
            );
            assert_eq!(apply(&files, image.len()), expected, "round {round}");
        }
    }

    #[test]
    fn the_cursor_never_goes_back() {
        let data = noise(100, 9);
        let mut src = SourceCursor::new(&data[..]);
        let mut buf = [0u8; 10];
        src.read_at(20, &mut buf).unwrap();
        assert_eq!(buf, data[20..30]);
        assert_eq!(src.position(), 30);
        assert!(matches!(
            src.read_at(25, &mut buf),
            Err(SparseError::SourceOrder {
                requested: 25,
                position: 30
            })
        ));
        assert!(matches!(
            src.read_at(95, &mut buf),
            Err(SparseError::SourceEnded { needed: 105 })
        ));
    }

    #[test]
    fn pieces_are_written_once_in_order_from_their_own_layout() {
        let image = noise(8 * BLK, 10);
        let layout = scan_raw(&image[..], image.len() as u64).unwrap();
        let pieces = split(&layout, PIECE_RESERVE + 24 + 4 * BLK as u64).unwrap();
        assert_eq!(block_ranges(&pieces), vec![0..4, 4..8]);
        let mut scratch = [0u8; 512];
        let mut src = SourceCursor::new(&image[..]);
        let mut sink = io::sink();
        pieces[1]
            .write(&layout, &mut src, &mut sink, &mut scratch)
            .unwrap();
        assert!(matches!(
            pieces[0].write(&layout, &mut src, &mut sink, &mut scratch),
            Err(SparseError::SourceOrder { .. })
        ));

        let other = scan_raw(&image[..BLK], BLK as u64).unwrap();
        let mut src = SourceCursor::new(&image[..]);
        assert!(matches!(
            pieces[1].write(&other, &mut src, &mut sink, &mut scratch),
            Err(SparseError::PieceLayoutMismatch)
        ));
        assert!(matches!(
            pieces[0].write(&layout, &mut src, &mut sink, &mut []),
            Err(SparseError::EmptyScratch)
        ));
    }

    #[test]
    fn a_partial_last_block_is_padded_with_zeros() {
        let image = noise(3 * BLK + 5, 11);
        let layout = scan_raw(&image[..], image.len() as u64).unwrap();
        let pieces = split(&layout, PIECE_RESERVE + 12 + 2 * BLK as u64 + 12).unwrap();
        assert_eq!(block_ranges(&pieces), vec![0..2, 2..4]);
        let files = write_pieces(&layout, &pieces, &image);
        let mut expected = image.clone();
        expected.resize(4 * BLK, 0);
        assert_eq!(apply(&files, 4 * BLK), expected);
    }
}
