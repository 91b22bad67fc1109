//! `configure` and the payload-size negotiation around it: the one command whose
//! answer reshapes every later data phase, so its retry rules live apart.

use super::*;

impl<T: Transport> FirehoseClient<T> {
    /// Configures the programmer for `memory` (`emmc`, `ufs`, …) and negotiates the largest
    /// write, starting from `requested_payload`.
    ///
    /// While the programmer is still booting (nothing at all comes back), the command is
    /// re-sent for up to [`FirehoseTimeouts::configure_boot`]. If the device accepts a
    /// smaller size (ACK with `MaxPayloadSizeToTargetInBytesSupported`) or demands one (NAK
    /// with `MaxPayloadSizeToTargetInBytes`), configure is sent once more with it and must
    /// be ACKed. The negotiated size never exceeds `requested_payload`.
    pub fn configure(
        &mut self,
        memory: &str,
        requested_payload: u32,
    ) -> Result<DeviceConfig, FirehoseError> {
        let command = |payload| {
            Command::Configure(Configure {
                memory_name: memory.to_string(),
                max_payload_to_target: payload,
                verbose: false,
                zlp_aware_host: true,
                skip_storage_init: false,
            })
        };
        if requested_payload == 0 {
            return Err(FirehoseError::InvalidRequest {
                command: "configure".into(),
                reason: "the requested payload size is 0".into(),
            });
        }
        let first = command(requested_payload);
        self.guarded(&first, |client| {
            let mut exchange = Exchange::new(&first);
            // Startup chatter of a freshly booted programmer is not an answer.
            client.drain(&mut exchange, Stray::Ignore, LOG_SILENCE)?;
            let Some(response) = client.configure_while_booting(&first, &mut exchange)? else {
                // Some programmers log their way through configure and never send a
                // <response> (public reports: notes/real-devices.md, "configure"; the log
                // of bkerler/edl issue #230 says only "Host's payload to target size is too
                // large", naming no size). Going on with a small payload is what most
                // likely works; a programmer that is not configured after all NAKs the
                // first storage command with its reason.
                tracing::info!("configure: the programmer answered with logs only");
                let config = DeviceConfig {
                    max_payload_to_target: requested_payload.min(LOGS_ONLY_PAYLOAD),
                    max_payload_from_target: None,
                    max_xml_size: None,
                    memory_name: None,
                    target_name: None,
                    version: None,
                    answered: false,
                };
                client.config = Some(config.clone());
                return Ok(config);
            };
            let (response, payload) = match renegotiation(&exchange, &response, requested_payload)?
            {
                None => (response, requested_payload),
                Some(payload) => {
                    tracing::debug!(payload, "configure: renegotiating the payload size");
                    client.drain(&mut exchange, Stray::Ignore, LOG_SILENCE)?;
                    client.send(&command(payload))?;
                    let response =
                        client.await_response(&mut exchange, client.timeouts.response)?;
                    if !response.ack {
                        return Err(exchange.nak());
                    }
                    (response, payload)
                }
            };
            client.drain(&mut exchange, Stray::Ignore, LOG_SILENCE)?;
            let number = |name: &str| attribute_number(&exchange, &response, name);
            let text = |name: &str| response.get(name).map(str::to_string);
            let config = DeviceConfig {
                max_payload_to_target: payload,
                max_payload_from_target: number("MaxPayloadSizeFromTargetInBytes")?,
                max_xml_size: number("MaxXMLSizeInBytes")?,
                memory_name: text("MemoryName"),
                target_name: text("TargetName"),
                version: text("Version"),
                answered: true,
            };
            tracing::info!(?config, "Firehose configured");
            client.config = Some(config.clone());
            Ok(config)
        })
    }

    /// Sends `configure` until the programmer answers at all, within the boot window.
    /// `None`: it logged, but no `<response>` came within the response timeout.
    fn configure_while_booting(
        &mut self,
        command: &Command,
        exchange: &mut Exchange,
    ) -> Result<Option<Response>, FirehoseError> {
        let boot_deadline = Instant::now() + self.timeouts.configure_boot;
        loop {
            match self.send(command) {
                Err(FirehoseError::Transport(TransportError::Timeout(_)))
                    if Instant::now() < boot_deadline =>
                {
                    continue
                }
                other => other?,
            }
            let attempt = CONFIGURE_ATTEMPT.min(self.timeouts.response);
            match self.await_response(exchange, attempt) {
                Err(FirehoseError::Transport(TransportError::Timeout(_))) => {}
                other => return other.map(Some),
            }
            if exchange.lines > 0 || !self.reader.buffered().is_empty() {
                // The programmer is up and working on it (e.g. initialising storage).
                return match self.await_response(exchange, self.timeouts.response) {
                    Err(FirehoseError::Transport(TransportError::Timeout(_)))
                        if exchange.lines > 0 && self.reader.buffered().is_empty() =>
                    {
                        Ok(None)
                    }
                    other => other.map(Some),
                };
            }
            if Instant::now() >= boot_deadline {
                return Err(TransportError::Timeout(self.timeouts.configure_boot).into());
            }
            tracing::debug!("no answer to configure yet; the programmer may be booting");
        }
    }
}

/// The payload size to re-send `configure` with, if the response calls for one.
fn renegotiation(
    exchange: &Exchange,
    response: &Response,
    asked: u32,
) -> Result<Option<u32>, FirehoseError> {
    let name = if response.ack {
        "MaxPayloadSizeToTargetInBytesSupported"
    } else {
        "MaxPayloadSizeToTargetInBytes"
    };
    match attribute_number(exchange, response, name)? {
        Some(offer) if offer > 0 && offer < asked => Ok(Some(offer)),
        _ if response.ack => Ok(None),
        _ => Err(exchange.nak()),
    }
}

/// A numeric response attribute; present but not a number is a protocol error.
fn attribute_number(
    exchange: &Exchange,
    response: &Response,
    name: &str,
) -> Result<Option<u32>, FirehoseError> {
    response
        .get(name)
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|_| exchange.protocol(format!("{name}={v:?} is not a number")))
        })
        .transpose()
}
