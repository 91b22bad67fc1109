//! Whether a package's logical partitions fit `super`, decided before the first write.
//!
//! fastbootd answers a resize that does not fit with "Not enough space to resize
//! partition", half way through a job. Everything that decides it is known before: the
//! size of `super`, what its metadata and the alignment of every extent cost, which
//! logical partitions stay (the other slot's, kept by `update-super`; without
//! `update-super`, every partition the package does not write, the `-cow` partitions of a
//! Virtual A/B update among them) and the group limits of the package's own
//! `super_empty.img`. This module is that arithmetic, on facts read from the device
//! (see [`SuperFacts`]); it talks to no device.

use std::collections::BTreeMap;

use super::preflight::{Check, Status};
use crate::protocol::lp::{
    Metadata, BLOCK_DEVICE_SLOT_SUFFIXED, HEADER_FLAG_VIRTUAL_AB, SECTOR_SIZE,
};

/// liblp's default extent alignment, used where the package carries no layout.
const DEFAULT_ALIGNMENT: u64 = 1024 * 1024;
/// What the metadata region of a super device takes with liblp's defaults (4 KiB
/// reserved, two geometries, 3 slots of 64 KiB and their backups), aligned to 1 MiB:
/// used where the package carries no layout to say.
const DEFAULT_METADATA_REGION: u64 = 1024 * 1024;

/// What fastbootd reported about `super` and the logical partitions in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SuperFacts {
    /// `super-partition-name` (`super`, or `system_a` on a retrofit device).
    pub super_name: String,
    /// `partition-size:<super name>`, where reported.
    pub super_size: Option<u64>,
    /// Every logical partition (`is-logical:<p>` = yes) with its size.
    pub logical: BTreeMap<String, u64>,
    /// `snapshot-update-status` other than `none`, if so.
    pub snapshot_pending: Option<String>,
}

impl SuperFacts {
    /// Whether super is split over the system partitions of each slot (a device launched
    /// before Android 10 and retrofitted): `super-partition-name` starts with `system_`.
    pub fn is_retrofit(&self) -> bool {
        self.super_name.starts_with("system_")
    }
}

/// One logical partition the job writes: its name on the device and its bytes there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalWrite {
    /// `system_b`.
    pub target: String,
    /// The image's expanded size.
    pub bytes: u64,
}

/// Bytes usable for partition data in a super of `super_size` bytes: the size less the
/// metadata region, which starts the device and is rounded up to the first aligned extent.
fn usable(super_size: u64, layout: Option<&Metadata>) -> u64 {
    let region = match layout {
        Some(m) => {
            let alignment = alignment_of(Some(m));
            m.block_devices
                .first()
                .map(|d| d.first_logical_sector.saturating_mul(SECTOR_SIZE))
                .filter(|&start| start > 0)
                .unwrap_or_else(|| {
                    m.geometry
                        .metadata_region_size()
                        .div_ceil(alignment)
                        .saturating_mul(alignment)
                })
        }
        None => DEFAULT_METADATA_REGION,
    };
    super_size.saturating_sub(region)
}

fn alignment_of(layout: Option<&Metadata>) -> u64 {
    layout
        .and_then(|m| m.block_devices.first())
        .map(|d| u64::from(d.alignment))
        .filter(|&a| a > 0)
        .unwrap_or(DEFAULT_ALIGNMENT)
}

/// What one partition of `bytes` takes in super: extents start on alignment boundaries,
/// so up to one alignment unit is lost per partition.
fn footprint(bytes: u64, alignment: u64) -> u64 {
    bytes.div_ceil(alignment).saturating_mul(alignment)
}

/// The physical partitions the package's layout spreads super over, named for
/// `target_slot` (`super`; on a retrofit layout `system_b`, `vendor_b`, …).
pub fn super_devices(layout: &Metadata, target_slot: Option<&str>) -> Vec<String> {
    layout
        .block_devices
        .iter()
        .map(|d| match target_slot {
            Some(slot) if d.flags & BLOCK_DEVICE_SLOT_SUFFIXED != 0 => {
                format!("{}_{slot}", d.partition_name)
            }
            _ => d.partition_name.clone(),
        })
        .collect()
}

