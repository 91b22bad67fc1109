//! What the boot ROM reads of a programmer image, and in which order.
//!
//! A Firehose programmer is an ELF file. The boot ROM has no idea of its length: it reads
//! the ELF header, then the program header table it points to, then the segments, asking
//! the host for each piece by offset. The simulator does the same, and then also reads
//! whatever lies between the pieces (up to the end of the last one), so that it holds the
//! whole image and can hash it the way a secure device authenticates it.
//!
//! Every size comes from the host's file, so each is bounded before it is used.

use std::ops::Range;

use crate::protocol::sahara::Status;

/// Bytes of an ELF32 header; a 32-bit boot ROM's first request.
pub(super) const ELF32_HEADER_LEN: u64 = 52;
/// Bytes of an ELF64 header; a 64-bit boot ROM's first request.
pub(super) const ELF64_HEADER_LEN: u64 = 64;
/// Largest image the device loads (its RAM for the programmer).
pub(super) const MAX_IMAGE_LEN: u64 = 16 * 1024 * 1024;
/// Largest piece the device asks for at once.
pub(super) const CHUNK_LEN: u64 = 4096;
/// Most program headers accepted.
const MAX_PHDRS: u64 = 64;

const INVALID_ELF_HDR: Status = Status(0x14);
const UNSUPPORTED_NUM_PHDRS: Status = Status(0x0E);
const INVALID_PHDR_SIZE: Status = Status(0x0F);
const INVALID_IMG_HDR_DATA_SIZE: Status = Status(0x13);

/// The facts of an ELF header that tell where the program headers are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Header {
    /// Length of the ELF header itself (52 or 64).
    pub len: u64,
    is_64: bool,
    /// Where the program header table is.
    pub phdrs: Range<u64>,
}

/// Parses an ELF header; `bytes` holds at least the first 52 bytes of the image. The
/// result may ask for more header bytes ([`Header::len`]) than were given.
pub(super) fn parse_header(bytes: &[u8]) -> Result<Header, Status> {
    let b = |at: usize, n: usize| bytes.get(at..at + n).ok_or(INVALID_ELF_HDR);
    if b(0, 4)? != b"\x7fELF" || b(5, 1)? != [1] {
        return Err(INVALID_ELF_HDR);
    }
    let is_64 = match b(4, 1)?[0] {
        1 => false,
        2 => true,
        _ => return Err(INVALID_ELF_HDR),
    };
    let (len, entry_len) = if is_64 {
        (ELF64_HEADER_LEN, 56)
    } else {
        (ELF32_HEADER_LEN, 32)
    };
    let fields = if is_64 {
        bytes
            .get(32..58)
            .map(|f| (le(&f[..8]), le(&f[22..24]), le(&f[24..26])))
    } else {
        bytes
            .get(28..46)
            .map(|f| (le(&f[..4]), le(&f[14..16]), le(&f[16..18])))
    };
    let Some((phoff, phentsize, phnum)) = fields else {
        // Not all of a 64-bit header was asked for yet: the caller reads the rest first.
        return Ok(Header {
            len,
            is_64,
            phdrs: 0..0,
        });
    };
    if phentsize != entry_len {
        return Err(INVALID_PHDR_SIZE);
    }
    if phnum == 0 || phnum > MAX_PHDRS {
        return Err(UNSUPPORTED_NUM_PHDRS);
    }
    match phoff.checked_add(phnum * entry_len) {
        Some(end) if phoff >= len && end <= MAX_IMAGE_LEN => Ok(Header {
            len,
            is_64,
            phdrs: phoff..end,
        }),
        _ => Err(INVALID_ELF_HDR),
    }
}

impl Header {
    /// Whether [`Header::phdrs`] is known yet (all of the header was parsed).
    pub fn complete(&self) -> bool {
        !self.phdrs.is_empty()
    }

    /// The file ranges of the segments that carry data, from the program header table.
    pub fn segments(&self, table: &[u8]) -> Result<Vec<Range<u64>>, Status> {
        let entry_len = if self.is_64 { 56 } else { 32 };
        let mut segments = Vec::new();
        for entry in table.chunks_exact(entry_len) {
            let (offset, size) = if self.is_64 {
                (le(&entry[8..16]), le(&entry[32..40]))
            } else {
                (le(&entry[4..8]), le(&entry[16..20]))
            };
            if size == 0 {
                continue;
            }
            match offset.checked_add(size) {
                Some(end) if end <= MAX_IMAGE_LEN => segments.push(offset..end),
                _ => return Err(INVALID_IMG_HDR_DATA_SIZE),
            }
        }
        if segments.is_empty() {
            // Nothing to load: an empty programmer.
            return Err(INVALID_ELF_HDR);
        }
        Ok(segments)
    }
}

