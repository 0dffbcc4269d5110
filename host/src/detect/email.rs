//! E-mail addresses (`email`).
//!
//! A practical subset of RFC 5322's addr-spec, the addresses people and systems actually
//! write, found around each `@`:
//!
//! - **Local part**: a dot-atom of ASCII letters, digits and `_ % + -`, at most 64
//!   characters, dots only between characters (a leading run of dots is not taken; `a.@b.com`
//!   and `a..b@c.com` only match from after the last bad dot).
//! - **Domain**: at least two labels separated by dots; labels of ASCII letters, digits and
//!   `-`, not starting or ending with `-`, at most 63 characters; the last label (the TLD)
//!   letters only, at least two; at most 253 characters. A dot right after the domain ends
//!   a sentence and is not taken.
//! - **Boundaries**: the local part starts after the first character that cannot be in it
//!   (so CJK prose without spaces, `联系bob@example.com`, works); a JSON escape just before
//!   it (`\nbob@…`) is not part of it. A non-ASCII letter inside an address ends it: `josé@…`
//!   is not found, `bob@mail.exämple.com` is found as `bob@mail.ex` (the part that is
//!   ASCII).
//!
//! Not detected: the other atext characters (`! # $ & ' * / = ? ^ \` { | } ~`, left out
//! because they delimit addresses in URLs, query strings and prose), quoted local parts
//! (`"john doe"@example.com`), domain literals (`user@[192.0.2.1]`), internationalised
//! addresses (non-ASCII local parts or domains; their punycode `xn--` form is detected),
//! single-label domains (`root@localhost`), and obfuscations (`bob at example dot com`).

use super::{before, byte, escape_len};

fn is_local(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'%' | b'+' | b'-')
}

fn is_label(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-'
}

/// The address around the `@` at `i`, as `(start, end)`; its local part starts at or after
/// `floor`.
pub(crate) fn at_sign(b: &[u8], i: usize, floor: usize) -> Option<(usize, usize)> {
    let start = local_start(b, i, floor)?;
    let end = domain_end(b, i + 1)?;
    Some((start, end))
}

fn local_start(b: &[u8], at_sign: usize, floor: usize) -> Option<usize> {
    let lowest = at_sign.saturating_sub(64).max(floor);
    let mut s = at_sign;
    while s > lowest && (is_local(b[s - 1]) || b[s - 1] == b'.') {
        s -= 1;
    }
    if s == lowest && s > floor && (is_local(b[s - 1]) || b[s - 1] == b'.') {
        return None; // longer than 64: not a local part
    }
    if before(b, at_sign) == b'.' {
        return None;
    }
    // From after the last dot that is not between two local characters.
    let mut start = s;
    for k in s..at_sign {
        if b[k] == b'.' && (k == start || b[k + 1] == b'.') {
            start = k + 1;
        }
    }
    // A JSON escape glued to the front (`\nbob`, `\u00e9bob`) is not part of the address.
    if start == s && before(b, s) == b'\\' {
        let mut slashes = 0;
        while s > slashes && b[s - 1 - slashes] == b'\\' {
            slashes += 1;
        }
        if slashes % 2 == 1 {
            start = s - 1 + escape_len(b, s - 1);
            while start < at_sign && b[start] == b'.' {
                start += 1;
            }
        }
    }
    (start < at_sign).then_some(start)
}

fn domain_end(b: &[u8], from: usize) -> Option<usize> {
    let mut j = from;
    let mut labels = 0;
    let mut tld_letters = true;
    let mut end = from;
    loop {
        let label_start = j;
        while j < b.len() && is_label(b[j]) && j - label_start < 64 && j - from <= 254 {
            j += 1;
        }
        let label = &b[label_start..j];
        if label.is_empty() || label.len() > 63 || label[0] == b'-' || label[label.len() - 1] == b'-' {
            break;
        }
        labels += 1;
        tld_letters = label.len() >= 2 && label.iter().all(u8::is_ascii_alphabetic);
        end = j;
        if byte(b, j) == b'.' && is_label(byte(b, j + 1)) {
            j += 1;
        } else {
            break;
        }
    }
    let next = byte(b, end);
    if labels < 2 || !tld_letters || end - from > 253 || is_label(next) || next == b'_' {
        return None;
    }
    Some(end)
}

#[cfg(test)]
mod tests {
    use super::super::{Detector, DetectorSet, find};

    fn emails(text: &str) -> Vec<&str> {
        find(text, DetectorSet::of(&[Detector::Email])).iter().map(|f| &text[f.start..f.end]).collect()
    }

    #[test]
    fn in_prose_and_json() {
        assert_eq!(emails("Mail bob.smith+tag@mail.example.co.uk, thanks."), ["bob.smith+tag@mail.example.co.uk"]);
        assert_eq!(emails(r#"{"email":"ana_m@example.org","x":1}"#), ["ana_m@example.org"]);
        assert_eq!(emails("see a@b.io. Or c@d.com"), ["a@b.io", "c@d.com"]);
        assert_eq!(emails("(jo@x-y.dev)"), ["jo@x-y.dev"]);
        assert_eq!(emails("?user=bob@example.com&x=1"), ["bob@example.com"]);
        assert_eq!(emails("line\\nbob@example.com"), ["bob@example.com"]);
        assert_eq!(emails("line\\\\nbob@example.com"), ["nbob@example.com"], "an escaped backslash, then n");
        assert_eq!(emails("é bob@example.com ü"), ["bob@example.com"]);
        assert_eq!(emails("联系bob@example.com获取"), ["bob@example.com"]);
        assert_eq!(emails("..bob@example.com"), ["bob@example.com"]);
        assert_eq!(emails("a..bob@example.com"), ["bob@example.com"]);
    }

    #[test]
    fn near_misses() {
        for text in [
            "@bob on twitter",
            "bob@localhost",
            "bob@192.168.0.1",
            "bob@example.c",
            "bob@example.c0m",
            "bob.@example.com",
            "josé@example.com",
            "bob@exämple.com",
            "bob@-example.com",
            "bob@example-.com",
            "a @ b.com",
            "user@[192.0.2.1]",
        ] {
            assert!(emails(text).is_empty(), "{text}: {:?}", emails(text));
        }
        let long = format!("{}@example.com", "a".repeat(65));
        assert!(emails(&long).is_empty(), "local part over 64");
    }
}
