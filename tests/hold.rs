//! Holding the request while a human decides (issue 20 item 4): `portcullis serve` with a
//! `hold` on a route, a real upstream on loopback and real clients. The caller's one request
//! stays open until an approver decides: approved, it is forwarded once and the caller gets
//! the upstream's answer; rejected, the refusal; the hold runs out, the usual
//! approval-required answer, whose id a later retry redeems. A decision made by `portcullis
//! approvals` from another process (on the SQLite store) is seen by the poll; the cap
//! answers at once; a caller that goes away frees its place; a server that stops answers
//! what it holds; an MCP `tools/call` held and approved returns the tool's result.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::serve::{ADMIN_TOKEN, AGENT_KEY, Answer, Server, Upstream, send, temp_dir};
use serde_json::{Value, json};

const BODY: &[u8] = br#"{"amount": 120, "customer": 7}"#;

/// A deployment: the proxy (and admin listener) in front of a recording upstream, the
/// agent's invoice writes held for `finance-approvers`, on a route with `hold`.
struct Held {
    dir: PathBuf,
    server: Server,
    upstream: Upstream,
}

impl Held {
    fn start(name: &str, hold: &str, extra: &str) -> Held {
        common::policies_dir();
        let dir = temp_dir(name);
        let upstream = Upstream::start();
        let config = dir.join("portcullis.toml");
        let text = common::serve::fixture_config(false, "invoices:read")
            + &format!(
                r#"
[[routes]]
name = "invoices"
paths = ["/invoices/**"]
policies = ["agent-guard"]
hold = "{hold}"

[server.proxy]
listen = "127.0.0.1:0"
upstream = "http://{upstream}"

[server.admin]
listen = "127.0.0.1:0"
token_env = "PORTCULLIS_TEST_ADMIN_TOKEN"

[approvals]
store = "approvals.sqlite"
{extra}

[audit]
path = "audit.jsonl"
"#,
                upstream = upstream.addr,
            );
        std::fs::write(&config, text).unwrap();
        let server = Server::start(&config, &[("PORTCULLIS_TEST_ADMIN_TOKEN", ADMIN_TOKEN)]);
        Held { dir, server, upstream }
    }

    /// invoice-bot (for alice) posts an invoice: a request agent-guard holds for approval.
    fn call(&self, path: &str, approval: Option<&str>) -> Answer {
        let mut headers = vec![("x-api-key", AGENT_KEY), ("content-type", "application/json")];
        if let Some(id) = approval {
            headers.push(("portcullis-approval", id));
        }
        send("POST", &self.server.url("proxy", path), &headers, BODY)
    }

    /// The call on a thread of its own, with the time it took.
    fn call_in_background(&self, path: &str) -> std::thread::JoinHandle<(Answer, Duration)> {
        let url = self.server.url("proxy", path);
        std::thread::spawn(move || {
            let started = Instant::now();
            let headers = [("x-api-key", AGENT_KEY), ("content-type", "application/json")];
            (send("POST", &url, &headers, BODY), started.elapsed())
        })
    }

    fn admin(&self, method: &str, path: &str, body: &[u8]) -> Answer {
        let bearer = format!("Bearer {ADMIN_TOKEN}");
        let headers = [("authorization", bearer.as_str()), ("content-type", "application/json")];
        send(method, &self.server.url("admin", path), &headers, body)
    }

    /// Waits until `count` approvals are pending and returns their ids.
    fn pending(&self, count: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let list = self.admin("GET", "/approvals?state=pending", b"").json();
            let ids: Vec<String> =
                list.as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_owned()).collect();
            if ids.len() >= count {
                return ids;
            }
            assert!(Instant::now() < deadline, "{count} pending approval(s) never appeared: {list}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A metric's value (0 when absent).
    fn metric(&self, name: &str) -> f64 {
        let text = String::from_utf8(self.admin("GET", "/metrics", b"").body).unwrap();
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0.0)
    }

