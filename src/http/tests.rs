use super::*;

fn limits() -> Limits {
    Limits::default()
}

fn parse(bytes: &[u8]) -> Result<Option<(Head, usize)>, HttpError> {
    parse_head(bytes, &limits())
}

fn parse_err(bytes: &[u8]) -> HttpError {
    match parse(bytes) {
        Err(e) => e,
        Ok(r) => panic!("expected an error, got {r:?}"),
    }
}

#[test]
fn parses_a_get() {
    let raw = b"GET /api/cluster HTTP/1.1\r\nHost: node1:8080\r\nAccept: */*\r\n\r\n";
    let (head, len) = parse(raw).unwrap().unwrap();
    assert_eq!(len, raw.len());
    assert_eq!(head.method, "GET");
    assert_eq!(head.path, "/api/cluster");
    assert_eq!(head.query, None);
    assert_eq!(head.minor_version, 1);
    assert_eq!(
        head.headers,
        vec![
            ("host".to_owned(), "node1:8080".to_owned()),
            ("accept".to_owned(), "*/*".to_owned())
        ]
    );
    assert_eq!(head.content_length, 0);
}

#[test]
fn parses_a_post_with_body() {
    let raw = b"POST /api/nodes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Content-Length: 13\r\n\r\n{\"id\":\"n2\"}\r\nEXTRA";
    let (head, len) = parse(raw).unwrap().unwrap();
    assert_eq!(head.method, "POST");
    assert_eq!(head.content_length, 13);
    assert_eq!(&raw[len..len + 13], b"{\"id\":\"n2\"}\r\n");
    assert_eq!(head.header("content-type"), Some("application/json"));
}

#[test]
fn incomplete_head_is_none() {
    assert!(parse(b"").unwrap().is_none());
    assert!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
    assert!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n\r").unwrap().is_none());
    assert!(parse(b"\r\n").unwrap().is_none());
}

#[test]
fn splits_path_and_query_without_decoding() {
    let raw = b"GET /api/nodes/n%2F1?verbose=1&x=%20y HTTP/1.1\r\nHost: x\r\n\r\n";
    let (head, _) = parse(raw).unwrap().unwrap();
    assert_eq!(head.path, "/api/nodes/n%2F1");
    assert_eq!(head.query.as_deref(), Some("verbose=1&x=%20y"));

    let (head, _) = parse(b"GET /a? HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(
        (head.path.as_str(), head.query.as_deref()),
        ("/a", Some(""))
    );
}

#[test]
fn absolute_and_asterisk_forms() {
    let raw = b"GET http://node1:8080/api/cluster?a=b HTTP/1.1\r\nHost: node1\r\n\r\n";
    let (head, _) = parse(raw).unwrap().unwrap();
    assert_eq!(head.path, "/api/cluster");
    assert_eq!(head.query.as_deref(), Some("a=b"));
    let raw = b"GET HTTP://node1 HTTP/1.1\r\nHost: node1\r\n\r\n";
    assert_eq!(parse(raw).unwrap().unwrap().0.path, "/");
    let raw = b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(parse(raw).unwrap().unwrap().0.path, "*");
    assert!(matches!(
        parse_err(b"GET * HTTP/1.1\r\nHost: x\r\n\r\n"),
        HttpError::BadRequest(_)
    ));
    assert!(matches!(
        parse_err(b"CONNECT node1:443 HTTP/1.1\r\nHost: x\r\n\r\n"),
        HttpError::BadRequest(_)
    ));
}

#[test]
fn header_names_are_case_insensitive() {
    let raw = b"POST /x HTTP/1.1\r\nHOST: x\r\ncOnTeNt-LeNgTh: 2\r\nX-Thing:\t v \t\r\n\r\nok";
    let (head, _) = parse(raw).unwrap().unwrap();
    assert_eq!(head.content_length, 2);
    assert_eq!(head.header("Content-Length"), Some("2"));
    assert_eq!(head.header("x-thing"), Some("v"));
    assert_eq!(head.headers[0].0, "host");
}

