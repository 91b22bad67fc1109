//! Flat builds against programmers as they are shipped: no `getsha256digest`, storage-info
//! NAKs, a damaged primary GPT, configure answered with a counter-offer, with logs only or
//! with another `MemoryName`; 4096-byte-sector builds without a `memory` line; failed,
//! cancelled and tampered-with jobs that leave the device in EDL for the same command to
//! finish. Everything runs end to end against the virtual EDL device over a pty and checks
//! the bytes on its LUN files.
#![cfg(unix)]

mod common;

use std::io::{self, Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::bench::{events, Bench};
use common::edl::{
    assert_flashed, data, edl_config, identity_hashes, layout, programmer, write_flat_build, SECTOR,
};
use flashline::device::edl::EdlDriver;
use flashline::device::{Driver, ImageSource, SendReader, Target, Verification};
use flashline::protocol::gpt::Gpt;
use flashline::sim::edl::{lun_path, ChipProfile, EdlConfig, EdlSim, Habits, Profile, RunningEdl};
use flashline::transport::serial::SerialTransport;
use sha2::{Digest, Sha256};

/// Tests that run the engine in this process point `FLASHLINE_HOME` at their own bench.
static IN_PROCESS: Mutex<()> = Mutex::new(());

/// A virtual EDL device announced on the bench of an in-process job, with the bench's trust
/// and this file's turn at the process-wide `FLASHLINE_HOME`; keep the guard and the
/// announcement alive for the job.
fn in_process_edl(
    bench: &Bench,
) -> (
    RunningEdl,
    String,
    flashline::package::TrustStore,
    std::sync::MutexGuard<'static, ()>,
    flashline::device::bench::Announcement,
) {
    let sim = EdlSim::start(&bench.path("device"), edl_config(), None).unwrap();
    let address = sim.address().to_string();
    let trust = flashline::package::TrustStore::load_dir(&bench.path("keys")).unwrap();
    let turn = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    std::env::set_var("FLASHLINE_HOME", bench.path("home"));
    let announce = flashline::device::bench::announce(
        &bench.path("home/bench"),
        &flashline::device::bench::BenchEntry {
            address: address.clone(),
            vid: 0x05c6,
            pid: 0x9008,
            serial: "FLMODEM0001".into(),
            product: "QUSB__BULK".into(),
            ..Default::default()
        },
    )
    .unwrap();
    (sim, address, trust, turn, announce)
}

/// The default eMMC device with `profiles` applied.
fn device_with(profiles: &[Profile]) -> EdlConfig {
    let mut cfg = edl_config();
    for p in profiles {
        p.apply(&mut cfg);
    }
    cfg
}

/// The default eMMC flat build, packed once per bench.
fn stock(bench: &Bench) -> PathBuf {
    let pkg = bench.path("stock-1.0.12.flpkg");
    if !pkg.exists() {
        write_flat_build(&bench.path("src"), "stock", "1.0.12", "MF833V", "", "");
        bench.pack_manifest(&bench.path("src"), "stock-1.0.12");
    }
    pkg
}

/// Packs the default eMMC flat build, starts a virtual device, and runs `recover` on it.
fn recover(
    bench: &Bench,
    cfg: EdlConfig,
    extra: &[&str],
) -> (RunningEdl, std::process::Output, serde_json::Value) {
    let pkg = stock(bench);
    let sim = EdlSim::start(&bench.path("device"), cfg, Some(&bench.path("home/bench"))).unwrap();
    let (out, report) = bench.job("recover", &pkg, Some(sim.address()), extra);
    (sim, out, report)
}

fn verified_by(report: &serde_json::Value) -> Vec<String> {
    report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["verified_by"].as_str().unwrap_or("-").to_string())
        .collect()
}

fn device_messages(out: &std::process::Output) -> Vec<String> {
    events(out)
        .iter()
        .filter(|e| e["event"] == "device-message")
        .filter_map(|e| e["text"].as_str().map(str::to_string))
        .collect()
}

/// The last Firehose command the device received (a reset device goes on to Sahara).
fn last_firehose(commands: &[String]) -> Option<&str> {
    commands
        .iter()
        .rev()
        .find(|c| c.starts_with("firehose:"))
        .map(String::as_str)
}

