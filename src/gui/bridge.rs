//! The bridge between the UI thread and the engine: it turns [`Intent`]s into work on
//! tokio's blocking pool (engine jobs, package checks, discovery, file dialogs) and sends
//! back [`Msg`]s, waking the UI with `request_repaint` for each one.
//!
//! The UI thread only ever calls [`Bridge::execute`] (which spawns and returns) and
//! [`Bridge::drain`] (which never waits).

use eframe::egui;
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::device::discovery::{self, Found};
use crate::device::quirks::Quirks;
use crate::device::{DeviceInfo, Mode};
use crate::engine::{self, Cancel, DeviceTarget, JobOptions, JobRequest};
use crate::package::{self, KeyScope, Package, SignatureStatus, TrustStore, VerifiedPackage};

use super::state::{bytes, DeviceKey, Intent, JobTarget, Msg, PackageCard, PackageState, Settings};

/// Reports are small; a larger file is not one of ours.
const MAX_REPORT_LEN: u64 = 4 * 1024 * 1024;
/// How long a job waits for discovery to finish probing its device.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a device may stay silent while discovery reads its facts: one that stalls
/// is given up on (and tried again in a later pass) and frees its address for jobs.
const IDENTIFY_SILENCE: Duration = Duration::from_secs(5);
/// How long a job waits for a phone to come back after its reboot.
const RECONNECT: Duration = Duration::from_secs(5);

/// Where the bridge finds things and what it trusts, fixed for a session.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// Network addresses watched besides USB and serial discovery (`tcp:HOST:PORT`).
    pub watch: Vec<String>,
    /// The watched addresses are flashline's own virtual devices.
    pub watch_virtual: bool,
    /// Also trust the demo key (for virtual devices only).
    pub demo_trust: bool,
    /// The flash history.
    pub history_path: PathBuf,
    /// Where identity backups go.
    pub backups_dir: PathBuf,
    /// How often discovery looks again.
    pub scan_every: Duration,
    /// The system the connection doctor examines (this one, or a fake one in tests).
    pub system: crate::doctor::SystemView,
}

/// Sends a message and wakes the UI.
#[derive(Clone)]
struct Outbox {
    tx: mpsc::Sender<Msg>,
    ctx: egui::Context,
}

impl Outbox {
    fn send(&self, msg: Msg) {
        // The receiver only goes away with the app; nothing is left to tell then.
        let _ = self.tx.send(msg);
        self.ctx.request_repaint();
    }
}

/// Addresses something is talking to now: a device is opened by one party at a time.
#[derive(Clone, Default)]
struct Claims(Arc<Mutex<HashSet<String>>>);

/// A claimed address, released on drop.
struct Claim {
    claims: Claims,
    address: String,
}

impl Claims {
    fn lock(&self) -> MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn try_claim(&self, address: &str) -> Option<Claim> {
        self.lock().insert(address.to_string()).then(|| Claim {
            claims: self.clone(),
            address: address.to_string(),
        })
    }

    fn claim(&self, address: &str, timeout: Duration) -> Option<Claim> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(claim) = self.try_claim(address) {
                return Some(claim);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.claims.lock().remove(&self.address);
    }
}

/// A package as its card shows it: verified when it was opened, through the file handle
/// it keeps (the path is never opened again), and what the path held then.
#[derive(Clone)]
struct Pinned {
    package: Arc<VerifiedPackage>,
    stamp: std::fs::Metadata,
}

impl Pinned {
    /// The verified package, if the file at `path` is still the one it was verified from.
    ///
    /// The bytes sent come from the verified file handle and are hashed again on their way,
    /// so a file put in the path's place could never be flashed; refusing it says so at
    /// once, instead of flashing what the user may no longer mean.
    fn unchanged(&self, path: &Path) -> Result<Arc<VerifiedPackage>, String> {
        let changed = |how: &str| {
            format!(
                "the package file {} {how} since it was verified and shown; nothing was \
                 written. Open it again to check what it holds now",
                path.display()
            )
        };
        let now = std::fs::metadata(path).map_err(|e| changed(&format!("is gone ({e})")))?;
        let replaced = crate::platform::same_file(&self.stamp, &now) == Some(false);
        if replaced
            || now.len() != self.stamp.len()
            || now.modified().ok() != self.stamp.modified().ok()
        {
            return Err(changed("changed"));
        }
        Ok(Arc::clone(&self.package))
    }
}

