//! The MCP door as an OAuth 2.1 resource server (MCP 2026-07-28, basic/authorization and
//! authorization-server-discovery), configured by `[server.mcp.oauth]`
//! ([`portcullis_host::config::McpOAuth`]):
//!
//! - **Protected-resource metadata** (RFC 9728): served at the well-known URIs a client
//!   builds from the endpoint's URL, `/.well-known/oauth-protected-resource/<path>` and the
//!   root `/.well-known/oauth-protected-resource` ("Protected Resource Metadata Discovery
//!   Requirements": clients try both, in that order), GET only, no credential needed.
//! - **401** for a request without a bearer token, or whose token is invalid, expired or
//!   not issued for this resource, with `WWW-Authenticate: Bearer resource_metadata="…"`
//!   (+ `scope=`, + `error="invalid_token"` when a token was presented): "Error Handling"
//!   and "Scope Selection Strategy".
//! - **Audience** (RFC 8707): the token's `aud` must name `resource` ("Token Handling":
//!   servers MUST validate that access tokens were issued specifically for them), on top of
//!   `[[identity.jwt]] audiences`. Refused before any policy runs, and audited.
//! - **Step-up**: a policy's `missing-scope` denial naming the scopes it needs (the gate's
//!   [`Refusal::scope`]) is 403 with `error="insufficient_scope", scope="…"` ("Runtime
//!   Insufficient Scope Errors"), so the client can re-authorize with those scopes.
//! - **No token passthrough**: whatever `[identity] strip_credentials` says, the door never
//!   sends the server the caller's `Authorization` or any header the configured identities
//!   read ([`strip_credentials`]); "MCP servers MUST NOT accept or transit any other tokens"
//!   (Token Handling) and the security considerations' token passthrough.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use portcullis_host::adapters::mcp;
use portcullis_host::audit::{AuditContext, AuditRecord};
use portcullis_host::config::{McpOAuth, McpSection, TokenExchange, UpstreamTls, is_scope_token};
use portcullis_host::exchange::Request as Normal;
use portcullis_host::gate::{Gate, Refusal};
use portcullis_host::identity::unverified_audiences;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{Body, Live, UpstreamClient, full, read_capped};

/// The well-known suffix of protected-resource metadata (RFC 9728 §3).
const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// The deny code by which a policy says the caller lacks scopes (the `scopes` reference
/// policy's); with the scopes in its `missing-scopes` label it becomes a step-up answer.
pub(super) const MISSING_SCOPE: &str = "missing-scope";

/// `[server.mcp.oauth]`, ready to answer: the metadata document written once.
pub(super) struct ResourceServer {
    config: McpOAuth,
    /// The absolute URL of the metadata document, as `resource_metadata` names it.
    metadata_url: String,
    /// The paths it is served at.
    paths: Vec<String>,
    document: Bytes,
    /// `[server.mcp.oauth.exchange]`, when set.
    exchange: Option<Exchanger>,
}

impl ResourceServer {
    /// The door's resource server when `[server.mcp.oauth]` is set: checked, and refused
    /// without a `[[identity.jwt]]` issuer (nothing would verify the tokens).
    pub(super) fn for_door(section: &McpSection, live: &Live) -> anyhow::Result<Option<ResourceServer>> {
        let Some(config) = &section.oauth else { return Ok(None) };
        if !live.gate().authenticator().is_some_and(|a| a.verifies_bearer_tokens()) {
            anyhow::bail!(
                "[server.mcp.oauth] needs an [[identity.jwt]] issuer: nothing would verify the bearer tokens"
            );
        }
        let mut server = ResourceServer::new(config, &section.path).map_err(anyhow::Error::msg)?;
        if let Some(exchange) = &config.exchange {
            server.exchange = Some(Exchanger::new(exchange, Path::new("."))?);
        }
        Ok(Some(server))
    }

