//! The station's decisions, as a state machine with no I/O: which device is flashed, which
//! waits, which is a canary, when the batch halts. The runner feeds it what happened
//! (arrivals, identities, job events, checks after reboot, a resume) and carries out the
//! [`Action`]s it returns; front ends render the [`StationEvent`]s it emits.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;

use super::report::{BatchReport, DeviceRecord, HaltRecord, ResumeRecord};
use super::{Slot, SlotStatus, StationEvent, Threshold};
use crate::device::discovery::Found;
use crate::device::Mode;
use crate::engine::{Event, Outcome, Report};

/// What the runner must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Identify the device that arrived on `slot`.
    Identify {
        /// The slot.
        slot: String,
        /// The device as discovery saw it.
        found: Found,
    },
    /// Flash the device on `slot` (it was identified, and may be flashed now).
    Flash {
        /// The slot.
        slot: String,
    },
    /// Read the canary's version once it is back from its reboot.
    Verify {
        /// The slot.
        slot: String,
    },
}

/// What identification learnt about a device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The key that makes it this device and no other: USB serial, else reported serial.
    pub key: String,
    /// What it calls itself.
    pub model: Option<String>,
    /// Serial number.
    pub serial: Option<String>,
    /// Firmware version as reported.
    pub version: Option<String>,
}

/// A device that had its job in this batch (or has it now).
#[derive(Debug, Clone)]
struct Claim {
    /// Index in the batch report's device list.
    record: usize,
}

/// The station's state.
#[derive(Debug)]
pub struct Machine {
    canaries: usize,
    threshold: Threshold,
    slots: BTreeMap<String, Slot>,
    /// Device key per busy or finished slot.
    key_of: BTreeMap<String, String>,
    /// Devices that had their job in this batch (or have it now), by key.
    claimed: BTreeMap<String, Claim>,
    /// Slots waiting to flash, in arrival order.
    queue: VecDeque<String>,
    /// Canary jobs started, and passed.
    canaries_started: usize,
    canaries_passed: usize,
    /// Whether the canary phase is over (passed, or a person resumed).
    open: bool,
    /// Outcomes of the last finished jobs, `true` for a failure, newest last.
    recent: VecDeque<bool>,
    halted: Option<HaltRecord>,
    /// Counts every decision, so a report can tell which came first.
    seq: u64,
    report: BatchReport,
    events: Vec<StationEvent>,
}

impl Machine {
    /// A machine for a batch whose first `canaries` devices are canaries and which halts
    /// at `threshold` failures; `report` is the batch report to fill in.
    pub fn new(canaries: usize, threshold: Threshold, report: BatchReport) -> Self {
        Machine {
            canaries,
            threshold,
            slots: BTreeMap::new(),
            key_of: BTreeMap::new(),
            claimed: BTreeMap::new(),
            queue: VecDeque::new(),
            canaries_started: 0,
            canaries_passed: 0,
            open: canaries == 0,
            recent: VecDeque::new(),
            halted: None,
            seq: 0,
            report,
            events: Vec::new(),
        }
    }

    /// The batch report as it stands.
    pub fn report(&self) -> &BatchReport {
        &self.report
    }

    /// The slot table.
    pub fn slots(&self) -> &BTreeMap<String, Slot> {
        &self.slots
    }

    /// The events emitted since the last call.
    pub fn take_events(&mut self) -> Vec<StationEvent> {
        std::mem::take(&mut self.events)
    }

    /// Whether the batch is halted.
    pub fn is_halted(&self) -> bool {
        self.halted.is_some()
    }

    /// Sets a slot's label (from settings or the GUI).
    pub fn label(&mut self, slot: &str, label: Option<String>) {
        let entry = self.slot_mut(slot);
        if entry.label != label {
            entry.label = label;
            self.changed(slot);
        }
    }

