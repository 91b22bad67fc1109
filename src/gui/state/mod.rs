//! The GUI's model: plain data the views render, changed only by [`AppState::apply`] (what
//! the workers report) and by the few methods the views call for clicks.
//!
//! Nothing here blocks, touches a device or decides whether a job may run: verdicts come
//! from the engine's events, and every action leaves as an [`Intent`] for the bridge.

mod devices;
mod flash;
mod jobs;
mod log;
mod package;
#[cfg(test)]
mod tests;
mod wizard;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::catalog::CatalogEntry;
use crate::device::discovery::Found;
use crate::device::DeviceInfo;
use crate::engine::Event;
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
    /// Jobs write logical partitions from fastbootd, not as one whole super image.
    pub disable_super_optimization: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            trust_dir: crate::paths::trust_dir(),
            reports_dir: crate::paths::reports_dir(),
            last_package_dir: None,
            disable_super_optimization: false,
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
}
