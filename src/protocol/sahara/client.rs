//! The host side of a Sahara image transfer: answer HELLO, serve the programmer's bytes as
//! the boot ROM asks for them, and finish with DONE.

use std::io::{Read, Seek, SeekFrom};
use std::time::{Duration, Instant};

use super::{Packet, PacketReader, SaharaError, Status, HEADER_LEN, MODE_IMAGE_TX_PENDING};
use crate::transport::{Transport, TransportError};

/// Sahara version the host answers with; every image-transfer host uses 2.
pub(super) const HOST_VERSION: u32 = 2;
/// Oldest version the host accepts.
pub(super) const HOST_VERSION_COMPATIBLE: u32 = 1;

/// Size of the buffer the programmer is streamed through.
const SERVE_CHUNK: usize = 64 * 1024;

/// Most HELLOs the host answers in one session: the device repeats HELLO only while it has
/// not seen an answer, so more means the answers are not arriving.
const MAX_HELLOS: usize = 16;

/// How long a repeated HELLO must be followed by silence before the host answers it again.
const STALE_HELLO_GRACE: Duration = Duration::from_millis(300);

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
/// A device that repeats HELLO is answered again only when nothing follows the repeat (a
/// HELLO already queued when the host answered is skipped). The device drives the transfer: it asks for ranges in any order (READ_DATA or
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
    let mut next = None;
    loop {
        let left = overall_deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(SaharaError::Overall(options.overall_timeout));
        }
        let packet = match next.take() {
            Some(packet) => packet,
            None => reader.read_packet(session.transport, options.packet_timeout.min(left))?,
        };
        match packet {
            Packet::Hello { .. } => {
                hellos += 1;
                if hellos > MAX_HELLOS {
                    return Err(SaharaError::Unexpected {
                        expected: "a READ_DATA after the HELLO_RESP",
                        got: format!("{hellos} HELLOs"),
                    });
                }
                // A HELLO sent before our answer arrived is stale: the device is already
                // asking for data, and a second HELLO_RESP would land in its data stream.
                // Only a HELLO followed by silence means our answer was lost.
                match reader.read_packet(session.transport, STALE_HELLO_GRACE) {
                    Ok(following) => {
                        tracing::debug!("ignoring a HELLO sent before our answer arrived");
                        next = Some(following);
                    }
                    Err(SaharaError::Transport(TransportError::Timeout(_))) => {
                        tracing::debug!("the device repeated HELLO; answering again");
                        session.answer_hello(&packet)?;
                    }
                    Err(e) => return Err(e),
                }
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

/// How a Firehose document may begin; seeing one instead of HELLO means a programmer is
/// already running.
const XML_STARTS: [&[u8]; 2] = [b"<?xml", b"<data"];

/// What the device said first.
pub(super) enum Greeting {
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
pub(super) fn wait_for_hello(
    transport: &mut dyn Transport,
    reader: &mut PacketReader,
    options: &SaharaOptions,
) -> Result<Greeting, SaharaError> {
    let deadline = Instant::now() + options.hello_timeout;
    let header = hello_header();
    loop {
        let buffered = reader.buffered();
        let text = &buffered[buffered
            .iter()
            .take_while(|b| b.is_ascii_whitespace() || **b == 0)
            .count()..];
        let mut xml_start = XML_STARTS.iter().map(|start| {
            let n = text.len().min(start.len());
            (n > 0 && text[..n] == start[..n], n == start.len())
        });
        match xml_start.find(|(matches, _)| *matches) {
            Some((_, true)) => return Ok(Greeting::Firehose),
            // Could still become XML: wait for the rest of it.
            Some((_, false)) => {}
            None => {
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
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::io::Cursor;

    /// A boot ROM that asks for `requests`, checks every byte served against `image`, and
    /// answers DONE; its packets reach the host in reads of at most `split` bytes.
    struct Rom {
        out: VecDeque<u8>,
        split: usize,
        requests: VecDeque<Packet>,
        image: Vec<u8>,
        /// Bytes of the current request still to come, and where they go.
        pending: Option<(usize, usize)>,
        end_status: u32,
        answered: bool,
        /// Whether to ignore the first HELLO_RESP and send HELLO again.
        lose_first_answer: bool,
        done: bool,
    }

    fn hello() -> Packet {
        Packet::Hello {
            version: 2,
            version_compatible: 1,
            max_cmd_packet_len: 0x400,
            mode: MODE_IMAGE_TX_PENDING,
        }
    }

    impl Rom {
        fn new(image: &[u8], requests: Vec<Packet>) -> Rom {
            Rom {
                out: hello().encode().into(),
                split: usize::MAX,
                requests: requests.into(),
                image: image.to_vec(),
                pending: None,
                end_status: 0,
                answered: false,
                lose_first_answer: false,
                done: false,
            }
        }

        fn push(&mut self, packet: &Packet) {
            self.out.extend(packet.encode());
        }

        fn next_request(&mut self) {
            match self.requests.pop_front() {
                Some(packet) => {
                    let (offset, length) = match packet {
                        Packet::ReadData { offset, length, .. } => {
                            (offset as usize, length as usize)
                        }
                        Packet::ReadData64 { offset, length, .. } => {
                            (offset as usize, length as usize)
                        }
                        _ => (0, 0),
                    };
                    if length > 0 {
                        self.pending = Some((offset, length));
                    }
                    self.push(&packet);
                }
                None => self.push(&Packet::EndOfImage {
                    image_id: 13,
                    status: Status(self.end_status),
                }),
            }
        }
    }

    impl Transport for Rom {
        fn write(&mut self, data: &[u8], _: Duration) -> Result<(), TransportError> {
            if let Some((offset, left)) = self.pending {
                assert!(data.len() <= left, "host sent more than requested");
                assert_eq!(data, &self.image[offset..offset + data.len()]);
                self.pending =
                    (left > data.len()).then(|| (offset + data.len(), left - data.len()));
                if self.pending.is_none() {
                    self.next_request();
                }
                return Ok(());
            }
            match Packet::parse(data).expect("host packet") {
                Packet::HelloResp {
                    version,
                    version_compatible,
                    status,
                    mode,
                } => {
                    assert_eq!(
                        (version, version_compatible, status, mode),
                        (2, 1, Status::SUCCESS, 0)
                    );
                    assert!(!self.answered, "HELLO_RESP after the transfer started");
                    if self.lose_first_answer {
                        self.lose_first_answer = false;
                        self.push(&hello());
                    } else {
                        self.answered = true;
                        self.next_request();
                    }
                }
                Packet::Done => {
                    self.done = true;
                    self.push(&Packet::DoneResp { image_tx_status: 1 });
                }
                other => panic!("unexpected host packet {other:?}"),
            }
            Ok(())
        }

        fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
            if self.out.is_empty() {
                return Err(TransportError::Timeout(timeout));
            }
            let n = self.out.len().min(buf.len()).min(self.split);
            for (slot, byte) in buf.iter_mut().zip(self.out.drain(..n)) {
                *slot = byte;
            }
            Ok(n)
        }

        fn address(&self) -> &str {
            "rom"
        }
    }

    fn programmer() -> Vec<u8> {
        (0..200_000u32).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    fn upload(rom: &mut Rom, image: &[u8]) -> Result<SaharaOutcome, SaharaError> {
        let options = SaharaOptions {
            hello_timeout: Duration::from_millis(200),
            ..SaharaOptions::default()
        };
        let mut last = 0;
        upload_programmer(
            rom,
            &mut Cursor::new(image),
            image.len() as u64,
            &options,
            &mut |n| last = n,
        )
    }

    fn read32(offset: u32, length: u32) -> Packet {
        Packet::ReadData {
            image_id: 13,
            offset,
            length,
        }
    }

    #[test]
    fn serves_requests_in_device_order_over_any_split() {
        let image = programmer();
        for split in [1, 7, 48, 4096, usize::MAX] {
            let mut rom = Rom::new(
                &image,
                vec![
                    read32(0, 0x34),
                    read32(0x34, 0x38 * 3),
                    read32(150_000, 50_000),
                    read32(0x1000, 100_000),
                    Packet::ReadData64 {
                        image_id: 13,
                        offset: 199_000,
                        length: 1000,
                    },
                ],
            );
            rom.split = split;
            let outcome = upload(&mut rom, &image).unwrap();
            let served = (0x34 + 0x38 * 3 + 50_000 + 100_000 + 1000) as u64;
            assert_eq!(
                outcome,
                SaharaOutcome::Uploaded {
                    bytes_served: served
                }
            );
            assert!(rom.done && rom.pending.is_none());
        }
    }

    #[test]
    fn stale_hello_is_skipped_and_a_lost_answer_repeated() {
        let image = programmer();
        // Two HELLOs queued before the host answered: answering both would put a
        // HELLO_RESP into the data the ROM expects (the ROM would fail the test).
        let mut rom = Rom::new(&image, vec![read32(0, 64)]);
        rom.push(&hello());
        assert!(matches!(
            upload(&mut rom, &image).unwrap(),
            SaharaOutcome::Uploaded { bytes_served: 64 }
        ));
        // The first answer is lost: the ROM repeats HELLO and then waits.
        let mut rom = Rom::new(&image, vec![read32(0, 64)]);
        rom.lose_first_answer = true;
        assert!(matches!(
            upload(&mut rom, &image).unwrap(),
            SaharaOutcome::Uploaded { bytes_served: 64 }
        ));
        assert!(rom.answered && !rom.lose_first_answer);
    }

    #[test]
    fn joins_a_stream_midway() {
        let image = programmer();
        let mut rom = Rom::new(&image, vec![read32(0, 64)]);
        // The port was opened during a HELLO: only its tail arrived before the next one.
        // Its tail happens to start with `<`, which must not pass for Firehose XML.
        let mut tail = hello().encode()[20..].to_vec();
        tail[0] = b'<';
        for byte in tail.into_iter().rev() {
            rom.out.push_front(byte);
        }
        rom.split = 5;
        assert!(matches!(
            upload(&mut rom, &image).unwrap(),
            SaharaOutcome::Uploaded { .. }
        ));
    }

    #[test]
    fn out_of_range_request_is_refused() {
        let image = programmer();
        let mut rom = Rom::new(
            &image,
            vec![Packet::ReadData64 {
                image_id: 13,
                offset: u64::MAX - 1,
                length: 4,
            }],
        );
        let e = upload(&mut rom, &image).unwrap_err();
        assert!(
            matches!(
                e,
                SaharaError::OutOfRange {
                    image_len: 200_000,
                    ..
                }
            ),
            "{e}"
        );
        let mut rom = Rom::new(&image, vec![read32(199_999, 2)]);
        assert!(matches!(
            upload(&mut rom, &image),
            Err(SaharaError::OutOfRange {
                offset: 199_999,
                length: 2,
                ..
            })
        ));
    }

    #[test]
    fn rejection_is_reported_by_name() {
        let image = programmer();
        let mut rom = Rom::new(&image, vec![read32(0, 64)]);
        rom.end_status = 0x25;
        let e = upload(&mut rom, &image).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the device rejected image 13: IMAGE_AUTH_FAILURE (0x25)"
        );
        assert!(!rom.done);
    }

    #[test]
    fn running_programmer_is_detected() {
        let image = programmer();
        let mut rom = Rom::new(&image, vec![]);
        rom.out = b"\n<?xml version=\"1.0\" ?><data><log value=\"hi\"/></data>"
            .to_vec()
            .into();
        rom.split = 3;
        let SaharaOutcome::AlreadyInFirehose { pending } = upload(&mut rom, &image).unwrap() else {
            panic!("not detected");
        };
        // Detection stops once `<?xml` is in; the Firehose client reads the rest.
        assert_eq!(pending, b"\n<?xml");
    }

    #[test]
    fn silence_oversize_and_surprises_are_errors() {
        let image = programmer();
        let mut rom = Rom::new(&image, vec![]);
        rom.out.clear();
        assert!(matches!(
            upload(&mut rom, &image),
            Err(SaharaError::NoHello(_))
        ));

        let mut rom = Rom::new(&image, vec![]);
        rom.requests.push_back(Packet::CmdReady);
        assert!(matches!(
            upload(&mut rom, &image),
            Err(SaharaError::Unexpected { got, .. }) if got == "CMD_READY"
        ));

        // A header announcing 1 MiB is refused without waiting for the body.
        let mut rom = Rom::new(&image, vec![]);
        rom.out = [3u32, 1 << 20]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        assert!(matches!(
            PacketReader::new().read_packet(&mut rom, Duration::from_millis(50)),
            Err(SaharaError::BadLength {
                declared: 0x10_0000,
                ..
            })
        ));

        let mut rom = Rom::new(&image, vec![]);
        rom.out = Packet::Hello {
            version: 2,
            version_compatible: 1,
            max_cmd_packet_len: 0x400,
            mode: super::super::MODE_MEMORY_DEBUG,
        }
        .encode()
        .into();
        assert!(matches!(
            upload(&mut rom, &image),
            Err(SaharaError::UnsupportedMode { mode: 2 })
        ));
    }
}
