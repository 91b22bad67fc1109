//! The hawkBit controller id of a device: a salted hash of its serial and IMEI.
//!
//! Why a hash: hawkBit, its database, its UI and its logs see the controller id of every
//! device a station has flashed, and an IMEI is personal data (it follows a subscriber
//! across SIM cards). Raw IMEIs never leave the station except inside the signed job
//! reports, which go to the chain's own bucket. Why salted: an IMEI has about 10^8 possible
//! values once its type allocation code is known (the last digit is a Luhn check), so an
//! unsalted hash is reversed by trying them all in seconds. The salt is one secret for the
//! whole chain, so a device brought back to another station gets the same id there, and
//! hawkBit sees one target with one history.
//!
//! The id is `fl-` followed by 128 bits of the hash in hex: collisions are out of reach for
//! any fleet, the prefix says which tool named the target, and the whole id (35 characters)
//! is far below hawkBit's 256 and uses only characters that are safe in a URL path.

use sha2::{Digest, Sha256};
use std::fmt;

/// What every flashline controller id starts with.
pub const PREFIX: &str = "fl-";

/// Bytes of the SHA-256 kept in the id.
const ID_BYTES: usize = 16;

/// Separates this hash from any other SHA-256 flashline computes over the same fields.
const DOMAIN: &[u8] = b"flashline hawkBit controllerId v1\0";

/// A device's hawkBit controller id (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetId(String);

impl TargetId {
    /// The id of the device with this `serial` and, if it has one, this `imei`, under the
    /// chain's `salt`. White space around serial and IMEI is ignored, and an empty IMEI is
    /// no IMEI, so the same device read twice gets the same id.
    pub fn derive(salt: &[u8], serial: &str, imei: Option<&str>) -> TargetId {
        let imei = imei.map(str::trim).filter(|i| !i.is_empty());
        let mut hash = Sha256::new();
        hash.update(DOMAIN);
        // Every field is length-prefixed, so no two (salt, serial, IMEI) triples feed the
        // hash the same bytes ("ab" + "c" differs from "a" + "bc").
        for field in [
            Some(salt),
            Some(serial.trim().as_bytes()),
            imei.map(str::as_bytes),
        ] {
            match field {
                Some(bytes) => {
                    hash.update([1]);
                    hash.update((bytes.len() as u64).to_le_bytes());
                    hash.update(bytes);
                }
                None => hash.update([0]),
            }
        }
        let digest = hash.finalize();
        TargetId(format!("{PREFIX}{}", hex::encode(&digest[..ID_BYTES])))
    }

    /// The controller id as hawkBit sees it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TargetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALT: &[u8] = b"chain-salt";
    const IMEI: &str = "356938035643809";

    #[test]
    fn stable_prefixed_and_short() {
        let id = TargetId::derive(SALT, "R58M12ABCDE", Some(IMEI));
        assert_eq!(
            id,
            TargetId::derive(SALT, " R58M12ABCDE ", Some(" 356938035643809\n"))
        );
        assert!(id.as_str().starts_with(PREFIX));
        assert_eq!(id.as_str().len(), PREFIX.len() + 2 * ID_BYTES);
        assert!(id.as_str()[PREFIX.len()..]
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }

    #[test]
    fn every_input_matters() {
        let id = TargetId::derive(SALT, "R58M12ABCDE", Some(IMEI));
        assert_ne!(
            id,
            TargetId::derive(b"other-salt", "R58M12ABCDE", Some(IMEI))
        );
        assert_ne!(id, TargetId::derive(SALT, "R58M12ABCDF", Some(IMEI)));
        assert_ne!(
            id,
            TargetId::derive(SALT, "R58M12ABCDE", Some("356938035643817"))
        );
        assert_ne!(id, TargetId::derive(SALT, "R58M12ABCDE", None));
        assert_eq!(
            TargetId::derive(SALT, "R58M12ABCDE", None),
            TargetId::derive(SALT, "R58M12ABCDE", Some(" "))
        );
        // Field boundaries count.
        assert_ne!(
            TargetId::derive(SALT, "ab", Some("c")),
            TargetId::derive(SALT, "a", Some("bc"))
        );
    }
}
