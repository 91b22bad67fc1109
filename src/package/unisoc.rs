//! Unisoc (Spreadtrum) packages: two loaders (FDL1, FDL2) with their load addresses, and
//! the images FDL2 writes to partitions by name.
//!
//! A package is a fastboot, a Qualcomm or a Unisoc package, never two at once. The release
//! engineer's manifest:
//!
//! ```toml
//! [unisoc]
//! fdl1 = "fdl1-sign.bin"
//! fdl1_address = 0x5500
//! fdl2 = "fdl2-sign.bin"
//! fdl2_address = 0x9efffe00
//!
//! [unisoc.partitions]
//! boot = "boot.img"
//! system = "system.img"
//! ```
//!
//! or a vendor `.pac` imported with `flashline pack --from-pac` ([`pac`]). Every file is an
//! ordinary package image, signed and hashed like any other; the signed [`UnisocPlan`]
//! says which image is which loader and which goes to which partition.
//!
//! The NV partitions ([`is_nv`]: IMEI, RF calibration, production data) are unique to each
//! device. A package may carry images for them (vendor .pac files do), but the engine
//! writes them only when the technician asks for it; by default it backs them up and
//! leaves them as they are, as Unisoc's own download tool does with "backup NV".

pub mod pac;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::manifest::{check_count, Image};
use super::pack::Sources;
use super::{names, PackageError};

/// Most partitions one Unisoc package writes.
pub const MAX_PARTITIONS: usize = 126;

/// A loader and where it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Loader {
    /// Index into the manifest's images.
    pub image: usize,
    /// Load and start address.
    pub address: u32,
}

/// One partition write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionWrite {
    /// The partition, as FDL2 names it.
    pub partition: String,
    /// Index into the manifest's images.
    pub image: usize,
}

/// What to do on a Unisoc device, in terms of the manifest's images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnisocPlan {
    /// Sent to the boot ROM.
    pub fdl1: Loader,
    /// Sent to FDL1.
    pub fdl2: Loader,
    /// Written by FDL2, in order.
    pub program: Vec<PartitionWrite>,
}

/// Whether `partition` holds what makes a device itself (IMEI, calibration): the NV pairs
/// Unisoc's u-boot FDL2 lists as `PARTITION_PURPOSE_NV` (`fixnv1`/`fixnv2` and
/// `runtimenv1`/`runtimenv2`, bare or with a modem prefix: `l_`, `w_`, `tl_`, `lf_`, `nr_`,
/// `g_`, `td`, `wl_`, `wcn`), and `prodnv` and `miscdata`, which the same code and
/// spd_dump treat as per-device data; A/B suffixes included.
pub fn is_nv(partition: &str) -> bool {
    let base = partition
        .strip_suffix("_a")
        .or_else(|| partition.strip_suffix("_b"))
        .unwrap_or(partition);
    base == "prodnv"
        || base == "miscdata"
        || ["fixnv1", "fixnv2", "runtimenv1", "runtimenv2"]
            .iter()
            .any(|nv| base.ends_with(nv))
}

impl UnisocPlan {
    /// Checks the plan against the images it names.
    pub(crate) fn validate(&self, images: &[Image]) -> Result<(), PackageError> {
        let invalid = |why: String| Err(PackageError::UnisocPlanInvalid(why));
        let mut used = BTreeSet::new();
        for (what, loader) in [("fdl1", &self.fdl1), ("fdl2", &self.fdl2)] {
            let Some(image) = images.get(loader.image) else {
                return invalid(format!(
                    "{what} names image {}, which is not there",
                    loader.image
                ));
            };
            if image.sparse.is_some() {
                return invalid(format!("{what} is a sparse image"));
            }
            if !used.insert(loader.image) {
                return invalid(format!("image {} is used twice", loader.image));
            }
        }
        check_count("partitions", self.program.len(), MAX_PARTITIONS)?;
        let mut partitions = BTreeSet::new();
        for write in &self.program {
            names::identifier("partition name", &write.partition)?;
            crate::protocol::unisoc::encode_name(&write.partition)
                .map_err(|e| PackageError::UnisocPlanInvalid(e.to_string()))?;
            if !partitions.insert(write.partition.as_str()) {
                return invalid(format!("partition {:?} is written twice", write.partition));
            }
            let Some(image) = images.get(write.image) else {
                return invalid(format!(
                    "partition {:?} names image {}, which is not there",
                    write.partition, write.image
                ));
            };
            if image.sparse.is_some() {
                return invalid(format!(
                    "the image for {:?} is sparse; FDL2 writes raw bytes",
                    write.partition
                ));
            }
            if !used.insert(write.image) {
                return invalid(format!("image {} is used twice", write.image));
            }
        }
        if used.len() != images.len() {
            return invalid("the package carries images the plan does not use".into());
        }
        Ok(())
    }
}

/// The `[unisoc]` table of the release engineer's manifest.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SourceUnisoc {
    pub fdl1: String,
    pub fdl1_address: u32,
    pub fdl2: String,
    pub fdl2_address: u32,
    /// Partition name → image file.
    pub partitions: BTreeMap<String, String>,
}

impl SourceUnisoc {
    /// Checks the names before any file is read.
    pub(crate) fn validate(&self) -> Result<(), PackageError> {
        for name in [&self.fdl1, &self.fdl2] {
            names::display_text("loader file name", name, names::MAX_DISPLAY_NAME_LEN, false)?;
        }
        check_count("partitions", self.partitions.len(), MAX_PARTITIONS)?;
        for partition in self.partitions.keys() {
            names::identifier("partition name", partition)?;
        }
        Ok(())
    }
}

/// Pack time: describes the loaders and images into `sources` and returns the plan.
pub(crate) fn build(
    source: &SourceUnisoc,
    sources: &mut Sources,
) -> Result<UnisocPlan, PackageError> {
    let fdl1 = sources.add("fdl1", &source.fdl1)?;
    let fdl2 = sources.add("fdl2", &source.fdl2)?;
    let mut program = Vec::with_capacity(source.partitions.len());
    for (partition, file) in &source.partitions {
        let image = sources.add(partition, file)?;
        program.push(PartitionWrite {
            partition: partition.clone(),
            image,
        });
    }
    Ok(UnisocPlan {
        fdl1: Loader {
            image: fdl1,
            address: source.fdl1_address,
        },
        fdl2: Loader {
            image: fdl2,
            address: source.fdl2_address,
        },
        program,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nv_partitions_are_known_by_their_unisoc_names() {
        for nv in [
            "l_fixnv1",
            "l_fixnv2",
            "fixnv1",
            "w_fixnv2",
            "nr_runtimenv1",
            "prodnv",
            "miscdata",
            "l_fixnv1_a",
            "tl_runtimenv2",
        ] {
            assert!(is_nv(nv), "{nv}");
        }
        for other in ["boot", "system", "userdata", "uboot", "l_modem", "fixnv"] {
            assert!(!is_nv(other), "{other}");
        }
    }
}
