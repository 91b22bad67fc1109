//! Android logical-partition (LP) metadata: the table that carves the `super` partition
//! into `system`, `vendor`, `product` … on every phone launched with Android 10 or later.
//!
//! Layout facts come from AOSP's `fs_mgr/liblp` (`metadata_format.h`): a 4 KiB geometry
//! block (magic 0x616c4467) says how big one metadata copy may be and how many slots
//! exist; each metadata copy is a header (magic 0x414C5030, version 10.0–10.2) followed by
//! four tables — partitions, extents, groups, block devices — all little-endian and each
//! protected by SHA-256.
//!
//! Two containers carry it:
//! - a **super device** (or a full `super.img`): 4 KiB reserved, the geometry and its
//!   backup, then every slot's primary copy, then every slot's backup copy, then the
//!   partitions' data from `first_logical_sector` on;
//! - a **`super_empty.img`** (factory images, `fastboot update-super`): the geometry then a
//!   single metadata copy, nothing else.
//!
//! Everything here is a pure codec: [`codec`] reads and writes the structures, [`builder`]
//! lays out partitions on a device, [`image`] reads either container from a file and
//! streams a complete `super` image out of partition images.

pub mod builder;
pub mod codec;
pub mod image;

use serde::Serialize;

pub use builder::{GroupSpec, PartitionSpec, SuperLayout};
pub use image::{
    extract_partition, read_metadata, write_empty_image, write_metadata_region, write_super_image,
    Container, WrittenPartition,
};

/// Magic of the geometry block ("gDla" in little-endian order).
pub const GEOMETRY_MAGIC: u32 = 0x616c_4467;
/// Space the geometry occupies on disk; the structure itself is much smaller.
pub const GEOMETRY_SIZE: usize = 4096;
/// Magic of a metadata header ("0PLA").
pub const HEADER_MAGIC: u32 = 0x414C_5030;
/// The only major version liblp has ever shipped.
pub const MAJOR_VERSION: u16 = 10;
/// The newest minor version understood: 1 added partition attributes `UPDATED` and
/// `DISABLED`, 2 expanded the header with `flags`.
pub const MINOR_VERSION_MAX: u16 = 2;
/// Extents and the first logical sector are counted in 512-byte sectors.
pub const SECTOR_SIZE: u64 = 512;
/// Bytes left untouched at the start of a super device, so that it never looks like a
/// boot sector.
pub const RESERVED_BYTES: u64 = 4096;

/// Partition attribute: mapped read-only.
pub const PARTITION_ATTR_READONLY: u32 = 1 << 0;
/// Partition attribute: the name gets `_a`/`_b` from the metadata slot (retrofit images).
pub const PARTITION_ATTR_SLOT_SUFFIXED: u32 = 1 << 1;
/// Partition attribute (v1.1+): created or changed by a snapshot-based update.
pub const PARTITION_ATTR_UPDATED: u32 = 1 << 2;
/// Partition attribute (v1.1+): not to be mapped.
pub const PARTITION_ATTR_DISABLED: u32 = 1 << 3;
/// Group flag: the name gets the slot suffix (retrofit images).
pub const GROUP_SLOT_SUFFIXED: u32 = 1 << 0;
/// Block device flag: the name gets the slot suffix (retrofit images).
pub const BLOCK_DEVICE_SLOT_SUFFIXED: u32 = 1 << 0;
/// Header flag (v1.2): the device uses Virtual A/B.
pub const HEADER_FLAG_VIRTUAL_AB: u32 = 1 << 0;

/// How the metadata is to be found: fixed for the life of the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Geometry {
    /// Space reserved for one copy of the metadata, in bytes (a multiple of 512).
    pub metadata_max_size: u32,
    /// How many metadata slots exist (one per A/B slot, plus one on Virtual A/B).
    pub metadata_slot_count: u32,
    /// The device's logical block size; partition sizes are multiples of it.
    pub logical_block_size: u32,
}

impl Geometry {
    /// Bytes from the start of the super device to the end of the last backup copy.
    pub fn metadata_region_size(&self) -> u64 {
        RESERVED_BYTES
            + 2 * (GEOMETRY_SIZE as u64
                + u64::from(self.metadata_max_size) * u64::from(self.metadata_slot_count))
    }

    /// Where slot `slot`'s primary metadata copy starts on a super device.
    pub fn primary_metadata_offset(&self, slot: u32) -> u64 {
        RESERVED_BYTES
            + 2 * GEOMETRY_SIZE as u64
            + u64::from(self.metadata_max_size) * u64::from(slot)
    }

    /// Where slot `slot`'s backup metadata copy starts on a super device.
    pub fn backup_metadata_offset(&self, slot: u32) -> u64 {
        self.primary_metadata_offset(self.metadata_slot_count + slot)
    }
}

