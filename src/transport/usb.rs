//! USB devices reached through libusb: a vendor-specific interface with a bulk IN and a bulk
//! OUT endpoint.
//!
//! * fastboot: interface class FF, subclass 42, protocol 03. Devices are matched by that
//!   triple only, never by vendor/product ID, the same way Google's client finds them:
//!   every vendor's bootloader and fastbootd present it. [`UsbTransport`] carries one
//!   fastboot packet per transfer.
//! * Qualcomm EDL: a device whose vendor/product ID the caller names (the quirks file's
//!   EDL IDs, since Qualcomm's vendor ID covers normal compositions too) with an interface
//!   FF/FF/{FF,10,11,13}, the protocols qdl accepts. Sahara and Firehose frame their own
//!   messages, so [`open_edl`] gives a byte stream ([`BulkStream`]) like a serial port's:
//!   the same device reached through Linux's qcserial tty or over raw USB (Windows, macOS,
//!   Linux without qcserial) looks the same to the EDL driver.

use std::time::Duration;

use rusb::{Context, Device, DeviceHandle, Direction, TransferType, UsbContext};

use super::{Transport, TransportError};

mod stream;

pub use stream::{BulkPipe, BulkStream};

/// Interface class, subclass and protocol of a fastboot endpoint pair.
const FASTBOOT_INTERFACE: (u8, u8, u8) = (0xff, 0x42, 0x03);

/// Interface class and subclass of a Qualcomm EDL endpoint pair ...
const EDL_CLASS: (u8, u8) = (0xff, 0xff);
/// ... and the protocols seen on it (0xFF on older boot ROMs).
const EDL_PROTOCOLS: [u8; 4] = [0xff, 0x10, 0x11, 0x13];

/// Largest single bulk transfer we submit; bigger messages are split. Keeps each libusb
/// transfer (and the kernel buffer behind it) bounded regardless of the message size.
const MAX_BULK_WRITE: usize = 1 << 20;

/// After a transfer error, how often and how far apart to look whether the device is gone:
/// its removal may still be under way when the transfer fails.
const DISCONNECT_CHECKS: u32 = 4;
const DISCONNECT_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// A device with a bulk interface flashline speaks, seen on the USB bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbDevice {
    /// The USB serial number string, when the device has one and we may open it.
    pub serial: Option<String>,
    /// Where it is plugged in, e.g. `usb:1-1.2` (bus 1, port 1, then port 2); accepted by
    /// [`UsbTransport::open`] and [`open_edl`].
    pub bus_path: String,
    /// USB vendor ID.
    pub vid: u16,
    /// USB product ID.
    pub pid: u16,
    /// The USB product string, when readable.
    pub product_string: Option<String>,
}

impl UsbDevice {
    /// Whether `selector` names this device: a bus path (`usb:1-1.2`) or a serial number.
    pub fn is(&self, selector: &str) -> bool {
        if selector.starts_with("usb:") {
            self.bus_path == selector
        } else {
            self.serial.as_deref() == Some(selector)
        }
    }
}

/// Which bulk interface to look for.
#[derive(Debug, Clone, Copy)]
enum Function<'a> {
    /// fastboot's FF/42/03, on any device.
    Fastboot,
    /// EDL's FF/FF/{FF,10,11,13}, on a device with one of these vendor/product IDs.
    Edl(&'a [(u16, u16)]),
    /// Unisoc download mode: the first interface with bulk endpoints (spd_dump claims it
    /// whatever its class), on a device with one of these vendor/product IDs.
    Unisoc(&'a [(u16, u16)]),
}

impl Function<'_> {
    fn name(self) -> &'static str {
        match self {
            Function::Fastboot => "fastboot",
            Function::Edl(_) => "EDL",
            Function::Unisoc(_) => "Unisoc download",
        }
    }

    fn accepts_ids(self, vid: u16, pid: u16) -> bool {
        match self {
            Function::Fastboot => true,
            Function::Edl(ids) | Function::Unisoc(ids) => ids.contains(&(vid, pid)),
        }
    }

    fn accepts_interface(self, class: u8, subclass: u8, protocol: u8) -> bool {
        match self {
            Function::Fastboot => (class, subclass, protocol) == FASTBOOT_INTERFACE,
            Function::Edl(_) => (class, subclass) == EDL_CLASS && EDL_PROTOCOLS.contains(&protocol),
            Function::Unisoc(_) => true,
        }
    }
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

