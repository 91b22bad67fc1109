//! End to end: the real `flashline` binary packs, verifies and flashes packages onto the
//! virtual phone, and the bytes stored on the phone are compared with the images.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::bench::{assert_prefix, events, hashes, image, Bench};
use flashline::sim::phone::PhoneConfig;

const MIB: usize = 1024 * 1024;

fn small_phone() -> PhoneConfig {
    PhoneConfig {
        partitions: vec![
            ("boot".into(), 4 * MIB as u64),
            ("system".into(), 8 * MIB as u64),
        ],
        ..PhoneConfig::default()
    }
}

#[test]
fn raw_images_land_byte_for_byte_on_a_plain_phone() {
    let bench = Bench::new();
    let boot = image(MIB, 0, 0);
    let system = image(2 * MIB, MIB, 4096);
    let pkg = bench.pack(
        "stock",
        "2.1.0",
        7,
        "zte-demo-phone",
        &[("boot", &boot), ("system", &system)],
    );
    let (phone, dir) = bench.phone(small_phone());
    let (out, report) = bench.flash(&pkg, &phone, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_prefix(&dir.join("boot.img"), &boot);
    assert_prefix(&dir.join("system.img"), &system);
    assert_eq!(report["outcome"], "success");
    assert_eq!(report["images"][1]["status"], "written");
    assert_eq!(report["package"]["signer_name"], "release");
    let ev = events(&out);
    assert_eq!(ev.first().unwrap()["event"], "stage");
    assert_eq!(ev.last().unwrap()["event"], "finished");
    assert!(ev.iter().any(|e| e["event"] == "progress"));
}

#[test]
fn images_larger_than_the_download_buffer_are_split_into_sparse_pieces() {
    let bench = Bench::new();
    let system = image(3 * MIB, 2 * MIB, 64 * 1024);
    let pkg = bench.pack(
        "stock",
        "2.1.0",
        7,
        "zte-demo-phone",
        &[("system", &system)],
    );
    let (phone, dir) = bench.phone(PhoneConfig {
        max_download_size: MIB as u32,
        ..small_phone()
    });
    let (out, report) = bench.flash(&pkg, &phone, &[]);
    assert!(out.status.success(), "{report:#}");
    assert_prefix(&dir.join("system.img"), &system);
    let downloads = phone
        .commands()
        .iter()
        .filter(|c| c.starts_with("download:"))
        .count();
    assert!(
        downloads >= 4,
        "expected several sparse pieces, saw {downloads} downloads"
    );
}

#[test]
fn ab_phone_gets_the_inactive_slot_and_switches_last() {
    let bench = Bench::new();
    let mut boot = image(MIB, 0, 0);
    let marker = b"FLASHLINE-VERSION=2.1.0\nFLASHLINE-SECURITY=8\n";
    boot[..marker.len()].copy_from_slice(marker);
    let pkg = bench.pack("stock", "2.1.0", 8, "zte-demo-phone", &[("boot", &boot)]);
    let (phone, dir) = bench.phone(PhoneConfig {
        slots: true,
        ..small_phone()
    });
    let before_a = std::fs::read(dir.join("boot_a.img")).unwrap();
    let (out, report) = bench.flash(&pkg, &phone, &[]);
    assert!(out.status.success(), "{report:#}");
    assert_prefix(&dir.join("boot_b.img"), &boot);
    assert_eq!(
        std::fs::read(dir.join("boot_a.img")).unwrap(),
        before_a,
        "the running slot is untouched"
    );
    assert_eq!(report["activated_slot"], "b");
    let commands = phone.commands();
    let flash = commands.iter().position(|c| c == "flash:boot_b").unwrap();
    let switch = commands.iter().position(|c| c == "set_active:b").unwrap();
    assert!(
        flash < switch,
        "the slot is switched only after the write: {commands:?}"
    );
}

#[test]
fn every_refusal_leaves_every_partition_unchanged() {
    let bench = Bench::new();
    let boot = image(MIB, 0, 0);
    let cases: Vec<(&str, PathBuf, PhoneConfig, &str)> = vec![
        (
            "wrong product",
            bench.pack("other", "2.1.0", 7, "some-other-phone", &[("boot", &boot)]),
            small_phone(),
            "product",
        ),
        (
            "security downgrade",
            bench.pack("sec", "2.1.0", 6, "zte-demo-phone", &[("boot", &boot)]),
            small_phone(),
            "security-version",
        ),
        (
            "version downgrade",
            bench.pack("old", "1.9.0", 7, "zte-demo-phone", &[("boot", &boot)]),
            small_phone(),
            "version",
        ),
        (
            "low battery",
            bench.pack("bat", "2.1.0", 7, "zte-demo-phone", &[("boot", &boot)]),
            PhoneConfig {
                battery_percent: Some(12),
                ..small_phone()
            },
            "battery",
        ),
        (
            "locked bootloader",
            bench.pack("locked", "2.1.0", 7, "zte-demo-phone", &[("boot", &boot)]),
            PhoneConfig {
                locked: true,
                ..small_phone()
            },
            "lock",
        ),
        (
            "image larger than its partition",
            bench.pack(
                "big",
                "2.1.0",
                7,
                "zte-demo-phone",
                &[("boot", &image(5 * MIB, 0, 0))],
            ),
            small_phone(),
            "storage:boot",
        ),
    ];
    for (what, pkg, cfg, check) in cases {
        let (phone, dir) = bench.phone(cfg);
        let before = hashes(&dir);
        let (out, report) = bench.flash(&pkg, &phone, &[]);
        assert_eq!(out.status.code(), Some(4), "{what}: {report:#}");
        assert_eq!(report["outcome"], "preflight-refused", "{what}");
        let refused: Vec<_> = report["preflight"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["status"] == "refuse")
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(refused, vec![check.to_string()], "{what}");
        assert!(
            !phone
                .commands()
                .iter()
                .any(|c| c.starts_with("download") || c.starts_with("flash")),
            "{what}"
        );
        assert_eq!(hashes(&dir), before, "{what}: partitions changed");
        phone.stop();
    }
}

#[test]
fn allow_older_is_an_explicit_recorded_choice() {
    let bench = Bench::new();
    let boot = image(MIB, 0, 0);
    let pkg = bench.pack("old", "1.9.0", 7, "zte-demo-phone", &[("boot", &boot)]);
    let (phone, dir) = bench.phone(small_phone());
    let (out, report) = bench.flash(&pkg, &phone, &["--allow-older"]);
    assert!(out.status.success(), "{report:#}");
    assert_prefix(&dir.join("boot.img"), &boot);
    assert_eq!(report["overrides"][0], "--allow-older");
}

#[test]
fn a_damaged_or_untrusted_package_is_rejected_before_the_device_is_touched() {
    let bench = Bench::new();
    let pkg = bench.pack(
        "stock",
        "2.1.0",
        7,
        "zte-demo-phone",
        &[("boot", &image(64 * 1024, 0, 0))],
    );
    let good = std::fs::read(&pkg).unwrap();
    let (phone, dir) = bench.phone(small_phone());
    let bad = bench.path("bad.flpkg");
    // A damaged image byte (the image is the package's last 64 KiB) is caught by its
    // signed block hash on its way to the device: the download stops before the damaged
    // block leaves, `flash` is never sent and the partition is untouched.
    let image_start = good.len() - 64 * 1024;
    for at in [image_start, good.len() / 2 + 1, good.len() - 1] {
        let mut b = good.clone();
        b[at] ^= 0x01;
        std::fs::write(&bad, &b).unwrap();
        let before = phone.commands().len();
        let (out, report) = bench.flash(&bad, &phone, &[]);
        assert!(!out.status.success(), "byte {at}");
        assert!(
            report["error"]
                .as_str()
                .unwrap()
                .contains("changed since it was verified"),
            "byte {at}: {report:#}"
        );
        let sent = phone.commands()[before..].to_vec();
        assert!(
            sent.iter().all(|c| !c.starts_with("flash:")),
            "byte {at}: {sent:?}"
        );
        let stored = std::fs::read(dir.join("boot.img")).unwrap();
        assert!(
            stored.iter().all(|&b| b == 0),
            "byte {at}: boot was written"
        );
    }
    let touched = phone.commands().len();
    let mut variants: Vec<(String, Vec<u8>)> = Vec::new();
    for at in [0, 9, 40, 200, image_start - 1] {
        let mut b = good.clone();
        b[at] ^= 0x01;
        variants.push((format!("byte {at} flipped"), b));
    }
    for at in [0, 10, 100, good.len() - 1] {
        variants.push((format!("truncated at {at}"), good[..at].to_vec()));
    }
    let mut trailing = good.clone();
    trailing.push(0);
    variants.push(("trailing byte".into(), trailing));
    for (what, bytes) in variants {
        std::fs::write(&bad, &bytes).unwrap();
        let (out, report) = bench.flash(&bad, &phone, &[]);
        assert_eq!(out.status.code(), Some(3), "{what}");
        assert_eq!(report["outcome"], "package-rejected", "{what}");
        assert!(
            report["error"]
                .as_str()
                .unwrap()
                .starts_with("package rejected"),
            "{what}"
        );
    }
    // Signed by a key the technician never trusted.
    let other = Bench::new();
    let foreign = other.pack(
        "stock",
        "2.1.0",
        7,
        "zte-demo-phone",
        &[("boot", &image(4096, 0, 0))],
    );
    let (out, report) = bench.flash(&foreign, &phone, &[]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        report["error"].as_str().unwrap().contains("key"),
        "{report:#}"
    );
    assert!(
        phone.commands().len() == touched,
        "no connection may be opened: {:?}",
        &phone.commands()[touched..]
    );
}

#[test]
fn a_device_without_version_facts_flashes_and_history_guards_downgrades() {
    // The quirks file reads this model's version and battery percentage from variables the
    // virtual phone does not serve, so it looks like a device that reports neither and only
    // says `battery-soc-ok: yes`.
    let bench = Bench::new();
    let boot = image(MIB, 0, 0);
    let new = bench.pack("legacy", "3.0.0", 7, "zte-legacy-phone", &[("boot", &boot)]);
    let old = bench.pack(
        "legacy",
        "2.0.0",
        7,
        "zte-legacy-phone",
        &[("boot", &image(MIB / 2, 0, 0))],
    );
    let (phone, dir) = bench.phone(PhoneConfig {
        product: "zte-legacy-phone".into(),
        ..small_phone()
    });
    let (out, report) = bench.flash(&new, &phone, &[]);
    assert!(out.status.success(), "{report:#}");
    assert_prefix(&dir.join("boot.img"), &boot);
    let battery = report["preflight"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "battery")
        .unwrap();
    assert_eq!(battery["status"], "pass", "battery-soc-ok: yes passes");
    let before = hashes(&dir);
    let (out, report) = bench.flash(&old, &phone, &[]);
    assert_eq!(out.status.code(), Some(4), "{report:#}");
    let version = report["preflight"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "version")
        .unwrap();
    assert!(
        version["message"].as_str().unwrap().contains("history"),
        "{version:#}"
    );
    assert_eq!(hashes(&dir), before);
}

/// The demo key's secret half is public: a package it signs never reaches a device that is
/// not one of flashline's own virtual devices, whether the key sits in the default trust
/// folder or in a folder named with `--trust`. From the command line a `tcp:` address is
/// never virtual, so the virtual phone stands in for a real one here.
#[test]
fn the_demo_key_is_refused_for_real_devices_even_with_trust() {
    let bench = Bench::new();
    let trust = bench.path("home/trust");
    std::fs::create_dir_all(&trust).unwrap();
    let demo_pub =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo-keys/flashline-demo-INSECURE.pub");
    std::fs::copy(&demo_pub, trust.join("flashline-demo-INSECURE.pub")).unwrap();
    let dir = bench.path("src");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("boot.img"), image(4096, 0, 0)).unwrap();
    std::fs::write(
        dir.join("manifest.toml"),
        "name = \"demo\"\nversion = \"2.1.0\"\nsecurity_version = 7\nmin_battery_percent = 30\n[[target]]\nproduct = \"zte-demo-phone\"\n[[image]]\npartition = \"boot\"\nfile = \"boot.img\"\n",
    )
    .unwrap();
    let pkg = bench.path("demo.flpkg");
    let key =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo-keys/flashline-demo-INSECURE.key");
    let out = bench.run(&[
        "pack",
        dir.join("manifest.toml").to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "-o",
        pkg.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let (phone, phone_dir) = bench.phone(small_phone());
    let address = phone.device_address();
    let out = bench.run(&[
        "flash",
        pkg.to_str().unwrap(),
        "--device",
        &address,
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("trusted only for virtual devices"));
    // Named explicitly, it is refused all the same, and nothing advises naming it.
    let before = hashes(&phone_dir);
    let demo_keys = demo_pub.parent().unwrap().to_str().unwrap();
    let out = bench.run(&[
        "flash",
        pkg.to_str().unwrap(),
        "--device",
        &address,
        "--trust",
        demo_keys,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{stdout}");
    assert!(
        stdout.contains("trusted only for virtual devices"),
        "{stdout}"
    );
    assert!(!stdout.contains("--trust"), "{stdout}");
    assert_eq!(hashes(&phone_dir), before, "nothing was written");
    assert!(
        phone.commands().iter().all(|c| !c.starts_with("download:")
            && !c.starts_with("flash:")
            && !c.starts_with("erase:")),
        "{:?}",
        phone.commands()
    );
}

#[test]
fn dry_run_writes_nothing_and_info_reads_the_device() {
    let bench = Bench::new();
    let pkg = bench.pack(
        "stock",
        "2.1.0",
        7,
        "zte-demo-phone",
        &[("boot", &image(MIB, 0, 0))],
    );
    let (phone, dir) = bench.phone(small_phone());
    let before = hashes(&dir);
    let (out, report) = bench.flash(&pkg, &phone, &["--dry-run"]);
    assert!(out.status.success());
    assert_eq!(report["outcome"], "dry-run");
    assert_eq!(hashes(&dir), before);
    let out = bench.run(&["info", &phone.device_address(), "--json"]);
    assert!(out.status.success());
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["product"], "zte-demo-phone");
    assert_eq!(info["serial"], "FLSIM0001");
    assert_eq!(info["battery"]["percent"], 80);
    let out = bench.run(&["devices", "--connect", &phone.device_address(), "--json"]);
    let found: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let phone_entry = found
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["address"] == phone.device_address().as_str())
        .expect("the phone is listed");
    assert_eq!(phone_entry["serial"], "FLSIM0001");
    assert_eq!(phone_entry["mode"], "fastboot");
}

#[test]
fn force_battery_flashes_a_device_whose_battery_is_low() {
    let bench = Bench::new();
    let boot = image(MIB, 0, 0);
    let pkg = bench.pack("stock", "2.1.0", 7, "zte-demo-phone", &[("boot", &boot)]);
    let (phone, dir) = bench.phone(PhoneConfig {
        battery_percent: Some(12),
        ..small_phone()
    });
    let (out, report) = bench.flash(&pkg, &phone, &["--force-battery"]);
    assert!(out.status.success(), "{report:#}");
    assert_prefix(&dir.join("boot.img"), &boot);
    assert_eq!(report["overrides"][0], "--force-battery");
}

/// Encodes `raw` as one Android sparse image with flashline's own writer.
fn to_sparse(raw: &[u8]) -> Vec<u8> {
    use flashline::protocol::sparse;
    let layout = sparse::scan_raw(raw, raw.len() as u64).unwrap();
    let pieces = sparse::split(&layout, 1 << 31).unwrap();
    assert_eq!(pieces.len(), 1);
    let mut out = Vec::new();
    let mut cursor = sparse::SourceCursor::new(raw);
    pieces[0]
        .write(&layout, &mut cursor, &mut out, &mut vec![0; 65536])
        .unwrap();
    out
}

#[test]
fn sparse_images_in_a_package_are_sent_whole_or_resplit() {
    let bench = Bench::new();
    let raw = image(2 * MIB, 3 * MIB, 8192);
    let sparse = to_sparse(&raw);
    assert!(sparse.len() < raw.len());
    let pkg = bench.pack(
        "sparse",
        "2.1.0",
        7,
        "zte-demo-phone",
        &[("system", &sparse)],
    );
    let out = bench.run(&["inspect", pkg.to_str().unwrap(), "--json"]);
    let inspection: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        inspection["manifest"]["images"][0]["sparse"]["expanded_size"],
        raw.len()
    );
    for (max, pieces) in [(16 * MIB as u32, 1), (MIB as u32, 3)] {
        let (phone, dir) = bench.phone(PhoneConfig {
            max_download_size: max,
            ..small_phone()
        });
        let (out, report) = bench.flash(&pkg, &phone, &[]);
        assert!(out.status.success(), "{report:#}");
        assert_prefix(&dir.join("system.img"), &raw);
        let downloads = phone
            .commands()
            .iter()
            .filter(|c| c.starts_with("download:"))
            .count();
        assert!(downloads >= pieces, "max {max}: {downloads} downloads");
        phone.stop();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn the_sim_phone_command_prints_its_address_first_and_serves_the_cli() {
    use std::io::BufRead;
    let bench = Bench::new();
    let dir = bench.path("cli-phone");
    let mut sim = Command::new(env!("CARGO_BIN_EXE_flashline"))
        .args([
            "sim",
            "phone",
            "--listen",
            "127.0.0.1:0",
            "--dir",
            dir.to_str().unwrap(),
        ])
        .args([
            "--product",
            "cli-phone",
            "--serial",
            "CLI42",
            "--slots",
            "--partition",
            "boot=1M",
        ])
        .args([
            "--battery",
            "55",
            "--firmware-version",
            "1.2.3",
            "--security-version",
            "3",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(sim.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let address = first.trim().to_string();
    assert!(address.starts_with("tcp:127.0.0.1:"), "{address}");
    let out = bench.run(&["info", &address, "--json"]);
    sim.kill().unwrap();
    sim.wait().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["product"], "cli-phone");
    assert_eq!(info["serial"], "CLI42");
    assert_eq!(info["firmware_version_raw"], "1.2.3");
    assert_eq!(info["security_version"], 3);
    assert_eq!(info["battery"]["percent"], 55);
    assert_eq!(info["slots"]["current"], "a");
    assert_eq!(info["partitions"]["boot_b"], 1024 * 1024);
    assert_eq!(
        std::fs::metadata(dir.join("boot_a.img")).unwrap().len(),
        1024 * 1024
    );
}

#[test]
fn the_demo_runs_the_whole_job_and_checks_the_bytes() {
    let bench = Bench::new();
    let dir = bench.path("demo");
    let out = bench.run(&["demo", "--cli", "--dir", dir.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Done: success"), "{text}");
    // bootloader and boot in the bootloader, system and vendor in super, which the
    // bootloader takes whole (optimized super, the default): fastbootd is visited only to
    // read super's size.
    assert_eq!(
        text.matches("identical to the package image").count(),
        4,
        "{text}"
    );
    for step in [
        "reboot-bootloader:",
        "reboot-fastboot:",
        "flash:super: flash super (whole image)",
    ] {
        assert!(text.contains(step), "{step}: {text}");
    }
    assert!(!text.contains("update-super:"), "{text}");
    assert!(text.contains("reports firmware 2.1.0"), "{text}");
    let reports: Vec<_> = std::fs::read_dir(dir.join("reports")).unwrap().collect();
    assert_eq!(reports.len(), 1);
}

#[test]
fn an_image_that_cannot_be_sent_is_refused_before_any_image_is_written() {
    // A download buffer too small for even one sparse chunk: the second image cannot be
    // cut into pieces, which is found before the first (small) image is written.
    let bench = Bench::new();
    let boot = image(40, 0, 0);
    let system = image(64 * 1024, 0, 0);
    let pkg = bench.pack(
        "stock",
        "2.1.0",
        7,
        "zte-demo-phone",
        &[("boot", &boot), ("system", &system)],
    );
    let (phone, dir) = bench.phone(PhoneConfig {
        max_download_size: 48,
        ..small_phone()
    });
    let before = hashes(&dir);
    let (out, report) = bench.flash(&pkg, &phone, &[]);
    assert!(!out.status.success());
    assert_eq!(report["outcome"], "preflight-refused", "{report:#}");
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("system cannot be sent"),
        "{report:#}"
    );
    assert!(
        !phone.commands().iter().any(|c| c.starts_with("flash:")),
        "{:?}",
        phone.commands()
    );
    assert_eq!(hashes(&dir), before);
}
