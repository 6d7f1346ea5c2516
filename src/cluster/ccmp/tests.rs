//! Unit tests of CCMP bodies and signatures: every payload element, exact errors, limits,
//! RFC 4231 HMAC vectors and mutated input.

use super::*;

fn every_element() -> Vec<Element> {
    vec![
        Element::PressvrLoad(vec![
            LoadLevel {
                svr_id: "w1".into(),
                level: 43,
                users: 40,
                resources: 3,
                version: 17,
            },
            LoadLevel {
                svr_id: "primary".into(),
                level: u64::MAX,
                users: 0,
                resources: 0,
                version: 0,
            },
        ]),
        Element::PressvrLoad(Vec::new()),
        Element::PresSysUsers {
            svr_id: "w1".into(),
            full: false,
            present: vec![
                SysUser {
                    user: "alice@example.com".into(),
                    protocol: Protocol::Xmpp,
                    resources: 3,
                },
                SysUser {
                    user: "sip:bob@example.com".into(),
                    protocol: Protocol::Sip,
                    resources: 0,
                },
            ],
            gone: vec!["carol@example.com".into()],
        },
        Element::PresSysUsers {
            svr_id: "w2".into(),
            full: true,
            present: Vec::new(),
            gone: Vec::new(),
        },
        Element::RedirectionUsrAddr {
            user: "alice@example.com".into(),
            protocol: Protocol::Xmpp,
            resources: 20,
            record: Some(b"{\"roster\":[]}\0\xff".to_vec()),
            moved_from: Some("w1".into()),
        },
        Element::RedirectionUsrAddr {
            user: "bob@example.com".into(),
            protocol: Protocol::Sip,
            resources: 0,
            record: None,
            moved_from: None,
        },
        Element::RedirectionUsrAddr {
            user: "dave@example.com".into(),
            protocol: Protocol::Sip,
            resources: 1,
            record: Some(Vec::new()),
            moved_from: None,
        },
        Element::SvrPool(vec![
            "sip:pool1@10.0.0.3:5060".into(),
            "sip:pool2@10.0.0.4:5060;transport=tcp".into(),
        ]),
        Element::ActvSvrNums(3),
        Element::MaxLoad(100),
        Element::MinLoad(20),
        Element::UserUpdate {
            user: "alice@example.com".into(),
            record: vec![1, 2, 3, 250],
        },
        Element::MigrateUser {
            user: "alice@example.com".into(),
            svr_id: "w2".into(),
        },
        Element::Drain {
            svr_id: "w3".into(),
        },
        Element::SvrInfo(SvrInfo {
            svr_id: "w4".into(),
            sip: "sip:w4@10.0.0.5:5060".into(),
            xmpp: "10.0.0.5:5222".into(),
            admin: Some("10.0.0.5:8080".into()),
        }),
        Element::SvrInfo(SvrInfo {
            svr_id: "w5".into(),
            sip: "sip:w5@10.0.0.6:5060".into(),
            xmpp: "10.0.0.6:5222".into(),
            admin: None,
        }),
    ]
}

fn req(body: &str) -> Result<CcmpRequest, CcmpError> {
    CcmpRequest::parse(body.as_bytes())
}

/// A request around `payload` (inside `<ccmp:extendedRequest>`), with the usual prefixes.
fn request_with(payload: &str) -> String {
    format!(
        "<ccmp:ccmpRequest xmlns:ccmp='urn:ietf:params:xml:ns:xcon-ccmp' \
             xmlns:xsi='http://www.w3.org/2001/XMLSchema-instance' \
             xmlns:load='urn:rendezvous:params:xml:ns:load'>\
             <ccmpRequest xsi:type='ccmp:ccmp-extended-request-message-type'>\
             <confUserID>xcon-userid:w1@example.com</confUserID>\
             <ccmp:extendedRequest><extensionName>pressvr-load</extensionName>{payload}\
             </ccmp:extendedRequest></ccmpRequest></ccmp:ccmpRequest>"
    )
}

