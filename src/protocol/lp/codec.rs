//! Byte-level reading and writing of the geometry block and of one metadata copy.
//!
//! Parsing trusts nothing: every count, offset and size is checked against the bytes at
//! hand and against the caps below before anything is allocated from it, and every
//! checksum is recomputed.

use sha2::{Digest, Sha256};

use super::{
    BlockDevice, Extent, Geometry, Group, LpError, Metadata, Partition, Target, GEOMETRY_MAGIC,
    GEOMETRY_SIZE, HEADER_MAGIC, MAJOR_VERSION, MINOR_VERSION_MAX, PARTITION_ATTR_DISABLED,
    PARTITION_ATTR_READONLY, PARTITION_ATTR_SLOT_SUFFIXED, PARTITION_ATTR_UPDATED, SECTOR_SIZE,
};

/// Size of the geometry structure inside its 4 KiB block.
pub const GEOMETRY_STRUCT_SIZE: usize = 52;
/// Header size of versions 10.0 and 10.1.
pub const HEADER_SIZE_V1_0: usize = 128;
/// Header size from version 10.2 on (adds `flags` and reserved space).
pub const HEADER_SIZE_V1_2: usize = 256;
const PARTITION_ENTRY_SIZE: usize = 52;
const EXTENT_ENTRY_SIZE: usize = 24;
const GROUP_ENTRY_SIZE: usize = 48;
const BLOCK_DEVICE_ENTRY_SIZE: usize = 64;
/// Names are fixed 36-byte fields, NUL-padded.
const NAME_FIELD: usize = 36;

/// Largest metadata copy accepted. AOSP builds use 64 KiB; the cap only keeps a corrupt
/// geometry from making us allocate or seek absurdly.
pub const MAX_METADATA_SIZE: u32 = 4 * 1024 * 1024;
/// Most metadata slots accepted (real devices use 2 or 3).
pub const MAX_SLOTS: u32 = 16;

const CHECKSUM_AT: usize = 8;
const HEADER_CHECKSUM_AT: usize = 12;
const TABLES_CHECKSUM_AT: usize = 48;

/// Little-endian field reads from a slice already known to be long enough.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn u16(&self, at: usize) -> u16 {
        u16::from_le_bytes([self.0[at], self.0[at + 1]])
    }
    fn u32(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.0[at..at + 4].try_into().expect("4 bytes"))
    }
    fn u64(&self, at: usize) -> u64 {
        u64::from_le_bytes(self.0[at..at + 8].try_into().expect("8 bytes"))
    }
    fn name(&self, at: usize) -> Result<String, LpError> {
        let field = &self.0[at..at + NAME_FIELD];
        let len = field.iter().position(|&b| b == 0).unwrap_or(NAME_FIELD);
        let (name, rest) = field.split_at(len);
        if !name.is_ascii() || rest.iter().any(|&b| b != 0) {
            return Err(LpError::Name(String::from_utf8_lossy(field).into_owned()));
        }
        Ok(String::from_utf8_lossy(name).into_owned())
    }
}

fn sha256_with_zeroed(bytes: &[u8], checksum_at: usize) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(&bytes[..checksum_at]);
    hasher.update([0u8; 32]);
    hasher.update(&bytes[checksum_at + 32..]);
    hasher.finalize().into()
}

/// Parses a geometry block (the first [`GEOMETRY_STRUCT_SIZE`] bytes of `block` count).
pub fn parse_geometry(block: &[u8]) -> Result<Geometry, LpError> {
    if let Some(magic) = block.get(..4) {
        let found = u32::from_le_bytes(magic.try_into().expect("4 bytes"));
        if found != GEOMETRY_MAGIC {
            return Err(LpError::GeometryMagic { found });
        }
    }
    if block.len() < GEOMETRY_STRUCT_SIZE {
        return Err(LpError::Truncated {
            what: "geometry",
            len: block.len() as u64,
        });
    }
    let f = Fields(block);
    let struct_size = f.u32(4);
    if struct_size as usize != GEOMETRY_STRUCT_SIZE {
        return Err(LpError::GeometryStructSize(struct_size));
    }
    let bytes = &block[..GEOMETRY_STRUCT_SIZE];
    if sha256_with_zeroed(bytes, CHECKSUM_AT) != bytes[CHECKSUM_AT..CHECKSUM_AT + 32] {
        return Err(LpError::GeometryChecksum);
    }
    let geometry = Geometry {
        metadata_max_size: f.u32(40),
        metadata_slot_count: f.u32(44),
        logical_block_size: f.u32(48),
    };
    check_geometry(&geometry)?;
    Ok(geometry)
}

