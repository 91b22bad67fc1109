//! Preflight: everything that must hold before a single byte is written.
//!
//! Each check states what the device has and what the package requires, so a refusal says
//! exactly what is wrong. Only a preflight with no refusal yields [`Cleared`], and only
//! `Cleared` lets [`super::plan::FlashPlan`] be built.

use serde::Serialize;

use super::history::HistoryEntry;
use crate::device::{Battery, DeviceInfo, LockState, Lun, Mode, Target};
use crate::package::{KeyScope, Requirement, VerifiedPackage};

/// What a preflight check concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Fine.
    Pass,
    /// Allowed, but worth a look (recorded in the report).
    Warn,
    /// Not allowed: nothing will be written.
    Refuse,
}

/// One line of the preflight checklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What is checked (`product`, `security-version`, `version`, `battery`, `storage:boot`, `signer`).
    pub name: String,
    /// The verdict.
    pub status: Status,
    /// What the device has.
    pub actual: String,
    /// What the package requires.
    pub required: String,
    /// Plain words: what is wrong and what to do, or why it is fine.
    pub message: String,
    /// The user option that turned a refusal into this warning, if any.
    pub relaxed_by: Option<String>,
}

impl Check {
    fn relaxed_by(mut self, option: &str) -> Self {
        self.relaxed_by = Some(option.to_string());
        self
    }
}

/// User choices that relax a check; each one used is recorded in the report.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Allow a package whose version is older than the device's.
    pub allow_older: bool,
    /// Flash although the device says its battery is too low.
    pub force_battery: bool,
    /// Write the package's images of a Unisoc device's NV partitions (IMEI, calibration),
    /// which are otherwise backed up and left as they are.
    pub write_nv: bool,
}

/// The result of a preflight run.
#[derive(Debug, Clone)]
pub struct Preflight {
    /// Every check, in order.
    pub checks: Vec<Check>,
}

/// Proof that preflight passed; required to build a flash plan.
#[derive(Debug)]
pub struct Cleared {
    _private: (),
}

impl Preflight {
    /// Runs every check. `history` is flashline's last record of this device's serial.
    pub fn run(
        package: &VerifiedPackage,
        device: &DeviceInfo,
        targets: &[(String, Option<u64>)],
        history: Option<&HistoryEntry>,
        overrides: &Overrides,
    ) -> Self {
        let m = package.manifest();
        let mut checks = vec![
            signer(package, device),
            product(m.targets.iter().map(|t| t.product.as_str()), device),
            security_version(m.security_version, device, history),
            version(&m.version, device, history, overrides),
            battery(m.min_battery_percent, device, overrides),
        ];
        if device.mode == Mode::Fastboot {
            checks.push(lock(device.lock));
        }
        for (image, (target, size)) in m.images.iter().zip(targets) {
            // Logical partitions live in super, checked as a whole (see `super::dynamic`).
            if image.logical {
                continue;
            }
            let listing = match size {
                Some(size) => Listed::Size(*size),
                None if device.partitions_size_unknown.contains(target) => Listed::SizeUnknown,
                None if device.mode == Mode::Fastboot
                    && device.partitions.is_empty()
                    && device.partitions_size_unknown.is_empty() =>
                {
                    Listed::NoSizes
                }
                None => Listed::Absent,
            };
            checks.push(storage(
                &image.partition,
                target,
                image.expanded_size(),
                listing,
            ));
        }
        Preflight { checks }
    }

    /// The refusals, if any.
    pub fn refusals(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.status == Status::Refuse)
    }

    /// `Cleared` if nothing was refused; otherwise the refusals joined into one message.
    pub fn clear(&self) -> Result<Cleared, String> {
        let refusals: Vec<&str> = self.refusals().map(|c| c.message.as_str()).collect();
        if refusals.is_empty() {
            Ok(Cleared { _private: () })
        } else {
            Err(refusals.join("; "))
        }
    }
}

fn check(
    name: &str,
    status: Status,
    actual: impl Into<String>,
    required: impl Into<String>,
    message: impl Into<String>,
) -> Check {
    Check {
        name: name.to_string(),
        status,
        actual: actual.into(),
        required: required.into(),
        message: message.into(),
        relaxed_by: None,
    }
}

fn signer(package: &VerifiedPackage, device: &DeviceInfo) -> Check {
    let s = package.signer();
    let actual = format!("{} ({})", s.name, s.key_id);
    if s.scope == KeyScope::VirtualOnly && !device.is_virtual {
        return check(
            "signer",
            Status::Refuse,
            actual,
            "a key trusted for real devices",
            format!(
                "the package is signed with {}, whose secret half is public, so it is \
                 trusted only for virtual devices, never for real hardware; flash a package \
                 signed with your own release key",
                s.name
            ),
        );
    }
    check(
        "signer",
        Status::Pass,
        actual,
        "a trusted key",
        "signed by a trusted key",
    )
}

