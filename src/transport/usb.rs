//! fastboot over USB: one vendor-specific interface (class FF, subclass 42, protocol 03)
//! with a bulk IN and a bulk OUT endpoint, reached through libusb.
//!
//! Devices are matched by that interface triple only, never by vendor/product ID, the same
//! way Google's client finds them: every vendor's bootloader and fastbootd present it.

use std::time::Duration;

use rusb::{Context, Device, DeviceHandle, Direction, TransferType, UsbContext};

use super::{Transport, TransportError};

/// Interface class, subclass and protocol of a fastboot endpoint pair.
const FASTBOOT_INTERFACE: (u8, u8, u8) = (0xff, 0x42, 0x03);

/// Largest single bulk transfer we submit; bigger messages are split. Keeps each libusb
/// transfer (and the kernel buffer behind it) bounded regardless of the message size.
const MAX_BULK_WRITE: usize = 1 << 20;

/// After a transfer error, how often and how far apart to look whether the device is gone:
/// its removal may still be under way when the transfer fails.
const DISCONNECT_CHECKS: u32 = 4;
const DISCONNECT_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// A fastboot device seen on the USB bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbFastbootDevice {
    /// The USB serial number string, when the device has one and we may open it.
    pub serial: Option<String>,
    /// Where it is plugged in, e.g. `usb:1-1.2` (bus 1, port 1, then port 2); accepted by
    /// [`UsbTransport::open`].
    pub bus_path: String,
    /// USB vendor ID.
    pub vid: u16,
    /// USB product ID.
    pub pid: u16,
    /// The USB product string, when readable.
    pub product_string: Option<String>,
}

/// A claimed fastboot interface on one USB device.
pub struct UsbTransport {
    handle: DeviceHandle<Context>,
    ep_in: u8,
    ep_out: u8,
    address: String,
}

impl std::fmt::Debug for UsbTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsbTransport")
            .field("address", &self.address)
            .field("ep_in", &self.ep_in)
            .field("ep_out", &self.ep_out)
            .finish()
    }
}

/// Where the fastboot interface of one device lives.
#[derive(Debug, Clone, Copy)]
struct FastbootInterface {
    number: u8,
    alt_setting: u8,
    ep_in: u8,
    ep_out: u8,
}

/// Lists every attached device that exposes a fastboot interface.
///
/// A machine without USB support (no usbfs, as in containers) has no devices rather than
/// an error, so discovery across transports keeps working there.
pub fn list_fastboot() -> Result<Vec<UsbFastbootDevice>, TransportError> {
    Ok(fastboot_devices()?
        .into_iter()
        .map(|(_, _, found)| found)
        .collect())
}

impl UsbTransport {
    /// Opens the fastboot device named by `selector` — its USB serial number, or its bus
    /// path such as `usb:1-1.2` — and claims its fastboot interface.
    pub fn open(selector: &str) -> Result<Self, TransportError> {
        let open_error = |reason: String| TransportError::Open {
            address: selector.to_string(),
            reason,
        };
        let by_path = selector.starts_with("usb:");
        let mut matches: Vec<_> = fastboot_devices()?
            .into_iter()
            .filter(|(_, _, found)| {
                if by_path {
                    found.bus_path == selector
                } else {
                    found.serial.as_deref() == Some(selector)
                }
            })
            .collect();
        let (device, interface, found) = match matches.len() {
            0 => return Err(open_error("no fastboot USB device matches".into())),
            1 => matches.remove(0),
            n => {
                return Err(open_error(format!(
                    "{n} fastboot USB devices share this serial number; use the bus path"
                )))
            }
        };
        let handle = device
            .open()
            .map_err(|e| open_error(format!("cannot open the device: {e}")))?;
        // Not every platform can detach kernel drivers; libusb then carries on without it.
        if let Err(e) = handle.set_auto_detach_kernel_driver(true) {
            tracing::debug!("no kernel driver auto-detach: {e}");
        }
        handle
            .claim_interface(interface.number)
            .map_err(|e| open_error(format!("cannot claim the fastboot interface: {e}")))?;
        if interface.alt_setting != 0 {
            handle
                .set_alternate_setting(interface.number, interface.alt_setting)
                .map_err(|e| open_error(format!("cannot select the fastboot interface: {e}")))?;
        }
        tracing::debug!(address = %found.bus_path, ?interface, "fastboot USB interface claimed");
        Ok(UsbTransport {
            handle,
            ep_in: interface.ep_in,
            ep_out: interface.ep_out,
            address: found.bus_path,
        })
    }
}

impl UsbTransport {
    /// What a failed transfer means. A device that leaves the bus mid-transfer (cable
    /// pulled, device reset) makes libusb report a plain I/O or pipe error, not "no
    /// device"; asking the device for its configuration tells the two apart, once the
    /// kernel has finished removing it.
    fn transfer_error(&self, e: rusb::Error, timeout: Duration) -> TransportError {
        if matches!(e, rusb::Error::Io | rusb::Error::Pipe) {
            for _ in 0..DISCONNECT_CHECKS {
                if self.handle.active_configuration() == Err(rusb::Error::NoDevice) {
                    return TransportError::Disconnected;
                }
                std::thread::sleep(DISCONNECT_CHECK_INTERVAL);
            }
        }
        usb_error(e, timeout)
    }
}

