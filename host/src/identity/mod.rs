//! Authentication: turning the credential a request carries into a [`Principal`].
//!
//! *Authentication is the host's job, authorisation the policy's.* The [`Authenticator`]
//! looks at a request's headers, verifies the one credential it finds and returns the
//! principal; policies only ever see that principal (and the credential's id, never the
//! secret). Four kinds of credential are understood, each only when configured:
//!
//! - a **JWT** in `Authorization: Bearer …`, verified against the keys of the issuer named
//!   by its `iss` claim ([`JwtIssuerConfig`]);
//! - an **API key** in `x-api-key` (or the configured header) or `Authorization: ApiKey …`,
//!   looked up by its SHA-256 hash ([`ApiKeyConfig`]);
//! - **trusted headers** set by an authenticating proxy in front ([`TrustedHeadersConfig`]);
//! - a **client certificate** verified by the TLS listener (mutual TLS) and handed over as a
//!   [`ClientCertificate`], matched by one of its names ([`ClientCertConfig`]).
//!
//! No credential gives the anonymous principal (policies may allow anonymous callers); a
//! credential that is presented but does not verify gives an [`AuthError`], which a front
//! door answers with 401 before any policy runs. Two credentials at once are refused as
//! ambiguous. The same configuration serves every front door and the replay of recorded
//! traffic, which is why the current time is a parameter.
//!
//! The configuration is the `[identity]` table of `portcullis.toml`, documented key by key
//! in `docs/identity.md`.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::exchange::{Principal, PrincipalKind, Request};

mod api_key;
mod client_cert;
mod headers;
mod jwks;
mod jwt;
#[cfg(test)]
mod tests;

pub use client_cert::ClientCertificate;
pub use jwks::{
    Claim, Installed, JwksLocation, JwksSource, KeyRing, KeyRingStatus, check_fetch_url, discovered_jwks_uri,
    discovery_url,
};
pub use jwt::{TokenError, unverified_audiences};

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

/// `[identity]`: how callers are authenticated.
///
/// With nothing configured every request is anonymous.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct IdentityConfig {
    /// Remove the headers that carried the credential from the request once it has been
    /// verified, and `Authorization` whatever its scheme (a credential to the upstream even
    /// when no configured identity reads it), so neither policies nor the upstream see them
    /// (default false). Applies to [`Authenticator::authenticate_and_strip`].
    pub strip_credentials: bool,
    /// Clock skew allowed when checking a JWT's `exp` and `nbf`, in seconds (default 30).
    pub leeway_s: u64,
    /// The header carrying an API key (default `x-api-key`). `Authorization: ApiKey <key>`
    /// is always accepted too.
    pub api_key_header: String,
    /// `[[identity.jwt]]`: trusted JWT issuers, one entry each.
    pub jwt: Vec<JwtIssuerConfig>,
    /// `[[identity.api_keys]]`: known API keys, by hash.
    pub api_keys: Vec<ApiKeyConfig>,
    /// `[identity.trusted_headers]`: identity asserted by an authenticating proxy in front.
    pub trusted_headers: Option<TrustedHeadersConfig>,
    /// `[[identity.client_certs]]`: verified TLS client certificates, by one of their names.
    pub client_certs: Vec<ClientCertConfig>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            strip_credentials: false,
            leeway_s: 30,
            api_key_header: "x-api-key".into(),
            jwt: Vec::new(),
            api_keys: Vec::new(),
            trusted_headers: None,
            client_certs: Vec::new(),
        }
    }
}

