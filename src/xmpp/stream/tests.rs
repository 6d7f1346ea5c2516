//! Unit tests of the XMPP stream parser: RFC 6120/6121 examples, valid and invalid.

use super::*;
use crate::xml::{Attr, Node};

/// Stream header in the style of RFC 6120 §9.1.1 (step 1).
const HEADER: &str = "<?xml version='1.0'?>\
        <stream:stream from='juliet@im.example.com' to='im.example.com' version='1.0' \
        xml:lang='en' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

const LIMITS: ParserLimits = ParserLimits {
    max_stanza_bytes: 4096,
    max_depth: 8,
};

/// Drains all available events.
fn drain(p: &mut StreamParser, out: &mut Vec<StreamEvent>) -> Result<(), XmlError> {
    while let Some(ev) = p.next_event()? {
        out.push(ev);
    }
    Ok(())
}

/// Feeds `input` in one push; returns the events, or the first error.
fn parse_all(input: &[u8]) -> Result<Vec<StreamEvent>, XmlError> {
    let mut p = StreamParser::new(LIMITS);
    let mut out = Vec::new();
    p.push(input)?;
    drain(&mut p, &mut out)?;
    Ok(out)
}

/// Feeds `input` one byte at a time, draining after each byte.
fn parse_bytewise(input: &[u8]) -> Result<Vec<StreamEvent>, XmlError> {
    let mut p = StreamParser::new(LIMITS);
    let mut out = Vec::new();
    for b in input {
        p.push(std::slice::from_ref(b))?;
        drain(&mut p, &mut out)?;
    }
    Ok(out)
}

/// Parses `HEADER + body`, checks byte-at-a-time feeding agrees, and returns
/// the stanzas.
fn stanzas(body: &str) -> Result<Vec<Element>, XmlError> {
    let input = format!("{HEADER}{body}");
    let whole = parse_all(input.as_bytes());
    assert_eq!(
        whole,
        parse_bytewise(input.as_bytes()),
        "bytewise differs for {body}"
    );
    let events = whole?;
    assert!(matches!(events.first(), Some(StreamEvent::Open(_))));
    Ok(events
        .into_iter()
        .skip(1)
        .filter_map(|e| match e {
            StreamEvent::Stanza(el) => Some(el),
            _ => None,
        })
        .collect())
}

fn stanza(body: &str) -> Element {
    let mut v = stanzas(body).unwrap_or_else(|e| panic!("{body}: {e}"));
    assert_eq!(v.len(), 1, "{body}");
    v.remove(0)
}

fn err(body: &str) -> XmlError {
    match stanzas(body) {
        Ok(v) => panic!("{body} parsed as {v:?}"),
        Err(e) => e,
    }
}

fn header_err(header: &str) -> XmlError {
    let whole = parse_all(header.as_bytes());
    assert_eq!(whole, parse_bytewise(header.as_bytes()));
    whole.expect_err(header)
}

fn attrs(pairs: &[(&str, &str)]) -> Vec<Attr> {
    pairs.iter().map(|(k, v)| Attr::new(*k, *v)).collect()
}

// ----- valid input ----------------------------------------------------

#[test]
fn stream_header_rfc6120_9_1_1() {
    let events = parse_all(HEADER.as_bytes()).expect("header");
    assert_eq!(
        events,
        vec![StreamEvent::Open(StreamHeader {
            to: Some("im.example.com".into()),
            from: Some("juliet@im.example.com".into()),
            id: None,
            version: Some("1.0".into()),
            lang: Some("en".into()),
        })]
    );
}

#[test]
fn stream_header_variants() {
    // No XML declaration, double quotes, '>' inside a quoted value, a BOM,
    // whitespace before the header, an extra declared prefix.
    let h = "\u{FEFF}\n <stream:stream to=\"a>b&amp;c\" id='x' xmlns:stream=\"http://etherx.jabber.org/streams\" \
                 xmlns=\"jabber:client\" xmlns:db='jabber:server:dialback'>";
    let events = parse_bytewise(h.as_bytes()).expect("header");
    assert_eq!(
        events,
        vec![StreamEvent::Open(StreamHeader {
            to: Some("a>b&c".into()),
            id: Some("x".into()),
            ..StreamHeader::default()
        })]
    );
    // Prefix-free canonicalisation (RFC 6120 §4.8.2): no default namespace.
    let h = "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>\
                 <message xmlns='jabber:client'/><presence/>";
    let events = parse_all(h.as_bytes()).expect("prefix-free");
    assert_eq!(
        events[1],
        StreamEvent::Stanza(Element::new("message", CLIENT_NS))
    );
    assert_eq!(events[2], StreamEvent::Stanza(Element::new("presence", "")));
}

