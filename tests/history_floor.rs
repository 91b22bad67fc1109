//! flashline's history is a downgrade floor (issue 13, item 4): the version a package is
//! compared with is the higher of what the device reports and what flashline last wrote;
//! history is kept per product and serial; its security version never goes down; jobs in
//! several processes lose none of each other's entries; and a damaged history is kept
//! aside and reported, never silently reset.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::bench::{image, Bench};
use flashline::sim::phone::{PhoneConfig, PhoneSim, RunningPhone};

/// One serial for every phone here, as a production run that programmed the same serial into
/// every unit would. (The unprogrammed `0123456789ABCDEF` is read as no serial at all, see
/// `protocol::fastboot::vars::is_placeholder_serial`, and a device without a serial keeps
/// no history.)
const SERIAL: &str = "FLSHARED0001";

/// A phone reporting firmware 1.0.0 and security version 7 whatever is flashed onto it
/// (its images carry no version marker), as a phone whose version report was reset would.
fn phone(bench: &Bench, dir: &str, product: &str, serial: &str) -> RunningPhone {
    let cfg = PhoneConfig {
        product: product.into(),
        serial: serial.into(),
        firmware_version: "1.0.0".into(),
        security_version: 7,
        partitions: vec![("boot".into(), 1024 * 1024)],
        ..PhoneConfig::default()
    };
    PhoneSim::start("127.0.0.1:0".parse().unwrap(), &bench.path(dir), cfg).unwrap()
}

fn package(bench: &Bench, version: &str, security: u64, product: &str) -> std::path::PathBuf {
    let boot = image(64 * 1024, 0, 0);
    bench.pack(
        &format!("stock-{product}"),
        version,
        security,
        product,
        &[("boot", &boot)],
    )
}

fn check<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["preflight"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check: {report:#}"))
}

fn history(bench: &Bench) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(bench.path("home/history.json")).unwrap())
        .unwrap()
}

#[test]
fn the_last_version_written_is_a_floor_over_what_the_device_reports() {
    let bench = Bench::new();
    let phone = phone(&bench, "phone", "zte-demo-phone", SERIAL);
    let (out, report) = bench.flash(&package(&bench, "2.0.0", 9, "zte-demo-phone"), &phone, &[]);
    assert!(out.status.success(), "{report:#}");

    // The device says 1.0.0, so 1.5.0 looks like an upgrade; the history says 2.0.0 was
    // written last, so it is a downgrade.
    let writes = phone.commands().len();
    let (out, report) = bench.flash(&package(&bench, "1.5.0", 9, "zte-demo-phone"), &phone, &[]);
    assert!(!out.status.success());
    assert_eq!(report["outcome"], "preflight-refused", "{report:#}");
    let version = check(&report, "version");
    assert_eq!(version["status"], "refuse");
    assert_eq!(version["actual"], "2.0.0");
    let message = version["message"].as_str().unwrap();
    assert!(message.contains("history"), "{message}");
    assert!(message.contains("reports only 1.0.0"), "{message}");
    assert!(
        !phone.commands()[writes..]
            .iter()
            .any(|c| c.starts_with("flash:") || c.starts_with("download:")),
        "nothing is written: {:?}",
        phone.commands()
    );

    // The same floor holds for the security version: the device reports 7, flashline wrote 9.
    let (_, report) = bench.flash(&package(&bench, "3.0.0", 8, "zte-demo-phone"), &phone, &[]);
    assert_eq!(report["outcome"], "preflight-refused", "{report:#}");
    let security = check(&report, "security-version");
    assert_eq!(security["status"], "refuse");
    assert_eq!(security["actual"], "9");
    // --allow-older relaxes the version only, never the security floor.
    let (_, report) = bench.flash(
        &package(&bench, "1.6.0", 8, "zte-demo-phone"),
        &phone,
        &["--allow-older"],
    );
    assert_eq!(report["outcome"], "preflight-refused", "{report:#}");
    assert_eq!(check(&report, "security-version")["status"], "refuse");
}

#[test]
fn the_security_floor_never_decreases() {
    let bench = Bench::new();
    let phone = phone(&bench, "phone", "zte-demo-phone", SERIAL);
    let (out, report) = bench.flash(&package(&bench, "2.0.0", 9, "zte-demo-phone"), &phone, &[]);
    assert!(out.status.success(), "{report:#}");
    // An older version on purpose, with the same security version: allowed, and recorded as
    // the version last written, but the security floor stays at 9.
    let (out, report) = bench.flash(
        &package(&bench, "1.9.0", 9, "zte-demo-phone"),
        &phone,
        &["--allow-older"],
    );
    assert!(out.status.success(), "{report:#}");
    let entry = &history(&bench)["products"]["zte-demo-phone"][SERIAL];
    assert_eq!(entry["version"], "1.9.0");
    assert_eq!(entry["security_version"], 9);
    let (_, report) = bench.flash(&package(&bench, "2.1.0", 8, "zte-demo-phone"), &phone, &[]);
    assert_eq!(report["outcome"], "preflight-refused", "{report:#}");
    assert_eq!(check(&report, "security-version")["actual"], "9");
}

