//! AT commands (ITU-T V.250 framing, 3GPP TS 27.007 commands) for identifying a USB modem
//! or hotspot, checking its battery and switching it into its download mode.
//!
//! A command line is `AT…` ended by CR. The modem answers with lines separated by CR/LF:
//! perhaps an echo of the command, information lines, and one final result code (`OK`,
//! `ERROR`, `+CME ERROR: …`, …). Unsolicited result codes (`+CREG: 1`, `RDY`, `^BOOT:…`)
//! may arrive at any moment, also in the middle of an answer; they are set aside, never
//! returned as the answer. Everything a modem sends is bounded: line length, lines per
//! answer, and time per command.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::transport::{Transport, TransportError};

/// How long a command may take to be answered unless configured otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest line accepted from a modem (27.007 caps identification answers at 2048
/// characters in total).
pub const MAX_LINE_LEN: usize = 2048;
/// Most information lines accepted in one answer.
pub const MAX_ANSWER_LINES: usize = 64;
/// Most unsolicited lines accepted while one command is outstanding. Real modems send a
/// handful; a modem that never stops would otherwise hold the client (and flood whatever
/// the URC handler feeds) until the command's timeout.
pub const MAX_UNSOLICITED_LINES: usize = 256;
/// Longest command line sent; V.250 only requires modems to take 40 characters.
const MAX_COMMAND_LEN: usize = 512;
/// Bytes read from the port at a time.
const READ_CHUNK: usize = 256;
/// Reads spent discarding stale input before a command, so a chattering modem cannot
/// keep the client from ever sending.
const MAX_DRAIN_READS: usize = 16;

/// Commands whose answer is bare text rather than lines with the command's own prefix.
const BARE_ANSWERS: &[&str] = &[
    "+CGMI", "+CGMM", "+CGMR", "+CGSN", "+GMI", "+GMM", "+GMR", "+GSN", "+CIMI",
];
/// Unsolicited result codes without a `+`/`^` prefix that modems commonly send.
const BARE_URCS: &[&str] = &[
    "RDY",
    "RING",
    "SMS DONE",
    "PB DONE",
    "CALL READY",
    "SMS READY",
];
/// First characters of extended command names: standard `+` and vendor `^ $ ! # * %`.
const EXTENDED_PREFIXES: &[char] = &['+', '^', '$', '!', '#', '*', '%'];

/// Why an AT command failed.
#[derive(Debug, thiserror::Error)]
pub enum AtError {
    /// No final result code arrived in time.
    #[error("the modem did not finish answering {command:?} within {timeout:?}")]
    Timeout {
        /// The command line sent.
        command: String,
        /// The time it had.
        timeout: Duration,
    },
    /// The modem answered `ERROR`: unknown command, bad parameter, or not allowed now.
    #[error("the modem answered ERROR to {command:?}")]
    Error {
        /// The command line sent.
        command: String,
    },
    /// The modem answered `+CME ERROR: …` (equipment error, numeric or text per `AT+CMEE`).
    #[error("the modem answered {command:?} with +CME ERROR: {code_or_text}")]
    CmeError {
        /// The command line sent.
        command: String,
        /// The error number or its text, as sent.
        code_or_text: String,
    },
    /// The modem answered `+CMS ERROR: …` (message service error).
    #[error("the modem answered {command:?} with +CMS ERROR: {code_or_text}")]
    CmsError {
        /// The command line sent.
        command: String,
        /// The error number or its text, as sent.
        code_or_text: String,
    },
    /// The modem answered `NO CARRIER`.
    #[error("the modem answered NO CARRIER to {command:?}")]
    NoCarrier {
        /// The command line sent.
        command: String,
    },
    /// The modem sent a line longer than the cap without ending it.
    #[error("the modem sent a line of more than {max} bytes without a line end")]
    LineTooLong {
        /// The cap.
        max: usize,
    },
    /// The modem sent more information lines than one answer may have.
    #[error("the modem sent more than {max} lines in answer to {command:?}")]
    TooManyLines {
        /// The command line sent.
        command: String,
        /// The cap.
        max: usize,
    },
    /// The modem kept sending unsolicited result codes instead of answering.
    #[error("the modem sent more than {max} unsolicited lines without answering {command:?}")]
    UnsolicitedFlood {
        /// The command line sent.
        command: String,
        /// The cap.
        max: usize,
    },
    /// The port failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The answer did not have the form the command defines.
    #[error("unexpected answer to {command:?}: {reason}")]
    Malformed {
        /// The command line sent.
        command: String,
        /// What was wrong, quoting the offending text.
        reason: String,
    },
    /// The caller asked to send something that is not one AT command line.
    #[error("{command:?} is not a valid AT command line: {reason}")]
    InvalidCommand {
        /// What the caller passed.
        command: String,
        /// Why it cannot be sent.
        reason: &'static str,
    },
}