    /// A device arrived on `slot`. A busy slot's device is its job's business (a modem
    /// re-enumerating); otherwise the slot starts clean with this device.
    pub fn arrived(&mut self, slot: &str, found: &Found) -> Vec<Action> {
        if self.slot_mut(slot).status.is_busy() {
            return Vec::new();
        }
        let label = self.slot_mut(slot).label.clone();
        self.queue.retain(|s| s != slot);
        self.key_of.remove(slot);
        let entry = self.slot_mut(slot);
        *entry = Slot {
            key: slot.to_string(),
            label,
            status: SlotStatus::Identifying,
            address: Some(found.address.clone()),
            mode: Some(found.mode),
            serial: found.serial.clone(),
            model: found.product.clone(),
            ..Slot::default()
        };
        self.changed(slot);
        vec![Action::Identify {
            slot: slot.to_string(),
            found: found.clone(),
        }]
    }

    /// The device at `address` left `slot`. The slot's result stays until its own device
    /// leaves; a busy slot's device is its job's business.
    pub fn left(&mut self, slot: &str, address: &str) {
        let Some(entry) = self.slots.get_mut(slot) else {
            return;
        };
        if entry.status.is_busy() || entry.address.as_deref() != Some(address) {
            return;
        }
        *entry = Slot {
            key: slot.to_string(),
            label: entry.label.take(),
            ..Slot::default()
        };
        self.queue.retain(|s| s != slot);
        self.key_of.remove(slot);
        self.changed(slot);
    }

    /// The device on `slot` could not be identified: shown with the reason, nothing else
    /// is held up.
    pub fn identify_failed(&mut self, slot: &str, reason: String) {
        let entry = self.slot_mut(slot);
        entry.status = SlotStatus::Refused;
        entry.message = Some(format!("not identified: {reason}"));
        self.changed(slot);
    }

    /// The device on `slot` was identified. `expected` is the version the package for it
    /// installs, or `Err` with why no package of the batch fits it.
    pub fn identified(
        &mut self,
        slot: &str,
        identity: Identity,
        expected: Result<String, String>,
    ) -> Vec<Action> {
        let entry = self.slot_mut(slot);
        entry.model = identity.model.clone().or(entry.model.take());
        entry.serial = identity.serial.clone().or(entry.serial.take());
        entry.before = identity.version.clone();
        if let Some(claim) = self.claimed.get(&identity.key) {
            // It had its job already (it rebooted, or was plugged in again): shown with
            // what it reports now, never flashed twice.
            let record = &self.report.devices[claim.record];
            let (before, finished) = (record.before.clone(), record.finished_at.clone());
            let entry = self.slot_mut(slot);
            entry.status = SlotStatus::Returned;
            entry.after = identity.version.clone();
            entry.before = before;
            entry.finished_at = finished;
            entry.message = Some("already flashed in this batch; not flashed again".into());
            self.report.returned += 1;
            self.changed(slot);
            return Vec::new();
        }
        let expected = match expected {
            Ok(v) => v,
            Err(why) => {
                let entry = self.slot_mut(slot);
                entry.status = SlotStatus::Refused;
                entry.message = Some(why);
                self.changed(slot);
                return Vec::new();
            }
        };
        self.seq += 1;
        let record = self.report.devices.len();
        self.report.devices.push(DeviceRecord {
            slot: slot.to_string(),
            label: self.slots[slot].label.clone(),
            model: self.slots[slot].model.clone(),
            serial: self.slots[slot].serial.clone(),
            before: identity.version.clone(),
            expected,
            arrived_seq: self.seq,
            ..DeviceRecord::default()
        });
        self.claimed.insert(identity.key.clone(), Claim { record });
        self.key_of.insert(slot.to_string(), identity.key);
        self.queue.push_back(slot.to_string());
        self.release()
    }

    /// Whether the device with `key` had its job in this batch (or has it now).
    pub fn has_had_job(&self, key: &str) -> bool {
        self.claimed.contains_key(key)
    }

    /// The device on `slot` was identified and waits for its fleet to offer it a package
    /// (`why`: no deployment yet, or the fleet cannot be reached). It is not queued: the
    /// runner calls [`Machine::identified`] once an offer arrives.
    pub fn unassigned(&mut self, slot: &str, identity: &Identity, why: String) {
        let entry = self.slot_mut(slot);
        let before = entry.clone();
        entry.model = identity.model.clone().or(entry.model.take());
        entry.serial = identity.serial.clone().or(entry.serial.take());
        entry.before = identity.version.clone();
        entry.status = SlotStatus::Waiting;
        entry.message = Some(why);
        if *entry != before {
            self.changed(slot);
        }
    }

