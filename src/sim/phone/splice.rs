//! Storing download data without copying it through the phone's own memory (Linux).
//!
//! Receiving into a buffer and writing it out copies every byte twice; a benchmark client
//! then mostly measures the phone. `splice(2)` moves the socket's pages into a pipe and
//! from the pipe into the download file, leaving one copy, the one into the file.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, FromRawFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};

/// Pipe capacity asked for (Linux allows up to `/proc/sys/fs/pipe-max-size`, 1 MiB by
/// default); the kernel's 64 KiB default is kept if the request is refused.
const PIPE_LEN: usize = 1024 * 1024;

/// A pipe that carries data from the socket to the download file.
pub(super) struct Splicer {
    /// The pipe's ends, as files so that they are closed with the splicer.
    read: File,
    write: File,
    /// Largest amount moved per step: the pipe's capacity.
    step: usize,
    /// Cleared when the download file's file system cannot take spliced data.
    to_file: bool,
}

impl Splicer {
    pub fn new() -> io::Result<Self> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        // SAFETY: pipe2 just created both descriptors and nothing else owns them; each is
        // wrapped exactly once, so each is closed exactly once.
        let (read, write) = unsafe { (File::from_raw_fd(read), File::from_raw_fd(write)) };
        let step = fcntl(write.as_raw_fd(), FcntlArg::F_SETPIPE_SZ(PIPE_LEN as i32))
            .ok()
            .and_then(|size| usize::try_from(size).ok())
            .unwrap_or(64 * 1024);
        Ok(Splicer {
            read,
            write,
            step,
            to_file: true,
        })
    }

    /// Moves up to `max` bytes (and at most the pipe's capacity) from `socket` into the
    /// pipe; blocks like a read, honouring the socket's read timeout. 0 means the host
    /// closed the connection.
    pub fn take(&mut self, socket: &TcpStream, max: usize) -> io::Result<usize> {
        let len = max.min(self.step);
        loop {
            match splice(
                socket.as_raw_fd(),
                None,
                self.write.as_raw_fd(),
                None,
                len,
                SpliceFFlags::SPLICE_F_MOVE,
            ) {
                Err(Errno::EINTR) => continue,
                other => return other.map_err(io::Error::from),
            }
        }
    }

    /// Moves the `n` bytes in the pipe to `file` at its current position.
    pub fn put(&mut self, mut n: usize, file: &File) -> io::Result<()> {
        while n > 0 && self.to_file {
            match splice(
                self.read.as_raw_fd(),
                None,
                file.as_raw_fd(),
                None,
                n,
                SpliceFFlags::SPLICE_F_MOVE,
            ) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(k) => n -= k,
                Err(Errno::EINTR) => {}
                // The file system takes no spliced data: copy from now on.
                Err(Errno::EINVAL) => self.to_file = false,
                Err(e) => return Err(e.into()),
            }
        }
        let mut buf = [0u8; 64 * 1024];
        let mut out = file;
        while n > 0 {
            let want = n.min(buf.len());
            let k = self.read.read(&mut buf[..want])?;
            if k == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            out.write_all(&buf[..k])?;
            n -= k;
        }
        Ok(())
    }
}
