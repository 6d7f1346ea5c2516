use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SHA1_FIRST: &str = "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL";
const SHA1_SNONCE: &str = "3rfcNHYJY1ZVvWVs7j";
const SHA1_SERVER_FIRST: &str =
    "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";
const SHA1_FINAL: &str =
    "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=";
const SHA1_SERVER_FINAL: &str = "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=";

const SHA256_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const SHA256_SNONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const SHA256_SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const SHA256_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                            p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const SHA256_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

fn b64(s: &str) -> Vec<u8> {
    B64.decode(s).expect("test base64")
}

fn sha1_creds() -> ScramCredentials {
    ScramCredentials::derive(ScramHash::Sha1, "pencil", &b64("QSXCR+Q6sek8bf92"), 4096)
}

fn sha256_creds() -> ScramCredentials {
    ScramCredentials::derive(
        ScramHash::Sha256,
        "pencil",
        &b64("W22ZaJ0SNY7soEsUEjb6gQ=="),
        4096,
    )
}

fn sha1_exchange() -> ScramExchange {
    let first = parse_client_first(SHA1_FIRST.as_bytes()).expect("RFC client-first");
    ScramExchange::new(ScramHash::Sha1, first, sha1_creds(), SHA1_SNONCE)
}

fn malformed(msg: &str) -> SaslError {
    SaslError::MalformedRequest(msg.to_string())
}

fn not_authorized(msg: &str) -> SaslError {
    SaslError::NotAuthorized(msg.to_string())
}

/// The client side of RFC 5802 §3, to build client-final-messages for cases the RFC
/// examples do not cover.
fn client_final(
    hash: ScramHash,
    password: &str,
    exchange: &ScramExchange,
    without_proof: &str,
) -> String {
    let creds = &exchange.creds;
    let salted = hash.salted_password(password, &creds.salt, creds.iterations);
    let client_key = hash.hmac(&salted, b"Client Key");
    let stored_key = hash.digest(&client_key);
    let auth_message = format!(
        "{},{},{without_proof}",
        exchange.first.bare, exchange.server_first
    );
    let signature = hash.hmac(&stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(k, s)| k ^ s)
        .collect();
    format!("{without_proof},p={}", B64.encode(proof))
}

#[test]
fn rfc5802_sha1_example() {
    let first = parse_client_first(SHA1_FIRST.as_bytes()).expect("valid");
    assert_eq!(
        first,
        ClientFirst {
            gs2_header: "n,,".into(),
            authzid: None,
            username: "user".into(),
            client_nonce: "fyko+d2lbbFgONRv9qkxdawL".into(),
            bare: "n=user,r=fyko+d2lbbFgONRv9qkxdawL".into(),
        }
    );
    let exchange = ScramExchange::new(ScramHash::Sha1, first, sha1_creds(), SHA1_SNONCE);
    assert_eq!(exchange.server_first(), SHA1_SERVER_FIRST);
    assert_eq!(exchange.username(), "user");
    assert_eq!(exchange.authzid(), None);
    assert_eq!(exchange.hash(), ScramHash::Sha1);
    assert_eq!(
        exchange.finish(SHA1_FINAL.as_bytes()),
        Ok(SHA1_SERVER_FINAL.to_string())
    );
}

#[test]
fn rfc7677_sha256_example() {
    let first = parse_client_first(SHA256_FIRST.as_bytes()).expect("valid");
    assert_eq!(first.client_nonce, "rOprNGfwEbeRWgbNEkqO");
    let exchange = ScramExchange::new(ScramHash::Sha256, first, sha256_creds(), SHA256_SNONCE);
    assert_eq!(exchange.server_first(), SHA256_SERVER_FIRST);
    assert_eq!(
        exchange.finish(SHA256_FINAL.as_bytes()),
        Ok(SHA256_SERVER_FINAL.to_string())
    );
}

