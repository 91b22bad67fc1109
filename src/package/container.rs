//! The package container: one file, every region length-prefixed, nothing else in it.
//!
//! ```text
//! offset  size        field
//! 0       8           magic "FLASHPKG"
//! 8       4           format version, u32 little-endian (1)
//! 12      8           manifest length M, u64 LE, 1..=1 MiB
//! 20      4           signature count S, u32 LE, at most 8
//! 24      M           manifest: canonical JSON, the signed bytes
//! 24+M    72*S        signatures: key id (8 bytes) + ed25519 signature (64 bytes) each
//! ...     size_i      image i's bytes, concatenated in manifest order
//! ...     size_e      a dynamic layout's super_empty.img, if the manifest has one
//! ```
//!
//! The file must be exactly `24 + M + 72*S + sum(size_i)` bytes long. Each signature covers
//! [`SIGNATURE_DOMAIN`] followed by the manifest bytes; the manifest binds every image by
//! size and sha256, so the header and layout need no signature of their own: any change to
//! them either breaks the layout or changes the signed bytes.

use super::manifest::Manifest;
use super::{KeyId, PackageError};

/// First 8 bytes of every package.
pub const MAGIC: [u8; 8] = *b"FLASHPKG";
/// The container format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Length of the fixed header.
pub const HEADER_LEN: u64 = 24;
/// Largest manifest accepted, checked before anything is allocated.
pub const MAX_MANIFEST_LEN: u64 = 1 << 20;
/// Most signature entries accepted.
pub const MAX_SIGNATURES: u32 = 8;
/// Bytes per signature entry: key id then signature.
pub const SIGNATURE_ENTRY_LEN: u64 = (KeyId::LEN + ed25519_dalek::SIGNATURE_LENGTH) as u64;
/// Prefix of every signed message, so a flashline signature can never be replayed as a
/// signature over anything else made with the same key.
pub const SIGNATURE_DOMAIN: &[u8] = b"flashline-package-manifest-v1\0";

/// The fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub manifest_len: u64,
    pub signature_count: u32,
}

impl Header {
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut out = [0u8; HEADER_LEN as usize];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[12..20].copy_from_slice(&self.manifest_len.to_le_bytes());
        out[20..24].copy_from_slice(&self.signature_count.to_le_bytes());
        out
    }

    /// Parses the first `bytes.len()` bytes of a file that is `file_len` bytes long.
    ///
    /// A short file whose first bytes already disagree with the magic is "not a package"
    /// rather than "truncated", which is what a technician needs to hear.
    pub(crate) fn parse(bytes: &[u8], file_len: u64) -> Result<Self, PackageError> {
        let magic_seen = bytes.len().min(MAGIC.len());
        if bytes[..magic_seen] != MAGIC[..magic_seen] {
            return Err(PackageError::BadMagic);
        }
        let Ok(bytes) = <&[u8; HEADER_LEN as usize]>::try_from(bytes) else {
            return Err(PackageError::Truncated {
                needed: HEADER_LEN,
                actual: file_len,
            });
        };
        let u32_at =
            |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        let version = u32_at(8);
        if version != FORMAT_VERSION {
            return Err(PackageError::UnsupportedVersion(version));
        }
        let mut len = [0u8; 8];
        len.copy_from_slice(&bytes[12..20]);
        let header = Header {
            manifest_len: u64::from_le_bytes(len),
            signature_count: u32_at(20),
        };
        if header.manifest_len > MAX_MANIFEST_LEN {
            return Err(PackageError::ManifestTooLarge {
                size: header.manifest_len,
                max: MAX_MANIFEST_LEN,
            });
        }
        if header.signature_count > MAX_SIGNATURES {
            return Err(PackageError::TooManySignatures {
                count: header.signature_count,
                max: MAX_SIGNATURES,
            });
        }
        Ok(header)
    }

    /// Bytes from the start of the file to the first image.
    pub(crate) fn prefix_len(&self) -> u64 {
        // Both factors are capped in `parse`, so this cannot overflow.
        HEADER_LEN + self.manifest_len + u64::from(self.signature_count) * SIGNATURE_ENTRY_LEN
    }
}

