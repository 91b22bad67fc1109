//! Finding devices, telling what mode they are in, and opening the right driver.
//!
//! An address is what a user passes to `--device`: `tcp:HOST[:PORT]` for a fastboot device
//! on the network (or flashline's virtual phone), `serial:PATH` for a modem's AT port or a
//! device in Qualcomm EDL on a serial line, `usb:BUS-PORT` for a USB bus path, or a bare
//! USB serial number. A serial port's mode comes from its USB IDs through the quirks file;
//! flashline never writes to a port the quirks file does not name.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::bench;
use super::edl::EdlDriver;
use super::fastboot::FastbootDriver;
use super::modem::ModemDriver;
use super::quirks::{Quirks, UsbPair};
use super::{DeviceError, Driver, Mode};
use crate::transport::serial::{self, SerialTransport};
use crate::transport::tcp::TcpTransport;
use crate::transport::usb::{self, UsbTransport};

/// How long to wait for a TCP device to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often discovery looks again while waiting for a device.
const POLL: Duration = Duration::from_millis(100);

/// A device seen during discovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Found {
    /// The address to pass to `--device`.
    pub address: String,
    /// The mode it is in.
    pub mode: Mode,
    /// USB vendor ID, where known.
    pub vid: Option<u16>,
    /// USB product ID, where known.
    pub pid: Option<u16>,
    /// Product, if known without talking to it.
    pub product: Option<String>,
    /// Serial number, if known.
    pub serial: Option<String>,
    /// What the quirks file calls it, if it names its USB IDs.
    pub known_as: Option<String>,
    /// True for flashline's own virtual devices.
    pub is_virtual: bool,
}

/// Lists what is attached: fastboot devices on USB, serial ports (classified by their USB
/// IDs, never probed), virtual devices on the bench, and each `connect` address that answers.
pub fn scan(connect: &[String], quirks: &Quirks) -> Vec<Found> {
    let mut found: Vec<Found> = usb::list_fastboot()
        .unwrap_or_default()
        .into_iter()
        .map(|d| Found {
            known_as: quirks.usb(d.vid, d.pid).map(|q| q.name.clone()),
            address: d.bus_path,
            mode: Mode::Fastboot,
            vid: Some(d.vid),
            pid: Some(d.pid),
            product: d.product_string,
            serial: d.serial,
            is_virtual: false,
        })
        .collect();
    found.extend(serial_devices(quirks));
    for address in connect {
        match open(address, quirks, false).and_then(|mut d| d.identify()) {
            Ok(info) => found.push(Found {
                address: address.clone(),
                mode: info.mode,
                vid: None,
                pid: None,
                product: info.product,
                serial: info.serial,
                known_as: None,
                is_virtual: false,
            }),
            Err(e) => tracing::info!("{address}: no device: {e}"),
        }
    }
    found
}

/// Serial ports of the operating system and of the virtual bench, classified.
fn serial_devices(quirks: &Quirks) -> Vec<Found> {
    let ports = serial::list_ports().into_iter().map(|p| Found {
        mode: classify(p.vid, p.pid, quirks),
        known_as: known_as(p.vid, p.pid, quirks),
        address: format!("serial:{}", p.path),
        vid: p.vid,
        pid: p.pid,
        product: p.product,
        serial: p.serial,
        is_virtual: false,
    });
    let virtual_ports = bench::list(&bench::default_dir())
        .into_iter()
        .map(|e| Found {
            mode: classify(Some(e.vid), Some(e.pid), quirks),
            known_as: known_as(Some(e.vid), Some(e.pid), quirks),
            // Only a pseudo-terminal can be a virtual device: a bench file naming a real tty
            // does not make that device virtual.
            is_virtual: e.address.starts_with("serial:/dev/pts/"),
            address: e.address,
            vid: Some(e.vid),
            pid: Some(e.pid),
            product: Some(e.product),
            serial: Some(e.serial),
        });
    ports.chain(virtual_ports).collect()
}

fn classify(vid: Option<u16>, pid: Option<u16>, quirks: &Quirks) -> Mode {
    match vid.zip(pid).and_then(|(v, p)| quirks.usb(v, p)) {
        Some(id) => match id.mode.as_str() {
            "fastboot" => Mode::Fastboot,
            "modem" => Mode::Modem,
            "edl" => Mode::Edl,
            _ => Mode::Unknown,
        },
        None => Mode::Unknown,
    }
}

