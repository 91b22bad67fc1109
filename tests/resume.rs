//! An interrupted job resumes: flashline itself is killed in the middle of an image, and the
//! same job run again keeps the images the first run verified (per the on-disk journal),
//! writes the interrupted one from its start, and only then switches an A/B slot.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::bench::{assert_prefix, image, Bench};
use flashline::sim::phone::PhoneConfig;

const MIB: u64 = 1024 * 1024;

fn phone(slots: bool) -> PhoneConfig {
    PhoneConfig {
        partitions: vec![
            ("boot".into(), 2 * MIB),
            ("system".into(), 8 * MIB),
            ("vendor".into(), 2 * MIB),
        ],
        slots,
        // Slow enough that the kill lands inside the second image.
        link_rate: Some(4_000_000),
        ..PhoneConfig::default()
    }
}

/// Starts `flashline flash` without waiting for it.
fn start_flash(bench: &Bench, pkg: &Path, address: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_flashline"))
        .args([
            "flash",
            pkg.to_str().unwrap(),
            "--json",
            "--device",
            address,
        ])
        .arg("--trust")
        .arg(bench.path("keys"))
        .arg("--report")
        .arg(bench.path("killed-report.json"))
        .env("FLASHLINE_HOME", bench.path("home"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The job journal files in the bench's home.
fn journals(bench: &Bench) -> Vec<PathBuf> {
    match std::fs::read_dir(bench.path("home/journal")) {
        Ok(dir) => dir
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Waits until the journal says image `index` is being written, then kills flashline.
fn kill_during_image(mut child: Child, bench: &Bench, index: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = journals(bench).first().and_then(|p| {
            let text = std::fs::read_to_string(p).ok()?;
            let journal: serde_json::Value = serde_json::from_str(&text).ok()?;
            Some(journal["images"][index]["state"].as_str()?.to_string())
        });
        if state.as_deref() == Some("started") {
            // Let some of the image reach the device first.
            std::thread::sleep(Duration::from_millis(300));
            child.kill().unwrap();
            child.wait().unwrap();
            return;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "flashline ended before image {index} started"
        );
        assert!(Instant::now() < deadline, "image {index} never started");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn statuses(report: &serde_json::Value) -> Vec<&str> {
    report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect()
}

#[test]
fn killing_flashline_mid_image_resumes_from_that_image() {
    let bench = Bench::new();
    let boot = image(MIB as usize, 0, 0);
    let system = image(6 * MIB as usize, 0, 0);
    let vendor = image(MIB as usize, 1024, 4096);
    let pkg = bench.pack(
        "stock",
        "2.1.0",
        7,
        "zte-demo-phone",
        &[("boot", &boot), ("system", &system), ("vendor", &vendor)],
    );
    let (phone, dir) = bench.phone(phone(false));
    let old_vendor = std::fs::read(dir.join("vendor.img")).unwrap();

    kill_during_image(
        start_flash(&bench, &pkg, &phone.device_address()),
        &bench,
        1,
    );
    // The first run verified boot and died inside system: vendor is untouched.
    assert_prefix(&dir.join("boot.img"), &boot);
    assert_eq!(std::fs::read(dir.join("vendor.img")).unwrap(), old_vendor);
    assert_eq!(journals(&bench).len(), 1, "the journal survives the kill");
    let first_run = phone.commands().len();

    let (out, report) = bench.flash(&pkg, &phone, &[]);
    assert!(out.status.success(), "{report:#}");
    assert_eq!(statuses(&report), ["kept", "written", "written"]);
    assert_eq!(report["incomplete"], serde_json::Value::Null);
    let notes = report["notes"].to_string();
    assert!(notes.contains("resumed a job interrupted"), "{notes}");
    assert!(notes.contains("system is written again"), "{notes}");
    let second_run = &phone.commands()[first_run..];
    assert!(
        !second_run.iter().any(|c| c == "flash:boot"),
        "boot was verified by the first run and is not written again: {second_run:?}"
    );
    for (name, bytes) in [("boot", &boot), ("system", &system), ("vendor", &vendor)] {
        assert_prefix(&dir.join(format!("{name}.img")), bytes);
    }
    assert!(
        journals(&bench).is_empty(),
        "a finished job leaves no journal"
    );
}

#[test]
fn an_ab_phone_keeps_its_slot_until_the_resumed_job_has_verified_every_image() {
    let bench = Bench::new();
    let boot = image(MIB as usize, 0, 0);
    let system = image(6 * MIB as usize, 0, 0);
    let vendor = image(MIB as usize, 0, 0);
    let pkg = bench.pack(
        "stock",
        "2.1.0",
        7,
        "zte-demo-phone",
        &[("boot", &boot), ("system", &system), ("vendor", &vendor)],
    );
    let (phone, dir) = bench.phone(phone(true));
    let slot_a: Vec<Vec<u8>> = ["boot_a", "system_a", "vendor_a"]
        .iter()
        .map(|p| std::fs::read(dir.join(format!("{p}.img"))).unwrap())
        .collect();

    kill_during_image(
        start_flash(&bench, &pkg, &phone.device_address()),
        &bench,
        1,
    );
    assert!(
        !phone.commands().iter().any(|c| c.starts_with("set_active")),
        "no slot switch before every image is verified: {:?}",
        phone.commands()
    );

    let (out, report) = bench.flash(&pkg, &phone, &[]);
    assert!(out.status.success(), "{report:#}");
    assert_eq!(statuses(&report), ["kept", "written", "written"]);
    assert_eq!(report["activated_slot"], "b");
    let commands = phone.commands();
    let last_flash = commands.iter().rposition(|c| c.starts_with("flash:"));
    let switch = commands.iter().position(|c| c == "set_active:b");
    assert!(switch > last_flash, "{commands:?}");
    for (name, bytes) in [("boot", &boot), ("system", &system), ("vendor", &vendor)] {
        assert_prefix(&dir.join(format!("{name}_b.img")), bytes);
    }
    for (name, before) in ["boot_a", "system_a", "vendor_a"].iter().zip(&slot_a) {
        assert_eq!(
            &std::fs::read(dir.join(format!("{name}.img"))).unwrap(),
            before,
            "the running slot is never written"
        );
    }
}

#[test]
fn a_journal_of_another_package_is_not_resumed() {
    let bench = Bench::new();
    let boot = image(MIB as usize, 0, 0);
    let system = image(6 * MIB as usize, 0, 0);
    let first = bench.pack(
        "stock",
        "2.1.0",
        7,
        "zte-demo-phone",
        &[("boot", &boot), ("system", &system)],
    );
    let (phone, dir) = bench.phone(phone(false));
    kill_during_image(
        start_flash(&bench, &first, &phone.device_address()),
        &bench,
        1,
    );

    let boot2 = image(MIB as usize, 8, 0);
    let second = bench.pack(
        "stock",
        "2.2.0",
        7,
        "zte-demo-phone",
        &[("boot", &boot2), ("system", &system)],
    );
    let (out, report) = bench.flash(&second, &phone, &[]);
    assert!(out.status.success(), "{report:#}");
    assert_eq!(statuses(&report), ["written", "written"]);
    assert!(
        report["notes"]
            .to_string()
            .contains("did not finish; this job replaces it"),
        "{report:#}"
    );
    assert_prefix(&dir.join("boot.img"), &boot2);
    assert_prefix(&dir.join("system.img"), &system);
}

/// Two phones with one serial number (placeholder serials are shared by whole production
/// runs): a job interrupted on the first must not let the second inherit the images the
/// first verified, since fastboot cannot read a digest back and only the journal vouches
/// for them. The second phone has another partition table, so its fingerprint differs.
#[test]
fn a_second_phone_with_the_same_serial_gets_every_image_written() {
    let bench = Bench::new();
    let boot = image(MIB as usize, 0, 0);
    let system = image(6 * MIB as usize, 0, 0);
    let vendor = image(MIB as usize, 0, 0);
    let pkg = bench.pack(
        "stock",
        "2.1.0",
        7,
        "zte-demo-phone",
        &[("boot", &boot), ("system", &system), ("vendor", &vendor)],
    );
    let (phone_a, _) = bench.phone(phone(false));
    kill_during_image(
        start_flash(&bench, &pkg, &phone_a.device_address()),
        &bench,
        1,
    );
    assert_eq!(journals(&bench).len(), 1);
    phone_a.stop();

    let mut cfg_b = phone(false);
    cfg_b.partitions[2].1 = 3 * MIB; // same model, same serial, another vendor size
    let dir_b = bench.path("phone-b");
    let phone_b =
        flashline::sim::phone::PhoneSim::start("127.0.0.1:0".parse().unwrap(), &dir_b, cfg_b)
            .unwrap();
    let (out, report) = bench.flash(&pkg, &phone_b, &[]);
    assert!(out.status.success(), "{report:#}");
    assert_eq!(statuses(&report), ["written", "written", "written"]);
    assert!(
        report["notes"]
            .to_string()
            .contains("may be another device"),
        "{report:#}"
    );
    assert!(
        phone_b.commands().iter().any(|c| c == "flash:boot"),
        "boot is written to the second phone: {:?}",
        phone_b.commands()
    );
    for (name, bytes) in [("boot", &boot), ("system", &system), ("vendor", &vendor)] {
        assert_prefix(&dir_b.join(format!("{name}.img")), bytes);
    }
}

/// A journal last written longer ago than the resume window is not resumed, even on the
/// very same phone.
#[test]
fn a_journal_older_than_the_window_is_ignored() {
    let bench = Bench::new();
    let boot = image(MIB as usize, 0, 0);
    let system = image(6 * MIB as usize, 0, 0);
    let pkg = bench.pack(
        "stock",
        "2.1.0",
        7,
        "zte-demo-phone",
        &[("boot", &boot), ("system", &system)],
    );
    let (phone, dir) = bench.phone(phone(false));
    kill_during_image(
        start_flash(&bench, &pkg, &phone.device_address()),
        &bench,
        1,
    );
    let path = journals(&bench).remove(0);
    let mut journal: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(journal["images"][0]["state"], "verified");
    let stale = std::time::SystemTime::now()
        - flashline::engine::journal::RESUME_WINDOW
        - Duration::from_secs(60);
    journal["updated_at"] = humantime::format_rfc3339_millis(stale).to_string().into();
    std::fs::write(&path, journal.to_string()).unwrap();

    let first_run = phone.commands().len();
    let (out, report) = bench.flash(&pkg, &phone, &[]);
    assert!(out.status.success(), "{report:#}");
    assert_eq!(statuses(&report), ["written", "written"]);
    assert!(
        report["notes"].to_string().contains("outside the 24 h"),
        "{report:#}"
    );
    assert!(phone.commands()[first_run..]
        .iter()
        .any(|c| c == "flash:boot"));
    assert_prefix(&dir.join("boot.img"), &boot);
    assert_prefix(&dir.join("system.img"), &system);
}
