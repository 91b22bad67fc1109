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
mod command;
mod device_doc;
mod doc_reader;
#[cfg(test)]
mod tests;
mod xml;

pub use client::{DeviceConfig, FirehoseClient, FirehoseTimeouts, LogCallback, StorageInfo};
pub use command::*;
pub use device_doc::*;
pub use doc_reader::*;
use xml::*;

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
