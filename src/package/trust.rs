//! Which public keys this computer trusts, and for what.
//!
//! Trust is a directory of `.pub` files, or, once a signed trust root (`root.json`, see
//! [`super::root`]) is installed there, exactly the keys of that root. There is no trust on
//! first use and no way to skip verification: a package verifies only against a key that
//! is already here. The insecure demo key, whose secret half is public in the repository,
//! is trusted for virtual devices only, wherever it is found (also in a folder named with
//! `--trust`), and it can never be part of a root: anyone can sign with it, so no bench
//! setting may let it open a real device.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::keys::{KeyId, PublicKey};
use super::PackageError;

/// The demo public key, embedded so the virtual bench works out of the box.
const DEMO_PUBLIC_KEY: &str = include_str!("../../assets/demo-keys/flashline-demo-INSECURE.pub");
const DEMO_KEY_FILE: &str = "flashline-demo-INSECURE.pub";

/// What packages signed by a key may be flashed onto.
///
/// Declared from widest to narrowest, so `max` of two scopes is the narrower one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyScope {
    /// Real and virtual devices.
    Any,
    /// Virtual (simulated) devices only; the engine refuses real ones.
    VirtualOnly,
}

/// How a trust directory was chosen: flashline's default folder or one the user named.
///
/// It widens nothing: the demo key is [`KeyScope::VirtualOnly`] from either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// flashline's own default trust directory.
    Default,
    /// A directory the user named (`--trust`).
    Explicit,
}

/// One trusted public key.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    key: PublicKey,
    scope: KeyScope,
    source: PathBuf,
}

impl TrustedKey {
    /// The key id.
    pub fn id(&self) -> KeyId {
        self.key.id()
    }

    /// The name from the `.pub` file.
    pub fn name(&self) -> &str {
        self.key.name()
    }

    /// What this key may sign for.
    pub fn scope(&self) -> KeyScope {
        self.scope
    }

    /// The `.pub` file it came from (a placeholder path for the embedded demo key).
    pub fn source(&self) -> &Path {
        &self.source
    }

    pub(crate) fn public_key(&self) -> &PublicKey {
        &self.key
    }
}

/// The set of trusted keys, by key id.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    keys: BTreeMap<KeyId, TrustedKey>,
}

impl TrustStore {
    /// A store that trusts nothing.
    pub fn empty() -> Self {
        TrustStore::default()
    }

    /// Trusts only the embedded demo key, for virtual devices only.
    pub fn demo() -> Self {
        let mut store = TrustStore::empty();
        store
            .insert(TrustedKey {
                key: demo_key(),
                scope: KeyScope::VirtualOnly,
                source: PathBuf::from(DEMO_KEY_FILE),
            })
            .expect("an empty store has no collisions");
        store
    }

    /// Loads the trust of `dir`: the keys of its signed root if one is installed, else every
    /// `*.pub` regular file in it; other entries are ignored.
    ///
    /// With a root, loose `.pub` files are not trusted: a key the root rotated out must stop
    /// being trusted even if its file is still lying in the folder. A malformed or weak
    /// `.pub`, or a root that is malformed or not signed by its own threshold, is an error
    /// naming the file: silently skipping a key the user meant to trust would make a good
    /// package fail later with a misleading "unknown key". Files are read in name order;
    /// the same key twice counts once.
    pub fn load_dir(dir: &Path, _origin: Origin) -> Result<Self, PackageError> {
        if let Some(root) = super::root::installed(dir)? {
            return Ok(TrustStore::from_root(
                &root,
                &dir.join(super::root::ROOT_FILE),
            ));
        }
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(PackageError::io(dir))? {
            let path = entry.map_err(PackageError::io(dir))?.path();
            let is_pub = path.extension().is_some_and(|ext| ext == "pub");
            if is_pub && std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
                paths.push(path);
            }
        }
        paths.sort();
        let demo = demo_key();
        let mut store = TrustStore::empty();
        for path in paths {
            let key = PublicKey::load(&path)?;
            let scope = if key.verifying_key() == demo.verifying_key() {
                KeyScope::VirtualOnly
            } else {
                KeyScope::Any
            };
            store.insert(TrustedKey {
                key,
                scope,
                source: path,
            })?;
        }
        Ok(store)
    }

    /// Trusts exactly the keys of `root` (read from `source`), for any device: a root can
    /// never hold the demo key. The caller has checked the root's signatures.
    pub(super) fn from_root(root: &super::SignedRoot, source: &Path) -> Self {
        TrustStore {
            keys: root
                .keys()
                .map(|key| {
                    let trusted = TrustedKey {
                        key: key.clone(),
                        scope: KeyScope::Any,
                        source: source.to_owned(),
                    };
                    (key.id(), trusted)
                })
                .collect(),
        }
    }

    /// Adds every key of `other`. A key present in both keeps the narrower scope, so
    /// combining stores can never widen what a key is trusted for.
    pub fn merge(&mut self, other: TrustStore) -> Result<(), PackageError> {
        for key in other.keys.into_values() {
            self.insert(key)?;
        }
        Ok(())
    }

    /// The trusted key with this id.
    pub fn get(&self, id: KeyId) -> Option<&TrustedKey> {
        self.keys.get(&id)
    }

    /// All trusted keys, by key id.
    pub fn keys(&self) -> impl Iterator<Item = &TrustedKey> {
        self.keys.values()
    }

    /// Number of trusted keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True if nothing is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn insert(&mut self, key: TrustedKey) -> Result<(), PackageError> {
        match self.keys.get_mut(&key.id()) {
            None => {
                self.keys.insert(key.id(), key);
            }
            Some(existing) => {
                if existing.key.verifying_key() != key.key.verifying_key() {
                    return Err(PackageError::KeyIdCollision(key.id()));
                }
                existing.scope = existing.scope.max(key.scope);
            }
        }
        Ok(())
    }
}

