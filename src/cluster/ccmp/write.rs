//! Writing CCMP bodies: the RFC 6503 envelope with its unqualified inner elements, and the
//! payload elements in the `load` prefix, with the crate's one escaper (double quotes).

use std::fmt::Write as _;

use base64::Engine as _;

use super::{Element, CCMP_NS, LOAD_NS, XSI_NS};
use crate::xml::{escape_attr_in, escape_text, Quote};

/// Writes the XML declaration, the root `<ccmp:{name}>` with its namespace declarations and
/// the inner `<{name}>` with its `xsi:type` (`kind` is `request` or `response`).
pub(super) fn write_open(name: &str, kind: &str, out: &mut String) {
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ccmp:");
    out.push_str(name);
    out.push_str(" xmlns:ccmp=\"");
    out.push_str(CCMP_NS);
    out.push_str("\" xmlns:xsi=\"");
    out.push_str(XSI_NS);
    out.push_str("\" xmlns:load=\"");
    out.push_str(LOAD_NS);
    out.push_str("\"><");
    out.push_str(name);
    out.push_str(" xsi:type=\"ccmp:ccmp-extended-");
    out.push_str(kind);
    out.push_str("-message-type\">");
}

/// Closes the inner and the root element opened by [`write_open`].
pub(super) fn write_close(name: &str, out: &mut String) {
    out.push_str("</");
    out.push_str(name);
    out.push_str("></ccmp:");
    out.push_str(name);
    out.push('>');
}

/// Writes `<confUserID>`.
pub(super) fn write_conf_user_id(conf_user_id: &str, out: &mut String) {
    out.push_str("<confUserID>");
    escape_text(conf_user_id, out);
    out.push_str("</confUserID>");
}

/// Writes `<ccmp:{tag}>` (a global element of the RFC 6503 schema, hence qualified) with its
/// unqualified `<extensionName>` and the payload elements.
pub(super) fn write_extended(tag: &str, extension: &str, elements: &[Element], out: &mut String) {
    out.push_str("<ccmp:");
    out.push_str(tag);
    out.push_str("><extensionName>");
    escape_text(extension, out);
    out.push_str("</extensionName>");
    for element in elements {
        write_element(element, out);
    }
    out.push_str("</ccmp:");
    out.push_str(tag);
    out.push('>');
}

/// Writes one payload element in the `load` prefix.
fn write_element(element: &Element, out: &mut String) {
    let name = element.name();
    match element {
        Element::PressvrLoad(levels) => {
            open_tag(name, out);
            for l in levels {
                out.push_str("<load:curr-load-level svr-id=\"");
                escape_attr_in(&l.svr_id, Quote::Double, out);
                // Writing to a String cannot fail.
                let _ = write!(
                    out,
                    "\" users=\"{}\" resources=\"{}\" version=\"{}\">{}</load:curr-load-level>",
                    l.users, l.resources, l.version, l.level
                );
            }
            close_tag(name, out);
        }
        Element::PresSysUsers {
            svr_id,
            full,
            present,
            gone,
        } => {
            out.push_str("<load:pres-sys-users svr-id=\"");
            escape_attr_in(svr_id, Quote::Double, out);
            out.push_str(if *full {
                "\" full=\"true\">"
            } else {
                "\" full=\"false\">"
            });
            for u in present {
                out.push_str("<load:user id=\"");
                escape_attr_in(&u.user, Quote::Double, out);
                let _ = write!(
                    out,
                    "\" protocol=\"{}\" resources=\"{}\"/>",
                    u.protocol.as_str(),
                    u.resources
                );
            }
            for g in gone {
                out.push_str("<load:gone id=\"");
                escape_attr_in(g, Quote::Double, out);
                out.push_str("\"/>");
            }
            close_tag(name, out);
        }
        Element::RedirectionUsrAddr {
            user,
            protocol,
            resources,
            record,
            moved_from,
        } => {
            open_tag(name, out);
            text_element("user-addr", user, out);
            text_element("protocol", protocol.as_str(), out);
            text_element("resource-number", &resources.to_string(), out);
            if let Some(record) = record {
                record_element(record, out);
            }
            if let Some(from) = moved_from {
                text_element("moved-from", from, out);
            }
            close_tag(name, out);
        }
        Element::SvrPool(uris) => {
            open_tag(name, out);
            for uri in uris {
                text_element("svr-uri", uri, out);
            }
            close_tag(name, out);
        }
        Element::ActvSvrNums(n) => text_element(name, &n.to_string(), out),
        Element::MaxLoad(n) | Element::MinLoad(n) => text_element(name, &n.to_string(), out),
        Element::UserUpdate { user, record } => {
            open_tag(name, out);
            text_element("user-addr", user, out);
            record_element(record, out);
            close_tag(name, out);
        }
        Element::MigrateUser { user, svr_id } => {
            open_tag(name, out);
            text_element("user-addr", user, out);
            text_element("svr-id", svr_id, out);
            close_tag(name, out);
        }
        Element::Drain { svr_id } => {
            out.push_str("<load:drain svr-id=\"");
            escape_attr_in(svr_id, Quote::Double, out);
            out.push_str("\"/>");
        }
        Element::SvrInfo(info) => {
            out.push_str("<load:svr-info svr-id=\"");
            escape_attr_in(&info.svr_id, Quote::Double, out);
            out.push_str("\" sip=\"");
            escape_attr_in(&info.sip, Quote::Double, out);
            out.push_str("\" xmpp=\"");
            escape_attr_in(&info.xmpp, Quote::Double, out);
            out.push('"');
            if let Some(admin) = &info.admin {
                out.push_str(" admin=\"");
                escape_attr_in(admin, Quote::Double, out);
                out.push('"');
            }
            out.push_str("/>");
        }
    }
}

/// Writes `<load:{name}>`.
fn open_tag(name: &str, out: &mut String) {
    out.push_str("<load:");
    out.push_str(name);
    out.push('>');
}

/// Writes `</load:{name}>`.
fn close_tag(name: &str, out: &mut String) {
    out.push_str("</load:");
    out.push_str(name);
    out.push('>');
}

/// Writes `<load:{name}>text</load:{name}>` with the text escaped.
fn text_element(name: &str, text: &str, out: &mut String) {
    open_tag(name, out);
    escape_text(text, out);
    close_tag(name, out);
}

/// Writes `<load:user-record>` with the record in standard base64.
fn record_element(record: &[u8], out: &mut String) {
    open_tag("user-record", out);
    base64::engine::general_purpose::STANDARD.encode_string(record, out);
    close_tag("user-record", out);
}
