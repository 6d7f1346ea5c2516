//! Issue 16 acceptance over real sockets: what a client sends with prefixed elements and
//! attributes, default-namespace changes and `xml:lang` reaches the other side (a contact,
//! the same contact later through offline storage, the sender again through XEP-0049 private
//! storage and MOE-MP settings) namespace-well-formed and meaning the same.
//!
//! What the recipient reads is taken off the socket as raw bytes and read by quick-xml's
//! namespace-aware `NsReader` (an independent reader, not the server's), inside the bindings
//! the server's stream header declared; an unbound prefix or two attributes with the same
//! expanded name fail the test. The payloads are compared by expanded names (namespace URI
//! and local name), attribute values and text, as XML Namespaces 1.0 says they mean.
//!
//! The last test counts the allocations of the stanza parse and write paths on the test
//! thread, against the counts of the code before the issue (ebba0f9).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{add_users, test_config, Client, TestNode};
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use quick_xml::XmlVersion;

const MOE: &str = "urn:rendezvous:params:xml:ns:moe";

/// The declarations of the server's stream header (RFC 6120 §4.8): what is in scope for
/// every stanza the client reads.
const STREAM_HEADER: &str =
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

/// Payloads of the issue: a prefix declared on the element that uses it (for an attribute
/// and a child element), a default namespace changed and undeclared, `xml:lang`.
const PAYLOADS: &str = "<x xmlns='urn:e' xmlns:y='urn:y' y:a='1'><y:z/></x>\
    <p xmlns='urn:outer' xml:lang='de'><q xmlns='urn:inner' y:b='2' xmlns:y='urn:y2'>Grüße &amp; &lt;</q>\
    <r xmlns=''><s/></r></p>\
    <ext xmlns:x='urn:example' x:level='2'><x:sub xml:lang='fr'>t</x:sub></ext>";

// ----- a namespace-aware view of what was read ------------------------------------------

/// An element as a namespace-aware reader sees it.
#[derive(Debug, Clone, PartialEq)]
struct Tree {
    /// `{namespace}local`.
    name: String,
    /// `{namespace}local=value`, in document order.
    attrs: Vec<String>,
    children: Vec<Child>,
}

#[derive(Debug, Clone, PartialEq)]
enum Child {
    Element(Tree),
    Text(String),
}

impl Tree {
    fn is(&self, name: &str) -> bool {
        self.name == name
    }

    fn child(&self, name: &str) -> Option<&Tree> {
        self.children.iter().find_map(|c| match c {
            Child::Element(t) if t.is(name) => Some(t),
            _ => None,
        })
    }

    fn elements(&self) -> impl Iterator<Item = &Tree> {
        self.children.iter().filter_map(|c| match c {
            Child::Element(t) => Some(t),
            Child::Text(_) => None,
        })
    }

    fn text(&self) -> String {
        self.children
            .iter()
            .filter_map(|c| match c {
                Child::Text(t) => Some(t.as_str()),
                Child::Element(_) => None,
            })
            .collect()
    }
}

fn expanded(res: ResolveResult<'_>, local: &str, what: &str) -> Result<String, String> {
    let ns = match res {
        ResolveResult::Bound(ns) => ns.into_inner().to_owned(),
        ResolveResult::Unbound => String::new(),
        ResolveResult::Unknown(p) => return Err(format!("unbound prefix '{p}' on {what}")),
    };
    Ok(format!("{{{ns}}}{local}"))
}

