//! The steps the download-mode jobs (Qualcomm, ZXIC, Unisoc) share: identifying the
//! device, the preflight and its verdict, the plan of whole-partition writes, writing an
//! image (or keeping one an interrupted run verified), and the end of a job whose device
//! restarted into its new firmware. Each job keeps what is its family's own: the switch
//! into download mode, its loaders, its backup labels and its checks.

use super::event::{Event, PlannedWrite, Stage};
use super::history;
use super::job::{record_history, write_step, ImageStep, Stop};
use super::journal::Resumable;
use super::preflight::{Check, Preflight};
use super::report::{ImageReport, Outcome, Versions};
use super::JobRequest;
use crate::device::{DeviceError, DeviceInfo, Driver};
use crate::package::VerifiedPackage;

/// Opens the job's device and asks it what it is (the identify stage).
pub(super) fn identify(
    req: &JobRequest,
    emit: &mut dyn FnMut(Event),
) -> Result<(Box<dyn Driver>, DeviceInfo), Stop> {
    req.options.cancel.check("identifying the device")?;
    emit(Event::Stage {
        stage: Stage::Identify,
    });
    let mut driver = super::job::open_device(req)?;
    let device = driver
        .identify()
        .map_err(|e: DeviceError| (Outcome::DeviceError, e.to_string()))?;
    Ok((driver, device))
}

/// Starts the preflight stage and runs the package's checks against `device`; also says
/// whether flashline's history of the device was the downgrade floor.
pub(super) fn preflight(
    req: &JobRequest,
    package: &VerifiedPackage,
    device: &DeviceInfo,
    emit: &mut dyn FnMut(Event),
) -> Result<(Preflight, bool), Stop> {
    emit(Event::Stage {
        stage: Stage::Preflight,
    });
    let past = history::lookup(&req.options.history_path, device, package)
        .map_err(|e| (Outcome::PreflightRefused, e.to_string()))?;
    let preflight = Preflight::run(package, device, &[], past.as_ref(), &req.options.overrides);
    Ok((preflight, past.is_some()))
}

/// Reports the preflight's checks and ends the job, before anything is written, if one of
/// them refuses.
pub(super) fn verdict(
    checks: Vec<Check>,
    report: &mut super::Report,
    emit: &mut dyn FnMut(Event),
) -> Result<(), Stop> {
    report.preflight = checks.clone();
    emit(Event::Preflight {
        checks: checks.clone(),
    });
    Preflight { checks }.clear().map(drop).map_err(|refusals| {
        (
            Outcome::PreflightRefused,
            format!("refused before writing anything: {refusals}"),
        )
    })
}

/// The plan stage of a job that writes whole images to partitions of the same name:
/// `(partition, image index)` pairs, in order.
pub(super) fn plan_partitions(
    package: &VerifiedPackage,
    writes: &[(&str, usize)],
    report: &mut super::Report,
    emit: &mut dyn FnMut(Event),
) {
    let images = &package.manifest().images;
    emit(Event::Stage { stage: Stage::Plan });
    let planned: Vec<PlannedWrite> = writes
        .iter()
        .map(|&(partition, image)| PlannedWrite {
            partition: partition.to_string(),
            live: false,
            target: partition.to_string(),
            bytes: images[image].size,
            sparse: false,
        })
        .collect();
    report.images = writes
        .iter()
        .map(|&(partition, image)| {
            let image = &images[image];
            ImageReport::not_started(partition, partition, image.size, &image.sha256)
        })
        .collect();
    emit(Event::PlanReady {
        total_bytes: planned.iter().map(|w| w.bytes).sum(),
        writes: planned,
        activate_slot: None,
    });
}

/// Writes one image, unless the journal shows that an interrupted run already wrote and
/// verified it and the device still holds it.
pub(super) fn write_or_keep(
    req: &JobRequest,
    driver: &mut dyn Driver,
    journal: &mut Resumable,
    step: ImageStep<'_>,
    report: &mut super::Report,
    emit: &mut dyn FnMut(Event),
) -> Result<(), Stop> {
    if journal.keep(driver, step.index, step.target, step.source, report, emit)? {
        return Ok(());
    }
    req.options
        .cancel
        .check(&format!("writing {}", step.name))?;
    write_step(driver, step, journal.journal(), report, emit)
}

/// Ends a job whose device restarted into the package's firmware (`restarted`: "reset",
/// "rebooted"): the journal is closed, the versions after it are the package's, and the
/// device's history remembers them.
pub(super) fn finish(
    req: &JobRequest,
    package: &VerifiedPackage,
    journal: &mut Resumable,
    restarted: &str,
    device: &DeviceInfo,
    product: Option<&str>,
    report: &mut super::Report,
) {
    journal.finish(report);
    report.after = Some(Versions {
        firmware: Some(package.manifest().version.to_string()),
        security: Some(package.manifest().security_version),
        source: format!("the package (the device was {restarted} into its new firmware)"),
    });
    record_history(req, report, device.serial.as_deref(), product, package);
}
