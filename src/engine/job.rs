//! One flash job: verify → identify → preflight → plan → flash → activate → reboot → report.
//!
//! The job never returns early without a report: every path, refused or failed, ends in
//! one [`Event::Finished`] and one JSON report on disk.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::event::{Event, Stage};
use super::history::{self, History, HistoryEntry};
use super::journal::{ImageState, Journal, Resumable};
use super::plan::{self, FlashPlan};
use super::preflight::{Overrides, Preflight};
use super::report::{self, ImageReport, Outcome, PackageFacts, Report, Versions};
use crate::device::quirks::Quirks;
use crate::device::{discovery, DeviceInfo, Driver, ImageSource, SendReader, Target};
use crate::package::{ImageReader, Package, TrustStore, VerifiedPackage};

/// Progress events are sent at most once per this many bytes (and at the end).
const PROGRESS_STEP: u64 = 4 * 1024 * 1024;

/// Which device a job writes to.
#[derive(Debug, Clone)]
pub struct DeviceTarget {
    /// The address (`tcp:…`, `usb:…`, serial number).
    pub address: String,
    /// True only for flashline's own virtual devices.
    pub is_virtual: bool,
    /// Allow talking to a serial port the quirks file does not name, to learn what it is.
    pub probe: bool,
}

/// How a job behaves.
#[derive(Debug, Clone)]
pub struct JobOptions {
    /// Checks the user relaxed.
    pub overrides: Overrides,
    /// Stop after the plan.
    pub dry_run: bool,
    /// Where to write the report; `None` for a generated name in `reports_dir`.
    pub report_path: Option<PathBuf>,
    /// Default report folder.
    pub reports_dir: PathBuf,
    /// The local flash history.
    pub history_path: PathBuf,
    /// How long to wait for the device to come back after its reboot to read the new
    /// versions; zero to not wait (a phone normally boots its OS, not fastboot).
    pub reconnect: Duration,
    /// Where identity-partition backups go.
    pub backups_dir: PathBuf,
    /// Where the per-device job journals are kept (see [`super::journal`]).
    pub journal_dir: PathBuf,
    /// The longest the device may stay silent when it owes an answer; `None` keeps each
    /// protocol's own limits.
    pub device_timeout: Option<Duration>,
    /// How long a modem may take to come back in download mode.
    pub switch_timeout: Duration,
    /// Stop before the first step that changes anything on the device (a modem's switch to
    /// download mode, a programmer, a write), with outcome [`Outcome::DryRun`]. A front end
    /// uses it to show each device's preflight before the user confirms the job.
    pub check_only: bool,
    /// The user's request to stop this job.
    pub cancel: Cancel,
    /// The user says the serial port in the address is a device in emergency download
    /// mode (`recover --device serial:PATH`): a port the quirks file does not name is
    /// opened as one once it sends a Sahara HELLO (within `device_timeout`, or 10 s).
    pub expect_edl: bool,
    /// AVB flags to set in the package's vbmeta image on its way to the device
    /// (`--disable-verity`, `--disable-verification`); none by default.
    pub vbmeta_flags: crate::protocol::avb::Flags,
    /// The A/B slot to write (`--slot`); `None` for the one after the current one.
    pub slot: Option<crate::device::fastboot::verbs::SlotChoice>,
    /// Builds the whole super image on the host and has the bootloader flash it, where the
    /// device allows (Google's "optimized super", see `engine::super_image`); on by
    /// default, as in Google's client. Off (`--disable-super-optimization`), fastbootd
    /// writes the logical partitions.
    pub optimized_super: bool,
}

/// A cooperative stop request for one job, shared by the front end and the job.
///
/// The job looks at it before each step that touches the device, between images and while
/// it reads each image, and then ends with [`Outcome::Cancelled`] and its report. A device
/// stopped before its first write is untouched; one stopped during a write keeps a partly
/// written partition and needs the job run again (or recovery).
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// Asks the job to stop at its next check.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Ends the job if a stop was asked for; `next` names the step that will not run.
    pub(super) fn check(&self, next: &str) -> Result<(), Stop> {
        if self.is_cancelled() {
            Err((
                Outcome::Cancelled,
                format!("cancelled by the user before {next}"),
            ))
        } else {
            Ok(())
        }
    }
}

