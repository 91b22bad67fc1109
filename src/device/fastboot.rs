//! The fastboot driver: phones in their bootloader (or fastbootd).
//!
//! Facts that standard fastboot does not define are read as the quirks file says. Images
//! larger than the device's `max-download-size` are split into sparse pieces the way
//! Google's client splits them, so devices see exactly what they are used to.

mod userspace;

use std::collections::BTreeMap;
use std::io::{self, BufRead, Read, Write};
use std::sync::{Arc, Mutex};

use super::quirks::{Quirks, VarSpec};
use super::read_ahead::ReadAhead;
use super::{
    clean, Battery, DeviceError, DeviceInfo, Driver, ImageSource, LockState, Mode, ProgressFn,
    SendReader, Slots, Target,
};
use crate::hashing::{BlockHasher, BlockHashes, BlockVerifier};
use crate::protocol::fastboot::client::Client;
use crate::protocol::fastboot::vars::{
    is_placeholder, is_placeholder_serial, parse_percent, parse_size, yes_no, NumberStyle,
    Variables,
};
use crate::protocol::sparse::{self, ChunkData, SourceCursor, SparseError};
use crate::transport::Transport;

pub mod verbs;

/// Bytes of RAW data moved per step while writing a sparse piece.
const SPLIT_SCRATCH: usize = 1024 * 1024;
/// Google's client never builds a sparse piece larger than this, whatever the device
/// accepts; keeping the same budget gives devices the pieces they were tested with.
const RESPARSE_LIMIT: u64 = 1024 * 1024 * 1024;
/// After a failed `getvar:all`, how long the device must stay silent before its late lines
/// are taken to be over and single `getvar`s are sent.
const RESYNC_QUIET: std::time::Duration = std::time::Duration::from_secs(1);

/// Drives one device in fastboot mode.
pub struct FastbootDriver<T: Transport> {
    client: Client<T>,
    quirks: Quirks,
    is_virtual: bool,
    max_download: Option<u64>,
    /// How the device writes bare numbers, learnt from its `getvar all`.
    style: NumberStyle,
    messages: Arc<Mutex<Vec<String>>>,
    scratch: Vec<u8>,
    /// Split plans made by [`Driver::prepare`], by partition.
    prepared: BTreeMap<String, SplitPlan>,
    /// What the last `getvar:all` listed, so later questions cost no round trip.
    listed: Variables,
    /// Partitions (without slot suffix) this model takes only raw images for (quirks).
    raw_only: Vec<String>,
}

/// How an image too large for one download is cut.
struct SplitPlan {
    layout: sparse::Layout,
    pieces: Vec<sparse::Piece>,
    /// How the bytes sent are kept equal to the bytes planned from.
    check: SplitCheck,
}

/// How a split image's second pass proves it sends what the plan was made from.
enum SplitCheck {
    /// A raw image with signed block hashes: its send reader checks every block, and the
    /// plan was made from unchecked bytes, so while sending, every block the plan sends as
    /// a FILL is checked to hold that pattern.
    Signed,
    /// A sparse image with signed block hashes, planned from unchecked bytes: while its
    /// send reader checks every block, the bytes that decided the plan (its headers, FILL
    /// patterns) are compared with the planned ones, each before the `flash` of a piece
    /// that relies on it.
    SignedSparse(sparse::Structure),
    /// An image of an older package, planned from a first pass that checked it whole and
    /// kept the hash of every block: the second pass passes on only matching blocks.
    Sealed(BlockHashes),
}

