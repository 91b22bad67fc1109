//! Real phones as they answer: flashline's fastboot driver identifies every device of the
//! corpus (tests/data/fastboot, real `getvar all` transcripts, see SOURCES.md) through a
//! virtual phone replaying it over TCP, and reads each one as the device meant it.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::replay::{corpus_dir, corpus_files, replay_phone};
use flashline::device::fastboot::FastbootDriver;
use flashline::device::quirks::Quirks;
use flashline::device::{Battery, DeviceInfo, Driver, LockState};
use flashline::sim::phone::{PhoneConfig, PhoneSim, Profile, PROFILES};
use flashline::transport::tcp::TcpTransport;

const MIB: u64 = 1024 * 1024;

/// What a device's own dump says, checked against what the driver read.
struct Expected {
    file: &'static str,
    product: Option<&'static str>,
    serial: Option<&'static str>,
    firmware: Option<&'static str>,
    /// Partition sizes in bytes, as the device meant them.
    sizes: &'static [(&'static str, u64)],
    /// Partitions the device names without a size.
    unknown: &'static [&'static str],
    battery: Battery,
    lock: LockState,
    /// Current slot and slot count.
    slots: Option<(&'static str, u32)>,
}

const fn device(file: &'static str) -> Expected {
    Expected {
        file,
        product: None,
        serial: None,
        firmware: None,
        sizes: &[],
        unknown: &[],
        battery: Battery::Unknown,
        lock: LockState::Unknown,
        slots: None,
    }
}

