//! The host side of a fastboot session: one command at a time, over any [`Transport`].
//!
//! The client bounds everything a device controls: each response is at most
//! [`MAX_RESPONSE_LEN`] bytes (the transport refuses longer ones), a command may produce at
//! most [`MAX_INFO_MESSAGES`] `INFO`/`TEXT` messages, and a download sends exactly the byte
//! count both sides agreed on. After an error that may leave the device mid-command, the
//! session refuses further commands instead of pairing a late answer with the wrong
//! question.
//!
//! # How long a command may take
//!
//! * Short commands (`getvar`, `download`'s answers, `set_active`, `reboot`, `oem …`): each
//!   message must come within the silence timeout ([`DEFAULT_TIMEOUT`], `--timeout`), and
//!   the whole command within [`COMMAND_BUDGET`] times it, so a device dripping one `INFO`
//!   just inside the timeout cannot keep a command alive for long.
//! * `flash` and `erase` write storage, and LK and U-Boot stay silent while they do: they
//!   get [`write_deadline`]`(bytes)` = [`WRITE_BASE`] + one second per [`SLOW_WRITE_RATE`]
//!   bytes written (a slow eMMC), for silence and the whole command alike, and never less
//!   than the silence timeout. `--timeout` does not shorten them.
//! * A download's data phase: each [`DOWNLOAD_CHUNK`] must be taken within the silence
//!   timeout, and the whole phase within [`COMMAND_BUDGET`] times it plus one second per
//!   [`SLOW_LINK_RATE`] bytes.

use std::io;
use std::time::{Duration, Instant};

use super::vars::split_variable;
use super::{Command, Response, MAX_COMMAND_LEN, MAX_RESPONSE_LEN};
use crate::transport::{Transport, TransportError};

/// How long to wait for each device message unless told otherwise; AOSP's client uses the
/// same, and devices doing slow work keep it alive with `INFO` messages.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Most `INFO`/`TEXT` messages one command may produce (this also bounds `getvar:all`).
pub const MAX_INFO_MESSAGES: usize = 10_000;

/// A short command may take this many silence timeouts in all.
pub const COMMAND_BUDGET: u32 = 4;

/// What any `flash` or `erase` may take before a byte is counted: a bootloader may erase or
/// check a whole partition before it writes a small image.
pub const WRITE_BASE: Duration = Duration::from_secs(60);

/// Bytes per second a slow eMMC is still assumed to write (real ones write 20–40 MB/s).
pub const SLOW_WRITE_RATE: u64 = 5_000_000;

/// Bytes per second the slowest link is still assumed to carry (USB 1.1 full speed moves
/// about 1 MB/s).
pub const SLOW_LINK_RATE: u64 = 500_000;

/// How long a `flash` or `erase` that writes `bytes` may take, silence included.
pub fn write_deadline(bytes: u64) -> Duration {
    WRITE_BASE + Duration::from_secs_f64(bytes as f64 / SLOW_WRITE_RATE as f64)
}

/// Size of the transport writes a download is cut into.
pub const DOWNLOAD_CHUNK: usize = 1 << 20;

/// Why a fastboot command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum FastbootError {
    /// The bytes could not be moved (timeout, disconnect, oversized message, …).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The device answered `FAIL`.
    #[error("`{command}` failed on the device: {reason}")]
    DeviceFailed {
        /// The command as sent.
        command: String,
        /// The device's reason text.
        reason: String,
    },
    /// The device answered something the protocol does not allow at this point.
    #[error("`{command}`: protocol error: {detail}")]
    Protocol {
        /// The command as sent.
        command: String,
        /// What the device sent and why it is wrong.
        detail: String,
    },
    /// The device kept sending `INFO`/`TEXT` without ever finishing the command.
    #[error("`{command}`: the device sent more than {limit} INFO/TEXT messages without finishing")]
    InfoFlood {
        /// The command as sent.
        command: String,
        /// The cap that was hit.
        limit: usize,
    },
    /// The image source ended before the announced download size.
    #[error("download stopped after {written} of the {expected} bytes announced")]
    ShortDownload {
        /// Bytes announced with `download:`.
        expected: u32,
        /// Bytes the source produced.
        written: u64,
    },
    /// The image source produced more than the announced download size; only the announced
    /// bytes were sent.
    #[error("the image source produced more than the {expected} bytes announced for the download")]
    LongDownload {
        /// Bytes announced with `download:`.
        expected: u32,
    },
    /// Reading the image for a download failed.
    #[error("reading the image for the download failed: {0}")]
    Source(#[source] io::Error),
    /// The command cannot be sent as given; nothing was sent.
    #[error("refusing to send {command:?}: {reason}")]
    InvalidCommand {
        /// The command as requested.
        command: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The command did not finish within its overall deadline, although the device kept
    /// sending messages (see the module documentation).
    #[error(
        "`{command}`: the device did not finish within {}, although it kept sending messages",
        humantime::format_duration(Duration::from_millis(.limit.as_millis() as u64))
    )]
    Deadline {
        /// The command as sent.
        command: String,
        /// The deadline that passed.
        limit: Duration,
    },
    /// The image source failed or ended early during a download. The rest of the announced
    /// bytes went out as zeros, so the device finished the download and waits for its next
    /// command; the download must not be flashed (the driver does not).
    #[error("{cause}; the rest of the download was sent as zeros and not flashed, so the device is ready for its next command")]
    Abandoned {
        /// Why the image's bytes stopped.
        cause: Box<FastbootError>,
    },
    /// An earlier error may have left the device mid-command; reconnect to go on.
    #[error("cannot send `{command}`: the session is out of step with the device after: {cause}")]
    OutOfStep {
        /// The command that was not sent.
        command: String,
        /// The earlier error.
        cause: String,
    },
}

