use bytes::Bytes;

use super::*;

const LIMITS: Limits = Limits {
    max_message_bytes: 65_535,
};

fn request(bytes: &[u8]) -> Request {
    match parse(bytes, &LIMITS) {
        Ok(Message::Request(r)) => r,
        other => panic!("expected a request, got {other:?}"),
    }
}

fn response(bytes: &[u8]) -> Response {
    match parse(bytes, &LIMITS) {
        Ok(Message::Response(r)) => r,
        other => panic!("expected a response, got {other:?}"),
    }
}

/// (status, reason, response bytes as text) of a `Rejection::Reply`.
fn replied(bytes: &[u8]) -> (u16, String, String) {
    match parse(bytes, &LIMITS) {
        Err(Rejection::Reply {
            status,
            reason,
            response,
            ..
        }) => (
            status,
            reason,
            String::from_utf8_lossy(&response).into_owned(),
        ),
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn dropped(bytes: &[u8]) -> String {
    match parse(bytes, &LIMITS) {
        Err(Rejection::Drop { reason }) => reason,
        other => panic!("expected a drop, got {other:?}"),
    }
}

fn crlf(text: &str) -> Vec<u8> {
    text.replace('\n', "\r\n").into_bytes()
}

// Own vector (not from an RFC): a plain REGISTER through a NAT.
const REGISTER: &str = "REGISTER sip:example.com SIP/2.0\n\
    Via: SIP/2.0/UDP 10.1.1.1:4540;rport;branch=z9hG4bKkjshdyff\n\
    Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKkjsh77\n\
    Max-Forwards: 70\n\
    From: \"Alice\" <sip:alice@example.com>;tag=a73kszlfl\n\
    To: <sip:alice@example.com>\n\
    Call-ID: 1j9FpLxk3uxtm8tn@10.1.1.1\n\
    CSeq: 1 REGISTER\n\
    Contact: <sip:alice@10.1.1.1:4540>;expires=3600\n\
    Content-Length: 0\n\n";

// ---------------------------------------------------------------- RFC 4475 §3.1.1 (valid)

#[test]
fn rfc4475_wsinv_short_tortuous_invite() {
    let r = request(include_bytes!("../torture/wsinv.sip"));
    assert_eq!(r.method(), &Method::Invite);
    assert_eq!(r.base.call_id, "wsinv.ndaksdj@192.0.2.1");
    assert_eq!(r.uri().user.as_deref(), Some("vivekg"));
    assert_eq!(r.uri().host, "chair-dnrc.example.com");
    assert_eq!(r.uri().params, vec![("unknownparam".to_owned(), None)]);
    assert_eq!(r.base.to.uri, "sip:vivekg@chair-dnrc.example.com");
    assert_eq!(r.base.to.tag(), Some("1918181833n"));
    assert_eq!(r.base.from.display.as_deref(), Some("J Rosenberg \\\""));
    assert_eq!(r.base.from.tag(), Some("98asjd8"));
    assert_eq!(r.max_forwards(), Some(68));
    assert_eq!(
        r.base.cseq,
        CSeq {
            seq: 9,
            method: Method::Invite
        }
    );
    assert_eq!(r.base.via.transport, "UDP");
    assert_eq!(r.base.via.host, "192.0.2.2");
    assert_eq!(r.base.via.branch.as_deref(), Some("390skdjuw"));
    assert!(!r.base.via.is_rfc3261_branch());
    let vias = r.headers("Via");
    assert_eq!(vias.len(), 2);
    let second: Vec<Via> = split_list(vias[1])
        .into_iter()
        .map(|v| Via::parse(v).unwrap())
        .collect();
    assert_eq!(second[0].host, "spindle.example.com");
    assert_eq!(second[0].branch.as_deref(), Some("z9hG4bK9ikj8"));
    assert_eq!(second[1].host, "192.168.255.111");
    assert_eq!(second[1].branch.as_deref(), Some("z9hG4bK30239"));
    assert_eq!(r.header("Subject"), Some(""));
    assert_eq!(
        r.header("NewFangledHeader"),
        Some("newfangled value continued newfangled value")
    );
    assert_eq!(r.header("UnknownHeaderWithUnusualValue"), Some(";;,,;;,;"));
    let contact = NameAddr::parse(r.header("Contact").unwrap()).unwrap();
    assert_eq!(contact.display.as_deref(), Some("Quoted string \"\""));
    assert_eq!(contact.param("newparam"), Some(Some("newvalue")));
    assert_eq!(contact.param("secondparam"), Some(None));
    assert_eq!(contact.param("q"), Some(Some("0.33")));
    assert_eq!(r.body().len(), 150);
}

#[test]
fn header_access_by_compact_and_full_names() {
    let r = request(include_bytes!("../torture/wsinv.sip"));
    assert_eq!(r.header("i"), Some("wsinv.ndaksdj@192.0.2.1"));
    assert_eq!(r.header("call-id"), r.header("Call-ID"));
    assert_eq!(r.header("s"), Some(""));
    assert_eq!(r.header("l"), Some("150"));
    assert_eq!(r.header("c"), Some("application/sdp"));
    assert_eq!(r.headers("v"), r.headers("VIA"));
    assert_eq!(r.headers("m").len(), 1);
    assert_eq!(r.header("MAX-FORWARDS"), Some("0068"));
    assert_eq!(r.header("X-Absent"), None);
    assert!(r.headers("X-Absent").is_empty());
}

#[test]
fn rfc4475_intmeth_parses_then_gets_405() {
    // Syntactically valid; RFC 4475 §3.1.1.2 lets endpoints refuse the unknown method
    // (it says 501; this server says 405 + Allow, as RFC 3261 §8.2.1 prescribes for a UAS).
    let bytes = include_bytes!("../torture/intmeth.sip");
    let (status, reason, text) = replied(bytes);
    assert_eq!((status, reason.as_str()), (405, "Method Not Allowed"));
    assert!(text.contains(&format!("Allow: {ALLOW}\r\n")));
    assert!(text.contains("CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~\r\n"));
    let answer = response(text.as_bytes());
    assert_eq!(answer.status, 405);
    assert_eq!(
        answer.base.call_id,
        "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    );
    assert_eq!(
        answer.base.cseq.method,
        Method::Other("!interesting-Method0123456789_*+`.%indeed'~".to_owned())
    );
    assert!(answer.base.to.tag().is_some(), "a tag is added to To");
    let to = NameAddr::parse(
        "\"BEL:\\\u{7} NUL:\\\u{0} DEL:\\\u{7f}\" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>",
    )
    .unwrap();
    assert_eq!(
        to.display.as_deref(),
        Some("BEL:\u{7} NUL:\u{0} DEL:\u{7f}")
    );
    let uri = Uri::parse("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com").unwrap();
    assert_eq!(
        uri.user.as_deref(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(uri.host, "example.com");
}

#[test]
fn rfc4475_esc01_escapes_decoded_where_allowed() {
    let r = request(include_bytes!("../torture/esc01.sip"));
    assert_eq!(r.base.call_id, "esc01.239409asdfakjkn23onasd0-3234");
    assert_eq!(r.uri().user.as_deref(), Some("sips:user@example.com"));
    assert_eq!(r.uri().host, "example.net");
    assert_eq!(
        r.uri().to_string(),
        "sip:sips%3Auser%40example.com@example.net"
    );
    assert_eq!(
        Uri::parse(&r.base.to.uri).unwrap().user.as_deref(),
        Some("user")
    );
    assert_eq!(
        Uri::parse(&r.base.from.uri).unwrap().user.as_deref(),
        Some("I have spaces")
    );
    let contact = NameAddr::parse(r.header("m").unwrap()).unwrap();
    let contact_uri = Uri::parse(&contact.uri).unwrap();
    assert_eq!(contact_uri.user.as_deref(), Some("caller"));
    assert_eq!(
        contact_uri.params,
        vec![
            ("%6C%72".to_owned(), None),
            ("n%61me".to_owned(), Some("v%61lue%25%34%31".to_owned()))
        ]
    );
}

#[test]
fn rfc4475_escnull_keeps_nul_in_user() {
    let r = request(include_bytes!("../torture/escnull.sip"));
    assert_eq!(r.method(), &Method::Register);
    assert_eq!(
        Uri::parse(&r.base.to.uri).unwrap().user.as_deref(),
        Some("null-\u{0}-null")
    );
    assert_eq!(
        r.headers("Contact"),
        vec![
            "<sip:%00@host5.example.com>",
            "<sip:%00%00@host5.example.com>"
        ]
    );
    assert_eq!(r.header("l"), Some("0"));
}

#[test]
fn rfc4475_esc02_percent_method_is_unknown() {
    // RE%47IST%45R is not REGISTER (% is no escape in a method); well-formed, so 405.
    let (status, _, text) = replied(include_bytes!("../torture/esc02.sip"));
    assert_eq!(status, 405);
    assert!(text.contains("CSeq: 29344 RE%47IST%45R\r\n"));
}

#[test]
fn rfc4475_lwsdisp_display_name_without_space() {
    let r = request(include_bytes!("../torture/lwsdisp.sip"));
    assert_eq!(r.base.from.display.as_deref(), Some("caller"));
    assert_eq!(r.base.from.uri, "sip:caller@example.com");
    assert_eq!(r.base.call_id, "lwsdisp.1234abcd@funky.example.com");
}

#[test]
fn rfc4475_longreq_long_values() {
    let r = request(include_bytes!("../torture/longreq.sip"));
    assert_eq!(r.method(), &Method::Invite);
    assert_eq!(r.headers("Via").len(), 34);
    assert_eq!(r.base.via.host, "sip33.example.com");
    assert_eq!(r.base.via.transport, "TCP");
    assert_eq!(r.base.via.branch, None);
    assert_eq!(
        r.base.to.display.as_deref(),
        Some(format!("I have a user name of {} proportion", "extreme".repeat(10)).as_str())
    );
    assert_eq!(Uri::parse(&r.base.to.uri).unwrap().port, Some(6000));
    assert_eq!(
        r.base.from.tag(),
        Some(format!("12{}424", "982".repeat(50)).as_str())
    );
    assert_eq!(
        r.base.call_id,
        format!("longreq.one{}longcallid", "really".repeat(20))
    );
    assert_eq!(r.body().len(), 150);
}

#[test]
fn rfc4475_dblreq_ignores_trailing_octets() {
    let r = request(include_bytes!("../torture/dblreq.sip"));
    assert_eq!(r.method(), &Method::Register);
    assert_eq!(r.base.call_id, "dblreq.0ha0isndaksdj99sdfafnl3lk233412");
    assert_eq!(r.body(), b"");
}

#[test]
fn rfc4475_semiuri_semicolon_in_user() {
    let r = request(include_bytes!("../torture/semiuri.sip"));
    assert_eq!(r.method(), &Method::Options);
    assert_eq!(r.uri().user.as_deref(), Some("user;par=u@example.net"));
    assert_eq!(r.uri().host, "example.com");
    assert!(r.uri().params.is_empty());
    assert_eq!(
        r.uri().to_string(),
        "sip:user;par=u%40example.net@example.com"
    );
    assert_eq!(r.raw_uri(), "sip:user;par=u%40example.net@example.com");
}

#[test]
fn rfc4475_transports_unknown_transport_kept() {
    let r = request(include_bytes!("../torture/transports.sip"));
    assert_eq!(r.base.call_id, "transports.kijh4akdnaqjkwendsasfdj");
    let transports: Vec<String> = r
        .headers("Via")
        .into_iter()
        .map(|v| Via::parse(v).unwrap().transport)
        .collect();
    assert_eq!(transports, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
}

#[test]
fn rfc4475_mpart01_binary_body() {
    let r = request(include_bytes!("../torture/mpart01.sip"));
    assert_eq!(r.method(), &Method::Message);
    assert_eq!(
        r.base.call_id,
        "3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA.."
    );
    assert_eq!(r.body().len(), 553);
    assert!(r.body().ends_with(b"\r\n--7a9cbec02ceef655--\r\n"));
    assert_eq!(r.base.via.rport, Some(None));
    assert_eq!(r.base.via.port, Some(5070));
}

#[test]
fn rfc4475_unreason_and_noreason_responses() {
    let r = response(include_bytes!("../torture/unreason.sip"));
    assert_eq!(r.status, 200);
    assert_eq!(r.reason, "= 2**3 * 5**2 но сто девяносто девять - простое");
    assert_eq!(r.base.call_id, "unreason.1234ksdfak3j2erwedfsASdf");
    assert_eq!(r.body().len(), 154);
    let r = response(include_bytes!("../torture/noreason.sip"));
    assert_eq!((r.status, r.reason.as_str()), (100, ""));
    assert_eq!(r.base.call_id, "noreason.asndj203insdf99223ndf");
}

// -------------------------------------------------------------- RFC 4475 §3.1.2 (invalid)

#[test]
fn rfc4475_invalid_requests_get_400_naming_the_fault() {
    let cases: [(&[u8], &str); 13] = [
        (
            include_bytes!("../torture/clerr.sip"),
            "Content-Length larger than body",
        ),
        (
            include_bytes!("../torture/ncl.sip"),
            "Bad Content-Length header",
        ),
        (include_bytes!("../torture/scalar02.sip"), "Bad CSeq header"),
        (
            include_bytes!("../torture/quotbal.sip"),
            "Malformed To header",
        ),
        (
            include_bytes!("../torture/ltgtruri.sip"),
            "Malformed Request-URI",
        ),
        (
            include_bytes!("../torture/lwsruri.sip"),
            "Malformed request line",
        ),
        (
            include_bytes!("../torture/lwsstart.sip"),
            "Malformed request line",
        ),
        // trws: RFC 3261 grammar has no SP after SIP-Version; we are strict.
        (
            include_bytes!("../torture/trws.sip"),
            "Malformed request line",
        ),
        (
            include_bytes!("../torture/escruri.sip"),
            "Malformed Request-URI",
        ),
        (
            include_bytes!("../torture/regbadct.sip"),
            "Malformed Contact header",
        ),
        (
            include_bytes!("../torture/badaspec.sip"),
            "Malformed To header",
        ),
        (
            include_bytes!("../torture/baddn.sip"),
            "Malformed From header",
        ),
        (
            include_bytes!("../torture/mismatch01.sip"),
            "CSeq method does not match request method",
        ),
    ];
    for (bytes, expected) in cases {
        let (status, reason, text) = replied(bytes);
        assert_eq!((status, reason.as_str()), (400, expected));
        assert!(
            text.starts_with(&format!("SIP/2.0 400 {expected}\r\n")),
            "{text}"
        );
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"), "{text}");
    }
}

#[test]
fn rfc4475_quotbal_reply_copies_the_bad_to_verbatim() {
    let (_, _, text) = replied(include_bytes!("../torture/quotbal.sip"));
    assert!(
        text.contains("\r\nTo: \"Mr. J. User <sip:j.user@example.com>\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\nVia: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234\r\n"));
    assert!(text.contains("\r\nCall-ID: quotbal.aksdj\r\n"));
}

#[test]
fn rfc4475_mismatch02_unknown_method_with_mismatch_is_400() {
    // RFC 4475 §3.1.2.18 accepts 400 (or 501); the syntax fault is reported before 405.
    let (status, reason, _) = replied(include_bytes!("../torture/mismatch02.sip"));
    assert_eq!(
        (status, reason.as_str()),
        (400, "CSeq method does not match request method")
    );
}

#[test]
fn rfc4475_badvers_gets_505() {
    let (status, reason, text) = replied(include_bytes!("../torture/badvers.sip"));
    assert_eq!((status, reason.as_str()), (505, "Version Not Supported"));
    assert!(text.contains("\r\nVia: SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw\r\n"));
}

#[test]
fn rfc4475_unanswerable_messages_are_dropped() {
    // badinv01: the only Via is malformed, so there is nowhere to send the 400 RFC 4475 wants.
    assert_eq!(
        dropped(include_bytes!("../torture/badinv01.sip")),
        "Malformed Via header"
    );
    // Responses are never answered.
    assert_eq!(
        dropped(include_bytes!("../torture/scalarlg.sip")),
        "Bad CSeq header"
    );
    assert_eq!(
        dropped(include_bytes!("../torture/bigcode.sip")),
        "Malformed status line"
    );
    // insuf lacks From, To and Call-ID: nothing to build a response from.
    assert_eq!(
        dropped(include_bytes!("../torture/insuf.sip")),
        "Missing From header"
    );
}

#[test]
fn rfc4475_baddate_accepted() {
    // RFC 4475 §3.1.2.12 lets an element ignore a bad Date; nothing here reads Date.
    let r = request(include_bytes!("../torture/baddate.sip"));
    assert_eq!(r.header("Date"), Some("Fri, 01 Jan 2010 16:00:00 EST"));
}

// ------------------------------------------------- RFC 4475 §3.2, §3.3, §3.4 (semantics)

#[test]
fn rfc4475_badbranch_is_just_a_short_branch() {
    let r = request(include_bytes!("../torture/badbranch.sip"));
    assert_eq!(r.base.via.branch.as_deref(), Some("z9hG4bK"));
    assert!(r.base.via.is_rfc3261_branch());
}

#[test]
fn rfc4475_unknown_request_uri_schemes_get_416() {
    for bytes in [
        &include_bytes!("../torture/unkscm.sip")[..],
        &include_bytes!("../torture/novelsc.sip")[..],
    ] {
        let (status, reason, _) = replied(bytes);
        assert_eq!((status, reason.as_str()), (416, "Unsupported URI Scheme"));
    }
}

#[test]
fn rfc4475_duplicates_of_single_valued_headers_get_400() {
    let (status, reason, _) = replied(include_bytes!("../torture/multi01.sip"));
    assert_eq!((status, reason.as_str()), (400, "Duplicate CSeq header"));
    let (status, reason, _) = replied(include_bytes!("../torture/mcl01.sip"));
    assert_eq!(
        (status, reason.as_str()),
        (400, "Duplicate Content-Length header")
    );
}

#[test]
fn rfc4475_application_layer_cases_parse() {
    // unksm2: odd schemes in To/From/Contact are the registrar's business, not the parser's.
    let r = request(include_bytes!("../torture/unksm2.sip"));
    assert_eq!(r.base.to.uri, "isbn:2983792873");
    assert_eq!(r.base.from.uri, "http://www.example.com");
    let r = request(include_bytes!("../torture/bext01.sip"));
    assert_eq!(
        r.header("Require"),
        Some("nothingSupportsThis, nothingSupportsThisEither")
    );
    assert_eq!(r.base.via.transport, "TLS");
    let r = request(include_bytes!("../torture/invut.sip"));
    assert_eq!(r.header("Content-Type"), Some("application/unknownformat"));
    assert_eq!(
        r.body(),
        b"<audio>\r\n <pcmu port=\"443\"/>\r\n</audio>\r\n"
    );
    let r = request(include_bytes!("../torture/regaut01.sip"));
    assert_eq!(
        r.header("Authorization"),
        Some("NoOneKnowsThisScheme opaque-data=here")
    );
    let r = request(include_bytes!("../torture/zeromf.sip"));
    assert_eq!(r.max_forwards(), Some(0));
    let r = request(include_bytes!("../torture/sdp01.sip"));
    assert_eq!(r.header("Accept"), Some("text/nobodyKnowsThis"));
    let r = response(include_bytes!("../torture/bcast.sip"));
    assert_eq!(r.headers("Via").len(), 2);
    assert_eq!(r.base.call_id, "bcast.0384840201234ksdfak3j2erwedfsASdf");
}

#[test]
fn rfc4475_contact_params_and_uri_params() {
    // cparam01: without <>, ";unknownparam" belongs to the Contact header, not the URI.
    let r = request(include_bytes!("../torture/cparam01.sip"));
    let c = NameAddr::parse(r.header("Contact").unwrap()).unwrap();
    assert_eq!(c.uri, "sip:+19725552222@gw1.example.net");
    assert_eq!(c.param("unknownparam"), Some(None));
    // cparam02: inside <>, it is a URI param.
    let r = request(include_bytes!("../torture/cparam02.sip"));
    let c = NameAddr::parse(r.header("Contact").unwrap()).unwrap();
    assert!(c.params.is_empty());
    assert_eq!(
        Uri::parse(&c.uri).unwrap().param("unknownparam"),
        Some(None)
    );
    // regescrt: escaped headers inside <> are legal in a Contact.
    let r = request(include_bytes!("../torture/regescrt.sip"));
    let c = NameAddr::parse(r.header("m").unwrap()).unwrap();
    let uri = Uri::parse(&c.uri).unwrap();
    assert_eq!(
        uri.headers.as_deref(),
        Some("Route=%3Csip:sip.example.com%3E")
    );
}

#[test]
fn rfc4475_inv2543_old_style_request_accepted() {
    // No Max-Forwards, no Content-Length (body = rest of datagram), no branch.
    let r = request(include_bytes!("../torture/inv2543.sip"));
    assert_eq!(r.max_forwards(), None);
    assert_eq!(r.body().len(), 105);
    assert_eq!(r.base.via.branch, None);
    assert!(!r.base.via.is_rfc3261_branch());
    assert_eq!(r.base.to.param("user"), Some(Some("phone")));
}

// ------------------------------------------------------------------------ own vectors

#[test]
fn round_trip_parse_reply_parse() {
    let mut req = request(&crlf(REGISTER));
    req.stamp_source("192.0.2.1:9988".parse().unwrap());
    let bytes = reply(&req, 200, "OK")
        .to_tag("8321234356")
        .header("Contact", "<sip:alice@10.1.1.1:4540>;expires=3600")
        .header("Expires", "3600")
        .build();
    let resp = response(&bytes);
    assert_eq!((resp.status, resp.reason.as_str()), (200, "OK"));
    assert_eq!(resp.base.call_id, req.base.call_id);
    assert_eq!(resp.base.cseq, req.base.cseq);
    assert_eq!(resp.base.from, req.base.from);
    assert_eq!(resp.base.to.tag(), Some("8321234356"));
    assert_eq!(
        resp.headers("Via"),
        vec![
            "SIP/2.0/UDP 10.1.1.1:4540;received=192.0.2.1;rport=9988;branch=z9hG4bKkjshdyff",
            "SIP/2.0/UDP proxy.example.com;branch=z9hG4bKkjsh77",
        ]
    );
    assert_eq!(
        resp.base.via.response_target(),
        ("192.0.2.1".to_owned(), 9988)
    );
    assert_eq!(resp.header("Expires"), Some("3600"));
    assert_eq!(resp.header("Content-Length"), Some("0"));
    assert!(bytes.ends_with(b"Content-Length: 0\r\n\r\n"));
}

#[test]
fn reply_keeps_an_existing_to_tag_and_sets_body() {
    let text = REGISTER.replace(
        "To: <sip:alice@example.com>",
        "To: <sip:alice@example.com>;tag=x1",
    );
    let req = request(&crlf(&text));
    let bytes = reply(&req, 202, "Accepted")
        .to_tag("ignored")
        .header("Content-Length", "99")
        .header("X-Evil", "a\r\nInjected: yes")
        .body("text/plain", Bytes::from_static(b"hello"))
        .build();
    let resp = response(&bytes);
    assert_eq!(resp.base.to.tag(), Some("x1"));
    assert_eq!(resp.body(), b"hello");
    assert_eq!(resp.headers("Content-Length"), vec!["5"]);
    assert_eq!(resp.header("Content-Type"), Some("text/plain"));
    assert_eq!(resp.header("X-Evil"), Some("a  Injected: yes"));
    assert_eq!(resp.header("Injected"), None);
}

#[test]
fn request_builder_output_parses() {
    let branch = new_branch();
    let bytes = RequestBuilder::new(Method::Notify, "sip:bob@192.0.2.4:5060")
        .header(
            "Via",
            format!("SIP/2.0/TCP pres.example.com;branch={branch}"),
        )
        .header("From", "<sip:alice@example.com>;tag=f1")
        .header("To", "<sip:bob@example.com>;tag=t1")
        .header("Call-ID", "n1@pres.example.com")
        .header(
            "CSeq",
            CSeq {
                seq: 7,
                method: Method::Notify,
            }
            .to_string(),
        )
        .header("o", "presence")
        .header("Subscription-State", "active;expires=600")
        .body("application/pidf+xml", Bytes::from_static(b"<presence/>"))
        .build();
    let r = request(&bytes);
    assert_eq!(r.method(), &Method::Notify);
    assert_eq!(r.max_forwards(), Some(70));
    assert_eq!(r.base.via.branch.as_deref(), Some(branch.as_str()));
    assert_eq!(r.header("Event"), Some("presence"));
    assert_eq!(r.header("Content-Type"), Some("application/pidf+xml"));
    assert_eq!(r.body(), b"<presence/>");
    let with_mf = RequestBuilder::new(Method::Message, "sip:bob@example.com")
        .header("Max-Forwards", "10")
        .build();
    let text = String::from_utf8_lossy(&with_mf);
    assert_eq!(text.matches("Max-Forwards").count(), 1);
    assert!(text.starts_with("MESSAGE sip:bob@example.com SIP/2.0\r\nMax-Forwards: 10\r\n"));
}

#[test]
fn via_parse_display_ipv6() {
    let v = Via::parse("SIP/2.0/tcp [::1]:5060;branch=z9hG4bKabc").unwrap();
    assert_eq!(v.transport, "TCP");
    assert_eq!(v.host, "[::1]");
    assert_eq!(v.port, Some(5060));
    assert_eq!(v.sent_by(), "[::1]:5060");
    assert_eq!(v.to_string(), "SIP/2.0/TCP [::1]:5060;branch=z9hG4bKabc");
    assert_eq!(v.response_target(), ("::1".to_owned(), 5060));
    assert!(Via::parse("SIP/2.0/UDP [::g]:5060").is_err());
    assert!(Via::parse("SIP/2.0/UDP host:70000").is_err());
    assert!(Via::parse("SIP/2.0/UDPhost").is_err());
    assert_eq!(
        Via::parse("SIP/3.0/UDP host"),
        Err(ParseError::MalformedHeader("Via"))
    );
}

#[test]
fn via_rfc3581_section4_example() {
    let mut v = Via::parse("SIP/2.0/UDP 10.1.1.1:4540;rport;branch=z9hG4bKkjshdyff").unwrap();
    v.stamp("192.0.2.1:9988".parse().unwrap());
    assert_eq!(
        v.to_string(),
        "SIP/2.0/UDP 10.1.1.1:4540;received=192.0.2.1;rport=9988;branch=z9hG4bKkjshdyff"
    );
    assert_eq!(v.received.as_deref(), Some("192.0.2.1"));
    assert_eq!(v.rport, Some(Some(9988)));
    assert_eq!(v.response_target(), ("192.0.2.1".to_owned(), 9988));
}

#[test]
fn via_stamp_rfc3261_received_rules() {
    // Same address, no rport: nothing to add (RFC 3261 §18.2.1).
    let mut v = Via::parse("SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK1").unwrap();
    v.stamp("192.0.2.7:40000".parse().unwrap());
    assert_eq!(v.to_string(), "SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK1");
    assert_eq!(v.response_target(), ("192.0.2.7".to_owned(), 5062));
    // A host name always gets received, appended at the end.
    let mut v = Via::parse("SIP/2.0/TLS pc.example.com;branch=z9hG4bK2").unwrap();
    v.stamp("[2001:db8::9]:5061".parse().unwrap());
    assert_eq!(
        v.to_string(),
        "SIP/2.0/TLS pc.example.com;branch=z9hG4bK2;received=2001:db8::9"
    );
    assert_eq!(v.response_target(), ("2001:db8::9".to_owned(), 5061));
    // IPv4-mapped source addresses are written as IPv4.
    let mut v = Via::parse("SIP/2.0/UDP pc.example.com").unwrap();
    v.stamp("[::ffff:192.0.2.9]:5060".parse().unwrap());
    assert_eq!(v.received.as_deref(), Some("192.0.2.9"));
    // maddr wins over received (RFC 3261 §18.2.2).
    let v = Via::parse("SIP/2.0/UDP a.example.com;maddr=239.1.1.1;received=192.0.2.3").unwrap();
    assert_eq!(v.response_target(), ("239.1.1.1".to_owned(), 5060));
}

#[test]
fn stamp_source_rewrites_only_the_top_via_element() {
    let text = REGISTER.replace(
        "Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKkjsh77\n",
        "",
    );
    let text = text.replace(
        "branch=z9hG4bKkjshdyff\n",
        "branch=z9hG4bKkjshdyff , SIP/2.0/UDP proxy.example.com;branch=z9hG4bKkjsh77\n",
    );
    let mut req = request(&crlf(&text));
    req.stamp_source("192.0.2.1:9988".parse().unwrap());
    assert_eq!(
        req.header("Via"),
        Some("SIP/2.0/UDP 10.1.1.1:4540;received=192.0.2.1;rport=9988;branch=z9hG4bKkjshdyff, SIP/2.0/UDP proxy.example.com;branch=z9hG4bKkjsh77")
    );
    assert_eq!(req.base.via.received.as_deref(), Some("192.0.2.1"));
}

#[test]
fn name_addr_forms_and_display() {
    let a = NameAddr::parse("sip:alice@example.com;tag=1").unwrap();
    assert_eq!(a.to_string(), "<sip:alice@example.com>;tag=1");
    let b = NameAddr::parse("\"A \\\"B\\\"\" <sip:b@example.com;transport=tcp> ; q=0.5").unwrap();
    assert_eq!(b.display.as_deref(), Some("A \"B\""));
    assert_eq!(
        b.to_string(),
        "\"A \\\"B\\\"\" <sip:b@example.com;transport=tcp>;q=0.5"
    );
    assert_eq!(NameAddr::parse(&b.to_string()), Ok(b));
    assert_eq!(
        NameAddr::parse("Bob Smith <sip:bob@x>")
            .unwrap()
            .display
            .as_deref(),
        Some("Bob Smith")
    );
    for bad in [
        "",
        "<sip:a@b",
        "sip:a@b?x=y",
        "\"open <sip:a@b>",
        "<sip:a@b>;",
        "< sip:a@b>",
        "a,b <sip:c@d>",
        "<nouri>",
    ] {
        assert_eq!(
            NameAddr::parse(bad),
            Err(ParseError::MalformedHeader("name-addr")),
            "{bad}"
        );
    }
}

#[test]
fn uri_schemes_and_round_trip() {
    let u = Uri::parse("pres:alice@example.com").unwrap();
    assert_eq!(
        (u.scheme.as_str(), u.user.as_deref(), u.host.as_str()),
        ("pres", Some("alice"), "example.com")
    );
    assert_eq!(
        Uri::parse("IM:bob@example.org").unwrap().to_string(),
        "im:bob@example.org"
    );
    let s = "sips:alice@[2001:db8::1]:5061;transport=tcp;lr?subject=hi";
    let u = Uri::parse(s).unwrap();
    assert_eq!(u.port, Some(5061));
    assert_eq!(u.param("lr"), Some(None));
    assert_eq!(u.to_string(), s);
    assert_eq!(
        Uri::parse("tel:+1-201-555-0123"),
        Err(ParseError::UnsupportedUriScheme)
    );
    for bad in [
        "sip:",
        "sip:a@",
        "sip:a b@c",
        "sip:%zz@c",
        "sip:a@b;",
        "sip:a@b:x",
        "nocolon",
        "1sip:a@b",
    ] {
        assert_eq!(Uri::parse(bad), Err(ParseError::MalformedUri), "{bad}");
    }
}

#[test]
fn cseq_limits() {
    assert_eq!(CSeq::parse("2147483647 INVITE").unwrap().seq, 2_147_483_647);
    assert_eq!(
        CSeq::parse("2147483648 INVITE"),
        Err(ParseError::BadHeaderValue("CSeq"))
    );
    assert_eq!(CSeq::parse("12"), Err(ParseError::BadHeaderValue("CSeq")));
    assert_eq!(
        CSeq::parse("x INVITE"),
        Err(ParseError::BadHeaderValue("CSeq"))
    );
    assert_eq!(
        CSeq::parse("1 invite").unwrap().method,
        Method::Other("invite".to_owned())
    );
}

#[test]
fn method_tokens_are_case_sensitive() {
    assert_eq!(Method::parse("SUBSCRIBE"), Method::Subscribe);
    assert_eq!(
        Method::parse("Subscribe"),
        Method::Other("Subscribe".to_owned())
    );
    assert_eq!(Method::Prack.to_string(), "PRACK");
    assert_eq!(Method::Other("FOO".to_owned()).as_str(), "FOO");
}

#[test]
fn split_list_respects_quotes_and_brackets() {
    assert_eq!(
        split_list("\"a, b\" <sip:x@y;p=1,2>;q=1 , <sip:z@w>,"),
        vec!["\"a, b\" <sip:x@y;p=1,2>;q=1", "<sip:z@w>", ""]
    );
    assert_eq!(split_list("one"), vec!["one"]);
}

#[test]
fn header_level_faults() {
    let base = crlf(REGISTER);
    let text = String::from_utf8(base).unwrap();
    let with = |from: &str, to: &str| text.replace(from, to).into_bytes();
    let (s, r, _) = replied(&with("Max-Forwards: 70", "Max-Forwards: seventy"));
    assert_eq!((s, r.as_str()), (400, "Bad Max-Forwards header"));
    let (s, r, _) = replied(&with("Max-Forwards: 70", "Max-Forwards: 256"));
    assert_eq!((s, r.as_str()), (400, "Bad Max-Forwards header"));
    let (_, r, _) = replied(&with(
        "Content-Length: 0",
        "Expires: soon\r\nContent-Length: 0",
    ));
    assert_eq!(r, "Bad Expires header");
    let (_, r, _) = replied(&with(
        "CSeq: 1 REGISTER",
        "CSeq: 1 REGISTER\r\nTo: <sip:b@x>",
    ));
    assert_eq!(r, "Duplicate To header");
    let (_, r, _) = replied(&with("Content-Length: 0", "Content-Length: 1"));
    assert_eq!(r, "Content-Length larger than body");
    let (_, r, _) = replied(&with("Call-ID: 1j9FpLxk3uxtm8tn@10.1.1.1", "Call-ID: a b"));
    assert_eq!(r, "Malformed Call-ID header");
    assert_eq!(
        dropped(&with("Call-ID: 1j9FpLxk3uxtm8tn@10.1.1.1\r\n", "")),
        "Missing Call-ID header"
    );
    assert_eq!(
        dropped(&with("Max-Forwards: 70", "Max-Forwards 70")),
        "Malformed header line"
    );
    assert_eq!(
        dropped(&with("Max-Forwards: 70", "Max-Forwards: 7\u{0}0\n0")),
        "Malformed header line"
    );
    let mut latin1 = with("Alice", "Al\u{e9}ce");
    let pos = latin1.windows(2).position(|w| w == "é".as_bytes()).unwrap();
    latin1.splice(pos..pos + 2, [0xe9]);
    assert_eq!(
        dropped(&latin1),
        "Start line or header section is not UTF-8"
    );
    // No Max-Forwards is accepted (RFC 3261 §8.2 does not demand it).
    assert_eq!(
        request(&with("Max-Forwards: 70\r\n", "")).max_forwards(),
        None
    );
}

#[test]
fn size_limit_gives_513_or_drop() {
    let small = Limits {
        max_message_bytes: 100,
    };
    match parse(&crlf(REGISTER), &small) {
        Err(Rejection::Reply {
            status,
            reason,
            response,
            via,
        }) => {
            assert_eq!((status, reason.as_str()), (513, "Message Too Large"));
            assert!(response.starts_with(b"SIP/2.0 513 Message Too Large\r\n"));
            assert_eq!(via.host, "10.1.1.1");
        }
        other => panic!("expected 513, got {other:?}"),
    }
    let junk = vec![b'x'; 200];
    assert_eq!(
        parse(&junk, &small),
        Err(Rejection::Drop {
            reason: "Malformed start line".to_owned()
        })
    );
    let response_bytes = include_bytes!("../torture/noreason.sip");
    assert_eq!(
        parse(response_bytes, &small),
        Err(Rejection::Drop {
            reason: "Message Too Large".to_owned()
        })
    );
}

#[test]
fn keepalive_datagrams_and_truncation() {
    assert_eq!(dropped(b"\r\n\r\n"), "Empty message");
    assert_eq!(dropped(b""), "Empty message");
    let text = String::from_utf8(crlf(REGISTER)).unwrap();
    let cut = &text.as_bytes()[..text.len() - 30];
    assert_eq!(dropped(cut), "Missing end of header section");
    // CRLFs before the start line are ignored (RFC 3261 §7.5).
    let mut padded = b"\r\n".to_vec();
    padded.extend_from_slice(text.as_bytes());
    assert_eq!(request(&padded).base.call_id, "1j9FpLxk3uxtm8tn@10.1.1.1");
}

#[test]
fn branch_and_tag_are_fresh() {
    let (a, b) = (new_branch(), new_branch());
    assert!(a.starts_with("z9hG4bK") && a.len() == 23, "{a}");
    assert_ne!(a, b);
    let (t, u) = (new_tag(), new_tag());
    assert_eq!(t.len(), 16);
    assert_ne!(t, u);
}
