//! The virtual modem on a USB gadget: a CDC ACM function under the modem's USB identity,
//! AT served on the gadget side's tty (`/dev/ttyGS<N>`) while the host sees
//! `/dev/ttyACM<N>`. On its download command the modem re-enumerates as a real one does:
//! the ACM gadget is removed and the EDL gadget appears with the download-mode IDs and the
//! same serial number, keeping its LUNs in the same folder.

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{ModemConfig, ModemSim, RunningModem};
use crate::sim::bench::ZTE_EDL;
use crate::sim::edl::{create_luns, EdlConfig, EdlSim, RunningEdl};
use crate::sim::gadget::{gadget_name, Function, Gadget, GadgetSpec};

/// How often and how long to look for the gadget tty's device node.
const TTY_WAIT_STEP: Duration = Duration::from_millis(50);
const TTY_WAIT_STEPS: u32 = 40;

/// A modem on the USB bus and, once switched, its EDL side.
pub struct UsbModem {
    modem: RunningModem,
    /// Holds the EDL side once the modem switched, so it serves as long as this lives.
    _edl: Arc<Mutex<Option<RunningEdl>>>,
}

impl UsbModem {
    /// Plugs the modem in as an ACM gadget (Linux; needs configfs, libcomposite, usb_f_acm
    /// and a USB device controller) and serves AT on it. `edl` describes the device it
    /// becomes in download mode; its serial and USB IDs are set here to match the modem's.
    pub fn start(modem: ModemConfig, mut edl: EdlConfig, dir: &Path) -> io::Result<UsbModem> {
        edl.serial = modem.usb_serial.clone();
        (edl.vid, edl.pid) = ZTE_EDL;
        // The LUNs exist (with their identity data) before any switch, as on a real modem.
        create_luns(dir, &edl)?;
        let spec = GadgetSpec {
            name: gadget_name("modem", &modem.usb_serial),
            vid: modem.vid,
            pid: modem.pid,
            manufacturer: modem.manufacturer.clone(),
            product: modem.model.clone(),
            serial: modem.usb_serial.clone(),
            function: Function::Acm,
        };
        let gadget = Gadget::create(&spec)?;
        let tty = gadget.tty_path()?.to_string_lossy().into_owned();
        // devtmpfs adds the gadget side's tty node shortly after the function exists.
        for _ in 0..TTY_WAIT_STEPS {
            if Path::new(&tty).exists() {
                break;
            }
            std::thread::sleep(TTY_WAIT_STEP);
        }
        let slot: Arc<Mutex<Option<RunningEdl>>> = Arc::default();
        let (edl_dir, edl_slot) = (dir.to_path_buf(), Arc::clone(&slot));
        let on_switch = Box::new(move || {
            // Off the bus first, then back with the download-mode identity.
            drop(gadget);
            match EdlSim::on_usb_gadget(&edl_dir, edl).and_then(EdlSim::spawn) {
                Ok(running) => {
                    if let Ok(mut s) = edl_slot.lock() {
                        *s = Some(running);
                    }
                }
                Err(e) => tracing::error!("the modem could not come back in EDL: {e}"),
            }
        });
        let modem = ModemSim::start_on_tty(modem, &tty, on_switch)?;
        Ok(UsbModem { modem, _edl: slot })
    }

    /// The gadget side's tty the modem answers on.
    pub fn device_tty(&self) -> &str {
        self.modem.tty_path()
    }
}
