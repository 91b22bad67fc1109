//! Strings a device sends (serial number, product, partition labels) never shape a path:
//! reports, backups and the history land inside their folders under cleaned names, whatever
//! a hostile device calls itself.

mod common;

use std::path::{Path, PathBuf};

use flashline::device::{DeviceError, DeviceInfo, Driver, ProgressFn, Target};
use flashline::engine::backup::{self, Wanted};
use flashline::engine::station::StationKey;
use flashline::engine::{self, Outcome};
use flashline::package::TrustStore;
use flashline::sim::phone::{PhoneConfig, PhoneSim};
use sha2::{Digest, Sha256};

const DEMO_KEY: &str = include_str!("../assets/demo-keys/flashline-demo-INSECURE.key");

/// Serial numbers and products a hostile device might report.
fn hostile() -> Vec<String> {
    vec![
        "../../etc/passwd".into(),
        "a/b".into(),
        "..".into(),
        ".".into(),
        "/abs/path".into(),
        "C:\\Windows\\x".into(),
        "x".repeat(300),
        "ctl\u{1b}[2J\u{7}bell\r\nline".into(),
        "del\u{7f}x".into(),
        "   ".into(),
        "%s%n{}".into(),
    ]
}

/// Every file and folder under `root`, relative to it.
fn tree(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(root).unwrap().to_path_buf());
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

/// A file name made only of safe characters, as flashline names its own files.
fn is_clean_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 80
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn package(dir: &Path, product: &str) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("boot.img"), vec![0x42u8; 64 * 1024]).unwrap();
    std::fs::write(
        src.join("manifest.toml"),
        format!(
            "name = \"t\"\nversion = \"2.1.0\"\nsecurity_version = 7\nmin_battery_percent = 30\n\
             [[target]]\nproduct = {}\n[[image]]\npartition = \"boot\"\nfile = \"boot.img\"\n",
            toml::Value::String(product.to_string())
        ),
    )
    .unwrap();
    std::fs::write(dir.join("demo.key"), DEMO_KEY).unwrap();
    let pkg = dir.join("t.flpkg");
    flashline::package::pack(&src.join("manifest.toml"), &dir.join("demo.key"), &pkg).unwrap();
    pkg
}

