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
//! * packages made before block hashes existed still verify and flash;
//! * sparse images cut into pieces (fastboot) or written chunk by chunk (Firehose) are
//!   hashed once, on their way, like any other image: the package's count of hashed
//!   bytes equals the bytes sent, and a changed block is never committed.
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
use flashline::package::{Package, TrustStore, VerifiedPackage};
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
    let sim = EdlSim::start(&bench.path("device"), edl_config(), None).unwrap();
    let address = sim.address().to_string();
    let src = bench.path("src");
    write_flat_build(&src, "stock", "1.0.12", "MF833V", "", "");
    let modem = fs::read(src.join("NON-HLOS.bin")).unwrap();
    let pkg = bench.pack_manifest(&src, "stock-1.0.12");
    let verified = verify(&bench, &pkg);
    let tampered = tamper(
        &pkg,
        image_offset(&pkg, &verified, "NON-HLOS.bin") + 2 * MIB as u64 + 7,
    );

    let report = recover_in_process(&bench, &pkg, &verified, &address);
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

fn verify(bench: &Bench, pkg: &Path) -> VerifiedPackage {
    let trust = TrustStore::load_dir(&bench.path("keys")).unwrap();
    Package::open(pkg).unwrap().verify(&trust).unwrap()
}

/// Where the image `file` (its manifest partition name) starts in the package: after the
/// prefix and the images before it.
fn image_offset(pkg: &Path, verified: &VerifiedPackage, file: &str) -> u64 {
    let images = &verified.manifest().images;
    let index = images.iter().position(|i| i.partition == file).unwrap();
    let prefix = HEADER_LEN
        + fs::read(pkg).unwrap()[12..20]
            .try_into()
            .map(u64::from_le_bytes)
            .unwrap()
        + SIGNATURE_ENTRY_LEN;
    prefix + images[..index].iter().map(|i| i.size).sum::<u64>()
}

/// Runs the recover job of `verified` (already verified, so the package file can be
/// changed afterwards) on the EDL device at `address`, in this process.
fn recover_in_process(
    bench: &Bench,
    pkg: &Path,
    verified: &VerifiedPackage,
    address: &str,
) -> engine::Report {
    let trust = TrustStore::load_dir(&bench.path("keys")).unwrap();
    let req = common::virtual_job(pkg, trust, address, bench.dir.path());
    let _turn = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    std::env::set_var("FLASHLINE_HOME", bench.path("home"));
    let _announce = flashline::device::bench::announce(
        &bench.path("home/bench"),
        &flashline::device::bench::BenchEntry {
            address: address.into(),
            vid: 0x05c6,
            pid: 0x9008,
            serial: "FLMODEM0001".into(),
            product: "QUSB__BULK".into(),
            ..Default::default()
        },
    )
    .unwrap();
    engine::run_verified(&req, verified, &mut |_| {})
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

/// A 5 MiB random image with 2 MiB of zeros, which `pack` stores as a sparse image, and a
/// phone that takes at most 1 MiB per download, so it goes in several sparse pieces.
fn split_sparse_setup(bench: &Bench) -> (std::path::PathBuf, Vec<u8>, PhoneConfig) {
    let system = image(5 * MIB, 2 * MIB, 0);
    let pkg = bench.pack(
        "stock",
        "2.1.0",
        7,
        "zte-demo-phone",
        &[("system", &system)],
    );
    let phone = PhoneConfig {
        max_download_size: MIB as u32,
        partitions: vec![
            ("boot".into(), MIB as u64),
            ("system".into(), 8 * MIB as u64),
        ],
        ..PhoneConfig::default()
    };
    (pkg, system, phone)
}

#[test]
fn a_split_sparse_image_is_hashed_once_on_its_way() {
    let bench = Bench::new();
    let (pkg, system, phone_cfg) = split_sparse_setup(&bench);
    let (phone, dir) = bench.phone(phone_cfg);
    let verified = verify(&bench, &pkg);
    let stored = verified.manifest().images[0].clone();
    assert!(stored.sparse.is_some() && stored.blocks.is_some());
    let trust = TrustStore::load_dir(&bench.path("keys")).unwrap();
    let req = common::virtual_job(&pkg, trust, &phone.device_address(), bench.dir.path());
    let report = engine::run_verified(&req, &verified, &mut |_| {});
    assert_eq!(report.outcome, Outcome::Success, "{report:?}");
    assert_prefix(&dir.join("system.img"), &system);
    let downloads = phone
        .commands()
        .iter()
        .filter(|c| c.starts_with("download:"))
        .count();
    assert!(downloads > 3, "the image went in pieces: {downloads}");
    assert_eq!(
        verified.bytes_hashed(),
        stored.size,
        "every byte of the sparse image was hashed exactly once"
    );
}

#[test]
fn a_changed_block_of_a_split_sparse_image_is_never_flashed() {
    let bench = Bench::new();
    let (pkg, system, phone_cfg) = split_sparse_setup(&bench);
    let (phone, dir) = bench.phone(phone_cfg);
    let verified = verify(&bench, &pkg);
    // A byte in the sparse file's fourth MiB (a signed block), inside its RAW data.
    tamper(
        &pkg,
        image_offset(&pkg, &verified, "system") + 3 * MIB as u64 + 5,
    );
    let trust = TrustStore::load_dir(&bench.path("keys")).unwrap();
    let req = common::virtual_job(&pkg, trust, &phone.device_address(), bench.dir.path());
    let report = engine::run_verified(&req, &verified, &mut |_| {});
    assert_eq!(report.outcome, Outcome::DeviceError, "{report:?}");
    let error = report.error.unwrap();
    assert!(error.contains("changed since it was verified"), "{error}");
    let stored = fs::read(dir.join("system.img")).unwrap();
    // The changed block starts 3 MiB into the sparse file: 40 bytes of headers (file and
    // chunk) earlier in the expanded image. Pieces before it hold signed bytes; the piece
    // holding it never got its `flash`.
    let block_at = 3 * MIB - 40;
    let cut = stored[..block_at]
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |p| p + 1);
    assert!(cut > 0, "the first pieces were flashed");
    assert_eq!(
        &stored[..cut],
        &system[..cut],
        "only signed bytes were written"
    );
    assert!(
        stored[block_at..].iter().all(|&b| b == 0),
        "the changed block never reached storage"
    );
    let count = |prefix: &str| {
        phone
            .commands()
            .iter()
            .filter(|c| c.starts_with(prefix))
            .count()
    };
    assert_eq!(
        count("flash:") + 1,
        count("download:"),
        "the last download was not committed"
    );
}

