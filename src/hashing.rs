//! Readers and writers that hash what passes through them.
//!
//! flashline checks the bytes it actually moved, not a file it read earlier: wrapping the
//! pipe in one of these gives the SHA-256 of exactly those bytes.

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

/// Hashes every byte read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// The SHA-256 of everything read so far.
    pub fn finish(self) -> [u8; 32] {
        self.hasher.finalize().into()
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Hashes every byte written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// The inner writer and the SHA-256 of everything written.
    pub fn finish(self) -> (W, [u8; 32]) {
        (self.inner, self.hasher.finalize().into())
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The SHA-256 of each block of a stream, recorded on one pass so that a later pass over
/// the same file can prove, block by block, that it reads the same bytes.
///
/// An image sent in several pieces is committed piece by piece; a single whole-file hash
/// would only be known after the last one. Block hashes taken while the whole file was
/// checked against its signature let every piece be checked before it is sent.
#[derive(Debug, Clone)]
pub struct BlockHashes {
    block: usize,
    hashes: Vec<[u8; 32]>,
}

impl BlockHashes {
    /// At most this many blocks are recorded, whatever the stream's length.
    const MAX_BLOCKS: u64 = 65_536;
    /// The smallest block: large enough that hashing per block costs nothing extra.
    const MIN_BLOCK: u64 = 1024 * 1024;
    /// Signed block lists aim at no more blocks than this per image, so that the hashes of
    /// a whole build stay well inside the signed manifest's size cap.
    const SIGNED_BLOCKS: u64 = 2048;

    /// The block size used for a stream of `len` bytes.
    pub fn block_size(len: u64) -> usize {
        let block = len.div_ceil(Self::MAX_BLOCKS).max(Self::MIN_BLOCK);
        usize::try_from(block.next_multiple_of(Self::MIN_BLOCK)).unwrap_or(usize::MAX)
    }

    /// The block size a package records for an image of `len` bytes: 1 MiB, doubled until
    /// the image has at most 2048 blocks (2 MiB from 2 GiB on, 4 MiB from 4 GiB on).
    ///
    /// A power of two from 1 MiB on, so every block is a whole number of 4096-byte sparse
    /// blocks and of 512- or 4096-byte sectors, and is a whole number of the 1 MiB
    /// Firehose payloads flashline asks for: a block can be checked before any of it
    /// leaves whichever way the image is cut, and an EDL device's digest of the matching
    /// sub-range can be compared with the signed hash itself.
    pub fn signed_block_size(len: u64) -> u32 {
        let mut block = Self::MIN_BLOCK;
        while len.div_ceil(block) > Self::SIGNED_BLOCKS && block < (1 << 30) {
            block *= 2;
        }
        block as u32
    }

    /// Hashes recorded elsewhere (a signed manifest), `block` bytes each.
    pub fn new(block: usize, hashes: Vec<[u8; 32]>) -> Self {
        BlockHashes {
            block: block.max(1),
            hashes,
        }
    }

    /// Bytes per block (the last block of a stream may be shorter).
    pub fn block(&self) -> usize {
        self.block
    }

    /// The hash of every block, in order.
    pub fn hashes(&self) -> &[[u8; 32]] {
        &self.hashes
    }
}

/// Takes the [`BlockHashes`] of a stream fed to it piece by piece.
#[derive(Clone)]
pub struct BlockDigests {
    block: usize,
    filled: usize,
    hasher: Sha256,
    hashes: Vec<[u8; 32]>,
}

impl BlockDigests {
    /// Hashes in blocks of `block` bytes.
    pub fn new(block: usize) -> Self {
        BlockDigests {
            block: block.max(1),
            filled: 0,
            hasher: Sha256::new(),
            hashes: Vec::new(),
        }
    }

    /// Takes in the next bytes of the stream.
    pub fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let take = bytes.len().min(self.block - self.filled);
            self.hasher.update(&bytes[..take]);
            self.filled += take;
            bytes = &bytes[take..];
            if self.filled == self.block {
                self.hashes.push(self.hasher.finalize_reset().into());
                self.filled = 0;
            }
        }
    }

    /// The hashes of everything taken in (the last block may be short).
    pub fn finish(mut self) -> BlockHashes {
        if self.filled > 0 {
            self.hashes.push(self.hasher.finalize_reset().into());
        }
        BlockHashes {
            block: self.block,
            hashes: self.hashes,
        }
    }
}

/// Records the [`BlockHashes`] of everything read through it.
pub struct BlockHasher<R> {
    inner: R,
    digests: BlockDigests,
}

impl<R> BlockHasher<R> {
    /// Wraps `inner`, hashing in blocks of `block` bytes.
    pub fn new(inner: R, block: usize) -> Self {
        BlockHasher {
            inner,
            digests: BlockDigests::new(block),
        }
    }

    /// The inner reader and the hashes of everything read (the last block may be short).
    pub fn finish(self) -> (R, BlockHashes) {
        (self.inner, self.digests.finish())
    }
}

