//! The packages the GUI knows of, and which of them can recover a given device.
//!
//! The recovery wizard offers the packages that fit the device in front of it, not the one
//! that happens to be open. What a package claims here is read from its manifest without
//! checking the signature: it only decides what to offer. The package the user picks is
//! opened and verified like any other before anything runs.

use std::path::{Path, PathBuf};

use crate::device::Mode;
use crate::package::Package;
use crate::protocol::sahara::identity::chip_fits;
use crate::protocol::sahara::{ChipIdentity, Hwid};

/// Most packages looked at in one folder: a folder of thousands is not a firmware shelf.
const MAX_PACKAGES: usize = 200;

/// What a package says it is, unverified.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogEntry {
    /// The file.
    pub path: PathBuf,
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// The products it names.
    pub targets: Vec<String>,
    /// A Qualcomm flat build (flashed through EDL), rather than a fastboot package.
    pub qualcomm: bool,
    /// A ZXIC package (flashed through the ZX297520V3 boot ROM).
    pub zxic: bool,
    /// A Unisoc package (flashed through the boot ROM's download mode).
    pub unisoc: bool,
    /// The MSM hardware id its programmer is signed for (`[qualcomm] hwid`), if declared.
    pub hwid: Option<String>,
    /// The OEM key hash its programmer is signed for (`[qualcomm] pk_hash`), if declared.
    pub pk_hash: Option<String>,
}

impl CatalogEntry {
    /// Whether its programmer is signed for `chip`: `None` when the package declares
    /// nothing the chip reported (see [`chip_fits`]).
    fn fits_chip(&self, chip: &ChipIdentity) -> Option<bool> {
        chip_fits(
            self.hwid.as_deref().and_then(Hwid::parse),
            self.pk_hash.as_deref(),
            chip.hwid,
            chip.pk_hash.as_deref(),
        )
    }
}

/// The packages among `files` and in `dirs` (`*.flpkg`, not recursive) that can be read,
/// each once, in the order found.
pub fn list(files: &[PathBuf], dirs: &[PathBuf]) -> Vec<CatalogEntry> {
    let mut paths: Vec<PathBuf> = files.to_vec();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "flpkg"))
            .take(MAX_PACKAGES)
            .collect();
        found.sort();
        paths.extend(found);
    }
    let mut seen = Vec::new();
    paths
        .into_iter()
        .filter(|p| {
            let new = !seen.contains(p);
            seen.push(p.clone());
            new
        })
        .filter_map(|p| entry(&p))
        .collect()
}

fn entry(path: &Path) -> Option<CatalogEntry> {
    let package = Package::open(path)
        .map_err(|e| tracing::debug!("{}: not offered: {e}", path.display()))
        .ok()?;
    let m = package.manifest();
    Some(CatalogEntry {
        path: path.to_path_buf(),
        name: m.name.clone(),
        version: m.version.to_string(),
        targets: m.targets.iter().map(|t| t.product.clone()).collect(),
        qualcomm: m.qualcomm.is_some(),
        zxic: m.zxic.is_some(),
        unisoc: m.unisoc.is_some(),
        hwid: m.qualcomm.as_ref().and_then(|q| q.hwid.clone()),
        pk_hash: m.qualcomm.as_ref().and_then(|q| q.pk_hash.clone()),
    })
}

/// What the wizard can offer a device: the packages of its kind, and whether they were
/// chosen for it (by its model or its chip) or are every package of its kind because
/// neither says which.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    /// The packages, in catalog order.
    pub packages: Vec<CatalogEntry>,
    /// True when `packages` name the device's model or are signed for its chip.
    pub by_model: bool,
}