/// Where the bulk interface of one device lives.
#[derive(Debug, Clone, Copy)]
struct BulkInterface {
    number: u8,
    alt_setting: u8,
    ep_in: u8,
    ep_out: u8,
    in_packet: usize,
    out_packet: usize,
}

/// Lists every attached device that exposes a fastboot interface.
///
/// A machine without USB support (no usbfs, as in containers) has no devices rather than
/// an error, so discovery across transports keeps working there.
pub fn list_fastboot() -> Result<Vec<UsbDevice>, TransportError> {
    list(Function::Fastboot)
}

/// Lists every attached device in Qualcomm EDL: one of the vendor/product `ids` (the
/// quirks file's EDL entries) with an EDL bulk interface. Like [`list_fastboot`], a machine
/// without USB has none.
pub fn list_edl(ids: &[(u16, u16)]) -> Result<Vec<UsbDevice>, TransportError> {
    list(Function::Edl(ids))
}

fn list(function: Function<'_>) -> Result<Vec<UsbDevice>, TransportError> {
    Ok(devices(function)?
        .into_iter()
        .map(|(_, _, found)| found)
        .collect())
}

impl UsbTransport {
    /// Opens the fastboot device named by `selector` — its USB serial number, or its bus
    /// path such as `usb:1-1.2` — and claims its fastboot interface.
    pub fn open(selector: &str) -> Result<Self, TransportError> {
        let (handle, interface, address) = claim(selector, Function::Fastboot)?;
        Ok(UsbTransport {
            handle,
            ep_in: interface.ep_in,
            ep_out: interface.ep_out,
            address,
        })
    }
}

/// Opens the device in EDL named by `selector` (serial number or bus path; it must have
/// one of `ids`), claims its EDL interface and returns the byte stream Sahara and Firehose
/// run over.
pub fn open_edl(
    selector: &str,
    ids: &[(u16, u16)],
) -> Result<BulkStream<RusbPipe>, TransportError> {
    let (handle, interface, address) = claim(selector, Function::Edl(ids))?;
    let pipe = RusbPipe {
        handle,
        ep_in: interface.ep_in,
        ep_out: interface.ep_out,
        in_packet: interface.in_packet,
        out_packet: interface.out_packet,
    };
    BulkStream::new(pipe, address)
}

/// Lists every attached Unisoc device in download mode: one of `ids` (the quirks file's
/// `unisoc` entries) with a bulk interface. A machine without USB has none.
pub fn list_unisoc(ids: &[(u16, u16)]) -> Result<Vec<UsbDevice>, TransportError> {
    list(Function::Unisoc(ids))
}

/// Opens the Unisoc device in download mode named by `selector`, claims its bulk
/// interface, sends the CDC SET_CONTROL_LINE_STATE request spd_dump sends first
/// (`0x21, 34, 0x601`: "required for smartphones") and returns the byte stream.
pub fn open_unisoc(
    selector: &str,
    ids: &[(u16, u16)],
) -> Result<BulkStream<RusbPipe>, TransportError> {
    let (handle, interface, address) = claim(selector, Function::Unisoc(ids))?;
    handle
        .write_control(0x21, 34, 0x601, 0, &[], std::time::Duration::from_secs(1))
        .map_err(|e| TransportError::Usb(format!("the control-line request was refused: {e}")))?;
    let pipe = RusbPipe {
        handle,
        ep_in: interface.ep_in,
        ep_out: interface.ep_out,
        in_packet: interface.in_packet,
        out_packet: interface.out_packet,
    };
    BulkStream::new(pipe, address)
}

