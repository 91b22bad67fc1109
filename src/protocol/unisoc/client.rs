//! The host side of the Unisoc download protocol: boot ROM → FDL1 → FDL2, then partition
//! reads, writes and erases by name, as spd_dump drives them.
//!
//! Every wait has a deadline; every frame is bounded by its 16-bit length field; log frames
//! (`REP_LOG`) are skipped, at most [`MAX_LOGS`] in a row.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use super::{
    cmd, partition_payload, Check, Decoder, Direction, Frame, Step, UnisocError, FLAG,
    OPEN_BROM_VERSION, PARTITION_ENTRY_LEN,
};
use crate::transport::{Transport, TransportError};

/// Block size for loaders sent to the boot ROM and FDL1 (spd_dump's default, 528).
pub const LOADER_BLOCK: usize = 528;
/// Block size for partition writes and reads through FDL2 (spd_dump's default for
/// `write_part` and `read_part`, 4 KiB).
pub const PARTITION_BLOCK: usize = 4096;
/// Most log frames skipped while waiting for one answer.
pub const MAX_LOGS: usize = 64;
/// Most bytes read while looking for one frame: a frame is at most 2 × 65541 escaped bytes,
/// and anything beyond is a device that talks without framing.
const MAX_BYTES_PER_FRAME: usize = 2 * (0xFFFF + 6) + 2;
/// Read buffer: one USB transfer of a full frame fits.
const READ_BUF: usize = 0x10000 + 1024;

/// Limits for a [`Client`].
#[derive(Debug, Clone)]
pub struct Timeouts {
    /// Each ordinary answer.
    pub answer: Duration,
    /// Answers that follow slow work on the device: FDL2 starting (spd_dump waits 15 s),
    /// a written block being stored, an erase.
    pub slow: Duration,
    /// Each write to the link.
    pub write: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            answer: Duration::from_secs(2),
            slow: Duration::from_secs(15),
            write: Duration::from_secs(5),
        }
    }
}

/// Which program answers on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The boot ROM (CRC-16 frames).
    BootRom,
    /// FDL1, running from internal RAM.
    Fdl1,
    /// FDL2, which can reach the flash.
    Fdl2,
}

/// What the boot ROM said about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BromVersion {
    /// The version string (NUL removed, printable ASCII).
    pub text: String,
    /// Whether the boot ROM checks loader signatures: its version is not `SPRD3`.
    pub secure_boot: bool,
}

/// A partition as FDL2 lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionEntry {
    /// Its name.
    pub name: String,
    /// Size in bytes (the device lists KiB).
    pub size: u64,
}

/// The host end of one download session.
pub struct Client<T: Transport> {
    transport: T,
    decoder: Decoder,
    transcode: bool,
    pending: Vec<u8>,
    pending_at: usize,
    timeouts: Timeouts,
    stage: Stage,
    logs: Vec<String>,
}

impl<T: Transport> Client<T> {
    /// A session with a device in its boot ROM.
    pub fn new(transport: T, timeouts: Timeouts) -> Self {
        Client {
            transport,
            decoder: Decoder::new(Check::Crc16, Direction::ToHost),
            transcode: true,
            pending: Vec::new(),
            pending_at: 0,
            timeouts,
            stage: Stage::BootRom,
            logs: Vec::new(),
        }
    }

    /// The stage the session has reached.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// The link.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Sets every answer timeout to `silence` (the technician's `--device-timeout`).
    pub fn set_timeout(&mut self, silence: Duration) {
        self.timeouts.answer = silence;
        self.timeouts.slow = silence;
    }

    /// Log lines the device sent since the last call.
    pub fn take_logs(&mut self) -> Vec<String> {
        std::mem::take(&mut self.logs)
    }

    fn check(&self) -> Check {
        match self.stage {
            Stage::BootRom => Check::Crc16,
            Stage::Fdl1 | Stage::Fdl2 => Check::Sum,
        }
    }

