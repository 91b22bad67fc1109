//! What can go wrong with a repository, in words a technician can act on.

use std::path::PathBuf;
use std::time::SystemTime;

use crate::package::PackageError;

/// Why the repository, or one of its packages, cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// A file of the station's own (the pinned root, the cache) cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The configuration cannot work (a URL that is no folder, an unreadable root).
    #[error("repository configuration: {0}")]
    Config(String),
    /// This station has never verified the repository's metadata (offline use needs one
    /// sync first).
    #[error(
        "this station has no verified copy of the repository's metadata yet: connect it to \
         the repository (or plug in a copy of it) and run `flashline repo sync`"
    )]
    NotSynced,
    /// The client's async runtime could not start (the system is out of threads or files).
    #[error("cannot start the repository client: {0}")]
    Runtime(#[source] std::io::Error),
    /// The repository cannot be reached and this station has never verified its metadata,
    /// so there is nothing to work from.
    #[error(
        "the repository at {url} cannot be reached ({reason}) and this station has no verified \
         copy of its metadata yet: connect the station to the repository (or plug in a copy \
         of it) and run `flashline repo sync`"
    )]
    Unreachable {
        /// The metadata URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The last verified metadata has expired and no newer metadata could be verified: the
    /// station refuses repository packages until it syncs again.
    #[error(
        "the repository metadata is stale: it expired at {} and was last verified at {}; \
         repository packages are refused until the station syncs again: connect it to the \
         repository (or plug in a fresh copy) and run `flashline repo sync`",
        rfc3339(*since),
        verified_at.map_or_else(|| "an unknown time".to_string(), rfc3339)
    )]
    Stale {
        /// When the metadata expired: the station has been stale since then.
        since: SystemTime,
        /// When this station last verified metadata from the repository.
        verified_at: Option<SystemTime>,
    },
    /// The repository served metadata that has already expired: a freeze attack, or a
    /// mirror that stopped being updated. Nothing from it was accepted.
    #[error(
        "the repository served {role} metadata that has already expired (a freeze attack, or a \
         mirror that is no longer updated); nothing from it was accepted"
    )]
    Frozen {
        /// The expired role.
        role: String,
    },
    /// The repository served metadata older than metadata this station already verified:
    /// a rollback attack, or a mirror serving an old copy. Nothing from it was accepted.
    #[error(
        "the repository served older metadata than this station already verified (a rollback \
         attack, or an old mirror): {detail}; nothing from it was accepted"
    )]
    Rollback {
        /// What was older, from the TUF client.
        detail: String,
    },
    /// The repository's metadata failed TUF verification (a bad signature, metadata files
    /// that do not belong together, a file that does not match its signed hash).
    #[error("the repository's metadata was refused: {detail}; nothing from it was accepted")]
    Rejected {
        /// What failed, from the TUF client.
        detail: String,
    },
    /// The signed targets list has no such package.
    #[error("the repository lists no package named {name:?}")]
    UnknownTarget {
        /// The name asked for.
        name: String,
    },
    /// A download did not match its signed length and hash; it was thrown away.
    #[error(
        "the download of {name} does not match the repository's signed length and sha256 \
         ({detail}); it was thrown away"
    )]
    TargetMismatch {
        /// The package's target name.
        name: String,
        /// What did not match.
        detail: String,
    },
    /// A package is not in the cache and cannot be downloaded now.
    #[error("{name} is not in this station's cache and cannot be downloaded: {reason}")]
    Download {
        /// The package's target name.
        name: String,
        /// What failed.
        reason: String,
    },
    /// TUF accepted the download, but flashline's own package check refused it.
    #[error("{name} passed the repository's check but the package itself is refused: {source}")]
    Package {
        /// The package's target name.
        name: String,
        /// Why the package was refused.
        source: PackageError,
    },
}

impl RepoError {
    /// An I/O error on `path`, for `map_err`.
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> RepoError + '_ {
        move |source| RepoError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// A time as people read it in messages: RFC 3339, UTC, whole seconds.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}
