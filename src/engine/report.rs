//! The job report: one JSON file per job, also for a job that failed or was refused.
//!
//! It is the technician's record for the job sheet and the first thing to read when a job
//! went wrong: package, signer, device identity, versions before and after, every image
//! with its bytes, hashes and timing, the preflight checklist, and the outcome.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::preflight::Check;
use crate::device::DeviceInfo;

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Every image written and verified, device rebooted.
    Success,
    /// Stopped after planning, as asked (`--dry-run`).
    DryRun,
    /// The package failed verification; no device was opened.
    PackageRejected,
    /// Preflight refused; nothing was written.
    PreflightRefused,
    /// The device or the link failed.
    DeviceError,
    /// The user stopped the job; the error says before or during which step.
    Cancelled,
}

/// The package, as verified.
#[derive(Debug, Clone, Serialize)]
pub struct PackageFacts {
    /// The package file.
    pub path: PathBuf,
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Security version.
    pub security_version: u64,
    /// SHA-256 of the package's signed manifest, which binds every image by its hashes:
    /// the package's identity (the whole file is not hashed to flash it).
    pub manifest_sha256: String,
    /// Signing key id.
    pub signer: String,
    /// Signing key name.
    pub signer_name: String,
}

/// Firmware facts at one point in time.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Versions {
    /// Firmware version as reported.
    pub firmware: Option<String>,
    /// Security version.
    pub security: Option<u64>,
    /// Where the values came from (the device, flashline's history, …).
    pub source: String,
}

/// Where the backup of a job went.
#[derive(Debug, Clone, Serialize)]
pub struct BackupFacts {
    /// The backup folder.
    pub dir: PathBuf,
    /// What it holds.
    pub partitions: Vec<super::backup::BackupEntry>,
}

/// One image of the job.
#[derive(Debug, Clone, Serialize)]
pub struct ImageReport {
    /// Partition in the package.
    pub partition: String,
    /// Partition on the device.
    pub target: String,
    /// Image bytes.
    pub bytes: u64,
    /// SHA-256 the package signs.
    pub sha256_signed: String,
    /// SHA-256 of the bytes actually sent, once the image was written.
    pub sha256_sent: Option<String>,
    /// Seconds spent writing.
    pub seconds: Option<f64>,
    /// How the storage was checked after the write, where it commits as it receives
    /// (EDL): the device's own digest, or a read-back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified_by: Option<crate::device::Verification>,
    /// The AVB flags set in this vbmeta image on its way to the device
    /// (`disable-verity`, `disable-verification`); `sha256_sent` is then the changed bytes'.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vbmeta_flags: Option<String>,
    /// What the write left out because the device already held it, or erased instead of
    /// writing (EDL with signed block hashes), and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<crate::device::edl_delta::Skipped>,
    /// `written`, `kept` (verified by an earlier, interrupted run of the same job),
    /// `failed` or `not-started`.
    pub status: String,
}

impl ImageReport {
    /// An image the plan will write, before anything is sent.
    pub fn not_started(
        partition: impl Into<String>,
        target: impl Into<String>,
        bytes: u64,
        sha256_signed: &crate::package::Sha256Sum,
    ) -> Self {
        ImageReport {
            partition: partition.into(),
            target: target.into(),
            bytes,
            sha256_signed: sha256_signed.to_string(),
            sha256_sent: None,
            seconds: None,
            verified_by: None,
            vbmeta_flags: None,
            skipped: None,
            status: "not-started".into(),
        }
    }
}

