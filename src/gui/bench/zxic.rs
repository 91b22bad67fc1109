//! The demo bench's ZXIC hotspot: a virtual ZX297520V3 in its boot ROM (19d2:0256) and a
//! demo package for it (the two loaders, a partition table that keeps NV where the device
//! has it, and a root file system image).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{noise, DemoBench};
use crate::cli::demo::demo_key;
use crate::sim::zxic::{build_test_loaders, virtual_table, ZxicConfig, ZxicSim};

impl DemoBench {
    /// Adds the ZXIC hotspot (serial FLZXIC00001) and its package, announced in
    /// `bench_dir`.
    pub fn start_zxic(&mut self, bench_dir: &Path) -> Result<()> {
        self.packages.zxic =
            Some(zxic_package(&self.work).context("cannot build the demo ZXIC package")?);
        let cfg = ZxicConfig {
            serial: "FLZXIC00001".into(),
            imei: "860000000000025".into(),
            ..ZxicConfig::default()
        };
        self.zxic = Some(
            ZxicSim::start(&self.work.join("virtual-zxic"), cfg, Some(bench_dir))
                .context("cannot start the virtual ZXIC hotspot")?,
        );
        Ok(())
    }
}

/// The demo ZXIC package: loaders, the virtual table, and 2.5 MiB of root file system
/// (two `compat_write` windows).
fn zxic_package(work: &Path) -> Result<PathBuf> {
    let src = work.join("package-zxic");
    std::fs::create_dir_all(&src)?;
    let (tloader, tboot) = build_test_loaders();
    std::fs::write(src.join("tloader.bin"), tloader)?;
    std::fs::write(src.join("tboot.bin"), tboot)?;
    std::fs::write(src.join("partition.bin"), virtual_table().encode())?;
    std::fs::write(src.join("rootfs.bin"), noise(5 * 512 * 1024, 11))?;
    std::fs::write(
        src.join("manifest.toml"),
        "name = \"demo-zxic-hotspot-stock\"\nversion = \"1.0.0\"\nsecurity_version = 1\nmin_battery_percent = 0\n\
         description = \"Demo build for the virtual ZXIC ZX297520V3 hotspot\"\n\
         [[target]]\nproduct = \"ZX7520-SIM\"\n\
         [zxic]\ntloader = \"tloader.bin\"\ntboot = \"tboot.bin\"\npartition_table = \"partition.bin\"\n\
         [[zxic.image]]\npartition = \"rootfs\"\nfile = \"rootfs.bin\"\n",
    )?;
    let pkg = work.join("demo-zxic-hotspot-stock-1.0.0.flpkg");
    crate::package::pack(&src.join("manifest.toml"), &demo_key(work)?, &pkg)?;
    Ok(pkg)
}
