//! Station mode against a virtual bench that fills up over time: phones, hotspots, a dongle
//! and a brick arrive with no input, each is identified, preflighted and flashed; canaries
//! are checked after their reboot; the kill switch halts the batch; a person resumes it.
//!
//! The tests run one at a time: the station watches the one bench folder of this process
//! (`$FLASHLINE_HOME/bench`).
#![cfg(unix)]

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use common::bench::{assert_prefix, Bench};
use common::edl::{assert_flashed, edl_config, write_flat_build};
use flashline::package::TrustStore;
use flashline::sim::bench::{Arrival, ArrivingBench, VirtualDevice};
use flashline::sim::edl::EdlConfig;
use flashline::sim::modem::ModemConfig;
use flashline::sim::phone::PhoneConfig;
use flashline::sim::FaultPlan;
use flashline::station::report::{BatchReport, CSV, JSON};
use flashline::station::{runner, Board, SlotStatus, StationConfig, StationEvent, Threshold};

const WAIT: Duration = Duration::from_secs(240);
const PHONE_VERSION: &str = "2.1.0";
const MODEM_REVISION: &str = "BD_MF833VV1.0.0B09";

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

/// Random-looking bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    common::edl::data(len, seed)
}

/// The phone package's boot image: the version marker the virtual phone boots by, then
/// noise.
fn boot_image() -> Vec<u8> {
    let mut image =
        format!("FLASHLINE-VERSION={PHONE_VERSION}\nFLASHLINE-SECURITY=7\n").into_bytes();
    image.extend(noise(300 * 1024, 11));
    image
}

/// A key, a phone package and a flat build for the modems, and a station home.
struct Setup {
    bench: Bench,
    phone_pkg: PathBuf,
    flat_src: PathBuf,
    flat_pkg: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let bench = Bench::new();
        let phone_pkg = bench.pack(
            "phone-stock",
            PHONE_VERSION,
            7,
            "zte-demo-phone",
            &[("boot", &boot_image())],
        );
        let flat_src = bench.path("flat");
        write_flat_build(&flat_src, "modem-stock", "1.0.9", "MF833V", "", "");
        // The firmware the modems boot after the flash reports this revision.
        let mut modem = format!("FLASHLINE-VERSION={MODEM_REVISION}\n").into_bytes();
        modem.extend(noise(1024 * 1024, 3));
        std::fs::write(flat_src.join("NON-HLOS.bin"), modem).unwrap();
        let manifest = std::fs::read_to_string(flat_src.join("manifest.toml")).unwrap();
        let manifest = manifest.replace(
            "[[target]]\nproduct = \"MF833V\"\n",
            "[[target]]\nproduct = \"MF833V\"\n[[target]]\nproduct = \"MU300\"\n",
        );
        std::fs::write(flat_src.join("manifest.toml"), manifest).unwrap();
        let flat_pkg = bench.pack_manifest(&flat_src, "modem-stock");
        Setup {
            bench,
            phone_pkg,
            flat_src,
            flat_pkg,
        }
    }

    fn config(&self, canaries: usize, max_failures: &str) -> StationConfig {
        StationConfig {
            canaries,
            max_failures: max_failures.parse::<Threshold>().unwrap(),
            verify_timeout: Duration::from_secs(30),
            scan_every: Duration::from_millis(100),
            ..StationConfig::new(
                vec![self.phone_pkg.clone(), self.flat_pkg.clone()],
                TrustStore::load_dir(&self.bench.path("keys")).unwrap(),
                &self.bench.path("station-home"),
            )
        }
    }
}

fn phone(serial: &str, faults: &[&str]) -> VirtualDevice {
    VirtualDevice::Phone(PhoneConfig {
        serial: serial.into(),
        partitions: vec![
            ("boot".into(), 4 * 1024 * 1024),
            ("system".into(), 1024 * 1024),
        ],
        faults: plan(faults),
        ..PhoneConfig::default()
    })
}

fn plan(faults: &[&str]) -> FaultPlan {
    FaultPlan {
        faults: faults.iter().map(|f| f.parse().unwrap()).collect(),
    }
}

fn modem(base: ModemConfig, serial: &str, imei_tail: u32) -> VirtualDevice {
    VirtualDevice::Modem {
        modem: ModemConfig {
            usb_serial: serial.into(),
            imei: format!("8686110400{imei_tail:05}"),
            ..base
        },
        edl: Box::new(edl_config()),
        returned_faults: FaultPlan::none(),
    }
}

