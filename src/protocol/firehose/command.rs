//! Host commands: the [`Command`] set with its arguments, encoded to and parsed from
//! XML. Separate from device documents, which flow the other way.

use super::*;

/// A run of sectors on one physical partition (eMMC: 0; UFS: the LUN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectorRange {
    /// `physical_partition_number`.
    pub lun: u32,
    /// `start_sector`, already resolved to a number.
    pub start_sector: u64,
    /// `SECTOR_SIZE_IN_BYTES` (512 on eMMC, 4096 on UFS).
    pub sector_size: u32,
    /// `num_partition_sectors`.
    pub num_sectors: u64,
}

impl SectorRange {
    /// Bytes covered, or `None` if that overflows.
    pub fn byte_len(&self) -> Option<u64> {
        self.num_sectors.checked_mul(u64::from(self.sector_size))
    }
}

/// `<configure>`: storage type and transfer sizes; the first command of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configure {
    /// `MemoryName`: `emmc`, `ufs`, `nand`, `nvme`, `spinor`.
    pub memory_name: String,
    /// `MaxPayloadSizeToTargetInBytes`: the largest write the host wants to use.
    pub max_payload_to_target: u32,
    /// `Verbose`.
    pub verbose: bool,
    /// `ZlpAwareHost`: the host sends zero-length packets after full-size writes.
    pub zlp_aware_host: bool,
    /// `SkipStorageInit`.
    pub skip_storage_init: bool,
}

/// `<patch filename="DISK">`: write `value` as a little-endian integer of `size_in_bytes`
/// bytes at `start_sector × sector_size + byte_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patch {
    /// `physical_partition_number`.
    pub lun: u32,
    /// `SECTOR_SIZE_IN_BYTES`.
    pub sector_size: u32,
    /// `start_sector`, resolved.
    pub start_sector: u64,
    /// `byte_offset`.
    pub byte_offset: u64,
    /// `size_in_bytes` (1–8).
    pub size_in_bytes: u32,
    /// `value`, resolved.
    pub value: u64,
}

/// What `<power>` should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    /// Reboot (`value="reset"`).
    Reset,
    /// Power off (`value="off"`).
    Off,
    /// Reboot into emergency download mode (`value="reset_to_edl"`), so the boot ROM waits
    /// for a programmer again instead of booting what the storage holds. The value is the
    /// one fh_loader documents and qdl-rs sends; programmers NAK values they do not know
    /// (public reports: notes/real-devices.md, "Optional commands").
    ResetToEdl,
}

impl PowerAction {
    /// The `value` attribute.
    pub fn value(self) -> &'static str {
        match self {
            PowerAction::Reset => "reset",
            PowerAction::Off => "off",
            PowerAction::ResetToEdl => "reset_to_edl",
        }
    }
}

/// One host → device command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `<configure>`.
    Configure(Configure),
    /// `<program>`: the range's bytes follow as raw data after a `rawmode` ACK.
    Program(SectorRange),
    /// `<read>`: the device sends the range's bytes after a `rawmode` ACK.
    Read(SectorRange),
    /// `<erase>` of a range.
    Erase(SectorRange),
    /// `<erase>` without a range: the whole physical partition.
    EraseAll {
        /// `physical_partition_number`.
        lun: u32,
        /// `SECTOR_SIZE_IN_BYTES`.
        sector_size: u32,
    },
    /// `<patch filename="DISK">`.
    Patch(Patch),
    /// `<getsha256digest>` of a range.
    GetSha256Digest(SectorRange),
    /// `<getstorageinfo>`.
    GetStorageInfo {
        /// `physical_partition_number`.
        lun: u32,
    },
    /// `<power>`.
    Power {
        /// `value`.
        action: PowerAction,
        /// `DelayInSeconds`.
        delay_seconds: Option<u32>,
    },
    /// `<setbootablestoragedrive value="N"/>`: the LUN the boot ROM loads the boot loader
    /// from (UFS), set after writing the LUN that holds xbl or sbl1, as qdl does.
    SetBootableStorageDrive {
        /// The LUN (`value`).
        lun: u32,
    },
    /// `<nop/>`: liveness probe.
    Nop,
    /// Any other tag, so a device can NAK it by name.
    Unknown {
        /// The tag.
        tag: String,
    },
}

