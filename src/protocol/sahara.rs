//! Qualcomm Sahara: the boot ROM's packet protocol that loads the Firehose programmer.
//!
//! Every packet is two little-endian `u32` words, `cmd` and `length` (the whole packet,
//! header included), followed by a fixed-size body. This module is the codec for both
//! directions, so the host client ([`client`]) and a virtual device share one definition;
//! [`PacketReader`] frames packets out of either a packet pipe (USB bulk) or a byte stream
//! (a serial port), where one read may hold part of a packet or several.

pub mod client;
pub mod identity;

pub use client::{upload_programmer, SaharaOptions, SaharaOutcome};
pub use identity::{read_identity, ChipIdentity, Hwid};

use std::fmt;
use std::time::{Duration, Instant};

use super::read_buffer::{read_some, ReadBuffer};
use crate::transport::{Transport, TransportError};

/// Bytes of `cmd` + `length` at the start of every packet.
pub const HEADER_LEN: usize = 8;

/// Largest packet the reader accepts. Sahara packets are at most a few dozen bytes; the cap
/// keeps a corrupt length field from making the reader wait for (or allocate) megabytes.
pub const MAX_PACKET_LEN: usize = 4096;

/// HELLO/HELLO_RESP/SWITCH_MODE mode: the device wants an image (the programmer).
pub const MODE_IMAGE_TX_PENDING: u32 = 0;
/// Mode: image transfer finished.
pub const MODE_IMAGE_TX_COMPLETE: u32 = 1;
/// Mode: the device crashed and offers its memory for download (PID 0x900E).
pub const MODE_MEMORY_DEBUG: u32 = 2;
/// Mode: command mode (chip identity queries via EXECUTE).
pub const MODE_COMMAND: u32 = 3;

/// Command numbers, as on the wire.
mod cmd {
    pub const HELLO: u32 = 0x01;
    pub const HELLO_RESP: u32 = 0x02;
    pub const READ_DATA: u32 = 0x03;
    pub const END_OF_IMAGE: u32 = 0x04;
    pub const DONE: u32 = 0x05;
    pub const DONE_RESP: u32 = 0x06;
    pub const RESET: u32 = 0x07;
    pub const RESET_RESP: u32 = 0x08;
    pub const MEMORY_DEBUG: u32 = 0x09;
    pub const MEMORY_READ: u32 = 0x0A;
    pub const CMD_READY: u32 = 0x0B;
    pub const SWITCH_MODE: u32 = 0x0C;
    pub const EXECUTE: u32 = 0x0D;
    pub const EXECUTE_RESP: u32 = 0x0E;
    pub const EXECUTE_DATA: u32 = 0x0F;
    pub const MEMORY_DEBUG64: u32 = 0x10;
    pub const MEMORY_READ64: u32 = 0x11;
    pub const READ_DATA64: u32 = 0x12;
    pub const RESET_STATE_MACHINE: u32 = 0x13;
}

/// Name and fixed total length of each known command.
fn spec(command: u32) -> Option<(&'static str, usize)> {
    Some(match command {
        cmd::HELLO => ("HELLO", 0x30),
        cmd::HELLO_RESP => ("HELLO_RESP", 0x30),
        cmd::READ_DATA => ("READ_DATA", 0x14),
        cmd::END_OF_IMAGE => ("END_OF_IMAGE", 0x10),
        cmd::DONE => ("DONE", 0x08),
        cmd::DONE_RESP => ("DONE_RESP", 0x0C),
        cmd::RESET => ("RESET", 0x08),
        cmd::RESET_RESP => ("RESET_RESP", 0x08),
        cmd::MEMORY_DEBUG => ("MEMORY_DEBUG", 0x10),
        cmd::MEMORY_READ => ("MEMORY_READ", 0x10),
        cmd::CMD_READY => ("CMD_READY", 0x08),
        cmd::SWITCH_MODE => ("SWITCH_MODE", 0x0C),
        cmd::EXECUTE => ("EXECUTE", 0x0C),
        cmd::EXECUTE_RESP => ("EXECUTE_RESP", 0x10),
        cmd::EXECUTE_DATA => ("EXECUTE_DATA", 0x0C),
        cmd::MEMORY_DEBUG64 => ("MEMORY_DEBUG64", 0x18),
        cmd::MEMORY_READ64 => ("MEMORY_READ64", 0x18),
        cmd::READ_DATA64 => ("READ_DATA64", 0x20),
        cmd::RESET_STATE_MACHINE => ("RESET_STATE_MACHINE", 0x08),
        _ => return None,
    })
}