#[test]
fn xml_declaration_forms() {
    for decl in [
        "<?xml version='1.0'?>",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
        "<?xml version='1.0' encoding='utf-8' standalone='yes' ?>",
    ] {
        let input =
            format!("{decl}<stream:stream xmlns='jabber:client' xmlns:stream='{STREAM_NS}'>");
        assert_eq!(
            parse_bytewise(input.as_bytes()).map(|v| v.len()),
            Ok(1),
            "{decl}"
        );
    }
}

#[test]
fn message_rfc6121_5_2_1() {
    let m = stanza(
        "<message from='juliet@example.com/balcony' id='ktx72v49' to='romeo@example.net' \
             type='chat' xml:lang='en'><body>Art thou not Romeo, and a Montague?</body></message>",
    );
    assert_eq!(m.name, "message");
    assert_eq!(m.ns, CLIENT_NS);
    assert_eq!(
        m.attrs,
        attrs(&[
            ("from", "juliet@example.com/balcony"),
            ("id", "ktx72v49"),
            ("to", "romeo@example.net"),
            ("type", "chat"),
            ("xml:lang", "en"),
        ])
    );
    let body = m.get_child("body", CLIENT_NS).expect("body");
    assert_eq!(body.text(), "Art thou not Romeo, and a Montague?");
    assert_eq!(m.children.len(), 1);
}

#[test]
fn presence_rfc6121_with_caps() {
    let p = stanza(
            "<presence id='pres1' xml:lang='en'>\n  <show>dnd</show>\n  <status>Wooing Juliet</status>\n  \
             <priority>1</priority>\n  <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' \
             node='http://psi-im.org' ver='q07IKJEyjvHSyhy//CH0CxmKi8w='/>\n</presence>",
        );
    assert!(p.is("presence", CLIENT_NS));
    assert_eq!(
        p.get_child("show", CLIENT_NS).map(Element::text).as_deref(),
        Some("dnd")
    );
    assert_eq!(
        p.get_child("priority", CLIENT_NS)
            .map(Element::text)
            .as_deref(),
        Some("1")
    );
    let c = p
        .get_child("c", "http://jabber.org/protocol/caps")
        .expect("caps");
    assert_eq!(c.attr("ver"), Some("q07IKJEyjvHSyhy//CH0CxmKi8w="));
    assert_eq!(c.attrs.len(), 3, "xmlns is not an attribute");
    assert_eq!(p.elements().count(), 4);
    assert_eq!(p.text().trim(), "", "only indentation between children");
}

#[test]
fn iq_roster_result_rfc6121_2_1_4() {
    let iq = stanza(
            "<iq id='bv1bs71f' to='juliet@example.com/chamber' type='result'>\
             <query xmlns='jabber:iq:roster' ver='ver11'>\
             <item jid='romeo@example.net' name='Romeo' subscription='both'><group>Friends</group></item>\
             <item jid='mercutio@example.com' name='Mercutio' subscription='from'/>\
             </query></iq>",
        );
    let q = iq.get_child("query", "jabber:iq:roster").expect("query");
    assert_eq!(q.attr("ver"), Some("ver11"));
    let items: Vec<_> = q.elements().collect();
    assert_eq!(items.len(), 2);
    assert!(
        items.iter().all(|i| i.ns == "jabber:iq:roster"),
        "default ns inherited"
    );
    assert_eq!(
        items[0]
            .get_child("group", "jabber:iq:roster")
            .map(Element::text)
            .as_deref(),
        Some("Friends")
    );
    assert!(items[1].children.is_empty());
}

#[test]
fn prefixed_and_undeclared_namespaces() {
    let iq = stanza(
        "<iq type='get' id='1'><r:query xmlns:r='jabber:iq:roster' r:ver='2'>\
             <r:item/><plain/><none xmlns=''><deep/></none></r:query></iq>",
    );
    let q = iq.get_child("query", "jabber:iq:roster").expect("query");
    assert_eq!(
        q.attrs,
        vec![Attr {
            name: "r:ver".into(),
            ns: Some("jabber:iq:roster".into()),
            value: "2".into()
        }]
    );
    let kids: Vec<_> = q
        .elements()
        .map(|e| (e.name.as_str(), e.ns.as_str()))
        .collect();
    assert_eq!(
        kids,
        vec![
            ("item", "jabber:iq:roster"),
            ("plain", CLIENT_NS),
            ("none", "")
        ]
    );
    let none = q.get_child("none", "").expect("none");
    assert!(none.has_child("deep", ""));
}

/// Issue 16: payload prefixes and their declarations survive a parse and a write; a
/// stanza in the content namespace is written unprefixed.
#[test]
fn prefixes_survive_and_stanzas_are_unprefixed() {
    let m = stanza(
        "<c:message xmlns:c='jabber:client' to='a@b'><c:body>hi</c:body>\
         <x xmlns='urn:e' xmlns:y='urn:y' y:a='1'><y:z/></x></c:message>",
    );
    assert_eq!(m.prefix, None);
    assert_eq!(
        m.to_xml(CLIENT_NS),
        "<message to='a@b'><c:body xmlns:c='jabber:client'>hi</c:body>\
         <x xmlns='urn:e' xmlns:y='urn:y' y:a='1'><y:z/></x></message>"
    );
    assert_eq!(stanza(&m.to_xml(CLIENT_NS)), m);
}

