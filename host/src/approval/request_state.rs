//! The MCP door's `requestState`: an approval carried through the client, sealed so it cannot
//! be forged, moved to another caller or request, or used after it lapses.
//!
//! In MCP's 2026-07-28 revision a server that needs input answers with an
//! `InputRequiredResult` carrying an opaque `requestState`, and the client echoes it on its
//! retry. For Portcullis that state says "this retry redeems approval X": it influences
//! authorisation, so the specification requires integrity protection and asks that the state
//! name the principal, the originating request and an expiry, each verified on receipt. This
//! module seals and opens exactly that ([`StatePayload`]) with HMAC-SHA256. It does not make a
//! state single-use: the approval store does, when the retry redeems the approval it names.
//!
//! # Format
//!
//! `pcs1.<kid>.<payload>.<mac>`, where `pcs1` is the format version, `<kid>` the id of the key
//! that sealed it (`[A-Za-z0-9_-]{1,32}`), `<payload>` the base64url (no padding) of the
//! payload's JSON, and `<mac>` the base64url (no padding) HMAC-SHA256, under that key, of the
//! ASCII text `pcs1.<kid>.<payload>` (so the version and the key id are covered too). The
//! payload is signed, not encrypted: the client can read the approval id, the principal's id
//! and the digest, which are its own (the approval id is also in the elicitation URL).
//!
//! # Keys
//!
//! A [`KeyRing`] holds keys with ids; the first seals, every one opens, so a key is rotated by
//! putting the new one first and dropping the old one once the states it sealed have expired.
//! Keys come from environment variables or files ([`KeyRing::from_config`]: at least 32 bytes,
//! hex or base64) or are drawn at random per process ([`KeyRing::ephemeral`]): then a restart,
//! or another replica, cannot open the states this process sealed, and those clients must send
//! their request again to get a new approval.
//!
//! # Digests
//!
//! A state binds a call by [`call_digest`]: the method, the tool or prompt name (or resource
//! URI) and the [canonical JSON](canonical_json) of the arguments, so a retry with other
//! arguments does not redeem it. [`canonical_digest`] is the same canonical form for any JSON
//! value (the pinned tool definitions use it too).

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::exchange::{Principal, PrincipalKind};

/// The format tag every sealed state starts with.
pub const FORMAT: &str = "pcs1";
/// The fewest key bytes accepted: HMAC-SHA256's own strength.
pub const MIN_KEY_BYTES: usize = 32;
/// The longest state opened (or sealed): an upstream's own state is carried inside, so this
/// bounds what a client can make the door decode.
pub const MAX_STATE_CHARS: usize = 16 * 1024;
/// The longest key id.
pub const MAX_KEY_ID_CHARS: usize = 32;

/// Tags [`call_digest`]'s encoding, so a later change of what it covers never collides.
const CALL_DIGEST_DOMAIN: &[u8] = b"portcullis-request-state-call/v1";

type HmacSha256 = Hmac<Sha256>;

/// What a sealed state says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatePayload {
    /// The approval the retry redeems.
    pub approval_id: String,
    /// Who may present it.
    pub principal: StatePrincipal,
    /// The call it is for ([`call_digest`]).
    pub digest: String,
    /// When it lapses, in ms since the Unix epoch.
    pub expires_ms: u64,
    /// An upstream server's own `requestState`, carried through unchanged (the door hands it
    /// back to the upstream on the retry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inner: Option<String>,
}

/// The part of a principal a state is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatePrincipal {
    /// The kind of caller.
    pub kind: PrincipalKind,
    /// Its stable id.
    pub id: String,
    /// The user it acts for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
}

impl StatePrincipal {
    /// The binding of an authenticated principal (its scopes, claims and credential are not
    /// bound: a renewed token must still redeem the state).
    pub fn of(principal: &Principal) -> StatePrincipal {
        StatePrincipal { kind: principal.kind, id: principal.id.clone(), on_behalf_of: principal.on_behalf_of.clone() }
    }
}