/// One entry per corpus file; the values are read off each dump by hand.
const CORPUS: &[Expected] = &[
    Expected {
        firmware: Some("1306-5035_X_Boot_MSM8998_LA1.1_N_59-G"),
        sizes: &[
            ("cache", 0x17C0_0000),
            ("userdata", 0xC_B5AF_2000),
            ("system", 0x1_CB60_0000),
        ],
        battery: Battery::SufficientForFlashing,
        lock: LockState::Unlocked,
        ..device("sony-xperia-xz-premium.txt")
    },
    Expected {
        firmware: Some("1299-4841 S1_Boot_MSM8956_LA1.0.1_N_164"),
        sizes: &[("userdata", 0x5_2cc0_0000), ("system", 0x1_d380_0000)],
        // `secure:yes` and no `unlocked` line.
        lock: LockState::Locked,
        ..device("sony-xperia-x.txt")
    },
    Expected {
        firmware: Some("1306-5035_X_Boot_MSM8998_LA2.0_P_104"),
        sizes: &[
            ("system", 0x1_CB60_0000),
            ("splash", 0x20A_4000),
            ("fsc", 0x1000),
        ],
        unknown: &["msadp"],
        battery: Battery::SufficientForFlashing,
        lock: LockState::Unlocked,
        ..device("sony-xperia-xz1.txt")
    },
    Expected {
        firmware: Some("1310-0301_X_Boot_SDM630_LA1.0_O_117"),
        sizes: &[("userdata", 0x5_0000_0000), ("system_a", 0xB500_0000)],
        ..device("sony-xperia-xa2.txt")
    },
    Expected {
        sizes: &[
            ("userdata", 0x36_E4F5_F000),
            ("super", 0x3_6000_0000),
            ("oem_a", 0x6000_0000),
            ("dtbo_b", 0x180_0000),
        ],
        ..device("sony-xperia-10-iii.txt")
    },
    Expected {
        sizes: &[
            ("userdata", 0x5_07BF_BE00),
            ("system_a", 0xC000_0000),
            ("ssd", 0x2000),
        ],
        unknown: &["logfs"],
        battery: Battery::SufficientForFlashing,
        lock: LockState::Locked,
        ..device("nokia-6.1.txt")
    },
    Expected {
        sizes: &[("pad", 0x8_0000), ("secdata", 0x8000)],
        battery: Battery::SufficientForFlashing,
        lock: LockState::Unlocked,
        ..device("samsung-galaxy-tab-s7plus.txt")
    },
    Expected {
        firmware: Some("00265-PAKALA-1"),
        sizes: &[
            ("modem_b", 0x15E0_0000),
            ("recovery_a", 0x640_0000),
            ("soccp_dcd_a", 0x6000),
        ],
        battery: Battery::SufficientForFlashing,
        lock: LockState::Unlocked,
        ..device("qualcomm-pakala-abl.txt")
    },
    Expected {
        sizes: &[("modemst1", 0x80_0000), ("bk51", 0xB_A000)],
        battery: Battery::SufficientForFlashing,
        lock: LockState::Unlocked,
        ..device("xiaomi-sdm-ufs.txt")
    },
    Expected {
        product: Some("sdm845"),
        serial: Some("LMG710ULM785d0fea"),
        sizes: &[
            ("userdata", 0xB_86CF_4000),
            ("system_a", 0x1_1B80_0000),
            ("ALIGN_TO_128K_1", 0x1_A000),
        ],
        battery: Battery::SufficientForFlashing,
        lock: LockState::Unlocked,
        slots: Some(("a", 2)),
        ..device("lg-g7-thinq.txt")
    },
    // Split values: see `split_values_are_read_whole`.
    device("motorola-moto-g5-cedric.txt"),
    Expected {
        sizes: &[
            ("userdata", 0xd_416f_be00),
            ("sgpt", 0x4200),
            ("cache", 0x1b00_0000),
            ("lk", 0x10_0000),
        ],
        battery: Battery::SufficientForFlashing,
        ..device("volla-phone-x.txt")
    },
    Expected {
        sizes: &[
            ("userdata", 0x1a_34ef_8000),
            ("super", 0x2_8000_0000),
            ("sgpt", 0x8000),
        ],
        battery: Battery::SufficientForFlashing,
        ..device("infinix-x6728.txt")
    },
    Expected {
        sizes: &[
            ("userdata", 0x1a_dc0f_8000),
            ("super", 0x2_0c0c_4000),
            ("vbmeta_vendor_b", 0xf3_c000),
        ],
        battery: Battery::SufficientForFlashing,
        ..device("rabbit-r1.txt")
    },
    Expected {
        product: Some("penangf"),
        serial: Some("ZY22GHW7H2"),
        firmware: Some("penangf-b037470-20240724083453-20241114"),
        sizes: &[
            ("userdata", 0x1a_864f_8000),
            ("md_udc", 0x169_a000),
            ("protect2", 0xa5_e000),
            ("pgpt", 0x8000),
        ],
        battery: Battery::SufficientForFlashing,
        lock: LockState::Locked,
        slots: Some(("a", 2)),
        ..device("motorola-moto-g13-penangf.txt")
    },
    Expected {
        product: Some("cheetah"),
        serial: Some("28191FDH300AZK"),
        firmware: Some("cloudripper-15.1-12292122"),
        sizes: &[
            ("userdata", 0x1b_7a61_5000),
            ("super", 0x1_fc80_0000),
            ("vendor_a", 0x2bf9_a000),
            // An empty logical partition really is 0 bytes.
            ("vendor_b", 0),
        ],
        battery: Battery::Percent(68),
        lock: LockState::Unlocked,
        slots: Some(("a", 2)),
        ..device("pixel-7-pro.txt")
    },
    Expected {
        product: Some("rk3229"),
        serial: Some("7b2239270042f8b8"),
        firmware: Some("U-Boot 2017.09-gc277677"),
        sizes: &[("userdata", 0x7ad8_0000), ("boot_a", 0x200_0000)],
        // `battery-soc-ok:no` (and `0mv`): the board says it cannot flash.
        battery: Battery::TooLowForFlashing,
        lock: LockState::Locked,
        slots: Some(("a", 2)),
        ..device("rockchip-rk3229-evb.txt")
    },
    Expected {
        product: Some("jarvis"),
        firmware: Some("01.01.250529.170449"),
        sizes: &[("userdata", 0x5_75a0_0000), ("super", 0x1_8000_0000)],
        // Named by `is_logical:` only.
        unknown: &["data", "system_a", "vendor_b", "odm_b"],
        lock: LockState::Locked,
        slots: Some(("b", 2)),
        ..device("onn-4k-pro.txt")
    },
    Expected {
        product: Some("smi"),
        firmware: Some("0x2025"),
        lock: LockState::Locked,
        ..device("motorola-razr-i.txt")
    },
    Expected {
        product: Some("gta4l"),
        serial: Some("R9ZR502N5LJ"),
        firmware: Some("T505XXS8CXG1"),
        sizes: &[
            ("userdata", 0x5_77C7_BE00),
            ("super", 0x1_5700_0000),
            ("system", 0x5F4C_9000),
        ],
        battery: Battery::Percent(100),
        lock: LockState::Unlocked,
        ..device("samsung-galaxy-tab-a7-fastbootd.txt")
    },
    Expected {
        unknown: &[
            "boot_b",
            "init_boot_b",
            "sda",
            "vbmeta_system_b",
            "xbl_config_a",
        ],
        ..device("xperia-1-v-fastbootd.txt")
    },
    // One phone twice: MediaTek LK prints `383aff8000`, its fastbootd `0x383AFF8000`.
    Expected {
        product: Some("k6895v1_64"),
        firmware: Some("k6895v1_64_fbb6716_202211021427"),
        sizes: &[
            ("userdata", 0x38_3aff_8000),
            ("super", 0x2_e000_0000),
            ("lk_a", 0x50_0000),
        ],
        lock: LockState::Unlocked,
        slots: Some(("a", 2)),
        ..device("oneplus-ace-racing-lk.txt")
    },
    Expected {
        product: Some("ossi"),
        sizes: &[
            ("userdata", 0x38_3aff_8000),
            ("super", 0x2_e000_0000),
            ("vendor_a", 0x43EA_1000),
            ("vendor_b", 0),
        ],
        unknown: &["persist", "sda", "sdb", "sdc"],
        lock: LockState::Unlocked,
        slots: Some(("a", 2)),
        ..device("oneplus-ace-racing-fastbootd.txt")
    },
];