/// The package verified for the card, by path (at most one).
#[derive(Clone, Default)]
struct Pins(Arc<Mutex<HashMap<PathBuf, Pinned>>>);

impl Pins {
    fn lock(&self) -> MutexGuard<'_, HashMap<PathBuf, Pinned>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, path: &Path) -> Option<Pinned> {
        self.lock().get(path).cloned()
    }

    fn clear(&self) {
        self.lock().clear();
    }
}

/// Runs the GUI's background work.
pub struct Bridge {
    runtime: Option<tokio::runtime::Runtime>,
    outbox: Outbox,
    rx: mpsc::Receiver<Msg>,
    quirks: Arc<Quirks>,
    trust: Arc<Mutex<TrustStore>>,
    config: BridgeConfig,
    settings: Settings,
    cancels: HashMap<DeviceKey, Cancel>,
    claims: Claims,
    pins: Pins,
    stop: Arc<AtomicBool>,
    scratch: tempfile::TempDir,
    /// The bench station, while it runs; it owns the bench then (see [`Scanner::paused`]).
    station: Option<crate::station::StationHandle>,
    station_owns_bench: Arc<AtomicBool>,
}

impl Bridge {
    /// Starts the runtime and discovery; `ctx` is woken for every message.
    pub fn start(
        ctx: egui::Context,
        config: BridgeConfig,
        settings: Settings,
        quirks: Quirks,
    ) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("flashline-gui-worker")
            .enable_time()
            .build()?;
        let (tx, rx) = mpsc::channel();
        let bridge = Bridge {
            runtime: Some(runtime),
            outbox: Outbox { tx, ctx },
            rx,
            quirks: Arc::new(quirks),
            trust: Arc::new(Mutex::new(TrustStore::empty())),
            config,
            settings,
            cancels: HashMap::new(),
            claims: Claims::default(),
            pins: Pins::default(),
            stop: Arc::new(AtomicBool::new(false)),
            scratch: tempfile::tempdir()?,
            station: None,
            station_owns_bench: Arc::default(),
        };
        bridge.reload_trust();
        bridge.start_discovery();
        Ok(bridge)
    }

    /// Everything the workers sent since the last call; never waits.
    pub fn drain(&self) -> Vec<Msg> {
        self.rx.try_iter().collect()
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .expect("the runtime lives as long as the bridge")
            .handle()
    }

    /// Starts what `intent` asks for and returns at once.
    pub fn execute(&mut self, intent: Intent, settings: &Settings) {
        self.settings = settings.clone();
        match intent {
            Intent::PickPackage => self.pick_package(),
            Intent::OpenPackage(path) => self.open_package(path),
            Intent::Check {
                target,
                package,
                generation,
            } => self.check(target, package, generation),
            Intent::Flash { targets, package } => {
                for target in targets {
                    self.flash(target, package.clone());
                }
            }
            Intent::Cancel(key) => {
                if let Some(cancel) = self.cancels.get(&key) {
                    cancel.cancel();
                }
            }
            Intent::ReadReport { key, path } => self.read_report(key, path),
            Intent::ListPackages { files, dirs } => {
                let outbox = self.outbox.clone();
                self.handle().spawn_blocking(move || {
                    outbox.send(Msg::Catalog(super::catalog::list(&files, &dirs)));
                });
            }
            Intent::OpenFolder(path) => self.open_folder(path),
            Intent::RunDoctor => {
                let (outbox, system) = (self.outbox.clone(), self.config.system.clone());
                let quirks = Arc::clone(&self.quirks);
                self.handle().spawn_blocking(move || {
                    outbox.send(Msg::Doctor(crate::doctor::diagnose(&system, &quirks)));
                });
            }
            Intent::SettingsChanged => {
                // Packages were verified against the old trust: they must be opened again.
                self.pins.clear();
                self.reload_trust();
            }
            Intent::Station(intent) => self.station(intent),
        }
    }

    /// The station's files (job history, backups, batches, labels) live where this
    /// session's history does: flashline's home, or the demo's own folder.
    fn station_home(&self) -> PathBuf {
        self.config
            .history_path
            .parent()
            .map_or_else(crate::paths::home, Path::to_path_buf)
    }

    /// The bench station's settings from the GUI's choices and this session's trust and
    /// quirks.
    fn station_config(
        &self,
        packages: Vec<PathBuf>,
        canaries: usize,
        max_failures: crate::station::Threshold,
        home: &Path,
    ) -> crate::station::StationConfig {
        crate::station::StationConfig {
            canaries,
            max_failures,
            quirks: (*self.quirks).clone(),
            ..crate::station::StationConfig::new(packages, self.trust(), home)
        }
    }

    /// Starts the station with `config`; a failure to set it up or start it ends the
    /// station view with the reason.
    fn start_station(&mut self, config: Result<crate::station::StationConfig, String>) {
        let outbox = self.outbox.clone();
        let started = config.and_then(|config| {
            crate::station::runner::start(config, move |e| outbox.send(Msg::Station(e)))
                .map_err(|e| e.to_string())
        });
        match started {
            Ok(handle) => {
                self.station_owns_bench.store(true, Ordering::SeqCst);
                self.station = Some(handle);
            }
            Err(e) => self.outbox.send(Msg::StationEnded(Some(e))),
        }
    }

    fn station(&mut self, intent: super::station::StationIntent) {
        use super::station::StationIntent;
        use crate::station::settings::Settings as StationSettings;
        let home = self.station_home();
        let starting = matches!(
            intent,
            StationIntent::Start { .. } | StationIntent::StartFleet { .. }
        );
        if starting && self.station.is_some() {
            return;
        }
        match intent {
            StationIntent::Start {
                packages,
                canaries,
                max_failures,
            } => {
                let config = self.station_config(packages, canaries, max_failures, &home);
                self.start_station(Ok(config));
            }
            StationIntent::StartFleet {
                file,
                canaries,
                max_failures,
            } => {
                let config = self.station_config(Vec::new(), canaries, max_failures, &home);
                #[cfg(feature = "fleet")]
                let joined = crate::fleet::gateway::join(config, &file).map_err(|e| e.to_string());
                #[cfg(not(feature = "fleet"))]
                let joined: Result<crate::station::StationConfig, String> = {
                    let _ = (config, file);
                    Err("this flashline was built without the fleet feature".into())
                };
                self.start_station(joined);
            }
            StationIntent::Stop => {
                let Some(handle) = self.station.take() else {
                    return;
                };
                let (outbox, owns) = (self.outbox.clone(), Arc::clone(&self.station_owns_bench));
                self.handle().spawn_blocking(move || {
                    handle.stop();
                    owns.store(false, Ordering::SeqCst);
                    outbox.send(Msg::StationEnded(None));
                });
            }
            StationIntent::Resume { batch, by, reason } => {
                if let Err(e) = crate::station::control::request_resume(&batch, &by, &reason) {
                    self.outbox.send(Msg::Notice(e.to_string()));
                }
            }
            StationIntent::Label { slot, label } => {
                let mut settings = StationSettings::load(&home);
                settings.set_label(&slot, &label);
                if let Err(e) = settings.save(&home) {
                    self.outbox
                        .send(Msg::Notice(format!("the label was not saved: {e}")));
                }
            }
            StationIntent::Sound(on) => {
                let mut settings = StationSettings::load(&home);
                settings.sound = on;
                if let Err(e) = settings.save(&home) {
                    self.outbox
                        .send(Msg::Notice(format!("the setting was not saved: {e}")));
                }
            }
            StationIntent::OpenFolder(path) => self.open_folder(path),
        }
    }

    fn reload_trust(&self) {
        let (trust, outbox) = (Arc::clone(&self.trust), self.outbox.clone());
        let (dir, demo) = (self.settings.trust_dir.clone(), self.config.demo_trust);
        self.handle().spawn_blocking(move || {
            let mut store = if demo {
                TrustStore::demo()
            } else {
                TrustStore::empty()
            };
            if dir.is_dir() {
                match TrustStore::load_dir(&dir).and_then(|s| store.merge(s)) {
                    Ok(()) => {}
                    Err(e) => outbox.send(Msg::Notice(format!(
                        "the trust folder {} could not be read: {e}",
                        dir.display()
                    ))),
                }
            }
            *trust.lock().unwrap_or_else(|p| p.into_inner()) = store;
        });
    }

    fn trust(&self) -> TrustStore {
        self.trust.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn pick_package(&self) {
        let outbox = self.outbox.clone();
        let start = self.settings.last_package_dir.clone();
        self.handle().spawn_blocking(move || {
            let mut dialog = rfd::FileDialog::new()
                .set_title("Open a firmware package")
                .add_filter("flashline package", &["flpkg"])
                .add_filter("all files", &["*"]);
            if let Some(dir) = start {
                dialog = dialog.set_directory(dir);
            }
            if let Some(path) = dialog.pick_file() {
                outbox.send(Msg::Picked(path));
            }
        });
    }

    fn open_package(&self, path: PathBuf) {
        let (outbox, trust) = (self.outbox.clone(), self.trust());
        let pins = self.pins.clone();
        self.handle().spawn_blocking(move || {
            // Taken before the file is opened: a file put in its place after this moment
            // no longer matches, even if it was put there while being verified.
            let stamp = std::fs::metadata(&path);
            let (state, verified) = describe(&path, &trust);
            // Only the package on the card is pinned: its file handle stays open, no other.
            let mut pins = pins.lock();
            pins.clear();
            if let (Some(package), Ok(stamp)) = (verified, stamp) {
                let package = Arc::new(package);
                pins.insert(path, Pinned { package, stamp });
            }
            drop(pins);
            outbox.send(Msg::Package(state));
        });
    }

    fn request(&self, target: &JobTarget, package: PathBuf, options: JobOptions) -> JobRequest {
        JobRequest {
            package,
            trust: self.trust(),
            device: DeviceTarget {
                address: target.address.clone(),
                is_virtual: target.is_virtual,
                probe: false,
            },
            quirks: (*self.quirks).clone(),
            options: JobOptions {
                history_path: self.config.history_path.clone(),
                backups_dir: self.config.backups_dir.clone(),
                ..options
            },
        }
    }

    fn check(&self, target: JobTarget, package: PathBuf, generation: u64) {
        let pinned = self.pins.get(&package);
        let report = self.scratch.path().join(format!(
            "check-{}.json",
            engine::report::safe_name(&target.key)
        ));
        let req = self.request(
            &target,
            package,
            JobOptions {
                check_only: true,
                report_path: Some(report),
                reports_dir: self.scratch.path().to_path_buf(),
                ..JobOptions::default()
            },
        );
        self.run_job(target, req, pinned, move |key, event| Msg::Check {
            key,
            generation,
            event,
        });
    }

    fn flash(&mut self, target: JobTarget, package: PathBuf) {
        let pinned = self.pins.get(&package);
        let cancel = Cancel::default();
        self.cancels.insert(target.key.clone(), cancel.clone());
        let req = self.request(
            &target,
            package,
            JobOptions {
                cancel,
                reports_dir: self.settings.reports_dir.clone(),
                reconnect: RECONNECT,
                optimized_super: !self.settings.disable_super_optimization,
                ..JobOptions::default()
            },
        );
        self.run_job(target, req, pinned, |key, event| Msg::Job { key, event });
    }

    /// Runs one engine job on the blocking pool, tagging its events with the device.
    ///
    /// The job flashes the package the card showed (`pinned`, verified when it was
    /// opened), never whatever the path holds now; a file changed or replaced since then
    /// is refused before the device is touched.
    fn run_job(
        &self,
        target: JobTarget,
        req: JobRequest,
        pinned: Option<Pinned>,
        wrap: impl Fn(DeviceKey, engine::Event) -> Msg + Send + 'static,
    ) {
        let (outbox, claims) = (self.outbox.clone(), self.claims.clone());
        self.handle().spawn_blocking(move || {
            let key = target.key;
            let refuse = |outcome, error: String| {
                outbox.send(wrap(
                    key.clone(),
                    engine::Event::Finished {
                        outcome,
                        error: Some(error),
                        report: None,
                    },
                ));
            };
            let package = match pinned {
                Some(pinned) => pinned.unchanged(&req.package),
                None => Err(format!(
                    "the package {} is not the one verified for the card (another was \
                     opened, or the trust settings changed since); open it again. Nothing \
                     was written",
                    req.package.display()
                )),
            };
            let package = match package {
                Ok(package) => package,
                Err(error) => return refuse(engine::Outcome::PackageRejected, error),
            };
            let Some(_claim) = claims.claim(&target.address, CLAIM_TIMEOUT) else {
                return refuse(
                    engine::Outcome::DeviceError,
                    format!(
                        "{} stayed busy for {CLAIM_TIMEOUT:?}; try again",
                        target.address
                    ),
                );
            };
            engine::run_verified(&req, &package, &mut |event| {
                outbox.send(wrap(key.clone(), event))
            });
        });
    }

    fn read_report(&self, key: DeviceKey, path: PathBuf) {
        let outbox = self.outbox.clone();
        self.handle().spawn_blocking(move || {
            let text =
                read_small(&path).map_err(|e| format!("cannot read {}: {e}", path.display()));
            outbox.send(Msg::Report { key, path, text });
        });
    }

    fn open_folder(&self, path: PathBuf) {
        let outbox = self.outbox.clone();
        self.handle().spawn_blocking(move || {
            if let Err(e) = std::fs::create_dir_all(&path).and_then(|()| reveal(&path)) {
                outbox.send(Msg::Notice(format!("cannot open {}: {e}", path.display())));
            }
        });
    }

    fn start_discovery(&self) {
        let scanner = Scanner::new(self);
        let (stop, every) = (Arc::clone(&self.stop), self.config.scan_every);
        let handle = self.handle().clone();
        self.handle().spawn(async move {
            let mut scanner = scanner;
            while !stop.load(Ordering::SeqCst) {
                scanner = match handle
                    .spawn_blocking(move || {
                        scanner.pass();
                        scanner
                    })
                    .await
                {
                    Ok(scanner) => scanner,
                    Err(e) => {
                        tracing::error!("discovery stopped: {e}");
                        return;
                    }
                };
                tokio::time::sleep(every).await;
            }
        });
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for cancel in self.cancels.values() {
            cancel.cancel();
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(3));
        }
    }
}

