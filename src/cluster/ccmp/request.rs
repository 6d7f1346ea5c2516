//! The CCMP request (RFC 6503 §5.1).

use super::read::is_ccmp;
use super::read::{parse_body, read_conf_user_id, read_elements, read_extension_name, single};
use super::write::{write_close, write_conf_user_id, write_extended, write_open};
use super::{CcmpError, Element};

/// A CCMP request (RFC 6503 §5.1) of type `ccmp-extended-request-message-type` (§5.3.11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CcmpRequest {
    /// `<confUserID>`: the sender, `xcon-userid:<node>@<domain>` (see [`conf_user_id`](super::conf_user_id)).
    pub conf_user_id: String,
    /// `<extensionName>`: one of [`EXTENSIONS`](super::EXTENSIONS).
    pub extension: String,
    /// The payload elements, in document order.
    pub elements: Vec<Element>,
}

impl CcmpRequest {
    /// A request from `conf_user_id` for `extension` carrying `elements`.
    pub fn new(
        conf_user_id: impl Into<String>,
        extension: impl Into<String>,
        elements: Vec<Element>,
    ) -> CcmpRequest {
        CcmpRequest {
            conf_user_id: conf_user_id.into(),
            extension: extension.into(),
            elements,
        }
    }

    /// Serialises the request: an XML declaration, then `<ccmp:ccmpRequest>` with the inner
    /// unqualified `<ccmpRequest xsi:type="ccmp:ccmp-extended-request-message-type">`.
    pub fn to_xml(&self) -> String {
        let mut out = String::with_capacity(512 + 96 * self.elements.len());
        write_open("ccmpRequest", "request", &mut out);
        write_conf_user_id(&self.conf_user_id, &mut out);
        write_extended("extendedRequest", &self.extension, &self.elements, &mut out);
        write_close("ccmpRequest", &mut out);
        out
    }

    /// Parses a request body of at most [`MAX_BODY_BYTES`](super::MAX_BODY_BYTES).
    pub fn parse(body: &[u8]) -> Result<CcmpRequest, CcmpError> {
        let root = parse_body(body, "ccmpRequest")?;
        let inner = single(&root, is_ccmp, "ccmpRequest", "ccmpRequest")?.ok_or(
            CcmpError::MissingElement {
                element: "ccmpRequest",
                parent: "ccmpRequest",
            },
        )?;
        let conf_user_id = read_conf_user_id(inner, "ccmpRequest")?;
        let ext = single(inner, is_ccmp, "extendedRequest", "ccmpRequest")?.ok_or(
            CcmpError::MissingElement {
                element: "extendedRequest",
                parent: "ccmpRequest",
            },
        )?;
        let extension =
            read_extension_name(ext, "extendedRequest")?.ok_or(CcmpError::MissingExtensionName)?;
        let elements = read_elements(ext)?;
        Ok(CcmpRequest {
            conf_user_id,
            extension,
            elements,
        })
    }
}