/// `[[identity.jwt]]`: one issuer and the keys its tokens are signed with.
///
/// Keys come from the inline `secret_env` / `secret_file` / `public_key_file` (one key),
/// from `[[identity.jwt.keys]]` (several keys, usually told apart by `kid`), from a
/// `jwks_file`, or any mix of these.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct JwtIssuerConfig {
    /// The `iss` value this entry verifies, compared exactly. Tokens must carry `iss`.
    pub issuer: String,
    /// Accepted audiences. When set, a token's `aud` must name at least one of them; when
    /// empty, `aud` is not checked.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// The inline key's algorithm. Default: `HS256` for a secret, `RS256` for an RSA key,
    /// `ES256`/`ES384` for a P-256/P-384 key, `EdDSA` for an Ed25519 key.
    #[serde(default)]
    pub algorithm: Option<JwtAlgorithm>,
    /// The inline key's id, matched against the token header's `kid`.
    #[serde(default)]
    pub kid: Option<String>,
    /// Name of the environment variable holding the inline HMAC secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// File holding the inline HMAC secret (one trailing newline is ignored).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// PEM file holding the inline public key (`-----BEGIN PUBLIC KEY-----`).
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// A JSON Web Key Set file (`{"keys": [...]}`) with public keys.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Fetch the issuer's keys from this JWKS URL (`https://`; plain `http://` only to a
    /// loopback host), cached and refreshed by the server (`portcullis serve`).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Find the JWKS URL through OpenID Connect discovery:
    /// `{issuer}/.well-known/openid-configuration`, whose `issuer` must be this entry's and
    /// whose `jwks_uri` is fetched (default false).
    #[serde(default)]
    pub discovery: bool,
    /// The longest time between refreshes of fetched keys, in seconds (default 300, 10 to
    /// 86400). A shorter `Cache-Control: max-age` from the issuer is honoured, down to 30.
    #[serde(default)]
    pub refresh_interval_s: Option<u64>,
    /// The shortest time between two fetches caused by tokens with an unknown `kid`, in
    /// seconds (default 10, at least 1).
    #[serde(default)]
    pub refetch_cooldown_s: Option<u64>,
    /// How the issuer's TLS certificate is checked when fetching (`[identity.jwt.tls]`):
    /// a private CA, a client certificate, a server name.
    #[serde(default)]
    pub tls: Option<crate::config::UpstreamTls>,
    /// Further keys.
    #[serde(default)]
    pub keys: Vec<JwtKeyConfig>,
    /// Refuse tokens without `exp` (default true).
    #[serde(default = "default_true")]
    pub require_exp: bool,
    /// The claim holding the scopes. Default: the first present of `scope`, `scp`,
    /// `scopes`. A string is split on whitespace; an array is taken as is.
    #[serde(default)]
    pub scope_claim: Option<String>,
    /// The kind of principal this issuer's tokens stand for (default `user`).
    #[serde(default = "default_user")]
    pub kind: PrincipalKind,
    /// A claim whose value `user`, `service` or `agent` overrides `kind`; other values (or
    /// no such claim) leave `kind`. An `act` claim always makes the principal an agent.
    #[serde(default)]
    pub kind_claim: Option<String>,
    /// Further claims copied into the principal's `claims`, in this order. Strings are
    /// copied as they are, other values as their JSON text; absent claims are skipped.
    #[serde(default)]
    pub claims: Vec<String>,
    /// Put in front of the principal's `id` and `on_behalf_of` from this issuer's tokens,
    /// e.g. `"corp:"`, so that the same `sub` from two issuers is two principals (two
    /// issuers' `alice` are usually two people). Letters, digits, `.`, `_`, `-`, then one
    /// `:` at the end. Required on every entry when two or more issuers are configured;
    /// optional with one.
    #[serde(default)]
    pub id_prefix: Option<String>,
}

/// `[[identity.jwt.keys]]`: one verification key. Exactly one of `secret_env`,
/// `secret_file`, `public_key_file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct JwtKeyConfig {
    /// The key id, matched against the token header's `kid`.
    #[serde(default)]
    pub kid: Option<String>,
    /// The algorithm (default from the key's type, see [`JwtIssuerConfig::algorithm`]).
    #[serde(default)]
    pub algorithm: Option<JwtAlgorithm>,
    /// Name of the environment variable holding an HMAC secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// File holding an HMAC secret (one trailing newline is ignored).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// PEM file holding a public key.
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
}

/// A JWS signature algorithm. `none` is never accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[allow(clippy::upper_case_acronyms)]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256 (shared secret).
    HS256,
    /// HMAC with SHA-384.
    HS384,
    /// HMAC with SHA-512.
    HS512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
}

