//! The one HTTP client that reaches upstreams: the proxy's and the MCP door's upstream, and
//! the identity provider's JWKS and OIDC discovery documents.
//!
//! # API
//!
//! - [`UpstreamClient::new`]`(tls, base_dir, h2c, key)` builds a client from an
//!   `[…upstream_tls]` table ([`UpstreamTls`]); relative paths are joined to `base_dir` (the
//!   config file's folder), and every error names `key` (e.g.
//!   `"[server.proxy.upstream_tls]"`) and the file. Build it once, at start or reload: it
//!   reads files and the system's roots. It is cheap to clone (an `Arc` inside) and every clone
//!   shares one connection pool.
//! - [`UpstreamClient::request`] sends any request (`http://` or `https://` URI) and gives
//!   the streaming response; no timeout of its own (the caller wraps it in one).
//! - [`UpstreamClient::get_bytes`]`(uri, timeout, cap)` GETs a document whole: status,
//!   headers and body, refusing a body over `cap` bytes and anything slower than `timeout`
//!   (connect, handshake and body together).
//! - [`UpstreamError`]: why a request failed; its `Display` carries the whole cause chain
//!   (e.g. `… invalid peer certificate: UnknownIssuer`) for the log line.
//! - [`parse_upstream`]`(text, key)`: an upstream URL, `http://` or `https://` with a host.
//! - [`DoorUpstream::new`]`(door, url, tls, h2c, base_dir)`: a door's upstream URL and client
//!   together, checked before the door listens (and by `portcullis check`).
//!
//! # What the client does
//!
//! - TCP: no Nagle delay, a 5-second connect timeout so a dead upstream fails fast.
//! - TLS (rustls, ring provider): the system's roots plus `ca_file`; with an empty system store
//!   `ca_file` alone is trusted. SNI and the name check use the URL's host, or `server_name`.
//!   A client certificate when `client_cert_file` and `client_key_file` are set (both or
//!   neither). `danger_accept_invalid_certs` accepts any certificate (handshake signatures
//!   are still checked) and logs a warning naming `key` when the client is built.
//! - HTTP: ALPN offers `h2` and `http/1.1` to `https://` upstreams and the upstream picks;
//!   `http://` upstreams get HTTP/1.1, or HTTP/2 with prior knowledge when `h2c` is set (then
//!   `https://` upstreams are offered `h2` alone).
//! - A TLS failure is an error, never a retry in plaintext.
//! - Pool: idle connections are closed after 50 s (below nginx's 75 s `keepalive_timeout` and
//!   common load balancers' 60 s, so this side retires a connection before the upstream
//!   does rather than racing its close), and at most 64 are kept idle per host (a burst does
//!   not leave hundreds of sockets open; 64 is well above the concurrency a door keeps busy
//!   per upstream on this kind of machine).

use std::fmt;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::uri::Scheme;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use portcullis_host::config::{McpSection, ProxySection, UpstreamTls};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use super::http::{Body, ReadError, full, read_capped};

/// How long a TCP connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(50);
/// Idle connections kept per upstream host.
const POOL_MAX_IDLE_PER_HOST: usize = 64;

/// The client every door reaches its upstream with; cheap to clone (one shared pool).
#[derive(Clone)]
pub struct UpstreamClient {
    client: Client<HttpsConnector<HttpConnector>, Body>,
}

impl fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamClient").finish_non_exhaustive()
    }
}

/// Why an upstream request failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The request could not be sent or no response came: connect refused, TLS handshake
    /// failed (unknown issuer, wrong name, expired, no client certificate), connection reset.
    Send(hyper_util::client::legacy::Error),
    /// No complete answer within the time given.
    Timeout(Duration),
    /// The body is larger than the cap given.
    TooLarge(usize),
    /// The connection failed while the body was read.
    Body(super::http::BoxError),
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // hyper-util's own text is "client error (Connect)": the cause is in the chain.
            UpstreamError::Send(e) => write_chain(f, e),
            UpstreamError::Timeout(timeout) => write!(f, "no answer within {timeout:?}"),
            UpstreamError::TooLarge(cap) => write!(f, "the body is larger than {cap} bytes"),
            UpstreamError::Body(e) => {
                f.write_str("reading the body failed: ")?;
                write_chain(f, e.as_ref())
            }
        }
    }
}

impl std::error::Error for UpstreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UpstreamError::Send(e) => Some(e),
            UpstreamError::Body(e) => Some(e.as_ref()),
            UpstreamError::Timeout(_) | UpstreamError::TooLarge(_) => None,
        }
    }
}

/// An error and its causes, `: `-separated, each told once (wrappers often repeat their
/// cause's text).
fn write_chain(f: &mut fmt::Formatter<'_>, error: &(dyn std::error::Error + 'static)) -> fmt::Result {
    let mut last = error.to_string();
    f.write_str(&last)?;
    let mut next = error.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !last.contains(&text) {
            write!(f, ": {text}")?;
        }
        last = text;
        next = cause.source();
    }
    Ok(())
}

