//! Qualcomm DIAG: just enough of it to send a modem into emergency download mode (EDL).
//!
//! A modem in factory mode (ZTE: after `AT+ZCDRUN=E`) exposes a DIAG port. DIAG requests
//! travel in an HDLC-like framing: the command bytes, then a CRC-16/X-25 over them
//! (reflected polynomial 0x1021, initial value and final XOR 0xFFFF) appended
//! little-endian, then every 0x7E and 0x7D escaped as 0x7D followed by the byte XOR 0x20,
//! and a 0x7E that ends the frame. Replies are framed the same way; their first byte
//! echoes the command, or is 0x13 for a command the device does not know.
//!
//! Two requests are reported to reboot a Qualcomm modem into EDL: the legacy
//! `DIAG_DLOAD_F` (0x3A, on the wire `3A A1 6E 7E`) and the subsystem command
//! `4B 65 01 00`. A device usually reboots right after (or instead of) answering, so no
//! answer within a short wait is not a failure; only an explicit refusal is.

use std::time::{Duration, Instant};

use crate::transport::{Transport, TransportError};

/// Ends every frame.
const FLAG: u8 = 0x7E;
/// Starts an escaped byte.
const ESCAPE: u8 = 0x7D;
/// XORed into an escaped byte.
const ESCAPE_XOR: u8 = 0x20;
/// The first byte of a reply to a command the device does not know.
pub const BAD_COMMAND: u8 = 0x13;
/// The first byte of a reply to a request with bad parameters.
pub const BAD_PARAMETERS: u8 = 0x14;
/// The first byte of a reply to a request of a bad length.
pub const BAD_LENGTH: u8 = 0x15;
/// Largest frame accepted from a device (unescaped payload plus CRC). DIAG answers to
/// these requests are a few bytes; logs a device may stream are dropped past this.
pub const MAX_FRAME_LEN: usize = 4096;

/// A request that sends a modem from DIAG into its download mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownloadRequest {
    /// `DIAG_DLOAD_F` (0x3A): the legacy "switch to download" command.
    Dload,
    /// The subsystem command `4B 65 01 00` (subsystem 0x65, command 1): reboot to EDL.
    SubsystemEdl,
}

impl DownloadRequest {
    /// The request's command bytes, before framing.
    pub fn payload(self) -> &'static [u8] {
        match self {
            DownloadRequest::Dload => &[0x3A],
            DownloadRequest::SubsystemEdl => &[0x4B, 0x65, 0x01, 0x00],
        }
    }

    /// The name used in the quirks file (`dload`, `subsys-edl`).
    pub fn name(self) -> &'static str {
        match self {
            DownloadRequest::Dload => "dload",
            DownloadRequest::SubsystemEdl => "subsys-edl",
        }
    }

    /// The request named `name` in the quirks file.
    pub fn from_name(name: &str) -> Option<DownloadRequest> {
        [DownloadRequest::Dload, DownloadRequest::SubsystemEdl]
            .into_iter()
            .find(|r| r.name() == name)
    }
}

/// Why a DIAG exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum DiagError {
    /// The bytes could not be moved.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A frame too short to hold its CRC.
    #[error("DIAG frame of {0} bytes is too short to hold a CRC")]
    Short(usize),
    /// The CRC does not match the frame.
    #[error("DIAG frame CRC is 0x{got:04x}, expected 0x{expected:04x}")]
    BadCrc {
        /// The CRC the frame carries.
        got: u16,
        /// The CRC of its bytes.
        expected: u16,
    },
    /// 0x7D right before the end of a frame.
    #[error("DIAG frame ends inside an escape")]
    DanglingEscape,
    /// More bytes than any answer holds, without a frame end.
    #[error("DIAG frame longer than {MAX_FRAME_LEN} bytes")]
    TooLong,
    /// The device refused the request.
    #[error("the device refused the DIAG {request} request (answer 0x{code:02x}: {})", refusal_name(*.code))]
    Refused {
        /// The request's quirks name.
        request: &'static str,
        /// The answer's first byte.
        code: u8,
    },
}

fn refusal_name(code: u8) -> &'static str {
    match code {
        BAD_COMMAND => "unknown command",
        BAD_PARAMETERS => "bad parameters",
        BAD_LENGTH => "bad length",
        _ => "unexpected answer",
    }
}

