//! Unit tests of the cluster state document: exact serialisation, hand-written documents,
//! exact errors, chunking and the replica.

use super::*;

const ENTITY: &str = "sip:cluster@example.com";

fn user(id: &str, pres_type: PresType, resources: u32, open: bool) -> UserInfo {
    UserInfo {
        user_id: id.into(),
        pres_type,
        resources,
        pres_info: if open { "open" } else { "closed" }.into(),
    }
}

fn svr(id: &str, current: u64, max: u64) -> SvrLoad {
    SvrLoad {
        id: id.into(),
        current,
        max,
    }
}

fn sample_full() -> ClusterState {
    ClusterState {
        version: 12,
        kind: Kind::Full,
        chunk: 1,
        chunks: 1,
        servers: vec![svr("node1", 40, 100), svr("node2", 7, 100)],
        candidates: vec!["sip:pool1@10.0.0.4:5060".into()],
        active: 2,
        users: vec![
            ServerUsers {
                server_id: "node1".into(),
                users: vec![
                    user("alice", PresType::Xmpp, 3, true),
                    user("a&b<\"c\">", PresType::Sip, 0, false),
                ],
            },
            ServerUsers {
                server_id: "node2".into(),
                users: vec![user("carol", PresType::Sip, 1, true)],
            },
        ],
        total_users: 3,
        removed: Vec::new(),
    }
}

fn delta(version: u64, users: Vec<ServerUsers>, removed: Vec<&str>) -> ClusterState {
    ClusterState {
        version,
        kind: Kind::Delta,
        servers: vec![svr("node1", 41, 100), svr("node2", 8, 100)],
        candidates: Vec::new(),
        active: 2,
        users,
        total_users: 2,
        removed: removed.into_iter().map(String::from).collect(),
        ..ClusterState::default()
    }
}

fn parse(xml: &str) -> ClusterState {
    match ClusterState::parse(xml.as_bytes()) {
        Ok(doc) => doc,
        Err(e) => panic!("{e}: {xml}"),
    }
}

fn err(xml: &str) -> StateError {
    match ClusterState::parse(xml.as_bytes()) {
        Ok(doc) => panic!("accepted {doc:?}"),
        Err(e) => e,
    }
}

/// Wraps load elements in a PIDF `<presence>`.
fn doc(inner: &str) -> String {
    format!(
            "<presence xmlns='urn:ietf:params:xml:ns:pidf' xmlns:load='urn:rendezvous:params:xml:ns:load' entity='sip:cluster@example.com'>{inner}</presence>"
        )
}

const MIN_TAIL: &str =
        "<load:active-svr-number>1</load:active-svr-number><load:total-users-number>0</load:total-users-number>";

#[test]
fn full_document_round_trips_and_serialises_exactly() {
    let state = sample_full();
    let xml = state.to_xml(ENTITY);
    assert!(xml.starts_with(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" \
             xmlns:load=\"urn:rendezvous:params:xml:ns:load\" entity=\"sip:cluster@example.com\">\
             <tuple id=\"cluster\"><status><basic>open</basic></status></tuple>\
             <load:state version=\"12\" kind=\"full\" chunk=\"1\" chunks=\"1\"/>\
             <load:svr-loadlevel-list><load:svr-load svr-id=\"node1\"><load:current-loadlevel>40</load:current-loadlevel>\
             <load:max-loadlevel>100</load:max-loadlevel></load:svr-load>"
        ), "{xml}");
    assert!(xml.contains(
            "<load:candidate-svr-list><load:svr-uri>sip:pool1@10.0.0.4:5060</load:svr-uri></load:candidate-svr-list>\
             <load:active-svr-number>2</load:active-svr-number>\
             <load:current-users-list server-id=\"node1\"><load:current-users-number>2</load:current-users-number>\
             <load:info-users user-id=\"alice\"><load:pres-type>xmpp</load:pres-type>\
             <load:resource-number>3</load:resource-number><load:pres-info>open</load:pres-info></load:info-users>\
             <load:info-users user-id=\"a&amp;b&lt;&quot;c&quot;&gt;\">"
        ), "{xml}");
    assert!(xml.ends_with("<load:total-users-number>3</load:total-users-number></presence>"));
    assert!(!xml.contains("removed-users"));
    assert_eq!(parse(&xml), state);
}

