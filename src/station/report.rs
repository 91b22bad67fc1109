//! The batch report: every device of a station run, its halts and its resumes.
//!
//! Three files in the batch folder, each replaced atomically (temporary file, fsync,
//! rename) every time a device finishes, a halt or a resume happens, so a crash or a
//! power cut leaves the last complete state: `batch.json` for tools, `batch.csv` for the
//! job sheet (one line per device), `summary.txt` for people.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::engine::Outcome;

/// The batch report's file names.
pub const JSON: &str = "batch.json";
/// See [`JSON`].
pub const CSV: &str = "batch.csv";
/// See [`JSON`].
pub const SUMMARY: &str = "summary.txt";

/// One device of the batch.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeviceRecord {
    /// Its slot (USB port path or virtual address).
    pub slot: String,
    /// The slot's label.
    pub label: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// Serial number.
    pub serial: Option<String>,
    /// Whether it was a canary.
    pub canary: bool,
    /// Version before.
    pub before: Option<String>,
    /// Version the package installs.
    pub expected: String,
    /// Version after, as the device reported it where it did.
    pub after: Option<String>,
    /// The job's outcome; none while it runs or waits.
    pub outcome: Option<Outcome>,
    /// The job's error.
    pub error: Option<String>,
    /// The canary's check after its reboot.
    pub canary_check: Option<String>,
    /// The job's own report.
    pub report: Option<PathBuf>,
    /// When its job finished.
    pub finished_at: Option<String>,
    /// Order of decisions in the batch: identified, started, finished.
    pub arrived_seq: u64,
    /// See `arrived_seq`; none if its flash never started.
    pub started_seq: Option<u64>,
    /// See `arrived_seq`.
    pub finished_seq: Option<u64>,
}

/// A halt of the batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HaltRecord {
    /// When.
    pub at: String,
    /// Why, each reason in plain words.
    pub reasons: Vec<String>,
    /// The job reports behind it.
    pub reports: Vec<PathBuf>,
    /// Order among the batch's decisions.
    pub seq: u64,
}

/// A person's resume of a halted batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ResumeRecord {
    /// When.
    pub at: String,
    /// Who.
    pub by: String,
    /// Why, in their words.
    pub reason: String,
    /// Order among the batch's decisions.
    pub seq: u64,
}

/// The whole batch.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BatchReport {
    /// flashline's version.
    pub tool: String,
    /// When the batch started.
    pub started_at: String,
    /// The packages offered (name and version).
    pub packages: Vec<String>,
    /// Canaries asked for.
    pub canaries: usize,
    /// The kill switch (`2/10`).
    pub max_failures: String,
    /// Every device that was identified, in order.
    pub devices: Vec<DeviceRecord>,
    /// Devices that came back after their job and were not flashed again.
    pub returned: usize,
    /// Halts, oldest first.
    pub halts: Vec<HaltRecord>,
    /// Resumes, oldest first.
    pub resumes: Vec<ResumeRecord>,
}

impl BatchReport {
    /// Writes the three files into `dir`, each replaced atomically.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_string_pretty(self).expect("batch reports serialise") + "\n";
        crate::state_file::replace(&dir.join(JSON), json.as_bytes())?;
        crate::state_file::replace(&dir.join(CSV), self.csv().as_bytes())?;
        crate::state_file::replace(&dir.join(SUMMARY), self.summary().as_bytes())
    }

    /// One line per device, for the job sheet.
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "slot,label,model,serial,canary,version_before,version_after,outcome,error,finished_at,report\n",
        );
        for d in &self.devices {
            let fields = [
                d.slot.clone(),
                d.label.clone().unwrap_or_default(),
                d.model.clone().unwrap_or_default(),
                d.serial.clone().unwrap_or_default(),
                if d.canary { "yes" } else { "no" }.to_string(),
                d.before.clone().unwrap_or_default(),
                d.after.clone().unwrap_or_default(),
                outcome_word(d).to_string(),
                d.error.clone().unwrap_or_default(),
                d.finished_at.clone().unwrap_or_default(),
                d.report
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ];
            let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
            out.push_str(&line.join(","));
            out.push('\n');
        }
        out
    }

    /// The batch in a few lines for people.
    pub fn summary(&self) -> String {
        let count = |word: &str| {
            self.devices
                .iter()
                .filter(|d| outcome_word(d) == word)
                .count()
        };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "flashline station batch, started {}\npackages: {}\ncanaries: {}, kill switch: {}",
            self.started_at,
            self.packages.join(", "),
            self.canaries,
            self.max_failures
        );
        let _ = writeln!(
            out,
            "{} devices: {} done, {} failed, {} refused, {} not started; {} came back and were not flashed again",
            self.devices.len(),
            count("success"),
            count("failed"),
            count("refused"),
            count("waiting"),
            self.returned
        );
        for d in &self.devices {
            let _ = writeln!(
                out,
                "  {:<24} {:<16} {:<16} {} -> {}  {}{}",
                d.label.as_deref().unwrap_or(&d.slot),
                d.model.as_deref().unwrap_or("?"),
                d.serial.as_deref().unwrap_or("?"),
                d.before.as_deref().unwrap_or("?"),
                d.after.as_deref().unwrap_or("-"),
                outcome_word(d),
                d.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            );
        }
        for h in &self.halts {
            let _ = writeln!(out, "HALTED at {}: {}", h.at, h.reasons.join("; "));
            for r in &h.reports {
                let _ = writeln!(out, "  report: {}", r.display());
            }
        }
        for r in &self.resumes {
            let _ = writeln!(out, "resumed at {} by {}: {}", r.at, r.by, r.reason);
        }
        out
    }
}

/// One word for a device's result.
fn outcome_word(d: &DeviceRecord) -> &'static str {
    match (d.outcome, &d.canary_check) {
        (None, _) if d.started_seq.is_some() => "running",
        (None, _) => "waiting",
        (Some(Outcome::Success), Some(check)) if check.starts_with("failed") => "failed",
        (Some(Outcome::Success), _) => "success",
        (Some(Outcome::PreflightRefused | Outcome::PackageRejected), _) => "refused",
        (Some(_), _) => "failed",
    }
}

/// A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180); a
/// leading `=`, `+`, `-` or `@` is quoted with a `'` so a spreadsheet never runs device
/// text as a formula.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
    }

    #[test]
    fn files_are_written_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let mut report = BatchReport {
            packages: vec!["stock 2.1.0".into()],
            ..BatchReport::default()
        };
        report.write(dir.path()).unwrap();
        report.devices.push(DeviceRecord {
            slot: "usb:1-1".into(),
            outcome: Some(Outcome::Success),
            started_seq: Some(1),
            ..DeviceRecord::default()
        });
        report.write(dir.path()).unwrap();
        let csv = std::fs::read_to_string(dir.path().join(CSV)).unwrap();
        assert_eq!(csv.lines().count(), 2);
        assert!(csv.lines().nth(1).unwrap().contains("success"));
        let summary = std::fs::read_to_string(dir.path().join(SUMMARY)).unwrap();
        assert!(summary.contains("1 devices: 1 done"), "{summary}");
    }
}