#[test]
fn credentials_have_hash_sized_keys() {
    let c1 = sha1_creds();
    assert_eq!((c1.stored_key.len(), c1.server_key.len()), (20, 20));
    assert_eq!(c1.iterations, 4096);
    assert_eq!(c1.salt, b64("QSXCR+Q6sek8bf92"));
    let c256 = sha256_creds();
    assert_eq!((c256.stored_key.len(), c256.server_key.len()), (32, 32));
}

#[test]
fn verify_password_accepts_only_the_password() {
    let creds = sha1_creds();
    assert!(creds.verify_password(ScramHash::Sha1, "pencil"));
    assert!(!creds.verify_password(ScramHash::Sha1, "pencil "));
    assert!(!creds.verify_password(ScramHash::Sha1, "Pencil"));
    assert!(!creds.verify_password(ScramHash::Sha1, ""));
    // SHA-256 credentials never verify under SHA-1 (key lengths differ).
    assert!(!sha256_creds().verify_password(ScramHash::Sha1, "pencil"));
    assert!(sha256_creds().verify_password(ScramHash::Sha256, "pencil"));
}

#[test]
fn generate_uses_a_fresh_salt() {
    let a = ScramCredentials::generate(ScramHash::Sha256, "secret", 16);
    let b = ScramCredentials::generate(ScramHash::Sha256, "secret", 16);
    assert_eq!(a.salt.len(), SALT_LEN);
    assert_eq!(a.iterations, 16);
    assert_ne!(a.salt, b.salt);
    assert_ne!(a.stored_key, b.stored_key);
    assert!(a.verify_password(ScramHash::Sha256, "secret"));
    assert!(!a.verify_password(ScramHash::Sha256, "Secret"));
    assert_eq!(
        ScramCredentials::derive(ScramHash::Sha256, "secret", &a.salt, 16),
        a
    );
}

#[test]
fn generated_credentials_complete_an_exchange() {
    for hash in [ScramHash::Sha1, ScramHash::Sha256] {
        let creds = ScramCredentials::generate(hash, "hunter2", 32);
        let first = parse_client_first(b"n,,n=juliet,r=abcdefgh").expect("valid");
        let snonce = new_server_nonce();
        let exchange = ScramExchange::new(hash, first, creds, &snonce);
        let msg = client_final(
            hash,
            "hunter2",
            &exchange,
            &format!("c=biws,r=abcdefgh{snonce}"),
        );
        let v = exchange.finish(msg.as_bytes()).expect("valid proof");
        assert!(v.starts_with("v="), "{v}");
    }
}

#[test]
fn wrong_proof_is_not_authorized() {
    // The RFC proof with one character changed (still valid base64 of 20 bytes).
    let msg = SHA1_FINAL.replace("p=v0X8", "p=w0X8");
    assert_eq!(
        sha1_exchange().finish(msg.as_bytes()),
        Err(not_authorized("proof p= does not match the credentials"))
    );
}

#[test]
fn wrong_password_is_not_authorized() {
    let first = parse_client_first(SHA1_FIRST.as_bytes()).expect("valid");
    let creds = ScramCredentials::derive(ScramHash::Sha1, "pen", &b64("QSXCR+Q6sek8bf92"), 4096);
    let exchange = ScramExchange::new(ScramHash::Sha1, first, creds, SHA1_SNONCE);
    assert_eq!(
        exchange.finish(SHA1_FINAL.as_bytes()),
        Err(not_authorized("proof p= does not match the credentials"))
    );
}

#[test]
fn credentials_of_the_other_hash_are_not_authorized() {
    let first = parse_client_first(SHA1_FIRST.as_bytes()).expect("valid");
    let exchange = ScramExchange::new(ScramHash::Sha1, first, sha256_creds(), SHA1_SNONCE);
    let msg = client_final(
        ScramHash::Sha1,
        "pencil",
        &exchange,
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j",
    );
    assert_eq!(
        exchange.finish(msg.as_bytes()),
        Err(not_authorized("proof p= does not match the credentials"))
    );
}