#[test]
fn lenient_line_endings_and_leading_empty_lines() {
    let raw = b"\r\n\nGET /a HTTP/1.0\nX: y\n\n";
    let (head, len) = parse(raw).unwrap().unwrap();
    assert_eq!(len, raw.len());
    assert_eq!((head.path.as_str(), head.minor_version), ("/a", 0));
    assert_eq!(head.header("x"), Some("y"));
}

#[test]
fn malformed_is_400() {
    let cases: &[&[u8]] = &[
        b"GET /\r\n\r\n",
        b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1 \r\nHost: x\r\n\r\n",
        b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1\r\nHost: x\r\n\r\n",
        b"GET / http/1.1\r\nHost: x\r\n\r\n",
        b"GET relative HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /a#frag HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n  folded\r\n\r\n",
        b"GET / HTTP/1.1\r\n Host: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\n",
    ];
    for raw in cases {
        let e = parse_err(raw);
        assert!(
            matches!(e, HttpError::BadRequest(_)),
            "{:?}: {e:?}",
            String::from_utf8_lossy(raw)
        );
        assert_eq!(e.status(), Some(400));
    }
    // Identical repeated lengths are fine (RFC 9112 §6.3).
    let raw = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\n";
    assert_eq!(parse(raw).unwrap().unwrap().0.content_length, 3);
    // HTTP/1.0 needs no Host.
    assert!(parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().is_some());
}

#[test]
fn head_too_large_is_431() {
    let small = Limits {
        max_head_bytes: 64,
        ..Limits::default()
    };
    let mut raw = b"GET / HTTP/1.1\r\nHost: x\r\nX: ".to_vec();
    raw.extend(std::iter::repeat_n(b'a', 60));
    // Incomplete and already over the limit.
    let e = parse_head(&raw, &small).unwrap_err();
    assert!(matches!(e, HttpError::HeadTooLarge(64)), "{e:?}");
    assert_eq!(e.status(), Some(431));
    // Complete but over the limit.
    raw.extend_from_slice(b"\r\n\r\n");
    assert!(matches!(
        parse_head(&raw, &small),
        Err(HttpError::HeadTooLarge(64))
    ));
    // Exactly at the limit is fine.
    let exact = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let at = Limits {
        max_head_bytes: exact.len(),
        ..Limits::default()
    };
    assert!(parse_head(exact, &at).unwrap().is_some());
}

#[test]
fn body_too_large_is_413() {
    let raw = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 65537\r\n\r\n";
    let e = parse_err(raw);
    assert!(matches!(e, HttpError::BodyTooLarge(65536)), "{e:?}");
    assert_eq!(e.status(), Some(413));
    let raw = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n";
    assert!(matches!(parse_err(raw), HttpError::BodyTooLarge(_)));
    let raw = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 65536\r\n\r\n";
    assert_eq!(parse(raw).unwrap().unwrap().0.content_length, 65536);
}

#[test]
fn transfer_encoding_is_501() {
    let raw = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    let e = parse_err(raw);
    assert!(matches!(e, HttpError::TransferEncoding), "{e:?}");
    assert_eq!(e.status(), Some(501));
    // Also when Content-Length is given (RFC 9112 §6.3: Transfer-Encoding overrides it).
    let raw = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\ntransfer-encoding: gzip\r\n\r\n";
    assert!(matches!(parse_err(raw), HttpError::TransferEncoding));
}

#[test]
fn unsupported_version_is_505() {
    for raw in [
        &b"GET / HTTP/2.0\r\nHost: x\r\n\r\n"[..],
        b"GET / HTTP/0.9\r\n\r\n",
        b"GET / HTTP/1.2\r\nHost: x\r\n\r\n",
    ] {
        let e = parse_err(raw);
        assert!(matches!(e, HttpError::VersionNotSupported(_)), "{e:?}");
        assert_eq!(e.status(), Some(505));
    }
}