fn identify(address: &str, quirks: Quirks) -> DeviceInfo {
    let transport = TcpTransport::connect(address, Duration::from_secs(5)).unwrap();
    let mut driver = FastbootDriver::new(transport, quirks, true);
    driver.identify().unwrap()
}

/// Every `partition-size:NAME` the dump lists, read independently of flashline's parser.
fn listed_sizes(file: &str) -> BTreeSet<String> {
    std::fs::read_to_string(corpus_dir().join(file))
        .unwrap()
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("(bootloader) partition-size:"))
        .filter_map(|rest| rest.split_once(':').map(|(name, _)| name.to_string()))
        .collect()
}

#[test]
fn every_corpus_device_is_read_as_it_meant() {
    let files: BTreeSet<String> = corpus_files().into_iter().collect();
    let covered: BTreeSet<String> = CORPUS.iter().map(|e| e.file.to_string()).collect();
    assert_eq!(files, covered, "every corpus file has its expectations");
    assert!(files.len() >= 20);
    for expected in CORPUS {
        let file = expected.file;
        let dir = tempfile::tempdir().unwrap();
        let phone = replay_phone(file, dir.path());
        let info = identify(&phone.device_address(), Quirks::builtin());
        assert_eq!(info.product.as_deref(), expected.product, "{file}: product");
        if expected.serial.is_some() || file.starts_with("oneplus") {
            // The OnePlus serials were blanked out in Chinese: nothing printable is left.
            assert_eq!(info.serial.as_deref(), expected.serial, "{file}: serial");
        }
        assert_eq!(
            info.firmware_version_raw.as_deref(),
            expected.firmware,
            "{file}: version-bootloader"
        );
        for (name, size) in expected.sizes {
            assert_eq!(
                info.partitions.get(*name),
                Some(size),
                "{file}: size of {name}"
            );
        }
        for name in expected.unknown {
            assert!(
                info.partitions_size_unknown.contains(*name),
                "{file}: {name} should be listed with its size unknown"
            );
        }
        // No partition is dropped: each listed size is read or kept as unknown.
        for name in listed_sizes(file) {
            assert!(
                info.partitions.contains_key(&name) || info.partitions_size_unknown.contains(&name),
                "{file}: partition {name} was dropped"
            );
        }
        assert_eq!(info.battery, expected.battery, "{file}: battery");
        assert_eq!(info.lock, expected.lock, "{file}: lock state");
        let slots = info.slots.as_ref().map(|s| (s.current.as_str(), s.count));
        assert_eq!(slots, expected.slots, "{file}: slots");
        // The replay phone holds a partition (a sparse file) of every listed size.
        for (name, size) in expected.sizes.iter().filter(|(_, size)| *size > 0) {
            let meta = std::fs::metadata(dir.path().join(format!("{name}.img"))).unwrap();
            assert_eq!(meta.len(), *size, "{file}: partition file {name}");
        }
    }
}