    /// The job on `slot` was not started after all: its fleet withdrew the offer right
    /// before the write (`why`). Nothing was written, so nothing is counted; the device is
    /// free to take a later offer, and a canary's place goes to the next device.
    pub fn skipped(&mut self, slot: &str, why: String) -> Vec<Action> {
        let Some(record) = self.record_of(slot) else {
            return Vec::new();
        };
        self.seq += 1;
        let r = &mut self.report.devices[record];
        r.error = Some(format!("not flashed: {why}"));
        r.finished_seq = Some(self.seq);
        if let Some(key) = self.key_of.remove(slot) {
            self.claimed.remove(&key);
        }
        if self.slots.get(slot).is_some_and(|s| s.canary) {
            self.canaries_started -= 1;
        }
        let entry = self.slot_mut(slot);
        entry.canary = false;
        entry.status = SlotStatus::Waiting;
        entry.stage = None;
        entry.progress = None;
        entry.message = Some(why);
        self.changed(slot);
        self.release()
    }

    /// An event of the job on `slot`.
    pub fn job_event(&mut self, slot: &str, event: &Event) {
        let entry = self.slot_mut(slot);
        match event {
            Event::Stage { stage } => {
                entry.stage = Some(*stage);
                entry.progress = None;
            }
            Event::DeviceIdentified { device } => {
                entry.model = device.product.clone().or(entry.model.take());
                entry.serial = device.serial.clone().or(entry.serial.take());
                if entry.before.is_none() {
                    entry.before = device.firmware_version_raw.clone();
                }
            }
            Event::Progress { done, total, .. } => entry.progress = Some((*done, *total)),
            Event::DeviceSwitched { to, .. } => entry.message = Some(format!("now at {to}")),
            _ => return,
        }
        self.changed(slot);
    }

    /// The job on `slot` ended with `report`.
    pub fn job_finished(
        &mut self,
        slot: &str,
        report: &Report,
        path: Option<PathBuf>,
    ) -> Vec<Action> {
        let Some(record) = self.record_of(slot) else {
            return Vec::new();
        };
        self.seq += 1;
        let canary = self.slots.get(slot).is_some_and(|s| s.canary);
        let after = report.after.as_ref().and_then(|v| v.firmware.clone());
        let r = &mut self.report.devices[record];
        r.outcome = Some(report.outcome);
        r.error = report.error.clone();
        r.report = path.clone();
        // A canary's new version is what it reports after its reboot, not what the job
        // assumed.
        r.after = if canary { None } else { after.clone() };
        r.finished_seq = Some(self.seq);
        r.finished_at = Some(report.finished_at.clone());
        if r.model.is_none() {
            r.model = report.device.as_ref().and_then(|d| d.product.clone());
        }
        let failed = !matches!(report.outcome, Outcome::Success | Outcome::PreflightRefused);
        let entry = self.slot_mut(slot);
        entry.report = path.clone();
        entry.finished_at = Some(report.finished_at.clone());
        entry.stage = None;
        entry.progress = None;
        let mut actions = Vec::new();
        match report.outcome {
            Outcome::Success if canary => {
                entry.status = SlotStatus::Verifying;
                entry.message =
                    Some("canary: rebooted, waiting for it to report the new version".into());
                actions.push(Action::Verify {
                    slot: slot.to_string(),
                });
            }
            Outcome::Success => {
                entry.status = SlotStatus::Done;
                entry.after = after;
                entry.message = None;
            }
            Outcome::PreflightRefused => {
                entry.status = SlotStatus::Refused;
                entry.message = report.error.clone();
            }
            _ => {
                entry.status = SlotStatus::Failed;
                entry.message = report.error.clone();
            }
        }
        self.changed(slot);
        if report.outcome == Outcome::PreflightRefused && canary {
            // A refused canary wrote nothing: the next device takes its place.
            self.canaries_started -= 1;
            self.slot_mut(slot).canary = false;
        }
        if failed {
            self.count(true);
            if canary {
                let why = report.error.clone().unwrap_or_default();
                self.halt(
                    format!("canary on {} failed its job: {why}", self.name(slot)),
                    path,
                );
            } else {
                self.check_threshold(path);
            }
        } else if report.outcome == Outcome::Success && !canary {
            self.count(false);
        }
        actions.extend(self.release());
        actions
    }