/// The final result code that ends an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinalResult {
    /// `OK`.
    Ok,
    /// `ERROR`.
    Error,
    /// `+CME ERROR: <n or text>`.
    CmeError(String),
    /// `+CMS ERROR: <n or text>`.
    CmsError(String),
    /// `NO CARRIER`.
    NoCarrier,
}

impl FinalResult {
    /// Recognises a final result code in one (trimmed) line; anything else is `None`.
    pub fn parse(line: &str) -> Option<FinalResult> {
        let error_text = |rest: &str| rest.trim().trim_matches('"').to_string();
        if line == "OK" {
            Some(FinalResult::Ok)
        } else if line == "ERROR" {
            Some(FinalResult::Error)
        } else if line == "NO CARRIER" {
            Some(FinalResult::NoCarrier)
        } else if let Some(rest) = line.strip_prefix("+CME ERROR:") {
            Some(FinalResult::CmeError(error_text(rest)))
        } else {
            line.strip_prefix("+CMS ERROR:")
                .map(|rest| FinalResult::CmsError(error_text(rest)))
        }
    }
}

/// Splits the byte stream from a modem into lines, holding at most one capped partial line.
///
/// CR and LF both end a line (modems send CR LF, echoes end in CR alone); empty lines are
/// dropped and surrounding whitespace is trimmed. Bytes that are not UTF-8 are replaced.
/// Callers feed one read's worth of bytes at a time and take the lines out before feeding
/// more, which bounds the queue by the read size.
#[derive(Debug)]
pub struct LineReader {
    partial: Vec<u8>,
    lines: VecDeque<String>,
    max_len: usize,
    /// Inside an over-long line: its bytes are dropped until the line ends.
    discarding: bool,
}

impl LineReader {
    /// A reader accepting lines of up to `max_len` bytes.
    pub fn new(max_len: usize) -> Self {
        LineReader {
            partial: Vec::new(),
            lines: VecDeque::new(),
            max_len,
            discarding: false,
        }
    }

    /// Splits `bytes` into lines. A line growing past the cap is discarded up to its end
    /// and reported once, after the whole of `bytes` has been taken in.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), AtError> {
        let mut too_long = false;
        for &byte in bytes {
            match byte {
                b'\r' | b'\n' => {
                    if !self.discarding {
                        let line = String::from_utf8_lossy(&self.partial);
                        let line = line.trim();
                        if !line.is_empty() {
                            self.lines.push_back(line.to_string());
                        }
                    }
                    self.partial.clear();
                    self.discarding = false;
                }
                _ if self.discarding => {}
                _ if self.partial.len() == self.max_len => {
                    self.partial.clear();
                    self.discarding = true;
                    too_long = true;
                }
                _ => self.partial.push(byte),
            }
        }
        if too_long {
            return Err(AtError::LineTooLong { max: self.max_len });
        }
        Ok(())
    }

    /// The oldest complete line not yet taken.
    pub fn next_line(&mut self) -> Option<String> {
        self.lines.pop_front()
    }

    /// Forgets every line and partial line held.
    pub fn clear(&mut self) {
        self.partial.clear();
        self.lines.clear();
        self.discarding = false;
    }
}

/// The name of an extended command (`+CBC` for `AT+CBC=?`, `^SYSINFO` for `AT^SYSINFO`),
/// upper-cased; `None` for basic commands such as `ATI` or `ATE0`.
fn extended_name(command: &str) -> Option<String> {
    let body = command.get(2..)?;
    if !body.starts_with(EXTENDED_PREFIXES) {
        return None;
    }
    let end = body.find(['=', '?', ';']).unwrap_or(body.len());
    Some(body[..end].to_ascii_uppercase())
}