/// Whether the logical partitions the job writes fit super, as a preflight check.
///
/// With `update_super`, the device drops every partition of the slot it runs as (the
/// target slot) and of the `cow` group, and keeps the others: those of the other slot
/// stay, except on Virtual A/B (the layout's header flag), where super holds one copy and
/// `update-super` drops the partitions of both slots (AOSP `UpdateSuper`). Without it,
/// everything the job does not write stays where it is.
pub fn super_fit(
    facts: &SuperFacts,
    layout: Option<&Metadata>,
    writes: &[LogicalWrite],
    update_super: bool,
) -> Check {
    let virtual_ab = layout.is_some_and(|m| m.flags & HEADER_FLAG_VIRTUAL_AB != 0);
    let name = "super-space".to_string();
    let Some(super_size) = facts.super_size else {
        return Check {
            name,
            status: Status::Warn,
            actual: "size not reported".into(),
            required: "room for the logical partitions".into(),
            message: format!(
                "fastbootd does not report the size of {}, so whether the logical partitions \
                 fit cannot be checked: the device itself refuses them if they do not",
                facts.super_name
            ),
            relaxed_by: None,
        };
    };
    let alignment = alignment_of(layout);
    let usable = usable(super_size, layout);
    let need: u64 = writes.iter().map(|w| footprint(w.bytes, alignment)).sum();
    let written = |p: &str| writes.iter().any(|w| w.target == p);
    let target_slots: Vec<&str> = writes.iter().filter_map(|w| slot_of(&w.target)).collect();
    let stays: BTreeMap<&str, u64> = facts
        .logical
        .iter()
        .filter(|(p, _)| {
            // A retrofit super is the target slot's own system partition: only that
            // slot's partitions are in it.
            if facts.is_retrofit() && !slot_of(p).is_some_and(|s| target_slots.contains(&s)) {
                return false;
            }
            // A pending update is cancelled first, which deletes its -cow partitions.
            if p.ends_with("-cow") && facts.snapshot_pending.is_some() {
                return false;
            }
            // A partition the job writes takes the size of its image instead.
            if written(p) {
                return false;
            }
            if update_super {
                !p.ends_with("-cow")
                    && match slot_of(p) {
                        Some(s) => !virtual_ab && !target_slots.contains(&s),
                        None => true,
                    }
            } else {
                true
            }
        })
        .map(|(p, size)| (p.as_str(), footprint(*size, alignment)))
        .collect();
    let kept: u64 = stays.values().sum();
    let actual = format!(
        "{} holds {usable} bytes for partitions; {kept} of them stay in use",
        facts.super_name
    );
    let required = format!("{need} bytes for the new partitions");
    if let Some(refusal) = layout.and_then(|m| group_overflow(m, writes, alignment)) {
        return Check {
            name,
            status: Status::Refuse,
            actual,
            required,
            message: refusal,
            relaxed_by: None,
        };
    }
    if need.saturating_add(kept) <= usable {
        return Check {
            name,
            status: Status::Pass,
            actual,
            required,
            message: format!(
                "the logical partitions fit {}: {} bytes stay free",
                facts.super_name,
                usable - kept - need
            ),
            relaxed_by: None,
        };
    }
    let short = need.saturating_add(kept) - usable;
    let sum = |pick: &dyn Fn(&str) -> bool| -> (u64, Vec<&str>) {
        let names: Vec<&str> = stays.keys().copied().filter(|p| pick(p)).collect();
        (names.iter().map(|p| stays[p]).sum(), names)
    };
    let (cow, cow_names) = sum(&|p| p.ends_with("-cow"));
    let (other, other_names) = sum(&|p| !p.ends_with("-cow") && slot_of(p).is_some());
    let fix = if cow >= short {
        format!(
            "delete the -cow partitions a Virtual A/B update left ({}; `fastboot \
             delete-logical-partition NAME` each, with no update pending), then run the job again",
            cow_names.join(", ")
        )
    } else if other.saturating_add(cow) >= short {
        format!(
            "delete the other slot's logical partitions ({}; `fastboot delete-logical-partition \
             NAME` each: the phone then boots only the new slot), then run the job again",
            other_names
                .iter()
                .chain(&cow_names)
                .copied()
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else if !update_super {
        "update super: pack the factory image's super_empty.img with the package ([dynamic]), \
         so that super is laid out anew before the partitions are written"
            .to_string()
    } else {
        "these partitions are larger than this device's super: the package is not for it"
            .to_string()
    };
    Check {
        name,
        status: Status::Refuse,
        actual,
        required,
        message: format!(
            "the logical partitions do not fit {} (fastbootd would stop half way with \"Not \
             enough space to resize partition\"): {short} bytes are missing. Fix: {fix}",
            facts.super_name
        ),
        relaxed_by: None,
    }
}

/// The slot letter a partition name ends with (`system_b` → `b`).
fn slot_of(name: &str) -> Option<&str> {
    let (_, slot) = name.rsplit_once('_')?;
    (slot.len() == 1 && slot.bytes().all(|b| b.is_ascii_lowercase())).then_some(slot)
}

/// A refusal if the writes overflow the size limit of a group of the package's layout.
fn group_overflow(layout: &Metadata, writes: &[LogicalWrite], alignment: u64) -> Option<String> {
    let mut used: BTreeMap<usize, u64> = BTreeMap::new();
    for w in writes {
        let partition = layout.partition(&w.target)?;
        *used.entry(partition.group_index as usize).or_default() += footprint(w.bytes, alignment);
    }
    used.into_iter().find_map(|(index, bytes)| {
        let group = layout.groups.get(index)?;
        (group.maximum_size > 0 && bytes > group.maximum_size).then(|| {
            format!(
                "the partitions of group {} need {bytes} bytes but the package's own \
                 super_empty.img limits that group to {}: the package is inconsistent",
                group.name, group.maximum_size
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn facts(logical: &[(&str, u64)]) -> SuperFacts {
        SuperFacts {
            super_name: "super".into(),
            super_size: Some(64 * MIB),
            logical: logical.iter().map(|(p, s)| (p.to_string(), *s)).collect(),
            snapshot_pending: None,
        }
    }

    fn writes(list: &[(&str, u64)]) -> Vec<LogicalWrite> {
        list.iter()
            .map(|(t, b)| LogicalWrite {
                target: t.to_string(),
                bytes: *b,
            })
            .collect()
    }

    #[test]
    fn room_beside_the_other_slot_passes() {
        let f = facts(&[("system_a", 20 * MIB), ("system_b", 30 * MIB)]);
        let c = super_fit(&f, None, &writes(&[("system_b", 30 * MIB)]), true);
        assert_eq!(c.status, Status::Pass, "{}", c.message);
    }

    #[test]
    fn cow_partitions_are_named_as_the_fix_without_update_super() {
        let f = facts(&[("system_a", 20 * MIB), ("system_b-cow", 30 * MIB)]);
        let c = super_fit(&f, None, &writes(&[("system_b", 30 * MIB)]), false);
        assert_eq!(c.status, Status::Refuse);
        assert!(c.message.contains("Not enough space to resize partition"));
        assert!(c.message.contains("system_b-cow"), "{}", c.message);
        // update-super drops them, so then they do not count; nor when the update they
        // belong to is pending, since it is cancelled first.
        let c = super_fit(&f, None, &writes(&[("system_b", 30 * MIB)]), true);
        assert_eq!(c.status, Status::Pass, "{}", c.message);
        let pending = SuperFacts {
            snapshot_pending: Some("snapshotted".into()),
            ..f
        };
        let c = super_fit(&pending, None, &writes(&[("system_b", 30 * MIB)]), false);
        assert_eq!(c.status, Status::Pass, "{}", c.message);
    }

    #[test]
    fn the_other_slot_is_named_when_only_it_would_make_room() {
        let f = facts(&[("system_a", 40 * MIB)]);
        let c = super_fit(&f, None, &writes(&[("system_b", 30 * MIB)]), true);
        assert_eq!(c.status, Status::Refuse);
        assert!(
            c.message.contains("delete the other slot's"),
            "{}",
            c.message
        );
        assert!(c.message.contains("system_a"), "{}", c.message);
        let c = super_fit(&facts(&[]), None, &writes(&[("system_b", 70 * MIB)]), true);
        assert!(
            c.message.contains("larger than this device's super"),
            "{}",
            c.message
        );
    }

    #[test]
    fn alignment_and_metadata_count() {
        // 63 MiB usable; two 31.5 MiB partitions take 32 MiB each once aligned.
        let half = 31 * MIB + MIB / 2;
        let c = super_fit(
            &facts(&[]),
            None,
            &writes(&[("system_b", half), ("vendor_b", half)]),
            true,
        );
        assert_eq!(c.status, Status::Refuse, "{}", c.message);
    }
}