/// The same sanity rules for geometries read and geometries about to be written.
pub fn check_geometry(g: &Geometry) -> Result<(), LpError> {
    let bad = |why: String| Err(LpError::GeometryInvalid(why));
    if g.metadata_max_size == 0
        || !g.metadata_max_size.is_multiple_of(SECTOR_SIZE as u32)
        || g.metadata_max_size > MAX_METADATA_SIZE
    {
        return bad(format!(
            "metadata_max_size {} is not a non-zero multiple of 512 up to {MAX_METADATA_SIZE}",
            g.metadata_max_size
        ));
    }
    if (HEADER_SIZE_V1_2 as u32) > g.metadata_max_size {
        return bad(format!(
            "metadata_max_size {} cannot hold a header",
            g.metadata_max_size
        ));
    }
    if g.metadata_slot_count == 0 || g.metadata_slot_count > MAX_SLOTS {
        return bad(format!(
            "metadata_slot_count {} is not between 1 and {MAX_SLOTS}",
            g.metadata_slot_count
        ));
    }
    if g.logical_block_size == 0 || !g.logical_block_size.is_multiple_of(SECTOR_SIZE as u32) {
        return bad(format!(
            "logical_block_size {} is not a non-zero multiple of 512",
            g.logical_block_size
        ));
    }
    Ok(())
}

/// The geometry's 4 KiB block, checksummed.
pub fn serialize_geometry(g: &Geometry) -> Result<Vec<u8>, LpError> {
    check_geometry(g)?;
    let mut block = vec![0u8; GEOMETRY_SIZE];
    block[0..4].copy_from_slice(&GEOMETRY_MAGIC.to_le_bytes());
    block[4..8].copy_from_slice(&(GEOMETRY_STRUCT_SIZE as u32).to_le_bytes());
    block[40..44].copy_from_slice(&g.metadata_max_size.to_le_bytes());
    block[44..48].copy_from_slice(&g.metadata_slot_count.to_le_bytes());
    block[48..52].copy_from_slice(&g.logical_block_size.to_le_bytes());
    let sum = sha256_with_zeroed(&block[..GEOMETRY_STRUCT_SIZE], CHECKSUM_AT);
    block[CHECKSUM_AT..CHECKSUM_AT + 32].copy_from_slice(&sum);
    Ok(block)
}

/// Where one table lies inside the tables area.
#[derive(Clone, Copy)]
struct TableDescriptor {
    offset: u32,
    num_entries: u32,
    entry_size: u32,
}

impl TableDescriptor {
    fn read(f: &Fields, at: usize) -> Self {
        TableDescriptor {
            offset: f.u32(at),
            num_entries: f.u32(at + 4),
            entry_size: f.u32(at + 8),
        }
    }

    /// The entries' bytes, after checking the entry size and that they fit `tables`.
    fn entries<'a>(
        self,
        table: &'static str,
        expected_entry: usize,
        tables: &'a [u8],
    ) -> Result<impl Iterator<Item = &'a [u8]>, LpError> {
        let malformed = |reason: String| LpError::Table { table, reason };
        if self.entry_size as usize != expected_entry {
            return Err(malformed(format!(
                "entry size {} (expected {expected_entry})",
                self.entry_size
            )));
        }
        let len = u64::from(self.num_entries) * u64::from(self.entry_size);
        let end = u64::from(self.offset) + len;
        if end > tables.len() as u64 {
            return Err(malformed(format!(
                "{} entries at offset {} run past the {} bytes of tables",
                self.num_entries,
                self.offset,
                tables.len()
            )));
        }
        Ok(tables[self.offset as usize..end as usize].chunks_exact(expected_entry))
    }
}

