//! The proxy and MCP doors reaching `https://` upstreams: a real nginx serving TLS (and
//! HTTP/2) on loopback, certificates made at test time with rcgen (a private CA, a server
//! certificate for `localhost` and 127.0.0.1, one for another name, a client certificate),
//! and `portcullis serve` in between. nginx echoes the protocol it spoke and the client
//! certificate it verified, so each test proves what happened on the wire.
//!
//! Proven: a private CA trusted by `ca_file` (request and response policies still run);
//! the same upstream refused (502, nothing reaches nginx) without it, or for a certificate
//! of another name unless `server_name` names it; mTLS to the upstream; HTTP/2 by ALPN to an
//! `https://` upstream and by prior knowledge (`upstream_h2c`) to an `http://` one; an
//! HTTP/2 caller to HTTP/1.1 and HTTP/2 upstreams;
//! `danger_accept_invalid_certs` with its warning; configuration mistakes refused before
//! listening; and the MCP door's JSON-RPC and SSE through an HTTP/2 TLS upstream.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::nginx::{Nginx, nginx_binary, nginx_build, nginx_version};
use common::serve::{Answer, READER_KEY, Server, USER_KEY, send, temp_dir};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------

/// PEM files made for one test: `ca.pem` (the private CA), `server.pem`/`server.key` (for
/// `localhost` and 127.0.0.1), `other.pem`/`other.key` (for `other.test` only),
/// `expired.pem`/`expired.key` (for `localhost`, expired in 2020),
/// `client.pem`/`client.key` (CN `portcullis-test-client`, client auth), all signed by the CA.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn make(dir: &Path) -> Pki {
        let dir = dir.join("pki");
        std::fs::create_dir_all(&dir).unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "Portcullis test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let leaf = |name: &str, sans: &[&str], usage: ExtendedKeyUsagePurpose, expired: bool| {
            let mut params = CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap();
            if expired {
                params.not_before = rcgen::date_time_ymd(2019, 1, 1);
                params.not_after = rcgen::date_time_ymd(2020, 1, 1);
            }
            params.distinguished_name.push(DnType::CommonName, sans[0]);
            params.use_authority_key_identifier_extension = true;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![usage];
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &issuer).unwrap();
            std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        };
        leaf("server", &["localhost", "127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth, false);
        leaf("other", &["other.test"], ExtendedKeyUsagePurpose::ServerAuth, false);
        leaf("expired", &["localhost", "127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth, true);
        leaf("client", &["portcullis-test-client"], ExtendedKeyUsagePurpose::ClientAuth, false);
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

// ---------------------------------------------------------------------------------------
// nginx: the upstream
// ---------------------------------------------------------------------------------------

/// The `listen` line (and `http2` switch) for an HTTP/2 server on `port`, for this nginx:
/// `http2 on;` from 1.25.1, the `listen … http2` parameter before.
fn listen_h2(port: u16, ssl: bool) -> String {
    let ssl = if ssl { " ssl" } else { "" };
    if nginx_version(&nginx_build(&nginx_binary())) >= (1, 25, 1) {
        format!("listen 127.0.0.1:{port}{ssl};\n        http2 on;")
    } else {
        format!("listen 127.0.0.1:{port}{ssl} http2;")
    }
}

/// One nginx `server`: `listen` as given, then `extra` (certificates, client verification),
/// answering small JSON documents that echo the protocol spoken, the verified client
/// certificate's subject and the `Host` it got.
fn upstream_server(listen: &str, extra: &str) -> String {
    format!(
        r#"    server {{
        {listen}
        {extra}
        default_type application/json;
        add_header X-Upstream-Protocol $server_protocol always;
        add_header X-Upstream-Client "$ssl_client_s_dn" always;

        location /customers/ {{
            add_header X-Internal-User ada-internal;
            add_header X-Upstream-Protocol $server_protocol always;
            return 200 '{{"id": 42, "name": "Ada", "email": "ada@example.com", "phone": "+44 20 7946 0000"}}';
        }}
        location / {{
            return 200 '{{"ok": true, "path": "$uri", "protocol": "$server_protocol", "host": "$host", "client": "$ssl_client_s_dn"}}';
        }}
    }}"#
    )
}

fn tls_lines(pki: &Pki, name: &str) -> String {
    format!(
        "ssl_certificate {cert};\n        ssl_certificate_key {key};",
        cert = pki.path(&format!("{name}.pem")),
        key = pki.path(&format!("{name}.key"))
    )
}

/// nginx with five servers: `ports[0]` TLS + HTTP/2 with the `localhost` certificate,
/// `ports[1]` TLS with the `other.test` certificate, `ports[2]` TLS that requires a client
/// certificate from the CA, `ports[3]` plaintext HTTP/2 only (h2c, prior knowledge),
/// `ports[4]` TLS with an expired `localhost` certificate.
fn start_nginx(dir: &Path, pki: &Pki) -> Nginx {
    Nginx::start(dir, 5, |ports| {
        let mtls = format!(
            "{}\n        ssl_verify_client on;\n        ssl_client_certificate {};",
            tls_lines(pki, "server"),
            pki.path("ca.pem")
        );
        [
            upstream_server(&listen_h2(ports[0], true), &tls_lines(pki, "server")),
            upstream_server(&listen_h2(ports[1], true), &tls_lines(pki, "other")),
            upstream_server(&listen_h2(ports[2], true), &mtls),
            upstream_server(&listen_h2(ports[3], false), ""),
            upstream_server(&listen_h2(ports[4], true), &tls_lines(pki, "expired")),
        ]
        .join("\n\n")
    })
}

/// Asserts that nginx logged `expected` requests for `path`. nginx writes its access log
/// once a request is done, which may be just after the answer arrived: a count is waited
/// for (up to 5 s), and a zero is checked after a pause.
fn assert_reached(nginx: &Nginx, path: &str, expected: usize) {
    let count = || {
        let log = std::fs::read_to_string(nginx.dir.join("access.log")).unwrap_or_default();
        log.lines().filter(|line| line.contains(&format!(" {path} "))).count()
    };
    let deadline = Instant::now() + if expected == 0 { Duration::from_millis(300) } else { Duration::from_secs(5) };
    while count() < expected.max(1) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(count(), expected, "requests for {path} that reached nginx");
}

// ---------------------------------------------------------------------------------------
// Portcullis: the proxy door
// ---------------------------------------------------------------------------------------

/// A proxy config (the shared fixture: API keys, `scopes` on `/invoices/**`, `pii-redact` on
/// the responses of `/customers/**`) in front of `upstream`, with `extra` lines in
/// `[server.proxy]` and `upstream_tls` as given.
fn proxy_config(dir: &Path, name: &str, upstream: &str, extra: &str, upstream_tls: &str) -> PathBuf {
    let text = common::serve::fixture_config(false, "invoices:read")
        + &format!(
            r#"
[[routes]]
name = "invoices"
paths = ["/invoices/**"]
policies = ["scopes"]

[[routes]]
name = "customers"
paths = ["/customers/**"]
policies = ["scopes", "pii-redact"]

[server.proxy]
listen = "127.0.0.1:0"
upstream = "{upstream}"
upstream_timeout_ms = 10000
{extra}

[server.proxy.upstream_tls]
{upstream_tls}
"#
        );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn get(server: &Server, path: &str, key: &str) -> Answer {
    send("GET", &server.url("proxy", path), &[("x-api-key", key)], b"")
}

fn body(answer: &Answer) -> String {
    String::from_utf8_lossy(&answer.body).into_owned()
}

/// Waits up to 5 s for the server's log to contain `text` (log lines are written as the
/// request is answered, not necessarily before the answer reaches the test).
fn wait_for_log(server: &Server, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = server.log();
        if log.contains(text) || Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_private_ca_upstream_is_reached_over_http2_and_refused_without_the_ca() {
    nginx_binary();
    common::policies_dir();
    let dir = temp_dir("upstream-tls-ca");
    let pki = Pki::make(&dir);
    let nginx = start_nginx(&dir, &pki);
    let upstream = format!("https://localhost:{}", nginx.ports[0]);

    // Trusted by `ca_file` (relative to the config's folder): the request and response
    // policies run, and the upstream spoke HTTP/2 over TLS.
    let config = proxy_config(&dir, "with-ca", &upstream, "", r#"ca_file = "pki/ca.pem""#);
    let server = Server::start(&config, &[]);
    let ok = get(&server, "/invoices/1", READER_KEY);
    assert_eq!(ok.status, 200, "{}\n{}", body(&ok), server.log());
    let echoed = ok.json();
    assert_eq!(echoed["path"], "/invoices/1");
    assert_eq!(echoed["protocol"], "HTTP/2.0", "ALPN picked h2: {echoed}");
    assert_eq!(echoed["host"], "localhost", "the upstream's name, not the caller's: {echoed}");
    assert!(ok.header("x-request-id").is_some());

    let customer = get(&server, "/customers/42", USER_KEY);
    assert_eq!(customer.status, 200, "{}", body(&customer));
    let record = customer.json();
    assert_eq!((record["name"].as_str(), record["email"].as_str()), (Some("Ada"), Some("***")), "{record}");
    assert!(customer.header("x-internal-user").is_none(), "the response policy removed it");
    assert_eq!(customer.header("x-upstream-protocol"), Some("HTTP/2.0"));

    // A request policy still refuses before the upstream is asked.
    let denied = send("POST", &server.url("proxy", "/invoices/9"), &[("x-api-key", READER_KEY)], b"{}");
    assert_eq!(denied.status, 403, "{}", body(&denied));
    assert_reached(&nginx, "/invoices/9", 0);
    drop(server);

    // With an empty system store (rustls-native-certs reads SSL_CERT_FILE and SSL_CERT_DIR
    // when set) `ca_file` alone is trusted.
    let empty = dir.join("empty-roots");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("none.pem"), "").unwrap();
    let (file, folder) = (empty.join("none.pem").display().to_string(), empty.display().to_string());
    let server = Server::start(&config, &[("SSL_CERT_FILE", &file), ("SSL_CERT_DIR", &folder)]);
    let ok = get(&server, "/invoices/13", READER_KEY);
    assert_eq!(ok.status, 200, "{}\n{}", body(&ok), server.log());
    drop(server);

    // Without the CA the system's roots do not trust it: 502, the cause logged, nothing
    // sent (no plaintext retry).
    let config = proxy_config(&dir, "without-ca", &upstream, "", "");
    let server = Server::start(&config, &[]);
    let refused = get(&server, "/invoices/2", READER_KEY);
    assert_eq!(refused.status, 502, "{}", body(&refused));
    assert_eq!(refused.json()["code"], "upstream-unavailable");
    let log = wait_for_log(&server, "UnknownIssuer");
    assert!(log.contains("upstream request failed") && log.contains("UnknownIssuer"), "{log}");
    assert_reached(&nginx, "/invoices/2", 0);
    drop(server);

    // An expired certificate from the trusted CA: 502, the cause logged.
    let expired = format!("https://localhost:{}", nginx.ports[4]);
    let config = proxy_config(&dir, "expired", &expired, "", r#"ca_file = "pki/ca.pem""#);
    let server = Server::start(&config, &[]);
    let refused = get(&server, "/invoices/12", READER_KEY);
    assert_eq!(refused.status, 502, "{}", body(&refused));
    let log = wait_for_log(&server, "certificate expired");
    assert!(log.contains("certificate expired"), "{log}");
    assert_reached(&nginx, "/invoices/12", 0);
}

#[test]
fn a_certificate_for_another_name_is_refused_unless_server_name_names_it() {
    nginx_binary();
    common::policies_dir();
    let dir = temp_dir("upstream-tls-name");
    let pki = Pki::make(&dir);
    let nginx = start_nginx(&dir, &pki);
    let upstream = format!("https://localhost:{}", nginx.ports[1]);
    let ca = format!("ca_file = \"{}\"", pki.path("ca.pem"));

    let config = proxy_config(&dir, "wrong-name", &upstream, "", &ca);
    let server = Server::start(&config, &[]);
    let refused = get(&server, "/invoices/3", READER_KEY);
    assert_eq!(refused.status, 502, "{}", body(&refused));
    let log = wait_for_log(&server, "not valid for name");
    assert!(log.contains("certificate not valid for name \"localhost\""), "the log names the cause:\n{log}");
    assert_reached(&nginx, "/invoices/3", 0);
    drop(server);

    let config = proxy_config(&dir, "server-name", &upstream, "", &format!("{ca}\nserver_name = \"other.test\""));
    let server = Server::start(&config, &[]);
    let ok = get(&server, "/invoices/4", READER_KEY);
    assert_eq!(ok.status, 200, "{}\n{}", body(&ok), server.log());
    // SNI and the name check use `server_name`; `Host` stays the URL's authority.
    assert_eq!(ok.json()["host"], "localhost");
    assert_reached(&nginx, "/invoices/4", 1);
}

#[test]
fn an_upstream_that_requires_a_client_certificate_gets_one_when_configured() {
    nginx_binary();
    common::policies_dir();
    let dir = temp_dir("upstream-tls-mtls");
    let pki = Pki::make(&dir);
    let nginx = start_nginx(&dir, &pki);
    let upstream = format!("https://127.0.0.1:{}", nginx.ports[2]);
    let ca = format!("ca_file = \"{}\"", pki.path("ca.pem"));

    // Without a client certificate nginx completes the handshake (TLS 1.2 or 1.3: it asks
    // for a certificate without failing on none) and answers 400 "No required SSL
    // certificate was sent": the upstream's own refusal, passed on; the location never runs.
    let config = proxy_config(&dir, "no-client-cert", &upstream, "", &ca);
    let server = Server::start(&config, &[]);
    let refused = get(&server, "/invoices/5", READER_KEY);
    assert_eq!(refused.status, 400, "{}", body(&refused));
    assert!(body(&refused).contains("No required SSL certificate was sent"), "{}", body(&refused));
    drop(server);

    let with_cert = format!(
        "{ca}\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"",
        pki.path("client.pem"),
        pki.path("client.key")
    );
    let config = proxy_config(&dir, "client-cert", &upstream, "", &with_cert);
    let server = Server::start(&config, &[]);
    let ok = get(&server, "/invoices/6", READER_KEY);
    assert_eq!(ok.status, 200, "{}\n{}", body(&ok), server.log());
    let echoed = ok.json();
    assert!(echoed["client"].as_str().unwrap().contains("CN=portcullis-test-client"), "{echoed}");
    assert_eq!(echoed["protocol"], "HTTP/2.0");
}

#[test]
fn upstream_h2c_speaks_http2_to_a_plaintext_upstream() {
    nginx_binary();
    common::policies_dir();
    let dir = temp_dir("upstream-h2c");
    let pki = Pki::make(&dir);
    let nginx = start_nginx(&dir, &pki);
    let upstream = format!("http://127.0.0.1:{}", nginx.ports[3]);

    let config = proxy_config(&dir, "h2c", &upstream, "upstream_h2c = true", "");
    let server = Server::start(&config, &[]);
    let ok = get(&server, "/invoices/7", READER_KEY);
    assert_eq!(ok.status, 200, "{}\n{}", body(&ok), server.log());
    assert_eq!(ok.json()["protocol"], "HTTP/2.0");
    let customer = get(&server, "/customers/42", USER_KEY);
    assert_eq!(customer.json()["email"], "***");
}

/// `curl --http2-prior-knowledge` to `url`: the HTTP version it spoke, the status and the
/// body.
fn curl_h2c(url: &str, key: &str) -> (String, u16, Value) {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--http2-prior-knowledge", "-H"])
        .arg(format!("x-api-key: {key}"))
        .args(["-w", "\n%{http_version} %{http_code}", url])
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, last) = text.rsplit_once('\n').unwrap_or_else(|| panic!("curl: {text}"));
    let (version, status) = last.split_once(' ').unwrap();
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (version.to_owned(), status.parse().unwrap(), body)
}

#[test]
fn a_caller_and_its_upstream_each_speak_their_own_http_version() {
    nginx_binary();
    common::policies_dir();
    let dir = temp_dir("upstream-versions");
    let pki = Pki::make(&dir);
    let nginx = start_nginx(&dir, &pki);

    // An HTTP/2 caller (h2c) to an HTTP/1.1 upstream...
    let plain = common::serve::Upstream::start();
    let config = proxy_config(&dir, "h2-to-h1", &format!("http://{}", plain.addr), "h2c = true", "");
    let server = Server::start(&config, &[]);
    let (version, status, record) = curl_h2c(&server.url("proxy", "/customers/42"), USER_KEY);
    assert_eq!((version.as_str(), status), ("2", 200), "{record}\n{}", server.log());
    assert_eq!((record["name"].as_str(), record["email"].as_str()), (Some("Ada"), Some("***")), "{record}");
    assert_eq!(plain.seen_at("/customers/42").len(), 1);
    drop(server);

    // ...and to an HTTP/2 upstream over TLS.
    let upstream = format!("https://localhost:{}", nginx.ports[0]);
    let config = proxy_config(&dir, "h2-to-h2", &upstream, "h2c = true", r#"ca_file = "pki/ca.pem""#);
    let server = Server::start(&config, &[]);
    let (version, status, echoed) = curl_h2c(&server.url("proxy", "/invoices/14"), READER_KEY);
    assert_eq!((version.as_str(), status), ("2", 200), "{echoed}\n{}", server.log());
    assert_eq!(echoed["protocol"], "HTTP/2.0");
    assert_eq!(echoed["host"], "localhost");
    let (_, _, record) = curl_h2c(&server.url("proxy", "/customers/42"), USER_KEY);
    assert_eq!(record["email"], "***");
}

#[test]
fn danger_accept_invalid_certs_reaches_an_untrusted_upstream_and_warns() {
    nginx_binary();
    common::policies_dir();
    let dir = temp_dir("upstream-tls-danger");
    let pki = Pki::make(&dir);
    let nginx = start_nginx(&dir, &pki);
    // The `other.test` certificate from a CA nobody trusts, reached by another name.
    let upstream = format!("https://127.0.0.1:{}", nginx.ports[1]);

    let config = proxy_config(&dir, "danger", &upstream, "", "danger_accept_invalid_certs = true");
    let server = Server::start(&config, &[]);
    let ok = get(&server, "/invoices/8", READER_KEY);
    assert_eq!(ok.status, 200, "{}\n{}", body(&ok), server.log());
    let log = server.log();
    assert!(
        log.contains("[server.proxy.upstream_tls] danger_accept_invalid_certs")
            && log.contains("accepts any certificate from its upstream: for a test bench only"),
        "{log}"
    );
}

/// `portcullis serve` with `config`: it must exit non-zero before listening, and its
/// stderr is returned.
fn serve_refuses(config: &Path) -> String {
    let ready = config.with_extension("ready.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["serve", "--config"])
        .arg(config)
        .arg("--ready-file")
        .arg(&ready)
        .env("PORTCULLIS_CACHE_DIR", common::root().join("target/test-cache"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve kept running with {}", config.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success(), "serve accepted {}", config.display());
    assert!(!ready.exists(), "serve never listened");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn upstream_tls_mistakes_stop_serve_before_it_listens() {
    common::policies_dir();
    let dir = temp_dir("upstream-tls-config");
    let pki = Pki::make(&dir);
    let https = "https://localhost:9";
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let cases = [
        ("missing-ca", https, "", r#"ca_file = "pki/nope.pem""#, "[server.proxy.upstream_tls] ca_file: cannot read"),
        ("garbage-ca", https, "", r#"ca_file = "garbage.pem""#, "garbage.pem holds no certificate"),
        (
            "half-client",
            https,
            "",
            r#"client_cert_file = "pki/client.pem""#,
            "[server.proxy.upstream_tls] client_cert_file is set without client_key_file",
        ),
        (
            "wrong-key",
            https,
            "",
            r#"client_cert_file = "pki/client.pem"
client_key_file = "pki/server.key""#,
            "do not go together",
        ),
        ("bad-scheme", "ftp://localhost:21", "", "", "the scheme must be http:// or https://"),
        (
            "userinfo",
            "https://ada:s3cret-pw@localhost:9",
            "",
            "",
            "credentials in the URL (`user:password@`) are not supported",
        ),
        ("tls-on-http", "http://127.0.0.1:9", "", r#"ca_file = "pki/ca.pem""#, "TLS settings apply to an https://"),
        ("h2c-on-https", https, "upstream_h2c = true", "", "upstream_h2c is for an http:// upstream"),
    ];
    for (name, upstream, extra, tls, expected) in cases {
        let config = proxy_config(&dir, name, upstream, extra, tls);
        let stderr = serve_refuses(&config);
        assert!(stderr.contains(expected), "{name}: expected `{expected}` in:\n{stderr}");
        assert!(
            !stderr.contains("PRIVATE KEY") && !stderr.contains("s3cret-pw"),
            "{name}: a secret in the log:\n{stderr}"
        );
    }
    let _ = pki;
}

// ---------------------------------------------------------------------------------------
// Portcullis: the MCP door
// ---------------------------------------------------------------------------------------

/// The MCP SDK's python (`scripts/install-mcp.sh`, as tests/mcp.rs uses it).
fn python() -> PathBuf {
    let script = common::root().join("scripts/install-mcp.sh");
    let output = Command::new("bash").arg(&script).output().expect("run scripts/install-mcp.sh");
    assert!(output.status.success(), "{} failed:\n{}", script.display(), String::from_utf8_lossy(&output.stderr));
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// The SDK's MCP server (tests/mcp/server.py, SSE answers) on a port it picks; killed on drop.
struct McpServer {
    child: std::process::Child,
    port: u16,
}

impl McpServer {
    fn start(python: &Path, dir: &Path) -> McpServer {
        let port_file = dir.join("mcp-server.port");
        let log = std::fs::File::create(dir.join("mcp-server.log")).unwrap();
        let mut child = Command::new(python)
            .arg(common::root().join("tests/mcp/server.py"))
            .arg(&port_file)
            .arg(dir.join("seen.jsonl"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the MCP server");
        let deadline = Instant::now() + Duration::from_secs(60);
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                break text.trim().parse().unwrap();
            }
            assert!(child.try_wait().unwrap().is_none(), "the MCP server exited");
            assert!(Instant::now() < deadline, "the MCP server never listened");
            std::thread::sleep(Duration::from_millis(100));
        };
        McpServer { child, port }
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_mcp_door_talks_json_rpc_and_sse_to_an_https_http2_upstream() {
    nginx_binary();
    common::policies_dir();
    let python = python();
    let dir = temp_dir("upstream-tls-mcp");
    let pki = Pki::make(&dir);
    let mcp = McpServer::start(&python, &dir);
    // nginx terminates TLS (HTTP/2 by ALPN) in front of the SDK's server, streaming its
    // SSE answers unbuffered, and logs the protocol each request came in with.
    let log_path = dir.join("nginx/mcp-protocol.log");
    let nginx = Nginx::start(&dir, 1, |ports| {
        format!(
            r#"    log_format protocol '$server_protocol $request_method $uri $status';
    server {{
        {listen}
        {tls}
        access_log {log} protocol;
        location /mcp {{
            proxy_pass http://127.0.0.1:{backend};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host 127.0.0.1:{backend};
            proxy_buffering off;
            proxy_read_timeout 60s;
        }}
    }}"#,
            listen = listen_h2(ports[0], true),
            tls = tls_lines(&pki, "server"),
            log = log_path.display(),
            backend = mcp.port,
        )
    });
    let tool_guard = common::component("tool-guard").display().to_string();
    let config = common::serve::fixture_config(true, "invoices:read")
        + &format!(
            r#"
[policies.tool-guard]
module = "{tool_guard}"

[policies.tool-guard.settings]
approver_group = "crm-approvers"
ttl_seconds = 600
mask = "[redacted]"

[policies.tool-guard.settings.tools]
user = ["*"]

[policies.tool-guard.settings.results]
get_customer = ["/structuredContent/email"]

[[routes]]
name = "mcp"
paths = ["/mcp"]
policies = ["tool-guard"]

[server.mcp]
listen = "127.0.0.1:0"
upstream = "https://localhost:{port}/mcp"

[server.mcp.upstream_tls]
ca_file = "pki/ca.pem"
"#,
            port = nginx.port,
        );
    let path = dir.join("mcp.toml");
    std::fs::write(&path, config).unwrap();
    let server = Server::start(&path, &[]);

    let steps = json!([
        {"op": "list_tools"},
        {"op": "call", "tool": "get_customer", "args": {"customer_id": 7}},
    ]);
    let output = Command::new(&python)
        .arg(common::root().join("tests/mcp/client.py"))
        .arg(server.url("mcp", "/mcp"))
        .arg(steps.to_string())
        .arg("--header")
        .arg(format!("x-api-key:{USER_KEY}"))
        .args(["--mode", "legacy"])
        .output()
        .expect("run the MCP client");
    assert!(output.status.success(), "client failed:\n{}\n{}", String::from_utf8_lossy(&output.stderr), server.log());
    let results: Vec<Value> = serde_json::from_slice(&output.stdout).expect("the client's results");
    assert!(results[0]["tools"].as_array().is_some_and(|t| t.contains(&json!("get_customer"))), "{results:#?}");
    let customer = &results[1]["result"];
    assert_eq!(customer["structuredContent"]["name"], "Ada", "{customer}");
    assert_eq!(customer["structuredContent"]["email"], "[redacted]", "the result policy ran: {customer}");

    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let posts: Vec<&str> = log.lines().filter(|l| l.contains(" POST /mcp ")).collect();
    assert!(!posts.is_empty(), "nothing reached nginx:\n{log}");
    assert!(posts.iter().all(|l| l.starts_with("HTTP/2.0 ")), "every POST over HTTP/2:\n{log}");
}