    fn send(&mut self, kind: u16, payload: &[u8]) -> Result<(), UnisocError> {
        let frame = super::encode(
            kind,
            payload,
            self.check(),
            Direction::ToDevice,
            self.transcode,
        )?;
        self.transport.write(&frame, self.timeouts.write)?;
        Ok(())
    }

    /// Reads the next frame that is not a log line, within `timeout` for each.
    fn receive(&mut self, step: &str, timeout: Duration) -> Result<Frame, UnisocError> {
        for _ in 0..=MAX_LOGS {
            let frame = self.read_frame(timeout)?;
            if frame.kind != cmd::REP_LOG {
                return Ok(frame);
            }
            let text = super::text(&frame.payload);
            tracing::debug!(log = %text, "unisoc device log");
            if self.logs.len() < MAX_LOGS {
                self.logs.push(text);
            }
        }
        Err(UnisocError::OnlyLogs(step.to_string()))
    }

    fn read_frame(&mut self, timeout: Duration) -> Result<Frame, UnisocError> {
        let deadline = Instant::now() + timeout;
        let mut seen = 0usize;
        loop {
            while self.pending_at < self.pending.len() {
                let byte = self.pending[self.pending_at];
                self.pending_at += 1;
                seen += 1;
                match self.decoder.push(byte)? {
                    Step::Frame(frame) => return Ok(frame),
                    Step::More | Step::BareFlag => {}
                }
                if seen > MAX_BYTES_PER_FRAME {
                    return Err(UnisocError::Malformed(format!(
                        "the device sent {seen} bytes without completing a frame"
                    )));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(TransportError::Timeout(timeout).into());
            }
            let mut buf = vec![0u8; READ_BUF];
            let n = self.transport.read(&mut buf, left)?;
            buf.truncate(n);
            self.pending = buf;
            self.pending_at = 0;
        }
    }

    /// Sends `kind` and requires ACK.
    fn command(
        &mut self,
        step: &str,
        kind: u16,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<(), UnisocError> {
        self.send(kind, payload)?;
        let reply = self.receive(step, timeout)?;
        expect(step, &reply, cmd::REP_ACK)
    }

    /// Sends the check-baud bytes (`count` bare 0x7E) until the stage answers its version,
    /// at most `tries` times.
    fn check_baud(&mut self, count: usize, tries: usize) -> Result<Frame, UnisocError> {
        let mut last = None;
        for _ in 0..tries {
            self.transport
                .write(&vec![FLAG; count], self.timeouts.write)?;
            match self.receive("version request", self.timeouts.answer) {
                Ok(frame) => return Ok(frame),
                Err(UnisocError::Transport(TransportError::Timeout(t))) => {
                    last = Some(UnisocError::Transport(TransportError::Timeout(t)));
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| UnisocError::NoVersion("no answer".into())))
    }

    /// Asks the boot ROM for its version and connects: the first step of every session.
    pub fn connect_brom(&mut self) -> Result<BromVersion, UnisocError> {
        let reply = self.check_baud(1, 3).map_err(|e| match e {
            UnisocError::Transport(TransportError::Timeout(_)) => UnisocError::NoVersion(
                "no answer to the check-baud byte: the device is not in its boot ROM's \
                 download mode (hold the boot key while plugging it in)"
                    .into(),
            ),
            other => other,
        })?;
        expect("version request", &reply, cmd::REP_VER)?;
        let secure_boot = reply.payload != OPEN_BROM_VERSION;
        let version = BromVersion {
            text: super::text(&reply.payload),
            secure_boot,
        };
        self.command("CONNECT", cmd::CONNECT, &[], self.timeouts.answer)?;
        Ok(version)
    }

    /// Sends a loader to `address` in `block`-sized frames, reporting bytes sent.
    pub fn send_loader(
        &mut self,
        address: u32,
        len: u32,
        data: &mut dyn Read,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), UnisocError> {
        let mut start = address.to_be_bytes().to_vec();
        start.extend_from_slice(&len.to_be_bytes());
        self.command("START_DATA", cmd::START_DATA, &start, self.timeouts.answer)?;
        let mut buf = vec![0u8; LOADER_BLOCK];
        let mut sent = 0u64;
        while sent < u64::from(len) {
            let want = (u64::from(len) - sent).min(LOADER_BLOCK as u64) as usize;
            data.read_exact(&mut buf[..want])
                .map_err(|e| UnisocError::Malformed(format!("reading the loader: {e}")))?;
            self.command(
                "MIDST_DATA",
                cmd::MIDST_DATA,
                &buf[..want],
                self.timeouts.answer,
            )?;
            sent += want as u64;
            progress(sent);
        }
        self.command("END_DATA", cmd::END_DATA, &[], self.timeouts.answer)
    }

    /// Runs FDL1 (sent with [`Client::send_loader`] to the boot ROM) and connects to it.
    /// Returns FDL1's version string.
    pub fn exec_fdl1(&mut self) -> Result<String, UnisocError> {
        self.command(
            "EXEC_DATA (FDL1)",
            cmd::EXEC_DATA,
            &[],
            self.timeouts.answer,
        )?;
        self.stage = Stage::Fdl1;
        self.decoder.set_check(Check::Sum);
        self.decoder.reset();
        // spd_dump sends four flags, up to ten times: FDL1 needs a moment to start.
        let reply = self.check_baud(4, 10)?;
        expect("version request (FDL1)", &reply, cmd::REP_VER)?;
        let version = super::text(&reply.payload);
        self.command("CONNECT (FDL1)", cmd::CONNECT, &[], self.timeouts.answer)?;
        Ok(version)
    }

    /// Runs FDL2 (sent with [`Client::send_loader`] to FDL1). FDL2 answers ACK, or
    /// INCOMPATIBLE_PARTITION, which spd_dump documents as returned unconditionally by
    /// many FDL2s and takes as success; it is passed back so the caller can note it.
    pub fn exec_fdl2(&mut self) -> Result<bool, UnisocError> {
        self.send(cmd::EXEC_DATA, &[])?;
        let reply = self.receive("EXEC_DATA (FDL2)", self.timeouts.slow)?;
        let incompatible = reply.kind == cmd::REP_INCOMPATIBLE_PARTITION;
        if !incompatible {
            expect("EXEC_DATA (FDL2)", &reply, cmd::REP_ACK)?;
        }
        self.stage = Stage::Fdl2;
        Ok(incompatible)
    }

    /// Stops 0x7E/0x7D escaping in both directions (spd_dump's `disable_transcode`).
    pub fn disable_transcode(&mut self) -> Result<(), UnisocError> {
        self.command(
            "DISABLE_TRANSCODE",
            cmd::DISABLE_TRANSCODE,
            &[],
            self.timeouts.answer,
        )?;
        self.transcode = false;
        self.decoder.set_transcode(false);
        Ok(())
    }

    /// The partition list (`READ_PARTITION`).
    pub fn partitions(&mut self) -> Result<Vec<PartitionEntry>, UnisocError> {
        self.send(cmd::READ_PARTITION, &[])?;
        let reply = self.receive("READ_PARTITION", self.timeouts.answer)?;
        expect("READ_PARTITION", &reply, cmd::REP_READ_PARTITION)?;
        if reply.payload.len() % PARTITION_ENTRY_LEN != 0 {
            return Err(UnisocError::Malformed(format!(
                "the partition list is {} bytes, not a whole number of {PARTITION_ENTRY_LEN}-byte entries",
                reply.payload.len()
            )));
        }
        reply
            .payload
            .chunks_exact(PARTITION_ENTRY_LEN)
            .map(|entry| {
                let name = super::decode_name(&entry[..super::NAME_LEN]).ok_or_else(|| {
                    UnisocError::Malformed("the partition list holds an unreadable name".into())
                })?;
                let kib = u32::from_le_bytes([entry[72], entry[73], entry[74], entry[75]]);
                Ok(PartitionEntry {
                    name,
                    size: u64::from(kib) * 1024,
                })
            })
            .collect()
    }

    /// Writes `len` bytes from `data` to partition `name` (START_DATA, MIDST_DATA blocks,
    /// END_DATA). FDL2 stores the bytes as they arrive: END_DATA commits nothing.
    pub fn write_partition(
        &mut self,
        name: &str,
        len: u64,
        data: &mut dyn Read,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), UnisocError> {
        let select = partition_payload(name, len)?;
        self.command("START_DATA", cmd::START_DATA, &select, self.timeouts.answer)?;
        let mut buf = vec![0u8; PARTITION_BLOCK];
        let mut sent = 0u64;
        while sent < len {
            let want = (len - sent).min(PARTITION_BLOCK as u64) as usize;
            data.read_exact(&mut buf[..want])
                .map_err(|e| UnisocError::Malformed(format!("reading the image: {e}")))?;
            self.command(
                "MIDST_DATA",
                cmd::MIDST_DATA,
                &buf[..want],
                self.timeouts.slow,
            )?;
            sent += want as u64;
            progress(sent);
        }
        self.command("END_DATA", cmd::END_DATA, &[], self.timeouts.slow)
    }

    /// Reads `len` bytes of partition `name` from `offset` into `out`.
    pub fn read_partition(
        &mut self,
        name: &str,
        offset: u64,
        len: u64,
        out: &mut dyn Write,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), UnisocError> {
        let end = offset
            .checked_add(len)
            .ok_or_else(|| UnisocError::Malformed("read range overflows".into()))?;
        let select = partition_payload(name, end)?;
        self.command("READ_START", cmd::READ_START, &select, self.timeouts.answer)?;
        let wide = end > u64::from(u32::MAX);
        let mut done = 0u64;
        while done < len {
            let want = (len - done).min(PARTITION_BLOCK as u64) as u32;
            let at = offset + done;
            let mut req = want.to_le_bytes().to_vec();
            req.extend_from_slice(&(at as u32).to_le_bytes());
            if wide {
                req.extend_from_slice(&((at >> 32) as u32).to_le_bytes());
            }
            self.send(cmd::READ_MIDST, &req)?;
            let reply = self.receive("READ_MIDST", self.timeouts.slow)?;
            expect("READ_MIDST", &reply, cmd::REP_READ_FLASH)?;
            if reply.payload.len() != want as usize {
                return Err(UnisocError::Malformed(format!(
                    "{name}: asked for {want} bytes at offset {at}, the device sent {}",
                    reply.payload.len()
                )));
            }
            out.write_all(&reply.payload)
                .map_err(|e| UnisocError::Malformed(format!("storing what was read: {e}")))?;
            done += u64::from(want);
            progress(done);
        }
        self.command("READ_END", cmd::READ_END, &[], self.timeouts.answer)
    }

    /// Erases partition `name` whole.
    pub fn erase_partition(&mut self, name: &str) -> Result<(), UnisocError> {
        let select = partition_payload(name, 0)?;
        self.command("ERASE_FLASH", cmd::ERASE_FLASH, &select, self.timeouts.slow)
    }

    /// Reboots into the installed system (`NORMAL_RESET`). A device that leaves the bus
    /// before its ACK reaches the host has reset all the same: over USB the reset can
    /// outrun the answer (the USB lab's gadget went away as it answered).
    pub fn reset(&mut self) -> Result<(), UnisocError> {
        match self.command("NORMAL_RESET", cmd::NORMAL_RESET, &[], self.timeouts.answer) {
            Err(UnisocError::Transport(crate::transport::TransportError::Disconnected)) => {
                tracing::debug!("the device left the bus as it reset, before its ACK arrived");
                Ok(())
            }
            other => other,
        }
    }
}

/// Requires `reply` to be of type `want`.
fn expect(step: &str, reply: &Frame, want: u16) -> Result<(), UnisocError> {
    if reply.kind == want {
        return Ok(());
    }
    let text = super::text(&reply.payload);
    Err(UnisocError::Unexpected {
        step: step.to_string(),
        kind: reply.kind,
        name: cmd::reply_name(reply.kind),
        detail: if reply.kind == cmd::REP_READ_FLASH || text.is_empty() {
            String::new()
        } else {
            format!(": {text:?}")
        },
    })
}
