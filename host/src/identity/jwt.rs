//! JWT bearer tokens: key loading, signature verification, claim checks, and the mapping
//! from claims to a [`Principal`].
//!
//! Signatures are checked with `jsonwebtoken`'s RustCrypto provider (pure Rust); the
//! compact serialisation, the header and every claim are checked here, against a time the
//! caller gives (replay verifies tokens at the recorded time). That is why the claims are
//! not checked with `jsonwebtoken::Validation`: it reads the system clock for `exp` and
//! `nbf`, so a captured request could not be judged as of when it was recorded.
//!
//! Algorithm confusion is ruled out by construction: every key has exactly one algorithm,
//! fixed by the configuration, and a token is only tried against keys whose algorithm is
//! the one in its header. An `HS256` token is never checked against an RSA public key.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use super::jwks::{JwksLocation, JwksSource, KeyRing, check_fetch_url, discovery_url};
use super::{IdentityConfigError, JwtAlgorithm, JwtIssuerConfig, JwtKeyConfig, check_kind, dedup_scopes, quoted};
use crate::exchange::{Principal, PrincipalKind};

/// Tokens longer than this are refused before any parsing.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// HMAC secrets shorter than this are refused (RFC 7518 §3.2 asks for at least the hash
/// size; 32 bytes is the HS256 minimum).
const MIN_SECRET_BYTES: usize = 32;
/// RSA moduli shorter than this are refused.
const MIN_RSA_BITS: usize = 2048;
/// `refresh_interval_s`: its default and bounds.
const DEFAULT_REFRESH_S: u64 = 300;
const MIN_REFRESH_S: u64 = 10;
const MAX_REFRESH_S: u64 = 86_400;
/// `refetch_cooldown_s`'s default.
const DEFAULT_COOLDOWN_S: u64 = 10;

/// Why a bearer token was refused. Never contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a compact JWS (`header.payload.signature`), or a part is not base64url JSON.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The header's `alg` is `none` or not supported.
    #[error("algorithm {0} is not accepted")]
    UnsupportedAlgorithm(String),
    /// The token has no `iss` claim.
    #[error("the token has no `iss` claim")]
    MissingIssuer,
    /// No `[[identity.jwt]]` entry for the token's `iss`.
    #[error("unknown issuer {0}")]
    UnknownIssuer(String),
    /// The issuer has no key for the token's algorithm (and `kid`).
    #[error("issuer {issuer} has no {algorithm} key{}", kid.as_ref().map(|k| format!(" with kid {k}")).unwrap_or_default())]
    NoKey {
        /// The issuer, quoted.
        issuer: String,
        /// The token's algorithm.
        algorithm: String,
        /// The token's `kid`, quoted.
        kid: Option<String>,
    },
    /// The issuer's keys are fetched from it (`jwks_url`, `discovery`) and no fetch has
    /// succeeded yet, and no configured key fits the token.
    #[error("keys for issuer {issuer} are not loaded yet (fetched from {url}; see /readyz)")]
    KeysNotLoaded {
        /// The issuer, quoted.
        issuer: String,
        /// Where its keys are fetched from.
        url: String,
    },
    /// The signature does not verify with any candidate key.
    #[error("bad signature")]
    BadSignature,
    /// `exp` has passed.
    #[error("expired at {exp} (now {now}, leeway {leeway_s}s)")]
    Expired {
        /// The token's `exp`.
        exp: u64,
        /// The time checked against.
        now: u64,
        /// The leeway allowed.
        leeway_s: u64,
    },
    /// `nbf` is in the future.
    #[error("not valid before {nbf} (now {now}, leeway {leeway_s}s)")]
    NotYetValid {
        /// The token's `nbf`.
        nbf: u64,
        /// The time checked against.
        now: u64,
        /// The leeway allowed.
        leeway_s: u64,
    },
    /// `aud` names none of the configured audiences.
    #[error("audience not accepted by issuer {issuer}")]
    WrongAudience {
        /// The issuer, quoted.
        issuer: String,
    },
    /// A required claim is absent.
    #[error("missing `{0}` claim")]
    MissingClaim(String),
    /// A claim has the wrong type or value.
    #[error("invalid `{claim}` claim: {reason}")]
    InvalidClaim {
        /// The claim.
        claim: String,
        /// What is wrong.
        reason: String,
    },
}

/// One verification key.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub(crate) kid: Option<String>,
    algorithm: JwtAlgorithm,
    key: DecodingKey,
}

/// One configured issuer.
#[derive(Debug, Clone)]
struct Issuer {
    name: String,
    audiences: HashSet<String>,
    keys: Vec<Key>,
    /// Keys fetched from the issuer (`jwks_url` or `discovery`), beside `keys`.
    remote: Option<Arc<KeyRing>>,
    require_exp: bool,
    scope_claim: Option<String>,
    kind: PrincipalKind,
    kind_claim: Option<String>,
    claims: Vec<String>,
    /// In front of `id` and `on_behalf_of` (empty: none).
    id_prefix: String,
}

