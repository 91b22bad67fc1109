//! Turns job events into terminal output: progress bars for people, JSON lines for scripts.

use std::io::Write;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::device::{printable, Battery, DeviceInfo, LockState, Mode};
use crate::engine::{Event, Stage, Status};
use crate::package::{Inspection, KeyScope, SignatureStatus};

/// `println!` for people: the whole line goes through [`crate::device::printable_lines`],
/// so device text in it (a serial number, a FAIL reason) cannot steer the terminal.
macro_rules! say {
    () => {
        println!()
    };
    ($($arg:tt)*) => {
        println!("{}", $crate::device::printable_lines(&format!($($arg)*)))
    };
}

/// [`say!`] on stderr.
macro_rules! say_err {
    ($($arg:tt)*) => {
        eprintln!("{}", $crate::device::printable_lines(&format!($($arg)*)))
    };
}

pub(crate) use {say, say_err};

/// Renders events as they arrive.
pub enum Renderer {
    /// One JSON object per line on stdout.
    Json,
    /// Readable lines and a progress bar per image.
    Human {
        /// The current image's bar.
        bar: Option<ProgressBar>,
    },
}

impl Renderer {
    /// A renderer for `--json` or for people.
    pub fn new(json: bool) -> Self {
        if json {
            Renderer::Json
        } else {
            Renderer::Human { bar: None }
        }
    }

