//! The host side of a Sahara image transfer: answer HELLO, serve the programmer's bytes as
//! the boot ROM asks for them, and finish with DONE.

use std::io::{Read, Seek, SeekFrom};
use std::time::{Duration, Instant};

use super::{Packet, PacketReader, SaharaError, Status, HEADER_LEN, MODE_IMAGE_TX_PENDING};
use crate::transport::{Transport, TransportError};

/// Sahara version the host answers with; every image-transfer host uses 2.
const HOST_VERSION: u32 = 2;
/// Oldest version the host accepts.
const HOST_VERSION_COMPATIBLE: u32 = 1;

/// Size of the buffer the programmer is streamed through.
const SERVE_CHUNK: usize = 64 * 1024;

/// Most HELLOs the host answers in one session: the device repeats HELLO only while it has
/// not seen an answer, so more means the answers are not arriving.
const MAX_HELLOS: usize = 16;

/// Limits for [`upload_programmer`].
#[derive(Debug, Clone)]
pub struct SaharaOptions {
    /// How long to wait for the first HELLO. The device repeats HELLO until answered, so a
    /// host that opened the port late still sees one.
    pub hello_timeout: Duration,
    /// How long to wait for each device packet after HELLO, and for each write.
    pub packet_timeout: Duration,
    /// Limit for the whole upload, HELLO included.
    pub overall_timeout: Duration,
}

impl Default for SaharaOptions {
    fn default() -> Self {
        SaharaOptions {
            hello_timeout: Duration::from_secs(10),
            packet_timeout: Duration::from_secs(5),
            overall_timeout: Duration::from_secs(120),
        }
    }
}

/// How [`upload_programmer`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaharaOutcome {
    /// The programmer was loaded and now runs; the same link speaks Firehose.
    Uploaded {
        /// Programmer bytes sent to the device (the ROM may read some ranges twice).
        bytes_served: u64,
    },
    /// The device answered with XML: a programmer is already running, no upload was done.
    /// `pending` holds the bytes already read, to hand to the Firehose client.
    AlreadyInFirehose {
        /// Bytes received so far (the start of a Firehose document).
        pending: Vec<u8>,
    },
}

/// Uploads a Firehose programmer of `len` bytes to a device in Sahara mode.
///
/// The device drives the transfer: it asks for ranges in any order (READ_DATA or
/// READ_DATA64), and the host answers each with exactly those bytes. A range outside the
/// programmer, an END_OF_IMAGE with a non-zero status (reported by name) or an unexpected
/// packet ends the upload with an error. `progress` receives the total bytes served.
pub fn upload_programmer<T: Transport, R: Read + Seek>(
    transport: &mut T,
    programmer: &mut R,
    len: u64,
    options: &SaharaOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<SaharaOutcome, SaharaError> {
    let started = Instant::now();
    let overall_deadline = started + options.overall_timeout;
    let mut reader = PacketReader::new();
    let hello = match wait_for_hello(transport, &mut reader, options)? {
        Greeting::Hello(hello) => hello,
        Greeting::Firehose => {
            return Ok(SaharaOutcome::AlreadyInFirehose {
                pending: reader.buffered().to_vec(),
            })
        }
    };
    let mut session = Session {
        transport,
        programmer,
        len,
        options,
        chunk: vec![0; SERVE_CHUNK],
        served: 0,
    };
    session.answer_hello(&hello)?;
    let mut hellos = 1;
    loop {
        let left = overall_deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(SaharaError::Overall(options.overall_timeout));
        }
        let packet = reader.read_packet(session.transport, options.packet_timeout.min(left))?;
        match packet {
            Packet::Hello { .. } => {
                hellos += 1;
                if hellos > MAX_HELLOS {
                    return Err(SaharaError::Unexpected {
                        expected: "a READ_DATA after the HELLO_RESP",
                        got: format!("{hellos} HELLOs"),
                    });
                }
                tracing::debug!("the device repeated HELLO; answering again");
                session.answer_hello(&packet)?;
            }
            Packet::ReadData {
                image_id,
                offset,
                length,
            } => session.serve(
                u64::from(image_id),
                u64::from(offset),
                u64::from(length),
                progress,
            )?,
            Packet::ReadData64 {
                image_id,
                offset,
                length,
            } => session.serve(image_id, offset, length, progress)?,
            Packet::EndOfImage { image_id, status } => {
                if !status.is_success() {
                    return Err(SaharaError::ImageRejected { image_id, status });
                }
                tracing::debug!(image_id, "image accepted; sending DONE");
                session.send(&Packet::Done)?;
            }
            Packet::DoneResp { image_tx_status } => {
                if image_tx_status != 1 {
                    // Some boot ROMs (MSM8916) report "more images" even when done; with a
                    // single programmer there is nothing more to give, so go on as qdl does.
                    tracing::warn!(image_tx_status, "DONE_RESP reports pending images");
                }
                tracing::info!(
                    bytes = session.served,
                    elapsed = ?started.elapsed(),
                    "programmer uploaded"
                );
                return Ok(SaharaOutcome::Uploaded {
                    bytes_served: session.served,
                });
            }
            other => {
                return Err(SaharaError::Unexpected {
                    expected: "READ_DATA, END_OF_IMAGE or DONE_RESP",
                    got: other.name(),
                })
            }
        }
    }
}

