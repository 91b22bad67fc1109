//! The content-addressed package cache: `<cache>/targets/sha256/<hex>`.
//!
//! A file is named by the sha256 the signed targets metadata gives it, so two target names
//! with the same bytes share one file and a new version never overwrites an old one. A
//! file on disk is not trusted for being there: every use re-checks its length and hash.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use tempfile::NamedTempFile;

use super::RepoError;

/// The cache folder.
pub(super) struct TargetCache {
    dir: PathBuf,
}

impl TargetCache {
    pub(super) fn new(cache: &Path) -> Self {
        TargetCache {
            dir: cache.join("targets").join("sha256"),
        }
    }

    /// Where the file with this sha256 (lowercase hex) lives.
    pub(super) fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(sha256)
    }

    /// The cached file, if it is there with exactly this length and sha256. A file that
    /// does not match (a damaged disk, a hand edit) is removed so that it is downloaded
    /// again.
    pub(super) fn lookup(&self, sha256: &str, length: u64) -> Result<Option<PathBuf>, RepoError> {
        let path = self.path(sha256);
        let Ok(mut file) = std::fs::File::open(&path) else {
            return Ok(None);
        };
        let len = file.metadata().map_err(RepoError::io(&path))?.len();
        let matches = len == length && hash_file(&mut file, &path)? == sha256;
        if matches {
            return Ok(Some(path));
        }
        tracing::warn!(
            path = %path.display(),
            "cached package does not match its signed length and sha256; downloading it again"
        );
        std::fs::remove_file(&path).map_err(RepoError::io(&path))?;
        Ok(None)
    }

    /// A temporary file in the cache folder, for a download in progress.
    pub(super) fn temp(&self) -> Result<NamedTempFile, RepoError> {
        std::fs::create_dir_all(&self.dir).map_err(RepoError::io(&self.dir))?;
        tempfile::Builder::new()
            .prefix(".download-")
            .tempfile_in(&self.dir)
            .map_err(RepoError::io(&self.dir))
    }

    /// Moves a complete, verified download to its place.
    pub(super) fn store(&self, temp: NamedTempFile, sha256: &str) -> Result<PathBuf, RepoError> {
        let path = self.path(sha256);
        temp.persist(&path)
            .map_err(|e| RepoError::io(&path)(e.error))?;
        Ok(path)
    }
}

/// The lowercase hex sha256 of a file's bytes, streamed.
fn hash_file(file: &mut std::fs::File, path: &Path) -> Result<String, RepoError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(RepoError::io(path))?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}
