//! The station as a fleet member: hawkBit's device API spoken as a gateway for every device
//! on the bench, packages from the TUF repository, reports into the bucket through the
//! outbox. [`Gateway`] is the station's [`FleetLink`].
//!
//! Who decides what:
//! * hawkBit decides **who and when**: a device is flashed only while an open action
//!   offers it a package, and that is asked again right before the first write (a paused
//!   rollout leaves actions open; the rollout manager cancels them, and a cancelled action
//!   writes nothing).
//! * TUF decides **what is authentic**: the package is fetched by its TUF target name, its
//!   length and hash checked by TUF and compared with the hash hawkBit's distribution set
//!   names; the station then checks its signature with its own trust store.
//! * The bench's canary and kill switch stay the local breaker (the station machine).
//!
//! Whatever cannot be confirmed is not flashed: a hawkBit that does not answer, a
//! repository whose metadata cannot be verified, a hash that does not match.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::config::{ConfigError, FleetConfig};
use super::ddi::{
    device_attributes, ActionId, DdiError, Execution, Feedback, HawkbitDdi, Outcome as DdiOutcome,
    PackageRef, Rollouts, TargetId,
};
use super::repo::{RepoConfig, Repository};
use super::reports::{batch_key, report_key, Outbox, ReportStore, S3Config, S3Store};
use super::secret::Secret;
use crate::engine::station::StationKey;
use crate::engine::{Outcome, Report};
use crate::station::fleet::{FleetDevice, FleetLink, FleetStatus, Link, LinkState, Offer, Ticket};
use crate::station::BatchReport;

/// How often the repository's metadata is refreshed while the station is asked for
/// packages (its timestamp is a few hundred bytes).
const REFRESH: Duration = Duration::from_secs(60);
/// The outbox is looked at this often while it holds reports (it keeps its own backoff
/// while the store does not answer)…
const DRAIN_EVERY: Duration = Duration::from_millis(500);
/// …backing off from this…
const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// …up to this.
const BACKOFF_MAX: Duration = Duration::from_secs(8);
/// The longest one put to the store may take.
const PUT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a station cannot join its fleet.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The station file, or a file it names.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A part could not be set up (a secret file, a client).
    #[error("{part}: {why}")]
    Setup {
        /// Which part.
        part: &'static str,
        /// Why.
        why: String,
    },
}

/// The station's link to hawkBit, the repository and the bucket.
pub struct Gateway {
    station: String,
    salt: Vec<u8>,
    poll: (Duration, Duration),
    rollouts: Arc<dyn Rollouts>,
    packages: Packages,
    outbox: Arc<Outbox>,
    status: Arc<Mutex<FleetStatus>>,
    /// Target ids of the devices asked about, by their text.
    targets: Mutex<HashMap<String, TargetId>>,
    drainer: Drainer,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No salt, no token: only what the board shows.
        f.debug_struct("Gateway")
            .field("station", &self.station)
            .finish_non_exhaustive()
    }
}

/// The parts a gateway joins; the real ones come from [`Gateway::connect`], tests may
/// bring their own.
pub struct Parts {
    /// The rollout server.
    pub rollouts: Arc<dyn Rollouts>,
    /// Where it is, for the board.
    pub rollouts_at: String,
    /// The repository's settings.
    pub repository: RepoConfig,
    /// The report store.
    pub store: Arc<dyn ReportStore>,
    /// Where it is, for the board.
    pub store_at: String,
    /// The outbox.
    pub outbox: Outbox,
}

