//! Unit tests of the tree, reader and writer: the examples of XML Namespaces 1.0 (§6), subtrees
//! moved between documents, escaping, and the restricted XML the readers refuse.

use super::*;

const DOC: Limits = Limits {
    max_bytes: 64 * 1024,
    max_depth: 16,
};

fn doc(xml: &str) -> Element {
    parse_document(xml.as_bytes(), &DOC).unwrap_or_else(|e| panic!("{e}: {xml}"))
}

fn doc_err(xml: &str) -> XmlError {
    match parse_document(xml.as_bytes(), &DOC) {
        Ok(el) => panic!("accepted {el:?}"),
        Err(e) => e,
    }
}

/// The expanded names of `el` and its descendants in document order, with their attributes'
/// expanded names and values: what namespace-aware software sees, whatever the prefixes.
fn expanded(el: &Element) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(el: &Element, out: &mut Vec<String>) {
        let mut line = format!("{{{}}}{}", el.ns, el.name);
        for a in &el.attrs {
            let ns = match (a.prefix(), a.ns.as_deref()) {
                (None, _) => "",
                (Some("xml"), _) => XML_NS,
                (Some(_), Some(ns)) => ns,
                (Some(_), None) => "?",
            };
            line.push_str(&format!(" {{{ns}}}{}={:?}", a.local_name(), a.value));
        }
        out.push(line);
        for c in &el.children {
            match c {
                Node::Element(e) => walk(e, out),
                Node::Text(t) => out.push(format!("text {t:?}")),
            }
        }
    }
    walk(el, &mut out);
    out
}

/// Writes `el` standalone, parses the output as a document, and checks that it means the
/// same: same expanded names, attribute values and text.
fn standalone_round_trip(el: &Element) -> String {
    let mut out = String::new();
    el.write(&Context::standalone(Quote::Double), &mut out);
    let again = doc(&out);
    assert_eq!(expanded(&again), expanded(el), "{out}");
    assert_eq!(&again, el, "{out}");
    out
}

// ----- XML Namespaces 1.0 §6 -----------------------------------------------------------

#[test]
fn ns_6_1_prefixed_elements_keep_their_prefix() {
    let html = doc("<?xml version=\"1.0\"?>\
        <html:html xmlns:html='http://www.w3.org/1999/xhtml'>\
        <html:head><html:title>Frobnostication</html:title></html:head>\
        <html:body><html:p>Moved to <html:a href='http://frob.example.com'>here.</html:a></html:p></html:body>\
        </html:html>");
    assert!(html.is("html", "http://www.w3.org/1999/xhtml"));
    assert_eq!(html.prefix.as_deref(), Some("html"));
    let a = html
        .get_child("body", "http://www.w3.org/1999/xhtml")
        .and_then(|b| b.get_child("p", "http://www.w3.org/1999/xhtml"))
        .and_then(|p| p.get_child("a", "http://www.w3.org/1999/xhtml"))
        .expect("a");
    assert_eq!(a.attr("href"), Some("http://frob.example.com"));
    assert_eq!(a.attr_ns("", "href"), Some("http://frob.example.com"));
    assert_eq!(
        standalone_round_trip(&html),
        "<html:html xmlns:html=\"http://www.w3.org/1999/xhtml\">\
         <html:head><html:title>Frobnostication</html:title></html:head>\
         <html:body><html:p>Moved to <html:a href=\"http://frob.example.com\">here.</html:a></html:p></html:body>\
         </html:html>"
    );

    let book = doc(
        "<bk:book xmlns:bk='urn:loc.gov:books' xmlns:isbn='urn:ISBN:0-395-36341-6'>\
        <bk:title>Cheaper by the Dozen</bk:title><isbn:number>1568491379</isbn:number></bk:book>",
    );
    assert!(book.has_child("title", "urn:loc.gov:books"));
    assert!(book.has_child("number", "urn:ISBN:0-395-36341-6"));
    // The isbn prefix is declared where it is first used.
    assert_eq!(
        standalone_round_trip(&book),
        "<bk:book xmlns:bk=\"urn:loc.gov:books\"><bk:title>Cheaper by the Dozen</bk:title>\
         <isbn:number xmlns:isbn=\"urn:ISBN:0-395-36341-6\">1568491379</isbn:number></bk:book>"
    );
}

