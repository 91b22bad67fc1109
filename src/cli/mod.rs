//! The command-line front end: parses arguments, starts engine jobs, renders their events.
//!
//! Exit codes: 0 success, 1 other failure, 2 usage error, 3 package rejected, 4 preflight
//! refused, 5 device error.

pub(crate) mod demo;
mod dist;
mod doctor;
mod fastboot;
mod lp;
mod multi;
mod pack_factory;
mod render;
mod zxic;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::device::quirks::Quirks;
use crate::device::{discovery, printable};
use crate::engine::{self, DeviceTarget, JobOptions, JobRequest, Outcome, Overrides};
use crate::package::{self, Package, RootDocument, RootKey, SignedRoot, TrustStore};
use crate::sim::fault::Fault;
use crate::sim::phone::{PhoneConfig, PhoneSim};
use render::{say, say_err};

/// Exit code: the package failed verification.
pub const EXIT_PACKAGE_REJECTED: u8 = 3;
/// Exit code: preflight refused the job.
pub const EXIT_PREFLIGHT_REFUSED: u8 = 4;
/// Exit code: the device or the link failed.
pub const EXIT_DEVICE_ERROR: u8 = 5;

#[derive(Parser)]
#[command(
    name = "flashline",
    version,
    about = "Flash signed firmware onto phones, modems and hotspots"
)]
struct Cli {
    /// Without a command, the desktop GUI opens.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Manage signing keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Manage the signed trust root: which release keys this station trusts.
    ///
    /// A trust root lists its root keys, a threshold, a version, an expiry time, and roles:
    /// which release keys may sign packages for which products, with a threshold per role.
    /// A new root is accepted only if a threshold of the current root's keys and a
    /// threshold of its own keys signed it (each key counted once) and its version is
    /// higher; the demo key can never be part of a root. Once a root is installed in a
    /// trust folder, only its role keys are trusted there (`init` moves loose `.pub` files
    /// into `retired-keys/`), an expired root is refused, and removing or rolling back the
    /// root is refused (the station records the highest root in its home).
    #[command(subcommand)]
    Trust(TrustCommand),
    /// Build and sign a package from a manifest, or from a factory image (`--factory`).
    Pack {
        /// The manifest (TOML); image files are relative to it.
        #[arg(required_unless_present_any = ["factory", "from_pac"])]
        manifest: Option<PathBuf>,
        #[command(flatten)]
        factory: pack_factory::FactoryArgs,
        /// The secret key (`NAME.key`).
        #[arg(long)]
        key: PathBuf,
        /// Where to write the package.
        #[arg(short, long)]
        output: PathBuf,
        #[command(flatten)]
        pac: PacArgs,
    },
    /// Check a package's signature and every image hash.
    Verify {
        /// The package.
        package: PathBuf,
        #[command(flatten)]
        trust: TrustArg,
    },
    /// Show everything in a package, and whether its signature is trusted.
    Inspect {
        /// The package.
        package: PathBuf,
        #[command(flatten)]
        trust: TrustArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List devices: fastboot devices on USB, serial ports, virtual devices, plus the given
    /// network addresses.
    Devices {
        /// Also look at this address (`tcp:HOST:PORT`); may be repeated.
        #[arg(long = "connect")]
        connect: Vec<String>,
        /// Talk to serial ports the quirks file does not name to learn what they are.
        #[arg(long)]
        probe: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Keep watching: print a line as each device arrives or leaves (JSON: one object
        /// per line with "event": "arrived" or "left"), until interrupted. Watches USB and
        /// serial ports only, without talking to any device.
        #[arg(long, conflicts_with_all = ["connect", "probe"])]
        watch: bool,
    },
    /// Show a device's identity, versions, battery and partitions.
    Info {
        /// `tcp:HOST:PORT`, `serial:PATH`, `usb:BUS-PORT` or a USB serial number.
        device: String,
        /// Talk to a serial port the quirks file does not name to learn what it is.
        #[arg(long)]
        probe: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Flash a package onto a device.
    Flash(FlashArgs),
    /// Fastboot verbs by name: getvar, oem, erase, format, boot, flashing lock|unlock.
    Fastboot(fastboot::FastbootArgs),
    /// Bring back a device that only shows up in Qualcomm emergency download mode (EDL).
    Recover(RecoverArgs),
    /// Read a device's identity partitions (IMEI, NV, calibration) into a backup folder.
    Backup {
        /// A signed Qualcomm package: its programmer gives access to the storage.
        package: PathBuf,
        /// The device (`serial:PATH`).
        #[arg(long)]
        device: String,
        /// Partitions to back up (default: the model's identity partitions); may be repeated.
        #[arg(long = "partition")]
        partitions: Vec<String>,
        /// Folder that receives the backup folder.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        trust: TrustArg,
    },
    /// Write a backup folder back to the device it came from, checked by the device's digest.
    Restore {
        /// The backup folder (holding backup.json).
        backup: PathBuf,
        /// A signed Qualcomm package: its programmer gives access to the storage.
        #[arg(long)]
        package: PathBuf,
        /// The device (`serial:PATH`).
        #[arg(long)]
        device: String,
        #[command(flatten)]
        trust: TrustArg,
    },
    /// Run a virtual device.
    #[command(subcommand)]
    Sim(SimCommand),
    /// Android logical-partition (super) metadata.
    #[command(subcommand)]
    Lp(lp::LpCommand),
    /// Open the GUI on a built-in virtual bench (a phone, a hotspot, a dongle, a bricked
    /// device and demo packages); `--cli` runs the terminal demo on a virtual phone instead.
    Demo {
        /// Keep the demo's files here instead of a temporary folder.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The terminal demo: pack, verify, preflight, flash and report on a virtual phone.
        #[arg(long)]
        cli: bool,
        /// Print events as JSON lines (terminal demo).
        #[arg(long)]
        json: bool,
    },
    /// Print udev rules that give the logged-in user access to known devices.
    UdevRules,
    /// Find why a device is not seen (udev rules, seat, groups, ModemManager, drivers,
    /// permissions, repeated disconnects), each finding with its fix.
    Doctor {
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the man pages, shell completions and udev rules a distribution package ships
    /// (used by `cargo deb`; see `.ci/deb-check`).
    #[command(hide = true)]
    DistAssets {
        /// Folder to write them into.
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Generate a signing key pair: DIR/NAME.key (secret) and DIR/NAME.pub.
    Gen {
        /// Key name.
        #[arg(long)]
        name: String,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum TrustCommand {
    /// Sign a new root: the keys it trusts, its threshold, and the signatures of the
    /// current root's key holders (and of the new keys, so the new root can sign its own
    /// successor). The result is checked the way stations will check it before it is written.
    Rotate {
        /// A public key (`NAME.pub`) the new root trusts; repeat for each key.
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        /// How many distinct keys of the new root must sign its successor.
        #[arg(long)]
        threshold: u32,
        /// A role: which keys may sign packages for which products, as
        /// `NAME:PATTERN[,PATTERN…]:THRESHOLD:KEY.pub[,KEY.pub…]` (`*` in a pattern matches
        /// any run of characters); repeat for each role. Without one, every `--key` may sign
        /// for every product.
        #[arg(long = "role")]
        roles: Vec<String>,
        /// How long the new root is trusted (`365d`, `18months`); stations refuse it after.
        #[arg(long, default_value = "365d")]
        expires: humantime::Duration,
        /// A secret key (`NAME.key`) that signs the new root; repeat for each signer.
        #[arg(long = "sign", required = true)]
        signers: Vec<PathBuf>,
        /// The current root, which the new one replaces (its version + 1 is used); without
        /// it a first root (version 1) is made.
        #[arg(long)]
        previous: Option<PathBuf>,
        /// Where to write the new root.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Install a first root into a trust folder that has none (a deliberate act of trust,
    /// like copying a `.pub` file there).
    Init {
        /// The root file.
        root: PathBuf,
        /// The trust folder (default: flashline's own).
        #[arg(long)]
        trust: Option<PathBuf>,
    },
    /// Replace the installed root with a newer one signed by a threshold of its keys.
    Update {
        /// The new root file.
        root: PathBuf,
        /// The trust folder (default: flashline's own).
        #[arg(long)]
        trust: Option<PathBuf>,
    },
}

#[derive(Args)]
struct TrustArg {
    /// Trust the `.pub` keys in this folder instead of the default trust folder.
    #[arg(long)]
    trust: Option<PathBuf>,
}

#[derive(Args)]
struct FlashArgs {
    /// The package.
    package: PathBuf,
    /// `tcp:HOST:PORT`, `serial:PATH`, `usb:BUS-PORT` or a USB serial number; repeat to
    /// flash several devices at once; found automatically when exactly one is attached.
    #[arg(long)]
    device: Vec<String>,
    /// Talk to a serial port the quirks file does not name to learn what it is.
    #[arg(long)]
    probe: bool,
    #[command(flatten)]
    trust: TrustArg,
    /// Print events as JSON lines (tagged with `"device"` when flashing several).
    #[arg(long)]
    json: bool,
    /// Write the report here instead of the report folder (one device only).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Verify, identify, preflight and plan, but write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Allow a package older than the device's firmware (recorded in the report).
    #[arg(long)]
    allow_older: bool,
    /// Flash although the device says its battery is too low, e.g. on external power
    /// (recorded in the report). A battery the device does not report is only a warning.
    #[arg(long)]
    force_battery: bool,
    /// Unisoc: also write the package's images of the NV partitions (IMEI, calibration),
    /// which are otherwise backed up and kept as they are (recorded in the report).
    #[arg(long)]
    write_nv: bool,
    /// Give up on a device that stays silent this long when it owes an answer (e.g. `10s`),
    /// instead of each protocol's default; an interrupted job resumes when run again. A
    /// fastboot `flash` or `erase` keeps its own, longer allowance for silent writes.
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<std::time::Duration>,
    /// Set the vbmeta flag that turns dm-verity off (AVB HASHTREE_DISABLED) in the
    /// package's vbmeta image on its way to the device, after it was verified; unlocked
    /// bootloaders only (recorded in the report).
    #[arg(long)]
    disable_verity: bool,
    /// Set the vbmeta flag that turns verification off (AVB VERIFICATION_DISABLED), as
    /// --disable-verity does.
    #[arg(long)]
    disable_verification: bool,
    /// On an A/B phone, the slot to write: `other` (the default: the one after the
    /// current one), `a` or `b`; the written slot is made active once every image is
    /// verified. `all` is refused (no slot would be left to fall back on).
    #[arg(long)]
    slot: Option<crate::device::fastboot::verbs::SlotChoice>,
}

#[derive(Args)]
struct RecoverArgs {
    /// The package.
    package: PathBuf,
    /// The device in EDL (`serial:PATH`, `usb:BUS-PORT` or a USB serial number); found
    /// automatically when there is exactly one. A serial port the quirks file does not name
    /// is taken to be in EDL once it sends a Sahara HELLO; nothing is written to it before.
    #[arg(long)]
    device: Option<String>,
    /// Instead of waiting for a HELLO, learn what an unnamed serial port is as `flash
    /// --probe` does (listen for a HELLO briefly, then ask `AT`).
    #[arg(long)]
    probe: bool,
    /// Give up on a device that stays silent this long when it owes an answer (e.g. `10s`),
    /// the wait for the first HELLO included.
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<std::time::Duration>,
    #[command(flatten)]
    trust: TrustArg,
    /// Print events as JSON lines.
    #[arg(long)]
    json: bool,
    /// Write the report here instead of the report folder.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Stop after the plan; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Allow a package older than the one flashline last wrote to this device.
    #[arg(long)]
    allow_older: bool,
}

/// `pack --from-pac`: a vendor .pac imported into a signed Unisoc package.
#[derive(Args)]
struct PacArgs {
    /// Import this Unisoc .pac (its FDL1, FDL2 and files) instead of reading a manifest.
    #[arg(long, value_name = "FILE.pac", conflicts_with = "manifest")]
    from_pac: Option<PathBuf>,
    /// The product the package is for, as the quirks file names it (with --from-pac).
    #[arg(long, requires = "from_pac")]
    target: Option<String>,
    /// The release version (with --from-pac).
    #[arg(long, requires = "from_pac", default_value = "1.0.0")]
    release_version: semver::Version,
}

impl PacArgs {
    /// `security_version` is `--security-version`, which `--factory` shares.
    fn import(
        &self,
        file: &Path,
        key: &Path,
        output: &Path,
        security_version: u64,
    ) -> Result<package::PackSummary> {
        let target = self.target.clone().context(
            "--from-pac needs --target PRODUCT: a .pac does not say which device it is for",
        )?;
        let options = package::unisoc::pac::ImportOptions {
            target,
            name: None,
            version: self.release_version.clone(),
            security_version,
        };
        Ok(package::unisoc::pac::import(file, key, output, &options)?)
    }
}

#[derive(Subcommand)]
enum SimCommand {
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
struct UnisocArgs {
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
struct ModemArgs {
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
struct EdlArgs {
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
}

#[derive(Args)]
struct PhoneArgs {
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

/// Runs the CLI.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLASHLINE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Some(warning) = crate::paths::root_warning_here() {
        say_err!("{warning}");
    }
    let Some(command) = cli.command else {
        #[cfg(feature = "gui")]
        return crate::gui::run(crate::gui::Launch::Desktop);
        #[cfg(not(feature = "gui"))]
        {
            say_err!("this build of flashline has no GUI; run `flashline --help` for its commands");
            return ExitCode::from(2);
        }
    };
    match dispatch(command) {
        Ok(code) => code,
        Err(e) => {
            say_err!("error: {}", chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes in one line, leaving out causes the message already quotes.
fn chain(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
    }
    text
}

fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Key(KeyCommand::Gen { name, out }) => {
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let key = package::generate_key(&name, &out)?;
            println!(
                "key id {}\nsecret key: {}\npublic key: {}",
                key.key_id,
                key.secret_path.display(),
                key.public_path.display()
            );
            println!("Keep the secret key offline. Technicians trust the .pub file.");
            Ok(ExitCode::SUCCESS)
        }
        Command::Trust(command) => trust(command),
        Command::Pack {
            manifest,
            factory,
            key,
            output,
            pac,
        } => {
            let summary = match (&pac.from_pac, manifest) {
                (Some(file), None) => pac.import(file, &key, &output, factory.security_version)?,
                (None, Some(manifest)) => package::pack(&manifest, &key, &output)?,
                (None, None) => {
                    let input = factory
                        .factory
                        .as_deref()
                        .context("a manifest, --factory or --from-pac")?;
                    return pack_factory::run(input, &factory, &key, &output);
                }
                _ => bail!("give either a manifest or --from-pac, not both"),
            };
            println!(
                "packed {} {} ({} images) signed by key {} → {}",
                summary.manifest.name,
                summary.manifest.version,
                summary.manifest.images.len(),
                summary.key_id,
                output.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { package, trust } => {
            let trust = load_trust(&trust)?;
            let checked =
                Package::open(&package).and_then(|p| p.check(&trust).map(|signer| (p, signer)));
            match checked {
                Ok((package, signer)) => {
                    let m = package.manifest();
                    println!(
                        "OK: {} {} (security version {}), {} images, signed by {} ({})",
                        m.name,
                        m.version,
                        m.security_version,
                        m.images.len(),
                        signer.name,
                        signer.key_id
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    say_err!("REJECTED: {e}");
                    Ok(ExitCode::from(EXIT_PACKAGE_REJECTED))
                }
            }
        }
        Command::Inspect {
            package,
            trust,
            json,
        } => inspect(&package, &trust, json),
        Command::Devices {
            watch: true, json, ..
        } => watch_devices(json),
        Command::Devices {
            connect,
            probe,
            json,
            watch: false,
        } => {
            let found = discovery::scan(&connect, &Quirks::builtin(), probe);
            if json {
                println!("{}", serde_json::to_string_pretty(&found)?);
            } else if found.is_empty() {
                println!("No devices found. A phone must be in fastboot mode; network devices need --connect tcp:HOST:PORT.");
            } else {
                for d in &found {
                    say!("{}", device_line(d)?);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Info {
            device,
            probe,
            json,
        } => {
            let info = discovery::open(&device, &Quirks::builtin(), false, probe)
                .and_then(|mut d| d.identify())
                .with_context(|| format!("cannot read device {device}"));
            let info = match info {
                Ok(info) => info,
                Err(e) => {
                    say_err!("error: {}", chain(&e));
                    return Ok(ExitCode::from(EXIT_DEVICE_ERROR));
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                render::print_device(&info);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Flash(args) => flash(args),
        Command::Fastboot(args) => fastboot::run(args),
        Command::Recover(args) => recover(args),
        Command::Backup {
            package,
            device,
            partitions,
            out,
            trust,
        } => {
            let req = service_request(package, device, &trust)?;
            let out = out.unwrap_or_else(crate::paths::backups_dir);
            match engine::service::backup_device(&req, &partitions, &out) {
                Ok((dir, manifest)) => {
                    for e in &manifest.entries {
                        say!(
                            "{:<10} LUN {} sectors {}+{}  sha256 {}",
                            e.label,
                            e.lun,
                            e.start_sector,
                            e.sectors,
                            e.sha256
                        );
                    }
                    println!("backup: {}", dir.display());
                    Ok(ExitCode::SUCCESS)
                }
                Err((outcome, message)) => {
                    say_err!("error: {message}");
                    Ok(exit_code(outcome))
                }
            }
        }
        Command::Restore {
            backup,
            package,
            device,
            trust,
        } => {
            let req = service_request(package, device, &trust)?;
            match engine::service::restore_device(&req, &backup) {
                Ok(manifest) => {
                    for e in &manifest.entries {
                        say!(
                            "{:<10} restored and confirmed by the device's digest",
                            e.label
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err((outcome, message)) => {
                    say_err!("error: {message}");
                    Ok(exit_code(outcome))
                }
            }
        }
        Command::Sim(SimCommand::Phone(args)) => sim_phone(args),
        Command::Sim(SimCommand::Modem(args)) => sim_modem(args),
        Command::Sim(SimCommand::Edl(args)) => sim_edl(args),
        Command::Sim(SimCommand::Zxic(args)) => zxic::sim_zxic(args),
        Command::Sim(SimCommand::Unisoc(args)) => sim_unisoc(args),
        Command::Lp(command) => lp::run(command),
        Command::Demo { dir, cli, json } => {
            // Without the GUI every demo is the terminal demo.
            #[cfg(not(feature = "gui"))]
            let _ = cli;
            #[cfg(feature = "gui")]
            if !cli && !json {
                if crate::gui::display_available() {
                    return Ok(crate::gui::run(crate::gui::Launch::Demo(dir.as_deref())));
                }
                say_err!("note: no display (neither DISPLAY nor WAYLAND_DISPLAY is set), so the GUI bench cannot open; running the terminal demo instead (`flashline demo --cli`)\n");
            }
            demo::run(dir.as_deref(), json)
        }
        Command::UdevRules => {
            print!("{}", Quirks::builtin().udev_rules());
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor { json } => doctor::run(json),
        Command::DistAssets { out } => dist::run(&out),
    }
}

fn trust(command: TrustCommand) -> Result<ExitCode> {
    let folder = |dir: Option<PathBuf>| dir.unwrap_or_else(crate::paths::trust_dir);
    match command {
        TrustCommand::Rotate {
            keys,
            threshold,
            roles,
            expires,
            signers,
            previous,
            output,
        } => {
            let previous = previous.map(|p| SignedRoot::load(&p)).transpose()?;
            let keys: Vec<RootKey> = keys
                .iter()
                .map(|p| package::PublicKey::load(p).map(|k| RootKey::of(&k)))
                .collect::<Result<_, _>>()?;
            let roles = if roles.is_empty() {
                println!("no --role given: every key of the new root may sign for every product");
                vec![package::root::Role {
                    name: "all-products".into(),
                    products: vec!["*".into()],
                    threshold: 1,
                    keys: keys.clone(),
                }]
            } else {
                roles.iter().map(|r| parse_role(r)).collect::<Result<_>>()?
            };
            let document = RootDocument {
                version: previous.as_ref().map_or(1, |p| p.version() + 1),
                expires: package::root::Expiry::after(expires.into()),
                threshold,
                keys,
                roles,
            };
            let root = SignedRoot::sign(document, &signers)?;
            match &previous {
                Some(previous) => previous.check_successor(&root)?,
                None => root.check_self_signed()?,
            }
            std::fs::write(&output, root.to_file_text())
                .with_context(|| format!("cannot write {}", output.display()))?;
            println!(
                "trust root version {} ({} keys, threshold {}) → {}",
                root.version(),
                root.document().keys.len(),
                threshold,
                output.display()
            );
        }
        TrustCommand::Init { root, trust } => {
            let dir = folder(trust);
            let root = SignedRoot::load(&root)?;
            let moved = package::root::install_first(&dir, &root, &root_state())?;
            println!(
                "installed trust root version {} in {} (expires {})",
                root.version(),
                dir.display(),
                root.document().expires
            );
            if let Some(first) = moved.first() {
                println!(
                    "{} loose .pub files were moved to {}: they are no longer trusted, the root decides",
                    moved.len(),
                    first.parent().unwrap_or(&dir).display()
                );
            }
        }
        TrustCommand::Update { root, trust } => {
            let dir = folder(trust);
            let root = SignedRoot::load(&root)?;
            let replaced = package::root::update(&dir, &root, &root_state())?;
            println!(
                "trust root version {replaced} replaced by version {} in {}",
                root.version(),
                dir.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The station's record of installed trust roots, in flashline's home.
fn root_state() -> package::root::RootState {
    package::root::RootState::at(&crate::paths::home().join(package::root::STATE_FILE))
}

/// Parses `--role NAME:PATTERN[,PATTERN…]:THRESHOLD:KEY.pub[,KEY.pub…]`.
fn parse_role(spec: &str) -> Result<package::root::Role> {
    let parts: Vec<&str> = spec.splitn(4, ':').collect();
    let [name, products, threshold, keys] = parts[..] else {
        anyhow::bail!(
            "--role {spec:?}: expected NAME:PATTERN[,PATTERN…]:THRESHOLD:KEY.pub[,KEY.pub…]"
        );
    };
    let threshold = threshold
        .parse()
        .with_context(|| format!("--role {spec:?}: the threshold {threshold:?} is not a number"))?;
    let keys = keys
        .split(',')
        .map(|p| package::PublicKey::load(Path::new(p)).map(|k| RootKey::of(&k)))
        .collect::<Result<_, _>>()?;
    Ok(package::root::Role {
        name: name.to_string(),
        products: products.split(',').map(str::to_string).collect(),
        threshold,
        keys,
    })
}

fn load_trust(arg: &TrustArg) -> Result<TrustStore> {
    Ok(match &arg.trust {
        Some(dir) => TrustStore::load_dir(dir)?,
        None => {
            let dir = crate::paths::trust_dir();
            if dir.is_dir() {
                TrustStore::load_dir(&dir)?
            } else {
                TrustStore::empty()
            }
        }
    })
}

fn inspect(path: &Path, trust: &TrustArg, json: bool) -> Result<ExitCode> {
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

/// Maps a job's outcome to the process exit code.
pub fn exit_code(outcome: Outcome) -> ExitCode {
    match outcome {
        Outcome::Success | Outcome::DryRun => ExitCode::SUCCESS,
        Outcome::PackageRejected => ExitCode::from(EXIT_PACKAGE_REJECTED),
        Outcome::PreflightRefused => ExitCode::from(EXIT_PREFLIGHT_REFUSED),
        Outcome::DeviceError => ExitCode::from(EXIT_DEVICE_ERROR),
        Outcome::Cancelled => ExitCode::FAILURE,
    }
}

fn flash(args: FlashArgs) -> Result<ExitCode> {
    if args.device.len() > 1 && args.report.is_some() {
        bail!("--report names one file; with several devices the reports go to the report folder");
    }
    let quirks = Quirks::builtin();
    let devices = if args.device.is_empty() {
        match pick_device(
            &quirks,
            |m| m != crate::device::Mode::Unknown,
            "no flashable device is attached; connect one, or name it with --device",
        ) {
            Ok(a) => vec![a],
            Err(code) => return Ok(code),
        }
    } else {
        args.device.clone()
    };
    let trust = load_trust(&args.trust)?;
    let mut requests: Vec<JobRequest> = devices
        .iter()
        .map(|address| JobRequest {
            package: args.package.clone(),
            trust: trust.clone(),
            device: DeviceTarget {
                address: address.clone(),
                is_virtual: false,
                probe: args.probe,
            },
            quirks: Quirks::builtin(),
            options: JobOptions {
                overrides: Overrides {
                    allow_older: args.allow_older,
                    force_battery: args.force_battery,
                    write_nv: args.write_nv,
                },
                dry_run: args.dry_run,
                report_path: args.report.clone(),
                device_timeout: args.timeout,
                vbmeta_flags: crate::protocol::avb::Flags::from_switches(
                    args.disable_verity,
                    args.disable_verification,
                ),
                slot: args.slot,
                ..JobOptions::default()
            },
        })
        .collect();
    if requests.len() > 1 {
        let reports = multi::run_jobs(requests, args.json)?;
        let failed = reports.iter().find(|r| r.outcome != Outcome::Success);
        return Ok(exit_code(failed.map_or(Outcome::Success, |r| r.outcome)));
    }
    let Some(req) = requests.pop() else {
        bail!("no device given");
    };
    let report = run_job(req, args.json)?;
    Ok(exit_code(report.outcome))
}

/// Runs a job on the tokio runtime and renders its events as they come.
fn run_job(req: JobRequest, json: bool) -> Result<engine::Report> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let (mut events, handle) = engine::spawn(req);
        let mut renderer = render::Renderer::new(json);
        while let Some(event) = events.recv().await {
            renderer.show(&event);
        }
        handle.await.context("the flash job panicked")
    })
}

fn service_request(package: PathBuf, device: String, trust: &TrustArg) -> Result<JobRequest> {
    Ok(JobRequest {
        package,
        trust: load_trust(trust)?,
        device: DeviceTarget {
            address: device,
            is_virtual: false,
            probe: false,
        },
        quirks: Quirks::builtin(),
        options: JobOptions::default(),
    })
}

fn recover(args: RecoverArgs) -> Result<ExitCode> {
    let quirks = Quirks::builtin();
    let address = match args.device {
        Some(a) => a,
        None => match pick_device(
            &quirks,
            |m| matches!(m, crate::device::Mode::Edl | crate::device::Mode::Zxic),
            RECOVERY_GUIDE,
        ) {
            Ok(a) => a,
            Err(code) => return Ok(code),
        },
    };
    let req = JobRequest {
        package: args.package,
        trust: load_trust(&args.trust)?,
        device: DeviceTarget {
            address,
            is_virtual: false,
            probe: args.probe,
        },
        quirks,
        options: JobOptions {
            overrides: Overrides {
                allow_older: args.allow_older,
                force_battery: false,
                write_nv: false,
            },
            dry_run: args.dry_run,
            report_path: args.report,
            device_timeout: args.timeout,
            expect_edl: true,
            ..JobOptions::default()
        },
    };
    Ok(exit_code(run_job(req, args.json)?.outcome))
}

/// The one attached device whose mode `wanted` accepts; otherwise a message and an exit code.
fn pick_device(
    quirks: &Quirks,
    wanted: impl Fn(crate::device::Mode) -> bool,
    none: &str,
) -> Result<String, ExitCode> {
    let found: Vec<_> = discovery::scan(&[], quirks, false)
        .into_iter()
        .filter(|d| wanted(d.mode))
        .collect();
    match found.as_slice() {
        [one] => {
            say_err!("using the only suitable device: {}", one.address);
            Ok(one.address.clone())
        }
        [] => {
            say_err!("{none}");
            Err(ExitCode::from(EXIT_DEVICE_ERROR))
        }
        many => {
            say_err!("several devices are attached; pick one with --device:");
            for d in many {
                say_err!(
                    "  {}  serial {}",
                    d.address,
                    d.serial.clone().unwrap_or_default()
                );
            }
            Err(ExitCode::from(EXIT_DEVICE_ERROR))
        }
    }
}

/// What to do when no device in EDL is found.
const RECOVERY_GUIDE: &str =
    "No device in emergency download mode (Qualcomm EDL, USB 05c6:9008 or 19d2:0076) was found.

To put a bricked modem or hotspot into EDL:
  1. Unplug it and, for a hotspot, take out the battery for ten seconds, then put it back.
  2. Hold the reset button (a hotspot: often reset + power together) while plugging it into USB.
  3. Keep holding for five seconds, then release. The screen, if any, stays dark: that is expected.
  4. Run `flashline devices`: the device should be listed in mode edl. Then run this command again.
If it does not appear, try another USB cable and a port directly on the computer, not a hub.
Nothing has been written to the device.";

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

/// One device as `flashline devices` lists it.
fn device_line(d: &discovery::Found) -> Result<String> {
    Ok(format!(
        "{:<28} {:<9} {:<20} {}",
        printable(&d.address),
        serde_json::to_string(&d.mode)?.trim_matches('"'),
        printable(d.product.as_deref().unwrap_or_default()),
        printable(d.serial.as_deref().unwrap_or_default())
    ))
}

/// `flashline devices --watch`: one line per arrival or departure, until interrupted or
/// stdout goes away.
fn watch_devices(json: bool) -> Result<ExitCode> {
    use discovery::Change;
    use std::io::Write;
    let result = discovery::watch(&Quirks::builtin(), |change| {
        let line = if json {
            serde_json::to_string(&change).map_err(anyhow::Error::from)
        } else {
            let (event, d) = match &change {
                Change::Arrived(d) => ("arrived", d),
                Change::Left(d) => ("left   ", d),
            };
            device_line(d).map(|line| format!("{event} {line}"))
        };
        let mut out = std::io::stdout().lock();
        match line.and_then(|l| {
            writeln!(out, "{l}")
                .and_then(|()| out.flush())
                .map_err(Into::into)
        }) {
            Ok(()) => std::ops::ControlFlow::Continue(()),
            Err(e) => std::ops::ControlFlow::Break(e),
        }
    });
    Err(result)
}

#[cfg(unix)]
fn sim_modem(args: ModemArgs) -> Result<ExitCode> {
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
fn sim_unisoc(_args: UnisocArgs) -> Result<ExitCode> {
    bail!("the virtual Unisoc device needs a pseudo-terminal or Linux's USB gadgets; the virtual phone (`sim phone`) runs everywhere")
}

#[cfg(unix)]
fn sim_unisoc(args: UnisocArgs) -> Result<ExitCode> {
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
fn sim_modem(_args: ModemArgs) -> Result<ExitCode> {
    bail!("the virtual modem needs a pseudo-terminal (Linux or macOS); the virtual phone (`sim phone`) runs everywhere")
}

#[cfg(not(unix))]
fn sim_edl(_args: EdlArgs) -> Result<ExitCode> {
    bail!("the virtual EDL device needs a pseudo-terminal or Linux's USB gadgets; the virtual phone (`sim phone`) runs everywhere")
}

#[cfg(unix)]
fn sim_edl(args: EdlArgs) -> Result<ExitCode> {
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

fn sim_phone(args: PhoneArgs) -> Result<ExitCode> {
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
