//! The open package and the per-device checklist of preflight checks before a job.

use std::path::PathBuf;

use super::{fill, AppState, Intent, Level};
use crate::engine::{Check, Event, Outcome, PlannedWrite, Status};

/// The package slot.
#[derive(Debug, Clone, Default)]
pub enum PackageState {
    /// No package opened yet.
    #[default]
    None,
    /// Being opened and verified.
    Verifying(PathBuf),
    /// Verified: the signature is trusted and every image hash matches.
    Ready(PackageCard),
    /// Refused, with the reason; `card` holds what the package claims, if it could be read.
    Refused {
        /// The file.
        path: PathBuf,
        /// What it claims to be.
        card: Option<Box<PackageCard>>,
        /// Why it is refused, in plain words.
        reason: String,
    },
}

/// What the package card shows.
#[derive(Debug, Clone, PartialEq)]
pub struct PackageCard {
    /// The file.
    pub path: PathBuf,
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Anti-rollback level.
    pub security_version: u64,
    /// Battery the package needs.
    pub min_battery_percent: u8,
    /// Free text.
    pub description: Option<String>,
    /// Products it fits.
    pub targets: Vec<String>,
    /// What it writes, one line per partition, in the order it writes them.
    pub writes: Vec<String>,
    /// A Qualcomm flat build (flashed through EDL).
    pub qualcomm: bool,
    /// A ZXIC package (flashed through the ZX297520V3 boot ROM).
    pub zxic: bool,
    /// A Unisoc package (flashed through the boot ROM's download mode, FDL1 then FDL2).
    pub unisoc: bool,
    /// The signer and the signature's state, in plain words.
    pub signature: String,
}

/// A device's preflight for the open package.
#[derive(Debug, Clone, Default)]
pub enum CheckState {
    /// Not run (no package, or not selected).
    #[default]
    NotRun,
    /// The check-only job is running; what it found so far.
    Running(Checklist),
    /// Done: the checklist and, where the engine planned it, what would be written.
    Done(Checklist),
    /// The check could not run (device gone, package refused…).
    Failed(String),
}

/// A device's checklist.
#[derive(Debug, Clone, Default)]
pub struct Checklist {
    /// The engine's checks, then the backup plan.
    pub checks: Vec<Check>,
    /// The plan, where the engine could make it without touching the device.
    pub writes: Vec<PlannedWrite>,
    /// The slot switched to at the end, on A/B phones.
    pub activate_slot: Option<String>,
}

impl Checklist {
    /// The refusals.
    pub fn refusals(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.status == Status::Refuse)
    }
}

/// Whether the checked package writes logical partitions in super (the engine then checks
/// super, and sets the slot before fastbootd rather than at the end).
pub(super) fn writes_super(list: &Checklist) -> bool {
    list.checks.iter().any(|c| c.name.starts_with("super"))
}

/// The checklist's last line: what is kept safe before anything is written.
pub(super) fn backup_plan(package: &PackageState, list: &Checklist) -> Check {
    let qualcomm = matches!(package, PackageState::Ready(card) if card.qualcomm);
    let (actual, message) = if qualcomm {
        (
            "identity partitions".to_string(),
            "the partitions holding the IMEI, NV and calibration are read back, stored and \
             checked before the first write; the job stops if that fails"
                .to_string(),
        )
    } else if let Some(slot) = &list.activate_slot {
        let live: Vec<&str> = list
            .writes
            .iter()
            .filter(|w| w.live)
            .map(|w| w.target.as_str())
            .collect();
        let kept = if live.is_empty() {
            "the current slot stays untouched".to_string()
        } else {
            format!(
                "{} {} no slots and {} written live, so the current slot does not keep \
                 {} old content",
                live.join(", "),
                if live.len() == 1 { "has" } else { "have" },
                if live.len() == 1 { "is" } else { "are" },
                if live.len() == 1 { "its" } else { "their" },
            )
        };
        (
            format!("A/B: writes slot {slot}"),
            if writes_super(list) {
                format!(
                    "the images go to slot {slot}; the phone switches to it before fastbootd \
                     writes super, once every other image is verified; from then on super is \
                     rewritten, and an interrupted job resumes when run again"
                )
            } else {
                format!(
                    "the images go to slot {slot}, and the phone switches to it only after every \
                     image is verified; {kept}"
                )
            },
        )
    } else {
        (
            "none needed".to_string(),
            "the package writes only its own partitions; the device's identity partitions \
             are not touched"
                .to_string(),
        )
    };
    Check {
        name: "backup plan".into(),
        status: Status::Pass,
        actual,
        required: "identity kept safe".into(),
        message,
        relaxed_by: None,
    }
}

