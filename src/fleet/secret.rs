//! Secrets a station holds for the fleet: hawkBit's gateway token, the S3 credentials.
//!
//! A secret lives in its own file, readable by its owner only, and in a [`Secret`] once
//! read. [`Secret`] prints as `[redacted]` in both `Debug` and `Display`, so a secret that
//! ends up in a struct that is logged, in an error, or in a report shows nothing. The only
//! way to the text is [`Secret::expose`], called where the secret goes on the wire.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// What a secret prints as, everywhere.
const REDACTED: &str = "[redacted]";

/// The largest secret file read (tokens and keys are tens of bytes).
const MAX_SECRET_FILE: u64 = 64 * 1024;

/// A token or key. Prints as `[redacted]`; [`Secret::expose`] gives the text.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// Why a secret file was not used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file could not be opened or read.
    #[error("cannot read the secret file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A symbolic link, a folder, a FIFO …: only a regular file is read.
    #[error("the secret file {} is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    /// Group or others may read the file.
    #[error(
        "the secret file {} may be read by other users (mode {mode:04o}); \
         make it private with `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    TooOpen { path: PathBuf, mode: u32 },
    /// Larger than any token or key.
    #[error("the secret file {} is larger than {MAX_SECRET_FILE} bytes", path.display())]
    TooLarge { path: PathBuf },
    /// Not UTF-8 text.
    #[error("the secret file {} is not text", path.display())]
    NotText { path: PathBuf },
    /// Nothing but white space.
    #[error("the secret file {} is empty", path.display())]
    Empty { path: PathBuf },
}

impl Secret {
    /// Wraps a secret already in memory (from a test, or a prompt).
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// Reads a secret from `path`: a regular file (a symbolic link is not followed), mode
    /// 0600 or stricter on Unix, at most 64 KiB of UTF-8; white space around the secret (the
    /// newline editors add) is dropped.
    pub fn from_file(path: &Path) -> Result<Secret, SecretError> {
        let read_err = |source| SecretError::Read {
            path: path.to_path_buf(),
            source,
        };
        let file = crate::platform::private_open_options()
            .read(true)
            .open(path)
            .map_err(|e| match std::fs::symlink_metadata(path) {
                Ok(meta) if meta.file_type().is_symlink() => SecretError::NotAFile {
                    path: path.to_path_buf(),
                },
                _ => read_err(e),
            })?;
        let meta = file.metadata().map_err(read_err)?;
        if !meta.is_file() {
            return Err(SecretError::NotAFile {
                path: path.to_path_buf(),
            });
        }
        if crate::platform::others_may_read(&meta) {
            let mode = crate::platform::ownership(&meta).map_or(0, |o| o.mode);
            return Err(SecretError::TooOpen {
                path: path.to_path_buf(),
                mode,
            });
        }
        let mut bytes = Vec::new();
        file.take(MAX_SECRET_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
        if bytes.len() as u64 > MAX_SECRET_FILE {
            return Err(SecretError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        let text = String::from_utf8(bytes).map_err(|_| SecretError::NotText {
            path: path.to_path_buf(),
        })?;
        let secret = text.trim();
        if secret.is_empty() {
            return Err(SecretError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(Secret(secret.to_string()))
    }

    /// The secret itself, for the one place it is sent.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_redacted() {
        let secret = Secret::new("3nkswAZhX81oDtktq0FF9Pn0Tc0UGXPW");
        assert_eq!(format!("{secret}"), REDACTED);
        assert_eq!(format!("{secret:?}"), REDACTED);
        assert_eq!(format!("{:?}", Some(&secret)), "Some([redacted])");
    }

    #[cfg(unix)]
    #[test]
    fn file_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cr3t-token\n").unwrap();
        crate::platform::set_mode(&path, 0o644).unwrap();
        let err = Secret::from_file(&path).unwrap_err();
        assert!(
            matches!(err, SecretError::TooOpen { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
        assert!(!err.to_string().contains("s3cr3t"), "{err}");

        crate::platform::set_mode(&path, 0o600).unwrap();
        assert_eq!(Secret::from_file(&path).unwrap().expose(), "s3cr3t-token");

        let link = dir.path().join("link");
        crate::platform::symlink(&path, &link).unwrap();
        assert!(matches!(
            Secret::from_file(&link),
            Err(SecretError::NotAFile { .. })
        ));

        let empty = dir.path().join("empty");
        std::fs::write(&empty, " \n").unwrap();
        crate::platform::set_mode(&empty, 0o600).unwrap();
        assert!(matches!(
            Secret::from_file(&empty),
            Err(SecretError::Empty { .. })
        ));
    }
}
