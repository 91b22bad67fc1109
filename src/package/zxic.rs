//! ZXIC ZX297520V3 packages: the two download loaders, the partition table and the images,
//! for hotspots flashed through their boot ROM (see [`crate::protocol::zxic`]).
//!
//! ```toml
//! [zxic]
//! tloader = "tloader.bin"          # stage 1, "ZX7521V1" at offset 4
//! tboot = "tboot.bin"              # stage 2, a uImage (its 64-byte header is stripped on the wire)
//! partition_table = "partition.bin"
//! [[zxic.image]]
//! partition = "imagefs"
//! file = "imagefs.bin"
//! ```
//!
//! Every file becomes an ordinary package image, so the signature and hashes cover the
//! loaders and the table as they cover the images; the signed [`ZxicPlan`] says which is
//! which. In a ZXIC package a loader's or the table's `partition` is its file name, an
//! image's the partition it is written to.
//!
//! Checked at pack time, with the bytes at hand: tloader carries its magic, tboot is a
//! uImage of its own length, the table parses and fits in 4096 bytes, every image names a
//! partition of that table and fits in it, and no image writes an NV partition (`nvr…`:
//! IMEI and calibration live there; the vendor's flasher skips every image named `NVR…`).
//! Checked in every package opened: the plan's shape. The engine parses the table again,
//! from the verified bytes, before it sends anything.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::manifest::{check_count, Image};
use super::pack::Sources;
use super::{names, PackageError};
use crate::protocol::zxic::bootrom::{is_tloader, parse_uimage, UIMAGE_HEADER_LEN};
use crate::protocol::zxic::partition::WIRE_LEN;
use crate::protocol::zxic::PartitionTable;

/// Largest tloader (it runs from on-chip RAM).
pub const MAX_TLOADER_LEN: u64 = 256 * 1024;
/// Largest tboot.
pub const MAX_TBOOT_LEN: u64 = 16 * 1024 * 1024;
/// Most images in one package.
pub const MAX_WRITES: usize = 64;

/// Whether `partition` holds NV (identity, calibration), which no package writes.
pub fn is_nv(partition: &str) -> bool {
    partition.to_ascii_lowercase().starts_with("nvr")
}

/// What to do to a ZXIC device, in terms of the manifest's images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZxicPlan {
    /// Stage 1, run by the boot ROM.
    pub tloader: usize,
    /// Stage 2, run by tloader: the download loader.
    pub tboot: usize,
    /// partition.bin, sent with `set partitions`.
    pub partition_table: usize,
    /// Writes, in order.
    pub writes: Vec<ZxicWrite>,
}

/// One image and the partition it is written to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZxicWrite {
    /// The partition (identifier charset, never NV).
    pub partition: String,
    /// The image.
    pub image: usize,
}

fn invalid(what: String) -> PackageError {
    PackageError::ManifestInvalid(format!("the [zxic] plan is invalid: {what}"))
}

impl ZxicPlan {
    /// Checks the plan against the manifest's images.
    pub(crate) fn validate(&self, images: &[Image]) -> Result<(), PackageError> {
        let image = |index: usize, role: &str| {
            images.get(index).ok_or_else(|| {
                invalid(format!(
                    "{role} refers to image {index}, but the package has {} images",
                    images.len()
                ))
            })
        };
        if image(self.tloader, "tloader")?.size > MAX_TLOADER_LEN {
            return Err(invalid(format!(
                "tloader is larger than {MAX_TLOADER_LEN} bytes"
            )));
        }
        let tboot = image(self.tboot, "tboot")?.size;
        if tboot > MAX_TBOOT_LEN || tboot <= UIMAGE_HEADER_LEN as u64 {
            return Err(invalid("tboot is not a uImage of a plausible size".into()));
        }
        if image(self.partition_table, "the partition table")?.size > WIRE_LEN as u64 {
            return Err(invalid(format!(
                "the partition table is larger than {WIRE_LEN} bytes"
            )));
        }
        if self.tloader == self.tboot
            || self.tloader == self.partition_table
            || self.tboot == self.partition_table
        {
            return Err(invalid(
                "the loaders and the table must be three files".into(),
            ));
        }
        check_count("[[zxic.image]] entries", self.writes.len(), MAX_WRITES)?;
        let mut partitions = BTreeSet::new();
        let mut used = vec![false; images.len()];
        for index in [self.tloader, self.tboot, self.partition_table] {
            used[index] = true;
        }
        for w in &self.writes {
            names::identifier("partition name", &w.partition)?;
            if is_nv(&w.partition) {
                return Err(invalid(format!(
                    "an image writes {}, an NV partition (IMEI, calibration), which packages never write",
                    w.partition
                )));
            }
            if !partitions.insert(w.partition.as_str()) {
                return Err(invalid(format!("{} is written twice", w.partition)));
            }
            image(w.image, "an image entry")?;
            if std::mem::replace(&mut used[w.image], true) {
                return Err(invalid(format!(
                    "image {} is used twice",
                    images[w.image].file
                )));
            }
        }
        if let Some(unused) = used.iter().position(|u| !u) {
            return Err(invalid(format!(
                "image {:?} is not used by the plan",
                images[unused].file
            )));
        }
        Ok(())
    }
}

