//! Turns job events into terminal output: progress bars for people, JSON lines for scripts.

use std::io::Write;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::device::{Battery, DeviceInfo};
use crate::engine::{Event, Stage, Status};
use crate::package::{Inspection, KeyScope, SignatureStatus};

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
        Event::Stage { stage } => println!("\n== {}", stage_title(*stage)),
        Event::PackageVerified {
            name,
            version,
            signer,
            signer_name,
        } => println!("   {name} {version}: signature and every image hash verified (signed by {signer_name}, key {signer})"),
        Event::DeviceIdentified { device } => print_device(device),
        Event::Preflight { checks } => {
            for c in checks {
                let mark = match c.status {
                    Status::Pass => "ok  ",
                    Status::Warn => "warn",
                    Status::Refuse => "NO  ",
                };
                println!("   [{mark}] {:<18} device: {:<24} package needs: {}", c.name, c.actual, c.required);
                if c.status != Status::Pass {
                    println!("          {}", c.message);
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
                println!("   {:<12} → {:<14} {:>12} bytes ({kind})", w.partition, w.target, w.bytes);
            }
            if let Some(slot) = activate_slot {
                println!("   then boot slot {slot} (switched only after every image is verified)");
            }
            println!("   {total_bytes} bytes in all");
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
            pb.set_prefix(format!("image {}/{} {target}", index + 1, count));
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
            println!("   {target}: written in {seconds:.2} s, sha256 of the bytes sent {} = signed{checked}", &sha256[..16]);
        }
        Event::Resuming { verified, interrupted, since } => {
            println!("   resuming the job interrupted at {since}: {} image(s) already verified", verified.len());
            if let Some(target) = interrupted {
                println!("   {target} was left incomplete and is written again from its start");
            }
        }
        Event::ImageKept { target, checked_on_device, .. } => {
            let how = if *checked_on_device { "the device's digest matches" } else { "verified by the interrupted run" };
            println!("   {target}: kept ({how})");
        }
        Event::DeviceMessage { text } => println!("   (device) {text}"),
        Event::SlotSwitched { slot } => println!("   the device will boot slot {slot}"),
        Event::DeviceSwitched { from, to } => println!("   {from} left; the device is back in download mode at {to}"),
        Event::BackupWritten { label, sha256 } => println!("   {label}: saved and checked (sha256 {})", &sha256[..16]),
        Event::Finished { outcome, error, report } => {
            if let Some(pb) = bar.take() {
                pb.abandon();
            }
            println!();
            match error {
                None => println!("Done: {}", serde_json::to_string(outcome).unwrap_or_default().trim_matches('"')),
                Some(e) => println!("Stopped: {e}"),
            }
            if let Some(path) = report {
                println!("Report: {}", path.display());
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
    println!("   address           {}", d.address);
    println!("   product           {}", or(&d.product));
    println!("   serial            {}", or(&d.serial));
    println!("   firmware version  {}", or(&d.firmware_version_raw));
    println!(
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
    println!("   battery           {battery}");
    if let Some(s) = &d.slots {
        println!("   slots             {} (current {})", s.count, s.current);
    }
    for (name, size) in &d.partitions {
        println!("   partition         {name:<14} {size} bytes");
    }
}

/// Prints a package inspection for people.
pub fn print_inspection(i: &Inspection) {
    let m = &i.manifest;
    println!("package          {}", i.path.display());
    println!("name             {}", m.name);
    println!("version          {}", m.version);
    println!("security version {}", m.security_version);
    println!("min battery      {} %", m.min_battery_percent);
    if let Some(d) = &m.description {
        println!("description      {d}");
    }
    for t in &m.targets {
        println!("target           {}", t.product);
    }
    for img in &m.images {
        let kind = match &img.sparse {
            Some(s) => format!("sparse, expands to {} bytes", s.expanded_size),
            None => "raw".to_string(),
        };
        println!(
            "image            {:<12} {} ({} bytes, {kind}) sha256 {}",
            img.partition, img.file, img.size, img.sha256
        );
    }
    println!("signer           {}", m.signer);
    if i.signatures.is_empty() {
        println!("signature        none: this package is not signed and will be rejected");
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
        println!("signature        key {}: {status}", s.key_id);
    }
    println!("(image hashes are checked by `flashline verify`)");
}