/// One copy of the metadata: the header's version and flags, and the four tables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Metadata {
    pub geometry: Geometry,
    /// 0, 1 or 2; 2 means the expanded header that carries `flags`.
    pub minor_version: u16,
    /// Header flags ([`HEADER_FLAG_VIRTUAL_AB`]); always 0 before v1.2.
    pub flags: u32,
    pub partitions: Vec<Partition>,
    pub extents: Vec<Extent>,
    pub groups: Vec<Group>,
    pub block_devices: Vec<BlockDevice>,
}

impl Metadata {
    /// The extents of `partition`, in logical order. Indexes were checked when parsing or
    /// building, so this cannot go out of bounds for metadata made by this module.
    pub fn extents_of(&self, partition: &Partition) -> &[Extent] {
        let first = partition.first_extent_index as usize;
        let end = first + partition.num_extents as usize;
        self.extents.get(first..end).unwrap_or(&[])
    }

    /// The size of `partition` in bytes: the sum of its extents.
    pub fn partition_size(&self, partition: &Partition) -> u64 {
        self.extents_of(partition)
            .iter()
            .map(|e| e.num_sectors * SECTOR_SIZE)
            .sum()
    }

    /// The partition called `name`, if any.
    pub fn partition(&self, name: &str) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.name == name)
    }

    /// The name of `partition`'s group.
    pub fn group_name(&self, partition: &Partition) -> &str {
        self.groups
            .get(partition.group_index as usize)
            .map_or("", |g| g.name.as_str())
    }
}

/// A logical partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Partition {
    pub name: String,
    pub attributes: u32,
    /// Index of its first extent in the extent table; its extents are consecutive.
    pub first_extent_index: u32,
    pub num_extents: u32,
    /// Index into the group table.
    pub group_index: u32,
}

/// A run of sectors of a logical partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Extent {
    pub num_sectors: u64,
    pub target: Target,
}

/// Where an extent's sectors live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Target {
    /// On block device `block_device`, from sector `first_sector` on (dm-linear).
    Linear {
        block_device: u32,
        first_sector: u64,
    },
    /// Reads as zeros and stores nothing (dm-zero).
    Zero,
}

/// A partition group: the partitions in it may together take at most `maximum_size`
/// bytes (0: no limit). Group 0 is always `default`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    pub name: String,
    pub flags: u32,
    pub maximum_size: u64,
}

/// A physical partition holding logical partitions. The first one holds the metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockDevice {
    /// The first sector usable by extents (after the metadata region).
    pub first_logical_sector: u64,
    /// Preferred extent alignment in bytes.
    pub alignment: u32,
    pub alignment_offset: u32,
    /// Size in bytes.
    pub size: u64,
    pub partition_name: String,
    pub flags: u32,
}

/// Why LP metadata could not be read, built or written.
#[derive(Debug, thiserror::Error)]
pub enum LpError {
    #[error("no LP geometry: magic is {found:#010x}, expected {GEOMETRY_MAGIC:#010x}")]
    GeometryMagic { found: u32 },
    #[error("LP geometry struct size is {0}, expected 52")]
    GeometryStructSize(u32),
    #[error("LP geometry checksum does not match its contents")]
    GeometryChecksum,
    #[error("LP geometry is implausible: {0}")]
    GeometryInvalid(String),
    #[error("no LP metadata header: magic is {found:#010x}, expected {HEADER_MAGIC:#010x}")]
    HeaderMagic { found: u32 },
    #[error("LP metadata version {major}.{minor} is not supported (10.0 to 10.2 are)")]
    Version { major: u16, minor: u16 },
    #[error("LP metadata header size is {found}, expected {expected} for version 10.{minor}")]
    HeaderSize {
        found: u32,
        expected: u32,
        minor: u16,
    },
    #[error("LP metadata header checksum does not match its contents")]
    HeaderChecksum,
    #[error("LP metadata tables checksum does not match their contents")]
    TablesChecksum,
    #[error("LP metadata tables take {size} bytes but a metadata copy may take at most {max}")]
    TablesTooLarge { size: u64, max: u64 },
    #[error("LP {table} table is malformed: {reason}")]
    Table { table: &'static str, reason: String },
    #[error("LP partition {partition:?}: {reason}")]
    PartitionInvalid { partition: String, reason: String },
    #[error("LP extent {index}: {reason}")]
    ExtentInvalid { index: usize, reason: String },
    #[error("LP name {0:?} is not NUL-terminated ASCII of at most 35 characters")]
    Name(String),
    #[error("LP metadata slot {slot} does not exist (the geometry has {count})")]
    Slot { slot: u32, count: u32 },
    #[error("the LP {what} is cut short: only {len} bytes of it are there")]
    Truncated { what: &'static str, len: u64 },
    #[error("layout: {0}")]
    Layout(String),
    #[error("image for partition {partition:?} is larger than the partition ({size} bytes)")]
    ImageTooLarge { partition: String, size: u64 },
    #[error("image for partition {partition:?} has non-zero bytes where a zero extent is")]
    ZeroExtentData { partition: String },
    #[error("no partition named {0:?} in the LP metadata")]
    NoSuchPartition(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}
