//! Detectors by value: find card numbers, IBANs, e-mail addresses, phone numbers, JWTs and
//! high-confidence secrets in free text (a note, a description, a raw JSON body) or in whole
//! values, at native speed, so the host can mask data no policy author could list by field
//! name in advance.
//!
//! One pass over the bytes, no regular expressions: the scanner walks the text word by word
//! (a word is a run of ASCII letters, digits and `_`) and only looks closer where a value can
//! begin: at a word that starts with a digit (cards, phones, `+` and `(` just before it),
//! with two capital letters and two digits (IBANs), with a known secret prefix (`AKIA`,
//! `ghp_`, `sk_live_`, …) or with `eyJ` (JWTs), and at an `@` (e-mail) or a `-----BEGIN`
//! (private keys). Everything else costs a table lookup per byte.
//!
//! # What each detector matches
//!
//! The exact rules, and what is deliberately *not* detected, are documented on each module:
//! [`card`] (Luhn and known IIN ranges), [`iban`] (per-country length, mod-97), [`email`],
//! [`phone`] (E.164 with `+`, North American formats), [`jwt`] (a header that decodes to
//! JSON with `"alg"`) and [`secret`] (cloud, payment-provider, VCS and chat tokens, private
//! key blocks). docs/minimisation.md gives the false positive and false negative rates on
//! the labelled corpus in host/tests/data/detect/.
//!
//! # Boundaries and offsets
//!
//! A value is only found where it starts and ends at a word boundary: `x4111111111111111`
//! and `4111111111111111x` are not cards, and a digit-based value is not found inside a
//! longer run of digits (a 20-digit id, `12.4111…`, `1-2-…` groupings). A JSON string
//! escape (`\n`, `\t`, `\"`, `\u00e9`, …) counts as a separator, so a value right after an
//! escaped line break in a raw JSON body is found. Every detector matches ASCII only, so
//! `start` and `end` always fall on char boundaries, whatever UTF-8 surrounds the value.
//!
//! # Overlaps
//!
//! Findings are returned sorted by `start` and never overlap. Where two candidates overlap
//! (a card number inside an e-mail's local part, a phone-shaped run inside a JWT), the
//! longer one wins; of two of the same length, the more specific one, in the order secret,
//! JWT, IBAN, card number, e-mail, phone.

pub mod card;
pub mod email;
pub mod iban;
pub mod jwt;
pub mod phone;
pub mod secret;

/// One kind of value the host recognises by its shape (and check digits where it has them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Detector {
    /// Payment card numbers (Luhn, known IIN ranges): [`card`].
    CardNumber,
    /// International bank account numbers (per-country length, mod-97): [`iban`].
    Iban,
    /// E-mail addresses: [`email`].
    Email,
    /// Phone numbers in a documented set of formats: [`phone`].
    Phone,
    /// JSON Web Tokens (JWS and JWE compact serialisations): [`jwt`].
    Jwt,
    /// High-confidence secret shapes (cloud, payment-provider and VCS keys, private keys):
    /// [`secret`].
    Secret,
}

impl Detector {
    /// Every detector, in a fixed order.
    pub const ALL: [Detector; 6] =
        [Detector::CardNumber, Detector::Iban, Detector::Email, Detector::Phone, Detector::Jwt, Detector::Secret];

    /// The detector's name as used in settings and config: `card-number`, `iban`, `email`,
    /// `phone`, `jwt`, `secret`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Detector::CardNumber => "card-number",
            Detector::Iban => "iban",
            Detector::Email => "email",
            Detector::Phone => "phone",
            Detector::Jwt => "jwt",
            Detector::Secret => "secret",
        }
    }

    /// The detector with this name (exactly as [`Detector::name`] spells it), if any.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Detector> {
        Detector::ALL.into_iter().find(|d| d.name() == name)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// Rank among candidates of the same length: lower wins.
    fn specificity(self) -> u8 {
        match self {
            Detector::Secret => 0,
            Detector::Jwt => 1,
            Detector::Iban => 2,
            Detector::CardNumber => 3,
            Detector::Email => 4,
            Detector::Phone => 5,
        }
    }
}

impl std::fmt::Display for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of detectors (a bit set; `Default` is empty).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DetectorSet(u8);

impl DetectorSet {
    /// The set of these detectors.
    #[must_use]
    pub fn of(detectors: &[Detector]) -> DetectorSet {
        let mut set = DetectorSet::default();
        for &d in detectors {
            set.insert(d);
        }
        set
    }

    /// Every detector.
    #[must_use]
    pub fn all() -> DetectorSet {
        DetectorSet::of(&Detector::ALL)
    }

