//! The virtual phone as a USB device: the same bootloader behind a fastboot gadget.
//!
//! The gadget carries Google's fastboot IDs and interface (class FF, subclass 42,
//! protocol 03) and the phone's serial number, so `fastboot devices`, libusb discovery
//! and `flashline devices` find it as they find a real phone.
//!
//! A phone with dynamic partitions re-enumerates when it switches between its bootloader
//! and fastbootd, keeping its serial. AOSP's recovery (bootable/recovery etc/init.rc,
//! `sys.usb.config=fastboot`) gives fastbootd the same IDs, 18D1:4EE0, and
//! `ro.product.model` as product string, which on real phones differs from the
//! bootloader's; the phone shows that by naming itself [`fastbootd_product`] there
//! (provenance of the IDs: `public reports`; of the string: `virtual`).

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::bootloader::{Bootloader, Mode};
use super::link::Wire;
use super::PhoneConfig;
use crate::sim::gadget::{Function, Gadget, GadgetSpec};

/// Google's vendor ID and the product ID its bootloaders use in fastboot mode.
pub const USB_VID: u16 = 0x18d1;
/// See [`USB_VID`].
pub const USB_PID: u16 = 0x4ee0;
/// How long the phone stays on the bus after a session ends with it leaving (e.g. after
/// answering `reboot`), as a bootloader finishes
/// up before it resets. Leaving at once can make the host's libusb lose the OKAY it has
/// already received (it handles the disconnect before reaping the finished transfer).
const REBOOT_DELAY: Duration = Duration::from_millis(100);
/// How long the phone stays off the bus when it reboots, so the host sees it leave.
const REBOOT_OFF_BUS: Duration = Duration::from_millis(300);
/// Pause after a session fails (host gone, gadget unbound) before waiting for the next one.
const RETRY: Duration = Duration::from_millis(100);

/// A virtual phone on a USB gadget.
pub struct UsbPhone {
    gadget: Gadget,
    bootloader: Bootloader,
}

impl UsbPhone {
    /// Prepares the partition files in `dir` and plugs the phone in: the gadget
    /// `flashline-phone-<serial>` is bound to the first free USB device controller.
    pub fn create(dir: &Path, cfg: PhoneConfig) -> io::Result<Self> {
        let storage = cfg.open_storage(dir)?;
        let spec = GadgetSpec {
            name: gadget_name(&cfg.serial),
            vid: USB_VID,
            pid: USB_PID,
            manufacturer: "flashline".into(),
            product: cfg.product.clone(),
            serial: cfg.serial.clone(),
            function: Function::Bulk {
                class: 0xff,
                subclass: 0x42,
                protocol: 0x03,
            },
        };
        let gadget = Gadget::create(&spec)?;
        // Commands and fired faults show in the debug log; nobody in-process reads them.
        let unread = || Arc::new(Mutex::new(Vec::new()));
        let bootloader = Bootloader::new(cfg, storage, unread(), unread());
        Ok(UsbPhone { gadget, bootloader })
    }

    /// The gadget, e.g. to unplug and replug it.
    pub fn gadget(&self) -> &Gadget {
        &self.gadget
    }

    /// Serves the host on the calling thread for as long as the process lives. A session
    /// ends when the host deconfigures the device or the gadget is unbound (then the phone
    /// waits for the host to come back), or the way a device leaves the bus: a reboot
    /// command, or an injected disconnect, power loss or re-enumeration (see
    /// [`PhoneConfig::faults`]). Then the phone unplugs itself, stays away while it
    /// "boots", and plugs in again, as a real one re-enumerates. Returns only when the
    /// gadget itself fails.
    pub fn serve_forever(mut self) -> io::Result<()> {
        loop {
            let (out, to_host) = self.gadget.bulk_endpoints()?;
            match self.bootloader.serve(Wire::Usb(out, to_host)) {
                Ok(()) => {
                    std::thread::sleep(REBOOT_DELAY);
                    self.gadget.unbind()?;
                    std::thread::sleep(REBOOT_OFF_BUS);
                    while self.bootloader.is_away() {
                        std::thread::sleep(RETRY);
                    }
                    let product = match self.bootloader.mode {
                        Mode::Bootloader => self.bootloader.cfg.product.clone(),
                        Mode::Fastbootd => fastbootd_product(&self.bootloader.cfg.product),
                    };
                    self.gadget.set_product(&product)?;
                    self.gadget.bind()?;
                }
                Err(e) => {
                    tracing::info!("phone sim: USB session ended: {e}");
                    std::thread::sleep(RETRY);
                }
            }
        }
    }
}

/// The USB product string of the phone in fastbootd.
pub fn fastbootd_product(product: &str) -> String {
    format!("{product} (fastbootd)")
}

/// A gadget name from the serial: gadget names allow fewer characters than serials.
fn gadget_name(serial: &str) -> String {
    let safe: String = serial
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(16)
        .collect();
    format!("flashline-phone-{safe}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gadget_names_are_safe_directory_names() {
        assert_eq!(gadget_name("FLSIM0001"), "flashline-phone-FLSIM0001");
        assert_eq!(gadget_name("a/b c"), "flashline-phone-a_b_c");
        assert!(gadget_name(&"x".repeat(64)).len() <= 32);
    }
}
