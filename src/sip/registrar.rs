//! Registrar bindings of one address-of-record: RFC 3261 §10.3 steps 6–8 (processing the
//! Contact list: expiry choice, Min-Expires, Call-ID/CSeq ordering, atomic update, the
//! 200 OK Contact list), §10.2.2 (`Contact: *` with `Expires: 0` removes everything) and
//! the Contact grammar of §20.10 / §25.1 (`name-addr` / `addr-spec`, `q`, `expires`).
//!
//! URI equality follows §19.1.4 only partly: scheme and host part compare
//! case-insensitively, user part and everything else byte for byte.

use std::time::{Duration, Instant};

use crate::sip::grammar::{
    delta_seconds, find_unquoted, is_lws, is_quoted_string, is_scheme, is_token, is_token_char,
    list_elements, split_unquoted, trim_lws, Angles, Unclosed,
};

/// One entry of a REGISTER's Contact header, reduced to what the registrar uses.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactSpec {
    /// The contact URI, without angle brackets or display name.
    pub uri: String,
    /// The `expires` Contact parameter, which overrides the Expires header.
    pub expires: Option<u32>,
    /// The `q` preference, 0.0 to 1.0.
    pub q: Option<f32>,
}

/// The Contact header(s) of a REGISTER: either `*` or a list (empty = a query).
#[derive(Debug, Clone, PartialEq)]
pub enum ContactList {
    /// `Contact: *`, only valid with `Expires: 0` (§10.2.2).
    Star,
    /// Explicit contacts; no Contact header → `Contacts(vec![])` = a query.
    Contacts(Vec<ContactSpec>),
}

/// Why a REGISTER was refused; the doc of each variant gives the status code.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum RegisterError {
    /// 400: `Contact: *` together with other Contact values.
    #[error("Contact `*` combined with other Contact values")]
    StarWithOthers,
    /// 400: `Contact: *` without `Expires: 0`.
    #[error("Contact `*` requires Expires: 0")]
    StarNeedsExpiresZero,
    /// 423 Interval Too Brief; the response carries `Min-Expires: min_expires`.
    #[error("Contact expiry below Min-Expires {min_expires}")]
    IntervalTooBrief {
        /// The value for the Min-Expires header.
        min_expires: u32,
    },
    /// 500: same Call-ID as a stored binding but CSeq not higher (§10.3 step 7).
    #[error("Call-ID/CSeq of REGISTER not newer than a stored Contact binding")]
    OutOfOrder,
    /// 400: a Contact value that does not parse.
    #[error("malformed Contact `{contact}`: {reason}")]
    BadContact {
        /// The offending Contact entry, as written.
        contact: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Parses all Contact header values of a REGISTER (comma-separated lists, quoted display names
/// containing commas, `<uri>` with params; "*" alone).
pub fn parse_contacts(values: &[&str]) -> Result<ContactList, RegisterError> {
    let mut star = false;
    let mut contacts = Vec::new();
    for value in values {
        for entry in split_entries(value)? {
            if entry == "*" {
                star = true;
            } else {
                contacts.push(parse_contact(entry)?);
            }
        }
    }
    match (star, contacts.is_empty()) {
        (true, true) => Ok(ContactList::Star),
        (true, false) => Err(RegisterError::StarWithOthers),
        (false, _) => Ok(ContactList::Contacts(contacts)),
    }
}

/// A stored binding of the address-of-record to one contact URI.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding<T> {
    /// The contact URI requests are forwarded to.
    pub uri: String,
    /// When the binding lapses unless refreshed.
    pub expires_at: Instant,
    /// The `q` preference given at registration.
    pub q: Option<f32>,
    /// Call-ID of the REGISTER that last wrote the binding.
    pub call_id: String,
    /// CSeq of the REGISTER that last wrote the binding.
    pub cseq: u32,
    /// Caller data stored with the binding (e.g. the transport source of the REGISTER).
    pub data: T,
}

/// The bindings of one address-of-record, in order of first registration.
#[derive(Debug, Clone)]
pub struct Bindings<T> {
    bindings: Vec<Binding<T>>,
}

impl<T> Default for Bindings<T> {
    fn default() -> Self {
        Bindings {
            bindings: Vec::new(),
        }
    }
}

/// What one Contact of a REGISTER does once validated.
struct Change<'a> {
    spec: &'a ContactSpec,
    expires: u32,
}

