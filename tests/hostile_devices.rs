//! Hostile devices: fake peers written here that misbehave on purpose (oversized or endless
//! answers, lengths that do not add up, silence, floods, hang-ups). Each protocol client
//! must give up within its configured time with an error naming the misbehaviour, and
//! without buffering more than its cap.
//!
//! fastboot peers speak FB01 over TCP; Sahara, Firehose and AT peers sit on the master side
//! of a pseudo-terminal while the client opens the slave like a real serial port.
//! `cargo test --test hostile_devices -- --nocapture --test-threads=1` prints each case's
//! time to error.
#![cfg(unix)]

use std::io::{self, Cursor, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use flashline::device::fastboot::FastbootDriver;
use flashline::device::quirks::Quirks;
use flashline::device::{Driver, ImageSource, SendReader, Target};
use flashline::protocol::at::{AtClient, AtError, MAX_LINE_LEN};
use flashline::protocol::fastboot::client::{
    Client, FastbootError, COMMAND_BUDGET, MAX_INFO_MESSAGES,
};
use flashline::protocol::fastboot::MAX_RESPONSE_LEN;
use flashline::protocol::firehose::client::{FirehoseTimeouts, MAX_LOG_LINES};
use flashline::protocol::firehose::{FirehoseClient, FirehoseError, SectorRange, MAX_DOCUMENT_LEN};
use flashline::protocol::sahara::{self, Packet, SaharaError, SaharaOptions, MAX_PACKET_LEN};
use flashline::transport::serial::SerialTransport;
use flashline::transport::tcp::TcpTransport;
use flashline::transport::TransportError;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use serialport::{SerialPort, TTYPort};

/// What every client is given to wait per message in these tests.
const SHORT: Duration = Duration::from_millis(300);
/// A misbehaving device must be given up on well within this.
const BOUND: Duration = Duration::from_secs(3);

/// Measures `f` and checks it ended in time; prints the case for the summary.
fn timed<R>(case: &str, f: impl FnOnce() -> R) -> (R, Duration) {
    let started = Instant::now();
    let result = f();
    let elapsed = started.elapsed();
    assert!(elapsed < BOUND, "{case}: took {elapsed:?}");
    (result, elapsed)
}

fn report(case: &str, elapsed: Duration, error: &dyn std::fmt::Display) {
    println!(
        "{case:<48} {:>7.1} ms  {error}",
        elapsed.as_secs_f64() * 1000.0
    );
}

// ---------------------------------------------------------------- fastboot over TCP

/// A fake fastboot device on 127.0.0.1: FB01 handshake, then `script`, which returns how
/// many bytes it managed to send.
struct TcpPeer {
    address: String,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
}

impl TcpPeer {
    fn start(script: impl FnOnce(&mut TcpStream, &AtomicBool) -> u64 + Send + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = format!("tcp:{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            stream
                .set_write_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let mut hello = [0u8; 4];
            stream.read_exact(&mut hello).unwrap();
            stream.write_all(b"FB01").unwrap();
            script(&mut stream, &flag)
        });
        TcpPeer {
            address,
            stop,
            thread,
        }
    }

    fn client(&self) -> Client<TcpTransport> {
        let transport = TcpTransport::connect(&self.address, Duration::from_secs(2)).unwrap();
        let mut client = Client::new(transport);
        client.set_timeout(SHORT);
        client
    }

    /// Stops the peer and returns how many bytes it sent.
    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

/// Reads one FB01 frame (a command), waiting while `stop` is not set.
fn read_frame(stream: &mut TcpStream, stop: &AtomicBool) -> Option<Vec<u8>> {
    let mut header = [0u8; 8];
    read_fully(stream, &mut header, stop)?;
    let len = u64::from_be_bytes(header).min(2 << 20) as usize;
    let mut payload = vec![0u8; len];
    read_fully(stream, &mut payload, stop)?;
    Some(payload)
}

fn read_fully(stream: &mut TcpStream, buf: &mut [u8], stop: &AtomicBool) -> Option<()> {
    let mut got = 0;
    while got < buf.len() {
        match stream.read(&mut buf[got..]) {
            Ok(0) => return None,
            Ok(n) => got += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if stop.load(Ordering::SeqCst) {
                    return None;
                }
            }
            Err(_) => return None,
        }
    }
    Some(())
}

