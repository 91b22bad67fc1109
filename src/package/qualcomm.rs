//! Qualcomm flat builds: a Firehose programmer, `rawprogram*.xml`, `patch*.xml` and the
//! images they name, for flashing modems, hotspots and bricked phones through Qualcomm EDL.
//!
//! A package is either a fastboot package (`[[image]]` tables: one image per partition) or
//! a Qualcomm package (one `[qualcomm]` table), never both: the two are flashed through
//! different protocols and a mixed package would have no single meaning.
//!
//! ```toml
//! [qualcomm]
//! programmer = "prog_firehose_ddr.elf"
//! rawprogram = ["rawprogram0.xml"]
//! patch = ["patch0.xml"]
//! memory = "emmc"              # or "ufs", "nand"; default: from SECTOR_SIZE_IN_BYTES
//! backup = ["fsg", "modemst1"] # labels to back up before any write, besides the model's
//! ```
//!
//! `pack` reads the XML files and resolves them into a [`QualcommPlan`] inside the signed
//! manifest. Every file involved becomes an ordinary package image, so the usual signature
//! and hash checks cover it: the programmer, each XML file, and each file the XML names
//! (once, however often it is named). In a Qualcomm package an image's `partition` is its
//! file name, since the plan, not the image, says where bytes go. File names must be plain
//! names in the manifest's directory (letters, digits, `_`, `.`, `-`), as flat builds are.
//!
//! The plan is checked whenever a manifest is, at pack time and in every package opened:
//! an image larger than its partition is refused (qdl truncates it), sparse flags must
//! match the files, offsets must lie inside them and sector sizes must match the memory.
//!
//! Flashing order, as qdl and QFIL do it: upload [`QualcommPlan::programmer`], configure
//! [`QualcommPlan::memory`], read back the [`QualcommPlan::backup`] labels, run
//! [`QualcommPlan::erase`], then [`QualcommPlan::program`], then [`QualcommPlan::patch`] in
//! order, evaluating each [`expr::Expr`] against the LUN it addresses.

pub mod expr;
mod patch;
mod rawprogram;
mod xml;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use self::expr::Expr;
pub use self::patch::{parse_patches, DISK};
pub use self::rawprogram::{parse_rawprogram, RawProgram};
pub use self::xml::XmlError;
use super::manifest::{check_count, Image};
use super::pack::Sources;
use super::{names, PackageError};

/// Largest rawprogram or patch file accepted (vendor files are well under 100 KiB).
pub const MAX_XML_LEN: u64 = 4 << 20;
/// Most entries in one rawprogram or patch file.
pub const MAX_XML_ELEMENTS: usize = 4096;
/// Most rawprogram files, and most patch files, in one package (one per LUN; UFS has 8).
pub const MAX_XML_FILES: usize = 16;
/// Highest `physical_partition_number` (LUN) accepted.
pub const MAX_LUN: u32 = 31;
/// Most extra backup labels.
pub const MAX_BACKUP_LABELS: usize = 64;

/// The storage behind the programmer, as Firehose `<configure MemoryName=…>` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Memory {
    /// eMMC: 512-byte sectors, one user LUN plus boot partitions.
    #[default]
    Emmc,
    /// UFS: 4096-byte sectors, several LUNs.
    Ufs,
    /// Raw NAND (MDM9x07/SDX-class modems): entries count in pages of 2048 or 4096 bytes;
    /// the erase block size comes from the device, and bad blocks are the programmer's
    /// business.
    Nand,
}

impl Memory {
    /// The Firehose `MemoryName`.
    pub fn as_str(self) -> &'static str {
        match self {
            Memory::Emmc => "emmc",
            Memory::Ufs => "ufs",
            Memory::Nand => "nand",
        }
    }

    /// The sector (NAND: page) sizes the entries of a plan for this memory may use.
    pub fn sector_sizes(self) -> &'static [u32] {
        match self {
            Memory::Emmc => &[512],
            Memory::Ufs => &[4096],
            Memory::Nand => &[2048, 4096],
        }
    }
}