/// CRC-16/X-25 of `data`.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc = 0xFFFFu16;
    for &byte in data {
        crc ^= u16::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x8408
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Frames `payload`: CRC appended little-endian, escapes, and the closing 0x7E.
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let crc = crc16(payload).to_le_bytes();
    let mut out = Vec::with_capacity(payload.len() + 4);
    for &byte in payload.iter().chain(&crc) {
        if byte == FLAG || byte == ESCAPE {
            out.extend([ESCAPE, byte ^ ESCAPE_XOR]);
        } else {
            out.push(byte);
        }
    }
    out.push(FLAG);
    out
}

/// Decodes one frame's bytes (without the closing 0x7E): unescapes them and checks and
/// strips the CRC.
pub fn decode(frame: &[u8]) -> Result<Vec<u8>, DiagError> {
    let mut raw = Vec::with_capacity(frame.len());
    let mut bytes = frame.iter();
    while let Some(&byte) = bytes.next() {
        if byte == ESCAPE {
            let next = bytes.next().ok_or(DiagError::DanglingEscape)?;
            raw.push(next ^ ESCAPE_XOR);
        } else {
            raw.push(byte);
        }
    }
    if raw.len() < 2 {
        return Err(DiagError::Short(raw.len()));
    }
    let (payload, crc) = raw.split_at(raw.len() - 2);
    let got = u16::from_le_bytes([crc[0], crc[1]]);
    let expected = crc16(payload);
    if got != expected {
        return Err(DiagError::BadCrc { got, expected });
    }
    let len = payload.len();
    raw.truncate(len);
    Ok(raw)
}

/// Collects bytes from a stream into frames ended by 0x7E, never holding more than
/// [`MAX_FRAME_LEN`] bytes of one frame.
#[derive(Debug, Default)]
pub struct FrameReader {
    current: Vec<u8>,
    overflow: bool,
}

impl FrameReader {
    /// An empty reader.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds `bytes`; returns each frame they complete, decoded (an empty frame, as sent
    /// between frames by some devices, is skipped).
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Result<Vec<u8>, DiagError>> {
        let mut frames = Vec::new();
        for &byte in bytes {
            if byte == FLAG {
                let frame = std::mem::take(&mut self.current);
                if std::mem::replace(&mut self.overflow, false) {
                    frames.push(Err(DiagError::TooLong));
                } else if !frame.is_empty() {
                    frames.push(decode(&frame));
                }
            } else if self.current.len() < 2 * MAX_FRAME_LEN {
                self.current.push(byte);
            } else {
                self.overflow = true;
            }
        }
        frames
    }
}

/// How a download request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownloadAnswer {
    /// The device echoed the command: it is rebooting into download mode.
    Accepted,
    /// No answer (silence, or the port went away): devices often reboot before answering.
    Silent,
}

