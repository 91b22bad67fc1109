//! How long a command may take (see the client's module documentation): the allowances of
//! short commands, writes and downloads, and the [`Wait`] of the command being run.

use std::time::{Duration, Instant};

use super::FastbootError;

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

/// How long the command being run may wait (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub(super) struct Wait {
    /// Longest silence between two messages.
    pub(super) silence: Duration,
    /// When the whole command must be done.
    pub(super) until: Instant,
    /// The whole command's allowance, for the error message.
    pub(super) limit: Duration,
}

impl Wait {
    pub(super) fn new(silence: Duration, limit: Duration) -> Self {
        Wait {
            silence,
            until: Instant::now() + limit,
            limit,
        }
    }

    /// How long the next read may wait, or the deadline error if the time is up.
    pub(super) fn next(&self, command: &str) -> Result<Duration, FastbootError> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.passed(command));
        }
        Ok(self.silence.min(left))
    }

    pub(super) fn passed(&self, command: &str) -> FastbootError {
        FastbootError::Deadline {
            command: command.to_string(),
            limit: self.limit,
        }
    }
}