impl JobOptions {
    /// Options that keep every file a job writes (reports, history, identity backups,
    /// journal) under `home`: flashline's home by default; the demo's or a test's own
    /// folder otherwise.
    pub fn under(home: &Path) -> Self {
        JobOptions {
            overrides: Overrides::default(),
            dry_run: false,
            report_path: None,
            reports_dir: home.join("reports"),
            history_path: home.join("history.json"),
            reconnect: Duration::ZERO,
            backups_dir: home.join("backups"),
            journal_dir: home.join("journal"),
            device_timeout: None,
            switch_timeout: Duration::from_secs(30),
            check_only: false,
            cancel: Cancel::default(),
            expect_edl: false,
            vbmeta_flags: crate::protocol::avb::Flags::NONE,
            slot: None,
            optimized_super: true,
        }
    }
}

impl Default for JobOptions {
    fn default() -> Self {
        Self::under(&crate::paths::home())
    }
}

/// Everything a job needs.
#[derive(Debug)]
pub struct JobRequest {
    /// The package file.
    pub package: PathBuf,
    /// The keys to trust.
    pub trust: TrustStore,
    /// The device.
    pub device: DeviceTarget,
    /// Device knowledge.
    pub quirks: Quirks,
    /// Options.
    pub options: JobOptions,
}

/// Runs a job to the end, emitting events, and returns its report (already written).
pub fn run(req: &JobRequest, emit: &mut dyn FnMut(Event)) -> Report {
    run_with(req, None, emit)
}

/// Runs a job with a package already verified against `req.trust`, so that flashing one
/// package onto several devices verifies it once. Each image is still hashed again as it
/// is sent and committed only if it matches.
pub fn run_verified(
    req: &JobRequest,
    package: &VerifiedPackage,
    emit: &mut dyn FnMut(Event),
) -> Report {
    run_with(req, Some(package), emit)
}

fn run_with(
    req: &JobRequest,
    verified: Option<&VerifiedPackage>,
    emit: &mut dyn FnMut(Event),
) -> Report {
    let mut report = Report {
        tool: format!("flashline {}", env!("CARGO_PKG_VERSION")),
        started_at: report::now(),
        finished_at: String::new(),
        outcome: Outcome::DeviceError,
        error: None,
        device_address: req.device.address.clone(),
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
    };
    let (outcome, error) = match steps(req, verified, &mut report, emit) {
        Ok(outcome) => (outcome, None),
        // A transfer cut short by a cancel fails like a broken link; say what it was.
        Err((Outcome::DeviceError, message)) if req.options.cancel.is_cancelled() => (
            Outcome::Cancelled,
            Some(format!("cancelled by the user: {message}")),
        ),
        Err((outcome, message)) => (outcome, Some(message)),
    };
    report.outcome = outcome;
    report.error = error.clone();
    report.finished_at = report::now();
    let explicit = req.options.report_path.as_deref();
    let (written, error) = match report.save(explicit, &req.options.reports_dir) {
        Ok(path) => (Some(path), error),
        Err(e) => {
            let path = explicit.unwrap_or(&req.options.reports_dir);
            let msg = format!("could not write the report to {}: {e}", path.display());
            (
                None,
                Some(error.map_or(msg.clone(), |err| format!("{err}; {msg}"))),
            )
        }
    };
    emit(Event::Finished {
        outcome,
        error,
        report: written,
    });
    report
}

/// Why a job stopped early: its outcome and the message for the user.
pub(super) type Stop = (Outcome, String);