/// Parses one metadata copy from `bytes` (its header first), checking both checksums and
/// every cross-reference between the tables.
pub fn parse_metadata(geometry: Geometry, bytes: &[u8]) -> Result<Metadata, LpError> {
    let truncated = |what| LpError::Truncated {
        what,
        len: bytes.len() as u64,
    };
    if bytes.len() < HEADER_SIZE_V1_0 {
        return Err(truncated("metadata header"));
    }
    let f = Fields(bytes);
    let magic = f.u32(0);
    if magic != HEADER_MAGIC {
        return Err(LpError::HeaderMagic { found: magic });
    }
    let (major, minor) = (f.u16(4), f.u16(6));
    if major != MAJOR_VERSION || minor > MINOR_VERSION_MAX {
        return Err(LpError::Version { major, minor });
    }
    let expected = if minor >= 2 {
        HEADER_SIZE_V1_2
    } else {
        HEADER_SIZE_V1_0
    };
    let header_size = f.u32(8);
    if header_size as usize != expected {
        return Err(LpError::HeaderSize {
            found: header_size,
            expected: expected as u32,
            minor,
        });
    }
    if bytes.len() < expected {
        return Err(truncated("metadata header"));
    }
    let header = &bytes[..expected];
    if sha256_with_zeroed(header, HEADER_CHECKSUM_AT)
        != header[HEADER_CHECKSUM_AT..HEADER_CHECKSUM_AT + 32]
    {
        return Err(LpError::HeaderChecksum);
    }
    let tables_size = u64::from(f.u32(44));
    let max = u64::from(geometry.metadata_max_size);
    if expected as u64 + tables_size > max {
        return Err(LpError::TablesTooLarge {
            size: tables_size,
            max: max - expected as u64,
        });
    }
    let tables = bytes
        .get(expected..expected + tables_size as usize)
        .ok_or(truncated("metadata tables"))?;
    let sum: [u8; 32] = Sha256::digest(tables).into();
    if sum != bytes[TABLES_CHECKSUM_AT..TABLES_CHECKSUM_AT + 32] {
        return Err(LpError::TablesChecksum);
    }
    let flags = if minor >= 2 { f.u32(128) } else { 0 };

    let extents = TableDescriptor::read(&f, 92)
        .entries("extent", EXTENT_ENTRY_SIZE, tables)?
        .map(parse_extent)
        .collect::<Result<Vec<_>, _>>()?;
    let groups = TableDescriptor::read(&f, 104)
        .entries("group", GROUP_ENTRY_SIZE, tables)?
        .map(|e| {
            let f = Fields(e);
            Ok(Group {
                name: f.name(0)?,
                flags: f.u32(36),
                maximum_size: f.u64(40),
            })
        })
        .collect::<Result<Vec<_>, LpError>>()?;
    let block_devices = TableDescriptor::read(&f, 116)
        .entries("block device", BLOCK_DEVICE_ENTRY_SIZE, tables)?
        .map(|e| {
            let f = Fields(e);
            Ok(BlockDevice {
                first_logical_sector: f.u64(0),
                alignment: f.u32(8),
                alignment_offset: f.u32(12),
                size: f.u64(16),
                partition_name: f.name(24)?,
                flags: f.u32(60),
            })
        })
        .collect::<Result<Vec<_>, LpError>>()?;
    let partitions = TableDescriptor::read(&f, 80)
        .entries("partition", PARTITION_ENTRY_SIZE, tables)?
        .map(|e| {
            let f = Fields(e);
            Ok(Partition {
                name: f.name(0)?,
                attributes: f.u32(36),
                first_extent_index: f.u32(40),
                num_extents: f.u32(44),
                group_index: f.u32(48),
            })
        })
        .collect::<Result<Vec<_>, LpError>>()?;

    let metadata = Metadata {
        geometry,
        minor_version: minor,
        flags,
        partitions,
        extents,
        groups,
        block_devices,
    };
    check_metadata(&metadata)?;
    Ok(metadata)
}

fn parse_extent(e: &[u8]) -> Result<Extent, LpError> {
    let f = Fields(e);
    let target = match f.u32(8) {
        0 => Target::Linear {
            first_sector: f.u64(12),
            block_device: f.u32(20),
        },
        1 => Target::Zero,
        other => {
            return Err(LpError::Table {
                table: "extent",
                reason: format!("unknown target type {other}"),
            })
        }
    };
    Ok(Extent {
        num_sectors: f.u64(0),
        target,
    })
}

