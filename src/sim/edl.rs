//! A virtual Qualcomm device in emergency download mode (EDL), on a pseudo-terminal or on
//! any other [`Line`] (a USB gadget's bulk endpoints).
//!
//! It behaves like a device whose boot ROM (PBL) speaks Sahara: it offers HELLO until a
//! host answers, pulls a Firehose programmer out of the host the way a PBL does (header,
//! program headers, then segments out of order), checks its hash when it is a "secure
//! boot" device, and then runs the programmer on the same line: `<configure>`,
//! `<program>`, `<read>`, `<erase>`, `<patch>`, `<getsha256digest>`, `<getstorageinfo>`,
//! `<power>`, `<nop>`. Each LUN is the raw file `DIR/lun<N>.img`, created with a GPT and
//! per-device identity data, so tests can check exactly what a host wrote and what it
//! must not have touched.
//!
//! Where real devices differ, it picks (the `pbl` and `programmer` modules say more):
//! payload negotiation NAKs a size above its own maximum and names that maximum;
//! storage commands before `<configure>` are refused; patch values are plain numbers;
//! `<power value="reset">` reboots into EDL again (the device has nothing else to boot),
//! `off` ends the simulation as a powered-off device would vanish from the bus.
//!
//! Injected faults ([`EdlConfig::faults`]) are matched against the Firehose command as the
//! event log shows it after `firehose:` (`program lun=0 start=34 sectors=8`,
//! `configure memory=emmc payload=1048576`, `getsha256digest …`), so a tag name matches
//! every command of that kind. Payload bytes are `<program>` data: received and written
//! are the same bytes, since the programmer writes data as it arrives. A pseudo-terminal
//! cannot hang up on its host while keeping its path, so "the link drops" means the device
//! reboots on the same line: it stops answering, drops what it receives, and starts again
//! in the boot ROM with Sahara HELLO; the host sees silence (or HELLO where it expected
//! XML) and must load the programmer again.
//!
//! * disconnect / power loss: the data phase stops at exactly that byte, which is on the
//!   LUN (the rest of the range keeps its old bytes); the device reboots into the boot ROM.
//! * fail: NAK after the log "injected fault: command refused"; nothing executed (a
//!   `<program>` gets no data phase).
//! * stall: no answer, nothing executed; the programmer hangs, dropping whatever arrives,
//!   until the line has been quiet for [`EdlConfig::data_timeout`]; then its watchdog
//!   resets the device into the boot ROM.
//! * garbage: 64 bytes instead of the answer, non-text bytes ending in `</data>` so the
//!   host takes them for one (broken) document; nothing executed; the programmer goes on.
//! * reenumerate: no answer, nothing executed; the device resets into the boot ROM.
//! * battery drop does not apply: a device in EDL reports no battery.

mod chip;
mod elf;
mod habits;
mod pbl;
mod programmer;
pub(crate) mod pty;
mod shaped;
mod storage;
#[cfg(target_os = "linux")]
pub(crate) mod usb;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::download_mode::{lock, pty_line, Port, Running, UsbIdentity};
use super::fault::{Fault, FaultPlan, FaultPlanError, Injector};
use crate::protocol::gpt::{Gpt, GptError, Guid};
use crate::protocol::sahara::Status;
use crate::transport::Transport;

use storage::Storage;

pub use chip::{virtual_pk_hash, ChipProfile, VIRTUAL_HWID};
pub use elf::build_test_programmer;
pub use habits::{ConfigureHabit, Habits, Profile};
pub use storage::{lun_path, IdentityData};

/// Longest single wait of a [`Line`], so a stop request is seen promptly.
const SLICE: Duration = Duration::from_millis(50);

/// The device's end of its cable. The boot ROM and the programmer only read, write and
/// wait on it, so the same device runs on a pseudo-terminal (a serial EDL port) and on a
/// USB gadget's bulk endpoints.
///
/// Every read and write must give up within [`SLICE`]-sized waits once the stop flag is
/// set (with [`TransportError::Disconnected`](crate::transport::TransportError)), so a
/// stopping simulator never hangs. Each `write` is one device transfer: a USB line ends it
/// with a short packet or a zero-length packet, as hosts such as qdl read one Sahara
/// packet or Firehose document per transfer.
pub trait Line: Transport {
    /// Set when the simulator is to stop.
    fn stop_flag(&self) -> &AtomicBool;

