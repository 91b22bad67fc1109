//! Reports to S3-compatible storage (issue 18): write-once puts, the outbox across failures,
//! crashes and restarts, and a real S3 server (moto) that goes down for part of the run.
//!
//! The first tests use `object_store`'s in-memory store behind
//! `ReportStore`; the moto tests need moto's server in the Python at `FLASHLINE_PY`
//! (`pip install 'moto[server]'`, which brings boto3, used here as an independent client to
//! create the bucket and read it back). Without it they are skipped, unless
//! `FLASHLINE_REQUIRE_PEERS` is set.
#![cfg(feature = "fleet")]

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::moto::Moto;
use flashline::fleet::reports::{
    report_key, verify_envelope, ObjectReportStore, Outbox, PutOutcome, ReportStore, S3Config,
    S3Store, StoreError,
};
use object_store::memory::InMemory;
use object_store::ObjectStore;

const SECRET: &str = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYzzSECRET";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Every object in `store`: key → bytes.
fn contents(store: &Arc<dyn ObjectStore>) -> BTreeMap<String, Vec<u8>> {
    use object_store::ObjectStoreExt as _;
    runtime().block_on(async {
        let mut out = BTreeMap::new();
        let mut folders = vec![None];
        while let Some(folder) = folders.pop() {
            let listed = store.list_with_delimiter(folder.as_ref()).await.unwrap();
            folders.extend(listed.common_prefixes.into_iter().map(Some));
            for m in listed.objects {
                let bytes = store.get(&m.location).await.unwrap().bytes().await.unwrap();
                out.insert(m.location.to_string(), bytes.to_vec());
            }
        }
        out
    })
}

fn job_report(n: usize) -> Vec<u8> {
    format!("{{\n  \"job\": {n},\n  \"outcome\": \"success\",\n  \"device\": \"sim-{n}\"\n}}\n")
        .into_bytes()
}

fn key(n: usize) -> String {
    report_key(
        "S12",
        &format!("t{:02}", n % 3),
        &format!("20261206T10{n:04}Z-{n}"),
    )
}

/// A store in front of another that counts calls and can fail on purpose.
struct Flaky {
    inner: Arc<dyn ReportStore>,
    calls: AtomicUsize,
    /// Refuse every put (the store is unreachable).
    down: Mutex<bool>,
    /// Write, then lose the answer (the process died between the put and the removal).
    lose_answer: Mutex<bool>,
}

impl Flaky {
    fn new(inner: Arc<dyn ReportStore>) -> Flaky {
        Flaky {
            inner,
            calls: AtomicUsize::new(0),
            down: Mutex::new(false),
            lose_answer: Mutex::new(false),
        }
    }
}

impl ReportStore for Flaky {
    fn put_once(&self, key: &str, bytes: &[u8]) -> Result<PutOutcome, StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let failed = |message: &str| StoreError::Store {
            store: "flaky".into(),
            key: key.into(),
            message: message.into(),
        };
        if *self.down.lock().unwrap() {
            return Err(failed("connection refused"));
        }
        let outcome = self.inner.put_once(key, bytes)?;
        if *self.lose_answer.lock().unwrap() {
            return Err(failed("connection reset before the answer"));
        }
        Ok(outcome)
    }
}

fn memory() -> (Arc<dyn ObjectStore>, Arc<dyn ReportStore>) {
    let raw: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let store = ObjectReportStore::new(raw.clone(), Duration::from_secs(5)).unwrap();
    (raw, Arc::new(store))
}

