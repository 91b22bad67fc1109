//! The virtual bench: modems and hotspots that re-enumerate as the real ones do, and
//! devices that arrive on the bench over time, as a technician plugs them in.
//!
//! The AT side and the EDL side of a modem are separate simulators; [`VirtualModem`] joins
//! them: when the modem receives its download-mode command it disappears, and the EDL
//! device appears with the same USB serial number and the download-mode USB IDs the quirks
//! file expects, storing its LUNs in the same folder. A modem started with
//! [`VirtualModem::start_returning`] also comes back: `<power value="reset">` after a flash
//! boots the firmware its storage now holds, and the AT port appears again on the same
//! port path, reporting the version that firmware carries (see [`firmware_revision`]).
//!
//! [`ArrivingBench`] starts a list of virtual devices (phones, modems, bricks in EDL), each
//! after its own delay and with its own fault plan, so a test can watch a station meet a
//! bench that fills up while it works.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::edl::{EdlConfig, EdlSim, RunningEdl};
use super::modem::{ModemConfig, ModemSim, RunningModem};
use super::phone::{PhoneConfig, PhoneSim, RunningPhone};
use super::FaultPlan;
use crate::device::bench::{self as announce, Announcement, BenchEntry};

/// ZTE's download-mode USB IDs (Qualcomm EDL under ZTE's vendor ID).
pub const ZTE_EDL: (u16, u16) = (0x19d2, 0x0076);
/// The USB IDs a virtual phone announces on the bench: Android's bootloader in fastboot.
pub const FASTBOOT_USB: (u16, u16) = (0x18d1, 0x4ee0);

/// A port path no real USB device has (`usb:sim-…`), the same for the same device folder.
fn virtual_port_path(dir: &Path) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(dir.to_string_lossy().as_bytes());
    format!("usb:sim-{}", hex::encode(&digest[..4]))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The version the firmware in a virtual modem's storage reports as `+CGMR`: the first
/// `FLASHLINE-VERSION=` marker (the same marker the virtual phone boots by) found in
/// LUN 0, if a flash put one there.
pub fn firmware_revision(dir: &Path) -> Option<String> {
    const KEY: &[u8] = b"FLASHLINE-VERSION=";
    let lun = std::fs::read(super::edl::lun_path(dir, 0)).ok()?;
    let at = lun.windows(KEY.len()).position(|w| w == KEY)?;
    let end = (at + super::phone::version::MARKER_WINDOW).min(lun.len());
    super::phone::version::find(&lun[at..end]).map(|m| m.version)
}

/// Both sides of one virtual modem, shared with the callbacks that switch between them.
struct Sides {
    modem_cfg: ModemConfig,
    edl_cfg: EdlConfig,
    dir: PathBuf,
    bench_dir: PathBuf,
    /// Boot the firmware after a flash (AT again) instead of staying in EDL.
    returns: bool,
    /// Faults of the modem once it came back (its first life's plan has been used).
    returned_faults: FaultPlan,
    modem: Mutex<Option<RunningModem>>,
    edl: Mutex<Option<RunningEdl>>,
    /// Every AT command of every life of the modem, oldest first.
    at_log: Mutex<Vec<String>>,
    /// Faults fired in every finished life of either side.
    fired: Mutex<Vec<String>>,
}

impl Sides {
    /// Starts the AT side; its download command brings up the EDL side.
    fn start_modem(self: &Arc<Self>, cfg: ModemConfig) -> io::Result<()> {
        let sides = Arc::clone(self);
        let on_switch = Box::new(move || sides.start_edl());
        let running = ModemSim::start(cfg, Some(&self.bench_dir), on_switch)?;
        if let Some(old) = lock(&self.modem).replace(running) {
            self.retire_modem(old);
        }
        Ok(())
    }

