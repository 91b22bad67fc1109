//! The GUI's model: plain data the views render, changed only by [`AppState::apply`] (what
//! the workers report) and by the few methods the views call for clicks.
//!
//! Nothing here blocks, touches a device or decides whether a job may run: verdicts come
//! from the engine's events, and every action leaves as an [`Intent`] for the bridge.

mod devices;
mod jobs;
mod log;
mod package;
mod wizard;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::catalog::{CatalogEntry, Offer};
use crate::device::discovery::Found;
use crate::device::{Battery, DeviceInfo, LockState, Mode};
use crate::engine::{Check, Event, Outcome, PlannedWrite, Stage, Status};
pub use devices::*;
pub use jobs::*;
pub use log::*;
pub use package::*;
pub use wizard::*;

/// Log lines kept in memory; older ones are dropped (the reports keep the record).
const LOG_LINES: usize = 2000;

/// What the user chose that outlives a session, persisted by eframe. Device and job state
/// never is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Folder of trusted `.pub` keys.
    pub trust_dir: PathBuf,
    /// Folder the job reports go to.
    pub reports_dir: PathBuf,
    /// Folder the package dialog opens in.
    pub last_package_dir: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            trust_dir: crate::paths::trust_dir(),
            reports_dir: crate::paths::reports_dir(),
            last_package_dir: None,
        }
    }
}

/// A device row's identity: its USB serial number when known (it survives a modem's
/// re-enumeration into download mode), else its address.
pub type DeviceKey = String;

/// What the workers report to the UI.
#[derive(Debug)]
pub enum Msg {
    /// A complete discovery pass: every device present now.
    Devices(Vec<Found>),
    /// Facts read from a newly seen device, and the partitions its model keeps as identity.
    Identified {
        /// Where it was read.
        address: String,
        /// What it said.
        info: Box<DeviceInfo>,
    },
    /// The file dialog returned a package.
    Picked(PathBuf),
    /// A package was opened and checked.
    Package(PackageState),
    /// An event of a device's preflight check (a check-only job).
    Check {
        /// The device.
        key: DeviceKey,
        /// The package generation the check was started for.
        generation: u64,
        /// The event.
        event: Event,
    },
    /// An event of a device's flash job.
    Job {
        /// The device.
        key: DeviceKey,
        /// The event.
        event: Event,
    },
    /// A report file was read.
    Report {
        /// The device it belongs to.
        key: DeviceKey,
        /// The file.
        path: PathBuf,
        /// Its text, or why it could not be read.
        text: Result<String, String>,
    },
    /// Something to tell the user that belongs to no device.
    Notice(String),
    /// The packages found for the recovery wizard to offer.
    Catalog(Vec<CatalogEntry>),
    /// The connection doctor's findings.
    Doctor(Vec<crate::doctor::Finding>),
    /// An event of the bench station.
    Station(crate::station::StationEvent),
    /// The bench station stopped, or could not start (why).
    StationEnded(Option<String>),
}

/// What a click asks the workers to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Intent {
    /// Show the native file dialog and open the chosen package.
    PickPackage,
    /// Open and verify this package.
    OpenPackage(PathBuf),
    /// Run the preflight (a check-only job) on a device.
    Check {
        /// The device.
        target: JobTarget,
        /// The verified package.
        package: PathBuf,
        /// Which package opening this check belongs to.
        generation: u64,
    },
    /// Flash these devices, in parallel.
    Flash {
        /// The devices.
        targets: Vec<JobTarget>,
        /// The verified package.
        package: PathBuf,
    },
    /// Stop the job on this device.
    Cancel(DeviceKey),
    /// Read a report file for the reports pane.
    ReadReport {
        /// The device.
        key: DeviceKey,
        /// The file.
        path: PathBuf,
    },
    /// Show a folder in the desktop's file manager.
    OpenFolder(PathBuf),
    /// The settings changed: reload the trust keys, save.
    SettingsChanged,
    /// Something for the bench station (see [`super::station`]).
    Station(super::station::StationIntent),
    /// Read what these packages, and those in these folders, claim to be (for the
    /// recovery wizard's offer).
    ListPackages {
        /// Package files.
        files: Vec<PathBuf>,
        /// Folders of packages.
        dirs: Vec<PathBuf>,
    },
    /// Run the connection doctor's checks.
    RunDoctor,
}

/// The device a job runs on.
#[derive(Debug, Clone, PartialEq)]
pub struct JobTarget {
    /// The row.
    pub key: DeviceKey,
    /// Its address now.
    pub address: String,
    /// Whether it is one of flashline's virtual devices.
    pub is_virtual: bool,
}