    /// The resource server for `config` (checked) in front of the door's endpoint `path`.
    pub(super) fn new(config: &McpOAuth, path: &str) -> Result<ResourceServer, String> {
        config.check()?;
        let resource_path = config.resource_path();
        let metadata_url = format!("{}{WELL_KNOWN}{resource_path}", config.resource_origin());
        let mut paths = vec![format!("{WELL_KNOWN}{resource_path}"), WELL_KNOWN.to_owned()];
        // The URL a client built from the door's own path, if the resource names another.
        if path != "/" {
            paths.push(format!("{WELL_KNOWN}{}", path.trim_end_matches('/')));
        }
        paths.dedup();
        let mut document = json!({
            "resource": config.resource,
            "authorization_servers": config.authorization_servers,
            "bearer_methods_supported": ["header"],
        });
        if !config.scopes_supported.is_empty() {
            document["scopes_supported"] = json!(config.scopes_supported);
        }
        if let Some(name) = &config.resource_name {
            document["resource_name"] = json!(name);
        }
        if let Some(page) = &config.resource_documentation {
            document["resource_documentation"] = json!(page);
        }
        let mut bytes = serde_json::to_vec_pretty(&document).unwrap_or_default();
        bytes.push(b'\n');
        Ok(ResourceServer { config: config.clone(), metadata_url, paths, document: Bytes::from(bytes), exchange: None })
    }

    /// Whether `path` (canonical) is where the metadata document is served.
    pub(super) fn serves(&self, path: &str) -> bool {
        self.paths.iter().any(|p| p == path)
    }

    /// The metadata document for a request at one of its paths: GET only (405 otherwise),
    /// public (no credential, any origin may read it).
    pub(super) fn metadata(&self, method: &Method) -> Response<Body> {
        if method != Method::GET {
            let mut response = Response::new(full(Bytes::new()));
            *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            response.headers_mut().insert(http::header::ALLOW, HeaderValue::from_static("GET"));
            return response;
        }
        let mut response = Response::new(full(self.document.clone()));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
        response
    }

    /// Before anything else at the endpoint: the request must carry a bearer token whose
    /// audience names the resource. The token is not verified here (the gate does that,
    /// and answers 401 when it fails): this only refuses, never admits. A refusal is
    /// audited as an authentication failure and answered 401 with the challenge.
    pub(super) fn check_token(&self, gate: &Gate, normal: &Normal) -> Result<(), Box<Response<Body>>> {
        let refuse = |error: Option<&str>, reason: String| {
            let ctx = AuditContext {
                front_door: "mcp".into(),
                time_ms: normal.received_at_ms,
                status: Some(401),
                ..AuditContext::default()
            };
            if let Some(sink) = gate.audit_sink() {
                sink.record(&AuditRecord::for_auth_failure(&ctx, normal, &reason));
            }
            tracing::info!(reason, "MCP request refused by the OAuth resource server");
            let text = format!("unauthenticated: {reason}");
            let mut answer = super::rpc_error(401, &Value::Null, mcp::ERROR_UNAUTHENTICATED, &text, "");
            self.challenge(&mut answer, error, Some(&reason));
            Box::new(answer)
        };
        let Some(token) = bearer(&normal.headers) else {
            return Err(refuse(None, "no bearer token: this MCP endpoint is an OAuth resource server".into()));
        };
        let audiences = match unverified_audiences(token) {
            Ok(audiences) => audiences,
            Err(e) => return Err(refuse(Some("invalid_token"), format!("the bearer token cannot be read: {e}"))),
        };
        let resource = canonical(&self.config.resource);
        if !audiences.iter().any(|aud| canonical(aud) == resource) {
            let named: Vec<String> = audiences.iter().take(4).map(|a| short(a)).collect();
            let reason = format!(
                "the token's audience ({}) does not include this resource ({}) (RFC 8707)",
                if named.is_empty() { "none".to_owned() } else { named.join(", ") },
                self.config.resource
            );
            return Err(refuse(Some("invalid_token"), reason));
        }
        Ok(())
    }

    /// Sets the `WWW-Authenticate` challenge on a 401 from the door: the metadata URL, the
    /// scopes for basic use, and `error` when a token was presented.
    pub(super) fn challenge(&self, answer: &mut Response<Body>, error: Option<&str>, description: Option<&str>) {
        let mut parts = vec![format!("resource_metadata=\"{}\"", self.metadata_url)];
        if !self.config.scopes_supported.is_empty() {
            parts.push(format!("scope=\"{}\"", self.config.scopes_supported.join(" ")));
        }
        if let Some(error) = error {
            parts.push(format!("error=\"{error}\""));
            if let Some(description) = description {
                parts.push(format!("error_description=\"{}\"", quoted_string(description)));
            }
        }
        let value = format!("Bearer {}", parts.join(", "));
        match HeaderValue::from_str(&value) {
            Ok(value) => {
                answer.headers_mut().insert(WWW_AUTHENTICATE, value);
            }
            Err(_) => {
                answer.headers_mut().remove(WWW_AUTHENTICATE);
            }
        }
    }