#[test]
fn wrong_nonce_is_not_authorized() {
    for nonce in [
        "fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7J",
        "fyko+d2lbbFgONRv9qkxdawL",
        "fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7jX",
        "",
    ] {
        let msg = format!("c=biws,r={nonce},p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=");
        assert_eq!(
            sha1_exchange().finish(msg.as_bytes()),
            Err(not_authorized(
                "nonce r= does not match the nonce of this exchange"
            )),
            "{nonce}"
        );
    }
}

#[test]
fn wrong_channel_binding_is_not_authorized() {
    // "eSws" is base64("y,,"), "cD10bHMtdW5pcXVlLCw=" is base64("p=tls-unique,,"), and
    // "" is empty: none equals base64("n,,") = "biws".
    for cb in ["eSws", "cD10bHMtdW5pcXVlLCw=", "", "bixhPXVzZXIs"] {
        let msg = SHA1_FINAL.replace("c=biws", &format!("c={cb}"));
        assert_eq!(
            sha1_exchange().finish(msg.as_bytes()),
            Err(not_authorized(
                "channel binding c= does not match the gs2 header"
            )),
            "{cb}"
        );
    }
}

#[test]
fn y_flag_and_authzid_bind_their_own_gs2_header() {
    let first = parse_client_first(b"y,a=admin=2C1,n=us=3Der=2Cx,r=abc,x=ext").expect("valid");
    assert_eq!(first.gs2_header, "y,a=admin=2C1,");
    assert_eq!(first.authzid.as_deref(), Some("admin,1"));
    assert_eq!(first.username, "us=er,x");
    assert_eq!(first.bare, "n=us=3Der=2Cx,r=abc,x=ext");
    let exchange = ScramExchange::new(ScramHash::Sha256, first, sha256_creds(), "SRV");
    assert_eq!(exchange.authzid(), Some("admin,1"));
    let cb = B64.encode("y,a=admin=2C1,");
    let msg = client_final(
        ScramHash::Sha256,
        "pencil",
        &exchange,
        &format!("c={cb},r=abcSRV,z=extension"),
    );
    let downgraded = client_final(ScramHash::Sha256, "pencil", &exchange, "c=biws,r=abcSRV");
    assert!(exchange.finish(msg.as_bytes()).is_ok());
    // "biws" (n,,) would be a downgrade of the header the client sent.
    let first = parse_client_first(b"y,a=admin=2C1,n=us=3Der=2Cx,r=abc,x=ext").expect("valid");
    let exchange = ScramExchange::new(ScramHash::Sha256, first, sha256_creds(), "SRV");
    assert_eq!(
        exchange.finish(downgraded.as_bytes()),
        Err(not_authorized(
            "channel binding c= does not match the gs2 header"
        ))
    );
}

#[test]
fn channel_binding_request_is_not_authorized() {
    for msg in [
        "p=tls-unique,,n=user,r=abc",
        "p=tls-exporter,a=x,n=user,r=abc",
        "p=,,n=u,r=a",
    ] {
        assert_eq!(
            parse_client_first(msg.as_bytes()),
            Err(not_authorized(
                "gs2 flag p= requests channel binding, which is not supported"
            )),
            "{msg}"
        );
    }
}

