//! Packages from a TUF repository on plain static hosting: an HTTPS host, a LAN mirror, or
//! a folder or USB stick (`file://`).
//!
//! The repository decides *which* packages a station may take; flashline's own signed
//! package check still decides whether a package is *trusted*. So a package goes through
//! two checks: tough verifies the repository metadata (root → timestamp → snapshot →
//! targets: signatures, versions, expiry) and each download against its signed length and
//! sha256, and then [`Repository::fetch_verified`] runs flashline's package check with the
//! station's trust store. Neither check is skipped for the other.
//!
//! A station keeps the last metadata it verified ([`state`]) and the packages it
//! downloaded, named by their sha256 ([`cache`]). When the repository cannot be reached it
//! keeps working from them until that metadata expires; then every fetch is refused with
//! [`RepoError::Stale`], which says since when and what to do. The expiry is tough's
//! (`ExpirationEnforcement::Safe`) on the stored metadata, verified again at every open,
//! so the length of a freeze is the repository's timestamp expiry, never the station's.
//!
//! The surface is blocking, with timeouts; the tokio runtime tough needs stays inside.

mod cache;
mod config;
mod error;
mod state;
mod transport;

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use futures::StreamExt as _;
use serde::Serialize;
use tough::error::Error as ToughError;
use tough::{RepositoryLoader, TargetName};
use url::Url;

use crate::package::{Manifest, Package, Signer, TrustStore};
use cache::TargetCache;
pub use error::RepoError;
use state::{State, Verified};

/// Loading the metadata (a few small files) may take at most this long.
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a station takes packages from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoConfig {
    /// The folder holding `timestamp.json`, `N.snapshot.json`, ….
    pub metadata_url: Url,
    /// The folder holding the targets (`<sha256>.<name>` with consistent snapshots).
    pub targets_url: Url,
    /// The pinned `root.json`: the trust anchor, shipped to the station out of band.
    pub root: PathBuf,
    /// The station's cache folder (metadata under `tuf/`, packages under `targets/`).
    pub cache: PathBuf,
}

/// One package the repository's signed targets metadata lists.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RepoTarget {
    /// The target name.
    pub name: String,
    /// Its signed length in bytes.
    pub length: u64,
    /// Its signed sha256, lowercase hex (also its name in the cache).
    pub sha256: String,
    /// The target's signed `custom` object (e.g. rollout policy), `{}` when absent.
    pub custom: serde_json::Value,
}

/// How fresh the metadata a [`Repository`] works from is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Freshness {
    /// When this station last verified metadata from the repository.
    pub verified_at: SystemTime,
    /// When the earliest of that metadata's roles expires; from then on every fetch is
    /// refused until a sync succeeds.
    pub expires: SystemTime,
    /// Whether the repository answered just now (a sync that verified new metadata), as
    /// opposed to working from the stored metadata.
    pub online: bool,
    /// Why the repository could not be reached, when a sync fell back to the stored
    /// metadata.
    pub unreachable: Option<String>,
}

impl Freshness {
    /// Whether the metadata has expired at `now`.
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        now >= self.expires
    }

    /// One line for people: where the metadata comes from and until when it holds.
    pub fn describe(&self) -> String {
        let source = if self.online {
            "synced".to_string()
        } else {
            match &self.unreachable {
                Some(reason) => format!("offline (repository unreachable: {reason})"),
                None => "offline".to_string(),
            }
        };
        format!(
            "{source}; verified {}, expires {}",
            error::rfc3339(self.verified_at),
            error::rfc3339(self.expires)
        )
    }
}

/// For `--json` and status pages: times as RFC 3339 strings.
impl Serialize for Freshness {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut s = serializer.serialize_struct("Freshness", 4)?;
        s.serialize_field("verified_at", &error::rfc3339(self.verified_at))?;
        s.serialize_field("expires", &error::rfc3339(self.expires))?;
        s.serialize_field("online", &self.online)?;
        s.serialize_field("unreachable", &self.unreachable)?;
        s.end()
    }
}

