//! Qualcomm Firehose: the XML command protocol spoken by the programmer that Sahara loads.
//!
//! The host sends one `<?xml …?><data><TAG …/></data>` document per command; the device
//! answers with documents holding any number of `<log value="…"/>` and at most one
//! `<response value="ACK|NAK" …/>`. `<program>` and `<read>` add a raw binary phase after an
//! ACK carrying `rawmode="true"`. This module is the codec for both directions (host
//! [`Command`]s, device [`DeviceDoc`]s) plus [`DocReader`], which cuts documents out of a
//! packet pipe or a byte stream; the host state machine is in [`client`].
//!
//! All XML goes through quick-xml, so attribute values are escaped and unescaped properly.

pub mod client;

pub use client::{DeviceConfig, FirehoseClient, FirehoseTimeouts, LogCallback, StorageInfo};

use std::collections::BTreeMap;
use std::io;
use std::time::{Duration, Instant};

use quick_xml::events::{BytesDecl, BytesStart, Event};
use quick_xml::{Reader, Writer};

use super::read_buffer::{read_some, ReadBuffer};
use crate::transport::{Transport, TransportError};

/// Largest device document the reader accepts. Programmers announce 4 KiB
/// (`MaxXMLSizeInBytes`); the slack allows long log lines without letting a device that
/// never closes `</data>` fill memory.
pub const MAX_DOCUMENT_LEN: usize = 64 * 1024;

/// The marker that ends every document.
const END_OF_DOCUMENT: &[u8] = b"</data>";

/// Why a Firehose exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum FirehoseError {
    /// The bytes could not be moved (timeout, disconnect, …).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A document is not well-formed Firehose XML.
    #[error("malformed Firehose XML: {0}")]
    Xml(String),
    /// The device sent more than [`MAX_DOCUMENT_LEN`] bytes without ending a document.
    #[error(
        "the device sent more than {limit} bytes without closing a Firehose document (</data>)"
    )]
    DocumentTooLarge {
        /// The cap.
        limit: usize,
    },
    /// A command document has a missing or invalid attribute (device side).
    #[error("<{tag}>: {reason}")]
    BadCommand {
        /// The command's tag.
        tag: String,
        /// What is wrong.
        reason: String,
    },
    /// The device refused the command.
    #[error("<{command}> refused by the device (NAK): {reason}")]
    Nak {
        /// The command's tag.
        command: String,
        /// The device's reason: the response's error text or the logs before it.
        reason: String,
    },
    /// The device answered something the protocol does not allow at this point.
    #[error("<{command}>: protocol error: {detail}")]
    Protocol {
        /// The command's tag.
        command: String,
        /// What the device sent and why it is wrong.
        detail: String,
    },
    /// The device kept logging without ever answering.
    #[error("<{command}>: the device sent more than {limit} log lines without finishing")]
    LogFlood {
        /// The command's tag.
        command: String,
        /// The cap that was hit.
        limit: usize,
    },
    /// The data source for `<program>` failed or ended early (a cancel, a read error, an
    /// image that changed): the rest of the range went out as zeros, so the device finished
    /// the command and the session goes on. The range holds the bytes before `supplied`.
    #[error(
        "the data for <program> stopped after {supplied} of {expected} bytes ({cause}); \
         the rest of the range was filled with zeros"
    )]
    SourceStopped {
        /// Bytes the command announced.
        expected: u64,
        /// Bytes the source produced and were sent.
        supplied: u64,
        /// Why the source stopped.
        cause: String,
    },
    /// Writing the data read from the device failed.
    #[error("writing the data read from the device failed: {0}")]
    Sink(#[source] io::Error),
    /// The request cannot be sent as given; nothing was sent.
    #[error("refusing to send <{command}>: {reason}")]
    InvalidRequest {
        /// The command's tag.
        command: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A data command was attempted before `<configure>` fixed the payload size.
    #[error("<{0}> needs a successful <configure> first")]
    NotConfigured(String),
    /// An earlier error may have left the device mid-command; reconnect to go on.
    #[error("cannot send <{command}>: the session is out of step with the device after: {cause}")]
    OutOfStep {
        /// The command that was not sent.
        command: String,
        /// The earlier error.
        cause: String,
    },
}

fn xml_error(e: impl std::fmt::Display) -> FirehoseError {
    FirehoseError::Xml(e.to_string())
}

/// A run of sectors on one physical partition (eMMC: 0; UFS: the LUN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectorRange {
    /// `physical_partition_number`.
    pub lun: u32,
    /// `start_sector`, already resolved to a number.
    pub start_sector: u64,
    /// `SECTOR_SIZE_IN_BYTES` (512 on eMMC, 4096 on UFS).
    pub sector_size: u32,
    /// `num_partition_sectors`.
    pub num_sectors: u64,
}

