//! Serial ports: the AT command port of a USB modem or hotspot (a CDC-ACM or vendor tty),
//! or a pseudo-terminal serving a virtual one.
//!
//! A serial port is a byte stream, not a packet link: [`Transport::read`] returns whatever
//! bytes have arrived, and framing (AT lines) is the protocol's job. USB serial adapters
//! ignore the baud rate, but a real UART does not, so the port is set to the 115200 8N1
//! without flow control that modem AT ports use.

use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use serialport::{
    ClearBuffer, DataBits, FlowControl, Parity, SerialPort, SerialPortType, StopBits,
};

use super::{Transport, TransportError};

/// Line speed of modem AT ports.
const BAUD_RATE: u32 = 115_200;

/// What the operating system knows about one serial port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialPortFacts {
    /// The device path (`/dev/ttyUSB2`, `COM7`).
    pub path: String,
    /// USB vendor ID, when the port belongs to a USB device.
    pub vid: Option<u16>,
    /// USB product ID, when the port belongs to a USB device.
    pub pid: Option<u16>,
    /// USB serial number string, when the OS reports one.
    pub serial: Option<String>,
    /// USB product string, when the OS reports one.
    pub product: Option<String>,
    /// The USB interface the tty belongs to: a modem has several ttys under one VID:PID.
    pub interface: Option<u8>,
    /// Where the USB device is plugged in (`usb:1-1.2`, as [`crate::transport::usb`]
    /// names it), where the OS says: a device's ttys and its raw USB node share it.
    pub port_path: Option<String>,
}

/// The USB port path of tty `name` (`ttyUSB0`), from sysfs: the nearest ancestor of its
/// device that is a USB device (`1-1.2`, no `:` of an interface).
#[cfg(target_os = "linux")]
fn port_path(name: &str) -> Option<String> {
    let device =
        std::fs::canonicalize(Path::new("/sys/class/tty").join(name).join("device")).ok()?;
    device.ancestors().find_map(|dir| {
        let base = dir.file_name()?.to_str()?;
        let (bus, ports) = base.split_once('-')?;
        let usb_device = !base.contains(':')
            && bus.bytes().all(|b| b.is_ascii_digit())
            && ports.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        usb_device.then(|| format!("usb:{base}"))
    })
}

#[cfg(not(target_os = "linux"))]
fn port_path(_name: &str) -> Option<String> {
    None
}

/// Every serial port the operating system lists, with its USB identity where known.
///
/// Discovery must keep working on machines where enumeration fails (containers without
/// sysfs, missing permissions), so a failure yields no ports rather than an error.
/// Pseudo-terminals are never listed; virtual devices announce themselves on the bench
/// (`crate::device::bench`) instead. A port the OS names twice (macOS) is listed once.
pub fn list_ports() -> Vec<SerialPortFacts> {
    let ports = match serialport::available_ports() {
        Ok(ports) => ports,
        Err(e) => {
            tracing::debug!("cannot list serial ports: {e}");
            return Vec::new();
        }
    };
    let ports =
        crate::platform::dedupe_ports(crate::platform::Os::HERE, ports, |p| p.port_name.as_str());
    ports
        .into_iter()
        .map(|port| match port.port_type {
            SerialPortType::UsbPort(usb) => SerialPortFacts {
                port_path: port_path(port.port_name.rsplit('/').next().unwrap_or_default()),
                path: port.port_name,
                vid: Some(usb.vid),
                pid: Some(usb.pid),
                serial: usb.serial_number,
                product: usb.product,
                interface: usb.interface,
            },
            _ => SerialPortFacts {
                path: port.port_name,
                vid: None,
                pid: None,
                serial: None,
                product: None,
                interface: None,
                port_path: None,
            },
        })
        .collect()
}

/// One open serial port.
pub struct SerialTransport {
    port: Box<dyn SerialPort>,
    path: String,
    address: String,
}

impl std::fmt::Debug for SerialTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerialTransport")
            .field("address", &self.address)
            .finish()
    }
}

impl SerialTransport {
    /// Opens `serial:PATH` or a bare `PATH` at 115200 8N1 without flow control, with DTR
    /// and RTS raised.
    ///
    /// On Unix the port is taken exclusively (`TIOCEXCL` plus `flock`, released again on
    /// drop), so a second program such as ModemManager cannot interleave its own commands.
    /// Bytes left over from an earlier session are discarded, so they cannot be mistaken for
    /// answers.
    pub fn open(path: &str) -> Result<Self, TransportError> {
        let path = path.strip_prefix("serial:").unwrap_or(path);
        let address = format!("serial:{path}");
        let open_error = |reason: String| TransportError::Open {
            address: address.clone(),
            reason,
        };
        if path.is_empty() {
            return Err(open_error("no port path given".into()));
        }
        let mut port = serialport::new(path, BAUD_RATE)
            .data_bits(DataBits::Eight)
            .parity(Parity::None)
            .stop_bits(StopBits::One)
            .flow_control(FlowControl::None)
            .open()
            .map_err(|e| open_error(e.to_string()))?;
        port.clear(ClearBuffer::Input)
            .map_err(|e| open_error(format!("cannot discard stale input: {e}")))?;
        // DTR and RTS raised: Windows' driver leaves DTR low, and many modems stay silent
        // until it is high. A pseudo-terminal has no modem lines; that is not an error.
        for (line, result) in [
            ("DTR", port.write_data_terminal_ready(true)),
            ("RTS", port.write_request_to_send(true)),
        ] {
            if let Err(e) = result {
                tracing::debug!(%address, "cannot raise {line}: {e}");
            }
        }
        tracing::debug!(%address, "serial port open");
        Ok(SerialTransport {
            port,
            path: path.to_string(),
            address,
        })
    }

