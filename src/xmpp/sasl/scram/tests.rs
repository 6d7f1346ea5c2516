//! The shared SCRAM mathematics and the client, on the example exchanges of RFC 5802 §5
//! (SCRAM-SHA-1) and RFC 7677 §3 (SCRAM-SHA-256), and the client against the server.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use super::client::{
    new_nonce, parse_server_first, salted_password, verify_server_final, ClientFirst as Client,
    ScramError,
};
use super::*;

/// One RFC example: user "user", password "pencil", 4096 iterations.
struct Example {
    hash: ScramHash,
    cnonce: &'static str,
    snonce: &'static str,
    salt: &'static str,
    server_first: &'static str,
    client_final: &'static str,
    server_final: &'static str,
}

/// RFC 5802 §5.
const SHA1: Example = Example {
    hash: ScramHash::Sha1,
    cnonce: "fyko+d2lbbFgONRv9qkxdawL",
    snonce: "3rfcNHYJY1ZVvWVs7j",
    salt: "QSXCR+Q6sek8bf92",
    server_first: "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
    client_final:
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
    server_final: "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
};

/// RFC 7677 §3.
const SHA256: Example = Example {
    hash: ScramHash::Sha256,
    cnonce: "rOprNGfwEbeRWgbNEkqO",
    snonce: "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
    salt: "W22ZaJ0SNY7soEsUEjb6gQ==",
    server_first:
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
    client_final: "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                   p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    server_final: "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
};

/// The client alone reproduces the RFC messages byte for byte.
fn client_run(ex: &Example) {
    let first = Client::new(ex.hash, "user", ex.cnonce);
    assert_eq!(first.message(), format!("n,,n=user,r={}", ex.cnonce));
    assert_eq!(first.nonce(), ex.cnonce);
    assert_eq!(first.hash(), ex.hash);
    let sf = parse_server_first(&first, ex.server_first.as_bytes()).unwrap();
    assert_eq!(sf.iterations, 4096);
    assert_eq!(sf.salt, B64.decode(ex.salt).unwrap());
    let salted = salted_password(ex.hash, "pencil", &sf.salt, sf.iterations);
    let (fin, sig) = first.client_final(&sf, &salted);
    assert_eq!(fin, ex.client_final);
    verify_server_final(ex.server_final.as_bytes(), &sig).unwrap();
    assert_eq!(
        verify_server_final(b"v=AAAA", &sig),
        Err(ScramError::BadServerSignature)
    );
}

#[test]
fn rfc5802_sha1_example_client() {
    client_run(&SHA1);
}

#[test]
fn rfc7677_sha256_example_client() {
    client_run(&SHA256);
}

/// The client against the server, both fed the RFC nonces and salt: every message on the
/// wire is the RFC's, and each side accepts the other.
#[test]
fn rfc_examples_client_against_server() {
    for ex in [&SHA1, &SHA256] {
        let salt = B64.decode(ex.salt).unwrap();
        let creds = ScramCredentials::derive(ex.hash, "pencil", &salt, 4096);
        let client = Client::new(ex.hash, "user", ex.cnonce);
        let first = parse_client_first(client.message().as_bytes()).expect("client-first");
        assert_eq!(first.bare, client.bare());
        let exchange = ScramExchange::new(ex.hash, first, creds, ex.snonce);
        assert_eq!(exchange.server_first(), ex.server_first);
        let sf = parse_server_first(&client, exchange.server_first().as_bytes()).unwrap();
        let salted = salted_password(ex.hash, "pencil", &sf.salt, sf.iterations);
        let (fin, expected) = client.client_final(&sf, &salted);
        assert_eq!(fin, ex.client_final);
        let server_final = exchange.finish(fin.as_bytes()).expect("proof accepted");
        assert_eq!(server_final, ex.server_final);
        verify_server_final(server_final.as_bytes(), &expected).expect("server proven");
    }
}

