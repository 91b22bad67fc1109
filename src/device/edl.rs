//! The Qualcomm EDL driver: a device in emergency download mode (USB 05c6:9008 and kin).
//!
//! The boot ROM speaks Sahara only long enough to receive a programmer (the Firehose
//! loader carried in the signed package); the programmer then speaks Firehose on the same
//! pipe and gives access to the storage. Until the programmer runs, the device tells who
//! it is in two ways, read as qdl and edl read them: its USB product string, which on
//! most 05c6:9008 devices carries the chip serial (`QUSB__BULK_SN:xxxxxxxx`; older ones say
//! only `QHSUSB__BULK`, and few have a USB serial number), and Sahara command mode (chip
//! serial, MSM hardware id, OEM key hash), read once before the programmer is uploaded.

use std::io::{self, Cursor, Read, Write};

use crate::hashing::{BlockHasher, BlockHashes, BlockVerifier, HashingReader, HashingWriter};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::edl_delta::{run_bytes, runs, zero_blocks, zeros_sha256, Action, Skipped};
use super::{
    DeviceError, DeviceInfo, Driver, ImageSource, Lun, Mode, PartitionLocation, ProgressFn, Target,
    Verification,
};
use crate::protocol::firehose::{
    FirehoseClient, FirehoseError, FirehoseTimeouts, Patch, PowerAction, SectorRange,
};
use crate::protocol::gpt;
use crate::protocol::sahara::{self, ChipIdentity, SaharaOptions, SaharaOutcome};
use crate::protocol::sparse::{self, ChunkData, SourceCursor};
use crate::transport::Transport;

mod delta;
mod sparse_write;

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
    /// The chip serial from the USB product string, if it carries one.
    product_serial: Option<u64>,
    /// What Sahara command mode said; `None` until asked, and after a failed attempt.
    chip: Option<ChipIdentity>,
    chip_asked: bool,
    is_virtual: bool,
    messages: Arc<Mutex<Vec<String>>>,
    /// The user's limit on every wait, instead of the protocols' defaults.
    silence: Option<Duration>,
    /// The sector size the configured memory uses, for LUNs the programmer will not
    /// describe.
    sector_size: u32,
    /// Set once the programmer refused `<getsha256digest>`: many shipped programmers lack
    /// it (public reports: notes/real-devices.md, "Optional commands"), and ranges are
    /// then verified by reading them back.
    no_digest: bool,
    /// How the last write was verified.
    verified_by: Option<Verification>,
    /// The storage is raw NAND: sectors are pages, and there is no GPT.
    nand: bool,
    /// What the last write left out, if it compared blocks.
    skipped: Option<Skipped>,
    /// Cleared once an erased range did not read back as zeros: this storage erases to
    /// something else, and zero blocks are written from then on.
    erase_gives_zeros: bool,
}