impl fmt::Display for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do to a device in EDL, resolved from the XML files at pack time and signed.
/// Image numbers are indices into [`super::Manifest::images`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualcommPlan {
    /// The Firehose programmer, uploaded through Sahara.
    pub programmer: usize,
    /// The storage type.
    pub memory: Memory,
    /// The rawprogram files as packed (for audit; the plan already holds their content).
    pub rawprogram_files: Vec<usize>,
    /// The patch files as packed (for audit).
    pub patch_files: Vec<usize>,
    /// Erases, in file order; run before any program.
    pub erase: Vec<EraseOp>,
    /// Writes, in file order (rawprogram files in manifest order); placeholders left out.
    pub program: Vec<ProgramOp>,
    /// Device (`DISK`) patches in file order; run after all programs.
    pub patch: Vec<PatchOp>,
    /// Partition labels to back up before any write, besides the model's own list.
    pub backup: Vec<String>,
    /// The MSM hardware id the programmer is signed for (`0x` + hex): a device reporting
    /// another one is refused before the programmer is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hwid: Option<String>,
    /// The OEM key hash the programmer is signed for (hex), checked like `hwid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pk_hash: Option<String>,
}

/// One `<program>`: write an image to a LUN.
///
/// `I` is the image: its index in the manifest (the signed plan), or its file name (as
/// parsed from a rawprogram file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramOp<I = usize> {
    /// Partition label, for display and for spotting boot-critical partitions.
    pub label: String,
    /// `physical_partition_number`.
    pub lun: u32,
    /// `SECTOR_SIZE_IN_BYTES`: 512 or 4096, matching the plan's memory.
    pub sector_size: u32,
    /// First sector on the LUN.
    pub start_sector: Expr,
    /// Partition size in sectors; 0 means "as large as the image".
    pub num_partition_sectors: u64,
    /// The image to write.
    pub image: I,
    /// Sectors of the image file to skip before writing (raw images only).
    pub file_sector_offset: u64,
    /// Whether the image is an Android sparse image, to be expanded chunk by chunk.
    pub sparse: bool,
}

/// One `<erase>`: erase sectors of a LUN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EraseOp {
    /// Partition label, if the file gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// `physical_partition_number`.
    pub lun: u32,
    /// `SECTOR_SIZE_IN_BYTES`.
    pub sector_size: u32,
    /// First sector to erase.
    pub start_sector: Expr,
    /// Sectors to erase (at least 1).
    pub num_partition_sectors: u64,
}

/// One device `<patch>`: write `value` as a little-endian integer of `size_in_bytes` bytes
/// at byte `start_sector * sector_size + byte_offset` of the LUN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchOp {
    /// `physical_partition_number`.
    pub lun: u32,
    /// `SECTOR_SIZE_IN_BYTES`.
    pub sector_size: u32,
    /// Sector the offset counts from.
    pub start_sector: Expr,
    /// Byte offset from that sector.
    pub byte_offset: u64,
    /// Width of the value, 1 to 8 bytes.
    pub size_in_bytes: u8,
    /// The value to write.
    pub value: Expr,
    /// The vendor's description (may be empty).
    pub what: String,
}

impl<I> ProgramOp<I> {
    /// The same operation naming its image differently.
    fn with_image<J>(self, image: J) -> ProgramOp<J> {
        ProgramOp {
            label: self.label,
            lun: self.lun,
            sector_size: self.sector_size,
            start_sector: self.start_sector,
            num_partition_sectors: self.num_partition_sectors,
            image,
            file_sector_offset: self.file_sector_offset,
            sparse: self.sparse,
        }
    }
}

impl ProgramOp {
    /// Sectors this operation writes to the device: the image bytes after
    /// `file_sector_offset`, rounded up to whole sectors (the last one zero-padded), or a
    /// sparse image's expanded size. `image` must be the manifest image [`Self::image`]
    /// names. A verified plan guarantees this is at most a non-zero
    /// `num_partition_sectors`.
    pub fn sectors(&self, image: &Image) -> u64 {
        let sector = u64::from(self.sector_size.max(1));
        let bytes = match image.sparse {
            Some(info) => info.expanded_size,
            None => image
                .size
                .saturating_sub(self.file_sector_offset.saturating_mul(sector)),
        };
        bytes.div_ceil(sector)
    }

