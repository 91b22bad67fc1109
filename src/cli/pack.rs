//! `flashline pack --from-pac` and `flashline inspect`: building packages and showing what one holds.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use super::render::{self, say_err};
use super::{load_trust, pack_factory, TrustArg, EXIT_PACKAGE_REJECTED};
use crate::package::{self, Package};

/// `pack --from-pac`: a vendor .pac imported into a signed Unisoc package. Its name, version
/// and security version are the shared import options of [`pack_factory::FactoryArgs`].
#[derive(Args)]
pub(super) struct PacArgs {
    /// Import this Unisoc .pac (its FDL1, FDL2 and files) instead of reading a manifest.
    #[arg(long, value_name = "FILE.pac", conflicts_with = "manifest")]
    pub(super) from_pac: Option<PathBuf>,
    /// The product the package is for, as the quirks file names it (with --from-pac).
    #[arg(long, requires = "from_pac")]
    target: Option<String>,
}

impl PacArgs {
    pub(super) fn import(
        &self,
        file: &Path,
        release: &pack_factory::FactoryArgs,
        key: &Path,
        output: &Path,
    ) -> Result<package::PackSummary> {
        let target = self.target.clone().context(
            "--from-pac needs --target PRODUCT: a .pac does not say which device it is for",
        )?;
        let options = package::unisoc::pac::ImportOptions {
            target,
            name: release.name.clone(),
            version: release
                .version
                .clone()
                .unwrap_or_else(|| semver::Version::new(1, 0, 0)),
            security_version: release.security_version.unwrap_or(0),
        };
        Ok(package::unisoc::pac::import(file, key, output, &options)?)
    }
}

pub(super) fn inspect(path: &Path, trust: &TrustArg, json: bool) -> Result<ExitCode> {
    let trust = load_trust(trust)?;
    let package = match Package::open(path) {
        Ok(p) => p,
        Err(e) => {
            say_err!("REJECTED: {e}");
            return Ok(ExitCode::from(EXIT_PACKAGE_REJECTED));
        }
    };
    let inspection = package::inspect(&package, &trust);
    if json {
        println!("{}", serde_json::to_string_pretty(&inspection)?);
    } else {
        render::print_inspection(&inspection);
    }
    Ok(ExitCode::SUCCESS)
}
