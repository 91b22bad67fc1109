//! Every real phone of the corpus (tests/data/fastboot, see SOURCES.md) takes a matching
//! package: `flashline flash --dry-run` against a virtual phone replaying the device's own
//! `getvar all` passes, or is refused only for the device's own reasons (a locked
//! bootloader, a battery known to be low), read here from the dump's own lines. A replayed
//! A/B phone (the Pixel) is also flashed for real, end to end.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::bench::{events, Bench};
use common::replay::{corpus_dir, corpus_files, replay_config};
use flashline::sim::phone::{PhoneConfig, PhoneSim, RunningPhone, Transcript};

/// The package's image: small, so every listed partition holds it.
const IMAGE_LEN: usize = 4096;

/// The devices whose own dump says they cannot be flashed, and why, read off each dump by
/// hand: a cross-check of the per-line reading below. Every other device passes.
const REFUSED: &[(&str, &[&str])] = &[
    ("motorola-moto-g13-penangf.txt", &["lock"]),
    ("motorola-razr-i.txt", &["lock"]),
    ("nokia-6.1.txt", &["lock"]),
    ("onn-4k-pro.txt", &["lock"]),
    // `unlocked:no`, and `battery-soc-ok:no` with `battery-voltage:0mv`.
    ("rockchip-rk3229-evb.txt", &["battery", "lock"]),
    // `secure:yes` and no `unlocked` line.
    ("sony-xperia-x.txt", &["lock"]),
];

/// What a dump says, read from its `(bootloader)` lines independently of flashline's parser.
struct Dump {
    /// `name` → value, as listed (first occurrence, blanks trimmed).
    vars: Vec<(String, String)>,
}

impl Dump {
    fn load(file: &str) -> Self {
        let text = std::fs::read_to_string(corpus_dir().join(file)).unwrap();
        let vars = text
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("(bootloader)"))
            .filter_map(|l| l.trim().split_once(':'))
            .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
            .collect();
        Dump { vars }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Partition names from `partition-size:NAME:…` (`sized`) or also from
    /// `is-logical:NAME:…` / `is_logical:NAME:…` lines.
    fn partitions(&self, sized_only: bool) -> BTreeSet<String> {
        self.vars
            .iter()
            .filter(|(n, _)| {
                n == "partition-size" || (!sized_only && (n == "is-logical" || n == "is_logical"))
            })
            .filter_map(|(_, v)| v.split_once(':').map(|(p, _)| p.trim().to_string()))
            .collect()
    }

    /// `unlocked: no` (or, without an `unlocked` line, `secure: yes` and no critical
    /// unlock) is a locked bootloader.
    fn locked(&self) -> bool {
        match self.get("unlocked") {
            Some(v) => v == "no",
            None => self.get("secure") == Some("yes"),
        }
    }

    /// The battery is known to be too low when the bootloader says so.
    fn battery_low(&self) -> bool {
        self.get("battery-soc-ok") == Some("no")
    }

    /// Whether the device runs A/B slots.
    fn slotted(&self) -> bool {
        matches!(self.get("current-slot"), Some("a" | "b" | "_a" | "_b"))
            || self
                .get("slot-count")
                .and_then(|c| c.parse::<u32>().ok())
                .is_some_and(|c| c >= 2)
    }

    /// A partition the package can target: on an A/B device a base name listed as both
    /// `NAME_a` and `NAME_b`, otherwise a name listed without a slot suffix (or as listed,
    /// when the dump has only suffixed names); a familiar one where the dump has it. `None` when the dump lists no partition at all.
    fn partition(&self) -> Option<(String, bool)> {
        for sized_only in [true, false] {
            let listed = self.partitions(sized_only);
            let candidates: Vec<String> = if self.slotted() {
                listed
                    .iter()
                    .filter_map(|p| p.strip_suffix("_a"))
                    .filter(|base| listed.contains(&format!("{base}_b")))
                    .map(str::to_string)
                    .collect()
            } else {
                let plain: Vec<String> = listed
                    .iter()
                    .filter(|p| !p.ends_with("_a") && !p.ends_with("_b"))
                    .cloned()
                    .collect();
                // A partial dump may keep only suffixed names and not its slot lines:
                // the package then names one as listed.
                if plain.is_empty() {
                    listed.into_iter().collect()
                } else {
                    plain
                }
            };
            let familiar = [
                "boot", "recovery", "lk", "dtbo", "system", "cache", "userdata",
            ];
            let pick = familiar
                .iter()
                .find(|f| candidates.iter().any(|c| c == *f))
                .map(|f| f.to_string())
                .or_else(|| candidates.first().cloned());
            if let Some(pick) = pick {
                return Some((pick, sized_only));
            }
        }
        None
    }
}

