//! A virtual Unisoc (Spreadtrum) device in its boot ROM's download mode, on a
//! pseudo-terminal or on any other [`Line`] (a USB gadget's bulk endpoints).
//!
//! It behaves as spreadtrum_flash describes the real stages (facts and sources in
//! [`crate::protocol::unisoc`]):
//!
//! * the boot ROM answers bare 0x7E bytes followed by quiet ("check baud") with `REP_VER`
//!   and its version (`SPRD3`, or another string for the secure-boot profile), as often as
//!   it is asked, checks every frame with CRC-16 and answers a bad
//!   one with `REP_VERIFY_ERROR` as custom_fdl's packet code does, takes a loader with
//!   START_DATA / MIDST_DATA / END_DATA and runs it on EXEC_DATA;
//! * a secure-boot device runs only the FDL1 whose SHA-256 it was given
//!   ([`UnisocConfig::fdl1_sha256`]) and answers `REP_SIGN_VERIFY_ERROR` to EXEC_DATA of
//!   any other (which reply a real ROM gives is not in the public sources; this one is
//!   `spd_cmd.h`'s code for a refused signature);
//! * FDL1 answers check-baud with "Spreadtrum Boot Block version 1.1" (as posted in public
//!   spd_dump logs), uses the ones' complement sum, takes FDL2 and runs it;
//! * FDL2 answers EXEC_DATA with `REP_INCOMPATIBLE_PARTITION` (spd_dump's README: "returned
//!   unconditionally"), lists its partitions, writes, reads and erases them by name,
//!   stops escaping on DISABLE_TRANSCODE and reboots on NORMAL_RESET.
//!
//! Each partition is the file `DIR/<name>.img`. The NV partitions are filled with bytes
//! that are unique to the device when the file is created, so tests can prove a host kept
//! them. A partition write is staged and stored when its last announced byte arrives, as
//! Unisoc's u-boot FDL2 writes a buffered image once `total_recv_size == total_size`
//! (virtual: one buffer however large the image); a write that stops early leaves the
//! partition as it was.
//!
//! Faults ([`UnisocConfig::faults`]) match the command as the event log shows it after the
//! stage (`MIDST_DATA boot`, `START_DATA boot`, `EXEC_DATA`, `READ_MIDST l_fixnv1`,
//! `ERASE_FLASH cache`, `NORMAL_RESET`); payload bytes are MIDST_DATA bytes.
//!
//! * disconnect / power loss: the device drops the partial write and reboots into its boot
//!   ROM on the same line (a pseudo-terminal cannot hang up and keep its path); the host
//!   sees silence, then a boot ROM.
//! * fail: `REP_OPERATION_FAILED`, nothing done.
//! * stall: no answer; the stage waits for [`UnisocConfig::data_timeout`] of silence, then
//!   reboots into the boot ROM.
//! * garbage: the answer is sent with a corrupted check field (a checksum fault on the
//!   link); nothing is done.
//! * reenumerate: no answer; the device reboots into its boot ROM.
//! * battery drop does not apply: the download mode reports no battery.

mod stages;
#[cfg(target_os = "linux")]
mod usb;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::download_mode::{lock, pty_line, Port, Running, UsbIdentity};
use super::edl::Line;
use super::fault::{Fault, FaultPlan, FaultPlanError, Injector};

/// Most partitions a virtual device has.
pub const MAX_PARTITIONS: usize = 64;

/// What the virtual Unisoc device is and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnisocConfig {
    /// USB serial number string ("" for none, as real download-mode devices often have).
    pub serial: String,
    /// USB vendor ID (Unisoc 0x1782).
    pub vid: u16,
    /// USB product ID (download mode 0x4d00).
    pub pid: u16,
    /// USB product string ("Gadget Serial" in a public dmesg of a device in this mode:
    /// ilyakurdyukov/spreadtrum_flash issue #6).
    pub product: String,
    /// What the boot ROM answers the version request with (its NUL included).
    pub brom_version: Vec<u8>,
    /// The only FDL1 a secure-boot device runs; `None` runs any.
    pub fdl1_sha256: Option<[u8; 32]>,
    /// Partitions in order: name and size in KiB.
    pub partitions: Vec<(String, u32)>,
    /// Partitions filled with identity bytes when created.
    pub identity: Vec<String>,
    /// How long a stage waits in silence in the middle of an exchange before it decides the
    /// host is gone and reboots into the boot ROM.
    pub data_timeout: Duration,
    /// How the device misbehaves on purpose; none by default.
    pub faults: FaultPlan,
    /// Where the device is plugged in, announced on the bench.
    pub port_path: Option<String>,
}

