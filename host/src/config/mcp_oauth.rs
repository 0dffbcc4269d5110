//! `[server.mcp.oauth]`: the MCP door as an OAuth 2.1 resource server (MCP 2026-07-28,
//! basic/authorization). What it publishes (the RFC 9728 protected-resource metadata) and
//! which tokens it accepts (audience = `resource`, RFC 8707); the door's side is
//! `src/serve/mcp_oauth.rs`.

use serde::Deserialize;

/// `[server.mcp.oauth]`: every request to the MCP endpoint needs a bearer token issued for
/// `resource`; the metadata document tells clients where to get one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct McpOAuth {
    /// The canonical URI of this MCP endpoint (RFC 8707 resource indicator), e.g.
    /// `https://mcp.example.com/mcp`: the audience tokens must carry, and the `resource` of
    /// the metadata document. https (http only on a loopback host), no fragment, no query.
    pub resource: String,
    /// The authorization servers (issuer URLs) clients get tokens from; at least one.
    pub authorization_servers: Vec<String>,
    /// The scopes needed for basic use (`scopes_supported`), also named in the 401's
    /// `scope=` challenge. Default: none (no `scope=`).
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    /// A human-readable name for the metadata document (`resource_name`).
    #[serde(default)]
    pub resource_name: Option<String>,
    /// A page documenting the endpoint for developers (`resource_documentation`).
    #[serde(default)]
    pub resource_documentation: Option<String>,
    /// `[server.mcp.oauth.exchange]`: send the MCP server a token exchanged for the
    /// caller's (RFC 8693) instead of none.
    #[serde(default)]
    pub exchange: Option<TokenExchange>,
}

/// `[server.mcp.oauth.exchange]`: the door, as an OAuth client of `token_endpoint`, exchanges
/// the caller's token (`subject_token`) for one issued to the MCP server (`audience` /
/// `resource`); the authorization server records the door as the actor (`act`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TokenExchange {
    /// The authorization server's token endpoint (https, or http on a loopback host).
    pub token_endpoint: String,
    /// The door's client id at that server (HTTP Basic client authentication).
    pub client_id: String,
    /// The environment variable holding the door's client secret.
    pub client_secret_env: String,
    /// The logical name of the MCP server the new token is for (`audience`).
    #[serde(default)]
    pub audience: Option<String>,
    /// The MCP server's URI the new token is for (`resource`, RFC 8707).
    #[serde(default)]
    pub resource: Option<String>,
    /// The scopes asked for the new token (space-separated), if any.
    #[serde(default)]
    pub scope: Option<String>,
    /// How long to wait for the token endpoint, in ms (default 5000).
    #[serde(default = "default_exchange_timeout")]
    pub timeout_ms: u64,
}

fn default_exchange_timeout() -> u64 {
    5_000
}

impl TokenExchange {
    /// Checks the table; errors name the key.
    pub fn check(&self) -> Result<(), String> {
        let key = |k: &str| format!("[server.mcp.oauth.exchange] {k}");
        check_url(&self.token_endpoint, false)
            .map_err(|e| format!("{}: {:?} {e}", key("token_endpoint"), self.token_endpoint))?;
        if self.client_id.trim().is_empty() {
            return Err(format!("{}: must not be empty", key("client_id")));
        }
        if self.client_secret_env.trim().is_empty() {
            return Err(format!("{}: must name an environment variable", key("client_secret_env")));
        }
        if self.audience.is_none() && self.resource.is_none() {
            return Err(format!(
                "{}: name the MCP server the new token is for (`audience` or `resource`)",
                key("audience")
            ));
        }
        if let Some(resource) = &self.resource {
            check_url(resource, true).map_err(|e| format!("{}: {resource:?} {e}", key("resource")))?;
        }
        if let Some(scope) = &self.scope
            && !scope.split(' ').all(is_scope_token)
        {
            return Err(format!("{}: {scope:?} is not a space-separated list of scopes", key("scope")));
        }
        if self.timeout_ms == 0 {
            return Err(format!("{}: must be more than 0", key("timeout_ms")));
        }
        Ok(())
    }
}

impl McpOAuth {
    /// Checks the section: `resource` and each authorization server an absolute URL (https,
    /// or http on a loopback host) without fragment (nor query for `resource`), scopes as
    /// RFC 6749 scope tokens. Errors name the key.
    pub fn check(&self) -> Result<(), String> {
        let key = |k: &str| format!("[server.mcp.oauth] {k}");
        check_url(&self.resource, true).map_err(|e| format!("{}: {:?} {e}", key("resource"), self.resource))?;
        if self.authorization_servers.is_empty() {
            return Err(format!(
                "{}: must name at least one authorization server (e.g. [\"https://auth.example.com\"])",
                key("authorization_servers")
            ));
        }
        for (i, server) in self.authorization_servers.iter().enumerate() {
            check_url(server, true)
                .map_err(|e| format!("{}: {server:?} {e}", key(&format!("authorization_servers[{i}]"))))?;
        }
        for (i, scope) in self.scopes_supported.iter().enumerate() {
            if !is_scope_token(scope) {
                return Err(format!(
                    "{}: {scope:?} is not a scope (printable ASCII, no space, `\"` or `\\`)",
                    key(&format!("scopes_supported[{i}]"))
                ));
            }
        }
        if let Some(page) = &self.resource_documentation {
            check_url(page, false).map_err(|e| format!("{}: {page:?} {e}", key("resource_documentation")))?;
        }
        if let Some(exchange) = &self.exchange {
            exchange.check()?;
        }
        Ok(())
    }