impl<T: Transport> FastbootDriver<T> {
    /// Wraps a connected transport. `is_virtual` marks flashline's own virtual devices.
    pub fn new(transport: T, quirks: Quirks, is_virtual: bool) -> Self {
        let mut client = Client::new(transport);
        let messages = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&messages);
        // Lines are kept as sent: the verbs print them whole (escaped for the terminal);
        // `take_messages` cleans them for the job's events.
        client.on_info(Box::new(move |line: &str| {
            if let Ok(mut m) = sink.lock() {
                m.push(line.to_string());
            }
        }));
        FastbootDriver {
            client,
            quirks,
            is_virtual,
            max_download: None,
            style: NumberStyle::default(),
            messages,
            scratch: Vec::new(),
            prepared: BTreeMap::new(),
            listed: Variables::default(),
            raw_only: Vec::new(),
        }
    }

    /// A quirk-defined fact: from the listing if it was listed, else asked on its own.
    fn fact(&mut self, vars: &Variables, spec: &VarSpec) -> Result<Option<String>, DeviceError> {
        Ok(self.var(vars, &spec.var)?.and_then(|r| spec.convert(&r)))
    }

    /// A variable from the listing, or asked on its own if the listing lacks it. A value
    /// that only says "not reported" (empty, `N/A`, `unknown`) is `None`; a variable the
    /// listing names with such a value is not asked again.
    fn var(&mut self, vars: &Variables, name: &str) -> Result<Option<String>, DeviceError> {
        let value = match vars.get(name) {
            Some(v) => Some(v.to_string()),
            None => self.client.getvar(name)?,
        };
        Ok(value.filter(|v| !is_placeholder(v)))
    }

    /// `getvar:all`, or nothing if the device cannot list its variables. A listing that
    /// fails or stalls leaves the session usable: late lines are drained and every fact is
    /// then asked for on its own.
    fn listing(&mut self) -> Variables {
        match self.client.getvar_all() {
            Ok(pairs) => Variables::new(pairs),
            Err(e) => {
                tracing::info!("getvar all failed ({e}); asking for each variable instead");
                let quiet = self.client.timeout().min(RESYNC_QUIET);
                if !self.client.resync(quiet) {
                    tracing::warn!("the device did not settle after getvar all");
                }
                Variables::default()
            }
        }
    }

    /// What the bootloader says about accepting writes: `unlocked` decides; without it,
    /// an unlock of the critical partitions counts as unlocked, and `secure: yes` as locked.
    fn lock_state(&mut self, vars: &Variables) -> Result<LockState, DeviceError> {
        let answer = |v: Option<String>| v.as_deref().and_then(yes_no);
        if let Some(unlocked) = answer(self.var(vars, "unlocked")?) {
            return Ok(if unlocked {
                LockState::Unlocked
            } else {
                LockState::Locked
            });
        }
        for name in ["critical-unlocked", "unlock_critical"] {
            if answer(self.var(vars, name)?) == Some(true) {
                return Ok(LockState::Unlocked);
            }
        }
        Ok(match answer(self.var(vars, "secure")?) {
            Some(true) => LockState::Locked,
            _ => LockState::Unknown,
        })
    }

    fn download_limit(&mut self) -> Result<u64, DeviceError> {
        if let Some(limit) = self.max_download {
            return Ok(limit);
        }
        let limit = self
            .client
            .getvar("max-download-size")?
            .and_then(|v| parse_size(&v, self.style))
            .unwrap_or(u64::from(u32::MAX))
            .min(u64::from(u32::MAX));
        if limit == 0 {
            return Err(DeviceError::Reports(
                "max-download-size 0: it would accept no download".into(),
            ));
        }
        self.max_download = Some(limit);
        Ok(limit)
    }
}

impl<T: Transport> Driver for FastbootDriver<T> {
    fn set_timeout(&mut self, silence: std::time::Duration) {
        self.client.set_timeout(silence);
    }