/// The confirmation shown before a job starts.
#[derive(Debug, Clone)]
pub struct Confirm {
    /// Per device: its name and what will be written.
    pub devices: Vec<(JobTarget, String, Vec<String>)>,
    /// The package, in words.
    pub package: String,
}

/// Which tab the bottom pane shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    /// The log.
    Log,
    /// The reports.
    Reports,
}

/// Everything the GUI shows.
#[derive(Debug)]
pub struct AppState {
    /// Devices, in the order they appeared.
    pub devices: Vec<DeviceRow>,
    /// The package.
    pub package: PackageState,
    /// Persisted settings.
    pub settings: Settings,
    /// The settings window is open.
    pub settings_open: bool,
    /// The log, newest last.
    pub log: VecDeque<LogLine>,
    /// Reports of this session's jobs, newest last.
    pub reports: Vec<ReportView>,
    /// The report shown in full.
    pub open_report: Option<usize>,
    /// The bottom pane's tab.
    pub pane: Pane,
    /// The confirmation dialog, while it is shown.
    pub confirm: Option<Confirm>,
    /// The recovery wizard, while it is shown.
    pub wizard: Option<Wizard>,
    /// Recovery guides from the quirks file.
    pub guides: Vec<RecoveryGuide>,
    /// Packages offered as one-click buttons (the demo bench's).
    pub quick_packages: Vec<PathBuf>,
    /// A message for the user, shown until dismissed.
    pub notice: Option<String>,
    /// The packages the recovery wizard can offer.
    pub catalog: Vec<CatalogEntry>,
    /// The connection doctor's panel.
    pub doctor: super::doctor::DoctorPanel,
    /// The catalog was asked for since the wizard last moved to a device.
    catalog_asked: bool,
    /// Counts package openings, so that late events of an old check are dropped.
    generation: u64,
    started: Instant,
    /// The Station view.
    pub station: super::station::StationState,
    /// The repository package picker.
    #[cfg(feature = "fleet")]
    pub repo: super::repo::RepoPicker,
}

impl AppState {
    /// An empty bench.
    pub fn new(settings: Settings, guides: Vec<RecoveryGuide>) -> Self {
        AppState {
            devices: Vec::new(),
            package: PackageState::None,
            settings,
            settings_open: false,
            log: VecDeque::new(),
            reports: Vec::new(),
            open_report: None,
            pane: Pane::Log,
            confirm: None,
            wizard: None,
            guides,
            quick_packages: Vec::new(),
            notice: None,
            catalog: Vec::new(),
            doctor: Default::default(),
            catalog_asked: false,
            generation: 0,
            started: Instant::now(),
            station: super::station::StationState::default(),
            #[cfg(feature = "fleet")]
            repo: Default::default(),
        }
    }

    /// The row for `key`.
    pub fn device(&self, key: &str) -> Option<&DeviceRow> {
        self.devices.iter().find(|d| d.key == key)
    }

    fn device_mut(&mut self, key: &str) -> Option<&mut DeviceRow> {
        self.devices.iter_mut().find(|d| d.key == key)
    }

    /// Adds a log line.
    pub fn log(&mut self, device: Option<&str>, level: Level, text: impl Into<String>) {
        if self.log.len() >= LOG_LINES {
            self.log.pop_front();
        }
        self.log.push_back(LogLine {
            at: self.started.elapsed().as_secs_f64(),
            device: device.map(str::to_string),
            text: text.into(),
            level,
        });
    }

    /// Applies what a worker reported; returns follow-up work (reading a finished job's
    /// report).
    pub fn apply(&mut self, msg: Msg, now: Instant) -> Vec<Intent> {
        match msg {
            Msg::Devices(found) => self.merge_scan(found),
            Msg::Identified { address, info } => self.identified(&address, &info),
            Msg::Picked(path) => return vec![self.open_package(path)],
            Msg::Package(package) => self.package_opened(package),
            Msg::Check {
                key,
                generation,
                event,
            } => self.check_event(&key, generation, event),
            Msg::Job { key, event } => return self.job_event(&key, event, now),
            Msg::Report { key, path, text } => self.report_read(key, path, text),
            Msg::Notice(text) => {
                self.log(None, Level::Warn, text.clone());
                self.notice = Some(text);
            }
            Msg::Catalog(catalog) => self.catalog = catalog,
            Msg::Doctor(findings) => self.doctor.finished(findings),
            Msg::Station(event) => self.station.apply(&event, now),
            Msg::StationEnded(error) => {
                self.station.running = false;
                self.station.error = error;
            }
        }
        Vec::new()
    }

