//! Android's dynamic partitions as a driver offers them: the userspace fastboot (fastbootd)
//! and the logical partitions it keeps inside `super`.
//!
//! Facts (AOSP `fastboot/device/` and `fastboot/fastboot.cpp`; source.android.com,
//! "fastbootd"): only fastbootd (`getvar is-userspace` = `yes`) changes logical
//! partitions; `update-super:<name>[:wipe]` takes a downloaded `super_empty.img`; each
//! logical partition is resized (`resize-logical-partition:<p>:<size>`) before it is
//! flashed; `snapshot-update-status` other than `none` blocks writes until
//! `snapshot-update:cancel`. The engine decides when each is used; a driver only sends them.

use super::{DeviceError, ImageSource};

/// What a device is doing with a Virtual A/B snapshot update (`snapshot-update-status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotStatus {
    /// No update in progress.
    None,
    /// An update is applied or merging (`snapshotted`, `merging`, …): logical partitions
    /// cannot be written until it is cancelled.
    Pending(String),
}

impl SnapshotStatus {
    /// Reads the variable's value; `None` (not reported) counts as no update.
    pub fn from_answer(answer: Option<&str>) -> Self {
        match answer.map(str::trim) {
            None | Some("") | Some("none") => SnapshotStatus::None,
            Some(other) => SnapshotStatus::Pending(other.to_string()),
        }
    }
}

/// The commands of fastbootd and the bootloader around it.
pub trait DynamicPartitions {
    /// Whether the device runs fastbootd (`is-userspace: yes`) rather than its bootloader.
    fn is_userspace(&mut self) -> Result<bool, DeviceError>;
    /// Whether `partition` is logical (`is-logical:<p>`), asked now, never from a listing
    /// made before the layout changed; `None` when the device does not say.
    fn is_logical(&mut self, partition: &str) -> Result<Option<bool>, DeviceError>;
    /// `super-partition-name` (`super`; `system_a` on a retrofit device).
    fn super_partition_name(&mut self) -> Result<Option<String>, DeviceError>;
    /// The size of a partition asked now (`partition-size:<p>`).
    fn size_now(&mut self, partition: &str) -> Result<Option<u64>, DeviceError>;
    /// `snapshot-update-status`.
    fn snapshot_status(&mut self) -> Result<SnapshotStatus, DeviceError>;
    /// `snapshot-update:cancel`: drops a pending Virtual A/B update (and its `-cow`
    /// partitions).
    fn cancel_snapshot_update(&mut self) -> Result<(), DeviceError>;
    /// `reboot-fastboot`: the device leaves and comes back as fastbootd.
    fn reboot_fastboot(&mut self) -> Result<(), DeviceError>;
    /// `reboot-bootloader`: the device leaves and comes back in its bootloader.
    fn reboot_bootloader(&mut self) -> Result<(), DeviceError>;
    /// Downloads `layout` (a `super_empty.img`) and sends `update-super:<name>[:wipe]`, only
    /// if the bytes sent are the signed ones.
    fn update_super(
        &mut self,
        name: &str,
        layout: &dyn ImageSource,
        wipe: bool,
    ) -> Result<(), DeviceError>;
    /// `resize-logical-partition:<p>:<size>`.
    fn resize_logical(&mut self, partition: &str, size: u64) -> Result<(), DeviceError>;
    /// `create-logical-partition:<p>:<size>`.
    fn create_logical(&mut self, partition: &str, size: u64) -> Result<(), DeviceError>;
    /// `delete-logical-partition:<p>`.
    fn delete_logical(&mut self, partition: &str) -> Result<(), DeviceError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_answers() {
        assert_eq!(SnapshotStatus::from_answer(None), SnapshotStatus::None);
        assert_eq!(
            SnapshotStatus::from_answer(Some("none")),
            SnapshotStatus::None
        );
        assert_eq!(
            SnapshotStatus::from_answer(Some("merging")),
            SnapshotStatus::Pending("merging".into())
        );
    }
}