impl UpstreamClient {
    /// Builds the client for one `[…upstream_tls]` table: reads `ca_file`, the client
    /// certificate and key (relative to `base_dir`) and the system's roots. Errors name
    /// `key` and the file.
    pub fn new(tls: &UpstreamTls, base_dir: &Path, h2c: bool, key: &str) -> Result<UpstreamClient> {
        let config = tls_config(tls, base_dir, key)?;
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.enforce_http(false);
        let builder = HttpsConnectorBuilder::new().with_tls_config(config).https_or_http();
        let builder = match &tls.server_name {
            Some(name) => builder.with_server_name_resolver(FixedServerNameResolver::new(server_name(name, key)?)),
            None => builder,
        };
        let connector = if h2c {
            builder.enable_http2().wrap_connector(http)
        } else {
            builder.enable_http1().enable_http2().wrap_connector(http)
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .http2_only(h2c)
            .build(connector);
        Ok(UpstreamClient { client })
    }

    /// Sends `request` (its URI absolute, `http://` or `https://`) and gives the response as
    /// it streams in. The version is chosen per connection (ALPN, or `h2c`): a request's own
    /// `version` is not consulted, and `Host` is left to the caller (hyper sets it from the URI
    /// when absent; over HTTP/2 the URI's authority is `:authority`).
    pub async fn request(&self, request: Request<Body>) -> Result<Response<Incoming>, UpstreamError> {
        self.client.request(request).await.map_err(UpstreamError::Send)
    }

    /// GETs `uri` whole: its status, headers and body, within `timeout` from connect to the
    /// last byte, refusing a body over `cap` bytes. For documents (JWKS, OIDC discovery); the
    /// status is the caller's to judge.
    pub async fn get_bytes(
        &self,
        uri: &Uri,
        timeout: Duration,
        cap: usize,
    ) -> Result<(StatusCode, HeaderMap, Bytes), UpstreamError> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(uri.clone())
            .header(http::header::ACCEPT, "application/json")
            .body(full(Bytes::new()))
            .expect("a GET with a parsed URI is a valid request");
        let fetch = async {
            let response = self.request(request).await?;
            let (parts, body) = response.into_parts();
            match read_capped(body, cap).await {
                Ok(bytes) => Ok((parts.status, parts.headers, bytes)),
                Err(ReadError::TooLarge) => Err(UpstreamError::TooLarge(cap)),
                Err(ReadError::Io(e)) => Err(UpstreamError::Body(e)),
            }
        };
        tokio::time::timeout(timeout, fetch).await.unwrap_or(Err(UpstreamError::Timeout(timeout)))
    }
}

/// A door's upstream (`[server.proxy]`, `[server.mcp]`): its URL checked and its client
/// built, before the door listens. `upstream_tls` settings with an `http://` upstream, and
/// `upstream_h2c` with an `https://` one, are refused as mistakes (the first would be
/// ignored, the second is decided by ALPN).
#[derive(Debug, Clone)]
pub struct DoorUpstream {
    /// The upstream URL (scheme, authority and any base path).
    pub uri: Uri,
    /// The client that reaches it.
    pub client: UpstreamClient,
}

impl DoorUpstream {
    /// `door` is the section's name (`"proxy"`, `"mcp"`); paths are relative to `base_dir`.
    pub fn new(door: &str, url: &str, tls: &UpstreamTls, h2c: bool, base_dir: &Path) -> Result<DoorUpstream> {
        let uri = parse_upstream(url, &format!("[server.{door}] upstream"))?;
        let https = uri.scheme() == Some(&Scheme::HTTPS);
        if !https && *tls != UpstreamTls::default() {
            bail!(
                "[server.{door}.upstream_tls] is set but upstream `{url}` is http://: TLS settings apply to an \
                 https:// upstream"
            );
        }
        if https && h2c {
            bail!(
                "[server.{door}] upstream_h2c is for an http:// upstream; an https:// upstream `{url}` is offered \
                 HTTP/2 by ALPN"
            );
        }
        let client = UpstreamClient::new(tls, base_dir, h2c, &format!("[server.{door}.upstream_tls]"))?;
        Ok(DoorUpstream { uri, client })
    }

    /// `[server.proxy]`'s upstream.
    pub fn for_proxy(section: &ProxySection, base_dir: &Path) -> Result<DoorUpstream> {
        DoorUpstream::new("proxy", &section.upstream, &section.upstream_tls, section.upstream_h2c, base_dir)
    }

    /// `[server.mcp]`'s upstream.
    pub fn for_mcp(section: &McpSection, base_dir: &Path) -> Result<DoorUpstream> {
        DoorUpstream::new("mcp", &section.upstream, &section.upstream_tls, section.upstream_h2c, base_dir)
    }
}

