//! The Qualcomm job: modems, hotspots and bricked devices flashed through EDL.
//!
//! AT identify → preflight → switch to download mode → Sahara (the signed programmer) →
//! Firehose: storage preflight → backup of the identity partitions → erase → program
//! (each range checked with the device's own SHA-256) → patches → reset → report.
//! A device already in EDL (a brick) skips the AT steps; its identity then comes from the
//! package's target and from what its storage shows.

use super::backup;
use super::download_mode;
use super::event::{Event, PlannedWrite, Stage};
use super::identity;
use super::job::{ImageStep, PackageImage, Stop};
use super::journal::Resumable;
use super::preflight::{storage_range, Check};
use super::report::{BackupFacts, ImageReport, Outcome};
use super::station::StationKey;
use super::JobRequest;
use crate::device::quirks::{Model, Provenance, Quirks};
use crate::device::{discovery, DeviceError, DeviceInfo, Driver, Lun, Mode, Target};
use crate::package::qualcomm::expr::{EvalError, Expr, ExprContext};
use crate::package::qualcomm::QualcommPlan;
use crate::package::VerifiedPackage;
use crate::protocol::diag;
use crate::protocol::sahara::identity::{parse_pk_hash, same_pk_hash};
use crate::protocol::sahara::{ChipIdentity, Hwid};
use crate::transport::serial::SerialTransport;

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
    let (mut driver, mut device) = download_mode::identify(req, emit)?;
    if device.mode == Mode::Edl && device.product.is_none() {
        name_by_chip(&mut device, &req.quirks, report);
    }
    report.device = Some(device.clone());
    report.before = Some(super::job::versions(&device, "the device"));
    emit(Event::DeviceIdentified {
        device: Box::new(device.clone()),
    });

    let (preflight, floor_from_history) = download_mode::preflight(req, package, &device, emit)?;
    if floor_from_history {
        report
            .notes
            .push("the device reports no security version; flashline's history of this device was the downgrade floor".into());
    }
    report.overrides = preflight
        .checks
        .iter()
        .filter_map(|c| c.relaxed_by.clone())
        .collect();
    download_mode::verdict(preflight.checks, report, emit)?;

    // The model (from AT, or the package's own target for a brick) decides the switch
    // command and which partitions hold the device's identity.
    let product = super::product_of(&device, package);
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
        let (edl, to) = switch_to_download(driver, model, req, &mut report.notes, emit)?;
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
    // The chip as its boot ROM describes it: read now for a modem that just switched, and
    // already for a device that was in EDL.
    let chip = match device.mode {
        Mode::Edl => device.chip.clone(),
        _ => driver.identify().map_err(device_err)?.chip,
    };
    let chip_check = programmer_fits(plan, model, chip.as_ref());
    if let Some(check) = &chip_check {
        report.preflight.push(check.clone());
        emit(Event::Preflight {
            checks: report.preflight.clone(),
        });
        if check.status == super::Status::Refuse {
            return Err((
                Outcome::PreflightRefused,
                format!("refused before the programmer was sent: {}", check.message),
            ));
        }
    }
    if device.chip.is_none() && chip.is_some() {
        device.chip = chip;
        report.device = Some(device.clone());
    }
    start_programmer(driver.as_mut(), package, plan)?;
    let job = Programmed {
        req,
        package,
        plan,
        model,
        product: product.as_deref(),
    };
    let result = job.run(driver.as_mut(), device, report, emit);
    if result.is_err() {
        // Back to the boot ROM in EDL, never into half-written firmware: the same job run
        // again loads the signed programmer and resumes.
        if let Err(e) = driver.leave_for_recovery() {
            tracing::debug!("leaving the device in EDL after a failed job: {e}");
        }
    }
    result
}

/// The part of a Qualcomm job that runs with the package's programmer on the device.
struct Programmed<'a> {
    req: &'a JobRequest,
    package: &'a VerifiedPackage,
    plan: &'a QualcommPlan,
    model: Option<&'a Model>,
    product: Option<&'a str>,
}

