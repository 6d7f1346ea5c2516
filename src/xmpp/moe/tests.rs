use super::payload::moe_children;
use super::*;
use crate::xml::Element;
use crate::xml::CLIENT_NS;
use crate::xmpp::jid::Jid;
use crate::xmpp::private::parse_stored;
use crate::xmpp::stanza::{StanzaError, STANZAS_NS};
use std::time::{Duration, Instant};

/// Parses one stanza as it arrives in a `jabber:client` stream.
fn xml(s: &str) -> Element {
    parse_stored(s).unwrap_or_else(|| panic!("test XML does not parse: {s}"))
}

fn jid(s: &str) -> Jid {
    Jid::parse(s).unwrap()
}

fn msg(s: &str) -> Result<Option<MessagePayload>, MoeError> {
    message_payload(&xml(s), MAX_BROADCAST)
}

fn iq(s: &str) -> Result<Option<IqPayload>, MoeError> {
    iq_payload(&xml(s))
}

fn err(s: &str) -> MoeError {
    MoeError::InvalidPayload(s.to_string())
}

/// Wraps a payload element in a message, serialises and re-parses it: what travels.
fn reparsed(payload: Element) -> Result<Option<MessagePayload>, MoeError> {
    let m = Element::new("message", CLIENT_NS)
        .with_attr("to", "x@localhost")
        .with_child(payload);
    message_payload(&xml(&m.to_string()), MAX_BROADCAST)
}

// The doc examples write checksums as '…'; these stand-ins are ours (64 hex digits).
const H1: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const H2: &str = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";

fn f(name: &str, size: Option<u64>, sha: Option<&str>) -> FileDesc {
    FileDesc {
        name: name.into(),
        size,
        sha256: sha.map(str::to_string),
    }
}

// ---- §2.1 work list ----

#[test]
fn doc_2_1_worklist_request_answer_and_decline() {
    let req = msg("<message to='bob@localhost' id='m1'>\
        <worklist-request xmlns='urn:rendezvous:params:xml:ns:moe' id='w1'/></message>");
    let want = Request::Worklist { id: "w1".into() };
    assert_eq!(req, Ok(Some(MessagePayload::Request(want.clone()))));
    assert_eq!(want.kind(), Kind::Worklist);
    assert_eq!(
        reparsed(want.to_element()),
        Ok(Some(MessagePayload::Request(want)))
    );

    let ans = msg("<message to='alice@localhost' id='m2'>\
        <worklist xmlns='urn:rendezvous:params:xml:ns:moe' id='w1' requester='alice@localhost'>\
        <item name='Budget 2027' path='docs/budget.ods' modified='2026-11-20T10:00:00Z'/>\
        <item name='Slides'/></worklist></message>");
    let want = Answer::Worklist {
        id: "w1".into(),
        requester: jid("alice@localhost"),
        items: vec![
            WorkItem {
                name: "Budget 2027".into(),
                path: Some("docs/budget.ods".into()),
                modified: Some("2026-11-20T10:00:00Z".into()),
            },
            WorkItem {
                name: "Slides".into(),
                path: None,
                modified: None,
            },
        ],
    };
    assert_eq!(ans, Ok(Some(MessagePayload::Answer(want.clone()))));
    assert_eq!(want.id(), "w1");
    assert_eq!(want.requester(), &jid("alice@localhost"));
    assert_eq!(
        reparsed(want.to_element()),
        Ok(Some(MessagePayload::Answer(want)))
    );

    let dec = msg("<message to='alice@localhost'>\
        <decline xmlns='urn:rendezvous:params:xml:ns:moe' id='w1' requester='alice@localhost'/></message>");
    let want = Answer::Decline {
        id: "w1".into(),
        requester: jid("alice@localhost"),
    };
    assert_eq!(dec, Ok(Some(MessagePayload::Answer(want.clone()))));
    assert_eq!(
        want.to_element().to_xml(NS),
        "<decline id='w1' requester='alice@localhost'/>"
    );
    assert_eq!(
        reparsed(want.to_element()),
        Ok(Some(MessagePayload::Answer(want)))
    );
}

#[test]
fn item_needs_name() {
    assert_eq!(
        msg(
            "<message><worklist xmlns='urn:rendezvous:params:xml:ns:moe' id='w1' \
             requester='alice@localhost'><item path='x'/></worklist></message>"
        ),
        Err(err("item needs name"))
    );
}

// ---- §2.2 file request ----

