//! Who a device in EDL is, asked the way qdl and edl ask: Sahara command mode.
//!
//! The host answers HELLO with mode 3 (command), the boot ROM says CMD_READY, and each
//! query is EXECUTE → EXECUTE_RESP (the answer's length) → EXECUTE_DATA → the answer's raw
//! bytes. SWITCH_MODE back to image transfer makes the device start over with a second
//! HELLO, which the programmer upload then answers.
//!
//! Real answers vary, and each variation is handled here, in one place:
//! * the chip serial is 4 bytes on most devices, 8 on some, and a placeholder (0, all
//!   ones, `0x1234`) on others, which identifies nothing;
//! * Sahara 3 boot ROMs refuse `MSM_HW_ID_READ`; their `READ_CHIP_ID_V3` answer carries
//!   the same MSM, OEM and model ids at fixed offsets, and some v3 devices answer neither;
//! * the OEM public-key hash is 32, 48 or 64 bytes: a SHA-384 hash is often followed by
//!   48 zero bytes, and a SHA-256 one is sometimes sent twice;
//! * a boot ROM may refuse command mode altogether (END_OF_IMAGE right after the mode-3
//!   HELLO_RESP): identity is then unknown, and the upload goes on as without it.

use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::client::{wait_for_hello, Greeting, HOST_VERSION, HOST_VERSION_COMPATIBLE};
use super::{
    Packet, PacketReader, SaharaError, SaharaOptions, Status, MODE_COMMAND, MODE_IMAGE_TX_PENDING,
};
use crate::transport::Transport;

/// Command-mode client commands, as on the wire.
pub mod client_cmd {
    /// The chip's serial number.
    pub const SERIAL_NUM_READ: u32 = 0x01;
    /// MSM hardware id: msm_id << 32 | oem_id << 16 | model_id (not on Sahara 3).
    pub const MSM_HW_ID_READ: u32 = 0x02;
    /// Hash of the OEM's root public key (the key programmers are signed with).
    pub const OEM_PK_HASH_READ: u32 = 0x03;
    /// Version of the secondary boot loader.
    pub const GET_SOFTWARE_VERSION_SBL: u32 = 0x07;
    /// Sahara 3: chip identity, ids at fixed offsets.
    pub const READ_CHIP_ID_V3: u32 = 0x0A;
}

/// Longest command-mode answer accepted; real ones are at most a few hundred bytes.
pub const MAX_ANSWER_LEN: u32 = 1024;

/// Serial numbers that boot ROMs report when they have none.
const PLACEHOLDER_SERIALS: [u64; 3] = [0, 0x1234, 0xFFFF_FFFF];

/// An MSM hardware id: which chip, which OEM, which model a programmer is signed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hwid(pub u64);

impl Hwid {
    /// The chip (MSM) id.
    pub fn msm_id(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The OEM id.
    pub fn oem_id(self) -> u16 {
        (self.0 >> 16) as u16
    }

    /// The model id.
    pub fn model_id(self) -> u16 {
        self.0 as u16
    }

    /// Parses `0x` and 16 hex digits (or fewer), as manifests and the quirks file write it.
    pub fn parse(text: &str) -> Option<Hwid> {
        let digits = text
            .trim()
            .strip_prefix("0x")
            .or_else(|| text.trim().strip_prefix("0X"))?;
        if digits.is_empty() || digits.len() > 16 {
            return None;
        }
        u64::from_str_radix(digits, 16).ok().map(Hwid)
    }
}

impl fmt::Display for Hwid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:016x}", self.0)
    }
}

