//! The flash plan: which image goes to which partition, and which slot boots afterwards.
//!
//! On A/B devices the plan writes the slot that is *not* running and switches to it only
//! after every image is written and verified, so an interrupted job leaves the device
//! booting its old, intact slot — for the partitions that have slots. Which ones do is
//! asked of the device (`has-slot:<partition>`), never guessed when it answers. A
//! partition without slots (persist, modemst1, misc, …) exists once and is written in
//! place, live: the plan marks it so, and no slot keeps its old content.

use std::collections::BTreeMap;

use super::event::PlannedWrite;
use super::preflight::Cleared;
use crate::device::fastboot::verbs::SlotChoice;
use crate::device::{DeviceError, DeviceInfo, Driver};
use crate::package::VerifiedPackage;

/// The device's `has-slot` answer for each of the package's partitions, where it gave one.
pub type Slotted = BTreeMap<String, bool>;

/// Asks an A/B device whether each of the package's partitions has slots. A device without
/// slots is not asked; an answer other than `yes`/`no` leaves the partition out, and the
/// partition list decides for it.
pub fn ask_slots(
    driver: &mut dyn Driver,
    package: &VerifiedPackage,
    device: &DeviceInfo,
) -> Result<Slotted, DeviceError> {
    let mut slotted = Slotted::new();
    if device.slots.is_none() {
        return Ok(slotted);
    }
    for image in package.manifest().images.iter().filter(|i| !i.logical) {
        let answer = driver.variable(&format!("has-slot:{}", image.partition))?;
        match answer.as_deref().map(str::trim) {
            Some("yes") => slotted.insert(image.partition.clone(), true),
            Some("no") => slotted.insert(image.partition.clone(), false),
            _ => None,
        };
    }
    Ok(slotted)
}

/// What a job will do to a device.
#[derive(Debug, Clone)]
pub struct FlashPlan {
    /// Images in package order.
    pub writes: Vec<PlannedWrite>,
    /// The slot to switch to at the end (A/B devices).
    pub activate_slot: Option<String>,
    /// Indexes of `writes` in the order they are written: Google's phases for a package
    /// with firmware or logical partitions (firmware that restarts the bootloader, then
    /// the other physical partitions, then the logical ones from fastbootd), each phase in
    /// package order; package order otherwise.
    pub order: Vec<usize>,
}

impl FlashPlan {
    /// Builds the plan. Requires a cleared preflight: no plan exists for a refused job.
    pub fn build(
        package: &VerifiedPackage,
        device: &DeviceInfo,
        slotted: &Slotted,
        slot: Option<&str>,
        _cleared: &Cleared,
    ) -> Self {
        let slot = slot.map(str::to_string);
        // Writing the slot the device runs is writing live, as for a partition without slots.
        let running = device
            .slots
            .as_ref()
            .map(|s| s.current.trim_start_matches('_'));
        let writes_running = slot.is_some() && slot.as_deref() == running;
        let writes = package
            .manifest()
            .images
            .iter()
            .map(|image| {
                let target = image_target(image, device, slot.as_deref(), slotted);
                PlannedWrite {
                    partition: image.partition.clone(),
                    live: slot.is_some() && (writes_running || target == image.partition),
                    target,
                    bytes: image.size,
                    sparse: image.sparse.is_some(),
                }
            })
            .collect::<Vec<_>>();
        // Switch only to a slot that this plan actually writes.
        let activate_slot = slot.filter(|s| {
            let suffix = format!("_{s}");
            writes.iter().any(|w| w.target.ends_with(&suffix))
        });
        let images = &package.manifest().images;
        let phase = |i: &usize| match &images[*i] {
            image if image.reboot_bootloader => 0,
            image if image.logical => 2,
            _ => 1,
        };
        let mut order: Vec<usize> = (0..writes.len()).collect();
        order.sort_by_key(phase);
        FlashPlan {
            writes,
            activate_slot,
            order,
        }
    }

    /// Sum of the image sizes.
    pub fn total_bytes(&self) -> u64 {
        self.writes.iter().map(|w| w.bytes).sum()
    }
}

/// The partition each image of `package` would be written to, with its size if known.
pub fn targets(
    package: &VerifiedPackage,
    device: &DeviceInfo,
    slotted: &Slotted,
    slot: Option<&str>,
) -> Vec<(String, Option<u64>)> {
    package
        .manifest()
        .images
        .iter()
        .map(|image| {
            let target = image_target(image, device, slot, slotted);
            let size = device.partitions.get(&target).copied();
            (target, size)
        })
        .collect()
}

/// Where `image` goes: a logical partition on an A/B device always has slots (its name in
/// super carries the slot, and the bootloader, which does not know it, is not asked);
/// a physical one as [`target_partition`] decides.
fn image_target(
    image: &crate::package::Image,
    device: &DeviceInfo,
    slot: Option<&str>,
    slotted: &Slotted,
) -> String {
    match slot {
        Some(slot) if image.logical => format!("{}_{slot}", image.partition),
        _ => target_partition(&image.partition, device, slot, slotted),
    }
}