#[test]
fn doc_2_2_file_request_and_accept() {
    let req = msg("<message to='bob@localhost'>\
        <file-request xmlns='urn:rendezvous:params:xml:ns:moe' id='f1'>\
        <file name='budget.ods'/><file name='notes.txt'/>\
        <endpoint host='127.0.0.1' port='40001' token='tok-a1b2c3d4'/>\
        </file-request></message>");
    let want = Request::Files {
        id: "f1".into(),
        files: vec![f("budget.ods", None, None), f("notes.txt", None, None)],
        endpoint: Endpoint {
            host: "127.0.0.1".into(),
            port: 40001,
            token: "tok-a1b2c3d4".into(),
        },
    };
    assert_eq!(req, Ok(Some(MessagePayload::Request(want.clone()))));
    assert_eq!(want.kind(), Kind::FileRequest);
    assert_eq!(
        reparsed(want.to_element()),
        Ok(Some(MessagePayload::Request(want)))
    );

    // '…64 hex…' of the doc replaced by H1.
    let acc = msg(&format!(
        "<message to='alice@localhost'>\
        <accept xmlns='urn:rendezvous:params:xml:ns:moe' id='f1' requester='alice@localhost'>\
        <file name='budget.ods' size='5120' sha256='{H1}'/></accept></message>"
    ));
    let want = Answer::Accept {
        id: "f1".into(),
        requester: jid("alice@localhost"),
        files: vec![f("budget.ods", Some(5120), Some(H1))],
        endpoint: None,
    };
    assert_eq!(acc, Ok(Some(MessagePayload::Answer(want.clone()))));
    assert_eq!(
        reparsed(want.to_element()),
        Ok(Some(MessagePayload::Answer(want)))
    );
}

// ---- §2.3 offer ----

#[test]
fn doc_2_3_offer_and_accept() {
    let off = msg(&format!(
        "<message to='bob@localhost'>\
        <offer xmlns='urn:rendezvous:params:xml:ns:moe' id='o1'>\
        <file name='report.odt' size='20480' sha256='{H1}'/>\
        <file name='photo.jpg' size='90000' sha256='{H2}'/></offer></message>"
    ));
    let want = Request::Offer {
        id: "o1".into(),
        files: vec![
            f("report.odt", Some(20480), Some(H1)),
            f("photo.jpg", Some(90000), Some(H2)),
        ],
    };
    assert_eq!(off, Ok(Some(MessagePayload::Request(want.clone()))));
    assert_eq!(want.kind(), Kind::Offer);
    assert_eq!(
        reparsed(want.to_element()),
        Ok(Some(MessagePayload::Request(want.clone())))
    );
    let renamed = want.with_id("o2");
    assert_eq!(renamed.id(), "o2");
    assert_eq!(want.id(), "o1");

    let acc = msg("<message to='alice@localhost'>\
        <accept xmlns='urn:rendezvous:params:xml:ns:moe' id='o1' requester='alice@localhost'>\
        <file name='report.odt'/>\
        <endpoint host='127.0.0.1' port='40002' token='tok-b9c8d7e6'/>\
        </accept></message>");
    let want = Answer::Accept {
        id: "o1".into(),
        requester: jid("alice@localhost"),
        files: vec![f("report.odt", None, None)],
        endpoint: Some(Endpoint {
            host: "127.0.0.1".into(),
            port: 40002,
            token: "tok-b9c8d7e6".into(),
        }),
    };
    assert_eq!(acc, Ok(Some(MessagePayload::Answer(want.clone()))));
    assert_eq!(
        reparsed(want.to_element()),
        Ok(Some(MessagePayload::Answer(want)))
    );
}

// ---- §2.4 broadcast ----

fn broadcast_xml(n: usize) -> String {
    let tos: String = (0..n)
        .map(|i| format!("<to jid='u{i}@localhost'/>"))
        .collect();
    format!(
        "<message to='localhost'><broadcast xmlns='urn:rendezvous:params:xml:ns:moe' id='b1'>\
         {tos}<offer><file name='minutes.pdf'/></offer></broadcast></message>"
    )
}

#[test]
fn doc_2_4_broadcast() {
    let b = msg(&format!(
        "<message to='localhost'>\
        <broadcast xmlns='urn:rendezvous:params:xml:ns:moe' id='b1'>\
        <to jid='bob@localhost'/><to jid='carol@localhost'/><to jid='dave@localhost'/>\
        <offer><file name='minutes.pdf' size='1000' sha256='{H1}'/>\
        <file name='plan.pdf' size='2000' sha256='{H2}'/></offer>\
        </broadcast></message>"
    ));
    let want = Broadcast {
        id: "b1".into(),
        to: vec![
            jid("bob@localhost"),
            jid("carol@localhost"),
            jid("dave@localhost"),
        ],
        files: vec![
            f("minutes.pdf", Some(1000), Some(H1)),
            f("plan.pdf", Some(2000), Some(H2)),
        ],
    };
    assert_eq!(b, Ok(Some(MessagePayload::Broadcast(want.clone()))));
    assert_eq!(
        reparsed(want.to_element()),
        Ok(Some(MessagePayload::Broadcast(want.clone())))
    );
    let bob = jid("bob@localhost");
    assert_eq!(want.exchange_id(&bob), "b1/bob@localhost");
    let offer = want.offer_for(&bob);
    assert_eq!(offer.id(), "b1/bob@localhost");
    assert_eq!(
        offer,
        Request::Offer {
            id: "b1".into(),
            files: want.files.clone()
        }
        .with_id("b1/bob@localhost")
    );
    // bob's answer names the per-addressee id; the JID part is normalised.
    let acc = msg("<message to='alice@localhost'>\
        <decline xmlns='urn:rendezvous:params:xml:ns:moe' id='b1/Bob@LocalHost' \
        requester='alice@localhost'/></message>");
    assert_eq!(
        acc,
        Ok(Some(MessagePayload::Answer(Answer::Decline {
            id: "b1/bob@localhost".into(),
            requester: jid("alice@localhost")
        })))
    );
}

