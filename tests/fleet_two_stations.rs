//! Issue 18's proof: two `flashline station --fleet` processes, each with its own virtual
//! bench, 20 virtual phones between them, against real implementations of the three
//! protocols on loopback:
//!
//! * hawkBit's device API: `hawkbit_mock` in this process. The test plays hawkBit's
//!   rollout manager: a canary group first, then the rest; a failure spike "pauses" the
//!   rollout (its open actions are cancelled, as hawkBit's `stop` does) and both stations
//!   start no new flash; after the "investigation" the rest get new actions.
//! * TUF: a repository written by python-tuf (tests/fleet/tuf_repo.py) and served by
//!   Python's http.server.
//! * S3: moto's server, behind a gate in this process that refuses every connection for
//!   part of the run (the store is "down").
//!
//! At the end every device has exactly one report in the bucket, sealed by its station.
//!
//! The peers come from the Python at `FLASHLINE_PY` (python-tuf, moto[server]); without
//! them the test is skipped with a note, unless `FLASHLINE_REQUIRE_PEERS` is set.
#![cfg(all(feature = "fleet", unix))]

mod common;

use std::io::{BufRead, BufReader};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::bench::{assert_prefix, Bench};
use common::moto::Moto;
use flashline::engine::station::StationKey;
use flashline::fleet::ddi::{TargetId, CANCEL_ACCEPTED};
use flashline::fleet::reports::{batch_key, report_key, verify_envelope};
use flashline::sim::bench::{Arrival, ArrivingBench, VirtualDevice};
use flashline::sim::phone::PhoneConfig;
use flashline::sim::FaultPlan;
use hawkbit::ddi::{Execution as MockExecution, Finished, Type};
use hawkbit_mock::ddi::{
    ChunkProtocol, DeploymentBuilder, Server, ServerBuilder, Target, TargetAuthorization,
};
use sha2::{Digest as _, Sha256};

/// The longest any single wait may take.
const WAIT: Duration = Duration::from_secs(45);
/// The stations' longest interval between two polls of one device.
const POLL: Duration = Duration::from_secs(1);
/// Process start-up and scheduling on two busy cores, on top of one poll interval.
const SLACK: Duration = Duration::from_secs(2);
const SALT: &str = "two-stations-test-salt-0123456789";
const PACKAGE: &str = "phone-fleet-3.0.0.flpkg";
const BUCKET: &str = "flashline-reports";
const FAULT: &str = "fail@flash:boot#1";