    fn identify(&mut self) -> Result<DeviceInfo, DeviceError> {
        // One `getvar:all` answers most questions in one round trip; anything it lacks is
        // asked for on its own, since bootloaders implement `all` very differently.
        let vars = self.listing();
        self.style = vars.number_style();
        // A string with nothing printable left (a serial blanked out in another script)
        // says nothing either.
        let printable = |s: String| Some(clean(&s)).filter(|s| !s.is_empty());
        let product = self.var(&vars, "product")?.and_then(printable);
        let serial = self
            .var(&vars, "serialno")?
            .filter(|s| !is_placeholder_serial(s))
            .and_then(printable);
        let facts = self.quirks.fastboot_facts(product.as_deref());
        self.raw_only = facts.raw_only.clone();

        // A comparable version only where the quirks file names its variable; otherwise
        // the bootloader's own version string is kept to be shown, never compared.
        let version_var = facts
            .firmware_version
            .as_ref()
            .map_or("version-bootloader", |spec| spec.var.as_str());
        let firmware_version_raw = self.var(&vars, version_var)?.and_then(printable);
        let firmware_version = facts.firmware_version.as_ref().and_then(|spec| {
            let raw = firmware_version_raw.as_deref()?;
            lenient_version(&spec.convert(raw)?)
        });
        let security_version_raw = self
            .fact(&vars, &facts.security_version)?
            .map(|s| clean(&s));
        let security_version = security_version_raw
            .as_deref()
            .and_then(|v| v.trim().parse().ok());
        let battery = match self
            .fact(&vars, &facts.battery_percent)?
            .and_then(|v| parse_percent(&v))
        {
            Some(p) => Battery::Percent(p),
            None => match self
                .var(&vars, "battery-soc-ok")?
                .as_deref()
                .and_then(yes_no)
            {
                Some(true) => Battery::SufficientForFlashing,
                Some(false) => Battery::TooLowForFlashing,
                None => Battery::Unknown,
            },
        };
        let lock = self.lock_state(&vars)?;
        let max_download = match self.var(&vars, "max-download-size")? {
            Some(size) => Some(size),
            // Older U-Boot fastboot (Amlogic) names its download buffer `downloadsize`.
            None => vars.get("downloadsize").map(str::to_string),
        }
        .and_then(|v| parse_size(&v, self.style));
        self.max_download = max_download.map(|m| m.min(u64::from(u32::MAX)));

        let slot_count = self
            .var(&vars, "slot-count")?
            .and_then(|v| parse_size(&v, NumberStyle::Decimal))
            .unwrap_or(0);
        let slots = if slot_count >= 2 {
            self.var(&vars, "current-slot")?.map(|s| Slots {
                current: clean(s.trim_start_matches('_')),
                count: slot_count.min(u64::from(u32::MAX)) as u32,
            })
        } else {
            None
        };

        let (sizes, unknown) = vars.partitions();
        let partitions = sizes
            .into_iter()
            .map(|(p, size)| (clean(&p), size))
            .collect();
        let partitions_size_unknown = unknown.iter().map(|p| clean(p)).collect();
        self.listed = vars;

        Ok(DeviceInfo {
            address: self.client.transport().address().to_string(),
            mode: Mode::Fastboot,
            product,
            serial,
            imei: None,
            firmware_version_raw,
            firmware_version,
            security_version,
            security_version_raw,
            battery,
            lock,
            partitions,
            partitions_size_unknown,
            slots,
            is_virtual: self.is_virtual,
            luns: Vec::new(),
            layout: Vec::new(),
            chip: None,
        })
    }

    fn prepare(&mut self, target: &Target, image: &dyn ImageSource) -> Result<(), DeviceError> {
        let partition = Self::partition(target)?;
        let limit = self.download_limit()?;
        if image.is_sparse() && self.takes_raw_only(partition) {
            return Self::raw_download_len(partition, image, limit).map(drop);
        }
        if image.len() > limit {
            let plan = Self::plan_split(image, limit)?;
            self.prepared.insert(partition.to_string(), plan);
        }
        Ok(())
    }