#[test]
fn delta_document_round_trips() {
    let d = delta(
        13,
        vec![ServerUsers {
            server_id: "node2".into(),
            users: vec![user("alice", PresType::Xmpp, 2, true)],
        }],
        vec!["bob", "x<y"],
    );
    let xml = d.to_xml(ENTITY);
    assert!(xml.contains("<load:state version=\"13\" kind=\"delta\" chunk=\"1\" chunks=\"1\"/>"));
    assert!(xml.contains(
            "<load:removed-users><load:user-id>bob</load:user-id><load:user-id>x&lt;y</load:user-id></load:removed-users></presence>"
        ));
    assert!(!xml.contains("candidate-svr-list"));
    assert_eq!(parse(&xml), d);
    assert_eq!(d.chunks(ENTITY, 2048), vec![xml]);
}

#[test]
fn parses_a_hand_written_document() {
    let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- the example of the design -->
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:load="urn:rendezvous:params:xml:ns:load" entity="sip:cluster@example.com">
  <tuple id="cluster"><status><basic>open</basic></status></tuple>
  <load:state version="12" kind="full" chunk="1" chunks="3"/>
  <load:svr-loadlevel-list>
    <load:svr-load svr-id="node1"><load:current-loadlevel> 40 </load:current-loadlevel><load:max-loadlevel>100</load:max-loadlevel></load:svr-load>
  </load:svr-loadlevel-list>
  <load:candidate-svr-list><load:svr-uri>
     sip:pool1@10.0.0.4:5060 </load:svr-uri></load:candidate-svr-list>
  <ext xmlns="urn:example:foreign"><load:state version="x"/></ext>
  <load:future-element/>
  <l:active-svr-number xmlns:l="urn:rendezvous:params:xml:ns:load">2</l:active-svr-number>
  <current-users-list xmlns="urn:rendezvous:params:xml:ns:load" server-id="node1">
    <current-users-number>1</current-users-number>
    <info-users user-id="alice"><pres-type>xmpp</pres-type><resource-number>3</resource-number><pres-info>open</pres-info><mood>ok</mood></info-users>
  </current-users-list>
  <load:total-users-number>90</load:total-users-number>
  <load:removed-users><load:user-id>bob</load:user-id></load:removed-users>
</presence>
"#;
    assert_eq!(
        parse(xml),
        ClusterState {
            version: 12,
            kind: Kind::Full,
            chunk: 1,
            chunks: 3,
            servers: vec![svr("node1", 40, 100)],
            candidates: vec!["sip:pool1@10.0.0.4:5060".into()],
            active: 2,
            users: vec![ServerUsers {
                server_id: "node1".into(),
                users: vec![user("alice", PresType::Xmpp, 3, true)],
            }],
            total_users: 90,
            removed: vec!["bob".into()],
        }
    );
}