impl SectorRange {
    /// Bytes covered, or `None` if that overflows.
    pub fn byte_len(&self) -> Option<u64> {
        self.num_sectors.checked_mul(u64::from(self.sector_size))
    }
}

/// `<configure>`: storage type and transfer sizes; the first command of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configure {
    /// `MemoryName`: `emmc`, `ufs`, `nand`, `nvme`, `spinor`.
    pub memory_name: String,
    /// `MaxPayloadSizeToTargetInBytes`: the largest write the host wants to use.
    pub max_payload_to_target: u32,
    /// `Verbose`.
    pub verbose: bool,
    /// `ZlpAwareHost`: the host sends zero-length packets after full-size writes.
    pub zlp_aware_host: bool,
    /// `SkipStorageInit`.
    pub skip_storage_init: bool,
}

/// `<patch filename="DISK">`: write `value` as a little-endian integer of `size_in_bytes`
/// bytes at `start_sector × sector_size + byte_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patch {
    /// `physical_partition_number`.
    pub lun: u32,
    /// `SECTOR_SIZE_IN_BYTES`.
    pub sector_size: u32,
    /// `start_sector`, resolved.
    pub start_sector: u64,
    /// `byte_offset`.
    pub byte_offset: u64,
    /// `size_in_bytes` (1–8).
    pub size_in_bytes: u32,
    /// `value`, resolved.
    pub value: u64,
}

/// What `<power>` should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    /// Reboot (`value="reset"`).
    Reset,
    /// Power off (`value="off"`).
    Off,
    /// Reboot into emergency download mode (`value="reset_to_edl"`), so the boot ROM waits
    /// for a programmer again instead of booting what the storage holds. The value is the
    /// one fh_loader documents and qdl-rs sends; programmers NAK values they do not know
    /// (public reports: notes/real-devices.md, "Optional commands").
    ResetToEdl,
}

impl PowerAction {
    /// The `value` attribute.
    pub fn value(self) -> &'static str {
        match self {
            PowerAction::Reset => "reset",
            PowerAction::Off => "off",
            PowerAction::ResetToEdl => "reset_to_edl",
        }
    }
}

/// One host → device command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `<configure>`.
    Configure(Configure),
    /// `<program>`: the range's bytes follow as raw data after a `rawmode` ACK.
    Program(SectorRange),
    /// `<read>`: the device sends the range's bytes after a `rawmode` ACK.
    Read(SectorRange),
    /// `<erase>` of a range.
    Erase(SectorRange),
    /// `<erase>` without a range: the whole physical partition.
    EraseAll {
        /// `physical_partition_number`.
        lun: u32,
        /// `SECTOR_SIZE_IN_BYTES`.
        sector_size: u32,
    },
    /// `<patch filename="DISK">`.
    Patch(Patch),
    /// `<getsha256digest>` of a range.
    GetSha256Digest(SectorRange),
    /// `<getstorageinfo>`.
    GetStorageInfo {
        /// `physical_partition_number`.
        lun: u32,
    },
    /// `<power>`.
    Power {
        /// `value`.
        action: PowerAction,
        /// `DelayInSeconds`.
        delay_seconds: Option<u32>,
    },
    /// `<setbootablestoragedrive value="N"/>`: the LUN the boot ROM loads the boot loader
    /// from (UFS), set after writing the LUN that holds xbl or sbl1, as qdl does.
    SetBootableStorageDrive {
        /// The LUN (`value`).
        lun: u32,
    },
    /// `<nop/>`: liveness probe.
    Nop,
    /// Any other tag, so a device can NAK it by name.
    Unknown {
        /// The tag.
        tag: String,
    },
}