/// The fast-forward attack's first step is raising the floor. Only a package flashline
/// verified and wrote in full raises it: a dry run, or a job whose write the device
/// refused, of a package claiming security version 99 leaves it where it was.
#[test]
fn only_a_package_flashline_wrote_raises_the_floor() {
    let bench = Bench::new();
    let phone = phone(&bench, "phone", "zte-demo-phone", SERIAL);
    let (out, report) = bench.flash(&package(&bench, "2.0.0", 9, "zte-demo-phone"), &phone, &[]);
    assert!(out.status.success(), "{report:#}");
    let written = history(&bench);

    let high = package(&bench, "9.0.0", 99, "zte-demo-phone");
    let (out, report) = bench.flash(&high, &phone, &["--dry-run"]);
    assert!(out.status.success(), "{report:#}");
    assert_eq!(history(&bench), written, "a dry run raised the floor");

    let cfg = PhoneConfig {
        serial: SERIAL.into(),
        firmware_version: "1.0.0".into(),
        security_version: 7,
        partitions: vec![("boot".into(), 1024 * 1024)],
        faults: vec!["fail@flash:boot#1".parse().unwrap()].into(),
        ..PhoneConfig::default()
    };
    let refusing =
        PhoneSim::start("127.0.0.1:0".parse().unwrap(), &bench.path("phone-2"), cfg).unwrap();
    let (out, report) = bench.flash(&high, &refusing, &[]);
    assert!(!out.status.success(), "{report:#}");
    assert_eq!(report["outcome"], "device-error", "{report:#}");
    assert_eq!(history(&bench), written, "a failed write raised the floor");
}

#[test]
fn two_products_sharing_a_serial_do_not_share_history() {
    let bench = Bench::new();
    let first = phone(&bench, "phone-a", "zte-demo-phone", SERIAL);
    let (out, report) = bench.flash(&package(&bench, "2.0.0", 9, "zte-demo-phone"), &first, &[]);
    assert!(out.status.success(), "{report:#}");
    first.stop();

    // Another model with the same serial: the zte-demo-phone's history is not its
    // floor, so its own 1.0.0 and 7 are compared.
    let other = phone(&bench, "phone-b", "other-phone", SERIAL);
    let (out, report) = bench.flash(&package(&bench, "1.5.0", 8, "other-phone"), &other, &[]);
    assert!(out.status.success(), "{report:#}");
    assert_eq!(check(&report, "version")["actual"], "1.0.0");
    assert_eq!(check(&report, "security-version")["actual"], "7");
    let products = &history(&bench)["products"];
    assert_eq!(products["zte-demo-phone"][SERIAL]["version"], "2.0.0");
    assert_eq!(products["other-phone"][SERIAL]["version"], "1.5.0");
}