/// `[[identity.api_keys]]`: one API key, stored only as its SHA-256.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ApiKeyConfig {
    /// The key's name; becomes the principal's `credential_id` (e.g. `crm-key-2`).
    pub name: String,
    /// Hex SHA-256 of the key (`printf %s KEY | sha256sum`), optionally `sha256:`-prefixed.
    pub sha256: String,
    /// The principal's id (e.g. `crm-sync`).
    pub id: String,
    /// The principal's kind (default `service`).
    #[serde(default = "default_service")]
    pub kind: PrincipalKind,
    /// Granted scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The user the key's holder acts for.
    #[serde(default)]
    pub on_behalf_of: Option<String>,
    /// Further claims for the principal.
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
}

/// `[[identity.client_certs]]`: a verified TLS client certificate, matched by exactly one
/// of `subject_cn`, `san_dns`, `san_uri`, `san_email` (compared exactly; DNS names without
/// regard to case), and the principal it stands for.
///
/// A listener with a client CA verifies the chain; this entry only names which verified
/// certificates are whom. With entries configured, a verified certificate matching none is
/// refused (401); with none, a client certificate only admits the connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ClientCertConfig {
    /// The entry's name; becomes the principal's `credential_id` (e.g. `billing-svc-cert`).
    pub name: String,
    /// Matches the certificate's subject common name.
    #[serde(default)]
    pub subject_cn: Option<String>,
    /// Matches one of the DNS names among its subject alternative names.
    #[serde(default)]
    pub san_dns: Option<String>,
    /// Matches one of the URIs among its subject alternative names (e.g. a SPIFFE id).
    #[serde(default)]
    pub san_uri: Option<String>,
    /// Matches one of the e-mail addresses among its subject alternative names.
    #[serde(default)]
    pub san_email: Option<String>,
    /// The principal's id.
    pub id: String,
    /// The principal's kind (default `service`).
    #[serde(default = "default_service")]
    pub kind: PrincipalKind,
    /// Granted scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The user the certificate's holder acts for.
    #[serde(default)]
    pub on_behalf_of: Option<String>,
    /// Further claims for the principal.
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
}

/// `[identity.trusted_headers]`: identity asserted by an authenticating proxy in front.
///
/// Only safe when that proxy removes these headers from what clients send: anyone who can
/// reach Portcullis directly, or through a proxy that passes them on, can claim any
/// identity.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TrustedHeadersConfig {
    /// The header carrying the principal's id (e.g. `x-auth-user`). Its presence is what
    /// makes a request use trusted headers.
    pub id: String,
    /// The header carrying the kind: `user`, `service` or `agent`.
    #[serde(default)]
    pub kind: Option<String>,
    /// The kind when the kind header is not configured or absent (default `user`).
    #[serde(default = "default_user")]
    pub default_kind: PrincipalKind,
    /// The header carrying scopes, separated by spaces or commas.
    #[serde(default)]
    pub scopes: Option<String>,
    /// The header carrying the user an agent or service acts for.
    #[serde(default)]
    pub on_behalf_of: Option<String>,
    /// The header carrying the credential's id (default: the principal's credential id is
    /// `trusted-headers`).
    #[serde(default)]
    pub credential_id: Option<String>,
}

fn default_true() -> bool {
    true
}

fn default_user() -> PrincipalKind {
    PrincipalKind::User
}

fn default_service() -> PrincipalKind {
    PrincipalKind::Service
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// Why an `[identity]` configuration cannot be used. Names the key, e.g.
/// `identity.jwt[0].public_key_file: cannot read keys/auth.pem: No such file or directory`.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}{}", source.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
#[non_exhaustive]
pub struct IdentityConfigError {
    /// The offending key, as a path from `identity`.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// The error underneath, when the operating system refused (a file that cannot be read).
    #[source]
    pub source: Option<std::io::Error>,
}

impl IdentityConfigError {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        IdentityConfigError { key: key.into(), message: message.into(), source: None }
    }

    /// A file named by `key` could not be read.
    pub(crate) fn unreadable(key: impl Into<String>, path: &Path, source: std::io::Error) -> Self {
        IdentityConfigError {
            key: key.into(),
            message: format!("cannot read {}", path.display()),
            source: Some(source),
        }
    }
}

