//! Running and finished jobs as the GUI shows them: progress per image, stage texts, rates.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{describe, fill, AppState, CheckState, Checklist, Intent};
use crate::engine::{Event, Outcome, Stage};

/// A flash job as the UI shows it.
#[derive(Debug, Clone)]
pub struct JobView {
    /// The current stage.
    pub stage: Option<Stage>,
    /// The current image: index, count, target, bytes done, bytes.
    pub image: Option<ImageProgress>,
    /// Bytes of the images already written.
    pub written: u64,
    /// Bytes of all images, once planned.
    pub total: u64,
    /// When writing began.
    pub flash_started: Option<Instant>,
    /// When the job ended.
    pub ended: Option<Instant>,
    /// Partitions backed up and checked.
    pub backups: Vec<String>,
    /// How it ended.
    pub finished: Option<Finished>,
    /// The user asked to stop it.
    pub cancel_requested: bool,
}

/// The image being written.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageProgress {
    /// 0-based.
    pub index: usize,
    /// Images in all.
    pub count: usize,
    /// Partition on the device.
    pub target: String,
    /// Bytes sent.
    pub done: u64,
    /// Bytes to send.
    pub bytes: u64,
}

/// The end of a job.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Outcome.
    pub outcome: Outcome,
    /// The error in plain words.
    pub error: Option<String>,
    /// The report file.
    pub report: Option<PathBuf>,
}

impl JobView {
    pub(super) fn new() -> Self {
        JobView {
            stage: None,
            image: None,
            written: 0,
            total: 0,
            flash_started: None,
            ended: None,
            backups: Vec::new(),
            finished: None,
            cancel_requested: false,
        }
    }

    /// Bytes written so far.
    pub fn done(&self) -> u64 {
        self.written + self.image.as_ref().map_or(0, |i| i.done)
    }

    /// 0.0..=1.0 of the bytes.
    pub fn fraction(&self) -> f32 {
        match self.finished.as_ref().map(|f| f.outcome) {
            Some(Outcome::Success) => 1.0,
            _ if self.total == 0 => 0.0,
            _ => (self.done() as f64 / self.total as f64).clamp(0.0, 1.0) as f32,
        }
    }

    /// Average rate since writing began, in bytes per second.
    pub fn rate(&self, now: Instant) -> Option<f64> {
        let start = self.flash_started?;
        let secs = self
            .ended
            .unwrap_or(now)
            .duration_since(start)
            .as_secs_f64();
        (secs > 0.2 && self.done() > 0).then(|| self.done() as f64 / secs)
    }

    /// Time left at the average rate.
    pub fn eta(&self, now: Instant) -> Option<Duration> {
        if self.finished.is_some() {
            return None;
        }
        let rate = self.rate(now)?;
        let left = self.total.saturating_sub(self.done()) as f64;
        Some(Duration::from_secs_f64(left / rate))
    }

    /// The stage in words, with the image number while writing.
    pub fn stage_text(&self) -> String {
        match (&self.stage, &self.image) {
            (Some(Stage::Flash), Some(i)) => {
                format!("image {} of {}: {}", i.index + 1, i.count, i.target)
            }
            (Some(stage), _) => stage_title(*stage).to_string(),
            (None, _) => "starting".into(),
        }
    }
}

/// A stage in words.
pub fn stage_title(stage: Stage) -> &'static str {
    match stage {
        Stage::Verify => "verifying the package",
        Stage::Identify => "identifying the device",
        Stage::Preflight => "preflight",
        Stage::Plan => "planning",
        Stage::Switch => "switching to download mode",
        Stage::Programmer => "loading the programmer",
        Stage::Backup => "backing up the identity partitions",
        Stage::Flash => "writing",
        Stage::Patch => "patching the partition tables",
        Stage::Activate => "switching slot",
        Stage::Reboot => "rebooting",
    }
}

/// An outcome in words.
pub fn outcome_title(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Success => "done",
        Outcome::DryRun => "checked, nothing written",
        Outcome::PackageRejected => "package refused",
        Outcome::PreflightRefused => "refused by preflight, nothing written",
        Outcome::DeviceError => "failed",
        Outcome::Cancelled => "cancelled",
    }
}

/// Bytes for people (binary units).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

impl AppState {
    pub(super) fn job_event(&mut self, key: &str, event: Event, now: Instant) -> Vec<Intent> {
        let line = describe(&event);
        let mut follow = Vec::new();
        if let Some(row) = self.device_mut(key) {
            let Some(job) = row.job.as_mut() else {
                return follow;
            };
            match event {
                Event::Stage { stage } => {
                    job.stage = Some(stage);
                    if stage == Stage::Flash {
                        job.flash_started = Some(now);
                    }
                }
                Event::DeviceIdentified { device } => fill(row, &device),
                Event::Preflight { checks } => {
                    let list = match &mut row.check {
                        CheckState::Done(list) => list,
                        other => {
                            *other = CheckState::Done(Checklist::default());
                            let CheckState::Done(list) = other else {
                                unreachable!("just set")
                            };
                            list
                        }
                    };
                    let plan = list
                        .checks
                        .iter()
                        .find(|c| c.name == "backup plan")
                        .cloned();
                    list.checks = checks;
                    list.checks.extend(plan);
                }
                Event::PlanReady { total_bytes, .. } => job.total = total_bytes,
                Event::ImageStarted {
                    index,
                    count,
                    target,
                    bytes,
                } => {
                    job.image = Some(ImageProgress {
                        index,
                        count,
                        target,
                        done: 0,
                        bytes,
                    })
                }
                Event::Progress { done, .. } => {
                    if let Some(image) = &mut job.image {
                        image.done = done;
                    }
                }
                Event::ImageWritten { .. } => {
                    if let Some(image) = job.image.take() {
                        job.written += image.bytes;
                    }
                }
                Event::ImageKept { bytes, .. } => job.written += bytes,
                Event::BackupWritten { label, .. } => job.backups.push(label),
                Event::DeviceSwitched { to, .. } => row.address = to,
                Event::Finished {
                    outcome,
                    error,
                    report,
                } => {
                    job.ended = Some(now);
                    if let Some(path) = &report {
                        follow.push(Intent::ReadReport {
                            key: key.to_string(),
                            path: path.clone(),
                        });
                    }
                    job.finished = Some(Finished {
                        outcome,
                        error,
                        report,
                    });
                }
                Event::SlotSwitched { .. }
                | Event::DeviceMessage { .. }
                | Event::SwitchStep { .. }
                | Event::Resuming { .. } => {}
                Event::PackageVerified { .. } => {}
            }
        }
        if let Some((level, text)) = line {
            self.log(Some(key), level, text);
        }
        follow
    }
}