#[test]
fn every_element_round_trips_alone_and_together() {
    let all = every_element();
    for element in &all {
        let extension = match element.name() {
            "svr-info" => "pressvr-load",
            name => name,
        };
        let request = CcmpRequest::new(
            conf_user_id("w1", "example.com"),
            extension,
            vec![element.clone()],
        );
        assert_eq!(req(&request.to_xml()), Ok(request.clone()), "{element:?}");
        let response = CcmpResponse::ok(
            conf_user_id("primary", "example.com"),
            extension,
            vec![element.clone()],
        );
        assert_eq!(
            CcmpResponse::parse(response.to_xml().as_bytes()),
            Ok(response),
            "{element:?}"
        );
    }
    let request = CcmpRequest::new("xcon-userid:w1@example.com", "pres-sys-users", all.clone());
    assert_eq!(req(&request.to_xml()), Ok(request));
    let response = CcmpResponse {
        conf_user_id: "xcon-userid:primary@example.com".into(),
        code: CONFLICT,
        reason: None,
        extension: "redirection-usr-addr".into(),
        elements: all,
    };
    assert_eq!(
        CcmpResponse::parse(response.to_xml().as_bytes()),
        Ok(response)
    );
}

#[test]
fn error_responses_round_trip() {
    for code in [BAD_REQUEST, FORBIDDEN, CONFLICT] {
        let reason = default_reason(code).unwrap_or_default();
        let response =
            CcmpResponse::error("xcon-userid:primary@example.com", "drain", code, reason);
        assert!(!response.is_success());
        assert_eq!(
            CcmpResponse::parse(response.to_xml().as_bytes()),
            Ok(response)
        );
    }
    // A responder that could not read the request names no extension.
    let response = CcmpResponse::error(
        "xcon-userid:primary@example.com",
        "",
        BAD_REQUEST,
        "badRequest",
    );
    assert_eq!(
        CcmpResponse::parse(response.to_xml().as_bytes()),
        Ok(response)
    );
    // A success must name one.
    let mut ok = CcmpResponse::ok("xcon-userid:primary@example.com", "", Vec::new());
    assert!(ok.is_success());
    assert_eq!(
        CcmpResponse::parse(ok.to_xml().as_bytes()),
        Err(CcmpError::MissingExtensionName)
    );
    ok.extension = "max-load".into();
    assert_eq!(ok.reason.as_deref(), Some("success"));
    assert_eq!(CcmpResponse::parse(ok.to_xml().as_bytes()), Ok(ok));
}