    /// Drops whatever the host sent that the device has not read yet, as a device that
    /// reboots loses it.
    fn discard_input(&mut self);

    /// Drops the rest of the host transfer being read and says whether the line has
    /// transfers at all. Over USB what follows a Firehose command in its transfer is
    /// padding (qdl ends each document with a newline) and the data phase starts with the
    /// next transfer; on a serial line (`false`) everything after `</data>` is data.
    fn skip_rest_of_transfer(&mut self) -> bool {
        false
    }

    /// The device reboots into its boot ROM: input is lost, and a line that is a USB
    /// device leaves the bus and enumerates again, as real hardware does.
    fn reboot(&mut self) {
        self.discard_input();
    }

    /// Whether the simulator is shutting down.
    fn stopping(&self) -> bool {
        self.stop_flag().load(Ordering::SeqCst)
    }

    /// Waits out `duration` (a reboot, a requested delay) unless stopped first.
    fn pause(&self, duration: Duration) {
        let end = Instant::now() + duration;
        while !self.stopping() {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            thread::sleep(left.min(SLICE));
        }
    }
}

/// The END_OF_IMAGE status a secure device sends for a programmer it does not accept
/// (`IMAGE_AUTH_FAILURE`).
pub const PROGRAMMER_AUTH_FAILURE: Status = Status(0x25);

/// Page size of the virtual NAND ([`EdlConfig::nand`]).
pub const NAND_PAGE: u32 = 2048;
/// Pages per erase block of the virtual NAND.
pub const NAND_PAGES_PER_BLOCK: u64 = 64;

/// The most LUNs a device may have (UFS has 8 addressable ones).
pub const MAX_LUNS: usize = 8;

/// One partition of the factory layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartSpec {
    /// The LUN it lives on.
    pub lun: u32,
    /// GPT label, unique on the device.
    pub label: String,
    /// Size in sectors.
    pub sectors: u64,
}

impl PartSpec {
    /// A partition of `sectors` sectors called `label` on `lun`.
    pub fn new(lun: u32, label: &str, sectors: u64) -> PartSpec {
        PartSpec {
            lun,
            label: label.into(),
            sectors,
        }
    }
}

/// What the virtual EDL device is and what it holds.
///
/// Later behaviours are added as fields, so constructors keep working through
/// `..Default::default()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdlConfig {
    /// USB serial number string.
    pub serial: String,
    /// USB vendor ID (Qualcomm 0x05c6; ZTE's EDL uses 0x19d2).
    pub vid: u16,
    /// USB product ID (0x9008 "QDLoader"; ZTE 0x0076).
    pub pid: u16,
    /// USB product string.
    pub product: String,
    /// Sector size of every LUN: 512 (eMMC) or 4096 (UFS).
    pub sector_size: u32,
    /// Storage type `<configure MemoryName>` must name (compared without case).
    pub memory_name: String,
    /// Size of each LUN in sectors.
    pub luns: Vec<u64>,
    /// The factory partition layout, laid out in order from each LUN's first usable LBA.
    pub partitions: Vec<PartSpec>,
    /// Partitions filled with [`IdentityData`] when their LUN is created.
    pub identity_labels: Vec<String>,
    /// The only programmer a "secure boot" device runs (SHA-256 of the whole image);
    /// another one is refused with [`PROGRAMMER_AUTH_FAILURE`]. `None` runs any.
    pub programmer_sha256: Option<[u8; 32]>,
    /// Largest `MaxPayloadSizeToTargetInBytes` the programmer accepts.
    pub max_payload_to_target: u32,
    /// Request the programmer with READ_DATA64 (Sahara 3, as newer SoCs do) instead of
    /// READ_DATA (Sahara 2).
    pub read_data64: bool,
    /// Chatty programmer: logs at start-up and right after some responses (as MSM8916
    /// programmers do), so hosts must drain logs instead of assuming silence.
    pub late_logs: bool,
    /// How long the device waits in the middle of a transfer before deciding the host is
    /// gone; it then keeps what arrived and waits for a host again.
    pub data_timeout: Duration,
    /// How the device misbehaves on purpose (see the module documentation); none by
    /// default.
    pub faults: FaultPlan,
    /// Habits of shipped programmers it copies ([`Profile`]); none by default.
    pub habits: Habits,
    /// What the boot ROM answers in Sahara command mode.
    pub chip: ChipProfile,
    /// Whether the USB device has a serial number string. Real 05c6:9008 devices usually
    /// have none and carry the chip serial in the product string instead
    /// ([`EdlConfig::without_iserial`]).
    pub iserial: bool,
    /// Where the device is plugged in, announced on the bench (a modem that switched keeps
    /// its port path).
    pub port_path: Option<String>,
    /// Take the host's bytes no faster than this many bytes/s, like a cable (40 MB/s for
    /// USB 2.0 high speed); `None` takes them as fast as the line carries them.
    pub link_rate: Option<u64>,
    /// Added each time the host speaks after the device did, like a USB round trip.
    pub latency: Duration,
}

