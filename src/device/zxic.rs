//! The ZXIC ZX297520V3 family: a hotspot in its boot ROM (19D2:0256), brought up through
//! tloader and tboot, then flashed with TBootPro (see [`crate::protocol::zxic`]).
//!
//! The boot ROM cannot say what device it is, so a device in it is named like a Qualcomm
//! brick: by the package it is flashed with. TBootPro addresses partitions by name and byte
//! offset. So that the engine's backups (which read [`Target::Sectors`]) work unchanged,
//! the driver presents the flash as one LUN of 2048-byte NAND pages laid out by the
//! partition table in use ([`ZxicOps::use_table`]), and maps page ranges back to a
//! partition and offset for `compat_read`.
//!
//! Every write goes in `compat_write` windows of at most 2 MiB; after `CRC ON` the device's
//! CRC of each window must equal the CRC of the bytes sent. A device that refuses `CRC ON`
//! is checked by reading each image back instead. Storage commits as it receives, so a
//! check that fails leaves the partition holding other bytes than the signed image:
//! [`DeviceError::WrittenButDiffers`] says to flash it again.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{
    Battery, DeviceError, DeviceInfo, Driver, ImageSource, LockState, Lun, Mode, PartitionLocation,
    ProgressFn, Target, Verification,
};
use crate::protocol::zxic::bootrom::{self, UIMAGE_HEADER_LEN};
use crate::protocol::zxic::{Link, PartitionTable, Stage, TableVerdict, ZxicError, WINDOW};
use crate::transport::Transport;

/// The page size the flash is presented in (SPI NAND pages are 2048 bytes).
pub const PAGE: u32 = 2048;
/// The allowance for each answer, unless the job sets another.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
/// The `getvar` names asked at identify time (zxdl's; their values are shown, not judged).
const VARIABLES: [&str; 4] = ["plat", "nv", "num", "boot"];

/// What only a ZXIC device does, reached through [`Driver::zxic`].
pub trait ZxicOps {
    /// Loads and runs tloader, then tboot (its uImage header stripped, at the address the
    /// header names), unless tboot already answers. `tboot` is the whole file, header
    /// included, so its signature still covers every byte.
    fn load_loaders(
        &mut self,
        tloader: &dyn ImageSource,
        tboot: &dyn ImageSource,
    ) -> Result<(), DeviceError>;

    /// The table the device uses (for byte ranges and sizes).
    fn use_table(&mut self, table: PartitionTable);

    /// Sends a new partition table with `set partitions`. A refusal (the device would move
    /// NV, or finds the table invalid) is an error; nothing was changed then.
    fn send_table(&mut self, table: &PartitionTable) -> Result<TableVerdict, DeviceError>;

    /// `erase auto`: erases every partition but NV, after the device accepted a change.
    fn erase_auto(&mut self) -> Result<(), DeviceError>;
}

/// A ZXIC device over any byte link (a serial port or the raw bulk endpoints).
pub struct ZxicDriver<T: Transport> {
    link: Link<T>,
    serial: Option<String>,
    is_virtual: bool,
    stage: Option<Stage>,
    crc: Option<bool>,
    table: Option<PartitionTable>,
    vars: BTreeMap<String, String>,
    verified_by: Option<Verification>,
}

impl<T: Transport> ZxicDriver<T> {
    /// A driver for the device on `transport`, with its USB serial number if it has one.
    pub fn new(transport: T, serial: Option<String>, is_virtual: bool) -> Self {
        ZxicDriver {
            link: Link::new(transport, DEFAULT_TIMEOUT),
            serial: serial.map(|s| super::clean(&s)).filter(|s| !s.is_empty()),
            is_virtual,
            stage: None,
            crc: None,
            table: None,
            vars: BTreeMap::new(),
            verified_by: None,
        }
    }