    /// The path of `resource` (`/mcp`; empty for a resource at the root).
    pub fn resource_path(&self) -> &str {
        let rest = self.resource.split_once("://").map_or("", |(_, rest)| rest);
        rest.find('/').map_or("", |at| rest[at..].trim_end_matches('/'))
    }

    /// `scheme://authority` of `resource`.
    pub fn resource_origin(&self) -> &str {
        let path = self.resource_path();
        let end = self.resource.trim_end_matches('/').len() - path.len();
        &self.resource[..end]
    }
}

/// An OAuth scope token (RFC 6749 §3.3): `%x21 / %x23-5B / %x5D-7E`, at least one.
pub fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty() && scope.bytes().all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// An absolute http(s) URL: https, or http on a loopback host; a host; no fragment; no
/// query when `strict` (a resource or issuer identifier).
fn check_url(url: &str, strict: bool) -> Result<(), &'static str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("is not an absolute URL (e.g. \"https://mcp.example.com/mcp\")");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host.starts_with('[') {
        host.split_once(']').map_or(host, |(h, _)| &h[1..])
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    if host.is_empty() || authority.contains('@') || url.contains(char::is_whitespace) {
        return Err("is not an absolute URL with a host (and no user info)");
    }
    let loopback = matches!(host, "localhost" | "::1") || host.starts_with("127.");
    match scheme {
        "https" => {}
        "http" if loopback => {}
        "http" => return Err("must be https (http only on a loopback host)"),
        _ => return Err("must be an https URL"),
    }
    if url.contains('#') {
        return Err("must not have a fragment");
    }
    if strict && url.contains('?') {
        return Err("must not have a query");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oauth(resource: &str, servers: &[&str], scopes: &[&str]) -> McpOAuth {
        McpOAuth {
            resource: resource.into(),
            authorization_servers: servers.iter().map(|s| (*s).into()).collect(),
            scopes_supported: scopes.iter().map(|s| (*s).into()).collect(),
            resource_name: None,
            resource_documentation: None,
            exchange: None,
        }
    }

    #[test]
    fn the_section_is_checked_key_by_key() {
        assert_eq!(
            oauth("https://mcp.example.com/mcp", &["https://auth.example.com"], &["files:read"]).check(),
            Ok(())
        );
        assert_eq!(oauth("http://127.0.0.1:8090/mcp", &["http://localhost:9000"], &[]).check(), Ok(()));
        for (bad, key) in [
            (oauth("mcp.example.com/mcp", &["https://a.example"], &[]), "resource: "),
            (oauth("http://mcp.example.com/mcp", &["https://a.example"], &[]), "resource: "),
            (oauth("https://mcp.example.com/mcp#x", &["https://a.example"], &[]), "resource: "),
            (oauth("https://mcp.example.com/mcp?a=1", &["https://a.example"], &[]), "resource: "),
            (oauth("https:///mcp", &["https://a.example"], &[]), "resource: "),
            (oauth("https://mcp.example.com/mcp", &[], &[]), "authorization_servers: "),
            (
                oauth("https://mcp.example.com/mcp", &["https://a.example", "ftp://b"], &[]),
                "authorization_servers[1]: ",
            ),
            (oauth("https://mcp.example.com/mcp", &["https://a.example"], &["a b"]), "scopes_supported[0]: "),
            (oauth("https://mcp.example.com/mcp", &["https://a.example"], &["ok", "q\"x"]), "scopes_supported[1]: "),
        ] {
            let error = bad.check().unwrap_err();
            assert!(error.starts_with(&format!("[server.mcp.oauth] {key}")), "{error}");
        }
    }

    #[test]
    fn the_exchange_table_is_checked_key_by_key() {
        let exchange = |endpoint: &str, audience: Option<&str>, scope: Option<&str>| TokenExchange {
            token_endpoint: endpoint.into(),
            client_id: "door".into(),
            client_secret_env: "SECRET".into(),
            audience: audience.map(Into::into),
            resource: None,
            scope: scope.map(Into::into),
            timeout_ms: 5000,
        };
        assert_eq!(exchange("https://as.example/token", Some("invoices"), Some("a b")).check(), Ok(()));
        for (bad, key) in [
            (exchange("http://as.example/token", Some("x"), None), "token_endpoint"),
            (exchange("https://as.example/token", None, None), "audience"),
            (exchange("https://as.example/token", Some("x"), Some("a  b")), "scope"),
        ] {
            let error = bad.check().unwrap_err();
            assert!(error.starts_with(&format!("[server.mcp.oauth.exchange] {key}: ")), "{error}");
        }
    }

    #[test]
    fn the_resource_splits_into_origin_and_path() {
        let o = oauth("https://mcp.example.com:8443/public/mcp", &[], &[]);
        assert_eq!((o.resource_origin(), o.resource_path()), ("https://mcp.example.com:8443", "/public/mcp"));
        let o = oauth("https://mcp.example.com", &[], &[]);
        assert_eq!((o.resource_origin(), o.resource_path()), ("https://mcp.example.com", ""));
        let o = oauth("https://mcp.example.com/", &[], &[]);
        assert_eq!((o.resource_origin(), o.resource_path()), ("https://mcp.example.com", ""));
    }
}
