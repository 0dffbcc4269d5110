//! `portcullis serve` end to end on loopback: a real upstream, the reverse proxy as a child
//! process, a real HTTP client. Covers the four decisions in both phases, API-key and JWT
//! identity, the approval round trip across a restart, the audit log, metrics and hot
//! reload under traffic.

mod common;

use std::cell::Cell;
use std::fmt::Write as _;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::serve::{ADMIN_TOKEN, AGENT_KEY, READER_KEY, Server, USER_KEY, Upstream, send, temp_dir, try_send};
use serde_json::{Value, json};

const JWT_SECRET: &str = "test-jwt-secret-for-loopback-tests-only";

/// Ports and paths of one test's deployment. The doors listen on port 0; the ports are
/// those of the server started last.
struct Deployment {
    dir: PathBuf,
    config: PathBuf,
    proxy: Cell<u16>,
    admin: Cell<u16>,
    upstream: Upstream,
}

impl Deployment {
    fn new(name: &str) -> Deployment {
        common::policies_dir();
        let dir = temp_dir(name);
        let upstream = Upstream::start();
        let deployment =
            Deployment { config: dir.join("portcullis.toml"), dir, proxy: Cell::new(0), admin: Cell::new(0), upstream };
        deployment.write_config("invoices:read");
        deployment
    }

    /// Writes the config; `read_scope` is the scope GET /invoices needs (changed by the
    /// reload test).
    fn write_config(&self, read_scope: &str) {
        let text = common::serve::fixture_config(false, read_scope)
            + &format!(
                r#"
[[identity.jwt]]
issuer = "https://issuer.test"
secret_env = "PORTCULLIS_TEST_JWT_SECRET"
audiences = ["invoices-api"]
kind = "user"

[[routes]]
name = "invoices"
hosts = ["api.test"]
paths = ["/invoices/**"]
policies = ["scopes", "agent-guard"]

[[routes]]
name = "customers"
hosts = ["api.test"]
paths = ["/customers/**"]
policies = ["scopes", "agent-guard", "pii-redact"]

[[routes]]
name = "partner"
hosts = ["*.partner.example"]
policies = ["pii-redact"]

[[routes]]
name = "reports"
hosts = ["api.test"]
paths = ["/reports/**"]
policies = ["rate-limit"]

[server.proxy]
listen = "127.0.0.1:0"
upstream = "http://{upstream}"
max_request_bytes = 65536

[server.admin]
listen = "127.0.0.1:0"
token_env = "PORTCULLIS_TEST_ADMIN_TOKEN"

[approvals]
store = "approvals.sqlite"

[audit]
path = "audit.jsonl"
"#,
                upstream = self.upstream.addr,
            );
        // Written aside and renamed, as a deployment tool would, so the server never
        // reads half a file.
        let aside = self.dir.join("portcullis.toml.new");
        std::fs::write(&aside, text).unwrap();
        std::fs::rename(&aside, &self.config).unwrap();
    }

    fn start(&self) -> Server {
        let server = Server::start(
            &self.config,
            &[("PORTCULLIS_TEST_JWT_SECRET", JWT_SECRET), ("PORTCULLIS_TEST_ADMIN_TOKEN", ADMIN_TOKEN)],
        );
        self.proxy.set(server.port("proxy"));
        self.admin.set(server.port("admin"));
        server
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.proxy.get())
    }

    fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin.get())
    }

    fn audit(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.join("audit.jsonl")).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l}: {e}"))).collect()
    }
}

fn api(key: &str) -> Vec<(&'static str, String)> {
    vec![("host", "api.test".to_owned()), ("x-api-key", key.to_owned())]
}