/// The `[zxic]` table of the release engineer's manifest.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SourceZxic {
    pub tloader: String,
    pub tboot: String,
    pub partition_table: String,
    #[serde(default, rename = "image")]
    pub images: Vec<SourceZxicImage>,
}

/// One `[[zxic.image]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SourceZxicImage {
    pub partition: String,
    pub file: String,
}

impl SourceZxic {
    /// Checks the names before any file is read.
    pub(crate) fn validate(&self) -> Result<(), PackageError> {
        for (what, name) in [
            ("tloader file name", &self.tloader),
            ("tboot file name", &self.tboot),
            ("partition table file name", &self.partition_table),
        ] {
            names::identifier(what, name)?;
        }
        check_count("[[zxic.image]] entries", self.images.len(), MAX_WRITES)?;
        for image in &self.images {
            names::identifier("partition name", &image.partition)?;
        }
        Ok(())
    }
}

/// Pack time: describes the loaders, the table and the images into `sources`, checks them
/// with their bytes, and returns the plan.
pub(crate) fn build(source: &SourceZxic, sources: &mut Sources) -> Result<ZxicPlan, PackageError> {
    let tloader = sources.add(&source.tloader, &source.tloader)?;
    let tboot = sources.add(&source.tboot, &source.tboot)?;
    let partition_table = sources.add(&source.partition_table, &source.partition_table)?;
    if sources.image(tloader).size > MAX_TLOADER_LEN || !is_tloader(&sources.read_whole(tloader)?) {
        return Err(invalid(format!(
            "{} is not a tloader (ZX7521V1 at offset 4, at most {MAX_TLOADER_LEN} bytes)",
            source.tloader
        )));
    }
    let tboot_len = sources.image(tboot).size;
    if tboot_len > MAX_TBOOT_LEN {
        return Err(invalid(format!(
            "{} is larger than {MAX_TBOOT_LEN} bytes",
            source.tboot
        )));
    }
    let bytes = sources.read_whole(tboot)?;
    let fits = parse_uimage(&bytes)
        .is_some_and(|h| u64::from(h.data_len) + UIMAGE_HEADER_LEN as u64 == tboot_len);
    if !fits {
        return Err(invalid(format!(
            "{} is not a uImage of its own length",
            source.tboot
        )));
    }
    if sources.image(partition_table).size > WIRE_LEN as u64 {
        return Err(invalid(format!(
            "{} is larger than {WIRE_LEN} bytes",
            source.partition_table
        )));
    }
    let table = PartitionTable::parse(&sources.read_whole(partition_table)?)
        .map_err(|e| invalid(format!("{}: {e}", source.partition_table)))?;
    let mut writes = Vec::new();
    for entry in &source.images {
        let image = sources.add(&entry.partition, &entry.file)?;
        let size = sources.image(image).size;
        let room = table
            .find(&entry.partition)
            .filter(|p| p.in_flash())
            .ok_or_else(|| {
                invalid(format!(
                    "{} is not a flash partition of {}",
                    entry.partition, source.partition_table
                ))
            })?
            .size;
        if size > u64::from(room) {
            return Err(invalid(format!(
                "{} has {size} bytes; partition {} holds {room}",
                entry.file, entry.partition
            )));
        }
        writes.push(ZxicWrite {
            partition: entry.partition.clone(),
            image,
        });
    }
    Ok(ZxicPlan {
        tloader,
        tboot,
        partition_table,
        writes,
    })
}
