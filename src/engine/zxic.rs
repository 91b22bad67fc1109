//! The ZXIC job: ZX297520V3 hotspots flashed through their boot ROM.
//!
//! identify (boot ROM or tboot) → preflight, including the package's partition table
//! against the model's NV partitions, proved on the host before any byte is sent →
//! tloader, tboot → backup of the NV partitions (`compat_read`) → `set partitions`: the
//! same table, or a change the device accepts because NV stays (`FAIL
//! ACCEPTABLE_PARTITION_CHANGE`, then `erase auto`); a table the device refuses ends the
//! job with nothing written → each image in `compat_write` windows, checked by the
//! device's CRC (or read back) → the NV partitions read again and compared with the backup
//! → reboot → report. A job that stops leaves the device in tboot (or its boot ROM), and the
//! same job run again resumes from the journal.

use std::io::Read;

use super::backup;
use super::download_mode;
use super::event::{Event, Stage};
use super::job::{ImageStep, PackageImage, Stop};
use super::journal::Resumable;
use super::preflight::Check;
use super::report::Outcome;
use super::{JobRequest, Status};
use crate::device::quirks::Model;
use crate::device::zxic::ZxicOps;
use crate::device::{DeviceError, DeviceInfo, Driver, Mode, Target};
use crate::package::zxic::ZxicPlan;
use crate::package::VerifiedPackage;
use crate::protocol::zxic::partition::WIRE_LEN;
use crate::protocol::zxic::{PartitionTable, TableVerdict, ZxicError};

/// NV partitions of a model the quirks file does not describe: read-only NV (IMEI,
/// calibration) and read-write NV, as ZX297520V3 tables name them.
const DEFAULT_NV: [&str; 2] = ["nvrofs", "nvrw"];

/// Runs the ZXIC part of a job, after the package was verified.
pub(super) fn run(
    req: &JobRequest,
    report: &mut super::Report,
    emit: &mut dyn FnMut(Event),
    package: &VerifiedPackage,
    plan: &ZxicPlan,
) -> Result<Outcome, Stop> {
    let device_err = |e: DeviceError| (Outcome::DeviceError, e.to_string());
    let cancel = &req.options.cancel;
    let (mut driver, mut device) = download_mode::identify(req, emit)?;
    report.device = Some(device.clone());
    emit(Event::DeviceIdentified {
        device: Box::new(device.clone()),
    });
    if device.mode != Mode::Zxic {
        return Err((
            Outcome::PreflightRefused,
            format!(
                "{} is not a ZXIC device in download mode; this package needs one (bring it \
                 into its boot ROM with the BOOT pad: `flashline recover` shows how)",
                req.device.address
            ),
        ));
    }

    let product = super::product_of(&device, package);
    let model = product.as_deref().and_then(|p| req.quirks.model(p));
    let (preflight, _) = download_mode::preflight(req, package, &device, emit)?;
    let mut checks = preflight.checks;
    let table = read_table(package, plan);
    let nv = nv_labels(model);
    checks.extend(table_checks(package, plan, table.as_ref(), &nv, model));
    report.overrides = checks.iter().filter_map(|c| c.relaxed_by.clone()).collect();
    download_mode::verdict(checks, report, emit)?;
    let table = table.expect("a table that does not parse is refused above");
    if req.options.check_only {
        return Ok(Outcome::DryRun);
    }

    cancel.check("loading the download loaders")?;
    emit(Event::Stage {
        stage: Stage::Programmer,
    });
    let ops = zxic_ops(driver.as_mut())?;
    ops.load_loaders(
        &PackageImage::new(package, plan.tloader),
        &PackageImage::new(package, plan.tboot),
    )
    .map_err(|e| {
        (
            Outcome::DeviceError,
            format!("the download loaders could not be started: {e}"),
        )
    })?;
    ops.use_table(table.clone());
    let known = driver.identify().map_err(device_err)?;
    device.firmware_version_raw = known.firmware_version_raw;
    device.luns = known.luns;
    device.layout = known.layout;
    device.partitions = known.partitions;
    report.device = Some(device.clone());

    let flashed = Flash {
        req,
        package,
        plan,
        product: product.as_deref(),
        nv: &nv,
        table: &table,
    }
    .run(driver.as_mut(), &device, report, emit);
    if flashed.is_err() {
        tracing::debug!("the ZXIC job stopped; the device stays in its download loader");
    }
    flashed
}

