//! Dynamic partitions: the physical `super` partition and the logical partitions its LP
//! metadata carves out of it (system, vendor, product, system_ext, odm, …), as fastbootd
//! edits them.
//!
//! The metadata lives on the super partition's file exactly as on a device (see
//! [`crate::protocol::lp`]), so a test can read it with any LP reader and pull a logical
//! partition out through its extents. Every change is made on a copy of the table, checked
//! and serialized, and only then written into every metadata slot: a refused command
//! leaves the file as it was.
//!
//! Allocation follows the rules of AOSP's `MetadataBuilder` (fs_mgr/liblp): a size is
//! rounded up to the logical block size, new extents start on the super device's
//! alignment, a growing partition takes free space from the lowest sectors up (so it may
//! end up in several extents), a shrinking one loses its last sectors, and a group with a
//! maximum size refuses to hold more.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::str::FromStr;

use crate::protocol::lp::{
    self, BlockDevice, Extent, Geometry, Group, GroupSpec, LpError, Metadata, Partition,
    PartitionSpec, SuperLayout, Target, PARTITION_ATTR_UPDATED, SECTOR_SIZE,
};
use crate::protocol::sparse::{Header, RegionSink};

use super::storage::Meter;

const MIB: u64 = 1024 * 1024;
/// Group of Virtual A/B's copy-on-write partitions (AOSP's `kCowGroupName`): `update-super`
/// drops them, and they take space in super until the update is cancelled or they are
/// deleted.
pub(super) const COW_GROUP: &str = "cow";
/// Name suffix of a copy-on-write partition (`system_b-cow`).
const COW_SUFFIX: &str = "-cow";
/// Longest logical partition name LP metadata holds (a 36-byte field with its NUL).
const MAX_LOGICAL_NAME: usize = 35;
/// Size of the buffer that moves data into extents.
const CHUNK: usize = 256 * 1024;

/// A phone with dynamic partitions (Android 10 and later): what its `super` holds and how
/// its userspace fastboot (fastbootd) behaves. Set [`super::PhoneConfig::dynamic`] to one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dynamic {
    /// Size of the physical `super` partition in bytes (of each of `system_a`/`system_b`
    /// on a retrofit phone).
    pub super_size: u64,
    /// Logical partitions (base names, slot suffixes added on A/B phones) and their sizes,
    /// laid out in super when its file holds no metadata yet. A physical partition of the
    /// same base name in [`super::PhoneConfig::partitions`] is left out.
    pub logical: Vec<(String, u64)>,
    /// A phone that launched before Android 10 and got dynamic partitions by update: no
    /// `super`; each slot's `system_<slot>` partition holds that slot's metadata and
    /// logical partitions, and `super-partition-name` is `system_<current slot>`. Needs
    /// slots.
    pub retrofit: bool,
    /// Virtual A/B update state. Other than `none`, super also holds a `<name>-cow`
    /// partition for every logical partition of the other slot, taking space until
    /// `snapshot-update:cancel` (or deleting them).
    pub snapshot: SnapshotStatus,
    /// fastbootd's own `max-download-size`: AOSP's fastbootd reports 0x10000000 (its
    /// `kMaxDownloadSizeDefault`), whatever the bootloader reports.
    pub fastbootd_max_download_size: u32,
}

impl Default for Dynamic {
    fn default() -> Self {
        Dynamic {
            super_size: 2048 * MIB,
            logical: vec![
                ("system".into(), 192 * MIB),
                ("system_ext".into(), 32 * MIB),
                ("product".into(), 64 * MIB),
                ("vendor".into(), 64 * MIB),
                ("odm".into(), 4 * MIB),
            ],
            retrofit: false,
            snapshot: SnapshotStatus::None,
            fastbootd_max_download_size: 0x1000_0000,
        }
    }
}

/// Virtual A/B merge state, as `snapshot-update-status` reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SnapshotStatus {
    /// No update pending.
    #[default]
    None,
    /// An update was applied to the other slot and not yet booted.
    Snapshotted,
    /// The updated slot booted and is merging its snapshots.
    Merging,
}