/// All configured issuers, by `iss`.
#[derive(Debug, Clone, Default)]
pub(crate) struct JwtVerifier {
    issuers: HashMap<String, Issuer>,
}

impl JwtAlgorithm {
    /// The name used in JWS headers.
    pub fn name(self) -> &'static str {
        match self {
            JwtAlgorithm::HS256 => "HS256",
            JwtAlgorithm::HS384 => "HS384",
            JwtAlgorithm::HS512 => "HS512",
            JwtAlgorithm::RS256 => "RS256",
            JwtAlgorithm::RS384 => "RS384",
            JwtAlgorithm::RS512 => "RS512",
            JwtAlgorithm::PS256 => "PS256",
            JwtAlgorithm::PS384 => "PS384",
            JwtAlgorithm::PS512 => "PS512",
            JwtAlgorithm::ES256 => "ES256",
            JwtAlgorithm::ES384 => "ES384",
            JwtAlgorithm::EdDSA => "EdDSA",
        }
    }

    fn from_name(name: &str) -> Option<JwtAlgorithm> {
        const ALL: [JwtAlgorithm; 12] = [
            JwtAlgorithm::HS256,
            JwtAlgorithm::HS384,
            JwtAlgorithm::HS512,
            JwtAlgorithm::RS256,
            JwtAlgorithm::RS384,
            JwtAlgorithm::RS512,
            JwtAlgorithm::PS256,
            JwtAlgorithm::PS384,
            JwtAlgorithm::PS512,
            JwtAlgorithm::ES256,
            JwtAlgorithm::ES384,
            JwtAlgorithm::EdDSA,
        ];
        ALL.into_iter().find(|a| a.name() == name)
    }

    fn jsonwebtoken(self) -> Algorithm {
        match self {
            JwtAlgorithm::HS256 => Algorithm::HS256,
            JwtAlgorithm::HS384 => Algorithm::HS384,
            JwtAlgorithm::HS512 => Algorithm::HS512,
            JwtAlgorithm::RS256 => Algorithm::RS256,
            JwtAlgorithm::RS384 => Algorithm::RS384,
            JwtAlgorithm::RS512 => Algorithm::RS512,
            JwtAlgorithm::PS256 => Algorithm::PS256,
            JwtAlgorithm::PS384 => Algorithm::PS384,
            JwtAlgorithm::PS512 => Algorithm::PS512,
            JwtAlgorithm::ES256 => Algorithm::ES256,
            JwtAlgorithm::ES384 => Algorithm::ES384,
            JwtAlgorithm::EdDSA => Algorithm::EdDSA,
        }
    }

    fn is_hmac(self) -> bool {
        matches!(self, JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512)
    }

    fn is_rsa(self) -> bool {
        matches!(
            self,
            JwtAlgorithm::RS256
                | JwtAlgorithm::RS384
                | JwtAlgorithm::RS512
                | JwtAlgorithm::PS256
                | JwtAlgorithm::PS384
                | JwtAlgorithm::PS512
        )
    }
}

// ---------------------------------------------------------------------------------------
// Building
// ---------------------------------------------------------------------------------------

/// Where one key's material comes from, with the config keys for error messages.
struct KeySpec<'a> {
    path: String,
    kid: Option<&'a String>,
    algorithm: Option<JwtAlgorithm>,
    secret_env: Option<&'a String>,
    secret_file: Option<&'a std::path::PathBuf>,
    public_key_file: Option<&'a std::path::PathBuf>,
}

impl<'a> KeySpec<'a> {
    fn from_key(path: String, k: &'a JwtKeyConfig) -> Self {
        KeySpec {
            path,
            kid: k.kid.as_ref(),
            algorithm: k.algorithm,
            secret_env: k.secret_env.as_ref(),
            secret_file: k.secret_file.as_ref(),
            public_key_file: k.public_key_file.as_ref(),
        }
    }

    fn sources(&self) -> usize {
        [self.secret_env.is_some(), self.secret_file.is_some(), self.public_key_file.is_some()]
            .into_iter()
            .filter(|s| *s)
            .count()
    }

