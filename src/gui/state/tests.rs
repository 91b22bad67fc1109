use std::time::{Duration, Instant};

use super::{bytes, AppState, Badge, Intent, JobView, Msg, PackageCard, PackageState, Settings};
use crate::device::discovery::Found;
use crate::device::Mode;
use crate::engine::{Check, Event, Outcome, PlannedWrite, Stage, Status};

fn found(address: &str, mode: Mode, serial: &str) -> Found {
    Found {
        address: address.into(),
        mode,
        vid: Some(0x19d2),
        pid: Some(0x1403),
        product: Some("MF833V".into()),
        serial: Some(serial.into()),
        known_as: None,
        is_virtual: true,
        interface: None,
        port_path: None,
    }
}

fn state() -> AppState {
    AppState::new(Settings::default(), Vec::new())
}

/// A verified package that names no target and writes nothing.
fn ready_card() -> PackageState {
    PackageState::Ready(PackageCard {
        path: "p".into(),
        name: "n".into(),
        version: "1.0.0".into(),
        security_version: 1,
        min_battery_percent: 30,
        description: None,
        targets: vec![],
        writes: vec![],
        qualcomm: false,
        zxic: false,
        unisoc: false,
        signature: String::new(),
    })
}

#[test]
fn a_device_keeps_its_row_across_re_enumeration() {
    let mut s = state();
    let now = Instant::now();
    s.apply(
        Msg::Devices(vec![found("serial:/dev/pts/3", Mode::Modem, "S1")]),
        now,
    );
    s.devices[0].job = Some(JobView::new());
    s.apply(Msg::Devices(vec![]), now);
    assert_eq!(s.devices.len(), 1, "a busy device stays while it is away");
    assert_eq!(s.devices[0].badge(), Badge::Flashing);
    s.apply(
        Msg::Devices(vec![found("serial:/dev/pts/9", Mode::Edl, "S1")]),
        now,
    );
    assert_eq!(s.devices[0].address, "serial:/dev/pts/9");
    assert_eq!(s.devices[0].mode, Mode::Edl);
    s.devices[0].job = None;
    s.apply(Msg::Devices(vec![]), now);
    assert!(s.devices.is_empty(), "an idle device that left is removed");
}

#[test]
fn progress_rate_and_eta_come_from_events() {
    let mut s = state();
    let t0 = Instant::now();
    s.apply(Msg::Devices(vec![found("a", Mode::Fastboot, "S")]), t0);
    s.devices[0].job = Some(JobView::new());
    let ev = |event| Msg::Job {
        key: "S".into(),
        event,
    };
    s.apply(
        ev(Event::PlanReady {
            writes: vec![],
            activate_slot: None,
            total_bytes: 4000,
        }),
        t0,
    );
    s.apply(
        ev(Event::Stage {
            stage: Stage::Flash,
        }),
        t0,
    );
    s.apply(
        ev(Event::ImageStarted {
            index: 0,
            count: 2,
            target: "boot_b".into(),
            bytes: 2000,
        }),
        t0,
    );
    s.apply(
        ev(Event::Progress {
            index: 0,
            done: 1000,
            total: 2000,
        }),
        t0,
    );
    let job = s.devices[0].job.as_ref().unwrap();
    let later = t0 + Duration::from_secs(1);
    assert_eq!(job.stage_text(), "image 1 of 2: boot_b");
    assert_eq!(job.fraction(), 0.25);
    assert_eq!(job.rate(later), Some(1000.0));
    assert_eq!(job.eta(later), Some(Duration::from_secs(3)));
    let follow = s.apply(
        ev(Event::Finished {
            outcome: Outcome::Cancelled,
            error: Some("cancelled by the user".into()),
            report: Some("/r.json".into()),
        }),
        later,
    );
    assert_eq!(s.devices[0].badge(), Badge::Cancelled);
    assert_eq!(
        follow,
        vec![Intent::ReadReport {
            key: "S".into(),
            path: "/r.json".into()
        }]
    );
}

#[test]
fn the_flash_button_says_why_it_is_disabled() {
    let mut s = state();
    assert_eq!(s.flash_targets().unwrap_err(), "Open a package first.");
    s.package = PackageState::Refused {
        path: "p".into(),
        card: None,
        reason: "unknown key".into(),
    };
    assert!(s.flash_targets().unwrap_err().contains("unknown key"));
    s.package = ready_card();
    s.apply(
        Msg::Devices(vec![found("a", Mode::Fastboot, "S")]),
        Instant::now(),
    );
    s.select("S", true);
    assert_eq!(s.pending_checks().len(), 1);
    assert!(s.pending_checks().is_empty(), "a check runs once");
    s.apply(
        Msg::Check {
            key: "S".into(),
            generation: 0,
            event: Event::Preflight {
                checks: vec![Check {
                    name: "battery".into(),
                    status: Status::Refuse,
                    actual: "10 %".into(),
                    required: "≥ 30 %".into(),
                    message: "charge it".into(),
                    relaxed_by: None,
                }],
            },
        },
        Instant::now(),
    );
    s.apply(
        Msg::Check {
            key: "S".into(),
            generation: 0,
            event: Event::Finished {
                outcome: Outcome::PreflightRefused,
                error: Some("refused before writing anything: charge it".into()),
                report: None,
            },
        },
        Instant::now(),
    );
    s.apply(
        Msg::Check {
            key: "S".into(),
            generation: 7,
            event: Event::Preflight { checks: vec![] },
        },
        Instant::now(),
    );
    assert!(s.flash_targets().unwrap_err().contains("charge it"));
    assert_eq!(
        s.devices[0].badge(),
        Badge::Refused,
        "a stale check is ignored"
    );
}

#[test]
fn the_confirmation_says_which_partitions_are_written_live() {
    let mut s = state();
    s.package = ready_card();
    s.apply(
        Msg::Devices(vec![found("a", Mode::Fastboot, "S")]),
        Instant::now(),
    );
    s.select("S", true);
    assert_eq!(s.pending_checks().len(), 1);
    let write = |partition: &str, target: &str, live| PlannedWrite {
        partition: partition.into(),
        target: target.into(),
        live,
        bytes: 4096,
        sparse: false,
    };
    for event in [
        Event::Preflight { checks: vec![] },
        Event::PlanReady {
            writes: vec![
                write("boot", "boot_b", false),
                write("persist", "persist", true),
            ],
            activate_slot: Some("b".into()),
            total_bytes: 8192,
        },
        Event::Finished {
            outcome: Outcome::DryRun,
            error: None,
            report: None,
        },
    ] {
        s.apply(
            Msg::Check {
                key: "S".into(),
                generation: 0,
                event,
            },
            Instant::now(),
        );
    }
    s.request_flash();
    let lines = &s
        .confirm
        .as_ref()
        .expect("the confirmation is open")
        .devices[0]
        .2;
    assert_eq!(lines[0], "boot to boot_b (4.0 KiB)");
    assert!(
        lines[1].starts_with("persist to persist (4.0 KiB), written live"),
        "{lines:?}"
    );
    assert!(
        lines[2].contains("old, intact slot, except for the partitions written live"),
        "{lines:?}"
    );
    assert!(
        lines[3].contains("persist has no slots and is written live"),
        "{lines:?}"
    );
}

#[test]
fn sizes_read_well() {
    assert_eq!(bytes(512), "512 B");
    assert_eq!(bytes(8 * 1024 * 1024), "8.0 MiB");
}
