//! The GUI against the virtual bench, driven through egui_kittest by label and role: the
//! real app state, the real bridge and engine, virtual devices speaking the real protocols.
//!
//! The tests run one at a time: serial virtual devices announce themselves in one bench
//! folder per process, and two apps probing each other's devices would disturb them.
#![cfg(feature = "gui")]
#![cfg(unix)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use eframe::egui::accesskit::Role;
use egui_kittest::kittest::{NodeT, Queryable};
use egui_kittest::Harness;
use flashline::device::Mode;
use flashline::engine::Outcome;
use flashline::gui::state::{AppState, Badge, CheckState, PackageState};
use flashline::gui::{AppConfig, BenchSpec, DemoBench, FlashlineApp};

const WAIT: Duration = Duration::from_secs(90);

/// One test at a time, all sharing one flashline home (and so one bench folder).
fn exclusive() -> MutexGuard<'static, ()> {
    static HOME: OnceLock<tempfile::TempDir> = OnceLock::new();
    static LOCK: Mutex<()> = Mutex::new(());
    let guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    HOME.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var("FLASHLINE_HOME", dir.path());
        dir
    });
    guard
}

struct Bench {
    bench: Option<DemoBench>,
    harness: Harness<'static, FlashlineApp>,
    _dir: tempfile::TempDir,
}

impl Bench {
    fn start(spec: BenchSpec) -> Self {
        Self::start_with(spec, Vec::new())
    }

    /// The bench, with `extra` packages among the one-click ones (and so in the catalog).
    fn start_with(spec: BenchSpec, extra: Vec<PathBuf>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bench = DemoBench::start(
            &dir.path().join("bench"),
            &flashline::device::bench::default_dir(),
            spec,
        )
        .unwrap();
        Self::around(bench, dir, extra)
    }

    /// The bench with the ZXIC hotspot only.
    fn start_zxic() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let spec = BenchSpec {
            phones: 0,
            qualcomm: false,
        };
        let bench_dir = flashline::device::bench::default_dir();
        let mut bench = DemoBench::start(&dir.path().join("bench"), &bench_dir, spec).unwrap();
        bench.start_zxic(&bench_dir).unwrap();
        Self::around(bench, dir, Vec::new())
    }

    fn around(bench: DemoBench, dir: tempfile::TempDir, extra: Vec<PathBuf>) -> Self {
        let mut config = AppConfig::demo(&bench);
        config.bridge.scan_every = Duration::from_millis(100);
        config.quick_packages.extend(extra);
        let harness = Harness::builder()
            .with_size([1400.0, 1400.0])
            .build_eframe(move |cc| FlashlineApp::new(cc, config).unwrap());
        Bench {
            bench: Some(bench),
            harness,
            _dir: dir,
        }
    }

    fn state(&self) -> &AppState {
        self.harness.state().state()
    }

    fn packages(&self) -> &flashline::gui::bench::DemoPackages {
        &self.bench.as_ref().unwrap().packages
    }

    /// Steps the UI until `done` holds, as a person would wait watching the window.
    fn wait(&mut self, what: &str, done: impl Fn(&AppState) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done(self.state()) {
            if Instant::now() > deadline {
                let log: Vec<String> = self.state().log.iter().map(|l| l.text.clone()).collect();
                panic!(
                    "timed out waiting for {what}; log:\n{}\npackage: {:?}\ndevices: {:#?}",
                    log.join("\n"),
                    self.state().package,
                    self.state().devices
                );
            }
            self.harness.step();
            std::thread::sleep(Duration::from_millis(10));
        }
        // Let what it shows settle (collapsing headers animate open).
        for _ in 0..10 {
            self.harness.step();
        }
    }

    fn tick(&mut self, device: &str) {
        self.harness
            .get_by_role_and_label(Role::CheckBox, device)
            .click();
        self.harness.step();
        self.harness.step();
    }

    fn click(&mut self, label: &str) {
        self.harness.get_by_label(label).click();
        self.harness.step();
        self.harness.step();
    }

    fn open(&mut self, package: &Path) {
        let name = package.file_name().unwrap().to_str().unwrap().to_string();
        self.harness
            .get_by_role_and_label(Role::Button, &name)
            .click();
        self.wait("the package check", |s| {
            !matches!(s.package, PackageState::Verifying(_) | PackageState::None)
        });
    }

    fn row(&self, serial: &str) -> &flashline::gui::state::DeviceRow {
        self.state().device(serial).expect("the device is listed")
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        if let Some(bench) = self.bench.take() {
            bench.stop();
        }
    }
}