/// The partition attributes valid in metadata of `minor` version.
fn valid_attributes(minor: u16) -> u32 {
    let v0 = PARTITION_ATTR_READONLY | PARTITION_ATTR_SLOT_SUFFIXED;
    if minor >= 1 {
        v0 | PARTITION_ATTR_UPDATED | PARTITION_ATTR_DISABLED
    } else {
        v0
    }
}

/// Cross-table rules, for metadata read and metadata about to be written alike.
pub fn check_metadata(m: &Metadata) -> Result<(), LpError> {
    if m.minor_version > MINOR_VERSION_MAX {
        return Err(LpError::Version {
            major: MAJOR_VERSION,
            minor: m.minor_version,
        });
    }
    if m.minor_version < 2 && m.flags != 0 {
        return Err(LpError::Unsupported(format!(
            "header flags {:#x} need metadata version 10.2",
            m.flags
        )));
    }
    let Some(super_device) = m.block_devices.first() else {
        return Err(LpError::Table {
            table: "block device",
            reason: "there is none; the first must be the super partition".into(),
        });
    };
    if m.geometry.metadata_region_size() > super_device.first_logical_sector * SECTOR_SIZE {
        return Err(LpError::Table {
            table: "block device",
            reason: format!(
                "first logical sector {} lies inside the metadata region ({} bytes)",
                super_device.first_logical_sector,
                m.geometry.metadata_region_size()
            ),
        });
    }
    let attributes = valid_attributes(m.minor_version);
    for p in &m.partitions {
        let bad = |reason: String| LpError::PartitionInvalid {
            partition: p.name.clone(),
            reason,
        };
        if p.attributes & !attributes != 0 {
            return Err(bad(format!(
                "attributes {:#x} are not valid in version 10.{}",
                p.attributes, m.minor_version
            )));
        }
        let end = u64::from(p.first_extent_index) + u64::from(p.num_extents);
        if end > m.extents.len() as u64 {
            return Err(bad(format!(
                "extents {}..{end} run past the {} extents",
                p.first_extent_index,
                m.extents.len()
            )));
        }
        if p.group_index as usize >= m.groups.len() {
            return Err(bad(format!(
                "group index {} but there are {} groups",
                p.group_index,
                m.groups.len()
            )));
        }
    }
    for (index, e) in m.extents.iter().enumerate() {
        if let Target::Linear {
            block_device,
            first_sector,
        } = e.target
        {
            let bad = |reason: String| LpError::ExtentInvalid { index, reason };
            let device = m.block_devices.get(block_device as usize).ok_or_else(|| {
                bad(format!(
                    "block device {block_device} but there are {}",
                    m.block_devices.len()
                ))
            })?;
            let end = first_sector
                .checked_add(e.num_sectors)
                .and_then(|s| s.checked_mul(SECTOR_SIZE));
            if first_sector < device.first_logical_sector || end.is_none_or(|end| end > device.size)
            {
                return Err(bad(format!(
                    "sectors {first_sector}+{} lie outside {:?}'s usable sectors {}..{}",
                    e.num_sectors,
                    device.partition_name,
                    device.first_logical_sector,
                    device.size / SECTOR_SIZE
                )));
            }
        }
    }
    Ok(())
}

fn put_name(out: &mut Vec<u8>, name: &str) -> Result<(), LpError> {
    if !name.is_ascii() || name.len() >= NAME_FIELD || name.as_bytes().contains(&0) {
        return Err(LpError::Name(name.to_string()));
    }
    let mut field = [0u8; NAME_FIELD];
    field[..name.len()].copy_from_slice(name.as_bytes());
    out.extend_from_slice(&field);
    Ok(())
}