#[test]
fn stream_prefix_elements_from_header_scope() {
    let e = stanza(
            "<stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
             <text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>x</text></stream:error>",
        );
    assert!(e.is("error", STREAM_NS));
    assert!(e.has_child("not-well-formed", "urn:ietf:params:xml:ns:xmpp-streams"));
    let t = e
        .get_child("text", "urn:ietf:params:xml:ns:xmpp-streams")
        .expect("text");
    assert_eq!(t.attr("xml:lang"), Some("en"));
}

#[test]
fn negotiation_elements() {
    let v = stanzas(
            "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\
             <auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGp1bGlldAByMG0zMG15cjBtMzA=</auth>",
        )
        .expect("parse");
    assert_eq!(
        v[0],
        Element::new("starttls", "urn:ietf:params:xml:ns:xmpp-tls")
    );
    assert_eq!(
        v[1],
        Element::new("auth", "urn:ietf:params:xml:ns:xmpp-sasl")
            .with_attr("mechanism", "PLAIN")
            .with_text("AGp1bGlldAByMG0zMG15cjBtMzA=")
    );
}

#[test]
fn text_entities_char_refs_and_cdata() {
    let m = stanza(
            "<message id='&lt;&#x263A;&amp;&quot;&apos;&#65;'><body>&lt;&amp;&#x263A;&#65;&gt;&quot;&apos; \
             a>b</body><x xmlns='y'><![CDATA[<b>&amp;]]]]><![CDATA[>]]></x></message>",
        );
    assert_eq!(m.attr("id"), Some("<☺&\"'A"));
    let body = m.get_child("body", CLIENT_NS).expect("body");
    assert_eq!(
        body.children,
        vec![Node::Text("<&☺A>\"' a>b".into())],
        "one merged text node"
    );
    assert_eq!(
        m.get_child("x", "y").map(Element::text).as_deref(),
        Some("<b>&amp;]]>")
    );
}

#[test]
fn end_of_line_and_attribute_normalisation() {
    let m = stanza("<message a='x\ty\r\nz' b='&#10;'><body>l1\r\nl2\rl3</body></message>");
    assert_eq!(m.attr("a"), Some("x y z"));
    assert_eq!(m.attr("b"), Some("\n"));
    assert_eq!(
        m.get_child("body", CLIENT_NS).map(Element::text).as_deref(),
        Some("l1\nl2\nl3")
    );
}

#[test]
fn tricky_but_valid_markup() {
    let m =
        stanza("<message id='a>b' x=\"'/>\" ><a><a><a/></a></a><body >t</body ><e/></message >");
    assert_eq!(m.attrs, attrs(&[("id", "a>b"), ("x", "'/>")]));
    assert_eq!(m.elements().count(), 3);
    let a = m
        .get_child("a", CLIENT_NS)
        .and_then(|a| a.get_child("a", CLIENT_NS));
    assert!(a.is_some_and(|a| a.has_child("a", CLIENT_NS)));
}

#[test]
fn byte_at_a_time_equals_whole() {
    let input = format!(
            "{HEADER}\n<message to='a@b' id='1'><body>hi &amp; &#x263A; ☺ <![CDATA[ ]]> ]]></body></message> \
             <iq type='get' id='2'><query xmlns='jabber:iq:roster'/></iq>\n\t<presence/></stream:stream>"
        );
    let whole = parse_all(input.as_bytes()).expect("whole");
    assert_eq!(whole.len(), 5);
    assert_eq!(whole.last(), Some(&StreamEvent::Close));
    assert_eq!(parse_bytewise(input.as_bytes()).expect("bytewise"), whole);
    // Also in every two-way split.
    for cut in 0..input.len() {
        let mut p = StreamParser::new(LIMITS);
        let mut out = Vec::new();
        p.push(&input.as_bytes()[..cut]).expect("push");
        drain(&mut p, &mut out).expect("first half");
        p.push(&input.as_bytes()[cut..]).expect("push");
        drain(&mut p, &mut out).expect("second half");
        assert_eq!(out, whole, "split at {cut}");
    }
}