/// The report of one job.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `flashline x.y.z`.
    pub tool: String,
    /// Start, RFC 3339 UTC.
    pub started_at: String,
    /// End, RFC 3339 UTC.
    pub finished_at: String,
    /// How it ended.
    pub outcome: Outcome,
    /// The error in plain words.
    pub error: Option<String>,
    /// The device address used.
    pub device_address: String,
    /// The package, once verified.
    pub package: Option<PackageFacts>,
    /// The device, once identified.
    pub device: Option<DeviceInfo>,
    /// Versions before the job.
    pub before: Option<Versions>,
    /// Versions after the reboot.
    pub after: Option<Versions>,
    /// The preflight checklist.
    pub preflight: Vec<Check>,
    /// Overrides the user gave that were used (e.g. `--allow-older`).
    pub overrides: Vec<String>,
    /// Images.
    pub images: Vec<ImageReport>,
    /// The image the job left partly written when it stopped; running the same job again
    /// writes it from its start (see the job journal).
    pub incomplete: Option<String>,
    /// The slot switched to, on A/B devices.
    pub activated_slot: Option<String>,
    /// The identity partitions backed up before writing (Qualcomm).
    pub backup: Option<BackupFacts>,
    /// Anything else worth knowing.
    pub notes: Vec<String>,
}

impl Report {
    /// Writes the report as pretty JSON and returns where it went.
    ///
    /// With no `path`, the file gets a new name in `dir` (see [`Report::file_stem`]): two
    /// reports of the same second and serial never overwrite each other. A `path` the user
    /// named is replaced atomically. Either way the file is private (it holds the device's
    /// identity) and never written through a symbolic link (see [`crate::secure_fs`]).
    pub fn save(&self, path: Option<&Path>, dir: &Path) -> std::io::Result<PathBuf> {
        let json = serde_json::to_string_pretty(self).expect("reports serialise") + "\n";
        match path {
            Some(path) => crate::secure_fs::replace(path, json.as_bytes()).map(|()| path.into()),
            None => crate::secure_fs::write_unique(dir, &self.file_stem(), "json", json.as_bytes()),
        }
    }

    /// The default file name without its extension: time, then the device serial made safe
    /// for a file name.
    pub fn file_stem(&self) -> String {
        let serial = self
            .device
            .as_ref()
            .and_then(|d| d.serial.as_deref())
            .map(safe_name)
            .unwrap_or_else(|| "unknown-device".to_string());
        let stamp: String = self
            .started_at
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        format!("{stamp}-{serial}")
    }
}

/// Keeps only `[A-Za-z0-9_-]`, at most 32 characters: device strings never shape a path.
pub fn safe_name(s: &str) -> String {
    let name: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(32)
        .collect();
    if name.is_empty() {
        "unnamed".to_string()
    } else {
        name
    }
}

/// Now, as RFC 3339 UTC with milliseconds.
pub fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            tool: "flashline test".into(),
            started_at: "2026-12-06T07:00:00.000Z".into(),
            finished_at: "2026-12-06T07:00:00.000Z".into(),
            outcome: Outcome::Success,
            error: None,
            device_address: "tcp:127.0.0.1:1".into(),
            package: None,
            device: None,
            before: None,
            after: None,
            preflight: Vec::new(),
            overrides: Vec::new(),
            images: Vec::new(),
            incomplete: None,
            activated_slot: None,
            backup: None,
            notes: Vec::new(),
        }
    }

    #[test]
    fn reports_of_the_same_moment_never_overwrite_each_other() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("reports");
        let first = report().save(None, &dir).unwrap();
        let mut second = report();
        second.outcome = Outcome::DeviceError;
        let second = second.save(None, &dir).unwrap();
        assert_ne!(first, second);
        assert!(std::fs::read_to_string(&first)
            .unwrap()
            .contains("\"success\""));
        assert!(std::fs::read_to_string(&second)
            .unwrap()
            .contains("\"device-error\""));
        #[cfg(unix)]
        {
            let mode = |p: &Path| {
                crate::platform::ownership(&std::fs::metadata(p).unwrap())
                    .unwrap()
                    .mode
                    & 0o777
            };
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&first), 0o600);
            assert_eq!(mode(&second), 0o600);
        }
    }

    #[test]
    fn device_strings_cannot_escape_the_report_folder() {
        assert_eq!(safe_name("../../etc/passwd"), "______etc_passwd");
        assert_eq!(safe_name(""), "unnamed");
        assert_eq!(safe_name(&"a".repeat(100)).len(), 32);
    }
}