fn identified(serial: &'static str) -> impl Fn(&AppState) -> bool {
    move |s| s.device(serial).is_some_and(|d| d.firmware.is_some())
}

#[test]
fn open_a_package_see_the_preflight_flash_and_read_the_report() {
    let _one = exclusive();
    let mut b = Bench::start(BenchSpec {
        phones: 1,
        qualcomm: false,
    });
    b.wait("the phone", identified("FLSIM0001"));
    assert_eq!(b.row("FLSIM0001").firmware.as_deref(), Some("2.0.0"));
    b.harness.get_by_label("Battery");
    b.harness.get_by_label("Lock");
    b.harness.get_by_label("unlocked");

    let pkg = b.packages().phone.clone();
    b.open(&pkg);
    b.harness.get_by_label_contains("Verified: signed by");
    b.harness.get_by_label("demo-phone-stock");
    b.harness.get_by_label("Flash").hover();

    b.tick("zte-demo-phone FLSIM0001");
    b.wait("the preflight", |s| {
        matches!(
            s.device("FLSIM0001").map(|d| &d.check),
            Some(CheckState::Done(_))
        )
    });
    for item in [
        "Pass: Product match",
        "Pass: Security version",
        "Pass: Version",
        "Pass: Battery",
        "Pass: Bootloader lock",
        "Pass: Backup plan",
    ] {
        b.harness.get_by_label(item);
    }
    b.harness
        .get_by_label("device: 76 % · package needs: ≥ 30 %");

    b.click("Flash 1 device");
    b.harness.get_by_label("Write this firmware?");
    b.harness.get_by_label_contains("system to system_b");
    b.click("Start flashing");
    b.wait("some progress", |s| {
        s.device("FLSIM0001")
            .and_then(|d| d.job.as_ref())
            .is_some_and(|j| j.done() > 0 || j.finished.is_some())
    });
    b.wait("the job to end", |s| {
        s.device("FLSIM0001")
            .is_some_and(|d| d.badge() != Badge::Flashing)
    });
    let job = b.row("FLSIM0001").job.clone().unwrap();
    let finished = job.finished.clone().unwrap();
    assert_eq!(finished.outcome, Outcome::Success, "{:?}", finished.error);
    assert_eq!(job.fraction(), 1.0);
    b.harness.get_by_label("done");
    b.wait("the report", |s| !s.reports.is_empty());
    assert_eq!(
        b.row("FLSIM0001").firmware.as_deref(),
        Some("2.1.0"),
        "the list shows the firmware read back after the reboot"
    );
    b.click("Reports (1)");
    b.harness.get_by_label("Outcome");
    b.harness.get_by_label("success");
    b.harness.get_by_label("2.1.0 (security 8)");
}

#[test]
fn a_refused_package_shows_why_and_keeps_flash_disabled() {
    let _one = exclusive();
    let mut b = Bench::start(BenchSpec {
        phones: 1,
        qualcomm: false,
    });
    b.wait("the phone", identified("FLSIM0001"));
    let pkg = b.packages().phone_tampered.clone();
    b.open(&pkg);
    let reason = match &b.state().package {
        PackageState::Refused { reason, .. } => reason.clone(),
        other => panic!("not refused: {other:?}"),
    };
    b.harness.get_by_label(&format!("Refused: {reason}"));
    b.tick("zte-demo-phone FLSIM0001");
    for _ in 0..10 {
        b.harness.step();
    }
    assert!(matches!(b.row("FLSIM0001").check, CheckState::NotRun));
    assert!(b
        .harness
        .get_by_label("Flash")
        .accesskit_node()
        .is_disabled());
    b.harness
        .get_by_label(&format!("The package is refused: {reason}"));
}