#[test]
fn two_stanzas_in_one_push_and_split_stanza() {
    let mut p = StreamParser::new(LIMITS);
    p.push(HEADER.as_bytes()).expect("push");
    assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Open(_)))));
    assert_eq!(p.next_event(), Ok(None));
    p.push(b"<presence/><message><body>x</body></message><iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/")
            .expect("push");
    assert_eq!(
        p.next_event(),
        Ok(Some(StreamEvent::Stanza(Element::new(
            "presence", CLIENT_NS
        ))))
    );
    assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Stanza(m))) if m.name == "message"));
    assert_eq!(p.next_event(), Ok(None));
    assert!(p.buffered_bytes() > 0);
    p.push(b"></iq").expect("push");
    assert_eq!(p.next_event(), Ok(None));
    p.push(b">").expect("push");
    let iq = match p.next_event() {
        Ok(Some(StreamEvent::Stanza(iq))) => iq,
        other => panic!("{other:?}"),
    };
    assert!(iq.has_child("ping", "urn:xmpp:ping"));
    assert_eq!(p.next_event(), Ok(None));
    assert_eq!(p.buffered_bytes(), 0);
}

#[test]
fn whitespace_keepalives_and_stream_level_text() {
    let mut p = StreamParser::new(LIMITS);
    p.push(HEADER.as_bytes()).expect("push");
    assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Open(_)))));
    for _ in 0..1000 {
        p.push(b" \n\t\r ").expect("keepalive");
        assert_eq!(p.next_event(), Ok(None));
        assert_eq!(p.buffered_bytes(), 0);
    }
    p.push(b"stray text<![CDATA[ignored]]> <presence/>")
        .expect("push");
    assert_eq!(
        p.next_event(),
        Ok(Some(StreamEvent::Stanza(Element::new(
            "presence", CLIENT_NS
        ))))
    );
    assert_eq!(p.next_event(), Ok(None));
}

#[test]
fn stream_close() {
    let events = parse_bytewise(format!("{HEADER}<presence/></stream:stream >\n ").as_bytes())
        .expect("close");
    assert_eq!(events.len(), 3);
    assert_eq!(events[2], StreamEvent::Close);
    assert_eq!(
        parse_all(format!("{HEADER}</stream:stream><presence/>").as_bytes()),
        Err(XmlError::NotWellFormed(
            "data after the closing </stream:stream>".into()
        ))
    );
    // An empty stream header opens and closes the stream.
    let events = parse_all(
        format!("<stream:stream xmlns='jabber:client' xmlns:stream='{STREAM_NS}'/>").as_bytes(),
    )
    .expect("empty header");
    assert!(matches!(
        events.as_slice(),
        [StreamEvent::Open(_), StreamEvent::Close]
    ));
}

#[test]
fn stanzas_before_an_error_are_delivered_first() {
    let mut p = StreamParser::new(LIMITS);
    p.push(format!("{HEADER}<presence/><!-- x --><presence/>").as_bytes())
        .expect("push");
    assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Open(_)))));
    assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Stanza(_)))));
    let e = p.next_event().expect_err("comment");
    assert_eq!(
        e,
        XmlError::RestrictedXml("comment at stream level is not allowed".into())
    );
    // Sticky: the same error again, from both entry points.
    assert_eq!(p.next_event(), Err(e.clone()));
    assert_eq!(p.push(b"<presence/>"), Err(e.clone()));
    assert_eq!(p.buffered_bytes(), 0);
}

#[test]
fn reset_expects_a_new_header() {
    let mut p = StreamParser::new(LIMITS);
    p.push(
        format!("{HEADER}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\x16\x03\x01")
            .as_bytes(),
    )
    .expect("push");
    assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Open(_)))));
    assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Stanza(e))) if e.name == "starttls"));
    p.reset();
    assert_eq!(p.buffered_bytes(), 0);
    p.push(format!("{HEADER}<presence/>").as_bytes())
        .expect("push");
    assert!(
        matches!(p.next_event(), Ok(Some(StreamEvent::Open(h))) if h.lang.as_deref() == Some("en"))
    );
    assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Stanza(_)))));
    // Reset also clears an error.
    p.push(b"</x>").expect("push");
    assert!(p.next_event().is_err());
    p.reset();
    p.push(HEADER.as_bytes()).expect("push after reset");
    assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Open(_)))));
}

#[test]
fn many_stanzas_leave_little_buffered() {
    let mut p = StreamParser::new(LIMITS);
    p.push(HEADER.as_bytes()).expect("push");
    let mut count = 0;
    let msg = b"<message to='romeo@example.net' type='chat' id='x'><body>hello</body></message>";
    for i in 0..10_000 {
        // Alternate single stanzas, batches and a stanza split across pushes.
        if i % 100 == 0 {
            let batch: Vec<u8> = msg.iter().copied().cycle().take(msg.len() * 50).collect();
            p.push(&batch).expect("batch");
        } else {
            p.push(&msg[..10]).expect("push");
            p.push(&msg[10..]).expect("push");
        }
        while let Some(ev) = p.next_event().expect("event") {
            if matches!(ev, StreamEvent::Stanza(_)) {
                count += 1;
            }
        }
        assert_eq!(p.buffered_bytes(), 0);
    }
    assert_eq!(count, 9_900 + 100 * 50);
    assert!(
        p.buf.capacity() <= BUFFER_SHRINK_ABOVE,
        "capacity {}",
        p.buf.capacity()
    );
}

