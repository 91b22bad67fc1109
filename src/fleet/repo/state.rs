//! The station's last verified metadata, on disk.
//!
//! ```text
//! <cache>/tuf/current/metadata/   the metadata files of the last verified load, as received
//! <cache>/tuf/current/datastore/  tough's datastore: the versions it trusts (anti-rollback)
//!                                 and the latest time it saw (the clock may not go back)
//! <cache>/tuf/current/verified.json  when that load was verified, and when it expires
//! <cache>/tuf/open-*/             each open repository's own copy of the datastore
//! ```
//!
//! A sync verifies into `staging/` (starting from a copy of the current datastore, so the
//! rollback checks see what this station already trusts) and only a load that tough
//! accepted replaces `current/`. A failed or refused sync leaves `current/` untouched, so
//! the metadata files and the datastore always belong to the same verified load. The swap
//! is two renames; an interruption between them leaves `previous/`, which is taken back.
//! Syncs and opens take `<cache>/tuf/state.lock` (across threads and processes: a station
//! runner and the GUI may share one cache), and an open [`super::Repository`] works from
//! its own copy of the datastore, so a later sync never pulls a folder from under it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::RepoError;

/// The last verified load's times, for the station's display and messages. Decisions are
/// tough's, on the signed metadata; this file only says since when and until when.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(super) struct Verified {
    /// Seconds since the Unix epoch when the repository's metadata was last verified.
    pub verified_at: u64,
    /// Seconds since the Unix epoch when the earliest of its roles expires.
    pub expires: u64,
}

impl Verified {
    pub(super) fn new(verified_at: SystemTime, expires: SystemTime) -> Self {
        let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Verified {
            verified_at: secs(verified_at),
            expires: secs(expires),
        }
    }

    pub(super) fn verified_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.verified_at)
    }

    pub(super) fn expires(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.expires)
    }
}

/// The `tuf` folder under the station's cache.
pub(super) struct State {
    dir: PathBuf,
}

impl State {
    /// Opens (creating) `<cache>/tuf`, taking back a `current/` an interrupted swap left
    /// as `previous/`.
    pub(super) fn open(cache: &Path) -> Result<State, RepoError> {
        let state = State {
            dir: cache.join("tuf"),
        };
        std::fs::create_dir_all(&state.dir).map_err(RepoError::io(&state.dir))?;
        let previous = state.dir.join("previous");
        if !state.current().exists() && previous.exists() {
            std::fs::rename(&previous, state.current()).map_err(RepoError::io(&previous))?;
        }
        Ok(state)
    }

    /// The last verified load.
    pub(super) fn current(&self) -> PathBuf {
        self.dir.join("current")
    }

    /// Its metadata files, as a repository folder tough can load from (`file://`).
    pub(super) fn metadata(&self) -> PathBuf {
        self.current().join("metadata")
    }

    /// Its tough datastore.
    pub(super) fn datastore(&self) -> PathBuf {
        self.current().join("datastore")
    }

    /// When it was verified and when it expires; `None` before the first sync.
    pub(super) fn verified(&self) -> Option<Verified> {
        let bytes = std::fs::read(self.current().join("verified.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Waits for and takes the lock that serializes syncs and opens of this cache.
    pub(super) fn lock(&self) -> Result<crate::state_file::Lock, RepoError> {
        let file = self.dir.join("state");
        crate::state_file::Lock::take(&file).map_err(RepoError::io(&file))
    }

    /// A fresh `staging/` whose datastore is a copy of the current one; returns its
    /// datastore folder.
    pub(super) fn begin(&self) -> Result<PathBuf, RepoError> {
        let staging = self.dir.join("staging");
        remove_dir(&staging)?;
        let datastore = staging.join("datastore");
        std::fs::create_dir_all(staging.join("metadata")).map_err(RepoError::io(&staging))?;
        self.copy_datastore(&datastore)?;
        Ok(datastore)
    }

    /// A copy of the current datastore for one open repository (`tuf/open-*`, removed
    /// when it is dropped).
    pub(super) fn private_datastore(&self) -> Result<tempfile::TempDir, RepoError> {
        let copy = tempfile::Builder::new()
            .prefix("open-")
            .tempdir_in(&self.dir)
            .map_err(RepoError::io(&self.dir))?;
        self.copy_datastore(copy.path())?;
        Ok(copy)
    }

    /// Copies the current datastore's files into `to` (created if needed).
    fn copy_datastore(&self, to: &Path) -> Result<(), RepoError> {
        std::fs::create_dir_all(to).map_err(RepoError::io(to))?;
        if let Ok(entries) = std::fs::read_dir(self.datastore()) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_file()) {
                    let copy = to.join(entry.file_name());
                    std::fs::copy(entry.path(), &copy).map_err(RepoError::io(&copy))?;
                }
            }
        }
        Ok(())
    }

    /// Makes the staged load current: its metadata files as received, and its times.
    pub(super) fn commit(
        &self,
        files: &BTreeMap<String, Vec<u8>>,
        verified: Verified,
    ) -> Result<(), RepoError> {
        let staging = self.dir.join("staging");
        for (name, bytes) in files {
            let path = staging.join("metadata").join(name);
            std::fs::write(&path, bytes).map_err(RepoError::io(&path))?;
        }
        let path = staging.join("verified.json");
        let json = serde_json::to_vec_pretty(&verified).expect("plain numbers serialize");
        std::fs::write(&path, json).map_err(RepoError::io(&path))?;
        let previous = self.dir.join("previous");
        remove_dir(&previous)?;
        if self.current().exists() {
            std::fs::rename(self.current(), &previous).map_err(RepoError::io(&previous))?;
        }
        std::fs::rename(&staging, self.current()).map_err(RepoError::io(&staging))?;
        remove_dir(&previous)
    }

    /// Throws a failed sync's staging away.
    pub(super) fn abandon(&self) {
        if let Err(e) = remove_dir(&self.dir.join("staging")) {
            tracing::warn!("{e}");
        }
    }
}

fn remove_dir(dir: &Path) -> Result<(), RepoError> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(RepoError::io(dir)(e)),
        _ => Ok(()),
    }
}
