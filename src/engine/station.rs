//! The station key: this computer's own key, which vouches for the backups it made.
//!
//! A restore writes identity partitions back onto a device, so what `backup.json` says
//! (which partitions, at which sectors, with which hashes) must be what flashline recorded
//! when it read them, not what someone edited in later. Each backup is therefore sealed with
//! a key that lives only on the station that made it: `station.key` beside the history under
//! flashline's home, created on first use, mode 0600.
//!
//! **Why an ed25519 key and not an HMAC key.** Both would do for a station checking its own
//! backups. ed25519 is already how flashline signs and checks packages
//! (`ed25519-dalek`), so it adds no new primitive, no hand-rolled MAC and no constant-time
//! comparison to get right; and its public half can vouch for backups without being able to
//! make them, which is what a service center needs if it ever lets a second bench check a
//! first bench's backups. A backup made on another station is refused; carrying one over
//! means copying the key file on purpose.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

/// The station key's file name under flashline's home.
pub const FILE: &str = "station.key";
/// First word of the key file, so a wrong file is recognised as such.
const KEY_TAG: &str = "flashline-station-key-v1";
/// First word of a seal.
const SEAL_TAG: &str = "flashline-seal-ed25519-v1";
/// Signed before the sealed bytes, so a seal can never be taken for any other signature.
const CONTEXT: &[u8] = b"flashline backup manifest v1\0";
/// The context of a report sent to central storage (`fleet::reports`): its own, so a report
/// seal never passes as a backup seal, nor a backup seal as a report's.
const REPORT_CONTEXT: &[u8] = b"flashline fleet report v1\0";
/// Largest key or seal file read.
const MAX_FILE_LEN: u64 = 4096;