fn known_as(vid: Option<u16>, pid: Option<u16>, quirks: &Quirks) -> Option<String> {
    vid.zip(pid)
        .and_then(|(v, p)| quirks.usb(v, p))
        .map(|q| q.name.clone())
}

/// What discovery knows about a serial address, if anything.
pub fn lookup_serial(address: &str, quirks: &Quirks) -> Option<Found> {
    serial_devices(quirks)
        .into_iter()
        .find(|f| f.address == address)
}

/// Opens a driver for `address`. `is_virtual` marks flashline's own virtual devices reached
/// over TCP; serial devices are virtual when the bench says so.
pub fn open(
    address: &str,
    quirks: &Quirks,
    is_virtual: bool,
) -> Result<Box<dyn Driver>, DeviceError> {
    if let Some(hostport) = address.strip_prefix("tcp:") {
        let transport = TcpTransport::connect(hostport, CONNECT_TIMEOUT)?;
        return Ok(Box::new(FastbootDriver::new(
            transport,
            quirks.clone(),
            is_virtual,
        )));
    }
    if address.starts_with("serial:") {
        let found = lookup_serial(address, quirks).ok_or_else(|| {
            DeviceError::BadAddress(format!(
                "{address}: no such serial port (is the device plugged in?)"
            ))
        })?;
        return match found.mode {
            Mode::Modem => {
                let transport = SerialTransport::open(address)?;
                Ok(Box::new(ModemDriver::new(transport, quirks.clone(), found.serial, found.is_virtual)))
            }
            Mode::Edl => {
                let transport = SerialTransport::open(address)?;
                Ok(Box::new(EdlDriver::new(transport, found.serial, found.is_virtual)))
            }
            Mode::Fastboot | Mode::Unknown => Err(DeviceError::BadAddress(format!(
                "{address} is not a device the quirks file names (USB ID {}); flashline does not write to unknown ports",
                usb_id(&found)
            ))),
        };
    }
    let selector = address.strip_prefix("usb:").unwrap_or(address);
    if selector.is_empty() {
        return Err(DeviceError::BadAddress(format!(
            "{address:?} is not a device address: use tcp:HOST:PORT, serial:PATH, usb:BUS-PORT or a serial number"
        )));
    }
    let transport = UsbTransport::open(address)?;
    Ok(Box::new(FastbootDriver::new(
        transport,
        quirks.clone(),
        false,
    )))
}

fn usb_id(found: &Found) -> String {
    match (found.vid, found.pid) {
        (Some(v), Some(p)) => format!("{v:04x}:{p:04x}"),
        _ => "unknown".into(),
    }
}

/// Waits for a device that is re-enumerating: first for `old` to disappear, then for a
/// device with one of the `counterparts` USB IDs (and the same USB serial, when known).
pub fn wait_for_counterpart(
    old: &str,
    counterparts: &[UsbPair],
    serial: Option<&str>,
    timeout: Duration,
    quirks: &Quirks,
) -> Result<Found, DeviceError> {
    let deadline = Instant::now() + timeout;
    let is_counterpart = |f: &Found| {
        f.vid
            .zip(f.pid)
            .is_some_and(|(vid, pid)| counterparts.contains(&UsbPair { vid, pid }))
    };
    // The device in download mode may get the very port name the modem had (ttyUSB0 is
    // reused on Linux, as are pseudo-terminal numbers): only the modem itself must leave.
    while serial_devices(quirks)
        .iter()
        .any(|f| f.address == old && !is_counterpart(f))
    {
        if Instant::now() >= deadline {
            return Err(DeviceError::BadAddress(format!(
                "{old} did not leave for download mode within {timeout:?}: the model may not support the switch command"
            )));
        }
        std::thread::sleep(POLL);
    }
    loop {
        let back = serial_devices(quirks)
            .into_iter()
            .find(|f| is_counterpart(f) && (serial.is_none() || f.serial.as_deref() == serial));
        if let Some(found) = back {
            return Ok(found);
        }
        if Instant::now() >= deadline {
            let ids: Vec<String> = counterparts
                .iter()
                .map(|c| format!("{:04x}:{:04x}", c.vid, c.pid))
                .collect();
            return Err(DeviceError::BadAddress(format!(
                "the device left {old} but did not come back in download mode ({}) within {timeout:?}: \
                 unplug it, hold its reset button while plugging it back in, and run `flashline recover`",
                ids.join(" or ")
            )));
        }
        std::thread::sleep(POLL);
    }
}
