//! The Qualcomm job: modems, hotspots and bricked devices flashed through EDL.
//!
//! AT identify → preflight → switch to download mode → Sahara (the signed programmer) →
//! Firehose: storage preflight → backup of the identity partitions → erase → program
//! (each range checked with the device's own SHA-256) → patches → reset → report.
//! A device already in EDL (a brick) skips the AT steps; its identity then comes from the
//! package's target and from what its storage shows.

use std::time::Instant;

use super::backup::{self, Wanted};
use super::event::{Event, PlannedWrite, Stage};
use super::history::{History, HistoryEntry};
use super::job::{PackageImage, Stop};
use super::preflight::{storage_range, Preflight};
use super::report::{BackupFacts, ImageReport, Outcome};
use super::JobRequest;
use crate::device::quirks::Model;
use crate::device::{discovery, DeviceError, Driver, Lun, Mode, Target};
use crate::package::qualcomm::expr::{EvalError, Expr, ExprContext};
use crate::package::qualcomm::QualcommPlan;
use crate::package::VerifiedPackage;

/// Runs the Qualcomm part of a job, after the package was verified.
pub(super) fn run(
    req: &JobRequest,
    report: &mut super::Report,
    emit: &mut dyn FnMut(Event),
    package: &VerifiedPackage,
    plan: &QualcommPlan,
) -> Result<Outcome, Stop> {
    let device_err = |e: DeviceError| (Outcome::DeviceError, e.to_string());
    let cancel = &req.options.cancel;
    cancel.check("identifying the device")?;
    emit(Event::Stage {
        stage: Stage::Identify,
    });
    let mut driver = discovery::open(&req.device.address, &req.quirks, req.device.is_virtual)
        .map_err(device_err)?;
    let mut device = driver.identify().map_err(device_err)?;
    report.device = Some(device.clone());
    report.before = Some(super::job::versions(&device, "the device"));
    emit(Event::DeviceIdentified {
        device: Box::new(device.clone()),
    });

    emit(Event::Stage {
        stage: Stage::Preflight,
    });
    let history = History::load(&req.options.history_path)
        .map_err(|e| (Outcome::PreflightRefused, e.to_string()))?;
    let past = device.serial.as_deref().and_then(|s| history.get(s));
    if past.is_some() && device.security_version.is_none() {
        report
            .notes
            .push("the device does not report a security version; flashline's history of this serial was used".into());
    }
    let preflight = Preflight::run(package, &device, &[], past, &req.options.overrides);
    report.preflight = preflight.checks.clone();
    report.overrides = preflight
        .checks
        .iter()
        .filter_map(|c| c.relaxed_by.clone())
        .collect();
    emit(Event::Preflight {
        checks: preflight.checks.clone(),
    });
    preflight.clear().map_err(|refusals| {
        (
            Outcome::PreflightRefused,
            format!("refused before writing anything: {refusals}"),
        )
    })?;

    // The model (from AT, or the package's own target for a brick) decides the switch
    // command and which partitions hold the device's identity.
    let product = device.product.clone().or_else(|| {
        package
            .manifest()
            .targets
            .first()
            .map(|t| t.product.clone())
    });
    let model = product.as_deref().and_then(|p| req.quirks.model(p));
    if !matches!(device.mode, Mode::Modem | Mode::Edl) {
        return Err((
            Outcome::PreflightRefused,
            format!(
                "{} is not a modem or a device in EDL; this package needs one",
                req.device.address
            ),
        ));
    }
    if req.options.check_only {
        return Ok(Outcome::DryRun);
    }
    if device.mode == Mode::Modem {
        cancel.check("switching to download mode")?;
        emit(Event::Stage {
            stage: Stage::Switch,
        });
        let (edl, to) = switch_to_download(driver, &device, model, req)?;
        driver = edl;
        emit(Event::DeviceSwitched {
            from: req.device.address.clone(),
            to: to.clone(),
        });
        report.notes.push(format!(
            "switched to download mode: {} → {to}",
            req.device.address
        ));
    }

    cancel.check("loading the programmer")?;
    emit(Event::Stage {
        stage: Stage::Programmer,
    });
    start_programmer(driver.as_mut(), package, plan)?;
    let storage = driver.identify().map_err(device_err)?;
    device.luns = storage.luns;
    device.layout = storage.layout;
    device.partitions = storage.partitions;
    report.device = Some(device.clone());

    // Storage preflight: every range resolved against the real LUN sizes before any write.
    let mut writes = Vec::new();
    let mut storage_checks = Vec::new();
    for op in &plan.program {
        let image = &package.manifest().images[op.image];
        let sectors = op.sectors(image);
        let start = resolve(&op.start_sector, op.lun, &device.luns, driver.as_mut());
        let (check, target) = storage_range(
            &op.label,
            op.lun,
            op.sector_size,
            start,
            sectors,
            &device.luns,
        );
        storage_checks.push(check);
        writes.push((
            op,
            target,
            image.size - op.file_sector_offset * u64::from(op.sector_size),
        ));
    }
    let mut erases = Vec::new();
    for op in &plan.erase {
        let label = op
            .label
            .clone()
            .unwrap_or_else(|| format!("LUN {}", op.lun));
        let start = resolve(&op.start_sector, op.lun, &device.luns, driver.as_mut());
        let (check, target) = storage_range(
            &label,
            op.lun,
            op.sector_size,
            start,
            op.num_partition_sectors,
            &device.luns,
        );
        storage_checks.push(check);
        erases.push((label, target));
    }
    let refused: Vec<String> = storage_checks
        .iter()
        .filter(|c| c.status == super::Status::Refuse)
        .map(|c| c.message.clone())
        .collect();
    report.preflight.extend(storage_checks.iter().cloned());
    emit(Event::Preflight {
        checks: report.preflight.clone(),
    });
    if !refused.is_empty() {
        let _ = driver.reboot();
        return Err((
            Outcome::PreflightRefused,
            format!("refused before writing anything: {}", refused.join("; ")),
        ));
    }

    emit(Event::Stage { stage: Stage::Plan });
    let planned: Vec<PlannedWrite> = writes
        .iter()
        .map(|(op, target, bytes)| PlannedWrite {
            partition: op.label.clone(),
            target: target
                .as_ref()
                .map_or_else(String::new, ToString::to_string),
            bytes: *bytes,
            sparse: op.sparse,
        })
        .collect();
    report.images = writes
        .iter()
        .zip(&planned)
        .map(|((op, _, bytes), p)| ImageReport {
            partition: op.label.clone(),
            target: p.target.clone(),
            bytes: *bytes,
            sha256_signed: package.manifest().images[op.image].sha256.to_string(),
            sha256_sent: None,
            seconds: None,
            status: "not-started".into(),
        })
        .collect();
    emit(Event::PlanReady {
        total_bytes: planned.iter().map(|w| w.bytes).sum(),
        writes: planned,
        activate_slot: None,
    });
    if req.options.dry_run {
        let _ = driver.reboot();
        return Ok(Outcome::DryRun);
    }

    if let Err(stop) = cancel.check("the backup") {
        let _ = driver.reboot();
        return Err(stop);
    }
    emit(Event::Stage {
        stage: Stage::Backup,
    });
    let mut labels: Vec<String> = model.map(|m| m.backup.clone()).unwrap_or_default();
    labels.extend(plan.backup.iter().cloned());
    labels.dedup();
    let mut wanted = Vec::new();
    for label in &labels {
        match device.layout.iter().find(|p| &p.label == label) {
            Some(p) => {
                let sector_size = device
                    .luns
                    .iter()
                    .find(|l| l.index == p.lun)
                    .map_or(0, |l| l.sector_size);
                wanted.push(Wanted {
                    label: label.clone(),
                    target: Target::Sectors {
                        lun: p.lun,
                        start: p.start_sector,
                        count: p.sectors,
                        sector_size,
                    },
                });
            }
            None => report.notes.push(format!(
                "partition {label} is not on this device; nothing to back up"
            )),
        }
    }
    let (dir, manifest) = backup::create(
        &req.options.backups_dir,
        device.serial.as_deref(),
        product.as_deref(),
        &wanted,
        driver.as_mut(),
        &mut |_, _| {},
    )
    .map_err(|e| {
        (
            Outcome::DeviceError,
            format!("the backup of the identity partitions failed, so nothing was written: {e}"),
        )
    })?;
    for e in &manifest.entries {
        emit(Event::BackupWritten {
            label: e.label.clone(),
            sha256: e.sha256.clone(),
        });
    }
    report.backup = Some(BackupFacts {
        dir,
        partitions: manifest.entries,
    });

    emit(Event::Stage {
        stage: Stage::Flash,
    });
    for (label, target) in &erases {
        let target = target.as_ref().expect("cleared by the storage preflight");
        driver
            .erase(target)
            .map_err(|e| (Outcome::DeviceError, format!("erasing {label} failed: {e}")))?;
    }
    let count = writes.len();
    for (index, (op, target, bytes)) in writes.iter().enumerate() {
        cancel.check(&format!("writing {}", op.label))?;
        let target = target.as_ref().expect("cleared by the storage preflight");
        emit(Event::ImageStarted {
            index,
            count,
            target: op.label.clone(),
            bytes: *bytes,
        });
        let started = Instant::now();
        let source = PackageImage::skipping(
            package,
            op.image,
            op.file_sector_offset * u64::from(op.sector_size),
        )
        .cancelled_by(cancel);
        let result =
            super::job::write_with_progress(driver.as_mut(), target, &source, index, *bytes, emit);
        for text in driver.take_messages() {
            emit(Event::DeviceMessage { text });
        }
        let entry = &mut report.images[index];
        entry.seconds = Some(started.elapsed().as_secs_f64());
        if let Err(e) = result {
            entry.status = "failed".into();
            return Err((
                Outcome::DeviceError,
                format!("writing {} ({target}) failed: {e}", op.label),
            ));
        }
        entry.status = "written".into();
        entry.sha256_sent = Some(entry.sha256_signed.clone());
        emit(Event::ImageWritten {
            index,
            target: op.label.clone(),
            sha256: entry.sha256_signed.clone(),
            seconds: entry.seconds.unwrap_or_default(),
        });
    }

    emit(Event::Stage {
        stage: Stage::Patch,
    });
    for op in &plan.patch {
        let what = if op.what.is_empty() {
            "patch"
        } else {
            op.what.as_str()
        };
        let fail = |detail: String| {
            (
                Outcome::DeviceError,
                format!("patch {what:?} failed: {detail}"),
            )
        };
        let lun = device
            .luns
            .iter()
            .find(|l| l.index == op.lun)
            .cloned()
            .ok_or_else(|| fail(format!("the device has no LUN {}", op.lun)))?;
        let start =
            resolve(&op.start_sector, op.lun, &device.luns, driver.as_mut()).map_err(&fail)?;
        // Evaluated just before it is applied: a CRC covers what earlier patches wrote.
        let value = resolve(&op.value, op.lun, &device.luns, driver.as_mut()).map_err(&fail)?;
        if !op.fits(value) {
            return Err(fail(format!(
                "value {value} does not fit in {} bytes",
                op.size_in_bytes
            )));
        }
        let target = Target::Sectors {
            lun: op.lun,
            start,
            count: 1,
            sector_size: lun.sector_size,
        };
        driver
            .patch(&target, op.byte_offset, op.size_in_bytes, value)
            .map_err(|e| fail(e.to_string()))?;
    }
    report
        .notes
        .push(format!("{} device patches applied", plan.patch.len()));

    emit(Event::Stage {
        stage: Stage::Reboot,
    });
    driver.reboot().map_err(device_err)?;
    report.after = Some(super::report::Versions {
        firmware: Some(package.manifest().version.to_string()),
        security: Some(package.manifest().security_version),
        source: "the package (the device was reset into its new firmware)".into(),
    });
    if let Some(serial) = &device.serial {
        let m = package.manifest();
        let entry = HistoryEntry {
            product: product.clone().unwrap_or_default(),
            package: m.name.clone(),
            version: m.version.to_string(),
            security_version: m.security_version,
            flashed_at: super::report::now(),
        };
        if let Err(e) = History::record(&req.options.history_path, serial, entry) {
            report
                .notes
                .push(format!("the flash history was not updated: {e}"));
        }
    }
    Ok(Outcome::Success)
}

