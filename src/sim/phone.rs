//! A virtual Android phone in fastboot mode, served over TCP like `fastboot -s tcp:…`, or
//! on Linux as a USB device through a gadget ([`UsbPhone`]).
//!
//! It checks what a real bootloader checks (download limit, partition table and sizes,
//! sparse image validity, slots) and stores what it is sent: every partition is the raw
//! file `DIR/<partition>.img`, so tests can compare the bytes on the "device" with the
//! image a client flashed. Connections are served one after another, as a phone's single
//! USB/TCP endpoint does; partitions, slots and versions survive connections and reboots.
//!
//! The phone words its answers plainly, or as one family of real bootloaders does
//! ([`Profile`]), or answers `getvar` exactly as a real device did in a recorded
//! `getvar all` transcript ([`PhoneConfig::replaying`]).
//!
//! Injected faults ([`PhoneConfig::faults`]) are matched against the command text as it
//! arrives (`flash:boot`, `download:00100000`, `getvar:battery-soc-ok`). Payload bytes
//! *received* are download data; payload bytes *written* are image bytes a `flash:` puts
//! into a partition (raw bytes, or the RAW and FILL bytes of a sparse image; erasing
//! counts nothing). The phone writes a partition progressively from the stored download,
//! so a power cut leaves it holding exactly the bytes written before the cut.
//!
//! * disconnect: the connection closes without an answer once the count is reached (mid
//!   data phase, or right after its last byte); the download is lost; the next
//!   connection is served at once.
//! * power loss: the write stops at exactly that byte, the connection closes without an
//!   answer, the download (RAM) is lost, and the phone boots again: it is away for
//!   [`BOOT_TIME`] (connections are closed unserved), then in fastboot again.
//! * fail: `FAIL` + "injected fault", nothing executed; garbage: one 64-byte frame of
//!   non-text bytes instead of the answer, nothing executed; the connection goes on.
//! * stall: no answer, nothing executed; the phone reads and ignores everything else on
//!   that connection until the host closes it, then serves the next one normally.
//! * battery drop: `battery-soc` and `battery-soc-ok` report the new charge.
//! * reenumerate: no answer, nothing executed; the phone boots its OS (the version
//!   partition is read again, as at every boot), is away for [`BOOT_TIME`] and then
//!   back in fastboot.
//! * drop: no answer, nothing executed, the connection closes; the next one is served at
//!   once, in the same mode (bootloader or fastbootd). Over USB the phone re-enumerates.

mod bootloader;
mod dynamic;
mod fastbootd;
mod link;
mod profile;
mod replay;
#[cfg(target_os = "linux")]
mod splice;
mod storage;
#[cfg(target_os = "linux")]
mod usb;
pub(crate) mod version;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::fault::{Fault, FaultPlan, FaultPlanError};
use bootloader::Bootloader;
use link::Wire;
use storage::{Partition, Storage};

pub use super::shaper::parse_rate;
pub use bootloader::{BATTERY_OK_PERCENT, BOOT_TIME};
pub use dynamic::{Dynamic, SnapshotStatus};
pub use profile::{Profile, PROFILES};
pub use replay::{Transcript, TranscriptError};
pub use storage::BOOTED_FILE;
#[cfg(target_os = "linux")]
pub use usb::{fastbootd_product, UsbPhone};