impl<R: Read> Read for BlockHasher<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digests.update(&buf[..n]);
        Ok(n)
    }
}

/// Passes on the bytes of `inner` only a whole block at a time, each after its SHA-256 was
/// found equal to the one recorded by a [`BlockHasher`]: no byte that differs from the
/// earlier pass ever leaves it.
pub struct BlockVerifier<R> {
    inner: R,
    expected: BlockHashes,
    buf: Vec<u8>,
    pos: usize,
    next: usize,
    hashed: u64,
}

impl<R: Read> BlockVerifier<R> {
    /// Wraps `inner`, which must read the same bytes as the pass that recorded `expected`.
    pub fn new(inner: R, expected: BlockHashes) -> Self {
        Self::from_block(inner, expected, 0)
    }

    /// Wraps `inner`, which starts at block `first` of the stream `expected` describes.
    pub fn from_block(inner: R, expected: BlockHashes, first: usize) -> Self {
        BlockVerifier {
            inner,
            expected,
            buf: Vec::new(),
            pos: 0,
            next: first,
            hashed: 0,
        }
    }

    /// Bytes hashed so far: each byte read is hashed once, whole blocks at a time.
    pub fn hashed(&self) -> u64 {
        self.hashed
    }

    /// Whether every block was read and matched, and nothing followed the last one.
    pub fn is_complete(&self) -> bool {
        self.next == self.expected.hashes.len() && self.pos == self.buf.len()
    }

    /// Fills `out` with the next block and checks it; returns its length (0 at the end).
    fn next_block(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < out.len() {
            match self.inner.read(&mut out[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let start = self.next as u64 * self.expected.block as u64;
        if self.expected.hashes.get(self.next).is_some() {
            self.hashed += filled as u64;
        }
        let changed = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the image changed since it was verified: {what} at byte {start}"),
            )
        };
        match self.expected.hashes.get(self.next) {
            None if filled == 0 => Ok(0),
            None => Err(changed("it is longer than it was")),
            Some(_) if filled == 0 => Err(changed("it is shorter than it was")),
            Some(hash) if *hash != <[u8; 32]>::from(Sha256::digest(&out[..filled])) => {
                Err(changed("a block differs"))
            }
            Some(_) => {
                self.next += 1;
                Ok(filled)
            }
        }
    }
}

impl<R: Read> Read for BlockVerifier<R> {
    /// A caller whose buffer holds a whole block gets it checked in place, uncopied; other
    /// reads are served from one checked block kept here.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            if buf.len() >= self.expected.block {
                let block = self.expected.block;
                return self.next_block(&mut buf[..block]);
            }
            let mut block = std::mem::take(&mut self.buf);
            block.resize(self.expected.block, 0);
            let result = self.next_block(&mut block);
            block.truncate(*result.as_ref().unwrap_or(&0));
            self.buf = block;
            self.pos = 0;
            result?;
        }
        let n = buf.len().min(self.buf.len() - self.pos);
        buf[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_what_passes() {
        let mut r = HashingReader::new(&b"abc"[..]);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        let expected: [u8; 32] = Sha256::digest(b"abc").into();
        assert_eq!(r.finish(), expected);
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"abc").unwrap();
        let (bytes, digest) = w.finish();
        assert_eq!((bytes.as_slice(), digest), (&b"abc"[..], expected));
    }

    fn blocks_of(data: &[u8], block: usize) -> BlockHashes {
        let mut hasher = BlockHasher::new(data, block);
        io::copy(&mut hasher, &mut io::sink()).unwrap();
        hasher.finish().1
    }

    #[test]
    fn the_same_bytes_pass_block_verification() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let mut out = Vec::new();
        BlockVerifier::new(&data[..], blocks_of(&data, 4096))
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn no_byte_of_a_changed_block_is_passed_on() {
        let data = vec![5u8; 10_000];
        let blocks = blocks_of(&data, 4096);
        let mut changed = data.clone();
        changed[5000] ^= 1;
        let mut v = BlockVerifier::new(&changed[..], blocks.clone());
        let mut out = vec![0u8; 4096];
        v.read_exact(&mut out).unwrap();
        let err = v.read(&mut out).unwrap_err();
        assert!(
            err.to_string().contains("block differs at byte 4096"),
            "{err}"
        );
        let aligned = vec![5u8; 8192];
        let blocks = blocks_of(&aligned, 4096);
        let longer = [&aligned[..], b"x"].concat();
        for (other, what) in [(&aligned[..4096], "shorter"), (&longer[..], "longer")] {
            let err = BlockVerifier::new(other, blocks.clone())
                .read_to_end(&mut Vec::new())
                .unwrap_err();
            assert!(err.to_string().contains(what), "{err}");
        }
    }

    #[test]
    fn block_sizes_bound_the_number_of_hashes() {
        assert_eq!(BlockHashes::block_size(10), 1024 * 1024);
        let huge = 1u64 << 40;
        assert!(huge.div_ceil(BlockHashes::block_size(huge) as u64) <= BlockHashes::MAX_BLOCKS);
    }
}