/// A status code from END_OF_IMAGE or HELLO_RESP; `0` is success, anything else names why
/// the device refused (e.g. a programmer whose signature the boot ROM rejected).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status(pub u32);

/// Status names as the boot ROM defines them, indexed by code.
const STATUS_NAMES: &[&str] = &[
    "SUCCESS",
    "INVALID_CMD",
    "PROTOCOL_MISMATCH",
    "INVALID_TARGET_PROTOCOL",
    "INVALID_HOST_PROTOCOL",
    "INVALID_PACKET_SIZE",
    "UNEXPECTED_IMAGE_ID",
    "INVALID_HEADER_SIZE",
    "INVALID_DATA_SIZE",
    "INVALID_IMAGE_TYPE",
    "INVALID_TX_LENGTH",
    "INVALID_RX_LENGTH",
    "GENERAL_TX_RX_ERROR",
    "READ_DATA_ERROR",
    "UNSUPPORTED_NUM_PHDRS",
    "INVALID_PHDR_SIZE",
    "MULTIPLE_SHARED_SEG",
    "UNINIT_PHDR_LOC",
    "INVALID_DEST_ADDR",
    "INVALID_IMG_HDR_DATA_SIZE",
    "INVALID_ELF_HDR",
    "UNKNOWN_HOST_ERROR",
    "TIMEOUT_RX",
    "TIMEOUT_TX",
    "INVALID_HOST_MODE",
    "INVALID_MEMORY_READ",
    "INVALID_DATA_SIZE_REQUEST",
    "MEMORY_DEBUG_NOT_SUPPORTED",
    "INVALID_MODE_SWITCH",
    "CMD_EXEC_FAILURE",
    "EXEC_CMD_INVALID_PARAM",
    "EXEC_CMD_UNSUPPORTED",
    "EXEC_DATA_INVALID_CLIENT_CMD",
    "HASH_TABLE_AUTH_FAILURE",
    "HASH_VERIFICATION_FAILURE",
    "HASH_TABLE_NOT_FOUND",
    "TARGET_INIT_FAILURE",
    "IMAGE_AUTH_FAILURE",
    "INVALID_IMG_HASH_TABLE_SIZE",
    "ENUMERATION_FAILURE",
    "HW_BULK_TRANSFER_ERROR",
];

impl Status {
    /// Success.
    pub const SUCCESS: Status = Status(0);

    /// The boot ROM's name for this code, if it is a known one.
    pub fn name(self) -> Option<&'static str> {
        usize::try_from(self.0)
            .ok()
            .and_then(|i| STATUS_NAMES.get(i))
            .copied()
    }

    /// Whether this is [`Status::SUCCESS`].
    pub fn is_success(self) -> bool {
        self == Status::SUCCESS
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} (0x{:02x})", self.0),
            None => write!(f, "unknown status 0x{:02x}", self.0),
        }
    }
}

