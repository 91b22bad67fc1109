//! The host side of a Firehose session: one command at a time, over any [`Transport`].
//!
//! Everything the device controls is bounded: documents by
//! [`MAX_DOCUMENT_LEN`](super::MAX_DOCUMENT_LEN), log lines
//! per command by [`MAX_LOG_LINES`], every wait by a timeout, and each data phase by the
//! byte count the command announced. Logs that arrive after a response are drained before
//! the next command so they are never mistaken for its answer. After an error that may
//! leave the device mid-command, the session refuses further commands.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use super::{
    Command, Configure, DeviceDoc, DocReader, FirehoseError, Patch, PowerAction, Response,
    SectorRange,
};
use crate::transport::{Transport, TransportError};

/// Most `<log>` lines one command may produce, late ones included.
pub const MAX_LOG_LINES: usize = 10_000;

/// Silence that ends the drain of late logs after a response (qdl waits the same).
const LOG_SILENCE: Duration = Duration::from_millis(100);

/// Longest drain of late logs; a device still logging after that is left to the next read.
const MAX_DRAIN: Duration = Duration::from_secs(2);

/// How long each `<configure>` attempt waits while the programmer may still be booting.
const CONFIGURE_ATTEMPT: Duration = Duration::from_secs(1);

/// The payload used with a programmer that answered `<configure>` with logs only.
pub const LOGS_ONLY_PAYLOAD: u32 = 16 * 1024;

/// Largest data-phase buffer, whatever payload size the device announces.
const MAX_CHUNK: usize = 16 << 20;

/// Read buffer when the device does not announce its transfer size.
const DEFAULT_READ_CHUNK: usize = 1 << 20;

/// How long a failed data write waits for the NAK that explains it.
const NAK_GRACE: Duration = Duration::from_secs(1);

/// Longest wait for the ACK of [`FirehoseClient::abandon`].
const ABANDON_WAIT: Duration = Duration::from_secs(1);

/// Log lines kept to explain a NAK.
const REASON_LINES: usize = 5;

/// Per-wait limits of a session.
#[derive(Debug, Clone)]
pub struct FirehoseTimeouts {
    /// Answer to a quick command (`configure`, `nop`, `patch`, the `rawmode` ACK, …).
    pub response: Duration,
    /// Each write or read of the data phase.
    pub data: Duration,
    /// Answer to a command that works on the storage first (the final ACK of
    /// `program`/`read`, `erase`, `getsha256digest`).
    pub finish: Duration,
    /// How long `configure` keeps retrying while the programmer boots.
    pub configure_boot: Duration,
}

impl Default for FirehoseTimeouts {
    fn default() -> Self {
        FirehoseTimeouts {
            response: Duration::from_secs(10),
            data: Duration::from_secs(10),
            finish: Duration::from_secs(120),
            configure_boot: Duration::from_secs(5),
        }
    }
}

/// What `<configure>` settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConfig {
    /// Largest host → device data write, as negotiated.
    pub max_payload_to_target: u32,
    /// `MaxPayloadSizeFromTargetInBytes`, if announced.
    pub max_payload_from_target: Option<u32>,
    /// `MaxXMLSizeInBytes`, if announced.
    pub max_xml_size: Option<u32>,
    /// `MemoryName` as the device reports it.
    pub memory_name: Option<String>,
    /// `TargetName` (the SoC), if announced.
    pub target_name: Option<String>,
    /// `Version` of the programmer, if announced.
    pub version: Option<String>,
    /// Whether a `<response>` came at all; some programmers only log.
    pub answered: bool,
}

/// Storage geometry from `<getstorageinfo>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageInfo {
    /// Size of the physical partition in blocks (sectors).
    pub total_blocks: u64,
    /// Bytes per block.
    pub block_size: u32,
    /// `page_size`, if given.
    pub page_size: Option<u32>,
    /// Number of physical partitions (LUNs), if given.
    pub num_physical: Option<u32>,
    /// `mem_type` (e.g. `UFS`), if given.
    pub mem_type: Option<String>,
    /// `prod_name`, if given.
    pub prod_name: Option<String>,
    /// `fw_version`, if given.
    pub fw_version: Option<String>,
}

/// Receives the device's `<log>` lines as they arrive.
pub type LogCallback = Box<dyn FnMut(&str) + Send>;

/// A Firehose session with one device.
pub struct FirehoseClient<T: Transport> {
    transport: T,
    reader: DocReader,
    timeouts: FirehoseTimeouts,
    on_log: Option<LogCallback>,
    config: Option<DeviceConfig>,
    /// The data-phase buffer, kept between commands so a flash allocates it once.
    chunk: Vec<u8>,
    /// Why the session can no longer be trusted, if it cannot.
    out_of_step: Option<String>,
}

impl<T: Transport> std::fmt::Debug for FirehoseClient<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirehoseClient")
            .field("address", &self.transport.address())
            .field("config", &self.config)
            .field("out_of_step", &self.out_of_step)
            .finish()
    }
}

/// One command's bookkeeping: its log lines, counted and partly kept.
struct Exchange {
    command: String,
    lines: usize,
    /// The last few lines, to explain a NAK.
    recent: VecDeque<String>,
    /// Lines the command's result is parsed from (see [`Exchange::keep`]).
    kept: Vec<String>,
    /// Which lines to keep in `kept`.
    keep: fn(&str) -> bool,
}

impl Exchange {
    fn new(command: &Command) -> Self {
        Exchange {
            command: command.tag().to_string(),
            lines: 0,
            recent: VecDeque::new(),
            kept: Vec::new(),
            keep: |_| false,
        }
    }

    fn keeping(mut self, keep: fn(&str) -> bool) -> Self {
        self.keep = keep;
        self
    }

