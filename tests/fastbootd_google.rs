//! The virtual phone with dynamic partitions: fastbootd, `super` with LP metadata, and
//! Google's `fastboot` (Debian's 29.0.6) as the independent client that drives it. What a
//! client writes is checked by reading the super partition's file through its LP
//! metadata, as a device maps its logical partitions.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::fastboot::{fastboot_ok, run_fastboot, RawClient};
use flashline::protocol::lp::{self, GroupSpec, PartitionSpec, SuperLayout};
use flashline::sim::phone::{Dynamic, SnapshotStatus};
use flashline::sim::{Fault, PhoneConfig, PhoneSim, RunningPhone};
use sha2::{Digest, Sha256};

const MIB: u64 = 1024 * 1024;
/// The super partition of the test phone.
const SUPER_SIZE: u64 = 64 * MIB;
/// fastbootd's download limit on the test phone: small, so Google's client splits.
const FASTBOOTD_MAX: u32 = 2 * MIB as u32;

/// An A/B phone with dynamic partitions and small sizes: boot and vbmeta physical;
/// system, vendor and product logical in a 64 MiB super.
fn dynamic_config() -> PhoneConfig {
    PhoneConfig {
        partitions: vec![("boot".into(), 4 * MIB), ("vbmeta".into(), MIB)],
        slots: true,
        // A bootloader limit other than fastbootd's, as on Pixels (0xf900000 vs 0x10000000).
        max_download_size: 0x0F90_0000,
        dynamic: Some(Dynamic {
            super_size: SUPER_SIZE,
            logical: vec![
                ("system".into(), 8 * MIB),
                ("vendor".into(), 4 * MIB),
                ("product".into(), 2 * MIB),
            ],
            fastbootd_max_download_size: FASTBOOTD_MAX,
            ..Dynamic::default()
        }),
        ..PhoneConfig::default()
    }
}

fn start(dir: &Path, cfg: PhoneConfig) -> RunningPhone {
    PhoneSim::start("127.0.0.1:0".parse().unwrap(), dir, cfg).expect("start phone sim")
}

/// Deterministic pseudo-random bytes (xorshift64), so failures are reproducible.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn image_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    path
}

fn sha(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

/// The LP metadata (slot 0) on the phone's super file.
fn metadata(dir: &Path, device: &str) -> lp::Metadata {
    let mut file = fs::File::open(dir.join(format!("{device}.img"))).unwrap();
    let (container, m) = lp::read_metadata(&mut file, 0).unwrap();
    assert_eq!(container, lp::Container::SuperDevice);
    m
}

/// A logical partition's bytes, read from super through its extents.
fn logical(dir: &Path, name: &str) -> Vec<u8> {
    let m = metadata(dir, "super");
    let mut file = fs::File::open(dir.join("super.img")).unwrap();
    let mut out = Vec::new();
    lp::extract_partition(&mut file, &m, name, &mut out).unwrap();
    out
}

fn logical_size(dir: &Path, name: &str) -> Option<u64> {
    let m = metadata(dir, "super");
    m.partition(name).map(|p| m.partition_size(p))
}

/// A `super_empty.img` for the test phone, as a factory image carries it: the device's
/// geometry, one group per slot, and the partitions named without extents.
fn super_empty(partitions: &[&str]) -> Vec<u8> {
    let mut layout = SuperLayout::new(SUPER_SIZE, 2);
    for slot in ["_a", "_b"] {
        layout.groups.push(GroupSpec {
            name: format!("main{slot}"),
            maximum_size: 0,
        });
        for base in partitions {
            layout.partitions.push(PartitionSpec {
                name: format!("{base}{slot}"),
                group: format!("main{slot}"),
                size: 0,
                attributes: 0,
            });
        }
    }
    let mut out = Vec::new();
    lp::write_empty_image(&layout.build().unwrap(), &mut out).unwrap();
    out
}

/// The value of `name` in Google's `getvar` output (`name: value`).
fn getvar(fb: &Path, phone: &RunningPhone, name: &str) -> String {
    let out = fastboot_ok(fb, phone, &["getvar", name]);
    let prefix = format!("{name}: ");
    out.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name} in:\n{out}"))
        .trim()
        .to_string()
}

