//! What sysfs shows of the USB bus: which devices are there, in which mode, bound to which
//! kernel drivers.

use std::path::{Path, PathBuf};

use super::{read_line, Code, Finding, Severity, SystemView};
use crate::device::quirks::{Quirks, UsbId};

/// Vendors whose devices flashline knows in some mode: another product ID of theirs is
/// likely the same device in a mode flashline does not know (a ZTE modem in its CD-ROM
/// mode, say).
fn vendor_known(quirks: &Quirks, vid: u16) -> bool {
    quirks.usb.iter().any(|u| u.vid == vid)
}

/// One USB device as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbDevice {
    /// The kernel's name for it: its port path (`1-2.3`).
    pub name: String,
    /// Vendor ID.
    pub vid: u16,
    /// Product ID.
    pub pid: u16,
    /// Bus number.
    pub bus: Option<u16>,
    /// Device number on the bus.
    pub devnum: Option<u16>,
    /// `MAJOR:MINOR` of its device node.
    pub dev: Option<String>,
    /// Its interfaces.
    pub interfaces: Vec<Interface>,
}

/// One interface of a USB device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// The kernel's name for it (`1-2.3:1.0`).
    pub name: String,
    /// Its interface number.
    pub number: Option<u8>,
    /// The kernel driver bound to it, if any.
    pub driver: Option<String>,
    /// The ttys it provides (`ttyUSB0`).
    pub ttys: Vec<String>,
}

impl UsbDevice {
    /// `vvvv:pppp`.
    pub fn id(&self) -> String {
        format!("{:04x}:{:04x}", self.vid, self.pid)
    }

    /// Its raw USB node (`/dev/bus/usb/BBB/DDD`) under `dev`.
    pub fn node(&self, dev: &Path) -> Option<PathBuf> {
        Some(dev.join(format!("bus/usb/{:03}/{:03}", self.bus?, self.devnum?)))
    }
}

/// What a scan of sysfs found.
pub struct Scan {
    /// Whether the system has a USB bus in sysfs at all.
    pub has_usb: bool,
    /// The devices, sorted by name.
    pub devices: Vec<UsbDevice>,
}

/// Reads `sys/bus/usb/devices`.
pub fn scan(view: &SystemView) -> Scan {
    let root = view.sys.join("bus/usb/devices");
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Scan {
            has_usb: false,
            devices: Vec::new(),
        };
    };
    let names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    let mut devices: Vec<UsbDevice> = names
        .iter()
        .filter(|n| !n.contains(':'))
        .filter_map(|name| {
            let dir = root.join(name);
            let hex = |f: &str| u16::from_str_radix(&read_line(&dir.join(f))?, 16).ok();
            let dec = |f: &str| read_line(&dir.join(f))?.parse::<u16>().ok();
            let mut interfaces: Vec<Interface> = names
                .iter()
                .filter(|n| {
                    n.strip_prefix(name.as_str())
                        .is_some_and(|r| r.starts_with(':'))
                })
                .map(|n| interface(&root.join(n), n))
                .collect();
            interfaces.sort_by(|a, b| a.name.cmp(&b.name));
            Some(UsbDevice {
                name: name.clone(),
                vid: hex("idVendor")?,
                pid: hex("idProduct")?,
                bus: dec("busnum"),
                devnum: dec("devnum"),
                dev: read_line(&dir.join("dev")),
                interfaces,
            })
        })
        .collect();
    devices.sort_by(|a, b| a.name.cmp(&b.name));
    Scan {
        has_usb: true,
        devices,
    }
}

fn interface(dir: &Path, name: &str) -> Interface {
    let driver = std::fs::read_link(dir.join("driver"))
        .ok()
        .and_then(|l| l.file_name()?.to_str().map(str::to_string));
    // usb-serial puts `ttyUSB0` right in the interface; cdc-acm puts it in `tty/ttyACM0`.
    let mut ttys = Vec::new();
    for d in [dir.to_path_buf(), dir.join("tty")] {
        if let Ok(entries) = std::fs::read_dir(d) {
            ttys.extend(
                entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.starts_with("tty") && n.len() > 3),
            );
        }
    }
    ttys.sort();
    Interface {
        name: name.to_string(),
        number: read_line(&dir.join("bInterfaceNumber"))
            .and_then(|n| u8::from_str_radix(&n, 16).ok()),
        driver,
        ttys,
    }
}

/// Whether there is a USB bus, and a device flashline knows on it.
pub fn presence(
    view: &SystemView,
    scan: &Scan,
    quirks: &Quirks,
    known: &[(&UsbDevice, &UsbId)],
) -> Vec<Finding> {
    if !scan.has_usb {
        return vec![Finding {
            code: Code::NoUsb,
            severity: Severity::Info,
            what: format!(
                "this system shows no USB bus ({} cannot be read): it is a container or a \
                 virtual machine without USB, so no device can be seen here",
                view.sys.join("bus/usb/devices").display()
            ),
            fix: "run flashline on the computer the device is plugged into, or pass USB through \
                  to this machine (a VM's USB passthrough; a container's `--device /dev/bus/usb`)"
                .into(),
        }];
    }
    // A known vendor's device in an unknown mode gets its own finding (see [`drivers`]).
    let unknown_mode = scan.devices.iter().any(|d| vendor_known(quirks, d.vid));
    if known.is_empty() && !unknown_mode {
        return vec![Finding {
            code: Code::NoDevice,
            severity: Severity::Info,
            what: "no USB device flashline knows is connected".into(),
            fix: "plug the device in (switched on, or in its download mode), with a data cable \
                  straight into the computer; then run `flashline devices`"
                .into(),
        }];
    }
    Vec::new()
}