#[test]
fn reports_and_history_stay_in_their_folders() {
    let mut flashed = 0;
    for evil in hostile() {
        let dir = tempfile::tempdir().unwrap();
        // Deep, so that "../.." from the reports folder still lands inside the temp dir,
        // where the test can see it.
        let work = dir.path().join("a/b/c");
        std::fs::create_dir_all(&work).unwrap();
        // A product with control characters is cleaned by the driver and then fits no
        // package; the job is refused, but its report must still land safely.
        let product = if evil.chars().all(|c| (' '..='~').contains(&c)) && evil.len() <= 64 {
            evil.trim().to_string()
        } else {
            "zte-demo-phone".to_string()
        };
        let product = if product.is_empty() {
            "zte-demo-phone".to_string()
        } else {
            product
        };
        let pkg = package(&dir.path().join("pkg"), &product);
        let phone = PhoneSim::start(
            "127.0.0.1:0".parse().unwrap(),
            &dir.path().join("phone"),
            PhoneConfig {
                serial: evil.clone(),
                product: if product == "zte-demo-phone" {
                    evil.clone()
                } else {
                    product.clone()
                },
                partitions: vec![("boot".into(), 1 << 20)],
                ..PhoneConfig::default()
            },
        )
        .unwrap();
        let req = common::virtual_job(&pkg, TrustStore::demo(), &phone.device_address(), &work);
        let report = engine::run(&req, &mut |_| {});
        phone.stop();
        assert!(
            matches!(report.outcome, Outcome::Success | Outcome::PreflightRefused),
            "{evil:?}: {:?} {:?}",
            report.outcome,
            report.error
        );

        // Nothing outside the work folder but what the test itself made.
        for path in tree(dir.path()) {
            let top = path.components().next().unwrap().as_os_str();
            assert!(
                ["a", "pkg", "phone"].iter().any(|t| top == *t),
                "{evil:?}: unexpected {}",
                path.display()
            );
            if path.starts_with("a") {
                assert!(
                    path.starts_with("a/b/c/reports")
                        || path == Path::new("a/b/c/history.json")
                        || path == Path::new("a/b/c/history.json.lock")
                        || (path.starts_with("a/b/c/journal")
                            && path
                                .file_name()
                                .unwrap()
                                .to_str()
                                .is_some_and(is_clean_name))
                        || work.starts_with(dir.path().join(&path)),
                    "{evil:?}: unexpected {}",
                    path.display()
                );
            }
        }
        let reports: Vec<_> = std::fs::read_dir(work.join("reports"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(reports.len(), 1, "{evil:?}: {reports:?}");
        let name = reports[0].file_name().unwrap().to_str().unwrap();
        assert!(is_clean_name(name), "{evil:?}: report named {name:?}");
        assert!(reports[0].is_file());

        // What the device said is stored cleaned: printable ASCII, capped.
        let device = report.device.as_ref().unwrap();
        for text in [&device.serial, &device.product].into_iter().flatten() {
            assert!(text.len() <= 64, "{text:?}");
            assert!(text.chars().all(|c| (' '..='~').contains(&c)), "{text:?}");
        }
        if report.outcome == Outcome::Success {
            flashed += 1;
            let history = std::fs::read_to_string(work.join("history.json")).unwrap();
            let json: serde_json::Value = serde_json::from_str(&history).unwrap();
            let products = json["products"].as_object().unwrap();
            assert_eq!(products.len(), 1);
            let (product, serials) = products.iter().next().unwrap();
            let serials: Vec<_> = serials.as_object().unwrap().keys().collect();
            assert_eq!(serials.len(), 1);
            for text in [product, serials[0]] {
                assert!(text.chars().all(|c| (' '..='~').contains(&c)), "{text:?}");
            }
        }
    }
    // Every printable name fits its package, so those jobs ran to the end (and wrote history).
    assert_eq!(flashed, 7);
}

/// A device that reads back zeros for any sector range.
struct Zeros;

impl Driver for Zeros {
    fn identify(&mut self) -> Result<DeviceInfo, DeviceError> {
        Err(DeviceError::Unsupported("identify"))
    }

    fn read(
        &mut self,
        target: &Target,
        out: &mut dyn std::io::Write,
        _progress: &mut ProgressFn<'_>,
    ) -> Result<[u8; 32], DeviceError> {
        let Target::Sectors {
            count, sector_size, ..
        } = target
        else {
            return Err(DeviceError::Unsupported("partitions"));
        };
        let bytes = vec![0u8; (*count * u64::from(*sector_size)) as usize];
        out.write_all(&bytes).map_err(DeviceError::ImageRead)?;
        Ok(Sha256::digest(&bytes).into())
    }

    fn reboot(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }
}

#[test]
fn backups_stay_in_their_folder_whatever_the_device_calls_things() {
    for evil in hostile() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("a/b/backups");
        std::fs::create_dir_all(&root).unwrap();
        let wanted = vec![
            Wanted {
                label: evil.clone(),
                target: Target::Sectors {
                    lun: 0,
                    start: 0,
                    count: 2,
                    sector_size: 512,
                },
            },
            Wanted {
                label: "../../../modemst1".into(),
                target: Target::Sectors {
                    lun: 0,
                    start: 2,
                    count: 1,
                    sector_size: 512,
                },
            },
        ];
        let key = StationKey::open_or_create(&dir.path().join("a/station.key")).unwrap();
        let (folder, manifest) = backup::create(
            &root,
            Some(&evil),
            Some(&evil),
            &wanted,
            &key,
            &mut Zeros,
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(
            folder.parent(),
            Some(root.as_path()),
            "{evil:?}: {folder:?}"
        );
        let name = folder.file_name().unwrap().to_str().unwrap();
        assert!(is_clean_name(name), "{evil:?}: folder {name:?}");
        for entry in &manifest.entries {
            assert!(
                is_clean_name(&entry.file),
                "{evil:?}: file {:?}",
                entry.file
            );
            assert!(folder.join(&entry.file).is_file());
        }
        // Only the backup folder exists under the temp dir, besides the path to it.
        for path in tree(dir.path()) {
            assert!(
                path.starts_with("a/b/backups")
                    || path == Path::new("a/station.key")
                    || root.starts_with(dir.path().join(&path)),
                "{evil:?}: unexpected {}",
                path.display()
            );
        }
        // The folder reads back as a valid backup.
        backup::open(&folder, &key).unwrap();
    }
}

/// A device whose USB serial number and product string carry terminal escape sequences (an
/// OSC that retitles the window and rings the bell, a screen clear): `devices`, `info` and
/// `flash` show it without a single ESC or BEL byte.
#[cfg(unix)]
#[test]
fn device_strings_cannot_steer_the_terminal() {
    use common::bench::Bench;
    use common::edl::{edl_config, write_flat_build};
    use flashline::sim::edl::{EdlConfig, EdlSim};

    let bench = Bench::new();
    let src = bench.path("src");
    write_flat_build(&src, "stock", "1.0.12", "MF833V", "", "");
    let pkg = bench.pack_manifest(&src, "stock-1.0.12");
    let sim = EdlSim::start(
        &bench.path("device"),
        EdlConfig {
            serial: "EVIL\x1b]0;x\x07SN".into(),
            product: "QUSB\x1b[2J\x07\u{9b}31m".into(),
            ..edl_config()
        },
        Some(&bench.path("home/bench")),
    )
    .unwrap();
    let address = sim.address().to_string();
    let keys = bench.path("keys");
    let report = bench.path("report.json");
    let runs = [
        vec!["devices"],
        vec!["info", &address],
        vec![
            "flash",
            pkg.to_str().unwrap(),
            "--device",
            &address,
            "--trust",
            keys.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ],
    ];
    for args in runs {
        let out = bench.run(&args);
        let all = [out.stdout.as_slice(), out.stderr.as_slice()].concat();
        let text = String::from_utf8_lossy(&all);
        assert!(out.status.success(), "{args:?}: {text}");
        assert!(
            !all.iter().any(|b| matches!(b, 0x1b | 0x07)) && !text.contains('\u{9b}'),
            "{args:?} printed a control character: {text:?}"
        );
        assert!(
            text.contains("EVIL]0;xSN"),
            "{args:?} shows the serial: {text}"
        );
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(report["outcome"], "success");
    assert_eq!(report["device"]["serial"], "EVIL]0;xSN");
    sim.stop();
}
