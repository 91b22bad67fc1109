//! Station mode as a fleet member, against a virtual bench and a fake fleet link: a device
//! is flashed only when its fleet offers it a package, the offer is asked again right
//! before the write (a withdrawn one writes nothing), an outage is shown and flashes
//! nothing, and a package that fails the station's own check is declined.
//!
//! The link is a fake here, so the station's own decisions are tested alone; the real link
//! (hawkBit + TUF + S3) is proven by tests/fleet_two_stations.rs.
#![cfg(unix)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::bench::{assert_prefix, Bench};
use flashline::engine::{Outcome, Report};
use flashline::package::TrustStore;
use flashline::sim::bench::{Arrival, ArrivingBench, VirtualDevice};
use flashline::sim::phone::PhoneConfig;
use flashline::station::fleet::{
    FleetDevice, FleetLink, FleetStatus, Link, LinkState, Offer, Ticket,
};
use flashline::station::{
    runner, BatchReport, Board, SlotStatus, StationConfig, StationEvent, Threshold,
};

const WAIT: Duration = Duration::from_secs(60);

/// What the fake fleet says about one serial.
#[derive(Debug, Clone)]
enum Plan {
    /// No deployment.
    Nothing,
    /// hawkBit cannot be reached.
    Down,
    /// A deployment of `path`; `withdrawn`: cancelled before the write.
    Deploy {
        action: u64,
        path: PathBuf,
        withdrawn: bool,
    },
}

#[derive(Debug, Default)]
struct Calls {
    asked: Vec<String>,
    started: Vec<u64>,
    finished: Vec<(u64, Outcome)>,
    declined: Vec<(u64, String)>,
    withdrawn: Vec<u64>,
    batches: Vec<(String, usize)>,
}

#[derive(Debug, Default)]
struct FakeFleet {
    plans: Mutex<BTreeMap<String, Plan>>,
    calls: Mutex<Calls>,
}

impl FakeFleet {
    fn plan(&self, serial: &str, plan: Plan) {
        self.plans.lock().unwrap().insert(serial.into(), plan);
    }

    fn calls<R>(&self, f: impl FnOnce(&Calls) -> R) -> R {
        f(&self.calls.lock().unwrap())
    }
}

impl FleetLink for FakeFleet {
    fn offer(&self, device: &FleetDevice) -> Offer {
        let serial = device.serial.clone().unwrap_or_default();
        self.calls.lock().unwrap().asked.push(serial.clone());
        let plan = self.plans.lock().unwrap().get(&serial).cloned();
        match plan.unwrap_or(Plan::Nothing) {
            Plan::Nothing => Offer::Nothing {
                why: "no deployment".into(),
                retry: Duration::from_millis(200),
            },
            Plan::Down => Offer::Nothing {
                why: "hawkBit unreachable: connection refused".into(),
                retry: Duration::from_millis(200),
            },
            Plan::Deploy { action, path, .. } => Offer::Deployment {
                ticket: Ticket {
                    target: format!("t-{serial}"),
                    action,
                    package: path.file_name().unwrap().to_string_lossy().into(),
                },
                path,
            },
        }
    }

    fn still_wanted(&self, ticket: &Ticket) -> Result<(), String> {
        let serial = ticket.target.trim_start_matches("t-").to_string();
        let mut plans = self.plans.lock().unwrap();
        if let Some(Plan::Deploy {
            withdrawn: true, ..
        }) = plans.get(&serial)
        {
            // Cancelled: from now on the server offers nothing.
            plans.insert(serial, Plan::Nothing);
            self.calls.lock().unwrap().withdrawn.push(ticket.action);
            return Err(format!("action {} was cancelled", ticket.action));
        }
        Ok(())
    }

    fn started(&self, ticket: &Ticket) {
        self.calls.lock().unwrap().started.push(ticket.action);
    }

