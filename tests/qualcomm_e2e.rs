//! End to end through real pseudo-terminals: the `flashline` binary identifies virtual
//! modems and hotspots over AT, switches them to EDL, loads the programmer over Sahara and
//! flashes over Firehose; bricked devices are recovered; the LUN files are compared with
//! what the rawprogram/patch files describe.
#![cfg(unix)]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use common::bench::Bench;
use common::edl::{
    assert_flashed, edl_config, identity_hashes, layout, region, write_flat_build, IDENTITY, SECTOR,
};
use flashline::engine::station::StationKey;
use flashline::sim::bench::VirtualModem;
use flashline::sim::edl::{EdlConfig, EdlSim, RunningEdl};
use flashline::sim::modem::ModemConfig;

/// Tests that run the engine in this process point `FLASHLINE_HOME` (where discovery finds
/// virtual devices) at their own bench; they take turns.
static IN_PROCESS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The Qualcomm side of the shared bench.
trait EdlBench {
    /// Where virtual serial devices announce themselves.
    fn bench_dir(&self) -> PathBuf;
    /// Packs [`common::edl::write_flat_build`] with the release key.
    fn pack_flat(
        &self,
        name: &str,
        version: &str,
        product: &str,
        boot_start: &str,
        tweak: &str,
    ) -> PathBuf;
    /// A virtual modem that becomes the default EDL device.
    fn modem(&self, cfg: ModemConfig) -> VirtualModem;
}

impl EdlBench for Bench {
    fn bench_dir(&self) -> PathBuf {
        self.path("home/bench")
    }

    fn pack_flat(
        &self,
        name: &str,
        version: &str,
        product: &str,
        boot_start: &str,
        tweak: &str,
    ) -> PathBuf {
        let src = self.path(&format!("src-{name}-{version}"));
        write_flat_build(&src, name, version, product, boot_start, tweak);
        self.pack_manifest(&src, &format!("{name}-{version}"))
    }

    fn modem(&self, cfg: ModemConfig) -> VirtualModem {
        VirtualModem::start(cfg, edl_config(), &self.path("device"), &self.bench_dir()).unwrap()
    }
}

