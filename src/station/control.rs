//! Resuming a halted batch from anywhere: a person writes a resume request into the batch
//! folder (`flashline station resume`, or the GUI's Resume), and the running station
//! takes it, records who and why in the batch report, and removes it.
//!
//! A file is the channel because the station may run in another terminal, or in the GUI,
//! and the batch folder is the one thing both sides know. The request is small JSON,
//! read with a size limit and never through a symbolic link (see [`crate::secure_fs`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The request's file name in the batch folder.
pub const RESUME: &str = "resume-request.json";
/// Largest request read.
const MAX_LEN: u64 = 16 * 1024;
/// Where station batches are kept under flashline's home.
pub const BATCHES: &str = "station";

/// A person's request to resume a halted batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResumeRequest {
    /// Who resumes.
    pub by: String,
    /// Why, in their words.
    pub reason: String,
}

/// Why a request is refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Who or why is missing.
    #[error("a resume needs who ({0}) and why: both must be non-empty")]
    Incomplete(&'static str),
    /// There is no batch to resume.
    #[error("no station batch under {0}")]
    NoBatch(PathBuf),
    /// The file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}

/// Writes a resume request into `batch`, replacing an earlier one not yet taken.
pub fn request_resume(batch: &Path, by: &str, reason: &str) -> Result<PathBuf, ControlError> {
    let (by, reason) = (by.trim(), reason.trim());
    if by.is_empty() {
        return Err(ControlError::Incomplete("--by"));
    }
    if reason.is_empty() {
        return Err(ControlError::Incomplete("--by is given, --reason is not"));
    }
    let path = batch.join(RESUME);
    let request = ResumeRequest {
        by: by.to_string(),
        reason: reason.to_string(),
    };
    let json = serde_json::to_vec(&request).expect("requests serialise");
    crate::state_file::replace(&path, &json).map_err(|source| ControlError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Takes the resume request waiting in `batch`, if any: read, then removed. A request
/// that is not one is removed too and reported in the log.
pub fn take_resume(batch: &Path) -> Option<ResumeRequest> {
    let path = batch.join(RESUME);
    let bytes = crate::secure_fs::read(&path, MAX_LEN).ok().flatten()?;
    let _ = crate::secure_fs::remove(&path);
    match serde_json::from_slice::<ResumeRequest>(&bytes) {
        Ok(r) if !r.by.trim().is_empty() && !r.reason.trim().is_empty() => Some(r),
        Ok(_) | Err(_) => {
            tracing::warn!("{}: not a resume request; ignored", path.display());
            None
        }
    }
}

/// The newest batch folder under `home` (batch folders are named by their start time).
pub fn latest_batch(home: &Path) -> Result<PathBuf, ControlError> {
    let root = home.join(BATCHES);
    std::fs::read_dir(&root)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .max()
        .ok_or(ControlError::NoBatch(root))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_taken_once_and_needs_who_and_why() {
        let dir = tempfile::tempdir().unwrap();
        assert!(request_resume(dir.path(), " ", "x").is_err());
        assert!(request_resume(dir.path(), "ana", "").is_err());
        request_resume(dir.path(), "ana", "canary cable was loose").unwrap();
        let taken = take_resume(dir.path()).unwrap();
        assert_eq!(taken.by, "ana");
        assert_eq!(taken.reason, "canary cable was loose");
        assert!(take_resume(dir.path()).is_none());
        std::fs::write(dir.path().join(RESUME), b"{").unwrap();
        assert!(take_resume(dir.path()).is_none());
        assert!(!dir.path().join(RESUME).exists());
    }
}