#[test]
fn broadcast_bounds() {
    assert!(matches!(
        msg(&broadcast_xml(MAX_BROADCAST)),
        Ok(Some(MessagePayload::Broadcast(b))) if b.to.len() == MAX_BROADCAST
    ));
    assert_eq!(
        msg(&broadcast_xml(0)),
        Err(err("broadcast needs 1-50 <to/>"))
    );
    assert_eq!(
        msg(&broadcast_xml(MAX_BROADCAST + 1)),
        Err(err("broadcast needs 1-50 <to/>"))
    );
    assert_eq!(
        message_payload(&xml(&broadcast_xml(3)), 2),
        Err(err("broadcast needs 1-2 <to/>"))
    );
    assert_eq!(
        msg(
            "<message><broadcast xmlns='urn:rendezvous:params:xml:ns:moe' id='b1'>\
             <to jid='bob@localhost'/><to jid='BOB@localhost'/>\
             <offer><file name='a'/></offer></broadcast></message>"
        ),
        Err(err("broadcast names bob@localhost twice"))
    );
    assert_eq!(
        msg(
            "<message><broadcast xmlns='urn:rendezvous:params:xml:ns:moe' id='b1'>\
             <to jid='bob@localhost'/></broadcast></message>"
        ),
        Err(err("broadcast needs an offer"))
    );
    assert_eq!(
        msg(
            "<message><broadcast xmlns='urn:rendezvous:params:xml:ns:moe' id='b1'>\
             <to jid='bob@localhost/phone'/><offer><file name='a'/></offer></broadcast></message>"
        ),
        Err(err("to jid must be a user's bare JID"))
    );
}

// ---- message validation ----

#[test]
fn ids_are_checked() {
    let w = |id: &str| {
        msg(&format!(
            "<message><worklist-request xmlns='urn:rendezvous:params:xml:ns:moe' id='{id}'/></message>"
        ))
    };
    let bad = Err(err(
        "worklist-request id must be 1-64 characters of [A-Za-z0-9._-]",
    ));
    assert_eq!(w("a b"), bad);
    assert_eq!(w("a/b"), bad, "requests cannot use broadcast ids");
    assert_eq!(w("é"), bad);
    assert_eq!(w(""), bad);
    assert_eq!(w(&"x".repeat(65)), bad);
    assert!(w(&"x".repeat(64)).is_ok());
    assert!(w("A-z_0.9").is_ok());
    assert_eq!(
        msg("<message><worklist-request xmlns='urn:rendezvous:params:xml:ns:moe'/></message>"),
        Err(err("worklist-request needs an id"))
    );
    let d = |id: &str| {
        msg(&format!(
            "<message><decline xmlns='urn:rendezvous:params:xml:ns:moe' id='{id}' \
             requester='alice@localhost'/></message>"
        ))
    };
    let bad = Err(err(
        "decline id must be 1-64 characters of [A-Za-z0-9._-], or such an id, '/' and a bare JID",
    ));
    assert_eq!(d("b1/bob@localhost/res"), bad);
    assert_eq!(d("b1/localhost"), bad);
    assert_eq!(d("b 1/bob@localhost"), bad);
    assert_eq!(d("b1/"), bad);
}

#[test]
fn endpoints_are_checked() {
    let fr = |ep: &str| {
        msg(&format!(
            "<message><file-request xmlns='urn:rendezvous:params:xml:ns:moe' id='f1'>\
             <file name='a'/>{ep}</file-request></message>"
        ))
    };
    assert_eq!(
        fr("<endpoint host='h' port='1' token='short'/>"),
        Err(err(
            "endpoint token must be 8-128 characters of [A-Za-z0-9_-]"
        ))
    );
    assert_eq!(
        fr("<endpoint host='h' port='1' token='tok a1b2c3d4'/>"),
        Err(err(
            "endpoint token must be 8-128 characters of [A-Za-z0-9_-]"
        ))
    );
    assert_eq!(
        fr(&format!(
            "<endpoint host='h' port='1' token='{}'/>",
            "t".repeat(129)
        )),
        Err(err(
            "endpoint token must be 8-128 characters of [A-Za-z0-9_-]"
        ))
    );
    assert!(fr(&format!(
        "<endpoint host='h' port='1' token='{}'/>",
        "t".repeat(128)
    ))
    .is_ok());
    assert!(fr("<endpoint host='::1' port='65535' token='12345678'/>").is_ok());
    for port in ["0", "65536", "+1", "x", ""] {
        assert_eq!(
            fr(&format!(
                "<endpoint host='h' port='{port}' token='tok-a1b2c3d4'/>"
            )),
            Err(err("endpoint port must be 1-65535")),
            "{port}"
        );
    }
    assert_eq!(
        fr("<endpoint host='h' token='tok-a1b2c3d4'/>"),
        Err(err("endpoint needs host, port and token"))
    );
    assert_eq!(
        fr("<endpoint host='a b' port='1' token='tok-a1b2c3d4'/>"),
        Err(err("endpoint host must be a host name or an IP address"))
    );
    assert_eq!(
        fr(""),
        Err(err(
            "file-request needs an endpoint where the files are sent"
        ))
    );
    assert_eq!(
        fr("<endpoint host='h' port='1' token='tok-a1b2c3d4'/>\
            <endpoint host='h' port='2' token='tok-a1b2c3d4'/>"),
        Err(err("file-request has more than one endpoint"))
    );
    assert_eq!(
        msg(
            "<message><offer xmlns='urn:rendezvous:params:xml:ns:moe' id='o1'><file name='a'/>\
             <endpoint host='h' port='1' token='tok-a1b2c3d4'/></offer></message>"
        ),
        Err(err("offer does not take <endpoint/>"))
    );
}

