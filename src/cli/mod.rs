//! The command-line front end: parses arguments, starts engine jobs, renders their events.
//!
//! Exit codes: 0 success, 1 other failure, 2 usage error, 3 package rejected, 4 preflight
//! refused, 5 device error.

pub(crate) mod demo;
mod dist;
mod doctor;
mod fastboot;
mod flash;
mod info;
mod lp;
mod multi;
mod pack;
mod pack_factory;
mod render;
#[cfg(feature = "fleet")]
mod repo;
#[cfg(feature = "fleet")]
mod reports;
mod sim;
mod station;
mod trust;
mod zxic;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use crate::device::discovery;
use crate::device::quirks::Quirks;
use crate::engine;
use crate::package::{self, Package};
pub use flash::exit_code;
use flash::{flash, pick_device, recover, run_job, service_request, FlashArgs, RecoverArgs};
use info::{device_line, watch_devices};
use pack::{inspect, PacArgs};
use render::{say, say_err};
use sim::{sim_edl, sim_modem, sim_phone, sim_unisoc, SimCommand};
use trust::{load_trust, trust, KeyCommand, TrustArg, TrustCommand};

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
    /// Packages from a TUF repository: sync its signed metadata, list its packages.
    #[cfg(feature = "fleet")]
    #[command(subcommand)]
    Repo(repo::RepoCommand),
    /// Bench station: flash every device plugged in, canaries first, with a kill switch.
    Station(station::StationArgs),
    /// Job and batch reports waiting for the fleet's S3-compatible store (the outbox).
    #[cfg(feature = "fleet")]
    #[command(subcommand)]
    Reports(reports::ReportsCommand),
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
                (Some(file), None) => pac.import(file, &factory, &key, &output)?,
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
        Command::Station(args) => station::run(args),
        #[cfg(feature = "fleet")]
        Command::Repo(command) => repo::run(command),
        #[cfg(feature = "fleet")]
        Command::Reports(command) => reports::run(command),
    }
}
