//! Unit tests of the PIDF model, reader and writer: RFC 3863 and RFC 4480 examples, our own
//! vectors, exact errors and mutated input.

use super::rpid::Activity;
use super::tuple::{parse_qvalue, write_qvalue};
use super::*;

const IM_NS: &str = "urn:ietf:params:xml:ns:pidf:im";

fn note(text: &str, lang: Option<&str>) -> Note {
    Note {
        text: text.to_owned(),
        lang: lang.map(str::to_owned),
    }
}

fn raw(s: &str) -> Raw {
    Raw(s.to_owned())
}

fn tuple(id: &str, basic: Option<Basic>) -> Tuple {
    Tuple {
        id: id.to_owned(),
        basic,
        status_extensions: Vec::new(),
        contact: None,
        notes: Vec::new(),
        timestamp: None,
        extensions: Vec::new(),
    }
}

fn person(id: &str, activities: Vec<Activity>, notes: Vec<Note>) -> Person {
    Person {
        id: id.to_owned(),
        activities,
        notes,
        timestamp: None,
        extensions: Vec::new(),
    }
}

fn parse(xml: &str) -> Presence {
    match Presence::parse(xml.as_bytes()) {
        Ok(doc) => doc,
        Err(e) => panic!("{e}\n{xml}"),
    }
}

fn err(xml: &str) -> PidfError {
    match Presence::parse(xml.as_bytes()) {
        Ok(doc) => panic!("accepted: {doc:?}"),
        Err(e) => e,
    }
}

/// Serialises and parses back, asserting the model is unchanged.
fn assert_round_trip(doc: &Presence) {
    let xml = doc.to_xml();
    assert_eq!(&parse(&xml), doc, "round trip of\n{xml}");
}

/// RFC 3863's basic example, with a namespace prefix and with a default
/// namespace (indentation as reproduced, not necessarily as in the RFC).
const RFC3863_PREFIXED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
   <impp:presence xmlns:impp="urn:ietf:params:xml:ns:pidf"
       entity="pres:someone@example.com">
     <impp:tuple id="sg89ae">
       <impp:status>
         <impp:basic>open</impp:basic>
       </impp:status>
       <impp:contact priority="0.8">tel:+09012345678</impp:contact>
     </impp:tuple>
   </impp:presence>"#;

const RFC3863_DEFAULT_NS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
   <presence xmlns="urn:ietf:params:xml:ns:pidf"
       entity="pres:someone@example.com">
     <tuple id="sg89ae">
       <status>
         <basic>open</basic>
       </status>
       <contact priority="0.8">tel:+09012345678</contact>
     </tuple>
   </presence>"#;

#[test]
fn rfc3863_basic_example_both_namespace_styles() {
    let expected = Presence {
        entity: "pres:someone@example.com".into(),
        tuples: vec![Tuple {
            contact: Some(Contact {
                uri: "tel:+09012345678".into(),
                priority: Some(0.8),
            }),
            ..tuple("sg89ae", Some(Basic::Open))
        }],
        ..Presence::default()
    };
    assert_eq!(parse(RFC3863_PREFIXED), expected);
    assert_eq!(parse(RFC3863_DEFAULT_NS), expected);
    assert!(expected.is_open());
    assert_eq!(
        expected.to_xml(),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"pres:someone@example.com\">\
             <tuple id=\"sg89ae\"><status><basic>open</basic></status>\
             <contact priority=\"0.8\">tel:+09012345678</contact></tuple></presence>"
    );
    assert_round_trip(&expected);
}

/// RFC 3863's example of a status extension (indentation as reproduced).
#[test]
fn rfc3863_status_extension_is_kept_raw() {
    let doc = parse(
        r#"<?xml version="1.0" encoding="UTF-8"?>
   <presence xmlns="urn:ietf:params:xml:ns:pidf"
       xmlns:local="urn:example-com:pidf-status-type"
       entity="pres:someone@example.com">
     <tuple id="ub93s3">
       <status>
         <basic>open</basic>
         <local:location>home</local:location>
       </status>
       <contact>im:someone@example.com</contact>
     </tuple>
   </presence>"#,
    );
    let t = &doc.tuples[0];
    assert_eq!(t.basic, Some(Basic::Open));
    assert_eq!(
            t.status_extensions,
            vec![raw(
                "<local:location xmlns:local=\"urn:example-com:pidf-status-type\">home</local:location>"
            )]
        );
    assert_eq!(
        t.contact,
        Some(Contact {
            uri: "im:someone@example.com".into(),
            priority: None
        })
    );
    assert_round_trip(&doc);
}

