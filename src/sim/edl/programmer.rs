//! The Firehose programmer the boot ROM started: XML commands on the same line.
//!
//! Behaviour, where programmers differ:
//!
//! * `<configure>`: `MemoryName` must be the device's storage type (any case), else NAK
//!   with "Not support configure MemoryName …". A payload up to the device's maximum is
//!   ACKed with `MaxPayloadSizeToTargetInBytes` = the asked size and
//!   `MaxPayloadSizeToTargetInBytesSupported` = the maximum; a larger one is NAKed with
//!   both set to the maximum, so a host that takes the NAK's value (as qdl does) retries
//!   with it. Storage commands before a successful configure are NAKed.
//! * `<program>`, `<read>`, `<erase>`, `<getsha256digest>`, `<patch>`: sector size, LUN
//!   and range are checked before any data moves; a refused command is NAKed after a log
//!   line that says why. Program data is written as it arrives, so an interrupted
//!   transfer leaves exactly what arrived on the LUN.
//! * `<getsha256digest>` answers with a `Digest <64 hex>` log, `<getstorageinfo>` with a
//!   JSON log (`{"storage_info": {"total_blocks": …}}`), like Qualcomm's programmers.
//! * `<setbootablestoragedrive>` is ACKed for an existing LUN. `<power>` takes `reset`,
//!   `off` and `reset_to_edl`; any other value is NAKed.
//! * Host documents over [`MAX_XML_SIZE`] bytes are NAKed unread.
//! * With `late_logs`, the programmer logs at start-up and right after some ACKs.
//! * [`Habits`](super::Habits) change some of this as shipped programmers do (no digest,
//!   storage-info NAKs, other configure answers), each with its source.

use std::io::{self, BufWriter, Read, Write};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::protocol::firehose::{
    Command, Configure, DeviceDoc, DocReader, FirehoseError, Patch, PowerAction, Response,
    SectorRange,
};
use crate::transport::TransportError;

use super::habits::{self, ConfigureHabit};
use super::pbl::REBOOT_TIME;
use super::storage::{Span, IO_BUF_LEN};
use super::{lock, Device, Line};
use crate::sim::fault::{self, Cut, Match, Reaction};

/// Largest host document, announced as `MaxXMLSizeInBytes`.
pub(super) const MAX_XML_SIZE: usize = 4096;
/// How long the programmer takes to start after the boot ROM's DONE_RESP. Its start-up
/// logs come after this, as separate transfers on a real device; on a byte stream the
/// pause keeps them from arriving glued to DONE_RESP.
const BOOT_TIME: Duration = Duration::from_millis(50);
/// Longest `DelayInSeconds` honoured before a reset.
const MAX_RESET_DELAY: Duration = Duration::from_secs(10);
/// The log line before the NAK of an injected failure.
const INJECTED_FAILURE: &str = "injected fault: command refused";

/// Why the programmer stopped running.
pub(super) enum Exit {
    /// `reset_to_edl`, a watchdog or an injected fault: the device reboots into the boot
    /// ROM.
    Reset,
    /// `<power value="reset">`: the device reboots and boots its firmware, if it has any
    /// (see [`super::EdlSim::boots_firmware`]); otherwise the boot ROM again.
    Boot,
    /// `<power value="off">`.
    PowerOff,
    /// The simulator is stopping.
    Stopped,
}

/// Runs the programmer; `pending` is what the host sent right after Sahara's DONE.
pub(super) fn run(device: &Device, pty: &mut dyn Line, pending: &[u8]) -> Exit {
    let mut programmer = Programmer {
        device,
        pty,
        reader: DocReader::with_pending(pending),
        configured: false,
    };
    programmer.serve()
}

/// What happens after a command.
enum Flow {
    Next,
    Exit(Exit),
}

struct Programmer<'a> {
    device: &'a Device,
    pty: &'a mut dyn Line,
    reader: DocReader,
    configured: bool,
}

