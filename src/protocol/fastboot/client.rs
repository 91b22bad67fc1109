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

mod deadline;
mod download;
mod error;
#[cfg(test)]
mod tests;

use std::io;
use std::time::Duration;

use super::vars::split_variable;
use super::{Command, Response, MAX_COMMAND_LEN, MAX_RESPONSE_LEN};
use crate::transport::{Transport, TransportError};
use deadline::Wait;
pub use deadline::{write_deadline, COMMAND_BUDGET, SLOW_LINK_RATE, SLOW_WRITE_RATE, WRITE_BASE};
use download::Sent;
pub use download::{DownloadWriter, DOWNLOAD_CHUNK};
pub use error::FastbootError;

/// How long to wait for each device message unless told otherwise; AOSP's client uses the
/// same, and devices doing slow work keep it alive with `INFO` messages.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Most `INFO`/`TEXT` messages one command may produce (this also bounds `getvar:all`).
pub const MAX_INFO_MESSAGES: usize = 10_000;

/// How a command ended.
enum Outcome {
    Okay(String),
    Fail(String),
    Data(u32),
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