/// The phone replaying `file`, and the product its package targets. A dump whose post
/// left out `product` (a partial paste: every real bootloader answers it) gets one line
/// `product:<file stem>` added after the device's own lines, so that a matching package
/// exists; nothing else is changed.
fn replay(file: &str, dump: &Dump, dir: &Path) -> (RunningPhone, String) {
    let (cfg, product) = match dump.get("product") {
        Some(product) if !product.is_empty() => (replay_config(file), product.to_string()),
        _ => {
            let product = file.trim_end_matches(".txt").to_string();
            let text = std::fs::read_to_string(corpus_dir().join(file)).unwrap();
            let text = format!("{text}\n(bootloader) product:{product}\n");
            let cfg = PhoneConfig::replaying(Transcript::parse(&text).unwrap());
            (cfg, product)
        }
    };
    let phone = PhoneSim::start("127.0.0.1:0".parse().unwrap(), dir, cfg).unwrap();
    (phone, product)
}

fn checks(report: &serde_json::Value) -> &Vec<serde_json::Value> {
    report["preflight"].as_array().unwrap()
}

fn check<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    checks(report)
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {report:#}"))
}

#[test]
fn every_corpus_device_takes_a_matching_package_or_refuses_for_its_own_reasons() {
    let bench = Bench::new();
    let image = common::bench::image(IMAGE_LEN, 0, 0);
    let files = corpus_files();
    assert!(files.len() >= 20);
    let mut refusals = Vec::new();
    for (n, file) in files.iter().enumerate() {
        let dump = Dump::load(file);
        let dir = bench.path(&format!("phone-{n}"));
        let (phone, product) = replay(file, &dump, &dir);
        let (partition, sized) = dump
            .partition()
            .map_or(("boot".to_string(), false), |(p, sized)| (p, sized));
        let pkg = bench.pack(
            &format!("corpus-{n}"),
            "1.0.0",
            0,
            &product,
            &[(&partition, &image)],
        );
        let (out, report) = bench.flash(&pkg, &phone, &["--dry-run"]);

        // The refusals are exactly the device's own reasons.
        let mut expected = BTreeSet::new();
        if dump.locked() {
            expected.insert("lock");
        }
        if dump.battery_low() {
            expected.insert("battery");
        }
        let refused: BTreeSet<&str> = checks(&report)
            .iter()
            .filter(|c| c["status"] == "refuse")
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(refused, expected, "{file}: {report:#}");
        if !expected.is_empty() {
            refusals.push((
                file.clone(),
                expected.iter().map(|s| s.to_string()).collect(),
            ));
        }
        if expected.is_empty() {
            assert_eq!(report["outcome"], "dry-run", "{file}: {report:#}");
            assert_eq!(out.status.code(), Some(0), "{file}: {report:#}");
            let plan = events(&out)
                .into_iter()
                .find(|e| e["event"] == "plan-ready")
                .unwrap_or_else(|| panic!("{file}: no plan"));
            let target = plan["writes"][0]["target"].as_str().unwrap().to_string();
            if dump.slotted() {
                // The other slot than the one the device runs.
                let current = dump.get("current-slot").unwrap_or("a");
                let other = if current.ends_with('a') { "b" } else { "a" };
                assert_eq!(target, format!("{partition}_{other}"), "{file}");
                assert_eq!(plan["activate_slot"], other, "{file}");
            } else {
                assert_eq!(target, partition, "{file}");
            }
        } else {
            assert_eq!(report["outcome"], "preflight-refused", "{file}: {report:#}");
            assert_eq!(out.status.code(), Some(4), "{file}: {report:#}");
        }
        // Versions that cannot be compared warn; they never need --allow-older.
        assert_ne!(check(&report, "version")["status"], "refuse", "{file}");
        assert!(
            report["overrides"].as_array().unwrap().is_empty(),
            "{file}: {report:#}"
        );
        // Storage: a listed size is checked; a partition listed without a size, or a
        // device that lists no sizes, is a warning that says storage cannot be checked.
        let storage = check(&report, &format!("storage:{partition}"));
        let message = storage["message"].as_str().unwrap();
        if sized {
            assert_eq!(storage["status"], "pass", "{file}: {storage:#}");
        } else {
            assert_eq!(storage["status"], "warn", "{file}: {storage:#}");
            assert!(
                message.contains("storage cannot be checked"),
                "{file}: {message}"
            );
            assert!(
                !message.contains("this package does not fit"),
                "{file}: {message}"
            );
        }
        // Nothing was sent to storage.
        assert!(
            !phone
                .commands()
                .iter()
                .any(|c| c.starts_with("flash:") || c.starts_with("erase:")),
            "{file}: {:?}",
            phone.commands()
        );
        phone.stop();
    }
    let listed: Vec<(String, Vec<String>)> = REFUSED
        .iter()
        .map(|(f, r)| (f.to_string(), r.iter().map(|s| s.to_string()).collect()))
        .collect();
    assert_eq!(refusals, listed);
    assert_eq!(files.len() - refusals.len(), 17, "devices that pass");
}