/// Fresh nonces, a name that needs escaping, generated credentials: still one exchange.
#[test]
fn client_against_server_with_fresh_nonces() {
    for hash in [ScramHash::Sha1, ScramHash::Sha256] {
        let creds = ScramCredentials::generate(hash, "hunter2", 64);
        let client = Client::new(hash, "ju=li,et", &new_nonce());
        let first = parse_client_first(client.message().as_bytes()).expect("client-first");
        assert_eq!(first.username, "ju=li,et");
        let exchange = ScramExchange::new(hash, first, creds, &new_server_nonce());
        let sf = parse_server_first(&client, exchange.server_first().as_bytes()).unwrap();
        let (fin, expected) =
            client.client_final(&sf, &salted_password(hash, "hunter2", &sf.salt, 64));
        let server_final = exchange.finish(fin.as_bytes()).expect("proof accepted");
        verify_server_final(server_final.as_bytes(), &expected).expect("server proven");
        // The wrong password is refused by the server.
        let client = Client::new(hash, "juliet", &new_nonce());
        let first = parse_client_first(client.message().as_bytes()).expect("client-first");
        let creds = ScramCredentials::generate(hash, "hunter2", 64);
        let exchange = ScramExchange::new(hash, first, creds, &new_server_nonce());
        let sf = parse_server_first(&client, exchange.server_first().as_bytes()).unwrap();
        let (fin, _) = client.client_final(&sf, &salted_password(hash, "hunter3", &sf.salt, 64));
        assert_eq!(
            exchange.finish(fin.as_bytes()).unwrap_err().condition(),
            "not-authorized"
        );
    }
}

/// RFC 5802 §3 keys of the §5 example, step by step (values as computed by the RFC's
/// formulas; the client and server messages above depend on them).
#[test]
fn rfc5802_keys_step_by_step() {
    let salt = B64.decode(SHA1.salt).unwrap();
    let salted = ScramHash::Sha1.salted_password("pencil", &salt, 4096);
    assert_eq!(salted.len(), 20);
    let ck = client_key(ScramHash::Sha1, &salted);
    let sk = stored_key(ScramHash::Sha1, &ck);
    let creds = ScramCredentials::derive(ScramHash::Sha1, "pencil", &salt, 4096);
    assert_eq!(sk, creds.stored_key);
    assert_eq!(server_key(ScramHash::Sha1, &salted), creds.server_key);
    let am = auth_message(
        "n=user,r=fyko+d2lbbFgONRv9qkxdawL",
        SHA1.server_first,
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j",
    );
    let proof = xor(&ck, &signature(ScramHash::Sha1, &sk, &am));
    assert_eq!(B64.encode(&proof), "v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=");
    assert_eq!(
        B64.encode(signature(ScramHash::Sha1, &creds.server_key, &am)),
        "rmF9pqV8S7suAoZWja4dJRkFsKQ="
    );
}

#[test]
fn saslname_escaping_round_trips() {
    assert_eq!(escape_saslname("a=b,c"), "a=3Db=2Cc");
    assert_eq!(decode_saslname("a=3Db=2Cc"), Ok("a=b,c".to_owned()));
    assert_eq!(decode_saslname(""), Err(SaslnameError::Empty));
    assert_eq!(decode_saslname("a=2"), Err(SaslnameError::BadEscape));
    assert_eq!(decode_saslname("a=2c"), Err(SaslnameError::BadEscape));
    assert_eq!(decode_saslname("a\0b"), Err(SaslnameError::Nul));
    for name in ["plain", "=", ",", "=2C", "jürgen,✓"] {
        assert_eq!(decode_saslname(&escape_saslname(name)).as_deref(), Ok(name));
    }
}

#[test]
fn printable_nonces() {
    assert!(is_printable("fyko+d2lbbFgONRv9qkxdawL"));
    assert!(is_printable("%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"));
    assert!(!is_printable("a,b"));
    assert!(!is_printable("a b"));
    assert!(!is_printable("é"));
    assert!(!is_printable("\x7f"));
}

#[test]
fn bad_server_messages_are_refused() {
    let first = Client::new(ScramHash::Sha256, "a=b,c", "abc");
    assert_eq!(first.message(), "n,,n=a=3Db=2Cc,r=abc");
    for (msg, err) in [
        ("r=xyz1,s=AAAA,i=4096", ScramError::BadNonce),
        ("r=abc,s=AAAA,i=4096", ScramError::BadNonce),
        ("r=abc\u{7f},s=AAAA,i=4096", ScramError::BadNonce),
        ("r=abc1,s=%%%,i=4096", ScramError::BadServerFirst("s=")),
        ("r=abc1,s=AAAA,i=0", ScramError::BadServerFirst("i=")),
        ("r=abc1,s=AAAA", ScramError::BadServerFirst("i=")),
        ("m=x,r=abc1,s=AAAA,i=1", ScramError::BadServerFirst("m=")),
    ] {
        assert_eq!(
            parse_server_first(&first, msg.as_bytes()),
            Err(err),
            "{msg}"
        );
    }
    assert_eq!(
        verify_server_final(b"e=invalid-proof", b""),
        Err(ScramError::ServerError("invalid-proof".into()))
    );
    assert_eq!(new_nonce().len(), 24);
    assert!(!new_nonce().contains(','));
}
