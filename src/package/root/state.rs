//! The station's record of the roots it installed: one entry per trust folder, holding the
//! accepted root itself, kept in flashline's home (never in the trust folder, which is
//! exactly what it guards).
//!
//! With the accepted root at hand, a root file found in the folder can be judged: the same
//! root is fine; a newer one must be a successor the recorded root approves (as `trust
//! update` would have checked); anything else — no root, an older one, a different one of the
//! same version — is a rollback and refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::{SignedRoot, MAX_STATE_LEN};
use crate::package::PackageError;
use crate::state_file;

/// How far the clock may stand before the latest time seen: clocks are corrected by a few
/// seconds or minutes all the time; a clock an hour behind was set back.
const CLOCK_TOLERANCE: Duration = Duration::from_secs(60 * 60);

/// The state file's contents.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Records {
    /// Root file text by the trust folder's absolute path.
    roots: BTreeMap<String, String>,
    /// The latest time (RFC 3339) a root was trusted at, moved forward at most once per
    /// [`CLOCK_TOLERANCE`].
    #[serde(default)]
    latest_time: Option<String>,
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

    /// Refuses a clock that stands more than [`CLOCK_TOLERANCE`] before the latest time a
    /// root was trusted at, and moves that time forward (written at most once per tolerance).
    pub fn check_clock(&self, now: SystemTime) -> Result<(), PackageError> {
        let _lock = self.lock()?;
        let mut records = self.read()?;
        let latest = records
            .latest_time
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339(t).ok());
        match latest {
            Some(latest) if now + CLOCK_TOLERANCE < latest => Err(PackageError::ClockSetBack {
                now: humantime::format_rfc3339_seconds(now).to_string(),
                latest: humantime::format_rfc3339_seconds(latest).to_string(),
                state: self.path.clone(),
            }),
            Some(latest) if now < latest + CLOCK_TOLERANCE => Ok(()),
            _ => {
                records.latest_time = Some(humantime::format_rfc3339_seconds(now).to_string());
                self.write(&records)
            }
        }
    }

    /// Records `root` as the one installed in `trust_dir`.
    pub fn remember(&self, trust_dir: &Path, root: &SignedRoot) -> Result<(), PackageError> {
        let _lock = self.lock()?;
        let mut records = self.read()?;
        records.roots.insert(key(trust_dir), root.to_file_text());
        self.write(&records)
    }

    /// Replaces the state file atomically.
    fn write(&self, records: &Records) -> Result<(), PackageError> {
        let text = serde_json::to_string_pretty(records).expect("the records serialise");
        state_file::replace(&self.path, text.as_bytes()).map_err(PackageError::io(&self.path))
    }

    /// Takes the lock for one read-modify-write of the state file.
    fn lock(&self) -> Result<state_file::Lock, PackageError> {
        state_file::Lock::take(&self.path).map_err(PackageError::io(&self.path))
    }

    fn read(&self) -> Result<Records, PackageError> {
        let invalid = |reason: String| PackageError::TrustStateInvalid {
            path: self.path.clone(),
            reason,
        };
        let bytes = match state_file::read(&self.path, MAX_STATE_LEN) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(Records::default()),
            Err(e) => return Err(invalid(e.to_string())),
        };
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