    fn nak(&self) -> FirehoseError {
        let reason = if self.recent.is_empty() {
            "the device gave no reason".to_string()
        } else {
            Vec::from(self.recent.clone()).join(" | ")
        };
        FirehoseError::Nak {
            command: self.command.clone(),
            reason,
        }
    }

    fn protocol(&self, detail: String) -> FirehoseError {
        FirehoseError::Protocol {
            command: self.command.clone(),
            detail,
        }
    }
}

/// What to do with a response that arrives while draining late logs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stray {
    /// It answers nothing the host asked: the session is out of step.
    Refuse,
    /// Tolerate it: a repeated `<configure>` may be answered twice.
    Ignore,
}

impl<T: Transport> FirehoseClient<T> {
    /// Starts a session on a transport whose programmer is running (after Sahara).
    pub fn new(transport: T) -> Self {
        Self::resume(transport, &[])
    }

    /// Starts a session with bytes already received, e.g. the `pending` of
    /// [`SaharaOutcome::AlreadyInFirehose`](crate::protocol::sahara::SaharaOutcome).
    pub fn resume(transport: T, pending: &[u8]) -> Self {
        FirehoseClient {
            transport,
            reader: DocReader::with_pending(pending),
            timeouts: FirehoseTimeouts::default(),
            on_log: None,
            config: None,
            chunk: Vec::new(),
            out_of_step: None,
        }
    }

    /// Sets the per-wait limits.
    pub fn set_timeouts(&mut self, timeouts: FirehoseTimeouts) {
        self.timeouts = timeouts;
    }

    /// Routes the device's `<log>` lines to `callback` (they are also logged at debug level).
    pub fn on_log(&mut self, callback: LogCallback) {
        self.on_log = Some(callback);
    }

    /// What `configure` settled, once it has succeeded.
    pub fn config(&self) -> Option<&DeviceConfig> {
        self.config.as_ref()
    }

    /// The underlying transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Ends the session and returns the transport.
    pub fn into_transport(self) -> T {
        self.transport
    }

    /// Configures the programmer for `memory` (`emmc`, `ufs`, …) and negotiates the largest
    /// write, starting from `requested_payload`.
    ///
    /// While the programmer is still booting (nothing at all comes back), the command is
    /// re-sent for up to [`FirehoseTimeouts::configure_boot`]. If the device accepts a
    /// smaller size (ACK with `MaxPayloadSizeToTargetInBytesSupported`) or demands one (NAK
    /// with `MaxPayloadSizeToTargetInBytes`), configure is sent once more with it and must
    /// be ACKed. The negotiated size never exceeds `requested_payload`.
    pub fn configure(
        &mut self,
        memory: &str,
        requested_payload: u32,
    ) -> Result<DeviceConfig, FirehoseError> {
        let command = |payload| {
            Command::Configure(Configure {
                memory_name: memory.to_string(),
                max_payload_to_target: payload,
                verbose: false,
                zlp_aware_host: true,
                skip_storage_init: false,
            })
        };
        if requested_payload == 0 {
            return Err(FirehoseError::InvalidRequest {
                command: "configure".into(),
                reason: "the requested payload size is 0".into(),
            });
        }
        let first = command(requested_payload);
        self.guarded(&first, |client| {
            let mut exchange = Exchange::new(&first);
            // Startup chatter of a freshly booted programmer is not an answer.
            client.drain(&mut exchange, Stray::Ignore)?;
            let Some(response) = client.configure_while_booting(&first, &mut exchange)? else {
                // Some programmers log their way through configure and never send a
                // <response> (public reports: notes/real-devices.md, "configure"; the log
                // of bkerler/edl issue #230 says only "Host's payload to target size is too
                // large", naming no size). Going on with a small payload is what most
                // likely works; a programmer that is not configured after all NAKs the
                // first storage command with its reason.
                tracing::info!("configure: the programmer answered with logs only");
                let config = DeviceConfig {
                    max_payload_to_target: requested_payload.min(LOGS_ONLY_PAYLOAD),
                    max_payload_from_target: None,
                    max_xml_size: None,
                    memory_name: None,
                    target_name: None,
                    version: None,
                    answered: false,
                };
                client.config = Some(config.clone());
                return Ok(config);
            };
            let (response, payload) = match renegotiation(&exchange, &response, requested_payload)?
            {
                None => (response, requested_payload),
                Some(payload) => {
                    tracing::debug!(payload, "configure: renegotiating the payload size");
                    client.drain(&mut exchange, Stray::Ignore)?;
                    client.send(&command(payload))?;
                    let response =
                        client.await_response(&mut exchange, client.timeouts.response)?;
                    if !response.ack {
                        return Err(exchange.nak());
                    }
                    (response, payload)
                }
            };
            client.drain(&mut exchange, Stray::Ignore)?;
            let number = |name: &str| attribute_number(&exchange, &response, name);
            let text = |name: &str| response.get(name).map(str::to_string);
            let config = DeviceConfig {
                max_payload_to_target: payload,
                max_payload_from_target: number("MaxPayloadSizeFromTargetInBytes")?,
                max_xml_size: number("MaxXMLSizeInBytes")?,
                memory_name: text("MemoryName"),
                target_name: text("TargetName"),
                version: text("Version"),
                answered: true,
            };
            tracing::info!(?config, "Firehose configured");
            client.config = Some(config.clone());
            Ok(config)
        })
    }