/// Why Sahara failed.
#[derive(Debug, thiserror::Error)]
pub enum SaharaError {
    /// The bytes could not be moved (timeout, disconnect, …).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// Fewer bytes than a packet header.
    #[error("Sahara packet of {0} bytes is shorter than its 8-byte header")]
    Truncated(usize),
    /// The length field disagrees with the bytes that make up the packet.
    #[error("Sahara packet 0x{cmd:02x} declares {declared} bytes but {actual} were given")]
    LengthMismatch {
        /// Command number.
        cmd: u32,
        /// The length field.
        declared: u32,
        /// Bytes actually present.
        actual: usize,
    },
    /// A known command with a length other than its fixed size.
    #[error("Sahara {name} must be {expected} bytes long, the packet declares {declared}")]
    WrongSize {
        /// Command name.
        name: &'static str,
        /// The command's fixed size.
        expected: usize,
        /// The length field.
        declared: u32,
    },
    /// A length field larger than any Sahara packet (or smaller than the header).
    #[error("Sahara packet 0x{cmd:02x} declares an impossible length of {declared} bytes (at most {max})")]
    BadLength {
        /// Command number.
        cmd: u32,
        /// The length field.
        declared: u32,
        /// The cap.
        max: usize,
    },
    /// No HELLO arrived: the device is not in Sahara mode, or is stuck mid-transfer from an
    /// earlier session and needs a reset.
    #[error("the device sent no Sahara HELLO within {0:?}; reset it into EDL mode and retry")]
    NoHello(Duration),
    /// The device offers a mode this host cannot serve.
    #[error("the device's HELLO asks for mode {mode} ({}), not an image transfer", mode_name(*.mode))]
    UnsupportedMode {
        /// The HELLO's mode.
        mode: u32,
    },
    /// The device sent a packet that does not belong at this point.
    #[error("the device sent {got} while the host expected {expected}")]
    Unexpected {
        /// What the host waited for.
        expected: &'static str,
        /// What arrived.
        got: String,
    },
    /// The device asked for bytes outside the programmer.
    #[error("the device asked for {length} bytes at offset {offset} of image {image_id}, beyond the {image_len}-byte programmer")]
    OutOfRange {
        /// Image the device asked for.
        image_id: u64,
        /// Start offset.
        offset: u64,
        /// Byte count.
        length: u64,
        /// Size of the programmer.
        image_len: u64,
    },
    /// The device rejected the image (END_OF_IMAGE with a non-zero status), for instance
    /// because the programmer is not signed for this device.
    #[error("the device rejected image {image_id}: {status}")]
    ImageRejected {
        /// Image id.
        image_id: u32,
        /// The device's status.
        status: Status,
    },
    /// The upload did not finish within the overall limit.
    #[error("the programmer upload did not finish within {0:?}")]
    Overall(Duration),
    /// Reading the programmer file failed.
    #[error("reading the programmer failed: {0}")]
    Source(#[source] std::io::Error),
}

/// The name of a HELLO mode, for messages.
pub fn mode_name(mode: u32) -> &'static str {
    match mode {
        MODE_IMAGE_TX_PENDING => "image transfer pending",
        MODE_IMAGE_TX_COMPLETE => "image transfer complete",
        MODE_MEMORY_DEBUG => "memory debug (crash dump)",
        MODE_COMMAND => "command",
        _ => "unknown",
    }
}

/// One Sahara packet, in either direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Device → host, first packet: the protocol versions and the mode the device is in.
    Hello {
        /// Protocol version the device speaks.
        version: u32,
        /// Oldest version it accepts.
        version_compatible: u32,
        /// Largest command packet it accepts.
        max_cmd_packet_len: u32,
        /// What the device wants (`MODE_*`).
        mode: u32,
    },
    /// Host → device answer to HELLO.
    HelloResp {
        /// Protocol version the host speaks.
        version: u32,
        /// Oldest version the host accepts.
        version_compatible: u32,
        /// 0 to go on.
        status: Status,
        /// The mode the host agrees to (`MODE_*`).
        mode: u32,
    },
    /// Device → host: send `length` bytes of image `image_id` from `offset`.
    ReadData {
        /// Image id (13 for a Firehose programmer).
        image_id: u32,
        /// Start offset in the image.
        offset: u32,
        /// Bytes wanted.
        length: u32,
    },
    /// Device → host: the image is loaded (status 0) or was refused.
    EndOfImage {
        /// Image id.
        image_id: u32,
        /// Result of loading/authenticating it.
        status: Status,
    },
    /// Host → device: end the transfer.
    Done,
    /// Device → host: 1 when all images are loaded (the programmer now runs), 0 when more
    /// images are expected.
    DoneResp {
        /// Image transfer status.
        image_tx_status: u32,
    },
    /// Host → device: reboot.
    Reset,
    /// Device → host: reset acknowledged.
    ResetResp,
    /// Device → host: crash-dump region table is at `addr`.
    MemoryDebug {
        /// Address of the region table.
        addr: u32,
        /// Its length in bytes.
        len: u32,
    },
    /// Host → device: send `len` bytes of memory from `addr`.
    MemoryRead {
        /// Start address.
        addr: u32,
        /// Byte count.
        len: u32,
    },
    /// Device → host: command mode is ready for EXECUTE.
    CmdReady,
    /// Host → device: leave command mode for `mode`.
    SwitchMode {
        /// The new mode (`MODE_*`).
        mode: u32,
    },
    /// Host → device: run a command-mode query.
    Execute {
        /// Client command number.
        client_cmd: u32,
    },
    /// Device → host: the query's answer is `data_len` bytes.
    ExecuteResp {
        /// Client command number.
        client_cmd: u32,
        /// Bytes of answer.
        data_len: u32,
    },
    /// Host → device: send the query's answer now.
    ExecuteData {
        /// Client command number.
        client_cmd: u32,
    },
    /// 64-bit variant of [`Packet::MemoryDebug`].
    MemoryDebug64 {
        /// Address of the region table.
        addr: u64,
        /// Its length in bytes.
        len: u64,
    },
    /// 64-bit variant of [`Packet::MemoryRead`].
    MemoryRead64 {
        /// Start address.
        addr: u64,
        /// Byte count.
        len: u64,
    },
    /// 64-bit variant of [`Packet::ReadData`] (Sahara 2.8+).
    ReadData64 {
        /// Image id.
        image_id: u64,
        /// Start offset in the image.
        offset: u64,
        /// Bytes wanted.
        length: u64,
    },
    /// Host → device: restart the Sahara state machine.
    ResetStateMachine,
    /// A command this codec does not know, kept whole (at most [`MAX_PACKET_LEN`] bytes).
    Unknown {
        /// Command number.
        cmd: u32,
        /// Bytes after the header.
        body: Vec<u8>,
    },
}

