//! GUID partition tables (UEFI GPT): build one for a disk, and parse one read back.
//!
//! A Qualcomm device addresses its storage by LUN and sector; partition names exist only
//! in the GPT at the start of each LUN (with a backup copy at its end). The EDL driver reads
//! the table back to find partitions such as `modemst1` by label, and the EDL simulator
//! writes one on every new LUN, so both sides share this module.
//!
//! Layout on a disk of `N` sectors: LBA 0 holds a protective MBR, LBA 1 the primary header,
//! LBA 2… the entry array; the backup entry array sits just before the backup header at
//! LBA `N-1`. Every integer is little-endian and both the header and the entry array are
//! covered by a CRC-32. The parser checks both CRCs, the header fields and every entry
//! range, and never allocates from a size the disk declared without bounding it first.

use std::fmt;

/// Size of the header fields covered by the header CRC (revision 1.0).
const HEADER_LEN: usize = 92;
/// `"EFI PART"`.
const SIGNATURE: &[u8; 8] = b"EFI PART";
/// Revision 1.0.
const REVISION: u32 = 0x0001_0000;
/// Entries in a table this module builds; the UEFI minimum array is 16 KiB.
pub const ENTRY_COUNT: u32 = 128;
/// Size of one entry in a table this module builds.
pub const ENTRY_LEN: u32 = 128;
/// Longest label in UTF-16 code units (72 bytes in the entry).
pub const MAX_LABEL_UNITS: usize = 36;
/// Largest entry array the parser accepts (it has to hold it in memory).
const MAX_ENTRIES_LEN: u64 = 1024 * 1024;
/// Offset of the label inside an entry.
const LABEL_OFFSET: usize = 56;
/// MBR partition type of a protective GPT entry.
const MBR_PROTECTIVE_TYPE: u8 = 0xEE;

/// Why a table could not be built or a table read back is not a valid GPT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GptError {
    /// Sector sizes other than 512 and 4096 are not used by the storage we flash.
    #[error("unsupported sector size {0} (expected 512 or 4096)")]
    SectorSize(u32),
    /// The disk cannot hold the MBR, both headers and both entry arrays.
    #[error("a disk of {0} sectors is too small for a GPT")]
    DiskTooSmall(u64),
    /// A label that does not fit an entry, or is empty or contains NUL.
    #[error("partition label {0:?} is invalid: use 1 to 36 UTF-16 units without NUL")]
    BadLabel(String),
    /// A new partition does not fit in the space left.
    #[error("partition {label:?} of {sectors} sectors does not fit: {free} sectors left")]
    NoSpace {
        /// The partition.
        label: String,
        /// Its requested size.
        sectors: u64,
        /// Usable sectors still free.
        free: u64,
    },
    /// More partitions than the entry array has slots.
    #[error("more than {ENTRY_COUNT} partitions")]
    TooManyPartitions,
    /// The data is shorter than the structure it must contain.
    #[error("GPT data is truncated: {need} bytes needed, {have} given")]
    Truncated {
        /// Bytes the structure needs.
        need: u64,
        /// Bytes available.
        have: u64,
    },
    /// No `EFI PART` signature where the header should be.
    #[error("no GPT header signature at LBA {0}")]
    NoSignature(u64),
    /// A header field is out of range or inconsistent.
    #[error("invalid GPT header: {0}")]
    BadHeader(String),
    /// The header CRC does not match its contents.
    #[error("GPT header CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    HeaderCrc {
        /// The CRC in the header.
        stored: u32,
        /// The CRC of the header as read.
        computed: u32,
    },
    /// The entry array CRC does not match its contents.
    #[error("GPT entry array CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    EntriesCrc {
        /// The CRC in the header.
        stored: u32,
        /// The CRC of the entries as read.
        computed: u32,
    },
    /// An entry is inconsistent (range outside the usable area, overlap, bad label).
    #[error("invalid GPT entry {index}: {reason}")]
    BadEntry {
        /// Zero-based entry slot.
        index: u32,
        /// What is wrong with it.
        reason: String,
    },
}

