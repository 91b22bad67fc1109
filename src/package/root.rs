//! A signed trust root: the set of release keys a flashing station trusts, with a threshold
//! and a version, so that keys can be rotated without anyone re-deciding trust by hand.
//!
//! The root lives as `root.json` in the trust directory:
//!
//! ```text
//! {"signed": {"version": 2, "threshold": 2, "keys": [{"name": "…", "public_key": "<64 hex>"}, …]},
//!  "signatures": [{"key_id": "<16 hex>", "signature": "<128 hex>"}, …]}
//! ```
//!
//! Signatures cover [`ROOT_DOMAIN`] followed by the canonical JSON of `signed` (what
//! `serde_json` writes for [`RootDocument`]; the file is parsed with the same strict
//! derive, so the verifier and the user of a root always see one and the same object).
//! As in TUF, a new root is accepted only if a threshold of the *current* root's keys and
//! a threshold of its *own* keys signed it, counting each key once however often it
//! signed, and only if its version is higher than the current one. The demo key, whose
//! secret half is public, can never be part of a root.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::Signature;
use serde::{Deserialize, Serialize};

use super::keys::{KeyId, PublicKey, SecretKey};
use super::{names, PackageError};

/// File name of the installed root inside a trust directory.
pub const ROOT_FILE: &str = "root.json";
/// Largest root file accepted, checked before it is parsed.
pub const MAX_ROOT_LEN: u64 = 64 * 1024;
/// Most keys one root may list.
pub const MAX_ROOT_KEYS: usize = 32;
/// Most signature entries one root file may carry.
pub const MAX_ROOT_SIGNATURES: usize = 64;
/// Prefix of every signed root message, so a root signature can never be replayed as a
/// package signature (or the other way round) with the same key.
pub const ROOT_DOMAIN: &[u8] = b"flashline-trust-root-v1\0";

/// The signed part of a root: which keys are trusted and how many must sign its successor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootDocument {
    /// Monotonic version; a station never goes back to a lower one.
    pub version: u64,
    /// How many distinct keys of this root must sign the next root (and this one).
    pub threshold: u32,
    /// The trusted keys.
    pub keys: Vec<RootKey>,
}

/// One key of a root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootKey {
    /// The key's name, shown as the signer of packages (identifier charset).
    pub name: String,
    /// The raw ed25519 public key.
    pub public_key: Hex<32>,
}

impl RootKey {
    /// The entry for a public key.
    pub fn of(key: &PublicKey) -> Self {
        RootKey {
            name: key.name().to_owned(),
            public_key: Hex(*key.verifying_key().as_bytes()),
        }
    }
}

/// Bytes written as exactly `2 * N` lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Hex<const N: usize>(pub [u8; N]);

impl<const N: usize> TryFrom<String> for Hex<N> {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        super::decode_lower_hex(&s)
            .map(Hex)
            .ok_or_else(|| format!("expected {} lowercase hex digits, got {s:?}", 2 * N))
    }
}

impl<const N: usize> From<Hex<N>> for String {
    fn from(h: Hex<N>) -> String {
        hex::encode(h.0)
    }
}

/// One signature entry of a root file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RootSignature {
    key_id: KeyId,
    signature: Hex<64>,
}

/// The file as stored.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RootFile {
    signed: RootDocument,
    signatures: Vec<RootSignature>,
}

/// A parsed root: its document, its keys checked, and the signatures it carries.
///
/// Parsing checks structure only; [`SignedRoot::check_self_signed`] and
/// [`SignedRoot::check_successor`] decide whether it may be trusted.
#[derive(Debug, Clone)]
pub struct SignedRoot {
    document: RootDocument,
    keys: BTreeMap<KeyId, PublicKey>,
    signatures: Vec<RootSignature>,
}

impl SignedRoot {
    /// Parses a root file's bytes; `source` only names the file in errors.
    pub fn parse(bytes: &[u8], source: &Path) -> Result<Self, PackageError> {
        let invalid = |reason: String| PackageError::RootInvalid {
            path: source.to_owned(),
            reason,
        };
        if bytes.len() as u64 > MAX_ROOT_LEN {
            return Err(invalid(format!(
                "it is {} bytes long; at most {MAX_ROOT_LEN} are allowed",
                bytes.len()
            )));
        }
        let file: RootFile = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
        if file.signatures.len() > MAX_ROOT_SIGNATURES {
            return Err(invalid(format!(
                "it carries {} signatures; at most {MAX_ROOT_SIGNATURES} are allowed",
                file.signatures.len()
            )));
        }
        let keys = check_document(&file.signed, source)?;
        Ok(SignedRoot {
            document: file.signed,
            keys,
            signatures: file.signatures,
        })
    }

