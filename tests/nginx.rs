//! A real nginx in front of a real upstream, asking `portcullis serve`'s forward-auth
//! endpoint through `auth_request` before it passes each request on.
//!
//! Covers what that front door can enforce (request phase only): allow, deny, require-approval
//! with the approval round trip, 401 for an unknown API key, a non-403 policy status (429 from
//! rate-limit) arriving as 403 with `X-Portcullis-Status`, the refusal of a body redaction
//! nginx cannot apply, and the audit log (one record per decision, no secret in it).
//!
//! nginx runs as the current user with its own `nginx.conf`, pid file, logs and temp folders
//! in the test's temporary folder. The nginx `location` blocks below are the ones
//! `docs/front-doors.md` shows. Without nginx the test fails: install `nginx-light`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use common::nginx::{Nginx, nginx_binary};
use common::serve::{ADMIN_TOKEN, AGENT_KEY, Answer, READER_KEY, Server, USER_KEY, Upstream, send, temp_dir};
use serde_json::Value;

const UNKNOWN_KEY: &str = "nginx-test-unknown-key-00001";

/// The `server` block: every request asks Portcullis first (`auth_request`); what it
/// answers is shown to the client and passed to the upstream. This is the snippet
/// docs/front-doors.md shows.
fn nginx_server(listen: u16, forward_auth: u16, upstream: &str) -> String {
    format!(
        r#"    upstream api {{
        server {upstream};
    }}

    server {{
        listen 127.0.0.1:{listen};

        location / {{
            auth_request /_portcullis;

            # What Portcullis answered, captured from the auth response...
            auth_request_set $portcullis_status     $upstream_http_x_portcullis_status;
            auth_request_set $portcullis_approval   $upstream_http_portcullis_approval;
            auth_request_set $portcullis_principal  $upstream_http_x_portcullis_principal;
            auth_request_set $portcullis_on_behalf  $upstream_http_x_portcullis_on_behalf_of;
            auth_request_set $portcullis_request_id $upstream_http_x_request_id;

            # ...shown to the client, on refusals too (`always`)...
            add_header X-Portcullis-Status    $portcullis_status always;
            add_header Portcullis-Approval    $portcullis_approval always;
            add_header X-Portcullis-Principal $portcullis_principal always;
            add_header X-Request-Id           $portcullis_request_id always;

            # ...and given to the upstream (an empty value removes the header).
            proxy_set_header X-Portcullis-Principal    $portcullis_principal;
            proxy_set_header X-Portcullis-On-Behalf-Of $portcullis_on_behalf;
            proxy_set_header X-Request-Id              $portcullis_request_id;
            proxy_set_header Portcullis-Approval       "";
            proxy_set_header Host                      $host;
            proxy_pass http://api;
        }}

        location = /_portcullis {{
            internal;
            proxy_pass http://127.0.0.1:{forward_auth};
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

// ---------------------------------------------------------------------------------------
// Portcullis
// ---------------------------------------------------------------------------------------

/// The Portcullis config: the reference policies, API-key identity, forward-auth, the
/// admin listener, approvals and the audit log, all inside `dir`.
fn portcullis_config(dir: &Path) -> PathBuf {
    let text = common::serve::fixture_config(false, "invoices:read")
        + r#"
[[routes]]
name = "invoices"
paths = ["/invoices/**"]
policies = ["scopes", "agent-guard"]

[[routes]]
name = "reports"
paths = ["/reports/**"]
policies = ["rate-limit"]

[[routes]]
name = "partner"
hosts = ["*.partner.example"]
policies = ["pii-redact"]

[server.forward_auth]
listen = "127.0.0.1:0"

[server.admin]
listen = "127.0.0.1:0"
token_env = "PORTCULLIS_TEST_ADMIN_TOKEN"

[approvals]
store = "approvals.sqlite"

[audit]
path = "audit.jsonl"
"#;
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, text).expect("write portcullis.toml");
    path
}

/// One request through nginx with an API key (and more headers).
fn call(nginx: &Nginx, method: &str, path: &str, key: &str, extra: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut headers = vec![("x-api-key", key)];
    headers.extend_from_slice(extra);
    send(method, &nginx.url(path), &headers, body)
}

fn text(answer: &Answer) -> String {
    String::from_utf8_lossy(&answer.body).into_owned()
}

#[test]
fn nginx_auth_request_enforces_every_request_phase_decision_through_forward_auth() {
    // Fail early, before building anything, when nginx is missing.
    nginx_binary();
    let started = Instant::now();
    common::policies_dir();
    let dir = temp_dir("nginx-forward-auth");
    let upstream = Upstream::start();
    let config = portcullis_config(&dir);
    let server = Server::start(&config, &[("PORTCULLIS_TEST_ADMIN_TOKEN", ADMIN_TOKEN)]);
    let (forward_auth, admin) = (server.port("forward_auth"), server.port("admin"));
    let nginx = Nginx::start(&dir, 1, |ports| nginx_server(ports[0], forward_auth, &upstream.addr.to_string()));
    let logs = || format!("--- portcullis:\n{}\n--- nginx:\n{}", server.log(), nginx.log());
    // Every answer's request id, to match the audit records against.
    let mut request_ids: Vec<String> = Vec::new();
    let mut track = |answer: &Answer, what: &str| {
        let id =
            answer.header("x-request-id").unwrap_or_else(|| panic!("{what}: no X-Request-Id from nginx: {answer:?}"));
        request_ids.push(id.to_owned());
    };

    // Allow: the upstream gets the request, with who asked and the request id.
    let ok = call(&nginx, "GET", "/invoices/1?expand=lines", USER_KEY, &[], b"");
    assert_eq!(ok.status, 200, "allow: {}\n{}", text(&ok), logs());
    assert_eq!(ok.json()["path"], "/invoices/1");
    assert_eq!(ok.header("x-portcullis-principal"), Some("user:alice"));
    assert!(ok.header("x-portcullis-status").is_none(), "no status header on an allow: {ok:?}");
    track(&ok, "allow");
    let seen = upstream.seen_at("/invoices/1");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].target, "/invoices/1?expand=lines");
    assert_eq!(seen[0].headers.get("x-portcullis-principal").map(String::as_str), Some("user:alice"));
    assert_eq!(seen[0].headers.get("x-request-id").map(String::as_str), ok.header("x-request-id"));

    // Deny: bob may read but not write; the upstream never sees the request.
    let denied =
        call(&nginx, "POST", "/invoices/2", READER_KEY, &[("content-type", "application/json")], br#"{"amount": 5}"#);
    assert_eq!(denied.status, 403, "deny: {}\n{}", text(&denied), logs());
    assert_eq!(denied.header("x-portcullis-status"), Some("403"));
    assert!(denied.header("portcullis-approval").is_none());
    track(&denied, "deny");
    assert!(upstream.seen_at("/invoices/2").is_empty(), "a denied request reached the upstream");

    // Require-approval: the agent's write is held; the client sees the approval id.
    let body: &[u8] = br#"{"amount": 120, "customer": 7}"#;
    let json = [("content-type", "application/json")];
    let held = call(&nginx, "POST", "/invoices/3", AGENT_KEY, &json, body);
    assert_eq!(held.status, 403, "require-approval: {}\n{}", text(&held), logs());
    assert_eq!(held.header("x-portcullis-status"), Some("403"));
    let approval = held.header("portcullis-approval").expect("the approval id reaches the client").to_owned();
    assert!(!approval.is_empty());
    track(&held, "require-approval");
    assert!(upstream.seen_at("/invoices/3").is_empty(), "a held request reached the upstream");

    // An approver approves it on the admin listener; the same request with the id passes
    // once, and the upstream never sees the approval header.
    approve_on_admin(admin, &approval);
    let with_id = [json[0], ("portcullis-approval", approval.as_str())];
    let retried = call(&nginx, "POST", "/invoices/3", AGENT_KEY, &with_id, body);
    assert_eq!(retried.status, 200, "approved retry: {}\n{}", text(&retried), logs());
    assert_eq!(retried.header("x-portcullis-principal"), Some("agent:invoice-bot"));
    track(&retried, "approved retry");
    let seen = upstream.seen_at("/invoices/3");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].body, body, "nginx passes the body on; only the auth subrequest drops it");
    assert!(!seen[0].headers.contains_key("portcullis-approval"), "{:?}", seen[0].headers);
    assert_eq!(seen[0].headers.get("x-portcullis-on-behalf-of").map(String::as_str), Some("alice"));
    let again = call(&nginx, "POST", "/invoices/3", AGENT_KEY, &with_id, body);
    assert_eq!(again.status, 403, "an approval is used once: {}", text(&again));
    track(&again, "used approval");
    assert_eq!(upstream.seen_at("/invoices/3").len(), 1);

    // 401: an unknown API key, before any policy runs; nginx passes WWW-Authenticate on.
    let unknown = call(&nginx, "GET", "/invoices/1", UNKNOWN_KEY, &[], b"");
    assert_eq!(unknown.status, 401, "unknown key: {}\n{}", text(&unknown), logs());
    assert_eq!(unknown.header("x-portcullis-status"), Some("401"));
    assert!(unknown.header("www-authenticate").is_some(), "{unknown:?}");
    track(&unknown, "unknown key");
    assert_eq!(upstream.seen_at("/invoices/1").len(), 1);

    // 429: nginx's auth_request knows only 401 and 403, so the rate limit arrives as 403
    // with the policy's status in X-Portcullis-Status.
    for n in 1..=2 {
        let ok = call(&nginx, "GET", "/reports/monthly", USER_KEY, &[], b"");
        assert_eq!(ok.status, 200, "report {n}: {}\n{}", text(&ok), logs());
        track(&ok, "report");
    }
    let limited = call(&nginx, "GET", "/reports/monthly", USER_KEY, &[], b"");
    assert_eq!(limited.status, 403, "rate-limited: {}\n{}", text(&limited), logs());
    assert_eq!(limited.header("x-portcullis-status"), Some("429"));
    track(&limited, "rate-limited");
    assert_eq!(upstream.seen_at("/reports/monthly").len(), 2);

    // A body redaction nginx cannot apply is refused, not passed unredacted.
    let partner = call(
        &nginx,
        "POST",
        "/sync",
        USER_KEY,
        &[("host", "crm.partner.example"), ("content-type", "application/json")],
        br#"{"email": "ada@example.com"}"#,
    );
    assert_eq!(partner.status, 403, "unenforceable redaction: {}\n{}", text(&partner), logs());
    assert_eq!(partner.header("x-portcullis-status"), Some("403"));
    track(&partner, "unenforceable redaction");
    assert!(upstream.seen_at("/sync").is_empty(), "an unredacted body reached the upstream");

    drop(nginx);
    let log = server.stop();

    check_audit(&dir, &log, &approval, &request_ids);
    eprintln!("nginx end-to-end test took {:?}", started.elapsed());
}