    fn load(&self, base_dir: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Key, IdentityConfigError> {
        let err = |field: &str, message: String| IdentityConfigError::new(format!("{}{field}", self.path), message);
        let unreadable =
            |field: &str, file: &Path, e| IdentityConfigError::unreadable(format!("{}{field}", self.path), file, e);
        let (algorithm, key) = if let Some(var) = self.secret_env {
            let secret = env(var)
                .ok_or_else(|| err("secret_env", format!("environment variable {var} is not set (or not UTF-8)")))?;
            hmac_key(secret.as_bytes(), self.algorithm).map_err(|m| err("secret_env", m))?
        } else if let Some(file) = self.secret_file {
            let full = base_dir.join(file);
            let bytes = std::fs::read(&full).map_err(|e| unreadable("secret_file", &full, e))?;
            let bytes = strip_newline(&bytes);
            hmac_key(bytes, self.algorithm).map_err(|m| err("secret_file", m))?
        } else if let Some(file) = self.public_key_file {
            let full = base_dir.join(file);
            let pem = std::fs::read(&full).map_err(|e| unreadable("public_key_file", &full, e))?;
            public_key(&pem, self.algorithm).map_err(|m| err("public_key_file", format!("{}: {m}", full.display())))?
        } else {
            return Err(IdentityConfigError::new(
                self.path.trim_end_matches('.'),
                "needs one of `secret_env`, `secret_file` or `public_key_file`",
            ));
        };
        check_verifier(algorithm, &key).map_err(|m| {
            let field = if self.public_key_file.is_some() { "public_key_file" } else { "algorithm" };
            err(field, m)
        })?;
        Ok(Key { kid: self.kid.cloned(), algorithm, key })
    }
}

fn strip_newline(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    bytes.strip_suffix(b"\r").unwrap_or(bytes)
}

fn hmac_key(secret: &[u8], algorithm: Option<JwtAlgorithm>) -> Result<(JwtAlgorithm, DecodingKey), String> {
    let algorithm = algorithm.unwrap_or(JwtAlgorithm::HS256);
    if !algorithm.is_hmac() {
        return Err(format!("a secret is an HMAC key; algorithm {} needs `public_key_file`", algorithm.name()));
    }
    if secret.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "the secret is {} bytes; HMAC secrets must be at least {MIN_SECRET_BYTES} bytes",
            secret.len()
        ));
    }
    Ok((algorithm, DecodingKey::from_secret(secret)))
}

/// Loads a PEM public key, working out its type, and pairs it with its algorithm.
fn public_key(pem: &[u8], algorithm: Option<JwtAlgorithm>) -> Result<(JwtAlgorithm, DecodingKey), String> {
    if let Ok(rsa) = DecodingKey::from_rsa_pem(pem) {
        let der = rsa.try_get_as_bytes().map_err(|e| format!("not a usable RSA key: {e}"))?;
        let (n, e) = (DEFAULT_PROVIDER.key_utils.rsa_pub_components_from_public_key)(der)
            .map_err(|_| "not a PEM RSA public key (is it a private key?)".to_owned())?;
        let key = rsa_key(&n, &e)?;
        let algorithm = algorithm.unwrap_or(JwtAlgorithm::RS256);
        if !algorithm.is_rsa() {
            return Err(format!("an RSA key cannot verify {}", algorithm.name()));
        }
        return Ok((algorithm, key));
    }
    if let Ok(ec) = DecodingKey::from_ec_pem(pem) {
        let point = ec.try_get_as_bytes().map_err(|e| format!("not a usable EC key: {e}"))?;
        let curve = match point.len() {
            65 => JwtAlgorithm::ES256,
            97 => JwtAlgorithm::ES384,
            _ => return Err("unsupported elliptic curve (P-256 and P-384 are supported)".into()),
        };
        let algorithm = algorithm.unwrap_or(curve);
        if algorithm != curve {
            return Err(format!("a {} key cannot verify {}", curve_name(curve), algorithm.name()));
        }
        return Ok((algorithm, ec));
    }
    if let Ok(ed) = DecodingKey::from_ed_pem(pem) {
        let algorithm = algorithm.unwrap_or(JwtAlgorithm::EdDSA);
        if algorithm != JwtAlgorithm::EdDSA {
            return Err(format!("an Ed25519 key cannot verify {}", algorithm.name()));
        }
        if ed.try_get_as_bytes().map_or(0, <[u8]>::len) != 32 {
            return Err("not a usable Ed25519 public key".into());
        }
        return Ok((algorithm, ed));
    }
    Err("not a PEM public key (expected `-----BEGIN PUBLIC KEY-----` with an RSA, P-256, P-384 or Ed25519 key)".into())
}

fn curve_name(algorithm: JwtAlgorithm) -> &'static str {
    if algorithm == JwtAlgorithm::ES384 { "P-384" } else { "P-256" }
}

fn rsa_key(n: &[u8], e: &[u8]) -> Result<DecodingKey, String> {
    let first = n.iter().position(|b| *b != 0).unwrap_or(n.len());
    let n = &n[first..];
    let bits = n.len() * 8 - n.first().map_or(0, |b| b.leading_zeros() as usize);
    if bits < MIN_RSA_BITS {
        return Err(format!("the RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"));
    }
    Ok(DecodingKey::from_rsa_raw_components(n, e))
}

/// Builds the verifier once, so a key the crypto backend rejects fails at startup.
fn check_verifier(algorithm: JwtAlgorithm, key: &DecodingKey) -> Result<(), String> {
    (DEFAULT_PROVIDER.verifier_factory)(&algorithm.jsonwebtoken(), key)
        .map(|_| ())
        .map_err(|e| format!("key not usable for {}: {e}", algorithm.name()))
}

