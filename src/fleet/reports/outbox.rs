//! The outbox: reports queued on disk until the store has them.
//!
//! Layout of the outbox folder (private, under flashline's home by default):
//!
//! ```text
//! outbox/
//!   queue/000000000042-<sha256(key), 16 hex>.json   one sealed envelope per report
//!   rejected/…                                      entries that cannot be read back
//!   backoff.json                                    failures in a row, next attempt time
//! ```
//!
//! * An entry is written whole (temporary file, fsync, rename, fsync of the folder), so a
//!   crash leaves it queued or not queued, never torn. Stale temporary files are removed
//!   when the outbox is opened.
//! * Entries are numbered in the order they were queued and sent in that order. A drain
//!   stops at the first failure, so a later report never overtakes an earlier one.
//! * An entry is removed only after the store answered `Stored` or `AlreadyStored`. A crash
//!   between the put and the removal leaves it queued; the next drain sends it again and
//!   the store answers `AlreadyStored`, because the key is the same and the put is
//!   write-once.
//! * After a failed send the next attempt waits `base × 2^(failures−1)`, capped, with
//!   jitter (a random point in its upper half) so that stations that lost the store together
//!   do not come back together. The state lives in `backoff.json`, so a restart keeps
//!   backing off; a wait longer than the cap (a clock set back) is not honoured.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::envelope;
use super::{PutOutcome, ReportStore, StoreError};
use crate::engine::station::{self, StationKey};
use crate::secure_fs;
use crate::state_file::{self, Lock};

/// The queue's folder in the outbox.
const QUEUE: &str = "queue";
/// Where entries that cannot be read back are moved.
const REJECTED: &str = "rejected";
/// The backoff state file.
const BACKOFF: &str = "backoff.json";
/// Largest envelope read back from the queue.
const MAX_ENTRY: u64 = 32 * 1024 * 1024;
/// First wait after a failure.
const BASE_BACKOFF: Duration = Duration::from_secs(2);
/// Longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// A folder of sealed reports waiting for the store; survives restarts.
#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    station: StationKey,
    base_backoff: Duration,
    max_backoff: Duration,
}

/// What one drain did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DrainReport {
    /// Keys written now, in order.
    pub stored: Vec<String>,
    /// Keys the store already held (sent before, its removal from the queue was lost).
    pub already_stored: Vec<String>,
    /// Queue files that could not be read back, moved to `rejected/`.
    pub rejected: Vec<String>,
    /// Why the drain stopped early, if it did.
    pub error: Option<String>,
    /// Nothing was tried because the outbox is backing off after failures.
    pub backing_off: bool,
    /// Milliseconds until the next attempt, when backing off.
    pub retry_in_ms: Option<u64>,
    /// Reports still queued afterwards.
    pub remaining: usize,
}

/// One queued report.
#[derive(Debug, Clone, Serialize)]
pub struct Queued {
    /// Its object key.
    pub key: String,
    /// Its file in the queue.
    pub file: PathBuf,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Backoff {
    failures: u32,
    next_attempt_ms: u64,
    last_error: String,
}

impl Outbox {
    /// Opens (creating if needed) the outbox at `dir`. Reports are sealed with the station
    /// key beside the folder (`station.key` in the folder's parent, which for the default
    /// outbox is flashline's home: the same key that seals backups, created on first use).
    pub fn open(dir: &Path) -> Result<Outbox, StoreError> {
        let station = StationKey::open_or_create(&station::beside(dir))?;
        Self::open_with_key(dir, station)
    }