fn succeeded(out: &std::process::Output, report: &serde_json::Value) {
    assert!(
        out.status.success(),
        "{report:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_programmer_without_a_digest_gives_verified_writes_by_reading_back() {
    let bench = Bench::new();
    let (sim, out, report) = recover(&bench, device_with(&[Profile::NoDigest]), &[]);
    succeeded(&out, &report);
    assert_flashed(&bench.path("src"), &sim.lun_path(0));
    assert_eq!(verified_by(&report), ["read-back"; 3]);
    let written: Vec<_> = events(&out)
        .into_iter()
        .filter(|e| e["event"] == "image-written")
        .map(|e| e["verified_by"].clone())
        .collect();
    assert_eq!(written, vec![serde_json::json!("read-back"); 3]);
    let commands = sim.commands();
    assert!(
        commands
            .iter()
            .any(|c| c == "firehose:nak unsupported command <getsha256digest>"),
        "{commands:?}"
    );
    // Refused once, then never asked again.
    assert_eq!(
        commands
            .iter()
            .filter(|c| c.starts_with("firehose:getsha256digest"))
            .count(),
        1
    );
    assert!(device_messages(&out)
        .iter()
        .any(|m| m.contains("verified by reading them back")));
    sim.stop();

    // The same build on a programmer with the digest: the report says so.
    let bench = Bench::new();
    let (sim, out, report) = recover(&bench, edl_config(), &[]);
    succeeded(&out, &report);
    assert_eq!(verified_by(&report), ["device-digest"; 3]);
    sim.stop();
}

#[test]
fn a_corrupted_read_back_is_caught_and_the_device_stays_in_edl() {
    let bench = Bench::new();
    let parts = common::edl::reference_layout();
    let boot = parts.iter().find(|p| p.0 == "boot").unwrap().1;
    let mut cfg = device_with(&[Profile::NoDigest]);
    cfg.habits.weak_byte = Some((0, boot * SECTOR + 1000));
    let (sim, out, report) = recover(&bench, cfg, &[]);
    assert!(!out.status.success(), "{report:#}");
    assert_eq!(report["outcome"], "device-error");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("boot") && error.contains("read back"),
        "{error}"
    );
    assert_eq!(report["images"][1]["status"], "failed");
    let commands = sim.commands();
    assert_eq!(
        last_firehose(&commands),
        Some("firehose:power reset_to_edl"),
        "{commands:?}"
    );
    sim.stop();
}

#[test]
fn a_failed_job_leaves_the_device_in_edl_so_the_same_command_completes() {
    let bench = Bench::new();
    let mut cfg = edl_config();
    cfg.faults = vec!["fail@program#2"
        .parse::<flashline::sim::fault::Fault>()
        .unwrap()]
    .into();
    let (sim, out, report) = recover(&bench, cfg, &[]);
    assert!(!out.status.success(), "{report:#}");
    assert_eq!(report["images"][0]["status"], "written");
    assert_eq!(report["images"][1]["status"], "failed");
    let commands = sim.commands();
    assert_eq!(
        last_firehose(&commands),
        Some("firehose:power reset_to_edl"),
        "{commands:?}"
    );
    let identity = identity_hashes(&sim.lun_path(0));
    // The device rebooted into its boot ROM; the same command, unchanged, on the same
    // device without a replug, finishes the job (the fault fired once, as a glitch does).
    let (out, report) = bench.job("recover", &stock(&bench), Some(sim.address()), &[]);
    succeeded(&out, &report);
    assert_flashed(&bench.path("src"), &sim.lun_path(0));
    assert_eq!(identity_hashes(&sim.lun_path(0)), identity);
    sim.stop();
}

#[test]
fn storage_info_nak_and_a_damaged_primary_gpt_still_back_up_and_flash() {
    let bench = Bench::new();
    let fresh = tempfile::tempdir().unwrap();
    drop(EdlSim::new(fresh.path(), edl_config(), None).unwrap());
    let pristine = identity_hashes(&lun_path(fresh.path(), 0));
    let (sim, out, report) = recover(
        &bench,
        device_with(&[Profile::DamagedGpt, Profile::StorageInfoNak]),
        &[],
    );
    succeeded(&out, &report);
    // The identity partitions were found through the backup GPT and saved byte for byte.
    let saved = report["backup"]["partitions"].as_array().unwrap();
    assert_eq!(saved.len(), 5, "{report:#}");
    // The checks below read the primary table: look at a copy with it put back.
    let mut lun = std::fs::read(sim.lun_path(0)).unwrap();
    let table = (34 * SECTOR) as usize;
    lun[..table].copy_from_slice(&std::fs::read(lun_path(fresh.path(), 0)).unwrap()[..table]);
    let repaired = bench.path("repaired.img");
    std::fs::write(&repaired, lun).unwrap();
    assert_flashed(&bench.path("src"), &repaired);
    assert_eq!(identity_hashes(&repaired), pristine);
    assert!(device_messages(&out)
        .iter()
        .any(|m| m.contains("backup copy in the last sector")));
    sim.stop();
}

#[test]
fn configure_habits_of_shipped_programmers_are_honoured() {
    for (profile, check) in [
        (Profile::CounterOffer, "counter-offer"),
        (Profile::OtherMemoryName, "MemoryName"),
        (Profile::ConfigureLogsOnly, "log lines only"),
    ] {
        let bench = Bench::new();
        // A programmer that never answers configure is waited for up to --timeout.
        let sim = EdlSim::start(
            &bench.path("device"),
            device_with(&[profile]),
            Some(&bench.path("home/bench")),
        )
        .unwrap();
        let (out, report) = bench.job(
            "flash",
            &stock(&bench),
            Some(sim.address()),
            &["--timeout", "3s"],
        );
        succeeded(&out, &report);
        assert_flashed(&bench.path("src"), &sim.lun_path(0));
        let commands = sim.commands();
        let configures: Vec<&String> = commands
            .iter()
            .filter(|c| c.starts_with("firehose:configure"))
            .collect();
        match profile {
            Profile::CounterOffer => assert_eq!(
                configures,
                [
                    "firehose:configure memory=emmc payload=1048576",
                    "firehose:configure memory=emmc payload=8192"
                ]
            ),
            _ => {
                assert_eq!(configures.len(), 1, "{check}: {commands:?}");
                assert!(
                    device_messages(&out).iter().any(|m| m.contains(check)),
                    "{check}: {:?}",
                    device_messages(&out)
                );
            }
        }
        sim.stop();
    }
}