#[test]
fn a_replayed_pixel_is_flashed_end_to_end_and_switches_slot() {
    let bench = Bench::new();
    let file = "pixel-7-pro.txt";
    let dump = Dump::load(file);
    let dir = bench.path("pixel");
    let (phone, product) = replay(file, &dump, &dir);
    assert_eq!(product, "cheetah");
    let boot = common::bench::image(512 * 1024, 4096, 4096);
    // `persist` has no slots (`has-slot:persist:no`): written live, in place.
    let persist = common::bench::image(8192, 0, 0);
    let pkg = bench.pack(
        "pixel",
        "1.0.0",
        0,
        &product,
        &[("boot", &boot), ("persist", &persist)],
    );
    let (out, report) = bench.flash(&pkg, &phone, &[]);
    assert!(
        out.status.success(),
        "{report:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report["outcome"], "success");
    assert_eq!(report["activated_slot"], "b");
    common::bench::assert_prefix(&dir.join("boot_b.img"), &boot);
    common::bench::assert_prefix(&dir.join("persist.img"), &persist);
    // The untouched slot keeps its (empty) content.
    let boot_a = std::fs::read(dir.join("boot_a.img")).unwrap();
    assert!(boot_a[..boot.len()].iter().all(|b| *b == 0));
    let commands = phone.commands();
    assert!(
        commands.contains(&"set_active:b".to_string()),
        "{commands:?}"
    );
    // The phone now reports the slot it was switched to, as a real one does.
    let mut client = flashline::protocol::fastboot::client::Client::new(
        flashline::transport::tcp::TcpTransport::connect(
            &phone.device_address(),
            std::time::Duration::from_secs(5),
        )
        .unwrap(),
    );
    assert_eq!(client.getvar("current-slot").unwrap().as_deref(), Some("b"));
    let listing = client.getvar_all().unwrap();
    assert!(
        listing.contains(&("current-slot".to_string(), "b".to_string())),
        "{listing:?}"
    );
}

#[test]
fn a_dump_without_product_is_refused_for_that_alone() {
    // The Xperia XA2 post quoted a few lines, without `product`: as replayed, flashline
    // cannot tell whether any package fits it, and says so; nothing else is refused.
    let bench = Bench::new();
    let dir = bench.path("xa2");
    let phone = PhoneSim::start(
        "127.0.0.1:0".parse().unwrap(),
        &dir,
        replay_config("sony-xperia-xa2.txt"),
    )
    .unwrap();
    let image = common::bench::image(IMAGE_LEN, 0, 0);
    let pkg = bench.pack("xa2", "1.0.0", 0, "pioneer", &[("userdata", &image)]);
    let (out, report) = bench.flash(&pkg, &phone, &["--dry-run"]);
    assert_eq!(out.status.code(), Some(4), "{report:#}");
    let refused: Vec<&str> = checks(&report)
        .iter()
        .filter(|c| c["status"] == "refuse")
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(refused, ["product"], "{report:#}");
    assert_eq!(check(&report, "product")["actual"], "not reported");
}

#[test]
fn a_replayed_locked_bootloader_refuses_writes_from_the_command_line() {
    use std::io::BufRead;
    // The moto g13 said `unlocked: no`: `flashline sim phone --replay` refuses an erase
    // as a locked bootloader does.
    let dir = tempfile::tempdir().unwrap();
    let mut sim = std::process::Command::new(env!("CARGO_BIN_EXE_flashline"))
        .args(["sim", "phone", "--listen", "127.0.0.1:0", "--dir"])
        .arg(dir.path())
        .arg("--replay")
        .arg(corpus_dir().join("motorola-moto-g13-penangf.txt"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut address = String::new();
    std::io::BufReader::new(sim.stdout.take().unwrap())
        .read_line(&mut address)
        .unwrap();
    let transport = flashline::transport::tcp::TcpTransport::connect(
        address.trim(),
        std::time::Duration::from_secs(5),
    );
    let result = transport.map(|t| {
        flashline::protocol::fastboot::client::Client::new(t)
            .erase("boot_a", None)
            .map_err(|e| e.to_string())
    });
    sim.kill().unwrap();
    sim.wait().unwrap();
    let error = result.unwrap().unwrap_err();
    assert!(error.contains("not allowed in Lock State"), "{error}");
}