fn frame(payload: &[u8]) -> Vec<u8> {
    [&(payload.len() as u64).to_be_bytes()[..], payload].concat()
}

/// Writes `unit` over and over until told to stop; returns the bytes written.
fn flood(stream: &mut impl Write, stop: &AtomicBool, unit: &[u8]) -> u64 {
    let mut sent = 0;
    while !stop.load(Ordering::SeqCst) {
        sent += send(stream, stop, unit);
    }
    sent
}

/// Writes `bytes` unless told to stop first (the client may have stopped reading); returns
/// the bytes written.
fn send(stream: &mut impl Write, stop: &AtomicBool, bytes: &[u8]) -> u64 {
    let mut done = 0;
    while done < bytes.len() && !stop.load(Ordering::SeqCst) {
        match stream.write(&bytes[done..]) {
            Ok(n) => done += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                thread::sleep(Duration::from_millis(1));
            }
            Err(_) => break,
        }
    }
    done as u64
}

/// Waits until told to stop (a device that has nothing more to say).
fn idle(stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn fastboot_a_response_longer_than_256_bytes_is_refused_unread() {
    let peer = TcpPeer::start(|s, stop| {
        read_frame(s, stop);
        let mut reply = b"OKAY".to_vec();
        reply.resize(300, b'x');
        s.write_all(&frame(&reply)).unwrap();
        idle(stop);
        300
    });
    let mut client = peer.client();
    let (result, elapsed) = timed("oversized", || client.getvar("product"));
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            FastbootError::Transport(TransportError::MessageTooLarge { len: 300, max })
                if max == MAX_RESPONSE_LEN
        ),
        "{err}"
    );
    report("fastboot: 300-byte response", elapsed, &err);
    peer.finish();
}

#[test]
fn fastboot_a_frame_longer_than_declared_desynchronises_and_is_refused() {
    let peer = TcpPeer::start(|s, stop| {
        read_frame(s, stop);
        // Declares 4 bytes, sends 12: the surplus reads as an absurd next header.
        s.write_all(&[&frame(b"OKAY")[..], b"garbage!"].concat())
            .unwrap();
        read_frame(s, stop);
        idle(stop);
        20
    });
    let mut client = peer.client();
    assert_eq!(client.getvar("product").unwrap(), None);
    let (result, elapsed) = timed("longer than declared", || client.getvar("serialno"));
    let err = result.unwrap_err();
    let garbage = u64::from_be_bytes(*b"garbage!");
    assert!(
        matches!(
            err,
            FastbootError::Transport(TransportError::MessageTooLarge { len, .. }) if len == garbage
        ),
        "{err}"
    );
    report("fastboot: frame longer than declared", elapsed, &err);
    // The session refuses to go on rather than misread the stream.
    assert!(matches!(
        client.getvar("product"),
        Err(FastbootError::OutOfStep { .. })
    ));
    peer.finish();
}

#[test]
fn fastboot_a_frame_header_declaring_4_gib_is_refused_before_reading_it() {
    let peer = TcpPeer::start(|s, stop| {
        read_frame(s, stop);
        s.write_all(&(4u64 << 30).to_be_bytes()).unwrap();
        idle(stop);
        8
    });
    let mut client = peer.client();
    let (result, elapsed) = timed("4 GiB header", || client.getvar("product"));
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            FastbootError::Transport(TransportError::MessageTooLarge { len, max: 256 }) if len == 4 << 30
        ),
        "{err}"
    );
    // Refused as soon as the header was in, not after waiting for 4 GiB.
    assert!(elapsed < SHORT, "{elapsed:?}");
    report("fastboot: frame header of 4 GiB", elapsed, &err);
    peer.finish();
}

