//! The engine's hooks for front ends: a job can be cancelled at any point and still ends
//! with its report, and a check-only job reads the device without changing it.

use std::path::{Path, PathBuf};

use flashline::device::quirks::Quirks;
use flashline::engine::{self, Cancel, DeviceTarget, Event, JobOptions, JobRequest, Outcome};
use flashline::package::TrustStore;
use flashline::sim::phone::{PhoneConfig, PhoneSim, RunningPhone};

const MIB: usize = 1024 * 1024;
const DEMO_KEY: &str = include_str!("../assets/demo-keys/flashline-demo-INSECURE.key");

/// A package for the default virtual phone, signed with the demo key.
fn package(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut x = 0x1234_5678u32;
    let noise: Vec<u8> = (0..16 * MIB)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    std::fs::write(src.join("boot.img"), &noise[..2 * MIB]).unwrap();
    std::fs::write(src.join("system.img"), &noise).unwrap();
    std::fs::write(
        src.join("manifest.toml"),
        "name = \"t\"\nversion = \"2.1.0\"\nsecurity_version = 7\nmin_battery_percent = 30\n\
         [[target]]\nproduct = \"zte-demo-phone\"\n\
         [[image]]\npartition = \"system\"\nfile = \"system.img\"\n\
         [[image]]\npartition = \"boot\"\nfile = \"boot.img\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("demo.key"), DEMO_KEY).unwrap();
    let pkg = dir.join("t.flpkg");
    flashline::package::pack(&src.join("manifest.toml"), &dir.join("demo.key"), &pkg).unwrap();
    pkg
}

fn request(dir: &Path, pkg: &Path, phone: &RunningPhone, options: JobOptions) -> JobRequest {
    JobRequest {
        package: pkg.to_path_buf(),
        trust: TrustStore::demo(),
        device: DeviceTarget {
            address: phone.device_address(),
            is_virtual: true,
            probe: false,
        },
        quirks: Quirks::builtin(),
        options: JobOptions {
            reports_dir: dir.join("reports"),
            history_path: dir.join("history.json"),
            backups_dir: dir.join("backups"),
            journal_dir: dir.join("journal"),
            ..options
        },
    }
}

/// The default phone takes the 16 MiB image in one download, committed only at its end.
fn phone(dir: &Path) -> RunningPhone {
    PhoneSim::start(
        "127.0.0.1:0".parse().unwrap(),
        &dir.join("phone"),
        PhoneConfig::default(),
    )
    .unwrap()
}

#[test]
fn a_job_cancelled_before_it_starts_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = package(dir.path());
    let phone = phone(dir.path());
    let cancel = Cancel::default();
    cancel.cancel();
    let req = request(
        dir.path(),
        &pkg,
        &phone,
        JobOptions {
            cancel,
            ..JobOptions::default()
        },
    );
    let report = engine::run(&req, &mut |_| {});
    assert_eq!(report.outcome, Outcome::Cancelled);
    assert_eq!(
        report.error.as_deref(),
        Some("cancelled by the user before identifying the device")
    );
    assert!(phone.commands().is_empty(), "{:?}", phone.commands());
    assert_eq!(
        std::fs::read_dir(dir.path().join("reports"))
            .unwrap()
            .count(),
        1
    );
}

#[test]
fn a_job_cancelled_mid_image_stops_without_committing_it() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = package(dir.path());
    let phone = phone(dir.path());
    let cancel = Cancel::default();
    let req = request(
        dir.path(),
        &pkg,
        &phone,
        JobOptions {
            cancel: cancel.clone(),
            ..JobOptions::default()
        },
    );
    let mut last = None;
    let report = engine::run(&req, &mut |event| {
        if let Event::Progress { index: 0, .. } = event {
            cancel.cancel();
        }
        last = Some(event);
    });
    assert_eq!(report.outcome, Outcome::Cancelled, "{:?}", report.error);
    let error = report.error.unwrap();
    assert!(
        error.starts_with("cancelled by the user: writing system"),
        "{error}"
    );
    assert_eq!(report.images[0].status, "failed");
    assert_eq!(report.images[1].status, "not-started");
    assert!(matches!(
        last,
        Some(Event::Finished {
            outcome: Outcome::Cancelled,
            report: Some(_),
            ..
        })
    ));
    let commands = phone.commands();
    assert!(
        !commands.iter().any(|c| c.starts_with("flash:")),
        "the cut image was not committed: {commands:?}"
    );
}

#[test]
fn a_check_only_job_reads_the_device_and_plans_but_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = package(dir.path());
    let phone = phone(dir.path());
    let req = request(
        dir.path(),
        &pkg,
        &phone,
        JobOptions {
            check_only: true,
            ..JobOptions::default()
        },
    );
    let mut preflight = false;
    let mut planned = false;
    let report = engine::run(&req, &mut |event| match event {
        Event::Preflight { .. } => preflight = true,
        Event::PlanReady { .. } => planned = true,
        _ => {}
    });
    assert_eq!(report.outcome, Outcome::DryRun);
    assert!(preflight && planned);
    let commands = phone.commands();
    assert!(
        commands.iter().all(|c| c.starts_with("getvar:")),
        "{commands:?}"
    );
}