    fn write_image(
        &mut self,
        target: &Target,
        image: &dyn ImageSource,
        progress: &mut ProgressFn<'_>,
    ) -> Result<(), DeviceError> {
        let partition = Self::partition(target)?;
        let limit = self.download_limit()?;
        if image.is_sparse() && self.takes_raw_only(partition) {
            return self.write_expanded(partition, image, limit, progress);
        }
        if image.len() <= limit {
            return self.write_whole(partition, image, progress);
        }
        let plan = match self.prepared.remove(partition) {
            Some(plan) => plan,
            None => Self::plan_split(image, limit)?,
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.resize(SPLIT_SCRATCH, 0);
        let result = self.write_split(partition, image, plan, progress, &mut scratch);
        self.scratch = scratch;
        result
    }

    fn partition_size(&mut self, partition: &str) -> Result<Option<u64>, DeviceError> {
        Ok(self
            .client
            .getvar(&format!("partition-size:{partition}"))?
            .and_then(|v| parse_size(&v, self.style)))
    }

    fn variable(&mut self, name: &str) -> Result<Option<String>, DeviceError> {
        match self.listed.get(name) {
            Some(value) => Ok(Some(value.to_string())),
            None => Ok(self.client.getvar(name)?),
        }
    }

    fn set_active_slot(&mut self, slot: &str) -> Result<(), DeviceError> {
        Ok(self.client.set_active(slot)?)
    }

    fn reboot(&mut self) -> Result<(), DeviceError> {
        Ok(self.client.reboot()?)
    }

    fn dynamic(&mut self) -> Option<&mut dyn super::dynamic::DynamicPartitions> {
        Some(self)
    }

    fn take_messages(&mut self) -> Vec<String> {
        self.raw_messages().iter().map(|m| clean(m)).collect()
    }

    fn fastboot_verbs(&mut self) -> Option<&mut dyn verbs::FastbootVerbs> {
        Some(self)
    }
}

impl<T: Transport> FastbootDriver<T> {
    /// Sends the image as one download (raw stays raw, sparse stays sparse, as Google's
    /// client does when it fits).
    ///
    /// The image is read and hashed on a helper thread ([`ReadAhead`]) while this thread
    /// sends the buffer before; the buffers go to the transport as they are, uncopied.
    fn write_whole(
        &mut self,
        partition: &str,
        image: &dyn ImageSource,
        progress: &mut ProgressFn<'_>,
    ) -> Result<(), DeviceError> {
        let len = u32::try_from(image.len())
            .map_err(|_| DeviceError::TooLarge("image too large for one download".into()))?;
        // A sparse image writes its expanded size; its header says how much that is.
        let writes = if image.is_sparse() {
            let mut header = image.plan_reader().map_err(DeviceError::ImageRead)?;
            sparse::read_header(&mut header)?.expanded_len()
        } else {
            u64::from(len)
        };
        self.send_verified(len, image, progress)?;
        self.client.flash_writing(partition, writes)?;
        Ok(())
    }

    /// The INFO/TEXT lines gathered since the last call, as the device sent them.
    fn raw_messages(&mut self) -> Vec<String> {
        self.messages
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default()
    }