/// Sends a modem to its download mode and opens it again there; returns the EDL driver
/// and the device's new address.
pub(super) fn switch_to_download(
    mut driver: Box<dyn Driver>,
    device: &crate::device::DeviceInfo,
    model: Option<&Model>,
    req: &JobRequest,
) -> Result<(Box<dyn Driver>, String), Stop> {
    let device_err = |e: DeviceError| (Outcome::DeviceError, e.to_string());
    let counterparts = model
        .and_then(|m| m.at.as_ref())
        .map(|a| a.counterparts.clone())
        .unwrap_or_default();
    driver.detach().map_err(device_err)?;
    drop(driver);
    let found = discovery::wait_for_counterpart(
        &req.device.address,
        &counterparts,
        device.serial.as_deref(),
        req.options.switch_timeout,
        &req.quirks,
    )
    .map_err(device_err)?;
    let edl =
        discovery::open(&found.address, &req.quirks, req.device.is_virtual).map_err(device_err)?;
    Ok((edl, found.address))
}

/// Starts the package's signed programmer on a device in EDL.
pub(super) fn start_programmer(
    driver: &mut dyn Driver,
    package: &VerifiedPackage,
    plan: &QualcommPlan,
) -> Result<(), Stop> {
    let programmer = PackageImage::new(package, plan.programmer);
    driver
        .load_programmer(&programmer, plan.memory.as_str())
        .map_err(|e| {
            (
                Outcome::DeviceError,
                format!("the programmer could not be started: {e}"),
            )
        })
}

