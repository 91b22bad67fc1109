//! Google-style factory images turned into signed flashline packages
//! (`flashline pack --factory`), so that the signature and the requirements travel with
//! the images.
//!
//! Three inputs are read, as Google ships them or as a build leaves them:
//! - the factory zip: `<device>-<build>/` holding `bootloader-*.img`, `radio-*.img`,
//!   `flash-all.sh` and the image zip `image-<device>-<build>.zip`;
//! - the image zip alone;
//! - a product-out folder (`$ANDROID_PRODUCT_OUT`): `*.img`, `android-info.txt`,
//!   `super_empty.img`, maybe `fastboot-info.txt`.
//!
//! Zip entries are inflated into a private staging folder beside the output (so the
//! package's two passes, hashing then copying, read plain files on the same disk), never
//! into memory; the folder is removed however packing ends. Requirements come from
//! `android-info.txt` ([`android_info`]), the order from Google's rules ([`plan`]), which
//! images live in `super` from `super_empty.img`'s LP metadata.

mod android_info;
mod archive;
mod error;
mod fastboot_info;
mod plan;

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

pub use error::FactoryError;
pub use plan::{PlannedImage, Skipped};

use self::archive::ZipSource;
use super::dynamic;
use super::manifest::{SourceDynamic, SourceImage, SourceManifest, Target, MAX_SUPER_EMPTY_SIZE};
use super::pack::pack_source;
use super::verify::file_kind;
use super::{PackSummary, PackageError};

/// Largest android-info.txt or fastboot-info.txt read (real ones are a few hundred bytes).
const MAX_TEXT: u64 = 64 * 1024;

/// What the person packing chooses; everything else comes from the factory image.
#[derive(Debug, Clone, Default)]
pub struct FactoryOptions {
    /// Package name; by default the device name in the file names, else the first board.
    pub name: Option<String>,
    /// Package version; by default derived from the build id (see [`version_from_build`]).
    pub version: Option<semver::Version>,
    /// Anti-rollback counter to sign in; factory images carry none flashline can read.
    pub security_version: u64,
    /// Refuse to flash below this battery charge.
    pub min_battery_percent: u8,
    /// Also write the userdata/metadata/cache images (`fastboot -w`).
    pub wipe: bool,
}

/// What [`pack_factory`] produced.
#[derive(Debug, Clone)]
pub struct FactorySummary {
    /// The package as written.
    pub pack: PackSummary,
    /// The build id found in the file names, if any.
    pub build: Option<String>,
    /// The images in flashing order, with how each is flashed.
    pub images: Vec<PlannedImage>,
    /// Files of the factory image left out, each with the reason.
    pub skipped: Vec<Skipped>,
    /// android-info.txt lines that apply to none of the boards and were left out.
    pub dropped_requirements: Vec<String>,
}