/// The UFS device's layout: (label, LUN, first sector, sectors).
fn ufs_layout(dir: &Path, luns: usize) -> Vec<(String, u32, u64, u64)> {
    (0..luns)
        .flat_map(|lun| {
            let bytes = std::fs::read(lun_path(dir, lun)).unwrap();
            let gpt = Gpt::parse(4096, &bytes[..6 * 4096]).unwrap();
            gpt.partitions
                .iter()
                .map(|p| (p.label.clone(), lun as u32, p.first_lba, p.sectors()))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn a_4096_byte_sector_build_packs_without_a_memory_line_and_flashes_ufs() {
    let bench = Bench::new();
    let cfg = EdlConfig {
        programmer_sha256: edl_config().programmer_sha256,
        habits: Habits {
            storage_info_nak: vec![1],
            ..Habits::default()
        },
        // An MU5001, not the MF833V the default virtual chip stands for.
        chip: ChipProfile::unlisted(),
        ..EdlConfig::ufs()
    };
    let dir = bench.path("device");
    let sim = EdlSim::start(&dir, cfg, Some(&bench.path("home/bench"))).unwrap();
    let parts = ufs_layout(&dir, 2);
    let at = |label: &str| parts.iter().find(|p| p.0 == label).unwrap().clone();
    let src = bench.path("src-ufs");
    std::fs::create_dir_all(&src).unwrap();
    let images = [
        ("xbl", "xbl.elf", data(200 * 1024 + 5, 11)),
        ("boot", "boot.img", data(2 * 1024 * 1024, 12)),
        ("modem", "NON-HLOS.bin", data(3 * 1024 * 1024 + 77, 13)),
    ];
    std::fs::write(src.join("prog_firehose_ddr.elf"), programmer()).unwrap();
    let mut raw = String::from("<?xml version=\"1.0\" ?>\n<data>\n");
    for (label, file, bytes) in &images {
        std::fs::write(src.join(file), bytes).unwrap();
        let (_, lun, start, sectors) = at(label);
        raw.push_str(&format!(
            "  <program SECTOR_SIZE_IN_BYTES=\"4096\" file_sector_offset=\"0\" filename=\"{file}\" label=\"{label}\" num_partition_sectors=\"{sectors}\" physical_partition_number=\"{lun}\" start_sector=\"{start}\" />\n"
        ));
    }
    raw.push_str("</data>\n");
    std::fs::write(src.join("rawprogram0.xml"), raw).unwrap();
    // No `memory` line: the 4096-byte sectors say UFS.
    std::fs::write(
        src.join("manifest.toml"),
        "name = \"ufs\"\nversion = \"2.0.0\"\nsecurity_version = 1\nmin_battery_percent = 0\n\
         [[target]]\nproduct = \"MU5001\"\n[qualcomm]\nprogrammer = \"prog_firehose_ddr.elf\"\n\
         rawprogram = [\"rawprogram0.xml\"]\n",
    )
    .unwrap();
    let pkg = bench.pack_manifest(&src, "ufs-2.0.0");
    let (out, report) = bench.job("recover", &pkg, Some(sim.address()), &[]);
    succeeded(&out, &report);
    for (label, _, bytes) in &images {
        let (_, lun, start, _) = at(label);
        let stored = std::fs::read(sim.lun_path(lun as usize)).unwrap();
        let from = (start * 4096) as usize;
        assert_eq!(&stored[from..from + bytes.len()], &bytes[..], "{label}");
        let pad_end = from + bytes.len().div_ceil(4096) * 4096;
        assert!(stored[from + bytes.len()..pad_end].iter().all(|&b| b == 0));
    }
    let commands = sim.commands();
    assert!(
        commands
            .iter()
            .any(|c| c.starts_with("firehose:configure memory=ufs")),
        "{commands:?}"
    );
    // xbl lives on LUN 1, so LUN 1 is the one to boot from, as qdl marks it.
    let bootable = commands
        .iter()
        .position(|c| c == "firehose:setbootablestoragedrive lun=1")
        .expect("the boot LUN is set");
    let reset = commands
        .iter()
        .position(|c| c == "firehose:power reset")
        .unwrap();
    assert!(bootable < reset);
    // LUN 1 refused getstorageinfo; its size came from its GPT, and the job said so.
    assert!(device_messages(&out)
        .iter()
        .any(|m| m.contains("LUN 1") && m.contains("partition table")));
    sim.stop();
}

#[test]
fn a_cancel_mid_program_pads_the_range_and_the_rerun_needs_no_replug() {
    use flashline::engine::{self, Cancel, Event, Outcome};

    let bench = Bench::new();
    write_flat_build(&bench.path("src"), "stock", "1.0.12", "MF833V", "", "");
    let pkg = bench.pack_manifest(&bench.path("src"), "stock-1.0.12");
    let (sim, address, trust, _turn, _announce) = in_process_edl(&bench);
    let mut req = common::virtual_job(&pkg, trust.clone(), &address, bench.dir.path());
    let cancel = Cancel::default();
    req.options.cancel = cancel.clone();
    let report = engine::run(&req, &mut |event| {
        if let Event::Progress {
            index: 2,
            done,
            total,
        } = event
        {
            if done < total {
                cancel.cancel();
            }
        }
    });
    assert_eq!(report.outcome, Outcome::Cancelled, "{:?}", report.error);
    assert_eq!(report.images[2].status, "failed");
    let commands = sim.commands();
    // The range was finished (with zeros), not abandoned mid-transfer, and the device was
    // sent back to EDL with the value programmers know.
    assert!(
        !commands.iter().any(|c| c.contains("aborted")),
        "{commands:?}"
    );
    assert_eq!(
        last_firehose(&commands),
        Some("firehose:power reset_to_edl"),
        "{commands:?}"
    );
    let lun = std::fs::read(sim.lun_path(0)).unwrap();
    let (_, modem, _) = layout(&sim.lun_path(0))
        .into_iter()
        .find(|p| p.0 == "modem")
        .unwrap();
    let image = std::fs::read(bench.path("src/NON-HLOS.bin")).unwrap();
    let region = &lun[(modem * SECTOR) as usize..(modem * SECTOR) as usize + image.len()];
    let sent = region
        .iter()
        .zip(&image)
        .take_while(|(a, b)| a == b)
        .count();
    assert!(sent > 0 && sent < image.len(), "{sent}");
    assert!(region[sent.next_multiple_of(1 << 20)..]
        .iter()
        .all(|&b| b == 0));

    // The same job again, on the same line, without a replug.
    let req = common::virtual_job(&pkg, trust, &address, bench.dir.path());
    let report = engine::run(&req, &mut |_| {});
    assert_eq!(report.outcome, Outcome::Success, "{:?}", report.error);
    assert_flashed(&bench.path("src"), &sim.lun_path(0));
    sim.stop();
}

/// An image file on disk, as a package on a network share is: checked against the hash
/// it was signed with while read for the first time, and read again to be sent. `after_check`
/// runs the moment the check passed (an attacker who swaps the file then).
struct SharedFile {
    path: PathBuf,
    len: u64,
    sha256: [u8; 32],
    after_check: Arc<dyn Fn() + Send + Sync>,
}

struct Checked {
    inner: std::fs::File,
    hasher: Sha256,
    expected: [u8; 32],
    after_check: Arc<dyn Fn() + Send + Sync>,
}

impl Read for Checked {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

impl SendReader for Checked {
    fn verify(self: Box<Self>) -> Result<(), String> {
        let ok = <[u8; 32]>::from(self.hasher.finalize()) == self.expected;
        (self.after_check)();
        if ok {
            Ok(())
        } else {
            Err("not the signed bytes".into())
        }
    }
}

impl ImageSource for SharedFile {
    fn len(&self) -> u64 {
        self.len
    }
    fn is_sparse(&self) -> bool {
        false
    }
    fn plan_reader(&self) -> io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(std::fs::File::open(&self.path)?))
    }
    fn send_reader(&self) -> io::Result<Box<dyn SendReader + '_>> {
        Ok(Box::new(Checked {
            inner: std::fs::File::open(&self.path)?,
            hasher: Sha256::new(),
            expected: self.sha256,
            after_check: Arc::clone(&self.after_check),
        }))
    }
}

struct Bytes(Vec<u8>);

impl ImageSource for Bytes {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn is_sparse(&self) -> bool {
        false
    }
    fn plan_reader(&self) -> io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(Cursor::new(self.0.clone())))
    }
    fn send_reader(&self) -> io::Result<Box<dyn SendReader + '_>> {
        Ok(Box::new(Plain(Cursor::new(self.0.clone()))))
    }
}

