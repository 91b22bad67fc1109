//! The virtual modem on a USB gadget: a CDC ACM function under the modem's USB identity,
//! AT served on the gadget side's tty (`/dev/ttyGS<N>`) while the host sees
//! `/dev/ttyACM<N>`. On its download command the modem re-enumerates as a real one does:
//! the ACM gadget is removed and, by the modem's route, either a DIAG port appears first
//! (an ACM gadget with the factory composition's IDs, 19d2:0016, whose first interface is
//! the DIAG port) or the EDL gadget appears at once with the download-mode IDs, keeping
//! its LUNs in the same folder.

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{DiagLine, ModemConfig, ModemSim, RunningModem, ZTE_FACTORY};
use crate::sim::bench::ZTE_EDL;
use crate::sim::edl::{create_luns, EdlConfig, EdlSim, RunningEdl};
use crate::sim::gadget::{gadget_name, Function, Gadget, GadgetSpec};

/// How often and how long to look for the gadget tty's device node.
const TTY_WAIT_STEP: Duration = Duration::from_millis(50);
const TTY_WAIT_STEPS: u32 = 40;

/// devtmpfs adds the gadget side's tty node shortly after the function exists.
fn wait_for_node(tty: &str) {
    for _ in 0..TTY_WAIT_STEPS {
        if Path::new(tty).exists() {
            return;
        }
        std::thread::sleep(TTY_WAIT_STEP);
    }
}

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
        wait_for_node(&tty);
        // One device controller: whichever composition comes next unplugs this one first.
        let at_gadget = Arc::new(Mutex::new(Some(gadget)));
        let unplug = |slot: &Arc<Mutex<Option<Gadget>>>| {
            if let Ok(mut g) = slot.lock() {
                drop(g.take());
            }
        };
        let diag_slot = Arc::clone(&at_gadget);
        let diag_spec = GadgetSpec {
            name: gadget_name("diag", &modem.usb_serial),
            vid: ZTE_FACTORY.0,
            pid: ZTE_FACTORY.1,
            function: Function::Acm,
            ..spec
        };
        let open_diag = Box::new(move || {
            unplug(&diag_slot);
            let gadget = Gadget::create(&diag_spec)?;
            let tty = gadget.tty_path()?.to_string_lossy().into_owned();
            wait_for_node(&tty);
            let port = serialport::new(&tty, 115_200).open_native().map_err(|e| {
                io::Error::new(io::Error::from(e.clone()).kind(), format!("{tty}: {e}"))
            })?;
            Ok(DiagLine {
                port,
                keep: Box::new(gadget),
            })
        });
        let slot: Arc<Mutex<Option<RunningEdl>>> = Arc::default();
        let (edl_dir, edl_slot) = (dir.to_path_buf(), Arc::clone(&slot));
        let on_switch = Box::new(move || {
            // Off the bus first (the AT composition, or the DIAG one, which its port's
            // owner has dropped by now), then back with the download-mode identity.
            unplug(&at_gadget);
            match EdlSim::on_usb_gadget(&edl_dir, edl).and_then(EdlSim::spawn) {
                Ok(running) => {
                    if let Ok(mut s) = edl_slot.lock() {
                        *s = Some(running);
                    }
                }
                Err(e) => tracing::error!("the modem could not come back in EDL: {e}"),
            }
        });
        let modem = ModemSim::start_on_tty(modem, &tty, open_diag, on_switch)?;
        Ok(UsbModem { modem, _edl: slot })
    }

    /// The gadget side's tty the modem answers on.
    pub fn device_tty(&self) -> &str {
        self.modem.tty_path()
    }
}