/// The packages that can recover a device in `mode` whose model is `model` and whose
/// chip (Sahara command mode, in EDL) is `chip`, where known.
///
/// A device in EDL, DIAG or modem mode takes a Qualcomm flat build, a ZXIC device in its
/// boot ROM a ZXIC package, a Unisoc device in download mode a Unisoc package, a phone in
/// fastboot a fastboot package. A flat build whose programmer is signed for another chip
/// (`[qualcomm] hwid`/`pk_hash`) is never offered: the job would refuse it. Among the
/// rest, those that name the model or are signed for the chip come first and alone; a
/// device that can say neither (a brick in EDL reports no model) is offered every package
/// of its kind.
pub fn offer(
    catalog: &[CatalogEntry],
    mode: Mode,
    model: Option<&str>,
    chip: Option<&ChipIdentity>,
) -> Offer {
    let qualcomm = matches!(mode, Mode::Edl | Mode::Diag | Mode::Modem);
    let fits = |e: &CatalogEntry| chip.and_then(|c| e.fits_chip(c));
    let kind: Vec<CatalogEntry> = catalog
        .iter()
        .filter(|e| {
            e.qualcomm == qualcomm
                && e.zxic == (mode == Mode::Zxic)
                && e.unisoc == (mode == Mode::Unisoc)
        })
        .filter(|e| fits(e) != Some(false))
        .cloned()
        .collect();
    let named: Vec<CatalogEntry> = kind
        .iter()
        .filter(|e| {
            fits(e) == Some(true)
                || model.is_some_and(|m| e.targets.iter().any(|t| t.eq_ignore_ascii_case(m)))
        })
        .cloned()
        .collect();
    if named.is_empty() {
        Offer {
            packages: kind,
            by_model: false,
        }
    } else {
        Offer {
            packages: named,
            by_model: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, targets: &[&str], qualcomm: bool) -> CatalogEntry {
        CatalogEntry {
            path: PathBuf::from(format!("{name}.flpkg")),
            name: name.into(),
            version: "1.0.0".into(),
            targets: targets.iter().map(|t| t.to_string()).collect(),
            qualcomm,
            zxic: false,
            unisoc: false,
            hwid: None,
            pk_hash: None,
        }
    }

    #[test]
    fn a_brick_is_offered_flat_builds_for_its_model_first() {
        let catalog = [
            entry("phone", &["zte-demo-phone"], false),
            entry("dongle", &["MF833V"], true),
            entry("hotspot", &["MU300"], true),
        ];
        let names = |o: Offer| {
            o.packages
                .iter()
                .map(|e| e.name.clone())
                .collect::<Vec<_>>()
        };
        let by_model = offer(&catalog, Mode::Edl, Some("mu300"), None);
        assert!(by_model.by_model);
        assert_eq!(names(by_model), ["hotspot"]);
        // A model no package names, or none at all: every flat build, never the phone's.
        for model in [Some("ZTE emergency download (Qualcomm EDL)"), None] {
            let any = offer(&catalog, Mode::Edl, model, None);
            assert!(!any.by_model);
            assert_eq!(names(any), ["dongle", "hotspot"]);
        }
        assert_eq!(
            names(offer(&catalog, Mode::Fastboot, None, None)),
            ["phone"]
        );
    }

    #[test]
    fn a_brick_in_edl_is_offered_the_flat_builds_signed_for_its_chip() {
        let signed = |name: &str, hwid: &str, pk: Option<&str>| CatalogEntry {
            hwid: Some(hwid.into()),
            pk_hash: pk.map(str::to_string),
            ..entry(name, &["SOME-DONGLE"], true)
        };
        let ours = hex::encode([0x11; 32]);
        let catalog = [
            entry("phone", &["zte-demo-phone"], false),
            entry("unsigned", &["MU300"], true),
            signed("ours", "0x0f1a5e0000000000", Some(&ours)),
            signed("other-chip", "0x000960e10029003e", None),
            signed(
                "other-key",
                "0x0f1a5e0000000000",
                Some(&hex::encode([0x22; 32])),
            ),
        ];
        let chip = ChipIdentity {
            hwid: Some(Hwid(0x0f1a_5e00_0000_0000)),
            pk_hash: Some(ours.clone()),
            ..ChipIdentity::default()
        };
        let names = |o: &Offer| {
            o.packages
                .iter()
                .map(|e| e.name.clone())
                .collect::<Vec<_>>()
        };
        // No model: the chip alone picks the build, in EDL and in DIAG.
        for mode in [Mode::Edl, Mode::Diag] {
            let o = offer(&catalog, mode, None, Some(&chip));
            assert!(o.by_model);
            assert_eq!(names(&o), ["ours"]);
        }
        // A model that names a package signed for another chip does not bring it back.
        let o = offer(&catalog, Mode::Edl, Some("SOME-DONGLE"), Some(&chip));
        assert_eq!(names(&o), ["ours"]);
        // A chip that fits nothing declared: every build of its kind but the ones that
        // contradict it.
        let stranger = ChipIdentity {
            hwid: Some(Hwid(0x0123)),
            ..ChipIdentity::default()
        };
        let o = offer(&catalog, Mode::Edl, None, Some(&stranger));
        assert!(!o.by_model);
        assert_eq!(names(&o), ["unsigned"]);
    }

    #[test]
    fn a_download_mode_device_is_offered_its_family_only_and_phones_never_them() {
        let zxic = CatalogEntry {
            zxic: true,
            ..entry("zxic", &["ZX7520-SIM"], false)
        };
        let unisoc = CatalogEntry {
            unisoc: true,
            ..entry("unisoc", &["UNISOC-SIM"], false)
        };
        let catalog = [
            entry("phone", &["zte-demo-phone"], false),
            entry("hotspot", &["MU300"], true),
            zxic,
            unisoc,
        ];
        let names = |o: Offer| o.packages.into_iter().map(|e| e.name).collect::<Vec<_>>();
        assert_eq!(names(offer(&catalog, Mode::Zxic, None, None)), ["zxic"]);
        assert_eq!(names(offer(&catalog, Mode::Unisoc, None, None)), ["unisoc"]);
        assert_eq!(
            names(offer(&catalog, Mode::Fastboot, None, None)),
            ["phone"]
        );
        assert_eq!(names(offer(&catalog, Mode::Edl, None, None)), ["hotspot"]);
    }
}
