//! The repository package picker: the packages a TUF repository offers this station, when
//! the station file (`fleet.toml` in flashline's home) has a `[repository]` table.
//!
//! Syncing and downloading take the network and hash whole packages, so they run on the
//! picker's own worker thread, which owns the [`Repository`]; the window only holds the
//! answers. A row shows the TUF target (name, size) and, once the package is in the cache
//! and has passed flashline's package check, its name and version from the verified
//! manifest. Packages already in the cache are checked after each sync; others are
//! downloaded only when asked. "Open" hands the cached file to the usual package opening,
//! which checks it once more like any other package.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};

use crate::fleet::repo::{Freshness, RepoConfig, RepoTarget, Repository};
use crate::package::TrustStore;

/// The picker.
#[derive(Debug, Default)]
pub struct RepoPicker {
    /// What the picker shows.
    pub listing: Listing,
    /// The packages, in the repository's order (by name).
    pub rows: Vec<RepoRow>,
    worker: Option<Worker>,
}

/// Where the picker stands.
#[derive(Debug, Default, Clone, PartialEq)]
pub enum Listing {
    /// No repository is configured: the picker is not shown.
    #[default]
    NotConfigured,
    /// A sync is running.
    Syncing,
    /// The verified metadata's freshness (synced just now, or from the cache while the
    /// repository is unreachable).
    Ready(Freshness),
    /// Nothing can be offered (stale metadata, a refused sync, never synced), in words.
    Failed(String),
}

/// One package the repository offers.
#[derive(Debug, Clone, PartialEq)]
pub struct RepoRow {
    /// The TUF target.
    pub target: RepoTarget,
    /// Its package, as far as it has been checked.
    pub package: RowPackage,
}

/// A row's package.
#[derive(Debug, Clone, PartialEq)]
pub enum RowPackage {
    /// Not in the cache.
    NotFetched,
    /// Being downloaded and checked.
    Checking,
    /// In the cache and verified: name and version from its signed manifest.
    Verified {
        /// The cached file.
        path: PathBuf,
        /// The package's name.
        name: String,
        /// Its version.
        version: String,
    },
    /// Refused by TUF or by the package check, or not downloadable now.
    Refused(String),
}

#[derive(Debug)]
struct Worker {
    asks: Sender<Ask>,
    answers: Receiver<Answer>,
}

enum Ask {
    Sync,
    Fetch(String),
}

enum Answer {
    Synced(Result<(Freshness, Vec<RepoTarget>, Vec<String>), String>),
    Checked(String, RowPackage),
}

impl RepoPicker {
    /// Reads the `[repository]` table of `<home>/fleet.toml`, if there is one, and starts
    /// a first sync. Packages are checked against the keys in `trust_dir`.
    pub fn configure_from_home(&mut self, home: &Path, trust_dir: &Path) {
        let file = home.join(crate::fleet::config::FILE);
        if !file.is_file() {
            return;
        }
        match RepoConfig::from_station_file(&file) {
            Ok(Some(config)) => self.configure(config, trust_dir.to_path_buf()),
            Ok(None) => {}
            Err(e) => self.listing = Listing::Failed(e.to_string()),
        }
    }

    /// Starts the worker for `config` and a first sync.
    pub fn configure(&mut self, config: RepoConfig, trust_dir: PathBuf) {
        let (asks, inbox) = mpsc::channel();
        let (outbox, answers) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("repo picker".into())
            .spawn(move || work(&config, &trust_dir, &inbox, &outbox));
        match spawned {
            Ok(_) => {
                self.worker = Some(Worker { asks, answers });
                self.sync();
            }
            Err(e) => self.listing = Listing::Failed(format!("cannot start the picker: {e}")),
        }
    }

    /// Whether the picker has anything to show.
    pub fn configured(&self) -> bool {
        self.listing != Listing::NotConfigured
    }