/// RFC 3863's full example: two tuples, status extensions, notes in two
/// languages, a timestamp and a presentity note (indentation as reproduced).
const RFC3863_FULL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
   <presence xmlns="urn:ietf:params:xml:ns:pidf"
        xmlns:im="urn:ietf:params:xml:ns:pidf:im"
        xmlns:myex="http://id.example.com/presence/"
        entity="pres:someone@example.com">
     <tuple id="bs35r9">
       <status>
         <basic>open</basic>
         <im:im>busy</im:im>
         <myex:location>home</myex:location>
       </status>
       <contact priority="0.8">im:someone@mobilecarrier.net</contact>
       <note xml:lang="en">Don't Disturb Please!</note>
       <note xml:lang="fr">Ne derangez pas, s'il vous plait</note>
       <timestamp>2001-10-27T16:49:29Z</timestamp>
     </tuple>
     <tuple id="eg92n8">
       <status>
         <basic>open</basic>
       </status>
       <contact priority="1.0">mailto:someone@example.com</contact>
     </tuple>
     <note>I'll be in Tokyo next week</note>
   </presence>"#;

#[test]
fn rfc3863_full_example_exact_model_and_round_trip() {
    let doc = parse(RFC3863_FULL);
    let expected = Presence {
            entity: "pres:someone@example.com".into(),
            tuples: vec![
                Tuple {
                    status_extensions: vec![
                        raw(&format!("<im:im xmlns:im=\"{IM_NS}\">busy</im:im>")),
                        raw("<myex:location xmlns:myex=\"http://id.example.com/presence/\">home</myex:location>"),
                    ],
                    contact: Some(Contact {
                        uri: "im:someone@mobilecarrier.net".into(),
                        priority: Some(0.8),
                    }),
                    notes: vec![
                        note("Don't Disturb Please!", Some("en")),
                        note("Ne derangez pas, s'il vous plait", Some("fr")),
                    ],
                    timestamp: Some("2001-10-27T16:49:29Z".into()),
                    ..tuple("bs35r9", Some(Basic::Open))
                },
                Tuple {
                    contact: Some(Contact {
                        uri: "mailto:someone@example.com".into(),
                        priority: Some(1.0),
                    }),
                    ..tuple("eg92n8", Some(Basic::Open))
                },
            ],
            notes: vec![note("I'll be in Tokyo next week", None)],
            ..Presence::default()
        };
    assert_eq!(doc, expected);
    let xml = doc.to_xml();
    assert!(xml.contains(
        "<note xml:lang=\"fr\">Ne derangez pas, s'il vous plait</note>\
             <timestamp>2001-10-27T16:49:29Z</timestamp></tuple>"
    ));
    assert!(xml.contains("<contact priority=\"1\">mailto:someone@example.com</contact>"));
    assert!(!xml.contains("xmlns:dm"), "no person, no dm prefix: {xml}");
    assert_round_trip(&doc);
}

