//! `flashline sim`: the virtual phone, modem, EDL, ZXIC and Unisoc devices, served until stopped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use super::render::say_err;
use super::zxic;
use crate::sim::fault::Fault;
use crate::sim::phone::{PhoneConfig, PhoneSim};

#[derive(Subcommand)]
pub(super) enum SimCommand {
    /// A virtual phone in fastboot mode, served over TCP.
    Phone(PhoneArgs),
    /// A virtual USB modem (or hotspot) on a pseudo-terminal that switches into EDL.
    Modem(ModemArgs),
    /// A virtual device in Qualcomm emergency download mode on a pseudo-terminal.
    Edl(EdlArgs),
    /// A virtual ZXIC ZX297520V3 hotspot in its boot ROM on a pseudo-terminal.
    Zxic(zxic::ZxicArgs),
    /// A virtual Unisoc device in its boot ROM's download mode (1782:4d00) on a
    /// pseudo-terminal or as a USB gadget.
    Unisoc(UnisocArgs),
}

#[derive(Args)]
pub(super) struct UnisocArgs {
    /// Folder holding one raw file per partition.
    #[arg(long)]
    dir: PathBuf,
    /// USB serial number.
    #[arg(long)]
    serial: Option<String>,
    /// A boot ROM with secure boot on, which runs only the FDL1 with this SHA-256.
    #[arg(long)]
    secure_fdl1_sha256: Option<String>,
    /// Misbehave once (may be repeated): disconnect@bytes=N, power-loss@bytes=N (N bytes
    /// of partition data), fail@START_DATA boot#1, stall@READ_MIDST#1,
    /// garbage@MIDST_DATA boot#1 (an answer with a bad checksum), reenumerate@EXEC_DATA#1.
    #[arg(long = "fault", value_name = "FAULT")]
    faults: Vec<Fault>,
    /// Appear as a USB device (1782:4d00, one bulk interface) through a USB gadget on
    /// this machine's device controller, instead of on a pseudo-terminal (Linux; needs
    /// configfs, libcomposite, usb_f_fs and a UDC such as dummy_hcd's).
    #[arg(long)]
    usb_gadget: bool,
}

#[derive(Args)]
pub(super) struct ModemArgs {
    /// Folder holding the LUN files of its EDL side.
    #[arg(long)]
    dir: PathBuf,
    /// A mobile hotspot (with a battery) instead of a USB dongle.
    #[arg(long)]
    hotspot: bool,
    /// Model reported by AT+CGMM.
    #[arg(long)]
    model: Option<String>,
    /// Firmware revision reported by AT+CGMR.
    #[arg(long)]
    revision: Option<String>,
    /// IMEI (15 digits).
    #[arg(long)]
    imei: Option<String>,
    /// USB serial number (kept across the switch to EDL).
    #[arg(long)]
    serial: Option<String>,
    /// Battery percentage (hotspot).
    #[arg(long)]
    battery: Option<u8>,
    /// SHA-256 of the only programmer the EDL side accepts (as a secure-boot device does).
    #[arg(long)]
    programmer_sha256: Option<String>,
    /// Misbehave once on the AT port (may be repeated): fail@AT+CGMR#1, stall@AT+CBC#1,
    /// garbage@ATI#1, battery@bytes=N,percent=P (hotspot), reenumerate@AT+CGMR#1.
    #[arg(long = "fault", value_name = "FAULT")]
    faults: Vec<Fault>,
    /// Misbehave once in EDL (may be repeated), as `sim edl --fault` does.
    #[arg(long = "edl-fault", value_name = "FAULT")]
    edl_faults: Vec<Fault>,
    /// How the download command (AT+ZCDRUN=E) leads to EDL: `diag` (a DIAG port appears,
    /// whose DIAG_DLOAD_F request ends in EDL; the dongle's default) or `direct` (the
    /// hotspot's default).
    #[arg(long, value_parser = ["diag", "direct"])]
    route: Option<String>,
    /// Appear as a USB modem (a CDC ACM gadget with the modem's USB IDs and serial, AT on
    /// the gadget's tty) that re-enumerates as a USB EDL gadget on its download command,
    /// instead of on a pseudo-terminal (Linux; needs configfs, libcomposite, usb_f_acm,
    /// usb_f_fs and a UDC such as dummy_hcd's).
    #[arg(long)]
    usb_gadget: bool,
}

