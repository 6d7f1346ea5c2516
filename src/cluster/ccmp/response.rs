//! The CCMP response (RFC 6503 §5.2).

use std::fmt::Write as _;

use super::read::{
    bad_value, is_ccmp, parse_body, read_conf_user_id, read_elements, read_extension_name, single,
};
use super::write::{write_close, write_conf_user_id, write_extended, write_open};
use super::{default_reason, CcmpError, Element, OK};
use crate::xml::escape_text;

/// A CCMP response (RFC 6503 §5.2) of type `ccmp-extended-response-message-type` (§5.3.11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CcmpResponse {
    /// `<confUserID>`: the responder, `xcon-userid:<node>@<domain>`.
    pub conf_user_id: String,
    /// `<response-code>` (RFC 6503 §5.4), e.g. [`OK`].
    pub code: u16,
    /// `<response-string>`, if any.
    pub reason: Option<String>,
    /// `<extensionName>`: the request's extension; may be empty in an error response to a
    /// request that could not be read.
    pub extension: String,
    /// The payload elements, in document order.
    pub elements: Vec<Element>,
}

impl CcmpResponse {
    /// A `200 success` response from `conf_user_id` for `extension` carrying `elements`.
    pub fn ok(
        conf_user_id: impl Into<String>,
        extension: impl Into<String>,
        elements: Vec<Element>,
    ) -> CcmpResponse {
        CcmpResponse {
            conf_user_id: conf_user_id.into(),
            code: OK,
            reason: default_reason(OK).map(str::to_owned),
            extension: extension.into(),
            elements,
        }
    }

    /// An error response (e.g. [`BAD_REQUEST`](super::BAD_REQUEST), [`FORBIDDEN`](super::FORBIDDEN), [`CONFLICT`](super::CONFLICT)) with the
    /// `response-string` `reason` and no payload.
    pub fn error(
        conf_user_id: impl Into<String>,
        extension: impl Into<String>,
        code: u16,
        reason: impl Into<String>,
    ) -> CcmpResponse {
        CcmpResponse {
            conf_user_id: conf_user_id.into(),
            code,
            reason: Some(reason.into()),
            extension: extension.into(),
            elements: Vec::new(),
        }
    }

    /// True for a 2xx `response-code`.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// Serialises the response: an XML declaration, then `<ccmp:ccmpResponse>` with the inner
    /// unqualified `<ccmpResponse xsi:type="ccmp:ccmp-extended-response-message-type">`.
    pub fn to_xml(&self) -> String {
        let mut out = String::with_capacity(640 + 96 * self.elements.len());
        write_open("ccmpResponse", "response", &mut out);
        write_conf_user_id(&self.conf_user_id, &mut out);
        // Writing to a String cannot fail.
        let _ = write!(out, "<response-code>{:03}</response-code>", self.code);
        if let Some(reason) = &self.reason {
            out.push_str("<response-string>");
            escape_text(reason, &mut out);
            out.push_str("</response-string>");
        }
        write_extended(
            "extendedResponse",
            &self.extension,
            &self.elements,
            &mut out,
        );
        write_close("ccmpResponse", &mut out);
        out
    }

    /// Parses a response body of at most [`MAX_BODY_BYTES`](super::MAX_BODY_BYTES). A non-2xx response may lack
    /// `extendedResponse` or have an empty `extensionName` (the responder could not read
    /// the request); its `extension` is then empty.
    pub fn parse(body: &[u8]) -> Result<CcmpResponse, CcmpError> {
        let root = parse_body(body, "ccmpResponse")?;
        let inner = single(&root, is_ccmp, "ccmpResponse", "ccmpResponse")?.ok_or(
            CcmpError::MissingElement {
                element: "ccmpResponse",
                parent: "ccmpResponse",
            },
        )?;
        let conf_user_id = read_conf_user_id(inner, "ccmpResponse")?;
        let code_el = single(inner, is_ccmp, "response-code", "ccmpResponse")?.ok_or(
            CcmpError::MissingElement {
                element: "response-code",
                parent: "ccmpResponse",
            },
        )?;
        let code_text = code_el.text();
        let code_text = code_text.trim();
        // RFC 6503 response-codeType: a positiveInteger of exactly three digits.
        let code = match code_text.parse::<u16>() {
            Ok(c) if code_text.len() == 3 && (100..=999).contains(&c) => c,
            _ => return Err(bad_value(code_el, code_text)),
        };
        let reason = single(inner, is_ccmp, "response-string", "ccmpResponse")?
            .map(|r| r.text().trim().to_owned());
        let success = (200..300).contains(&code);
        let ext = single(inner, is_ccmp, "extendedResponse", "ccmpResponse")?;
        let (extension, elements) = match ext {
            Some(ext) => match read_extension_name(ext, "extendedResponse")? {
                Some(name) => (name, read_elements(ext)?),
                None if success => return Err(CcmpError::MissingExtensionName),
                None => (String::new(), read_elements(ext)?),
            },
            None if success => {
                return Err(CcmpError::MissingElement {
                    element: "extendedResponse",
                    parent: "ccmpResponse",
                })
            }
            None => (String::new(), Vec::new()),
        };
        Ok(CcmpResponse {
            conf_user_id,
            code,
            reason,
            extension,
            elements,
        })
    }
}
