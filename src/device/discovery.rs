//! Finding devices, telling what mode they are in, and opening the right driver.
//!
//! An address is what a user passes to `--device`: `tcp:HOST[:PORT]` for a fastboot device
//! on the network (or flashline's virtual phone), `serial:PATH` for a modem's AT port or a
//! device in Qualcomm EDL on a serial line, `usb:BUS-PORT` for a USB bus path, or a bare
//! USB serial number. A serial port's mode comes from its USB IDs through the quirks file;
//! flashline never writes to a port the quirks file does not name.
//!
//! A device in Qualcomm EDL shows up either as a serial port (Linux's qcserial driver
//! binds it) or, where no driver claims it (Windows and macOS without vendor drivers,
//! Linux without qcserial), as a USB device with the quirks file's EDL IDs: both open the
//! same EDL driver, over a tty or over the raw bulk endpoints. A tty and a raw USB node on
//! the same USB port path are one device. A modem's composition may have several ttys
//! under one VID:PID (DIAG, NMEA, AT, PPP); the quirks file names the AT and DIAG
//! interfaces, and the others are never written to.

use std::ops::ControlFlow;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::bench;
use super::edl::EdlDriver;
use super::fastboot::FastbootDriver;
use super::modem::ModemDriver;
use super::quirks::{PortRole, Quirks, UsbPair};
use super::unisoc::UnisocDriver;
use super::zxic::ZxicDriver;
use super::{DeviceError, Driver, Mode};
use crate::protocol::sahara;
use crate::transport::serial::{self, SerialTransport};
use crate::transport::tcp::TcpTransport;
use crate::transport::usb::{self, UsbTransport};
use crate::transport::Transport;

/// How long to wait for a TCP device to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a port the user says is in EDL may take to send its Sahara HELLO: the boot ROM
/// repeats it until a host answers.
pub const HELLO_WAIT: Duration = Duration::from_secs(10);
/// How often discovery looks again while waiting for a device.
const POLL: Duration = Duration::from_millis(100);
/// How often [`watch`] looks for devices arriving and leaving: quick enough that a
/// technician sees a plug at once, slow enough to cost nothing.
const WATCH_INTERVAL: Duration = Duration::from_millis(250);

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
    /// The USB interface of a tty, where known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<u8>,
    /// Where the USB device is plugged in (`usb:1-1.2`), where known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_path: Option<String>,
}

/// Lists what is attached: fastboot devices on USB, serial ports (classified by their USB
/// IDs), virtual devices on the bench, and each `connect` address that answers. Serial ports
/// the quirks file does not name are talked to only when `probe` is set.
pub fn scan(connect: &[String], quirks: &Quirks, probe: bool) -> Vec<Found> {
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
            interface: None,
            port_path: None,
        })
        .map(cleaned)
        .collect();
    found.extend(ports_and_edl(quirks).into_iter().map(|mut f| {
        if probe && f.mode == Mode::Unknown {
            f.mode = probe_serial(&f.address);
        }
        f
    }));
    for address in connect {
        match open(address, quirks, false, false).and_then(|mut d| d.identify()) {
            Ok(info) => found.push(Found {
                address: address.clone(),
                mode: info.mode,
                vid: None,
                pid: None,
                product: info.product,
                serial: info.serial,
                known_as: None,
                is_virtual: false,
                interface: None,
                port_path: None,
            }),
            Err(e) => tracing::info!("{address}: no device: {e}"),
        }
    }
    found
}

/// A device arriving or leaving, as [`watch`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Change {
    /// Newly attached (or there when watching started).
    Arrived(Found),
    /// Gone.
    Left(Found),
}

/// Reports devices as they arrive and leave (USB fastboot devices, serial ports and the
/// virtual bench; nothing is written to any device), starting with those already present
/// as arrivals, until `on_change` breaks; returns what it broke with.
///
/// Hotplug is a poll of [`scan`] every 250 ms compared with the previous one: it needs no
/// udev or libusb hotplug support, so it behaves the same in containers and minimal systems.
pub fn watch<B>(quirks: &Quirks, mut on_change: impl FnMut(Change) -> ControlFlow<B>) -> B {
    let mut before = Vec::new();
    loop {
        let now = scan(&[], quirks, false);
        for change in changes(&before, &now) {
            if let ControlFlow::Break(b) = on_change(change) {
                return b;
            }
        }
        before = now;
        std::thread::sleep(WATCH_INTERVAL);
    }
}

