//! The checksum TBootPro returns after `CRC ON`.
//!
//! It is CRC-32 with the reflected polynomial 0xEDB88320 and initial value 0xFFFFFFFF, but
//! without the final XOR, so it is the bitwise complement of the usual (zlib) CRC-32:
//! `"123456789"` gives 0x340BC6D9 where zlib gives 0xCBF43926. Sources: zxdl's README and
//! crc32.c ("The CRC32 has no final XOR", recovered from the vendor's Downloader 7510), and
//! the flashline notes in shared/notes/chipsets.md, which checked both.

/// A running TBootPro CRC.
#[derive(Debug, Clone, Default)]
pub struct Crc32(crc32fast::Hasher);

impl Crc32 {
    /// A CRC over no bytes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The CRC of everything added so far.
    pub fn value(&self) -> u32 {
        self.0.clone().finalize() ^ 0xFFFF_FFFF
    }
}

/// The TBootPro CRC of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = Crc32::new();
    crc.update(bytes);
    crc.value()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector_and_streaming() {
        assert_eq!(crc32(b"123456789"), 0x340B_C6D9);
        assert_eq!(crc32(b""), 0xFFFF_FFFF);
        let mut crc = Crc32::new();
        crc.update(b"1234");
        crc.update(b"56789");
        assert_eq!(crc.value(), 0x340B_C6D9);
    }
}
