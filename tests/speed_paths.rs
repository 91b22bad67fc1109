//! The fast paths of issue 16, checked for correctness (no timings here; the benchmark,
//! `examples/bench`, measures them):
//!
//! * images are checked block by block, against hashes signed at pack time, on their way
//!   to the device: a block changed after the package was verified is never committed
//!   (fastboot: its `flash` is never sent; Firehose: its bytes never reach storage);
//! * a raw image with uniform blocks is packed as an Android sparse image, which Debian's
//!   `simg2img` expands back to exactly the raw image;
//! * EDL re-flashes send only the blocks the device's own digests show to differ, erase
//!   all-zero blocks, skip nothing on a programmer without `<getsha256digest>`, and leave
//!   storage holding exactly the build;
//! * packages made before block hashes existed still verify and flash.
#![cfg(unix)]

mod common;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use common::bench::{assert_prefix, image, Bench};
use common::edl::{assert_flashed, edl_config, layout, region, write_flat_build};
use ed25519_dalek::{Signer as _, SigningKey};
use flashline::engine::{self, Outcome};
use flashline::package::container::{HEADER_LEN, SIGNATURE_ENTRY_LEN};
use flashline::package::{Package, TrustStore};
use flashline::sim::edl::{EdlSim, Habits};
use flashline::sim::phone::PhoneConfig;
use sha2::{Digest, Sha256};

const MIB: usize = 1024 * 1024;

/// In-process jobs on EDL devices point `FLASHLINE_HOME` at their bench; they take turns.
static IN_PROCESS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Flips one byte of the package file in place (same file, same inode), as another
/// process could after flashline verified it.
fn tamper(path: &Path, at: u64) -> u8 {
    let file = fs::OpenOptions::new()
        .write(true)
        .read(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, at).unwrap();
    byte[0] ^= 0x5a;
    file.write_all_at(&byte, at).unwrap();
    byte[0]
}

#[test]
fn a_block_changed_after_verification_is_never_flashed_over_fastboot() {
    let bench = Bench::new();
    let system = image(6 * MIB, 0, 0);
    let pkg = bench.pack(
        "stock",
        "2.1.0",
        7,
        "zte-demo-phone",
        &[("system", &system)],
    );
    let (phone, dir) = bench.phone(PhoneConfig {
        max_download_size: MIB as u32,
        partitions: vec![
            ("boot".into(), MIB as u64),
            ("system".into(), 8 * MIB as u64),
        ],
        ..PhoneConfig::default()
    });
    let trust = TrustStore::load_dir(&bench.path("keys")).unwrap();
    let verified = Package::open(&pkg).unwrap().verify(&trust).unwrap();
    // The image is the package's tail; change a byte of its fourth MiB (a signed block).
    let image_at = fs::metadata(&pkg).unwrap().len() - system.len() as u64;
    tamper(&pkg, image_at + 3 * MIB as u64 + 5);

    let req = common::virtual_job(&pkg, trust, &phone.device_address(), bench.dir.path());
    let report = engine::run_verified(&req, &verified, &mut |_| {});
    assert_eq!(report.outcome, Outcome::DeviceError, "{report:?}");
    let error = report.error.unwrap();
    assert!(error.contains("changed since it was verified"), "{error}");
    let stored = fs::read(dir.join("system.img")).unwrap();
    // Pieces before the changed block may be committed (they are the signed bytes); the
    // piece holding it never got its `flash`, so from there on nothing was written.
    let cut = stored[..3 * MIB]
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |p| p + 1);
    assert_eq!(
        &stored[..cut],
        &system[..cut],
        "only signed bytes were written"
    );
    assert!(
        stored[3 * MIB..].iter().all(|&b| b == 0),
        "the changed block never reached storage"
    );
    let flashes = phone
        .commands()
        .iter()
        .filter(|c| c.starts_with("flash:"))
        .count();
    let downloads = phone
        .commands()
        .iter()
        .filter(|c| c.starts_with("download:"))
        .count();
    assert_eq!(
        flashes + 1,
        downloads,
        "the last download was not committed"
    );
}

