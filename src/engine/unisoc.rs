//! The Unisoc job: hotspots, modems and phones flashed through the boot ROM's download
//! mode (BROM → FDL1 → FDL2).
//!
//! Identify (the boot ROM's version: secure boot or not) → preflight → FDL1 → FDL2 →
//! partition preflight (every image fits a partition FDL2 lists) → backup of the NV
//! partitions (IMEI, calibration) → write each image, checked by reading it back → check
//! that the NV partitions still hold their backed-up bytes → reset → report. An
//! interrupted job resumes: the journal keeps the images it verified, and each is
//! confirmed on the device by reading it back before it is skipped.
//!
//! NV partitions are never written unless the technician asks (`--write-nv`): the package's
//! images of them are left out of the plan, as Unisoc's download tool does with "backup
//! NV", and their bytes are compared with the backup after the last write.

use super::backup;
use super::download_mode;
use super::event::{Event, Stage};
use super::job::{ImageStep, PackageImage, Stop};
use super::journal::Resumable;
use super::preflight::{Check, Status};
use super::report::Outcome;
use super::JobRequest;
use crate::device::{DeviceError, Driver, Mode, Target};
use crate::package::unisoc::{is_nv, UnisocPlan};
use crate::package::VerifiedPackage;

/// Runs the Unisoc part of a job, after the package was verified.
pub(super) fn run(
    req: &JobRequest,
    report: &mut super::Report,
    emit: &mut dyn FnMut(Event),
    package: &VerifiedPackage,
    plan: &UnisocPlan,
) -> Result<Outcome, Stop> {
    let device_err = |e: DeviceError| (Outcome::DeviceError, e.to_string());
    let cancel = &req.options.cancel;
    let (mut driver, mut device) = download_mode::identify(req, emit)?;
    if device.mode != Mode::Unisoc {
        return Err((
            Outcome::PreflightRefused,
            format!(
                "{} is not a Unisoc device in download mode; this package needs one (hold \
                 the boot key while plugging it in)",
                req.device.address
            ),
        ));
    }
    report.device = Some(device.clone());
    if let Some(rom) = driver.boot_rom() {
        let note = if rom.secure_boot {
            format!(
                "boot ROM {:?}: secure boot is on (its version is not SPRD3); it runs only \
                 loaders signed for this device, so the package's FDL1 must be",
                rom.version
            )
        } else {
            format!("boot ROM {:?}: secure boot is off", rom.version)
        };
        report.notes.push(note.clone());
        emit(Event::DeviceMessage { text: note });
    }
    emit(Event::DeviceIdentified {
        device: Box::new(device.clone()),
    });

    let (preflight, _) = download_mode::preflight(req, package, &device, emit)?;
    download_mode::verdict(preflight.checks, report, emit)?;
    if req.options.check_only {
        return Ok(Outcome::DryRun);
    }

    cancel.check("loading the loaders")?;
    emit(Event::Stage {
        stage: Stage::Programmer,
    });
    let fdl1 = PackageImage::new(package, plan.fdl1.image).cancelled_by(cancel);
    let fdl2 = PackageImage::new(package, plan.fdl2.image).cancelled_by(cancel);
    driver
        .load_loaders(&[(&fdl1, plan.fdl1.address), (&fdl2, plan.fdl2.address)])
        .map_err(|e| {
            let secure = driver.boot_rom().is_some_and(|r| r.secure_boot);
            let hint = if secure {
                " (the boot ROM has secure boot on: it runs only loaders signed for this device)"
            } else {
                ""
            };
            (
                Outcome::DeviceError,
                format!("loading FDL1 and FDL2 failed{hint}: {e}; nothing was written"),
            )
        })?;
    for text in driver.take_messages() {
        emit(Event::DeviceMessage { text });
    }
    let storage = driver.identify().map_err(device_err)?;
    device.partitions = storage.partitions;
    device.luns = storage.luns;
    device.layout = storage.layout;
    report.device = Some(device.clone());
    report.before = Some(super::job::versions(&device, "the device"));

    let result = Loaded { req, package, plan }.run(driver.as_mut(), &device, report, emit);
    if result.is_err() {
        tracing::debug!("the Unisoc job stopped; the device stays in download mode");
    }
    result
}

/// The part of a Unisoc job that runs with FDL2 on the device.
struct Loaded<'a> {
    req: &'a JobRequest,
    package: &'a VerifiedPackage,
    plan: &'a UnisocPlan,
}