/// The embedded demo key. It is a constant of this build, checked by a unit test, so a
/// failure here is a build defect rather than bad input.
pub(super) fn demo_key() -> PublicKey {
    PublicKey::parse(DEMO_PUBLIC_KEY, Path::new(DEMO_KEY_FILE))
        .expect("the embedded demo public key is valid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::generate_key;

    #[test]
    fn demo_store_is_virtual_only() {
        let store = TrustStore::demo();
        assert_eq!(store.len(), 1);
        let key = store.keys().next().unwrap();
        assert_eq!(key.scope(), KeyScope::VirtualOnly);
        assert_eq!(key.name(), "flashline-demo-INSECURE");
    }

    #[test]
    fn demo_key_is_virtual_only_from_any_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DEMO_KEY_FILE), DEMO_PUBLIC_KEY).unwrap();
        let real = generate_key("release", dir.path()).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a key").unwrap();
        std::fs::create_dir(dir.path().join("folder.pub")).unwrap();

        let default = TrustStore::load_dir(dir.path(), Origin::Default).unwrap();
        assert_eq!(default.len(), 2);
        let demo_id = demo_key().id();
        assert_eq!(default.get(demo_id).unwrap().scope(), KeyScope::VirtualOnly);
        assert_eq!(default.get(real.key_id).unwrap().scope(), KeyScope::Any);

        let explicit = TrustStore::load_dir(dir.path(), Origin::Explicit).unwrap();
        assert_eq!(
            explicit.get(demo_id).unwrap().scope(),
            KeyScope::VirtualOnly
        );
        assert_eq!(explicit.get(real.key_id).unwrap().scope(), KeyScope::Any);
    }

    #[test]
    fn duplicates_collapse_and_merge_keeps_narrower_scope() {
        let dir = tempfile::tempdir().unwrap();
        let made = generate_key("a", dir.path()).unwrap();
        std::fs::copy(&made.public_path, dir.path().join("a-copy.pub")).unwrap();
        let store = TrustStore::load_dir(dir.path(), Origin::Explicit).unwrap();
        assert_eq!(store.len(), 1);

        let demo_dir = tempfile::tempdir().unwrap();
        std::fs::write(demo_dir.path().join(DEMO_KEY_FILE), DEMO_PUBLIC_KEY).unwrap();
        let mut wide = TrustStore::load_dir(demo_dir.path(), Origin::Explicit).unwrap();
        wide.merge(TrustStore::demo()).unwrap();
        assert_eq!(
            wide.get(demo_key().id()).unwrap().scope(),
            KeyScope::VirtualOnly
        );
    }

    #[test]
    fn malformed_pub_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("broken.pub"), "garbage").unwrap();
        let err = TrustStore::load_dir(dir.path(), Origin::Default).unwrap_err();
        assert!(
            matches!(&err, PackageError::KeyFileInvalid { path, .. } if path.ends_with("broken.pub"))
        );
        assert!(err.to_string().contains("broken.pub"));
    }
}