    fn validate(&self, image: &Image, memory: Memory) -> Result<(), PackageError> {
        names::identifier("label", &self.label)?;
        check_target(&self.label, self.lun, self.sector_size, memory)?;
        let sector = u64::from(self.sector_size);
        if self.sparse != image.sparse.is_some() {
            return Err(PackageError::QualcommSparseMismatch {
                label: self.label.clone(),
                file: image.file.clone(),
                declared: self.sparse,
            });
        }
        match image.sparse {
            Some(_) if self.file_sector_offset != 0 => {
                return Err(PackageError::QualcommPlanInvalid(format!(
                    "rawprogram entry {:?} gives a file_sector_offset for the sparse image {:?}",
                    self.label, image.file
                )));
            }
            Some(info) if u64::from(info.blk_sz) % sector != 0 => {
                return Err(PackageError::QualcommPlanInvalid(format!(
                    "the sparse image {:?} has {}-byte blocks, not a multiple of the {sector}-byte \
                     sectors of rawprogram entry {:?}",
                    image.file, info.blk_sz, self.label
                )));
            }
            Some(_) => {}
            None => {
                let offset = self.file_sector_offset.saturating_mul(sector);
                if offset >= image.size {
                    return Err(PackageError::QualcommOffsetBeyondFile {
                        label: self.label.clone(),
                        file: image.file.clone(),
                        offset,
                        size: image.size,
                    });
                }
            }
        }
        let sectors = self.sectors(image);
        if self.num_partition_sectors != 0 && sectors > self.num_partition_sectors {
            return Err(PackageError::QualcommImageTooLarge {
                label: self.label.clone(),
                file: image.file.clone(),
                sectors,
                partition_sectors: self.num_partition_sectors,
            });
        }
        Ok(())
    }
}

impl PatchOp {
    /// Whether `value` fits in [`Self::size_in_bytes`] bytes; a value that does not must
    /// not be written (it would be silently cut).
    pub fn fits(&self, value: u64) -> bool {
        self.size_in_bytes >= 8 || value >> (8 * u32::from(self.size_in_bytes)) == 0
    }
}

impl QualcommPlan {
    /// Checks every rule the schema cannot express, against the manifest's images.
    pub(crate) fn validate(&self, images: &[Image]) -> Result<(), PackageError> {
        let image = |index: usize, role: &str| {
            images.get(index).ok_or_else(|| {
                PackageError::QualcommPlanInvalid(format!(
                    "{role} refers to image {index}, but the package has {} images",
                    images.len()
                ))
            })
        };
        image(self.programmer, "the programmer")?;
        check_signing(self.hwid.as_deref(), self.pk_hash.as_deref())?;
        check_count(
            "rawprogram files",
            self.rawprogram_files.len(),
            MAX_XML_FILES,
        )?;
        if !self.patch_files.is_empty() {
            check_count("patch files", self.patch_files.len(), MAX_XML_FILES)?;
        }
        for (what, files) in [
            ("rawprogram files", &self.rawprogram_files),
            ("patch files", &self.patch_files),
        ] {
            for &index in files {
                image(index, what)?;
            }
            if files.iter().collect::<BTreeSet<_>>().len() != files.len() {
                return Err(PackageError::QualcommPlanInvalid(format!(
                    "the {what} list names one file twice"
                )));
            }
        }
        check_count(
            "rawprogram entries that write a file",
            self.program.len(),
            MAX_XML_FILES * MAX_XML_ELEMENTS,
        )?;
        for op in &self.program {
            op.validate(image(op.image, "a rawprogram entry")?, self.memory)?;
        }
        for op in &self.erase {
            if let Some(label) = &op.label {
                names::identifier("label", label)?;
            }
            let label = op.label.as_deref().unwrap_or("erase");
            check_target(label, op.lun, op.sector_size, self.memory)?;
            if op.num_partition_sectors == 0 {
                return Err(PackageError::QualcommPlanInvalid(format!(
                    "erase entry {label:?} covers no sectors"
                )));
            }
        }
        for op in &self.patch {
            check_target("patch", op.lun, op.sector_size, self.memory)?;
            if !(1..=8).contains(&op.size_in_bytes) {
                return Err(PackageError::QualcommPlanInvalid(format!(
                    "a patch writes {} bytes; 1 to 8 are allowed",
                    op.size_in_bytes
                )));
            }
            if !op.what.is_empty() {
                names::display_text(
                    "patch description",
                    &op.what,
                    names::MAX_DISPLAY_NAME_LEN,
                    false,
                )?;
            }
        }
        check_backup(&self.backup)?;

        let mut used = vec![false; images.len()];
        let referenced = [self.programmer]
            .into_iter()
            .chain(self.rawprogram_files.iter().copied())
            .chain(self.patch_files.iter().copied())
            .chain(self.program.iter().map(|op| op.image));
        for index in referenced {
            used[index] = true;
        }
        if let Some(unused) = used.iter().position(|u| !u) {
            return Err(PackageError::QualcommPlanInvalid(format!(
                "image {:?} is not used by the Qualcomm plan",
                images[unused].file
            )));
        }
        Ok(())
    }
}