impl AppState {
    pub(super) fn package_opened(&mut self, package: PackageState) {
        match &package {
            PackageState::Ready(card) => {
                let text = format!(
                    "package {} {} verified: {}",
                    card.name, card.version, card.signature
                );
                self.log(None, Level::Info, text);
            }
            PackageState::Refused { path, reason, .. } => {
                let text = format!("package {} refused: {reason}", path.display());
                self.log(None, Level::Warn, text);
            }
            PackageState::None | PackageState::Verifying(_) => {}
        }
        self.package = package;
    }

    /// The user opened a package: its checks start over.
    pub fn open_package(&mut self, path: PathBuf) -> Intent {
        if let Some(dir) = path.parent() {
            self.settings.last_package_dir = Some(dir.to_path_buf());
        }
        for d in &mut self.devices {
            d.check = CheckState::NotRun;
        }
        self.generation += 1;
        self.package = PackageState::Verifying(path.clone());
        Intent::OpenPackage(path)
    }

    /// Starts the preflight of every selected device that has none for this package yet.
    pub fn pending_checks(&mut self) -> Vec<Intent> {
        let PackageState::Ready(card) = &self.package else {
            return Vec::new();
        };
        let (package, generation) = (card.path.clone(), self.generation);
        self.devices
            .iter_mut()
            .filter(|d| {
                d.selected && d.present && !d.busy() && matches!(d.check, CheckState::NotRun)
            })
            .map(|d| {
                d.check = CheckState::Running(Checklist::default());
                Intent::Check {
                    target: d.target(),
                    package: package.clone(),
                    generation,
                }
            })
            .collect()
    }

    pub(super) fn check_event(&mut self, key: &str, generation: u64, event: Event) {
        if generation != self.generation {
            // A check of a package that is no longer open.
            return;
        }
        let Some(row) = self.devices.iter_mut().find(|d| d.key == key) else {
            return;
        };
        if let Event::DeviceIdentified { device } = &event {
            fill(row, device);
            return;
        }
        let CheckState::Running(list) = &mut row.check else {
            return;
        };
        match event {
            Event::Preflight { checks } => list.checks = checks,
            Event::PlanReady {
                writes,
                activate_slot,
                ..
            } => {
                list.writes = writes;
                list.activate_slot = activate_slot;
            }
            Event::Finished { outcome, error, .. } => {
                let mut list = std::mem::take(list);
                let (level, text) = match error {
                    Some(error) if list.checks.is_empty() => {
                        let text = format!("preflight could not run: {error}");
                        row.check = CheckState::Failed(error);
                        (Level::Warn, text)
                    }
                    error => {
                        // A device error after some checks is one more red line.
                        if let (Some(error), false) = (error, outcome == Outcome::PreflightRefused)
                        {
                            list.checks.push(Check {
                                name: "device".into(),
                                status: Status::Refuse,
                                actual: "error".into(),
                                required: "a device that answers".into(),
                                message: error,
                                relaxed_by: None,
                            });
                        }
                        list.checks.push(backup_plan(&self.package, &list));
                        let refused: Vec<&str> =
                            list.refusals().map(|c| c.message.as_str()).collect();
                        let line = if refused.is_empty() {
                            (Level::Info, "preflight passed".to_string())
                        } else {
                            (
                                Level::Warn,
                                format!("preflight refused: {}", refused.join("; ")),
                            )
                        };
                        row.check = CheckState::Done(list);
                        line
                    }
                };
                self.log(Some(key), level, text);
            }
            _ => {}
        }
    }
}