#[test]
fn ns_6_2_default_namespace_changed_and_undeclared() {
    let book = doc("<book xmlns='urn:loc.gov:books' xmlns:isbn='urn:ISBN:0-395-36341-6'>\
        <title>Cheaper by the Dozen</title><isbn:number>1568491379</isbn:number>\
        <notes><p xmlns='http://www.w3.org/1999/xhtml'>This is a <i>funny</i> book!</p></notes></book>");
    let p = book
        .get_child("notes", "urn:loc.gov:books")
        .and_then(|n| n.get_child("p", "http://www.w3.org/1999/xhtml"))
        .expect("p");
    assert!(p.has_child("i", "http://www.w3.org/1999/xhtml"));
    standalone_round_trip(&book);

    let beers = doc(
        "<Beers><table xmlns='http://www.w3.org/1999/xhtml'><th><td>Name</td></th>\
        <tr><td><brandName xmlns=\"\">Huntsman</brandName></td></tr></table></Beers>",
    );
    let brand = beers
        .get_child("table", "http://www.w3.org/1999/xhtml")
        .and_then(|t| t.get_child("tr", "http://www.w3.org/1999/xhtml"))
        .and_then(|t| t.get_child("td", "http://www.w3.org/1999/xhtml"))
        .and_then(|t| t.get_child("brandName", ""))
        .expect("brandName in no namespace");
    assert_eq!(brand.text(), "Huntsman");
    let out = standalone_round_trip(&beers);
    assert!(
        out.contains("<brandName xmlns=\"\">Huntsman</brandName>"),
        "{out}"
    );
    // Inside an XMPP stream the outer element declares its empty namespace too.
    assert_eq!(
        brand.to_xml(CLIENT_NS),
        "<brandName xmlns=''>Huntsman</brandName>"
    );
}

#[test]
fn ns_6_3_attributes_unique_by_expanded_name() {
    let e = doc_err(
        "<x xmlns:n1='http://www.w3.org' xmlns:n2='http://www.w3.org'><bad a='1' a='2'/></x>",
    );
    assert_eq!(
        e,
        XmlError::NotWellFormed("duplicate attribute 'a' in <bad>".into())
    );
    let e = doc_err(
        "<x xmlns:n1='http://www.w3.org' xmlns:n2='http://www.w3.org'><bad n1:a='1' n2:a='2'/></x>",
    );
    assert_eq!(
        e,
        XmlError::NotWellFormed(
            "attributes 'n1:a' and 'n2:a' of <bad> are both {http://www.w3.org}a".into()
        )
    );
    let good = doc("<x xmlns:n1='http://www.w3.org' xmlns='http://www.w3.org'>\
        <good a='1' b='2'/><good a='1' n1:a='2'/></x>");
    let second = good.elements().nth(1).expect("second good");
    assert_eq!(second.attr_ns("", "a"), Some("1"));
    assert_eq!(second.attr_ns("http://www.w3.org", "a"), Some("2"));
    standalone_round_trip(&good);
}

// ----- subtrees out of their document ------------------------------------------------------

#[test]
fn declarations_on_the_element_and_inherited_are_written_where_needed() {
    let parent = doc("<a xmlns='urn:a' xmlns:p='urn:p' xmlns:q='urn:q'>\
        <p:b p:x='1' q:y='2'><c/><p:d xml:lang='en'>t</p:d></p:b></a>");
    let b = parent.get_child("b", "urn:p").expect("b").clone();
    assert_eq!(b.prefix.as_deref(), Some("p"));
    // Alone: every binding it inherited is declared on it, its default namespace on <c>.
    assert_eq!(
        standalone_round_trip(&b),
        "<p:b xmlns:p=\"urn:p\" xmlns:q=\"urn:q\" p:x=\"1\" q:y=\"2\">\
         <c xmlns=\"urn:a\"/><p:d xml:lang=\"en\">t</p:d></p:b>"
    );
    // Inside another element of another namespace, in a stream.
    let moved = Element::new("message", CLIENT_NS).with_child(b.clone());
    let xml = moved.to_xml(CLIENT_NS);
    assert_eq!(
        xml,
        "<message><p:b xmlns:p='urn:p' xmlns:q='urn:q' p:x='1' q:y='2'>\
         <c xmlns='urn:a'/><p:d xml:lang='en'>t</p:d></p:b></message>"
    );
    let scope = [("", CLIENT_NS), ("stream", STREAM_NS)];
    let again = parse_fragment(xml.as_bytes(), &scope, &DOC).expect("well-formed");
    assert_eq!(expanded(&again), expanded(&moved));
    // Inside a parent that already binds p (to the same and to another namespace).
    let same = doc("<r xmlns:p='urn:p'/>");
    let mut r = same.clone();
    r.push_child(b.clone());
    let out = standalone_round_trip(&r);
    assert!(
        out.starts_with("<r xmlns=\"\"><p:b xmlns:p=\"urn:p\" xmlns:q=\"urn:q\""),
        "{out}"
    );
    let other = Element::new("r", "urn:r")
        .with_prefix("p")
        .with_child(b.clone());
    let out = standalone_round_trip(&other);
    assert!(
        out.starts_with("<p:r xmlns:p=\"urn:r\"><p:b xmlns:p=\"urn:p\""),
        "{out}"
    );
}

