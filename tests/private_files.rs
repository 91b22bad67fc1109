//! What flashline writes under its home holds IMEIs and calibration data: reports and
//! backups are private (files 0600, folders 0700), never written through a symbolic link
//! someone planted, and a package path that is not a plain file is refused without hanging.
#![cfg(unix)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::bench::{image, Bench};
use common::edl::{edl_config, write_flat_build};
use flashline::sim::edl::EdlSim;
use flashline::sim::phone::PhoneConfig;

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

/// Every file and folder under `root`.
fn tree(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if std::fs::symlink_metadata(&path).unwrap().is_dir() {
                stack.push(path.clone());
            }
            out.push(path);
        }
    }
    out
}

fn flat_package(bench: &Bench) -> PathBuf {
    let src = bench.path("src");
    write_flat_build(&src, "stock", "1.0.12", "MF833V", "", "");
    bench.pack_manifest(&src, "stock-1.0.12")
}

fn phone_package(bench: &Bench) -> PathBuf {
    bench.pack(
        "stock",
        "2.1.0",
        7,
        "zte-demo-phone",
        &[("boot", &image(64 * 1024, 0, 0))],
    )
}

fn phone_config() -> PhoneConfig {
    PhoneConfig {
        partitions: vec![("boot".into(), 1 << 20)],
        ..PhoneConfig::default()
    }
}

/// `flashline flash PKG --device ADDRESS` with the report in the report folder.
fn flash(bench: &Bench, pkg: &Path, address: &str) -> std::process::Output {
    bench.run(&[
        "flash",
        pkg.to_str().unwrap(),
        "--device",
        address,
        "--trust",
        bench.path("keys").to_str().unwrap(),
    ])
}