    /// Whether an answer is awaited (the window then keeps repainting).
    pub fn busy(&self) -> bool {
        self.listing == Listing::Syncing
            || self.rows.iter().any(|r| r.package == RowPackage::Checking)
    }

    /// Asks for a sync.
    pub fn sync(&mut self) {
        if self.ask(Ask::Sync) {
            self.listing = Listing::Syncing;
        }
    }

    /// Asks for `name` to be downloaded (if needed) and checked.
    pub fn fetch(&mut self, name: &str) {
        if self.ask(Ask::Fetch(name.to_string())) {
            if let Some(row) = self.rows.iter_mut().find(|r| r.target.name == name) {
                row.package = RowPackage::Checking;
            }
        }
    }

    fn ask(&self, ask: Ask) -> bool {
        self.worker
            .as_ref()
            .is_some_and(|w| w.asks.send(ask).is_ok())
    }

    /// Takes in the worker's answers.
    pub fn poll(&mut self) {
        let Some(worker) = &self.worker else {
            return;
        };
        let answers: Vec<Answer> = worker.answers.try_iter().collect();
        for answer in answers {
            match answer {
                Answer::Synced(Ok((freshness, targets, cached))) => {
                    self.listing = Listing::Ready(freshness);
                    self.rows = targets
                        .into_iter()
                        .map(|target| RepoRow {
                            package: if cached.contains(&target.name) {
                                RowPackage::Checking
                            } else {
                                RowPackage::NotFetched
                            },
                            target,
                        })
                        .collect();
                }
                Answer::Synced(Err(e)) => {
                    self.listing = Listing::Failed(e);
                    self.rows.clear();
                }
                Answer::Checked(name, package) => {
                    if let Some(row) = self.rows.iter_mut().find(|r| r.target.name == name) {
                        row.package = package;
                    }
                }
            }
        }
    }
}

/// The worker: owns the repository, answers asks until the picker is dropped.
fn work(config: &RepoConfig, trust_dir: &Path, inbox: &Receiver<Ask>, outbox: &Sender<Answer>) {
    let mut repo: Option<Repository> = None;
    for ask in inbox {
        let sent = match ask {
            Ask::Sync => {
                let synced = Repository::sync(config);
                let answer = synced.as_ref().map_err(ToString::to_string).map(|r| {
                    let targets = r.targets();
                    let cached = targets
                        .iter()
                        .filter(|t| r.is_cached(&t.name))
                        .map(|t| t.name.clone())
                        .collect::<Vec<_>>();
                    (r.freshness(), targets, cached)
                });
                let cached = answer
                    .as_ref()
                    .map(|(_, _, cached)| cached.clone())
                    .unwrap_or_default();
                repo = synced.ok();
                let sent = outbox.send(Answer::Synced(answer)).is_ok();
                sent && cached
                    .iter()
                    .all(|name| outbox.send(check(repo.as_ref(), name, trust_dir)).is_ok())
            }
            Ask::Fetch(name) => outbox.send(check(repo.as_ref(), &name, trust_dir)).is_ok(),
        };
        if !sent {
            return;
        }
    }
}

/// Downloads (if needed) and checks one package with the trust folder's keys.
fn check(repo: Option<&Repository>, name: &str, trust_dir: &Path) -> Answer {
    let package = match repo {
        None => RowPackage::Refused("the repository is not synced".into()),
        Some(repo) => match TrustStore::load_dir(trust_dir)
            .map_err(|e| format!("the trust folder {}: {e}", trust_dir.display()))
            .and_then(|trust| repo.fetch_verified(name, &trust).map_err(|e| e.to_string()))
        {
            Ok(fetched) => RowPackage::Verified {
                path: fetched.path,
                name: fetched.manifest.name,
                version: fetched.manifest.version.to_string(),
            },
            Err(e) => RowPackage::Refused(e),
        },
    };
    Answer::Checked(name.to_string(), package)
}