    fn finished(&self, ticket: &Ticket, report: &Report, _path: Option<&Path>) {
        self.calls
            .lock()
            .unwrap()
            .finished
            .push((ticket.action, report.outcome));
        let serial = ticket.target.trim_start_matches("t-").to_string();
        self.plans.lock().unwrap().insert(serial, Plan::Nothing);
    }

    fn batch_ended(&self, batch: &str, report: &BatchReport) {
        self.calls
            .lock()
            .unwrap()
            .batches
            .push((batch.to_string(), report.devices.len()));
    }

    fn declined(&self, ticket: &Ticket, why: &str) {
        self.calls
            .lock()
            .unwrap()
            .declined
            .push((ticket.action, why.to_string()));
        let serial = ticket.target.trim_start_matches("t-").to_string();
        self.plans.lock().unwrap().insert(serial, Plan::Nothing);
    }

    fn status(&self) -> FleetStatus {
        FleetStatus {
            station: "bench-1".into(),
            rollouts: Link {
                at: "http://hawkbit.invalid".into(),
                state: LinkState::Up,
                detail: None,
            },
            ..FleetStatus::default()
        }
    }
}

fn boot_image() -> Vec<u8> {
    let mut image = b"FLASHLINE-VERSION=3.0.0\nFLASHLINE-SECURITY=7\n".to_vec();
    image.extend(common::edl::data(200 * 1024, 5));
    image
}

fn phone(serial: &str) -> VirtualDevice {
    VirtualDevice::Phone(PhoneConfig {
        serial: serial.into(),
        partitions: vec![
            ("boot".into(), 4 * 1024 * 1024),
            ("system".into(), 1024 * 1024),
        ],
        ..PhoneConfig::default()
    })
}

fn at(ms: u64, name: &str, device: VirtualDevice) -> Arrival {
    Arrival {
        name: name.into(),
        after: Duration::from_millis(ms),
        device,
    }
}

fn wait(what: &str, events: &Mutex<Vec<StationEvent>>, done: impl Fn(&Board) -> bool) -> Board {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut board = Board::default();
        for e in events.lock().unwrap().iter() {
            board.apply(e);
        }
        if done(&board) {
            return board;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:#?}",
            board.slots
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn slot<'a>(board: &'a Board, serial: &str) -> Option<&'a flashline::station::Slot> {
    board
        .slots
        .values()
        .find(|s| s.serial.as_deref() == Some(serial))
}

fn shows(board: &Board, serial: &str, status: SlotStatus, message: &str) -> bool {
    slot(board, serial).is_some_and(|s| {
        s.status == status && s.message.as_deref().is_some_and(|m| m.contains(message))
    })
}

