//! `partition.bin`, the partition table a ZX297520V3 device keeps and TBootPro's
//! `set partitions` replaces.
//!
//! A 32-byte header (magic, 16-byte platform name, version, entry count, check) and then
//! 40-byte entries (16-byte name, 16-byte type such as `nand` or `ddr`, address, size), all
//! numbers little-endian. The check is not a CRC: it is the XOR of every 32-bit word of the
//! entry array. Source: zxdl's README ("partition.bin", verified there byte for byte
//! against a real table and its stored check). On the wire the vendor flasher sends the
//! table padded to 4096 bytes (`set partitions 1000`, zte_download.c), which
//! [`PartitionTable::to_wire`] produces.

use std::collections::BTreeSet;

/// Header length.
pub const HEADER_LEN: usize = 32;
/// Entry length.
pub const ENTRY_LEN: usize = 40;
/// The table as sent with `set partitions 1000`: 4096 bytes.
pub const WIRE_LEN: usize = 0x1000;
/// Entries that fit in [`WIRE_LEN`].
pub const MAX_ENTRIES: usize = (WIRE_LEN - HEADER_LEN) / ENTRY_LEN;
/// Length of the name, type and platform fields.
const FIELD_LEN: usize = 16;
/// Type of partitions that live in RAM, not in flash (they may overlap flash addresses).
pub const RAM_TYPE: &str = "ddr";

/// Why a table is not a valid partition.bin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// Shorter than its header or its entries.
    #[error("the partition table is {len} bytes, too short for {what}")]
    Short {
        /// Bytes given.
        len: usize,
        /// What did not fit.
        what: String,
    },
    /// Longer than [`WIRE_LEN`].
    #[error("the partition table is {0} bytes; at most {WIRE_LEN} are sent")]
    Long(usize),
    /// More entries than fit.
    #[error("the partition table declares {0} entries; at most {MAX_ENTRIES} fit")]
    TooMany(u32),
    /// The stored check differs from the XOR of the entries.
    #[error(
        "the partition table's check 0x{stored:08x} differs from its entries' 0x{computed:08x}"
    )]
    Check {
        /// As stored.
        stored: u32,
        /// As computed.
        computed: u32,
    },
    /// A name or type that is empty, not NUL-padded text, or not a plain name.
    #[error("partition table entry {index}: {what}")]
    Entry {
        /// Entry number.
        index: usize,
        /// What is wrong.
        what: String,
    },
}

/// One entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Its name (`nvrofs`, `imagefs`).
    pub name: String,
    /// Its type (`nand`, `ddr`, `raw`).
    pub kind: String,
    /// First byte in flash.
    pub address: u32,
    /// Bytes.
    pub size: u32,
}

impl Partition {
    /// Whether it lives in flash (anything but [`RAM_TYPE`]).
    pub fn in_flash(&self) -> bool {
        self.kind != RAM_TYPE
    }

    /// One past its last byte.
    pub fn end(&self) -> u64 {
        u64::from(self.address) + u64::from(self.size)
    }
}

/// A parsed partition.bin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionTable {
    /// The header's first word (0x31594876 in zxdl's reference table); kept, not judged.
    pub magic: u32,
    /// The platform name (`WF7520`).
    pub platform: String,
    /// The header's version word.
    pub version: u32,
    /// The entries, in table order.
    pub entries: Vec<Partition>,
}

fn le(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// The XOR of every little-endian 32-bit word of `entries`.
pub fn checksum(entries: &[u8]) -> u32 {
    entries.chunks(4).fold(0, |acc, w| {
        let mut word = [0u8; 4];
        word[..w.len()].copy_from_slice(w);
        acc ^ u32::from_le_bytes(word)
    })
}

/// A NUL-padded text field: printable, then only NULs.
fn field(bytes: &[u8]) -> Option<String> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let (text, rest) = bytes.split_at(end);
    (text.iter().all(|b| b.is_ascii_graphic()) && rest.iter().all(|&b| b == 0))
        .then(|| String::from_utf8(text.to_vec()).expect("ASCII"))
}

impl PartitionTable {
    /// Parses and checks a table: the header, every entry, the check, unique plain names
    /// and flash partitions that do not overlap. Trailing zero padding is allowed.
    pub fn parse(bytes: &[u8]) -> Result<Self, TableError> {
        if bytes.len() > WIRE_LEN {
            return Err(TableError::Long(bytes.len()));
        }
        if bytes.len() < HEADER_LEN {
            return Err(TableError::Short {
                len: bytes.len(),
                what: "its header".into(),
            });
        }
        let count = le(bytes, 24);
        if count as usize > MAX_ENTRIES {
            return Err(TableError::TooMany(count));
        }
        let end = HEADER_LEN + count as usize * ENTRY_LEN;
        if bytes.len() < end {
            return Err(TableError::Short {
                len: bytes.len(),
                what: format!("{count} entries"),
            });
        }
        let stored = le(bytes, 28);
        let computed = checksum(&bytes[HEADER_LEN..end]);
        if stored != computed {
            return Err(TableError::Check { stored, computed });
        }
        let platform = field(&bytes[4..20]).ok_or_else(|| TableError::Entry {
            index: 0,
            what: "the platform name is not text".into(),
        })?;
        let mut entries = Vec::with_capacity(count as usize);
        for (index, e) in bytes[HEADER_LEN..end].chunks(ENTRY_LEN).enumerate() {
            let bad = |what: &str| TableError::Entry {
                index,
                what: what.into(),
            };
            let name = field(&e[..FIELD_LEN])
                .filter(|n| {
                    !n.is_empty()
                        && n.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                })
                .ok_or_else(|| bad("the name is not a plain name"))?;
            let kind = field(&e[FIELD_LEN..2 * FIELD_LEN])
                .filter(|k| !k.is_empty())
                .ok_or_else(|| bad("the type is not text"))?;
            entries.push(Partition {
                name,
                kind,
                address: le(e, 32),
                size: le(e, 36),
            });
        }
        let table = PartitionTable {
            magic: le(bytes, 0),
            platform,
            version: le(bytes, 20),
            entries,
        };
        table.check()?;
        Ok(table)
    }

