//! ZXIC (Sanechips) ZX297520V3: the boot ROM's byte protocol and the TBootPro text protocol
//! of the vendor's download loader, as the open tools describe them.
//!
//! A device in its boot ROM (USB 19D2:0256, bulk endpoints 0x01/0x81; reached by the BOOT
//! pad or a damaged boot block) loads two stages: `tloader`, which sets up DRAM, at
//! 0x82000, and `tboot`, the download loader, at 0x27EF0000 ([`bootrom`]). `tboot` then
//! speaks TBootPro on the same link: NUL-terminated ASCII commands and replies
//! ([`tboot`]) that set the partition table ([`partition`]), write partitions in 2 MiB
//! windows checked by a CRC ([`crc`]), read them back, erase and reboot.
//!
//! Sources, read for facts only: zx297520v3-mainline/zx297520v3-loader (src/main.rs: the
//! boot ROM bytes, the two load addresses, tboot's 0xA7 sync answer), a module vendor's Linux
//! flasher for this chip (zte_download.c: `compat_write`, `set partitions 1000`, the table
//! verdicts, `erase auto`, `CRC ON`, the 64-byte uImage header stripped from tboot) and
//! sandibabsel/ZX297520-Flasher "zxdl" (README, proto.c: `getvar`, `compat_read`,
//! partition.bin; its README says it was never tested on hardware, so where it disagrees
//! with the vendor flasher, the vendor flasher wins). Where the sources leave a question
//! open, the module that decides it says so and why.
//!
//! Both sides share this codec: the host client ([`Link`]) and flashline's simulator.

pub mod bootrom;
pub mod crc;
pub mod partition;
pub mod tboot;

use std::time::{Duration, Instant};

use crate::transport::{Transport, TransportError};

pub use bootrom::{Stage, TBOOT_ADDRESS, TLOADER_ADDRESS};
pub use crc::{crc32, Crc32};
pub use partition::{Partition, PartitionTable, TableError};
pub use tboot::{Command, Reply, TableVerdict};

/// Size of one `compat_write` / `compat_read` window: the vendor flasher and zxdl both move
/// partitions in 2 MiB pieces, and a device asking for more in one `DATA` is refused.
pub const WINDOW: u32 = 2 * 1024 * 1024;

/// Longest TBootPro reply accepted, NUL included. Real replies are short (`OKAY
/// RECV_TABLES`, `FAIL UNACCEPTABLE_PARTITION_CHANGE`); the cap keeps a device that never
/// sends a NUL from growing a buffer.
pub const MAX_REPLY: usize = 256;

/// Stray NUL bytes skipped before a reply. The vendor flasher shifts a reply that starts
/// with a NUL followed by `D` (`\0DATA …`); more than a few NULs is a broken device.
const MAX_LEADING_NULS: usize = 16;

/// Why a ZXIC exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ZxicError {
    /// The link failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A boot ROM or loader step was answered with another byte than the protocol's.
    #[error("{step}: the device answered 0x{got:02X} where 0x{expected:02X} was expected")]
    Ack {
        /// What was being done.
        step: &'static str,
        /// The answer the protocol gives.
        expected: u8,
        /// The answer received.
        got: u8,
    },
    /// A TBootPro reply longer than [`MAX_REPLY`] or without its NUL.
    #[error("the device's reply has no end within {MAX_REPLY} bytes")]
    ReplyTooLong,
    /// A TBootPro reply with bytes that are not printable ASCII.
    #[error("the device's reply is not text ({0})")]
    NotText(String),
    /// The device refused a command with `FAIL …`.
    #[error("the device refused `{command}`: {reason}")]
    Refused {
        /// The command.
        command: String,
        /// The device's words (cleaned).
        reason: String,
    },
    /// The device answered a command with something the protocol does not allow there.
    #[error("the device answered `{command}` with {reply:?}")]
    Unexpected {
        /// The command.
        command: String,
        /// The reply (cleaned).
        reply: String,
    },
    /// A `DATA` window of 0 bytes, past what the command announced, or over [`WINDOW`].
    #[error("`{command}`: the device asked for a {asked}-byte window with {left} bytes left (at most {WINDOW} at a time)")]
    Window {
        /// The command.
        command: String,
        /// The window the device asked for.
        asked: u64,
        /// Bytes of the command not yet moved.
        left: u64,
    },
    /// The device's CRC of a window differs from the CRC of the bytes sent.
    #[error("{partition} at 0x{offset:08x} (+{len} bytes): the device's CRC 0x{device:08x} differs from the CRC 0x{sent:08x} of the bytes sent")]
    Crc {
        /// The partition.
        partition: String,
        /// Offset of the window.
        offset: u32,
        /// Bytes in the window.
        len: u32,
        /// CRC of the bytes the host sent.
        sent: u32,
        /// CRC the device returned.
        device: u32,
    },
    /// The device refused the partition table.
    #[error("the device refused the partition table: {0}")]
    TableRefused(String),
    /// The partition table is invalid.
    #[error(transparent)]
    Table(#[from] TableError),
    /// A loader or window too large for the protocol's 32-bit lengths.
    #[error("{0}")]
    TooLarge(String),
    /// A loader that cannot be what it claims; it was not sent.
    #[error("the package's loader was not sent: {0}")]
    Loader(String),
    /// Reading the bytes to send, or storing those received, failed.
    #[error("{0}")]
    Io(std::io::Error),
}