/// The chip serial in an EDL device's USB product string: `QUSB__BULK_SN:xxxxxxxx` (hex).
/// Older boot ROMs say only `QHSUSB__BULK`, which carries none.
pub fn serial_in_product(product: &str) -> Option<u64> {
    let (_, digits) = product.rsplit_once("_SN:")?;
    let digits = digits.trim();
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

impl<T: Transport> EdlDriver<T> {
    /// Wraps an open pipe to a device in EDL. `usb_serial` identifies it across modes.
    pub fn new(transport: T, usb_serial: Option<String>, is_virtual: bool) -> Self {
        EdlDriver {
            address: transport.address().to_string(),
            session: Session::Sahara(transport),
            usb_serial: usb_serial.filter(|s| !s.trim().is_empty()),
            product_serial: None,
            chip: None,
            chip_asked: false,
            is_virtual,
            messages: Arc::new(Mutex::new(Vec::new())),
            silence: None,
            sector_size: 512,
            no_digest: false,
            verified_by: None,
            nand: false,
            skipped: None,
            erase_gives_zeros: true,
        }
    }

    /// Says something to the user through the job's device messages.
    fn note(&self, text: String) {
        tracing::info!("{text}");
        if let Ok(mut m) = self.messages.lock() {
            m.push(text);
        }
    }

    /// The SHA-256 of `range` on the device: the programmer's own digest where it has the
    /// command, otherwise the bytes read back and hashed here (slower: they cross the cable).
    fn device_sha256(
        &mut self,
        range: &SectorRange,
    ) -> Result<([u8; 32], Verification), DeviceError> {
        if !self.no_digest {
            match self.firehose()?.sha256_digest(range) {
                Ok(digest) => return Ok((digest, Verification::DeviceDigest)),
                Err(FirehoseError::Nak { reason, .. }) => {
                    self.no_digest = true;
                    self.note(format!(
                        "the programmer refused <getsha256digest> ({reason}); written ranges are \
                         verified by reading them back, which takes longer"
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let mut sink = HashingWriter::new(io::sink());
        self.firehose()?.read(range, &mut sink, &mut |_| {})?;
        Ok((sink.finish().1, Verification::ReadBack))
    }

    /// Takes the USB product string in, for the chip serial it may carry.
    pub fn with_usb_product(mut self, product: Option<&str>) -> Self {
        self.product_serial = product.and_then(serial_in_product);
        self
    }

    /// Reads the chip identity in Sahara command mode, once, while the boot ROM waits for
    /// a programmer. A device that does not answer is not an error here: the upload that
    /// follows says what is wrong with it.
    fn ask_chip(&mut self) {
        if self.chip_asked {
            return;
        }
        self.chip_asked = true;
        let Session::Sahara(transport) = &mut self.session else {
            return;
        };
        let options = self
            .silence
            .map_or_else(SaharaOptions::default, |t| SaharaOptions {
                packet_timeout: t,
                ..SaharaOptions::default()
            });
        match sahara::read_identity(transport, &options) {
            Ok(chip) => self.chip = Some(chip),
            Err(e) => tracing::info!(
                "{}: no chip identity from Sahara command mode: {e}",
                self.address
            ),
        }
    }

    /// The serial that names this device: the USB serial number, else the chip serial
    /// from the product string, else the one Sahara reported.
    fn serial(&self) -> Option<String> {
        self.usb_serial.clone().or_else(|| {
            self.product_serial
                .or(self.chip.as_ref().and_then(|c| c.serial))
                .map(sahara::identity::serial_text)
        })
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
    ///
    /// Some programmers refuse `<getstorageinfo>` for a LUN (public reports:
    /// notes/real-devices.md, "Optional commands"); such a LUN's size is then taken from
    /// its GPT, whose header names the last sector (where the backup header lives).
    fn storage(&mut self) -> Result<(Vec<Lun>, Vec<PartitionLocation>), DeviceError> {
        let mut notes = Vec::new();
        let fallback_sector = self.sector_size;
        let nand = self.nand;
        let fh = self.firehose()?;
        let mut luns = Vec::new();
        let mut count = 1;
        let mut index = 0;
        while index < count {
            match fh.storage_info(index) {
                Ok(info) => {
                    if index == 0 {
                        count = info.num_physical.unwrap_or(1).clamp(1, MAX_LUNS);
                    }
                    let (sector_size, sectors) = geometry(&info, nand)?;
                    luns.push(Lun {
                        index,
                        sector_size,
                        sectors,
                    });
                }
                Err(FirehoseError::Nak { reason, .. }) => {
                    let sector_size = luns.first().map_or(fallback_sector, |l| l.sector_size);
                    match size_from_gpt(fh, index, sector_size) {
                        Ok(sectors) => {
                            notes.push(format!(
                                "LUN {index}: the programmer refused <getstorageinfo> ({reason}); \
                                 its size ({sectors} sectors) comes from its partition table"
                            ));
                            luns.push(Lun {
                                index,
                                sector_size,
                                sectors,
                            });
                        }
                        Err(e) => notes.push(format!(
                            "LUN {index}: the programmer refused <getstorageinfo> ({reason}) and \
                             its partition table does not give its size ({e}); it is left alone"
                        )),
                    }
                }
                Err(e) => return Err(e.into()),
            }
            index += 1;
        }
        let mut layout = Vec::new();
        // Raw NAND keeps Qualcomm's own partition table (MIBIB), not a GPT.
        for lun in luns.iter().filter(|_| !nand) {
            // A LUN without a valid GPT simply has no named partitions.
            match read_gpt(fh, lun) {
                Ok((parts, source)) => {
                    if source == GptCopy::Backup {
                        notes.push(format!(
                            "LUN {}: the primary partition table is damaged; the backup copy \
                             in the last sector was used",
                            lun.index
                        ));
                    }
                    layout.extend(parts.into_iter().map(|p| PartitionLocation {
                        sectors: p.sectors(),
                        label: super::clean(&p.label),
                        lun: lun.index,
                        start_sector: p.first_lba,
                    }))
                }
                Err(e) => tracing::info!("LUN {}: no usable partition table: {e}", lun.index),
            }
        }
        for text in notes {
            self.note(text);
        }
        Ok((luns, layout))
    }
}

/// The sectors of `range` from byte `start`, `len` bytes long (both whole sectors).
fn sub_range(range: &SectorRange, start: u64, len: u64) -> SectorRange {
    let sector = u64::from(range.sector_size);
    SectorRange {
        start_sector: range.start_sector + start / sector,
        num_sectors: len / sector,
        ..*range
    }
}

/// The bytes of one sparse chunk: RAW data pulled from the image, or a FILL pattern.
struct ChunkBytes<'c, R> {
    cursor: &'c mut SourceCursor<R>,
    data: ChunkData,
    at: u64,
    len: u64,
}

impl<R: Read> Read for ChunkBytes<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf
            .len()
            .min(usize::try_from(self.len - self.at).unwrap_or(usize::MAX));
        let out = &mut buf[..n];
        match self.data {
            ChunkData::Raw { source_offset } => self
                .cursor
                .read_at(source_offset + self.at, out)
                .map_err(io::Error::other)?,
            ChunkData::Fill(pattern) => {
                let pattern = pattern.to_le_bytes();
                for (i, byte) in out.iter_mut().enumerate() {
                    *byte = pattern[((self.at + i as u64) % 4) as usize];
                }
            }
        }
        self.at += n as u64;
        Ok(n)
    }
}

/// Which copy of a GPT was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GptCopy {
    /// The header at LBA 1.
    Primary,
    /// The header in the LUN's last sector.
    Backup,
}

/// Reads `count` sectors of one LUN.
fn read_sectors<T: Transport>(
    fh: &mut FirehoseClient<T>,
    lun: u32,
    sector_size: u32,
    start: u64,
    count: u64,
) -> Result<Vec<u8>, DeviceError> {
    let range = SectorRange {
        lun,
        start_sector: start,
        sector_size,
        num_sectors: count,
    };
    let mut buf = Vec::new();
    fh.read(&range, &mut buf, &mut |_| {})?;
    Ok(buf)
}

/// A LUN's size in sectors from its GPT: the primary header names the backup header's
/// LBA, the LUN's last sector.
fn size_from_gpt<T: Transport>(
    fh: &mut FirehoseClient<T>,
    lun: u32,
    sector_size: u32,
) -> Result<u64, DeviceError> {
    let header = gpt::GptHeader::parse(&read_sectors(fh, lun, sector_size, 1, 1)?, sector_size, 1)
        .map_err(|e| DeviceError::Layout(e.to_string()))?;
    header
        .alternate_lba
        .checked_add(1)
        .ok_or_else(|| DeviceError::Layout("the backup header LBA overflows".into()))
}

/// Reads the GPT of one LUN: the primary (header at LBA 1, then its entries), or, when
/// that is damaged, the backup whose header is the LUN's last sector. A device that needs
/// `recover` is exactly one whose primary table may be gone.
fn read_gpt<T: Transport>(
    fh: &mut FirehoseClient<T>,
    lun: &Lun,
) -> Result<(Vec<gpt::GptPartition>, GptCopy), DeviceError> {
    let primary = read_gpt_at(fh, lun, 1);
    match primary {
        Ok(parts) => Ok((parts, GptCopy::Primary)),
        Err(DeviceError::Layout(primary)) if lun.sectors > 1 => {
            match read_gpt_at(fh, lun, lun.sectors - 1) {
                Ok(parts) => Ok((parts, GptCopy::Backup)),
                Err(DeviceError::Layout(backup)) => Err(DeviceError::Layout(format!(
                    "primary: {primary}; backup: {backup}"
                ))),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Reads the GPT whose header is at `header_lba`.
fn read_gpt_at<T: Transport>(
    fh: &mut FirehoseClient<T>,
    lun: &Lun,
    header_lba: u64,
) -> Result<Vec<gpt::GptPartition>, DeviceError> {
    let layout = |e: gpt::GptError| DeviceError::Layout(e.to_string());
    let header = gpt::GptHeader::parse(
        &read_sectors(fh, lun.index, lun.sector_size, header_lba, 1)?,
        lun.sector_size,
        header_lba,
    )
    .map_err(layout)?;
    if header
        .entries_lba
        .checked_add(header.entry_sectors())
        .is_none_or(|end| end > lun.sectors)
    {
        return Err(DeviceError::Layout(
            "the partition entries lie beyond the end of the LUN".into(),
        ));
    }
    // The header parser caps the entry array, so this read is bounded.
    let entries = read_sectors(
        fh,
        lun.index,
        lun.sector_size,
        header.entries_lba,
        header.entry_sectors(),
    )?;
    header.parse_entries(&entries).map_err(layout)
}

impl<T: Transport> Driver for EdlDriver<T> {
    fn set_timeout(&mut self, silence: Duration) {
        self.silence = Some(silence);
    }

    fn identify(&mut self) -> Result<DeviceInfo, DeviceError> {
        let (luns, layout) = match self.session {
            Session::Firehose(_) => self.storage()?,
            Session::Sahara(_) => {
                self.ask_chip();
                (Vec::new(), Vec::new())
            }
            Session::Gone => (Vec::new(), Vec::new()),
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
            serial: self.serial().as_deref().map(super::clean),
            imei: None,
            firmware_version_raw: None,
            firmware_version: None,
            security_version: None,
            security_version_raw: None,
            battery: super::Battery::Unknown,
            lock: super::LockState::Unknown,
            partitions,
            partitions_size_unknown: Default::default(),
            slots: None,
            is_virtual: self.is_virtual,
            luns,
            layout,
            chip: self.chip.clone(),
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
        let config = match client.configure(memory, REQUESTED_PAYLOAD) {
            Ok(config) => config,
            Err(e) => {
                // The programmer runs but cannot be used: back to the boot ROM, so that a
                // retry can load it again instead of finding a programmer it may not drive.
                if let Err(reset) = client.abandon(PowerAction::ResetToEdl) {
                    tracing::debug!("sending the device back to EDL failed: {reset}");
                }
                return Err(e.into());
            }
        };
        self.session = Session::Firehose(Box::new(client));
        self.sector_size = sector_size_of(memory);
        self.nand = memory.eq_ignore_ascii_case("nand");
        if !config.answered {
            self.note(format!(
                "the programmer answered <configure> with log lines only; it is taken to run \
                 with {memory} and {}-byte writes",
                config.max_payload_to_target
            ));
        }
        match &config.memory_name {
            Some(reported) if !reported.eq_ignore_ascii_case(memory) => {
                // Programmers name their storage their own way (`eMMC`, `UFS`, `MMC`): the
                // sector sizes come from the storage itself, not from this name.
                self.note(format!(
                    "the programmer reports MemoryName {:?} for the {memory} asked for; going \
                     on with the sector sizes its storage reports",
                    super::clean(reported)
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// Firehose storage commits as it receives, so nothing can be taken back once sent. The
    /// image is therefore read twice: first whole, checked against its signature while the
    /// hash of every block is kept; then again to send, each block passed on only after
    /// its hash matched the first pass. Bytes changed between the passes never leave
    /// (issue 13: "writes first, checks later"); the range is finished with zeros instead.
    /// Afterwards the device's copy is checked: by its own digest, or by reading it back.
    fn write_image(
        &mut self,
        target: &Target,
        image: &dyn ImageSource,
        progress: &mut ProgressFn<'_>,
    ) -> Result<(), DeviceError> {
        self.verified_by = None;
        self.skipped = None;
        let range = Self::range(target)?;
        if image.is_sparse() {
            return self.write_sparse(&range, target, image, progress);
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
        if let Some(blocks) = image.block_hashes() {
            return self.write_by_blocks(&range, target, image, blocks, total, progress);
        }
        let blocks = sealed_blocks(image)?;
        let mut src =
            BlockVerifier::new(image.plan_reader().map_err(DeviceError::ImageRead)?, blocks);
        let mut sent = padded(&mut src, image.len(), total);
        match self.firehose()?.program(&range, &mut sent, progress) {
            Ok(()) => {}
            Err(FirehoseError::SourceStopped {
                supplied, cause, ..
            }) => {
                return Err(DeviceError::WrittenButDiffers(format!(
                    "{target}: the image could not be sent past byte {supplied} ({cause}); the \
                     rest of the range was filled with zeros"
                )))
            }
            Err(e) => return Err(e.into()),
        }
        let sent_hash = sent.finish();
        let (device, how) = self.device_sha256(&range)?;
        if device != sent_hash {
            return Err(DeviceError::WrittenButDiffers(format!(
                "after writing {target} the device's SHA-256 ({how}) is {} but the bytes sent \
                 hash to {}",
                hex::encode(device),
                hex::encode(sent_hash)
            )));
        }
        self.verified_by = Some(how);
        Ok(())
    }

    fn verified_by(&self) -> Option<Verification> {
        self.verified_by
    }

    fn skipped(&self) -> Option<Skipped> {
        self.skipped.clone()
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
        Ok(Some(self.device_sha256(&range)?.0))
    }

    fn holds(
        &mut self,
        target: &Target,
        image: &dyn ImageSource,
    ) -> Result<Option<bool>, DeviceError> {
        let range = Self::range(target)?;
        if image.is_sparse() {
            // Its DONT_CARE runs hold whatever they held: no digest of the range can tell.
            return Ok(None);
        }
        let Some(total) = range.byte_len().filter(|&n| n >= image.len()) else {
            return Ok(Some(false));
        };
        let mut src = image.send_reader().map_err(DeviceError::ImageRead)?;
        let mut expected = padded(&mut src, image.len(), total);
        io::copy(&mut expected, &mut io::sink()).map_err(DeviceError::ImageRead)?;
        let expected = expected.finish();
        src.verify().map_err(DeviceError::ImageChanged)?;
        Ok(Some(self.device_sha256(&range)?.0 == expected))
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

    fn set_boot_lun(&mut self, lun: u32) -> Result<(), DeviceError> {
        Ok(self.firehose()?.set_bootable_storage_drive(lun)?)
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
        let result = self.firehose()?.abandon(PowerAction::ResetToEdl);
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

/// The first pass over an image to write: all of it read and checked against its
/// signature, with the hash of every block kept for the second pass.
fn sealed_blocks(image: &dyn ImageSource) -> Result<BlockHashes, DeviceError> {
    let mut first = BlockHasher::new(
        image.send_reader().map_err(DeviceError::ImageRead)?,
        BlockHashes::block_size(image.len()),
    );
    io::copy(&mut first, &mut io::sink()).map_err(DeviceError::ImageRead)?;
    let (checked, blocks) = first.finish();
    checked.verify().map_err(DeviceError::ImageChanged)?;
    Ok(blocks)
}

/// A LUN's sector size and count from `<getstorageinfo>`. NAND programmers count erase
/// blocks (`block_size` bytes each) of pages (`page_size`): flat builds for NAND address
/// pages, so the pages are the sectors. Which blocks are bad is the programmer's business.
fn geometry(
    info: &crate::protocol::firehose::StorageInfo,
    nand: bool,
) -> Result<(u32, u64), DeviceError> {
    match info.page_size {
        Some(page) if nand && page > 0 && info.block_size.is_multiple_of(page) => {
            let sectors = info
                .total_blocks
                .checked_mul(u64::from(info.block_size / page))
                .ok_or_else(|| DeviceError::Layout("the NAND page count overflows".into()))?;
            Ok((page, sectors))
        }
        _ => Ok((info.block_size, info.total_blocks)),
    }
}

/// The sector size a memory type uses, for LUNs the programmer does not describe.
fn sector_size_of(memory: &str) -> u32 {
    if memory.eq_ignore_ascii_case("emmc") {
        512
    } else {
        4096
    }
}

/// The bytes a range holds after `image` is written to it: the image, then zeros up to
/// `total` (the last sector is padded, and the device's digest covers the padding too).
fn padded<'a>(image: &'a mut dyn Read, len: u64, total: u64) -> HashingReader<impl Read + 'a> {
    HashingReader::new(image.take(len).chain(io::repeat(0).take(total - len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_strings_carry_the_chip_serial() {
        assert_eq!(
            serial_in_product("QUSB__BULK_SN:a1b2c3d4"),
            Some(0xA1B2_C3D4)
        );
        assert_eq!(
            serial_in_product("QUSB__BULK_SN:0123456789ABCDEF"),
            Some(0x0123_4567_89AB_CDEF)
        );
        assert_eq!(serial_in_product("QHSUSB__BULK"), None);
        assert_eq!(serial_in_product("QUSB__BULK_SN:"), None);
        assert_eq!(serial_in_product("QUSB__BULK_SN:xyz"), None);
    }
}
