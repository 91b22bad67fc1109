//! What flashline lets through and what it refuses on phones as they really answer, end to
//! end against the virtual phone: bootloader version strings that are not versions, a
//! package's `[requires]`, a locked bootloader, an unreported or low battery, `has-slot`
//! partitions written live, a long silent write, and a cancelled download.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::bench::{assert_prefix, events, hashes, image, Bench};
use flashline::engine::{self, Cancel, Event, Outcome};
use flashline::package::TrustStore;
use flashline::sim::phone::{PhoneConfig, PhoneSim, RunningPhone};

const MIB: usize = 1024 * 1024;

/// A phone flashline has no quirks entry for, so no comparable firmware version.
const PRODUCT: &str = "crosshatch";

fn phone_config(serial: &str, bootloader: &str) -> PhoneConfig {
    PhoneConfig {
        product: PRODUCT.into(),
        serial: serial.into(),
        firmware_version: bootloader.into(),
        partitions: vec![("boot".into(), 4 * MIB as u64)],
        version_partition: None,
        ..PhoneConfig::default()
    }
}

fn start(dir: &Path, cfg: PhoneConfig) -> RunningPhone {
    PhoneSim::start("127.0.0.1:0".parse().unwrap(), dir, cfg).unwrap()
}

/// The preflight line named `name` in a report.
fn check<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["preflight"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {report:#}"))
}

/// Commands that write to storage or fill the download buffer.
fn writes(phone: &RunningPhone) -> Vec<String> {
    phone
        .commands()
        .into_iter()
        .filter(|c| c.starts_with("download") || c.starts_with("flash") || c.starts_with("erase"))
        .collect()
}

/// Packs a manifest written by hand (for `[requires]`), with one `boot` image.
fn pack_with(bench: &Bench, name: &str, extra: &str, boot: &[u8]) -> PathBuf {
    let src = bench.path(&format!("src-{name}"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("boot.img"), boot).unwrap();
    std::fs::write(
        src.join("manifest.toml"),
        format!(
            "name = \"{name}\"\nversion = \"2.1.0\"\nsecurity_version = 7\nmin_battery_percent = 30\n\
             [[target]]\nproduct = \"{PRODUCT}\"\n{extra}\n[[image]]\npartition = \"boot\"\nfile = \"boot.img\"\n"
        ),
    )
    .unwrap();
    bench.pack_manifest(&src, name)
}

#[test]
fn bootloader_strings_that_are_not_versions_warn_and_flash_without_allow_older() {
    let bench = Bench::new();
    let boot = image(MIB, 0, 0);
    let pkg = bench.pack("stock", "2.1.0", 7, PRODUCT, &[("boot", &boot)]);
    // Real version-bootloader answers from public getvar dumps (a Pixel 3, a Motorola
    // UEFI bootloader), an empty one and a placeholder.
    for (n, bootloader) in [
        "b1c1-0.3-6863019",
        "MBM-3.0-uefi-e666aa4b16c-220816",
        "",
        "unknown",
    ]
    .into_iter()
    .enumerate()
    {
        let dir = bench.path(&format!("phone-{n}"));
        let phone = start(&dir, phone_config(&format!("SER{n}"), bootloader));
        let (out, report) = bench.flash(&pkg, &phone, &[]);
        assert!(out.status.success(), "{bootloader:?}: {report:#}");
        assert_prefix(&dir.join("boot.img"), &boot);
        let version = check(&report, "version");
        assert_eq!(version["status"], "warn", "{bootloader:?}: {version:#}");
        assert_eq!(version["required"], "≤ 2.1.0");
        let message = version["message"].as_str().unwrap();
        assert!(message.contains("2.1.0"), "{message}");
        if bootloader.is_empty() || bootloader == "unknown" {
            // An empty value and a placeholder are read as "not reported".
            assert_eq!(version["actual"], "not reported", "{bootloader:?}");
        } else {
            assert_eq!(version["actual"], bootloader);
            assert!(message.contains(bootloader), "{message}");
        }
        assert_eq!(report["overrides"].as_array().unwrap().len(), 0);
        let warned = events(&out).into_iter().any(|e| {
            e["event"] == "preflight"
                && e["checks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c["name"] == "version" && c["status"] == "warn")
        });
        assert!(warned, "{bootloader:?}: the event carries the warning");
        phone.stop();
    }

    // SER0 now has flashline's own record of 2.1.0: an older package is refused from it,
    // and the refusal says where the version came from.
    let old = bench.pack("stock", "2.0.0", 7, PRODUCT, &[("boot", &boot)]);
    let dir = bench.path("phone-0");
    let phone = start(&dir, phone_config("SER0", "b1c1-0.3-6863019"));
    let before = hashes(&dir);
    let (out, report) = bench.flash(&old, &phone, &[]);
    assert_eq!(out.status.code(), Some(4), "{report:#}");
    let version = check(&report, "version");
    assert_eq!(version["status"], "refuse");
    let message = version["message"].as_str().unwrap();
    assert!(message.contains("history"), "{message}");
    assert!(message.contains("b1c1-0.3-6863019"), "{message}");
    assert!(writes(&phone).is_empty(), "{:?}", phone.commands());
    assert_eq!(hashes(&dir), before);
}

#[test]
fn a_requires_mismatch_is_refused_with_actual_and_required_before_any_write() {
    let bench = Bench::new();
    let boot = image(MIB, 0, 0);
    let other = pack_with(
        &bench,
        "other-bootloader",
        "[requires]\nversion-bootloader = [\"b1c1-0.4-7617406\", \"b1c1-0.4-7800000\"]\n",
        &boot,
    );
    let dir = bench.path("phone");
    let phone = start(&dir, phone_config("REQ1", "b1c1-0.3-6863019"));
    let before = hashes(&dir);
    let (out, report) = bench.flash(&other, &phone, &[]);
    assert_eq!(out.status.code(), Some(4), "{report:#}");
    let requires = check(&report, "requires:version-bootloader");
    assert_eq!(requires["status"], "refuse");
    assert_eq!(requires["actual"], "b1c1-0.3-6863019");
    assert_eq!(requires["required"], "b1c1-0.4-7617406 or b1c1-0.4-7800000");
    assert!(writes(&phone).is_empty(), "{:?}", phone.commands());
    assert_eq!(hashes(&dir), before);

    // A variable the device does not report does not meet a requirement either.
    let baseband = pack_with(
        &bench,
        "baseband",
        "[requires]\nversion-baseband = [\"g8150-00123\"]\n",
        &boot,
    );
    let (out, report) = bench.flash(&baseband, &phone, &[]);
    assert_eq!(out.status.code(), Some(4), "{report:#}");
    assert_eq!(
        check(&report, "requires:version-baseband")["actual"],
        "not reported"
    );
    assert!(writes(&phone).is_empty(), "{:?}", phone.commands());

    // android-info.txt's `board` is answered by `product`, as Google's fastboot reads it.
    let board = pack_with(&bench, "board", "[requires]\nboard = [\"sdm845\"]\n", &boot);
    let (out, report) = bench.flash(&board, &phone, &[]);
    assert_eq!(out.status.code(), Some(4), "{report:#}");
    assert_eq!(check(&report, "requires:board")["actual"], "crosshatch");
    assert!(writes(&phone).is_empty(), "{:?}", phone.commands());
    assert!(!phone.commands().contains(&"getvar:board".to_string()));

    // The matching package passes the same checks and is written.
    let matching = pack_with(
        &bench,
        "matching",
        "[requires]\nversion-bootloader = [\"b1c1-0.3-6863019\"]\nboard = [\"crosshatch\"]\n",
        &boot,
    );
    let (out, report) = bench.flash(&matching, &phone, &[]);
    assert!(out.status.success(), "{report:#}");
    assert_eq!(
        check(&report, "requires:version-bootloader")["status"],
        "pass"
    );
    assert_eq!(check(&report, "requires:board")["status"], "pass");
    assert_prefix(&dir.join("boot.img"), &boot);
    let inspect = bench.run(&["inspect", matching.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(
        text.contains("requires         version-bootloader = b1c1-0.3-6863019"),
        "{text}"
    );
}

#[test]
fn a_locked_phone_is_refused_before_the_first_write() {
    let bench = Bench::new();
    let boot = image(MIB, 0, 0);
    let pkg = bench.pack("stock", "2.1.0", 7, "zte-demo-phone", &[("boot", &boot)]);
    let dir = bench.path("phone");
    let phone = start(
        &dir,
        PhoneConfig {
            locked: true,
            partitions: vec![("boot".into(), 4 * MIB as u64)],
            ..PhoneConfig::default()
        },
    );
    let before = hashes(&dir);
    let (out, report) = bench.flash(&pkg, &phone, &[]);
    assert_eq!(out.status.code(), Some(4), "{report:#}");
    let lock = check(&report, "lock");
    assert_eq!(lock["status"], "refuse");
    assert_eq!(lock["actual"], "locked");
    let message = lock["message"].as_str().unwrap();
    assert!(message.contains("fastboot flashing unlock"), "{message}");
    assert!(message.contains("wipes all user data"), "{message}");
    assert!(message.contains("never unlocks"), "{message}");
    assert_eq!(report["device"]["lock"], "locked");
    assert!(writes(&phone).is_empty(), "{:?}", phone.commands());
    assert_eq!(hashes(&dir), before);

    // The virtual phone itself refuses writes as a locked bootloader does.
    let transport = flashline::transport::tcp::TcpTransport::connect(
        &phone.device_address(),
        Duration::from_secs(2),
    )
    .unwrap();
    let mut client = flashline::protocol::fastboot::client::Client::new(transport);
    client.download(4, |w| w.write_all(b"boot")).unwrap();
    let err = client.flash("boot").unwrap_err().to_string();
    assert!(
        err.contains("Flashing is not allowed in Lock State"),
        "{err}"
    );
    let err = client.erase("boot", None).unwrap_err().to_string();
    assert!(err.contains("Erase is not allowed in Lock State"), "{err}");
    drop(client);
    assert_eq!(hashes(&dir), before);

    // `flashline info` shows it.
    let info = bench.run(&["info", &phone.device_address()]);
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(text.contains("bootloader        locked"), "{text}");
}

#[test]
fn an_unreported_battery_warns_and_only_a_low_one_is_refused() {
    let bench = Bench::new();
    let boot = image(MIB, 0, 0);
    let pkg = bench.pack("stock", "2.1.0", 7, "zte-demo-phone", &[("boot", &boot)]);
    let config = |battery| PhoneConfig {
        battery_percent: battery,
        partitions: vec![("boot".into(), 4 * MIB as u64)],
        ..PhoneConfig::default()
    };

    let dir = bench.path("silent");
    let phone = start(&dir, config(None));
    let (out, report) = bench.flash(&pkg, &phone, &[]);
    assert!(out.status.success(), "{report:#}");
    assert_prefix(&dir.join("boot.img"), &boot);
    let battery = check(&report, "battery");
    assert_eq!(battery["status"], "warn");
    assert_eq!(battery["actual"], "not reported by the bootloader");
    assert_eq!(battery["required"], "≥ 30 %");
    assert_eq!(report["overrides"].as_array().unwrap().len(), 0);
    phone.stop();

    let dir = bench.path("low");
    let phone = start(&dir, config(Some(12)));
    let before = hashes(&dir);
    let (out, report) = bench.flash(&pkg, &phone, &[]);
    assert_eq!(out.status.code(), Some(4), "{report:#}");
    assert_eq!(check(&report, "battery")["status"], "refuse");
    assert_eq!(check(&report, "battery")["actual"], "12 %");
    assert!(writes(&phone).is_empty());
    assert_eq!(hashes(&dir), before);

    // On external power, a technician may flash a low battery on purpose.
    let (out, report) = bench.flash(&pkg, &phone, &["--force-battery"]);
    assert!(out.status.success(), "{report:#}");
    assert_eq!(report["overrides"][0], "--force-battery");
    assert_prefix(&dir.join("boot.img"), &boot);
}

#[test]
fn partitions_without_slots_are_written_live_and_say_so() {
    let bench = Bench::new();
    let boot = image(MIB, 0, 0);
    let persist = image(64 * 1024, 0, 0);
    let pkg = bench.pack(
        "stock",
        "2.1.0",
        7,
        "zte-demo-phone",
        &[("boot", &boot), ("persist", &persist)],
    );
    let dir = bench.path("phone");
    let phone = start(
        &dir,
        PhoneConfig {
            slots: true,
            partitions: vec![
                ("boot".into(), 4 * MIB as u64),
                ("persist".into(), MIB as u64),
            ],
            ..PhoneConfig::default()
        },
    );
    let (out, report) = bench.flash(&pkg, &phone, &[]);
    assert!(out.status.success(), "{report:#}");
    assert_prefix(&dir.join("boot_b.img"), &boot);
    assert_prefix(&dir.join("persist.img"), &persist);
    assert_eq!(report["activated_slot"], "b");
    let plan = events(&out)
        .into_iter()
        .find(|e| e["event"] == "plan-ready")
        .expect("a plan event");
    let writes = plan["writes"].as_array().unwrap();
    assert_eq!(writes[0]["target"], "boot_b");
    assert_eq!(writes[0]["live"], false);
    assert_eq!(writes[1]["target"], "persist");
    assert_eq!(writes[1]["live"], true);
    let asked: Vec<String> = phone
        .commands()
        .into_iter()
        .filter(|c| c.starts_with("getvar:has-slot"))
        .collect();
    // `getvar:all` listed has-slot for every partition, so nothing was asked on its own.
    assert!(asked.is_empty(), "{asked:?}");

    // A dry run says it to people too.
    let keys = bench.path("keys");
    let report = bench.path("dry.json");
    let address = phone.device_address();
    let dry = bench.run(&[
        "flash",
        pkg.to_str().unwrap(),
        "--trust",
        keys.to_str().unwrap(),
        "--device",
        &address,
        "--report",
        report.to_str().unwrap(),
        "--dry-run",
    ]);
    let text = String::from_utf8_lossy(&dry.stdout);
    assert!(dry.status.success(), "{text}");
    let persist_line = text.lines().find(|l| l.contains("→ persist")).unwrap();
    assert!(persist_line.contains("written live"), "{text}");
    let boot_line = text.lines().find(|l| l.contains("→ boot_a")).unwrap();
    assert!(!boot_line.contains("written live"), "{text}");
}

#[test]
fn a_45_second_silent_flash_succeeds_whatever_the_timeout() {
    let bench = Bench::new();
    let boot = image(MIB, 0, 0);
    let pkg = bench.pack("stock", "2.1.0", 7, "zte-demo-phone", &[("boot", &boot)]);
    let dir = bench.path("phone");
    // 1 MiB at this rate takes 45 s, with no INFO while the phone writes.
    let rate = (MIB as u64) / 45;
    let phone = start(
        &dir,
        PhoneConfig {
            write_rate: Some(rate),
            partitions: vec![("boot".into(), 4 * MIB as u64)],
            ..PhoneConfig::default()
        },
    );
    let started = Instant::now();
    let (out, report) = bench.flash(&pkg, &phone, &["--timeout", "5s"]);
    let took = started.elapsed();
    assert!(out.status.success(), "{report:#}");
    assert!(took >= Duration::from_secs(45), "{took:?}");
    assert_prefix(&dir.join("boot.img"), &boot);
    assert_eq!(report["images"][0]["status"], "written");
}

#[test]
fn a_cancelled_download_is_padded_and_the_rerun_needs_no_replug() {
    let dir = tempfile::tempdir().unwrap();
    let bench = Bench::new();
    let system = image(16 * MIB, 0, 0);
    let pkg = bench.pack(
        "stock",
        "2.1.0",
        7,
        "zte-demo-phone",
        &[("system", &system)],
    );
    let phone_dir = dir.path().join("phone");
    // As over USB: closing the connection does not end a download the phone was promised.
    let phone = start(
        &phone_dir,
        PhoneConfig {
            keep_download_on_close: true,
            link_rate: Some(40_000_000),
            ..PhoneConfig::default()
        },
    );
    let trust = TrustStore::load_dir(&bench.path("keys")).unwrap();
    let cancel = Cancel::default();
    let mut req = common::virtual_job(&pkg, trust.clone(), &phone.device_address(), dir.path());
    req.options.cancel = cancel.clone();
    let report = engine::run(&req, &mut |event| {
        if let Event::Progress { index: 0, .. } = event {
            cancel.cancel();
        }
    });
    assert_eq!(report.outcome, Outcome::Cancelled, "{:?}", report.error);
    let error = report.error.unwrap();
    assert!(error.contains("sent as zeros and not flashed"), "{error}");
    assert!(
        !phone.commands().iter().any(|c| c.starts_with("flash:")),
        "the cut image was not committed: {:?}",
        phone.commands()
    );

    // Same phone, same process, no replug: the job runs again to the end.
    let mut again = common::virtual_job(&pkg, trust, &phone.device_address(), dir.path());
    again.options.device_timeout = Some(Duration::from_secs(5));
    let report = engine::run(&again, &mut |_| {});
    assert_eq!(report.outcome, Outcome::Success, "{:?}", report.error);
    assert_prefix(&phone_dir.join("system.img"), &system);
}

/// The virtual phone keeps expecting a download's bytes when the host goes away in the
/// middle of it, as a bootloader over USB does: the next session's command is taken as
/// data, and only the missing bytes complete it.
#[test]
fn the_phone_keeps_expecting_a_download_across_a_closed_connection() {
    let dir = tempfile::tempdir().unwrap();
    let phone = start(
        dir.path(),
        PhoneConfig {
            keep_download_on_close: true,
            ..PhoneConfig::default()
        },
    );
    let frame = |payload: &[u8]| [&(payload.len() as u64).to_be_bytes()[..], payload].concat();
    let connect = || {
        let mut s = TcpStream::connect(phone.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        s.write_all(b"FB01").unwrap();
        let mut hello = [0u8; 4];
        s.read_exact(&mut hello).unwrap();
        s
    };
    let answer = |s: &mut TcpStream| -> Option<String> {
        let mut header = [0u8; 8];
        s.read_exact(&mut header).ok()?;
        let mut body = vec![0u8; u64::from_be_bytes(header) as usize];
        s.read_exact(&mut body).ok()?;
        Some(String::from_utf8_lossy(&body).into_owned())
    };
    let mut first = connect();
    first.write_all(&frame(b"download:00001000")).unwrap();
    assert_eq!(answer(&mut first).as_deref(), Some("DATA00001000"));
    first.write_all(&frame(&[1u8; 0x800])).unwrap();
    drop(first);

    let mut second = connect();
    let command = b"getvar:product";
    second.write_all(&frame(command)).unwrap();
    assert_eq!(answer(&mut second), None, "the command was taken as data");
    second
        .write_all(&frame(&vec![2u8; 0x800 - command.len()]))
        .unwrap();
    assert_eq!(answer(&mut second).as_deref(), Some("OKAY"));
    second.write_all(&frame(command)).unwrap();
    assert_eq!(answer(&mut second).as_deref(), Some("OKAYzte-demo-phone"));
}

#[test]
fn the_command_line_phone_can_be_locked_and_slow() {
    use std::io::BufRead;
    let bench = Bench::new();
    let dir = bench.path("cli-phone");
    let mut sim = std::process::Command::new(env!("CARGO_BIN_EXE_flashline"))
        .args(["sim", "phone", "--listen", "127.0.0.1:0", "--dir"])
        .arg(&dir)
        .args(["--partition", "boot=1M", "--locked", "--write-rate", "20M"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(sim.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let out = bench.run(&["info", first.trim(), "--json"]);
    sim.kill().unwrap();
    sim.wait().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["lock"], "locked");
    let bad = bench.run(&["sim", "phone", "--dir", "x", "--write-rate", "0"]);
    assert!(!bad.status.success());
}

/// Starts `flashline sim phone` with `args`; returns the process and its address.
fn cli_phone(dir: &Path, args: &[&str]) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut sim = std::process::Command::new(env!("CARGO_BIN_EXE_flashline"))
        .args(["sim", "phone", "--listen", "127.0.0.1:0", "--dir"])
        .arg(dir)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(sim.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    (sim, first.trim().to_string())
}

#[test]
fn every_bootloader_profile_runs_locked_and_with_a_write_rate_from_the_command_line() {
    let bench = Bench::new();
    let boot = image(MIB, 0, 0);
    let pkg = bench.pack("stock", "2.1.0", 7, "zte-demo-phone", &[("boot", &boot)]);
    for profile in ["lk", "abl", "mtk-lk", "uboot", "pixel", "fastbootd"] {
        // Locked: `info` says so, and the flash is refused before any write.
        let dir = bench.path(&format!("locked-{profile}"));
        let (mut sim, address) = cli_phone(
            &dir,
            &[
                "--profile",
                profile,
                "--write-rate",
                "20M",
                "--locked",
                "--partition",
                "boot=4M",
            ],
        );
        let out = bench.run(&["info", &address, "--json"]);
        assert!(
            out.status.success(),
            "{profile}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(info["lock"], "locked", "{profile}");
        let before = hashes(&dir);
        let args = ["flash", pkg.to_str().unwrap(), "--trust"];
        let keys = bench.path("keys");
        let out = bench.run(&[&args[..], &[keys.to_str().unwrap(), "--device", &address]].concat());
        assert_eq!(
            out.status.code(),
            Some(4),
            "{profile}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(hashes(&dir), before, "{profile}: nothing written");
        sim.kill().unwrap();
        sim.wait().unwrap();

        // Unlocked, writing at 2 MB/s: the 1 MiB image takes its half second, silently,
        // and lands whole.
        let dir = bench.path(&format!("slow-{profile}"));
        let (mut sim, address) = cli_phone(
            &dir,
            &[
                "--profile",
                profile,
                "--write-rate",
                "2M",
                "--partition",
                "boot=4M",
            ],
        );
        let started = Instant::now();
        let out = bench.run(&[&args[..], &[keys.to_str().unwrap(), "--device", &address]].concat());
        let took = started.elapsed();
        sim.kill().unwrap();
        sim.wait().unwrap();
        assert!(
            out.status.success(),
            "{profile}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(took >= Duration::from_millis(500), "{profile}: {took:?}");
        assert_prefix(&dir.join("boot.img"), &boot);
    }
}