fn steps(
    req: &JobRequest,
    verified: Option<&VerifiedPackage>,
    report: &mut Report,
    emit: &mut dyn FnMut(Event),
) -> Result<Outcome, Stop> {
    emit(Event::Stage {
        stage: Stage::Verify,
    });
    let owned;
    let package = match verified {
        Some(package) => package,
        None => {
            owned = verify_package(req)?;
            &owned
        }
    };
    let manifest = package.manifest();
    let signer = package.signer();
    report.package = Some(PackageFacts {
        path: req.package.clone(),
        name: manifest.name.clone(),
        version: manifest.version.to_string(),
        security_version: manifest.security_version,
        manifest_sha256: package.manifest_sha256().to_string(),
        signer: signer.key_id.to_string(),
        signer_name: signer.name.clone(),
    });
    emit(Event::PackageVerified {
        name: manifest.name.clone(),
        version: manifest.version.to_string(),
        signer: signer.key_id.to_string(),
        signer_name: signer.name.clone(),
    });

    if let Some(plan) = package.zxic() {
        return super::zxic::run(req, report, emit, package, plan);
    }
    if let Some(plan) = package.unisoc() {
        return super::unisoc::run(req, report, emit, package, plan);
    }
    match package.qualcomm() {
        Some(plan) => super::qualcomm::run(req, report, emit, package, plan),
        None => fastboot(req, report, emit, package),
    }
}