    /// Downloads `image` (`len` bytes) while it is read and hashed on a helper thread, and
    /// fails unless exactly its signed bytes went out; nothing is committed here.
    fn send_verified(
        &mut self,
        len: u32,
        image: &dyn ImageSource,
        progress: &mut ProgressFn<'_>,
    ) -> Result<(), DeviceError> {
        let reader = image.send_reader().map_err(DeviceError::ImageRead)?;
        let client = &mut self.client;
        std::thread::scope(|scope| {
            let mut src = ReadAhead::spawn(scope, reader).map_err(DeviceError::ImageRead)?;
            let sent = client.download(len, |w| {
                let mut done = 0u64;
                while done < u64::from(len) {
                    let buf = src.fill_buf()?;
                    if buf.is_empty() {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    let n = buf.len().min((u64::from(len) - done) as usize);
                    w.write_all(&buf[..n])?;
                    src.consume(n);
                    done += n as u64;
                    progress(done);
                }
                Ok(())
            });
            let reader = src.finish();
            sent?;
            reader.verify().map_err(DeviceError::ImageChanged)
        })
    }

    /// Whether the quirks say this model takes only raw images for `partition`.
    fn takes_raw_only(&self, partition: &str) -> bool {
        let base = partition
            .strip_suffix("_a")
            .or_else(|| partition.strip_suffix("_b"))
            .unwrap_or(partition);
        self.raw_only.iter().any(|p| p == base)
    }

    /// Sends a sparse image expanded, as one raw download, to a partition the bootloader
    /// takes only raw images for (DONT_CARE runs go as zeros, as `simg2img` writes them).
    /// The sparse bytes are read through the checking send reader, and `flash` is sent
    /// only if they were the signed ones.
    fn write_expanded(
        &mut self,
        partition: &str,
        image: &dyn ImageSource,
        limit: u64,
        progress: &mut ProgressFn<'_>,
    ) -> Result<(), DeviceError> {
        tracing::info!("{partition} takes raw images only: sending the sparse image expanded");
        let len = self.download_expanded(partition, image, limit, progress)?;
        self.client.flash_writing(partition, u64::from(len))?;
        Ok(())
    }

    /// Downloads a sparse image expanded to its raw bytes, in one download, checking the
    /// sparse bytes against the signed ones on the way; returns the raw length. What
    /// follows (`flash`, `boot`) is the caller's, and only once this succeeded.
    pub(crate) fn download_expanded(
        &mut self,
        partition: &str,
        image: &dyn ImageSource,
        limit: u64,
        progress: &mut ProgressFn<'_>,
    ) -> Result<u32, DeviceError> {
        let len = Self::raw_download_len(partition, image, limit)?;
        let reader = image.send_reader().map_err(DeviceError::ImageRead)?;
        let client = &mut self.client;
        std::thread::scope(|scope| {
            let mut src = ReadAhead::spawn(scope, reader).map_err(DeviceError::ImageRead)?;
            let sent = client.download(len, |w| {
                let mut raw = Expanded {
                    out: w,
                    at: 0,
                    progress,
                };
                sparse::expand(&mut src, &mut raw).map_err(|e| io::Error::other(e.to_string()))?;
                // Whatever follows the last chunk must still be the checked image.
                io::copy(&mut src, &mut io::sink())?;
                Ok(())
            });
            let reader = src.finish();
            sent?;
            reader.verify().map_err(DeviceError::ImageChanged)
        })?;
        Ok(len)
    }

    /// The length of a sparse image expanded, if it fits one download.
    fn raw_download_len(
        partition: &str,
        image: &dyn ImageSource,
        limit: u64,
    ) -> Result<u32, DeviceError> {
        let mut header = image.plan_reader().map_err(DeviceError::ImageRead)?;
        let expanded = sparse::read_header(&mut header)?.expanded_len();
        u32::try_from(expanded)
            .ok()
            .filter(|&n| u64::from(n) <= limit)
            .ok_or_else(|| {
                DeviceError::TooLarge(format!(
                    "this bootloader takes only raw images for {partition}, and the image \
                     expands to {expanded} bytes, more than its download buffer ({limit} bytes)"
                ))
            })
    }

    fn partition(target: &Target) -> Result<&str, DeviceError> {
        match target {
            Target::Partition { name } => Ok(name),
            Target::Sectors { .. } => Err(DeviceError::Unsupported(
                "writing sectors by number over fastboot",
            )),
        }
    }

    /// Plans how to cut an image too large for one download.
    ///
    /// An image with signed block hashes is planned without hashing: the bytes the plan
    /// relies on are checked as they are sent (see [`SplitCheck::Signed`] and
    /// [`SplitCheck::SignedSparse`]), so each byte is hashed once. An image of an older
    /// package is checked whole against its signature before any piece is sent, and the
    /// hash of every block is kept for the second pass.
    fn plan_split(image: &dyn ImageSource, limit: u64) -> Result<SplitPlan, DeviceError> {
        let (layout, check) = match image.block_hashes() {
            Some(_) if !image.is_sparse() => {
                let planning = image.plan_reader().map_err(DeviceError::ImageRead)?;
                (sparse::scan_raw(planning, image.len())?, SplitCheck::Signed)
            }
            Some(_) => {
                let planning = image.plan_reader().map_err(DeviceError::ImageRead)?;
                let (layout, structure) = sparse::scan_sparse_structure(planning)?;
                (layout, SplitCheck::SignedSparse(structure))
            }
            None => {
                let mut first = BlockHasher::new(
                    image.send_reader().map_err(DeviceError::ImageRead)?,
                    BlockHashes::block_size(image.len()),
                );
                let layout = if image.is_sparse() {
                    sparse::scan_sparse(&mut first)?
                } else {
                    sparse::scan_raw(&mut first, image.len())?
                };
                io::copy(&mut first, &mut io::sink()).map_err(DeviceError::ImageRead)?;
                let (checked, blocks) = first.finish();
                checked.verify().map_err(DeviceError::ImageChanged)?;
                (layout, SplitCheck::Sealed(blocks))
            }
        };
        let pieces = sparse::split(&layout, limit.min(RESPARSE_LIMIT)).map_err(|e| match e {
            SparseError::PieceLimitTooSmall { .. } => DeviceError::Reports(format!(
                "max-download-size {limit}, too small to send {} bytes in pieces ({e})",
                image.len()
            )),
            e => e.into(),
        })?;
        Ok(SplitPlan {
            layout,
            pieces,
            check,
        })
    }

    /// Sends the image in sparse pieces that each fit the device's download buffer. Every
    /// byte sent comes from a block that matched its signed (or first-pass) hash, and
    /// every byte a piece covers is read and checked before its `flash`, so each piece
    /// may be committed as soon as it is sent.
    fn write_split(
        &mut self,
        partition: &str,
        image: &dyn ImageSource,
        plan: SplitPlan,
        progress: &mut ProgressFn<'_>,
        scratch: &mut [u8],
    ) -> Result<(), DeviceError> {
        let SplitPlan {
            layout,
            pieces,
            check,
        } = plan;
        let reader = match check {
            SplitCheck::Signed => SplitSource::Signed(FillCheck::new(
                image.send_reader().map_err(DeviceError::ImageRead)?,
                &layout,
            )),
            SplitCheck::SignedSparse(structure) => {
                SplitSource::SignedSparse(sparse::StructureCheck::new(
                    image.send_reader().map_err(DeviceError::ImageRead)?,
                    structure,
                ))
            }
            SplitCheck::Sealed(blocks) => SplitSource::Sealed(BlockVerifier::new(
                image.plan_reader().map_err(DeviceError::ImageRead)?,
                blocks,
            )),
        };
        let client = &mut self.client;
        let blk = u64::from(layout.blk_sz);
        let raw = !image.is_sparse();
        std::thread::scope(|scope| {
            let src = ReadAhead::spawn(scope, reader).map_err(DeviceError::ImageRead)?;
            let mut cursor = SourceCursor::new(Counting::new(src, progress));
            let last = pieces.len().saturating_sub(1);
            let mut held = None;
            for (i, piece) in pieces.iter().enumerate() {
                let len = u32::try_from(piece.encoded_len())
                    .map_err(|_| DeviceError::TooLarge("sparse piece exceeds 4 GiB".into()))?;
                client.download(len, |w| {
                    piece
                        .write(&layout, &mut cursor, w, scratch)
                        .map_err(|e| io::Error::other(e.to_string()))?;
                    // A raw image's FILL blocks at the piece's end are checked too; so are
                    // a sparse image's records of every block the piece covers.
                    let end = if raw {
                        (u64::from(piece.end_block()) * blk).min(layout.source_len)
                    } else {
                        layout.records_before(piece.end_block())
                    };
                    if cursor.position() < end {
                        cursor
                            .read_at(end, &mut [])
                            .map_err(|e| io::Error::other(e.to_string()))?;
                    }
                    Ok(())
                })?;
                let span = u64::from(piece.blocks()) * blk;
                if i == last {
                    held = Some(span);
                } else {
                    client.flash_writing(partition, span)?;
                }
            }
            // Whatever the pieces skipped must still be the checked image.
            cursor.drain_to_end()?;
            cursor
                .into_inner()
                .inner
                .finish()
                .verify()
                .map_err(DeviceError::ImageChanged)?;
            if let Some(span) = held {
                client.flash_writing(partition, span)?;
            }
            Ok(())
        })
    }
}

/// The second pass of a split image; see [`SplitCheck`].
enum SplitSource<'a> {
    Signed(FillCheck<Box<dyn SendReader + 'a>>),
    SignedSparse(sparse::StructureCheck<Box<dyn SendReader + 'a>>),
    Sealed(BlockVerifier<Box<dyn Read + Send + 'a>>),
}

impl SplitSource<'_> {
    /// Whether exactly the signed bytes were read (every block was checked as it went).
    fn verify(self) -> Result<(), String> {
        match self {
            SplitSource::Signed(check) => check.inner.verify(),
            SplitSource::SignedSparse(check) if check.is_complete() => check.into_inner().verify(),
            SplitSource::SignedSparse(_) => Err("the image was not read to its end".into()),
            SplitSource::Sealed(verifier) if verifier.is_complete() => Ok(()),
            SplitSource::Sealed(_) => Err("the image was not read to its end".into()),
        }
    }
}

impl Read for SplitSource<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            SplitSource::Signed(check) => check.read(buf),
            SplitSource::SignedSparse(check) => check.read(buf),
            SplitSource::Sealed(verifier) => verifier.read(buf),
        }
    }
}

