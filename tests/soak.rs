//! The soak: many randomized fault plans, each against a fresh virtual device (a phone,
//! plain or A/B, or a modem in EDL), each followed by the same job run again.
//!
//! After every run it asserts what an owner needs from a flasher that met a yanked cable,
//! a power cut, a refusing, silent or babbling device, a dying battery or a device that
//! re-enumerates on its own:
//! - no panic, and a report on disk;
//! - each image is either the old one or the new one, except at most the one image the
//!   report names as incomplete;
//! - the identity partitions are unchanged, the running slot of an A/B phone is never
//!   written and its slot is never switched before every image was written;
//! - the job run again completes, keeps the images the interrupted run verified, and
//!   leaves exactly the new firmware.
//!
//! Reproducible: the seed and the run count come from `FLASHLINE_SOAK_SEED` and
//! `FLASHLINE_SOAK_RUNS` (CI runs the default small count; README gives the 1 000-run
//! command). Each run prints its fault, so a failure names the plan that caused it.
#![cfg(unix)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::bench::image;
use common::edl::{identity_hashes, layout, region, write_flat_build};
use flashline::device::quirks::Quirks;
use flashline::engine::{self, DeviceTarget, JobOptions, JobRequest, Outcome, Report};
use flashline::package::TrustStore;
use flashline::sim::edl::{EdlConfig, EdlSim};
use flashline::sim::fault::{Fault, FaultPlan};
use flashline::sim::phone::{PhoneConfig, PhoneSim};
use sha2::{Digest, Sha256};

const DEFAULT_RUNS: u64 = 24;
const DEFAULT_SEED: u64 = 0x5eed_f1a5;
const MIB: usize = 1024 * 1024;
const DEMO_KEY: &str = include_str!("../assets/demo-keys/flashline-demo-INSECURE.key");
/// How long a virtual device may stay silent before the job gives up on it.
const SILENCE: Duration = Duration::from_millis(800);

/// xorshift64*: small, seeded, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            let v = v.trim();
            match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            }
            .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        })
        .unwrap_or(default)
}

/// One random fault for a device whose job moves about `payload` bytes and sends the
/// given commands. Faults land anywhere, including after the job's last byte.
fn random_fault(rng: &mut Rng, payload: u64, commands: &[&str], battery: bool) -> Fault {
    let bytes = rng.below(payload + payload / 4);
    let command = rng.pick(commands).to_string();
    // Commands a job sends once get their fault on that one; others anywhere in the job.
    let once = ["set_active:", "reboot", "power", "configure"];
    let nth = if once.contains(&command.as_str()) {
        1
    } else {
        1 + rng.below(3) as u32
    };
    let kinds: &[&str] = if battery {
        &[
            "disconnect",
            "power-loss",
            "fail",
            "stall",
            "garbage",
            "battery",
            "reenumerate",
        ]
    } else {
        &[
            "disconnect",
            "power-loss",
            "fail",
            "stall",
            "garbage",
            "reenumerate",
        ]
    };
    match rng.pick(kinds) {
        "disconnect" => Fault::Disconnect { after_bytes: bytes },
        "power-loss" => Fault::PowerLoss { after_bytes: bytes },
        "fail" => Fault::Fail { command, nth },
        "stall" => Fault::Stall { command, nth },
        "garbage" => Fault::Garbage { command, nth },
        "battery" => Fault::BatteryDrop {
            after_bytes: bytes,
            percent: rng.below(30) as u8,
        },
        _ => Fault::Reenumerate { command, nth },
    }
}

