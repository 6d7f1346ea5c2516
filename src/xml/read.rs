//! The reader: XML 1.0 text to [`Element`]s on top of quick-xml, resolving names as XML
//! Namespaces 1.0 (§3–§6) says.
//!
//! Two entry points share the element building (names, attributes, namespace declarations,
//! references): [`parse_document`] reads a whole document (PIDF, CCMP, the cluster state), and
//! the fragment builder reads one element against namespaces already in scope — each stanza of
//! an XMPP stream against the stream header's declarations (`build_fragment`, used by
//! [`crate::xmpp::stream`]), or a stored stanza re-read later ([`parse_fragment`]).
//!
//! Refused everywhere: a document type declaration, entity references other than the five
//! predefined ones, character references to characters outside the XML 1.0 `Char`
//! production, undeclared prefixes, prefixes or namespaces XML Namespaces 1.0 §3 reserves, and
//! two attributes with the same expanded name (§6.3). A document may carry an XML
//! declaration, comments and processing instructions, which are skipped (RFC 3863 documents
//! from the field have them); a fragment may not (RFC 6120 §11.1).

use std::borrow::Cow;

use quick_xml::escape::EscapeError;
use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

use super::chars::{check_chars, display_name, is_name_byte, is_name_start, is_xml_char, name_at};
use super::element::{Attr, Element, Node};
use super::{XmlError, XMLNS_NS, XML_NS};

/// Bounds on what a reader accepts, so that hostile input cannot make it build an arbitrarily
/// large or deep tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted input, in bytes.
    pub max_bytes: usize,
    /// Deepest accepted nesting: the number of element levels, the outermost element being
    /// level 1 (so `max_depth - 1` levels inside it).
    pub max_depth: usize,
}

/// Namespace bindings declared inside the input being read: (prefix, URI), `""` being the
/// default namespace; innermost last.
type Bindings = Vec<(String, String)>;

/// Parses a whole document: an optional XML declaration, comments and processing
/// instructions (skipped), and one root element with only whitespace around it. A UTF-8 byte
/// order mark is skipped. Nothing is in scope at the root but the `xml` prefix.
pub fn parse_document(bytes: &[u8], limits: &Limits) -> Result<Element, XmlError> {
    if bytes.len() > limits.max_bytes {
        return Err(XmlError::TooLarge {
            size: bytes.len(),
            max: limits.max_bytes,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        XmlError::UnsupportedEncoding(format!(
            "invalid UTF-8 at byte {} of the document",
            e.valid_up_to()
        ))
    })?;
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    if let Some(c) = text.chars().find(|&c| !is_xml_char(c)) {
        return Err(XmlError::NotWellFormed(format!(
            "illegal character U+{:04X}",
            u32::from(c)
        )));
    }
    let no_scope: &[(&str, &str)] = &[];
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<(Element, usize)> = Vec::with_capacity(8);
    let mut bindings = Bindings::new();
    let mut root: Option<Element> = None;
    loop {
        let event = reader.read_event().map_err(|e| {
            XmlError::NotWellFormed(match stack.last() {
                Some((top, _)) => format!("{e} in <{}>", top.qname()),
                None => e.to_string(),
            })
        })?;
        match event {
            Event::Start(start) | Event::Empty(start) if root.is_some() => {
                return Err(XmlError::NotWellFormed(format!(
                    "element <{}> after the root element",
                    start.name().0
                )));
            }
            Event::Start(start) => {
                let mark = bindings.len();
                let el = open(&start, no_scope, &mut bindings, stack.len(), limits, true)?;
                stack.push((el, mark));
            }
            Event::Empty(start) => {
                let mark = bindings.len();
                let el = open(&start, no_scope, &mut bindings, stack.len(), limits, true)?;
                bindings.truncate(mark);
                if let Some(el) = attach(&mut stack, el) {
                    root = Some(el);
                }
            }
            Event::End(_) => match stack.pop() {
                Some((el, mark)) => {
                    bindings.truncate(mark);
                    if let Some(el) = attach(&mut stack, el) {
                        root = Some(el);
                    }
                }
                None => return Err(XmlError::NotWellFormed("unmatched end tag".to_owned())),
            },
            Event::Text(t) => document_text(&mut stack, &t.xml10_content())?,
            Event::CData(c) => document_text(&mut stack, &c.xml10_content())?,
            Event::GeneralRef(r) => {
                let c = match stack.last() {
                    Some((top, _)) => resolve_reference(&r, &top.qname())?,
                    None => resolve_reference(&r, "")?,
                };
                document_text(&mut stack, c.encode_utf8(&mut [0u8; 4]))?;
            }
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::Comment(_) | Event::PI(_) | Event::Decl(_) => {}
            Event::Eof => break,
        }
    }
    if let Some((top, _)) = stack.last() {
        return Err(XmlError::NotWellFormed(format!(
            "<{}> is not closed",
            top.qname()
        )));
    }
    root.ok_or_else(|| XmlError::NotWellFormed("no root element".to_owned()))
}

/// Appends document text to the open element; outside the root only whitespace is allowed.
fn document_text(stack: &mut [(Element, usize)], text: &str) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some((top, _)) => {
            top.append_text(text);
            Ok(())
        }
        None if super::is_whitespace(text.as_bytes()) => Ok(()),
        None => Err(XmlError::NotWellFormed(
            "text outside the root element".to_owned(),
        )),
    }
}