    /// Shows one event.
    pub fn show(&mut self, event: &Event) {
        match self {
            Renderer::Json => {
                let line = serde_json::to_string(event).expect("events serialise");
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
            Renderer::Human { bar } => human(bar, event),
        }
    }
}

fn human(bar: &mut Option<ProgressBar>, event: &Event) {
    match event {
        Event::Stage { stage } => say!("\n== {}", stage_title(*stage)),
        Event::PackageVerified {
            name,
            version,
            signer,
            signer_name,
        } => say!("   {name} {version}: signature and every image hash verified (signed by {signer_name}, key {signer})"),
        Event::DeviceIdentified { device } => print_device(device),
        Event::Preflight { checks } => {
            for c in checks {
                let mark = match c.status {
                    Status::Pass => "ok  ",
                    Status::Warn => "warn",
                    Status::Refuse => "NO  ",
                };
                say!("   [{mark}] {:<18} device: {:<24} package needs: {}", c.name, c.actual, c.required);
                if c.status != Status::Pass {
                    say!("          {}", c.message);
                }
            }
        }
        Event::PlanReady {
            writes,
            activate_slot,
            total_bytes,
        } => {
            for w in writes {
                let kind = if w.sparse { "sparse" } else { "raw" };
                let live = if w.live {
                    ", written live: no slots, no old copy kept"
                } else {
                    ""
                };
                say!(
                    "   {:<12} → {:<14} {:>12} bytes ({kind}{live})",
                    w.partition, w.target, w.bytes
                );
            }
            if let Some(slot) = activate_slot {
                say!("   then boot slot {slot} (switched once every image is verified; with logical partitions, before fastbootd, once every other image is)");
            }
            say!("   {total_bytes} bytes in all");
        }
        Event::ImageStarted {
            index,
            count,
            target,
            bytes,
        } => {
            let pb = ProgressBar::new(*bytes);
            pb.set_style(
                ProgressStyle::with_template(
                    "   {prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            pb.set_prefix(printable(&format!("image {}/{} {target}", index + 1, count)).into_owned());
            pb.enable_steady_tick(Duration::from_millis(200));
            *bar = Some(pb);
        }
        Event::Progress { done, .. } => {
            if let Some(pb) = bar {
                pb.set_position(*done);
            }
        }
        Event::ImageWritten {
            target,
            sha256,
            seconds,
            verified_by,
            ..
        } => {
            if let Some(pb) = bar.take() {
                pb.finish_and_clear();
            }
            let checked = verified_by.map_or_else(String::new, |v| format!("; on the device: {v}"));
            say!("   {target}: written in {seconds:.2} s, sha256 of the bytes sent {} = signed{checked}", &sha256[..16]);
        }
        Event::Resuming { verified, interrupted, since } => {
            say!("   resuming the job interrupted at {since}: {} image(s) already verified", verified.len());
            if let Some(target) = interrupted {
                say!("   {target} was left incomplete and is written again from its start");
            }
        }
        Event::ImageKept { target, checked_on_device, .. } => {
            let how = if *checked_on_device { "the device's digest matches" } else { "verified by the interrupted run" };
            say!("   {target}: kept ({how})");
        }
        Event::DeviceMessage { text } => say!("   (device) {}", printable(text)),
        Event::SlotSwitched { slot } => say!("   the device will boot slot {slot}"),
        Event::DeviceSwitched { from, to } => say!("   {from} left; the device is back in download mode at {to}"),
        Event::SwitchStep { step, provenance, reports_only } => {
            say!("   {step}");
            if *reports_only {
                say!("   note: this step rests on public reports only ({provenance})");
            }
        }
        Event::BackupWritten { label, sha256 } => say!("   {label}: saved and checked (sha256 {})", &sha256[..16]),
        Event::Finished { outcome, error, report } => {
            if let Some(pb) = bar.take() {
                pb.abandon();
            }
            say!();
            match error {
                None => say!("Done: {}", serde_json::to_string(outcome).unwrap_or_default().trim_matches('"')),
                Some(e) => say!("Stopped: {}", printable(e)),
            }
            if let Some(path) = report {
                say!("Report: {}", path.display());
            }
        }
    }
}

fn stage_title(stage: Stage) -> &'static str {
    match stage {
        Stage::Verify => "Verifying the package",
        Stage::Identify => "Identifying the device",
        Stage::Preflight => "Preflight checks",
        Stage::Plan => "Flash plan",
        Stage::Switch => "Switching to download mode",
        Stage::Programmer => "Loading the programmer",
        Stage::Backup => "Backing up the identity partitions",
        Stage::Flash => "Flashing",
        Stage::Patch => "Patching the partition tables",
        Stage::Activate => "Switching slot",
        Stage::Reboot => "Rebooting",
    }
}

/// Prints a device's facts, one per line.
pub fn print_device(d: &DeviceInfo) {
    let or = |o: &Option<String>| o.clone().unwrap_or_else(|| "not reported".into());
    say!("   address           {}", d.address);
    say!("   product           {}", or(&d.product));
    say!("   serial            {}", or(&d.serial));
    say!("   firmware version  {}", or(&d.firmware_version_raw));
    say!(
        "   security version  {}",
        d.security_version
            .map_or("not reported".into(), |v| v.to_string())
    );
    let battery = match d.battery {
        Battery::Percent(p) => format!("{p} %"),
        Battery::SufficientForFlashing => "enough to flash".into(),
        Battery::TooLowForFlashing => "too low to flash".into(),
        Battery::NoBattery => "no battery".into(),
        Battery::Unknown => "not reported".into(),
    };
    say!("   battery           {battery}");
    if d.mode == Mode::Fastboot {
        let lock = match d.lock {
            LockState::Unlocked => "unlocked (accepts flash and erase)",
            LockState::Locked => "locked (refuses flash and erase; unlocking wipes user data)",
            LockState::Unknown => "not reported",
        };
        say!("   bootloader        {lock}");
    }
    if let Some(s) = &d.slots {
        say!("   slots             {} (current {})", s.count, s.current);
    }
    for (name, size) in &d.partitions {
        say!("   partition         {name:<14} {size} bytes");
    }
    for name in &d.partitions_size_unknown {
        say!("   partition         {name:<14} size unknown");
    }
}

/// Prints a package inspection for people.
pub fn print_inspection(i: &Inspection) {
    let m = &i.manifest;
    say!("package          {}", i.path.display());
    say!("name             {}", m.name);
    say!("version          {}", m.version);
    say!("security version {}", m.security_version);
    say!("min battery      {} %", m.min_battery_percent);
    if let Some(d) = &m.description {
        say!("description      {d}");
    }
    for t in &m.targets {
        say!("target           {}", t.product);
    }
    for r in &m.requires {
        say!("requires         {} = {}", r.variable, r.values.join(" | "));
    }
    for img in &m.images {
        let mut kind = match &img.sparse {
            Some(s) => format!("sparse, expands to {} bytes", s.expanded_size),
            None => "raw".to_string(),
        };
        if img.logical {
            kind.push_str(", logical: in super, from fastbootd");
        }
        if img.reboot_bootloader {
            kind.push_str(", then reboot-bootloader");
        }
        say!(
            "image            {:<12} {} ({} bytes, {kind}) sha256 {}",
            img.partition,
            img.file,
            img.size,
            img.sha256
        );
    }
    if let Some(d) = &m.dynamic {
        let e = &d.super_empty;
        say!(
            "super layout     {} ({} bytes) sha256 {}",
            e.file,
            e.size,
            e.sha256
        );
    }
    say!("signer           {}", m.signer);
    if i.signatures.is_empty() {
        say!("signature        none: this package is not signed and will be rejected");
    }
    for s in &i.signatures {
        let status = match &s.status {
            SignatureStatus::Trusted { name, scope } => match scope {
                KeyScope::Any => format!("valid, by trusted key {name}"),
                KeyScope::VirtualOnly => {
                    format!("valid, by {name} (trusted for virtual devices only)")
                }
            },
            SignatureStatus::UnknownKey => {
                "by a key that is not in the trust folder: rejected".into()
            }
            SignatureStatus::BadSignature => {
                "INVALID: the manifest was changed or the signature is damaged".into()
            }
            SignatureStatus::Duplicate => "duplicate entry: rejected".into(),
        };
        say!("signature        key {}: {status}", s.key_id);
    }
    say!("(image hashes are checked by `flashline verify`)");
}
