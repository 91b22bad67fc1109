//! Sahara and Firehose clients over a real pseudo-terminal pair, against a small scripted
//! device thread: a byte stream with no message boundaries, real timing and real hang-ups.

use std::io::{self, Cursor, Read, Write};
use std::thread;
use std::time::Duration;

use serialport::{SerialPort, TTYPort};
use sha2::{Digest, Sha256};

use flashline::protocol::firehose::{
    Command, DeviceDoc, DocReader, FirehoseClient, FirehoseError, Response, SectorRange,
};
use flashline::protocol::sahara::{
    self, Packet, PacketReader, SaharaOptions, SaharaOutcome, Status,
};
use flashline::transport::{Transport, TransportError};

/// One end of the pty pair as a [`Transport`].
struct Pty {
    port: TTYPort,
}

impl Transport for Pty {
    fn write(&mut self, data: &[u8], timeout: Duration) -> Result<(), TransportError> {
        self.port.set_timeout(timeout).map_err(io::Error::from)?;
        self.port.write_all(data).map_err(hang_up)
    }

    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        self.port.set_timeout(timeout).map_err(io::Error::from)?;
        match self.port.read(buf) {
            Ok(0) => Err(TransportError::Disconnected),
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(TransportError::Timeout(timeout)),
            Err(e) => Err(hang_up(e)),
        }
    }

    fn address(&self) -> &str {
        "pty"
    }
}

/// A closed peer shows up as EIO or a broken pipe on a pty.
fn hang_up(e: io::Error) -> TransportError {
    match e.kind() {
        io::ErrorKind::TimedOut => TransportError::Timeout(Duration::ZERO),
        io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof => TransportError::Disconnected,
        // EIO
        _ if e.raw_os_error() == Some(5) => TransportError::Disconnected,
        _ => TransportError::Io(e),
    }
}

fn pair() -> (Pty, Pty) {
    let (host, device) = TTYPort::pair().expect("pty pair");
    (Pty { port: host }, Pty { port: device })
}

const WAIT: Duration = Duration::from_secs(5);
const SECTOR: u32 = 512;

fn programmer() -> Vec<u8> {
    (0..100_000u32).map(|i| (i ^ (i >> 9)) as u8).collect()
}

/// The boot ROM half: repeats HELLO until answered, asks for the programmer in pieces
/// (32- and 64-bit requests, out of order), checks every byte, then hands over.
fn rom(device: &mut Pty, image: &[u8]) {
    let mut reader = PacketReader::new();
    let hello = Packet::Hello {
        version: 2,
        version_compatible: 1,
        max_cmd_packet_len: 0x400,
        mode: sahara::MODE_IMAGE_TX_PENDING,
    };
    let answer = loop {
        device.write(&hello.encode(), WAIT).unwrap();
        match reader.read_packet(device, Duration::from_millis(150)) {
            Ok(packet) => break packet,
            Err(sahara::SaharaError::Transport(TransportError::Timeout(_))) => continue,
            Err(e) => panic!("{e}"),
        }
    };
    assert!(matches!(
        answer,
        Packet::HelloResp {
            status: Status::SUCCESS,
            mode: 0,
            ..
        }
    ));
    let requests = [
        Packet::ReadData {
            image_id: 13,
            offset: 0,
            length: 0x34,
        },
        Packet::ReadData64 {
            image_id: 13,
            offset: 60_000,
            length: 40_000,
        },
        Packet::ReadData {
            image_id: 13,
            offset: 0x34,
            length: 60_000 - 0x34,
        },
    ];
    let mut loaded = vec![0u8; image.len()];
    for request in requests {
        let (offset, length) = match request {
            Packet::ReadData { offset, length, .. } => (offset as usize, length as usize),
            Packet::ReadData64 { offset, length, .. } => (offset as usize, length as usize),
            _ => unreachable!(),
        };
        device.write(&request.encode(), WAIT).unwrap();
        reader
            .read_raw(device, &mut loaded[offset..offset + length], WAIT)
            .unwrap();
    }
    assert_eq!(loaded, image);
    device
        .write(
            &Packet::EndOfImage {
                image_id: 13,
                status: Status::SUCCESS,
            }
            .encode(),
            WAIT,
        )
        .unwrap();
    assert_eq!(reader.read_packet(device, WAIT).unwrap(), Packet::Done);
    device
        .write(&Packet::DoneResp { image_tx_status: 1 }.encode(), WAIT)
        .unwrap();
}