/// What the virtual phone is and what it holds.
///
/// Later behaviours are added as fields here, so that every constructor keeps working
/// through `..Default::default()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneConfig {
    /// `getvar:product`, matched by packages against their target.
    pub product: String,
    /// `getvar:serialno`.
    pub serial: String,
    /// `version-bootloader` until an image with a version marker is booted.
    pub firmware_version: String,
    /// Anti-rollback level (`getvar:security-version`); it never decreases.
    pub security_version: u64,
    /// `battery-soc`; `None` models a phone that does not report its battery.
    pub battery_percent: Option<u8>,
    /// Largest download accepted (`max-download-size`); clients split larger images.
    pub max_download_size: u32,
    /// Partition base names and sizes in bytes.
    pub partitions: Vec<(String, u64)>,
    /// A/B phone: every partition exists as `NAME_a` and `NAME_b`, slot `a` active,
    /// except those real A/B phones keep once (persist, misc, modemst1, …; see
    /// `has-slot` in the bootloader module).
    pub slots: bool,
    /// Base name of the partition whose image decides the reported versions. At every
    /// boot (start, `reboot`, `reboot-bootloader`, `continue`) the phone reads the first
    /// 4096 bytes of it (of `NAME_<active slot>` on A/B) and, if they hold
    /// `FLASHLINE-VERSION=<v>\n` (and optionally `FLASHLINE-SECURITY=<n>\n`), reports `v`
    /// as `version-bootloader` and raises `security-version` to `n` (never lowers it).
    /// Without a marker it reports `firmware_version`.
    pub version_partition: Option<String>,
    /// Bytes per second the phone takes download data in, as a cable would carry it
    /// (USB 2.0 high-speed bulk: about 40 MB/s in practice); `None` for loopback speed.
    pub link_rate: Option<u64>,
    /// Added to every command before it is answered: the round trip of a real link
    /// (about 0.5 ms over USB 2.0); zero for none.
    pub latency: Duration,
    /// A locked bootloader: `unlocked` is `no`, and `flash`/`erase` fail with the messages
    /// of a locked Qualcomm ABL.
    pub locked: bool,
    /// Bytes per second the phone writes to storage: `flash` and `erase` answer only after
    /// the bytes they write (an erase: the partition's size) would take at this rate, and
    /// send no INFO meanwhile, as LK and U-Boot bootloaders do; `None` for no delay.
    pub write_rate: Option<u64>,
    /// A host closing the connection in the middle of a download does not end it: the
    /// phone keeps waiting for the announced bytes, and the next connection's bytes
    /// complete it, as a bootloader over USB does (it never learns that the host process
    /// went away). Off, closing the connection ends the download, as fastboot over TCP does.
    pub keep_download_on_close: bool,
    /// How the phone misbehaves on purpose (see the module documentation); none by default.
    pub faults: FaultPlan,
    /// Answer in the words of this bootloader family ([`Profile`]); `None` for flashline's
    /// own plain wording.
    pub profile: Option<Profile>,
    /// Answer every `getvar` as a real device did ([`Transcript`]); see
    /// [`PhoneConfig::replaying`].
    pub replay: Option<Arc<Transcript>>,
    /// A phone with dynamic partitions (Android 10+): a `super` partition with LP
    /// metadata holding the logical partitions, and a userspace fastboot (fastbootd)
    /// reached with `reboot-fastboot`; see [`Dynamic`]. `None`: a phone whose partitions
    /// are all physical.
    pub dynamic: Option<Dynamic>,
    /// Partitions whose `flash` refuses a sparse image, as some U-Boot fastboot targets
    /// refuse it for eMMC boot partitions (public reports:
    /// <https://github.com/boardswarm/boardswarm/pull/146>, "Not all fastboot targets
    /// support sparse images; in implementations like u-boot it even depends on the
    /// target"). The refusal's wording is this simulator's (virtual).
    pub raw_only: Vec<String>,
    /// What `partition-type:<p>` reports, by partition base name (`userdata` → `ext4`),
    /// as real bootloaders do for the partitions `fastboot format` builds a filesystem for
    /// (public reports: tests/data/fastboot/lg-g7-thinq.txt `partition-type:userdata:ext4`,
    /// infinix-x6728.txt `partition-type:userdata: f2fs`); every other partition is `raw`.
    pub filesystems: Vec<(String, String)>,
}

impl Default for PhoneConfig {
    fn default() -> Self {
        const MIB: u64 = 1024 * 1024;
        PhoneConfig {
            product: "zte-demo-phone".into(),
            serial: "FLSIM0001".into(),
            firmware_version: "2.0.0".into(),
            security_version: 7,
            battery_percent: Some(80),
            max_download_size: 256 * 1024 * 1024,
            partitions: vec![
                ("boot".into(), 64 * MIB),
                ("system".into(), 256 * MIB),
                ("vendor".into(), 64 * MIB),
            ],
            slots: false,
            version_partition: Some("boot".into()),
            link_rate: None,
            latency: Duration::ZERO,
            locked: false,
            write_rate: None,
            keep_download_on_close: false,
            faults: FaultPlan::none(),
            profile: None,
            replay: None,
            dynamic: None,
            raw_only: Vec::new(),
            filesystems: Vec::new(),
        }
    }
}