/// Why a state could not be sealed or opened. Every message is safe to show the client: none
/// quotes the state's contents or names a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Not of the form `pcs1.<kid>.<payload>.<mac>`, or its parts do not decode.
    #[error("the requestState is not one this server issued")]
    Malformed,
    /// Longer than [`MAX_STATE_CHARS`].
    #[error("the requestState is too long")]
    TooLarge,
    /// A later (or unknown) format version.
    #[error("the requestState is in a format this server does not read")]
    UnsupportedVersion,
    /// Sealed with a key the ring does not hold (rotated out, another deployment's, or an
    /// ephemeral key of an earlier process).
    #[error("the requestState was sealed with a key this server no longer has; send the request again without it")]
    UnknownKey,
    /// The MAC does not verify: the state was altered or forged.
    #[error("the requestState failed its integrity check")]
    BadMac,
    /// Past its expiry.
    #[error("the requestState has expired; send the request again without it")]
    Expired,
    /// Presented by a caller other than the one it was issued to.
    #[error("the requestState was issued to another caller")]
    WrongPrincipal,
    /// Presented on a call other than the one it was issued for (method, name or arguments).
    #[error("the requestState was issued for a different call (method, name or arguments differ)")]
    WrongRequest,
}

/// One key: an id and at least [`MIN_KEY_BYTES`] secret bytes. Its `Debug` never shows them.
#[derive(Clone)]
pub struct Key {
    id: String,
    secret: Vec<u8>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key").field("id", &self.id).field("secret", &"<redacted>").finish()
    }
}

impl Key {
    /// A key from its id and secret bytes.
    pub fn new(id: impl Into<String>, secret: Vec<u8>) -> Result<Key, KeyError> {
        let id = id.into();
        check_key_id(&id)?;
        if secret.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort { id, from: "the caller".into(), len: secret.len() });
        }
        Ok(Key { id, secret })
    }

    /// The key's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes a key of any length, so this cannot fail.
        HmacSha256::new_from_slice(&self.secret).expect("HMAC accepts keys of any length")
    }
}

fn check_key_id(id: &str) -> Result<(), KeyError> {
    let valid = !id.is_empty()
        && id.len() <= MAX_KEY_ID_CHARS
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid { Ok(()) } else { Err(KeyError::BadId { id: id.chars().take(64).collect() }) }
}

/// Where a configured key's secret is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// An environment variable holding the secret (hex or base64).
    Env {
        /// The key's id.
        id: String,
        /// The variable's name.
        var: String,
    },
    /// A file holding the secret (hex or base64; surrounding whitespace ignored).
    File {
        /// The key's id.
        id: String,
        /// The file.
        path: PathBuf,
    },
}

impl KeySource {
    fn id(&self) -> &str {
        match self {
            KeySource::Env { id, .. } | KeySource::File { id, .. } => id,
        }
    }

    fn describe(&self) -> String {
        match self {
            KeySource::Env { var, .. } => format!("environment variable {var}"),
            KeySource::File { path, .. } => format!("file {}", path.display()),
        }
    }
}

/// Why the key ring could not be built. Messages name the key and where it was read from,
/// never its value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// No key at all.
    #[error("no requestState key is configured")]
    NoKeys,
    /// An id that is empty, too long, or not `[A-Za-z0-9_-]`.
    #[error("requestState key id `{id}` must be 1 to 32 letters, digits, `-` or `_`")]
    BadId {
        /// The id (at most 64 characters of it).
        id: String,
    },
    /// Two keys with one id.
    #[error("requestState key id `{id}` is used twice")]
    DuplicateId {
        /// The id.
        id: String,
    },
    /// The environment variable is not set (or not Unicode).
    #[error("requestState key `{id}`: environment variable {var} is not set")]
    EnvMissing {
        /// The key's id.
        id: String,
        /// The variable.
        var: String,
    },
    /// The file cannot be read.
    #[error("requestState key `{id}`: cannot read {}", path.display())]
    File {
        /// The key's id.
        id: String,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Neither hex nor base64.
    #[error("requestState key `{id}` ({from}) is neither hex nor base64")]
    NotEncoded {
        /// The key's id.
        id: String,
        /// Where it was read from.
        from: String,
    },
    /// Fewer than [`MIN_KEY_BYTES`] bytes.
    #[error(
        "requestState key `{id}` ({from}) has {len} bytes; at least 32 are needed (e.g. the output of `openssl rand \
         -hex 32`)"
    )]
    TooShort {
        /// The key's id.
        id: String,
        /// Where it was read from.
        from: String,
        /// How many bytes it has.
        len: usize,
    },
    /// The operating system's random generator failed.
    #[error("cannot draw a random requestState key")]
    Random(#[source] getrandom::Error),
}