#[test]
fn a_failing_preflight_says_what_is_wrong_and_keeps_flash_disabled() {
    let _one = exclusive();
    let mut b = Bench::start(BenchSpec {
        phones: 1,
        qualcomm: false,
    });
    b.wait("the phone", identified("FLSIM0001"));
    let pkg = b.packages().phone_old.clone();
    b.open(&pkg);
    b.tick("zte-demo-phone FLSIM0001");
    b.wait("the preflight", |s| {
        matches!(
            s.device("FLSIM0001").map(|d| &d.check),
            Some(CheckState::Done(_))
        )
    });
    b.harness.get_by_label("Refused: Security version");
    b.harness.get_by_label("Refused: Version");
    assert!(b
        .harness
        .query_all_by_label_contains("pass --allow-older to install an older version on purpose")
        .next()
        .is_some());
    assert_eq!(b.row("FLSIM0001").badge(), Badge::Refused);
    assert!(b
        .harness
        .get_by_label("Flash")
        .accesskit_node()
        .is_disabled());
    b.harness
        .get_by_label_contains("Preflight refused zte-demo-phone FLSIM0001");
}

#[test]
fn a_cancel_stops_one_device_and_the_other_finishes() {
    let _one = exclusive();
    let mut b = Bench::start(BenchSpec {
        phones: 2,
        qualcomm: false,
    });
    b.wait("both phones", |s| {
        identified("FLSIM0001")(s) && identified("FLSIM0002")(s)
    });
    let pkg = b.packages().phone.clone();
    b.open(&pkg);
    b.tick("zte-demo-phone FLSIM0001");
    b.tick("zte-demo-phone FLSIM0002");
    b.wait("both preflights", |s| {
        s.devices.iter().all(|d| d.badge() == Badge::Ready)
    });
    b.click("Flash 2 devices");
    // Cancel the first phone at once.
    b.harness.get_by_label("Start flashing").click();
    b.harness.run_steps(4);
    b.harness.get_all_by_label("Cancel").next().unwrap().click();
    b.wait("both jobs to end", |s| s.devices.iter().all(|d| !d.busy()));
    assert_eq!(b.row("FLSIM0001").badge(), Badge::Cancelled);
    assert_eq!(b.row("FLSIM0002").badge(), Badge::Done);
    // Said in the device's row and in the log. (A package opened in the window is checked
    // then, so its jobs start writing at once: the cancel may land after the writes, before
    // the slot switch.)
    assert!(b
        .harness
        .query_all_by_label_contains("cancelled: cancelled by the user")
        .next()
        .is_some());
}

#[test]
fn a_hotspot_is_switched_and_flashed_and_a_brick_recovered_through_the_wizard() {
    let _one = exclusive();
    let mut b = Bench::start(BenchSpec {
        phones: 0,
        qualcomm: true,
    });
    b.wait("the hotspot, the dongle and the brick", |s| {
        identified("FLHOTSPOT01")(s)
            && identified("FLDONGLE001")(s)
            && s.device("FLBRICK0001").is_some()
    });
    assert_eq!(b.row("FLBRICK0001").badge(), Badge::Bricked);
    let pkg = b.packages().modem.clone().unwrap();
    b.open(&pkg);

    // The hotspot: AT preflight, then switched into EDL under the same row, and flashed.
    b.tick("MU300 FLHOTSPOT01");
    b.wait("the hotspot's preflight", |s| {
        s.device("FLHOTSPOT01")
            .is_some_and(|d| d.badge() == Badge::Ready)
    });
    b.harness
        .get_by_label("device: 80 % · package needs: ≥ 25 %");
    b.harness.get_by_label_contains("IMEI, NV and calibration");
    b.click("Flash 1 device");
    b.click("Start flashing");
    b.wait("the hotspot's job", |s| {
        s.device("FLHOTSPOT01")
            .is_some_and(|d| d.badge() != Badge::Flashing)
    });
    let row = b.row("FLHOTSPOT01");
    let finished = row.job.as_ref().unwrap().finished.clone().unwrap();
    assert_eq!(finished.outcome, Outcome::Success, "{:?}", finished.error);
    assert_eq!(
        row.mode,
        Mode::Edl,
        "the same row followed it into download mode"
    );
    assert_eq!(row.job.as_ref().unwrap().backups.len(), 5);
    b.tick("MU300 FLHOTSPOT01");

    // The brick: the wizard guides it into EDL, finds it and recovers it.
    b.click("Recovery wizard…");
    b.click("ZTE MF833V LTE USB modem — recovered in EDL mode");
    b.harness
        .get_by_label_contains("Hold the reset button with a paper clip");
    b.click("Done: wait for the device");
    b.wait("the wizard to find a device in EDL", |s| {
        s.wizard_candidate().is_some()
    });
    // The flashed hotspot is in EDL too; the wizard offers the device not yet flashed.
    let candidate = b.state().wizard_candidate().unwrap().key.clone();
    assert_eq!(candidate, "FLBRICK0001");
    b.click("Recover this device");
    b.wait("the preflight", |s| {
        s.device(&candidate)
            .is_some_and(|d| matches!(d.check, CheckState::Done(_)))
    });
    // The brick cannot say what it is; its chip's hardware id names it (quirks file).
    b.harness.get_by_label("Pass: Product match");
    b.click("Recover now");
    b.click("Start flashing");
    b.wait("the recovery", |s| {
        s.device(&candidate)
            .is_some_and(|d| d.badge() != Badge::Flashing)
    });
    let finished = b
        .row(&candidate)
        .job
        .as_ref()
        .unwrap()
        .finished
        .clone()
        .unwrap();
    assert_eq!(finished.outcome, Outcome::Success, "{:?}", finished.error);
    b.harness
        .get_by_label("Recovered. The device restarts into its new firmware.");
}

