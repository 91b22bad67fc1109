//! A signed trust root: the set of release keys a flashing station trusts, with a threshold
//! and a version, so that keys can be rotated without anyone re-deciding trust by hand.
//!
//! The root lives as `root.json` in the trust directory:
//!
//! ```text
//! {"signed": {"version": 2, "expires": "2027-06-30T00:00:00Z", "threshold": 2,
//!             "keys": [{"name": "…", "public_key": "<64 hex>"}, …],
//!             "roles": [{"name": "zte-modems", "products": ["MF8*", "zte-demo-phone"],
//!                        "threshold": 1, "keys": [{"name": "…", "public_key": "…"}]}]},
//!  "signatures": [{"key_id": "<16 hex>", "signature": "<128 hex>"}, …]}
//! ```
//!
//! The root's own `keys` sign roots only. Packages are signed by the keys of its `roles`:
//! each role delegates a set of product patterns (`*` matches any run of characters) to its
//! keys with its own threshold, so one release key cannot sign for every product, and a
//! package is accepted only if, for each product it targets, a role covering that product
//! has a threshold of its keys among the package's signers.
//!
//! A root `expires`: past that time it is refused with the way to update it, so a station
//! cut off from new roots (an indefinite freeze) stops rather than trusting stale keys
//! forever. The highest root a station installed in each trust folder is recorded outside
//! that folder (`trust-state.json` in flashline's home), so deleting `root.json` (which
//! would bring loose `.pub` files back), or putting an older root in its place, is refused.
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
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ed25519_dalek::Signature;
use serde::{Deserialize, Serialize};

use super::keys::{KeyId, PublicKey, SecretKey};
use super::{names, PackageError};

mod state;
pub use state::RootState;

/// File name of the installed root inside a trust directory.
pub const ROOT_FILE: &str = "root.json";
/// Largest root file accepted, checked before it is parsed.
pub const MAX_ROOT_LEN: u64 = 64 * 1024;
/// Most keys one root may list.
pub const MAX_ROOT_KEYS: usize = 32;
/// Most signature entries one root file may carry.
pub const MAX_ROOT_SIGNATURES: usize = 64;
/// Most roles one root may delegate to.
pub const MAX_ROLES: usize = 32;
/// Most product patterns one role may cover.
pub const MAX_ROLE_PRODUCTS: usize = 64;
/// File name, inside flashline's home, of the record of installed roots.
pub const STATE_FILE: &str = "trust-state.json";
/// Folder, inside a trust folder, that `trust init` moves loose `.pub` files to.
pub const RETIRED_KEYS_DIR: &str = "retired-keys";
/// Largest state file read.
const MAX_STATE_LEN: u64 = 4 * 1024 * 1024;
/// Prefix of every signed root message, so a root signature can never be replayed as a
/// package signature (or the other way round) with the same key.
pub const ROOT_DOMAIN: &[u8] = b"flashline-trust-root-v1\0";

/// The signed part of a root: which keys are trusted and how many must sign its successor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootDocument {
    /// Monotonic version; a station never goes back to a lower one.
    pub version: u64,
    /// When the root stops being trusted.
    pub expires: Expiry,
    /// How many distinct keys of this root must sign the next root (and this one).
    pub threshold: u32,
    /// The root keys: they sign roots, not packages.
    pub keys: Vec<RootKey>,
    /// Who may sign packages, for which products.
    pub roles: Vec<Role>,
}

/// A delegation: the keys that may sign packages for some products, and how many must.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// The role's name (identifier charset), shown in refusals.
    pub name: String,
    /// Product patterns: product names (printable ASCII) with `*` for any run of characters.
    pub products: Vec<String>,
    /// How many distinct keys of the role must sign a package.
    pub threshold: u32,
    /// The role's keys.
    pub keys: Vec<RootKey>,
}

/// A point in time written as RFC 3339 (`2027-06-30T00:00:00Z`); the text is kept as
/// written, so the signed bytes of a root never change by being read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Expiry {
    text: String,
    at: SystemTime,
}

impl Expiry {
    /// `after` from now, to the second.
    pub fn after(after: Duration) -> Self {
        let text = humantime::format_rfc3339_seconds(SystemTime::now() + after).to_string();
        Expiry::try_from(text).expect("a formatted time parses")
    }

    /// Whether the time has passed at `now`.
    pub fn passed(&self, now: SystemTime) -> bool {
        now >= self.at
    }
}