    /// The canary on `slot` came back reporting a version, or did not (`Err`, why).
    pub fn verified(&mut self, slot: &str, result: Result<Reported, String>) -> Vec<Action> {
        let Some(record) = self.record_of(slot) else {
            return Vec::new();
        };
        let expected = self.report.devices[record].expected.clone();
        let result = result.and_then(|reported| {
            if version_matches(&reported, &expected) {
                Ok(reported.shown)
            } else {
                Err(format!(
                    "it reports version {} after its reboot, not {expected}",
                    reported.shown
                ))
            }
        });
        let report_path = self.report.devices[record].report.clone();
        self.report.devices[record].canary_check = Some(match &result {
            Ok(v) => format!("passed: reports {v}"),
            Err(why) => format!("failed: {why}"),
        });
        let entry = self.slot_mut(slot);
        match result {
            Ok(version) => {
                entry.status = SlotStatus::Done;
                entry.after = Some(version.clone());
                entry.message = Some("canary passed".into());
                self.report.devices[record].after = Some(version);
                self.changed(slot);
                self.count(false);
                self.canaries_passed += 1;
                if !self.open && self.canaries_passed >= self.canaries {
                    self.open = true;
                    self.events.push(StationEvent::CanariesPassed {
                        count: self.canaries_passed,
                    });
                }
                self.release()
            }
            Err(why) => {
                entry.status = SlotStatus::Failed;
                entry.message = Some(format!("canary check failed: {why}"));
                self.changed(slot);
                self.count(true);
                self.halt(
                    format!(
                        "canary on {} failed its check after the reboot: {why}",
                        self.name(slot)
                    ),
                    report_path,
                );
                // Nothing starts; the waiting slots now say why.
                self.release()
            }
        }
    }

    /// A person resumes a halted batch; `by` and `reason` go into the batch report. The
    /// canary phase counts as passed and the failure window starts empty.
    pub fn resume(&mut self, by: String, reason: String, at: String) -> Vec<Action> {
        if self.halted.is_none() {
            return Vec::new();
        }
        self.halted = None;
        self.open = true;
        self.recent.clear();
        self.seq += 1;
        let record = ResumeRecord {
            at,
            by,
            reason,
            seq: self.seq,
        };
        self.report.resumes.push(record.clone());
        self.events.push(StationEvent::Resumed(record));
        self.release()
    }

    /// Starts every queued device that may start now.
    fn release(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut waiting = VecDeque::new();
        while let Some(slot) = self.queue.pop_front() {
            let reason = if self.halted.is_some() {
                Some("batch halted")
            } else if !self.open && self.canaries_started >= self.canaries {
                Some("waiting for canaries")
            } else {
                None
            };
            match reason {
                Some(reason) => {
                    let entry = self.slot_mut(&slot);
                    if entry.status != SlotStatus::Waiting
                        || entry.message.as_deref() != Some(reason)
                    {
                        entry.status = SlotStatus::Waiting;
                        entry.message = Some(reason.into());
                        self.changed(&slot);
                    }
                    waiting.push_back(slot);
                }
                None => {
                    let canary = !self.open;
                    if canary {
                        self.canaries_started += 1;
                    }
                    self.seq += 1;
                    if let Some(record) = self.record_of(&slot) {
                        self.report.devices[record].started_seq = Some(self.seq);
                        self.report.devices[record].canary = canary;
                    }
                    let entry = self.slot_mut(&slot);
                    entry.status = SlotStatus::Flashing;
                    entry.canary = canary;
                    entry.message = canary.then(|| "canary".to_string());
                    self.changed(&slot);
                    actions.push(Action::Flash { slot });
                }
            }
        }
        self.queue = waiting;
        actions
    }

    fn count(&mut self, failure: bool) {
        self.recent.push_back(failure);
        while self.recent.len() > self.threshold.window {
            self.recent.pop_front();
        }
    }

    fn check_threshold(&mut self, report: Option<PathBuf>) {
        let failures = self.recent.iter().filter(|f| **f).count();
        if self.threshold.failures > 0 && failures >= self.threshold.failures {
            self.halt(
                format!(
                    "{failures} of the last {} jobs failed (limit {}/{})",
                    self.recent.len(),
                    self.threshold.failures,
                    self.threshold.window
                ),
                report,
            );
        }
    }

