//! The command/response machinery every command shares: sending, awaiting the
//! response, draining late logs and guarding the session after a failure.

use super::*;

impl<T: Transport> FirehoseClient<T> {
    /// A command whose only useful answer is an ACK.
    pub(super) fn simple(
        &mut self,
        command: &Command,
        timeout: Duration,
    ) -> Result<Response, FirehoseError> {
        self.guarded(command, |client| {
            let mut exchange = Exchange::new(command);
            client.send(command)?;
            let response = client.await_response(&mut exchange, timeout)?;
            if !response.ack {
                return Err(exchange.nak());
            }
            client.drain(&mut exchange, Stray::Refuse, LATE_LOG_GRACE)?;
            Ok(response)
        })
    }

    /// Runs `body` unless the session is out of step, and marks it out of step after an
    /// error that may leave the device mid-command.
    pub(super) fn guarded<R>(
        &mut self,
        command: &Command,
        body: impl FnOnce(&mut Self) -> Result<R, FirehoseError>,
    ) -> Result<R, FirehoseError> {
        if let Some(cause) = &self.out_of_step {
            return Err(FirehoseError::OutOfStep {
                command: command.tag().to_string(),
                cause: cause.clone(),
            });
        }
        let result = body(self);
        if let Err(e) = &result {
            if !matches!(
                e,
                FirehoseError::Nak { .. }
                    | FirehoseError::InvalidRequest { .. }
                    | FirehoseError::NotConfigured(_)
                    | FirehoseError::SourceStopped { .. }
            ) {
                self.out_of_step = Some(e.to_string());
            }
        }
        result
    }

    pub(super) fn send(&mut self, command: &Command) -> Result<(), FirehoseError> {
        let xml = command.to_xml();
        tracing::debug!(xml, "Firehose command");
        self.transport
            .write(xml.as_bytes(), self.timeouts.response)?;
        Ok(())
    }

    /// Validates a data command before anything is sent and returns its byte count.
    pub(super) fn check_transfer(
        &self,
        command: &Command,
        range: &SectorRange,
    ) -> Result<u64, FirehoseError> {
        let invalid = |reason: String| FirehoseError::InvalidRequest {
            command: command.tag().to_string(),
            reason,
        };
        if self.config.is_none() {
            return Err(FirehoseError::NotConfigured(command.tag().to_string()));
        }
        if range.sector_size == 0 || range.num_sectors == 0 {
            return Err(invalid(format!(
                "{} sectors of {} bytes is nothing to transfer",
                range.num_sectors, range.sector_size
            )));
        }
        range
            .byte_len()
            .ok_or_else(|| invalid("the byte count overflows".into()))
    }

    /// Sizes the data buffer: `payload` of the configuration, capped at [`MAX_CHUNK`] and
    /// rounded down to whole sectors where it holds at least one.
    pub(super) fn chunk_len(
        &mut self,
        sector_size: u32,
        payload: impl Fn(&DeviceConfig) -> u32,
    ) -> Result<usize, FirehoseError> {
        let config = self
            .config
            .as_ref()
            .ok_or_else(|| FirehoseError::NotConfigured("data transfer".into()))?;
        let payload = (payload(config) as usize).clamp(1, MAX_CHUNK);
        let sector = sector_size as usize;
        let len = if payload >= sector {
            payload - payload % sector
        } else {
            payload
        };
        if self.chunk.len() < len {
            self.chunk.resize(len, 0);
        }
        Ok(len)
    }

    /// Waits for the ACK with `rawmode="true"` that opens a data phase.
    pub(super) fn expect_rawmode(&mut self, exchange: &mut Exchange) -> Result<(), FirehoseError> {
        let response = self.await_response(exchange, self.timeouts.response)?;
        if !response.ack {
            return Err(exchange.nak());
        }
        if !response.rawmode() {
            return Err(exchange.protocol("ACK without rawmode=\"true\" before the data".into()));
        }
        Ok(())
    }

    /// Waits for the final ACK after a data phase and drains the logs behind it.
    pub(super) fn finish(&mut self, exchange: &mut Exchange) -> Result<(), FirehoseError> {
        let response = self.await_response(exchange, self.timeouts.finish)?;
        if !response.ack {
            return Err(exchange.nak());
        }
        self.drain(exchange, Stray::Refuse, LATE_LOG_GRACE)
    }