impl std::fmt::Display for Expiry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl TryFrom<String> for Expiry {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let at = humantime::parse_rfc3339(&text).map_err(|e| {
            format!("expected an RFC 3339 time such as 2027-06-30T00:00:00Z, got {text:?}: {e}")
        })?;
        Ok(Expiry { text, at })
    }
}

impl From<Expiry> for String {
    fn from(e: Expiry) -> String {
        e.text
    }
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
    grants: Vec<Grant>,
    signatures: Vec<RootSignature>,
}

/// A role with its keys checked: what a trust store uses to decide whether the signers of a
/// package may sign for its products.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The role's name.
    pub name: String,
    /// Its product patterns.
    pub products: Vec<String>,
    /// Its threshold.
    pub threshold: u32,
    /// Its keys, by id.
    pub keys: BTreeMap<KeyId, PublicKey>,
}

impl Grant {
    /// Whether one of the role's patterns matches `product`.
    pub fn covers(&self, product: &str) -> bool {
        self.products
            .iter()
            .any(|p| glob(p.as_bytes(), product.as_bytes()))
    }
}

/// Glob match with `*` as the only wildcard (any run of characters, also none), in
/// O(pattern × text) steps whatever the pattern: on a mismatch, only the last `*` seen is
/// let to swallow one more character.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
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
        let (keys, grants) = check_document(&file.signed, source)?;
        Ok(SignedRoot {
            document: file.signed,
            keys,
            grants,
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
        let (keys, grants) = check_document(&document, Path::new("the new root"))?;
        let mut root = SignedRoot {
            document,
            keys,
            grants,
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

    /// The root keys (which sign roots), by key id.
    pub fn keys(&self) -> impl Iterator<Item = &PublicKey> {
        self.keys.values()
    }

    /// The roles, with their keys checked.
    pub fn grants(&self) -> &[Grant] {
        &self.grants
    }

    /// Refuses the root if it has expired at `now`; `path` names it in the error.
    pub fn check_fresh(&self, path: &Path, now: SystemTime) -> Result<(), PackageError> {
        if self.document.expires.passed(now) {
            return Err(PackageError::RootExpired {
                path: path.to_owned(),
                version: self.version(),
                expires: self.document.expires.to_string(),
            });
        }
        Ok(())
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

/// Checks what the schema cannot express and returns the root keys by id, and the roles.
fn check_document(
    document: &RootDocument,
    source: &Path,
) -> Result<(BTreeMap<KeyId, PublicKey>, Vec<Grant>), PackageError> {
    let keys = check_keys(&document.keys, source)?;
    if document.threshold == 0 || document.threshold as usize > keys.len() {
        return Err(PackageError::RootThresholdInvalid {
            threshold: document.threshold,
            keys: keys.len(),
        });
    }
    if document.roles.is_empty() || document.roles.len() > MAX_ROLES {
        return Err(PackageError::RootInvalid {
            path: source.to_owned(),
            reason: format!(
                "it delegates to {} roles; 1 to {MAX_ROLES} are allowed (packages are signed by role keys)",
                document.roles.len()
            ),
        });
    }
    let mut grants: Vec<Grant> = Vec::with_capacity(document.roles.len());
    for role in &document.roles {
        let invalid = |reason: String| PackageError::RoleInvalid {
            role: role.name.clone(),
            reason,
        };
        names::identifier("role name", &role.name)?;
        if grants.iter().any(|g| g.name == role.name) {
            return Err(invalid("the name is used twice".into()));
        }
        if role.products.is_empty() || role.products.len() > MAX_ROLE_PRODUCTS {
            return Err(invalid(format!(
                "it lists {} product patterns; 1 to {MAX_ROLE_PRODUCTS} are allowed",
                role.products.len()
            )));
        }
        for pattern in &role.products {
            // The charset of product names (printable ASCII), with `*` as the wildcard.
            names::product(pattern).map_err(|_| {
                invalid(format!(
                    "product pattern {pattern:?} must be 1 to 64 printable ASCII characters"
                ))
            })?;
        }
        let keys = check_keys(&role.keys, source)?;
        if role.threshold == 0 || role.threshold as usize > keys.len() {
            return Err(invalid(format!(
                "its threshold {} is not between 1 and its {} keys",
                role.threshold,
                keys.len()
            )));
        }
        grants.push(Grant {
            name: role.name.clone(),
            products: role.products.clone(),
            threshold: role.threshold,
            keys,
        });
    }
    Ok((keys, grants))
}

/// Checks a list of keys (count, names, no demo key, no duplicates) and returns them by id.
fn check_keys(
    entries: &[RootKey],
    source: &Path,
) -> Result<BTreeMap<KeyId, PublicKey>, PackageError> {
    if entries.is_empty() || entries.len() > MAX_ROOT_KEYS {
        return Err(PackageError::RootInvalid {
            path: source.to_owned(),
            reason: format!(
                "it lists {} keys; 1 to {MAX_ROOT_KEYS} are allowed",
                entries.len()
            ),
        });
    }
    let demo = super::trust::demo_key();
    let mut keys = BTreeMap::new();
    for entry in entries {
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
    Ok(keys)
}

/// The root file lying in `trust_dir`, if there is one, parsed and checked against its own
/// threshold (an installed root that does not parse or is not self-signed is an error,
/// never silently skipped). Says nothing about rollback or expiry: see [`trusted`].
pub fn installed(trust_dir: &Path) -> Result<Option<SignedRoot>, PackageError> {
    let path = trust_dir.join(ROOT_FILE);
    if path.symlink_metadata().is_err() {
        return Ok(None);
    }
    let root = SignedRoot::load(&path)?;
    root.check_self_signed()?;
    Ok(Some(root))
}

/// The root `trust_dir` stands on, judged against the station's record in `state`: none if
/// no root was ever installed there; an error if the root was removed, rolled back or
/// replaced by one the recorded root does not approve. A newer root the recorded one
/// approves (copied in by hand instead of `trust update`) is accepted and recorded. Not
/// checked for expiry, so that an expired root can still approve its successor.
pub fn current(trust_dir: &Path, state: &RootState) -> Result<Option<SignedRoot>, PackageError> {
    let path = trust_dir.join(ROOT_FILE);
    let on_disk = installed(trust_dir)?;
    let Some(recorded) = state.recorded(trust_dir)? else {
        if let Some(root) = &on_disk {
            state.remember(trust_dir, root)?;
        }
        return Ok(on_disk);
    };
    let rolled_back = |found: String| PackageError::RootRolledBack {
        path: path.clone(),
        found,
        installed: recorded.version(),
        state: state.path().to_owned(),
    };
    match on_disk {
        None => Err(rolled_back("missing".into())),
        Some(root) if root.document() == recorded.document() => Ok(Some(root)),
        Some(root) if root.version() > recorded.version() => {
            recorded.check_successor(&root)?;
            state.remember(trust_dir, &root)?;
            Ok(Some(root))
        }
        Some(root) if root.version() == recorded.version() => Err(rolled_back(format!(
            "a different root with the same version {}",
            root.version()
        ))),
        Some(root) => Err(rolled_back(format!("version {}", root.version()))),
    }
}

/// The root `trust_dir` trusts now: [`current`], refused once it has expired, or when the
/// clock stands well before the latest time the station has seen (a clock set back would
/// otherwise revive an expired root).
pub fn trusted(trust_dir: &Path, state: &RootState) -> Result<Option<SignedRoot>, PackageError> {
    let root = current(trust_dir, state)?;
    if let Some(root) = &root {
        let now = SystemTime::now();
        state.check_clock(now)?;
        root.check_fresh(&trust_dir.join(ROOT_FILE), now)?;
    }
    Ok(root)
}

/// Installs `root` as the first root of `trust_dir`. Like copying a `.pub` file into the
/// folder, this is the one act of trust a person makes; every later root must be signed
/// by its predecessor ([`update`]). Refused if a root is already installed, or if the
/// station once installed a root there that this one does not succeed (deleting root.json
/// and running `init` again is no way around a rollback). Loose `.pub` files in the
/// folder are moved into [`RETIRED_KEYS_DIR`]: the root decides from now on. Returns where
/// they went.
pub fn install_first(
    trust_dir: &Path,
    root: &SignedRoot,
    state: &RootState,
) -> Result<Vec<PathBuf>, PackageError> {
    let path = trust_dir.join(ROOT_FILE);
    if path.symlink_metadata().is_ok() {
        return Err(PackageError::RootAlreadyInstalled(path));
    }
    root.check_self_signed()?;
    if let Some(recorded) = state.recorded(trust_dir)? {
        if recorded.document() != root.document() {
            recorded.check_successor(root)?;
        }
    }
    root.check_fresh(Path::new("the new root"), SystemTime::now())?;
    write_root(trust_dir, root)?;
    state.remember(trust_dir, root)?;
    retire_loose_keys(trust_dir)
}

/// Replaces the root installed in `trust_dir` with `next` if the current root accepts it
/// as its successor; returns the version replaced. The current root may have expired (this
/// is how an expired station is brought back), the new one may not.
pub fn update(trust_dir: &Path, next: &SignedRoot, state: &RootState) -> Result<u64, PackageError> {
    let current = current(trust_dir, state)?
        .ok_or_else(|| PackageError::RootNotInstalled(trust_dir.join(ROOT_FILE)))?;
    current.check_successor(next)?;
    next.check_fresh(Path::new("the new root"), SystemTime::now())?;
    write_root(trust_dir, next)?;
    state.remember(trust_dir, next)?;
    Ok(current.version())
}

/// Moves every `*.pub` regular file of `trust_dir` into its [`RETIRED_KEYS_DIR`], never
/// overwriting one there; returns the new paths.
fn retire_loose_keys(trust_dir: &Path) -> Result<Vec<PathBuf>, PackageError> {
    let retired = trust_dir.join(RETIRED_KEYS_DIR);
    let mut moved = Vec::new();
    for entry in std::fs::read_dir(trust_dir).map_err(PackageError::io(trust_dir))? {
        let path = entry.map_err(PackageError::io(trust_dir))?.path();
        let is_pub = path.extension().is_some_and(|ext| ext == "pub");
        if !is_pub || !path.symlink_metadata().is_ok_and(|m| m.is_file()) {
            continue;
        }
        std::fs::create_dir_all(&retired).map_err(PackageError::io(&retired))?;
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let mut to = retired.join(&name);
        for n in 1.. {
            if to.symlink_metadata().is_err() {
                break;
            }
            to = retired.join(format!("{n}-{name}"));
        }
        std::fs::rename(&path, &to).map_err(PackageError::io(&path))?;
        moved.push(to);
    }
    Ok(moved)
}

/// Writes the root to a temporary file and renames it into place, so a station never sees
/// half a root (see [`crate::secure_fs::replace`]; the trust folder may be one the user
/// named, reached through links).
fn write_root(trust_dir: &Path, root: &SignedRoot) -> Result<(), PackageError> {
    let path = trust_dir.join(ROOT_FILE);
    crate::secure_fs::replace(&path, root.to_file_text().as_bytes())
        .map_err(PackageError::io(&path))
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
            expires: Expiry::after(Duration::from_secs(3600)),
            threshold,
            roles: vec![Role {
                name: "all".into(),
                products: vec!["*".into()],
                threshold: 1,
                keys: keys.clone(),
            }],
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
        let unknown = text.replacen('{', "{\"mirrors\": 0,", 1);
        assert!(matches!(
            SignedRoot::parse(unknown.as_bytes(), Path::new("r")),
            Err(PackageError::RootInvalid { .. })
        ));
    }

    #[test]
    fn product_patterns() {
        for (pattern, product, want) in [
            ("MF8*", "MF833V", true),
            ("MF8*", "MF79U", false),
            ("*", "anything", true),
            ("zte-*-phone", "zte-demo-phone", true),
            ("zte-*-phone", "zte-demo-phones", false),
            ("a*b*c", "abc", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ] {
            let grant = Grant {
                name: "r".into(),
                products: vec![pattern.into()],
                threshold: 1,
                keys: BTreeMap::new(),
            };
            assert_eq!(grant.covers(product), want, "{pattern} {product}");
        }
        let stars = "*a".repeat(30);
        assert!(!glob(
            stars.as_bytes(),
            "a".repeat(64).replace('a', "b").as_bytes()
        ));
    }

    #[test]
    fn expiry_is_kept_as_written() {
        let e = Expiry::try_from("2027-06-30T00:00:00Z".to_string()).unwrap();
        assert_eq!(e.to_string(), "2027-06-30T00:00:00Z");
        assert!(!e.passed(humantime::parse_rfc3339("2027-06-29T23:59:59Z").unwrap()));
        assert!(e.passed(humantime::parse_rfc3339("2027-06-30T00:00:00Z").unwrap()));
        assert!(Expiry::try_from("next year".to_string()).is_err());
    }
}