/// Loads the usable signing keys of a JWKS document. Keys for encryption (`use = "enc"`)
/// are left out; keys of unsupported types or algorithms, or too weak, are skipped, each
/// with a reason (the second list) for the caller to log.
pub(crate) fn jwks_keys(text: &str) -> Result<(Vec<Key>, Vec<String>), String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| "expected a JSON Web Key Set: an object with a `keys` array".to_owned())?;
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for (i, jwk) in keys.iter().enumerate() {
        match jwk_key(jwk) {
            Ok(Some(key)) => out.push(key),
            Ok(None) => {}
            Err(message) => {
                let kid = jwk.get("kid").and_then(Value::as_str).map(|k| format!(" (kid {})", quoted(k)));
                skipped.push(format!("key {i}{}: {message}", kid.unwrap_or_default()));
            }
        }
    }
    if out.is_empty() {
        let why = if skipped.is_empty() { String::new() } else { format!(" ({})", skipped.join("; ")) };
        return Err(format!("no usable signing key in the set{why}"));
    }
    Ok((out, skipped))
}

fn jwk_key(jwk: &Value) -> Result<Option<Key>, String> {
    let field = |name: &str| jwk.get(name).and_then(Value::as_str);
    if field("use").is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    let named = match field("alg") {
        Some(alg) => {
            Some(JwtAlgorithm::from_name(alg).ok_or_else(|| format!("algorithm {} not supported", quoted(alg)))?)
        }
        None => None,
    };
    let b64 = |name: &str| -> Result<Vec<u8>, String> {
        let text = field(name).ok_or_else(|| format!("missing `{name}`"))?;
        b64url(text).map_err(|_| format!("`{name}` is not base64url"))
    };
    let (algorithm, key) = match field("kty") {
        Some("RSA") => {
            let algorithm = named.unwrap_or(JwtAlgorithm::RS256);
            if !algorithm.is_rsa() {
                return Err(format!("an RSA key cannot verify {}", algorithm.name()));
            }
            (algorithm, rsa_key(&b64("n")?, &b64("e")?)?)
        }
        Some("EC") => {
            let curve = match field("crv") {
                Some("P-256") => JwtAlgorithm::ES256,
                Some("P-384") => JwtAlgorithm::ES384,
                other => return Err(format!("curve {} not supported", quoted(other.unwrap_or("")))),
            };
            let algorithm = named.unwrap_or(curve);
            if algorithm != curve {
                return Err(format!("a {} key cannot verify {}", curve_name(curve), algorithm.name()));
            }
            let (x, y) = (b64("x")?, b64("y")?);
            let mut point = Vec::with_capacity(1 + x.len() + y.len());
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (algorithm, DecodingKey::from_ec_der(&point))
        }
        Some("OKP") => {
            if field("crv") != Some("Ed25519") {
                return Err(format!("curve {} not supported", quoted(field("crv").unwrap_or(""))));
            }
            if named.is_some_and(|a| a != JwtAlgorithm::EdDSA) {
                return Err("an Ed25519 key only verifies EdDSA".into());
            }
            let x = b64("x")?;
            if x.len() != 32 {
                return Err("`x` is not a 32-byte Ed25519 key".into());
            }
            (JwtAlgorithm::EdDSA, DecodingKey::from_ed_der(&x))
        }
        Some("oct") => {
            return Err("symmetric (oct) keys are not read from a JWKS file; use `secret_env` or `secret_file`".into());
        }
        other => return Err(format!("key type {} not supported", quoted(other.unwrap_or("")))),
    };
    check_verifier(algorithm, &key)?;
    Ok(Some(Key { kid: field("kid").map(str::to_owned), algorithm, key }))
}