#[test]
fn timeout_is_408() {
    let e = HttpError::Timeout(Duration::from_secs(1));
    assert_eq!(e.status(), Some(408));
    assert_eq!(e.to_response().status, 408);
    assert_eq!(HttpError::BadResponse("x").status(), None);
}

#[test]
fn formats_http_dates() {
    assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
    let t = |s| UNIX_EPOCH + Duration::from_secs(s);
    assert_eq!(http_date(t(784_111_777)), "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_eq!(http_date(t(951_782_400)), "Tue, 29 Feb 2000 00:00:00 GMT");
    assert_eq!(http_date(t(951_868_799)), "Tue, 29 Feb 2000 23:59:59 GMT");
}

#[test]
fn serialises_a_response() {
    let r = Response::json(200, "{\"ok\":true}");
    let bytes = r.serialize(UNIX_EPOCH, false);
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        "HTTP/1.1 200 OK\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n\
         Content-Type: application/json\r\nContent-Length: 11\r\nConnection: close\r\n\r\n\
         {\"ok\":true}"
    );
    let head_only = r.serialize(UNIX_EPOCH, true);
    assert!(String::from_utf8(head_only)
        .unwrap()
        .ends_with("Content-Length: 11\r\nConnection: close\r\n\r\n"));
}

#[test]
fn serialises_405_with_allow_and_skips_unsafe_fields() {
    let r = Response::method_not_allowed("GET, POST")
        .with_header("Content-Length", "999")
        .with_header("X-Bad", "a\r\nInjected: yes")
        .with_header("Bad Name", "v");
    let text = String::from_utf8(r.serialize(UNIX_EPOCH, false)).unwrap();
    assert!(
        text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\nAllow: GET, POST\r\n"), "{text}");
    assert!(!text.contains("999") && !text.contains("Injected") && !text.contains("Bad Name"));
    let body = "{\"error\":\"method not allowed\"}";
    assert!(text.contains(&format!("Content-Length: {}\r\n", body.len())));
    assert!(text.ends_with(body));
}

#[test]
fn serialises_edge_statuses() {
    let text = |r: Response| String::from_utf8(r.serialize(UNIX_EPOCH, false)).unwrap();
    let no_content = text(Response::json(204, "ignored"));
    assert!(no_content.starts_with("HTTP/1.1 204 No Content\r\n"));
    assert!(!no_content.contains("Content-Length") && no_content.ends_with("\r\n\r\n"));
    assert!(text(Response::text(99, "x")).starts_with("HTTP/1.1 500 Internal Server Error"));
    assert!(text(Response::text(299, "x")).starts_with("HTTP/1.1 299 \r\n"));
    let not_found = text(Response::not_found());
    assert!(not_found.starts_with("HTTP/1.1 404 Not Found\r\n"));
    assert!(not_found.contains("Content-Type: application/json\r\n"));
}

#[test]
fn error_bodies_are_escaped_json() {
    let r = Response::error(400, "bad \"x\"\\\n\u{1}");
    assert_eq!(r.body, b"{\"error\":\"bad \\\"x\\\"\\\\\\n\\u0001\"}");
}

#[test]
fn builds_client_requests() {
    let get = build_request("127.0.0.1:1", "GET", "/api/cluster", None).unwrap();
    assert_eq!(
        get,
        b"GET /api/cluster HTTP/1.1\r\nHost: 127.0.0.1:1\r\nAccept: application/json\r\n\
          Connection: close\r\n\r\n"
    );
    let post = build_request("h:1", "POST", "/api/nodes", Some(b"{}")).unwrap();
    let post = String::from_utf8(post).unwrap();
    assert!(post.contains("Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"));
    let empty_post = String::from_utf8(build_request("h:1", "POST", "/", None).unwrap());
    assert!(empty_post.unwrap().ends_with("Content-Length: 0\r\n\r\n"));
    for (method, path, addr) in [
        ("G T", "/", "h:1"),
        ("GET", "x", "h:1"),
        ("GET", "/a b", "h:1"),
        ("GET", "/a\r\nX: y", "h:1"),
        ("GET", "/", "h:1\r\n"),
    ] {
        assert!(matches!(
            build_request(addr, method, path, None),
            Err(HttpError::InvalidArgument(_))
        ));
    }
}

#[test]
fn parses_client_responses() {
    let full =
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}junk";
    assert_eq!(
        parse_response(full, false, false).unwrap(),
        Some((201, b"{}".to_vec()))
    );
    let partial = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab";
    assert_eq!(parse_response(partial, false, false).unwrap(), None);
    assert!(matches!(
        parse_response(partial, false, true),
        Err(HttpError::BadResponse(_))
    ));
    assert_eq!(
        parse_response(partial, true, false).unwrap(),
        Some((200, Vec::new()))
    );
    let until_close = b"HTTP/1.0 200\r\n\r\nabc";
    assert_eq!(parse_response(until_close, false, false).unwrap(), None);
    assert_eq!(
        parse_response(until_close, false, true).unwrap(),
        Some((200, b"abc".to_vec()))
    );
    for bad in [
        &b"HTTP/1.1 2000 OK\r\n\r\n"[..],
        b"SIP/2.0 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        assert!(matches!(
            parse_response(bad, false, true),
            Err(HttpError::BadResponse(_))
        ));
    }
}