/// A GUID in its on-disk byte order (the first three fields little-endian).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// The all-zero GUID that marks an unused entry.
    pub const ZERO: Guid = Guid([0; 16]);
    /// "Basic data" (`EBD0A0A2-B9E5-4433-87C0-68B6B72699C7`), the generic data type.
    pub const BASIC_DATA: Guid = Guid::from_fields(
        0xEBD0_A0A2,
        0xB9E5,
        0x4433,
        [0x87, 0xC0, 0x68, 0xB6, 0xB7, 0x26, 0x99, 0xC7],
    );

    /// Builds a GUID from the fields of its text form `d1-d2-d3-d4[0..2]-d4[2..8]`.
    pub const fn from_fields(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> Guid {
        let a = d1.to_le_bytes();
        let b = d2.to_le_bytes();
        let c = d3.to_le_bytes();
        Guid([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4],
            d4[5], d4[6], d4[7],
        ])
    }

    /// A version-4-shaped GUID made from the first 16 bytes of `seed` (e.g. a hash), so
    /// that a table built twice from the same inputs is identical.
    pub fn from_seed(seed: &[u8; 16]) -> Guid {
        let mut bytes = *seed;
        bytes[7] = (bytes[7] & 0x0F) | 0x40;
        bytes[8] = (bytes[8] & 0x3F) | 0x80;
        Guid(bytes)
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:08X}-{:04X}-{:04X}-{:02X}{:02X}-",
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            u16::from_le_bytes([b[4], b[5]]),
            u16::from_le_bytes([b[6], b[7]]),
            b[8],
            b[9]
        )?;
        b[10..].iter().try_for_each(|x| write!(f, "{x:02X}"))
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

/// One partition of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptPartition {
    /// Name, e.g. `modemst1`.
    pub label: String,
    /// First sector.
    pub first_lba: u64,
    /// Last sector, inclusive.
    pub last_lba: u64,
    /// What the partition holds.
    pub type_guid: Guid,
    /// This partition's own identity.
    pub unique_guid: Guid,
    /// Attribute bits (bit 0 "required", bits 48–63 type specific).
    pub attributes: u64,
}

impl GptPartition {
    /// Size in sectors.
    pub fn sectors(&self) -> u64 {
        self.last_lba - self.first_lba + 1
    }
}

/// A primary or backup header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptHeader {
    /// Sector size the header was read with.
    pub sector_size: u32,
    /// LBA of this header.
    pub current_lba: u64,
    /// LBA of the other copy.
    pub alternate_lba: u64,
    /// First sector a partition may use.
    pub first_usable_lba: u64,
    /// Last sector a partition may use.
    pub last_usable_lba: u64,
    /// The disk's identity.
    pub disk_guid: Guid,
    /// Where this copy's entry array starts.
    pub entries_lba: u64,
    /// Slots in the entry array.
    pub entry_count: u32,
    /// Bytes per slot (128 or a larger power of two).
    pub entry_len: u32,
    /// CRC-32 of the entry array.
    pub entries_crc: u32,
}