    /// After a failed data write, the device has often said why; a NAK explains more than
    /// a broken pipe. A disconnect is reported as is.
    pub(super) fn reason_for_failed_write(
        &mut self,
        exchange: &mut Exchange,
        e: TransportError,
    ) -> FirehoseError {
        if matches!(e, TransportError::Disconnected) {
            return e.into();
        }
        match self.await_response(exchange, NAK_GRACE) {
            Ok(response) if !response.ack => exchange.nak(),
            _ => e.into(),
        }
    }

    /// Reads documents until one carries a response, handling the logs before it. Running
    /// out of time is reported with the whole `timeout`, however much of it a read had left.
    pub(super) fn await_response(
        &mut self,
        exchange: &mut Exchange,
        timeout: Duration,
    ) -> Result<Response, FirehoseError> {
        let deadline = Instant::now() + timeout;
        let timed_out = || FirehoseError::Transport(TransportError::Timeout(timeout));
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(timed_out());
            }
            let doc = match self.next_doc(exchange, left) {
                Err(FirehoseError::Transport(TransportError::Timeout(_))) => {
                    return Err(timed_out())
                }
                other => other?,
            };
            if let Some(response) = doc.response {
                tracing::debug!(command = exchange.command, ?response, "Firehose response");
                return Ok(response);
            }
        }
    }

    /// Reads late logs until `silence` passes without any (at most [`MAX_DRAIN`]).
    pub(super) fn drain(
        &mut self,
        exchange: &mut Exchange,
        stray: Stray,
        silence: Duration,
    ) -> Result<(), FirehoseError> {
        let deadline = Instant::now() + MAX_DRAIN;
        while Instant::now() < deadline {
            match self.next_doc(exchange, silence) {
                Ok(DeviceDoc {
                    response: Some(response),
                    ..
                }) => {
                    if stray == Stray::Refuse {
                        return Err(exchange.protocol(format!(
                            "a second response after the answer: {response:?}"
                        )));
                    }
                    tracing::debug!(?response, "ignoring a repeated answer");
                }
                Ok(_) => {}
                Err(FirehoseError::Transport(TransportError::Timeout(_))) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        tracing::debug!(
            command = exchange.command,
            "the device is still logging; going on"
        );
        Ok(())
    }

    /// Drains late logs after an ACK whose answer comes in the logs: briefly, and then
    /// for up to [`LOG_SILENCE`] of quiet if `answered` says the answer has not come yet
    /// (a programmer may log it after the ACK).
    pub(super) fn drain_for_answer(
        &mut self,
        exchange: &mut Exchange,
        answered: impl Fn(&Exchange) -> bool,
    ) -> Result<(), FirehoseError> {
        self.drain(exchange, Stray::Refuse, LATE_LOG_GRACE)?;
        if !answered(exchange) {
            self.drain(exchange, Stray::Refuse, LOG_SILENCE)?;
        }
        Ok(())
    }

    /// Reads one document and passes its logs on, enforcing the per-command log cap.
    fn next_doc(
        &mut self,
        exchange: &mut Exchange,
        timeout: Duration,
    ) -> Result<DeviceDoc, FirehoseError> {
        let text = self.reader.next_document(&mut self.transport, timeout)?;
        let doc = DeviceDoc::parse(&text)?;
        for line in &doc.logs {
            exchange.lines += 1;
            if exchange.lines > MAX_LOG_LINES {
                return Err(FirehoseError::LogFlood {
                    command: exchange.command.clone(),
                    limit: MAX_LOG_LINES,
                });
            }
            tracing::debug!(command = exchange.command, "(firehose) {line}");
            if let Some(callback) = &mut self.on_log {
                callback(line);
            }
            if exchange.recent.len() == REASON_LINES {
                exchange.recent.pop_front();
            }
            exchange.recent.push_back(line.clone());
            if (exchange.keep)(line) && exchange.kept.len() < REASON_LINES {
                exchange.kept.push(line.clone());
            }
        }
        Ok(doc)
    }
}