/// What the device said first.
enum Greeting {
    Hello(Packet),
    Firehose,
}

/// The fixed first 8 bytes of every HELLO, used to find one in a byte stream joined midway.
fn hello_header() -> [u8; HEADER_LEN] {
    let mut header = [0; HEADER_LEN];
    header.copy_from_slice(
        &Packet::Hello {
            version: 0,
            version_compatible: 0,
            max_cmd_packet_len: 0,
            mode: 0,
        }
        .encode()[..HEADER_LEN],
    );
    header
}

/// Waits for a HELLO, skipping the tail of any packet a late-opened serial port caught
/// midway, and recognises a programmer that is already running by its XML.
fn wait_for_hello(
    transport: &mut dyn Transport,
    reader: &mut PacketReader,
    options: &SaharaOptions,
) -> Result<Greeting, SaharaError> {
    let deadline = Instant::now() + options.hello_timeout;
    let header = hello_header();
    loop {
        let buffered = reader.buffered();
        if buffered
            .iter()
            .find(|b| !b.is_ascii_whitespace() && **b != 0)
            .is_some_and(|b| *b == b'<')
        {
            return Ok(Greeting::Firehose);
        }
        // Drop everything before the first possible HELLO header.
        let skip = (0..buffered.len())
            .find(|&i| {
                let rest = &buffered[i..];
                let n = rest.len().min(HEADER_LEN);
                rest[..n] == header[..n]
            })
            .unwrap_or(buffered.len());
        if skip > 0 {
            tracing::debug!(bytes = skip, "skipping bytes before the Sahara HELLO");
            reader.buf.consume(skip);
        }
        if let Some(packet) = reader.take_packet()? {
            return Ok(Greeting::Hello(packet));
        }
        match reader.buf.fill(transport, deadline, options.hello_timeout) {
            Ok(()) => {}
            Err(TransportError::Timeout(_)) => {
                return Err(SaharaError::NoHello(options.hello_timeout))
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The upload in progress.
struct Session<'a, T, R> {
    transport: &'a mut T,
    programmer: &'a mut R,
    len: u64,
    options: &'a SaharaOptions,
    chunk: Vec<u8>,
    served: u64,
}

impl<T: Transport, R: Read + Seek> Session<'_, T, R> {
    fn send(&mut self, packet: &Packet) -> Result<(), SaharaError> {
        self.transport
            .write(&packet.encode(), self.options.packet_timeout)?;
        Ok(())
    }

    /// Answers a HELLO, agreeing to the image transfer it asks for.
    fn answer_hello(&mut self, hello: &Packet) -> Result<(), SaharaError> {
        let Packet::Hello {
            version,
            version_compatible,
            max_cmd_packet_len,
            mode,
        } = *hello
        else {
            return Err(SaharaError::Unexpected {
                expected: "HELLO",
                got: hello.name(),
            });
        };
        tracing::debug!(
            version,
            version_compatible,
            max_cmd_packet_len,
            mode,
            "Sahara HELLO"
        );
        if mode != MODE_IMAGE_TX_PENDING {
            return Err(SaharaError::UnsupportedMode { mode });
        }
        self.send(&Packet::HelloResp {
            version: HOST_VERSION,
            version_compatible: HOST_VERSION_COMPATIBLE,
            status: Status::SUCCESS,
            mode,
        })
    }

    /// Sends `length` bytes of the programmer from `offset`.
    fn serve(
        &mut self,
        image_id: u64,
        offset: u64,
        length: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), SaharaError> {
        let in_range = offset
            .checked_add(length)
            .is_some_and(|end| end <= self.len);
        if !in_range {
            return Err(SaharaError::OutOfRange {
                image_id,
                offset,
                length,
                image_len: self.len,
            });
        }
        tracing::trace!(image_id, offset, length, "READ_DATA");
        self.programmer
            .seek(SeekFrom::Start(offset))
            .map_err(SaharaError::Source)?;
        let mut left = length;
        while left > 0 {
            let n = usize::try_from(left).map_or(self.chunk.len(), |l| l.min(self.chunk.len()));
            let chunk = &mut self.chunk[..n];
            self.programmer
                .read_exact(chunk)
                .map_err(SaharaError::Source)?;
            self.transport.write(chunk, self.options.packet_timeout)?;
            left -= n as u64;
            self.served += n as u64;
            progress(self.served);
        }
        Ok(())
    }
}