/// The keys that seal and open states: the first seals, all open.
#[derive(Debug, Clone)]
pub struct KeyRing {
    keys: Vec<Key>,
    ephemeral: bool,
}

impl KeyRing {
    /// A ring of `keys`, the first sealing. Ids must be unique.
    pub fn new(keys: Vec<Key>) -> Result<KeyRing, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::NoKeys);
        }
        for (i, key) in keys.iter().enumerate() {
            if keys[..i].iter().any(|k| k.id == key.id) {
                return Err(KeyError::DuplicateId { id: key.id.clone() });
            }
        }
        Ok(KeyRing { keys, ephemeral: false })
    }

    /// Reads the keys from their sources, in order (the first seals).
    pub fn from_config(sources: &[KeySource]) -> Result<KeyRing, KeyError> {
        let keys = sources.iter().map(read_key).collect::<Result<Vec<_>, _>>()?;
        KeyRing::new(keys)
    }

    /// One random key for this process only (id `ephemeral`). States it seals cannot be
    /// opened after a restart or by another replica: fine for one machine where an approval
    /// interrupted by a restart is simply asked for again; configure keys for replicas.
    pub fn ephemeral() -> Result<KeyRing, KeyError> {
        let mut secret = vec![0u8; MIN_KEY_BYTES];
        getrandom::getrandom(&mut secret).map_err(KeyError::Random)?;
        Ok(KeyRing { keys: vec![Key { id: "ephemeral".into(), secret }], ephemeral: true })
    }

    /// Whether the ring is [`ephemeral`](KeyRing::ephemeral).
    pub fn is_ephemeral(&self) -> bool {
        self.ephemeral
    }

    /// The ids of the keys, the sealing one first.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(Key::id)
    }

    /// Seals a payload with the first key. Refused only when the result would exceed
    /// [`MAX_STATE_CHARS`] (an upstream's state too large to carry).
    pub fn seal(&self, payload: &StatePayload) -> Result<String, StateError> {
        let key = &self.keys[0];
        let json = serde_json::to_vec(payload).map_err(|_| StateError::Malformed)?;
        let mut token = format!("{FORMAT}.{}.{}", key.id, URL_SAFE_NO_PAD.encode(json));
        let mut mac = key.mac();
        mac.update(token.as_bytes());
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()));
        if token.len() > MAX_STATE_CHARS {
            return Err(StateError::TooLarge);
        }
        Ok(token)
    }

    /// Opens a state presented by `principal` on the call whose [`call_digest`] is `digest`,
    /// at `now_ms`. Checks, in order: the form and size, the version, the key id, the MAC
    /// (in constant time), then the expiry, the principal and the call; the first failure is
    /// the error. Nothing in the payload is read before its MAC verifies.
    pub fn open(
        &self,
        token: &str,
        principal: &StatePrincipal,
        digest: &str,
        now_ms: u64,
    ) -> Result<StatePayload, StateError> {
        if token.len() > MAX_STATE_CHARS {
            return Err(StateError::TooLarge);
        }
        let (signed, mac) = token.rsplit_once('.').ok_or(StateError::Malformed)?;
        let mut parts = signed.split('.');
        let (Some(version), Some(kid), Some(payload), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(StateError::Malformed);
        };
        if version != FORMAT {
            let later =
                version.strip_prefix("pcs").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            return Err(if later { StateError::UnsupportedVersion } else { StateError::Malformed });
        }
        let key = self.keys.iter().find(|k| k.id == kid).ok_or(StateError::UnknownKey)?;
        let mac = URL_SAFE_NO_PAD.decode(mac).map_err(|_| StateError::Malformed)?;
        let mut expected = key.mac();
        expected.update(signed.as_bytes());
        expected.verify_slice(&mac).map_err(|_| StateError::BadMac)?;
        let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| StateError::Malformed)?;
        let state: StatePayload = serde_json::from_slice(&json).map_err(|_| StateError::Malformed)?;
        if now_ms >= state.expires_ms {
            return Err(StateError::Expired);
        }
        if &state.principal != principal {
            return Err(StateError::WrongPrincipal);
        }
        if state.digest != digest {
            return Err(StateError::WrongRequest);
        }
        Ok(state)
    }
}