/// Checks an entry's LUN and sector size, and that the sector size is the memory's.
fn check_target(
    label: &str,
    lun: u32,
    sector_size: u32,
    memory: Memory,
) -> Result<(), PackageError> {
    let invalid =
        |reason: String| PackageError::QualcommPlanInvalid(format!("entry {label:?}: {reason}"));
    check_lun(lun).map_err(invalid)?;
    check_sector_size(sector_size).map_err(invalid)?;
    if !memory.sector_sizes().contains(&sector_size) {
        let fits = match sector_size {
            4096 => "ufs\"` or `memory = \"nand",
            2048 => "nand",
            _ => "emmc",
        };
        let has: Vec<String> = memory
            .sector_sizes()
            .iter()
            .map(ToString::to_string)
            .collect();
        return Err(invalid(format!(
            "it uses {sector_size}-byte sectors, but {memory} storage has {}-byte sectors (the \
             manifest's [qualcomm] table sets the storage: `memory = \"{fits}\"` fits this \
             entry)",
            has.join("- or ")
        )));
    }
    Ok(())
}

/// `SECTOR_SIZE_IN_BYTES` is 512 (eMMC), 4096 (UFS, NAND) or 2048 (NAND pages).
fn check_sector_size(size: u32) -> Result<(), String> {
    if matches!(size, 512 | 2048 | 4096) {
        Ok(())
    } else {
        Err(format!("sector size {size} is not 512, 2048 or 4096"))
    }
}

/// `physical_partition_number` is at most [`MAX_LUN`].
fn check_lun(lun: u32) -> Result<(), String> {
    if lun <= MAX_LUN {
        Ok(())
    } else {
        Err(format!("physical partition {lun} is above {MAX_LUN}"))
    }
}

fn check_backup(labels: &[String]) -> Result<(), PackageError> {
    if labels.len() > MAX_BACKUP_LABELS {
        return Err(PackageError::TooMany {
            what: "backup labels",
            count: labels.len() as u64,
            max: MAX_BACKUP_LABELS as u64,
        });
    }
    let mut seen = BTreeSet::new();
    for label in labels {
        names::identifier("backup label", label)?;
        if !seen.insert(label) {
            return Err(PackageError::QualcommPlanInvalid(format!(
                "backup label {label:?} is listed twice"
            )));
        }
    }
    Ok(())
}

/// The `[qualcomm]` table of the release engineer's manifest.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SourceQualcomm {
    pub programmer: String,
    pub rawprogram: Vec<String>,
    #[serde(default)]
    pub patch: Vec<String>,
    /// `None`: inferred from the rawprogram entries' sector size ([`infer_memory`]).
    #[serde(default)]
    pub memory: Option<Memory>,
    #[serde(default)]
    pub backup: Vec<String>,
    #[serde(default)]
    pub hwid: Option<String>,
    #[serde(default)]
    pub pk_hash: Option<String>,
}