/// The first-level elements of a client stream, `raw` being what followed its header.
fn first_level(raw: &[u8]) -> Result<Vec<Tree>, String> {
    let text = format!("{STREAM_HEADER}{}", String::from_utf8_lossy(raw));
    let mut reader = NsReader::from_str(&text);
    let mut stack: Vec<Tree> = Vec::new();
    let mut out = Vec::new();
    let mut depth = 0usize;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("{e} at byte {}", reader.buffer_position()))?;
        let (start, empty) = match event {
            Event::Start(s) => (s, false),
            Event::Empty(s) => (s, true),
            Event::End(_) => {
                depth -= 1;
                if let Some(done) = stack.pop() {
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(Child::Element(done)),
                        None => out.push(done),
                    }
                }
                continue;
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.children
                        .push(Child::Text(t.xml10_content().into_owned()));
                }
                continue;
            }
            Event::GeneralRef(r) => {
                let c = match &*r {
                    "amp" => '&',
                    "lt" => '<',
                    "gt" => '>',
                    "apos" => '\'',
                    "quot" => '"',
                    _ => r
                        .resolve_char_ref()
                        .ok()
                        .flatten()
                        .ok_or_else(|| format!("unknown reference &{};", &*r))?,
                };
                if let Some(top) = stack.last_mut() {
                    top.children.push(Child::Text(c.to_string()));
                }
                continue;
            }
            Event::Eof => return Ok(out),
            Event::CData(c) => {
                if let Some(top) = stack.last_mut() {
                    top.children
                        .push(Child::Text(c.xml10_content().into_owned()));
                }
                continue;
            }
            other => return Err(format!("unexpected {other:?}")),
        };
        depth += 1;
        let qname = start.name();
        let what = format!("<{}>", qname.0);
        let (res, local) = reader.resolver().resolve_element(qname);
        let name = expanded(res, local.into_inner(), &what)?;
        let mut attrs = Vec::new();
        let mut seen = Vec::new();
        for attr in start.attributes() {
            let attr = attr.map_err(|e| format!("{e} in {what}"))?;
            if attr.key.as_namespace_binding().is_some() {
                continue;
            }
            let (res, local) = reader.resolver().resolve_attribute(attr.key);
            let key = expanded(res, local.into_inner(), &what)?;
            if seen.contains(&key) {
                return Err(format!("two attributes {key} on {what}"));
            }
            seen.push(key.clone());
            let value = attr
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|e| format!("{e} in {what}"))?;
            attrs.push(format!("{key}={value:?}"));
        }
        let tree = Tree {
            name,
            attrs,
            children: Vec::new(),
        };
        if depth == 1 {
            // The stream element itself.
            if empty {
                depth -= 1;
            }
            continue;
        }
        if empty {
            depth -= 1;
            match stack.last_mut() {
                Some(parent) => parent.children.push(Child::Element(tree)),
                None => out.push(tree),
            }
        } else {
            stack.push(tree);
        }
    }
}

/// Text nodes merged, so that `a&amp;b` read as three events compares equal to `a&b`.
fn merged(t: &Tree) -> Tree {
    let mut children: Vec<Child> = Vec::new();
    for c in &t.children {
        match (c, children.last_mut()) {
            (Child::Text(s), Some(Child::Text(last))) => last.push_str(s),
            (Child::Text(s), _) => children.push(Child::Text(s.clone())),
            (Child::Element(e), _) => children.push(Child::Element(merged(e))),
        }
    }
    Tree {
        name: t.name.clone(),
        attrs: t.attrs.clone(),
        children,
    }
}

/// `stanza` (as a client would write it into its stream) as a namespace-aware reader sees it.
fn sent(stanza: &str) -> Tree {
    let mut v = first_level(stanza.as_bytes()).unwrap_or_else(|e| panic!("{e}: {stanza}"));
    assert_eq!(v.len(), 1, "{stanza}");
    merged(&v.remove(0))
}

/// Every child element of `sent` is among the children of `got`, meaning the same.
fn assert_same_payloads(sent: &Tree, got: &Tree) {
    for payload in sent.elements() {
        assert!(
            got.elements().any(|g| merged(g) == *payload),
            "payload {payload:#?}\nnot found as sent in {got:#?}"
        );
    }
}

// ----- raw reading ------------------------------------------------------------------

/// Bytes read off a client's socket after its login, kept until a namespace-aware read.
struct Raw {
    buf: Vec<u8>,
}

