//! The DDI layer against gooseBit, a real third-party server of hawkBit's DDI API (PyPI
//! `goosebit`, FastAPI + SQLite), started by this test on loopback.
//!
//! gooseBit has no groups, no error threshold and no GatewayToken: a rollout is a software
//! on a "feed" that an operator pauses by hand, and device authentication is off unless
//! configured (`device_auth`, TargetToken only). These tests turn it on in gooseBit's `lax`
//! mode (`GOOSEBIT_DEVICE_AUTH__ENABLE=true`, `GOOSEBIT_DEVICE_AUTH__MODE=lax`): a device
//! without a token registers by polling without an `Authorization` header
//! (`DdiAuth::Anonymous`, what most of the test uses), and a device an operator gave a token
//! must poll with `TargetToken` and is refused with any other. GatewayToken is proven against
//! `hawkbit_mock` (tests/fleet_ddi.rs). What gooseBit does support is proven here:
//! registration by the first poll, configData, the deployment, feedback counted on gooseBit's
//! side (the rollout's `success_count` and `failure_count`), and a paused rollout that offers
//! nothing new.
//!
//! gooseBit publishes only a SHA-1 of its SWU artifact and no chunk metadata, so its
//! deployments name no flashline package: `poll` says so with `DdiError::NoPackage` and the
//! action id, which is what the station closes as failed (see `fleet::ddi::package`).
//!
//! The peer: `$FLASHLINE_PY` is a python with `goosebit` installed (it brings `aerich` and
//! `uvicorn`). Without it the test prints why and passes, unless FLASHLINE_REQUIRE_PEERS=1.
//! Start-up follows gooseBit's own instructions (its README, and the lifespan hook that
//! refuses an unmigrated database): `aerich init -t goosebit.db.config.TORTOISE_CONF
//! --location <package>/db/migrations`, `aerich --app models upgrade`, then `uvicorn
//! goosebit:app --host 127.0.0.1 --port P`, each in a fresh folder with its own database
//! (`GOOSEBIT_DB_URI`) and artifact folder (`GOOSEBIT_ARTIFACTS_DIR`).
#![cfg(feature = "fleet")]

use flashline::fleet::ddi::{
    device_attributes, ActionId, DdiAuth, DdiError, Execution, Feedback, HawkbitDdi, Outcome,
    Rollouts, TargetId,
};
use flashline::fleet::secret::Secret;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use url::Url;

/// How long migrations or the server's start may take (2 shared cores, cold Python caches).
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// Why the peer is missing: fails the test under FLASHLINE_REQUIRE_PEERS=1, else skips it.
fn missing(why: &str) -> Option<GooseBit> {
    if std::env::var_os("FLASHLINE_REQUIRE_PEERS").is_some_and(|v| v == "1") {
        panic!("gooseBit peer required but unavailable: {why}");
    }
    eprintln!("skipping the gooseBit test: {why}");
    None
}

/// A gooseBit server in its own folder, killed on drop.
struct GooseBit {
    child: Child,
    base: Url,
    dir: tempfile::TempDir,
}

impl Drop for GooseBit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `command` in `dir` to completion within [`START_TIMEOUT`], output into `dir/log`.
fn run_bounded(mut command: Command, dir: &Path, log: &str) -> Result<(), String> {
    let out = std::fs::File::create(dir.join(log)).map_err(|e| e.to_string())?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut child = command
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("{command:?}: {e}"))?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) if status.success() => return Ok(()),
            Some(status) => {
                let text = std::fs::read_to_string(dir.join(log)).unwrap_or_default();
                return Err(format!("{command:?} failed ({status}):\n{text}"));
            }
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{command:?} did not finish in {START_TIMEOUT:?}"));
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn python_command(python: &Path, dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(python);
    command
        .args(args)
        .env(
            "GOOSEBIT_DB_URI",
            format!("sqlite://{}", dir.join("db.sqlite3").display()),
        )
        .env("GOOSEBIT_ARTIFACTS_DIR", dir.join("artifacts"))
        .env("GOOSEBIT_DEVICE_AUTH__ENABLE", "true")
        .env("GOOSEBIT_DEVICE_AUTH__MODE", "lax")
        .env_remove("GOOSEBIT_SETTINGS");
    command
}