#[test]
fn invalid_documents_are_refused_naming_the_element() {
    let state = "<load:state version='1' kind='full'/>";
    assert_eq!(
        err("<presence xmlns='urn:ietf:params:xml:ns:cpim-pidf' entity='e'/>"),
        StateError::NotPresence {
            name: "presence".into(),
            ns: "urn:ietf:params:xml:ns:cpim-pidf".into()
        }
    );
    assert_eq!(
        err("<load:state xmlns:load='urn:rendezvous:params:xml:ns:load' version='1' kind='full'/>"),
        StateError::NotPresence {
            name: "state".into(),
            ns: LOAD_NS.into()
        }
    );
    assert_eq!(
        err(&doc(MIN_TAIL)),
        StateError::Missing {
            element: "load:state",
            parent: "presence"
        }
    );
    // Our element in another namespace is not ours.
    assert_eq!(
        err(&doc(&format!(
            "<state xmlns='urn:other' version='1' kind='full'/>{MIN_TAIL}"
        ))),
        StateError::Missing {
            element: "load:state",
            parent: "presence"
        }
    );
    assert_eq!(
        err(&doc(&format!("{state}{state}{MIN_TAIL}"))),
        StateError::Duplicate {
            element: "load:state",
            parent: "presence"
        }
    );
    assert_eq!(
        err(&doc(&format!("<load:state kind='full'/>{MIN_TAIL}"))),
        StateError::MissingAttribute {
            element: "load:state",
            attribute: "version"
        }
    );
    assert_eq!(
        err(&doc(&format!(
            "<load:state version='-1' kind='full'/>{MIN_TAIL}"
        ))),
        StateError::BadAttribute {
            element: "load:state",
            attribute: "version",
            value: "-1".into()
        }
    );
    assert_eq!(
        err(&doc(&format!(
            "<load:state version='1' kind='partial'/>{MIN_TAIL}"
        ))),
        StateError::BadAttribute {
            element: "load:state",
            attribute: "kind",
            value: "partial".into()
        }
    );
    assert_eq!(
        err(&doc(&format!(
            "<load:state version='1' kind='full' chunk='4' chunks='3'/>{MIN_TAIL}"
        ))),
        StateError::BadChunk {
            kind: "full",
            chunk: 4,
            chunks: 3
        }
    );
    assert_eq!(
        err(&doc(&format!(
            "<load:state version='1' kind='full' chunk='0' chunks='3'/>{MIN_TAIL}"
        ))),
        StateError::BadChunk {
            kind: "full",
            chunk: 0,
            chunks: 3
        }
    );
    assert_eq!(
        err(&doc(&format!(
            "<load:state version='1' kind='delta' chunk='1' chunks='2'/>{MIN_TAIL}"
        ))),
        StateError::BadChunk {
            kind: "delta",
            chunk: 1,
            chunks: 2
        }
    );
    assert_eq!(
            err(&doc(&format!(
                "{state}<load:svr-loadlevel-list><load:svr-load svr-id='n'><load:current-loadlevel>4x</load:current-loadlevel>\
                 <load:max-loadlevel>1</load:max-loadlevel></load:svr-load></load:svr-loadlevel-list>{MIN_TAIL}"
            ))),
            StateError::BadValue {
                element: "load:current-loadlevel",
                value: "4x".into()
            }
        );
    assert_eq!(
            err(&doc(&format!(
                "{state}<load:svr-loadlevel-list><load:svr-load svr-id='n'><load:current-loadlevel>4</load:current-loadlevel>\
                 </load:svr-load></load:svr-loadlevel-list>{MIN_TAIL}"
            ))),
            StateError::Missing {
                element: "load:max-loadlevel",
                parent: "load:svr-load"
            }
        );
    assert_eq!(
            err(&doc(&format!(
                "{state}<load:svr-loadlevel-list><load:svr-load><load:current-loadlevel>4</load:current-loadlevel>\
                 <load:max-loadlevel>1</load:max-loadlevel></load:svr-load></load:svr-loadlevel-list>{MIN_TAIL}"
            ))),
            StateError::MissingAttribute {
                element: "load:svr-load",
                attribute: "svr-id"
            }
        );
    assert_eq!(
            err(&doc(&format!(
                "{state}<load:active-svr-number>99999999999</load:active-svr-number><load:total-users-number>0</load:total-users-number>"
            ))),
            StateError::BadValue {
                element: "load:active-svr-number",
                value: "99999999999".into()
            }
        );
    assert_eq!(
        err(&doc(&format!(
            "{state}<load:active-svr-number>1</load:active-svr-number>"
        ))),
        StateError::Missing {
            element: "load:total-users-number",
            parent: "presence"
        }
    );
    let info = |pres_type: &str, count: &str| {
        doc(&format!(
                "{state}<load:active-svr-number>1</load:active-svr-number>\
                 <load:current-users-list server-id='n'><load:current-users-number>{count}</load:current-users-number>\
                 <load:info-users user-id='u'><load:pres-type>{pres_type}</load:pres-type>\
                 <load:resource-number>1</load:resource-number><load:pres-info>open</load:pres-info></load:info-users>\
                 </load:current-users-list><load:total-users-number>1</load:total-users-number>"
            ))
    };
    assert_eq!(
        parse(&info("sip", "1")).users[0].users[0].pres_type,
        PresType::Sip
    );
    assert_eq!(
        err(&info("irc", "1")),
        StateError::UnknownPresType("irc".into())
    );
    assert_eq!(
        err(&info("sip", "2")),
        StateError::CountMismatch {
            server_id: "n".into(),
            declared: 2,
            found: 1
        }
    );
    assert_eq!(
        err(&info("xmpp", "")),
        StateError::BadValue {
            element: "load:current-users-number",
            value: String::new()
        }
    );
    assert_eq!(
        err("<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='e'><tuple>"),
        StateError::Xml("<tuple> is not closed".into())
    );
    assert!(matches!(
        err(&doc(&format!("{state}<load:state>"))),
        StateError::Xml(m) if m.ends_with("in <load:state>")
    ));
    assert!(matches!(err(""), StateError::Xml(_)));
    assert_eq!(
        err(&doc(&format!(
            "{state}<load:active-svr-number>&lol;</load:active-svr-number>"
        ))),
        StateError::Entity {
            name: "lol".into(),
            element: "load:active-svr-number".into()
        }
    );
    assert_eq!(
        ClusterState::parse(b"<presence \xff/>"),
        Err(StateError::NotUtf8)
    );
    let body = sample_full().to_xml(ENTITY);
    assert_eq!(
        ClusterState::parse_limited(body.as_bytes(), 100),
        Err(StateError::TooLarge {
            size: body.len(),
            max: 100
        })
    );
    let deep = doc(&format!(
        "{state}{}{}{MIN_TAIL}",
        "<x:d xmlns:x='urn:x'>".repeat(MAX_DEPTH),
        "</x:d>".repeat(MAX_DEPTH)
    ));
    assert_eq!(
        err(&deep),
        StateError::TooDeep {
            element: "x:d".into(),
            max: MAX_DEPTH
        }
    );
    assert_eq!(
        StateError::Missing {
            element: "load:state",
            parent: "presence"
        }
        .to_string(),
        "<load:state> is missing from <presence>"
    );
    assert_eq!(
        StateError::UnknownPresType("irc".into()).to_string(),
        "unknown <load:pres-type> 'irc' (expected xmpp or sip)"
    );
}

