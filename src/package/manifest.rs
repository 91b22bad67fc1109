//! The two manifests: the TOML a release engineer writes, and the JSON that gets signed.
//!
//! The signed manifest is produced by `serde_json` from [`Manifest`] at pack time and parsed
//! back from the exact signed bytes with the same strict derive (unknown fields and duplicate
//! fields are errors), so the verifier and the flasher always see one and the same object.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::keys::KeyId;
use super::qualcomm::{QualcommPlan, SourceQualcomm};
use super::unisoc::{SourceUnisoc, UnisocPlan};
use super::zxic::{SourceZxic, ZxicPlan};
use super::{names, PackageError};

/// Most targets one package may list.
pub const MAX_TARGETS: usize = 64;
/// Most images one package may carry.
pub const MAX_IMAGES: usize = 128;
/// Most variables one package may require.
pub const MAX_REQUIREMENTS: usize = 16;
/// Most accepted values per required variable.
pub const MAX_REQUIRED_VALUES: usize = 32;

/// Largest image size accepted (256 TiB): far beyond any real partition, far below where
/// offset arithmetic could overflow, so absurd declared sizes fail early and by name.
pub const MAX_IMAGE_SIZE: u64 = 1 << 48;

/// The signed description of a package: what it is, which devices it fits and exactly which
/// bytes go to which partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Release name (identifier charset).
    pub name: String,
    /// Release version, for people.
    pub version: semver::Version,
    /// Monotonic anti-rollback counter; compared with the device's, never the version.
    pub security_version: u64,
    /// Refuse to flash below this battery charge.
    pub min_battery_percent: u8,
    /// Free text for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Devices this package fits.
    pub targets: Vec<Target>,
    /// Variables the device must report with one of the accepted values before anything is
    /// written (see [`Requirement`]); in variable order, each variable once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<Requirement>,
    /// Images in container order.
    pub images: Vec<Image>,
    /// Present in a Qualcomm package: what to do in EDL, in terms of `images`. A package
    /// with a plan must be flashed by following the plan, never image by image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualcomm: Option<QualcommPlan>,
    /// Present when the package carries a dynamic-partitions layout (`super_empty.img`):
    /// its logical images are flashed from fastbootd into `super`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic: Option<Dynamic>,
    /// Present in a ZXIC ZX297520V3 package: the loaders, the partition table and where
    /// each image goes, in terms of `images`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zxic: Option<ZxicPlan>,
    /// Present in a Unisoc package: the loaders and which image goes to which partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unisoc: Option<UnisocPlan>,
    /// Key id of the key that signed this manifest at pack time.
    pub signer: KeyId,
}

/// One kind of device a package fits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// What the device reports as its product (fastboot `getvar product`).
    pub product: String,
}

/// One requirement on what the device reports, like an Android factory image's
/// `android-info.txt` line `require version-bootloader=b1c1-0.3-6863019|b1c1-0.3-7241706`.
///
/// The device's answer to `getvar:<variable>` must equal one of `values` exactly; a device
/// that does not report the variable does not meet it. fastboot packages only: the
/// variables are read over fastboot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    /// The getvar variable (`board`, `version-bootloader`, `version-baseband`, …).
    pub variable: String,
    /// The accepted values.
    pub values: Vec<String>,
}

