//! Service operations on a Qualcomm device outside a flash job: back up its identity
//! partitions, or put a backup back. Both need the device in EDL running a programmer from
//! a signed package; a modem is switched there first.

use std::path::{Path, PathBuf};

use super::backup::{self, BackupManifest};
use super::job::{verify_package, Stop};
use super::preflight::{self, Status};
use super::qualcomm::{start_programmer, station_key, switch_to_download};
use super::{JobRequest, Outcome};
use crate::device::{Driver, Mode, Target};
use crate::package::VerifiedPackage;

/// Opens the device, switches a modem to download mode and starts the programmer.
fn open_storage(
    req: &JobRequest,
) -> Result<(VerifiedPackage, Box<dyn Driver>, crate::device::DeviceInfo), Stop> {
    let package = verify_package(req)?;
    let plan = package.qualcomm().cloned().ok_or((
        Outcome::PackageRejected,
        "this package has no Qualcomm programmer; backups need one".to_string(),
    ))?;
    let device_err = |e: crate::device::DeviceError| (Outcome::DeviceError, e.to_string());
    let mut driver = super::job::open_device(req)?;
    let mut device = driver.identify().map_err(device_err)?;
    // The programmer is code run on the device: the same signer and model rules as a
    // flash job apply before it is loaded.
    let refusals: Vec<String> = preflight::identity_checks(&package, &device)
        .into_iter()
        .filter(|c| c.status == Status::Refuse)
        .map(|c| c.message)
        .collect();
    if !refusals.is_empty() {
        return Err((Outcome::PreflightRefused, refusals.join("; ")));
    }
    if device.mode == Mode::Modem {
        let model = device.product.as_deref().and_then(|p| req.quirks.model(p));
        driver = switch_to_download(driver, model, req, &mut Vec::new(), &mut |_| {})?.0;
    }
    start_programmer(driver.as_mut(), &package, &plan)?;
    let storage = driver.identify().map_err(device_err)?;
    device.luns = storage.luns;
    device.layout = storage.layout;
    Ok((package, driver, device))
}

/// Backs up `labels` (or, if empty, the model's identity partitions) into `out`.
pub fn backup_device(
    req: &JobRequest,
    labels: &[String],
    out: &Path,
) -> Result<(PathBuf, BackupManifest), Stop> {
    let key = station_key(req)?;
    let (package, mut driver, device) = open_storage(req)?;
    let product = super::product_of(&device, &package);
    let labels: Vec<String> = if labels.is_empty() {
        identity_labels(req, &package, &device)
    } else {
        labels.to_vec()
    };
    let (wanted, missing) = backup::locate(&labels, &device);
    if let Some(label) = missing.first() {
        let _ = driver.reboot();
        return Err((
            Outcome::DeviceError,
            format!("the device has no partition {label:?}"),
        ));
    }
    let result = backup::create(
        out,
        device.serial.as_deref(),
        product.as_deref(),
        &wanted,
        &key,
        driver.as_mut(),
        &mut |_, _| {},
    )
    .map_err(|e| (Outcome::DeviceError, e.to_string()));
    let _ = driver.reboot();
    result
}

/// Writes a checked backup folder back to the device and confirms each partition by digest.
///
/// The backup must be sealed by this station, and only identity partitions go back: those
/// the quirks file names for the model and those the signed package adds. Any other label
/// (a boot loader, say) is refused even in a genuine backup, which `--partition` can make.
pub fn restore_device(req: &JobRequest, dir: &Path) -> Result<BackupManifest, Stop> {
    let key = station_key(req)?;
    let manifest =
        backup::open(dir, &key).map_err(|e| (Outcome::PackageRejected, e.to_string()))?;
    let (package, mut driver, device) = open_storage(req)?;
    let identity = identity_labels(req, &package, &device);
    let checked = match manifest
        .entries
        .iter()
        .find(|e| !identity.contains(&e.label))
    {
        Some(e) => Err(format!(
            "the backup holds partition {:?}, which is not an identity partition of this model \
             ({}); a restore writes identity partitions only",
            e.label,
            identity.join(", ")
        )),
        None => restorable(&manifest, &device),
    };
    let targets = match checked {
        Ok(targets) => targets,
        Err(why) => {
            let _ = driver.reboot();
            return Err((
                Outcome::PreflightRefused,
                format!("refused before writing anything: {why}"),
            ));
        }
    };
    let result = backup::restore(dir, &manifest, &targets, driver.as_mut(), &mut |_, _| {})
        .map_err(|e| (Outcome::DeviceError, e.to_string()));
    let _ = driver.reboot();
    result.map(|()| manifest)
}

/// The identity partitions of the device: the quirks file's list for its model (by the
/// product it reports, or in EDL, which reports none, the package's first target), then
/// the labels the signed package adds.
fn identity_labels(
    req: &JobRequest,
    package: &VerifiedPackage,
    device: &crate::device::DeviceInfo,
) -> Vec<String> {
    let product = super::product_of(device, package);
    let model = product.as_deref().and_then(|p| req.quirks.model(p));
    let mut labels: Vec<String> = model.map(|m| m.backup.clone()).unwrap_or_default();
    for label in package.qualcomm().map(|q| &q.backup).into_iter().flatten() {
        if !labels.contains(label) {
            labels.push(label.clone());
        }
    }
    labels
}

/// A backup goes back only to the device it came from, and each entry to the range the
/// device's partition table gives its label now (read at restore time): a package flashed
/// since may have moved the partition, and the label, not the old range, says where the
/// bytes belong. The seal shows the backup was made here; a label whose partition changed
/// size is refused, since its bytes would no longer fill it exactly.
fn restorable(
    manifest: &BackupManifest,
    device: &crate::device::DeviceInfo,
) -> Result<Vec<Target>, String> {
    match (&manifest.serial, &device.serial) {
        (Some(theirs), Some(ours)) if theirs == ours => {}
        (Some(theirs), Some(ours)) => {
            return Err(format!(
                "this backup belongs to device {theirs}, not to {ours}: identity data must stay with its device"
            ))
        }
        _ => {
            return Err(
                "the backup or the device has no serial number, so flashline cannot prove the backup belongs to it"
                    .into(),
            )
        }
    }
    let labels: Vec<String> = manifest.entries.iter().map(|e| e.label.clone()).collect();
    let (wanted, missing) = backup::locate(&labels, device);
    if let Some(label) = missing.first() {
        return Err(format!("the device has no partition {label:?}"));
    }
    let mut targets = Vec::new();
    for (entry, w) in manifest.entries.iter().zip(wanted) {
        let now_len = match &w.target {
            Target::Sectors {
                count, sector_size, ..
            } => count.saturating_mul(u64::from(*sector_size)),
            Target::Partition { .. } => 0,
        };
        if now_len != entry.len() {
            return Err(format!(
                "{}: the backup holds {} bytes ({}) but the device's partition table makes it {} now",
                entry.label,
                entry.len(),
                entry.target(),
                w.target
            ));
        }
        if w.target != entry.target() {
            tracing::info!(
                "{}: backed up at {}, restored to {} where the device's partition table has it now",
                entry.label,
                entry.target(),
                w.target
            );
        }
        targets.push(w.target);
    }
    Ok(targets)
}