fn brick(serial: &str) -> VirtualDevice {
    VirtualDevice::Brick(Box::new(EdlConfig {
        serial: serial.into(),
        ..edl_config()
    }))
}

fn at(ms: u64, name: &str, device: VirtualDevice) -> Arrival {
    Arrival {
        name: name.into(),
        after: Duration::from_millis(ms),
        device,
    }
}

/// A station started on the bench, its events kept.
struct Running {
    handle: Option<runner::StationHandle>,
    events: Arc<Mutex<Vec<StationEvent>>>,
}

impl Running {
    fn start(config: StationConfig) -> Self {
        let events: Arc<Mutex<Vec<StationEvent>>> = Arc::default();
        let sink = Arc::clone(&events);
        let handle = runner::start(config, move |e| sink.lock().unwrap().push(e)).unwrap();
        Running {
            handle: Some(handle),
            events,
        }
    }

    fn dir(&self) -> PathBuf {
        self.handle.as_ref().unwrap().dir().to_path_buf()
    }

    fn board(&self) -> Board {
        let mut board = Board::default();
        for e in self.events.lock().unwrap().iter() {
            board.apply(e);
        }
        board
    }

    /// Whether any slot event so far satisfied `pred`.
    fn saw(&self, pred: impl Fn(&flashline::station::Slot) -> bool) -> bool {
        self.events.lock().unwrap().iter().any(|e| match e {
            StationEvent::Slot(s) => pred(s),
            _ => false,
        })
    }

