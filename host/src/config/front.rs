//! The `portcullis.toml` sections for running as a service: `[server.*]` front doors,
//! `[audit]` and `[approvals]`.
//!
//! Plain data: the library parses and checks them so a config is validated in one place,
//! but it runs no server. `portcullis serve` (or an embedder's own gateway) reads them.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::tls::{ListenerTls, UpstreamTls};

/// `[server]`: which front doors `portcullis serve` opens. A door without its table stays
/// closed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ServerSection {
    /// `[server.proxy]`: the reverse proxy.
    pub proxy: Option<ProxySection>,
    /// `[server.forward_auth]`: the forward-auth endpoint for nginx, Traefik and Caddy.
    pub forward_auth: Option<ForwardAuthSection>,
    /// `[server.ext_authz]`: the Envoy ext_authz gRPC service.
    pub ext_authz: Option<ListenSection>,
    /// `[server.admin]`: health, readiness, metrics and the approvals API.
    pub admin: Option<AdminSection>,
    /// `[server.mcp]`: the MCP (Model Context Protocol) front door for AI agents' tool calls.
    pub mcp: Option<McpSection>,
}

/// `[server.mcp]`: a Streamable HTTP proxy between MCP clients and one MCP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct McpSection {
    /// Address to listen on, e.g. `127.0.0.1:8090`.
    pub listen: SocketAddr,
    /// The MCP server's Streamable HTTP endpoint, e.g. `http://127.0.0.1:8000/mcp`.
    pub upstream: String,
    /// The endpoint path clients use at this door (default `/mcp`); other paths get 404.
    #[serde(default = "default_mcp_path")]
    pub path: String,
    /// Largest JSON-RPC message accepted from a client, in bytes (default 10 MiB).
    #[serde(default = "default_body_cap")]
    pub max_request_bytes: usize,
    /// Largest answer (a JSON body or one SSE event) read from the server, in bytes
    /// (default 10 MiB); a larger one is refused, never passed on unread.
    #[serde(default = "default_body_cap")]
    pub max_response_bytes: usize,
    /// How long to wait for the server's response headers, in ms (default 30000).
    #[serde(default = "default_upstream_timeout")]
    pub upstream_timeout_ms: u64,
    /// Scheme policies see for requests to this door (default `http`).
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// Remove from `tools/list` answers the tools the caller's policies would deny
    /// (default true).
    #[serde(default = "default_true")]
    pub filter_tools: bool,
    /// `[server.mcp.pins]`: pinned tool definitions (docs/mcp.md "Pinned tool definitions").
    /// Absent: learn mode, pins kept in memory.
    #[serde(default)]
    pub pins: Option<crate::adapters::mcp_pins::PinsSection>,
    /// `[server.mcp.tls]`: listen with TLS (default: plaintext).
    #[serde(default)]
    pub tls: Option<ListenerTls>,
    /// Accept HTTP/2 without TLS ("h2c", prior knowledge) beside HTTP/1.1 on a plaintext
    /// listener (default false). Over TLS, HTTP/2 is always offered by ALPN.
    #[serde(default)]
    pub h2c: bool,
    /// `[server.mcp.upstream_tls]`: how an `https://` upstream's certificate is checked
    /// and what this door presents to it (default: the system's roots, full verification).
    #[serde(default)]
    pub upstream_tls: UpstreamTls,
    /// Speak HTTP/2 to an `http://` upstream with prior knowledge ("h2c"; default false,
    /// HTTP/1.1). An `https://` upstream is offered HTTP/2 and HTTP/1.1 by ALPN.
    #[serde(default)]
    pub upstream_h2c: bool,
    /// Browser origins allowed to call this door, exactly as a browser sends them in
    /// `Origin` (`https://app.example.com`, with a port when not the scheme's default).
    /// Default: none. A request carrying an `Origin` not listed is refused (403): MCP's
    /// guard against DNS rebinding, where a web page makes a user's browser call a local
    /// server. Requests without `Origin` (agents, SDK clients) are not affected.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// `[[server.mcp.request_state_keys]]`: the keys that seal the `requestState` of an
    /// approval asked as a Multi Round-Trip Request (docs/mcp.md "Approvals"); the first
    /// seals, all open (rotation). None: a random key per process, with a warning.
    #[serde(default)]
    pub request_state_keys: Vec<RequestStateKey>,
    /// The page a person opens to decide an approval, pointed at by the URL elicitation a
    /// 2026-07-28 client gets (`{id}` replaced, or `/ID` appended). Default: `[approvals]
    /// inbox_url`, else the admin listener's approvals API.
    #[serde(default)]
    pub approval_url: Option<String>,
    /// `[server.mcp.oauth]`: the door as an OAuth 2.1 resource server (protected-resource
    /// metadata, 401/403 challenges, token audience); docs/mcp.md "Authorization".
    #[serde(default)]
    pub oauth: Option<super::McpOAuth>,
    /// `_meta` keys a request may carry to the server besides the protocol's own
    /// (`io.modelcontextprotocol/…`, `progressToken`, `traceparent`, `tracestate`,
    /// `baggage`). Default: none; any other key is removed, since no policy judges `_meta`
    /// (docs/mcp.md "What the server gets").
    #[serde(default)]
    pub pass_meta: Vec<String>,
}

