//! The flash plan: which image goes to which partition, and which slot boots afterwards.
//!
//! On A/B devices the plan writes the slot that is *not* running and switches to it only
//! after every image is written and verified, so an interrupted job leaves the device
//! booting its old, intact slot.

use super::event::PlannedWrite;
use super::preflight::Cleared;
use crate::device::DeviceInfo;
use crate::package::VerifiedPackage;

/// What a job will do to a device.
#[derive(Debug, Clone)]
pub struct FlashPlan {
    /// Images in package order.
    pub writes: Vec<PlannedWrite>,
    /// The slot to switch to at the end (A/B devices).
    pub activate_slot: Option<String>,
}

impl FlashPlan {
    /// Builds the plan. Requires a cleared preflight: no plan exists for a refused job.
    pub fn build(package: &VerifiedPackage, device: &DeviceInfo, _cleared: &Cleared) -> Self {
        let slot = target_slot(device);
        let writes = package
            .manifest()
            .images
            .iter()
            .map(|image| PlannedWrite {
                partition: image.partition.clone(),
                target: target_partition(&image.partition, device, slot.as_deref()),
                bytes: image.size,
                sparse: image.sparse.is_some(),
            })
            .collect::<Vec<_>>();
        // Switch only to a slot that this plan actually writes.
        let activate_slot = slot.filter(|s| {
            let suffix = format!("_{s}");
            writes.iter().any(|w| w.target.ends_with(&suffix))
        });
        FlashPlan {
            writes,
            activate_slot,
        }
    }

    /// Sum of the image sizes.
    pub fn total_bytes(&self) -> u64 {
        self.writes.iter().map(|w| w.bytes).sum()
    }
}

/// The partition each image of `package` would be written to, with its size if known.
pub fn targets(package: &VerifiedPackage, device: &DeviceInfo) -> Vec<(String, Option<u64>)> {
    let slot = target_slot(device);
    package
        .manifest()
        .images
        .iter()
        .map(|image| {
            let target = target_partition(&image.partition, device, slot.as_deref());
            let size = device.partitions.get(&target).copied();
            (target, size)
        })
        .collect()
}

/// The slot after the current one (`a` → `b`, `b` → `a`), on A/B devices.
fn target_slot(device: &DeviceInfo) -> Option<String> {
    let slots = device.slots.as_ref()?;
    let count = slots.count.clamp(2, 26) as u8;
    let current = slots
        .current
        .bytes()
        .next()
        .filter(u8::is_ascii_lowercase)?;
    let index = current - b'a';
    Some(char::from(b'a' + (index + 1) % count).to_string())
}

/// `boot` → `boot_b` when the device has slotted `boot_*` partitions, else `boot`.
fn target_partition(partition: &str, device: &DeviceInfo, slot: Option<&str>) -> String {
    match slot {
        Some(slot) => {
            let slotted = format!("{partition}_{slot}");
            if device.partitions.contains_key(&slotted)
                || !device.partitions.contains_key(partition)
            {
                slotted
            } else {
                partition.to_string()
            }
        }
        None => partition.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{Battery, Mode, Slots};

    fn device(slots: Option<&str>, parts: &[&str]) -> DeviceInfo {
        DeviceInfo {
            address: "tcp:x".into(),
            mode: Mode::Fastboot,
            product: None,
            serial: None,
            imei: None,
            firmware_version_raw: None,
            firmware_version: None,
            security_version: None,
            security_version_raw: None,
            battery: Battery::Unknown,
            partitions: parts.iter().map(|p| (p.to_string(), 4096)).collect(),
            slots: slots.map(|s| Slots {
                current: s.into(),
                count: 2,
            }),
            is_virtual: true,
            luns: Vec::new(),
            layout: Vec::new(),
            chip: None,
        }
    }

    #[test]
    fn ab_devices_get_the_other_slot() {
        let d = device(Some("a"), &["boot_a", "boot_b", "userdata"]);
        assert_eq!(target_slot(&d).as_deref(), Some("b"));
        assert_eq!(target_partition("boot", &d, Some("b")), "boot_b");
        assert_eq!(target_partition("userdata", &d, Some("b")), "userdata");
        let d = device(Some("b"), &["boot_a", "boot_b"]);
        assert_eq!(target_slot(&d).as_deref(), Some("a"));
    }

    #[test]
    fn plain_devices_keep_names() {
        let d = device(None, &["boot"]);
        assert_eq!(target_slot(&d), None);
        assert_eq!(target_partition("boot", &d, None), "boot");
    }
}
