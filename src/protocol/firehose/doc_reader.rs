//! [`DocReader`]: cuts bounded documents and raw data phases out of a transport.
//! Separate because it is about framing bytes, not about what documents mean.

use super::*;

/// Cuts Firehose documents out of a transport, whether each read is one USB transfer or
/// whatever bytes a serial port has.
///
/// A document ends with `</data>`; anything after it in the same read stays buffered for
/// the next document or for the raw data phase ([`DocReader::read_raw`]). A document may
/// be at most [`MAX_DOCUMENT_LEN`] bytes, so the buffer is bounded.
#[derive(Debug)]
pub struct DocReader {
    buf: ReadBuffer,
    /// Leading buffered bytes already searched for the end marker.
    scanned: usize,
}

impl Default for DocReader {
    fn default() -> Self {
        Self::new()
    }
}

impl DocReader {
    /// An empty reader.
    pub fn new() -> Self {
        DocReader {
            buf: ReadBuffer::new(2 * MAX_DOCUMENT_LEN),
            scanned: 0,
        }
    }

    /// A reader that starts with bytes already received (e.g. by Sahara finding a
    /// programmer already running); at most [`MAX_DOCUMENT_LEN`] of them are kept.
    pub fn with_pending(pending: &[u8]) -> Self {
        let mut reader = DocReader::new();
        reader.buf.preload(pending);
        reader
    }

    /// Bytes received but not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        self.buf.buffered()
    }

    fn consume(&mut self, n: usize) {
        self.buf.consume(n);
        self.scanned = self.scanned.saturating_sub(n);
    }

    /// Returns the next complete document (leading whitespace and NULs dropped), reading
    /// until `timeout` runs out.
    pub fn next_document(
        &mut self,
        transport: &mut dyn Transport,
        timeout: Duration,
    ) -> Result<String, FirehoseError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(doc) = self.take_document()? {
                return Ok(doc);
            }
            if self.buffered().len() > MAX_DOCUMENT_LEN {
                return Err(FirehoseError::DocumentTooLarge {
                    limit: MAX_DOCUMENT_LEN,
                });
            }
            self.buf.fill(transport, deadline, timeout)?;
        }
    }

    /// Cuts a complete document from the buffer, if one is there.
    fn take_document(&mut self) -> Result<Option<String>, FirehoseError> {
        let skip = self
            .buffered()
            .iter()
            .take_while(|b| b.is_ascii_whitespace() || **b == 0)
            .count();
        self.consume(skip);
        let from = self.scanned.saturating_sub(END_OF_DOCUMENT.len() - 1);
        let found = self.buffered()[from..]
            .windows(END_OF_DOCUMENT.len())
            .position(|w| w == END_OF_DOCUMENT);
        let Some(at) = found else {
            self.scanned = self.buffered().len();
            return Ok(None);
        };
        let len = from + at + END_OF_DOCUMENT.len();
        if len > MAX_DOCUMENT_LEN {
            return Err(FirehoseError::DocumentTooLarge {
                limit: MAX_DOCUMENT_LEN,
            });
        }
        let doc = std::str::from_utf8(&self.buffered()[..len])
            .map(str::to_string)
            .map_err(|_| FirehoseError::Xml("the document is not UTF-8".into()));
        self.consume(len);
        doc.map(Some)
    }

    /// Reads raw data-phase bytes into `out`: buffered bytes first, otherwise one transport
    /// read of at most `out.len()` bytes. Returns how many bytes were placed (at least one
    /// unless `out` is empty).
    pub fn read_raw(
        &mut self,
        transport: &mut dyn Transport,
        out: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, FirehoseError> {
        let taken = self.buf.take_into(out);
        self.scanned = 0;
        if taken > 0 || out.is_empty() {
            return Ok(taken);
        }
        Ok(read_some(
            transport,
            out,
            Instant::now() + timeout,
            timeout,
        )?)
    }
}
