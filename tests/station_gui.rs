//! The GUI's Station view against a virtual bench that fills up over time, driven through
//! egui_kittest by label and role: the real app, bridge, station runner and engine.
//! It also renders `docs/screenshot-station.png`.
#![cfg(feature = "gui")]
#![cfg(unix)]

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::bench::{assert_prefix, Bench};
use eframe::egui::accesskit::Role;
use egui_kittest::kittest::{NodeT, Queryable};
use egui_kittest::Harness;
use flashline::gui::state::{AppState, PackageState};
use flashline::gui::{AppConfig, FlashlineApp};
use flashline::sim::bench::{Arrival, ArrivingBench, VirtualDevice};
use flashline::sim::phone::PhoneConfig;
use flashline::sim::FaultPlan;
use flashline::station::SlotStatus;

const WAIT: Duration = Duration::from_secs(180);

fn boot_image() -> Vec<u8> {
    let mut image = b"FLASHLINE-VERSION=2.1.0\nFLASHLINE-SECURITY=7\n".to_vec();
    image.extend(common::edl::data(200 * 1024, 5));
    image
}

fn phone(ms: u64, name: &str, faults: &[&str]) -> Arrival {
    Arrival {
        name: name.into(),
        after: Duration::from_millis(ms),
        device: VirtualDevice::Phone(PhoneConfig {
            serial: name.to_uppercase(),
            partitions: vec![("boot".into(), 2 * 1024 * 1024)],
            // The canary writes slowly, so the others are seen waiting for it.
            write_rate: (name == "canary").then_some(30_000),
            faults: FaultPlan {
                faults: faults.iter().map(|f| f.parse().unwrap()).collect(),
            },
            ..PhoneConfig::default()
        }),
    }
}

struct Gui {
    harness: Harness<'static, FlashlineApp>,
    home: PathBuf,
}

impl Gui {
    fn state(&self) -> &AppState {
        self.harness.state().state()
    }

    fn wait(&mut self, what: &str, done: impl Fn(&AppState) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done(self.state()) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; board: {:#?}",
                self.state().station.board
            );
            self.harness.step();
            std::thread::sleep(Duration::from_millis(20));
        }
        for _ in 0..5 {
            self.harness.step();
        }
    }

    fn click(&mut self, role: Role, label: &str) {
        self.harness.get_by_role_and_label(role, label).click();
        self.harness.step();
        self.harness.step();
    }

    fn type_into(&mut self, label: &str, text: &str) {
        let field = self.harness.get_by_role_and_label(Role::TextInput, label);
        field.focus();
        self.harness.step();
        self.harness
            .get_by_role_and_label(Role::TextInput, label)
            .type_text(text);
        self.harness.step();
        self.harness.step();
    }
}