impl Gateway {
    /// Joins the fleet `config` describes: reads the secrets (mode 0600), sets up the
    /// clients and tries a first repository sync (a failure is shown, not fatal: the
    /// station keeps its last verified metadata while it is fresh). Reports are sealed
    /// with the station key under flashline's home `home`.
    pub fn connect(config: &FleetConfig, home: &Path) -> Result<Gateway, GatewayError> {
        let setup = |part| {
            move |e: &dyn std::fmt::Display| GatewayError::Setup {
                part,
                why: e.to_string(),
            }
        };
        let salt = config.id_salt()?;
        let token = Secret::from_file(&config.hawkbit.token_file)
            .map_err(|e| setup("[hawkbit] token_file")(&e))?;
        let rollouts = HawkbitDdi::new(config.hawkbit.url.clone(), &config.hawkbit.tenant, token)
            .map_err(|e| setup("hawkBit")(&e))?;
        let r = &config.reports;
        let store = S3Store::new(&S3Config {
            endpoint: r.endpoint.clone(),
            bucket: r.bucket.clone(),
            region: r.region.clone(),
            credentials: r.credentials_file.clone(),
            timeout: PUT_TIMEOUT,
        })
        .map_err(|e| setup("[reports]")(&e))?;
        let key = StationKey::open_or_create(&home.join(crate::engine::station::FILE))
            .map_err(|e| setup("station key")(&e))?;
        let outbox = Outbox::open_with_key(&r.outbox, key)
            .map_err(|e| setup("[reports] outbox")(&e))?
            .with_backoff(BACKOFF_MIN, BACKOFF_MAX);
        let parts = Parts {
            rollouts: Arc::new(rollouts),
            rollouts_at: config.hawkbit.url.to_string(),
            repository: RepoConfig {
                metadata_url: config.repository.metadata_url.clone(),
                targets_url: config.repository.targets_url.clone(),
                root: config.repository.root.clone(),
                cache: config.repository.cache.clone(),
            },
            store: Arc::new(store),
            store_at: format!("{} bucket {}", r.endpoint, r.bucket),
            outbox,
        };
        Ok(Gateway::new(
            &config.station,
            salt,
            (config.hawkbit.poll_min, config.hawkbit.poll_max),
            parts,
        ))
    }

    /// A gateway over `parts`, for station `station`, deriving target ids with `salt` and
    /// polling each device within `poll` (min, max).
    pub fn new(station: &str, salt: Vec<u8>, poll: (Duration, Duration), parts: Parts) -> Self {
        let status = Arc::new(Mutex::new(FleetStatus {
            station: station.to_string(),
            repository: link(parts.repository.metadata_url.as_str()),
            rollouts: link(&parts.rollouts_at),
            reports: link(&parts.store_at),
            outbox_pending: parts.outbox.pending(),
            ..FleetStatus::default()
        }));
        let outbox = Arc::new(parts.outbox);
        let drainer = Drainer::start(Arc::clone(&outbox), parts.store, Arc::clone(&status));
        let gateway = Gateway {
            station: station.to_string(),
            salt,
            poll,
            rollouts: parts.rollouts,
            packages: Packages {
                config: parts.repository,
                current: Mutex::new(None),
            },
            outbox,
            status,
            targets: Mutex::new(HashMap::new()),
            drainer,
        };
        gateway.refresh(true);
        gateway
    }

    /// Refreshes the repository's metadata if it is older than [`REFRESH`] (or `now`).
    fn refresh(&self, now: bool) {
        let mut current = lock(&self.packages.current);
        if !now
            && current
                .as_ref()
                .is_some_and(|(_, at)| at.elapsed() < REFRESH)
        {
            return;
        }
        // A sync that cannot reach the repository keeps the last verified metadata while
        // it is unexpired (and says so in its freshness).
        let result = Repository::sync(&self.packages.config);
        let mut status = lock(&self.status);
        match result {
            Ok(repo) => {
                let fresh = repo.freshness();
                status.repository.state = if fresh.online {
                    LinkState::Up
                } else {
                    LinkState::Down
                };
                status.repository.detail = fresh.unreachable.clone();
                status.last_sync = Some(rfc3339(fresh.verified_at));
                status.fresh_until = Some(rfc3339(fresh.expires));
                *current = Some((repo, Instant::now()));
            }
            Err(e) => {
                tracing::warn!("repository: {e}");
                status.repository.state = LinkState::Down;
                status.repository.detail = Some(e.to_string());
                *current = None;
            }
        }
    }