/// Packs the factory image at `input` (zip or folder) into a package at `out`, signed with
/// the key in `key_file`. On any error nothing is left behind.
pub fn pack_factory(
    input: &Path,
    options: &FactoryOptions,
    key_file: &Path,
    out: &Path,
) -> Result<FactorySummary, FactoryError> {
    let meta = input.metadata().map_err(FactoryError::io(input))?;
    let out_dir = match out.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let staging = tempfile::Builder::new()
        .prefix(".flashline-factory-")
        .tempdir_in(out_dir)
        .map_err(FactoryError::io(out_dir))?;
    let (mut images, firmware, file_name) = if meta.is_dir() {
        (Images::Folder(input.to_owned()), Vec::new(), None)
    } else if meta.is_file() {
        open_zip(input, staging.path())?
    } else {
        return Err(FactoryError::NotAFactoryImage(input.to_owned()));
    };
    let base = match &images {
        Images::Folder(dir) => dir.clone(),
        Images::Zip(_) => staging.path().to_owned(),
    };
    let files = images.files()?;
    let firmware = find_firmware(&images, &files, firmware)?;

    let info_text =
        images
            .read_text("android-info.txt")?
            .ok_or_else(|| FactoryError::MissingFile {
                file: "android-info.txt".into(),
                needed_by: "names the devices the image fits".into(),
            })?;
    let info = android_info::parse(&info_text)?;
    let fastboot_info = images
        .read_text("fastboot-info.txt")?
        .map(|text| fastboot_info::parse(&text))
        .transpose()?;
    let logical = if files.contains("super_empty.img") {
        images.stage(
            "super_empty.img",
            staging.path(),
            Some(MAX_SUPER_EMPTY_SIZE),
        )?;
        logical_partitions(&base.join("super_empty.img"))?
    } else {
        BTreeSet::new()
    };
    let plan = plan::plan(&plan::Inputs {
        files: &files,
        firmware: &firmware,
        fastboot_info: fastboot_info.as_ref(),
        logical: &logical,
        wipe: options.wipe,
    })?;
    let (device, build) = file_name
        .as_deref()
        .and_then(device_and_build)
        .map_or((None, None), |(d, b)| (Some(d), Some(b)));
    let name = match (&options.name, &device) {
        (Some(name), _) => name.clone(),
        (None, Some(device)) => device.clone(),
        (None, None) => info.boards[0].clone(),
    };
    let version = match (&options.version, &build) {
        (Some(version), _) => version.clone(),
        (None, Some(build)) => version_from_build(build).ok_or_else(|| {
            FactoryError::Naming(format!(
                "build id {build:?} is not of the form TAG.YYMMDD.NNN; give the package \
                 version with --version"
            ))
        })?,
        (None, None) => {
            return Err(FactoryError::Naming(
                "no build id in the file names (a product-out folder has none); give the \
                 package version with --version"
                    .into(),
            ))
        }
    };
    // Last, once everything that can be refused cheaply was checked: the images (the
    // outer zip's firmware is staged already).
    for image in &plan.images {
        images.stage(&image.file, staging.path(), None)?;
    }
    let description = format!(
        "Google factory image{} for {}",
        build
            .as_deref()
            .map(|b| format!(" {b}"))
            .unwrap_or_default(),
        info.boards.join(", ")
    );
    let source = SourceManifest {
        name,
        version,
        security_version: options.security_version,
        min_battery_percent: options.min_battery_percent,
        description: Some(description),
        target: info
            .boards
            .iter()
            .map(|b| Target { product: b.clone() })
            .collect(),
        requires: info
            .requirements
            .iter()
            .map(|r| (r.variable.clone(), r.values.clone()))
            .collect(),
        image: plan
            .images
            .iter()
            .map(|i| SourceImage {
                partition: i.partition.clone(),
                file: i.file.clone(),
                logical: i.logical,
                reboot_bootloader: i.reboot_bootloader,
            })
            .collect(),
        qualcomm: None,
        zxic: None,
        unisoc: None,
        dynamic: plan
            .images
            .iter()
            .any(|i| i.logical)
            .then(|| SourceDynamic {
                super_empty: "super_empty.img".into(),
            }),
    };
    let pack = pack_source(source, &base, key_file, out)?;
    Ok(FactorySummary {
        pack,
        build,
        images: plan.images,
        skipped: plan.skipped,
        dropped_requirements: info.dropped,
    })
}

/// The images level of a factory image: an image zip, or a product-out folder.
enum Images {
    Zip(ZipSource),
    Folder(PathBuf),
}

impl Images {
    /// Files at the top level (entries in sub-folders are not Google's images).
    fn files(&self) -> Result<BTreeSet<String>, FactoryError> {
        match self {
            Images::Zip(zip) => Ok(zip
                .names()
                .filter(|n| !n.contains('/'))
                .map(str::to_owned)
                .collect()),
            Images::Folder(dir) => {
                let mut files = BTreeSet::new();
                for entry in std::fs::read_dir(dir).map_err(FactoryError::io(dir))? {
                    let entry = entry.map_err(FactoryError::io(dir))?;
                    let kind = entry.file_type().map_err(FactoryError::io(entry.path()))?;
                    // Links are listed so that packing names them as refused links
                    // rather than as missing files.
                    let listed = kind.is_file() || kind.is_symlink();
                    if let (true, Ok(name)) = (listed, entry.file_name().into_string()) {
                        files.insert(name);
                    }
                }
                Ok(files)
            }
        }
    }

