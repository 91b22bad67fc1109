//! `flashline sim zxic`: a virtual ZXIC ZX297520V3 hotspot in download mode.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::sim::fault::Fault;

#[derive(Args)]
pub(super) struct ZxicArgs {
    /// Folder holding its flash (`flash.img`) and partition table (`partition.bin`).
    #[arg(long)]
    dir: PathBuf,
    /// USB serial number.
    #[arg(long)]
    serial: Option<String>,
    /// IMEI written into its NV partitions when the flash is created.
    #[arg(long)]
    imei: Option<String>,
    /// Loader habits: `stock` (2 MiB windows, closing OKAY after reads) or `terse` (a NUL
    /// before DATA, 1 MiB windows, no closing OKAY).
    #[arg(long, default_value = "stock", value_parser = ["stock", "terse"])]
    profile: String,
    /// Misbehave once (may be repeated): corrupt@bytes=N, power-loss@bytes=N,
    /// disconnect@bytes=N (N bytes of compat_write data), fail@compat_write#1,
    /// stall@set partitions#1, garbage@getvar#1, reenumerate@compat_write#2.
    #[arg(long = "fault", value_name = "FAULT")]
    faults: Vec<Fault>,
    /// Appear as a USB device (19d2:0256, interface FF/FF/FF, bulk 0x01/0x81) through a USB
    /// gadget on this machine's device controller, instead of on a pseudo-terminal (Linux;
    /// needs configfs, libcomposite, usb_f_fs and a UDC such as dummy_hcd's).
    #[arg(long)]
    usb_gadget: bool,
}

#[cfg(not(unix))]
pub(super) fn sim_zxic(_args: ZxicArgs) -> Result<ExitCode> {
    anyhow::bail!("the virtual ZXIC device needs a pseudo-terminal or Linux's USB gadgets")
}

#[cfg(unix)]
pub(super) fn sim_zxic(args: ZxicArgs) -> Result<ExitCode> {
    use anyhow::Context;

    use super::render::say_err;
    use crate::sim::zxic::{Profile, ZxicConfig, ZxicSim};
    let d = ZxicConfig::default();
    let cfg = ZxicConfig {
        serial: args.serial.unwrap_or(d.serial.clone()),
        imei: args.imei.unwrap_or(d.imei.clone()),
        profile: Profile::parse(&args.profile).unwrap_or_default(),
        faults: args.faults.into(),
        ..d
    };
    if args.usb_gadget {
        return usb(&args.dir, cfg);
    }
    let sim = ZxicSim::new(&args.dir, cfg, Some(&crate::device::bench::default_dir()))
        .context("cannot start the virtual ZXIC device")?;
    // The first line on stdout is the address to pass to --device, for scripts.
    println!("{}", sim.address());
    say_err!(
        "virtual ZXIC hotspot in its boot ROM; flash in {}; stop with Ctrl-C",
        args.dir.display()
    );
    sim.serve_forever();
    Ok(ExitCode::SUCCESS)
}

#[cfg(target_os = "linux")]
fn usb(dir: &std::path::Path, cfg: crate::sim::zxic::ZxicConfig) -> Result<ExitCode> {
    use anyhow::Context;

    use super::render::say_err;
    let serial = cfg.serial.clone();
    let sim = crate::sim::zxic::ZxicSim::on_usb_gadget(dir, cfg)
        .context("cannot plug the virtual ZXIC device in as a USB gadget")?;
    println!("{serial}");
    say_err!(
        "virtual ZXIC hotspot on USB (19d2:0256); flash in {}; stop with Ctrl-C",
        dir.display()
    );
    sim.serve_forever();
    Ok(ExitCode::SUCCESS)
}

#[cfg(all(unix, not(target_os = "linux")))]
fn usb(_dir: &std::path::Path, _cfg: crate::sim::zxic::ZxicConfig) -> Result<ExitCode> {
    anyhow::bail!("--usb-gadget needs Linux's USB gadget framework")
}