impl JwtVerifier {
    pub(crate) fn new(
        configs: &[JwtIssuerConfig],
        base_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<JwtVerifier, IdentityConfigError> {
        let mut issuers = HashMap::new();
        for (i, config) in configs.iter().enumerate() {
            let at = format!("identity.jwt[{i}]");
            if config.issuer.is_empty() {
                return Err(IdentityConfigError::new(format!("{at}.issuer"), "must not be empty"));
            }

            if issuers.contains_key(&config.issuer) {
                return Err(IdentityConfigError::new(
                    format!("{at}.issuer"),
                    format!("issuer {:?} is configured twice; put all its keys in one entry", config.issuer),
                ));
            }
            check_kind(config.kind, &format!("{at}.kind"))?;
            let mut keys = Vec::new();
            let inline = KeySpec {
                path: format!("{at}."),
                kid: config.kid.as_ref(),
                algorithm: config.algorithm,
                secret_env: config.secret_env.as_ref(),
                secret_file: config.secret_file.as_ref(),
                public_key_file: config.public_key_file.as_ref(),
            };
            match inline.sources() {
                0 if config.kid.is_some() || config.algorithm.is_some() => {
                    return Err(IdentityConfigError::new(
                        format!("{at}.{}", if config.kid.is_some() { "kid" } else { "algorithm" }),
                        "describes the inline key, but there is no `secret_env`, `secret_file` or `public_key_file`",
                    ));
                }
                0 => {}
                1 => keys.push(inline.load(base_dir, env)?),
                _ => {
                    return Err(IdentityConfigError::new(
                        at.clone(),
                        "give only one of `secret_env`, `secret_file`, `public_key_file` (use `[[identity.jwt.keys]]` for several keys)",
                    ));
                }
            }
            for (k, key) in config.keys.iter().enumerate() {
                let spec = KeySpec::from_key(format!("{at}.keys[{k}]."), key);
                if spec.sources() > 1 {
                    return Err(IdentityConfigError::new(
                        format!("{at}.keys[{k}]"),
                        "give only one of `secret_env`, `secret_file`, `public_key_file`",
                    ));
                }
                keys.push(spec.load(base_dir, env)?);
            }
            if let Some(file) = &config.jwks_file {
                keys.extend(jwks_file_keys(&base_dir.join(file), &at)?);
            }
            let remote = remote_source(config, base_dir, &at)?.map(|source| Arc::new(KeyRing::new(source)));
            if keys.is_empty() && remote.is_none() {
                return Err(IdentityConfigError::new(
                    at,
                    "has no key: give `secret_env`, `secret_file`, `public_key_file`, `jwks_file`, `jwks_url`, \
                     `discovery = true` or `[[identity.jwt.keys]]`",
                ));
            }
            let mut kids = HashSet::new();
            for key in &keys {
                if let Some(kid) = &key.kid
                    && !kids.insert(kid.clone())
                {
                    return Err(IdentityConfigError::new(at, format!("kid {kid:?} is used by two keys")));
                }
            }
            issuers.insert(
                config.issuer.clone(),
                Issuer {
                    name: config.issuer.clone(),
                    audiences: config.audiences.iter().cloned().collect(),
                    keys,
                    remote,
                    require_exp: config.require_exp,
                    scope_claim: config.scope_claim.clone(),
                    kind: config.kind,
                    kind_claim: config.kind_claim.clone(),
                    claims: config.claims.clone(),
                    id_prefix: config.id_prefix.clone().unwrap_or_default(),
                },
            );
        }
        // After every entry is known to be sound on its own, so a duplicate issuer is
        // reported as such rather than as two entries missing a prefix.
        let mut prefixes: HashMap<&str, &str> = HashMap::new();
        for (i, config) in configs.iter().enumerate() {
            let at = format!("identity.jwt[{i}]");
            let id_prefix = check_id_prefix(config, configs.len(), &at)?;
            if let Some(other) = prefixes.insert(id_prefix, &config.issuer) {
                return Err(IdentityConfigError::new(
                    format!("{at}.id_prefix"),
                    format!("{id_prefix:?} is also the id_prefix of issuer {other:?}; give each issuer its own"),
                ));
            }
        }
        Ok(JwtVerifier { issuers })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    /// The rings of keys fetched from issuers, one per entry with `jwks_url` or `discovery`.
    pub(crate) fn key_rings(&self) -> Vec<Arc<KeyRing>> {
        self.issuers.values().filter_map(|i| i.remote.clone()).collect()
    }

    /// The ring to refresh before verifying `token`, if any: the token's issuer (`iss`,
    /// read without verifying anything) fetches its keys, and either none are loaded yet
    /// or the token's `kid` is neither a configured nor a fetched key's. What the token
    /// says is trusted for nothing but choosing which ring to refresh; the refresh is
    /// rate-limited by the ring's cooldown.
    pub(crate) fn key_ring_for(&self, token: &str) -> Option<Arc<KeyRing>> {
        if token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let mut parts = token.split('.');
        let (header, payload) = (parts.next()?, parts.next()?);
        let payload = json_object(payload, "payload").ok()?;
        let issuer = self.issuers.get(payload.get("iss")?.as_str()?)?;
        let ring = issuer.remote.as_ref()?;
        if !ring.is_loaded() {
            return Some(ring.clone());
        }
        let header = json_object(header, "header").ok()?;
        let kid = header.get("kid")?.as_str()?;
        let known = issuer.keys.iter().any(|k| k.kid.as_deref() == Some(kid)) || ring.has_kid(kid);
        (!known).then(|| ring.clone())
    }

    // -----------------------------------------------------------------------------------
    // Verifying
    // -----------------------------------------------------------------------------------

    /// Verifies a compact JWS as of `now` and maps its claims to a principal.
    pub(crate) fn verify(&self, token: &str, now: u64, leeway_s: u64) -> Result<Principal, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed(format!("longer than {MAX_TOKEN_BYTES} bytes")));
        }
        let parts: Vec<&str> = token.split('.').collect();
        match parts.len() {
            3 => {}
            5 => return Err(TokenError::Malformed("encrypted tokens (JWE) are not supported".into())),
            _ => return Err(TokenError::Malformed("not a JWT (expected three dot-separated parts)".into())),
        }
        let header = json_object(parts[0], "header")?;
        let payload = json_object(parts[1], "payload")?;
        let signature = b64url(parts[2]).map_err(|_| TokenError::Malformed("the signature is not base64url".into()))?;