#[test]
fn reports_and_backups_are_private_and_reports_never_overwrite() {
    let bench = Bench::new();
    let pkg = phone_package(&bench);
    let (phone, _) = bench.phone(phone_config());
    // Two jobs on the same device, back to back: two reports.
    for _ in 0..2 {
        let out = flash(&bench, &pkg, &phone.device_address());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let reports = bench.path("home/reports");
    assert_eq!(std::fs::read_dir(&reports).unwrap().count(), 2);

    let pkg = flat_package(&bench);
    let sim = EdlSim::start(
        &bench.path("device"),
        edl_config(),
        Some(&bench.path("home/bench")),
    )
    .unwrap();
    let out = bench.run(&[
        "backup",
        pkg.to_str().unwrap(),
        "--device",
        sim.address(),
        "--trust",
        bench.path("keys").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sim.stop();

    let home = bench.path("home");
    assert_eq!(mode(&home.join("station.key")), 0o600);
    let written: Vec<PathBuf> = tree(&home.join("reports"))
        .into_iter()
        .chain(tree(&home.join("backups")))
        .collect();
    assert!(written.len() > 2 + 5, "{written:?}");
    for path in [home.join("reports"), home.join("backups")]
        .iter()
        .chain(&written)
    {
        let expected = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(path), expected, "{}", path.display());
    }
}

#[test]
fn a_planted_symlink_is_refused_and_its_target_untouched() {
    let bench = Bench::new();
    let victim = bench.path("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("precious"), b"keep me").unwrap();
    let home = bench.path("home");
    std::fs::create_dir_all(&home).unwrap();

    // The backup folder: the backup is refused before the device is written to.
    std::os::unix::fs::symlink(&victim, home.join("backups")).unwrap();
    let pkg = flat_package(&bench);
    let sim = EdlSim::start(
        &bench.path("device"),
        edl_config(),
        Some(&home.join("bench")),
    )
    .unwrap();
    let out = bench.run(&[
        "backup",
        pkg.to_str().unwrap(),
        "--device",
        sim.address(),
        "--trust",
        bench.path("keys").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("symbolic link"), "{stderr}");
    sim.stop();

    // The report folder: the job says it could not write its report.
    std::os::unix::fs::symlink(&victim, home.join("reports")).unwrap();
    let pkg = phone_package(&bench);
    let (phone, _) = bench.phone(phone_config());
    let out = flash(&bench, &pkg, &phone.device_address());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("could not write the report"), "{stdout}");
    assert!(stdout.contains("symbolic link"), "{stdout}");

    // The station key: a link to a key elsewhere is not used.
    std::fs::write(victim.join("station.key"), b"not mine").unwrap();
    let _ = std::fs::remove_file(home.join("station.key"));
    std::os::unix::fs::symlink(victim.join("station.key"), home.join("station.key")).unwrap();
    let out = bench.run(&[
        "backup",
        pkg.to_str().unwrap(),
        "--device",
        "serial:/dev/null",
        "--trust",
        bench.path("keys").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("station key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let left: Vec<_> = std::fs::read_dir(&victim)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert_eq!(std::fs::read(victim.join("precious")).unwrap(), b"keep me");
    assert_eq!(
        std::fs::read(victim.join("station.key")).unwrap(),
        b"not mine"
    );
}

#[test]
fn a_fifo_is_refused_as_a_package_without_blocking() {
    let bench = Bench::new();
    let fifo = bench.path("package.flpkg");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    // In process: the open does not wait for a writer.
    let (tx, rx) = std::sync::mpsc::channel();
    let path = fifo.clone();
    std::thread::spawn(move || {
        let _ = tx.send(flashline::package::Package::open(&path).map(|_| ()));
    });
    let result = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("Package::open blocked");
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            flashline::package::PackageError::NotARegularFile { .. }
        ),
        "{err}"
    );
    // The binary: `verify` refuses it with exit 3, promptly.
    let started = Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_flashline"))
        .args(["verify", fifo.to_str().unwrap()])
        .env("FLASHLINE_HOME", bench.path("home"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(10) {
            child.kill().unwrap();
            panic!("flashline verify blocked on a FIFO");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(3));
}

/// CI runs as root with its home owned by root: no warning. As root with a home owned by
/// someone else, the warning is on stderr, and stdout is unchanged.
#[test]
fn running_as_root_warns_only_where_it_breaks_something() {
    let bench = Bench::new();
    let out = bench.run(&["udev-rules"]);
    assert!(out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("running as root"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let home = bench.path("home");
    std::fs::create_dir_all(&home).unwrap();
    nix::unistd::chown(&home, Some(nix::unistd::Uid::from_raw(4242)), None).unwrap();
    let warned = bench.run(&["udev-rules"]);
    assert!(warned.status.success());
    let stderr = String::from_utf8_lossy(&warned.stderr);
    assert!(stderr.contains("running as root"), "{stderr}");
    assert!(stderr.contains("4242"), "{stderr}");
    assert_eq!(
        warned.stdout, out.stdout,
        "the warning never reaches stdout"
    );
}

/// Issue 13, item 8: the history (the downgrade floor) and the job journal (which vouches
/// for kept images) are read and written only as flashline's own files. A link planted for
/// the history stops the job at preflight, before the device is written; a dangling link
/// for its lock creates nothing; a linked journal folder is neither read nor written (the
/// job runs whole and says why); a linked record of trust roots stops trust loading. Every
/// link's target stays as it was.
#[test]
fn a_planted_symlink_for_the_history_journal_or_trust_record_is_refused() {
    use std::os::unix::fs::symlink;
    let bench = Bench::new();
    let victim = bench.path("victim");
    std::fs::create_dir_all(&victim).unwrap();
    // A history that would lower the floor, were it read.
    let planted = br#"{"products": {}}"#;
    std::fs::write(victim.join("history.json"), planted).unwrap();
    let home = bench.path("home");
    std::fs::create_dir_all(&home).unwrap();
    let pkg = phone_package(&bench);
    let (phone, phone_dir) = bench.phone(phone_config());
    let before = common::bench::hashes(&phone_dir);

    // The history file.
    symlink(victim.join("history.json"), home.join("history.json")).unwrap();
    let out = flash(&bench, &pkg, &phone.device_address());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{stdout}");
    assert!(
        stdout.contains("history.json is a symbolic link"),
        "{stdout}"
    );
    assert_eq!(
        common::bench::hashes(&phone_dir),
        before,
        "the phone was written"
    );
    assert!(std::fs::symlink_metadata(home.join("history.json"))
        .unwrap()
        .file_type()
        .is_symlink());
    std::fs::remove_file(home.join("history.json")).unwrap();

    // Its lock: a dangling link is not followed to create a file.
    std::fs::remove_file(home.join("history.json.lock")).unwrap();
    symlink(victim.join("made-by-lock"), home.join("history.json.lock")).unwrap();
    let out = flash(&bench, &pkg, &phone.device_address());
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        common::bench::hashes(&phone_dir),
        before,
        "the phone was written"
    );
    std::fs::remove_file(home.join("history.json.lock")).unwrap();

    // The journal folder: the job runs, with no journal read or written.
    symlink(&victim, home.join("journal")).unwrap();
    let out = flash(&bench, &pkg, &phone.device_address());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let report = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Report: "))
        .expect("a report");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap();
    let notes = report["notes"].to_string();
    assert!(
        notes.contains("journal") && notes.contains("symbolic link"),
        "{notes}"
    );
    assert_ne!(common::bench::hashes(&phone_dir), before, "the job ran");
    // The history, a real file now, records the job.
    assert!(std::fs::read_to_string(home.join("history.json"))
        .unwrap()
        .contains("FLSIM"));

    // The record of installed trust roots: an empty record elsewhere would forget every
    // root installed here (and so allow a rollback); it is not read.
    let empty_record = br#"{"roots": {}}"#;
    std::fs::write(victim.join("trust-state.json"), empty_record).unwrap();
    symlink(
        victim.join("trust-state.json"),
        home.join("trust-state.json"),
    )
    .unwrap();
    let out = bench.run(&[
        "verify",
        pkg.to_str().unwrap(),
        "--trust",
        bench.path("keys").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert_eq!(
        std::fs::read(victim.join("trust-state.json")).unwrap(),
        empty_record
    );

    let mut left: Vec<_> = std::fs::read_dir(&victim)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(left, ["history.json", "trust-state.json"], "{left:?}");
    assert_eq!(std::fs::read(victim.join("history.json")).unwrap(), planted);
}

/// Issue 13, item 11: the generated udev rules give the seat's user every known modem's
/// ttys (AT and DIAG are spoken there) as well as the raw USB device, through `uaccess`
/// only, and keep ModemManager off download modes (EDL and DIAG compositions).
#[test]
fn udev_rules_grant_modem_ttys_and_hide_download_modes_from_modemmanager() {
    let bench = Bench::new();
    let out = bench.run(&["udev-rules"]);
    assert!(out.status.success());
    let rules = String::from_utf8(out.stdout).unwrap();
    assert!(
        !rules.contains("MODE="),
        "access is granted by uaccess only"
    );
    let quirks = flashline::device::quirks::Quirks::builtin();
    let lines: Vec<&str> = rules.lines().collect();
    let mut modes = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.strip_prefix("SUBSYSTEM==\"usb\", ATTR{idVendor}==\"") else {
            continue;
        };
        let hex = |s: &str| u16::from_str_radix(&s[..4], 16).unwrap();
        let vid = hex(rest);
        let pid = hex(rest.split("idProduct}==\"").nth(1).unwrap());
        let id = quirks.usb(vid, pid).expect("every rule is a known USB ID");
        let download =
            matches!(id.mode.as_str(), "edl" | "zxic" | "unisoc") || id.diag_interface.is_some();
        assert!(line.contains("TAG+=\"uaccess\""), "{line}");
        assert_eq!(
            line.contains("ID_MM_DEVICE_IGNORE}=\"1\""),
            download,
            "{line}"
        );
        let tty = format!(
            "SUBSYSTEM==\"tty\", ATTRS{{idVendor}}==\"{vid:04x}\", ATTRS{{idProduct}}==\"{pid:04x}\", TAG+=\"uaccess\""
        );
        let next = lines.get(i + 1).copied().unwrap_or_default();
        if matches!(id.mode.as_str(), "modem" | "edl" | "zxic" | "unisoc") {
            assert!(next.starts_with(&tty), "no tty rule after {line}");
            assert_eq!(
                next.contains("ID_MM_DEVICE_IGNORE}=\"1\""),
                download,
                "{next}"
            );
        } else {
            assert!(!next.starts_with("SUBSYSTEM==\"tty\""), "{next}");
        }
        modes.push(id.mode.clone());
    }
    for mode in ["fastboot", "modem", "edl", "zxic", "unisoc"] {
        assert!(modes.iter().any(|m| m == mode), "no {mode} rule: {modes:?}");
    }
    // Qualcomm's EDL port, the one every recovery needs.
    assert!(rules.contains(
        "SUBSYSTEM==\"tty\", ATTRS{idVendor}==\"05c6\", ATTRS{idProduct}==\"9008\", TAG+=\"uaccess\", ENV{ID_MM_DEVICE_IGNORE}=\"1\""
    ));
}