/// Why the station key cannot be used or a seal does not hold.
#[derive(Debug, thiserror::Error)]
pub enum StationError {
    /// The key file cannot be read or created.
    #[error("station key {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The key file exists but is not a station key, or others may read it.
    #[error("station key {path}: {reason}")]
    BadKey {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Where the station key of the flashline home that holds `history` is kept: beside the
/// history, so a job's options, which name the history, also name the key.
pub fn beside(history: &Path) -> PathBuf {
    history.with_file_name(FILE)
}

/// This station's signing key.
pub struct StationKey {
    key: SigningKey,
    path: PathBuf,
}

impl std::fmt::Debug for StationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StationKey")
            .field("path", &self.path)
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

impl StationKey {
    /// Loads the key at `path`, or makes one there if there is none yet.
    pub fn open_or_create(path: &Path) -> Result<Self, StationError> {
        let io = |source| StationError::Io {
            path: path.to_owned(),
            source,
        };
        let mut secret = [0u8; 32];
        getrandom::getrandom(&mut secret).map_err(|e| io(std::io::Error::other(e.to_string())))?;
        let text = format!("{KEY_TAG} {}\n", hex::encode(secret));
        match crate::secure_fs::write_new(path, text.as_bytes()) {
            Ok(()) => Ok(StationKey {
                key: SigningKey::from_bytes(&secret),
                path: path.to_owned(),
            }),
            // There already is one (or another process made it just now): use it.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load(path),
            Err(e) => Err(io(e)),
        }
    }

    fn load(path: &Path) -> Result<Self, StationError> {
        let bad = |reason: &str| StationError::BadKey {
            path: path.to_owned(),
            reason: reason.to_string(),
        };
        let meta = std::fs::symlink_metadata(path).map_err(|source| StationError::Io {
            path: path.to_owned(),
            source,
        })?;
        if !meta.is_file() {
            return Err(bad("not a regular file (a symbolic link is not followed)"));
        }
        if crate::platform::others_may_read(&meta) {
            return Err(bad(
                "other users may read it; make it private (chmod 600) before using it",
            ));
        }
        let text = read_small(path).map_err(|source| StationError::Io {
            path: path.to_owned(),
            source,
        })?;
        let secret = std::str::from_utf8(&text)
            .ok()
            .and_then(|t| t.trim_end().strip_prefix(KEY_TAG))
            .and_then(|t| t.strip_prefix(' '))
            .and_then(|hex_key| hex::decode(hex_key).ok())
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or_else(|| bad("not a flashline station key"))?;
        Ok(StationKey {
            key: SigningKey::from_bytes(&secret),
            path: path.to_owned(),
        })
    }

    /// A short name for the key: the first 8 bytes of the SHA-256 of its public half, hex.
    pub fn id(&self) -> String {
        key_id(&self.key.verifying_key())
    }

    /// The public half, hex: what a reader of this station's reports enrols to check them.
    pub fn public_key(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    /// The text of a seal over `bytes`, to store beside them.
    pub fn seal(&self, bytes: &[u8]) -> String {
        self.seal_in(CONTEXT, bytes)
    }

    /// A seal over a report for central storage, checked with [`check_report_seal`].
    pub fn seal_report(&self, bytes: &[u8]) -> String {
        self.seal_in(REPORT_CONTEXT, bytes)
    }

    fn seal_in(&self, context: &[u8], bytes: &[u8]) -> String {
        let signature = self.key.sign(&[context, bytes].concat());
        format!(
            "{SEAL_TAG} {} {}\n",
            self.id(),
            hex::encode(signature.to_bytes())
        )
    }

    /// Checks that `seal` is this station's seal over exactly `bytes`; the error says why not
    /// in plain words.
    pub fn check(&self, bytes: &[u8], seal: &[u8]) -> Result<(), String> {
        check_in(&self.key.verifying_key(), CONTEXT, bytes, seal)
    }
}

/// Checks that `seal` is a report seal ([`StationKey::seal_report`]) over exactly `bytes` by
/// the station whose public key (hex) is `public_key`.
pub fn check_report_seal(public_key: &str, bytes: &[u8], seal: &[u8]) -> Result<(), String> {
    let key = hex::decode(public_key)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| VerifyingKey::from_bytes(&b).ok())
        .ok_or("the station's public key is not an ed25519 public key in hex")?;
    check_in(&key, REPORT_CONTEXT, bytes, seal)
}

fn check_in(key: &VerifyingKey, context: &[u8], bytes: &[u8], seal: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(seal).unwrap_or_default().trim_end();
    let mut words = text.split(' ');
    let (Some(SEAL_TAG), Some(id), Some(sig), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err("its seal is not a flashline seal".into());
    };
    let own = key_id(key);
    if id != own {
        return Err(format!(
            "it was sealed by another station's key ({id}), not by this station's ({own})"
        ));
    }
    let signature = hex::decode(sig)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(|b| Signature::from_bytes(&b))
        .ok_or("its seal is damaged")?;
    key.verify(&[context, bytes].concat(), &signature)
        .map_err(|_| "it was changed after this station sealed it".to_string())
}

fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

/// Reads a file of at most [`MAX_FILE_LEN`] bytes, never following a symbolic link.
pub(crate) fn read_small(path: &Path) -> std::io::Result<Vec<u8>> {
    crate::secure_fs::read(path, MAX_FILE_LEN)?
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_private_and_reloaded() {
        let home = tempfile::tempdir().unwrap();
        let path = home.path().join(FILE);
        let a = StationKey::open_or_create(&path).unwrap();
        let b = StationKey::open_or_create(&path).unwrap();
        assert_eq!(a.id(), b.id());
        if let Some(owner) = crate::platform::ownership(&std::fs::metadata(&path).unwrap()) {
            assert_eq!(owner.mode & 0o777, 0o600);
        }
        let seal = a.seal(b"manifest");
        b.check(b"manifest", seal.as_bytes()).unwrap();
        let err = b.check(b"manifesT", seal.as_bytes()).unwrap_err();
        assert!(err.contains("changed"), "{err}");
        let other = StationKey::open_or_create(&home.path().join("other.key")).unwrap();
        let err = other.check(b"manifest", seal.as_bytes()).unwrap_err();
        assert!(err.contains("another station"), "{err}");
        assert!(a.check(b"manifest", b"garbage").is_err());
        // A report seal and a backup seal never stand in for each other.
        let report_seal = a.seal_report(b"manifest");
        check_report_seal(&a.public_key(), b"manifest", report_seal.as_bytes()).unwrap();
        assert!(a.check(b"manifest", report_seal.as_bytes()).is_err());
        assert!(check_report_seal(&a.public_key(), b"manifest", seal.as_bytes()).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_readable_or_linked_key_is_refused() {
        let home = tempfile::tempdir().unwrap();
        let path = home.path().join(FILE);
        StationKey::open_or_create(&path).unwrap();
        crate::platform::set_mode(&path, 0o644).unwrap();
        let err = StationKey::open_or_create(&path).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        let link = home.path().join("link.key");
        crate::platform::symlink(&path, &link).unwrap();
        assert!(StationKey::open_or_create(&link).is_err());
    }
}