/// Sends `request` on a DIAG port and waits up to `wait` for its answer. An answer that
/// does not echo the command is a refusal; frames that do not decode are skipped.
pub fn request_download(
    transport: &mut dyn Transport,
    request: DownloadRequest,
    wait: Duration,
) -> Result<DownloadAnswer, DiagError> {
    let frame = encode(request.payload());
    match transport.write(&frame, wait) {
        Ok(()) => {}
        Err(TransportError::Disconnected) => return Ok(DownloadAnswer::Silent),
        Err(e) => return Err(e.into()),
    }
    let deadline = Instant::now() + wait;
    let mut reader = FrameReader::new();
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(DownloadAnswer::Silent);
        }
        let n = match transport.read(&mut buf, left) {
            Ok(n) => n,
            Err(TransportError::Timeout(_) | TransportError::Disconnected) => {
                return Ok(DownloadAnswer::Silent)
            }
            Err(e) => return Err(e.into()),
        };
        for frame in reader.push(&buf[..n]) {
            match frame.as_deref().map(<[u8]>::first) {
                Ok(first) if first == request.payload().first() => {
                    return Ok(DownloadAnswer::Accepted)
                }
                Ok(Some(&code @ (BAD_COMMAND | BAD_PARAMETERS | BAD_LENGTH))) => {
                    return Err(DiagError::Refused {
                        request: request.name(),
                        code,
                    })
                }
                // Something else the port sends (a log, an event): not the answer.
                Ok(_) => tracing::debug!("skipping an unrelated DIAG frame"),
                Err(e) => tracing::debug!("skipping a DIAG frame: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dload_is_the_reported_frame() {
        assert_eq!(
            encode(DownloadRequest::Dload.payload()),
            [0x3A, 0xA1, 0x6E, 0x7E]
        );
        assert_eq!(crc16(&[0x3A]), 0x6EA1);
    }

    #[test]
    fn crc_matches_the_x25_check_value() {
        // The catalogue check value of CRC-16/X-25 over "123456789".
        assert_eq!(crc16(b"123456789"), 0x906E);
    }

    #[test]
    fn subsystem_request_round_trips() {
        let frame = encode(DownloadRequest::SubsystemEdl.payload());
        assert_eq!(frame.last(), Some(&0x7E));
        assert_eq!(
            decode(&frame[..frame.len() - 1]).unwrap(),
            [0x4B, 0x65, 0x01, 0x00]
        );
    }

    #[test]
    fn flag_and_escape_bytes_are_escaped() {
        let payload = [0x7E, 0x01, 0x7D, 0x02];
        let frame = encode(&payload);
        assert_eq!(&frame[..6], &[0x7D, 0x5E, 0x01, 0x7D, 0x5D, 0x02]);
        assert_eq!(frame.iter().filter(|&&b| b == 0x7E).count(), 1);
        assert_eq!(decode(&frame[..frame.len() - 1]).unwrap(), payload);
    }

    #[test]
    fn bad_frames_are_errors() {
        assert!(matches!(decode(&[0x3A]), Err(DiagError::Short(1))));
        assert!(matches!(
            decode(&[0x3A, 0xA1, 0x6F]),
            Err(DiagError::BadCrc {
                got: 0x6FA1,
                expected: 0x6EA1
            })
        ));
        assert!(matches!(
            decode(&[0x3A, 0x7D]),
            Err(DiagError::DanglingEscape)
        ));
    }

    #[test]
    fn reader_splits_a_stream_and_caps_a_frame() {
        let mut reader = FrameReader::new();
        let mut stream = vec![0x7E];
        stream.extend(encode(&[0x3A]));
        stream.extend(encode(&[0x13, 0x3A]));
        let (a, b) = stream.split_at(3);
        assert!(reader.push(a).is_empty());
        let frames: Vec<_> = reader.push(b).into_iter().map(Result::unwrap).collect();
        assert_eq!(frames, vec![vec![0x3A], vec![0x13, 0x3A]]);
        let flood = vec![0x55; 3 * MAX_FRAME_LEN];
        assert!(reader.push(&flood).is_empty());
        assert!(matches!(
            reader.push(&[0x7E])[..],
            [Err(DiagError::TooLong)]
        ));
        assert!(reader.current.len() <= 2 * MAX_FRAME_LEN);
    }

    /// A DIAG port that answers every request with `answer` (bytes as sent).
    struct Port {
        answer: Vec<u8>,
        sent: Vec<u8>,
    }

    impl Transport for Port {
        fn write(&mut self, data: &[u8], _: Duration) -> Result<(), TransportError> {
            self.sent.extend_from_slice(data);
            Ok(())
        }

        fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
            if self.answer.is_empty() {
                return Err(TransportError::Timeout(timeout));
            }
            let n = buf.len().min(self.answer.len());
            buf[..n].copy_from_slice(&self.answer[..n]);
            self.answer.drain(..n);
            Ok(n)
        }

        fn address(&self) -> &str {
            "diag"
        }
    }

    fn ask(answer: Vec<u8>) -> (Result<DownloadAnswer, DiagError>, Vec<u8>) {
        let mut port = Port {
            answer,
            sent: Vec::new(),
        };
        let result = request_download(&mut port, DownloadRequest::Dload, Duration::from_millis(50));
        (result, port.sent)
    }

    #[test]
    fn download_requests_accept_an_echo_or_silence_and_name_a_refusal() {
        let (result, sent) = ask(encode(&[0x3A]));
        assert_eq!(result.unwrap(), DownloadAnswer::Accepted);
        assert_eq!(sent, [0x3A, 0xA1, 0x6E, 0x7E]);
        // A log frame first, then the echo.
        let (result, _) = ask([encode(&[0x10, 0, 1]), encode(&[0x3A])].concat());
        assert_eq!(result.unwrap(), DownloadAnswer::Accepted);
        assert_eq!(ask(Vec::new()).0.unwrap(), DownloadAnswer::Silent);
        let (result, _) = ask(encode(&[BAD_COMMAND, 0x3A]));
        let e = result.unwrap_err();
        assert!(matches!(e, DiagError::Refused { code: 0x13, .. }));
        assert_eq!(
            e.to_string(),
            "the device refused the DIAG dload request (answer 0x13: unknown command)"
        );
    }

    #[test]
    fn request_names_round_trip() {
        for r in [DownloadRequest::Dload, DownloadRequest::SubsystemEdl] {
            assert_eq!(DownloadRequest::from_name(r.name()), Some(r));
        }
        assert_eq!(DownloadRequest::from_name("reboot"), None);
    }
}