impl GooseBit {
    fn start() -> Option<GooseBit> {
        let Some(python) = std::env::var_os("FLASHLINE_PY").map(PathBuf::from) else {
            return missing("FLASHLINE_PY is not set (a python with `goosebit` installed)");
        };
        let package = Command::new(&python)
            .args([
                "-c",
                "import aerich, uvicorn, goosebit, os; print(os.path.dirname(goosebit.__file__))",
            ])
            .stderr(Stdio::null())
            .output();
        let package = match package {
            Ok(out) if out.status.success() => {
                PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
            }
            _ => {
                return missing(&format!(
                    "{} cannot import goosebit, aerich and uvicorn",
                    python.display()
                ))
            }
        };
        let dir = tempfile::tempdir().unwrap();
        let migrations = package.join("db").join("migrations");
        let migrations = migrations.to_str().unwrap();
        run_bounded(
            python_command(
                &python,
                dir.path(),
                &[
                    "-m",
                    "aerich",
                    "init",
                    "-t",
                    "goosebit.db.config.TORTOISE_CONF",
                    "--location",
                    migrations,
                ],
            ),
            dir.path(),
            "aerich-init.log",
        )
        .unwrap();
        run_bounded(
            python_command(
                &python,
                dir.path(),
                &["-m", "aerich", "--app", "models", "upgrade"],
            ),
            dir.path(),
            "aerich-upgrade.log",
        )
        .unwrap();

        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = python_command(
            &python,
            dir.path(),
            &[
                "-m",
                "uvicorn",
                "goosebit:app",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ],
        )
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
        let mut server = GooseBit {
            child,
            base: Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap(),
            dir,
        };
        server.wait_until_up();
        Some(server)
    }