    fn halt(&mut self, reason: String, report: Option<PathBuf>) {
        self.seq += 1;
        let halt = self.halted.get_or_insert_with(|| HaltRecord {
            seq: self.seq,
            at: crate::engine::report::now(),
            ..HaltRecord::default()
        });
        halt.reasons.push(reason);
        halt.reports.extend(report);
        let halt = halt.clone();
        match self.report.halts.last_mut() {
            Some(last) if last.seq == halt.seq => *last = halt.clone(),
            _ => self.report.halts.push(halt.clone()),
        }
        self.events.push(StationEvent::Halted(halt));
    }

    fn record_of(&self, slot: &str) -> Option<usize> {
        self.key_of
            .get(slot)
            .and_then(|k| self.claimed.get(k))
            .map(|c| c.record)
    }

    fn name(&self, slot: &str) -> String {
        match self.slots.get(slot).and_then(|s| s.label.as_deref()) {
            Some(label) => format!("{label} ({slot})"),
            None => slot.to_string(),
        }
    }

    fn slot_mut(&mut self, slot: &str) -> &mut Slot {
        self.slots.entry(slot.to_string()).or_insert_with(|| Slot {
            key: slot.to_string(),
            ..Slot::default()
        })
    }

    fn changed(&mut self, slot: &str) {
        if let Some(entry) = self.slots.get(slot) {
            self.events.push(StationEvent::Slot(entry.clone()));
        }
    }
}

/// A version a device reported after its reboot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    /// As the device said it (`+CGMR`, a `getvar`).
    pub shown: String,
    /// The comparable version the model's quirks pattern reads out of it, if any.
    pub comparable: Option<String>,
}

/// Whether `reported` is the `expected` version: the same text, or the same semantic
/// version once the model's pattern made one of it.
fn version_matches(reported: &Reported, expected: &str) -> bool {
    let same = |text: &str| {
        text == expected
            || matches!(
                (semver::Version::parse(text), semver::Version::parse(expected)),
                (Ok(a), Ok(b)) if a == b
            )
    };
    same(&reported.shown) || reported.comparable.as_deref().is_some_and(same)
}

/// The slot a device belongs to: its USB port path, or for a device without one (a
/// virtual phone on the network), its address.
pub fn slot_of(found: &Found) -> String {
    found
        .port_path
        .clone()
        .unwrap_or_else(|| found.address.clone())
}