        // Header.
        let alg = match header.get("alg") {
            Some(Value::String(alg)) => alg.as_str(),
            Some(_) => return Err(TokenError::Malformed("header `alg` is not a string".into())),
            None => return Err(TokenError::Malformed("header has no `alg`".into())),
        };
        let algorithm = JwtAlgorithm::from_name(alg).ok_or_else(|| TokenError::UnsupportedAlgorithm(quoted(alg)))?;
        if header.contains_key("crit") {
            return Err(TokenError::Malformed("header `crit` extensions are not supported".into()));
        }
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.as_str()),
            Some(_) => return Err(TokenError::Malformed("header `kid` is not a string".into())),
        };

        // Issuer and keys.
        let iss = match payload.get("iss") {
            None => return Err(TokenError::MissingIssuer),
            Some(Value::String(iss)) => iss.as_str(),
            Some(_) => return Err(invalid("iss", "not a string")),
        };
        let issuer = self.issuers.get(iss).ok_or_else(|| TokenError::UnknownIssuer(quoted(iss)))?;
        // The configured keys, then those fetched from the issuer (a snapshot: a refresh
        // replaces the set whole, never under this request).
        let fetched = issuer.remote.as_ref().and_then(|ring| ring.current());
        let all: Vec<&Key> = issuer.keys.iter().chain(fetched.iter().flat_map(|set| set.keys.iter())).collect();
        let same_alg = all.iter().copied().filter(|k| k.algorithm == algorithm);
        let candidates: Vec<&Key> = match kid {
            Some(kid) if all.iter().any(|k| k.kid.as_deref() == Some(kid)) => {
                same_alg.filter(|k| k.kid.as_deref() == Some(kid)).collect()
            }
            // A kid no key claims: only keys without a kid may match.
            Some(_) => same_alg.filter(|k| k.kid.is_none()).collect(),
            None => same_alg.collect(),
        };
        if candidates.is_empty() {
            if let Some(ring) = &issuer.remote
                && fetched.is_none()
            {
                return Err(TokenError::KeysNotLoaded {
                    issuer: quoted(&issuer.name),
                    url: ring.source().location.url().to_owned(),
                });
            }
            return Err(TokenError::NoKey {
                issuer: quoted(&issuer.name),
                algorithm: algorithm.name().to_owned(),
                kid: kid.map(quoted),
            });
        }

        // Signature.
        let signing_input = &token[..parts[0].len() + 1 + parts[1].len()];
        let verified = candidates.iter().any(|key| {
            (DEFAULT_PROVIDER.verifier_factory)(&algorithm.jsonwebtoken(), &key.key)
                .is_ok_and(|v| v.verify(signing_input.as_bytes(), &signature).is_ok())
        });
        if !verified {
            return Err(TokenError::BadSignature);
        }

        // Time.
        match numeric_date(&payload, "exp")? {
            Some(exp) if now >= exp.saturating_add(leeway_s) => {
                return Err(TokenError::Expired { exp, now, leeway_s });
            }
            Some(_) => {}
            None if issuer.require_exp => return Err(TokenError::MissingClaim("exp".into())),
            None => {}
        }
        if let Some(nbf) = numeric_date(&payload, "nbf")?
            && nbf > now.saturating_add(leeway_s)
        {
            return Err(TokenError::NotYetValid { nbf, now, leeway_s });
        }

        // Audience.
        if !issuer.audiences.is_empty() {
            let accepted = match payload.get("aud") {
                None => return Err(TokenError::MissingClaim("aud".into())),
                Some(Value::String(aud)) => issuer.audiences.contains(aud),
                Some(Value::Array(auds)) => {
                    if !auds.iter().all(Value::is_string) {
                        return Err(invalid("aud", "not a string or an array of strings"));
                    }
                    auds.iter().filter_map(Value::as_str).any(|a| issuer.audiences.contains(a))
                }
                Some(_) => return Err(invalid("aud", "not a string or an array of strings")),
            };
            if !accepted {
                return Err(TokenError::WrongAudience { issuer: quoted(&issuer.name) });
            }
        }

        issuer.principal(&payload)
    }
}