/// One `[[server.mcp.request_state_keys]]` entry: an id and where its secret (hex or
/// base64, at least 32 bytes) is read from, `env` or `file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RequestStateKey {
    /// The key's id, written into each state it seals (`[A-Za-z0-9_-]{1,32}`).
    pub id: String,
    /// The environment variable holding the secret.
    #[serde(default)]
    pub env: Option<String>,
    /// The file holding the secret (relative to the config file's folder).
    #[serde(default)]
    pub file: Option<PathBuf>,
}

impl McpSection {
    /// Checks [`allowed_origins`](McpSection::allowed_origins): each must be an origin as
    /// browsers serialise it, `scheme://host[:port]` in lower case with no path, or the
    /// comparison would never match.
    pub fn check_origins(&self) -> Result<(), String> {
        for origin in &self.allowed_origins {
            let Some((scheme, host)) = origin.split_once("://") else {
                return Err(format!(
                    "[server.mcp] allowed_origins: {origin:?} is not an origin (e.g. \"https://app.example.com\")"
                ));
            };
            let well_formed = matches!(scheme, "http" | "https")
                && !host.is_empty()
                && !host.contains(['/', '?', '#', '@', ' '])
                && !origin.bytes().any(|b| b.is_ascii_uppercase());
            if !well_formed {
                return Err(format!(
                    "[server.mcp] allowed_origins: {origin:?} is not an origin as a browser sends it: \
                     http or https, lower case, a host and an optional port, no path (e.g. \"https://app.example.com\")"
                ));
            }
        }
        Ok(())
    }
}

/// `[server.proxy]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ProxySection {
    /// Address to listen on, e.g. `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Where allowed requests go: `http://host:port` (a path prefix is kept in front of
    /// the request's path).
    pub upstream: String,
    /// Largest request body accepted, in bytes (default 10 MiB); larger ones get 413.
    #[serde(default = "default_body_cap")]
    pub max_request_bytes: usize,
    /// Largest upstream response body buffered when a policy needs it, in bytes (default
    /// 10 MiB); larger ones get 502.
    #[serde(default = "default_body_cap")]
    pub max_response_bytes: usize,
    /// How long to wait for the upstream's response headers, in ms (default 30000).
    #[serde(default = "default_upstream_timeout")]
    pub upstream_timeout_ms: u64,
    /// Scheme policies see for requests to this door (default `http`; say `https` when a
    /// TLS terminator sits in front).
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// `[server.proxy.tls]`: listen with TLS (default: plaintext).
    #[serde(default)]
    pub tls: Option<ListenerTls>,
    /// Accept HTTP/2 without TLS ("h2c", prior knowledge) beside HTTP/1.1 on a plaintext
    /// listener (default false). Over TLS, HTTP/2 is always offered by ALPN.
    #[serde(default)]
    pub h2c: bool,
    /// `[server.proxy.upstream_tls]`: how an `https://` upstream's certificate is checked
    /// and what this door presents to it (default: the system's roots, full verification).
    #[serde(default)]
    pub upstream_tls: UpstreamTls,
    /// Speak HTTP/2 to an `http://` upstream with prior knowledge ("h2c"; default false,
    /// HTTP/1.1). An `https://` upstream is offered HTTP/2 and HTTP/1.1 by ALPN.
    #[serde(default)]
    pub upstream_h2c: bool,
}