impl<T: Clone> Bindings<T> {
    /// An empty set, for an address-of-record with nothing registered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one REGISTER (§10.3 steps 6–8): per-contact expires param, else `header_expires`,
    /// else `default`; 0 removes; below `min` (and non-zero) → IntervalTooBrief; above `max` → max.
    /// `data` is stored with added/refreshed bindings (the caller keeps the transport source there).
    /// Returns the current bindings after the change.
    ///
    /// All-or-nothing (§10.3 step 7): on error no binding changes, except that bindings
    /// already expired at `now` are dropped.
    #[allow(clippy::too_many_arguments)] // one argument per REGISTER input the RFC names
    pub fn apply(
        &mut self,
        list: &ContactList,
        header_expires: Option<u32>,
        call_id: &str,
        cseq: u32,
        now: Instant,
        default: u32,
        min: u32,
        max: u32,
        data: T,
    ) -> Result<Vec<Binding<T>>, RegisterError> {
        self.expire(now);
        let contacts = match list {
            ContactList::Star => {
                if header_expires != Some(0) {
                    return Err(RegisterError::StarNeedsExpiresZero);
                }
                if self
                    .bindings
                    .iter()
                    .any(|b| b.call_id == call_id && cseq <= b.cseq)
                {
                    return Err(RegisterError::OutOfOrder);
                }
                self.bindings.clear();
                return Ok(Vec::new());
            }
            ContactList::Contacts(contacts) => contacts,
        };

        // Validate every contact against the stored state before touching anything.
        let mut changes = Vec::with_capacity(contacts.len());
        for spec in contacts {
            let requested = spec.expires.or(header_expires).unwrap_or(default);
            if requested != 0 && requested < min {
                return Err(RegisterError::IntervalTooBrief { min_expires: min });
            }
            let key = uri_key(&spec.uri);
            if let Some(existing) = self.bindings.iter().find(|b| uri_key(&b.uri) == key) {
                if existing.call_id == call_id && cseq <= existing.cseq {
                    return Err(RegisterError::OutOfOrder);
                }
            }
            changes.push(Change {
                spec,
                expires: requested.min(max),
            });
        }

        for change in changes {
            let key = uri_key(&change.spec.uri);
            let position = self.bindings.iter().position(|b| uri_key(&b.uri) == key);
            match (position, change.expires) {
                (Some(i), 0) => {
                    self.bindings.remove(i);
                }
                (None, 0) => {}
                (Some(i), secs) => {
                    if let Some(b) = self.bindings.get_mut(i) {
                        b.uri = change.spec.uri.clone();
                        b.expires_at = deadline(now, secs);
                        b.q = change.spec.q;
                        b.call_id = call_id.to_owned();
                        b.cseq = cseq;
                        b.data = data.clone();
                    }
                }
                (None, secs) => self.bindings.push(Binding {
                    uri: change.spec.uri.clone(),
                    expires_at: deadline(now, secs),
                    q: change.spec.q,
                    call_id: call_id.to_owned(),
                    cseq,
                    data: data.clone(),
                }),
            }
        }
        Ok(self.current(now))
    }

    /// Drops bindings whose time has come; returns true when something was removed.
    pub fn expire(&mut self, now: Instant) -> bool {
        let before = self.bindings.len();
        self.bindings.retain(|b| b.expires_at > now);
        self.bindings.len() != before
    }

    /// The bindings still alive at `now`, for routing and for the 200 OK (§10.3 step 8).
    pub fn current(&self, now: Instant) -> Vec<Binding<T>> {
        self.bindings
            .iter()
            .filter(|b| b.expires_at > now)
            .cloned()
            .collect()
    }