#[derive(Args)]
pub(super) struct EdlArgs {
    /// Folder holding one raw file per LUN.
    #[arg(long)]
    dir: PathBuf,
    /// USB serial number.
    #[arg(long)]
    serial: Option<String>,
    /// UFS storage (4096-byte sectors, two LUNs) instead of eMMC (512-byte sectors).
    #[arg(long)]
    ufs: bool,
    /// SHA-256 of the only programmer accepted (as a secure-boot device does).
    #[arg(long)]
    programmer_sha256: Option<String>,
    /// No USB serial number; the chip serial is in the USB product string
    /// (`QUSB__BULK_SN:xxxxxxxx`), as on most real 05c6:9008 devices.
    #[arg(long)]
    no_iserial: bool,
    /// A Sahara 3 boot ROM: 8-byte chip serial, no MSM_HW_ID_READ, a SHA-384 key hash
    /// padded with 48 zero bytes.
    #[arg(long)]
    sahara_v3: bool,
    /// Misbehave once (may be repeated): disconnect@bytes=N, power-loss@bytes=N (N bytes of
    /// program data), fail@program#1, stall@configure#1, garbage@getsha256digest#1,
    /// reenumerate@program#2.
    #[arg(long = "fault", value_name = "FAULT")]
    faults: Vec<Fault>,
    /// Answer as shipped programmers do (may be repeated): no-digest, storage-info-nak,
    /// damaged-gpt, counter-offer, configure-logs-only, other-memory-name, nand.
    #[cfg(unix)]
    #[arg(long = "profile", value_name = "PROFILE")]
    #[cfg(unix)]
    profiles: Vec<crate::sim::edl::Profile>,
    /// Appear as a USB device (05c6:9008, interface FF/FF/FF) through a USB gadget on this
    /// machine's device controller, instead of on a pseudo-terminal (Linux; needs configfs,
    /// libcomposite, usb_f_fs and a UDC such as dummy_hcd's).
    #[arg(long)]
    usb_gadget: bool,
    /// Take the host's bytes no faster than this many bytes/s, like a cable (e.g. 40M for
    /// USB 2.0 high speed; k/M/G are powers of 1000, KiB/MiB/GiB of 1024).
    #[arg(long, value_parser = crate::sim::shaper::parse_rate)]
    link_rate: Option<u64>,
    /// Delay added each time the host speaks after the device, like a USB round trip
    /// (e.g. 500us).
    #[arg(long, value_parser = humantime::parse_duration)]
    latency: Option<std::time::Duration>,
}

