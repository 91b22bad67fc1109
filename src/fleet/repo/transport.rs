//! How bytes reach tough: its own transport (HTTP(S) and `file://`) with bounded timeouts,
//! a tap that keeps the metadata files exactly as they arrived, and the reading of tough's
//! errors as "unreachable" or "refused".

use std::collections::BTreeMap;
use std::error::Error as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use tough::error::Error as ToughError;
use tough::http::HttpTransportBuilder;
use tough::{DefaultTransport, Transport, TransportError, TransportStream};
use url::Url;

use super::RepoError;

/// Connecting to the host: a LAN mirror answers in milliseconds.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One whole request, body included: a full phone image over a slow link.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// Tries per request (tough resumes with a range request where the host allows it).
const TRIES: u32 = 3;

/// tough's transport for `http(s)://` and `file://` URLs, with flashline's timeouts.
pub(super) fn default_transport() -> DefaultTransport {
    DefaultTransport::new_with_http_settings(
        HttpTransportBuilder::new()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .tries(TRIES),
    )
}

/// The metadata files fetched during one load, by file name, byte for byte as received;
/// `None` for a fetch that failed (an HTTP transport reports a missing file only as its
/// stream's first item, e.g. the `N+1.root.json` that is looked for on every load).
type Recorded = Arc<Mutex<BTreeMap<String, Option<Vec<u8>>>>>;

/// A transport that keeps a copy of every file fetched from directly under the metadata
/// URL. Only a load that tough then verified is kept (see `state`), so what is stored is
/// exactly what was verified: the original bytes, which matter because a snapshot or
/// timestamp may bind a file by its hash.
#[derive(Debug, Clone)]
pub(super) struct Recorder {
    inner: DefaultTransport,
    /// The metadata URL, ending in `/`.
    base: String,
    files: Recorded,
}

impl Recorder {
    pub(super) fn new(metadata_url: &Url) -> Self {
        let mut base = metadata_url.to_string();
        if !base.ends_with('/') {
            base.push('/');
        }
        Recorder {
            inner: default_transport(),
            base,
            files: Recorded::default(),
        }
    }

    /// The files fetched whole so far.
    pub(super) fn files(&self) -> BTreeMap<String, Vec<u8>> {
        self.files
            .lock()
            .map(|files| {
                files
                    .iter()
                    .filter_map(|(name, bytes)| Some((name.clone(), bytes.clone()?)))
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[tough::async_trait]
impl Transport for Recorder {
    async fn fetch(&self, url: Url) -> Result<TransportStream, TransportError> {
        let stream = self.inner.fetch(url.clone()).await?;
        let Some(name) = url
            .as_str()
            .strip_prefix(&self.base)
            .filter(|name| is_file_name(name))
            .map(str::to_owned)
        else {
            return Ok(stream);
        };
        if let Ok(mut files) = self.files.lock() {
            files.insert(name.clone(), Some(Vec::new()));
        }
        let files = Arc::clone(&self.files);
        // tough bounds every metadata file's size on top of this stream, so the copy is
        // bounded too.
        Ok(Box::pin(stream.map(move |chunk| {
            if let Ok(mut files) = files.lock() {
                match (&chunk, files.get_mut(&name)) {
                    (Ok(bytes), Some(Some(file))) => file.extend_from_slice(bytes),
                    (Err(_), Some(file)) => *file = None,
                    _ => {}
                }
            }
            chunk
        })))
    }
}

/// A name that is one file in one folder (tough percent-encodes delegated role names).
fn is_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-%~".contains(&b))
}

/// Whether tough failed because the host could not be reached or did not answer (as
/// opposed to answering with bytes that failed verification). A file that exceeded its
/// signed length or did not match its signed hash is a refusal, not an outage.
pub(super) fn is_unreachable(error: &ToughError) -> bool {
    match error {
        ToughError::Transport { source, .. } => !is_integrity_failure(source),
        _ => false,
    }
}

fn is_integrity_failure(error: &TransportError) -> bool {
    error
        .source()
        .and_then(|cause| cause.downcast_ref::<ToughError>())
        .is_some_and(|cause| {
            matches!(
                cause,
                ToughError::HashMismatch { .. } | ToughError::MaxSizeExceeded { .. }
            )
        })
}

/// The refusal a failed verification means.
pub(super) fn refusal(error: &ToughError) -> RepoError {
    let detail = error.to_string();
    match error {
        ToughError::ExpiredMetadata { role, .. } => RepoError::Frozen {
            role: role.to_string(),
        },
        ToughError::OlderMetadata { .. }
        | ToughError::OlderSnapshotInTimestamp { .. }
        | ToughError::SnapshotRoleRollback { .. } => RepoError::Rollback { detail },
        _ => RepoError::Rejected { detail },
    }
}