#[test]
fn serialisation_round_trip() {
    let input = "<iq type='result' id='r&amp;1'><query xmlns='jabber:iq:roster' ver='v&apos;1'>\
             <item jid='romeo@example.net' name='R &lt;3 &quot;J&quot;'><group>Friends &amp; &lt;Foes&gt;</group></item>\
             <x:y xmlns:x='urn:x' x:attr='1'><x:z/>tail</x:y></query></iq>";
    let parsed = stanza(input);
    let xml = parsed.to_xml(CLIENT_NS);
    // Issue 16: the element keeps its prefix and the declaration its prefixed attribute
    // needs (this used to write `<y xmlns='urn:x' x:attr='1'><z/>tail</y>`, with `x` unbound).
    assert_eq!(
        xml,
        "<iq type='result' id='r&amp;1'><query xmlns='jabber:iq:roster' ver='v&apos;1'>\
         <item jid='romeo@example.net' name='R &lt;3 &quot;J&quot;'><group>Friends &amp; &lt;Foes&gt;</group></item>\
         <x:y xmlns:x='urn:x' x:attr='1'><x:z/>tail</x:y></query></iq>",
        "prefixes and their declarations are kept"
    );
    assert_eq!(stanza(&xml), parsed, "a full round trip");
    // And without the prefixed attribute, as before.
    let mut no_prefixed = parsed.clone();
    no_prefixed
        .get_child_mut("query", "jabber:iq:roster")
        .and_then(|q| q.get_child_mut("y", "urn:x"))
        .map(|y| y.remove_attr("x:attr"));
    let again = stanza(&no_prefixed.to_xml(CLIENT_NS));
    assert_eq!(again, no_prefixed);

    let m = Element::new("message", CLIENT_NS)
        .with_attr("to", "a'b\"c<d>&\t\n\r")
        .with_attr("xml:lang", "en")
        .with_child(Element::new("body", CLIENT_NS).with_text("<&>\"' ☺ \r\n ]]>"))
        .with_child(Element::new("error", STREAM_NS).with_child(Element::new("x", "")));
    assert_eq!(stanza(&m.to_xml(CLIENT_NS)), m);
}

// ----- errors -----------------------------------------------------------

#[test]
fn oversized_stanza_refused_before_it_is_complete() {
    let limits = ParserLimits {
        max_stanza_bytes: 1024,
        max_depth: 8,
    };
    let mut p = StreamParser::new(limits);
    p.push(HEADER.as_bytes()).expect("header");
    assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Open(_)))));
    p.push(b"<message><body>").expect("start");
    let chunk = [b'a'; 100];
    let mut pushed = 0usize;
    let error = loop {
        assert!(pushed < 10 * 1024 * 1024, "never refused");
        if let Err(e) = p.push(&chunk) {
            break e;
        }
        pushed += chunk.len();
        if let Err(e) = p.next_event() {
            break e;
        }
        assert!(p.buf.len() <= 1024 + PUSH_CHUNK);
    };
    assert_eq!(
        error,
        XmlError::PolicyViolation("<message> exceeds the limit of 1024 bytes".into())
    );
    assert!(pushed <= 1024 + chunk.len(), "refused after {pushed} bytes");
    assert_eq!(p.push(b"x"), Err(error));

    // A complete but oversized stanza in one push, and a single 10 MB push.
    let big = format!(
        "{HEADER}<message><body>{}</body></message>",
        "b".repeat(5000)
    );
    assert_eq!(
        parse_all(big.as_bytes()),
        Err(XmlError::PolicyViolation(
            "<message> exceeds the limit of 4096 bytes".into()
        ))
    );
    let mut p = StreamParser::new(LIMITS);
    let huge = format!("{HEADER}<message><body>{}", "c".repeat(10 * 1024 * 1024));
    p.push(huge.as_bytes()).expect("push latches");
    assert!(
        p.buf.len() <= 4096 + HEADER.len() + PUSH_CHUNK,
        "buffered {}",
        p.buf.len()
    );
    let mut out = Vec::new();
    assert!(matches!(
        drain(&mut p, &mut out),
        Err(XmlError::PolicyViolation(_))
    ));
    assert_eq!(out.len(), 1, "the header is still delivered");
}

#[test]
fn oversized_header_and_whitespace_are_bounded() {
    let header = format!("<stream:stream to='{}'", "x".repeat(5000));
    assert_eq!(
        header_err(&header),
        XmlError::PolicyViolation("stream header exceeds the limit of 4096 bytes".into())
    );
    // Endless whitespace before the header is not buffered.
    let mut p = StreamParser::new(LIMITS);
    for _ in 0..100 {
        p.push(&[b' '; 1000]).expect("ws");
        assert_eq!(p.next_event(), Ok(None));
        assert_eq!(p.buffered_bytes(), 0);
    }
}

