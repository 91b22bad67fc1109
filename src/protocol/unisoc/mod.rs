//! Unisoc (Spreadtrum) download protocol: the boot ROM (BROM), then the two loaders the host
//! sends it, FDL1 (sets up DRAM) and FDL2 (reads and writes flash by partition name).
//!
//! Every fact here is from ilyakurdyukov/spreadtrum_flash (`spd_cmd.h`, `spd_dump.c`,
//! `custom_fdl/packet.c`, `custom_fdl/common.c`) and its fork TomKing062/spreadtrum_flash;
//! no command is used that those tools do not send.
//!
//! * A frame is `0x7E | type (BE16) | length (BE16) | payload | check (BE16) | 0x7E`.
//!   Inside it 0x7E and 0x7D travel as 0x7D followed by the byte XOR 0x20 ("transcode"),
//!   which FDL2 can be told to stop doing (`DISABLE_TRANSCODE`, 0x21).
//! * The boot ROM checks frames with CRC-16 (polynomial 0x1021, initial value 0, MSB first);
//!   the FDLs with a 16-bit ones' complement sum ([`Check::Sum`]).
//! * The host starts each stage with bare 0x7E bytes ("check baud"); the stage answers
//!   `REP_VER` (0x81) with its version string. A boot ROM whose version is not exactly
//!   `"SPRD3\0"` is treated as one with secure boot on, as spd_dump does.
//! * Loaders go to an address: `START_DATA(addr BE32, size BE32)`, `MIDST_DATA` blocks
//!   (528 bytes to the boot ROM, as spd_dump sends), `END_DATA`, `EXEC_DATA`.
//! * FDL2 addresses partitions by name: a 72-byte UTF-16LE name and a little-endian size
//!   (`START_DATA`, `READ_START`, `ERASE_FLASH`), then `MIDST_DATA` blocks (spd_dump: 4 KiB
//!   by default) or `READ_MIDST(len LE32, offset LE32)` answered by `REP_READ_FLASH` (0x93),
//!   and `END_DATA` / `READ_END`. `READ_PARTITION` (0x2D) lists the partitions, answered by
//!   `REP_READ_PARTITION` (0xBA): 0x4C-byte entries, name and size in KiB (spd_dump's
//!   `partition_list` prints `size >> 10` as MiB).

pub mod client;

use std::fmt;

/// Frame delimiter, and the byte the host sends alone to ask a stage for its version.
pub const FLAG: u8 = 0x7E;
/// Escape byte: the next byte is XORed with 0x20.
pub const ESCAPE: u8 = 0x7D;
/// Bytes of type + length.
pub const HEADER_LEN: usize = 4;
/// Largest payload a frame can declare (its length field is 16 bits).
pub const MAX_PAYLOAD: usize = 0xFFFF;
/// Bytes of a partition name field: 36 UTF-16LE code units.
pub const NAME_LEN: usize = 72;
/// Bytes of one `REP_READ_PARTITION` entry: the name and a LE32 size in KiB.
pub const PARTITION_ENTRY_LEN: usize = 0x4C;
/// The only boot ROM version a device without secure boot answers (with its NUL).
pub const OPEN_BROM_VERSION: &[u8] = b"SPRD3\0";