#[test]
fn doctype_is_refused() {
    let bomb = r#"<?xml version="1.0"?>
<!DOCTYPE presence [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
]>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:load="urn:rendezvous:params:xml:ns:load" entity="e">
<load:state version="1" kind="full"/><load:active-svr-number>&lol1;</load:active-svr-number></presence>"#;
    assert_eq!(err(bomb), StateError::Doctype);
}

/// 1,000 users over 3 servers.
fn big_snapshot() -> ClusterState {
    let mut users: Vec<ServerUsers> = (1..=3)
        .map(|n| ServerUsers {
            server_id: format!("node{n}"),
            users: Vec::new(),
        })
        .collect();
    for i in 0..1000u32 {
        let pres_type = if i % 2 == 0 {
            PresType::Xmpp
        } else {
            PresType::Sip
        };
        users[(i % 3) as usize].users.push(user(
            &format!("user{i:04}@example.com"),
            pres_type,
            i % 7,
            i % 5 != 0,
        ));
    }
    ClusterState {
        version: 77,
        servers: vec![
            svr("node1", 334, 400),
            svr("node2", 333, 400),
            svr("node3", 333, 400),
        ],
        candidates: vec![
            "sip:pool1@10.0.0.4:5060".into(),
            "sip:pool2@10.0.0.5:5060".into(),
        ],
        active: 3,
        users,
        total_users: 1000,
        ..ClusterState::default()
    }
}