impl Default for EdlConfig {
    /// An eMMC modem: one 64 MiB LUN with a realistic (but small) modem layout.
    fn default() -> Self {
        EdlConfig {
            serial: "FLMODEM0001".into(),
            vid: 0x05c6,
            pid: 0x9008,
            product: "QUSB__BULK".into(),
            sector_size: 512,
            memory_name: "emmc".into(),
            luns: vec![64 * 1024 * 2],
            partitions: modem_layout(0, 1),
            identity_labels: ["modemst1", "modemst2", "fsg", "fsc", "persist"]
                .map(String::from)
                .to_vec(),
            programmer_sha256: None,
            max_payload_to_target: 1024 * 1024,
            read_data64: false,
            late_logs: true,
            data_timeout: Duration::from_secs(10),
            faults: FaultPlan::none(),
            habits: Habits::default(),
            chip: ChipProfile::default(),
            iserial: true,
            port_path: None,
            link_rate: None,
            latency: Duration::ZERO,
        }
    }
}

/// The modem layout on `lun`, sizes divided by `scale` (8 turns 512-byte sectors into
/// 4096-byte ones).
fn modem_layout(lun: u32, scale: u64) -> Vec<PartSpec> {
    [
        ("sbl1", 1024),
        ("aboot", 2048),
        ("boot", 16384),
        ("modem", 49152),
        ("modemst1", 1024),
        ("modemst2", 1024),
        ("fsg", 1024),
        ("fsc", 8),
        ("persist", 2048),
        ("userdata", 32768),
    ]
    .into_iter()
    .map(|(label, sectors)| PartSpec::new(lun, label, sectors / scale))
    .collect()
}

impl EdlConfig {
    /// A UFS device: 4096-byte sectors, the modem layout on LUN 0 (64 MiB) and the boot
    /// loader on LUN 1 (1 MiB), as UFS devices keep it apart.
    pub fn ufs() -> EdlConfig {
        let mut partitions: Vec<PartSpec> = modem_layout(0, 8)
            .into_iter()
            .filter(|p| p.label != "sbl1")
            .collect();
        partitions.push(PartSpec::new(1, "xbl", 128));
        EdlConfig {
            sector_size: 4096,
            memory_name: "ufs".into(),
            luns: vec![64 * 256, 256],
            partitions,
            ..EdlConfig::default()
        }
    }

    /// The device as most real 05c6:9008 devices enumerate: no USB serial number, and the
    /// chip serial in the product string, `QUSB__BULK_SN:xxxxxxxx`.
    pub fn without_iserial(self) -> EdlConfig {
        let serial =
            crate::protocol::sahara::identity::parse_serial(&self.chip.serial_answer(&self.serial))
                .unwrap_or_default();
        EdlConfig {
            product: format!("QUSB__BULK_SN:{serial:08x}"),
            iserial: false,
            ..self
        }
    }

    /// The USB serial number string the device enumerates with, if any.
    pub fn usb_serial(&self) -> &str {
        if self.iserial {
            &self.serial
        } else {
            ""
        }
    }

