//! Service operations on a Qualcomm device outside a flash job: back up its identity
//! partitions, or put a backup back. Both need the device in EDL running a programmer from
//! a signed package; a modem is switched there first.

use std::path::{Path, PathBuf};

use super::backup::{self, BackupManifest};
use super::job::Stop;
use super::qualcomm::{start_programmer, switch_to_download};
use super::{JobRequest, Outcome};
use crate::device::{discovery, Driver, Mode};
use crate::package::{Package, VerifiedPackage};

/// Opens the device, switches a modem to download mode and starts the programmer.
fn open_storage(
    req: &JobRequest,
) -> Result<(VerifiedPackage, Box<dyn Driver>, crate::device::DeviceInfo), Stop> {
    let package = Package::open(&req.package)
        .and_then(|p| p.verify(&req.trust))
        .map_err(|e| (Outcome::PackageRejected, format!("package rejected: {e}")))?;
    let plan = package.qualcomm().cloned().ok_or((
        Outcome::PackageRejected,
        "this package has no Qualcomm programmer; backups need one".to_string(),
    ))?;
    let device_err = |e: crate::device::DeviceError| (Outcome::DeviceError, e.to_string());
    let mut driver = discovery::open(
        &req.device.address,
        &req.quirks,
        req.device.is_virtual,
        req.device.probe,
    )
    .map_err(device_err)?;
    let mut device = driver.identify().map_err(device_err)?;
    if device.mode == Mode::Modem {
        let model = device.product.as_deref().and_then(|p| req.quirks.model(p));
        driver = switch_to_download(driver, &device, model, req)?.0;
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
    let (package, mut driver, device) = open_storage(req)?;
    let product = device.product.clone().or_else(|| {
        package
            .manifest()
            .targets
            .first()
            .map(|t| t.product.clone())
    });
    let labels: Vec<String> = if labels.is_empty() {
        let model = product.as_deref().and_then(|p| req.quirks.model(p));
        model.map(|m| m.backup.clone()).unwrap_or_default()
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
        driver.as_mut(),
        &mut |_, _| {},
    )
    .map_err(|e| (Outcome::DeviceError, e.to_string()));
    let _ = driver.reboot();
    result
}

/// Writes a checked backup folder back to the device and confirms each partition by digest.
pub fn restore_device(req: &JobRequest, dir: &Path) -> Result<BackupManifest, Stop> {
    let manifest = backup::open(dir).map_err(|e| (Outcome::PackageRejected, e.to_string()))?;
    let (_, mut driver, device) = open_storage(req)?;
    if let (Some(theirs), Some(ours)) = (&manifest.serial, &device.serial) {
        if theirs != ours {
            let _ = driver.reboot();
            return Err((
                Outcome::PreflightRefused,
                format!("this backup belongs to device {theirs}, not to {ours}: identity data must stay with its device"),
            ));
        }
    }
    let result = backup::restore(dir, &manifest, driver.as_mut(), &mut |_, _| {})
        .map_err(|e| (Outcome::DeviceError, e.to_string()));
    let _ = driver.reboot();
    result.map(|()| manifest)
}