/// NV partitions of a UDX710-style hotspot: modem calibration and IMEI (`l_fixnv1`/2, the
/// LTE modem's, named as Unisoc's u-boot lists them), production data (`prodnv`) and
/// `miscdata`.
pub const HOTSPOT_NV: [&str; 4] = ["l_fixnv1", "l_fixnv2", "prodnv", "miscdata"];

impl Default for UnisocConfig {
    /// A small Unisoc hotspot: boot loaders, NV, a kernel and a root file system.
    fn default() -> Self {
        let partitions = [
            ("splloader", 256),
            ("uboot", 1024),
            ("l_fixnv1", 256),
            ("l_fixnv2", 256),
            ("prodnv", 512),
            ("miscdata", 256),
            ("boot", 4096),
            ("system", 8192),
            ("userdata", 2048),
        ];
        UnisocConfig {
            serial: "FLUNISOC0001".into(),
            vid: 0x1782,
            pid: 0x4d00,
            product: "Gadget Serial".into(),
            brom_version: crate::protocol::unisoc::OPEN_BROM_VERSION.to_vec(),
            fdl1_sha256: None,
            partitions: partitions
                .iter()
                .map(|(n, k)| ((*n).to_string(), *k))
                .collect(),
            identity: HOTSPOT_NV.map(String::from).to_vec(),
            data_timeout: Duration::from_secs(10),
            faults: FaultPlan::none(),
            port_path: None,
        }
    }
}

impl UnisocConfig {
    /// A device with secure boot on: its boot ROM answers `SPRD4:AutoD` (as posted in
    /// ilyakurdyukov/spreadtrum_flash issue #45; spd_dump takes any version but `SPRD3` as
    /// secure boot) and runs only the FDL1 with this hash.
    pub fn secure(fdl1_sha256: [u8; 32]) -> UnisocConfig {
        UnisocConfig {
            brom_version: b"SPRD4:AutoD\0".to_vec(),
            fdl1_sha256: Some(fdl1_sha256),
            ..UnisocConfig::default()
        }
    }

    fn check(&self) -> Result<(), UnisocConfigError> {
        if self.partitions.is_empty() || self.partitions.len() > MAX_PARTITIONS {
            return Err(UnisocConfigError::PartitionCount(self.partitions.len()));
        }
        for (i, (name, kib)) in self.partitions.iter().enumerate() {
            crate::protocol::unisoc::encode_name(name)
                .map_err(|_| UnisocConfigError::BadName(name.clone()))?;
            if *kib == 0 || self.partitions[..i].iter().any(|(n, _)| n == name) {
                return Err(UnisocConfigError::BadName(name.clone()));
            }
        }
        if let Some(name) = self
            .identity
            .iter()
            .find(|n| !self.partitions.iter().any(|(p, _)| p == *n))
        {
            return Err(UnisocConfigError::UnknownIdentity(name.clone()));
        }
        self.faults
            .check("a Unisoc device in download mode", |f| match f {
                Fault::BatteryDrop { .. } => Some("reports no battery"),
                Fault::Corrupt { .. } => Some("checks no payload checksum, so a flipped byte would pass unseen; corrupt@ is the ZXIC simulator's"),
                _ => None,
            })?;
        Ok(())
    }

    /// The bytes an identity partition is created with: unique to this device and
    /// partition, never all one value.
    pub fn identity_bytes(&self, name: &str, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        let mut block = 0u64;
        while out.len() < len {
            let digest = Sha256::digest(format!("unisoc {} {name} {block}", self.serial));
            out.extend_from_slice(&digest);
            block += 1;
        }
        out.truncate(len);
        out
    }

    /// How the device shows itself on USB.
    fn usb(&self) -> UsbIdentity<'_> {
        UsbIdentity {
            vid: self.vid,
            pid: self.pid,
            serial: &self.serial,
            product: &self.product,
        }
    }
}

/// Why a Unisoc device could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum UnisocConfigError {
    /// No partition, or too many.
    #[error("a device has 1 to {MAX_PARTITIONS} partitions, not {0}")]
    PartitionCount(usize),
    /// A name FDL2 could not carry, a repeated one, or a zero size.
    #[error("partition {0:?} has a bad name, a zero size or is declared twice")]
    BadName(String),
    /// An identity partition that is not declared.
    #[error("identity partition {0:?} is not one of the partitions")]
    UnknownIdentity(String),
    /// The fault plan does not fit this device.
    #[error(transparent)]
    Fault(#[from] FaultPlanError),
}