/// An upstream URL: `http://` or `https://`, with a host. `key` names the setting in errors
/// (e.g. `"[server.proxy] upstream"`).
pub fn parse_upstream(text: &str, key: &str) -> Result<Uri> {
    // Checked first, without echoing the URL: the part before `@` may be a password.
    let after_scheme = text.split_once("://").map_or(text, |(_, rest)| rest);
    if after_scheme.split(['/', '?', '#']).next().is_some_and(|authority| authority.contains('@')) {
        bail!("{key}: credentials in the URL (`user:password@`) are not supported; give the URL without them");
    }
    let uri: Uri = text.parse().with_context(|| format!("{key} `{text}` is not a URL"))?;
    let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
        bail!("{key} `{text}` needs a scheme and a host, e.g. `https://api.example.com` or `http://127.0.0.1:9000`");
    };
    if *scheme != Scheme::HTTP && *scheme != Scheme::HTTPS {
        bail!("{key} `{text}`: the scheme must be http:// or https://, not {scheme}://");
    }
    if authority.host().is_empty() {
        bail!("{key} `{text}` has no host");
    }
    Ok(uri)
}

/// The name given as `server_name`, as rustls checks it (a DNS name or an IP address).
fn server_name(name: &str, key: &str) -> Result<ServerName<'static>> {
    let trimmed = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')).unwrap_or(name);
    ServerName::try_from(trimmed.to_owned())
        .with_context(|| format!("{key} server_name `{name}` is neither a DNS name nor an IP address"))
}

/// The rustls configuration for `tls`: roots (or the accept-anything verifier) and the
/// client certificate. ALPN is set by the connector.
fn tls_config(tls: &UpstreamTls, base_dir: &Path, key: &str) -> Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .with_context(|| format!("{key}: the TLS provider offers no protocol version"))?;
    let builder = if tls.danger_accept_invalid_certs {
        tracing::warn!(
            "{key} danger_accept_invalid_certs = true: this door accepts any certificate from its upstream: for a \
             test bench only"
        );
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
    } else {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(system_roots().iter().cloned());
        if let Some(ca_file) = &tls.ca_file {
            let path = base_dir.join(ca_file);
            for cert in read_certs(&path, &format!("{key} ca_file"))? {
                roots
                    .add(cert)
                    .with_context(|| format!("{key} ca_file: {}: a certificate is not a CA", path.display()))?;
            }
        }
        if roots.is_empty() {
            // No system roots and no ca_file: every https:// upstream is refused as
            // untrusted when reached (an http:// one still works).
            tracing::debug!("{key}: no trusted roots (the system store is empty and no ca_file is set)");
            builder.dangerous().with_custom_certificate_verifier(Arc::new(TrustNothing(provider)))
        } else {
            let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .with_context(|| format!("{key}: cannot build the certificate verifier"))?;
            builder.with_webpki_verifier(verifier)
        }
    };
    match (&tls.client_cert_file, &tls.client_key_file) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert_file), Some(key_file)) => {
            let cert_path = base_dir.join(cert_file);
            let key_path = base_dir.join(key_file);
            let chain = read_certs(&cert_path, &format!("{key} client_cert_file"))?;
            let private = read_key(&key_path, &format!("{key} client_key_file"))?;
            builder.with_client_auth_cert(chain, private).with_context(|| {
                format!(
                    "{key}: the client certificate {} and key {} do not go together",
                    cert_path.display(),
                    key_path.display()
                )
            })
        }
        (Some(_), None) => bail!("{key} client_cert_file is set without client_key_file: give both or neither"),
        (None, Some(_)) => bail!("{key} client_key_file is set without client_cert_file: give both or neither"),
    }
}

/// The system's trusted roots (rustls-native-certs: `SSL_CERT_FILE`/`SSL_CERT_DIR`, else
/// the platform store), read once per process: the store is a few hundred kilobytes.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::debug!(error = %error, "reading the system's trusted roots");
        }
        found.certs
    })
}

/// The certificates in a PEM file: at least one, or an error naming `what` and the path.
fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("{what}: cannot read {}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{what}: {} is not PEM", path.display()))?;
    if certs.is_empty() {
        bail!("{what}: {} holds no certificate (PEM `BEGIN CERTIFICATE`)", path.display());
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1), or an error naming `what` and
/// the path (never the key).
fn read_key(path: &Path, what: &str) -> Result<PrivateKeyDer<'static>> {
    let pem = std::fs::read(path).with_context(|| format!("{what}: cannot read {}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            anyhow::anyhow!("{what}: {} holds no private key (PEM PKCS#8, PKCS#1 or SEC1)", path.display())
        }
        e => anyhow::anyhow!("{what}: {} is not PEM: {e}", path.display()),
    })
}

/// `danger_accept_invalid_certs`: any certificate chain, any name, any date. The handshake's
/// signatures are still checked, so the peer holds the key of the certificate it sent.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms().supported_schemes()
    }
}

impl AcceptAny {
    fn algorithms(&self) -> WebPkiSupportedAlgorithms {
        self.0.signature_verification_algorithms
    }
}

/// No trusted root at all: every certificate is refused as of an unknown issuer.
#[derive(Debug)]
struct TrustNothing(Arc<CryptoProvider>);

impl ServerCertVerifier for TrustNothing {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Err(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