    fn target(&self, device: &FleetDevice) -> TargetId {
        let serial = device.serial.as_deref().unwrap_or(&device.slot);
        let target = TargetId::derive(&self.salt, serial, device.imei.as_deref());
        lock(&self.targets).insert(target.as_str().to_string(), target.clone());
        target
    }

    fn target_of(&self, ticket: &Ticket) -> Option<TargetId> {
        lock(&self.targets).get(&ticket.target).cloned()
    }

    /// The server's sleep, kept within the station's bounds.
    fn sleep(&self, asked: Duration) -> Duration {
        asked.clamp(self.poll.0, self.poll.1)
    }

    fn rollouts_state(&self, result: Result<(), String>) {
        let mut status = lock(&self.status);
        match result {
            Ok(()) => {
                status.rollouts.state = LinkState::Up;
                status.rollouts.detail = None;
            }
            Err(e) => {
                status.rollouts.state = LinkState::Down;
                status.rollouts.detail = Some(e);
            }
        }
    }

    /// Sends `feedback` on `ticket`'s action; a failure is logged and shown (the action
    /// stays open on the server, which is what a person then sees there).
    fn feedback(&self, ticket: &Ticket, execution: Execution, details: Vec<String>) {
        let Some(target) = self.target_of(ticket) else {
            return;
        };
        let feedback = Feedback::new(execution, details);
        let result = self
            .rollouts
            .feedback(&target, &ActionId(ticket.action), &feedback)
            .map_err(|e| e.to_string());
        if let Err(e) = &result {
            tracing::warn!(action = ticket.action, "hawkBit feedback not sent: {e}");
        }
        self.rollouts_state(result);
    }

    /// Queues the signed report of `ticket`'s job for the bucket, and wakes the drainer.
    fn enqueue(&self, ticket: &Ticket, report: &Report, path: Option<&Path>) {
        let key = report_key(&self.station, &ticket.target, &job_id(ticket));
        let body = serde_json::json!({
            "station": self.station,
            "target": ticket.target,
            "action": ticket.action,
            "package": ticket.package,
            "report_file": path,
            "job": report,
        });
        self.queue(&key, &body);
    }

    /// Queues `body` under `key` and wakes the drainer.
    fn queue(&self, key: &str, body: &serde_json::Value) {
        let bytes = serde_json::to_vec_pretty(body).expect("reports serialise");
        match self.outbox.enqueue(key, &bytes) {
            Ok(()) => self.drainer.wake(),
            Err(e) => tracing::error!(key = %key, "report not queued: {e}"),
        }
        lock(&self.status).outbox_pending = self.outbox.pending();
    }
}