/// Whether `line`, received while `command` was outstanding, belongs to its answer.
///
/// Lines starting with the command's own name and a colon (`+CBC: 0,80` for `AT+CBC`)
/// always do. Bare text belongs to the answer of commands that answer in bare text (basic
/// commands like `ATI`, and the identification family `+CGMI`…`+CGSN`), unless it is a
/// well-known bare unsolicited code such as `RDY`. Everything else is unsolicited.
pub fn is_information(command: &str, line: &str) -> bool {
    let name = extended_name(command);
    if let Some(name) = &name {
        let upper = line.get(..name.len() + 1).map(str::to_ascii_uppercase);
        if upper.is_some_and(|head| head.strip_suffix(':') == Some(name.as_str())) {
            return true;
        }
    }
    let bare_answer = name
        .as_deref()
        .is_none_or(|name| BARE_ANSWERS.contains(&name));
    bare_answer
        && !line.starts_with(EXTENDED_PREFIXES)
        && !BARE_URCS.iter().any(|urc| line.eq_ignore_ascii_case(urc))
}

/// What a modem says about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModemIdentity {
    /// `AT+CGMI` (or ATI's `Manufacturer:` line).
    pub manufacturer: Option<String>,
    /// `AT+CGMM` (or ATI's `Model:` line).
    pub model: Option<String>,
    /// `AT+CGMR`, the firmware revision (or ATI's `Revision:` line): a vendor string.
    pub revision: Option<String>,
    /// `AT+CGSN`, usually the IMEI (or ATI's `IMEI:` line).
    pub imei: Option<String>,
    /// The free-form `ATI` lines, kept for the report.
    pub ati: Vec<String>,
}

/// The battery as `AT+CBC` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatteryReading {
    /// Running on battery (`bcs` 0) or on a charger (`bcs` 1), with the charge in percent.
    Percent {
        /// Remaining charge, 0–100.
        percent: u8,
        /// A charger powers the device (`bcs` 1).
        charging: bool,
    },
    /// The device has no battery (`bcs` 2): bus-powered, not "empty".
    NoBattery,
    /// The device reports a power fault (`bcs` 3).
    PowerFault,
    /// The modem does not implement `AT+CBC`: the charge is unknown, not fine.
    Unsupported,
}

impl BatteryReading {
    /// Parses `+CBC: <bcs>,<bcl>[,<mV>]`, tolerating spaces and a trailing voltage field.
    pub fn parse(line: &str) -> Result<BatteryReading, String> {
        let fields = line
            .get(..5)
            .filter(|head| head.eq_ignore_ascii_case("+CBC:"))
            .map(|_| &line[5..])
            .ok_or_else(|| format!("{line:?} is not a +CBC line"))?;
        let mut numbers = fields.split(',').map(|f| f.trim().parse::<u32>());
        let (Some(Ok(bcs)), Some(Ok(bcl))) = (numbers.next(), numbers.next()) else {
            return Err(format!("{line:?} does not start with two numbers"));
        };
        let percent = u8::try_from(bcl)
            .ok()
            .filter(|&p| p <= 100)
            .ok_or_else(|| format!("battery charge {bcl} in {line:?} is over 100 %"))?;
        match bcs {
            0 | 1 => Ok(BatteryReading::Percent {
                percent,
                charging: bcs == 1,
            }),
            2 => Ok(BatteryReading::NoBattery),
            3 => Ok(BatteryReading::PowerFault),
            _ => Err(format!("unknown battery status {bcs} in {line:?}")),
        }
    }
}

/// An AT session over a byte-stream transport.
///
/// The first command of a session is preceded by `ATE0` (echo off); echoed command lines
/// are recognised and skipped anyway, since some modems ignore `ATE0` on some ports.
pub struct AtClient<T: Transport> {
    transport: T,
    reader: LineReader,
    timeout: Duration,
    echo_off_sent: bool,
    on_urc: Box<dyn FnMut(&str) + Send>,
}

impl<T: Transport> AtClient<T> {
    /// Wraps an open port. Nothing is sent until the first command.
    pub fn new(transport: T) -> Self {
        AtClient {
            transport,
            reader: LineReader::new(MAX_LINE_LEN),
            timeout: DEFAULT_TIMEOUT,
            echo_off_sent: false,
            on_urc: Box::new(|line| tracing::debug!("unsolicited: {line}")),
        }
    }