/// RFC 3863's examples of tuple and presentity extensions, and of
/// `mustUnderstand` (indentation as reproduced).
#[test]
fn rfc3863_tuple_presentity_and_must_understand_extensions() {
    let doc = parse(
        r#"<?xml version="1.0" encoding="UTF-8"?>
   <impp:presence xmlns:impp="urn:ietf:params:xml:ns:pidf"
        xmlns:myex="http://id.example.com/presence/"
        entity="pres:someone@example.com">
     <impp:tuple id="ck38g9">
       <impp:status>
         <impp:basic>open</impp:basic>
       </impp:status>
       <myex:mytupletag>Extended value in tuple</myex:mytupletag>
       <impp:contact priority="0.65">tel:+09012345678</impp:contact>
     </impp:tuple>
     <impp:tuple id="md66je">
       <impp:status>
         <impp:basic>open</impp:basic>
       </impp:status>
       <impp:contact priority="1.0">
          im:someone@mobilecarrier.net</impp:contact>
     </impp:tuple>
     <myex:mytag>My extended presentity information</myex:mytag>
   </impp:presence>"#,
    );
    assert_eq!(
            doc.tuples[0].extensions,
            vec![raw("<myex:mytupletag xmlns:myex=\"http://id.example.com/presence/\">Extended value in tuple</myex:mytupletag>")]
        );
    assert_eq!(
        doc.tuples[0].contact.as_ref().and_then(|c| c.priority),
        Some(0.65)
    );
    assert_eq!(
        doc.tuples[1].contact.as_ref().map(|c| c.uri.as_str()),
        Some("im:someone@mobilecarrier.net")
    );
    assert_eq!(
            doc.extensions,
            vec![raw("<myex:mytag xmlns:myex=\"http://id.example.com/presence/\">My extended presentity information</myex:mytag>")]
        );
    assert_round_trip(&doc);

    let doc = parse(
        r#"<?xml version="1.0" encoding="UTF-8"?>
   <impp:presence xmlns:impp="urn:ietf:params:xml:ns:pidf"
        xmlns:myex="http://id.mycompany.com/presence/"
        entity="pres:someone@example.com">
     <impp:tuple id="tj25ds">
       <impp:status>
         <impp:basic>open</impp:basic>
       </impp:status>
       <myex:complexExtension>
         <myex:ex1 impp:mustUnderstand="1">val1</myex:ex1>
         <myex:ex2>val2</myex:ex2>
       </myex:complexExtension>
       <impp:contact priority="0.725">tel:+09012345678</impp:contact>
     </impp:tuple>
     <myex:mytag>My extended presentity information</myex:mytag>
   </impp:presence>"#,
    );
    assert_eq!(
            doc.tuples[0].extensions,
            vec![raw(
                "<myex:complexExtension xmlns:myex=\"http://id.mycompany.com/presence/\">\n         \
                 <myex:ex1 xmlns:impp=\"urn:ietf:params:xml:ns:pidf\" impp:mustUnderstand=\"1\">val1</myex:ex1>\n         \
                 <myex:ex2>val2</myex:ex2>\n       </myex:complexExtension>"
            )]
        );
    assert_eq!(
        doc.tuples[0].contact.as_ref().and_then(|c| c.priority),
        Some(0.725)
    );
    assert_round_trip(&doc);
}

/// RFC 4480's example document (as reproduced in resiprocate's test suite).
const RFC4480_EXAMPLE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf"
          xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
          xmlns:lt="urn:ietf:params:xml:ns:location-type"
          xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"
       entity="pres:someone@example.com">

  <tuple id="bs35r9">
    <status>
      <basic>open</basic>
    </status>
    <dm:deviceID>urn:device:0003ba4811e3</dm:deviceID>
    <rpid:relationship><rpid:self/></rpid:relationship>
    <rpid:service-class><rpid:electronic/></rpid:service-class>
    <contact priority="0.8">im:someone@mobile.example.net</contact>
    <note xml:lang="en">Don't Disturb Please!</note>
    <note xml:lang="fr">Ne derangez pas, s'il vous plait</note>
    <timestamp>2005-10-27T16:49:29Z</timestamp>
  </tuple>

  <tuple id="ty4658">
    <status>
      <basic>open</basic>
    </status>
    <rpid:relationship><rpid:assistant/></rpid:relationship>
    <contact priority="1.0">mailto:secretary@example.com</contact>
  </tuple>

  <tuple id="eg92n8">
    <status>
      <basic>open</basic>
    </status>
    <dm:deviceID>urn:x-mac:0003ba4811e3</dm:deviceID>
    <rpid:class>email</rpid:class>
    <rpid:service-class><rpid:electronic/></rpid:service-class>
    <rpid:status-icon>http://example.com/mail.png</rpid:status-icon>
    <contact priority="1.0">mailto:someone@example.com</contact>
  </tuple>

  <note>I'll be in Tokyo next week</note>

  <dm:device id="pc147">
    <rpid:user-input idle-threshold="600" last-input="2004-10-21T13:20:00-05:00">idle</rpid:user-input>
    <dm:deviceID>urn:device:0003ba4811e3</dm:deviceID>
    <dm:note>PC</dm:note>
  </dm:device>

  <dm:person id="p1">
    <rpid:activities from="2005-05-30T12:00:00+05:00" until="2005-05-30T17:00:00+05:00">
      <rpid:note>Far away</rpid:note>
      <rpid:away/>
    </rpid:activities>
    <rpid:class>calendar</rpid:class>
    <rpid:mood>
      <rpid:angry/>
      <rpid:other>brooding</rpid:other>
    </rpid:mood>
    <rpid:place-is>
      <rpid:audio>
        <rpid:noisy/>
      </rpid:audio>
    </rpid:place-is>
    <rpid:place-type><lt:residence/></rpid:place-type>
    <rpid:privacy><rpid:unknown/></rpid:privacy>
    <rpid:sphere>bowling league</rpid:sphere>
    <rpid:status-icon>http://example.com/play.gif</rpid:status-icon>
    <rpid:time-offset>-240</rpid:time-offset>
    <dm:note>Scoring 120</dm:note>
    <dm:timestamp>2005-05-30T16:09:44+05:00</dm:timestamp>
  </dm:person>