#[test]
fn serialises_exactly() {
    let request = CcmpRequest::new(
        "xcon-userid:node1@example.com",
        "pressvr-load",
        vec![Element::PressvrLoad(vec![LoadLevel {
            svr_id: "w1".into(),
            level: 43,
            users: 40,
            resources: 3,
            version: 17,
        }])],
    );
    assert_eq!(
            request.to_xml(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <ccmp:ccmpRequest xmlns:ccmp=\"urn:ietf:params:xml:ns:xcon-ccmp\" \
             xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
             xmlns:load=\"urn:rendezvous:params:xml:ns:load\">\
             <ccmpRequest xsi:type=\"ccmp:ccmp-extended-request-message-type\">\
             <confUserID>xcon-userid:node1@example.com</confUserID>\
             <ccmp:extendedRequest><extensionName>pressvr-load</extensionName>\
             <load:pressvr-load><load:curr-load-level svr-id=\"w1\" users=\"40\" resources=\"3\" version=\"17\">43</load:curr-load-level></load:pressvr-load>\
             </ccmp:extendedRequest></ccmpRequest></ccmp:ccmpRequest>"
        );
    let response = CcmpResponse::error(
        "xcon-userid:primary@example.com",
        "drain",
        FORBIDDEN,
        "forbidden",
    );
    assert_eq!(
        response.to_xml(),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <ccmp:ccmpResponse xmlns:ccmp=\"urn:ietf:params:xml:ns:xcon-ccmp\" \
             xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
             xmlns:load=\"urn:rendezvous:params:xml:ns:load\">\
             <ccmpResponse xsi:type=\"ccmp:ccmp-extended-response-message-type\">\
             <confUserID>xcon-userid:primary@example.com</confUserID>\
             <response-code>403</response-code><response-string>forbidden</response-string>\
             <ccmp:extendedResponse><extensionName>drain</extensionName></ccmp:extendedResponse>\
             </ccmpResponse></ccmp:ccmpResponse>"
    );
}

/// Hand-written in the shape of the RFC 6503 examples (§5.3, §6): pretty-printed, a
/// `standalone` declaration, the optional `operation` and `response-string` elements,
/// unqualified inner elements and a qualified extended element, plus the `load` payload
/// with other prefixes.
#[test]
fn parses_rfc6503_shaped_documents() {
    let request = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<ccmp:ccmpRequest
    xmlns:info="urn:ietf:params:xml:ns:conference-info"
    xmlns:ccmp="urn:ietf:params:xml:ns:xcon-ccmp"
    xmlns:xcon="urn:ietf:params:xml:ns:xcon-conference-info"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
    <ccmpRequest xsi:type="ccmp:ccmp-extended-request-message-type">
        <confUserID> xcon-userid:w1@example.com </confUserID>
        <confObjID>xcon:8977794@example.com</confObjID>
        <operation>update</operation>
        <ccmp:extendedRequest>
            <extensionName>pressvr-load</extensionName>
            <l:pressvr-load xmlns:l="urn:rendezvous:params:xml:ns:load">
                <l:curr-load-level svr-id="w1"> 43 </l:curr-load-level>
                <l:curr-load-level svr-id="w2" users="7" resources="1" version="2">8</l:curr-load-level>
            </l:pressvr-load>
            <max-load xmlns="urn:rendezvous:params:xml:ns:load">100</max-load>
        </ccmp:extendedRequest>
    </ccmpRequest>
</ccmp:ccmpRequest>
"#;
    assert_eq!(
        req(request),
        Ok(CcmpRequest {
            conf_user_id: "xcon-userid:w1@example.com".into(),
            extension: "pressvr-load".into(),
            elements: vec![
                Element::PressvrLoad(vec![
                    LoadLevel {
                        svr_id: "w1".into(),
                        level: 43,
                        users: 0,
                        resources: 0,
                        version: 0
                    },
                    LoadLevel {
                        svr_id: "w2".into(),
                        level: 8,
                        users: 7,
                        resources: 1,
                        version: 2
                    },
                ]),
                Element::MaxLoad(100),
            ],
        })
    );

    // Qualified inner elements (a default-namespace CCMP document; unqualified ones are
    // accepted as well), the optional version element, line-wrapped base64.
    let response = r#"<ccmpResponse xmlns="urn:ietf:params:xml:ns:xcon-ccmp"
                xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
            <ccmpResponse xsi:type="ccmp-extended-response-message-type">
                <confUserID>xcon-userid:primary@example.com</confUserID>
                <response-code>200</response-code>
                <response-string>success</response-string>
                <version>3</version>
                <extendedResponse>
                    <extensionName>redirection-usr-addr</extensionName>
                    <redirection-usr-addr xmlns="urn:rendezvous:params:xml:ns:load">
                        <user-addr>alice@example.com</user-addr>
                        <protocol>XMPP</protocol>
                        <user-record>
                            AAEC
                            /w==
                        </user-record>
                    </redirection-usr-addr>
                </extendedResponse>
            </ccmpResponse>
        </ccmpResponse>"#;
    assert_eq!(
        CcmpResponse::parse(response.as_bytes()),
        Ok(CcmpResponse {
            conf_user_id: "xcon-userid:primary@example.com".into(),
            code: OK,
            reason: Some("success".into()),
            extension: "redirection-usr-addr".into(),
            elements: vec![Element::RedirectionUsrAddr {
                user: "alice@example.com".into(),
                protocol: Protocol::Xmpp,
                resources: 0,
                record: Some(vec![0, 1, 2, 255]),
                moved_from: None,
            }],
        })
    );
}

#[test]
fn foreign_namespace_elements_are_ignored() {
    let body = request_with(
            "<x:hint xmlns:x='urn:example:other'><load:bogus/></x:hint>\
             <load:pressvr-load><x:note xmlns:x='urn:example:other'>hi</x:note>\
             <load:curr-load-level svr-id='w1' x:extra='1' xmlns:x='urn:example:other'>5</load:curr-load-level>\
             </load:pressvr-load><unqualified/>",
        );
    assert_eq!(
        req(&body).map(|r| r.elements),
        Ok(vec![Element::PressvrLoad(vec![LoadLevel {
            svr_id: "w1".into(),
            level: 5,
            users: 0,
            resources: 0,
            version: 0,
        }])])
    );
}

#[test]
fn escapes_text_and_attributes() {
    let tricky = "a&b<c>\"d'\t\r\n";
    let request = CcmpRequest::new(
        "xcon-userid:w&1@example.com",
        "pres-sys-users",
        vec![
            Element::PresSysUsers {
                svr_id: tricky.into(),
                full: true,
                present: vec![SysUser {
                    user: "x\"<&@example.com".into(),
                    protocol: Protocol::Xmpp,
                    resources: 1,
                }],
                gone: vec![tricky.into()],
            },
            Element::MigrateUser {
                user: "a&b<c>\"d@example.com".into(),
                svr_id: "w<2>".into(),
            },
        ],
    );
    let xml = request.to_xml();
    assert!(xml.contains("<confUserID>xcon-userid:w&amp;1@example.com</confUserID>"));
    assert!(xml.contains("svr-id=\"a&amp;b&lt;c&gt;&quot;d'&#9;&#13;&#10;\""));
    assert!(xml.contains("<load:user-addr>a&amp;b&lt;c&gt;\"d@example.com</load:user-addr>"));
    assert_eq!(req(&xml), Ok(request));
    let response = CcmpResponse::error(
        "xcon-userid:p@example.com",
        "drain",
        CONFLICT,
        "a < b & \"c\"",
    );
    assert_eq!(
        CcmpResponse::parse(response.to_xml().as_bytes()),
        Ok(response)
    );
}

#[test]
fn refuses_with_exact_errors() {
    assert!(matches!(req("not xml at all"), Err(CcmpError::Xml(_))));
    assert!(matches!(
        req("<ccmp:ccmpRequest xmlns:ccmp='urn:ietf:params:xml:ns:xcon-ccmp'><ccmpRequest>"),
        Err(CcmpError::Xml(_))
    ));
    assert_eq!(req(""), Err(CcmpError::Xml("no root element".into())));
    assert_eq!(CcmpRequest::parse(b"<a \xff/>"), Err(CcmpError::NotUtf8));
    assert_eq!(
        req("<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='e'/>"),
        Err(CcmpError::WrongRoot {
            name: "presence".into(),
            ns: "urn:ietf:params:xml:ns:pidf".into(),
            expected: "ccmpRequest",
        })
    );
    // An unqualified root is not the RFC 6503 element.
    assert_eq!(
        req("<ccmpRequest><ccmpRequest/></ccmpRequest>"),
        Err(CcmpError::WrongRoot {
            name: "ccmpRequest".into(),
            ns: String::new(),
            expected: "ccmpRequest",
        })
    );
    // A response is not a request, and the other way round.
    let response = CcmpResponse::ok("xcon-userid:p@example.com", "drain", Vec::new()).to_xml();
    assert!(matches!(req(&response), Err(CcmpError::WrongRoot { .. })));
    let request = CcmpRequest::new("xcon-userid:p@example.com", "drain", Vec::new()).to_xml();
    assert!(matches!(
        CcmpResponse::parse(request.as_bytes()),
        Err(CcmpError::WrongRoot { .. })
    ));

    let no_user =
        request_with("").replace("<confUserID>xcon-userid:w1@example.com</confUserID>", "");
    assert_eq!(req(&no_user), Err(CcmpError::MissingConfUserId));
    let empty_user = request_with("").replace("xcon-userid:w1@example.com", "  ");
    assert_eq!(req(&empty_user), Err(CcmpError::MissingConfUserId));

    let no_name = request_with("").replace("<extensionName>pressvr-load</extensionName>", "");
    assert_eq!(req(&no_name), Err(CcmpError::MissingExtensionName));
    let unknown_name = request_with("").replace(">pressvr-load<", ">blueprints<");
    assert_eq!(
        req(&unknown_name),
        Err(CcmpError::UnknownExtension("blueprints".into()))
    );
    let no_ext = request_with("")
        .replace("<ccmp:extendedRequest>", "")
        .replace("</ccmp:extendedRequest>", "")
        .replace("<extensionName>pressvr-load</extensionName>", "");
    assert_eq!(
        req(&no_ext),
        Err(CcmpError::MissingElement {
            element: "extendedRequest",
            parent: "ccmpRequest"
        })
    );
    assert_eq!(
        req("<ccmp:ccmpRequest xmlns:ccmp='urn:ietf:params:xml:ns:xcon-ccmp'/>"),
        Err(CcmpError::MissingElement {
            element: "ccmpRequest",
            parent: "ccmpRequest"
        })
    );

    assert_eq!(
        req(&request_with("<load:load-balance/>")),
        Err(CcmpError::UnknownExtension("load-balance".into()))
    );
    assert_eq!(
        req(&request_with(
            "<load:pressvr-load><load:svr-load/></load:pressvr-load>"
        )),
        Err(CcmpError::UnknownExtension("svr-load".into()))
    );
    assert_eq!(
            req(&request_with(
                "<load:pressvr-load><load:curr-load-level svr-id='w1'>high</load:curr-load-level></load:pressvr-load>"
            )),
            Err(CcmpError::BadValue {
                element: "load:curr-load-level".into(),
                value: "high".into()
            })
        );
    assert_eq!(
            req(&request_with(
                "<load:pressvr-load><load:curr-load-level svr-id='w1'>-1</load:curr-load-level></load:pressvr-load>"
            )),
            Err(CcmpError::BadValue {
                element: "load:curr-load-level".into(),
                value: "-1".into()
            })
        );
    assert_eq!(
            req(&request_with(
                "<load:pressvr-load><load:curr-load-level svr-id='w1' users='many'>1</load:curr-load-level></load:pressvr-load>"
            )),
            Err(CcmpError::BadAttribute {
                element: "load:curr-load-level".into(),
                attribute: "users",
                value: "many".into()
            })
        );
    assert_eq!(
        req(&request_with(
            "<load:pressvr-load><load:curr-load-level>1</load:curr-load-level></load:pressvr-load>"
        )),
        Err(CcmpError::MissingAttribute {
            element: "load:curr-load-level".into(),
            attribute: "svr-id"
        })
    );
    assert_eq!(
        req(&request_with(
            "<load:actv-svr-nums>4294967296</load:actv-svr-nums>"
        )),
        Err(CcmpError::BadValue {
            element: "load:actv-svr-nums".into(),
            value: "4294967296".into()
        })
    );
    assert_eq!(
        req(&request_with("<load:drain svr-id=''/>")),
        Err(CcmpError::BadAttribute {
            element: "load:drain".into(),
            attribute: "svr-id",
            value: String::new()
        })
    );
    assert_eq!(
        req(&request_with(
            "<load:pres-sys-users svr-id='w1' full='maybe'/>"
        )),
        Err(CcmpError::BadAttribute {
            element: "load:pres-sys-users".into(),
            attribute: "full",
            value: "maybe".into()
        })
    );
    assert_eq!(
            req(&request_with(
                "<load:pres-sys-users svr-id='w1'><load:user id='a@x' protocol='irc'/></load:pres-sys-users>"
            )),
            Err(CcmpError::BadAttribute {
                element: "load:user".into(),
                attribute: "protocol",
                value: "irc".into()
            })
        );
    assert_eq!(
            req(&request_with(
                "<load:redirection-usr-addr><load:user-addr>a@x</load:user-addr></load:redirection-usr-addr>"
            )),
            Err(CcmpError::MissingElement {
                element: "protocol",
                parent: "redirection-usr-addr"
            })
        );
    assert_eq!(
            req(&request_with(
                "<load:user-update><load:user-addr>a@x</load:user-addr><load:user-record>not base64!</load:user-record></load:user-update>"
            )),
            Err(CcmpError::BadValue {
                element: "load:user-record".into(),
                value: "notbase64!".into()
            })
        );
    assert_eq!(
            req(&request_with(
                "<load:migrate-user><load:user-addr>a@x</load:user-addr><load:user-addr>b@x</load:user-addr><load:svr-id>w2</load:svr-id></load:migrate-user>"
            )),
            Err(CcmpError::Duplicate {
                element: "user-addr",
                parent: "migrate-user"
            })
        );
    let bad_code = CcmpResponse::ok("xcon-userid:p@example.com", "drain", Vec::new())
        .to_xml()
        .replace(">200<", ">2000<");
    assert_eq!(
        CcmpResponse::parse(bad_code.as_bytes()),
        Err(CcmpError::BadValue {
            element: "response-code".into(),
            value: "2000".into()
        })
    );
    assert_eq!(
        req(&request_with("<load:max-load>&lol;</load:max-load>")),
        Err(CcmpError::Xml(
            "entity reference &lol; in <load:max-load> is not allowed".into()
        ))
    );
}

/// A "billion laughs" body (our own vector): refused at the DOCTYPE, before any entity
/// could be expanded.
#[test]
fn doctype_is_refused() {
    let bomb = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
]>
<ccmp:ccmpRequest xmlns:ccmp="urn:ietf:params:xml:ns:xcon-ccmp"><ccmpRequest><confUserID>&lol1;</confUserID></ccmpRequest></ccmp:ccmpRequest>"#;
    assert_eq!(req(bomb), Err(CcmpError::Doctype));
    assert_eq!(
        CcmpResponse::parse(b"<!DOCTYPE x><x/>"),
        Err(CcmpError::Doctype)
    );
}