    /// Any other 401 the door answers (the gate refused the token: bad signature, expired,
    /// unknown issuer, two credentials): the challenge with `error="invalid_token"`. Such
    /// an answer always follows a presented token ([`ResourceServer::check_token`] answered
    /// those without one).
    pub(super) fn on_answer(&self, answer: &mut Response<Body>) {
        if answer.status() == StatusCode::UNAUTHORIZED {
            self.challenge(answer, Some("invalid_token"), None);
        }
    }

    /// With `[server.mcp.oauth.exchange]`: sets the server's `Authorization` to the token
    /// exchanged for the caller's ([`keep_caller_token`]); without, nothing. Fails closed:
    /// no caller token, or no exchanged one, and the request is not sent.
    pub(super) async fn authorize_upstream(&self, request: &mut http::Request<Body>) -> Result<(), ExchangeError> {
        let caller = request.extensions_mut().remove::<CallerToken>();
        let Some(exchanger) = &self.exchange else { return Ok(()) };
        let Some(CallerToken(caller)) = caller else {
            return Err(ExchangeError { status: 401, reason: "no bearer token to exchange".into() });
        };
        let token = exchanger.token_for(&caller).await?;
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| ExchangeError { status: 502, reason: "token-exchange-failed: unusable token".into() })?;
        request.headers_mut().insert(http::header::AUTHORIZATION, value);
        Ok(())
    }

    /// The step-up answer for a refused call: a `missing-scope` denial naming the scopes
    /// it needs becomes 403 with `error="insufficient_scope", scope="…"`. `None` for any
    /// other refusal (and for scopes that are not RFC 6749 scope tokens: never written
    /// into a header).
    pub(super) fn step_up(&self, refusal: &Refusal) -> Option<HeaderValue> {
        if refusal.code != MISSING_SCOPE {
            return None;
        }
        let scopes: Vec<&str> = refusal.scope.as_deref()?.split(' ').filter(|s| !s.is_empty()).collect();
        if scopes.is_empty() || !scopes.iter().all(|s| is_scope_token(s)) {
            return None;
        }
        let value = format!(
            "Bearer error=\"insufficient_scope\", scope=\"{}\", resource_metadata=\"{}\", error_description=\"{}\"",
            scopes.join(" "),
            self.metadata_url,
            quoted_string(&refusal.reason)
        );
        HeaderValue::from_str(&value).ok()
    }
}

/// The bearer token of the request's (single) `Authorization` header.
fn bearer(headers: &[(String, String)]) -> Option<&str> {
    let mut values = headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("authorization"));
    let (_, value) = values.next()?;
    let (scheme, token) = value.trim().split_once(|c: char| c.is_ascii_whitespace())?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

/// A resource URI compared as RFC 8707 intends: scheme and host case-insensitive ("SHOULD
/// accept uppercase scheme and host components"), no trailing slash.
fn canonical(uri: &str) -> String {
    let uri = uri.trim_end_matches('/');
    match uri.split_once("://") {
        Some((scheme, rest)) => {
            let at = rest.find('/').unwrap_or(rest.len());
            format!("{}://{}{}", scheme.to_ascii_lowercase(), rest[..at].to_ascii_lowercase(), &rest[at..])
        }
        None => uri.to_owned(),
    }
}

/// An attacker-chosen value quoted for a message: escaped, at most 64 characters.
fn short(value: &str) -> String {
    let cut: String = value.chars().take(64).collect();
    if cut.len() < value.len() { format!("{cut:?}…") } else { format!("{cut:?}") }
}

/// Text for an RFC 7230 quoted-string: `"` and `\` dropped, controls and non-ASCII as `?`.
fn quoted_string(text: &str) -> String {
    text.chars()
        .filter(|c| !matches!(c, '"' | '\\'))
        .map(|c| if c.is_ascii() && !c.is_ascii_control() { c } else { '?' })
        .take(200)
        .collect()
}

/// Removes every credential header from a request to the MCP server: `Authorization`,
/// `Proxy-Authorization`, and those the configured identities read.
pub(super) fn strip_credentials(headers: &mut HeaderMap, gate: &Gate) {
    headers.remove(http::header::AUTHORIZATION);
    headers.remove(http::header::PROXY_AUTHORIZATION);
    if let Some(authenticator) = gate.authenticator() {
        for name in authenticator.credential_headers() {
            headers.remove(name);
        }
    }
}