    /// Sets how long each later command may take ([`DEFAULT_TIMEOUT`] until then).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Receives every unsolicited line (instead of the debug log).
    pub fn on_urc(&mut self, handler: impl FnMut(&str) + Send + 'static) {
        self.on_urc = Box::new(handler);
    }

    /// Sends one command line (without the CR) and returns its information lines.
    pub fn command(&mut self, command: &str) -> Result<Vec<String>, AtError> {
        self.command_with_timeout(command, self.timeout)
    }

    /// [`AtClient::command`] with its own time limit, for commands known to be slow.
    pub fn command_with_timeout(
        &mut self,
        command: &str,
        timeout: Duration,
    ) -> Result<Vec<String>, AtError> {
        check_command(command)?;
        self.start_session()?;
        self.send(command, timeout)?;
        self.answer(command, Instant::now() + timeout, timeout)
    }

    /// Reads manufacturer, model, revision and IMEI (`AT+CGMI`, `+CGMM`, `+CGMR`, `+CGSN`)
    /// plus the free-form `ATI`. A field the modem refuses (`ERROR`) is taken from ATI's
    /// `Key: value` lines when it has one, otherwise left empty.
    pub fn identify(&mut self) -> Result<ModemIdentity, AtError> {
        let ati = self.optional("ATI")?.unwrap_or_default();
        let mut field = |command: &str, ati_key: &str| -> Result<Option<String>, AtError> {
            let answered = self.optional(command)?.and_then(|lines| {
                let prefix = &command[2..];
                joined(lines.iter().map(|l| strip_field(l, prefix)))
            });
            Ok(answered.or_else(|| joined(ati.iter().filter_map(|l| ati_value(l, ati_key)))))
        };
        Ok(ModemIdentity {
            manufacturer: field("AT+CGMI", "Manufacturer")?,
            model: field("AT+CGMM", "Model")?,
            revision: field("AT+CGMR", "Revision")?,
            imei: field("AT+CGSN", "IMEI")?,
            ati,
        })
    }

    /// Reads the battery with `AT+CBC`; a modem that refuses the command is
    /// [`BatteryReading::Unsupported`].
    pub fn battery(&mut self) -> Result<BatteryReading, AtError> {
        const COMMAND: &str = "AT+CBC";
        let Some(lines) = self.optional(COMMAND)? else {
            return Ok(BatteryReading::Unsupported);
        };
        let line = lines.first().ok_or_else(|| AtError::Malformed {
            command: COMMAND.into(),
            reason: "OK without a +CBC line".into(),
        })?;
        BatteryReading::parse(line).map_err(|reason| AtError::Malformed {
            command: COMMAND.into(),
            reason,
        })
    }

