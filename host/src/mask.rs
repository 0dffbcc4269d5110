//! Masks: how the host rewrites a value while keeping a little of its shape (contract 0.2's
//! `mask` action). The redaction applier ([`crate::redact`]) calls [`apply`] for JSON string
//! values, numbers, header and query values, and the spans detectors find in free text.
//!
//! Masks count characters (Unicode scalar values), never bytes, so a mask never splits a
//! multi-byte character and never reveals a length in bytes that differs from what it shows.
//!
//! The keyed pseudonym needs a secret key, configured once for the process in
//! `[redaction]` (`pseudonym_key_env` or `pseudonym_key_file`, see
//! [`crate::config::RedactionSection`]) and installed with [`set_pseudonym_key`]. Without a
//! key a pseudonym cannot be computed, and the applier refuses the message
//! ([`crate::redact::RedactError::NoPseudonymKey`]) rather than pass the value on.

use std::sync::{Arc, RwLock};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::decision::Mask;

/// The fewest bytes a pseudonym key may have.
pub const MIN_PSEUDONYM_KEY_BYTES: usize = 16;

/// The most `*` a `fixed-length` mask writes: a policy cannot make the host allocate
/// gigabytes by asking for `fixed-length(4294967295)`. Longer requests write this many.
pub const MAX_FIXED_LENGTH: u32 = 256;

/// What replaces a JSON value that is neither a string nor a number (an object, an array,
/// `true`, `false`, `null`) under `keep-last` and `keep-email-domain`.
pub(crate) const NON_SCALAR: &str = "****";

/// The prefix of every pseudonym, so that a reader can tell one from a real value.
pub const PSEUDONYM_PREFIX: &str = "pn_";

/// The secret key of keyed pseudonyms. Its bytes never appear in `Debug` output or logs.
#[derive(Clone)]
pub struct PseudonymKey(Arc<[u8]>);

impl std::fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PseudonymKey({} bytes)", self.0.len())
    }
}

impl PseudonymKey {
    /// A key from its bytes; `None` when it has fewer than [`MIN_PSEUDONYM_KEY_BYTES`].
    pub fn new(bytes: &[u8]) -> Option<PseudonymKey> {
        (bytes.len() >= MIN_PSEUDONYM_KEY_BYTES).then(|| PseudonymKey(bytes.into()))
    }

    /// The pseudonym of `value`: `pn_` and the first 16 bytes of HMAC-SHA256(key, value) in
    /// lower-case base32 without padding (26 characters).
    pub fn pseudonym(&self, value: &str) -> String {
        // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(PSEUDONYM_PREFIX.len() + 26);
        out.push_str(PSEUDONYM_PREFIX);
        base32_lower(&digest[..16], &mut out);
        out
    }
}

/// RFC 4648 base32, lower case, no padding.
fn base32_lower(bytes: &[u8], out: &mut String) {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
}

/// The key installed for this process, if any.
static KEY: RwLock<Option<PseudonymKey>> = RwLock::new(None);

/// Installs (or, with `None`, removes) the process's pseudonym key. The configuration loader
/// calls this with the `[redaction]` key; embedders that build a policy set without a config
/// file call it themselves. The last call wins: one process serves one configuration.
pub fn set_pseudonym_key(key: Option<PseudonymKey>) {
    *KEY.write().unwrap_or_else(std::sync::PoisonError::into_inner) = key;
}

/// The installed key, if any.
pub fn pseudonym_key() -> Option<PseudonymKey> {
    KEY.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
}

/// `value` under `mask`. A pseudonym needs `key`; the applier checks that there is one before
/// it changes anything, so here a missing key gives an all-`*` value (never the value).
pub fn apply(value: &str, mask: Mask, key: Option<&PseudonymKey>) -> String {
    match mask {
        Mask::KeepLast(n) => {
            let count = value.chars().count();
            let keep = n as usize;
            if count <= keep {
                return "*".repeat(count);
            }
            let cut = value.char_indices().nth(count - keep).map_or(value.len(), |(at, _)| at);
            let mut out = "*".repeat(count - keep);
            out.push_str(&value[cut..]);
            out
        }
        Mask::KeepEmailDomain => match value.rfind('@') {
            Some(at) => {
                let mut out = "*".repeat(value[..at].chars().count());
                out.push_str(&value[at..]);
                out
            }
            None => "*".repeat(value.chars().count()),
        },
        Mask::FixedLength(n) => "*".repeat(n.min(MAX_FIXED_LENGTH) as usize),
        Mask::Pseudonym => match key {
            Some(key) => key.pseudonym(value),
            None => "*".repeat(value.chars().count()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_last_counts_characters_not_bytes() {
        assert_eq!(apply("4111111111111111", Mask::KeepLast(4), None), "************1111");
        assert_eq!(apply("ünïcødé", Mask::KeepLast(2), None), "*****dé");
        assert_eq!(apply("1234", Mask::KeepLast(4), None), "****", "nothing kept when nothing would be hidden");
        assert_eq!(apply("12", Mask::KeepLast(4), None), "**");
        assert_eq!(apply("", Mask::KeepLast(4), None), "");
        assert_eq!(apply("abc", Mask::KeepLast(0), None), "***");
    }

    #[test]
    fn email_domain_is_kept() {
        assert_eq!(apply("alice@example.com", Mask::KeepEmailDomain, None), "*****@example.com");
        assert_eq!(apply("zoë@exämple.org", Mask::KeepEmailDomain, None), "***@exämple.org");
        assert_eq!(apply("not-an-address", Mask::KeepEmailDomain, None), "**************");
    }

    #[test]
    fn fixed_length_hides_the_length_and_is_bounded() {
        assert_eq!(apply("a", Mask::FixedLength(6), None), "******");
        assert_eq!(apply("a much longer value", Mask::FixedLength(6), None), "******");
        assert_eq!(apply("x", Mask::FixedLength(u32::MAX), None).len(), MAX_FIXED_LENGTH as usize);
    }

    #[test]
    fn pseudonyms_are_keyed_stable_and_shaped() {
        assert!(PseudonymKey::new(b"too short").is_none());
        let key = PseudonymKey::new(b"0123456789abcdef-key").unwrap();
        let other = PseudonymKey::new(b"another key of 16+ bytes").unwrap();
        let a = apply("alice@example.com", Mask::Pseudonym, Some(&key));
        assert_eq!(a, apply("alice@example.com", Mask::Pseudonym, Some(&key)), "same input, same output");
        assert_ne!(a, apply("bob@example.com", Mask::Pseudonym, Some(&key)));
        assert_ne!(a, apply("alice@example.com", Mask::Pseudonym, Some(&other)), "the key matters");
        assert!(a.starts_with("pn_") && a.len() == 3 + 26, "{a}");
        assert!(a[3..].bytes().all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)), "{a}");
        assert!(!format!("{key:?}").contains("0123"), "the key never shows in Debug");
        // Without a key nothing of the value leaks.
        assert_eq!(apply("secret", Mask::Pseudonym, None), "******");
    }

    #[test]
    fn base32_matches_rfc4648() {
        let enc = |b: &[u8]| {
            let mut s = String::new();
            base32_lower(b, &mut s);
            s
        };
        assert_eq!(enc(b"f"), "my");
        assert_eq!(enc(b"fooba"), "mzxw6ytb");
        assert_eq!(enc(b"foobar"), "mzxw6ytboi");
    }
}