#[test]
fn recover_offers_a_flat_build_that_fits_the_brick_not_the_open_phone_package() {
    let _one = exclusive();
    let mut b = Bench::start(BenchSpec {
        phones: 1,
        qualcomm: true,
    });
    b.wait("the phone and the brick", |s| {
        identified("FLSIM0001")(s) && s.device("FLBRICK0001").is_some()
    });
    let phone = b.packages().phone.clone();
    b.open(&phone);

    // Recover from the brick's row, with the phone package open.
    b.harness
        .get_by_role_and_label(Role::Button, "Recover…")
        .click();
    b.wait("the brick's preflight with the phone package", |s| {
        matches!(
            s.device("FLBRICK0001").map(|d| &d.check),
            Some(CheckState::Done(_))
        ) && !s.catalog.is_empty()
    });
    b.harness
        .get_by_label_contains("The open package, demo-phone-stock, is a fastboot package; this device needs a Qualcomm flat build.");
    // The engine says it too, in the checklist, instead of "no partition boot".
    b.harness.get_by_label("Refused: Package kind");
    assert!(b
        .harness
        .query_all_by_label_contains(
            "this is a fastboot package; this device needs a Qualcomm flat build (it is in emergency download mode)",
        )
        .next()
        .is_some());
    assert!(b
        .harness
        .query_all_by_label_contains("reports no partition")
        .next()
        .is_none());
    // Only the flat build is offered: no phone package, whatever else the folder holds.
    assert!(b
        .harness
        .query_by_label("Use demo-phone-stock 2.1.0")
        .is_none());
    assert!(b
        .harness
        .query_by_label("Use demo-phone-stock 1.9.0")
        .is_none());
    b.harness
        .get_by_role_and_label(Role::Button, "Use demo-zte-modem-stock 1.0.12")
        .click();
    b.wait("the flat build's preflight", |s| {
        matches!(&s.package, PackageState::Ready(card) if card.qualcomm)
            && s.device("FLBRICK0001")
                .is_some_and(|d| d.badge() == Badge::Ready)
    });
    b.harness
        .get_by_label_contains("Package: demo-zte-modem-stock 1.0.12");
    b.click("Recover now");
    b.wait("the confirmation", |s| s.confirm.is_some());
    b.click("Start flashing");
    b.wait("the recovery", |s| {
        s.device("FLBRICK0001")
            .is_some_and(|d| d.badge() != Badge::Flashing)
    });
    let finished = b.row("FLBRICK0001").job.clone().unwrap().finished.unwrap();
    assert_eq!(finished.outcome, Outcome::Success, "{:?}", finished.error);
}