    /// A small text file, if present.
    fn read_text(&mut self, name: &str) -> Result<Option<String>, FactoryError> {
        match self {
            Images::Zip(zip) => {
                if !zip.names().any(|n| n == name) {
                    return Ok(None);
                }
                zip.read_text(name, MAX_TEXT).map(Some)
            }
            Images::Folder(dir) => {
                let path = dir.join(name);
                // As for images, a link is refused: what is signed is what is in the folder.
                match path.symlink_metadata() {
                    Ok(meta) if meta.is_file() => {}
                    Ok(meta) => {
                        return Err(FactoryError::Package(PackageError::NotARegularFile {
                            path,
                            kind: file_kind(&meta),
                        }))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(FactoryError::io(&path)(e)),
                }
                let file = File::open(&path).map_err(FactoryError::io(&path))?;
                let mut bytes = Vec::new();
                file.take(MAX_TEXT + 1)
                    .read_to_end(&mut bytes)
                    .map_err(FactoryError::io(&path))?;
                if bytes.len() as u64 > MAX_TEXT {
                    return Err(FactoryError::TextTooLarge {
                        file: name.to_owned(),
                        max: MAX_TEXT,
                    });
                }
                String::from_utf8(bytes)
                    .map(Some)
                    .map_err(|_| FactoryError::NotText {
                        file: name.to_owned(),
                    })
            }
        }
    }

    /// Makes `name` a plain file under the package's base folder: inflated into `staging`
    /// for a zip, already there for a folder. `max` caps files read whole afterwards.
    fn stage(&mut self, name: &str, staging: &Path, max: Option<u64>) -> Result<(), FactoryError> {
        match self {
            Images::Zip(zip) => {
                let dest = staging.join(name);
                if dest.exists() {
                    return Ok(());
                }
                zip.extract(name, &dest, max)
            }
            Images::Folder(_) => Ok(()),
        }
    }
}

/// Opens a zip input: an outer factory zip (whose image zip and firmware are inflated into
/// `staging`) or an image zip. Returns the images level, the firmware found in the outer
/// zip, and the file name that carries the device and build.
#[allow(clippy::type_complexity)]
fn open_zip(
    input: &Path,
    staging: &Path,
) -> Result<(Images, Vec<(String, String)>, Option<String>), FactoryError> {
    let mut zip = ZipSource::open(input, input)?;
    let names: Vec<String> = zip.names().map(str::to_owned).collect();
    if names.iter().any(|n| n == "android-info.txt") {
        let file_name = input
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned);
        return Ok((Images::Zip(zip), Vec::new(), file_name));
    }
    let image_zips: Vec<&String> = names
        .iter()
        .filter(|n| {
            let base = base_name(n);
            base.starts_with("image-") && base.ends_with(".zip")
        })
        .collect();
    let inner = match image_zips.as_slice() {
        [] => return Err(FactoryError::UnknownLayout(input.to_owned())),
        [one] => (*one).clone(),
        [first, second, ..] => {
            return Err(FactoryError::Ambiguous {
                path: input.to_owned(),
                what: "image zip",
                first: (*first).clone(),
                second: (*second).clone(),
            })
        }
    };
    let folder = &inner[..inner.len() - base_name(&inner).len()];
    let mut firmware = Vec::new();
    for kind in ["bootloader", "radio"] {
        let found: Vec<&str> = names
            .iter()
            .filter(|n| n.starts_with(folder) && !n[folder.len()..].contains('/'))
            .map(|n| n.as_str())
            .filter(|n| is_firmware(base_name(n), kind))
            .collect();
        match found.as_slice() {
            [] => {}
            [one] => {
                let file = base_name(one).to_owned();
                zip.extract(one, &staging.join(&file), None)?;
                firmware.push((kind.to_owned(), file));
            }
            [first, second, ..] => {
                return Err(FactoryError::Ambiguous {
                    path: input.to_owned(),
                    what: if kind == "radio" {
                        "radio image"
                    } else {
                        "bootloader image"
                    },
                    first: (*first).to_owned(),
                    second: (*second).to_owned(),
                })
            }
        }
    }
    let inner_name = base_name(&inner).to_owned();
    // A name no image can have (image names never start with a dot), so that staging an
    // image can never find the image zip in its place.
    let inner_path = staging.join(".image.zip");
    zip.extract(&inner, &inner_path, None)?;
    let images = ZipSource::open(&inner_path, &input.join(&inner))?;
    if !images.names().any(|n| n == "android-info.txt") {
        return Err(FactoryError::MissingFile {
            file: "android-info.txt".into(),
            needed_by: format!("{inner_name} must hold"),
        });
    }
    Ok((Images::Zip(images), firmware, Some(inner_name)))
}

/// Bootloader and radio images: those of the outer zip, or else those beside the images
/// (`bootloader.img`, `bootloader-*.img`, …), never both.
fn find_firmware(
    images: &Images,
    files: &BTreeSet<String>,
    outer: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, FactoryError> {
    let mut firmware = outer;
    for kind in ["bootloader", "radio"] {
        let found: Vec<String> = files
            .iter()
            .filter(|f| is_firmware(f, kind))
            .cloned()
            .collect();
        let outer = firmware
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, f)| f.clone());
        let outer = outer.as_ref();
        let path = match images {
            Images::Zip(zip) => zip.path().to_owned(),
            Images::Folder(dir) => dir.clone(),
        };
        match (outer, found.as_slice()) {
            (_, []) => {}
            (None, [one]) => firmware.push((kind.to_owned(), one.clone())),
            (Some(first), [second, ..]) | (None, [first, second, ..]) => {
                return Err(FactoryError::Ambiguous {
                    path,
                    what: if kind == "radio" {
                        "radio image"
                    } else {
                        "bootloader image"
                    },
                    first: first.clone(),
                    second: second.clone(),
                })
            }
        }
    }
    // Google's flash-all writes the bootloader before the radio.
    firmware.sort_by_key(|(kind, _)| kind != "bootloader");
    Ok(firmware)
}