impl Raw {
    fn new() -> Raw {
        Raw { buf: Vec::new() }
    }

    /// Reads until `needle` has arrived followed by `end`; panics after 5 s.
    fn wait_for(&mut self, stream: &mut TcpStream, needle: &str, end: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = String::from_utf8_lossy(&self.buf);
            if let Some(i) = text.find(needle) {
                if text[i..].contains(end) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {needle:?}; read {text}"
            );
            let mut chunk = [0u8; 65536];
            match stream.read(&mut chunk) {
                Ok(0) => panic!("the server closed the stream; read {text}"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// The first-level elements read so far, as a namespace-aware reader sees them.
    fn stanzas(&self) -> Vec<Tree> {
        first_level(&self.buf).unwrap_or_else(|e| {
            panic!(
                "what the client read is not namespace-well-formed: {e}\n{}",
                String::from_utf8_lossy(&self.buf)
            )
        })
    }

    /// The first stanza named `name` that `pick` accepts.
    fn find(&self, name: &str, pick: impl Fn(&Tree) -> bool) -> Tree {
        self.stanzas()
            .into_iter()
            .find(|t| t.is(name) && pick(t))
            .unwrap_or_else(|| panic!("no {name} found in {}", String::from_utf8_lossy(&self.buf)))
    }
}

fn write(c: &mut Client, s: &str) {
    c.send(s);
}

fn node() -> (tempfile::TempDir, TestNode) {
    let dir = tempfile::tempdir().unwrap();
    add_users(dir.path(), &[("alice", "pw"), ("bob", "pw")]);
    let node = TestNode::start(&test_config(dir.path(), ""));
    (dir, node)
}

/// Logs in, sends initial presence and waits for it to come back: available from then on.
/// Everything the client reads after the bind is in the returned [`Raw`].
fn available(node: &TestNode, user: &str, resource: &str) -> (Client, Raw) {
    let mut c = Client::login_plain(node.addr, user, "pw", resource);
    let mut raw = Raw::new();
    write(&mut c, "<presence/>");
    raw.wait_for(
        &mut c.stream,
        &format!("from='{user}@localhost/{resource}'"),
        ">",
    );
    (c, raw)
}

fn chat(id: &str, marker: &str) -> String {
    format!(
        "<message to='bob@localhost' type='chat' id='{id}' xml:lang='en'><body>{marker}</body>\
         {PAYLOADS}</message>"
    )
}

fn has_body(t: &Tree, marker: &str) -> bool {
    t.child("{jabber:client}body")
        .is_some_and(|b| b.text() == marker)
}

// ----- (a) routed -------------------------------------------------------------------

#[test]
fn a_chat_message_reaches_its_recipient_namespace_faithful() {
    let (_dir, node) = node();
    let (mut bob, mut bob_raw) = available(&node, "bob", "b");
    let (mut alice, _) = available(&node, "alice", "a");
    let stanza = chat("m1", "ns-routed");
    write(&mut alice, &stanza);
    bob_raw.wait_for(&mut bob.stream, "ns-routed", "</message>");
    let got = bob_raw.find("{jabber:client}message", |t| has_body(t, "ns-routed"));
    let sent = sent(&stanza);
    assert_same_payloads(&sent, &got);
    assert!(
        got.attrs
            .contains(&"{http://www.w3.org/XML/1998/namespace}lang=\"en\"".to_string()),
        "{got:#?}"
    );
    // Bob's stream is still open: a ping is answered.
    write(
        &mut bob,
        "<iq type='get' id='ping1'><ping xmlns='urn:xmpp:ping'/></iq>",
    );
    bob_raw.wait_for(&mut bob.stream, "id='ping1'", ">");
}

// ----- (b) offline storage ----------------------------------------------------------

#[test]
fn an_offline_message_is_delivered_later_namespace_faithful() {
    let (_dir, node) = node();
    let (mut alice, mut alice_raw) = available(&node, "alice", "a");
    let stanza = chat("m2", "ns-offline");
    write(&mut alice, &stanza);
    // Stored, not bounced: alice can still ping and gets no error for m2.
    write(
        &mut alice,
        "<iq type='get' id='ping2'><ping xmlns='urn:xmpp:ping'/></iq>",
    );
    alice_raw.wait_for(&mut alice.stream, "id='ping2'", ">");
    assert!(
        !String::from_utf8_lossy(&alice_raw.buf).contains("id='m2'"),
        "m2 bounced"
    );
    let (mut bob, mut bob_raw) = {
        let mut c = Client::login_plain(node.addr, "bob", "pw", "later");
        let raw = Raw::new();
        write(&mut c, "<presence/>");
        (c, raw)
    };
    bob_raw.wait_for(&mut bob.stream, "ns-offline", "</message>");
    let got = bob_raw.find("{jabber:client}message", |t| has_body(t, "ns-offline"));
    assert_same_payloads(&sent(&stanza), &got);
    assert!(
        got.child("{urn:xmpp:delay}delay").is_some(),
        "XEP-0203 stamp: {got:#?}"
    );
}

// ----- (c) private storage ----------------------------------------------------------

#[test]
fn private_storage_reads_back_what_was_stored() {
    let (_dir, node) = node();
    let mut alice = Client::login_plain(node.addr, "alice", "pw", "a");
    let mut raw = Raw::new();
    let item = "<prefs xmlns='urn:example:prefs' xmlns:e='urn:example:e' e:version='3'>\
                <e:colour xml:lang='en' e:shade='dark'>blue</e:colour>\
                <window xmlns='urn:example:win' xmlns:e='urn:example:e2' e:x='10'/>\
                <plain xmlns=''>t</plain></prefs>";
    write(
        &mut alice,
        &format!("<iq type='set' id='p1'><query xmlns='jabber:iq:private'>{item}</query></iq>"),
    );
    raw.wait_for(&mut alice.stream, "id='p1'", ">");
    write(
        &mut alice,
        "<iq type='get' id='p2'><query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'/></query></iq>",
    );
    raw.wait_for(&mut alice.stream, "id='p2'", "</iq>");
    let got = raw.find("{jabber:client}iq", |t| {
        t.attrs.contains(&"{}id=\"p2\"".to_string())
    });
    assert!(
        got.attrs.contains(&"{}type=\"result\"".to_string()),
        "{got:#?}"
    );
    let query = got.child("{jabber:iq:private}query").expect("query");
    let stored = query
        .child("{urn:example:prefs}prefs")
        .expect("the stored element");
    let item = sent(item);
    assert_eq!(merged(stored), item);
}

// ----- (d) MOE-MP settings ----------------------------------------------------------

#[test]
fn moe_settings_read_back_non_empty_and_faithful() {
    let (_dir, node) = node();
    let settings = format!(
        "<settings xmlns='{MOE}' version='3'><ext xmlns:x='urn:example' x:level='2'/>\
         <desktop wallpaper='blue' xml:lang='de'><x:icon xmlns:x='urn:example:icons'/></desktop></settings>"
    );
    let mut office = Client::login_plain(node.addr, "alice", "pw", "office");
    let mut office_raw = Raw::new();
    write(
        &mut office,
        &format!("<iq type='set' id='s1'><query xmlns='jabber:iq:private'>{settings}</query></iq>"),
    );
    office_raw.wait_for(&mut office.stream, "id='s1'", ">");
    assert!(String::from_utf8_lossy(&office_raw.buf).contains("type='result'"));
    let expected = sent(&settings);

    // The MOE short form (docs/moe-mp.md §1).
    let mut laptop = Client::login_plain(node.addr, "alice", "pw", "laptop");
    let mut laptop_raw = Raw::new();
    write(
        &mut laptop,
        &format!("<iq type='get' id='s2'><settings xmlns='{MOE}'/></iq>"),
    );
    laptop_raw.wait_for(&mut laptop.stream, "id='s2'", "</iq>");
    let got = laptop_raw.find("{jabber:client}iq", |t| {
        t.attrs.contains(&"{}id=\"s2\"".to_string())
    });
    let read_back = got
        .child(&format!("{{{MOE}}}settings"))
        .expect("settings in the result");
    assert!(
        read_back.elements().count() > 0,
        "read back empty: {got:#?}"
    );
    assert_eq!(merged(read_back), expected);

    // Pushed to a resource that asks for pushes (§1).
    write(
        &mut laptop,
        &format!("<presence><moe xmlns='{MOE}' settings='push'/></presence>"),
    );
    laptop_raw.wait_for(&mut laptop.stream, "moe-push", "</iq>");
    let push = laptop_raw.find("{jabber:client}iq", |t| {
        t.attrs.iter().any(|a| a.contains("moe-push"))
    });
    let pushed = push
        .child(&format!("{{{MOE}}}settings"))
        .expect("settings pushed");
    assert_eq!(merged(pushed), expected);
}

// ----- allocations of the stanza paths ------------------------------------------------

/// Counts allocations made on the current thread while `COUNTING` is set.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // `try_with`: the thread-locals may be gone while a thread exits.
        if COUNTING.try_with(Cell::get).unwrap_or(false) {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.try_with(Cell::get).unwrap_or(false) {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations (and reallocations) `f` makes on this thread.
fn allocations(f: impl FnOnce()) -> usize {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}

/// The stanza parse (login-sized stanzas and a chat message with a payload) and the write
/// of the fan-out path allocate no more than before the issue. The bounds are the counts
/// measured on ebba0f9 with this same test.
#[test]
fn stanza_parse_and_write_allocate_no_more_than_before() {
    use rendezvous::xml::{Element, CLIENT_NS};
    use rendezvous::xmpp::stream::{ParserLimits, StreamEvent, StreamParser};
    // Allocations each parse took on ebba0f9 (printed by this test, run there with
    // `-- --nocapture`): 3, 21, 27, 26; every write took none.
    let stanzas: [(&str, usize); 4] = [
        ("<presence/>", 3),
        (
            "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
             <resource>r</resource></bind></iq>",
            21,
        ),
        (
            "<message to='romeo@example.net' from='juliet@example.com/balcony' type='chat' \
             id='ktx72v49' xml:lang='en'><body>Art thou not Romeo, and a Montague?</body>\
             <active xmlns='http://jabber.org/protocol/chatstates'/></message>",
            27,
        ),
        (
            "<presence><show>away</show><status>at lunch</status>\
             <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v'/></presence>",
            26,
        ),
    ];
    let mut parser = StreamParser::new(ParserLimits::default());
    parser.push(STREAM_HEADER.as_bytes()).unwrap();
    assert!(matches!(
        parser.next_event(),
        Ok(Some(StreamEvent::Open(_)))
    ));
    for (stanza, bound) in stanzas {
        // Warm the parser's buffers first, as a long-lived session has.
        parser.push(stanza.as_bytes()).unwrap();
        let _ = parser.next_event().unwrap();
        let mut parsed: Option<Element> = None;
        let n = allocations(|| {
            parser.push(stanza.as_bytes()).unwrap();
            if let Ok(Some(StreamEvent::Stanza(el))) = parser.next_event() {
                parsed = Some(el);
            }
        });
        let el = parsed.expect("a stanza");
        println!("parse {n:3} allocations: {stanza}");
        assert!(
            n <= bound,
            "parsing {stanza} took {n} allocations (before: {bound})"
        );
        let mut out = Vec::with_capacity(256);
        let n = allocations(|| el.write_to(&mut out, CLIENT_NS));
        println!("write {n:3} allocations");
        assert_eq!(n, 0, "writing {stanza} allocated");
        assert_eq!(String::from_utf8_lossy(&out).len(), out.len());
    }
}
