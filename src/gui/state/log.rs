//! The log pane and the reports pane: log lines, their levels, and a report read back.

use std::path::PathBuf;

use super::{bytes, outcome_title, stage_title, AppState, DeviceKey};
use crate::engine::{Event, Outcome, Status};

/// A report in the reports pane.
#[derive(Debug, Clone)]
pub struct ReportView {
    /// The device.
    pub key: DeviceKey,
    /// The file.
    pub path: PathBuf,
    /// The JSON, once read.
    pub json: Option<serde_json::Value>,
    /// The raw text, once read.
    pub text: Option<String>,
    /// Why it could not be read.
    pub error: Option<String>,
}

/// One log line.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// Seconds since the app started.
    pub at: f64,
    /// The device it is about.
    pub device: Option<String>,
    /// Text.
    pub text: String,
    /// Worth a colour.
    pub level: Level,
}

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Normal.
    Info,
    /// Refusals and cancels.
    Warn,
    /// Failures.
    Error,
}

/// A job event as a log line, if it is worth one.
pub(super) fn describe(event: &Event) -> Option<(Level, String)> {
    let line = match event {
        Event::Stage { stage } => stage_title(*stage).to_string(),
        Event::PackageVerified { name, version, .. } => {
            format!("{name} {version}: signature and image hashes verified")
        }
        Event::DeviceIdentified { device } => format!(
            "identified: {} firmware {}",
            device.product.as_deref().unwrap_or("unknown product"),
            device
                .firmware_version_raw
                .as_deref()
                .unwrap_or("not reported")
        ),
        Event::Preflight { checks } => {
            let refused = checks.iter().filter(|c| c.status == Status::Refuse).count();
            format!("preflight: {} checks, {refused} refused", checks.len())
        }
        Event::PlanReady { total_bytes, .. } => format!("plan: {} to write", bytes(*total_bytes)),
        Event::ImageStarted {
            index,
            count,
            target,
            bytes: size,
        } => format!(
            "image {} of {count}: {target} ({})",
            index + 1,
            bytes(*size)
        ),
        Event::Progress { .. } => return None,
        Event::ImageWritten {
            target, seconds, ..
        } => format!("{target} written and verified in {seconds:.1} s"),
        Event::Resuming {
            verified,
            interrupted,
            ..
        } => match interrupted {
            Some(target) => format!(
                "resuming an interrupted job: {} image(s) kept, {target} is written again",
                verified.len()
            ),
            None => format!(
                "resuming an interrupted job: {} image(s) kept",
                verified.len()
            ),
        },
        Event::ImageKept { target, .. } => {
            format!("{target} kept: verified by the interrupted run")
        }
        Event::DeviceMessage { text } => format!("device: {text}"),
        Event::DeviceSwitched { from, to } => format!("left {from}, back in download mode at {to}"),
        Event::SwitchStep {
            step,
            provenance,
            reports_only,
        } => {
            if *reports_only {
                format!("{step} (rests on public reports only: {provenance})")
            } else {
                format!("{step} ({provenance})")
            }
        }
        Event::BackupWritten { label, .. } => format!("{label} backed up and checked"),
        Event::SlotSwitched { slot } => format!("slot {slot} is now active"),
        Event::Finished { outcome, error, .. } => {
            let level = match outcome {
                Outcome::Success | Outcome::DryRun => Level::Info,
                Outcome::Cancelled | Outcome::PreflightRefused => Level::Warn,
                Outcome::PackageRejected | Outcome::DeviceError => Level::Error,
            };
            let text = match error {
                Some(e) => format!("{}: {e}", outcome_title(*outcome)),
                None => outcome_title(*outcome).to_string(),
            };
            return Some((level, text));
        }
    };
    Some((Level::Info, line))
}

impl AppState {
    pub(super) fn report_read(
        &mut self,
        key: DeviceKey,
        path: PathBuf,
        text: Result<String, String>,
    ) {
        let (json, text, error) = match text {
            Ok(text) => match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(json) => (Some(json), Some(text), None),
                Err(e) => (None, Some(text), Some(format!("not a report: {e}"))),
            },
            Err(e) => (None, None, Some(e)),
        };
        // The firmware the device runs now, as the job read it back after the reboot.
        let after = json
            .as_ref()
            .filter(|j| j["outcome"] == "success")
            .and_then(|j| j["after"]["firmware"].as_str());
        if let (Some(firmware), Some(row)) = (after, self.device_mut(&key)) {
            row.firmware = Some(firmware.to_string());
        }
        self.reports.push(ReportView {
            key,
            path,
            json,
            text,
            error,
        });
    }
}