#[test]
fn the_issue_payloads_survive_a_stream() {
    // The payloads of issue 16: a prefix declared on the element that uses it.
    let scope = [("", CLIENT_NS), ("stream", STREAM_NS)];
    for payload in [
        "<x xmlns='urn:e' xmlns:y='urn:y' y:a='1'><y:z/></x>",
        "<ext xmlns:x='urn:example' x:level='2'/>",
        "<p xmlns='urn:outer' xml:lang='de'><q xmlns='urn:inner'>x</q><r xmlns=''/></p>",
    ] {
        let stanza = format!("<message to='b@example.com'>{payload}</message>");
        let el = parse_fragment(stanza.as_bytes(), &scope, &DOC).expect("parse");
        let mut wire = Vec::new();
        el.write_to(&mut wire, CLIENT_NS);
        let again = parse_fragment(&wire, &scope, &DOC)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&wire)));
        assert_eq!(expanded(&again), expanded(&el));
        assert_eq!(again, el);
        // Prefixes as written.
        assert_eq!(String::from_utf8_lossy(&wire), stanza);
    }
}

#[test]
fn stream_prefix_is_in_scope_in_a_stream_only() {
    let e = Element::new("error", STREAM_NS).with_child(Element::new("x", "urn:x"));
    assert_eq!(
        e.to_xml(CLIENT_NS),
        "<stream:error><x xmlns='urn:x'/></stream:error>"
    );
    let mut out = String::new();
    e.write(&Context::standalone(Quote::Single), &mut out);
    assert_eq!(
        out,
        "<error xmlns='http://etherx.jabber.org/streams'><x xmlns='urn:x'/></error>"
    );
    // A payload that rebinds the stream prefix keeps its own binding.
    let scope = [("", CLIENT_NS), ("stream", STREAM_NS)];
    let m = parse_fragment(
        b"<message><stream:x xmlns:stream='urn:other'/></message>",
        &scope,
        &DOC,
    )
    .expect("parse");
    assert!(m.has_child("x", "urn:other"));
    assert_eq!(
        m.to_xml(CLIENT_NS),
        "<message><stream:x xmlns:stream='urn:other'/></message>"
    );
}

#[test]
fn hand_built_trees_get_declarations_and_fresh_prefixes() {
    let el = Element::new("item", "urn:a")
        .with_prefix("a")
        .with_attr_ns("urn:b", "a:attr", "v")
        .with_attr("xml:lang", "en")
        .with_child(Element::new("sub", ""));
    let out = standalone_round_trip(&el);
    assert_eq!(
        out,
        "<a:item xmlns:a=\"urn:a\" xmlns:ns0=\"urn:b\" ns0:attr=\"v\" xml:lang=\"en\">\
         <sub xmlns=\"\"/></a:item>"
    );
    assert_eq!(el.attr_ns("urn:b", "attr"), Some("v"));
    assert_eq!(el.attr_ns(XML_NS, "lang"), Some("en"));
}

#[test]
fn equality_ignores_prefixes_but_not_namespaces() {
    let a = doc("<p:x xmlns:p='urn:x' xmlns:q='urn:q' q:a='1'/>");
    let b = doc("<x xmlns='urn:x' xmlns:r='urn:q' r:a='1'/>");
    assert_eq!(a, b);
    let c = doc("<x xmlns='urn:x' xmlns:r='urn:other' r:a='1'/>");
    assert_ne!(a, c);
    assert_eq!(a.qname(), "p:x");
    assert_eq!(b.qname(), "x");
}