#[test]
fn chunks_fit_parse_and_rebuild_the_directory() {
    let state = big_snapshot();
    let chunks = state.chunks(ENTITY, 4096);
    let n = u32::try_from(chunks.len()).unwrap();
    assert!(n > 10, "{n} chunks");
    let mut replica = Replica::new();
    let mut seen = 0;
    for (i, xml) in chunks.iter().enumerate() {
        assert!(xml.len() <= 4096, "chunk {i} has {} bytes", xml.len());
        let parsed = parse(xml);
        assert_eq!(parsed.version, 77);
        assert_eq!(parsed.kind, Kind::Full);
        assert_eq!(
            (parsed.chunk, parsed.chunks),
            (u32::try_from(i).unwrap() + 1, n)
        );
        assert_eq!(parsed.servers, state.servers);
        assert_eq!(parsed.candidates, state.candidates);
        assert_eq!((parsed.active, parsed.total_users), (3, 1000));
        assert!(parsed.users.iter().all(|g| !g.users.is_empty()));
        seen += parsed.users.iter().map(|g| g.users.len()).sum::<usize>();
        assert!(!replica.is_complete());
        replica.apply(parsed).unwrap();
    }
    assert_eq!(seen, 1000);
    assert!(replica.is_complete());
    assert_eq!(replica.len(), 1000);
    assert_eq!(replica.version(), 77);
    assert_eq!(replica.active(), 3);
    assert_eq!(replica.total_users(), 1000);
    assert_eq!(replica.servers(), state.servers.as_slice());
    assert_eq!(replica.candidates(), state.candidates.as_slice());
    for group in &state.users {
        for u in &group.users {
            assert_eq!(replica.home(&u.user_id), Some(group.server_id.as_str()));
        }
    }
    assert_eq!(replica.home("nobody"), None);
    // The replica's snapshot is the (already sorted) original.
    assert_eq!(replica.snapshot(), state);
    // A server list split over chunks repeats its server-id.
    let lists: usize = chunks
        .iter()
        .map(|c| c.matches("<load:current-users-list ").count())
        .sum();
    assert!(lists > 3);
}

#[test]
fn a_big_delta_is_split_into_newer_deltas_that_fit() {
    // A replica that has an empty snapshot of version 76, then 1,000 users moved in one
    // round (one delta of version 77, about 100 KB): more than a 64 KiB SIP message.
    let mut base = big_snapshot();
    base.users.clear();
    base.version = 76;
    let mut replica = Replica::new();
    for xml in base.chunks(ENTITY, 4096) {
        replica.apply(parse(&xml)).unwrap();
    }
    let mut delta = big_snapshot();
    delta.kind = Kind::Delta;
    delta.removed = (0..300).map(|i| format!("gone{i}")).collect();
    assert!(delta.to_xml(ENTITY).len() > 65_536);
    let parts = delta.split_delta(ENTITY, 8192);
    assert!(parts.len() > 10, "{} parts", parts.len());
    let mut seen = 0;
    for (i, part) in parts.iter().enumerate() {
        let xml = part.to_xml(ENTITY);
        assert!(xml.len() <= 8192, "part {i} has {} bytes", xml.len());
        let parsed = parse(&xml);
        assert_eq!(parsed.kind, Kind::Delta);
        assert_eq!(parsed.version, 77 + i as u64, "consecutive versions");
        assert_eq!(parsed.servers, delta.servers);
        seen += parsed.users.iter().map(|g| g.users.len()).sum::<usize>();
        replica.apply(parsed).unwrap();
    }
    assert_eq!(seen, 1000);
    assert_eq!(replica.version(), 77 + parts.len() as u64 - 1);
    for group in &delta.users {
        for u in &group.users {
            assert_eq!(replica.home(&u.user_id), Some(group.server_id.as_str()));
        }
    }
    let removed: usize = parts.iter().map(|p| p.removed.len()).sum();
    assert_eq!(removed, 300);
    // A delta that fits is one part, unchanged; a full snapshot is never split here.
    let mut small = delta.clone();
    small.users.truncate(1);
    small.users[0].users.truncate(3);
    small.removed.clear();
    assert_eq!(small.split_delta(ENTITY, 65_536), vec![small.clone()]);
    assert_eq!(big_snapshot().split_delta(ENTITY, 8192).len(), 1);
}

#[test]
fn chunking_edge_cases() {
    let mut empty = big_snapshot();
    empty.users.clear();
    empty.chunk = 5;
    empty.chunks = 9;
    let chunks = empty.chunks(ENTITY, 2048);
    assert_eq!(chunks.len(), 1);
    let only = parse(&chunks[0]);
    assert_eq!((only.chunk, only.chunks), (1, 1));
    assert!(only.users.is_empty());

    // A small snapshot is one chunk, equal to its document; removed is not sent.
    let mut small = sample_full();
    small.removed = vec!["zed".into()];
    let chunks = small.chunks(ENTITY, 2048);
    small.removed.clear();
    assert_eq!(chunks, vec![small.to_xml(ENTITY)]);

    // An entry larger than the budget still goes out, alone.
    let mut huge = sample_full();
    huge.users[0].users[0].user_id = "x".repeat(3000);
    let chunks = huge.chunks(ENTITY, 2048);
    assert_eq!(chunks.len(), 2);
    assert!(chunks[0].len() > 3000);
    let mut replica = Replica::new();
    for c in &chunks {
        replica.apply(parse(c)).unwrap();
    }
    assert_eq!(
        replica
            .snapshot()
            .users
            .iter()
            .map(|g| g.users.len())
            .sum::<usize>(),
        3
    );
    assert!(chunks[1].len() <= 2048);
}