/// Checks that the blocks a raw image's plan sends as FILL chunks hold their pattern, as
/// the (already block-checked) bytes pass: the plan was made from unchecked bytes, and a
/// block changed to look uniform at planning time must not turn into a FILL on the device.
struct FillCheck<R> {
    inner: R,
    /// Byte ranges of the source and the pattern each must hold, in order.
    fills: Vec<(u64, u64, [u8; 4])>,
    next: usize,
    position: u64,
}

impl<R> FillCheck<R> {
    /// Checks the FILL chunks of `layout`, planned from a raw image.
    fn new(inner: R, layout: &sparse::Layout) -> Self {
        let blk = u64::from(layout.blk_sz);
        let fills = layout
            .chunks
            .iter()
            .filter_map(|c| match c.data {
                ChunkData::Fill(word) => Some((
                    u64::from(c.start_block) * blk,
                    (u64::from(c.start_block) + u64::from(c.blocks)) * blk,
                    word.to_le_bytes(),
                )),
                ChunkData::Raw { .. } => None,
            })
            .collect();
        FillCheck {
            inner,
            fills,
            next: 0,
            position: 0,
        }
    }
}

impl<R: Read> Read for FillCheck<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let end = self.position + n as u64;
        while let Some(&(from, to, word)) = self.fills.get(self.next) {
            if from >= end {
                break;
            }
            let lo = from.max(self.position);
            let hi = to.min(end);
            let bytes = &buf[(lo - self.position) as usize..(hi - self.position) as usize];
            // Ranges start on a block, so byte `lo` is byte `lo % 4` of the pattern.
            if bytes
                .iter()
                .enumerate()
                .any(|(i, b)| *b != word[(lo as usize + i) % 4])
            {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the image changed since it was planned: the block at byte {from} no                          longer holds the pattern it is sent as"
                    ),
                ));
            }
            if to > end {
                break;
            }
            self.next += 1;
        }
        self.position = end;
        Ok(n)
    }
}