#[test]
fn fastboot_an_endless_info_flood_hits_the_cap() {
    let peer = TcpPeer::start(|s, stop| {
        read_frame(s, stop);
        flood(s, stop, &frame(b"INFOstill working"))
    });
    let mut client = peer.client();
    let (result, elapsed) = timed("INFO flood", || client.getvar("product"));
    let err = result.unwrap_err();
    assert!(
        matches!(err, FastbootError::InfoFlood { limit, .. } if limit == MAX_INFO_MESSAGES),
        "{err}"
    );
    drop(client);
    let sent = peer.finish();
    report("fastboot: endless INFO", elapsed, &err);
    println!(
        "    the peer wrote {sent} bytes; the client read each frame into one 256-byte buffer"
    );
    assert!(sent >= (MAX_INFO_MESSAGES * 25) as u64, "sent {sent}");
}

#[test]
fn fastboot_an_info_dripped_just_inside_the_timeout_ends_at_the_command_deadline() {
    // One INFO every 250 ms keeps every wait under the 300 ms timeout; without an overall
    // deadline it would keep the command alive for 10,000 × 250 ms, 42 minutes.
    let peer = TcpPeer::start(|s, stop| {
        read_frame(s, stop);
        let mut sent = 0;
        while !stop.load(Ordering::SeqCst) {
            sent += send(s, stop, &frame(b"INFOstill working"));
            thread::sleep(SHORT - Duration::from_millis(50));
        }
        sent
    });
    let mut client = peer.client();
    let (result, elapsed) = timed("INFO drip", || client.getvar("product"));
    let err = result.unwrap_err();
    let budget = SHORT * COMMAND_BUDGET;
    assert!(
        matches!(&err, FastbootError::Deadline { command, limit }
            if command == "getvar:product" && *limit == budget),
        "{err}"
    );
    assert!(elapsed >= budget && elapsed < budget + SHORT, "{elapsed:?}");
    // The command may be mid-answer: the session refuses to go on.
    assert!(matches!(
        client.getvar("serialno"),
        Err(FastbootError::OutOfStep { .. })
    ));
    drop(client);
    peer.finish();
    report("fastboot: INFO dripped inside the timeout", elapsed, &err);
}

#[test]
fn fastboot_a_data_length_other_than_announced_is_refused() {
    for (case, answer) in [
        ("fastboot: DATA larger than announced", &b"DATA00100000"[..]),
        (
            "fastboot: DATA with a malformed length",
            &b"DATAzzzzzzzz"[..],
        ),
    ] {
        let answer = answer.to_vec();
        let peer = TcpPeer::start(move |s, stop| {
            read_frame(s, stop);
            s.write_all(&frame(&answer)).unwrap();
            idle(stop);
            12
        });
        let mut client = peer.client();
        let (result, elapsed) = timed(case, || {
            client.download(1000, |w| w.write_all(&[0u8; 1000]))
        });
        let err = result.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, FastbootError::Protocol { .. }), "{err}");
        assert!(
            text.contains("ready for 1048576 bytes, not the 1000 announced")
                || text.contains("malformed DATA length \"zzzzzzzz\""),
            "{text}"
        );
        report(case, elapsed, &err);
        peer.finish();
    }
}

#[test]
fn fastboot_a_silent_device_times_out() {
    let peer = TcpPeer::start(|s, stop| {
        read_frame(s, stop);
        idle(stop);
        0
    });
    let mut client = peer.client();
    let (result, elapsed) = timed("silent", || client.getvar("product"));
    let err = result.unwrap_err();
    assert!(
        matches!(err, FastbootError::Transport(TransportError::Timeout(t)) if t == SHORT),
        "{err}"
    );
    assert!(elapsed >= SHORT);
    report("fastboot: sends nothing", elapsed, &err);
    peer.finish();
}