/// Little-endian words read from a body whose length was already checked.
struct Body<'a>(&'a [u8]);

impl Body<'_> {
    fn u32(&self, offset: usize) -> u32 {
        let mut word = [0; 4];
        if let Some(bytes) = self.0.get(offset..offset + 4) {
            word.copy_from_slice(bytes);
        }
        u32::from_le_bytes(word)
    }

    fn u64(&self, offset: usize) -> u64 {
        let mut word = [0; 8];
        if let Some(bytes) = self.0.get(offset..offset + 8) {
            word.copy_from_slice(bytes);
        }
        u64::from_le_bytes(word)
    }
}

impl Packet {
    /// Decodes one whole packet: `bytes` must be exactly the packet, its length field must
    /// say so, and a known command must have its fixed size.
    pub fn parse(bytes: &[u8]) -> Result<Packet, SaharaError> {
        let (command, declared) = parse_header(bytes)?;
        if declared as usize != bytes.len() {
            return Err(SaharaError::LengthMismatch {
                cmd: command,
                declared,
                actual: bytes.len(),
            });
        }
        if let Some((name, expected)) = spec(command) {
            if expected != bytes.len() {
                return Err(SaharaError::WrongSize {
                    name,
                    expected,
                    declared,
                });
            }
        }
        let b = Body(&bytes[HEADER_LEN..]);
        Ok(match command {
            cmd::HELLO => Packet::Hello {
                version: b.u32(0),
                version_compatible: b.u32(4),
                max_cmd_packet_len: b.u32(8),
                mode: b.u32(12),
            },
            cmd::HELLO_RESP => Packet::HelloResp {
                version: b.u32(0),
                version_compatible: b.u32(4),
                status: Status(b.u32(8)),
                mode: b.u32(12),
            },
            cmd::READ_DATA => Packet::ReadData {
                image_id: b.u32(0),
                offset: b.u32(4),
                length: b.u32(8),
            },
            cmd::END_OF_IMAGE => Packet::EndOfImage {
                image_id: b.u32(0),
                status: Status(b.u32(4)),
            },
            cmd::DONE => Packet::Done,
            cmd::DONE_RESP => Packet::DoneResp {
                image_tx_status: b.u32(0),
            },
            cmd::RESET => Packet::Reset,
            cmd::RESET_RESP => Packet::ResetResp,
            cmd::MEMORY_DEBUG => Packet::MemoryDebug {
                addr: b.u32(0),
                len: b.u32(4),
            },
            cmd::MEMORY_READ => Packet::MemoryRead {
                addr: b.u32(0),
                len: b.u32(4),
            },
            cmd::CMD_READY => Packet::CmdReady,
            cmd::SWITCH_MODE => Packet::SwitchMode { mode: b.u32(0) },
            cmd::EXECUTE => Packet::Execute {
                client_cmd: b.u32(0),
            },
            cmd::EXECUTE_RESP => Packet::ExecuteResp {
                client_cmd: b.u32(0),
                data_len: b.u32(4),
            },
            cmd::EXECUTE_DATA => Packet::ExecuteData {
                client_cmd: b.u32(0),
            },
            cmd::MEMORY_DEBUG64 => Packet::MemoryDebug64 {
                addr: b.u64(0),
                len: b.u64(8),
            },
            cmd::MEMORY_READ64 => Packet::MemoryRead64 {
                addr: b.u64(0),
                len: b.u64(8),
            },
            cmd::READ_DATA64 => Packet::ReadData64 {
                image_id: b.u64(0),
                offset: b.u64(8),
                length: b.u64(16),
            },
            cmd::RESET_STATE_MACHINE => Packet::ResetStateMachine,
            _ => Packet::Unknown {
                cmd: command,
                body: b.0.to_vec(),
            },
        })
    }