    fn tboot(&mut self) -> Result<(), DeviceError> {
        if self.stage != Some(Stage::TBoot) {
            return Err(DeviceError::Reports(
                "its boot ROM only; load the package's loaders first".into(),
            ));
        }
        Ok(())
    }

    /// Whether the device returns a CRC per window (`CRC ON`, asked once).
    fn crc(&mut self) -> Result<bool, DeviceError> {
        if let Some(on) = self.crc {
            return Ok(on);
        }
        let on = self.link.crc_on()?;
        self.crc = Some(on);
        Ok(on)
    }

    /// The partition and offset a page range lies in.
    fn locate(&self, target: &Target) -> Result<(String, u32, u32), DeviceError> {
        let table = self
            .table
            .as_ref()
            .ok_or_else(|| DeviceError::Layout("no partition table is known yet".into()))?;
        let (start, len) = match target {
            Target::Partition { name } => {
                let p = table.find(name).ok_or_else(|| {
                    DeviceError::Layout(format!("the partition table has no {name}"))
                })?;
                return Ok((p.name.clone(), 0, p.size));
            }
            Target::Sectors {
                start,
                count,
                sector_size,
                ..
            } => (
                start.saturating_mul(u64::from(*sector_size)),
                count.saturating_mul(u64::from(*sector_size)),
            ),
        };
        let p = table
            .entries
            .iter()
            .filter(|p| p.in_flash())
            .find(|p| u64::from(p.address) <= start && start.saturating_add(len) <= p.end())
            .ok_or_else(|| DeviceError::Layout(format!("{target} lies in no one partition")))?;
        Ok((
            p.name.clone(),
            (start - u64::from(p.address)) as u32,
            len as u32,
        ))
    }

    /// Reads `len` bytes at `offset` of `partition`, hashing them into `out`.
    fn read_range(
        &mut self,
        partition: &str,
        offset: u32,
        len: u32,
        out: &mut dyn std::io::Write,
        progress: &mut ProgressFn<'_>,
    ) -> Result<[u8; 32], DeviceError> {
        self.tboot()?;
        let mut hashing = crate::hashing::HashingWriter::new(out);
        self.link
            .compat_read(partition, offset, len, &mut hashing, progress)?;
        Ok(hashing.finish().1)
    }
}

impl<T: Transport> Driver for ZxicDriver<T> {
    fn identify(&mut self) -> Result<DeviceInfo, DeviceError> {
        let stage = self.link.sync()?;
        self.stage = Some(stage);
        if stage == Stage::TBoot {
            for name in VARIABLES {
                if let Some(value) = self.link.getvar(name)? {
                    self.vars.insert(name.into(), super::clean(&value));
                }
            }
        }
        let (luns, layout, partitions) = match &self.table {
            Some(table) => present(table),
            None => Default::default(),
        };
        Ok(DeviceInfo {
            address: self.link.address().to_string(),
            mode: Mode::Zxic,
            product: None,
            serial: self.serial.clone(),
            imei: None,
            firmware_version_raw: self.vars.get("boot").cloned(),
            firmware_version: None,
            security_version: None,
            security_version_raw: None,
            battery: Battery::Unknown,
            lock: LockState::Unknown,
            partitions,
            partitions_size_unknown: Default::default(),
            slots: None,
            is_virtual: self.is_virtual,
            luns,
            layout,
            chip: None,
        })
    }

    fn variable(&mut self, name: &str) -> Result<Option<String>, DeviceError> {
        Ok(self.vars.get(name).cloned())
    }