    /// Names an I/O failure the way the rest of the crate reasons about it.
    ///
    /// The serial library reports `EIO`/`ENXIO` (the usual errors of a tty whose device was
    /// unplugged, or of a pseudo-terminal whose other side closed) without an error code,
    /// so a port whose device node has vanished counts as disconnected whatever the error.
    fn io_error(&self, e: io::Error, timeout: Duration) -> TransportError {
        match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => TransportError::Timeout(timeout),
            io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::NotConnected
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted => TransportError::Disconnected,
            _ if !Path::new(&self.path).exists() => TransportError::Disconnected,
            _ => TransportError::Io(e),
        }
    }
}

impl Transport for SerialTransport {
    /// Writes all of `data`, giving up when `timeout` has passed.
    fn write(&mut self, data: &[u8], timeout: Duration) -> Result<(), TransportError> {
        let deadline = Instant::now() + timeout;
        let mut pending = data;
        while !pending.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(TransportError::Timeout(timeout));
            }
            self.port
                .set_timeout(left)
                .map_err(|e| self.io_error(e.into(), timeout))?;
            match self.port.write(pending) {
                Ok(0) => return Err(TransportError::Disconnected),
                Ok(n) => pending = &pending[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_error(e, timeout)),
            }
        }
        Ok(())
    }

    /// Returns the bytes that arrive first (at least one) within `timeout`.
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.port
            .set_timeout(timeout)
            .map_err(|e| self.io_error(e.into(), timeout))?;
        loop {
            return match self.port.read(buf) {
                // A tty reads 0 bytes after a hangup: the other side is gone.
                Ok(0) => Err(TransportError::Disconnected),
                Ok(n) => Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(self.io_error(e, timeout)),
            };
        }
    }

    fn address(&self) -> &str {
        &self.address
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(2);

    /// A pseudo-terminal: the master side, the slave side (held open as the modem
    /// simulator does) and the path a host opens.
    fn pty() -> (serialport::TTYPort, serialport::TTYPort, String) {
        let (master, slave) = serialport::TTYPort::pair().unwrap();
        let path = slave.name().unwrap();
        (master, slave, path)
    }

    #[test]
    fn bytes_flow_both_ways_and_silence_is_a_timeout() {
        let (mut master, _slave, path) = pty();
        let mut port = SerialTransport::open(&format!("serial:{path}")).unwrap();
        assert_eq!(port.address(), format!("serial:{path}"));
        port.write(b"AT\r", T).unwrap();
        let mut buf = [0u8; 16];
        master.set_timeout(T).unwrap();
        let n = master.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"AT\r");
        master.write_all(b"\r\nOK\r\n").unwrap();
        let mut got = Vec::new();
        while got.len() < 6 {
            let n = port.read(&mut buf, T).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"\r\nOK\r\n");
        let wait = Duration::from_millis(30);
        assert!(matches!(
            port.read(&mut buf, wait),
            Err(TransportError::Timeout(w)) if w == wait
        ));
    }

    #[test]
    fn a_closed_master_is_a_disconnect() {
        let (master, _slave, path) = pty();
        let mut port = SerialTransport::open(&path).unwrap();
        drop(master);
        let mut buf = [0u8; 16];
        assert!(matches!(
            port.read(&mut buf, T),
            Err(TransportError::Disconnected)
        ));
    }

    #[test]
    fn the_port_can_be_reopened_after_close() {
        let (_master, _slave, path) = pty();
        drop(SerialTransport::open(&path).unwrap());
        SerialTransport::open(&path).unwrap();
    }

    #[test]
    fn missing_ports_are_open_errors() {
        for path in ["serial:/dev/pts/does-not-exist", "serial:"] {
            assert!(matches!(
                SerialTransport::open(path),
                Err(TransportError::Open { .. })
            ));
        }
    }

    #[test]
    fn listing_ports_never_fails() {
        for port in list_ports() {
            assert!(!port.path.is_empty());
            assert!(!port.path.contains("/dev/pts/"), "ptys are never listed");
        }
    }
}
