//! `flashline flash`, `recover`, `backup` and `restore`: running jobs on a device and their exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::render::{self, say_err};
use super::{
    load_trust, multi, TrustArg, EXIT_DEVICE_ERROR, EXIT_PACKAGE_REJECTED, EXIT_PREFLIGHT_REFUSED,
};
use crate::device::discovery;
use crate::device::quirks::Quirks;
use crate::engine::{self, DeviceTarget, JobOptions, JobRequest, Outcome, Overrides};

#[derive(Args)]
pub(super) struct FlashArgs {
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
    /// On a phone with dynamic partitions, write the logical partitions from fastbootd
    /// (`update-super`, a resize and a flash each) instead of building the whole super
    /// image here for the bootloader to flash in one pass, which is the default where the
    /// phone allows it (Google's flag of the same name).
    #[arg(long)]
    disable_super_optimization: bool,
}

#[derive(Args)]
pub(super) struct RecoverArgs {
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

pub(super) fn flash(args: FlashArgs) -> Result<ExitCode> {
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
                optimized_super: !args.disable_super_optimization,
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
pub(super) fn run_job(req: JobRequest, json: bool) -> Result<engine::Report> {
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

pub(super) fn service_request(
    package: PathBuf,
    device: String,
    trust: &TrustArg,
) -> Result<JobRequest> {
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

pub(super) fn recover(args: RecoverArgs) -> Result<ExitCode> {
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
pub(super) fn pick_device(
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