/// The fastboot part of a job, after the package was verified.
fn fastboot(
    req: &JobRequest,
    report: &mut Report,
    emit: &mut dyn FnMut(Event),
    package: &VerifiedPackage,
) -> Result<Outcome, Stop> {
    let manifest = package.manifest();
    req.options.cancel.check("identifying the device")?;
    emit(Event::Stage {
        stage: Stage::Identify,
    });
    let device_err = |e: crate::device::DeviceError| (Outcome::DeviceError, e.to_string());
    let mut driver = open_device(req)?;
    let mut device = driver.identify().map_err(device_err)?;
    if let Some(check) = fastboot_package_on(&device) {
        // Named by its chip all the same, so the GUI can offer the build that fits it.
        if device.mode == crate::device::Mode::Edl && device.product.is_none() {
            super::qualcomm::name_by_chip(&mut device, &req.quirks, report);
        }
        let message = format!("refused before writing anything: {}", check.message);
        report.device = Some(device.clone());
        report.preflight = vec![check.clone()];
        emit(Event::DeviceIdentified {
            device: Box::new(device),
        });
        emit(Event::Preflight {
            checks: vec![check],
        });
        return Err((Outcome::PreflightRefused, message));
    }
    let mut phases =
        super::fastbootd::Phases::inspect(req, package, &mut driver, &mut device, report, emit)?;
    let slotted = plan::ask_slots(driver.as_mut(), package, &device).map_err(device_err)?;
    let slot = plan::chosen_slot(req.options.slot, &device).map_err(|e| {
        report.device = Some(device.clone());
        (
            Outcome::PreflightRefused,
            format!("refused before writing anything: {e}"),
        )
    })?;
    let mut targets = plan::targets(package, &device, &slotted, slot.as_deref());
    for (target, size) in &mut targets {
        if size.is_none() {
            *size = driver.partition_size(target).map_err(device_err)?;
            if let Some(s) = size {
                device.partitions.insert(target.clone(), *s);
                device.partitions_size_unknown.remove(target);
            }
        }
    }
    report.device = Some(device.clone());
    report.before = Some(versions(&device, "the device"));
    emit(Event::DeviceIdentified {
        device: Box::new(device.clone()),
    });

    emit(Event::Stage {
        stage: Stage::Preflight,
    });
    let past = history::lookup(&req.options.history_path, &device, package)
        .map_err(|e| (Outcome::PreflightRefused, e.to_string()))?;
    if past.is_some() {
        report.notes.push(
            "flashline's history of this device is a floor for the downgrade check: the higher of it and the device's own versions was compared"
                .into(),
        );
    }
    let mut reported = Vec::new();
    for requirement in &manifest.requires {
        let value = driver
            .variable(requirement.device_variable())
            .map_err(device_err)?
            .map(|v| crate::device::clean(&v));
        reported.push(value);
    }
    let mut preflight = Preflight::run(
        package,
        &device,
        &targets,
        past.as_ref(),
        &req.options.overrides,
    );
    preflight.checks.extend(super::preflight::requirements(
        &manifest.requires,
        &reported,
    ));
    preflight.checks.extend(phases.checks(&device, &targets));
    preflight.checks.extend(super::vbmeta::checks(
        req.options.vbmeta_flags,
        package,
        &targets,
        &device,
    ));
    report.preflight = preflight.checks.clone();
    emit(Event::Preflight {
        checks: preflight.checks.clone(),
    });
    let cleared = preflight.clear().map_err(|refusals| {
        (
            Outcome::PreflightRefused,
            format!("refused before writing anything: {refusals}"),
        )
    })?;
    report.overrides = preflight
        .checks
        .iter()
        .filter_map(|c| c.relaxed_by.clone())
        .collect();

    emit(Event::Stage { stage: Stage::Plan });
    let plan = FlashPlan::build(package, &device, &slotted, slot.as_deref(), &cleared);
    report.images = plan
        .writes
        .iter()
        .zip(&manifest.images)
        .map(|(w, image)| ImageReport::not_started(&w.partition, &w.target, w.bytes, &image.sha256))
        .collect();
    emit(Event::PlanReady {
        writes: plan.writes.clone(),
        activate_slot: plan.activate_slot.clone(),
        total_bytes: plan.total_bytes(),
    });
    if req.options.dry_run || req.options.check_only {
        return Ok(Outcome::DryRun);
    }

    emit(Event::Stage {
        stage: Stage::Flash,
    });
    let mut journal = Resumable::open(req, report, emit, &device, package);
    let targets: Vec<Target> = plan
        .writes
        .iter()
        .map(|w| Target::Partition {
            name: w.target.clone(),
        })
        .collect();
    let names: Vec<String> = plan.writes.iter().map(|w| w.target.clone()).collect();
    let patches = super::vbmeta::Patches::new(req.options.vbmeta_flags, &names);
    // Every image that will be written is read and planned before the first write, so
    // that no image can be found unsendable half way through the job.
    for (index, target) in targets.iter().enumerate() {
        if journal.was_verified(index) {
            continue;
        }
        req.options.cancel.check(&format!("preparing {target}"))?;
        let source = PackageImage::new(package, index)
            .cancelled_by(&req.options.cancel)
            .patched(patches.of(index));
        driver.prepare(target, &source).map_err(|e| {
            // A cancel stops the reading of the image: that is no verdict on the device.
            if req.options.cancel.is_cancelled() {
                return (
                    Outcome::Cancelled,
                    format!("cancelled by the user while preparing {target}; nothing was written"),
                );
            }
            (
                Outcome::PreflightRefused,
                format!(
                    "refused before writing anything: {target} cannot be sent to this device: {e}"
                ),
            )
        })?;
    }
    let count = plan.writes.len();
    for &index in &plan.order {
        let (write, target) = (&plan.writes[index], &targets[index]);
        if phases.before(req, &mut driver, &plan, index, &mut journal, report, emit)? {
            continue;
        }
        let source = PackageImage::new(package, index)
            .cancelled_by(&req.options.cancel)
            .patched(patches.of(index));
        if journal.keep(driver.as_mut(), index, target, &source, report, emit)? {
            continue;
        }
        req.options
            .cancel
            .check(&format!("writing {}", write.target))?;
        battery_still_ok(
            driver.as_mut(),
            package,
            &req.options.overrides,
            &write.target,
        )?;
        let step = ImageStep {
            index,
            count,
            name: &write.target,
            target,
            source: &source,
        };
        write_step(driver.as_mut(), step, journal.journal(), report, emit)?;
        patches.record(index, report);
    }
    phases.finish(req, &mut driver, &mut journal, report, emit)?;

    if let Some(slot) = &plan.activate_slot {
        req.options
            .cancel
            .check(&format!("switching to slot {slot}"))?;
        emit(Event::Stage {
            stage: Stage::Activate,
        });
        driver.set_active_slot(slot).map_err(device_err)?;
        report.activated_slot = Some(slot.clone());
        emit(Event::SlotSwitched { slot: slot.clone() });
        // The slot switch is the commit: the same job run again would now write the other
        // slot, so there is nothing left to resume.
        journal.finish(report);
    }

    emit(Event::Stage {
        stage: Stage::Reboot,
    });
    driver.reboot().map_err(|e| {
        let slot = report
            .activated_slot
            .as_ref()
            .map(|s| format!(" and slot {s} is active"))
            .unwrap_or_default();
        (
            Outcome::DeviceError,
            format!(
                "every image is written and verified{slot}, but the device did not confirm \
                 its reboot ({e}): restart it by hand"
            ),
        )
    })?;
    drop(driver);
    report.after = Some(match reidentify(req, device.serial.as_deref()) {
        Some(after) => versions(&after, "the device after its reboot"),
        None => Versions {
            firmware: Some(manifest.version.to_string()),
            security: Some(manifest.security_version),
            source: "the package (the device was not read back after its reboot)".into(),
        },
    });

    journal.finish(report);
    record_history(
        req,
        report,
        device.serial.as_deref(),
        device.product.as_deref(),
        package,
    );
    Ok(Outcome::Success)
}