/// The NV partitions of `model` (its `backup` labels), or the usual ones.
fn nv_labels(model: Option<&Model>) -> Vec<String> {
    match model.filter(|m| !m.backup.is_empty()) {
        Some(m) => m.backup.clone(),
        None => DEFAULT_NV.map(String::from).to_vec(),
    }
}

/// The package's partition table, parsed from its verified bytes; the error says why not.
fn read_table(package: &VerifiedPackage, plan: &ZxicPlan) -> Result<PartitionTable, String> {
    let image = PackageImage::new(package, plan.partition_table);
    let mut reader = crate::device::ImageSource::send_reader(&image).map_err(|e| e.to_string())?;
    let mut bytes = Vec::with_capacity(WIRE_LEN);
    (&mut reader)
        .take(WIRE_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    reader.verify()?;
    PartitionTable::parse(&bytes).map_err(|e| e.to_string())
}

fn check(name: &str, status: Status, actual: String, required: String, message: String) -> Check {
    Check {
        name: name.into(),
        status,
        actual,
        required,
        message,
        relaxed_by: None,
    }
}

/// The host's proof that the package's table keeps the device's NV where it is, and that
/// every image fits its partition.
fn table_checks(
    package: &VerifiedPackage,
    plan: &ZxicPlan,
    table: Result<&PartitionTable, &String>,
    nv: &[String],
    model: Option<&Model>,
) -> Vec<Check> {
    let table = match table {
        Ok(table) => table,
        Err(why) => {
            return vec![check(
                "partition-table",
                Status::Refuse,
                "unreadable".into(),
                "a valid partition.bin".into(),
                format!("the package's partition table is invalid: {why}"),
            )]
        }
    };
    let mut checks = Vec::new();
    let names = nv.join(", ");
    let missing: Vec<&String> = nv.iter().filter(|n| table.find(n).is_none()).collect();
    let known: Vec<(String, u32, u32)> = model
        .and_then(|m| m.zxic.as_ref())
        .map(|z| z.nv())
        .unwrap_or_default();
    let moved: Vec<String> = known
        .iter()
        .filter_map(|(name, address, size)| {
            let p = table.find(name)?;
            ((p.address, p.size) != (*address, *size)).then(|| {
                format!(
                    "{name} from 0x{address:08x}+0x{size:x} to 0x{:08x}+0x{:x}",
                    p.address, p.size
                )
            })
        })
        .collect();
    checks.push(if !missing.is_empty() {
        check(
            "nv",
            Status::Refuse,
            format!("the table lacks {missing:?}"),
            format!("{names} kept"),
            format!(
                "the package's partition table drops the NV partition(s) {missing:?}, which hold the device's IMEI and calibration"
            ),
        )
    } else if !moved.is_empty() {
        check(
            "nv",
            Status::Refuse,
            moved.join(", "),
            format!("{names} where they are"),
            format!(
                "the package's partition table would move NV: {}; the device's IMEI and calibration must stay where they are",
                moved.join(", ")
            ),
        )
    } else if known.is_empty() {
        check(
            "nv",
            Status::Warn,
            "not known for this model".into(),
            format!("{names} where they are"),
            format!(
                "flashline does not know where this model keeps {names}: the device's own check decides (it refuses a table that moves NV), and they are backed up first"
            ),
        )
    } else {
        check(
            "nv",
            Status::Pass,
            format!("{names} where they are"),
            format!("{names} where they are"),
            "the package's partition table keeps the NV partitions where the device has them".into(),
        )
    });
    let images = &package.manifest().images;
    for w in &plan.writes {
        let size = images[w.image].size;
        let room = table
            .find(&w.partition)
            .filter(|p| p.in_flash())
            .map(|p| u64::from(p.size));
        checks.push(match room {
            Some(room) if size <= room => check(
                &format!("storage:{}", w.partition),
                Status::Pass,
                format!("{room} bytes"),
                format!("{size} bytes"),
                format!("{} fits", w.partition),
            ),
            Some(room) => check(
                &format!("storage:{}", w.partition),
                Status::Refuse,
                format!("{room} bytes"),
                format!("{size} bytes"),
                format!(
                    "the image for {} has {size} bytes; the partition holds {room}",
                    w.partition
                ),
            ),
            None => check(
                &format!("storage:{}", w.partition),
                Status::Refuse,
                "absent".into(),
                format!("{size} bytes"),
                format!(
                    "the package's partition table has no flash partition {}",
                    w.partition
                ),
            ),
        });
    }
    checks
}

fn zxic_ops(driver: &mut dyn Driver) -> Result<&mut dyn ZxicOps, Stop> {
    driver.zxic().ok_or_else(|| {
        (
            Outcome::PreflightRefused,
            "this device is not driven as a ZXIC device".to_string(),
        )
    })
}

/// The part of the job that runs with tboot on the device.
struct Flash<'a> {
    req: &'a JobRequest,
    package: &'a VerifiedPackage,
    plan: &'a ZxicPlan,
    product: Option<&'a str>,
    nv: &'a [String],
    table: &'a PartitionTable,
}

