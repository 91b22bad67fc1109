//! Ed25519 signing keys: generation, the two key file formats, key ids.
//!
//! Both files are one line of text so they can be mailed, diffed and inspected:
//!
//! ```text
//! NAME.pub:  flashline-ed25519-public <64 hex digits: public key> <name>
//! NAME.key:  flashline-ed25519-secret <64 hex digits: seed> <name>
//! ```
//!
//! A key id is the first 8 bytes of sha256(public key), written as 16 lowercase hex digits.
//! It only selects which trusted key to try; the signature check itself uses the full key.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

use super::{names, PackageError};

const PUBLIC_TAG: &str = "flashline-ed25519-public";
const SECRET_TAG: &str = "flashline-ed25519-secret";
/// Key files are one short line; anything longer is not a key file.
const MAX_KEY_FILE_LEN: u64 = 4096;

/// Short identifier of a public key: the first 8 bytes of its sha256.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct KeyId([u8; 8]);

impl KeyId {
    /// Length of a key id in bytes (16 hex digits).
    pub const LEN: usize = 8;

    /// The id of `key`.
    pub fn of(key: &VerifyingKey) -> Self {
        let digest = Sha256::digest(key.as_bytes());
        let mut id = [0u8; Self::LEN];
        id.copy_from_slice(&digest[..Self::LEN]);
        KeyId(id)
    }

    /// Wraps raw id bytes, as stored in a package's signature block.
    pub fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        KeyId(bytes)
    }

    /// The raw id bytes.
    pub fn to_bytes(self) -> [u8; Self::LEN] {
        self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl FromStr for KeyId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        super::decode_lower_hex(s)
            .map(KeyId)
            .ok_or_else(|| format!("key id must be 16 lowercase hex digits, got {s:?}"))
    }
}

impl TryFrom<String> for KeyId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<KeyId> for String {
    fn from(id: KeyId) -> String {
        id.to_string()
    }
}

/// A public key read from a `.pub` file, checked to be a usable (non-weak) key.
#[derive(Debug, Clone)]
pub struct PublicKey {
    key: VerifyingKey,
    id: KeyId,
    name: String,
}

impl PublicKey {
    /// Reads and checks a `.pub` file.
    pub fn load(path: &Path) -> Result<Self, PackageError> {
        let text = read_key_file(path)?;
        Self::parse(&text, path)
    }

    /// Parses the text of a `.pub` file; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, PackageError> {
        let (bytes, name) = parse_line(text, PUBLIC_TAG, path)?;
        Self::from_parts(&bytes, name, path)
    }

    /// A key from its raw bytes and a name already checked as an identifier, with the same
    /// point and weak-key checks as a `.pub` file; `path` only names the source in errors.
    pub(crate) fn from_parts(
        bytes: &[u8; 32],
        name: String,
        path: &Path,
    ) -> Result<Self, PackageError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| PackageError::KeyFileInvalid {
            path: path.to_owned(),
            reason: "the public key is not a valid ed25519 point",
        })?;
        if key.is_weak() {
            return Err(PackageError::WeakKey(path.to_owned()));
        }
        Ok(PublicKey {
            id: KeyId::of(&key),
            key,
            name,
        })
    }

    /// The key id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The name the key's owner gave it (from the key file, never from a package).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The raw ed25519 key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// The `.pub` file text for this key.
    fn to_file_text(&self) -> String {
        format!(
            "{PUBLIC_TAG} {} {}\n",
            hex::encode(self.key.as_bytes()),
            self.name
        )
    }
}

/// A signing key read from a `.key` file. Only `pack` uses it.
pub(crate) struct SecretKey {
    signing: SigningKey,
    public: PublicKey,
}

impl SecretKey {
    /// Reads a `.key` file and derives its public half.
    pub(crate) fn load(path: &Path) -> Result<Self, PackageError> {
        let text = read_key_file(path)?;
        let (seed, name) = parse_line(&text, SECRET_TAG, path)?;
        let signing = SigningKey::from_bytes(&seed);
        let key = signing.verifying_key();
        if key.is_weak() {
            return Err(PackageError::WeakKey(path.to_owned()));
        }
        let public = PublicKey {
            id: KeyId::of(&key),
            key,
            name,
        };
        Ok(SecretKey { signing, public })
    }