struct Plain(Cursor<Vec<u8>>);

impl Read for Plain {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl SendReader for Plain {
    fn verify(self: Box<Self>) -> Result<(), String> {
        Ok(())
    }
}

/// Issue 13, item 1: an image changed after it was verified and before it is sent is
/// caught block by block; none of the changed bytes reaches the LUN.
#[test]
fn an_image_changed_after_verification_never_reaches_the_lun() {
    let dir = tempfile::tempdir().unwrap();
    let sim = EdlSim::start(&dir.path().join("device"), edl_config(), None).unwrap();
    let mut driver = EdlDriver::new(
        SerialTransport::open(sim.address()).unwrap(),
        Some("FLMODEM0001".into()),
        true,
    );
    driver.set_timeout(Duration::from_secs(5));
    driver
        .load_programmer(&Bytes(programmer()), "emmc")
        .unwrap();
    let info = driver.identify().unwrap();
    let boot = info.layout.iter().find(|p| p.label == "boot").unwrap();
    let target = Target::Sectors {
        lun: 0,
        start: boot.start_sector,
        count: boot.sectors,
        sector_size: 512,
    };
    let signed = data(3 * 1024 * 1024 + 300, 21);
    let path = dir.path().join("boot.img");
    std::fs::write(&path, &signed).unwrap();
    let mut tampered = signed.clone();
    let evil = 1536 * 1024..1536 * 1024 + 8192;
    tampered[evil.clone()].fill(0xee);

    let swap = {
        let path = path.clone();
        let tampered = tampered.clone();
        Arc::new(move || std::fs::write(&path, &tampered).unwrap())
    };
    let image = SharedFile {
        path: path.clone(),
        len: signed.len() as u64,
        sha256: Sha256::digest(&signed).into(),
        after_check: swap,
    };
    let e = driver
        .write_image(&target, &image, &mut |_| {})
        .unwrap_err();
    assert!(
        e.to_string().contains("changed since it was verified"),
        "{e}"
    );
    let lun = std::fs::read(sim.lun_path(0)).unwrap();
    let from = (boot.start_sector * SECTOR) as usize;
    let written = &lun[from..from + signed.len()];
    // The first block went out (it matched), the changed one and all after it did not.
    assert_eq!(&written[..1 << 20], &signed[..1 << 20]);
    assert!(written[1 << 20..].iter().all(|&b| b == 0));
    assert!(!written.windows(64).any(|w| w.iter().all(|&b| b == 0xee)));

    // The session is still in step: the file restored, the same write goes through.
    std::fs::write(&path, &signed).unwrap();
    let image = SharedFile {
        after_check: Arc::new(|| {}),
        ..image
    };
    driver.write_image(&target, &image, &mut |_| {}).unwrap();
    assert_eq!(driver.verified_by(), Some(Verification::DeviceDigest));
    let lun = std::fs::read(sim.lun_path(0)).unwrap();
    assert_eq!(&lun[from..from + signed.len()], &signed[..]);
    driver.leave_for_recovery().unwrap();
    assert_eq!(
        last_firehose(&sim.commands()),
        Some("firehose:power reset_to_edl")
    );
    sim.stop();
}

/// A flat build that also writes its own partition table (`gpt_main0.bin` at sector 0),
/// with `grow` extra sectors for the modem partition (which moves every partition after
/// it) and `shrink` fewer for fsg.
fn build_with_table(bench: &Bench, name: &str, grow: u64, shrink: u64) -> PathBuf {
    use flashline::protocol::gpt::Guid;
    let src = bench.path(&format!("src-{name}"));
    write_flat_build(&src, name, "1.0.12", "MF833V", "", "");
    let disk = 64 * 1024 * 2;
    let mut gpt = Gpt::new(512, disk, Guid::from_seed(&[7; 16])).unwrap();
    for (i, (label, _, sectors)) in common::edl::reference_layout().iter().enumerate() {
        let sectors = match label.as_str() {
            "modem" => sectors + grow,
            "fsg" => sectors - shrink,
            _ => *sectors,
        };
        gpt.push(
            label,
            sectors,
            Guid::BASIC_DATA,
            Guid::from_seed(&[i as u8; 16]),
        )
        .unwrap();
    }
    std::fs::write(src.join("gpt_main0.bin"), gpt.encode_primary()).unwrap();
    let raw = std::fs::read_to_string(src.join("rawprogram0.xml")).unwrap();
    let raw = raw.replace(
        "</data>",
        "  <program SECTOR_SIZE_IN_BYTES=\"512\" file_sector_offset=\"0\" filename=\"gpt_main0.bin\" label=\"PrimaryGPT\" num_partition_sectors=\"34\" physical_partition_number=\"0\" start_sector=\"0\" />\n</data>",
    );
    std::fs::write(src.join("rawprogram0.xml"), raw).unwrap();
    // The patches follow userdata to where the new table puts it.
    let userdata = common::edl::reference_layout()
        .into_iter()
        .find(|p| p.0 == "userdata")
        .unwrap()
        .1;
    let patches = std::fs::read_to_string(src.join("patch0.xml")).unwrap();
    let patches = patches.replace(
        &format!("start_sector=\"{userdata}\""),
        &format!("start_sector=\"{}\"", userdata + grow - shrink),
    );
    std::fs::write(src.join("patch0.xml"), patches).unwrap();
    bench.pack_manifest(&src, &format!("{name}-1.0.12"))
}

#[test]
fn a_restore_follows_labels_to_where_a_new_table_moved_them() {
    let bench = Bench::new();
    let sim = EdlSim::start(
        &bench.path("device"),
        edl_config(),
        Some(&bench.path("home/bench")),
    )
    .unwrap();
    let lun_file = sim.lun_path(0);
    let identity = identity_hashes(&lun_file);
    // The job backs the identity partitions up at their old ranges, then flashes a table
    // that moves them 64 sectors on.
    let moving = build_with_table(&bench, "moving", 64, 0);
    let (out, report) = bench.job("recover", &moving, Some(sim.address()), &[]);
    succeeded(&out, &report);
    let folder = PathBuf::from(report["backup"]["dir"].as_str().unwrap());
    let saved = report["backup"]["partitions"].as_array().unwrap();
    let old_start = |label: &str| {
        saved.iter().find(|e| e["label"] == label).unwrap()["start_sector"]
            .as_u64()
            .unwrap()
    };
    let now = layout(&lun_file);
    let (_, start, sectors) = now.iter().find(|p| p.0 == "modemst1").unwrap().clone();
    assert_eq!(start, old_start("modemst1") + 64);

    // Damage every identity partition where it lives now; the old ranges hold modem code.
    let mut lun = std::fs::read(&lun_file).unwrap();
    for label in ["modemst1", "modemst2", "fsg", "fsc", "persist"] {
        let (_, s, n) = now.iter().find(|p| p.0 == label).unwrap();
        lun[(s * SECTOR) as usize..((s + n) * SECTOR) as usize].fill(0xee);
    }
    let old_range = (old_start("modemst1") * SECTOR) as usize..(start * SECTOR) as usize;
    let modem_bytes = lun[old_range.clone()].to_vec();
    std::fs::write(&lun_file, &lun).unwrap();

    let out = bench.run(&[
        "restore",
        folder.to_str().unwrap(),
        "--package",
        moving.to_str().unwrap(),
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
    // Each label's bytes are back in its new range, read through the device's table; the
    // old range (now the modem partition's tail) is untouched.
    assert_eq!(identity_hashes(&lun_file), identity);
    let lun = std::fs::read(&lun_file).unwrap();
    assert_eq!(&lun[old_range], &modem_bytes[..]);
    let programs: Vec<String> = sim
        .commands()
        .into_iter()
        .filter(|c| c.starts_with("firehose:program"))
        .collect();
    assert_eq!(
        programs.last().map(String::as_str),
        Some(
            format!(
                "firehose:program lun=0 start={} sectors=2048",
                now.iter().find(|p| p.0 == "persist").unwrap().1
            )
            .as_str()
        ),
        "{programs:?}"
    );
    assert!(programs.contains(&format!(
        "firehose:program lun=0 start={start} sectors={sectors}"
    )));
    sim.stop();
}

#[test]
fn identity_partitions_follow_a_table_that_moves_them_and_a_resize_is_refused() {
    let bench = Bench::new();
    let sim = EdlSim::start(
        &bench.path("device"),
        edl_config(),
        Some(&bench.path("home/bench")),
    )
    .unwrap();
    let identity = identity_hashes(&sim.lun_path(0));
    let before = std::fs::read(sim.lun_path(0)).unwrap();

    // A table that makes fsg smaller would lose part of it: refused, nothing written.
    let resizing = build_with_table(&bench, "resizing", 64, 8);
    let (out, report) = bench.job("recover", &resizing, Some(sim.address()), &[]);
    assert_eq!(out.status.code(), Some(4), "{report:#}");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("identity partitions") && error.contains("resizes fsg"),
        "{error}"
    );
    assert!(std::fs::read(sim.lun_path(0)).unwrap() == before);

    // A table that only moves them: their bytes go to the new ranges, before the table.
    let moving = build_with_table(&bench, "moving", 64, 0);
    let (out, report) = bench.job("recover", &moving, Some(sim.address()), &[]);
    succeeded(&out, &report);
    let new_layout = layout(&sim.lun_path(0));
    let modemst1 = new_layout.iter().find(|p| p.0 == "modemst1").unwrap();
    let old_layout = common::edl::reference_layout();
    let old_modemst1 = old_layout.iter().find(|p| p.0 == "modemst1").unwrap();
    assert_eq!(
        modemst1.1,
        old_modemst1.1 + 64,
        "the device now has the new table"
    );
    // Read by label through the new table: every identity partition holds its old bytes.
    assert_eq!(identity_hashes(&sim.lun_path(0)), identity);
    assert_flashed(&bench.path("src-moving"), &sim.lun_path(0));
    let notes = report["notes"].to_string();
    assert!(
        notes.contains("modemst1: its backed-up bytes were written"),
        "{notes}"
    );
    let programs: Vec<String> = sim
        .commands()
        .into_iter()
        .filter(|c| c.starts_with("firehose:program"))
        .collect();
    // Five identity partitions moved, then the table, then the images.
    assert_eq!(programs.len(), 5 + 1 + 3, "{programs:?}");
    assert_eq!(programs[5], "firehose:program lun=0 start=0 sectors=34");

    // The same package again: nothing moves any more.
    let (out, report) = bench.job("recover", &moving, Some(sim.address()), &[]);
    succeeded(&out, &report);
    assert_eq!(identity_hashes(&sim.lun_path(0)), identity);
    assert!(!report["notes"]
        .to_string()
        .contains("backed-up bytes were written"));
    sim.stop();
}

/// An Android sparse image of `chunks`: (kind, blocks, payload) with 4096-byte blocks.
fn sparse_image(chunks: &[(u16, u32, Vec<u8>)]) -> Vec<u8> {
    let total: u32 = chunks.iter().map(|c| c.1).sum();
    let mut out =
        flashline::protocol::sparse::Header::encode(4096, total, chunks.len() as u32).to_vec();
    for (kind, blocks, payload) in chunks {
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&blocks.to_le_bytes());
        out.extend_from_slice(&(12 + payload.len() as u32).to_le_bytes());
        out.extend_from_slice(payload);
    }
    out
}

#[test]
fn sparse_entries_are_written_chunk_by_chunk_as_qdl_writes_them() {
    const RAW: u16 = 0xcac1;
    const FILL: u16 = 0xcac2;
    const DONT_CARE: u16 = 0xcac3;
    let bench = Bench::new();
    let src = bench.path("src");
    write_flat_build(&src, "stock", "1.0.12", "MF833V", "", "");
    let a = data(100 * 4096, 31);
    let b = data(300 * 4096, 32);
    let image = sparse_image(&[
        (RAW, 100, a.clone()),
        (DONT_CARE, 50, Vec::new()),
        (FILL, 62, 0xdead_beef_u32.to_le_bytes().to_vec()),
        (RAW, 300, b.clone()),
    ]);
    std::fs::write(src.join("boot.img"), &image).unwrap();
    let raw = std::fs::read_to_string(src.join("rawprogram0.xml")).unwrap();
    let raw = raw.replace(
        "filename=\"boot.img\"",
        "filename=\"boot.img\" sparse=\"true\"",
    );
    std::fs::write(src.join("rawprogram0.xml"), raw).unwrap();
    let pkg = bench.pack_manifest(&src, "sparse-1.0.12");

    let dir = bench.path("device");
    let sim = EdlSim::start(&dir, edl_config(), Some(&bench.path("home/bench"))).unwrap();
    // What the DONT_CARE run covers keeps what was there before.
    let boot = layout(&sim.lun_path(0))
        .into_iter()
        .find(|p| p.0 == "boot")
        .unwrap()
        .1;
    let kept = boot * SECTOR + 100 * 4096;
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut lun = std::fs::OpenOptions::new()
            .write(true)
            .open(sim.lun_path(0))
            .unwrap();
        lun.seek(SeekFrom::Start(kept)).unwrap();
        lun.write_all(&[0x5a; 50 * 4096]).unwrap();
    }
    let (out, report) = bench.job("recover", &pkg, Some(sim.address()), &[]);
    succeeded(&out, &report);
    let lun = std::fs::read(sim.lun_path(0)).unwrap();
    let at = |block: u64, len: usize| {
        let from = (boot * SECTOR + block * 4096) as usize;
        &lun[from..from + len]
    };
    assert_eq!(at(0, a.len()), &a[..]);
    assert!(
        at(100, 50 * 4096).iter().all(|&b| b == 0x5a),
        "DONT_CARE is skipped"
    );
    assert!(at(150, 62 * 4096)
        .chunks(4)
        .all(|w| w == 0xdead_beef_u32.to_le_bytes()));
    assert_eq!(at(212, b.len()), &b[..]);
    let programs: Vec<String> = sim
        .commands()
        .into_iter()
        .filter(|c| {
            c.starts_with(&format!("firehose:program lun=0 start={}", boot)) || {
                let start = |blocks: u64| format!("start={} ", boot + blocks * 8);
                c.starts_with("firehose:program")
                    && (c.contains(&start(150)) || c.contains(&start(212)))
            }
        })
        .collect();
    assert_eq!(
        programs,
        [
            format!("firehose:program lun=0 start={boot} sectors=800"),
            format!("firehose:program lun=0 start={} sectors=496", boot + 1200),
            format!("firehose:program lun=0 start={} sectors=2400", boot + 1696),
        ]
    );
    assert_eq!(report["images"][1]["verified_by"], "device-digest");
    sim.stop();
}