impl fmt::Display for SnapshotStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SnapshotStatus::None => "none",
            SnapshotStatus::Snapshotted => "snapshotted",
            SnapshotStatus::Merging => "merging",
        })
    }
}

impl FromStr for SnapshotStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(SnapshotStatus::None),
            "snapshotted" => Ok(SnapshotStatus::Snapshotted),
            "merging" => Ok(SnapshotStatus::Merging),
            _ => Err(format!(
                "unknown snapshot state {s:?}: expected none, snapshotted or merging"
            )),
        }
    }
}

impl Dynamic {
    /// The metadata laid down on a fresh super device named `device`. `slots` lists the
    /// slot suffixes whose partitions live on it (`[""]` without slots); `other` is the
    /// suffix of the slot an update would target (Virtual A/B's `-cow` partitions).
    pub(super) fn initial_metadata(
        &self,
        device: &str,
        slots: &[&str],
        other: Option<&str>,
    ) -> Result<Metadata, LpError> {
        let metadata_slots = if slots.len() > 1 || self.retrofit {
            2
        } else {
            1
        };
        let mut layout = SuperLayout::new(self.super_size, metadata_slots);
        layout.device_name = device.to_string();
        layout.virtual_ab = self.snapshot != SnapshotStatus::None;
        for slot in slots {
            layout.groups.push(GroupSpec {
                name: format!("main{slot}"),
                maximum_size: 0,
            });
            for (base, size) in &self.logical {
                let updated = self.snapshot != SnapshotStatus::None && Some(*slot) == other;
                layout.partitions.push(PartitionSpec {
                    name: format!("{base}{slot}"),
                    group: format!("main{slot}"),
                    size: *size,
                    attributes: if updated { PARTITION_ATTR_UPDATED } else { 0 },
                });
            }
        }
        if let (SnapshotStatus::Snapshotted | SnapshotStatus::Merging, Some(other)) =
            (self.snapshot, other)
        {
            layout.groups.push(GroupSpec {
                name: COW_GROUP.into(),
                maximum_size: 0,
            });
            for (base, size) in &self.logical {
                layout.partitions.push(PartitionSpec {
                    name: format!("{base}{other}{COW_SUFFIX}"),
                    group: COW_GROUP.into(),
                    size: *size,
                    attributes: 0,
                });
            }
        }
        layout.build()
    }
}

/// Why fastbootd refused to change the table; the text is AOSP fastbootd's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    NoSpaceToResize,
    NoSpaceForNew,
    Exists,
    NoSuchPartition,
    BadName,
}

impl Refusal {
    /// The FAIL text AOSP's fastbootd sends (fastboot/device/commands.cpp).
    pub fn message(self) -> &'static str {
        match self {
            Refusal::NoSpaceToResize => "Not enough space to resize partition",
            Refusal::NoSpaceForNew => "Not enough space for partition",
            Refusal::Exists => "Partition already exists",
            Refusal::NoSuchPartition => "Partition does not exist",
            Refusal::BadName => "Failed to add partition",
        }
    }
}

/// One logical partition while the table is edited: its extents are its own here, and
/// become a run of the extent table only when exported.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Logical {
    name: String,
    attributes: u32,
    group: usize,
    extents: Vec<Extent>,
}

impl Logical {
    fn sectors(&self) -> u64 {
        self.extents.iter().map(|e| e.num_sectors).sum()
    }
}

/// The LP metadata of one super device, in a form that is easy to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Table {
    geometry: Geometry,
    minor_version: u16,
    flags: u32,
    groups: Vec<Group>,
    device: BlockDevice,
    parts: Vec<Logical>,
}

impl Table {
    /// Takes metadata apart. Only metadata on a single block device is handled: that is
    /// what this phone's super partitions are.
    pub fn from_metadata(m: &Metadata) -> Result<Table, LpError> {
        let [device] = m.block_devices.as_slice() else {
            return Err(LpError::Unsupported(format!(
                "the metadata spans {} block devices; this phone has one per super",
                m.block_devices.len()
            )));
        };
        Ok(Table {
            geometry: m.geometry,
            minor_version: m.minor_version,
            flags: m.flags,
            groups: m.groups.clone(),
            device: device.clone(),
            parts: m
                .partitions
                .iter()
                .map(|p| Logical {
                    name: p.name.clone(),
                    attributes: p.attributes,
                    group: p.group_index as usize,
                    extents: m.extents_of(p).to_vec(),
                })
                .collect(),
        })
    }