/// Parses one element (surrounding whitespace allowed) with the bindings of `scope` in
/// scope — (prefix, URI) pairs, `""` for the default namespace, innermost last — e.g. a
/// stanza stored as it was written into a `jabber:client` stream.
pub fn parse_fragment<S: AsRef<str>>(
    bytes: &[u8],
    scope: &[(S, S)],
    limits: &Limits,
) -> Result<Element, XmlError> {
    if bytes.len() > limits.max_bytes {
        return Err(XmlError::TooLarge {
            size: bytes.len(),
            max: limits.max_bytes,
        });
    }
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .unwrap_or(bytes.len());
    let trimmed = super::trim_end_whitespace(&bytes[start..]);
    build_fragment(trimmed, scope, limits.max_depth)
}

/// Builds the element in `bytes`, which must be exactly one element (an XMPP stream's
/// framed stanza), resolving prefixes against `scope`; nesting deeper than `max_depth`
/// levels is refused. Errors name the element that starts `bytes`.
pub(crate) fn build_fragment<S: AsRef<str>>(
    bytes: &[u8],
    scope: &[(S, S)],
    max_depth: usize,
) -> Result<Element, XmlError> {
    let s = check_chars(bytes)?;
    let outer = || display_name(name_at(bytes, 0));
    let limits = Limits {
        max_bytes: usize::MAX,
        max_depth,
    };
    let mut reader = Reader::from_str(s);
    // Open elements, each with the length of `bindings` before its declarations.
    let mut stack: Vec<(Element, usize)> = Vec::with_capacity(8);
    let mut bindings = Bindings::new();
    loop {
        let event = reader
            .read_event()
            .map_err(|e| XmlError::NotWellFormed(format!("{e} in <{}>", outer())))?;
        let done = match event {
            Event::Start(start) => {
                let mark = bindings.len();
                let el = open(&start, scope, &mut bindings, stack.len(), &limits, false)?;
                stack.push((el, mark));
                None
            }
            Event::Empty(start) => {
                let mark = bindings.len();
                let el = open(&start, scope, &mut bindings, stack.len(), &limits, false)?;
                bindings.truncate(mark);
                attach(&mut stack, el)
            }
            Event::End(_) => match stack.pop() {
                Some((el, mark)) => {
                    bindings.truncate(mark);
                    attach(&mut stack, el)
                }
                None => {
                    return Err(XmlError::NotWellFormed(format!(
                        "unmatched end tag in <{}>",
                        outer()
                    )));
                }
            },
            Event::Text(t) => {
                fragment_text(&mut stack, &t.xml10_content(), &outer)?;
                None
            }
            Event::CData(t) => {
                fragment_text(&mut stack, &t.xml10_content(), &outer)?;
                None
            }
            Event::GeneralRef(r) => {
                if let Some((top, _)) = stack.last_mut() {
                    let c = resolve_reference(&r, &top.qname())?;
                    top.append_text(c.encode_utf8(&mut [0u8; 4]));
                } else {
                    return Err(XmlError::NotWellFormed(format!(
                        "reference outside <{}>",
                        outer()
                    )));
                }
                None
            }
            Event::Comment(_) | Event::PI(_) | Event::Decl(_) | Event::DocType(_) => {
                // The XMPP stream scanner refuses these first; kept for defence in depth and
                // for stored fragments.
                return Err(XmlError::RestrictedXml(format!(
                    "markup other than elements and text in <{}>",
                    outer()
                )));
            }
            Event::Eof => {
                return Err(XmlError::NotWellFormed(format!(
                    "<{}> ends before it is closed",
                    outer()
                )));
            }
        };
        if let Some(el) = done {
            if reader.buffer_position() != s.len() as u64 {
                return Err(XmlError::NotWellFormed(format!(
                    "data after the end of <{}>",
                    outer()
                )));
            }
            return Ok(el);
        }
    }
}