#[derive(Args)]
pub(super) struct PhoneArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:5554")]
    listen: SocketAddr,
    /// Folder holding one raw file per partition (`NAME.img`).
    #[arg(long)]
    dir: PathBuf,
    /// Product name reported.
    #[arg(long)]
    product: Option<String>,
    /// Serial number reported.
    #[arg(long)]
    serial: Option<String>,
    /// Firmware version reported before anything is flashed.
    #[arg(long)]
    firmware_version: Option<String>,
    /// Security version reported before anything is flashed.
    #[arg(long)]
    security_version: Option<u64>,
    /// Battery percentage reported.
    #[arg(long)]
    battery: Option<u8>,
    /// Report no battery percentage at all.
    #[arg(long, conflicts_with = "battery")]
    no_battery_report: bool,
    /// Largest download accepted, in bytes.
    #[arg(long)]
    max_download_size: Option<u32>,
    /// A partition as NAME=SIZE (SIZE in bytes, or with K/M/G); may be repeated.
    #[arg(long = "partition", value_parser = parse_partition)]
    partitions: Vec<(String, u64)>,
    /// Give every partition an A and a B slot.
    #[arg(long)]
    slots: bool,
    /// Take download data no faster than this many bytes/s, like a cable (e.g. 40M for
    /// USB 2.0 high speed; k/M/G are powers of 1000, KiB/MiB/GiB of 1024).
    #[arg(long, value_parser = crate::sim::phone::parse_rate)]
    link_rate: Option<u64>,
    /// Delay added to every command, like a real link's round trip (e.g. 500us).
    #[arg(long, value_parser = humantime::parse_duration)]
    latency: Option<std::time::Duration>,
    /// Report a locked bootloader (`unlocked: no`): flash and erase fail as a locked
    /// Qualcomm ABL's do.
    #[arg(long)]
    locked: bool,
    /// Write to storage at this many bytes/s (e.g. 20M): `flash` and `erase` answer OKAY
    /// only after that long, with no INFO in between, as LK and U-Boot do.
    #[arg(long, value_parser = crate::sim::phone::parse_rate)]
    write_rate: Option<u64>,
    /// Misbehave once (may be repeated): disconnect@bytes=N (download data),
    /// power-loss@bytes=N (bytes written by flash), fail@flash:boot#1,
    /// stall@getvar:product#2, garbage@download:#1, battery@bytes=N,percent=P,
    /// reenumerate@flash:system#1. N may end in K, M or G.
    #[arg(long = "fault", value_name = "FAULT")]
    faults: Vec<Fault>,
    /// Appear as a USB device (18d1:4ee0, fastboot interface) through a USB gadget on this
    /// machine's device controller, instead of listening on TCP (Linux; needs configfs,
    /// libcomposite, usb_f_fs and a UDC such as dummy_hcd's).
    #[arg(long, conflicts_with = "listen")]
    usb_gadget: bool,
    /// Answer getvar exactly as the device of this `fastboot getvar all` transcript did,
    /// with one partition per size it listed (e.g. tests/data/fastboot/pixel-7-pro.txt).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["profile", "partitions", "slots", "product", "serial", "battery", "no_battery_report", "max_download_size", "locked"])]
    replay: Option<PathBuf>,
    /// Word the answers as this bootloader family does: lk, abl, mtk-lk, uboot, pixel,
    /// fastbootd.
    #[arg(long, value_name = "NAME")]
    profile: Option<crate::sim::phone::Profile>,
    /// Dynamic partitions (Android 10+): a `super` partition with LP metadata holding the
    /// logical partitions, and a userspace fastboot (fastbootd) reached with
    /// `reboot-fastboot`. The default with --slots, as on every phone launched with
    /// Android 10 or later.
    #[arg(long)]
    dynamic: bool,
    /// Every partition physical, no super and no fastbootd (a phone launched before
    /// Android 10), also with --slots.
    #[arg(long, conflicts_with_all = ["dynamic", "super_size", "logical", "retrofit", "snapshot", "fastbootd_max_download_size"])]
    physical: bool,
    /// Size of super (of each of system_a/system_b with --retrofit), e.g. 2G; implies
    /// --dynamic.
    #[arg(long, value_name = "SIZE", value_parser = parse_byte_size)]
    super_size: Option<u64>,
    /// A logical partition in super as NAME=SIZE (may be repeated; replaces the default
    /// system, system_ext, product, vendor, odm); implies --dynamic.
    #[arg(long = "logical", value_name = "NAME=SIZE", value_parser = parse_partition)]
    logical: Vec<(String, u64)>,
    /// Retrofit dynamic partitions: each slot's super is its system_a/system_b
    /// (super-partition-name system_a); implies --dynamic, needs --slots.
    #[arg(long)]
    retrofit: bool,
    /// A pending Virtual A/B update: snapshotted or merging; `-cow` partitions then take
    /// space in super until `snapshot-update cancel`. Implies --dynamic.
    #[arg(long, value_name = "STATE")]
    snapshot: Option<crate::sim::phone::SnapshotStatus>,
    /// fastbootd's max-download-size in bytes (default 0x10000000, AOSP's).
    #[arg(long, value_name = "BYTES")]
    fastbootd_max_download_size: Option<u32>,
}

#[cfg(unix)]
fn parse_sha256(text: Option<String>) -> Result<Option<[u8; 32]>> {
    text.map(|t| {
        let mut out = [0u8; 32];
        hex::decode_to_slice(t.trim(), &mut out)
            .context("--programmer-sha256 must be 64 hex digits")?;
        Ok(out)
    })
    .transpose()
}