#[test]
fn a_nand_build_of_2048_byte_pages_flashes_a_nand_modem() {
    let bench = Bench::new();
    let mut cfg = device_with(&[Profile::Nand]);
    cfg.habits.no_digest = true;
    // A dongle of another make: its chip is not the MF833V's, so the package names it.
    cfg.chip = ChipProfile::unlisted();
    let sim = EdlSim::start(&bench.path("device"), cfg, Some(&bench.path("home/bench"))).unwrap();
    let src = bench.path("src-nand");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("prog_nand_firehose.mbn"), programmer()).unwrap();
    // Pages, as NAND flat builds count them; no `memory` line: 2048-byte pages are NAND.
    let images = [
        ("sbl", "sbl1.mbn", 10u64, data(300 * 1024 + 1, 41)),
        (
            "modem",
            "NON-HLOS.ubi",
            2048,
            data(2 * 1024 * 1024 + 5000, 42),
        ),
    ];
    let mut raw = String::from("<?xml version=\"1.0\" ?>\n<data>\n");
    for (label, file, start, bytes) in &images {
        std::fs::write(src.join(file), bytes).unwrap();
        raw.push_str(&format!(
            "  <program SECTOR_SIZE_IN_BYTES=\"2048\" file_sector_offset=\"0\" filename=\"{file}\" label=\"{label}\" num_partition_sectors=\"2048\" physical_partition_number=\"0\" start_sector=\"{start}\" />\n"
        ));
    }
    raw.push_str("</data>\n");
    std::fs::write(src.join("rawprogram_nand.xml"), raw).unwrap();
    std::fs::write(
        src.join("manifest.toml"),
        "name = \"nand\"\nversion = \"1.0.0\"\nsecurity_version = 1\nmin_battery_percent = 0\n\
         [[target]]\nproduct = \"MDM9607-DONGLE\"\n[qualcomm]\n\
         programmer = \"prog_nand_firehose.mbn\"\nrawprogram = [\"rawprogram_nand.xml\"]\n",
    )
    .unwrap();
    let pkg = bench.pack_manifest(&src, "nand-1.0.0");
    let (out, report) = bench.job("recover", &pkg, Some(sim.address()), &[]);
    succeeded(&out, &report);
    let lun = std::fs::read(sim.lun_path(0)).unwrap();
    for (label, _, start, bytes) in &images {
        let from = (start * 2048) as usize;
        assert_eq!(&lun[from..from + bytes.len()], &bytes[..], "{label}");
    }
    let commands = sim.commands();
    assert!(
        commands
            .iter()
            .any(|c| c.starts_with("firehose:configure memory=nand")),
        "{commands:?}"
    );
    assert!(commands
        .iter()
        .any(|c| c == "firehose:program lun=0 start=2048 sectors=1027"));
    // 512 erase blocks of 64 pages: the LUN is 32768 pages, as the device described it.
    assert_eq!(report["device"]["luns"][0]["sectors"], 32768);
    assert_eq!(report["device"]["luns"][0]["sector_size"], 2048);
    assert_eq!(verified_by(&report), ["read-back"; 2]);
    sim.stop();
}