/// Commands and replies, as `spd_cmd.h` numbers them.
pub mod cmd {
    /// Link set-up; every stage answers ACK.
    pub const CONNECT: u16 = 0x00;
    /// Start of a download: `addr, size` (BE32) to a loader stage, name and size to FDL2.
    pub const START_DATA: u16 = 0x01;
    /// One block of the download.
    pub const MIDST_DATA: u16 = 0x02;
    /// End of the download.
    pub const END_DATA: u16 = 0x03;
    /// Run what was downloaded.
    pub const EXEC_DATA: u16 = 0x04;
    /// Reboot into the installed system.
    pub const NORMAL_RESET: u16 = 0x05;
    /// Erase a partition (by name, size 0: all of it).
    pub const ERASE_FLASH: u16 = 0x0A;
    /// Start reading a partition: name and the size that will be read up to.
    pub const READ_START: u16 = 0x10;
    /// Read `len` bytes at `offset` of the selected partition.
    pub const READ_MIDST: u16 = 0x11;
    /// End the read.
    pub const READ_END: u16 = 0x12;
    /// Keep charging while the loader runs.
    pub const KEEP_CHARGE: u16 = 0x13;
    /// Power off once the cable is pulled.
    pub const POWER_OFF: u16 = 0x17;
    /// Stop escaping 0x7E/0x7D, in both directions, after the ACK.
    pub const DISABLE_TRANSCODE: u16 = 0x21;
    /// List the partitions.
    pub const READ_PARTITION: u16 = 0x2D;
    /// Acknowledged.
    pub const REP_ACK: u16 = 0x80;
    /// Version string (answer to check baud).
    pub const REP_VER: u16 = 0x81;
    /// Invalid command.
    pub const REP_INVALID_CMD: u16 = 0x82;
    /// Unknown command.
    pub const REP_UNKNOWN_CMD: u16 = 0x83;
    /// Operation failed.
    pub const REP_OPERATION_FAILED: u16 = 0x84;
    /// MIDST_DATA without START_DATA.
    pub const REP_DOWN_NOT_START: u16 = 0x86;
    /// END_DATA before all bytes arrived.
    pub const REP_DOWN_EARLY_END: u16 = 0x88;
    /// A destination the stage does not accept.
    pub const REP_DOWN_DEST_ERROR: u16 = 0x89;
    /// More bytes than START_DATA announced.
    pub const REP_DOWN_SIZE_ERROR: u16 = 0x8A;
    /// A frame whose check failed.
    pub const REP_VERIFY_ERROR: u16 = 0x8B;
    /// Data read back.
    pub const REP_READ_FLASH: u16 = 0x93;
    /// FDL2's answer to EXEC_DATA on many phones; spd_dump and the README say it is
    /// returned unconditionally, so it is taken as "running".
    pub const REP_INCOMPATIBLE_PARTITION: u16 = 0x96;
    /// A loader whose signature the secure boot ROM refused.
    pub const REP_SIGN_VERIFY_ERROR: u16 = 0xA6;
    /// The partition list.
    pub const REP_READ_PARTITION: u16 = 0xBA;
    /// Unsupported command.
    pub const REP_UNSUPPORTED_COMMAND: u16 = 0xFE;
    /// A log line the stage sends between answers; hosts skip it.
    pub const REP_LOG: u16 = 0xFF;

    /// A reply's name, for messages.
    pub fn reply_name(kind: u16) -> &'static str {
        match kind {
            REP_ACK => "ACK",
            REP_VER => "VER",
            REP_INVALID_CMD => "INVALID_CMD",
            REP_UNKNOWN_CMD => "UNKNOWN_CMD",
            REP_OPERATION_FAILED => "OPERATION_FAILED",
            REP_DOWN_NOT_START => "DOWN_NOT_START",
            REP_DOWN_EARLY_END => "DOWN_EARLY_END",
            REP_DOWN_DEST_ERROR => "DOWN_DEST_ERROR",
            REP_DOWN_SIZE_ERROR => "DOWN_SIZE_ERROR",
            REP_VERIFY_ERROR => "VERIFY_ERROR (the frame's checksum was wrong)",
            REP_READ_FLASH => "READ_FLASH",
            REP_INCOMPATIBLE_PARTITION => "INCOMPATIBLE_PARTITION",
            REP_SIGN_VERIFY_ERROR => "SIGN_VERIFY_ERROR (the loader's signature was refused)",
            REP_READ_PARTITION => "READ_PARTITION",
            REP_UNSUPPORTED_COMMAND => "UNSUPPORTED_COMMAND",
            REP_LOG => "LOG",
            _ => "an unknown reply",
        }
    }
}

/// How a stage checks its frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The boot ROM: CRC-16, polynomial 0x1021.
    Crc16,
    /// FDL1 and FDL2: 16-bit ones' complement sum.
    Sum,
}

/// Who sent a frame: the two directions compute the FDL sum differently for odd lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Host to device.
    ToDevice,
    /// Device to host.
    ToHost,
}

/// CRC-16 with polynomial 0x1021, initial value 0, no reflection, no final XOR (the boot
/// ROM's check; `spd_crc16` in spd_dump).
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The ones' complement of the ones'-complement sum of `data` read as little-endian 16-bit
/// words (a trailing odd byte is the low half of a last word): FDL's `dl_fastchk16`.
pub fn fdl_sum_le(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        sum += u32::from(u16::from_le_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last);
    }
    sum = (sum >> 16) + (sum & 0xFFFF);
    sum += sum >> 16;
    !(sum as u16)
}