    /// Whether `detector` is in the set.
    #[must_use]
    pub fn contains(self, detector: Detector) -> bool {
        self.0 & detector.bit() != 0
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Adds `detector` to the set.
    pub fn insert(&mut self, detector: Detector) {
        self.0 |= detector.bit();
    }
}

/// One match: `text[start..end]` is the detected value (offsets on char boundaries).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Which detector matched.
    pub detector: Detector,
    /// Byte offset of the first byte of the value.
    pub start: usize,
    /// Byte offset one past the last byte of the value.
    pub end: usize,
}

impl Finding {
    fn len(&self) -> usize {
        self.end - self.start
    }
}

/// Every finding of the detectors in `set` in `text`, sorted by start and non-overlapping
/// (see the module docs for how overlaps are settled).
#[must_use]
pub fn find(text: &str, set: DetectorSet) -> Vec<Finding> {
    let mut out = Vec::new();
    find_into(text, set, &mut out);
    out
}

/// Like [`find`], into `out` (cleared first, so a caller can reuse one buffer): allocates
/// nothing when nothing is found.
pub fn find_into(text: &str, set: DetectorSet, out: &mut Vec<Finding>) {
    out.clear();
    if set.is_empty() {
        return;
    }
    Scanner { b: text.as_bytes(), set, out }.run();
    settle_overlaps(out);
}

/// ASCII letters, digits and `_`: the bytes a word is made of.
static WORD: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = c.is_ascii_alphanumeric() || c == b'_';
        i += 1;
    }
    t
};

/// [`CLASS`] bits: a word byte; a word byte a value can start with; a byte between words
/// that needs a look (`@`, `-`, `\\`).
const WORD_BYTE: u8 = 1;
const STARTS: u8 = 2;
const SPECIAL: u8 = 4;

/// The scanner's byte classes, so that it skips most bytes with one lookup.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        if WORD[i] {
            t[i] = WORD_BYTE;
        }
        if c.is_ascii_digit() || c.is_ascii_uppercase() || matches!(c, b'e' | b'g' | b's' | b'r' | b'x' | b'w') {
            t[i] |= STARTS;
        }
        if matches!(c, b'@' | b'-' | b'\\') {
            t[i] = SPECIAL;
        }
        i += 1;
    }
    t
};

#[inline]
pub(crate) fn is_word(b: u8) -> bool {
    WORD[b as usize]
}

/// The byte at `i`, or 0 past either end (0 is no detector's byte).
#[inline]
pub(crate) fn byte(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

/// The byte before `i`, or 0 at the start.
#[inline]
pub(crate) fn before(b: &[u8], i: usize) -> u8 {
    if i == 0 { 0 } else { b[i - 1] }
}

/// Whether a JSON string escape (`\n`, `\t`, `\b`, `\f`, `\r`, `\uXXXX`) ends just before
/// `i`, its backslash not itself escaped: the letter or hex digits it ends with are not part
/// of the word after it.
pub(crate) fn escape_ends_at(b: &[u8], i: usize) -> bool {
    let unescaped_backslash = |k: usize| {
        let mut run = 0;
        while k >= run && b[k - run] == b'\\' {
            run += 1;
            if run > k {
                break;
            }
        }
        run % 2 == 1
    };
    (i >= 2 && matches!(b[i - 1], b'b' | b'f' | b'n' | b'r' | b't') && b[i - 2] == b'\\' && unescaped_backslash(i - 2))
        || (i >= 6
            && b[i - 6] == b'\\'
            && b[i - 5] == b'u'
            && b[i - 4..i].iter().all(u8::is_ascii_hexdigit)
            && unescaped_backslash(i - 6))
}

/// Whether a value may start at `i`: the start of the text, a byte that is not a word byte
/// (see [`is_word`]) before it, or a JSON escape.
pub(crate) fn boundary_before(b: &[u8], i: usize) -> bool {
    !is_word(before(b, i)) || escape_ends_at(b, i)
}

/// Whether the digit run starting at `i` continues a longer number: a digit, or a digit and
/// `.` or `-` just before it (`12.4111…`, `1234-4111…`), or a space after a run of fewer than
/// 13 digits (`1234 4111 …`).
pub(crate) fn continues_number(b: &[u8], i: usize) -> bool {
    let p = before(b, i);
    if p.is_ascii_digit() && !escape_ends_at(b, i) {
        return true;
    }
    if i < 2 || !b[i - 2].is_ascii_digit() {
        return false;
    }
    match p {
        b'.' | b'-' => true,
        // After a space, only a short run is a group of the same number (`1234 4111 …`); a
        // long one is a number of its own, as in a list of card numbers.
        b' ' => b[..i - 1].iter().rev().take_while(|c| c.is_ascii_digit()).take(13).count() < 13,
        _ => false,
    }
}

/// Whether a digit-based value ending at `end` is followed by more of a number: a letter or
/// digit, or `.`/`-` and a digit (`4111….5`).
pub(crate) fn number_goes_on(b: &[u8], end: usize) -> bool {
    let n = byte(b, end);
    is_word(n) || (matches!(n, b'.' | b'-') && byte(b, end + 1).is_ascii_digit())
}

struct Scanner<'a> {
    b: &'a [u8],
    set: DetectorSet,
    out: &'a mut Vec<Finding>,
}