    /// Encodes the packet with its header; reserved words are zero.
    pub fn encode(&self) -> Vec<u8> {
        let (command, words32, words64): (u32, &[u32], &[u64]) = match *self {
            Packet::Hello {
                version,
                version_compatible,
                max_cmd_packet_len,
                mode,
            } => (
                cmd::HELLO,
                &[
                    version,
                    version_compatible,
                    max_cmd_packet_len,
                    mode,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                ],
                &[],
            ),
            Packet::HelloResp {
                version,
                version_compatible,
                status,
                mode,
            } => (
                cmd::HELLO_RESP,
                &[
                    version,
                    version_compatible,
                    status.0,
                    mode,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                ],
                &[],
            ),
            Packet::ReadData {
                image_id,
                offset,
                length,
            } => (cmd::READ_DATA, &[image_id, offset, length], &[]),
            Packet::EndOfImage { image_id, status } => {
                (cmd::END_OF_IMAGE, &[image_id, status.0], &[])
            }
            Packet::Done => (cmd::DONE, &[], &[]),
            Packet::DoneResp { image_tx_status } => (cmd::DONE_RESP, &[image_tx_status], &[]),
            Packet::Reset => (cmd::RESET, &[], &[]),
            Packet::ResetResp => (cmd::RESET_RESP, &[], &[]),
            Packet::MemoryDebug { addr, len } => (cmd::MEMORY_DEBUG, &[addr, len], &[]),
            Packet::MemoryRead { addr, len } => (cmd::MEMORY_READ, &[addr, len], &[]),
            Packet::CmdReady => (cmd::CMD_READY, &[], &[]),
            Packet::SwitchMode { mode } => (cmd::SWITCH_MODE, &[mode], &[]),
            Packet::Execute { client_cmd } => (cmd::EXECUTE, &[client_cmd], &[]),
            Packet::ExecuteResp {
                client_cmd,
                data_len,
            } => (cmd::EXECUTE_RESP, &[client_cmd, data_len], &[]),
            Packet::ExecuteData { client_cmd } => (cmd::EXECUTE_DATA, &[client_cmd], &[]),
            Packet::MemoryDebug64 { addr, len } => (cmd::MEMORY_DEBUG64, &[], &[addr, len]),
            Packet::MemoryRead64 { addr, len } => (cmd::MEMORY_READ64, &[], &[addr, len]),
            Packet::ReadData64 {
                image_id,
                offset,
                length,
            } => (cmd::READ_DATA64, &[], &[image_id, offset, length]),
            Packet::ResetStateMachine => (cmd::RESET_STATE_MACHINE, &[], &[]),
            Packet::Unknown { cmd, ref body } => {
                let mut out = Vec::with_capacity(HEADER_LEN + body.len());
                out.extend_from_slice(&cmd.to_le_bytes());
                out.extend_from_slice(&((HEADER_LEN + body.len()) as u32).to_le_bytes());
                out.extend_from_slice(body);
                return out;
            }
        };
        let len = HEADER_LEN + words32.len() * 4 + words64.len() * 8;
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&command.to_le_bytes());
        out.extend_from_slice(&(len as u32).to_le_bytes());
        for word in words32 {
            out.extend_from_slice(&word.to_le_bytes());
        }
        for word in words64 {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out
    }

