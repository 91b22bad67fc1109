//! The virtual USB lab as a cargo test: runs `tests/usb-lab/run`, which boots a Linux guest
//! under QEMU where flashline's USB gadgets and its real USB host code (libusb, cdc-acm)
//! meet on a virtual bus, and checks that every scenario passed.
//!
//! Skipped without `qemu-system-x86_64`; with `FLASHLINE_REQUIRE_PEERS` set (CI, after
//! `.ci/run` installs the lab's packages) a missing QEMU fails instead. One guest boot runs
//! every scenario; the whole run takes a few minutes, most of it the static build.

mod common;

use std::process::Command;

#[test]
fn every_usb_lab_scenario_passes() {
    if common::peer("qemu-system-x86_64").is_none() {
        return;
    }
    let lab = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/usb-lab/run");
    let output = Command::new(lab)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("tests/usb-lab/run starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the USB lab failed ({}):\n{stderr}\n{stdout}",
        output.status
    );
    assert!(stdout.contains("usb-lab: all"), "no summary:\n{stdout}");
    // Each scenario in the folder (00-boot … 10-fastbootd-job) ran in that boot and passed.
    let scenarios = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/usb-lab/scenarios");
    for entry in std::fs::read_dir(scenarios).unwrap() {
        let file = entry.unwrap().file_name().to_string_lossy().into_owned();
        let Some(name) = file.strip_suffix(".sh").filter(|n| !n.ends_with(".prep")) else {
            continue;
        };
        assert!(
            stdout.contains(&format!("  {name} PASS")),
            "scenario {name} did not pass:\n{stdout}"
        );
    }
}