#[cfg(unix)]
pub(super) fn sim_modem(args: ModemArgs) -> Result<ExitCode> {
    use crate::sim::edl::EdlConfig;
    use crate::sim::modem::ModemConfig;
    let d = if args.hotspot {
        ModemConfig::hotspot()
    } else {
        ModemConfig::dongle()
    };
    let cfg = ModemConfig {
        model: args.model.unwrap_or(d.model.clone()),
        revision: args.revision.unwrap_or(d.revision.clone()),
        imei: args.imei.unwrap_or(d.imei.clone()),
        usb_serial: args.serial.unwrap_or(d.usb_serial.clone()),
        battery_percent: args.battery.unwrap_or(d.battery_percent),
        faults: args.faults.into(),
        route: match args.route.as_deref() {
            Some("direct") => crate::sim::modem::DownloadRoute::Direct,
            Some(_) => crate::sim::modem::DownloadRoute::Diag,
            None => d.route,
        },
        ..d
    };
    let edl = EdlConfig {
        programmer_sha256: parse_sha256(args.programmer_sha256)?,
        faults: args.edl_faults.into(),
        ..EdlConfig::default()
    };
    if args.usb_gadget {
        return sim_modem_usb(&args.dir, cfg, edl);
    }
    let modem = crate::sim::bench::VirtualModem::start(
        cfg,
        edl,
        &args.dir,
        &crate::device::bench::default_dir(),
    )
    .context("cannot start the virtual modem")?;
    println!("{}", modem.address());
    say_err!(
        "virtual modem listening; its EDL side keeps its LUNs in {}; stop with Ctrl-C",
        args.dir.display()
    );
    loop {
        std::thread::park();
    }
}

#[cfg(not(unix))]
pub(super) fn sim_unisoc(_args: UnisocArgs) -> Result<ExitCode> {
    bail!("the virtual Unisoc device needs a pseudo-terminal or Linux's USB gadgets; the virtual phone (`sim phone`) runs everywhere")
}

#[cfg(unix)]
pub(super) fn sim_unisoc(args: UnisocArgs) -> Result<ExitCode> {
    use crate::sim::unisoc::{UnisocConfig, UnisocSim};
    let d = match parse_sha256(args.secure_fdl1_sha256)? {
        Some(sha) => UnisocConfig::secure(sha),
        None => UnisocConfig::default(),
    };
    let cfg = UnisocConfig {
        serial: args.serial.unwrap_or(d.serial.clone()),
        faults: args.faults.into(),
        ..d
    };
    if args.usb_gadget {
        return sim_unisoc_usb(&args.dir, cfg);
    }
    let sim = UnisocSim::new(&args.dir, cfg, Some(&crate::device::bench::default_dir()))
        .context("cannot start the virtual Unisoc device")?;
    println!("{}", sim.address());
    say_err!(
        "virtual Unisoc device in download mode; partitions in {}; stop with Ctrl-C",
        args.dir.display()
    );
    sim.serve_forever();
    Ok(ExitCode::SUCCESS)
}

#[cfg(target_os = "linux")]
fn sim_unisoc_usb(dir: &Path, cfg: crate::sim::unisoc::UnisocConfig) -> Result<ExitCode> {
    let serial = cfg.serial.clone();
    let sim = crate::sim::unisoc::UnisocSim::on_usb_gadget(dir, cfg)
        .context("cannot plug the virtual Unisoc device in as a USB gadget")?;
    // The first line on stdout is the address to pass to --device, for scripts.
    println!("{serial}");
    say_err!(
        "virtual Unisoc device on USB; partitions in {}; stop with Ctrl-C",
        dir.display()
    );
    sim.serve_forever();
    Ok(ExitCode::SUCCESS)
}

#[cfg(all(unix, not(target_os = "linux")))]
fn sim_unisoc_usb(_dir: &Path, _cfg: crate::sim::unisoc::UnisocConfig) -> Result<ExitCode> {
    bail!("USB gadgets need Linux")
}

/// The virtual serial devices need pseudo-terminals, which Windows does not have.
#[cfg(not(unix))]
pub(super) fn sim_modem(_args: ModemArgs) -> Result<ExitCode> {
    bail!("the virtual modem needs a pseudo-terminal (Linux or macOS); the virtual phone (`sim phone`) runs everywhere")
}

#[cfg(not(unix))]
pub(super) fn sim_edl(_args: EdlArgs) -> Result<ExitCode> {
    bail!("the virtual EDL device needs a pseudo-terminal or Linux's USB gadgets; the virtual phone (`sim phone`) runs everywhere")
}