#[test]
fn the_station_view_flashes_arriving_phones_halts_on_a_spike_and_resumes_by_label_and_role() {
    let home = tempfile::tempdir().unwrap();
    std::env::set_var("FLASHLINE_HOME", home.path());
    let bench = Bench::new();
    let package = bench.pack(
        "phone-stock",
        "2.1.0",
        7,
        "zte-demo-phone",
        &[("boot", &boot_image())],
    );
    let station_home = bench.path("station-home");
    let config = AppConfig {
        quick_packages: vec![package.clone()],
        ..common::gui::app_config(&station_home, bench.path("keys"))
    };
    let harness = Harness::builder()
        .with_size([1280.0, 800.0])
        .build_eframe(move |cc| FlashlineApp::new(cc, config).unwrap());
    let mut gui = Gui {
        harness,
        home: station_home,
    };
    gui.click(Role::Button, "phone-stock-2.1.0.flpkg");
    gui.wait("the package check", |s| {
        matches!(s.package, PackageState::Ready(_))
    });
    gui.click(Role::Button, "Station");
    gui.harness
        .get_by_label("Start the station, then plug devices in.");
    gui.click(Role::Button, "Start station");
    gui.wait("the station", |s| s.station.running);

    let devices_dir = bench.path("devices");
    let bad = ["fail@flash:boot#1"];
    let devices = ArrivingBench::start(
        &devices_dir,
        &flashline::device::bench::default_dir(),
        vec![
            phone(0, "canary", &[]),
            phone(1_500, "ok1", &[]),
            phone(1_600, "bad1", &bad),
            phone(1_700, "bad2", &bad),
            phone(9_000, "late", &[]),
        ],
    );
    gui.wait("a phone waiting for the canary", |s| {
        s.station
            .board
            .slots
            .values()
            .any(|slot| slot.message.as_deref() == Some("waiting for canaries"))
    });
    gui.harness.get_by_label_contains("Waiting for canaries");
    assert!(
        gui.harness
            .query_all_by_label("waiting for canaries")
            .count()
            >= 1
    );
    gui.wait("the halt", |s| s.station.board.halted.is_some());
    gui.wait("the late phone waiting", |s| {
        s.station.board.slots.values().any(|slot| {
            slot.serial.as_deref() == Some("LATE") && slot.status == SlotStatus::Waiting
        })
    });
    gui.wait("every running job finished", |s| {
        !s.station
            .board
            .slots
            .values()
            .any(|slot| slot.status.is_busy())
    });
    gui.harness
        .get_by_label("Batch halted: no new flash starts");
    gui.harness.get_by_label_contains("of the last");
    gui.harness.get_by_label_contains("Report: ");
    assert!(!gui
        .harness
        .query_all_by_label("Failed")
        .collect::<Vec<_>>()
        .is_empty());
    assert!(gui.harness.query_all_by_label("batch halted").count() >= 1);

    // Name a slot: the label is shown and kept in the station settings.
    let slot = gui
        .state()
        .station
        .board
        .slots
        .values()
        .find(|s| s.serial.as_deref() == Some("LATE"))
        .unwrap()
        .key
        .clone();
    gui.click(Role::Button, &format!("Rename {slot}"));
    gui.type_into("Label", "left hub, port 3");
    gui.click(Role::Button, "Save label");
    gui.harness.get_by_label("left hub, port 3");
    let saved = flashline::station::settings::Settings::load(&gui.home);
    assert_eq!(
        saved.labels.get(&slot).map(String::as_str),
        Some("left hub, port 3")
    );

    for _ in 0..30 {
        gui.harness.step();
    }
    let shot = gui.harness.render();
    match shot {
        Ok(image) => {
            let path =
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/screenshot-station.png");
            image.save(&path).unwrap();
        }
        Err(e) => eprintln!("no renderer here, the screenshot was not taken: {e}"),
    }

    // Resume: who and why are required.
    gui.click(Role::Button, "Resume…");
    gui.harness.get_by_label("Resume the batch?");
    assert!(gui
        .harness
        .get_by_role_and_label(Role::Button, "Resume batch")
        .accesskit_node()
        .is_disabled());
    gui.type_into("Who", "ana");
    gui.type_into("Why", "bad cable batch replaced");
    gui.click(Role::Button, "Resume batch");
    gui.wait("the late phone flashed after the resume", |s| {
        s.station.board.halted.is_none()
            && s.station.board.slots.values().any(|slot| {
                slot.serial.as_deref() == Some("LATE") && slot.status == SlotStatus::Done
            })
    });
    assert_prefix(&devices_dir.join("late").join("boot.img"), &boot_image());
    let dir = gui.state().station.board.dir.clone().unwrap();
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("batch.json")).unwrap()).unwrap();
    assert_eq!(report["resumes"][0]["by"], "ana");
    assert_eq!(report["resumes"][0]["reason"], "bad cable batch replaced");
    gui.click(Role::Button, "Stop station");
    gui.wait("the station stopped", |s| !s.station.running);
    devices.stop();
}