#[test]
fn fastboot_a_device_dropping_mid_download_is_a_disconnect() {
    const LEN: u32 = 8 << 20;
    let received = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&received);
    let peer = TcpPeer::start(move |s, stop| {
        read_frame(s, stop);
        s.write_all(&frame(format!("DATA{LEN:08x}").as_bytes()))
            .unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        read_fully(s, &mut buf, stop);
        counter.store(buf.len() as u64, Ordering::SeqCst);
        // Cable pulled: the connection is reset, not closed politely.
        let _ = s.shutdown(std::net::Shutdown::Both);
        0
    });
    let mut client = peer.client();
    let (result, elapsed) = timed("drop mid-download", || {
        client.download(LEN, |w| {
            let chunk = vec![0xa5u8; 1 << 20];
            for _ in 0..8 {
                w.write_all(&chunk)?;
            }
            Ok(())
        })
    });
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            FastbootError::Transport(TransportError::Disconnected | TransportError::Io(_))
        ),
        "{err}"
    );
    assert!(received.load(Ordering::SeqCst) > 0);
    report("fastboot: drops mid-download", elapsed, &err);
    peer.finish();
}

/// An in-memory image for the driver.
struct Bytes(Vec<u8>);

struct Plain(Cursor<Vec<u8>>);

impl Read for Plain {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl SendReader for Plain {
    fn verify(self: Box<Self>) -> Result<(), String> {
        Ok(())
    }
}

impl ImageSource for Bytes {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn is_sparse(&self) -> bool {
        false
    }
    fn plan_reader(&self) -> io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(Cursor::new(self.0.clone())))
    }
    fn send_reader(&self) -> io::Result<Box<dyn SendReader + '_>> {
        Ok(Box::new(Plain(Cursor::new(self.0.clone()))))
    }
}

/// A device that answers `getvar:max-download-size` with `limit` and then speaks an honest
/// download and flash; returns the download bytes it received.
fn download_peer(
    limit: &'static str,
) -> (TcpPeer, Arc<AtomicU64>, Arc<std::sync::Mutex<Vec<String>>>) {
    let received = Arc::new(AtomicU64::new(0));
    let commands = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (counter, log) = (Arc::clone(&received), Arc::clone(&commands));
    let peer = TcpPeer::start(move |s, stop| {
        while let Some(command) = read_frame(s, stop) {
            let command = String::from_utf8_lossy(&command).into_owned();
            log.lock().unwrap().push(command.clone());
            let reply = if command == "getvar:max-download-size" {
                format!("OKAY{limit}")
            } else if let Some(len) = command.strip_prefix("download:") {
                let len = u64::from_str_radix(len, 16).unwrap();
                s.write_all(&frame(format!("DATA{len:08x}").as_bytes()))
                    .unwrap();
                let mut left = len;
                while left > 0 {
                    let Some(data) = read_frame(s, stop) else {
                        return 0;
                    };
                    left -= data.len() as u64;
                    counter.fetch_add(data.len() as u64, Ordering::SeqCst);
                }
                "OKAY".into()
            } else if command.starts_with("flash:") {
                "OKAY".into()
            } else {
                "FAILunknown".into()
            };
            s.write_all(&frame(reply.as_bytes())).unwrap();
        }
        0
    });
    (peer, received, commands)
}

#[test]
fn fastboot_a_max_download_size_of_zero_is_refused_before_any_download() {
    let (peer, received, commands) = download_peer("0x0");
    let transport = TcpTransport::connect(&peer.address, Duration::from_secs(2)).unwrap();
    let mut driver = FastbootDriver::new(transport, Quirks::builtin(), true);
    let target = Target::Partition {
        name: "boot".into(),
    };
    let image = Bytes(vec![0x5a; 64 * 1024]);
    let (result, elapsed) = timed("max-download-size 0", || {
        driver.write_image(&target, &image, &mut |_| {})
    });
    let err = result.unwrap_err();
    assert!(
        err.to_string().contains("reports max-download-size 0"),
        "{err}"
    );
    drop(driver);
    peer.finish();
    assert_eq!(received.load(Ordering::SeqCst), 0);
    assert_eq!(*commands.lock().unwrap(), ["getvar:max-download-size"]);
    report("fastboot: max-download-size 0", elapsed, &err);
}