#[cfg(unix)]
pub(super) fn sim_edl(args: EdlArgs) -> Result<ExitCode> {
    use crate::sim::edl::{EdlConfig, EdlSim};
    let d = if args.ufs {
        EdlConfig::ufs()
    } else {
        EdlConfig::default()
    };
    let mut cfg = EdlConfig {
        serial: args.serial.unwrap_or(d.serial.clone()),
        programmer_sha256: parse_sha256(args.programmer_sha256)?,
        faults: args.faults.into(),
        link_rate: args.link_rate,
        latency: args.latency.unwrap_or(d.latency),
        ..d
    };
    for profile in args.profiles {
        profile.apply(&mut cfg);
    }
    if args.sahara_v3 {
        cfg.chip = crate::sim::edl::ChipProfile::sahara_v3();
    }
    if args.no_iserial {
        cfg = cfg.without_iserial();
    }
    if args.usb_gadget {
        return sim_edl_usb(&args.dir, cfg);
    }
    let sim = EdlSim::new(&args.dir, cfg, Some(&crate::device::bench::default_dir()))
        .context("cannot start the virtual EDL device")?;
    println!("{}", sim.address());
    say_err!(
        "virtual EDL device; LUNs in {}; stop with Ctrl-C",
        args.dir.display()
    );
    sim.serve_forever();
    Ok(ExitCode::SUCCESS)
}

/// The dynamic-partition part of `sim phone`'s options, if any was given.
fn sim_phone_dynamic(args: &PhoneArgs) -> Option<crate::sim::phone::Dynamic> {
    let wanted = args.dynamic
        || (args.slots && !args.physical)
        || args.super_size.is_some()
        || !args.logical.is_empty()
        || args.retrofit
        || args.snapshot.is_some()
        || args.fastbootd_max_download_size.is_some();
    let d = crate::sim::phone::Dynamic::default();
    wanted.then(|| crate::sim::phone::Dynamic {
        super_size: args.super_size.unwrap_or(d.super_size),
        logical: if args.logical.is_empty() {
            d.logical.clone()
        } else {
            args.logical.clone()
        },
        retrofit: args.retrofit,
        snapshot: args.snapshot.unwrap_or(d.snapshot),
        fastbootd_max_download_size: args
            .fastbootd_max_download_size
            .unwrap_or(d.fastbootd_max_download_size),
    })
}

pub(super) fn sim_phone(args: PhoneArgs) -> Result<ExitCode> {
    let dynamic = sim_phone_dynamic(&args);
    let d = match &args.replay {
        Some(path) => {
            let transcript = crate::sim::phone::Transcript::load(path)
                .with_context(|| format!("cannot replay {}", path.display()))?;
            PhoneConfig::replaying(transcript)
        }
        None => PhoneConfig::default(),
    };
    let cfg = PhoneConfig {
        product: args.product.unwrap_or(d.product),
        serial: args.serial.unwrap_or(d.serial),
        firmware_version: args.firmware_version.unwrap_or(d.firmware_version),
        security_version: args.security_version.unwrap_or(d.security_version),
        battery_percent: if args.no_battery_report {
            None
        } else {
            args.battery.or(d.battery_percent)
        },
        max_download_size: args.max_download_size.unwrap_or(d.max_download_size),
        partitions: if args.partitions.is_empty() {
            d.partitions
        } else {
            args.partitions
        },
        slots: args.slots,
        link_rate: args.link_rate,
        latency: args.latency.unwrap_or(d.latency),
        // A replay is locked when its device said so (`--locked` conflicts with `--replay`).
        locked: args.locked || d.locked,
        write_rate: args.write_rate,
        faults: args.faults.into(),
        profile: args.profile,
        dynamic,
        ..d
    };
    if args.usb_gadget {
        return sim_phone_usb(&args.dir, cfg);
    }
    let sim = PhoneSim::bind(args.listen, &args.dir, cfg)
        .with_context(|| format!("cannot start the virtual phone on {}", args.listen))?;
    let addr = sim.local_addr()?;
    // The first line on stdout is the address to pass to --device, for scripts.
    println!("tcp:{addr}");
    say_err!(
        "virtual phone listening; partitions in {}; stop with Ctrl-C",
        args.dir.display()
    );
    sim.serve_forever();
    Ok(ExitCode::SUCCESS)
}