    /// Puts the metadata back together, every partition's extents one run of the table.
    pub fn to_metadata(&self) -> Metadata {
        let mut partitions = Vec::with_capacity(self.parts.len());
        let mut extents = Vec::new();
        for part in &self.parts {
            partitions.push(Partition {
                name: part.name.clone(),
                attributes: part.attributes,
                first_extent_index: extents.len() as u32,
                num_extents: part.extents.len() as u32,
                group_index: part.group as u32,
            });
            extents.extend_from_slice(&part.extents);
        }
        // The partitions' attributes decide the version, as AOSP's builder does.
        let needs_v1 = self
            .parts
            .iter()
            .any(|p| p.attributes & (PARTITION_ATTR_UPDATED | lp::PARTITION_ATTR_DISABLED) != 0);
        let minor_version = if needs_v1 {
            self.minor_version.max(1)
        } else {
            self.minor_version
        };
        Metadata {
            geometry: self.geometry,
            minor_version,
            flags: self.flags,
            partitions,
            extents,
            groups: self.groups.clone(),
            block_devices: vec![self.device.clone()],
        }
    }

    /// Whether the header carries the Virtual A/B flag.
    pub fn is_virtual_ab(&self) -> bool {
        self.flags & lp::HEADER_FLAG_VIRTUAL_AB != 0
    }