    /// Starts the EDL side (on the modem's thread, once it vanished).
    fn start_edl(self: &Arc<Self>) {
        let mut sim = match EdlSim::new(&self.dir, self.edl_cfg.clone(), Some(&self.bench_dir)) {
            Ok(sim) => sim,
            Err(e) => {
                tracing::error!("the virtual modem could not come back in EDL: {e}");
                return;
            }
        };
        if self.returns {
            let sides = Arc::clone(self);
            sim = sim.boots_firmware(Box::new(move |dir| sides.boot_firmware(dir)));
        }
        match sim.spawn() {
            Ok(running) => {
                if let Some(old) = lock(&self.edl).replace(running) {
                    lock(&self.fired).extend(old.faults_fired());
                    old.stop();
                }
            }
            Err(e) => tracing::error!("the virtual modem could not come back in EDL: {e}"),
        }
    }

    /// The reset after a flash: the modem boots what its storage holds and its AT port
    /// comes back, reporting that firmware's version.
    fn boot_firmware(self: &Arc<Self>, dir: &Path) -> bool {
        let revision = firmware_revision(dir).unwrap_or_else(|| self.modem_cfg.revision.clone());
        let cfg = ModemConfig {
            revision,
            faults: self.returned_faults.clone(),
            ..self.modem_cfg.clone()
        };
        match self.start_modem(cfg) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("the virtual modem could not boot its firmware: {e}");
                false
            }
        }
    }

    fn retire_modem(&self, old: RunningModem) {
        lock(&self.at_log).extend(old.commands());
        lock(&self.fired).extend(old.faults_fired());
        old.stop();
    }
}

/// A running virtual modem and, once switched, its EDL side.
pub struct VirtualModem {
    sides: Arc<Sides>,
    address: String,
}

impl VirtualModem {
    /// Starts the modem in `dir`, announced on `bench_dir`. `edl` describes the device it
    /// becomes in download mode; its serial and USB IDs are set here to match the modem.
    /// Once in EDL it stays there: every reset brings back the boot ROM.
    pub fn start(
        modem: ModemConfig,
        edl: EdlConfig,
        dir: &Path,
        bench_dir: &Path,
    ) -> io::Result<Self> {
        Self::launch(modem, edl, dir, bench_dir, None)
    }

    /// As [`VirtualModem::start`], but a `<power value="reset">` in EDL boots the
    /// firmware: the AT port comes back on the same port path, reporting the revision of
    /// the firmware flashed (see [`firmware_revision`]), with `returned_faults` as its
    /// fault plan.
    pub fn start_returning(
        modem: ModemConfig,
        edl: EdlConfig,
        dir: &Path,
        bench_dir: &Path,
        returned_faults: FaultPlan,
    ) -> io::Result<Self> {
        Self::launch(modem, edl, dir, bench_dir, Some(returned_faults))
    }

    fn launch(
        mut modem: ModemConfig,
        mut edl: EdlConfig,
        dir: &Path,
        bench_dir: &Path,
        returned_faults: Option<FaultPlan>,
    ) -> io::Result<Self> {
        edl.serial = modem.usb_serial.clone();
        (edl.vid, edl.pid) = ZTE_EDL;
        // A virtual USB port of its own, kept in every mode, as a real device keeps the
        // port it is plugged into.
        let port_path = modem
            .port_path
            .get_or_insert_with(|| virtual_port_path(dir))
            .clone();
        edl.port_path = Some(port_path);
        // Create the LUNs now, so they exist (with their identity data) before any switch.
        drop(EdlSim::new(dir, edl.clone(), None)?);
        let sides = Arc::new(Sides {
            modem_cfg: modem.clone(),
            edl_cfg: edl,
            dir: dir.to_path_buf(),
            bench_dir: bench_dir.to_path_buf(),
            returns: returned_faults.is_some(),
            returned_faults: returned_faults.unwrap_or_default(),
            modem: Mutex::new(None),
            edl: Mutex::new(None),
            at_log: Mutex::new(Vec::new()),
            fired: Mutex::new(Vec::new()),
        });
        sides.start_modem(modem)?;
        let address = lock(&sides.modem)
            .as_ref()
            .map(|m| m.address().to_string())
            .unwrap_or_default();
        Ok(VirtualModem { sides, address })
    }