fn fed(state: &ClusterState, max_bytes: usize) -> (Replica, Vec<ClusterState>) {
    let docs: Vec<ClusterState> = state
        .chunks(ENTITY, max_bytes)
        .iter()
        .map(|c| parse(c))
        .collect();
    let mut replica = Replica::new();
    for d in docs.clone() {
        replica.apply(d).unwrap();
    }
    (replica, docs)
}

#[test]
fn out_of_order_chunks_are_refused_and_the_previous_state_kept() {
    let first = sample_full();
    let (mut replica, _) = fed(&first, 2048);
    let before = replica.snapshot();
    let mut sorted = first.clone();
    sorted.users[0].users.reverse();
    assert_eq!(before, sorted);

    let mut next = big_snapshot();
    next.version = 80;
    let docs: Vec<ClusterState> = next.chunks(ENTITY, 4096).iter().map(|c| parse(c)).collect();
    replica.apply(docs[0].clone()).unwrap();
    replica.apply(docs[1].clone()).unwrap();
    let e = replica.apply(docs[3].clone()).unwrap_err();
    assert_eq!(
        e,
        ReplicaError::OutOfOrder {
            version: 80,
            chunk: 4,
            chunks: docs[0].chunks,
            expected: format!("chunk 3 of {} of version 80", docs[0].chunks),
        }
    );
    assert!(replica.is_complete());
    assert_eq!(replica.snapshot(), before);
    // The staged snapshot is gone: the following chunks are refused too.
    assert!(matches!(
        replica.apply(docs[2].clone()),
        Err(ReplicaError::OutOfOrder { expected, .. }) if expected == "chunk 1"
    ));
    // A chunk of another version does not continue a staged snapshot.
    replica.apply(docs[0].clone()).unwrap();
    let mut other = docs[1].clone();
    other.version = 81;
    assert!(replica.apply(other).is_err());
    assert_eq!(replica.snapshot(), before);
    // Starting again at chunk 1 works, and only the last chunk switches state.
    let last = docs.len() - 1;
    for (i, d) in docs.iter().enumerate() {
        replica.apply(d.clone()).unwrap();
        assert_eq!(replica.version(), if i == last { 80 } else { 12 });
    }
    assert_eq!(replica.len(), 1000);
    // A fresh replica refuses a chunk that is not first.
    assert!(Replica::new().apply(docs[1].clone()).is_err());
}

#[test]
fn delta_moves_removes_and_older_deltas_are_ignored() {
    let (mut replica, _) = fed(&sample_full(), 2048);
    assert_eq!(replica.home("alice"), Some("node1"));
    assert_eq!(
        Replica::new().apply(delta(13, Vec::new(), Vec::new())),
        Err(ReplicaError::DeltaWithoutSnapshot { version: 13 })
    );

    let d = delta(
        13,
        vec![ServerUsers {
            server_id: "node2".into(),
            users: vec![
                user("alice", PresType::Xmpp, 1, false),
                user("dave", PresType::Sip, 2, true),
            ],
        }],
        vec!["carol"],
    );
    replica.apply(parse(&d.to_xml(ENTITY))).unwrap();
    assert_eq!(replica.version(), 13);
    assert_eq!(replica.home("alice"), Some("node2"));
    assert_eq!(replica.home("dave"), Some("node2"));
    assert_eq!(replica.home("carol"), None);
    assert_eq!(replica.home("a&b<\"c\">"), Some("node1"));
    assert_eq!(replica.len(), 3);
    assert_eq!(replica.servers(), d.servers.as_slice());
    assert!(replica.candidates().is_empty());
    let after = replica.snapshot();
    assert_eq!(
        after.users,
        vec![
            ServerUsers {
                server_id: "node1".into(),
                users: vec![user("a&b<\"c\">", PresType::Sip, 0, false)],
            },
            ServerUsers {
                server_id: "node2".into(),
                users: vec![
                    user("alice", PresType::Xmpp, 1, false),
                    user("dave", PresType::Sip, 2, true)
                ],
            },
        ]
    );

    // Older and equal versions change nothing.
    let stale = delta(
        12,
        vec![ServerUsers {
            server_id: "node1".into(),
            users: vec![user("alice", PresType::Xmpp, 9, true)],
        }],
        vec!["dave"],
    );
    replica.apply(stale).unwrap();
    replica.apply(delta(13, Vec::new(), vec!["alice"])).unwrap();
    assert_eq!(replica.snapshot(), after);

    // Removing every user of a server drops its list from the snapshot.
    replica
        .apply(delta(14, Vec::new(), vec!["a&b<\"c\">"]))
        .unwrap();
    let snap = replica.snapshot();
    assert_eq!(snap.version, 14);
    assert_eq!(snap.users.len(), 1);
    assert_eq!(snap.users[0].server_id, "node2");
}

