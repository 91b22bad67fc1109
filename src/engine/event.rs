//! The events a flash job emits. Front ends render these and nothing else.
//!
//! Order: `Stage(Verify)`, `PackageVerified`, `Stage(Identify)`, `DeviceIdentified`,
//! `Stage(Preflight)`, `Preflight`, then for Qualcomm packages `Stage(Switch)`/`DeviceSwitched`
//! (modems), `Stage(Programmer)` and a second `Preflight` with the storage checks;
//! `Stage(Plan)`, `PlanReady`, `Stage(Backup)`/`BackupWritten` (Qualcomm), `Stage(Flash)`,
//! `Resuming` when an earlier run of the job was interrupted, then per image `ImageKept` or
//! `ImageStarted`, `Progress`…, `ImageWritten` (a phone with dynamic partitions: `SwitchStep`s
//! for its restarts and super steps before the images that need them); then `Stage(Patch)`
//! (Qualcomm) or `Stage(Activate)`/`SlotSwitched` (A/B phones), `Stage(Reboot)`, and exactly
//! one `Finished`, always last. A job that stops early jumps straight to `Finished`.

use std::path::PathBuf;

use serde::Serialize;

use super::preflight::Check;
use super::report::Outcome;
use crate::device::DeviceInfo;

/// The stages of a flash job, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Check the package's signature and every image hash.
    Verify,
    /// Read the device's identity and facts.
    Identify,
    /// Decide whether the package may be written to this device.
    Preflight,
    /// Work out what goes where.
    Plan,
    /// Send a modem to its download mode and find it again there.
    Switch,
    /// Load the package's programmer into a device in EDL.
    Programmer,
    /// Read back and keep the partitions that hold the device's identity.
    Backup,
    /// Write the images.
    Flash,
    /// Apply the package's patches (partition table fields and checksums).
    Patch,
    /// Switch the A/B slot to the freshly written one.
    Activate,
    /// Reboot into the new firmware and read what it reports.
    Reboot,
}

/// One event of a flash job.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// A new stage begins.
    Stage {
        /// The stage.
        stage: Stage,
    },
    /// The package passed verification.
    PackageVerified {
        /// Package name.
        name: String,
        /// Package version.
        version: String,
        /// Signing key id.
        signer: String,
        /// Signing key name.
        signer_name: String,
    },
    /// The device's facts.
    DeviceIdentified {
        /// What it reported.
        device: Box<DeviceInfo>,
    },
    /// The preflight checklist, complete, refused or not.
    Preflight {
        /// Each check with actual vs required.
        checks: Vec<Check>,
    },
    /// What will be written.
    PlanReady {
        /// One line per image.
        writes: Vec<PlannedWrite>,
        /// Slot to switch to at the end, on A/B devices.
        activate_slot: Option<String>,
        /// Sum of image sizes.
        total_bytes: u64,
    },
    /// An image starts.
    ImageStarted {
        /// 0-based index.
        index: usize,
        /// Number of images.
        count: usize,
        /// Partition on the device (slot suffix included).
        target: String,
        /// Bytes to send.
        bytes: u64,
    },
    /// Bytes of the current image sent so far.
    Progress {
        /// 0-based image index.
        index: usize,
        /// Bytes done.
        done: u64,
        /// Bytes in all.
        total: u64,
    },
    /// The device accepted the image and the streamed hash equals the signed one.
    ImageWritten {
        /// 0-based image index.
        index: usize,
        /// Partition on the device.
        target: String,
        /// Hex SHA-256 of the bytes sent.
        sha256: String,
        /// Seconds it took.
        seconds: f64,
        /// How storage that commits as it receives (EDL) was checked afterwards.
        #[serde(skip_serializing_if = "Option::is_none")]
        verified_by: Option<crate::device::Verification>,
    },
    /// An earlier run of this same job on this device stopped before it finished; this run
    /// keeps the images that run verified and writes the rest.
    Resuming {
        /// Images the earlier run verified (targets).
        verified: Vec<String>,
        /// The image the earlier run left incomplete, if it had started one.
        interrupted: Option<String>,
        /// When the earlier run stopped.
        since: String,
    },
    /// An image verified by an earlier run of this job is kept, not written again.
    ImageKept {
        /// 0-based image index.
        index: usize,
        /// Partition on the device.
        target: String,
        /// Bytes of the image (counted as done in overall progress).
        bytes: u64,
        /// Whether the device itself confirmed it holds the image (by its own digest) just
        /// now; otherwise the job journal vouches for it.
        checked_on_device: bool,
    },
    /// A message the device printed (fastboot INFO).
    DeviceMessage {
        /// The text.
        text: String,
    },
    /// The device left for its download mode and came back at another address.
    DeviceSwitched {
        /// Where it was.
        from: String,
        /// Where it is now.
        to: String,
    },
    /// A step on the way into download mode is taken (an AT command, a DIAG request), or a
    /// phone with dynamic partitions switches mode or prepares super (`reboot-fastboot`,
    /// `reboot-bootloader`, `set_active`, `snapshot-update:cancel`, `update-super`, …).
    SwitchStep {
        /// What is done, and on which port.
        step: String,
        /// Where the step is known from (`hardware-verified`, `public reports: …`,
        /// `virtual`).
        provenance: String,
        /// The step rests on public reports only, not on tested hardware.
        reports_only: bool,
    },
    /// An identity partition was read back, stored and checked.
    BackupWritten {
        /// The partition.
        label: String,
        /// SHA-256 of the stored copy.
        sha256: String,
    },
    /// The device will boot this slot next.
    SlotSwitched {
        /// The slot.
        slot: String,
    },
    /// The job is over; this is always the last event.
    Finished {
        /// What happened.
        outcome: Outcome,
        /// The error in plain words, if any.
        error: Option<String>,
        /// Where the JSON report was written.
        report: Option<PathBuf>,
    },
}

/// One image of a flash plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedWrite {
    /// Partition name in the package.
    pub partition: String,
    /// Partition on the device (slot suffix included).
    pub target: String,
    /// On an A/B device, a partition without slots (persist, modemst1, misc, …): written in
    /// place, live, so no other slot keeps its old content if the job is interrupted.
    pub live: bool,
    /// Bytes of the image as stored.
    pub bytes: u64,
    /// Whether it is an Android sparse image.
    pub sparse: bool,
}
