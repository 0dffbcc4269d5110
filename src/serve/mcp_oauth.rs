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

use bytes::Bytes;
use http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use portcullis_host::adapters::mcp;
use portcullis_host::audit::{AuditContext, AuditRecord};
use portcullis_host::config::{McpOAuth, McpSection, is_scope_token};
use portcullis_host::exchange::Request as Normal;
use portcullis_host::gate::{Gate, Refusal};
use portcullis_host::identity::unverified_audiences;
use serde_json::{Value, json};

use super::{Body, Live, full};

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
        Ok(Some(ResourceServer::new(config, &section.path).map_err(anyhow::Error::msg)?))
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
        Ok(ResourceServer { config: config.clone(), metadata_url, paths, document: Bytes::from(bytes) })
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
    fn quoted_strings_cannot_break_out() {
        assert_eq!(quoted_string("a \"b\" \\c\r\n"), "a b c??");
    }
}
