//! `flashline recover --device serial:PATH` on a port the quirks file does not name: the
//! user says it is in EDL, and flashline listens for the Sahara HELLO there before it
//! writes anything. The device is `flashline sim edl` in its own process, on a
//! pseudo-terminal that this flashline's discovery does not know (its bench is elsewhere).
#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::bench::Bench;
use common::edl::{assert_flashed, identity_hashes, write_flat_build};
use serialport::SerialPort;

/// `flashline sim edl` in its own process and flashline home; killed on drop.
struct SimEdl {
    child: Child,
    address: String,
}

impl SimEdl {
    fn start(bench: &Bench, dir: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flashline"))
            .args(["sim", "edl", "--dir", dir.to_str().unwrap()])
            .env("FLASHLINE_HOME", bench.path("sim-home"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line.trim().to_string();
        assert!(address.starts_with("serial:/dev/"), "{address:?}");
        SimEdl { child, address }
    }
}

impl Drop for SimEdl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn flat_build(bench: &Bench) -> std::path::PathBuf {
    let src = bench.path("src-stock-1.0.12");
    write_flat_build(&src, "stock", "1.0.12", "MF833V", "", "");
    bench.pack_manifest(&src, "stock-1.0.12")
}

#[test]
fn recover_listens_for_hello_on_the_named_port_and_flashes_it() {
    let bench = Bench::new();
    let pkg = flat_build(&bench);
    let dir = bench.path("device");
    let sim = SimEdl::start(&bench, &dir);
    let lun = dir.join("lun0.img");
    let identity_before = identity_hashes(&lun);

    // The port is unknown to this flashline (no USB IDs, not on its bench).
    let (out, report) = bench.job("flash", &pkg, Some(&sim.address), &[]);
    assert_eq!(out.status.code(), Some(5));
    let refused = report["error"].as_str().unwrap();
    assert!(refused.contains("unless you pass --probe"), "{refused}");

    let (out, report) = bench.job("recover", &pkg, Some(&sim.address), &[]);
    assert!(
        out.status.success(),
        "{report:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report["outcome"], "success");
    assert_eq!(report["device"]["mode"], "edl");
    assert_flashed(&bench.path("src-stock-1.0.12"), &lun);
    assert_eq!(identity_hashes(&lun), identity_before);
}

#[test]
fn recover_with_probe_learns_the_mode_as_flash_does() {
    let bench = Bench::new();
    let pkg = flat_build(&bench);
    let dir = bench.path("device");
    let sim = SimEdl::start(&bench, &dir);
    let (out, report) = bench.job("recover", &pkg, Some(&sim.address), &["--probe"]);
    assert!(
        out.status.success(),
        "{report:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_flashed(&bench.path("src-stock-1.0.12"), &dir.join("lun0.img"));
}

#[test]
fn a_silent_port_is_given_up_on_in_bounded_time_and_sent_nothing() {
    let bench = Bench::new();
    let pkg = flat_build(&bench);
    // The test holds both sides open, as a device would hold its end.
    let (mut master, slave) = serialport::TTYPort::pair().unwrap();
    let path = slave.name().unwrap();
    let started = Instant::now();
    let (out, report) = bench.job(
        "recover",
        &pkg,
        Some(&format!("serial:{path}")),
        &["--timeout", "2s"],
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(5), "{report:#}");
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("sent no Sahara HELLO within 2s"), "{error}");
    assert!(error.contains("Nothing was written"), "{error}");
    master.set_timeout(Duration::from_millis(200)).unwrap();
    let mut buf = [0u8; 64];
    assert!(
        master.read(&mut buf).is_err(),
        "a port that never said HELLO was written to"
    );
}

#[test]
fn a_fastboot_package_on_a_device_in_edl_says_what_it_needs() {
    let bench = Bench::new();
    let pkg = bench.pack(
        "demo-phone",
        "2.1.0",
        8,
        "zte-demo-phone",
        &[("boot", &[7u8; 4096])],
    );
    let dir = bench.path("device");
    let sim = SimEdl::start(&bench, &dir);
    let before = std::fs::read(dir.join("lun0.img")).unwrap();
    let (out, report) = bench.job("recover", &pkg, Some(&sim.address), &[]);
    assert_eq!(out.status.code(), Some(4), "{report:#}");
    let wanted = "this is a fastboot package; this device needs a Qualcomm flat build";
    assert!(
        report["error"].as_str().unwrap().contains(wanted),
        "{report:#}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(wanted));
    assert_eq!(report["preflight"][0]["name"], "package-kind");
    assert!(std::fs::read(dir.join("lun0.img")).unwrap() == before);
}
