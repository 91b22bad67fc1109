//! Cutting a [`Layout`] into [`Piece`]s that fit a device's download limit, and writing
//! each piece while reading the source once, in order. Separate from the format reader.

use std::io::{self, Read, Write};
use std::ops::Range;

use super::*;

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
    pub(super) start_block: u32,
    /// One past the last block carried.
    pub(super) end_block: u32,
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

pub(super) fn write_chunk_header<W: Write>(
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
pub(super) fn source_error(e: io::Error, needed: u64) -> SparseError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => SparseError::SourceEnded { needed },
        _ => SparseError::Io(e),
    }
}