    fn write_image(
        &mut self,
        target: &Target,
        image: &dyn ImageSource,
        progress: &mut ProgressFn<'_>,
    ) -> Result<(), DeviceError> {
        self.tboot()?;
        self.verified_by = None;
        let (partition, offset, room) = self.locate(target)?;
        let len = u32::try_from(image.len())
            .ok()
            .filter(|&len| len <= room)
            .ok_or_else(|| {
                DeviceError::TooLarge(format!(
                    "{partition}: the image has {} bytes; the partition holds {room}",
                    image.len()
                ))
            })?;
        let crc = self.crc()?;
        let mut reader = image.send_reader().map_err(DeviceError::ImageRead)?;
        let mut sent = Sha256::new();
        let mut done = 0u32;
        while done < len {
            let n = (len - done).min(WINDOW);
            let mut window = HashingRead {
                inner: &mut reader,
                hash: &mut sent,
            };
            self.link
                .compat_write(
                    &partition,
                    offset + done,
                    n,
                    &mut window,
                    crc,
                    &mut |bytes| progress(u64::from(done) + bytes),
                )
                .map_err(|e| match e {
                    e @ ZxicError::Crc { .. } => {
                        DeviceError::WrittenButDiffers(format!("{partition}: {e}"))
                    }
                    e => e.into(),
                })?;
            done += n;
        }
        reader.verify().map_err(|e| {
            DeviceError::WrittenButDiffers(format!(
                "{partition}: the image changed since it was verified ({e})"
            ))
        })?;
        if crc {
            self.verified_by = Some(Verification::DeviceDigest);
            return Ok(());
        }
        let mut read_back = std::io::sink();
        let device = self.read_range(&partition, offset, len, &mut read_back, &mut |_| {})?;
        if device[..] != sent.finalize()[..] {
            return Err(DeviceError::WrittenButDiffers(format!(
                "{partition}: the bytes read back differ from the bytes sent"
            )));
        }
        self.verified_by = Some(Verification::ReadBack);
        Ok(())
    }

    fn verified_by(&self) -> Option<Verification> {
        self.verified_by
    }

    fn read(
        &mut self,
        target: &Target,
        out: &mut dyn std::io::Write,
        progress: &mut ProgressFn<'_>,
    ) -> Result<[u8; 32], DeviceError> {
        let (partition, offset, len) = self.locate(target)?;
        self.read_range(&partition, offset, len, out, progress)
    }

    fn holds(
        &mut self,
        target: &Target,
        image: &dyn ImageSource,
    ) -> Result<Option<bool>, DeviceError> {
        let (partition, offset, room) = self.locate(target)?;
        let Some(len) = u32::try_from(image.len()).ok().filter(|&l| l <= room) else {
            return Ok(Some(false));
        };
        let mut signed = Sha256::new();
        let mut reader = image.send_reader().map_err(DeviceError::ImageRead)?;
        std::io::copy(&mut reader, &mut HashWriter(&mut signed)).map_err(DeviceError::ImageRead)?;
        if reader.verify().is_err() {
            return Ok(Some(false));
        }
        let device = self.read_range(&partition, offset, len, &mut std::io::sink(), &mut |_| {})?;
        Ok(Some(device[..] == signed.finalize()[..]))
    }

    fn erase(&mut self, target: &Target) -> Result<(), DeviceError> {
        self.tboot()?;
        let (partition, _, _) = self.locate(target)?;
        self.link.erase(&partition)?;
        Ok(())
    }

    fn set_timeout(&mut self, silence: Duration) {
        self.link.set_timeout(silence);
    }

    fn reboot(&mut self) -> Result<(), DeviceError> {
        match self.stage {
            Some(Stage::TBoot) => Ok(self.link.reboot()?),
            _ => Err(DeviceError::Unsupported("rebooting from the boot ROM")),
        }
    }

    fn zxic(&mut self) -> Option<&mut dyn ZxicOps> {
        Some(self)
    }
}