/// Appends fragment text to the open element; there is none outside it.
fn fragment_text(
    stack: &mut [(Element, usize)],
    text: &str,
    outer: &dyn Fn() -> String,
) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some((top, _)) => {
            top.append_text(text);
            Ok(())
        }
        None => Err(XmlError::NotWellFormed(format!(
            "text outside <{}>",
            outer()
        ))),
    }
}

/// Attaches a closed element to its parent, or returns it if it is the outermost.
fn attach(stack: &mut [(Element, usize)], el: Element) -> Option<Element> {
    match stack.last_mut() {
        Some((parent, _)) => {
            parent.children.push(Node::Element(el));
            None
        }
        None => Some(el),
    }
}

/// Creates the element for a start tag at nesting `depth` (0 for the outermost), pushing its
/// namespace declarations onto `bindings`. `document` also refuses namespace names that
/// need escaping (no namespace URI does, and our document formats have always refused them).
fn open<S: AsRef<str>>(
    start: &BytesStart<'_>,
    scope: &[(S, S)],
    bindings: &mut Bindings,
    depth: usize,
    limits: &Limits,
    document: bool,
) -> Result<Element, XmlError> {
    let raw = start.name().0;
    if depth >= limits.max_depth {
        return Err(XmlError::TooDeep {
            element: raw.to_owned(),
            max: limits.max_depth,
        });
    }
    let mut attrs = Vec::new();
    let prefixed = read_attributes(start, raw, bindings, &mut attrs, document)?;
    let (prefix, local) = split_qname(raw, "element")?;
    if prefix == Some("xmlns") {
        // XML Namespaces 1.0 §3: no element may have the prefix xmlns.
        return Err(XmlError::NotWellFormed(format!(
            "reserved prefix 'xmlns' on <{raw}>"
        )));
    }
    let ns = resolve(prefix, bindings, scope).ok_or_else(|| {
        XmlError::BadNamespacePrefix(format!(
            "undeclared namespace prefix '{}' on <{raw}>",
            prefix.unwrap_or_default()
        ))
    })?;
    let ns = ns.to_owned();
    if prefixed > 0 {
        resolve_attributes(&mut attrs, raw, bindings, scope)?;
    }
    Ok(Element {
        name: local.to_owned(),
        ns,
        prefix: prefix.map(Box::from),
        attrs,
        children: Vec::new(),
    })
}

