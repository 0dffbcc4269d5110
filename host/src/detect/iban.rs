//! International bank account numbers (`iban`).
//!
//! An IBAN is found when all of these hold:
//!
//! - **Shape**: a country code of two capital letters from the table below, two check
//!   digits, and a BBAN of capital letters and digits, the whole exactly the country's
//!   length; written compactly (`DE89370400440532013000`) or in groups of four separated by
//!   single spaces, the last group shorter (`DE89 3704 0044 0532 0130 00`).
//! - **Boundaries**: no letter, digit or `_` touches either end.
//! - **mod-97**: the check digits are right (ISO 13616: the first four characters moved to
//!   the end, letters as 10–35, the number mod 97 is 1).
//!
//! The lengths are those of the SWIFT IBAN registry (release 2024), 89 countries and
//! territories, [`length`]. Not detected: lower-case IBANs, other groupings or separators
//! (dashes, dots), IBANs with a wrong check (typos), and countries outside the registry
//! (e.g. the "experimental" IBANs of some African countries).

use super::{boundary_before, byte, is_word};

/// The length of an IBAN of country `cc` (two ASCII capital letters), if it has IBANs.
#[must_use]
pub fn length(cc: [u8; 2]) -> Option<usize> {
    let len = match &cc {
        b"NO" => 15,
        b"BE" => 16,
        b"DK" | b"FI" | b"FK" | b"FO" | b"GL" | b"NL" | b"SD" => 18,
        b"MK" | b"SI" => 19,
        b"AT" | b"BA" | b"EE" | b"KZ" | b"LT" | b"LU" | b"MN" | b"XK" => 20,
        b"CH" | b"HR" | b"LI" | b"LV" => 21,
        b"BG" | b"BH" | b"CR" | b"DE" | b"GB" | b"GE" | b"IE" | b"ME" | b"RS" | b"VA" => 22,
        b"AE" | b"GI" | b"IL" | b"IQ" | b"OM" | b"SO" | b"TL" => 23,
        b"AD" | b"CZ" | b"ES" | b"MD" | b"PK" | b"RO" | b"SA" | b"SE" | b"SK" | b"TN" | b"VG" => 24,
        b"LY" | b"PT" | b"ST" => 25,
        b"IS" | b"TR" => 26,
        b"BI" | b"DJ" | b"FR" | b"GR" | b"IT" | b"MC" | b"MR" | b"SM" => 27,
        b"AL" | b"AZ" | b"BY" | b"CY" | b"DO" | b"GT" | b"HN" | b"HU" | b"LB" | b"NI" | b"PL" | b"SV" => 28,
        b"BR" | b"EG" | b"PS" | b"QA" | b"UA" => 29,
        b"JO" | b"KW" | b"MU" | b"YE" => 30,
        b"MT" | b"SC" => 31,
        b"LC" => 32,
        b"RU" => 33,
        _ => return None,
    };
    Some(len)
}

/// The end of the IBAN starting at `i` (a capital letter at a word start), if there is one.
pub(crate) fn at(b: &[u8], i: usize) -> Option<usize> {
    if b.len() < i + 15
        || !b[i + 1].is_ascii_uppercase()
        || !b[i + 2].is_ascii_digit()
        || !b[i + 3].is_ascii_digit()
        || !boundary_before(b, i)
    {
        return None;
    }
    let len = length([b[i], b[i + 1]])?;
    let mut chars = [0u8; 34];
    // Compact: exactly `len` characters.
    let mut j = i;
    while j < b.len() && j - i < len && is_bban(b[j]) {
        chars[j - i] = b[j];
        j += 1;
    }
    let end = if j - i == len && !is_word(byte(b, j)) {
        j
    } else if j - i == 4 && byte(b, j) == b' ' {
        grouped(b, i, len, &mut chars)?
    } else {
        return None;
    };
    mod97(&chars[..len]).then_some(end)
}

fn is_bban(c: u8) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit()
}

/// Groups of four separated by single spaces, `len` characters in all.
fn grouped(b: &[u8], i: usize, len: usize, chars: &mut [u8; 34]) -> Option<usize> {
    let mut count = 0;
    let mut j = i;
    loop {
        let mut group = 0;
        while group < 4 && count < len && is_bban(byte(b, j)) {
            chars[count] = b[j];
            count += 1;
            group += 1;
            j += 1;
        }
        if count == len {
            return (!is_word(byte(b, j))).then_some(j);
        }
        if group < 4 || byte(b, j) != b' ' {
            return None;
        }
        j += 1;
    }
}

/// The ISO 13616 check over `chars` (capital letters and digits, country code first).
#[must_use]
pub fn mod97(chars: &[u8]) -> bool {
    if chars.len() < 5 {
        return false;
    }
    let mut rem = 0u32;
    for &c in chars[4..].iter().chain(&chars[..4]) {
        rem = match c {
            b'0'..=b'9' => (rem * 10 + u32::from(c - b'0')) % 97,
            b'A'..=b'Z' => (rem * 100 + u32::from(c - b'A') + 10) % 97,
            _ => return false,
        };
    }
    rem == 1
}

#[cfg(test)]
mod tests {
    use super::super::{Detector, DetectorSet, find};
    use super::*;

    fn ibans(text: &str) -> Vec<&str> {
        find(text, DetectorSet::of(&[Detector::Iban])).iter().map(|f| &text[f.start..f.end]).collect()
    }

    #[test]
    fn compact_and_grouped() {
        assert_eq!(ibans("pay to DE89370400440532013000."), ["DE89370400440532013000"]);
        assert_eq!(ibans("pay to DE89 3704 0044 0532 0130 00 today"), ["DE89 3704 0044 0532 0130 00"]);
        assert_eq!(ibans(r#"{"iban":"GB82WEST12345698765432"}"#), ["GB82WEST12345698765432"]);
        assert_eq!(ibans("NO9386011117947 BE68539007547034"), ["NO9386011117947", "BE68539007547034"]);
        assert_eq!(ibans("FR14 2004 1010 0505 0001 3M02 606 EUR"), ["FR14 2004 1010 0505 0001 3M02 606"]);
        assert_eq!(ibans("ü=DE89370400440532013000é"), ["DE89370400440532013000"]);
    }

    #[test]
    fn near_misses() {
        assert!(ibans("DE88370400440532013000").is_empty(), "wrong check digits");
        assert!(ibans("DE8937040044053201300").is_empty(), "too short for DE");
        assert!(ibans("DE893704004405320130001").is_empty(), "too long for DE");
        assert!(ibans("XX89370400440532013000").is_empty(), "no such country");
        assert!(ibans("de89370400440532013000").is_empty(), "lower case");
        assert!(ibans("xDE89370400440532013000").is_empty());
        assert!(ibans("DE89 37040044 0532 0130 00").is_empty(), "uneven groups");
        assert!(ibans("DE89-3704-0044-0532-0130-00").is_empty(), "dashes");
        assert!(ibans("ISO 9001 and HTTP 1").is_empty());
    }

    #[test]
    fn table_is_well_formed() {
        assert_eq!(length(*b"DE"), Some(22));
        assert_eq!(length(*b"US"), None);
        assert!(mod97(b"GB82WEST12345698765432"));
        assert!(!mod97(b"GB83WEST12345698765432"));
    }
}