/// The refusal of a fastboot package on a modem or a device in EDL, which name no
/// partitions before a programmer runs: the package is the wrong kind, and saying that
/// beats listing every partition the device "does not report".
fn fastboot_package_on(device: &DeviceInfo) -> Option<super::Check> {
    let (actual, mode) = match device.mode {
        crate::device::Mode::Edl => ("EDL", "it is in emergency download mode"),
        crate::device::Mode::Modem => ("modem (AT)", "it is a modem answering AT commands"),
        crate::device::Mode::Diag => ("DIAG", "it is a modem's diagnostic port"),
        crate::device::Mode::Zxic => ("ZXIC download", "it is a ZXIC device in download mode"),
        crate::device::Mode::Unisoc => ("Unisoc download", "it is in Unisoc download mode"),
        crate::device::Mode::Fastboot | crate::device::Mode::Unknown => return None,
    };
    Some(super::Check {
        name: "package-kind".into(),
        status: super::Status::Refuse,
        actual: actual.into(),
        required: "fastboot mode".into(),
        message: format!(
            "this is a fastboot package; this device needs {} ({mode})",
            match device.mode {
                crate::device::Mode::Zxic => "a ZXIC package",
                crate::device::Mode::Unisoc => "a Unisoc package",
                _ => "a Qualcomm flat build",
            }
        ),
        relaxed_by: None,
    })
}

/// Reads the battery again before an image: a charge that fell below the package's minimum
/// during the job stops it between two images, never in the middle of one.
fn battery_still_ok(
    driver: &mut dyn Driver,
    package: &VerifiedPackage,
    overrides: &super::preflight::Overrides,
    next: &str,
) -> Result<(), Stop> {
    let device = driver
        .identify()
        .map_err(|e| (Outcome::DeviceError, e.to_string()))?;
    let check =
        super::preflight::battery(package.manifest().min_battery_percent, &device, overrides);
    if check.status == super::Status::Refuse {
        return Err((
            Outcome::DeviceError,
            format!(
                "stopped before writing {next}: {}. The images written so far are kept; \
                 run the same job again once the device is charged to resume",
                check.message
            ),
        ));
    }
    Ok(())
}

pub(super) fn versions(device: &DeviceInfo, source: &str) -> Versions {
    Versions {
        firmware: device.firmware_version_raw.clone(),
        security: device.security_version,
        source: source.to_string(),
    }
}