/// What differs between two scans, departures first. A device is the same device while its
/// address, mode, USB IDs and serial number stay the same; descriptive strings that could
/// not be read in one scan do not make it leave.
pub fn changes(before: &[Found], now: &[Found]) -> Vec<Change> {
    let key = |f: &Found| (f.address.clone(), f.mode, f.vid, f.pid, f.serial.clone());
    let left = before
        .iter()
        .filter(|b| !now.iter().any(|n| key(n) == key(b)))
        .map(|b| Change::Left(b.clone()));
    let arrived = now
        .iter()
        .filter(|n| !before.iter().any(|b| key(b) == key(n)))
        .map(|n| Change::Arrived(n.clone()));
    left.chain(arrived).collect()
}

/// Serial ports of the operating system and of the virtual bench, classified.
fn serial_devices(quirks: &Quirks) -> Vec<Found> {
    let ports = serial::list_ports().into_iter().map(|p| Found {
        mode: classify(p.vid, p.pid, p.interface, quirks),
        known_as: known_as(p.vid, p.pid, quirks),
        address: format!("serial:{}", p.path),
        vid: p.vid,
        pid: p.pid,
        product: p.product,
        serial: p.serial.filter(|s| !s.is_empty()),
        is_virtual: false,
        interface: p.interface,
        port_path: p.port_path,
    });
    let virtual_ports = bench::list(&bench::default_dir())
        .into_iter()
        .map(|e| Found {
            mode: classify(Some(e.vid), Some(e.pid), e.interface, quirks),
            known_as: known_as(Some(e.vid), Some(e.pid), quirks),
            is_virtual: is_pseudo_terminal(&e.address) || bench::is_loopback_tcp(&e.address),
            address: e.address,
            vid: Some(e.vid),
            pid: Some(e.pid),
            product: Some(e.product),
            serial: Some(e.serial).filter(|s| !s.is_empty()),
            interface: e.interface,
            port_path: e.port_path,
        });
    ports.chain(virtual_ports).map(cleaned).collect()
}

/// USB descriptor strings and bench entries are device text: cleaned like a driver cleans
/// what it reads (see [`super::clean`]), so a serial number is the same string however the
/// device was found, and holds nothing that could steer a terminal.
fn cleaned(mut f: Found) -> Found {
    f.product = f.product.as_deref().map(super::clean);
    f.serial = f.serial.as_deref().map(super::clean);
    f
}

/// Serial ports and bench devices (see [`serial_devices`]), then devices in a download mode
/// (EDL, a ZXIC or Unisoc boot ROM) on raw USB that no serial port already stands for: a
/// device in download mode appears as one or the other, and a tty on the same USB port path
/// is the same device.
fn ports_and_edl(quirks: &Quirks) -> Vec<Found> {
    let mut found = serial_devices(quirks);
    for (mode, listed) in [
        (Mode::Edl, usb::list_edl(&usb_ids(quirks, "edl"))),
        // A ZXIC boot ROM has the same vendor-class bulk pair as an EDL device.
        (Mode::Zxic, usb::list_edl(&usb_ids(quirks, "zxic"))),
        (Mode::Unisoc, usb::list_unisoc(&usb_ids(quirks, "unisoc"))),
    ] {
        let raw: Vec<Found> = listed
            .unwrap_or_default()
            .into_iter()
            .map(|d| Found {
                known_as: known_as(Some(d.vid), Some(d.pid), quirks),
                port_path: Some(d.bus_path.clone()),
                address: d.bus_path,
                mode,
                vid: Some(d.vid),
                pid: Some(d.pid),
                product: d.product_string,
                serial: d.serial.filter(|s| !s.is_empty()),
                is_virtual: false,
                interface: None,
            })
            .map(cleaned)
            // A tty for it (qcserial bound) is the one to use: it needs no driver detached.
            .filter(|d| !found.iter().any(|p| same_device(p, d)))
            .collect();
        found.extend(raw);
    }
    found
}

