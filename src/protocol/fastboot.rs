//! Android fastboot: the message codec shared by the host client and the virtual phone.
//!
//! The host sends one ASCII command per message (no NUL); the device answers with one
//! message of at most [`MAX_RESPONSE_LEN`] bytes whose first four bytes are the status.

pub mod client;
pub mod vars;

use std::fmt;

/// Largest response a device may send (`FB_RESPONSE_SZ`).
pub const MAX_RESPONSE_LEN: usize = 256;
/// Largest command we send or accept (`FB_COMMAND_SZ`).
pub const MAX_COMMAND_LEN: usize = 4096;

/// Why a fastboot message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// Shorter than the 4-byte status.
    #[error("response of {0} bytes is too short to hold a status")]
    Short(usize),
    /// More than the protocol allows.
    #[error("message of {len} bytes exceeds the {max}-byte limit")]
    TooLong {
        /// Bytes received.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A status other than OKAY, FAIL, INFO, TEXT, DATA.
    #[error("unknown response status {0:?}")]
    UnknownStatus(String),
    /// `DATA` not followed by exactly 8 hex digits.
    #[error("malformed DATA length {0:?}")]
    BadDataLength(String),
    /// Not valid ASCII text where text is required.
    #[error("message is not printable ASCII")]
    NotText,
}

/// One device → host message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Success; the payload is the result (e.g. a getvar value).
    Okay(String),
    /// Failure; the payload is the device's reason.
    Fail(String),
    /// Progress or diagnostic text; more messages follow.
    Info(String),
    /// Raw text to print; more messages follow (newer devices only).
    Text(String),
    /// The device is ready to send or receive this many bytes.
    Data(u32),
}

impl Response {
    /// Decodes one device message.
    pub fn parse(bytes: &[u8]) -> Result<Self, CodecError> {
        if bytes.len() > MAX_RESPONSE_LEN {
            return Err(CodecError::TooLong {
                len: bytes.len(),
                max: MAX_RESPONSE_LEN,
            });
        }
        if bytes.len() < 4 {
            return Err(CodecError::Short(bytes.len()));
        }
        let (status, payload) = bytes.split_at(4);
        // Devices may pad with NULs; the text ends at the first one.
        let payload = payload.split(|&b| b == 0).next().unwrap_or_default();
        let text = || String::from_utf8_lossy(payload).into_owned();
        match status {
            b"OKAY" => Ok(Response::Okay(text())),
            b"FAIL" => Ok(Response::Fail(text())),
            b"INFO" => Ok(Response::Info(text())),
            b"TEXT" => Ok(Response::Text(text())),
            b"DATA" => {
                let digits = std::str::from_utf8(payload).map_err(|_| CodecError::NotText)?;
                if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(CodecError::BadDataLength(digits.to_string()));
                }
                let len = u32::from_str_radix(digits, 16)
                    .map_err(|_| CodecError::BadDataLength(digits.to_string()))?;
                Ok(Response::Data(len))
            }
            other => Err(CodecError::UnknownStatus(
                String::from_utf8_lossy(other).into_owned(),
            )),
        }
    }

    /// Encodes the message as a device sends it, truncating text to the response limit.
    pub fn encode(&self) -> Vec<u8> {
        let (status, payload) = match self {
            Response::Okay(s) => ("OKAY", s.clone()),
            Response::Fail(s) => ("FAIL", s.clone()),
            Response::Info(s) => ("INFO", s.clone()),
            Response::Text(s) => ("TEXT", s.clone()),
            Response::Data(n) => ("DATA", format!("{n:08x}")),
        };
        let mut out = Vec::with_capacity(4 + payload.len());
        out.extend_from_slice(status.as_bytes());
        out.extend_from_slice(payload.as_bytes());
        out.truncate(MAX_RESPONSE_LEN);
        out
    }
}

/// One host → device command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `getvar:<name>` (the name may carry `:<arg>`).
    GetVar(String),
    /// `download:<8 hex digits>`.
    Download(u32),
    /// `flash:<partition>`.
    Flash(String),
    /// `erase:<partition>`.
    Erase(String),
    /// `set_active:<slot>` (slot letter without underscore).
    SetActive(String),
    /// `reboot`.
    Reboot,
    /// `reboot-bootloader`.
    RebootBootloader,
    /// `continue`.
    Continue,
    /// Anything else, kept verbatim (e.g. `oem …`).
    Other(String),
}