#[cfg(target_os = "linux")]
fn sim_phone_usb(dir: &Path, cfg: PhoneConfig) -> Result<ExitCode> {
    // Ctrl-C and kill must remove the gadget, or it stays on the bus, dead, its name taken.
    let stop = crate::sim::gadget::StopSignals::block().context("cannot block SIGINT/SIGTERM")?;
    let serial = cfg.serial.clone();
    let phone = crate::sim::phone::UsbPhone::create(dir, cfg)
        .context("cannot plug the virtual phone in as a USB gadget")?;
    stop.remove_on_signal(phone.gadget().remover(), "virtual phone")?;
    // The first line on stdout is the address to pass to --device, for scripts.
    println!("{serial}");
    say_err!(
        "virtual phone on USB ({}); partitions in {}; stop with Ctrl-C",
        phone.gadget().path().display(),
        dir.display()
    );
    phone.serve_forever()?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(target_os = "linux"))]
fn sim_phone_usb(_dir: &Path, _cfg: PhoneConfig) -> Result<ExitCode> {
    bail!("--usb-gadget needs Linux's USB gadget framework")
}

#[cfg(target_os = "linux")]
fn sim_edl_usb(dir: &Path, cfg: crate::sim::edl::EdlConfig) -> Result<ExitCode> {
    let serial = if cfg.iserial {
        cfg.serial.clone()
    } else {
        cfg.product.clone()
    };
    let sim = crate::sim::edl::EdlSim::on_usb_gadget(dir, cfg)
        .context("cannot plug the virtual EDL device in as a USB gadget")?;
    // The first line on stdout is the address to pass to --device, for scripts.
    println!("{serial}");
    say_err!(
        "virtual EDL device on USB; LUNs in {}; stop with Ctrl-C",
        dir.display()
    );
    sim.serve_forever();
    Ok(ExitCode::SUCCESS)
}

#[cfg(all(unix, not(target_os = "linux")))]
fn sim_edl_usb(_dir: &Path, _cfg: crate::sim::edl::EdlConfig) -> Result<ExitCode> {
    bail!("--usb-gadget needs Linux's USB gadget framework")
}

#[cfg(target_os = "linux")]
fn sim_modem_usb(
    dir: &Path,
    cfg: crate::sim::modem::ModemConfig,
    edl: crate::sim::edl::EdlConfig,
) -> Result<ExitCode> {
    let serial = cfg.usb_serial.clone();
    let modem = crate::sim::modem::UsbModem::start(cfg, edl, dir)
        .context("cannot plug the virtual modem in as a USB gadget")?;
    println!("{serial}");
    say_err!(
        "virtual modem on USB, AT on {}; its EDL side keeps its LUNs in {}; stop with Ctrl-C",
        modem.device_tty(),
        dir.display()
    );
    loop {
        std::thread::park();
    }
}

#[cfg(all(unix, not(target_os = "linux")))]
fn sim_modem_usb(
    _dir: &Path,
    _cfg: crate::sim::modem::ModemConfig,
    _edl: crate::sim::edl::EdlConfig,
) -> Result<ExitCode> {
    bail!("--usb-gadget needs Linux's USB gadget framework")
}

fn parse_partition(text: &str) -> Result<(String, u64)> {
    let Some((name, size)) = text.split_once('=') else {
        bail!("expected NAME=SIZE, e.g. boot=64M");
    };
    Ok((name.to_string(), parse_byte_size(size)?))
}

/// A size in bytes, or with a K, M or G suffix (powers of 1024).
fn parse_byte_size(size: &str) -> Result<u64> {
    let size = size.trim();
    let (digits, unit) = match size.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => size.split_at(i),
        None => (size, ""),
    };
    let n: u64 = digits
        .parse()
        .with_context(|| format!("bad size {size:?}"))?;
    let mult: u64 = match unit.to_ascii_uppercase().as_str() {
        "" => 1,
        "K" | "KIB" => 1 << 10,
        "M" | "MIB" => 1 << 20,
        "G" | "GIB" => 1 << 30,
        other => bail!("unknown size unit {other:?}: use K, M or G"),
    };
    n.checked_mul(mult).context("size too large")
}
