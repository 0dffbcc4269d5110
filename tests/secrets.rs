//! Secrets never leak: credentials in Authorization headers, API keys, cookies, query
//! parameters and bodies are seeded into a replay and a proxy run, and none may appear in
//! the audit log, the tracing output (at debug level) or any error message.

mod common;

use std::fmt::Write as _;

use std::process::Command;

use common::serve::{Server, USER_KEY, Upstream, fixture_config, send, temp_dir};

const BEARER: &str = "SECRET-bearer-eyJhbGciOiJIUzI1NiJ9.e30.c2ln";
const UNKNOWN_KEY: &str = "SECRET-api-key-nobody-knows";
const COOKIE: &str = "SECRET-cookie-session-7f3a";
const QUERY: &str = "SECRET-query-token-91b2";
const BODY: &str = "SECRET-body-card-4111111111111111";

fn secrets() -> [&'static str; 6] {
    [BEARER, UNKNOWN_KEY, COOKIE, QUERY, BODY, USER_KEY]
}

fn assert_clean(what: &str, text: &str) {
    for secret in secrets() {
        assert!(!text.contains(secret), "{what} contains the secret `{secret}`:\n{text}");
    }
}

fn config_text(upstream: &str) -> String {
    fixture_config(false, "invoices:read")
        + &format!(
            r#"
[[identity.jwt]]
issuer = "https://issuer.test"
secret_env = "PORTCULLIS_TEST_JWT_SECRET"

[[routes]]
name = "invoices"
paths = ["/invoices/**"]
policies = ["scopes", "agent-guard"]

[[routes]]
name = "customers"
paths = ["/customers/**"]
policies = ["scopes", "pii-redact"]

[server.proxy]
listen = "127.0.0.1:0"
upstream = "http://{upstream}"

[audit]
path = "audit.jsonl"
"#
        )
}

/// One request to send: method, path, headers, body.
type Sent = (&'static str, String, Vec<(&'static str, String)>, String);

/// Requests carrying every kind of secret: a bearer token that does not verify, an
/// unknown API key, a valid key with a cookie, a secret query parameter and a body.
fn requests() -> Vec<Sent> {
    vec![
        ("GET", "/invoices/1".into(), vec![("authorization", format!("Bearer {BEARER}"))], String::new()),
        ("GET", "/invoices/1".into(), vec![("x-api-key", UNKNOWN_KEY.into())], String::new()),
        (
            "POST",
            format!("/invoices/2?token={QUERY}"),
            vec![
                ("x-api-key", USER_KEY.into()),
                ("cookie", format!("session={COOKIE}")),
                ("content-type", "application/json".into()),
            ],
            format!(r#"{{"card": "{BODY}"}}"#),
        ),
        (
            "GET",
            format!("/customers/42?token={QUERY}"),
            vec![("x-api-key", USER_KEY.into()), ("cookie", format!("session={COOKIE}"))],
            String::new(),
        ),
    ]
}

#[test]
fn a_proxy_run_writes_no_secret_to_the_audit_log_or_the_server_log() {
    common::policies_dir();
    let dir = temp_dir("secrets-proxy");
    let upstream = Upstream::start();
    let config = dir.join("portcullis.toml");
    std::fs::write(&config, config_text(&upstream.addr.to_string())).unwrap();
    let server = Server::start(
        &config,
        &[("PORTCULLIS_TEST_JWT_SECRET", "jwt-secret-for-the-secrets-test-0123456789"), ("PORTCULLIS_LOG", "debug")],
    );
    let mut answers = String::new();
    for (method, path, headers, body) in requests() {
        let mut all: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        all.push(("host", "api.test"));
        let answer = send(method, &server.url("proxy", &path), &all, body.as_bytes());
        // Refusals (401 for the bad credentials) are error messages too.
        if answer.status >= 400 {
            answers.push_str(&String::from_utf8_lossy(&answer.body));
        }
    }
    let log = server.stop();
    let audit = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    assert_eq!(audit.lines().count(), 4 + 2, "four request records, two response records:\n{audit}");
    assert!(answers.contains("unauthenticated"), "{answers}");
    assert_clean("the audit log", &audit);
    assert_clean("the server log", &log);
    assert_clean("the refusals", &answers);
}

#[test]
fn a_replay_writes_no_secret_to_its_errors_or_tracing_output() {
    common::policies_dir();
    let dir = temp_dir("secrets-replay");
    let config = dir.join("portcullis.toml");
    std::fs::write(&config, config_text("127.0.0.1:9")).unwrap();
    let mut lines = String::new();
    for (method, path, headers, body) in requests() {
        let headers: serde_json::Map<String, serde_json::Value> =
            headers.into_iter().map(|(k, v)| (k.to_owned(), v.into())).collect();
        let mut request =
            serde_json::json!({"method": method, "url": format!("https://api.test{path}"), "headers": headers});
        if !body.is_empty() {
            request["body"] = serde_json::json!({"text": body});
        }
        lines.push_str(&serde_json::json!({"request": request}).to_string());
        lines.push('\n');
    }
    // A malformed line whose text holds a secret: the read error must not quote it.
    writeln!(lines, "{{\"request\": {{\"method\": \"GET\", \"url\": \"{QUERY}\"").unwrap();
    let traffic = dir.join("traffic.jsonl");
    std::fs::write(&traffic, lines).unwrap();
    for format in ["table", "junit"] {
        let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["replay", "--format", format, "--at", "now", "--config"])
            .arg(&config)
            .arg(&traffic)
            .env("PORTCULLIS_TEST_JWT_SECRET", "jwt-secret-for-the-secrets-test-0123456789")
            .env("PORTCULLIS_LOG", "debug")
            .env("PORTCULLIS_CACHE_DIR", common::root().join("target/test-cache"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stdout.contains("traffic.jsonl"), "{stdout}\n{stderr}");
        assert_clean(&format!("replay --format {format} output"), &stdout);
        assert_clean("replay's tracing output and errors", &stderr);
    }
}