    /// Reads and parses a root file.
    pub fn load(path: &Path) -> Result<Self, PackageError> {
        let file = File::open(path).map_err(PackageError::io(path))?;
        let mut bytes = Vec::new();
        file.take(MAX_ROOT_LEN + 1)
            .read_to_end(&mut bytes)
            .map_err(PackageError::io(path))?;
        Self::parse(&bytes, path)
    }

    /// Builds a root from `document` signed with every secret key in `secret_keys`.
    ///
    /// Nothing is checked against any threshold here; the caller checks the result as the
    /// station installing it will (see [`SignedRoot::check_successor`]).
    pub fn sign(document: RootDocument, secret_keys: &[PathBuf]) -> Result<Self, PackageError> {
        let keys = check_document(&document, Path::new("the new root"))?;
        let mut root = SignedRoot {
            document,
            keys,
            signatures: Vec::new(),
        };
        let message = root.signed_message();
        let mut signed_by = BTreeSet::new();
        for path in secret_keys {
            let key = SecretKey::load(path)?;
            if signed_by.insert(key.public().id()) {
                root.signatures.push(RootSignature {
                    key_id: key.public().id(),
                    signature: Hex(key.sign(&message).to_bytes()),
                });
            }
        }
        Ok(root)
    }

    /// The signed document.
    pub fn document(&self) -> &RootDocument {
        &self.document
    }

    /// The root's version.
    pub fn version(&self) -> u64 {
        self.document.version
    }

    /// The trusted keys, by key id.
    pub fn keys(&self) -> impl Iterator<Item = &PublicKey> {
        self.keys.values()
    }

    /// The key ids the signature entries name, in file order (duplicates included).
    pub fn signature_key_ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.signatures.iter().map(|s| s.key_id)
    }

    /// The file text: pretty JSON, ending in a newline.
    pub fn to_file_text(&self) -> String {
        let file = RootFile {
            signed: self.document.clone(),
            signatures: self.signatures.clone(),
        };
        serde_json::to_string_pretty(&file).expect("a root serialises") + "\n"
    }

    /// Checks that a threshold of the root's own keys signed it, so it can sign a successor
    /// and is what its key holders agreed on. This is all a first root can be checked for.
    pub fn check_self_signed(&self) -> Result<(), PackageError> {
        let signed = self.count_signers(&self.keys)?;
        if signed < self.document.threshold as usize {
            return Err(PackageError::RootBelowThreshold {
                by: "the root itself",
                signed,
                threshold: self.document.threshold,
            });
        }
        Ok(())
    }

    /// Checks that `next` may replace this root: a higher version, signed by a threshold
    /// of this root's keys and by a threshold of its own.
    pub fn check_successor(&self, next: &SignedRoot) -> Result<(), PackageError> {
        if next.version() <= self.version() {
            return Err(PackageError::RootRollback {
                current: self.version(),
                offered: next.version(),
            });
        }
        let signed = next.count_signers(&self.keys)?;
        if signed < self.document.threshold as usize {
            return Err(PackageError::RootBelowThreshold {
                by: "the current root",
                signed,
                threshold: self.document.threshold,
            });
        }
        next.check_self_signed()
    }

    /// Counts the distinct keys of `keys` with a valid signature on this root. A key that
    /// signs twice counts once; a signature by a key not in `keys` counts for nothing; a
    /// signature by a key in `keys` that does not verify means the document was altered.
    fn count_signers(&self, keys: &BTreeMap<KeyId, PublicKey>) -> Result<usize, PackageError> {
        let message = self.signed_message();
        let mut valid = BTreeSet::new();
        for entry in &self.signatures {
            let Some(key) = keys.get(&entry.key_id) else {
                continue;
            };
            key.verifying_key()
                .verify_strict(&message, &Signature::from_bytes(&entry.signature.0))
                .map_err(|_| PackageError::RootBadSignature(entry.key_id))?;
            valid.insert(entry.key_id);
        }
        Ok(valid.len())
    }

    /// The domain prefix, then the canonical JSON of the document.
    fn signed_message(&self) -> Vec<u8> {
        let json = serde_json::to_vec(&self.document).expect("a root document serialises");
        [ROOT_DOMAIN, &json].concat()
    }
}