impl FastbootError {
    /// Whether the device may still be inside the command after this error, so that later
    /// messages cannot be trusted to belong to later commands.
    fn leaves_out_of_step(&self) -> bool {
        !matches!(
            self,
            FastbootError::DeviceFailed { .. }
                | FastbootError::LongDownload { .. }
                | FastbootError::Abandoned { .. }
                | FastbootError::InvalidCommand { .. }
                | FastbootError::OutOfStep { .. }
        )
    }
}

/// How a command ended.
enum Outcome {
    Okay(String),
    Fail(String),
    Data(u32),
}

/// How a data phase ended on the host's side.
enum Sent {
    /// Every announced byte came from the image; `overran` if the image had more.
    Whole { overran: bool },
    /// The image stopped early; the rest went out as zeros. Why it stopped.
    Padded(FastbootError),
}

/// How long the command being run may wait (see the module documentation).
#[derive(Debug, Clone, Copy)]
struct Wait {
    /// Longest silence between two messages.
    silence: Duration,
    /// When the whole command must be done.
    until: Instant,
    /// The whole command's allowance, for the error message.
    limit: Duration,
}

impl Wait {
    fn new(silence: Duration, limit: Duration) -> Self {
        Wait {
            silence,
            until: Instant::now() + limit,
            limit,
        }
    }

    /// How long the next read may wait, or the deadline error if the time is up.
    fn next(&self, command: &str) -> Result<Duration, FastbootError> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.passed(command));
        }
        Ok(self.silence.min(left))
    }

    fn passed(&self, command: &str) -> FastbootError {
        FastbootError::Deadline {
            command: command.to_string(),
            limit: self.limit,
        }
    }
}

/// Receives `INFO`/`TEXT` text from the device while a command runs.
pub type InfoCallback = Box<dyn FnMut(&str) + Send>;

/// A fastboot session with one device.
pub struct Client<T: Transport> {
    transport: T,
    timeout: Duration,
    on_info: Option<InfoCallback>,
    /// The download buffer, kept between downloads so that flashing many pieces allocates once.
    chunk: Vec<u8>,
    /// Why the session can no longer be trusted, if it cannot.
    out_of_step: Option<String>,
    /// How long the command being run may wait.
    wait: Wait,
    /// Bytes of the last completed download, which a `flash` writes.
    downloaded: u64,
}

impl<T: Transport> std::fmt::Debug for Client<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("address", &self.transport.address())
            .field("timeout", &self.timeout)
            .field("out_of_step", &self.out_of_step)
            .finish()
    }
}

impl<T: Transport> Client<T> {
    /// Starts a session on an open transport (for TCP, after its handshake).
    pub fn new(transport: T) -> Self {
        Client {
            transport,
            timeout: DEFAULT_TIMEOUT,
            on_info: None,
            chunk: Vec::new(),
            out_of_step: None,
            wait: Wait::new(DEFAULT_TIMEOUT, DEFAULT_TIMEOUT),
            downloaded: 0,
        }
    }

    /// Sets how long the device may stay silent during a short command (and during each
    /// download write); see the module documentation for `flash` and `erase`.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The wait of a short command.
    fn short_wait(&self) -> Wait {
        Wait::new(self.timeout, self.timeout * COMMAND_BUDGET)
    }

    /// The wait of a `flash` or `erase` writing `bytes`.
    fn write_wait(&self, bytes: u64) -> Wait {
        let limit = write_deadline(bytes).max(self.timeout);
        Wait::new(limit, limit)
    }

    /// The current per-message timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Routes the device's `INFO`/`TEXT` text (progress, warnings) to `callback`, e.g. to show
    /// it as `(bootloader) …`. It is also logged at debug level.
    pub fn on_info(&mut self, callback: InfoCallback) {
        self.on_info = Some(callback);
    }

    /// The underlying transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Ends the session and returns the transport.
    pub fn into_transport(self) -> T {
        self.transport
    }

    /// Reads a variable (`getvar:<name>`; arguments go after a colon, as in
    /// `partition-size:boot_a`). The value is trimmed.
    ///
    /// `FAIL` and an empty `OKAY` both mean the device does not know the variable (old
    /// bootloaders answer the latter), so both are `None`.
    pub fn getvar(&mut self, name: &str) -> Result<Option<String>, FastbootError> {
        self.run(
            Command::GetVar(name.to_string()),
            |client, command| match client.finish(command, None)? {
                Outcome::Okay(value) => {
                    let value = value.trim();
                    Ok((!value.is_empty()).then(|| value.to_string()))
                }
                Outcome::Fail(reason) => {
                    tracing::debug!(command, reason, "variable unknown to the device");
                    Ok(None)
                }
                Outcome::Data(len) => Err(unexpected_data(command, len)),
            },
        )
    }

    /// Reads every variable the device lists for `getvar:all`, in its order.
    ///
    /// Keys keep their argument (`partition-size:boot_a`); spaces around the colons are
    /// dropped, except in the parts of a split value (`name[0]`), whose text is kept as
    /// sent. Lines that are not `name:value` go to the info callback instead. Some
    /// bootloaders (Amlogic U-Boot) send the last variable in the final `OKAY` itself
    /// (`OKAYunlocked:yes`); it is listed too.
    pub fn getvar_all(&mut self) -> Result<Vec<(String, String)>, FastbootError> {
        self.run(Command::GetVar("all".into()), |client, command| {
            let mut variables = Vec::new();
            match client.finish(command, Some(&mut variables))? {
                Outcome::Okay(last) => {
                    variables.extend(split_variable(&last));
                    Ok(variables)
                }
                Outcome::Fail(reason) => Err(device_failed(command, reason)),
                Outcome::Data(len) => Err(unexpected_data(command, len)),
            }
        })
    }