/// The check field of a frame whose type, length and payload are `data`.
///
/// FDL stages accept a frame when the sum over its bytes *and* its check field is zero
/// (custom_fdl's `dl_get_packet`): for an even `data` length that is the sum byte-swapped,
/// for an odd one the sum as it is (spd_dump's `CHK_FIXZERO`). A stage sends the swapped sum
/// whatever the length, and hosts check it so (`CHK_ORIG`).
pub fn check_value(check: Check, direction: Direction, data: &[u8]) -> u16 {
    match check {
        Check::Crc16 => crc16(data),
        Check::Sum => {
            let sum = fdl_sum_le(data);
            if direction == Direction::ToDevice && data.len() % 2 == 1 {
                sum
            } else {
                sum.swap_bytes()
            }
        }
    }
}

/// Whether a frame received by a stage (`data` followed by its check field, as sent) passes
/// the stage's check, computed the way the device computes it.
pub fn device_accepts(check: Check, data_and_check: &[u8]) -> bool {
    match check {
        Check::Crc16 => crc16(data_and_check) == 0,
        Check::Sum => fdl_sum_le(data_and_check) == 0,
    }
}

/// One decoded frame.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    /// Command or reply type.
    pub kind: u16,
    /// The payload.
    pub payload: Vec<u8>,
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Frame(0x{:02x}, {} bytes)",
            self.kind,
            self.payload.len()
        )
    }
}

/// Encodes one frame: header, payload and check, escaped when `transcode` is on, between
/// two flags. `payload` longer than [`MAX_PAYLOAD`] is a caller bug and is refused.
pub fn encode(
    kind: u16,
    payload: &[u8],
    check: Check,
    direction: Direction,
    transcode: bool,
) -> Result<Vec<u8>, UnisocError> {
    let len =
        u16::try_from(payload.len()).map_err(|_| UnisocError::PayloadTooLarge(payload.len()))?;
    let mut raw = Vec::with_capacity(HEADER_LEN + payload.len() + 2);
    raw.extend_from_slice(&kind.to_be_bytes());
    raw.extend_from_slice(&len.to_be_bytes());
    raw.extend_from_slice(payload);
    let value = check_value(check, direction, &raw);
    raw.extend_from_slice(&value.to_be_bytes());
    Ok(delimit(&raw, transcode))
}

/// Puts flags around `raw` (header, payload and check), escaping it when `transcode` is on.
pub fn delimit(raw: &[u8], transcode: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 8 + 2);
    out.push(FLAG);
    for &b in raw {
        if transcode && (b == FLAG || b == ESCAPE) {
            out.push(ESCAPE);
            out.push(b ^ 0x20);
        } else {
            out.push(b);
        }
    }
    out.push(FLAG);
    out
}

/// Device text made printable: ASCII graphic characters and spaces, NULs and the rest
/// dropped, at most 64 characters.
pub fn text(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| char::from(b))
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(64)
        .collect::<String>()
        .trim()
        .to_string()
}

/// Why a frame could not be read or an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum UnisocError {
    /// The link failed.
    #[error(transparent)]
    Transport(#[from] crate::transport::TransportError),
    /// A payload that cannot be framed.
    #[error("a {0}-byte payload does not fit in one frame (at most 65535 bytes)")]
    PayloadTooLarge(usize),
    /// 0x7D followed by a byte that is not an escaped 0x7E or 0x7D.
    #[error("the device sent a badly escaped byte (0x7d 0x{0:02x})")]
    BadEscape(u8),
    /// A frame shorter than its header and check.
    #[error("the device sent a {0}-byte frame, shorter than any valid one")]
    TooShort(usize),
    /// More bytes than the frame's length field declared.
    #[error("the device sent a frame longer than its declared {declared}-byte payload")]
    TooLong {
        /// The declared payload length.
        declared: usize,
    },
    /// A frame whose check field is wrong.
    #[error("the device sent a frame with a wrong checksum (0x{got:04x}, expected 0x{want:04x})")]
    BadCheck {
        /// The check field.
        got: u16,
        /// What the frame's bytes give.
        want: u16,
    },
    /// A reply other than the one the step needs.
    #[error("{step}: the device answered {name} (0x{kind:02x}){detail}")]
    Unexpected {
        /// What the host was doing.
        step: String,
        /// The reply type.
        kind: u16,
        /// Its name.
        name: &'static str,
        /// The text the device sent with it, if any.
        detail: String,
    },
    /// Only log frames for too long.
    #[error("{0}: the device sent only log lines, no answer")]
    OnlyLogs(String),
    /// The boot ROM did not answer the check-baud bytes with its version.
    #[error("the device did not answer the version request: {0}")]
    NoVersion(String),
    /// A reply whose payload does not have the shape the protocol gives it.
    #[error("{0}")]
    Malformed(String),
    /// A name that cannot be sent as a partition name.
    #[error("partition name {0:?} is not 1 to 35 ASCII characters")]
    BadName(String),
}