/// Devices bound to drivers flashline cannot use them through, or in modes it does not know.
pub fn drivers(scan: &Scan, quirks: &Quirks) -> Vec<Finding> {
    let mut findings = Vec::new();
    for d in &scan.devices {
        let Some(id) = quirks.usb(d.vid, d.pid) else {
            if vendor_known(quirks, d.vid) {
                findings.push(unknown_mode(d));
            }
            continue;
        };
        if id.mode == "edl" {
            findings.extend(edl_drivers(d, id));
        } else if id.mode == "modem" {
            findings.extend(modem_drivers(d, id));
        }
    }
    findings
}

fn unknown_mode(d: &UsbDevice) -> Finding {
    let storage = d
        .interfaces
        .iter()
        .any(|i| i.driver.as_deref() == Some("usb-storage"));
    let (what, fix) = if storage {
        (
            format!(
                "{} at USB port {} is a known vendor's device showing itself as a USB disk \
                 (usb-storage): many modems start in this mode and must be switched to their \
                 modem mode first",
                d.id(),
                d.name
            ),
            "install usb_modeswitch, which switches such devices as they arrive \
             (Debian/Ubuntu: `sudo apt install usb-modeswitch usb-modeswitch-data`), then \
             unplug and replug the device"
                .to_string(),
        )
    } else {
        (
            format!(
                "{} at USB port {} is from a vendor flashline knows, but in a mode (USB ID) the \
                 quirks file does not list",
                d.id(),
                d.name
            ),
            "put the device in the mode the task needs (fastboot, or its download mode); if \
             this ID is such a mode, report it with `lsusb -v -d ID` output so it can be added"
                .to_string(),
        )
    };
    Finding {
        code: Code::UnknownMode,
        severity: Severity::Warning,
        what,
        fix,
    }
}

/// EDL works over raw USB (no driver, or `usbfs` while flashline has it open) and over the
/// tty that Linux's `qcserial` makes of it; any other driver keeps both from working.
fn edl_drivers(d: &UsbDevice, id: &UsbId) -> Vec<Finding> {
    let mut findings = Vec::new();
    for i in &d.interfaces {
        match i.driver.as_deref() {
            None | Some("usbfs") => {}
            Some("qcserial") => findings.push(Finding {
                code: Code::EdlAsSerial,
                severity: Severity::Info,
                what: format!(
                    "{} ({}) at USB port {} is bound to qcserial, so it shows up as the serial \
                     port {} rather than as raw USB; flashline speaks EDL over either",
                    d.id(),
                    id.name,
                    d.name,
                    tty_list(i)
                ),
                fix: format!(
                    "nothing is needed: use that port (`flashline recover --device serial:/dev/{}`); \
                     for raw USB instead, unbind it: echo -n {} | sudo tee /sys/bus/usb/drivers/qcserial/unbind",
                    i.ttys.first().map(String::as_str).unwrap_or("ttyUSB0"),
                    i.name
                ),
            }),
            Some(driver) => findings.push(Finding {
                code: Code::UnexpectedDriver,
                severity: Severity::Problem,
                what: format!(
                    "{} ({}) at USB port {} is bound to the {driver} driver: EDL needs raw USB \
                     or qcserial's serial port",
                    d.id(),
                    id.name,
                    d.name
                ),
                fix: format!(
                    "unbind it: echo -n {} | sudo tee /sys/bus/usb/drivers/{driver}/unbind",
                    i.name
                ),
            }),
        }
    }
    findings
}

/// A modem's AT and DIAG ports are ttys: an interface of theirs with no driver has none.
fn modem_drivers(d: &UsbDevice, id: &UsbId) -> Vec<Finding> {
    let ports = [id.at_interface, id.diag_interface];
    d.interfaces
        .iter()
        .filter(|i| i.number.is_some() && ports.contains(&i.number) && i.driver.is_none())
        .map(|i| Finding {
            code: Code::SerialDriverMissing,
            severity: Severity::Problem,
            what: format!(
                "{} ({}) at USB port {}: interface {} (its {} port) has no driver, so it has no \
                 serial port",
                d.id(),
                id.name,
                d.name,
                i.name,
                if i.number == id.at_interface {
                    "AT"
                } else {
                    "DIAG"
                }
            ),
            fix: format!(
                "load the serial driver and give it this ID: sudo modprobe option && \
                 echo {:04x} {:04x} | sudo tee /sys/bus/usb-serial/drivers/option1/new_id",
                d.vid, d.pid
            ),
        })
        .collect()
}

fn tty_list(i: &Interface) -> String {
    if i.ttys.is_empty() {
        "(no tty yet)".to_string()
    } else {
        i.ttys
            .iter()
            .map(|t| format!("/dev/{t}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
