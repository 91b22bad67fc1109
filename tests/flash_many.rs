//! One flashline process flashing several virtual phones at once, the virtual phone's link
//! shaper, and `flashline verify` checking every image byte.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use flashline::protocol::fastboot::client::Client;
use flashline::sim::phone::{PhoneConfig, PhoneSim, RunningPhone};
use flashline::transport::tcp::TcpTransport;

const MIB: usize = 1024 * 1024;

fn flashline(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flashline"))
        .args(args)
        .env("FLASHLINE_HOME", home)
        .output()
        .unwrap()
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Random-looking bytes that never form a FILL block.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A key, a package with one `system` image, and a home folder.
struct Bench {
    dir: tempfile::TempDir,
    system: Vec<u8>,
}

impl Bench {
    fn new(system_len: usize) -> Self {
        let bench = Bench {
            dir: tempfile::tempdir().unwrap(),
            system: noise(system_len, 42),
        };
        let keys = bench.path("keys");
        ok(&flashline(
            &bench.path("home"),
            &[
                "key",
                "gen",
                "--name",
                "bench",
                "--out",
                keys.to_str().unwrap(),
            ],
        ));
        let src = bench.path("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("system.img"), &bench.system).unwrap();
        std::fs::write(
            src.join("manifest.toml"),
            "name = \"many\"\nversion = \"3.0.0\"\nsecurity_version = 7\nmin_battery_percent = 30\n\
             [[target]]\nproduct = \"zte-demo-phone\"\n\
             [[image]]\npartition = \"system\"\nfile = \"system.img\"\n",
        )
        .unwrap();
        ok(&flashline(
            &bench.path("home"),
            &[
                "pack",
                src.join("manifest.toml").to_str().unwrap(),
                "--key",
                bench.path("keys/bench.key").to_str().unwrap(),
                "-o",
                bench.package().to_str().unwrap(),
            ],
        ));
        bench
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn package(&self) -> PathBuf {
        self.path("many.flpkg")
    }

    fn phone(&self, name: &str, max_download: u32) -> RunningPhone {
        let cfg = PhoneConfig {
            serial: name.to_uppercase(),
            max_download_size: max_download,
            partitions: vec![
                ("boot".into(), MIB as u64),
                ("system".into(), 4 * MIB as u64),
            ],
            ..PhoneConfig::default()
        };
        PhoneSim::start("127.0.0.1:0".parse().unwrap(), &self.path(name), cfg).unwrap()
    }

    fn flash(&self, devices: &[&str], extra: &[&str]) -> Output {
        let package = self.package();
        let keys = self.path("keys");
        let mut args = vec![
            "flash",
            package.to_str().unwrap(),
            "--trust",
            keys.to_str().unwrap(),
        ];
        for d in devices {
            args.extend(["--device", d]);
        }
        args.extend(extra);
        flashline(&self.path("home"), &args)
    }

    fn assert_stored(&self, phone: &str) {
        let stored = std::fs::read(self.path(phone).join("system.img")).unwrap();
        assert!(
            stored[..self.system.len()] == self.system[..],
            "{phone} does not hold the image"
        );
    }
}

fn events(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON event: {l}: {e}")))
        .collect()
}

#[test]
fn several_devices_are_flashed_at_once_by_one_process() {
    let bench = Bench::new(3 * MIB);
    // One takes the image whole, the other in sparse pieces.
    let whole = bench.phone("whole", 8 * MIB as u32);
    let split = bench.phone("split", MIB as u32);
    let (a, b) = (whole.device_address(), split.device_address());
    let out = bench.flash(&[&a, &b], &["--json"]);
    ok(&out);
    let events = events(&out);
    for device in [&a, &b] {
        let own: Vec<_> = events.iter().filter(|e| e["device"] == **device).collect();
        assert_eq!(own.first().map(|e| &e["event"]), Some(&"stage".into()));
        let last = own.last().unwrap();
        assert_eq!(last["event"], "finished", "{device}");
        assert_eq!(last["outcome"], "success", "{device}");
        assert!(own.iter().any(|e| e["event"] == "image-written"));
    }
    assert!(events.iter().all(|e| e["device"].is_string()));
    bench.assert_stored("whole");
    bench.assert_stored("split");
    let downloads = split
        .commands()
        .iter()
        .filter(|c| c.starts_with("download:"))
        .count();
    assert!(downloads > 1, "the small phone got {downloads} download(s)");
    let reports = std::fs::read_dir(bench.path("home/reports"))
        .unwrap()
        .count();
    assert_eq!(reports, 2);

    // The same for people: a line per milestone, tagged, and a summary.
    let out = bench.flash(&[&a, &b], &["--allow-older"]);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("[{a}] system written")), "{text}");
    assert!(text.contains("2 of 2 devices flashed"), "{text}");
}

#[test]
fn one_unreachable_device_does_not_stop_the_others() {
    let bench = Bench::new(MIB);
    let phone = bench.phone("alive", 8 * MIB as u32);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gone = format!("tcp:127.0.0.1:{port}");
    let out = bench.flash(&[&phone.device_address(), &gone], &["--json"]);
    assert_eq!(out.status.code(), Some(5), "device error exit code");
    let events = events(&out);
    let outcome = |device: &str| {
        events
            .iter()
            .find(|e| e["device"] == device && e["event"] == "finished")
            .map(|e| e["outcome"].clone())
    };
    assert_eq!(outcome(&phone.device_address()), Some("success".into()));
    assert_eq!(outcome(&gone), Some("device-error".into()));
    bench.assert_stored("alive");
}

#[test]
fn several_devices_refuse_a_single_report_path_and_repeats() {
    let bench = Bench::new(MIB);
    let phone = bench.phone("p", 8 * MIB as u32);
    let a = phone.device_address();
    let out = bench.flash(&[&a, "tcp:127.0.0.1:9"], &["--report", "r.json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--report"));
    let out = bench.flash(&[&a, &a], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("given twice"));
    assert!(phone.commands().is_empty(), "nothing reached the phone");
}

#[test]
fn verify_checks_every_image_byte() {
    let bench = Bench::new(MIB);
    let keys = bench.path("keys");
    let verify = |package: &Path| {
        flashline(
            &bench.path("home"),
            &[
                "verify",
                package.to_str().unwrap(),
                "--trust",
                keys.to_str().unwrap(),
            ],
        )
    };
    ok(&verify(&bench.package()));
    // Flip one byte in the middle of the image (the package ends with it).
    let mut bytes = std::fs::read(bench.package()).unwrap();
    let at = bytes.len() - MIB / 2;
    bytes[at] ^= 1;
    let damaged = bench.path("damaged.flpkg");
    std::fs::File::create(&damaged)
        .unwrap()
        .write_all(&bytes)
        .unwrap();
    let out = verify(&damaged);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("REJECTED"));
}

