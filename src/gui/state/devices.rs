//! The devices list: one row per attached device, its badge and the names shown for it.

use super::{AppState, CheckState, DeviceKey, JobTarget, JobView, Level};
use crate::device::discovery::Found;
use crate::device::{Battery, DeviceInfo, LockState, Mode};
use crate::engine::Outcome;

/// One row of the device list.
#[derive(Debug, Clone)]
pub struct DeviceRow {
    /// Identity; see [`DeviceKey`].
    pub key: DeviceKey,
    /// Where it is now.
    pub address: String,
    /// The mode it is in.
    pub mode: Mode,
    /// One of flashline's virtual devices.
    pub is_virtual: bool,
    /// Model or product.
    pub model: Option<String>,
    /// What its boot ROM said about its chip in EDL (Sahara command mode), if it was asked.
    pub chip: Option<crate::protocol::sahara::ChipIdentity>,
    /// Serial number.
    pub serial: Option<String>,
    /// Firmware version as reported.
    pub firmware: Option<String>,
    /// Battery.
    pub battery: Option<Battery>,
    /// Whether the bootloader accepts writes (fastboot), as it reports it.
    pub lock: Option<LockState>,
    /// Storage in bytes, where known.
    pub storage: Option<u64>,
    /// Still listed by discovery.
    pub present: bool,
    /// Ticked for the next job.
    pub selected: bool,
    /// Preflight for the open package.
    pub check: CheckState,
    /// The running or last job.
    pub job: Option<JobView>,
}

/// What the badge of a row says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Badge {
    /// Nothing to say.
    Idle,
    /// Preflight running.
    Checking,
    /// Preflight passed.
    Ready,
    /// Preflight refused.
    Refused,
    /// A job is running.
    Flashing,
    /// The last job succeeded.
    Done,
    /// The last job failed.
    Failed,
    /// The last job was cancelled.
    Cancelled,
    /// In emergency download mode with no job: probably bricked.
    Bricked,
    /// Gone from the bus while its job runs (re-enumerating).
    Away,
}

impl DeviceRow {
    /// The badge.
    pub fn badge(&self) -> Badge {
        if let Some(job) = &self.job {
            return match job.finished.as_ref().map(|f| f.outcome) {
                None => Badge::Flashing,
                Some(Outcome::Success | Outcome::DryRun) => Badge::Done,
                Some(Outcome::Cancelled) => Badge::Cancelled,
                Some(_) => Badge::Failed,
            };
        }
        if !self.present {
            return Badge::Away;
        }
        match &self.check {
            CheckState::Running(_) => Badge::Checking,
            CheckState::Done(list) if list.refusals().next().is_some() => Badge::Refused,
            CheckState::Done(_) => Badge::Ready,
            CheckState::Failed(_) => Badge::Failed,
            CheckState::NotRun if matches!(self.mode, Mode::Edl | Mode::Zxic) => Badge::Bricked,
            CheckState::NotRun => Badge::Idle,
        }
    }

    /// Whether a job runs on it now.
    pub fn busy(&self) -> bool {
        self.job.as_ref().is_some_and(|j| j.finished.is_none())
    }

    /// A short name for messages: model and serial, or the address.
    pub fn name(&self) -> String {
        match (&self.model, &self.serial) {
            (Some(m), Some(s)) => format!("{m} {s}"),
            (Some(m), None) => m.clone(),
            (None, Some(s)) => s.clone(),
            (None, None) => self.address.clone(),
        }
    }

    pub(super) fn target(&self) -> JobTarget {
        JobTarget {
            key: self.key.clone(),
            address: self.address.clone(),
            is_virtual: self.is_virtual,
        }
    }
}