    /// Sends `configure` until the programmer answers at all, within the boot window.
    /// `None`: it logged, but no `<response>` came within the response timeout.
    fn configure_while_booting(
        &mut self,
        command: &Command,
        exchange: &mut Exchange,
    ) -> Result<Option<Response>, FirehoseError> {
        let boot_deadline = Instant::now() + self.timeouts.configure_boot;
        loop {
            match self.send(command) {
                Err(FirehoseError::Transport(TransportError::Timeout(_)))
                    if Instant::now() < boot_deadline =>
                {
                    continue
                }
                other => other?,
            }
            let attempt = CONFIGURE_ATTEMPT.min(self.timeouts.response);
            match self.await_response(exchange, attempt) {
                Err(FirehoseError::Transport(TransportError::Timeout(_))) => {}
                other => return other.map(Some),
            }
            if exchange.lines > 0 || !self.reader.buffered().is_empty() {
                // The programmer is up and working on it (e.g. initialising storage).
                return match self.await_response(exchange, self.timeouts.response) {
                    Err(FirehoseError::Transport(TransportError::Timeout(_)))
                        if exchange.lines > 0 && self.reader.buffered().is_empty() =>
                    {
                        Ok(None)
                    }
                    other => other.map(Some),
                };
            }
            if Instant::now() >= boot_deadline {
                return Err(TransportError::Timeout(self.timeouts.configure_boot).into());
            }
            tracing::debug!("no answer to configure yet; the programmer may be booting");
        }
    }

    /// Writes `range` from `data`, which must supply exactly `range.byte_len()` bytes
    /// (zero padding included). The bytes go out in writes of at most the negotiated
    /// payload; `progress` receives the total sent.
    ///
    /// Storage commits as it receives, and a device in a data phase takes every byte for
    /// data: when `data` fails or ends early, the rest of the range is sent as zeros so the
    /// command ends as the device expects, and the session stays usable for what comes
    /// next (a `reset_to_edl`, another try) instead of being left mid-command
    /// ([`FirehoseError::SourceStopped`]).
    pub fn program(
        &mut self,
        range: &SectorRange,
        data: &mut dyn Read,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), FirehoseError> {
        let command = Command::Program(*range);
        let total = self.check_transfer(&command, range)?;
        let chunk_len = self.chunk_len(range.sector_size, |c| c.max_payload_to_target)?;
        self.guarded(&command, |client| {
            let mut exchange = Exchange::new(&command);
            client.send(&command)?;
            client.expect_rawmode(&mut exchange)?;
            let mut sent = 0u64;
            let mut stopped: Option<(u64, String)> = None;
            while sent < total {
                let n = chunk_len.min(usize::try_from(total - sent).unwrap_or(usize::MAX));
                let chunk = &mut client.chunk[..n];
                if stopped.is_none() {
                    let (got, cause) = match fill_from(data, chunk) {
                        Ok(got) if got == n => (got, None),
                        Ok(got) => (got, Some("the source ended early".to_string())),
                        Err(e) => (0, Some(e.to_string())),
                    };
                    if let Some(cause) = cause {
                        tracing::debug!(%cause, "program: padding the rest of the range");
                        chunk[got..].fill(0);
                        stopped = Some((sent + got as u64, cause));
                    }
                } else {
                    chunk.fill(0);
                }
                if let Err(e) = client.transport.write(chunk, client.timeouts.data) {
                    return Err(client.reason_for_failed_write(&mut exchange, e));
                }
                sent += n as u64;
                if stopped.is_none() {
                    progress(sent);
                }
            }
            client.finish(&mut exchange)?;
            match stopped {
                None => Ok(()),
                Some((supplied, cause)) => Err(FirehoseError::SourceStopped {
                    expected: total,
                    supplied,
                    cause,
                }),
            }
        })
    }

    /// Reads `range` into `out`; `progress` receives the total received.
    pub fn read(
        &mut self,
        range: &SectorRange,
        out: &mut dyn Write,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), FirehoseError> {
        let command = Command::Read(*range);
        let total = self.check_transfer(&command, range)?;
        // A USB device sends transfers of up to its announced size; the buffer must hold one.
        let chunk_len = self.chunk_len(1, |c| {
            c.max_payload_from_target
                .unwrap_or(0)
                .max(DEFAULT_READ_CHUNK as u32)
        })?;
        self.guarded(&command, |client| {
            let mut exchange = Exchange::new(&command);
            client.send(&command)?;
            client.expect_rawmode(&mut exchange)?;
            let mut received = 0u64;
            while received < total {
                let want = chunk_len.min(usize::try_from(total - received).unwrap_or(usize::MAX));
                let n = client.reader.read_raw(
                    &mut client.transport,
                    &mut client.chunk[..want],
                    client.timeouts.data,
                )?;
                out.write_all(&client.chunk[..n])
                    .map_err(FirehoseError::Sink)?;
                received += n as u64;
                progress(received);
            }
            client.finish(&mut exchange)
        })
    }

    /// Erases `range`.
    pub fn erase(&mut self, range: &SectorRange) -> Result<(), FirehoseError> {
        let command = Command::Erase(*range);
        self.simple(&command, self.timeouts.finish).map(drop)
    }

    /// Applies one `DISK` patch.
    pub fn patch(&mut self, patch: &Patch) -> Result<(), FirehoseError> {
        if !(1..=8).contains(&patch.size_in_bytes) {
            return Err(FirehoseError::InvalidRequest {
                command: "patch".into(),
                reason: format!("size_in_bytes {} is not 1 to 8", patch.size_in_bytes),
            });
        }
        self.simple(&Command::Patch(*patch), self.timeouts.response)
            .map(drop)
    }

    /// The SHA-256 of `range` as the device computes it. The digest may come in a log line
    /// (`Digest <64 hex>`) or as a response attribute; both are accepted.
    pub fn sha256_digest(&mut self, range: &SectorRange) -> Result<[u8; 32], FirehoseError> {
        let command = Command::GetSha256Digest(*range);
        self.guarded(&command, |client| {
            let mut exchange = Exchange::new(&command)
                .keeping(|line| line.to_ascii_lowercase().contains("digest"));
            client.send(&command)?;
            let response = client.await_response(&mut exchange, client.timeouts.finish)?;
            if !response.ack {
                return Err(exchange.nak());
            }
            client.drain(&mut exchange, Stray::Refuse)?;
            let from_attribute = response
                .attributes
                .iter()
                .filter(|(k, _)| k.to_ascii_lowercase().contains("digest"))
                .find_map(|(_, v)| find_digest(v));
            from_attribute
                .or_else(|| exchange.kept.iter().find_map(|line| find_digest(line)))
                .ok_or_else(|| exchange.protocol("the ACK came without a SHA-256 digest".into()))
        })
    }