impl Serialize for Hwid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Parses an OEM public-key hash written in hex (32 to 128 bytes, padding included, as
/// tools print a device's answer), trimmed as a device answer is.
pub fn parse_pk_hash(text: &str) -> Option<Vec<u8>> {
    let bytes = hex::decode(text.trim()).ok()?;
    (32..=128)
        .contains(&bytes.len())
        .then(|| trim_pk_hash(&bytes))
        .flatten()
}

/// Whether two OEM key hashes (hex, as [`parse_pk_hash`] takes them) name the same key.
///
/// Both are trimmed of padding and repetition first. The length that is left is the
/// algorithm: 32 bytes SHA-256, 48 bytes SHA-384 (newer chips). Hashes of different
/// algorithms share no bytes, so neither a prefix nor a padded comparison says anything:
/// `None`, "cannot be compared", which callers treat as a fact not reported. `Some(false)`
/// only for two hashes of one algorithm that differ.
pub fn same_pk_hash(a: &str, b: &str) -> Option<bool> {
    let (a, b) = (parse_pk_hash(a)?, parse_pk_hash(b)?);
    (a.len() == b.len()).then(|| a == b)
}

/// Whether a chip that reported `hwid` and `pk_hash` is the one declared by `want_hwid`
/// and `want_pk` (a package's programmer, a quirks model): `Some(false)` when a fact known
/// on both sides differs, `Some(true)` when at least one agrees and none differs, `None`
/// when no fact can be compared (see [`same_pk_hash`]).
pub fn chip_fits(
    want_hwid: Option<Hwid>,
    want_pk: Option<&str>,
    hwid: Option<Hwid>,
    pk_hash: Option<&str>,
) -> Option<bool> {
    let hwid_match = want_hwid.zip(hwid).map(|(a, b)| a == b);
    let pk_match = want_pk.zip(pk_hash).and_then(|(a, b)| same_pk_hash(a, b));
    match (hwid_match, pk_match) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(true) && b.unwrap_or(true)),
    }
}

/// What Sahara command mode told about the chip. Every field is optional: boot ROMs
/// answer different subsets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChipIdentity {
    /// The Sahara version in the device's HELLO.
    pub sahara_version: u32,
    /// The chip serial number, unless the device gave none or a placeholder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<u64>,
    /// The MSM hardware id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hwid: Option<Hwid>,
    /// The OEM public-key hash, trimmed of padding and repetition, in hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pk_hash: Option<String>,
    /// The SBL version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sbl_version: Option<u32>,
    /// The device refused command mode: nothing but the version is known.
    pub command_mode_refused: bool,
}

/// A chip serial as qdl and edl print it: `0x` and 8 (or, past 32 bits, 16) hex digits.
pub fn serial_text(serial: u64) -> String {
    if serial > u64::from(u32::MAX) {
        format!("0x{serial:016x}")
    } else {
        format!("0x{serial:08x}")
    }
}