/// Writes the regions of an expanded sparse image in order, as raw bytes.
struct Expanded<'w, 'p, 'a> {
    out: &'w mut dyn Write,
    at: u64,
    progress: &'p mut ProgressFn<'a>,
}

impl Expanded<'_, '_, '_> {
    fn repeat(&mut self, len: u64, pattern: [u8; 4]) -> io::Result<()> {
        let block: Vec<u8> = pattern.iter().copied().cycle().take(64 * 1024).collect();
        let mut left = len;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            self.out.write_all(&block[..n])?;
            left -= n as u64;
        }
        self.at += len;
        (self.progress)(self.at);
        Ok(())
    }
}

impl sparse::RegionSink for Expanded<'_, '_, '_> {
    fn begin(&mut self, _: &sparse::Header) -> io::Result<()> {
        Ok(())
    }
    fn data(&mut self, _: u64, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.at += bytes.len() as u64;
        (self.progress)(self.at);
        Ok(())
    }
    fn fill(&mut self, _: u64, len: u64, pattern: [u8; 4]) -> io::Result<()> {
        self.repeat(len, pattern)
    }
    fn skip(&mut self, _: u64, len: u64) -> io::Result<()> {
        self.repeat(len, [0; 4])
    }
}

/// Counts bytes read and reports them as progress.
struct Counting<'p, 'a, R> {
    inner: R,
    done: u64,
    progress: &'p mut ProgressFn<'a>,
}