impl GptHeader {
    /// Parses and checks the header in `sector` (the whole sector at `lba`).
    ///
    /// Checks the signature, revision, header size, CRC, that the header is where it says
    /// it is, that the usable range is ordered, and that the entry array is of sane size.
    pub fn parse(sector: &[u8], sector_size: u32, lba: u64) -> Result<GptHeader, GptError> {
        check_sector_size(sector_size)?;
        need(sector, HEADER_LEN)?;
        if &sector[..8] != SIGNATURE {
            return Err(GptError::NoSignature(lba));
        }
        let bad = |reason: String| Err(GptError::BadHeader(reason));
        let revision = le32(sector, 8);
        if revision >> 16 != 1 {
            return bad(format!("unsupported revision {revision:#010x}"));
        }
        let header_len = le32(sector, 12) as usize;
        if !(HEADER_LEN..=sector_size as usize).contains(&header_len) {
            return bad(format!("header size {header_len} out of range"));
        }
        need(sector, header_len)?;
        let stored = le32(sector, 16);
        let mut copy = sector[..header_len].to_vec();
        copy[16..20].fill(0);
        let computed = crc32fast::hash(&copy);
        if stored != computed {
            return Err(GptError::HeaderCrc { stored, computed });
        }
        let header = GptHeader {
            sector_size,
            current_lba: le64(sector, 24),
            alternate_lba: le64(sector, 32),
            first_usable_lba: le64(sector, 40),
            last_usable_lba: le64(sector, 48),
            disk_guid: guid_at(sector, 56),
            entries_lba: le64(sector, 72),
            entry_count: le32(sector, 80),
            entry_len: le32(sector, 84),
            entries_crc: le32(sector, 88),
        };
        if header.current_lba != lba {
            return bad(format!(
                "header read at LBA {lba} says it is at LBA {}",
                header.current_lba
            ));
        }
        if header.first_usable_lba > header.last_usable_lba {
            return bad(format!(
                "first usable LBA {} is after last usable LBA {}",
                header.first_usable_lba, header.last_usable_lba
            ));
        }
        if header.entry_len < ENTRY_LEN || !header.entry_len.is_power_of_two() {
            return bad(format!("entry size {} is invalid", header.entry_len));
        }
        if header.entries_len() > MAX_ENTRIES_LEN {
            return bad(format!(
                "entry array of {} bytes exceeds {MAX_ENTRIES_LEN}",
                header.entries_len()
            ));
        }
        let entries_end = header.entries_lba + header.entry_sectors();
        let entries_overlap_usable =
            header.entries_lba <= header.last_usable_lba && entries_end > header.first_usable_lba;
        if header.entries_lba < 2 || entries_overlap_usable {
            return bad(format!(
                "entry array at LBA {} overlaps the header or the usable area",
                header.entries_lba
            ));
        }
        Ok(header)
    }

    /// Length of the entry array in bytes.
    pub fn entries_len(&self) -> u64 {
        u64::from(self.entry_count) * u64::from(self.entry_len)
    }

    /// Sectors the entry array occupies: what to read at [`GptHeader::entries_lba`].
    pub fn entry_sectors(&self) -> u64 {
        self.entries_len().div_ceil(u64::from(self.sector_size))
    }

    /// Parses the entry array (`bytes` starts at [`GptHeader::entries_lba`]) and returns
    /// the used entries in slot order, after checking the array CRC, every range against
    /// the usable area, overlaps and labels.
    pub fn parse_entries(&self, bytes: &[u8]) -> Result<Vec<GptPartition>, GptError> {
        let len = self.entries_len() as usize;
        need(bytes, len)?;
        let computed = crc32fast::hash(&bytes[..len]);
        if computed != self.entries_crc {
            return Err(GptError::EntriesCrc {
                stored: self.entries_crc,
                computed,
            });
        }
        let mut parts: Vec<(u32, GptPartition)> = Vec::new();
        for (index, entry) in (0u32..).zip(bytes[..len].chunks_exact(self.entry_len as usize)) {
            let type_guid = guid_at(entry, 0);
            if type_guid == Guid::ZERO {
                continue;
            }
            let bad = |reason: String| GptError::BadEntry { index, reason };
            let part = GptPartition {
                type_guid,
                unique_guid: guid_at(entry, 16),
                first_lba: le64(entry, 32),
                last_lba: le64(entry, 40),
                attributes: le64(entry, 48),
                label: decode_label(&entry[LABEL_OFFSET..ENTRY_LEN as usize])
                    .ok_or_else(|| bad("label is not valid UTF-16".into()))?,
            };
            if part.first_lba > part.last_lba
                || part.first_lba < self.first_usable_lba
                || part.last_lba > self.last_usable_lba
            {
                return Err(bad(format!(
                    "range {}..={} lies outside the usable area {}..={}",
                    part.first_lba, part.last_lba, self.first_usable_lba, self.last_usable_lba
                )));
            }
            if let Some((other, _)) = parts
                .iter()
                .find(|(_, p)| p.first_lba <= part.last_lba && part.first_lba <= p.last_lba)
            {
                return Err(bad(format!("range overlaps entry {other}")));
            }
            parts.push((index, part));
        }
        Ok(parts.into_iter().map(|(_, p)| p).collect())
    }
}