/// Reads the device again after its reboot, if the same device (same serial) comes back
/// within the allowed time.
fn reidentify(req: &JobRequest, serial: Option<&str>) -> Option<DeviceInfo> {
    let deadline = Instant::now() + req.options.reconnect;
    while Instant::now() < deadline {
        if let Ok(info) = discovery::open(
            &req.device.address,
            &req.quirks,
            req.device.is_virtual,
            req.device.probe,
        )
        .and_then(|mut d| d.identify())
        {
            return (serial.is_some() && info.serial.as_deref() == serial).then_some(info);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// One image of a verified package, as the driver sees it.
///
/// `skip` leaves out the image's first bytes (a rawprogram `file_sector_offset`); they are
/// still read and hashed, since the signature covers the whole file.
pub(super) struct PackageImage<'a> {
    package: &'a VerifiedPackage,
    index: usize,
    skip: u64,
    cancel: Option<Cancel>,
    patch: Option<super::vbmeta::Patch>,
}

impl<'a> PackageImage<'a> {
    /// The whole image `index`.
    pub(super) fn new(package: &'a VerifiedPackage, index: usize) -> Self {
        Self::skipping(package, index, 0)
    }

    /// Image `index` from byte `skip` on.
    pub(super) fn skipping(package: &'a VerifiedPackage, index: usize, skip: u64) -> Self {
        PackageImage {
            package,
            index,
            skip,
            cancel: None,
            patch: None,
        }
    }

    /// Sets vbmeta flags in the bytes sent, after they were checked against the signature
    /// (see [`super::vbmeta`]).
    pub(super) fn patched(mut self, patch: Option<&super::vbmeta::Patch>) -> Self {
        self.patch = patch.cloned();
        self
    }

    /// Makes reads fail once `cancel` is set, which ends the transfer in progress.
    pub(super) fn cancelled_by(mut self, cancel: &Cancel) -> Self {
        self.cancel = Some(cancel.clone());
        self
    }

    fn open(&self) -> std::io::Result<HashedSend> {
        let reader = self
            .package
            .open_image(self.index)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(HashedSend {
            reader,
            skip: self.skip,
            cancel: self.cancel.clone(),
            patch: self.patch.as_ref().map(|p| p.patcher(true)),
        })
    }
}

impl ImageSource for PackageImage<'_> {
    fn len(&self) -> u64 {
        self.package.manifest().images[self.index].size - self.skip
    }

    fn is_sparse(&self) -> bool {
        self.package.manifest().images[self.index].sparse.is_some()
    }

    /// Planning reads the bytes without hashing them: they decide only how to cut the
    /// image, and the send reader hashes what is actually sent.
    fn plan_reader(&self) -> std::io::Result<Box<dyn Read + Send + '_>> {
        let reader = self
            .package
            .open_image_for_planning(self.index)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Box::new(StopOnCancel {
            inner: reader.skipping(self.skip),
            cancel: self.cancel.clone(),
            patch: self.patch.as_ref().map(|p| p.patcher(false)),
        }))
    }

    fn send_reader(&self) -> std::io::Result<Box<dyn SendReader + '_>> {
        Ok(Box::new(self.open()?))
    }

    /// An image read from part way in (`skip`) has no blocks aligned with its start.
    fn block_hashes(&self) -> Option<crate::hashing::BlockHashes> {
        (self.skip == 0)
            .then(|| self.package.block_hashes(self.index))
            .flatten()
    }

    fn send_reader_from(&self, first: usize) -> std::io::Result<Box<dyn SendReader + '_>> {
        let reader = self
            .package
            .open_image_from_block(self.index, first)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Box::new(HashedSend {
            reader,
            skip: 0,
            cancel: self.cancel.clone(),
            // The vbmeta header is in the first block: flags are set only on a whole send.
            patch: (first == 0)
                .then(|| self.patch.as_ref().map(|p| p.patcher(true)))
                .flatten(),
        }))
    }
}

