//! The virtual Unisoc device on a USB gadget: one interface with a bulk OUT and a bulk IN
//! endpoint under 1782:4d00, as the boot ROM's download mode enumerates (a public dmesg of
//! one: manufacturer "spreadtrum with musb-hdrc", product "Gadget Serial";
//! ilyakurdyukov/spreadtrum_flash issue #6). Hosts send CDC SET_CONTROL_LINE_STATE first
//! (spd_dump: "required for smartphones"); the gadget accepts it. The interface class is
//! vendor-specific here (virtual: the real one is not in the public sources).

use std::io;
use std::path::Path;

use super::{UnisocConfig, UnisocSim};
use crate::sim::download_mode::gadget_line;

impl UnisocSim {
    /// Prepares the partition files in `dir` and plugs the device in as a USB gadget with
    /// the configuration's IDs, product string and serial number (Linux; needs configfs,
    /// libcomposite, usb_f_fs and a USB device controller).
    pub fn on_usb_gadget(dir: &Path, cfg: UnisocConfig) -> io::Result<UnisocSim> {
        let manufacturer = "spreadtrum with musb-hdrc";
        let line = gadget_line("unisoc", &cfg.serial, manufacturer, (0xff, 0, 0), cfg.usb());
        UnisocSim::on_line(dir, cfg, line)
    }
}