impl FleetLink for Gateway {
    fn offer(&self, device: &FleetDevice) -> Offer {
        let target = self.target(device);
        let poll = match self.rollouts.poll(&target) {
            Ok(poll) => {
                self.rollouts_state(Ok(()));
                poll
            }
            Err(DdiError::NoPackage { action, why }) => {
                // hawkBit answered, with an action flashline cannot carry out (no TUF
                // target, no SHA-256): close it as failed so that it does not come back
                // at every poll, and say why on the server.
                self.rollouts_state(Ok(()));
                let ticket = Ticket {
                    target: target.as_str().to_string(),
                    action: action.0,
                    package: String::new(),
                };
                let why = format!("deployment {} names no flashline package: {why}", action.0);
                self.feedback(
                    &ticket,
                    Execution::Closed(DdiOutcome::Failure),
                    vec![why.clone()],
                );
                return Offer::Nothing {
                    why,
                    retry: self.poll.0,
                };
            }
            Err(e) => {
                let why = format!("hawkBit unreachable: {e}");
                self.rollouts_state(Err(e.to_string()));
                return Offer::Nothing {
                    why,
                    retry: self.poll.0,
                };
            }
        };
        let retry = self.sleep(poll.sleep);
        if poll.wants_config {
            let data = config_data(&self.station, device);
            if let Err(e) = self.rollouts.put_config(&target, &data) {
                tracing::warn!(target = target.as_str(), "configData not sent: {e}");
            }
        }
        if let Some(cancel) = &poll.cancel {
            if let Err(e) = self.rollouts.ack_cancel(&target, cancel) {
                tracing::warn!(action = cancel.0, "cancel not acknowledged: {e}");
            }
        }
        let Some(deployment) = poll
            .deployment
            .filter(|d| poll.cancel.as_ref().is_none_or(|c| c.0 != d.action.0))
        else {
            return Offer::Nothing {
                why: "no deployment".into(),
                retry,
            };
        };
        let ticket = Ticket {
            target: target.as_str().to_string(),
            action: deployment.action.0,
            package: deployment.package.tuf_target.clone(),
        };
        self.refresh(false);
        match self.packages.fetch(&deployment.package) {
            Ok(path) => {
                let mut status = lock(&self.status);
                status.repository.detail = None;
                Offer::Deployment { ticket, path }
            }
            Err(Fetch::Unavailable(why)) => {
                lock(&self.status).repository.detail = Some(why.clone());
                Offer::Nothing {
                    why: format!("repository: {why}"),
                    retry,
                }
            }
            Err(Fetch::Refused(why)) => {
                self.declined(&ticket, &why);
                Offer::Nothing {
                    why: format!("package {} refused: {why}", ticket.package),
                    retry,
                }
            }
        }
    }

    fn still_wanted(&self, ticket: &Ticket) -> Result<(), String> {
        let target = self
            .target_of(ticket)
            .ok_or_else(|| format!("action {}: unknown device", ticket.action))?;
        let action = ActionId(ticket.action);
        match self.rollouts.still_wanted(&target, &action) {
            Ok(true) => {
                self.rollouts_state(Ok(()));
                Ok(())
            }
            Ok(false) => {
                // The cancellation itself is accepted at the device's next poll.
                self.rollouts_state(Ok(()));
                Err(format!(
                    "action {} was cancelled on hawkBit before the write",
                    ticket.action
                ))
            }
            Err(e) => {
                self.rollouts_state(Err(e.to_string()));
                Err(format!(
                    "hawkBit cannot confirm action {} ({e}): not flashed",
                    ticket.action
                ))
            }
        }
    }

    fn started(&self, ticket: &Ticket) {
        self.feedback(
            ticket,
            Execution::Proceeding,
            vec![format!("{}: writing {}", self.station, ticket.package)],
        );
    }

    fn finished(&self, ticket: &Ticket, report: &Report, path: Option<&Path>) {
        // The report first: it is what is kept; the feedback feeds the thresholds.
        self.enqueue(ticket, report, path);
        let outcome = if report.outcome == Outcome::Success {
            DdiOutcome::Success
        } else {
            DdiOutcome::Failure
        };
        self.feedback(
            ticket,
            Execution::Closed(outcome),
            closing_trail(&self.station, ticket, report),
        );
    }

    fn batch_ended(&self, batch: &str, report: &BatchReport) {
        let key = batch_key(&self.station, batch);
        let body = serde_json::json!({
            "station": self.station,
            "batch": batch,
            "report": report,
        });
        self.queue(&key, &body);
    }

    fn declined(&self, ticket: &Ticket, why: &str) {
        self.feedback(
            ticket,
            Execution::Closed(DdiOutcome::Failure),
            vec![
                format!("{}: not flashed", self.station),
                format!("{} refused: {why}", ticket.package),
            ],
        );
    }

    fn status(&self) -> FleetStatus {
        lock(&self.status).clone()
    }
}