/// Attribute names, as programmers expect them.
mod attr {
    pub const SECTOR_SIZE: &str = "SECTOR_SIZE_IN_BYTES";
    pub const NUM_SECTORS: &str = "num_partition_sectors";
    pub const LUN: &str = "physical_partition_number";
    pub const START_SECTOR: &str = "start_sector";
    pub const BYTE_OFFSET: &str = "byte_offset";
    pub const FILENAME: &str = "filename";
    pub const SIZE_IN_BYTES: &str = "size_in_bytes";
    pub const VALUE: &str = "value";
    pub const MEMORY_NAME: &str = "MemoryName";
    pub const MAX_PAYLOAD_TO_TARGET: &str = "MaxPayloadSizeToTargetInBytes";
    pub const VERBOSE: &str = "Verbose";
    pub const ZLP_AWARE_HOST: &str = "ZlpAwareHost";
    pub const SKIP_STORAGE_INIT: &str = "SkipStorageInit";
    pub const DELAY: &str = "DelayInSeconds";
    pub const RAWMODE: &str = "rawmode";
}

/// The only `filename` a device patch may carry.
const PATCH_TARGET: &str = "DISK";

impl Command {
    /// The command's tag, for messages.
    pub fn tag(&self) -> &str {
        match self {
            Command::Configure(_) => "configure",
            Command::Program(_) => "program",
            Command::Read(_) => "read",
            Command::Erase(_) | Command::EraseAll { .. } => "erase",
            Command::Patch(_) => "patch",
            Command::GetSha256Digest(_) => "getsha256digest",
            Command::GetStorageInfo { .. } => "getstorageinfo",
            Command::Power { .. } => "power",
            Command::SetBootableStorageDrive { .. } => "setbootablestoragedrive",
            Command::Nop => "nop",
            Command::Unknown { tag } => tag,
        }
    }

    /// The command as a complete document, ready to send.
    pub fn to_xml(&self) -> String {
        let flag = |b: bool| if b { "1" } else { "0" }.to_string();
        let range = |r: &SectorRange| {
            vec![
                (attr::SECTOR_SIZE, r.sector_size.to_string()),
                (attr::NUM_SECTORS, r.num_sectors.to_string()),
                (attr::LUN, r.lun.to_string()),
                (attr::START_SECTOR, r.start_sector.to_string()),
            ]
        };
        let attributes: Vec<(&str, String)> = match self {
            Command::Configure(c) => vec![
                (attr::MEMORY_NAME, c.memory_name.clone()),
                (
                    attr::MAX_PAYLOAD_TO_TARGET,
                    c.max_payload_to_target.to_string(),
                ),
                (attr::VERBOSE, flag(c.verbose)),
                (attr::ZLP_AWARE_HOST, flag(c.zlp_aware_host)),
                (attr::SKIP_STORAGE_INIT, flag(c.skip_storage_init)),
            ],
            Command::Program(r) | Command::Read(r) | Command::Erase(r) => range(r),
            Command::GetSha256Digest(r) => range(r),
            Command::EraseAll { lun, sector_size } => vec![
                (attr::SECTOR_SIZE, sector_size.to_string()),
                (attr::LUN, lun.to_string()),
            ],
            Command::Patch(p) => vec![
                (attr::SECTOR_SIZE, p.sector_size.to_string()),
                (attr::BYTE_OFFSET, p.byte_offset.to_string()),
                (attr::FILENAME, PATCH_TARGET.to_string()),
                (attr::LUN, p.lun.to_string()),
                (attr::SIZE_IN_BYTES, p.size_in_bytes.to_string()),
                (attr::START_SECTOR, p.start_sector.to_string()),
                (attr::VALUE, p.value.to_string()),
            ],
            Command::GetStorageInfo { lun } => vec![(attr::LUN, lun.to_string())],
            Command::Power {
                action,
                delay_seconds,
            } => {
                let mut a = vec![(attr::VALUE, action.value().to_string())];
                if let Some(delay) = delay_seconds {
                    a.push((attr::DELAY, delay.to_string()));
                }
                a
            }
            Command::SetBootableStorageDrive { lun } => vec![(attr::VALUE, lun.to_string())],
            Command::Nop | Command::Unknown { .. } => Vec::new(),
        };
        write_document(&[(self.tag(), attributes)])
    }

