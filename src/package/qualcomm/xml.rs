//! Reading the flat XML shape both rawprogram and patch files share: one root element whose
//! children are attribute-only elements, e.g. `<data><program …/><erase …/></data>`.
//!
//! Anything else (text, nested elements, a second root, a document type declaration, an
//! unknown element) is an error naming its line, so a damaged or unexpected file is refused
//! rather than half understood. Attributes are kept as written; the rawprogram and patch
//! modules decide which ones matter.

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::expr::Expr;
use super::{check_lun, check_sector_size, MAX_XML_ELEMENTS, MAX_XML_LEN};
use crate::package::names;

/// Why a rawprogram or patch file was refused. Line numbers count from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// Larger than [`MAX_XML_LEN`].
    #[error("the file is {size} bytes; at most {max} are allowed")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The cap.
        max: u64,
    },
    /// Not UTF-8 text.
    #[error("the file is not UTF-8 text")]
    NotUtf8,
    /// Malformed XML.
    #[error("line {line}: malformed XML: {message}")]
    Syntax {
        /// Where.
        line: usize,
        /// The XML reader's explanation.
        message: String,
    },
    /// Content this format never has.
    #[error("line {line}: unexpected {what}")]
    Unexpected {
        /// Where.
        line: usize,
        /// What was found.
        what: String,
    },
    /// The root element is not the one this kind of file has.
    #[error("line {line}: the root element is <{found}>, expected <{expected}>")]
    WrongRoot {
        /// Where.
        line: usize,
        /// The root found.
        found: String,
        /// The root expected.
        expected: &'static str,
    },
    /// No root element at all.
    #[error("the file has no <{expected}> element")]
    NoRoot {
        /// The root expected.
        expected: &'static str,
    },
    /// More than [`MAX_XML_ELEMENTS`] entries.
    #[error("the file has more than {max} entries")]
    TooManyElements {
        /// The cap.
        max: usize,
    },
    /// A required attribute is absent.
    #[error("line {line}: <{element}> lacks the {attribute} attribute")]
    MissingAttribute {
        /// Where.
        line: usize,
        /// The element.
        element: String,
        /// The attribute.
        attribute: &'static str,
    },
    /// An attribute value breaks its rule.
    #[error("line {line}: {attribute}={value:?} is invalid: {reason}")]
    InvalidAttribute {
        /// Where.
        line: usize,
        /// The attribute.
        attribute: &'static str,
        /// Its value as written.
        value: String,
        /// Which rule it breaks.
        reason: String,
    },
}

/// One child element: its name, line and attributes in document order.
#[derive(Debug)]
pub(super) struct Element {
    pub name: String,
    pub line: usize,
    attributes: Vec<(String, String)>,
}