fn python() -> Option<PathBuf> {
    let require = std::env::var_os("FLASHLINE_REQUIRE_PEERS").is_some();
    let skip = |why: String| {
        assert!(!require, "{why}, and FLASHLINE_REQUIRE_PEERS is set");
        eprintln!("skipping: {why}");
        None
    };
    let Some(py) = std::env::var_os("FLASHLINE_PY").map(PathBuf::from) else {
        return skip("FLASHLINE_PY (a python with python-tuf and moto[server]) is not set".into());
    };
    let ok = Command::new(&py)
        .args(["-c", "import tuf.api.metadata, moto.server, boto3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return skip(format!("{} lacks python-tuf or moto[server]", py.display()));
    }
    Some(py)
}

fn wait_for_port(addr: SocketAddr, what: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A child process killed on drop.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A python-tuf repository with one package, served on loopback.
struct Repo {
    dir: tempfile::TempDir,
    _server: Peer,
    base: String,
}

impl Repo {
    fn start(py: &Path, package: &Path) -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fleet/tuf_repo.py");
        let base = dir.path().join("r");
        let run = |args: &[&str]| {
            let out = Command::new(py)
                .arg(&script)
                .arg(args[0])
                .arg(&base)
                .args(&args[1..])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "tuf_repo.py {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&["init", "--timestamp-expires", "3600"]);
        run(&["add", package.to_str().unwrap(), "--name", PACKAGE]);
        let port = common::free_port();
        let server = Peer(
            Command::new(py)
                .args([
                    "-m",
                    "http.server",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                ])
                .arg("--directory")
                .arg(base.join("repo"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_for_port(addr, "http.server", Duration::from_secs(20));
        Repo {
            dir,
            _server: server,
            base: format!("http://{addr}/"),
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("r/repo/metadata/1.root.json")
    }
}

/// A TCP gate in front of moto: while closed, every connection (new or open) is cut, so
/// the stations see the store down.
struct Gate {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl Gate {
    fn start(to: SocketAddr) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let gate = Gate {
            addr: listener.local_addr().unwrap(),
            open: Arc::new(AtomicBool::new(true)),
            conns: Arc::default(),
            stop: Arc::default(),
        };
        let (open, conns, stop) = (
            Arc::clone(&gate.open),
            Arc::clone(&gate.conns),
            Arc::clone(&gate.stop),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let _ = client.set_nonblocking(false);
                if !open.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect_timeout(&to, Duration::from_secs(2)) else {
                    continue;
                };
                let mut list = conns.lock().unwrap();
                list.push(client.try_clone().unwrap());
                list.push(server.try_clone().unwrap());
                for (mut from, mut into) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut into);
                        let _ = into.shutdown(Shutdown::Write);
                    });
                }
            }
        });
        gate
    }

    fn close(&self) {
        self.open.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    fn reopen(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.close();
    }
}

/// One station process with its own home, bench and station file; its JSON events are
/// read on a thread and stamped with when they arrived.
struct Station {
    name: &'static str,
    home: PathBuf,
    devices: PathBuf,
    process: Peer,
    events: Receiver<(Instant, serde_json::Value)>,
    seen: Vec<(Instant, serde_json::Value)>,
}

impl Station {
    fn start(
        name: &'static str,
        dir: &Path,
        keys: &Path,
        repo: &Repo,
        hawkbit: &str,
        s3: SocketAddr,
    ) -> Station {
        let base = dir.join(name);
        let home = base.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let private = |file: &str, text: &str| {
            use std::os::unix::fs::PermissionsExt as _;
            let path = base.join(file);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        };
        private("gateway.token", "KeyDEFAULT\n");
        private(
            "s3.credentials",
            "[default]\naws_access_key_id = AKIDFLEET\naws_secret_access_key = x\n",
        );
        private("id.salt", SALT);
        let file = base.join("fleet.toml");
        std::fs::write(
            &file,
            format!(
                r#"[station]
name = "{name}"

[repository]
metadata_url = "{repo}metadata/"
targets_url = "{repo}targets/"
root = "{root}"
cache = "cache"

[hawkbit]
url = "{hawkbit}"
tenant = "DEFAULT"
token_file = "gateway.token"
poll_min = "500ms"
poll_max = "{poll}ms"
id_salt_file = "id.salt"

[reports]
endpoint = "http://{s3}"
bucket = "{BUCKET}"
region = "us-east-1"
credentials_file = "s3.credentials"
outbox = "outbox"
"#,
                repo = repo.base,
                root = repo.root().display(),
                poll = POLL.as_millis(),
            ),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_flashline"))
            .args(["station", "--fleet"])
            .arg(&file)
            .args(["--max-failures", "10/10", "--stop-after", "170s", "--json"])
            .arg("--trust")
            .arg(keys)
            .env("FLASHLINE_HOME", &home)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(base.join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let event = serde_json::from_str(&line).expect("every line is JSON");
                let _ = tx.send((Instant::now(), event));
            }
        });
        Station {
            name,
            home: home.clone(),
            devices: base.join("devices"),
            process: Peer(child),
            events,
            seen: Vec::new(),
        }
    }

    /// Sends SIGTERM and waits (bounded) for the station to finish its batch and exit.
    fn stop_gracefully(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.process.0.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.process.0.try_wait().unwrap() {
                assert!(status.code().is_some(), "{}: {status}", self.name);
                return;
            }
            assert!(Instant::now() < deadline, "{} did not stop", self.name);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The batch folder's name (the station's only batch).
    fn batch_name(&self) -> String {
        let batches = self.home.join(flashline::station::control::BATCHES);
        let mut names: Vec<String> = std::fs::read_dir(&batches)
            .unwrap_or_else(|e| panic!("{}: {e}", batches.display()))
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        names.remove(0)
    }

    fn bench_dir(&self) -> PathBuf {
        self.home.join("bench")
    }

    /// Takes the events that arrived.
    fn pump(&mut self) {
        while let Ok(event) = self.events.try_recv() {
            self.seen.push(event);
        }
    }

    /// The last slot event of the phone with `serial`.
    fn slot(&self, serial: &str) -> Option<&serde_json::Value> {
        self.seen
            .iter()
            .rev()
            .map(|(_, e)| e)
            .find(|e| e["event"] == "slot" && e["serial"] == serial)
    }

    /// When each phone's job started (its slot first showed "flashing").
    fn starts(&self) -> Vec<(String, Instant)> {
        let mut starts: Vec<(String, Instant)> = Vec::new();
        for (at, e) in &self.seen {
            if e["event"] == "slot" && e["status"] == "flashing" {
                let serial = e["serial"].as_str().unwrap_or_default().to_string();
                if !starts.iter().any(|(s, _)| *s == serial) {
                    starts.push((serial, *at));
                }
            }
        }
        starts
    }

    fn last_fleet(&self) -> Option<&serde_json::Value> {
        self.seen
            .iter()
            .rev()
            .map(|(_, e)| e)
            .find(|e| e["event"] == "fleet")
    }

    fn public_key(&self) -> String {
        StationKey::open_or_create(&self.home.join(flashline::engine::station::FILE))
            .unwrap()
            .public_key()
    }
}