/// A package fetched from the repository and checked twice: by TUF (length and sha256
/// from the signed targets metadata) and by flashline's package check (signatures against
/// the trust store, every image hash).
#[derive(Debug, Clone)]
pub struct FetchedPackage {
    /// The target name.
    pub target: String,
    /// The package file in the cache.
    pub path: PathBuf,
    /// Its verified manifest.
    pub manifest: Manifest,
    /// Who signed it, as the trust store knows them.
    pub signer: Signer,
}

/// A repository's verified metadata, and the way to its packages.
pub struct Repository {
    inner: tough::Repository,
    config: RepoConfig,
    freshness: Freshness,
    runtime: tokio::runtime::Runtime,
    /// This repository's own copy of the datastore (see `state`).
    _datastore: tempfile::TempDir,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("config", &self.config)
            .field("freshness", &self.freshness)
            .finish_non_exhaustive()
    }
}

impl Repository {
    /// Refreshes the metadata (root chain → timestamp → snapshot → targets), verified by
    /// tough against the pinned root and what this station already trusts. If the
    /// repository cannot be reached, the last verified metadata is used while it is
    /// unexpired ([`Freshness::online`] is then false). Metadata that fails verification
    /// (a bad signature, a rollback, expired metadata served, files that do not belong
    /// together) is refused and nothing of it is kept: [`Repository::offline`] still opens
    /// what was verified before.
    pub fn sync(config: &RepoConfig) -> Result<Repository, RepoError> {
        let runtime = runtime()?;
        let state = State::open(&config.cache)?;
        let _lock = state.lock()?;
        let root = read_root(config)?;
        let datastore = state.begin()?;
        let recorder = transport::Recorder::new(&config.metadata_url);
        let started = SystemTime::now();
        let loader = RepositoryLoader::new(
            &root,
            config.metadata_url.clone(),
            config.targets_url.clone(),
        )
        .transport(recorder.clone())
        .datastore(datastore);
        let loaded = load(&runtime, loader);
        let unreachable = match loaded {
            Ok(Ok(loaded)) => {
                state.commit(
                    &recorder.files(),
                    Verified::new(started, earliest_expiry(&loaded)),
                )?;
                return open_verified(config, &state, runtime, Source::Synced);
            }
            Ok(Err(e)) if transport::is_unreachable(&e) => e.to_string(),
            Ok(Err(e)) => {
                state.abandon();
                tracing::warn!(url = %config.metadata_url, "repository metadata refused: {e}");
                return Err(transport::refusal(&e));
            }
            Err(_) => format!("no answer within {} s", LOAD_TIMEOUT.as_secs()),
        };
        state.abandon();
        tracing::warn!(
            url = %config.metadata_url,
            "repository unreachable, working from the last verified metadata: {unreachable}"
        );
        let source = Source::Unreachable(unreachable.clone());
        open_verified(config, &state, runtime, source).map_err(|e| match e {
            RepoError::NotSynced => RepoError::Unreachable {
                url: config.metadata_url.to_string(),
                reason: unreachable,
            },
            e => e,
        })
    }

    /// Without the network: the last verified metadata, verified again from the cache, or
    /// [`RepoError::Stale`] once it has expired.
    pub fn offline(config: &RepoConfig) -> Result<Repository, RepoError> {
        let state = State::open(&config.cache)?;
        let _lock = state.lock()?;
        open_verified(config, &state, runtime()?, Source::Offline)
    }

    /// The packages the signed targets metadata lists, by name.
    pub fn targets(&self) -> Vec<RepoTarget> {
        let mut targets: Vec<RepoTarget> = self
            .inner
            .all_targets()
            .map(|(name, target)| RepoTarget {
                name: name.raw().to_string(),
                length: target.length,
                sha256: hex::encode(&target.hashes.sha256),
                custom: serde_json::Value::Object(
                    target
                        .custom
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ),
            })
            .collect();
        targets.sort_by(|a, b| a.name.cmp(&b.name));
        targets
    }

