//! TLS and HTTP/2 on the listener side of every front door, end to end on loopback with real
//! clients: curl (HTTP/1.1 and `--http2`, `--cert` for mutual TLS), nginx asking forward-auth
//! over https, a tonic gRPC client over rustls for ext_authz, the MCP Python SDK's server
//! behind the MCP door, and hyper's HTTP/2 client where the test needs a frame curl does not
//! send. Certificates are made at test time with rcgen.
//!
//! Covers: every door over TLS, HTTP/2 by ALPN and h2c by prior knowledge, `:authority`
//! judged like `Host`, the scheme policies see, certificate reload without dropping open
//! connections, client certificates mapped to principals (`[[identity.client_certs]]`), and
//! the errors `serve` exits with for bad TLS files.

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::serve::{ADMIN_TOKEN, READER_KEY, Server, Upstream, temp_dir};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------

/// A certificate authority made for one test.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).expect("CA certificate");
        Ca { issuer: Issuer::new(params, key), pem: cert.pem() }
    }

    /// A server certificate for `localhost`, `api.test` and 127.0.0.1: (certificate, key) PEM.
    fn server(&self, cn: &str) -> (String, String) {
        self.leaf(cn, &["localhost", "api.test", "127.0.0.1"], &[], ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate with subject `cn` and URI SANs `uris`.
    fn client(&self, cn: &str, uris: &[&str]) -> (String, String) {
        self.leaf(cn, &[], uris, ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn leaf(&self, cn: &str, names: &[&str], uris: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
        for uri in uris {
            params.subject_alt_names.push(SanType::URI((*uri).try_into().expect("URI SAN")));
        }
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    }
}

/// The files of one test's PKI: a CA, the server's certificate, and client certificates
/// (two the CA issued and the config maps, one it issued and the config does not name, and
/// one from another CA).
struct Pki {
    dir: PathBuf,
    ca: Ca,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let ca = Ca::new("Portcullis Test CA");
        let pki = Pki { dir: dir.to_owned(), ca };
        pki.write("ca.pem", &pki.ca.pem.clone());
        let (cert, key) = pki.ca.server("server-1");
        pki.write("server.pem", &cert);
        pki.write("server.key", &key);
        for (name, cn, uris) in [
            ("billing", "billing-svc", &[][..]),
            ("reports", "reports-host", &["spiffe://test.example/reports"][..]),
            ("stranger", "someone-else", &[][..]),
        ] {
            let (cert, key) = pki.ca.client(cn, uris);
            pki.write(&format!("{name}.pem"), &cert);
            pki.write(&format!("{name}.key"), &key);
        }
        let other = Ca::new("Another CA");
        let (cert, key) = other.client("billing-svc", &[]);
        pki.write("forged.pem", &cert);
        pki.write("forged.key", &key);
        pki
    }

    /// Writes a file aside and renames it into place, as a deployment tool does.
    fn write(&self, name: &str, text: &str) {
        let aside = self.dir.join(format!("{name}.new"));
        std::fs::write(&aside, text).expect("write");
        std::fs::rename(&aside, self.dir.join(name)).expect("rename");
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

// ---------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------

/// What curl got: its exit code, the status and HTTP version, the body and stderr.
#[derive(Debug)]
struct Curl {
    exit: i32,
    status: u16,
    version: String,
    body: String,
    stderr: String,
}

impl Curl {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// Runs curl with `args` (silent, a 20 s cap), reading the status and version it reports.
fn curl(args: &[&str]) -> Curl {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-w", "\n%{http_code} %{http_version}"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run curl");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, last) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    let (status, version) = last.split_once(' ').unwrap_or(("0", ""));
    Curl {
        exit: output.status.code().unwrap_or(-1),
        status: status.parse().unwrap_or(0),
        version: version.to_owned(),
        body: body.to_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// curl's arguments to reach `https://api.test:PORT` on loopback, trusting the test CA.
fn api_test(pki: &Pki, port: u16) -> Vec<String> {
    vec!["--cacert".into(), pki.path("ca.pem"), "--resolve".into(), format!("api.test:{port}:127.0.0.1")]
}

fn curl_api(pki: &Pki, port: u16, path: &str, extra: &[&str]) -> Curl {
    let mut args = api_test(pki, port);
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args.push(format!("https://api.test:{port}{path}"));
    curl(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// A rustls client trusting the test CA, presenting `identity` (certificate and key files)
/// when given, offering `alpn`.
fn client_config(pki: &Pki, identity: Option<&str>, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(pki.dir.join("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(name) => {
            let certs = CertificateDer::pem_file_iter(pki.dir.join(format!("{name}.pem")))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_file(pki.dir.join(format!("{name}.key"))).unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

async fn tls_connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("api.test").expect("name");
    tokio_rustls::TlsConnector::from(config).connect(name, tcp).await
}

/// The subject CN of the certificate the server presented on `stream`.
fn peer_cn(stream: &tokio_rustls::client::TlsStream<TcpStream>) -> String {
    use x509_parser::prelude::{FromDer as _, X509Certificate};
    let der = &stream.get_ref().1.peer_certificates().expect("a server certificate")[0];
    let (_, cert) = X509Certificate::from_der(der.as_ref()).expect("X.509");
    cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).unwrap_or_default().to_owned()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime")
}

/// A request for hyper's client with an empty body.
fn get(uri: &str, headers: &[(&str, &str)]) -> hyper::Request<Full<Bytes>> {
    let mut request = hyper::Request::get(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Full::new(Bytes::new())).expect("request")
}

async fn status_and_body(response: hyper::Response<hyper::body::Incoming>) -> (u16, String) {
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.map(http_body_util::Collected::to_bytes).unwrap_or_default();
    (status, String::from_utf8_lossy(&body).into_owned())
}

// ---------------------------------------------------------------------------------------
// Configs
// ---------------------------------------------------------------------------------------

/// The fixture's identity and policies, the invoices route, and `doors`.
fn config(dir: &Path, name: &str, doors: &str) -> PathBuf {
    let text = common::serve::fixture_config(false, "invoices:read")
        + r#"
[[routes]]
name = "invoices"
hosts = ["api.test"]
paths = ["/invoices/**"]
policies = ["scopes", "agent-guard"]

[audit]
path = "audit.jsonl"
"# + doors;
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write config");
    path
}

fn tls_section(door: &str, extra: &str) -> String {
    format!("[server.{door}.tls]\ncert_file = \"server.pem\"\nkey_file = \"server.key\"\n{extra}\n")
}

fn audit(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit line"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// The proxy: HTTP/1.1 and HTTP/2 over TLS, the scheme, `:authority`
// ---------------------------------------------------------------------------------------

#[test]
fn curl_reaches_the_proxy_over_tls_with_http1_and_http2() {
    let dir = temp_dir("tls-proxy");
    let pki = Pki::new(&dir);
    let upstream = Upstream::start();
    let doors = format!(
        "[server.proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{}\"\n{}",
        upstream.addr,
        tls_section("proxy", "")
    );
    let server = Server::start(&config(&dir, "proxy", &doors), &[]);
    let port = server.port("proxy");
    assert!(server.log().contains(&format!("proxy listening on https://127.0.0.1:{port}")), "{}", server.log());

    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let answer = curl_api(&pki, port, "/invoices/7", &[flag, "-H", &format!("x-api-key: {READER_KEY}")]);
        assert_eq!((answer.exit, answer.status, answer.version.as_str()), (0, 200, version), "{answer:?}");
        assert_eq!(answer.json()["path"], "/invoices/7");
        // Policies judged `https`: the upstream is told so by the host.
        let seen = upstream.seen_at("/invoices/7").pop().expect("the upstream got it");
        assert_eq!(seen.headers.get("x-forwarded-proto").map(String::as_str), Some("https"), "{seen:?}");
        // A refusal over either protocol is the policy's.
        let refused = curl_api(&pki, port, "/invoices/7", &[flag]);
        assert_eq!((refused.status, refused.version.as_str()), (403, version), "{refused:?}");
    }

    // An absolute-form target naming `http` on a TLS connection is judged as https.
    let absolute = curl_api(
        &pki,
        port,
        "/invoices/8",
        &[
            "--http1.1",
            "--request-target",
            &format!("http://api.test:{port}/invoices/8"),
            "-H",
            &format!("x-api-key: {READER_KEY}"),
        ],
    );
    assert_eq!(absolute.status, 200, "{absolute:?}");
    let seen = upstream.seen_at("/invoices/8").pop().expect("the upstream got it");
    assert_eq!(seen.headers.get("x-forwarded-proto").map(String::as_str), Some("https"), "{seen:?}");

    // Not TLS, or a CA the client does not trust: no answer.
    let plain = curl(&["--http1.1", &format!("http://127.0.0.1:{port}/invoices/7")]);
    assert_ne!(plain.status, 200, "{plain:?}");
    let untrusted = curl(&["--resolve", &format!("api.test:{port}:127.0.0.1"), &format!("https://api.test:{port}/")]);
    assert_eq!(untrusted.exit, 60, "curl: peer certificate cannot be authenticated: {untrusted:?}");
}

/// Over HTTP/2 the authority is `:authority`: it is what routes and policies see, and a
/// `Host` header that names another host is refused exactly as an HTTP/1.1 absolute-form
/// target whose authority disagrees with `Host`.
#[test]
fn http2_authority_is_judged_and_must_agree_with_host() {
    let dir = temp_dir("tls-authority");
    let pki = Pki::new(&dir);
    let upstream = Upstream::start();
    let doors = format!(
        "[server.proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{}\"\n{}",
        upstream.addr,
        tls_section("proxy", "")
    );
    let server = Server::start(&config(&dir, "authority", &doors), &[]);
    let addr = server.addr("proxy");
    let port = addr.port();
    let rt = runtime();
    let answers: Vec<(u16, String)> = rt.block_on(async {
        let tls = tls_connect(addr, client_config(&pki, None, &[b"h2"])).await.expect("TLS");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(b"h2".as_slice()), "the proxy offers h2");
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.expect("h2");
        tokio::spawn(connection);
        let url = format!("https://api.test:{port}/invoices/9");
        let mut answers = Vec::new();
        for host in [None, Some(format!("api.test:{port}")), Some("evil.test".to_owned())] {
            let mut headers = vec![("x-api-key", READER_KEY)];
            if let Some(host) = &host {
                headers.push(("host", host.as_str()));
            }
            let response = sender.send_request(get(&url, &headers)).await.expect("answer");
            answers.push(status_and_body(response).await);
        }
        // The route is found by `:authority`: another host has no route.
        let other = format!("https://elsewhere.test:{port}/invoices/9");
        let response = sender.send_request(get(&other, &[("x-api-key", READER_KEY)])).await.expect("answer");
        answers.push(status_and_body(response).await);
        answers
    });
    assert_eq!(answers[0].0, 200, "{answers:?}");
    assert_eq!(answers[1].0, 200, "a Host that agrees is fine: {answers:?}");
    assert_eq!(answers[2].0, 400, "{answers:?}");
    assert!(answers[2].1.contains("bad-request"), "{answers:?}");
    assert_eq!(answers[3].0, 403, "{answers:?}");
    assert!(answers[3].1.contains("no-route"), "elsewhere.test has no route: {answers:?}");
    let seen = upstream.seen_at("/invoices/9");
    assert_eq!(seen.len(), 2, "the refused ones never reached the upstream");
    let host = format!("api.test:{port}");
    assert!(seen.iter().all(|s| s.headers.get("x-forwarded-host") == Some(&host)), "{seen:?}");
}

/// h2c: HTTP/2 with prior knowledge on a plaintext proxy that allows it, beside HTTP/1.1;
/// refused where `h2c` is off.
#[test]
fn h2c_is_spoken_only_where_configured() {
    let dir = temp_dir("tls-h2c");
    let upstream = Upstream::start();
    for h2c in [true, false] {
        let doors =
            format!("[server.proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{}\"\nh2c = {h2c}\n", upstream.addr);
        let server = Server::start(&config(&dir, &format!("h2c-{h2c}"), &doors), &[]);
        let url = format!("http://127.0.0.1:{}/invoices/3", server.port("proxy"));
        let key = format!("x-api-key: {READER_KEY}");
        let prior = curl(&["--http2-prior-knowledge", "-H", "host: api.test", "-H", &key, &url]);
        let http1 = curl(&["--http1.1", "-H", "host: api.test", "-H", &key, &url]);
        assert_eq!((http1.status, http1.version.as_str()), (200, "1.1"), "{http1:?}");
        if h2c {
            assert_eq!((prior.exit, prior.status, prior.version.as_str()), (0, 200, "2"), "{prior:?}");
            // A plaintext listener keeps its configured scheme.
            let seen = upstream.seen_at("/invoices/3").pop().unwrap();
            assert_eq!(seen.headers.get("x-forwarded-proto").map(String::as_str), Some("http"));
            // …even when the caller names https in an absolute-form target: a plaintext
            // caller cannot make policies (or the upstream) believe it used TLS.
            let claimed = curl(&[
                "--http1.1",
                "--request-target",
                "https://api.test/invoices/4",
                "-H",
                "host: api.test",
                "-H",
                &key,
                &url,
            ]);
            assert_eq!(claimed.status, 200, "{claimed:?}");
            let seen = upstream.seen_at("/invoices/4").pop().unwrap();
            assert_eq!(seen.headers.get("x-forwarded-proto").map(String::as_str), Some("http"), "{seen:?}");
        } else {
            assert_ne!(prior.status, 200, "HTTP/2 prior knowledge must not be served: {prior:?}");
            assert_ne!(prior.exit, 0, "{prior:?}");
        }
        server.stop();
    }
}

// ---------------------------------------------------------------------------------------
// Mutual TLS: client certificates mapped to principals
// ---------------------------------------------------------------------------------------

/// Two `[[identity.client_certs]]` entries: by subject CN, and by URI SAN (a SPIFFE id).
const CLIENT_CERTS: &str = r#"
[[identity.client_certs]]
name = "billing-cert"
subject_cn = "billing-svc"
id = "billing"
scopes = ["invoices:read"]

[[identity.client_certs]]
name = "reports-cert"
san_uri = "spiffe://test.example/reports"
id = "reports"
scopes = ["invoices:read"]
"#;

fn mtls_proxy(dir: &Path, name: &str, client_auth: &str, upstream: &Upstream) -> Server {
    let doors = format!(
        "{CLIENT_CERTS}\n[server.proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{}\"\n{}",
        upstream.addr,
        tls_section("proxy", &format!("client_ca_file = \"ca.pem\"\nclient_auth = \"{client_auth}\""))
    );
    Server::start(&config(dir, name, &doors), &[])
}

#[test]
fn client_certificates_are_mapped_to_principals() {
    let dir = temp_dir("tls-mtls");
    let pki = Pki::new(&dir);
    let upstream = Upstream::start();
    let server = mtls_proxy(&dir, "mtls", "required", &upstream);
    let port = server.port("proxy");
    let with_cert = |name: &str, extra: &[&str]| {
        let mut args = vec!["--cert".to_owned(), pki.path(&format!("{name}.pem"))];
        args.extend(["--key".to_owned(), pki.path(&format!("{name}.key"))]);
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        curl_api(&pki, port, "/invoices/1", &args.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // Mapped by CN and by URI SAN: the principal reaches the policy (scopes allows it) and
    // the upstream is told who it is.
    for (name, principal) in [("billing", "service:billing"), ("reports", "service:reports")] {
        for flag in ["--http1.1", "--http2"] {
            let answer = with_cert(name, &[flag]);
            assert_eq!(answer.status, 200, "{name} {flag}: {answer:?}");
            let seen = upstream.seen_at("/invoices/1").pop().unwrap();
            assert_eq!(seen.headers.get("x-portcullis-principal").map(String::as_str), Some(principal));
        }
    }
    let records = audit(&dir);
    let credentials: Vec<&str> = records.iter().filter_map(|r| r["credential_id"].as_str()).collect();
    assert!(credentials.contains(&"billing-cert") && credentials.contains(&"reports-cert"), "{records:#?}");

    // A certificate the CA issued that no entry names: 401, not anonymous.
    let stranger = with_cert("stranger", &[]);
    assert_eq!(stranger.status, 401, "{stranger:?}");
    assert!(stranger.body.contains("unknown client certificate"), "{stranger:?}");
    // A certificate and an API key: two credentials, ambiguous.
    let both = with_cert("billing", &["-H", &format!("x-api-key: {READER_KEY}")]);
    assert_eq!(both.status, 401, "{both:?}");
    assert!(both.body.contains("ambiguous credentials"), "{both:?}");
    // A certificate from another CA, or none at all: the handshake fails.
    let forged = with_cert("forged", &[]);
    assert!(forged.exit != 0 && forged.status == 0, "{forged:?}");
    let none = curl_api(&pki, port, "/invoices/1", &["-H", &format!("x-api-key: {READER_KEY}")]);
    assert!(none.exit != 0 && none.status == 0, "{none:?}");
    assert_eq!(upstream.seen_at("/invoices/1").len(), 4, "only the mapped certificates got through");
}

#[test]
fn optional_client_certificates_admit_callers_without_one() {
    let dir = temp_dir("tls-mtls-optional");
    let pki = Pki::new(&dir);
    let upstream = Upstream::start();
    let server = mtls_proxy(&dir, "optional", "optional", &upstream);
    let port = server.port("proxy");
    // No certificate: anonymous (the scopes policy refuses it), or an API key's principal.
    let anonymous = curl_api(&pki, port, "/invoices/2", &[]);
    assert_eq!(anonymous.status, 403, "{anonymous:?}");
    let keyed = curl_api(&pki, port, "/invoices/2", &["-H", &format!("x-api-key: {READER_KEY}")]);
    assert_eq!(keyed.status, 200, "{keyed:?}");
    assert_eq!(
        upstream.seen_at("/invoices/2").pop().unwrap().headers.get("x-portcullis-principal").map(String::as_str),
        Some("user:bob")
    );
    // A certificate presented must still verify.
    let cert = ["--cert", &pki.path("billing.pem"), "--key", &pki.path("billing.key")].map(str::to_owned);
    let mapped = curl_api(&pki, port, "/invoices/2", &cert.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(mapped.status, 200, "{mapped:?}");
    let forged = ["--cert", &pki.path("forged.pem"), "--key", &pki.path("forged.key")].map(str::to_owned);
    let forged = curl_api(&pki, port, "/invoices/2", &forged.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(forged.exit != 0 && forged.status == 0, "{forged:?}");
}

// ---------------------------------------------------------------------------------------
// Reload
// ---------------------------------------------------------------------------------------

/// The certificate is replaced on disk and the server told (SIGHUP): new connections get
/// the new one, a connection opened before keeps working. A broken replacement keeps the
/// certificate serving and logs the key and the file.
#[test]
fn a_replaced_certificate_is_served_without_dropping_open_connections() {
    let dir = temp_dir("tls-reload");
    let pki = Pki::new(&dir);
    let upstream = Upstream::start();
    let doors = format!(
        "[server.proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{}\"\n{}",
        upstream.addr,
        tls_section("proxy", "")
    );
    let server = Server::start(&config(&dir, "reload", &doors), &[]);
    let addr = server.addr("proxy");
    let url = format!("https://api.test:{}/invoices/5", addr.port());
    let key = [("x-api-key", READER_KEY)];
    let rt = runtime();
    let config = client_config(&pki, None, &[b"http/1.1"]);
    let new_connection_cn =
        || rt.block_on(async { tls_connect(addr, config.clone()).await.map(|tls| peer_cn(&tls)).expect("TLS") });

    // A kept-alive connection, opened before the change.
    let (mut kept, first) = rt.block_on(async {
        let tls = tls_connect(addr, config.clone()).await.expect("TLS");
        assert_eq!(peer_cn(&tls), "server-1");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.expect("http1");
        tokio::spawn(connection);
        let first = status_and_body(sender.send_request(get(&url, &key)).await.expect("answer")).await;
        (sender, first)
    });
    assert_eq!(first.0, 200, "{first:?}");

    let (cert, key_pem) = pki.ca.server("server-2");
    pki.write("server.key", &key_pem);
    pki.write("server.pem", &cert);
    server.hangup();
    let deadline = Instant::now() + Duration::from_secs(15);
    while new_connection_cn() != "server-2" {
        assert!(Instant::now() < deadline, "the new certificate was never served:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    // curl sees it too.
    let verbose = curl_api(&pki, addr.port(), "/invoices/5", &["-v", "-H", &format!("x-api-key: {READER_KEY}")]);
    assert_eq!(verbose.status, 200, "{verbose:?}");
    assert!(verbose.stderr.contains("CN=server-2"), "{}", verbose.stderr);
    // The connection opened before is still served.
    let again = rt.block_on(async { status_and_body(kept.send_request(get(&url, &key)).await.expect("answer")).await });
    assert_eq!(again.0, 200, "{again:?}");

    // A key that does not match (written before its certificate, or a typo): refused, and
    // the previous certificate keeps serving; the disk check finds it without a signal.
    let (_, other_key) = pki.ca.server("server-3");
    pki.write("server.key", &other_key);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !server.log().contains("TLS reload refused") {
        assert!(Instant::now() < deadline, "the broken key was never noticed:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = server.log();
    assert!(log.contains("[server.proxy.tls] key_file: the key in") && log.contains("server.key"), "{log}");
    assert!(!log.contains("PRIVATE KEY"), "no key material in the log");
    assert_eq!(new_connection_cn(), "server-2");
    let still = rt.block_on(async { status_and_body(kept.send_request(get(&url, &key)).await.expect("answer")).await });
    assert_eq!(still.0, 200, "{still:?}");
}

// ---------------------------------------------------------------------------------------
// Forward-auth (asked by nginx over https), ext_authz (gRPC over TLS), admin
// ---------------------------------------------------------------------------------------

/// nginx in front: `auth_request` to an internal location proxied to forward-auth over
/// https, with the test CA trusted and the name checked.
fn nginx_server(listen: u16, forward_auth: u16, upstream: &str, ca: &str) -> String {
    format!(
        r#"    server {{
        listen 127.0.0.1:{listen};

        location / {{
            auth_request /_portcullis;
            auth_request_set $portcullis_principal $upstream_http_x_portcullis_principal;
            proxy_set_header X-Portcullis-Principal $portcullis_principal;
            proxy_set_header Host $host;
            proxy_pass http://{upstream};
        }}

        location = /_portcullis {{
            internal;
            proxy_pass https://127.0.0.1:{forward_auth};
            proxy_ssl_trusted_certificate {ca};
            proxy_ssl_verify on;
            proxy_ssl_name localhost;
            proxy_ssl_server_name on;
            proxy_pass_request_body off;
            proxy_set_header Content-Length    "";
            proxy_set_header X-Original-URI    $request_uri;
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Forwarded-Host  $host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-For   $remote_addr;
        }}
    }}"#
    )
}

/// A connector for tonic's channel: TLS with the test CA, ALPN `h2`.
#[derive(Clone)]
struct TlsConnector {
    addr: SocketAddr,
    config: Arc<ClientConfig>,
}

impl tonic::codegen::Service<http::Uri> for TlsConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let (addr, config) = (self.addr, self.config.clone());
        Box::pin(async move {
            let tls = tls_connect(addr, config).await?;
            assert_eq!(tls.get_ref().1.alpn_protocol(), Some(b"h2".as_slice()), "ext_authz negotiates h2");
            Ok(TokioIo::new(tls))
        })
    }
}

/// One ext_authz check over TLS: the gRPC status code of the answer.
fn ext_authz_check(pki: &Pki, addr: SocketAddr, key: Option<&str>) -> i32 {
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
    use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
    use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
    let mut headers: std::collections::HashMap<String, String> =
        [(":authority", "api.test"), (":path", "/invoices/4"), (":method", "GET"), (":scheme", "https")]
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
    if let Some(key) = key {
        headers.insert("x-api-key".into(), key.into());
    }
    let check = CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                time: None,
                http: Some(HttpRequest {
                    id: "1".into(),
                    method: "GET".into(),
                    headers,
                    path: "/invoices/4".into(),
                    host: "api.test".into(),
                    scheme: "https".into(),
                    protocol: "HTTP/2".into(),
                    ..HttpRequest::default()
                }),
            }),
            ..AttributeContext::default()
        }),
    };
    let connector = TlsConnector { addr, config: client_config(pki, None, &[b"h2"]) };
    runtime().block_on(async {
        let channel = tonic::transport::Endpoint::from_static("http://api.test")
            .connect_with_connector(connector)
            .await
            .expect("gRPC over TLS");
        let answer = AuthorizationClient::new(channel).check(check).await.expect("the check is answered");
        answer.into_inner().status.map(|s| s.code).unwrap_or_default()
    })
}

#[test]
fn forward_auth_ext_authz_and_admin_listen_with_tls() {
    let dir = temp_dir("tls-doors");
    let pki = Pki::new(&dir);
    let upstream = Upstream::start();
    let doors = format!(
        "[server.forward_auth]\nlisten = \"127.0.0.1:0\"\n{}\n[server.ext_authz]\nlisten = \"127.0.0.1:0\"\n{}\n\
         [server.admin]\nlisten = \"127.0.0.1:0\"\ntoken_env = \"PORTCULLIS_TEST_ADMIN_TOKEN\"\n{}",
        tls_section("forward_auth", ""),
        tls_section("ext_authz", ""),
        tls_section("admin", "")
    );
    let server = Server::start(&config(&dir, "doors", &doors), &[("PORTCULLIS_TEST_ADMIN_TOKEN", ADMIN_TOKEN)]);

    // Admin: /healthz over TLS, HTTP/1.1 only.
    let admin = server.port("admin");
    let health = curl(&["--cacert", &pki.path("ca.pem"), "--http2", &format!("https://localhost:{admin}/healthz")]);
    assert_eq!((health.status, health.version.as_str(), health.body.as_str()), (200, "1.1", "ok\n"), "{health:?}");

    // ext_authz: tonic over rustls, h2 by ALPN.
    let ext_authz = server.addr("ext_authz");
    assert_eq!(ext_authz_check(&pki, ext_authz, Some(READER_KEY)), 0, "OK");
    assert_eq!(ext_authz_check(&pki, ext_authz, None), 7, "PERMISSION_DENIED");

    // Forward-auth: asked by nginx over https.
    let forward_auth = server.port("forward_auth");
    let ca = pki.path("ca.pem");
    let upstream_addr = upstream.addr.to_string();
    let nginx = common::nginx::Nginx::start(&dir, 1, |ports| nginx_server(ports[0], forward_auth, &upstream_addr, &ca));
    let url = nginx.url("/invoices/6");
    let allowed = curl(&["-H", "host: api.test", "-H", &format!("x-api-key: {READER_KEY}"), &url]);
    assert_eq!(allowed.status, 200, "{allowed:?}\n{}", nginx.log());
    let seen = upstream.seen_at("/invoices/6").pop().expect("nginx passed it on");
    assert_eq!(seen.headers.get("x-portcullis-principal").map(String::as_str), Some("user:bob"));
    let refused = curl(&["-H", "host: api.test", &url]);
    assert_eq!(refused.status, 403, "{refused:?}");
    assert_eq!(upstream.seen_at("/invoices/6").len(), 1);
    let doors: Vec<String> = audit(&dir).iter().filter_map(|r| r["front_door"].as_str().map(str::to_owned)).collect();
    assert!(doors.iter().any(|d| d == "forward-auth") && doors.iter().any(|d| d == "ext-authz"), "{doors:?}");
    // forward-auth speaks HTTP/1.1 only.
    let h2 = curl(&[
        "--cacert",
        &ca,
        "--http2",
        "-H",
        "x-original-uri: /invoices/6",
        &format!("https://localhost:{forward_auth}/"),
    ]);
    assert_eq!(h2.version, "1.1", "{h2:?}");
}

// ---------------------------------------------------------------------------------------
// Errors at start
// ---------------------------------------------------------------------------------------

/// `serve` with a bad TLS file exits non-zero, naming the section's key and the file.
#[test]
fn bad_tls_files_stop_serve_with_the_key_and_the_file() {
    let dir = temp_dir("tls-errors");
    let pki = Pki::new(&dir);
    let (_, other_key) = pki.ca.server("other");
    pki.write("other.key", &other_key);
    pki.write("garbage.pem", "this is not PEM\n");
    pki.write("empty-ca.pem", "");
    let cases = [
        (
            "cert_file = \"missing.pem\"\nkey_file = \"server.key\"",
            "[server.proxy.tls] cert_file: cannot read ",
            "missing.pem",
        ),
        (
            "cert_file = \"garbage.pem\"\nkey_file = \"server.key\"",
            "[server.proxy.tls] cert_file: ",
            "garbage.pem holds no certificate",
        ),
        (
            "cert_file = \"server.pem\"\nkey_file = \"garbage.pem\"",
            "[server.proxy.tls] key_file: ",
            "garbage.pem holds no private key",
        ),
        (
            "cert_file = \"server.pem\"\nkey_file = \"other.key\"",
            "[server.proxy.tls] key_file: the key in ",
            "does not match the certificate",
        ),
        (
            "cert_file = \"server.pem\"\nkey_file = \"server.key\"\nclient_ca_file = \"empty-ca.pem\"",
            "[server.proxy.tls] client_ca_file: ",
            "empty-ca.pem holds no certificate",
        ),
    ];
    for (i, (tls, key, detail)) in cases.into_iter().enumerate() {
        let doors = format!(
            "[server.proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:9\"\n[server.proxy.tls]\n{tls}\n"
        );
        let path = config(&dir, &format!("bad-{i}"), &doors);
        let output = common::portcullis_cli(&["serve", "--config", path.to_str().unwrap()], &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{tls}: serve must not start:\n{stderr}");
        assert!(stderr.contains(key) && stderr.contains(detail), "{tls}:\n{stderr}");
        assert!(!stderr.contains("listening on"), "nothing listens: {stderr}");
    }
}

// ---------------------------------------------------------------------------------------
// The MCP door over HTTP/2 and TLS, its upstream the MCP SDK's server (answers over SSE)
// ---------------------------------------------------------------------------------------

/// The MCP Python SDK's server (`tests/mcp/server.py`) on loopback; killed on drop.
struct McpServer {
    child: std::process::Child,
    port: u16,
    seen: PathBuf,
}

impl McpServer {
    fn start(dir: &Path) -> McpServer {
        let script = common::root().join("scripts/install-mcp.sh");
        let output = Command::new("bash").arg(&script).output().expect("run scripts/install-mcp.sh");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let python = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let (port_file, seen) = (dir.join("mcp.port"), dir.join("mcp-seen.jsonl"));
        let log = std::fs::File::create(dir.join("mcp-server.log")).expect("log");
        let mut child = Command::new(python)
            .arg(common::root().join("tests/mcp/server.py"))
            .arg(&port_file)
            .arg(&seen)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the MCP server");
        let deadline = Instant::now() + Duration::from_secs(60);
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                break text.trim().parse().expect("port");
            }
            if Instant::now() >= deadline || child.try_wait().ok().flatten().is_some() {
                let _ = child.kill();
                panic!(
                    "the MCP server never listened: {}",
                    std::fs::read_to_string(dir.join("mcp-server.log")).unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        McpServer { child, port, seen }
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One JSON-RPC POST to the MCP door with curl over HTTP/2: the answer and its headers.
fn mcp_post(pki: &Pki, port: u16, session: Option<&str>, message: &str) -> (Curl, String) {
    let headers_file = pki.dir.join("mcp-headers.txt");
    let mut args: Vec<String> = api_test(pki, port);
    args.extend(["--http2", "-D", headers_file.to_str().unwrap(), "-X", "POST"].map(str::to_owned));
    let mut headers = vec![
        format!("x-api-key: {READER_KEY}"),
        "content-type: application/json".to_owned(),
        "accept: application/json, text/event-stream".to_owned(),
    ];
    if let Some(session) = session {
        headers.push(format!("mcp-session-id: {session}"));
        headers.push("mcp-protocol-version: 2025-06-18".to_owned());
    }
    for header in headers {
        args.extend(["-H".to_owned(), header]);
    }
    args.extend(["--data-binary".to_owned(), message.to_owned(), format!("https://api.test:{port}/mcp")]);
    let answer = curl(&args.iter().map(String::as_str).collect::<Vec<_>>());
    (answer, std::fs::read_to_string(headers_file).unwrap_or_default().to_ascii_lowercase())
}

#[test]
fn the_mcp_door_speaks_http2_over_tls_and_streams_sse() {
    common::policies_dir();
    let dir = temp_dir("tls-mcp");
    let pki = Pki::new(&dir);
    let mcp = McpServer::start(&dir);
    let doors = format!(
        "[[routes]]\nname = \"mcp\"\nhosts = [\"api.test\"]\npaths = [\"/mcp\"]\npolicies = [\"agent-guard\"]\n\n\
         [server.mcp]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:{}/mcp\"\n{}",
        mcp.port,
        tls_section("mcp", "")
    );
    let server = Server::start(&config(&dir, "mcp", &doors), &[]);
    let port = server.port("mcp");

    let initialize = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}"#;
    let (answer, headers) = mcp_post(&pki, port, None, initialize);
    assert_eq!((answer.status, answer.version.as_str()), (200, "2"), "{answer:?}\n{}", server.log());
    assert!(headers.contains("content-type: text/event-stream"), "an SSE answer over h2:\n{headers}");
    assert!(answer.body.contains("data: ") && answer.body.contains("portcullis-test-crm"), "{answer:?}");
    let session = headers
        .lines()
        .find_map(|l| l.strip_prefix("mcp-session-id: "))
        .map(|s| s.trim().to_owned())
        .expect("a session id");

    let (notified, _) =
        mcp_post(&pki, port, Some(&session), r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    assert_eq!(notified.status, 202, "{notified:?}");
    let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"search_customers","arguments":{"query":"Ada"}}}"#;
    let (called, headers) = mcp_post(&pki, port, Some(&session), call);
    assert_eq!((called.status, called.version.as_str()), (200, "2"), "{called:?}");
    assert!(headers.contains("text/event-stream"), "{headers}");
    assert!(called.body.contains("found 1 customer for Ada"), "{called:?}");
    let seen = std::fs::read_to_string(&mcp.seen).unwrap_or_default();
    assert!(seen.contains("\"query\": \"Ada\""), "{seen}");
    let calls: Vec<Value> = audit(&dir).into_iter().filter(|r| r["front_door"] == "mcp").collect();
    assert!(calls.iter().any(|r| r["operation"] == "search_customers" && r["principal"]["id"] == "bob"), "{calls:#?}");
}