    /// Opens the outbox at `dir`, sealing with `station`.
    pub fn open_with_key(dir: &Path, station: StationKey) -> Result<Outbox, StoreError> {
        let outbox = Outbox {
            dir: dir.to_owned(),
            station,
            base_backoff: BASE_BACKOFF,
            max_backoff: MAX_BACKOFF,
        };
        let queue = outbox.queue();
        secure_fs::private_dir(&queue).map_err(|e| io(&queue, e))?;
        // Temporary files of a write a crash interrupted: their entry was never queued.
        for entry in std::fs::read_dir(&queue).map_err(|e| io(&queue, e))? {
            let entry = entry.map_err(|e| io(&queue, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                let _ = secure_fs::remove(&entry.path());
            }
        }
        Ok(outbox)
    }

    /// The same outbox with other backoff bounds (tests; a site with its own policy).
    pub fn with_backoff(mut self, base: Duration, max: Duration) -> Outbox {
        self.base_backoff = base;
        self.max_backoff = max.max(base);
        self
    }

    /// The sealing station key (its id and public half are what readers enrol).
    pub fn station_key(&self) -> &StationKey {
        &self.station
    }

    /// Seal the report with the station key (engine::station) and queue it under its
    /// deterministic key. Queuing the same report again under the same key does nothing; a
    /// different report under a key already queued is refused.
    pub fn enqueue(&self, key: &str, report_json: &[u8]) -> Result<(), StoreError> {
        object_store::path::Path::parse(key)
            .ok()
            .filter(|p| !key.is_empty() && p.as_ref() == key)
            .ok_or_else(|| StoreError::BadKey {
                key: key.to_string(),
                reason: "not a plain object key (levels separated by single `/`, none empty, \
                         `.` or `..`)"
                    .into(),
            })?;
        let not_json = |reason: String| StoreError::NotJson {
            key: key.to_string(),
            reason,
        };
        let report = std::str::from_utf8(report_json).map_err(|e| not_json(e.to_string()))?;
        serde_json::from_str::<serde::de::IgnoredAny>(report)
            .map_err(|e| not_json(e.to_string()))?;
        let sealed = envelope::seal(&self.station, key, report);

        let queue = self.queue();
        let _lock = Lock::take(&self.dir.join("enqueue")).map_err(|e| io(&self.dir, e))?;
        let tag = key_tag(key);
        let mut last = 0;
        for (seq, name) in self.entry_names()? {
            last = last.max(seq);
            if name.ends_with(&format!("-{tag}.json")) {
                let path = queue.join(&name);
                let queued = secure_fs::read(&path, MAX_ENTRY).map_err(|e| io(&path, e))?;
                let same_key = queued
                    .as_deref()
                    .and_then(|b| envelope::parse(b).ok())
                    .is_some_and(|e| e.key == key);
                if same_key {
                    return if queued.as_deref() == Some(&sealed[..]) {
                        Ok(())
                    } else {
                        Err(StoreError::Conflict {
                            key: key.to_string(),
                        })
                    };
                }
            }
        }
        let path = queue.join(format!("{:012}-{tag}.json", last + 1));
        state_file::replace(&path, &sealed).map_err(|e| io(&path, e))?;
        tracing::info!(key, "report queued");
        Ok(())
    }

    /// How many reports are queued.
    pub fn pending(&self) -> usize {
        self.entry_names().map(|n| n.len()).unwrap_or(0)
    }

    /// The queued reports, oldest first.
    pub fn queued(&self) -> Result<Vec<Queued>, StoreError> {
        let queue = self.queue();
        let mut out = Vec::new();
        for (_, name) in self.entry_names()? {
            let file = queue.join(name);
            let key = secure_fs::read(&file, MAX_ENTRY)
                .ok()
                .flatten()
                .and_then(|b| envelope::parse(&b).ok())
                .map(|e| e.key)
                .unwrap_or_else(|| "(unreadable)".into());
            out.push(Queued { key, file });
        }
        Ok(out)
    }

    /// Try to send everything queued; bounded; keeps what failed for the next drain.
    ///
    /// Does nothing while backing off after a failure (see the module documentation);
    /// otherwise sends the queue oldest first and stops at the first failure. Each put is
    /// bounded by the store's own time limit.
    pub fn drain(&self, store: &dyn ReportStore) -> DrainReport {
        self.drain_inner(store, false)
    }

    /// [`Outbox::drain`] without waiting out the backoff: for a person who asked for it
    /// (`flashline reports drain`).
    pub fn drain_now(&self, store: &dyn ReportStore) -> DrainReport {
        self.drain_inner(store, true)
    }

    fn drain_inner(&self, store: &dyn ReportStore, now: bool) -> DrainReport {
        let mut report = DrainReport::default();
        if let Err(e) = self.send(store, now, &mut report) {
            report.error = Some(e.to_string());
        }
        report.remaining = self.pending();
        report
    }

    fn send(
        &self,
        store: &dyn ReportStore,
        now: bool,
        report: &mut DrainReport,
    ) -> Result<(), StoreError> {
        let _lock = Lock::take(&self.dir.join("drain")).map_err(|e| io(&self.dir, e))?;
        let mut backoff = self.backoff();
        let wait = Duration::from_millis(backoff.next_attempt_ms.saturating_sub(now_ms()));
        if !now && !wait.is_zero() && wait <= self.max_backoff {
            report.backing_off = true;
            report.retry_in_ms = Some(wait.as_millis() as u64);
            return Ok(());
        }
        let queue = self.queue();
        for (_, name) in self.entry_names()? {
            let path = queue.join(&name);
            let parsed = secure_fs::read(&path, MAX_ENTRY)
                .map_err(|e| e.to_string())
                .and_then(|b| b.ok_or_else(|| "vanished".to_string()))
                .and_then(|b| {
                    envelope::parse(&b)
                        .map(|e| (e.key, b))
                        .map_err(|e| e.to_string())
                });
            let (key, bytes) = match parsed {
                Ok(entry) => entry,
                Err(why) => {
                    tracing::warn!(file = %path.display(), %why, "unreadable outbox entry set aside");
                    self.set_aside(&name)?;
                    report.rejected.push(name);
                    continue;
                }
            };
            match store.put_once(&key, &bytes) {
                Ok(outcome) => {
                    secure_fs::remove(&path).map_err(|e| io(&path, e))?;
                    sync_dir(&queue).map_err(|e| io(&queue, e))?;
                    tracing::info!(key, ?outcome, "report delivered");
                    match outcome {
                        PutOutcome::Stored => report.stored.push(key),
                        PutOutcome::AlreadyStored => report.already_stored.push(key),
                    }
                }
                Err(e) => {
                    backoff.failures = backoff.failures.saturating_add(1);
                    let delay = self.delay(backoff.failures);
                    backoff.next_attempt_ms = now_ms() + delay.as_millis() as u64;
                    backoff.last_error = e.to_string();
                    self.save_backoff(&backoff)?;
                    tracing::warn!(key, error = %e, retry_in = ?delay, "report not delivered");
                    report.retry_in_ms = Some(delay.as_millis() as u64);
                    return Err(e);
                }
            }
        }
        if backoff.failures > 0 {
            let path = self.dir.join(BACKOFF);
            secure_fs::remove(&path).map_err(|e| io(&path, e))?;
        }
        Ok(())
    }

    /// The wait after `failures` failures in a row: exponential, capped, jittered into its
    /// upper half.
    fn delay(&self, failures: u32) -> Duration {
        let full = self
            .base_backoff
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
            .min(self.max_backoff);
        let mut random = [0u8; 4];
        let fraction = match getrandom::getrandom(&mut random) {
            Ok(()) => f64::from(u32::from_le_bytes(random)) / f64::from(u32::MAX),
            Err(_) => 1.0,
        };
        full.mul_f64(0.5 + 0.5 * fraction)
    }

    fn backoff(&self) -> Backoff {
        state_file::read(&self.dir.join(BACKOFF), 64 * 1024)
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save_backoff(&self, backoff: &Backoff) -> Result<(), StoreError> {
        let path = self.dir.join(BACKOFF);
        let json = serde_json::to_vec_pretty(backoff).expect("backoff state serialises");
        state_file::replace(&path, &json).map_err(|e| io(&path, e))
    }

    fn set_aside(&self, name: &str) -> Result<(), StoreError> {
        let rejected = self.dir.join(REJECTED);
        secure_fs::private_dir(&rejected).map_err(|e| io(&rejected, e))?;
        std::fs::rename(self.queue().join(name), rejected.join(name)).map_err(|e| io(&rejected, e))
    }

    fn queue(&self) -> PathBuf {
        self.dir.join(QUEUE)
    }

    /// The queue's entries (sequence number, file name), oldest first.
    fn entry_names(&self) -> Result<Vec<(u64, String)>, StoreError> {
        let queue = self.queue();
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&queue).map_err(|e| io(&queue, e))? {
            let name = entry.map_err(|e| io(&queue, e))?.file_name();
            let Some(name) = name.to_str() else { continue };
            let seq = name
                .split_once('-')
                .filter(|_| name.ends_with(".json"))
                .and_then(|(seq, _)| seq.parse::<u64>().ok());
            if let Some(seq) = seq {
                names.push((seq, name.to_string()));
            }
        }
        names.sort();
        Ok(names)
    }
}

/// The short hash of a key that names its queue file.
fn key_tag(key: &str) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Makes a removal in `dir` durable (on unix; elsewhere the platform's rename is it).
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn io(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_owned(),
        source,
    }
}