</presence>
"#;

#[test]
fn rfc4480_example_parses_and_round_trips() {
    let doc = parse(RFC4480_EXAMPLE);
    let r = "xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\"";
    assert_eq!(doc.entity, "pres:someone@example.com");
    assert_eq!(doc.tuples.len(), 3);
    let t = &doc.tuples[0];
    assert_eq!(
        t.extensions,
        vec![
            raw(&format!(
                "<dm:deviceID xmlns:dm=\"{DM_NS}\">urn:device:0003ba4811e3</dm:deviceID>"
            )),
            raw(&format!(
                "<rpid:relationship {r}><rpid:self/></rpid:relationship>"
            )),
            raw(&format!(
                "<rpid:service-class {r}><rpid:electronic/></rpid:service-class>"
            )),
        ]
    );
    assert_eq!(
        t.notes,
        vec![
            note("Don't Disturb Please!", Some("en")),
            note("Ne derangez pas, s'il vous plait", Some("fr"))
        ]
    );
    assert_eq!(t.timestamp.as_deref(), Some("2005-10-27T16:49:29Z"));
    assert_eq!(doc.tuples[2].extensions.len(), 4);
    assert_eq!(doc.notes, vec![note("I'll be in Tokyo next week", None)]);
    assert_eq!(
            doc.extensions,
            vec![raw(&format!(
                "<dm:device xmlns:dm=\"{DM_NS}\" id=\"pc147\">\n    \
                 <rpid:user-input {r} idle-threshold=\"600\" last-input=\"2004-10-21T13:20:00-05:00\">idle</rpid:user-input>\n    \
                 <dm:deviceID>urn:device:0003ba4811e3</dm:deviceID>\n    \
                 <dm:note>PC</dm:note>\n  </dm:device>"
            ))]
        );

    assert_eq!(doc.persons.len(), 1);
    let p = &doc.persons[0];
    assert_eq!(p.id, "p1");
    assert_eq!(p.activities, vec![Activity::Away]);
    assert_eq!(p.notes, vec![note("Scoring 120", None)]);
    assert_eq!(p.timestamp.as_deref(), Some("2005-05-30T16:09:44+05:00"));
    assert_eq!(p.extensions.len(), 8);
    assert_eq!(
            p.extensions[1],
            raw(&format!(
                "<rpid:mood {r}>\n      <rpid:angry/>\n      <rpid:other>brooding</rpid:other>\n    </rpid:mood>"
            ))
        );
    assert_eq!(
            p.extensions[3],
            raw(&format!(
                "<rpid:place-type {r}><lt:residence xmlns:lt=\"urn:ietf:params:xml:ns:location-type\"/></rpid:place-type>"
            ))
        );

    let xml = doc.to_xml();
    assert!(xml.contains(&format!(
        "<presence xmlns=\"{NS}\" xmlns:dm=\"{DM_NS}\" {r} entity=\"pres:someone@example.com\">"
    )));
    assert!(xml.contains(
        "<dm:person id=\"p1\"><rpid:activities><rpid:away/></rpid:activities><rpid:class "
    ));
    // Persons come after the presentity notes, other extensions last.
    assert!(xml.contains(
        "<dm:note>Scoring 120</dm:note>\
             <dm:timestamp>2005-05-30T16:09:44+05:00</dm:timestamp></dm:person><dm:device "
    ));
    assert!(xml.ends_with("</dm:device></presence>"));
    assert_round_trip(&doc);
}