#[test]
fn malformed_client_first_messages() {
    let cases: &[(&str, &str)] = &[
        ("", "client-first-message lacks the gs2 header"),
        ("n", "client-first-message lacks the gs2 header"),
        ("n,", "gs2 header lacks the authzid field"),
        (
            "x,,n=user,r=abc",
            "gs2 channel-binding flag must be n, y or p=",
        ),
        (
            "N,,n=user,r=abc",
            "gs2 channel-binding flag must be n, y or p=",
        ),
        (
            ",,n=user,r=abc",
            "gs2 channel-binding flag must be n, y or p=",
        ),
        (
            "n,b=x,n=user,r=abc",
            "gs2 header authzid must start with a=",
        ),
        ("n,a=,n=user,r=abc", "gs2 header authzid a= is empty"),
        (
            "n,a=x=2,n=user,r=abc",
            "gs2 header authzid a= has '=' not followed by 2C or 3D",
        ),
        (
            "n,,m=ext,n=user,r=abc",
            "client-first-message carries the reserved mandatory extension m=",
        ),
        (
            "n,,",
            "client-first-message-bare must start with username n=",
        ),
        (
            "n,,r=abc,n=user",
            "client-first-message-bare must start with username n=",
        ),
        ("n,,n=,r=abc", "username n= is empty"),
        (
            "n,,n=us=er,r=abc",
            "username n= has '=' not followed by 2C or 3D",
        ),
        (
            "n,,n=us=2c,r=abc",
            "username n= has '=' not followed by 2C or 3D",
        ),
        (
            "n,,n=user=,r=abc",
            "username n= has '=' not followed by 2C or 3D",
        ),
        ("n,,n=us\0er,r=abc", "username n= contains NUL"),
        (
            "n,,n=user",
            "client-first-message-bare lacks nonce r= after username",
        ),
        (
            "n,,n=user,",
            "client-first-message-bare lacks nonce r= after username",
        ),
        (
            "n,,n=user,x=abc",
            "client-first-message-bare lacks nonce r= after username",
        ),
        ("n,,n=user,r=", "client nonce r= is empty"),
        (
            "n,,n=user,r=ab c",
            "client nonce r= contains a non-printable character",
        ),
        (
            "n,,n=user,r=abé",
            "client nonce r= contains a non-printable character",
        ),
        (
            "n,,n=user,r=ab\x7f",
            "client nonce r= contains a non-printable character",
        ),
        (
            "n,,n=user,r=abc,",
            "client-first-message has an attribute that is not of the form x=value",
        ),
        (
            "n,,n=user,r=abc,foo=1",
            "client-first-message has an attribute that is not of the form x=value",
        ),
        (
            "n,,n=user,r=abc,1=1",
            "client-first-message has an attribute that is not of the form x=value",
        ),
        (
            "n,,n=user,r=abc,r=def",
            "client-first-message has attribute r= out of order or repeated",
        ),
        (
            "n,,n=user,r=abc,n=other",
            "client-first-message has attribute n= out of order or repeated",
        ),
    ];
    for (msg, expected) in cases {
        let got = parse_client_first(msg.as_bytes());
        assert_eq!(got, Err(malformed(expected)), "{msg:?}");
        assert_eq!(got.unwrap_err().condition(), "malformed-request");
    }
}

#[test]
fn non_utf8_client_first_is_incorrect_encoding() {
    for msg in [
        &b"n,,n=us\xffer,r=abc"[..],
        b"\xc3",
        b"n,,n=user,r=\xed\xa0\x80",
    ] {
        assert_eq!(
            parse_client_first(msg),
            Err(SaslError::IncorrectEncoding(
                "client-first-message is not valid UTF-8".into()
            ))
        );
    }
}

#[test]
fn non_ascii_username_is_kept() {
    let first = parse_client_first("n,,n=jürgen=2C✓,r=abc".as_bytes()).expect("valid");
    assert_eq!(first.username, "jürgen,✓");
}

