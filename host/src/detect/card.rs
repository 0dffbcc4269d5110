//! Payment card numbers (`card-number`).
//!
//! A card number is found when all of these hold:
//!
//! - **Shape**: 13 to 19 digits written together (`4111111111111111`), or grouped by single
//!   spaces or single dashes (one kind throughout) in one of the printed groupings:
//!   4-4-4-4 (16), 4-6-5 (15, Amex), 4-6-4 (14, Diners), 4-4-4-4-3 (19), 4-4-4-4-2 (18),
//!   4-4-4-4-1 (17), 4-4-4-3 (15), 4-4-4-1 (13), 4-4-5 (13).
//! - **Not part of a longer number**: no digit, letter or `_` touches either end; no
//!   `.`/`-`/space and a digit before it (`12.4111…`, `1234-4111…`), no `.`/`-` and a digit
//!   after it (`4111….50`). A grouped number that goes on with another group of the same
//!   separator (`4111 1111 1111 1111 2222`) is not a card. A 20-digit id whose first 16
//!   digits pass every check is not a card either.
//! - **Luhn**: the check digit is right.
//! - **A known issuer range (IIN) for its length**:
//!
//! | network | prefixes | lengths |
//! |---|---|---|
//! | Visa | 4 | 13, 16, 19 |
//! | Mastercard | 51–55, 2221–2720 | 16 |
//! | American Express | 34, 37 | 15 |
//! | Discover | 6011, 644–649, 65 | 16–19 |
//! | JCB | 3528–3589 | 16–19 |
//! | Diners Club | 300–305, 3095, 36, 38, 39 | 14–19 |
//! | UnionPay | 62, 81 | 16–19 |
//! | Maestro | 5018, 5020, 5038, 5893, 6304, 6759, 6761–6763 | 13–19 |
//! | Mir | 2200–2204 | 16–19 |
//!
//! Not detected: numbers glued to letters (`cc4111…`), other groupings (`41111 11111…`),
//! separators other than one space or dash, networks outside the table (e.g. RuPay 60/508,
//! Verve, Troy), and card numbers with a wrong check digit (typos) or masked digits.

use super::{byte, continues_number, number_goes_on};

/// The groupings a printed card number may use, as group lengths.
const GROUPINGS: [&[u8]; 9] = [
    &[4, 4, 4, 4],
    &[4, 6, 5],
    &[4, 6, 4],
    &[4, 4, 4, 4, 3],
    &[4, 4, 4, 4, 2],
    &[4, 4, 4, 4, 1],
    &[4, 4, 4, 3],
    &[4, 4, 4, 1],
    &[4, 4, 5],
];

/// The end of the card number starting at `i` (a digit at a word start), if there is one.
pub(crate) fn at(b: &[u8], i: usize) -> Option<usize> {
    debug_assert!(!continues_number(b, i));
    let mut digits = [0u8; 19];
    let mut j = i;
    while j < b.len() && b[j].is_ascii_digit() && j - i < 20 {
        j += 1;
    }
    let first = j - i;
    let sep = byte(b, j);
    let (count, end) = if first == 4 && matches!(sep, b' ' | b'-') && byte(b, j + 1).is_ascii_digit() {
        grouped(b, i, sep, &mut digits)?
    } else if (13..=19).contains(&first) {
        digits[..first].copy_from_slice(&b[i..j]);
        (first, j)
    } else {
        return None;
    };
    if number_goes_on(b, end) {
        return None;
    }
    let digits = &digits[..count];
    (luhn(digits) && known_iin(digits)).then_some(end)
}

/// A grouped number: `(digits, end)` when its groups are exactly one of [`GROUPINGS`].
fn grouped(b: &[u8], i: usize, sep: u8, digits: &mut [u8; 19]) -> Option<(usize, usize)> {
    let mut groups = [0u8; 6];
    let mut n_groups = 0;
    let mut count = 0;
    let mut j = i;
    loop {
        let start = j;
        while j < b.len() && b[j].is_ascii_digit() {
            if count == 19 {
                return None;
            }
            digits[count] = b[j];
            count += 1;
            j += 1;
        }
        if n_groups == groups.len() {
            return None;
        }
        groups[n_groups] = u8::try_from(j - start).ok()?;
        n_groups += 1;
        if byte(b, j) == sep && byte(b, j + 1).is_ascii_digit() {
            j += 1;
        } else {
            break;
        }
    }
    let groups = &groups[..n_groups];
    GROUPINGS.contains(&groups).then_some((count, j))
}