#[test]
fn fastboot_an_absurd_max_download_size_allocates_nothing_extra() {
    let (peer, received, commands) = download_peer("0xffffffffffffffff");
    let transport = TcpTransport::connect(&peer.address, Duration::from_secs(2)).unwrap();
    let mut driver = FastbootDriver::new(transport, Quirks::builtin(), true);
    let target = Target::Partition {
        name: "boot".into(),
    };
    let image = Bytes(vec![0x5a; 64 * 1024]);
    let (result, elapsed) = timed("max-download-size absurd", || {
        driver.write_image(&target, &image, &mut |_| {})
    });
    result.unwrap();
    drop(driver);
    peer.finish();
    // Capped at the protocol's 4 GiB - 1; the image went as one download of its own size.
    assert_eq!(received.load(Ordering::SeqCst), 64 * 1024);
    assert_eq!(
        *commands.lock().unwrap(),
        [
            "getvar:max-download-size",
            "download:00010000",
            "flash:boot"
        ]
    );
    report(
        "fastboot: max-download-size 2^64-1",
        elapsed,
        &"(treated as the protocol's 4 GiB - 1 cap; flashed normally)",
    );
}

// ---------------------------------------------------------------- serial peers (pty)

/// A fake device on the master side of a pseudo-terminal.
struct SerialPeer {
    transport: Option<SerialTransport>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
    _slave: TTYPort,
}

impl SerialPeer {
    /// Opens the host side first (opening discards pending input), then lets the device
    /// run `script`, which returns how many bytes it managed to send.
    fn start(script: impl FnOnce(&mut TTYPort, &AtomicBool) -> u64 + Send + 'static) -> Self {
        let (mut master, slave) = TTYPort::pair().unwrap();
        let transport = SerialTransport::open(&slave.name().unwrap()).unwrap();
        master.set_timeout(Duration::from_millis(50)).unwrap();
        // A blocking write larger than the room left in the pty would wait forever once the
        // client stops reading; the device side must be able to give up too.
        let fd = master.as_raw_fd();
        let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL).unwrap());
        fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || script(&mut master, &flag));
        SerialPeer {
            transport: Some(transport),
            stop,
            thread,
            _slave: slave,
        }
    }

    fn transport(&mut self) -> SerialTransport {
        self.transport.take().unwrap()
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

/// Reads until `marker` has been seen (or told to stop).
fn read_until(port: &mut TTYPort, marker: &[u8], stop: &AtomicBool) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    while !seen.windows(marker.len()).any(|w| w == marker) {
        if stop.load(Ordering::SeqCst) {
            return None;
        }
        match port.read(&mut buf) {
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
            Err(_) => return None,
        }
    }
    Some(seen)
}

fn read_exactly(port: &mut TTYPort, len: usize, stop: &AtomicBool) -> Option<Vec<u8>> {
    let mut out = vec![0u8; len];
    let mut got = 0;
    while got < len {
        if stop.load(Ordering::SeqCst) {
            return None;
        }
        match port.read(&mut out[got..]) {
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
            Err(_) => return None,
        }
    }
    Some(out)
}

fn hello() -> Vec<u8> {
    Packet::Hello {
        version: 2,
        version_compatible: 1,
        max_cmd_packet_len: 0x400,
        mode: sahara::MODE_IMAGE_TX_PENDING,
    }
    .encode()
}

fn sahara_options() -> SaharaOptions {
    SaharaOptions {
        hello_timeout: SHORT,
        packet_timeout: SHORT,
        overall_timeout: Duration::from_secs(2),
    }
}