    /// Decodes a host document (device side). Unknown tags become [`Command::Unknown`] so a
    /// device can NAK them; a known tag with missing or malformed attributes is
    /// [`FirehoseError::BadCommand`].
    pub fn parse(doc: &str) -> Result<Command, FirehoseError> {
        let mut elements = parse_document(doc)?;
        if elements.len() != 1 {
            return Err(FirehoseError::Xml(format!(
                "a command document holds exactly one element, this one has {}",
                elements.len()
            )));
        }
        let element = elements.remove(0);
        let tag = element.name.to_ascii_lowercase();
        let range = || -> Result<SectorRange, FirehoseError> {
            Ok(SectorRange {
                lun: element.number(attr::LUN)?,
                start_sector: element.number(attr::START_SECTOR)?,
                sector_size: element.number(attr::SECTOR_SIZE)?,
                num_sectors: element.number(attr::NUM_SECTORS)?,
            })
        };
        Ok(match tag.as_str() {
            "configure" => Command::Configure(Configure {
                memory_name: element.required(attr::MEMORY_NAME)?.to_string(),
                max_payload_to_target: element.number(attr::MAX_PAYLOAD_TO_TARGET)?,
                verbose: element.flag(attr::VERBOSE)?,
                zlp_aware_host: element.flag(attr::ZLP_AWARE_HOST)?,
                skip_storage_init: element.flag(attr::SKIP_STORAGE_INIT)?,
            }),
            "program" => Command::Program(range()?),
            "read" => Command::Read(range()?),
            "getsha256digest" => Command::GetSha256Digest(range()?),
            "erase" => {
                match (
                    element.get(attr::START_SECTOR),
                    element.get(attr::NUM_SECTORS),
                ) {
                    (None, None) => Command::EraseAll {
                        lun: element.number(attr::LUN)?,
                        sector_size: element.number(attr::SECTOR_SIZE)?,
                    },
                    _ => Command::Erase(range()?),
                }
            }
            "patch" => {
                let filename = element.required(attr::FILENAME)?;
                if filename != PATCH_TARGET {
                    return Err(element.bad(format!(
                        "filename={filename:?}: only {PATCH_TARGET:?} patches reach a device"
                    )));
                }
                Command::Patch(Patch {
                    lun: element.number(attr::LUN)?,
                    sector_size: element.number(attr::SECTOR_SIZE)?,
                    start_sector: element.number(attr::START_SECTOR)?,
                    byte_offset: element.number(attr::BYTE_OFFSET)?,
                    size_in_bytes: element.number(attr::SIZE_IN_BYTES)?,
                    value: element.number(attr::VALUE)?,
                })
            }
            "getstorageinfo" => Command::GetStorageInfo {
                lun: element.number(attr::LUN)?,
            },
            "power" => {
                let action = match element.required(attr::VALUE)?.to_ascii_lowercase().as_str() {
                    "reset" => PowerAction::Reset,
                    "off" => PowerAction::Off,
                    "reset_to_edl" => PowerAction::ResetToEdl,
                    other => return Err(element.bad(format!("unsupported power value {other:?}"))),
                };
                let delay_seconds = element
                    .get(attr::DELAY)
                    .map(|_| element.number(attr::DELAY))
                    .transpose()?;
                Command::Power {
                    action,
                    delay_seconds,
                }
            }
            "setbootablestoragedrive" => Command::SetBootableStorageDrive {
                lun: element.number(attr::VALUE)?,
            },
            "nop" => Command::Nop,
            _ => Command::Unknown { tag: element.name },
        })
    }
}

/// The device's answer to a command: ACK or NAK plus attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// `value="ACK"` (true) or `value="NAK"` (false).
    pub ack: bool,
    /// Every other attribute (`rawmode`, `MaxPayloadSizeToTargetInBytes`, …), by name.
    pub attributes: BTreeMap<String, String>,
}

impl Response {
    /// An ACK without attributes.
    pub fn ack() -> Response {
        Response {
            ack: true,
            attributes: BTreeMap::new(),
        }
    }

    /// A NAK without attributes.
    pub fn nak() -> Response {
        Response {
            ack: false,
            ..Response::ack()
        }
    }

    /// Adds an attribute (builder style, for devices).
    pub fn with(mut self, name: &str, value: impl ToString) -> Response {
        self.attributes.insert(name.to_string(), value.to_string());
        self
    }

