//! `flashline pack --factory`: Google-style factory images (the factory zip, its image zip,
//! a product-out folder) become signed packages whose requirements come from
//! android-info.txt and whose order is Google's; hostile zips are refused before anything
//! is written; and a package for another board is refused by preflight on the virtual phone.

mod common;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use common::bench::{assert_prefix, hashes, image, Bench};
use flashline::protocol::lp::{self, GroupSpec, PartitionSpec, SuperLayout};
use flashline::sim::phone::{Dynamic, PhoneConfig};
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

const KIB: usize = 1024;
const MIB: u64 = 1024 * 1024;
const BUILD: &str = "ap2a.240805.005";
const ANDROID_INFO: &str = "require board=oriole|raven\n\
    require version-bootloader=slider-14.5-11677881\n\
    require version-baseband=g5123b-135085-240517-B-11857288|g5123b-135085-240517-B-11857289\n\
    require partition-exists=vbmeta\n";

/// A `super_empty.img` for an A/B phone with dynamic partitions, written by flashline's LP
/// writer: system, vendor and product in both slots, sizes 0 (set at flash time). Its
/// groups are those of the virtual phone's super (`main_a`, `main_b`), as a real factory
/// image's match its device's.
fn super_empty() -> Vec<u8> {
    let mut layout = SuperLayout::new(64 * MIB, 2);
    for slot in ["a", "b"] {
        let group = format!("main_{slot}");
        layout.groups.push(GroupSpec {
            name: group.clone(),
            maximum_size: 0,
        });
        for name in ["system", "vendor", "product"] {
            layout.partitions.push(PartitionSpec {
                name: format!("{name}_{slot}"),
                group: group.clone(),
                size: 0,
                attributes: lp::PARTITION_ATTR_READONLY,
            });
        }
    }
    let metadata = layout.build().unwrap();
    let mut out = Vec::new();
    lp::write_empty_image(&metadata, &mut out).unwrap();
    out
}

/// The images of a test factory image, by file name.
struct Factory {
    bootloader: Vec<u8>,
    radio: Vec<u8>,
    /// Files of the image zip / product-out folder.
    images: Vec<(String, Vec<u8>)>,
}

impl Factory {
    fn new(fastboot_info: Option<&str>) -> Self {
        Factory::with_info(ANDROID_INFO, fastboot_info)
    }

    fn with_info(android_info: &str, fastboot_info: Option<&str>) -> Self {
        let mut images: Vec<(String, Vec<u8>)> = [
            ("boot.img", image(64 * KIB, 0, 0)),
            ("vbmeta.img", image(8 * KIB, 0, 0)),
            ("dtbo.img", image(16 * KIB, 4 * KIB, 0)),
            ("system.img", image(128 * KIB, 64 * KIB, 4 * KIB)),
            ("vendor.img", image(96 * KIB, 0, 8 * KIB)),
            ("product.img", image(32 * KIB, 32 * KIB, 0)),
            ("system_other.img", image(24 * KIB, 0, 0)),
        ]
        .into_iter()
        .map(|(name, bytes)| (name.to_string(), bytes))
        .collect();
        images.push(("super_empty.img".into(), super_empty()));
        images.push(("android-info.txt".into(), android_info.as_bytes().to_vec()));
        if let Some(text) = fastboot_info {
            images.push(("fastboot-info.txt".into(), text.as_bytes().to_vec()));
        }
        Factory {
            bootloader: image(40 * KIB, 0, 0),
            radio: image(48 * KIB, 0, 0),
            images,
        }
    }

    fn bytes(&self, file: &str) -> &[u8] {
        match file {
            f if f.starts_with("bootloader-") => &self.bootloader,
            f if f.starts_with("radio-") => &self.radio,
            f => {
                &self
                    .images
                    .iter()
                    .find(|(name, _)| name == f)
                    .unwrap_or_else(|| panic!("no {f}"))
                    .1
            }
        }
    }

    /// `image-oriole-<build>.zip`, deflated.
    fn image_zip(&self, path: &Path) {
        let entries: Vec<(&str, &[u8])> = self
            .images
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .collect();
        write_zip(path, &entries, CompressionMethod::Deflated);
    }

