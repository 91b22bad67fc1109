//! fastboot over TCP: the `FB01` handshake, then every message as an 8-byte big-endian
//! length followed by the payload.
//!
//! Emulators, network-attached devices and our own virtual phone speak this; it is also the
//! transport the test suite runs real fastboot sessions over.

use std::io::{self, IoSlice, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::{Transport, TransportError};

/// Port a fastboot device listens on when the address names none.
pub const DEFAULT_PORT: u16 = 5554;

/// How long the device has to answer `FB01` (the AOSP host waits the same).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// The handshake we send: protocol version 1.
const HANDSHAKE: &[u8; 4] = b"FB01";

/// A fastboot connection over TCP.
#[derive(Debug)]
pub struct TcpTransport {
    stream: TcpStream,
    address: String,
}

impl TcpTransport {
    /// Connects to `HOST[:PORT]` (an optional `tcp:` prefix is accepted, so
    /// [`Transport::address`] round-trips; IPv6 hosts go in brackets when a port is given)
    /// and performs the `FB01` handshake.
    ///
    /// `timeout` bounds each connection attempt; the handshake has its own 2 s limit.
    pub fn connect(host_port: &str, timeout: Duration) -> Result<Self, TransportError> {
        let (host, port) = split_host_port(host_port.strip_prefix("tcp:").unwrap_or(host_port));
        let address = if host.contains(':') {
            format!("tcp:[{host}]:{port}")
        } else {
            format!("tcp:{host}:{port}")
        };
        let open_error = |reason: String| TransportError::Open {
            address: address.clone(),
            reason,
        };
        let candidates = (host, port)
            .to_socket_addrs()
            .map_err(|e| open_error(format!("cannot resolve {host:?}: {e}")))?;
        let mut last_error = format!("{host:?} resolved to no address");
        let mut connected = None;
        for candidate in candidates {
            match TcpStream::connect_timeout(&candidate, at_least_1ms(timeout)) {
                Ok(stream) => {
                    connected = Some(stream);
                    break;
                }
                Err(e) => last_error = format!("{candidate}: {e}"),
            }
        }
        let stream = connected.ok_or_else(|| open_error(last_error))?;
        stream.set_nodelay(true)?;
        let mut transport = TcpTransport { stream, address };
        transport.handshake()?;
        tracing::debug!(address = %transport.address, "fastboot TCP session open");
        Ok(transport)
    }

    /// Sends `FB01` and requires `FB` + two decimal digits naming version 1 or later back.
    fn handshake(&mut self) -> Result<(), TransportError> {
        self.stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
        self.stream
            .write_all(HANDSHAKE)
            .map_err(|e| io_error(e, HANDSHAKE_TIMEOUT))?;
        let mut reply = [0u8; 4];
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        let mut got = 0;
        let failure = loop {
            if got == reply.len() {
                break None;
            }
            match self.read_some(&mut reply[got..], deadline) {
                Ok(0) => break Some("the connection was closed"),
                Ok(n) => got += n,
                Err(TransportError::Timeout(_)) => break Some("no answer within 2 s"),
                Err(e) => return Err(e),
            }
        };
        let received = String::from_utf8_lossy(&reply[..got])
            .escape_debug()
            .to_string();
        if let Some(why) = failure {
            return Err(TransportError::Handshake(format!(
                "expected \"FBnn\", received \"{received}\" ({why})"
            )));
        }
        let version = std::str::from_utf8(&reply[2..])
            .ok()
            .filter(|digits| digits.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|digits| digits.parse::<u8>().ok());
        match (&reply[..2], version) {
            (b"FB", Some(v)) if v >= 1 => Ok(()),
            _ => Err(TransportError::Handshake(format!(
                "expected \"FBnn\" with version 01 or later, received \"{received}\""
            ))),
        }
    }

    /// One `read` call that gives up at `deadline`.
    fn read_some(&mut self, buf: &mut [u8], deadline: Instant) -> Result<usize, TransportError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(TransportError::Timeout(left));
        }
        self.stream.set_read_timeout(Some(at_least_1ms(left)))?;
        loop {
            match self.stream.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other.map_err(|e| io_error(e, left)),
            }
        }
    }

    /// Fills `buf` by `deadline`; running out of bytes is [`TransportError::Disconnected`].
    fn read_full(
        &mut self,
        buf: &mut [u8],
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(), TransportError> {
        let mut got = 0;
        while got < buf.len() {
            match self.read_some(&mut buf[got..], deadline) {
                Ok(0) => return Err(TransportError::Disconnected),
                Ok(n) => got += n,
                Err(TransportError::Timeout(_)) => return Err(TransportError::Timeout(timeout)),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Closes the connection after a frame could not be moved whole: the byte stream cannot
    /// be followed any more, so later calls must fail rather than misread it.
    fn abandon(&mut self) {
        // Already-closed sockets make this fail; either way the stream is unusable.
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

impl Transport for TcpTransport {
    /// Sends `data` as one frame; header and payload go out in one vectored write, without
    /// copying the payload. A frame that stops halfway closes the connection.
    fn write(&mut self, data: &[u8], timeout: Duration) -> Result<(), TransportError> {
        self.stream.set_write_timeout(Some(at_least_1ms(timeout)))?;
        let header = (data.len() as u64).to_be_bytes();
        let mut slices = [IoSlice::new(&header), IoSlice::new(data)];
        let mut pending = &mut slices[..];
        let mut sent = 0;
        while !pending.is_empty() {
            let error = match self.stream.write_vectored(pending) {
                Ok(0) => TransportError::Disconnected,
                Ok(n) => {
                    IoSlice::advance_slices(&mut pending, n);
                    sent += n;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => io_error(e, timeout),
            };
            // Half a frame on the wire leaves the device's view of the stream broken.
            if sent > 0 {
                self.abandon();
            }
            return Err(error);
        }
        Ok(())
    }

    /// Receives one whole frame within `timeout`.
    ///
    /// A frame longer than `buf` is refused unread. After that, or after a frame stopped
    /// arriving halfway, the connection is closed: its byte stream can no longer be followed.
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        let deadline = Instant::now() + timeout;
        let mut header = [0u8; 8];
        // Until the first byte arrives the stream is still in step, so a timeout is harmless.
        let first = match self.read_some(&mut header, deadline) {
            Ok(0) => return Err(TransportError::Disconnected),
            Ok(n) => n,
            Err(TransportError::Timeout(_)) => return Err(TransportError::Timeout(timeout)),
            Err(e) => return Err(e),
        };
        let result = self
            .read_full(&mut header[first..], deadline, timeout)
            .and_then(|()| {
                let len = u64::from_be_bytes(header);
                let max = buf.len();
                let frame = usize::try_from(len)
                    .ok()
                    .and_then(|len| buf.get_mut(..len))
                    .ok_or(TransportError::MessageTooLarge { len, max })?;
                self.read_full(frame, deadline, timeout)?;
                Ok(frame.len())
            });
        if result.is_err() {
            self.abandon();
        }
        result
    }

    fn address(&self) -> &str {
        &self.address
    }
}

/// Splits `host[:port]`, `[v6]:port` or a bare IPv6 address; no port means [`DEFAULT_PORT`].
fn split_host_port(text: &str) -> (&str, u16) {
    if let Some(rest) = text.strip_prefix('[') {
        if let Some((host, tail)) = rest.split_once(']') {
            let port = tail.strip_prefix(':').and_then(|p| p.parse().ok());
            return (host, port.unwrap_or(DEFAULT_PORT));
        }
    }
    match text.split_once(':') {
        // Exactly one colon: a port. More than one: a bare IPv6 address.
        Some((host, port)) if !port.contains(':') => match port.parse() {
            Ok(port) => (host, port),
            Err(_) => (text, DEFAULT_PORT),
        },
        _ => (text, DEFAULT_PORT),
    }
}

/// Socket timeouts of zero mean "block forever"; the smallest real wait is 1 ms.
fn at_least_1ms(timeout: Duration) -> Duration {
    timeout.max(Duration::from_millis(1))
}

/// Names socket errors the way the rest of the crate reasons about them.
fn io_error(e: io::Error, timeout: Duration) -> TransportError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => TransportError::Timeout(timeout),
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::NotConnected => TransportError::Disconnected,
        _ => TransportError::Io(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    const T: Duration = Duration::from_secs(5);

    /// Runs `device` on the accepted connection of a fresh 127.0.0.1 listener.
    fn serve(device: impl FnOnce(TcpStream) + Send + 'static) -> (String, thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = thread::spawn(move || device(listener.accept().unwrap().0));
        (format!("127.0.0.1:{port}"), handle)
    }

    fn handshake(stream: &mut TcpStream) {
        let mut hello = [0u8; 4];
        stream.read_exact(&mut hello).unwrap();
        assert_eq!(&hello, b"FB01");
        stream.write_all(b"FB01").unwrap();
    }

    fn frame(stream: &mut TcpStream, payload: &[u8]) {
        stream
            .write_all(&(payload.len() as u64).to_be_bytes())
            .unwrap();
        stream.write_all(payload).unwrap();
    }

    #[test]
    fn addresses_default_to_port_5554() {
        assert_eq!(split_host_port("10.0.0.2"), ("10.0.0.2", 5554));
        assert_eq!(split_host_port("phone:1234"), ("phone", 1234));
        assert_eq!(split_host_port("[::1]:99"), ("::1", 99));
        assert_eq!(split_host_port("[::1]"), ("::1", 5554));
        assert_eq!(split_host_port("fe80::1"), ("fe80::1", 5554));
    }

    #[test]
    fn frames_round_trip_and_oversized_frames_are_refused() {
        let (addr, device) = serve(|mut s| {
            handshake(&mut s);
            let mut header = [0u8; 8];
            s.read_exact(&mut header).unwrap();
            let mut payload = vec![0u8; u64::from_be_bytes(header) as usize];
            s.read_exact(&mut payload).unwrap();
            assert_eq!(payload, b"getvar:product");
            frame(&mut s, b"OKAYphone");
            // Declares 1 TiB; the host must refuse without reading it.
            s.write_all(&(1u64 << 40).to_be_bytes()).unwrap();
        });
        let mut t = TcpTransport::connect(&addr, T).unwrap();
        assert_eq!(t.address(), format!("tcp:{addr}"));
        t.write(b"getvar:product", T).unwrap();
        let mut buf = [0u8; 256];
        let n = t.read(&mut buf, T).unwrap();
        assert_eq!(&buf[..n], b"OKAYphone");
        match t.read(&mut buf, T) {
            Err(TransportError::MessageTooLarge { len, max: 256 }) => assert_eq!(len, 1 << 40),
            other => panic!("expected MessageTooLarge, got {other:?}"),
        }
        device.join().unwrap();
    }

    #[test]
    fn a_wrong_handshake_is_reported_with_what_arrived() {
        let (addr, device) = serve(|mut s| {
            let mut hello = [0u8; 4];
            s.read_exact(&mut hello).unwrap();
            s.write_all(b"XXXX").unwrap();
        });
        match TcpTransport::connect(&addr, T) {
            Err(TransportError::Handshake(msg)) => assert!(msg.contains("XXXX"), "{msg}"),
            other => panic!("expected a handshake error, got {other:?}"),
        }
        device.join().unwrap();
    }

    #[test]
    fn version_zero_and_short_handshakes_are_refused() {
        for reply in [&b"FB00"[..], b"FB"] {
            let (addr, device) = serve(move |mut s| {
                let mut hello = [0u8; 4];
                s.read_exact(&mut hello).unwrap();
                s.write_all(reply).unwrap();
            });
            assert!(matches!(
                TcpTransport::connect(&addr, T),
                Err(TransportError::Handshake(_))
            ));
            device.join().unwrap();
        }
    }

    #[test]
    fn a_device_closing_mid_frame_is_a_disconnect() {
        let (addr, device) = serve(|mut s| {
            handshake(&mut s);
            s.write_all(&10u64.to_be_bytes()).unwrap();
            s.write_all(b"OKAY").unwrap();
        });
        let mut t = TcpTransport::connect(&addr, T).unwrap();
        device.join().unwrap();
        let mut buf = [0u8; 256];
        assert!(matches!(
            t.read(&mut buf, T),
            Err(TransportError::Disconnected)
        ));
    }

    #[test]
    fn silence_is_a_timeout() {
        let (addr, device) = serve(|mut s| {
            handshake(&mut s);
            // Hold the connection open until the host gives up.
            let _ = s.read(&mut [0u8; 1]);
        });
        let mut t = TcpTransport::connect(&addr, T).unwrap();
        let mut buf = [0u8; 256];
        let wait = Duration::from_millis(50);
        assert!(matches!(
            t.read(&mut buf, wait),
            Err(TransportError::Timeout(w)) if w == wait
        ));
        drop(t);
        device.join().unwrap();
    }

    #[test]
    fn nothing_listening_is_an_open_error() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(matches!(
            TcpTransport::connect(&format!("tcp:127.0.0.1:{port}"), T),
            Err(TransportError::Open { .. })
        ));
    }
}
