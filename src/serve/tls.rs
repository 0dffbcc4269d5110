//! TLS on the listeners: a door's `[server.<door>.tls]` loaded into a rustls `ServerConfig`,
//! handshakes with a deadline, the client certificate of a mutual-TLS connection read into
//! the library's [`ClientCertificate`], and reloads when the files change.
//!
//! The `ServerConfig` sits behind an `ArcSwap` read once per handshake: a reload swaps in a
//! new one for the connections that arrive afterwards, and a connection already open keeps
//! the session it negotiated. A reload that fails (a half-written file, a key that does not
//! match the certificate) keeps the previous certificate serving.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result, anyhow, bail};
use arc_swap::ArcSwap;
use portcullis_host::config::{ClientAuth, ListenerTls};
use portcullis_host::identity::ClientCertificate;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// How long a client has to finish the TLS handshake before the connection is closed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// ALPN for a door speaking HTTP/2 and HTTP/1.1 (proxy, MCP), preferring HTTP/2.
pub const ALPN_H2_HTTP1: &[&[u8]] = &[b"h2", b"http/1.1"];
/// ALPN for a door speaking HTTP/1.1 only (forward-auth, admin).
pub const ALPN_HTTP1: &[&[u8]] = &[b"http/1.1"];
/// ALPN for a gRPC door (ext_authz).
pub const ALPN_H2: &[&[u8]] = &[b"h2"];

/// The files a listener's TLS is read from, resolved against the config's folder.
#[derive(Debug, Clone)]
struct Files {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
}

impl Files {
    fn resolve(tls: &ListenerTls, base: &Path) -> Files {
        Files {
            cert: base.join(&tls.cert_file),
            key: base.join(&tls.key_file),
            client_ca: tls.client_ca_file.as_ref().map(|ca| base.join(ca)),
        }
    }

    fn all(&self) -> impl Iterator<Item = &PathBuf> {
        [&self.cert, &self.key].into_iter().chain(self.client_ca.as_ref())
    }
}

/// What identifies a file's version on disk: a file replaced by rename has a new inode, one
/// rewritten in place a new modification time or length.
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

/// A door's TLS: its current `ServerConfig`, and how to read it again.
pub struct Acceptor {
    /// The door's config section (`proxy`, `forward_auth`, …), for messages.
    section: &'static str,
    files: Files,
    client_auth: ClientAuth,
    alpn: &'static [&'static [u8]],
    current: ArcSwap<ServerConfig>,
    seen: Mutex<Vec<Stamp>>,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor").field("section", &self.section).field("files", &self.files).finish_non_exhaustive()
    }
}

impl Acceptor {
    /// Loads `[server.<section>.tls]` (paths relative to `base`), offering `alpn`. Errors
    /// name the key and the file.
    pub fn load(
        section: &'static str,
        tls: &ListenerTls,
        base: &Path,
        alpn: &'static [&'static [u8]],
    ) -> Result<Acceptor> {
        let files = Files::resolve(tls, base);
        let seen = files.all().map(|p| stamp(p)).collect();
        let config = build(section, &files, tls.client_auth, alpn)?;
        Ok(Acceptor {
            section,
            files,
            client_auth: tls.client_auth,
            alpn,
            current: ArcSwap::from_pointee(config),
            seen: Mutex::new(seen),
        })
    }

    /// The door's config section (`proxy`, `forward_auth`, …).
    pub fn section(&self) -> &'static str {
        self.section
    }

    /// Whether a certificate, key or CA file changed on disk since the last (attempted) load.
    pub fn changed_on_disk(&self) -> bool {
        let Ok(seen) = self.seen.lock() else { return false };
        self.files.all().zip(seen.iter()).any(|(path, seen)| stamp(path) != *seen)
    }

    /// Reads the files again and swaps the new configuration in for the handshakes that
    /// follow; on an error the previous one keeps serving and the error (naming the key and
    /// the file) is returned. Either way the files' current versions are remembered, so a
    /// broken file is not retried every second, only when it changes again.
    pub fn reload(&self) -> Result<()> {
        let stamps: Vec<Stamp> = self.files.all().map(|p| stamp(p)).collect();
        let built = build(self.section, &self.files, self.client_auth, self.alpn);
        if let Ok(mut seen) = self.seen.lock() {
            *seen = stamps;
        }
        self.current.store(Arc::new(built?));
        Ok(())
    }

    /// The TLS handshake on an accepted connection, within [`HANDSHAKE_TIMEOUT`], with the
    /// configuration current at this moment. Returns the stream and, on a mutual-TLS
    /// listener, the verified client certificate the client presented.
    pub async fn accept(&self, stream: TcpStream) -> Result<(TlsStream<TcpStream>, Option<ClientCertificate>)> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.current.load_full());
        let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
            .await
            .map_err(|_| anyhow!("the TLS handshake did not finish within {HANDSHAKE_TIMEOUT:?}"))?
            .context("TLS handshake failed")?;
        let certificate = match stream.get_ref().1.peer_certificates().and_then(<[_]>::first) {
            // Verified against the client CA by rustls; only its names are read here.
            Some(der) => Some(client_certificate(der)?),
            None => None,
        };
        Ok((stream, certificate))
    }
}