impl<'p, 'a, R> Counting<'p, 'a, R> {
    fn new(inner: R, progress: &'p mut ProgressFn<'a>) -> Self {
        Counting {
            inner,
            done: 0,
            progress,
        }
    }
}

impl<R: Read> Read for Counting<'_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        (self.progress)(self.done);
        Ok(n)
    }
}

/// Reads `1`, `1.2`, `1.2.3` or a full semver string as a comparable version.
pub fn lenient_version(text: &str) -> Option<semver::Version> {
    let t = text.trim().trim_start_matches(['v', 'V']);
    if let Ok(v) = semver::Version::parse(t) {
        return Some(v);
    }
    let mut parts = t.split('.').map(|p| p.parse::<u64>());
    let major = parts.next()?.ok()?;
    let minor = parts.next().transpose().ok()?.unwrap_or(0);
    let patch = parts.next().transpose().ok()?.unwrap_or(0);
    if parts.next().is_some() {
        return None;
    }
    Some(semver::Version::new(major, minor, patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_planned_as_a_fill_must_hold_its_pattern_when_sent() {
        // Planned from bytes whose second block was uniform...
        let planned = [vec![1u8; 4096], vec![7u8; 4096], vec![2u8; 4096]].concat();
        let layout = sparse::scan_raw(&planned[..], planned.len() as u64).unwrap();
        let mut same = FillCheck::new(&planned[..], &layout);
        io::copy(&mut same, &mut io::sink()).unwrap();
        // ...but the (checked) bytes sent hold data there: never sent as that FILL.
        let mut sent = planned.clone();
        sent[4096 + 100] = 8;
        let mut check = FillCheck::new(&sent[..], &layout);
        let err = io::copy(&mut check, &mut io::sink()).unwrap_err();
        assert!(err.to_string().contains("byte 4096"), "{err}");
    }

    #[test]
    fn versions_are_read_leniently() {
        assert_eq!(
            lenient_version("2.1.0"),
            Some(semver::Version::new(2, 1, 0))
        );
        assert_eq!(lenient_version("v3"), Some(semver::Version::new(3, 0, 0)));
        assert_eq!(lenient_version("1.4"), Some(semver::Version::new(1, 4, 0)));
        assert_eq!(lenient_version("1.2.3.4"), None);
        assert_eq!(lenient_version("abc"), None);
    }
}
