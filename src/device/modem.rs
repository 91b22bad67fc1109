//! The modem driver: USB dongles and mobile hotspots on their AT port.
//!
//! Over AT a modem can only tell who it is and be sent to its download mode; the flashing
//! itself happens in Qualcomm EDL, where the device comes back as another USB device.

use super::fastboot::lenient_version;
use super::quirks::Quirks;
use super::{clean, Battery, DeviceError, DeviceInfo, Driver, Mode};
use crate::protocol::at::{AtClient, BatteryReading};
use crate::transport::Transport;

/// Drives one modem or hotspot over AT.
pub struct ModemDriver<T: Transport> {
    client: AtClient<T>,
    quirks: Quirks,
    usb_serial: Option<String>,
    is_virtual: bool,
    address: String,
    model: Option<String>,
}

impl<T: Transport> ModemDriver<T> {
    /// Wraps an open AT port. `usb_serial` is the port's USB serial number, which also
    /// identifies the device after it re-enumerates in download mode.
    pub fn new(transport: T, quirks: Quirks, usb_serial: Option<String>, is_virtual: bool) -> Self {
        ModemDriver {
            address: transport.address().to_string(),
            client: AtClient::new(transport),
            quirks,
            usb_serial,
            is_virtual,
            model: None,
        }
    }
}

impl<T: Transport> Driver for ModemDriver<T> {
    fn set_timeout(&mut self, silence: std::time::Duration) {
        self.client.set_timeout(silence);
    }

    fn identify(&mut self) -> Result<DeviceInfo, DeviceError> {
        let id = self.client.identify()?;
        let at = id
            .model
            .as_deref()
            .and_then(|m| self.quirks.model(m))
            .and_then(|m| m.at.clone());
        let firmware_version = match (&at, &id.revision) {
            (Some(at), Some(rev)) => at.version.convert(rev).and_then(|v| lenient_version(&v)),
            (None, Some(rev)) => lenient_version(rev),
            _ => None,
        };
        let reading = self.client.battery()?;
        let battery = match (at.as_ref().map(|a| a.battery), reading) {
            // A level the device reports while on battery or charger (27.007 bcs 0 or 1)
            // rules over a quirk that says the model has none: that unit has one.
            (_, BatteryReading::Percent { percent, .. }) => Battery::Percent(percent.min(100)),
            (_, BatteryReading::PowerFault) => Battery::TooLowForFlashing,
            // The quirks file knows this model has no battery.
            (Some(false), _) => Battery::NoBattery,
            // A model with a battery that reports none, or no reading at all: unknown.
            (Some(true), BatteryReading::NoBattery) | (_, BatteryReading::Unsupported) => {
                Battery::Unknown
            }
            (None, BatteryReading::NoBattery) => Battery::NoBattery,
        };
        self.model = id.model.as_deref().map(clean);
        Ok(DeviceInfo {
            address: self.address.clone(),
            mode: Mode::Modem,
            product: id.model.as_deref().map(clean),
            // The USB serial names the modem in reports and history; the IMEI stays in its
            // own field. After the switch the device is found again by its USB port path.
            serial: self.usb_serial.as_deref().map(clean),
            imei: id.imei.as_deref().map(clean),
            firmware_version_raw: id.revision.as_deref().map(clean),
            firmware_version,
            security_version: None,
            security_version_raw: None,
            battery,
            lock: super::LockState::Unknown,
            partitions: Default::default(),
            partitions_size_unknown: Default::default(),
            slots: None,
            is_virtual: self.is_virtual,
            luns: Vec::new(),
            layout: Vec::new(),
            chip: None,
        })
    }

    fn detach(&mut self) -> Result<(), DeviceError> {
        let model = match &self.model {
            Some(m) => m.clone(),
            None => self.identify()?.product.unwrap_or_default(),
        };
        let command = self
            .quirks
            .model(&model)
            .and_then(|m| m.at.as_ref())
            .map(|a| a.download.clone())
            .ok_or({
                DeviceError::Unsupported("switching this model to download mode (the quirks file names no command for it)")
            })?;
        Ok(self.client.send_switch(&command)?)
    }

    fn reboot(&mut self) -> Result<(), DeviceError> {
        // 27.007's full functionality with reset.
        self.client.command("AT+CFUN=1,1")?;
        Ok(())
    }
}