#[test]
fn a_build_whose_memory_cannot_be_told_names_the_manifest_line_that_fixes_it() {
    let bench = Bench::new();
    let src = bench.path("src-mixed");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("prog.elf"), programmer()).unwrap();
    std::fs::write(src.join("a.bin"), data(4096, 1)).unwrap();
    std::fs::write(
        src.join("rawprogram0.xml"),
        "<?xml version=\"1.0\" ?>\n<data>\n\
         <program SECTOR_SIZE_IN_BYTES=\"512\" filename=\"a.bin\" label=\"a\" num_partition_sectors=\"8\" physical_partition_number=\"0\" start_sector=\"100\" />\n\
         <program SECTOR_SIZE_IN_BYTES=\"4096\" filename=\"a.bin\" label=\"b\" num_partition_sectors=\"1\" physical_partition_number=\"1\" start_sector=\"100\" />\n\
         </data>\n",
    )
    .unwrap();
    std::fs::write(
        src.join("manifest.toml"),
        "name = \"mixed\"\nversion = \"1.0.0\"\nsecurity_version = 1\nmin_battery_percent = 0\n\
         [[target]]\nproduct = \"X\"\n[qualcomm]\nprogrammer = \"prog.elf\"\n\
         rawprogram = [\"rawprogram0.xml\"]\n",
    )
    .unwrap();
    let out = bench.run(&[
        "pack",
        src.join("manifest.toml").to_str().unwrap(),
        "--key",
        bench.path("keys/release.key").to_str().unwrap(),
        "-o",
        bench.path("mixed.flpkg").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("memory = \"emmc\"") && text.contains("[qualcomm]"),
        "{text}"
    );
}