#[test]
fn too_deep() {
    let nested = |n: usize| format!("{}{}", "<a>".repeat(n), "</a>".repeat(n));
    // The stanza itself is level 1; max_depth is 8.
    assert!(stanzas(&nested(8)).is_ok());
    assert_eq!(
        err(&nested(9)),
        XmlError::PolicyViolation("elements nested deeper than 8 levels in <a>".into())
    );
    assert_eq!(
        err(&format!("<message>{}<x/></message>", "<a>".repeat(7))),
        XmlError::PolicyViolation("elements nested deeper than 8 levels in <message>".into())
    );
}

#[test]
fn doctype_and_entity_declarations() {
    assert_eq!(
        header_err("<?xml version='1.0'?><!DOCTYPE stream [<!ENTITY x 'y'>]><stream:stream>"),
        XmlError::RestrictedXml(
            "<!DOCTYPE declaration before the stream header is not allowed".into()
        )
    );
    assert_eq!(
        err("<message><!ENTITY lol 'lol'></message>"),
        XmlError::RestrictedXml("<!ENTITY declaration in <message> is not allowed".into())
    );
}

#[test]
fn comments() {
    assert_eq!(
        err("<message><body>a<!-- c --></body></message>"),
        XmlError::RestrictedXml("comment in <message> is not allowed".into())
    );
    assert_eq!(
        header_err("<!-- hi --><stream:stream>"),
        XmlError::RestrictedXml("comment before the stream header is not allowed".into())
    );
}

#[test]
fn processing_instructions() {
    assert_eq!(
        err("<message><?php echo 1; ?></message>"),
        XmlError::RestrictedXml(
            "processing instruction <?php?> in <message> is not allowed".into()
        )
    );
    assert_eq!(
        err("<?xml version='1.0'?>"),
        XmlError::RestrictedXml(
            "processing instruction <?xml?> at stream level is not allowed".into()
        )
    );
    assert_eq!(
        header_err("<?xml-stylesheet href='a'?><stream:stream>"),
        XmlError::RestrictedXml(
            "processing instruction <?xml-stylesheet?> before the stream header is not allowed"
                .into()
        )
    );
    assert_eq!(
        header_err("<?xml version='1.0'?><?xml version='1.0'?>"),
        XmlError::RestrictedXml(
            "processing instruction <?xml?> before the stream header is not allowed".into()
        )
    );
}

#[test]
fn unknown_entities() {
    assert_eq!(
        err("<message><body>&foo;</body></message>"),
        XmlError::RestrictedXml(
            "entity reference &foo; in <body> (only the predefined entities are allowed)".into()
        )
    );
    assert_eq!(
            err("<message to='&nbsp;'/>"),
            XmlError::RestrictedXml(
                "entity reference &nbsp; in attribute 'to' of <message> (only the predefined entities are allowed)"
                    .into()
            )
        );
    assert_eq!(
        err("<message><body>a & b</body></message>").condition(),
        "not-well-formed"
    );
    assert_eq!(err("<message to='a & b'/>").condition(), "not-well-formed");
}

#[test]
fn invalid_character_references_and_characters() {
    for bad in ["&#0;", "&#x1;", "&#xZZ;", "&#xFFFE;", "&#xD800;", "&#;"] {
        let e = err(&format!("<message><body>{bad}</body></message>"));
        assert_eq!(
            e,
            XmlError::NotWellFormed(format!("invalid character reference {bad} in <body>")),
            "{bad}"
        );
    }
    assert_eq!(
        err("<message to='&#x1;'/>"),
        XmlError::NotWellFormed("illegal character U+0001 in attribute 'to' of <message>".into())
    );
    assert_eq!(
        err("<message><body>a\u{7}</body></message>"),
        XmlError::NotWellFormed("illegal character U+0007 in <message>".into())
    );
}

#[test]
fn mismatched_and_stray_end_tags() {
    let e = err("<message><body>x</bodx></message>");
    assert_eq!(e.condition(), "not-well-formed");
    assert!(
        e.text().contains("</body>") && e.text().contains("<message>"),
        "{e}"
    );
    assert_eq!(
        err("<presence/></iq>"),
        XmlError::NotWellFormed(
            "end tag </iq> at stream level does not close <stream:stream>".into()
        )
    );
    assert_eq!(
        header_err("</stream:stream>"),
        XmlError::NotWellFormed("end tag </stream:stream> before the stream header".into())
    );
}