#[test]
fn jobs_in_two_processes_at_once_lose_no_history() {
    let bench = Bench::new();
    let pkg = package(&bench, "2.0.0", 9, "zte-demo-phone");
    let phones: Vec<RunningPhone> = (0..4)
        .map(|i| {
            phone(
                &bench,
                &format!("phone-{i}"),
                "zte-demo-phone",
                &format!("SN{i}"),
            )
        })
        .collect();
    let children: Vec<_> = phones
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Command::new(env!("CARGO_BIN_EXE_flashline"))
                .args(["flash", pkg.to_str().unwrap(), "--json", "--device"])
                .arg(p.device_address())
                .arg("--trust")
                .arg(bench.path("keys"))
                .arg("--report")
                .arg(bench.path(&format!("report-{i}.json")))
                .env("FLASHLINE_HOME", bench.path("home"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let serials = &history(&bench)["products"]["zte-demo-phone"];
    for i in 0..4 {
        assert_eq!(serials[format!("SN{i}")]["version"], "2.0.0", "{serials:#}");
    }
}

#[test]
fn a_damaged_history_is_kept_aside_and_reported() {
    let bench = Bench::new();
    let phone = phone(&bench, "phone", "zte-demo-phone", SERIAL);
    let pkg = package(&bench, "2.0.0", 9, "zte-demo-phone");
    let home = bench.path("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join("history.json"), "{\"products\": {\"zte-demo").unwrap();

    let (out, report) = bench.flash(&pkg, &phone, &[]);
    assert!(!out.status.success());
    assert_eq!(report["outcome"], "preflight-refused", "{report:#}");
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("damaged"), "{error}");
    let kept = kept_aside(&home);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(
        error.contains(&kept[0]),
        "the report names where it went: {error}"
    );
    assert_eq!(
        std::fs::read_to_string(home.join(&kept[0])).unwrap(),
        "{\"products\": {\"zte-demo",
        "the damaged file is kept as it was"
    );

    // Run again, knowingly: a new history starts, the damaged one stays.
    let (out, report) = bench.flash(&pkg, &phone, &[]);
    assert!(out.status.success(), "{report:#}");
    assert_eq!(
        history(&bench)["products"]["zte-demo-phone"][SERIAL]["version"],
        "2.0.0"
    );
    assert_eq!(kept_aside(&home).len(), 1);
}

fn kept_aside(home: &Path) -> Vec<String> {
    std::fs::read_dir(home)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("history.json.damaged-"))
        .collect()
}

/// A device that reports an impossible security version (the largest u64, what an erased
/// counter reads as) shows it as such; it is no floor, so flashline's history decides.
#[test]
fn an_impossible_security_version_is_shown_as_such_and_history_decides() {
    let bench = Bench::new();
    let cfg = PhoneConfig {
        serial: SERIAL.into(),
        firmware_version: "1.0.0".into(),
        security_version: u64::MAX,
        partitions: vec![("boot".into(), 1024 * 1024)],
        ..PhoneConfig::default()
    };
    let phone = PhoneSim::start("127.0.0.1:0".parse().unwrap(), &bench.path("phone"), cfg).unwrap();
    let (out, report) = bench.flash(&package(&bench, "2.0.0", 9, "zte-demo-phone"), &phone, &[]);
    assert!(out.status.success(), "{report:#}");
    let security = check(&report, "security-version");
    assert_eq!(security["status"], "warn", "{security:#}");
    assert_eq!(security["actual"], "18446744073709551615 (impossible)");

    let (_, report) = bench.flash(&package(&bench, "3.0.0", 8, "zte-demo-phone"), &phone, &[]);
    assert_eq!(report["outcome"], "preflight-refused", "{report:#}");
    let security = check(&report, "security-version");
    assert_eq!(security["actual"], "9");
    assert!(
        security["message"]
            .as_str()
            .unwrap()
            .contains("is impossible and was ignored"),
        "{security:#}"
    );
}

/// A firmware version that does not parse is shown as the device sent it, never taken as
/// a version: with no history it is a warning; once flashline wrote 2.0.0, history is the
/// floor and 1.5.0 is refused as a downgrade.
#[test]
fn an_unparsable_device_version_is_shown_as_such_and_history_is_the_floor() {
    let bench = Bench::new();
    let raw = "moto-msm8937-C0.15";
    let cfg = PhoneConfig {
        serial: SERIAL.into(),
        firmware_version: raw.into(),
        partitions: vec![("boot".into(), 1024 * 1024)],
        ..PhoneConfig::default()
    };
    let phone = PhoneSim::start("127.0.0.1:0".parse().unwrap(), &bench.path("phone"), cfg).unwrap();
    let (out, report) = bench.flash(&package(&bench, "2.0.0", 9, "zte-demo-phone"), &phone, &[]);
    assert!(out.status.success(), "{report:#}");
    let version = check(&report, "version");
    assert_eq!(version["status"], "warn", "{version:#}");
    assert_eq!(version["actual"], raw, "{version:#}");
    assert!(
        version["message"]
            .as_str()
            .unwrap()
            .contains("cannot be compared"),
        "{version:#}"
    );

    let (_, report) = bench.flash(&package(&bench, "1.5.0", 9, "zte-demo-phone"), &phone, &[]);
    assert_eq!(report["outcome"], "preflight-refused", "{report:#}");
    let version = check(&report, "version");
    assert_eq!(version["status"], "refuse", "{version:#}");
    assert_eq!(
        version["actual"],
        format!("2.0.0 (history; the device reports {raw:?})"),
        "{version:#}"
    );
}

/// Devices in EDL report no version at all: flashline's history is the whole check, and
/// preflight says so.
#[cfg(unix)]
#[test]
fn for_an_edl_device_history_is_the_whole_check() {
    use flashline::sim::edl::EdlSim;

    let bench = Bench::new();
    let flat = |version: &str, security: u64| {
        let src = bench.path(&format!("src-flat-{version}"));
        common::edl::write_flat_build(&src, "stock", version, "MF833V", "", "");
        let manifest = std::fs::read_to_string(src.join("manifest.toml")).unwrap();
        let manifest = manifest.replace(
            "security_version = 3",
            &format!("security_version = {security}"),
        );
        std::fs::write(src.join("manifest.toml"), manifest).unwrap();
        bench.pack_manifest(&src, &format!("flat-{version}"))
    };
    let sim = EdlSim::start(
        &bench.path("device"),
        common::edl::edl_config(),
        Some(&bench.path("home/bench")),
    )
    .unwrap();
    let (out, report) = bench.job("recover", &flat("1.0.12", 5), None, &[]);
    assert!(out.status.success(), "{report:#}");
    let security = check(&report, "security-version");
    assert_eq!(security["status"], "warn", "{security:#}");
    assert!(
        security["message"]
            .as_str()
            .unwrap()
            .contains("history is the whole check"),
        "{security:#}"
    );

    let (_, report) = bench.job("recover", &flat("1.0.13", 4), None, &[]);
    assert_eq!(report["outcome"], "preflight-refused", "{report:#}");
    let security = check(&report, "security-version");
    assert_eq!(security["status"], "refuse", "{security:#}");
    assert_eq!(security["actual"], "5");
    assert!(
        security["message"]
            .as_str()
            .unwrap()
            .contains("history is the whole check"),
        "{security:#}"
    );
    sim.stop();
}