#[test]
fn a_corpus_dump_holds_at_least_twenty_devices_across_the_families() {
    let sources = std::fs::read_to_string(corpus_dir().join("SOURCES.md")).unwrap();
    for file in corpus_files() {
        assert!(
            sources.contains(&format!("| {file} |")),
            "{file} has no source line"
        );
    }
    for family in [
        "Qualcomm ABL",
        "Qualcomm LK",
        "MediaTek LK",
        "Pixel",
        "U-Boot",
        "fastbootd",
    ] {
        assert!(sources.contains(family), "no {family} device in the corpus");
    }
}

#[test]
fn split_values_are_read_whole() {
    // Motorola splits long values over `name[0]`, `name[1]`; the cedric dump splits its
    // baseband version. Reading that variable as the firmware version shows it joined.
    let quirks = Quirks::parse(
        "[fastboot]\n\
         firmware_version = { var = \"version-baseband\" }\n\
         security_version = { var = \"security-version\" }\n\
         battery_percent = { var = \"battery-soc\" }\n",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let phone = replay_phone("motorola-moto-g5-cedric.txt", dir.path());
    let info = identify(&phone.device_address(), quirks);
    assert_eq!(
        info.firmware_version_raw.as_deref(),
        Some("M8937_8000.122.02.40R CEDRIC_LATAMDSDS_CUST")
    );
    // A single getvar of a split variable is answered whole by the replay phone.
    let mut client = flashline::protocol::fastboot::client::Client::new(
        TcpTransport::connect(&phone.device_address(), Duration::from_secs(5)).unwrap(),
    );
    assert_eq!(
        client.getvar("ro.build.fingerprint").unwrap().as_deref(),
        Some("motorola/cedric/cedric:7.0/NPP25.137-15/13:user/release-keys")
    );
    assert_eq!(client.getvar("version-bootloader").unwrap(), None);
}

#[test]
fn googles_fastboot_sees_the_replayed_device_as_it_was() {
    let Some(fastboot) = common::peer("fastboot") else {
        return;
    };
    let file = "motorola-moto-g13-penangf.txt";
    let dir = tempfile::tempdir().unwrap();
    let phone = replay_phone(file, dir.path());
    let out = run(&fastboot, &phone.device_address(), &["getvar", "all"]);
    let printed: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("(bootloader) "))
        .collect();
    let dump = std::fs::read_to_string(corpus_dir().join(file)).unwrap();
    let recorded: Vec<&str> = dump
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("(bootloader) "))
        .collect();
    assert_eq!(printed, recorded, "Google's client printed:\n{out}");
    assert!(out.contains("all: Done!!"), "{out}");
    let out = run(
        &fastboot,
        &phone.device_address(),
        &["getvar", "partition-size:userdata"],
    );
    assert!(out.contains("partition-size:userdata: 1a864f8000"), "{out}");

    // Every profile's wording is one Google's client takes too.
    for profile in PROFILES {
        let dir = tempfile::tempdir().unwrap();
        let cfg = PhoneConfig {
            partitions: vec![("boot".into(), 4 * MIB)],
            profile: Some(profile),
            ..PhoneConfig::default()
        };
        let phone = PhoneSim::start("127.0.0.1:0".parse().unwrap(), dir.path(), cfg).unwrap();
        let out = run(&fastboot, &phone.device_address(), &["getvar", "all"]);
        assert!(
            out.contains("(bootloader) partition-size:boot"),
            "{profile}: {out}"
        );
    }
}

/// Runs Google's client and returns what it printed (it prints variables on stderr).
fn run(fastboot: &Path, address: &str, args: &[&str]) -> String {
    let out = Command::new(fastboot)
        .arg("-s")
        .arg(address)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout)
}

