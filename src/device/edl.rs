//! The Qualcomm EDL driver: a device in emergency download mode (USB 05c6:9008 and kin).
//!
//! The boot ROM speaks Sahara only long enough to receive a programmer (the Firehose
//! loader carried in the signed package); the programmer then speaks Firehose on the same
//! pipe and gives access to the storage. Until the programmer runs, the device can say
//! nothing about itself beyond its USB identity.

use std::io::{self, Cursor, Read, Write};

use crate::hashing::{HashingReader, HashingWriter};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{
    DeviceError, DeviceInfo, Driver, ImageSource, Lun, Mode, PartitionLocation, ProgressFn, Target,
};
use crate::protocol::firehose::{
    FirehoseClient, FirehoseTimeouts, Patch, PowerAction, SectorRange,
};
use crate::protocol::gpt;
use crate::protocol::sahara::{self, SaharaOptions, SaharaOutcome};
use crate::transport::Transport;

/// Programmers are a few hundred KiB; anything far larger is not one.
const MAX_PROGRAMMER_LEN: u64 = 32 * 1024 * 1024;
/// Payload asked for in `<configure>`; the programmer may negotiate it down.
const REQUESTED_PAYLOAD: u32 = 1024 * 1024;
/// LUNs looked at on UFS devices (eMMC has one).
const MAX_LUNS: u32 = 8;

enum Session<T: Transport> {
    /// The boot ROM, waiting for a programmer.
    Sahara(T),
    /// The programmer, configured.
    Firehose(Box<FirehoseClient<T>>),
    /// Lost after an error or a reset.
    Gone,
}

/// Drives one device in Qualcomm EDL.
pub struct EdlDriver<T: Transport> {
    session: Session<T>,
    address: String,
    usb_serial: Option<String>,
    is_virtual: bool,
    messages: Arc<Mutex<Vec<String>>>,
    /// The user's limit on every wait, instead of the protocols' defaults.
    silence: Option<Duration>,
}

impl<T: Transport> EdlDriver<T> {
    /// Wraps an open pipe to a device in EDL. `usb_serial` identifies it across modes.
    pub fn new(transport: T, usb_serial: Option<String>, is_virtual: bool) -> Self {
        EdlDriver {
            address: transport.address().to_string(),
            session: Session::Sahara(transport),
            usb_serial,
            is_virtual,
            messages: Arc::new(Mutex::new(Vec::new())),
            silence: None,
        }
    }

    fn firehose(&mut self) -> Result<&mut FirehoseClient<T>, DeviceError> {
        match &mut self.session {
            Session::Firehose(f) => Ok(f),
            Session::Sahara(_) => Err(DeviceError::Unsupported(
                "storage access before the programmer is loaded",
            )),
            Session::Gone => Err(DeviceError::Unsupported(
                "storage access after the session ended",
            )),
        }
    }

    fn range(target: &Target) -> Result<SectorRange, DeviceError> {
        match *target {
            Target::Sectors {
                lun,
                start,
                count,
                sector_size,
            } => Ok(SectorRange {
                lun,
                start_sector: start,
                sector_size,
                num_sectors: count,
            }),
            Target::Partition { .. } => Err(DeviceError::Unsupported(
                "partitions by name in EDL (use sector ranges)",
            )),
        }
    }

    /// Storage facts and the partition table of every LUN, once the programmer runs.
    fn storage(&mut self) -> Result<(Vec<Lun>, Vec<PartitionLocation>), DeviceError> {
        let fh = self.firehose()?;
        let first = fh.storage_info(0)?;
        let count = first.num_physical.unwrap_or(1).clamp(1, MAX_LUNS);
        let mut luns = vec![Lun {
            index: 0,
            sector_size: first.block_size,
            sectors: first.total_blocks,
        }];
        for index in 1..count {
            let info = fh.storage_info(index)?;
            luns.push(Lun {
                index,
                sector_size: info.block_size,
                sectors: info.total_blocks,
            });
        }
        let mut layout = Vec::new();
        for lun in &luns {
            // A LUN without a valid GPT simply has no named partitions.
            match read_gpt(fh, lun) {
                Ok(parts) => layout.extend(parts.into_iter().map(|p| PartitionLocation {
                    sectors: p.sectors(),
                    label: super::clean(&p.label),
                    lun: lun.index,
                    start_sector: p.first_lba,
                })),
                Err(e) => tracing::info!("LUN {}: no usable partition table: {e}", lun.index),
            }
        }
        Ok((luns, layout))
    }
}