impl ChipIdentity {
    /// Takes one command-mode answer in.
    pub fn absorb(&mut self, cmd: u32, data: &[u8]) {
        match cmd {
            client_cmd::SERIAL_NUM_READ => self.serial = parse_serial(data),
            client_cmd::MSM_HW_ID_READ => self.hwid = parse_hwid(data).or(self.hwid),
            client_cmd::READ_CHIP_ID_V3 => self.hwid = self.hwid.or(parse_chip_id_v3(data)),
            client_cmd::OEM_PK_HASH_READ => self.pk_hash = trim_pk_hash(data).map(hex::encode),
            client_cmd::GET_SOFTWARE_VERSION_SBL => {
                self.sbl_version = data
                    .get(..4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            _ => {}
        }
    }
}

/// A 4- or 8-byte little-endian serial; placeholders and other lengths identify nothing.
pub fn parse_serial(data: &[u8]) -> Option<u64> {
    let serial = match data.len() {
        4 => u64::from(u32::from_le_bytes(data.try_into().ok()?)),
        8 => u64::from_le_bytes(data.try_into().ok()?),
        _ => return None,
    };
    (!PLACEHOLDER_SERIALS.contains(&serial) && serial != u64::MAX).then_some(serial)
}

/// An 8-byte little-endian hardware id; all zeros means none.
pub fn parse_hwid(data: &[u8]) -> Option<Hwid> {
    let id = u64::from_le_bytes(data.get(..8)?.try_into().ok()?);
    (id != 0).then_some(Hwid(id))
}

/// The ids in a Sahara 3 `READ_CHIP_ID_V3` answer: msm_id at byte 36, oem_id at 40,
/// model_id at 42.
pub fn parse_chip_id_v3(data: &[u8]) -> Option<Hwid> {
    let msm = u32::from_le_bytes(data.get(36..40)?.try_into().ok()?);
    let oem = u16::from_le_bytes(data.get(40..42)?.try_into().ok()?);
    let model = u16::from_le_bytes(data.get(42..44)?.try_into().ok()?);
    let id = u64::from(msm) << 32 | u64::from(oem) << 16 | u64::from(model);
    (msm != 0).then_some(Hwid(id))
}

/// The hash without zero padding or a repeated copy; `None` for an all-zero answer (a
/// device without secure boot keys) or an implausibly short one.
pub fn trim_pk_hash(data: &[u8]) -> Option<Vec<u8>> {
    let mut hash = data;
    let end = hash.iter().rposition(|&b| b != 0)? + 1;
    // Zero padding comes in whole blocks: keep the hash length the non-zero bytes need.
    let len = [32, 48, 64]
        .into_iter()
        .find(|&n| n >= end && n <= hash.len())
        .unwrap_or(hash.len());
    hash = &hash[..len];
    if hash.len() == 64 && hash[..32] == hash[32..] {
        hash = &hash[..32];
    }
    (hash.len() >= 32).then(|| hash.to_vec())
}

/// Reads the chip identity in command mode and switches the device back to image transfer,
/// so that [`super::upload_programmer`] can follow on the same link.
///
/// Bounded by `options.hello_timeout` for the first HELLO and `options.packet_timeout`
/// for every other packet. A device that refuses command mode yields an identity with
/// only its Sahara version and `command_mode_refused` set.
pub fn read_identity<T: Transport>(
    transport: &mut T,
    options: &SaharaOptions,
) -> Result<ChipIdentity, SaharaError> {
    let mut reader = PacketReader::new();
    let hello = match wait_for_hello(transport, &mut reader, options)? {
        Greeting::Hello(hello) => hello,
        Greeting::Firehose => {
            return Err(SaharaError::Unexpected {
                expected: "a Sahara HELLO",
                got: "Firehose XML (a programmer is already running)".into(),
            })
        }
    };
    let Packet::Hello { version, .. } = hello else {
        unreachable!("wait_for_hello returns HELLO packets")
    };
    let mut identity = ChipIdentity {
        sahara_version: version,
        ..ChipIdentity::default()
    };
    let timeout = options.packet_timeout;
    let send = |t: &mut T, p: Packet| t.write(&p.encode(), timeout);
    send(
        transport,
        Packet::HelloResp {
            version: HOST_VERSION,
            version_compatible: HOST_VERSION_COMPATIBLE,
            status: Status::SUCCESS,
            mode: MODE_COMMAND,
        },
    )?;
    // HELLOs queued before the answer arrived are stale; CMD_READY follows them.
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match reader.read_packet(transport, left.max(Duration::from_millis(1)))? {
            Packet::CmdReady => break,
            Packet::Hello { .. } if !left.is_zero() => {}
            Packet::EndOfImage { status, .. } => {
                tracing::info!("the boot ROM refused command mode: {status}");
                identity.command_mode_refused = true;
                return Ok(identity);
            }
            other => {
                return Err(SaharaError::Unexpected {
                    expected: "CMD_READY",
                    got: other.name(),
                })
            }
        }
    }
    let mut queries = vec![
        client_cmd::SERIAL_NUM_READ,
        client_cmd::MSM_HW_ID_READ,
        client_cmd::OEM_PK_HASH_READ,
        client_cmd::GET_SOFTWARE_VERSION_SBL,
    ];
    let mut next = 0;
    while let Some(&cmd) = queries.get(next) {
        next += 1;
        send(transport, Packet::Execute { client_cmd: cmd })?;
        match reader.read_packet(transport, timeout)? {
            Packet::ExecuteResp {
                client_cmd,
                data_len,
            } if client_cmd == cmd => {
                if data_len > MAX_ANSWER_LEN {
                    return Err(SaharaError::BadLength {
                        cmd,
                        declared: data_len,
                        max: MAX_ANSWER_LEN as usize,
                    });
                }
                send(transport, Packet::ExecuteData { client_cmd: cmd })?;
                let mut data = vec![0u8; data_len as usize];
                reader.read_raw(transport, &mut data, timeout)?;
                identity.absorb(cmd, &data);
            }
            // The command is not supported here (Sahara 3 and MSM_HW_ID_READ).
            Packet::EndOfImage { status, .. } => {
                tracing::debug!("command-mode query {cmd:#04x} refused: {status}");
                if cmd == client_cmd::MSM_HW_ID_READ {
                    queries.push(client_cmd::READ_CHIP_ID_V3);
                }
            }
            other => {
                return Err(SaharaError::Unexpected {
                    expected: "EXECUTE_RESP",
                    got: other.name(),
                })
            }
        }
    }
    send(
        transport,
        Packet::SwitchMode {
            mode: MODE_IMAGE_TX_PENDING,
        },
    )?;
    tracing::info!(?identity, "chip identity read in Sahara command mode");
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_of_every_width_and_placeholders() {
        assert_eq!(
            parse_serial(&0xCAFE_F00Du32.to_le_bytes()),
            Some(0xCAFE_F00D)
        );
        assert_eq!(
            parse_serial(&0x0123_4567_89AB_CDEFu64.to_le_bytes()),
            Some(0x0123_4567_89AB_CDEF)
        );
        for placeholder in [0u32, 0x1234, u32::MAX] {
            assert_eq!(parse_serial(&placeholder.to_le_bytes()), None);
        }
        assert_eq!(parse_serial(&[1, 2, 3]), None);
        assert_eq!(serial_text(0xAB), "0x000000ab");
        assert_eq!(serial_text(1 << 40), "0x0000010000000000");
    }

    #[test]
    fn hwid_parts_and_text() {
        let id = Hwid(0x0009_60E1_0029_003E);
        assert_eq!(
            (id.msm_id(), id.oem_id(), id.model_id()),
            (0x0009_60E1, 0x29, 0x3E)
        );
        assert_eq!(id.to_string(), "0x000960e10029003e");
        assert_eq!(Hwid::parse("0x000960E10029003E"), Some(id));
        assert_eq!(Hwid::parse("000960e1"), None, "0x is required");
        assert_eq!(Hwid::parse("0x1234567890abcdef0"), None);
        assert_eq!(parse_hwid(&[0; 8]), None);
    }

    #[test]
    fn chip_id_v3_reads_fixed_offsets() {
        let mut answer = vec![0u8; 84];
        answer[36..40].copy_from_slice(&0x0019_80E1u32.to_le_bytes());
        answer[40..42].copy_from_slice(&0x0051u16.to_le_bytes());
        answer[42..44].copy_from_slice(&0x0002u16.to_le_bytes());
        assert_eq!(parse_chip_id_v3(&answer), Some(Hwid(0x0019_80E1_0051_0002)));
        assert_eq!(parse_chip_id_v3(&answer[..40]), None);
    }

    #[test]
    fn pk_hashes_compare_within_one_algorithm_only() {
        let sha256 = hex::encode([0x11; 32]);
        let mut padded = vec![0x11; 32];
        padded.resize(64, 0);
        assert_eq!(same_pk_hash(&sha256, &hex::encode(&padded)), Some(true));
        assert_eq!(same_pk_hash(&sha256, &hex::encode([0x22; 32])), Some(false));
        // A SHA-384 hash (48 bytes, padded to 96 as Sahara 3 sends it) whose first 32
        // bytes are the SHA-256 hash is still another algorithm's value: not comparable.
        let mut sha384 = vec![0x11; 48];
        sha384.resize(96, 0);
        assert_eq!(same_pk_hash(&sha256, &hex::encode(&sha384)), None);
        assert_eq!(
            same_pk_hash(&hex::encode(&sha384), &hex::encode([0x11; 48])),
            Some(true)
        );
        assert_eq!(same_pk_hash(&sha256, "zz"), None);
    }

    #[test]
    fn pk_hash_padding_and_repetition_are_trimmed() {
        let sha384: Vec<u8> = (1..=48).collect();
        let mut padded = sha384.clone();
        padded.resize(96, 0);
        assert_eq!(trim_pk_hash(&padded), Some(sha384.clone()));
        let sha256: Vec<u8> = (1..=32).collect();
        let twice = [sha256.clone(), sha256.clone()].concat();
        assert_eq!(trim_pk_hash(&twice), Some(sha256.clone()));
        let mut sha256_padded = sha256.clone();
        sha256_padded.resize(64, 0);
        assert_eq!(trim_pk_hash(&sha256_padded), Some(sha256.clone()));
        // A hash that itself ends in a zero byte keeps it.
        let mut ends_in_zero = sha256.clone();
        ends_in_zero[31] = 0;
        assert_eq!(trim_pk_hash(&ends_in_zero), Some(ends_in_zero.clone()));
        assert_eq!(trim_pk_hash(&[0; 48]), None);
        assert_eq!(trim_pk_hash(&[1; 16]), None);
        assert_eq!(parse_pk_hash(&hex::encode(&padded)), Some(sha384));
        assert_eq!(parse_pk_hash("abcd"), None);
    }
}
