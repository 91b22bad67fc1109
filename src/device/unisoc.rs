//! The Unisoc (Spreadtrum) driver: a device in its boot ROM's download mode (USB 1782:4d00).
//!
//! The boot ROM takes FDL1, FDL1 takes FDL2, and FDL2 reads, writes and erases partitions
//! by name (see [`crate::protocol::unisoc`] for the facts and their sources). Until FDL2
//! runs, the device says nothing but its boot ROM's version, which tells whether secure
//! boot is on.
//!
//! FDL2 stores a partition as its bytes arrive, with no digest command, so every write is
//! checked by reading the partition back and hashing it. To the engine's backup code the
//! partitions look like one run of 1 KiB sectors on LUN 0, in the order FDL2 lists them
//! (FDL2 lists sizes in KiB): a sector range that lies inside one partition is read from
//! that partition by name.

use std::io::{self, Read, Write};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{
    BootRom, DeviceError, DeviceInfo, Driver, ImageSource, Lun, Mode, PartitionLocation,
    ProgressFn, Target, Verification,
};
use crate::hashing::{HashingReader, HashingWriter};
use crate::protocol::unisoc::client::{Client, PartitionEntry, Stage, Timeouts};
use crate::protocol::unisoc::UnisocError;
use crate::transport::Transport;

/// The unit of the virtual sectors the backup code sees: FDL2 lists sizes in KiB.
pub const SECTOR: u32 = 1024;
/// Largest loader accepted (real FDL2s are about 1 MiB).
const MAX_LOADER_LEN: u64 = 16 * 1024 * 1024;

/// Drives one Unisoc device in download mode.
pub struct UnisocDriver<T: Transport> {
    client: Client<T>,
    address: String,
    usb_serial: Option<String>,
    is_virtual: bool,
    boot_rom: Option<BootRom>,
    partitions: Vec<PartitionEntry>,
    messages: Vec<String>,
    verified_by: Option<Verification>,
}

impl<T: Transport> UnisocDriver<T> {
    /// A driver for the device on `transport`, in its boot ROM.
    pub fn new(transport: T, usb_serial: Option<String>, is_virtual: bool) -> Self {
        let address = transport.address().to_string();
        UnisocDriver {
            client: Client::new(transport, Timeouts::default()),
            address,
            usb_serial,
            is_virtual,
            boot_rom: None,
            partitions: Vec::new(),
            messages: Vec::new(),
            verified_by: None,
        }
    }

    fn fdl2(&self, what: &'static str) -> Result<(), DeviceError> {
        if self.client.stage() == Stage::Fdl2 {
            Ok(())
        } else {
            Err(DeviceError::Reports(format!(
                "no FDL2 running, which {what} needs: load the package's loaders first"
            )))
        }
    }

    /// The partition a target names, with the byte range inside it.
    fn locate(&self, target: &Target) -> Result<(String, u64, u64), DeviceError> {
        match target {
            Target::Partition { name } => {
                let size = self
                    .partitions
                    .iter()
                    .find(|p| &p.name == name)
                    .map(|p| p.size)
                    .ok_or_else(|| {
                        DeviceError::Layout(format!("FDL2 lists no partition {name}"))
                    })?;
                Ok((name.clone(), 0, size))
            }
            Target::Sectors {
                lun: 0,
                start,
                count,
                sector_size: SECTOR,
            } => {
                let mut first = 0u64;
                for p in &self.partitions {
                    let sectors = p.size / u64::from(SECTOR);
                    if *start >= first && start + count <= first + sectors {
                        return Ok((
                            p.name.clone(),
                            (start - first) * u64::from(SECTOR),
                            count * u64::from(SECTOR),
                        ));
                    }
                    first += sectors;
                }
                Err(DeviceError::Layout(format!(
                    "{target} is not inside one partition FDL2 lists"
                )))
            }
            Target::Sectors { .. } => Err(DeviceError::Unsupported(
                "sector ranges other than those of its partition list",
            )),
        }
    }

