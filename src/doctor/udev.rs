//! flashline's udev rules: installed, current, and applied to the devices connected.
//!
//! Whether udev has *reloaded* the rules cannot be read anywhere: udev keeps no record of
//! it (and recent systemd-udevd rereads changed rules files by itself at the next event).
//! What matters, and what can be told, is whether the rules were applied to the devices
//! connected now: a device node's modification time is when udev created it (ACL changes
//! do not touch it), so a node older than the rules file was set up by the rules before.

use std::path::PathBuf;
use std::time::SystemTime;

use super::{Code, Finding, Severity, SystemView, UsbDevice, INSTALL_RULES, REAPPLY_RULES};
use crate::device::quirks::{Quirks, UsbId};

/// The name flashline's rules are installed under.
const RULES_FILE: &str = "70-flashline.rules";

/// The rules file udev uses: one in `/etc` overrides one of the same name in `/lib`.
pub struct Installed {
    /// Where it is.
    pub path: PathBuf,
    /// What it says.
    pub text: String,
    /// When it was last written.
    pub modified: Option<SystemTime>,
}

/// The installed rules file, if any.
pub fn installed(view: &SystemView) -> Option<Installed> {
    [
        view.etc.join("udev/rules.d").join(RULES_FILE),
        view.lib.join("udev/rules.d").join(RULES_FILE),
    ]
    .into_iter()
    .find_map(|path| {
        let text = std::fs::read_to_string(&path).ok()?;
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        Some(Installed {
            path,
            text,
            modified,
        })
    })
}

/// Whether the rules `text` tell ModemManager to keep off `vid:pid`.
pub fn rules_ignore(text: &str, vid: u16, pid: u16) -> bool {
    let (v, p) = (
        format!("idVendor}}==\"{vid:04x}\""),
        format!("idProduct}}==\"{pid:04x}\""),
    );
    text.lines().any(|l| {
        !l.trim_start().starts_with('#')
            && l.contains(&v)
            && l.contains(&p)
            && l.contains("ID_MM_DEVICE_IGNORE}=\"1\"")
    })
}

/// Rules missing, stale, or not yet applied to a connected device.
pub fn check(view: &SystemView, quirks: &Quirks, known: &[(&UsbDevice, &UsbId)]) -> Vec<Finding> {
    let Some(rules) = installed(view) else {
        return vec![Finding {
            code: Code::UdevRulesMissing,
            severity: Severity::Problem,
            what: format!(
                "flashline's udev rules are not installed (neither {} nor {} exists), so only \
                 root can open the devices",
                view.etc.join("udev/rules.d").join(RULES_FILE).display(),
                view.lib.join("udev/rules.d").join(RULES_FILE).display()
            ),
            fix: INSTALL_RULES.into(),
        }];
    };
    if rules.text != quirks.udev_rules() {
        return vec![Finding {
            code: Code::UdevRulesStale,
            severity: Severity::Problem,
            what: format!(
                "the udev rules in {} differ from what this flashline generates (`flashline \
                 udev-rules`): devices added since are not covered",
                rules.path.display()
            ),
            // A file in /etc overrides a packaged one of the same name.
            fix: INSTALL_RULES.into(),
        }];
    }
    let Some(rules_time) = rules.modified else {
        return Vec::new();
    };
    let older: Vec<String> = known
        .iter()
        .filter(|(d, _)| {
            d.node(&view.dev)
                .and_then(|n| std::fs::metadata(n).and_then(|m| m.modified()).ok())
                .is_some_and(|created| created < rules_time)
        })
        .map(|(d, id)| format!("{} ({}) at USB port {}", d.id(), id.name, d.name))
        .collect();
    if older.is_empty() {
        return Vec::new();
    }
    vec![Finding {
        code: Code::UdevRulesNotApplied,
        severity: Severity::Problem,
        what: format!(
            "{} was connected before the rules in {} were installed, so they do not apply to it yet",
            older.join(", "),
            rules.path.display()
        ),
        fix: format!("{REAPPLY_RULES}, or unplug the device and plug it in again"),
    }]
}