impl Programmer<'_> {
    fn serve(&mut self) -> Exit {
        self.pty.pause(BOOT_TIME);
        if self.device.cfg.late_logs {
            let _ = self.log("flashline virtual programmer started");
        }
        loop {
            let result = match self.next_document() {
                Ok(Some(doc)) => self.handle(&doc),
                Ok(None) => Ok(Flow::Next),
                Err(e) => Err(e),
            };
            match result {
                Ok(Flow::Next) => {}
                Ok(Flow::Exit(exit)) => return exit,
                Err(_) if self.pty.stopping() => return Exit::Stopped,
                Err(e) => self.device.record(format!("firehose:link error {e}")),
            }
        }
    }

    /// The next host document; `None` when there was nothing usable yet.
    fn next_document(&mut self) -> Result<Option<String>, TransportError> {
        let timeout = self.device.cfg.data_timeout;
        match self.reader.next_document(&mut *self.pty, timeout) {
            Ok(doc) => Ok(Some(doc)),
            Err(FirehoseError::Transport(TransportError::Timeout(_))) => {
                if !self.reader.buffered().is_empty() {
                    // Part of a document and then silence: its sender is gone.
                    self.device.record(format!(
                        "firehose:dropped {} stray bytes",
                        self.reader.buffered().len()
                    ));
                    self.reader = DocReader::new();
                }
                Ok(None)
            }
            Err(FirehoseError::Transport(e)) => Err(e),
            Err(e) => {
                self.reader = DocReader::new();
                self.pty.discard_input();
                self.nak(&format!("unreadable command: {e}"))?;
                Ok(None)
            }
        }
    }

    fn handle(&mut self, doc: &str) -> Result<Flow, TransportError> {
        if doc.len() > MAX_XML_SIZE {
            self.device
                .record(format!("firehose:<{}-byte document>", doc.len()));
            self.nak(&format!(
                "XML document of {} bytes exceeds MaxXMLSizeInBytes {MAX_XML_SIZE}",
                doc.len()
            ))?;
            return Ok(Flow::Next);
        }
        let command = match Command::parse(doc) {
            Ok(command) => command,
            Err(e) => {
                self.device.record(format!("firehose:<malformed: {e}>"));
                self.nak(&e.to_string())?;
                return Ok(Flow::Next);
            }
        };
        let text = describe(&command);
        self.device.record(format!("firehose:{text}"));
        let reaction = lock(&self.device.faults).on_command(&text, Match::Exact);
        if let Some(reaction) = reaction {
            return self.misbehave(reaction);
        }
        let needs_storage = !matches!(
            command,
            Command::Configure(_) | Command::Nop | Command::Power { .. } | Command::Unknown { .. }
        );
        if needs_storage && !self.configured {
            self.nak("storage is not initialized: send <configure> first")?;
            return Ok(Flow::Next);
        }
        match command {
            Command::Configure(c) => self.configure(&c),
            Command::Program(range) => self.program(&range),
            Command::Read(range) => self.read(&range),
            Command::Erase(range) => {
                let span = self.device.storage.span(&range);
                self.erase(span)
            }
            Command::EraseAll { lun, sector_size } => {
                let span = self.device.storage.lun_span(lun, sector_size);
                self.erase(span)
            }
            Command::Patch(patch) => self.patch(&patch),
            Command::GetSha256Digest(_) if self.device.cfg.habits.no_digest => {
                self.nak("unsupported command <getsha256digest>")?;
                Ok(Flow::Next)
            }
            Command::GetSha256Digest(range) => self.digest(&range),
            Command::GetStorageInfo { lun } => self.storage_info(lun),
            Command::SetBootableStorageDrive { lun } => {
                if self.device.storage.lun_sectors(lun).is_none() {
                    self.nak(&format!("physical_partition_number {lun} does not exist"))?;
                    return Ok(Flow::Next);
                }
                self.ack(Response::ack())
            }
            Command::Power {
                action,
                delay_seconds,
            } => self.power(action, delay_seconds),
            Command::Nop => self.ack(Response::ack()),
            Command::Unknown { tag } => {
                self.nak(&format!("unsupported command <{tag}>"))?;
                Ok(Flow::Next)
            }
        }
    }

    /// Does what an injected command fault says instead of executing the command.
    fn misbehave(&mut self, reaction: Reaction) -> Result<Flow, TransportError> {
        match reaction {
            Reaction::Fail => {
                self.nak(INJECTED_FAILURE)?;
                Ok(Flow::Next)
            }
            Reaction::Garbage => {
                let timeout = self.device.cfg.data_timeout;
                self.pty.write(&fault::garbage(b"</data>"), timeout)?;
                Ok(Flow::Next)
            }
            // A drop is refused for EDL devices by their config check.
            Reaction::Stall | Reaction::Drop => Ok(self.hang()),
            Reaction::Reenumerate => Ok(self.reboot("injected re-enumeration")),
        }
    }

    /// A hung programmer: it answers nothing and drops what arrives until the line has been
    /// quiet for the data timeout, when its watchdog resets the device.
    fn hang(&mut self) -> Flow {
        let quiet = self.device.cfg.data_timeout;
        let mut sink = [0u8; 4096];
        loop {
            match self.pty.read(&mut sink, quiet) {
                Ok(_) => {}
                Err(TransportError::Timeout(_)) => return self.reboot("watchdog"),
                Err(_) if self.pty.stopping() => return Flow::Exit(Exit::Stopped),
                Err(e) => {
                    self.device.record(format!("firehose:link error {e}"));
                    return self.reboot("watchdog");
                }
            }
        }
    }

    /// Leaves the programmer for the boot ROM, as a reset does.
    fn reboot(&mut self, why: &str) -> Flow {
        self.device.record(format!("firehose:reboot ({why})"));
        self.pty.pause(REBOOT_TIME);
        Flow::Exit(Exit::Reset)
    }

    fn configure(&mut self, c: &Configure) -> Result<Flow, TransportError> {
        let cfg = &self.device.cfg;
        let habit = cfg.habits.configure;
        if habit == ConfigureHabit::LogsOnly {
            self.log("Calling handler for configure")?;
            self.log(&format!(
                "Storage type set to value {}",
                cfg.memory_name.to_ascii_uppercase()
            ))?;
            self.configured = true;
            return Ok(Flow::Next);
        }
        if habit != ConfigureHabit::OtherMemoryName
            && !c.memory_name.eq_ignore_ascii_case(&cfg.memory_name)
        {
            self.nak(&format!(
                "Not support configure MemoryName {}",
                c.memory_name
            ))?;
            return Ok(Flow::Next);
        }
        let max = cfg.max_payload_to_target;
        let accepted = (1..=max).contains(&c.max_payload_to_target);
        if habit == ConfigureHabit::CounterOffer {
            let response = if accepted {
                Response::ack()
                    .with("MemoryName", &cfg.memory_name)
                    .with("MaxPayloadSizeToTargetInBytes", c.max_payload_to_target)
            } else {
                Response::nak().with("MaxPayloadSizeToTargetInBytes", max)
            };
            self.configured |= accepted;
            self.send(&DeviceDoc::response(response))?;
            return Ok(Flow::Next);
        }
        let response = if accepted {
            Response::ack()
        } else {
            self.log(&format!(
                "MaxPayloadSizeToTargetInBytes {} is not supported, the maximum is {max}",
                c.max_payload_to_target
            ))?;
            Response::nak()
        };
        let memory_name = if habit == ConfigureHabit::OtherMemoryName {
            habits::vendor_memory_name(&cfg.memory_name)
        } else {
            &cfg.memory_name
        };
        let response = response
            .with("MemoryName", memory_name)
            .with(
                "MaxPayloadSizeToTargetInBytes",
                if accepted {
                    c.max_payload_to_target
                } else {
                    max
                },
            )
            .with("MaxPayloadSizeToTargetInBytesSupported", max)
            .with("MaxPayloadSizeFromTargetInBytes", IO_BUF_LEN)
            .with("MaxXMLSizeInBytes", MAX_XML_SIZE)
            .with("Version", 1)
            .with("MinVersionSupported", 1)
            .with("TargetName", &cfg.product);
        self.configured |= accepted;
        self.send(&DeviceDoc::response(response))?;
        if accepted {
            self.late_log(&format!("storage {} ready", cfg.memory_name))?;
        }
        Ok(Flow::Next)
    }

    fn program(&mut self, range: &SectorRange) -> Result<Flow, TransportError> {
        let Some(span) = self.checked(self.device.storage.span(range))? else {
            return Ok(Flow::Next);
        };
        let mut file = match self.device.storage.open_at(&span) {
            Ok(file) => BufWriter::with_capacity(IO_BUF_LEN, file),
            Err(e) => return self.storage_failed(e),
        };
        self.send(&DeviceDoc::response(
            Response::ack().with("rawmode", "true"),
        ))?;
        if self.pty.skip_rest_of_transfer() {
            // What the reader holds is the rest of the command's transfer, not data.
            self.reader = DocReader::new();
        }
        let mut buf = vec![0u8; IO_BUF_LEN];
        let mut left = span.len;
        // A storage failure does not end the data phase early: the host is still sending,
        // and its data must not be taken for commands. The NAK comes after the last byte.
        let mut failed: Option<io::Error> = None;
        let timeout = self.device.cfg.data_timeout;
        loop {
            let budget = {
                let mut faults = lock(&self.device.faults);
                if let Some(cut) = faults.cut() {
                    drop(faults);
                    // The flash holds exactly what was written before the cut.
                    let _ = file.flush();
                    let what = match cut {
                        Cut::Link => "link lost",
                        Cut::Power => "power lost",
                    };
                    let done = span.len - left;
                    return Ok(self.reboot(&format!("{what} after {done} program bytes")));
                }
                [faults.receive_budget(), faults.write_budget()]
                    .into_iter()
                    .flatten()
                    .min()
            };
            if left == 0 {
                break;
            }
            let want = left.min(buf.len() as u64).min(budget.unwrap_or(u64::MAX)) as usize;
            let n = match self
                .reader
                .read_raw(&mut *self.pty, &mut buf[..want], timeout)
            {
                Ok(n) => n,
                Err(e) => {
                    // Keep what arrived: that is what a real device's flash holds now.
                    let _ = file.flush();
                    return self.aborted("program", span.len - left, span.len, e);
                }
            };
            let at = span.len - left;
            self.wear(range, at, &mut buf[..n]);
            if failed.is_none() {
                failed = file.write_all(&buf[..n]).err();
            }
            let stored = if failed.is_none() { n as u64 } else { 0 };
            let mut faults = lock(&self.device.faults);
            faults.add_received(n as u64);
            faults.add_written(stored);
            left -= n as u64;
        }
        if let Some(e) = failed.or_else(|| file.flush().err()) {
            return self.storage_failed(e);
        }
        self.ack(Response::ack().with("rawmode", "false"))?;
        self.late_log(&format!(
            "Finished programming start_sector {} and TotalSectorsToProgram {}",
            range.start_sector, range.num_sectors
        ))?;
        Ok(Flow::Next)
    }

    /// Flips the lowest bit of the weak byte ([`habits::Habits::weak_byte`]) if `chunk`,
    /// which lands `at` bytes into `range`, covers it.
    fn wear(&self, range: &SectorRange, at: u64, chunk: &mut [u8]) {
        let Some((lun, byte)) = self.device.cfg.habits.weak_byte else {
            return;
        };
        let start = range.start_sector * u64::from(range.sector_size) + at;
        if lun == range.lun && (start..start + chunk.len() as u64).contains(&byte) {
            chunk[(byte - start) as usize] ^= 1;
        }
    }

    fn read(&mut self, range: &SectorRange) -> Result<Flow, TransportError> {
        let Some(span) = self.checked(self.device.storage.span(range))? else {
            return Ok(Flow::Next);
        };
        let mut file = match self.device.storage.open_at(&span) {
            Ok(file) => file.take(span.len),
            Err(e) => return self.storage_failed(e),
        };
        self.send(&DeviceDoc::response(
            Response::ack().with("rawmode", "true"),
        ))?;
        let mut buf = vec![0u8; IO_BUF_LEN];
        let mut sent = 0;
        let timeout = self.device.cfg.data_timeout;
        while sent < span.len {
            let n = match file.read(&mut buf) {
                Ok(0) => return self.aborted("read", sent, span.len, "the LUN file is short"),
                Ok(n) => n,
                Err(e) => return self.aborted("read", sent, span.len, e),
            };
            if let Err(e) = self.pty.write(&buf[..n], timeout) {
                return self.aborted("read", sent, span.len, e);
            }
            sent += n as u64;
        }
        self.ack(Response::ack().with("rawmode", "false"))
    }

    fn erase(&mut self, span: Result<Span, String>) -> Result<Flow, TransportError> {
        let Some(span) = self.checked(span)? else {
            return Ok(Flow::Next);
        };
        if let Err(e) = self.device.storage.zero(&span) {
            return self.storage_failed(e);
        }
        self.ack(Response::ack())?;
        self.late_log(&format!("Erased {} bytes", span.len))?;
        Ok(Flow::Next)
    }

    fn patch(&mut self, p: &Patch) -> Result<Flow, TransportError> {
        if !(1..=8).contains(&p.size_in_bytes) {
            self.nak(&format!("size_in_bytes {} is not 1 to 8", p.size_in_bytes))?;
            return Ok(Flow::Next);
        }
        let bits = p.size_in_bytes * 8;
        if bits < 64 && p.value >> bits != 0 {
            self.nak(&format!(
                "value {} does not fit in {} bytes",
                p.value, p.size_in_bytes
            ))?;
            return Ok(Flow::Next);
        }
        let byte = p
            .start_sector
            .checked_mul(u64::from(p.sector_size))
            .and_then(|b| b.checked_add(p.byte_offset))
            .unwrap_or(u64::MAX);
        let span =
            self.device
                .storage
                .byte_span(p.lun, p.sector_size, byte, u64::from(p.size_in_bytes));
        let Some(span) = self.checked(span)? else {
            return Ok(Flow::Next);
        };
        let bytes = p.value.to_le_bytes();
        if let Err(e) = self
            .device
            .storage
            .write_bytes(&span, &bytes[..p.size_in_bytes as usize])
        {
            return self.storage_failed(e);
        }
        self.ack(Response::ack())
    }

    fn digest(&mut self, range: &SectorRange) -> Result<Flow, TransportError> {
        let Some(span) = self.checked(self.device.storage.span(range))? else {
            return Ok(Flow::Next);
        };
        match self.device.storage.sha256(&span) {
            Ok(digest) => {
                self.log(&format!("Digest {}", hex::encode_upper(digest)))?;
                self.ack(Response::ack())
            }
            Err(e) => self.storage_failed(e),
        }
    }

    fn storage_info(&mut self, lun: u32) -> Result<Flow, TransportError> {
        if self.device.cfg.habits.storage_info_nak.contains(&lun) {
            self.nak(&format!("getstorageinfo is not supported for LUN {lun}"))?;
            return Ok(Flow::Next);
        }
        let storage = &self.device.storage;
        let Some(total_blocks) = storage.lun_sectors(lun) else {
            let reason = format!("physical_partition_number {lun} does not exist");
            self.nak(&reason)?;
            return Ok(Flow::Next);
        };
        let cfg = &self.device.cfg;
        // NAND programmers count erase blocks of pages; the others count sectors.
        let (total_blocks, block_size) = if cfg.memory_name.eq_ignore_ascii_case("nand") {
            (
                total_blocks / super::NAND_PAGES_PER_BLOCK,
                u64::from(storage.sector_size()) * super::NAND_PAGES_PER_BLOCK,
            )
        } else {
            (total_blocks, u64::from(storage.sector_size()))
        };
        let info = serde_json::json!({
            "storage_info": {
                "total_blocks": total_blocks,
                "block_size": block_size,
                "page_size": storage.sector_size(),
                "num_physical": storage.lun_count(),
                "manufacturer_id": 0,
                "serial_num": u32::from_le_bytes(
                    sha_prefix(&format!("storage {}", cfg.serial))
                ),
                "fw_version": "1",
                "mem_type": cfg.memory_name.to_ascii_uppercase(),
                "prod_name": cfg.product,
            }
        });
        self.log(&format!("INFO: {info}"))?;
        self.ack(Response::ack())
    }

    fn power(
        &mut self,
        action: PowerAction,
        delay_seconds: Option<u32>,
    ) -> Result<Flow, TransportError> {
        self.ack(Response::ack())?;
        let delay = Duration::from_secs(delay_seconds.map_or(0, u64::from)).min(MAX_RESET_DELAY);
        self.pty.pause(delay);
        Ok(Flow::Exit(match action {
            // The time a reboot takes, so the host's log drain sees silence first.
            PowerAction::Reset => {
                self.pty.pause(REBOOT_TIME);
                Exit::Boot
            }
            PowerAction::ResetToEdl => {
                self.pty.pause(REBOOT_TIME);
                Exit::Reset
            }
            PowerAction::Off => Exit::PowerOff,
        }))
    }

    /// The span, or `None` after NAKing with the reason.
    fn checked(&mut self, span: Result<Span, String>) -> Result<Option<Span>, TransportError> {
        match span {
            Ok(span) => Ok(Some(span)),
            Err(reason) => {
                self.nak(&reason)?;
                Ok(None)
            }
        }
    }

    /// A data phase broke off (host gone, or a LUN file error while sending).
    fn aborted(
        &mut self,
        what: &str,
        done: u64,
        total: u64,
        reason: impl std::fmt::Display,
    ) -> Result<Flow, TransportError> {
        if self.pty.stopping() {
            return Err(TransportError::Disconnected);
        }
        self.device.record(format!(
            "firehose:{what} aborted after {done} of {total} bytes: {reason}"
        ));
        self.reader = DocReader::new();
        self.pty.discard_input();
        Ok(Flow::Next)
    }

    fn storage_failed(&mut self, e: io::Error) -> Result<Flow, TransportError> {
        self.nak(&format!("storage failure: {e}"))?;
        Ok(Flow::Next)
    }

    fn ack(&mut self, response: Response) -> Result<Flow, TransportError> {
        self.send(&DeviceDoc::response(response))?;
        Ok(Flow::Next)
    }

    /// Logs the reason, then NAKs.
    fn nak(&mut self, reason: &str) -> Result<(), TransportError> {
        self.device.record(format!("firehose:nak {reason}"));
        self.log(reason)?;
        self.send(&DeviceDoc::response(Response::nak()))
    }

    fn log(&mut self, text: &str) -> Result<(), TransportError> {
        self.send(&DeviceDoc::log(text))
    }

    /// A log line after the response, when the device is configured to be chatty.
    fn late_log(&mut self, text: &str) -> Result<(), TransportError> {
        if self.device.cfg.late_logs {
            self.log(text)?;
        }
        Ok(())
    }

    fn send(&mut self, doc: &DeviceDoc) -> Result<(), TransportError> {
        let timeout = self.device.cfg.data_timeout;
        self.pty.write(doc.encode().as_bytes(), timeout)
    }
}