/// Turns received bytes into frames, one at a time, with every length bounded.
///
/// It keeps bytes that arrived after a frame for the next one, since a serial line delivers
/// whatever has arrived. Bytes before the first flag are line noise and are skipped.
#[derive(Debug)]
pub struct Decoder {
    check: Check,
    direction: Direction,
    transcode: bool,
    state: DecodeState,
}

#[derive(Debug, Default)]
struct DecodeState {
    in_frame: bool,
    escaped: bool,
    raw: Vec<u8>,
}

/// What [`Decoder::push`] made of one byte.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing yet.
    More,
    /// A flag with no frame content before it: a check-baud byte (to a device), or the
    /// flag that opens the next frame.
    BareFlag,
    /// A complete frame.
    Frame(Frame),
}

impl Decoder {
    /// A decoder for frames checked with `check`, sent in `direction`.
    pub fn new(check: Check, direction: Direction) -> Decoder {
        Decoder {
            check,
            direction,
            transcode: true,
            state: DecodeState::default(),
        }
    }

    /// The check in force.
    pub fn check(&self) -> Check {
        self.check
    }

    /// Switches the check (the host after EXEC_DATA of FDL1).
    pub fn set_check(&mut self, check: Check) {
        self.check = check;
    }

    /// Whether 0x7D escapes are decoded.
    pub fn transcode(&self) -> bool {
        self.transcode
    }

    /// Switches escape decoding (after `DISABLE_TRANSCODE`).
    pub fn set_transcode(&mut self, on: bool) {
        self.transcode = on;
    }

    /// Drops a partial frame.
    pub fn reset(&mut self) {
        self.state = DecodeState::default();
    }

    /// Feeds one byte.
    pub fn push(&mut self, byte: u8) -> Result<Step, UnisocError> {
        let s = &mut self.state;
        if self.transcode {
            if s.escaped {
                s.escaped = false;
                if byte != FLAG ^ 0x20 && byte != ESCAPE ^ 0x20 {
                    s.in_frame = false;
                    s.raw.clear();
                    return Err(UnisocError::BadEscape(byte));
                }
                return self.store(byte ^ 0x20);
            }
            return match byte {
                FLAG => self.flag(),
                ESCAPE if s.in_frame => {
                    s.escaped = true;
                    Ok(Step::More)
                }
                _ if !s.in_frame => Ok(Step::More),
                _ => self.store(byte),
            };
        }
        // Without escapes a flag inside the frame is data: the length field decides.
        if !self.state.in_frame {
            if byte == FLAG {
                self.state.in_frame = true;
                return Ok(Step::BareFlag);
            }
            return Ok(Step::More);
        }
        if self.state.raw.is_empty() && byte == FLAG {
            return Ok(Step::BareFlag);
        }
        if let Some(total) = self.total_len() {
            if self.state.raw.len() == total {
                if byte != FLAG {
                    self.state.in_frame = false;
                    self.state.raw.clear();
                    return Err(UnisocError::TooLong {
                        declared: total - HEADER_LEN - 2,
                    });
                }
                return self.finish();
            }
        }
        self.store(byte)
    }

    fn total_len(&self) -> Option<usize> {
        let raw = &self.state.raw;
        (raw.len() >= HEADER_LEN)
            .then(|| usize::from(u16::from_be_bytes([raw[2], raw[3]])) + HEADER_LEN + 2)
    }

