//! Phone numbers (`phone`), in a deliberately small set of formats.
//!
//! Digits alone say little: a bare run of ten digits is as likely an order number, a
//! timestamp or an account id. So only shapes that announce a phone number are detected:
//!
//! - **International (E.164) with `+`**: `+`, a country code not starting with 0, then 8
//!   to 15 digits in all, optionally grouped by single spaces, dashes or dots, with at most
//!   one group in parentheses (`+1 (555) 123-4567`, `+44 (0)20 7946 0958`,
//!   `+49 30 1234567`, `+33.1.23.45.67.89`, `+14155550123`). Nothing that is a letter or a
//!   digit just before the `+` (`a+12345678` is arithmetic).
//! - **North American (NANP)**: an area code and an exchange of three digits each starting
//!   with 2–9, then four digits: `(415) 555-0123`, `(415)555-0123`, `(415) 555 0123`,
//!   `415-555-0123`, `415.555.0123`, and the dashed form after `1-` (`1-415-555-0123`). The
//!   two separators of the dashed and dotted forms must be the same. (`1.415.555.0123` is
//!   not taken: it reads as often as a version number.)
//!
//! Both: not glued to letters or digits, and not part of a longer run (`415-555-0123-9`,
//! `12.415.555.0123`).
//!
//! Not detected (too many false positives, or too many national conventions to tell from
//! ids): bare digit runs (`4155550123`), national formats without `+` (`020 7946 0958`,
//! `06 12 34 56 78`, `030 1234567`), the `00` international prefix (`0044 20 …`),
//! space-separated North American numbers without parentheses (`415 555 0123`), vanity
//! numbers (`1-800-FLOWERS`), extensions (`x123`, `ext. 4`: the number before is found),
//! and numbers with more than 15 digits.

use super::{before, boundary_before, byte, number_goes_on};

/// The phone number at the word starting at `i` (a digit), or starting with the `+` or `(`
/// just before it, as `(start, end)`.
pub(crate) fn at_digit(b: &[u8], i: usize) -> Option<(usize, usize)> {
    match before(b, i) {
        b'+' if boundary_before(b, i - 1) => e164(b, i).map(|e| (i - 1, e)),
        b'(' if boundary_before(b, i - 1) => {
            nanp_parens(b, i).map(|e| (i - 1, e)).or_else(|| nanp(b, i).map(|e| (i, e)))
        }
        _ => nanp(b, i).map(|e| (i, e)),
    }
}

/// `+` then digits (from `i`), 8 to 15 of them, grouped as documented.
fn e164(b: &[u8], i: usize) -> Option<usize> {
    if b[i] == b'0' {
        return None;
    }
    let mut j = i;
    let mut digits = 0;
    let mut end = i;
    let mut sep_ok = false; // a separator may follow (a digit or `)` came last)
    let mut in_parens = false;
    let mut parens_used = false;
    let mut open_at_end = false;
    while j < b.len() {
        match b[j] {
            b'0'..=b'9' => {
                digits += 1;
                if digits > 15 {
                    return None;
                }
                j += 1;
                end = j;
                open_at_end = in_parens;
                sep_ok = true;
            }
            b' ' | b'-' | b'.' if sep_ok && !in_parens => {
                j += 1;
                sep_ok = false;
            }
            b'(' if !in_parens && !parens_used && byte(b, j + 1).is_ascii_digit() => {
                in_parens = true;
                parens_used = true;
                j += 1;
                sep_ok = false;
            }
            b')' if in_parens && sep_ok => {
                in_parens = false;
                j += 1;
            }
            _ => break,
        }
    }
    if open_at_end || !(8..=15).contains(&digits) || number_goes_on(b, end) {
        return None;
    }
    Some(end)
}

fn digits3(b: &[u8], i: usize, first_2_to_9: bool) -> bool {
    b.len() >= i + 3 && b[i..i + 3].iter().all(u8::is_ascii_digit) && (!first_2_to_9 || (b'2'..=b'9').contains(&b[i]))
}

fn digits4_end(b: &[u8], i: usize) -> Option<usize> {
    (b.len() >= i + 4 && b[i..i + 4].iter().all(u8::is_ascii_digit) && !number_goes_on(b, i + 4)).then_some(i + 4)
}

/// `(415) 555-0123` from the area code at `i` (the `(` is at `i - 1`).
fn nanp_parens(b: &[u8], i: usize) -> Option<usize> {
    if !digits3(b, i, true) || byte(b, i + 3) != b')' {
        return None;
    }
    let mut j = i + 4;
    if byte(b, j) == b' ' {
        j += 1;
    }
    if !digits3(b, j, true) {
        return None;
    }
    j += 3;
    if matches!(byte(b, j), b'-' | b' ' | b'.') {
        j += 1;
    }
    digits4_end(b, j)
}

/// `415-555-0123`, `415.555.0123`, or `1-415-555-0123`, from `i`.
fn nanp(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    if b[j] == b'1' && byte(b, j + 1) == b'-' && byte(b, j + 2).is_ascii_digit() {
        j += 2;
    }
    if !digits3(b, j, true) {
        return None;
    }
    let sep = byte(b, j + 3);
    if !matches!(sep, b'-' | b'.') || (j > i && sep != b'-') {
        return None;
    }
    j += 4;
    if !digits3(b, j, true) || byte(b, j + 3) != sep {
        return None;
    }
    digits4_end(b, j + 4)
}

#[cfg(test)]
mod tests {
    use super::super::{Detector, DetectorSet, find};

    fn phones(text: &str) -> Vec<&str> {
        find(text, DetectorSet::of(&[Detector::Phone])).iter().map(|f| &text[f.start..f.end]).collect()
    }

    #[test]
    fn formats() {
        for p in [
            "+14155550123",
            "+1 (415) 555-0123",
            "+44 (0)20 7946 0958",
            "+49 30 1234567",
            "+33.1.23.45.67.89",
            "+33 6 12 34 56 78",
            "(415) 555-0123",
            "(415)555-0123",
            "(415) 555 0123",
            "415-555-0123",
            "415.555.0123",
            "1-415-555-0123",
        ] {
            let text = format!("call {p}, thanks");
            assert_eq!(phones(&text), [p], "{text}");
        }
        assert_eq!(phones(r#"{"phone":"+4915112345678"}"#), ["+4915112345678"]);
        assert_eq!(phones("tel:+14155550123"), ["+14155550123"]);
        assert_eq!(phones("ruf an: +49 30 1234567 (büro)"), ["+49 30 1234567"]);
    }

    #[test]
    fn near_misses() {
        for text in [
            "4155550123",
            "415 555 0123",
            "020 7946 0958",
            "+1234567",
            "+1234567890123456",
            "+0123456789",
            "a+12345678",
            "3+12345678",
            "415-555-0123-9",
            "12.415.555.0123",
            "415-555.0123",
            "115-555-0123",
            "415-155-0123",
            "2024-01-15",
            "1.2.3.4",
            "10.0.0.1",
            "123-45-6789",
            "v415.555.0123",
            "415-555-0123x",
            "+1 (415 555-0123",
            "1-415.555.0123",
            "1.415.555.0123",
        ] {
            assert!(phones(text).is_empty(), "{text}: {:?}", phones(text));
        }
    }
}
