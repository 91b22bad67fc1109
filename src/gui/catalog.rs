//! The packages the GUI knows of, and which of them can recover a given device.
//!
//! The recovery wizard offers the packages that fit the device in front of it, not the one
//! that happens to be open. What a package claims here is read from its manifest without
//! checking the signature: it only decides what to offer. The package the user picks is
//! opened and verified like any other before anything runs.

use std::path::{Path, PathBuf};

use crate::device::Mode;
use crate::package::Package;

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
    })
}

/// What the wizard can offer a device: the packages of its kind, and whether they were
/// matched by its model or are every package of its kind because its model is unknown.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    /// The packages, in catalog order.
    pub packages: Vec<CatalogEntry>,
    /// True when `packages` name the device's model.
    pub by_model: bool,
}

/// The packages that can recover a device in `mode` whose model is `model`, if known.
///
/// A device in EDL (or a modem) takes a Qualcomm flat build, a phone in fastboot a
/// fastboot package. Among those, the ones that name the model come first and alone; a
/// device that cannot say its model (a brick in EDL reports none) is offered every package
/// of its kind.
pub fn offer(catalog: &[CatalogEntry], mode: Mode, model: Option<&str>) -> Offer {
    let qualcomm = matches!(mode, Mode::Edl | Mode::Modem);
    let kind: Vec<CatalogEntry> = catalog
        .iter()
        .filter(|e| e.qualcomm == qualcomm)
        .cloned()
        .collect();
    let named: Vec<CatalogEntry> = match model {
        Some(model) => kind
            .iter()
            .filter(|e| e.targets.iter().any(|t| t.eq_ignore_ascii_case(model)))
            .cloned()
            .collect(),
        None => Vec::new(),
    };
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
        let by_model = offer(&catalog, Mode::Edl, Some("mu300"));
        assert!(by_model.by_model);
        assert_eq!(names(by_model), ["hotspot"]);
        // A model no package names, or none at all: every flat build, never the phone's.
        for model in [Some("ZTE emergency download (Qualcomm EDL)"), None] {
            let any = offer(&catalog, Mode::Edl, model);
            assert!(!any.by_model);
            assert_eq!(names(any), ["dongle", "hotspot"]);
        }
        assert_eq!(names(offer(&catalog, Mode::Fastboot, None)), ["phone"]);
    }
}