    /// Makes the session usable again after an error that left it out of step (a
    /// `getvar:all` that stalled or sent garbage): whatever the device still sends for the
    /// abandoned command is read and dropped until it has been silent for `quiet`.
    ///
    /// Only for commands without a data phase, whose late answers are harmless once read.
    /// Returns whether the session is usable; it stays out of step if the link failed or the
    /// device kept talking past [`MAX_INFO_MESSAGES`] messages.
    pub fn resync(&mut self, quiet: Duration) -> bool {
        if self.out_of_step.is_none() {
            return true;
        }
        let mut buf = [0u8; MAX_RESPONSE_LEN];
        for _ in 0..=MAX_INFO_MESSAGES {
            match self.transport.read(&mut buf, quiet) {
                Ok(len) => tracing::debug!(len, "dropping a late message of an abandoned command"),
                Err(TransportError::Timeout(_)) => {
                    self.out_of_step = None;
                    return true;
                }
                Err(e) => {
                    tracing::debug!("cannot resynchronise the session: {e}");
                    return false;
                }
            }
        }
        false
    }

    /// Sends `size` bytes to the device's download buffer.
    ///
    /// `feed` writes the bytes into the [`DownloadWriter`], which sends them in
    /// [`DOWNLOAD_CHUNK`]-sized transport writes through one reusable buffer, so an image can
    /// be streamed from disk. `feed` must write exactly `size` bytes: fewer is
    /// [`FastbootError::ShortDownload`]; more is [`FastbootError::LongDownload`], and the
    /// excess is never sent.
    pub fn download(
        &mut self,
        size: u32,
        feed: impl FnOnce(&mut DownloadWriter<'_>) -> io::Result<()>,
    ) -> Result<(), FastbootError> {
        self.downloaded = 0;
        self.run(Command::Download(size), |client, command| {
            match client.finish(command, None)? {
                Outcome::Data(len) if len == size => {}
                Outcome::Data(len) => {
                    return Err(protocol(
                        command,
                        format!("the device is ready for {len} bytes, not the {size} announced"),
                    ))
                }
                Outcome::Fail(reason) => return Err(device_failed(command, reason)),
                Outcome::Okay(text) => {
                    return Err(protocol(
                        command,
                        format!("the device answered OKAY {text:?} instead of DATA"),
                    ))
                }
            }
            if client.chunk.capacity() < DOWNLOAD_CHUNK {
                client.chunk.reserve_exact(DOWNLOAD_CHUNK);
            }
            let data_limit = client.timeout * COMMAND_BUDGET
                + Duration::from_secs_f64(f64::from(size) / SLOW_LINK_RATE as f64);
            let mut writer = DownloadWriter {
                transport: &mut client.transport,
                chunk: &mut client.chunk,
                expected: size,
                written: 0,
                wait: Wait::new(client.timeout, data_limit),
                overran: false,
                failed: None,
            };
            writer.chunk.clear();
            let fed = feed(&mut writer);
            let sent = writer.finish(fed)?;
            client.wait = client.short_wait();
            match (sent, client.finish(command, None)?) {
                (Sent::Whole { overran: true }, Outcome::Okay(_)) => {
                    Err(FastbootError::LongDownload { expected: size })
                }
                (Sent::Whole { .. }, Outcome::Okay(_)) => {
                    client.downloaded = u64::from(size);
                    Ok(())
                }
                (Sent::Padded(cause), Outcome::Okay(_)) => Err(FastbootError::Abandoned {
                    cause: Box::new(cause),
                }),
                (_, Outcome::Fail(reason)) => Err(device_failed(command, reason)),
                (_, Outcome::Data(len)) => Err(unexpected_data(command, len)),
            }
        })
    }

    /// Writes the last download to `partition` (`flash:<partition>`, slot suffix included),
    /// allowing the time that writing the download's bytes takes (see [`write_deadline`]).
    pub fn flash(&mut self, partition: &str) -> Result<(), FastbootError> {
        self.flash_writing(partition, self.downloaded)
    }

    /// [`Client::flash`] of a download that writes `bytes` to storage: more than were
    /// downloaded when a sparse image expands (its FILL chunks).
    pub fn flash_writing(&mut self, partition: &str, bytes: u64) -> Result<(), FastbootError> {
        let wait = self.write_wait(bytes.max(self.downloaded));
        self.run_with(
            Command::Flash(partition.to_string()),
            wait,
            Self::expect_okay,
        )
        .map(drop)
    }

    /// Erases `partition` (`erase:<partition>`), allowing for writing `size` bytes (the
    /// partition's size where known: a bootloader may write zeros over all of it).
    pub fn erase(&mut self, partition: &str, size: Option<u64>) -> Result<(), FastbootError> {
        let wait = self.write_wait(size.unwrap_or(0));
        self.run_with(
            Command::Erase(partition.to_string()),
            wait,
            Self::expect_okay,
        )
        .map(drop)
    }

    /// Makes `slot` the one to boot (`set_active:<slot>`); `b` and `_b` both mean slot b,
    /// and the letter is sent without the underscore, as devices expect.
    pub fn set_active(&mut self, slot: &str) -> Result<(), FastbootError> {
        self.simple(Command::SetActive(slot.trim_start_matches('_').to_string()))
    }

    /// Reboots into the normal system.
    pub fn reboot(&mut self) -> Result<(), FastbootError> {
        self.leaving(Command::Reboot)
    }

    /// Reboots back into the bootloader's fastboot mode.
    pub fn reboot_bootloader(&mut self) -> Result<(), FastbootError> {
        self.leaving(Command::RebootBootloader)
    }

    /// Reboots into the userspace fastboot in recovery (`reboot-fastboot`, fastbootd), the
    /// only fastboot that can change logical partitions.
    pub fn reboot_fastboot(&mut self) -> Result<(), FastbootError> {
        self.leaving(Command::Other("reboot-fastboot".into()))
    }

    /// Runs a command after which the device leaves the bus. A device that goes before its
    /// `OKAY` arrives did what was asked (a bootloader may reset within milliseconds of
    /// answering, and the host then loses the answer in flight); a `FAIL` is still an error.
    fn leaving(&mut self, command: Command) -> Result<(), FastbootError> {
        match self.simple(command) {
            Err(FastbootError::Transport(TransportError::Disconnected)) => {
                tracing::debug!("the device left before its OKAY arrived");
                Ok(())
            }
            other => other,
        }
    }

    /// Leaves fastboot and continues the normal boot.
    pub fn continue_boot(&mut self) -> Result<(), FastbootError> {
        self.simple(Command::Continue)
    }

    /// Sends any other command without a data phase (e.g. `oem device-info`) and returns the
    /// `OKAY` payload.
    pub fn raw(&mut self, command: &str) -> Result<String, FastbootError> {
        self.run(Command::Other(command.to_string()), Self::expect_okay)
    }

    /// [`Client::raw`] for a command that may wait for the person at the device (`flashing
    /// unlock` asks on the phone's screen): each message may take up to `limit`.
    pub fn raw_waiting(&mut self, command: &str, limit: Duration) -> Result<String, FastbootError> {
        let limit = limit.max(self.timeout);
        self.run_with(
            Command::Other(command.to_string()),
            Wait::new(limit, limit),
            Self::expect_okay,
        )
    }

    /// Boots the last download from RAM (`boot`); the device leaves the bus as it does.
    pub fn boot(&mut self) -> Result<(), FastbootError> {
        self.leaving(Command::Other("boot".into()))
    }

    /// Runs a command whose only useful answer is `OKAY`.
    fn simple(&mut self, command: Command) -> Result<(), FastbootError> {
        self.run(command, Self::expect_okay).map(drop)
    }

    /// Sends a short command (see [`Client::run_with`]).
    fn run<R>(
        &mut self,
        command: Command,
        then: impl FnOnce(&mut Self, &str) -> Result<R, FastbootError>,
    ) -> Result<R, FastbootError> {
        let wait = self.short_wait();
        self.run_with(command, wait, then)
    }

    /// Sends `command`, lets `then` read the rest of the exchange within `wait`, and
    /// remembers an error that leaves the device mid-command.
    fn run_with<R>(
        &mut self,
        command: Command,
        wait: Wait,
        then: impl FnOnce(&mut Self, &str) -> Result<R, FastbootError>,
    ) -> Result<R, FastbootError> {
        self.wait = wait;
        let command = command.to_string();
        if let Some(cause) = &self.out_of_step {
            return Err(FastbootError::OutOfStep {
                command,
                cause: cause.clone(),
            });
        }
        check_command(&command)?;
        tracing::debug!(command, "fastboot command");
        let result = self
            .transport
            .write(command.as_bytes(), self.timeout)
            .map_err(FastbootError::from)
            .and_then(|()| then(self, &command));
        if let Err(e) = &result {
            if e.leaves_out_of_step() {
                self.out_of_step = Some(e.to_string());
            }
        }
        result
    }

    fn expect_okay(&mut self, command: &str) -> Result<String, FastbootError> {
        match self.finish(command, None)? {
            Outcome::Okay(text) => Ok(text),
            Outcome::Fail(reason) => Err(device_failed(command, reason)),
            Outcome::Data(len) => Err(unexpected_data(command, len)),
        }
    }

    /// Reads messages until `OKAY`, `FAIL` or `DATA`. `INFO`/`TEXT` go to the info callback,
    /// except `INFO name:value` lines, which go to `variables` when it is given.
    fn finish(
        &mut self,
        command: &str,
        mut variables: Option<&mut Vec<(String, String)>>,
    ) -> Result<Outcome, FastbootError> {
        let mut buf = [0u8; MAX_RESPONSE_LEN];
        let mut chatter = 0;
        loop {
            let wait = self.wait.next(command)?;
            let len = match self.transport.read(&mut buf, wait) {
                // Cut short by the command's deadline, not by the device's silence.
                Err(TransportError::Timeout(_)) if wait < self.wait.silence => {
                    return Err(self.wait.passed(command))
                }
                other => other?,
            };
            // Zero-length packets carry nothing and are to be ignored, but still counted so
            // that a device cannot keep the command alive with them forever.
            let response = (len > 0)
                .then(|| Response::parse(&buf[..len]))
                .transpose()
                .map_err(|e| protocol(command, e.to_string()))?;
            let text = match response {
                Some(Response::Okay(text)) => return Ok(Outcome::Okay(text)),
                Some(Response::Fail(reason)) => return Ok(Outcome::Fail(reason)),
                Some(Response::Data(len)) => return Ok(Outcome::Data(len)),
                Some(Response::Info(text) | Response::Text(text)) => Some(text),
                None => None,
            };
            chatter += 1;
            if chatter > MAX_INFO_MESSAGES {
                return Err(FastbootError::InfoFlood {
                    command: command.to_string(),
                    limit: MAX_INFO_MESSAGES,
                });
            }
            let Some(text) = text else { continue };
            match (variables.as_deref_mut(), split_variable(&text)) {
                (Some(variables), Some(variable)) => variables.push(variable),
                _ => {
                    tracing::debug!(command, "(bootloader) {text}");
                    if let Some(callback) = &mut self.on_info {
                        callback(&text);
                    }
                }
            }
        }
    }
}

/// Streams a download to the device; handed to the `feed` of [`Client::download`].
///
/// Writes are gathered into one [`DOWNLOAD_CHUNK`] buffer (allocated once per client) and
/// sent as full chunks; a write of a whole chunk or more while nothing is buffered is sent
/// straight from the caller's slice. Nothing beyond the announced size is accepted.
pub struct DownloadWriter<'a> {
    transport: &'a mut dyn Transport,
    chunk: &'a mut Vec<u8>,
    expected: u32,
    written: u64,
    wait: Wait,
    overran: bool,
    failed: Option<TransportError>,
}