impl Programmed<'_> {
    /// Storage preflight → plan → backup → erase → program → patch → reset.
    fn run(
        &self,
        driver: &mut dyn Driver,
        mut device: crate::device::DeviceInfo,
        report: &mut super::Report,
        emit: &mut dyn FnMut(Event),
    ) -> Result<Outcome, Stop> {
        let Programmed {
            req,
            package,
            plan,
            model,
            product,
        } = *self;
        let device_err = |e: DeviceError| (Outcome::DeviceError, e.to_string());
        let cancel = &req.options.cancel;
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
            let start = resolve(&op.start_sector, op.lun, &device.luns, driver);
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
            let start = resolve(&op.start_sector, op.lun, &device.luns, driver);
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
        // Patches are checked now too (LUN, sector size, bounds, and values that do not depend
        // on what the writes will put on the disk), so none can fail after the first write.
        let mut patch_targets = Vec::new();
        for op in &plan.patch {
            let what = if op.what.is_empty() {
                "patch"
            } else {
                op.what.as_str()
            };
            let start = resolve(&op.start_sector, op.lun, &device.luns, driver);
            let span = op.byte_offset.div_ceil(u64::from(op.sector_size)) + 1;
            let (mut check, patch_target) = storage_range(
                &format!("patch {what:?}"),
                op.lun,
                op.sector_size,
                start.clone(),
                span,
                &device.luns,
            );
            let end = start.as_ref().ok().and_then(|s| {
                s.checked_mul(u64::from(op.sector_size))?
                    .checked_add(op.byte_offset)?
                    .checked_add(u64::from(op.size_in_bytes))
            });
            let disk = device.luns.iter().find(|l| l.index == op.lun);
            if check.status == super::Status::Pass {
                let fits_disk = match (end, disk) {
                    (Some(end), Some(disk)) => {
                        end <= disk.sectors.saturating_mul(u64::from(disk.sector_size))
                    }
                    _ => false,
                };
                let value_ok = op.value.as_str().contains("CRC32")
                    || resolve(&op.value, op.lun, &device.luns, driver).is_ok_and(|v| op.fits(v));
                if !fits_disk || !value_ok {
                    check.status = super::Status::Refuse;
                    check.message = if fits_disk {
                        format!(
                            "patch {what:?}: its value {} does not fit in {} bytes",
                            op.value, op.size_in_bytes
                        )
                    } else {
                        format!("patch {what:?} would write past the end of LUN {}", op.lun)
                    };
                }
            }
            storage_checks.push(check);
            patch_targets.push(patch_target);
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
                // No A/B promise is made over EDL: every write is in place.
                live: false,
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
            .map(|((op, _, bytes), p)| {
                let signed = &package.manifest().images[op.image].sha256;
                ImageReport::not_started(&op.label, &p.target, *bytes, signed)
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
        let mut seen = std::collections::BTreeSet::new();
        labels.retain(|l| seen.insert(l.clone()));
        let (wanted, missing) = backup::locate(&labels, &device);
        // A label the package itself asks for must be there, and a device whose partition
        // table could not be read cannot show that its identity partitions are safe.
        let required: Vec<&String> = missing.iter().filter(|l| plan.backup.contains(l)).collect();
        if !required.is_empty() || (!labels.is_empty() && device.layout.is_empty()) {
            let _ = driver.reboot();
            let what = if device.layout.is_empty() {
                "the device's partition table could not be read".to_string()
            } else {
                format!(
                    "the package requires a backup of {required:?}, which this device does not have"
                )
            };
            return Err((
                Outcome::PreflightRefused,
                format!("refused before writing anything: {what}, so its identity partitions cannot be backed up"),
            ));
        }
        let targets: Vec<_> = writes
            .iter()
            .map(|(op, target, _)| (*op, target.as_ref()))
            .collect();
        let others: Vec<_> = erases
            .iter()
            .map(|(_, t)| ("an erase", t.as_ref()))
            .chain(patch_targets.iter().map(|t| ("a patch", t.as_ref())))
            .collect();
        let relocations = match identity::relocations(package, &targets, &others, &device, &labels)
        {
            Ok(r) => r,
            Err(why) => {
                let _ = driver.reboot();
                return Err((
                    Outcome::PreflightRefused,
                    format!(
                        "refused before writing anything: the package's partition table \
                             would lose the device's identity partitions: {why}"
                    ),
                ));
            }
        };
        for label in missing {
            report.notes.push(format!(
                "partition {label} is not on this device; nothing to back up"
            ));
        }
        let key = station_key(req)?;
        let (dir, manifest) = backup::create(
            &req.options.backups_dir,
            device.serial.as_deref(),
            product,
            &wanted,
            &key,
            driver,
            &mut |_, _| {},
        )
        .map_err(|e| {
            (
                Outcome::DeviceError,
                format!(
                    "the backup of the identity partitions failed, so nothing was written: {e}"
                ),
            )
        })?;
        for e in &manifest.entries {
            emit(Event::BackupWritten {
                label: e.label.clone(),
                sha256: e.sha256.clone(),
            });
        }
        emit(Event::Stage {
            stage: Stage::Flash,
        });
        relocate(driver, &dir, &manifest.entries, &relocations, report)?;
        report.backup = Some(BackupFacts {
            dir,
            partitions: manifest.entries,
        });
        let mut journal = Resumable::open(req, report, emit, &device, package);
        // A table that moves identity partitions goes first, right after their bytes were
        // moved: from then on the device's own table points at them.
        let mut first: Vec<usize> = relocations.iter().map(|r| r.table).collect();
        first.sort_unstable();
        first.dedup();
        let order: Vec<usize> = first
            .iter()
            .copied()
            .chain((0..writes.len()).filter(|i| !first.contains(i)))
            .collect();
        let count = writes.len();
        for (position, &index) in order.iter().enumerate() {
            if position == first.len() {
                for (label, target) in &erases {
                    let target = target.as_ref().expect("cleared by the storage preflight");
                    journal.erase(driver, label, target)?;
                }
            }
            let (op, target, _) = &writes[index];
            let target = target.as_ref().expect("cleared by the storage preflight");
            let source = PackageImage::skipping(
                package,
                op.image,
                op.file_sector_offset * u64::from(op.sector_size),
            )
            .cancelled_by(cancel);
            let step = ImageStep {
                index,
                count,
                name: &op.label,
                target,
                source: &source,
            };
            download_mode::write_or_keep(req, driver, &mut journal, step, report, emit)?;
        }
        if order.len() == first.len() {
            // Nothing but tables to write: the erases still run, after them.
            for (label, target) in &erases {
                let target = target.as_ref().expect("cleared by the storage preflight");
                journal.erase(driver, label, target)?;
            }
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
            let start = resolve(&op.start_sector, op.lun, &device.luns, driver).map_err(&fail)?;
            // Evaluated just before it is applied: a CRC covers what earlier patches wrote.
            let value = resolve(&op.value, op.lun, &device.luns, driver).map_err(&fail)?;
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
                sector_size: op.sector_size,
            };
            driver
                .patch(&target, op.byte_offset, op.size_in_bytes, value)
                .map_err(|e| fail(e.to_string()))?;
        }
        report
            .notes
            .push(format!("{} device patches applied", plan.patch.len()));
        set_boot_lun(driver, plan, report)?;

        emit(Event::Stage {
            stage: Stage::Reboot,
        });
        driver.reboot().map_err(|e| {
            (
                Outcome::DeviceError,
                format!(
                    "every image is written and verified and the patches are applied, but the \
                     device did not confirm its reset ({e}): run the same job again, or \
                     unplug and replug the device"
                ),
            )
        })?;
        download_mode::finish(
            req,
            package,
            &mut journal,
            "reset",
            &device,
            product,
            report,
        );
        Ok(Outcome::Success)
    }
}

/// Writes the backed-up bytes of each identity partition the package's table moves into
/// its new range, checked like any image.
fn relocate(
    driver: &mut dyn Driver,
    dir: &std::path::Path,
    entries: &[backup::BackupEntry],
    relocations: &[identity::Relocation],
    report: &mut super::Report,
) -> Result<(), Stop> {
    for r in relocations {
        let entry = entries.iter().find(|e| e.label == r.label).ok_or_else(|| {
            (
                Outcome::DeviceError,
                format!("{} was to be moved but is not in the backup", r.label),
            )
        })?;
        let image = backup::FileImage {
            path: dir.join(&entry.file),
            len: entry.len(),
            sha256: entry.sha256.clone(),
        };
        driver
            .write_image(&r.target, &image, &mut |_| {})
            .map_err(|e| {
                (
                    Outcome::DeviceError,
                    format!(
                        "moving {} to {}, where the package's partition table puts it, failed: \
                         {e}. Its bytes are kept in {}",
                        r.label,
                        r.target,
                        dir.display()
                    ),
                )
            })?;
        report.notes.push(format!(
            "{}: its backed-up bytes were written to {}, where the package's partition table \
             puts it",
            r.label, r.target
        ));
    }
    Ok(())
}

/// Labels of the first-stage boot loader; the LUN that holds one is the one to boot from.
const BOOT_LOADER_LABELS: [&str; 3] = ["xbl", "xbl_a", "sbl1"];

/// After a build that wrote the boot loader, marks its LUN as the one the boot ROM boots
/// from (`<setbootablestoragedrive>`), as qdl does. A programmer that refuses it is noted,
/// not fatal: the storage holds the verified images, and the LUN may be marked already.
fn set_boot_lun(
    driver: &mut dyn Driver,
    plan: &QualcommPlan,
    report: &mut super::Report,
) -> Result<(), Stop> {
    let Some(op) = plan
        .program
        .iter()
        .find(|op| BOOT_LOADER_LABELS.contains(&op.label.as_str()))
    else {
        return Ok(());
    };
    match driver.set_boot_lun(op.lun) {
        Ok(()) => report.notes.push(format!(
            "LUN {} ({}) marked as the boot LUN",
            op.lun, op.label
        )),
        Err(DeviceError::Firehose(crate::protocol::firehose::FirehoseError::Nak {
            reason,
            ..
        })) => report.notes.push(format!(
            "the programmer refused to mark LUN {} as the boot LUN ({reason}); it keeps the \
             one it had",
            op.lun
        )),
        Err(e) => {
            return Err((
                Outcome::DeviceError,
                format!("marking LUN {} as the boot LUN failed: {e}", op.lun),
            ))
        }
    }
    Ok(())
}

/// How long a DIAG port gets to answer the download request before the wait for EDL
/// begins (a device often reboots without answering).
const DIAG_ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Sends a modem to its download mode and opens it again there; returns the EDL driver
/// and the device's new address.
///
/// The model's AT command comes first (ZTE: factory mode). Whatever the device comes back
/// as within the switch timeout is accepted: directly in EDL, or with a DIAG port, which
/// then gets the model's DIAG request and is waited on in turn. Each step that rests on
/// public reports only is said so, in an event and in the report.
pub(super) fn switch_to_download(
    mut driver: Box<dyn Driver>,
    model: Option<&Model>,
    req: &JobRequest,
    notes: &mut Vec<String>,
    emit: &mut dyn FnMut(Event),
) -> Result<(Box<dyn Driver>, String), Stop> {
    let device_err = |e: DeviceError| (Outcome::DeviceError, e.to_string());
    let at = model.and_then(|m| m.at.as_ref());
    let edl_ids = at.map(|a| a.counterparts.clone()).unwrap_or_default();
    let mut returning = edl_ids.clone();
    returning.extend(at.map(|a| a.diag_ports.clone()).unwrap_or_default());
    let origin = discovery::Origin::of(&req.device.address, &req.quirks);
    let before = discovery::present_counterparts(&returning, &req.quirks);
    if let Some(at) = at {
        announce_step(
            &format!("AT {} on {}", at.download, req.device.address),
            &at.provenance,
            notes,
            emit,
        );
    }
    driver.detach().map_err(device_err)?;
    drop(driver);
    let mut found = discovery::wait_for_counterpart(
        &origin,
        &returning,
        &before,
        req.options.switch_timeout,
        &req.quirks,
    )
    .map_err(device_err)?;
    if found.mode == Mode::Diag {
        let at = at.expect("a DIAG port is only waited for when the model names one");
        let request = at.diag_request();
        announce_step(
            &format!("DIAG {} request on {}", request.name(), found.address),
            &at.provenance,
            notes,
            emit,
        );
        let origin = discovery::Origin {
            address: found.address.clone(),
            port_path: found.port_path.clone().or(origin.port_path),
        };
        let before = discovery::present_counterparts(&edl_ids, &req.quirks);
        let mut port = SerialTransport::open(&found.address).map_err(|e| device_err(e.into()))?;
        let answer = diag::request_download(&mut port, request, DIAG_ANSWER_WAIT)
            .map_err(|e| (Outcome::DeviceError, format!("{}: {e}", found.address)))?;
        tracing::info!(?answer, "DIAG download request sent");
        drop(port);
        found = discovery::wait_for_counterpart(
            &origin,
            &edl_ids,
            &before,
            req.options.switch_timeout,
            &req.quirks,
        )
        .map_err(device_err)?;
    }
    let edl = super::job::open_at(req, &found.address, false)?;
    Ok((edl, found.address))
}

/// Says which step of the way into download mode runs and where it is known from.
fn announce_step(
    step: &str,
    provenance: &Provenance,
    notes: &mut Vec<String>,
    emit: &mut dyn FnMut(Event),
) {
    if provenance.reports_only() {
        let note = format!(
            "{step}: this step rests on public reports only ({provenance}), not on hardware flashline was tested on"
        );
        tracing::info!("{note}");
        notes.push(note);
    }
    emit(Event::SwitchStep {
        step: step.to_string(),
        provenance: provenance.to_string(),
        reports_only: provenance.reports_only(),
    });
}

/// Names a device in EDL that cannot say what it is by its chip: the quirks file's model
/// with the same hardware id and OEM key hash, when exactly one has them.
pub(super) fn name_by_chip(device: &mut DeviceInfo, quirks: &Quirks, report: &mut super::Report) {
    let Some(chip) = &device.chip else {
        return;
    };
    let models = quirks.models_for_chip(chip.hwid, chip.pk_hash.as_deref());
    match models.as_slice() {
        [model] => {
            report.notes.push(format!(
                "the device in EDL was identified as {} by its hardware id and key hash (quirks file, {})",
                model.product,
                model.provenance.as_ref().map_or_else(|| "no provenance".into(), ToString::to_string)
            ));
            device.product = Some(model.product.clone());
        }
        [] => {}
        several => report.notes.push(format!(
            "the device's hardware id and key hash fit several models ({}); it cannot be told which",
            several.iter().map(|m| m.product.as_str()).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// Whether the package's programmer is signed for this chip, and whether the chip is the
/// model the job is for: the package's `hwid` and `pk_hash`, and the model's in the quirks
/// file, against what the boot ROM reported. `None` when nothing is declared to compare.
/// A fact the device did not report is a warning (its boot ROM still checks the
/// programmer's signature itself); a different one refuses before any programmer byte.
fn programmer_fits(
    plan: &QualcommPlan,
    model: Option<&Model>,
    chip: Option<&ChipIdentity>,
) -> Option<Check> {
    let mut required = Vec::new();
    let mut mismatches = Vec::new();
    let mut unknown = Vec::new();
    let hwid = chip.and_then(|c| c.hwid);
    let pk_hash = chip.and_then(|c| c.pk_hash.clone());
    let model_has = model.map_or_else(String::new, |m| format!("the {} has", m.product));
    let wanted = [
        (
            "the package's programmer is signed for",
            plan.hwid.as_deref(),
            plan.pk_hash.as_deref(),
        ),
        (
            model_has.as_str(),
            model.and_then(|m| m.hwid.as_deref()),
            model.and_then(|m| m.pk_hash.as_deref()),
        ),
    ];
    for (whose, want_hwid, want_pk) in wanted {
        if let Some(want) = want_hwid.and_then(Hwid::parse) {
            required.push(format!("HWID {want}"));
            match hwid {
                Some(actual) if actual != want => mismatches.push(format!(
                    "{whose} HWID {want}, but the device reports {actual}"
                )),
                Some(_) => {}
                None => unknown.push("HWID"),
            }
        }
        if let Some(want) = want_pk.and_then(parse_pk_hash).map(hex::encode) {
            required.push(format!("PK hash {}…", &want[..16]));
            match pk_hash.as_deref().map(|a| (a, same_pk_hash(&want, a))) {
                Some((actual, Some(false))) => mismatches.push(format!(
                    "{whose} OEM key hash {want}, but the device reports {actual}"
                )),
                Some((_, Some(true))) => {}
                // SHA-256 against SHA-384: no byte of one says anything about the other.
                Some((_, None)) => unknown.push("OEM key hash in the declared hash's algorithm"),
                None => unknown.push("OEM key hash"),
            }
        }
    }
    if required.is_empty() {
        return None;
    }
    let mut seen = std::collections::BTreeSet::new();
    required.retain(|r| seen.insert(r.clone()));
    let actual = match (hwid, &pk_hash) {
        (None, None) => "not reported".to_string(),
        (h, p) => [
            h.map(|h| format!("HWID {h}")),
            p.as_ref()
                .map(|p| format!("PK hash {}…", &p[..p.len().min(16)])),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", "),
    };
    unknown.sort_unstable();
    unknown.dedup();
    let (status, message) = if !mismatches.is_empty() {
        (
            super::Status::Refuse,
            format!(
                "{}: this package is not for this device",
                mismatches.join("; ")
            ),
        )
    } else if !unknown.is_empty() {
        (
            super::Status::Warn,
            format!(
                "the device does not report its {}; its boot ROM checks the programmer's signature itself",
                unknown.join(" or ")
            ),
        )
    } else {
        (
            super::Status::Pass,
            "the programmer is signed for this chip".to_string(),
        )
    };
    Some(Check {
        name: "chip".into(),
        status,
        actual,
        required: required.join(", "),
        message,
        relaxed_by: None,
    })
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

/// This station's backup key (see [`super::station`]), made on first use.
pub(super) fn station_key(req: &JobRequest) -> Result<StationKey, Stop> {
    StationKey::open_or_create(&super::station::beside(&req.options.history_path)).map_err(|e| {
        (
            Outcome::DeviceError,
            format!("backups cannot be sealed: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(hwid: Option<&str>) -> QualcommPlan {
        serde_json::from_value(serde_json::json!({
            "programmer": 0, "memory": "emmc", "rawprogram_files": [], "patch_files": [],
            "erase": [], "program": [], "patch": [], "backup": [], "hwid": hwid,
        }))
        .unwrap()
    }

    fn chip(hwid: Option<u64>) -> ChipIdentity {
        ChipIdentity {
            hwid: hwid.map(Hwid),
            ..ChipIdentity::default()
        }
    }

    /// Uses the EDL simulator's chip, which is built on Unix only.
    #[cfg(unix)]
    #[test]
    #[cfg(unix)]
    fn the_programmer_must_fit_the_chip_and_the_chip_the_model() {
        let quirks = Quirks::builtin();
        let mf833v = quirks.model("MF833V");
        let virtual_chip = ChipIdentity {
            pk_hash: Some(hex::encode(crate::sim::edl::virtual_pk_hash())),
            ..chip(Some(crate::sim::edl::VIRTUAL_HWID))
        };
        // Nothing declared: nothing to check.
        assert!(programmer_fits(&plan(None), None, Some(&virtual_chip)).is_none());
        // The model's hardware id matches.
        let check = programmer_fits(&plan(None), mf833v, Some(&virtual_chip)).unwrap();
        assert_eq!(check.status, crate::engine::Status::Pass);
        // A device that came back as another chip is not this model.
        let other = chip(Some(0x0009_60E1_0029_003E));
        let check = programmer_fits(&plan(None), mf833v, Some(&other)).unwrap();
        assert_eq!(check.status, crate::engine::Status::Refuse);
        assert!(
            check.message.starts_with(
                "the MF833V has HWID 0x0f1a5e0000000000, but the device reports 0x000960e10029003e"
            ),
            "{}",
            check.message
        );
        assert_eq!(check.actual, "HWID 0x000960e10029003e");
        // A device that reports no hardware id: a warning, the boot ROM still checks.
        let check =
            programmer_fits(&plan(Some("0x000960e10029003e")), None, Some(&chip(None))).unwrap();
        assert_eq!(check.status, crate::engine::Status::Warn);
        assert_eq!(check.actual, "not reported");
        assert_eq!(check.required, "HWID 0x000960e10029003e");
        // A Sahara 3 chip with a SHA-384 key hash against the model's SHA-256 one: not
        // comparable, so the hardware id decides and the hash is a warning, not a refusal.
        let mut sha384 = vec![0x5a; 48];
        sha384.resize(96, 0);
        let v3 = ChipIdentity {
            pk_hash: Some(hex::encode(&sha384[..48])),
            ..chip(Some(crate::sim::edl::VIRTUAL_HWID))
        };
        let check = programmer_fits(&plan(None), mf833v, Some(&v3)).unwrap();
        assert_eq!(
            check.status,
            crate::engine::Status::Warn,
            "{}",
            check.message
        );
        assert!(check.message.contains("in the declared hash's algorithm"));
        assert!(quirks.models_for_chip(v3.hwid, v3.pk_hash.as_deref()).len() == 1);
    }
}
