//! moto's S3 server, an independent S3 store for the fleet report tests, and a small
//! boto3 client to look into it.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// moto's S3 server on 127.0.0.1, killed on drop; its log and recording go to `dir`. It records every request it serves
/// (moto's recorder) so that a restart can replay them: the restarted server has the
/// objects the first one stored, as a real store does after an outage.
pub struct Moto {
    child: Option<Child>,
    python: PathBuf,
    port: u16,
    recording: PathBuf,
}

impl Moto {
    pub fn start(python: &Path, dir: &Path) -> Moto {
        std::fs::create_dir_all(dir).unwrap();
        let mut moto = Moto {
            child: None,
            python: python.to_owned(),
            port: super::free_port(),
            recording: dir.join("moto-recording.jsonl"),
        };
        moto.spawn();
        moto
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.recording.with_extension("log")).unwrap();
        let child = Command::new(&self.python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .env("MOTO_ENABLE_RECORDING", "True")
            .env("MOTO_RECORDER_FILEPATH", &self.recording)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start moto");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not start within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The store goes away.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The store comes back on the same address with what it held.
    pub fn restart(&mut self) {
        self.spawn();
        let replayed = self.boto3("replay", "");
        assert!(replayed.trim() == "ok", "{replayed}");
    }

    /// Runs a small boto3 client against the server: an independent S3 client.
    pub fn boto3(&self, action: &str, bucket: &str) -> String {
        self.boto3_with(action, bucket, "")
    }

    pub fn boto3_with(&self, action: &str, bucket: &str, extra: &str) -> String {
        const SCRIPT: &str = r#"
import json, sys, urllib.request
import boto3
from botocore.config import Config
action, endpoint, bucket = sys.argv[1:4]
if action == "replay":
    req = urllib.request.Request(endpoint + "/moto-api/recorder/replay-recording", method="POST")
    urllib.request.urlopen(req, timeout=60).read()
    print("ok")
    sys.exit(0)
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="AKIDFLASHLINE", aws_secret_access_key="x",
                  config=Config(connect_timeout=5, read_timeout=20, retries={"max_attempts": 1}))
if action == "create":
    s3.create_bucket(Bucket=bucket)
    print("ok")
elif action == "verify":
    # An independent check of the envelopes (pyca/cryptography's ed25519): the seal covers
    # the report context, the key's length (8 bytes, big-endian), the key and the report.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(sys.argv[4]))
    good = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            env = json.loads(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())
            if env.get("format") != "flashline-report-envelope-v1" or env["key"] != o["Key"]:
                continue
            tag, key_id, signature = env["seal"].split()
            key = env["key"].encode()
            signed = (b"flashline fleet report v1\0" + len(key).to_bytes(8, "big") + key
                      + env["report"].encode())
            try:
                public.verify(bytes.fromhex(signature), signed)
                good.append(o["Key"])
            except Exception:
                pass
    print(json.dumps(good))
elif action == "dump":
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            out[o["Key"]] = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read().decode()
    print(json.dumps(out))
"#;
        let out = Command::new(&self.python)
            .args(["-c", SCRIPT, action, &self.endpoint(), bucket, extra])
            .output()
            .expect("run boto3");
        assert!(
            out.status.success(),
            "boto3 {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn dump(&self, bucket: &str) -> BTreeMap<String, String> {
        serde_json::from_str(&self.boto3("dump", bucket)).unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}