    /// When the earliest binding lapses, so the caller can arm one timer.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.bindings.iter().map(|b| b.expires_at).min()
    }

    /// True when nothing is bound, so the caller can drop the address-of-record's entry.
    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }

    /// Number of stored bindings (expired ones included until [`expire`](Self::expire)).
    pub fn len(&self) -> usize {
        self.bindings.len()
    }
}

/// Contact header value for a 200 OK to REGISTER: `<uri>;expires=N` for each binding.
///
/// N is the remaining lifetime at `now`, rounded up to whole seconds.
pub fn contact_value<T>(b: &Binding<T>, now: Instant) -> String {
    let left = b.expires_at.saturating_duration_since(now);
    let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    format!("<{}>;expires={}", b.uri, secs)
}

/// `now + secs`, saturating instead of panicking if the platform cannot represent it.
fn deadline(now: Instant, secs: u32) -> Instant {
    let mut d = Duration::from_secs(u64::from(secs));
    loop {
        if let Some(t) = now.checked_add(d) {
            return t;
        }
        if d.is_zero() {
            return now;
        }
        d /= 2;
    }
}

/// Comparison key for a contact URI (§19.1.4, simplified): for `sip`/`sips`, the scheme and
/// everything after the userinfo are lowercased; other schemes lowercase only the scheme.
fn uri_key(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return uri.to_owned();
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "sip" && scheme != "sips" {
        return format!("{scheme}:{rest}");
    }
    let end = rest.find([';', '?']).unwrap_or(rest.len());
    let (user, host) = match rest.get(..end).and_then(|head| head.rfind('@')) {
        Some(at) => rest.split_at(at + 1),
        None => ("", rest),
    };
    format!("{scheme}:{user}{}", host.to_ascii_lowercase())
}

fn bad(contact: &str, reason: &'static str) -> RegisterError {
    RegisterError::BadContact {
        contact: contact.to_owned(),
        reason,
    }
}

/// Splits one header value on commas that are outside quoted strings and `<…>` (an
/// `addr-spec` between `<` and `>` holds no quoted string); refuses empty entries and an
/// unclosed quote or `<`.
fn split_entries(value: &str) -> Result<Vec<&str>, RegisterError> {
    let mut entries = Vec::new();
    for (piece, open) in list_elements(value, Angles::Opaque) {
        match open {
            Some(Unclosed::Quote) => return Err(bad(value, "unterminated quoted string")),
            Some(Unclosed::Angle) => return Err(bad(value, "missing `>`")),
            None => {}
        }
        entries.push(trim_lws(piece));
    }
    if entries.iter().any(|e| e.is_empty()) {
        return Err(bad(value, "empty Contact entry"));
    }
    Ok(entries)
}

/// `scheme ":" rest` with RFC 3986 scheme characters and no spaces, quotes or brackets.
fn is_uri(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return false;
    };
    is_scheme(scheme)
        && !rest.is_empty()
        && !rest
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"'))
}