#[test]
fn size_and_depth_limits() {
    let padding = "x".repeat(MAX_BODY_BYTES);
    let big = request_with(&format!("<!-- {padding} -->"));
    assert_eq!(
        req(&big),
        Err(CcmpError::TooLarge {
            size: big.len(),
            max: MAX_BODY_BYTES
        })
    );
    // Exactly at the limit is accepted.
    let base = request_with("<!--  -->");
    let fill = "x".repeat(MAX_BODY_BYTES - base.len());
    let exact = request_with(&format!("<!-- {fill} -->"));
    assert_eq!(exact.len(), MAX_BODY_BYTES);
    assert!(req(&exact).is_ok());

    let nest = |n: usize| {
        request_with(&format!(
            "{}{}",
            "<x:d xmlns:x='urn:x'>".repeat(n),
            "</x:d>".repeat(n)
        ))
    };
    // Root 0, inner 1, extendedRequest 2: the nested elements start at depth 3.
    assert!(req(&nest(MAX_DEPTH - 3)).is_ok());
    assert_eq!(
        req(&nest(MAX_DEPTH - 2)),
        Err(CcmpError::TooDeep {
            element: "x:d".into(),
            max: MAX_DEPTH
        })
    );
}

#[test]
fn every_error_answers_bad_request() {
    let errors = [
        CcmpError::TooLarge { size: 1, max: 0 },
        CcmpError::NotUtf8,
        CcmpError::Xml("x".into()),
        CcmpError::Doctype,
        CcmpError::TooDeep {
            element: "x".into(),
            max: 1,
        },
        CcmpError::WrongRoot {
            name: "a".into(),
            ns: String::new(),
            expected: "ccmpRequest",
        },
        CcmpError::MissingConfUserId,
        CcmpError::MissingExtensionName,
        CcmpError::UnknownExtension("x".into()),
        CcmpError::MissingElement {
            element: "a",
            parent: "b",
        },
        CcmpError::Duplicate {
            element: "a",
            parent: "b",
        },
        CcmpError::BadValue {
            element: "a".into(),
            value: "b".into(),
        },
        CcmpError::MissingAttribute {
            element: "a".into(),
            attribute: "b",
        },
        CcmpError::BadAttribute {
            element: "a".into(),
            attribute: "b",
            value: "c".into(),
        },
    ];
    for e in &errors {
        assert_eq!(e.response_code(), BAD_REQUEST, "{e}");
    }
    assert_eq!(
        CcmpError::BadValue {
            element: "load:curr-load-level".into(),
            value: "high".into()
        }
        .to_string(),
        "<load:curr-load-level> has an invalid value 'high'"
    );
    assert_eq!(
        CcmpError::MissingElement {
            element: "user-addr",
            parent: "user-update"
        }
        .to_string(),
        "<user-addr> is missing from <user-update>"
    );
    assert_eq!(SignatureError::Mismatch.response_code(), FORBIDDEN);
}

