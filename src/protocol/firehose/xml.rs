//! The XML layer both directions share: writing and parsing `<data>` documents through
//! quick-xml, so escaping is done in one place.

use super::*;

fn xml_error(e: impl std::fmt::Display) -> FirehoseError {
    FirehoseError::Xml(e.to_string())
}

/// One child element of `<data>`.
#[derive(Debug)]
pub(super) struct Element {
    pub(super) name: String,
    pub(super) attributes: Vec<(String, String)>,
}

impl Element {
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn bad(&self, reason: String) -> FirehoseError {
        FirehoseError::BadCommand {
            tag: self.name.clone(),
            reason,
        }
    }

    pub(super) fn required(&self, name: &str) -> Result<&str, FirehoseError> {
        self.get(name)
            .ok_or_else(|| self.bad(format!("missing attribute {name}")))
    }

    /// A plain decimal number (expressions must be resolved before they reach the wire).
    pub(super) fn number<N: std::str::FromStr>(&self, name: &str) -> Result<N, FirehoseError> {
        let text = self.required(name)?.trim();
        text.parse()
            .map_err(|_| self.bad(format!("{name}={text:?} is not a plain decimal number")))
    }

    /// A `0`/`1` (or `false`/`true`) flag; absent means off.
    pub(super) fn flag(&self, name: &str) -> Result<bool, FirehoseError> {
        match self.get(name).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(false),
            Some(v) if v == "1" || v == "true" => Ok(true),
            Some(v) if v == "0" || v == "false" => Ok(false),
            Some(v) => Err(self.bad(format!("{name}={v:?} is not 0 or 1"))),
        }
    }
}

/// Writes `<?xml version="1.0" ?><data>…</data>` with one empty element per entry.
pub(super) fn write_document(elements: &[(&str, Vec<(&str, String)>)]) -> String {
    let mut writer = Writer::new(Vec::new());
    let events = std::iter::once(Event::Decl(BytesDecl::new("1.0", None, None)))
        .chain(std::iter::once(Event::Start(BytesStart::new("data"))))
        .chain(elements.iter().map(|(name, attributes)| {
            Event::Empty(
                BytesStart::new(*name)
                    .with_attributes(attributes.iter().map(|(k, v)| (*k, v.as_str()))),
            )
        }))
        .chain(std::iter::once(Event::End(
            quick_xml::events::BytesEnd::new("data"),
        )));
    for event in events {
        // Writing into a Vec cannot fail.
        let _ = writer.write_event(event);
    }
    String::from_utf8_lossy(&writer.into_inner()).into_owned()
}

/// The child elements of a `<data>` document, with unescaped attribute values.
pub(super) fn parse_document(doc: &str) -> Result<Vec<Element>, FirehoseError> {
    let mut reader = Reader::from_str(doc);
    reader.config_mut().trim_text(true);
    let mut elements = Vec::new();
    let mut in_data = false;
    let mut closed = false;
    loop {
        let event = reader.read_event().map_err(xml_error)?;
        match event {
            Event::Eof => break,
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
            Event::Text(t) if t.iter().all(u8::is_ascii_whitespace) => {}
            Event::Text(_) | Event::CData(_) => {
                if !in_data {
                    return Err(FirehoseError::Xml("text outside <data>".into()));
                }
            }
            Event::Start(e) | Event::Empty(e) if closed => {
                return Err(FirehoseError::Xml(format!(
                    "<{}> after the end of <data>",
                    String::from_utf8_lossy(e.name().as_ref())
                )))
            }
            Event::Start(e) if !in_data => {
                expect_data_root(&e)?;
                in_data = true;
            }
            Event::Empty(e) if !in_data => {
                expect_data_root(&e)?;
                closed = true;
            }
            Event::Start(e) => {
                elements.push(element(&e)?);
                // Content inside a command element carries nothing we use.
                reader.read_to_end(e.name()).map_err(xml_error)?;
            }
            Event::Empty(e) => elements.push(element(&e)?),
            Event::End(_) => {
                in_data = false;
                closed = true;
            }
        }
    }
    if !closed {
        return Err(FirehoseError::Xml(
            "the document has no complete <data> element".into(),
        ));
    }
    Ok(elements)
}

fn expect_data_root(e: &BytesStart<'_>) -> Result<(), FirehoseError> {
    if e.name().as_ref().eq_ignore_ascii_case(b"data") {
        Ok(())
    } else {
        Err(FirehoseError::Xml(format!(
            "the root element is <{}>, not <data>",
            String::from_utf8_lossy(e.name().as_ref())
        )))
    }
}

fn element(e: &BytesStart<'_>) -> Result<Element, FirehoseError> {
    let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
    let attributes = e
        .attributes()
        .map(|a| {
            let a = a.map_err(xml_error)?;
            let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
            let value = a.unescape_value().map_err(xml_error)?.into_owned();
            Ok((key, value))
        })
        .collect::<Result<_, FirehoseError>>()?;
    Ok(Element { name, attributes })
}
