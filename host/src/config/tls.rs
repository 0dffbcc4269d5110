//! TLS settings in `portcullis.toml`: a listener's certificate (and, for mTLS, the CA its
//! clients' certificates must chain to), and how a door talks TLS to its upstream.
//!
//! Plain data, like the rest of `config`: the library checks the shape; `portcullis serve`
//! (or an embedder's gateway) loads the files with rustls. Relative paths are relative to
//! the config file's folder.

use std::path::PathBuf;

use serde::Deserialize;

/// `[server.<door>.tls]`: the door listens with TLS (HTTP/2 offered by ALPN where the door
/// speaks it). The files are read again when they change on disk or on SIGHUP, without
/// dropping the connections already open.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ListenerTls {
    /// PEM file with the certificate chain, the door's own certificate first.
    pub cert_file: PathBuf,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM file with the CA certificates client certificates must chain to. Setting it turns
    /// on mutual TLS; `[[identity.client_certs]]` maps a verified certificate to a principal.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// With `client_ca_file`: `required` (default; a client without a valid certificate
    /// fails the handshake) or `optional` (a client may present none; one it presents must
    /// verify).
    #[serde(default)]
    pub client_auth: ClientAuth,
}

/// Whether a TLS listener with a client CA insists on a client certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ClientAuth {
    /// Every client presents a certificate that chains to the CA (the default).
    #[default]
    Required,
    /// A client may present none (it is then authenticated by other credentials, or
    /// anonymous); a certificate it presents must verify.
    Optional,
}

/// `[server.proxy.upstream_tls]`, `[server.mcp.upstream_tls]`, `[identity.jwt.tls]`: how an
/// `https://` upstream's certificate is checked and what this side presents. The default
/// trusts the system's roots, sends the upstream's host as SNI and verifies everything.
/// Read when the server starts: a changed CA bundle or client certificate applies after a
/// restart (`[server]` sections are not hot-reloaded).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct UpstreamTls {
    /// PEM file of further CA certificates to trust, beside the system's roots (a private CA).
    pub ca_file: Option<PathBuf>,
    /// PEM file with the client certificate chain presented to the upstream (with
    /// `client_key_file`), for upstreams that require mTLS.
    pub client_cert_file: Option<PathBuf>,
    /// PEM file with the client certificate's private key.
    pub client_key_file: Option<PathBuf>,
    /// The name sent as SNI and checked against the upstream's certificate, when it is not
    /// the upstream URL's host (e.g. an upstream reached by IP address).
    pub server_name: Option<String>,
    /// Accept any certificate from the upstream: no chain, name or expiry check. Anyone on
    /// the path can then read and change the traffic. For a test bench only; the server logs
    /// a warning for every door that sets it when it starts.
    pub danger_accept_invalid_certs: bool,
}
