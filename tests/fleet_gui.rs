//! The Station view's Fleet page, driven by label and role through egui_kittest: the real
//! app, bridge, station runner and fleet gateway, joined to a hawkBit DDI server
//! (`hawkbit_mock`, on this thread), a python-tuf repository read as a folder (`file://`),
//! and a report store that is not there. A phone on the bench is polled as its target and
//! waits with no deployment; the page shows each connection's state.
//!
//! Needs python-tuf in the Python at `FLASHLINE_PY`; skipped with a note otherwise (unless
//! `FLASHLINE_REQUIRE_PEERS` is set).
#![cfg(all(feature = "gui", feature = "fleet", unix))]

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::bench::Bench;
use eframe::egui::accesskit::Role;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use flashline::fleet::ddi::TargetId;
use flashline::gui::state::AppState;
use flashline::gui::FlashlineApp;
use flashline::sim::bench::{Arrival, ArrivingBench, VirtualDevice};
use flashline::sim::phone::PhoneConfig;
use flashline::station::fleet::LinkState;
use hawkbit_mock::ddi::{ServerBuilder, TargetAuthorization};

const WAIT: Duration = Duration::from_secs(60);
const SALT: &str = "fleet-gui-test-salt-0123456789";

fn python() -> Option<PathBuf> {
    let require = std::env::var_os("FLASHLINE_REQUIRE_PEERS").is_some();
    let py = std::env::var_os("FLASHLINE_PY").map(PathBuf::from);
    let ok = py.as_ref().is_some_and(|py| {
        Command::new(py)
            .args(["-c", "import tuf.api.metadata"])
            .status()
            .is_ok_and(|s| s.success())
    });
    if !ok {
        assert!(
            !require,
            "no python-tuf at FLASHLINE_PY, and FLASHLINE_REQUIRE_PEERS is set"
        );
        eprintln!("skipping: FLASHLINE_PY (a python with python-tuf) is not set or lacks it");
        return None;
    }
    py
}

fn private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn the_fleet_page_joins_a_fleet_and_shows_each_connection_by_label() {
    let Some(py) = python() else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    std::env::set_var("FLASHLINE_HOME", home.path());
    let bench = Bench::new();
    // The repository: written by python-tuf, read from its folder.
    let repo = bench.path("tuf");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fleet/tuf_repo.py");
    let out = Command::new(&py)
        .arg(&script)
        .args(["init"])
        .arg(&repo)
        .args(["--timestamp-expires", "3600"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hawkbit = ServerBuilder::default()
        .target_authorization(TargetAuthorization::GatewayToken)
        .build();
    let target = hawkbit.add_target(TargetId::derive(SALT.as_bytes(), "GUIFLEET1", None).as_str());
    // A port nothing listens on: the store is down.
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = bench.path("fleet");
    std::fs::create_dir_all(&dir).unwrap();
    private(&dir.join("gateway.token"), "KeyDEFAULT\n");
    private(
        &dir.join("s3.credentials"),
        "aws_access_key_id = AKIDGUI\naws_secret_access_key = x\n",
    );
    private(&dir.join("id.salt"), SALT);
    let file = dir.join("fleet.toml");
    std::fs::write(
        &file,
        format!(
            r#"[station]
name = "gui-bench"
[repository]
metadata_url = "file://{repo}/repo/metadata/"
targets_url = "file://{repo}/repo/targets/"
root = "{repo}/repo/metadata/1.root.json"
cache = "cache"
[hawkbit]
url = "{hawkbit}"
tenant = "DEFAULT"
token_file = "gateway.token"
poll_min = "300ms"
poll_max = "1s"
id_salt_file = "id.salt"
[reports]
endpoint = "http://{dead}"
bucket = "flashline-reports"
region = "us-east-1"
credentials_file = "s3.credentials"
outbox = "outbox"
"#,
            repo = repo.display(),
            hawkbit = hawkbit.base_url(),
        ),
    )
    .unwrap();
    drop(TcpListener::bind(dead).ok());

    let station_home = bench.path("station-home");
    let config = common::gui::app_config(&station_home, bench.path("keys"));
    let mut harness = Harness::builder()
        .with_size([1280.0, 800.0])
        .build_eframe(move |cc| FlashlineApp::new(cc, config).unwrap());
    let step = |h: &mut Harness<'static, FlashlineApp>| {
        h.step();
        h.step();
    };
    harness
        .get_by_role_and_label(Role::Button, "Station")
        .click();
    step(&mut harness);
    harness.get_by_role_and_label(Role::Button, "Fleet").click();
    step(&mut harness);
    harness.get_by_label_contains("Not joined");
    let field = harness.get_by_role_and_label(Role::TextInput, "Station file");
    field.focus();
    step(&mut harness);
    harness
        .get_by_role_and_label(Role::TextInput, "Station file")
        .type_text(file.to_str().unwrap());
    step(&mut harness);
    harness
        .get_by_role_and_label(Role::Button, "Join fleet")
        .click();
    step(&mut harness);

    let devices = ArrivingBench::start(
        &bench.path("devices"),
        &flashline::device::bench::default_dir(),
        vec![Arrival {
            name: "p1".into(),
            after: Duration::from_millis(200),
            device: VirtualDevice::Phone(PhoneConfig {
                serial: "GUIFLEET1".into(),
                partitions: vec![("boot".into(), 1024 * 1024)],
                ..PhoneConfig::default()
            }),
        }],
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let (polled, waiting, shown) = {
            let s: &AppState = harness.state().state();
            let polled = s
                .station
                .board
                .fleet
                .as_ref()
                .is_some_and(|f| f.rollouts.state == LinkState::Up);
            let waiting = s
                .station
                .board
                .slots
                .values()
                .any(|slot| slot.message.as_deref() == Some("no deployment"));
            (
                polled,
                waiting,
                format!("error {:?}, board {:#?}", s.station.error, s.station.board),
            )
        };
        if polled && waiting {
            break;
        }
        assert!(Instant::now() < deadline, "timed out; {shown}");
        harness.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..5 {
        harness.step();
    }
    assert!(target.poll_hits() >= 1);
    harness.get_by_label("Station gui-bench");
    harness.get_by_label("hawkBit: connected");
    harness.get_by_label("Repository: connected");
    harness.get_by_label("Report store: not tried yet");
    harness.get_by_label("Outbox: 0 pending");
    harness.get_by_label_contains("Last sync: 20");
    harness.get_by_label_contains("Metadata fresh until: 20");
    // Back to the slots: the phone waits for a rollout, unflashed.
    harness.get_by_role_and_label(Role::Button, "Fleet").click();
    step(&mut harness);
    assert!(harness.query_all_by_label("no deployment").count() >= 1);
    let commands = devices.with("p1", |d| d.commands()).unwrap();
    assert!(
        !commands.iter().any(|c| c.starts_with("download:")),
        "{commands:?}"
    );
    harness
        .get_by_role_and_label(Role::Button, "Stop station")
        .click();
    step(&mut harness);
    devices.stop();
}