    /// Names of all logical partitions, in table order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().map(|p| p.name.as_str())
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.parts.iter().position(|p| p.name == name)
    }

    /// Whether `name` is a logical partition here.
    pub fn contains(&self, name: &str) -> bool {
        self.index(name).is_some()
    }

    /// A logical partition's size in bytes.
    pub fn size_of(&self, name: &str) -> Option<u64> {
        Some(self.parts[self.index(name)?].sectors() * SECTOR_SIZE)
    }

    /// The name of `name`'s group.
    pub fn group_of(&self, name: &str) -> Option<&str> {
        let part = &self.parts[self.index(name)?];
        self.groups.get(part.group).map(|g| g.name.as_str())
    }

    /// Where a logical partition's bytes are: for each extent in logical order, its byte
    /// offset on the super device (`None` for a zero extent, which stores nothing) and
    /// length.
    pub fn placement(&self, name: &str) -> Option<Vec<(Option<u64>, u64)>> {
        let part = &self.parts[self.index(name)?];
        Some(
            part.extents
                .iter()
                .map(|e| {
                    let offset = match e.target {
                        Target::Linear { first_sector, .. } => Some(first_sector * SECTOR_SIZE),
                        Target::Zero => None,
                    };
                    (offset, e.num_sectors * SECTOR_SIZE)
                })
                .collect(),
        )
    }

    /// Clears the `UPDATED` attribute, as fastbootd does before resizing or flashing a
    /// partition: that cancels its snapshot.
    pub fn clear_updated(&mut self, name: &str) {
        if let Some(i) = self.index(name) {
            self.parts[i].attributes &= !PARTITION_ATTR_UPDATED;
        }
    }

    /// Adds an empty partition in the `default` group and gives it `size` bytes.
    pub fn create(&mut self, name: &str, size: u64) -> Result<(), Refusal> {
        if self.contains(name) {
            return Err(Refusal::Exists);
        }
        if !is_valid_logical_name(name) {
            return Err(Refusal::BadName);
        }
        let group = self
            .groups
            .iter()
            .position(|g| g.name == lp::builder::DEFAULT_GROUP)
            .unwrap_or(0);
        self.parts.push(Logical {
            name: name.to_string(),
            attributes: 0,
            group,
            extents: Vec::new(),
        });
        let index = self.parts.len() - 1;
        self.resize_at(index, size).map_err(|_| {
            self.parts.pop();
            Refusal::NoSpaceForNew
        })
    }

    /// Removes a partition; removing one that does not exist changes nothing, as in AOSP.
    pub fn remove(&mut self, name: &str) {
        self.parts.retain(|p| p.name != name);
    }

    /// Removes every partition of `group`.
    pub fn remove_group_members(&mut self, group: &str) {
        let Some(index) = self.groups.iter().position(|g| g.name == group) else {
            return;
        };
        self.parts.retain(|p| p.group != index);
    }

    /// Gives `name` exactly `size` bytes (rounded up to the logical block size).
    pub fn resize(&mut self, name: &str, size: u64) -> Result<(), Refusal> {
        let index = self.index(name).ok_or(Refusal::NoSuchPartition)?;
        self.resize_at(index, size)
    }

    fn resize_at(&mut self, index: usize, size: u64) -> Result<(), Refusal> {
        let block = u64::from(self.geometry.logical_block_size);
        let want = size
            .checked_next_multiple_of(block)
            .ok_or(Refusal::NoSpaceToResize)?
            / SECTOR_SIZE;
        let before = self.parts[index].clone();
        let have = before.sectors();
        if want <= have {
            shrink(&mut self.parts[index].extents, want);
        } else if !self.grow(index, want - have) {
            return Err(Refusal::NoSpaceToResize);
        }
        if !self.groups_within_limits() {
            self.parts[index] = before;
            return Err(Refusal::NoSpaceToResize);
        }
        Ok(())
    }

    /// Sectors not used by any extent, from the first logical sector to the device end,
    /// as (start, end) pairs in ascending order.
    fn free_regions(&self) -> Vec<(u64, u64)> {
        let mut used: Vec<(u64, u64)> = self
            .parts
            .iter()
            .flat_map(|p| &p.extents)
            .filter_map(|e| match e.target {
                Target::Linear { first_sector, .. } => {
                    Some((first_sector, first_sector + e.num_sectors))
                }
                Target::Zero => None,
            })
            .collect();
        used.sort_unstable();
        let end = self.device.size / SECTOR_SIZE;
        let mut free = Vec::new();
        let mut cursor = self.device.first_logical_sector;
        for (start, stop) in used {
            if start > cursor {
                free.push((cursor, start.min(end)));
            }
            cursor = cursor.max(stop);
        }
        if cursor < end {
            free.push((cursor, end));
        }
        free
    }

    /// Adds `need` sectors to partition `index` from free space, each new extent starting
    /// on the device's alignment; false (and nothing changed) if super has too little room.
    fn grow(&mut self, index: usize, mut need: u64) -> bool {
        let align = (u64::from(self.device.alignment) / SECTOR_SIZE).max(1);
        let mut taken = Vec::new();
        for (start, end) in self.free_regions() {
            if need == 0 {
                break;
            }
            let start = start.next_multiple_of(align);
            if start >= end {
                continue;
            }
            let n = need.min(end - start);
            taken.push(Extent {
                num_sectors: n,
                target: Target::Linear {
                    block_device: 0,
                    first_sector: start,
                },
            });
            need -= n;
        }
        if need > 0 {
            return false;
        }
        let extents = &mut self.parts[index].extents;
        for extent in taken {
            match (extents.last_mut(), extent.target) {
                (
                    Some(Extent {
                        num_sectors,
                        target:
                            Target::Linear {
                                block_device: 0,
                                first_sector: last_start,
                            },
                    }),
                    Target::Linear { first_sector, .. },
                ) if *last_start + *num_sectors == first_sector => {
                    *num_sectors += extent.num_sectors
                }
                _ => extents.push(extent),
            }
        }
        true
    }

    fn groups_within_limits(&self) -> bool {
        self.groups.iter().enumerate().all(|(i, g)| {
            g.maximum_size == 0
                || self
                    .parts
                    .iter()
                    .filter(|p| p.group == i)
                    .map(|p| p.sectors() * SECTOR_SIZE)
                    .sum::<u64>()
                    <= g.maximum_size
        })
    }

    /// Brings `names` over from `old` into this table (AOSP's `ImportPartitions`): each
    /// keeps its extents and attributes and joins the group of the same name, which must
    /// exist here; its extents must lie in this device's usable sectors and clash with
    /// nothing already here. Returns false, changing nothing, if they do not fit.
    pub fn import(&mut self, old: &Table, names: &[String]) -> bool {
        let mut merged = self.clone();
        for name in names {
            let Some(part) = old.index(name).map(|i| &old.parts[i]) else {
                continue;
            };
            let Some(group_name) = old.groups.get(part.group).map(|g| &g.name) else {
                return false;
            };
            let Some(group) = merged.groups.iter().position(|g| &g.name == group_name) else {
                return false;
            };
            merged.parts.retain(|p| &p.name != name);
            merged.parts.push(Logical {
                group,
                ..part.clone()
            });
        }
        if !merged.extents_are_sound() || !merged.groups_within_limits() {
            return false;
        }
        *self = merged;
        true
    }

    /// Every linear extent inside the usable sectors, none overlapping another.
    fn extents_are_sound(&self) -> bool {
        let mut used: Vec<(u64, u64)> = Vec::new();
        for e in self.parts.iter().flat_map(|p| &p.extents) {
            if let Target::Linear { first_sector, .. } = e.target {
                let end = first_sector + e.num_sectors;
                if first_sector < self.device.first_logical_sector
                    || end * SECTOR_SIZE > self.device.size
                {
                    return false;
                }
                used.push((first_sector, end));
            }
        }
        used.sort_unstable();
        used.windows(2).all(|w| w[0].1 <= w[1].0)
    }

    /// Checks that new metadata can replace this one on the same device: the same
    /// geometry (it is fixed for the life of a device) and a super no larger than the
    /// partition.
    pub fn accepts(&self, new: &Table, partition_size: u64) -> Result<(), String> {
        if new.geometry != self.geometry {
            return Err("the new metadata has another geometry than the device".into());
        }
        check_fits(new, partition_size)
    }
}