    /// How the device shows itself on USB.
    fn usb(&self) -> UsbIdentity<'_> {
        UsbIdentity {
            vid: self.vid,
            pid: self.pid,
            serial: self.usb_serial(),
            product: &self.product,
        }
    }

    /// A raw NAND modem (MDM9x07/SDX class): one 64 MiB LUN of 2048-byte pages, 64 pages
    /// to an erase block. Its partition table is Qualcomm's own in NAND (MIBIB), not a
    /// GPT, so the simulator keeps none and has no identity partitions to show.
    pub fn nand() -> EdlConfig {
        EdlConfig {
            sector_size: NAND_PAGE,
            memory_name: "nand".into(),
            luns: vec![64 * 1024 * 1024 / u64::from(NAND_PAGE)],
            partitions: Vec::new(),
            identity_labels: Vec::new(),
            ..EdlConfig::default()
        }
    }

    /// Whether the storage is raw NAND.
    fn is_nand(&self) -> bool {
        self.memory_name.eq_ignore_ascii_case("nand")
    }

    /// Checks the configuration and builds each LUN's GPT (none on NAND).
    fn tables(&self) -> Result<Vec<Option<Gpt>>, EdlConfigError> {
        if self.luns.is_empty() || self.luns.len() > MAX_LUNS {
            return Err(EdlConfigError::LunCount(self.luns.len()));
        }
        if self.max_payload_to_target == 0 {
            return Err(EdlConfigError::ZeroPayload);
        }
        if self.memory_name.trim().is_empty() {
            return Err(EdlConfigError::NoMemoryName);
        }
        self.faults.check("a device in EDL", |fault| match fault {
            Fault::BatteryDrop { .. } => Some("reports no battery"),
            Fault::Drop { .. } => Some("is driven over one stream; use disconnect@bytes=N"),
            Fault::Corrupt { .. } => Some("checks no payload checksum, so a flipped byte would pass unseen; corrupt@ is the ZXIC simulator's"),
            _ => None,
        })?;
        if self.is_nand() {
            if let Some(part) = self.partitions.first() {
                return Err(EdlConfigError::PartitionsOnNand(part.label.clone()));
            }
            for (lun, &sectors) in self.luns.iter().enumerate() {
                if sectors.checked_mul(u64::from(self.sector_size)).is_none() {
                    return Err(EdlConfigError::LunTooLarge(lun));
                }
            }
            return Ok(vec![None; self.luns.len()]);
        }
        let mut tables = Vec::with_capacity(self.luns.len());
        for (lun, &sectors) in self.luns.iter().enumerate() {
            if sectors.checked_mul(u64::from(self.sector_size)).is_none() {
                return Err(EdlConfigError::LunTooLarge(lun));
            }
            let gpt = Gpt::new(self.sector_size, sectors, self.guid(&format!("disk {lun}")))
                .map_err(|source| EdlConfigError::Gpt { lun, source })?;
            tables.push(gpt);
        }
        for (i, part) in self.partitions.iter().enumerate() {
            if self.partitions[..i].iter().any(|p| p.label == part.label) {
                return Err(EdlConfigError::DuplicateLabel(part.label.clone()));
            }
            let gpt = usize::try_from(part.lun)
                .ok()
                .and_then(|lun| tables.get_mut(lun))
                .ok_or_else(|| EdlConfigError::UnknownLun {
                    label: part.label.clone(),
                    lun: part.lun,
                })?;
            let unique = self.guid(&format!("part {}", part.label));
            gpt.push(&part.label, part.sectors, Guid::BASIC_DATA, unique)
                .map_err(|source| EdlConfigError::Gpt {
                    lun: part.lun as usize,
                    source,
                })?;
        }
        if let Some(label) = self
            .identity_labels
            .iter()
            .find(|l| !self.partitions.iter().any(|p| &p.label == *l))
        {
            return Err(EdlConfigError::UnknownIdentityPartition(label.clone()));
        }
        Ok(tables.into_iter().map(Some).collect())
    }

    /// A GUID that is the same for the same device and purpose, so rebuilding a LUN
    /// reproduces it byte for byte.
    fn guid(&self, purpose: &str) -> Guid {
        let digest = Sha256::digest(format!("flashline {} {purpose}", self.serial));
        let mut seed = [0u8; 16];
        seed.copy_from_slice(&digest[..16]);
        Guid::from_seed(&seed)
    }
}

