//! What can go wrong in a fastboot command, and which errors leave the session out of step.

use std::io;
use std::time::Duration;

use crate::transport::TransportError;

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
    pub(super) fn leaves_out_of_step(&self) -> bool {
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
