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

mod configure;
mod exchange;
mod power;
mod query;
#[cfg(test)]
mod tests;
mod transfer;

/// Most `<log>` lines one command may produce, late ones included.
pub const MAX_LOG_LINES: usize = 10_000;

/// Silence that ends the drain of late logs where they may still carry something the host
/// needs: after `<configure>` (a programmer may answer it twice), and after an ACK whose
/// answer (a digest, the storage geometry) was not in the logs before it.
const LOG_SILENCE: Duration = Duration::from_millis(100);

/// Silence that ends the drain after any other response. Late logs there only inform, and
/// one that arrives after the next command went out is passed on with that command's logs.
/// Waiting [`LOG_SILENCE`] after every answer instead cost a 256 MiB EDL re-flash 28 s of
/// its 33 s (issue 16, figure 9: 282 commands, each followed by 100 ms of waiting).
const LATE_LOG_GRACE: Duration = Duration::from_millis(1);

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
}
