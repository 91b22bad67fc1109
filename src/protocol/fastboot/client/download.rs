//! A download's data phase: the image streamed to the device in large chunks, and padded
//! with zeros when its source stops early.

use std::io;

use super::deadline::Wait;
use super::FastbootError;
use crate::transport::{Transport, TransportError};

/// Size of the transport writes a download is cut into.
pub const DOWNLOAD_CHUNK: usize = 1 << 20;

/// How a data phase ended on the host's side.
pub(super) enum Sent {
    /// Every announced byte came from the image; `overran` if the image had more.
    Whole { overran: bool },
    /// The image stopped early; the rest went out as zeros. Why it stopped.
    Padded(FastbootError),
}

/// Streams a download to the device; handed to the `feed` of [`Client::download`].
///
/// Writes are gathered into one [`DOWNLOAD_CHUNK`] buffer (allocated once per client) and
/// sent as full chunks; a write of a whole chunk or more while nothing is buffered is sent
/// straight from the caller's slice. Nothing beyond the announced size is accepted.
pub struct DownloadWriter<'a> {
    pub(super) transport: &'a mut dyn Transport,
    pub(super) chunk: &'a mut Vec<u8>,
    pub(super) expected: u32,
    pub(super) written: u64,
    pub(super) wait: Wait,
    pub(super) overran: bool,
    pub(super) failed: Option<TransportError>,
}

impl DownloadWriter<'_> {
    /// Bytes accepted so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Bytes still to write.
    pub fn remaining(&self) -> u64 {
        u64::from(self.expected) - self.written
    }

    /// Sends `bytes` as one transport write within the data phase's time, keeping the
    /// transport's error for the client.
    fn send(
        transport: &mut dyn Transport,
        failed: &mut Option<TransportError>,
        bytes: &[u8],
        wait: &Wait,
    ) -> io::Result<()> {
        let result = match wait.next("download") {
            Ok(timeout) => transport.write(bytes, timeout),
            Err(_) => Err(TransportError::Timeout(wait.limit)),
        };
        result.map_err(|e| {
            let message = e.to_string();
            *failed = Some(e);
            io::Error::other(message)
        })
    }

    /// Sends what is buffered, if anything.
    fn send_chunk(&mut self) -> io::Result<()> {
        if !self.chunk.is_empty() {
            Self::send(self.transport, &mut self.failed, self.chunk, &self.wait)?;
            self.chunk.clear();
        }
        Ok(())
    }

    /// Ends the data phase after `feed` returned. If the image stopped early (its source
    /// failed or ran out), what is still buffered is dropped and every byte still owed goes
    /// out as zeros: a bootloader waits for all the bytes it was promised, and would take
    /// the next commands as data otherwise. Only a failed link leaves the phase unfinished.
    pub(super) fn finish(mut self, fed: io::Result<()>) -> Result<Sent, FastbootError> {
        if let Some(e) = self.failed.take() {
            return Err(e.into());
        }
        let stopped = match fed {
            Err(e) if !self.overran => Some(FastbootError::Source(e)),
            _ => {
                if let Err(e) = self.send_chunk() {
                    return Err(self
                        .failed
                        .take()
                        .map_or(FastbootError::Source(e), FastbootError::Transport));
                }
                (self.written < u64::from(self.expected)).then_some(FastbootError::ShortDownload {
                    expected: self.expected,
                    written: self.written,
                })
            }
        };
        match stopped {
            None => Ok(Sent::Whole {
                overran: self.overran,
            }),
            Some(cause) => {
                self.pad()?;
                Ok(Sent::Padded(cause))
            }
        }
    }

    /// Sends zeros for every announced byte not yet on the wire.
    fn pad(&mut self) -> Result<(), FastbootError> {
        let on_wire = self.written - self.chunk.len() as u64;
        let mut owed = u64::from(self.expected) - on_wire;
        self.chunk.clear();
        self.chunk
            .resize(owed.min(DOWNLOAD_CHUNK as u64) as usize, 0);
        while owed > 0 {
            let n = owed.min(self.chunk.len() as u64) as usize;
            let sent = Self::send(
                self.transport,
                &mut self.failed,
                &self.chunk[..n],
                &self.wait,
            );
            if sent.is_err() {
                let e = self.failed.take().expect("send keeps its error");
                return Err(e.into());
            }
            owed -= n as u64;
        }
        self.chunk.clear();
        Ok(())
    }
}

impl io::Write for DownloadWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.failed.is_some() {
            return Err(io::Error::other(
                "the download to the device already failed",
            ));
        }
        if data.is_empty() {
            return Ok(0);
        }
        let room = usize::try_from(self.remaining()).unwrap_or(usize::MAX);
        if room == 0 {
            self.overran = true;
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "more than the {} bytes announced for the download",
                    self.expected
                ),
            ));
        }
        let data = &data[..data.len().min(room)];
        let accepted = if self.chunk.is_empty() && data.len() >= DOWNLOAD_CHUNK {
            let whole = &data[..DOWNLOAD_CHUNK];
            Self::send(self.transport, &mut self.failed, whole, &self.wait)?;
            whole.len()
        } else {
            let take = data.len().min(DOWNLOAD_CHUNK - self.chunk.len());
            self.chunk.extend_from_slice(&data[..take]);
            if self.chunk.len() == DOWNLOAD_CHUNK {
                self.send_chunk()?;
            }
            take
        };
        self.written += accepted as u64;
        Ok(accepted)
    }

    /// Sends the buffered bytes now (normally unnecessary: the client flushes at the end).
    fn flush(&mut self) -> io::Result<()> {
        self.send_chunk()
    }
}