    fn layout(&self) -> (Vec<Lun>, Vec<PartitionLocation>) {
        let mut layout = Vec::with_capacity(self.partitions.len());
        let mut start = 0u64;
        for p in &self.partitions {
            let sectors = p.size / u64::from(SECTOR);
            layout.push(PartitionLocation {
                label: p.name.clone(),
                lun: 0,
                start_sector: start,
                sectors,
            });
            start += sectors;
        }
        let luns = if layout.is_empty() {
            Vec::new()
        } else {
            vec![Lun {
                index: 0,
                sector_size: SECTOR,
                sectors: start,
            }]
        };
        (luns, layout)
    }

    /// Reads `len` bytes of `name` from `offset`, hashing them; returns the hash.
    fn read_hashed(
        &mut self,
        name: &str,
        offset: u64,
        len: u64,
        out: &mut dyn Write,
        progress: &mut ProgressFn<'_>,
    ) -> Result<[u8; 32], DeviceError> {
        let mut hashing = HashingWriter::new(out);
        self.client
            .read_partition(name, offset, len, &mut hashing, progress)?;
        self.absorb_logs();
        Ok(hashing.finish().1)
    }

    fn absorb_logs(&mut self) {
        self.messages.extend(self.client.take_logs());
    }
}

impl<T: Transport> Driver for UnisocDriver<T> {
    fn identify(&mut self) -> Result<DeviceInfo, DeviceError> {
        match self.client.stage() {
            Stage::BootRom if self.boot_rom.is_none() => {
                let version = self.client.connect_brom()?;
                self.boot_rom = Some(BootRom {
                    version: version.text,
                    secure_boot: version.secure_boot,
                });
            }
            Stage::Fdl2 => self.partitions = self.client.partitions()?,
            _ => {}
        }
        self.absorb_logs();
        let (luns, layout) = self.layout();
        Ok(DeviceInfo {
            address: self.address.clone(),
            mode: Mode::Unisoc,
            product: None,
            serial: self.usb_serial.as_deref().map(super::clean),
            imei: None,
            firmware_version_raw: None,
            firmware_version: None,
            security_version: None,
            security_version_raw: None,
            battery: super::Battery::Unknown,
            lock: super::LockState::Unknown,
            partitions: self
                .partitions
                .iter()
                .map(|p| (p.name.clone(), p.size))
                .collect(),
            partitions_size_unknown: Default::default(),
            slots: None,
            is_virtual: self.is_virtual,
            luns,
            layout,
            chip: None,
        })
    }

    fn boot_rom(&self) -> Option<BootRom> {
        self.boot_rom.clone()
    }

    fn set_timeout(&mut self, silence: Duration) {
        self.client.set_timeout(silence);
    }

    fn load_loaders(&mut self, loaders: &[(&dyn ImageSource, u32)]) -> Result<(), DeviceError> {
        let [(fdl1, fdl1_addr), (fdl2, fdl2_addr)] = loaders else {
            return Err(DeviceError::Reports(format!(
                "a Unisoc download takes two loaders (FDL1, FDL2), not {}",
                loaders.len()
            )));
        };
        if self.boot_rom.is_none() {
            self.identify()?;
        }
        for (name, image, addr) in [("FDL1", fdl1, fdl1_addr), ("FDL2", fdl2, fdl2_addr)] {
            let len = u32::try_from(image.len())
                .ok()
                .filter(|&l| u64::from(l) <= MAX_LOADER_LEN && l > 0)
                .ok_or_else(|| {
                    DeviceError::TooLarge(format!(
                        "{name} is {} bytes; a loader is 1 byte to {MAX_LOADER_LEN} bytes",
                        image.len()
                    ))
                })?;
            let mut reader = image.send_reader().map_err(DeviceError::ImageRead)?;
            self.client
                .send_loader(*addr, len, &mut reader, &mut |_| {})?;
            // The loader runs only if its bytes are the signed ones.
            reader.verify().map_err(DeviceError::ImageChanged)?;
            if name == "FDL1" {
                let version = self.client.exec_fdl1()?;
                self.messages.push(format!("FDL1 runs: {version}"));
            } else if self.client.exec_fdl2()? {
                self.messages.push(
                    "FDL2 runs (it answered INCOMPATIBLE_PARTITION, which FDL2s send \
                     unconditionally)"
                        .into(),
                );
            } else {
                self.messages.push("FDL2 runs".into());
            }
        }
        self.absorb_logs();
        self.partitions = self.client.partitions()?;
        Ok(())
    }