    /// How fresh the metadata is.
    pub fn freshness(&self) -> Freshness {
        self.freshness.clone()
    }

    /// Whether `name`'s file is in the cache with its signed length (a quick look for
    /// display; [`Repository::fetch`] still checks its hash before it is used).
    pub fn is_cached(&self, name: &str) -> bool {
        self.signed(name).is_some_and(|(length, sha256)| {
            let path = TargetCache::new(&self.config.cache).path(&sha256);
            std::fs::metadata(path).is_ok_and(|m| m.len() == length)
        })
    }

    /// `name`'s signed length and sha256 (lowercase hex).
    fn signed(&self, name: &str) -> Option<(u64, String)> {
        self.inner
            .all_targets()
            .find(|(n, _)| n.raw() == name)
            .map(|(_, t)| (t.length, hex::encode(&t.hashes.sha256)))
    }

    /// The package file in the content-addressed cache (downloaded if missing), checked
    /// against the signed length and sha256 and named by its sha256. flashline's own
    /// package check is the caller's to run ([`Repository::fetch_verified`] does both).
    pub fn fetch(&self, name: &str) -> Result<PathBuf, RepoError> {
        if self.freshness.is_expired_at(SystemTime::now()) {
            return Err(self.stale());
        }
        let unknown = || RepoError::UnknownTarget {
            name: name.to_string(),
        };
        let target_name = TargetName::new(name).map_err(|_| unknown())?;
        let (length, sha256) = self.signed(name).ok_or_else(unknown)?;
        let cache = TargetCache::new(&self.config.cache);
        if let Some(path) = cache.lookup(&sha256, length)? {
            return Ok(path);
        }
        let mut temp = cache.temp()?;
        let temp_path = temp.path().to_owned();
        self.runtime.block_on(async {
            let stream = self
                .inner
                .read_target(&target_name)
                .await
                .map_err(|e| self.download_error(name, &e))?
                .ok_or_else(unknown)?;
            let mut stream = std::pin::pin!(stream);
            while let Some(chunk) = stream.next().await {
                let bytes = chunk.map_err(|e| self.download_error(name, &e))?;
                temp.write_all(&bytes).map_err(RepoError::io(&temp_path))?;
            }
            Ok::<(), RepoError>(())
        })?;
        let path = cache.store(temp, &sha256)?;
        tracing::info!(target = name, path = %path.display(), "package downloaded and checked by TUF");
        Ok(path)
    }

    /// [`Repository::fetch`], then flashline's full package check with `trust` (every
    /// signature, every image hash): a package from the repository is used only if both
    /// pass.
    pub fn fetch_verified(
        &self,
        name: &str,
        trust: &TrustStore,
    ) -> Result<FetchedPackage, RepoError> {
        let path = self.fetch(name)?;
        let refused = |source| RepoError::Package {
            name: name.to_string(),
            source,
        };
        let package = Package::open(&path).map_err(refused)?;
        let signer = package.check(trust).map_err(refused)?;
        Ok(FetchedPackage {
            target: name.to_string(),
            manifest: package.manifest().clone(),
            path,
            signer,
        })
    }

    fn stale(&self) -> RepoError {
        RepoError::Stale {
            since: self.freshness.expires,
            verified_at: Some(self.freshness.verified_at),
        }
    }

    fn download_error(&self, name: &str, error: &ToughError) -> RepoError {
        match error {
            ToughError::ExpiredMetadata { .. } => self.stale(),
            ToughError::Transport { .. } if transport::is_unreachable(error) => {
                RepoError::Download {
                    name: name.to_string(),
                    reason: error.to_string(),
                }
            }
            ToughError::Transport { source, .. } => RepoError::TargetMismatch {
                name: name.to_string(),
                detail: std::error::Error::source(source)
                    .map_or_else(|| source.to_string(), |cause| cause.to_string()),
            },
            _ => transport::refusal(error),
        }
    }
}