/// The pieces to request after the header and program headers, covering `0..extent`:
/// first the segments, last one first and alternating halves inside each as a boot ROM
/// hopping between hash table and segments would, then every gap between them.
pub(super) fn read_order(extent: u64, segments: &[Range<u64>]) -> Vec<Range<u64>> {
    let chunks = extent.div_ceil(CHUNK_LEN);
    let mut taken = vec![false; chunks as usize];
    let mut order = Vec::new();
    let mut by_start: Vec<&Range<u64>> = segments.iter().collect();
    by_start.sort_by_key(|s| std::cmp::Reverse(s.start));
    for seg in by_start {
        let first = seg.start / CHUNK_LEN;
        let last = (seg.end - 1) / CHUNK_LEN;
        let evens = (first..=last).step_by(2);
        let odds = (first + 1..=last).step_by(2);
        order.extend(evens.chain(odds));
    }
    order.extend(0..chunks);
    order
        .into_iter()
        .filter(|&i| !std::mem::replace(&mut taken[i as usize], true))
        .map(|i| i * CHUNK_LEN..((i + 1) * CHUNK_LEN).min(extent))
        .collect()
}

fn le(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

/// A minimal programmer image the virtual device accepts: an ELF64 file whose two
/// segments carry `payload` (split in halves). Real programmers are signed ELF files; the
/// device needs only the ELF structure to know what to read. Its SHA-256 is what
/// [`super::EdlConfig::programmer_sha256`] must hold to accept it.
pub fn build_test_programmer(payload: &[u8]) -> Vec<u8> {
    const PHDRS: u64 = 2;
    let data_start = ELF64_HEADER_LEN + PHDRS * 56;
    let half = payload.len() as u64 / 2;
    let segments = [
        (data_start, half),
        (data_start + half, payload.len() as u64 - half),
    ];

    let mut image = Vec::with_capacity(data_start as usize + payload.len());
    image.extend_from_slice(b"\x7fELF");
    image.extend_from_slice(&[2, 1, 1, 0]); // 64-bit, little-endian, version 1, SysV
    image.extend_from_slice(&[0; 8]);
    image.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    image.extend_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
    image.extend_from_slice(&1u32.to_le_bytes());
    image.extend_from_slice(&0u64.to_le_bytes()); // entry
    image.extend_from_slice(&ELF64_HEADER_LEN.to_le_bytes()); // phoff
    image.extend_from_slice(&0u64.to_le_bytes()); // shoff
    image.extend_from_slice(&0u32.to_le_bytes()); // flags
    for half_word in [ELF64_HEADER_LEN as u16, 56, PHDRS as u16, 64, 0, 0] {
        image.extend_from_slice(&half_word.to_le_bytes());
    }
    for (offset, size) in segments {
        image.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        image.extend_from_slice(&5u32.to_le_bytes()); // R+X
        image.extend_from_slice(&offset.to_le_bytes());
        image.extend_from_slice(&(0x0800_0000 + offset).to_le_bytes()); // vaddr
        image.extend_from_slice(&(0x0800_0000 + offset).to_le_bytes()); // paddr
        image.extend_from_slice(&size.to_le_bytes());
        image.extend_from_slice(&size.to_le_bytes());
        image.extend_from_slice(&CHUNK_LEN.to_le_bytes());
    }
    image.extend_from_slice(payload);
    image
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_programmer_parses_and_is_read_whole_out_of_order() {
        let image = build_test_programmer(&[0xA5; 10_000]);
        let header = parse_header(&image[..52]).unwrap();
        assert_eq!(header.len, 64);
        assert!(
            !header.complete(),
            "52 bytes do not hold the ELF64 phdr fields"
        );
        let header = parse_header(&image[..64]).unwrap();
        assert_eq!(header.phdrs, 64..176);
        let segments = header.segments(&image[64..176]).unwrap();
        assert_eq!(segments, vec![176..5176, 5176..10176]);

        let order = read_order(image.len() as u64, &segments);
        assert!(order.iter().all(|r| r.end - r.start <= CHUNK_LEN));
        assert_eq!(order[0].start, 4096, "the last segment comes first");
        let mut covered: Vec<_> = order.clone();
        covered.sort_by_key(|r| r.start);
        assert_eq!(covered.first().unwrap().start, 0);
        assert!(covered.windows(2).all(|w| w[0].end == w[1].start));
        assert_eq!(covered.last().unwrap().end, image.len() as u64);
        assert_ne!(order, covered, "the order is not sequential");
    }

    #[test]
    fn bad_images_get_the_boot_rom_status() {
        assert_eq!(parse_header(&[0u8; 52]), Err(INVALID_ELF_HDR));
        let empty = build_test_programmer(&[]);
        let header = parse_header(&empty).unwrap();
        assert_eq!(header.segments(&empty[64..176]), Err(INVALID_ELF_HDR));

        let mut bad = build_test_programmer(b"xy");
        bad[54] = 40; // phentsize
        assert_eq!(parse_header(&bad), Err(INVALID_PHDR_SIZE));
        let mut bad = build_test_programmer(b"xy");
        bad[56] = 0; // phnum
        assert_eq!(parse_header(&bad), Err(UNSUPPORTED_NUM_PHDRS));
        let mut bad = build_test_programmer(b"xy");
        bad[64 + 32 + 3] = 0x7F; // first segment's filesz, far beyond the cap
        let header = parse_header(&bad).unwrap();
        assert_eq!(
            header.segments(&bad[64..176]),
            Err(INVALID_IMG_HDR_DATA_SIZE)
        );
    }
}