    fn write_image(
        &mut self,
        target: &Target,
        image: &dyn ImageSource,
        progress: &mut ProgressFn<'_>,
    ) -> Result<(), DeviceError> {
        self.fdl2("writing")?;
        self.verified_by = None;
        let (name, offset, room) = self.locate(target)?;
        if offset != 0 {
            return Err(DeviceError::Unsupported("writing inside a partition"));
        }
        if image.is_sparse() {
            return Err(DeviceError::Unsupported(
                "sparse images (FDL2 takes raw bytes)",
            ));
        }
        let len = image.len();
        if len > room {
            return Err(DeviceError::TooLarge(format!(
                "{name}: the image is {len} bytes, the partition {room}"
            )));
        }
        let mut reader = image.send_reader().map_err(DeviceError::ImageRead)?;
        let (result, sent) = {
            let mut hashing = HashingReader::new(&mut reader);
            let result = self
                .client
                .write_partition(&name, len, &mut hashing, progress);
            (result, hashing.finish())
        };
        let changed = reader.verify().err();
        self.absorb_logs();
        result?;
        // FDL2 stored the bytes as they came: read them back and compare with what was
        // sent, which must also be the signed image.
        let stored = self.read_hashed(&name, 0, len, &mut io::sink(), &mut |_| {})?;
        if let Some(why) = changed {
            return Err(DeviceError::WrittenButDiffers(format!("{name} ({why})")));
        }
        if stored != sent {
            return Err(DeviceError::WrittenButDiffers(format!(
                "{name}: what was read back differs from what was sent"
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
        out: &mut dyn Write,
        progress: &mut ProgressFn<'_>,
    ) -> Result<[u8; 32], DeviceError> {
        self.fdl2("reading")?;
        let (name, offset, len) = self.locate(target)?;
        self.read_hashed(&name, offset, len, out, progress)
    }

    fn holds(
        &mut self,
        target: &Target,
        image: &dyn ImageSource,
    ) -> Result<Option<bool>, DeviceError> {
        self.fdl2("checking a partition")?;
        let (name, _, room) = self.locate(target)?;
        if image.len() > room {
            return Ok(Some(false));
        }
        let mut reader = image.send_reader().map_err(DeviceError::ImageRead)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = reader.read(&mut buf).map_err(DeviceError::ImageRead)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        reader.verify().map_err(DeviceError::ImageChanged)?;
        let wanted: [u8; 32] = hasher.finalize().into();
        let stored = self.read_hashed(&name, 0, image.len(), &mut io::sink(), &mut |_| {})?;
        Ok(Some(stored == wanted))
    }

    fn erase(&mut self, target: &Target) -> Result<(), DeviceError> {
        self.fdl2("erasing")?;
        let (name, offset, _) = self.locate(target)?;
        if offset != 0 {
            return Err(DeviceError::Unsupported("erasing inside a partition"));
        }
        self.client.erase_partition(&name)?;
        Ok(())
    }

    fn reboot(&mut self) -> Result<(), DeviceError> {
        if self.client.stage() != Stage::Fdl2 {
            // Only FDL2 knows NORMAL_RESET; the boot ROM leaves download mode when the
            // cable is pulled.
            return Ok(());
        }
        self.client.reset()?;
        Ok(())
    }

    fn take_messages(&mut self) -> Vec<String> {
        self.absorb_logs();
        std::mem::take(&mut self.messages)
    }
}

impl From<UnisocError> for DeviceError {
    fn from(e: UnisocError) -> Self {
        DeviceError::Unisoc(e)
    }
}