/// Discovery: lists devices, and reads each new one's facts once.
///
/// Each device is identified on a thread of its own, with its own limit on silence
/// ([`IDENTIFY_SILENCE`]): a device that stalls holds up only its own row, never the list
/// or the identification of the others. A pass never waits for one; what they learn
/// arrives in a later pass.
struct Scanner {
    outbox: Outbox,
    claims: Claims,
    quirks: Arc<Quirks>,
    watch: Vec<String>,
    watch_virtual: bool,
    /// Addresses whose facts were read.
    identified: HashSet<String>,
    /// Addresses being identified now.
    identifying: HashSet<String>,
    /// Where the identifying threads report: the address and what it said, if anything.
    learned_tx: mpsc::Sender<(String, Option<DeviceInfo>)>,
    learned: mpsc::Receiver<(String, Option<DeviceInfo>)>,
    /// Watched network devices that answered, as discovery would list them.
    watched: HashMap<String, Found>,
    last: Vec<Found>,
    /// Set while the bench station runs: it identifies and flashes every device itself,
    /// and a second party talking to a port mid-job would garble both.
    paused: Arc<AtomicBool>,
}

impl Scanner {
    fn new(bridge: &Bridge) -> Self {
        let (learned_tx, learned) = mpsc::channel();
        Scanner {
            outbox: bridge.outbox.clone(),
            claims: bridge.claims.clone(),
            quirks: Arc::clone(&bridge.quirks),
            watch: bridge.config.watch.clone(),
            watch_virtual: bridge.config.watch_virtual,
            identified: HashSet::new(),
            identifying: HashSet::new(),
            learned_tx,
            learned,
            watched: HashMap::new(),
            last: Vec::new(),
            paused: Arc::clone(&bridge.station_owns_bench),
        }
    }

