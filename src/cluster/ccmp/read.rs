//! Reading CCMP bodies: [`parse_body`] parses a body into the crate's one tree and checks its
//! root; typed readers over [`XmlElement`] map the envelope and the payload elements.

use std::str::FromStr;

use base64::Engine as _;

use super::{
    CcmpError, Element, LoadLevel, Protocol, SvrInfo, SysUser, CCMP_NS, EXTENSIONS, LOAD_NS,
    MAX_BODY_BYTES, MAX_DEPTH,
};
use crate::xml::{parse_document, Element as XmlElement, Limits};

/// Checks the size and encoding of `body`, parses it and checks that the root is
/// `<{root}>` in [`CCMP_NS`].
pub(super) fn parse_body(body: &[u8], root: &'static str) -> Result<XmlElement, CcmpError> {
    let limits = Limits {
        max_bytes: MAX_BODY_BYTES,
        max_depth: MAX_DEPTH,
    };
    let el = parse_document(body, &limits)?;
    if el.ns != CCMP_NS || el.name != root {
        return Err(CcmpError::WrongRoot {
            name: el.name,
            ns: el.ns,
            expected: root,
        });
    }
    Ok(el)
}

/// Inner CCMP elements may be unqualified (as the schema says) or qualified.
pub(super) fn is_ccmp(ns: &str) -> bool {
    ns.is_empty() || ns == CCMP_NS
}

/// Payload elements are in [`LOAD_NS`].
fn is_load(ns: &str) -> bool {
    ns == LOAD_NS
}

/// The child `<{local}>` of `parent` whose namespace satisfies `ns`, if any; an error when
/// there are several.
pub(super) fn single<'a>(
    parent: &'a XmlElement,
    ns: fn(&str) -> bool,
    local: &'static str,
    parent_name: &'static str,
) -> Result<Option<&'a XmlElement>, CcmpError> {
    let mut found = parent.elements().filter(|e| ns(&e.ns) && e.name == local);
    let first = found.next();
    if found.next().is_some() {
        return Err(CcmpError::Duplicate {
            element: local,
            parent: parent_name,
        });
    }
    Ok(first)
}

/// The required child `<load:{local}>` of `parent`.
fn required_load<'a>(
    parent: &'a XmlElement,
    local: &'static str,
    parent_name: &'static str,
) -> Result<&'a XmlElement, CcmpError> {
    single(parent, is_load, local, parent_name)?.ok_or(CcmpError::MissingElement {
        element: local,
        parent: parent_name,
    })
}

/// Reads the non-empty, trimmed `<confUserID>`.
pub(super) fn read_conf_user_id(
    inner: &XmlElement,
    parent: &'static str,
) -> Result<String, CcmpError> {
    single(inner, is_ccmp, "confUserID", parent)?
        .map(|e| e.text_ref().trim().to_owned())
        .filter(|id| !id.is_empty())
        .ok_or(CcmpError::MissingConfUserId)
}

/// Reads `<extensionName>`: `None` when absent or empty, an error when not in [`EXTENSIONS`].
pub(super) fn read_extension_name(
    ext: &XmlElement,
    parent: &'static str,
) -> Result<Option<String>, CcmpError> {
    let Some(name) = single(ext, is_ccmp, "extensionName", parent)? else {
        return Ok(None);
    };
    let name = name.text_ref().trim().to_owned();
    if name.is_empty() {
        return Ok(None);
    }
    if !EXTENSIONS.contains(&name.as_str()) {
        return Err(CcmpError::UnknownExtension(name));
    }
    Ok(Some(name))
}

/// Reads the payload elements of an `extendedRequest` / `extendedResponse`, skipping
/// elements of other namespaces.
pub(super) fn read_elements(ext: &XmlElement) -> Result<Vec<Element>, CcmpError> {
    ext.elements()
        .filter(|e| is_load(&e.ns))
        .map(read_element)
        .collect()
}