/// One link to a ZXIC device: the transport, the allowance for each answer, and the bytes
/// that arrived past the end of the last reply (a serial read may hold several).
pub struct Link<T> {
    transport: T,
    timeout: Duration,
    pending: Vec<u8>,
}

impl<T: Transport> Link<T> {
    /// Wraps `transport`; every answer is waited for at most `timeout`.
    pub fn new(transport: T, timeout: Duration) -> Self {
        Link {
            transport,
            timeout,
            pending: Vec::new(),
        }
    }

    /// Changes the allowance for each answer.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The allowance for each answer.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The transport's address.
    pub fn address(&self) -> &str {
        self.transport.address()
    }

    /// Sends `bytes`.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), ZxicError> {
        self.transport.write(bytes, self.timeout)?;
        Ok(())
    }

    /// Drops whatever arrived and was not read (before a sync, as hosts purge the port).
    pub fn purge(&mut self) {
        self.pending.clear();
    }

    /// Reads more bytes into the pending buffer, waiting at most `wait`.
    fn fill(&mut self, wait: Duration) -> Result<(), ZxicError> {
        let mut buf = [0u8; 4096];
        let n = self.transport.read(&mut buf, wait)?;
        self.pending.extend_from_slice(&buf[..n]);
        Ok(())
    }

    /// One byte, waiting at most `wait`.
    fn byte_within(&mut self, wait: Duration) -> Result<u8, ZxicError> {
        if self.pending.is_empty() {
            self.fill(wait)?;
        }
        Ok(self.pending.remove(0))
    }

    /// Exactly `out.len()` bytes, each read waiting at most the link's timeout.
    pub fn read_exact(&mut self, out: &mut [u8]) -> Result<(), ZxicError> {
        let mut filled = 0;
        while filled < out.len() {
            if self.pending.is_empty() {
                self.fill(self.timeout)?;
            }
            let n = self.pending.len().min(out.len() - filled);
            out[filled..filled + n].copy_from_slice(&self.pending[..n]);
            self.pending.drain(..n);
            filled += n;
        }
        Ok(())
    }

    /// One NUL-terminated reply as text, without its NUL, waiting at most `wait` in all.
    /// Leading NULs are skipped (a few at most); the reply is capped at [`MAX_REPLY`].
    pub fn read_text(&mut self, wait: Duration) -> Result<String, ZxicError> {
        let deadline = Instant::now() + wait;
        let mut skipped = 0;
        loop {
            while self.pending.first() == Some(&0) && skipped < MAX_LEADING_NULS {
                self.pending.remove(0);
                skipped += 1;
            }
            if skipped >= MAX_LEADING_NULS && self.pending.first() == Some(&0) {
                return Err(ZxicError::NotText("only NUL bytes".into()));
            }
            if let Some(end) = self.pending.iter().position(|&b| b == 0) {
                let text: Vec<u8> = self.pending.drain(..=end).take(end).collect();
                if let Some(bad) = text.iter().find(|b| !(b.is_ascii_graphic() || **b == b' ')) {
                    return Err(ZxicError::NotText(format!("byte 0x{bad:02X}")));
                }
                return Ok(String::from_utf8(text).expect("printable ASCII is UTF-8"));
            }
            if self.pending.len() >= MAX_REPLY {
                return Err(ZxicError::ReplyTooLong);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(TransportError::Timeout(wait).into());
            }
            self.fill(left)?;
        }
    }

    /// Waits at most `wait` for bytes and says whether any came (they stay pending).
    fn any_within(&mut self, wait: Duration) -> bool {
        if !self.pending.is_empty() {
            return true;
        }
        self.fill(wait).is_ok() && !self.pending.is_empty()
    }

    /// Gives the transport back.
    pub fn into_inner(self) -> T {
        self.transport
    }
}