    /// Unique names, non-empty sizes, and flash partitions that do not overlap.
    fn check(&self) -> Result<(), TableError> {
        let mut names = BTreeSet::new();
        for (index, p) in self.entries.iter().enumerate() {
            let bad = |what: String| TableError::Entry { index, what };
            if !names.insert(p.name.as_str()) {
                return Err(bad(format!("{} is named twice", p.name)));
            }
            if p.size == 0 {
                return Err(bad(format!("{} has no bytes", p.name)));
            }
            if p.end() > u64::from(u32::MAX) + 1 {
                return Err(bad(format!("{} ends past 4 GiB", p.name)));
            }
            if let Some(other) = self.entries[..index]
                .iter()
                .filter(|o| o.in_flash() && p.in_flash())
                .find(|o| u64::from(o.address) < p.end() && u64::from(p.address) < o.end())
            {
                return Err(bad(format!("{} overlaps {}", p.name, other.name)));
            }
        }
        Ok(())
    }

    /// The entry named `name`.
    pub fn find(&self, name: &str) -> Option<&Partition> {
        self.entries.iter().find(|p| p.name == name)
    }

    /// The table as partition.bin, without padding.
    pub fn encode(&self) -> Vec<u8> {
        let mut entries = Vec::with_capacity(self.entries.len() * ENTRY_LEN);
        for p in &self.entries {
            entries.extend_from_slice(&padded(&p.name));
            entries.extend_from_slice(&padded(&p.kind));
            entries.extend_from_slice(&p.address.to_le_bytes());
            entries.extend_from_slice(&p.size.to_le_bytes());
        }
        let mut out = Vec::with_capacity(HEADER_LEN + entries.len());
        out.extend_from_slice(&self.magic.to_le_bytes());
        out.extend_from_slice(&padded(&self.platform));
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        out.extend_from_slice(&checksum(&entries).to_le_bytes());
        out.extend_from_slice(&entries);
        out
    }

    /// The table as `set partitions 1000` sends it: [`WIRE_LEN`] bytes, zero-padded.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = self.encode();
        out.resize(WIRE_LEN, 0);
        out
    }
}

/// `text` in a 16-byte NUL-padded field (cut at 15 bytes so one NUL always ends it).
fn padded(text: &str) -> [u8; FIELD_LEN] {
    let mut out = [0u8; FIELD_LEN];
    let n = text.len().min(FIELD_LEN - 1);
    out[..n].copy_from_slice(&text.as_bytes()[..n]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> PartitionTable {
        let p = |name: &str, kind: &str, address, size| Partition {
            name: name.into(),
            kind: kind.into(),
            address,
            size,
        };
        PartitionTable {
            magic: 0x3159_4876,
            platform: "WF7520".into(),
            version: 1,
            entries: vec![
                p("zloader", "nand", 0, 0x2_0000),
                p("nvrofs", "nand", 0x2_0000, 0x4_0000),
                p("ddr", "ddr", 0, 0x1000),
            ],
        }
    }

    #[test]
    fn round_trips_and_checks() {
        let t = table();
        let bytes = t.encode();
        assert_eq!(bytes.len(), HEADER_LEN + 3 * ENTRY_LEN);
        assert_eq!(PartitionTable::parse(&bytes).unwrap(), t);
        assert_eq!(PartitionTable::parse(&t.to_wire()).unwrap(), t);
        assert_eq!(t.to_wire().len(), WIRE_LEN);
        let mut bad = bytes.clone();
        bad[HEADER_LEN + 33] ^= 1;
        assert!(matches!(
            PartitionTable::parse(&bad),
            Err(TableError::Check { .. })
        ));
        let mut many = bytes.clone();
        many[24..28].copy_from_slice(&200u32.to_le_bytes());
        assert_eq!(PartitionTable::parse(&many), Err(TableError::TooMany(200)));
        assert!(matches!(
            PartitionTable::parse(&bytes[..40]),
            Err(TableError::Short { .. })
        ));
        assert!(matches!(
            PartitionTable::parse(&[0; 5000]),
            Err(TableError::Long(5000))
        ));
    }

    #[test]
    fn overlaps_and_bad_names_are_refused() {
        let mut t = table();
        t.entries[1].address = 0x1_0000;
        let err = PartitionTable::parse(&t.encode()).unwrap_err();
        assert!(err.to_string().contains("nvrofs overlaps zloader"), "{err}");
        let mut t = table();
        t.entries[0].name = "a b".into();
        assert!(PartitionTable::parse(&t.encode()).is_err());
    }
}