impl Requirement {
    /// The getvar variable the device answers this requirement with: its own name, but for
    /// android-info.txt's `board`, which devices answer as `product`. Google's fastboot
    /// reads `require board=…` so (`check_requirement` in fastboot/fastboot.cpp, "work
    /// around an unfortunate name mismatch"; public source: AOSP platform/system/core,
    /// mirrored at github.com/aosp-mirror/platform_system_core), and factory images are
    /// written for it.
    pub fn device_variable(&self) -> &str {
        match self.variable.as_str() {
            "board" => "product",
            other => other,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), PackageError> {
        // A variable may take one argument, as `has-slot:<partition>` does (android-info.txt's
        // `partition-exists` is checked with it).
        match self.variable.split_once(':') {
            Some((variable, argument)) => {
                names::identifier("required variable", variable)?;
                names::identifier("required variable's argument", argument)?;
            }
            None => names::identifier("required variable", &self.variable)?,
        }
        check_count("required values", self.values.len(), MAX_REQUIRED_VALUES)?;
        for value in &self.values {
            names::product(value).map_err(|e| match e {
                PackageError::InvalidName { value, reason, .. } => PackageError::InvalidName {
                    what: "required value",
                    value,
                    reason,
                },
                e => e,
            })?;
        }
        Ok(())
    }
}

/// Checks the requirements of a package: a bounded list, each variable once.
fn check_requirements(requires: &[Requirement]) -> Result<(), PackageError> {
    if requires.len() > MAX_REQUIREMENTS {
        return Err(PackageError::TooMany {
            what: "required variables",
            count: requires.len() as u64,
            max: MAX_REQUIREMENTS as u64,
        });
    }
    let mut seen = BTreeSet::new();
    for requirement in requires {
        requirement.validate()?;
        if !seen.insert(requirement.variable.as_str()) {
            return Err(PackageError::ManifestInvalid(format!(
                "variable {:?} is required twice",
                requirement.variable
            )));
        }
    }
    Ok(())
}

/// One image: the bytes destined for one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// Partition to write (identifier charset; goes into device commands). In a Qualcomm
    /// package, where the plan says where bytes go, the image's file name instead.
    pub partition: String,
    /// The source file name, for display only; nothing is ever written under this name.
    pub file: String,
    /// Bytes stored in the package.
    pub size: u64,
    /// sha256 of those bytes.
    pub sha256: Sha256Sum,
    /// Present when the image is an Android sparse image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sparse: Option<SparseInfo>,
    /// The partition is a logical one inside `super`: flashed from fastbootd, resized to
    /// the image first. With the package's [`Dynamic`] layout super is laid out anew
    /// (`update-super`) before; without it, the partition is resized in place.
    #[serde(default, skip_serializing_if = "is_false")]
    pub logical: bool,
    /// Firmware (bootloader, radio) that the bootloader must restart on before anything
    /// else is written: Google's flashall sends `reboot-bootloader` after each.
    #[serde(default, skip_serializing_if = "is_false")]
    pub reboot_bootloader: bool,
    /// The sha256 of every block of the stored bytes, so each block can be checked on its
    /// way to the device instead of the whole image before it. Packages made before block
    /// hashes existed have none: their images are hashed whole when verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks: Option<ImageBlocks>,
}

/// The per-block hashes of one image (see [`crate::hashing::BlockHashes::signed_block_size`]
/// for the block size flashline chooses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageBlocks {
    /// Bytes per block; the last block holds the rest of the image.
    pub size: u32,
    /// The blocks' sha256 digests, in order, as one string of 64 lowercase hex digits per
    /// block (compact: a 4 GiB image's 2048 hashes take 128 KiB of manifest).
    pub sha256: String,
}

/// Smallest block a package may declare: smaller blocks would make the manifest large.
const MIN_BLOCK_SIZE: u32 = 64 * 1024;

impl ImageBlocks {
    /// The blocks' digests, decoded.
    pub fn hashes(&self) -> Vec<[u8; 32]> {
        self.sha256
            .as_bytes()
            .chunks(64)
            .filter_map(|hex| super::decode_lower_hex(std::str::from_utf8(hex).ok()?))
            .collect()
    }

    /// As a [`crate::hashing::BlockHashes`] for checking a stream.
    pub fn block_hashes(&self) -> crate::hashing::BlockHashes {
        crate::hashing::BlockHashes::new(self.size as usize, self.hashes())
    }

