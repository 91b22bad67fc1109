//! The connection doctor against fake system states: each problem, built on its own in a
//! temporary folder (sysfs tree, device nodes, rules, logind files, /proc, job reports),
//! gives exactly its finding and fix; a healthy state gives none; and on this machine the
//! command runs and exits 0.

mod common;

use std::process::Command;

use common::bench::{image, Bench};
use flashline::device::quirks::Quirks;
use flashline::doctor::{self, Code, SystemView};
use flashline::sim::fault::{Fault, FaultPlan};
use flashline::sim::phone::{PhoneConfig, PhoneSim};

/// `flashline doctor --json` runs on the real machine, exits 0 and prints findings; a
/// machine without USB (a CI container) is told so rather than failing.
#[test]
fn doctor_runs_on_this_machine() {
    let out = Command::new(env!("CARGO_BIN_EXE_flashline"))
        .args(["doctor", "--json"])
        .env("FLASHLINE_HOME", tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let codes: Vec<&str> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert!(f["what"].as_str().is_some_and(|s| !s.is_empty()));
            assert!(f["fix"].as_str().is_some_and(|s| !s.is_empty()));
            f["code"].as_str().unwrap()
        })
        .collect();
    if cfg!(target_os = "linux") && !std::path::Path::new("/sys/bus/usb").exists() {
        assert!(codes.contains(&"no-usb"), "{codes:?}");
    }
}