/// The ring provider, chosen explicitly rather than through a process-wide default.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn build(section: &str, files: &Files, client_auth: ClientAuth, alpn: &[&[u8]]) -> Result<ServerConfig> {
    let key_name = |key: &str| format!("[server.{section}.tls] {key}");
    let provider = provider();
    let certs = read_certificates(&files.cert).with_context(|| key_name("cert_file"))?;
    let key = read_key(&files.key).with_context(|| key_name("key_file"))?;
    let signing_key = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| anyhow!("cannot use the private key in {}: {e}", files.key.display()))
        .with_context(|| key_name("key_file"))?;
    match CertifiedKey::new(certs.clone(), signing_key).keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(_)) => bail!(
            "{}: the key in {} does not match the certificate in {}",
            key_name("key_file"),
            files.key.display(),
            files.cert.display()
        ),
        Err(e) => bail!("{}: {} holds no usable certificate: {e}", key_name("cert_file"), files.cert.display()),
    }
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("rustls has no safe protocol version")?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let verifier = client_verifier(path, client_auth, provider).with_context(|| key_name("client_ca_file"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| anyhow!("{}: {}: {e}", key_name("cert_file"), files.cert.display()))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

fn read_pem(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Every certificate in a PEM file; none is an error.
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read_pem(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("{} is not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        bail!("{} holds no certificate (no -----BEGIN CERTIFICATE----- block)", path.display());
    }
    Ok(certs)
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let pem = read_pem(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => anyhow!(
            "{} holds no private key (no -----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY block)",
            path.display()
        ),
        e => anyhow!("{} is not a PEM private key file: {e}", path.display()),
    })
}

/// Client certificates must chain to a CA in `path`; `optional` admits clients with none.
fn client_verifier(
    path: &Path,
    client_auth: ClientAuth,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certificates(path)? {
        roots.add(cert).map_err(|e| anyhow!("{}: a CA certificate cannot be used: {e}", path.display()))?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = match client_auth {
        ClientAuth::Optional => builder.allow_unauthenticated(),
        _ => builder,
    };
    builder.build().map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// The names of a verified client certificate, for `[[identity.client_certs]]`.
fn client_certificate(der: &CertificateDer<'_>) -> Result<ClientCertificate> {
    use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};
    let (_, cert) =
        X509Certificate::from_der(der.as_ref()).map_err(|e| anyhow!("the client certificate cannot be read: {e}"))?;
    let mut certificate = ClientCertificate::new(portcullis_host::sha256_hex(der.as_ref()));
    if let Some(cn) = cert.subject().iter_common_name().next() {
        // A CN that is not text (a BMPString, say) is not matched rather than guessed at.
        if let Ok(cn) = cn.as_str() {
            certificate.subject_cn = Some(cn.to_owned());
        }
    }
    let sans = cert.subject_alternative_name().map_err(|e| anyhow!("the client certificate's SANs: {e}"))?;
    for name in sans.iter().flat_map(|ext| ext.value.general_names.iter()) {
        match name {
            GeneralName::DNSName(dns) => certificate.dns_names.push((*dns).to_owned()),
            GeneralName::URI(uri) => certificate.uris.push((*uri).to_owned()),
            GeneralName::RFC822Name(email) => certificate.emails.push((*email).to_owned()),
            _ => {}
        }
    }
    Ok(certificate)
}

/// Every door's TLS, from its `[server.<door>.tls]` section (none where a door listens in
/// plaintext or is not configured).
#[derive(Debug, Clone, Default)]
pub struct Doors {
    /// `[server.proxy.tls]`: HTTP/2 and HTTP/1.1.
    pub proxy: Option<Arc<Acceptor>>,
    /// `[server.forward_auth.tls]`: HTTP/1.1.
    pub forward_auth: Option<Arc<Acceptor>>,
    /// `[server.ext_authz.tls]`: HTTP/2 (gRPC).
    pub ext_authz: Option<Arc<Acceptor>>,
    /// `[server.mcp.tls]`: HTTP/2 and HTTP/1.1.
    pub mcp: Option<Arc<Acceptor>>,
    /// `[server.admin.tls]`: HTTP/1.1.
    pub admin: Option<Arc<Acceptor>>,
}

impl Doors {
    /// Loads every door's TLS files (paths relative to `base`, the config's folder); the
    /// first error names the door's key and the file. `portcullis check` runs this too.
    pub fn load(server: &portcullis_host::config::ServerSection, base: &Path) -> Result<Doors> {
        let load = |section: &'static str, tls: Option<&ListenerTls>, alpn: &'static [&'static [u8]]| {
            tls.map(|tls| Acceptor::load(section, tls, base, alpn).map(Arc::new)).transpose()
        };
        Ok(Doors {
            proxy: load("proxy", server.proxy.as_ref().and_then(|s| s.tls.as_ref()), ALPN_H2_HTTP1)?,
            forward_auth: load("forward_auth", server.forward_auth.as_ref().and_then(|s| s.tls.as_ref()), ALPN_HTTP1)?,
            ext_authz: load("ext_authz", server.ext_authz.as_ref().and_then(|s| s.tls.as_ref()), ALPN_H2)?,
            mcp: load("mcp", server.mcp.as_ref().and_then(|s| s.tls.as_ref()), ALPN_H2_HTTP1)?,
            admin: load("admin", server.admin.as_ref().and_then(|s| s.tls.as_ref()), ALPN_HTTP1)?,
        })
    }

    /// Every door's acceptor.
    pub fn all(&self) -> Vec<Arc<Acceptor>> {
        [&self.proxy, &self.forward_auth, &self.ext_authz, &self.mcp, &self.admin]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }
}

/// Reloads each acceptor whose files changed on disk (every one when `asked`, on SIGHUP).
/// A failure is logged with the key and the file, and the door keeps its certificate.
pub fn reload(acceptors: &[Arc<Acceptor>], asked: bool) {
    for acceptor in acceptors {
        if !asked && !acceptor.changed_on_disk() {
            continue;
        }
        match acceptor.reload() {
            Ok(()) => tracing::info!(door = acceptor.section(), "TLS certificate reloaded"),
            Err(e) => tracing::error!(
                door = acceptor.section(),
                error = %format!("{e:#}"),
                "TLS reload refused; the previous certificate keeps serving"
            ),
        }
    }
}