#[test]
fn the_link_rate_and_latency_pace_the_phone() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = PhoneConfig {
        partitions: vec![
            ("boot".into(), MIB as u64),
            ("system".into(), 4 * MIB as u64),
        ],
        link_rate: Some(8_000_000),
        latency: Duration::from_millis(5),
        ..PhoneConfig::default()
    };
    let phone = PhoneSim::start("127.0.0.1:0".parse().unwrap(), dir.path(), cfg).unwrap();
    let transport = TcpTransport::connect(&phone.device_address(), Duration::from_secs(5)).unwrap();
    let mut client = Client::new(transport);

    let started = Instant::now();
    for _ in 0..4 {
        client.getvar("product").unwrap();
    }
    let commands = started.elapsed();
    assert!(commands >= Duration::from_millis(20), "{commands:?}");

    // 2 MB at 8 MB/s: 0.25 s, whatever the loopback could do.
    let data = noise(2_000_000, 7);
    let started = Instant::now();
    client
        .download(data.len() as u32, |w| w.write_all(&data))
        .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert!((0.24..0.6).contains(&seconds), "{seconds} s");
    client.flash("system").unwrap();
    let stored = std::fs::read(dir.path().join("system.img")).unwrap();
    assert!(stored[..data.len()] == data[..]);
}