/// A whole partition table: what to write on a new disk, or what was read from one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpt {
    /// 512 (eMMC) or 4096 (UFS).
    pub sector_size: u32,
    /// Sectors on the disk; the backup header is at the last one.
    pub disk_sectors: u64,
    /// The disk's identity.
    pub disk_guid: Guid,
    /// First sector a partition may use.
    pub first_usable_lba: u64,
    /// Last sector a partition may use.
    pub last_usable_lba: u64,
    /// Used entries in slot order.
    pub partitions: Vec<GptPartition>,
}

impl Gpt {
    /// An empty table with [`ENTRY_COUNT`] slots for a disk of `disk_sectors` sectors.
    pub fn new(sector_size: u32, disk_sectors: u64, disk_guid: Guid) -> Result<Gpt, GptError> {
        check_sector_size(sector_size)?;
        let entry_sectors = entry_array_sectors(sector_size);
        let first_usable_lba = 2 + entry_sectors;
        // MBR, primary header and array, at least one usable sector, backup array and header.
        if disk_sectors < first_usable_lba + 1 + entry_sectors + 1 {
            return Err(GptError::DiskTooSmall(disk_sectors));
        }
        Ok(Gpt {
            sector_size,
            disk_sectors,
            disk_guid,
            first_usable_lba,
            last_usable_lba: disk_sectors - 2 - entry_sectors,
            partitions: Vec::new(),
        })
    }

    /// Appends a partition of `sectors` sectors right after the last one (or at the first
    /// usable LBA) and returns it.
    pub fn push(
        &mut self,
        label: &str,
        sectors: u64,
        type_guid: Guid,
        unique_guid: Guid,
    ) -> Result<&GptPartition, GptError> {
        if label.is_empty()
            || label.contains('\0')
            || label.encode_utf16().count() > MAX_LABEL_UNITS
        {
            return Err(GptError::BadLabel(label.to_string()));
        }
        if self.partitions.len() >= ENTRY_COUNT as usize {
            return Err(GptError::TooManyPartitions);
        }
        let first_lba = self
            .partitions
            .last()
            .map_or(self.first_usable_lba, |p| p.last_lba + 1);
        let free = (self.last_usable_lba + 1).saturating_sub(first_lba);
        if sectors == 0 || sectors > free {
            return Err(GptError::NoSpace {
                label: label.to_string(),
                sectors,
                free,
            });
        }
        self.partitions.push(GptPartition {
            label: label.to_string(),
            first_lba,
            last_lba: first_lba + sectors - 1,
            type_guid,
            unique_guid,
            attributes: 0,
        });
        Ok(&self.partitions[self.partitions.len() - 1])
    }

    /// Looks a partition up by label.
    pub fn find(&self, label: &str) -> Option<&GptPartition> {
        self.partitions.iter().find(|p| p.label == label)
    }

    /// LBA of the backup entry array: where [`Gpt::encode_backup`] goes.
    pub fn backup_entries_lba(&self) -> u64 {
        self.last_usable_lba + 1
    }