#[test]
fn reports_are_written_once_in_order_and_verify() {
    let home = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(&home.path().join("outbox")).unwrap();
    let public_key = outbox.station_key().public_key();
    let (raw, store) = memory();

    for n in 0..5 {
        outbox.enqueue(&key(n), &job_report(n)).unwrap();
    }
    // The same report queued twice is one entry; a different one under that key is refused.
    outbox.enqueue(&key(0), &job_report(0)).unwrap();
    assert!(matches!(
        outbox.enqueue(&key(0), &job_report(99)),
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        outbox.enqueue("reports/../x.json", b"{}"),
        Err(StoreError::BadKey { .. })
    ));
    assert!(matches!(
        outbox.enqueue(&key(7), b"not json"),
        Err(StoreError::NotJson { .. })
    ));
    assert_eq!(outbox.pending(), 5);

    let drained = outbox.drain(store.as_ref());
    assert_eq!(drained.error, None);
    let expected: Vec<String> = (0..5).map(key).collect();
    assert_eq!(drained.stored, expected, "sent oldest first");
    assert_eq!(drained.remaining, 0);

    let stored = contents(&raw);
    assert_eq!(stored.len(), 5);
    for n in 0..5 {
        let envelope = verify_envelope(&key(n), &stored[&key(n)], &public_key).unwrap();
        assert_eq!(envelope.report.as_bytes(), job_report(n));
        assert_eq!(envelope.station_key_id, outbox.station_key().id());
    }

    // A station batch's final report goes the same way, under its own key.
    let batch = flashline::station::BatchReport {
        started_at: "2026-12-06T10:00:00Z".into(),
        packages: vec!["stock 2.1.0".into()],
        ..Default::default()
    };
    let batch_key = flashline::fleet::reports::batch_key("S12", &batch.started_at);
    outbox
        .enqueue(&batch_key, &serde_json::to_vec(&batch).unwrap())
        .unwrap();
    assert_eq!(outbox.drain(store.as_ref()).stored, vec![batch_key.clone()]);
    let sent = verify_envelope(&batch_key, &contents(&raw)[&batch_key], &public_key).unwrap();
    let sent: serde_json::Value = serde_json::from_str(&sent.report).unwrap();
    assert_eq!(sent["packages"][0], "stock 2.1.0");

    // A replay never overwrites: the stored bytes stay the first ones.
    let first = stored[&key(2)].clone();
    assert_eq!(
        store.put_once(&key(2), b"{\"forged\":true}").unwrap(),
        PutOutcome::AlreadyStored
    );
    assert_eq!(contents(&raw)[&key(2)], first);
    // Queued again after it was sent: the drain finds it stored and drops it.
    outbox.enqueue(&key(2), &job_report(2)).unwrap();
    let again = outbox.drain(store.as_ref());
    assert_eq!(again.already_stored, vec![key(2)]);
    assert!(again.stored.is_empty());
    assert_eq!(outbox.pending(), 0);
}

#[test]
fn a_crash_between_put_and_removal_resends_as_already_stored() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("outbox");
    let (raw, store) = memory();
    let flaky = Flaky::new(store);
    {
        let outbox = Outbox::open(&dir)
            .unwrap()
            .with_backoff(Duration::from_millis(200), Duration::from_secs(1));
        outbox.enqueue(&key(0), &job_report(0)).unwrap();
        outbox.enqueue(&key(1), &job_report(1)).unwrap();
        *flaky.lose_answer.lock().unwrap() = true;
        let report = outbox.drain(&flaky);
        assert!(report.error.unwrap().contains("connection reset"));
        assert_eq!(report.remaining, 2, "nothing removed without an answer");
        assert!(report.retry_in_ms.is_some());
        // The object landed although the station never heard so.
        assert_eq!(contents(&raw).len(), 1);
        // Backing off: the next drain does not touch the store.
        let calls = flaky.calls.load(Ordering::SeqCst);
        let waiting = outbox.drain(&flaky);
        assert!(waiting.backing_off);
        assert_eq!(flaky.calls.load(Ordering::SeqCst), calls);
    } // The station stops here (the "crash").

    *flaky.lose_answer.lock().unwrap() = false;
    let outbox = Outbox::open(&dir)
        .unwrap()
        .with_backoff(Duration::from_millis(200), Duration::from_secs(1));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut report = outbox.drain(&flaky);
    while report.backing_off && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        report = outbox.drain(&flaky);
    }
    assert_eq!(report.already_stored, vec![key(0)]);
    assert_eq!(report.stored, vec![key(1)]);
    assert_eq!(report.remaining, 0);
    let stored = contents(&raw);
    assert_eq!(stored.len(), 2);
    let pk = outbox.station_key().public_key();
    verify_envelope(&key(0), &stored[&key(0)], &pk).unwrap();
}