/// Why a presented credential was refused. A front door answers 401.
///
/// Messages say what failed; they never contain the token, the key or any secret
/// (attacker-supplied values such as an unknown issuer are quoted, escaped and cut short).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// More than one credential was presented.
    #[error("ambiguous credentials: {0}")]
    Ambiguous(String),
    /// A header that should carry a credential is malformed (e.g. `Bearer` with no token,
    /// a repeated header).
    #[error("malformed credential: {0}")]
    Malformed(String),
    /// The bearer token did not verify.
    #[error("invalid bearer token: {0}")]
    Token(#[from] TokenError),
    /// The API key is not configured.
    #[error("unknown API key")]
    UnknownApiKey,
    /// The trusted headers are inconsistent (e.g. scopes without an id, an unknown kind).
    #[error("invalid trusted headers: {0}")]
    TrustedHeaders(String),
    /// A verified client certificate that no `[[identity.client_certs]]` entry names (its
    /// names, quoted).
    #[error("unknown client certificate: {0} matches no identity.client_certs entry")]
    UnknownClientCertificate(String),
}

/// Quotes an attacker-supplied value for an error message: escaped, at most 64 chars.
pub(crate) fn quoted(value: &str) -> String {
    const MAX: usize = 64;
    if value.chars().count() <= MAX {
        format!("{value:?}")
    } else {
        let cut: String = value.chars().take(MAX).collect();
        format!("{cut:?}…")
    }
}

// ---------------------------------------------------------------------------------------
// The authenticator
// ---------------------------------------------------------------------------------------

/// Verifies credentials and builds principals. Built once from an [`IdentityConfig`];
/// cheap to share (`Send + Sync`), holds no per-request state.
#[derive(Debug, Clone)]
pub struct Authenticator {
    strip_credentials: bool,
    leeway_s: u64,
    api_key_header: String,
    jwt: jwt::JwtVerifier,
    api_keys: api_key::ApiKeys,
    trusted: Option<headers::TrustedHeaders>,
    client_certs: client_cert::ClientCerts,
}

impl Default for Authenticator {
    /// Nothing configured: every request is anonymous.
    fn default() -> Self {
        Authenticator::new(&IdentityConfig::default(), Path::new(".")).expect("empty identity config")
    }
}