#[test]
fn files_are_checked() {
    let off = |files: &str| {
        msg(&format!(
            "<message><offer xmlns='urn:rendezvous:params:xml:ns:moe' id='o1'>{files}</offer></message>"
        ))
    };
    assert_eq!(
        off("<file name='a.txt'/><file name='a.txt' size='3'/>"),
        Err(err("offer names file \"a.txt\" twice"))
    );
    assert_eq!(off(""), Err(err("offer needs at least one file")));
    assert_eq!(off("<file size='3'/>"), Err(err("file needs name")));
    for name in ["", "..", "a/b", "a\\b", "a&#9;b"] {
        assert!(
            matches!(off(&format!("<file name='{name}'/>")),
                Err(MoeError::InvalidPayload(m)) if m.ends_with("must be a plain file name of 1-255 characters")),
            "{name}"
        );
    }
    assert_eq!(
        off("<file name='a' size='-1'/>"),
        Err(err("file \"a\" size must be a byte count"))
    );
    assert_eq!(
        off("<file name='a' sha256='abc'/>"),
        Err(err("file \"a\" sha256 must be 64 hex digits"))
    );
    assert_eq!(
        off("<file name='a'/><note/>"),
        Err(err("offer does not take <note/>"))
    );
    // Children in other namespaces are extensions and ignored.
    assert!(off("<file name='a'/><x xmlns='urn:other'/>").is_ok());
    assert_eq!(
        msg(
            "<message><accept xmlns='urn:rendezvous:params:xml:ns:moe' id='o1' \
             requester='alice@localhost'/></message>"
        ),
        Err(err("accept needs at least one file"))
    );
}

#[test]
fn requester_must_be_bare() {
    for r in ["alice@localhost/office", "localhost", "a b@localhost"] {
        assert_eq!(
            msg(&format!(
                "<message><decline xmlns='urn:rendezvous:params:xml:ns:moe' id='w1' \
                 requester='{r}'/></message>"
            )),
            Err(err("decline requester must be a user's bare JID")),
            "{r}"
        );
    }
    assert_eq!(
        msg("<message><decline xmlns='urn:rendezvous:params:xml:ns:moe' id='w1'/></message>"),
        Err(err("decline needs requester"))
    );
}

#[test]
fn messages_without_moe_or_bounced_or_server_only() {
    assert_eq!(
        msg("<message to='bob@localhost'><body>hi</body></message>"),
        Ok(None)
    );
    assert_eq!(
        msg("<message type='error'><offer xmlns='urn:rendezvous:params:xml:ns:moe' id='o1'/></message>"),
        Ok(None)
    );
    assert_eq!(
        msg("<message><contact-refused xmlns='urn:rendezvous:params:xml:ns:moe' jid='bob@localhost'/></message>"),
        Err(err("<contact-refused/> is not a MOE message payload a client may send"))
    );
    // The first MOE child counts, after foreign ones.
    assert_eq!(
        msg("<message><body>x</body><worklist-request xmlns='urn:rendezvous:params:xml:ns:moe' id='w'/></message>"),
        Ok(Some(MessagePayload::Request(Request::Worklist { id: "w".into() })))
    );
}

// ---- §1 settings ----

#[test]
fn doc_1_settings() {
    assert_eq!(
        iq("<iq type='get' id='s2'><settings xmlns='urn:rendezvous:params:xml:ns:moe'/></iq>"),
        Ok(Some(IqPayload::SettingsGet))
    );
    // The push the server sends is a set; a client sending it is refused.
    assert_eq!(
        iq(
            "<iq type='set' id='moe-push-1' to='alice@localhost/office'>\
            <settings xmlns='urn:rendezvous:params:xml:ns:moe' version='3'/></iq>"
        ),
        Err(err("<settings/> goes in an iq of type get"))
    );
    // XEP-0049 save: not MOE's payload.
    assert_eq!(
        iq("<iq type='set' id='s1'><query xmlns='jabber:iq:private'>\
            <settings xmlns='urn:rendezvous:params:xml:ns:moe' version='3'>\
            <desktop wallpaper='blue'/><recent file='report.odt'/></settings></query></iq>"),
        Ok(None)
    );
    assert_eq!(settings_key(), "urn:rendezvous:params:xml:ns:moe settings");
    let stored = xml(
        "<settings xmlns='urn:rendezvous:params:xml:ns:moe' version='3'>\
                      <desktop wallpaper='blue'/></settings>",
    );
    assert_eq!(crate::xmpp::private::key(&stored), settings_key());
    assert_eq!(
        empty_settings().to_string(),
        "<settings xmlns='urn:rendezvous:params:xml:ns:moe'/>"
    );
}

