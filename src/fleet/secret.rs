//! Secrets the fleet needs (hawkBit's gateway token, S3 keys): read from a private file,
//! never printed.
//!
//! A secret lives in its own file, not in the station's TOML, so the configuration can be
//! shown, copied and committed while the secret stays behind. The file must be private
//! (mode 0600 on Unix): a secret others can read is refused with the fix named, the way
//! `ssh` refuses a readable private key. `Debug` and `Display` print `[redacted]`, so a
//! secret that ends up in a log line, an error or a report shows nothing.

use std::path::{Path, PathBuf};

/// Largest secret file read: tokens and key pairs are short, a big file is a wrong file.
const MAX_FILE_LEN: u64 = 64 * 1024;

/// A secret string (a token, a key). Its text is only reachable through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// Why a secret file was not used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file cannot be read.
    #[error("secret file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The file is there but must not be used as it is.
    #[error("secret file {path}: {reason}")]
    Refused {
        /// The file.
        path: PathBuf,
        /// What is wrong, and the fix.
        reason: String,
    },
}

impl Secret {
    /// A secret from text the program already holds (tests, or a value read elsewhere).
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// Reads the secret at `path`: a private regular file (mode 0600 on Unix, no symbolic
    /// link), UTF-8, surrounding white space trimmed, not empty.
    pub fn from_file(path: &Path) -> Result<Secret, SecretError> {
        let refused = |reason: &str| SecretError::Refused {
            path: path.to_owned(),
            reason: reason.to_string(),
        };
        let io = |source| SecretError::Io {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::symlink_metadata(path).map_err(io)?;
        if !meta.is_file() {
            return Err(refused(
                "not a regular file (a symbolic link is not followed)",
            ));
        }
        if crate::platform::others_may_read(&meta) {
            return Err(refused(&format!(
                "other users may read it; make it private with `chmod 600 {}`",
                path.display()
            )));
        }
        let bytes = crate::secure_fs::read(path, MAX_FILE_LEN)
            .map_err(io)?
            .ok_or_else(|| io(std::io::ErrorKind::NotFound.into()))?;
        let text = String::from_utf8(bytes).map_err(|_| refused("not UTF-8 text"))?;
        let text = text.trim();
        if text.is_empty() {
            return Err(refused("it is empty"));
        }
        Ok(Secret(text.to_string()))
    }

    /// The secret's text, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "hunter2");
    }

    #[cfg(unix)]
    #[test]
    fn a_private_file_is_read_and_a_readable_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        crate::secure_fs::write_new(&path, b"  tok-123\n").unwrap();
        assert_eq!(Secret::from_file(&path).unwrap().expose(), "tok-123");
        crate::platform::set_mode(&path, 0o644).unwrap();
        let err = Secret::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        assert!(!err.contains("tok-123"), "{err}");
        let link = dir.path().join("link");
        crate::platform::symlink(&path, &link).unwrap();
        assert!(Secret::from_file(&link).is_err());
    }
}