/// `[server.forward_auth]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ForwardAuthSection {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The proxy that asks: `nginx` (default; `X-Original-Method`/`-URI`), `traefik` or
    /// `caddy` (`X-Forwarded-Method`/`-Uri`). A sub-request carrying the other family's
    /// method or URI header is refused.
    #[serde(default)]
    pub proxy: crate::adapters::forward_auth::HeaderFamily,
    /// Scheme assumed when the proxy sends no `X-Forwarded-Proto` (default `http`).
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// `[server.forward_auth.tls]`: listen with TLS (default: plaintext).
    #[serde(default)]
    pub tls: Option<ListenerTls>,
}

/// A front door that only needs an address.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ListenSection {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// `[server.ext_authz.tls]`: listen with TLS (default: plaintext).
    #[serde(default)]
    pub tls: Option<ListenerTls>,
}

/// `[server.admin]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AdminSection {
    /// Address to listen on; keep it private (loopback or an internal network).
    pub listen: SocketAddr,
    /// Environment variable holding the admin token for the approvals API. The token is
    /// never written in the config.
    #[serde(default)]
    pub token_env: Option<String>,
    /// SHA-256 (hex) of the admin token, for deployments that cannot pass secrets by
    /// environment.
    #[serde(default)]
    pub token_sha256: Option<String>,
    /// `[server.admin.tls]`: listen with TLS (default: plaintext).
    #[serde(default)]
    pub tls: Option<ListenerTls>,
}

/// `[audit]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AuditSection {
    /// Where decision records go: a file (appended, created with mode 0600), or `-` for
    /// standard output.
    pub path: PathBuf,
}

/// `[approvals]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ApprovalsSection {
    /// The SQLite file pending approvals are kept in (created if missing); for the default
    /// `backend = "sqlite"`.
    #[serde(default)]
    pub store: Option<PathBuf>,
    /// `sqlite` (default) or `postgres` (docs/replicas.md).
    #[serde(default)]
    pub backend: super::state::ApprovalBackend,
    /// PostgreSQL: the URL, without a password.
    #[serde(default)]
    pub url: Option<String>,
    /// PostgreSQL: the environment variable holding the URL (which may carry a password).
    #[serde(default)]
    pub url_env: Option<String>,
    /// PostgreSQL: connections in the pool (default 8).
    #[serde(default)]
    pub pool_size: Option<usize>,
    /// PostgreSQL: how long one operation may take, in ms (default 250).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// PostgreSQL: `deny` (default: 503 `state-unavailable`) or `allow` (a request that needs
    /// an approval goes through while the database is away).
    #[serde(default)]
    pub on_error: crate::state::OnError,
    /// `[approvals.groups.NAME]`: who may decide the approvals of each approver group
    /// (docs/approvals.md). A group without an entry is decided with the admin token only.
    #[serde(default)]
    pub groups: std::collections::BTreeMap<String, crate::approval::GroupConfig>,
    /// The link notifications give approvers: a URL with `{id}` where the approval's id
    /// goes (without `{id}`, `/ID` is added).
    #[serde(default)]
    pub inbox_url: Option<String>,
    /// `[[approvals.notify]]`: webhooks told about approvals (docs/approvals.md).
    #[serde(default)]
    pub notify: Vec<super::notify::NotifyTarget>,
    /// How many requests one server holds open at once while approvers decide (default
    /// [`super::DEFAULT_MAX_HELD`]); past it, a request gets the approval id at once.
    #[serde(default)]
    pub max_held: Option<usize>,
}

fn default_body_cap() -> usize {
    10 << 20
}

fn default_upstream_timeout() -> u64 {
    30_000
}

fn default_scheme() -> String {
    "http".into()
}

fn default_mcp_path() -> String {
    "/mcp".into()
}

fn default_true() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mcp(origins: &[&str]) -> McpSection {
        let origins: Vec<String> = origins.iter().map(|o| format!("{o:?}")).collect();
        let text = format!(
            "listen = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:9/mcp\"\nallowed_origins = [{}]",
            origins.join(", ")
        );
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn allowed_origins_must_be_origins_as_browsers_send_them() {
        assert!(mcp(&[]).allowed_origins.is_empty());
        assert!(mcp(&["https://app.example.com", "http://localhost:5173"]).check_origins().is_ok());
        for bad in ["app.example.com", "https://app.example.com/", "https://App.example.com", "ftp://x", "https://"] {
            let e = mcp(&[bad]).check_origins().unwrap_err();
            assert!(e.starts_with("[server.mcp] allowed_origins:") && e.contains(bad), "{bad}: {e}");
        }
    }
}
