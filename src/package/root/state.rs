//! The station's record of the roots it installed: one entry per trust folder, holding the
//! accepted root itself, kept in flashline's home (never in the trust folder, which is
//! exactly what it guards).
//!
//! With the accepted root at hand, a root file found in the folder can be judged: the same
//! root is fine; a newer one must be a successor the recorded root approves (as `trust
//! update` would have checked); anything else — no root, an older one, a different one of the
//! same version — is a rollback and refused.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{SignedRoot, MAX_STATE_LEN};
use crate::package::PackageError;

/// The state file's contents.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Records {
    /// Root file text by the trust folder's absolute path.
    roots: BTreeMap<String, String>,
}

/// The record of installed roots in one state file.
#[derive(Debug, Clone)]
pub struct RootState {
    path: PathBuf,
}

impl RootState {
    /// The record kept in `path` (normally [`super::STATE_FILE`] in flashline's home).
    pub fn at(path: &Path) -> Self {
        RootState {
            path: path.to_owned(),
        }
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root recorded for `trust_dir`, if any.
    pub fn recorded(&self, trust_dir: &Path) -> Result<Option<SignedRoot>, PackageError> {
        let records = self.read()?;
        records
            .roots
            .get(&key(trust_dir))
            .map(|text| SignedRoot::parse(text.as_bytes(), &self.path))
            .transpose()
    }

    /// Records `root` as the one installed in `trust_dir`.
    pub fn remember(&self, trust_dir: &Path, root: &SignedRoot) -> Result<(), PackageError> {
        let mut records = self.read()?;
        records.roots.insert(key(trust_dir), root.to_file_text());
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let io = PackageError::io(&self.path);
        std::fs::create_dir_all(dir).map_err(PackageError::io(dir))?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(PackageError::io(dir))?;
        let text = serde_json::to_string_pretty(&records).expect("the records serialise");
        tmp.write_all(text.as_bytes())
            .map_err(PackageError::io(&self.path))?;
        tmp.as_file()
            .sync_all()
            .map_err(PackageError::io(&self.path))?;
        tmp.persist(&self.path).map_err(|e| io(e.error))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    fn read(&self) -> Result<Records, PackageError> {
        let invalid = |reason: String| PackageError::TrustStateInvalid {
            path: self.path.clone(),
            reason,
        };
        let file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Records::default()),
            Err(e) => return Err(invalid(e.to_string())),
        };
        let mut bytes = Vec::new();
        file.take(MAX_STATE_LEN + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| invalid(e.to_string()))?;
        if bytes.len() as u64 > MAX_STATE_LEN {
            return Err(invalid(format!("it is larger than {MAX_STATE_LEN} bytes")));
        }
        // A damaged record is refused, not reset: resetting it would lift the rollback floor.
        serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))
    }
}

/// The trust folder as one spelling: canonical if it exists, else absolute.
fn key(trust_dir: &Path) -> String {
    std::fs::canonicalize(trust_dir)
        .or_else(|_| std::path::absolute(trust_dir))
        .unwrap_or_else(|_| trust_dir.to_owned())
        .display()
        .to_string()
}