/// A reader that fails once the job is cancelled, which ends the transfer in progress
/// (drivers that send from a second pass read through it).
struct StopOnCancel<R> {
    inner: R,
    cancel: Option<Cancel>,
    /// Vbmeta flags, set as in the send reader, so that a split image's pieces carry them.
    patch: Option<super::vbmeta::Patcher>,
}

impl<R: Read> Read for StopOnCancel<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.cancel.as_ref().is_some_and(Cancel::is_cancelled) {
            return Err(std::io::Error::other("the transfer was stopped"));
        }
        let n = self.inner.read(buf)?;
        if let Some(patch) = &mut self.patch {
            patch.apply(&mut buf[..n])?;
        }
        Ok(n)
    }
}

/// The package's hashing image reader as a driver's [`SendReader`].
pub(super) struct HashedSend {
    reader: ImageReader,
    skip: u64,
    cancel: Option<Cancel>,
    /// Vbmeta flags to set in the bytes once they are hashed, and the sent bytes' hash.
    patch: Option<super::vbmeta::Patcher>,
}

impl Read for HashedSend {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.cancel.as_ref().is_some_and(Cancel::is_cancelled) {
            return Err(std::io::Error::other("the transfer was stopped"));
        }
        while self.skip > 0 {
            let mut scratch = [0u8; 4096];
            let n = (self.skip as usize).min(scratch.len());
            self.reader.read_exact(&mut scratch[..n])?;
            self.skip -= n as u64;
        }
        // The signed bytes are hashed inside `reader`; flags are set only after.
        let n = self.reader.read(buf)?;
        if let Some(patch) = &mut self.patch {
            patch.apply(&mut buf[..n])?;
        }
        Ok(n)
    }
}

impl SendReader for HashedSend {
    fn verify(self: Box<Self>) -> Result<(), String> {
        let HashedSend { reader, patch, .. } = *self;
        reader.finish().map_err(|e| e.to_string())?;
        patch.map_or(Ok(()), super::vbmeta::Patcher::finish)
    }
}

/// One image write as the job sees it.
pub(super) struct ImageStep<'a> {
    /// 0-based index in the plan (and in the report's images).
    pub index: usize,
    /// Number of images.
    pub count: usize,
    /// What the user sees (partition name or label).
    pub name: &'a str,
    /// Where it goes.
    pub target: &'a Target,
    /// The bytes.
    pub source: &'a dyn ImageSource,
}

/// Writes one image: emits its events (with throttled progress), passes on device
/// messages, and records the result in the report.
pub(super) fn write_step(
    driver: &mut dyn Driver,
    step: ImageStep<'_>,
    mut journal: Option<&mut Journal>,
    report: &mut Report,
    emit: &mut dyn FnMut(Event),
) -> Result<(), Stop> {
    let ImageStep {
        index,
        count,
        name,
        target,
        source,
    } = step;
    let total = source.len();
    emit(Event::ImageStarted {
        index,
        count,
        target: name.to_string(),
        bytes: total,
    });
    if let Some(j) = journal.as_deref_mut() {
        j.mark(index, ImageState::Started);
    }
    let started = Instant::now();
    let mut last = 0u64;
    let result = driver.write_image(target, source, &mut |done: u64| {
        // Drivers may count padding past the image's end; progress never passes 100 %.
        let done = done.min(total);
        if done >= last + PROGRESS_STEP || (done == total && last < total) {
            if done == total {
                if let Some(j) = journal.as_deref_mut() {
                    j.mark(index, ImageState::Written);
                }
            }
            last = done;
            emit(Event::Progress { index, done, total });
        }
    });
    for text in driver.take_messages() {
        emit(Event::DeviceMessage { text });
    }
    let seconds = started.elapsed().as_secs_f64();
    let entry = &mut report.images[index];
    entry.seconds = Some(seconds);
    if let Err(e) = result {
        entry.status = "failed".into();
        report.incomplete = Some(entry.target.clone());
        if let Some(j) = journal {
            report.notes.extend(j.take_failures());
        }
        return Err((
            Outcome::DeviceError,
            format!(
                "writing {name} ({target}) failed: {e}. {name} is incomplete; the images \
                 before it are verified and kept: once the device is back, run the same job \
                 again to resume from {name}"
            ),
        ));
    }
    if let Some(j) = journal {
        j.mark(index, ImageState::Verified);
    }
    entry.status = "written".into();
    entry.verified_by = driver.verified_by();
    entry.skipped = driver.skipped();
    entry.sha256_sent = Some(entry.sha256_signed.clone());
    emit(Event::ImageWritten {
        index,
        target: name.to_string(),
        sha256: entry.sha256_signed.clone(),
        seconds,
        verified_by: entry.verified_by,
    });
    Ok(())
}