    fn merge_scan(&mut self, found: Vec<Found>) {
        let listed: Vec<Found> = found
            .into_iter()
            .filter(|f| f.mode != Mode::Unknown || f.vid.is_some())
            .collect();
        for d in &mut self.devices {
            d.present = false;
        }
        for f in listed {
            let key = f.serial.clone().unwrap_or_else(|| f.address.clone());
            if let Some(row) = self
                .devices
                .iter_mut()
                .find(|d| d.key == key || d.address == f.address)
            {
                row.present = true;
                if row.address != f.address || row.mode != f.mode {
                    row.address = f.address.clone();
                    row.mode = f.mode;
                    let key = row.key.clone();
                    let text = format!("now {} at {}", mode_name(f.mode), f.address);
                    self.log(Some(&key), Level::Info, text);
                }
                continue;
            }
            let text = format!(
                "{} at {} ({})",
                mode_name(f.mode),
                f.address,
                found_name(&f)
            );
            self.devices.push(DeviceRow {
                key: key.clone(),
                model: f.product.clone().or(f.known_as.clone()),
                chip: None,
                address: f.address,
                mode: f.mode,
                is_virtual: f.is_virtual,
                serial: f.serial,
                firmware: None,
                battery: None,
                lock: None,
                storage: None,
                present: true,
                selected: false,
                check: CheckState::NotRun,
                job: None,
            });
            self.log(Some(&key), Level::Info, format!("appeared: {text}"));
        }
        let gone: Vec<String> = self
            .devices
            .iter()
            .filter(|d| !d.present && !d.busy())
            .map(|d| d.key.clone())
            .collect();
        for key in gone {
            self.log(Some(&key), Level::Info, "disconnected");
            self.devices.retain(|d| d.key != key);
        }
    }

    fn identified(&mut self, address: &str, info: &DeviceInfo) {
        let Some(row) = self.devices.iter_mut().find(|d| d.address == address) else {
            return;
        };
        fill(row, info);
    }