#[test]
fn doc_1_push_flag() {
    let mut p =
        xml("<presence><moe xmlns='urn:rendezvous:params:xml:ns:moe' settings='push'/></presence>");
    assert!(take_push_flag(&mut p));
    assert_eq!(p.to_string(), "<presence/>");
    assert!(!take_push_flag(&mut p));
    let mut p = xml(
        "<presence><show>away</show><moe xmlns='urn:rendezvous:params:xml:ns:moe'/></presence>",
    );
    assert!(!take_push_flag(&mut p));
    assert_eq!(p.to_string(), "<presence><show>away</show></presence>");
}

// ---- §3 groups ----

#[test]
fn doc_3_groups() {
    assert_eq!(
        iq("<iq type='get' id='g0'><groups xmlns='urn:rendezvous:params:xml:ns:moe'/></iq>"),
        Ok(Some(IqPayload::Groups(GroupOp::List)))
    );
    // The result of the doc, built and compared as parsed XML.
    let result = xml(
        "<iq type='result' id='g0'><groups xmlns='urn:rendezvous:params:xml:ns:moe'>\
                      <group name='Friends'/><group name='Team'/></groups></iq>",
    );
    assert_eq!(
        result.get_child("groups", NS),
        Some(&groups_result(["Friends", "Team"]))
    );
    // The doc's '…moe' abbreviates the namespace.
    assert_eq!(
        iq("<iq type='set' id='g1'><groups xmlns='urn:rendezvous:params:xml:ns:moe'><create name='Team'/></groups></iq>"),
        Ok(Some(IqPayload::Groups(GroupOp::Create("Team".into()))))
    );
    assert_eq!(
        iq("<iq type='set' id='g2'><groups xmlns='urn:rendezvous:params:xml:ns:moe'><rename name='Team' to='Project X'/></groups></iq>"),
        Ok(Some(IqPayload::Groups(GroupOp::Rename {
            name: "Team".into(),
            to: "Project X".into()
        })))
    );
    assert_eq!(
        iq("<iq type='set' id='g3'><groups xmlns='urn:rendezvous:params:xml:ns:moe'><delete name='Project X'/></groups></iq>"),
        Ok(Some(IqPayload::Groups(GroupOp::Delete("Project X".into()))))
    );
}

#[test]
fn groups_invalid() {
    let g = |ty: &str, inner: &str| {
        iq(&format!(
            "<iq type='{ty}' id='g'><groups xmlns='urn:rendezvous:params:xml:ns:moe'>{inner}</groups></iq>"
        ))
    };
    assert_eq!(
        g("set", "<move name='a'/>"),
        Err(err("unknown groups operation <move/>"))
    );
    let empty = Err(err(
        "create name: a group name must be 1-1023 characters without control characters",
    ));
    assert_eq!(g("set", "<create name=''/>"), empty);
    assert_eq!(
        g("set", "<create name='a&#10;b'/>"),
        Err(err(
            "create name: a group name must be 1-1023 characters without control characters"
        ))
    );
    assert_eq!(
        g("set", &format!("<create name='{}'/>", "é".repeat(1024))),
        Err(err(
            "create name: a group name must be 1-1023 characters without control characters"
        ))
    );
    assert!(g("set", &format!("<create name='{}'/>", "é".repeat(1023))).is_ok());
    assert_eq!(g("set", "<rename name='a'/>"), Err(err("rename needs to")));
    assert_eq!(
        g("set", ""),
        Err(err("<groups/> goes in an iq of type get"))
    );
    assert_eq!(
        g("get", "<create name='a'/>"),
        Err(err("<groups/> goes in an iq of type set"))
    );
    assert_eq!(
        g("set", "<create name='a'/><delete name='b'/>"),
        Err(err("groups takes one operation per iq"))
    );
    // result/error iqs are never answered with an error.
    assert_eq!(g("result", "<group name='a'/>"), Ok(None));
    assert_eq!(
        iq("<iq id='g'><groups xmlns='urn:rendezvous:params:xml:ns:moe'/></iq>"),
        Err(err("iq needs type get or set"))
    );
    assert_eq!(
        iq("<iq type='get' id='g'><offer xmlns='urn:rendezvous:params:xml:ns:moe' id='o'/></iq>"),
        Err(err("<offer/> is not a MOE iq payload"))
    );
    assert_eq!(
        iq("<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>"),
        Ok(None)
    );
}

// ---- §4 contacts ----