/// What the soak shares between runs: packages, keys, and where runs keep their files.
struct Soak {
    dir: tempfile::TempDir,
    phone_images: Vec<(&'static str, Vec<u8>)>,
    phone_pkg: PathBuf,
    edl_pkg: PathBuf,
}

impl Soak {
    fn new() -> Soak {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("demo.key"), DEMO_KEY).unwrap();
        let phone_images = vec![
            ("boot", image(MIB, 0, 0)),
            ("system", image(3 * MIB, MIB, 4096)),
            ("vendor", image(MIB / 2, 1000, 0)),
        ];
        let src = dir.path().join("phone-src");
        std::fs::create_dir_all(&src).unwrap();
        let mut manifest = String::from(
            "name = \"soak\"\nversion = \"2.1.0\"\nsecurity_version = 7\nmin_battery_percent = 30\n\
             [[target]]\nproduct = \"zte-demo-phone\"\n",
        );
        for (name, bytes) in &phone_images {
            std::fs::write(src.join(format!("{name}.img")), bytes).unwrap();
            manifest.push_str(&format!(
                "[[image]]\npartition = \"{name}\"\nfile = \"{name}.img\"\n"
            ));
        }
        std::fs::write(src.join("manifest.toml"), manifest).unwrap();
        let phone_pkg = dir.path().join("phone.flpkg");
        let key = dir.path().join("demo.key");
        flashline::package::pack(&src.join("manifest.toml"), &key, &phone_pkg).unwrap();
        let edl_src = dir.path().join("edl-src");
        write_flat_build(&edl_src, "soak", "1.0.12", "MF833V", "", "");
        let edl_pkg = dir.path().join("edl.flpkg");
        flashline::package::pack(&edl_src.join("manifest.toml"), &key, &edl_pkg).unwrap();
        // The EDL device is found where discovery looks for virtual devices.
        std::env::set_var("FLASHLINE_HOME", dir.path().join("home"));
        Soak {
            dir,
            phone_images,
            phone_pkg,
            edl_pkg,
        }
    }

    fn request(&self, run: &Path, pkg: &Path, address: &str) -> JobRequest {
        JobRequest {
            package: pkg.to_path_buf(),
            trust: TrustStore::demo(),
            device: DeviceTarget {
                address: address.to_string(),
                is_virtual: true,
                probe: false,
            },
            quirks: Quirks::builtin(),
            options: JobOptions {
                reports_dir: run.join("reports"),
                history_path: run.join("history.json"),
                backups_dir: run.join("backups"),
                journal_dir: run.join("journal"),
                device_timeout: Some(SILENCE),
                switch_timeout: Duration::from_secs(5),
                ..JobOptions::default()
            },
        }
    }
}

/// How an image's bytes on the device compare with the old and the new firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    Old,
    New,
    Neither,
}

/// Short digests, so a failed comparison prints something readable.
fn digests(contents: &[Vec<u8>]) -> Vec<String> {
    contents
        .iter()
        .map(|c| hex::encode(&Sha256::digest(c)[..8]))
        .collect()
}

fn held(now: &[u8], old: &[u8], new: &[u8]) -> Held {
    if now.starts_with(new) {
        Held::New
    } else if now == old {
        Held::Old
    } else {
        Held::Neither
    }
}

/// The checks after the interrupted (first) run.
fn check_first_run(what: &str, report: &Report, held: &[Held]) {
    eprintln!(
        "  first run: {:?} {}",
        report.outcome,
        report.error.as_deref().unwrap_or("")
    );
    assert!(
        report.finished_at.len() > 10,
        "{what}: the report is complete"
    );
    if report.outcome == Outcome::Success {
        assert!(
            held.iter().all(|h| *h == Held::New),
            "{what}: success means every image is new: {held:?}"
        );
        return;
    }
    for (i, h) in held.iter().enumerate() {
        if *h == Held::Neither {
            assert_eq!(
                report.incomplete.as_deref(),
                Some(report.images[i].target.as_str()),
                "{what}: image {i} is neither old nor new, so the report must name it incomplete \
                 (error: {:?})",
                report.error
            );
        }
    }
}