#[test]
fn google_reboots_into_fastbootd_and_back() {
    let Some(fb) = common::peer("fastboot") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let phone = start(tmp.path(), dynamic_config());

    assert_eq!(getvar(&fb, &phone, "is-userspace"), "no");
    assert_eq!(getvar(&fb, &phone, "max-download-size"), "0xF900000");
    // Debian's 29.0.6 sends reboot-fastboot, waits one second, reconnects to the same
    // address (retrying until the phone answers) and insists on is-userspace: yes.
    fastboot_ok(&fb, &phone, &["reboot", "fastboot"]);
    assert_eq!(getvar(&fb, &phone, "is-userspace"), "yes");
    assert_eq!(getvar(&fb, &phone, "super-partition-name"), "super");
    assert_eq!(getvar(&fb, &phone, "max-download-size"), "0x200000");
    assert_eq!(getvar(&fb, &phone, "is-logical:system_a"), "yes");
    assert_eq!(getvar(&fb, &phone, "is-logical:boot_a"), "no");
    assert_eq!(getvar(&fb, &phone, "partition-size:system_b"), "0x800000");
    assert_eq!(getvar(&fb, &phone, "partition-size:super"), "0x4000000");
    assert_eq!(getvar(&fb, &phone, "snapshot-update-status"), "none");
    assert_eq!(getvar(&fb, &phone, "has-slot:system"), "yes");
    let all = fastboot_ok(&fb, &phone, &["getvar", "all"]);
    for line in [
        "is-logical:vendor_b:yes",
        "partition-type:system_a:raw",
        "current-slot:a",
    ] {
        assert!(all.contains(line), "`{line}` missing from:\n{all}");
    }

    fastboot_ok(&fb, &phone, &["reboot", "bootloader"]);
    let back = RawClient::reconnect(phone.addr()).command("getvar:is-userspace");
    assert_eq!(back, "OKAYno");
    let commands = phone.commands();
    assert!(commands.contains(&"reboot-fastboot".to_string()));
    assert!(commands.contains(&"reboot-bootloader".to_string()));
}

#[test]
fn google_edits_logical_partitions_in_fastbootd() {
    let Some(fb) = common::peer("fastboot") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let phone = start(tmp.path(), dynamic_config());
    fastboot_ok(&fb, &phone, &["reboot", "fastboot"]);

    fastboot_ok(
        &fb,
        &phone,
        &["create-logical-partition", "scratch_a", "1048576"],
    );
    assert_eq!(logical_size(tmp.path(), "scratch_a"), Some(MIB));
    fastboot_ok(
        &fb,
        &phone,
        &["resize-logical-partition", "scratch_a", "3000000"],
    );
    // Rounded up to the 4096-byte logical block.
    assert_eq!(logical_size(tmp.path(), "scratch_a"), Some(3002368));
    assert_eq!(getvar(&fb, &phone, "partition-size:scratch_a"), "0x2DD000");
    let (ok, out) = run_fastboot(
        &fb,
        &phone,
        &["resize-logical-partition", "scratch_a", "1073741824"],
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("Not enough space to resize partition"),
        "{out}"
    );
    assert_eq!(logical_size(tmp.path(), "scratch_a"), Some(3002368));
    let (ok, out) = run_fastboot(&fb, &phone, &["create-logical-partition", "system_a", "0"]);
    assert!(!ok && out.contains("Partition already exists"), "{out}");
    fastboot_ok(&fb, &phone, &["delete-logical-partition", "scratch_a"]);
    assert_eq!(logical_size(tmp.path(), "scratch_a"), None);
    let (_, out) = run_fastboot(&fb, &phone, &["getvar", "is-logical:scratch_a"]);
    assert!(out.contains("Partition not found"), "{out}");
}