/// Splits the attributes of `start` into namespace declarations (appended to `bindings`,
/// checked against XML Namespaces 1.0 §3) and ordinary attributes (appended to `attrs`,
/// unescaped and normalised, their namespaces not yet resolved: see
/// [`resolve_attributes`]). `element` names the element in messages; `document` refuses
/// namespace names that need escaping. Returns the number of prefixed attributes other than
/// `xml:*` (those [`resolve_attributes`] has to resolve).
pub(crate) fn read_attributes(
    start: &BytesStart<'_>,
    element: &str,
    bindings: &mut Bindings,
    attrs: &mut Vec<Attr>,
    document: bool,
) -> Result<usize, XmlError> {
    let mark = bindings.len();
    let mut prefixed = 0;
    let mut iter = start.attributes();
    // Duplicates are checked below without the iterator's per-element allocation.
    iter.with_checks(false);
    for attr in iter {
        let attr = attr.map_err(|e| {
            XmlError::NotWellFormed(format!("malformed attribute in <{element}>: {e}"))
        })?;
        let key = attr.key.0;
        let declared = if key == "xmlns" {
            Some("")
        } else {
            key.strip_prefix("xmlns:")
        };
        if declared.is_some()
            && document
            && attr.value.contains(['&', '<', '>', '"', '\t', '\n', '\r'])
        {
            return Err(XmlError::NotWellFormed(format!(
                "unsupported namespace name in '{key}' of <{element}>"
            )));
        }
        let value = attr_value(&attr, element)?;
        if let Some(prefix) = declared {
            if key != "xmlns" && prefix.is_empty() {
                return Err(XmlError::NotWellFormed(format!(
                    "invalid attribute name '{key}' in <{element}>"
                )));
            }
            if bindings[mark..].iter().any(|(p, _)| p == prefix) {
                return Err(XmlError::NotWellFormed(format!(
                    "duplicate attribute '{key}' in <{element}>"
                )));
            }
            check_binding(prefix, &value, element)?;
            bindings.push((prefix.to_owned(), value.into_owned()));
        } else {
            // `xml:*` is bound everywhere (XML Namespaces 1.0 §3): nothing to resolve.
            if split_qname(key, "attribute")?.0.is_some_and(|p| p != "xml") {
                prefixed += 1;
            }
            if attrs.iter().any(|a| *a.name == *key) {
                return Err(XmlError::NotWellFormed(format!(
                    "duplicate attribute '{key}' in <{element}>"
                )));
            }
            attrs.push(Attr::new(key, value));
        }
    }
    Ok(prefixed)
}

/// Resolves the prefixes of `attrs` against the bindings in scope (an attribute without a
/// prefix is in no namespace, XML Namespaces 1.0 §6.2) and refuses two attributes with the
/// same expanded name (§6.3).
pub(crate) fn resolve_attributes<S: AsRef<str>>(
    attrs: &mut [Attr],
    element: &str,
    bindings: &[(String, String)],
    scope: &[(S, S)],
) -> Result<(), XmlError> {
    let mut namespaced = 0;
    for attr in attrs.iter_mut() {
        let Some(prefix) = attr.prefix() else {
            continue;
        };
        let Some(ns) = resolve(Some(prefix), bindings, scope) else {
            return Err(XmlError::BadNamespacePrefix(format!(
                "undeclared namespace prefix '{prefix}' on attribute '{}' of <{element}>",
                attr.name
            )));
        };
        if prefix != "xml" {
            attr.ns = Some(Box::from(ns));
            namespaced += 1;
        }
    }
    if namespaced > 1 {
        for (i, a) in attrs.iter().enumerate() {
            let Some(ns) = a.ns.as_deref() else {
                continue;
            };
            if let Some(b) = attrs[i + 1..]
                .iter()
                .find(|b| b.ns.as_deref() == Some(ns) && b.local_name() == a.local_name())
            {
                return Err(XmlError::NotWellFormed(format!(
                    "attributes '{}' and '{}' of <{element}> are both {{{ns}}}{}",
                    a.name,
                    b.name,
                    a.local_name()
                )));
            }
        }
    }
    Ok(())
}

/// Unescapes and normalises an attribute value (XML 1.0 §3.3.3).
fn attr_value<'a>(attr: &Attribute<'a>, element: &str) -> Result<Cow<'a, str>, XmlError> {
    let key = attr.key.0;
    if !attr.value.contains(['&', '\t', '\n', '\r']) {
        return Ok(attr.value.clone());
    }
    let value = attr
        .normalized_value(XmlVersion::Implicit1_0)
        .map_err(|e| match e {
            quick_xml::Error::Escape(EscapeError::UnrecognizedEntity(_, name)) => {
                XmlError::Entity {
                    name,
                    element: element.to_owned(),
                    attribute: Some(key.to_owned()),
                }
            }
            e => XmlError::NotWellFormed(format!("attribute '{key}' of <{element}>: {e}")),
        })?;
    if let Some(c) = value.chars().find(|&c| !is_xml_char(c)) {
        return Err(XmlError::NotWellFormed(format!(
            "illegal character U+{:04X} in attribute '{key}' of <{element}>",
            u32::from(c)
        )));
    }
    Ok(value)
}

