//! The device side of a fastboot link: TCP (the `FB01` handshake and 8-byte frames) or
//! USB (bulk transfers on a gadget).
//!
//! Over TCP, after the handshake every message travels as a big-endian `u64` length
//! followed by that many bytes. A command is one frame; a data phase may come as one huge
//! frame or many small ones, so data is counted in bytes and streamed, never buffered by
//! frame. Over USB a command is one bulk transfer and the data phase any number of them.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[cfg(target_os = "linux")]
use super::splice::Splicer;
use crate::protocol::fastboot::{Response, MAX_COMMAND_LEN};
#[cfg(target_os = "linux")]
use crate::sim::gadget::{BulkIn, BulkOut};
use crate::sim::shaper::Shaper;

/// How long the host may take to send its `FB01`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connected host may stay silent (between commands or inside a download)
/// before the phone drops it and serves the next connection.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a response may wait for the host to read it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Buffer for the data phase: one buffer per connection, large enough that storing a
/// download costs few system calls.
const DATA_BUF_LEN: usize = 1024 * 1024;

/// What the host sent at a command boundary.
pub(super) enum Incoming {
    /// One command frame (at most [`MAX_COMMAND_LEN`] bytes).
    Command(Vec<u8>),
    /// A command frame declaring this many bytes; it was not read.
    TooLong(u64),
    /// The host closed the connection.
    Closed,
}

/// What carries the bytes to and from the host.
pub(super) enum Wire {
    /// fastboot over TCP: one accepted connection.
    Tcp(TcpStream),
    /// fastboot over USB: the bulk OUT and bulk IN endpoints of a gadget.
    #[cfg(target_os = "linux")]
    Usb(BulkOut, BulkIn),
}

/// One host session: a TCP connection, or a USB configuration until the host lets go.
pub(super) struct Link {
    wire: Wire,
    /// The data-phase buffer, allocated at the first download.
    buf: Vec<u8>,
    /// Paces the data phase to the configured link rate, if any.
    shaper: Option<Shaper>,
    /// Moves download data into the file without copying it here, made at the first
    /// download; `None` after it could not be made (then data is copied).
    #[cfg(target_os = "linux")]
    splicer: Option<Option<Splicer>>,
}