    fn report(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.dir().join(JSON)).unwrap()).unwrap()
    }

    fn wait(&self, what: &str, done: impl Fn(&Board, &serde_json::Value) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            let (board, report) = (self.board(), self.report());
            if done(&board, &report) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; slots: {:#?}\nreport: {report:#}",
                board.slots
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(mut self) -> BatchReport {
        self.handle.take().unwrap().stop()
    }
}

/// Devices of the report with `outcome`.
fn with_outcome(report: &serde_json::Value, outcome: &str) -> usize {
    report["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["outcome"] == outcome)
        .count()
}

fn record<'a>(report: &'a serde_json::Value, serial_or_model: &str) -> &'a serde_json::Value {
    report["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["serial"] == serial_or_model)
        .unwrap_or_else(|| panic!("no device {serial_or_model} in {report:#}"))
}

fn count(commands: &[String], prefix: &str) -> usize {
    commands.iter().filter(|c| c.starts_with(prefix)).count()
}

#[test]
fn eight_devices_arriving_over_time_are_all_flashed_with_no_input() {
    let _one = exclusive();
    let setup = Setup::new();
    let root = setup.bench.path("devices");
    let bench_dir = flashline::device::bench::default_dir();
    let arrivals = vec![
        // The dongle comes first and is the canary: AT → DIAG → EDL → flashed → back in
        // AT mode, where its +CGMR must report the new firmware.
        at(0, "dongle", modem(ModemConfig::dongle(), "STDONGLE1", 1)),
        at(1500, "p1", phone("STP1", &[])),
        at(1900, "p2", phone("STP2", &[])),
        at(2400, "hot1", modem(ModemConfig::hotspot(), "STHOT1", 2)),
        at(3000, "brick", brick("STBRICK1")),
        at(3700, "p3", phone("STP3", &[])),
        at(4400, "hot2", modem(ModemConfig::hotspot(), "STHOT2", 3)),
        at(5200, "p4", phone("STP4", &[])),
    ];
    let devices = ArrivingBench::start(&root, &bench_dir, arrivals);
    let station = Running::start(setup.config(1, "2/10"));
    station.wait("8 devices flashed", |_, r| {
        r["devices"].as_array().unwrap().len() == 8 && with_outcome(r, "success") == 8
    });
    let report = station.report();
    assert_eq!(
        record(&report, "STDONGLE1")["canary_check"],
        format!("passed: reports {MODEM_REVISION}")
    );
    assert!(station.saw(|s| s.message.as_deref() == Some("waiting for canaries")));
    // The hotspots went straight to EDL, came back in AT mode on their slots with the new
    // firmware, and are shown with it, not flashed again.
    station.wait("a hotspot back with its new revision", |b, _| {
        b.slots
            .values()
            .any(|s| s.status == SlotStatus::Returned && s.after.as_deref() == Some(MODEM_REVISION))
    });
    let report = station.report();
    for p in ["p1", "p2", "p3", "p4"] {
        assert_prefix(&root.join(p).join("boot.img"), &boot_image());
        let commands = devices.with(p, |d| d.commands()).unwrap();
        assert_eq!(count(&commands, "flash:boot"), 1, "{p} was flashed once");
    }
    for m in ["dongle", "hot1", "hot2", "brick"] {
        assert_flashed(
            &setup.flat_src,
            &flashline::sim::edl::lun_path(&root.join(m), 0),
        );
    }
    let dongle = devices.with("dongle", |d| d.commands()).unwrap();
    assert!(dongle.iter().any(|c| c == "AT+ZCDRUN=E"), "{dongle:?}");
    assert_eq!(
        count(&dongle, "AT+ZCDRUN=E"),
        1,
        "the dongle's job ran once"
    );
    // The phones were read back after their reboot: the new version comes from them.
    assert_eq!(record(&report, "STP1")["after"], PHONE_VERSION);
    assert_eq!(report["halts"].as_array().unwrap().len(), 0);

    // A phone unplugged and plugged in again (another port) is recognised, not reflashed.
    devices.unplug("p1");
    let again = ArrivingBench::start(
        &root,
        &bench_dir,
        vec![at(0, "p1-again", phone("STP1", &[]))],
    );
    station.wait("p1 back on another port", |b, _| {
        b.slots
            .values()
            .any(|s| s.status == SlotStatus::Returned && s.serial.as_deref() == Some("STP1"))
    });
    let replugged = again.with("p1-again", |d| d.commands()).unwrap();
    assert_eq!(count(&replugged, "flash:"), 0, "{replugged:?}");
    let dir = station.dir();
    let batch = station.stop();
    assert_eq!(
        batch.devices.len(),
        8,
        "no second record for a returning device"
    );
    assert!(batch.returned >= 2);
    let csv = std::fs::read_to_string(dir.join(CSV)).unwrap();
    assert_eq!(csv.lines().count(), 9, "{csv}");
    assert!(
        csv.lines().skip(1).all(|l| l.contains(",success,")),
        "{csv}"
    );
    again.stop();
    devices.stop();
}

#[test]
fn a_canary_failing_its_check_after_reboot_halts_the_batch_until_a_person_resumes_it() {
    let _one = exclusive();
    let setup = Setup::new();
    let root = setup.bench.path("devices");
    let bench_dir = flashline::device::bench::default_dir();
    // The first canary answers FAIL to the getvar that reads its version after its
    // reboot; the second writes slowly, so it is still flashing when the first fails.
    let slow = VirtualDevice::Phone(PhoneConfig {
        serial: "STSLOW".into(),
        partitions: vec![
            ("boot".into(), 4 * 1024 * 1024),
            ("system".into(), 1024 * 1024),
        ],
        write_rate: Some(25_000),
        ..PhoneConfig::default()
    });
    let bad = VirtualDevice::Phone(PhoneConfig {
        serial: "STBAD".into(),
        partitions: vec![
            ("boot".into(), 4 * 1024 * 1024),
            ("system".into(), 1024 * 1024),
        ],
        write_rate: Some(60_000),
        faults: plan(&["fail@getvar:version-bootloader#1"]),
        ..PhoneConfig::default()
    });
    let arrivals = vec![
        at(0, "canary-bad", bad),
        at(100, "canary-slow", slow),
        at(600, "later1", phone("STLATE1", &[])),
        at(900, "later2", phone("STLATE2", &[])),
    ];
    let devices = ArrivingBench::start(&root, &bench_dir, arrivals);
    let station = Running::start(setup.config(2, "2/10"));
    station.wait("the later phones waiting for the canaries", |_, _| {
        ["STLATE1", "STLATE2"].iter().all(|serial| {
            station.saw(|s| {
                s.serial.as_deref() == Some(serial)
                    && s.message.as_deref() == Some("waiting for canaries")
            })
        })
    });
    station.wait("the halt", |b, _| b.halted.is_some());
    let board = station.board();
    let halt = board.halted.clone().unwrap();
    assert!(
        halt.reasons[0].contains("failed its check after the reboot"),
        "{:?}",
        halt.reasons
    );
    assert_eq!(
        halt.reports.len(),
        1,
        "the failed canary's report is linked"
    );
    // The slow canary was running at the halt and finishes.
    station.wait("the slow canary's job", |_, r| {
        record(r, "STSLOW")["outcome"] == "success"
    });
    let report = station.report();
    let halt_seq = report["halts"][0]["seq"].as_u64().unwrap();
    assert!(record(&report, "STSLOW")["finished_seq"].as_u64().unwrap() > halt_seq);
    assert_prefix(&root.join("canary-slow").join("boot.img"), &boot_image());
    assert_eq!(record(&report, "STBAD")["canary"], true);
    assert!(record(&report, "STBAD")["canary_check"]
        .as_str()
        .unwrap()
        .starts_with("failed"));
    // No flash started after the halt: the later phones got no write.
    std::thread::sleep(Duration::from_secs(2));
    let report = station.report();
    for d in report["devices"].as_array().unwrap() {
        if let Some(started) = d["started_seq"].as_u64() {
            assert!(started < halt_seq, "a flash started after the halt: {d:#}");
        }
    }
    for p in ["later1", "later2"] {
        let commands = devices.with(p, |d| d.commands()).unwrap();
        assert_eq!(count(&commands, "flash:"), 0, "{p}: {commands:?}");
        assert_eq!(count(&commands, "download:"), 0, "{p}: {commands:?}");
    }
    let csv = std::fs::read_to_string(station.dir().join(CSV)).unwrap();
    let bad = csv.lines().find(|l| l.contains("STBAD")).unwrap();
    assert!(bad.contains(",yes,") && bad.contains(",failed,"), "{csv}");
    let summary = std::fs::read_to_string(station.dir().join("summary.txt")).unwrap();
    assert!(summary.contains("HALTED"), "{summary}");

    // A person resumes from "another terminal": the request file in the batch folder.
    flashline::station::control::request_resume(
        &station.dir(),
        "ana",
        "canary STBAD had a loose cable",
    )
    .unwrap();
    station.wait("the later phones flashed after the resume", |_, r| {
        record(r, "STLATE1")["outcome"] == "success" && record(r, "STLATE2")["outcome"] == "success"
    });
    let report = station.report();
    let resume = &report["resumes"][0];
    assert_eq!(resume["by"], "ana");
    assert_eq!(resume["reason"], "canary STBAD had a loose cable");
    let resume_seq = resume["seq"].as_u64().unwrap();
    assert!(record(&report, "STLATE1")["started_seq"].as_u64().unwrap() > resume_seq);
    assert_prefix(&root.join("later1").join("boot.img"), &boot_image());
    let summary = std::fs::read_to_string(station.dir().join("summary.txt")).unwrap();
    assert!(
        summary.contains("resumed at") && summary.contains("by ana"),
        "{summary}"
    );
    station.stop();
    devices.stop();
}

#[test]
fn a_failure_spike_after_the_canaries_halts_at_the_threshold() {
    let _one = exclusive();
    let setup = Setup::new();
    let root = setup.bench.path("devices");
    let bench_dir = flashline::device::bench::default_dir();
    let bad = ["fail@flash:boot#1"];
    let mut arrivals = vec![
        at(0, "canary", phone("SPCANARY", &[])),
        at(200, "ok1", phone("SPOK1", &[])),
        at(300, "bad1", phone("SPBAD1", &bad)),
        at(400, "bad2", phone("SPBAD2", &bad)),
    ];
    // The rest arrive once the batch has halted.
    for (i, name) in ["ok2", "ok3", "ok4", "ok5", "ok6"].iter().enumerate() {
        arrivals.push(at(
            15_000 + 100 * i as u64,
            name,
            phone(&format!("SP{name}"), &[]),
        ));
    }
    arrivals.push(at(15_600, "bad3", phone("SPBAD3", &bad)));
    let devices = ArrivingBench::start(&root, &bench_dir, arrivals);
    let station = Running::start(setup.config(1, "2/10"));
    station.wait("the halt", |b, _| b.halted.is_some());
    let halt = station.board().halted.unwrap();
    assert!(
        halt.reasons
            .iter()
            .any(|r| r.contains("of the last") && r.contains("limit 2/10")),
        "{:?}",
        halt.reasons
    );
    assert_eq!(halt.reports.len(), 1);
    station.wait("the late devices waiting", |b, _| {
        b.slots
            .values()
            .filter(|s| {
                s.status == SlotStatus::Waiting && s.message.as_deref() == Some("batch halted")
            })
            .count()
            == 6
    });
    let report = station.report();
    assert_eq!(with_outcome(&report, "device-error"), 2, "{report:#}");
    assert_eq!(
        record(&report, "SPCANARY")["canary_check"],
        format!("passed: reports {PHONE_VERSION}")
    );
    let halt_seq = report["halts"][0]["seq"].as_u64().unwrap();
    for d in report["devices"].as_array().unwrap() {
        if let Some(started) = d["started_seq"].as_u64() {
            assert!(started < halt_seq, "a flash started after the halt: {d:#}");
        }
    }
    for name in ["ok2", "ok3", "ok4", "ok5", "ok6", "bad3"] {
        let commands = devices.with(name, |d| d.commands()).unwrap();
        assert_eq!(count(&commands, "download:"), 0, "{name}: {commands:?}");
    }
    station.stop();
    devices.stop();
}

/// A one-line check that the CLI parses the kill switch the way the station counts it.
#[test]
fn thresholds_read_as_failures_of_the_last_jobs() {
    let t: Threshold = "2/10".parse().unwrap();
    assert_eq!((t.failures, t.window), (2, 10));
    assert!("0/10".parse::<Threshold>().is_err());
    assert!("3/2".parse::<Threshold>().is_err());
    assert!("x".parse::<Threshold>().is_err());
}

#[test]
fn the_command_line_station_halts_prints_json_and_is_resumed_from_another_terminal() {
    use std::io::BufRead;
    let _one = exclusive();
    let setup = Setup::new();
    let home = PathBuf::from(std::env::var_os("FLASHLINE_HOME").unwrap());
    let root = setup.bench.path("devices");
    let mut station = std::process::Command::new(env!("CARGO_BIN_EXE_flashline"))
        .args(["station", "--package"])
        .arg(&setup.phone_pkg)
        .args([
            "--canary",
            "1",
            "--verify-timeout",
            "20s",
            "--stop-after",
            "40s",
            "--json",
        ])
        .arg("--trust")
        .arg(setup.bench.path("keys"))
        .env("FLASHLINE_HOME", &home)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    let stdout = station.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(serde_json::from_str(&line).expect("every line is JSON"));
        }
    });
    let devices = ArrivingBench::start(
        &root,
        &flashline::device::bench::default_dir(),
        vec![
            at(
                500,
                "canary",
                phone("CLICANARY", &["fail@getvar:version-bootloader#1"]),
            ),
            at(1500, "next", phone("CLINEXT", &[])),
        ],
    );
    let mut seen = Vec::new();
    let mut wait_for = |what: &str, pred: &dyn Fn(&serde_json::Value) -> bool| {
        let deadline = Instant::now() + WAIT;
        loop {
            let event = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("no {what}; events: {seen:#?}"));
            seen.push(event.clone());
            if pred(&event) {
                return event;
            }
        }
    };
    let started = wait_for("start", &|e| e["event"] == "started");
    let batch = PathBuf::from(started["dir"].as_str().unwrap());
    let halted = wait_for("halt", &|e| e["event"] == "halted");
    assert!(
        halted["reasons"][0].as_str().unwrap().contains("CLICANARY")
            || halted["reasons"][0].as_str().unwrap().contains("canary")
    );
    // Another terminal: `flashline station resume` finds the running batch by itself.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flashline"))
        .args([
            "station",
            "resume",
            "--by",
            "ana",
            "--reason",
            "false alarm",
        ])
        .env("FLASHLINE_HOME", &home)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resumed = wait_for("resume", &|e| e["event"] == "resumed");
    assert_eq!(resumed["by"], "ana");
    assert_eq!(resumed["reason"], "false alarm");
    wait_for("the next phone done", &|e| {
        e["event"] == "slot" && e["serial"] == "CLINEXT" && e["status"] == "done"
    });
    let _ = station.kill();
    let _ = station.wait();
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(batch.join(JSON)).unwrap()).unwrap();
    assert_eq!(report["resumes"][0]["by"], "ana");
    assert_eq!(record(&report, "CLINEXT")["outcome"], "success");
    assert_prefix(&root.join("next").join("boot.img"), &boot_image());
    devices.stop();
}