/// A ROM that says HELLO, takes the answer, then sends `then`.
fn sahara_peer(then: Vec<u8>) -> SerialPeer {
    SerialPeer::start(move |port, stop| {
        let mut sent = send(port, stop, &hello());
        read_exactly(port, 48, stop);
        sent += send(port, stop, &then);
        idle(stop);
        sent
    })
}

fn words(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn upload(peer: &mut SerialPeer) -> (Result<sahara::SaharaOutcome, SaharaError>, Duration) {
    let mut transport = peer.transport();
    let programmer = vec![0x7fu8; 4096];
    let len = programmer.len() as u64;
    let mut source = Cursor::new(programmer);
    timed("sahara", || {
        sahara::upload_programmer(
            &mut transport,
            &mut source,
            len,
            &sahara_options(),
            &mut |_| {},
        )
    })
}

#[test]
fn sahara_length_fields_that_do_not_add_up_are_refused() {
    let cases: [(&str, Vec<u8>); 3] = [
        (
            "sahara: length shorter than the header",
            words(&[3, 4, 13, 0, 16]),
        ),
        (
            "sahara: length beyond the cap",
            words(&[3, 0x1_0000, 13, 0, 16]),
        ),
        (
            "sahara: READ_DATA declaring 32 bytes",
            words(&[3, 32, 13, 0, 16, 0, 0, 0]),
        ),
    ];
    for (case, packet) in cases {
        let mut peer = sahara_peer(packet);
        let (result, elapsed) = upload(&mut peer);
        let err = result.unwrap_err();
        match &err {
            SaharaError::BadLength { declared, max, .. } => {
                assert!(*declared == 4 || *declared == 0x1_0000, "{err}");
                assert_eq!(*max, MAX_PACKET_LEN);
            }
            SaharaError::WrongSize { declared: 32, .. } => {}
            other => panic!("{case}: {other}"),
        }
        report(case, elapsed, &err);
        peer.finish();
    }
}

#[test]
fn sahara_command_mode_answers_are_bounded() {
    // An answer declared 2 GiB long is refused before anything is allocated or awaited.
    let mut peer = sahara_peer(
        [
            Packet::CmdReady.encode(),
            Packet::ExecuteResp {
                client_cmd: 1,
                data_len: 0x7fff_ffff,
            }
            .encode(),
        ]
        .concat(),
    );
    let mut transport = peer.transport();
    let (result, elapsed) = timed("sahara", || {
        sahara::read_identity(&mut transport, &sahara_options())
    });
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            SaharaError::BadLength {
                declared: 0x7fff_ffff,
                max: 1024,
                ..
            }
        ),
        "{err}"
    );
    report("sahara: command-mode answer of 2 GiB", elapsed, &err);
    drop(transport);
    peer.finish();

    // CMD_READY and then silence: the query times out.
    let mut peer = sahara_peer(Packet::CmdReady.encode());
    let mut transport = peer.transport();
    let (result, elapsed) = timed("sahara", || {
        sahara::read_identity(&mut transport, &sahara_options())
    });
    let err = result.unwrap_err();
    assert!(matches!(err, SaharaError::Transport(_)), "{err}");
    report("sahara: silent after CMD_READY", elapsed, &err);
    drop(transport);
    peer.finish();
}

#[test]
fn sahara_a_read_beyond_the_image_is_refused() {
    let mut peer = sahara_peer(
        Packet::ReadData {
            image_id: 13,
            offset: 4000,
            length: 200,
        }
        .encode(),
    );
    let (result, elapsed) = upload(&mut peer);
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            SaharaError::OutOfRange {
                offset: 4000,
                length: 200,
                image_len: 4096,
                ..
            }
        ),
        "{err}"
    );
    report("sahara: READ_DATA beyond the image", elapsed, &err);
    peer.finish();
}