fn product<'a>(mut targets: impl Iterator<Item = &'a str> + Clone, device: &DeviceInfo) -> Check {
    let required = targets.clone().collect::<Vec<_>>().join(" or ");
    match &device.product {
        Some(p) if targets.any(|t| t == p) => {
            check("product", Status::Pass, p, required, format!("the package is made for {p}"))
        }
        Some(p) => check(
            "product",
            Status::Refuse,
            p,
            required.clone(),
            format!("the package is for {required}, but the device is a {p}: use the package made for {p}"),
        ),
        None if device.mode == Mode::Edl => check(
            "product",
            Status::Warn,
            "not reported (emergency download mode)",
            required.clone(),
            format!(
                "a device in emergency download mode cannot say what it is; it will be flashed as {required}, \
                 so make sure that is what it is"
            ),
        ),
        None if device.mode == Mode::Zxic => check(
            "product",
            Status::Warn,
            "not reported (ZXIC boot ROM)",
            required.clone(),
            format!(
                "a ZXIC device in its boot ROM cannot say what it is; it will be flashed as {required}, \
                 so make sure that is what it is"
            ),
        ),
        None if device.mode == Mode::Unisoc => check(
            "product",
            Status::Warn,
            "not reported (Unisoc download mode)",
            required.clone(),
            format!(
                "a Unisoc boot ROM does not say what device it is in; it will be flashed as {required}, \
                 so make sure that is what it is (FDL2 refuses partitions it does not have)"
            ),
        ),
        None => check(
            "product",
            Status::Refuse,
            "not reported",
            required,
            "the device does not report its product, so flashline cannot tell whether the package fits it",
        ),
    }
}

fn security_version(package: u64, device: &DeviceInfo, history: Option<&HistoryEntry>) -> Check {
    let required = format!("≤ {package}");
    if let (None, Some(raw)) = (device.security_version, &device.security_version_raw) {
        // A version the device states but flashline cannot read is not "no version".
        return check(
            "security-version",
            Status::Refuse,
            raw.clone(),
            required,
            format!(
                "the device reports security version {raw:?}, which flashline cannot read; \
                 add a conversion for this model to the quirks file"
            ),
        );
    }
    let (actual, source) = match super::history::device_security_floor(device, history) {
        Ok(floor) => (floor.value, floor.source),
        Err((shown, why)) => return check("security-version", Status::Warn, shown, required, why),
    };
    if package < actual {
        check(
            "security-version",
            Status::Refuse,
            actual.to_string(),
            required,
            format!(
                "the package's security version {package} is lower than {actual} (from {source}); \
                 installing it would be a security downgrade and can brick a locked device: \
                 use a package with security version {actual} or higher"
            ),
        )
    } else {
        check(
            "security-version",
            Status::Pass,
            actual.to_string(),
            required,
            format!("security version {package} ≥ {actual} (from {source})"),
        )
    }
}

fn version(
    package: &semver::Version,
    device: &DeviceInfo,
    history: Option<&HistoryEntry>,
    overrides: &Overrides,
) -> Check {
    let required = format!("≤ {package}");
    // What the device says, comparable or not, is shown on every line.
    let reported = match &device.firmware_version_raw {
        Some(raw) => format!(
            "the device reports {raw:?}, which cannot be compared with the package's {package}"
        ),
        None => format!(
            "the device reports no firmware version to compare with the package's {package}"
        ),
    };
    let (actual, source) = match (&device.firmware_version, history) {
        (Some(v), _) => {
            let floor = super::history::version_floor(v, history);
            (floor.value, floor.source)
        }
        (None, Some(h)) => match semver::Version::parse(&h.version) {
            Ok(v) => (
                v,
                format!(
                    "flashline's history of this serial ({} flashed {}), since {reported}",
                    h.package, h.flashed_at
                ),
            ),
            Err(_) => return check(
                "version",
                Status::Refuse,
                format!("{:?} in flashline's history", h.version),
                required,
                "flashline's history entry for this serial is damaged, so a downgrade cannot be \
                     ruled out: fix or remove the entry in history.json",
            ),
        },
        // Not comparable and never flashed by flashline: a warning that shows both values,
        // never a refusal. The device's own anti-rollback check and the security version
        // still apply.
        (None, None) => {
            return check(
                "version",
                Status::Warn,
                device
                    .firmware_version_raw
                    .clone()
                    .unwrap_or_else(|| "not reported".into()),
                required,
                format!(
                    "{reported}, and flashline has not flashed it before, so a downgrade \
                     cannot be ruled out; the security version check still applies"
                ),
            )
        }
    };
    let actual_text = match (&device.firmware_version, &device.firmware_version_raw) {
        (None, Some(raw)) => format!("{actual} (history; the device reports {raw:?})"),
        _ => actual.to_string(),
    };
    if *package < actual {
        if overrides.allow_older {
            check(
                "version",
                Status::Warn,
                actual_text,
                required,
                format!(
                    "downgrade from {actual} to {package} allowed by --allow-older (from {source})"
                ),
            )
            .relaxed_by("--allow-older")
        } else {
            check(
                "version",
                Status::Refuse,
                actual_text,
                required,
                format!(
                    "the package ({package}) is older than the firmware on the device ({actual}, from {source}); \
                     pass --allow-older to install an older version on purpose"
                ),
            )
        }
    } else if *package == actual {
        check(
            "version",
            Status::Pass,
            actual_text,
            required,
            format!("re-installing {package} (from {source})"),
        )
    } else {
        check(
            "version",
            Status::Pass,
            actual_text,
            required,
            format!("upgrade from {actual} to {package} (from {source})"),
        )
    }
}