    /// Waits, bounded, until the server accepts connections.
    fn wait_until_up(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = format!("127.0.0.1:{}", self.base.port().unwrap());
        loop {
            if std::net::TcpStream::connect(&addr).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("gooseBit exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "gooseBit did not start in {START_TIMEOUT:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

/// gooseBit's management API (`/api/v1`), as an operator would drive it.
struct Admin {
    base: Url,
    token: String,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Admin {
    /// Creates the first user (gooseBit's `/setup`) and keeps its bearer token.
    fn setup(base: &Url) -> Admin {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let answer: Value = runtime.block_on(async {
            http.post(base.join("setup").unwrap())
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body("username=admin%40example.com&password=flashline-test")
                .send()
                .await
                .unwrap()
                .error_for_status()
                .unwrap()
                .json()
                .await
                .unwrap()
        });
        Admin {
            base: base.clone(),
            token: answer["access_token"].as_str().unwrap().to_string(),
            http,
            runtime,
        }
    }

    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Value {
        self.runtime.block_on(async {
            let mut request = self
                .http
                .request(method, self.base.join(path).unwrap())
                .bearer_auth(&self.token);
            if !body.is_empty() {
                request = request.header("Content-Type", content_type).body(body);
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            let text = response.text().await.unwrap();
            assert!(status.is_success(), "{path}: {status} {text}");
            serde_json::from_str(&text).unwrap()
        })
    }

    fn json(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        self.call(
            method,
            path,
            "application/json",
            body.to_string().into_bytes(),
        )
    }

    /// Uploads a software image (multipart `file`), returns its id.
    fn upload(&self, filename: &str, bytes: &[u8]) -> u64 {
        let boundary = "flashline-test-boundary-7d1f";
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let answer = self.call(
            reqwest::Method::PUT,
            "api/v1/software",
            &format!("multipart/form-data; boundary={boundary}"),
            body,
        );
        answer["id"].as_u64().unwrap()
    }

    fn rollout(&self, id: u64) -> Value {
        let all = self.call(reqwest::Method::GET, "api/v1/rollouts", "", vec![]);
        all["rollouts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"].as_u64() == Some(id))
            .cloned()
            .unwrap()
    }

    fn device_ids(&self) -> Vec<String> {
        let all = self.call(reqwest::Method::GET, "api/v1/devices", "", vec![]);
        all["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect()
    }
}

/// A minimal SWU (what gooseBit accepts): a cpio "newc" archive whose first member is
/// `sw-description`, here with a flashline package as the payload.
fn swu(version: &str, payload: &[u8]) -> Vec<u8> {
    let description = format!("software =\n{{\n\tversion = \"{version}\";\n}};\n");
    let mut archive = Vec::new();
    for (ino, name, data) in [
        (1, "sw-description", description.as_bytes()),
        (2, "modem-x.flp", payload),
        (0, "TRAILER!!!", &[][..]),
    ] {
        let fields = [
            ino,
            0o100644,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0,
        ];
        archive.extend_from_slice(b"070701");
        for field in fields {
            archive.extend_from_slice(format!("{field:08X}").as_bytes());
        }
        archive.extend_from_slice(name.as_bytes());
        archive.push(0);
        archive.resize(archive.len().next_multiple_of(4), 0);
        archive.extend_from_slice(data);
        archive.resize(archive.len().next_multiple_of(4), 0);
    }
    archive.resize(archive.len().next_multiple_of(512), 0);
    archive
}

/// Polls until gooseBit has registered `id`, then uploads its attributes.
fn register(ddi: &HawkbitDdi, id: &TargetId, slot: &str) {
    let first = ddi.poll(id).unwrap();
    assert!(
        first.wants_config,
        "a new device is asked for its attributes"
    );
    assert_eq!(
        first.sleep,
        Duration::from_secs(10),
        "gooseBit's registration poll interval"
    );
    assert_eq!(first.deployment, None);
    ddi.put_config(
        id,
        &device_attributes("MF920U", "BD_MF920UV1.0.0B05", "S12", slot),
    )
    .unwrap();
}

/// The action gooseBit offers `id`: its deployments name no flashline package (SHA-1 only).
fn offered_action(ddi: &HawkbitDdi, id: &TargetId) -> ActionId {
    match ddi.poll(id) {
        Err(DdiError::NoPackage { action, why }) => {
            assert!(why.contains("SHA-256"), "{why}");
            action
        }
        other => panic!("expected gooseBit's SWU deployment, got {other:?}"),
    }
}

#[test]
fn goosebit_polling_deployment_feedback_pause_and_target_token() {
    let Some(server) = GooseBit::start() else {
        return;
    };
    let admin = Admin::setup(&server.base);
    target_token_is_checked(&server, &admin);
    let ddi = HawkbitDdi::with_auth(
        server.base.clone(),
        "DEFAULT",
        DdiAuth::Anonymous,
        Duration::from_secs(20),
    )
    .unwrap();
    let ids: Vec<TargetId> = ["A", "B", "C", "D"]
        .iter()
        .map(|s| {
            TargetId::derive(
                b"goosebit-test-salt",
                &format!("SERIAL-{s}"),
                Some("356938035643809"),
            )
        })
        .collect();
    let [a, b, c, d] = &ids[..] else {
        unreachable!()
    };

    // Registration by the first poll.
    for (n, id) in [a, b, d].into_iter().enumerate() {
        register(&ddi, id, &n.to_string());
    }
    let known = admin.device_ids();
    for id in [a, b, d] {
        assert!(
            known.contains(&id.to_string()),
            "{id} registered: {known:?}"
        );
    }

    // An operator uploads software and starts a rollout on the default feed.
    let image = swu("1.2.3", b"FLASHLINE package bytes stand here");
    let software = admin.upload("modem-x-1.2.3.swu", &image);
    let rollout = admin.json(
        reqwest::Method::PUT,
        "api/v1/rollouts",
        json!({"name": "modem-x 1.2.3", "feed": "default", "software_id": software}),
    )["id"]
        .as_u64()
        .unwrap();

    // The deployment: offered to each registered device as action = software id.
    let action = offered_action(&ddi, a);
    assert_eq!(action, ActionId(software));
    assert_eq!(offered_action(&ddi, b), action);
    assert_eq!(offered_action(&ddi, d), action);
    let base = ddi
        .deployment_base(a, action)
        .unwrap()
        .expect("deployment open");
    let artifact = &base.deployment.chunks[0].artifacts[0];
    assert_eq!(artifact.filename, "modem-x-1.2.3.swu");
    assert_eq!(artifact.size, Some(image.len() as u64));
    assert!(artifact.hashes.sha1.as_ref().is_some_and(|h| h.len() == 40));
    assert_eq!(artifact.hashes.sha256, None);

    // Feedback: A fails, B succeeds; gooseBit counts each once.
    let proceeding = Feedback::new(Execution::Proceeding, vec!["flashing 3 images".into()]);
    ddi.feedback(a, &action, &proceeding).unwrap();
    assert!(
        ddi.still_wanted(a, &action).unwrap(),
        "a running action stays offered"
    );
    let failure = Feedback::new(
        Execution::Closed(Outcome::Failure),
        vec!["system: device answered FAIL".into()],
    )
    .with_code(2)
    .with_progress(1, 3);
    ddi.feedback(a, &action, &failure).unwrap();
    let counts = admin.rollout(rollout);
    assert_eq!(
        (
            counts["failure_count"].as_u64(),
            counts["success_count"].as_u64()
        ),
        (Some(1), Some(0))
    );

    ddi.feedback(b, &action, &proceeding).unwrap();
    ddi.feedback(
        b,
        &action,
        &Feedback::new(Execution::Closed(Outcome::Success), vec!["done".into()]),
    )
    .unwrap();
    let counts = admin.rollout(rollout);
    assert_eq!(
        (
            counts["failure_count"].as_u64(),
            counts["success_count"].as_u64()
        ),
        (Some(1), Some(1))
    );

    // Closed actions are not offered again (A is in error, B runs the new version).
    for id in [a, b] {
        let poll = ddi.poll(id).unwrap();
        assert_eq!(poll.deployment, None, "{id}");
        assert!(!ddi.still_wanted(id, &action).unwrap());
    }

    // The operator pauses the rollout. gooseBit withdraws its open offer too (hawkBit's pause
    // would not: there only a cancel or `stop` withdraws), and a device registered after the
    // pause gets nothing.
    assert!(ddi.still_wanted(d, &action).unwrap());
    admin.json(
        reqwest::Method::PATCH,
        "api/v1/rollouts",
        json!({"ids": [rollout], "paused": true}),
    );
    assert!(
        !ddi.still_wanted(d, &action).unwrap(),
        "no write after the pause"
    );
    assert_eq!(ddi.deployment_base(d, action).unwrap().map(|b| b.id), None);
    register(&ddi, c, "7");
    let poll = ddi.poll(c).unwrap();
    assert_eq!(
        (poll.deployment, poll.cancel),
        (None, None),
        "paused: nothing new"
    );
    let counts = admin.rollout(rollout);
    assert_eq!(counts["paused"], json!(true));
    assert_eq!(
        (
            counts["failure_count"].as_u64(),
            counts["success_count"].as_u64()
        ),
        (Some(1), Some(1))
    );
}

/// A device an operator gave a token polls with `TargetToken`; any other token, or none, is
/// refused with 401.
fn target_token_is_checked(server: &GooseBit, admin: &Admin) {
    let id = TargetId::derive(b"goosebit-test-salt", "SERIAL-E", None);
    let token = "e5c1a0c4d2b3f6a7"; // gooseBit keeps at most 32 characters
    admin.json(
        reqwest::Method::PUT,
        "api/v1/devices",
        json!({"devices": [id.as_str()], "auth_token": token}),
    );
    let client = |auth| {
        HawkbitDdi::with_auth(
            server.base.clone(),
            "DEFAULT",
            auth,
            Duration::from_secs(20),
        )
        .unwrap()
    };

    let own = client(DdiAuth::TargetToken(Secret::new(token)));
    assert!(own.poll(&id).unwrap().wants_config);
    for other in [
        DdiAuth::TargetToken(Secret::new("0000000000000000")),
        DdiAuth::Anonymous,
    ] {
        match client(other).poll(&id) {
            Err(DdiError::Unauthorized { status: 401, .. }) => {}
            other => panic!("expected 401, got {other:?}"),
        }
    }
}