/// Our own vector: activity elements RFC 4480 does not define (in its
/// namespace and in another) become `Other(local name)`; the activities'
/// `<rpid:note>` is not modelled; several activities elements accumulate.
#[test]
fn unknown_activities_become_other() {
    let doc = parse(
        r#"<presence xmlns="urn:ietf:params:xml:ns:pidf"
                xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
                xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:a@example.com">
              <dm:person id="p">
                <rpid:activities>
                  <rpid:note>not modelled</rpid:note>
                  <rpid:juggling/>
                  <ex:knitting xmlns:ex="urn:example:activities"/>
                  <rpid:other>brooding</rpid:other>
                  <rpid:other/>
                </rpid:activities>
                <rpid:activities><rpid:on-the-phone/></rpid:activities>
              </dm:person>
            </presence>"#,
    );
    assert_eq!(
        doc.persons[0].activities,
        vec![
            Activity::Other("juggling".into()),
            Activity::Other("knitting".into()),
            Activity::Other("brooding".into()),
            Activity::Other(String::new()),
            Activity::OnThePhone,
        ]
    );
    assert!(doc.persons[0].extensions.is_empty());
    let xml = doc.to_xml();
    assert!(xml.contains(
        "<rpid:activities><rpid:other>juggling</rpid:other><rpid:other>knitting</rpid:other>\
             <rpid:other>brooding</rpid:other><rpid:other/><rpid:on-the-phone/></rpid:activities>"
    ));
    assert_round_trip(&doc);
}

/// Our own vector: prefixes redeclared inside an extension, namespaced
/// attributes, a default-namespace extension, an element in no namespace,
/// and escaping that must survive a round trip.
#[test]
fn raw_extensions_are_self_contained() {
    let doc = parse(
            "<presence xmlns='urn:ietf:params:xml:ns:pidf' xmlns:a='urn:a' entity='pres:x@example.com'>\
               <a:ext a:attr='1&amp;2' plain='&quot;q&quot;&#9;'><inner>t&lt;&#13;</inner><a:b xmlns:a='urn:other'/></a:ext>\
               <ext2 xmlns='urn:d'><c/><![CDATA[<raw>]]></ext2>\
               <nons xmlns=''/>\
               <note>line\r\nbreak &amp; &#x263A;</note>\
             </presence>",
        );
    assert_eq!(
        doc.extensions,
        vec![
            raw(
                "<a:ext xmlns:a=\"urn:a\" a:attr=\"1&amp;2\" plain=\"&quot;q&quot;&#9;\">\
                     <inner xmlns=\"urn:ietf:params:xml:ns:pidf\">t&lt;&#13;</inner>\
                     <a:b xmlns:a=\"urn:other\"/></a:ext>"
            ),
            raw("<ext2 xmlns=\"urn:d\"><c/>&lt;raw&gt;</ext2>"),
            raw("<nons xmlns=\"\"/>"),
        ]
    );
    assert_eq!(doc.notes, vec![note("line\nbreak & \u{263A}", None)]);
    assert_round_trip(&doc);
    assert_eq!(parse(&doc.to_xml()).extensions, doc.extensions);
}