/// Maps one element of [`LOAD_NS`].
fn read_element(el: &XmlElement) -> Result<Element, CcmpError> {
    match el.name.as_str() {
        "pressvr-load" => {
            only_children(el, &["curr-load-level"])?;
            let levels = load_children(el, "curr-load-level")
                .map(|l| {
                    Ok(LoadLevel {
                        svr_id: id_attr(l, "svr-id")?,
                        level: number_text(l)?,
                        users: number_attr(l, "users")?,
                        resources: number_attr(l, "resources")?,
                        version: number_attr(l, "version")?,
                    })
                })
                .collect::<Result<_, CcmpError>>()?;
            Ok(Element::PressvrLoad(levels))
        }
        "pres-sys-users" => {
            only_children(el, &["user", "gone"])?;
            let full = match el.attr("full").map(str::trim) {
                None | Some("true" | "1") => true,
                Some("false" | "0") => false,
                Some(other) => return Err(bad_attribute(el, "full", other)),
            };
            let present = load_children(el, "user")
                .map(|u| {
                    let protocol = match u.attr("protocol") {
                        None => {
                            return Err(CcmpError::MissingAttribute {
                                element: u.qname().into_owned(),
                                attribute: "protocol",
                            })
                        }
                        Some(p) => {
                            Protocol::from_name(p).ok_or_else(|| bad_attribute(u, "protocol", p))?
                        }
                    };
                    Ok(SysUser {
                        user: id_attr(u, "id")?,
                        protocol,
                        resources: number_attr(u, "resources")?,
                    })
                })
                .collect::<Result<_, CcmpError>>()?;
            let gone = load_children(el, "gone")
                .map(|g| id_attr(g, "id"))
                .collect::<Result<_, CcmpError>>()?;
            Ok(Element::PresSysUsers {
                svr_id: id_attr(el, "svr-id")?,
                full,
                present,
                gone,
            })
        }
        "redirection-usr-addr" => {
            const NAME: &str = "redirection-usr-addr";
            only_children(
                el,
                &[
                    "user-addr",
                    "protocol",
                    "resource-number",
                    "user-record",
                    "moved-from",
                ],
            )?;
            let user = required_text(el, "user-addr", NAME)?;
            let protocol_el = required_load(el, "protocol", NAME)?;
            let protocol_text = protocol_el.text();
            let protocol = Protocol::from_name(&protocol_text)
                .ok_or_else(|| bad_value(protocol_el, protocol_text.trim()))?;
            let resources = match single(el, is_load, "resource-number", NAME)? {
                Some(r) => number_text(r)?,
                None => 0,
            };
            let record = single(el, is_load, "user-record", NAME)?
                .map(record_text)
                .transpose()?;
            let moved_from = single(el, is_load, "moved-from", NAME)?
                .map(non_empty_text)
                .transpose()?;
            Ok(Element::RedirectionUsrAddr {
                user,
                protocol,
                resources,
                record,
                moved_from,
            })
        }
        "svr-pool" => {
            only_children(el, &["svr-uri"])?;
            let uris = load_children(el, "svr-uri")
                .map(non_empty_text)
                .collect::<Result<_, CcmpError>>()?;
            Ok(Element::SvrPool(uris))
        }
        "actv-svr-nums" => {
            only_children(el, &[])?;
            Ok(Element::ActvSvrNums(number_text(el)?))
        }
        "max-load" => {
            only_children(el, &[])?;
            Ok(Element::MaxLoad(number_text(el)?))
        }
        "min-load" => {
            only_children(el, &[])?;
            Ok(Element::MinLoad(number_text(el)?))
        }
        "user-update" => {
            const NAME: &str = "user-update";
            only_children(el, &["user-addr", "user-record"])?;
            Ok(Element::UserUpdate {
                user: required_text(el, "user-addr", NAME)?,
                record: record_text(required_load(el, "user-record", NAME)?)?,
            })
        }
        "migrate-user" => {
            const NAME: &str = "migrate-user";
            only_children(el, &["user-addr", "svr-id"])?;
            Ok(Element::MigrateUser {
                user: required_text(el, "user-addr", NAME)?,
                svr_id: required_text(el, "svr-id", NAME)?,
            })
        }
        "drain" => {
            only_children(el, &[])?;
            Ok(Element::Drain {
                svr_id: id_attr(el, "svr-id")?,
            })
        }
        "svr-info" => {
            only_children(el, &[])?;
            Ok(Element::SvrInfo(SvrInfo {
                svr_id: id_attr(el, "svr-id")?,
                sip: id_attr(el, "sip")?,
                xmpp: id_attr(el, "xmpp")?,
                admin: el.attr("admin").map(str::to_owned),
            }))
        }
        other => Err(CcmpError::UnknownExtension(other.to_owned())),
    }
}