fn call(d: &Deployment, method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> common::serve::Answer {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    send(method, &d.url(path), &headers, body)
}

fn jwt(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn the_proxy_enforces_every_decision_in_both_phases_and_audits_it() {
    let d = Deployment::new("serve-decisions");
    let server = d.start();

    // Allow: the upstream sees the request, the caller its answer.
    let ok = call(&d, "GET", "/invoices/1?expand=lines", &api(USER_KEY), b"");
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    assert_eq!(ok.json()["path"], "/invoices/1");
    let request_id = ok.header("x-request-id").expect("request id").to_owned();
    let seen = d.upstream.seen_at("/invoices/1");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/invoices/1?expand=lines");
    assert_eq!(seen[0].headers.get("x-request-id"), Some(&request_id));

    // Deny: RFC 9457 problem with the policy's status and code; the upstream sees nothing.
    let denied = call(&d, "POST", "/invoices/2", &api(READER_KEY), br#"{"amount": 5}"#);
    assert_eq!(denied.status, 403);
    assert_eq!(denied.header("content-type"), Some("application/problem+json"));
    let problem = denied.json();
    assert_eq!(problem["code"], "missing-scope", "{problem}");
    assert_eq!(problem["policy"], "scopes");
    assert!(problem["detail"].as_str().unwrap().contains("invoices:write"), "{problem}");
    assert!(d.upstream.seen_at("/invoices/2").is_empty());

    // Redact, response phase: personal fields masked, internal header gone, length right.
    let customer = call(&d, "GET", "/customers/42", &api(USER_KEY), b"");
    assert_eq!(customer.status, 200);
    let body = customer.json();
    assert_eq!(body["email"], "***");
    assert_eq!(body["phone"], "***");
    assert_eq!(body["name"], "Ada");
    assert!(customer.header("x-internal-user").is_none());
    assert_eq!(customer.header("content-length"), Some(customer.body.len().to_string().as_str()));

    // Redact, request phase: a body bound for a third party is masked before it leaves.
    let mut partner = api(USER_KEY);
    partner[0].1 = "crm.partner.example".into();
    partner.push(("content-type", "application/json".into()));
    let sent = call(&d, "POST", "/sync", &partner, br#"{"email": "ada@example.com", "plan": "gold"}"#);
    assert_eq!(sent.status, 200, "{}", String::from_utf8_lossy(&sent.body));
    let seen = d.upstream.seen_at("/sync");
    let upstream_body: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(upstream_body, json!({"email": "***", "plan": "gold"}));
    assert_eq!(seen[0].headers.get("content-length"), Some(&seen[0].body.len().to_string()));

    // Require-approval: held, with the approval's id and how to retry.
    let held = call(&d, "POST", "/invoices/3", &api(AGENT_KEY), br#"{"amount": 7}"#);
    assert_eq!(held.status, 403);
    let problem = held.json();
    assert_eq!(problem["code"], "approval-required");
    assert_eq!(problem["approval"]["approver_group"], "finance-approvers");
    assert_eq!(held.header("portcullis-approval"), problem["approval"]["id"].as_str());
    assert!(d.upstream.seen_at("/invoices/3").is_empty());

    // Identity: an unknown key is 401 before any policy; a JWT is a user with its scopes.
    let unknown = call(&d, "GET", "/invoices/1", &api("no-such-key-000000000000"), b"");
    assert_eq!(unknown.status, 401);
    assert!(unknown.header("www-authenticate").is_some());
    assert_eq!(unknown.json()["code"], "unauthenticated");
    let token = jwt(json!({"iss": "https://issuer.test", "aud": "invoices-api", "sub": "carol",
        "scope": "invoices:read", "exp": now_s() + 300}));
    let bearer = vec![("host", "api.test".to_owned()), ("authorization", format!("Bearer {token}"))];
    assert_eq!(call(&d, "GET", "/invoices/9", &bearer, b"").status, 200);
    assert_eq!(call(&d, "POST", "/invoices/9", &bearer, b"{}").status, 403);
    let expired = jwt(json!({"iss": "https://issuer.test", "aud": "invoices-api", "sub": "carol",
        "scope": "invoices:read", "exp": now_s() - 3600}));
    let bearer = vec![("host", "api.test".to_owned()), ("authorization", format!("Bearer {expired}"))];
    assert_eq!(call(&d, "GET", "/invoices/9", &bearer, b"").status, 401);

    // Too large: 413 before any policy runs or the upstream sees it.
    let big = vec![b'x'; 70_000];
    assert_eq!(call(&d, "POST", "/invoices/4", &api(USER_KEY), &big).status, 413);

    // Metrics count what was decided.
    let metrics = send("GET", &d.admin_url("/metrics"), &[], b"");
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains(r#"portcullis_decisions_total{door="proxy",phase="request",route="invoices",decision="deny"}"#),
        "{text}"
    );
    assert!(text.contains("portcullis_policy_seconds_bucket"), "{text}");
    assert_eq!(send("GET", &d.admin_url("/healthz"), &[], b"").status, 200);
    assert_eq!(send("GET", &d.admin_url("/readyz"), &[], b"").json()["generation"], 1);

    let log = server.stop();
    // The audit log: a record per phase decision, in order, without a secret.
    let audit = d.audit();
    let text = std::fs::read_to_string(d.dir.join("audit.jsonl")).unwrap();
    for secret in [USER_KEY, READER_KEY, AGENT_KEY, &token, &expired, "ada@example.com", "ada-internal", "expand=lines"]
    {
        assert!(!text.contains(secret), "the audit log contains a secret: {secret}");
        assert!(!log.contains(secret), "the server log contains a secret: {secret}");
    }
    let first: Vec<&Value> = audit.iter().filter(|r| r["request_id"] == request_id.as_str()).collect();
    assert_eq!(first.len(), 2, "{first:?}");
    assert_eq!(first[0]["phase"], "request");
    assert_eq!(first[0]["principal"]["id"], "alice");
    assert_eq!(first[0]["credential_id"], "alice-key");
    assert_eq!(first[1]["phase"], "response");
    assert_eq!(first[1]["status"], 200);
    let held_record = audit.iter().find(|r| r["path"] == "/invoices/3").expect("held request audited");
    assert_eq!(held_record["decision"], "require-approval");
    assert_eq!(held_record["approval_id"], problem["approval"]["id"]);
    assert_eq!(held_record["on_behalf_of"], "alice");
    assert!(audit.iter().any(|r| r["status"] == 401));
}

#[test]
fn an_approved_request_passes_once_even_across_a_restart() {
    let d = Deployment::new("serve-approvals");
    let server = d.start();
    let body = br#"{"amount": 120, "customer": 7}"#;
    let held = call(&d, "POST", "/invoices/7", &api(AGENT_KEY), body);
    assert_eq!(held.status, 403);
    let id = held.json()["approval"]["id"].as_str().unwrap().to_owned();
    // Asking again without the id does not pile up approvals.
    let again = call(&d, "POST", "/invoices/7", &api(AGENT_KEY), body);
    assert_eq!(again.json()["approval"]["id"], id.as_str());
    server.stop();

    // A restart: the pending approval is still there.
    let server = d.start();
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let listed = send("GET", &d.admin_url("/approvals?state=pending"), &[("authorization", &auth)], b"");
    assert_eq!(listed.status, 200);
    assert_eq!(listed.json()[0]["id"], id.as_str());
    assert_eq!(send("GET", &d.admin_url("/approvals"), &[], b"").status, 401, "the API needs the admin token");
    let wrong = send("GET", &d.admin_url("/approvals"), &[("authorization", "Bearer wrong-token-000000000")], b"");
    assert_eq!(wrong.status, 401);

    // Retrying before approval is refused and says why.
    let early =
        call(&d, "POST", "/invoices/7", &[api(AGENT_KEY), vec![("portcullis-approval", id.clone())]].concat(), body);
    assert_eq!(early.status, 403);
    assert_eq!(early.json()["code"], "approval-invalid");

    let approved = send(
        "POST",
        &d.admin_url(&format!("/approvals/{id}/approve")),
        &[("authorization", &auth), ("content-type", "application/json")],
        br#"{"by": "fiona@finance.test"}"#,
    );
    assert_eq!(approved.status, 200, "{}", String::from_utf8_lossy(&approved.body));
    assert_eq!(approved.json()["state"], "approved");

    // Another request or another principal cannot use it.
    let other_body =
        call(&d, "POST", "/invoices/7", &[api(AGENT_KEY), vec![("portcullis-approval", id.clone())]].concat(), b"{}");
    assert_eq!(other_body.status, 403);
    assert_eq!(other_body.json()["code"], "approval-invalid");
    let other_principal =
        call(&d, "POST", "/invoices/7", &[api(USER_KEY), vec![("portcullis-approval", id.clone())]].concat(), body);
    // alice may write anyway: her request is allowed on its own merits, not by the approval.
    assert_eq!(other_principal.status, 200);

    // The same request with the id passes once; the upstream never sees the approval header.
    let before = d.upstream.seen_at("/invoices/7").len();
    let retry =
        call(&d, "POST", "/invoices/7", &[api(AGENT_KEY), vec![("portcullis-approval", id.clone())]].concat(), body);
    assert_eq!(retry.status, 200, "{}", String::from_utf8_lossy(&retry.body));
    let seen = d.upstream.seen_at("/invoices/7");
    assert_eq!(seen.len(), before + 1);
    assert!(!seen.last().unwrap().headers.contains_key("portcullis-approval"));
    let twice =
        call(&d, "POST", "/invoices/7", &[api(AGENT_KEY), vec![("portcullis-approval", id.clone())]].concat(), body);
    assert_eq!(twice.status, 403);
    assert!(twice.json()["detail"].as_str().unwrap().contains("used"), "{}", twice.json());
    server.stop();

    // The CLI reads the same store.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["approvals", "--config"])
        .arg(&d.config)
        .args(["list", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["state"], "used");
    // Approved with the admin token: recorded as such (issue 20), whatever `by` the body typed.
    assert_eq!(listed[0]["decided_by"], "admin-token");
    assert_eq!(listed[0]["decided_via"], "admin-token");
    let redeemed = d
        .audit()
        .into_iter()
        .filter(|r| {
            // Decision records only: the approval's own event records (issue 20) carry it too.
            r["approval"].is_null()
                && r["approval_id"] == id.as_str()
                && r["method"] == "POST"
                && r["decision"] == "allow"
                && r["phase"] == "request"
        })
        .count();
    assert_eq!(redeemed, 1, "the allowed retry is audited with its approval id");
    let approval_record =
        d.audit().into_iter().find(|r| r["approval"]["event"] == "approved").expect("the approval is audited");
    assert_eq!(approval_record["approval"]["by"]["id"], "admin-token");
    assert_eq!(approval_record["principal"]["id"], "invoice-bot", "the held request's caller");
    assert_eq!(approval_record["approval_id"], id.as_str());
    assert_eq!(approval_record["path"], "/invoices/7");
}

#[test]
fn a_reload_swaps_the_rules_under_traffic_and_a_bad_config_keeps_the_old_ones() {
    let d = Deployment::new("serve-reload");
    let server = d.start();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, denied, failed) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let url = d.url("/invoices/1");
    let traffic = {
        let (stop, ok, denied, failed) = (stop.clone(), ok.clone(), denied.clone(), failed.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match try_send("GET", &url, &[("host", "api.test"), ("x-api-key", READER_KEY)], b"") {
                    Ok(a) if a.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    Ok(a) if a.status == 403 => denied.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    let wait_for = |what: &str, cond: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}:\n{}", server.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for("traffic", &|| ok.load(Ordering::Relaxed) > 20);

    // A changed file is picked up on its own: bob no longer holds the scope GET needs.
    d.write_config("invoices:audit");
    wait_for("the new rules", &|| {
        send("GET", &d.url("/invoices/1"), &[("host", "api.test"), ("x-api-key", READER_KEY)], b"").status == 403
    });
    let generation =
        |d: &Deployment| send("GET", &d.admin_url("/readyz"), &[], b"").json()["generation"].as_u64().unwrap();
    assert_eq!(generation(&d), 2);

    // A broken config is refused; the last good rules keep serving.
    std::fs::write(&d.config, "[policies.scopes\nmodule = ").unwrap();
    server.hangup();
    wait_for("the refusal", &|| !send("GET", &d.admin_url("/readyz"), &[], b"").json()["last_reload_error"].is_null());
    let readyz = send("GET", &d.admin_url("/readyz"), &[], b"").json();
    assert!(readyz["last_reload_error"].as_str().unwrap().contains("portcullis.toml"), "{readyz}");
    assert_eq!(generation(&d), 2);
    let denied_before = denied.load(Ordering::Relaxed);
    wait_for("traffic on the old rules", &|| denied.load(Ordering::Relaxed) > denied_before + 20);

    // SIGHUP after a fix brings the original rules back.
    d.write_config("invoices:read");
    server.hangup();
    wait_for("the fixed rules", &|| generation(&d) >= 3);
    let ok_before = ok.load(Ordering::Relaxed);
    wait_for("allowed traffic again", &|| ok.load(Ordering::Relaxed) > ok_before + 20);

    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();
    assert_eq!(failed.load(Ordering::Relaxed), 0, "requests failed during reloads:\n{}", server.log());
    let metrics = String::from_utf8(send("GET", &d.admin_url("/metrics"), &[], b"").body).unwrap();
    assert!(metrics.contains(r#"portcullis_reloads_total{result="error"}"#), "{metrics}");
}

#[test]
fn the_example_serve_config_loads() {
    common::policies_dir();
    let path = common::root().join("examples/serve.toml");
    let config = portcullis_host::Config::read(&path).unwrap();
    assert!(config.server.proxy.is_some() && config.server.forward_auth.is_some());
    assert!(config.server.ext_authz.is_some() && config.server.admin.is_some());
    assert!(config.approvals.is_some() && config.audit.is_some());
    portcullis_host::PolicySet::from_config_file(&path).unwrap();
}

#[test]
fn a_reload_keeps_rate_limit_counters_and_stripped_credentials_stay_stripped() {
    let d = Deployment::new("serve-counters");
    let server = d.start();
    let report = || call(&d, "GET", "/reports/monthly", &api(USER_KEY), b"").status;
    assert_eq!((report(), report(), report()), (200, 200, 429));
    server.hangup();
    let deadline = Instant::now() + Duration::from_secs(20);
    while send("GET", &d.admin_url("/readyz"), &[], b"").json()["generation"] != 2 {
        assert!(Instant::now() < deadline, "no reload:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(report(), 429, "a reload must not hand out a fresh allowance");
    server.stop();

    // With strip_credentials the upstream never sees the API key.
    let text =
        std::fs::read_to_string(&d.config).unwrap().replace("strip_credentials = false", "strip_credentials = true");
    std::fs::write(&d.config, text).unwrap();
    let server = d.start();
    assert_eq!(call(&d, "GET", "/invoices/5", &api(USER_KEY), b"").status, 200);
    let seen = d.upstream.seen_at("/invoices/5");
    assert!(!seen[0].headers.contains_key("x-api-key"), "{:?}", seen[0].headers);
    server.stop();
}

#[test]
fn a_streamed_body_past_the_cap_never_reaches_the_upstream_whole() {
    use std::io::{Read, Write};
    let d = Deployment::new("serve-stream");
    // A request policy (rate-limit) runs on the route, so the body is read for the gate,
    // up to the cap: past it the caller gets 413 and the upstream nothing.
    let text = std::fs::read_to_string(&d.config).unwrap().replace("[approvals]\nstore = \"approvals.sqlite\"\n", "");
    std::fs::write(&d.config, text).unwrap();
    let server = d.start();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", d.proxy.get())).unwrap();
    write!(
        stream,
        "POST /reports/upload HTTP/1.1\r\nhost: api.test\r\nx-api-key: {USER_KEY}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let chunk = vec![b'x'; 10_000];
    for _ in 0..7 {
        write!(stream, "{:x}\r\n", chunk.len()).unwrap();
        stream.write_all(&chunk).unwrap();
        stream.write_all(b"\r\n").unwrap();
    }
    stream.write_all(b"0\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(d.upstream.seen_at("/reports/upload").is_empty(), "an over-cap body reached the upstream");
    server.stop();
}

/// Finding (issue 16): with two policies on a route each asking a different approver group,
/// one approval was created, and approving it let the retry through without the second
/// group. Now each group gets its own approval, the caller is told all of them in one
/// header value, and the retry passes only once every group approved, using them all.
/// Also the digest finding: a retry that swaps a repeated query name's values is another
/// request.
#[test]
fn every_approver_group_that_asked_must_approve_before_the_retry_passes() {
    let d = Deployment::new("serve-two-groups");
    let agent_guard = common::component("agent-guard").display().to_string();
    let mut text = std::fs::read_to_string(&d.config).unwrap();
    write!(
        text,
        r#"
[policies.legal-guard]
module = "{agent_guard}"
settings = {{ approver_group = "legal-approvers", ttl_seconds = 600 }}

[[routes]]
name = "contracts"
hosts = ["api.test"]
paths = ["/contracts/**"]
policies = ["agent-guard", "legal-guard"]
"#
    )
    .unwrap();
    std::fs::write(&d.config, text).unwrap();
    let server = d.start();
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let approve = |id: &str, by: &str| {
        let answer = send(
            "POST",
            &d.admin_url(&format!("/approvals/{id}/approve")),
            &[("authorization", &auth), ("content-type", "application/json")],
            format!(r#"{{"by": "{by}"}}"#).as_bytes(),
        );
        assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    };
    let state = |id: &str| {
        send("GET", &d.admin_url(&format!("/approvals/{id}")), &[("authorization", &auth)], b"").json()["state"].clone()
    };
    let path = "/contracts/9?pay_to=alice&pay_to=mallory";
    let body = br#"{"amount": 900}"#;
    let with = |ids: &str| [api(AGENT_KEY), vec![("portcullis-approval", ids.to_owned())]].concat();

    // Held: one approval per group, both named in the one header value.
    let held = call(&d, "POST", path, &api(AGENT_KEY), body);
    assert_eq!(held.status, 403);
    let problem = held.json();
    assert_eq!(problem["code"], "approval-required", "{problem}");
    assert_eq!(problem["approval"]["approver_group"], "finance-approvers, legal-approvers");
    let both = problem["approval"]["id"].as_str().unwrap().to_owned();
    assert_eq!(held.header("portcullis-approval"), Some(both.as_str()));
    let ids: Vec<String> = both.split(',').map(str::to_owned).collect();
    assert_eq!(ids.len(), 2, "{both}");
    assert_eq!(problem["approval"]["ids"], json!(ids));
    let (finance, legal) = (&ids[0], &ids[1]);

    // Finance approves. Its id alone does not pass: legal is asked (the same pending
    // approval), the caller is told both again, and finance's approval is not used.
    approve(finance, "fiona@finance.test");
    let alone = call(&d, "POST", path, &with(finance), body);
    assert_eq!(alone.status, 403);
    assert_eq!(alone.json()["code"], "approval-required", "{}", alone.json());
    assert_eq!(alone.header("portcullis-approval"), Some(both.as_str()));
    assert_eq!(state(finance), "approved");
    // Both ids while legal is still pending: refused, nothing used.
    let early = call(&d, "POST", path, &with(&both), body);
    assert_eq!(early.status, 403);
    assert_eq!(early.json()["code"], "approval-invalid");
    assert!(early.json()["detail"].as_str().unwrap().contains(legal.as_str()), "{}", early.json());
    assert_eq!(state(finance), "approved");
    assert!(d.upstream.seen_at("/contracts/9").is_empty());

    // Legal approves. The repeated query swapped is another request.
    approve(legal, "lena@legal.test");
    let swapped = call(&d, "POST", "/contracts/9?pay_to=mallory&pay_to=alice", &with(&both), body);
    assert_eq!(swapped.status, 403);
    assert_eq!(swapped.json()["code"], "approval-invalid");
    assert!(swapped.json()["detail"].as_str().unwrap().contains("different request"), "{}", swapped.json());
    assert!(d.upstream.seen_at("/contracts/9").is_empty());

    // The request as approved passes once, using both approvals.
    let retry = call(&d, "POST", path, &with(&both), body);
    assert_eq!(retry.status, 200, "{}", String::from_utf8_lossy(&retry.body));
    let seen = d.upstream.seen_at("/contracts/9");
    assert_eq!(seen.len(), 1);
    assert!(!seen[0].headers.contains_key("portcullis-approval"));
    assert_eq!((state(finance), state(legal)), (json!("used"), json!("used")));
    let twice = call(&d, "POST", path, &with(&both), body);
    assert_eq!(twice.status, 403);
    assert_eq!(d.upstream.seen_at("/contracts/9").len(), 1);
    server.stop();

    let redeemed = d
        .audit()
        .into_iter()
        .filter(|r| r["path"] == "/contracts/9" && r["method"] == "POST")
        .filter(|r| r["decision"] == "allow" && r["phase"] == "request" && r["approval"].is_null())
        .map(|r| r["approval_id"].clone())
        .collect::<Vec<_>>();
    assert_eq!(redeemed, [json!(both)], "the allowed retry is audited with both ids");
}