/// Why the stored metadata is opened.
enum Source {
    /// A sync verified it just now.
    Synced,
    /// A sync could not reach the repository, for this reason.
    Unreachable(String),
    /// The network was not asked.
    Offline,
}

/// Opens the last verified metadata from the cache, verifying it again (signatures,
/// versions against the datastore, expiry); packages still come from `targets_url`.
fn open_verified(
    config: &RepoConfig,
    state: &State,
    runtime: tokio::runtime::Runtime,
    source: Source,
) -> Result<Repository, RepoError> {
    let verified = state.verified().ok_or(RepoError::NotSynced)?;
    let root = read_root(config)?;
    let metadata = std::path::absolute(state.metadata()).map_err(RepoError::io(&config.cache))?;
    let metadata_url = Url::from_directory_path(&metadata).map_err(|()| {
        RepoError::Config(format!("{} is not a usable folder", metadata.display()))
    })?;
    let datastore = state.private_datastore()?;
    let loader = RepositoryLoader::new(&root, metadata_url, config.targets_url.clone())
        .transport(transport::default_transport())
        .datastore(datastore.path());
    let loaded = load(&runtime, loader);
    let inner = match loaded {
        Ok(Ok(inner)) => inner,
        Ok(Err(ToughError::ExpiredMetadata { .. })) => {
            return Err(RepoError::Stale {
                since: verified.expires(),
                verified_at: Some(verified.verified_at()),
            })
        }
        Ok(Err(e)) => {
            return Err(RepoError::Rejected {
                detail: format!(
                    "the station's stored copy in {} no longer verifies ({e}); sync again",
                    state.current().display()
                ),
            })
        }
        Err(_) => {
            return Err(RepoError::Rejected {
                detail: "reading the station's stored copy timed out".into(),
            })
        }
    };
    Ok(Repository {
        freshness: Freshness {
            verified_at: verified.verified_at(),
            expires: earliest_expiry(&inner),
            online: matches!(source, Source::Synced),
            unreachable: match source {
                Source::Unreachable(reason) => Some(reason),
                Source::Synced | Source::Offline => None,
            },
        },
        inner,
        config: config.clone(),
        runtime,
        _datastore: datastore,
    })
}

/// The pinned root, read whole (it is small; tough bounds what it fetches itself).
fn read_root(config: &RepoConfig) -> Result<Vec<u8>, RepoError> {
    const MAX_ROOT: u64 = 1 << 20;
    let len = std::fs::metadata(&config.root)
        .map_err(RepoError::io(&config.root))?
        .len();
    if len > MAX_ROOT {
        return Err(RepoError::Config(format!(
            "the pinned root {} is {len} bytes; a root.json is a few KiB",
            config.root.display()
        )));
    }
    std::fs::read(&config.root).map_err(RepoError::io(&config.root))
}

/// When the first of the loaded roles expires.
fn earliest_expiry(repo: &tough::Repository) -> SystemTime {
    [
        repo.root().signed.expires,
        repo.timestamp().signed.expires,
        repo.snapshot().signed.expires,
        repo.targets().signed.expires,
    ]
    .into_iter()
    .min()
    .map(SystemTime::from)
    .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Runs a load on `runtime`, bounded by [`LOAD_TIMEOUT`].
fn load(
    runtime: &tokio::runtime::Runtime,
    loader: RepositoryLoader<'_>,
) -> Result<Result<tough::Repository, ToughError>, tokio::time::error::Elapsed> {
    runtime.block_on(async { tokio::time::timeout(LOAD_TIMEOUT, loader.load()).await })
}

fn runtime() -> Result<tokio::runtime::Runtime, RepoError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RepoError::Runtime)
}