impl PhoneConfig {
    /// `partition-type:<partition>`: its filesystem from [`PhoneConfig::filesystems`]
    /// (matched with or without its slot suffix), else `raw`.
    pub(crate) fn partition_type(&self, partition: &str) -> String {
        let base = ["_a", "_b"]
            .iter()
            .find_map(|s| partition.strip_suffix(s))
            .filter(|_| self.slots);
        self.filesystems
            .iter()
            .find(|(name, _)| name == partition || Some(name.as_str()) == base)
            .map_or_else(|| "raw".to_string(), |(_, kind)| kind.clone())
    }

    /// A phone that answers `getvar` exactly as the device of `transcript` did, with one
    /// partition (a sparse file) per size the device listed and the device's download
    /// limit, locked if it said `unlocked: no`. An A/B device keeps its partitions' listed
    /// `_a`/`_b` names, and `set_active` switches the slot it then reports as
    /// `current-slot`. Everything else (writes, faults) behaves as configured.
    pub fn replaying(transcript: Transcript) -> Self {
        let d = PhoneConfig::default();
        PhoneConfig {
            partitions: transcript.partitions(),
            max_download_size: transcript
                .max_download_size()
                .unwrap_or(d.max_download_size),
            battery_percent: None,
            version_partition: None,
            locked: transcript.locked(),
            replay: Some(Arc::new(transcript)),
            ..d
        }
    }
}

/// Why a phone could not be set up. Returned inside an [`io::Error`] of kind
/// `InvalidInput` (or `Other` for [`ConfigError::Io`]); downcast with `get_ref`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The name would not be a safe file name.
    #[error(
        "partition name {0:?} is not allowed: use 1 to 64 characters from A-Z a-z 0-9 _ . - \
         starting with a letter or digit"
    )]
    BadPartitionName(String),
    /// Two partitions with the same name (after adding slot suffixes).
    #[error("partition {0:?} is declared twice")]
    DuplicatePartition(String),
    /// A partition of zero bytes.
    #[error("partition {0:?} has size 0")]
    EmptyPartition(String),
    /// `version_partition` names no declared partition.
    #[error("version partition {0:?} is not one of the declared partitions")]
    UnknownVersionPartition(String),
    /// A link or write rate of 0 would never move a byte.
    #[error("the link and write rates must be at least 1 byte/s")]
    ZeroLinkRate,
    /// `max_download_size` of 0 would refuse every download.
    #[error("max-download-size must be at least 1 byte")]
    ZeroDownloadSize,
    /// A battery charge above 100 %.
    #[error("battery charge {0} % is over 100 %")]
    BadBattery(u8),
    /// A retrofit phone keeps its super in `system_a`/`system_b`, so it needs slots.
    #[error("a retrofit phone keeps super in system_a and system_b: it needs slots")]
    RetrofitNeedsSlots,
    /// The dynamic partitions cannot be laid out in super.
    #[error("cannot lay out super: {0}")]
    BadSuper(String),
    /// The fault plan cannot be carried out by this phone.
    #[error(transparent)]
    Fault(#[from] FaultPlanError),
    /// The directory already holds this partition with another size.
    #[error(
        "{} holds {actual} bytes but partition {name:?} is declared with {declared}; \
         remove the file or declare the same size", path.display()
    )]
    SizeMismatch {
        /// The existing file.
        path: PathBuf,
        /// Its length.
        actual: u64,
        /// The partition.
        name: String,
        /// The configured size.
        declared: u64,
    },
    /// Creating or inspecting a partition file failed.
    #[error("cannot prepare {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying failure.
        source: io::Error,
    },
}

impl From<ConfigError> for io::Error {
    fn from(e: ConfigError) -> Self {
        let kind = match e {
            ConfigError::Io { .. } => io::ErrorKind::Other,
            _ => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, e)
    }
}