fn read_key(source: &KeySource) -> Result<Key, KeyError> {
    let id = source.id().to_owned();
    check_key_id(&id)?;
    let text = match source {
        KeySource::Env { var, .. } => {
            std::env::var(var).map_err(|_| KeyError::EnvMissing { id: id.clone(), var: var.clone() })?
        }
        KeySource::File { path, .. } => read_file(&id, path)?,
    };
    let from = source.describe();
    let secret =
        decode_secret(text.trim()).ok_or_else(|| KeyError::NotEncoded { id: id.clone(), from: from.clone() })?;
    if secret.len() < MIN_KEY_BYTES {
        return Err(KeyError::TooShort { id, from, len: secret.len() });
    }
    Ok(Key { id, secret })
}

fn read_file(id: &str, path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| KeyError::File { id: id.to_owned(), path: path.to_owned(), source })
}

/// Hex (tried first: 64 hex digits are also valid base64, and hex is what `openssl rand -hex`
/// prints), then base64 in its standard and URL-safe alphabets, padded or not.
fn decode_secret(text: &str) -> Option<Vec<u8>> {
    if !text.is_empty() && text.len().is_multiple_of(2) && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return text
            .as_bytes()
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
            .collect();
    }
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD].iter().find_map(|engine| engine.decode(text).ok())
}

// ---------------------------------------------------------------------------------------
// Canonical JSON and digests
// ---------------------------------------------------------------------------------------

/// A JSON value's canonical text: object keys sorted by their UTF-8 bytes, no whitespace,
/// strings escaped as serde_json escapes them, numbers as serde_json writes them. Two values
/// that differ only in key order or formatting have one canonical text. Numbers are not
/// unified across types: `1` and `1.0` stay different (a tool that receives one or the other
/// may behave differently).
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(object) => {
            let mut entries: Vec<(&String, &Value)> = object.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, child)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(child, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// `sha256:<hex>` of a value's [canonical JSON](canonical_json).
pub fn canonical_digest(value: &Value) -> String {
    format!("sha256:{}", base16ct::lower::encode_string(&Sha256::digest(canonical_json(value).as_bytes())))
}

/// `sha256:<hex>` of a call: its JSON-RPC method, its name (the tool or prompt name, or the
/// resource URI) and the canonical JSON of its arguments (`None` hashes as `null`; the door
/// passes what [`call_of`](crate::adapters::mcp::call_of) judged, where absent arguments are
/// `{}`). Each part is length-prefixed, so no two calls share an encoding.
pub fn call_digest(method: &str, name: &str, arguments: Option<&Value>) -> String {
    fn field(hasher: &mut Sha256, bytes: &[u8]) {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    }
    let mut hasher = Sha256::new();
    field(&mut hasher, CALL_DIGEST_DOMAIN);
    field(&mut hasher, method.as_bytes());
    field(&mut hasher, name.as_bytes());
    field(&mut hasher, canonical_json(arguments.unwrap_or(&Value::Null)).as_bytes());
    format!("sha256:{}", base16ct::lower::encode_string(&hasher.finalize()))
}

#[cfg(test)]
mod tests;
