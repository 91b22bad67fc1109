//! Android Verified Boot (AVB 2.0): the flags word of a vbmeta image's header.
//!
//! A vbmeta image starts with a 256-byte header (`AvbVBMetaImageHeader`): the magic
//! `AVB0`, then big-endian fields, among them a 32-bit `flags` word at byte 120. Two bits
//! tell an unlocked bootloader to relax verification:
//!
//! * bit 0, `AVB_VBMETA_IMAGE_FLAGS_HASHTREE_DISABLED`: no dm-verity for hashtree
//!   partitions (`fastboot --disable-verity`);
//! * bit 1, `AVB_VBMETA_IMAGE_FLAGS_VERIFICATION_DISABLED`: no verification of the
//!   descriptors at all (`fastboot --disable-verification`).
//!
//! The header is signed, so a changed flags word breaks the image's AVB signature: an
//! unlocked bootloader boots it anyway (that is the point of the flags), a locked one
//! refuses it, which is why flashline sets flags only on an unlocked bootloader. (The
//! package's own signature still covers the package's bytes: they are verified before the
//! flags are set on their way to the device.) Google's client ORs the bits into the word's low byte (byte 123) and
//! changes nothing else, on partitions named `vbmeta`, `vbmeta_a` and `vbmeta_b`.
//!
//! Sources (facts only): AOSP `external/avb/libavb/avb_vbmeta_image.h` (header layout,
//! `AVB_MAGIC`, `AvbVBMetaImageFlags`) and `system/core/fastboot/fastboot.cpp`
//! (`rewrite_vbmeta_buffer`: "a 32-bit big endian |flags| field at offset 120", bits ORed
//! into byte 123; `flash_buf`: which partitions), both at android.googlesource.com.
//!
//! Parsing is bounded: only the fixed-size header is ever read.

/// Length of the vbmeta header (`AVB_VBMETA_IMAGE_HEADER_SIZE`).
pub const HEADER_LEN: usize = 256;
/// The header's magic (`AVB_MAGIC`).
pub const MAGIC: &[u8; 4] = b"AVB0";
/// Byte offset of the big-endian `flags` word in the header.
pub const FLAGS_OFFSET: usize = 120;

/// The vbmeta flags flashline can set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags(u32);

impl Flags {
    /// No flag.
    pub const NONE: Flags = Flags(0);
    /// `AVB_VBMETA_IMAGE_FLAGS_HASHTREE_DISABLED` (`--disable-verity`).
    pub const HASHTREE_DISABLED: Flags = Flags(1);
    /// `AVB_VBMETA_IMAGE_FLAGS_VERIFICATION_DISABLED` (`--disable-verification`).
    pub const VERIFICATION_DISABLED: Flags = Flags(2);

    /// The flags asked for by the two command-line switches.
    pub fn from_switches(disable_verity: bool, disable_verification: bool) -> Flags {
        let mut flags = Flags::NONE;
        if disable_verity {
            flags = flags | Flags::HASHTREE_DISABLED;
        }
        if disable_verification {
            flags = flags | Flags::VERIFICATION_DISABLED;
        }
        flags
    }

    /// Whether no flag is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The raw bits, as stored in the header.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// Whether every flag of `other` is set here.
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }
}

impl std::fmt::Display for Flags {
    /// The switches' names: `disable-verity`, `disable-verification`, both joined by `+`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names = Vec::new();
        if self.contains(Flags::HASHTREE_DISABLED) {
            names.push("disable-verity");
        }
        if self.contains(Flags::VERIFICATION_DISABLED) {
            names.push("disable-verification");
        }
        if names.is_empty() {
            names.push("none");
        }
        f.write_str(&names.join("+"))
    }
}

/// Why bytes are not a vbmeta header whose flags can be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AvbError {
    /// Fewer bytes than a header.
    #[error("{0} bytes are too few for a vbmeta header ({HEADER_LEN} bytes)")]
    Short(usize),
    /// The magic is not `AVB0`.
    #[error("no vbmeta header: the image starts with {0:02x?}, not \"AVB0\"")]
    BadMagic([u8; 4]),
}

/// What the header says, as far as flashline needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// `required_libavb_version_major`.
    pub version_major: u32,
    /// `required_libavb_version_minor`.
    pub version_minor: u32,
    /// The flags word as stored.
    pub flags: u32,
}

/// Reads the header at the start of `bytes` (only its first [`HEADER_LEN`] bytes).
pub fn parse_header(bytes: &[u8]) -> Result<Header, AvbError> {
    let header = bytes
        .get(..HEADER_LEN)
        .ok_or(AvbError::Short(bytes.len()))?;
    let word = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let magic = [header[0], header[1], header[2], header[3]];
    if &magic != MAGIC {
        return Err(AvbError::BadMagic(magic));
    }
    Ok(Header {
        version_major: word(4),
        version_minor: word(8),
        flags: word(FLAGS_OFFSET),
    })
}

/// Sets `flags` in the piece `chunk` of a vbmeta image that starts at byte `offset` of the
/// image: the bits are ORed into the flags word, as Google's client does, wherever the
/// word falls in the piece; every other byte is left alone. Checking the magic is the
/// caller's job ([`parse_header`] or [`FlagsWriter`]).
pub fn set_flags_in(chunk: &mut [u8], offset: u64, flags: Flags) {
    let bits = flags.bits().to_be_bytes();
    for (i, bit) in bits.iter().enumerate() {
        let at = FLAGS_OFFSET as u64 + i as u64;
        if let Some(pos) = at.checked_sub(offset).filter(|p| *p < chunk.len() as u64) {
            chunk[pos as usize] |= bit;
        }
    }
}

