//! The station at work: watches the bench, identifies each device that arrives, runs the
//! engine's job on it, checks canaries after their reboot, and feeds the [`Machine`].
//!
//! One thread owns the machine and looks at the bench every [`StationConfig::scan_every`];
//! identification, jobs and canary checks each run on a thread of their own and report
//! back over a channel, so a slow or stalled device holds up only its own slot.
//!
//! A fleet member (with a [`FleetLink`]) has no packages of its own: each identified
//! device waits until its fleet offers it one ([`offers`]).

mod offers;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::fleet::{FleetLink, FleetStatus, Ticket};
use super::machine::{reports_version, slot_of, Action, Identity, Machine, Reported};
use super::report::BatchReport;
use super::settings::Settings;
use super::{control, StationEvent, Threshold};
use crate::device::discovery::{self, Change, Found};
use crate::device::quirks::Quirks;
use crate::device::{DeviceError, Mode};
use crate::engine::{self, DeviceTarget, Event, JobOptions, JobRequest, Report};
use crate::package::{Package, TrustStore, VerifiedPackage};
use crate::protocol::at::AtError;
use crate::protocol::fastboot::client::FastbootError;

/// How long a phone's job waits for it to come back after its reboot to read its new
/// version (non-canaries; a canary's own check waits [`StationConfig::verify_timeout`]).
const READ_BACK: Duration = Duration::from_secs(10);
/// Every how many looks at the bench the slot labels are read again from the settings.
const LABELS_EVERY: u64 = 8;
/// How often a canary check tries to reach its device again.
const RETRY: Duration = Duration::from_millis(200);

/// What a station run needs.
#[derive(Debug, Clone)]
pub struct StationConfig {
    /// The packages offered; each device gets the first that is made for it.
    pub packages: Vec<PathBuf>,
    /// The keys to trust.
    pub trust: TrustStore,
    /// Device knowledge.
    pub quirks: Quirks,
    /// How many of the first devices are canaries.
    pub canaries: usize,
    /// The kill switch.
    pub max_failures: Threshold,
    /// How long a canary may take to come back reporting the new version.
    pub verify_timeout: Duration,
    /// flashline's home: job files (history, backups, journals), settings, batches.
    pub home: PathBuf,
    /// The batch folder; by default a new one under `HOME/station/`.
    pub batch_dir: Option<PathBuf>,
    /// The longest a device may stay silent when it owes an answer.
    pub device_timeout: Option<Duration>,
    /// How often the bench is looked at.
    pub scan_every: Duration,
    /// The fleet this station is a member of: packages come from its rollouts, not from
    /// `packages`.
    pub fleet: Option<Arc<dyn FleetLink>>,
}

impl StationConfig {
    /// A configuration with the defaults for `packages`, trusting `trust`, under `home`.
    pub fn new(packages: Vec<PathBuf>, trust: TrustStore, home: &Path) -> Self {
        StationConfig {
            packages,
            trust,
            quirks: Quirks::builtin(),
            canaries: 0,
            max_failures: Threshold {
                failures: 2,
                window: 10,
            },
            verify_timeout: Duration::from_secs(120),
            home: home.to_path_buf(),
            batch_dir: None,
            device_timeout: None,
            scan_every: Duration::from_millis(250),
            fleet: None,
        }
    }
}

