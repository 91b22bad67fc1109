//! Packages from a TUF repository (issue 18), against an independent producer: python-tuf
//! (tests/fleet/tuf_repo.py) writes an ed25519, consistent-snapshot repository whose
//! targets are real flashline packages, and Python's `http.server` serves it on loopback
//! (once it is read as a `file://` folder instead).
//!
//! The python comes from `FLASHLINE_PY` (a venv with `tuf`); without it the tests are
//! skipped with a note, unless `FLASHLINE_REQUIRE_PEERS` is set.
#![cfg(feature = "fleet")]

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::bench::Bench;
use flashline::fleet::repo::{RepoConfig, RepoError, Repository};
use flashline::package::TrustStore;
use sha2::{Digest as _, Sha256};

/// The python with python-tuf, or `None` (the test is skipped) when there is none.
fn python() -> Option<PathBuf> {
    let require = std::env::var_os("FLASHLINE_REQUIRE_PEERS").is_some();
    let Some(py) = std::env::var_os("FLASHLINE_PY").map(PathBuf::from) else {
        assert!(
            !require,
            "FLASHLINE_PY is not set and FLASHLINE_REQUIRE_PEERS is"
        );
        eprintln!("skipping: FLASHLINE_PY (a python with python-tuf) is not set");
        return None;
    };
    let ok = Command::new(&py)
        .args(["-c", "import tuf.api.metadata"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(!require, "{} has no python-tuf", py.display());
        eprintln!("skipping: {} has no python-tuf", py.display());
        return None;
    }
    Some(py)
}

/// A repository written by python-tuf, in a temporary folder.
struct Producer {
    py: PathBuf,
    dir: tempfile::TempDir,
}

impl Producer {
    fn init(py: &Path, timestamp_expires: u64) -> Producer {
        let producer = Producer {
            py: py.to_owned(),
            dir: tempfile::tempdir().unwrap(),
        };
        producer.run(&[
            "init",
            "--timestamp-expires",
            &timestamp_expires.to_string(),
        ]);
        producer
    }

    /// Runs a producer command on this repository; returns its JSON line.
    fn run(&self, args: &[&str]) -> serde_json::Value {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fleet/tuf_repo.py");
        let base = self.dir.path().join("r");
        let mut cmd = Command::new(&self.py);
        cmd.arg(script).arg(args[0]).arg(&base).args(&args[1..]);
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "tuf_repo.py {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn add(&self, package: &Path, name: &str) -> serde_json::Value {
        self.run(&["add", package.to_str().unwrap(), "--name", name])
    }

    /// The served folder (`metadata/`, `targets/`).
    fn repo(&self) -> PathBuf {
        self.dir.path().join("r/repo")
    }

    fn metadata(&self, file: &str) -> PathBuf {
        self.repo().join("metadata").join(file)
    }

    /// The served file of target `name` (`<sha256>.<name>`).
    fn target_file(&self, name: &str) -> PathBuf {
        std::fs::read_dir(self.repo().join("targets"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .ends_with(&format!(".{name}"))
            })
            .unwrap()
    }

    /// A station's configuration for this repository at `base` (`http://…/` or `file://…/`).
    fn station(&self, base: &str, cache: &Path) -> RepoConfig {
        RepoConfig::new(
            &format!("{base}metadata/"),
            &format!("{base}targets/"),
            self.metadata("1.root.json"),
            cache.to_owned(),
        )
        .unwrap()
    }
}

/// `python -m http.server` on 127.0.0.1, killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(py: &Path, dir: &Path) -> Server {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let child = Command::new(py)
            .args(["-m", "http.server", &addr.port().to_string()])
            .args(["--bind", "127.0.0.1", "--directory"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Server { child, addr };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "http.server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn base(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bench with one trusted release key and a package signed by it.
fn bench_with_package(version: &str) -> (Bench, PathBuf, TrustStore) {
    let bench = Bench::new();
    let images: [(&str, &[u8]); 2] = [("boot", &[7u8; 8192]), ("system", &[9u8; 20000])];
    let package = bench.pack("phone-fw", version, 1, "virtual-phone", &images);
    let trust = TrustStore::load_dir(&bench.path("keys")).unwrap();
    (bench, package, trust)
}

fn sha256_hex(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn sync_fetch_and_package_check_end_to_end_over_http() {
    let Some(py) = python() else { return };
    let (bench, package, trust) = bench_with_package("1.2.0");
    // A package TUF will accept but flashline must not: signed by a key this station
    // does not trust.
    let (_stranger, foreign, _) = bench_with_package("9.9.9");
    let producer = Producer::init(&py, 86400);
    let added = producer.run(&[
        "add",
        package.to_str().unwrap(),
        "--name",
        "phone-fw-1.2.0.flpkg",
        "--custom",
        r#"{"rollout":{"id":"r-42","bench_canary_k":3}}"#,
    ]);
    producer.add(&foreign, "foreign.flpkg");
    let server = Server::start(&py, &producer.repo());
    let cache = bench.path("station-cache");
    let config = producer.station(&server.base(), &cache);

    let repo = Repository::sync(&config).unwrap();
    let freshness = repo.freshness();
    assert!(freshness.online && freshness.unreachable.is_none());
    assert!(freshness.expires > SystemTime::now() + Duration::from_secs(3600));
    let targets = repo.targets();
    assert_eq!(
        targets.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["foreign.flpkg", "phone-fw-1.2.0.flpkg"]
    );
    let target = &targets[1];
    assert_eq!(target.sha256, sha256_hex(&package));
    assert_eq!(target.sha256, added["sha256"].as_str().unwrap());
    assert_eq!(target.length, std::fs::metadata(&package).unwrap().len());
    assert_eq!(target.custom["rollout"]["id"], "r-42");

    // TUF, then flashline's own check: the file lands in the content-addressed cache.
    let fetched = repo.fetch_verified("phone-fw-1.2.0.flpkg", &trust).unwrap();
    assert_eq!(
        fetched.path,
        cache.join("targets/sha256").join(&target.sha256)
    );
    assert_eq!(
        std::fs::read(&fetched.path).unwrap(),
        std::fs::read(&package).unwrap()
    );
    assert_eq!(fetched.manifest.name, "phone-fw");
    assert_eq!(fetched.manifest.version.to_string(), "1.2.0");
    assert_eq!(fetched.signer.name, "release");

    // The stranger's package passes TUF and is still refused by the package check.
    let e = repo.fetch_verified("foreign.flpkg", &trust).unwrap_err();
    assert!(matches!(e, RepoError::Package { .. }), "{e}");
    assert!(
        e.to_string().contains("passed the repository's check"),
        "{e}"
    );
    let e = repo.fetch("not-there.flpkg").unwrap_err();
    assert!(matches!(e, RepoError::UnknownTarget { .. }), "{e}");

    // The command line: a second station syncs and lists with versions, as JSON.
    let flags = |cache: &str| {
        vec![
            "--metadata-url".to_string(),
            format!("{}metadata/", server.base()),
            "--targets-url".to_string(),
            format!("{}targets/", server.base()),
            "--root".to_string(),
            producer.metadata("1.root.json").display().to_string(),
            "--cache".to_string(),
            bench.path(cache).display().to_string(),
            "--json".to_string(),
        ]
    };
    let mut sync = vec!["repo".to_string(), "sync".to_string()];
    sync.extend(flags("cli-cache"));
    let out = bench.run(&sync.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let synced: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(synced["targets"], 2);
    assert_eq!(synced["freshness"]["online"], true);
    let keys = bench.path("keys").display().to_string();
    let mut list = vec![
        "repo".to_string(),
        "list".to_string(),
        "--verify".to_string(),
    ];
    list.extend(flags("cli-cache"));
    list.extend(["--trust".to_string(), keys]);
    let out = bench.run(&list.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(3), "the foreign package is refused");
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = listed["packages"].as_array().unwrap();
    assert!(packages[0]["package"]["refused"]
        .as_str()
        .unwrap()
        .contains("refused"));
    assert_eq!(packages[1]["package"]["version"], "1.2.0");
    assert_eq!(packages[1]["target"]["sha256"], target.sha256.as_str());
}

#[test]
fn a_folder_or_usb_stick_works_as_a_file_url() {
    let Some(py) = python() else { return };
    let (bench, package, trust) = bench_with_package("2.0.0");
    let producer = Producer::init(&py, 86400);
    producer.add(&package, "phone-fw.flpkg");
    let base = url::Url::from_directory_path(producer.repo()).unwrap();
    let config = producer.station(base.as_str(), &bench.path("cache"));
    let repo = Repository::sync(&config).unwrap();
    assert!(repo.freshness().online);
    let fetched = repo.fetch_verified("phone-fw.flpkg", &trust).unwrap();
    assert_eq!(fetched.manifest.version.to_string(), "2.0.0");
    assert_eq!(
        std::fs::read(&fetched.path).unwrap(),
        std::fs::read(&package).unwrap()
    );
}

#[test]
fn a_tampered_target_is_refused_and_never_cached() {
    let Some(py) = python() else { return };
    let (bench, package, trust) = bench_with_package("1.0.0");
    let producer = Producer::init(&py, 86400);
    let added = producer.add(&package, "fw.flpkg");
    let sha256 = added["sha256"].as_str().unwrap().to_string();
    let server = Server::start(&py, &producer.repo());
    let cache = bench.path("cache");
    let repo = Repository::sync(&producer.station(&server.base(), &cache)).unwrap();

    // The same length, one byte changed on the server.
    let served = producer.target_file("fw.flpkg");
    let good = std::fs::read(&served).unwrap();
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0x40;
    std::fs::write(&served, &bad).unwrap();
    let e = repo.fetch("fw.flpkg").unwrap_err();
    assert!(matches!(e, RepoError::TargetMismatch { .. }), "{e}");
    assert!(e.to_string().contains("thrown away"), "{e}");
    let cached = cache.join("targets/sha256").join(&sha256);
    assert!(!cached.exists());
    assert_eq!(
        std::fs::read_dir(cache.join("targets/sha256"))
            .unwrap()
            .count(),
        0
    );

    // Longer than signed: refused too.
    let mut long = good.clone();
    long.extend_from_slice(b"more");
    std::fs::write(&served, &long).unwrap();
    let e = repo.fetch("fw.flpkg").unwrap_err();
    assert!(matches!(e, RepoError::TargetMismatch { .. }), "{e}");
    assert!(!cached.exists());

    // The real bytes are accepted; a cached copy damaged on disk is fetched again.
    std::fs::write(&served, &good).unwrap();
    assert_eq!(repo.fetch("fw.flpkg").unwrap(), cached);
    std::fs::write(&cached, &bad).unwrap();
    let again = repo.fetch_verified("fw.flpkg", &trust).unwrap();
    assert_eq!(std::fs::read(&again.path).unwrap(), good);
}

#[test]
fn rollback_to_older_metadata_is_refused() {
    let Some(py) = python() else { return };
    let (bench, package, _) = bench_with_package("1.0.0");
    let producer = Producer::init(&py, 86400);
    producer.add(&package, "a.flpkg");
    let old_timestamp = std::fs::read(producer.metadata("timestamp.json")).unwrap();
    producer.add(&package, "b.flpkg");
    let server = Server::start(&py, &producer.repo());
    let config = producer.station(&server.base(), &bench.path("cache"));
    assert_eq!(Repository::sync(&config).unwrap().targets().len(), 2);
    let new_timestamp = std::fs::read(producer.metadata("timestamp.json")).unwrap();

    // An old timestamp (which names the old snapshot) served after the new one.
    std::fs::write(producer.metadata("timestamp.json"), &old_timestamp).unwrap();
    let e = Repository::sync(&config).unwrap_err();
    assert!(matches!(e, RepoError::Rollback { .. }), "{e}");
    std::fs::write(producer.metadata("timestamp.json"), &new_timestamp).unwrap();

    // A new, validly signed timestamp naming an older snapshot.
    producer.run(&["timestamp", "--snapshot-version", "2"]);
    let e = Repository::sync(&config).unwrap_err();
    assert!(matches!(e, RepoError::Rollback { .. }), "{e}");
    assert!(e.to_string().contains("older metadata"), "{e}");

    // A new snapshot naming older targets metadata.
    producer.run(&["snapshot", "--targets-version", "2"]);
    let e = Repository::sync(&config).unwrap_err();
    assert!(matches!(e, RepoError::Rollback { .. }), "{e}");

    // Nothing of it was kept: the station still works from what it verified.
    let repo = Repository::offline(&config).unwrap();
    assert_eq!(repo.targets().len(), 2);
}

#[test]
fn a_rotated_key_is_followed_through_the_root_chain_also_offline() {
    let Some(py) = python() else { return };
    let (bench, package, trust) = bench_with_package("1.0.0");
    let producer = Producer::init(&py, 86400);
    producer.add(&package, "a.flpkg");
    let server = Server::start(&py, &producer.repo());
    let config = producer.station(&server.base(), &bench.path("cache"));
    Repository::sync(&config).unwrap();
    let old_timestamp = std::fs::read(producer.metadata("timestamp.json")).unwrap();

    // Root 2 replaces the timestamp key; the station still pins root 1.
    producer.run(&["rotate", "--role", "timestamp"]);
    assert!(producer.metadata("2.root.json").is_file());
    let repo = Repository::sync(&config).unwrap();
    assert!(repo.freshness().online);
    repo.fetch_verified("a.flpkg", &trust).unwrap();
    // Offline, the stored chain (root 1 → root 2) verifies the stored timestamp.
    drop(server);
    let offline = Repository::offline(&config).unwrap();
    assert_eq!(offline.targets().len(), 1);

    // A timestamp signed by the retired key is refused.
    let server = Server::start(&py, &producer.repo());
    let config = producer.station(&server.base(), &bench.path("cache"));
    std::fs::write(producer.metadata("timestamp.json"), old_timestamp).unwrap();
    let e = Repository::sync(&config).unwrap_err();
    assert!(matches!(e, RepoError::Rejected { .. }), "{e}");
}

#[test]
fn freeze_with_expired_metadata_is_refused() {
    let Some(py) = python() else { return };
    let (bench, package, _) = bench_with_package("1.0.0");
    let producer = Producer::init(&py, 86400);
    producer.add(&package, "a.flpkg");
    let server = Server::start(&py, &producer.repo());
    let config = producer.station(&server.base(), &bench.path("cache"));
    Repository::sync(&config).unwrap();
    producer.add(&package, "b.flpkg");

    // The newest metadata, re-served with a timestamp that has already expired.
    producer.run(&["timestamp", "--expires", "-60"]);
    let e = Repository::sync(&config).unwrap_err();
    assert!(
        matches!(&e, RepoError::Frozen { role } if role == "timestamp"),
        "{e}"
    );
    // A new station cannot be frozen into accepting it either.
    let fresh = producer.station(&server.base(), &bench.path("fresh-cache"));
    let e = Repository::sync(&fresh).unwrap_err();
    assert!(matches!(e, RepoError::Frozen { .. }), "{e}");
    // The station keeps what it verified before (one package), not the frozen view.
    assert_eq!(Repository::offline(&config).unwrap().targets().len(), 1);
}

#[test]
fn mix_and_match_of_metadata_is_refused() {
    let Some(py) = python() else { return };
    let (bench, package, _) = bench_with_package("1.0.0");
    let producer = Producer::init(&py, 86400);
    producer.add(&package, "a.flpkg"); // targets 2, snapshot 2
    let server = Server::start(&py, &producer.repo());
    let config = producer.station(&server.base(), &bench.path("cache"));
    Repository::sync(&config).unwrap();
    producer.add(&package, "b.flpkg"); // targets 3, snapshot 3, timestamp 3

    // The new timestamp with an old snapshot's content under the new snapshot's name.
    let snapshot3 = std::fs::read(producer.metadata("3.snapshot.json")).unwrap();
    std::fs::copy(
        producer.metadata("2.snapshot.json"),
        producer.metadata("3.snapshot.json"),
    )
    .unwrap();
    for cache in ["cache", "fresh-1"] {
        let station = producer.station(&server.base(), &bench.path(cache));
        let e = Repository::sync(&station).unwrap_err();
        assert!(matches!(e, RepoError::Rejected { .. }), "{e}");
        assert!(e.to_string().contains("version mismatch"), "{e}");
    }
    std::fs::write(producer.metadata("3.snapshot.json"), snapshot3).unwrap();

    // The new snapshot with an old targets file under the new targets' name.
    std::fs::copy(
        producer.metadata("2.targets.json"),
        producer.metadata("3.targets.json"),
    )
    .unwrap();
    for cache in ["cache", "fresh-2"] {
        let station = producer.station(&server.base(), &bench.path(cache));
        let e = Repository::sync(&station).unwrap_err();
        assert!(matches!(e, RepoError::Rejected { .. }), "{e}");
    }
    assert_eq!(Repository::offline(&config).unwrap().targets().len(), 1);
}

#[test]
fn an_offline_station_works_from_its_cache_until_the_metadata_expires() {
    let Some(py) = python() else { return };
    let (bench, package, trust) = bench_with_package("3.1.0");
    let producer = Producer::init(&py, 86400);
    producer.add(&package, "fw.flpkg");
    let cache = bench.path("cache");
    let server = Server::start(&py, &producer.repo());
    let config = producer.station(&server.base(), &cache);
    let online = Repository::sync(&config).unwrap();
    online.fetch_verified("fw.flpkg", &trust).unwrap();
    let expires = online.freshness().expires;
    drop(server);

    // Unreachable: the last verified metadata and the cached package still serve.
    let repo = Repository::sync(&config).unwrap();
    let freshness = repo.freshness();
    assert!(!freshness.online);
    assert!(freshness.unreachable.is_some());
    assert_eq!(freshness.expires, expires);
    let fetched = repo.fetch_verified("fw.flpkg", &trust).unwrap();
    assert_eq!(fetched.manifest.version.to_string(), "3.1.0");
    assert_eq!(Repository::offline(&config).unwrap().targets().len(), 1);

    // A timestamp that holds for a few seconds (the tolerated disconnection, shortened),
    // synced once; then the repository goes away for good.
    producer.run(&["timestamp", "--expires", "4"]);
    let server = Server::start(&py, &producer.repo());
    let config = producer.station(&server.base(), &cache);
    let repo = Repository::sync(&config).unwrap();
    drop(server);
    let expires = repo.freshness().expires;
    assert!(expires <= SystemTime::now() + Duration::from_secs(5));

    // Past the expiry every way in is refused, saying since when and what to do.
    let wait = expires
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        + Duration::from_millis(1100);
    std::thread::sleep(wait);
    let since = humantime::format_rfc3339_seconds(expires).to_string();
    let stale = |e: RepoError| {
        assert!(matches!(e, RepoError::Stale { .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.contains(&since) && text.contains("flashline repo sync"),
            "{text}"
        );
    };
    stale(Repository::offline(&config).unwrap_err());
    stale(Repository::sync(&config).unwrap_err());
    stale(repo.fetch("fw.flpkg").unwrap_err());
    stale(repo.fetch_verified("fw.flpkg", &trust).unwrap_err());

    let out = bench.run(&[
        "repo",
        "list",
        "--metadata-url",
        config.metadata_url.as_str(),
        "--targets-url",
        config.targets_url.as_str(),
        "--root",
        config.root.to_str().unwrap(),
        "--cache",
        cache.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("stale") && stderr.contains(&since),
        "{stderr}"
    );
}

/// The GUI's repository picker, driven by label: configured by `fleet.toml` in
/// flashline's home, it lists the repository's package, downloads and checks it on
/// request, shows its version from the verified manifest, and opens it.
#[cfg(feature = "gui")]
#[test]
fn the_gui_picker_lists_checks_and_opens_repository_packages() {
    use egui_kittest::kittest::Queryable as _;

    use flashline::gui::repo::{Listing, RowPackage};
    use flashline::gui::state::{AppState, PackageState};
    use flashline::gui::FlashlineApp;

    let Some(py) = python() else { return };
    let (bench, package, _) = bench_with_package("4.0.0");
    let producer = Producer::init(&py, 86400);
    producer.add(&package, "phone-fw-4.0.0.flpkg");
    let server = Server::start(&py, &producer.repo());
    let home = bench.path("gui-home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(
        home.join("fleet.toml"),
        format!(
            "[repository]\nmetadata_url = \"{0}metadata/\"\ntargets_url = \"{0}targets/\"\nroot = {1:?}\ncache = \"cache\"\n",
            server.base(),
            producer.metadata("1.root.json")
        ),
    )
    .unwrap();
    let mut config = common::gui::app_config(&home, bench.path("keys"));
    config.bridge.scan_every = Duration::from_millis(500);
    let mut harness = egui_kittest::Harness::builder()
        .with_size([1400.0, 1000.0])
        .build_eframe(move |cc| FlashlineApp::new(cc, config).unwrap());
    let wait = |harness: &mut egui_kittest::Harness<'static, FlashlineApp>,
                what: &str,
                done: &dyn Fn(&AppState) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done(harness.state().state()) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            harness.step();
            std::thread::sleep(Duration::from_millis(10));
        }
        for _ in 0..3 {
            harness.step();
        }
    };
    wait(&mut harness, "the sync", &|s| {
        matches!(s.repo.listing, Listing::Ready(_))
    });
    harness.get_by_label("Repository packages");
    harness.get_by_label("phone-fw-4.0.0.flpkg");
    harness.get_by_label_contains("Metadata synced; verified");
    harness.get_by_label("not downloaded");
    harness.get_by_label("Download and check").click();
    wait(&mut harness, "the package check", &|s| {
        matches!(s.repo.rows[0].package, RowPackage::Verified { .. })
    });
    harness.get_by_label("phone-fw 4.0.0");
    harness.get_by_label("Open").click();
    wait(&mut harness, "the package card", &|s| {
        matches!(s.package, PackageState::Ready(_))
    });
    harness.get_by_label_contains("Verified: signed by release");
    let PackageState::Ready(card) = &harness.state().state().package else {
        unreachable!()
    };
    assert_eq!(card.version, "4.0.0");
    assert!(card.path.starts_with(home.join("cache/targets/sha256")));
}