#[test]
fn malformed_tags_and_attributes() {
    assert_eq!(
        err("<message to='a<b'/>"),
        XmlError::NotWellFormed("'<' in an attribute value of <message>".into())
    );
    assert_eq!(
        err("<message to='a' to='b'/>"),
        XmlError::NotWellFormed("duplicate attribute 'to' in <message>".into())
    );
    assert_eq!(
        err("<message xmlns='jabber:client' xmlns='jabber:client'/>"),
        XmlError::NotWellFormed("duplicate attribute 'xmlns' in <message>".into())
    );
    assert_eq!(err("<message to/>").condition(), "not-well-formed");
    assert_eq!(err("<message to=a/>").condition(), "not-well-formed");
    assert_eq!(
        err("<message <body/>"),
        XmlError::NotWellFormed("'<' inside the start tag of <message>".into())
    );
    assert_eq!(
        err("< message/>"),
        XmlError::NotWellFormed("invalid character ' ' after '<' at stream level".into())
    );
    assert_eq!(
        err("<message><1a/></message>"),
        XmlError::NotWellFormed("invalid character '1' after '<' in <message>".into())
    );
    assert_eq!(
        err("<a:b:c xmlns:a='x'/>"),
        XmlError::NotWellFormed("invalid element name 'a:b:c'".into())
    );
    assert_eq!(
        err("<m xmlns:p=''/>"),
        XmlError::NotWellFormed("prefix 'p' bound to an empty namespace in <m>".into())
    );
    assert_eq!(
        err("<m xmlns:xmlns='urn:x'/>"),
        XmlError::NotWellFormed("the xmlns prefix cannot be declared in <m>".into())
    );
    assert_eq!(
        err("<m><e/ ></m>"),
        XmlError::NotWellFormed("whitespace between '/' and '>' in <e>".into())
    );
    assert_eq!(
        err("<m><![CDATX[x]]></m>"),
        XmlError::NotWellFormed("malformed CDATA section in <m>".into())
    );
    assert_eq!(
        header_err("hello <stream:stream>"),
        XmlError::NotWellFormed("text before the stream header".into())
    );
}

#[test]
fn undeclared_prefixes() {
    assert_eq!(
        err("<message><foo:bar/></message>"),
        XmlError::BadNamespacePrefix("undeclared namespace prefix 'foo' on <foo:bar>".into())
    );
    assert_eq!(
        err("<message foo:x='1'/>"),
        XmlError::BadNamespacePrefix(
            "undeclared namespace prefix 'foo' on attribute 'foo:x' of <message>".into()
        )
    );
    // A prefix declared on an element is out of scope after it closes.
    assert_eq!(
        err("<m><a xmlns:p='urn:p'><p:b/></a><p:c/></m>"),
        XmlError::BadNamespacePrefix("undeclared namespace prefix 'p' on <p:c>".into())
    );
    assert_eq!(
        header_err("<stream:stream xmlns='jabber:client'>"),
        XmlError::BadNamespacePrefix(
            "undeclared prefix on the stream header <stream:stream>".into()
        )
    );
}

#[test]
fn stream_header_namespace_errors() {
    // RFC 6120 §4.9.3.10: wrong content namespace.
    assert_eq!(
        header_err(&format!(
            "<stream:stream xmlns='jabber:server' xmlns:stream='{STREAM_NS}'>"
        )),
        XmlError::InvalidNamespace(
            "content namespace 'jabber:server' is not supported; expected 'jabber:client'".into()
        )
    );
    // RFC 6120 §4.9.3.10: wrong stream namespace.
    assert_eq!(
            header_err("<stream:stream xmlns='jabber:client' xmlns:stream='http://wrong.namespace.example.org/'>"),
            XmlError::InvalidNamespace(
                "stream header <stream:stream> is not <stream> in namespace 'http://etherx.jabber.org/streams' \
                 (found namespace 'http://wrong.namespace.example.org/')"
                    .into()
            )
        );
    // Wrong root element.
    assert_eq!(
        header_err(&format!(
            "<stream:foo xmlns='jabber:client' xmlns:stream='{STREAM_NS}'>"
        ))
        .condition(),
        "invalid-namespace"
    );
    assert_eq!(
        header_err("<message xmlns='jabber:client'>").condition(),
        "invalid-namespace"
    );
    // RFC 6120 §4.9.3.2: a prefix other than "stream", or none.
    assert_eq!(
        header_err(&format!(
            "<foobar:stream xmlns='jabber:client' xmlns:foobar='{STREAM_NS}'>"
        )),
        XmlError::BadNamespacePrefix(
            "stream header <foobar:stream> must use the 'stream' prefix".into()
        )
    );
    assert_eq!(
        header_err(&format!("<stream xmlns='{STREAM_NS}'>")).condition(),
        "bad-namespace-prefix"
    );
}