#[test]
fn sahara_an_endless_hello_is_given_up_on() {
    let mut peer = SerialPeer::start(|port, stop| {
        let mut sent = 0;
        while !stop.load(Ordering::SeqCst) {
            sent += send(port, stop, &hello());
            thread::sleep(Duration::from_millis(5));
        }
        sent
    });
    let (result, elapsed) = upload(&mut peer);
    let err = result.unwrap_err();
    assert!(
        matches!(&err, SaharaError::Unexpected { got, .. } if got.contains("HELLOs")),
        "{err}"
    );
    report("sahara: endless HELLO", elapsed, &err);
    peer.finish();
}

#[test]
fn sahara_garbage_instead_of_hello_times_out() {
    let mut peer = SerialPeer::start(|port, stop| flood(port, stop, b"\x01\x00\x00\x00garbage"));
    let (result, elapsed) = upload(&mut peer);
    let err = result.unwrap_err();
    assert!(
        matches!(err, SaharaError::NoHello(t) if t == SHORT),
        "{err}"
    );
    report("sahara: endless garbage, no HELLO", elapsed, &err);
    peer.finish();
}

// ---------------------------------------------------------------- Firehose

fn firehose(peer: &mut SerialPeer) -> FirehoseClient<SerialTransport> {
    let mut client = FirehoseClient::new(peer.transport());
    client.set_timeouts(FirehoseTimeouts {
        response: SHORT,
        data: SHORT,
        finish: SHORT,
        configure_boot: Duration::from_secs(1),
    });
    client
}

const XML: &[u8] = b"<?xml version=\"1.0\" encoding=\"UTF-8\" ?>";

#[test]
fn firehose_a_never_ending_log_stream_hits_the_cap() {
    let mut peer = SerialPeer::start(|port, stop| {
        let log = [XML, b"<data><log value=\"still busy\" /></data>"].concat();
        flood(port, stop, &log.repeat(64))
    });
    let mut client = firehose(&mut peer);
    // A realistic answer time (the default is 10 s): the log cap, not the clock, ends it.
    client.set_timeouts(FirehoseTimeouts {
        response: Duration::from_secs(2),
        data: SHORT,
        finish: SHORT,
        configure_boot: SHORT,
    });
    let (result, elapsed) = timed("log flood", || client.nop());
    let err = result.unwrap_err();
    assert!(
        matches!(&err, FirehoseError::LogFlood { limit, .. } if *limit == MAX_LOG_LINES),
        "{err}"
    );
    report("firehose: never-ending <log>", elapsed, &err);
    drop(client);
    peer.finish();
}

#[test]
fn firehose_a_document_without_end_is_cut_at_the_cap() {
    let mut peer = SerialPeer::start(|port, stop| {
        let head = [XML, b"<data><log value=\""].concat();
        send(port, stop, &head) + flood(port, stop, &[b'A'; 512])
    });
    let mut client = firehose(&mut peer);
    let (result, elapsed) = timed("no </data>", || client.nop());
    let err = result.unwrap_err();
    assert!(
        matches!(err, FirehoseError::DocumentTooLarge { limit } if limit == MAX_DOCUMENT_LEN),
        "{err}"
    );
    drop(client);
    let sent = peer.finish();
    report("firehose: document without </data>", elapsed, &err);
    println!("    the peer wrote {sent} bytes before the client gave up (cap {MAX_DOCUMENT_LEN})");
    // The client stopped reading near its cap; the rest piled up in the pty or was refused.
    assert!(
        sent < 4 * MAX_DOCUMENT_LEN as u64 + (1 << 20),
        "sent {sent}"
    );
}

#[test]
fn firehose_an_enormous_attribute_is_refused() {
    let mut peer = SerialPeer::start(|port, stop| {
        let mut doc = [XML, b"<data><response value=\"ACK\" junk=\""].concat();
        doc.extend(std::iter::repeat_n(b'A', 200_000));
        doc.extend_from_slice(b"\" /></data>");
        let sent = send(port, stop, &doc);
        idle(stop);
        sent
    });
    let mut client = firehose(&mut peer);
    let (result, elapsed) = timed("enormous attribute", || client.nop());
    let err = result.unwrap_err();
    assert!(
        matches!(err, FirehoseError::DocumentTooLarge { limit } if limit == MAX_DOCUMENT_LEN),
        "{err}"
    );
    report("firehose: 200 KB attribute", elapsed, &err);
    drop(client);
    peer.finish();
}