#[test]
fn each_profile_is_read_the_same_by_flashline() {
    for profile in PROFILES {
        let dir = tempfile::tempdir().unwrap();
        let cfg = PhoneConfig {
            partitions: vec![("boot".into(), 4 * MIB), ("system".into(), 8 * MIB)],
            slots: true,
            firmware_version: "moto-msm8937-C0.15-2024-with-a-very-long-tail".into(),
            profile: Some(profile),
            locked: profile == Profile::MtkLk,
            ..PhoneConfig::default()
        };
        let phone = PhoneSim::start("127.0.0.1:0".parse().unwrap(), dir.path(), cfg).unwrap();
        let info = identify(&phone.device_address(), Quirks::builtin());
        assert_eq!(info.partitions.get("boot_a"), Some(&(4 * MIB)), "{profile}");
        assert_eq!(
            info.partitions.get("system_b"),
            Some(&(8 * MIB)),
            "{profile}"
        );
        assert!(info.partitions_size_unknown.is_empty(), "{profile}");
        assert_eq!(
            info.firmware_version_raw.as_deref(),
            Some("moto-msm8937-C0.15-2024-with-a-very-long-tail"),
            "{profile}"
        );
        let battery = match profile {
            Profile::Pixel => Battery::Percent(80),
            Profile::Uboot | Profile::Fastbootd => Battery::Unknown,
            _ => Battery::SufficientForFlashing,
        };
        assert_eq!(info.battery, battery, "{profile}");
        let lock = if profile == Profile::MtkLk {
            LockState::Locked
        } else {
            LockState::Unlocked
        };
        assert_eq!(info.lock, lock, "{profile}");
        assert_eq!(
            info.slots.map(|s| s.current),
            Some("a".to_string()),
            "{profile}"
        );
    }
}

#[test]
fn a_failed_or_garbled_getvar_all_falls_back_to_single_getvars() {
    // The Pixel answers `getvar:all` once with FAIL, once with garbage; the driver drops what
    // it got, waits for the device to settle, and asks for each fact on its own over the
    // same session.
    for fault in ["fail@getvar:all#1", "garbage@getvar:all#1"] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = PhoneConfig {
            faults: vec![fault.parse().unwrap()].into(),
            ..common::replay::replay_config("pixel-7-pro.txt")
        };
        let phone = PhoneSim::start("127.0.0.1:0".parse().unwrap(), dir.path(), cfg).unwrap();
        let info = identify(&phone.device_address(), Quirks::builtin());
        assert_eq!(phone.faults_fired(), [fault]);
        assert_eq!(info.product.as_deref(), Some("cheetah"), "{fault}");
        assert_eq!(
            info.firmware_version_raw.as_deref(),
            Some("cloudripper-15.1-12292122"),
            "{fault}"
        );
        assert_eq!(info.battery, Battery::Percent(68), "{fault}");
        assert_eq!(info.lock, LockState::Unlocked, "{fault}");
        assert_eq!(
            info.slots.map(|s| (s.current, s.count)),
            Some(("a".into(), 2)),
            "{fault}"
        );
        let commands = phone.commands();
        assert_eq!(commands[0], "getvar:all");
        assert!(
            commands.contains(&"getvar:product".to_string()),
            "{commands:?}"
        );
    }
}