// --- I/O ------------------------------------------------------------------------------

struct Server {
    addr: String,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(limits: Limits) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(serve(listener, limits, handle, shutdown));
    Server { addr, stop, task }
}

async fn handle(request: Request) -> Response {
    match (request.method.as_str(), request.path.as_str()) {
        ("GET" | "HEAD", "/api/cluster") => Response::json(200, "{\"nodes\":[\"n1\"]}"),
        ("POST", "/api/nodes") => {
            let mut body = b"{\"received\":".to_vec();
            body.extend_from_slice(&request.body);
            body.extend_from_slice(b",\"query\":\"");
            body.extend_from_slice(request.query.unwrap_or_default().as_bytes());
            body.extend_from_slice(b"\"}");
            Response::json(201, body)
        }
        ("GET", "/panic") => panic!("handler panics"),
        (_, "/api/nodes" | "/api/cluster") => Response::method_not_allowed("GET, POST"),
        _ => Response::not_found(),
    }
}

async fn raw_exchange(addr: &str, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn round_trip_with_json_body() {
    let server = start(Limits::default()).await;
    let (status, body) = request(&server.addr, "GET", "/api/cluster", None, T)
        .await
        .unwrap();
    assert_eq!(
        (status, body.as_slice()),
        (200, &b"{\"nodes\":[\"n1\"]}"[..])
    );

    let (status, body) = request(
        &server.addr,
        "POST",
        "/api/nodes?dry=1",
        Some(b"{\"id\":\"n2\"}"),
        T,
    )
    .await
    .unwrap();
    assert_eq!(status, 201);
    assert_eq!(body, b"{\"received\":{\"id\":\"n2\"},\"query\":\"dry=1\"}");

    let (status, body) = request(&server.addr, "HEAD", "/api/cluster", None, T)
        .await
        .unwrap();
    assert_eq!((status, body.len()), (200, 0));
    server.stop.send(true).unwrap();
}

#[tokio::test]
async fn handler_404_405_and_panic() {
    let server = start(Limits::default()).await;
    let (status, body) = request(&server.addr, "GET", "/nope", None, T)
        .await
        .unwrap();
    assert_eq!(
        (status, body.as_slice()),
        (404, &b"{\"error\":\"not found\"}"[..])
    );
    let (status, _) = request(&server.addr, "DELETE", "/api/cluster", None, T)
        .await
        .unwrap();
    assert_eq!(status, 405);
    let text = raw_exchange(&server.addr, b"PUT /api/nodes HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(text.contains("\r\nAllow: GET, POST\r\n"), "{text}");
    let (status, _) = request(&server.addr, "GET", "/panic", None, T)
        .await
        .unwrap();
    assert_eq!(status, 500);
}

#[tokio::test]
async fn oversize_body_is_413() {
    let server = start(Limits::default()).await;
    let body = vec![b'x'; 100_000];
    let mut raw = format!(
        "POST /api/nodes HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    let text = raw_exchange(&server.addr, &raw).await;
    assert!(
        text.starts_with("HTTP/1.1 413 Content Too Large\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\nConnection: close\r\n"));
    assert!(text.contains("\r\nContent-Type: application/json\r\n"));
    assert!(text.ends_with("{\"error\":\"request body larger than 65536 bytes\"}"));
}

#[tokio::test]
async fn raw_refusals() {
    let server = start(Limits::default()).await;
    for (raw, status) in [
        (&b"GARBAGE\r\n\r\n"[..], "400 Bad Request"),
        (
            b"GET / HTTP/3.0\r\nHost: x\r\n\r\n",
            "505 HTTP Version Not Supported",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "501 Not Implemented",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
            "400 Bad Request",
        ),
    ] {
        let mut stream = TcpStream::connect(&server.addr).await.unwrap();
        stream.write_all(raw).await.unwrap();
        stream.shutdown().await.unwrap(); // ends the truncated body early
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{text}"
        );
    }
    let mut big = b"GET / HTTP/1.1\r\nHost: x\r\nX: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 10_000));
    let text = raw_exchange(&server.addr, &big).await;
    assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
}

#[tokio::test]
async fn expect_continue_gets_100() {
    let server = start(Limits::default()).await;
    let mut stream = TcpStream::connect(&server.addr).await.unwrap();
    stream
        .write_all(b"POST /api/nodes HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        .await
        .unwrap();
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).await.unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"{}").await.unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    assert_eq!(parse_response(&out, false, true).unwrap().unwrap().0, 201);
}

#[tokio::test]
async fn slow_client_gets_408() {
    let server = start(Limits {
        timeout: Duration::from_millis(200),
        ..Limits::default()
    })
    .await;
    let mut stream = TcpStream::connect(&server.addr).await.unwrap();
    stream
        .write_all(b"GET /api/cluster HTTP/1.1\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(T, stream.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{text}"
    );
}

#[tokio::test]
async fn client_times_out() {
    // A listener that accepts but never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let short = Duration::from_millis(100);
    let e = request(&addr, "GET", "/", None, short).await.unwrap_err();
    assert!(matches!(e, HttpError::Timeout(d) if d == short), "{e:?}");
    drop(listener);
}

#[tokio::test]
async fn over_the_connection_cap_is_503() {
    let server = start(Limits {
        timeout: Duration::from_secs(3),
        ..Limits::default()
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..MAX_CONNECTIONS {
        idle.push(TcpStream::connect(&server.addr).await.unwrap());
    }
    let text = raw_exchange(
        &server.addr,
        b"GET /api/cluster HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert!(
        text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\nRetry-After: 1\r\n"), "{text}");
    drop(idle);
    // Permits come back once the idle connections are gone.
    let mut status = 0;
    for _ in 0..50 {
        status = request(&server.addr, "GET", "/api/cluster", None, T)
            .await
            .unwrap()
            .0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 200);
}

#[tokio::test]
async fn shutdown_stops_the_accept_loop() {
    let server = start(Limits::default()).await;
    assert_eq!(
        request(&server.addr, "GET", "/api/cluster", None, T)
            .await
            .unwrap()
            .0,
        200
    );
    server.stop.send(true).unwrap();
    tokio::time::timeout(T, server.task)
        .await
        .expect("serve returns after shutdown")
        .unwrap();
    assert!(TcpStream::connect(&server.addr).await.is_err());
}

#[tokio::test]
async fn dropped_shutdown_sender_keeps_serving() {
    let server = start(Limits::default()).await;
    drop(server.stop);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!server.task.is_finished());
    let (status, _) = request(&server.addr, "GET", "/api/cluster", None, T)
        .await
        .unwrap();
    assert_eq!(status, 200);
    server.task.abort();
}