/// Runs the same job again until the device is back (a device that re-enumerated or
/// lost power takes a moment), and checks that it resumed.
fn rerun(what: &str, first: &Report, mut job: impl FnMut() -> Report) -> Report {
    let mut last = None;
    for _ in 0..8 {
        let report = job();
        if report.outcome == Outcome::Success {
            for (i, (a, b)) in first.images.iter().zip(&report.images).enumerate() {
                if a.status == "written" || a.status == "kept" {
                    assert_eq!(
                        b.status, "kept",
                        "{what}: image {i} verified by the interrupted run is kept"
                    );
                }
            }
            return report;
        }
        eprintln!("  run again: {:?} {:?}", report.outcome, report.error);
        last = Some(report.error.unwrap_or_default());
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("{what}: the job run again did not complete: {last:?}");
}

/// One phone run; returns whether its fault interrupted the first job.
fn phone_run(soak: &Soak, rng: &mut Rng, run: u64) -> bool {
    let slots = rng.below(2) == 1;
    let payload: u64 = soak.phone_images.iter().map(|(_, b)| b.len() as u64).sum();
    let fault = random_fault(
        rng,
        payload,
        &["getvar:", "download:", "flash:", "set_active:", "reboot"],
        true,
    );
    let what = format!("run {run}: phone (A/B: {slots}) with {fault}");
    eprintln!("{what}");
    let dir = soak.dir.path().join(format!("run-{run}"));
    let cfg = PhoneConfig {
        partitions: vec![
            ("boot".into(), 2 * MIB as u64),
            ("system".into(), 6 * MIB as u64),
            ("vendor".into(), MIB as u64),
        ],
        slots,
        max_download_size: 2 * MIB as u32,
        faults: FaultPlan {
            faults: vec![fault.clone()],
        },
        ..PhoneConfig::default()
    };
    let store = dir.join("phone");
    let mut phone = PhoneSim::start("127.0.0.1:0".parse().unwrap(), &store, cfg.clone()).unwrap();
    let suffix = if slots { "_b" } else { "" };
    let file = |name: &str, suffix: &str| store.join(format!("{name}{suffix}.img"));
    let read_all = |suffix: &str| -> Vec<Vec<u8>> {
        soak.phone_images
            .iter()
            .map(|(name, _)| std::fs::read(file(name, suffix)).unwrap())
            .collect()
    };
    let old = read_all(suffix);
    let running_slot = if slots {
        digests(&read_all("_a"))
    } else {
        Vec::new()
    };
    let now_held = || -> Vec<Held> {
        read_all(suffix)
            .iter()
            .zip(&old)
            .zip(&soak.phone_images)
            .map(|((now, old), (_, new))| held(now, old, new))
            .collect()
    };

    let req = soak.request(&dir, &soak.phone_pkg, &phone.device_address());
    let first = engine::run(&req, &mut |_| {});
    check_first_run(&what, &first, &now_held());
    if slots {
        assert_eq!(
            digests(&read_all("_a")),
            running_slot,
            "{what}: slot a is never written"
        );
        let commands = phone.commands();
        let last_flash = commands.iter().rposition(|c| c.starts_with("flash:"));
        if let Some(switch) = commands.iter().position(|c| c.starts_with("set_active:")) {
            assert!(
                Some(switch) > last_flash,
                "{what}: no slot switch before the last image: {commands:?}"
            );
        }
    }
    if first.outcome == Outcome::Success {
        phone.stop();
        return false;
    }
    if matches!(fault, Fault::BatteryDrop { .. }) {
        // The owner charges the phone and plugs it back in.
        phone.stop();
        let charged = PhoneConfig {
            faults: FaultPlan::none(),
            ..cfg
        };
        phone = PhoneSim::start("127.0.0.1:0".parse().unwrap(), &store, charged).unwrap();
    }
    let req = soak.request(&dir, &soak.phone_pkg, &phone.device_address());
    rerun(&what, &first, || engine::run(&req, &mut |_| {}));
    assert!(
        now_held().iter().all(|h| *h == Held::New),
        "{what}: after the re-run every image is new"
    );
    if slots {
        assert_eq!(
            digests(&read_all("_a")),
            running_slot,
            "{what}: slot a is never written"
        );
    }
    phone.stop();
    true
}

/// One EDL run; returns whether its fault interrupted the first job.
fn edl_run(soak: &Soak, rng: &mut Rng, run: u64) -> bool {
    let src = soak.dir.path().join("edl-src");
    let images = [
        ("sbl1", "sbl1.mbn"),
        ("boot", "boot.img"),
        ("modem", "NON-HLOS.bin"),
    ]
    .map(|(label, file)| (label, std::fs::read(src.join(file)).unwrap()));
    let payload: u64 = images.iter().map(|(_, b)| b.len() as u64).sum();
    let fault = random_fault(
        rng,
        payload,
        &["configure", "program", "getsha256digest", "patch", "power"],
        false,
    );
    let what = format!("run {run}: EDL modem with {fault}");
    eprintln!("{what}");
    let dir = soak.dir.path().join(format!("run-{run}"));
    let cfg = EdlConfig {
        faults: FaultPlan {
            faults: vec![fault.clone()],
        },
        ..common::edl::edl_config()
    };
    let bench = soak.dir.path().join("home/bench");
    let sim = EdlSim::start(&dir.join("device"), cfg, Some(&bench)).unwrap();
    let lun = sim.lun_path(0);
    let parts = layout(&lun);
    let at = |label: &str| parts.iter().find(|p| p.0 == label).unwrap().1;
    let regions = || -> Vec<Vec<u8>> {
        let bytes = std::fs::read(&lun).unwrap();
        images
            .iter()
            .map(|(label, new)| {
                let sectors = (new.len() as u64).div_ceil(common::edl::SECTOR);
                region(&bytes, at(label), sectors).to_vec()
            })
            .collect()
    };
    let old = regions();
    let identity = identity_hashes(&lun);
    let now_held = || -> Vec<Held> {
        regions()
            .iter()
            .zip(&old)
            .zip(&images)
            .map(|((now, old), (_, new))| held(now, old, new))
            .collect()
    };

    let req = soak.request(&dir, &soak.edl_pkg, sim.address());
    let first = engine::run(&req, &mut |_| {});
    check_first_run(&what, &first, &now_held());
    assert!(identity_hashes(&lun) == identity, "{what}: identity kept");
    let interrupted = first.outcome != Outcome::Success;
    if interrupted {
        rerun(&what, &first, || engine::run(&req, &mut |_| {}));
        assert!(identity_hashes(&lun) == identity, "{what}: identity kept");
    }
    common::edl::assert_flashed(&src, &lun);
    sim.stop();
    interrupted
}

#[test]
fn randomized_fault_plans_never_brick_and_a_rerun_completes() {
    let runs = env_u64("FLASHLINE_SOAK_RUNS", DEFAULT_RUNS);
    let seed = env_u64("FLASHLINE_SOAK_SEED", DEFAULT_SEED);
    eprintln!(
        "soak: {runs} runs, seed {seed:#x} (reproduce with FLASHLINE_SOAK_SEED={seed:#x} \
         FLASHLINE_SOAK_RUNS={runs})"
    );
    let soak = Soak::new();
    let mut rng = Rng(seed | 1);
    let mut interrupted = 0;
    for run in 0..runs {
        let hit = if rng.below(2) == 0 {
            phone_run(&soak, &mut rng, run)
        } else {
            edl_run(&soak, &mut rng, run)
        };
        interrupted += u64::from(hit);
        std::fs::remove_dir_all(soak.dir.path().join(format!("run-{run}"))).ok();
    }
    eprintln!("soak: {runs} runs passed; the fault interrupted the first job in {interrupted}");
    assert!(
        interrupted * 3 >= runs,
        "most faults should land inside the job: only {interrupted} of {runs} did"
    );
}