    fn pass(&mut self) {
        let mut facts = Vec::new();
        while let Ok((address, info)) = self.learned.try_recv() {
            self.identifying.remove(&address);
            let Some(info) = info else { continue };
            self.identified.insert(address.clone());
            if self.watch.contains(&address) {
                self.watched.insert(
                    address.clone(),
                    Found {
                        address: address.clone(),
                        mode: info.mode,
                        vid: None,
                        pid: None,
                        product: info.product.clone(),
                        serial: info.serial.clone(),
                        known_as: None,
                        is_virtual: self.watch_virtual,
                        interface: None,
                        port_path: None,
                    },
                );
            }
            facts.push((address, info));
        }
        let mut found = discovery::scan(&[], &self.quirks, false);
        found.extend(
            self.watch
                .iter()
                .filter_map(|a| self.watched.get(a))
                .cloned(),
        );
        if found != self.last {
            self.last = found.clone();
            self.outbox.send(Msg::Devices(found.clone()));
        }
        // After the list, so that each one's row exists.
        for (address, info) in facts {
            self.outbox.send(Msg::Identified {
                address,
                info: Box::new(info),
            });
        }
        // A device in EDL says nothing until a programmer runs, and probing an unknown
        // port is never done: only fastboot devices, modems and watched addresses are read.
        let wanted: Vec<(String, bool)> = self
            .watch
            .iter()
            .filter(|a| !self.watched.contains_key(*a))
            .map(|a| (a.clone(), self.watch_virtual))
            .chain(
                found
                    .into_iter()
                    .filter(|f| matches!(f.mode, Mode::Fastboot | Mode::Modem))
                    .map(|f| (f.address, f.is_virtual)),
            )
            .collect();
        for (address, is_virtual) in wanted {
            if !self.identified.contains(&address) && !self.identifying.contains(&address) {
                self.identify(address, is_virtual);
            }
        }
    }