#[test]
fn serialises_exactly_and_escapes() {
    let doc = Presence {
        entity: "pres:a&b\"c@example.com".into(),
        tuples: vec![Tuple {
            contact: Some(Contact {
                uri: "sip:a@example.com;x=<y>".into(),
                priority: Some(0.05),
            }),
            notes: vec![note("a < b\r\n", Some("en"))],
            timestamp: Some("2024-01-01T00:00:00Z".into()),
            ..tuple("t1", None)
        }],
        persons: vec![person("p", vec![], vec![note("x", None)])],
        notes: vec![note("&", None)],
        extensions: vec![raw("<x xmlns=\"urn:x\"/>")],
    };
    assert_eq!(
            doc.to_xml(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <presence xmlns=\"urn:ietf:params:xml:ns:pidf\" xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" \
             entity=\"pres:a&amp;b&quot;c@example.com\">\
             <tuple id=\"t1\"><status></status>\
             <contact priority=\"0.05\">sip:a@example.com;x=&lt;y&gt;</contact>\
             <note xml:lang=\"en\">a &lt; b&#13;\n</note><timestamp>2024-01-01T00:00:00Z</timestamp></tuple>\
             <note>&amp;</note>\
             <dm:person id=\"p\"><dm:note>x</dm:note></dm:person>\
             <x xmlns=\"urn:x\"/></presence>"
        );
    assert_round_trip(&doc);
    let mut buf = String::from("prefix:");
    doc.write_xml(&mut buf);
    assert_eq!(buf, format!("prefix:{}", doc.to_xml()));
}

#[test]
fn qvalues_format_and_parse() {
    let fmt = |q: f32| {
        let mut s = String::new();
        write_qvalue(q, &mut s);
        s
    };
    assert_eq!(fmt(0.0), "0");
    assert_eq!(fmt(1.0), "1");
    assert_eq!(fmt(0.8), "0.8");
    assert_eq!(fmt(0.05), "0.05");
    assert_eq!(fmt(0.125), "0.125");
    assert_eq!(fmt(0.9921875), "0.992");
    assert_eq!(fmt(1.5), "1");
    assert_eq!(fmt(-1.0), "0");
    assert_eq!(fmt(f32::NAN), "0");
    assert_eq!(parse_qvalue("0.8"), Some(0.8));
    assert_eq!(parse_qvalue(" 1.000 "), Some(1.0));
    assert_eq!(parse_qvalue("0.12345"), Some(0.123));
    assert_eq!(parse_qvalue("1.5"), None);
    assert_eq!(parse_qvalue("-0.1"), None);
    assert_eq!(parse_qvalue("NaN"), None);
    assert_eq!(parse_qvalue("high"), None);
    for t in 0..=1000u32 {
        let q = t as f32 / 1000.0;
        assert_eq!(parse_qvalue(&fmt(q)), Some(q), "{t}");
    }
}

#[test]
fn tolerant_of_odd_but_harmless_content() {
    let doc = parse(
            "\u{FEFF}<?xml version='1.0'?><!-- hi --><presence xmlns='urn:ietf:params:xml:ns:pidf' entity='e'>\
             <tuple><status><basic> sideways </basic></status><contact priority='2'>sip:x</contact>\
             <contact>sip:second</contact><status><basic>open</basic></status></tuple>\
             <?pi data?></presence>\n",
        );
    assert_eq!(
        doc.tuples,
        vec![Tuple {
            contact: Some(Contact {
                uri: "sip:x".into(),
                priority: None
            }),
            ..tuple("", None)
        }]
    );
    assert!(!doc.is_open());
}

#[test]
fn invalid_documents_are_refused_with_exact_errors() {
    assert_eq!(
        err("hello"),
        PidfError::Xml("text outside the root element".into())
    );
    assert_eq!(err(""), PidfError::Xml("no root element".into()));
    assert_eq!(
        err("<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='e'><tuple id='t'>"),
        PidfError::Xml("<tuple> is not closed".into())
    );
    assert!(matches!(
        err("<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='e'><note></tuple></presence>"),
        PidfError::Xml(m) if m.contains("<note>")
    ));
    assert_eq!(
        err("<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='e'/><presence/>"),
        PidfError::Xml("element <presence> after the root element".into())
    );
    assert_eq!(
        err("<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='e'><x:y/></presence>"),
        PidfError::Xml("undeclared namespace prefix 'x' on <x:y>".into())
    );
    assert_eq!(
        err("<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='e'><xmlns:y/></presence>"),
        PidfError::Xml("reserved prefix 'xmlns' on <xmlns:y>".into())
    );
    assert_eq!(
            err("<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='e'><a:x xmlns:a='urn:a&amp;b'/></presence>"),
            PidfError::Xml("unsupported namespace name in 'xmlns:a' of <a:x>".into())
        );
    assert!(matches!(
            err("<presence xmlns='urn:ietf:params:xml:ns:pidf' xmlns:a='http://www.w3.org/2000/xmlns/' entity='e'/>"),
            PidfError::Xml(_)
        ));
    assert_eq!(
        err("<presence xmlns='urn:ietf:params:xml:ns:cpim-pidf' entity='pres:a@example.com'/>"),
        PidfError::NotPidf {
            name: "presence".into(),
            ns: "urn:ietf:params:xml:ns:cpim-pidf".into()
        }
    );
    assert_eq!(
        err("<presence entity='pres:a@example.com'/>"),
        PidfError::NotPidf {
            name: "presence".into(),
            ns: String::new()
        }
    );
    assert_eq!(
            err("<?xml version='1.0'?><presence xmlns='urn:ietf:params:xml:ns:pidf'><tuple id='t'/></presence>"),
            PidfError::MissingEntity
        );
    assert_eq!(
        err("<presence xmlns='urn:ietf:params:xml:ns:pidf' entity=''/>"),
        PidfError::MissingEntity
    );
    assert_eq!(
            err("<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='e'><note>&lol;</note></presence>"),
            PidfError::Entity {
                name: "lol".into(),
                element: "note".into()
            }
        );
    assert_eq!(
        err("<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='&lol;'/>"),
        PidfError::Entity {
            name: "lol".into(),
            element: "presence".into()
        }
    );
    assert_eq!(
        err(
            "<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='e'><note>&#1;</note></presence>"
        ),
        PidfError::Xml("invalid character reference &#1; in <note>".into())
    );
    assert_eq!(
        err("<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='e'>\u{1}</presence>"),
        PidfError::Xml("illegal character U+0001".into())
    );
    assert_eq!(
        Presence::parse(b"<presence \xff/>"),
        Err(PidfError::NotUtf8)
    );
}

/// A "billion laughs" body (our own vector): refused at the DOCTYPE, before
/// any entity could be expanded.
#[test]
fn doctype_is_refused() {
    let bomb = r#"<?xml version="1.0"?>
<!DOCTYPE presence [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
]>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:a@example.com"><note>&lol2;</note></presence>"#;
    assert_eq!(err(bomb), PidfError::Doctype);
    assert_eq!(
        err("<!DOCTYPE presence><presence xmlns='urn:ietf:params:xml:ns:pidf' entity='e'/>"),
        PidfError::Doctype
    );
}

#[test]
fn size_and_depth_limits() {
    let small = "<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='e'/>";
    assert_eq!(
        Presence::parse_limited(small.as_bytes(), 10),
        Err(PidfError::TooLarge {
            size: small.len(),
            max: 10
        })
    );
    assert!(Presence::parse_limited(small.as_bytes(), small.len()).is_ok());
    let big = format!(
        "<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='e'><note>{}</note></presence>",
        "x".repeat(MAX_DOCUMENT_BYTES)
    );
    assert!(matches!(
        Presence::parse(big.as_bytes()),
        Err(PidfError::TooLarge {
            max: MAX_DOCUMENT_BYTES,
            ..
        })
    ));

    let nest = |n: usize| {
        format!(
            "<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='e'>{}{}</presence>",
            "<x:d xmlns:x='urn:x'>".repeat(n),
            "</x:d>".repeat(n)
        )
    };
    // The root is depth 0, so MAX_DEPTH - 1 nested elements are accepted.
    let ok = parse(&nest(MAX_DEPTH - 1));
    assert_eq!(ok.extensions.len(), 1);
    assert_round_trip(&ok);
    assert_eq!(
        err(&nest(MAX_DEPTH)),
        PidfError::TooDeep {
            element: "x:d".into(),
            max: MAX_DEPTH
        }
    );
}

#[test]
fn error_messages_name_the_element() {
    assert_eq!(
            PidfError::Entity {
                name: "lol".into(),
                element: "note".into()
            }
            .to_string(),
            "entity reference &lol; in <note> is not allowed (only the predefined entities and character references are)"
        );
    assert_eq!(
        PidfError::MissingEntity.to_string(),
        "<presence> has no entity attribute"
    );
    assert_eq!(
        PidfError::NotPidf {
            name: "foo".into(),
            ns: "urn:x".into()
        }
        .to_string(),
        "root element <foo> in namespace 'urn:x' is not <presence> in urn:ietf:params:xml:ns:pidf"
    );
}

/// Truncations and single-byte mutations of the RFC examples never panic, and
/// whatever is accepted serialises to a document that parses back equal.
#[test]
fn mutated_input_never_panics_and_accepted_input_round_trips() {
    let mut accepted = 0;
    for source in [RFC4480_EXAMPLE, RFC3863_FULL, RFC3863_PREFIXED] {
        let bytes = source.as_bytes();
        let mut check = |input: &[u8]| {
            if let Ok(doc) = Presence::parse(input) {
                accepted += 1;
                let again = Presence::parse(doc.to_xml().as_bytes());
                assert_eq!(
                    again.as_ref(),
                    Ok(&doc),
                    "{}",
                    String::from_utf8_lossy(input)
                );
            }
        };
        for end in 0..=bytes.len() {
            check(bytes.get(..end).unwrap_or_default());
        }
        for i in 0..bytes.len() {
            for b in [b'<', b'>', b'&', b'"', b':', b'/'] {
                let mut m = bytes.to_vec();
                if let Some(slot) = m.get_mut(i) {
                    *slot = b;
                }
                check(&m);
            }
        }
    }
    assert!(accepted > 1000, "only {accepted} mutants accepted");
}

fn publication(tuples: Vec<Tuple>, notes: Vec<Note>, persons: Vec<Person>) -> Presence {
    Presence {
        entity: "pres:alice@example.com".into(),
        tuples,
        persons,
        notes,
        extensions: Vec::new(),
    }
}

#[test]
fn compose_merges_tuples_persons_and_notes() {
    let t1_open = Tuple {
        notes: vec![note("v1", None)],
        ..tuple("t1", Some(Basic::Open))
    };
    let t2 = tuple("t2", Some(Basic::Closed));
    let t1_closed = Tuple {
        notes: vec![note("v3", None)],
        ..tuple("t1", Some(Basic::Closed))
    };
    let tokyo = note("Tokyo next week", None);
    let first = publication(
        vec![t1_open.clone()],
        vec![tokyo.clone()],
        vec![person(
            "pa",
            vec![Activity::Busy],
            vec![note("in a meeting", None)],
        )],
    );
    let second = publication(
        vec![t2.clone()],
        vec![tokyo.clone()],
        vec![person("pb", vec![], vec![note("lunch soon", None)])],
    );
    let third = publication(vec![t1_closed.clone()], vec![note("Paris", None)], vec![]);
    assert!(first.is_open());

    let composed = Presence::compose("sip:alice@example.com", [&first, &second, &third]);
    assert_eq!(
        composed,
        Presence {
            entity: "sip:alice@example.com".into(),
            tuples: vec![t1_closed, t2.clone()],
            persons: vec![person(
                "pb",
                vec![Activity::Busy],
                vec![note("lunch soon", None)]
            )],
            notes: vec![tokyo, note("Paris", None)],
            extensions: Vec::new(),
        }
    );
    assert!(!composed.is_open());

    // Order matters: the most recent publication wins.
    let reversed = Presence::compose("e", [&third, &second, &first]);
    assert_eq!(reversed.tuples, vec![t1_open, t2]);
    assert!(reversed.is_open());
    assert_eq!(reversed.persons[0].id, "pa");
    assert_eq!(reversed.persons[0].notes, vec![note("in a meeting", None)]);

    let empty = Presence::compose("e", []);
    assert_eq!(
        empty,
        Presence {
            entity: "e".into(),
            ..Presence::default()
        }
    );
}

/// Issue 16: an unknown extension with prefixed elements and prefixed attributes (one prefix
/// declared on the root, one on the element itself) is written back as it came: same
/// prefixes, same expanded names, every prefix declared.
#[test]
fn unknown_extension_with_prefixes_is_written_back_as_it_came() {
    let input = "<presence xmlns='urn:ietf:params:xml:ns:pidf' xmlns:ex='urn:example:ext' \
                 entity='pres:a@example.com'><tuple id='t'><status><basic>open</basic>\
                 <ex:mood ex:level='3' xmlns:v='urn:example:v' v:how='very'>happy\
                 <ex:why xml:lang='en'>sun</ex:why><plain/></ex:mood></status></tuple>\
                 <ex:device ex:id='d1'><ex:model>X</ex:model></ex:device></presence>";
    let doc = parse(input);
    assert_eq!(
        doc.tuples[0].status_extensions,
        vec![raw(
            "<ex:mood xmlns:ex=\"urn:example:ext\" xmlns:v=\"urn:example:v\" ex:level=\"3\" \
             v:how=\"very\">happy<ex:why xml:lang=\"en\">sun</ex:why>\
             <plain xmlns=\"urn:ietf:params:xml:ns:pidf\"/></ex:mood>"
        )]
    );
    assert_eq!(
        doc.extensions,
        vec![raw(
            "<ex:device xmlns:ex=\"urn:example:ext\" ex:id=\"d1\"><ex:model>X</ex:model></ex:device>"
        )]
    );
    assert_round_trip(&doc);

    // What a namespace-aware reader sees in our output is what it saw in the input.
    let limits = crate::xml::Limits {
        max_bytes: MAX_DOCUMENT_BYTES,
        max_depth: MAX_DEPTH,
    };
    let before = crate::xml::parse_document(input.as_bytes(), &limits).expect("input");
    let after = crate::xml::parse_document(doc.to_xml().as_bytes(), &limits).expect("output");
    let mood = |root: &crate::xml::Element| {
        root.get_child("tuple", NS)
            .and_then(|t| t.get_child("status", NS))
            .and_then(|s| s.get_child("mood", "urn:example:ext"))
            .cloned()
            .expect("mood")
    };
    let device = |root: &crate::xml::Element| {
        root.get_child("device", "urn:example:ext")
            .cloned()
            .expect("device")
    };
    assert_eq!(mood(&after), mood(&before));
    assert_eq!(device(&after), device(&before));
    assert_eq!(mood(&after).prefix.as_deref(), Some("ex"));
    assert_eq!(mood(&after).attr_ns("urn:example:v", "how"), Some("very"));
    assert_eq!(mood(&after).attr("v:how"), Some("very"));
}
