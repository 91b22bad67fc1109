//! What `flashline inspect` shows: the claimed manifest and the state of each signature.
//!
//! Inspection never fails on signature problems, it reports them, so a technician can see
//! why a package is refused. It does not hash the images; only [`Package::verify`] does.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Serialize;

use super::trust::{KeyScope, TrustStore};
use super::{KeyId, Manifest, Package, PackageError};

/// A serializable description of an opened (not verified) package.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// The package file.
    pub path: PathBuf,
    /// Its length in bytes.
    pub package_size: u64,
    /// The manifest as the package claims it.
    pub manifest: Manifest,
    /// One report per signature entry, in file order.
    pub signatures: Vec<SignatureReport>,
}

/// The state of one signature entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignatureReport {
    /// The key id the entry names.
    pub key_id: KeyId,
    /// What checking it against the trust store found.
    #[serde(flatten)]
    pub status: SignatureStatus,
}

/// Outcome of checking one signature entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum SignatureStatus {
    /// Valid, by a trusted key.
    Trusted {
        /// The trusted key's name.
        name: String,
        /// What that key may sign for.
        scope: KeyScope,
    },
    /// The key is not in the trust store.
    UnknownKey,
    /// The key is trusted but the signature does not verify.
    BadSignature,
    /// A second entry by a key that already signed.
    Duplicate,
}

/// Checks each signature of `package` against `trust` and reports, without failing.
pub fn inspect(package: &Package, trust: &TrustStore) -> Inspection {
    let mut seen = BTreeSet::new();
    let signatures = package
        .signature_key_ids()
        .enumerate()
        .map(|(index, key_id)| {
            let status = if !seen.insert(key_id) {
                SignatureStatus::Duplicate
            } else {
                match package.check_signature(index, trust) {
                    Ok(signer) => SignatureStatus::Trusted {
                        name: signer.name,
                        scope: signer.scope,
                    },
                    Err(PackageError::UnknownKey(_)) => SignatureStatus::UnknownKey,
                    Err(_) => SignatureStatus::BadSignature,
                }
            };
            SignatureReport { key_id, status }
        })
        .collect();
    Inspection {
        path: package.path().to_owned(),
        package_size: package.file_len(),
        manifest: package.manifest().clone(),
        signatures,
    }
}
