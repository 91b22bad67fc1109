//! The connection doctor's panel: the same checks as `flashline doctor`, for the technician
//! whose device does not show up in the device list.
//!
//! The checks read sysfs, udev and logind files and can take a moment on a busy system, so
//! they run on the bridge (never on the UI thread); the panel only holds their answer.

use super::state::Intent;
use crate::doctor::Finding;

/// The doctor panel, as the window shows it.
#[derive(Debug, Default)]
pub struct DoctorPanel {
    /// The panel is shown.
    pub open: bool,
    /// The latest diagnosis.
    pub state: Diagnosis,
}

/// Where the diagnosis stands.
#[derive(Debug, Default, PartialEq)]
pub enum Diagnosis {
    /// Not asked for yet.
    #[default]
    NotRun,
    /// The checks are running.
    Running,
    /// The findings, most serious first.
    Done(Vec<Finding>),
}

impl DoctorPanel {
    /// Shows the panel and asks for a fresh diagnosis: the system may have changed since
    /// the last one (a rule installed, a cable moved).
    pub fn open(&mut self) -> Intent {
        self.open = true;
        self.state = Diagnosis::Running;
        Intent::RunDoctor
    }

    /// The checks answered.
    pub fn finished(&mut self, mut findings: Vec<Finding>) {
        findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
        self.state = Diagnosis::Done(findings);
    }
}
