//! The DIAG port a virtual modem shows in factory mode: HDLC-framed DIAG requests in,
//! answers out. `DIAG_DLOAD_F` (0x3A) and the subsystem command `4B 65 01 00` are echoed
//! and reboot the modem into EDL, as reported for real ZTE devices; any other request is
//! answered with 0x13 (bad command) followed by the request, as DIAG does.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serialport::{SerialPort, TTYPort};

use crate::protocol::diag::{self, DownloadRequest, FrameReader, BAD_COMMAND};

/// How long the port waits in one read, so a stop request is seen promptly.
const POLL: Duration = Duration::from_millis(50);
/// Time between echoing the download request and vanishing into EDL.
const REBOOT_DELAY: Duration = Duration::from_millis(100);

/// A DIAG port's device side, and whatever must live as long as the port does (the
/// pseudo-terminal's other end and its bench announcement, or a USB gadget).
pub struct DiagLine {
    /// Where the modem reads requests and writes answers.
    pub port: TTYPort,
    /// Dropped when the port goes away.
    pub keep: Box<dyn Send>,
}

/// Opens the DIAG port when the modem enters factory mode.
pub type OpenDiag = Box<dyn FnOnce() -> io::Result<DiagLine> + Send>;

/// Serves DIAG requests until one reboots the modem into EDL (`true`) or the simulator
/// stops (`false`). Each decoded request is logged in hex.
pub(super) fn serve(line: &mut DiagLine, stopping: &AtomicBool, log: &Mutex<Vec<String>>) -> bool {
    if let Err(e) = line.port.set_timeout(POLL) {
        tracing::debug!("modem sim: DIAG port timeout: {e}");
    }
    let mut reader = FrameReader::new();
    let mut buf = [0u8; 512];
    while !stopping.load(Ordering::SeqCst) {
        let n = match line.port.read(&mut buf) {
            Ok(n) if n > 0 => n,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => continue,
            _ => {
                std::thread::sleep(POLL);
                continue;
            }
        };
        for frame in reader.push(&buf[..n]) {
            let Ok(request) = frame else {
                // A frame with a bad CRC is dropped, as DIAG drops it.
                continue;
            };
            if let Ok(mut log) = log.lock() {
                log.push(hex::encode(&request));
            }
            let download = [DownloadRequest::Dload, DownloadRequest::SubsystemEdl]
                .into_iter()
                .any(|r| r.payload() == request.as_slice());
            let answer = if download {
                request.clone()
            } else {
                [&[BAD_COMMAND][..], &request].concat()
            };
            if let Err(e) = line.port.write_all(&diag::encode(&answer)) {
                tracing::debug!("modem sim: DIAG answer dropped: {e}");
            }
            if download {
                std::thread::sleep(REBOOT_DELAY);
                return true;
            }
        }
    }
    false
}
