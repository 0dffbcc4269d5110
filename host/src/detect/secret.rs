//! High-confidence secret shapes (`secret`): credentials whose issuer gave them a
//! recognisable prefix, and private-key blocks. Entropy guesses ("a long random-looking
//! string") are deliberately left out: they flag hashes, ids and base64 data all day.
//!
//! | shape | rule |
//! |---|---|
//! | AWS access key id | `AKIA` or `ASIA`, then 16 capital letters or digits (20 in all) |
//! | GitHub token | `ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, then 36 to 251 letters or digits |
//! | GitHub fine-grained token | `github_pat_`, then 70 to 240 letters, digits or `_` |
//! | GitLab token | `glpat-`, then 20 to 250 letters, digits, `_`, `-` or `.` |
//! | Stripe key | `sk_live_`, `sk_test_`, `rk_live_`, `rk_test_`, then 16 to 250 letters or digits |
//! | Stripe webhook secret | `whsec_`, then 24 to 250 letters, digits, `+` or `/` |
//! | Slack token | `xoxb-`, `xoxa-`, `xoxp-`, `xoxr-`, `xoxs-`, then 10 to 250 letters, digits or `-` |
//! | Google API key | `AIza`, then 35 letters, digits, `_` or `-` (39 in all) |
//! | OpenAI key | `sk-proj-`, `sk-svcacct-`, `sk-admin-`, then 40 to 250 letters, digits, `_` or `-`; or `sk-` and 48 letters or digits containing `T3BlbkFJ` (the legacy form) |
//! | Anthropic key | `sk-ant-`, then 32 to 250 letters, digits, `_` or `-` |
//! | private key block | `-----BEGIN ` … `PRIVATE KEY-----` (RSA, EC, DSA, OPENSSH, ENCRYPTED, PKCS#8, …) through the matching `-----END … PRIVATE KEY-----`; without an END within 64 KiB, through the end of the base64 body |
//!
//! Every token needs a boundary on both sides: nothing of its own alphabet (or a letter,
//! digit, `_`) glued before the prefix or after the end. A prefix in prose (`AKIA` alone,
//! `the sk_live_ key`) is not a finding: the body must be there at full length.
//!
//! Not detected: AWS secret access keys and other unprefixed random secrets, passwords,
//! public keys and certificates (`-----BEGIN CERTIFICATE-----` is not a secret), Stripe
//! publishable keys (`pk_…`), GitHub's older 40-hex tokens, and keys of other providers.

use super::{before, byte, is_word};

/// One prefixed token shape.
struct Shape {
    prefix: &'static [u8],
    min: usize,
    max: usize,
    body: fn(u8) -> bool,
}

fn alnum(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}
fn upper_alnum(c: u8) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit()
}
fn word_dash(c: u8) -> bool {
    is_word(c) || c == b'-'
}
fn word_dash_dot(c: u8) -> bool {
    word_dash(c) || c == b'.'
}
fn alnum_dash(c: u8) -> bool {
    alnum(c) || c == b'-'
}
fn base64(c: u8) -> bool {
    alnum(c) || c == b'+' || c == b'/'
}