impl Link {
    /// Starts a session. Over TCP this is the device side of the handshake: the host sends
    /// `FB` + two decimal digits first; the phone answers `FB01`, the only version it
    /// speaks. USB has no handshake. `link_rate` (bytes/s) caps how fast download data is
    /// taken in.
    pub fn accept(wire: Wire, link_rate: Option<u64>) -> io::Result<Self> {
        let stream = match wire {
            Wire::Tcp(stream) => stream,
            #[cfg(target_os = "linux")]
            usb @ Wire::Usb(..) => {
                return Ok(Link {
                    wire: usb,
                    buf: Vec::new(),
                    shaper: link_rate.map(Shaper::new),
                    splicer: None,
                })
            }
        };
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
        stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
        let mut link = Link {
            wire: Wire::Tcp(stream),
            buf: Vec::new(),
            shaper: link_rate.map(Shaper::new),
            #[cfg(target_os = "linux")]
            splicer: None,
        };
        let mut hello = [0u8; 4];
        link.reader().read_exact(&mut hello)?;
        let version = std::str::from_utf8(&hello[2..])
            .ok()
            .filter(|d| d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<u8>().ok());
        match (&hello[..2], version) {
            (b"FB", Some(v)) if v >= 1 => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad fastboot TCP handshake {hello:02x?}"),
                ))
            }
        }
        match &mut link.wire {
            Wire::Tcp(stream) => {
                stream.write_all(b"FB01")?;
                stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
            }
            // A USB link returned above, without a handshake.
            #[cfg(target_os = "linux")]
            Wire::Usb(..) => {}
        }
        Ok(link)
    }

    /// Waits for the next command frame.
    pub fn next_command(&mut self) -> io::Result<Incoming> {
        #[cfg(target_os = "linux")]
        if let Wire::Usb(out, _) = &mut self.wire {
            return next_transfer(out);
        }
        let Some(len) = self.read_frame_len()? else {
            return Ok(Incoming::Closed);
        };
        if len > MAX_COMMAND_LEN as u64 {
            return Ok(Incoming::TooLong(len));
        }
        let mut command = vec![0u8; len as usize];
        self.reader().read_exact(&mut command)?;
        Ok(Incoming::Command(command))
    }

    /// Receives the first `limit` bytes of a data phase of `len` bytes into `out` at its
    /// position, across any number of frames, adding each byte stored to `received`.
    /// `limit` is below `len` only when an injected disconnect cuts the phase short. A
    /// frame that runs past `len` is a protocol error: the phone could not tell where the
    /// next command starts.
    pub fn receive_data(
        &mut self,
        len: u64,
        limit: u64,
        out: &File,
        received: &mut u64,
    ) -> io::Result<()> {
        let mut left = len;
        #[cfg(target_os = "linux")]
        if let Wire::Usb(..) = self.wire {
            // Each read asks for no more than is still due: a transfer ending exactly on a
            // packet boundary is complete only when the request is full.
            while len - left < limit {
                let n = self.copy(limit - (len - left), out)? as u64;
                left -= n;
                *received += n;
            }
            return Ok(());
        }
        let mut in_frame = 0;
        while len - left < limit {
            if in_frame == 0 {
                let frame = self.read_frame_len()?.ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("host closed the connection with {left} download bytes missing"),
                    )
                })?;
                if frame > left {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "a {frame}-byte data frame runs past the {left} bytes still expected"
                        ),
                    ));
                }
                in_frame = frame;
                continue;
            }
            let want = in_frame.min(limit - (len - left));
            let n = self.store(want, out)? as u64;
            in_frame -= n;
            left -= n;
            *received += n;
        }
        Ok(())
    }

    /// Reads and drops whatever the host sends until it closes the connection (or stays
    /// silent for the idle timeout): a hung device answers nothing.
    pub fn ignore_until_closed(&mut self) {
        let mut sink = [0u8; 4096];
        while let Ok(n) = self.reader().read(&mut sink) {
            if n == 0 {
                return;
            }
        }
    }

    /// Moves some of the `left` bytes of the current frame into `out`; returns how many.
    #[cfg(target_os = "linux")]
    fn store(&mut self, left: u64, out: &File) -> io::Result<usize> {
        let Wire::Tcp(stream) = &self.wire else {
            return self.copy(left, out);
        };
        let splicer = self.splicer.get_or_insert_with(|| {
            Splicer::new()
                .inspect_err(|e| tracing::debug!("phone sim: copying downloads: {e}"))
                .ok()
        });
        let Some(splicer) = splicer else {
            return self.copy(left, out);
        };
        let n = splicer.take(stream, usize::try_from(left).unwrap_or(usize::MAX))?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if let Some(shaper) = &mut self.shaper {
            shaper.pass(n);
        }
        splicer.put(n, out)?;
        Ok(n)
    }

    #[cfg(not(target_os = "linux"))]
    fn store(&mut self, left: u64, out: &File) -> io::Result<usize> {
        self.copy(left, out)
    }

    /// [`Link::store`] through the data buffer.
    fn copy(&mut self, left: u64, mut out: &File) -> io::Result<usize> {
        if self.buf.len() < DATA_BUF_LEN {
            self.buf.resize(DATA_BUF_LEN, 0);
        }
        let n = left.min(self.buf.len() as u64) as usize;
        self.fill(n)?;
        out.write_all(&self.buf[..n])?;
        Ok(n)
    }

    /// Fills the first `n` bytes of the data buffer, pacing each read through the shaper.
    fn fill(&mut self, n: usize) -> io::Result<()> {
        let mut got = 0;
        while got < n {
            let reader: &mut dyn Read = match &mut self.wire {
                Wire::Tcp(stream) => stream,
                #[cfg(target_os = "linux")]
                Wire::Usb(out, _) => out,
            };
            match reader.read(&mut self.buf[got..n]) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(k) => {
                    if let Some(shaper) = &mut self.shaper {
                        shaper.pass(k);
                    }
                    got += k;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Sends one response as one frame (TCP) or one transfer (USB).
    pub fn send(&mut self, response: &Response) -> io::Result<()> {
        self.send_frame(&response.encode())
    }

    /// Sends `payload` as one frame (TCP) or one transfer (USB), whatever it holds.
    pub fn send_frame(&mut self, payload: &[u8]) -> io::Result<()> {
        let stream = match &mut self.wire {
            Wire::Tcp(stream) => stream,
            #[cfg(target_os = "linux")]
            Wire::Usb(_, to_host) => return to_host.write_all(payload),
        };
        let mut frame = (payload.len() as u64).to_be_bytes().to_vec();
        frame.extend_from_slice(payload);
        stream.write_all(&frame)
    }

    /// Where host bytes come from.
    fn reader(&mut self) -> &mut dyn Read {
        match &mut self.wire {
            Wire::Tcp(stream) => stream,
            #[cfg(target_os = "linux")]
            Wire::Usb(out, _) => out,
        }
    }

    /// Reads a frame header; `None` if the host closed the connection before it.
    fn read_frame_len(&mut self) -> io::Result<Option<u64>> {
        let mut header = [0u8; 8];
        let mut got = 0;
        while got < header.len() {
            match self.reader().read(&mut header[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Some(u64::from_be_bytes(header)))
    }
}

/// Reads one USB command transfer. The buffer is a whole number of high-speed packets
/// longer than the longest command, so an over-long command shows as such. Zero-length
/// transfers carry nothing and are skipped.
#[cfg(target_os = "linux")]
fn next_transfer(out: &mut BulkOut) -> io::Result<Incoming> {
    let mut command = vec![0u8; MAX_COMMAND_LEN + 512];
    loop {
        match out.read(&mut command) {
            Ok(0) => {}
            Ok(n) if n > MAX_COMMAND_LEN => return Ok(Incoming::TooLong(n as u64)),
            Ok(n) => {
                command.truncate(n);
                return Ok(Incoming::Command(command));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