/// The USB IDs the quirks file gives to `mode` (`edl`, `zxic`, `unisoc`): the only devices
/// opened in that mode over raw USB.
fn usb_ids(quirks: &Quirks, mode: &str) -> Vec<(u16, u16)> {
    quirks
        .usb
        .iter()
        .filter(|id| id.mode == mode)
        .map(|id| (id.vid, id.pid))
        .collect()
}

/// Whether a tty and a raw USB node are one device: the same USB port path, or (where the
/// OS gives no path) the same IDs and a USB serial number.
fn same_device(tty: &Found, node: &Found) -> bool {
    match (&tty.port_path, &node.port_path) {
        (Some(a), Some(b)) => a == b,
        _ => {
            node.serial.is_some()
                && (tty.vid, tty.pid, &tty.serial) == (node.vid, node.pid, &node.serial)
        }
    }
}

/// True if `address` names a pseudo-terminal after resolving `..` and links: only a
/// pseudo-terminal can be a virtual device, so a bench file naming a real tty does not make
/// that device virtual.
fn is_pseudo_terminal(address: &str) -> bool {
    address
        .strip_prefix("serial:")
        .is_some_and(|p| crate::platform::is_pseudo_terminal_here(Path::new(p)))
}

/// The mode of a tty with these USB IDs on USB interface `interface`: a modem
/// composition's DIAG port is [`Mode::Diag`], and its ttys that are neither the AT port
/// nor DIAG are unknown (never written to).
fn classify(vid: Option<u16>, pid: Option<u16>, interface: Option<u8>, quirks: &Quirks) -> Mode {
    match vid.zip(pid).and_then(|(v, p)| quirks.usb(v, p)) {
        Some(id) => match (id.mode.as_str(), id.port_role(interface)) {
            ("modem", PortRole::At) => Mode::Modem,
            ("modem", PortRole::Diag) => Mode::Diag,
            ("fastboot", _) => Mode::Fastboot,
            ("edl", _) => Mode::Edl,
            ("zxic", _) => Mode::Zxic,
            ("unisoc", _) => Mode::Unisoc,
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

/// Tells what a serial port the quirks file does not name is, by listening for a Sahara
/// HELLO (a device in EDL announces itself) and then asking `AT`.
///
/// This writes to the port, so it runs only when the user asks (`--probe`).
pub fn probe_serial(address: &str) -> Mode {
    let Ok(mut port) = SerialTransport::open(address) else {
        return Mode::Unknown;
    };
    let mut buf = [0u8; 64];
    if let Ok(n) = port.read(&mut buf, Duration::from_millis(1500)) {
        let hello = sahara::Packet::parse(&buf[..n.min(0x30)]);
        if matches!(hello, Ok(sahara::Packet::Hello { .. })) {
            return Mode::Edl;
        }
    }
    if port.write(b"AT\r", Duration::from_secs(1)).is_err() {
        return Mode::Unknown;
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut seen = Vec::new();
    while Instant::now() < deadline && seen.len() < 256 {
        if let Ok(n) = port.read(&mut buf, Duration::from_millis(200)) {
            seen.extend_from_slice(&buf[..n]);
        }
        if seen.windows(2).any(|w| w == b"OK") {
            return Mode::Modem;
        }
    }
    Mode::Unknown
}

/// Opens `address` as a device in Qualcomm EDL because the user says it is one
/// (`recover --device serial:PATH`), once the port proves it by sending a Sahara HELLO
/// within `wait`.
///
/// A port the quirks file names (or the virtual bench announces) opens as [`open`] would
/// open it. Any other port is only listened to: nothing is written until a HELLO arrives.
/// The boot ROM repeats HELLO until a host answers, so the HELLO heard here is not lost:
/// the Sahara client answers the next one on the same open port.
pub fn open_as_edl(
    address: &str,
    quirks: &Quirks,
    wait: Duration,
) -> Result<Box<dyn Driver>, DeviceError> {
    let Some(path) = address.strip_prefix("serial:") else {
        return open(address, quirks, false, false);
    };
    let listed = lookup_serial(address, quirks);
    if let Some(found) = &listed {
        if found.mode != Mode::Unknown {
            return open(address, quirks, false, false);
        }
    }
    // A listed port exists (Windows' COM ports are no files); an unlisted one must.
    if listed.is_none() && !Path::new(path).exists() {
        return Err(DeviceError::BadAddress(format!(
            "{address}: no such serial port (is the device plugged in?)"
        )));
    }
    let mut port = SerialTransport::open(address)?;
    listen_for_hello(&mut port, wait).map_err(|e| match e {
        DeviceError::Transport(crate::transport::TransportError::Timeout(_)) => {
            DeviceError::BadAddress(format!(
                "{address} sent no Sahara HELLO within {wait:?}: it is not a device in \
                 emergency download mode (or another program has the port open). Nothing \
                 was written to it"
            ))
        }
        other => other,
    })?;
    tracing::info!("{address}: Sahara HELLO heard; opening it as a device in EDL");
    Ok(Box::new(EdlDriver::new(
        port,
        listed.and_then(|f| f.serial),
        false,
    )))
}

/// Waits up to `wait` for a whole Sahara HELLO packet, reading no byte past its end.
fn listen_for_hello(port: &mut SerialTransport, wait: Duration) -> Result<(), DeviceError> {
    // Command 1 (HELLO) and its fixed length 0x30, both little-endian.
    const HEADER: [u8; 8] = [1, 0, 0, 0, 0x30, 0, 0, 0];
    const LEN: usize = 0x30;
    let deadline = Instant::now() + wait;
    let mut seen = Vec::with_capacity(LEN);
    loop {
        // Whatever cannot begin a HELLO is noise from before it.
        while !seen.is_empty() && !HEADER.starts_with(&seen[..seen.len().min(HEADER.len())]) {
            seen.remove(0);
        }
        if seen.len() == LEN {
            if matches!(
                sahara::Packet::parse(&seen),
                Ok(sahara::Packet::Hello { .. })
            ) {
                return Ok(());
            }
            seen.remove(0);
            continue;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(crate::transport::TransportError::Timeout(wait).into());
        }
        let mut buf = [0u8; LEN];
        let want = LEN - seen.len();
        match port.read(&mut buf[..want], left) {
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(crate::transport::TransportError::Timeout(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Opens a driver for `address`. `is_virtual` marks flashline's own virtual devices reached
/// over TCP; serial devices are virtual when the bench says so. A serial port the quirks
/// file does not name is refused unless `probe` allows talking to it to find out.
pub fn open(
    address: &str,
    quirks: &Quirks,
    is_virtual: bool,
    probe: bool,
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
        let named = address.strip_prefix("serial:").map(Path::new);
        let mut found = lookup_serial(address, quirks)
            .or_else(|| {
                // A port the OS does not list (a pseudo-terminal, say) exists but is
                // unknown: usable only when the user allows probing.
                named.is_some_and(Path::exists).then(|| Found {
                    address: address.to_string(),
                    mode: Mode::Unknown,
                    vid: None,
                    pid: None,
                    product: None,
                    serial: None,
                    known_as: None,
                    is_virtual: false,
                    interface: None,
                    port_path: None,
                })
            })
            .ok_or_else(|| {
                DeviceError::BadAddress(format!(
                    "{address}: no such serial port (is the device plugged in?)"
                ))
            })?;
        if probe && found.mode == Mode::Unknown {
            found.mode = probe_serial(address);
        }
        return match found.mode {
            Mode::Modem => {
                let transport = SerialTransport::open(address)?;
                Ok(Box::new(ModemDriver::new(transport, quirks.clone(), found.serial, found.is_virtual)))
            }
            Mode::Edl => {
                let transport = SerialTransport::open(address)?;
                Ok(Box::new(
                    EdlDriver::new(transport, found.serial, found.is_virtual)
                        .with_usb_product(found.product.as_deref()),
                ))
            }
            Mode::Zxic => {
                let transport = SerialTransport::open(address)?;
                Ok(Box::new(ZxicDriver::new(transport, found.serial, found.is_virtual)))
            }
            Mode::Unisoc => {
                let transport = SerialTransport::open(address)?;
                Ok(Box::new(UnisocDriver::new(transport, found.serial, found.is_virtual)))
            }
            Mode::Diag => Err(DeviceError::BadAddress(format!(
                "{address} is a modem's DIAG port; flash the modem through its AT port, or \
                 bring it into emergency download mode and run `flashline recover`"
            ))),
            Mode::Fastboot | Mode::Unknown => Err(DeviceError::BadAddress(format!(
                "{address} is not a device the quirks file names (USB ID {}); flashline does not write \
                 to unknown ports unless you pass --probe",
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
    let zxic_ids = usb_ids(quirks, "zxic");
    let mut zxic: Vec<_> = usb::list_edl(&zxic_ids)?
        .into_iter()
        .filter(|d| d.is(address))
        .collect();
    if zxic.len() == 1 {
        let device = zxic.remove(0);
        let stream = usb::open_edl(&device.bus_path, &zxic_ids)?;
        return Ok(Box::new(ZxicDriver::new(stream, device.serial, false)));
    }
    let unisoc_ids = usb_ids(quirks, "unisoc");
    let mut unisoc: Vec<_> = usb::list_unisoc(&unisoc_ids)?
        .into_iter()
        .filter(|d| d.is(address))
        .collect();
    if unisoc.len() == 1 {
        let device = unisoc.remove(0);
        let stream = usb::open_unisoc(&device.bus_path, &unisoc_ids)?;
        return Ok(Box::new(UnisocDriver::new(stream, device.serial, false)));
    }
    let edl_ids = usb_ids(quirks, "edl");
    let mut edl: Vec<_> = usb::list_edl(&edl_ids)?
        .into_iter()
        .filter(|d| d.is(address))
        .collect();
    match edl.len() {
        0 => {}
        1 => {
            let device = edl.remove(0);
            let stream = usb::open_edl(&device.bus_path, &edl_ids)?;
            return Ok(Box::new(
                EdlDriver::new(stream, device.serial, false)
                    .with_usb_product(device.product_string.as_deref()),
            ));
        }
        n => {
            return Err(DeviceError::BadAddress(format!(
                "{n} devices in EDL have the serial number {address}; name one by its bus path (usb:BUS-PORT)"
            )))
        }
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

/// Addresses of the devices that already show one of the `counterparts` USB IDs: taken
/// before a switch, so a device that was there before is never mistaken for the one
/// coming back.
pub fn present_counterparts(counterparts: &[UsbPair], quirks: &Quirks) -> Vec<String> {
    ports_and_edl(quirks)
        .into_iter()
        .filter(|f| is_counterpart(f, counterparts))
        .map(|f| f.address)
        .collect()
}

fn is_counterpart(f: &Found, counterparts: &[UsbPair]) -> bool {
    f.vid
        .zip(f.pid)
        .is_some_and(|(vid, pid)| counterparts.contains(&UsbPair { vid, pid }))
}

/// Where a device was before it re-enumerated, and what may name it again.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The address it had.
    pub address: String,
    /// Where it is plugged in, if known: the same in every mode.
    pub port_path: Option<String>,
}

impl Origin {
    /// The origin of a device discovery lists at `address`.
    pub fn of(address: &str, quirks: &Quirks) -> Origin {
        Origin {
            address: address.to_string(),
            port_path: ports_and_edl(quirks)
                .into_iter()
                .find(|f| f.address == address)
                .and_then(|f| f.port_path),
        }
    }
}

/// Waits for a device that is re-enumerating: first for `origin` to disappear, then for a
/// new device (not in `before`) with one of the `counterparts` USB IDs in download mode
/// (EDL) or with a DIAG port. The device coming back is the one new such device on the
/// same USB port path, or, where port paths are not known, the only new one: a USB serial
/// number alone never decides (EDL devices rarely have one, and placeholder serials are
/// shared), so several newcomers are refused rather than guessed between.
pub fn wait_for_counterpart(
    origin: &Origin,
    counterparts: &[UsbPair],
    before: &[String],
    timeout: Duration,
    quirks: &Quirks,
) -> Result<Found, DeviceError> {
    let old = origin.address.as_str();
    let deadline = Instant::now() + timeout;
    // The device in download mode may get the very port name the modem had (ttyUSB0 is
    // reused on Linux, as are pseudo-terminal numbers): only the modem itself must leave.
    while ports_and_edl(quirks)
        .iter()
        .any(|f| f.address == old && !is_counterpart(f, counterparts))
    {
        if Instant::now() >= deadline {
            return Err(DeviceError::BadAddress(format!(
                "{old} did not leave for download mode within {timeout:?}: the model may not support the switch command"
            )));
        }
        std::thread::sleep(POLL);
    }
    loop {
        let back: Vec<Found> = ports_and_edl(quirks)
            .into_iter()
            .filter(|f| {
                is_counterpart(f, counterparts)
                    && matches!(f.mode, Mode::Edl | Mode::Diag)
                    && !before.contains(&f.address)
            })
            .collect();
        match pick_returning(origin, back) {
            Ok(Some(found)) => return Ok(found),
            Ok(None) => {}
            Err(addresses) => {
                return Err(DeviceError::BadAddress(format!(
                    "several devices appeared in download mode ({}) and none is on {old}'s USB port: \
                     unplug the others and run `flashline recover`",
                    addresses.join(", ")
                )));
            }
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

/// The newcomer that is the device from `origin`: the one on its port path, else the only
/// one. `Err` lists the candidates when that does not decide.
fn pick_returning(origin: &Origin, mut back: Vec<Found>) -> Result<Option<Found>, Vec<String>> {
    if let Some(path) = &origin.port_path {
        let mut same: Vec<Found> = back
            .iter()
            .filter(|f| f.port_path.as_ref() == Some(path))
            .cloned()
            .collect();
        if same.len() == 1 {
            return Ok(same.pop());
        }
        if same.len() > 1 {
            back = same;
        } else if back.iter().all(|f| f.port_path.is_some()) {
            // Every newcomer is somewhere else: none of them is this device.
            return Ok(None);
        }
    }
    match back.len() {
        0 => Ok(None),
        1 => Ok(back.pop()),
        _ => Err(back.into_iter().map(|f| f.address).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone(address: &str, serial: Option<&str>) -> Found {
        Found {
            address: address.into(),
            mode: Mode::Fastboot,
            vid: Some(0x18d1),
            pid: Some(0x4ee0),
            product: Some("zte-demo-phone".into()),
            serial: serial.map(Into::into),
            known_as: None,
            is_virtual: false,
            interface: None,
            port_path: None,
        }
    }

    fn edl(address: &str, port_path: Option<&str>) -> Found {
        Found {
            mode: Mode::Edl,
            port_path: port_path.map(Into::into),
            ..phone(address, None)
        }
    }

    #[test]
    fn the_returning_device_is_the_one_on_the_same_port() {
        let origin = Origin {
            address: "serial:/dev/ttyUSB2".into(),
            port_path: Some("usb:1-1".into()),
        };
        let here = edl("usb:1-1", Some("usb:1-1"));
        let there = edl("usb:1-2", Some("usb:1-2"));
        assert_eq!(
            pick_returning(&origin, vec![there.clone(), here.clone()]),
            Ok(Some(here.clone()))
        );
        // Another port's newcomer is not this device, even alone.
        assert_eq!(pick_returning(&origin, vec![there.clone()]), Ok(None));
        // Without port paths: the only newcomer, never one of several.
        let unknown = Origin::default();
        let a = edl("serial:/dev/ttyUSB0", None);
        let b = edl("serial:/dev/ttyUSB1", None);
        assert_eq!(
            pick_returning(&unknown, vec![a.clone()]),
            Ok(Some(a.clone()))
        );
        assert_eq!(
            pick_returning(&unknown, vec![a, b]),
            Err(vec![
                "serial:/dev/ttyUSB0".to_string(),
                "serial:/dev/ttyUSB1".to_string()
            ])
        );
    }

    #[test]
    fn a_tty_and_a_raw_node_on_one_port_are_one_device() {
        let tty = Found {
            address: "serial:/dev/ttyUSB0".into(),
            ..edl("", Some("usb:1-1"))
        };
        assert!(same_device(&tty, &edl("usb:1-1", Some("usb:1-1"))));
        assert!(!same_device(&tty, &edl("usb:1-2", Some("usb:1-2"))));
    }

    #[test]
    fn only_the_at_interface_of_a_modem_composition_is_a_modem() {
        let q = Quirks::builtin();
        let at = |iface| classify(Some(0x19d2), Some(0x0016), iface, &q);
        assert_eq!(at(Some(2)), Mode::Modem);
        assert_eq!(at(Some(0)), Mode::Diag);
        assert_eq!(at(Some(1)), Mode::Unknown, "NMEA is never written to");
        assert_eq!(at(None), Mode::Modem);
        assert_eq!(classify(Some(0x05c6), Some(0x9008), Some(0), &q), Mode::Edl);
    }

    /// Noise, a HELLO, then the start of the next one: the listener takes the HELLO and
    /// leaves every byte after it for the Sahara client.
    #[cfg(unix)]
    #[test]
    fn the_hello_listener_skips_noise_and_reads_no_byte_past_the_hello() {
        use std::io::Write;
        let (mut device, host) = serialport::TTYPort::pair().unwrap();
        let path = serialport::SerialPort::name(&host).unwrap();
        let mut port = SerialTransport::open(&path).unwrap();
        let hello = sahara::Packet::Hello {
            version: 2,
            version_compatible: 1,
            max_cmd_packet_len: 0x400,
            mode: 0,
        }
        .encode();
        let mut sent = vec![0x7e, 1, 0, 0, 0, 9];
        sent.extend_from_slice(&hello);
        sent.extend_from_slice(&hello[..8]);
        device.write_all(&sent).unwrap();
        listen_for_hello(&mut port, Duration::from_secs(2)).unwrap();
        let mut rest = [0u8; 16];
        let n = port.read(&mut rest, Duration::from_secs(1)).unwrap();
        assert_eq!(&rest[..n], &hello[..8]);
        // Silence is a bounded wait.
        assert!(matches!(
            listen_for_hello(&mut port, Duration::from_millis(100)),
            Err(DeviceError::Transport(
                crate::transport::TransportError::Timeout(_)
            ))
        ));
    }

    #[test]
    fn changes_report_departures_then_arrivals() {
        let a = vec![phone("usb:1-1", Some("A"))];
        let b = vec![phone("usb:2-1", Some("B"))];
        // Another device on the same port is a departure and an arrival too.
        let c = vec![phone("usb:1-1", Some("C"))];
        assert_eq!(changes(&[], &a), vec![Change::Arrived(a[0].clone())]);
        assert_eq!(changes(&a, &a), vec![]);
        assert_eq!(
            changes(&a, &b),
            vec![Change::Left(a[0].clone()), Change::Arrived(b[0].clone())]
        );
        assert_eq!(
            changes(&a, &c),
            vec![Change::Left(a[0].clone()), Change::Arrived(c[0].clone())]
        );
    }

    #[test]
    fn unreadable_strings_do_not_make_a_device_leave() {
        let a = phone("usb:1-1", Some("A"));
        let busy = Found {
            product: None,
            ..a.clone()
        };
        assert!(changes(&[a], &[busy]).is_empty());
    }

    #[test]
    fn changes_serialize_as_one_flat_json_object() {
        let json = serde_json::to_value(Change::Left(phone("usb:1-1", Some("A")))).unwrap();
        assert_eq!(json["event"], "left");
        assert_eq!(json["address"], "usb:1-1");
        assert_eq!(json["serial"], "A");
    }
}