// ---------------------------------------------------------------------------------------
// RFC 8693 token exchange
// ---------------------------------------------------------------------------------------

/// The caller's bearer token, carried in a request's extensions (never sent) from where the
/// door builds the server's request to where it sends it, for [`Exchanger`].
#[derive(Clone)]
pub(super) struct CallerToken(String);

/// Keeps the caller's bearer token of `parts` aside, before its headers are stripped.
pub(super) fn keep_caller_token(parts: &mut http::request::Parts) {
    let token = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(|c: char| c.is_ascii_whitespace()))
        .filter(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty())
        .map(|(_, token)| token.trim().to_owned());
    if let Some(token) = token {
        parts.extensions.insert(CallerToken(token));
    }
}

/// Exchanged tokens kept at once; past this the expired go, then the one expiring first.
const MAX_EXCHANGED: usize = 4_096;

/// An exchanged token is used until this long before it expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);

/// Largest token endpoint answer read.
const MAX_TOKEN_ANSWER: usize = 64 * 1024;

/// The longest an exchanged token is cached, whatever its `expires_in` says (an absurd one
/// would overflow the expiry instant).
const MAX_CACHED: Duration = Duration::from_secs(24 * 60 * 60);

/// Why a token could not be exchanged: 401 when the authorization server refused the
/// caller's token (`invalid_grant`, `invalid_token`, …), 502 when it could not be asked or
/// answered anything else. Either way nothing is sent to the MCP server.
#[derive(Debug)]
pub(super) struct ExchangeError {
    pub(super) status: u16,
    pub(super) reason: String,
}

/// `[server.mcp.oauth.exchange]`: the door as an OAuth client exchanging callers' tokens
/// (RFC 8693 §2.1: `subject_token` the caller's, the door authenticated as the client and
/// so the actor the new token's `act` names), each result cached, keyed by a SHA-256 of the
/// caller's token, until shortly before it expires (at most [`MAX_CACHED`]).
pub(super) struct Exchanger {
    config: TokenExchange,
    endpoint: http::Uri,
    /// `Authorization: Basic …` of the door's client (RFC 6749 §2.3.1).
    client_auth: HeaderValue,
    client: UpstreamClient,
    cache: Mutex<HashMap<[u8; 32], (String, Instant)>>,
}

