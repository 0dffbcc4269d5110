//! Detectors by value: find card numbers, IBANs, e-mail addresses, phone numbers, JWTs and
//! high-confidence secrets in free text or whole values, at native speed.
//!
//! Skeleton: the API is fixed; the scanners are being filled in.

/// One kind of value the host recognises by its shape (and check digits where it has them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Detector {
    /// Payment card numbers (Luhn, known IIN ranges).
    CardNumber,
    /// International bank account numbers (per-country length, mod-97).
    Iban,
    /// E-mail addresses.
    Email,
    /// Phone numbers in a documented set of formats.
    Phone,
    /// JSON Web Tokens.
    Jwt,
    /// High-confidence secret shapes (cloud, payment-provider and VCS keys, private keys).
    Secret,
}

impl Detector {
    /// Every detector, in a fixed order.
    pub const ALL: [Detector; 6] =
        [Detector::CardNumber, Detector::Iban, Detector::Email, Detector::Phone, Detector::Jwt, Detector::Secret];

    /// The detector's name as used in settings and config.
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

    /// The detector with this name, if any.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Detector> {
        Detector::ALL.into_iter().find(|d| d.name() == name)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
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

/// Every finding of the detectors in `set` in `text`, sorted by start and non-overlapping.
#[must_use]
pub fn find(text: &str, set: DetectorSet) -> Vec<Finding> {
    let mut out = Vec::new();
    find_into(text, set, &mut out);
    out
}

/// Like [`find`], appending to `out` (cleared first); allocates nothing when nothing is found.
pub fn find_into(text: &str, set: DetectorSet, out: &mut Vec<Finding>) {
    out.clear();
    let _ = (text, set);
}