/// The keys of a `jwks_file`; keys skipped are logged.
fn jwks_file_keys(full: &Path, at: &str) -> Result<Vec<Key>, IdentityConfigError> {
    let text = std::fs::read_to_string(full)
        .map_err(|e| IdentityConfigError::unreadable(format!("{at}.jwks_file"), full, e))?;
    let (found, skipped) = jwks_keys(&text)
        .map_err(|m| IdentityConfigError::new(format!("{at}.jwks_file"), format!("{}: {m}", full.display())))?;
    for reason in skipped {
        tracing::warn!("{at}.jwks_file: {}: JWKS {reason}: skipped", full.display());
    }
    Ok(found)
}

/// The source of an entry's fetched keys (`jwks_url`, or `discovery = true`), checked;
/// `None` when it fetches nothing.
fn remote_source(
    config: &JwtIssuerConfig,
    base_dir: &Path,
    at: &str,
) -> Result<Option<JwksSource>, IdentityConfigError> {
    let location = match (&config.jwks_url, config.discovery) {
        (Some(_), true) => {
            return Err(IdentityConfigError::new(
                format!("{at}.discovery"),
                "give either `jwks_url` or `discovery = true`, not both (discovery finds the JWKS URL itself)",
            ));
        }
        (Some(url), false) => {
            check_fetch_url(url)
                .map_err(|m| IdentityConfigError::new(format!("{at}.jwks_url"), format!("{url:?} {m}")))?;
            JwksLocation::Url(url.clone())
        }
        (None, true) => {
            let url = discovery_url(&config.issuer);
            check_fetch_url(&url).map_err(|m| {
                IdentityConfigError::new(
                    format!("{at}.discovery"),
                    format!("the issuer is where discovery looks ({url:?}), and it {m}"),
                )
            })?;
            JwksLocation::Discovery(url)
        }
        (None, false) => {
            for (set, key) in [
                (config.tls.is_some(), "tls"),
                (config.refresh_interval_s.is_some(), "refresh_interval_s"),
                (config.refetch_cooldown_s.is_some(), "refetch_cooldown_s"),
            ] {
                if set {
                    return Err(IdentityConfigError::new(
                        format!("{at}.{key}"),
                        "applies to keys fetched from the issuer: set `jwks_url` or `discovery = true`",
                    ));
                }
            }
            return Ok(None);
        }
    };
    let interval = config.refresh_interval_s.unwrap_or(DEFAULT_REFRESH_S);
    if !(MIN_REFRESH_S..=MAX_REFRESH_S).contains(&interval) {
        return Err(IdentityConfigError::new(
            format!("{at}.refresh_interval_s"),
            format!("{interval} is out of range: {MIN_REFRESH_S} to {MAX_REFRESH_S} seconds"),
        ));
    }
    let cooldown = config.refetch_cooldown_s.unwrap_or(DEFAULT_COOLDOWN_S);
    if !(1..=interval).contains(&cooldown) {
        return Err(IdentityConfigError::new(
            format!("{at}.refetch_cooldown_s"),
            format!(
                "{cooldown} is out of range: 1 second to refresh_interval_s ({interval}); without a cooldown, tokens \
                 with made-up `kid`s could make Portcullis fetch the keys on every request"
            ),
        ));
    }
    let tls = config.tls.clone().unwrap_or_default();
    if tls.client_cert_file.is_some() != tls.client_key_file.is_some() {
        return Err(IdentityConfigError::new(
            format!("{at}.tls"),
            "`client_cert_file` and `client_key_file` go together",
        ));
    }
    Ok(Some(JwksSource {
        issuer: config.issuer.clone(),
        location,
        tls,
        base_dir: base_dir.to_owned(),
        refresh_interval: Duration::from_secs(interval),
        refetch_cooldown: Duration::from_secs(cooldown),
    }))
}

/// The issuer's `id_prefix` (empty when none), checked: with several issuers every one
/// needs a prefix, and every prefix is letters, digits, `.`, `_`, `-` and one final `:`.
/// Since a prefix holds exactly one `:`, at its end, no id from one issuer can equal an id
/// from another (`a:` + `b:alice` is not `a:b:` + `alice`, because `a:b:` is refused).
fn check_id_prefix<'a>(config: &'a JwtIssuerConfig, issuers: usize, at: &str) -> Result<&'a str, IdentityConfigError> {
    let key = format!("{at}.id_prefix");
    let Some(prefix) = config.id_prefix.as_deref() else {
        if issuers > 1 {
            return Err(IdentityConfigError::new(
                key,
                format!(
                    "{issuers} JWT issuers are configured, and two issuers may use the same `sub` for different \
                     callers: give each an id_prefix (e.g. \"corp:\") so their principals cannot be confused"
                ),
            ));
        }
        return Ok("");
    };
    let Some(name) = prefix.strip_suffix(':') else {
        return Err(IdentityConfigError::new(key, format!("{prefix:?} must end with `:` (e.g. \"corp:\")")));
    };
    if name.is_empty() || name.len() > 63 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        return Err(IdentityConfigError::new(
            key,
            format!("{prefix:?} must be 1 to 63 letters, digits, `.`, `_` or `-`, then `:`"),
        ));
    }
    Ok(prefix)
}