// ----- escaping ----------------------------------------------------------------------

#[test]
fn escaping_round_trips_in_both_quotes() {
    let nasty = "a<b & c>d 'q' \"dq\"\t\n\r ☺ ]]>";
    let el = Element::new("e", "urn:e")
        .with_attr("v", nasty)
        .with_text(nasty);
    for quote in [Quote::Single, Quote::Double] {
        let mut out = String::new();
        el.write(&Context::standalone(quote), &mut out);
        assert_eq!(doc(&out), el, "{out}");
    }
    let mut s = String::new();
    escape_attr_in(nasty, Quote::Double, &mut s);
    assert_eq!(
        s,
        "a&lt;b &amp; c&gt;d 'q' &quot;dq&quot;&#9;&#10;&#13; ☺ ]]&gt;"
    );
    let mut s = String::new();
    escape_attr_in(nasty, Quote::Single, &mut s);
    assert_eq!(
        s,
        "a&lt;b &amp; c&gt;d &apos;q&apos; \"dq\"&#9;&#10;&#13; ☺ ]]&gt;"
    );
    let mut v = Vec::new();
    escape_attr(nasty, &mut v);
    assert_eq!(
        String::from_utf8(v).expect("utf-8"),
        "a&lt;b &amp; c&gt;d &apos;q&apos; &quot;dq&quot;&#9;&#10;&#13; ☺ ]]&gt;"
    );
    let mut s = String::new();
    escape_text(nasty, &mut s);
    assert_eq!(s, "a&lt;b &amp; c&gt;d 'q' \"dq\"\t\n&#13; ☺ ]]&gt;");
}

// ----- refusals ----------------------------------------------------------------------

#[test]
fn restricted_xml_is_refused() {
    assert_eq!(doc_err("<!DOCTYPE x><x/>"), XmlError::Doctype);
    assert_eq!(
        doc_err("<x><y>&nbsp;</y></x>"),
        XmlError::Entity {
            name: "nbsp".into(),
            element: "y".into(),
            attribute: None
        }
    );
    assert_eq!(
        doc_err("<x a='&nbsp;'/>"),
        XmlError::Entity {
            name: "nbsp".into(),
            element: "x".into(),
            attribute: Some("a".into())
        }
    );
    for bad in ["&#0;", "&#xFFFE;", "&#xD800;", "&#1;"] {
        assert_eq!(
            doc_err(&format!("<x>{bad}</x>")),
            XmlError::NotWellFormed(format!("invalid character reference {bad} in <x>"))
        );
    }
    assert_eq!(
        doc_err("<x>\u{1}</x>"),
        XmlError::NotWellFormed("illegal character U+0001".into())
    );
    assert_eq!(
        doc_err("<x><p:y/></x>"),
        XmlError::BadNamespacePrefix("undeclared namespace prefix 'p' on <p:y>".into())
    );
    assert_eq!(
        doc_err("<x p:a='1'/>"),
        XmlError::BadNamespacePrefix(
            "undeclared namespace prefix 'p' on attribute 'p:a' of <x>".into()
        )
    );
    assert_eq!(
        doc_err("<xmlns:x/>"),
        XmlError::NotWellFormed("reserved prefix 'xmlns' on <xmlns:x>".into())
    );
    assert_eq!(
        doc_err("<x xmlns:xml='urn:x'/>"),
        XmlError::NotWellFormed(
            "the xml prefix must be bound to the xml namespace, and only it in <x>".into()
        )
    );
    assert_eq!(
        doc_err("<x xmlns:a='http://www.w3.org/2000/xmlns/'/>"),
        XmlError::NotWellFormed("the xmlns namespace cannot be declared in <x>".into())
    );
    assert_eq!(
        doc_err("<x xmlns:a=''/>"),
        XmlError::NotWellFormed("prefix 'a' bound to an empty namespace in <x>".into())
    );
    assert_eq!(
        doc_err(&format!("{}{}", "<d>".repeat(17), "</d>".repeat(17))),
        XmlError::TooDeep {
            element: "d".into(),
            max: 16
        }
    );
    assert_eq!(
        parse_document(
            b"<x/>",
            &Limits {
                max_bytes: 3,
                max_depth: 1
            }
        ),
        Err(XmlError::TooLarge { size: 4, max: 3 })
    );
    assert_eq!(
        parse_document(
            b"<x><y/></x>",
            &Limits {
                max_bytes: 99,
                max_depth: 1
            }
        ),
        Err(XmlError::TooDeep {
            element: "y".into(),
            max: 1
        })
    );
    assert_eq!(
        doc_err("<x/><y/>"),
        XmlError::NotWellFormed("element <y> after the root element".into())
    );
    assert_eq!(
        doc_err("t<x/>"),
        XmlError::NotWellFormed("text outside the root element".into())
    );
    assert_eq!(
        doc_err(""),
        XmlError::NotWellFormed("no root element".into())
    );
    assert_eq!(
        doc_err("<x><y>"),
        XmlError::NotWellFormed("<y> is not closed".into())
    );
    assert_eq!(doc_err("<x \u{FF}").condition(), "not-well-formed");
    assert_eq!(
        parse_document(b"<x a='\xff'/>", &DOC).map_err(|e| e.condition()),
        Err("unsupported-encoding")
    );
}

