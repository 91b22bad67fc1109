//! `flashline pack --factory ZIP|DIR`: a Google-style factory image into a signed package.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::render::say;
use crate::package::factory::{self, FactoryOptions};

/// The options of `pack` that apply to factory images.
#[derive(Args)]
pub(super) struct FactoryArgs {
    /// Pack a Google-style factory image instead of a manifest: the factory zip, its
    /// image-<device>-<build>.zip, or a product-out folder. Requirements come from
    /// android-info.txt, the order from fastboot-info.txt or Google's image list.
    #[arg(long, value_name = "ZIP|DIR", conflicts_with = "manifest")]
    pub factory: Option<PathBuf>,
    /// Package name (factory images and .pac imports; default: the device name in the
    /// file names, or the .pac's product name).
    #[arg(long, conflicts_with = "manifest")]
    pub name: Option<String>,
    /// Package version (factory images: default from the build id, TAG.YYMMDD.NNN →
    /// YYMMDD.NNN.0+build; .pac imports: default 1.0.0).
    #[arg(long, conflicts_with = "manifest")]
    pub version: Option<semver::Version>,
    /// Anti-rollback counter to sign in (factory images and .pac imports; default 0).
    #[arg(long, conflicts_with = "manifest")]
    pub security_version: Option<u64>,
    /// Refuse to flash below this battery charge (factory images).
    #[arg(long, default_value_t = 30, requires = "factory")]
    pub min_battery: u8,
    /// Also write the userdata/metadata images Google's `flash-all` wipes (factory images).
    #[arg(long, requires = "factory")]
    pub wipe: bool,
}

/// Packs `input` and says what went in, in which order, and what was left out.
pub(super) fn run(input: &Path, args: &FactoryArgs, key: &Path, output: &Path) -> Result<ExitCode> {
    let options = FactoryOptions {
        name: args.name.clone(),
        version: args.version.clone(),
        security_version: args.security_version.unwrap_or(0),
        min_battery_percent: args.min_battery,
        wipe: args.wipe,
    };
    let summary = factory::pack_factory(input, &options, key, output)?;
    let m = &summary.pack.manifest;
    say!(
        "packed {} {} ({} images) signed by key {} → {}",
        m.name,
        m.version,
        m.images.len(),
        summary.pack.key_id,
        output.display()
    );
    for r in &m.requires {
        say!("requires  {} = {}", r.variable, r.values.join(" | "));
    }
    for (step, image) in summary.images.iter().enumerate() {
        let how = match (image.reboot_bootloader, image.logical) {
            (true, _) => ", then reboot-bootloader",
            (false, true) => " (logical, through fastbootd)",
            (false, false) => "",
        };
        say!("{:>3}. {} ← {}{how}", step + 1, image.partition, image.file);
    }
    for skipped in &summary.skipped {
        say!("left out {}: {}", skipped.file, skipped.reason);
    }
    for line in &summary.dropped_requirements {
        say!("android-info.txt line for another board left out: {line}");
    }
    Ok(ExitCode::SUCCESS)
}
