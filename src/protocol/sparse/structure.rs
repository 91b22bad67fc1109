//! Planning a sparse image from unchecked bytes and proving the plan on the checked ones.
//!
//! A sparse image's [`Layout`] is decided by the bytes outside its RAW payloads only: the
//! file header, the chunk headers, FILL patterns and CRC32 values. Reading it twice (once
//! to plan, once to send) would hash every byte twice. Instead, [`scan_sparse_structure`]
//! plans from a reader nobody trusts and keeps those few bytes ([`Structure`]); the send
//! pass, which checks every block against its signed hash anyway, runs through a
//! [`StructureCheck`] that compares them as they pass. Parsing reads only those bytes, at
//! offsets they themselves decide, so equal bytes mean an equal layout, and a sender that
//! has read up to [`Layout::records_before`] knows the plan is right that far.

use std::io::{self, Read};

use super::*;

/// The bytes of a sparse image outside its RAW payloads, by offset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Structure {
    /// Runs of recorded bytes: offset in the image, and start in `bytes`; in order, never
    /// adjacent (adjacent runs are merged).
    runs: Vec<(u64, usize)>,
    bytes: Vec<u8>,
}

impl Structure {
    /// Bytes recorded in all.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn push(&mut self, offset: u64, bytes: &[u8]) {
        let end_of_last = self
            .runs
            .last()
            .map(|&(at, start)| at + (self.bytes.len() - start) as u64);
        if end_of_last != Some(offset) {
            self.runs.push((offset, self.bytes.len()));
        }
        self.bytes.extend_from_slice(bytes);
    }

    /// Run `index`: its offset in the image and its bytes.
    fn run(&self, index: usize) -> Option<(u64, &[u8])> {
        let &(at, start) = self.runs.get(index)?;
        let end = self.runs.get(index + 1).map_or(self.bytes.len(), |r| r.1);
        Some((at, &self.bytes[start..end]))
    }
}

/// Reads a sparse image as [`scan_sparse`] does and also returns its [`Structure`].
pub fn scan_sparse_structure<R: Read>(r: R) -> Result<(Layout, Structure), SparseError> {
    let mut tape = Tape::new(r, true);
    let layout = scan_sparse_from(&mut tape)?;
    Ok((layout, tape.structure))
}

/// The reader the scanner reads through: counts the offset and, when asked to, records
/// every byte read outside a RAW payload.
pub(super) struct Tape<R> {
    inner: R,
    offset: u64,
    recording: bool,
    structure: Structure,
}

impl<R: Read> Tape<R> {
    pub(super) fn new(inner: R, record: bool) -> Self {
        Tape {
            inner,
            offset: 0,
            recording: record,
            structure: Structure::default(),
        }
    }

    /// Runs `read` over a RAW payload, which is not recorded.
    pub(super) fn payload<T>(&mut self, read: impl FnOnce(&mut Self) -> T) -> T {
        let recording = std::mem::replace(&mut self.recording, false);
        let result = read(self);
        self.recording = recording;
        result
    }
}

impl<R: Read> Read for Tape<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.recording {
            self.structure.push(self.offset, &buf[..n]);
        }
        self.offset += n as u64;
        Ok(n)
    }
}

/// Passes a sparse image's bytes on, failing the read that carries a byte of its
/// [`Structure`] that differs from the planned one: the image is then not the one its
/// layout was planned from, and nothing planned from it may be sent.
pub struct StructureCheck<R> {
    inner: R,
    structure: Structure,
    /// The first run not yet passed whole.
    next: usize,
    position: u64,
}

impl<R> StructureCheck<R> {
    /// Checks `inner` against `structure`, from the image's first byte.
    pub fn new(inner: R, structure: Structure) -> Self {
        StructureCheck {
            inner,
            structure,
            next: 0,
            position: 0,
        }
    }

    /// The reader underneath.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Whether every planned byte has passed (and matched).
    pub fn is_complete(&self) -> bool {
        self.next == self.structure.runs.len()
    }

    /// Compares `bytes`, found at `self.position`, with the planned ones they overlap.
    fn check(&mut self, bytes: &[u8]) -> io::Result<()> {
        let end = self.position + bytes.len() as u64;
        while let Some((at, planned)) = self.structure.run(self.next) {
            if at >= end {
                break;
            }
            let run_end = at + planned.len() as u64;
            let from = at.max(self.position);
            let to = run_end.min(end);
            let seen = &bytes[(from - self.position) as usize..(to - self.position) as usize];
            let want = &planned[(from - at) as usize..(to - at) as usize];
            if let Some(i) = seen.iter().zip(want).position(|(a, b)| a != b) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the sparse image changed since its chunks were planned: byte {} \
                         of its headers differs",
                        from + i as u64
                    ),
                ));
            }
            if run_end > end {
                break;
            }
            self.next += 1;
        }
        self.position = end;
        Ok(())
    }
}