impl Command {
    /// Decodes a command as a device receives it.
    pub fn parse(bytes: &[u8]) -> Result<Self, CodecError> {
        if bytes.len() > MAX_COMMAND_LEN {
            return Err(CodecError::TooLong {
                len: bytes.len(),
                max: MAX_COMMAND_LEN,
            });
        }
        let text = std::str::from_utf8(bytes).map_err(|_| CodecError::NotText)?;
        if text.bytes().any(|b| !(0x20..0x7f).contains(&b)) {
            return Err(CodecError::NotText);
        }
        let (verb, arg) = match text.split_once(':') {
            Some((v, a)) => (v, Some(a)),
            None => (text, None),
        };
        Ok(match (verb, arg) {
            ("getvar", Some(name)) => Command::GetVar(name.to_string()),
            ("download", Some(hex)) => {
                if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(CodecError::BadDataLength(hex.to_string()));
                }
                Command::Download(
                    u32::from_str_radix(hex, 16)
                        .map_err(|_| CodecError::BadDataLength(hex.to_string()))?,
                )
            }
            ("flash", Some(p)) => Command::Flash(p.to_string()),
            ("erase", Some(p)) => Command::Erase(p.to_string()),
            ("set_active", Some(s)) => Command::SetActive(s.to_string()),
            ("reboot", None) => Command::Reboot,
            ("reboot-bootloader", None) => Command::RebootBootloader,
            ("continue", None) => Command::Continue,
            _ => Command::Other(text.to_string()),
        })
    }
}

impl fmt::Display for Command {
    /// The exact bytes sent on the wire.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::GetVar(n) => write!(f, "getvar:{n}"),
            Command::Download(n) => write!(f, "download:{n:08x}"),
            Command::Flash(p) => write!(f, "flash:{p}"),
            Command::Erase(p) => write!(f, "erase:{p}"),
            Command::SetActive(s) => write!(f, "set_active:{s}"),
            Command::Reboot => f.write_str("reboot"),
            Command::RebootBootloader => f.write_str("reboot-bootloader"),
            Command::Continue => f.write_str("continue"),
            Command::Other(s) => f.write_str(s),
        }
    }
}

/// Parses a number as bootloaders print them: `0x…` hex, else decimal; spaces trimmed.
pub fn parse_number(text: &str) -> Option<u64> {
    let t = text.trim();
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => t.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_round_trip() {
        for r in [
            Response::Okay("0.4".into()),
            Response::Fail("unknown variable".into()),
            Response::Info("partition-size:boot: 0x1000".into()),
            Response::Data(0x1234),
        ] {
            assert_eq!(Response::parse(&r.encode()).unwrap(), r);
        }
        assert_eq!(Response::Data(0x1000).encode(), b"DATA00001000");
    }

    #[test]
    fn bad_responses_are_named() {
        assert_eq!(Response::parse(b"OK"), Err(CodecError::Short(2)));
        assert!(matches!(
            Response::parse(b"WHAT"),
            Err(CodecError::UnknownStatus(_))
        ));
        assert!(matches!(
            Response::parse(b"DATA12"),
            Err(CodecError::BadDataLength(_))
        ));
        assert!(matches!(
            Response::parse(&[b'O'; 300]),
            Err(CodecError::TooLong { .. })
        ));
        assert_eq!(
            Response::parse(b"OKAY\0\0").unwrap(),
            Response::Okay(String::new())
        );
    }

    #[test]
    fn commands_round_trip() {
        for c in [
            Command::GetVar("partition-size:boot_a".into()),
            Command::Download(0x10000000),
            Command::Flash("boot_b".into()),
            Command::Erase("cache".into()),
            Command::SetActive("b".into()),
            Command::Reboot,
            Command::RebootBootloader,
            Command::Other("oem unlock".into()),
        ] {
            assert_eq!(Command::parse(c.to_string().as_bytes()).unwrap(), c);
        }
        assert!(Command::parse(b"download:zz").is_err());
        assert!(Command::parse(b"getvar:\x01").is_err());
    }

    #[test]
    fn numbers_parse_leniently() {
        assert_eq!(parse_number("0x10000000"), Some(0x1000_0000));
        assert_eq!(parse_number(" 4096 \n"), Some(4096));
        assert_eq!(parse_number("0X1f"), Some(31));
        assert_eq!(parse_number("yes"), None);
    }
}
