//! [`Layout`]: where every block of an image comes from, and the scanners that build it
//! from a raw or a sparse source. Separate because splitting needs only the result.

use std::io::Read;

use super::*;

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
    pub(super) fn payload_len(self, blocks: u32, blk_sz: u32) -> u64 {
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
    pub(super) fn validate(&self) -> Result<(), SparseError> {
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
pub fn scan_sparse<R: Read>(r: R) -> Result<Layout, SparseError> {
    let mut tape = Tape::new(r, false);
    scan_sparse_from(&mut tape)
}

/// [`scan_sparse`] over `tape`, which records the bytes read outside RAW payloads if it
/// was asked to: the bytes that decide the layout ([`Structure`]).
pub(super) fn scan_sparse_from<R: Read>(tape: &mut Tape<R>) -> Result<Layout, SparseError> {
    let header = read_header(tape)?;
    let mut layout = Layout {
        blk_sz: header.blk_sz,
        total_blks: header.total_blks,
        source_len: 0,
        chunks: Vec::new(),
    };
    let mut chunks = ChunkWalker::new(header);
    while let Some(chunk) = chunks.next(tape)? {
        let data = match chunk.kind {
            ChunkKind::Raw => {
                tape.payload(|r| skip(r, u64::from(chunk.blocks) * u64::from(header.blk_sz)))?;
                ChunkData::Raw {
                    source_offset: chunk.payload_offset,
                }
            }
            ChunkKind::Fill => {
                let mut pattern = [0u8; 4];
                read_full(tape, &mut pattern)?;
                ChunkData::Fill(u32::from_le_bytes(pattern))
            }
            ChunkKind::DontCare => continue,
            ChunkKind::Crc32 => {
                read_full(tape, &mut [0u8; 4])?;
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