/// Records a successful job in the local history of the device (product and serial).
pub(super) fn record_history(
    req: &JobRequest,
    report: &mut Report,
    serial: Option<&str>,
    product: Option<&str>,
    package: &VerifiedPackage,
) {
    let Some(serial) = serial else { return };
    let m = package.manifest();
    let entry = HistoryEntry {
        product: product.unwrap_or_default().to_string(),
        package: m.name.clone(),
        version: m.version.to_string(),
        security_version: m.security_version,
        flashed_at: report::now(),
    };
    match History::record(&req.options.history_path, serial, entry) {
        Ok(note) => report.notes.extend(note),
        Err(e) => report
            .notes
            .push(format!("the flash history was not updated: {e}")),
    }
}

/// Opens the driver for the job's device.
pub(super) fn open_device(req: &JobRequest) -> Result<Box<dyn Driver>, Stop> {
    open_at(req, &req.device.address, req.device.probe)
}

/// Opens the driver for the job's device at `address` (where it is now), with the job's
/// timeout.
pub(super) fn open_at(
    req: &JobRequest,
    address: &str,
    probe: bool,
) -> Result<Box<dyn Driver>, Stop> {
    let opened = if req.options.expect_edl && !probe {
        let wait = req.options.device_timeout.unwrap_or(discovery::HELLO_WAIT);
        discovery::open_as_edl(address, &req.quirks, wait)
    } else {
        discovery::open(address, &req.quirks, req.device.is_virtual, probe)
    };
    let mut driver = opened.map_err(|e| (Outcome::DeviceError, e.to_string()))?;
    if let Some(silence) = req.options.device_timeout {
        driver.set_timeout(silence);
    }
    Ok(driver)
}

/// Opens and verifies the job's package: nothing touches a device before this succeeds.
pub(super) fn verify_package(req: &JobRequest) -> Result<VerifiedPackage, Stop> {
    Package::open(&req.package)
        .and_then(|p| p.verify(&req.trust))
        .map_err(|e| (Outcome::PackageRejected, format!("package rejected: {e}")))
}

/// Runs a job on a blocking thread of the tokio runtime, streaming its events.
///
/// Device I/O is blocking (rusb, sockets with timeouts), so it runs on tokio's blocking
/// pool; front ends receive events on the channel and never block.
pub fn spawn(
    req: JobRequest,
) -> (
    tokio::sync::mpsc::UnboundedReceiver<Event>,
    tokio::task::JoinHandle<Report>,
) {
    spawn_with(req, None)
}

/// [`spawn`] for a package already verified against `req.trust` (see [`run_verified`]).
pub fn spawn_verified(
    req: JobRequest,
    package: Arc<VerifiedPackage>,
) -> (
    tokio::sync::mpsc::UnboundedReceiver<Event>,
    tokio::task::JoinHandle<Report>,
) {
    spawn_with(req, Some(package))
}

fn spawn_with(
    req: JobRequest,
    package: Option<Arc<VerifiedPackage>>,
) -> (
    tokio::sync::mpsc::UnboundedReceiver<Event>,
    tokio::task::JoinHandle<Report>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let handle = tokio::task::spawn_blocking(move || {
        run_with(&req, package.as_deref(), &mut |event| {
            let _ = tx.send(event);
        })
    });
    (rx, handle)
}