    fn validate(&self, image: &Image) -> Result<(), PackageError> {
        let bad = |reason: String| {
            PackageError::ManifestInvalid(format!("block hashes of {}: {reason}", image.partition))
        };
        if self.size < MIN_BLOCK_SIZE || !self.size.is_power_of_two() {
            return Err(bad(format!(
                "block size {} is not a power of two of at least {MIN_BLOCK_SIZE}",
                self.size
            )));
        }
        let count = image.size.div_ceil(u64::from(self.size));
        if self.sha256.len() as u64 != count * 64 {
            return Err(bad(format!(
                "{count} blocks need {} hex digits",
                count * 64
            )));
        }
        if self.hashes().len() as u64 != count {
            return Err(bad("hashes must be lowercase hex digits".into()));
        }
        Ok(())
    }
}

fn is_false(value: &bool) -> bool {
    !value
}

/// The dynamic-partitions layout a package carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dynamic {
    /// The `super_empty.img`: LP metadata naming the logical partitions and their groups,
    /// sent with `update-super`. Stored after the images and hashed like one; its
    /// `partition` is [`SUPER_EMPTY`], never a partition on the device.
    pub super_empty: Image,
}

/// The name the `super_empty.img` goes by in messages (it is no partition).
pub const SUPER_EMPTY: &str = "super_empty";

/// Largest `super_empty.img` accepted: the geometry block and one metadata copy, which
/// liblp caps far below this.
pub const MAX_SUPER_EMPTY_SIZE: u64 = 1024 * 1024;

/// The facts of a sparse image's header, so the size on the device is known before flashing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SparseInfo {
    /// Block size in bytes.
    pub blk_sz: u32,
    /// Blocks in the expanded image.
    pub total_blks: u32,
    /// `blk_sz * total_blks`: bytes the image occupies on the partition.
    pub expanded_size: u64,
}

/// A sha256 digest, written as 64 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256Sum(pub [u8; 32]);

impl fmt::Display for Sha256Sum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl FromStr for Sha256Sum {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        super::decode_lower_hex(s)
            .map(Sha256Sum)
            .ok_or_else(|| format!("sha256 must be 64 lowercase hex digits, got {s:?}"))
    }
}

impl TryFrom<String> for Sha256Sum {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Sha256Sum> for String {
    fn from(sum: Sha256Sum) -> String {
        sum.to_string()
    }
}

impl Manifest {
    /// Parses the exact signed bytes. Any deviation from the schema is an error.
    pub(crate) fn from_signed_bytes(bytes: &[u8]) -> Result<Self, PackageError> {
        let manifest: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| PackageError::ManifestInvalid(e.to_string()))?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Checks every rule the schema cannot express.
    pub(crate) fn validate(&self) -> Result<(), PackageError> {
        check_release(
            &self.name,
            self.description.as_deref(),
            self.min_battery_percent,
            &self.targets,
        )?;
        check_partitions(self.images.iter().map(|i| i.partition.as_str()))?;
        for image in &self.images {
            image.validate()?;
        }
        check_requirements(&self.requires)?;
        let download_mode = [
            self.qualcomm.is_some(),
            self.zxic.is_some(),
            self.unisoc.is_some(),
        ];
        match download_mode.iter().filter(|&&f| f).count() {
            0 => {}
            1 if self.requires.is_empty() => {}
            1 => return Err(PackageError::RequiresOverFastbootOnly),
            _ => {
                return Err(PackageError::ManifestInvalid(
                    "a package is for one download-mode family: qualcomm, zxic or unisoc, not \
                     several"
                        .into(),
                ))
            }
        }
        if let Some(plan) = &self.qualcomm {
            plan.validate(&self.images)?;
        }
        if let Some(plan) = &self.zxic {
            plan.validate(&self.images)?;
        }
        if let Some(plan) = &self.unisoc {
            plan.validate(&self.images)?;
        }
        check_dynamic(
            download_mode.contains(&true),
            self.dynamic.is_some(),
            self.images
                .iter()
                .map(|i| (i.partition.as_str(), i.logical, i.reboot_bootloader)),
        )?;
        if let Some(dynamic) = &self.dynamic {
            let image = &dynamic.super_empty;
            image.validate()?;
            if image.partition != SUPER_EMPTY || image.sparse.is_some() || image.logical {
                return Err(PackageError::ManifestInvalid(format!(
                    "the super_empty image must be a plain file named {SUPER_EMPTY:?}"
                )));
            }
            if image.size > MAX_SUPER_EMPTY_SIZE {
                return Err(PackageError::DeclaredSizeTooLarge {
                    partition: SUPER_EMPTY.into(),
                    size: image.size,
                });
            }
        }
        Ok(())
    }