    fn store(&mut self, byte: u8) -> Result<Step, UnisocError> {
        if let Some(total) = self.total_len() {
            if self.state.raw.len() >= total {
                self.state.in_frame = false;
                self.state.raw.clear();
                return Err(UnisocError::TooLong {
                    declared: total - HEADER_LEN - 2,
                });
            }
        }
        self.state.raw.push(byte);
        Ok(Step::More)
    }

    fn flag(&mut self) -> Result<Step, UnisocError> {
        if !self.state.in_frame {
            // A flag with nothing before it opens a frame, and is all a check-baud is.
            self.state.in_frame = true;
            return Ok(Step::BareFlag);
        }
        if self.state.raw.is_empty() {
            return Ok(Step::BareFlag);
        }
        self.finish()
    }

    fn finish(&mut self) -> Result<Step, UnisocError> {
        let raw = std::mem::take(&mut self.state.raw);
        // With escapes on, the closing flag may also open the next frame; spd_dump and the
        // FDL treat repeated flags as one.
        self.state.in_frame = self.transcode;
        if raw.len() < HEADER_LEN + 2 {
            return Err(UnisocError::TooShort(raw.len()));
        }
        let total = self.total_len_of(&raw);
        if raw.len() != total {
            return Err(UnisocError::TooShort(raw.len()));
        }
        let (data, check) = raw.split_at(raw.len() - 2);
        let got = u16::from_be_bytes([check[0], check[1]]);
        let ok = match self.direction {
            Direction::ToDevice => device_accepts(self.check, &raw),
            Direction::ToHost => got == check_value(self.check, Direction::ToHost, data),
        };
        if !ok {
            return Err(UnisocError::BadCheck {
                got,
                want: check_value(self.check, self.direction, data),
            });
        }
        Ok(Step::Frame(Frame {
            kind: u16::from_be_bytes([data[0], data[1]]),
            payload: data[HEADER_LEN..].to_vec(),
        }))
    }

    fn total_len_of(&self, raw: &[u8]) -> usize {
        usize::from(u16::from_be_bytes([raw[2], raw[3]])) + HEADER_LEN + 2
    }
}

/// A partition name as FDL2 takes it: 36 UTF-16LE code units, NUL-padded, at most 35
/// characters so that a NUL ends it (spd_dump's `copy_to_wstr` refuses longer ones).
pub fn encode_name(name: &str) -> Result<[u8; NAME_LEN], UnisocError> {
    if name.is_empty() || name.len() >= NAME_LEN / 2 || !name.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(UnisocError::BadName(name.to_string()));
    }
    let mut out = [0u8; NAME_LEN];
    for (i, b) in name.bytes().enumerate() {
        out[i * 2] = b;
    }
    Ok(out)
}

/// The name in a 72-byte UTF-16LE field, up to its NUL; `None` when it holds anything but
/// printable ASCII (device text is untrusted).
pub fn decode_name(field: &[u8]) -> Option<String> {
    let mut name = String::new();
    for unit in field.chunks_exact(2).take(NAME_LEN / 2) {
        let c = u16::from_le_bytes([unit[0], unit[1]]);
        if c == 0 {
            break;
        }
        let c = u8::try_from(c).ok().filter(u8::is_ascii_graphic)?;
        name.push(char::from(c));
    }
    (!name.is_empty()).then_some(name)
}