impl From<UnisocConfigError> for io::Error {
    fn from(e: UnisocConfigError) -> Self {
        io::Error::new(io::ErrorKind::InvalidInput, e)
    }
}

/// The file that holds partition `name`.
pub fn partition_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.img"))
}

/// What survives stage changes and reboots.
struct Device {
    cfg: UnisocConfig,
    dir: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
    faults: Mutex<Injector>,
}

impl Device {
    fn record(&self, entry: String) {
        tracing::debug!(event = %entry, "unisoc sim");
        lock(&self.log).push(entry);
    }

    fn size_of(&self, name: &str) -> Option<u64> {
        self.cfg
            .partitions
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, kib)| u64::from(*kib) * 1024)
    }
}

/// Creates each partition file that does not exist yet (identity partitions with their
/// identity bytes, the rest zeroed); an existing file of another size is an error.
fn prepare_storage(dir: &Path, cfg: &UnisocConfig) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, kib) in &cfg.partitions {
        let path = partition_path(dir, name);
        let len = u64::from(*kib) * 1024;
        match std::fs::metadata(&path) {
            Ok(meta) if meta.len() == len => continue,
            Ok(meta) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} holds {} bytes but {name} is declared with {len}",
                        path.display(),
                        meta.len()
                    ),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let bytes = if cfg.identity.contains(name) {
            cfg.identity_bytes(name, len as usize)
        } else {
            vec![0u8; len as usize]
        };
        std::fs::write(&path, bytes)?;
    }
    Ok(())
}

/// A prepared, not yet serving, Unisoc device.
pub struct UnisocSim {
    device: Device,
    port: Port,
}

impl UnisocSim {
    /// Prepares the partition files in `dir`, opens a pseudo-terminal and, with
    /// `bench_dir`, announces the device there with its USB identity.
    pub fn new(dir: &Path, cfg: UnisocConfig, bench_dir: Option<&Path>) -> io::Result<UnisocSim> {
        let mut sim = UnisocSim::on_line(dir, cfg, pty_line)?;
        let cfg = &sim.device.cfg;
        sim.port
            .announce(bench_dir, cfg.usb(), cfg.port_path.clone())?;
        Ok(sim)
    }

    /// Prepares the partition files in `dir` and the line `open_line` makes.
    pub fn on_line(
        dir: &Path,
        cfg: UnisocConfig,
        open_line: impl FnOnce(Arc<AtomicBool>) -> io::Result<Box<dyn Line>>,
    ) -> io::Result<UnisocSim> {
        cfg.check()?;
        prepare_storage(dir, &cfg)?;
        let port = Port::open(dir, open_line)?;
        Ok(UnisocSim {
            device: Device {
                faults: port.injector(&cfg.faults),
                cfg,
                dir: dir.to_path_buf(),
                log: port.log(),
            },
            port,
        })
    }

    /// Where a host opens the device: `serial:/dev/pts/N` for a pseudo-terminal.
    pub fn address(&self) -> &str {
        self.port.address()
    }

    /// Prepares the device as [`UnisocSim::new`] does and serves it on a background thread.
    pub fn start(
        dir: &Path,
        cfg: UnisocConfig,
        bench_dir: Option<&Path>,
    ) -> io::Result<RunningUnisoc> {
        UnisocSim::new(dir, cfg, bench_dir)?.spawn()
    }

    /// Serves on a background thread until the returned handle stops it.
    pub fn spawn(self) -> io::Result<RunningUnisoc> {
        Running::watching("unisoc", &self.port).spawn(move || self.serve_forever())
    }

    /// Serves on the calling thread: boot ROM, the loaders it is given, FDL2, and the boot
    /// ROM again after each reset, until stopped.
    pub fn serve_forever(mut self) {
        let _announcement = self.port.announcement.take();
        let line = &mut *self.port.line;
        while !line.stopping() {
            stages::run(&self.device, line);
            line.reboot();
        }
    }
}

/// A Unisoc device serving on a background thread. Dropping it stops the device too.
pub type RunningUnisoc = Running<UnisocSim>;

impl Running<UnisocSim> {
    /// The file holding partition `name`.
    pub fn partition_path(&self, name: &str) -> PathBuf {
        partition_path(self.dir(), name)
    }
}