pub(super) fn fill(row: &mut DeviceRow, info: &DeviceInfo) {
    if info.product.is_some() {
        row.model = info.product.clone();
    }
    if info.chip.is_some() {
        row.chip = info.chip.clone();
    }
    if info.serial.is_some() {
        row.serial = info.serial.clone();
    }
    if info.firmware_version_raw.is_some() {
        row.firmware = info.firmware_version_raw.clone();
    }
    if info.battery != Battery::Unknown || row.battery.is_none() {
        row.battery = Some(info.battery);
    }
    if info.mode == Mode::Fastboot {
        row.lock = Some(info.lock);
    }
    let storage: u64 = if info.luns.is_empty() {
        info.partitions.values().sum()
    } else {
        info.luns
            .iter()
            .map(|l| l.sectors * u64::from(l.sector_size))
            .sum()
    };
    if storage > 0 {
        row.storage = Some(storage);
    }
}

/// A mode in words.
pub fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Fastboot => "fastboot",
        Mode::Modem => "modem",
        Mode::Edl => "EDL",
        Mode::Diag => "DIAG",
        Mode::Zxic => "ZXIC download",
        Mode::Unisoc => "Unisoc download",
        Mode::Unknown => "unknown",
    }
}

/// A battery state in words.
pub fn battery_text(battery: Option<Battery>) -> String {
    match battery {
        Some(Battery::Percent(p)) => format!("{p} %"),
        Some(Battery::SufficientForFlashing) => "enough".into(),
        Some(Battery::TooLowForFlashing) => "too low".into(),
        Some(Battery::NoBattery) => "no battery".into(),
        Some(Battery::Unknown) | None => "—".into(),
    }
}

/// A bootloader's lock state for the device list.
pub fn lock_text(lock: Option<LockState>) -> &'static str {
    match lock {
        Some(LockState::Unlocked) => "unlocked",
        Some(LockState::Locked) => "locked",
        Some(LockState::Unknown) | None => "—",
    }
}

pub(super) fn found_name(f: &Found) -> String {
    f.product
        .clone()
        .or(f.known_as.clone())
        .unwrap_or_else(|| "unnamed".into())
}

impl AppState {
    pub(super) fn merge_scan(&mut self, found: Vec<Found>) {
        let listed: Vec<Found> = found
            .into_iter()
            .filter(|f| f.mode != Mode::Unknown || f.vid.is_some())
            .collect();
        for d in &mut self.devices {
            d.present = false;
        }
        for f in listed {
            let key = f.serial.clone().unwrap_or_else(|| f.address.clone());
            if let Some(row) = self
                .devices
                .iter_mut()
                .find(|d| d.key == key || d.address == f.address)
            {
                row.present = true;
                if row.address != f.address || row.mode != f.mode {
                    row.address = f.address.clone();
                    row.mode = f.mode;
                    let key = row.key.clone();
                    let text = format!("now {} at {}", mode_name(f.mode), f.address);
                    self.log(Some(&key), Level::Info, text);
                }
                continue;
            }
            let text = format!(
                "{} at {} ({})",
                mode_name(f.mode),
                f.address,
                found_name(&f)
            );
            self.devices.push(DeviceRow {
                key: key.clone(),
                model: f.product.clone().or(f.known_as.clone()),
                chip: None,
                address: f.address,
                mode: f.mode,
                is_virtual: f.is_virtual,
                serial: f.serial,
                firmware: None,
                battery: None,
                lock: None,
                storage: None,
                present: true,
                selected: false,
                check: CheckState::NotRun,
                job: None,
            });
            self.log(Some(&key), Level::Info, format!("appeared: {text}"));
        }
        let gone: Vec<String> = self
            .devices
            .iter()
            .filter(|d| !d.present && !d.busy())
            .map(|d| d.key.clone())
            .collect();
        for key in gone {
            self.log(Some(&key), Level::Info, "disconnected");
            self.devices.retain(|d| d.key != key);
        }
    }

    pub(super) fn identified(&mut self, address: &str, info: &DeviceInfo) {
        let Some(row) = self.devices.iter_mut().find(|d| d.address == address) else {
            return;
        };
        fill(row, info);
    }

    /// Ticks or unticks a device.
    pub fn select(&mut self, key: &str, selected: bool) {
        if let Some(d) = self.device_mut(key) {
            d.selected = selected;
        }
    }
}