fn sha_prefix(text: &str) -> [u8; 4] {
    let digest = Sha256::digest(text);
    [digest[0], digest[1], digest[2], digest[3]]
}

/// A command as the event log shows it.
fn describe(command: &Command) -> String {
    let range = |r: &SectorRange| {
        format!(
            "lun={} start={} sectors={}",
            r.lun, r.start_sector, r.num_sectors
        )
    };
    match command {
        Command::Configure(c) => format!(
            "configure memory={} payload={}",
            c.memory_name, c.max_payload_to_target
        ),
        Command::Program(r) => format!("program {}", range(r)),
        Command::Read(r) => format!("read {}", range(r)),
        Command::Erase(r) => format!("erase {}", range(r)),
        Command::EraseAll { lun, .. } => format!("erase lun={lun}"),
        Command::Patch(p) => format!(
            "patch lun={} start={} offset={} size={} value={}",
            p.lun, p.start_sector, p.byte_offset, p.size_in_bytes, p.value
        ),
        Command::GetSha256Digest(r) => format!("getsha256digest {}", range(r)),
        Command::GetStorageInfo { lun } => format!("getstorageinfo lun={lun}"),
        Command::Power { action, .. } => match action {
            PowerAction::Reset => "power reset".into(),
            PowerAction::Off => "power off".into(),
            PowerAction::ResetToEdl => "power reset_to_edl".into(),
        },
        Command::SetBootableStorageDrive { lun } => format!("setbootablestoragedrive lun={lun}"),
        Command::Nop => "nop".into(),
        Command::Unknown { tag } => tag.clone(),
    }
}
