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

use std::io;

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

mod format;
mod layout;
mod split;
mod structure;
#[cfg(test)]
mod tests;

pub use format::*;
pub use layout::*;
pub use split::*;
pub use structure::*;
