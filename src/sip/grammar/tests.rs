//! The shared RFC 3261 §25.1 rules on examples from RFC 3261 and RFC 4475 (valid and
//! invalid), with exact results.

use super::*;

fn params(s: &str) -> Option<Vec<(String, Option<String>)>> {
    parse_params(s)
}

fn p(name: &str, value: Option<&str>) -> (String, Option<String>) {
    (name.to_owned(), value.map(str::to_owned))
}

#[test]
fn tokens_rfc3261_and_rfc4475() {
    // RFC 4475 §3.1.1.2 (intmeth): every token character in one method.
    assert!(is_token("!interesting-Method0123456789_*+`.%indeed'~"));
    assert!(is_token("INVITE"));
    assert!(is_token("z9hG4bK776asdhds"));
    for bad in [
        "", "a b", "a,b", "a;b", "a\"b", "a=b", "é", "a/b", "a@b", "<a>",
    ] {
        assert!(!is_token(bad), "{bad:?}");
    }
    assert_eq!(take_token("SIP/2.0"), Some(("SIP", "/2.0")));
    assert_eq!(take_token("/2.0"), None);
    assert_eq!(token_len("branch=z9"), 6);
    assert!(is_scheme("sip") && is_scheme("sips") && is_scheme("a+b-c.d"));
    assert!(!is_scheme("1sip") && !is_scheme("") && !is_scheme("si p"));
}

#[test]
fn white_space_and_trimming() {
    assert_eq!(trim_wsp(" \t value \t"), "value");
    assert_eq!(trim_wsp("\r\nvalue"), "\r\nvalue");
    assert_eq!(trim_lws("\r\n value\r\n"), "value");
    assert_eq!(trim_wsp_bytes(b"  150\t"), b"150");
    assert_eq!(trim_wsp_bytes(b" \t "), b"");
    assert!(is_wsp(' ') && is_wsp('\t') && !is_wsp('\r'));
    assert!(is_lws('\r') && is_lws('\n') && !is_lws('x'));
}

#[test]
fn numbers() {
    assert_eq!(parse_digits("0068"), Some(68));
    assert_eq!(parse_digits(""), None);
    assert_eq!(parse_digits("-1"), None);
    assert_eq!(parse_digits("99999999999999999999"), None);
    assert_eq!(delta_seconds("3600"), Some(3600));
    assert_eq!(delta_seconds("99999999999"), Some(u32::MAX));
    assert_eq!(delta_seconds("1.5"), None);
    assert_eq!(delta_seconds(""), None);
}