impl DownloadWriter<'_> {
    /// Bytes accepted so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Bytes still to write.
    pub fn remaining(&self) -> u64 {
        u64::from(self.expected) - self.written
    }

    /// Sends `bytes` as one transport write within the data phase's time, keeping the
    /// transport's error for the client.
    fn send(
        transport: &mut dyn Transport,
        failed: &mut Option<TransportError>,
        bytes: &[u8],
        wait: &Wait,
    ) -> io::Result<()> {
        let result = match wait.next("download") {
            Ok(timeout) => transport.write(bytes, timeout),
            Err(_) => Err(TransportError::Timeout(wait.limit)),
        };
        result.map_err(|e| {
            let message = e.to_string();
            *failed = Some(e);
            io::Error::other(message)
        })
    }

    /// Sends what is buffered, if anything.
    fn send_chunk(&mut self) -> io::Result<()> {
        if !self.chunk.is_empty() {
            Self::send(self.transport, &mut self.failed, self.chunk, &self.wait)?;
            self.chunk.clear();
        }
        Ok(())
    }

    /// Ends the data phase after `feed` returned. If the image stopped early (its source
    /// failed or ran out), what is still buffered is dropped and every byte still owed goes
    /// out as zeros: a bootloader waits for all the bytes it was promised, and would take
    /// the next commands as data otherwise. Only a failed link leaves the phase unfinished.
    fn finish(mut self, fed: io::Result<()>) -> Result<Sent, FastbootError> {
        if let Some(e) = self.failed.take() {
            return Err(e.into());
        }
        let stopped = match fed {
            Err(e) if !self.overran => Some(FastbootError::Source(e)),
            _ => {
                if let Err(e) = self.send_chunk() {
                    return Err(self
                        .failed
                        .take()
                        .map_or(FastbootError::Source(e), FastbootError::Transport));
                }
                (self.written < u64::from(self.expected)).then_some(FastbootError::ShortDownload {
                    expected: self.expected,
                    written: self.written,
                })
            }
        };
        match stopped {
            None => Ok(Sent::Whole {
                overran: self.overran,
            }),
            Some(cause) => {
                self.pad()?;
                Ok(Sent::Padded(cause))
            }
        }
    }

    /// Sends zeros for every announced byte not yet on the wire.
    fn pad(&mut self) -> Result<(), FastbootError> {
        let on_wire = self.written - self.chunk.len() as u64;
        let mut owed = u64::from(self.expected) - on_wire;
        self.chunk.clear();
        self.chunk
            .resize(owed.min(DOWNLOAD_CHUNK as u64) as usize, 0);
        while owed > 0 {
            let n = owed.min(self.chunk.len() as u64) as usize;
            let sent = Self::send(
                self.transport,
                &mut self.failed,
                &self.chunk[..n],
                &self.wait,
            );
            if sent.is_err() {
                let e = self.failed.take().expect("send keeps its error");
                return Err(e.into());
            }
            owed -= n as u64;
        }
        self.chunk.clear();
        Ok(())
    }
}

