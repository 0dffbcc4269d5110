//! The MCP front door end to end on loopback: the official MCP Python SDK's server
//! (`tests/mcp/server.py`, Streamable HTTP) behind `portcullis serve`, and the SDK's client
//! (`tests/mcp/client.py`) in front, with the reference policy `tool-guard`. Every decision
//! is proven against what the real server received: allow, deny, redact (arguments on the
//! way in, results on the way out), require-approval with approve and retry, and the
//! filtered `tools/list`; over SSE and JSON answers, the handshake and the 2026 stateless
//! protocol. Plus replay of a recorded MCP session.
//!
//! The SDK is installed by `scripts/install-mcp.sh` (pinned, into `target/mcp-venv`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::serve::{ADMIN_TOKEN, AGENT_KEY, Answer, READER_KEY, Server, Upstream, send, temp_dir};
use serde_json::{Value, json};

/// The venv's python with the MCP SDK, installed once per test run.
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let script = common::root().join("scripts/install-mcp.sh");
        let output = Command::new("bash").arg(&script).output().expect("run scripts/install-mcp.sh");
        assert!(
            output.status.success(),
            "{} failed (it needs python3 with venv and PyPI access once):\n{}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
    })
}

/// The Python MCP server on loopback; killed on drop.
struct McpServer {
    child: Child,
    port: u16,
    seen: PathBuf,
}