/// Makes `config` a member of the fleet its station file `file` describes (the station
/// then takes its packages from the fleet, not from `config.packages`).
pub fn join(
    mut config: crate::station::StationConfig,
    file: &Path,
) -> Result<crate::station::StationConfig, GatewayError> {
    let fleet = FleetConfig::load(file)?;
    config.fleet = Some(Arc::new(Gateway::connect(&fleet, &config.home)?));
    Ok(config)
}

/// The closing feedback's details: short, stable lines; the full report is in the bucket
/// under the key named last.
pub fn closing_trail(station: &str, ticket: &Ticket, report: &Report) -> Vec<String> {
    let outcome = serde_json::to_value(report.outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    vec![
        format!("{station}: {} {outcome}", ticket.package),
        format!(
            "report: {}",
            report_key(station, &ticket.target, &job_id(ticket))
        ),
    ]
}

/// A job's id in report keys: its action (one action, one report, whatever the retries).
fn job_id(ticket: &Ticket) -> String {
    format!("action-{}", ticket.action)
}

/// The attributes a device's target carries (filterable in hawkBit): model, firmware
/// version, station and bench slot (its label where it has one).
pub fn config_data(station: &str, device: &FleetDevice) -> BTreeMap<String, String> {
    let unknown = "unknown";
    device_attributes(
        device.model.as_deref().unwrap_or(unknown),
        device.version.as_deref().unwrap_or(unknown),
        station,
        device.label.as_deref().unwrap_or(&device.slot),
    )
}

fn rfc3339(time: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

fn link(at: &str) -> Link {
    Link {
        at: at.to_string(),
        ..Link::default()
    }
}

/// The repository as last verified, and when.
struct Packages {
    config: RepoConfig,
    current: Mutex<Option<(Repository, Instant)>>,
}

/// Why a package cannot be had.
enum Fetch {
    /// Not now (the repository is unreachable or its metadata stale): ask again later.
    Unavailable(String),
    /// Never: the repository and the rollout disagree about it, or it fails TUF's check.
    Refused(String),
}

impl Packages {
    /// The package a deployment names, fetched into the cache and checked by TUF; the
    /// hash and size the distribution set names must be TUF's.
    fn fetch(&self, wanted: &PackageRef) -> Result<PathBuf, Fetch> {
        let current = lock(&self.current);
        let Some((repo, _)) = current.as_ref() else {
            return Err(Fetch::Unavailable(
                "no verified metadata: not synced yet".into(),
            ));
        };
        let Some(target) = repo
            .targets()
            .into_iter()
            .find(|t| t.name == wanted.tuf_target)
        else {
            return Err(Fetch::Refused(format!(
                "{} is not a target of the repository",
                wanted.tuf_target
            )));
        };
        if !target.sha256.eq_ignore_ascii_case(&wanted.sha256) || target.length != wanted.size {
            return Err(Fetch::Refused(format!(
                "the rollout names sha256 {} ({} bytes), the repository {} ({} bytes)",
                wanted.sha256, wanted.size, target.sha256, target.length
            )));
        }
        repo.fetch(&wanted.tuf_target)
            .map_err(|e| Fetch::Unavailable(e.to_string()))
    }
}

/// Drains the outbox in the background: at once when a report is queued, then every
/// [`DRAIN_EVERY`] while reports wait, backing off while the store does not answer.
struct Drainer {
    wake: Mutex<Sender<()>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drainer {
    fn start(
        outbox: Arc<Outbox>,
        store: Arc<dyn ReportStore>,
        status: Arc<Mutex<FleetStatus>>,
    ) -> Drainer {
        let (wake, woken) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("outbox".into())
            .spawn(move || drain_loop(&outbox, store.as_ref(), &status, &woken, &stopping))
            .ok();
        Drainer {
            wake: Mutex::new(wake),
            stop,
            thread,
        }
    }

    fn wake(&self) {
        let _ = lock(&self.wake).send(());
    }
}

impl Drop for Drainer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn drain_loop(
    outbox: &Outbox,
    store: &dyn ReportStore,
    status: &Mutex<FleetStatus>,
    woken: &Receiver<()>,
    stop: &AtomicBool,
) {
    let mut delay = Duration::ZERO;
    loop {
        match woken.recv_timeout(delay) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        delay = DRAIN_EVERY;
        if outbox.pending() > 0 {
            // The outbox waits out its own backoff after a failure.
            let drained = outbox.drain(store);
            let mut status = lock(status);
            status.outbox_pending = drained.remaining;
            if let Some(e) = drained.error {
                status.reports.state = LinkState::Down;
                status.reports.detail = Some(e);
            } else if !drained.backing_off {
                status.reports.state = LinkState::Up;
                status.reports.detail = None;
            }
        }
        // Stopping: one last try above, then out.
        if stop.load(Ordering::SeqCst) {
            return;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::ddi::{Deployment, Poll};
    use crate::fleet::reports::{PutOutcome, StoreError};

    /// A rollout server that offers one deployment and records what it is sent.
    #[derive(Default)]
    struct FakeRollouts {
        down: bool,
        /// Offers action 9, which names no package flashline can fetch.
        no_package: bool,
        configs: Mutex<Vec<BTreeMap<String, String>>>,
        feedback: Mutex<Vec<(u64, Execution, Vec<String>)>>,
    }

    impl Rollouts for FakeRollouts {
        fn poll(&self, _: &TargetId) -> Result<Poll, DdiError> {
            if self.down {
                return Err(DdiError::Setup("connection refused".into()));
            }
            if self.no_package {
                return Err(DdiError::NoPackage {
                    action: ActionId(9),
                    why: "no tuf-target metadata and no artifact with a SHA-256".into(),
                });
            }
            Ok(Poll {
                sleep: Duration::from_secs(3600),
                deployment: Some(Deployment {
                    action: ActionId(7),
                    package: PackageRef {
                        tuf_target: "phone-3.0.0.flpkg".into(),
                        sha256: "ab".repeat(32),
                        size: 10,
                    },
                    forced: true,
                }),
                cancel: None,
                wants_config: true,
            })
        }

        fn put_config(
            &self,
            _: &TargetId,
            data: &BTreeMap<String, String>,
        ) -> Result<(), DdiError> {
            lock(&self.configs).push(data.clone());
            Ok(())
        }

        fn still_wanted(&self, _: &TargetId, _: &ActionId) -> Result<bool, DdiError> {
            Ok(false)
        }

        fn feedback(&self, _: &TargetId, action: &ActionId, f: &Feedback) -> Result<(), DdiError> {
            lock(&self.feedback).push((action.0, f.execution, f.details.clone()));
            Ok(())
        }

        fn ack_cancel(&self, _: &TargetId, _: &ActionId) -> Result<(), DdiError> {
            Ok(())
        }
    }

    struct NoStore;

    impl ReportStore for NoStore {
        fn put_once(&self, _: &str, _: &[u8]) -> Result<PutOutcome, StoreError> {
            Err(StoreError::Config("down".into()))
        }
    }

    fn make(dir: &Path, rollouts: Arc<FakeRollouts>) -> Gateway {
        let key = StationKey::open_or_create(&dir.join("station.key")).unwrap();
        let parts = Parts {
            rollouts,
            rollouts_at: "http://hawkbit.invalid/".into(),
            // Nothing listens there: the repository is unreachable and never synced.
            repository: RepoConfig::new(
                "http://127.0.0.1:9/metadata/",
                "http://127.0.0.1:9/targets/",
                dir.join("root.json"),
                dir.join("cache"),
            )
            .unwrap(),
            store: Arc::new(NoStore),
            store_at: "bucket".into(),
            outbox: Outbox::open_with_key(&dir.join("outbox"), key).unwrap(),
        };
        let poll = (Duration::from_millis(500), Duration::from_secs(2));
        Gateway::new("bench-1", b"0123456789abcdef".to_vec(), poll, parts)
    }

    fn device() -> FleetDevice {
        FleetDevice {
            slot: "usb:1-1.3".into(),
            label: Some("left hub, port 3".into()),
            serial: Some("SN1".into()),
            imei: None,
            model: Some("MF833V".into()),
            version: Some("BD_MF833VV1.0.0B06".into()),
        }
    }

    #[test]
    fn an_unsynced_repository_offers_nothing_and_the_device_attributes_are_sent() {
        let dir = tempfile::tempdir().unwrap();
        let rollouts = Arc::new(FakeRollouts::default());
        let gateway = make(dir.path(), Arc::clone(&rollouts));
        match gateway.offer(&device()) {
            Offer::Nothing { why, retry } => {
                assert!(why.starts_with("repository: "), "{why}");
                // hawkBit's hour-long sleep is kept within the station's bounds.
                assert_eq!(retry, Duration::from_secs(2));
            }
            offer => panic!("an unverified package was offered: {offer:?}"),
        }
        let status = gateway.status();
        assert_eq!(status.rollouts.state, LinkState::Up);
        assert_eq!(status.repository.state, LinkState::Down);
        let configs = lock(&rollouts.configs).clone();
        assert_eq!(configs.len(), 1);
        assert_eq!(configs[0]["model"], "MF833V");
        assert_eq!(configs[0]["firmware"], "BD_MF833VV1.0.0B06");
        assert_eq!(configs[0]["station"], "bench-1");
        assert_eq!(configs[0]["bench_slot"], "left hub, port 3");
        assert!(
            lock(&rollouts.feedback).is_empty(),
            "nothing declined or started"
        );
    }

    #[test]
    fn an_unreachable_server_offers_nothing_and_a_withdrawn_action_is_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let down = Arc::new(FakeRollouts {
            down: true,
            ..FakeRollouts::default()
        });
        let gateway = make(dir.path(), down);
        let Offer::Nothing { why, retry } = gateway.offer(&device()) else {
            panic!("offered while hawkBit is down");
        };
        assert!(why.starts_with("hawkBit unreachable"), "{why}");
        assert_eq!(retry, Duration::from_millis(500));
        assert_eq!(gateway.status().rollouts.state, LinkState::Down);

        let dir = tempfile::tempdir().unwrap();
        let rollouts = Arc::new(FakeRollouts::default());
        let gateway = make(dir.path(), Arc::clone(&rollouts));
        let target = TargetId::derive(b"0123456789abcdef", "SN1", None);
        let ticket = Ticket {
            target: target.as_str().to_string(),
            action: 7,
            package: "phone-3.0.0.flpkg".into(),
        };
        // Unknown to this gateway until it polled the device: refused, not written.
        assert!(gateway.still_wanted(&ticket).is_err());
        gateway.offer(&device());
        let why = gateway.still_wanted(&ticket).unwrap_err();
        assert!(why.contains("cancelled"), "{why}");
    }

    #[test]
    fn an_action_naming_no_package_is_closed_as_failed_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let rollouts = Arc::new(FakeRollouts {
            no_package: true,
            ..FakeRollouts::default()
        });
        let gateway = make(dir.path(), Arc::clone(&rollouts));
        let Offer::Nothing { why, .. } = gateway.offer(&device()) else {
            panic!("offered an action without a package");
        };
        assert!(
            why.contains("deployment 9 names no flashline package"),
            "{why}"
        );
        assert_eq!(gateway.status().rollouts.state, LinkState::Up);
        let feedback = lock(&rollouts.feedback).clone();
        assert_eq!(feedback.len(), 1, "{feedback:?}");
        assert_eq!(feedback[0].0, 9);
        assert_eq!(feedback[0].1, Execution::Closed(DdiOutcome::Failure));
        assert!(feedback[0].2[0].contains("no tuf-target"), "{feedback:?}");
    }
}