/// One metadata copy: the header then the partition, extent, group and block device
/// tables, with both checksums. Fails if it would not fit `metadata_max_size`.
pub fn serialize_metadata(m: &Metadata) -> Result<Vec<u8>, LpError> {
    check_geometry(&m.geometry)?;
    check_metadata(m)?;
    let mut partitions = Vec::with_capacity(m.partitions.len() * PARTITION_ENTRY_SIZE);
    for p in &m.partitions {
        put_name(&mut partitions, &p.name)?;
        for v in [
            p.attributes,
            p.first_extent_index,
            p.num_extents,
            p.group_index,
        ] {
            partitions.extend_from_slice(&v.to_le_bytes());
        }
    }
    let mut extents = Vec::with_capacity(m.extents.len() * EXTENT_ENTRY_SIZE);
    for e in &m.extents {
        let (kind, data, source) = match e.target {
            Target::Linear {
                block_device,
                first_sector,
            } => (0u32, first_sector, block_device),
            Target::Zero => (1, 0, 0),
        };
        extents.extend_from_slice(&e.num_sectors.to_le_bytes());
        extents.extend_from_slice(&kind.to_le_bytes());
        extents.extend_from_slice(&data.to_le_bytes());
        extents.extend_from_slice(&source.to_le_bytes());
    }
    let mut groups = Vec::with_capacity(m.groups.len() * GROUP_ENTRY_SIZE);
    for g in &m.groups {
        put_name(&mut groups, &g.name)?;
        groups.extend_from_slice(&g.flags.to_le_bytes());
        groups.extend_from_slice(&g.maximum_size.to_le_bytes());
    }
    let mut devices = Vec::with_capacity(m.block_devices.len() * BLOCK_DEVICE_ENTRY_SIZE);
    for d in &m.block_devices {
        devices.extend_from_slice(&d.first_logical_sector.to_le_bytes());
        devices.extend_from_slice(&d.alignment.to_le_bytes());
        devices.extend_from_slice(&d.alignment_offset.to_le_bytes());
        devices.extend_from_slice(&d.size.to_le_bytes());
        put_name(&mut devices, &d.partition_name)?;
        devices.extend_from_slice(&d.flags.to_le_bytes());
    }

    let header_size = if m.minor_version >= 2 {
        HEADER_SIZE_V1_2
    } else {
        HEADER_SIZE_V1_0
    };
    let tables_size = partitions.len() + extents.len() + groups.len() + devices.len();
    let max = m.geometry.metadata_max_size as usize;
    if header_size + tables_size > max {
        return Err(LpError::TablesTooLarge {
            size: tables_size as u64,
            max: (max - header_size) as u64,
        });
    }
    let mut out = vec![0u8; header_size];
    out[0..4].copy_from_slice(&HEADER_MAGIC.to_le_bytes());
    out[4..6].copy_from_slice(&MAJOR_VERSION.to_le_bytes());
    out[6..8].copy_from_slice(&m.minor_version.to_le_bytes());
    out[8..12].copy_from_slice(&(header_size as u32).to_le_bytes());
    out[44..48].copy_from_slice(&(tables_size as u32).to_le_bytes());
    let mut offset = 0usize;
    let tables = [
        (80, &partitions, PARTITION_ENTRY_SIZE),
        (92, &extents, EXTENT_ENTRY_SIZE),
        (104, &groups, GROUP_ENTRY_SIZE),
        (116, &devices, BLOCK_DEVICE_ENTRY_SIZE),
    ];
    for (at, table, entry) in tables {
        out[at..at + 4].copy_from_slice(&(offset as u32).to_le_bytes());
        out[at + 4..at + 8].copy_from_slice(&((table.len() / entry) as u32).to_le_bytes());
        out[at + 8..at + 12].copy_from_slice(&(entry as u32).to_le_bytes());
        offset += table.len();
    }
    if m.minor_version >= 2 {
        out[128..132].copy_from_slice(&m.flags.to_le_bytes());
    }
    for (_, table, _) in tables {
        out.extend_from_slice(table);
    }
    let tables_sum: [u8; 32] = Sha256::digest(&out[header_size..]).into();
    out[TABLES_CHECKSUM_AT..TABLES_CHECKSUM_AT + 32].copy_from_slice(&tables_sum);
    let header_sum = sha256_with_zeroed(&out[..header_size], HEADER_CHECKSUM_AT);
    out[HEADER_CHECKSUM_AT..HEADER_CHECKSUM_AT + 32].copy_from_slice(&header_sum);
    Ok(out)
}