    /// The geometry of physical partition `lun`, parsed from the JSON the device logs.
    pub fn storage_info(&mut self, lun: u32) -> Result<StorageInfo, FirehoseError> {
        let command = Command::GetStorageInfo { lun };
        self.guarded(&command, |client| {
            let mut exchange =
                Exchange::new(&command).keeping(|line| line.contains("total_blocks"));
            client.send(&command)?;
            let response = client.await_response(&mut exchange, client.timeouts.response)?;
            if !response.ack {
                return Err(exchange.nak());
            }
            client.drain(&mut exchange, Stray::Refuse)?;
            exchange
                .kept
                .iter()
                .find_map(|line| parse_storage_info(line))
                .ok_or_else(|| {
                    exchange
                        .protocol("no log line with total_blocks and a non-zero block_size".into())
                })
        })
    }

    /// Reboots the device. It disconnects afterwards, so a lost link after the ACK is fine.
    pub fn power_reset(&mut self) -> Result<(), FirehoseError> {
        self.power(PowerAction::Reset)
    }

    /// Makes `lun` the one the boot ROM boots from (`<setbootablestoragedrive>`).
    pub fn set_bootable_storage_drive(&mut self, lun: u32) -> Result<(), FirehoseError> {
        self.simple(
            &Command::SetBootableStorageDrive { lun },
            self.timeouts.response,
        )
        .map(drop)
    }

    /// The last word to a device the host gives up on: sends `<power>` even when the
    /// session is out of step (after garbage or a timeout nothing it says can be trusted,
    /// but it may still obey a reset) and waits briefly for its ACK. A device that was
    /// mid-transfer takes the command as data of the range being written, which the failed
    /// job left incomplete anyway.
    pub fn abandon(&mut self, action: PowerAction) -> Result<(), FirehoseError> {
        let command = Command::Power {
            action,
            delay_seconds: None,
        };
        self.out_of_step = Some("the session was abandoned".into());
        self.send(&command)?;
        let mut exchange = Exchange::new(&command);
        let response =
            self.await_response(&mut exchange, self.timeouts.response.min(ABANDON_WAIT))?;
        if response.ack {
            Ok(())
        } else {
            Err(exchange.nak())
        }
    }

    /// Reboots, powers off, or goes back to EDL, as `action` says. The device disconnects
    /// afterwards, so a lost link after the ACK is fine.
    pub fn power(&mut self, action: PowerAction) -> Result<(), FirehoseError> {
        let command = Command::Power {
            action,
            delay_seconds: None,
        };
        self.guarded(&command, |client| {
            let mut exchange = Exchange::new(&command);
            client.send(&command)?;
            let response = client.await_response(&mut exchange, client.timeouts.response)?;
            if !response.ack {
                return Err(exchange.nak());
            }
            match client.drain(&mut exchange, Stray::Refuse) {
                Err(FirehoseError::Transport(TransportError::Disconnected)) | Ok(()) => Ok(()),
                Err(e) => Err(e),
            }
        })
    }

    /// Checks that the programmer answers.
    pub fn nop(&mut self) -> Result<(), FirehoseError> {
        self.simple(&Command::Nop, self.timeouts.response).map(drop)
    }

    /// A command whose only useful answer is an ACK.
    fn simple(&mut self, command: &Command, timeout: Duration) -> Result<Response, FirehoseError> {
        self.guarded(command, |client| {
            let mut exchange = Exchange::new(command);
            client.send(command)?;
            let response = client.await_response(&mut exchange, timeout)?;
            if !response.ack {
                return Err(exchange.nak());
            }
            client.drain(&mut exchange, Stray::Refuse)?;
            Ok(response)
        })
    }

    /// Runs `body` unless the session is out of step, and marks it out of step after an
    /// error that may leave the device mid-command.
    fn guarded<R>(
        &mut self,
        command: &Command,
        body: impl FnOnce(&mut Self) -> Result<R, FirehoseError>,
    ) -> Result<R, FirehoseError> {
        if let Some(cause) = &self.out_of_step {
            return Err(FirehoseError::OutOfStep {
                command: command.tag().to_string(),
                cause: cause.clone(),
            });
        }
        let result = body(self);
        if let Err(e) = &result {
            if !matches!(
                e,
                FirehoseError::Nak { .. }
                    | FirehoseError::InvalidRequest { .. }
                    | FirehoseError::NotConfigured(_)
                    | FirehoseError::SourceStopped { .. }
            ) {
                self.out_of_step = Some(e.to_string());
            }
        }
        result
    }

    fn send(&mut self, command: &Command) -> Result<(), FirehoseError> {
        let xml = command.to_xml();
        tracing::debug!(xml, "Firehose command");
        self.transport
            .write(xml.as_bytes(), self.timeouts.response)?;
        Ok(())
    }

    /// Validates a data command before anything is sent and returns its byte count.
    fn check_transfer(&self, command: &Command, range: &SectorRange) -> Result<u64, FirehoseError> {
        let invalid = |reason: String| FirehoseError::InvalidRequest {
            command: command.tag().to_string(),
            reason,
        };
        if self.config.is_none() {
            return Err(FirehoseError::NotConfigured(command.tag().to_string()));
        }
        if range.sector_size == 0 || range.num_sectors == 0 {
            return Err(invalid(format!(
                "{} sectors of {} bytes is nothing to transfer",
                range.num_sectors, range.sector_size
            )));
        }
        range
            .byte_len()
            .ok_or_else(|| invalid("the byte count overflows".into()))
    }

