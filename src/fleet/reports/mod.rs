//! Job and batch reports written once to S3-compatible object storage, through a local
//! outbox.
//!
//! The way a report travels:
//!
//! ```text
//! job report JSON ─▶ Outbox::enqueue (sealed with the station key, queued on disk)
//!                 ─▶ Outbox::drain ─▶ ReportStore::put_once (If-None-Match: *) ─▶ bucket
//! ```
//!
//! * **Write-once, deterministic keys.** A report's key is a function of what the report is
//!   about ([`report_key`], [`batch_key`]), never of when it was sent, and the put is
//!   conditional: a key that exists is [`PutOutcome::AlreadyStored`] and never overwritten.
//!   So a retry, a replay after a crash or a second drain can never duplicate or replace a
//!   report.
//! * **The outbox** ([`Outbox`]) is a folder under flashline's home: a report is queued
//!   there (temporary file, fsync, rename) before anything is sent, and removed only after
//!   the store answered `Stored` or `AlreadyStored`. Nothing is lost across a restart or
//!   while the store is unreachable; a failed send backs off exponentially.
//! * **Envelopes** ([`envelope`]): what is stored is a small JSON envelope holding the
//!   report's exact bytes, its key, the station key's id and public half, and a seal by the
//!   station key over key and report, under a signing context of its own so a report seal
//!   can never pass as a backup seal. [`verify_envelope`] checks one.

pub mod envelope;
mod outbox;
mod store;

pub use envelope::{verify_envelope, Envelope, EnvelopeError};
pub use outbox::{DrainReport, Outbox, Queued};
pub use store::{ObjectReportStore, S3Config, S3Credentials, S3Store};

use std::time::Duration;

/// What a write-once put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PutOutcome {
    /// The object was written now.
    Stored,
    /// An object was already at that key (an earlier send of the same report); nothing was
    /// written.
    AlreadyStored,
}

/// Storage that writes a key at most once.
pub trait ReportStore: Send + Sync {
    /// Conditional put (If-None-Match: *): a key that exists is AlreadyStored, never overwritten.
    fn put_once(&self, key: &str, bytes: &[u8]) -> Result<PutOutcome, StoreError>;
}

/// Why a report could not be queued or sent. Messages never carry a secret: the store's
/// own errors are scrubbed of the credentials before they are kept (see [`S3Store`]).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file of the outbox could not be read or written.
    #[error("report outbox {path}: {source}")]
    Io {
        /// The file or folder.
        path: std::path::PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The station key cannot seal.
    #[error(transparent)]
    StationKey(#[from] crate::engine::station::StationError),
    /// The store's configuration or credentials are unusable.
    #[error("report store: {0}")]
    Config(String),
    /// The key is not a valid object key.
    #[error("report key {key:?}: {reason}")]
    BadKey {
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// What was to be queued is not a JSON document.
    #[error("report for {key} is not JSON: {reason}")]
    NotJson {
        /// The report's key.
        key: String,
        /// The parser's complaint.
        reason: String,
    },
    /// A different report is already queued under the same key.
    #[error("a different report is already queued under {key}; keys name one report each")]
    Conflict {
        /// The key.
        key: String,
    },
    /// The store did not answer in time.
    #[error("report store {store}: no answer for {key} within {after:?}")]
    Timeout {
        /// The store (endpoint and bucket).
        store: String,
        /// The key being written.
        key: String,
        /// The time limit.
        after: Duration,
    },
    /// The store answered with an error, or could not be reached.
    #[error("report store {store}: cannot write {key}: {message}")]
    Store {
        /// The store (endpoint and bucket).
        store: String,
        /// The key being written.
        key: String,
        /// What the store said, scrubbed of secrets.
        message: String,
    },
}

/// The key of a job's report: `reports/<station>/<target>/<job id>.json`.
///
/// Deterministic by design: the same job always maps to the same key, whenever and however
/// often it is computed, which is what makes the conditional put deduplicate. There is
/// deliberately no date in it: a job that finishes at 23:59:59 and is re-queued after
/// midnight would otherwise get a second key. Time order within a device comes from the job
/// ids (ids that start with a UTC time sort in time order in a bucket listing), and a
/// bucket's lifecycle rules work on object age, not on key names. `target` is the device's
/// fleet id (a salted hash of serial and IMEI, never the raw IMEI). Each part is escaped by
/// [`key_part`], so no part can add a level or climb out of its prefix.
pub fn report_key(station: &str, target: &str, job_id: &str) -> String {
    format!(
        "reports/{}/{}/{}.json",
        key_part(station),
        key_part(target),
        key_part(job_id)
    )
}

/// The key of a station batch's report (`src/station/report.rs`):
/// `batches/<station>/<batch id>.json`. A batch report is rewritten locally as the batch
/// runs; the one sent is the final one, queued once when the batch ends. Deterministic like
/// [`report_key`].
pub fn batch_key(station: &str, batch_id: &str) -> String {
    format!("batches/{}/{}.json", key_part(station), key_part(batch_id))
}

/// One level of a key: ASCII letters, digits, `_`, `-` and `.` stay as they are; every
/// other byte becomes `%XX`, as does a leading `.` (so no part is `.` or `..`); an empty
/// part is `%`. The mapping is one-to-one, so two different names never share a key.
pub fn key_part(name: &str) -> String {
    if name.is_empty() {
        return "%".into();
    }
    let mut out = String::with_capacity(name.len());
    for (i, b) in name.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The default outbox: `outbox/` under flashline's home, beside the station key.
pub fn default_outbox() -> std::path::PathBuf {
    crate::paths::home().join("outbox")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_deterministic_and_escaped() {
        assert_eq!(
            report_key("S12", "a1b2", "20261206T101500Z-7"),
            "reports/S12/a1b2/20261206T101500Z-7.json"
        );
        assert_eq!(
            report_key("S12", "a1b2", "x"),
            report_key("S12", "a1b2", "x")
        );
        assert_eq!(key_part("../etc"), "%2E.%2Fetc");
        assert_eq!(key_part(".."), "%2E.");
        assert_eq!(key_part(""), "%");
        assert_eq!(key_part("a b%"), "a%20b%25");
        assert_ne!(key_part("a/b"), key_part("a%2Fb"));
        assert_eq!(
            batch_key("S12", "2026-12-06T10:00Z"),
            "batches/S12/2026-12-06T10%3A00Z.json"
        );
    }
}
