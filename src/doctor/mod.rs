//! The connection doctor: why a device is not seen, and the exact fix for each reason.
//!
//! "The device is not seen" is the top reason flashing tools fail technicians, and its
//! causes sit outside flashline: udev rules, login seats, groups, ModemManager, kernel
//! drivers, cables. The doctor reads the system the way the kernel and udev expose it
//! (sysfs, device nodes, rules files, `/proc`, the udev database) plus flashline's own job
//! reports, and turns each problem into a [`Finding`] with a command to run or a step to take.
//!
//! Every check reads through a [`SystemView`], a set of root folders and a user, so tests
//! run the doctor against fake system states built in a temporary folder.

mod access;
mod modem_manager;
mod reports;
mod udev;
mod usb;
mod windows;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::device::quirks::Quirks;
pub use usb::{Interface, UsbDevice};

/// How much a finding matters, least first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// Worth knowing; nothing is broken.
    Info,
    /// Likely to get in the way.
    Warning,
    /// Keeps the device from being seen or opened.
    Problem,
}

/// What a finding is about; stable names for scripts (`--json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Code {
    /// This system shows no USB bus at all.
    NoUsb,
    /// No USB device flashline knows is connected.
    NoDevice,
    /// flashline's udev rules are not installed.
    UdevRulesMissing,
    /// The installed udev rules differ from what this flashline generates.
    UdevRulesStale,
    /// A device was plugged in before the current rules were installed.
    UdevRulesNotApplied,
    /// The system has no login seats, so `uaccess` grants nothing.
    NoSeat,
    /// The user has no active session at a seat.
    NoSeatSession,
    /// A port is open to a group the user is not in.
    NotInGroup,
    /// A device node the user cannot open.
    PermissionDenied,
    /// ModemManager is running and not told to keep off a device in download mode.
    ModemManager,
    /// A device is bound to a kernel driver flashline cannot use it through.
    UnexpectedDriver,
    /// A modem's port has no serial driver bound, so it has no tty.
    SerialDriverMissing,
    /// A device in EDL shows up as a serial port (qcserial) rather than as raw USB.
    EdlAsSerial,
    /// A device of a known vendor in a mode (USB ID) flashline does not know.
    UnknownMode,
    /// Windows: which driver each mode needs.
    WindowsDriver,
    /// Repeated disconnects at different steps: the cable, hub or port.
    DisconnectsVary,
    /// Repeated disconnects at the same step: the device.
    DisconnectsSameStep,
}

/// One reason a device may not be seen, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What it is about.
    pub code: Code,
    /// How much it matters.
    pub severity: Severity,
    /// What was found, in plain words.
    pub what: String,
    /// The exact fix: a command to run or a step to take.
    pub fix: String,
}

/// The user the doctor checks access for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// User id.
    pub uid: u32,
    /// Every group id the user is in.
    pub gids: Vec<u32>,
}

/// The system the doctor looks at: where its folders are, and as whom.
#[derive(Debug, Clone)]
pub struct SystemView {
    /// sysfs (`/sys`).
    pub sys: PathBuf,
    /// Device nodes (`/dev`).
    pub dev: PathBuf,
    /// `/etc`.
    pub etc: PathBuf,
    /// `/lib` (packaged udev rules).
    pub lib: PathBuf,
    /// `/run` (logind seats and sessions, the udev database).
    pub run: PathBuf,
    /// procfs (`/proc`).
    pub proc: PathBuf,
    /// flashline's job reports.
    pub reports: PathBuf,
    /// The user; `None` where the platform has no Unix users.
    pub user: Option<User>,
    /// Whether this is the running system: then the kernel's own access(2) has the last
    /// word on permissions (it sees ACLs, which modes do not show).
    pub live: bool,
}

impl SystemView {
    /// The system flashline runs on, for the user running it.
    pub fn here() -> Self {
        Self {
            user: crate::platform::current_user().map(|(uid, gids)| User { uid, gids }),
            live: true,
            reports: crate::paths::reports_dir(),
            ..Self::under(Path::new("/"), None)
        }
    }

    /// A system whose folders all sit under `root` (`root/sys`, `root/dev`, …, and its
    /// reports in `root/reports`), for `user`.
    pub fn under(root: &Path, user: Option<User>) -> Self {
        Self {
            sys: root.join("sys"),
            dev: root.join("dev"),
            etc: root.join("etc"),
            lib: root.join("lib"),
            run: root.join("run"),
            proc: root.join("proc"),
            reports: root.join("reports"),
            user,
            live: false,
        }
    }

    /// The user, unless it is root (who opens everything) or unknown.
    fn ordinary_user(&self) -> Option<&User> {
        self.user.as_ref().filter(|u| u.uid != 0)
    }
}

/// Runs every check against `view`, with the USB IDs and udev rules of `quirks`.
///
/// The system checks read Linux's sysfs, udev, logind and procfs; on Windows, where nothing
/// of the kind can be read, the doctor explains the driver choice instead. The job reports
/// are read everywhere.
pub fn diagnose(view: &SystemView, quirks: &Quirks) -> Vec<Finding> {
    let mut findings = Vec::new();
    if cfg!(windows) {
        findings.push(windows::driver_choice());
    }
    let scan = usb::scan(view);
    let known: Vec<(&UsbDevice, &crate::device::quirks::UsbId)> = scan
        .devices
        .iter()
        .filter_map(|d| quirks.usb(d.vid, d.pid).map(|id| (d, id)))
        .collect();
    if cfg!(target_os = "linux") {
        findings.extend(usb::presence(view, &scan, quirks, &known));
        findings.extend(udev::check(view, quirks, &known));
        findings.extend(access::seat(view));
        findings.extend(access::nodes(view, &known));
        findings.extend(modem_manager::check(view, &known));
        findings.extend(usb::drivers(&scan, quirks));
    }
    findings.extend(reports::check(&view.reports));
    findings
}

/// The findings for people: one block per finding, or a line saying all is well.
pub fn render(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return "No problems found: the rules, permissions, drivers and reports look right.\n"
            .to_string();
    }
    let mut out = String::new();
    for f in findings {
        let severity = match f.severity {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Problem => "problem",
        };
        let code = serde_json::to_value(f.code).expect("codes serialise");
        let code = code.as_str().unwrap_or_default();
        out.push_str(&format!("[{severity}] {code}: {}\n", f.what));
        for (i, line) in f.fix.lines().enumerate() {
            let lead = if i == 0 { "  fix: " } else { "       " };
            out.push_str(&format!("{lead}{line}\n"));
        }
    }
    out
}

/// The findings as one JSON document: `{"findings": [{code, severity, what, fix}, …]}`.
pub fn to_json(findings: &[Finding]) -> String {
    #[derive(Serialize)]
    struct Doc<'a> {
        findings: &'a [Finding],
    }
    serde_json::to_string_pretty(&Doc { findings }).expect("findings serialise")
}

/// The command that installs the current rules and applies them to connected devices.
const INSTALL_RULES: &str = "flashline udev-rules | sudo tee /etc/udev/rules.d/70-flashline.rules >/dev/null && sudo udevadm control --reload && sudo udevadm trigger";

/// The command that re-applies installed rules to connected devices.
const REAPPLY_RULES: &str = "sudo udevadm control --reload && sudo udevadm trigger";

/// A file's first line, trimmed, if it can be read.
fn read_line(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(text.lines().next().unwrap_or_default().trim().to_string())
}