/// Reads the primary GPT of one LUN: the header at LBA 1, then its entry array.
fn read_gpt<T: Transport>(
    fh: &mut FirehoseClient<T>,
    lun: &Lun,
) -> Result<Vec<gpt::GptPartition>, DeviceError> {
    let mut read = |start: u64, count: u64| -> Result<Vec<u8>, DeviceError> {
        let range = SectorRange {
            lun: lun.index,
            start_sector: start,
            sector_size: lun.sector_size,
            num_sectors: count,
        };
        let mut buf = Vec::new();
        fh.read(&range, &mut buf, &mut |_| {})?;
        Ok(buf)
    };
    let header = gpt::GptHeader::parse(&read(1, 1)?, lun.sector_size, 1)
        .map_err(|e| DeviceError::Layout(e.to_string()))?;
    // The header parser caps the entry array, so this read is bounded.
    let entries = read(header.entries_lba, header.entry_sectors())?;
    header
        .parse_entries(&entries)
        .map_err(|e| DeviceError::Layout(e.to_string()))
}

impl<T: Transport> Driver for EdlDriver<T> {
    fn set_timeout(&mut self, silence: Duration) {
        self.silence = Some(silence);
    }

    fn identify(&mut self) -> Result<DeviceInfo, DeviceError> {
        let (luns, layout) = match self.session {
            Session::Firehose(_) => self.storage()?,
            _ => (Vec::new(), Vec::new()),
        };
        let sector = |lun: u32| {
            luns.iter()
                .find(|l| l.index == lun)
                .map_or(0, |l| u64::from(l.sector_size))
        };
        let partitions = layout
            .iter()
            .map(|p| (p.label.clone(), p.sectors.saturating_mul(sector(p.lun))))
            .collect();
        Ok(DeviceInfo {
            address: self.address.clone(),
            mode: Mode::Edl,
            product: None,
            serial: self.usb_serial.as_deref().map(super::clean),
            imei: None,
            firmware_version_raw: None,
            firmware_version: None,
            security_version: None,
            security_version_raw: None,
            battery: super::Battery::Unknown,
            partitions,
            slots: None,
            is_virtual: self.is_virtual,
            luns,
            layout,
        })
    }

    fn load_programmer(
        &mut self,
        programmer: &dyn ImageSource,
        memory: &str,
    ) -> Result<(), DeviceError> {
        if programmer.len() > MAX_PROGRAMMER_LEN {
            return Err(DeviceError::TooLarge(format!(
                "the programmer is {} bytes; at most {MAX_PROGRAMMER_LEN} are accepted",
                programmer.len()
            )));
        }
        let Session::Sahara(mut transport) = std::mem::replace(&mut self.session, Session::Gone)
        else {
            return Err(DeviceError::Unsupported("loading a second programmer"));
        };
        // The boot ROM asks for pieces in any order, so the programmer is held in memory,
        // and its hash is checked before the first byte leaves: the device runs exactly the
        // signed programmer or nothing.
        let mut reader = programmer.send_reader().map_err(DeviceError::ImageRead)?;
        let mut bytes = Vec::with_capacity(programmer.len() as usize);
        reader
            .read_to_end(&mut bytes)
            .map_err(DeviceError::ImageRead)?;
        reader.verify().map_err(DeviceError::ImageChanged)?;
        let len = bytes.len() as u64;
        let outcome = sahara::upload_programmer(
            &mut transport,
            &mut Cursor::new(bytes),
            len,
            // The wait for HELLO is a boot ROM starting up, not a silent device: it keeps
            // its own limit.
            &self
                .silence
                .map_or_else(SaharaOptions::default, |t| SaharaOptions {
                    packet_timeout: t,
                    ..SaharaOptions::default()
                }),
            &mut |_| {},
        )?;
        let mut client = match outcome {
            SaharaOutcome::Uploaded { .. } => FirehoseClient::new(transport),
            // Someone else's programmer is running: flashline only ever drives the signed
            // one from the package.
            SaharaOutcome::AlreadyInFirehose { .. } => {
                return Err(DeviceError::Unsupported(
                    "a device whose programmer is already running (unplug it, bring it back into \
                     emergency download mode, and try again so the package's signed programmer is loaded)",
                ))
            }
        };
        if let Some(t) = self.silence {
            client.set_timeouts(FirehoseTimeouts {
                response: t,
                data: t,
                finish: t,
                configure_boot: FirehoseTimeouts::default().configure_boot,
            });
        }
        let sink = Arc::clone(&self.messages);
        client.on_log(Box::new(move |line: &str| {
            if let Ok(mut m) = sink.lock() {
                m.push(line.chars().filter(|c| !c.is_control()).take(256).collect());
            }
        }));
        if let Err(e) = client.configure(memory, REQUESTED_PAYLOAD) {
            // The programmer runs but cannot be used: back to the boot ROM, so that a retry
            // can load it again instead of finding a programmer it may not drive.
            if let Err(reset) = client.abandon(PowerAction::Edl) {
                tracing::debug!("sending the device back to EDL failed: {reset}");
            }
            return Err(e.into());
        }
        self.session = Session::Firehose(Box::new(client));
        Ok(())
    }

