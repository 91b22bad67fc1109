//! Writing an image over Firehose when its package signs the hash of every block: only
//! the blocks the device does not already hold are sent.
//!
//! Before a range is programmed, the programmer is asked for the SHA-256 of each
//! block-sized sub-range (`<getsha256digest>`; the chunk is the image's signed block size,
//! 1 MiB for images up to 2 GiB, see [`crate::hashing::BlockHashes::signed_block_size`]).
//! A sub-range whose digest equals the block's signed hash already holds the signed bytes
//! and is skipped: the image is not even read there. Runs of blocks the signature says are
//! all zeros are erased instead of written, and then checked by digest: storage whose erase
//! does not read back as zeros gets zeros written instead. A programmer without the digest
//! command gets everything written, as before.

use std::io::{self, Read};

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::hashing::{BlockHashes, HashingReader};

/// What a write left out, for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Bytes the device already held (its digest of the sub-range equalled the block's
    /// signed hash): neither read from the package nor sent.
    pub equal_bytes: u64,
    /// Bytes of all-zero blocks erased instead of written (the erase checked by digest).
    pub erased_bytes: u64,
    /// Bytes sent.
    pub written_bytes: u64,
    /// The size of the sub-ranges compared, in bytes.
    pub chunk_bytes: u64,
    /// Why nothing, or this much, was skipped.
    pub why: String,
}

/// What to do with one block of the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    /// The device holds it already.
    Keep,
    /// All zeros: erase.
    Erase,
    /// Send it.
    Write,
}

/// Consecutive blocks with the same action: `(action, first block, block count)`.
pub(super) fn runs(actions: &[Action]) -> Vec<(Action, usize, usize)> {
    let mut out: Vec<(Action, usize, usize)> = Vec::new();
    for (i, &action) in actions.iter().enumerate() {
        match out.last_mut() {
            Some((a, _, n)) if *a == action => *n += 1,
            _ => out.push((action, i, 1)),
        }
    }
    out
}

/// The SHA-256 of `len` zero bytes.
pub(super) fn zeros_sha256(len: u64) -> [u8; 32] {
    let mut hasher = Sha256::new();
    let zeros = [0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        hasher.update(&zeros[..n]);
        left -= n as u64;
    }
    hasher.finalize().into()
}

/// Which whole blocks of `blocks` the signature says are all zeros.
pub(super) fn zero_blocks(blocks: &BlockHashes, image_len: u64) -> Vec<bool> {
    let block = blocks.block() as u64;
    let zero = zeros_sha256(block);
    blocks
        .hashes()
        .iter()
        .enumerate()
        .map(|(i, hash)| (i as u64 + 1) * block <= image_len && *hash == zero)
        .collect()
}

/// The bytes one run programs: image bytes from its first block, then zeros up to the
/// run's end (the padding of the range's last sector), hashed as they pass.
pub(super) fn run_bytes<'a>(
    image: Box<dyn Read + Send + 'a>,
    image_bytes: u64,
    total: u64,
) -> HashingReader<impl Read + 'a> {
    HashingReader::new(
        image
            .take(image_bytes)
            .chain(io::repeat(0).take(total - image_bytes)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_group_equal_actions() {
        use Action::*;
        assert_eq!(
            runs(&[Keep, Keep, Write, Erase, Erase, Write]),
            vec![(Keep, 0, 2), (Write, 2, 1), (Erase, 3, 2), (Write, 5, 1)]
        );
        assert!(runs(&[]).is_empty());
    }

    #[test]
    fn zero_blocks_are_known_from_their_hashes() {
        let block = 4096;
        let zero = zeros_sha256(block as u64);
        let other = [1u8; 32];
        let blocks = BlockHashes::new(block, vec![zero, other, zero]);
        // The last block is partial (the image ends inside it): never erased.
        assert_eq!(
            zero_blocks(&blocks, 3 * 4096 - 10),
            vec![true, false, false]
        );
        assert_eq!(
            zeros_sha256(100_000),
            <[u8; 32]>::from(Sha256::digest(vec![0u8; 100_000]))
        );
    }
}