impl Flash<'_> {
    /// Plan → backup → table → writes → NV check → reboot.
    fn run(
        &self,
        driver: &mut dyn Driver,
        device: &DeviceInfo,
        report: &mut super::Report,
        emit: &mut dyn FnMut(Event),
    ) -> Result<Outcome, Stop> {
        let Flash {
            req,
            package,
            plan,
            product,
            nv,
            table,
        } = *self;
        let device_err = |e: DeviceError| (Outcome::DeviceError, e.to_string());
        let cancel = &req.options.cancel;

        let writes: Vec<(&str, usize)> = plan
            .writes
            .iter()
            .map(|w| (w.partition.as_str(), w.image))
            .collect();
        download_mode::plan_partitions(package, &writes, report, emit);
        if req.options.dry_run {
            let _ = driver.reboot();
            return Ok(Outcome::DryRun);
        }

        cancel.check("the backup")?;
        emit(Event::Stage {
            stage: Stage::Backup,
        });
        let (wanted, missing) = backup::locate(nv, device);
        if !missing.is_empty() {
            return Err((
                Outcome::PreflightRefused,
                format!("refused before writing anything: the NV partition(s) {missing:?} cannot be located, so they cannot be backed up"),
            ));
        }
        let (_, manifest) =
            backup::back_up_nv(req, device, product, &wanted, driver, report, emit)?;

        emit(Event::Stage {
            stage: Stage::Flash,
        });
        let ops = zxic_ops(driver)?;
        match ops.send_table(table) {
            Ok(TableVerdict::Same) => report
                .notes
                .push("the device already has the package's partition table".into()),
            Ok(TableVerdict::AcceptableChange) => {
                ops.erase_auto().map_err(|e| {
                    (
                        Outcome::DeviceError,
                        format!("the device took the new partition table but `erase auto` failed: {e}; run the same job again"),
                    )
                })?;
                report.notes.push(
                    "the device took the package's partition table as a change that keeps NV \
                     (ACCEPTABLE_PARTITION_CHANGE) and erased every partition but NV (erase auto)"
                        .into(),
                );
            }
            Err(DeviceError::Zxic(ZxicError::TableRefused(reason))) => {
                return Err((
                    Outcome::PreflightRefused,
                    format!("refused before writing anything: the device refused the package's partition table ({reason}); nothing was written"),
                ))
            }
            Err(e) => return Err(device_err(e)),
        }

        let mut journal = Resumable::open(req, report, emit, device, package);
        let count = plan.writes.len();
        for (index, w) in plan.writes.iter().enumerate() {
            let target = Target::Partition {
                name: w.partition.clone(),
            };
            let source = PackageImage::new(package, w.image).cancelled_by(cancel);
            let step = ImageStep {
                index,
                count,
                name: &w.partition,
                target: &target,
                source: &source,
            };
            download_mode::write_or_keep(req, driver, &mut journal, step, report, emit)?;
        }

        // NV read again: the bytes the device holds now are the bytes backed up.
        for entry in &manifest.entries {
            let now = driver
                .read(&entry.target(), &mut std::io::sink(), &mut |_| {})
                .map_err(|e| {
                    (
                        Outcome::DeviceError,
                        format!("reading {} again failed: {e}", entry.label),
                    )
                })?;
            if hex::encode(now) != entry.sha256 {
                return Err((
                    Outcome::DeviceError,
                    format!(
                        "{} changed during the flash; its backup is in {}",
                        entry.label,
                        report
                            .backup
                            .as_ref()
                            .map(|b| b.dir.display().to_string())
                            .unwrap_or_default()
                    ),
                ));
            }
        }
        report.notes.push(format!(
            "the NV partitions ({}) hold the same bytes after the flash as in the backup",
            nv.join(", ")
        ));

        emit(Event::Stage {
            stage: Stage::Reboot,
        });
        driver.reboot().map_err(|e| {
            (
                Outcome::DeviceError,
                format!("every image is written and verified, but the device did not confirm its reboot ({e}): unplug and replug it"),
            )
        })?;
        download_mode::finish(
            req,
            package,
            &mut journal,
            "rebooted",
            device,
            product,
            report,
        );
        Ok(Outcome::Success)
    }
}