#[test]
fn firehose_a_rawmode_ack_that_never_comes_times_out() {
    let mut peer = SerialPeer::start(|port, stop| {
        read_until(port, b"</data>", stop);
        let ack = [
            XML,
            b"<data><response value=\"ACK\" MaxPayloadSizeToTargetInBytes=\"1048576\" /></data>",
        ]
        .concat();
        let sent = send(port, stop, &ack);
        // Takes the <program> command and never opens the data phase.
        idle(stop);
        sent
    });
    let mut client = firehose(&mut peer);
    client.configure("ufs", 1 << 20).unwrap();
    let range = SectorRange {
        lun: 0,
        start_sector: 0,
        sector_size: 4096,
        num_sectors: 4,
    };
    let (result, elapsed) = timed("no rawmode", || {
        client.program(&range, &mut Cursor::new(vec![0u8; 16384]), &mut |_| {})
    });
    let err = result.unwrap_err();
    assert!(
        matches!(err, FirehoseError::Transport(TransportError::Timeout(t)) if t == SHORT),
        "{err}"
    );
    report("firehose: rawmode ACK never comes", elapsed, &err);
    drop(client);
    peer.finish();
}

// ---------------------------------------------------------------- AT

fn at(peer: &mut SerialPeer) -> AtClient<SerialTransport> {
    let mut client = AtClient::new(peer.transport());
    client.set_timeout(SHORT);
    client
}

#[test]
fn at_a_line_without_end_is_cut_at_the_cap() {
    let mut peer = SerialPeer::start(|port, stop| flood(port, stop, &[b'Z'; 256]));
    let mut client = at(&mut peer);
    let (result, elapsed) = timed("endless line", || client.command("AT+CGMI"));
    let err = result.unwrap_err();
    assert!(
        matches!(err, AtError::LineTooLong { max } if max == MAX_LINE_LEN),
        "{err}"
    );
    report("AT: a line without CR/LF", elapsed, &err);
    drop(client);
    peer.finish();
}

#[test]
fn at_an_endless_stream_of_unsolicited_codes_is_given_up_on() {
    let mut peer = SerialPeer::start(|port, stop| flood(port, stop, b"\r\n+CREG: 1\r\n"));
    let mut client = at(&mut peer);
    let urcs = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&urcs);
    client.on_urc(move |_| {
        seen.fetch_add(1, Ordering::SeqCst);
    });
    let (result, elapsed) = timed("URC flood", || client.command("AT+CGMI"));
    let err = result.unwrap_err();
    assert!(matches!(err, AtError::UnsolicitedFlood { .. }), "{err}");
    report("AT: endless unsolicited codes", elapsed, &err);
    drop(client);
    peer.finish();
    // The handler saw a bounded number of lines, not everything the modem could send.
    assert!(urcs.load(Ordering::SeqCst) < 10_000, "{urcs:?}");
}

#[test]
fn at_an_answer_without_final_result_times_out() {
    let mut peer = SerialPeer::start(|port, stop| {
        let mut sent = 0;
        while let Some(line) = read_until(port, b"\r", stop) {
            let reply: &[u8] = if line.starts_with(b"ATE0") {
                b"\r\nOK\r\n"
            } else {
                b"\r\nZTE CORPORATION\r\n"
            };
            sent += send(port, stop, reply);
        }
        sent
    });
    let mut client = at(&mut peer);
    let (result, elapsed) = timed("no final result", || client.command("AT+CGMI"));
    let err = result.unwrap_err();
    assert!(
        matches!(&err, AtError::Timeout { command, timeout } if command == "AT+CGMI" && *timeout == SHORT),
        "{err}"
    );
    report("AT: no final result code", elapsed, &err);
    drop(client);
    peer.finish();
}
