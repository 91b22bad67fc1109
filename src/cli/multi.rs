//! `flashline flash PKG --device A --device B …`: several devices at once, as on a bench.
//!
//! Each device gets its own job on the engine's blocking pool, so a slow cable holds up
//! only its own device. Events are shown as they come, each tagged with its device: JSON
//! lines gain a `"device"` field; people get one short line per milestone and a summary.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::render::say;
use crate::device::printable;
use crate::engine::{self, Event, JobRequest, Outcome, Report, Stage};
use crate::package::Package;

/// Progress lines for people are printed at most this often per image, in percent.
const PROGRESS_STEP_PERCENT: u64 = 25;

/// Runs one job per request at once and returns their reports in request order. The
/// requests are for one package and one trust store: it is verified once for all.
pub(super) fn run_jobs(requests: Vec<JobRequest>, json: bool) -> Result<Vec<Report>> {
    let mut seen = BTreeSet::new();
    for req in &requests {
        if !seen.insert(req.device.address.as_str()) {
            bail!("device {} is given twice", req.device.address);
        }
    }
    let addresses: Vec<String> = requests.iter().map(|r| r.device.address.clone()).collect();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let started = Instant::now();
    // One verification serves every device. If it fails, each job verifies on its own
    // and so reports the rejection in its own report, as a single-device flash does.
    let verified = requests.first().and_then(|req| {
        Package::open(&req.package)
            .and_then(|p| p.verify(&req.trust))
            .ok()
            .map(Arc::new)
    });
    let reports = runtime.block_on(async move {
        let (tx, mut merged) = tokio::sync::mpsc::unbounded_channel::<(usize, Event)>();
        let mut handles = Vec::new();
        for (device, req) in requests.into_iter().enumerate() {
            let (mut events, handle) = match &verified {
                Some(package) => engine::spawn_verified(req, Arc::clone(package)),
                None => engine::spawn(req),
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(event) = events.recv().await {
                    if tx.send((device, event)).is_err() {
                        break;
                    }
                }
            });
            handles.push(handle);
        }
        drop(tx);
        let mut view = View::new(addresses.len());
        while let Some((device, event)) = merged.recv().await {
            view.show(&addresses[device], device, &event, json);
        }
        let mut reports = Vec::new();
        for handle in handles {
            reports.push(handle.await.context("a flash job panicked")?);
        }
        anyhow::Ok(reports)
    })?;
    if !json {
        summary(&reports, started.elapsed().as_secs_f64());
    }
    Ok(reports)
}

/// Per-device state of the human output.
struct View {
    /// Last progress step printed, per device.
    shown_percent: Vec<u64>,
}

impl View {
    fn new(devices: usize) -> Self {
        View {
            shown_percent: vec![0; devices],
        }
    }

    fn show(&mut self, address: &str, device: usize, event: &Event, json: bool) {
        if json {
            let mut value = serde_json::to_value(event).expect("events serialise");
            if let Some(object) = value.as_object_mut() {
                object.insert("device".into(), address.into());
            }
            println!("{value}");
            return;
        }
        let line = match event {
            Event::Stage { stage } => match stage {
                Stage::Flash | Stage::Reboot | Stage::Activate => {
                    format!("{stage:?}").to_lowercase()
                }
                _ => return,
            },
            Event::PackageVerified { name, version, .. } => {
                format!("package {name} {version} verified")
            }
            Event::DeviceIdentified { device } => format!(
                "{} serial {} firmware {}",
                device.product.as_deref().unwrap_or("unknown product"),
                device.serial.as_deref().unwrap_or("?"),
                device.firmware_version_raw.as_deref().unwrap_or("?")
            ),
            Event::Preflight { checks } => {
                let refused: Vec<&str> = checks
                    .iter()
                    .filter(|c| c.status == engine::Status::Refuse)
                    .map(|c| c.name.as_str())
                    .collect();
                if refused.is_empty() {
                    return;
                }
                format!("preflight refused: {}", refused.join(", "))
            }
            Event::ImageStarted {
                index,
                count,
                target,
                bytes,
            } => {
                self.shown_percent[device] = 0;
                format!("image {}/{count} {target}: {bytes} bytes", index + 1)
            }
            Event::Progress { done, total, .. } => {
                let percent = (done * 100).checked_div(*total).unwrap_or(100);
                let step = percent / PROGRESS_STEP_PERCENT * PROGRESS_STEP_PERCENT;
                if step <= self.shown_percent[device] || step >= 100 {
                    return;
                }
                self.shown_percent[device] = step;
                format!("{step} %")
            }
            Event::ImageWritten {
                target, seconds, ..
            } => format!("{target} written in {seconds:.2} s, hash of the bytes sent = signed"),
            Event::Resuming { verified, .. } => {
                format!(
                    "resuming: {} image(s) verified earlier are kept",
                    verified.len()
                )
            }
            Event::ImageKept { target, .. } => format!("{target} kept (verified earlier)"),
            Event::Finished { outcome, error, .. } => match error {
                Some(e) => format!("{}: {}", outcome_word(*outcome), printable(e)),
                None => outcome_word(*outcome).to_string(),
            },
            _ => return,
        };
        say!("[{address}] {line}");
    }
}

fn outcome_word(outcome: Outcome) -> String {
    serde_json::to_string(&outcome)
        .unwrap_or_default()
        .trim_matches('"')
        .to_string()
}

/// One line per device, then the wall time of the whole run.
fn summary(reports: &[Report], seconds: f64) {
    println!();
    for r in reports {
        let flash: f64 = r.images.iter().filter_map(|i| i.seconds).sum();
        let error = r.error.as_deref().map(|e| format!("  {}", printable(e)));
        say!(
            "{:<28} {:<18} flashing {flash:>7.2} s{}",
            r.device_address,
            outcome_word(r.outcome),
            error.unwrap_or_default()
        );
    }
    let ok = reports
        .iter()
        .filter(|r| r.outcome == Outcome::Success)
        .count();
    println!(
        "{ok} of {} devices flashed in {seconds:.2} s",
        reports.len()
    );
}