    fn write_image(
        &mut self,
        target: &Target,
        image: &dyn ImageSource,
        progress: &mut ProgressFn<'_>,
    ) -> Result<(), DeviceError> {
        let range = Self::range(target)?;
        if image.is_sparse() {
            return Err(DeviceError::Unsupported("sparse images over Firehose"));
        }
        let total = range
            .byte_len()
            .filter(|&n| n >= image.len())
            .ok_or_else(|| {
                DeviceError::TooLarge(format!(
                    "the image ({} bytes) does not fit {target}",
                    image.len()
                ))
            })?;
        let mut src = image.send_reader().map_err(DeviceError::ImageRead)?;
        let mut sent = padded(&mut src, image.len(), total);
        self.firehose()?.program(&range, &mut sent, progress)?;
        let sent_hash = sent.finish();
        src.verify()
            .map_err(|e| DeviceError::WrittenButDiffers(format!("{target}: {e}")))?;
        let device = self.firehose()?.sha256_digest(&range)?;
        if device != sent_hash {
            return Err(DeviceError::WrittenButDiffers(format!(
                "after writing {target} the device's SHA-256 is {} but the bytes sent hash to {}",
                hex::encode(device),
                hex::encode(sent_hash)
            )));
        }
        Ok(())
    }

    fn read(
        &mut self,
        target: &Target,
        out: &mut dyn Write,
        progress: &mut ProgressFn<'_>,
    ) -> Result<[u8; 32], DeviceError> {
        let range = Self::range(target)?;
        let mut sink = HashingWriter::new(out);
        self.firehose()?.read(&range, &mut sink, progress)?;
        Ok(sink.finish().1)
    }

    fn digest(&mut self, target: &Target) -> Result<Option<[u8; 32]>, DeviceError> {
        let range = Self::range(target)?;
        Ok(Some(self.firehose()?.sha256_digest(&range)?))
    }

    fn holds(
        &mut self,
        target: &Target,
        image: &dyn ImageSource,
    ) -> Result<Option<bool>, DeviceError> {
        let range = Self::range(target)?;
        let Some(total) = range.byte_len().filter(|&n| n >= image.len()) else {
            return Ok(Some(false));
        };
        let mut src = image.send_reader().map_err(DeviceError::ImageRead)?;
        let mut expected = padded(&mut src, image.len(), total);
        io::copy(&mut expected, &mut io::sink()).map_err(DeviceError::ImageRead)?;
        let expected = expected.finish();
        src.verify().map_err(DeviceError::ImageChanged)?;
        Ok(Some(self.firehose()?.sha256_digest(&range)? == expected))
    }

    fn erase(&mut self, target: &Target) -> Result<(), DeviceError> {
        let range = Self::range(target)?;
        Ok(self.firehose()?.erase(&range)?)
    }

    fn patch(
        &mut self,
        target: &Target,
        byte_offset: u64,
        size: u8,
        value: u64,
    ) -> Result<(), DeviceError> {
        let range = Self::range(target)?;
        let patch = Patch {
            lun: range.lun,
            sector_size: range.sector_size,
            start_sector: range.start_sector,
            byte_offset,
            size_in_bytes: u32::from(size),
            value,
        };
        Ok(self.firehose()?.patch(&patch)?)
    }

    fn reboot(&mut self) -> Result<(), DeviceError> {
        self.firehose()?.power_reset()?;
        // Only a reset the device acknowledged ends the session: after a refused or garbled
        // answer the programmer may still run, and leave_for_recovery must still reach it.
        self.session = Session::Gone;
        Ok(())
    }

    fn leave_for_recovery(&mut self) -> Result<(), DeviceError> {
        if !matches!(self.session, Session::Firehose(_)) {
            return Ok(());
        }
        let result = self.firehose()?.abandon(PowerAction::Edl);
        self.session = Session::Gone;
        Ok(result?)
    }

    fn take_messages(&mut self) -> Vec<String> {
        self.messages
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default()
    }
}

/// The bytes a range holds after `image` is written to it: the image, then zeros up to
/// `total` (the last sector is padded, and the device's digest covers the padding too).
fn padded<'a>(image: &'a mut dyn Read, len: u64, total: u64) -> HashingReader<impl Read + 'a> {
    HashingReader::new(image.take(len).chain(io::repeat(0).take(total - len)))
}