    fn package_opened(&mut self, package: PackageState) {
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

    /// Ticks or unticks a device.
    pub fn select(&mut self, key: &str, selected: bool) {
        if let Some(d) = self.device_mut(key) {
            d.selected = selected;
        }
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

    fn check_event(&mut self, key: &str, generation: u64, event: Event) {
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

    /// Why the Flash button is disabled, or the devices it would flash.
    pub fn flash_targets(&self) -> Result<Vec<&DeviceRow>, String> {
        match &self.package {
            PackageState::None => return Err("Open a package first.".into()),
            PackageState::Verifying(_) => return Err("The package is being verified.".into()),
            PackageState::Refused { reason, .. } => {
                return Err(format!("The package is refused: {reason}"))
            }
            PackageState::Ready(_) => {}
        }
        let selected: Vec<&DeviceRow> = self.devices.iter().filter(|d| d.selected).collect();
        if selected.is_empty() {
            return Err("Tick at least one device.".into());
        }
        for d in &selected {
            if d.busy() {
                return Err(format!("{} is still flashing.", d.name()));
            }
            match &d.check {
                CheckState::Done(list) => {
                    if let Some(refusal) = list.refusals().next() {
                        return Err(format!(
                            "Preflight refused {}: {}",
                            d.name(),
                            refusal.message
                        ));
                    }
                }
                CheckState::Failed(e) => {
                    return Err(format!("Preflight could not check {}: {e}", d.name()))
                }
                CheckState::NotRun | CheckState::Running(_) => {
                    return Err(format!("Preflight of {} is still running.", d.name()))
                }
            }
        }
        Ok(selected)
    }

    /// The Flash button was clicked: show what will be written.
    pub fn request_flash(&mut self) {
        let Ok(targets) = self.flash_targets() else {
            return;
        };
        let PackageState::Ready(card) = &self.package else {
            return;
        };
        let devices = targets
            .iter()
            .map(|d| {
                let mut lines: Vec<String> = match &d.check {
                    CheckState::Done(list) if !list.writes.is_empty() => list
                        .writes
                        .iter()
                        .map(|w| {
                            let live = if w.live {
                                ", written live: it has no slots, so no other slot keeps its old content"
                            } else {
                                ""
                            };
                            format!("{} to {} ({}){live}", w.partition, w.target, bytes(w.bytes))
                        })
                        .collect(),
                    _ => card.writes.clone(),
                };
                if let CheckState::Done(list) = &d.check {
                    if let Some(slot) = &list.activate_slot {
                        let live = if list.writes.iter().any(|w| w.live) {
                            ", except for the partitions written live"
                        } else {
                            ""
                        };
                        lines.push(if writes_super(list) {
                            format!(
                                "slot {slot} becomes active before fastbootd writes super, once \
                                 every other image is verified; until then the phone boots its \
                                 old slot{live}"
                            )
                        } else {
                            format!(
                                "then slot {slot} becomes active, after every image is verified; \
                                 until then the phone boots its old, intact slot{live}"
                            )
                        });
                    }
                    if let Some(plan) = list.checks.iter().find(|c| c.name == "backup plan") {
                        lines.push(format!("backup: {}", plan.message));
                    }
                }
                (d.target(), format!("{} at {}", d.name(), d.address), lines)
            })
            .collect();
        self.confirm = Some(Confirm {
            devices,
            package: format!("{} {}", card.name, card.version),
        });
    }

    /// The confirmation was accepted: the jobs start.
    pub fn confirm_flash(&mut self) -> Option<Intent> {
        let confirm = self.confirm.take()?;
        let PackageState::Ready(card) = &self.package else {
            return None;
        };
        let package = card.path.clone();
        let mut targets = Vec::new();
        for (target, _, _) in confirm.devices {
            if let Some(row) = self.device_mut(&target.key) {
                row.job = Some(JobView::new());
                targets.push(row.target());
            }
        }
        let text = format!(
            "flashing {} onto {} device(s)",
            confirm.package,
            targets.len()
        );
        self.log(None, Level::Info, text);
        Some(Intent::Flash { targets, package })
    }

    /// Cancel was clicked on a device.
    pub fn cancel(&mut self, key: &str) -> Option<Intent> {
        let job = self.device_mut(key)?.job.as_mut()?;
        if job.finished.is_some() || job.cancel_requested {
            return None;
        }
        job.cancel_requested = true;
        self.log(Some(key), Level::Warn, "cancel requested");
        Some(Intent::Cancel(key.to_string()))
    }

    fn job_event(&mut self, key: &str, event: Event, now: Instant) -> Vec<Intent> {
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

    fn report_read(&mut self, key: DeviceKey, path: PathBuf, text: Result<String, String>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn found(address: &str, mode: Mode, serial: &str) -> Found {
        Found {
            address: address.into(),
            mode,
            vid: Some(0x19d2),
            pid: Some(0x1403),
            product: Some("MF833V".into()),
            serial: Some(serial.into()),
            known_as: None,
            is_virtual: true,
            interface: None,
            port_path: None,
        }
    }

    fn state() -> AppState {
        AppState::new(Settings::default(), Vec::new())
    }

    #[test]
    fn a_device_keeps_its_row_across_re_enumeration() {
        let mut s = state();
        let now = Instant::now();
        s.apply(
            Msg::Devices(vec![found("serial:/dev/pts/3", Mode::Modem, "S1")]),
            now,
        );
        s.devices[0].job = Some(JobView::new());
        s.apply(Msg::Devices(vec![]), now);
        assert_eq!(s.devices.len(), 1, "a busy device stays while it is away");
        assert_eq!(s.devices[0].badge(), Badge::Flashing);
        s.apply(
            Msg::Devices(vec![found("serial:/dev/pts/9", Mode::Edl, "S1")]),
            now,
        );
        assert_eq!(s.devices[0].address, "serial:/dev/pts/9");
        assert_eq!(s.devices[0].mode, Mode::Edl);
        s.devices[0].job = None;
        s.apply(Msg::Devices(vec![]), now);
        assert!(s.devices.is_empty(), "an idle device that left is removed");
    }

    #[test]
    fn progress_rate_and_eta_come_from_events() {
        let mut s = state();
        let t0 = Instant::now();
        s.apply(Msg::Devices(vec![found("a", Mode::Fastboot, "S")]), t0);
        s.devices[0].job = Some(JobView::new());
        let ev = |event| Msg::Job {
            key: "S".into(),
            event,
        };
        s.apply(
            ev(Event::PlanReady {
                writes: vec![],
                activate_slot: None,
                total_bytes: 4000,
            }),
            t0,
        );
        s.apply(
            ev(Event::Stage {
                stage: Stage::Flash,
            }),
            t0,
        );
        s.apply(
            ev(Event::ImageStarted {
                index: 0,
                count: 2,
                target: "boot_b".into(),
                bytes: 2000,
            }),
            t0,
        );
        s.apply(
            ev(Event::Progress {
                index: 0,
                done: 1000,
                total: 2000,
            }),
            t0,
        );
        let job = s.devices[0].job.as_ref().unwrap();
        let later = t0 + Duration::from_secs(1);
        assert_eq!(job.stage_text(), "image 1 of 2: boot_b");
        assert_eq!(job.fraction(), 0.25);
        assert_eq!(job.rate(later), Some(1000.0));
        assert_eq!(job.eta(later), Some(Duration::from_secs(3)));
        let follow = s.apply(
            ev(Event::Finished {
                outcome: Outcome::Cancelled,
                error: Some("cancelled by the user".into()),
                report: Some("/r.json".into()),
            }),
            later,
        );
        assert_eq!(s.devices[0].badge(), Badge::Cancelled);
        assert_eq!(
            follow,
            vec![Intent::ReadReport {
                key: "S".into(),
                path: "/r.json".into()
            }]
        );
    }

    #[test]
    fn the_flash_button_says_why_it_is_disabled() {
        let mut s = state();
        assert_eq!(s.flash_targets().unwrap_err(), "Open a package first.");
        s.package = PackageState::Refused {
            path: "p".into(),
            card: None,
            reason: "unknown key".into(),
        };
        assert!(s.flash_targets().unwrap_err().contains("unknown key"));
        s.package = PackageState::Ready(PackageCard {
            path: "p".into(),
            name: "n".into(),
            version: "1.0.0".into(),
            security_version: 1,
            min_battery_percent: 30,
            description: None,
            targets: vec![],
            writes: vec![],
            qualcomm: false,
            zxic: false,
            signature: String::new(),
        });
        s.apply(
            Msg::Devices(vec![found("a", Mode::Fastboot, "S")]),
            Instant::now(),
        );
        s.select("S", true);
        assert_eq!(s.pending_checks().len(), 1);
        assert!(s.pending_checks().is_empty(), "a check runs once");
        s.apply(
            Msg::Check {
                key: "S".into(),
                generation: 0,
                event: Event::Preflight {
                    checks: vec![Check {
                        name: "battery".into(),
                        status: Status::Refuse,
                        actual: "10 %".into(),
                        required: "≥ 30 %".into(),
                        message: "charge it".into(),
                        relaxed_by: None,
                    }],
                },
            },
            Instant::now(),
        );
        s.apply(
            Msg::Check {
                key: "S".into(),
                generation: 0,
                event: Event::Finished {
                    outcome: Outcome::PreflightRefused,
                    error: Some("refused before writing anything: charge it".into()),
                    report: None,
                },
            },
            Instant::now(),
        );
        s.apply(
            Msg::Check {
                key: "S".into(),
                generation: 7,
                event: Event::Preflight { checks: vec![] },
            },
            Instant::now(),
        );
        assert!(s.flash_targets().unwrap_err().contains("charge it"));
        assert_eq!(
            s.devices[0].badge(),
            Badge::Refused,
            "a stale check is ignored"
        );
    }

    #[test]
    fn the_confirmation_says_which_partitions_are_written_live() {
        let mut s = state();
        s.package = PackageState::Ready(PackageCard {
            path: "p".into(),
            name: "n".into(),
            version: "1.0.0".into(),
            security_version: 1,
            min_battery_percent: 30,
            description: None,
            targets: vec![],
            writes: vec![],
            qualcomm: false,
            zxic: false,
            signature: String::new(),
        });
        s.apply(
            Msg::Devices(vec![found("a", Mode::Fastboot, "S")]),
            Instant::now(),
        );
        s.select("S", true);
        assert_eq!(s.pending_checks().len(), 1);
        let write = |partition: &str, target: &str, live| PlannedWrite {
            partition: partition.into(),
            target: target.into(),
            live,
            bytes: 4096,
            sparse: false,
        };
        for event in [
            Event::Preflight { checks: vec![] },
            Event::PlanReady {
                writes: vec![
                    write("boot", "boot_b", false),
                    write("persist", "persist", true),
                ],
                activate_slot: Some("b".into()),
                total_bytes: 8192,
            },
            Event::Finished {
                outcome: Outcome::DryRun,
                error: None,
                report: None,
            },
        ] {
            s.apply(
                Msg::Check {
                    key: "S".into(),
                    generation: 0,
                    event,
                },
                Instant::now(),
            );
        }
        s.request_flash();
        let lines = &s
            .confirm
            .as_ref()
            .expect("the confirmation is open")
            .devices[0]
            .2;
        assert_eq!(lines[0], "boot to boot_b (4.0 KiB)");
        assert!(
            lines[1].starts_with("persist to persist (4.0 KiB), written live"),
            "{lines:?}"
        );
        assert!(
            lines[2].contains("old, intact slot, except for the partitions written live"),
            "{lines:?}"
        );
        assert!(
            lines[3].contains("persist has no slots and is written live"),
            "{lines:?}"
        );
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(8 * 1024 * 1024), "8.0 MiB");
    }
}
