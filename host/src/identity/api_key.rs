//! API keys, configured only as SHA-256 hashes.
//!
//! A presented key is hashed and the hash looked up in a map. Nothing secret is compared:
//! the configuration never holds the keys, and how long a lookup takes can at most tell
//! an attacker something about the hash of the key *they* sent, which they already know.
//! Keys are random strings of high entropy, so an unsalted fast hash is appropriate (unlike
//! passwords, they cannot be guessed from a dictionary).

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::{ApiKeyConfig, AuthError, IdentityConfigError, check_entry, dedup_scopes};
use crate::exchange::Principal;

/// The configured keys, by SHA-256.
#[derive(Debug, Clone, Default)]
pub(crate) struct ApiKeys {
    by_hash: HashMap<[u8; 32], Principal>,
}

impl ApiKeys {
    pub(crate) fn new(configs: &[ApiKeyConfig]) -> Result<ApiKeys, IdentityConfigError> {
        let mut by_hash = HashMap::new();
        let mut names = HashMap::new();
        for (i, config) in configs.iter().enumerate() {
            let at = format!("identity.api_keys[{i}]");
            check_entry("api_keys", i, &mut names, (&config.name, &config.id, config.kind))?;
            let hash = parse_sha256(&config.sha256).map_err(|m| IdentityConfigError::new(format!("{at}.sha256"), m))?;
            let principal = Principal {
                kind: config.kind,
                id: config.id.clone(),
                scopes: dedup_scopes(config.scopes.iter().cloned()),
                claims: config.claims.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                on_behalf_of: config.on_behalf_of.clone(),
                credential_id: Some(config.name.clone()),
            };
            if by_hash.insert(hash, principal).is_some() {
                return Err(IdentityConfigError::new(format!("{at}.sha256"), "the same key hash is configured twice"));
            }
        }
        Ok(ApiKeys { by_hash })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// The principal for a presented key.
    pub(crate) fn lookup(&self, key: &str) -> Result<Principal, AuthError> {
        let hash: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        self.by_hash.get(&hash).cloned().ok_or(AuthError::UnknownApiKey)
    }
}

/// Parses 64 hex digits, optionally prefixed `sha256:`.
fn parse_sha256(text: &str) -> Result<[u8; 32], String> {
    let hex = text.trim();
    let hex = hex.strip_prefix("sha256:").unwrap_or(hex);
    let bad = || format!("expected 64 hex digits (`printf %s KEY | sha256sum`), got {}", super::quoted(hex));
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hex_hashes_with_or_without_prefix() {
        let hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let plain = parse_sha256(hex).unwrap();
        assert_eq!(plain[0], 0x9f);
        assert_eq!(parse_sha256(&format!("sha256:{}", hex.to_uppercase())).unwrap(), plain);
        assert!(parse_sha256("abc").unwrap_err().contains("64 hex digits"));
        assert!(parse_sha256(&"zz".repeat(32)).is_err());
        // Multi-byte characters must not panic the slicing.
        assert!(parse_sha256(&format!("a{}a", "é".repeat(31))).is_err());
    }
}