    /// An attribute's value; names match without regard to case, as programmers differ.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether a raw data phase follows (`rawmode="true"`).
    pub fn rawmode(&self) -> bool {
        self.get(attr::RAWMODE)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

/// One device → host document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceDoc {
    /// `<log value="…"/>` texts, in order.
    pub logs: Vec<String>,
    /// The `<response>`, if the document has one.
    pub response: Option<Response>,
}

impl DeviceDoc {
    /// A document holding one log line.
    pub fn log(text: impl Into<String>) -> DeviceDoc {
        DeviceDoc {
            logs: vec![text.into()],
            response: None,
        }
    }

    /// A document holding only a response.
    pub fn response(response: Response) -> DeviceDoc {
        DeviceDoc {
            logs: Vec::new(),
            response: Some(response),
        }
    }

    /// Encodes the document (device side): logs first, then the response.
    pub fn encode(&self) -> String {
        let mut elements: Vec<(&str, Vec<(&str, String)>)> = self
            .logs
            .iter()
            .map(|text| ("log", vec![(attr::VALUE, text.clone())]))
            .collect();
        if let Some(response) = &self.response {
            let value = if response.ack { "ACK" } else { "NAK" };
            let mut attributes = vec![(attr::VALUE, value.to_string())];
            attributes.extend(
                response
                    .attributes
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.clone())),
            );
            elements.push(("response", attributes));
        }
        write_document(&elements)
    }

    /// Decodes a device document (host side). Elements other than `<log>` and `<response>`
    /// are skipped; a second `<response>` or a value other than ACK/NAK is an error.
    pub fn parse(doc: &str) -> Result<DeviceDoc, FirehoseError> {
        let mut parsed = DeviceDoc::default();
        for element in parse_document(doc)? {
            match element.name.to_ascii_lowercase().as_str() {
                "log" => parsed
                    .logs
                    .push(element.get(attr::VALUE).unwrap_or_default().to_string()),
                "response" => {
                    if parsed.response.is_some() {
                        return Err(FirehoseError::Xml(
                            "a document holds more than one <response>".into(),
                        ));
                    }
                    let ack = match element.get(attr::VALUE) {
                        Some(v) if v.eq_ignore_ascii_case("ACK") => true,
                        Some(v) if v.eq_ignore_ascii_case("NAK") => false,
                        other => {
                            return Err(FirehoseError::Xml(format!(
                                "<response value={other:?}> is neither ACK nor NAK"
                            )))
                        }
                    };
                    let attributes = element
                        .attributes
                        .into_iter()
                        .filter(|(k, _)| !k.eq_ignore_ascii_case(attr::VALUE))
                        .collect();
                    parsed.response = Some(Response { ack, attributes });
                }
                other => tracing::debug!(element = other, "skipping unknown Firehose element"),
            }
        }
        Ok(parsed)
    }
}

/// One child element of `<data>`.
#[derive(Debug)]
struct Element {
    name: String,
    attributes: Vec<(String, String)>,
}

impl Element {
    fn get(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn bad(&self, reason: String) -> FirehoseError {
        FirehoseError::BadCommand {
            tag: self.name.clone(),
            reason,
        }
    }

    fn required(&self, name: &str) -> Result<&str, FirehoseError> {
        self.get(name)
            .ok_or_else(|| self.bad(format!("missing attribute {name}")))
    }

    /// A plain decimal number (expressions must be resolved before they reach the wire).
    fn number<N: std::str::FromStr>(&self, name: &str) -> Result<N, FirehoseError> {
        let text = self.required(name)?.trim();
        text.parse()
            .map_err(|_| self.bad(format!("{name}={text:?} is not a plain decimal number")))
    }

    /// A `0`/`1` (or `false`/`true`) flag; absent means off.
    fn flag(&self, name: &str) -> Result<bool, FirehoseError> {
        match self.get(name).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(false),
            Some(v) if v == "1" || v == "true" => Ok(true),
            Some(v) if v == "0" || v == "false" => Ok(false),
            Some(v) => Err(self.bad(format!("{name}={v:?} is not 0 or 1"))),
        }
    }
}