impl io::Write for DownloadWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.failed.is_some() {
            return Err(io::Error::other(
                "the download to the device already failed",
            ));
        }
        if data.is_empty() {
            return Ok(0);
        }
        let room = usize::try_from(self.remaining()).unwrap_or(usize::MAX);
        if room == 0 {
            self.overran = true;
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "more than the {} bytes announced for the download",
                    self.expected
                ),
            ));
        }
        let data = &data[..data.len().min(room)];
        let accepted = if self.chunk.is_empty() && data.len() >= DOWNLOAD_CHUNK {
            let whole = &data[..DOWNLOAD_CHUNK];
            Self::send(self.transport, &mut self.failed, whole, &self.wait)?;
            whole.len()
        } else {
            let take = data.len().min(DOWNLOAD_CHUNK - self.chunk.len());
            self.chunk.extend_from_slice(&data[..take]);
            if self.chunk.len() == DOWNLOAD_CHUNK {
                self.send_chunk()?;
            }
            take
        };
        self.written += accepted as u64;
        Ok(accepted)
    }

    /// Sends the buffered bytes now (normally unnecessary: the client flushes at the end).
    fn flush(&mut self) -> io::Result<()> {
        self.send_chunk()
    }
}

/// Refuses commands a device would misparse: too long, or not printable ASCII.
fn check_command(command: &str) -> Result<(), FastbootError> {
    let reason = if command.len() > MAX_COMMAND_LEN {
        format!(
            "it is {} bytes; fastboot allows at most {MAX_COMMAND_LEN}",
            command.len()
        )
    } else if command.bytes().any(|b| !(0x20..0x7f).contains(&b)) {
        "fastboot commands must be printable ASCII".to_string()
    } else {
        return Ok(());
    };
    Err(FastbootError::InvalidCommand {
        command: command.to_string(),
        reason,
    })
}

