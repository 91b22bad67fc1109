//! Write-once report stores on the `object_store` crate: any `ObjectStore` (in memory or a
//! local folder, for tests and air-gapped sites), and S3-compatible storage.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::{ClientOptions, ObjectStore, PutMode, PutOptions, PutPayload, RetryConfig};

use super::{PutOutcome, ReportStore, StoreError};
use crate::fleet::secret::Secret;

/// Longest a connection attempt may take, within the overall time limit.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A write-once [`ReportStore`] over any `object_store` store, with its own runtime: the
/// station calls it from plain threads, and each put is bounded by `timeout`.
pub struct ObjectReportStore {
    store: Arc<dyn ObjectStore>,
    runtime: tokio::runtime::Runtime,
    timeout: Duration,
    name: String,
    /// Texts that must never appear in an error (the store's credentials).
    hidden: Vec<Secret>,
}

impl std::fmt::Debug for ObjectReportStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectReportStore")
            .field("store", &self.name)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ObjectReportStore {
    /// Wraps `store`; every put gives up after `timeout`.
    pub fn new(store: Arc<dyn ObjectStore>, timeout: Duration) -> Result<Self, StoreError> {
        let name = store.to_string();
        Self::named(store, timeout, name, Vec::new())
    }

    fn named(
        store: Arc<dyn ObjectStore>,
        timeout: Duration,
        name: String,
        hidden: Vec<Secret>,
    ) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Config(format!("cannot start the I/O runtime: {e}")))?;
        Ok(ObjectReportStore {
            store,
            runtime,
            timeout,
            name,
            hidden,
        })
    }

    /// `text` with every hidden secret replaced by `[redacted]`.
    fn scrub(&self, text: String) -> String {
        self.hidden
            .iter()
            .filter(|s| !s.expose().is_empty())
            .fold(text, |t, s| t.replace(s.expose(), "[redacted]"))
    }
}

impl ReportStore for ObjectReportStore {
    fn put_once(&self, key: &str, bytes: &[u8]) -> Result<PutOutcome, StoreError> {
        let path = object_store::path::Path::parse(key).map_err(|e| StoreError::BadKey {
            key: key.to_string(),
            reason: e.to_string(),
        })?;
        let put = self.store.put_opts(
            &path,
            PutPayload::from(bytes.to_vec()),
            PutOptions::from(PutMode::Create),
        );
        let answer = self
            .runtime
            .block_on(async { tokio::time::timeout(self.timeout, put).await });
        match answer {
            Ok(Ok(_)) => Ok(PutOutcome::Stored),
            Ok(Err(object_store::Error::AlreadyExists { .. })) => Ok(PutOutcome::AlreadyStored),
            Ok(Err(e)) => Err(StoreError::Store {
                store: self.name.clone(),
                key: key.to_string(),
                message: self.scrub(e.to_string()),
            }),
            Err(_) => Err(StoreError::Timeout {
                store: self.name.clone(),
                key: key.to_string(),
                after: self.timeout,
            }),
        }
    }
}

/// Where the S3-compatible store is and how to sign in.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// The endpoint (`https://s3.example.net`, or `http://127.0.0.1:PORT` for a store on
    /// this machine: plain HTTP is allowed to loopback addresses only).
    pub endpoint: url::Url,
    /// The bucket.
    pub bucket: String,
    /// The region to sign for (`us-east-1` for most S3-compatible stores).
    pub region: String,
    /// The credentials file (mode 0600; see [`S3Credentials`]).
    pub credentials: PathBuf,
    /// Time limit of one put, retries included.
    pub timeout: Duration,
}

/// S3 credentials, read from a private file in the AWS credentials format with one
/// profile:
///
/// ```text
/// [default]
/// aws_access_key_id = AKIA…
/// aws_secret_access_key = …
/// # aws_session_token = …   (optional)
/// ```
pub struct S3Credentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: Secret,
    /// A session token, for temporary credentials.
    pub session_token: Option<Secret>,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl S3Credentials {
    /// Reads the credentials file at `path` (see [`Secret::from_file`] for the checks).
    /// Errors name the line, never its value.
    pub fn from_file(path: &Path) -> Result<S3Credentials, StoreError> {
        let text = Secret::from_file(path).map_err(|e| StoreError::Config(e.to_string()))?;
        let bad =
            |what: String| StoreError::Config(format!("credentials {}: {what}", path.display()));
        let (mut id, mut secret, mut token) = (None, None, None);
        let mut sections = 0;
        for (n, line) in text.expose().lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.starts_with('[') {
                sections += 1;
                if sections > 1 {
                    return Err(bad(
                        "holds more than one profile; keep only the station's".into()
                    ));
                }
                continue;
            }
            let Some((name, value)) = line.split_once('=') else {
                return Err(bad(format!("line {} is not `name = value`", n + 1)));
            };
            let value = value.trim().to_string();
            match name.trim() {
                "aws_access_key_id" => id = Some(value),
                "aws_secret_access_key" => secret = Some(Secret::new(value)),
                "aws_session_token" => token = Some(Secret::new(value)),
                other => return Err(bad(format!("line {}: unknown name {other:?}", n + 1))),
            }
        }
        match (id, secret) {
            (Some(access_key_id), Some(secret_access_key)) if !access_key_id.is_empty() => {
                Ok(S3Credentials {
                    access_key_id,
                    secret_access_key,
                    session_token: token,
                })
            }
            _ => Err(bad(
                "needs both aws_access_key_id and aws_secret_access_key".into(),
            )),
        }
    }
}