impl Issuer {
    /// Maps verified claims to a principal.
    fn principal(&self, claims: &Map<String, Value>) -> Result<Principal, TokenError> {
        let sub = match claims.get("sub") {
            Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
            Some(Value::String(_)) => return Err(invalid("sub", "empty")),
            Some(_) => return Err(invalid("sub", "not a string")),
            None => return Err(TokenError::MissingClaim("sub".into())),
        };

        let mut kind = self.kind;
        if let Some(name) = &self.kind_claim {
            match claims.get(name).and_then(Value::as_str) {
                Some("user") => kind = PrincipalKind::User,
                Some("service") => kind = PrincipalKind::Service,
                Some("agent") => kind = PrincipalKind::Agent,
                _ => {}
            }
        }

        // RFC 8693 §4.1: the outermost `act` is the current actor; nested `act` claims
        // are prior actors in the chain and are not used.
        let (id, on_behalf_of) = match claims.get("act") {
            None => (sub, None),
            Some(Value::Object(act)) => match act.get("sub") {
                Some(Value::String(actor)) if !actor.is_empty() => {
                    kind = PrincipalKind::Agent;
                    (actor.clone(), Some(sub))
                }
                _ => return Err(invalid("act", "has no non-empty string `sub`")),
            },
            Some(_) => return Err(invalid("act", "not an object")),
        };

        let scopes = if let Some(name) = &self.scope_claim {
            scopes_from(claims, name)?.unwrap_or_default()
        } else {
            let mut found = None;
            for name in ["scope", "scp", "scopes"] {
                if let Some(scopes) = scopes_from(claims, name)? {
                    found = Some(scopes);
                    break;
                }
            }
            found.unwrap_or_default()
        };

        let mut copied = Vec::new();
        for name in &self.claims {
            match claims.get(name) {
                None => {}
                Some(Value::String(s)) => copied.push((name.clone(), s.clone())),
                Some(other) => copied.push((name.clone(), other.to_string())),
            }
        }

        let credential_id = match claims.get("jti") {
            Some(Value::String(jti)) if !jti.is_empty() => jti.clone(),
            _ => format!("jwt:{}", self.name),
        };

        let id = format!("{}{id}", self.id_prefix);
        let on_behalf_of = on_behalf_of.map(|user| format!("{}{user}", self.id_prefix));
        Ok(Principal { kind, id, scopes, claims: copied, on_behalf_of, credential_id: Some(credential_id) })
    }
}

/// The scopes in claim `name`: a whitespace-separated string or an array of strings.
fn scopes_from(claims: &Map<String, Value>, name: &str) -> Result<Option<Vec<String>>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(dedup_scopes(s.split_whitespace().map(str::to_owned)))),
        Some(Value::Array(items)) => {
            let mut scopes = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) => scopes.push(s.clone()),
                    _ => return Err(invalid(name, "not a string or an array of strings")),
                }
            }
            Ok(Some(dedup_scopes(scopes)))
        }
        Some(_) => Err(invalid(name, "not a string or an array of strings")),
    }
}

/// A NumericDate claim (seconds, possibly fractional) as whole seconds.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(v) = n.as_u64() {
                Ok(Some(v))
            } else {
                match n.as_f64() {
                    Some(f) if f.is_finite() && f >= 0.0 => Ok(Some(f.floor().min(u64::MAX as f64) as u64)),
                    _ => Err(invalid(name, "not a non-negative number of seconds")),
                }
            }
        }
        Some(_) => Err(invalid(name, "not a number")),
    }
}

fn invalid(claim: &str, reason: &str) -> TokenError {
    TokenError::InvalidClaim { claim: claim.to_owned(), reason: reason.to_owned() }
}

fn b64url(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text)
}

/// The audiences (`aud`, a string or a list) a JWT names, read **without verifying it**:
/// for a door that refuses a token not issued for it before the gate verifies it (the MCP
/// door as an OAuth resource server, RFC 8707). Never a reason to accept a token.
pub fn unverified_audiences(token: &str) -> Result<Vec<String>, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed("the token is too long".into()));
    }
    let payload = token.split('.').nth(1).ok_or_else(|| TokenError::Malformed("not a JWT".into()))?;
    let claims = json_object(payload, "payload")?;
    Ok(match claims.get("aud") {
        Some(Value::String(aud)) => vec![aud.clone()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    })
}

fn json_object(part: &str, what: &str) -> Result<Map<String, Value>, TokenError> {
    let bytes = b64url(part).map_err(|_| TokenError::Malformed(format!("the {what} is not base64url")))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(TokenError::Malformed(format!("the {what} is not a JSON object"))),
        Err(_) => Err(TokenError::Malformed(format!("the {what} is not JSON"))),
    }
}
