//! ZXIC ZX297520V3 end to end: the `flashline` binary brings a virtual hotspot (on a real
//! pseudo-terminal) from its boot ROM through tloader and tboot, backs up its NV
//! partitions, sends the package's partition table and writes the images; the virtual
//! flash is compared with the package byte for byte. Also: a CRC mismatch, tables that
//! would move NV (refused on the host, and by the device), an interrupted job resumed, and
//! hostile replies against the protocol client.
#![cfg(unix)]

mod common;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use common::bench::Bench;
use flashline::protocol::zxic::{Link, Partition, PartitionTable, ZxicError};
use flashline::sim::fault::{Fault, FaultPlan};
use flashline::sim::zxic::{
    build_test_loaders, identity_bytes, virtual_table, Profile, RunningZxic, ZxicConfig, ZxicSim,
};
use flashline::transport::{Transport, TransportError};

/// The product the virtual hotspot is in the quirks file (with its NV layout).
const PRODUCT: &str = "ZX7520-SIM";

/// Bytes that differ everywhere, so a misplaced window shows.
fn noise(len: usize, seed: u8) -> Vec<u8> {
    let mut state = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

/// The package's table: imagefs and rootfs resized (a change the device accepts), NV where
/// the factory put it.
fn new_table() -> PartitionTable {
    let mut t = virtual_table();
    for p in &mut t.entries {
        match p.name.as_str() {
            "imagefs" => p.size = 0x70_0000,
            "rootfs" => {
                p.address = 0x8A_0000;
                p.size = 0x50_0000;
            }
            _ => {}
        }
    }
    t
}

/// Writes a ZXIC package's source folder and manifest; returns the manifest's path.
fn write_source(
    bench: &Bench,
    name: &str,
    product: &str,
    table: &PartitionTable,
    images: &[(&str, &[u8])],
) -> PathBuf {
    let src = bench.path(&format!("src-{name}"));
    std::fs::create_dir_all(&src).unwrap();
    let (tloader, tboot) = build_test_loaders();
    std::fs::write(src.join("tloader.bin"), tloader).unwrap();
    std::fs::write(src.join("tboot.bin"), tboot).unwrap();
    std::fs::write(src.join("partition.bin"), table.encode()).unwrap();
    let mut manifest = format!(
        "name = \"{name}\"\nversion = \"1.0.0\"\nsecurity_version = 1\nmin_battery_percent = 0\n\
         [[target]]\nproduct = \"{product}\"\n\
         [zxic]\ntloader = \"tloader.bin\"\ntboot = \"tboot.bin\"\npartition_table = \"partition.bin\"\n"
    );
    for (partition, bytes) in images {
        std::fs::write(src.join(format!("{partition}.bin")), bytes).unwrap();
        manifest.push_str(&format!(
            "[[zxic.image]]\npartition = \"{partition}\"\nfile = \"{partition}.bin\"\n"
        ));
    }
    std::fs::write(src.join("manifest.toml"), manifest).unwrap();
    src.join("manifest.toml")
}

/// Writes and packs a ZXIC package for [`PRODUCT`].
fn pack(
    bench: &Bench,
    name: &str,
    product: &str,
    table: &PartitionTable,
    images: &[(&str, &[u8])],
) -> PathBuf {
    let manifest = write_source(bench, name, product, table, images);
    bench.pack_manifest(manifest.parent().unwrap(), name)
}

fn start(bench: &Bench, cfg: ZxicConfig) -> RunningZxic {
    ZxicSim::start(&bench.path("device"), cfg, Some(&bench.path("home/bench"))).unwrap()
}

fn position(log: &[String], what: &str) -> usize {
    log.iter()
        .position(|c| c.starts_with(what))
        .unwrap_or_else(|| panic!("{what} not in {log:#?}"))
}

fn nv_before(cfg: &ZxicConfig) -> Vec<(String, Vec<u8>)> {
    ["nvrofs", "nvrw"]
        .iter()
        .map(|n| (n.to_string(), identity_bytes(cfg, n, 0x4_0000)))
        .collect()
}

fn assert_nv_kept(sim: &RunningZxic, before: &[(String, Vec<u8>)]) {
    for (name, bytes) in before {
        assert_eq!(&sim.partition(name).unwrap(), bytes, "{name} changed");
    }
}

#[test]
fn a_hotspot_in_its_boot_rom_is_flashed_and_its_nv_kept() {
    let bench = Bench::new();
    let imagefs = noise(3 * 1024 * 1024 + 123, 1);
    let rootfs = noise(100 * 1024, 2);
    let table = new_table();
    let pkg = pack(
        &bench,
        "stock",
        PRODUCT,
        &table,
        &[("imagefs", &imagefs), ("rootfs", &rootfs)],
    );
    let cfg = ZxicConfig::default();
    let before = nv_before(&cfg);
    assert!(String::from_utf8_lossy(&before[0].1).contains("IMEI=860000000000017"));
    let sim = start(&bench, cfg);

    // Discovery lists it as a ZXIC device in download mode.
    let listed = bench.run(&["devices", "--json"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains(sim.address()) && listed.contains("\"zxic\""),
        "{listed}"
    );

    let (out, report) = bench.job("flash", &pkg, Some(sim.address()), &[]);
    assert!(
        out.status.success(),
        "{report:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report["outcome"], "success");

    assert_eq!(
        sim.table().unwrap(),
        table,
        "the device holds the package's table"
    );
    let on_device = sim.partition("imagefs").unwrap();
    assert_eq!(&on_device[..imagefs.len()], &imagefs[..]);
    assert!(
        on_device[imagefs.len()..].iter().all(|&b| b == 0xFF),
        "erased by erase auto"
    );
    assert_eq!(
        &sim.partition("rootfs").unwrap()[..rootfs.len()],
        &rootfs[..]
    );
    assert_nv_kept(&sim, &before);

    // The NV backup is byte-equal to the device's NV.
    let dir = PathBuf::from(report["backup"]["dir"].as_str().unwrap());
    let entries = report["backup"]["partitions"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    for entry in entries {
        let label = entry["label"].as_str().unwrap();
        let saved = std::fs::read(dir.join(entry["file"].as_str().unwrap())).unwrap();
        assert_eq!(saved, sim.partition(label).unwrap(), "backup of {label}");
    }

    // The order the sources describe: boot ROM, tloader, tboot without its header, CRC,
    // backup before the table, `erase auto` only after ACCEPTABLE, then the windows.
    let log = sim.commands();
    let (tloader, tboot) = build_test_loaders();
    assert!(
        log.contains(&format!("bootrom:load 0x00082000+{}", tloader.len())),
        "{log:#?}"
    );
    assert!(
        log.contains(&format!("tloader:load 0x27ef0000+{}", tboot.len() - 64)),
        "{log:#?}"
    );
    let backup = position(&log, "tboot:compat_read nvrofs");
    let table_sent = position(&log, "tboot:set partitions 1000");
    let acceptable = position(&log, "tboot:reply FAIL ACCEPTABLE_PARTITION_CHANGE");
    let erase = position(&log, "tboot:erase auto");
    let first_write = position(&log, "tboot:compat_write");
    assert!(position(&log, "tboot:CRC ON") < first_write);
    assert!(
        backup < table_sent && table_sent < acceptable && acceptable < erase && erase < first_write
    );
    let windows: Vec<&String> = log
        .iter()
        .filter(|c| c.starts_with("tboot:compat_write imagefs"))
        .collect();
    assert_eq!(
        windows,
        [
            "tboot:compat_write imagefs 00000000 200000",
            "tboot:compat_write imagefs 00200000 10007b"
        ]
    );
    assert!(log.iter().any(|c| c == "tboot:reboot"));
    let images = report["images"].as_array().unwrap();
    assert!(
        images
            .iter()
            .all(|i| i["status"] == "written" && i["verified_by"] == "device-digest"),
        "{images:#?}"
    );
    let notes = report["notes"].to_string();
    assert!(
        notes.contains("hold the same bytes after the flash"),
        "{notes}"
    );
    sim.stop();
}

#[test]
fn a_terse_loader_with_the_same_table_is_flashed_without_an_erase() {
    let bench = Bench::new();
    let rootfs = noise(1536 * 1024, 3);
    let pkg = pack(
        &bench,
        "same-table",
        PRODUCT,
        &virtual_table(),
        &[("rootfs", &rootfs)],
    );
    let cfg = ZxicConfig {
        profile: Profile::Terse,
        ..ZxicConfig::default()
    };
    let before = nv_before(&cfg);
    let sim = start(&bench, cfg);
    let (out, report) = bench.job("flash", &pkg, Some(sim.address()), &[]);
    assert!(out.status.success(), "{report:#}");
    assert_eq!(
        &sim.partition("rootfs").unwrap()[..rootfs.len()],
        &rootfs[..]
    );
    assert_nv_kept(&sim, &before);
    let log = sim.commands();
    assert!(
        !log.iter().any(|c| c.starts_with("tboot:erase")),
        "{log:#?}"
    );
    // 1 MiB windows: rootfs's one compat_write gets two DATA requests.
    let write = position(&log, "tboot:compat_write rootfs 00000000 180000");
    assert_eq!(
        log[write + 1..write + 3],
        ["tboot:reply DATA 00100000", "tboot:reply DATA 00080000"]
    );
    sim.stop();
}

#[test]
fn a_crc_mismatch_stops_the_job_before_anything_else_is_written() {
    let bench = Bench::new();
    let imagefs = noise(300 * 1024, 4);
    let rootfs = noise(64 * 1024, 5);
    let pkg = pack(
        &bench,
        "crc",
        PRODUCT,
        &new_table(),
        &[("imagefs", &imagefs), ("rootfs", &rootfs)],
    );
    let cfg = ZxicConfig {
        faults: FaultPlan::from(vec![Fault::Corrupt { after_bytes: 1000 }]),
        ..ZxicConfig::default()
    };
    let before = nv_before(&cfg);
    let sim = start(&bench, cfg);
    let (out, report) = bench.job("flash", &pkg, Some(sim.address()), &[]);
    assert!(!out.status.success());
    assert_eq!(report["outcome"], "device-error");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("CRC") && error.contains("imagefs"),
        "{error}"
    );
    assert!(error.contains("flash it again"), "{error}");
    assert_eq!(sim.faults_fired(), ["corrupt@bytes=1000"]);
    let log = sim.commands();
    assert!(
        !log.iter()
            .any(|c| c.starts_with("tboot:compat_write rootfs")),
        "{log:#?}"
    );
    assert!(
        !log.iter().any(|c| c == "tboot:reboot"),
        "not rebooted into half-written firmware"
    );
    assert_eq!(report["images"][0]["status"], "failed");
    assert_eq!(report["images"][1]["status"], "not-started");
    assert_nv_kept(&sim, &before);
    sim.stop();
}

#[test]
fn a_table_that_moves_nv_is_refused_before_anything_is_sent() {
    let bench = Bench::new();
    let mut table = virtual_table();
    table.entries[1].size = 0xF_0000; // uboot shrinks
    table.entries[2].address = 0x11_0000; // and nvrofs moves down
    let pkg = pack(
        &bench,
        "moves-nv",
        PRODUCT,
        &table,
        &[("rootfs", &noise(4096, 6))],
    );
    let sim = start(&bench, ZxicConfig::default());
    let (out, report) = bench.job("flash", &pkg, Some(sim.address()), &[]);
    assert!(!out.status.success());
    assert_eq!(report["outcome"], "preflight-refused");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("would move NV: nvrofs from 0x00120000+0x40000 to 0x00110000+0x40000"),
        "{error}"
    );
    let log = sim.commands();
    assert!(
        log.iter().all(|c| c == "bootrom:sync"),
        "only a sync was sent: {log:#?}"
    );
    sim.stop();
}

#[test]
fn a_table_the_device_refuses_leaves_everything_as_it_was() {
    let bench = Bench::new();
    // A model whose NV layout flashline does not know: the device's own check decides.
    let mut table = virtual_table();
    table.entries[3].address = 0x17_0000; // nvrw, same size
    table.entries[4] = Partition {
        address: 0x1B_0000,
        size: 0x5F_0000,
        ..table.entries[4].clone()
    };
    let pkg = pack(
        &bench,
        "device-refuses",
        "MF79U",
        &table,
        &[("imagefs", &noise(8192, 7))],
    );
    let cfg = ZxicConfig::default();
    let before = nv_before(&cfg);
    let sim = start(&bench, cfg);
    let flash_before = std::fs::read(sim.flash_path()).unwrap();
    let (out, report) = bench.job("flash", &pkg, Some(sim.address()), &[]);
    assert!(!out.status.success());
    assert_eq!(report["outcome"], "preflight-refused");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("UNACCEPTABLE_PARTITION_CHANGE") && error.contains("nothing was written"),
        "{error}"
    );
    let nv = report["preflight"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "nv")
        .unwrap()
        .clone();
    assert_eq!(nv["status"], "warn");
    let log = sim.commands();
    assert!(
        !log.iter()
            .any(|c| c.starts_with("tboot:compat_write") || c.starts_with("tboot:erase")),
        "{log:#?}"
    );
    assert_eq!(
        std::fs::read(sim.flash_path()).unwrap(),
        flash_before,
        "not one byte changed"
    );
    assert_eq!(sim.table().unwrap(), virtual_table());
    assert_nv_kept(&sim, &before);
    sim.stop();
}

#[test]
fn an_interrupted_job_resumes_and_keeps_what_it_verified() {
    let bench = Bench::new();
    let rootfs = noise(200 * 1024, 8);
    let imagefs = noise(3 * 1024 * 1024, 9);
    let pkg = pack(
        &bench,
        "resume",
        PRODUCT,
        &new_table(),
        &[("rootfs", &rootfs), ("imagefs", &imagefs)],
    );
    // Power is cut 2.5 MiB into the payload: inside imagefs's second window.
    let cfg = ZxicConfig {
        faults: FaultPlan::from(vec![Fault::PowerLoss {
            after_bytes: 200 * 1024 + 2_500_000,
        }]),
        ..ZxicConfig::default()
    };
    let before = nv_before(&cfg);
    let sim = start(&bench, cfg);
    let (out, report) = bench.job("flash", &pkg, Some(sim.address()), &["--timeout", "3s"]);
    assert!(!out.status.success(), "{report:#}");
    assert_eq!(sim.faults_fired().len(), 1);
    assert!(sim.commands().iter().any(|c| c == "tboot:power lost"));

    let (out, report) = bench.job("flash", &pkg, Some(sim.address()), &[]);
    assert!(
        out.status.success(),
        "{report:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let statuses: Vec<&str> = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["kept", "written"]);
    assert!(
        report["notes"]
            .to_string()
            .contains("resumed a job interrupted"),
        "{report:#}"
    );
    assert_eq!(
        &sim.partition("rootfs").unwrap()[..rootfs.len()],
        &rootfs[..]
    );
    assert_eq!(
        &sim.partition("imagefs").unwrap()[..imagefs.len()],
        &imagefs[..]
    );
    assert_nv_kept(&sim, &before);
    sim.stop();
}

/// A device that answers from a script, one reply per read, and then falls silent.
struct Scripted {
    replies: VecDeque<Vec<u8>>,
}

impl Scripted {
    fn link(replies: &[&[u8]]) -> Link<Scripted> {
        Link::new(
            Scripted {
                replies: replies.iter().map(|r| r.to_vec()).collect(),
            },
            Duration::from_millis(200),
        )
    }
}

impl Transport for Scripted {
    fn write(&mut self, _data: &[u8], _timeout: Duration) -> Result<(), TransportError> {
        Ok(())
    }
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        let Some(mut reply) = self.replies.pop_front() else {
            return Err(TransportError::Timeout(timeout));
        };
        let n = reply.len().min(buf.len());
        buf[..n].copy_from_slice(&reply[..n]);
        if n < reply.len() {
            self.replies.push_front(reply.split_off(n));
        }
        Ok(n)
    }
    fn address(&self) -> &str {
        "scripted"
    }
}

fn write(link: &mut Link<Scripted>, len: u32) -> Result<(), ZxicError> {
    let data = vec![0u8; len as usize];
    link.compat_write("imagefs", 0, len, &mut data.as_slice(), true, &mut |_| {})
}

#[test]
fn hostile_replies_are_bounded_and_named() {
    // Endless DATA: more windows than the command announced.
    let endless: Vec<&[u8]> = vec![b"DATA 00001000\0"; 10];
    let e = write(&mut Scripted::link(&endless), 0x1800).unwrap_err();
    assert!(
        matches!(
            e,
            ZxicError::Window {
                asked: 0x1000,
                left: 0x800,
                ..
            }
        ),
        "{e}"
    );
    // A giant window, and one of zero bytes.
    for reply in [
        &b"DATA FFFFFFFF\0"[..],
        b"DATA 00000000\0",
        b"DATA 00400000\0",
    ] {
        let e = write(&mut Scripted::link(&[reply]), 0x40_0000).unwrap_err();
        assert!(matches!(e, ZxicError::Window { .. }), "{e}");
    }
    // A read that offers more than asked.
    let e = Scripted::link(&[b"DATA 00100000\0"])
        .compat_read("nvrofs", 0, 0x1000, &mut Vec::new(), &mut |_| {})
        .unwrap_err();
    assert!(matches!(e, ZxicError::Window { .. }), "{e}");
    // Garbage, a reply without end, silence, a wrong sync answer.
    let garbage = [0x80u8, 0x81, 0xfe, 0];
    assert!(matches!(
        Scripted::link(&[&garbage]).getvar("plat"),
        Err(ZxicError::NotText(_))
    ));
    let endless_text = vec![b'A'; 4096];
    assert!(matches!(
        Scripted::link(&[&endless_text]).getvar("plat"),
        Err(ZxicError::ReplyTooLong)
    ));
    let e = Scripted::link(&[]).getvar("plat").unwrap_err();
    assert!(
        matches!(e, ZxicError::Transport(TransportError::Timeout(_))),
        "{e}"
    );
    assert!(matches!(
        Scripted::link(&[&[0x00]]).sync(),
        Err(ZxicError::Ack { got: 0, .. })
    ));
    assert!(matches!(
        Scripted::link(&[b"HELLO\0"]).getvar("plat"),
        Err(ZxicError::Unexpected { .. })
    ));
    // A CRC that differs from the bytes sent.
    let e = write(
        &mut Scripted::link(&[b"DATA 00000010\0", &[1, 2, 3, 4]]),
        16,
    )
    .unwrap_err();
    assert!(matches!(e, ZxicError::Crc { .. }), "{e}");
    // The right CRC, little-endian, passes.
    let crc = flashline::protocol::zxic::crc32(&[0u8; 16]).to_le_bytes();
    write(&mut Scripted::link(&[b"\0DATA 00000010\0", &crc]), 16).unwrap();
}

#[test]
fn packages_that_write_nv_or_do_not_fit_are_refused_at_pack_time() {
    let bench = Bench::new();
    // (package, partition, image bytes, why it is refused)
    let cases = [
        ("writes-nv", "nvrofs", 16, "an NV partition"),
        ("too-big", "zloader", 0x2_0001, "holds 131072"),
        ("no-such", "modem", 16, "not a flash partition"),
    ];
    for (name, partition, len, why) in cases {
        let bytes = vec![1u8; len];
        let images: [(&str, &[u8]); 1] = [(partition, &bytes)];
        let manifest = write_source(&bench, name, PRODUCT, &virtual_table(), &images);
        let out = bench.run(&[
            "pack",
            manifest.to_str().unwrap(),
            "--key",
            bench.path("keys/release.key").to_str().unwrap(),
            "-o",
            bench.path(&format!("{name}.flpkg")).to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(why),
            "{name}: {stderr}"
        );
    }
}