/// The payload that selects a partition: name and LE32 size (spd_dump's `select_partition`
/// without the 64-bit form, which is for sizes of 4 GiB and more).
pub fn partition_payload(name: &str, size: u64) -> Result<Vec<u8>, UnisocError> {
    let mut out = encode_name(name)?.to_vec();
    match u32::try_from(size) {
        Ok(size) => out.extend_from_slice(&size.to_le_bytes()),
        Err(_) => {
            // spd_dump's mode64: low, high, then 8 bytes of zero.
            out.extend_from_slice(&(size as u32).to_le_bytes());
            out.extend_from_slice(&((size >> 32) as u32).to_le_bytes());
            out.extend_from_slice(&[0; 8]);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes as posted in TomKing062/CVE-2022-38694_unlock_bootloader issue #39 (an
    /// spd_dump `--verbose 2` run against a UD710 boot ROM); see
    /// tests/data/unisoc/transcripts.txt.
    const START_DATA_3F88: [u8; 16] = [
        0x7e, 0x00, 0x01, 0x00, 0x08, 0x00, 0x00, 0x3f, 0x88, 0x00, 0x00, 0x00, 0x08, 0xba, 0xcc,
        0x7e,
    ];
    const ACK_BROM: [u8; 8] = [0x7e, 0x00, 0x80, 0x00, 0x00, 0x3b, 0x5a, 0x7e];
    const MIDST_ZERO8: [u8; 16] = [
        0x7e, 0x00, 0x02, 0x00, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0x89, 0x4c, 0x7e,
    ];

    #[test]
    fn brom_frames_match_a_real_capture() {
        let mut payload = 0x3f88u32.to_be_bytes().to_vec();
        payload.extend_from_slice(&8u32.to_be_bytes());
        let sent = encode(
            cmd::START_DATA,
            &payload,
            Check::Crc16,
            Direction::ToDevice,
            true,
        );
        assert_eq!(sent.unwrap(), START_DATA_3F88);
        let midst = encode(
            cmd::MIDST_DATA,
            &[0; 8],
            Check::Crc16,
            Direction::ToDevice,
            true,
        );
        assert_eq!(midst.unwrap(), MIDST_ZERO8);
        let mut d = Decoder::new(Check::Crc16, Direction::ToHost);
        let steps: Vec<Step> = ACK_BROM.iter().map(|&b| d.push(b).unwrap()).collect();
        assert_eq!(
            steps.last(),
            Some(&Step::Frame(Frame {
                kind: cmd::REP_ACK,
                payload: vec![]
            }))
        );
        let mut dev = Decoder::new(Check::Crc16, Direction::ToDevice);
        let last = START_DATA_3F88.iter().map(|&b| dev.push(b).unwrap()).last();
        assert!(matches!(last, Some(Step::Frame(f)) if f.kind == cmd::START_DATA));
    }

    #[test]
    fn fdl_sums_pass_the_device_check_for_odd_and_even_lengths() {
        for len in [0usize, 1, 2, 3, 527, 528] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 37 + 0x7d) as u8).collect();
            let frame = encode(0x02, &payload, Check::Sum, Direction::ToDevice, true).unwrap();
            let mut dev = Decoder::new(Check::Sum, Direction::ToDevice);
            let last = frame.iter().map(|&b| dev.push(b).unwrap()).last();
            assert!(
                matches!(last, Some(Step::Frame(f)) if f.payload == payload),
                "len {len}"
            );
            let back = encode(0x93, &payload, Check::Sum, Direction::ToHost, false).unwrap();
            let mut host = Decoder::new(Check::Sum, Direction::ToHost);
            host.set_transcode(false);
            let last = back.iter().map(|&b| host.push(b).unwrap()).last();
            assert!(
                matches!(last, Some(Step::Frame(f)) if f.payload == payload),
                "len {len}"
            );
        }
    }

    #[test]
    fn a_flipped_bit_is_a_bad_check() {
        let mut frame = encode(0x00, b"ab", Check::Sum, Direction::ToHost, true).unwrap();
        frame[5] ^= 1;
        let mut host = Decoder::new(Check::Sum, Direction::ToHost);
        let errs: Vec<_> = frame.iter().filter_map(|&b| host.push(b).err()).collect();
        assert!(matches!(errs[..], [UnisocError::BadCheck { .. }]));
    }

    #[test]
    fn frames_longer_than_declared_are_refused() {
        let mut host = Decoder::new(Check::Sum, Direction::ToHost);
        let mut bytes = vec![FLAG, 0, 0x80, 0, 1];
        bytes.extend(std::iter::repeat_n(0x11, 100));
        let err = bytes.iter().find_map(|&b| host.push(b).err());
        assert!(matches!(err, Some(UnisocError::TooLong { declared: 1 })));
    }

    #[test]
    fn names_round_trip_and_are_bounded() {
        let field = encode_name("l_fixnv1").unwrap();
        assert_eq!(decode_name(&field).as_deref(), Some("l_fixnv1"));
        assert!(encode_name(&"x".repeat(36)).is_err());
        assert!(encode_name("").is_err());
        assert_eq!(decode_name(&[0xff, 0xfe, 0, 0]), None);
    }
}