#[test]
fn malformed_client_final_messages() {
    let proof = "p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=";
    let nonce = "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j";
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "client-final-message lacks proof p="),
        (proof.to_string(), "client-final-message lacks proof p="),
        (
            format!("c=biws,{nonce}"),
            "client-final-message must end with proof p=",
        ),
        (
            format!("c=biws,{proof},{nonce}"),
            "client-final-message must end with proof p=",
        ),
        (
            format!("c=biws,{nonce},{proof},"),
            "client-final-message must end with proof p=",
        ),
        (
            format!("{nonce},c=biws,{proof}"),
            "client-final-message must start with channel binding c=",
        ),
        (
            format!(",{proof}"),
            "client-final-message must start with channel binding c=",
        ),
        (
            format!("c=biws,{proof}"),
            "client-final-message lacks nonce r= after c=",
        ),
        (
            format!("c=biws,x=1,{nonce},{proof}"),
            "client-final-message lacks nonce r= after c=",
        ),
        (
            format!("c=biws,{nonce},{proof},{proof}"),
            "client-final-message has attribute p= out of order or repeated",
        ),
        (
            format!("c=biws,{nonce},c=biws,{proof}"),
            "client-final-message has attribute c= out of order or repeated",
        ),
        (
            format!("c=biws,{nonce},,{proof}"),
            "client-final-message has an attribute that is not of the form x=value",
        ),
        (
            format!("c=biws,{nonce},x,{proof}"),
            "client-final-message has an attribute that is not of the form x=value",
        ),
        (
            format!("c=bi*s,{nonce},{proof}"),
            "channel binding c= is not valid base64",
        ),
        (
            format!("c=biws=,{nonce},{proof}"),
            "channel binding c= is not valid base64",
        ),
        (
            format!("c=biws,{nonce},p=v0X8v3Bz2T0C!GbJQyF0X+HI4Ts="),
            "proof p= is not valid base64",
        ),
        (
            format!("c=biws,{nonce},p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts"),
            "proof p= is not valid base64",
        ),
        (
            format!("c=biws,{nonce},p="),
            "proof p= is 0 bytes; SCRAM-SHA-1 needs 20",
        ),
        (
            format!("c=biws,{nonce},p=AAAA"),
            "proof p= is 3 bytes; SCRAM-SHA-1 needs 20",
        ),
        (
            format!("c=biws,{nonce},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
            "proof p= is 32 bytes; SCRAM-SHA-1 needs 20",
        ),
    ];
    for (msg, expected) in cases {
        let got = sha1_exchange().finish(msg.as_bytes());
        assert_eq!(got, Err(malformed(expected)), "{msg:?}");
    }
}

#[test]
fn non_utf8_client_final_is_incorrect_encoding() {
    let mut bad = SHA1_FINAL.as_bytes().to_vec();
    bad[3] = 0xff;
    assert_eq!(
        sha1_exchange().finish(&bad),
        Err(SaslError::IncorrectEncoding(
            "client-final-message is not valid UTF-8".into()
        ))
    );
}

#[test]
fn server_nonce_is_printable_and_fresh() {
    let a = new_server_nonce();
    let b = new_server_nonce();
    assert_eq!(a.len(), 32);
    assert_ne!(a, b);
    assert!(check_nonce(&a, "server nonce").is_ok(), "{a}");
    assert_eq!(B64.decode(&a).expect("base64").len(), SERVER_NONCE_LEN);
}

#[test]
fn hostile_input_never_panics() {
    const PIECES: &[&str] = &[
        "n",
        "y",
        "p=",
        ",",
        "=",
        "a=",
        "n=",
        "r=",
        "c=",
        "p=",
        "m=",
        "=2C",
        "=3D",
        "=2",
        "biws",
        "é",
        "✓",
        "\u{1F600}",
        "\0",
        "fyko+d2lbbFgONRv9qkxdawL",
        "3rfcNHYJY1ZVvWVs7j",
        "v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        "AAAA",
        "x=",
        " ",
    ];
    let mut rng = StdRng::seed_from_u64(5802);
    let creds = ScramCredentials::derive(ScramHash::Sha1, "pencil", b"salt", 1);
    let first = parse_client_first(SHA1_FIRST.as_bytes()).expect("valid");
    for _ in 0..5000 {
        let mut msg: Vec<u8> = Vec::new();
        for _ in 0..rng.gen_range(0..12) {
            if rng.gen_bool(0.1) {
                msg.push(rng.gen());
            } else {
                msg.extend_from_slice(PIECES[rng.gen_range(0..PIECES.len())].as_bytes());
            }
        }
        let _ = parse_client_first(&msg);
        let exchange =
            ScramExchange::new(ScramHash::Sha1, first.clone(), creds.clone(), SHA1_SNONCE);
        let _ = exchange.finish(&msg);
        let _ = crate::xmpp::sasl::parse_plain(&msg);
    }
}