/// Whether `new` describes a super device that fits a partition of `partition_size` bytes.
pub(super) fn check_fits(new: &Table, partition_size: u64) -> Result<(), String> {
    let block = u64::from(new.geometry.logical_block_size);
    if !new.device.size.is_multiple_of(block) {
        return Err(format!(
            "the super size {} is not a multiple of the {block}-byte logical block",
            new.device.size
        ));
    }
    if new.device.size > partition_size {
        return Err(format!(
            "the metadata describes a {}-byte super but the partition holds {partition_size}",
            new.device.size
        ));
    }
    Ok(())
}

/// Cuts `extents` down to `want` sectors, dropping and shortening from the end.
fn shrink(extents: &mut Vec<Extent>, want: u64) {
    let mut kept = 0;
    extents.retain_mut(|e| {
        if kept >= want {
            return false;
        }
        e.num_sectors = e.num_sectors.min(want - kept);
        kept += e.num_sectors;
        true
    });
}

/// A name LP metadata can hold and a host can send: 1 to 35 of `[A-Za-z0-9_.-]`.
pub(super) fn is_valid_logical_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_LOGICAL_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Reads slot `slot`'s table from a super partition file.
pub(super) fn load(file: &mut File, slot: u32) -> Result<Table, LpError> {
    let (_, metadata) = lp::read_metadata(file, slot)?;
    Table::from_metadata(&metadata)
}

/// Writes `table` into every metadata slot of a super partition file.
pub(super) fn store(file: &mut File, table: &Table) -> Result<(), LpError> {
    lp::write_metadata_region(&table.to_metadata(), file)?;
    file.sync_data()?;
    Ok(())
}

/// Writes a logical partition's bytes into its extents on the super file, counting them
/// through the fault plan's meter.
pub(super) struct ExtentWriter<'a> {
    file: File,
    placement: Vec<(Option<u64>, u64)>,
    size: u64,
    /// The current FILL pattern repeated to [`CHUNK`] bytes.
    fill: Vec<u8>,
    meter: &'a mut Meter,
}

impl<'a> ExtentWriter<'a> {
    pub fn new(file: File, placement: Vec<(Option<u64>, u64)>, meter: &'a mut Meter) -> Self {
        let size = placement.iter().map(|(_, len)| len).sum();
        ExtentWriter {
            file,
            placement,
            size,
            fill: Vec::new(),
            meter,
        }
    }