#[test]
fn a_restart_keeps_the_queue_its_order_and_its_backoff() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("outbox");
    let (raw, store) = memory();
    let flaky = Flaky::new(store);
    *flaky.down.lock().unwrap() = true;
    {
        let outbox = Outbox::open(&dir)
            .unwrap()
            .with_backoff(Duration::from_secs(30), Duration::from_secs(60));
        for n in 0..3 {
            outbox.enqueue(&key(n), &job_report(n)).unwrap();
            outbox.drain(&flaky);
        }
        assert_eq!(outbox.pending(), 3);
        assert_eq!(
            flaky.calls.load(Ordering::SeqCst),
            1,
            "one attempt, then backoff"
        );
    }
    // What a crash mid-write leaves: a temporary file, never a queued entry.
    std::fs::write(dir.join("queue/.000000000009-x.json.1-1.tmp"), b"{\"torn").unwrap();

    *flaky.down.lock().unwrap() = false;
    let outbox = Outbox::open(&dir)
        .unwrap()
        .with_backoff(Duration::from_secs(30), Duration::from_secs(60));
    assert_eq!(outbox.pending(), 3);
    assert!(!dir.join("queue/.000000000009-x.json.1-1.tmp").exists());
    outbox.enqueue(&key(3), &job_report(3)).unwrap();
    // The backoff survived the restart.
    let waiting = outbox.drain(&flaky);
    assert!(waiting.backing_off, "{waiting:?}");
    assert!(waiting.retry_in_ms.unwrap() > 10_000);
    assert_eq!(flaky.calls.load(Ordering::SeqCst), 1);

    // A queue entry that cannot be read back is set aside, the rest goes on.
    std::fs::write(
        dir.join("queue/000000000004-ffffffffffffffff.json"),
        b"garbage",
    )
    .unwrap();
    let report = outbox.drain_now(&flaky);
    assert_eq!(report.error, None);
    assert_eq!(report.stored, (0..4).map(key).collect::<Vec<_>>());
    assert_eq!(report.rejected, vec!["000000000004-ffffffffffffffff.json"]);
    assert!(dir
        .join("rejected/000000000004-ffffffffffffffff.json")
        .exists());
    assert_eq!(outbox.pending(), 0);
    let stored = contents(&raw);
    assert_eq!(stored.len(), 4);
    for n in 0..4 {
        verify_envelope(
            &key(n),
            &stored[&key(n)],
            &outbox.station_key().public_key(),
        )
        .unwrap();
    }
}