    /// Sizes the data buffer: `payload` of the configuration, capped at [`MAX_CHUNK`] and
    /// rounded down to whole sectors where it holds at least one.
    fn chunk_len(
        &mut self,
        sector_size: u32,
        payload: impl Fn(&DeviceConfig) -> u32,
    ) -> Result<usize, FirehoseError> {
        let config = self
            .config
            .as_ref()
            .ok_or_else(|| FirehoseError::NotConfigured("data transfer".into()))?;
        let payload = (payload(config) as usize).clamp(1, MAX_CHUNK);
        let sector = sector_size as usize;
        let len = if payload >= sector {
            payload - payload % sector
        } else {
            payload
        };
        if self.chunk.len() < len {
            self.chunk.resize(len, 0);
        }
        Ok(len)
    }

    /// Waits for the ACK with `rawmode="true"` that opens a data phase.
    fn expect_rawmode(&mut self, exchange: &mut Exchange) -> Result<(), FirehoseError> {
        let response = self.await_response(exchange, self.timeouts.response)?;
        if !response.ack {
            return Err(exchange.nak());
        }
        if !response.rawmode() {
            return Err(exchange.protocol("ACK without rawmode=\"true\" before the data".into()));
        }
        Ok(())
    }

    /// Waits for the final ACK after a data phase and drains the logs behind it.
    fn finish(&mut self, exchange: &mut Exchange) -> Result<(), FirehoseError> {
        let response = self.await_response(exchange, self.timeouts.finish)?;
        if !response.ack {
            return Err(exchange.nak());
        }
        self.drain(exchange, Stray::Refuse)
    }

    /// After a failed data write, the device has often said why; a NAK explains more than
    /// a broken pipe. A disconnect is reported as is.
    fn reason_for_failed_write(
        &mut self,
        exchange: &mut Exchange,
        e: TransportError,
    ) -> FirehoseError {
        if matches!(e, TransportError::Disconnected) {
            return e.into();
        }
        match self.await_response(exchange, NAK_GRACE) {
            Ok(response) if !response.ack => exchange.nak(),
            _ => e.into(),
        }
    }

    /// Reads documents until one carries a response, handling the logs before it. Running
    /// out of time is reported with the whole `timeout`, however much of it a read had left.
    fn await_response(
        &mut self,
        exchange: &mut Exchange,
        timeout: Duration,
    ) -> Result<Response, FirehoseError> {
        let deadline = Instant::now() + timeout;
        let timed_out = || FirehoseError::Transport(TransportError::Timeout(timeout));
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(timed_out());
            }
            let doc = match self.next_doc(exchange, left) {
                Err(FirehoseError::Transport(TransportError::Timeout(_))) => {
                    return Err(timed_out())
                }
                other => other?,
            };
            if let Some(response) = doc.response {
                tracing::debug!(command = exchange.command, ?response, "Firehose response");
                return Ok(response);
            }
        }
    }

    /// Reads late logs until [`LOG_SILENCE`] passes without any (at most [`MAX_DRAIN`]).
    fn drain(&mut self, exchange: &mut Exchange, stray: Stray) -> Result<(), FirehoseError> {
        let deadline = Instant::now() + MAX_DRAIN;
        while Instant::now() < deadline {
            match self.next_doc(exchange, LOG_SILENCE) {
                Ok(DeviceDoc {
                    response: Some(response),
                    ..
                }) => {
                    if stray == Stray::Refuse {
                        return Err(exchange.protocol(format!(
                            "a second response after the answer: {response:?}"
                        )));
                    }
                    tracing::debug!(?response, "ignoring a repeated answer");
                }
                Ok(_) => {}
                Err(FirehoseError::Transport(TransportError::Timeout(_))) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        tracing::debug!(
            command = exchange.command,
            "the device is still logging; going on"
        );
        Ok(())
    }

    /// Reads one document and passes its logs on, enforcing the per-command log cap.
    fn next_doc(
        &mut self,
        exchange: &mut Exchange,
        timeout: Duration,
    ) -> Result<DeviceDoc, FirehoseError> {
        let text = self.reader.next_document(&mut self.transport, timeout)?;
        let doc = DeviceDoc::parse(&text)?;
        for line in &doc.logs {
            exchange.lines += 1;
            if exchange.lines > MAX_LOG_LINES {
                return Err(FirehoseError::LogFlood {
                    command: exchange.command.clone(),
                    limit: MAX_LOG_LINES,
                });
            }
            tracing::debug!(command = exchange.command, "(firehose) {line}");
            if let Some(callback) = &mut self.on_log {
                callback(line);
            }
            if exchange.recent.len() == REASON_LINES {
                exchange.recent.pop_front();
            }
            exchange.recent.push_back(line.clone());
            if (exchange.keep)(line) && exchange.kept.len() < REASON_LINES {
                exchange.kept.push(line.clone());
            }
        }
        Ok(doc)
    }
}

/// The payload size to re-send `configure` with, if the response calls for one.
fn renegotiation(
    exchange: &Exchange,
    response: &Response,
    asked: u32,
) -> Result<Option<u32>, FirehoseError> {
    let name = if response.ack {
        "MaxPayloadSizeToTargetInBytesSupported"
    } else {
        "MaxPayloadSizeToTargetInBytes"
    };
    match attribute_number(exchange, response, name)? {
        Some(offer) if offer > 0 && offer < asked => Ok(Some(offer)),
        _ if response.ack => Ok(None),
        _ => Err(exchange.nak()),
    }
}

/// A numeric response attribute; present but not a number is a protocol error.
fn attribute_number(
    exchange: &Exchange,
    response: &Response,
    name: &str,
) -> Result<Option<u32>, FirehoseError> {
    response
        .get(name)
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|_| exchange.protocol(format!("{name}={v:?} is not a number")))
        })
        .transpose()
}

