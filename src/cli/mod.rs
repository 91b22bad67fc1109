//! The command-line front end: parses arguments, starts engine jobs, renders their events.
//!
//! Exit codes: 0 success, 1 other failure, 2 usage error, 3 package rejected, 4 preflight
//! refused, 5 device error.

mod demo;
mod render;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::device::discovery;
use crate::device::quirks::Quirks;
use crate::engine::{self, DeviceTarget, JobOptions, JobRequest, Outcome, Overrides};
use crate::package::{self, Origin, Package, TrustStore};
use crate::sim::phone::{PhoneConfig, PhoneSim};

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage signing keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Build and sign a package from a manifest.
    Pack {
        /// The manifest (TOML); image files are relative to it.
        manifest: PathBuf,
        /// The secret key (`NAME.key`).
        #[arg(long)]
        key: PathBuf,
        /// Where to write the package.
        #[arg(short, long)]
        output: PathBuf,
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
    /// List devices: fastboot devices on USB, plus the given network addresses.
    Devices {
        /// Also look at this address (`tcp:HOST:PORT`); may be repeated.
        #[arg(long = "connect")]
        connect: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a device's identity, versions, battery and partitions.
    Info {
        /// `tcp:HOST:PORT`, `usb:BUS-PORT` or a USB serial number.
        device: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Flash a package onto a device.
    Flash(FlashArgs),
    /// Run a virtual device.
    #[command(subcommand)]
    Sim(SimCommand),
    /// Run the whole job on a built-in virtual phone: pack, verify, preflight, flash, report.
    Demo {
        /// Keep the demo's files here instead of a temporary folder.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print events as JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Print udev rules that give the logged-in user access to known devices.
    UdevRules,
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
    /// `tcp:HOST:PORT`, `usb:BUS-PORT` or a USB serial number.
    #[arg(long)]
    device: String,
    #[command(flatten)]
    trust: TrustArg,
    /// Print events as JSON lines.
    #[arg(long)]
    json: bool,
    /// Write the report here instead of the report folder.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Verify, identify, preflight and plan, but write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Allow a package older than the device's firmware (recorded in the report).
    #[arg(long)]
    allow_older: bool,
    /// Flash although the device does not report its battery (recorded in the report).
    #[arg(long)]
    force_battery: bool,
}

#[derive(Subcommand)]
enum SimCommand {
    /// A virtual phone in fastboot mode, served over TCP.
    Phone(PhoneArgs),
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
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", chain(&e));
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
        Command::Pack {
            manifest,
            key,
            output,
        } => {
            let summary = package::pack(&manifest, &key, &output)?;
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
            match Package::open(&package).and_then(|p| p.verify(&trust)) {
                Ok(verified) => {
                    let m = verified.manifest();
                    println!(
                        "OK: {} {} (security version {}), {} images, signed by {} ({})",
                        m.name,
                        m.version,
                        m.security_version,
                        m.images.len(),
                        verified.signer().name,
                        verified.signer().key_id
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("REJECTED: {e}");
                    Ok(ExitCode::from(EXIT_PACKAGE_REJECTED))
                }
            }
        }
        Command::Inspect {
            package,
            trust,
            json,
        } => inspect(&package, &trust, json),
        Command::Devices { connect, json } => {
            let found = discovery::scan(&connect, &Quirks::builtin());
            if json {
                println!("{}", serde_json::to_string_pretty(&found)?);
            } else if found.is_empty() {
                println!("No devices found. A phone must be in fastboot mode; network devices need --connect tcp:HOST:PORT.");
            } else {
                for d in found {
                    println!(
                        "{:<28} {:<9} {:<20} {}",
                        d.address,
                        serde_json::to_string(&d.mode)?.trim_matches('"'),
                        d.product.unwrap_or_default(),
                        d.serial.unwrap_or_default()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Info { device, json } => {
            let info = discovery::open(&device, &Quirks::builtin(), false)
                .and_then(|mut d| d.identify())
                .with_context(|| format!("cannot read device {device}"));
            let info = match info {
                Ok(info) => info,
                Err(e) => {
                    eprintln!("error: {}", chain(&e));
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
        Command::Sim(SimCommand::Phone(args)) => sim_phone(args),
        Command::Demo { dir, json } => demo::run(dir.as_deref(), json),
        Command::UdevRules => {
            print!("{}", Quirks::builtin().udev_rules());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn load_trust(arg: &TrustArg) -> Result<TrustStore> {
    Ok(match &arg.trust {
        Some(dir) => TrustStore::load_dir(dir, Origin::Explicit)?,
        None => {
            let dir = crate::paths::trust_dir();
            if dir.is_dir() {
                TrustStore::load_dir(&dir, Origin::Default)?
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
            eprintln!("REJECTED: {e}");
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
    }
}

fn flash(args: FlashArgs) -> Result<ExitCode> {
    let req = JobRequest {
        package: args.package,
        trust: load_trust(&args.trust)?,
        device: DeviceTarget {
            address: args.device,
            is_virtual: false,
        },
        quirks: Quirks::builtin(),
        options: JobOptions {
            overrides: Overrides {
                allow_older: args.allow_older,
                force_battery: args.force_battery,
            },
            dry_run: args.dry_run,
            report_path: args.report,
            ..JobOptions::default()
        },
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

fn sim_phone(args: PhoneArgs) -> Result<ExitCode> {
    let d = PhoneConfig::default();
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
        ..d
    };
    let sim = PhoneSim::bind(args.listen, &args.dir, cfg)
        .with_context(|| format!("cannot start the virtual phone on {}", args.listen))?;
    let addr = sim.local_addr()?;
    // The first line on stdout is the address to pass to --device, for scripts.
    println!("tcp:{addr}");
    eprintln!(
        "virtual phone listening; partitions in {}; stop with Ctrl-C",
        args.dir.display()
    );
    sim.serve_forever();
    Ok(ExitCode::SUCCESS)
}

fn parse_partition(text: &str) -> Result<(String, u64)> {
    let Some((name, size)) = text.split_once('=') else {
        bail!("expected NAME=SIZE, e.g. boot=64M");
    };
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
    let bytes = n.checked_mul(mult).context("size too large")?;
    Ok((name.to_string(), bytes))
}