#[test]
fn encodings() {
    let bad_utf8 = [
        HEADER.as_bytes(),
        b"<message><body>\xC3\x28</body></message>",
    ]
    .concat();
    let e = parse_all(&bad_utf8).expect_err("bad utf-8");
    assert_eq!(
        e,
        XmlError::UnsupportedEncoding("invalid UTF-8 at byte 15 of <message>".into())
    );
    assert_eq!(parse_bytewise(&bad_utf8), Err(e));
    assert_eq!(
        parse_all(b"<stream:stream to='\xFF'>")
            .expect_err("header")
            .condition(),
        "unsupported-encoding"
    );
    assert_eq!(
        header_err("<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream>"),
        XmlError::UnsupportedEncoding(
            "XML declaration names encoding 'ISO-8859-1'; only UTF-8 is supported".into()
        )
    );
    assert_eq!(
        parse_all(b"\xFE\xFF\x00<").expect_err("utf-16").condition(),
        "unsupported-encoding"
    );
    assert_eq!(
        parse_all(b"<\x00s\x00").expect_err("utf-16le").condition(),
        "unsupported-encoding"
    );
    assert_eq!(
        header_err("<?xml version='1.1'?><stream:stream>"),
        XmlError::NotWellFormed("XML version 1.1 is not supported; XMPP uses XML 1.0".into())
    );
}

#[test]
fn error_conditions_and_text() {
    let cases = [
        (XmlError::NotWellFormed("a".into()), "not-well-formed"),
        (XmlError::RestrictedXml("a".into()), "restricted-xml"),
        (XmlError::PolicyViolation("a".into()), "policy-violation"),
        (XmlError::InvalidNamespace("a".into()), "invalid-namespace"),
        (
            XmlError::BadNamespacePrefix("a".into()),
            "bad-namespace-prefix",
        ),
        (
            XmlError::UnsupportedEncoding("a".into()),
            "unsupported-encoding",
        ),
    ];
    for (e, cond) in cases {
        assert_eq!(e.condition(), cond);
        assert_eq!(e.text(), "a");
        assert_eq!(e.to_string(), format!("{cond}: a"));
    }
    assert_eq!(
        ParserLimits::default().max_stanza_bytes,
        DEFAULT_MAX_STANZA_BYTES
    );
}

#[test]
fn byte_at_a_time_is_linear() {
    // 60 KB fed one byte at a time: a scanner that rescanned from the start
    // of the element would need ~1.8e9 steps here.
    let body = "x".repeat(60 * 1024);
    let input = format!("{HEADER}<message><body>{body}</body></message>");
    let mut p = StreamParser::new(ParserLimits::default());
    let started = std::time::Instant::now();
    let mut out = Vec::new();
    for b in input.as_bytes() {
        p.push(std::slice::from_ref(b)).expect("push");
        drain(&mut p, &mut out).expect("drain");
    }
    assert_eq!(out.len(), 2);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn mutated_input_never_panics_and_chunking_agrees() {
    let base = format!(
            "{HEADER}<message to='a@b' id='1'><body>hi &amp; &#x263A; <![CDATA[x]]></body>\
             <r:x xmlns:r='urn:r' r:a='&lt;'/></message><iq type='get'><q xmlns='q'/></iq></stream:stream>"
        );
    let base = base.as_bytes();
    let interesting = b"<>/'\"&;![]-?=: \x00\xffax#\r";
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..3000 {
        let mut input = base.to_vec();
        for _ in 0..1 + next() % 3 {
            let at = (next() as usize) % input.len();
            let b = interesting[(next() as usize) % interesting.len()];
            match next() % 3 {
                0 => input[at] = b,
                1 => input.insert(at, b),
                _ => {
                    input.remove(at);
                }
            }
        }
        let whole = parse_all(&input);
        assert_eq!(
            whole,
            parse_bytewise(&input),
            "{}",
            String::from_utf8_lossy(&input)
        );
    }
}

/// Throughput check: `cargo test --release -- --ignored --nocapture throughput`.
#[test]
#[ignore]
fn throughput() {
    let msg =
        b"<message to='romeo@example.net/orchard' from='juliet@example.com/balcony' type='chat' \
                    id='ktx72v49' xml:lang='en'><body>Art thou not Romeo, and a Montague?</body>\
                    <active xmlns='http://jabber.org/protocol/chatstates'/></message>";
    let n = 1_000_000;
    let mut p = StreamParser::new(ParserLimits::default());
    p.push(HEADER.as_bytes()).expect("push");
    assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Open(_)))));
    let batch: Vec<u8> = msg.iter().copied().cycle().take(msg.len() * 20).collect();
    let started = std::time::Instant::now();
    let mut count = 0;
    for _ in 0..n / 20 {
        p.push(&batch).expect("push");
        while let Some(ev) = p.next_event().expect("event") {
            if matches!(ev, StreamEvent::Stanza(_)) {
                count += 1;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(count, n);
    println!(
        "{:.0} stanzas/s ({} bytes each)",
        n as f64 / secs,
        msg.len()
    );
}