    /// The AT port's address when it started.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The AT port's address now (a modem that came back has a new one).
    pub fn current_address(&self) -> String {
        lock(&self.sides.modem)
            .as_ref()
            .map(|m| m.address().to_string())
            .unwrap_or_default()
    }

    /// The USB port path it keeps in every mode.
    pub fn port_path(&self) -> String {
        self.sides.edl_cfg.port_path.clone().unwrap_or_default()
    }

    /// The AT commands received, over every life of the modem.
    pub fn at_commands(&self) -> Vec<String> {
        let mut all = lock(&self.sides.at_log).clone();
        all.extend(
            lock(&self.sides.modem)
                .as_ref()
                .map(RunningModem::commands)
                .unwrap_or_default(),
        );
        all
    }

    /// The DIAG requests its DIAG port received, in hex.
    pub fn diag_requests(&self) -> Vec<String> {
        lock(&self.sides.modem)
            .as_ref()
            .map(RunningModem::diag_requests)
            .unwrap_or_default()
    }

    /// The injected faults that have fired so far: the AT side's, then the EDL side's.
    pub fn faults_fired(&self) -> Vec<String> {
        let mut fired = lock(&self.sides.fired).clone();
        fired.extend(
            lock(&self.sides.modem)
                .as_ref()
                .map(RunningModem::faults_fired)
                .unwrap_or_default(),
        );
        fired.extend(
            lock(&self.sides.edl)
                .as_ref()
                .map(RunningEdl::faults_fired)
                .unwrap_or_default(),
        );
        fired
    }

    /// The EDL side's log, once switched.
    pub fn edl_commands(&self) -> Vec<String> {
        lock(&self.sides.edl)
            .as_ref()
            .map(RunningEdl::commands)
            .unwrap_or_default()
    }

    /// The raw file holding LUN `lun`.
    pub fn lun_path(&self, lun: usize) -> PathBuf {
        super::edl::lun_path(&self.sides.dir, lun)
    }

    /// Stops both sides.
    pub fn stop(self) {
        let modem = lock(&self.sides.modem).take();
        if let Some(modem) = modem {
            modem.stop();
        }
        let edl = lock(&self.sides.edl).take();
        if let Some(edl) = edl {
            edl.stop();
        }
    }
}

/// One virtual device a bench schedule plugs in.
pub enum VirtualDevice {
    /// A phone in fastboot, announced on the bench at its loopback address.
    Phone(PhoneConfig),
    /// A modem or hotspot that re-enumerates through EDL and comes back after a flash
    /// (see [`VirtualModem::start_returning`]); `returned_faults` are its faults then.
    Modem {
        /// The AT side.
        modem: ModemConfig,
        /// The EDL side.
        edl: Box<EdlConfig>,
        /// Faults of the modem once it came back after a flash.
        returned_faults: FaultPlan,
    },
    /// A device stuck in EDL (a brick).
    Brick(Box<EdlConfig>),
}

/// A device of a schedule: its name (its folder under the bench's root), when it is
/// plugged in, and what it is.
pub struct Arrival {
    /// Name, and the folder its storage lives in.
    pub name: String,
    /// Time from the bench's start to the plug.
    pub after: Duration,
    /// The device.
    pub device: VirtualDevice,
}

/// A device of the bench once plugged in.
pub enum Plugged {
    /// A phone and the announcement that puts it on the bench.
    Phone(RunningPhone, Announcement),
    /// A modem.
    Modem(VirtualModem),
    /// A brick.
    Brick(RunningEdl),
}

impl Plugged {
    /// Every command the device received, in each simulator's own wording.
    pub fn commands(&self) -> Vec<String> {
        match self {
            Plugged::Phone(phone, _) => phone.commands(),
            Plugged::Modem(modem) => {
                let mut all = modem.at_commands();
                all.extend(modem.edl_commands());
                all
            }
            Plugged::Brick(edl) => edl.commands(),
        }
    }