/// The Luhn check over ASCII digits.
#[must_use]
pub fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (k, &d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if k % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// Whether ASCII `digits` start with an issuer range of the table above, for their length.
#[must_use]
pub fn known_iin(digits: &[u8]) -> bool {
    let len = digits.len();
    let prefix = |n: usize| -> u32 { digits[..n].iter().fold(0, |acc, &d| acc * 10 + u32::from(d - b'0')) };
    let (p1, p2, p3, p4) = (prefix(1), prefix(2), prefix(3), prefix(4));
    let long = (16..=19).contains(&len);
    match p1 {
        4 => matches!(len, 13 | 16 | 19),
        5 => ((51..=55).contains(&p2) && len == 16) || (matches!(p4, 5018 | 5020 | 5038 | 5893) && len >= 13),
        2 => ((2221..=2720).contains(&p4) && len == 16) || ((2200..=2204).contains(&p4) && long),
        3 => {
            (matches!(p2, 34 | 37) && len == 15)
                || ((3528..=3589).contains(&p4) && long)
                || (((300..=305).contains(&p3) || p4 == 3095 || matches!(p2, 36 | 38 | 39)) && len >= 14)
        }
        6 => {
            ((p4 == 6011 || (644..=649).contains(&p3) || matches!(p2, 62 | 65)) && long)
                || (matches!(p4, 6304 | 6759 | 6761..=6763) && len >= 13)
        }
        8 => p2 == 81 && long,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Detector, DetectorSet, find};
    use super::*;

    fn cards(text: &str) -> Vec<&str> {
        find(text, DetectorSet::of(&[Detector::CardNumber])).iter().map(|f| &text[f.start..f.end]).collect()
    }

    #[test]
    fn luhn_and_ranges() {
        assert!(luhn(b"4111111111111111"));
        assert!(!luhn(b"4111111111111112"));
        for good in [
            "4111111111111111",
            "4222222222222",
            "5555555555554444",
            "2223003122003222",
            "378282246310005",
            "6011111111111117",
            "3530111333300000",
            "30569309025904",
            "6200000000000005",
            "6759649826438453",
            "2200000000000004",
        ] {
            assert!(luhn(good.as_bytes()), "{good} passes Luhn");
            assert!(known_iin(good.as_bytes()), "{good} is in a known range");
        }
        assert!(!known_iin(b"9111111111111111"));
        assert!(!known_iin(b"41111111111111111"), "Visa is 13, 16 or 19 digits");
        assert!(!known_iin(b"3782822463100050"), "Amex is 15 digits");
    }

    #[test]
    fn compact_and_grouped() {
        assert_eq!(cards("card 4111111111111111 ok"), ["4111111111111111"]);
        assert_eq!(cards("card 4111 1111 1111 1111."), ["4111 1111 1111 1111"]);
        assert_eq!(cards("card 4111-1111-1111-1111"), ["4111-1111-1111-1111"]);
        assert_eq!(cards("amex 3782 822463 10005;"), ["3782 822463 10005"]);
        assert_eq!(cards("diners 3056 930902 5904"), ["3056 930902 5904"]);
        assert_eq!(
            cards(r#"{"card":"5555555555554444","n":5555555555554444}"#),
            ["5555555555554444", "5555555555554444"]
        );
        assert_eq!(cards("é4111111111111111ü"), ["4111111111111111"]);
        assert_eq!(cards("line\\n4111111111111111"), ["4111111111111111"], "after a JSON escape");
    }

    #[test]
    fn near_misses() {
        assert!(cards("order 4111111111111112").is_empty(), "fails Luhn");
        assert!(cards("id 41111111111111110000").is_empty(), "20+ digits");
        assert!(cards("id 41111111111111111").is_empty(), "17-digit Visa");
        assert!(cards("id 4111111111111111x").is_empty());
        assert!(cards("id x4111111111111111").is_empty());
        assert!(cards("id 9111111111111111").is_empty(), "unknown range");
        assert!(cards("0.4111111111111111").is_empty(), "a fraction");
        assert!(cards("4111111111111111.25").is_empty(), "an amount");
        assert!(cards("4111 1111 1111 1111 1111").is_empty(), "a longer grouped run");
        assert!(cards("4111 1111-1111 1111").is_empty(), "mixed separators");
        assert!(cards("4111  1111 1111 1111").is_empty(), "double space");
        assert!(cards("1234 4111 1111 1111 1111").is_empty(), "inside a longer grouped run");
        assert!(cards("41111 11111 111111").is_empty(), "unknown grouping");
    }
}