/// The default flat build with boot as a sparse image of a RAW, a DONT_CARE, a FILL and
/// a RAW chunk (512 blocks of 4096 bytes, about 1.6 MiB stored: two signed blocks);
/// returns the data of its two RAW chunks.
fn sparse_flat_build(src: &Path) -> (Vec<u8>, Vec<u8>) {
    write_flat_build(src, "stock", "1.0.12", "MF833V", "", "");
    let a = common::edl::data(100 * 4096, 31);
    let b = common::edl::data(300 * 4096, 32);
    let mut sparse = flashline::protocol::sparse::Header::encode(4096, 512, 4).to_vec();
    for (kind, blocks, payload) in [
        (0xcac1u16, 100u32, &a[..]),
        (0xcac3, 50, &[][..]),
        (0xcac2, 62, &0xdead_beef_u32.to_le_bytes()[..]),
        (0xcac1, 300, &b[..]),
    ] {
        sparse.extend_from_slice(&kind.to_le_bytes());
        sparse.extend_from_slice(&[0, 0]);
        sparse.extend_from_slice(&blocks.to_le_bytes());
        sparse.extend_from_slice(&(12 + payload.len() as u32).to_le_bytes());
        sparse.extend_from_slice(payload);
    }
    fs::write(src.join("boot.img"), &sparse).unwrap();
    let raw = fs::read_to_string(src.join("rawprogram0.xml")).unwrap();
    let raw = raw.replace(
        "filename=\"boot.img\"",
        "filename=\"boot.img\" sparse=\"true\"",
    );
    fs::write(src.join("rawprogram0.xml"), raw).unwrap();
    (a, b)
}

#[test]
fn an_edl_sparse_image_is_hashed_once_and_a_changed_block_never_reaches_storage() {
    let bench = Bench::new();
    let src = bench.path("src");
    let (a, b) = sparse_flat_build(&src);
    let pkg = bench.pack_manifest(&src, "sparse-1.0.12");

    // Untouched: every stored byte of every image is hashed once, and storage holds the
    // chunks where the sparse image puts them.
    let sim = EdlSim::start(&bench.path("device"), edl_config(), None).unwrap();
    let verified = verify(&bench, &pkg);
    let report = recover_in_process(&bench, &pkg, &verified, sim.address());
    assert_eq!(report.outcome, Outcome::Success, "{report:?}");
    // Everything but the rawprogram and patch files, which are the plan, not data.
    let sent: u64 = verified
        .manifest()
        .images
        .iter()
        .filter(|i| !i.partition.ends_with(".xml"))
        .map(|i| i.size)
        .sum();
    assert_eq!(
        verified.bytes_hashed(),
        sent,
        "each stored byte was hashed once on its way"
    );
    let boot = layout(&sim.lun_path(0))
        .into_iter()
        .find(|p| p.0 == "boot")
        .unwrap();
    let lun = fs::read(sim.lun_path(0)).unwrap();
    let held = region(&lun, boot.1, boot.2);
    assert_eq!(&held[..a.len()], &a[..]);
    assert!(held[150 * 4096..212 * 4096]
        .chunks(4)
        .all(|w| w == 0xdead_beef_u32.to_le_bytes()));
    assert_eq!(&held[212 * 4096..512 * 4096], &b[..]);
    sim.stop();

    // A byte of the second signed block (inside b) changed after verification, on a
    // blank device: only signed bytes before that block are written, none from it on.
    let sim = EdlSim::start(&bench.path("device2"), edl_config(), None).unwrap();
    let verified = verify(&bench, &pkg);
    let at = MIB + 7;
    let tampered = tamper(&pkg, image_offset(&pkg, &verified, "boot.img") + at as u64);
    let report = recover_in_process(&bench, &pkg, &verified, sim.address());
    assert_eq!(report.outcome, Outcome::DeviceError, "{report:?}");
    let lun = fs::read(sim.lun_path(0)).unwrap();
    let held = region(&lun, boot.1, boot.2);
    assert!(
        held[..a.len()] == a[..],
        "chunks before the block are written"
    );
    // b's payload starts after 4 chunk headers, the file header and a's and the FILL's
    // payloads; the changed block starts 1 MiB into the file. What b's `<program>` got
    // before it is signed bytes (the payload the block would have completed is not sent:
    // zeros fill the range).
    let b_from = 28 + 4 * 12 + a.len() + 4;
    let b_at = 212 * 4096;
    let block_in_b = MIB - b_from;
    let before = &held[b_at..b_at + block_in_b];
    let cut = before.iter().rposition(|&x| x != 0).map_or(0, |p| p + 1);
    assert!(before[..cut] == b[..cut], "only signed bytes were written");
    assert_ne!(held[b_at + (at - b_from)], tampered);
    assert!(
        held[b_at + block_in_b..].iter().all(|&x| x == 0),
        "the changed block and all after it never reached storage"
    );
    sim.stop();
}