#[test]
fn conf_user_ids() {
    let id = conf_user_id("w1", "example.com");
    assert_eq!(id, "xcon-userid:w1@example.com");
    assert_eq!(node_of(&id), Some("w1"));
    assert_eq!(node_of("xcon-userid:a@b@example.com"), Some("a@b"));
    assert_eq!(node_of("xcon-userid:@example.com"), None);
    assert_eq!(node_of("xcon-userid:w1"), None);
    assert_eq!(node_of("sip:w1@example.com"), None);
}

#[test]
fn signatures() {
    let body = CcmpRequest::new(
        "xcon-userid:w1@example.com",
        "max-load",
        vec![Element::MaxLoad(1)],
    )
    .to_xml();
    let body = body.as_bytes();
    let header = sign("s3cret", body);
    assert!(header.starts_with("hmac-sha256="));
    assert_eq!(header.len(), "hmac-sha256=".len() + 64);
    assert!(header
        .bytes()
        .skip("hmac-sha256=".len())
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert_eq!(verify("s3cret", body, Some(&header)), Ok(()));
    assert_eq!(
        verify(
            "s3cret",
            body,
            Some(&format!(" {} ", header.to_uppercase()))
        ),
        Ok(())
    );

    assert_eq!(verify("s3cret", body, None), Err(SignatureError::Missing));
    for malformed in [
        "",
        "hmac-sha256",
        "hmac-sha1=00",
        "hmac-sha256=xyz",
        "hmac-sha256=abc",
        "hmac-sha256=00ff",
        &header.replace("hmac-sha256=", "hmac-sha256=zz"),
    ] {
        assert_eq!(
            verify("s3cret", body, Some(malformed)),
            Err(SignatureError::Malformed),
            "{malformed}"
        );
    }
    let mut flipped = body.to_vec();
    if let Some(b) = flipped.get_mut(100) {
        *b ^= 1;
    }
    assert_eq!(
        verify("s3cret", &flipped, Some(&header)),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify("other", body, Some(&header)),
        Err(SignatureError::Mismatch)
    );
    // An empty secret is still a key, distinct from any other.
    let empty = sign("", body);
    assert_eq!(verify("", body, Some(&empty)), Ok(()));
    assert_eq!(
        verify("s3cret", body, Some(&empty)),
        Err(SignatureError::Mismatch)
    );
    assert_ne!(empty, header);
}

/// RFC 4231 test case 2 (HMAC-SHA256, key "Jefe").
#[test]
fn hmac_matches_rfc4231() {
    assert_eq!(
        sign("Jefe", b"what do ya want for nothing?"),
        "hmac-sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

/// Truncations and single-byte mutations of a full document never panic, and whatever
/// is accepted serialises to a document that parses back equal.
#[test]
fn mutated_input_never_panics_and_accepted_input_round_trips() {
    let source = CcmpRequest::new(
        "xcon-userid:w1@example.com",
        "pres-sys-users",
        every_element(),
    )
    .to_xml();
    let bytes = source.as_bytes();
    let mut accepted = 0;
    let mut check = |input: &[u8]| {
        if let Ok(doc) = CcmpRequest::parse(input) {
            accepted += 1;
            assert_eq!(
                CcmpRequest::parse(doc.to_xml().as_bytes()).as_ref(),
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
        for b in [b'<', b'>', b'&', b'"', b':', b'/', b'0'] {
            let mut m = bytes.to_vec();
            if let Some(slot) = m.get_mut(i) {
                *slot = b;
            }
            check(&m);
        }
    }
    assert!(accepted > 100, "only {accepted} mutants accepted");
}
