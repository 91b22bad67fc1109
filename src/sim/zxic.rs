//! A virtual ZXIC ZX297520V3 hotspot in download mode, on a pseudo-terminal or on any other
//! [`Line`] (a USB gadget's bulk endpoints, 19D2:0256).
//!
//! It behaves as the public tools describe the chip (see [`crate::protocol::zxic`]): its
//! boot ROM answers the `0x5A` sync with `0xA5` and loads one image at 0x82000, which must
//! be a tloader (`ZX7521V1` at offset 4); tloader syncs again and loads tboot into DRAM at
//! 0x27EF0000; a tboot still carrying its 64-byte uImage header crashes when run (the CPU
//! would execute the header), as a real one would, and the device falls back to its boot
//! ROM. tboot speaks TBootPro: `getvar`, `CRC ON`, `set partitions`, `compat_write`,
//! `compat_read`, `erase` and `reboot`, against `DIR/flash.img` and `DIR/partition.bin`
//! (see [`storage`](self)). A new device holds identity bytes (IMEI, serial) in its NV
//! partitions.
//!
//! What it checks, as the real loader is reported to: a table that would move or drop an
//! NV partition is answered `FAIL UNACCEPTABLE_PARTITION_CHANGE` and not taken; one that
//! keeps NV but differs is taken and answered `FAIL ACCEPTABLE_PARTITION_CHANGE`, after
//! which `erase auto` erases every partition but NV; the same table is `OKAY`. Writes and
//! reads outside a partition are refused (`FAIL INVALID PARTITION|OFFSET|SIZE`).
//! Decisions where the sources are silent: `erase all` erases NV too (the vendor flasher
//! only ever sends `erase auto`); `reboot` (and every crash, power loss or link drop) comes
//! back in the boot ROM, as a board whose BOOT pad is held does, so a test can go on; an
//! image the boot ROM will not take is not answered.
//!
//! Faults ([`ZxicConfig::faults`]) match TBootPro command texts (`compat_write imagefs`,
//! `set partitions`, `erase auto`, …); payload bytes are `compat_write` data, written to
//! flash as they arrive. `corrupt@bytes=N` flips one bit of the N-th payload byte on its
//! way in: the device stores and checksums the flipped byte. A disconnect or power loss
//! stops the data phase at that byte and the device reboots into its boot ROM; reenumerate
//! reboots it at that command.

mod rom;
mod storage;
mod tboot;
#[cfg(target_os = "linux")]
mod usb;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::download_mode::{lock, pty_line, Port, Running, UsbIdentity};
use super::edl::Line;
use super::fault::{Fault, FaultPlan, Injector};
use crate::protocol::zxic::bootrom::{
    TLOADER_MAGIC, TLOADER_MAGIC_OFFSET, UIMAGE_HEADER_LEN, UIMAGE_MAGIC,
};
use crate::protocol::zxic::{Partition, PartitionTable, TBOOT_ADDRESS};

pub use storage::{flash_path, identity_bytes, table_path};

/// ZXIC's boot ROM USB IDs.
pub const BOOTROM_IDS: (u16, u16) = (0x19d2, 0x0256);

/// Habits of real loaders the device copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// Asks for 2 MiB windows, ends each `compat_read` with a closing `OKAY`.
    #[default]
    Stock,
    /// Puts a stray NUL before `DATA` (the vendor flasher expects `\0DATA`), asks for
    /// 1 MiB windows, and sends no closing `OKAY` after a `compat_read` (zxdl: "some builds
    /// stay silent").
    Terse,
}

impl Profile {
    /// Parses `stock` or `terse`.
    pub fn parse(name: &str) -> Option<Profile> {
        match name {
            "stock" => Some(Profile::Stock),
            "terse" => Some(Profile::Terse),
            _ => None,
        }
    }

    fn window(self) -> u32 {
        match self {
            Profile::Stock => crate::protocol::zxic::WINDOW,
            Profile::Terse => crate::protocol::zxic::WINDOW / 2,
        }
    }
}

/// What the virtual device is and holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZxicConfig {
    /// USB serial number string.
    pub serial: String,
    /// The IMEI written into its NV partitions.
    pub imei: String,
    /// USB IDs (boot ROM: 19D2:0256).
    pub vid: u16,
    /// USB product ID.
    pub pid: u16,
    /// USB product string.
    pub product: String,
    /// Flash size in bytes.
    pub flash_size: u32,
    /// The factory partition table.
    pub table: PartitionTable,
    /// The NV partitions (identity, calibration) the loader keeps.
    pub nv: Vec<String>,
    /// What `getvar` answers (name, value); other names are refused.
    pub vars: Vec<(String, String)>,
    /// Loader habits.
    pub profile: Profile,
    /// How long the device waits in the middle of a transfer before it gives up on it.
    pub data_timeout: Duration,
    /// Misbehaviour on purpose.
    pub faults: FaultPlan,
    /// Where it is plugged in, announced on the bench.
    pub port_path: Option<String>,
}