/// Reads into `buf` until it is full or `data` ends; returns the bytes read.
fn fill_from(data: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match data.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The 64 hex digits that follow `digest` (any case, optional `0x`) in `text`.
fn find_digest(text: &str) -> Option<[u8; 32]> {
    let lower = text.to_ascii_lowercase();
    let after = lower.find("digest").map_or(lower.as_str(), |i| &lower[i..]);
    after
        .split(|c: char| !c.is_ascii_hexdigit())
        .find_map(|word| {
            let word = word.strip_prefix("0x").unwrap_or(word);
            let mut digest = [0u8; 32];
            (word.len() == 64 && hex::decode_to_slice(word, &mut digest).is_ok()).then_some(digest)
        })
}

/// Reads the numbers of a `{"storage_info": {"total_blocks": …, "block_size": …}}` log line
/// with a small scanner (the line is not trusted to be valid JSON).
fn parse_storage_info(line: &str) -> Option<StorageInfo> {
    let total_blocks = json_value(line, "total_blocks")?.parse().ok()?;
    let block_size = json_value(line, "block_size")?
        .parse()
        .ok()
        .filter(|&b| b > 0)?;
    let number = |key| json_value(line, key).and_then(|v| v.parse().ok());
    let text = |key| json_value(line, key).map(str::to_string);
    Some(StorageInfo {
        total_blocks,
        block_size,
        page_size: number("page_size"),
        num_physical: number("num_physical"),
        mem_type: text("mem_type"),
        prod_name: text("prod_name"),
        fw_version: text("fw_version"),
    })
}

/// The value after `"key":` in `text`: a quoted string's content, or a bare token.
fn json_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let quoted = format!("\"{key}\"");
    let rest = text[text.find(&quoted)? + quoted.len()..].trim_start();
    let rest = rest.strip_prefix(':')?.trim_start();
    if let Some(string) = rest.strip_prefix('"') {
        return string.split('"').next();
    }
    let end = rest
        .find(|c: char| c == ',' || c == '}' || c.is_whitespace())
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    /// One step of a scripted exchange.
    #[derive(Debug)]
    enum Step {
        /// The host must send this command.
        Host(Command),
        /// The host must write this many data-phase bytes, in any number of writes.
        HostData(usize),
        /// The device sends these bytes (they become readable once the steps before are done).
        Device(Vec<u8>),
        /// The link drops: reads and writes fail from here on.
        Disconnect,
    }
    use Step::{Device, Disconnect, Host, HostData};

    /// An in-memory device that follows a script, delivering its bytes in reads of at most
    /// `split` bytes, and fails the test on any deviation.
    struct Scripted {
        steps: VecDeque<Step>,
        readable: VecDeque<u8>,
        split: usize,
        data: Vec<u8>,
        writes: Vec<usize>,
    }

    impl Scripted {
        fn new(steps: Vec<Step>) -> Self {
            Scripted {
                steps: steps.into(),
                readable: VecDeque::new(),
                split: usize::MAX,
                data: Vec::new(),
                writes: Vec::new(),
            }
        }

        fn release(&mut self) {
            while let Some(Device(_)) = self.steps.front() {
                if let Some(Device(bytes)) = self.steps.pop_front() {
                    self.readable.extend(bytes);
                }
            }
        }

        fn finished(&self) -> bool {
            self.steps.is_empty() && self.readable.is_empty()
        }
    }

    impl Transport for Scripted {
        fn write(&mut self, data: &[u8], _: Duration) -> Result<(), TransportError> {
            self.release();
            match self.steps.front_mut() {
                Some(Host(expected)) => {
                    let sent = Command::parse(std::str::from_utf8(data).unwrap()).unwrap();
                    assert_eq!(&sent, expected);
                    self.steps.pop_front();
                }
                Some(HostData(left)) => {
                    assert!(data.len() <= *left, "host wrote past the data phase");
                    *left -= data.len();
                    self.data.extend_from_slice(data);
                    self.writes.push(data.len());
                    if *left == 0 {
                        self.steps.pop_front();
                    }
                }
                Some(Disconnect) => return Err(TransportError::Disconnected),
                other => panic!(
                    "host wrote {} bytes while the script has {other:?}",
                    data.len()
                ),
            }
            self.release();
            Ok(())
        }

        fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
            self.release();
            if self.readable.is_empty() {
                return Err(match self.steps.front() {
                    Some(Disconnect) => TransportError::Disconnected,
                    _ => TransportError::Timeout(timeout),
                });
            }
            let n = self.readable.len().min(buf.len()).min(self.split);
            for (slot, byte) in buf.iter_mut().zip(self.readable.drain(..n)) {
                *slot = byte;
            }
            Ok(n)
        }

        fn address(&self) -> &str {
            "scripted"
        }
    }

    fn doc(doc: DeviceDoc) -> Step {
        Device(doc.encode().into_bytes())
    }

    fn log(text: &str) -> Step {
        doc(DeviceDoc::log(text))
    }

    fn ack() -> Step {
        doc(DeviceDoc::response(Response::ack()))
    }

    fn nak() -> Step {
        doc(DeviceDoc::response(Response::nak()))
    }

    fn configure(payload: u32) -> Step {
        Host(Command::Configure(Configure {
            memory_name: "ufs".into(),
            max_payload_to_target: payload,
            verbose: false,
            zlp_aware_host: true,
            skip_storage_init: false,
        }))
    }

    fn configured(steps: Vec<Step>) -> FirehoseClient<Scripted> {
        let mut script = vec![
            configure(4096),
            doc(DeviceDoc::response(
                Response::ack().with("MaxPayloadSizeToTargetInBytesSupported", 4096),
            )),
        ];
        script.extend(steps);
        let mut client = FirehoseClient::new(Scripted::new(script));
        client.configure("ufs", 4096).unwrap();
        client
    }

    fn range(num_sectors: u64) -> SectorRange {
        SectorRange {
            lun: 0,
            start_sector: 34,
            sector_size: 512,
            num_sectors,
        }
    }

    #[test]
    fn configure_takes_the_supported_size_from_an_ack() {
        let mut client = FirehoseClient::new(Scripted::new(vec![
            log("firehose booted"),
            configure(1 << 20),
            doc(DeviceDoc {
                logs: vec!["Calling storage init".into()],
                response: Some(
                    Response::ack()
                        .with("MaxPayloadSizeToTargetInBytes", 1 << 20)
                        .with("MaxPayloadSizeToTargetInBytesSupported", 65536),
                ),
            }),
            configure(65536),
            doc(DeviceDoc::response(
                Response::ack()
                    .with("MaxPayloadSizeToTargetInBytesSupported", 65536)
                    .with("MaxPayloadSizeFromTargetInBytes", 8192)
                    .with("MaxXMLSizeInBytes", 4096)
                    .with("MemoryName", "UFS")
                    .with("TargetName", "8250")
                    .with("Version", "1"),
            )),
        ]));
        let config = client.configure("ufs", 1 << 20).unwrap();
        assert_eq!(
            config,
            DeviceConfig {
                max_payload_to_target: 65536,
                max_payload_from_target: Some(8192),
                max_xml_size: Some(4096),
                memory_name: Some("UFS".into()),
                target_name: Some("8250".into()),
                version: Some("1".into()),
                answered: true,
            }
        );
        assert!(client.transport().finished());
    }

    #[test]
    fn configure_follows_a_nak_with_the_demanded_size() {
        let mut client = FirehoseClient::new(Scripted::new(vec![
            configure(1 << 20),
            doc(DeviceDoc::response(
                Response::nak().with("MaxPayloadSizeToTargetInBytes", 16384),
            )),
            configure(16384),
            ack(),
        ]));
        assert_eq!(
            client
                .configure("ufs", 1 << 20)
                .unwrap()
                .max_payload_to_target,
            16384
        );
        // A NAK without a size to retry with is a refusal with the logged reason.
        let mut client = FirehoseClient::new(Scripted::new(vec![
            configure(4096),
            log("Not support configure MemoryName eMMC"),
            nak(),
        ]));
        let e = client.configure("ufs", 4096).unwrap_err();
        assert_eq!(
            e.to_string(),
            "<configure> refused by the device (NAK): Not support configure MemoryName eMMC"
        );
    }

    #[test]
    fn program_streams_exactly_the_range_in_payload_sized_writes() {
        let payload: Vec<u8> = (0..9 * 512).map(|i| (i % 253) as u8).collect();
        for split in [1, 13, usize::MAX] {
            let mut client = configured(vec![
                Host(Command::Program(range(9))),
                doc(DeviceDoc::response(Response::ack().with("rawmode", "true"))),
                HostData(9 * 512),
                log("Finished programming"),
                ack(),
                log("late log after the ACK"),
                Host(Command::Nop),
                nak(),
            ]);
            client.transport.split = split;
            let mut last = 0;
            client
                .program(&range(9), &mut &payload[..], &mut |n| last = n)
                .unwrap();
            // The late log was drained with <program>; it is not the reason for this NAK.
            assert_eq!(
                client.nop().unwrap_err().to_string(),
                "<nop> refused by the device (NAK): the device gave no reason"
            );
            let device = client.into_transport();
            assert!(device.finished());
            assert_eq!(device.data, payload);
            assert_eq!(device.writes, [4096, 512]);
            assert_eq!(last, 9 * 512);
        }
    }

    #[test]
    fn program_pads_short_data_and_nak_reasons_are_logged() {
        let mut client = configured(vec![
            Host(Command::Program(range(2))),
            doc(DeviceDoc::response(Response::ack().with("rawmode", "true"))),
            HostData(1024),
            ack(),
            Host(Command::Nop),
            ack(),
        ]);
        let e = client
            .program(&range(2), &mut &[7u8; 1000][..], &mut |_| {})
            .unwrap_err();
        assert!(
            matches!(
                e,
                FirehoseError::SourceStopped {
                    expected: 1024,
                    supplied: 1000,
                    ..
                }
            ),
            "{e}"
        );
        // The range was finished with zeros, so the session goes on.
        client.nop().unwrap();
        let device = client.into_transport();
        assert_eq!(&device.data[..1000], &[7u8; 1000][..]);
        assert!(device.data[1000..].iter().all(|&b| b == 0));

        let mut client = configured(vec![
            Host(Command::Program(range(2))),
            doc(DeviceDoc {
                logs: vec!["ERROR: start_sector beyond the LUN".into()],
                response: Some(Response::nak()),
            }),
            Host(Command::Nop),
            ack(),
        ]);
        let e = client
            .program(&range(2), &mut &[0u8; 1024][..], &mut |_| {})
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "<program> refused by the device (NAK): ERROR: start_sector beyond the LUN"
        );
        // A NAK leaves the session usable.
        client.nop().unwrap();
    }

    #[test]
    fn read_takes_raw_data_from_the_same_read_as_the_ack() {
        let disk: Vec<u8> = (0..4 * 512).map(|i| (i * 3 % 256) as u8).collect();
        for split in [1, 100, usize::MAX] {
            let mut burst = DeviceDoc::response(Response::ack().with("rawmode", "true"))
                .encode()
                .into_bytes();
            burst.extend_from_slice(&disk);
            burst.extend(DeviceDoc::response(Response::ack()).encode().into_bytes());
            let mut client = configured(vec![Host(Command::Read(range(4))), Device(burst)]);
            client.transport.split = split;
            let mut out = Vec::new();
            client.read(&range(4), &mut out, &mut |_| {}).unwrap();
            assert_eq!(out, disk);
            assert!(client.transport().finished());
        }
    }

    #[test]
    fn digest_and_storage_info_come_from_logs_or_attributes() {
        let digest = "ab".repeat(32);
        let mut client = configured(vec![
            Host(Command::GetSha256Digest(range(8))),
            log(&format!("Digest {digest}")),
            ack(),
            Host(Command::GetSha256Digest(range(8))),
            doc(DeviceDoc::response(
                Response::ack().with("Digest", "cd".repeat(32)),
            )),
            Host(Command::GetStorageInfo { lun: 1 }),
            log(
                r#"INFO: {"storage_info": {"total_blocks":1000, "block_size":4096, "page_size":4096, "num_physical":6, "manufacturer_id":462, "serial_num":1234, "fw_version":"0300","mem_type":"UFS","prod_name":"KM8V8001JM-B813"}}"#,
            ),
            ack(),
        ]);
        assert_eq!(client.sha256_digest(&range(8)).unwrap(), [0xab; 32]);
        assert_eq!(client.sha256_digest(&range(8)).unwrap(), [0xcd; 32]);
        assert_eq!(
            client.storage_info(1).unwrap(),
            StorageInfo {
                total_blocks: 1000,
                block_size: 4096,
                page_size: Some(4096),
                num_physical: Some(6),
                mem_type: Some("UFS".into()),
                prod_name: Some("KM8V8001JM-B813".into()),
                fw_version: Some("0300".into()),
            }
        );
    }

    #[test]
    fn logs_reach_the_callback_and_floods_are_capped() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut client = configured(vec![Host(Command::Nop), log("one"), ack(), log("two")]);
        let sink = seen.clone();
        client.on_log(Box::new(move |line| {
            sink.lock().unwrap().push(line.to_string())
        }));
        client.nop().unwrap();
        assert_eq!(*seen.lock().unwrap(), ["one", "two"]);

        let flood = DeviceDoc {
            logs: vec!["x".into(); 1000],
            response: None,
        };
        let mut steps = vec![Host(Command::Nop)];
        steps.extend((0..11).map(|_| doc(flood.clone())));
        let mut client = configured(steps);
        let e = client.nop().unwrap_err();
        assert_eq!(
            e.to_string(),
            "<nop>: the device sent more than 10000 log lines without finishing"
        );
    }

    #[test]
    fn an_unterminated_document_is_capped() {
        let mut endless = b"<?xml version=\"1.0\" ?><data><log value=\"".to_vec();
        endless.resize(super::super::MAX_DOCUMENT_LEN + 10, b'a');
        let mut client = configured(vec![Host(Command::Nop), Device(endless)]);
        assert!(matches!(
            client.nop(),
            Err(FirehoseError::DocumentTooLarge { .. })
        ));
    }

    #[test]
    fn a_disconnect_mid_transfer_is_reported() {
        let mut client = configured(vec![
            Host(Command::Program(range(16))),
            doc(DeviceDoc::response(Response::ack().with("rawmode", "true"))),
            HostData(4096),
            Disconnect,
        ]);
        let e = client
            .program(&range(16), &mut &[0u8; 16 * 512][..], &mut |_| {})
            .unwrap_err();
        assert!(
            matches!(e, FirehoseError::Transport(TransportError::Disconnected)),
            "{e}"
        );

        let mut client = configured(vec![
            Host(Command::Read(range(16))),
            doc(DeviceDoc::response(Response::ack().with("rawmode", "true"))),
            Device(vec![0; 1000]),
            Disconnect,
        ]);
        let e = client
            .read(&range(16), &mut Vec::new(), &mut |_| {})
            .unwrap_err();
        assert!(
            matches!(e, FirehoseError::Transport(TransportError::Disconnected)),
            "{e}"
        );
    }

    #[test]
    fn a_second_response_is_out_of_step_and_power_reset_tolerates_the_drop() {
        let mut client = configured(vec![Host(Command::Nop), ack(), ack()]);
        assert!(matches!(client.nop(), Err(FirehoseError::Protocol { .. })));

        let mut client = configured(vec![
            Host(Command::Power {
                action: PowerAction::Reset,
                delay_seconds: None,
            }),
            ack(),
            Disconnect,
        ]);
        client.power_reset().unwrap();
    }

    #[test]
    fn data_commands_need_configure_and_a_sane_range() {
        let mut client = FirehoseClient::new(Scripted::new(vec![]));
        assert!(matches!(
            client.read(&range(1), &mut Vec::new(), &mut |_| {}),
            Err(FirehoseError::NotConfigured(_))
        ));
        let mut client = configured(vec![]);
        let huge = SectorRange {
            num_sectors: u64::MAX,
            ..range(1)
        };
        assert!(matches!(
            client.program(&huge, &mut &[][..], &mut |_| {}),
            Err(FirehoseError::InvalidRequest { .. })
        ));
    }

    #[test]
    fn json_scanner_is_lenient() {
        assert_eq!(json_value(r#"{"a" : "x y", "b":12}"#, "a"), Some("x y"));
        assert_eq!(json_value(r#"{"a" : "x y", "b":12}"#, "b"), Some("12"));
        assert_eq!(json_value(r#"{"a" 1}"#, "a"), None);
        assert!(parse_storage_info(r#"{"total_blocks": 5, "block_size": 0}"#).is_none());
        assert_eq!(
            find_digest(&format!("Digest 0x{}", "0f".repeat(32))),
            Some([0x0f; 32])
        );
        assert_eq!(find_digest("Digest abc"), None);
    }
}