/// Waits (bounded) until `done` holds, pumping both stations' events.
fn wait(what: &str, stations: &mut [&mut Station], done: impl Fn(&[&mut Station]) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        for s in stations.iter_mut() {
            s.pump();
        }
        if done(stations) {
            return;
        }
        if Instant::now() >= deadline {
            let slots: Vec<_> = stations
                .iter()
                .flat_map(|s| {
                    s.seen
                        .iter()
                        .filter(|(_, e)| e["event"] == "slot")
                        .map(|(_, e)| {
                            format!(
                                "{} {} {} {}",
                                s.name, e["serial"], e["status"], e["message"]
                            )
                        })
                })
                .collect();
            let tail = &slots[slots.len().saturating_sub(60)..];
            let logs: Vec<String> = stations
                .iter()
                .map(|s| {
                    let log = std::fs::read_to_string(s.home.parent().unwrap().join("stderr.log"))
                        .unwrap_or_default();
                    let lines: Vec<&str> = log.lines().collect();
                    let from = lines.len().saturating_sub(30);
                    format!("{}:\n{}", s.name, lines[from..].join("\n"))
                })
                .collect();
            panic!(
                "timed out waiting for {what}; last slot events:\n{}\nstderr:\n{}",
                tail.join("\n"),
                logs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn boot_image() -> Vec<u8> {
    let mut image = b"FLASHLINE-VERSION=3.0.0\nFLASHLINE-SECURITY=7\n".to_vec();
    image.extend(common::edl::data(128 * 1024, 9));
    image
}

fn phone(serial: &str, after_ms: u64, failing: bool) -> Arrival {
    Arrival {
        name: serial.to_lowercase(),
        after: Duration::from_millis(after_ms),
        device: VirtualDevice::Phone(PhoneConfig {
            serial: serial.into(),
            partitions: vec![
                ("boot".into(), 2 * 1024 * 1024),
                ("system".into(), 512 * 1024),
            ],
            faults: FaultPlan {
                faults: if failing {
                    vec![FAULT.parse().unwrap()]
                } else {
                    Vec::new()
                },
            },
            ..PhoneConfig::default()
        }),
    }
}

/// One device as the rollout manager knows it.
struct Device {
    serial: String,
    station: usize,
    target: Target,
    id: TargetId,
}

/// The manager's handle on one action: its feedback expectations.
struct Action<'a> {
    id: u64,
    proceeding: httpmock::Mock<'a>,
    success: httpmock::Mock<'a>,
    failure: httpmock::Mock<'a>,
}

fn push<'a>(device: &'a Device, station: &str, id: u64, package: (&str, u64)) -> Action<'a> {
    let metadata = [
        ("tuf-target", PACKAGE.to_string()),
        ("tuf-sha256", package.0.to_string()),
        ("tuf-length", package.1.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    device.target.push_deployment(
        DeploymentBuilder::new(&id.to_string(), Type::Forced, Type::Forced)
            .chunk_with_metadata(
                ChunkProtocol::BOTH,
                "firmware",
                "3.0.0",
                "phone-fleet",
                vec![],
                metadata,
            )
            .build(),
    );
    let key = report_key(station, device.id.as_str(), &format!("action-{id}"));
    let expect = |execution, finished, details: Vec<String>| {
        let details: Vec<&str> = details.iter().map(String::as_str).collect();
        device.target.expect_deployment_feedback(
            &id.to_string(),
            execution,
            finished,
            None,
            details,
        )
    };
    Action {
        id,
        proceeding: expect(
            MockExecution::Proceeding,
            Finished::None,
            vec![format!("{station}: writing {PACKAGE}")],
        ),
        success: expect(
            MockExecution::Closed,
            Finished::Success,
            vec![
                format!("{station}: {PACKAGE} success"),
                format!("report: {key}"),
            ],
        ),
        failure: expect(
            MockExecution::Closed,
            Finished::Failure,
            vec![
                format!("{station}: {PACKAGE} device-error"),
                format!("report: {key}"),
            ],
        ),
    }
}

fn closed(action: &Action) -> usize {
    action.success.calls() + action.failure.calls()
}

#[test]
fn two_stations_follow_a_rollout_halt_on_a_failure_spike_and_report_everything_once() {
    let Some(py) = python() else {
        return;
    };
    let started = Instant::now();
    let bench = Bench::new();
    let package = bench.pack(
        "phone-fleet",
        "3.0.0",
        7,
        "zte-demo-phone",
        &[("boot", &boot_image())],
    );
    let bytes = std::fs::read(&package).unwrap();
    let sha256 = hex::encode(Sha256::digest(&bytes));
    assert_eq!(package.file_name().unwrap(), PACKAGE);
    let repo = Repo::start(&py, &package);
    let moto = Moto::start(&py, &bench.path("moto"));
    moto.boto3("create", BUCKET);
    let gate = Gate::start(moto.addr());
    let hawkbit: Server = ServerBuilder::default()
        .target_authorization(TargetAuthorization::GatewayToken)
        .build();

    // Ten phones per station: the first of each is the canary group; the next four are
    // on the bench when the rest of the rollout starts (three of them fail their write);
    // the last five walk in after the halt.
    let names = ["st-a", "st-b"];
    let serial = |station: usize, n: usize| format!("{}{n:02}", ["FA", "FB"][station]);
    let failing = ["FA03", "FA04", "FB03"];
    let devices: Vec<Device> = (0..2)
        .flat_map(|station| (1..=10).map(move |n| (station, n)))
        .map(|(station, n)| {
            let serial = serial(station, n);
            let id = TargetId::derive(SALT.as_bytes(), &serial, None);
            Device {
                target: hawkbit.add_target(id.as_str()),
                id,
                serial,
                station,
            }
        })
        .collect();
    let on_bench = |d: &Device| d.serial[2..].parse::<usize>().unwrap() <= 5;

    let dir = tempfile::tempdir().unwrap();
    let mut a = Station::start(
        "st-a",
        dir.path(),
        &bench.path("keys"),
        &repo,
        &hawkbit.base_url(),
        gate.addr,
    );
    let mut b = Station::start(
        "st-b",
        dir.path(),
        &bench.path("keys"),
        &repo,
        &hawkbit.base_url(),
        gate.addr,
    );
    let mut benches = Vec::new();
    for (i, station) in [&a, &b].iter().enumerate() {
        let arrivals = (1..=5)
            .map(|n| {
                let s = serial(i, n);
                phone(&s, 100 * n as u64, failing.contains(&s.as_str()))
            })
            .collect();
        benches.push(ArrivingBench::start(
            &station.devices,
            &station.bench_dir(),
            arrivals,
        ));
    }

    // Before any rollout: every phone is polled as its target and waits, unflashed.
    wait(
        "ten phones waiting with no deployment",
        &mut [&mut a, &mut b],
        |s| {
            devices.iter().filter(|d| on_bench(d)).all(|d| {
                s[d.station]
                    .slot(&d.serial)
                    .is_some_and(|e| e["status"] == "waiting" && e["message"] == "no deployment")
            })
        },
    );
    for d in devices.iter().filter(|d| on_bench(d)) {
        assert!(d.target.poll_hits() >= 1, "{} was polled", d.serial);
    }
    wait(
        "the boards showing hawkBit and the repository up",
        &mut [&mut a, &mut b],
        |s| {
            s.iter().all(|s| {
                s.last_fleet().is_some_and(|f| {
                    f["rollouts"]["state"] == "up" && f["repository"]["state"] == "up"
                })
            })
        },
    );
    let fleet = a.last_fleet().unwrap().clone();
    assert_eq!(fleet["station"], "st-a");
    assert_eq!(fleet["rollouts"]["state"], "up", "{fleet:#}");
    assert_eq!(fleet["repository"]["state"], "up", "{fleet:#}");

    // Group 1, the canaries: one phone per station.
    let pkg = (sha256.as_str(), bytes.len() as u64);
    let mut actions: Vec<(usize, Action)> = Vec::new();
    for i in [0, 10] {
        let d = &devices[i];
        actions.push((i, push(d, names[d.station], 1 + i as u64, pkg)));
    }
    wait("the canaries' success", &mut [&mut a, &mut b], |_| {
        actions.iter().all(|(_, c)| c.success.calls() == 1)
    });
    for (_, c) in &actions {
        assert_eq!(c.proceeding.calls(), 1, "action {}: proceeding once", c.id);
    }
    for i in [0, 10] {
        let d = &devices[i];
        let station = [&a, &b][d.station];
        assert_prefix(
            &station
                .devices
                .join(d.serial.to_lowercase())
                .join("boot.img"),
            &boot_image(),
        );
    }
    for d in devices
        .iter()
        .filter(|d| on_bench(d) && !d.serial.ends_with("01"))
    {
        let commands = benches[d.station]
            .with(&d.serial.to_lowercase(), |p| p.commands())
            .unwrap();
        assert!(
            !commands.iter().any(|c| c.starts_with("download:")),
            "{} written before its group",
            d.serial
        );
    }

    // The store goes down; group 2: every other target of the rollout gets its action,
    // the walk-ins' too (they are known targets, not on the bench yet).
    gate.close();
    for (i, d) in devices.iter().enumerate() {
        if !d.serial.ends_with("01") {
            actions.push((i, push(d, names[d.station], 100 + i as u64, pkg)));
        }
    }
    // The failure spike: hawkBit's error threshold (say 30 % of the group's eight
    // on-bench targets) trips at the third failure, and the manager stops the rollout:
    // every action not closed yet is cancelled.
    wait("the failure spike", &mut [&mut a, &mut b], |_| {
        actions
            .iter()
            .map(|(_, r)| r.failure.calls())
            .sum::<usize>()
            >= failing.len()
    });
    let paused = Instant::now();
    let mut cancelled = Vec::new();
    for (i, r) in &actions {
        if closed(r) == 0 {
            devices[*i].target.cancel_action(&r.id.to_string());
            cancelled.push((*i, r.id));
        }
    }
    let walk_ins: Vec<usize> = (0..devices.len())
        .filter(|&i| !on_bench(&devices[i]))
        .collect();
    let acks: Vec<httpmock::Mock> = walk_ins
        .iter()
        .map(|&i| {
            let id = (100 + i).to_string();
            devices[i].target.expect_cancel_feedback(
                &id,
                MockExecution::Closed,
                Finished::Success,
                vec![CANCEL_ACCEPTED],
            )
        })
        .collect();
    // The walk-ins arrive after the stop: each is polled, sees its action cancelled,
    // accepts the cancellation and is not flashed.
    for i in 0..2 {
        let station = [&a, &b][i];
        let arrivals = (6..=10)
            .map(|n| phone(&serial(i, n), 50 * n as u64, false))
            .collect();
        benches.push(ArrivingBench::start(
            &station.devices,
            &station.bench_dir(),
            arrivals,
        ));
    }
    wait(
        "the walk-ins accepting their cancelled actions",
        &mut [&mut a, &mut b],
        |_| acks.iter().all(|ack| ack.calls() >= 1),
    );
    wait(
        "the walk-ins waiting with no deployment",
        &mut [&mut a, &mut b],
        |s| {
            walk_ins.iter().all(|&i| {
                let d = &devices[i];
                s[d.station]
                    .slot(&d.serial)
                    .is_some_and(|e| e["status"] == "waiting" && e["message"] == "no deployment")
            })
        },
    );
    // Both stations stopped starting flashes within one poll interval of the stop.
    for station in [&a, &b] {
        for (serial, at) in station.starts() {
            assert!(
                at < paused + POLL + SLACK,
                "{}: {serial} started {:?} after the stop",
                station.name,
                at - paused
            );
        }
    }
    let unwritten = |i: usize| {
        let d = &devices[i];
        let bench = &benches[if on_bench(d) {
            d.station
        } else {
            2 + d.station
        }];
        let commands = bench
            .with(&d.serial.to_lowercase(), |p| p.commands())
            .unwrap();
        !commands
            .iter()
            .any(|c| c.starts_with("download:") || c.starts_with("flash:"))
    };
    for &i in &walk_ins {
        assert!(
            unwritten(i),
            "{} was written after the stop",
            devices[i].serial
        );
    }
    for (i, r) in &actions {
        if cancelled.contains(&(*i, r.id)) && r.proceeding.calls() == 0 {
            assert!(
                unwritten(*i),
                "{}: a cancelled action was written",
                devices[*i].serial
            );
        }
    }
    // The store was down all along: the reports wait in the outboxes, shown on the board.
    let pending: u64 = [&a, &b]
        .iter()
        .map(|s| s.last_fleet().unwrap()["outbox_pending"].as_u64().unwrap())
        .sum();
    assert!(pending >= 5, "reports wait in the outboxes: {pending}");
    assert!(
        [&a, &b]
            .iter()
            .any(|s| s.last_fleet().unwrap()["reports"]["state"] == "down"),
        "the board shows the store down"
    );

    // After the investigation the store is back and the manager gives every device whose
    // action was cancelled before it started a new action: they are flashed.
    gate.reopen();
    let again: Vec<usize> = cancelled
        .iter()
        .filter(|(i, id)| {
            actions
                .iter()
                .any(|(j, r)| j == i && r.id == *id && r.proceeding.calls() == 0)
        })
        .map(|(i, _)| *i)
        .collect();
    assert!(again.len() >= walk_ins.len());
    for &i in &again {
        let d = &devices[i];
        actions.push((i, push(d, names[d.station], 1000 + i as u64, pkg)));
    }
    wait(
        "the rest flashed after the resume",
        &mut [&mut a, &mut b],
        |_| {
            actions
                .iter()
                .filter(|(_, r)| r.id >= 1000)
                .all(|(_, r)| r.success.calls() == 1)
        },
    );
    for &i in &walk_ins {
        let d = &devices[i];
        let station = [&a, &b][d.station];
        assert_prefix(
            &station
                .devices
                .join(d.serial.to_lowercase())
                .join("boot.img"),
            &boot_image(),
        );
    }

    // Every device's report is in the bucket exactly once, sealed by its station.
    let mut keys = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        let done: Vec<&Action> = actions
            .iter()
            .filter(|(j, r)| *j == i && closed(r) > 0)
            .map(|(_, r)| r)
            .collect();
        assert_eq!(done.len(), 1, "{}: one closed action", d.serial);
        assert_eq!(closed(done[0]), 1, "{}: closed once", d.serial);
        let station = names[d.station];
        let key = report_key(station, d.id.as_str(), &format!("action-{}", done[0].id));
        keys.push((d.station, key));
    }
    let deadline = Instant::now() + WAIT;
    let objects = loop {
        let objects = moto.dump(BUCKET);
        if objects.len() >= 20 || Instant::now() >= deadline {
            break objects;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(
        objects.keys().filter(|k| k.starts_with("reports/")).count(),
        20,
        "{:#?}",
        objects.keys().collect::<Vec<_>>()
    );
    let public = [a.public_key(), b.public_key()];
    let mut failures = 0;
    for (station, key) in &keys {
        let body = objects
            .get(key)
            .unwrap_or_else(|| panic!("no report at {key}"));
        let envelope = verify_envelope(key, body.as_bytes(), &public[*station]).unwrap();
        let report: serde_json::Value = serde_json::from_str(&envelope.report).unwrap();
        assert_eq!(report["station"], names[*station]);
        if report["job"]["outcome"] != "success" {
            failures += 1;
        }
    }
    assert_eq!(failures, failing.len());

    // SIGTERM ends each station's batch: its final batch report lands in the bucket once.
    for s in [&mut a, &mut b] {
        s.stop_gracefully();
    }
    let deadline = Instant::now() + WAIT;
    let objects = loop {
        let objects = moto.dump(BUCKET);
        let batches = objects.keys().filter(|k| k.starts_with("batches/")).count();
        if batches >= 2 || Instant::now() >= deadline {
            break objects;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let batches: Vec<&String> = objects
        .keys()
        .filter(|k| k.starts_with("batches/"))
        .collect();
    assert_eq!(batches.len(), 2, "{batches:?}");
    for (i, station) in [&a, &b].into_iter().enumerate() {
        let batch = station.batch_name();
        let key = batch_key(names[i], &batch);
        let body = objects
            .get(&key)
            .unwrap_or_else(|| panic!("no batch report at {key}: {batches:?}"));
        let envelope = verify_envelope(&key, body.as_bytes(), &public[i]).unwrap();
        let report: serde_json::Value = serde_json::from_str(&envelope.report).unwrap();
        assert_eq!(report["batch"], batch.as_str());
        assert_eq!(report["report"]["devices"].as_array().unwrap().len(), 10);
    }
    let elapsed = started.elapsed();
    eprintln!("two stations, 20 devices: {elapsed:?}");
    for bench in benches {
        bench.stop();
    }
}