#[test]
fn apply_xml_parses_then_applies() {
    let mut replica = Replica::new();
    replica
        .apply_xml(sample_full().to_xml(ENTITY).as_bytes())
        .unwrap();
    assert_eq!(replica.home("carol"), Some("node2"));
    assert!(matches!(
        replica.apply_xml(b"<nope/>"),
        Err(ReplicaError::Parse(StateError::NotPresence { .. }))
    ));
    assert_eq!(replica.len(), 3);
}

#[test]
fn snapshot_is_sorted_and_serialises_to_json() {
    let mut state = sample_full();
    state.servers.reverse();
    state.users.reverse();
    let (replica, _) = fed(&state, 2048);
    let snap = replica.snapshot();
    assert_eq!(snap.servers[0].id, "node1");
    assert_eq!(snap.users[0].server_id, "node1");
    assert_eq!(snap.users[0].users[0].user_id, "a&b<\"c\">");
    assert_eq!(snap.users[0].users[1].user_id, "alice");

    let json: serde_json::Value =
        serde_json::from_str(&serde_json::to_string(&snap).unwrap()).unwrap();
    let obj = json.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "active",
            "candidates",
            "chunk",
            "chunks",
            "kind",
            "removed",
            "servers",
            "total_users",
            "users",
            "version"
        ]
    );
    assert_eq!(json["kind"], "full");
    assert_eq!(json["version"], 12);
    assert_eq!(
        json["servers"][0],
        serde_json::json!({"id": "node1", "current": 40, "max": 100})
    );
    assert_eq!(json["candidates"][0], "sip:pool1@10.0.0.4:5060");
    assert_eq!(json["users"][0]["server_id"], "node1");
    assert_eq!(
        json["users"][0]["users"][1],
        serde_json::json!({"user_id": "alice", "pres_type": "xmpp", "resources": 3, "pres_info": "open"})
    );
    assert_eq!(json["total_users"], 3);
    let back: ClusterState = serde_json::from_value(json).unwrap();
    assert_eq!(back, snap);
    assert_eq!(serde_json::to_value(Kind::Delta).unwrap(), "delta");
    assert_eq!(serde_json::to_value(PresType::Sip).unwrap(), "sip");
}

/// Truncations and byte mutations never panic; what is accepted round-trips.
#[test]
fn mutated_input_never_panics() {
    let source = sample_full().to_xml(ENTITY);
    let bytes = source.as_bytes();
    let mut accepted = 0;
    let mut check = |input: &[u8]| {
        if let Ok(doc) = ClusterState::parse(input) {
            accepted += 1;
            assert_eq!(parse(&doc.to_xml(ENTITY)), doc);
        }
    };
    for end in 0..=bytes.len() {
        check(&bytes[..end]);
    }
    for i in 0..bytes.len() {
        for b in [b'<', b'>', b'&', b'"', b':', b'/', b'9'] {
            let mut m = bytes.to_vec();
            m[i] = b;
            check(&m);
        }
    }
    assert!(accepted > 50, "{accepted}");
}