#[test]
fn doc_4_contacts() {
    assert_eq!(
        iq(
            "<iq type='set' id='c1'><add-contact xmlns='urn:rendezvous:params:xml:ns:moe' \
            jid='bob@localhost' name='Bob' group='Team'/></iq>"
        ),
        Ok(Some(IqPayload::AddContact(AddContact {
            jid: jid("bob@localhost"),
            name: Some("Bob".into()),
            group: Some("Team".into())
        })))
    );
    assert_eq!(
        iq("<iq type='set' id='c1'><add-contact xmlns='urn:rendezvous:params:xml:ns:moe' jid='bob@localhost'/></iq>"),
        Ok(Some(IqPayload::AddContact(AddContact {
            jid: jid("bob@localhost"),
            name: None,
            group: None
        })))
    );
    // '…moe' and 'moe-c-…' of the doc spelled out.
    assert_eq!(
        iq(
            "<iq type='set' id='c2'><contact-response xmlns='urn:rendezvous:params:xml:ns:moe' \
            jid='alice@localhost' accept='true'/></iq>"
        ),
        Ok(Some(IqPayload::ContactResponse(ContactResponse {
            jid: jid("alice@localhost"),
            accept: true
        })))
    );
    assert_eq!(
        iq(
            "<iq type='set' id='c2'><contact-response xmlns='urn:rendezvous:params:xml:ns:moe' \
            jid='alice@localhost' accept='false'/></iq>"
        ),
        Ok(Some(IqPayload::ContactResponse(ContactResponse {
            jid: jid("alice@localhost"),
            accept: false
        })))
    );
    let delivered = xml("<message from='localhost' to='bob@localhost' id='moe-c-1'>\
        <contact-request xmlns='urn:rendezvous:params:xml:ns:moe' jid='alice@localhost' name='Bob'/></message>");
    assert_eq!(
        delivered.get_child("contact-request", NS),
        Some(&contact_request("alice@localhost", Some("Bob")))
    );
    let refused = xml("<message from='localhost' to='alice@localhost'>\
        <contact-refused xmlns='urn:rendezvous:params:xml:ns:moe' jid='bob@localhost'/></message>");
    assert_eq!(
        refused.get_child("contact-refused", NS),
        Some(&contact_refused("bob@localhost"))
    );
    assert_eq!(
        contact_request("alice@localhost", None).to_xml(NS),
        "<contact-request jid='alice@localhost'/>"
    );
}

#[test]
fn contacts_invalid() {
    assert_eq!(
        iq("<iq type='get' id='c1'><add-contact xmlns='urn:rendezvous:params:xml:ns:moe' jid='bob@localhost'/></iq>"),
        Err(err("<add-contact/> goes in an iq of type set"))
    );
    assert_eq!(
        iq("<iq type='set' id='c1'><add-contact xmlns='urn:rendezvous:params:xml:ns:moe' jid='bob@localhost/x'/></iq>"),
        Err(err("add-contact jid must be a user's bare JID"))
    );
    assert_eq!(
        iq("<iq type='set' id='c1'><add-contact xmlns='urn:rendezvous:params:xml:ns:moe' jid='bob@localhost' group=''/></iq>"),
        Err(err("add-contact group: a group name must be 1-1023 characters without control characters"))
    );
    assert_eq!(
        iq("<iq type='set' id='c2'><contact-response xmlns='urn:rendezvous:params:xml:ns:moe' jid='alice@localhost'/></iq>"),
        Err(err("contact-response needs accept"))
    );
    assert_eq!(
        iq("<iq type='set' id='c2'><contact-response xmlns='urn:rendezvous:params:xml:ns:moe' jid='alice@localhost' accept='yes'/></iq>"),
        Err(err("contact-response accept must be true or false"))
    );
    assert_eq!(
        iq("<iq type='get' id='c2'><contact-response xmlns='urn:rendezvous:params:xml:ns:moe' jid='alice@localhost' accept='true'/></iq>"),
        Err(err("<contact-response/> goes in an iq of type set"))
    );
}

// ---- errors ----