    /// The command's protocol name, for messages.
    pub fn name(&self) -> String {
        let command = match self {
            Packet::Unknown { cmd, .. } => return format!("unknown command 0x{cmd:02x}"),
            Packet::Hello { .. } => cmd::HELLO,
            Packet::HelloResp { .. } => cmd::HELLO_RESP,
            Packet::ReadData { .. } => cmd::READ_DATA,
            Packet::EndOfImage { .. } => cmd::END_OF_IMAGE,
            Packet::Done => cmd::DONE,
            Packet::DoneResp { .. } => cmd::DONE_RESP,
            Packet::Reset => cmd::RESET,
            Packet::ResetResp => cmd::RESET_RESP,
            Packet::MemoryDebug { .. } => cmd::MEMORY_DEBUG,
            Packet::MemoryRead { .. } => cmd::MEMORY_READ,
            Packet::CmdReady => cmd::CMD_READY,
            Packet::SwitchMode { .. } => cmd::SWITCH_MODE,
            Packet::Execute { .. } => cmd::EXECUTE,
            Packet::ExecuteResp { .. } => cmd::EXECUTE_RESP,
            Packet::ExecuteData { .. } => cmd::EXECUTE_DATA,
            Packet::MemoryDebug64 { .. } => cmd::MEMORY_DEBUG64,
            Packet::MemoryRead64 { .. } => cmd::MEMORY_READ64,
            Packet::ReadData64 { .. } => cmd::READ_DATA64,
            Packet::ResetStateMachine => cmd::RESET_STATE_MACHINE,
        };
        spec(command).map_or("?", |(name, _)| name).to_string()
    }
}

/// Reads `cmd` and `length` and rejects a length no packet can have.
fn parse_header(bytes: &[u8]) -> Result<(u32, u32), SaharaError> {
    if bytes.len() < HEADER_LEN {
        return Err(SaharaError::Truncated(bytes.len()));
    }
    let b = Body(bytes);
    let (command, declared) = (b.u32(0), b.u32(4));
    if (declared as usize) < HEADER_LEN || declared as usize > MAX_PACKET_LEN {
        return Err(SaharaError::BadLength {
            cmd: command,
            declared,
            max: MAX_PACKET_LEN,
        });
    }
    Ok((command, declared))
}

/// Frames Sahara packets out of a transport, whether each read is one packet (USB bulk) or
/// whatever bytes are available (a serial port).
///
/// Bytes read past the end of a packet stay buffered for the next packet or for
/// [`PacketReader::read_raw`]; the buffer never grows beyond `2 × MAX_PACKET_LEN`.
#[derive(Debug)]
pub struct PacketReader {
    buf: ReadBuffer,
}

impl Default for PacketReader {
    fn default() -> Self {
        Self::new()
    }
}

impl PacketReader {
    /// An empty reader.
    pub fn new() -> Self {
        PacketReader {
            buf: ReadBuffer::new(2 * MAX_PACKET_LEN),
        }
    }