/// Checks what the schema cannot express and returns the keys by id.
fn check_document(
    document: &RootDocument,
    source: &Path,
) -> Result<BTreeMap<KeyId, PublicKey>, PackageError> {
    if document.keys.is_empty() || document.keys.len() > MAX_ROOT_KEYS {
        return Err(PackageError::RootInvalid {
            path: source.to_owned(),
            reason: format!(
                "it lists {} keys; 1 to {MAX_ROOT_KEYS} are allowed",
                document.keys.len()
            ),
        });
    }
    let demo = super::trust::demo_key();
    let mut keys = BTreeMap::new();
    for entry in &document.keys {
        names::identifier("key name", &entry.name)?;
        let key = PublicKey::from_parts(&entry.public_key.0, entry.name.clone(), source)?;
        if key.verifying_key() == demo.verifying_key() {
            return Err(PackageError::RootContainsDemoKey);
        }
        let id = key.id();
        if keys.insert(id, key).is_some() {
            return Err(PackageError::RootDuplicateKey(id));
        }
    }
    if document.threshold == 0 || document.threshold as usize > keys.len() {
        return Err(PackageError::RootThresholdInvalid {
            threshold: document.threshold,
            keys: keys.len(),
        });
    }
    Ok(keys)
}

/// The root installed in `trust_dir`, if there is one; an installed root that does not
/// parse or is not signed by its own threshold is an error, never silently skipped.
pub fn installed(trust_dir: &Path) -> Result<Option<SignedRoot>, PackageError> {
    let path = trust_dir.join(ROOT_FILE);
    if path.symlink_metadata().is_err() {
        return Ok(None);
    }
    let root = SignedRoot::load(&path)?;
    root.check_self_signed()?;
    Ok(Some(root))
}

/// Installs `root` as the first root of `trust_dir`. Like copying a `.pub` file into the
/// folder, this is the one act of trust a person makes; every later root must be signed
/// by its predecessor ([`update`]). Refused if a root is already installed.
pub fn install_first(trust_dir: &Path, root: &SignedRoot) -> Result<(), PackageError> {
    let path = trust_dir.join(ROOT_FILE);
    if path.symlink_metadata().is_ok() {
        return Err(PackageError::RootAlreadyInstalled(path));
    }
    root.check_self_signed()?;
    write_root(trust_dir, root)
}

/// Replaces the root installed in `trust_dir` with `next` if the current root accepts it
/// as its successor; returns the version replaced.
pub fn update(trust_dir: &Path, next: &SignedRoot) -> Result<u64, PackageError> {
    let current = installed(trust_dir)?
        .ok_or_else(|| PackageError::RootNotInstalled(trust_dir.join(ROOT_FILE)))?;
    current.check_successor(next)?;
    write_root(trust_dir, next)?;
    Ok(current.version())
}

/// Writes the root to a temporary file and renames it into place, so a station never sees
/// half a root.
fn write_root(trust_dir: &Path, root: &SignedRoot) -> Result<(), PackageError> {
    std::fs::create_dir_all(trust_dir).map_err(PackageError::io(trust_dir))?;
    let path = trust_dir.join(ROOT_FILE);
    let nonce: [u8; 8] = super::random().map_err(PackageError::io(&path))?;
    let temp = trust_dir.join(format!(".{ROOT_FILE}.{}.partial", hex::encode(nonce)));
    let written = File::create_new(&temp)
        .and_then(|mut f| {
            f.write_all(root.to_file_text().as_bytes())?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&temp, &path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(PackageError::Io { path, source: e });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::generate_key;

    #[test]
    fn structure_rules() {
        let dir = tempfile::tempdir().unwrap();
        let a = generate_key("a", dir.path()).unwrap();
        let key = PublicKey::load(&a.public_path).unwrap();
        let doc = |threshold, keys: Vec<RootKey>| RootDocument {
            version: 1,
            threshold,
            keys,
        };
        let one = vec![RootKey::of(&key)];
        let sign = |d| SignedRoot::sign(d, std::slice::from_ref(&a.secret_path));
        assert!(sign(doc(1, one.clone()))
            .unwrap()
            .check_self_signed()
            .is_ok());
        assert!(matches!(
            sign(doc(0, one.clone())),
            Err(PackageError::RootThresholdInvalid { .. })
        ));
        assert!(matches!(
            sign(doc(2, one.clone())),
            Err(PackageError::RootThresholdInvalid { .. })
        ));
        assert!(matches!(
            sign(doc(1, vec![one[0].clone(), one[0].clone()])),
            Err(PackageError::RootDuplicateKey(_))
        ));
        assert!(matches!(
            sign(doc(1, Vec::new())),
            Err(PackageError::RootInvalid { .. })
        ));
        let root = sign(doc(1, one)).unwrap();
        let text = root.to_file_text();
        let back = SignedRoot::parse(text.as_bytes(), Path::new("r")).unwrap();
        assert_eq!(back.document(), root.document());
        let unknown = text.replacen('{', "{\"expires\": 0,", 1);
        assert!(matches!(
            SignedRoot::parse(unknown.as_bytes(), Path::new("r")),
            Err(PackageError::RootInvalid { .. })
        ));
    }
}