#[test]
fn raw_images_with_uniform_blocks_are_packed_sparse_and_expand_to_the_raw_image() {
    let Some(simg2img) = common::peer("simg2img") else {
        return;
    };
    let bench = Bench::new();
    // Random data, 2 MiB of zeros and 64 KiB of a repeated word.
    let raw = image(MIB, 2 * MIB, 64 * 1024);
    let pkg = bench.pack("stock", "2.1.0", 7, "zte-demo-phone", &[("system", &raw)]);
    let trust = TrustStore::load_dir(&bench.path("keys")).unwrap();
    let verified = Package::open(&pkg).unwrap().verify(&trust).unwrap();
    let stored = &verified.manifest().images[0];
    let sparse = stored.sparse.expect("stored as a sparse image");
    assert_eq!(sparse.expanded_size, raw.len() as u64);
    assert!(stored.size < raw.len() as u64 / 2, "{} bytes", stored.size);
    let mut bytes = Vec::new();
    let mut reader = verified.open_image(0).unwrap();
    std::io::Read::read_to_end(&mut reader, &mut bytes).unwrap();
    reader.finish().unwrap();
    let simg = bench.path("system.simg");
    let expanded = bench.path("system.raw");
    fs::write(&simg, &bytes).unwrap();
    let out = Command::new(simg2img)
        .arg(&simg)
        .arg(&expanded)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        fs::read(&expanded).unwrap() == raw,
        "simg2img expands it to the raw image"
    );

    // And a phone ends up holding the raw image.
    let (phone, dir) = bench.phone(PhoneConfig {
        partitions: vec![
            ("boot".into(), MIB as u64),
            ("system".into(), 4 * MIB as u64),
        ],
        ..PhoneConfig::default()
    });
    let (out, report) = bench.flash(&pkg, &phone, &[]);
    assert!(out.status.success(), "{report:#}");
    assert_prefix(&dir.join("system.img"), &raw);
}

/// The modem image of the default flat build, with one block changed and one zeroed.
fn changed_modem(src: &Path) -> Vec<u8> {
    let mut modem = fs::read(src.join("NON-HLOS.bin")).unwrap();
    for b in &mut modem[2 * MIB..2 * MIB + 1000] {
        *b ^= 0xff;
    }
    modem[4 * MIB..5 * MIB].fill(0);
    fs::write(src.join("NON-HLOS.bin"), &modem).unwrap();
    modem
}

fn image_report<'a>(report: &'a serde_json::Value, partition: &str) -> &'a serde_json::Value {
    report["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["partition"] == partition)
        .unwrap()
}

#[test]
fn an_edl_reflash_writes_only_the_blocks_that_differ() {
    let bench = Bench::new();
    let bench_dir = bench.path("home/bench");
    let sim = EdlSim::start(&bench.path("device"), edl_config(), Some(&bench_dir)).unwrap();
    let first = bench.path("src-1");
    write_flat_build(&first, "stock", "1.0.12", "MF833V", "", "");
    let pkg = bench.pack_manifest(&first, "stock-1.0.12");
    let (out, report) = bench.job("recover", &pkg, None, &[]);
    assert!(out.status.success(), "{report:#}");
    // A blank device holds nothing of the build: everything is written.
    let modem = image_report(&report, "modem");
    assert_eq!(modem["skipped"]["equal_bytes"], 0, "{modem:#}");

    let second = bench.path("src-2");
    write_flat_build(&second, "stock", "1.0.13", "MF833V", "", "");
    changed_modem(&second);
    let pkg = bench.pack_manifest(&second, "stock-1.0.13");
    let (out, report) = bench.job("recover", &pkg, None, &[]);
    assert!(out.status.success(), "{report:#}");
    assert_flashed(&second, &sim.lun_path(0));
    let modem = image_report(&report, "modem");
    let skipped = &modem["skipped"];
    assert_eq!(skipped["chunk_bytes"], MIB, "{modem:#}");
    assert_eq!(
        skipped["written_bytes"], MIB,
        "one block differs: {modem:#}"
    );
    assert_eq!(
        skipped["erased_bytes"], MIB,
        "one block is zeros: {modem:#}"
    );
    assert_eq!(
        skipped["equal_bytes"],
        3 * MIB,
        "the other blocks were already right: {modem:#}"
    );
    assert!(skipped["why"].as_str().unwrap().contains("compared"));
    assert_eq!(modem["verified_by"], "device-digest");
    // boot's whole blocks were held; its partial last block is always written.
    let boot = image_report(&report, "boot");
    assert_eq!(boot["skipped"]["equal_bytes"], 2 * MIB, "{boot:#}");
    sim.stop();
}

