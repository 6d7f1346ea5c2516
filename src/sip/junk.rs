//! Test support: deterministic junk inputs for the "never panics" tests of the SIP header
//! parsers (digest, event, registrar), built from the characters those parsers care about.

/// Deterministic junk inputs built from the characters the parsers care about; a parser
/// must return (Ok or Err) without panicking on every one of them.
pub(crate) fn junk_inputs() -> Vec<String> {
    const ALPHABET: &[&str] = &[
        "\"",
        "\\",
        ",",
        ";",
        "=",
        "<",
        ">",
        " ",
        "\t",
        "\r\n",
        "*",
        ":",
        "@",
        "a",
        "Z",
        "0",
        "9",
        "é",
        "sip:",
        "Digest ",
        "expires",
        "q",
        "id",
        "0.5",
        "auth",
        "\u{1F600}",
    ];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    (0..3000)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 24) as usize;
            (0..len)
                .map(|k| {
                    let idx = ((seed >> (k % 50)) as usize).wrapping_add(k * 7) % ALPHABET.len();
                    ALPHABET[idx]
                })
                .collect()
        })
        .collect()
}