impl PhoneConfig {
    /// The partition table: names checked, slot suffixes added.
    fn partition_table(&self) -> Result<Vec<Partition>, ConfigError> {
        if self.max_download_size == 0 {
            return Err(ConfigError::ZeroDownloadSize);
        }
        if self.link_rate == Some(0) || self.write_rate == Some(0) {
            return Err(ConfigError::ZeroLinkRate);
        }
        if let Some(pct) = self.battery_percent.filter(|&p| p > 100) {
            return Err(ConfigError::BadBattery(pct));
        }
        let has_battery = self.battery_percent.is_some();
        self.faults.check("the phone", |fault| match fault {
            Fault::BatteryDrop { .. } if !has_battery => {
                Some("reports no battery (battery_percent is None)")
            }
            Fault::Corrupt { .. } => Some("checks no payload checksum, so a flipped byte would pass unseen; corrupt@ is the ZXIC simulator's"),
            _ => None,
        })?;
        let mut physical: Vec<(&str, u64, bool)> = self
            .partitions
            .iter()
            .filter(|(base, _)| !self.is_logical_base(base))
            .map(|(base, size)| {
                let slotted = self.slots && !bootloader::is_unslotted(base);
                (base.as_str(), *size, slotted)
            })
            .collect();
        if let Some(d) = &self.dynamic {
            if d.retrofit && !self.slots {
                return Err(ConfigError::RetrofitNeedsSlots);
            }
            for (base, _) in &d.logical {
                if !dynamic::is_valid_logical_name(&format!("{base}_b-cow")) {
                    return Err(ConfigError::BadPartitionName(base.clone()));
                }
            }
            // Retrofit: each slot's system partition is that slot's super.
            physical.push(match d.retrofit {
                true => ("system", d.super_size, true),
                false => ("super", d.super_size, false),
            });
        }
        let mut table: Vec<Partition> = Vec::new();
        for (base, size, slotted) in physical {
            let suffixes: &[&str] = if slotted { &["_a", "_b"] } else { &[""] };
            for suffix in suffixes {
                let name = format!("{base}{suffix}");
                if !storage::is_valid_name(base) || !storage::is_valid_name(&name) {
                    return Err(ConfigError::BadPartitionName(base.to_string()));
                }
                if size == 0 {
                    return Err(ConfigError::EmptyPartition(name));
                }
                if table.iter().any(|p| p.name == name) {
                    return Err(ConfigError::DuplicatePartition(name));
                }
                table.push(Partition { name, size });
            }
        }
        if let Some(base) = &self.version_partition {
            if !self.partitions.iter().any(|(name, _)| name == base) {
                return Err(ConfigError::UnknownVersionPartition(base.clone()));
            }
        }
        Ok(table)
    }

    /// Whether `base` is one of the logical partitions of a dynamic phone (so not a
    /// physical one).
    fn is_logical_base(&self, base: &str) -> bool {
        self.dynamic
            .as_ref()
            .is_some_and(|d| d.logical.iter().any(|(name, _)| name == base))
    }

    /// The partition files, and on a dynamic phone its super laid out.
    fn open_storage(&self, dir: &Path) -> Result<Storage, ConfigError> {
        let storage = Storage::open(dir, self.partition_table()?)?;
        fastbootd::prepare_supers(self, &storage)?;
        Ok(storage)
    }
}