/// Kills the command-line phone when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn flashline_info_shows_the_lock_state_and_partitions_of_unknown_size() {
    use std::io::BufRead;
    let bin = env!("CARGO_BIN_EXE_flashline");
    let dir = tempfile::tempdir().unwrap();
    let transcript = corpus_dir().join("xperia-1-v-fastbootd.txt");
    let mut sim = Child(
        Command::new(bin)
            .args(["sim", "phone", "--listen", "127.0.0.1:0", "--dir"])
            .arg(dir.path().join("phone"))
            .arg("--replay")
            .arg(&transcript)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut address = String::new();
    std::io::BufReader::new(sim.0.stdout.take().unwrap())
        .read_line(&mut address)
        .unwrap();
    let address = address.trim();
    assert!(address.starts_with("tcp:127.0.0.1:"), "{address}");
    let info = |json: bool| {
        let out = Command::new(bin)
            .arg("info")
            .arg(address)
            .args(json.then_some("--json"))
            .env("FLASHLINE_HOME", dir.path().join("home"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let text = info(false);
    assert!(text.contains("bootloader        not reported"), "{text}");
    assert!(
        text.contains("partition         sda            size unknown"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&info(true)).unwrap();
    assert_eq!(json["lock"], "unknown");
    assert_eq!(
        json["partitions_size_unknown"].as_array().unwrap().len(),
        33
    );
    assert!(json["partitions_size_unknown"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("init_boot_b")));

    // A locked device says so.
    let dir = tempfile::tempdir().unwrap();
    let phone = replay_phone("motorola-moto-g13-penangf.txt", dir.path());
    let out = Command::new(bin)
        .arg("info")
        .arg(phone.device_address())
        .env("FLASHLINE_HOME", dir.path().join("home"))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("bootloader        locked (refuses flash and erase"),
        "{text}"
    );
    assert!(
        text.contains("partition         userdata       113922506752 bytes"),
        "{text}"
    );
}

#[test]
fn the_lock_state_follows_unlocked_then_critical_unlock_then_secure() {
    // Made-up listings, one rule each (the corpus covers the real spellings).
    let cases = [
        (
            "unlocked:no\ncritical-unlocked:yes\nsecure:no",
            LockState::Locked,
        ),
        ("unlocked: yes\nsecure:yes", LockState::Unlocked),
        ("critical-unlocked:yes\nsecure:yes", LockState::Unlocked),
        ("unlock_critical:1\nsecure:yes", LockState::Unlocked),
        ("critical-unlocked:no\nsecure:yes", LockState::Locked),
        ("secure:no", LockState::Unknown),
        ("unlocked:\nsecure:", LockState::Unknown),
    ];
    for (listing, lock) in cases {
        let text: String = listing
            .lines()
            .map(|l| format!("(bootloader) {l}\n"))
            .collect();
        let transcript = flashline::sim::phone::Transcript::parse(&text).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let phone = PhoneSim::start(
            "127.0.0.1:0".parse().unwrap(),
            dir.path(),
            PhoneConfig::replaying(transcript),
        )
        .unwrap();
        let info = identify(&phone.device_address(), Quirks::builtin());
        assert_eq!(info.lock, lock, "{listing:?}");
    }
}

/// An image of one repeated byte, streamed, never held in memory.
struct Pattern {
    len: u64,
    byte: u8,
}

struct Unchecked<R>(R);

impl<R: std::io::Read> std::io::Read for Unchecked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: std::io::Read + Send> flashline::device::SendReader for Unchecked<R> {
    fn verify(self: Box<Self>) -> Result<(), String> {
        Ok(())
    }
}

impl flashline::device::ImageSource for Pattern {
    fn len(&self) -> u64 {
        self.len
    }
    fn is_sparse(&self) -> bool {
        false
    }
    fn plan_reader(&self) -> std::io::Result<Box<dyn std::io::Read + Send + '_>> {
        Ok(Box::new(std::io::Read::take(
            std::io::repeat(self.byte),
            self.len,
        )))
    }
    fn send_reader(&self) -> std::io::Result<Box<dyn flashline::device::SendReader + '_>> {
        Ok(Box::new(Unchecked(std::io::Read::take(
            std::io::repeat(self.byte),
            self.len,
        ))))
    }
}

#[test]
fn an_amlogic_downloadsize_is_the_download_limit() {
    // The onn box lists no `max-download-size`, only U-Boot's older `downloadsize:
    // 0x08000000`. An image 4 KiB larger must go in sparse pieces that fit it: sent whole,
    // the phone (which holds to the same limit) refuses the download.
    let dir = tempfile::tempdir().unwrap();
    // The box said `unlocked: no`; this test is about its download limit only, so its
    // replay is unlocked (a locked replay refuses the write as the box would).
    let cfg = PhoneConfig {
        locked: false,
        ..common::replay::replay_config("onn-4k-pro.txt")
    };
    let phone = PhoneSim::start("127.0.0.1:0".parse().unwrap(), dir.path(), cfg).unwrap();
    let transport = TcpTransport::connect(&phone.device_address(), Duration::from_secs(5)).unwrap();
    let mut driver = FastbootDriver::new(transport, Quirks::builtin(), true);
    driver.identify().unwrap();
    let image = Pattern {
        len: 0x0800_0000 + 4096,
        byte: 0xA5,
    };
    let target = flashline::device::Target::Partition {
        name: "super".into(),
    };
    driver.write_image(&target, &image, &mut |_| {}).unwrap();
    let downloads: Vec<u32> = phone
        .commands()
        .iter()
        .filter_map(|c| c.strip_prefix("download:"))
        .map(|hex| u32::from_str_radix(hex, 16).unwrap())
        .collect();
    assert!(!downloads.is_empty());
    assert!(downloads.iter().all(|n| *n <= 0x0800_0000), "{downloads:?}");
    let mut head = [0u8; 4096];
    let mut tail = [0u8; 4096];
    let mut file = std::fs::File::open(dir.path().join("super.img")).unwrap();
    std::io::Read::read_exact(&mut file, &mut head).unwrap();
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0x0800_0000)).unwrap();
    std::io::Read::read_exact(&mut file, &mut tail).unwrap();
    assert!(head.iter().chain(&tail).all(|b| *b == 0xA5));
}