/// Checks a namespace declaration against XML Namespaces 1.0 §3.
fn check_binding(prefix: &str, uri: &str, element: &str) -> Result<(), XmlError> {
    let bad = |why: &str| XmlError::NotWellFormed(format!("{why} in <{element}>"));
    if uri == XMLNS_NS {
        return Err(bad("the xmlns namespace cannot be declared"));
    }
    if prefix.is_empty() {
        if uri == XML_NS {
            return Err(bad("the xml namespace cannot be the default namespace"));
        }
        return Ok(());
    }
    if prefix.contains(':') || !prefix.as_bytes().first().is_some_and(|&b| is_name_start(b)) {
        return Err(bad(&format!("invalid namespace prefix '{prefix}'")));
    }
    if prefix == "xmlns" {
        return Err(bad("the xmlns prefix cannot be declared"));
    }
    if (prefix == "xml") != (uri == XML_NS) {
        return Err(bad(
            "the xml prefix must be bound to the xml namespace, and only it",
        ));
    }
    if uri.is_empty() {
        return Err(bad(&format!(
            "prefix '{prefix}' bound to an empty namespace"
        )));
    }
    Ok(())
}

/// Splits a qualified name into prefix and local part (XML Namespaces 1.0 §4).
pub(crate) fn split_qname<'a>(
    qname: &'a str,
    what: &str,
) -> Result<(Option<&'a str>, &'a str), XmlError> {
    // A byte scan: names are short, and ':' is ASCII.
    let (prefix, local) = match qname.bytes().position(|b| b == b':') {
        Some(i) => (Some(&qname[..i]), &qname[i + 1..]),
        None => (None, qname),
    };
    let valid = |n: &str| {
        let b = n.as_bytes();
        !b.is_empty() && is_name_start(b[0]) && b.iter().all(|&c| is_name_byte(c))
    };
    if !prefix.is_none_or(valid) || !valid(local) {
        return Err(XmlError::NotWellFormed(format!(
            "invalid {what} name '{qname}'"
        )));
    }
    Ok((prefix, local))
}

/// Resolves an element prefix (`None` = default namespace) to a namespace URI, searching the
/// declarations of the input first, then `scope`. The default namespace resolves to `""` when
/// none is declared.
pub(crate) fn resolve<'a, S: AsRef<str>>(
    prefix: Option<&str>,
    bindings: &'a [(String, String)],
    scope: &'a [(S, S)],
) -> Option<&'a str> {
    match prefix {
        None => Some(lookup("", bindings, scope).unwrap_or("")),
        Some("xml") => Some(XML_NS),
        Some(p) => lookup(p, bindings, scope),
    }
}

/// Innermost binding of `prefix`, searching the input's declarations first.
pub(crate) fn lookup<'a, S: AsRef<str>>(
    prefix: &str,
    bindings: &'a [(String, String)],
    scope: &'a [(S, S)],
) -> Option<&'a str> {
    bindings
        .iter()
        .rev()
        .find(|(p, _)| p == prefix)
        .map(|(_, uri)| uri.as_str())
        .or_else(|| {
            scope
                .iter()
                .rev()
                .find(|(p, _)| p.as_ref() == prefix)
                .map(|(_, uri)| uri.as_ref())
        })
}

/// Resolves `&name;` in character data: the five predefined entities and character
/// references to XML characters only (RFC 6120 §11.1, XML 1.0 §4.1).
fn resolve_reference(r: &BytesRef<'_>, element: &str) -> Result<char, XmlError> {
    let name: &str = r;
    let c = match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "apos" => '\'',
        "quot" => '"',
        _ if r.is_char_ref() => match r.resolve_char_ref() {
            Ok(Some(c)) if is_xml_char(c) => c,
            _ => {
                return Err(XmlError::NotWellFormed(format!(
                    "invalid character reference &{name}; in <{element}>"
                )));
            }
        },
        _ => {
            if split_qname(name, "entity").is_err() {
                return Err(XmlError::NotWellFormed(format!(
                    "malformed reference &{name}; in <{element}>"
                )));
            }
            return Err(XmlError::Entity {
                name: name.to_owned(),
                element: element.to_owned(),
                attribute: None,
            });
        }
    };
    Ok(c)
}
