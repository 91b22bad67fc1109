//! The fastboot verbs technicians expect (`flashline fastboot getvar|oem|erase|format|boot|
//! flashing`, `--slot`, and `flash --disable-verity/--disable-verification`), each driven
//! end to end against the virtual phone over TCP, asserting the bytes the phone stores and
//! what flashline prints; and Google's `fastboot` against the same phone, whose vbmeta
//! bytes must equal flashline's.

mod common;

use std::fs;
use std::io::{Cursor, Read};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::bench::{events, image, Bench};
use flashline::device::fastboot::FastbootDriver;
use flashline::device::quirks::Quirks;
use flashline::device::{DeviceError, Driver, ImageSource, SendReader};
use flashline::sim::phone::{PhoneConfig, RunningPhone, BOOTED_FILE};
use flashline::sim::PhoneSim;
use flashline::transport::tcp::TcpTransport;
use sha2::{Digest, Sha256};

const MIB: u64 = 1024 * 1024;

fn phone_config(slots: bool, locked: bool) -> PhoneConfig {
    PhoneConfig {
        partitions: vec![
            ("boot".into(), 2 * MIB),
            ("vbmeta".into(), 64 * 1024),
            ("userdata".into(), MIB),
        ],
        slots,
        locked,
        ..PhoneConfig::default()
    }
}