#[test]
fn a_programmer_without_digests_gets_every_block_written() {
    let bench = Bench::new();
    let bench_dir = bench.path("home/bench");
    let mut cfg = edl_config();
    cfg.habits = Habits {
        no_digest: true,
        ..Habits::default()
    };
    let sim = EdlSim::start(&bench.path("device"), cfg, Some(&bench_dir)).unwrap();
    let src = bench.path("src");
    write_flat_build(&src, "stock", "1.0.12", "MF833V", "", "");
    let pkg = bench.pack_manifest(&src, "stock-1.0.12");
    for _ in 0..2 {
        let (out, report) = bench.job("recover", &pkg, None, &[]);
        assert!(out.status.success(), "{report:#}");
        assert_flashed(&src, &sim.lun_path(0));
        let modem = image_report(&report, "modem");
        assert_eq!(modem["skipped"]["equal_bytes"], 0, "{modem:#}");
        assert_eq!(modem["skipped"]["erased_bytes"], 0, "{modem:#}");
        assert!(
            modem["skipped"]["why"]
                .as_str()
                .unwrap()
                .contains("no <getsha256digest>"),
            "{modem:#}"
        );
        assert_eq!(modem["verified_by"], "read-back");
    }
    sim.stop();
}

#[test]
fn a_block_changed_after_verification_never_reaches_edl_storage() {
    let bench = Bench::new();
    let bench_dir = bench.path("home/bench");
    let sim = EdlSim::start(&bench.path("device"), edl_config(), None).unwrap();
    let address = sim.address().to_string();
    let src = bench.path("src");
    write_flat_build(&src, "stock", "1.0.12", "MF833V", "", "");
    let modem = fs::read(src.join("NON-HLOS.bin")).unwrap();
    let pkg = bench.pack_manifest(&src, "stock-1.0.12");
    let trust = TrustStore::load_dir(&bench.path("keys")).unwrap();
    let verified = Package::open(&pkg).unwrap().verify(&trust).unwrap();
    let index = verified
        .manifest()
        .images
        .iter()
        .position(|i| i.partition == "NON-HLOS.bin")
        .unwrap();
    // Where the modem image starts in the package: after the prefix and earlier images.
    let prefix = HEADER_LEN
        + fs::read(&pkg).unwrap()[12..20]
            .try_into()
            .map(u64::from_le_bytes)
            .unwrap()
        + SIGNATURE_ENTRY_LEN;
    let before: u64 = verified.manifest().images[..index]
        .iter()
        .map(|i| i.size)
        .sum();
    let tampered = tamper(&pkg, prefix + before + 2 * MIB as u64 + 7);

    let req = common::virtual_job(&pkg, trust, &address, bench.dir.path());
    let _turn = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    std::env::set_var("FLASHLINE_HOME", bench.path("home"));
    let _announce = flashline::device::bench::announce(
        &bench_dir,
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
    let report = engine::run_verified(&req, &verified, &mut |_| {});
    assert_eq!(report.outcome, Outcome::DeviceError, "{report:?}");
    let error = report.error.unwrap();
    assert!(error.contains("changed since it was verified"), "{error}");
    let lun = fs::read(sim.lun_path(0)).unwrap();
    let (start, sectors) = layout(&sim.lun_path(0))
        .into_iter()
        .find(|p| p.0 == "modem")
        .map(|p| (p.1, p.2))
        .unwrap();
    let held = region(&lun, start, sectors);
    assert_eq!(
        &held[..2 * MIB],
        &modem[..2 * MIB],
        "the blocks before it are written"
    );
    assert_ne!(held[2 * MIB + 7], tampered);
    assert!(
        held[2 * MIB..].iter().all(|&b| b == 0),
        "the changed block and all after it never reached storage"
    );
    sim.stop();
}

/// A signing key read from its `.key` file, to re-sign an edited manifest.
fn signing_key(key_file: &Path) -> SigningKey {
    let text = fs::read_to_string(key_file).unwrap();
    let seed: [u8; 32] = hex::decode(text.split(' ').nth(1).unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    SigningKey::from_bytes(&seed)
}

#[test]
fn packages_without_block_hashes_still_verify_and_flash() {
    let bench = Bench::new();
    let boot = image(3 * MIB, 0, 0);
    let system = image(5 * MIB, 0, 0);
    let pkg = bench.pack(
        "stock",
        "2.1.0",
        7,
        "zte-demo-phone",
        &[("boot", &boot), ("system", &system)],
    );
    // Rewrite it as flashline wrote packages before block hashes: same images, a manifest
    // without `blocks`, signed again with the same key.
    let bytes = fs::read(&pkg).unwrap();
    let m = u64::from_le_bytes(bytes[12..20].try_into().unwrap()) as usize;
    let header = HEADER_LEN as usize;
    let mut json: serde_json::Value = serde_json::from_slice(&bytes[header..header + m]).unwrap();
    for image in json["images"].as_array_mut().unwrap() {
        assert!(image.as_object_mut().unwrap().remove("blocks").is_some());
    }
    let manifest = serde_json::to_vec(&json).unwrap();
    let key = signing_key(&bench.path("keys/release.key"));
    let message = [
        flashline::package::container::SIGNATURE_DOMAIN,
        &manifest[..],
    ]
    .concat();
    let id: [u8; 8] = Sha256::digest(key.verifying_key().as_bytes())[..8]
        .try_into()
        .unwrap();
    let mut old = bytes[..12].to_vec();
    old.extend_from_slice(&(manifest.len() as u64).to_le_bytes());
    old.extend_from_slice(&bytes[20..header]);
    old.extend_from_slice(&manifest);
    old.extend_from_slice(&id);
    old.extend_from_slice(&key.sign(&message).to_bytes());
    old.extend_from_slice(&bytes[header + m + SIGNATURE_ENTRY_LEN as usize..]);
    let old_pkg = bench.path("old.flpkg");
    fs::write(&old_pkg, &old).unwrap();

    let trust = TrustStore::load_dir(&bench.path("keys")).unwrap();
    let verified = Package::open(&old_pkg).unwrap().verify(&trust).unwrap();
    assert!(verified
        .manifest()
        .images
        .iter()
        .all(|i| i.blocks.is_none()));
    // Its images are hashed whole when it is verified, as before.
    let mut damaged = old.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    fs::write(bench.path("damaged.flpkg"), &damaged).unwrap();
    assert!(Package::open(&bench.path("damaged.flpkg"))
        .unwrap()
        .verify(&trust)
        .is_err());

    let (phone, dir) = bench.phone(PhoneConfig {
        max_download_size: 2 * MIB as u32,
        partitions: vec![
            ("boot".into(), 4 * MIB as u64),
            ("system".into(), 8 * MIB as u64),
        ],
        ..PhoneConfig::default()
    });
    let (out, report) = bench.flash(&old_pkg, &phone, &[]);
    assert!(out.status.success(), "{report:#}");
    assert_prefix(&dir.join("boot.img"), &boot);
    assert_prefix(&dir.join("system.img"), &system);
    assert_eq!(
        report["package"]["manifest_sha256"],
        hex::encode(Sha256::digest(&manifest))
    );
}

#[test]
fn a_model_that_takes_only_raw_images_for_a_partition_gets_the_image_expanded() {
    let bench = Bench::new();
    // 512 KiB random, 1 MiB zeros: packed as a sparse image.
    let boot = image(512 * 1024, MIB, 0);
    let pkg = bench.pack(
        "raw",
        "2.1.0",
        7,
        "flashline-raw-boot-phone",
        &[("boot", &boot)],
    );
    let phone_cfg = |raw_only: Vec<String>| PhoneConfig {
        product: "flashline-raw-boot-phone".into(),
        partitions: vec![("boot".into(), 4 * MIB as u64)],
        raw_only,
        ..PhoneConfig::default()
    };
    // The bootloader refuses sparse images for boot...
    let (phone, dir) = bench.phone(phone_cfg(vec!["boot".into()]));
    let (out, report) = bench.flash(&pkg, &phone, &["--allow-older"]);
    assert!(out.status.success(), "{report:#}");
    assert_prefix(&dir.join("boot.img"), &boot);
    // ...and got the expanded image in one raw download.
    let download = format!("download:{:08x}", boot.len());
    assert!(
        phone.commands().contains(&download),
        "{:?}",
        phone.commands()
    );
}