/// One credential found on a request.
enum Presented<'a> {
    Bearer(&'a str),
    ApiKey(&'a str),
    Trusted,
    ClientCertificate(&'a ClientCertificate),
}

impl Presented<'_> {
    fn describe(&self, api_key_header: &str, from_authorization: bool) -> String {
        match self {
            Presented::Bearer(_) => "a bearer token".into(),
            Presented::ApiKey(_) if from_authorization => "an API key (Authorization: ApiKey)".into(),
            Presented::ApiKey(_) => format!("an API key ({api_key_header})"),
            Presented::Trusted => "trusted identity headers".into(),
            Presented::ClientCertificate(_) => "a client certificate".into(),
        }
    }
}

impl Authenticator {
    /// Builds an authenticator: reads key files (relative to `base_dir`, usually the
    /// config file's folder) and secrets from the environment, and checks everything, so
    /// that a bad key fails at startup, not on the first request.
    pub fn new(config: &IdentityConfig, base_dir: &Path) -> Result<Authenticator, IdentityConfigError> {
        Self::build(config, base_dir, &|name| std::env::var(name).ok())
    }

    /// [`Authenticator::new`] with the environment given as a function (for tests).
    pub(crate) fn build(
        config: &IdentityConfig,
        base_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Authenticator, IdentityConfigError> {
        let api_key_header = config.api_key_header.trim().to_ascii_lowercase();
        if api_key_header.is_empty() || !is_header_name(&api_key_header) {
            return Err(IdentityConfigError::new(
                "identity.api_key_header",
                format!("{:?} is not a valid header name", config.api_key_header),
            ));
        }
        if api_key_header == "authorization" {
            return Err(IdentityConfigError::new(
                "identity.api_key_header",
                "must not be `authorization` (`Authorization: ApiKey <key>` is always accepted)",
            ));
        }
        let jwt = jwt::JwtVerifier::new(&config.jwt, base_dir, env)?;
        let api_keys = api_key::ApiKeys::new(&config.api_keys)?;
        let trusted = match &config.trusted_headers {
            Some(t) => {
                let trusted = headers::TrustedHeaders::new(t)?;
                for name in trusted.names() {
                    if name == "authorization" || (name == api_key_header && !api_keys.is_empty()) {
                        return Err(IdentityConfigError::new(
                            "identity.trusted_headers",
                            format!("header `{name}` already carries another kind of credential"),
                        ));
                    }
                }
                Some(trusted)
            }
            None => None,
        };
        let client_certs = client_cert::ClientCerts::new(&config.client_certs)?;
        Ok(Authenticator {
            strip_credentials: config.strip_credentials,
            leeway_s: config.leeway_s,
            api_key_header,
            jwt,
            api_keys,
            trusted,
            client_certs,
        })
    }

    /// The rings of keys fetched from issuers (`jwks_url`, `discovery`), one per such
    /// `[[identity.jwt]]` entry. A server fills them ([`KeyRing::install`]) and keeps them
    /// fresh; until a ring is filled, that issuer's tokens verify only with its configured
    /// keys (and are otherwise refused: `keys for issuer … are not loaded yet`).
    pub fn key_rings(&self) -> Vec<std::sync::Arc<KeyRing>> {
        self.jwt.key_rings()
    }

    /// The ring to refresh before authenticating a request with these headers, if any: its
    /// bearer token's issuer fetches its keys, and either none are loaded yet or the
    /// token's `kid` is not among them (the issuer may have rotated its keys). Nothing in
    /// the token is verified or trusted here beyond choosing the ring; the server refreshes
    /// it at most once per [`JwksSource::refetch_cooldown`] ([`KeyRing::claim_refetch`]).
    pub fn remote_keys_wanted(&self, headers: &[(String, String)]) -> Option<std::sync::Arc<KeyRing>> {
        if self.jwt.is_empty() {
            return None;
        }
        let value = values(headers, "authorization").into_iter().next()?.trim();
        let (scheme, token) = value.split_once(|c: char| c.is_ascii_whitespace())?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        self.jwt.key_ring_for(token.trim())
    }

    /// The headers that carry a credential to a server behind a door: `Authorization`
    /// (always, whatever its scheme) and those the configured identities read (the API key
    /// header with `[[identity.api_keys]]`, the trusted headers). The MCP door never
    /// forwards them (no token passthrough), whatever `strip_credentials` says.
    pub fn credential_headers(&self) -> Vec<&str> {
        let mut names = vec!["authorization"];
        if !self.api_keys.is_empty() {
            names.push(self.api_key_header.as_str());
        }
        if let Some(trusted) = &self.trusted {
            names.extend(trusted.names());
        }
        names
    }

    /// Whether bearer tokens are verified (at least one `[[identity.jwt]]` issuer).
    pub fn verifies_bearer_tokens(&self) -> bool {
        !self.jwt.is_empty()
    }

    /// Whether any kind of credential is configured. When not, every request is anonymous.
    pub fn is_configured(&self) -> bool {
        !self.jwt.is_empty() || !self.api_keys.is_empty() || self.trusted.is_some() || !self.client_certs.is_empty()
    }

    /// Whether [`Authenticator::authenticate_and_strip`] removes credential headers
    /// (`strip_credentials`).
    pub fn strips_credentials(&self) -> bool {
        self.strip_credentials
    }

    /// The principal for `request`, verifying any credential as of `now_unix_s` (seconds
    /// since the Unix epoch; replay passes the recorded time).
    ///
    /// - no credential (of a configured kind) → the anonymous principal;
    /// - exactly one → its principal, or an [`AuthError`] when it does not verify;
    /// - more than one → [`AuthError::Ambiguous`].
    ///
    /// A credential kind that is not configured is not looked at: with no `[[identity.jwt]]`
    /// a bearer token is left for the upstream, with no `[[identity.api_keys]]` the API key
    /// header is. `Authorization` schemes other than `Bearer` and `ApiKey` (e.g. `Basic`)
    /// are likewise ignored.
    ///
    /// The request's own `principal` field is neither read nor written.
    pub fn authenticate(&self, request: &Request, now_unix_s: u64) -> Result<Principal, AuthError> {
        self.authenticate_headers(&request.headers, None, now_unix_s).map(|(principal, _)| principal)
    }

    /// [`Authenticator::authenticate`], then, when `strip_credentials` is on, removes the
    /// headers that carried the verified credential (the API key header, or every
    /// configured trusted header) and `Authorization` whatever its scheme, even when no
    /// configured identity read it (a bearer token with no `[[identity.jwt]]`, `Basic`): it
    /// is a credential to the upstream. On failure the request is left as it was. The
    /// principal is returned, not stored in the request.
    pub fn authenticate_and_strip(&self, request: &mut Request, now_unix_s: u64) -> Result<Principal, AuthError> {
        self.authenticate_connection(request, None, now_unix_s)
    }

    /// [`Authenticator::authenticate_and_strip`] for a request that arrived on a connection
    /// whose TLS client certificate the listener verified (`certificate`). With
    /// `[[identity.client_certs]]` configured, the certificate is a credential like the
    /// others: the principal of the entry it matches, 401 when it matches none, and
    /// ambiguous beside a token, an API key or trusted headers. With none configured, the
    /// certificate is not looked at (it only admitted the connection).
    pub fn authenticate_connection(
        &self,
        request: &mut Request,
        certificate: Option<&ClientCertificate>,
        now_unix_s: u64,
    ) -> Result<Principal, AuthError> {
        let (principal, consumed) = self.authenticate_headers(&request.headers, certificate, now_unix_s)?;
        if self.strip_credentials {
            let mut names: Vec<&str> = match consumed {
                Some(Consumed::ApiKeyHeader) => vec![self.api_key_header.as_str()],
                Some(Consumed::Trusted) => self.trusted.as_ref().map(|t| t.names()).unwrap_or_default(),
                Some(Consumed::Authorization | Consumed::Connection) | None => Vec::new(),
            };
            // `Authorization` always, whoever read it: a bearer token with no
            // `[[identity.jwt]]` (or a `Basic` one) is not a credential *here*, but it is
            // one to the upstream, and "strip credentials" must not forward any.
            names.push("authorization");
            request.headers.retain(|(n, _)| !names.iter().any(|c| n.eq_ignore_ascii_case(c)));
        }
        Ok(principal)
    }

    fn authenticate_headers<'a>(
        &self,
        headers: &'a [(String, String)],
        certificate: Option<&'a ClientCertificate>,
        now_unix_s: u64,
    ) -> Result<(Principal, Option<Consumed>), AuthError> {
        let mut found: Vec<(Presented<'a>, Consumed)> = Vec::new();

        // The connection's verified client certificate.
        if !self.client_certs.is_empty()
            && let Some(certificate) = certificate
        {
            found.push((Presented::ClientCertificate(certificate), Consumed::Connection));
        }

        // Authorization: Bearer / ApiKey.
        let authorization = values(headers, "authorization");
        if authorization.len() > 1 && authorization.iter().any(|v| self.understands_authorization(v)) {
            return Err(AuthError::Malformed("more than one Authorization header".into()));
        }
        if let Some(value) = authorization.first() {
            let value = value.trim();
            let (scheme, rest) = match value.split_once(|c: char| c.is_ascii_whitespace()) {
                Some((scheme, rest)) => (scheme, rest.trim()),
                None => (value, ""),
            };
            let bearer = scheme.eq_ignore_ascii_case("bearer") && !self.jwt.is_empty();
            let api_key = scheme.eq_ignore_ascii_case("apikey") && !self.api_keys.is_empty();
            if bearer || api_key {
                if rest.is_empty() {
                    return Err(AuthError::Malformed(format!("Authorization: {scheme} without a credential")));
                }
                let presented = if bearer { Presented::Bearer(rest) } else { Presented::ApiKey(rest) };
                found.push((presented, Consumed::Authorization));
            }
        }

        // The API key header.
        if !self.api_keys.is_empty() {
            let keys = values(headers, &self.api_key_header);
            if keys.len() > 1 {
                return Err(AuthError::Malformed(format!("more than one {} header", self.api_key_header)));
            }
            if let Some(key) = keys.first() {
                let key = key.trim();
                if key.is_empty() {
                    return Err(AuthError::Malformed(format!("empty {} header", self.api_key_header)));
                }
                found.push((Presented::ApiKey(key), Consumed::ApiKeyHeader));
            }
        }

        // Trusted headers.
        if let Some(trusted) = &self.trusted
            && trusted.present(headers)
        {
            found.push((Presented::Trusted, Consumed::Trusted));
        }

        match found.len() {
            0 => Ok((Principal::default(), None)),
            1 => {
                let (presented, consumed) = found.pop().expect("one");
                let principal = match presented {
                    Presented::Bearer(token) => self.jwt.verify(token, now_unix_s, self.leeway_s)?,
                    Presented::ApiKey(key) => self.api_keys.lookup(key)?,
                    Presented::Trusted => self.trusted.as_ref().expect("configured").principal(headers)?,
                    Presented::ClientCertificate(certificate) => self.client_certs.lookup(certificate)?,
                };
                Ok((principal, Some(consumed)))
            }
            _ => {
                let described: Vec<String> = found
                    .iter()
                    .map(|(p, c)| p.describe(&self.api_key_header, matches!(c, Consumed::Authorization)))
                    .collect();
                Err(AuthError::Ambiguous(format!(
                    "{} were presented; send exactly one credential",
                    described.join(" and ")
                )))
            }
        }
    }

    fn understands_authorization(&self, value: &str) -> bool {
        let scheme = value.trim().split(|c: char| c.is_ascii_whitespace()).next().unwrap_or("");
        (scheme.eq_ignore_ascii_case("bearer") && !self.jwt.is_empty())
            || (scheme.eq_ignore_ascii_case("apikey") && !self.api_keys.is_empty())
    }
}

/// Which headers carried the verified credential.
#[derive(Debug, Clone, Copy)]
enum Consumed {
    Authorization,
    ApiKeyHeader,
    Trusted,
    /// The connection's client certificate: no header to remove.
    Connection,
}

/// Every value of header `name` (case-insensitive).
pub(crate) fn values<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
}

/// Whether `name` is an HTTP header name (RFC 9110 token characters).
pub(crate) fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Checks a configured principal kind: anything but `anonymous`.
/// What every named credential entry (`[[identity.api_keys]]`, `[[identity.client_certs]]`)
/// must have: a non-empty `name` no earlier entry of `list` took (recorded in `names`), a
/// non-empty `id`, and a kind a credential can grant. `i` is the entry's index in `list`.
pub(crate) fn check_entry(
    list: &str,
    i: usize,
    names: &mut std::collections::HashMap<String, usize>,
    (name, id, kind): (&str, &str, PrincipalKind),
) -> Result<(), IdentityConfigError> {
    let at = format!("identity.{list}[{i}]");
    if name.is_empty() {
        return Err(IdentityConfigError::new(format!("{at}.name"), "must not be empty"));
    }
    if let Some(first) = names.insert(name.to_owned(), i) {
        return Err(IdentityConfigError::new(
            format!("{at}.name"),
            format!("{name:?} is also the name of identity.{list}[{first}]"),
        ));
    }
    if id.is_empty() {
        return Err(IdentityConfigError::new(format!("{at}.id"), "must not be empty"));
    }
    check_kind(kind, &format!("{at}.kind"))
}

pub(crate) fn check_kind(kind: PrincipalKind, key: &str) -> Result<(), IdentityConfigError> {
    if kind == PrincipalKind::Anonymous {
        return Err(IdentityConfigError::new(key, "`anonymous` is not a kind a credential can grant"));
    }
    Ok(())
}

/// Scopes without empties or repeats, in order.
pub(crate) fn dedup_scopes<I: IntoIterator<Item = String>>(scopes: I) -> Vec<String> {
    let mut seen = HashSet::new();
    scopes.into_iter().filter(|s| !s.is_empty() && seen.insert(s.clone())).collect()
}