impl<T: Transport> ZxicOps for ZxicDriver<T> {
    fn load_loaders(
        &mut self,
        tloader: &dyn ImageSource,
        tboot: &dyn ImageSource,
    ) -> Result<(), DeviceError> {
        if self.link.sync()? == Stage::TBoot {
            self.stage = Some(Stage::TBoot);
            return Ok(());
        }
        let too_large = |what: &str| DeviceError::TooLarge(format!("the {what} is too large"));
        // tloader: checked, sent whole, run.
        let mut reader = tloader.send_reader().map_err(DeviceError::ImageRead)?;
        let len = u32::try_from(tloader.len()).map_err(|_| too_large("tloader"))?;
        let mut head = vec![0u8; 16.min(len as usize)];
        reader
            .read_exact(&mut head)
            .map_err(DeviceError::ImageRead)?;
        if !bootrom::is_tloader(&head) {
            return Err(ZxicError::Loader("its tloader lacks ZX7521V1 at offset 4".into()).into());
        }
        let mut whole = head.as_slice().chain(&mut reader);
        self.link
            .load(bootrom::TLOADER_ADDRESS, &mut whole, len, &mut |_| {})?;
        reader.verify().map_err(DeviceError::ImageChanged)?;
        self.link.jump(bootrom::TLOADER_ADDRESS)?;
        // tloader answers the boot ROM's sync; then tboot, without its uImage header.
        self.link.sync()?;
        let mut reader = tboot.send_reader().map_err(DeviceError::ImageRead)?;
        let mut header = [0u8; UIMAGE_HEADER_LEN];
        reader
            .read_exact(&mut header)
            .map_err(DeviceError::ImageRead)?;
        let uimage = bootrom::parse_uimage(&header)
            .filter(|h| u64::from(h.data_len) + UIMAGE_HEADER_LEN as u64 == tboot.len());
        let Some(uimage) = uimage else {
            return Err(
                ZxicError::Loader("its tboot is not a uImage of its own length".into()).into(),
            );
        };
        self.link
            .load(uimage.entry, &mut reader, uimage.data_len, &mut |_| {})?;
        reader.verify().map_err(DeviceError::ImageChanged)?;
        self.link.jump(uimage.entry)?;
        self.link.sync_tboot()?;
        self.stage = Some(Stage::TBoot);
        Ok(())
    }

    fn use_table(&mut self, table: PartitionTable) {
        self.table = Some(table);
    }

    fn send_table(&mut self, table: &PartitionTable) -> Result<TableVerdict, DeviceError> {
        self.tboot()?;
        // The vendor flasher syncs with tboot right before `set partitions`.
        self.link.sync_tboot()?;
        let verdict = self.link.set_partitions(&table.to_wire())?;
        self.table = Some(table.clone());
        Ok(verdict)
    }

    fn erase_auto(&mut self) -> Result<(), DeviceError> {
        self.tboot()?;
        self.link.erase("auto")?;
        Ok(())
    }
}

/// The flash as one LUN of [`PAGE`]-byte pages, its partitions where `table` puts them.
fn present(table: &PartitionTable) -> (Vec<Lun>, Vec<PartitionLocation>, BTreeMap<String, u64>) {
    let flash = table.entries.iter().filter(|p| p.in_flash());
    let end = flash.clone().map(|p| p.end()).max().unwrap_or(0);
    let luns = vec![Lun {
        index: 0,
        sector_size: PAGE,
        sectors: end.div_ceil(u64::from(PAGE)),
    }];
    let layout = flash
        .clone()
        .filter(|p| p.address % PAGE == 0 && p.size % PAGE == 0)
        .map(|p| PartitionLocation {
            label: p.name.clone(),
            lun: 0,
            start_sector: u64::from(p.address / PAGE),
            sectors: u64::from(p.size / PAGE),
        })
        .collect();
    let sizes = flash.map(|p| (p.name.clone(), u64::from(p.size))).collect();
    (luns, layout, sizes)
}

/// A reader that hashes what passes through.
struct HashingRead<'a, R: Read + ?Sized> {
    inner: &'a mut R,
    hash: &'a mut Sha256,
}

impl<R: Read + ?Sized> Read for HashingRead<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// A writer into a hash.
struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
