//! ModemManager probes every new serial port it may own: a device in a download mode (EDL,
//! a DIAG composition) that it pokes leaves the mode or stops answering. flashline's rules
//! set `ID_MM_DEVICE_IGNORE` on those IDs; this checks that the device really carries it.

use super::{read_line, udev, Code, Finding, Severity, SystemView, UsbDevice, REAPPLY_RULES};
use crate::device::quirks::UsbId;

/// Whether a process named `ModemManager` runs (`/proc/N/comm`).
fn running(view: &SystemView) -> bool {
    std::fs::read_dir(&view.proc).is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
                && read_line(&e.path().join("comm")).as_deref() == Some("ModemManager")
        })
    })
}

/// Whether udev marked the device to be ignored. Its database entry
/// (`/run/udev/data/cMAJOR:MINOR`, lines `E:KEY=VALUE`) is the truth; without one, the
/// installed rules are the best guess.
fn ignored(view: &SystemView, d: &UsbDevice) -> bool {
    let db = d
        .dev
        .as_ref()
        .and_then(|dev| std::fs::read_to_string(view.run.join(format!("udev/data/c{dev}"))).ok());
    match db {
        Some(text) => text.lines().any(|l| l.trim() == "E:ID_MM_DEVICE_IGNORE=1"),
        None => udev::installed(view).is_some_and(|r| udev::rules_ignore(&r.text, d.vid, d.pid)),
    }
}

/// ModemManager running while a download-mode device is not ignored.
pub fn check(view: &SystemView, known: &[(&UsbDevice, &UsbId)]) -> Vec<Finding> {
    let exposed: Vec<String> = known
        .iter()
        .filter(|(_, id)| matches!(id.mode.as_str(), "edl" | "zxic") || id.diag_interface.is_some())
        .filter(|(d, _)| !ignored(view, d))
        .map(|(d, id)| format!("{} ({}) at USB port {}", d.id(), id.name, d.name))
        .collect();
    if exposed.is_empty() || !running(view) {
        return Vec::new();
    }
    vec![Finding {
        code: Code::ModemManager,
        severity: Severity::Problem,
        what: format!(
            "ModemManager is running and not told to keep off {}: it probes the port and can \
             knock the device out of its download mode",
            exposed.join(", ")
        ),
        fix: format!(
            "with flashline's rules installed, {REAPPLY_RULES}, then unplug and replug the \
             device; or, for this session, sudo systemctl stop ModemManager"
        ),
    }]
}