#[test]
fn a_hotspot_is_identified_switched_flashed_and_verified() {
    let bench = Bench::new();
    let pkg = bench.pack_flat("stock", "1.0.12", "MU300", "", "");
    let modem = bench.modem(ModemConfig::hotspot());
    let identity_before = identity_hashes(&modem.lun_path(0));
    let (out, report) = bench.job("flash", &pkg, Some(modem.address()), &[]);
    assert!(
        out.status.success(),
        "{report:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_flashed(&bench.path("src-stock-1.0.12"), &modem.lun_path(0));
    assert_eq!(
        identity_hashes(&modem.lun_path(0)),
        identity_before,
        "identity partitions are untouched"
    );
    // The hotspot goes straight to EDL on the factory-mode command: no DIAG step.
    assert!(modem.at_commands().iter().any(|c| c == "AT+ZCDRUN=E"));
    assert!(modem.diag_requests().is_empty());
    let edl = modem.edl_commands();
    assert!(
        edl.iter().any(|c| c.starts_with("sahara:programmer")),
        "{edl:?}"
    );
    assert!(edl.iter().any(|c| c == "firehose:power reset"), "{edl:?}");
    assert_eq!(report["outcome"], "success");
    assert_eq!(report["device"]["product"], "MU300");
    assert_eq!(report["device"]["imei"], "868611040000015");
    assert_eq!(report["before"]["firmware"], "BD_MF833VV1.0.0B08");
    let battery = report["preflight"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "battery")
        .unwrap();
    assert_eq!(battery["actual"], "80 %");
    // The identity partitions were saved, and the copies are byte-identical to the device.
    let backup = &report["backup"];
    let dir = PathBuf::from(backup["dir"].as_str().unwrap());
    let lun = std::fs::read(modem.lun_path(0)).unwrap();
    for entry in backup["partitions"].as_array().unwrap() {
        let saved = std::fs::read(dir.join(entry["file"].as_str().unwrap())).unwrap();
        let stored = region(
            &lun,
            entry["start_sector"].as_u64().unwrap(),
            entry["sectors"].as_u64().unwrap(),
        );
        assert_eq!(saved, stored, "{}", entry["label"]);
    }
    assert_eq!(
        backup["partitions"].as_array().unwrap().len(),
        IDENTITY.len()
    );
    modem.stop();
}

#[test]
fn a_dongle_without_a_battery_is_flashed() {
    let bench = Bench::new();
    let pkg = bench.pack_flat("stock", "1.0.12", "MF833V", "", "");
    let modem = bench.modem(ModemConfig::dongle());
    let (out, report) = bench.job("flash", &pkg, Some(modem.address()), &[]);
    assert!(out.status.success(), "{report:#}");
    assert_flashed(&bench.path("src-stock-1.0.12"), &modem.lun_path(0));
    let battery = report["preflight"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "battery")
        .unwrap();
    assert_eq!(battery["actual"], "no battery", "no battery is not 0 %");
    // The dongle needs the DIAG step: factory mode, then DIAG_DLOAD_F on its DIAG port.
    assert!(modem.at_commands().iter().any(|c| c == "AT+ZCDRUN=E"));
    assert_eq!(modem.diag_requests(), ["3a"]);
    let steps: Vec<String> = common::bench::events(&out)
        .iter()
        .filter(|e| e["event"] == "switch-step")
        .map(|e| e["step"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(steps.len(), 2, "{steps:?}");
    assert!(
        steps[0].starts_with("AT AT+ZCDRUN=E on serial:"),
        "{steps:?}"
    );
    assert!(
        steps[1].starts_with("DIAG dload request on serial:"),
        "{steps:?}"
    );
    let notes = report["notes"].to_string();
    assert!(notes.contains("rests on public reports only"), "{notes}");
    // The chip was identified in Sahara command mode before the upload, and matched the
    // model's hardware id in the quirks file.
    assert_eq!(report["device"]["chip"]["hwid"], "0x0f1a5e0000000000");
    let chip = report["preflight"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "chip")
        .unwrap();
    assert_eq!(chip["status"], "pass", "{chip}");
    modem.stop();
}

#[test]
fn a_bricked_device_in_edl_is_recovered() {
    let bench = Bench::new();
    let pkg = bench.pack_flat("stock", "1.0.12", "MF833V", "", "");
    let dir = bench.path("device");
    let sim = EdlSim::start(&dir, edl_config(), Some(&bench.bench_dir())).unwrap();
    let identity_before = identity_hashes(&flashline::sim::edl::lun_path(&dir, 0));
    // No --device: recover finds the one device in EDL itself.
    let (out, report) = bench.job("recover", &pkg, None, &[]);
    assert!(
        out.status.success(),
        "{report:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_flashed(&bench.path("src-stock-1.0.12"), &sim.lun_path(0));
    assert_eq!(identity_hashes(&sim.lun_path(0)), identity_before);
    let product = report["preflight"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "product")
        .unwrap();
    // A device in EDL cannot say what it is; its chip's hardware id and key hash name it
    // through the quirks file.
    assert_eq!(product["status"], "pass", "{product}");
    assert_eq!(product["actual"], "MF833V");
    assert!(
        report["notes"]
            .to_string()
            .contains("identified as MF833V by its hardware id"),
        "{report:#}"
    );
    sim.stop();
}

#[test]
fn a_9008_without_a_usb_serial_and_a_sahara_3_rom_is_identified_and_recovered() {
    use flashline::sim::edl::ChipProfile;
    let bench = Bench::new();
    let pkg = bench.pack_flat("stock", "1.0.12", "MF833V", "", "");
    let dir = bench.path("device");
    // The MF833V's key hash (quirks file), sent padded with zeros to 64 bytes.
    let mut pk_hash = flashline::sim::edl::virtual_pk_hash();
    pk_hash.resize(64, 0);
    let cfg = EdlConfig {
        chip: ChipProfile {
            pk_hash,
            ..ChipProfile::sahara_v3()
        },
        ..edl_config()
    }
    .without_iserial();
    assert!(cfg.product.starts_with("QUSB__BULK_SN:"), "{}", cfg.product);
    let sim = EdlSim::start(&dir, cfg, Some(&bench.bench_dir())).unwrap();
    let (out, report) = bench.job("recover", &pkg, None, &[]);
    assert!(
        out.status.success(),
        "{report:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_flashed(&bench.path("src-stock-1.0.12"), &sim.lun_path(0));
    let device = &report["device"];
    // No iSerial: the chip serial from the product string names the device.
    assert_eq!(device["serial"], "0x0123456789abcdef", "{device:#}");
    let chip = &device["chip"];
    assert_eq!(chip["sahara_version"], 3);
    assert_eq!(chip["serial"], 0x0123_4567_89AB_CDEFu64);
    // Sahara 3 refuses MSM_HW_ID_READ; the id comes from READ_CHIP_ID_V3.
    assert_eq!(chip["hwid"], "0x0f1a5e0000000000");
    // The key hash without its zero padding, so the quirks file names the model.
    assert_eq!(
        chip["pk_hash"],
        hex::encode(flashline::sim::edl::virtual_pk_hash())
    );
    assert_eq!(device["product"], "MF833V");
    let log = sim.commands();
    assert!(
        log.iter().any(|c| c == "sahara:execute cmd=0x0a"),
        "{log:?}"
    );
    // Command mode, then a second HELLO answered for the image transfer.
    let hellos = log
        .iter()
        .filter(|c| c.starts_with("sahara:hello-resp"))
        .count();
    assert_eq!(hellos, 2, "{log:?}");
    sim.stop();
}

#[test]
fn a_sha384_key_hash_is_not_compared_with_a_sha256_one_and_the_hwid_decides() {
    use flashline::sim::edl::ChipProfile;
    let bench = Bench::new();
    let pkg = bench.pack_flat("stock", "1.0.12", "MF833V", "", "");
    // A Sahara 3 ROM of the MF833V's chip that hashes its root key with SHA-384 (48 bytes,
    // then 48 zero bytes); the quirks file holds a SHA-256 hash (32 bytes).
    let cfg = EdlConfig {
        chip: ChipProfile::sahara_v3(),
        ..edl_config()
    };
    let sim = EdlSim::start(&bench.path("device"), cfg, Some(&bench.bench_dir())).unwrap();
    let (out, report) = bench.job("recover", &pkg, Some(sim.address()), &[]);
    assert!(
        out.status.success(),
        "{report:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_flashed(&bench.path("src-stock-1.0.12"), &sim.lun_path(0));
    let chip = &report["device"]["chip"];
    assert_eq!(chip["pk_hash"].as_str().unwrap().len(), 96, "{chip}");
    // Named by its hardware id, the one fact both sides can compare.
    assert_eq!(report["device"]["product"], "MF833V");
    let check = report["preflight"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "chip")
        .unwrap()
        .clone();
    assert_eq!(check["status"], "warn", "{check}");
    assert!(
        check["message"]
            .as_str()
            .unwrap()
            .contains("OEM key hash in the declared hash's algorithm"),
        "{check}"
    );
    sim.stop();
}

#[test]
fn a_programmer_for_another_chip_is_refused_before_upload() {
    let bench = Bench::new();
    let src = bench.path("src-other-chip");
    common::edl::write_flat_build(&src, "stock", "1.0.12", "MF833V", "", "");
    let manifest = src.join("manifest.toml");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str("hwid = \"0x000960e10029003e\"\n");
    std::fs::write(&manifest, text).unwrap();
    let pkg = bench.pack_manifest(&src, "other-chip");
    let modem = bench.modem(ModemConfig::dongle());
    let before = std::fs::read(modem.lun_path(0)).unwrap();
    let (out, report) = bench.job("flash", &pkg, Some(modem.address()), &[]);
    assert_eq!(out.status.code(), Some(4), "{report:#}");
    let chip = report["preflight"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "chip")
        .unwrap()
        .clone();
    assert_eq!(chip["status"], "refuse", "{chip}");
    assert_eq!(
        chip["actual"].as_str().unwrap().split(',').next(),
        Some("HWID 0x0f1a5e0000000000")
    );
    assert!(
        chip["required"]
            .as_str()
            .unwrap()
            .contains("HWID 0x000960e10029003e"),
        "{chip}"
    );
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("before the programmer was sent"),
        "{report:#}"
    );
    let log = modem.edl_commands();
    assert!(
        log.iter().any(|c| c.starts_with("sahara:execute")),
        "{log:?}"
    );
    assert!(
        !log.iter()
            .any(|c| c.starts_with("sahara:read-data") || c.starts_with("sahara:programmer")),
        "the device received programmer bytes: {log:?}"
    );
    assert!(std::fs::read(modem.lun_path(0)).unwrap() == before);
    modem.stop();
}

#[test]
fn recover_without_a_device_explains_how_to_enter_edl() {
    let bench = Bench::new();
    let pkg = bench.pack_flat("stock", "1.0.12", "MF833V", "", "");
    let keys = bench.path("keys");
    let out = bench.run(&[
        "recover",
        pkg.to_str().unwrap(),
        "--trust",
        keys.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(5));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("Hold the reset button"), "{text}");
    assert!(text.contains("Nothing has been written"), "{text}");
}

#[test]
fn refusals_leave_the_lun_unchanged() {
    let bench = Bench::new();
    let cases = [
        (
            "wrong model",
            bench.pack_flat("dongle-fw", "1.0.12", "MF833V", "", ""),
            ModemConfig::hotspot(),
            "product",
            false,
        ),
        (
            "downgrade",
            bench.pack_flat("old", "1.0.5", "MU300", "", ""),
            ModemConfig::hotspot(),
            "version",
            false,
        ),
        (
            "low battery",
            bench.pack_flat("stock", "1.0.12", "MU300", "", ""),
            ModemConfig {
                battery_percent: 10,
                ..ModemConfig::hotspot()
            },
            "battery",
            false,
        ),
        (
            "image beyond the end of the LUN",
            bench.pack_flat("big", "1.0.12", "MU300", "NUM_DISK_SECTORS-100.", ""),
            ModemConfig::hotspot(),
            "storage:boot",
            true,
        ),
    ];
    for (what, pkg, cfg, check, switched) in cases {
        let modem = bench.modem(cfg);
        let before = std::fs::read(modem.lun_path(0)).unwrap();
        let (out, report) = bench.job("flash", &pkg, Some(modem.address()), &[]);
        assert_eq!(out.status.code(), Some(4), "{what}: {report:#}");
        let refused: Vec<_> = report["preflight"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["status"] == "refuse")
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(refused, vec![check.to_string()], "{what}");
        assert_eq!(
            modem.at_commands().iter().any(|c| c == "AT+ZCDRUN=E"),
            switched,
            "{what}"
        );
        assert!(
            !modem
                .edl_commands()
                .iter()
                .any(|c| c.starts_with("firehose:program")),
            "{what}"
        );
        assert!(
            std::fs::read(modem.lun_path(0)).unwrap() == before,
            "{what}: the LUN changed"
        );
        modem.stop();
        std::fs::remove_dir_all(bench.path("device")).unwrap();
    }
}

#[test]
fn a_programmer_the_device_does_not_accept_changes_nothing() {
    let bench = Bench::new();
    let pkg = bench.pack_flat("stock", "1.0.12", "MF833V", "", "");
    let dir = bench.path("device");
    let sim = EdlSim::start(
        &dir,
        EdlConfig {
            programmer_sha256: Some([0x42; 32]),
            ..EdlConfig::default()
        },
        Some(&bench.bench_dir()),
    )
    .unwrap();
    let before = std::fs::read(sim.lun_path(0)).unwrap();
    let (out, report) = bench.job("recover", &pkg, Some(sim.address()), &[]);
    assert_eq!(out.status.code(), Some(5), "{report:#}");
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("IMAGE_AUTH_FAILURE"), "{error}");
    assert!(std::fs::read(sim.lun_path(0)).unwrap() == before);
    sim.stop();
}

#[test]
fn a_firehose_nak_is_reported_in_plain_words() {
    let bench = Bench::new();
    let pkg = bench.pack_flat("stock", "1.0.12", "MF833V", "", "");
    // A programmer for another storage type: it NAKs the package's <configure>.
    let sim = EdlSim::start(
        &bench.path("device"),
        EdlConfig {
            memory_name: "ufs".into(),
            ..edl_config()
        },
        Some(&bench.bench_dir()),
    )
    .unwrap();
    let before = std::fs::read(sim.lun_path(0)).unwrap();
    let started = Instant::now();
    let (out, report) = bench.job("recover", &pkg, Some(sim.address()), &[]);
    assert_eq!(out.status.code(), Some(5), "{report:#}");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("configure") && error.contains("emmc"),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(std::fs::read(sim.lun_path(0)).unwrap() == before);
    sim.stop();
}

#[test]
fn a_patch_past_the_end_of_the_disk_is_refused_before_any_write() {
    let bench = Bench::new();
    let tweak = r#"<patch SECTOR_SIZE_IN_BYTES="512" byte_offset="0" filename="DISK" physical_partition_number="0" size_in_bytes="4" start_sector="NUM_DISK_SECTORS+5." value="1." what="beyond the disk" />"#;
    let pkg = bench.pack_flat("stock", "1.0.12", "MF833V", "", tweak);
    let sim = EdlSim::start(
        &bench.path("device"),
        edl_config(),
        Some(&bench.bench_dir()),
    )
    .unwrap();
    let before = std::fs::read(sim.lun_path(0)).unwrap();
    let (out, report) = bench.job("recover", &pkg, Some(sim.address()), &[]);
    assert_eq!(out.status.code(), Some(4), "{report:#}");
    assert!(report["error"]
        .as_str()
        .unwrap()
        .contains("beyond the disk"));
    assert!(
        std::fs::read(sim.lun_path(0)).unwrap() == before,
        "nothing was written"
    );
    sim.stop();
}

#[test]
fn a_disconnect_mid_transfer_fails_cleanly_without_a_hang() {
    use flashline::engine::{self, Event, Outcome};
    use flashline::package::TrustStore;
    use std::sync::{Arc, Mutex};

    let bench = Bench::new();
    let pkg = bench.pack_flat("stock", "1.0.12", "MF833V", "", "");
    let sim: Arc<Mutex<Option<RunningEdl>>> = Arc::new(Mutex::new(Some(
        EdlSim::start(&bench.path("device"), edl_config(), None).unwrap(),
    )));
    let address = sim.lock().unwrap().as_ref().unwrap().address().to_string();
    let trust = TrustStore::load_dir(&bench.path("keys")).unwrap();
    let req = common::virtual_job(&pkg, trust, &address, bench.dir.path());
    // The test process is its own bench: announce the device where discovery looks.
    let _turn = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    std::env::set_var("FLASHLINE_HOME", bench.path("home"));
    let _announce = flashline::device::bench::announce(
        &bench.bench_dir(),
        &flashline::device::bench::BenchEntry {
            address,
            vid: 0x05c6,
            pid: 0x9008,
            serial: "FLMODEM0001".into(),
            product: "QUSB__BULK".into(),
            ..Default::default()
        },
    )
    .unwrap();
    let started = Instant::now();
    let cut = Arc::clone(&sim);
    let report = engine::run(&req, &mut |event| {
        if let Event::Progress { index: 2, .. } = event {
            if let Some(s) = cut.lock().unwrap().take() {
                s.stop();
            }
        }
    });
    assert_eq!(report.outcome, Outcome::DeviceError);
    let error = report.error.unwrap();
    assert!(
        error.contains("modem"),
        "the failed partition is named: {error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "no hang: {:?}",
        started.elapsed()
    );
    assert_eq!(report.images[2].status, "failed");
    assert_eq!(report.images[0].status, "written");
}

#[test]
fn backup_and_restore_round_trip_byte_identically() {
    let bench = Bench::new();
    let pkg = bench.pack_flat("stock", "1.0.12", "MF833V", "", "");
    let sim = EdlSim::start(
        &bench.path("device"),
        edl_config(),
        Some(&bench.bench_dir()),
    )
    .unwrap();
    let lun_file = sim.lun_path(0);
    let original = std::fs::read(&lun_file).unwrap();
    let keys = bench.path("keys");
    let out_dir = bench.path("my-backups");
    let out = bench.run(&[
        "backup",
        pkg.to_str().unwrap(),
        "--device",
        sim.address(),
        "--trust",
        keys.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let folder = std::fs::read_dir(&out_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    // Damage the identity partitions on the device.
    let parts = layout(&lun_file);
    let mut damaged = original.clone();
    for label in IDENTITY {
        let (_, start, n) = parts.iter().find(|p| p.0 == label).unwrap();
        damaged[(start * SECTOR) as usize..((start + n) * SECTOR) as usize].fill(0xEE);
    }
    std::fs::write(&lun_file, &damaged).unwrap();
    let out = bench.run(&[
        "restore",
        folder.to_str().unwrap(),
        "--package",
        pkg.to_str().unwrap(),
        "--device",
        sim.address(),
        "--trust",
        keys.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::read(&lun_file).unwrap() == original,
        "restored byte-identically"
    );
    // A hand-edited range is refused: without the station key the edit breaks the seal.
    let json_path = folder.join("backup.json");
    let original_json = std::fs::read_to_string(&json_path).unwrap();
    let mut edited: serde_json::Value = serde_json::from_str(&original_json).unwrap();
    edited["entries"][0]["start_sector"] = serde_json::json!(0);
    std::fs::write(&json_path, serde_json::to_vec(&edited).unwrap()).unwrap();
    let out = bench.run(&[
        "restore",
        folder.to_str().unwrap(),
        "--package",
        pkg.to_str().unwrap(),
        "--device",
        sim.address(),
        "--trust",
        keys.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("changed after this station sealed it"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Even sealed (someone with the station key), the device's own partition table decides
    // where each partition lives: a restore follows labels, so the edited range is never
    // written (sector 0 keeps the partition table) and modemst1 lands where it is.
    reseal(&bench, &folder, &serde_json::to_vec(&edited).unwrap());
    std::fs::write(&lun_file, &damaged).unwrap();
    let out = restore(&bench, &folder, &pkg, sim.address());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::read(&lun_file).unwrap() == original,
        "restored by label, not to the edited range"
    );
    // A label whose partition has another size than the backup's bytes is refused.
    edited = serde_json::from_str(&original_json).unwrap();
    assert_eq!(edited["entries"][0]["label"], "modemst1");
    // (modemst1's and fsc's labels swapped: each label once, neither of the right size)
    let fsc = edited["entries"]
        .as_array()
        .unwrap()
        .iter()
        .position(|e| e["label"] == "fsc")
        .unwrap();
    edited["entries"][0]["label"] = serde_json::json!("fsc");
    edited["entries"][fsc]["label"] = serde_json::json!("modemst1");
    reseal(&bench, &folder, &serde_json::to_vec(&edited).unwrap());
    let out = restore(&bench, &folder, &pkg, sim.address());
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the device's partition table makes it"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Another device's identity data never goes onto this one.
    edited = serde_json::from_str(&original_json).unwrap();
    edited["serial"] = serde_json::json!("SOMEONE-ELSE");
    reseal(&bench, &folder, &serde_json::to_vec(&edited).unwrap());
    let out = bench.run(&[
        "restore",
        folder.to_str().unwrap(),
        "--package",
        pkg.to_str().unwrap(),
        "--device",
        sim.address(),
        "--trust",
        keys.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("belongs to device SOMEONE-ELSE"));
    reseal(&bench, &folder, original_json.as_bytes());
    assert!(
        std::fs::read(&lun_file).unwrap() == original,
        "refusals wrote nothing"
    );
    // A tampered backup is refused before the device is touched.
    let first = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "bin"))
        .unwrap();
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&first, bytes).unwrap();
    let out = bench.run(&[
        "restore",
        folder.to_str().unwrap(),
        "--package",
        pkg.to_str().unwrap(),
        "--device",
        sim.address(),
        "--trust",
        keys.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not match its recorded SHA-256"));
    sim.stop();
}

/// Writes `json` as the folder's `backup.json`, sealed with the bench's station key: what
/// someone who stole the key could do.
fn reseal(bench: &Bench, folder: &std::path::Path, json: &[u8]) {
    let key = StationKey::open_or_create(&bench.path("home/station.key")).unwrap();
    std::fs::write(folder.join("backup.json"), json).unwrap();
    std::fs::write(folder.join("backup.sig"), key.seal(json)).unwrap();
}

/// `restore backups/X --package P --device D` with the bench's release key.
fn restore(
    bench: &Bench,
    folder: &std::path::Path,
    pkg: &std::path::Path,
    device: &str,
) -> std::process::Output {
    bench.run(&[
        "restore",
        folder.to_str().unwrap(),
        "--package",
        pkg.to_str().unwrap(),
        "--device",
        device,
        "--trust",
        bench.path("keys").to_str().unwrap(),
    ])
}

/// A "customer backup" relabelled to aim at a boot loader: modemst1's entry renamed to
/// sbl1, given sbl1's range from the device's own partition table, its file replaced and
/// its hash recomputed. Unsealed, the edit is caught by the seal (exit 3); sealed with the
/// station key, or made genuinely with `backup --partitions sbl1`, the label is refused
/// because a restore writes identity partitions only (exit 4). The LUN never changes.
#[test]
fn a_relabelled_backup_never_reaches_a_boot_partition() {
    let bench = Bench::new();
    let pkg = bench.pack_flat("stock", "1.0.12", "MF833V", "", "");
    let sim = EdlSim::start(
        &bench.path("device"),
        edl_config(),
        Some(&bench.bench_dir()),
    )
    .unwrap();
    let lun_file = sim.lun_path(0);
    let original = std::fs::read(&lun_file).unwrap();
    let out_dir = bench.path("my-backups");
    let backup = |partitions: &[&str]| {
        let mut args = vec![
            "backup".to_string(),
            pkg.display().to_string(),
            "--device".into(),
            sim.address().to_string(),
            "--trust".into(),
            bench.path("keys").display().to_string(),
            "--out".into(),
            out_dir.display().to_string(),
        ];
        for p in partitions {
            args.extend(["--partition".to_string(), p.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = bench.run(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("backup: ").map(str::to_string))
            .unwrap();
        PathBuf::from(line)
    };
    let folder = backup(&[]);
    let json_path = folder.join("backup.json");
    let mut edited: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    let entries = edited["entries"].as_array_mut().unwrap();
    let at = entries
        .iter()
        .position(|e| e["label"] == "modemst1")
        .unwrap();
    let (_, sbl1_start, sbl1_sectors) = layout(&lun_file)
        .into_iter()
        .find(|p| p.0 == "sbl1")
        .unwrap();
    let payload = vec![0xCCu8; (sbl1_sectors * SECTOR) as usize];
    let file = entries[at]["file"].as_str().unwrap().to_string();
    std::fs::write(folder.join(&file), &payload).unwrap();
    entries[at]["label"] = "sbl1".into();
    entries[at]["start_sector"] = sbl1_start.into();
    entries[at]["sectors"] = sbl1_sectors.into();
    entries[at]["sha256"] = hex::encode(Sha256::digest(&payload)).into();
    let forged = serde_json::to_vec_pretty(&edited).unwrap();
    std::fs::write(&json_path, &forged).unwrap();

    let out = restore(&bench, &folder, &pkg, sim.address());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("cannot be trusted"), "{stderr}");

    reseal(&bench, &folder, &forged);
    let out = restore(&bench, &folder, &pkg, sim.address());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("\"sbl1\", which is not an identity partition"),
        "{stderr}"
    );

    let genuine = backup(&["sbl1"]);
    let out = restore(&bench, &genuine, &pkg, sim.address());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("not an identity partition"), "{stderr}");

    assert!(
        std::fs::read(&lun_file).unwrap() == original,
        "no refusal wrote anything"
    );
    sim.stop();
}

#[test]
fn unknown_serial_ports_are_only_talked_to_with_probe() {
    use flashline::sim::modem::ModemSim;
    let bench = Bench::new();
    // Not announced anywhere: a port whose USB IDs nobody knows.
    let modem = ModemSim::start(ModemConfig::hotspot(), None, Box::new(|| {})).unwrap();
    let out = bench.run(&["info", modem.address(), "--json"]);
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--probe"));
    assert!(
        modem.commands().is_empty(),
        "nothing was written to the port"
    );
    let out = bench.run(&["info", modem.address(), "--probe", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["mode"], "modem");
    assert_eq!(info["product"], "MU300");
    assert_eq!(info["battery"]["percent"], 80);
    modem.stop();
    let edl = EdlSim::start(&bench.path("device"), EdlConfig::default(), None).unwrap();
    let out = bench.run(&["info", edl.address(), "--probe", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["mode"], "edl");
    edl.stop();
}

#[test]
fn the_sims_print_their_address_first_and_devices_lists_them() {
    use std::io::BufRead;
    let bench = Bench::new();
    let mut children = Vec::new();
    let mut addresses = Vec::new();
    for args in [
        vec!["sim", "modem", "--dir", "m1"],
        vec![
            "sim",
            "modem",
            "--hotspot",
            "--dir",
            "m2",
            "--serial",
            "HOT0001",
        ],
        vec!["sim", "edl", "--dir", "e1", "--serial", "BRICK01"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flashline"))
            .args(&args)
            .current_dir(bench.dir.path())
            .env("FLASHLINE_HOME", bench.path("home"))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(first.starts_with("serial:/dev/pts/"), "{args:?}: {first}");
        addresses.push(first.trim().to_string());
        children.push(child);
    }
    let out = bench.run(&["devices", "--json"]);
    for mut child in children {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let found: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mode = |address: &str| {
        found
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["address"] == address)
            .map(|d| d["mode"].clone())
    };
    assert_eq!(mode(&addresses[0]), Some("modem".into()));
    assert_eq!(mode(&addresses[1]), Some("modem".into()));
    assert_eq!(mode(&addresses[2]), Some("edl".into()));
}

#[test]
fn a_modem_that_never_comes_back_in_edl_gets_a_clear_message() {
    use flashline::engine::{self, Outcome};
    use flashline::package::TrustStore;
    use flashline::sim::modem::ModemSim;

    let bench = Bench::new();
    let pkg = bench.pack_flat("stock", "1.0.12", "MU300", "", "");
    let _turn = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    std::env::set_var("FLASHLINE_HOME", bench.path("home"));
    // Its switch command is answered, but no EDL device ever appears.
    let modem = ModemSim::start(
        ModemConfig::hotspot(),
        Some(&bench.bench_dir()),
        Box::new(|| {}),
    )
    .unwrap();
    let trust = TrustStore::load_dir(&bench.path("keys")).unwrap();
    let mut req = common::virtual_job(&pkg, trust, modem.address(), bench.dir.path());
    req.options.switch_timeout = Duration::from_secs(2);
    let started = Instant::now();
    let report = engine::run(&req, &mut |_| {});
    assert_eq!(report.outcome, Outcome::DeviceError);
    let error = report.error.unwrap();
    assert!(
        error.contains("did not come back in download mode"),
        "{error}"
    );
    assert!(
        error.contains("19d2:0076"),
        "the expected IDs are named: {error}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    modem.stop();
}

#[test]
fn a_reported_battery_level_rules_over_a_quirk_that_says_none() {
    use flashline::sim::modem::ModemKind;
    let bench = Bench::new();
    // An MF833V (a dongle without a battery, says the quirks file) whose unit reports
    // "+CBC: 0,55": on battery at 55 %.
    let modem = bench.modem(ModemConfig {
        kind: ModemKind::Hotspot,
        battery_percent: 55,
        ..ModemConfig::dongle()
    });
    let out = bench.run(&["info", modem.address(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["product"], "MF833V");
    assert_eq!(info["battery"]["kind"], "percent", "{info:#}");
    assert_eq!(info["battery"]["percent"], 55);
    // The same model reporting bcs 2 has no battery.
    let dongle = bench.modem(ModemConfig {
        port_path: Some("usb:sim-dongle".into()),
        usb_serial: "FLMODEM0002".into(),
        ..ModemConfig::dongle()
    });
    let out = bench.run(&["info", dongle.address(), "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["battery"]["kind"], "no-battery", "{info:#}");
    modem.stop();
    dongle.stop();
}