/// Reads `text` as a `<root>` holding only attribute-only elements named in `children`.
pub(super) fn elements(
    text: &str,
    root: &'static str,
    children: &[&str],
) -> Result<Vec<Element>, XmlError> {
    if text.len() as u64 > MAX_XML_LEN {
        return Err(XmlError::TooLarge {
            size: text.len() as u64,
            max: MAX_XML_LEN,
        });
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(true);

    enum State {
        BeforeRoot,
        InRoot,
        InChild,
        AfterRoot,
    }
    let mut state = State::BeforeRoot;
    let mut out = Vec::new();
    loop {
        let event = reader.read_event().map_err(|e| XmlError::Syntax {
            line: line_at(text, reader.error_position()),
            message: e.to_string(),
        })?;
        let end = usize::try_from(reader.buffer_position()).unwrap_or(text.len());
        // The element or text just read starts at the last '<' before `end` (attribute
        // values cannot hold a raw '<'), which is where a person looks for it.
        let start = text.get(..end).and_then(|t| t.rfind('<')).unwrap_or(end);
        let line = line_at(text, start as u64);
        let unexpected = |what: String| Err(XmlError::Unexpected { line, what });
        let (tag, opens) = match &event {
            Event::Start(e) => (Some(e), true),
            Event::Empty(e) => (Some(e), false),
            _ => (None, false),
        };
        if let Some(start) = tag {
            let tag = name(start);
            match state {
                State::BeforeRoot if tag != root => {
                    return Err(XmlError::WrongRoot {
                        line,
                        found: tag,
                        expected: root,
                    });
                }
                State::BeforeRoot if opens => state = State::InRoot,
                State::BeforeRoot => state = State::AfterRoot,
                State::InRoot if children.contains(&tag.as_str()) => {
                    if out.len() == MAX_XML_ELEMENTS {
                        return Err(XmlError::TooManyElements {
                            max: MAX_XML_ELEMENTS,
                        });
                    }
                    out.push(element(start, tag, line)?);
                    if opens {
                        state = State::InChild;
                    }
                }
                State::InRoot => {
                    return unexpected(format!(
                        "element <{tag}> inside <{root}> (allowed: <{}>)",
                        children.join(">, <")
                    ));
                }
                State::InChild => {
                    return unexpected(format!("element <{tag}> nested inside an entry"));
                }
                State::AfterRoot => {
                    return unexpected(format!("element <{tag}> after the root element"));
                }
            }
            continue;
        }
        match (&state, event) {
            (_, Event::Comment(_)) | (State::BeforeRoot, Event::Decl(_)) => {}
            (State::BeforeRoot, Event::Eof) => return Err(XmlError::NoRoot { expected: root }),
            (State::InRoot, Event::End(_)) => state = State::AfterRoot,
            (State::InChild, Event::End(_)) => state = State::InRoot,
            (State::AfterRoot, Event::Eof) => return Ok(out),
            (State::InRoot | State::InChild, Event::Eof) => {
                return Err(XmlError::Syntax {
                    line,
                    message: format!("the file ends before </{root}>"),
                });
            }
            (_, Event::Text(t)) => {
                let shown: String = String::from_utf8_lossy(&t).chars().take(40).collect();
                return unexpected(format!("text {shown:?}"));
            }
            (_, Event::CData(_)) => return unexpected("CDATA section".into()),
            (_, Event::DocType(_)) => return unexpected("document type declaration".into()),
            (_, Event::PI(_)) => return unexpected("processing instruction".into()),
            (_, Event::Decl(_)) => return unexpected("XML declaration".into()),
            (_, Event::End(_)) => return unexpected("closing tag".into()),
            (_, Event::Start(_) | Event::Empty(_)) => {}
        }
    }
}

fn name(e: &BytesStart<'_>) -> String {
    String::from_utf8_lossy(e.name().as_ref()).into_owned()
}

fn element(e: &BytesStart<'_>, name: String, line: usize) -> Result<Element, XmlError> {
    let syntax = |message: String| XmlError::Syntax { line, message };
    let mut attributes = Vec::new();
    for attribute in e.attributes() {
        let attribute = attribute.map_err(|e| syntax(e.to_string()))?;
        let key = String::from_utf8_lossy(attribute.key.as_ref()).into_owned();
        let value = attribute
            .unescape_value()
            .map_err(|e| syntax(e.to_string()))?;
        attributes.push((key, value.into_owned()));
    }
    Ok(Element {
        name,
        line,
        attributes,
    })
}

/// 1-based line of byte `offset` in `text`.
fn line_at(text: &str, offset: u64) -> usize {
    let offset = usize::try_from(offset)
        .unwrap_or(text.len())
        .min(text.len());
    1 + text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

impl Element {
    /// The value of attribute `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of a required attribute.
    pub fn required(&self, key: &'static str) -> Result<&str, XmlError> {
        self.get(key).ok_or_else(|| XmlError::MissingAttribute {
            line: self.line,
            element: self.name.clone(),
            attribute: key,
        })
    }

    /// An [`XmlError::InvalidAttribute`] for this element.
    pub fn invalid(&self, attribute: &'static str, value: &str, reason: String) -> XmlError {
        XmlError::InvalidAttribute {
            line: self.line,
            attribute,
            value: value.to_owned(),
            reason,
        }
    }

    /// A decimal number as vendor files write it: digits, optionally a trailing `.`.
    pub fn number(&self, key: &'static str) -> Result<u64, XmlError> {
        let text = self.required(key)?;
        let digits = text.strip_suffix('.').unwrap_or(text);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.invalid(key, text, "not a decimal number".into()));
        }
        digits
            .parse()
            .map_err(|_| self.invalid(key, text, "larger than 64 bits".into()))
    }

    /// Like [`Element::number`], but absent means 0.
    pub fn number_or_zero(&self, key: &'static str) -> Result<u64, XmlError> {
        match self.get(key) {
            Some(_) => self.number(key),
            None => Ok(0),
        }
    }

    /// An expression attribute (`start_sector`, `value`).
    pub fn expr(&self, key: &'static str) -> Result<Expr, XmlError> {
        let text = self.required(key)?;
        Expr::parse(text).map_err(|e| self.invalid(key, text, e.to_string()))
    }

    /// `SECTOR_SIZE_IN_BYTES`.
    pub fn sector_size(&self) -> Result<u32, XmlError> {
        const KEY: &str = "SECTOR_SIZE_IN_BYTES";
        let value = self.number(KEY)?;
        let text = self.required(KEY)?;
        let size = u32::try_from(value).map_err(|_| self.invalid(KEY, text, "too large".into()))?;
        check_sector_size(size).map_err(|reason| self.invalid(KEY, text, reason))?;
        Ok(size)
    }

    /// `physical_partition_number`: the LUN.
    pub fn lun(&self) -> Result<u32, XmlError> {
        const KEY: &str = "physical_partition_number";
        let value = self.number(KEY)?;
        let text = self.required(KEY)?;
        let lun = u32::try_from(value).map_err(|_| self.invalid(KEY, text, "too large".into()))?;
        check_lun(lun).map_err(|reason| self.invalid(KEY, text, reason))?;
        Ok(lun)
    }

    /// A partition label (identifier charset: it goes into Firehose commands).
    pub fn label(&self, text: &str) -> Result<String, XmlError> {
        names::identifier("label", text).map_err(|e| self.invalid("label", text, e.to_string()))?;
        Ok(text.to_owned())
    }

    /// `true` or `false`; absent means `false`.
    pub fn flag(&self, key: &'static str) -> Result<bool, XmlError> {
        match self.get(key) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(self.invalid(key, other, "must be \"true\" or \"false\"".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recognises one expected error.
    type Check = fn(&XmlError) -> bool;

    fn parse(text: &str) -> Result<Vec<Element>, XmlError> {
        elements(text, "data", &["program", "erase"])
    }

    #[test]
    fn accepts_the_vendor_shape() {
        let text = "\u{feff}<?xml version=\"1.0\" ?>\n<!-- generated -->\n<data>\n  \
                    <!--NOTE: autogenerated-->\n  <program a=\"1\" b=\"x &amp; y\"/>\n  \
                    <erase c=\"2\"></erase>\n</data>\n<!-- end -->\n";
        let els = parse(text).unwrap();
        assert_eq!(els.len(), 2);
        assert_eq!((els[0].name.as_str(), els[0].line), ("program", 5));
        assert_eq!(els[0].get("b"), Some("x & y"));
        assert_eq!(els[1].get("c"), Some("2"));
        assert_eq!(els[1].line, 6);
        assert!(parse("<data/>").unwrap().is_empty());
    }

    #[test]
    fn refuses_everything_else() {
        let cases: &[(&str, Check)] = &[
            ("", |e| matches!(e, XmlError::NoRoot { .. })),
            ("<patches/>", |e| matches!(e, XmlError::WrongRoot { .. })),
            ("<data><read/></data>", |e| {
                matches!(e, XmlError::Unexpected { line: 1, .. })
            }),
            ("<data>\n<program><x/></program></data>", |e| {
                matches!(e, XmlError::Unexpected { line: 2, .. })
            }),
            ("<data>text</data>", |e| {
                matches!(e, XmlError::Unexpected { .. })
            }),
            ("<data/><data/>", |e| {
                matches!(e, XmlError::Unexpected { .. })
            }),
            ("<!DOCTYPE data [<!ENTITY x \"y\">]><data/>", |e| {
                matches!(e, XmlError::Unexpected { .. })
            }),
            ("<data><?pi x?></data>", |e| {
                matches!(e, XmlError::Unexpected { .. })
            }),
            ("<data><![CDATA[x]]></data>", |e| {
                matches!(e, XmlError::Unexpected { .. })
            }),
            ("<data><program a=\"1\" a=\"2\"/></data>", |e| {
                matches!(e, XmlError::Syntax { .. })
            }),
            ("<data><program a=\"&x;\"/></data>", |e| {
                matches!(e, XmlError::Syntax { .. })
            }),
            ("<data><program/>", |e| matches!(e, XmlError::Syntax { .. })),
            ("<data></datum>", |e| matches!(e, XmlError::Syntax { .. })),
            ("<data><program a=1/></data>", |e| {
                matches!(e, XmlError::Syntax { .. })
            }),
        ];
        for (text, check) in cases {
            let err = parse(text).unwrap_err();
            assert!(check(&err), "{text:?}: {err:?}");
        }
    }

    #[test]
    fn caps() {
        let many = format!("<data>{}</data>", "<erase/>".repeat(MAX_XML_ELEMENTS + 1));
        assert!(matches!(
            parse(&many),
            Err(XmlError::TooManyElements { .. })
        ));
        let big = format!("<data>{}</data>", " ".repeat(MAX_XML_LEN as usize));
        assert!(matches!(parse(&big), Err(XmlError::TooLarge { .. })));
    }

    #[test]
    fn attribute_rules() {
        let els = parse(
            "<data><program n=\"34.\" m=\"12\" bad=\"1.5\" neg=\"-1\" s=\"true\" t=\"True\" \
             SECTOR_SIZE_IN_BYTES=\"4096\" physical_partition_number=\"99\" e=\"NUM_DISK_SECTORS-33.\"/>\
             </data>",
        )
        .unwrap();
        let e = &els[0];
        assert_eq!(e.number("n").unwrap(), 34);
        assert_eq!(e.number("m").unwrap(), 12);
        assert_eq!(e.number_or_zero("absent").unwrap(), 0);
        assert!(matches!(
            e.number("bad"),
            Err(XmlError::InvalidAttribute { .. })
        ));
        assert!(e.number("neg").is_err());
        assert!(matches!(
            e.number("absent"),
            Err(XmlError::MissingAttribute {
                attribute: "absent",
                ..
            })
        ));
        assert!(e.flag("s").unwrap());
        assert!(!e.flag("absent").unwrap());
        assert!(e.flag("t").is_err());
        assert_eq!(e.sector_size().unwrap(), 4096);
        assert!(e.lun().is_err());
        assert_eq!(e.expr("e").unwrap().as_str(), "NUM_DISK_SECTORS-33.");
        assert!(e.label("../boot").is_err());
    }
}