/// A bucket of an S3-compatible store (AWS S3, MinIO, Ceph RGW, Garage, moto…), written
/// through `object_store`'s AmazonS3 with `PutMode::Create`, which sends
/// `If-None-Match: *`: the store answers 412 Precondition Failed for a key that exists,
/// and that is [`PutOutcome::AlreadyStored`].
#[derive(Debug)]
pub struct S3Store {
    inner: ObjectReportStore,
}

impl S3Store {
    /// Connects nothing yet: checks the configuration and reads the credentials.
    pub fn new(config: &S3Config) -> Result<S3Store, StoreError> {
        let credentials = S3Credentials::from_file(&config.credentials)?;
        let allow_http = match config.endpoint.scheme() {
            "https" => false,
            "http" if is_loopback(&config.endpoint) => true,
            "http" => {
                return Err(StoreError::Config(format!(
                    "{}: plain HTTP is allowed only to this machine (127.0.0.1, ::1, \
                     localhost); use https so the credentials' signatures and the reports \
                     are not sent in the clear",
                    config.endpoint
                )))
            }
            other => {
                return Err(StoreError::Config(format!(
                    "{}: scheme {other:?}, expected https",
                    config.endpoint
                )))
            }
        };
        let endpoint = config.endpoint.as_str().trim_end_matches('/');
        let options = ClientOptions::new()
            .with_timeout(config.timeout)
            .with_connect_timeout(CONNECT_TIMEOUT.min(config.timeout))
            .with_allow_http(allow_http);
        let retry = RetryConfig {
            max_retries: 2,
            retry_timeout: config.timeout,
            ..RetryConfig::default()
        };
        let mut builder = AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&credentials.access_key_id)
            .with_secret_access_key(credentials.secret_access_key.expose())
            .with_virtual_hosted_style_request(false)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_client_options(options)
            .with_retry(retry);
        if let Some(token) = &credentials.session_token {
            builder = builder.with_token(token.expose());
        }
        let mut hidden = vec![credentials.secret_access_key.clone()];
        hidden.extend(credentials.session_token.clone());
        let store = builder.build().map_err(|e| {
            let message = hidden
                .iter()
                .fold(e.to_string(), |t, s| t.replace(s.expose(), "[redacted]"));
            StoreError::Config(message)
        })?;
        let name = format!("{endpoint} bucket {}", config.bucket);
        Ok(S3Store {
            inner: ObjectReportStore::named(Arc::new(store), config.timeout, name, hidden)?,
        })
    }
}

impl ReportStore for S3Store {
    fn put_once(&self, key: &str, bytes: &[u8]) -> Result<PutOutcome, StoreError> {
        self.inner.put_once(key, bytes)
    }
}

/// Whether `url` names this machine.
fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(endpoint: &str, credentials: PathBuf) -> S3Config {
        S3Config {
            endpoint: endpoint.parse().unwrap(),
            bucket: "reports".into(),
            region: "us-east-1".into(),
            credentials,
            timeout: Duration::from_secs(2),
        }
    }

    #[test]
    fn credentials_are_read_private_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s3.credentials");
        crate::secure_fs::write_new(
            &path,
            b"[default]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = wJalrXUtnFEMI-secret\n",
        )
        .unwrap();
        let creds = S3Credentials::from_file(&path).unwrap();
        assert_eq!(creds.secret_access_key.expose(), "wJalrXUtnFEMI-secret");
        assert!(!format!("{creds:?}").contains("wJalr"));
        let store = S3Store::new(&config("http://127.0.0.1:9", path.clone())).unwrap();
        assert!(!format!("{store:?}").contains("wJalr"));
        let err = S3Store::new(&config("http://s3.example.net", path)).unwrap_err();
        assert!(err.to_string().contains("only to this machine"), "{err}");

        let bad = dir.path().join("bad");
        crate::secure_fs::write_new(&bad, b"aws_secret_access_key wJalrXUtnFEMI-secret\n").unwrap();
        let err = S3Credentials::from_file(&bad).unwrap_err().to_string();
        assert!(err.contains("line 1") && !err.contains("wJalr"), "{err}");
    }
}