/// The slot a flash writes on an A/B device: by default (and with `--slot other`) the one
/// after the current one; with `--slot a|b` that one, even the running one (the plan then
/// marks its writes live). `--slot all` is refused for a flash: writing both slots leaves
/// no slot to fall back on, and flashline writes one slot and switches to it only once
/// every image is verified; flash twice (`--slot a`, then `--slot b`) to fill both.
pub fn chosen_slot(
    choice: Option<SlotChoice>,
    device: &DeviceInfo,
) -> Result<Option<String>, String> {
    let count = device.slots.as_ref().map_or(0, |s| s.count);
    match choice {
        None => Ok(target_slot(device)),
        Some(SlotChoice::All) => Err(
            "flash --slot all is not supported: writing both slots leaves no slot to fall back \
             on; flash twice (--slot a, then --slot b) if both slots must hold the package"
                .into(),
        ),
        Some(choice) if count < 2 => Err(format!(
            "--slot {choice}: the device has no A/B slots; leave out --slot"
        )),
        Some(SlotChoice::Other) => Ok(target_slot(device)),
        Some(SlotChoice::Slot(letter)) => {
            let index = u32::from(letter) - u32::from('a');
            if index < count.min(26) {
                Ok(Some(letter.to_string()))
            } else {
                Err(format!(
                    "slot {letter} does not exist: the device has {count} slots"
                ))
            }
        }
    }
}

/// The slot after the current one (`a` → `b`, `b` → `a`), on A/B devices.
pub(super) fn target_slot(device: &DeviceInfo) -> Option<String> {
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

/// `boot` → `boot_b` when the device says `boot` has slots, `persist` → `persist` when it
/// says it has none; where it gave no answer (a bootloader without `has-slot:`), `boot_b`
/// if the device lists a slotted `boot_*` partition, with or without its size (or no plain
/// `boot`), else `boot`.
fn target_partition(
    partition: &str,
    device: &DeviceInfo,
    slot: Option<&str>,
    slotted: &Slotted,
) -> String {
    let Some(slot) = slot else {
        return partition.to_string();
    };
    let suffixed = format!("{partition}_{slot}");
    let listed = |name: &str| {
        device.partitions.contains_key(name) || device.partitions_size_unknown.contains(name)
    };
    let has_slots = slotted
        .get(partition)
        .copied()
        .unwrap_or_else(|| listed(&suffixed) || !listed(partition));
    if has_slots {
        suffixed
    } else {
        partition.to_string()
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
            lock: crate::device::LockState::Unknown,
            partitions: parts.iter().map(|p| (p.to_string(), 4096)).collect(),
            partitions_size_unknown: Default::default(),
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
        let none = Slotted::new();
        let d = device(Some("a"), &["boot_a", "boot_b", "userdata"]);
        assert_eq!(target_slot(&d).as_deref(), Some("b"));
        assert_eq!(target_partition("boot", &d, Some("b"), &none), "boot_b");
        assert_eq!(
            target_partition("userdata", &d, Some("b"), &none),
            "userdata"
        );
        let d = device(Some("b"), &["boot_a", "boot_b"]);
        assert_eq!(target_slot(&d).as_deref(), Some("a"));
    }

    #[test]
    fn the_device_answer_beats_the_partition_list() {
        // A size list that misses `persist` would make it look slotted; has-slot says no.
        let d = device(Some("a"), &["boot_a", "boot_b"]);
        let answers = Slotted::from([("persist".into(), false), ("modem".into(), true)]);
        assert_eq!(
            target_partition("persist", &d, Some("b"), &answers),
            "persist"
        );
        assert_eq!(
            target_partition("modem", &d, Some("b"), &answers),
            "modem_b"
        );
    }

    #[test]
    fn without_has_slot_partitions_of_unknown_size_count_too() {
        // fastbootd lists many partitions by `is-logical:` only: `persist` exists once
        // there, and stays `persist`.
        let mut d = device(Some("a"), &["boot_a", "boot_b"]);
        d.partitions_size_unknown = ["persist".to_string(), "vendor_a".to_string()].into();
        let none = Slotted::new();
        assert_eq!(target_partition("persist", &d, Some("b"), &none), "persist");
        assert_eq!(target_partition("vendor", &d, Some("b"), &none), "vendor_b");
    }

    #[test]
    fn flash_slot_choices() {
        let ab = device(Some("a"), &["boot_a", "boot_b"]);
        assert_eq!(chosen_slot(None, &ab).unwrap().as_deref(), Some("b"));
        assert_eq!(
            chosen_slot(Some(SlotChoice::Other), &ab)
                .unwrap()
                .as_deref(),
            Some("b")
        );
        assert_eq!(
            chosen_slot(Some(SlotChoice::Slot('a')), &ab)
                .unwrap()
                .as_deref(),
            Some("a")
        );
        assert!(chosen_slot(Some(SlotChoice::Slot('c')), &ab).is_err());
        assert!(chosen_slot(Some(SlotChoice::All), &ab)
            .unwrap_err()
            .contains("--slot all is not supported"));
        let plain = device(None, &["boot"]);
        assert_eq!(chosen_slot(None, &plain).unwrap(), None);
        assert!(chosen_slot(Some(SlotChoice::Other), &plain)
            .unwrap_err()
            .contains("no A/B slots"));
    }

    #[test]
    fn plain_devices_keep_names() {
        let d = device(None, &["boot"]);
        assert_eq!(target_slot(&d), None);
        assert_eq!(target_partition("boot", &d, None, &Slotted::new()), "boot");
    }
}
