//! Which public keys this computer trusts, and for what.
//!
//! Trust is a directory of `.pub` files, or, once a signed trust root (`root.json`, see
//! [`super::root`]) is installed there, exactly the role keys of that root, each allowed to
//! sign only for the products its roles cover. There is no trust on
//! first use and no way to skip verification: a package verifies only against a key that
//! is already here. The insecure demo key, whose secret half is public in the repository,
//! is trusted for virtual devices only, wherever it is found (also in a folder named with
//! `--trust`), and it can never be part of a root: anyone can sign with it, so no bench
//! setting may let it open a real device.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::keys::{KeyId, PublicKey};
use super::root::{self, Grant, RootState};
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
    /// The roles of the installed root; empty for loose `.pub` keys, which sign for any
    /// product.
    grants: Vec<Grant>,
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
    ///
    /// The station's record of installed roots is `trust-state.json` in flashline's home
    /// (see [`TrustStore::load_dir_with`]).
    pub fn load_dir(dir: &Path) -> Result<Self, PackageError> {
        let state = RootState::at(&crate::paths::home().join(root::STATE_FILE));
        Self::load_dir_with(dir, &state)
    }

    /// [`TrustStore::load_dir`] with the record of installed roots in `state`. Once a root
    /// was installed in `dir`, its removal or rollback is refused here, and an expired root
    /// is refused: loose `.pub` files never come back into force.
    pub fn load_dir_with(dir: &Path, state: &RootState) -> Result<Self, PackageError> {
        if let Some(root) = root::trusted(dir, state)? {
            return Ok(TrustStore::from_root(&root, &dir.join(root::ROOT_FILE)));
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

    /// Trusts exactly the role keys of `root` (read from `source`), for any device (a root
    /// can never hold the demo key), each for the products of its roles. The caller has
    /// checked the root's signatures.
    pub(super) fn from_root(root: &super::SignedRoot, source: &Path) -> Self {
        TrustStore {
            keys: root
                .grants()
                .iter()
                .flat_map(|g| g.keys.values())
                .map(|key| {
                    let trusted = TrustedKey {
                        key: key.clone(),
                        scope: KeyScope::Any,
                        source: source.to_owned(),
                    };
                    (key.id(), trusted)
                })
                .collect(),
            grants: root.grants().to_vec(),
        }
    }

    /// Checks that the distinct, verified `signers` of a package may sign for each of its
    /// target `products`: some role of the root covering the product must count a threshold
    /// of its keys among them. Keys from loose `.pub` files (no root) sign for any product;
    /// once any signer is a root's key, the roles decide.
    pub fn check_roles<'a>(
        &self,
        signers: &[KeyId],
        products: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), PackageError> {
        let by_root = signers
            .iter()
            .any(|id| self.grants.iter().any(|g| g.keys.contains_key(id)));
        if !by_root {
            return Ok(());
        }
        for product in products {
            let counted: Vec<(&Grant, usize)> = self
                .grants
                .iter()
                .filter(|g| g.covers(product))
                .map(|g| {
                    (
                        g,
                        signers.iter().filter(|id| g.keys.contains_key(id)).count(),
                    )
                })
                .collect();
            if counted.iter().any(|(g, n)| *n >= g.threshold as usize) {
                continue;
            }
            match counted
                .iter()
                .filter(|(_, n)| *n > 0)
                .max_by_key(|(_, n)| *n)
            {
                Some((g, n)) => {
                    return Err(PackageError::RoleBelowThreshold {
                        role: g.name.clone(),
                        product: product.to_owned(),
                        signed: *n,
                        threshold: g.threshold,
                    })
                }
                None => {
                    let roles: Vec<&str> = counted.iter().map(|(g, _)| g.name.as_str()).collect();
                    return Err(PackageError::OutsideRole {
                        product: product.to_owned(),
                        roles: if roles.is_empty() {
                            "none".into()
                        } else {
                            roles.join(", ")
                        },
                    });
                }
            }
        }
        Ok(())
    }

    /// Adds every key of `other`. A key present in both keeps the narrower scope, so
    /// combining stores can never widen what a key is trusted for; roles are combined too.
    pub fn merge(&mut self, other: TrustStore) -> Result<(), PackageError> {
        for key in other.keys.into_values() {
            self.insert(key)?;
        }
        self.grants.extend(other.grants);
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

        let store = TrustStore::load_dir(dir.path()).unwrap();
        assert_eq!(store.len(), 2);
        let demo_id = demo_key().id();
        assert_eq!(store.get(demo_id).unwrap().scope(), KeyScope::VirtualOnly);
        assert_eq!(store.get(real.key_id).unwrap().scope(), KeyScope::Any);
    }

    #[test]
    fn duplicates_collapse_and_merge_keeps_narrower_scope() {
        let dir = tempfile::tempdir().unwrap();
        let made = generate_key("a", dir.path()).unwrap();
        std::fs::copy(&made.public_path, dir.path().join("a-copy.pub")).unwrap();
        let store = TrustStore::load_dir(dir.path()).unwrap();
        assert_eq!(store.len(), 1);

        let demo_dir = tempfile::tempdir().unwrap();
        std::fs::write(demo_dir.path().join(DEMO_KEY_FILE), DEMO_PUBLIC_KEY).unwrap();
        let mut wide = TrustStore::load_dir(demo_dir.path()).unwrap();
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
        let err = TrustStore::load_dir(dir.path()).unwrap_err();
        assert!(
            matches!(&err, PackageError::KeyFileInvalid { path, .. } if path.ends_with("broken.pub"))
        );
        assert!(err.to_string().contains("broken.pub"));
    }
}
