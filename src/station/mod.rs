//! Station mode: a bench where every device that arrives is identified, preflighted and
//! flashed with no click, canaries first, with a kill switch.
//!
//! * [`machine`] decides (pure: no I/O): slots, canaries, the failure window, halts,
//!   resumes.
//! * [`runner`] watches the bench, identifies devices, runs the engine's jobs and the
//!   canaries' checks after reboot, and feeds the machine.
//! * [`report`] is the batch report (JSON, CSV, a human summary), rewritten atomically as
//!   each device finishes, so a crash loses nothing.
//! * [`control`] lets a person resume a halted batch from another terminal.
//! * [`settings`] keeps the slot labels and the sound setting.
//! * [`fleet`] is what the station needs from a fleet (rollouts, a repository, a bucket)
//!   when it runs as a fleet member (`station --fleet`).
//!
//! Front ends consume [`StationEvent`]s only, and keep a [`Board`] from them.

pub mod control;
pub mod fleet;
pub mod machine;
pub mod report;
pub mod runner;
pub mod settings;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::device::Mode;
use crate::engine::Stage;
pub use machine::{Action, Identity, Machine, Reported};
pub use report::{BatchReport, HaltRecord, ResumeRecord};
pub use runner::{StationConfig, StationHandle};

/// What a slot shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SlotStatus {
    /// No device.
    #[default]
    Empty,
    /// A device arrived and is being identified.
    Identifying,
    /// Identified; waits for the canaries or for a resume.
    Waiting,
    /// Its job runs.
    Flashing,
    /// A canary, rebooted: waiting for it to report the new version.
    Verifying,
    /// Flashed (and, for a canary, checked after its reboot).
    Done,
    /// Its job or its canary check failed.
    Failed,
    /// Not flashed, for the reason shown.
    Refused,
    /// Back after its job in this batch: shown, not flashed again.
    Returned,
}

impl SlotStatus {
    /// Whether the slot's device belongs to a job or a check: arrivals and departures on
    /// it are that job's business (a modem re-enumerating).
    pub fn is_busy(self) -> bool {
        matches!(self, SlotStatus::Flashing | SlotStatus::Verifying)
    }

    /// Whether this is a result to announce (the slot flashes, a sound may play).
    pub fn is_result(self) -> bool {
        matches!(self, SlotStatus::Done | SlotStatus::Failed)
    }

    /// A word for people.
    pub fn word(self) -> &'static str {
        match self {
            SlotStatus::Empty => "empty",
            SlotStatus::Identifying => "identifying",
            SlotStatus::Waiting => "waiting",
            SlotStatus::Flashing => "flashing",
            SlotStatus::Verifying => "checking",
            SlotStatus::Done => "done",
            SlotStatus::Failed => "failed",
            SlotStatus::Refused => "refused",
            SlotStatus::Returned => "back",
        }
    }
}

/// One physical place on the bench and what it shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Slot {
    /// The USB port path (a virtual phone: its address).
    pub key: String,
    /// The technician's name for it ("left hub, port 3").
    pub label: Option<String>,
    /// What it shows.
    pub status: SlotStatus,
    /// The device's address now.
    pub address: Option<String>,
    /// The device's mode when it arrived.
    pub mode: Option<Mode>,
    /// Model (product).
    pub model: Option<String>,
    /// Serial number.
    pub serial: Option<String>,
    /// Firmware version before the job.
    pub before: Option<String>,
    /// Firmware version after the job (as the device reported it, where it did).
    pub after: Option<String>,
    /// Whether this device is a canary.
    pub canary: bool,
    /// The job's stage.
    pub stage: Option<Stage>,
    /// Bytes of the current image done, of all.
    pub progress: Option<(u64, u64)>,
    /// A reason, an error or what it waits for.
    pub message: Option<String>,
    /// The job's report.
    pub report: Option<PathBuf>,
    /// When its job finished.
    pub finished_at: Option<String>,
}

impl Slot {
    /// The label, or the port path.
    pub fn name(&self) -> &str {
        self.label.as_deref().unwrap_or(&self.key)
    }
}

/// What the station tells its front ends.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum StationEvent {
    /// The batch started; its report is written into `dir`.
    Started {
        /// The batch folder.
        dir: PathBuf,
        /// The packages offered, by name and version.
        packages: Vec<String>,
        /// Canaries.
        canaries: usize,
        /// The kill switch's threshold (`2/10`).
        max_failures: String,
    },
    /// A slot changed; the whole slot, as it is now.
    Slot(Slot),
    /// Every canary came back with the new version: the rest of the bench goes ahead.
    CanariesPassed {
        /// How many passed.
        count: usize,
    },
    /// The batch halted: no new flash starts until a person resumes it.
    Halted(HaltRecord),
    /// A person resumed the batch.
    Resumed(ResumeRecord),
    /// The fleet's connections changed (fleet members only).
    Fleet(fleet::FleetStatus),
}

/// The kill switch's threshold: halt once `failures` of the last `window` jobs failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threshold {
    /// Failures that halt.
    pub failures: usize,
    /// Jobs looked at.
    pub window: usize,
}

impl std::str::FromStr for Threshold {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not N/M (failures of the last jobs, e.g. 2/10)");
        let (n, m) = s.split_once('/').ok_or_else(bad)?;
        let failures: usize = n.trim().parse().map_err(|_| bad())?;
        let window: usize = m.trim().parse().map_err(|_| bad())?;
        if failures == 0 || window == 0 || failures > window {
            return Err(format!("{s:?}: need 1 <= N <= M"));
        }
        Ok(Threshold { failures, window })
    }
}

impl std::fmt::Display for Threshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.failures, self.window)
    }
}

/// The station as a front end shows it, kept from [`StationEvent`]s.
#[derive(Debug, Clone, Default)]
pub struct Board {
    /// Slots by key.
    pub slots: BTreeMap<String, Slot>,
    /// The batch folder.
    pub dir: Option<PathBuf>,
    /// Packages offered.
    pub packages: Vec<String>,
    /// Canaries asked for.
    pub canaries: usize,
    /// Whether the canaries passed.
    pub canaries_passed: bool,
    /// The halt in force, if any.
    pub halted: Option<HaltRecord>,
    /// Resumes so far.
    pub resumes: Vec<ResumeRecord>,
    /// The fleet's connections (fleet members only).
    pub fleet: Option<fleet::FleetStatus>,
}

impl Board {
    /// Applies one event; returns the slot that now shows a new result, if any.
    pub fn apply(&mut self, event: &StationEvent) -> Option<String> {
        match event {
            StationEvent::Started {
                dir,
                packages,
                canaries,
                ..
            } => {
                self.dir = Some(dir.clone());
                self.packages = packages.clone();
                self.canaries = *canaries;
                self.canaries_passed = *canaries == 0;
            }
            StationEvent::Slot(slot) => {
                let was = self.slots.get(&slot.key).map(|s| s.status);
                let key = slot.key.clone();
                self.slots.insert(key.clone(), slot.clone());
                if slot.status.is_result() && was != Some(slot.status) {
                    return Some(key);
                }
            }
            StationEvent::CanariesPassed { .. } => self.canaries_passed = true,
            StationEvent::Halted(halt) => self.halted = Some(halt.clone()),
            StationEvent::Resumed(resume) => {
                self.halted = None;
                self.canaries_passed = true;
                self.resumes.push(resume.clone());
            }
            StationEvent::Fleet(status) => self.fleet = Some(status.clone()),
        }
        None
    }
}