    pub(crate) fn public(&self) -> &PublicKey {
        &self.public
    }

    /// Signs `message` (the caller adds the domain prefix).
    pub(crate) fn sign(&self, message: &[u8]) -> Signature {
        self.signing.sign(message)
    }

    fn to_file_text(&self) -> String {
        format!(
            "{SECRET_TAG} {} {}\n",
            hex::encode(self.signing.to_bytes()),
            self.public.name
        )
    }
}

/// The two files [`generate_key`] wrote.
#[derive(Debug, Clone)]
pub struct GeneratedKey {
    /// Id of the new key.
    pub key_id: KeyId,
    /// `out_dir/NAME.key`: keep secret, never commit or ship.
    pub secret_path: PathBuf,
    /// `out_dir/NAME.pub`: copy into the trust directory of every flashing station.
    pub public_path: PathBuf,
}

/// Creates a new signing key named `name` as `out_dir/NAME.key` and `out_dir/NAME.pub`.
///
/// Refuses to overwrite either file, so a release key can never be lost by mistake. The
/// secret file is created with mode 0600 on unix (Windows: see
/// [`crate::platform::create_mode`]). If writing the public file fails the new
/// secret file is removed again so no half-made key pair remains.
pub fn generate_key(name: &str, out_dir: &Path) -> Result<GeneratedKey, PackageError> {
    names::identifier("key name", name)?;
    let secret_path = out_dir.join(format!("{name}.key"));
    let public_path = out_dir.join(format!("{name}.pub"));
    for path in [&secret_path, &public_path] {
        if path.symlink_metadata().is_ok() {
            return Err(PackageError::KeyExists(path.clone()));
        }
    }
    let seed: [u8; 32] = super::random().map_err(PackageError::io(&secret_path))?;
    let signing = SigningKey::from_bytes(&seed);
    let key = signing.verifying_key();
    let secret = SecretKey {
        public: PublicKey {
            id: KeyId::of(&key),
            key,
            name: name.to_owned(),
        },
        signing,
    };

    write_new(&secret_path, secret.to_file_text().as_bytes(), true)?;
    if let Err(e) = write_new(&public_path, secret.public.to_file_text().as_bytes(), false) {
        let _ = std::fs::remove_file(&secret_path);
        return Err(e);
    }
    Ok(GeneratedKey {
        key_id: secret.public.id,
        secret_path,
        public_path,
    })
}

/// Creates `path` (failing if it exists) and writes `bytes`; `private` means mode 0600.
fn write_new(path: &Path, bytes: &[u8], private: bool) -> Result<(), PackageError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    crate::platform::create_mode(&mut options, if private { 0o600 } else { 0o644 });
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            PackageError::KeyExists(path.to_owned())
        } else {
            PackageError::Io {
                path: path.to_owned(),
                source: e,
            }
        }
    })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(PackageError::io(path))
}

/// Reads a whole key file, refusing anything longer than a key file can be.
fn read_key_file(path: &Path) -> Result<String, PackageError> {
    let file = File::open(path).map_err(PackageError::io(path))?;
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(PackageError::io(path))?;
    let invalid = |reason| PackageError::KeyFileInvalid {
        path: path.to_owned(),
        reason,
    };
    if bytes.len() as u64 > MAX_KEY_FILE_LEN {
        return Err(invalid("the file is far too long to be a key file"));
    }
    String::from_utf8(bytes).map_err(|_| invalid("the file is not text"))
}