#[test]
fn documents_skip_prolog_comments_and_pis_fragments_refuse_them() {
    let el = doc(
        "\u{FEFF}<?xml version='1.0' encoding='UTF-8'?>\n<!-- c --><x><?pi x?><!-- d -->t</x>\n",
    );
    assert_eq!(el.text(), "t");
    let scope: [(&str, &str); 0] = [];
    assert_eq!(
        parse_fragment(b"<x><!-- c --></x>", &scope, &DOC),
        Err(XmlError::RestrictedXml(
            "markup other than elements and text in <x>".into()
        ))
    );
    assert_eq!(
        parse_fragment(b"  <x>t</x>\n", &scope, &DOC).map(|e| e.text()),
        Ok("t".to_owned())
    );
    assert_eq!(
        parse_fragment(b"<x/><y/>", &scope, &DOC),
        Err(XmlError::NotWellFormed("data after the end of <x>".into()))
    );
}

#[test]
fn error_texts_and_conditions() {
    let entity = XmlError::Entity {
        name: "foo".into(),
        element: "body".into(),
        attribute: None,
    };
    assert_eq!(entity.condition(), "restricted-xml");
    assert_eq!(
        entity.to_string(),
        "restricted-xml: entity reference &foo; in <body> (only the predefined entities are allowed)"
    );
    assert_eq!(
        entity.categorised(),
        XmlError::RestrictedXml(
            "entity reference &foo; in <body> (only the predefined entities are allowed)".into()
        )
    );
    let deep = XmlError::TooDeep {
        element: "x:d".into(),
        max: 8,
    };
    assert_eq!(deep.condition(), "policy-violation");
    assert_eq!(
        deep.categorised(),
        XmlError::PolicyViolation("<x:d> is nested deeper than 8 levels".into())
    );
    assert_eq!(
        XmlError::Doctype.categorised().condition(),
        "restricted-xml"
    );
    assert_eq!(
        XmlError::TooLarge { size: 2, max: 1 }.to_string(),
        "policy-violation: 2 bytes exceed the limit of 1 bytes"
    );
}

#[test]
fn text_ref_borrows_a_single_text_node() {
    let one = Element::new("a", "").with_text("x");
    assert!(matches!(one.text_ref(), std::borrow::Cow::Borrowed("x")));
    let two = Element::new("a", "")
        .with_text("x")
        .with_child(Element::new("b", ""))
        .with_text("y");
    assert_eq!(two.text_ref(), "xy");
    assert_eq!(Element::new("a", "").text_ref(), "");
}

/// A stanza parse allocates its stack of 8 open elements at once; at 112 bytes an element
/// keeps that below 1024 bytes, where glibc's allocator would start consolidating its fast
/// bins on every stanza (a 15 % slower parse when it was 120 bytes).
#[test]
fn elements_stay_small() {
    assert!(std::mem::size_of::<Element>() <= 112);
    assert!(std::mem::size_of::<(Element, usize)>() * 8 < 1024);
    assert!(std::mem::size_of::<Attr>() <= 48);
}