impl Loaded<'_> {
    fn run(
        &self,
        driver: &mut dyn Driver,
        device: &crate::device::DeviceInfo,
        report: &mut super::Report,
        emit: &mut dyn FnMut(Event),
    ) -> Result<Outcome, Stop> {
        let Loaded { req, package, plan } = *self;
        let cancel = &req.options.cancel;
        let manifest = package.manifest();
        let write_nv = req.options.overrides.write_nv;

        // Partition preflight: every image to a partition FDL2 lists, and one that fits.
        let mut checks = Vec::new();
        let mut writes = Vec::new();
        for write in &plan.program {
            let image = &manifest.images[write.image];
            let name = format!("storage:{}", write.partition);
            let check = match device.partitions.get(&write.partition) {
                _ if is_nv(&write.partition) && !write_nv => {
                    report.notes.push(format!(
                        "{} is an NV partition (IMEI, calibration): it is backed up and kept; \
                         the package's image of it is not written (--write-nv writes it)",
                        write.partition
                    ));
                    continue;
                }
                None => Check {
                    name,
                    status: Status::Refuse,
                    actual: "not listed".into(),
                    required: format!("{} bytes", image.size),
                    message: format!(
                        "FDL2 lists no partition {}: this package does not fit this device",
                        write.partition
                    ),
                    relaxed_by: None,
                },
                Some(&size) if image.size > size => Check {
                    name,
                    status: Status::Refuse,
                    actual: format!("{size} bytes"),
                    required: format!("{} bytes", image.size),
                    message: format!(
                        "the {} image needs {} bytes but the partition holds only {size}",
                        write.partition, image.size
                    ),
                    relaxed_by: None,
                },
                Some(&size) => Check {
                    name,
                    status: Status::Pass,
                    actual: format!("{size} bytes"),
                    required: format!("{} bytes", image.size),
                    message: format!("{} has room", write.partition),
                    relaxed_by: if is_nv(&write.partition) {
                        Some("--write-nv".into())
                    } else {
                        None
                    },
                },
            };
            if check.status == Status::Pass {
                writes.push(write);
            }
            checks.push(check);
        }
        let refused: Vec<String> = checks
            .iter()
            .filter(|c| c.status == Status::Refuse)
            .map(|c| c.message.clone())
            .collect();
        report.preflight.extend(checks);
        emit(Event::Preflight {
            checks: report.preflight.clone(),
        });
        if !refused.is_empty() {
            return Err((
                Outcome::PreflightRefused,
                format!("refused before writing anything: {}", refused.join("; ")),
            ));
        }
        if write_nv {
            report.overrides.push("--write-nv".into());
        }

        let planned: Vec<(&str, usize)> = writes
            .iter()
            .map(|w| (w.partition.as_str(), w.image))
            .collect();
        download_mode::plan_partitions(package, &planned, report, emit);
        let targets: Vec<Target> = writes
            .iter()
            .map(|w| Target::Partition {
                name: w.partition.clone(),
            })
            .collect();
        if req.options.dry_run {
            return Ok(Outcome::DryRun);
        }

        cancel.check("the backup")?;
        emit(Event::Stage {
            stage: Stage::Backup,
        });
        let product = super::product_of(device, package);
        let model = product.as_deref().and_then(|p| req.quirks.model(p));
        let mut labels: Vec<String> = device
            .layout
            .iter()
            .map(|p| p.label.clone())
            .filter(|l| is_nv(l))
            .collect();
        for extra in model.map(|m| m.backup.clone()).unwrap_or_default() {
            if !labels.contains(&extra) {
                labels.push(extra);
            }
        }
        let (wanted, missing) = backup::locate(&labels, device);
        for label in missing {
            report.notes.push(format!(
                "partition {label} is not on this device; nothing to back up"
            ));
        }
        if wanted.is_empty() {
            report.notes.push(
                "FDL2 lists no NV partition (fixnv, runtimenv, prodnv, miscdata): there was \
                 nothing to back up"
                    .into(),
            );
        }
        let (dir, backed_up) = backup::back_up_nv(
            req,
            device,
            product.as_deref(),
            &wanted,
            driver,
            report,
            emit,
        )?;

        emit(Event::Stage {
            stage: Stage::Flash,
        });
        let mut journal = Resumable::open(req, report, emit, device, package);
        let count = writes.len();
        for (index, (write, target)) in writes.iter().zip(&targets).enumerate() {
            let source = PackageImage::new(package, write.image).cancelled_by(cancel);
            let step = ImageStep {
                index,
                count,
                name: &write.partition,
                target,
                source: &source,
            };
            download_mode::write_or_keep(req, driver, &mut journal, step, report, emit)?;
        }

        // The NV partitions the job did not write must hold exactly what was backed up.
        for entry in &backed_up.entries {
            if write_nv && writes.iter().any(|w| w.partition == entry.label) {
                continue;
            }
            let now = driver
                .read(&entry.target(), &mut std::io::sink(), &mut |_| {})
                .map_err(|e| {
                    (
                        Outcome::DeviceError,
                        format!("reading {} back after the writes failed: {e}", entry.label),
                    )
                })?;
            if hex::encode(now) != entry.sha256 {
                return Err((
                    Outcome::DeviceError,
                    format!(
                        "{} no longer holds its backed-up bytes; its backup is in {}: restore \
                         it before resetting the device",
                        entry.label,
                        dir.display()
                    ),
                ));
            }
        }
        if !backed_up.entries.is_empty() {
            report.notes.push(format!(
                "NV partitions checked unchanged after the writes: {}",
                backed_up
                    .entries
                    .iter()
                    .map(|e| e.label.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }

        emit(Event::Stage {
            stage: Stage::Reboot,
        });
        driver.reboot().map_err(|e| {
            (
                Outcome::DeviceError,
                format!(
                    "every image is written and verified, but the device did not confirm its \
                     reset ({e}): unplug and replug it"
                ),
            )
        })?;
        let product = product.as_deref();
        download_mode::finish(req, package, &mut journal, "reset", device, product, report);
        Ok(Outcome::Success)
    }
}
