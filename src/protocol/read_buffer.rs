//! A bounded receive buffer for protocols framed by content rather than by transfer.
//!
//! Sahara and Firehose run over USB bulk pipes (one read = one device transfer) and over
//! serial ports (one read = whatever bytes have arrived). Their readers cut messages out of
//! this buffer, so a read holding half a message, or a message and the start of the next,
//! or a message and raw data, is handled the same way on both.

use std::time::{Duration, Instant};

use crate::transport::{Transport, TransportError};

/// Received bytes not yet consumed, in a fixed allocation.
#[derive(Debug)]
pub(crate) struct ReadBuffer {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl ReadBuffer {
    /// An empty buffer of `capacity` bytes. Readers size it at twice their largest message,
    /// so that after compaction a read always has room for a whole message.
    pub(crate) fn new(capacity: usize) -> Self {
        ReadBuffer {
            buf: vec![0; capacity].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Appends bytes received elsewhere; what does not fit is dropped from the front.
    pub(crate) fn preload(&mut self, bytes: &[u8]) {
        let keep = &bytes[bytes.len().saturating_sub(self.buf.len() / 2)..];
        self.compact();
        let room = self.buf.len() - self.end;
        let keep = &keep[keep.len().saturating_sub(room)..];
        self.buf[self.end..self.end + keep.len()].copy_from_slice(keep);
        self.end += keep.len();
    }

    /// Bytes received but not yet consumed.
    pub(crate) fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Drops the first `n` buffered bytes.
    pub(crate) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Moves buffered bytes into `out` and returns how many.
    pub(crate) fn take_into(&mut self, out: &mut [u8]) -> usize {
        let take = self.buffered().len().min(out.len());
        out[..take].copy_from_slice(&self.buffered()[..take]);
        self.consume(take);
        take
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// Appends the next non-empty transport read, waiting until `deadline` (`timeout` is
    /// the budget that deadline came from, for the error). Zero-length reads (USB ZLPs)
    /// carry nothing and are skipped.
    pub(crate) fn fill(
        &mut self,
        transport: &mut dyn Transport,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(), TransportError> {
        self.compact();
        if self.end == self.buf.len() {
            return Err(TransportError::MessageTooLarge {
                len: self.end as u64,
                max: self.buf.len(),
            });
        }
        loop {
            let n = transport.read(&mut self.buf[self.end..], time_left(deadline, timeout)?)?;
            if n > 0 {
                self.end += n;
                return Ok(());
            }
        }
    }
}

/// One non-empty transport read of at most `out.len()` bytes, waiting until `deadline`.
pub(crate) fn read_some(
    transport: &mut dyn Transport,
    out: &mut [u8],
    deadline: Instant,
    timeout: Duration,
) -> Result<usize, TransportError> {
    loop {
        let n = transport.read(out, time_left(deadline, timeout)?)?;
        if n > 0 || out.is_empty() {
            return Ok(n);
        }
    }
}

/// Time left until `deadline`, or the timeout error (naming the whole `timeout`) once it
/// has passed.
pub(crate) fn time_left(deadline: Instant, timeout: Duration) -> Result<Duration, TransportError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(TransportError::Timeout(timeout))
    } else {
        Ok(left)
    }
}
