//! The virtual ZXIC device on a USB gadget: 19D2:0256 with one FunctionFS interface and a
//! bulk OUT / bulk IN pair (0x01/0x81 on real devices), the line the EDL simulator's gadget
//! already provides. The real boot ROM's interface class is not in the public sources
//! (zx297520v3-loader claims interface 0 whatever it is); the gadget uses the vendor class
//! FF/FF/FF, which flashline's raw bulk transport opens.

use std::io;
use std::path::Path;

use super::{ZxicConfig, ZxicSim};
use crate::sim::download_mode::gadget_line;

impl ZxicSim {
    /// Prepares the flash in `dir` and plugs the device in as a USB gadget with the
    /// configuration's IDs, product string and serial number (Linux; needs configfs,
    /// libcomposite, usb_f_fs and a USB device controller). Hosts find it on the bus, so
    /// nothing is announced on the bench.
    pub fn on_usb_gadget(dir: &Path, cfg: ZxicConfig) -> io::Result<ZxicSim> {
        let line = gadget_line("zxic", &cfg.serial, "ZXIC", (0xff, 0xff, 0xff), cfg.usb());
        ZxicSim::on_line(dir, cfg, line)
    }
}
