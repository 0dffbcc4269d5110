//! `[[approvals.notify]]` end to end: `portcullis serve` as a child process, a real upstream,
//! and real webhook receivers (hyper servers on loopback) that record what they are sent.
//! Covers the signed JSON document for pending, approved, redeemed and expired approvals
//! (the HMAC checked here with a hand-written HMAC-SHA256), the Slack format, a receiver
//! that fails twice before it answers, and a receiver that never answers (the held request
//! is not delayed, the notification fails after its attempts, a full queue drops).

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::serve::{ADMIN_TOKEN, AGENT_KEY, Answer, Server, Upstream, send, temp_dir};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The signing key the server reads from `NOTIFY_TEST_SECRET`.
const SECRET: &str = "notify-test-secret-0123456789abcdef";

/// One POST a receiver got.
#[derive(Debug, Clone)]
struct Delivery {
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Delivery {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }
}

/// A webhook receiver on loopback. It answers each POST with the next status of its
/// script (200 once the script is used up), or, when `hang`, accepts connections and never
/// answers.
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Delivery>>>,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    fn start(script: &[u16], hang: bool) -> Receiver {
        Receiver::start_with(script, hang, None)
    }

    /// Over TLS with this certificate chain and key (PEM).
    fn start_tls(cert_pem: &str, key_pem: &str) -> Receiver {
        use rustls_pki_types::pem::PemObject;
        let chain = rustls_pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes()).map(Result::unwrap).collect();
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        Receiver::start_with(&[], false, Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
    }

    fn start_with(script: &[u16], hang: bool, tls: Option<tokio_rustls::TlsAcceptor>) -> Receiver {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let got: Arc<Mutex<Vec<Delivery>>> = Arc::default();
        let script: Arc<Mutex<VecDeque<u16>>> = Arc::new(Mutex::new(script.iter().copied().collect()));
        let record = got.clone();
        runtime.spawn(async move {
            let mut held = Vec::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                if hang {
                    // Keep the connection open, read nothing, answer nothing.
                    held.push(stream);
                    continue;
                }
                let (record, script, tls) = (record.clone(), script.clone(), tls.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (record, script) = (record.clone(), script.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
                            let headers = parts
                                .headers
                                .iter()
                                .map(|(k, v)| {
                                    (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned())
                                })
                                .collect();
                            record.lock().unwrap().push(Delivery { headers, body });
                            let status = script.lock().unwrap().pop_front().unwrap_or(200);
                            let mut response = hyper::Response::new(Full::new(Bytes::from_static(b"ok")));
                            *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        // A handshake the client gives up on (an untrusted certificate) ends here.
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        Receiver { addr, got, _runtime: runtime }
    }

    fn url(&self) -> String {
        format!("http://{}/hooks/portcullis", self.addr)
    }

    fn https_url(&self) -> String {
        format!("https://localhost:{}/hooks/portcullis", self.addr.port())
    }

    fn got(&self) -> Vec<Delivery> {
        self.got.lock().unwrap().clone()
    }

    /// Waits (up to `within`) until `done` holds for what was received; returns it.
    fn wait(&self, within: Duration, what: &str, done: impl Fn(&[Delivery]) -> bool) -> Vec<Delivery> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.got();
            if done(&got) {
                return got;
            }
            assert!(Instant::now() < deadline, "{what}: not received within {within:?}; got {got:#?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The JSON deliveries of one event kind.
    fn events(&self, kind: &str) -> Vec<Delivery> {
        self.got().into_iter().filter(|d| d.header("portcullis-event") == kind).collect()
    }
}

/// HMAC-SHA256 written out from RFC 2104, so the server's signature is checked by code
/// that shares nothing with it but SHA-256.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner_pad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let outer_pad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new().chain_update(&inner_pad).chain_update(message).finalize();
    Sha256::new().chain_update(&outer_pad).chain_update(inner).finalize().into()
}

/// What a receiver must do: parse `t=…,v1=…`, refuse a time more than 5 minutes away, and
/// compare the HMAC of `t.body`.
fn verify(delivery: &Delivery, secret: &str) {
    let header = delivery.header("portcullis-signature");
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<u64>().ok(),
            Some(("v1", value)) => v1 = Some(value.to_owned()),
            _ => {}
        }
    }
    let (t, v1) = (t.expect("t= in the signature"), v1.expect("v1= in the signature"));
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert!(now.abs_diff(t) <= 300, "signature time {t} is not within 5 minutes of {now}");
    let mut message = t.to_string().into_bytes();
    message.push(b'.');
    message.extend_from_slice(&delivery.body);
    let expected: String = hmac_sha256(secret.as_bytes(), &message).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(v1, expected, "the signature does not match the body");
    // And a changed body does not verify.
    let mut tampered = message.clone();
    tampered.push(b' ');
    let wrong: String = hmac_sha256(secret.as_bytes(), &tampered).iter().map(|b| format!("{b:02x}")).collect();
    assert_ne!(v1, wrong);
}

/// A deployment: config with the fixture's identities and policies, the invoices route,
/// the proxy and admin doors, an SQLite store, and `notify` (TOML) appended.
struct Deployment {
    dir: PathBuf,
    upstream: Upstream,
    server: Server,
}

impl Deployment {
    fn start(name: &str, ttl_seconds: u32, notify: &str) -> Deployment {
        common::policies_dir();
        let dir = temp_dir(name);
        let upstream = Upstream::start();
        let config = common::serve::fixture_config(false, "invoices:read")
            .replace("ttl_seconds = 600", &format!("ttl_seconds = {ttl_seconds}"))
            + &format!(
                r#"
[[routes]]
name = "invoices"
hosts = ["api.test"]
paths = ["/invoices/**"]
policies = ["scopes", "agent-guard"]

[server.proxy]
listen = "127.0.0.1:0"
upstream = "http://{upstream}"

[server.admin]
listen = "127.0.0.1:0"
token_env = "PORTCULLIS_TEST_ADMIN_TOKEN"

[audit]
path = "audit.jsonl"

[approvals]
store = "approvals.sqlite"
inbox_url = "https://approvals.example/approvals/{{id}}"
{notify}
"#,
                upstream = upstream.addr,
            );
        let path = dir.join("portcullis.toml");
        std::fs::write(&path, config).unwrap();
        let server =
            Server::start(&path, &[("PORTCULLIS_TEST_ADMIN_TOKEN", ADMIN_TOKEN), ("NOTIFY_TEST_SECRET", SECRET)]);
        Deployment { dir, upstream, server }
    }

    /// The agent's POST /invoices/N with a body that must never reach a notification.
    fn agent_writes(&self, n: u32, approval: Option<&str>) -> Answer {
        let path = format!("/invoices/{n}");
        let mut headers = vec![("host", "api.test"), ("x-api-key", AGENT_KEY), ("content-type", "application/json")];
        if let Some(id) = approval {
            headers.push(("portcullis-approval", id));
        }
        send("POST", &self.server.url("proxy", &path), &headers, br#"{"amount": 12, "iban": "BODY-MARKER-9"}"#)
    }

    fn admin(&self, method: &str, path: &str, body: &[u8]) -> Answer {
        let auth = format!("Bearer {ADMIN_TOKEN}");
        send(
            method,
            &self.server.url("admin", path),
            &[("authorization", &auth), ("content-type", "application/json")],
            body,
        )
    }

    /// `portcullis_notifications_total{target, result}` from `/metrics`.
    fn notifications(&self, target: &str, result: &str) -> u64 {
        let text = String::from_utf8(send("GET", &self.server.url("admin", "/metrics"), &[], b"").body).unwrap();
        let prefix = format!("portcullis_notifications_total{{target=\"{target}\",result=\"{result}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in /metrics:\n{text}"))
    }

    fn wait_metric(&self, target: &str, result: &str, at_least: u64, within: Duration) {
        let deadline = Instant::now() + within;
        while self.notifications(target, result) < at_least {
            assert!(Instant::now() < deadline, "{target} {result} never reached {at_least}:\n{}", self.server.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn held_id(answer: &Answer) -> String {
    assert_eq!(answer.status, 403, "{}", String::from_utf8_lossy(&answer.body));
    let problem = answer.json();
    assert_eq!(problem["code"], "approval-required", "{problem}");
    problem["approval"]["id"].as_str().unwrap().to_owned()
}

#[test]
fn signed_json_tells_of_pending_approved_and_redeemed_approvals() {
    let receiver = Receiver::start(&[], false);
    let notify = format!(
        r#"
[[approvals.notify]]
name = "hooks"
url = "{url}"
secret_env = "NOTIFY_TEST_SECRET"
events = ["pending", "approved", "rejected", "expired", "redeemed"]
groups = ["finance-approvers"]

[[approvals.notify]]
name = "legal-only"
url = "{url}"
secret_env = "NOTIFY_TEST_SECRET"
groups = ["legal"]
"#,
        url = receiver.url()
    );
    let d = Deployment::start("notify-json", 600, &notify);

    let held = d.agent_writes(7, None);
    let id = held_id(&held);
    let request_id = held.header("x-request-id").unwrap_or_default().to_owned();
    let got = receiver.wait(Duration::from_secs(10), "pending", |g| !g.is_empty());
    let pending = &got[0];
    assert_eq!(pending.header("content-type"), "application/json");
    assert_eq!(pending.header("portcullis-event"), "pending");
    assert_eq!(pending.header("portcullis-delivery"), format!("{id}.pending"));
    verify(pending, SECRET);
    let doc = pending.json();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["event"], "pending");
    assert_eq!(doc["event_id"], format!("{id}.pending"));
    assert_eq!(doc["approval"]["id"], id.as_str());
    assert_eq!(doc["approval"]["group"], "finance-approvers");
    assert_eq!(doc["approval"]["state"], "pending");
    assert_eq!(doc["approval"]["requested_by"], json!({"kind": "agent", "id": "invoice-bot", "on_behalf_of": "alice"}));
    assert_eq!(doc["approval"]["request"]["line"], "POST api.test /invoices/7");
    assert_eq!(doc["approval"]["policy"], "agent-guard");
    assert!(doc["approval"]["reason"].as_str().is_some_and(|r| !r.is_empty()), "{doc}");
    assert!(doc["approval"]["expires"].as_str().unwrap().ends_with('Z'), "{doc}");
    assert_eq!(doc["decided_by"], Value::Null);
    if !request_id.is_empty() {
        assert_eq!(doc["request_id"], request_id.as_str());
    }
    assert_eq!(doc["inbox_url"], format!("https://approvals.example/approvals/{id}"));

    // Asking again without the id finds the same approval: no second notification.
    assert_eq!(held_id(&d.agent_writes(7, None)), id);

    let approved = d.admin("POST", &format!("/approvals/{id}/approve"), br#"{"by": "fiona@finance.test"}"#);
    assert_eq!(approved.status, 200, "{}", String::from_utf8_lossy(&approved.body));
    receiver
        .wait(Duration::from_secs(10), "approved", |g| g.iter().any(|d| d.header("portcullis-event") == "approved"));
    let approved = &receiver.events("approved")[0];
    verify(approved, SECRET);
    let doc = approved.json();
    assert_eq!(doc["approval"]["state"], "approved");
    assert!(doc["decided_by"]["id"].as_str().is_some_and(|by| !by.is_empty()), "{doc}");

    let passed = d.agent_writes(7, Some(&id));
    assert_eq!(passed.status, 200, "{}", String::from_utf8_lossy(&passed.body));
    assert_eq!(d.upstream.seen_at("/invoices/7").len(), 1);
    receiver
        .wait(Duration::from_secs(10), "redeemed", |g| g.iter().any(|d| d.header("portcullis-event") == "redeemed"));
    let redeemed = receiver.events("redeemed")[0].json();
    assert_eq!(redeemed["approval"]["state"], "used");

    // One of each, all to `hooks` (the legal-only target wants another group), no request
    // body or credential in any of them.
    std::thread::sleep(Duration::from_millis(300));
    let all = receiver.got();
    let kinds: Vec<&str> = all.iter().map(|d| d.header("portcullis-event")).collect();
    assert_eq!(kinds, ["pending", "approved", "redeemed"], "{all:#?}");
    for delivery in &all {
        let text = String::from_utf8_lossy(&delivery.body);
        assert!(!text.contains("BODY-MARKER-9") && !text.contains(AGENT_KEY), "{text}");
    }
    assert_eq!(d.notifications("hooks", "sent"), 3);
    assert_eq!(d.notifications("legal-only", "sent"), 0);
    assert_eq!(d.notifications("hooks", "failed"), 0);
    let _ = &d.dir;
}

#[test]
fn an_expired_approval_is_told_once_and_slack_gets_text_with_the_inbox_link() {
    let receiver = Receiver::start(&[], false);
    let slack = Receiver::start(&[], false);
    let notify = format!(
        r#"
[[approvals.notify]]
name = "hooks"
url = "{url}"
secret_env = "NOTIFY_TEST_SECRET"

[[approvals.notify]]
name = "chat"
url = "{slack}"
format = "slack"
"#,
        url = receiver.url(),
        slack = slack.url()
    );
    let d = Deployment::start("notify-expiry", 1, &notify);
    let id = held_id(&d.agent_writes(3, None));

    // The sweeper finds it within a few seconds of its expiry (1 s).
    receiver.wait(Duration::from_secs(15), "expired", |g| g.iter().any(|d| d.header("portcullis-event") == "expired"));
    let expired = &receiver.events("expired")[0];
    verify(expired, SECRET);
    let doc = expired.json();
    assert_eq!(doc["event_id"], format!("{id}.expired"));
    assert_eq!(doc["approval"]["state"], "expired");
    assert_eq!(doc["expired_while"], "pending");
    assert_eq!(doc["decided_by"], Value::Null);

    let texts = slack.wait(Duration::from_secs(10), "slack", |g| g.len() >= 2);
    let pending = texts[0].json();
    let text = pending["text"].as_str().unwrap();
    assert!(text.starts_with("Approval needed from *finance-approvers*"), "{text}");
    assert!(text.contains("POST api.test /invoices/3"), "{text}");
    assert!(text.contains(&format!("<https://approvals.example/approvals/{id}|Open {id}>")), "{text}");
    assert_eq!(texts[0].header("portcullis-signature"), "", "Slack deliveries are not signed");
    let text = texts[1].json()["text"].as_str().unwrap().to_owned();
    assert!(text.starts_with("Expired before it was decided"), "{text}");

    // Two more sweeps: still one expiry each.
    std::thread::sleep(Duration::from_millis(4_500));
    assert_eq!(receiver.events("expired").len(), 1);
    assert_eq!(slack.got().len(), 2);
    assert_eq!(d.notifications("chat", "sent"), 2);
}

#[test]
fn a_failing_receiver_gets_the_event_on_the_third_attempt_and_a_dead_one_delays_nobody() {
    let flaky = Receiver::start(&[500, 500], false);
    let hung = Receiver::start(&[], true);
    let notify = format!(
        r#"
[[approvals.notify]]
name = "flaky"
url = "{flaky}"
secret_env = "NOTIFY_TEST_SECRET"
attempts = 3
backoff_ms = 100

[[approvals.notify]]
name = "hung"
url = "{hung}"
secret_env = "NOTIFY_TEST_SECRET"
attempts = 2
timeout_ms = 1500
backoff_ms = 500
queue = 1
"#,
        flaky = flaky.url(),
        hung = hung.url()
    );
    let d = Deployment::start("notify-retry", 600, &notify);

    // The retry budget of `hung` is 1.5 + 0.5 + 1.5 = 3.5 s per event; the caller's answer
    // comes long before any of it.
    let started = Instant::now();
    let id = held_id(&d.agent_writes(1, None));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "the held request took {took:?} with a receiver that never answers");

    let got = flaky.wait(Duration::from_secs(10), "three attempts", |g| g.len() >= 3);
    assert_eq!(got.len(), 3, "{got:#?}");
    for attempt in &got {
        assert_eq!(attempt.header("portcullis-delivery"), format!("{id}.pending"));
        verify(attempt, SECRET);
        assert_eq!(attempt.body, got[0].body, "every attempt carries the same document");
    }
    d.wait_metric("flaky", "sent", 1, Duration::from_secs(5));
    assert_eq!(d.notifications("flaky", "failed"), 0);

    // Two more held requests while `hung` is stuck on the first: its queue holds one, so
    // one is dropped; the callers are answered at once all the same.
    for n in [2, 3] {
        let started = Instant::now();
        held_id(&d.agent_writes(n, None));
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    d.wait_metric("hung", "dropped", 1, Duration::from_secs(5));
    // The first event fails after its two attempts.
    d.wait_metric("hung", "failed", 1, Duration::from_secs(10));
    assert_eq!(d.notifications("hung", "sent"), 0);
    // `flaky` got every event in the end.
    flaky.wait(Duration::from_secs(10), "all three pending", |g| {
        let mut ids: Vec<&str> = g.iter().map(|d| d.header("portcullis-delivery")).collect();
        ids.dedup();
        ids.len() == 3
    });
    let log = d.server.log();
    assert!(log.contains("approval notification failed; giving up"), "{log}");
    assert!(!log.contains(&hung.url()), "the log names targets, not their URLs:\n{log}");
    assert!(!log.contains(SECRET));
}

#[test]
fn check_prints_the_targets_and_refuses_a_missing_secret() {
    common::policies_dir();
    let dir = temp_dir("notify-check");
    let config = common::serve::fixture_config(false, "invoices:read")
        + r#"
[[routes]]
name = "invoices"
paths = ["/invoices/**"]
policies = ["agent-guard"]

[server.admin]
listen = "127.0.0.1:0"

[approvals]
store = "approvals.sqlite"

[[approvals.notify]]
url = "https://hooks.example/secret-path?token=abc"
secret_env = "NOTIFY_TEST_SECRET"
events = ["pending", "expired"]

[[approvals.notify]]
name = "chat"
url_env = "NOTIFY_TEST_SLACK_URL"
format = "slack"
groups = ["finance-approvers"]
"#;
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, config).unwrap();
    let check = |env: &[(&str, &str)]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"));
        command
            .args(["check", "--config"])
            .arg(&path)
            .env("PORTCULLIS_CACHE_DIR", common::root().join("target/test-cache"))
            .env_remove("NOTIFY_TEST_SECRET")
            .env_remove("NOTIFY_TEST_SLACK_URL");
        for (k, v) in env {
            command.env(k, v);
        }
        let out = command.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) =
        check(&[("NOTIFY_TEST_SECRET", SECRET), ("NOTIFY_TEST_SLACK_URL", "https://hooks.slack.test/T/B/x")]);
    assert!(ok, "{out}");
    assert!(out.contains("notify:"), "{out}");
    assert!(out.contains("hooks.example (json, signed): pending, expired for every group; 3 attempt(s)"), "{out}");
    assert!(out.contains("chat (slack): pending, approved, rejected, expired for finance-approvers"), "{out}");
    assert!(!out.contains("secret-path") && !out.contains("token=abc") && !out.contains("/T/B/x"), "{out}");

    let (ok, out) = check(&[("NOTIFY_TEST_SLACK_URL", "https://hooks.slack.test/T/B/x")]);
    assert!(!ok);
    assert!(out.contains("[[approvals.notify]] #1 secret_env names `NOTIFY_TEST_SECRET`, which is not set"), "{out}");
    let (ok, out) = check(&[("NOTIFY_TEST_SECRET", "short")]);
    assert!(!ok);
    assert!(out.contains("shorter than 16 bytes"), "{out}");
}

/// A CA made for the test and a certificate it issued for `localhost`: (CA, cert, key) PEM.
fn private_ca() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "Notify Test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "receiver");
    leaf.use_authority_key_identifier_extension = true;
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    (ca_pem, cert.pem(), key.serialize_pem())
}

#[test]
fn an_https_receiver_is_reached_with_its_private_ca_and_refused_without_it() {
    let (ca, cert, key) = private_ca();
    let receiver = Receiver::start_tls(&cert, &key);
    let dir = temp_dir("notify-tls-ca");
    std::fs::write(dir.join("notify-ca.pem"), ca).unwrap();
    let notify = format!(
        r#"
[[approvals.notify]]
name = "trusted"
url = "{url}"
secret_env = "NOTIFY_TEST_SECRET"
[approvals.notify.tls]
ca_file = "{ca_file}"

[[approvals.notify]]
name = "untrusted"
url = "{url}"
secret_env = "NOTIFY_TEST_SECRET"
attempts = 1
"#,
        url = receiver.https_url(),
        ca_file = dir.join("notify-ca.pem").display()
    );
    let d = Deployment::start("notify-tls", 600, &notify);
    let id = held_id(&d.agent_writes(5, None));
    d.wait_metric("trusted", "sent", 1, Duration::from_secs(10));
    d.wait_metric("untrusted", "failed", 1, Duration::from_secs(10));
    let got = receiver.got();
    assert_eq!(got.len(), 1, "only the target that trusts the CA got through: {got:#?}");
    assert_eq!(got[0].header("portcullis-delivery"), format!("{id}.pending"));
    verify(&got[0], SECRET);
    let log = d.server.log();
    assert!(log.contains("untrusted") && log.contains("giving up"), "{log}");
}