    /// The factory zip as Google publishes it: `oriole-<build>/` with the firmware, the
    /// flash scripts and the image zip.
    fn factory_zip(&self, path: &Path, scratch: &Path) {
        let inner = scratch.join(format!("image-oriole-{BUILD}.zip"));
        self.image_zip(&inner);
        let inner_bytes = std::fs::read(&inner).unwrap();
        let folder = format!("oriole-{BUILD}");
        let bootloader = format!("{folder}/bootloader-oriole-slider-14.5-11677881.img");
        let radio = format!("{folder}/radio-oriole-g5123b-135085-240517-b-11857288.img");
        let script = format!("{folder}/flash-all.sh");
        let image_zip = format!("{folder}/image-oriole-{BUILD}.zip");
        write_zip(
            path,
            &[
                (bootloader.as_str(), &self.bootloader),
                (radio.as_str(), &self.radio),
                (
                    script.as_str(),
                    b"#!/bin/sh\nfastboot flash bootloader ...\n",
                ),
                (image_zip.as_str(), &inner_bytes),
            ],
            CompressionMethod::Deflated,
        );
    }

    /// A product-out folder: the image zip's files, plain.
    fn folder(&self, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        for (name, bytes) in &self.images {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}

fn write_zip(path: &Path, entries: &[(&str, &[u8])], method: CompressionMethod) {
    let mut zip = ZipWriter::new(File::create(path).unwrap());
    let options = SimpleFileOptions::default().compression_method(method);
    for (name, bytes) in entries {
        zip.start_file(*name, options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

fn pack(bench: &Bench, input: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let key = bench.path("keys/release.key");
    let mut args = vec![
        "pack",
        "--factory",
        input.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    bench.run(&args)
}

fn inspect(bench: &Bench, pkg: &Path) -> serde_json::Value {
    let keys = bench.path("keys");
    let out = bench.run(&[
        "inspect",
        pkg.to_str().unwrap(),
        "--trust",
        keys.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The manifest's images as (partition, file), after checking each one's hash is that of
/// the factory image's own bytes.
fn images(factory: &Factory, manifest: &serde_json::Value) -> Vec<(String, String)> {
    manifest["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|image| {
            let file = image["file"].as_str().unwrap();
            let bytes = factory.bytes(file);
            if image["sparse"].is_null() {
                assert_eq!(image["sha256"], sha256(bytes), "{file}");
                assert_eq!(image["size"], bytes.len() as u64, "{file}");
            } else {
                // pack stores an image with zero or uniform blocks as a sparse image (what
                // is signed is that form; tests/speed_paths.rs has simg2img expand it back
                // to the raw bytes): here its expanded size is the factory image's.
                assert_eq!(
                    image["sparse"]["expanded_size"],
                    bytes.len() as u64,
                    "{file}"
                );
            }
            (
                image["partition"].as_str().unwrap().to_string(),
                file.to_string(),
            )
        })
        .collect()
}

fn requirement(manifest: &serde_json::Value, variable: &str) -> Vec<String> {
    manifest["requires"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["variable"] == variable)
        .unwrap_or_else(|| panic!("no requirement {variable}: {manifest:#}"))["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// Files in `dir` other than `keep`: what a refused pack must not leave behind.
fn leftovers(dir: &Path, keep: &[&Path]) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !keep.contains(&p.as_path()))
        .collect()
}

#[test]
fn the_three_forms_pack_with_android_info_requirements_and_googles_order() {
    let bench = Bench::new();
    let factory = Factory::new(None);
    let outer = bench.path(&format!("oriole-{BUILD}-factory-1234abcd.zip"));
    factory.factory_zip(&outer, &bench.path(""));
    let inner = bench.path("inner");
    std::fs::create_dir_all(&inner).unwrap();
    let inner = inner.join(format!("image-oriole-{BUILD}.zip"));
    factory.image_zip(&inner);
    let folder = bench.path("product-out");
    factory.folder(&folder);

    let google_order = [
        ("boot", "boot.img"),
        ("dtbo", "dtbo.img"),
        ("vbmeta", "vbmeta.img"),
        ("product", "product.img"),
        ("system", "system.img"),
        ("vendor", "vendor.img"),
    ];
    for (form, input, extra, firmware) in [
        ("outer", &outer, &[][..], true),
        ("inner", &inner, &[][..], false),
        ("folder", &folder, &["--version", "240805.5.0"][..], false),
    ] {
        let pkg = bench.path(&format!("{form}.flpkg"));
        let out = pack(&bench, input, &pkg, extra);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{form}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // What pack says: the order, how each image goes, what it left out and why.
        assert!(
            stdout.contains("system ← system.img (logical, through fastbootd)"),
            "{stdout}"
        );
        assert!(stdout.contains("left out system_other.img"), "{stdout}");
        assert_eq!(
            stdout.contains(
                "bootloader ← bootloader-oriole-slider-14.5-11677881.img, then reboot-bootloader"
            ),
            firmware,
            "{stdout}"
        );

        let verify = bench.run(&[
            "verify",
            pkg.to_str().unwrap(),
            "--trust",
            bench.path("keys").to_str().unwrap(),
        ]);
        assert!(
            verify.status.success(),
            "{form}: {}",
            String::from_utf8_lossy(&verify.stderr)
        );

        let human = bench.run(&[
            "inspect",
            pkg.to_str().unwrap(),
            "--trust",
            bench.path("keys").to_str().unwrap(),
        ]);
        let human = String::from_utf8_lossy(&human.stdout);
        for line in [
            "requires         board = oriole | raven",
            "requires         has-slot:vbmeta = yes | no",
            "system.img (",
            "logical: in super, from fastbootd",
            "super layout     super_empty.img",
        ] {
            assert!(human.contains(line), "{form}: {line}\n{human}");
        }
        assert_eq!(
            human.contains("then reboot-bootloader"),
            firmware,
            "{human}"
        );
        let inspection = inspect(&bench, &pkg);
        let manifest = &inspection["manifest"];
        let mut expected: Vec<(String, String)> = Vec::new();
        if firmware {
            expected.push((
                "bootloader".into(),
                "bootloader-oriole-slider-14.5-11677881.img".into(),
            ));
            expected.push((
                "radio".into(),
                "radio-oriole-g5123b-135085-240517-b-11857288.img".into(),
            ));
        }
        expected.extend(
            google_order
                .iter()
                .map(|(p, f)| (p.to_string(), f.to_string())),
        );
        assert_eq!(images(&factory, manifest), expected, "{form}");
        for image in manifest["images"].as_array().unwrap() {
            let partition = image["partition"].as_str().unwrap();
            let logical = ["system", "vendor", "product"].contains(&partition);
            let firmware = ["bootloader", "radio"].contains(&partition);
            assert_eq!(
                image["logical"].as_bool().unwrap_or(false),
                logical,
                "{partition}"
            );
            assert_eq!(
                image["reboot_bootloader"].as_bool().unwrap_or(false),
                firmware,
                "{partition}"
            );
        }
        assert_eq!(
            manifest["dynamic"]["super_empty"]["sha256"],
            sha256(factory.bytes("super_empty.img"))
        );
        assert_eq!(requirement(manifest, "board"), ["oriole", "raven"]);
        assert_eq!(
            requirement(manifest, "version-bootloader"),
            ["slider-14.5-11677881"]
        );
        assert_eq!(
            requirement(manifest, "version-baseband"),
            [
                "g5123b-135085-240517-B-11857288",
                "g5123b-135085-240517-B-11857289"
            ]
        );
        assert_eq!(requirement(manifest, "has-slot:vbmeta"), ["yes", "no"]);
        let targets: Vec<&str> = manifest["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["product"].as_str().unwrap())
            .collect();
        assert_eq!(targets, ["oriole", "raven"]);
        if form == "folder" {
            assert_eq!(manifest["version"], "240805.5.0");
            assert_eq!(manifest["name"], "oriole");
        } else {
            assert_eq!(manifest["version"], format!("240805.5.0+{BUILD}"));
            assert_eq!(manifest["name"], "oriole");
        }
    }
    // No staging folder is left beside the packages.
    assert!(leftovers(&bench.path(""), &[]).iter().all(|p| !p
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with(".flashline-factory")));
}

#[test]
fn fastboot_info_tasks_decide_the_order_and_wipe_is_asked_for() {
    let bench = Bench::new();
    let mut factory = Factory::new(Some(
        "version 1\n# boot-critical first\nflash --apply-vbmeta vbmeta\nflash dtbo\nflash boot\n\
         reboot fastboot\nupdate-super\nflash vendor\nflash system\n\
         flash --slot-other system system_other.img\nflash product\n\
         if-wipe erase userdata\nif-wipe erase metadata\n",
    ));
    factory
        .images
        .push(("userdata.img".into(), image(16 * KIB, 16 * KIB, 0)));
    let inner = bench.path(&format!("image-oriole-{BUILD}.zip"));
    factory.image_zip(&inner);

    let pkg = bench.path("info.flpkg");
    let out = pack(&bench, &inner, &pkg, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("left out userdata.img: user data is wiped only with --wipe"),
        "{stdout}"
    );
    let order: Vec<String> = images(&factory, &inspect(&bench, &pkg)["manifest"])
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(
        order,
        ["vbmeta", "dtbo", "boot", "vendor", "system", "product"]
    );

    let wiped = bench.path("wiped.flpkg");
    let out = pack(&bench, &inner, &wiped, &["--wipe"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .contains("left out metadata: --wipe asked, but the factory image has no metadata.img"),
        "{stdout}"
    );
    let order: Vec<String> = images(&factory, &inspect(&bench, &wiped)["manifest"])
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(order.last().unwrap(), "userdata");

    // A task flashline does not know is an error naming the line, not a skipped step.
    let bad = Factory::new(Some("version 1\nflash boot\nwipe-super super_empty.img\n"));
    let bad_zip = bench.path(&format!("bad/image-oriole-{BUILD}.zip"));
    std::fs::create_dir_all(bad_zip.parent().unwrap()).unwrap();
    bad.image_zip(&bad_zip);
    let refused = bench.path("bad.flpkg");
    let out = pack(&bench, &bad_zip, &refused, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("fastboot-info.txt line 3"), "{stderr}");
    assert!(!refused.exists());
}

/// Finds entry `name`'s local and central headers in a zip and sets its declared
/// uncompressed size in both.
fn patch_declared_size(zip: &mut [u8], name: &str, size: u32) {
    let mut patched = 0;
    for at in 0..zip.len().saturating_sub(46) {
        let (name_len_at, name_at, size_at) = match &zip[at..at + 4] {
            b"PK\x03\x04" => (at + 26, at + 30, at + 22),
            b"PK\x01\x02" => (at + 28, at + 46, at + 24),
            _ => continue,
        };
        let len = u16::from_le_bytes([zip[name_len_at], zip[name_len_at + 1]]) as usize;
        if zip.get(name_at..name_at + len) == Some(name.as_bytes()) {
            zip[size_at..size_at + 4].copy_from_slice(&size.to_le_bytes());
            patched += 1;
        }
    }
    assert_eq!(patched, 2, "headers of {name}");
}

fn replace_all(bytes: &mut [u8], from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let mut count = 0;
    for at in 0..=bytes.len() - from.len() {
        if &bytes[at..at + from.len()] == from {
            bytes[at..at + from.len()].copy_from_slice(to);
            count += 1;
        }
    }
    assert!(count >= 2, "{}", String::from_utf8_lossy(from));
}

#[test]
fn hostile_zips_are_refused_by_name_and_nothing_is_written() {
    let bench = Bench::new();
    let info = ANDROID_INFO.as_bytes();
    let boot = image(64 * KIB, 0, 0);
    let system = image(64 * KIB, 0, 0);
    let zeros = vec![0u8; 8 << 20];
    let base: Vec<(&str, &[u8])> = vec![
        ("android-info.txt", info),
        ("boot.img", &boot),
        ("system.img", &system),
    ];
    let dir = bench.path("hostile");
    std::fs::create_dir_all(&dir).unwrap();

    let mut cases: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    let build = |entries: &[(&str, &[u8])]| {
        let path = bench.path("scratch.zip");
        write_zip(&path, entries, CompressionMethod::Deflated);
        std::fs::read(path).unwrap()
    };

    // A name that climbs out of the staging folder.
    let mut entries = base.clone();
    entries.push(("xx/evil.img", b"evil"));
    let mut bytes = build(&entries);
    replace_all(&mut bytes, b"xx/evil.img", b"../evil.img");
    cases.push(("dotdot", bytes, "unsafe name"));

    // Two entries with one name.
    let mut entries = base.clone();
    entries.push(("boot.imx", b"other boot"));
    let mut bytes = build(&entries);
    replace_all(&mut bytes, b"boot.imx", b"boot.img");
    cases.push(("duplicate", bytes, "two entries with the same name"));

    // A zip bomb: 8 MiB of zeros declared as 4 KiB.
    let mut entries = base.clone();
    entries[1] = ("boot.img", &zeros);
    let mut bytes = build(&entries);
    patch_declared_size(&mut bytes, "boot.img", 4096);
    cases.push(("bomb", bytes, "inflates past its declared 4096 bytes"));

    // An absurd declared size: 4 GiB from a few compressed bytes.
    let mut bytes = build(&base);
    patch_declared_size(&mut bytes, "android-info.txt", 0xFFFF_FF00);
    cases.push(("absurd", bytes, "more than deflate can produce"));

    // More entries than any factory image has.
    let names: Vec<String> = (0..1100).map(|i| format!("junk/{i}.txt")).collect();
    let mut entries = base.clone();
    entries.extend(names.iter().map(|n| (n.as_str(), &b""[..])));
    cases.push(("many", build(&entries), "has 1103 entries"));

    // Bytes changed after zipping: the CRC-32 no longer matches.
    let path = bench.path("scratch.zip");
    write_zip(&path, &base, CompressionMethod::Stored);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes
        .windows(32)
        .position(|w| w == &boot[1000..1032])
        .unwrap();
    bytes[at] ^= 0xff;
    cases.push(("crc", bytes, "do not match its CRC-32"));

    // Not a zip at all.
    cases.push((
        "garbage",
        b"PK\x03\x04 not really".to_vec(),
        "not a readable zip archive",
    ));

    let _ = std::fs::remove_file(bench.path("scratch.zip"));
    for (case, bytes, message) in cases {
        let input = dir.join(format!("image-oriole-{BUILD}-{case}.zip"));
        std::fs::write(&input, bytes).unwrap();
        let pkg = dir.join(format!("{case}.flpkg"));
        let out = pack(&bench, &input, &pkg, &["--version", "1.0.0"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{case}");
        assert!(stderr.contains(message), "{case}: {stderr}");
        assert!(
            leftovers(&dir, &[])
                .iter()
                .all(|p| p.extension().is_some_and(|e| e == "zip")),
            "{case} left files behind: {:?}",
            leftovers(&dir, &[])
        );
    }
}

#[test]
fn firmware_beside_the_images_is_flashed_first_with_restarts() {
    let bench = Bench::new();
    let mut factory = Factory::new(None);
    factory
        .images
        .push(("radio.img".into(), factory.radio.clone()));
    factory
        .images
        .push(("bootloader.img".into(), factory.bootloader.clone()));
    let inner = bench.path(&format!("image-oriole-{BUILD}.zip"));
    factory.image_zip(&inner);
    let pkg = bench.path("firmware.flpkg");
    let out = pack(&bench, &inner, &pkg, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest = &inspect(&bench, &pkg)["manifest"];
    let order = images(&factory, manifest);
    assert_eq!(order[0], ("bootloader".into(), "bootloader.img".into()));
    assert_eq!(order[1], ("radio".into(), "radio.img".into()));
    assert_eq!(manifest["images"][1]["reboot_bootloader"], true);
}

#[cfg(unix)]
#[test]
fn links_in_a_product_out_folder_are_refused() {
    let bench = Bench::new();
    let factory = Factory::new(None);
    for linked in ["boot.img", "android-info.txt"] {
        let folder = bench.path(&format!("out-{linked}"));
        factory.folder(&folder);
        let real = bench.path(&format!("elsewhere-{linked}"));
        std::fs::rename(folder.join(linked), &real).unwrap();
        std::os::unix::fs::symlink(&real, folder.join(linked)).unwrap();
        let pkg = bench.path("linked.flpkg");
        let out = pack(&bench, &folder, &pkg, &["--version", "1.0.0"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{linked}");
        assert!(stderr.contains("(a symbolic link)"), "{linked}: {stderr}");
        assert!(!pkg.exists());
    }
}

#[test]
fn a_package_for_another_board_is_refused_by_preflight_before_any_write() {
    let bench = Bench::new();
    let factory = Factory::new(None);
    let inner = bench.path(&format!("image-oriole-{BUILD}.zip"));
    factory.image_zip(&inner);
    let pkg = bench.path("oriole.flpkg");
    let out = pack(&bench, &inner, &pkg, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A Pixel 6a in the bootloader: another board than the image requires.
    let (phone, dir) = bench.phone(PhoneConfig {
        product: "bluejay".into(),
        serial: "FACTORY1".into(),
        firmware_version: "bluejay-1.3-11403664".into(),
        partitions: vec![
            ("boot".into(), MIB),
            ("dtbo".into(), MIB),
            ("vbmeta".into(), MIB),
            ("super".into(), 64 * MIB),
        ],
        slots: true,
        version_partition: None,
        ..PhoneConfig::default()
    });
    let before = hashes(&dir);
    let (out, report) = bench.flash(&pkg, &phone, &[]);
    assert_eq!(out.status.code(), Some(4), "{report:#}");
    let board = report["preflight"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "requires:board")
        .unwrap_or_else(|| panic!("{report:#}"));
    assert_eq!(board["status"], "refuse", "{board:#}");
    assert_eq!(board["actual"], "bluejay");
    assert_eq!(board["required"], "oriole or raven");
    let writes: Vec<String> = phone
        .commands()
        .into_iter()
        .filter(|c| c.starts_with("download") || c.starts_with("flash") || c.starts_with("erase"))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    assert_eq!(hashes(&dir), before);
}

/// The logical partition `name`'s bytes, read from the phone's super file through its LP
/// metadata, as a device maps it.
fn logical(dir: &Path, name: &str) -> Vec<u8> {
    let mut file = File::open(dir.join("super.img")).unwrap();
    let (_, metadata) = lp::read_metadata(&mut file, 0).unwrap();
    let mut out = Vec::new();
    lp::extract_partition(&mut file, &metadata, name, &mut out).unwrap();
    out
}

/// A packed factory zip flashed onto the virtual A/B phone with dynamic partitions over
/// TCP by `flashline flash EXTRA…`: every image checked where it landed (the logical ones
/// read out of super through its LP metadata, and by PyPI liblp's `lpunpack` where
/// installed). Returns the phone's commands after the first flash (no getvar, no download)
/// and the slot written.
fn flash_factory_zip(extra: &[&str]) -> (Vec<String>, String, serde_json::Value) {
    let bench = Bench::new();
    // The virtual phone reports no baseband, so this image requires none.
    let factory = Factory::with_info(
        "require board=oriole\nrequire version-bootloader=slider-14.5-11677881\n\
         require partition-exists=vbmeta\n",
        None,
    );
    let outer = bench.path(&format!("oriole-{BUILD}-factory-1234abcd.zip"));
    factory.factory_zip(&outer, &bench.path(""));
    let pkg = bench.path("oriole.flpkg");
    // The virtual phone's anti-rollback level is 7.
    let out = pack(&bench, &outer, &pkg, &["--security-version", "7"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // An A/B phone with dynamic partitions, over TCP: firmware and boot-critical images
    // physical, system/vendor/product logical in a 64 MiB super.
    let (phone, dir) = bench.phone(PhoneConfig {
        product: "oriole".into(),
        serial: "FACTORY2".into(),
        firmware_version: "slider-14.5-11677881".into(),
        partitions: vec![
            ("bootloader".into(), MIB),
            ("radio".into(), MIB),
            ("boot".into(), MIB),
            ("dtbo".into(), MIB),
            ("vbmeta".into(), MIB),
        ],
        slots: true,
        version_partition: None,
        // Small enough that the whole super image goes in several sparse pieces.
        max_download_size: 256 * 1024,
        dynamic: Some(Dynamic {
            super_size: 64 * MIB,
            logical: vec![
                ("system".into(), 4 * MIB),
                ("vendor".into(), 4 * MIB),
                ("product".into(), 4 * MIB),
            ],
            fastbootd_max_download_size: 256 * 1024,
            ..Dynamic::default()
        }),
        ..PhoneConfig::default()
    });
    let (out, report) = bench.flash(&pkg, &phone, extra);
    assert!(
        out.status.success(),
        "{report:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let slot = report["activated_slot"]
        .as_str()
        .unwrap_or_else(|| panic!("{report:#}"))
        .to_string();
    for (partition, file) in [
        ("bootloader", "bootloader-oriole-slider-14.5-11677881.img"),
        ("radio", "radio-oriole-g5123b-135085-240517-b-11857288.img"),
        ("boot", "boot.img"),
        ("dtbo", "dtbo.img"),
        ("vbmeta", "vbmeta.img"),
    ] {
        assert_prefix(
            &dir.join(format!("{partition}_{slot}.img")),
            factory.bytes(file),
        );
    }
    for partition in ["system", "vendor", "product"] {
        let expected = factory.bytes(&format!("{partition}.img"));
        let landed = logical(&dir, &format!("{partition}_{slot}"));
        assert!(landed.len() >= expected.len(), "{partition}");
        assert!(
            landed[..expected.len()] == *expected,
            "{partition} did not land"
        );
    }
    // An independent reader agrees: PyPI liblp's lpunpack pulls the same bytes out of super.
    if let Some(lpunpack) = common::peer("lpunpack") {
        let out_dir = bench.path("lpunpack");
        std::fs::create_dir_all(&out_dir).unwrap();
        let mut cmd = std::process::Command::new(&lpunpack);
        for partition in ["system", "vendor", "product"] {
            cmd.args(["-p", &format!("{partition}_{slot}")]);
        }
        let status = cmd
            .arg("-o")
            .arg(&out_dir)
            .arg(dir.join("super.img"))
            .status()
            .expect("run lpunpack");
        assert!(status.success(), "lpunpack failed");
        for partition in ["system", "vendor", "product"] {
            let expected = factory.bytes(&format!("{partition}.img"));
            let theirs = std::fs::read(out_dir.join(format!("{partition}_{slot}.img"))).unwrap();
            assert!(
                theirs.len() >= expected.len() && theirs[..expected.len()] == *expected,
                "lpunpack: {partition} did not land"
            );
        }
    }
    let commands: Vec<String> = phone
        .commands()
        .into_iter()
        .filter(|c| !c.starts_with("getvar") && !c.starts_with("download"))
        .skip_while(|c| !c.starts_with("flash:"))
        .collect();
    (commands, slot, report)
}

/// Google's order up to the logical partitions: each firmware image followed by
/// reboot-bootloader, the boot-critical images, then the slot.
fn physical_order(slot: &str) -> Vec<String> {
    vec![
        format!("flash:bootloader_{slot}"),
        "reboot-bootloader".into(),
        format!("flash:radio_{slot}"),
        "reboot-bootloader".into(),
        format!("flash:boot_{slot}"),
        format!("flash:dtbo_{slot}"),
        format!("flash:vbmeta_{slot}"),
        format!("set_active:{slot}"),
    ]
}

/// By default (as Google's client), the whole super image is built on the host and the
/// bootloader flashes it in pieces; fastbootd is visited only to read super's size.
#[test]
fn a_packed_factory_zip_flashes_the_dynamic_phone_with_an_optimized_super() {
    let (commands, slot, report) = flash_factory_zip(&[]);
    let mut expected = physical_order(&slot);
    let supers = commands.iter().filter(|c| *c == "flash:super").count();
    assert!(supers > 1, "super goes in pieces: {commands:?}");
    expected.extend(std::iter::repeat_n("flash:super".to_string(), supers));
    // The job's own last step confirms the slot, then restarts the phone.
    expected.extend([format!("set_active:{slot}"), "reboot".into()]);
    assert_eq!(commands, expected);
    let notes = report["notes"].to_string();
    assert!(notes.contains("optimized super"), "{notes}");
}

/// `--disable-super-optimization`: fastbootd writes the logical partitions, after
/// `update-super`, each resized before its flash.
#[test]
fn a_packed_factory_zip_flashes_the_dynamic_phone_through_fastbootd_when_asked() {
    let (commands, slot, report) = flash_factory_zip(&["--disable-super-optimization"]);
    let mut expected = physical_order(&slot);
    expected.extend([
        "reboot-fastboot".into(),
        "update-super:super".into(),
        format!("resize-logical-partition:product_{slot}:"),
        format!("flash:product_{slot}"),
        format!("resize-logical-partition:system_{slot}:"),
        format!("flash:system_{slot}"),
        format!("resize-logical-partition:vendor_{slot}:"),
        format!("flash:vendor_{slot}"),
    ]);
    assert!(commands.len() >= expected.len(), "{commands:?}");
    for (sent, expected) in commands.iter().zip(&expected) {
        assert!(sent.starts_with(expected.as_str()), "{commands:?}");
    }
    assert!(!commands.iter().any(|c| c == "flash:super"), "{commands:?}");
    let notes = report["notes"].to_string();
    assert!(notes.contains("--disable-super-optimization"), "{notes}");
}