/// A flat build for `product` whose programmer is signed for `hwid` (`[qualcomm] hwid`).
fn signed_flat_build(
    bench: &common::bench::Bench,
    name: &str,
    product: &str,
    hwid: &str,
) -> PathBuf {
    let src = bench.path(&format!("src-{name}"));
    common::edl::write_flat_build(&src, name, "3.0.0", product, "", "");
    let manifest = src.join("manifest.toml");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    assert!(
        text.trim_end().ends_with("[\"patch0.xml\"]"),
        "[qualcomm] is the last table"
    );
    text.push_str(&format!("hwid = \"{hwid}\"\n"));
    std::fs::write(&manifest, text).unwrap();
    bench.pack_manifest(&src, &format!("{name}-3.0.0"))
}

#[test]
fn recover_offers_the_flat_builds_signed_for_the_bricks_chip() {
    let _one = exclusive();
    let packer = common::bench::Bench::new();
    // Signed for the brick's chip (the virtual one), for a board name no model has.
    let by_chip = signed_flat_build(&packer, "oem-board", "OEM-BOARD-7", "0x0f1a5e0000000000");
    // Names the brick's model but is signed for another chip: the job would refuse it.
    let other_chip = signed_flat_build(&packer, "other-chip", "MF833V", "0x000960e10029003e");
    let mut b = Bench::start_with(
        BenchSpec {
            phones: 1,
            qualcomm: true,
        },
        vec![by_chip, other_chip],
    );
    b.wait("the phone and the brick", |s| {
        identified("FLSIM0001")(s) && s.device("FLBRICK0001").is_some()
    });
    let phone = b.packages().phone.clone();
    b.open(&phone);
    b.harness
        .get_by_role_and_label(Role::Button, "Recover…")
        .click();
    b.wait("the brick's chip and the catalog", |s| {
        s.device("FLBRICK0001")
            .is_some_and(|d| d.chip.as_ref().is_some_and(|c| c.hwid.is_some()))
            && s.catalog.len() >= 3
    });
    assert_eq!(
        b.row("FLBRICK0001")
            .chip
            .as_ref()
            .unwrap()
            .hwid
            .unwrap()
            .to_string(),
        "0x0f1a5e0000000000"
    );
    // The preflight named it by its chip too (quirks file), though the package was refused.
    assert_eq!(b.row("FLBRICK0001").model.as_deref(), Some("MF833V"));
    b.harness.get_by_label("Packages made for this model:");
    // By its chip, though it names another board; by its model, the demo build.
    b.harness
        .get_by_role_and_label(Role::Button, "Use oem-board 3.0.0");
    b.harness
        .get_by_role_and_label(Role::Button, "Use demo-zte-modem-stock 1.0.12");
    assert!(b.harness.query_by_label("Use other-chip 3.0.0").is_none());
}

#[test]
fn a_package_replaced_after_its_card_was_drawn_is_refused_and_nothing_is_written() {
    let _one = exclusive();
    let mut b = Bench::start(BenchSpec {
        phones: 1,
        qualcomm: false,
    });
    b.wait("the phone", identified("FLSIM0001"));
    let pkg = b.packages().phone.clone();
    b.open(&pkg);
    b.tick("zte-demo-phone FLSIM0001");
    b.wait("the preflight", |s| {
        s.device("FLSIM0001")
            .is_some_and(|d| d.badge() == Badge::Ready)
    });
    let phone_dir = b.bench.as_ref().unwrap().work_dir().join("virtual-phone-1");
    let before = partition_hashes(&phone_dir);

    // Another signed package is put in the file's place, as a copy or a download would.
    let other = b.packages().phone_old.clone();
    let incoming = pkg.with_extension("incoming");
    std::fs::copy(&other, &incoming).unwrap();
    std::fs::rename(&incoming, &pkg).unwrap();

    b.click("Flash 1 device");
    b.click("Start flashing");
    b.wait("the job to end", |s| {
        s.device("FLSIM0001")
            .is_some_and(|d| d.job.as_ref().is_some_and(|j| j.finished.is_some()))
    });
    let finished = b.row("FLSIM0001").job.clone().unwrap().finished.unwrap();
    assert_eq!(finished.outcome, Outcome::PackageRejected);
    let error = finished.error.unwrap();
    assert!(
        error.contains("changed since it was verified and shown; nothing was written"),
        "{error}"
    );
    assert!(b
        .harness
        .query_all_by_label_contains("changed since it was verified and shown")
        .next()
        .is_some());
    assert_eq!(
        partition_hashes(&phone_dir),
        before,
        "the phone was written"
    );
}