impl<R: Read> Read for StructureCheck<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.check(&buf[..n])?;
        Ok(n)
    }
}

impl Layout {
    /// How far a sender must have read a sparse source (one this layout was scanned from)
    /// for the records of every block before `end_block` to have passed, without reading
    /// any RAW payload a later block needs: inside the RAW chunk that runs across
    /// `end_block`, the offset of that block's data; otherwise the payload of the first
    /// RAW chunk from `end_block` on, or the end of the records if there is none.
    pub fn records_before(&self, end_block: u32) -> u64 {
        let blk = u64::from(self.blk_sz);
        self.chunks
            .iter()
            .find_map(|c| match c.data {
                ChunkData::Raw { source_offset } if c.start_block + c.blocks > end_block => {
                    let into = end_block.saturating_sub(c.start_block);
                    Some(source_offset + u64::from(into) * blk)
                }
                _ => None,
            })
            .unwrap_or(self.source_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLK: usize = 4096;

    /// RAW 2 blocks, FILL 3 blocks, DONT_CARE 1 block, RAW 1 block.
    fn image() -> Vec<u8> {
        let mut out = Header::encode(BLK as u32, 7, 4).to_vec();
        for (kind, blocks, payload) in [
            (CHUNK_RAW, 2u32, vec![7u8; 2 * BLK]),
            (CHUNK_FILL, 3, 0x0102_0304u32.to_le_bytes().to_vec()),
            (CHUNK_DONT_CARE, 1, Vec::new()),
            (CHUNK_RAW, 1, vec![9u8; BLK]),
        ] {
            out.extend_from_slice(&kind.to_le_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&blocks.to_le_bytes());
            out.extend_from_slice(&(CHUNK_HEADER_LEN as u32 + payload.len() as u32).to_le_bytes());
            out.extend_from_slice(&payload);
        }
        out
    }

    fn check(planned: &[u8], sent: &[u8]) -> io::Result<StructureCheck<&'static [u8]>> {
        let (_, structure) = scan_sparse_structure(planned).unwrap();
        let sent: &'static [u8] = Vec::leak(sent.to_vec());
        let mut check = StructureCheck::new(sent, structure);
        // Odd-sized reads, so runs are split across them.
        let mut buf = [0u8; 1000];
        while check.read(&mut buf)? > 0 {}
        Ok(check)
    }

    #[test]
    fn the_structure_is_everything_but_raw_payloads() {
        let image = image();
        let (layout, structure) = scan_sparse_structure(&image[..]).unwrap();
        assert_eq!(layout, scan_sparse(&image[..]).unwrap());
        assert_eq!(structure.len(), FILE_HEADER_LEN + 4 * CHUNK_HEADER_LEN + 4);
        assert!(check(&image, &image).unwrap().is_complete());
        // Payload bytes are the block hashes' business, not the plan's.
        let mut payload_changed = image.clone();
        payload_changed[FILE_HEADER_LEN + CHUNK_HEADER_LEN + 5] ^= 1;
        assert!(check(&image, &payload_changed).is_ok());
    }

    #[test]
    fn bytes_that_decide_the_layout_must_be_the_planned_ones() {
        let image = image();
        let fill_pattern = FILE_HEADER_LEN + 2 * CHUNK_HEADER_LEN + 2 * BLK;
        let last_header = fill_pattern + 4 + CHUNK_HEADER_LEN;
        for at in [
            0,
            20,
            FILE_HEADER_LEN + 4,
            fill_pattern + 1,
            last_header + 4,
        ] {
            let mut sent = image.clone();
            sent[at] ^= 0x10;
            let err = check(&image, &sent).err().expect("a changed header byte");
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            assert!(err.to_string().contains(&format!("byte {at} ")), "{err}");
        }
    }

    #[test]
    fn records_before_a_block_stop_short_of_later_payloads() {
        let image = image();
        let layout = scan_sparse(&image[..]).unwrap();
        let first_raw = (FILE_HEADER_LEN + CHUNK_HEADER_LEN) as u64;
        let last_raw = first_raw + 2 * BLK as u64 + 3 * CHUNK_HEADER_LEN as u64 + 4;
        assert_eq!(layout.records_before(0), first_raw);
        assert_eq!(layout.records_before(1), first_raw + BLK as u64);
        // Past the first RAW chunk, the FILL and DONT_CARE records come before the last
        // RAW payload.
        assert_eq!(layout.records_before(2), last_raw);
        assert_eq!(layout.records_before(6), last_raw);
        assert_eq!(layout.records_before(7), image.len() as u64);
    }
}