/// Writes `<?xml version="1.0" ?><data>…</data>` with one empty element per entry.
fn write_document(elements: &[(&str, Vec<(&str, String)>)]) -> String {
    let mut writer = Writer::new(Vec::new());
    let events = std::iter::once(Event::Decl(BytesDecl::new("1.0", None, None)))
        .chain(std::iter::once(Event::Start(BytesStart::new("data"))))
        .chain(elements.iter().map(|(name, attributes)| {
            Event::Empty(
                BytesStart::new(*name)
                    .with_attributes(attributes.iter().map(|(k, v)| (*k, v.as_str()))),
            )
        }))
        .chain(std::iter::once(Event::End(
            quick_xml::events::BytesEnd::new("data"),
        )));
    for event in events {
        // Writing into a Vec cannot fail.
        let _ = writer.write_event(event);
    }
    String::from_utf8_lossy(&writer.into_inner()).into_owned()
}

/// The child elements of a `<data>` document, with unescaped attribute values.
fn parse_document(doc: &str) -> Result<Vec<Element>, FirehoseError> {
    let mut reader = Reader::from_str(doc);
    reader.config_mut().trim_text(true);
    let mut elements = Vec::new();
    let mut in_data = false;
    let mut closed = false;
    loop {
        let event = reader.read_event().map_err(xml_error)?;
        match event {
            Event::Eof => break,
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
            Event::Text(t) if t.iter().all(u8::is_ascii_whitespace) => {}
            Event::Text(_) | Event::CData(_) => {
                if !in_data {
                    return Err(FirehoseError::Xml("text outside <data>".into()));
                }
            }
            Event::Start(e) | Event::Empty(e) if closed => {
                return Err(FirehoseError::Xml(format!(
                    "<{}> after the end of <data>",
                    String::from_utf8_lossy(e.name().as_ref())
                )))
            }
            Event::Start(e) if !in_data => {
                expect_data_root(&e)?;
                in_data = true;
            }
            Event::Empty(e) if !in_data => {
                expect_data_root(&e)?;
                closed = true;
            }
            Event::Start(e) => {
                elements.push(element(&e)?);
                // Content inside a command element carries nothing we use.
                reader.read_to_end(e.name()).map_err(xml_error)?;
            }
            Event::Empty(e) => elements.push(element(&e)?),
            Event::End(_) => {
                in_data = false;
                closed = true;
            }
        }
    }
    if !closed {
        return Err(FirehoseError::Xml(
            "the document has no complete <data> element".into(),
        ));
    }
    Ok(elements)
}

fn expect_data_root(e: &BytesStart<'_>) -> Result<(), FirehoseError> {
    if e.name().as_ref().eq_ignore_ascii_case(b"data") {
        Ok(())
    } else {
        Err(FirehoseError::Xml(format!(
            "the root element is <{}>, not <data>",
            String::from_utf8_lossy(e.name().as_ref())
        )))
    }
}

fn element(e: &BytesStart<'_>) -> Result<Element, FirehoseError> {
    let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
    let attributes = e
        .attributes()
        .map(|a| {
            let a = a.map_err(xml_error)?;
            let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
            let value = a.unescape_value().map_err(xml_error)?.into_owned();
            Ok((key, value))
        })
        .collect::<Result<_, FirehoseError>>()?;
    Ok(Element { name, attributes })
}

/// Cuts Firehose documents out of a transport, whether each read is one USB transfer or
/// whatever bytes a serial port has.
///
/// A document ends with `</data>`; anything after it in the same read stays buffered for
/// the next document or for the raw data phase ([`DocReader::read_raw`]). A document may
/// be at most [`MAX_DOCUMENT_LEN`] bytes, so the buffer is bounded.
#[derive(Debug)]
pub struct DocReader {
    buf: ReadBuffer,
    /// Leading buffered bytes already searched for the end marker.
    scanned: usize,
}

impl Default for DocReader {
    fn default() -> Self {
        Self::new()
    }
}

impl DocReader {
    /// An empty reader.
    pub fn new() -> Self {
        DocReader {
            buf: ReadBuffer::new(2 * MAX_DOCUMENT_LEN),
            scanned: 0,
        }
    }

    /// A reader that starts with bytes already received (e.g. by Sahara finding a
    /// programmer already running); at most [`MAX_DOCUMENT_LEN`] of them are kept.
    pub fn with_pending(pending: &[u8]) -> Self {
        let mut reader = DocReader::new();
        reader.buf.preload(pending);
        reader
    }