fn device_failed(command: &str, reason: String) -> FastbootError {
    FastbootError::DeviceFailed {
        command: command.to_string(),
        reason,
    }
}

fn protocol(command: &str, detail: String) -> FastbootError {
    FastbootError::Protocol {
        command: command.to_string(),
        detail,
    }
}

fn unexpected_data(command: &str, len: u32) -> FastbootError {
    protocol(
        command,
        format!("the device asked for a {len}-byte data phase, which this command does not have"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    /// One step of a scripted exchange.
    #[derive(Debug)]
    enum Step {
        /// The host must write exactly this message.
        Host(&'static [u8]),
        /// The host must write this many data-phase bytes, in any number of writes.
        HostData(usize),
        /// The device sends this message.
        Device(Vec<u8>),
        /// The device says nothing: the host's read times out.
        Silence,
    }
    use Step::{Device, Host, HostData, Silence};

    fn dev(message: &str) -> Step {
        Device(message.as_bytes().to_vec())
    }

    /// An in-memory device that follows a script and fails the test on any deviation.
    #[derive(Default)]
    struct Scripted {
        steps: VecDeque<Step>,
        data: Vec<u8>,
        data_writes: Vec<usize>,
    }

    impl Transport for Scripted {
        fn write(&mut self, data: &[u8], _: Duration) -> Result<(), TransportError> {
            match self.steps.front_mut() {
                Some(Host(expected)) => {
                    assert_eq!(
                        String::from_utf8_lossy(data),
                        String::from_utf8_lossy(expected)
                    );
                    self.steps.pop_front();
                }
                Some(HostData(left)) => {
                    assert!(
                        data.len() <= *left,
                        "{} bytes past the data phase",
                        data.len() - *left
                    );
                    *left -= data.len();
                    self.data.extend_from_slice(data);
                    self.data_writes.push(data.len());
                    if *left == 0 {
                        self.steps.pop_front();
                    }
                }
                other => panic!(
                    "host wrote {} bytes while the script has {other:?}",
                    data.len()
                ),
            }
            Ok(())
        }

        fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
            match self.steps.pop_front() {
                Some(Device(message)) if message.len() > buf.len() => {
                    Err(TransportError::MessageTooLarge {
                        len: message.len() as u64,
                        max: buf.len(),
                    })
                }
                Some(Device(message)) => {
                    buf[..message.len()].copy_from_slice(&message);
                    Ok(message.len())
                }
                None | Some(Silence) => Err(TransportError::Timeout(timeout)),
                Some(other) => panic!("host read while the script has {other:?}"),
            }
        }

        fn address(&self) -> &str {
            "scripted"
        }
    }

    fn client(steps: Vec<Step>) -> Client<Scripted> {
        Client::new(Scripted {
            steps: steps.into(),
            ..Scripted::default()
        })
    }

    fn assert_done(client: &Client<Scripted>) {
        assert!(
            client.transport().steps.is_empty(),
            "unplayed: {:?}",
            client.transport().steps
        );
    }

    /// Collects what reaches the info callback.
    fn record_info(client: &mut Client<Scripted>) -> Arc<Mutex<Vec<String>>> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        client.on_info(Box::new(move |text| {
            sink.lock().unwrap().push(text.to_string())
        }));
        seen
    }

    #[test]
    fn getvar_reads_values_and_treats_fail_and_empty_okay_as_unknown() {
        let mut c = client(vec![
            Host(b"getvar:product"),
            dev("OKAYphone"),
            Host(b"getvar:secure"),
            dev("FAILunknown variable"),
            Host(b"getvar:unlocked"),
            dev("OKAY"),
            Host(b"getvar:partition-size:boot_a"),
            dev("OKAY 0x4000000"),
        ]);
        assert_eq!(c.getvar("product").unwrap().as_deref(), Some("phone"));
        assert_eq!(c.getvar("secure").unwrap(), None);
        assert_eq!(c.getvar("unlocked").unwrap(), None);
        assert_eq!(
            c.getvar("partition-size:boot_a").unwrap().as_deref(),
            Some("0x4000000")
        );
        assert_done(&c);
    }

    #[test]
    fn getvar_all_keeps_arguments_and_tolerates_spaces() {
        let mut c = client(vec![
            Host(b"getvar:all"),
            dev("INFOversion:0.4"),
            dev("INFOpartition-size:boot_a: 0x4000000"),
            dev("INFOpartition-type : system_b : ext4"),
            dev("INFOhas-slot:boot:yes"),
            dev("INFOsystem-fingerprint:google/p/p:14/AP1A/1:user/release-keys"),
            dev("INFOall variables follow"),
            dev("OKAY"),
        ]);
        let seen = record_info(&mut c);
        let vars = c.getvar_all().unwrap();
        let expected = [
            ("version", "0.4"),
            ("partition-size:boot_a", "0x4000000"),
            ("partition-type:system_b", "ext4"),
            ("has-slot:boot", "yes"),
            (
                "system-fingerprint",
                "google/p/p:14/AP1A/1:user/release-keys",
            ),
        ];
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(vars, expected);
        assert_eq!(*seen.lock().unwrap(), ["all variables follow"]);
        assert_done(&c);
    }

    #[test]
    fn getvar_all_keeps_split_parts_as_sent_and_reads_a_variable_in_the_final_okay() {
        let mut c = client(vec![
            Host(b"getvar:all"),
            dev("INFOkernel.version[2]: ) #1 SMP PREEMPT CST"),
            dev("INFOkernel.version[3]:  2017"),
            dev("INFO  version-preloader:"),
            dev("OKAYunlocked:yes"),
            Host(b"getvar:all"),
            dev("INFOproduct:rk3229"),
            dev("OKAYDone!"),
        ]);
        let vars = c.getvar_all().unwrap();
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            vars,
            [
                ("kernel.version[2]", ") #1 SMP PREEMPT CST"),
                ("kernel.version[3]", " 2017"),
                ("version-preloader", ""),
                ("unlocked", "yes"),
            ]
        );
        assert_eq!(
            c.getvar_all().unwrap(),
            [("product".into(), "rk3229".into())]
        );
        assert_done(&c);
    }

    #[test]
    fn a_stalled_getvar_all_does_not_poison_the_session() {
        let mut c = client(vec![
            Host(b"getvar:all"),
            dev("INFOproduct:phone"),
            // The device stops mid-listing, then finishes late, after the host gave up.
            Silence,
            dev("INFOserialno:123"),
            dev("OKAY"),
            Silence,
            Host(b"getvar:product"),
            dev("OKAYphone"),
        ]);
        assert!(matches!(
            c.getvar_all(),
            Err(FastbootError::Transport(TransportError::Timeout(_)))
        ));
        assert!(matches!(
            c.getvar("product"),
            Err(FastbootError::OutOfStep { .. })
        ));
        // The late lines are read and dropped, not taken as the answer to the next question.
        assert!(c.resync(Duration::from_millis(10)));
        assert_eq!(c.getvar("product").unwrap().as_deref(), Some("phone"));
        assert_done(&c);
    }

    #[test]
    fn info_and_text_are_passed_on_until_okay() {
        let mut c = client(vec![
            Host(b"erase:userdata"),
            dev("INFOerasing..."),
            dev("TEXT50%"),
            Device(Vec::new()),
            dev("INFOdone"),
            dev("OKAY"),
        ]);
        let seen = record_info(&mut c);
        c.erase("userdata", None).unwrap();
        assert_eq!(*seen.lock().unwrap(), ["erasing...", "50%", "done"]);
        assert_done(&c);
    }

    #[test]
    fn device_failure_names_command_and_reason_and_keeps_the_session() {
        let mut c = client(vec![
            Host(b"flash:boot_a"),
            dev("FAILpartition is locked"),
            Host(b"set_active:b"),
            dev("OKAY"),
        ]);
        let err = c.flash("boot_a").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`flash:boot_a` failed on the device: partition is locked"
        );
        c.set_active("_b").unwrap();
        assert_done(&c);
    }

    #[test]
    fn download_streams_in_large_chunks() {
        let size = 2 * DOWNLOAD_CHUNK + 1000;
        let image: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let mut c = client(vec![
            Host(b"download:002003e8"),
            dev("DATA002003e8"),
            HostData(size),
            dev("OKAY"),
            Host(b"flash:boot"),
            dev("OKAY"),
        ]);
        c.download(size as u32, |w| {
            // Small writes coalesce; a whole-chunk write then goes out unbuffered.
            w.write_all(&image[..10])?;
            w.write_all(&image[10..DOWNLOAD_CHUNK])?;
            w.write_all(&image[DOWNLOAD_CHUNK..])
        })
        .unwrap();
        c.flash("boot").unwrap();
        assert_done(&c);
        let device = c.into_transport();
        assert_eq!(device.data_writes, [DOWNLOAD_CHUNK, DOWNLOAD_CHUNK, 1000]);
        assert!(device.data == image);
    }

    #[test]
    fn a_data_length_other_than_announced_is_a_protocol_error() {
        let mut c = client(vec![Host(b"download:00000010"), dev("DATA00000008")]);
        let err = c.download(16, |w| w.write_all(&[0; 16])).unwrap_err();
        assert!(
            matches!(&err, FastbootError::Protocol { command, detail }
                if command == "download:00000010" && detail.contains("ready for 8 bytes")),
            "{err}"
        );
        // The device now waits for 8 bytes: nothing else may be sent.
        assert!(matches!(
            c.getvar("product"),
            Err(FastbootError::OutOfStep { .. })
        ));
        assert_done(&c);
    }

    #[test]
    fn a_short_feed_is_padded_so_the_session_goes_on() {
        let mut c = client(vec![
            Host(b"download:00000010"),
            dev("DATA00000010"),
            HostData(16),
            dev("OKAY"),
            Host(b"getvar:product"),
            dev("OKAYphone"),
        ]);
        match c.download(16, |w| w.write_all(&[7; 10])) {
            Err(FastbootError::Abandoned { cause }) => assert!(
                matches!(
                    *cause,
                    FastbootError::ShortDownload {
                        expected: 16,
                        written: 10,
                    }
                ),
                "{cause}"
            ),
            other => panic!("expected an abandoned download, got {other:?}"),
        }
        // The device got all 16 bytes it was promised and is ready for the next command.
        assert_eq!(c.getvar("product").unwrap().as_deref(), Some("phone"));
        assert_eq!(c.transport().data, [[7u8; 10].as_slice(), &[0; 6]].concat());
        assert_done(&c);
    }

    #[test]
    fn a_long_feed_sends_only_the_announced_bytes() {
        let mut c = client(vec![
            Host(b"download:00000010"),
            dev("DATA00000010"),
            HostData(16),
            dev("OKAY"),
            Host(b"getvar:product"),
            dev("OKAYphone"),
        ]);
        let err = c.download(16, |w| w.write_all(&[1; 20])).unwrap_err();
        assert!(
            matches!(err, FastbootError::LongDownload { expected: 16 }),
            "{err}"
        );
        // The device got exactly its 16 bytes and answered, so the session goes on.
        assert_eq!(c.getvar("product").unwrap().as_deref(), Some("phone"));
        assert_eq!(c.transport().data, [1; 16]);
        assert_done(&c);
    }

    #[test]
    fn a_failing_source_is_reported_as_such_and_nothing_of_it_is_sent() {
        let mut c = client(vec![
            Host(b"download:00200010"),
            dev("DATA00200010"),
            HostData(DOWNLOAD_CHUNK * 2 + 16),
            dev("OKAY"),
        ]);
        let err = c
            .download((DOWNLOAD_CHUNK * 2 + 16) as u32, |w| {
                // One chunk goes out, half of the next is buffered, then the source fails:
                // the buffered half is dropped and zeros are sent in its place.
                w.write_all(&vec![5; DOWNLOAD_CHUNK + DOWNLOAD_CHUNK / 2])?;
                Err(io::Error::other("disk on fire"))
            })
            .unwrap_err();
        assert!(
            matches!(&err, FastbootError::Abandoned { cause } if matches!(**cause, FastbootError::Source(_))),
            "{err}"
        );
        assert!(err.to_string().contains("disk on fire"), "{err}");
        let data = &c.transport().data;
        assert!(data[..DOWNLOAD_CHUNK].iter().all(|&b| b == 5));
        assert!(data[DOWNLOAD_CHUNK..].iter().all(|&b| b == 0));
        assert_done(&c);
    }

    #[test]
    fn download_refused_by_the_device() {
        let mut c = client(vec![Host(b"download:10000000"), dev("FAILdata too large")]);
        let err = c
            .download(0x1000_0000, |_| panic!("no data phase after FAIL"))
            .unwrap_err();
        assert!(matches!(err, FastbootError::DeviceFailed { .. }), "{err}");
        assert_done(&c);
    }

    #[test]
    fn data_where_no_data_phase_exists_is_a_protocol_error() {
        let mut c = client(vec![Host(b"getvar:product"), dev("DATA00000100")]);
        let err = c.getvar("product").unwrap_err();
        assert!(matches!(err, FastbootError::Protocol { .. }), "{err}");
    }

    #[test]
    fn unknown_status_is_a_protocol_error_naming_it() {
        let mut c = client(vec![Host(b"reboot"), dev("WHAT is this")]);
        let err = c.reboot().unwrap_err();
        assert!(
            matches!(&err, FastbootError::Protocol { command, detail }
                if command == "reboot" && detail.contains("WHAT")),
            "{err}"
        );
    }

    #[test]
    fn oversized_responses_are_refused_by_the_transport() {
        let mut long = b"OKAY".to_vec();
        long.resize(MAX_RESPONSE_LEN + 1, b'x');
        let mut c = client(vec![Host(b"getvar:product"), Device(long)]);
        assert!(matches!(
            c.getvar("product"),
            Err(FastbootError::Transport(TransportError::MessageTooLarge {
                max: 256,
                ..
            }))
        ));
    }

    #[test]
    fn an_info_flood_is_cut_off() {
        let mut steps = vec![Host(b"continue")];
        steps.extend((0..=MAX_INFO_MESSAGES).map(|_| dev("INFOspam")));
        let mut c = client(steps);
        let err = c.continue_boot().unwrap_err();
        assert!(
            matches!(&err, FastbootError::InfoFlood { command, limit }
                if command == "continue" && *limit == MAX_INFO_MESSAGES),
            "{err}"
        );
        assert_done(&c);
    }

    #[test]
    fn writes_get_time_by_their_bytes_and_short_commands_a_budget() {
        assert_eq!(write_deadline(0), WRITE_BASE);
        // 1 GiB at a slow eMMC's 5 MB/s: 60 s + 214.7 s.
        let gib = write_deadline(1 << 30).as_secs_f64();
        assert!((274.0..275.0).contains(&gib), "{gib}");
        let mut c = client(vec![]);
        c.set_timeout(Duration::from_secs(2));
        assert_eq!(c.short_wait().limit, Duration::from_secs(8));
        assert_eq!(
            c.write_wait(0).silence,
            WRITE_BASE,
            "--timeout does not shorten writes"
        );
        c.set_timeout(Duration::from_secs(600));
        assert_eq!(
            c.write_wait(0).limit,
            Duration::from_secs(600),
            "nor is shorter than it"
        );
    }

    #[test]
    fn silence_is_a_timeout() {
        let mut c = client(vec![Host(b"reboot-bootloader")]);
        assert!(matches!(
            c.reboot_bootloader(),
            Err(FastbootError::Transport(TransportError::Timeout(_)))
        ));
    }

    #[test]
    fn raw_commands_return_the_okay_payload_and_bad_ones_are_not_sent() {
        let mut c = client(vec![Host(b"oem device-info"), dev("OKAYunlocked")]);
        assert_eq!(c.raw("oem device-info").unwrap(), "unlocked");
        assert!(matches!(
            c.raw("oem x\nflash:boot"),
            Err(FastbootError::InvalidCommand { .. })
        ));
        assert!(matches!(
            c.raw(&"o".repeat(MAX_COMMAND_LEN + 1)),
            Err(FastbootError::InvalidCommand { .. })
        ));
        assert_done(&c);
    }
}