/// An approver finds the pending approval on the admin listener and approves it.
fn approve_on_admin(admin: u16, approval: &str) {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let admin_url = |path: &str| format!("http://127.0.0.1:{admin}{path}");
    let pending = send("GET", &admin_url("/approvals?state=pending"), &[("authorization", &auth)], b"");
    assert_eq!(pending.status, 200, "{}", text(&pending));
    assert_eq!(pending.json()[0]["id"], approval, "{}", text(&pending));
    let approved = send(
        "POST",
        &admin_url(&format!("/approvals/{approval}/approve")),
        &[("authorization", &auth), ("content-type", "application/json")],
        br#"{"by": "fiona@finance.test"}"#,
    );
    assert_eq!(approved.status, 200, "{}", text(&approved));
}

/// The audit log after the nginx run: one record per decision (forward-auth has only the
/// request phase), each matching the request id the client saw, and no secret anywhere.
fn check_audit(dir: &Path, log: &str, approval: &str, request_ids: &[String]) {
    let audit_text = std::fs::read_to_string(dir.join("audit.jsonl")).expect("audit log");
    let all: Vec<Value> =
        audit_text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l}: {e}"))).collect();
    // The approval's life is recorded too (issue 20: records with an `approval` object):
    // pending and redeemed by the door, approved by the admin listener.
    let (events, audit): (Vec<Value>, Vec<Value>) = all.into_iter().partition(|r| r["approval"].is_object());
    let settled: Vec<&Value> = events.iter().filter(|r| r["front_door"] == "admin").collect();
    assert_eq!(settled.len(), 1, "{audit_text}");
    assert_eq!(
        (settled[0]["approval"]["event"].as_str(), settled[0]["approval_id"].as_str()),
        (Some("approved"), Some(approval))
    );
    let kinds: Vec<&str> = events.iter().filter_map(|r| r["approval"]["event"].as_str()).collect();
    assert_eq!(kinds, ["pending", "approved", "redeemed"], "{audit_text}");
    assert_eq!(audit.len(), request_ids.len(), "one record per decision:\n{audit_text}");
    for id in request_ids {
        let records: Vec<&Value> = audit.iter().filter(|r| r["request_id"] == id.as_str()).collect();
        assert_eq!(records.len(), 1, "request {id}: {records:?}\n{audit_text}");
        assert_eq!(records[0]["front_door"], "forward-auth");
        assert_eq!(records[0]["phase"], "request");
    }
    let record = |id: &String| audit.iter().find(|r| r["request_id"] == id.as_str()).unwrap();
    assert_eq!(record(&request_ids[0])["decision"], "allow");
    assert_eq!(record(&request_ids[0])["credential_id"], "alice-key");
    assert_eq!(record(&request_ids[0])["path"], "/invoices/1");
    assert_eq!(record(&request_ids[1])["decision"], "deny");
    assert_eq!(record(&request_ids[1])["status"], 403);
    assert_eq!(record(&request_ids[2])["decision"], "require-approval");
    assert_eq!(record(&request_ids[2])["approval_id"], approval);
    assert_eq!(record(&request_ids[2])["on_behalf_of"], "alice");
    assert_eq!(record(&request_ids[3])["decision"], "allow");
    assert_eq!(record(&request_ids[3])["approval_id"], approval);
    assert_eq!(record(&request_ids[5])["decision"], "unauthenticated");
    assert_eq!(record(&request_ids[5])["status"], 401);
    assert_eq!(record(&request_ids[8])["decision"], "deny");
    assert_eq!(record(&request_ids[8])["status"], 429);
    for secret in [USER_KEY, READER_KEY, AGENT_KEY, UNKNOWN_KEY, ADMIN_TOKEN, "ada@example.com", "expand=lines"] {
        assert!(!audit_text.contains(secret), "the audit log contains a secret: {secret}");
        assert!(!log.contains(secret), "the server log contains a secret: {secret}");
    }
}