impl McpServer {
    /// Starts the server on a port the system picks (it binds port 0 and writes the port
    /// it got to a file), waiting until it listens.
    fn start(dir: &Path, json_answers: bool) -> McpServer {
        // Several servers may share a test's folder: each gets its own files.
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let seen = dir.join(format!("seen-{n}.jsonl"));
        let port_file = dir.join(format!("mcp-server-{n}.port"));
        let log_path = dir.join(format!("mcp-server-{n}.log"));
        let _ = std::fs::remove_file(&port_file);
        let log = std::fs::File::create(&log_path).expect("log");
        let mut command = Command::new(python());
        command.arg(common::root().join("tests/mcp/server.py")).arg(&port_file).arg(&seen);
        if json_answers {
            command.arg("--json");
        }
        let mut child = command.stdout(Stdio::null()).stderr(log).spawn().expect("start the MCP server");
        let deadline = Instant::now() + Duration::from_secs(60);
        // The script writes the file aside and renames it, once its socket listens.
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                break text.trim().parse::<u16>().unwrap_or_else(|e| panic!("port file {text:?}: {e}"));
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the MCP server exited with {status}: {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                panic!("the MCP server never listened: {}", std::fs::read_to_string(&log_path).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        McpServer { child, port, seen }
    }

    /// Every tool call the server received: `{"tool": …, "arguments": {…}}`.
    fn seen(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.seen)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("seen line"))
            .collect()
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `portcullis serve` with the MCP door in front of `server`, tool-guard on `/mcp`.
struct Door {
    dir: PathBuf,
    port: u16,
    admin: u16,
    _server: Server,
}

impl Door {
    fn start(name: &str, dir: PathBuf, server: &McpServer) -> Door {
        Door::start_at(name, dir, &format!("http://127.0.0.1:{}/mcp", server.port), true)
    }

    /// The door in front of any upstream URL, with or without `destructive_needs_approval`.
    fn start_at(name: &str, dir: PathBuf, upstream: &str, destructive: bool) -> Door {
        let tool_guard = common::component("tool-guard").display().to_string();
        let config = common::serve::fixture_config(true, "invoices:read")
            + &format!(
                r#"
[policies.tool-guard]
module = "{tool_guard}"

[policies.tool-guard.settings]
approver_group = "crm-approvers"
ttl_seconds = 600
writes = ["create_invoice"]
destructive_needs_approval = {destructive}
mask = "[redacted]"

[policies.tool-guard.settings.tools]
agent = ["search_customers", "get_customer", "create_invoice", "resources/read:crm://*"]
user = ["*"]

[policies.tool-guard.settings.arguments]
search_customers = ["/ssn"]

[policies.tool-guard.settings.results]
get_customer = ["/structuredContent/email", "/structuredContent/phone", "/content/*/text"]

[[routes]]
name = "mcp"
paths = ["/mcp"]
policies = ["tool-guard"]

[server.mcp]
listen = "127.0.0.1:0"
upstream = "{upstream}"

[server.admin]
listen = "127.0.0.1:0"
token_env = "PORTCULLIS_TEST_ADMIN_TOKEN"

[approvals]
store = "approvals.sqlite"

[audit]
path = "audit.jsonl"
"#,
            );
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config).unwrap();
        let server = Server::start(&path, &[("PORTCULLIS_TEST_ADMIN_TOKEN", ADMIN_TOKEN)]);
        Door { dir, port: server.port("mcp"), admin: server.port("admin"), _server: server }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// Runs the SDK's client through the door: the steps' results, in order.
    fn client(&self, steps: Value, key: Option<&str>, mode: &str) -> Vec<Value> {
        let mut command = Command::new(python());
        command.arg(common::root().join("tests/mcp/client.py")).arg(self.url()).arg(steps.to_string());
        if let Some(key) = key {
            command.arg("--header").arg(format!("x-api-key:{key}"));
        }
        command.args(["--mode", mode]);
        let output = command.output().expect("run the MCP client");
        assert!(output.status.success(), "client failed:\n{}", String::from_utf8_lossy(&output.stderr));
        let text = String::from_utf8_lossy(&output.stdout);
        match serde_json::from_str::<Value>(text.trim()) {
            Ok(Value::Array(results)) => results,
            _ => panic!("client printed no results:\n{text}\n{}", String::from_utf8_lossy(&output.stderr)),
        }
    }

    fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit line"))
            .collect()
    }
}

fn admin_url(door: &Door) -> String {
    format!("http://127.0.0.1:{}", door.admin)
}

fn error_code(result: &Value) -> (i64, String) {
    let error = result.get("error").unwrap_or_else(|| panic!("expected a JSON-RPC error: {result}"));
    (error["code"].as_i64().unwrap_or(0), error["data"]["code"].as_str().unwrap_or("").to_owned())
}

/// An agent through the door, in one SSE session: each decision, checked against what the
/// real server received.
fn agent_session(door: &Door, server: &McpServer, mode: &str) {
    let steps = json!([
        {"op": "list_tools"},
        {"op": "call", "tool": "search_customers", "args": {"query": "Ada", "ssn": "078-05-1120"}},
        {"op": "call", "tool": "get_customer", "args": {"customer_id": 7}},
        {"op": "call", "tool": "delete_customer", "args": {"customer_id": 7}},
        {"op": "call", "tool": "create_invoice", "args": {"customer_id": 7, "amount": 120.5}},
        {"op": "approve", "admin": admin_url(door), "token": ADMIN_TOKEN, "from": 4},
        {"op": "call", "tool": "create_invoice", "args": {"amount": 120.5, "customer_id": 7}, "approval_from": 4},
        {"op": "call", "tool": "create_invoice", "args": {"amount": 120.5, "customer_id": 7}, "approval_from": 4},
        {"op": "read", "uri": "crm://customers/4"},
        {"op": "prompt", "name": "summarise", "args": {"customer_id": "4"}},
    ]);
    let r = door.client(steps, Some(AGENT_KEY), mode);
    assert_eq!(r.len(), 10, "{r:#?}");

    // tools/list: the tool the agent may not call is hidden; annotations pass through.
    assert_eq!(r[0]["tools"], json!(["search_customers", "get_customer", "create_invoice"]), "{}", r[0]);
    assert_eq!(r[0]["annotations"]["get_customer"]["readOnlyHint"], true);

    // redact (request): the server never saw the SSN.
    assert_eq!(r[1]["result"]["isError"], false, "{}", r[1]);
    // redact (response): personal data masked in the structured content and its text mirror.
    let customer = &r[2]["result"];
    assert_eq!(customer["structuredContent"]["name"], "Ada", "{customer}");
    assert_eq!(customer["structuredContent"]["email"], "[redacted]");
    assert_eq!(customer["structuredContent"]["phone"], "[redacted]");
    assert_eq!(customer["content"][0]["text"], "[redacted]");

    // deny: a JSON-RPC error naming the policy's code.
    assert_eq!(error_code(&r[3]), (-32003, "tool-not-allowed".into()), "{}", r[3]);
    assert_eq!(r[3]["error"]["data"]["policy"], "tool-guard");

    // require-approval: an error carrying the id; approved; the retry passes once.
    assert_eq!(error_code(&r[4]), (-32004, "approval-required".into()), "{}", r[4]);
    let approval = r[4]["error"]["data"]["approval"]["id"].as_str().unwrap().to_owned();
    assert!(approval.starts_with("apr_"), "{approval}");
    assert_eq!(r[5]["status"], 200, "{}", r[5]);
    assert_eq!(r[6]["result"]["isError"], false, "{}", r[6]);
    assert!(r[6]["result"]["content"][0]["text"].as_str().unwrap().contains("inv-1001"));
    assert_eq!(error_code(&r[7]), (-32003, "approval-invalid".into()), "{}", r[7]);

    // Resources by URI prefix; prompts are not on the agent's list.
    assert!(r[8]["result"]["contents"].is_array(), "{}", r[8]);
    assert_eq!(error_code(&r[9]), (-32003, "tool-not-allowed".into()), "{}", r[9]);

    let seen = server.seen();
    let tools: Vec<&str> = seen.iter().map(|s| s["tool"].as_str().unwrap()).collect();
    assert_eq!(tools, ["search_customers", "get_customer", "create_invoice"], "{seen:#?}");
    assert_eq!(seen[0]["arguments"]["ssn"], "[redacted]", "the SSN never reached the server");
    assert_eq!(seen[2]["arguments"]["amount"], 120.5);
}

#[test]
fn an_agent_through_the_door_meets_every_decision_over_sse() {
    common::policies_dir();
    let dir = temp_dir("mcp-sse");
    let server = McpServer::start(&dir, false);
    let door = Door::start("sse", dir.clone(), &server);
    agent_session(&door, &server, "legacy");

    // Every decision is in the audit log, from the MCP door, with the tool as operation;
    // no credential and no argument value is.
    let audit = door.audit();
    let text = std::fs::read_to_string(door.dir.join("audit.jsonl")).unwrap();
    assert!(!text.contains(AGENT_KEY) && !text.contains("078-05-1120") && !text.contains("ada@example.com"));
    let decided = |op: &str, decision: &str| {
        audit.iter().any(|r| r["front_door"] == "mcp" && r["operation"] == op && r["decision"] == decision)
    };
    assert!(decided("delete_customer", "deny"), "{audit:#?}");
    assert!(decided("create_invoice", "require-approval"), "{audit:#?}");
    assert!(decided("search_customers", "redact"), "{audit:#?}");
    assert!(decided("get_customer", "redact"), "{audit:#?}");
}

#[test]
fn json_answers_and_the_stateless_protocol_are_enforced_alike() {
    common::policies_dir();
    let dir = temp_dir("mcp-json");
    let server = McpServer::start(&dir, true);
    let door = Door::start("json", dir.clone(), &server);
    agent_session(&door, &server, "legacy");

    // The 2026 protocol (server/discover, no session) through the same door.
    let r = door.client(
        json!([
            {"op": "call", "tool": "get_customer", "args": {"customer_id": 9}},
            {"op": "call", "tool": "delete_customer", "args": {"customer_id": 9}},
        ]),
        Some(AGENT_KEY),
        "auto",
    );
    assert_eq!(r[0]["result"]["structuredContent"]["email"], "[redacted]", "{r:#?}");
    assert_eq!(error_code(&r[1]), (-32003, "tool-not-allowed".into()), "{r:#?}");
    assert!(!server.seen().iter().any(|s| s["tool"] == "delete_customer"));
}

#[test]
fn users_see_every_tool_and_the_servers_annotations_reach_the_policy() {
    common::policies_dir();
    let dir = temp_dir("mcp-user");
    let server = McpServer::start(&dir, false);
    let door = Door::start("user", dir.clone(), &server);
    let r = door.client(
        json!([
            {"op": "list_tools"},
            {"op": "call", "tool": "delete_customer", "args": {"customer_id": 3}},
            {"op": "call", "tool": "search_customers", "args": {"query": "Ada"}},
        ]),
        Some(READER_KEY),
        "legacy",
    );
    assert_eq!(r[0]["tools"].as_array().unwrap().len(), 4, "{r:#?}");
    // Users may call any tool, but the server declared delete_customer destructive and
    // tool-guard's destructive_needs_approval holds it: the annotation reached the policy.
    assert_eq!(error_code(&r[1]), (-32004, "approval-required".into()), "{r:#?}");
    assert_eq!(r[2]["result"]["isError"], false, "{r:#?}");
    assert_eq!(server.seen().len(), 1, "only search_customers reached the server");
    let audit = door.audit();
    assert!(
        audit.iter().any(|r| r["operation"] == "delete_customer"
            && r["labels"].as_array().is_some_and(|l| l.iter().any(|l| l["value"] == "destructive-needs-approval"))),
        "{audit:#?}"
    );
}

#[test]
fn bad_credentials_are_refused_before_the_server_sees_anything() {
    common::policies_dir();
    let dir = temp_dir("mcp-auth");
    let server = McpServer::start(&dir, false);
    let door = Door::start("auth", dir.clone(), &server);
    let r = door.client(json!([{"op": "list_tools"}]), Some("not-a-key"), "legacy");
    assert!(r[0].get("connect_error").is_some(), "{r:#?}");
    let answer = send(
        "POST",
        &door.url(),
        &[("content-type", "application/json"), ("accept", "application/json, text/event-stream"), ("x-api-key", "wrong")],
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_customer","arguments":{"customer_id":1}}}"#,
    );
    assert_eq!(answer.status, 401);
    assert_eq!(answer.json()["error"]["code"], -32001);
    assert_eq!(answer.json()["id"], 1);
    assert!(server.seen().is_empty());
}

#[test]
fn messages_the_door_cannot_read_are_refused_not_passed() {
    common::policies_dir();
    let dir = temp_dir("mcp-bad");
    let server = McpServer::start(&dir, false);
    let door = Door::start("bad", dir.clone(), &server);
    let headers = [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("x-api-key", AGENT_KEY),
        // A forged annotation is dropped, never believed.
        ("mcp-annotation-readonlyhint", "true"),
    ];
    for (body, code) in [
        (&b"{not json"[..], -32700),
        (br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_customer"}}]"#, -32600),
        (br#"{"jsonrpc":"1.0","id":1,"method":"tools/call"}"#, -32600),
    ] {
        let answer = send("POST", &door.url(), &headers, body);
        assert_eq!(answer.status, 400, "{}", String::from_utf8_lossy(&answer.body));
        assert_eq!(answer.json()["error"]["code"], code);
    }
    let answer = send(
        "POST",
        &door.url(),
        &headers,
        br#"{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"arguments":{}}}"#,
    );
    assert_eq!(answer.json()["error"]["code"], -32602, "{}", String::from_utf8_lossy(&answer.body));
    let answer = send("POST", &format!("http://127.0.0.1:{}/other", door.port), &headers, b"{}");
    assert_eq!(answer.status, 404);
    assert!(server.seen().is_empty());
}

/// One raw JSON-RPC POST to the door, as `key`, with extra headers.
fn post(door: &Door, key: &str, extra: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut headers = vec![
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("x-api-key", key),
    ];
    headers.extend_from_slice(extra);
    send("POST", &door.url(), &headers, body)
}

/// The JSON-RPC messages a recording upstream received, with their headers.
fn received(upstream: &Upstream) -> Vec<(Value, std::collections::BTreeMap<String, String>)> {
    upstream
        .seen()
        .into_iter()
        .filter_map(|s| Some((serde_json::from_slice::<Value>(&s.body).ok()?, s.headers)))
        .collect()
}

fn methods(upstream: &Upstream) -> Vec<String> {
    received(upstream).iter().map(|(m, _)| m["method"].as_str().unwrap_or("(answer)").to_owned()).collect()
}

#[test]
fn a_destructive_tool_called_in_a_session_that_never_listed_tools_needs_approval() {
    common::policies_dir();
    let dir = temp_dir("mcp-unlisted");
    let server = McpServer::start(&dir, false);
    let door = Door::start("unlisted", dir.clone(), &server);
    // No list_tools first: the door lists the tools itself before the first call, so the
    // server's destructiveHint reaches tool-guard, and a read-only tool still passes.
    let r = door.client(
        json!([
            {"op": "call", "tool": "delete_customer", "args": {"customer_id": 3}},
            {"op": "call", "tool": "search_customers", "args": {"query": "Ada"}},
        ]),
        Some(READER_KEY),
        "legacy",
    );
    assert_eq!(error_code(&r[0]), (-32004, "approval-required".into()), "{r:#?}");
    assert_eq!(r[1]["result"]["isError"], false, "a read-only tool is known read-only: {r:#?}");
    // The same through the 2026 protocol (no session).
    let r = door.client(
        json!([
            {"op": "call", "tool": "delete_customer", "args": {"customer_id": 4}},
            {"op": "call", "tool": "get_customer", "args": {"customer_id": 4}},
        ]),
        Some(READER_KEY),
        "auto",
    );
    assert_eq!(error_code(&r[0]), (-32004, "approval-required".into()), "{r:#?}");
    assert_eq!(r[1]["result"]["structuredContent"]["name"], "Ada", "{r:#?}");
    let tools: Vec<Value> = server.seen().iter().map(|s| s["tool"].clone()).collect();
    assert_eq!(tools, [json!("search_customers"), json!("get_customer")], "delete_customer never ran");
    let audit = door.audit();
    let held = audit.iter().filter(|r| {
        r["operation"] == "delete_customer"
            && r["labels"].as_array().is_some_and(|l| l.iter().any(|l| l["value"] == "destructive-needs-approval"))
    });
    assert_eq!(held.count(), 2, "{audit:#?}");
}

#[test]
fn a_tool_whose_listing_cannot_be_had_counts_as_destructive() {
    common::policies_dir();
    let dir = temp_dir("mcp-nolist");
    // An upstream that answers nothing MCP: the door cannot list the tools.
    let upstream = Upstream::start();
    let door = Door::start_at("nolist", dir.clone(), &format!("http://{}/mcp", upstream.addr), true);
    let forged = [
        ("mcp-annotation-destructivehint", "false"),
        ("mcp-annotation-readonlyhint", "true"),
        ("mcp-annotation-source", "server"),
    ];
    let answer = post(
        &door,
        READER_KEY,
        &forged,
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_customer","arguments":{"customer_id":1}}}"#,
    );
    assert_eq!(answer.json()["error"]["code"], -32004, "{}", String::from_utf8_lossy(&answer.body));
    assert!(!methods(&upstream).contains(&"tools/call".to_owned()), "{:?}", methods(&upstream));
    assert!(methods(&upstream).contains(&"tools/list".to_owned()), "the door tried to list the tools");
}

#[test]
fn a_message_with_a_repeated_key_is_refused_not_judged_on_one_and_run_on_the_other() {
    common::policies_dir();
    let dir = temp_dir("mcp-dup");
    let server = McpServer::start(&dir, false);
    let door = Door::start("dup", dir.clone(), &server);
    for body in [
        &br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_customer","name":"get_customer","arguments":{"customer_id":1}}}"#[..],
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_customer","n\u0061me":"delete_customer","arguments":{"customer_id":1}}}"#,
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_customers","arguments":{"query":"Ada","ssn":"1","ssn":"078-05-1120"}}}"#,
        br#"{"jsonrpc":"2.0","method":"notifications/initialized","params":{"a":1,"a":2}}"#,
    ] {
        let answer = post(&door, AGENT_KEY, &[], body);
        assert_eq!(answer.status, 400, "{}", String::from_utf8_lossy(&answer.body));
        let error = &answer.json()["error"];
        assert_eq!(error["code"], -32600);
        assert!(error["message"].as_str().unwrap().contains("twice"), "{error}");
    }
    assert!(server.seen().is_empty(), "{:?}", server.seen());
}

#[test]
fn the_server_gets_the_message_the_door_judged_not_the_clients_bytes() {
    common::policies_dir();
    let dir = temp_dir("mcp-reserialise");
    let upstream = Upstream::start();
    let door = Door::start_at("reserialise", dir.clone(), &format!("http://{}/mcp", upstream.addr), false);
    // Escapes, spacing and key order a lenient parser might read otherwise: the server gets
    // the parsed value written out again.
    let sent = br#"{ "jsonrpc" : "2.0", "id" : 7, "method" : "tools/call",
        "params" : { "name" : "get_\u0063ustomer", "arguments" : { "customer_id" : 7, "note" : "\u0041da" } } }"#;
    let answer = post(&door, AGENT_KEY, &[], sent);
    // The recording upstream answers 200 with a non-MCP body; the door passes it on.
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    let got: Vec<Vec<u8>> = upstream
        .seen()
        .into_iter()
        .filter(|s| serde_json::from_slice::<Value>(&s.body).is_ok_and(|m| m["method"] == "tools/call"))
        .map(|s| s.body)
        .collect();
    assert_eq!(got.len(), 1, "{:?}", methods(&upstream));
    let judged: Value = serde_json::from_slice(sent).unwrap();
    assert_eq!(got[0], serde_json::to_vec(&judged).unwrap(), "{}", String::from_utf8_lossy(&got[0]));
    assert_eq!(serde_json::from_slice::<Value>(&got[0]).unwrap()["params"]["name"], "get_customer");

    // A notification is forwarded re-serialised too.
    let answer = post(&door, AGENT_KEY, &[], br#"{"jsonrpc":"2.0",  "method":"notifications/initialized"}"#);
    assert!(answer.status < 300, "{}", answer.status);
    let last = upstream.seen().pop().unwrap();
    assert_eq!(last.body, br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
}

#[test]
fn a_call_sent_as_a_notification_is_refused_not_forwarded() {
    common::policies_dir();
    let dir = temp_dir("mcp-notify");
    let upstream = Upstream::start();
    let door = Door::start_at("notify", dir.clone(), &format!("http://{}/mcp", upstream.addr), false);
    for body in [
        &br#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"get_customer","arguments":{"customer_id":1}}}"#[..],
        br#"{"jsonrpc":"2.0","method":"resources/read","params":{"uri":"crm://customers/1"}}"#,
        br#"{"jsonrpc":"2.0","method":"prompts/get","params":{"name":"summarise"}}"#,
        br#"{"jsonrpc":"2.0","method":"tools/list"}"#,
    ] {
        let answer = post(&door, AGENT_KEY, &[], body);
        assert_eq!(answer.status, 400, "{}", String::from_utf8_lossy(&answer.body));
        assert_eq!(answer.json()["error"]["code"], -32600);
        assert!(answer.json()["error"]["message"].as_str().unwrap().contains("without an `id`"));
    }
    assert!(upstream.seen().is_empty(), "{:?}", methods(&upstream));
}

#[test]
fn headers_only_the_host_sets_never_reach_the_server() {
    common::policies_dir();
    let dir = temp_dir("mcp-headers");
    let upstream = Upstream::start();
    let door = Door::start_at("headers", dir.clone(), &format!("http://{}/mcp", upstream.addr), true);
    // bob's call of delete_customer is held (its listing cannot be had: destructive).
    let call = br#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"delete_customer","arguments":{"customer_id":2}}}"#;
    let forged = [
        ("x-portcullis-principal", "user:admin"),
        ("x-portcullis-on-behalf-of", "admin"),
        ("mcp-annotation-destructivehint", "false"),
        ("mcp-probe", "tools/list"),
        // The 2026 routing headers, claiming another tool and argument.
        ("mcp-method", "tools/call"),
        ("mcp-name", "get_customer"),
        ("mcp-param-customer-id", "99"),
        // Headers the door sets from what was judged.
        ("x-forwarded-host", "evil.test"),
        ("x-forwarded-for", "1.2.3.4"),
        ("forwarded", "for=1.2.3.4;host=evil.test"),
    ];
    let answer = post(&door, READER_KEY, &forged, call);
    let approval = answer.json()["error"]["data"]["approval"]["id"].as_str().map(str::to_owned);
    let approval = approval.unwrap_or_else(|| panic!("{}", answer.json()));
    let approved = send(
        "POST",
        &format!("{}/approvals/{approval}/approve", admin_url(&door)),
        &[("authorization", &format!("Bearer {ADMIN_TOKEN}")), ("content-type", "application/json")],
        br#"{"by": "fiona@example.com"}"#,
    );
    assert_eq!(approved.status, 200, "{}", String::from_utf8_lossy(&approved.body));
    // The retry carries the approval in the header; it is consumed, not forwarded.
    let mut retry = forged.to_vec();
    retry.push(("portcullis-approval", &approval));
    let answer = post(&door, READER_KEY, &retry, call);
    assert_eq!(answer.status, 200, "the approved retry: {}", String::from_utf8_lossy(&answer.body));
    let calls: Vec<_> = received(&upstream).into_iter().filter(|(m, _)| m["method"] == "tools/call").collect();
    assert_eq!(calls.len(), 1, "{:?}", methods(&upstream));
    let (message, headers) = &calls[0];
    assert_eq!(message["params"]["name"], "delete_customer");
    // Set by the door from the judged call, replacing the caller's copies.
    let header = |name: &str| headers.get(name).map(String::as_str);
    assert_eq!(header("x-portcullis-principal"), Some("user:bob"), "{headers:?}");
    assert_eq!(header("x-portcullis-on-behalf-of"), Some(""));
    assert_eq!(header("x-forwarded-for"), Some("127.0.0.1"));
    assert_ne!(header("x-forwarded-host"), Some("evil.test"));
    assert_eq!(header("forwarded"), None);
    for name in headers.keys() {
        let set_by_the_door = ["x-portcullis-principal", "x-portcullis-on-behalf-of"].contains(&name.as_str());
        let host_only = ["x-portcullis-", "mcp-annotation-", "mcp-param-"].iter().any(|p| name.starts_with(p))
            || name == "mcp-probe"
            || name == "portcullis-approval";
        assert!(set_by_the_door || !host_only, "{name} reached the server: {headers:?}");
    }
    // The routing headers the server gets are the judged message's.
    assert_eq!(headers.get("mcp-method").map(String::as_str), Some("tools/call"));
    assert_eq!(headers.get("mcp-name").map(String::as_str), Some("delete_customer"));
    assert!(!headers.contains_key("x-api-key"), "strip_credentials");

    // Two session ids: the door would key what it knows by one, the server might read the other.
    let before = upstream.seen().len();
    let answer = post(&door, READER_KEY, &[("mcp-session-id", "a"), ("mcp-session-id", "b")], call);
    assert_eq!(answer.status, 400, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(upstream.seen().len(), before);
}

#[test]
fn a_recorded_mcp_session_replays_through_the_policies() {
    common::policies_dir();
    let root = common::root();
    let output = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .current_dir(&root)
        .args([
            "replay",
            "--config",
            "examples/mcp/portcullis.toml",
            "--as",
            "agent:support-bot",
            "--on-behalf-of",
            "alice",
        ])
        .args(["--format", "json", "examples/mcp/session.jsonl"])
        .env("PORTCULLIS_CACHE_DIR", root.join("target/test-cache"))
        .output()
        .expect("run replay");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).expect("replay JSON");
    let entries = report["entries"].as_array().unwrap();
    let decisions: Vec<(String, String)> = entries
        .iter()
        .map(|e| {
            let line = e["request_line"].as_str().unwrap_or("").to_owned();
            let request = e["signature"]["request"]["decision"].as_str().unwrap_or("").to_owned();
            let response = e["signature"]["response"]["decision"].as_str().map(|d| format!("/{d}")).unwrap_or_default();
            (line, request + &response)
        })
        .collect();
    let expected = [
        ("CALL /mcp initialize", "allow/allow"),
        ("CALL /mcp tools/list", "allow/allow"),
        ("CALL /mcp search_customers", "redact/allow"),
        ("CALL /mcp get_customer", "allow/redact"),
        ("CALL /mcp create_invoice", "require-approval"),
        ("CALL /mcp delete_customer", "deny"),
        ("CALL /mcp resources/read:crm://customers/7", "allow/allow"),
    ];
    let got: Vec<(&str, &str)> = decisions.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(got, expected, "{}", serde_json::to_string_pretty(entries).unwrap());

    // The same session as a test file with expected decisions, selected by tool name.
    let output = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .current_dir(&root)
        .args(["test", "examples/mcp/tests.toml"])
        .env("PORTCULLIS_CACHE_DIR", root.join("target/test-cache"))
        .output()
        .expect("run test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("5 passed, 0 failed"), "{stdout}");
}