/// One entry of the signature block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SignatureEntry {
    pub key_id: KeyId,
    pub signature: [u8; ed25519_dalek::SIGNATURE_LENGTH],
}

impl SignatureEntry {
    pub(crate) fn encode(&self) -> [u8; SIGNATURE_ENTRY_LEN as usize] {
        let mut out = [0u8; SIGNATURE_ENTRY_LEN as usize];
        out[..KeyId::LEN].copy_from_slice(&self.key_id.to_bytes());
        out[KeyId::LEN..].copy_from_slice(&self.signature);
        out
    }

    pub(crate) fn parse(bytes: &[u8; SIGNATURE_ENTRY_LEN as usize]) -> Self {
        let mut id = [0u8; KeyId::LEN];
        id.copy_from_slice(&bytes[..KeyId::LEN]);
        let mut signature = [0u8; ed25519_dalek::SIGNATURE_LENGTH];
        signature.copy_from_slice(&bytes[KeyId::LEN..]);
        SignatureEntry {
            key_id: KeyId::from_bytes(id),
            signature,
        }
    }
}

/// The message a signature covers: the domain prefix, then the exact manifest bytes.
pub(crate) fn signed_message(manifest: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNATURE_DOMAIN.len() + manifest.len());
    message.extend_from_slice(SIGNATURE_DOMAIN);
    message.extend_from_slice(manifest);
    message
}

/// Where one image lives in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Extent {
    pub offset: u64,
    pub len: u64,
}

/// Places the images after the prefix and checks the file is exactly as long as that.
pub(crate) fn layout(
    prefix_len: u64,
    manifest: &Manifest,
    file_len: u64,
) -> Result<Vec<Extent>, PackageError> {
    let mut extents = Vec::with_capacity(manifest.images.len() + 1);
    let mut end = prefix_len;
    for image in manifest.stored() {
        let next =
            end.checked_add(image.size)
                .ok_or_else(|| PackageError::DeclaredSizeTooLarge {
                    partition: image.partition.clone(),
                    size: image.size,
                })?;
        extents.push(Extent {
            offset: end,
            len: image.size,
        });
        end = next;
    }
    if end > file_len {
        return Err(PackageError::Truncated {
            needed: end,
            actual: file_len,
        });
    }
    if end < file_len {
        return Err(PackageError::TrailingBytes {
            extra: file_len - end,
        });
    }
    Ok(extents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_rejections() {
        let h = Header {
            manifest_len: 300,
            signature_count: 1,
        };
        let bytes = h.encode();
        assert_eq!(Header::parse(&bytes, 1000).unwrap(), h);
        assert_eq!(h.prefix_len(), 24 + 300 + 72);

        assert!(matches!(
            Header::parse(b"PK\x03\x04", 4),
            Err(PackageError::BadMagic)
        ));
        assert!(matches!(
            Header::parse(&bytes[..10], 10),
            Err(PackageError::Truncated {
                needed: 24,
                actual: 10
            })
        ));
        let mut v = bytes;
        v[8] = 2;
        assert!(matches!(
            Header::parse(&v, 1000),
            Err(PackageError::UnsupportedVersion(2))
        ));
        let mut m = bytes;
        m[12..20].copy_from_slice(&(MAX_MANIFEST_LEN + 1).to_le_bytes());
        assert!(matches!(
            Header::parse(&m, 1000),
            Err(PackageError::ManifestTooLarge { .. })
        ));
        let mut m = bytes;
        m[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            Header::parse(&m, 1000),
            Err(PackageError::ManifestTooLarge { .. })
        ));
        let mut s = bytes;
        s[20..24].copy_from_slice(&9u32.to_le_bytes());
        assert!(matches!(
            Header::parse(&s, 1000),
            Err(PackageError::TooManySignatures { count: 9, .. })
        ));
    }

    #[test]
    fn signature_entry_round_trip() {
        let e = SignatureEntry {
            key_id: KeyId::from_bytes([3; 8]),
            signature: [9; 64],
        };
        assert_eq!(SignatureEntry::parse(&e.encode()), e);
    }
}