/// The battery check: at preflight, and again before each image of a job.
///
/// Only a battery known to be low is refused (`--force-battery` flashes anyway); one the
/// device does not report is a warning, as fwupd treats it: many bootloaders report none.
pub(super) fn battery(min: u8, device: &DeviceInfo, overrides: &Overrides) -> Check {
    let required = format!("≥ {min} %");
    let low = |actual: String, message: String| {
        if overrides.force_battery {
            check(
                "battery",
                Status::Warn,
                actual,
                required.clone(),
                format!("{message}; flashing anyway because of --force-battery"),
            )
            .relaxed_by("--force-battery")
        } else {
            check(
                "battery",
                Status::Refuse,
                actual,
                required.clone(),
                format!("{message}: charge it and try again, or pass --force-battery if it is on external power"),
            )
        }
    };
    let reporter = if device.mode == Mode::Fastboot {
        "the bootloader"
    } else {
        "the device"
    };
    match device.battery {
        Battery::Percent(p) if p >= min => check("battery", Status::Pass, format!("{p} %"), required, format!("battery at {p} %")),
        Battery::Percent(p) => low(
            format!("{p} %"),
            format!("the battery is at {p} %, below the {min} % this package needs"),
        ),
        Battery::SufficientForFlashing => check(
            "battery",
            Status::Pass,
            "enough (battery-soc-ok)",
            required,
            "the device reports no percentage but says its charge is enough to flash",
        ),
        Battery::TooLowForFlashing => low(
            "too low (battery-soc-ok: no)".into(),
            "the device says its battery is too low to flash".into(),
        ),
        Battery::NoBattery => check("battery", Status::Pass, "no battery", required, "the device has no battery"),
        Battery::Unknown if device.mode == Mode::Edl => check(
            "battery",
            Status::Warn,
            "not readable in emergency download mode",
            required,
            format!("the battery cannot be read in emergency download mode: make sure it is charged to at least {min} % or on external power"),
        ),
        Battery::Unknown => check(
            "battery",
            Status::Warn,
            format!("not reported by {reporter}"),
            required,
            format!("the battery is not reported by {reporter}: make sure it is charged to at least {min} % or on external power"),
        ),
    }
}

/// The lock check: a locked bootloader refuses every flash and erase, so the job is refused
/// before its first write. flashline never unlocks a device itself.
fn lock(state: LockState) -> Check {
    let required = "unlocked";
    match state {
        LockState::Unlocked => check("lock", Status::Pass, "unlocked", required, "the bootloader is unlocked and accepts writes"),
        LockState::Locked => check(
            "lock",
            Status::Refuse,
            "locked",
            required,
            "the bootloader is locked and would refuse every write. Unlocking wipes all user data \
             on the phone: if that is intended, run `fastboot flashing unlock` (older devices: \
             `fastboot oem unlock`) and confirm on the phone's screen with its volume and power \
             keys, then flash again. flashline never unlocks a device by itself",
        ),
        LockState::Unknown => check(
            "lock",
            Status::Warn,
            "not reported",
            required,
            "the bootloader does not say whether it is unlocked; if it is locked, the first write will fail and nothing is written",
        ),
    }
}

/// The package's `[requires]`, against the values the device reported for them (`None`:
/// not reported). A value outside the accepted list, or none at all, is refused.
pub fn requirements(requires: &[Requirement], reported: &[Option<String>]) -> Vec<Check> {
    requires
        .iter()
        .zip(reported)
        .map(|(r, value)| {
            let name = format!("requires:{}", r.variable);
            let required = r.values.join(" or ");
            match value {
                Some(v) if r.values.iter().any(|a| a == v) => check(
                    &name,
                    Status::Pass,
                    v.clone(),
                    required,
                    format!("{} is {v}, as the package requires", r.variable),
                ),
                Some(v) => check(
                    &name,
                    Status::Refuse,
                    v.clone(),
                    required.clone(),
                    format!(
                        "the package requires {} to be {required}, but the device reports {v:?}: \
                         this package is not made for this device's {}",
                        r.variable, r.variable
                    ),
                ),
                None => check(
                    &name,
                    Status::Refuse,
                    "not reported",
                    required.clone(),
                    format!(
                        "the package requires {} to be {required}, but the device does not report {}",
                        r.variable, r.variable
                    ),
                ),
            }
        })
        .collect()
}