    /// Waits until the metric `name` reads `value`.
    fn metric_reaches(&self, name: &str, value: f64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.metric(name) != value {
            assert!(Instant::now() < deadline, "{name} never reached {value}: {}", self.metric(name));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn audit(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.join("audit.jsonl")).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

fn approval_required(answer: &Answer) -> String {
    assert_eq!(answer.status, 403, "{}", String::from_utf8_lossy(&answer.body));
    let problem = answer.json();
    assert_eq!(problem["code"], "approval-required", "{problem}");
    let id = problem["approval"]["id"].as_str().unwrap().to_owned();
    assert_eq!(answer.header("portcullis-approval"), Some(id.as_str()));
    id
}

#[test]
fn approved_while_held_the_one_request_is_forwarded_once_and_answered_by_the_upstream() {
    let held = Held::start("hold-approved", "30s", "");
    let caller = held.call_in_background("/invoices/7");
    let id = held.pending(1).remove(0);
    held.metric_reaches("portcullis_held_requests", 1.0);
    assert!(held.upstream.seen_at("/invoices/7").is_empty(), "nothing is forwarded before the decision");
    let approved = held.admin("POST", &format!("/approvals/{id}/approve"), br#"{"note": "fine"}"#);
    assert_eq!(approved.status, 200, "{}", String::from_utf8_lossy(&approved.body));
    let (answer, took) = caller.join().unwrap();
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(answer.json()["path"], "/invoices/7", "the upstream's own answer");
    // Woken by the decision made here, not by the hold running out.
    assert!(took < Duration::from_secs(15), "{took:?}");
    let seen = held.upstream.seen_at("/invoices/7");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].body, BODY, "the body the policies judged");
    assert!(!seen[0].headers.contains_key("portcullis-approval"));
    // Redeemed exactly once: the id cannot be used again.
    let again = held.call("/invoices/7", Some(&id));
    assert_eq!(again.status, 403);
    assert_eq!(again.json()["code"], "approval-invalid", "{}", again.json());
    assert_eq!(held.upstream.seen_at("/invoices/7").len(), 1);
    assert_eq!(held.admin("GET", &format!("/approvals/{id}"), b"").json()["state"], "used");
    held.metric_reaches("portcullis_held_requests", 0.0);
    assert_eq!(held.metric("portcullis_hold_total{result=\"approved\"}"), 1.0);
    // The approval's life in the audit log: pending, approved, redeemed, once each.
    let audit = held.audit();
    for event in ["pending", "approved", "redeemed"] {
        let n = audit.iter().filter(|r| r["approval"]["event"] == event && r["approval_id"] == id).count();
        assert_eq!(n, 1, "{event}: {audit:#?}");
    }
}

#[test]
fn rejected_while_held_the_caller_gets_the_refusal() {
    let held = Held::start("hold-rejected", "30s", "");
    let caller = held.call_in_background("/invoices/8");
    let id = held.pending(1).remove(0);
    let rejected = held.admin("POST", &format!("/approvals/{id}/reject"), br#"{"note": "no"}"#);
    assert_eq!(rejected.status, 200, "{}", String::from_utf8_lossy(&rejected.body));
    let (answer, took) = caller.join().unwrap();
    assert!(took < Duration::from_secs(15), "{took:?}");
    assert_eq!(answer.status, 403, "{}", String::from_utf8_lossy(&answer.body));
    let problem = answer.json();
    assert_eq!(problem["code"], "approval-invalid", "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("rejected"), "{problem}");
    assert!(held.upstream.seen_at("/invoices/8").is_empty());
    assert_eq!(held.metric("portcullis_hold_total{result=\"rejected\"}"), 1.0);
}

#[test]
fn when_the_hold_runs_out_the_caller_gets_the_id_and_a_later_retry_is_forwarded_once() {
    let held = Held::start("hold-timeout", "1s", "");
    let started = Instant::now();
    let answer = held.call("/invoices/9", None);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(10), "{took:?}");
    let id = approval_required(&answer);
    assert_eq!(held.metric("portcullis_hold_total{result=\"timeout\"}"), 1.0);
    assert_eq!(held.admin("POST", &format!("/approvals/{id}/approve"), b"{}").status, 200);
    let retry = held.call("/invoices/9", Some(&id));
    assert_eq!(retry.status, 200, "{}", String::from_utf8_lossy(&retry.body));
    assert_eq!(held.upstream.seen_at("/invoices/9").len(), 1);
    // A retry with the id is not held again: it passes at once (above), or is refused.
    let used = held.call("/invoices/9", Some(&id));
    assert_eq!(used.json()["code"], "approval-invalid");
    assert_eq!(held.upstream.seen_at("/invoices/9").len(), 1);
}

#[test]
fn a_decision_made_by_the_cli_on_the_store_completes_the_held_request() {
    let held = Held::start("hold-cli", "30s", "");
    let caller = held.call_in_background("/invoices/10");
    let id = held.pending(1).remove(0);
    // Another process, straight on the SQLite file: no event reaches the server.
    let config = held.server.config.display().to_string();
    let out = common::portcullis_cli(&["approvals", "--config", &config, "approve", &id, "--note", "ok"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (answer, took) = caller.join().unwrap();
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    assert!(took < Duration::from_secs(15), "{took:?}");
    assert_eq!(held.upstream.seen_at("/invoices/10").len(), 1);
}

#[test]
fn past_the_cap_a_request_gets_the_approval_id_at_once() {
    let held = Held::start("hold-cap", "30s", "max_held = 2");
    let first = held.call_in_background("/invoices/11");
    let second = held.call_in_background("/invoices/12");
    held.metric_reaches("portcullis_held_requests", 2.0);
    let started = Instant::now();
    let third = held.call("/invoices/13", None);
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    approval_required(&third);
    assert_eq!(held.metric("portcullis_hold_total{result=\"over_cap\"}"), 1.0);
    // The two held ones still complete when approved.
    for id in held.pending(3) {
        let _ = held.admin("POST", &format!("/approvals/{id}/approve"), b"{}");
    }
    for caller in [first, second] {
        let (answer, _) = caller.join().unwrap();
        assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    }
    held.metric_reaches("portcullis_held_requests", 0.0);
}

#[test]
fn a_caller_that_goes_away_frees_its_place_and_its_approval_stays_pending() {
    let held = Held::start("hold-gone", "30s", "max_held = 1");
    let addr = held.server.addr("proxy");
    let mut stream = TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /invoices/14 HTTP/1.1\r\nhost: {addr}\r\nx-api-key: {AGENT_KEY}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        BODY.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(BODY).unwrap();
    held.metric_reaches("portcullis_held_requests", 1.0);
    drop(stream);
    held.metric_reaches("portcullis_held_requests", 0.0);
    assert_eq!(held.metric("portcullis_hold_total{result=\"gone\"}"), 1.0);
    let id = held.pending(1).remove(0);
    assert_eq!(held.admin("GET", &format!("/approvals/{id}"), b"").json()["state"], "pending");
    // The place is free: the next request is held again (not answered at once).
    let next = held.call_in_background("/invoices/15");
    held.metric_reaches("portcullis_held_requests", 1.0);
    for id in held.pending(2) {
        let _ = held.admin("POST", &format!("/approvals/{id}/approve"), b"{}");
    }
    assert_eq!(next.join().unwrap().0.status, 200);
    assert!(held.upstream.seen_at("/invoices/14").is_empty(), "the abandoned request is never forwarded");
}

#[test]
fn a_server_that_stops_answers_its_held_requests_with_the_approval_id() {
    let held = Held::start("hold-stop", "30s", "");
    let addr = held.server.addr("proxy");
    // A raw client, so the answer is read whatever the connection does after it.
    let caller = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        let head = format!(
            "POST /invoices/16 HTTP/1.1\r\nhost: {addr}\r\nx-api-key: {AGENT_KEY}\r\ncontent-type: application/json\r\n\
             connection: close\r\ncontent-length: {}\r\n\r\n",
            BODY.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(BODY).unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    });
    held.metric_reaches("portcullis_held_requests", 1.0);
    let Held { server, upstream, .. } = held;
    let started = Instant::now();
    let log = server.stop();
    assert!(started.elapsed() < Duration::from_secs(8), "{:?}: {log}", started.elapsed());
    let answer = caller.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}\n{log}");
    assert!(answer.contains("approval-required") && answer.contains("portcullis-approval: apr_"), "{answer}");
    assert!(upstream.seen_at("/invoices/16").is_empty());
}

#[test]
fn a_held_request_survives_a_reload_and_its_redemption_runs_the_new_policies() {
    let held = Held::start("hold-reload", "30s", "");
    let caller = held.call_in_background("/invoices/17");
    let id = held.pending(1).remove(0);
    // The new config puts a policy before agent-guard that only lets admins write invoices.
    let scopes = common::component("scopes").display().to_string();
    let config = std::fs::read_to_string(&held.server.config).unwrap().replace(
        "policies = [\"agent-guard\"]\nhold = \"30s\"",
        &format!(
            "policies = [\"admins-only\", \"agent-guard\"]\nhold = \"30s\"\n\n[policies.admins-only]\nmodule = \"{scopes}\"\n\
             [policies.admins-only.settings]\ndefault = \"deny\"\n\
             rules = [{{ methods = [\"POST\"], path = \"/invoices/**\", scopes = [\"invoices:admin\"] }}]"
        ),
    );
    assert!(config.contains("admins-only"));
    std::fs::write(&held.server.config, config).unwrap();
    held.server.hangup();
    held.metric_reaches("portcullis_reloads_total{result=\"ok\"}", 1.0);
    assert_eq!(held.metric("portcullis_held_requests"), 1.0, "still held across the reload");
    assert_eq!(held.admin("POST", &format!("/approvals/{id}/approve"), b"{}").status, 200);
    let (answer, _) = caller.join().unwrap();
    assert_eq!(answer.status, 403, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(answer.json()["policy"], "admins-only", "judged again by the policies serving now: {}", answer.json());
    assert!(held.upstream.seen_at("/invoices/17").is_empty());
}

#[test]
fn check_lists_the_holds_and_refuses_a_bad_one_naming_the_key() {
    common::policies_dir();
    let dir = temp_dir("hold-check");
    let config = |hold: &str| {
        let text = common::serve::fixture_config(false, "invoices:read")
            + &format!(
                "\n[[routes]]\nname = \"invoices\"\npaths = [\"/invoices/**\"]\npolicies = [\"agent-guard\"]\nhold = \"{hold}\"\n\n\
                 [server.proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:9\"\n\n\
                 [approvals]\nstore = \"approvals.sqlite\"\nmax_held = 50\n"
            );
        let path = dir.join(format!("check-{}.toml", hold.len()));
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let ok = common::portcullis_cli(&["check", "--config", &config("45s")], &[]);
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{out}{}", String::from_utf8_lossy(&ok.stderr));
    assert!(out.contains("at most 50 at once") && out.contains("route invoices: 45s"), "{out}");
    let bad = common::portcullis_cli(&["check", "--config", &config("2 hours")], &[]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(err.contains("`routes[0].hold` (route `invoices`): \"2 hours\" is not a duration"), "{err}");
}

/// The venv's python with the MCP SDK (`scripts/install-mcp.sh`), once per run.
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let output = Command::new("bash").arg(common::root().join("scripts/install-mcp.sh")).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
    })
}

/// The SDK's MCP server (`tests/mcp/server.py`) on a port it picks; killed on drop.
struct McpServer {
    child: Child,
    port: u16,
    seen: PathBuf,
}

impl McpServer {
    fn start(dir: &Path) -> McpServer {
        let (port_file, seen) = (dir.join("mcp.port"), dir.join("seen.jsonl"));
        let log = std::fs::File::create(dir.join("mcp.log")).unwrap();
        let mut child = Command::new(python())
            .arg(common::root().join("tests/mcp/server.py"))
            .arg(&port_file)
            .arg(&seen)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                break text.trim().parse().unwrap();
            }
            assert!(child.try_wait().unwrap().is_none(), "the MCP server exited");
            assert!(Instant::now() < deadline, "the MCP server never listened");
            std::thread::sleep(Duration::from_millis(100));
        };
        McpServer { child, port, seen }
    }

    fn calls(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.seen).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_mcp_tool_call_held_then_approved_returns_the_tool_result() {
    common::policies_dir();
    let dir = temp_dir("hold-mcp");
    let mcp = McpServer::start(&dir);
    let tool_guard = common::component("tool-guard").display().to_string();
    let config = dir.join("portcullis.toml");
    let text = common::serve::fixture_config(true, "invoices:read")
        + &format!(
            r#"
[policies.tool-guard]
module = "{tool_guard}"
hold = "30s"

[policies.tool-guard.settings]
approver_group = "crm-approvers"
ttl_seconds = 600
writes = ["create_invoice"]

[policies.tool-guard.settings.tools]
agent = ["search_customers", "get_customer", "create_invoice"]
user = ["*"]

[[routes]]
name = "mcp"
paths = ["/mcp"]
policies = ["tool-guard"]

[server.mcp]
listen = "127.0.0.1:0"
upstream = "http://127.0.0.1:{port}/mcp"

[server.admin]
listen = "127.0.0.1:0"
token_env = "PORTCULLIS_TEST_ADMIN_TOKEN"

[approvals]
store = "approvals.sqlite"

[audit]
path = "audit.jsonl"
"#,
            port = mcp.port,
        );
    std::fs::write(&config, text).unwrap();
    let server = Server::start(&config, &[("PORTCULLIS_TEST_ADMIN_TOKEN", ADMIN_TOKEN)]);
    // The SDK's client calls the tool once and waits for its result.
    let steps = json!([{"op": "call", "tool": "create_invoice", "args": {"customer_id": 7, "amount": 120.5}}]);
    let client = Command::new(python())
        .arg(common::root().join("tests/mcp/client.py"))
        .arg(server.url("mcp", "/mcp"))
        .arg(steps.to_string())
        .arg("--header")
        .arg(format!("x-api-key:{AGENT_KEY}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let admin = |method: &str, path: &str| {
        send(
            method,
            &server.url("admin", path),
            &[("authorization", &bearer), ("content-type", "application/json")],
            b"{}",
        )
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        let list = admin("GET", "/approvals?state=pending").json();
        if let Some(id) = list[0]["id"].as_str() {
            break id.to_owned();
        }
        assert!(Instant::now() < deadline, "the call was never held: {}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(mcp.calls().is_empty(), "nothing reaches the server before the decision");
    assert_eq!(admin("POST", &format!("/approvals/{id}/approve")).status, 200);
    let output = client.wait_with_output().unwrap();
    let out: Vec<Value> = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stderr)));
    let result = &out[0]["result"];
    assert_eq!(result["isError"], false, "{out:#?}");
    let text = result["content"][0]["text"].as_str().unwrap_or_else(|| panic!("{out:#?}"));
    let tool: Value = serde_json::from_str(text).unwrap();
    assert_eq!(tool["invoice"], "inv-1001", "the tool's own result: {out:#?}");
    let calls = mcp.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["tool"], "create_invoice");
    // The held call's redemption is audited like any MCP call: with its protocol generation.
    let audit = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    let allowed: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| {
            r["operation"] == "create_invoice"
                && r["decision"] == "allow"
                && r.get("approval").is_none()
                && r["phase"] == "request"
        })
        .collect();
    assert_eq!(allowed.len(), 1, "{audit}");
    assert_eq!(allowed[0]["door_facts"]["mcp_generation"], "2025", "{}", allowed[0]);
}
