//! Unisoc end to end through real pseudo-terminals: a vendor-style `.pac` (written here to
//! the layout spreadtrum_flash's unpac reads) is imported into a signed package, and the
//! `flashline` binary takes a virtual Unisoc hotspot from its boot ROM through FDL1 and
//! FDL2 to written, read-back-verified partitions, keeping and checking its NV.
#![cfg(unix)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use common::bench::Bench;
use flashline::protocol::unisoc::client::{Client, Timeouts};
use flashline::protocol::unisoc::{self, cmd, Check, Direction, UnisocError};
use flashline::sim::fault::Fault;
use flashline::sim::unisoc::{RunningUnisoc, UnisocConfig, UnisocSim};
use flashline::transport::{Transport, TransportError};

const FDL1_ADDR: u32 = 0x5500;
const FDL2_ADDR: u32 = 0x9eff_fe00;

/// One file of a test .pac: id, file name, unpac's type, first address, bytes.
struct PacFile<'a> {
    id: &'a str,
    name: &'a str,
    kind: u32,
    addr: u32,
    data: &'a [u8],
}

fn utf16_field(text: &str, len: usize) -> Vec<u8> {
    let mut out: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
    out.resize(len, 0);
    out
}

/// A .pac as spreadtrum_flash's unpac reads it (`sprd_head_t`, `sprd_file_t`): test-only.
fn pac_bytes(files: &[PacFile<'_>]) -> Vec<u8> {
    const HEAD: usize = 2124;
    const ENTRY: usize = 2580;
    let mut data_at = (HEAD + ENTRY * files.len()) as u64;
    let mut head = vec![0u8; HEAD];
    head[..48].copy_from_slice(&utf16_field("BP_R1.0.0", 48));
    head[52..564].copy_from_slice(&utf16_field("UDX710_DEMO", 512));
    head[564..1076].copy_from_slice(&utf16_field("DEMO_V1.0", 512));
    head[1076..1080].copy_from_slice(&(files.len() as u32).to_le_bytes());
    head[1080..1084].copy_from_slice(&(HEAD as u32).to_le_bytes());
    head[2116..2120].copy_from_slice(&(!0x50005u32).to_le_bytes());
    let mut out = head;
    for f in files {
        let mut e = vec![0u8; ENTRY];
        e[..4].copy_from_slice(&(ENTRY as u32).to_le_bytes());
        e[4..516].copy_from_slice(&utf16_field(f.id, 512));
        e[516..1028].copy_from_slice(&utf16_field(f.name, 512));
        e[1540..1544].copy_from_slice(&(f.data.len() as u32).to_le_bytes());
        e[1544..1548].copy_from_slice(&f.kind.to_le_bytes());
        e[1552..1556].copy_from_slice(&(data_at as u32).to_le_bytes());
        e[1560..1564].copy_from_slice(&1u32.to_le_bytes());
        e[1564..1568].copy_from_slice(&f.addr.to_le_bytes());
        data_at += f.data.len() as u64;
        out.extend_from_slice(&e);
    }
    for f in files {
        out.extend_from_slice(f.data);
    }
    out
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

struct Images {
    fdl1: Vec<u8>,
    fdl2: Vec<u8>,
    boot: Vec<u8>,
    system: Vec<u8>,
    nv: Vec<u8>,
}

fn images() -> Images {
    Images {
        fdl1: data(9000, 1),
        fdl2: data(70_000, 2),
        boot: data(300_000, 3),
        system: data(1_500_000, 4),
        nv: data(100_000, 5),
    }
}

/// Writes the test .pac and imports it with the release key.
fn pack(bench: &Bench, name: &str, imgs: &Images) -> PathBuf {
    let pac = bench.path(&format!("{name}.pac"));
    let files = [
        PacFile {
            id: "FDL",
            name: "fdl1-sign.bin",
            kind: 0x101,
            addr: FDL1_ADDR,
            data: &imgs.fdl1,
        },
        PacFile {
            id: "FDL2",
            name: "fdl2-sign.bin",
            kind: 0x101,
            addr: FDL2_ADDR,
            data: &imgs.fdl2,
        },
        PacFile {
            id: "",
            name: "demo.xml",
            kind: 2,
            addr: 0,
            data: b"<xml/>",
        },
        PacFile {
            id: "boot",
            name: "boot.img",
            kind: 1,
            addr: 0,
            data: &imgs.boot,
        },
        PacFile {
            id: "system",
            name: "system.img",
            kind: 1,
            addr: 0,
            data: &imgs.system,
        },
        PacFile {
            id: "l_fixnv1",
            name: "nvitem.bin",
            kind: 1,
            addr: 0,
            data: &imgs.nv,
        },
    ];
    std::fs::write(&pac, pac_bytes(&files)).unwrap();
    let pkg = bench.path(&format!("{name}.flpkg"));
    let out = bench.run(&[
        "pack",
        "--from-pac",
        pac.to_str().unwrap(),
        "--target",
        "unisoc-demo-hotspot",
        "--key",
        bench.path("keys/release.key").to_str().unwrap(),
        "-o",
        pkg.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    pkg
}

fn device(bench: &Bench, cfg: UnisocConfig) -> RunningUnisoc {
    UnisocSim::start(&bench.path("device"), cfg, Some(&bench.path("home/bench"))).unwrap()
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[test]
fn a_pac_is_imported_and_a_hotspot_flashed_with_its_nv_kept() {
    let bench = Bench::new();
    let imgs = images();
    let pkg = pack(&bench, "stock", &imgs);
    let cfg = UnisocConfig::default();
    let sim = device(&bench, cfg.clone());
    let nv_files: Vec<(String, Vec<u8>)> = cfg
        .identity
        .iter()
        .map(|n| (n.clone(), read(&sim.partition_path(n))))
        .collect();
    let (out, report) = bench.job("flash", &pkg, Some(sim.address()), &[]);
    assert!(
        out.status.success(),
        "{report:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The images are on the device, byte for byte, and were read back.
    assert_eq!(
        read(&sim.partition_path("boot"))[..imgs.boot.len()],
        imgs.boot[..]
    );
    assert_eq!(
        read(&sim.partition_path("system"))[..imgs.system.len()],
        imgs.system[..]
    );
    let verified: Vec<&str> = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["verified_by"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(verified, ["read-back", "read-back"], "{report:#}");
    // The loaders went to their addresses, in order, and the device was reset.
    let log = sim.commands();
    let exec: Vec<&String> = log.iter().filter(|c| c.contains(":exec ")).collect();
    assert!(
        exec[0].starts_with("brom:exec addr=0x5500") && exec[0].ends_with(&sha(&imgs.fdl1)),
        "{log:?}"
    );
    assert!(
        exec[1].starts_with("fdl1:exec addr=0x9efffe00") && exec[1].ends_with(&sha(&imgs.fdl2)),
        "{log:?}"
    );
    assert!(log.iter().any(|c| c == "fdl2:NORMAL_RESET"), "{log:?}");
    // NV: never written, backed up byte-equal, checked unchanged afterwards.
    assert!(!log.iter().any(|c| c.contains("write l_fixnv1")), "{log:?}");
    let backup_dir = PathBuf::from(report["backup"]["dir"].as_str().unwrap());
    for (name, before) in &nv_files {
        assert_eq!(&read(&sim.partition_path(name)), before, "{name} changed");
        let entry = report["backup"]["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["label"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} not backed up: {report:#}"));
        let stored = read(&backup_dir.join(entry["file"].as_str().unwrap()));
        assert_eq!(&stored, before, "backup of {name}");
    }
    let notes = report["notes"].to_string();
    assert!(notes.contains("secure boot is off"), "{notes}");
    assert!(notes.contains("NV partitions checked unchanged"), "{notes}");
    assert!(notes.contains("l_fixnv1 is an NV partition"), "{notes}");
}

#[test]
fn a_checksum_fault_is_a_clear_error_and_nothing_is_committed() {
    let bench = Bench::new();
    let imgs = images();
    let pkg = pack(&bench, "stock", &imgs);
    let cfg = UnisocConfig {
        faults: vec![Fault::Garbage {
            command: "MIDST_DATA system".into(),
            nth: 3,
        }]
        .into(),
        data_timeout: Duration::from_secs(2),
        ..UnisocConfig::default()
    };
    let sim = device(&bench, cfg);
    let system_before = read(&sim.partition_path("system"));
    let (out, report) = bench.job("flash", &pkg, Some(sim.address()), &[]);
    assert!(!out.status.success());
    assert_eq!(report["outcome"], "device-error", "{report:#}");
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("wrong checksum"), "{error}");
    assert!(error.contains("writing system"), "{error}");
    assert_eq!(read(&sim.partition_path("system")), system_before);
    assert_eq!(sim.faults_fired(), ["garbage@MIDST_DATA system#3"]);
}

#[test]
fn a_secure_boot_rom_is_reported_and_refuses_a_foreign_fdl1() {
    let bench = Bench::new();
    let imgs = images();
    let pkg = pack(&bench, "stock", &imgs);
    let sim = device(&bench, UnisocConfig::secure([7; 32]));
    let boot_before = read(&sim.partition_path("boot"));
    let (out, report) = bench.job("flash", &pkg, Some(sim.address()), &[]);
    assert!(!out.status.success());
    let notes = report["notes"].to_string();
    assert!(
        notes.contains("SPRD4:AutoD") && notes.contains("secure boot is on"),
        "{notes}"
    );
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("SIGN_VERIFY_ERROR") && error.contains("nothing was written"),
        "{error}"
    );
    assert_eq!(read(&sim.partition_path("boot")), boot_before);

    // The same device accepts the FDL1 it was made for.
    drop(sim);
    let sim = device(
        &bench,
        UnisocConfig::secure(Sha256::digest(&imgs.fdl1).into()),
    );
    let (out, report) = bench.job("flash", &pkg, Some(sim.address()), &[]);
    assert!(out.status.success(), "{report:#}");
}

#[test]
fn an_interrupted_job_resumes_where_it_stopped() {
    let bench = Bench::new();
    let imgs = images();
    let pkg = pack(&bench, "stock", &imgs);
    // The link drops half way through system (after boot was written and verified).
    let cut = (imgs.boot.len() + imgs.system.len() / 2) as u64;
    let cfg = UnisocConfig {
        faults: vec![Fault::Disconnect { after_bytes: cut }].into(),
        data_timeout: Duration::from_secs(1),
        ..UnisocConfig::default()
    };
    let sim = device(&bench, cfg);
    let (out, report) = bench.job("flash", &pkg, Some(sim.address()), &["--timeout", "2s"]);
    assert!(!out.status.success(), "{report:#}");
    assert_eq!(report["incomplete"], "system", "{report:#}");
    assert_eq!(
        read(&sim.partition_path("boot"))[..imgs.boot.len()],
        imgs.boot[..]
    );

    let started = Instant::now();
    let (out, report) = bench.job("flash", &pkg, Some(sim.address()), &["--timeout", "5s"]);
    assert!(out.status.success(), "{report:#}");
    assert!(started.elapsed() < Duration::from_secs(60));
    let statuses: Vec<&str> = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["kept", "written"], "{report:#}");
    assert!(
        report["notes"].to_string().contains("resumed"),
        "{report:#}"
    );
    assert_eq!(
        read(&sim.partition_path("system"))[..imgs.system.len()],
        imgs.system[..]
    );
    // Only one write of boot reached the device.
    let writes = sim
        .commands()
        .iter()
        .filter(|c| *c == "fdl2:write boot 300000 bytes")
        .count();
    assert_eq!(writes, 1);
}

#[test]
fn hostile_pac_files_are_refused_with_clear_errors() {
    let bench = Bench::new();
    let fdl = data(100, 1);
    let good = [
        PacFile {
            id: "FDL",
            name: "fdl1.bin",
            kind: 0x101,
            addr: FDL1_ADDR,
            data: &fdl,
        },
        PacFile {
            id: "FDL2",
            name: "fdl2.bin",
            kind: 0x101,
            addr: FDL2_ADDR,
            data: &fdl,
        },
        PacFile {
            id: "boot",
            name: "boot.img",
            kind: 1,
            addr: 0,
            data: &fdl,
        },
    ];
    let base = pac_bytes(&good);
    let entry = |i: usize, at: usize| 2124 + 2580 * i + at;
    let mut cases: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    let mut bad_magic = base.clone();
    bad_magic[2116] ^= 1;
    cases.push(("magic", bad_magic, "bad magic"));
    let mut many = base.clone();
    many[1076..1080].copy_from_slice(&5000u32.to_le_bytes());
    cases.push(("count", many, "declares 5000 files"));
    let mut past = base.clone();
    past[1076..1080].copy_from_slice(&900u32.to_le_bytes());
    cases.push(("table", past, "past the end of the file"));
    let mut outside = base.clone();
    outside[entry(2, 1552)..entry(2, 1556)].copy_from_slice(&0xffff_0000u32.to_le_bytes());
    cases.push(("offset", outside, "outside the .pac's data"));
    let mut giant = base.clone();
    giant[entry(2, 1532)..entry(2, 1536)].copy_from_slice(&0xffff_ffffu32.to_le_bytes());
    cases.push(("size", giant, "more than any image flashline accepts"));
    let mut one_fdl = base.clone();
    one_fdl[entry(1, 1544)..entry(1, 1548)].copy_from_slice(&1u32.to_le_bytes());
    cases.push(("loaders", one_fdl, "names 1 loader(s)"));
    let mut struct_size = base;
    struct_size[entry(0, 0)] ^= 4;
    cases.push(("struct", struct_size, "unexpected struct size"));
    for (name, bytes, wanted) in cases {
        let pac = bench.path(&format!("{name}.pac"));
        std::fs::write(&pac, bytes).unwrap();
        let pkg = bench.path(&format!("{name}.flpkg"));
        let out = bench.run(&[
            "pack",
            "--from-pac",
            pac.to_str().unwrap(),
            "--target",
            "x",
            "--key",
            bench.path("keys/release.key").to_str().unwrap(),
            "-o",
            pkg.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}");
        assert!(stderr.contains(wanted), "{name}: {stderr}");
        assert!(!pkg.exists(), "{name}");
    }
}

/// A device that answers from a script: each write is answered by the next reply.
struct Scripted {
    replies: Vec<Vec<u8>>,
    pending: Vec<u8>,
}

impl Transport for Scripted {
    fn write(&mut self, _data: &[u8], _timeout: Duration) -> Result<(), TransportError> {
        if !self.replies.is_empty() {
            let next = self.replies.remove(0);
            self.pending.extend(next);
        }
        Ok(())
    }
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        if self.pending.is_empty() {
            return Err(TransportError::Timeout(timeout));
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }
    fn address(&self) -> &str {
        "scripted"
    }
}

fn client(replies: Vec<Vec<u8>>) -> Client<Scripted> {
    Client::new(
        Scripted {
            replies,
            pending: Vec::new(),
        },
        Timeouts {
            answer: Duration::from_millis(200),
            slow: Duration::from_millis(200),
            write: Duration::from_millis(200),
        },
    )
}

fn brom(kind: u16, payload: &[u8]) -> Vec<u8> {
    unisoc::encode(kind, payload, Check::Crc16, Direction::ToHost, true).unwrap()
}

#[test]
fn hostile_replies_stay_bounded() {
    // Endless bytes without a frame: refused after one frame's worth, not read forever.
    let noise = vec![0x55u8; 300_000];
    let err = client(vec![noise]).connect_brom().unwrap_err();
    assert!(matches!(err, UnisocError::Malformed(_)), "{err}");
    // A frame longer than its length field.
    let mut long = vec![0x7e, 0x00, 0x81, 0x00, 0x02];
    long.extend(std::iter::repeat_n(0x41, 5000));
    let err = client(vec![long]).connect_brom().unwrap_err();
    assert!(matches!(err, UnisocError::TooLong { declared: 2 }), "{err}");
    // Nothing but log lines.
    let logs: Vec<u8> = (0..100).flat_map(|_| brom(cmd::REP_LOG, b"log")).collect();
    let err = client(vec![logs]).connect_brom().unwrap_err();
    assert!(matches!(err, UnisocError::OnlyLogs(_)), "{err}");
    // A wrong reply to CONNECT, with device text that could steer a terminal.
    let err = client(vec![
        brom(cmd::REP_VER, b"SPRD3\0"),
        brom(cmd::REP_OPERATION_FAILED, b"\x1b]0;owned\x07"),
    ])
    .connect_brom()
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("OPERATION_FAILED") && !text.contains('\x1b'),
        "{text}"
    );
    // Silence is a timeout, not a hang.
    let started = Instant::now();
    let err = client(vec![]).connect_brom().unwrap_err();
    assert!(matches!(err, UnisocError::NoVersion(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // A secure boot ROM is reported as such.
    let version = client(vec![
        brom(cmd::REP_VER, b"SPRD4:AutoD\0"),
        brom(cmd::REP_ACK, b""),
    ])
    .connect_brom()
    .unwrap();
    assert!(version.secure_boot);
    assert_eq!(version.text, "SPRD4:AutoD");
}

#[test]
fn nv_is_written_only_when_asked_and_a_fastboot_package_is_refused() {
    let bench = Bench::new();
    let imgs = images();
    let pkg = pack(&bench, "stock", &imgs);
    let cfg = UnisocConfig::default();
    let sim = device(&bench, cfg);
    let nv_before = read(&sim.partition_path("l_fixnv1"));
    let (out, report) = bench.job("flash", &pkg, Some(sim.address()), &["--write-nv"]);
    assert!(out.status.success(), "{report:#}");
    assert_eq!(
        read(&sim.partition_path("l_fixnv1"))[..imgs.nv.len()],
        imgs.nv[..]
    );
    assert_eq!(report["overrides"][0], "--write-nv", "{report:#}");
    // Backed up before it was written.
    let backup_dir = PathBuf::from(report["backup"]["dir"].as_str().unwrap());
    let entry = report["backup"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["label"] == "l_fixnv1")
        .unwrap();
    assert_eq!(
        read(&backup_dir.join(entry["file"].as_str().unwrap())),
        nv_before
    );

    let phone_pkg = bench.pack(
        "phone",
        "1.0.0",
        1,
        "unisoc-demo-hotspot",
        &[("boot", b"boot")],
    );
    let boot_before = read(&sim.partition_path("boot"));
    let (out, report) = bench.job("flash", &phone_pkg, Some(sim.address()), &[]);
    assert!(!out.status.success());
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("needs a Unisoc package"), "{error}");
    assert_eq!(read(&sim.partition_path("boot")), boot_before);
}

#[test]
fn a_device_asked_before_answers_again_and_is_flashed() {
    let bench = Bench::new();
    let imgs = images();
    let pkg = pack(&bench, "stock", &imgs);
    let sim = device(&bench, UnisocConfig::default());
    // `info` connects to the boot ROM; the job after it asks again and is answered.
    let out = bench.run(&["info", sim.address(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"unisoc\""));
    let (out, report) = bench.job("flash", &pkg, Some(sim.address()), &[]);
    assert!(out.status.success(), "{report:#}");
    let versions = sim
        .commands()
        .iter()
        .filter(|c| *c == "brom:version")
        .count();
    assert_eq!(versions, 2);
}

#[test]
fn a_refused_write_and_a_stalled_read_are_clear_errors() {
    let bench = Bench::new();
    let imgs = images();
    let pkg = pack(&bench, "stock", &imgs);
    let cfg = UnisocConfig {
        faults: vec![
            Fault::Fail {
                command: "START_DATA boot".into(),
                nth: 1,
            },
            Fault::Stall {
                command: "READ_MIDST prodnv".into(),
                nth: 1,
            },
        ]
        .into(),
        data_timeout: Duration::from_secs(1),
        ..UnisocConfig::default()
    };
    let sim = device(&bench, cfg);
    let boot_before = read(&sim.partition_path("boot"));
    // The backup reads prodnv first of all: the stall ends the job before any write.
    let started = Instant::now();
    let (out, report) = bench.job("flash", &pkg, Some(sim.address()), &["--timeout", "2s"]);
    assert!(!out.status.success());
    assert!(started.elapsed() < Duration::from_secs(30));
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("backup") && error.contains("did not answer"),
        "{error}"
    );
    // Run again: the boot ROM refuses START_DATA for boot once.
    std::thread::sleep(Duration::from_secs(2));
    let (out, report) = bench.job("flash", &pkg, Some(sim.address()), &["--timeout", "2s"]);
    assert!(!out.status.success());
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("OPERATION_FAILED") && error.contains("writing boot"),
        "{error}"
    );
    assert_eq!(read(&sim.partition_path("boot")), boot_before);
    assert_eq!(sim.faults_fired().len(), 2);
}