/// State shared between the serving thread and its [`RunningPhone`] handle.
#[derive(Default)]
struct Shared {
    commands: Arc<Mutex<Vec<String>>>,
    /// Faults that fired (see [`RunningPhone::faults_fired`]).
    faults_fired: Arc<Mutex<Vec<String>>>,
    stopping: AtomicBool,
    /// The connection being served, so `stop` can cut it short.
    active: Mutex<Option<TcpStream>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A bound, not yet serving, virtual phone.
pub struct PhoneSim {
    listener: TcpListener,
    bootloader: Bootloader,
    shared: Arc<Shared>,
}

impl PhoneSim {
    /// Prepares the partition files in `dir` and binds `listen` (port 0 picks one).
    pub fn bind(listen: SocketAddr, dir: &Path, cfg: PhoneConfig) -> io::Result<Self> {
        let storage = cfg.open_storage(dir)?;
        let listener = TcpListener::bind(listen)?;
        let shared = Arc::new(Shared::default());
        let bootloader = Bootloader::new(
            cfg,
            storage,
            Arc::clone(&shared.commands),
            Arc::clone(&shared.faults_fired),
        );
        Ok(PhoneSim {
            listener,
            bootloader,
            shared,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Binds and serves on a background thread until [`RunningPhone::stop`].
    pub fn start(listen: SocketAddr, dir: &Path, cfg: PhoneConfig) -> io::Result<RunningPhone> {
        let sim = PhoneSim::bind(listen, dir, cfg)?;
        let addr = sim.local_addr()?;
        let shared = Arc::clone(&sim.shared);
        let thread = thread::Builder::new()
            .name(format!("phone-sim {addr}"))
            .spawn(move || sim.serve_forever())?;
        Ok(RunningPhone {
            addr,
            shared,
            thread: Some(thread),
        })
    }

    /// Serves connections one after another, on the calling thread (the CLI's
    /// `flashline sim phone`). Returns only when stopped through a [`RunningPhone`].
    pub fn serve_forever(mut self) {
        for stream in self.listener.incoming() {
            let stream = match stream {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::warn!("phone sim: accept failed: {e}");
                    // Back off so a persistent error (e.g. out of descriptors) cannot spin.
                    thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            *lock(&self.shared.active) = stream.try_clone().ok();
            if self.shared.stopping.load(Ordering::SeqCst) {
                break;
            }
            if self.bootloader.is_away() {
                // Rebooting: nobody is there to talk to.
                drop(stream);
                *lock(&self.shared.active) = None;
                continue;
            }
            let peer = stream.peer_addr().ok();
            if let Err(e) = self.bootloader.serve(Wire::Tcp(stream)) {
                tracing::info!("phone sim: connection from {peer:?} ended: {e}");
            }
            *lock(&self.shared.active) = None;
        }
    }
}

/// A phone serving on a background thread. Dropping it stops the phone too.
pub struct RunningPhone {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl RunningPhone {
    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address to give a fastboot client: `tcp:HOST:PORT`.
    pub fn device_address(&self) -> String {
        format!("tcp:{}", self.connect_addr())
    }

    /// Every command received so far, oldest first, in its wire form
    /// (`getvar:product`, `download:00100000`, `flash:boot_a`, …). Frames that were not a
    /// valid command appear as `<…>`.
    pub fn commands(&self) -> Vec<String> {
        lock(&self.shared.commands).clone()
    }

    /// The injected faults that have fired so far, oldest first, in their textual form
    /// (`power-loss@bytes=1048576`, `fail@flash:boot#1`, …).
    pub fn faults_fired(&self) -> Vec<String> {
        lock(&self.shared.faults_fired).clone()
    }

    /// Stops serving and waits for the thread; partition files stay in the directory.
    pub fn stop(mut self) {
        self.shutdown();
    }

    /// An address that reaches the listener even when it is bound to "any".
    fn connect_addr(&self) -> SocketAddr {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        SocketAddr::new(ip, self.addr.port())
    }

    fn shutdown(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.shared.stopping.store(true, Ordering::SeqCst);
        if let Some(active) = lock(&self.shared.active).as_ref() {
            let _ = active.shutdown(std::net::Shutdown::Both);
        }
        // Wake the blocking accept; it sees `stopping` and returns.
        let _ = TcpStream::connect_timeout(&self.connect_addr(), Duration::from_secs(1));
        if thread.join().is_err() {
            tracing::error!("phone sim thread panicked");
        }
    }
}

impl Drop for RunningPhone {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_phone_creates_sparse_partition_files() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = PhoneConfig {
            slots: true,
            ..PhoneConfig::default()
        };
        let sim = PhoneSim::bind("127.0.0.1:0".parse().unwrap(), dir.path(), cfg).unwrap();
        assert_ne!(sim.local_addr().unwrap().port(), 0);
        for (name, size) in [
            ("boot_a", 64),
            ("boot_b", 64),
            ("system_b", 256),
            ("vendor_a", 64),
        ] {
            let meta = std::fs::metadata(dir.path().join(format!("{name}.img"))).unwrap();
            assert_eq!(meta.len(), size * 1024 * 1024, "{name}");
        }
        assert!(!dir.path().join("boot.img").exists());
    }

    #[test]
    fn config_errors_are_invalid_input() {
        let cfg = PhoneConfig {
            max_download_size: 0,
            ..PhoneConfig::default()
        };
        let err = PhoneSim::bind(
            "127.0.0.1:0".parse().unwrap(),
            Path::new("/nonexistent"),
            cfg,
        )
        .err()
        .unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(matches!(
            err.get_ref().and_then(|e| e.downcast_ref::<ConfigError>()),
            Some(ConfigError::ZeroDownloadSize)
        ));
    }

    #[test]
    fn stop_interrupts_an_idle_connection() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = PhoneConfig {
            partitions: vec![("boot".into(), 4096)],
            ..PhoneConfig::default()
        };
        let phone = PhoneSim::start("127.0.0.1:0".parse().unwrap(), dir.path(), cfg).unwrap();
        assert_eq!(phone.device_address(), format!("tcp:{}", phone.addr()));
        let mut idle = TcpStream::connect(phone.addr()).unwrap();
        std::io::Write::write_all(&mut idle, b"FB01").unwrap();
        let started = std::time::Instant::now();
        std::thread::sleep(Duration::from_millis(50));
        phone.stop();
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