/// `flashline fastboot ARGS… --device PHONE`, stdin closed (no terminal to confirm at).
fn verb(bench: &Bench, phone: &RunningPhone, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flashline"))
        .arg("fastboot")
        .args(args)
        .args(["--device", &phone.device_address()])
        .env("FLASHLINE_HOME", bench.path("home"))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn paint(dir: &Path, name: &str, byte: u8) {
    let path = dir.join(format!("{name}.img"));
    let len = fs::metadata(&path).unwrap().len() as usize;
    fs::write(&path, vec![byte; len]).unwrap();
}

fn all_bytes(dir: &Path, name: &str, byte: u8) -> bool {
    fs::read(dir.join(format!("{name}.img")))
        .unwrap()
        .iter()
        .all(|&b| b == byte)
}

/// A vbmeta image as avbtool lays one out: a 256-byte header with magic, version and
/// flags, then authentication and auxiliary blocks (here recognisable filler).
fn vbmeta_image(flags: u32) -> Vec<u8> {
    let mut v: Vec<u8> = (0..4096u32).map(|i| (i * 13 % 251) as u8).collect();
    v[..4].copy_from_slice(b"AVB0");
    v[4..8].copy_from_slice(&1u32.to_be_bytes());
    v[8..12].copy_from_slice(&0u32.to_be_bytes());
    v[120..124].copy_from_slice(&flags.to_be_bytes());
    v
}

#[test]
fn getvar_and_oem_print_what_the_device_said() {
    let bench = Bench::new();
    let (phone, _dir) = bench.phone(phone_config(false, false));

    let out = verb(&bench, &phone, &["getvar", "product"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "product: zte-demo-phone\n");

    let out = verb(&bench, &phone, &["getvar", "no-such-variable"]);
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(
        stdout(&out),
        "getvar:no-such-variable: FAILED (remote: 'unknown variable')\n"
    );

    let out = verb(&bench, &phone, &["oem", "device-info"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "(bootloader) Verity mode: true\n\
         (bootloader) Device unlocked: true\n\
         (bootloader) Device critical unlocked: false\n\
         (bootloader) Charger screen enabled: false\n\
         oem device-info: OKAY\n"
    );

    let out = verb(&bench, &phone, &["oem", "device-info", "--json"]);
    let ev = events(&out);
    assert_eq!(ev[0]["event"], "sent");
    assert_eq!(ev[0]["command"], "oem device-info");
    assert_eq!(ev[2]["event"], "info");
    assert_eq!(ev[2]["text"], "Device unlocked: true");
    assert_eq!(ev.last().unwrap()["event"], "okay");

    let out = verb(&bench, &phone, &["oem", "frobnicate"]);
    assert_eq!(out.status.code(), Some(5));
    assert!(stdout(&out).contains("oem frobnicate: FAILED (remote: 'unknown command')"));
    let commands = phone.commands();
    assert!(commands.contains(&"oem device-info".to_string()));
    assert!(commands.contains(&"getvar:product".to_string()));
}

#[test]
fn erase_zeroes_the_slots_asked_for_and_nothing_else() {
    let bench = Bench::new();
    let (phone, dir) = bench.phone(phone_config(true, false));
    for name in ["boot_a", "boot_b", "userdata"] {
        paint(&dir, name, 0xAB);
    }

    let out = verb(&bench, &phone, &["erase", "boot", "--slot", "other"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "erase:boot_b: OKAY\n");
    assert!(all_bytes(&dir, "boot_b", 0));
    assert!(all_bytes(&dir, "boot_a", 0xAB));

    // Without --slot, a slotted partition is the current slot's, as Google's client does.
    paint(&dir, "boot_b", 0xAB);
    let out = verb(&bench, &phone, &["erase", "boot"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(all_bytes(&dir, "boot_a", 0));
    assert!(all_bytes(&dir, "boot_b", 0xAB));

    paint(&dir, "boot_a", 0xAB);
    let out = verb(&bench, &phone, &["erase", "boot", "--slot", "all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "erase:boot_a: OKAY\nerase:boot_b: OKAY\n");
    assert!(all_bytes(&dir, "boot_a", 0) && all_bytes(&dir, "boot_b", 0));

    // userdata exists once: a slot for it is a clear error, and nothing is erased.
    let before = phone.commands().len();
    let out = verb(&bench, &phone, &["erase", "userdata", "--slot", "b"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("userdata has no slots on this device (has-slot:userdata is no)"),
        "{}",
        stderr(&out)
    );
    assert!(all_bytes(&dir, "userdata", 0xAB));
    assert!(!phone.commands()[before..]
        .iter()
        .any(|c| c.starts_with("erase:")));
}

#[test]
fn slots_on_a_phone_without_them_are_refused_before_anything_is_sent() {
    let bench = Bench::new();
    let (phone, dir) = bench.phone(phone_config(false, false));
    paint(&dir, "boot", 0xAB);
    for slot in ["all", "other", "a"] {
        let out = verb(&bench, &phone, &["erase", "boot", "--slot", slot]);
        assert_eq!(out.status.code(), Some(2), "{slot}");
        assert!(
            stderr(&out).contains(&format!(
                "--slot {slot}: the device has no A/B slots (slot-count 0)"
            )),
            "{}",
            stderr(&out)
        );
    }
    let out = verb(&bench, &phone, &["erase", "boot", "--slot", "c"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(all_bytes(&dir, "boot", 0xAB));
    assert!(!phone.commands().iter().any(|c| c.starts_with("erase:")));

    // A locked phone answers erase with its own refusal, printed as it said it.
    let locked = Bench::new();
    let (phone, dir) = locked.phone(phone_config(false, true));
    paint(&dir, "boot", 0xAB);
    let out = verb(&locked, &phone, &["erase", "boot"]);
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(
        stdout(&out),
        "erase:boot: FAILED (remote: 'Erase is not allowed in Lock State')\n"
    );
    assert!(all_bytes(&dir, "boot", 0xAB));
}

#[test]
fn format_of_a_raw_partition_is_refused_and_writes_nothing() {
    let bench = Bench::new();
    let (phone, dir) = bench.phone(phone_config(false, false));
    paint(&dir, "userdata", 0xAB);
    let out = verb(
        &bench,
        &phone,
        &["format", "userdata", "--yes-wipe-user-data"],
    );
    assert_eq!(out.status.code(), Some(4));
    let err = stderr(&out);
    assert!(err.contains("format refused"), "{err}");
    assert!(err.contains("partition-type raw for userdata"), "{err}");
    assert!(err.contains("Nothing was sent"), "{err}");
    assert!(all_bytes(&dir, "userdata", 0xAB));
    assert!(
        phone.commands().iter().all(|c| c.starts_with("getvar:")),
        "{:?}",
        phone.commands()
    );
}

/// A phone whose userdata of `size` bytes is reported as `fs`, with a small
/// download buffer so that the filesystem image goes in sparse pieces.
fn formattable(fs: &str, size: u64) -> PhoneConfig {
    PhoneConfig {
        partitions: vec![("boot".into(), 2 * MIB), ("userdata".into(), size)],
        // The empty ext4's sparse image is about 48 KiB.
        max_download_size: 16 * 1024,
        filesystems: vec![("userdata".into(), fs.into())],
        ..PhoneConfig::default()
    }
}

/// `e2fsck -fn` on a partition file passes; returns `dumpe2fs -h`'s block count.
fn checked_ext4(e2fsck: &Path, dumpe2fs: &Path, partition: &Path) -> u64 {
    let check = Command::new(e2fsck)
        .arg("-fn")
        .arg(partition)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "e2fsck -fn {}: {}{}",
        partition.display(),
        stdout(&check),
        stderr(&check)
    );
    let dump = Command::new(dumpe2fs)
        .arg("-h")
        .arg(partition)
        .output()
        .unwrap();
    assert!(dump.status.success(), "{}", stderr(&dump));
    stdout(&dump)
        .lines()
        .find_map(|l| l.strip_prefix("Block count:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no block count: {}", stdout(&dump)))
}

/// `format userdata` on a phone that reports ext4: asked for confirmation first (nothing
/// sent without it), then an empty ext4 built with mke2fs for the partition's size goes
/// to the phone as sparse pieces; the partition's bytes pass `e2fsck -fn` although they
/// held stale bytes. Google's `fastboot format` against the same kind of phone produces a
/// filesystem e2fsck accepts too, with the same block count.
#[test]
fn format_builds_an_empty_ext4_that_e2fsck_accepts_as_googles_does() {
    let (Some(mke2fs), Some(e2fsck), Some(dumpe2fs)) = (
        common::peer("mke2fs"),
        common::peer("e2fsck"),
        common::peer("dumpe2fs"),
    ) else {
        return;
    };
    let bench = Bench::new();
    let (phone, dir) = bench.phone(formattable("ext4", 64 * MIB));
    paint(&dir, "userdata", 0xAB);

    let out = verb(&bench, &phone, &["format", "userdata"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("ALL DATA ON IT IS WIPED"),
        "{}",
        stderr(&out)
    );
    assert!(phone.commands().is_empty(), "{:?}", phone.commands());
    assert!(all_bytes(&dir, "userdata", 0xAB));

    let out = verb(
        &bench,
        &phone,
        &["format", "userdata", "--yes-wipe-user-data", "--json"],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let ev = events(&out);
    let built = ev
        .iter()
        .find(|e| e["event"] == "filesystem-built")
        .unwrap_or_else(|| panic!("{ev:?}"));
    assert_eq!(built["partition"], "userdata");
    assert_eq!(built["filesystem"], "ext4");
    assert_eq!(built["size"], 64 * MIB);
    let command = built["command"].as_str().unwrap();
    assert!(
        command.contains("mke2fs -t ext4 -b 4096 -O uninit_bg") && command.ends_with(" 16384"),
        "{command}"
    );
    assert_eq!(ev.last().unwrap()["event"], "okay");
    assert_eq!(ev.last().unwrap()["command"], "flash:userdata");
    let commands = phone.commands();
    for asked in [
        "getvar:partition-type:userdata",
        "getvar:partition-size:userdata",
    ] {
        assert!(commands.iter().any(|c| c == asked), "{commands:?}");
    }
    let flashes = commands.iter().filter(|c| *c == "flash:userdata").count();
    assert!(flashes > 1, "not sent in sparse pieces: {commands:?}");
    let ours = checked_ext4(&e2fsck, &dumpe2fs, &dir.join("userdata.img"));
    assert_eq!(ours, 16384);
    drop(phone);

    // Google's client builds its image with `mke2fs` beside its own executable and
    // `-E android_sparse`, which Debian's mke2fs lacks: a copy of the client runs with a
    // wrapper there that drops that one option (the client takes a plain image as well).
    let Some(fastboot) = common::peer("fastboot") else {
        return;
    };
    let tools = bench.path("google-tools");
    fs::create_dir_all(&tools).unwrap();
    let client = tools.join("fastboot");
    fs::copy(fs::canonicalize(&fastboot).unwrap(), &client).unwrap();
    let wrapper = tools.join("mke2fs");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nunset MKE2FS_CONFIG\nfor a do\n  shift\n  if [ \"$a\" = -E ]; then e=1; continue; fi\n  \
             if [ -n \"$e\" ]; then e=; a=${{a#android_sparse}}; a=${{a#,}}; [ -n \"$a\" ] && set -- \"$@\" -E \"$a\"; continue; fi\n  \
             set -- \"$@\" \"$a\"\ndone\nexec {} \"$@\"\n",
            mke2fs.display()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let google = Bench::new();
    // Debian's client (29.0.6) cuts an image for a 16 KiB buffer into pieces the phone
    // refuses as invalid; a 4 MiB buffer it splits well.
    let (phone, dir) = google.phone(PhoneConfig {
        max_download_size: (4 * MIB) as u32,
        ..formattable("ext4", 64 * MIB)
    });
    paint(&dir, "userdata", 0xAB);
    let out = Command::new(&client)
        .args(["-s", &phone.device_address(), "format", "userdata"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let theirs = checked_ext4(&e2fsck, &dumpe2fs, &dir.join("userdata.img"));
    assert_eq!(theirs, ours, "Google's fastboot made another block count");
}

/// f2fs is built with f2fs-tools' `mkfs.f2fs` where it is installed; otherwise `format`
/// is refused naming the package, with nothing but variables read.
#[test]
fn format_of_f2fs_uses_mkfs_f2fs_or_names_the_package_to_install() {
    let bench = Bench::new();
    let (phone, dir) = bench.phone(formattable("f2fs", 128 * MIB));
    paint(&dir, "userdata", 0xAB);
    let out = verb(
        &bench,
        &phone,
        &["format", "userdata", "--yes-wipe-user-data"],
    );
    // Where flashline looks for it: PATH, then the sbin folders.
    let path = std::env::var_os("PATH").unwrap_or_default();
    let installed = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(std::path::PathBuf::from))
        .any(|d| d.join("mkfs.f2fs").is_file());
    if installed {
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        assert!(
            stdout(&out).contains("an empty f2fs filesystem"),
            "{}",
            stdout(&out)
        );
        let stored = fs::read(dir.join("userdata.img")).unwrap();
        // The f2fs superblock's magic, at byte 1024.
        assert_eq!(stored[1024..1028], 0xF2F5_2010u32.to_le_bytes());
    } else {
        assert_eq!(out.status.code(), Some(4));
        let err = stderr(&out);
        assert!(
            err.contains("mkfs.f2fs") && err.contains("f2fs-tools"),
            "{err}"
        );
        assert!(err.contains("Nothing was sent"), "{err}");
        assert!(all_bytes(&dir, "userdata", 0xAB));
        assert!(
            phone.commands().iter().all(|c| c.starts_with("getvar:")),
            "{:?}",
            phone.commands()
        );
    }
}

#[test]
fn flashing_unlock_and_lock_need_consent_and_wipe_user_data() {
    let bench = Bench::new();
    let (phone, dir) = bench.phone(phone_config(false, true));
    paint(&dir, "userdata", 0xAB);
    paint(&dir, "boot", 0xCD);

    // No flag and no terminal to ask at: nothing is sent.
    let out = verb(&bench, &phone, &["flashing", "unlock"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("WIPES ALL USER DATA"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("--yes-wipe-user-data"));
    let out = verb(&bench, &phone, &["oem", "unlock"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(phone.commands().is_empty(), "{:?}", phone.commands());
    assert!(all_bytes(&dir, "userdata", 0xAB));

    let out = verb(
        &bench,
        &phone,
        &["flashing", "unlock", "--yes-wipe-user-data"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "flashing unlock: OKAY\n");
    assert!(all_bytes(&dir, "userdata", 0), "user data is wiped");
    assert!(all_bytes(&dir, "boot", 0xCD), "nothing else is");
    assert_eq!(
        stdout(&verb(&bench, &phone, &["getvar", "unlocked"])),
        "unlocked: yes\n"
    );

    let out = verb(
        &bench,
        &phone,
        &["flashing", "unlock", "--yes-wipe-user-data"],
    );
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(
        stdout(&out),
        "flashing unlock: FAILED (remote: 'Device already : unlocked!')\n"
    );

    paint(&dir, "userdata", 0xAB);
    let out = verb(
        &bench,
        &phone,
        &["flashing", "lock", "--yes-wipe-user-data"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(all_bytes(&dir, "userdata", 0));
    assert_eq!(
        stdout(&verb(&bench, &phone, &["getvar", "unlocked"])),
        "unlocked: no\n"
    );
}

#[test]
fn boot_runs_only_a_verified_package_image() {
    let bench = Bench::new();
    let boot = image(MIB as usize, 0, 4096);
    let pkg = bench.pack("stock", "2.1.0", 7, "zte-demo-phone", &[("boot", &boot)]);
    let (phone, dir) = bench.phone(phone_config(false, false));
    let keys = bench.path("keys");
    let args = [
        "boot",
        pkg.to_str().unwrap(),
        "--image",
        "boot",
        "--trust",
        keys.to_str().unwrap(),
    ];

    let out = verb(&bench, &phone, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    // The signed hash is the stored image's: pack keeps this one's zero blocks sparse,
    // and the phone gets it expanded (the booted bytes below are the raw image).
    let text = stdout(&out);
    assert!(
        text.starts_with("image boot sent as signed (sha256 ") && text.ends_with(")\nboot: OKAY\n"),
        "{text}"
    );
    assert_eq!(
        fs::read(dir.join(BOOTED_FILE)).unwrap(),
        boot,
        "the phone booted the image"
    );
    assert!(all_bytes(&dir, "boot", 0), "booting flashes nothing");
    let commands = phone.commands();
    assert_eq!(
        commands[commands.len() - 2..],
        [format!("download:{:08x}", boot.len()), "boot".to_string()]
    );

    // Untrusted: rejected before the device is touched.
    let count = phone.commands().len();
    let other = bench.path("other-keys");
    fs::create_dir_all(&other).unwrap();
    let out = verb(
        &bench,
        &phone,
        &[
            "boot",
            pkg.to_str().unwrap(),
            "--trust",
            other.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("package rejected"),
        "{}",
        stderr(&out)
    );
    assert!(!phone.commands()[count..]
        .iter()
        .any(|c| c.starts_with("download:")));

    // A package made for another product is not booted.
    std::thread::sleep(flashline::sim::phone::BOOT_TIME * 2);
    let foreign = bench.pack(
        "foreign",
        "2.1.0",
        7,
        "some-other-phone",
        &[("boot", &boot)],
    );
    let count = phone.commands().len();
    let out = verb(
        &bench,
        &phone,
        &[
            "boot",
            foreign.to_str().unwrap(),
            "--trust",
            keys.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("boot refused before anything was sent"),
        "{}",
        stderr(&out)
    );
    assert!(!phone.commands()[count..]
        .iter()
        .any(|c| c.starts_with("download:") || c == "boot"));

    // A locked phone says so, as it said it.
    let locked = Bench::new();
    let pkg = locked.pack("stock", "2.1.0", 7, "zte-demo-phone", &[("boot", &boot)]);
    let (phone, dir) = locked.phone(phone_config(false, true));
    let keys = locked.path("keys");
    let out = verb(
        &locked,
        &phone,
        &[
            "boot",
            pkg.to_str().unwrap(),
            "--trust",
            keys.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(5));
    assert!(stdout(&out).ends_with("boot: FAILED (remote: 'unlock device to use this command')\n"));
    assert!(!dir.join(BOOTED_FILE).exists());
}

/// An image whose bytes change between its signature check and its sending.
struct Changed {
    signed: Vec<u8>,
    sent: Vec<u8>,
}

struct Hashing {
    inner: Cursor<Vec<u8>>,
    hasher: Sha256,
    expected: [u8; 32],
}

impl Read for Hashing {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

impl SendReader for Hashing {
    fn verify(self: Box<Self>) -> Result<(), String> {
        (self.hasher.finalize().as_slice() == self.expected)
            .then_some(())
            .ok_or_else(|| "sha256 differs".to_string())
    }
}

impl ImageSource for Changed {
    fn len(&self) -> u64 {
        self.signed.len() as u64
    }
    fn is_sparse(&self) -> bool {
        false
    }
    fn plan_reader(&self) -> std::io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(Cursor::new(self.sent.clone())))
    }
    fn send_reader(&self) -> std::io::Result<Box<dyn SendReader + '_>> {
        Ok(Box::new(Hashing {
            inner: Cursor::new(self.sent.clone()),
            hasher: Sha256::new(),
            expected: Sha256::digest(&self.signed).into(),
        }))
    }
}

#[test]
fn boot_is_withheld_when_the_bytes_sent_differ_from_the_signed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let phone = PhoneSim::start(
        "127.0.0.1:0".parse().unwrap(),
        dir.path(),
        phone_config(false, false),
    )
    .unwrap();
    let signed = image(64 * 1024, 0, 0);
    let mut sent = signed.clone();
    sent[1000] ^= 0xFF;
    let transport =
        TcpTransport::connect(&phone.device_address(), std::time::Duration::from_secs(5)).unwrap();
    let mut driver = FastbootDriver::new(transport, Quirks::builtin(), true);
    let verbs = driver.fastboot_verbs().unwrap();
    let result = verbs.boot_image(&Changed { signed, sent }, &mut |_| {});
    assert!(
        matches!(result, Err(DeviceError::ImageChanged(_))),
        "{result:?}"
    );
    let commands = phone.commands();
    assert!(commands.iter().any(|c| c.starts_with("download:")));
    assert!(!commands.iter().any(|c| c == "boot"), "{commands:?}");
    assert!(!dir.path().join(BOOTED_FILE).exists());
}

#[test]
fn disable_verity_sets_the_flags_in_the_bytes_sent_and_the_report() {
    let bench = Bench::new();
    let vbmeta = vbmeta_image(0);
    let boot = image(MIB as usize, 0, 0);
    let pkg = bench.pack(
        "stock",
        "2.1.0",
        7,
        "zte-demo-phone",
        &[("boot", &boot), ("vbmeta", &vbmeta)],
    );
    let (phone, dir) = bench.phone(phone_config(true, false));
    let (out, report) = bench.flash(
        &pkg,
        &phone,
        &["--disable-verity", "--disable-verification"],
    );
    assert!(out.status.success(), "{}", stdout(&out));

    let mut expected = vbmeta.clone();
    expected[123] |= 0x03;
    let stored = fs::read(dir.join("vbmeta_b.img")).unwrap();
    assert_eq!(
        stored[..expected.len()],
        expected[..],
        "only byte 123 changes"
    );
    assert!(
        all_bytes(&dir, "vbmeta_a", 0),
        "the running slot is untouched"
    );
    assert_eq!(
        &fs::read(dir.join("boot_b.img")).unwrap()[..boot.len()],
        &boot[..]
    );

    let entry = &report["images"][1];
    assert_eq!(entry["target"], "vbmeta_b");
    assert_eq!(entry["vbmeta_flags"], "disable-verity+disable-verification");
    assert!(report["images"][0].get("vbmeta_flags").is_none());
    assert_eq!(entry["sha256_signed"], hex::encode(Sha256::digest(&vbmeta)));
    assert_eq!(entry["sha256_sent"], hex::encode(Sha256::digest(&expected)));
    assert_eq!(
        report["images"][0]["sha256_sent"],
        hex::encode(Sha256::digest(&boot))
    );
    let notes = report["notes"].to_string();
    assert!(
        notes.contains("vbmeta flags disable-verity+disable-verification set on vbmeta_b"),
        "{notes}"
    );
    let check = report["preflight"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "vbmeta-flags:vbmeta_b")
        .expect("the flags are a preflight line");
    assert_eq!(check["status"], "warn");
    assert_eq!(check["actual"], "flags 0x0 in the signed image");
    // The plan's checklist is shown before anything is written.
    let ev = events(&out);
    let preflight = ev.iter().position(|e| e["event"] == "preflight").unwrap();
    let first_write = ev
        .iter()
        .position(|e| e["event"] == "image-started")
        .unwrap();
    assert!(preflight < first_write);
    assert!(ev[preflight].to_string().contains("vbmeta-flags:vbmeta_b"));
}

#[test]
fn vbmeta_flags_are_refused_where_they_cannot_apply() {
    let bench = Bench::new();
    let vbmeta = vbmeta_image(0);
    let boot = image(MIB as usize, 0, 0);
    let with = bench.pack("with", "2.1.0", 7, "zte-demo-phone", &[("vbmeta", &vbmeta)]);
    let without = bench.pack("without", "2.1.0", 7, "zte-demo-phone", &[("boot", &boot)]);
    let not_avb = bench.pack("notavb", "2.1.0", 7, "zte-demo-phone", &[("vbmeta", &boot)]);

    let (phone, dir) = bench.phone(phone_config(false, false));
    let (out, report) = bench.flash(&without, &phone, &["--disable-verity"]);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(report["outcome"], "preflight-refused");
    assert!(report["error"]
        .as_str()
        .unwrap()
        .contains("writes no vbmeta partition"));

    let (out, report) = bench.flash(&not_avb, &phone, &["--disable-verification"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("not \\\"AVB0\\\"")
            || report["error"].as_str().unwrap().contains("not \"AVB0\""),
        "{}",
        report["error"]
    );
    assert!(all_bytes(&dir, "vbmeta", 0) && all_bytes(&dir, "boot", 0));
    drop(phone);

    let locked = Bench::new();
    let with_locked = locked.pack("with", "2.1.0", 7, "zte-demo-phone", &[("vbmeta", &vbmeta)]);
    let (phone, dir) = locked.phone(phone_config(false, true));
    let (out, report) = locked.flash(&with_locked, &phone, &["--disable-verity"]);
    assert_eq!(out.status.code(), Some(4));
    let refused = report["preflight"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "vbmeta-flags")
        .expect("a vbmeta-flags refusal");
    assert_eq!(refused["status"], "refuse");
    assert!(refused["message"].as_str().unwrap().contains("unlocked"));
    assert!(all_bytes(&dir, "vbmeta", 0));
    assert!(!phone.commands().iter().any(|c| c.starts_with("download:")));
    let _ = with;
}

/// No path but the explicit verbs sends `flashing lock|unlock` or `oem lock|unlock`: a
/// whole flash, a dry run, info, and every other verb leave no such command on the phone,
/// and no source file outside the verbs' own spells the commands.
#[test]
fn nothing_else_ever_locks_or_unlocks_a_bootloader() {
    let bench = Bench::new();
    let boot = image(MIB as usize, 0, 0);
    let pkg = bench.pack(
        "stock",
        "2.1.0",
        7,
        "zte-demo-phone",
        &[("boot", &boot), ("vbmeta", &vbmeta_image(0))],
    );
    let (phone, _dir) = bench.phone(phone_config(true, false));
    let keys = bench.path("keys");
    assert!(bench.flash(&pkg, &phone, &["--dry-run"]).0.status.success());
    assert!(bench
        .flash(&pkg, &phone, &["--disable-verity"])
        .0
        .status
        .success());
    assert!(bench
        .run(&["info", &phone.device_address()])
        .status
        .success());
    for args in [
        vec!["getvar", "all"],
        vec!["oem", "device-info"],
        vec!["erase", "userdata"],
        vec!["format", "userdata"],
        vec![
            "boot",
            pkg.to_str().unwrap(),
            "--trust",
            keys.to_str().unwrap(),
        ],
    ] {
        verb(&bench, &phone, &args);
    }
    let commands = phone.commands();
    assert!(commands.iter().any(|c| c == "boot"), "{commands:?}");
    assert!(
        !commands.iter().any(|c| c.starts_with("flashing")
            || c.starts_with("oem lock")
            || c.starts_with("oem unlock")),
        "{commands:?}"
    );

    let allowed = ["src/engine/verbs.rs", "src/sim/phone/bootloader/verbs.rs"];
    let mut offenders = Vec::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(env!("CARGO_MANIFEST_DIR"))
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if path.extension().is_none_or(|e| e != "rs") || allowed.contains(&rel.as_str()) {
                continue;
            }
            // Unit tests (after `#[cfg(test)]`) talk to no device.
            let text = fs::read_to_string(&path).unwrap();
            let code = text.split("\n#[cfg(test)]").next().unwrap_or_default();
            for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                if [
                    "\"flashing lock",
                    "\"flashing unlock",
                    "\"oem unlock",
                    "\"oem lock",
                ]
                .iter()
                .any(|spell| line.contains(spell))
                {
                    offenders.push(format!("{rel}: {}", line.trim()));
                }
            }
        }
    }
    assert!(offenders.is_empty(), "{offenders:#?}");
}

/// Google's client (Debian's `fastboot`) against the same virtual phone: `erase` zeroes,
/// `oem device-info` prints the phone's lines, `boot` runs the image it was given, and `--disable-verity --disable-verification
/// flash vbmeta` stores exactly the bytes flashline's `flash` with the same flags stores.
#[test]
fn google_fastboot_erases_reads_oem_and_sets_the_same_vbmeta_flags() {
    let Some(fastboot) = common::peer("fastboot") else {
        return;
    };
    let bench = Bench::new();
    let vbmeta = vbmeta_image(0x10);
    let vbmeta_file = bench.path("vbmeta.img");
    fs::write(&vbmeta_file, &vbmeta).unwrap();
    let google_dir = bench.path("google-phone");
    let google = PhoneSim::start(
        "127.0.0.1:0".parse().unwrap(),
        &google_dir,
        phone_config(false, false),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(&fastboot)
            .arg("-s")
            .arg(google.device_address())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(out.status.success(), "fastboot {args:?}: {text}");
        text
    };
    paint(&google_dir, "boot", 0xAB);
    run(&["erase", "boot"]);
    assert!(all_bytes(&google_dir, "boot", 0));
    let text = run(&["oem", "device-info"]);
    assert!(
        text.contains("(bootloader) Device unlocked: true"),
        "{text}"
    );
    // A boot image (magic `ANDROID!`) goes to the phone as it is, and the phone boots it.
    let mut boot = image(64 * 1024, 0, 0);
    boot[..8].copy_from_slice(b"ANDROID!");
    let boot_file = bench.path("boot.img");
    fs::write(&boot_file, &boot).unwrap();
    run(&["boot", boot_file.to_str().unwrap()]);
    assert_eq!(fs::read(google_dir.join(BOOTED_FILE)).unwrap(), boot);
    std::thread::sleep(flashline::sim::phone::BOOT_TIME * 2);
    run(&[
        "--disable-verity",
        "--disable-verification",
        "flash",
        "vbmeta",
        vbmeta_file.to_str().unwrap(),
    ]);

    let pkg = bench.pack(
        "stock",
        "2.1.0",
        7,
        "zte-demo-phone",
        &[("vbmeta", &vbmeta)],
    );
    let (ours, ours_dir) = bench.phone(phone_config(false, false));
    let (out, _) = bench.flash(&pkg, &ours, &["--disable-verity", "--disable-verification"]);
    assert!(out.status.success(), "{}", stdout(&out));
    let google_bytes = fs::read(google_dir.join("vbmeta.img")).unwrap();
    let our_bytes = fs::read(ours_dir.join("vbmeta.img")).unwrap();
    assert_eq!(google_bytes[120..124], [0, 0, 0, 0x13]);
    assert!(
        google_bytes == our_bytes,
        "flashline and Google's fastboot stored different vbmeta bytes"
    );
}

#[test]
fn flash_slot_writes_the_slot_named_and_refuses_all() {
    let bench = Bench::new();
    let boot = image(MIB as usize, 0, 0);
    let pkg = bench.pack("stock", "2.1.0", 7, "zte-demo-phone", &[("boot", &boot)]);
    let (phone, dir) = bench.phone(phone_config(true, false));

    // The running slot, named: written live, then (still) the active one.
    let (out, report) = bench.flash(&pkg, &phone, &["--slot", "a"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert_eq!(
        &fs::read(dir.join("boot_a.img")).unwrap()[..boot.len()],
        &boot[..]
    );
    assert!(all_bytes(&dir, "boot_b", 0));
    assert_eq!(report["activated_slot"], "a");
    let ev = events(&out);
    let plan = ev.iter().find(|e| e["event"] == "plan-ready").unwrap();
    assert_eq!(plan["writes"][0]["target"], "boot_a");
    assert_eq!(plan["writes"][0]["live"], true);

    let (out, report) = bench.flash(&pkg, &phone, &["--slot", "all"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(report["error"]
        .as_str()
        .unwrap()
        .contains("flash --slot all is not supported"));
    assert!(all_bytes(&dir, "boot_b", 0));
    drop(phone);

    let plain = Bench::new();
    let pkg = plain.pack("stock", "2.1.0", 7, "zte-demo-phone", &[("boot", &boot)]);
    let (phone, dir) = plain.phone(phone_config(false, false));
    let (out, report) = plain.flash(&pkg, &phone, &["--slot", "other"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(report["error"].as_str().unwrap().contains("no A/B slots"));
    assert!(all_bytes(&dir, "boot", 0));
}

/// Real devices' words (recorded `getvar all` transcripts, replayed): `getvar` passes a
/// Pixel 7 Pro's value through, and `format userdata` is refused for the raw partition
/// type it reports.
#[test]
fn replayed_phones_answer_getvar_and_format_refuses_a_raw_partition() {
    let bench = Bench::new();
    let transcript = flashline::sim::phone::Transcript::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fastboot/pixel-7-pro.txt"),
    )
    .unwrap();
    let (phone, _dir) = bench.phone(PhoneConfig::replaying(transcript));
    let out = verb(&bench, &phone, &["getvar", "version-bootloader"]);
    assert_eq!(
        stdout(&out),
        "version-bootloader: cloudripper-15.1-12292122\n"
    );
    // The Pixel reports userdata as raw: nothing to create, as Google's client says too.
    let out = verb(
        &bench,
        &phone,
        &["format", "userdata", "--yes-wipe-user-data"],
    );
    assert_eq!(out.status.code(), Some(4));
    assert!(stderr(&out).contains("partition-type raw for userdata"));
    drop(phone);
}

/// A device whose words carry terminal control sequences: they are printed escaped, and
/// kept as sent in the JSON events.
#[test]
fn device_words_are_escaped_before_they_reach_the_terminal() {
    use std::io::Write;
    use std::net::TcpListener;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("tcp:{}", listener.local_addr().unwrap());
    let device = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut s, _) = listener.accept().unwrap();
            let mut hello = [0u8; 4];
            s.read_exact(&mut hello).unwrap();
            s.write_all(b"FB01").unwrap();
            let mut len = [0u8; 8];
            s.read_exact(&mut len).unwrap();
            let mut command = vec![0u8; u64::from_be_bytes(len) as usize];
            s.read_exact(&mut command).unwrap();
            assert_eq!(command, b"oem colours");
            for message in [&b"INFO\x1b]0;owned\x07red\x1b[31m"[..], b"FAILnot\rreally"] {
                s.write_all(&(message.len() as u64).to_be_bytes()).unwrap();
                s.write_all(message).unwrap();
            }
            let _ = s.read(&mut [0u8; 16]);
        }
    });
    let run = |json: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_flashline"))
            .args(["fastboot", "oem", "colours", "--device", &address])
            .args(json)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(
        stdout(&out),
        "(bootloader) \\u{1b}]0;owned\\u{7}red\\u{1b}[31m\n\
         oem colours: FAILED (remote: 'not\\u{d}really')\n"
    );
    let out = run(&["--json"]);
    let ev = events(&out);
    assert_eq!(ev[1]["text"], "\u{1b}]0;owned\u{7}red\u{1b}[31m");
    assert_eq!(ev[2]["reason"], "not\rreally");
    device.join().unwrap();
}

/// A vbmeta image larger than the phone's download buffer goes in sparse pieces; the
/// flags are set in them just the same, and the stored bytes are the patched image.
#[test]
fn vbmeta_flags_survive_an_image_sent_in_pieces() {
    let bench = Bench::new();
    let mut vbmeta = image(48 * 1024, 0, 0);
    vbmeta[..256].copy_from_slice(&vbmeta_image(0)[..256]);
    let pkg = bench.pack(
        "stock",
        "2.1.0",
        7,
        "zte-demo-phone",
        &[("vbmeta", &vbmeta)],
    );
    let (phone, dir) = bench.phone(PhoneConfig {
        max_download_size: 16 * 1024,
        ..phone_config(false, false)
    });
    let (out, report) = bench.flash(&pkg, &phone, &["--disable-verity"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        phone
            .commands()
            .iter()
            .filter(|c| c.starts_with("download:"))
            .count()
            > 1,
        "{:?}",
        phone.commands()
    );
    let mut expected = vbmeta.clone();
    expected[123] |= 0x01;
    let stored = fs::read(dir.join("vbmeta.img")).unwrap();
    assert!(stored[..expected.len()] == expected[..]);
    assert_eq!(
        report["images"][0]["sha256_sent"],
        hex::encode(Sha256::digest(&expected))
    );
}