    /// Writes `len` bytes of `src` from the partition's start (a raw image).
    pub fn write_raw(&mut self, mut src: impl Read, len: u64) -> io::Result<()> {
        self.check(0, len)?;
        let mut buf = vec![0u8; CHUNK];
        let mut offset = 0;
        while offset < len {
            let n = (len - offset).min(CHUNK as u64) as usize;
            src.read_exact(&mut buf[..n])?;
            self.write_at(offset, &buf[..n])?;
            offset += n as u64;
        }
        Ok(())
    }

    /// Zeroes the whole partition (erase), outside the meter: erasing writes no image bytes.
    pub fn zero(&mut self) -> io::Result<()> {
        let zeros = vec![0u8; CHUNK];
        for &(start, len) in &self.placement {
            let Some(start) = start else { continue };
            self.file.seek(SeekFrom::Start(start))?;
            let mut left = len;
            while left > 0 {
                let n = left.min(CHUNK as u64) as usize;
                self.file.write_all(&zeros[..n])?;
                left -= n as u64;
            }
        }
        Ok(())
    }

    fn check(&self, offset: u64, len: u64) -> io::Result<()> {
        if offset.checked_add(len).is_none_or(|end| end > self.size) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "region {offset}+{len} lies past the partition end at {}",
                    self.size
                ),
            ));
        }
        Ok(())
    }

    /// Writes `bytes` at logical `offset`, across as many extents as it spans.
    fn write_at(&mut self, mut offset: u64, mut bytes: &[u8]) -> io::Result<()> {
        self.check(offset, bytes.len() as u64)?;
        let mut extent_start = 0;
        for &(physical, len) in &self.placement {
            if bytes.is_empty() {
                break;
            }
            let extent_end = extent_start + len;
            if offset < extent_end {
                let n = (extent_end - offset).min(bytes.len() as u64) as usize;
                if let Some(physical) = physical {
                    self.file
                        .seek(SeekFrom::Start(physical + offset - extent_start))?;
                    self.meter.write(&mut self.file, &bytes[..n])?;
                }
                bytes = &bytes[n..];
                offset += n as u64;
            }
            extent_start = extent_end;
        }
        Ok(())
    }
}

