//! What the device sends back: [`Response`] and [`DeviceDoc`] (logs plus at most one
//! response). Separate from host commands, which flow the other way.

use super::*;

/// The device's answer to a command: ACK or NAK plus attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// `value="ACK"` (true) or `value="NAK"` (false).
    pub ack: bool,
    /// Every other attribute (`rawmode`, `MaxPayloadSizeToTargetInBytes`, …), by name.
    pub attributes: BTreeMap<String, String>,
}

impl Response {
    /// An ACK without attributes.
    pub fn ack() -> Response {
        Response {
            ack: true,
            attributes: BTreeMap::new(),
        }
    }

    /// A NAK without attributes.
    pub fn nak() -> Response {
        Response {
            ack: false,
            ..Response::ack()
        }
    }

    /// Adds an attribute (builder style, for devices).
    pub fn with(mut self, name: &str, value: impl ToString) -> Response {
        self.attributes.insert(name.to_string(), value.to_string());
        self
    }

    /// An attribute's value; names match without regard to case, as programmers differ.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether a raw data phase follows (`rawmode="true"`).
    pub fn rawmode(&self) -> bool {
        self.get(attr::RAWMODE)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

/// One device → host document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceDoc {
    /// `<log value="…"/>` texts, in order.
    pub logs: Vec<String>,
    /// The `<response>`, if the document has one.
    pub response: Option<Response>,
}

impl DeviceDoc {
    /// A document holding one log line.
    pub fn log(text: impl Into<String>) -> DeviceDoc {
        DeviceDoc {
            logs: vec![text.into()],
            response: None,
        }
    }

    /// A document holding only a response.
    pub fn response(response: Response) -> DeviceDoc {
        DeviceDoc {
            logs: Vec::new(),
            response: Some(response),
        }
    }

    /// Encodes the document (device side): logs first, then the response.
    pub fn encode(&self) -> String {
        let mut elements: Vec<(&str, Vec<(&str, String)>)> = self
            .logs
            .iter()
            .map(|text| ("log", vec![(attr::VALUE, text.clone())]))
            .collect();
        if let Some(response) = &self.response {
            let value = if response.ack { "ACK" } else { "NAK" };
            let mut attributes = vec![(attr::VALUE, value.to_string())];
            attributes.extend(
                response
                    .attributes
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.clone())),
            );
            elements.push(("response", attributes));
        }
        write_document(&elements)
    }

    /// Decodes a device document (host side). Elements other than `<log>` and `<response>`
    /// are skipped; a second `<response>` or a value other than ACK/NAK is an error.
    pub fn parse(doc: &str) -> Result<DeviceDoc, FirehoseError> {
        let mut parsed = DeviceDoc::default();
        for element in parse_document(doc)? {
            match element.name.to_ascii_lowercase().as_str() {
                "log" => parsed
                    .logs
                    .push(element.get(attr::VALUE).unwrap_or_default().to_string()),
                "response" => {
                    if parsed.response.is_some() {
                        return Err(FirehoseError::Xml(
                            "a document holds more than one <response>".into(),
                        ));
                    }
                    let ack = match element.get(attr::VALUE) {
                        Some(v) if v.eq_ignore_ascii_case("ACK") => true,
                        Some(v) if v.eq_ignore_ascii_case("NAK") => false,
                        other => {
                            return Err(FirehoseError::Xml(format!(
                                "<response value={other:?}> is neither ACK nor NAK"
                            )))
                        }
                    };
                    let attributes = element
                        .attributes
                        .into_iter()
                        .filter(|(k, _)| !k.eq_ignore_ascii_case(attr::VALUE))
                        .collect();
                    parsed.response = Some(Response { ack, attributes });
                }
                other => tracing::debug!(element = other, "skipping unknown Firehose element"),
            }
        }
        Ok(parsed)
    }
}