/// Why an EDL device could not be set up. Returned inside an [`io::Error`] of kind
/// `InvalidInput` (or `Other` for [`EdlConfigError::Io`]); downcast with `get_ref`.
#[derive(Debug, thiserror::Error)]
pub enum EdlConfigError {
    /// No LUN, or more than [`MAX_LUNS`].
    #[error("a device has 1 to {MAX_LUNS} LUNs, not {0}")]
    LunCount(usize),
    /// A LUN whose byte size overflows.
    #[error("LUN {0} is too large")]
    LunTooLarge(usize),
    /// `max_payload_to_target` of 0 would refuse every configure.
    #[error("max_payload_to_target must be at least 1 byte")]
    ZeroPayload,
    /// An empty storage type.
    #[error("memory_name must name the storage type (emmc, ufs, …)")]
    NoMemoryName,
    /// The GPT of a LUN cannot be built (bad sector size, label, no space, …).
    #[error("LUN {lun}: {source}")]
    Gpt {
        /// The LUN.
        lun: usize,
        /// What the GPT builder refused.
        source: GptError,
    },
    /// A partition on a LUN the device does not have.
    #[error("partition {label:?} is on LUN {lun}, which is not declared")]
    UnknownLun {
        /// The partition.
        label: String,
        /// Its LUN.
        lun: u32,
    },
    /// Two partitions with one label.
    #[error("partition {0:?} is declared twice")]
    DuplicateLabel(String),
    /// A GPT partition declared on NAND storage, which keeps no GPT.
    #[error("partition {0:?} is declared, but NAND storage keeps no GPT")]
    PartitionsOnNand(String),
    /// An identity label that names no partition.
    #[error("identity partition {0:?} is not one of the declared partitions")]
    UnknownIdentityPartition(String),
    /// The fault plan cannot be carried out by this device.
    #[error(transparent)]
    Fault(#[from] FaultPlanError),
    /// The directory already holds this LUN with another size.
    #[error(
        "{} holds {actual} bytes but LUN {lun} is declared with {declared}; \
         remove the file or declare the same size", path.display()
    )]
    SizeMismatch {
        /// The existing file.
        path: PathBuf,
        /// Its length.
        actual: u64,
        /// The LUN.
        lun: usize,
        /// The configured size in bytes.
        declared: u64,
    },
    /// Creating or inspecting a LUN file failed.
    #[error("cannot prepare {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying failure.
        source: io::Error,
    },
}

impl From<EdlConfigError> for io::Error {
    fn from(e: EdlConfigError) -> Self {
        let kind = match e {
            EdlConfigError::Io { .. } => io::ErrorKind::Other,
            _ => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, e)
    }
}

/// Creates the LUN files in `dir` (GPT and identity data) as [`EdlSim::new`] does, without
/// serving: a modem that switches to EDL later has its flash before it is switched.
pub fn create_luns(dir: &Path, cfg: &EdlConfig) -> io::Result<()> {
    Storage::open(dir, cfg, &cfg.tables()?)?;
    Ok(())
}

/// What survives mode switches and resets: configuration, flash, the event log, the
/// fault plan being carried out.
struct Device {
    cfg: EdlConfig,
    storage: Storage,
    log: Arc<Mutex<Vec<String>>>,
    faults: Mutex<Injector>,
}

impl Device {
    fn record(&self, entry: String) {
        tracing::debug!(event = %entry, "edl sim");
        lock(&self.log).push(entry);
    }
}

/// A prepared, not yet serving, EDL device.
pub struct EdlSim {
    device: Device,
    port: Port,
    boot: Option<BootFirmware>,
}

/// What a reset into the device's firmware does: given the folder holding the LUNs, it
/// brings up whatever that firmware is (a modem's AT port) and returns true, or returns
/// false when there is nothing to boot, and the boot ROM comes back.
pub type BootFirmware = Box<dyn FnMut(&Path) -> bool + Send>;

impl EdlSim {
    /// Prepares the LUN files in `dir`, opens the pseudo-terminal and, with `bench_dir`,
    /// announces the device there with its USB identity.
    pub fn new(dir: &Path, cfg: EdlConfig, bench_dir: Option<&Path>) -> io::Result<EdlSim> {
        let mut sim = EdlSim::on_line(dir, cfg, pty_line)?;
        let cfg = &sim.device.cfg;
        sim.port
            .announce(bench_dir, cfg.usb(), cfg.port_path.clone())?;
        Ok(sim)
    }