/// `bootloader.img` or `bootloader-….img` (likewise for `radio`).
fn is_firmware(file: &str, kind: &str) -> bool {
    file.strip_prefix(kind)
        .and_then(|rest| rest.strip_suffix(".img"))
        .is_some_and(|middle| middle.is_empty() || middle.starts_with('-'))
}

fn base_name(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// The partitions `super_empty.img` lays out, by name and, for those listed once per slot
/// (`system_a`, `system_b`), by the name without the slot suffix.
fn logical_partitions(path: &Path) -> Result<BTreeSet<String>, FactoryError> {
    let file = File::open(path).map_err(FactoryError::io(path))?;
    let mut bytes = Vec::new();
    file.take(MAX_SUPER_EMPTY_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(FactoryError::io(path))?;
    if bytes.len() as u64 > MAX_SUPER_EMPTY_SIZE {
        return Err(FactoryError::TextTooLarge {
            file: "super_empty.img".into(),
            max: MAX_SUPER_EMPTY_SIZE,
        });
    }
    let metadata = dynamic::parse(&bytes)?;
    let mut names = BTreeSet::new();
    for partition in &metadata.partitions {
        let name = partition.name.as_str();
        names.insert(name.to_owned());
        if let Some((base, _)) = name.rsplit_once('_') {
            // Kept only if the package's own check names it the same way.
            if dynamic::logical_names(&metadata, base).contains(&name) {
                names.insert(base.to_owned());
            }
        }
    }
    Ok(names)
}

/// `image-<device>-<build>.zip` → (device, build). Google's build ids hold no `-`.
fn device_and_build(file_name: &str) -> Option<(String, String)> {
    let stem = file_name.strip_prefix("image-")?.strip_suffix(".zip")?;
    let (device, build) = stem.rsplit_once('-')?;
    let plain = |s: &str, extra: &[u8]| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
    };
    (plain(device, b"_-") && plain(build, b".")).then(|| (device.to_owned(), build.to_owned()))
}

/// The package version for a Google build id `TAG.YYMMDD.NNN[.…]` (`AP2A.240805.005`):
/// `YYMMDD.NNN.0`, with the whole build id as semver build metadata
/// (`240805.5.0+ap2a.240805.005`). Builds then order by date and sequence as Google
/// numbers them; semver ignores the metadata when comparing, so it only shows which build
/// it was. Older ids (`JWR66V`, `MDA89D`) have no date and need `--version`.
pub fn version_from_build(build: &str) -> Option<semver::Version> {
    let mut parts = build.split('.');
    let (tag, date, sequence) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |s: &str, len: std::ops::RangeInclusive<usize>| {
        len.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    };
    if tag.is_empty() || !tag.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    if !digits(date, 6..=6) || !digits(sequence, 1..=6) {
        return None;
    }
    let mut version = semver::Version::new(date.parse().ok()?, sequence.parse().ok()?, 0);
    version.build = semver::BuildMetadata::new(build).ok()?;
    Some(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions() {
        assert_eq!(
            device_and_build("image-oriole-ap2a.240805.005.zip"),
            Some(("oriole".into(), "ap2a.240805.005".into()))
        );
        assert_eq!(device_and_build("image-oriole.zip"), None);
        assert_eq!(device_and_build("oriole-ap2a.zip"), None);
        let v = version_from_build("ap2a.240805.005").unwrap();
        assert_eq!(v.to_string(), "240805.5.0+ap2a.240805.005");
        assert!(version_from_build("tq3a.230901.001.b1").is_some());
        assert!(
            version_from_build("ap2a.240805.005").unwrap()
                > version_from_build("ap1a.240505.004").unwrap()
        );
        assert_eq!(version_from_build("jwr66v"), None);
        assert_eq!(version_from_build("ap2a.2408.005"), None);
        assert!(is_firmware(
            "bootloader-oriole-slider-14.5-11677881.img",
            "bootloader"
        ));
        assert!(is_firmware("radio.img", "radio"));
        assert!(!is_firmware("radiox.img", "radio"));
    }
}