const SHAPES: &[Shape] = &[
    Shape { prefix: b"AKIA", min: 16, max: 16, body: upper_alnum },
    Shape { prefix: b"ASIA", min: 16, max: 16, body: upper_alnum },
    Shape { prefix: b"AIza", min: 35, max: 35, body: word_dash },
    Shape { prefix: b"ghp_", min: 36, max: 251, body: alnum },
    Shape { prefix: b"gho_", min: 36, max: 251, body: alnum },
    Shape { prefix: b"ghu_", min: 36, max: 251, body: alnum },
    Shape { prefix: b"ghs_", min: 36, max: 251, body: alnum },
    Shape { prefix: b"ghr_", min: 36, max: 251, body: alnum },
    Shape { prefix: b"github_pat_", min: 70, max: 240, body: is_word },
    Shape { prefix: b"glpat-", min: 20, max: 250, body: word_dash_dot },
    Shape { prefix: b"sk_live_", min: 16, max: 250, body: alnum },
    Shape { prefix: b"sk_test_", min: 16, max: 250, body: alnum },
    Shape { prefix: b"rk_live_", min: 16, max: 250, body: alnum },
    Shape { prefix: b"rk_test_", min: 16, max: 250, body: alnum },
    Shape { prefix: b"whsec_", min: 24, max: 250, body: base64 },
    Shape { prefix: b"xoxb-", min: 10, max: 250, body: alnum_dash },
    Shape { prefix: b"xoxa-", min: 10, max: 250, body: alnum_dash },
    Shape { prefix: b"xoxp-", min: 10, max: 250, body: alnum_dash },
    Shape { prefix: b"xoxr-", min: 10, max: 250, body: alnum_dash },
    Shape { prefix: b"xoxs-", min: 10, max: 250, body: alnum_dash },
    Shape { prefix: b"sk-ant-", min: 32, max: 250, body: word_dash },
    Shape { prefix: b"sk-proj-", min: 40, max: 250, body: word_dash },
    Shape { prefix: b"sk-svcacct-", min: 40, max: 250, body: word_dash },
    Shape { prefix: b"sk-admin-", min: 40, max: 250, body: word_dash },
];

/// The legacy OpenAI key: `sk-` and 48 letters or digits with `T3BlbkFJ` inside.
const OPENAI_LEGACY_LEN: usize = 48;

/// The end of the secret token starting at `i` (a word start), if there is one.
pub(crate) fn at(b: &[u8], i: usize) -> Option<usize> {
    let first = b[i];
    // Most words are not secrets: reject on the first two bytes before trying the shapes.
    let plausible = matches!(
        (first, byte(b, i + 1)),
        (b'A', b'K' | b'S' | b'I') | (b'g', b'h' | b'i' | b'l') | (b's' | b'r', b'k') | (b'x', b'o') | (b'w', b'h')
    );
    if !plausible || before(b, i) == b'-' {
        return None;
    }
    for shape in SHAPES {
        if shape.prefix[0] != first || !b[i..].starts_with(shape.prefix) {
            continue;
        }
        let from = i + shape.prefix.len();
        let mut j = from;
        while j < b.len() && j - from <= shape.max && (shape.body)(b[j]) {
            j += 1;
        }
        let stop = j;
        if stop - from > shape.max || is_word(byte(b, stop)) {
            continue;
        }
        // Trailing dots are punctuation, not part of a GitLab token.
        while j > from && b[j - 1] == b'.' {
            j -= 1;
        }
        if j - from >= shape.min {
            return Some(j);
        }
    }
    if first == b's' && b[i..].starts_with(b"sk-") {
        let from = i + 3;
        let mut j = from;
        while j < b.len() && alnum(b[j]) {
            j += 1;
        }
        let body = &b[from..j];
        if body.len() == OPENAI_LEGACY_LEN && body.windows(8).any(|w| w == b"T3BlbkFJ") && !word_dash(byte(b, j)) {
            return Some(j);
        }
    }
    None
}

/// How far to look for a private key's END line.
const MAX_KEY_BLOCK: usize = 64 << 10;