#[test]
fn google_flashes_system_in_fastbootd_raw_and_sparse() {
    let Some(fb) = common::peer("fastboot") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("phone");
    let phone = start(&dir, dynamic_config());

    // In the bootloader a logical partition does not exist (ABL's answer).
    let small = noise(MIB as usize + 4096, 3);
    let raw = image_file(tmp.path(), "vendor.img", &small);
    let (ok, out) = run_fastboot(&fb, &phone, &["flash", "vendor_a", raw.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(out.contains("(vendor_a) No such partition"), "{out}");

    fastboot_ok(&fb, &phone, &["reboot", "fastboot"]);
    // Raw: below fastbootd's limit, one download; the client resizes it to the image size.
    let out = fastboot_ok(&fb, &phone, &["flash", "vendor", raw.to_str().unwrap()]);
    assert!(out.contains("Resizing 'vendor_a'"), "{out}");
    assert_eq!(logical_size(&dir, "vendor_a"), Some(small.len() as u64));
    assert_eq!(sha(&logical(&dir, "vendor_a")), sha(&small));

    // Sparse: 7 MiB over a 2 MiB limit, so the client sends sparse pieces; it grows
    // system_a past its first extent into free space elsewhere in super.
    let mut big = noise(7 * MIB as usize, 4);
    big[MIB as usize..3 * MIB as usize].fill(0);
    let sparse_src = image_file(tmp.path(), "system.img", &big);
    fastboot_ok(&fb, &phone, &["resize-logical-partition", "system_a", "0"]);
    let out = fastboot_ok(
        &fb,
        &phone,
        &["flash", "system", sparse_src.to_str().unwrap()],
    );
    assert!(out.contains("Sending sparse 'system_a' 1/"), "{out}");
    assert_eq!(sha(&logical(&dir, "system_a")), sha(&big));
    let pieces = phone
        .commands()
        .iter()
        .filter(|c| *c == "flash:system_a")
        .count();
    assert!(pieces >= 3, "{pieces} pieces");
    // The other slot was not touched.
    assert_eq!(logical_size(&dir, "system_b"), Some(8 * MIB));

    // erase: the client asks for the partition type, then zeroes the extents.
    fastboot_ok(&fb, &phone, &["erase", "vendor"]);
    assert!(phone
        .commands()
        .contains(&"getvar:partition-type:vendor_a".to_string()));
    assert!(logical(&dir, "vendor_a").iter().all(|&b| b == 0));
    assert_eq!(sha(&logical(&dir, "system_a")), sha(&big));
}

/// Builds a factory-style image zip with python3's zipfile: android-info.txt requiring
/// `board`, boot and vbmeta (flashed in the bootloader), system and vendor (in
/// fastbootd) and super_empty.img.
fn factory_zip(dir: &Path, board: &str, images: &[(&str, &[u8])]) -> PathBuf {
    let staging = dir.join(format!("factory-{board}"));
    fs::create_dir_all(&staging).unwrap();
    fs::write(
        staging.join("android-info.txt"),
        format!("require board={board}\n"),
    )
    .unwrap();
    for (name, bytes) in images {
        fs::write(staging.join(name), bytes).unwrap();
    }
    let zip = dir.join(format!("image-{board}.zip"));
    let script = "import os, sys, zipfile\n\
                  src, out = sys.argv[1], sys.argv[2]\n\
                  with zipfile.ZipFile(out, 'w', zipfile.ZIP_DEFLATED) as z:\n\
                  \x20   for name in sorted(os.listdir(src)):\n\
                  \x20       z.write(os.path.join(src, name), name)\n";
    let status = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&staging)
        .arg(&zip)
        .status()
        .expect("python3 runs");
    assert!(status.success());
    zip
}

#[test]
fn google_update_flashes_a_factory_zip_through_fastbootd() {
    let Some(fb) = common::peer("fastboot") else {
        return;
    };
    if common::peer("python3").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("phone");
    let phone = start(&dir, dynamic_config());
    let product_b_before = sha(&logical(&dir, "product_b"));

    let boot = noise(MIB as usize, 10);
    let vbmeta = noise(8192, 11);
    let system = noise(5 * MIB as usize + 8192, 12);
    let vendor = noise(MIB as usize / 2, 13);
    let empty = super_empty(&["system", "vendor"]);
    let images: [(&str, &[u8]); 5] = [
        ("boot.img", &boot),
        ("vbmeta.img", &vbmeta),
        ("system.img", &system),
        ("vendor.img", &vendor),
        ("super_empty.img", &empty),
    ];

    // A zip for another board is refused by Google's client before anything is sent.
    let wrong = factory_zip(tmp.path(), "other-phone", &images);
    let (ok, out) = run_fastboot(&fb, &phone, &["update", wrong.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(out.contains("requirements not met"), "{out}");
    assert!(!phone.commands().iter().any(|c| c.starts_with("download:")));

    let zip = factory_zip(tmp.path(), "zte-demo-phone", &images);
    let out = fastboot_ok(&fb, &phone, &["update", zip.to_str().unwrap()]);
    assert!(out.contains("Updating super partition"), "{out}");

    // Boot-critical images went to the bootloader's physical partitions.
    let boot_a = fs::read(dir.join("boot_a.img")).unwrap();
    assert_eq!(sha(&boot_a[..boot.len()]), sha(&boot));
    let vbmeta_a = fs::read(dir.join("vbmeta_a.img")).unwrap();
    assert_eq!(&vbmeta_a[..vbmeta.len()], &vbmeta[..]);
    // super: the new table from super_empty.img, slot a's partitions sized to their
    // images and holding them; slot b's kept by update-super with their bytes (product_b
    // is not in super_empty.img); product_a gone.
    assert_eq!(sha(&logical(&dir, "system_a")), sha(&system));
    assert_eq!(sha(&logical(&dir, "vendor_a")), sha(&vendor));
    assert_eq!(sha(&logical(&dir, "product_b")), product_b_before);
    assert_eq!(logical_size(&dir, "product_a"), None);
    // Google's client resets every partition that has an `_other` image (system,
    // vendor) on the other slot to 0, whether or not the zip carries that image.
    let commands = phone.commands();
    assert!(commands.contains(&"resize-logical-partition:system_b:0".to_string()));
    assert_eq!(logical_size(&dir, "system_b"), Some(0));
    let position = |c: &str| commands.iter().position(|x| x == c).unwrap_or(usize::MAX);
    assert!(position("flash:boot_a") < position("reboot-fastboot"));
    assert!(position("reboot-fastboot") < position("update-super:super"));
    assert!(position("update-super:super") < position("resize-logical-partition:system_a:0"));
    assert!(position("resize-logical-partition:system_a:0") < position("flash:system_a"));

    // An independent reader agrees: PyPI liblp's lpunpack pulls the same bytes out of
    // super through the metadata fastbootd wrote, from either metadata slot.
    let Some(lpunpack) = common::peer("lpunpack") else {
        return;
    };
    for slot in ["0", "1"] {
        let out = tmp.path().join(format!("lpunpack-{slot}"));
        fs::create_dir_all(&out).unwrap();
        let status = std::process::Command::new(&lpunpack)
            .args(["-S", slot, "-p", "system_a", "-p", "vendor_a", "-o"])
            .arg(&out)
            .arg(dir.join("super.img"))
            .status()
            .expect("run lpunpack");
        assert!(status.success(), "lpunpack failed on slot {slot}");
        assert_eq!(
            sha(&fs::read(out.join("system_a.img")).unwrap()),
            sha(&system)
        );
        assert_eq!(
            sha(&fs::read(out.join("vendor_a.img")).unwrap()),
            sha(&vendor)
        );
    }
}

/// A phone with a raw client already in fastbootd.
fn in_fastbootd(dir: &Path, cfg: PhoneConfig) -> (RunningPhone, RawClient) {
    let phone = start(dir, cfg);
    let mut raw = RawClient::connect(phone.addr());
    assert_eq!(raw.command("reboot-fastboot"), "OKAY");
    assert!(raw.is_closed(), "the link drops on reboot");
    let raw = RawClient::reconnect(phone.addr());
    (phone, raw)
}

#[test]
fn update_super_checks_the_metadata_and_writes_nothing_bad() {
    let tmp = tempfile::tempdir().unwrap();
    let (phone, mut raw) = in_fastbootd(tmp.path(), dynamic_config());
    let before = fs::read(tmp.path().join("super.img")).unwrap();

    let mut bad_magic = super_empty(&["system"]);
    bad_magic[0] ^= 0xff;
    assert_eq!(raw.download(&bad_magic), "OKAY");
    assert_eq!(
        raw.command("update-super:super"),
        "FAILData is not a valid logical partition metadata image"
    );
    let mut bad_checksum = super_empty(&["system"]);
    let last = bad_checksum.len() - 1;
    bad_checksum[last] ^= 1;
    assert_eq!(raw.download(&bad_checksum), "OKAY");
    assert_eq!(
        raw.command("update-super:super"),
        "FAILData is not a valid logical partition metadata image"
    );
    assert_eq!(raw.download(&super_empty(&["system"])), "OKAY");
    assert_eq!(
        raw.command("update-super:vendor_a"),
        "FAILCannot find vendor_a, build may be missing broken or missing boot_devices"
    );
    assert!(
        fs::read(tmp.path().join("super.img")).unwrap() == before,
        "refused updates write nothing"
    );

    // More data than a logical partition holds is refused (strerror(EOVERFLOW)).
    assert_eq!(
        raw.command("resize-logical-partition:vendor_a:4096"),
        "OKAYPartition resized"
    );
    assert_eq!(raw.download(&[1u8; 8192]), "OKAY");
    assert_eq!(
        raw.command("flash:vendor_a"),
        "FAILValue too large for defined data type"
    );
    assert_eq!(
        raw.command("flash:nothing_a"),
        "FAILNo such file or directory"
    );
    assert_eq!(logical(tmp.path(), "vendor_a"), vec![0u8; 4096]);

    // With wipe, the table becomes super_empty's exactly: every partition empty.
    assert_eq!(raw.download(&super_empty(&["system"])), "OKAY");
    assert_eq!(
        raw.command("update-super:super:wipe"),
        "OKAYSuccessfully flashed partition table"
    );
    assert_eq!(logical_size(tmp.path(), "system_b"), Some(0));
    assert_eq!(logical_size(tmp.path(), "vendor_a"), None);
    drop(phone);
}

#[test]
fn snapshots_take_space_until_cancelled() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = dynamic_config();
    let dynamic = cfg.dynamic.as_mut().unwrap();
    dynamic.snapshot = SnapshotStatus::Merging;
    // 64 MiB: a (14 MiB) + b (14 MiB) + b's -cow partitions (14 MiB) leave about 21 MiB.
    let (_phone, mut raw) = in_fastbootd(tmp.path(), cfg);
    assert_eq!(raw.command("getvar:snapshot-update-status"), "OKAYmerging");
    assert_eq!(
        logical_size(tmp.path(), "system_b-cow"),
        Some(8 * MIB),
        "copy-on-write partitions are in the metadata"
    );
    assert_eq!(
        raw.command("resize-logical-partition:system_a:40000000"),
        "FAILNot enough space to resize partition"
    );
    assert_eq!(
        raw.command("set_active:b"),
        "FAILCannot change slots while a snapshot update is in progress"
    );
    assert_eq!(
        raw.command("snapshot-update:bogus"),
        "FAILInvalid parameter to snapshot-update"
    );
    assert_eq!(raw.command("snapshot-update:cancel"), "OKAYSuccess");
    assert_eq!(raw.command("getvar:snapshot-update-status"), "OKAYnone");
    assert_eq!(logical_size(tmp.path(), "system_b-cow"), None);
    assert_eq!(
        raw.command("resize-logical-partition:system_a:40000000"),
        "OKAYPartition resized"
    );
    assert_eq!(
        raw.command("snapshot-update:merge"),
        "FAILNo snapshot merge is in progress"
    );

    // A merge finished in fastbootd ends the update the same way.
    let other = tempfile::tempdir().unwrap();
    let mut cfg = dynamic_config();
    cfg.dynamic.as_mut().unwrap().snapshot = SnapshotStatus::Merging;
    let (_phone, mut raw) = in_fastbootd(other.path(), cfg);
    assert_eq!(raw.command("snapshot-update:merge"), "OKAYSuccess");
    assert_eq!(raw.command("getvar:snapshot-update-status"), "OKAYnone");
    assert_eq!(logical_size(other.path(), "vendor_b-cow"), None);
    assert_eq!(
        metadata(other.path(), "super")
            .partition("system_b")
            .unwrap()
            .attributes,
        0
    );
}

#[test]
fn retrofit_phones_keep_super_in_system_partitions() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = dynamic_config();
    let dynamic = cfg.dynamic.as_mut().unwrap();
    dynamic.retrofit = true;
    dynamic.super_size = 32 * MIB;
    let (_phone, mut raw) = in_fastbootd(tmp.path(), cfg);
    assert_eq!(raw.command("getvar:super-partition-name"), "OKAYsystem_a");
    assert_eq!(raw.command("getvar:is-logical:system_b"), "OKAYyes");
    // Each slot's metadata lives in its own system partition.
    let a = metadata(tmp.path(), "system_a");
    assert_eq!(a.block_devices[0].partition_name, "system_a");
    assert!(a.partition("vendor_a").is_some() && a.partition("vendor_b").is_none());
    assert!(metadata(tmp.path(), "system_b")
        .partition("vendor_b")
        .is_some());
    // Deleting the other slot's logical partitions, as Google's client does on retrofit
    // phones, edits system_b's metadata.
    assert_eq!(
        raw.command("delete-logical-partition:vendor_b"),
        "OKAYPartition deleted"
    );
    assert!(metadata(tmp.path(), "system_b")
        .partition("vendor_b")
        .is_none());
}

#[test]
fn faults_reach_every_fastbootd_step() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = dynamic_config();
    cfg.faults = [
        "drop@reboot-fastboot#1",
        "drop@update-super#1",
        "fail@resize-logical-partition#1",
        "stall@flash:system_a#1",
        "drop@reboot-bootloader#1",
    ]
    .iter()
    .map(|f| f.parse::<Fault>().unwrap())
    .collect();
    let phone = start(tmp.path(), cfg);

    // A dropped reboot-fastboot: no answer, and the phone is still in its bootloader.
    let mut raw = RawClient::connect(phone.addr());
    raw.send_frame(b"reboot-fastboot");
    assert!(raw.is_closed());
    let mut raw = RawClient::connect(phone.addr());
    assert_eq!(raw.command("getvar:is-userspace"), "OKAYno");
    assert_eq!(raw.command("reboot-fastboot"), "OKAY");
    let mut raw = RawClient::reconnect(phone.addr());
    assert_eq!(raw.command("getvar:is-userspace"), "OKAYyes");

    // A dropped update-super: nothing written, still in fastbootd.
    let before = fs::read(tmp.path().join("super.img")).unwrap();
    assert_eq!(raw.download(&super_empty(&["system"])), "OKAY");
    raw.send_frame(b"update-super:super");
    assert!(raw.is_closed());
    assert!(fs::read(tmp.path().join("super.img")).unwrap() == before);
    let mut raw = RawClient::connect(phone.addr());
    assert_eq!(raw.command("getvar:is-userspace"), "OKAYyes");
    assert!(raw
        .command("resize-logical-partition:system_a:4096")
        .starts_with("FAILinjected fault"));
    assert_eq!(
        raw.command("resize-logical-partition:system_a:4096"),
        "OKAYPartition resized"
    );

    // A stalled flash: no answer, nothing written; the next connection works.
    assert_eq!(raw.download(&[7u8; 4096]), "OKAY");
    raw.send_frame(b"flash:system_a");
    drop(raw);
    let mut raw = RawClient::reconnect(phone.addr());
    assert_eq!(logical(tmp.path(), "system_a"), vec![0u8; 4096]);
    assert_eq!(raw.download(&[7u8; 4096]), "OKAY");
    assert_eq!(raw.command("flash:system_a"), "OKAYFlashing succeeded");
    assert_eq!(logical(tmp.path(), "system_a"), vec![7u8; 4096]);

    // A dropped reboot-bootloader leaves the phone in fastbootd.
    raw.send_frame(b"reboot-bootloader");
    assert!(raw.is_closed());
    let mut raw = RawClient::connect(phone.addr());
    assert_eq!(raw.command("getvar:is-userspace"), "OKAYyes");
    assert_eq!(phone.faults_fired().len(), 5);
}