/// Sets flags in a vbmeta image as it streams past: the magic is checked on the first four
/// bytes and the flags word patched wherever it arrives, whatever the pieces' sizes.
#[derive(Debug, Clone)]
pub struct FlagsWriter {
    flags: Flags,
    /// Bytes seen so far.
    offset: u64,
    /// The first bytes, until the magic can be checked.
    magic: Vec<u8>,
}

impl FlagsWriter {
    /// A patcher for an image whose first byte has not been seen yet.
    pub fn new(flags: Flags) -> Self {
        FlagsWriter {
            flags,
            offset: 0,
            magic: Vec::with_capacity(MAGIC.len()),
        }
    }

    /// Patches the next piece of the image in place. Fails when the magic is wrong (then
    /// nothing may be sent) or when the image ended before its header did
    /// ([`FlagsWriter::finish`]).
    pub fn apply(&mut self, chunk: &mut [u8]) -> Result<(), AvbError> {
        let want = MAGIC.len() - self.magic.len();
        self.magic
            .extend_from_slice(&chunk[..want.min(chunk.len())]);
        if self.magic.len() == MAGIC.len() && self.magic.as_slice() != MAGIC {
            let mut got = [0u8; 4];
            got.copy_from_slice(&self.magic);
            return Err(AvbError::BadMagic(got));
        }
        set_flags_in(chunk, self.offset, self.flags);
        self.offset += chunk.len() as u64;
        Ok(())
    }

    /// Checks, at the end of the image, that the whole header went past.
    pub fn finish(&self) -> Result<(), AvbError> {
        if self.offset < HEADER_LEN as u64 {
            return Err(AvbError::Short(self.offset as usize));
        }
        Ok(())
    }
}

/// Whether Google's client would rewrite an image flashed to `partition` (a name as sent,
/// slot suffix included).
pub fn is_vbmeta_partition(partition: &str) -> bool {
    matches!(partition, "vbmeta" | "vbmeta_a" | "vbmeta_b")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(flags: u32) -> Vec<u8> {
        let mut h = vec![0u8; 4096];
        h[..4].copy_from_slice(MAGIC);
        h[4..8].copy_from_slice(&1u32.to_be_bytes());
        h[8..12].copy_from_slice(&2u32.to_be_bytes());
        h[FLAGS_OFFSET..FLAGS_OFFSET + 4].copy_from_slice(&flags.to_be_bytes());
        h[300] = 0xAA;
        h
    }

    #[test]
    fn the_header_is_read_big_endian() {
        let h = parse_header(&header(0x0100_0002)).unwrap();
        assert_eq!((h.version_major, h.version_minor), (1, 2));
        assert_eq!(h.flags, 0x0100_0002);
    }

    #[test]
    fn bad_headers_are_named() {
        assert_eq!(parse_header(&[0u8; 10]), Err(AvbError::Short(10)));
        let mut h = header(0);
        h[..4].copy_from_slice(b"ANDR");
        assert_eq!(parse_header(&h), Err(AvbError::BadMagic(*b"ANDR")));
    }

    #[test]
    fn flags_are_ored_into_the_low_byte_only() {
        let flags = Flags::from_switches(true, true);
        assert_eq!(flags.bits(), 3);
        assert_eq!(flags.to_string(), "disable-verity+disable-verification");
        let original = header(0x0000_0004);
        let mut once = original.clone();
        set_flags_in(&mut once, 0, flags);
        assert_eq!(parse_header(&once).unwrap().flags, 7);
        let changed: Vec<usize> = (0..once.len())
            .filter(|&i| once[i] != original[i])
            .collect();
        assert_eq!(changed, [123]);
    }

    #[test]
    fn streaming_in_any_pieces_gives_the_same_bytes() {
        let original = header(0);
        let mut whole = original.clone();
        set_flags_in(&mut whole, 0, Flags::HASHTREE_DISABLED);
        for size in [1, 3, 7, 121, 122, 123, 124, 4096] {
            let mut writer = FlagsWriter::new(Flags::HASHTREE_DISABLED);
            let mut out = original.clone();
            for piece in out.chunks_mut(size) {
                writer.apply(piece).unwrap();
            }
            writer.finish().unwrap();
            assert_eq!(out, whole, "pieces of {size}");
        }
    }

    #[test]
    fn a_stream_that_is_no_vbmeta_is_refused() {
        let mut writer = FlagsWriter::new(Flags::VERIFICATION_DISABLED);
        assert!(writer.apply(&mut [b'A', b'V']).is_ok());
        assert!(writer.apply(&mut [b'B', b'0', 0]).is_ok());
        let mut bad = FlagsWriter::new(Flags::VERIFICATION_DISABLED);
        assert_eq!(
            bad.apply(&mut b"ANDROID!".to_vec()),
            Err(AvbError::BadMagic(*b"ANDR"))
        );
        let mut short = FlagsWriter::new(Flags::VERIFICATION_DISABLED);
        short.apply(&mut header(0)[..200]).unwrap();
        assert_eq!(short.finish(), Err(AvbError::Short(200)));
    }

    #[test]
    fn only_vbmeta_partitions_are_rewritten_by_google() {
        assert!(is_vbmeta_partition("vbmeta_b"));
        assert!(!is_vbmeta_partition("vbmeta_system"));
        assert!(!is_vbmeta_partition("boot"));
    }
}