/// What the device said about a target partition.
#[derive(Debug, Clone, Copy)]
enum Listed {
    /// Its size, in bytes.
    Size(u64),
    /// Its name, but no size flashline can read (`is-logical:` only, a size in words).
    SizeUnknown,
    /// No partition sizes at all (a bootloader without `partition-size:`).
    NoSizes,
    /// Sizes of other partitions, not of this one: the device has no such partition.
    Absent,
}

fn storage(partition: &str, target: &str, needed: u64, listed: Listed) -> Check {
    let name = format!("storage:{partition}");
    let required = format!("≥ {needed} bytes");
    match listed {
        Listed::Size(size) if needed <= size => check(&name, Status::Pass, format!("{size} bytes"), required, format!("{target} has room")),
        Listed::SizeUnknown => check(
            &name,
            Status::Warn,
            "size unknown",
            required,
            format!(
                "the device lists partition {target} but not its size, so storage cannot be checked: \
                 the {partition} image needs {needed} bytes, and the device itself refuses it if it does not fit"
            ),
        ),
        Listed::NoSizes => check(
            &name,
            Status::Warn,
            "no sizes reported",
            required,
            format!(
                "the device lists no partition sizes, so storage cannot be checked: the {partition} image \
                 needs {needed} bytes in {target}, and the device itself refuses it if it does not fit"
            ),
        ),
        Listed::Size(size) => check(
            &name,
            Status::Refuse,
            format!("{size} bytes"),
            required,
            format!(
                "the {partition} image needs {needed} bytes but partition {target} holds only {size}: \
                 this package does not fit this device"
            ),
        ),
        Listed::Absent => check(
            &name,
            Status::Refuse,
            "not reported",
            required,
            format!("the device reports no partition {target}: this package does not fit this device"),
        ),
    }
}

/// The checks that decide whether code from `package` may run on `device` at all: a
/// trusted signer for this kind of device, and the right model.
pub fn identity_checks(package: &VerifiedPackage, device: &DeviceInfo) -> Vec<Check> {
    let m = package.manifest();
    vec![
        signer(package, device),
        product(m.targets.iter().map(|t| t.product.as_str()), device),
    ]
}

/// Checks that a run of `sectors` sectors at `start` fits LUN `lun` of the device, and
/// gives the resolved target if it does. `start` is the evaluated `start_sector`, or why it
/// could not be evaluated.
pub fn storage_range(
    label: &str,
    lun: u32,
    sector_size: u32,
    start: Result<u64, String>,
    sectors: u64,
    luns: &[Lun],
) -> (Check, Option<Target>) {
    let name = format!("storage:{label}");
    let Some(disk) = luns.iter().find(|l| l.index == lun) else {
        let c = check(
            &name,
            Status::Refuse,
            "no such LUN",
            format!("LUN {lun}"),
            format!("the package writes {label} to LUN {lun}, which this device does not have"),
        );
        return (c, None);
    };
    let actual = format!(
        "LUN {lun}: {} sectors of {} bytes",
        disk.sectors, disk.sector_size
    );
    if disk.sector_size != sector_size {
        let c = check(
            &name,
            Status::Refuse,
            actual,
            format!("{sector_size}-byte sectors"),
            format!(
                "the package is built for {sector_size}-byte sectors but the device's LUN {lun} has {}-byte sectors: \
                 it is for another storage type",
                disk.sector_size
            ),
        );
        return (c, None);
    }
    let start = match start {
        Ok(s) => s,
        Err(e) => {
            let c = check(
                &name,
                Status::Refuse,
                actual,
                "a valid start sector",
                format!("{label}: {e}"),
            );
            return (c, None);
        }
    };
    let required = format!("sectors {start}..{}", start.saturating_add(sectors));
    match start.checked_add(sectors).filter(|&end| end <= disk.sectors) {
        Some(_) => {
            let target = Target::Sectors {
                lun,
                start,
                count: sectors,
                sector_size,
            };
            (check(&name, Status::Pass, actual, required, format!("{label} fits")), Some(target))
        }
        None => (
            check(
                &name,
                Status::Refuse,
                actual,
                required,
                format!(
                    "{label} needs sectors {start}..{} but LUN {lun} ends at sector {}: this package does not fit this device",
                    start.saturating_add(sectors),
                    disk.sectors
                ),
            ),
            None,
        ),
    }
}
