//! The GUI against the virtual bench, driven through egui_kittest by label and role: the
//! real app state, the real bridge and engine, virtual devices speaking the real protocols.
//!
//! The tests run one at a time: serial virtual devices announce themselves in one bench
//! folder per process, and two apps probing each other's devices would disturb them.
#![cfg(feature = "gui")]
#![cfg(unix)]

use std::path::Path;
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
        let dir = tempfile::tempdir().unwrap();
        let bench = DemoBench::start(
            &dir.path().join("bench"),
            &flashline::device::bench::default_dir(),
            spec,
        )
        .unwrap();
        let mut config = AppConfig::demo(&bench);
        config.bridge.scan_every = Duration::from_millis(100);
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
    // Cancel the first phone at once, while its package is still being verified.
    b.harness.get_by_label("Start flashing").click();
    b.harness.run_steps(4);
    b.harness.get_all_by_label("Cancel").next().unwrap().click();
    b.wait("both jobs to end", |s| s.devices.iter().all(|d| !d.busy()));
    assert_eq!(b.row("FLSIM0001").badge(), Badge::Cancelled);
    assert_eq!(b.row("FLSIM0002").badge(), Badge::Done);
    b.harness
        .get_by_label_contains("cancelled: cancelled by the user");
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