impl Exchanger {
    pub(super) fn new(config: &TokenExchange, base_dir: &Path) -> anyhow::Result<Exchanger> {
        config.check().map_err(anyhow::Error::msg)?;
        let secret = std::env::var(&config.client_secret_env).ok().filter(|s| !s.is_empty()).ok_or_else(|| {
            anyhow::anyhow!(
                "[server.mcp.oauth.exchange] client_secret_env: the environment variable {} is not set",
                config.client_secret_env
            )
        })?;
        let endpoint: http::Uri = config
            .token_endpoint
            .parse()
            .map_err(|e| anyhow::anyhow!("[server.mcp.oauth.exchange] token_endpoint: {e}"))?;
        let basic = format!("{}:{}", form_encode(&config.client_id), form_encode(&secret));
        let client_auth =
            HeaderValue::from_str(&format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(basic)))?;
        let key = "[server.mcp.oauth.exchange]";
        let client = UpstreamClient::new(&UpstreamTls::default(), base_dir, false, key)?;
        Ok(Exchanger { config: config.clone(), endpoint, client_auth, client, cache: Mutex::default() })
    }

    /// The token for the MCP server in place of `caller`'s: cached, or exchanged now.
    pub(super) async fn token_for(&self, caller: &str) -> Result<String, ExchangeError> {
        let key: [u8; 32] = Sha256::digest(caller.as_bytes()).into();
        let now = Instant::now();
        if let Some((token, until)) = self.cache.lock().unwrap_or_else(PoisonError::into_inner).get(&key)
            && *until > now
        {
            return Ok(token.clone());
        }
        let (token, lifetime) = self.exchange(caller).await?;
        let until = now + lifetime.min(MAX_CACHED).saturating_sub(EXPIRY_MARGIN);
        if until > now {
            let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            if cache.len() >= MAX_EXCHANGED {
                cache.retain(|_, (_, until)| *until > now);
            }
            if cache.len() >= MAX_EXCHANGED
                && let Some(first) = cache.iter().min_by_key(|(_, (_, until))| *until).map(|(k, _)| *k)
            {
                cache.remove(&first);
            }
            cache.insert(key, (token.clone(), until));
        }
        Ok(token)
    }

    /// One token exchange request; the new token and how long it lives.
    async fn exchange(&self, caller: &str) -> Result<(String, Duration), ExchangeError> {
        let bad_gateway = |reason: String| ExchangeError { status: 502, reason };
        let mut form = vec![
            ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
            ("subject_token", caller),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:access_token"),
            ("requested_token_type", "urn:ietf:params:oauth:token-type:access_token"),
        ];
        for (name, value) in
            [("audience", &self.config.audience), ("resource", &self.config.resource), ("scope", &self.config.scope)]
        {
            if let Some(value) = value {
                form.push((name, value));
            }
        }
        let body: Vec<String> = form.iter().map(|(k, v)| format!("{k}={}", form_encode(v))).collect();
        let request = http::Request::builder()
            .method(Method::POST)
            .uri(self.endpoint.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::AUTHORIZATION, self.client_auth.clone())
            .body(full(body.join("&")))
            .map_err(|e| bad_gateway(format!("token-exchange-failed: {e}")))?;
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let ask = async {
            let response = self.client.request(request).await.map_err(|e| e.to_string())?;
            let status = response.status();
            let bytes = read_capped(response.into_body(), MAX_TOKEN_ANSWER).await.map_err(|_| "unreadable answer")?;
            Ok::<_, String>((status, bytes))
        };
        let (status, bytes) = match tokio::time::timeout(timeout, ask).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, endpoint = %self.config.token_endpoint, "token exchange failed");
                return Err(bad_gateway("token-exchange-failed: the authorization server could not be reached".into()));
            }
            Err(_) => return Err(bad_gateway(format!("token-exchange-failed: no answer within {timeout:?}"))),
        };
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            let error = answer.get("error").and_then(Value::as_str).unwrap_or("");
            let refused = matches!(error, "invalid_grant" | "invalid_token" | "invalid_target" | "invalid_scope");
            let reason = format!(
                "token-exchange-refused: the authorization server answered {} {}",
                status.as_u16(),
                short(error)
            );
            return Err(ExchangeError { status: if refused { 401 } else { 502 }, reason });
        }
        let token = answer.get("access_token").and_then(Value::as_str).filter(|t| !t.is_empty());
        let bearer = answer.get("token_type").and_then(Value::as_str).is_some_and(|t| t.eq_ignore_ascii_case("bearer"));
        let (Some(token), true) = (token, bearer) else {
            return Err(bad_gateway("token-exchange-failed: the answer has no bearer access_token".into()));
        };
        if token == caller || HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
            return Err(bad_gateway("token-exchange-failed: the answer's access_token cannot be sent".into()));
        }
        let lifetime = Duration::from_secs(answer.get("expires_in").and_then(Value::as_u64).unwrap_or(0));
        Ok((token.to_owned(), lifetime))
    }
}

/// RFC 6749 appendix B: `application/x-www-form-urlencoded`, as the client id and secret are
/// encoded before Basic authentication too.
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(byte as char),
            b' ' => out.push('+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(HEX[usize::from(byte >> 4)] as char);
                out.push(HEX[usize::from(byte & 15)] as char);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_compare_with_scheme_and_host_folded() {
        assert_eq!(canonical("HTTPS://MCP.Example.com/mcp/"), "https://mcp.example.com/mcp");
        assert_ne!(canonical("https://mcp.example.com/MCP"), "https://mcp.example.com/mcp");
    }

    #[test]
    fn bearer_reads_only_the_bearer_scheme() {
        let h = |v: &str| vec![("Authorization".to_owned(), v.to_owned())];
        assert_eq!(bearer(&h("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&h("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(&h("Basic abc")), None);
        assert_eq!(bearer(&h("Bearer ")), None);
    }

    #[test]
    fn form_values_are_url_encoded() {
        assert_eq!(form_encode("a b:c/d+e%"), "a+b%3Ac%2Fd%2Be%25");
        assert_eq!(form_encode("AZaz09-._*"), "AZaz09-._*");
    }

    #[test]
    fn quoted_strings_cannot_break_out() {
        assert_eq!(quoted_string("a \"b\" \\c\r\n"), "a b c??");
    }
}