    /// Every file the package stores, in container order: the images, then the
    /// `super_empty.img` of a dynamic layout.
    pub fn stored(&self) -> impl Iterator<Item = &Image> {
        self.images
            .iter()
            .chain(self.dynamic.as_ref().map(|d| &d.super_empty))
    }

    /// Whether the package writes logical partitions (and so needs fastbootd).
    pub fn has_logical(&self) -> bool {
        self.images.iter().any(|i| i.logical)
    }
}

/// The rules of logical images and firmware restarts: firmware that asks for a bootloader
/// restart is not logical, and a Qualcomm package has neither (nor a dynamic layout).
fn check_dynamic<'a>(
    download_mode: bool,
    dynamic: bool,
    images: impl Iterator<Item = (&'a str, bool, bool)>,
) -> Result<(), PackageError> {
    let invalid = |why: String| Err(PackageError::ManifestInvalid(why));
    for (partition, logical, reboot_bootloader) in images {
        if download_mode && (logical || reboot_bootloader) {
            return invalid(format!(
                "image {partition:?}: a download-mode package (Qualcomm, ZXIC, Unisoc) has no \
                 logical partitions and no bootloader restarts"
            ));
        }
        if logical && reboot_bootloader {
            return invalid(format!(
                "image {partition:?} cannot be both logical (flashed from fastbootd) and \
                 reboot_bootloader (firmware flashed from the bootloader)"
            ));
        }
    }
    if download_mode && dynamic {
        return invalid(
            "a download-mode package (Qualcomm, ZXIC, Unisoc) cannot carry a [dynamic] layout"
                .into(),
        );
    }
    Ok(())
}

impl Image {
    /// Bytes the image occupies on the device once written (sparse images expanded).
    pub fn expanded_size(&self) -> u64 {
        self.sparse.map_or(self.size, |s| s.expanded_size)
    }

    fn validate(&self) -> Result<(), PackageError> {
        names::display_text(
            "image file name",
            &self.file,
            names::MAX_DISPLAY_NAME_LEN,
            false,
        )?;
        if self.size == 0 {
            return Err(PackageError::EmptyImage {
                partition: self.partition.clone(),
            });
        }
        if self.size > MAX_IMAGE_SIZE {
            return Err(PackageError::DeclaredSizeTooLarge {
                partition: self.partition.clone(),
                size: self.size,
            });
        }
        if let Some(blocks) = &self.blocks {
            blocks.validate(self)?;
        }
        if let Some(sparse) = self.sparse {
            let consistent = sparse.blk_sz != 0
                && sparse.blk_sz % 4 == 0
                && u64::from(sparse.blk_sz) * u64::from(sparse.total_blks) == sparse.expanded_size
                && self.size >= crate::protocol::sparse::FILE_HEADER_LEN as u64;
            if !consistent {
                return Err(PackageError::SparseInfoInconsistent {
                    partition: self.partition.clone(),
                });
            }
        }
        Ok(())
    }
}

/// The release engineer's manifest (`pack` input).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SourceManifest {
    pub name: String,
    pub version: semver::Version,
    pub security_version: u64,
    pub min_battery_percent: u8,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub target: Vec<Target>,
    /// `[requires]`: variable = [accepted values].
    #[serde(default)]
    pub requires: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub image: Vec<SourceImage>,
    #[serde(default)]
    pub qualcomm: Option<SourceQualcomm>,
    /// `[dynamic]`: the package carries a dynamic-partitions layout.
    #[serde(default)]
    pub dynamic: Option<SourceDynamic>,
    #[serde(default)]
    pub zxic: Option<SourceZxic>,
    #[serde(default)]
    pub unisoc: Option<SourceUnisoc>,
}