/// Keeps the device end open until the host closes its end. (A pty reports the peer's
/// hang-up before the bytes still queued, so a device that closes at once could lose its
/// last answer; a USB device's last answer is delivered before it disconnects.)
fn linger(device: &mut Pty) {
    let mut buf = [0u8; 256];
    while let Ok(_) | Err(TransportError::Timeout(_)) = device.read(&mut buf, WAIT) {}
}

fn send(device: &mut Pty, doc: DeviceDoc) {
    device.write(doc.encode().as_bytes(), WAIT).unwrap();
}

fn next_command(device: &mut Pty, reader: &mut DocReader) -> Command {
    Command::parse(&reader.next_document(device, WAIT).unwrap()).unwrap()
}

/// The programmer half: boots slowly (drops the first configure), then serves program,
/// read, digest and reset on a small in-memory disk.
fn programmer_device(device: &mut Pty) {
    let mut reader = DocReader::new();
    let mut disk = vec![0u8; 256 * SECTOR as usize];
    // Still booting: the host's first configure arrives before anyone listens and is lost;
    // the host repeats it after a second of silence.
    thread::sleep(Duration::from_millis(1300));
    let Command::Configure(_) = next_command(device, &mut reader) else {
        panic!("configure expected")
    };
    send(device, DeviceDoc::log("firehose booted"));
    let Command::Configure(configure) = next_command(device, &mut reader) else {
        panic!("configure expected")
    };
    assert_eq!(configure.max_payload_to_target, 1 << 20);
    send(
        device,
        DeviceDoc::response(
            Response::ack()
                .with("MaxPayloadSizeToTargetInBytesSupported", 16384)
                .with("MemoryName", "eMMC"),
        ),
    );
    let Command::Configure(configure) = next_command(device, &mut reader) else {
        panic!("configure expected")
    };
    assert_eq!(configure.max_payload_to_target, 16384);
    send(
        device,
        DeviceDoc::response(
            Response::ack()
                .with("MaxPayloadSizeToTargetInBytesSupported", 16384)
                .with("MaxXMLSizeInBytes", 4096)
                .with("TargetName", "MSM8916"),
        ),
    );
    loop {
        let command = match reader.next_document(device, WAIT) {
            Ok(doc) => Command::parse(&doc).unwrap(),
            Err(FirehoseError::Transport(TransportError::Disconnected)) => return,
            Err(e) => panic!("{e}"),
        };
        let bytes = |r: &SectorRange| {
            let start = (r.start_sector * u64::from(r.sector_size)) as usize;
            start..start + r.byte_len().unwrap() as usize
        };
        match command {
            Command::Program(range) => {
                send(
                    device,
                    DeviceDoc::response(Response::ack().with("rawmode", "true")),
                );
                let span = bytes(&range);
                let mut received = vec![0u8; span.len()];
                let mut filled = 0;
                while filled < received.len() {
                    filled += reader
                        .read_raw(device, &mut received[filled..], WAIT)
                        .unwrap();
                }
                disk[span].copy_from_slice(&received);
                send(device, DeviceDoc::response(Response::ack()));
                // Late logs, after the answer (as MSM8916 does).
                send(device, DeviceDoc::log("programmed"));
                send(device, DeviceDoc::log("flushing"));
            }
            Command::Read(range) => {
                // ACK, data and final ACK in one write: the host must split them by content.
                let mut burst = DeviceDoc::response(Response::ack().with("rawmode", "true"))
                    .encode()
                    .into_bytes();
                burst.extend_from_slice(&disk[bytes(&range)]);
                burst.extend(DeviceDoc::response(Response::ack()).encode().into_bytes());
                device.write(&burst, WAIT).unwrap();
            }
            Command::GetSha256Digest(range) => {
                let digest = hex::encode(Sha256::digest(&disk[bytes(&range)]));
                send(device, DeviceDoc::log(format!("Digest {digest}")));
                send(device, DeviceDoc::response(Response::ack()));
            }
            Command::Erase(_) => {
                send(device, DeviceDoc::log("ERROR: erase is not allowed here"));
                send(device, DeviceDoc::response(Response::nak()));
            }
            Command::Power { .. } => {
                send(device, DeviceDoc::response(Response::ack()));
                linger(device);
                return;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn upload_then_flash_over_a_pty() {
    let (mut host, mut device) = pair();
    let image = programmer();
    let device_image = image.clone();
    let device_thread = thread::spawn(move || {
        rom(&mut device, &device_image);
        programmer_device(&mut device);
    });

    let mut served = 0;
    let outcome = sahara::upload_programmer(
        &mut host,
        &mut Cursor::new(&image),
        image.len() as u64,
        &SaharaOptions::default(),
        &mut |n| served = n,
    )
    .unwrap();
    assert_eq!(
        outcome,
        SaharaOutcome::Uploaded {
            bytes_served: image.len() as u64
        }
    );
    assert_eq!(served, image.len() as u64);

    let mut client = FirehoseClient::new(host);
    let config = client.configure("emmc", 1 << 20).unwrap();
    assert_eq!(config.max_payload_to_target, 16384);
    assert_eq!(config.target_name.as_deref(), Some("MSM8916"));

    let range = SectorRange {
        lun: 0,
        start_sector: 10,
        sector_size: SECTOR,
        num_sectors: 100,
    };
    let data: Vec<u8> = (0..100 * SECTOR).map(|i| (i % 241) as u8).collect();
    let mut sent = 0;
    client
        .program(&range, &mut &data[..], &mut |n| sent = n)
        .unwrap();
    assert_eq!(sent, data.len() as u64);

    let mut back = Vec::new();
    client.read(&range, &mut back, &mut |_| {}).unwrap();
    assert_eq!(back, data);

    let digest: [u8; 32] = Sha256::digest(&data).into();
    assert_eq!(client.sha256_digest(&range).unwrap(), digest);

    let e = client.erase(&range).unwrap_err();
    assert_eq!(
        e.to_string(),
        "<erase> refused by the device (NAK): ERROR: erase is not allowed here"
    );
    client.power_reset().unwrap();
    drop(client);
    device_thread.join().unwrap();
}

#[test]
fn a_running_programmer_is_recognised_over_a_pty() {
    let (mut host, mut device) = pair();
    let device_thread = thread::spawn(move || {
        send(&mut device, DeviceDoc::log("still here"));
        let mut reader = DocReader::new();
        assert_eq!(next_command(&mut device, &mut reader), Command::Nop);
        send(&mut device, DeviceDoc::response(Response::ack()));
        linger(&mut device);
    });
    let outcome = sahara::upload_programmer(
        &mut host,
        &mut Cursor::new(programmer()),
        100_000,
        &SaharaOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    let SaharaOutcome::AlreadyInFirehose { pending } = outcome else {
        panic!("expected a running programmer, got {outcome:?}")
    };
    let mut client = FirehoseClient::resume(host, &pending);
    client.nop().unwrap();
    drop(client);
    device_thread.join().unwrap();
}

#[test]
fn a_device_that_hangs_up_mid_read_is_an_error_not_a_hang() {
    let (host, mut device) = pair();
    let device_thread = thread::spawn(move || {
        let mut reader = DocReader::new();
        let Command::Configure(_) = next_command(&mut device, &mut reader) else {
            panic!("configure expected")
        };
        send(&mut device, DeviceDoc::response(Response::ack()));
        let Command::Read(_) = next_command(&mut device, &mut reader) else {
            panic!("read expected")
        };
        send(
            &mut device,
            DeviceDoc::response(Response::ack().with("rawmode", "true")),
        );
        device.write(&[0xAA; 1000], WAIT).unwrap();
        // The device goes away: the slave end closes.
    });
    let mut client = FirehoseClient::new(host);
    client.configure("ufs", 4096).unwrap();
    let range = SectorRange {
        lun: 0,
        start_sector: 0,
        sector_size: 4096,
        num_sectors: 16,
    };
    let e = client
        .read(&range, &mut Vec::new(), &mut |_| {})
        .unwrap_err();
    assert!(
        matches!(e, FirehoseError::Transport(TransportError::Disconnected)),
        "{e}"
    );
    device_thread.join().unwrap();
}
