//! The virtual Unisoc device on a USB gadget: one interface with a bulk OUT and a bulk IN
//! endpoint under 1782:4d00, as the boot ROM's download mode enumerates (a public dmesg of
//! one: manufacturer "spreadtrum with musb-hdrc", product "Gadget Serial";
//! ilyakurdyukov/spreadtrum_flash issue #6). Hosts send CDC SET_CONTROL_LINE_STATE first
//! (spd_dump: "required for smartphones"); the gadget accepts it. The interface class is
//! vendor-specific here (virtual: the real one is not in the public sources).

use std::io;
use std::path::Path;

use crate::sim::edl::usb::bulk_line;
use crate::sim::gadget::{gadget_name, Function, GadgetSpec};

use super::{UnisocConfig, UnisocSim};

impl UnisocSim {
    /// Prepares the partition files in `dir` and plugs the device in as a USB gadget with
    /// the configuration's IDs, product string and serial number (Linux; needs configfs,
    /// libcomposite, usb_f_fs and a USB device controller).
    pub fn on_usb_gadget(dir: &Path, cfg: UnisocConfig) -> io::Result<UnisocSim> {
        let spec = GadgetSpec {
            name: gadget_name("unisoc", &cfg.serial),
            vid: cfg.vid,
            pid: cfg.pid,
            manufacturer: "spreadtrum with musb-hdrc".into(),
            product: cfg.product.clone(),
            serial: cfg.serial.clone(),
            function: Function::Bulk {
                class: 0xff,
                subclass: 0,
                protocol: 0,
            },
        };
        UnisocSim::on_line(dir, cfg, move |stop| bulk_line(&spec, stop))
    }
}