    /// Reads a device's facts on a thread of its own, unless a job has it open.
    fn identify(&mut self, address: String, is_virtual: bool) {
        if self.paused.load(Ordering::SeqCst) {
            return;
        }
        let Some(claim) = self.claims.try_claim(&address) else {
            return;
        };
        self.identifying.insert(address.clone());
        let (quirks, learned) = (Arc::clone(&self.quirks), self.learned_tx.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("identify {address}"))
            .spawn(move || {
                let info = discovery::open(&address, &quirks, is_virtual, false)
                    .and_then(|mut d| {
                        d.set_timeout(IDENTIFY_SILENCE);
                        d.identify()
                    })
                    .map_err(|e| tracing::info!("{address}: not identified: {e}"))
                    .ok();
                drop(claim);
                // The scanner only goes away with the bridge; nobody is left to tell then.
                let _ = learned.send((address, info));
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start identifying a device: {e}");
        }
    }
}

/// Opens and verifies a package, and describes it for the card.
pub fn package_state(path: &Path, trust: &TrustStore) -> PackageState {
    describe(path, trust).0
}

/// Opens and verifies a package: the card, and the verified package when it is trusted.
fn describe(path: &Path, trust: &TrustStore) -> (PackageState, Option<VerifiedPackage>) {
    let opened = match Package::open(path) {
        Ok(p) => p,
        Err(e) => {
            let refused = PackageState::Refused {
                path: path.to_path_buf(),
                card: None,
                reason: e.to_string(),
            };
            return (refused, None);
        }
    };
    let inspection = package::inspect(&opened, trust);
    let m = &inspection.manifest;
    let mut card = PackageCard {
        path: path.to_path_buf(),
        name: m.name.clone(),
        version: m.version.to_string(),
        security_version: m.security_version,
        min_battery_percent: m.min_battery_percent,
        description: m.description.clone(),
        targets: m.targets.iter().map(|t| t.product.clone()).collect(),
        writes: writes(m),
        qualcomm: m.qualcomm.is_some(),
        zxic: m.zxic.is_some(),
        unisoc: m.unisoc.is_some(),
        signature: signature_words(&inspection.signatures),
    };
    // Opening a package in the window checks every image byte (and every signed block
    // hash) once, so the card can say so; flashing then checks each block as it is sent.
    match opened.check(trust).and_then(|_| opened.verify(trust)) {
        Ok(verified) => {
            let s = verified.signer();
            card.signature = match s.scope {
                KeyScope::Any => format!(
                    "signed by {} (key {}), a key in your trust folder; every image hash matches",
                    s.name, s.key_id
                ),
                KeyScope::VirtualOnly => format!(
                    "signed by {} (key {}), trusted for virtual devices only; every image hash matches",
                    s.name, s.key_id
                ),
            };
            (PackageState::Ready(card), Some(verified))
        }
        Err(e) => (
            PackageState::Refused {
                path: path.to_path_buf(),
                card: Some(Box::new(card)),
                reason: e.to_string(),
            },
            None,
        ),
    }
}

/// What a package writes, for people: its images, or a flat build's program steps.
fn writes(m: &package::Manifest) -> Vec<String> {
    let sparse = |i: &package::Image| if i.sparse.is_some() { ", sparse" } else { "" };
    match &m.qualcomm {
        None => m
            .images
            .iter()
            .map(|i| {
                format!(
                    "{}: {} ({}{})",
                    i.partition,
                    i.file,
                    bytes(i.size),
                    sparse(i)
                )
            })
            .collect(),
        Some(plan) => {
            let mut lines: Vec<String> = plan
                .program
                .iter()
                .filter_map(|op| {
                    let i = m.images.get(op.image)?;
                    Some(format!(
                        "{} (LUN {}): {} ({}{})",
                        op.label,
                        op.lun,
                        i.file,
                        bytes(i.size),
                        sparse(i)
                    ))
                })
                .collect();
            if let Some(p) = m.images.get(plan.programmer) {
                lines.push(format!(
                    "programmer {} runs in the device's RAM; it is not written",
                    p.file
                ));
            }
            if !plan.patch.is_empty() {
                lines.push(format!(
                    "{} partition-table patches after the writes",
                    plan.patch.len()
                ));
            }
            lines
        }
    }
}

fn signature_words(signatures: &[package::SignatureReport]) -> String {
    if signatures.is_empty() {
        return "not signed".into();
    }
    signatures
        .iter()
        .map(|s| match &s.status {
            SignatureStatus::Trusted { name, .. } => format!("valid signature by {name}"),
            SignatureStatus::UnknownKey => {
                format!(
                    "signed by key {}, which is not in your trust folder",
                    s.key_id
                )
            }
            SignatureStatus::BadSignature => format!(
                "the signature by key {} does not match: the package was changed after signing",
                s.key_id
            ),
            SignatureStatus::Duplicate => format!("a second signature by key {}", s.key_id),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn read_small(path: &Path) -> std::io::Result<String> {
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_REPORT_LEN)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// Shows a folder in the desktop's file manager.
fn reveal(path: &Path) -> std::io::Result<()> {
    let opener = if cfg!(target_os = "windows") {
        "explorer"
    } else if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    std::process::Command::new(opener)
        .arg(path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(drop)
}