#[test]
fn bootloader_takes_a_whole_super_image() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = dynamic_config();
    cfg.dynamic.as_mut().unwrap().snapshot = SnapshotStatus::Snapshotted;
    let phone = start(tmp.path(), cfg);
    // Google's "optimized super": a full super image built on the host, flashed by the
    // bootloader in one pass.
    let mut layout = SuperLayout::new(SUPER_SIZE, 2);
    layout.partitions.push(PartitionSpec {
        name: "system_a".into(),
        group: "default".into(),
        size: MIB,
        attributes: 0,
    });
    let system = noise(MIB as usize, 21);
    let mut image = Vec::new();
    lp::write_super_image(
        &layout.build().unwrap(),
        [("system_a".to_string(), &system[..])],
        &mut image,
    )
    .unwrap();
    let mut raw = RawClient::connect(phone.addr());
    assert_eq!(
        raw.command("getvar:snapshot-update-status"),
        "OKAYsnapshotted"
    );
    assert_eq!(raw.download(&image[..8 * MIB as usize]), "OKAY");
    assert_eq!(
        raw.command("flash:system_a"),
        "FAIL(system_a) No such partition"
    );
    assert_eq!(raw.download(&image), "OKAY");
    assert_eq!(raw.command("flash:super"), "OKAY");
    // Flashing super whole cancels the pending update, as ABL does.
    assert_eq!(raw.command("getvar:snapshot-update-status"), "OKAYnone");
    assert_eq!(sha(&logical(tmp.path(), "system_a")), sha(&system));
}

#[test]
fn power_loss_in_a_logical_flash_keeps_exactly_the_bytes_written() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = dynamic_config();
    cfg.faults = vec!["power-loss@bytes=5000".parse::<Fault>().unwrap()].into();
    let (phone, mut raw) = in_fastbootd(tmp.path(), cfg);
    assert_eq!(
        raw.command("resize-logical-partition:vendor_a:8192"),
        "OKAYPartition resized"
    );
    assert_eq!(raw.download(&[9u8; 8192]), "OKAY");
    raw.send_frame(b"flash:vendor_a");
    assert!(raw.is_closed(), "no answer: the power is gone");
    let bytes = logical(tmp.path(), "vendor_a");
    assert!(bytes[..5000].iter().all(|&b| b == 9));
    assert!(bytes[5000..].iter().all(|&b| b == 0));
    // It boots again, into its bootloader.
    let mut raw = RawClient::reconnect(phone.addr());
    assert_eq!(raw.command("getvar:is-userspace"), "OKAYno");
    assert_eq!(phone.faults_fired(), ["power-loss@bytes=5000"]);
}