/// Attribute names, as programmers expect them.
pub(super) mod attr {
    pub const SECTOR_SIZE: &str = "SECTOR_SIZE_IN_BYTES";
    pub const NUM_SECTORS: &str = "num_partition_sectors";
    pub const LUN: &str = "physical_partition_number";
    pub const START_SECTOR: &str = "start_sector";
    pub const BYTE_OFFSET: &str = "byte_offset";
    pub const FILENAME: &str = "filename";
    pub const SIZE_IN_BYTES: &str = "size_in_bytes";
    pub const VALUE: &str = "value";
    pub const MEMORY_NAME: &str = "MemoryName";
    pub const MAX_PAYLOAD_TO_TARGET: &str = "MaxPayloadSizeToTargetInBytes";
    pub const VERBOSE: &str = "Verbose";
    pub const ZLP_AWARE_HOST: &str = "ZlpAwareHost";
    pub const SKIP_STORAGE_INIT: &str = "SkipStorageInit";
    pub const DELAY: &str = "DelayInSeconds";
    pub const RAWMODE: &str = "rawmode";
}

/// The only `filename` a device patch may carry.
const PATCH_TARGET: &str = "DISK";

impl Command {
    /// The command's tag, for messages.
    pub fn tag(&self) -> &str {
        match self {
            Command::Configure(_) => "configure",
            Command::Program(_) => "program",
            Command::Read(_) => "read",
            Command::Erase(_) | Command::EraseAll { .. } => "erase",
            Command::Patch(_) => "patch",
            Command::GetSha256Digest(_) => "getsha256digest",
            Command::GetStorageInfo { .. } => "getstorageinfo",
            Command::Power { .. } => "power",
            Command::SetBootableStorageDrive { .. } => "setbootablestoragedrive",
            Command::Nop => "nop",
            Command::Unknown { tag } => tag,
        }
    }

    /// The command as a complete document, ready to send.
    pub fn to_xml(&self) -> String {
        let flag = |b: bool| if b { "1" } else { "0" }.to_string();
        let range = |r: &SectorRange| {
            vec![
                (attr::SECTOR_SIZE, r.sector_size.to_string()),
                (attr::NUM_SECTORS, r.num_sectors.to_string()),
                (attr::LUN, r.lun.to_string()),
                (attr::START_SECTOR, r.start_sector.to_string()),
            ]
        };
        let attributes: Vec<(&str, String)> = match self {
            Command::Configure(c) => vec![
                (attr::MEMORY_NAME, c.memory_name.clone()),
                (
                    attr::MAX_PAYLOAD_TO_TARGET,
                    c.max_payload_to_target.to_string(),
                ),
                (attr::VERBOSE, flag(c.verbose)),
                (attr::ZLP_AWARE_HOST, flag(c.zlp_aware_host)),
                (attr::SKIP_STORAGE_INIT, flag(c.skip_storage_init)),
            ],
            Command::Program(r) | Command::Read(r) | Command::Erase(r) => range(r),
            Command::GetSha256Digest(r) => range(r),
            Command::EraseAll { lun, sector_size } => vec![
                (attr::SECTOR_SIZE, sector_size.to_string()),
                (attr::LUN, lun.to_string()),
            ],
            Command::Patch(p) => vec![
                (attr::SECTOR_SIZE, p.sector_size.to_string()),
                (attr::BYTE_OFFSET, p.byte_offset.to_string()),
                (attr::FILENAME, PATCH_TARGET.to_string()),
                (attr::LUN, p.lun.to_string()),
                (attr::SIZE_IN_BYTES, p.size_in_bytes.to_string()),
                (attr::START_SECTOR, p.start_sector.to_string()),
                (attr::VALUE, p.value.to_string()),
            ],
            Command::GetStorageInfo { lun } => vec![(attr::LUN, lun.to_string())],
            Command::Power {
                action,
                delay_seconds,
            } => {
                let mut a = vec![(attr::VALUE, action.value().to_string())];
                if let Some(delay) = delay_seconds {
                    a.push((attr::DELAY, delay.to_string()));
                }
                a
            }
            Command::SetBootableStorageDrive { lun } => vec![(attr::VALUE, lun.to_string())],
            Command::Nop | Command::Unknown { .. } => Vec::new(),
        };
        write_document(&[(self.tag(), attributes)])
    }