/// Whether a device in `mode` can be the one a slot's job left behind after its reboot:
/// back in its normal mode, answering with its version.
pub fn reports_version(mode: Mode) -> bool {
    matches!(mode, Mode::Fastboot | Mode::Modem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::report::Versions;

    fn found(slot: &str) -> Found {
        Found {
            address: format!("tcp:{slot}"),
            mode: Mode::Fastboot,
            vid: None,
            pid: None,
            product: Some("phone".into()),
            serial: Some(format!("SN-{slot}")),
            known_as: None,
            is_virtual: true,
            interface: None,
            port_path: Some(slot.to_string()),
        }
    }

    fn identity(slot: &str) -> Identity {
        Identity {
            key: format!("SN-{slot}"),
            model: Some("phone".into()),
            serial: Some(format!("SN-{slot}")),
            version: Some("1.0.0".into()),
        }
    }

    /// Arrives and is identified; returns the actions.
    fn plug(m: &mut Machine, slot: &str) -> Vec<Action> {
        m.arrived(slot, &found(slot));
        m.identified(slot, identity(slot), Ok("2.0.0".into()))
    }

    fn report(outcome: Outcome) -> Report {
        let mut r = blank();
        r.outcome = outcome;
        r.after = Some(Versions {
            firmware: Some("2.0.0".into()),
            security: None,
            source: "test".into(),
        });
        r
    }

    fn blank() -> Report {
        Report {
            tool: String::new(),
            started_at: String::new(),
            finished_at: "now".into(),
            outcome: Outcome::Success,
            error: Some("boom".into()),
            device_address: String::new(),
            package: None,
            device: None,
            before: None,
            after: None,
            preflight: Vec::new(),
            overrides: Vec::new(),
            images: Vec::new(),
            incomplete: None,
            activated_slot: None,
            backup: None,
            notes: Vec::new(),
        }
    }

    fn flash(slot: &str) -> Action {
        Action::Flash { slot: slot.into() }
    }

    fn machine(canaries: usize) -> Machine {
        Machine::new(
            canaries,
            Threshold {
                failures: 2,
                window: 10,
            },
            BatchReport::default(),
        )
    }

    fn reported(v: &str) -> Reported {
        Reported {
            shown: v.into(),
            comparable: None,
        }
    }

    #[test]
    fn others_wait_until_the_canary_comes_back_with_the_new_version() {
        let mut m = machine(1);
        assert_eq!(plug(&mut m, "a"), vec![flash("a")]);
        assert!(plug(&mut m, "b").is_empty());
        assert_eq!(
            m.slots()["b"].message.as_deref(),
            Some("waiting for canaries")
        );
        let verify = m.job_finished("a", &report(Outcome::Success), None);
        assert_eq!(verify, vec![Action::Verify { slot: "a".into() }]);
        assert_eq!(m.verified("a", Ok(reported("2.0.0"))), vec![flash("b")]);
        assert!(m
            .take_events()
            .iter()
            .any(|e| matches!(e, StationEvent::CanariesPassed { count: 1 })));
    }

    #[test]
    fn a_canary_back_with_the_old_version_halts_and_only_a_resume_releases() {
        let mut m = machine(1);
        plug(&mut m, "a");
        plug(&mut m, "b");
        m.job_finished("a", &report(Outcome::Success), None);
        assert!(m.verified("a", Ok(reported("1.0.0"))).is_empty());
        assert!(m.is_halted());
        assert_eq!(m.slots()["b"].message.as_deref(), Some("batch halted"));
        assert!(
            plug(&mut m, "c").is_empty(),
            "no new flash starts after a halt"
        );
        let released = m.resume("ana".into(), "checked".into(), "t".into());
        assert_eq!(released, vec![flash("b"), flash("c")]);
        assert_eq!(m.report().resumes[0].by, "ana");
    }

    #[test]
    fn the_kill_switch_counts_failures_in_the_window_and_refusals_count_for_nothing() {
        let mut m = machine(0);
        for slot in ["a", "b", "c", "d"] {
            assert_eq!(plug(&mut m, slot), vec![flash(slot)]);
        }
        m.job_finished("a", &report(Outcome::PreflightRefused), None);
        m.job_finished("b", &report(Outcome::DeviceError), None);
        assert!(!m.is_halted());
        m.job_finished("c", &report(Outcome::DeviceError), Some("r.json".into()));
        assert!(m.is_halted());
        assert_eq!(m.report().halts[0].reports, vec![PathBuf::from("r.json")]);
        // A job running at the halt finishes and is recorded.
        m.job_finished("d", &report(Outcome::Success), None);
        assert_eq!(m.report().devices[3].outcome, Some(Outcome::Success));
    }

    #[test]
    fn a_device_back_after_its_job_is_shown_not_flashed_again() {
        let mut m = machine(0);
        plug(&mut m, "a");
        m.job_finished("a", &report(Outcome::Success), None);
        m.left("a", "tcp:a");
        assert_eq!(m.slots()["a"].status, SlotStatus::Empty);
        m.arrived("b", &found("b"));
        let mut back = identity("a");
        back.version = Some("2.0.0".into());
        assert!(m.identified("b", back, Ok("2.0.0".into())).is_empty());
        assert_eq!(m.slots()["b"].status, SlotStatus::Returned);
        assert_eq!(m.slots()["b"].after.as_deref(), Some("2.0.0"));
        assert_eq!(m.report().devices.len(), 1);
    }

    #[test]
    fn a_busy_slot_ignores_its_device_re_enumerating() {
        let mut m = machine(0);
        plug(&mut m, "a");
        let mut edl = found("a");
        edl.address = "serial:/dev/pts/9".into();
        assert!(m.arrived("a", &edl).is_empty());
        m.left("a", "tcp:a");
        assert_eq!(m.slots()["a"].status, SlotStatus::Flashing);
    }
}