/// Evaluates a rawprogram/patch expression on one LUN of the device.
fn resolve(expr: &Expr, lun: u32, luns: &[Lun], driver: &mut dyn Driver) -> Result<u64, String> {
    let lun = luns
        .iter()
        .find(|l| l.index == lun)
        .ok_or_else(|| format!("the device has no LUN {lun}"))?;
    let mut ctx = DeviceDisk { driver, lun };
    expr.eval(&mut ctx)
        .map_err(|e: EvalError<DeviceError>| format!("{expr}: {e}"))
}

/// `NUM_DISK_SECTORS` and `CRC32(…)` answered by the device itself.
struct DeviceDisk<'a> {
    driver: &'a mut dyn Driver,
    lun: &'a Lun,
}

impl ExprContext for DeviceDisk<'_> {
    type Error = DeviceError;

    fn num_disk_sectors(&self) -> u64 {
        self.lun.sectors
    }

    fn crc32(&mut self, start_sector: u64, len: u64) -> Result<u32, DeviceError> {
        let sector = u64::from(self.lun.sector_size);
        let target = Target::Sectors {
            lun: self.lun.index,
            start: start_sector,
            count: len.div_ceil(sector),
            sector_size: self.lun.sector_size,
        };
        // The evaluator caps `len` (1 MiB), so this buffer is bounded.
        let mut bytes = Vec::new();
        self.driver.read(&target, &mut bytes, &mut |_| {})?;
        bytes.truncate(len as usize);
        Ok(crc32fast::hash(&bytes))
    }
}