    /// Sends a model's download-mode command. `OK` is success; so is the port vanishing or
    /// falling silent once the command was written, since a modem may reboot before it
    /// answers. Whether the switch worked shows only in the new USB identity appearing.
    pub fn send_switch(&mut self, command: &str) -> Result<(), AtError> {
        check_command(command)?;
        self.start_session()?;
        self.send(command, self.timeout)?;
        match self.answer(command, Instant::now() + self.timeout, self.timeout) {
            Ok(_) => Ok(()),
            Err(AtError::Transport(TransportError::Disconnected)) => {
                tracing::debug!("port closed after {command:?}: the modem is rebooting");
                Ok(())
            }
            Err(AtError::Timeout { .. }) => {
                tracing::debug!("no answer to {command:?}: the modem is rebooting");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Ends the session, returning the port.
    pub fn into_transport(self) -> T {
        self.transport
    }

    /// Turns echo off once per session. A modem refusing `ATE0` keeps echoing, which the
    /// answer parser tolerates; a silent or vanished modem fails the caller's command.
    fn start_session(&mut self) -> Result<(), AtError> {
        if self.echo_off_sent {
            return Ok(());
        }
        match self.command_once("ATE0") {
            Ok(_) | Err(AtError::Error { .. } | AtError::CmeError { .. }) => {
                self.echo_off_sent = true;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn command_once(&mut self, command: &str) -> Result<Vec<String>, AtError> {
        self.send(command, self.timeout)?;
        self.answer(command, Instant::now() + self.timeout, self.timeout)
    }

    /// Runs a command whose refusal (`ERROR`, `+CME ERROR`) means "not supported".
    fn optional(&mut self, command: &str) -> Result<Option<Vec<String>>, AtError> {
        match self.command(command) {
            Ok(lines) => Ok(Some(lines)),
            Err(AtError::Error { .. } | AtError::CmeError { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Discards what arrived before the command (late answers to a timed-out command,
    /// URCs), then writes the command line.
    fn send(&mut self, command: &str, timeout: Duration) -> Result<(), AtError> {
        self.drain()?;
        let mut line = Vec::with_capacity(command.len() + 1);
        line.extend_from_slice(command.as_bytes());
        line.push(b'\r');
        self.transport.write(&line, timeout)?;
        Ok(())
    }

    fn drain(&mut self) -> Result<(), AtError> {
        let mut buf = [0u8; READ_CHUNK];
        for _ in 0..MAX_DRAIN_READS {
            match self.transport.read(&mut buf, Duration::ZERO) {
                Ok(n) => {
                    // An over-long stale line is dropped like any other stale byte.
                    let _ = self.reader.feed(&buf[..n]);
                    while let Some(line) = self.reader.next_line() {
                        if FinalResult::parse(&line).is_some() {
                            tracing::debug!("discarding stale {line:?}");
                        } else {
                            (self.on_urc)(&line);
                        }
                    }
                }
                Err(TransportError::Timeout(_)) => break,
                Err(e) => return Err(e.into()),
            }
        }
        self.reader.clear();
        Ok(())
    }

    /// Collects the answer to `command` up to its final result code.
    fn answer(
        &mut self,
        command: &str,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Vec<String>, AtError> {
        let mut info = Vec::new();
        let mut unsolicited = 0;
        let mut buf = [0u8; READ_CHUNK];
        loop {
            while let Some(line) = self.reader.next_line() {
                if line.eq_ignore_ascii_case(command) {
                    continue; // echo
                }
                if let Some(result) = FinalResult::parse(&line) {
                    return finish(command, result, info);
                }
                if !is_information(command, &line) {
                    unsolicited += 1;
                    if unsolicited > MAX_UNSOLICITED_LINES {
                        return Err(AtError::UnsolicitedFlood {
                            command: command.into(),
                            max: MAX_UNSOLICITED_LINES,
                        });
                    }
                    (self.on_urc)(&line);
                } else if info.len() == MAX_ANSWER_LINES {
                    return Err(AtError::TooManyLines {
                        command: command.into(),
                        max: MAX_ANSWER_LINES,
                    });
                } else {
                    info.push(line);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let timed_out = || AtError::Timeout {
                command: command.into(),
                timeout,
            };
            if left.is_zero() {
                return Err(timed_out());
            }
            match self.transport.read(&mut buf, left) {
                Ok(n) => self.reader.feed(&buf[..n])?,
                Err(TransportError::Timeout(_)) => return Err(timed_out()),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Refuses anything but a single printable-ASCII `AT` command line: a CR inside would
/// smuggle a second command past the caller.
fn check_command(command: &str) -> Result<(), AtError> {
    let invalid = |reason| AtError::InvalidCommand {
        command: command.into(),
        reason,
    };
    if !command
        .get(..2)
        .is_some_and(|at| at.eq_ignore_ascii_case("AT"))
    {
        return Err(invalid("it does not start with AT"));
    }
    if command.len() > MAX_COMMAND_LEN {
        return Err(invalid("it is longer than 512 characters"));
    }
    if !command.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return Err(invalid("it contains a control or non-ASCII character"));
    }
    Ok(())
}

fn finish(command: &str, result: FinalResult, info: Vec<String>) -> Result<Vec<String>, AtError> {
    let command = command.to_string();
    match result {
        FinalResult::Ok => Ok(info),
        FinalResult::Error => Err(AtError::Error { command }),
        FinalResult::CmeError(code_or_text) => Err(AtError::CmeError {
            command,
            code_or_text,
        }),
        FinalResult::CmsError(code_or_text) => Err(AtError::CmsError {
            command,
            code_or_text,
        }),
        FinalResult::NoCarrier => Err(AtError::NoCarrier { command }),
    }
}

/// The value of an identification line: `+CGSN: "3526…"` and bare `3526…` both give the
/// digits, without quotes.
fn strip_field<'a>(line: &'a str, prefix: &str) -> &'a str {
    let value = line
        .get(..prefix.len() + 1)
        .filter(|head| head[..prefix.len()].eq_ignore_ascii_case(prefix) && head.ends_with(':'))
        .map_or(line, |_| &line[prefix.len() + 1..]);
    value.trim().trim_matches('"').trim()
}

/// The value of ATI's `Key: value` line, if `line` is that key's.
fn ati_value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let (name, value) = line.split_once(':')?;
    name.trim()
        .eq_ignore_ascii_case(key)
        .then(|| value.trim().trim_matches('"').trim())
}

/// Non-empty values joined by a space (27.007 allows multi-line identification text).
fn joined<'a>(values: impl Iterator<Item = &'a str>) -> Option<String> {
    let parts: Vec<&str> = values.filter(|v| !v.is_empty()).collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A modem that answers each command line with a scripted byte string, optionally
    /// delivered in small pieces; when the script runs out it stays silent.
    struct Scripted {
        answers: VecDeque<Vec<u8>>,
        pending: VecDeque<u8>,
        piece: usize,
        sent: Arc<Mutex<Vec<String>>>,
        disconnect_when_done: bool,
    }

    impl Scripted {
        fn new(answers: &[&[u8]]) -> (Self, Arc<Mutex<Vec<String>>>) {
            let sent = Arc::new(Mutex::new(Vec::new()));
            let modem = Scripted {
                answers: answers.iter().map(|a| a.to_vec()).collect(),
                pending: VecDeque::new(),
                piece: usize::MAX,
                sent: Arc::clone(&sent),
                disconnect_when_done: false,
            };
            (modem, sent)
        }
    }

    impl Transport for Scripted {
        fn write(&mut self, data: &[u8], _: Duration) -> Result<(), TransportError> {
            let line = String::from_utf8_lossy(data).trim_end().to_string();
            self.sent.lock().unwrap().push(line);
            if let Some(answer) = self.answers.pop_front() {
                self.pending.extend(answer);
            }
            Ok(())
        }

        fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
            if self.pending.is_empty() {
                if self.disconnect_when_done && self.answers.is_empty() {
                    return Err(TransportError::Disconnected);
                }
                return Err(TransportError::Timeout(timeout));
            }
            let n = buf.len().min(self.piece).min(self.pending.len());
            for slot in &mut buf[..n] {
                *slot = self.pending.pop_front().unwrap();
            }
            Ok(n)
        }

        fn address(&self) -> &str {
            "scripted"
        }
    }

    /// A client past its `ATE0`, so scripts list only the commands under test.
    fn client(answers: &[&[u8]]) -> (AtClient<Scripted>, Arc<Mutex<Vec<String>>>) {
        let mut all: Vec<&[u8]> = vec![b"ATE0\r\r\nOK\r\n"];
        all.extend_from_slice(answers);
        let (modem, sent) = Scripted::new(&all);
        let mut client = AtClient::new(modem);
        client.set_timeout(Duration::from_millis(50));
        (client, sent)
    }

    #[test]
    fn final_result_codes_are_recognised() {
        assert_eq!(FinalResult::parse("OK"), Some(FinalResult::Ok));
        assert_eq!(FinalResult::parse("ERROR"), Some(FinalResult::Error));
        assert_eq!(
            FinalResult::parse("+CME ERROR: 10"),
            Some(FinalResult::CmeError("10".into()))
        );
        assert_eq!(
            FinalResult::parse("+CME ERROR: SIM not inserted"),
            Some(FinalResult::CmeError("SIM not inserted".into()))
        );
        assert_eq!(
            FinalResult::parse("+CMS ERROR: 500"),
            Some(FinalResult::CmsError("500".into()))
        );
        assert_eq!(
            FinalResult::parse("NO CARRIER"),
            Some(FinalResult::NoCarrier)
        );
        for other in ["OKAY", "+CBC: 0,80", "ERRORS", "RDY"] {
            assert_eq!(FinalResult::parse(other), None, "{other}");
        }
    }

    #[test]
    fn line_reader_splits_on_cr_and_lf_across_reads() {
        let mut reader = LineReader::new(32);
        reader.feed(b"ATI\r\r\nManufac").unwrap();
        assert_eq!(reader.next_line().as_deref(), Some("ATI"));
        assert_eq!(reader.next_line(), None);
        reader.feed(b"turer: ZTE \r\n\r\nOK\r\n").unwrap();
        assert_eq!(reader.next_line().as_deref(), Some("Manufacturer: ZTE"));
        assert_eq!(reader.next_line().as_deref(), Some("OK"));
        assert_eq!(reader.next_line(), None);
    }

    #[test]
    fn line_reader_drops_an_overlong_line_and_recovers() {
        let mut reader = LineReader::new(8);
        assert!(matches!(
            reader.feed(b"\r\n0123456789abcdef"),
            Err(AtError::LineTooLong { max: 8 })
        ));
        assert!(reader.partial.len() <= 8);
        // The rest of the long line is discarded silently; the next line is whole again.
        reader.feed(b"ghij\r\nOK\r\n").unwrap();
        assert_eq!(reader.next_line().as_deref(), Some("OK"));
        assert_eq!(reader.next_line(), None);
    }

    #[test]
    fn information_lines_are_told_from_unsolicited_codes() {
        assert!(is_information("AT+CBC", "+CBC: 0,80"));
        assert!(is_information("at+cbc", "+cbc: 0,80"));
        assert!(!is_information("AT+CBC", "+CREG: 1"));
        assert!(!is_information("AT+CBC", "bare text"));
        assert!(is_information("AT+CGSN=1", "+CGSN: \"3526\""));
        assert!(is_information("AT+CGSN", "352656100000001"));
        assert!(!is_information("AT+CGMI", "+CREG: 1"));
        assert!(!is_information("AT+CGMI", "^BOOT:1234,0,0,0,6"));
        assert!(!is_information("AT+CGMI", "RDY"));
        assert!(is_information("ATI", "Model: MF833V"));
        assert!(!is_information("ATI", "+CREG: 1"));
        assert!(is_information("AT^SYSINFO", "^SYSINFO: 2,3"));
        assert!(
            !is_information("AT+CB", "+CBC: 0,80"),
            "prefix must match whole"
        );
    }

    #[test]
    fn battery_lines_parse_leniently() {
        let p = |percent, charging| BatteryReading::Percent { percent, charging };
        assert_eq!(BatteryReading::parse("+CBC: 0,80"), Ok(p(80, false)));
        assert_eq!(BatteryReading::parse("+CBC: 1, 97 ,4164"), Ok(p(97, true)));
        assert_eq!(
            BatteryReading::parse("+CBC:2,0"),
            Ok(BatteryReading::NoBattery)
        );
        assert_eq!(
            BatteryReading::parse("+CBC: 3,0"),
            Ok(BatteryReading::PowerFault)
        );
        for bad in [
            "+CBC: 0",
            "+CBC: 0,101",
            "+CBC: 7,50",
            "+CBC: x,y",
            "+CBS: 0,1",
            "",
        ] {
            assert!(BatteryReading::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn identify_reads_every_form_and_skips_echo_and_urcs() {
        let (mut client, sent) = client(&[
            b"ATI\r\r\nManufacturer: ZTE CORPORATION\r\n+CREG: 1\r\nModel: MF833V\r\n\
              Revision: R1\r\nIMEI: 352656100000001\r\n\r\nOK\r\n",
            b"\r\nZTE CORPORATION\r\n\r\nOK\r\n",
            b"\r\n+CGMM: \"MF833V\"\r\n\r\nOK\r\n",
            b"\r\nERROR\r\n",
            b"\r\n+CGSN: \"352656100000001\"\r\n\r\nOK\r\n",
        ]);
        let urcs = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&urcs);
        client.on_urc(move |line| seen.lock().unwrap().push(line.to_string()));
        client.transport.piece = 3;
        let id = client.identify().unwrap();
        assert_eq!(id.manufacturer.as_deref(), Some("ZTE CORPORATION"));
        assert_eq!(id.model.as_deref(), Some("MF833V"));
        assert_eq!(id.revision.as_deref(), Some("R1"), "falls back to ATI");
        assert_eq!(id.imei.as_deref(), Some("352656100000001"));
        assert_eq!(id.ati.len(), 4);
        assert_eq!(*urcs.lock().unwrap(), vec!["+CREG: 1".to_string()]);
        assert_eq!(
            *sent.lock().unwrap(),
            ["ATE0", "ATI", "AT+CGMI", "AT+CGMM", "AT+CGMR", "AT+CGSN"]
        );
    }

    #[test]
    fn battery_refusals_are_unsupported_and_odd_answers_malformed() {
        let (mut client, _) = client(&[
            b"\r\n+CME ERROR: 4\r\n",
            b"\r\nOK\r\n",
            b"\r\n+CBC: 2,0\r\n\r\nOK\r\n",
        ]);
        assert_eq!(client.battery().unwrap(), BatteryReading::Unsupported);
        assert!(matches!(client.battery(), Err(AtError::Malformed { .. })));
        assert_eq!(client.battery().unwrap(), BatteryReading::NoBattery);
    }

    #[test]
    fn error_results_become_errors() {
        let (mut client, _) = client(&[
            b"\r\nERROR\r\n",
            b"\r\n+CME ERROR: operation not supported\r\n",
            b"\r\n+CMS ERROR: 500\r\n",
            b"\r\nNO CARRIER\r\n",
        ]);
        assert!(matches!(client.command("AT+X"), Err(AtError::Error { .. })));
        assert!(matches!(
            client.command("AT+X"),
            Err(AtError::CmeError { code_or_text, .. }) if code_or_text == "operation not supported"
        ));
        assert!(matches!(
            client.command("AT+X"),
            Err(AtError::CmsError { .. })
        ));
        assert!(matches!(
            client.command("ATD1"),
            Err(AtError::NoCarrier { .. })
        ));
    }

    #[test]
    fn a_line_without_end_is_refused_with_bounded_memory() {
        let endless = vec![b'A'; 64 * 1024];
        let (mut client, _) = client(&[&endless]);
        assert!(matches!(
            client.command("AT+CGMI"),
            Err(AtError::LineTooLong { max: MAX_LINE_LEN })
        ));
        assert!(client.reader.partial.capacity() <= 2 * MAX_LINE_LEN);
    }

    #[test]
    fn too_many_lines_are_refused() {
        let flood = "x\r\n".repeat(MAX_ANSWER_LINES + 1) + "OK\r\n";
        let (mut client, _) = client(&[flood.as_bytes()]);
        assert!(matches!(
            client.command("ATI"),
            Err(AtError::TooManyLines { .. })
        ));
    }

    #[test]
    fn silence_is_a_timeout() {
        let (mut client, _) = client(&[]);
        let started = Instant::now();
        assert!(matches!(
            client.command("AT"),
            Err(AtError::Timeout { command, .. }) if command == "AT"
        ));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_silent_modem_fails_the_session_start() {
        let (modem, _) = Scripted::new(&[]);
        let mut client = AtClient::new(modem);
        client.set_timeout(Duration::from_millis(20));
        assert!(matches!(
            client.command("AT+CGMI"),
            Err(AtError::Timeout { command, .. }) if command == "ATE0"
        ));
    }

    #[test]
    fn stale_lines_are_not_taken_for_the_answer() {
        let (mut client, _) = client(&[b"\r\nOK\r\n", b"\r\nOK\r\n", b"\r\nERROR\r\n"]);
        client.command("AT").unwrap();
        // The next answer arrives only after its command timed out.
        client.set_timeout(Duration::ZERO);
        assert!(matches!(
            client.command("AT+A"),
            Err(AtError::Timeout { .. })
        ));
        client.set_timeout(Duration::from_millis(50));
        assert!(matches!(client.command("AT+B"), Err(AtError::Error { .. })));
    }

    #[test]
    fn switching_accepts_ok_silence_or_a_vanished_port() {
        let (mut zte, _) = client(&[b"\r\nOK\r\n", b"", b"\r\n+CME ERROR: 4\r\n"]);
        zte.send_switch("AT+ZCDRUN=E").unwrap();
        zte.send_switch("AT+ZCDRUN=E").unwrap();
        assert!(matches!(
            zte.send_switch("AT+ZCDRUN=E"),
            Err(AtError::CmeError { .. })
        ));
        let (mut quectel, _) = client(&[b""]);
        quectel.transport.disconnect_when_done = true;
        quectel.send_switch("AT+QFASTBOOT").unwrap();
    }

    #[test]
    fn command_lines_are_checked_before_sending() {
        let (mut client, sent) = client(&[]);
        for bad in ["ATI\rAT+ZRST", "+CGMI", "AT+CGMI\u{e9}"] {
            assert!(matches!(
                client.command(bad),
                Err(AtError::InvalidCommand { .. })
            ));
        }
        assert!(sent.lock().unwrap().is_empty());
    }
}
