//! The data paths that move sectors: program, read, erase and patch. Separate from
//! the queries because they stream bounded data phases.

use super::*;

impl<T: Transport> FirehoseClient<T> {
    /// Writes `range` from `data`, which must supply exactly `range.byte_len()` bytes
    /// (zero padding included). The bytes go out in writes of at most the negotiated
    /// payload; `progress` receives the total sent.
    ///
    /// Storage commits as it receives, and a device in a data phase takes every byte for
    /// data: when `data` fails or ends early, the rest of the range is sent as zeros so the
    /// command ends as the device expects, and the session stays usable for what comes
    /// next (a `reset_to_edl`, another try) instead of being left mid-command
    /// ([`FirehoseError::SourceStopped`]).
    pub fn program(
        &mut self,
        range: &SectorRange,
        data: &mut dyn Read,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), FirehoseError> {
        let command = Command::Program(*range);
        let total = self.check_transfer(&command, range)?;
        let chunk_len = self.chunk_len(range.sector_size, |c| c.max_payload_to_target)?;
        self.guarded(&command, |client| {
            let mut exchange = Exchange::new(&command);
            client.send(&command)?;
            client.expect_rawmode(&mut exchange)?;
            let mut sent = 0u64;
            let mut stopped: Option<(u64, String)> = None;
            while sent < total {
                let n = chunk_len.min(usize::try_from(total - sent).unwrap_or(usize::MAX));
                let chunk = &mut client.chunk[..n];
                if stopped.is_none() {
                    let (got, cause) = match fill_from(data, chunk) {
                        Ok(got) if got == n => (got, None),
                        Ok(got) => (got, Some("the source ended early".to_string())),
                        Err(e) => (0, Some(e.to_string())),
                    };
                    if let Some(cause) = cause {
                        tracing::debug!(%cause, "program: padding the rest of the range");
                        chunk[got..].fill(0);
                        stopped = Some((sent + got as u64, cause));
                    }
                } else {
                    chunk.fill(0);
                }
                if let Err(e) = client.transport.write(chunk, client.timeouts.data) {
                    return Err(client.reason_for_failed_write(&mut exchange, e));
                }
                sent += n as u64;
                if stopped.is_none() {
                    progress(sent);
                }
            }
            client.finish(&mut exchange)?;
            match stopped {
                None => Ok(()),
                Some((supplied, cause)) => Err(FirehoseError::SourceStopped {
                    expected: total,
                    supplied,
                    cause,
                }),
            }
        })
    }

    /// Reads `range` into `out`; `progress` receives the total received.
    pub fn read(
        &mut self,
        range: &SectorRange,
        out: &mut dyn Write,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), FirehoseError> {
        let command = Command::Read(*range);
        let total = self.check_transfer(&command, range)?;
        // A USB device sends transfers of up to its announced size; the buffer must hold one.
        let chunk_len = self.chunk_len(1, |c| {
            c.max_payload_from_target
                .unwrap_or(0)
                .max(DEFAULT_READ_CHUNK as u32)
        })?;
        self.guarded(&command, |client| {
            let mut exchange = Exchange::new(&command);
            client.send(&command)?;
            client.expect_rawmode(&mut exchange)?;
            let mut received = 0u64;
            while received < total {
                let want = chunk_len.min(usize::try_from(total - received).unwrap_or(usize::MAX));
                let n = client.reader.read_raw(
                    &mut client.transport,
                    &mut client.chunk[..want],
                    client.timeouts.data,
                )?;
                out.write_all(&client.chunk[..n])
                    .map_err(FirehoseError::Sink)?;
                received += n as u64;
                progress(received);
            }
            client.finish(&mut exchange)
        })
    }

    /// Erases `range`.
    pub fn erase(&mut self, range: &SectorRange) -> Result<(), FirehoseError> {
        let command = Command::Erase(*range);
        self.simple(&command, self.timeouts.finish).map(drop)
    }

    /// Applies one `DISK` patch.
    pub fn patch(&mut self, patch: &Patch) -> Result<(), FirehoseError> {
        if !(1..=8).contains(&patch.size_in_bytes) {
            return Err(FirehoseError::InvalidRequest {
                command: "patch".into(),
                reason: format!("size_in_bytes {} is not 1 to 8", patch.size_in_bytes),
            });
        }
        self.simple(&Command::Patch(*patch), self.timeouts.response)
            .map(drop)
    }
}

/// Reads into `buf` until it is full or `data` ends; returns the bytes read.
fn fill_from(data: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match data.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