/// Why a station cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StationError {
    /// No package was given.
    #[error("no package given")]
    NoPackage,
    /// A package failed verification: nothing is flashed with a batch that holds one.
    #[error("package {path} rejected: {reason}")]
    Package {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The batch folder could not be made.
    #[error("batch folder: {0}")]
    Io(#[from] std::io::Error),
}

/// A running station.
pub struct StationHandle {
    dir: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<BatchReport>>,
}

impl StationHandle {
    /// The batch folder (its report, its jobs' reports, the resume request).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops: no new device is taken, running jobs and checks finish; returns the batch
    /// report as written.
    pub fn stop(mut self) -> BatchReport {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }

    /// Whether the station has stopped.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Asks the station to stop without waiting.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Drop for StationHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Verifies the packages, makes the batch folder and starts watching the bench; `emit`
/// receives every [`StationEvent`] on the station's thread.
pub fn start(
    config: StationConfig,
    mut emit: impl FnMut(StationEvent) + Send + 'static,
) -> Result<StationHandle, StationError> {
    if config.packages.is_empty() && config.fleet.is_none() {
        return Err(StationError::NoPackage);
    }
    let mut packages = Vec::new();
    for path in &config.packages {
        let verified = Package::open(path)
            .and_then(|p| p.verify(&config.trust))
            .map_err(|e| StationError::Package {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        packages.push(Arc::new(verified));
    }
    let dir = match &config.batch_dir {
        Some(dir) => {
            crate::secure_fs::private_dir(dir)?;
            dir.clone()
        }
        None => {
            let root = config.home.join(control::BATCHES);
            crate::secure_fs::private_dir(&root)?;
            let stamp: String = crate::engine::report::now()
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .collect();
            crate::secure_fs::new_private_dir(&root, &stamp)?
        }
    };
    let names: Vec<String> = packages
        .iter()
        .map(|p| format!("{} {}", p.manifest().name, p.manifest().version))
        .collect();
    let report = BatchReport {
        tool: format!("flashline {}", env!("CARGO_PKG_VERSION")),
        started_at: crate::engine::report::now(),
        packages: names.clone(),
        canaries: config.canaries,
        max_failures: config.max_failures.to_string(),
        ..BatchReport::default()
    };
    report.write(&dir)?;
    emit(StationEvent::Started {
        dir: dir.clone(),
        packages: names,
        canaries: config.canaries,
        max_failures: config.max_failures.to_string(),
    });
    let mut machine = Machine::new(config.canaries, config.max_failures, report);
    for (slot, label) in Settings::load(&config.home).labels {
        machine.label(&slot, Some(label));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let runner = Runner {
        fleet: config.fleet.clone(),
        fleet_status: None,
        unassigned: BTreeMap::new(),
        config,
        packages,
        dir: dir.clone(),
        machine,
        present: Arc::default(),
        pending: BTreeMap::new(),
        busy: Arc::new(AtomicUsize::new(0)),
        stop: Arc::clone(&stop),
    };
    let thread = std::thread::Builder::new()
        .name("station".into())
        .spawn(move || runner.run(&mut emit))?;
    Ok(StationHandle {
        dir,
        stop,
        thread: Some(thread),
    })
}

/// What a worker thread reports.
enum Input {
    Identified {
        slot: String,
        result: Result<Identified, String>,
    },
    Job {
        slot: String,
        event: Event,
    },
    JobDone {
        slot: String,
        report: Box<Report>,
        path: Option<PathBuf>,
    },
    Verified {
        slot: String,
        result: Result<Reported, String>,
    },
    /// The fleet answered about the device at `address` on `slot`.
    Offered {
        slot: String,
        address: String,
        answer: offers::Answer,
    },
    /// The job on `slot` was not started: its fleet withdrew the offer.
    Skipped {
        slot: String,
        why: String,
    },
}

/// A device identified, and the package chosen for it.
struct Identified {
    identity: Identity,
    found: Found,
    product: Option<String>,
    /// The IMEI the device told, if it did (a fleet's device id uses it).
    imei: Option<String>,
    package: Result<usize, String>,
}

/// What a slot's job will need.
struct Pending {
    found: Found,
    identity: Identity,
    product: Option<String>,
    package: usize,
    /// The fleet's action, for a fleet member.
    ticket: Option<Ticket>,
    /// The IMEI the device told, if it did.
    imei: Option<String>,
}

/// Devices on the bench now, by address.
type Present = Arc<Mutex<BTreeMap<String, Found>>>;

struct Runner {
    config: StationConfig,
    packages: Vec<Arc<VerifiedPackage>>,
    dir: PathBuf,
    machine: Machine,
    present: Present,
    pending: BTreeMap<String, Pending>,
    /// Worker threads still running.
    busy: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    fleet: Option<Arc<dyn FleetLink>>,
    /// The fleet's state last shown.
    fleet_status: Option<FleetStatus>,
    /// Identified devices waiting for their fleet to offer a package, by slot.
    unassigned: BTreeMap<String, offers::Unassigned>,
}

impl Runner {
    fn run(mut self, emit: &mut dyn FnMut(StationEvent)) -> BatchReport {
        let (tx, rx) = mpsc::channel();
        let mut seen: Vec<Found> = Vec::new();
        let mut next_scan = Instant::now();
        let mut scans = 0u64;
        loop {
            let stopping = self.stop.load(Ordering::SeqCst);
            if stopping && self.busy.load(Ordering::SeqCst) == 0 {
                break;
            }
            let mut actions = Vec::new();
            let mut dirty = false;
            if Instant::now() >= next_scan && !stopping {
                next_scan = Instant::now() + self.config.scan_every;
                let now = discovery::scan(&[], &self.config.quirks, false);
                for change in discovery::changes(&seen, &now) {
                    actions.extend(self.bench_change(change));
                }
                seen = now;
                scans += 1;
                if scans.is_multiple_of(LABELS_EVERY) {
                    // Labels edited elsewhere (the GUI, `station label`) show at once.
                    let labels = Settings::load(&self.config.home).labels;
                    let slots: Vec<String> = self.machine.slots().keys().cloned().collect();
                    for slot in slots {
                        self.machine.label(&slot, labels.get(&slot).cloned());
                    }
                }
                if let Some(status) = self.fleet_changed() {
                    emit(StationEvent::Fleet(status));
                }
                if self.machine.is_halted() {
                    if let Some(request) = control::take_resume(&self.dir) {
                        tracing::info!(by = %request.by, "batch resumed: {}", request.reason);
                        actions.extend(self.machine.resume(
                            request.by,
                            request.reason,
                            crate::engine::report::now(),
                        ));
                        dirty = true;
                    }
                }
            }
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(input) => {
                    dirty |= !matches!(input, Input::Job { .. });
                    actions.extend(self.input(input));
                    // Take whatever else is waiting before drawing.
                    while let Ok(input) = rx.try_recv() {
                        dirty |= !matches!(input, Input::Job { .. });
                        actions.extend(self.input(input));
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
            }
            if !stopping {
                self.ask_fleet(&tx);
            }
            for action in actions {
                self.act(action, &tx);
            }
            // The report first: what a front end shows is already on disk.
            if dirty {
                if let Err(e) = self.machine.report().write(&self.dir) {
                    tracing::error!("the batch report could not be written: {e}");
                }
            }
            for event in self.machine.take_events() {
                emit(event);
            }
        }
        drop(tx);
        drain(&rx);
        let report = self.machine.report().clone();
        if let Some(fleet) = &self.fleet {
            let batch = self.dir.file_name().unwrap_or_default().to_string_lossy();
            fleet.batch_ended(&batch, &report);
        }
        report
    }

    fn bench_change(&mut self, change: Change) -> Vec<Action> {
        match change {
            Change::Arrived(found) => {
                lock(&self.present).insert(found.address.clone(), found.clone());
                // A DIAG port or an unknown tty is a step of a modem's way into download
                // mode, or nothing flashline writes to: never a new device to flash.
                if !matches!(found.mode, Mode::Fastboot | Mode::Modem | Mode::Edl) {
                    return Vec::new();
                }
                let slot = slot_of(&found);
                let actions = self.machine.arrived(&slot, &found);
                if !actions.is_empty() {
                    self.unassigned.remove(&slot);
                }
                actions
            }
            Change::Left(found) => {
                lock(&self.present).remove(&found.address);
                self.unassigned
                    .retain(|_, u| u.found.address != found.address);
                self.machine.left(&slot_of(&found), &found.address);
                Vec::new()
            }
        }
    }

    fn input(&mut self, input: Input) -> Vec<Action> {
        match input {
            Input::Identified { slot, result } => match result {
                Ok(found) if self.fleet.is_some() => self.identified_for_fleet(slot, found),
                Ok(found) => {
                    let expected = found
                        .package
                        .clone()
                        .map(|i| self.packages[i].manifest().version.to_string());
                    if let Ok(package) = found.package {
                        self.pending.insert(
                            slot.clone(),
                            Pending {
                                found: found.found,
                                identity: found.identity.clone(),
                                product: found.product,
                                package,
                                ticket: None,
                                imei: found.imei,
                            },
                        );
                    }
                    self.machine.identified(&slot, found.identity, expected)
                }
                Err(why) => {
                    self.machine.identify_failed(&slot, why);
                    Vec::new()
                }
            },
            Input::Job { slot, event } => {
                self.machine.job_event(&slot, &event);
                Vec::new()
            }
            Input::JobDone { slot, report, path } => {
                self.machine.job_finished(&slot, &report, path)
            }
            Input::Verified { slot, result } => self.machine.verified(&slot, result),
            Input::Offered {
                slot,
                address,
                answer,
            } => self.offered(slot, &address, answer),
            Input::Skipped { slot, why } => self.skipped(slot, why),
        }
    }

    fn act(&mut self, action: Action, tx: &Sender<Input>) {
        match action {
            Action::Identify { slot, found } => {
                let (quirks, packages) = (self.config.quirks.clone(), self.packages.clone());
                self.spawn(tx, move |tx| {
                    let result = identify(&slot, found, &quirks, &packages);
                    let _ = tx.send(Input::Identified { slot, result });
                });
            }
            Action::Flash { slot } => {
                let Some(pending) = self.pending.get(&slot) else {
                    return;
                };
                let canary = self.machine.slots().get(&slot).is_some_and(|s| s.canary);
                let package = Arc::clone(&self.packages[pending.package]);
                let req = JobRequest {
                    package: self.config.packages[pending.package].clone(),
                    trust: self.config.trust.clone(),
                    device: DeviceTarget {
                        address: pending.found.address.clone(),
                        is_virtual: pending.found.is_virtual,
                        probe: false,
                    },
                    quirks: self.config.quirks.clone(),
                    options: JobOptions {
                        reports_dir: self.dir.join("reports"),
                        device_timeout: self.config.device_timeout,
                        reconnect: if pending.found.mode == Mode::Fastboot && !canary {
                            READ_BACK
                        } else {
                            Duration::ZERO
                        },
                        ..JobOptions::under(&self.config.home)
                    },
                };
                let fleet = self.fleet.clone().zip(pending.ticket.clone());
                self.spawn(tx, move |tx| {
                    if let Some((fleet, ticket)) = &fleet {
                        // A pause is not a revoke: ask again right before the first write.
                        if let Err(why) = fleet.still_wanted(ticket) {
                            let _ = tx.send(Input::Skipped { slot, why });
                            return;
                        }
                        fleet.started(ticket);
                    }
                    let mut path = None;
                    let report = engine::run_verified(&req, &package, &mut |event| {
                        if let Event::Finished { report, .. } = &event {
                            path.clone_from(report);
                        }
                        let _ = tx.send(Input::Job {
                            slot: slot.clone(),
                            event,
                        });
                    });
                    let report = Box::new(report);
                    let _ = tx.send(Input::JobDone {
                        slot,
                        report: report.clone(),
                        path: path.clone(),
                    });
                    if let Some((fleet, ticket)) = &fleet {
                        fleet.finished(ticket, &report, path.as_deref());
                    }
                });
            }
            Action::Verify { slot } => {
                let Some(pending) = self.pending.get(&slot) else {
                    return;
                };
                let check = Check {
                    slot: slot.clone(),
                    key: pending.identity.key.clone(),
                    product: pending.product.clone(),
                    quirks: self.config.quirks.clone(),
                    present: Arc::clone(&self.present),
                    timeout: self.config.verify_timeout,
                };
                self.spawn(tx, move |tx| {
                    let result = check.run();
                    let _ = tx.send(Input::Verified { slot, result });
                });
            }
        }
    }

    /// Runs `work` on a thread of its own, counted in `busy`.
    fn spawn(&self, tx: &Sender<Input>, work: impl FnOnce(Sender<Input>) + Send + 'static) {
        let (tx, busy) = (tx.clone(), Arc::clone(&self.busy));
        busy.fetch_add(1, Ordering::SeqCst);
        std::thread::spawn(move || {
            work(tx);
            busy.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

fn drain(rx: &Receiver<Input>) {
    while rx.try_recv().is_ok() {}
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Identifies the device on `slot` and picks its package. A device in EDL is not opened
/// here (its boot ROM expects one host session, the job's); its USB identity names it.
fn identify(
    slot: &str,
    found: Found,
    quirks: &Quirks,
    packages: &[Arc<VerifiedPackage>],
) -> Result<Identified, String> {
    let (product, serial, version, imei) = match found.mode {
        Mode::Edl => (None, found.serial.clone(), None, None),
        _ => {
            let info = discovery::open(&found.address, quirks, found.is_virtual, false)
                .and_then(|mut d| d.identify())
                .map_err(|e| e.to_string())?;
            (
                info.product,
                info.serial,
                info.firmware_version_raw,
                info.imei,
            )
        }
    };
    let key = found
        .serial
        .clone()
        .or_else(|| serial.clone())
        .unwrap_or_else(|| slot.to_string());
    let package = choose(packages, found.mode, product.as_deref());
    Ok(Identified {
        identity: Identity {
            key,
            model: product.clone().or_else(|| found.product.clone()),
            serial,
            version,
        },
        found,
        product,
        imei,
        package,
    })
}

/// The first package made for a device in `mode` reporting `product`: a fastboot package
/// naming the product for a phone, a Qualcomm flat build naming it for a modem, and for a
/// device in EDL (which cannot say what it is) the first flat build; the job then checks
/// the chip before anything is sent.
fn choose(
    packages: &[Arc<VerifiedPackage>],
    mode: Mode,
    product: Option<&str>,
) -> Result<usize, String> {
    let qualcomm = matches!(mode, Mode::Modem | Mode::Edl);
    let names = |p: &VerifiedPackage| {
        product.is_some_and(|product| p.manifest().targets.iter().any(|t| t.product == product))
    };
    packages
        .iter()
        .position(|p| p.qualcomm().is_some() == qualcomm && (mode == Mode::Edl || names(p)))
        .ok_or_else(|| {
            format!(
                "no package of this batch is made for {} ({})",
                product.unwrap_or("this device"),
                match mode {
                    Mode::Fastboot => "a phone in fastboot",
                    Mode::Modem => "a modem",
                    _ => "a device in EDL",
                }
            )
        })
}

/// A canary's check after its reboot: the same device back on its slot, in its normal
/// mode, reporting its version (a phone: `getvar` of the model's version variable; a
/// modem: `+CGMR`).
struct Check {
    slot: String,
    key: String,
    product: Option<String>,
    quirks: Quirks,
    present: Present,
    timeout: Duration,
}

impl Check {
    fn run(&self) -> Result<Reported, String> {
        let deadline = Instant::now() + self.timeout;
        let mut last = String::from("it did not come back on its slot");
        while Instant::now() < deadline {
            let candidates: Vec<Found> = lock(&self.present)
                .values()
                .filter(|f| slot_of(f) == self.slot && reports_version(f.mode))
                .filter(|f| f.serial.as_ref().is_none_or(|s| *s == self.key))
                .cloned()
                .collect();
            for found in candidates {
                match self.read(&found) {
                    Ok(reported) => return Ok(reported),
                    // The device answered, and not with a version: that is its answer.
                    Err(Miss::Answered(why)) => return Err(format!("after its reboot, {why}")),
                    Err(Miss::Unreachable(why)) => last = why,
                }
            }
            std::thread::sleep(RETRY);
        }
        Err(format!(
            "it did not report its version within {} s after its reboot ({last})",
            self.timeout.as_secs()
        ))
    }

    fn read(&self, found: &Found) -> Result<Reported, Miss> {
        let mut driver = discovery::open(&found.address, &self.quirks, found.is_virtual, false)
            .map_err(|e| Miss::Unreachable(e.to_string()))?;
        if found.mode == Mode::Fastboot {
            let spec = self
                .quirks
                .fastboot_facts(self.product.as_deref())
                .firmware_version;
            let var = spec
                .as_ref()
                .map_or("version-bootloader", |s| s.var.as_str());
            let shown = driver
                .variable(var)
                .map_err(Miss::from)?
                .ok_or_else(|| Miss::Answered(format!("the phone reports no {var}")))?;
            let comparable = spec.as_ref().and_then(|s| s.convert(&shown));
            return Ok(Reported { shown, comparable });
        }
        let info = driver.identify().map_err(Miss::from)?;
        let shown = info
            .firmware_version_raw
            .ok_or_else(|| Miss::Answered("the modem reports no revision".into()))?;
        Ok(Reported {
            shown,
            comparable: info.firmware_version.map(|v| v.to_string()),
        })
    }
}

/// Why a check did not read a version this time.
enum Miss {
    /// Not reachable yet (still booting, gone for a moment): try again.
    Unreachable(String),
    /// The device answered, with a refusal or without a version: final.
    Answered(String),
}

impl From<DeviceError> for Miss {
    fn from(e: DeviceError) -> Self {
        if answered(&e) {
            Miss::Answered(e.to_string())
        } else {
            Miss::Unreachable(e.to_string())
        }
    }
}

/// Whether an error is the device's own answer (a refusal, a missing value) rather than a
/// device not reachable yet (still booting).
fn answered(e: &DeviceError) -> bool {
    matches!(
        e,
        DeviceError::Fastboot(FastbootError::DeviceFailed { .. })
            | DeviceError::At(AtError::Error { .. } | AtError::CmeError { .. })
    )
}