/// Issue 13, item 1, through the whole job: the package file (say, on a network share)
/// is changed while its modem image is being sent. None of the changed bytes reaches the
/// LUN, the job fails, and the device is left in EDL.
#[test]
fn a_package_changed_while_it_is_sent_never_puts_the_change_on_the_lun() {
    use flashline::engine::{self, Event, Outcome};

    let bench = Bench::new();
    let pkg = stock(&bench);
    let image = std::fs::read(bench.path("src/NON-HLOS.bin")).unwrap();
    let tampered_at = 4 * 1024 * 1024 + 512 * 1024;
    let package = std::fs::read(&pkg).unwrap();
    let needle = &image[tampered_at..tampered_at + 64];
    let in_package = package
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    let (sim, address, trust, _turn, _announce) = in_process_edl(&bench);
    let req = common::virtual_job(&pkg, trust, &address, bench.dir.path());
    let mut swapped = false;
    let report = engine::run(&req, &mut |event| {
        if let Event::Progress { index: 2, .. } = event {
            if !swapped {
                use std::io::{Seek, SeekFrom, Write};
                let mut file = std::fs::OpenOptions::new().write(true).open(&pkg).unwrap();
                file.seek(SeekFrom::Start(in_package as u64)).unwrap();
                file.write_all(&[0xee; 4096]).unwrap();
                swapped = true;
            }
        }
    });
    assert!(swapped);
    assert_eq!(report.outcome, Outcome::DeviceError);
    let error = report.error.unwrap();
    assert!(error.contains("changed since it was verified"), "{error}");
    assert_eq!(report.images[2].status, "failed");
    let lun = std::fs::read(sim.lun_path(0)).unwrap();
    let (_, modem, _) = layout(&sim.lun_path(0))
        .into_iter()
        .find(|p| p.0 == "modem")
        .unwrap();
    let from = (modem * SECTOR) as usize;
    let region = &lun[from..from + image.len()];
    assert_eq!(
        &region[..4 << 20],
        &image[..4 << 20],
        "blocks before the change"
    );
    assert!(
        region[4 << 20..].iter().all(|&b| b == 0),
        "nothing from the changed block on"
    );
    assert_eq!(
        last_firehose(&sim.commands()),
        Some("firehose:power reset_to_edl")
    );
    sim.stop();
}