/// Captured log lines of the current thread, at every level.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture<T>(&self, f: impl FnOnce() -> T) -> T {
        let logs = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || logs.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f)
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn credentials_file(dir: &Path) -> PathBuf {
    let path = dir.join("s3.credentials");
    let mut file = std::fs::File::create(&path).unwrap();
    writeln!(
        file,
        "[default]\naws_access_key_id = AKIDFLASHLINE\naws_secret_access_key = {SECRET}"
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    path
}

fn s3_config(endpoint: &str, bucket: &str, credentials: PathBuf) -> S3Config {
    S3Config {
        endpoint: endpoint.parse().unwrap(),
        bucket: bucket.into(),
        region: "us-east-1".into(),
        credentials,
        timeout: Duration::from_secs(5),
    }
}

#[test]
fn an_unreachable_store_fails_in_time_and_never_shows_the_secret() {
    let home = tempfile::tempdir().unwrap();
    let port = common::free_port(); // nothing listens there
    let store = S3Store::new(&s3_config(
        &format!("http://127.0.0.1:{port}"),
        "reports",
        credentials_file(home.path()),
    ))
    .unwrap();
    let outbox = Outbox::open(&home.path().join("outbox")).unwrap();
    outbox.enqueue(&key(0), &job_report(0)).unwrap();
    let logs = Logs::default();
    let started = Instant::now();
    let report = logs.capture(|| outbox.drain(&store));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let error = report.error.clone().unwrap();
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
    assert_eq!(report.remaining, 1);
    for shown in [
        error,
        format!("{report:?}"),
        format!("{store:?}"),
        logs.text(),
    ] {
        assert!(!shown.contains(SECRET), "secret leaked: {shown}");
    }
    assert!(
        logs.text().contains("report not delivered"),
        "{}",
        logs.text()
    );
    eprintln!(
        "drain against a closed port failed in {:?}",
        started.elapsed()
    );

    // A store that takes the connection and never answers: the put's time limit ends it.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = s3_config(
        &format!("http://{}", silent.local_addr().unwrap()),
        "reports",
        home.path().join("s3.credentials"),
    );
    config.timeout = Duration::from_secs(2);
    let hung = S3Store::new(&config).unwrap();
    let started = Instant::now();
    let err = hung.put_once(&key(0), b"{}").unwrap_err();
    let took = started.elapsed();
    eprintln!("put to a silent store gave up after {took:?}: {err}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
        "{took:?}"
    );
    assert!(!err.to_string().contains(SECRET));
    drop(silent);

    // A credentials file others may read is refused, naming the fix.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let path = home.path().join("s3.credentials");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = S3Store::new(&s3_config("http://127.0.0.1:9", "reports", path)).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        assert!(!err.to_string().contains(SECRET));
    }
}

// ---------------------------------------------------------------------------------------
// moto's S3 server