    /// Bytes received but not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        self.buf.buffered()
    }

    /// Reads the next packet within `timeout`. A length field above [`MAX_PACKET_LEN`] is
    /// refused as soon as the header is in, before waiting for a body.
    pub fn read_packet(
        &mut self,
        transport: &mut dyn Transport,
        timeout: Duration,
    ) -> Result<Packet, SaharaError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(packet) = self.take_packet()? {
                return Ok(packet);
            }
            self.buf.fill(transport, deadline, timeout)?;
        }
    }

    /// Cuts a complete packet from the buffer, if one is there.
    fn take_packet(&mut self) -> Result<Option<Packet>, SaharaError> {
        let buffered = self.buf.buffered();
        if buffered.len() < HEADER_LEN {
            return Ok(None);
        }
        let (_, declared) = parse_header(buffered)?;
        let declared = declared as usize;
        if buffered.len() < declared {
            return Ok(None);
        }
        let packet = Packet::parse(&buffered[..declared]);
        self.buf.consume(declared);
        packet.map(Some)
    }

    /// Fills `out` with raw (unframed) bytes: buffered ones first, then straight from the
    /// transport, never reading past `out.len()`. A device uses this for the image data
    /// that answers its READ_DATA.
    pub fn read_raw(
        &mut self,
        transport: &mut dyn Transport,
        out: &mut [u8],
        timeout: Duration,
    ) -> Result<(), SaharaError> {
        let deadline = Instant::now() + timeout;
        let mut filled = self.buf.take_into(out);
        while filled < out.len() {
            filled += read_some(transport, &mut out[filled..], deadline, timeout)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(words: &[u32]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    #[test]
    fn golden_bytes() {
        let cases: Vec<(Packet, Vec<u8>)> = vec![
            (
                Packet::Hello {
                    version: 2,
                    version_compatible: 1,
                    max_cmd_packet_len: 0x400,
                    mode: MODE_IMAGE_TX_PENDING,
                },
                words(&[1, 0x30, 2, 1, 0x400, 0, 0, 0, 0, 0, 0, 0]),
            ),
            (
                Packet::HelloResp {
                    version: 2,
                    version_compatible: 1,
                    status: Status::SUCCESS,
                    mode: MODE_IMAGE_TX_PENDING,
                },
                words(&[2, 0x30, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
            ),
            (
                Packet::ReadData {
                    image_id: 13,
                    offset: 0x1000,
                    length: 0x34,
                },
                words(&[3, 0x14, 13, 0x1000, 0x34]),
            ),
            (
                Packet::ReadData64 {
                    image_id: 13,
                    offset: 0x1_0000_0000,
                    length: 0x200,
                },
                words(&[0x12, 0x20, 13, 0, 0, 1, 0x200, 0]),
            ),
            (
                Packet::EndOfImage {
                    image_id: 13,
                    status: Status(0x21),
                },
                words(&[4, 0x10, 13, 0x21]),
            ),
            (Packet::Done, words(&[5, 8])),
            (
                Packet::DoneResp { image_tx_status: 1 },
                words(&[6, 0x0C, 1]),
            ),
        ];
        for (packet, bytes) in cases {
            assert_eq!(packet.encode(), bytes, "{packet:?}");
            assert_eq!(Packet::parse(&bytes).unwrap(), packet);
        }
    }

    #[test]
    fn every_packet_round_trips() {
        let packets = [
            Packet::Reset,
            Packet::ResetResp,
            Packet::MemoryDebug { addr: 1, len: 2 },
            Packet::MemoryRead { addr: 3, len: 4 },
            Packet::CmdReady,
            Packet::SwitchMode { mode: MODE_COMMAND },
            Packet::Execute { client_cmd: 1 },
            Packet::ExecuteResp {
                client_cmd: 1,
                data_len: 4,
            },
            Packet::ExecuteData { client_cmd: 1 },
            Packet::MemoryDebug64 { addr: 5, len: 6 },
            Packet::MemoryRead64 { addr: 7, len: 8 },
            Packet::ResetStateMachine,
            Packet::Unknown {
                cmd: 0x14,
                body: vec![9, 9, 9, 9],
            },
        ];
        for packet in packets {
            assert_eq!(Packet::parse(&packet.encode()).unwrap(), packet);
        }
    }

    #[test]
    fn malformed_packets_are_rejected() {
        assert!(matches!(
            Packet::parse(&[1, 0, 0]),
            Err(SaharaError::Truncated(3))
        ));
        // Length field says 0x30 but only the header is there.
        assert!(matches!(
            Packet::parse(&words(&[1, 0x30])),
            Err(SaharaError::LengthMismatch {
                declared: 0x30,
                actual: 8,
                ..
            })
        ));
        // DONE with a body.
        assert!(matches!(
            Packet::parse(&words(&[5, 0x0C, 0])),
            Err(SaharaError::WrongSize {
                name: "DONE",
                expected: 8,
                declared: 0x0C
            })
        ));
        assert!(matches!(
            Packet::parse(&words(&[3, 4])),
            Err(SaharaError::BadLength { declared: 4, .. })
        ));
    }

    #[test]
    fn status_names() {
        assert_eq!(Status(0x21).to_string(), "HASH_TABLE_AUTH_FAILURE (0x21)");
        assert_eq!(Status(0x28).name(), Some("HW_BULK_TRANSFER_ERROR"));
        assert_eq!(Status(0x99).to_string(), "unknown status 0x99");
        assert!(Status(0).is_success());
    }
}