/// The end of the private-key block whose `-----BEGIN ` is at `i`, if the BEGIN line names
/// a private key.
///
/// `no_end_before`: no `-----END ` starts between an earlier block's body and this offset
/// (an earlier search found none), so a search from inside that range starts there. Without
/// it, a body of many BEGIN lines and no END would be searched 64 KiB per line.
pub(crate) fn private_key(b: &[u8], i: usize, no_end_before: &mut usize) -> Option<usize> {
    let label_from = i + b"-----BEGIN ".len();
    let mut j = label_from;
    while j < b.len() && j - label_from < 40 && (b[j].is_ascii_uppercase() || matches!(b[j], b' ' | b'0'..=b'9')) {
        j += 1;
    }
    let label = &b[label_from..j];
    if !label.ends_with(b"PRIVATE KEY") || !b[j..].starts_with(b"-----") {
        return None;
    }
    let body_from = j + 5;
    let limit = b.len().min(body_from + MAX_KEY_BLOCK);
    let search_from = body_from.max(*no_end_before).min(limit);
    let found = b[search_from..limit].windows(9).position(|w| w == b"-----END ");
    if found.is_none() {
        *no_end_before = limit.saturating_sub(8).max(search_from);
    }
    if let Some(k) = found {
        let end_label = search_from + k + 9;
        let mut e = end_label;
        while e < b.len() && e - end_label < 40 && (b[e].is_ascii_uppercase() || matches!(b[e], b' ' | b'0'..=b'9')) {
            e += 1;
        }
        if b[end_label..e].ends_with(b"PRIVATE KEY") && b[e..].starts_with(b"-----") {
            return Some(e + 5);
        }
    }
    // No END line: the body as far as it looks like one (base64, line breaks, raw or as
    // JSON escapes, and `Proc-Type:`-style header lines).
    let mut e = body_from;
    while e < limit && (base64(b[e]) || matches!(b[e], b'=' | b'\\' | b'\n' | b'\r' | b' ' | b':' | b',' | b'-')) {
        e += 1;
    }
    while e > body_from && !base64(b[e - 1]) && b[e - 1] != b'=' {
        e -= 1;
    }
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::super::{Detector, DetectorSet, find};

    fn secrets(text: &str) -> Vec<&str> {
        find(text, DetectorSet::of(&[Detector::Secret])).iter().map(|f| &text[f.start..f.end]).collect()
    }

    #[test]
    fn shapes() {
        for s in [
            "AKIAIOSFODNN7EXAMPLE",
            "ASIAY34FZKBOKMUTVV7A",
            "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe",
            "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",
            "github_pat_11ABCDEFG0123456789abcdef_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVW",
            "glpat-xxxxxxxxxxxxxxxxxxxx",
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "rk_test_51H8abcdefghijklmnop",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "xoxb-123456789012-1234567890123-abcdefABCDEF",
            "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789_ABCDEF-xyz",
            "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ",
            "sk-abcdefghijklmnopqrT3BlbkFJabcdefghijklmnopqrstuv",
        ] {
            let text = format!("key: {s}, done");
            assert_eq!(secrets(&text), [s], "{text}");
            let json = format!(r#"{{"k":"{s}"}}"#);
            assert_eq!(secrets(&json), [s], "{json}");
        }
    }

    #[test]
    fn private_keys() {
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7Mhgw\n-----END RSA PRIVATE KEY-----";
        assert_eq!(secrets(&format!("key:\n{pem}\nthanks")), [pem]);
        let escaped = r"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----";
        assert_eq!(secrets(&format!(r#"{{"key":"{escaped}"}}"#)), [escaped]);
        let truncated = r"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=";
        assert_eq!(secrets(&format!(r#"{{"key":"{truncated}"}}"#)), [truncated]);
        assert!(secrets("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----").is_empty());
        assert!(secrets("-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----").is_empty());
        // Many BEGIN lines and no END: each is found once, in linear time.
        let many = r#""-----BEGIN RSA PRIVATE KEY-----","#.repeat(20_000);
        assert_eq!(secrets(&many).len(), 20_000);
    }

    #[test]
    fn near_misses() {
        for text in [
            "AKIA is the prefix of AWS access key ids",
            "AKIAIOSFODNN7EXAMPL",
            "AKIAIOSFODNN7EXAMPLE1",
            "xAKIAIOSFODNN7EXAMPLE",
            "AKIAiosfodnn7example",
            "ghp_short",
            "the sk_live_ key",
            "sk-1234",
            "sk-abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuv",
            "pk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "my-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",
            "xoxb-",
        ] {
            assert!(secrets(text).is_empty(), "{text}: {:?}", secrets(text));
        }
    }
}