    /// Protective MBR, primary header and entry array: the first
    /// `first_usable_lba` sectors of the disk.
    pub fn encode_primary(&self) -> Vec<u8> {
        let sector = self.sector_size as usize;
        let mut out = vec![0u8; 2 * sector];
        self.encode_mbr(&mut out[..sector]);
        let entries = self.encode_entries();
        let header = self.encode_header(1, self.disk_sectors - 1, 2, &entries);
        out[sector..sector + HEADER_LEN].copy_from_slice(&header);
        out.extend_from_slice(&entries);
        out
    }

    /// Backup entry array and backup header: the last sectors of the disk, from
    /// [`Gpt::backup_entries_lba`] to the end.
    pub fn encode_backup(&self) -> Vec<u8> {
        let mut out = self.encode_entries();
        let header = self.encode_header(self.disk_sectors - 1, 1, self.backup_entries_lba(), &out);
        let at = out.len();
        out.resize(at + self.sector_size as usize, 0);
        out[at..at + HEADER_LEN].copy_from_slice(&header);
        out
    }

    /// Parses the primary table from `bytes`, the disk read from LBA 0 on, through the
    /// end of the entry array (34 sectors of 512 bytes, or 6 of 4096, for a standard table;
    /// [`GptError::Truncated`] says how much is needed otherwise).
    pub fn parse(sector_size: u32, bytes: &[u8]) -> Result<Gpt, GptError> {
        check_sector_size(sector_size)?;
        let sector = sector_size as usize;
        need(bytes, 2 * sector)?;
        let header = GptHeader::parse(&bytes[sector..2 * sector], sector_size, 1)?;
        let start = header.entries_lba.saturating_mul(u64::from(sector_size));
        let end = start.saturating_add(header.entries_len());
        need(bytes, usize::try_from(end).unwrap_or(usize::MAX))?;
        let partitions = header.parse_entries(&bytes[start as usize..end as usize])?;
        Ok(Gpt {
            sector_size,
            disk_sectors: header.alternate_lba + 1,
            disk_guid: header.disk_guid,
            first_usable_lba: header.first_usable_lba,
            last_usable_lba: header.last_usable_lba,
            partitions,
        })
    }

    fn encode_mbr(&self, mbr: &mut [u8]) {
        let entry = &mut mbr[446..462];
        // Status 0, CHS start 0/0/2, type 0xEE, CHS end "beyond CHS", first LBA 1.
        entry[..8].copy_from_slice(&[
            0x00,
            0x00,
            0x02,
            0x00,
            MBR_PROTECTIVE_TYPE,
            0xFF,
            0xFF,
            0xFF,
        ]);
        entry[8..12].copy_from_slice(&1u32.to_le_bytes());
        let len = u32::try_from(self.disk_sectors - 1).unwrap_or(u32::MAX);
        entry[12..16].copy_from_slice(&len.to_le_bytes());
        mbr[510] = 0x55;
        mbr[511] = 0xAA;
    }

    fn encode_entries(&self) -> Vec<u8> {
        let mut out = vec![0u8; (ENTRY_COUNT * ENTRY_LEN) as usize];
        for (entry, part) in out
            .chunks_exact_mut(ENTRY_LEN as usize)
            .zip(&self.partitions)
        {
            entry[0..16].copy_from_slice(&part.type_guid.0);
            entry[16..32].copy_from_slice(&part.unique_guid.0);
            entry[32..40].copy_from_slice(&part.first_lba.to_le_bytes());
            entry[40..48].copy_from_slice(&part.last_lba.to_le_bytes());
            entry[48..56].copy_from_slice(&part.attributes.to_le_bytes());
            for (slot, unit) in entry[LABEL_OFFSET..]
                .chunks_exact_mut(2)
                .zip(part.label.encode_utf16())
            {
                slot.copy_from_slice(&unit.to_le_bytes());
            }
        }
        out.resize(
            (entry_array_sectors(self.sector_size) * u64::from(self.sector_size)) as usize,
            0,
        );
        out
    }