/// The virtual layout: the partition names and order of public ZX297520V3 dumps, in a
/// 16 MiB flash so that tests stay small.
pub fn virtual_table() -> PartitionTable {
    let p = |name: &str, address: u32, size: u32| Partition {
        name: name.into(),
        kind: "nand".into(),
        address,
        size,
    };
    PartitionTable {
        magic: 0x3159_4876,
        platform: "ZX297520V3".into(),
        version: 1,
        entries: vec![
            p("zloader", 0, 0x2_0000),
            p("uboot", 0x2_0000, 0x10_0000),
            p("nvrofs", 0x12_0000, 0x4_0000),
            p("nvrw", 0x16_0000, 0x4_0000),
            p("imagefs", 0x1A_0000, 0x60_0000),
            p("rootfs", 0x7A_0000, 0x60_0000),
            p("userdata", 0xDA_0000, 0x26_0000),
        ],
    }
}

impl Default for ZxicConfig {
    fn default() -> Self {
        ZxicConfig {
            serial: "ZX7520SIM0001".into(),
            imei: "860000000000017".into(),
            vid: BOOTROM_IDS.0,
            pid: BOOTROM_IDS.1,
            product: "ZX297520V3".into(),
            flash_size: 16 * 1024 * 1024,
            table: virtual_table(),
            nv: vec!["nvrofs".into(), "nvrw".into()],
            vars: vec![
                ("plat".into(), "ZX297520V3".into()),
                ("boot".into(), "TBootPro".into()),
            ],
            profile: Profile::Stock,
            data_timeout: Duration::from_secs(10),
            faults: FaultPlan::none(),
            port_path: None,
        }
    }
}