/// Finds the one device `selector` names with `function`'s interface, opens it and claims
/// that interface (detaching a kernel driver such as qcserial where the platform allows).
fn claim(
    selector: &str,
    function: Function<'_>,
) -> Result<(DeviceHandle<Context>, BulkInterface, String), TransportError> {
    let name = function.name();
    let open_error = |reason: String| TransportError::Open {
        address: selector.to_string(),
        reason,
    };
    let mut matches: Vec<_> = devices(function)?
        .into_iter()
        .filter(|(_, _, found)| found.is(selector))
        .collect();
    let (device, interface, found) = match matches.len() {
        0 => return Err(open_error(format!("no {name} USB device matches"))),
        1 => matches.remove(0),
        n => {
            return Err(open_error(format!(
                "{n} {name} USB devices share this serial number; use the bus path"
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
        .map_err(|e| open_error(format!("cannot claim the {name} interface: {e}")))?;
    if interface.alt_setting != 0 {
        handle
            .set_alternate_setting(interface.number, interface.alt_setting)
            .map_err(|e| open_error(format!("cannot select the {name} interface: {e}")))?;
    }
    tracing::debug!(address = %found.bus_path, ?interface, "{name} USB interface claimed");
    Ok((handle, interface, found.bus_path))
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
                .map_err(|e| transfer_error(&self.handle, e, timeout))?;
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
                other => transfer_error(&self.handle, other, timeout),
            })
    }

    fn address(&self) -> &str {
        &self.address
    }
}

/// A claimed EDL interface: the libusb side of [`BulkStream`].
pub struct RusbPipe {
    handle: DeviceHandle<Context>,
    ep_in: u8,
    ep_out: u8,
    in_packet: usize,
    out_packet: usize,
}

impl BulkPipe for RusbPipe {
    fn out_packet_size(&self) -> usize {
        self.out_packet
    }

    fn in_packet_size(&self) -> usize {
        self.in_packet
    }

    fn write_bulk(&mut self, data: &[u8], timeout: Duration) -> Result<usize, TransportError> {
        self.handle
            .write_bulk(self.ep_out, data, libusb_timeout(timeout))
            .map_err(|e| transfer_error(&self.handle, e, timeout))
    }

    /// rusb hands back what arrived before a timeout rather than dropping it, so a slow
    /// device loses no bytes to a short wait.
    fn read_bulk(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        self.handle
            .read_bulk(self.ep_in, buf, libusb_timeout(timeout))
            .map_err(|e| transfer_error(&self.handle, e, timeout))
    }
}

/// Every attached device with `function`'s interface, with what we could learn about it.
fn devices(
    function: Function<'_>,
) -> Result<Vec<(Device<Context>, BulkInterface, UsbDevice)>, TransportError> {
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
        let descriptor = match device.device_descriptor() {
            Ok(descriptor) => descriptor,
            Err(e) => {
                tracing::debug!(
                    bus = device.bus_number(),
                    "skipping a device without a descriptor: {e}"
                );
                continue;
            }
        };
        if !function.accepts_ids(descriptor.vendor_id(), descriptor.product_id()) {
            continue;
        }
        let Some(interface) = bulk_interface(&device, function) else {
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
        // Strings need the device opened, which may be denied; they are only informative.
        let (serial, product_string) = match device.open() {
            Ok(handle) => (
                handle.read_serial_number_string_ascii(&descriptor).ok(),
                handle.read_product_string_ascii(&descriptor).ok(),
            ),
            Err(e) => {
                tracing::debug!(
                    "cannot open a {} device to read its strings: {e}",
                    function.name()
                );
                (None, None)
            }
        };
        let info = UsbDevice {
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

/// Finds `function`'s interface and its two bulk endpoints in the active configuration.
fn bulk_interface(device: &Device<Context>, function: Function<'_>) -> Option<BulkInterface> {
    let config = device.active_config_descriptor().ok()?;
    for interface in config.interfaces() {
        for setting in interface.descriptors() {
            if !function.accepts_interface(
                setting.class_code(),
                setting.sub_class_code(),
                setting.protocol_code(),
            ) {
                continue;
            }
            let bulk = |direction| {
                setting
                    .endpoint_descriptors()
                    .find(|ep| {
                        ep.transfer_type() == TransferType::Bulk && ep.direction() == direction
                    })
                    // Bits 11-12 count extra transactions per microframe (never on bulk).
                    .map(|ep| (ep.address(), usize::from(ep.max_packet_size() & 0x7ff)))
            };
            if let (Some((ep_in, in_packet)), Some((ep_out, out_packet))) =
                (bulk(Direction::In), bulk(Direction::Out))
            {
                return Some(BulkInterface {
                    number: setting.interface_number(),
                    alt_setting: setting.setting_number(),
                    ep_in,
                    ep_out,
                    in_packet,
                    out_packet,
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

/// What a failed transfer means. A device that leaves the bus mid-transfer (cable pulled,
/// device reset) makes libusb report a plain I/O or pipe error, not "no device"; asking the
/// device for its configuration tells the two apart, once the kernel has finished removing
/// it.
fn transfer_error(
    handle: &DeviceHandle<Context>,
    e: rusb::Error,
    timeout: Duration,
) -> TransportError {
    if matches!(e, rusb::Error::Io | rusb::Error::Pipe) {
        for _ in 0..DISCONNECT_CHECKS {
            if handle.active_configuration() == Err(rusb::Error::NoDevice) {
                return TransportError::Disconnected;
            }
            std::thread::sleep(DISCONNECT_CHECK_INTERVAL);
        }
    }
    usb_error(e, timeout)
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