#[test]
fn a_stalled_device_does_not_hide_the_others() {
    use flashline::sim::phone::{PhoneConfig, PhoneSim};
    let _one = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let phone = |name: &str, faults: &[&str]| {
        let cfg = PhoneConfig {
            serial: name.into(),
            faults: faults
                .iter()
                .map(|f| f.parse().unwrap())
                .collect::<Vec<_>>()
                .into(),
            ..PhoneConfig::default()
        };
        PhoneSim::start("127.0.0.1:0".parse().unwrap(), &dir.path().join(name), cfg).unwrap()
    };
    // The stalled one is first in line, as on a bench where it was plugged in first.
    let stalled = phone("FLSTALL001", &["stall@getvar:all#1"]);
    let healthy = phone("FLHEALTHY1", &[]);
    let home = dir.path().join("home");
    let mut config = common::gui::app_config(&home, home.join("trust"));
    config.bridge.watch = vec![stalled.device_address(), healthy.device_address()];
    config.bridge.watch_virtual = true;
    config.bridge.demo_trust = true;
    let mut harness = Harness::builder()
        .with_size([1400.0, 900.0])
        .build_eframe(move |cc| FlashlineApp::new(cc, config).unwrap());
    let started = Instant::now();
    let state = |h: &Harness<'static, FlashlineApp>| {
        let s = h.state().state();
        (identified("FLHEALTHY1")(s), identified("FLSTALL001")(s))
    };
    while !state(&harness).0 {
        assert!(
            started.elapsed() < WAIT,
            "the healthy phone was never listed"
        );
        harness.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    let healthy_after = started.elapsed();
    let (_, stalled_too) = state(&harness);
    // The stalled phone is given up on after 2 × 5 s of silence at least; the healthy one
    // must not wait for that.
    assert!(
        healthy_after < Duration::from_secs(4) && !stalled_too,
        "the healthy phone waited for the stalled one ({healthy_after:?})"
    );
    harness.get_by_role_and_label(Role::CheckBox, "zte-demo-phone FLHEALTHY1");
    // The stall fires once: the stalled phone is read on a later try.
    while !state(&harness).1 {
        assert!(
            started.elapsed() < WAIT,
            "the stalled phone was never read again"
        );
        harness.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(harness);
    stalled.stop();
    healthy.stop();
}

/// The SHA-256 of every partition file of a virtual phone.
fn partition_hashes(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    use sha2::{Digest, Sha256};
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "img"))
        .map(|p| {
            let hash = Sha256::digest(std::fs::read(&p).unwrap()).to_vec();
            (p, hash)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no partitions in {}", dir.display());
    out
}

/// "Device not seen?" opens the connection doctor, which runs the same checks as
/// `flashline doctor` on the bridge and lists each finding with its fix and a Copy button.
/// The system it examines is a fake one: a device in EDL on the bus and no udev rules.
#[test]
fn the_connection_doctor_lists_findings_with_their_fixes() {
    let _one = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("system");
    let device = root.join("sys/bus/usb/devices/1-2");
    std::fs::create_dir_all(&device).unwrap();
    for (file, value) in [
        ("idVendor", "05c6"),
        ("idProduct", "9008"),
        ("busnum", "1"),
        ("devnum", "5"),
        ("dev", "189:4"),
    ] {
        std::fs::write(device.join(file), format!("{value}\n")).unwrap();
    }
    let home = dir.path().join("home");
    let mut config = AppConfig::desktop();
    config.persist = false;
    config.bridge.history_path = home.join("history.json");
    config.bridge.backups_dir = home.join("backups");
    config.bridge.system = flashline::doctor::SystemView::under(&root, None);
    config.settings = flashline::gui::state::Settings {
        trust_dir: home.join("trust"),
        reports_dir: home.join("reports"),
        last_package_dir: None,
        disable_super_optimization: false,
    };
    let mut harness = Harness::builder()
        .with_size([1400.0, 900.0])
        .build_eframe(move |cc| FlashlineApp::new(cc, config).unwrap());
    harness.run_ok();
    harness
        .get_by_role_and_label(Role::Button, "Device not seen?")
        .click();
    let started = Instant::now();
    while !matches!(
        harness.state().state().doctor.state,
        flashline::gui::doctor::Diagnosis::Done(_)
    ) {
        assert!(started.elapsed() < WAIT, "the doctor never answered");
        harness.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    harness.run_ok();
    harness.get_by_label("Connection doctor");
    harness.get_by_label("Problem");
    harness.get_by_label_contains("udev rules are not installed");
    harness.get_by_label_contains("flashline udev-rules | sudo tee");
    assert!(harness.query_all_by_label("Copy").count() >= 1);
    if let Ok(dir) = std::env::var("FLASHLINE_SCREENSHOT_DIR") {
        let image = harness.render().expect("render the window");
        image
            .save(std::path::Path::new(&dir).join("screenshot-doctor.png"))
            .unwrap();
    }
}

#[test]
fn a_zxic_hotspot_in_its_boot_rom_is_flashed_from_the_gui() {
    let _one = exclusive();
    let mut b = Bench::start_zxic();
    b.wait("the ZXIC hotspot", |s| s.device("FLZXIC00001").is_some());
    assert_eq!(b.row("FLZXIC00001").mode, Mode::Zxic);
    assert_eq!(b.row("FLZXIC00001").badge(), Badge::Bricked);
    let pkg = b.packages().zxic.clone().unwrap();
    b.open(&pkg);
    b.tick("ZX297520V3 FLZXIC00001");
    b.wait("the hotspot's preflight", |s| {
        s.device("FLZXIC00001")
            .is_some_and(|d| d.badge() == Badge::Ready)
    });
    b.click("Flash 1 device");
    b.click("Start flashing");
    b.wait("the hotspot's job", |s| {
        s.device("FLZXIC00001")
            .is_some_and(|d| d.badge() != Badge::Flashing)
    });
    let row = b.row("FLZXIC00001");
    let finished = row.job.as_ref().unwrap().finished.clone().unwrap();
    assert_eq!(finished.outcome, Outcome::Success, "{:?}", finished.error);
    assert_eq!(
        row.job.as_ref().unwrap().backups.len(),
        2,
        "nvrofs and nvrw"
    );
}

#[cfg(unix)]
#[test]
fn the_unisoc_hotspot_is_flashed_from_the_gui_and_its_nv_kept() {
    let _one = exclusive();
    let mut b = Bench::start(BenchSpec {
        phones: 0,
        qualcomm: true,
    });
    b.wait("the Unisoc hotspot", |s| s.device("FLUNISOC001").is_some());
    assert_eq!(b.row("FLUNISOC001").mode, Mode::Unisoc);
    let pkg = b.packages().unisoc.clone().unwrap();
    b.open(&pkg);
    let label = b.row("FLUNISOC001").name();
    b.tick(&label);
    b.wait("the Unisoc hotspot's preflight", |s| {
        s.device("FLUNISOC001")
            .is_some_and(|d| d.badge() == Badge::Ready)
    });
    b.click("Flash 1 device");
    b.click("Start flashing");
    b.wait("the Unisoc job", |s| {
        s.device("FLUNISOC001")
            .is_some_and(|d| d.badge() != Badge::Flashing)
    });
    let row = b.row("FLUNISOC001");
    let finished = row.job.as_ref().unwrap().finished.clone().unwrap();
    assert_eq!(finished.outcome, Outcome::Success, "{:?}", finished.error);
    // l_fixnv1, l_fixnv2, prodnv and miscdata were backed up.
    assert_eq!(row.job.as_ref().unwrap().backups.len(), 4);
    let work = b.bench.as_ref().unwrap().work_dir().to_path_buf();
    let boot = std::fs::read(work.join("virtual-unisoc/boot.img")).unwrap();
    let image = std::fs::read(work.join("package-unisoc/boot.img")).unwrap();
    assert_eq!(boot[..image.len()], image[..]);
}