#[test]
fn doc_error_example() {
    let m = xml(
        "<message from='alice@localhost/office' to='bob@localhost' id='m9'>\
        <file-request xmlns='urn:rendezvous:params:xml:ns:moe' id='f1'><file name='a'/>\
        <endpoint host='127.0.0.1'/></file-request></message>",
    );
    let e = message_payload(&m, MAX_BROADCAST).unwrap_err();
    assert_eq!(e, err("endpoint needs host, port and token"));
    let reply = e.reply_to(&m);
    assert_eq!(reply.attr("to"), Some("alice@localhost/office"));
    assert_eq!(reply.attr("from"), Some("bob@localhost"));
    assert_eq!(reply.attr("id"), Some("m9"));
    assert_eq!(reply.attr("type"), Some("error"));
    assert!(reply.has_child("file-request", NS), "message payload kept");
    // The doc's <error/>, plus the xml:lang stanza::error_element always writes.
    let want = xml("<error xmlns='jabber:client' type='modify'>\
        <bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
        <invalid-payload xmlns='urn:rendezvous:params:xml:ns:moe'/>\
        <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' xml:lang='en'>endpoint needs host, port and token</text>\
        </error>");
    assert_eq!(reply.get_child("error", CLIENT_NS), Some(&want));
}

#[test]
fn error_mapping_and_iq_reply() {
    let iq_el = xml("<iq type='set' id='g9' from='alice@localhost/office'>\
        <groups xmlns='urn:rendezvous:params:xml:ns:moe'><create name='Team'/></groups></iq>");
    let e = MoeError::GroupExists("Team".into());
    assert_eq!(
        e.reply_to(&iq_el).to_string(),
        "<iq id='g9' to='alice@localhost/office' type='error'><error type='cancel'>\
         <conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
         <group-exists xmlns='urn:rendezvous:params:xml:ns:moe'/>\
         <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' xml:lang='en'>group \"Team\" already exists</text>\
         </error></iq>"
    );
    let c = MoeError::Conflict("w1".into());
    assert_eq!(
        c.reply_to(&iq_el).to_string(),
        "<iq id='g9' to='alice@localhost/office' type='error'><error type='cancel'>\
         <conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
         <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' xml:lang='en'>exchange id \"w1\" is still open</text>\
         </error></iq>"
    );
    let table = [
        (
            err("x"),
            StanzaError::BadRequest,
            Some("invalid-payload"),
            "modify",
        ),
        (
            MoeError::UnknownExchange,
            StanzaError::ItemNotFound,
            Some("unknown-exchange"),
            "cancel",
        ),
        (
            MoeError::ExchangeExpired,
            StanzaError::ItemNotFound,
            Some("exchange-expired"),
            "cancel",
        ),
        (
            MoeError::NotAddressee,
            StanzaError::Forbidden,
            Some("not-addressee"),
            "auth",
        ),
        (
            MoeError::UnknownGroup("g".into()),
            StanzaError::ItemNotFound,
            Some("unknown-group"),
            "cancel",
        ),
        (
            MoeError::GroupExists("g".into()),
            StanzaError::Conflict,
            Some("group-exists"),
            "cancel",
        ),
        (
            MoeError::UnknownRequest,
            StanzaError::ItemNotFound,
            Some("unknown-request"),
            "cancel",
        ),
        (
            MoeError::Conflict("w".into()),
            StanzaError::Conflict,
            None,
            "cancel",
        ),
    ];
    for (e, se, cond, ty) in table {
        assert_eq!(e.stanza_error(), se, "{e:?}");
        assert_eq!(e.moe_condition(), cond, "{e:?}");
        let r = e.reply_to(&iq_el);
        let er = r.get_child("error", CLIENT_NS).unwrap();
        assert_eq!(er.attr("type"), Some(ty), "{e:?}");
        assert!(er.has_child(se.condition(), STANZAS_NS), "{e:?}");
        assert_eq!(
            moe_children(er).count(),
            usize::from(cond.is_some()),
            "{e:?}"
        );
        assert_eq!(r.get_child("groups", NS), None, "iq payload not echoed");
    }
}

// ---- exchanges ----

fn accept(id: &str, files: &[&str], ep: bool) -> Answer {
    Answer::Accept {
        id: id.into(),
        requester: jid("alice@localhost"),
        files: files.iter().map(|n| f(n, None, None)).collect(),
        endpoint: ep.then(|| Endpoint {
            host: "127.0.0.1".into(),
            port: 40002,
            token: "tok-b9c8d7e6".into(),
        }),
    }
}

fn decline(id: &str) -> Answer {
    Answer::Decline {
        id: id.into(),
        requester: jid("alice@localhost"),
    }
}

const A: &str = "alice@localhost";
const B: &str = "bob@localhost";
const TTL: Duration = EXCHANGE_TTL;

#[test]
fn exchange_lifecycle() {
    let t0 = Instant::now();
    let mut x = Exchanges::new();
    assert_eq!(x.next_expiry(), None);
    let offered = vec!["report.odt".to_string(), "photo.jpg".to_string()];
    x.open(A, "o1", B, Kind::Offer, offered.clone(), t0, TTL)
        .unwrap();
    assert_eq!(x.open_count(), 1);
    assert_eq!(x.next_expiry(), Some(t0 + TTL));
    assert_eq!(
        x.open(A, "o1", B, Kind::Offer, vec![], t0, TTL),
        Err(MoeError::Conflict("o1".into()))
    );
    // Same id, another requester: independent.
    x.open(B, "o1", A, Kind::Worklist, vec![], t0, TTL).unwrap();
    assert_eq!(x.open_count(), 2);

    let t1 = t0 + Duration::from_secs(10);
    assert_eq!(
        x.answer("carol@localhost", &decline("o1"), t1),
        Err(MoeError::NotAddressee)
    );
    assert_eq!(
        x.answer(B, &accept("o1", &["report.odt"], false), t1),
        Err(err("accept of an offer needs an endpoint"))
    );
    assert_eq!(
        x.answer(B, &accept("o1", &["secret.txt"], true), t1),
        Err(err("accept names file \"secret.txt\" that was not offered"))
    );
    let closed = x
        .answer(B, &accept("o1", &["report.odt"], true), t1)
        .unwrap();
    assert_eq!(
        closed,
        Exchange {
            addressee: B.into(),
            kind: Kind::Offer,
            offered,
            expires_at: t0 + TTL
        }
    );
    assert_eq!(
        x.answer(B, &accept("o1", &["report.odt"], true), t1),
        Err(MoeError::UnknownExchange)
    );
    assert_eq!(x.open_count(), 1);
    // The id is free again.
    x.open(A, "o1", B, Kind::Worklist, vec![], t1, TTL).unwrap();
    assert_eq!(
        x.answer("nobody@localhost", &decline("zzz"), t1),
        Err(MoeError::UnknownExchange)
    );
}

#[test]
fn answers_must_fit_kind() {
    let t0 = Instant::now();
    let mut x = Exchanges::new();
    x.open(A, "w1", B, Kind::Worklist, vec![], t0, TTL).unwrap();
    assert_eq!(
        x.answer(B, &accept("w1", &["a"], false), t0),
        Err(err("accept does not answer a worklist-request"))
    );
    let wl = Answer::Worklist {
        id: "w1".into(),
        requester: jid(A),
        items: vec![],
    };
    assert_eq!(x.answer(B, &wl, t0).map(|e| e.kind), Ok(Kind::Worklist));

    let files = vec!["budget.ods".to_string(), "notes.txt".to_string()];
    x.open(A, "f1", B, Kind::FileRequest, files, t0, TTL)
        .unwrap();
    let wl_f1 = Answer::Worklist {
        id: "f1".into(),
        requester: jid(A),
        items: vec![],
    };
    assert_eq!(
        x.answer(B, &wl_f1, t0),
        Err(err("worklist answers only a worklist-request"))
    );
    assert_eq!(
        x.answer(B, &accept("f1", &["budget.ods"], true), t0),
        Err(err("accept of a file-request must not carry an endpoint"))
    );
    assert_eq!(
        x.answer(B, &accept("f1", &["other.ods"], false), t0),
        Err(err(
            "accept names file \"other.ods\" that was not requested"
        ))
    );
    assert!(x
        .answer(B, &accept("f1", &["budget.ods"], false), t0)
        .is_ok());

    x.open(A, "o9", B, Kind::Offer, vec!["a".into()], t0, TTL)
        .unwrap();
    assert_eq!(
        x.answer(B, &decline("o9"), t0).map(|e| e.kind),
        Ok(Kind::Offer)
    );
    assert_eq!(x.open_count(), 0);
}

#[test]
fn expiry_with_virtual_clock() {
    let t0 = Instant::now();
    let ttl = Duration::from_secs(300);
    let mut x = Exchanges::new();
    x.open(A, "w1", B, Kind::Worklist, vec![], t0, ttl).unwrap();
    x.open(
        A,
        "w2",
        B,
        Kind::Worklist,
        vec![],
        t0 + Duration::from_secs(100),
        ttl,
    )
    .unwrap();
    assert_eq!(x.expire(t0 + Duration::from_secs(299)), 0);
    assert_eq!(x.open_count(), 2);

    // After the ttl, an answer is told the exchange expired, even before expire() ran.
    let t_late = t0 + ttl;
    assert_eq!(
        x.answer(B, &decline("w1"), t_late),
        Err(MoeError::ExchangeExpired)
    );
    assert_eq!(
        x.answer(B, &decline("w1"), t_late),
        Err(MoeError::ExchangeExpired)
    );
    assert_eq!(x.open_count(), 1, "w1 is seen expired");
    // answer() already marked w1; expire() counts only w2 when it goes.
    assert_eq!(x.expire(t_late), 0);
    assert_eq!(x.next_expiry(), Some(t0 + Duration::from_secs(400)));
    assert_eq!(x.expire(t0 + Duration::from_secs(400)), 1);
    assert_eq!(x.open_count(), 0);
    // Remembered for one more ttl: w1 until t0+600, w2 until t0+700.
    assert_eq!(x.next_expiry(), Some(t0 + Duration::from_secs(600)));
    assert_eq!(
        x.answer(B, &decline("w2"), t0 + Duration::from_secs(650)),
        Err(MoeError::ExchangeExpired)
    );
    assert_eq!(x.expire(t0 + Duration::from_secs(600)), 0);
    assert_eq!(
        x.answer(B, &decline("w1"), t0 + Duration::from_secs(650)),
        Err(MoeError::UnknownExchange)
    );
    assert_eq!(x.next_expiry(), Some(t0 + Duration::from_secs(700)));
    assert_eq!(x.expire(t0 + Duration::from_secs(700)), 0);
    assert_eq!(x.next_expiry(), None);

    // An expired id may be reused at once.
    let mut y = Exchanges::default();
    y.open(A, "w1", B, Kind::Worklist, vec![], t0, ttl).unwrap();
    y.open(A, "w1", B, Kind::Worklist, vec![], t0 + ttl, ttl)
        .unwrap();
    assert_eq!(y.open_count(), 1);
    // An exchange never seen expired and already past 2*ttl still counts when dropped.
    assert_eq!(y.expire(t0 + ttl * 5), 1);
    assert_eq!(y.open_count(), 0);

    // A huge configured ttl is capped, not a panic.
    let mut z = Exchanges::new();
    z.open(A, "w1", B, Kind::Worklist, vec![], t0, Duration::MAX)
        .unwrap();
    assert_eq!(z.next_expiry(), Some(t0 + MAX_TTL));
}