    fn encode_header(
        &self,
        current: u64,
        alternate: u64,
        entries_lba: u64,
        entries: &[u8],
    ) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..8].copy_from_slice(SIGNATURE);
        h[8..12].copy_from_slice(&REVISION.to_le_bytes());
        h[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        h[24..32].copy_from_slice(&current.to_le_bytes());
        h[32..40].copy_from_slice(&alternate.to_le_bytes());
        h[40..48].copy_from_slice(&self.first_usable_lba.to_le_bytes());
        h[48..56].copy_from_slice(&self.last_usable_lba.to_le_bytes());
        h[56..72].copy_from_slice(&self.disk_guid.0);
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&ENTRY_COUNT.to_le_bytes());
        h[84..88].copy_from_slice(&ENTRY_LEN.to_le_bytes());
        let array = &entries[..(ENTRY_COUNT * ENTRY_LEN) as usize];
        h[88..92].copy_from_slice(&crc32fast::hash(array).to_le_bytes());
        let crc = crc32fast::hash(&h);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    }
}

/// Sectors of the standard entry array.
fn entry_array_sectors(sector_size: u32) -> u64 {
    u64::from(ENTRY_COUNT * ENTRY_LEN).div_ceil(u64::from(sector_size))
}

fn check_sector_size(sector_size: u32) -> Result<(), GptError> {
    match sector_size {
        512 | 4096 => Ok(()),
        other => Err(GptError::SectorSize(other)),
    }
}

