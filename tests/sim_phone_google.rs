//! The virtual phone against Google's `fastboot` client, and its own checks against a
//! minimal raw client.

mod common;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flashline::sim::{PhoneConfig, PhoneSim, RunningPhone};
use sha2::{Digest, Sha256};

const MIB: u64 = 1024 * 1024;
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Small partitions keep every test fast; the sim's defaults are realistic sizes.
fn small_config() -> PhoneConfig {
    PhoneConfig {
        partitions: vec![
            ("boot".into(), 4 * MIB),
            ("system".into(), 8 * MIB),
            ("vendor".into(), MIB),
        ],
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

fn partition(dir: &Path, name: &str) -> Vec<u8> {
    fs::read(dir.join(format!("{name}.img"))).unwrap()
}

/// Overwrites a partition file with a recognisable byte, to prove later writes leave
/// the rest alone.
fn paint(dir: &Path, name: &str, byte: u8) {
    let path = dir.join(format!("{name}.img"));
    let len = fs::metadata(&path).unwrap().len() as usize;
    fs::write(&path, vec![byte; len]).unwrap();
}

fn digest(dir: &Path, name: &str) -> Vec<u8> {
    Sha256::digest(partition(dir, name)).to_vec()
}

/// Runs Google's client against the phone, killing it after [`CLIENT_TIMEOUT`].
/// Returns whether it succeeded and what it printed (stdout and stderr together).
fn run_fastboot(fastboot: &Path, phone: &RunningPhone, args: &[&str]) -> (bool, String) {
    let log = tempfile::NamedTempFile::new().unwrap();
    let out = File::create(log.path()).unwrap();
    let err = out.try_clone().unwrap();
    let mut child = Command::new(fastboot)
        .arg("-s")
        .arg(phone.device_address())
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn fastboot");
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("fastboot {args:?} did not finish within {CLIENT_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (status.success(), fs::read_to_string(log.path()).unwrap())
}

fn fastboot_ok(fastboot: &Path, phone: &RunningPhone, args: &[&str]) -> String {
    let (ok, output) = run_fastboot(fastboot, phone, args);
    assert!(ok, "fastboot {args:?} failed:\n{output}");
    output
}

/// The commands received since `from`.
fn commands_since(phone: &RunningPhone, from: usize) -> Vec<String> {
    phone.commands()[from..].to_vec()
}

#[test]
fn google_getvar_lists_the_phone() {
    let Some(fb) = common::peer("fastboot") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let phone = start(tmp.path(), small_config());

    let all = fastboot_ok(&fb, &phone, &["getvar", "all"]);
    for line in [
        "product:zte-demo-phone",
        "serialno:FLSIM0001",
        "max-download-size:0x10000000",
        "version-bootloader:2.0.0",
        "security-version:7",
        "battery-soc:80",
        "battery-soc-ok:yes",
        "partition-size:boot:0x400000",
        "partition-size:system:0x800000",
        "partition-size:vendor:0x100000",
        "has-slot:boot:no",
    ] {
        assert!(
            all.contains(line),
            "`{line}` missing from getvar all:\n{all}"
        );
    }
    let product = fastboot_ok(&fb, &phone, &["getvar", "product"]);
    assert!(product.contains("product: zte-demo-phone"), "{product}");
    // Debian's client 29.0.6 reports the FAIL but exits 0 for getvar.
    let (_, unknown) = run_fastboot(&fb, &phone, &["getvar", "no-such-var"]);
    assert!(
        unknown.contains("FAILED (remote: 'unknown variable')"),
        "{unknown}"
    );
    assert_eq!(
        phone.commands(),
        ["getvar:all", "getvar:product", "getvar:no-such-var"]
    );
}

#[test]
fn google_raw_flash_writes_the_prefix_only() {
    let Some(fb) = common::peer("fastboot") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("phone");
    let phone = start(&dir, small_config());
    paint(&dir, "boot", 0xEE);
    let image = noise(MIB as usize, 1);
    let img = image_file(tmp.path(), "boot.img", &image);

    fastboot_ok(&fb, &phone, &["flash", "boot", img.to_str().unwrap()]);

    let boot = partition(&dir, "boot");
    assert_eq!(boot.len() as u64, 4 * MIB);
    assert!(
        boot[..image.len()] == image[..],
        "boot prefix differs from the image"
    );
    assert!(
        boot[image.len()..].iter().all(|&b| b == 0xEE),
        "rest of boot was touched"
    );
    assert_eq!(
        phone.commands(),
        [
            "getvar:has-slot:boot",
            "getvar:max-download-size",
            "getvar:is-logical:boot",
            "download:00100000",
            "flash:boot",
        ]
    );
}

#[test]
fn google_splits_a_large_image_into_sparse_pieces() {
    let Some(fb) = common::peer("fastboot") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("phone");
    let cfg = PhoneConfig {
        max_download_size: MIB as u32,
        ..small_config()
    };
    let phone = start(&dir, cfg);
    paint(&dir, "system", 0xEE);
    // Random, zero, random, zero: the client sends RAW and FILL chunks in several pieces.
    let mut image = noise(2 * MIB as usize, 2);
    image.extend(vec![0u8; MIB as usize]);
    image.extend(noise(MIB as usize, 3));
    image.extend(vec![0u8; MIB as usize]);
    let img = image_file(tmp.path(), "system.img", &image);

    fastboot_ok(&fb, &phone, &["flash", "system", img.to_str().unwrap()]);

    let system = partition(&dir, "system");
    assert!(
        system[..image.len()] == image[..],
        "system prefix differs from the image"
    );
    assert!(
        system[image.len()..].iter().all(|&b| b == 0xEE),
        "rest of system was touched"
    );
    let commands = phone.commands();
    let downloads = commands
        .iter()
        .filter(|c| c.starts_with("download:"))
        .count();
    let flashes = commands.iter().filter(|c| *c == "flash:system").count();
    assert!(downloads >= 3, "expected a split image, got {commands:?}");
    assert_eq!(downloads, flashes, "{commands:?}");
    for pair in commands[3..].chunks(2) {
        assert!(
            pair[0].starts_with("download:") && pair[1] == "flash:system",
            "{commands:?}"
        );
    }
}

#[test]
fn google_erase_zeroes_the_partition() {
    let Some(fb) = common::peer("fastboot") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let phone = start(tmp.path(), small_config());
    paint(tmp.path(), "vendor", 0xEE);

    fastboot_ok(&fb, &phone, &["erase", "vendor"]);

    let vendor = partition(tmp.path(), "vendor");
    assert_eq!(vendor.len() as u64, MIB);
    assert!(vendor.iter().all(|&b| b == 0));
    assert_eq!(
        phone.commands().last().map(String::as_str),
        Some("erase:vendor")
    );
}

#[test]
fn google_flashes_slots_and_versions_follow_the_booted_slot() {
    let Some(fb) = common::peer("fastboot") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("phone");
    let phone = start(
        &dir,
        PhoneConfig {
            slots: true,
            ..small_config()
        },
    );
    let all = fastboot_ok(&fb, &phone, &["getvar", "all"]);
    assert!(all.contains("partition-size:boot_a:0x400000"), "{all}");
    assert!(
        all.contains("current-slot:a") && all.contains("slot-count:2"),
        "{all}"
    );

    // `flash boot` goes to the current slot.
    let plain = noise(MIB as usize, 4);
    let img = image_file(tmp.path(), "plain.img", &plain);
    fastboot_ok(&fb, &phone, &["flash", "boot", img.to_str().unwrap()]);
    assert!(partition(&dir, "boot_a")[..plain.len()] == plain[..]);
    assert!(partition(&dir, "boot_b").iter().all(|&b| b == 0));
    assert!(phone.commands().contains(&"flash:boot_a".to_string()));

    // A newer image with a version marker goes to slot b; nothing changes until b boots.
    let mut marked = b"FLASHLINE-VERSION=3.1.0\nFLASHLINE-SECURITY=9\n".to_vec();
    marked.extend(noise(64 * 1024, 5));
    let img = image_file(tmp.path(), "marked.img", &marked);
    fastboot_ok(
        &fb,
        &phone,
        &["--slot", "b", "flash", "boot", img.to_str().unwrap()],
    );
    assert!(partition(&dir, "boot_b")[..marked.len()] == marked[..]);
    let before = fastboot_ok(&fb, &phone, &["getvar", "version-bootloader"]);
    assert!(before.contains("version-bootloader: 2.0.0"), "{before}");

    let mark = phone.commands().len();
    fastboot_ok(&fb, &phone, &["--set-active=b"]);
    assert_eq!(
        commands_since(&phone, mark),
        ["getvar:slot-count", "set_active:b"]
    );
    let slot = fastboot_ok(&fb, &phone, &["getvar", "current-slot"]);
    assert!(slot.contains("current-slot: b"), "{slot}");

    fastboot_ok(&fb, &phone, &["reboot"]);
    let after = fastboot_ok(&fb, &phone, &["getvar", "all"]);
    assert!(after.contains("version-bootloader:3.1.0"), "{after}");
    assert!(after.contains("security-version:9"), "{after}");
    assert!(after.contains("slot-successful:b:yes"), "{after}");

    // Back to slot a: its image has no marker, so the configured version; the
    // anti-rollback level stays where it rose to.
    fastboot_ok(&fb, &phone, &["set_active", "a"]);
    fastboot_ok(&fb, &phone, &["reboot", "bootloader"]);
    let back = fastboot_ok(&fb, &phone, &["getvar", "all"]);
    assert!(back.contains("version-bootloader:2.0.0"), "{back}");
    assert!(back.contains("security-version:9"), "{back}");
    assert!(phone.commands().contains(&"reboot-bootloader".to_string()));
}

#[test]
fn data_survives_reboot_and_restart() {
    let Some(fb) = common::peer("fastboot") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("phone");
    let phone = start(&dir, small_config());
    let mut image = b"FLASHLINE-VERSION=2.5.0\n".to_vec();
    image.extend(noise(MIB as usize, 6));
    let img = image_file(tmp.path(), "boot.img", &image);
    fastboot_ok(&fb, &phone, &["flash", "boot", img.to_str().unwrap()]);
    fastboot_ok(&fb, &phone, &["reboot"]);

    let version = fastboot_ok(&fb, &phone, &["getvar", "version-bootloader"]);
    assert!(version.contains("version-bootloader: 2.5.0"), "{version}");
    assert!(partition(&dir, "boot")[..image.len()] == image[..]);
    phone.stop();

    let phone = start(&dir, small_config());
    assert!(partition(&dir, "boot")[..image.len()] == image[..]);
    let version = fastboot_ok(&fb, &phone, &["getvar", "version-bootloader"]);
    assert!(version.contains("version-bootloader: 2.5.0"), "{version}");
}

/// Just enough of a fastboot TCP client to send what Google's client never would.
struct RawClient {
    stream: TcpStream,
}

impl RawClient {
    fn connect(addr: SocketAddr) -> Self {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(b"FB01").unwrap();
        let mut hello = [0u8; 4];
        stream.read_exact(&mut hello).unwrap();
        assert_eq!(&hello, b"FB01");
        RawClient { stream }
    }

    fn send_frame(&mut self, payload: &[u8]) {
        // One write per frame: a separate header write would stall on Nagle's algorithm.
        let mut frame = (payload.len() as u64).to_be_bytes().to_vec();
        frame.extend_from_slice(payload);
        self.stream.write_all(&frame).unwrap();
    }

    /// The next response, or `None` once the phone closed the connection.
    fn read_frame(&mut self) -> Option<String> {
        let mut header = [0u8; 8];
        self.stream.read_exact(&mut header).ok()?;
        let len = u64::from_be_bytes(header);
        assert!(len <= 256, "response of {len} bytes");
        let mut payload = vec![0u8; len as usize];
        self.stream.read_exact(&mut payload).unwrap();
        Some(String::from_utf8(payload).unwrap())
    }

    /// Sends a command and returns the first non-INFO response.
    fn command(&mut self, command: &str) -> String {
        self.send_frame(command.as_bytes());
        self.final_response()
    }

    fn final_response(&mut self) -> String {
        loop {
            let response = self.read_frame().expect("connection closed");
            if !response.starts_with("INFO") {
                return response;
            }
        }
    }

    /// Downloads `data` in frames of `frame_len` bytes.
    fn download(&mut self, data: &[u8], frame_len: usize) -> String {
        let reply = self.command(&format!("download:{:08x}", data.len()));
        assert_eq!(reply, format!("DATA{:08x}", data.len()));
        for frame in data.chunks(frame_len) {
            self.send_frame(frame);
        }
        self.final_response()
    }

    fn is_closed(&mut self) -> bool {
        self.read_frame().is_none()
    }
}

/// A sparse image header for `total_blks` blocks of 4096 bytes.
fn sparse_header(total_blks: u32, total_chunks: u32) -> Vec<u8> {
    flashline::protocol::sparse::Header::encode(4096, total_blks, total_chunks).to_vec()
}

fn chunk(kind: u16, blocks: u32, total_sz: u32) -> Vec<u8> {
    let mut c = kind.to_le_bytes().to_vec();
    c.extend_from_slice(&[0, 0]);
    c.extend_from_slice(&blocks.to_le_bytes());
    c.extend_from_slice(&total_sz.to_le_bytes());
    c
}

#[test]
fn refuses_what_a_device_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = PhoneConfig {
        max_download_size: 2 * MIB as u32,
        ..small_config()
    };
    let phone = start(tmp.path(), cfg);
    paint(tmp.path(), "vendor", 0xEE);
    let vendor = digest(tmp.path(), "vendor");
    let mut c = RawClient::connect(phone.addr());

    assert_eq!(c.command("getvar:version"), "OKAY0.4");
    assert_eq!(c.command("getvar:nope"), "FAILunknown variable");
    assert_eq!(
        c.command("getvar:partition-size:nope"),
        "FAILunknown variable"
    );
    assert_eq!(c.command("getvar:current-slot"), "FAILunknown variable");
    assert_eq!(c.command("getvar:slot-count"), "OKAY0");
    assert_eq!(c.command("oem unlock"), "FAILunknown command");
    assert!(c
        .command("flash:vendor")
        .starts_with("FAILno image downloaded"));
    assert_eq!(
        c.command("download:00000000"),
        "FAILdownload size must not be zero"
    );
    assert!(c
        .command("download:00200001")
        .starts_with("FAILdownload of 2097153 bytes exceeds"));
    assert!(c
        .command("download:xyz")
        .starts_with("FAILmalformed command"));
    assert!(c
        .command("set_active:b")
        .starts_with("FAILdevice has no slots"));

    // One byte too large for vendor (1 MiB), but within max-download-size.
    assert_eq!(c.download(&noise(MIB as usize + 1, 7), 64 * 1024), "OKAY");
    assert!(c
        .command("flash:vendor")
        .starts_with("FAILimage needs 1048577 bytes"));
    assert_eq!(
        c.command("flash:../vendor"),
        "FAILunknown partition '../vendor'"
    );
    assert_eq!(
        c.command("erase:/etc/passwd"),
        "FAILunknown partition '/etc/passwd'"
    );
    assert_eq!(digest(tmp.path(), "vendor"), vendor, "vendor changed");

    // Sparse images: one expanding past the partition, one truncated, one whose chunks
    // do not cover the declared blocks.
    let mut too_big = sparse_header(257, 1);
    too_big.extend(chunk(0xCAC3, 257, 12));
    let mut truncated = sparse_header(2, 1);
    truncated.extend(chunk(0xCAC1, 2, 12 + 8192));
    truncated.extend(vec![0xAB; 5000]);
    let mut short = sparse_header(4, 1);
    short.extend(chunk(0xCAC1, 1, 12 + 4096));
    short.extend(vec![0xAB; 4096]);
    for (image, reason) in [
        (too_big, "FAILimage needs 1052672 bytes"),
        (
            truncated,
            "FAILmalformed sparse image: sparse image is truncated",
        ),
        (
            short,
            "FAILmalformed sparse image: sparse chunks cover 1 blocks",
        ),
    ] {
        assert_eq!(c.download(&image, 1 << 20), "OKAY");
        let reply = c.command("flash:vendor");
        assert!(reply.starts_with(reason), "{reply}");
        assert_eq!(digest(tmp.path(), "vendor"), vendor, "vendor changed");
    }

    // A command frame over 4096 bytes is refused unread, and the phone hangs up.
    c.send_frame(&[b'a'; 5000]);
    let reply = c.final_response();
    assert!(
        reply.starts_with("FAILcommand of 5000 bytes exceeds"),
        "{reply}"
    );
    assert!(c.is_closed());
    assert!(phone
        .commands()
        .contains(&"<5000-byte command>".to_string()));
}

#[test]
fn downloads_are_counted_across_frames() {
    let tmp = tempfile::tempdir().unwrap();
    let phone = start(tmp.path(), small_config());
    let image = noise(300_000, 8);
    let mut c = RawClient::connect(phone.addr());

    // Uneven frames, with an empty one in the middle.
    let reply = c.command(&format!("download:{:08x}", image.len()));
    assert_eq!(reply, format!("DATA{:08x}", image.len()));
    c.send_frame(&image[..1024]);
    c.send_frame(&[]);
    c.send_frame(&image[1024..299_948]);
    c.send_frame(&image[299_948..]);
    assert_eq!(c.final_response(), "OKAY");
    let reply = c.command("flash:vendor");
    assert_eq!(reply, "OKAY");
    assert!(partition(tmp.path(), "vendor")[..image.len()] == image[..]);
    assert_eq!(
        phone.commands(),
        ["download:000493e0", "flash:vendor"],
        "downloads are logged as sent"
    );

    // A data frame running past the announced size cannot be resynchronised.
    assert_eq!(c.command("download:00000010"), "DATA00000010");
    c.send_frame(&[0u8; 17]);
    assert!(c.final_response().starts_with("FAILdownload failed"));
    assert!(c.is_closed());

    // The phone serves the next connection, and the failed download is gone.
    let mut c = RawClient::connect(phone.addr());
    assert!(c
        .command("flash:vendor")
        .starts_with("FAILno image downloaded"));
}

#[test]
fn a_slotted_phone_checks_slot_names() {
    let tmp = tempfile::tempdir().unwrap();
    let phone = start(
        tmp.path(),
        PhoneConfig {
            slots: true,
            ..small_config()
        },
    );
    let mut c = RawClient::connect(phone.addr());
    assert_eq!(c.command("getvar:has-slot:boot"), "OKAYyes");
    assert_eq!(c.command("getvar:has-slot:boot_a"), "OKAYno");
    assert_eq!(c.command("getvar:has-slot:radio"), "FAILunknown variable");
    assert_eq!(c.command("getvar:slot-successful:b"), "OKAYno");
    assert_eq!(
        c.command("getvar:slot-unbootable:c"),
        "FAILunknown variable"
    );
    assert_eq!(
        c.command("set_active:c"),
        "FAILinvalid slot 'c': expected a or b"
    );
    assert_eq!(c.command("set_active:_b"), "OKAY");
    assert_eq!(c.command("getvar:current-slot"), "OKAYb");
    assert!(c.command("erase:boot").starts_with("FAILunknown partition"));
    assert_eq!(c.command("erase:boot_b"), "OKAY");
    assert_eq!(c.command("continue"), "OKAY");
    assert!(c.is_closed());
    assert!(!tmp.path().join("boot.img").exists());
}

#[test]
fn bad_handshakes_and_configs_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let phone = start(tmp.path(), small_config());
    let mut stream = TcpStream::connect(phone.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(b"HTTP").unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(
        stream.read(&mut buf).unwrap_or(0),
        0,
        "answered a bad handshake"
    );
    phone.stop();

    let refuse = |cfg: PhoneConfig, needle: &str| {
        let err = PhoneSim::start("127.0.0.1:0".parse().unwrap(), tmp.path(), cfg)
            .err()
            .expect("config accepted");
        assert!(err.to_string().contains(needle), "{err}");
    };
    let with_parts = |parts: &[(&str, u64)]| PhoneConfig {
        partitions: parts.iter().map(|(n, s)| (n.to_string(), *s)).collect(),
        version_partition: None,
        ..PhoneConfig::default()
    };
    refuse(with_parts(&[("../evil", MIB)]), "is not allowed");
    refuse(with_parts(&[("a", MIB), ("a", MIB)]), "declared twice");
    refuse(with_parts(&[("a", 0)]), "has size 0");
    refuse(with_parts(&[("boot", MIB)]), "declared with 1048576");
    refuse(
        PhoneConfig {
            version_partition: Some("modem".into()),
            ..small_config()
        },
        "version partition \"modem\"",
    );
    assert!(!tmp.path().join("..").join("evil.img").exists());
}