    /// Prepares the LUN files in `dir` and the line `open_line` makes; the line gets the
    /// stop flag it must watch (see [`Line`]). A line that is a real USB device needs no
    /// bench announcement: hosts find it on the bus.
    pub fn on_line(
        dir: &Path,
        cfg: EdlConfig,
        open_line: impl FnOnce(Arc<AtomicBool>) -> io::Result<Box<dyn Line>>,
    ) -> io::Result<EdlSim> {
        let tables = cfg.tables()?;
        let storage = Storage::open(dir, &cfg, &tables)?;
        let port = Port::open(dir, |stop| {
            Ok(shaped::shape(open_line(stop)?, cfg.link_rate, cfg.latency))
        })?;
        Ok(EdlSim {
            device: Device {
                faults: port.injector(&cfg.faults),
                cfg,
                storage,
                log: port.log(),
            },
            port,
            boot: None,
        })
    }

    /// Makes `<power value="reset">` boot the device's firmware through `boot` (see
    /// [`BootFirmware`]): the EDL device then leaves the bus, as a real one does when it
    /// starts its firmware. Without it, the virtual device has no firmware and every reset
    /// brings back its boot ROM.
    pub fn boots_firmware(mut self, boot: BootFirmware) -> Self {
        self.boot = Some(boot);
        self
    }

    /// Where a host opens the device: `serial:/dev/pts/N` for a pseudo-terminal.
    pub fn address(&self) -> &str {
        self.port.address()
    }

    /// Prepares the device as [`EdlSim::new`] does and serves it on a background thread.
    pub fn start(dir: &Path, cfg: EdlConfig, bench_dir: Option<&Path>) -> io::Result<RunningEdl> {
        EdlSim::new(dir, cfg, bench_dir)?.spawn()
    }

    /// Serves on a background thread until the returned handle stops it.
    pub fn spawn(self) -> io::Result<RunningEdl> {
        Running::watching("edl", &self.port).spawn(move || self.serve_forever())
    }

    /// Serves on the calling thread (the CLI's `flashline sim edl`): boot ROM, then the
    /// programmer it loaded, then the boot ROM again after each reset. Returns when the
    /// host powers the device off or a [`RunningEdl`] stops it; the bench announcement
    /// is withdrawn then.
    pub fn serve_forever(mut self) {
        let _announcement = self.port.announcement.take();
        let line = &mut *self.port.line;
        while let Some(pending) = pbl::run(&self.device, line) {
            match programmer::run(&self.device, line, &pending) {
                programmer::Exit::Boot => {
                    let booted = self.boot.as_mut().is_some_and(|boot| boot(&self.port.dir));
                    if booted {
                        return;
                    }
                    line.reboot();
                }
                programmer::Exit::Reset => line.reboot(),
                programmer::Exit::PowerOff | programmer::Exit::Stopped => return,
            }
        }
    }
}

/// An EDL device serving on a background thread. Dropping it stops the device too.
pub type RunningEdl = Running<EdlSim>;

impl Running<EdlSim> {
    /// The file holding LUN `lun`.
    pub fn lun_path(&self, lun: usize) -> PathBuf {
        lun_path(self.dir(), lun)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_layouts_are_valid() {
        for cfg in [EdlConfig::default(), EdlConfig::ufs()] {
            let tables = cfg.tables().unwrap();
            assert_eq!(tables.len(), cfg.luns.len());
            let modemst1 = tables[0].as_ref().unwrap().find("modemst1").unwrap();
            assert!(modemst1.sectors() * u64::from(cfg.sector_size) >= 128 * 1024);
        }
    }

    #[test]
    fn config_errors_are_invalid_input() {
        let bad = [
            (
                EdlConfig {
                    luns: vec![],
                    ..EdlConfig::default()
                },
                "1 to 8 LUNs",
            ),
            (
                EdlConfig {
                    partitions: vec![PartSpec::new(1, "x", 1)],
                    identity_labels: vec![],
                    ..EdlConfig::default()
                },
                "LUN 1",
            ),
            (
                EdlConfig {
                    identity_labels: vec!["efs".into()],
                    ..EdlConfig::default()
                },
                "\"efs\"",
            ),
            (
                EdlConfig {
                    sector_size: 1024,
                    ..EdlConfig::default()
                },
                "sector size 1024",
            ),
            (
                EdlConfig {
                    partitions: vec![PartSpec::new(0, "big", 1 << 20)],
                    identity_labels: vec![],
                    ..EdlConfig::default()
                },
                "does not fit",
            ),
        ];
        for (cfg, text) in bad {
            let err = EdlSim::new(Path::new("/nonexistent"), cfg, None)
                .err()
                .unwrap();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(err.to_string().contains(text), "{err} lacks {text}");
        }
    }
}
