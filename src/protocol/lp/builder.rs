//! Laying out logical partitions on a super device: from a list of partitions and the
//! device size to complete metadata.
//!
//! The layout follows the same rules as AOSP's builder so that the result looks like what
//! devices expect: the metadata region (reserved bytes, two geometries, primary and backup
//! copies of every slot) comes first, data starts at the next `alignment` boundary, every
//! partition is one linear extent starting on an `alignment` boundary, and sizes are
//! rounded up to the logical block size. Group 0 is always `default`, without a limit.

use super::codec::{check_geometry, check_metadata, serialize_metadata};
use super::{
    BlockDevice, Extent, Geometry, Group, LpError, Metadata, Partition, Target,
    HEADER_FLAG_VIRTUAL_AB, PARTITION_ATTR_DISABLED, PARTITION_ATTR_UPDATED, SECTOR_SIZE,
};

/// The group every partition without another group belongs to.
pub const DEFAULT_GROUP: &str = "default";

/// A partition group to create, with its size limit (0: none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    pub name: String,
    pub maximum_size: u64,
}

/// A logical partition to create. A size of 0 gives a partition without extents, as in
/// the `super_empty.img` of factory images (the real size comes at flash time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSpec {
    pub name: String,
    pub group: String,
    pub size: u64,
    pub attributes: u32,
}

/// Everything needed to lay out a super device.
#[derive(Debug, Clone)]
pub struct SuperLayout {
    /// The physical partition's name (`super`).
    pub device_name: String,
    /// The super device's size in bytes.
    pub device_size: u64,
    pub geometry: Geometry,
    /// Extent alignment in bytes (AOSP's default is 1 MiB).
    pub alignment: u32,
    /// Sets the Virtual A/B header flag, which needs metadata version 10.2.
    pub virtual_ab: bool,
    /// Groups besides `default`.
    pub groups: Vec<GroupSpec>,
    pub partitions: Vec<PartitionSpec>,
}

impl SuperLayout {
    /// A layout with AOSP's defaults: 64 KiB metadata, `slots` slots, 4 KiB blocks,
    /// 1 MiB alignment, no groups or partitions yet.
    pub fn new(device_size: u64, slots: u32) -> Self {
        SuperLayout {
            device_name: "super".into(),
            device_size,
            geometry: Geometry {
                metadata_max_size: 65536,
                metadata_slot_count: slots,
                logical_block_size: 4096,
            },
            alignment: 1024 * 1024,
            virtual_ab: false,
            groups: Vec::new(),
            partitions: Vec::new(),
        }
    }

    /// Lays the partitions out in order and returns the metadata, checked and known to
    /// serialize within `metadata_max_size`.
    pub fn build(&self) -> Result<Metadata, LpError> {
        check_geometry(&self.geometry)?;
        let layout = |why: String| Err(LpError::Layout(why));
        let alignment = u64::from(self.alignment);
        if alignment == 0 || !alignment.is_multiple_of(u64::from(self.geometry.logical_block_size))
        {
            return layout(format!(
                "alignment {} is not a non-zero multiple of the block size {}",
                self.alignment, self.geometry.logical_block_size
            ));
        }
        if !self
            .device_size
            .is_multiple_of(u64::from(self.geometry.logical_block_size))
        {
            return layout(format!(
                "device size {} is not a multiple of the block size {}",
                self.device_size, self.geometry.logical_block_size
            ));
        }
        let first_logical = align_up(self.geometry.metadata_region_size(), alignment)
            .filter(|&start| start < self.device_size);
        let Some(first_logical) = first_logical else {
            return layout(format!(
                "a {}-byte device cannot hold the {}-byte metadata region and any data",
                self.device_size,
                self.geometry.metadata_region_size()
            ));
        };

        let mut groups = vec![Group {
            name: DEFAULT_GROUP.into(),
            flags: 0,
            maximum_size: 0,
        }];
        for g in &self.groups {
            if groups.iter().any(|known| known.name == g.name) {
                return layout(format!("group {:?} is given twice", g.name));
            }
            groups.push(Group {
                name: g.name.clone(),
                flags: 0,
                maximum_size: g.maximum_size,
            });
        }
        let mut group_used = vec![0u64; groups.len()];

        let mut cursor = first_logical;
        let mut partitions = Vec::with_capacity(self.partitions.len());
        let mut extents = Vec::new();
        let mut minor_version = 0;
        for spec in &self.partitions {
            if partitions.iter().any(|p: &Partition| p.name == spec.name) {
                return layout(format!("partition {:?} is given twice", spec.name));
            }
            let Some(group_index) = groups.iter().position(|g| g.name == spec.group) else {
                return layout(format!(
                    "partition {:?} names group {:?}, which does not exist",
                    spec.name, spec.group
                ));
            };
            if spec.attributes & (PARTITION_ATTR_UPDATED | PARTITION_ATTR_DISABLED) != 0 {
                minor_version = 1;
            }
            let size = align_up(spec.size, u64::from(self.geometry.logical_block_size))
                .ok_or_else(|| LpError::Layout(format!("{:?} is too large", spec.name)))?;
            group_used[group_index] += size;
            let limit = groups[group_index].maximum_size;
            if limit != 0 && group_used[group_index] > limit {
                return layout(format!(
                    "group {:?} would hold {} bytes, over its limit of {limit}",
                    spec.group, group_used[group_index]
                ));
            }
            let first_extent_index = extents.len() as u32;
            if size > 0 {
                let start = align_up(cursor, alignment).unwrap_or(u64::MAX);
                if start.saturating_add(size) > self.device_size {
                    return layout(format!(
                        "partition {:?} ({size} bytes) does not fit: {} of the {}-byte device are free",
                        spec.name,
                        self.device_size.saturating_sub(start),
                        self.device_size
                    ));
                }
                extents.push(Extent {
                    num_sectors: size / SECTOR_SIZE,
                    target: Target::Linear {
                        block_device: 0,
                        first_sector: start / SECTOR_SIZE,
                    },
                });
                cursor = start + size;
            }
            partitions.push(Partition {
                name: spec.name.clone(),
                attributes: spec.attributes,
                first_extent_index,
                num_extents: extents.len() as u32 - first_extent_index,
                group_index: group_index as u32,
            });
        }
        let metadata = Metadata {
            geometry: self.geometry,
            minor_version: if self.virtual_ab { 2 } else { minor_version },
            flags: if self.virtual_ab {
                HEADER_FLAG_VIRTUAL_AB
            } else {
                0
            },
            partitions,
            extents,
            groups,
            block_devices: vec![BlockDevice {
                first_logical_sector: first_logical / SECTOR_SIZE,
                alignment: self.alignment,
                alignment_offset: 0,
                size: self.device_size,
                partition_name: self.device_name.clone(),
                flags: 0,
            }],
        };
        check_metadata(&metadata)?;
        // Names and table sizes are only checked by the serializer; fail here, not later.
        serialize_metadata(&metadata)?;
        Ok(metadata)
    }
}

fn align_up(value: u64, alignment: u64) -> Option<u64> {
    value.div_ceil(alignment).checked_mul(alignment)
}