impl ZxicConfig {
    fn check(&self) -> io::Result<()> {
        let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
        PartitionTable::parse(&self.table.encode()).map_err(|e| invalid(e.to_string()))?;
        if let Some(p) = self
            .table
            .entries
            .iter()
            .find(|p| p.in_flash() && p.end() > u64::from(self.flash_size))
        {
            return Err(invalid(format!("partition {} ends past the flash", p.name)));
        }
        if let Some(name) = self.nv.iter().find(|n| self.table.find(n).is_none()) {
            return Err(invalid(format!("NV partition {name} is not in the table")));
        }
        self.faults
            .check("a ZXIC device in download mode", |fault| match fault {
                Fault::BatteryDrop { .. } => Some("reports no battery"),
                _ => None,
            })
            .map_err(|e| invalid(e.to_string()))
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

/// A tloader and a tboot (with its uImage header) that flashline's virtual device runs:
/// the shapes the real ones have, and nothing else.
pub fn build_test_loaders() -> (Vec<u8>, Vec<u8>) {
    let mut tloader = vec![0u8; 8 * 1024];
    tloader[TLOADER_MAGIC_OFFSET..TLOADER_MAGIC_OFFSET + TLOADER_MAGIC.len()]
        .copy_from_slice(TLOADER_MAGIC);
    for (i, b) in tloader.iter_mut().enumerate().skip(16) {
        *b = (i * 7 % 251) as u8;
    }
    let body: Vec<u8> = (0..48 * 1024).map(|i| (i * 13 % 241) as u8).collect();
    let mut tboot = vec![0u8; UIMAGE_HEADER_LEN];
    tboot[..4].copy_from_slice(&UIMAGE_MAGIC.to_be_bytes());
    tboot[12..16].copy_from_slice(&(body.len() as u32).to_be_bytes());
    tboot[16..20].copy_from_slice(&TBOOT_ADDRESS.to_be_bytes());
    tboot[20..24].copy_from_slice(&TBOOT_ADDRESS.to_be_bytes());
    tboot[32..41].copy_from_slice(b"tboot sim");
    tboot.extend_from_slice(&body);
    (tloader, tboot)
}

/// What survives stage changes and resets.
struct Device {
    cfg: ZxicConfig,
    storage: storage::Storage,
    log: Arc<Mutex<Vec<String>>>,
    faults: Mutex<Injector>,
}

impl Device {
    fn record(&self, entry: String) {
        tracing::debug!(event = %entry, "zxic sim");
        lock(&self.log).push(entry);
    }
}

/// A prepared, not yet serving, device.
pub struct ZxicSim {
    device: Device,
    port: Port,
}

impl ZxicSim {
    /// Prepares the flash in `dir`, opens a pseudo-terminal and, with `bench_dir`, announces
    /// the device there with its USB identity.
    pub fn new(dir: &Path, cfg: ZxicConfig, bench_dir: Option<&Path>) -> io::Result<ZxicSim> {
        let mut sim = ZxicSim::on_line(dir, cfg, pty_line)?;
        let cfg = &sim.device.cfg;
        sim.port
            .announce(bench_dir, cfg.usb(), cfg.port_path.clone())?;
        Ok(sim)
    }

    /// Prepares the flash in `dir` and the line `open_line` makes (see [`Line`]).
    pub fn on_line(
        dir: &Path,
        cfg: ZxicConfig,
        open_line: impl FnOnce(Arc<AtomicBool>) -> io::Result<Box<dyn Line>>,
    ) -> io::Result<ZxicSim> {
        cfg.check()?;
        let storage = storage::Storage::open(dir, &cfg)?;
        let port = Port::open(dir, open_line)?;
        Ok(ZxicSim {
            device: Device {
                faults: port.injector(&cfg.faults),
                cfg,
                storage,
                log: port.log(),
            },
            port,
        })
    }

    /// Where a host opens it: `serial:/dev/pts/N` for a pseudo-terminal.
    pub fn address(&self) -> &str {
        self.port.address()
    }

    /// Prepares the device as [`ZxicSim::new`] does and serves it on a background thread.
    pub fn start(dir: &Path, cfg: ZxicConfig, bench_dir: Option<&Path>) -> io::Result<RunningZxic> {
        ZxicSim::new(dir, cfg, bench_dir)?.spawn()
    }

    /// Serves on a background thread until the returned handle stops it.
    pub fn spawn(self) -> io::Result<RunningZxic> {
        Running::watching("zxic", &self.port).spawn(move || self.serve_forever())
    }

    /// Serves on the calling thread: boot ROM, tloader, tboot, and the boot ROM again after
    /// each reset, until stopped.
    pub fn serve_forever(mut self) {
        let _announcement = self.port.announcement.take();
        let line = &mut *self.port.line;
        while !line.stopping() {
            if rom::run(&self.device, line, rom::Stage::BootRom).is_none()
                || rom::run(&self.device, line, rom::Stage::Tloader).is_none()
            {
                // Stopped, or the loader that was run crashed: back to the boot ROM.
                if line.stopping() {
                    return;
                }
                line.reboot();
                continue;
            }
            tboot::run(&self.device, line);
            if line.stopping() {
                return;
            }
            self.device.record("device:reset".into());
            line.reboot();
        }
    }
}

/// A ZXIC device serving on a background thread; dropping it stops the device.
pub type RunningZxic = Running<ZxicSim>;

impl Running<ZxicSim> {
    /// The flash file.
    pub fn flash_path(&self) -> PathBuf {
        flash_path(self.dir())
    }

    /// The device's current table.
    pub fn table(&self) -> io::Result<PartitionTable> {
        let bytes = std::fs::read(table_path(self.dir()))?;
        PartitionTable::parse(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// The bytes partition `name` of the current table holds.
    pub fn partition(&self, name: &str) -> io::Result<Vec<u8>> {
        let table = self.table()?;
        let p = table
            .find(name)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, name.to_string()))?;
        let flash = std::fs::read(self.flash_path())?;
        Ok(flash[p.address as usize..p.end() as usize].to_vec())
    }
}

/// Reads exactly `out.len()` bytes, each read waiting at most `wait`; `None` when the host
/// went quiet that long or the simulator stops.
fn read_exact(line: &mut dyn Line, out: &mut [u8], wait: Duration) -> Option<()> {
    let mut filled = 0;
    while filled < out.len() {
        match line.read(&mut out[filled..], wait) {
            Ok(n) => filled += n,
            Err(_) => return None,
        }
    }
    Some(())
}

/// The next byte from the host, waiting as long as it takes (in slices that see a stop);
/// `None` once stopping.
fn next_byte(line: &mut dyn Line) -> Option<u8> {
    let mut byte = [0u8; 1];
    loop {
        match line.read(&mut byte, Duration::from_millis(50)) {
            Ok(1) => return Some(byte[0]),
            Ok(_) => {}
            Err(crate::transport::TransportError::Timeout(_)) => {}
            Err(_) => return None,
        }
        if line.stopping() {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_virtual_device_is_consistent() {
        ZxicConfig::default().check().unwrap();
        let (tloader, tboot) = build_test_loaders();
        assert!(crate::protocol::zxic::bootrom::is_tloader(&tloader));
        let header = crate::protocol::zxic::bootrom::parse_uimage(&tboot).unwrap();
        assert_eq!(header.entry, TBOOT_ADDRESS);
        assert_eq!(header.data_len as usize, tboot.len() - UIMAGE_HEADER_LEN);
        let bad = ZxicConfig {
            nv: vec!["efs".into()],
            ..ZxicConfig::default()
        };
        assert!(bad.check().unwrap_err().to_string().contains("efs"));
    }
}