/// Refuses a child of `el` in [`LOAD_NS`] whose local name is not in `allowed`; children
/// in other namespaces are ignored.
fn only_children(el: &XmlElement, allowed: &[&str]) -> Result<(), CcmpError> {
    match el
        .elements()
        .find(|c| is_load(&c.ns) && !allowed.contains(&c.name.as_str()))
    {
        Some(c) => Err(CcmpError::UnknownExtension(c.name.clone())),
        None => Ok(()),
    }
}

/// The children `<load:{local}>` of `el`.
fn load_children<'a>(el: &'a XmlElement, local: &'a str) -> impl Iterator<Item = &'a XmlElement> {
    el.elements()
        .filter(move |c| is_load(&c.ns) && c.name == local)
}

/// The required, non-empty attribute `name` of `el`, as written.
fn id_attr(el: &XmlElement, name: &'static str) -> Result<String, CcmpError> {
    match el.attr(name) {
        None => Err(CcmpError::MissingAttribute {
            element: el.qname().into_owned(),
            attribute: name,
        }),
        Some(v) if v.trim().is_empty() => Err(bad_attribute(el, name, v)),
        Some(v) => Ok(v.to_owned()),
    }
}

/// The numeric attribute `name` of `el` (surrounding whitespace ignored); zero when absent.
fn number_attr<T: FromStr + Default>(el: &XmlElement, name: &'static str) -> Result<T, CcmpError> {
    match el.attr(name) {
        None => Ok(T::default()),
        Some(v) => v.trim().parse().map_err(|_| bad_attribute(el, name, v)),
    }
}

/// The text of `el` as a number (surrounding whitespace ignored).
fn number_text<T: FromStr>(el: &XmlElement) -> Result<T, CcmpError> {
    let text = el.text_ref();
    let text = text.trim();
    text.parse().map_err(|_| bad_value(el, text))
}

/// The trimmed text of `el`, which must not be empty.
fn non_empty_text(el: &XmlElement) -> Result<String, CcmpError> {
    let text = el.text_ref();
    let text = text.trim();
    if text.is_empty() {
        return Err(bad_value(el, text));
    }
    Ok(text.to_owned())
}

/// The trimmed, non-empty text of the required child `<load:{local}>` of `el`.
fn required_text(
    el: &XmlElement,
    local: &'static str,
    parent_name: &'static str,
) -> Result<String, CcmpError> {
    non_empty_text(required_load(el, local, parent_name)?)
}

/// The base64 text of a `<load:user-record>` (whitespace anywhere ignored, so that a
/// line-wrapped value is accepted).
fn record_text(el: &XmlElement) -> Result<Vec<u8>, CcmpError> {
    let mut text = el.text();
    text.retain(|c| !c.is_ascii_whitespace());
    base64::engine::general_purpose::STANDARD
        .decode(&text)
        .map_err(|_| bad_value(el, &text))
}

/// A [`CcmpError::BadValue`] for the text of `el`.
pub(super) fn bad_value(el: &XmlElement, value: &str) -> CcmpError {
    CcmpError::BadValue {
        element: el.qname().into_owned(),
        value: excerpt(value),
    }
}

/// A [`CcmpError::BadAttribute`] for the attribute `name` of `el`.
fn bad_attribute(el: &XmlElement, name: &'static str, value: &str) -> CcmpError {
    CcmpError::BadAttribute {
        element: el.qname().into_owned(),
        attribute: name,
        value: excerpt(value),
    }
}

/// The first 64 characters of `value`, so that an error never carries a whole body.
fn excerpt(value: &str) -> String {
    value.chars().take(64).collect()
}