/// One `[[image]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SourceImage {
    pub partition: String,
    /// Path relative to the manifest's directory.
    pub file: String,
    /// A logical partition inside `super` (see [`Image::logical`]).
    #[serde(default)]
    pub logical: bool,
    /// Restart the bootloader after writing it (see [`Image::reboot_bootloader`]).
    #[serde(default)]
    pub reboot_bootloader: bool,
}

/// The `[dynamic]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SourceDynamic {
    /// Path of the `super_empty.img`, relative to the manifest's directory.
    pub super_empty: String,
}

impl SourceManifest {
    /// The `[requires]` table as the signed manifest lists it.
    pub(crate) fn requirements(&self) -> Vec<Requirement> {
        self.requires
            .iter()
            .map(|(variable, values)| Requirement {
                variable: variable.clone(),
                values: values.clone(),
            })
            .collect()
    }

    /// What every download-mode package ([qualcomm], [zxic], [unisoc]) must not have: the
    /// fastboot-only `[requires]` (getvar values) and `[dynamic]` layout.
    fn check_download_family(&self, family: &str) -> Result<(), PackageError> {
        if !self.requires.is_empty() {
            return Err(PackageError::RequiresOverFastbootOnly);
        }
        if self.dynamic.is_some() {
            return Err(PackageError::ManifestInvalid(format!(
                "a {family} package cannot carry a [dynamic] layout"
            )));
        }
        Ok(())
    }

    /// Checks everything that does not need the image files, so a typo is reported before
    /// gigabytes are hashed.
    pub(crate) fn validate(&self) -> Result<(), PackageError> {
        check_release(
            &self.name,
            self.description.as_deref(),
            self.min_battery_percent,
            &self.target,
        )?;
        check_requirements(&self.requirements())?;
        let families = [
            self.qualcomm.is_some(),
            self.zxic.is_some(),
            self.unisoc.is_some(),
        ];
        if families.iter().filter(|&&f| f).count() > 1 {
            return Err(PackageError::ManifestInvalid(
                "a package is for one download-mode family: [qualcomm], [zxic] or [unisoc], \
                 not several"
                    .into(),
            ));
        }
        if let Some(zxic) = &self.zxic {
            if !self.image.is_empty() {
                return Err(PackageError::ManifestInvalid(
                    "a manifest with a [zxic] table has no [[image]] tables; its images are \
                     [[zxic.image]] tables"
                        .into(),
                ));
            }
            self.check_download_family("ZXIC")?;
            return zxic.validate();
        }
        if let Some(unisoc) = &self.unisoc {
            if !self.image.is_empty() {
                return Err(PackageError::UnisocMixedKinds);
            }
            self.check_download_family("Unisoc")?;
            return unisoc.validate();
        }
        if let Some(qualcomm) = &self.qualcomm {
            if !self.image.is_empty() {
                return Err(PackageError::QualcommMixedKinds);
            }
            self.check_download_family("Qualcomm")?;
            return qualcomm.validate();
        }
        check_partitions(self.image.iter().map(|i| i.partition.as_str()))?;
        check_dynamic(
            false,
            self.dynamic.is_some(),
            self.image
                .iter()
                .map(|i| (i.partition.as_str(), i.logical, i.reboot_bootloader)),
        )?;
        if let Some(dynamic) = &self.dynamic {
            names::display_text(
                "super_empty file name",
                &dynamic.super_empty,
                names::MAX_DISPLAY_NAME_LEN,
                false,
            )?;
        }
        for image in &self.image {
            names::display_text(
                "image file name",
                &image.file,
                names::MAX_DISPLAY_NAME_LEN,
                false,
            )?;
        }
        Ok(())
    }
}

