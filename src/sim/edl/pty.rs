//! The virtual device's end of its "USB cable": the master side of a pseudo-terminal.
//!
//! The host opens the slave path (`/dev/pts/N`) as it would a real EDL serial port. The
//! simulator keeps its own slave descriptor open for its whole life, which has three
//! effects it relies on:
//!
//! * the tty stays raw (no echo, no line editing) whatever hosts come and go, because the
//!   settings live as long as some descriptor holds the slave;
//! * reads on the master never fail with `EIO` while no host has the port open; the device
//!   just sees silence, as a real one does when nobody talks to it;
//! * a host that disappears cannot be told from a silent one, so every data phase has a
//!   timeout after which the device gives up and waits again.
//!
//! A host that opened the port exclusively (`TIOCEXCL`) and died without releasing it
//! would lock every later opener out, since the flag outlives its close while the slave
//! stays open; the device clears the flag whenever its line is idle. Hosts that want to
//! keep others out take an `flock` too, which closes with them.
//!
//! The master is non-blocking, so a host that stops reading can never wedge a write, and
//! every wait is cut into short slices that check the stop flag.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use serialport::{ClearBuffer, SerialPort, TTYPort};

use crate::transport::{Transport, TransportError};

use super::{Line, SLICE};

nix::ioctl_none_bad!(tiocnxcl, nix::libc::TIOCNXCL);

/// The device end of the pseudo-terminal.
pub(crate) struct Pty {
    master: TTYPort,
    /// Held open for the reasons in the module documentation; never read or written.
    slave: TTYPort,
    address: String,
    stop: Arc<AtomicBool>,
}

impl Pty {
    /// Opens a new pseudo-terminal pair. `stop` ends every wait with
    /// [`TransportError::Disconnected`] once set.
    pub fn open(stop: Arc<AtomicBool>) -> io::Result<Pty> {
        let (master, slave) = TTYPort::pair().map_err(io::Error::from)?;
        fcntl(master.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        let path = slave
            .name()
            .ok_or_else(|| io::Error::other("the new pseudo-terminal has no slave path"))?;
        Ok(Pty {
            master,
            slave,
            address: format!("serial:{path}"),
            stop,
        })
    }

    /// The next slice to wait, or why no more waiting is allowed.
    fn slice(&self, deadline: Instant, timeout: Duration) -> Result<Duration, TransportError> {
        if self.stopping() {
            return Err(TransportError::Disconnected);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(TransportError::Timeout(timeout));
        }
        Ok(left.min(SLICE))
    }

    /// Clears `TIOCEXCL` on the tty. (serialport's `set_exclusive(false)` would also take
    /// a shared `flock`, which would keep every host from locking the port.)
    fn release_exclusive(&mut self) {
        // SAFETY: TIOCNXCL takes no argument; the descriptor is the open slave we own.
        if let Err(e) = unsafe { tiocnxcl(self.slave.as_raw_fd()) } {
            tracing::debug!("edl sim: cannot clear TIOCEXCL: {e}");
        }
    }
}

impl Line for Pty {
    fn stop_flag(&self) -> &AtomicBool {
        &self.stop
    }

    /// Drops whatever the host sent that the device has not read yet, as a device that
    /// reboots loses it.
    fn discard_input(&mut self) {
        if let Err(e) = self.master.clear(ClearBuffer::Input) {
            tracing::debug!("edl sim: cannot discard pending input: {e}");
        }
    }
}

fn retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

impl Transport for Pty {
    fn write(&mut self, data: &[u8], timeout: Duration) -> Result<(), TransportError> {
        let deadline = Instant::now() + timeout;
        let mut written = 0;
        while written < data.len() {
            let slice = self.slice(deadline, timeout)?;
            self.master.set_timeout(slice).map_err(io::Error::from)?;
            match self.master.write(&data[written..]) {
                Ok(n) => written += n,
                Err(e) if retry(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        let deadline = Instant::now() + timeout;
        loop {
            let slice = self.slice(deadline, timeout)?;
            self.master.set_timeout(slice).map_err(io::Error::from)?;
            match self.master.read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => self.release_exclusive(),
                Err(e) if retry(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn address(&self) -> &str {
        &self.address
    }
}