impl SourceQualcomm {
    /// Checks the names before any file is read.
    pub(crate) fn validate(&self) -> Result<(), PackageError> {
        names::identifier("programmer file name", &self.programmer)?;
        check_count("rawprogram files", self.rawprogram.len(), MAX_XML_FILES)?;
        if !self.patch.is_empty() {
            check_count("patch files", self.patch.len(), MAX_XML_FILES)?;
        }
        for (what, files) in [
            ("rawprogram file name", &self.rawprogram),
            ("patch file name", &self.patch),
        ] {
            let mut seen = BTreeSet::new();
            for name in files {
                names::identifier(what, name)?;
                if !seen.insert(name) {
                    return Err(PackageError::QualcommPlanInvalid(format!(
                        "{name:?} is listed twice"
                    )));
                }
            }
        }
        check_backup(&self.backup)?;
        check_signing(self.hwid.as_deref(), self.pk_hash.as_deref())
    }
}

/// Checks `[qualcomm] hwid` and `pk_hash`, the device a programmer is signed for.
fn check_signing(hwid: Option<&str>, pk_hash: Option<&str>) -> Result<(), PackageError> {
    use crate::protocol::sahara::{identity::parse_pk_hash, Hwid};
    if let Some(hwid) = hwid.filter(|h| Hwid::parse(h).is_none()) {
        return Err(PackageError::QualcommPlanInvalid(format!(
            "hwid {hwid:?} is not 0x followed by up to 16 hex digits"
        )));
    }
    if let Some(hash) = pk_hash.filter(|h| parse_pk_hash(h).is_none()) {
        return Err(PackageError::QualcommPlanInvalid(format!(
            "pk_hash {hash:?} is not a hash of 32 to 128 bytes in hex"
        )));
    }
    Ok(())
}

/// Pack time: describes the programmer, the XML files and every file they name into
/// `sources`, and resolves the XML into a plan over those images.
pub(crate) fn build(
    source: &SourceQualcomm,
    sources: &mut Sources,
) -> Result<QualcommPlan, PackageError> {
    let mut files = Files {
        sources,
        index: BTreeMap::new(),
    };
    let mut plan = QualcommPlan {
        programmer: files.add(&source.programmer)?,
        memory: source.memory.unwrap_or_default(),
        rawprogram_files: Vec::new(),
        patch_files: Vec::new(),
        erase: Vec::new(),
        program: Vec::new(),
        patch: Vec::new(),
        backup: source.backup.clone(),
        hwid: source.hwid.clone(),
        pk_hash: source.pk_hash.clone(),
    };
    for name in &source.rawprogram {
        let (index, text) = files.xml(name)?;
        let raw = parse_rawprogram(&text).map_err(xml_error(name))?;
        plan.rawprogram_files.push(index);
        plan.erase.extend(raw.erase);
        for op in raw.program {
            let image = files.add(&op.image)?;
            plan.program.push(op.with_image(image));
        }
    }
    for name in &source.patch {
        let (index, text) = files.xml(name)?;
        plan.patch
            .extend(parse_patches(&text).map_err(xml_error(name))?);
        plan.patch_files.push(index);
    }
    if source.memory.is_none() {
        plan.memory = infer_memory(&plan)?;
    }
    Ok(plan)
}

/// The memory a flat build is for, from the sector size its rawprogram entries use, as
/// qdl and QFIL builds imply it: 4096-byte sectors are UFS, 512-byte ones eMMC, 2048-byte
/// pages NAND. A build that mixes them, has no entries, or is for NAND with 4096-byte
/// pages must say which it is in the manifest.
fn infer_memory(plan: &QualcommPlan) -> Result<Memory, PackageError> {
    let sizes: BTreeSet<u32> = plan
        .program
        .iter()
        .map(|op| op.sector_size)
        .chain(plan.erase.iter().map(|op| op.sector_size))
        .collect();
    match sizes.iter().copied().collect::<Vec<_>>().as_slice() {
        [512] => Ok(Memory::Emmc),
        [2048] => Ok(Memory::Nand),
        [4096] => Ok(Memory::Ufs),
        [] => Err(PackageError::QualcommPlanInvalid(
            "the rawprogram files write nothing, so the storage type cannot be told from their \
             sector size: add `memory = \"emmc\"` or `memory = \"ufs\"` to the manifest's \
             [qualcomm] table"
                .into(),
        )),
        other => Err(PackageError::QualcommPlanInvalid(format!(
            "the rawprogram entries use sector sizes {other:?}, so the storage type cannot be \
             told from them: add `memory = \"emmc\"` (512-byte sectors) or `memory = \"ufs\"` \
             (4096-byte sectors) to the manifest's [qualcomm] table"
        ))),
    }
}