    /// Decodes a host document (device side). Unknown tags become [`Command::Unknown`] so a
    /// device can NAK them; a known tag with missing or malformed attributes is
    /// [`FirehoseError::BadCommand`].
    pub fn parse(doc: &str) -> Result<Command, FirehoseError> {
        let mut elements = parse_document(doc)?;
        if elements.len() != 1 {
            return Err(FirehoseError::Xml(format!(
                "a command document holds exactly one element, this one has {}",
                elements.len()
            )));
        }
        let element = elements.remove(0);
        let tag = element.name.to_ascii_lowercase();
        let range = || -> Result<SectorRange, FirehoseError> {
            Ok(SectorRange {
                lun: element.number(attr::LUN)?,
                start_sector: element.number(attr::START_SECTOR)?,
                sector_size: element.number(attr::SECTOR_SIZE)?,
                num_sectors: element.number(attr::NUM_SECTORS)?,
            })
        };
        Ok(match tag.as_str() {
            "configure" => Command::Configure(Configure {
                memory_name: element.required(attr::MEMORY_NAME)?.to_string(),
                max_payload_to_target: element.number(attr::MAX_PAYLOAD_TO_TARGET)?,
                verbose: element.flag(attr::VERBOSE)?,
                zlp_aware_host: element.flag(attr::ZLP_AWARE_HOST)?,
                skip_storage_init: element.flag(attr::SKIP_STORAGE_INIT)?,
            }),
            "program" => Command::Program(range()?),
            "read" => Command::Read(range()?),
            "getsha256digest" => Command::GetSha256Digest(range()?),
            "erase" => {
                match (
                    element.get(attr::START_SECTOR),
                    element.get(attr::NUM_SECTORS),
                ) {
                    (None, None) => Command::EraseAll {
                        lun: element.number(attr::LUN)?,
                        sector_size: element.number(attr::SECTOR_SIZE)?,
                    },
                    _ => Command::Erase(range()?),
                }
            }
            "patch" => {
                let filename = element.required(attr::FILENAME)?;
                if filename != PATCH_TARGET {
                    return Err(element.bad(format!(
                        "filename={filename:?}: only {PATCH_TARGET:?} patches reach a device"
                    )));
                }
                Command::Patch(Patch {
                    lun: element.number(attr::LUN)?,
                    sector_size: element.number(attr::SECTOR_SIZE)?,
                    start_sector: element.number(attr::START_SECTOR)?,
                    byte_offset: element.number(attr::BYTE_OFFSET)?,
                    size_in_bytes: element.number(attr::SIZE_IN_BYTES)?,
                    value: element.number(attr::VALUE)?,
                })
            }
            "getstorageinfo" => Command::GetStorageInfo {
                lun: element.number(attr::LUN)?,
            },
            "power" => {
                let action = match element.required(attr::VALUE)?.to_ascii_lowercase().as_str() {
                    "reset" => PowerAction::Reset,
                    "off" => PowerAction::Off,
                    "reset_to_edl" => PowerAction::ResetToEdl,
                    other => return Err(element.bad(format!("unsupported power value {other:?}"))),
                };
                let delay_seconds = element
                    .get(attr::DELAY)
                    .map(|_| element.number(attr::DELAY))
                    .transpose()?;
                Command::Power {
                    action,
                    delay_seconds,
                }
            }
            "setbootablestoragedrive" => Command::SetBootableStorageDrive {
                lun: element.number(attr::VALUE)?,
            },
            "nop" => Command::Nop,
            _ => Command::Unknown { tag: element.name },
        })
    }
}