impl Scanner<'_> {
    fn run(&mut self) {
        let b = self.b;
        let n = b.len();
        let mut i = 0;
        // The end of the last e-mail found: the next one's local part cannot reach back past it.
        let mut email_floor = 0;
        // No private key's END line starts before this (see `secret::private_key`).
        let mut pem_no_end_before = 0;
        while i < n {
            let class = CLASS[b[i] as usize];
            if class == 0 {
                // Between words, nothing to look at: skip the run.
                i += 1;
                while i < n && CLASS[b[i] as usize] == 0 {
                    i += 1;
                }
                continue;
            }
            if class & SPECIAL != 0 {
                match b[i] {
                    b'@' if self.set.contains(Detector::Email) => {
                        if let Some((s, e)) = email::at_sign(b, i, email_floor) {
                            self.push(Detector::Email, s, e);
                            email_floor = e;
                            i = e;
                            continue;
                        }
                    }
                    b'-' if self.set.contains(Detector::Secret) && b[i..].starts_with(b"-----BEGIN ") => {
                        if let Some(e) = secret::private_key(b, i, &mut pem_no_end_before) {
                            self.push(Detector::Secret, i, e);
                            i = e;
                            continue;
                        }
                    }
                    b'\\' => {
                        // A JSON escape: its letter never starts a word.
                        i += escape_len(b, i);
                        continue;
                    }
                    _ => {}
                }
                i += 1;
                continue;
            }
            // A word starts at `i`: look closer only if a value can start with its first byte.
            if class & STARTS != 0
                && let Some((d, s, e)) = self.word_start(i)
            {
                self.push(d, s, e);
                i = e;
                continue;
            }
            i += 1;
            while i < n && is_word(b[i]) {
                i += 1;
            }
        }
    }

    /// The value starting at the word that starts at `i` (or just before it: `+`, `(`).
    fn word_start(&self, i: usize) -> Option<(Detector, usize, usize)> {
        let b = self.b;
        let set = self.set;
        match b[i] {
            b'0'..=b'9' => {
                if continues_number(b, i) {
                    return None;
                }
                if set.contains(Detector::Phone)
                    && let Some((s, e)) = phone::at_digit(b, i)
                {
                    return Some((Detector::Phone, s, e));
                }
                if set.contains(Detector::CardNumber)
                    && let Some(e) = card::at(b, i)
                {
                    return Some((Detector::CardNumber, i, e));
                }
                None
            }
            b'A'..=b'Z' => {
                if set.contains(Detector::Secret)
                    && let Some(e) = secret::at(b, i)
                {
                    return Some((Detector::Secret, i, e));
                }
                if set.contains(Detector::Iban)
                    && let Some(e) = iban::at(b, i)
                {
                    return Some((Detector::Iban, i, e));
                }
                None
            }
            b'e' => {
                if set.contains(Detector::Jwt)
                    && let Some(e) = jwt::at(b, i)
                {
                    return Some((Detector::Jwt, i, e));
                }
                None
            }
            b'g' | b's' | b'r' | b'x' | b'w' => {
                if set.contains(Detector::Secret)
                    && let Some(e) = secret::at(b, i)
                {
                    return Some((Detector::Secret, i, e));
                }
                None
            }
            _ => None,
        }
    }

    fn push(&mut self, detector: Detector, start: usize, end: usize) {
        self.out.push(Finding { detector, start, end });
    }
}

/// The length of the JSON string escape at `i` (a backslash): `\uXXXX` is 6 bytes, any
/// other escape 2, so the escaped character never glues onto the word after it.
pub(crate) fn escape_len(b: &[u8], i: usize) -> usize {
    if byte(b, i + 1) == b'u' && b.len() >= i + 6 && b[i + 2..i + 6].iter().all(u8::is_ascii_hexdigit) {
        6
    } else if i + 1 < b.len() && b[i + 1].is_ascii() {
        2
    } else {
        1
    }
}

/// Sorts by start and drops the losers of overlaps: the longer finding wins, then the more
/// specific detector.
fn settle_overlaps(out: &mut Vec<Finding>) {
    if out.len() < 2 {
        return;
    }
    out.sort_unstable_by_key(|f| (f.start, std::cmp::Reverse(f.end), f.detector.specificity()));
    let mut kept = 0;
    for j in 1..out.len() {
        let f = out[j];
        let last = out[kept];
        if f.start < last.end {
            let wins = f.len() > last.len()
                || (f.len() == last.len() && f.detector.specificity() < last.detector.specificity());
            if wins {
                out[kept] = f;
            }
        } else {
            kept += 1;
            out[kept] = f;
        }
    }
    out.truncate(kept + 1);
}

#[cfg(test)]
mod tests;