/// Parses one `contact-param = (name-addr / addr-spec) *(SEMI contact-params)`.
fn parse_contact(entry: &str) -> Result<ContactSpec, RegisterError> {
    let (uri, params) = match find_unquoted(entry, '<') {
        Some(lt) => {
            let display = trim_lws(entry.get(..lt).unwrap_or(""));
            if !is_display_name(display) {
                return Err(bad(entry, "bad display name"));
            }
            let after = entry.get(lt + 1..).unwrap_or("");
            let Some(gt) = after.find('>') else {
                return Err(bad(entry, "missing `>`"));
            };
            (
                after.get(..gt).unwrap_or(""),
                after.get(gt + 1..).unwrap_or(""),
            )
        }
        None => {
            // addr-spec: parameters after the first `;` belong to the header (§20.10)
            let end = entry.find(';').unwrap_or(entry.len());
            (
                trim_lws(entry.get(..end).unwrap_or("")),
                entry.get(end..).unwrap_or(""),
            )
        }
    };
    if !is_uri(uri) {
        return Err(bad(entry, "bad URI"));
    }
    let params = trim_lws(params);
    let mut expires = None;
    let mut q = None;
    if !params.is_empty() {
        let Some(params) = params.strip_prefix(';') else {
            return Err(bad(entry, "text after the URI"));
        };
        // Lenient on purpose: only the name must be a token; a value is checked where the
        // registrar reads it (expires, q), and an unclosed quote runs to the end.
        for param in split_unquoted(params, ';') {
            let param = trim_lws(param.unwrap_or_else(|rest| rest));
            let (name, value) = match param.split_once('=') {
                Some((n, v)) => (trim_lws(n), Some(trim_lws(v))),
                None => (param, None),
            };
            if !is_token(name) {
                return Err(bad(entry, "bad parameter"));
            }
            if name.eq_ignore_ascii_case("expires") {
                if expires.is_some() {
                    return Err(bad(entry, "duplicate expires"));
                }
                expires = Some(
                    value
                        .and_then(delta_seconds)
                        .ok_or_else(|| bad(entry, "bad expires"))?,
                );
            } else if name.eq_ignore_ascii_case("q") {
                if q.is_some() {
                    return Err(bad(entry, "duplicate q"));
                }
                q = Some(value.and_then(qvalue).ok_or_else(|| bad(entry, "bad q"))?);
            } else if value.is_some_and(str::is_empty) {
                return Err(bad(entry, "bad parameter"));
            }
        }
    }
    Ok(ContactSpec {
        uri: uri.to_owned(),
        expires,
        q,
    })
}

