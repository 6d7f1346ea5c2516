//! The one escaper: character data and attribute values (XML 1.0 §2.4, §3.3.3), written into
//! a byte buffer (XMPP outboxes) or a `String` (documents) through [`Sink`].

/// Where serialised XML goes.
pub trait Sink {
    /// Appends `s`.
    fn push_str(&mut self, s: &str);
    /// Reserves room for at least `additional` more bytes.
    fn reserve(&mut self, additional: usize);
}

impl Sink for Vec<u8> {
    #[inline]
    fn push_str(&mut self, s: &str) {
        self.extend_from_slice(s.as_bytes());
    }

    #[inline]
    fn reserve(&mut self, additional: usize) {
        Vec::reserve(self, additional);
    }
}

impl Sink for String {
    #[inline]
    fn push_str(&mut self, s: &str) {
        String::push_str(self, s);
    }

    #[inline]
    fn reserve(&mut self, additional: usize) {
        String::reserve(self, additional);
    }
}

/// The quote that delimits an attribute value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quote {
    /// `'`, as XMPP streams are written.
    Single,
    /// `"`, as our documents (PIDF, CCMP, the cluster state) are written.
    Double,
}

impl Quote {
    /// The quote character.
    pub fn as_str(self) -> &'static str {
        match self {
            Quote::Single => "'",
            Quote::Double => "\"",
        }
    }
}

/// Appends `s` to `out` escaped as XML character data: `&`, `<` and `>` become entity
/// references, and `\r` becomes `&#13;` so that it survives the end-of-line normalisation of
/// the receiving parser.
#[inline]
pub fn escape_text<S: Sink + ?Sized>(s: &str, out: &mut S) {
    escape_with(s, out, |b| match b {
        b'&' => Some("&amp;"),
        b'<' => Some("&lt;"),
        b'>' => Some("&gt;"),
        b'\r' => Some("&#13;"),
        _ => None,
    });
}

/// Appends `s` to `out` escaped for an attribute value in either quote: `&`, `<`, `>`, `'`
/// and `"` become entity references, and tab, line feed and carriage return become
/// character references so that attribute-value normalisation on the receiving side
/// preserves them.
#[inline]
pub fn escape_attr<S: Sink + ?Sized>(s: &str, out: &mut S) {
    escape_with(s, out, |b| match b {
        b'&' => Some("&amp;"),
        b'<' => Some("&lt;"),
        b'>' => Some("&gt;"),
        b'\'' => Some("&apos;"),
        b'"' => Some("&quot;"),
        b'\t' => Some("&#9;"),
        b'\n' => Some("&#10;"),
        b'\r' => Some("&#13;"),
        _ => None,
    });
}

/// Like [`escape_attr`] for a value delimited by `quote`: only that quote is escaped, the
/// other is written as is.
#[inline]
pub fn escape_attr_in<S: Sink + ?Sized>(s: &str, quote: Quote, out: &mut S) {
    let single = quote == Quote::Single;
    escape_with(s, out, |b| match b {
        b'\'' => single.then_some("&apos;"),
        b'"' => (!single).then_some("&quot;"),
        b'&' => Some("&amp;"),
        b'<' => Some("&lt;"),
        b'>' => Some("&gt;"),
        b'\t' => Some("&#9;"),
        b'\n' => Some("&#10;"),
        b'\r' => Some("&#13;"),
        _ => None,
    });
}

/// Copies `s` into `out` in runs, replacing each byte for which `rep` returns a replacement.
/// Only ASCII bytes are replaced, so every run boundary is a character boundary.
#[inline]
fn escape_with<S: Sink + ?Sized>(s: &str, out: &mut S, rep: impl Fn(u8) -> Option<&'static str>) {
    out.reserve(s.len());
    let mut last = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        if let Some(r) = rep(b) {
            out.push_str(&s[last..i]);
            out.push_str(r);
            last = i + 1;
        }
    }
    out.push_str(&s[last..]);
}