impl Transport for UsbTransport {
    /// Sends `data` in bulk transfers of at most 1 MiB each.
    fn write(&mut self, data: &[u8], timeout: Duration) -> Result<(), TransportError> {
        let mut rest = data;
        while !rest.is_empty() {
            let len = rest.len().min(MAX_BULK_WRITE);
            let sent = self
                .handle
                .write_bulk(self.ep_out, &rest[..len], libusb_timeout(timeout))
                .map_err(|e| self.transfer_error(e, timeout))?;
            if sent == 0 {
                return Err(TransportError::Timeout(timeout));
            }
            rest = &rest[sent..];
        }
        Ok(())
    }

    /// Receives one bulk transfer (one device message, ended by a short packet).
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        self.handle
            .read_bulk(self.ep_in, buf, libusb_timeout(timeout))
            .map_err(|e| match e {
                // libusb does not say how much the device offered, only that it was more.
                rusb::Error::Overflow => TransportError::MessageTooLarge {
                    len: buf.len() as u64 + 1,
                    max: buf.len(),
                },
                other => self.transfer_error(other, timeout),
            })
    }

    fn address(&self) -> &str {
        &self.address
    }
}

/// Every attached device with a fastboot interface, with what we could learn about it.
fn fastboot_devices(
) -> Result<Vec<(Device<Context>, FastbootInterface, UsbFastbootDevice)>, TransportError> {
    let context = match Context::new() {
        Ok(context) => context,
        Err(e) => {
            tracing::debug!("no USB on this machine ({e}); no USB devices");
            return Ok(Vec::new());
        }
    };
    let devices = context
        .devices()
        .map_err(|e| TransportError::Usb(format!("cannot list USB devices: {e}")))?;
    let mut found = Vec::new();
    for device in devices.iter() {
        let Some(interface) = fastboot_interface(&device) else {
            continue;
        };
        let ports = match device.port_numbers() {
            Ok(ports) => ports,
            Err(e) => {
                tracing::debug!(
                    bus = device.bus_number(),
                    "skipping a device without a port path: {e}"
                );
                continue;
            }
        };
        let descriptor = device
            .device_descriptor()
            .map_err(|e| TransportError::Usb(format!("cannot read a device descriptor: {e}")))?;
        // Strings need the device opened, which may be denied; they are only informative.
        let (serial, product_string) = match device.open() {
            Ok(handle) => (
                handle.read_serial_number_string_ascii(&descriptor).ok(),
                handle.read_product_string_ascii(&descriptor).ok(),
            ),
            Err(e) => {
                tracing::debug!("cannot open a fastboot device to read its strings: {e}");
                (None, None)
            }
        };
        let info = UsbFastbootDevice {
            serial,
            bus_path: bus_path(device.bus_number(), &ports),
            vid: descriptor.vendor_id(),
            pid: descriptor.product_id(),
            product_string,
        };
        found.push((device, interface, info));
    }
    Ok(found)
}

/// Finds the fastboot interface and its two bulk endpoints in the active configuration.
fn fastboot_interface(device: &Device<Context>) -> Option<FastbootInterface> {
    let config = device.active_config_descriptor().ok()?;
    for interface in config.interfaces() {
        for setting in interface.descriptors() {
            let triple = (
                setting.class_code(),
                setting.sub_class_code(),
                setting.protocol_code(),
            );
            if triple != FASTBOOT_INTERFACE {
                continue;
            }
            let bulk = |direction| {
                setting
                    .endpoint_descriptors()
                    .find(|ep| {
                        ep.transfer_type() == TransferType::Bulk && ep.direction() == direction
                    })
                    .map(|ep| ep.address())
            };
            if let (Some(ep_in), Some(ep_out)) = (bulk(Direction::In), bulk(Direction::Out)) {
                return Some(FastbootInterface {
                    number: setting.interface_number(),
                    alt_setting: setting.setting_number(),
                    ep_in,
                    ep_out,
                });
            }
        }
    }
    None
}

/// `usb:BUS-PORT.PORT…`, the form Google's `fastboot devices -l` prints.
fn bus_path(bus: u8, ports: &[u8]) -> String {
    let ports: Vec<String> = ports.iter().map(u8::to_string).collect();
    format!("usb:{bus}-{}", ports.join("."))
}

/// libusb waits forever on a zero timeout and takes milliseconds as a C unsigned int.
fn libusb_timeout(timeout: Duration) -> Duration {
    timeout.clamp(
        Duration::from_millis(1),
        Duration::from_millis(u64::from(u32::MAX)),
    )
}

fn usb_error(e: rusb::Error, timeout: Duration) -> TransportError {
    match e {
        rusb::Error::Timeout => TransportError::Timeout(timeout),
        rusb::Error::NoDevice => TransportError::Disconnected,
        other => TransportError::Usb(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_without_usb_is_not_an_error() {
        // This machine has no usbfs: libusb either fails to start or sees no devices.
        // Elsewhere it lists whatever is attached; either way it must not fail.
        list_fastboot().expect("listing USB devices must not fail");
    }

    #[test]
    fn opening_an_absent_device_names_the_selector() {
        match UsbTransport::open("usb:9-9.9") {
            Err(TransportError::Open { address, .. }) => assert_eq!(address, "usb:9-9.9"),
            other => panic!("expected an open error, got {other:?}"),
        }
    }

    #[test]
    fn bus_paths_match_fastboot_devices_l() {
        assert_eq!(bus_path(1, &[1]), "usb:1-1");
        assert_eq!(bus_path(3, &[1, 2, 4]), "usb:3-1.2.4");
    }

    #[test]
    fn timeouts_stay_within_what_libusb_can_express() {
        assert_eq!(libusb_timeout(Duration::ZERO), Duration::from_millis(1));
        assert_eq!(
            libusb_timeout(Duration::from_secs(u64::MAX)),
            Duration::from_millis(u64::from(u32::MAX))
        );
    }
}