/// The Python with moto's server, or None (skipped) unless peers are required.
fn moto_python() -> Option<PathBuf> {
    let python = std::env::var_os("FLASHLINE_PY").map(PathBuf::from);
    let usable = python.as_ref().is_some_and(|py| {
        Command::new(py)
            .args(["-c", "import moto.server, boto3"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if usable {
        return python;
    }
    let why = "moto's server is not available: set FLASHLINE_PY to a Python with `moto[server]`";
    if std::env::var_os("FLASHLINE_REQUIRE_PEERS").is_some() {
        panic!("{why}");
    }
    eprintln!("skipping: {why}");
    None
}

#[test]
fn moto_stores_each_report_once_even_across_an_outage() {
    let Some(python) = moto_python() else { return };
    let home = tempfile::tempdir().unwrap();
    let mut moto = Moto::start(&python, home.path());
    assert_eq!(moto.boto3("create", "reports").trim(), "ok");
    let store = S3Store::new(&s3_config(
        &moto.endpoint(),
        "reports",
        credentials_file(home.path()),
    ))
    .unwrap();

    // A put lands once; a replay is answered 412 and is AlreadyStored.
    let logs = Logs::default();
    let (first, replay) = logs.capture(|| {
        (
            store.put_once("probe/once.json", b"{\"n\":1}").unwrap(),
            store.put_once("probe/once.json", b"{\"n\":2}").unwrap(),
        )
    });
    assert_eq!(
        (first, replay),
        (PutOutcome::Stored, PutOutcome::AlreadyStored)
    );
    assert_eq!(moto.dump("reports")["probe/once.json"], "{\"n\":1}");
    assert!(!logs.text().contains(SECRET));

    // Twelve jobs; the store is down from the fifth to the ninth. Jobs keep going, the
    // outbox grows, and once the store is back the outbox drains.
    let outbox = Outbox::open(&home.path().join("outbox"))
        .unwrap()
        .with_backoff(Duration::from_millis(200), Duration::from_secs(1));
    let mut stored: BTreeMap<String, usize> = BTreeMap::new();
    let mut tally = |report: &flashline::fleet::reports::DrainReport| {
        for key in &report.stored {
            *stored.entry(key.clone()).or_default() += 1;
        }
    };
    let mut most_pending = 0;
    let mut longest = Duration::ZERO;
    for n in 0..12 {
        if n == 4 {
            moto.kill();
        }
        if n == 9 {
            moto.restart();
        }
        outbox.enqueue(&key(n), &job_report(n)).unwrap();
        let started = Instant::now();
        let report = outbox.drain(&store);
        longest = longest.max(started.elapsed());
        assert!(
            longest < Duration::from_secs(12),
            "a drain took {longest:?}"
        );
        tally(&report);
        most_pending = most_pending.max(report.remaining);
    }
    assert!(
        most_pending >= 5,
        "the outbox held the reports of the outage: {most_pending}"
    );
    eprintln!("outage: up to {most_pending} reports queued, longest drain {longest:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while outbox.pending() > 0 {
        assert!(Instant::now() < deadline, "the outbox did not drain");
        std::thread::sleep(Duration::from_millis(100));
        let report = outbox.drain(&store);
        tally(&report);
    }

    let bucket = moto.dump("reports");
    let pk = outbox.station_key().public_key();
    for n in 0..12 {
        let body = bucket
            .get(&key(n))
            .unwrap_or_else(|| panic!("{} missing", key(n)));
        let envelope = verify_envelope(&key(n), body.as_bytes(), &pk).unwrap();
        assert_eq!(envelope.report.as_bytes(), job_report(n));
        assert!(
            stored.get(&key(n)).copied().unwrap_or(0) <= 1,
            "{} stored twice",
            key(n)
        );
    }
    assert_eq!(
        bucket.len(),
        13,
        "twelve reports and the probe: {:?}",
        bucket.keys()
    );
    let verified: Vec<String> =
        serde_json::from_str(&moto.boto3_with("verify", "reports", &pk)).unwrap();
    let mut expected: Vec<String> = (0..12).map(key).collect();
    expected.sort();
    assert_eq!(
        verified, expected,
        "pyca/cryptography verifies every envelope"
    );

    // The CLI: two more reports queued, listed, then drained by `flashline reports drain`.
    for n in 12..14 {
        outbox.enqueue(&key(n), &job_report(n)).unwrap();
    }
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_flashline"))
            .args(["reports"])
            .args(args)
            .arg("--outbox")
            .arg(home.path().join("outbox"))
            .env("FLASHLINE_HOME", home.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!stderr.contains(SECRET));
        (
            out.status.success(),
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
            stderr,
        )
    };
    let (ok, pending, _) = cli(&["pending", "--json"]);
    assert!(ok);
    assert_eq!(pending["pending"], 2);
    assert_eq!(pending["queued"][0]["key"], key(12));
    assert_eq!(pending["station_public_key"], pk.as_str());
    let credentials = home.path().join("s3.credentials");
    let endpoint = moto.endpoint();
    let drain_args = [
        "drain",
        "--json",
        "--endpoint",
        &endpoint,
        "--bucket",
        "reports",
        "--credentials",
        credentials.to_str().unwrap(),
    ];
    let (ok, drained, stderr) = cli(&drain_args);
    assert!(ok, "{drained} {stderr}");
    assert_eq!(drained["stored"], serde_json::json!([key(12), key(13)]));
    assert_eq!(drained["remaining"], 0);
    assert_eq!(moto.dump("reports").len(), 15);

    // With the store gone the CLI says so, exits non-zero and keeps the report.
    outbox.enqueue(&key(14), &job_report(14)).unwrap();
    moto.kill();
    let (ok, drained, _) = cli(&drain_args);
    assert!(!ok);
    assert_eq!(drained["remaining"], 1);
    assert!(drained["error"].as_str().unwrap().contains(&endpoint));
}