/// `display-name = *(token LWS) / quoted-string`.
fn is_display_name(s: &str) -> bool {
    if s.starts_with('"') {
        is_quoted_string(s)
    } else {
        s.split(is_lws).all(|w| w.bytes().all(is_token_char))
    }
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`.
fn qvalue(s: &str) -> Option<f32> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    let ok = frac.len() <= 3
        && frac.bytes().all(|b| b.is_ascii_digit())
        && match int {
            "0" => true,
            "1" => frac.bytes().all(|b| b == b'0'),
            _ => false,
        };
    if ok {
        s.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::junk::junk_inputs;

    fn spec(uri: &str, expires: Option<u32>, q: Option<f32>) -> ContactSpec {
        ContactSpec {
            uri: uri.into(),
            expires,
            q,
        }
    }

    fn contacts(values: &[&str]) -> ContactList {
        parse_contacts(values).expect("parses")
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// RFC 3261 §20.10 Contact examples.
    #[test]
    fn rfc3261_contact_examples() {
        assert_eq!(
            contacts(&[
                "\"Mr. Watson\" <sip:watson@worcester.bell-telephone.com>\r\n   \
                        ;q=0.7; expires=3600,\r\n   \
                        \"Mr. Watson\" <mailto:watson@bell-telephone.com> ;q=0.1"
            ]),
            ContactList::Contacts(vec![
                spec(
                    "sip:watson@worcester.bell-telephone.com",
                    Some(3600),
                    Some(0.7)
                ),
                spec("mailto:watson@bell-telephone.com", None, Some(0.1)),
            ])
        );
        assert_eq!(
            contacts(&["<sips:bob@192.0.2.4>;expires=60"]),
            ContactList::Contacts(vec![spec("sips:bob@192.0.2.4", Some(60), None)])
        );
        // §10.2.2: "Contact: *" (used with "Expires: 0")
        assert_eq!(contacts(&["*"]), ContactList::Star);
        assert_eq!(contacts(&[" * "]), ContactList::Star);
    }

    // Our own cases from here on (not RFC text).
    #[test]
    fn contact_forms() {
        assert_eq!(contacts(&[]), ContactList::Contacts(vec![]));
        // display name with a comma, URI parameters inside brackets, several header values
        assert_eq!(
            contacts(&[
                "\"Watson, Mr.\" <sip:w@x.example;transport=tcp>;expires=10",
                "Bob Smith <sip:b@y.example>, sip:c@z.example;q=1.000;expires=5;+sip.instance=\"<urn:uuid:1>\""
            ]),
            ContactList::Contacts(vec![
                spec("sip:w@x.example;transport=tcp", Some(10), None),
                spec("sip:b@y.example", None, None),
                spec("sip:c@z.example", Some(5), Some(1.0)),
            ])
        );
        assert_eq!(
            contacts(&["<sip:a@b>;expires=99999999999"]),
            ContactList::Contacts(vec![spec("sip:a@b", Some(u32::MAX), None)])
        );
    }

    #[test]
    fn contact_errors() {
        let err = |v: &str, contact: &str, reason| {
            assert_eq!(
                parse_contacts(&[v]),
                Err(RegisterError::BadContact {
                    contact: contact.into(),
                    reason
                }),
                "{v}"
            );
        };
        assert_eq!(
            parse_contacts(&["*, <sip:a@b>"]),
            Err(RegisterError::StarWithOthers)
        );
        assert_eq!(
            parse_contacts(&["*", "<sip:a@b>"]),
            Err(RegisterError::StarWithOthers)
        );
        err("<sip:a@b", "<sip:a@b", "missing `>`");
        err(
            "\"open <sip:a@b>",
            "\"open <sip:a@b>",
            "unterminated quoted string",
        );
        err(
            "<sip:a@b>,,<sip:c@d>",
            "<sip:a@b>,,<sip:c@d>",
            "empty Contact entry",
        );
        err("", "", "empty Contact entry");
        err("<nonsense>", "<nonsense>", "bad URI");
        err("<1sip:a@b>", "<1sip:a@b>", "bad URI");
        err("sip:a @b", "sip:a @b", "bad URI");
        err("<sip:a@b>;q=1.5", "<sip:a@b>;q=1.5", "bad q");
        err("<sip:a@b>;q=0.1234", "<sip:a@b>;q=0.1234", "bad q");
        err(
            "<sip:a@b>;expires=soon",
            "<sip:a@b>;expires=soon",
            "bad expires",
        );
        err("<sip:a@b>;expires", "<sip:a@b>;expires", "bad expires");
        err(
            "<sip:a@b>;expires=1;expires=2",
            "<sip:a@b>;expires=1;expires=2",
            "duplicate expires",
        );
        err(
            "<sip:a@b>;q=0.1;Q=0.2",
            "<sip:a@b>;q=0.1;Q=0.2",
            "duplicate q",
        );
        err("<sip:a@b> junk", "<sip:a@b> junk", "text after the URI");
        err("<sip:a@b>;x=", "<sip:a@b>;x=", "bad parameter");
        err("<sip:a@b>;=1", "<sip:a@b>;=1", "bad parameter");
        err(
            "Bad@Name <sip:a@b>",
            "Bad@Name <sip:a@b>",
            "bad display name",
        );
    }

    #[test]
    fn qvalues() {
        assert_eq!(qvalue("0"), Some(0.0));
        assert_eq!(qvalue("0.5"), Some(0.5));
        assert_eq!(qvalue("1."), Some(1.0));
        assert_eq!(qvalue("1.001"), None);
        assert_eq!(qvalue("2"), None);
        assert_eq!(qvalue(".5"), None);
    }

    fn apply(
        b: &mut Bindings<u8>,
        list: &ContactList,
        header: Option<u32>,
        call_id: &str,
        cseq: u32,
        now: Instant,
        data: u8,
    ) -> Result<Vec<Binding<u8>>, RegisterError> {
        b.apply(list, header, call_id, cseq, now, 3600, 60, 7200, data)
    }

    #[test]
    fn add_refresh_remove() {
        let t0 = Instant::now();
        let mut b = Bindings::new();
        let list = contacts(&["<sip:alice@192.0.2.1>"]);

        // default expiry when neither parameter nor header
        let got = apply(&mut b, &list, None, "c1", 1, t0, 7).expect("add");
        assert_eq!(
            got,
            vec![Binding {
                uri: "sip:alice@192.0.2.1".into(),
                expires_at: t0 + secs(3600),
                q: None,
                call_id: "c1".into(),
                cseq: 1,
                data: 7,
            }]
        );
        assert_eq!(
            contact_value(&got[0], t0),
            "<sip:alice@192.0.2.1>;expires=3600"
        );
        assert_eq!(
            contact_value(&got[0], t0 + Duration::from_millis(1500)),
            "<sip:alice@192.0.2.1>;expires=3599"
        );

        // refresh: header Expires used, data replaced, host compared case-insensitively
        let t1 = t0 + secs(100);
        let upper = contacts(&["<sip:alice@192.0.2.1>", "<SIP:alice@EXAMPLE.com>;q=0.5"]);
        let got = apply(&mut b, &upper, Some(120), "c1", 2, t1, 8).expect("refresh");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].expires_at, t1 + secs(120));
        assert_eq!(got[0].data, 8);
        assert_eq!(got[0].cseq, 2);
        assert_eq!(got[1].q, Some(0.5));
        let same = contacts(&["<sip:alice@example.COM>;expires=300"]);
        let got = apply(&mut b, &same, None, "c1", 3, t1, 9).expect("refresh by equal URI");
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].expires_at, t1 + secs(300));
        assert_eq!(got[1].uri, "sip:alice@example.COM");
        // the user part is case-sensitive: a different binding
        let other_user = contacts(&["<sip:ALICE@example.com>"]);
        let got = apply(&mut b, &other_user, None, "c1", 4, t1, 9).expect("add");
        assert_eq!(got.len(), 3);

        // removal via expires=0 parameter and via Expires: 0 header
        let rm = contacts(&["<sip:alice@192.0.2.1>;expires=0"]);
        let got = apply(&mut b, &rm, Some(3600), "c1", 5, t1, 0).expect("remove");
        assert_eq!(got.len(), 2);
        let rm = contacts(&["<sip:alice@example.com>"]);
        let got = apply(&mut b, &rm, Some(0), "c1", 6, t1, 0).expect("remove");
        assert_eq!(
            got.iter().map(|x| x.uri.as_str()).collect::<Vec<_>>(),
            vec!["sip:ALICE@example.com"]
        );
        // removing an unknown contact is a no-op
        let rm = contacts(&["<sip:nobody@example.com>;expires=0"]);
        assert_eq!(
            apply(&mut b, &rm, None, "c1", 7, t1, 0)
                .expect("noop")
                .len(),
            1
        );
        // query
        let got =
            apply(&mut b, &ContactList::Contacts(vec![]), None, "c1", 8, t1, 0).expect("query");
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn min_and_max() {
        let t0 = Instant::now();
        let mut b = Bindings::new();
        let list = contacts(&["<sip:a@b>;expires=59"]);
        assert_eq!(
            apply(&mut b, &list, None, "c", 1, t0, 0),
            Err(RegisterError::IntervalTooBrief { min_expires: 60 })
        );
        let list = contacts(&["<sip:a@b>"]);
        assert_eq!(
            apply(&mut b, &list, Some(30), "c", 1, t0, 0),
            Err(RegisterError::IntervalTooBrief { min_expires: 60 })
        );
        assert!(b.is_empty());
        let list = contacts(&["<sip:a@b>;expires=100000"]);
        let got = apply(&mut b, &list, None, "c", 1, t0, 0).expect("clamped");
        assert_eq!(got[0].expires_at, t0 + secs(7200));
    }

    #[test]
    fn call_id_and_cseq_ordering() {
        let t0 = Instant::now();
        let mut b = Bindings::new();
        let list = contacts(&["<sip:a@b>"]);
        apply(&mut b, &list, None, "c1", 5, t0, 1).expect("add");
        // same Call-ID, CSeq not higher: 500 and no change
        assert_eq!(
            apply(&mut b, &list, Some(0), "c1", 5, t0, 2),
            Err(RegisterError::OutOfOrder)
        );
        assert_eq!(
            apply(&mut b, &list, Some(0), "c1", 4, t0, 2),
            Err(RegisterError::OutOfOrder)
        );
        assert_eq!(b.len(), 1);
        // another Call-ID replaces whatever its CSeq
        let got = apply(&mut b, &list, None, "c2", 1, t0, 3).expect("replace");
        assert_eq!(
            (got[0].call_id.as_str(), got[0].cseq, got[0].data),
            ("c2", 1, 3)
        );
    }

    #[test]
    fn atomic_on_error() {
        let t0 = Instant::now();
        let mut b = Bindings::new();
        apply(&mut b, &contacts(&["<sip:a@b>"]), None, "c1", 5, t0, 1).expect("add");
        // first contact would be fine, the second is out of order: nothing applied
        let list = contacts(&["<sip:new@b>", "<sip:a@b>"]);
        assert_eq!(
            apply(&mut b, &list, None, "c1", 3, t0, 2),
            Err(RegisterError::OutOfOrder)
        );
        // first fine, second too brief: nothing applied
        let list = contacts(&["<sip:new@b>", "<sip:x@b>;expires=1"]);
        assert_eq!(
            apply(&mut b, &list, None, "c1", 6, t0, 2),
            Err(RegisterError::IntervalTooBrief { min_expires: 60 })
        );
        let now = b.current(t0);
        assert_eq!(now.len(), 1);
        assert_eq!(now[0].uri, "sip:a@b");
    }

    #[test]
    fn star_paths() {
        let t0 = Instant::now();
        let mut b = Bindings::new();
        apply(
            &mut b,
            &contacts(&["<sip:a@b>", "<sip:c@d>"]),
            None,
            "c1",
            5,
            t0,
            1,
        )
        .expect("add");
        assert_eq!(
            apply(&mut b, &ContactList::Star, None, "c2", 1, t0, 0),
            Err(RegisterError::StarNeedsExpiresZero)
        );
        assert_eq!(
            apply(&mut b, &ContactList::Star, Some(10), "c2", 1, t0, 0),
            Err(RegisterError::StarNeedsExpiresZero)
        );
        assert_eq!(
            apply(&mut b, &ContactList::Star, Some(0), "c1", 5, t0, 0),
            Err(RegisterError::OutOfOrder)
        );
        assert_eq!(b.len(), 2);
        assert_eq!(
            apply(&mut b, &ContactList::Star, Some(0), "c1", 6, t0, 0),
            Ok(vec![])
        );
        assert!(b.is_empty());
    }

    #[test]
    fn expiry() {
        let t0 = Instant::now();
        let mut b = Bindings::new();
        apply(
            &mut b,
            &contacts(&["<sip:a@b>;expires=100", "<sip:c@d>;expires=200"]),
            None,
            "c",
            1,
            t0,
            0,
        )
        .expect("add");
        assert_eq!(b.next_expiry(), Some(t0 + secs(100)));
        assert_eq!(b.current(t0 + secs(100)).len(), 1);
        assert!(!b.expire(t0 + secs(99)));
        assert!(b.expire(t0 + secs(100)));
        assert_eq!(b.next_expiry(), Some(t0 + secs(200)));
        assert!(b.expire(t0 + secs(500)));
        assert!(b.is_empty());
        assert_eq!(b.next_expiry(), None);
        // an expired binding no longer blocks an old CSeq on the same Call-ID
        apply(
            &mut b,
            &contacts(&["<sip:a@b>;expires=60"]),
            None,
            "c",
            9,
            t0,
            0,
        )
        .expect("add");
        let later = t0 + secs(61);
        assert_eq!(
            apply(&mut b, &contacts(&["<sip:a@b>"]), None, "c", 2, later, 0)
                .expect("fresh")
                .len(),
            1
        );
    }

    #[test]
    fn uri_keys() {
        assert_eq!(
            uri_key("SIP:Alice@Example.COM;Transport=TCP"),
            "sip:Alice@example.com;transport=tcp"
        );
        assert_eq!(uri_key("sips:example.com"), "sips:example.com");
        assert_eq!(uri_key("tel:+1-201-555-0123"), "tel:+1-201-555-0123");
        assert_eq!(uri_key("MAILTO:Bob@X"), "mailto:Bob@X");
    }

    #[test]
    fn never_panics_on_junk() {
        for input in junk_inputs() {
            let _ = parse_contacts(&[&input]);
            let _ = parse_contacts(&[&format!("<sip:a@b>{input}")]);
            let _ = uri_key(&input);
        }
    }
}