#[test]
fn quoted_strings_rfc4475() {
    // RFC 4475 §3.1.1.1 (wsinv) From display name: `"J Rosenberg \\\""`.
    let from = r#""J Rosenberg \\\"" <sip:jdrosen@example.com>"#;
    let end = quoted_end(from).unwrap();
    assert_eq!(&from[..end], r#""J Rosenberg \\\"""#);
    assert_eq!(unquote(&from[..end]), r#"J Rosenberg \""#);
    // RFC 4475 §3.1.1.1 Contact display name: `"Quoted string \"\""`.
    assert_eq!(unquote(r#""Quoted string \"\"""#), r#"Quoted string """#);
    // RFC 4475 §3.1.1.2 (intmeth) To: quoted-pairs of BEL, NUL and DEL.
    assert_eq!(
        unquote("\"BEL:\\\u{7} NUL:\\\u{0} DEL:\\\u{7f}\""),
        "BEL:\u{7} NUL:\u{0} DEL:\u{7f}"
    );
    // RFC 4475 §3.1.2.6 (quotbal): the quote is never closed.
    assert_eq!(quoted_end("\"Mr. J. User <sip:j.user@example.com>"), None);
    assert_eq!(quoted_end(r#""ends in \""#), None);
    assert!(is_quoted_string(r#""a;b""#));
    assert!(is_quoted_string(r#""""#));
    assert!(!is_quoted_string(r#""a" "b""#));
    assert!(!is_quoted_string(r#""open"#));
    assert!(!is_quoted_string("plain"));
    assert_eq!(quote(r#"ex"a\b"#), r#""ex\"a\\b""#);
    assert_eq!(unquote(&quote("é \" \\")), "é \" \\");
}

#[test]
fn unquoted_search_and_split() {
    assert_eq!(find_unquoted(r#""a<b" <sip:x>"#, '<'), Some(6));
    assert_eq!(find_unquoted(r#""a<b""#, '<'), None);
    let pieces: Vec<_> = split_unquoted(r#"a;b="x;y";c"#, ';').collect();
    assert_eq!(pieces, vec![Ok("a"), Ok(r#"b="x;y""#), Ok("c")]);
    let pieces: Vec<_> = split_unquoted(r#"a;x="open;b"#, ';').collect();
    assert_eq!(pieces, vec![Ok("a"), Err(r#"x="open;b"#)]);
    let pieces: Vec<_> = split_unquoted("", ';').collect();
    assert_eq!(pieces, vec![Ok("")]);
    let pieces: Vec<_> = split_unquoted(";", ';').collect();
    assert_eq!(pieces, vec![Ok(""), Ok("")]);
}

#[test]
fn comma_lists_rfc3261_contact_example() {
    // RFC 3261 §20.10, unfolded.
    let value = "\"Mr. Watson\" <sip:watson@worcester.bell-telephone.com> ;q=0.7; \
                 expires=3600, \"Mr. Watson\" <mailto:watson@bell-telephone.com> ;q=0.1";
    let elements: Vec<_> = list_elements(value, Angles::Opaque).collect();
    assert_eq!(
        elements,
        vec![
            (
                "\"Mr. Watson\" <sip:watson@worcester.bell-telephone.com> ;q=0.7; expires=3600",
                None
            ),
            (
                " \"Mr. Watson\" <mailto:watson@bell-telephone.com> ;q=0.1",
                None
            ),
        ]
    );
    // Commas inside quotes and <…> do not separate.
    let value = "\"a, b\" <sip:x@y;p=1,2>;q=1 , <sip:z@w>,";
    let elements: Vec<_> = list_elements(value, Angles::QuotesInside)
        .map(|(e, _)| e)
        .collect();
    assert_eq!(
        elements,
        vec!["\"a, b\" <sip:x@y;p=1,2>;q=1 ", " <sip:z@w>", ""]
    );
}

#[test]
fn comma_lists_rfc4475() {
    // RFC 4475 §3.1.1.1 (wsinv): `UnknownHeaderWithUnusualValue: ;;,,;;,;`.
    let elements: Vec<_> = list_elements(";;,,;;,;", Angles::QuotesInside)
        .map(|(e, _)| e)
        .collect();
    assert_eq!(elements, vec![";;", "", ";;", ";"]);
    // RFC 4475 §3.1.2.13 (baddn): an unquoted display name with a comma is two elements.
    let elements: Vec<_> = list_elements(
        "Bell, Alexander <sip:a.g.bell@bell-tel.com>;tag=43",
        Angles::Opaque,
    )
    .map(|(e, _)| e)
    .collect();
    assert_eq!(
        elements,
        vec!["Bell", " Alexander <sip:a.g.bell@bell-tel.com>;tag=43"]
    );
    // RFC 4475 §3.1.2.6 (quotbal): the open quote runs to the end of the value.
    assert_eq!(
        list_element_end(
            "\"Mr. J. User <sip:j.user@example.com>, <sip:x@y>",
            Angles::Opaque
        ),
        (48, Some(Unclosed::Quote))
    );
    assert_eq!(
        list_element_end("<sip:a@b, sip:c@d", Angles::Opaque),
        (17, Some(Unclosed::Angle))
    );
}

#[test]
fn angles_differ_only_on_quotes_inside_brackets() {
    let value = "<sip:a\"b>, <sip:c\">, x";
    assert_eq!(list_element_end(value, Angles::Opaque), (9, None));
    assert_eq!(list_element_end(value, Angles::QuotesInside), (19, None));
}

#[test]
fn generic_params_rfc3261_via_and_rfc4475_contact() {
    // RFC 3261 §20.42: white space before the first `;`.
    assert_eq!(
        params(" ;received=192.0.2.207;branch=z9hG4bK77asjd"),
        Some(vec![
            p("received", Some("192.0.2.207")),
            p("branch", Some("z9hG4bK77asjd"))
        ])
    );
    // RFC 4475 §3.1.1.1 (wsinv) Contact params: LWS around `;` and `=`, a flag.
    assert_eq!(
        params(" ; newparam = newvalue ; secondparam ; q = 0.33"),
        Some(vec![
            p("newparam", Some("newvalue")),
            p("secondparam", None),
            p("q", Some("0.33"))
        ])
    );
    // Quoted values keep their quotes; an IPv6 host value.
    assert_eq!(
        params(";x=\"a;b\";maddr=[2001:db8::1]"),
        Some(vec![
            p("x", Some("\"a;b\"")),
            p("maddr", Some("[2001:db8::1]"))
        ])
    );
    assert_eq!(params(""), Some(vec![]));
    assert_eq!(params(" \t"), Some(vec![]));
    for bad in [
        "junk;a",
        ";",
        ";a;",
        ";=1",
        ";a=",
        ";a==b",
        ";a=b c",
        ";a b",
        ";a=\"open",
        ";a=\"x\"y",
        ";a\"b\"=c",
        ";a=b\r",
    ] {
        assert_eq!(params(bad), None, "{bad:?}");
    }
}

#[test]
fn one_generic_param() {
    assert_eq!(
        generic_param(" id = 1234 ", is_wsp),
        Ok(("id", Some("1234")))
    );
    assert_eq!(generic_param("flag", is_wsp), Ok(("flag", None)));
    assert_eq!(
        generic_param("a=\"x y\"", is_wsp),
        Ok(("a", Some("\"x y\"")))
    );
    assert_eq!(generic_param("=3", is_wsp), Err(ParamError::BadName));
    assert_eq!(generic_param("", is_wsp), Err(ParamError::BadName));
    assert_eq!(
        generic_param("a=b c", is_wsp),
        Err(ParamError::BadValue { name: "a" })
    );
    assert_eq!(
        generic_param("a=\"x\" \"y\"", is_wsp),
        Err(ParamError::BadValue { name: "a" })
    );
    // The white-space rule is the caller's: CR LF count only where it says so.
    assert_eq!(
        generic_param("a=b\r\n", is_wsp),
        Err(ParamError::BadValue { name: "a" })
    );
    assert_eq!(generic_param("a=b\r\n", is_lws), Ok(("a", Some("b"))));
    assert!(is_gen_value("[::1]") && is_gen_value("\"q\"") && !is_gen_value(""));
}

#[test]
fn never_panics_on_junk() {
    for input in crate::sip::junk::junk_inputs() {
        let _ = parse_params(&input);
        let _ = quoted_end(&input);
        let _ = unquote(&input);
        let _ = generic_param(&input, is_lws);
        let _ = find_unquoted(&input, '<');
        let _ = split_unquoted(&input, ';').count();
        let _ = list_elements(&input, Angles::Opaque).count();
        let _ = list_elements(&input, Angles::QuotesInside).count();
    }
}