/// Splits `<tag> <64 hex> <name>` (one line, optional final newline) into key bytes and name.
fn parse_line(text: &str, tag: &str, path: &Path) -> Result<([u8; 32], String), PackageError> {
    let invalid = |reason| PackageError::KeyFileInvalid {
        path: path.to_owned(),
        reason,
    };
    let line = text
        .strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(text);
    let mut fields = line.split(' ');
    let (Some(found_tag), Some(hex_key), Some(name), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(invalid("expected one line: type, 64 hex digits, name"));
    };
    if found_tag != tag {
        return Err(invalid(
            if found_tag == PUBLIC_TAG || found_tag == SECRET_TAG {
                "this is the other half of the key pair (.pub and .key swapped?)"
            } else {
                "unknown key type; expected a flashline ed25519 key"
            },
        ));
    }
    let bytes = super::decode_lower_hex(hex_key)
        .ok_or_else(|| invalid("the key must be 64 lowercase hex digits"))?;
    names::identifier("key name", name)?;
    Ok((bytes, name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let made = generate_key("release-2026", dir.path()).unwrap();
        let public = PublicKey::load(&made.public_path).unwrap();
        let secret = SecretKey::load(&made.secret_path).unwrap();
        assert_eq!(public.id(), made.key_id);
        assert_eq!(secret.public().id(), made.key_id);
        assert_eq!(public.name(), "release-2026");
        let sig = secret.sign(b"hello");
        public
            .verifying_key()
            .verify_strict(b"hello", &sig)
            .unwrap();
        if let Some(owner) =
            crate::platform::ownership(&std::fs::metadata(&made.secret_path).unwrap())
        {
            assert_eq!(owner.mode & 0o777, 0o600);
        }
    }

    #[test]
    fn generate_refuses_to_overwrite_and_bad_names() {
        let dir = tempfile::tempdir().unwrap();
        generate_key("k", dir.path()).unwrap();
        let before = std::fs::read(dir.path().join("k.key")).unwrap();
        assert!(matches!(
            generate_key("k", dir.path()),
            Err(PackageError::KeyExists(_))
        ));
        assert_eq!(std::fs::read(dir.path().join("k.key")).unwrap(), before);
        // Only the .pub exists: still refused, and no stray .key is left behind.
        std::fs::write(dir.path().join("j.pub"), "x").unwrap();
        assert!(matches!(
            generate_key("j", dir.path()),
            Err(PackageError::KeyExists(_))
        ));
        assert!(!dir.path().join("j.key").exists());
        for bad in ["../evil", "", "a b", ".k"] {
            assert!(matches!(
                generate_key(bad, dir.path()),
                Err(PackageError::InvalidName { .. })
            ));
        }
    }

    #[test]
    fn malformed_public_files_are_rejected() {
        let p = Path::new("x.pub");
        let good_hex = hex::encode(
            SigningKey::from_bytes(&[7u8; 32])
                .verifying_key()
                .as_bytes(),
        );
        assert!(PublicKey::parse(&format!("{PUBLIC_TAG} {good_hex} k\n"), p).is_ok());
        assert!(PublicKey::parse(&format!("{PUBLIC_TAG} {good_hex} k\r\n"), p).is_ok());
        let bad = [
            String::new(),
            format!("{PUBLIC_TAG} {good_hex}"),
            format!("{PUBLIC_TAG} {good_hex} k extra"),
            format!("{PUBLIC_TAG}  {good_hex} k"),
            format!("{SECRET_TAG} {good_hex} k"),
            format!("ssh-ed25519 {good_hex} k"),
            format!("{PUBLIC_TAG} {} k", good_hex.to_uppercase()),
            format!("{PUBLIC_TAG} {} k", &good_hex[..62]),
            format!("{PUBLIC_TAG} {good_hex} ../k"),
            format!("{PUBLIC_TAG} {good_hex} k\n\n"),
        ];
        for text in bad {
            assert!(PublicKey::parse(&text, p).is_err(), "{text:?}");
        }
    }

    #[test]
    fn weak_public_key_is_rejected() {
        // The identity point (encoding 0x01 00..00) has small order.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        let text = format!("{PUBLIC_TAG} {} weak\n", hex::encode(weak));
        assert!(matches!(
            PublicKey::parse(&text, Path::new("weak.pub")),
            Err(PackageError::WeakKey(_))
        ));
    }

    #[test]
    fn key_id_text_form_is_strict() {
        let id: KeyId = "0123456789abcdef".parse().unwrap();
        assert_eq!(id.to_string(), "0123456789abcdef");
        for bad in [
            "0123456789ABCDEF",
            "0123",
            "0123456789abcdef00",
            "zz23456789abcdef",
        ] {
            assert!(bad.parse::<KeyId>().is_err(), "{bad}");
        }
    }
}