#[test]
fn only_offered_devices_are_flashed_and_a_withdrawn_offer_writes_nothing() {
    let home = tempfile::tempdir().unwrap();
    std::env::set_var("FLASHLINE_HOME", home.path());
    let bench = Bench::new();
    let package = bench.pack(
        "phone-fleet",
        "3.0.0",
        7,
        "zte-demo-phone",
        &[("boot", &boot_image())],
    );
    // Signed by a key this station does not trust.
    let stranger = Bench::new();
    let untrusted = stranger.pack(
        "phone-fleet",
        "3.0.1",
        7,
        "zte-demo-phone",
        &[("boot", &boot_image())],
    );
    let fleet = Arc::new(FakeFleet::default());
    let deploy = |action, path: &PathBuf, withdrawn| Plan::Deploy {
        action,
        path: path.clone(),
        withdrawn,
    };
    fleet.plan("FLOFFER", deploy(1, &package, false));
    fleet.plan("FLLATER", Plan::Nothing);
    fleet.plan("FLCANCEL", deploy(3, &package, true));
    fleet.plan("FLDOWN", Plan::Down);
    fleet.plan("FLSTRANGER", deploy(5, &untrusted, false));

    let root = bench.path("devices");
    let devices = ArrivingBench::start(
        &root,
        &flashline::device::bench::default_dir(),
        vec![
            at(0, "offer", phone("FLOFFER")),
            at(100, "later", phone("FLLATER")),
            at(200, "cancel", phone("FLCANCEL")),
            at(300, "down", phone("FLDOWN")),
            at(400, "stranger", phone("FLSTRANGER")),
        ],
    );
    let config = StationConfig {
        max_failures: "5/10".parse::<Threshold>().unwrap(),
        scan_every: Duration::from_millis(100),
        fleet: Some(Arc::clone(&fleet) as Arc<dyn FleetLink>),
        ..StationConfig::new(
            Vec::new(),
            TrustStore::load_dir(&bench.path("keys")).unwrap(),
            &bench.path("station-home"),
        )
    };
    let events: Arc<Mutex<Vec<StationEvent>>> = Arc::default();
    let sink = Arc::clone(&events);
    let station = runner::start(config, move |e| sink.lock().unwrap().push(e)).unwrap();

    let board = wait("the offered phone flashed", &events, |b| {
        slot(b, "FLOFFER").is_some_and(|s| s.status == SlotStatus::Done)
    });
    assert_prefix(&root.join("offer").join("boot.img"), &boot_image());
    assert!(board.fleet.as_ref().is_some_and(|f| f.station == "bench-1"));
    let board = wait("the rest settled", &events, |b| {
        shows(b, "FLLATER", SlotStatus::Waiting, "no deployment")
            && shows(b, "FLDOWN", SlotStatus::Waiting, "hawkBit unreachable")
            && shows(b, "FLCANCEL", SlotStatus::Waiting, "no deployment")
            && shows(b, "FLSTRANGER", SlotStatus::Waiting, "no deployment")
    });
    assert!(slot(&board, "FLLATER").is_some_and(|s| s.before.is_some()));
    fleet.calls(|c| {
        assert_eq!(c.started, vec![1], "only the offered phone started");
        assert_eq!(c.finished, vec![(1, Outcome::Success)]);
        assert_eq!(c.withdrawn, vec![3], "the cancelled action was asked again");
        assert_eq!(c.declined.len(), 1, "{:?}", c.declined);
        assert_eq!(c.declined[0].0, 5);
        for serial in ["FLLATER", "FLDOWN"] {
            let asked = c.asked.iter().filter(|s| *s == serial).count();
            assert!(asked >= 2, "{serial} is asked again: {asked}");
        }
    });
    for name in ["later", "cancel", "down", "stranger"] {
        let commands = devices.with(name, |d| d.commands()).unwrap();
        assert!(
            !commands
                .iter()
                .any(|c| c.starts_with("download:") || c.starts_with("flash:")),
            "{name} got a write: {commands:?}"
        );
    }

    // A later offer for the waiting phone is taken at its next poll.
    fleet.plan("FLLATER", deploy(7, &package, false));
    wait("the later phone flashed", &events, |b| {
        slot(b, "FLLATER").is_some_and(|s| s.status == SlotStatus::Done)
    });
    assert_prefix(&root.join("later").join("boot.img"), &boot_image());
    fleet.calls(|c| assert_eq!(c.started, vec![1, 7]));
    let report = station.stop();
    let outcomes: Vec<_> = report
        .devices
        .iter()
        .map(|d| (d.serial.clone().unwrap_or_default(), d.outcome))
        .collect();
    assert!(
        outcomes.contains(&("FLOFFER".into(), Some(Outcome::Success)))
            && outcomes.contains(&("FLLATER".into(), Some(Outcome::Success))),
        "{outcomes:?}"
    );
    // The final batch report went to the fleet once, as the station stopped.
    fleet.calls(|c| {
        assert_eq!(c.batches.len(), 1, "{:?}", c.batches);
        assert_eq!(c.batches[0].1, report.devices.len());
    });
    devices.stop();
}