impl RegionSink for ExtentWriter<'_> {
    fn begin(&mut self, header: &Header) -> io::Result<()> {
        self.check(0, header.expanded_len())
    }

    fn data(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.write_at(offset, bytes)
    }

    fn fill(&mut self, offset: u64, len: u64, pattern: [u8; 4]) -> io::Result<()> {
        self.check(offset, len)?;
        if self.fill.get(..4) != Some(&pattern[..]) {
            self.fill = pattern.repeat(CHUNK / 4);
        }
        let fill = std::mem::take(&mut self.fill);
        let mut done = 0;
        let result = loop {
            if done >= len {
                break Ok(());
            }
            let n = (len - done).min(fill.len() as u64) as usize;
            if let Err(e) = self.write_at(offset + done, &fill[..n]) {
                break Err(e);
            }
            done += n as u64;
        };
        self.fill = fill;
        result
    }

    fn skip(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.check(offset, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(super_size: u64, parts: &[(&str, u64)]) -> Table {
        let mut layout = SuperLayout::new(super_size, 2);
        for (name, size) in parts {
            layout.partitions.push(PartitionSpec {
                name: name.to_string(),
                group: lp::builder::DEFAULT_GROUP.into(),
                size: *size,
                attributes: 0,
            });
        }
        Table::from_metadata(&layout.build().unwrap()).unwrap()
    }

    #[test]
    fn resize_grows_into_free_space_and_refuses_past_it() {
        let mut t = table(16 * MIB, &[("system_a", 4 * MIB), ("vendor_a", MIB)]);
        // Usable space: 16 MiB minus the 1 MiB-aligned metadata region.
        t.resize("system_a", 8 * MIB).unwrap();
        assert_eq!(t.size_of("system_a"), Some(8 * MIB));
        // system_a now has two extents: its first 4 MiB and 4 MiB after vendor_a.
        assert_eq!(t.placement("system_a").unwrap().len(), 2);
        assert_eq!(
            t.resize("system_a", 64 * MIB),
            Err(Refusal::NoSpaceToResize)
        );
        assert_eq!(t.size_of("system_a"), Some(8 * MIB), "unchanged on refusal");
        t.resize("system_a", 4097).unwrap();
        assert_eq!(
            t.size_of("system_a"),
            Some(8192),
            "rounded up to the block size"
        );
        t.resize("system_a", 0).unwrap();
        assert_eq!(t.placement("system_a").unwrap(), vec![]);
        assert_eq!(t.resize("nope", 0), Err(Refusal::NoSuchPartition));
        // The result is valid metadata that reads back the same.
        let back = Table::from_metadata(&t.to_metadata()).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn create_and_remove_follow_aosp() {
        let mut t = table(8 * MIB, &[("system_a", MIB)]);
        assert_eq!(t.create("system_a", 0), Err(Refusal::Exists));
        assert_eq!(t.create("x", 64 * MIB), Err(Refusal::NoSpaceForNew));
        assert!(!t.contains("x"), "a refused create leaves nothing behind");
        assert_eq!(t.create(&"n".repeat(36), 0), Err(Refusal::BadName));
        t.create("scratch", MIB).unwrap();
        assert_eq!(t.group_of("scratch"), Some("default"));
        t.remove("scratch");
        t.remove("never-there");
        assert_eq!(t.names().collect::<Vec<_>>(), ["system_a"]);
    }

    #[test]
    fn group_limits_refuse_growth() {
        let mut layout = SuperLayout::new(16 * MIB, 1);
        layout.groups.push(GroupSpec {
            name: "main".into(),
            maximum_size: 2 * MIB,
        });
        layout.partitions.push(PartitionSpec {
            name: "system".into(),
            group: "main".into(),
            size: MIB,
            attributes: 0,
        });
        let mut t = Table::from_metadata(&layout.build().unwrap()).unwrap();
        t.resize("system", 2 * MIB).unwrap();
        assert_eq!(t.resize("system", 3 * MIB), Err(Refusal::NoSpaceToResize));
    }

    #[test]
    fn import_keeps_extents_and_refuses_clashes() {
        let old = table(16 * MIB, &[("system_a", 2 * MIB), ("system_b", 2 * MIB)]);
        let mut new = table(16 * MIB, &[("system_a", 0), ("system_b", 0)]);
        assert!(new.import(&old, &["system_b".to_string()]));
        assert_eq!(new.placement("system_b"), old.placement("system_b"));
        assert_eq!(new.size_of("system_a"), Some(0));
        let mut crowded = table(16 * MIB, &[("vendor", 8 * MIB)]);
        assert!(!crowded.import(&old, &["system_b".to_string()]));
        assert!(!crowded.contains("system_b"));
    }

    #[test]
    fn writes_land_in_extents_in_logical_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("super.img");
        let file = File::create(&path).unwrap();
        file.set_len(64).unwrap();
        let mut meter = Meter::new(None);
        let placement = vec![(Some(40), 8), (None, 4), (Some(8), 8)];
        let mut w = ExtentWriter::new(file, placement, &mut meter);
        w.write_raw(&(1..=20).collect::<Vec<u8>>()[..], 20).unwrap();
        assert!(w.write_raw(&[0u8; 21][..], 21).is_err(), "past the end");
        drop(w);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[40..48], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&bytes[8..16], &[13, 14, 15, 16, 17, 18, 19, 20]);
        assert_eq!(meter.written(), 16, "the zero extent stores nothing");
    }

    #[test]
    fn snapshot_layout_has_cow_partitions() {
        let d = Dynamic {
            super_size: 64 * MIB,
            logical: vec![("system".into(), 4 * MIB)],
            snapshot: SnapshotStatus::Merging,
            ..Dynamic::default()
        };
        let m = d
            .initial_metadata("super", &["_a", "_b"], Some("_b"))
            .unwrap();
        let t = Table::from_metadata(&m).unwrap();
        assert_eq!(
            t.names().collect::<Vec<_>>(),
            ["system_a", "system_b", "system_b-cow"]
        );
        assert_eq!(t.group_of("system_b-cow"), Some(COW_GROUP));
        assert_eq!(m.flags, lp::HEADER_FLAG_VIRTUAL_AB);
        assert_eq!("merging".parse(), Ok(SnapshotStatus::Merging));
    }
}