    /// Bytes received but not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        self.buf.buffered()
    }

    fn consume(&mut self, n: usize) {
        self.buf.consume(n);
        self.scanned = self.scanned.saturating_sub(n);
    }

    /// Returns the next complete document (leading whitespace and NULs dropped), reading
    /// until `timeout` runs out.
    pub fn next_document(
        &mut self,
        transport: &mut dyn Transport,
        timeout: Duration,
    ) -> Result<String, FirehoseError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(doc) = self.take_document()? {
                return Ok(doc);
            }
            if self.buffered().len() > MAX_DOCUMENT_LEN {
                return Err(FirehoseError::DocumentTooLarge {
                    limit: MAX_DOCUMENT_LEN,
                });
            }
            self.buf.fill(transport, deadline, timeout)?;
        }
    }

    /// Cuts a complete document from the buffer, if one is there.
    fn take_document(&mut self) -> Result<Option<String>, FirehoseError> {
        let skip = self
            .buffered()
            .iter()
            .take_while(|b| b.is_ascii_whitespace() || **b == 0)
            .count();
        self.consume(skip);
        let from = self.scanned.saturating_sub(END_OF_DOCUMENT.len() - 1);
        let found = self.buffered()[from..]
            .windows(END_OF_DOCUMENT.len())
            .position(|w| w == END_OF_DOCUMENT);
        let Some(at) = found else {
            self.scanned = self.buffered().len();
            return Ok(None);
        };
        let len = from + at + END_OF_DOCUMENT.len();
        if len > MAX_DOCUMENT_LEN {
            return Err(FirehoseError::DocumentTooLarge {
                limit: MAX_DOCUMENT_LEN,
            });
        }
        let doc = std::str::from_utf8(&self.buffered()[..len])
            .map(str::to_string)
            .map_err(|_| FirehoseError::Xml("the document is not UTF-8".into()));
        self.consume(len);
        doc.map(Some)
    }

    /// Reads raw data-phase bytes into `out`: buffered bytes first, otherwise one transport
    /// read of at most `out.len()` bytes. Returns how many bytes were placed (at least one
    /// unless `out` is empty).
    pub fn read_raw(
        &mut self,
        transport: &mut dyn Transport,
        out: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, FirehoseError> {
        let taken = self.buf.take_into(out);
        self.scanned = 0;
        if taken > 0 || out.is_empty() {
            return Ok(taken);
        }
        Ok(read_some(
            transport,
            out,
            Instant::now() + timeout,
            timeout,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range() -> SectorRange {
        SectorRange {
            lun: 4,
            start_sector: 6,
            sector_size: 4096,
            num_sectors: 1024,
        }
    }

    #[test]
    fn commands_round_trip() {
        let commands = [
            Command::Configure(Configure {
                memory_name: "ufs".into(),
                max_payload_to_target: 1 << 20,
                verbose: false,
                zlp_aware_host: true,
                skip_storage_init: false,
            }),
            Command::Program(range()),
            Command::Read(range()),
            Command::Erase(range()),
            Command::EraseAll {
                lun: 1,
                sector_size: 512,
            },
            Command::Patch(Patch {
                lun: 0,
                sector_size: 512,
                start_sector: 1,
                byte_offset: 16,
                size_in_bytes: 4,
                value: 0xdead_beef,
            }),
            Command::GetSha256Digest(range()),
            Command::GetStorageInfo { lun: 2 },
            Command::Power {
                action: PowerAction::Reset,
                delay_seconds: Some(10),
            },
            Command::Power {
                action: PowerAction::Off,
                delay_seconds: None,
            },
            Command::Power {
                action: PowerAction::ResetToEdl,
                delay_seconds: None,
            },
            Command::SetBootableStorageDrive { lun: 1 },
            Command::Nop,
            Command::Unknown { tag: "peek".into() },
        ];
        for command in commands {
            let xml = command.to_xml();
            assert!(xml.starts_with("<?xml version=\"1.0\"?><data><"), "{xml}");
            assert_eq!(Command::parse(&xml).unwrap(), command, "{xml}");
        }
    }

    #[test]
    fn program_golden_document() {
        assert_eq!(
            Command::Program(range()).to_xml(),
            "<?xml version=\"1.0\"?><data><program SECTOR_SIZE_IN_BYTES=\"4096\" \
             num_partition_sectors=\"1024\" physical_partition_number=\"4\" \
             start_sector=\"6\"/></data>"
        );
    }

    #[test]
    fn power_takes_only_the_documented_values() {
        let power = |value: &str| {
            Command::parse(&format!(
                "<?xml version=\"1.0\" ?><data><power value=\"{value}\"/></data>"
            ))
        };
        assert_eq!(
            power("reset_to_edl").unwrap(),
            Command::Power {
                action: PowerAction::ResetToEdl,
                delay_seconds: None
            }
        );
        assert!(power("reset").is_ok() && power("off").is_ok());
        // The value this project once invented; programmers do not know it.
        assert!(matches!(
            power("edl"),
            Err(FirehoseError::BadCommand { .. })
        ));
    }

    #[test]
    fn bad_commands_are_named() {
        let e = Command::parse(
            r#"<?xml version="1.0" ?><data><read SECTOR_SIZE_IN_BYTES="512" num_partition_sectors="1" physical_partition_number="0" start_sector="NUM_DISK_SECTORS-5."/></data>"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("start_sector"), "{e}");
        assert!(matches!(
            Command::parse("<?xml version=\"1.0\" ?><data><nop/><nop/></data>"),
            Err(FirehoseError::Xml(_))
        ));
        assert!(matches!(
            Command::parse("<?xml version=\"1.0\" ?><dat><nop/></dat>"),
            Err(FirehoseError::Xml(_))
        ));
    }

    #[test]
    fn device_documents_round_trip_with_escaping() {
        let doc = DeviceDoc {
            logs: vec!["a \"quoted\" <log> & more".into(), "second".into()],
            response: Some(
                Response::nak()
                    .with("MaxPayloadSizeToTargetInBytes", 65536)
                    .with("rawmode", "false"),
            ),
        };
        let xml = doc.encode();
        assert!(
            xml.contains("&quot;quoted&quot; &lt;log&gt; &amp;"),
            "{xml}"
        );
        let parsed = DeviceDoc::parse(&xml).unwrap();
        assert_eq!(parsed, doc);
        let response = parsed.response.unwrap();
        assert_eq!(response.get("maxpayloadsizetotargetinbytes"), Some("65536"));
        assert!(!response.rawmode());
        assert!(DeviceDoc::parse(
            "<?xml version=\"1.0\" ?><data><response value=\"ACK\" rawmode=\"true\"/></data>"
        )
        .unwrap()
        .response
        .unwrap()
        .rawmode());
    }

    /// Delivers fixed reads, then times out.
    struct Reads(std::collections::VecDeque<Vec<u8>>);

    impl Transport for Reads {
        fn write(&mut self, _: &[u8], _: Duration) -> Result<(), TransportError> {
            Ok(())
        }
        fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
            let next = self.0.pop_front().ok_or(TransportError::Timeout(timeout))?;
            buf[..next.len()].copy_from_slice(&next);
            Ok(next.len())
        }
        fn address(&self) -> &str {
            "reads"
        }
    }

    #[test]
    fn reader_splits_and_joins_documents() {
        let a = DeviceDoc::log("a").encode();
        let b = DeviceDoc::response(Response::ack().with("rawmode", "true")).encode();
        let (b1, b2) = b.split_at(10);
        let mut reads = Reads(
            [
                format!("{a}\n{b1}").into_bytes(),
                Vec::new(),
                format!("{b2}RAW").into_bytes(),
            ]
            .into(),
        );
        let mut reader = DocReader::new();
        let wait = Duration::from_millis(10);
        assert_eq!(reader.next_document(&mut reads, wait).unwrap(), a);
        assert_eq!(reader.next_document(&mut reads, wait).unwrap(), b);
        assert_eq!(reader.buffered(), b"RAW");
        let mut raw = [0u8; 8];
        assert_eq!(reader.read_raw(&mut reads, &mut raw, wait).unwrap(), 3);
        assert!(matches!(
            reader.next_document(&mut reads, wait),
            Err(FirehoseError::Transport(TransportError::Timeout(_)))
        ));
    }

    #[test]
    fn bad_device_documents_are_rejected() {
        for doc in [
            "<?xml version=\"1.0\" ?><data><response value=\"MAYBE\"/></data>",
            "<?xml version=\"1.0\" ?><data><response value=\"ACK\"/><response value=\"ACK\"/></data>",
            "<?xml version=\"1.0\" ?><data><log value=\"unterminated/></data>",
            "<?xml version=\"1.0\" ?><data><log value=\"x\"/>",
        ] {
            assert!(DeviceDoc::parse(doc).is_err(), "{doc}");
        }
    }
}