fn check_release(
    name: &str,
    description: Option<&str>,
    min_battery_percent: u8,
    targets: &[Target],
) -> Result<(), PackageError> {
    names::identifier("package name", name)?;
    if let Some(text) = description {
        names::display_text("description", text, names::MAX_DESCRIPTION_LEN, true)?;
    }
    if min_battery_percent > 100 {
        return Err(PackageError::BatteryPercentOutOfRange(min_battery_percent));
    }
    check_count("targets", targets.len(), MAX_TARGETS)?;
    for target in targets {
        names::product(&target.product)?;
    }
    Ok(())
}

fn check_partitions<'a>(
    partitions: impl ExactSizeIterator<Item = &'a str>,
) -> Result<(), PackageError> {
    check_count("images", partitions.len(), MAX_IMAGES)?;
    let mut seen = BTreeSet::new();
    for partition in partitions {
        names::identifier("partition name", partition)?;
        if !seen.insert(partition) {
            return Err(PackageError::DuplicatePartition(partition.to_owned()));
        }
    }
    Ok(())
}

pub(crate) fn check_count(
    what: &'static str,
    count: usize,
    max: usize,
) -> Result<(), PackageError> {
    if count == 0 {
        return Err(PackageError::EmptyList { what });
    }
    if count > max {
        return Err(PackageError::TooMany {
            what,
            count: count as u64,
            max: max as u64,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            name: "demo".into(),
            version: semver::Version::new(1, 0, 0),
            security_version: 3,
            min_battery_percent: 30,
            description: None,
            targets: vec![Target {
                product: "zte-demo-phone".into(),
            }],
            requires: Vec::new(),
            images: vec![Image {
                partition: "boot".into(),
                file: "boot.img".into(),
                size: 4096,
                sha256: Sha256Sum([0xab; 32]),
                sparse: None,
                logical: false,
                reboot_bootloader: false,
                blocks: None,
            }],
            qualcomm: None,
            dynamic: None,
            zxic: None,
            unisoc: None,
            signer: KeyId::from_bytes([1; 8]),
        }
    }

    #[test]
    fn json_round_trip_is_exact() {
        let bytes = serde_json::to_vec(&sample()).unwrap();
        assert_eq!(Manifest::from_signed_bytes(&bytes).unwrap(), sample());
    }

    #[test]
    fn strict_json() {
        let text = String::from_utf8(serde_json::to_vec(&sample()).unwrap()).unwrap();
        let unknown = text.replacen("{", "{\"extra\":1,", 1);
        let duplicate = text.replacen("{", "{\"name\":\"other\",", 1);
        let upper_hash = text.replace(&"ab".repeat(32), &"AB".repeat(32));
        for bad in [unknown, duplicate, upper_hash, format!("{text} x")] {
            assert!(
                matches!(
                    Manifest::from_signed_bytes(bad.as_bytes()),
                    Err(PackageError::ManifestInvalid(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn dynamic_layouts_round_trip_and_keep_their_rules() {
        let mut m = sample();
        let plain = serde_json::to_string(&m).unwrap();
        assert!(
            !plain.contains("logical") && !plain.contains("dynamic"),
            "packages without a layout sign the same bytes as before: {plain}"
        );
        m.images[0].logical = true;
        m.validate().unwrap();
        let mut super_empty = m.images[0].clone();
        super_empty.partition = SUPER_EMPTY.into();
        super_empty.logical = false;
        m.dynamic = Some(Dynamic { super_empty });
        m.validate().unwrap();
        let bytes = serde_json::to_vec(&m).unwrap();
        assert_eq!(Manifest::from_signed_bytes(&bytes).unwrap(), m);
        assert_eq!(m.stored().count(), 2);
        m.images[0].reboot_bootloader = true;
        assert!(m.validate().is_err(), "logical firmware is refused");
        m.images[0].reboot_bootloader = false;
        m.dynamic.as_mut().unwrap().super_empty.partition = "system".into();
        assert!(m.validate().is_err(), "the layout is no partition");
    }

    #[test]
    fn block_hashes_are_exact_and_cover_the_image() {
        let blocks = |size: u32, hex: String| {
            let mut m = sample();
            m.images[0].size = 3 * 1024 * 1024 + 1;
            m.images[0].blocks = Some(ImageBlocks { size, sha256: hex });
            m
        };
        let good = blocks(1 << 20, "ab".repeat(32 * 4));
        good.validate().unwrap();
        let bytes = serde_json::to_vec(&good).unwrap();
        assert_eq!(Manifest::from_signed_bytes(&bytes).unwrap(), good);
        assert_eq!(
            good.images[0].blocks.as_ref().unwrap().hashes(),
            vec![[0xab; 32]; 4]
        );
        for bad in [
            blocks(1 << 20, "ab".repeat(32 * 3)),
            blocks(1 << 20, "AB".repeat(32 * 4)),
            blocks(4096, "ab".repeat(32 * 769)),
            blocks(3 << 20, "ab".repeat(32 * 2)),
        ] {
            assert!(
                matches!(bad.validate(), Err(PackageError::ManifestInvalid(_))),
                "{:?}",
                bad.images[0].blocks
            );
        }
    }

    #[test]
    fn semantic_rules() {
        let mut m = sample();
        m.images.push(m.images[0].clone());
        assert!(matches!(m.validate(), Err(PackageError::DuplicatePartition(p)) if p == "boot"));
        let mut m = sample();
        m.images[0].size = 1 << 63;
        assert!(matches!(
            m.validate(),
            Err(PackageError::DeclaredSizeTooLarge { .. })
        ));
        let mut m = sample();
        m.images[0].size = 0;
        assert!(matches!(m.validate(), Err(PackageError::EmptyImage { .. })));
        let mut m = sample();
        m.min_battery_percent = 101;
        assert!(matches!(
            m.validate(),
            Err(PackageError::BatteryPercentOutOfRange(101))
        ));
        let mut m = sample();
        m.targets.clear();
        assert!(matches!(
            m.validate(),
            Err(PackageError::EmptyList { what: "targets" })
        ));
        let mut m = sample();
        m.images[0].sparse = Some(SparseInfo {
            blk_sz: 4096,
            total_blks: 2,
            expanded_size: 4096,
        });
        assert!(matches!(
            m.validate(),
            Err(PackageError::SparseInfoInconsistent { .. })
        ));
        let requirement = |variable: &str, values: &[&str]| Requirement {
            variable: variable.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        let mut m = sample();
        m.requires = vec![requirement("version-bootloader", &["b1c1-0.3-6863019"])];
        m.validate().unwrap();
        let bytes = serde_json::to_vec(&m).unwrap();
        assert_eq!(Manifest::from_signed_bytes(&bytes).unwrap(), m);
        for bad in [
            vec![requirement("board", &[])],
            vec![requirement("board", &["a\u{1b}[2J"])],
            vec![requirement("bo ard", &["x"])],
            vec![requirement("board", &["x"]), requirement("board", &["y"])],
        ] {
            let mut m = sample();
            m.requires = bad.clone();
            assert!(m.validate().is_err(), "{bad:?}");
        }
        let mut m = sample();
        m.images[0].partition = "boot\n".into();
        assert!(matches!(
            m.validate(),
            Err(PackageError::InvalidName { .. })
        ));
    }
}