    /// The injected faults that fired.
    pub fn faults_fired(&self) -> Vec<String> {
        match self {
            Plugged::Phone(phone, _) => phone.faults_fired(),
            Plugged::Modem(modem) => modem.faults_fired(),
            Plugged::Brick(edl) => edl.faults_fired(),
        }
    }

    fn stop(self) {
        match self {
            Plugged::Phone(phone, announcement) => {
                announcement.withdraw();
                phone.stop();
            }
            Plugged::Modem(modem) => modem.stop(),
            Plugged::Brick(edl) => edl.stop(),
        }
    }
}

/// Devices plugged in over time, each into its own folder under `root`.
pub struct ArrivingBench {
    root: PathBuf,
    plugged: Arc<Mutex<Vec<(String, Plugged)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ArrivingBench {
    /// Plugs each device in after its delay (counted from now), announcing it in
    /// `bench_dir`, on a background thread.
    pub fn start(root: &Path, bench_dir: &Path, mut arrivals: Vec<Arrival>) -> Self {
        arrivals.sort_by_key(|a| a.after);
        let plugged: Arc<Mutex<Vec<(String, Plugged)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (root_dir, bench, shared, stopping) = (
            root.to_path_buf(),
            bench_dir.to_path_buf(),
            Arc::clone(&plugged),
            Arc::clone(&stop),
        );
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            for arrival in arrivals {
                while start.elapsed() < arrival.after {
                    if stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let dir = root_dir.join(&arrival.name);
                match plug(&dir, &bench, arrival.device) {
                    Ok(device) => lock(&shared).push((arrival.name, device)),
                    Err(e) => tracing::error!("virtual device {} failed: {e}", arrival.name),
                }
            }
        });
        ArrivingBench {
            root: root.to_path_buf(),
            plugged,
            stop,
            thread: Some(thread),
        }
    }

    /// The folder holding device `name`'s storage.
    pub fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// How many devices are plugged in so far.
    pub fn plugged(&self) -> usize {
        lock(&self.plugged).len()
    }

    /// Runs `f` on device `name`, if it is plugged in.
    pub fn with<R>(&self, name: &str, f: impl FnOnce(&Plugged) -> R) -> Option<R> {
        lock(&self.plugged)
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| f(d))
    }

    /// Unplugs device `name` (it leaves the bench).
    pub fn unplug(&self, name: &str) {
        let device = {
            let mut plugged = lock(&self.plugged);
            let at = plugged.iter().position(|(n, _)| n == name);
            at.map(|i| plugged.remove(i).1)
        };
        if let Some(device) = device {
            device.stop();
        }
    }

    /// Stops plugging and stops every device.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        for (_, device) in lock(&self.plugged).drain(..) {
            device.stop();
        }
    }
}

impl Drop for ArrivingBench {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts one device in `dir` and puts it on the bench.
fn plug(dir: &Path, bench_dir: &Path, device: VirtualDevice) -> io::Result<Plugged> {
    std::fs::create_dir_all(dir)?;
    match device {
        VirtualDevice::Phone(cfg) => {
            let (serial, product) = (cfg.serial.clone(), cfg.product.clone());
            let phone = PhoneSim::start("127.0.0.1:0".parse().expect("literal"), dir, cfg)?;
            let entry = BenchEntry {
                address: phone.device_address(),
                vid: FASTBOOT_USB.0,
                pid: FASTBOOT_USB.1,
                serial,
                product,
                interface: None,
                port_path: None,
            };
            let announced = announce::announce(bench_dir, &entry)?;
            Ok(Plugged::Phone(phone, announced))
        }
        VirtualDevice::Modem {
            modem,
            edl,
            returned_faults,
        } => Ok(Plugged::Modem(VirtualModem::start_returning(
            modem,
            *edl,
            dir,
            bench_dir,
            returned_faults,
        )?)),
        VirtualDevice::Brick(edl) => {
            let mut edl = *edl;
            edl.port_path.get_or_insert_with(|| virtual_port_path(dir));
            Ok(Plugged::Brick(EdlSim::start(dir, edl, Some(bench_dir))?))
        }
    }
}
