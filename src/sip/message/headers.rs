//! Header names (RFC 3261 §7.3, §20; compact forms §7.3.3) and the rsip container that holds
//! the header lines of a message, values verbatim.

use rsip::headers::UntypedHeader;

/// Compact forms (RFC 3261 §7.3.3 and the IANA registry: RFC 3841, 3892, 4028, 4474, 6665).
fn compact_form(c: u8) -> Option<&'static str> {
    Some(match c.to_ascii_lowercase() {
        b'a' => "Accept-Contact",
        b'b' => "Referred-By",
        b'c' => "Content-Type",
        b'd' => "Request-Disposition",
        b'e' => "Content-Encoding",
        b'f' => "From",
        b'i' => "Call-ID",
        b'j' => "Reject-Contact",
        b'k' => "Supported",
        b'l' => "Content-Length",
        b'm' => "Contact",
        b'n' => "Identity-Info",
        b'o' => "Event",
        b'r' => "Refer-To",
        b's' => "Subject",
        b't' => "To",
        b'u' => "Allow-Events",
        b'v' => "Via",
        b'x' => "Session-Expires",
        b'y' => "Identity",
        _ => return None,
    })
}

/// Canonical spellings of the header names we know; others keep their spelling.
#[rustfmt::skip]
const CANONICAL: &[&str] = &[
    "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Max-Forwards", "Content-Length",
    "Content-Type", "Expires", "Event", "Subscription-State", "Accept", "Allow", "Allow-Events",
    "Supported", "Require", "Proxy-Require", "Unsupported", "Route", "Record-Route", "User-Agent",
    "Server", "Authorization", "Proxy-Authorization", "WWW-Authenticate", "Proxy-Authenticate",
    "Authentication-Info", "Date", "Subject", "Min-Expires", "Retry-After", "Timestamp", "Warning",
    "Accept-Encoding", "Accept-Language", "Accept-Contact", "Alert-Info", "Call-Info",
    "Content-Disposition", "Content-Encoding", "Content-Language", "Error-Info", "In-Reply-To",
    "MIME-Version", "Organization", "Priority", "Reply-To", "Refer-To", "Referred-By",
    "Reject-Contact", "Request-Disposition", "Session-Expires", "Identity", "Identity-Info",
    "SIP-ETag", "SIP-If-Match",
];

/// Canonical name for a full or compact header name, if we know it.
pub(super) fn canonical(name: &str) -> Option<&'static str> {
    if let [c] = name.as_bytes() {
        return compact_form(*c);
    }
    CANONICAL
        .iter()
        .copied()
        .find(|c| c.eq_ignore_ascii_case(name))
}

macro_rules! rsip_headers {
    ($($name:literal => $variant:ident),* $(,)?) => {
        /// Wraps a value in the rsip variant for `name` (canonical spelling expected), or `Other`.
        pub(super) fn to_rsip_header(name: &str, value: String) -> rsip::Header {
            $(
                if name.eq_ignore_ascii_case($name) {
                    return rsip::Header::$variant(rsip::headers::$variant::new(value));
                }
            )*
            rsip::Header::Other(name.to_owned(), value)
        }

        /// Name and value of an rsip header.
        fn header_parts(h: &rsip::Header) -> (&str, &str) {
            match h {
                $( rsip::Header::$variant(v) => ($name, v.value()), )*
                rsip::Header::Other(name, value) => (name.as_str(), value.as_str()),
            }
        }
    };
}

rsip_headers! {
    "Via" => Via, "From" => From, "To" => To, "Call-ID" => CallId, "CSeq" => CSeq,
    "Contact" => Contact, "Max-Forwards" => MaxForwards, "Content-Length" => ContentLength,
    "Content-Type" => ContentType, "Expires" => Expires, "Event" => Event,
    "Subscription-State" => SubscriptionState, "Accept" => Accept, "Allow" => Allow,
    "Supported" => Supported, "Require" => Require, "Proxy-Require" => ProxyRequire,
    "Unsupported" => Unsupported, "Route" => Route, "Record-Route" => RecordRoute,
    "User-Agent" => UserAgent, "Server" => Server, "Authorization" => Authorization,
    "Proxy-Authorization" => ProxyAuthorization, "WWW-Authenticate" => WwwAuthenticate,
    "Proxy-Authenticate" => ProxyAuthenticate, "Authentication-Info" => AuthenticationInfo,
    "Date" => Date, "Subject" => Subject, "Min-Expires" => MinExpires,
    "Retry-After" => RetryAfter, "Timestamp" => Timestamp, "Warning" => Warning,
    "Accept-Encoding" => AcceptEncoding, "Accept-Language" => AcceptLanguage,
    "Alert-Info" => AlertInfo, "Call-Info" => CallInfo,
    "Content-Disposition" => ContentDisposition, "Content-Encoding" => ContentEncoding,
    "Content-Language" => ContentLanguage, "Error-Info" => ErrorInfo,
    "In-Reply-To" => InReplyTo, "MIME-Version" => MimeVersion, "Organization" => Organization,
    "Priority" => Priority, "Reply-To" => ReplyTo,
}

pub(super) fn lookup_name(name: &str) -> &str {
    canonical(name).unwrap_or(name)
}

pub(super) fn first_header<'a>(headers: &'a rsip::Headers, name: &str) -> Option<&'a str> {
    let name = lookup_name(name);
    headers
        .iter()
        .map(header_parts)
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

pub(super) fn all_headers<'a>(headers: &'a rsip::Headers, name: &str) -> Vec<&'a str> {
    let name = lookup_name(name);
    headers
        .iter()
        .map(header_parts)
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .collect()
}
