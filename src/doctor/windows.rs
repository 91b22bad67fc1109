//! Windows: which driver each mode needs. Nothing is probed there (no sysfs, no device
//! nodes to read); the doctor explains the choice the technician makes in Device Manager.

use super::{Code, Finding, Severity};

/// The WinUSB-or-COM-port choice, explained.
pub fn driver_choice() -> Finding {
    Finding {
        code: Code::WindowsDriver,
        severity: Severity::Info,
        what: "on Windows a device is seen only through the driver bound to it: fastboot needs \
               WinUSB (the Google USB Driver, or WinUSB installed with Zadig); a device in \
               Qualcomm EDL (05c6:9008) works either with WinUSB (raw USB) or with the vendor's \
               QDLoader driver (a COM port); a modem's AT and DIAG ports need the vendor's COM \
               port driver, and WinUSB on them hides those ports"
            .into(),
        fix:
            "open Device Manager, find the device (with its USB ID under Details > Hardware Ids), \
              and check the driver it uses against the list above; to change it, use Update \
              driver, or Zadig for WinUSB; for an EDL device on a COM port, run `flashline \
              recover --device serial:COMn`"
                .into(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_explanation_names_each_driver_and_where_to_change_it() {
        let f = super::driver_choice();
        for word in ["WinUSB", "QDLoader", "COM port", "05c6:9008", "Zadig"] {
            assert!(f.what.contains(word), "{word} missing from {}", f.what);
        }
        assert!(f.fix.contains("Device Manager"));
    }
}