/// Jobs that `flashline flash` ran against virtual phones whose link drops once, at the
/// byte offsets given (one phone per job), with the reports they wrote in one folder: the
/// doctor's findings about them.
fn disconnect_findings(drops_after: &[u64]) -> Vec<doctor::Finding> {
    const KIB: usize = 1024;
    let bench = Bench::new();
    let pkg = bench.pack(
        "doctor",
        "2.1.0",
        7,
        "zte-demo-phone",
        &[
            ("boot", &image(64 * KIB, 0, 0)),
            ("system", &image(192 * KIB, 0, 64 * KIB)),
        ],
    );
    for (n, after_bytes) in drops_after.iter().enumerate() {
        let cfg = PhoneConfig {
            partitions: vec![("boot".into(), 1 << 20), ("system".into(), 1 << 20)],
            faults: FaultPlan {
                faults: vec![Fault::Disconnect {
                    after_bytes: *after_bytes,
                }],
            },
            ..PhoneConfig::default()
        };
        let phone = PhoneSim::start(
            "127.0.0.1:0".parse().unwrap(),
            &bench.path(&format!("phone-{n}")),
            cfg,
        )
        .unwrap();
        let report = bench.path(&format!("system/reports/{n}.json"));
        let out = bench.run(&[
            "flash",
            pkg.to_str().unwrap(),
            "--trust",
            bench.path("keys").to_str().unwrap(),
            "--device",
            &phone.device_address(),
            "--report",
            report.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(5), "{out:?}");
    }
    let view = SystemView::under(&bench.path("system"), None);
    doctor::diagnose(&view, &Quirks::builtin())
        .into_iter()
        .filter(|f| matches!(f.code, Code::DisconnectsVary | Code::DisconnectsSameStep))
        .collect()
}

/// End to end: real job reports of a phone that drops while writing `system` each time
/// (at different offsets) blame the device; drops in different images blame the link.
#[test]
fn disconnects_in_real_job_reports_are_classified() {
    let same = disconnect_findings(&[64 * 1024 + 1000, 64 * 1024 + 90_000]);
    assert_eq!(same.len(), 1, "{same:#?}");
    assert_eq!(same[0].code, Code::DisconnectsSameStep);
    assert!(
        same[0].what.contains("FLSIM0001") && same[0].what.contains("each time writing system"),
        "{}",
        same[0].what
    );
    let vary = disconnect_findings(&[1000, 64 * 1024 + 1000]);
    assert_eq!(vary.len(), 1, "{vary:#?}");
    assert_eq!(vary[0].code, Code::DisconnectsVary);
    assert!(
        vary[0].what.contains("writing boot, writing system"),
        "{}",
        vary[0].what
    );
}

#[cfg(target_os = "linux")]
mod fake {
    use std::fs;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
    use std::path::{Path, PathBuf};
    use std::time::{Duration, SystemTime};

    use flashline::device::quirks::Quirks;
    use flashline::doctor::{self, Code, Finding, Severity, SystemView, User};

    const INSTALL: &str = "flashline udev-rules | sudo tee /etc/udev/rules.d/70-flashline.rules >/dev/null && sudo udevadm control --reload && sudo udevadm trigger";
    const REAPPLY: &str = "sudo udevadm control --reload && sudo udevadm trigger";

    /// A fake system: a healthy one to start with, then broken one way per test.
    struct Fake {
        dir: tempfile::TempDir,
        /// The doctor's user: not the owner of the files the test creates, but in their group.
        user: User,
    }

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn set_mode(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn age(path: &Path, by: Duration) {
        let f = fs::File::options().write(true).open(path).unwrap();
        f.set_modified(SystemTime::now() - by).unwrap();
    }

    impl Fake {
        /// A seat session, current rules installed an hour ago, ModemManager running, and
        /// one device in EDL (05c6:9008) on raw USB that udev told ModemManager to ignore.
        fn healthy() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let probe = dir.path().join("probe");
            write(&probe, "");
            let meta = fs::metadata(&probe).unwrap();
            let user = User {
                uid: meta.uid() + 1000,
                gids: vec![meta.gid()],
            };
            let fake = Fake { dir, user };
            let rules = fake.path("etc/udev/rules.d/70-flashline.rules");
            write(&rules, &Quirks::builtin().udev_rules());
            age(&rules, Duration::from_secs(3600));
            write(&fake.path("run/systemd/seats/seat0"), "");
            fake.session("1");
            write(&fake.path("proc/1/comm"), "systemd\n");
            write(&fake.path("proc/812/comm"), "ModemManager\n");
            fake.usb("usb1", "1d6b", "0002", 1, 1);
            fake.usb("1-2", "05c6", "9008", 1, 5);
            fake.interface("1-2:1.0", 0, None, None);
            fake
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.dir.path().join(rel)
        }

        fn session(&self, active: &str) {
            write(
                &self.path("run/systemd/sessions/3"),
                &format!(
                    "# This is private data. Do not parse.\nUID={}\nUSER=tech\nACTIVE={active}\nSEAT=seat0\n",
                    self.user.uid
                ),
            );
        }

        /// A USB device in sysfs, its raw node (mode 0660, the user's group) and its udev
        /// database entry with ModemManager told to keep off.
        fn usb(&self, name: &str, vid: &str, pid: &str, bus: u16, devnum: u16) {
            let dir = format!("sys/bus/usb/devices/{name}");
            let minor = (bus - 1) * 128 + devnum - 1;
            for (file, value) in [
                ("idVendor", vid.to_string()),
                ("idProduct", pid.to_string()),
                ("busnum", bus.to_string()),
                ("devnum", devnum.to_string()),
                ("dev", format!("189:{minor}")),
            ] {
                write(&self.path(&format!("{dir}/{file}")), &format!("{value}\n"));
            }
            let node = self.node(name);
            write(&node, "");
            set_mode(&node, 0o660);
            write(
                &self.path(&format!("run/udev/data/c189:{minor}")),
                "I:1234\nE:ID_MM_DEVICE_IGNORE=1\nG:uaccess\n",
            );
        }

        fn node(&self, name: &str) -> PathBuf {
            let dir = self.path(&format!("sys/bus/usb/devices/{name}"));
            let read = |f: &str| {
                fs::read_to_string(dir.join(f))
                    .unwrap()
                    .trim()
                    .parse::<u16>()
                    .unwrap()
            };
            self.path(&format!(
                "dev/bus/usb/{:03}/{:03}",
                read("busnum"),
                read("devnum")
            ))
        }

        /// An interface, bound to `driver` if given, providing `tty` if given (its node
        /// mode 0660, the user's group).
        fn interface(&self, name: &str, number: u8, driver: Option<&str>, tty: Option<&str>) {
            let dir = self.path(&format!("sys/bus/usb/devices/{name}"));
            write(&dir.join("bInterfaceNumber"), &format!("{number:02x}\n"));
            if let Some(driver) = driver {
                let target = self.path(&format!("sys/bus/usb/drivers/{driver}"));
                fs::create_dir_all(&target).unwrap();
                symlink(target, dir.join("driver")).unwrap();
            }
            if let Some(tty) = tty {
                fs::create_dir_all(dir.join(tty)).unwrap();
                let node = self.path(&format!("dev/{tty}"));
                write(&node, "");
                set_mode(&node, 0o660);
            }
        }

        fn diagnose(&self) -> Vec<Finding> {
            let view = SystemView::under(self.dir.path(), Some(self.user.clone()));
            doctor::diagnose(&view, &Quirks::builtin())
        }

        /// The one finding this state gives.
        fn only(&self) -> Finding {
            let findings = self.diagnose();
            assert_eq!(findings.len(), 1, "{findings:#?}");
            findings.into_iter().next().unwrap()
        }

        /// A job report in the reports folder.
        fn report(
            &self,
            name: &str,
            outcome: &str,
            error: &str,
            serial: &str,
            failed: Option<&str>,
        ) {
            let images: Vec<serde_json::Value> = ["boot", "system", "modem"]
                .iter()
                .map(|p| {
                    let status = if Some(*p) == failed { "failed" } else { "not-started" };
                    serde_json::json!({"partition": p, "target": p, "bytes": 4096, "status": status})
                })
                .collect();
            let report = serde_json::json!({
                "tool": "flashline test",
                "outcome": outcome,
                "error": error,
                "device_address": "usb:1-2",
                "device": {"serial": serial, "address": "usb:1-2"},
                "images": images,
            });
            write(
                &self.path(&format!("reports/{name}.json")),
                &report.to_string(),
            );
        }
    }

    #[test]
    fn a_healthy_system_gives_no_findings() {
        let fake = Fake::healthy();
        assert_eq!(fake.diagnose(), vec![]);
        // A modem on its serial driver with its ports open to the user is healthy too.
        fake.usb("1-3", "19d2", "0016", 1, 6);
        fake.interface("1-3:1.0", 0, Some("option"), Some("ttyUSB0"));
        fake.interface("1-3:1.2", 2, Some("option"), Some("ttyUSB2"));
        // Success reports and a single disconnect make no pattern.
        fake.report("1", "success", "", "ABC", None);
        fake.report(
            "2",
            "device-error",
            "the device disconnected",
            "ABC",
            Some("boot"),
        );
        fake.report(
            "3",
            "device-error",
            "FAIL: partition table doesn't exist",
            "ABC",
            Some("boot"),
        );
        assert_eq!(fake.diagnose(), vec![]);
        assert_eq!(
            doctor::render(&[]),
            "No problems found: the rules, permissions, drivers and reports look right.\n"
        );
    }

    #[test]
    fn missing_rules_are_found_with_the_install_command() {
        let fake = Fake::healthy();
        fs::remove_file(fake.path("etc/udev/rules.d/70-flashline.rules")).unwrap();
        let f = fake.only();
        assert_eq!(
            (f.code, f.severity),
            (Code::UdevRulesMissing, Severity::Problem)
        );
        assert_eq!(f.fix, INSTALL);
        // Packaged rules in /lib count as installed.
        write(
            &fake.path("lib/udev/rules.d/70-flashline.rules"),
            &Quirks::builtin().udev_rules(),
        );
        age(
            &fake.path("lib/udev/rules.d/70-flashline.rules"),
            Duration::from_secs(3600),
        );
        assert_eq!(fake.diagnose(), vec![]);
    }

    #[test]
    fn stale_rules_are_found() {
        let fake = Fake::healthy();
        let rules = fake.path("etc/udev/rules.d/70-flashline.rules");
        let old: String = Quirks::builtin()
            .udev_rules()
            .lines()
            .filter(|l| !l.contains("\"9008\""))
            .map(|l| format!("{l}\n"))
            .collect();
        write(&rules, &old);
        age(&rules, Duration::from_secs(3600));
        let f = fake.only();
        assert_eq!(f.code, Code::UdevRulesStale);
        assert!(f.what.contains("70-flashline.rules"), "{}", f.what);
        assert_eq!(f.fix, INSTALL);
    }

    #[test]
    fn a_device_plugged_in_before_the_rules_needs_them_applied() {
        let fake = Fake::healthy();
        age(&fake.node("1-2"), Duration::from_secs(7200));
        let f = fake.only();
        assert_eq!(f.code, Code::UdevRulesNotApplied);
        assert!(
            f.what.contains("05c6:9008") && f.what.contains("1-2"),
            "{}",
            f.what
        );
        assert_eq!(
            f.fix,
            format!("{REAPPLY}, or unplug the device and plug it in again")
        );
    }

    #[test]
    fn a_system_without_seats_is_found() {
        let fake = Fake::healthy();
        fs::remove_file(fake.path("run/systemd/seats/seat0")).unwrap();
        let f = fake.only();
        assert_eq!((f.code, f.severity), (Code::NoSeat, Severity::Warning));
        assert!(
            f.fix
                .ends_with("sudo udevadm trigger && sudo usermod -aG plugdev $USER"),
            "{}",
            f.fix
        );
        assert!(f.fix.contains("/etc/udev/rules.d/71-flashline-group.rules"));
    }

    #[test]
    fn a_user_without_an_active_seat_session_is_found() {
        let fake = Fake::healthy();
        fake.session("0");
        fs::create_dir_all(fake.path(&format!("run/user/{}", fake.user.uid))).unwrap();
        let f = fake.only();
        assert_eq!(f.code, Code::NoSeatSession);
        assert!(f.what.contains("not at a seat"), "{}", f.what);
        assert!(f.fix.contains("desktop session"), "{}", f.fix);
    }

    #[test]
    fn a_port_of_a_group_the_user_is_not_in_is_found() {
        let mut fake = Fake::healthy();
        fake.usb("1-3", "19d2", "0016", 1, 6);
        fake.interface("1-3:1.0", 0, Some("option"), Some("ttyUSB0"));
        // The user is in none of the files' groups; the raw nodes are open to all.
        let group = fs::metadata(fake.path("dev/ttyUSB0")).unwrap().gid();
        let group = if group == 0 {
            // Running as root: give the tty a group as udev would (dialout).
            std::os::unix::fs::chown(fake.path("dev/ttyUSB0"), None, Some(20)).unwrap();
            20
        } else {
            group
        };
        write(
            &fake.path("etc/group"),
            &format!("root:x:0:\ndialout:x:{group}:\n"),
        );
        fake.user.gids = vec![group + 1];
        set_mode(&fake.node("1-2"), 0o666);
        set_mode(&fake.node("1-3"), 0o666);
        let f = fake.only();
        assert_eq!(f.code, Code::NotInGroup);
        assert!(
            f.what.contains("/dev/ttyUSB0") && f.what.contains("dialout"),
            "{}",
            f.what
        );
        assert_eq!(
            f.fix,
            "sudo usermod -aG dialout $USER, then log out and log in again"
        );
    }

    #[test]
    fn a_node_the_user_cannot_open_is_found() {
        let fake = Fake::healthy();
        set_mode(&fake.node("1-2"), 0o600);
        let f = fake.only();
        assert_eq!(f.code, Code::PermissionDenied);
        assert!(
            f.what.contains("/dev/bus/usb/001/005") && f.what.contains("mode 0600"),
            "{}",
            f.what
        );
        assert_eq!(
            f.fix,
            format!("{REAPPLY}, or unplug and replug the device; if it stays, see which rule sets its mode: udevadm test $(udevadm info -q path -n /dev/bus/usb/001/005)")
        );
        // Root opens everything.
        let view = SystemView::under(
            fake.dir.path(),
            Some(User {
                uid: 0,
                gids: vec![0],
            }),
        );
        assert_eq!(doctor::diagnose(&view, &Quirks::builtin()), vec![]);
    }

    #[test]
    fn modem_manager_not_ignoring_a_download_device_is_found() {
        let fake = Fake::healthy();
        write(&fake.path("run/udev/data/c189:4"), "I:1234\nG:uaccess\n");
        let f = fake.only();
        assert_eq!(f.code, Code::ModemManager);
        assert!(f.what.contains("05c6:9008"), "{}", f.what);
        assert!(
            f.fix
                .ends_with("or, for this session, sudo systemctl stop ModemManager"),
            "{}",
            f.fix
        );
        // Without ModemManager, nothing probes the device.
        fs::remove_dir_all(fake.path("proc/812")).unwrap();
        assert_eq!(fake.diagnose(), vec![]);
    }

    #[test]
    fn modem_manager_falls_back_to_the_rules_without_a_udev_database() {
        let fake = Fake::healthy();
        fs::remove_file(fake.path("run/udev/data/c189:4")).unwrap();
        // The current rules ignore 9008: no finding.
        assert_eq!(fake.diagnose(), vec![]);
        // A hand-made rule without the ignore (in /etc, overriding) gives both findings.
        let rules = fake.path("etc/udev/rules.d/70-flashline.rules");
        write(&rules, "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"05c6\", ATTR{idProduct}==\"9008\", TAG+=\"uaccess\"\n");
        let codes: Vec<Code> = fake.diagnose().iter().map(|f| f.code).collect();
        assert_eq!(codes, vec![Code::UdevRulesStale, Code::ModemManager]);
    }

    #[test]
    fn edl_bound_to_another_driver_is_found_with_the_unbind_command() {
        let fake = Fake::healthy();
        fs::remove_dir_all(fake.path("sys/bus/usb/devices/1-2:1.0")).unwrap();
        fake.interface("1-2:1.0", 0, Some("option"), None);
        let f = fake.only();
        assert_eq!(
            (f.code, f.severity),
            (Code::UnexpectedDriver, Severity::Problem)
        );
        assert!(f.what.contains("option"), "{}", f.what);
        assert_eq!(
            f.fix,
            "unbind it: echo -n 1-2:1.0 | sudo tee /sys/bus/usb/drivers/option/unbind"
        );
    }

    #[test]
    fn edl_as_a_serial_port_is_explained() {
        let fake = Fake::healthy();
        fs::remove_dir_all(fake.path("sys/bus/usb/devices/1-2:1.0")).unwrap();
        fake.interface("1-2:1.0", 0, Some("qcserial"), Some("ttyUSB0"));
        let f = fake.only();
        assert_eq!((f.code, f.severity), (Code::EdlAsSerial, Severity::Info));
        assert!(f.what.contains("/dev/ttyUSB0"), "{}", f.what);
        assert!(
            f.fix
                .contains("flashline recover --device serial:/dev/ttyUSB0"),
            "{}",
            f.fix
        );
        assert!(
            f.fix
                .ends_with("echo -n 1-2:1.0 | sudo tee /sys/bus/usb/drivers/qcserial/unbind"),
            "{}",
            f.fix
        );
    }

    #[test]
    fn a_modem_port_without_a_serial_driver_is_found() {
        let fake = Fake::healthy();
        fake.usb("1-3", "19d2", "0016", 1, 6);
        fake.interface("1-3:1.0", 0, Some("option"), Some("ttyUSB0"));
        fake.interface("1-3:1.2", 2, None, None);
        let f = fake.only();
        assert_eq!(f.code, Code::SerialDriverMissing);
        assert!(
            f.what.contains("1-3:1.2") && f.what.contains("AT port"),
            "{}",
            f.what
        );
        assert_eq!(
            f.fix,
            "load the serial driver and give it this ID: sudo modprobe option && echo 19d2 0016 | sudo tee /sys/bus/usb-serial/drivers/option1/new_id"
        );
    }

    #[test]
    fn a_known_vendor_in_an_unknown_mode_is_found() {
        let fake = Fake::healthy();
        fs::remove_dir_all(fake.path("sys/bus/usb/devices/1-2")).unwrap();
        fs::remove_dir_all(fake.path("sys/bus/usb/devices/1-2:1.0")).unwrap();
        fake.usb("1-4", "19d2", "2000", 1, 7);
        fake.interface("1-4:1.0", 0, Some("usb-storage"), None);
        let f = fake.only();
        assert_eq!(f.code, Code::UnknownMode);
        assert!(
            f.what.contains("19d2:2000") && f.what.contains("usb-storage"),
            "{}",
            f.what
        );
        assert!(
            f.fix
                .contains("sudo apt install usb-modeswitch usb-modeswitch-data"),
            "{}",
            f.fix
        );
    }

    #[test]
    fn no_usb_and_no_device_are_said_plainly() {
        let fake = Fake::healthy();
        fs::remove_dir_all(fake.path("sys/bus/usb/devices/1-2")).unwrap();
        fs::remove_dir_all(fake.path("sys/bus/usb/devices/1-2:1.0")).unwrap();
        let f = fake.only();
        assert_eq!((f.code, f.severity), (Code::NoDevice, Severity::Info));
        fs::remove_dir_all(fake.path("sys/bus/usb")).unwrap();
        let f = fake.only();
        assert_eq!((f.code, f.severity), (Code::NoUsb, Severity::Info));
        assert!(f.what.contains("no USB bus"), "{}", f.what);
    }

    #[test]
    fn disconnects_at_different_steps_blame_the_link() {
        let fake = Fake::healthy();
        fake.report(
            "1",
            "device-error",
            "writing boot: the device disconnected",
            "ABC",
            Some("boot"),
        );
        fake.report(
            "2",
            "device-error",
            "the device disconnected",
            "ABC",
            Some("system"),
        );
        fake.report(
            "3",
            "device-error",
            "the device disconnected",
            "ABC",
            Some("system"),
        );
        fake.report(
            "4",
            "device-error",
            "the device disconnected",
            "XYZ",
            Some("modem"),
        );
        let f = fake.only();
        assert_eq!(f.code, Code::DisconnectsVary);
        assert!(
            f.what.contains("ABC") && f.what.contains("3 jobs"),
            "{}",
            f.what
        );
        assert!(
            f.what.contains("writing boot, writing system"),
            "{}",
            f.what
        );
        assert!(f.fix.contains("no hub"), "{}", f.fix);
    }

    #[test]
    fn disconnects_at_the_same_step_blame_the_device() {
        let fake = Fake::healthy();
        fake.report(
            "1",
            "device-error",
            "the device disconnected",
            "ABC",
            Some("modem"),
        );
        fake.report(
            "2",
            "device-error",
            "The device disconnected",
            "ABC",
            Some("modem"),
        );
        write(&fake.path("reports/broken.json"), "{not json");
        let f = fake.only();
        assert_eq!(f.code, Code::DisconnectsSameStep);
        assert!(
            f.what.contains("2 jobs, each time writing modem"),
            "{}",
            f.what
        );
        assert!(
            f.fix.starts_with("another cable will not help"),
            "{}",
            f.fix
        );
    }

    #[test]
    fn findings_render_for_people_and_as_json() {
        let fake = Fake::healthy();
        fs::remove_file(fake.path("etc/udev/rules.d/70-flashline.rules")).unwrap();
        let findings = fake.diagnose();
        let text = doctor::render(&findings);
        assert!(
            text.starts_with(
                "[problem] udev-rules-missing: flashline's udev rules are not installed"
            ),
            "{text}"
        );
        assert!(text.contains(&format!("\n  fix: {INSTALL}\n")), "{text}");
        let json: serde_json::Value = serde_json::from_str(&doctor::to_json(&findings)).unwrap();
        assert_eq!(json["findings"][0]["code"], "udev-rules-missing");
        assert_eq!(json["findings"][0]["severity"], "problem");
        assert_eq!(json["findings"][0]["fix"], INSTALL);
    }
}