fn need(bytes: &[u8], len: usize) -> Result<(), GptError> {
    if bytes.len() < len {
        return Err(GptError::Truncated {
            need: len as u64,
            have: bytes.len() as u64,
        });
    }
    Ok(())
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

fn guid_at(b: &[u8], at: usize) -> Guid {
    let mut g = [0u8; 16];
    g.copy_from_slice(&b[at..at + 16]);
    Guid(g)
}

/// The label up to the first NUL unit; `None` if it is not valid UTF-16.
fn decode_label(bytes: &[u8]) -> Option<String> {
    let units = bytes
        .chunks_exact(2)
        .map(|u| u16::from_le_bytes([u[0], u[1]]))
        .take_while(|&u| u != 0);
    char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(sector_size: u32, disk_sectors: u64) -> Gpt {
        let mut gpt = Gpt::new(sector_size, disk_sectors, Guid::from_seed(&[7; 16])).unwrap();
        for (i, (label, sectors)) in [("sbl1", 4), ("modemst1", 8), ("fsg", 3)]
            .into_iter()
            .enumerate()
        {
            gpt.push(
                label,
                sectors,
                Guid::BASIC_DATA,
                Guid::from_seed(&[i as u8; 16]),
            )
            .unwrap();
        }
        gpt
    }

    /// A disk image holding `gpt` at both ends.
    fn disk(gpt: &Gpt) -> Vec<u8> {
        let mut disk = vec![0u8; (gpt.disk_sectors * u64::from(gpt.sector_size)) as usize];
        let primary = gpt.encode_primary();
        disk[..primary.len()].copy_from_slice(&primary);
        let backup = gpt.encode_backup();
        let at = disk.len() - backup.len();
        assert_eq!(
            at as u64,
            gpt.backup_entries_lba() * u64::from(gpt.sector_size)
        );
        disk[at..].copy_from_slice(&backup);
        disk
    }

    #[test]
    fn build_then_parse_round_trips_on_both_sector_sizes() {
        for (sector_size, first_usable) in [(512u32, 34u64), (4096, 6)] {
            let gpt = sample(sector_size, 200);
            assert_eq!(gpt.first_usable_lba, first_usable);
            assert_eq!(gpt.last_usable_lba, 200 - first_usable);
            let disk = disk(&gpt);
            assert_eq!(&disk[510..512], &[0x55, 0xAA]);
            assert_eq!(disk[446 + 4], 0xEE);
            let parsed = Gpt::parse(sector_size, &disk).unwrap();
            assert_eq!(parsed, gpt);
            let modemst1 = parsed.find("modemst1").unwrap();
            assert_eq!(
                (modemst1.first_lba, modemst1.last_lba),
                (first_usable + 4, first_usable + 11)
            );

            // The backup copy describes the same table.
            let s = sector_size as usize;
            let backup = GptHeader::parse(&disk[disk.len() - s..], sector_size, 199).unwrap();
            assert_eq!(backup.alternate_lba, 1);
            let at = (backup.entries_lba * u64::from(sector_size)) as usize;
            assert_eq!(backup.parse_entries(&disk[at..]).unwrap(), gpt.partitions);
        }
    }

    #[test]
    fn corruption_is_detected() {
        let gpt = sample(512, 100);
        let good = disk(&gpt);

        let mut bad = good.clone();
        bad[512 + 48] ^= 1; // last usable LBA
        assert!(matches!(
            Gpt::parse(512, &bad),
            Err(GptError::HeaderCrc { .. })
        ));

        let mut bad = good.clone();
        bad[1024 + 128 + LABEL_OFFSET] ^= 1; // second entry's label
        assert!(matches!(
            Gpt::parse(512, &bad),
            Err(GptError::EntriesCrc { .. })
        ));

        let mut bad = good.clone();
        bad[512] = b'X';
        assert_eq!(Gpt::parse(512, &bad), Err(GptError::NoSignature(1)));

        assert!(matches!(
            Gpt::parse(512, &good[..20 * 512]),
            Err(GptError::Truncated { need: 17408, .. })
        ));
        assert_eq!(Gpt::parse(1024, &good), Err(GptError::SectorSize(1024)));
        // Read with the wrong sector size, the header is not where LBA 1 would be.
        assert!(Gpt::parse(4096, &good).is_err());
    }

    #[test]
    fn entries_outside_the_usable_area_are_refused() {
        let mut gpt = sample(512, 100);
        gpt.partitions[2].last_lba = 99;
        assert!(matches!(
            Gpt::parse(512, &disk(&gpt)),
            Err(GptError::BadEntry { index: 2, .. })
        ));

        let mut gpt = sample(512, 100);
        gpt.partitions[1].first_lba -= 1;
        assert!(matches!(
            Gpt::parse(512, &disk(&gpt)),
            Err(GptError::BadEntry { index: 1, .. })
        ));
    }

    #[test]
    fn building_checks_labels_and_space() {
        let mut gpt = Gpt::new(512, 100, Guid::ZERO).unwrap();
        let long = "x".repeat(37);
        for label in ["", "a\0b", long.as_str()] {
            assert!(matches!(
                gpt.push(label, 1, Guid::BASIC_DATA, Guid::ZERO),
                Err(GptError::BadLabel(_))
            ));
        }
        let max = "é".repeat(36);
        gpt.push(&max, 31, Guid::BASIC_DATA, Guid::ZERO).unwrap();
        assert_eq!(
            gpt.push("rest", 3, Guid::BASIC_DATA, Guid::ZERO),
            Err(GptError::NoSpace {
                label: "rest".into(),
                sectors: 3,
                free: 2
            })
        );
        let parsed = Gpt::parse(512, &disk(&gpt)).unwrap();
        assert_eq!(parsed.partitions[0].label, max);
        assert_eq!(
            Gpt::new(512, 67, Guid::ZERO),
            Err(GptError::DiskTooSmall(67))
        );
    }

    #[test]
    fn guid_text_form_matches_the_standard() {
        assert_eq!(
            Guid::BASIC_DATA.to_string(),
            "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
        );
        assert_eq!(Guid::BASIC_DATA.0[..4], [0xA2, 0xA0, 0xD0, 0xEB]);
    }
}
