//! Driving the virtual phone over fastboot TCP from tests: Google's client as a peer, and
//! a raw client for what Google's client never sends.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flashline::sim::RunningPhone;

/// How long one run of Google's client may take before the test calls it hung.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs Google's client against the phone, killing it after [`CLIENT_TIMEOUT`].
/// Returns whether it succeeded and what it printed (stdout and stderr together).
pub fn run_fastboot(fastboot: &Path, phone: &RunningPhone, args: &[&str]) -> (bool, String) {
    let log = tempfile::NamedTempFile::new().unwrap();
    let out = File::create(log.path()).unwrap();
    let err = out.try_clone().unwrap();
    let mut child = Command::new(fastboot)
        .arg("-s")
        .arg(phone.device_address())
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn fastboot");
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "fastboot {args:?} did not finish within {CLIENT_TIMEOUT:?}:\n{}",
                fs::read_to_string(log.path()).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (status.success(), fs::read_to_string(log.path()).unwrap())
}

/// [`run_fastboot`], which must succeed.
pub fn fastboot_ok(fastboot: &Path, phone: &RunningPhone, args: &[&str]) -> String {
    let (ok, output) = run_fastboot(fastboot, phone, args);
    assert!(ok, "fastboot {args:?} failed:\n{output}");
    output
}

/// Just enough of a fastboot TCP client to send what Google's client never would.
pub struct RawClient {
    stream: TcpStream,
}

impl RawClient {
    /// Connects and shakes hands; panics if the phone does not answer.
    pub fn connect(addr: SocketAddr) -> Self {
        Self::try_connect(addr).expect("phone answers the handshake")
    }

    /// Connects and shakes hands; `None` while the phone is away (rebooting).
    pub fn try_connect(addr: SocketAddr) -> Option<Self> {
        let mut stream = TcpStream::connect(addr).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(b"FB01").ok()?;
        let mut hello = [0u8; 4];
        stream.read_exact(&mut hello).ok()?;
        (&hello == b"FB01").then_some(RawClient { stream })
    }

    /// Connects once the phone is back from a reboot (within 5 s).
    pub fn reconnect(addr: SocketAddr) -> Self {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(client) = Self::try_connect(addr) {
                return client;
            }
            assert!(Instant::now() < deadline, "the phone did not come back");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn send_frame(&mut self, payload: &[u8]) {
        // One write per frame: a separate header write would stall on Nagle's algorithm.
        let mut frame = (payload.len() as u64).to_be_bytes().to_vec();
        frame.extend_from_slice(payload);
        self.stream.write_all(&frame).unwrap();
    }

    /// The next response, or `None` once the phone closed the connection.
    pub fn read_frame(&mut self) -> Option<String> {
        let mut header = [0u8; 8];
        self.stream.read_exact(&mut header).ok()?;
        let len = u64::from_be_bytes(header);
        assert!(len <= 256, "response of {len} bytes");
        let mut payload = vec![0u8; len as usize];
        self.stream.read_exact(&mut payload).unwrap();
        Some(String::from_utf8_lossy(&payload).into_owned())
    }

    /// Sends a command and returns the first non-INFO response.
    pub fn command(&mut self, command: &str) -> String {
        self.send_frame(command.as_bytes());
        self.final_response()
    }

    pub fn final_response(&mut self) -> String {
        loop {
            let response = self.read_frame().expect("connection closed");
            if !response.starts_with("INFO") {
                return response;
            }
        }
    }

    /// Downloads `data` in one frame.
    pub fn download(&mut self, data: &[u8]) -> String {
        let reply = self.command(&format!("download:{:08x}", data.len()));
        assert_eq!(reply, format!("DATA{:08x}", data.len()));
        self.send_frame(data);
        self.final_response()
    }

    /// Whether the phone closed the connection (reading what is left).
    pub fn is_closed(&mut self) -> bool {
        self.read_frame().is_none()
    }
}