/// The files of a Qualcomm package being packed, each described once.
struct Files<'a> {
    sources: &'a mut Sources,
    index: BTreeMap<String, usize>,
}

impl Files<'_> {
    /// The image number of file `name`, describing it on first use.
    fn add(&mut self, name: &str) -> Result<usize, PackageError> {
        if let Some(&index) = self.index.get(name) {
            return Ok(index);
        }
        let index = self.sources.add(name, name)?;
        self.index.insert(name.to_owned(), index);
        Ok(index)
    }

    /// Adds an XML file and returns its text, read from the very bytes that were hashed.
    fn xml(&mut self, name: &str) -> Result<(usize, String), PackageError> {
        let index = self.add(name)?;
        let size = self.sources.image(index).size;
        if size > MAX_XML_LEN {
            return Err(xml_error(name)(XmlError::TooLarge {
                size,
                max: MAX_XML_LEN,
            }));
        }
        let bytes = self.sources.read_whole(index)?;
        let text = String::from_utf8(bytes).map_err(|_| xml_error(name)(XmlError::NotUtf8))?;
        Ok((index, text))
    }
}

fn xml_error(file: &str) -> impl FnOnce(XmlError) -> PackageError + '_ {
    move |source| PackageError::QualcommXml {
        file: file.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::{Sha256Sum, SparseInfo};

    fn image(name: &str, size: u64) -> Image {
        Image {
            partition: name.into(),
            file: name.into(),
            size,
            sha256: Sha256Sum([0; 32]),
            sparse: None,
            logical: false,
            reboot_bootloader: false,
            blocks: None,
        }
    }

    fn images() -> Vec<Image> {
        vec![
            image("prog.elf", 100),
            image("rawprogram0.xml", 100),
            image("a.bin", 1000),
            image("patch0.xml", 100),
        ]
    }

    fn expr(text: &str) -> Expr {
        Expr::parse(text).unwrap()
    }

    fn plan() -> QualcommPlan {
        QualcommPlan {
            programmer: 0,
            memory: Memory::Emmc,
            rawprogram_files: vec![1],
            patch_files: vec![3],
            erase: vec![EraseOp {
                label: None,
                lun: 0,
                sector_size: 512,
                start_sector: expr("NUM_DISK_SECTORS-8"),
                num_partition_sectors: 8,
            }],
            program: vec![ProgramOp {
                label: "a".into(),
                lun: 0,
                sector_size: 512,
                start_sector: expr("34"),
                num_partition_sectors: 2,
                image: 2,
                file_sector_offset: 0,
                sparse: false,
            }],
            patch: vec![PatchOp {
                lun: 0,
                sector_size: 512,
                start_sector: expr("1"),
                byte_offset: 16,
                size_in_bytes: 4,
                value: expr("CRC32(1,92)"),
                what: String::new(),
            }],
            backup: vec!["fsg".into()],
            hwid: None,
            pk_hash: None,
        }
    }

    #[test]
    fn consistent_plan_validates_and_round_trips() {
        let plan = plan();
        plan.validate(&images()).unwrap();
        assert_eq!(plan.program[0].sectors(&images()[2]), 2);
        let json = serde_json::to_string(&plan).unwrap();
        assert!(
            json.contains(r#""start_sector":"NUM_DISK_SECTORS-8.""#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<QualcommPlan>(&json).unwrap(), plan);
        for bad in [
            json.replace("\"34.\"", "\"34\""),
            json.replace("\"34.\"", "\"x\""),
            json.replace("\"memory\":\"emmc\"", "\"memory\":\"EMMC\""),
            json.replacen('{', "{\"extra\":1,", 1),
        ] {
            assert!(serde_json::from_str::<QualcommPlan>(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn inconsistent_plans_are_refused() {
        type Change = fn(&mut QualcommPlan, &mut Vec<Image>);
        type Check = fn(&PackageError) -> bool;
        let invalid: Check = |e| matches!(e, PackageError::QualcommPlanInvalid(_));
        let cases: &[(Change, Check)] = &[
            (
                |_, i| i.push(image("extra.bin", 1)),
                |e| matches!(e, PackageError::QualcommPlanInvalid(m) if m.contains("not used")),
            ),
            (|p, _| p.programmer = 9, invalid),
            (|p, _| p.program[0].image = 7, invalid),
            (|p, _| p.patch_files = vec![8], invalid),
            (
                |p, _| p.rawprogram_files.clear(),
                |e| matches!(e, PackageError::EmptyList { .. }),
            ),
            (|p, _| p.rawprogram_files.push(1), invalid),
            (
                |p, _| p.program.clear(),
                |e| matches!(e, PackageError::EmptyList { .. }),
            ),
            (|p, _| p.program[0].sector_size = 4096, invalid),
            (|p, _| p.memory = Memory::Ufs, invalid),
            (|p, _| p.program[0].lun = MAX_LUN + 1, invalid),
            (
                |p, _| p.program[0].label = "a b".into(),
                |e| matches!(e, PackageError::InvalidName { .. }),
            ),
            (|p, _| p.erase[0].num_partition_sectors = 0, invalid),
            (|p, _| p.erase[0].sector_size = 1024, invalid),
            (|p, _| p.patch[0].size_in_bytes = 9, invalid),
            (
                |p, _| p.patch[0].what = "a\u{1b}".into(),
                |e| matches!(e, PackageError::InvalidName { .. }),
            ),
            (|p, _| p.backup.push("fsg".into()), invalid),
            (
                |p, _| p.program[0].num_partition_sectors = 1,
                |e| {
                    matches!(
                        e,
                        PackageError::QualcommImageTooLarge {
                            sectors: 2,
                            partition_sectors: 1,
                            ..
                        }
                    )
                },
            ),
            (
                |p, _| p.program[0].file_sector_offset = 2,
                |e| {
                    matches!(
                        e,
                        PackageError::QualcommOffsetBeyondFile {
                            offset: 1024,
                            size: 1000,
                            ..
                        }
                    )
                },
            ),
            (
                |p, _| p.program[0].sparse = true,
                |e| {
                    matches!(
                        e,
                        PackageError::QualcommSparseMismatch { declared: true, .. }
                    )
                },
            ),
            (
                |p, i| {
                    p.program[0].sparse = true;
                    i[2].sparse = Some(SparseInfo {
                        blk_sz: 256,
                        total_blks: 2,
                        expanded_size: 512,
                    });
                },
                invalid,
            ),
            (
                |p, i| {
                    p.program[0].sparse = true;
                    p.program[0].file_sector_offset = 1;
                    i[2].sparse = Some(SparseInfo {
                        blk_sz: 512,
                        total_blks: 1,
                        expanded_size: 512,
                    });
                },
                invalid,
            ),
        ];
        for (index, (change, check)) in cases.iter().enumerate() {
            let (mut p, mut i) = (plan(), images());
            change(&mut p, &mut i);
            match p.validate(&i) {
                Err(e) if check(&e) => assert!(!e.to_string().is_empty()),
                other => panic!("case {index}: {other:?}"),
            }
        }
    }

    #[test]
    fn patch_values_must_fit() {
        let mut patch = plan().patch.remove(0);
        assert!(patch.fits(0xffff_ffff));
        assert!(!patch.fits(0x1_0000_0000));
        patch.size_in_bytes = 1;
        assert!(patch.fits(255) && !patch.fits(256));
        patch.size_in_bytes = 8;
        assert!(patch.fits(u64::MAX));
    }
}
