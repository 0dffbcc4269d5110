//! The MCP door and the 2026-07-28 revision's rest: `subscriptions/listen` streamed through
//! with each notification passing the response phase, the protocol generation in every
//! audit record, and tools with an invalid `x-mcp-header` hidden from `tools/list`.
//!
//! A raw MCP server (a thread speaking HTTP/1.1 by hand on loopback) plays the hostile and
//! exact parts an SDK will not: it answers `subscriptions/listen` with an SSE stream that
//! carries an acknowledgment, a `resources/updated` with a sensitive title (redacted by
//! tool-guard's `results`), a `prompts/list_changed` (refused by a response-phase policy
//! routed to that notification), a server request (forbidden on the stream) and a
//! `tools/list_changed`, then holds the stream open until the door closes it.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::mcp_sdk::{Door, JWT_SECRET, Sdk, SdkServer, client};
use common::serve::{AGENT_KEY, Server, fixture_config, send, temp_dir};
use serde_json::{Value, json};

/// The raw server: its port, and whether the door closed a listen stream's connection.
struct RawServer {
    port: u16,
    listen_closed: Arc<AtomicBool>,
}

fn tools_listing() -> Value {
    json!({"tools": [
        {"name": "get_invoice", "annotations": {"readOnlyHint": true},
         "inputSchema": {"type": "object", "properties": {"region": {"type": "string", "x-mcp-header": "Region"}}}},
        // Not an HTTP token: invalid.
        {"name": "bad_header", "annotations": {"readOnlyHint": true},
         "inputSchema": {"type": "object", "properties": {"q": {"type": "string", "x-mcp-header": "Bad Header"}}}},
        // Not statically reachable (under `items`): invalid.
        {"name": "bad_reach", "annotations": {"readOnlyHint": true},
         "inputSchema": {"type": "object", "properties": {"xs": {"type": "array",
            "items": {"type": "string", "x-mcp-header": "X"}}}}},
    ]})
}

fn listen_events(id: &Value) -> Vec<Value> {
    let meta = json!({"io.modelcontextprotocol/subscriptionId": id});
    vec![
        json!({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
               "params": {"_meta": meta, "notifications": {"toolsListChanged": true, "promptsListChanged": true,
                          "resourceSubscriptions": ["invoices://7"]}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/resources/updated",
               "params": {"_meta": meta, "uri": "invoices://7", "title": "Invoice 7 of ada@example.com"}}),
        json!({"jsonrpc": "2.0", "method": "notifications/prompts/list_changed", "params": {"_meta": meta}}),
        json!({"jsonrpc": "2.0", "id": "srv-1", "method": "elicitation/create", "params": {"message": "hi"}}),
        json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed", "params": {"_meta": meta}}),
    ]
}

impl RawServer {
    fn start() -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let listen_closed = Arc::new(AtomicBool::new(false));
        let closed = listen_closed.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let closed = closed.clone();
                std::thread::spawn(move || serve_one(stream, &closed));
            }
        });
        RawServer { port, listen_closed }
    }
}

/// One connection, one request (`Connection: close`).
fn serve_one(mut stream: TcpStream, closed: &AtomicBool) {
    let Some(message) = common::read_json_request(&mut stream) else { return };
    let id = message.get("id").cloned().unwrap_or(Value::Null);
    let json_answer = |stream: &mut TcpStream, result: Value| {
        let body = json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string();
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
    };
    match message.get("method").and_then(Value::as_str) {
        Some("tools/list") => json_answer(&mut stream, tools_listing()),
        Some("tools/call") => json_answer(&mut stream, json!({"content": [{"type": "text", "text": "ran"}]})),
        // A listen asking for nothing but resources: acknowledged, then ended gracefully.
        Some("subscriptions/listen") if message["params"]["notifications"].get("toolsListChanged").is_none() => {
            let meta = json!({"io.modelcontextprotocol/subscriptionId": id});
            let ack = json!({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
                             "params": {"_meta": meta, "notifications": {}}});
            let end = json!({"jsonrpc": "2.0", "id": id, "result": {"resultType": "complete", "_meta": meta}});
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\ndata: {ack}\n\ndata: {end}\n\n"
            );
        }
        Some("subscriptions/listen") => {
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n",
            );
            for event in listen_events(&id) {
                let _ = write!(stream, "event: message\ndata: {event}\n\n");
                let _ = stream.flush();
                std::thread::sleep(Duration::from_millis(20));
            }
            // Then nothing: an idle stream, open until the door closes the connection.
            let _ = stream.set_read_timeout(None);
            let mut rest = [0u8; 64];
            loop {
                match stream.read(&mut rest) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            closed.store(true, Ordering::SeqCst);
        }
        _ => json_answer(&mut stream, json!({})),
    }
}

fn door(dir: &Path, server: &RawServer, timeout_ms: u64) -> Server {
    let tool_guard = common::component("tool-guard").display().to_string();
    let misbehave = common::component("hostile-misbehave").display().to_string();
    let config = fixture_config(true, "invoices:read")
        + &format!(
            r#"
[policies.tool-guard]
module = "{tool_guard}"

[policies.tool-guard.settings.tools]
agent = ["get_invoice", "bad_header", "bad_reach"]

[policies.tool-guard.settings.results]
"notifications/resources/updated" = ["/title"]

[policies.refuse]
module = "{misbehave}"
settings = {{ on_response = "panic" }}

[[routes]]
name = "refused-notifications"
paths = ["/mcp"]
operations = ["notifications/prompts/list_changed"]
policies = ["refuse"]

[[routes]]
name = "mcp"
paths = ["/mcp"]
policies = ["tool-guard"]

[server.mcp]
listen = "127.0.0.1:0"
upstream = "http://127.0.0.1:{port}/mcp"
upstream_timeout_ms = {timeout_ms}

[audit]
path = "audit.jsonl"
"#,
            port = server.port,
        );
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, config).unwrap();
    Server::start(&path, &[])
}

fn audit(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits until the audit log has a record matching `found` (records may be written by the
/// audit thread just after the answer).
fn wait_audit(dir: &Path, found: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let records = audit(dir);
        if let Some(record) = records.iter().find(|r| found(r)) {
            return record.clone();
        }
        assert!(Instant::now() < deadline, "no such audit record in {records:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn headers_2026(method: &str) -> Vec<(&str, &str)> {
    vec![
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("x-api-key", AGENT_KEY),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", method),
    ]
}

fn meta_2026() -> Value {
    json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
           "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
           "io.modelcontextprotocol/clientCapabilities": {}})
}

/// Opens a listen stream through the door by hand and reads it until `until` shows up (or
/// the deadline): what arrived so far, and the open connection.
fn open_listen(door: &Server, until: &str) -> (String, TcpStream) {
    let body = json!({"jsonrpc": "2.0", "id": 41, "method": "subscriptions/listen", "params": {
        "_meta": meta_2026(),
        "notifications": {"toolsListChanged": true, "promptsListChanged": true, "resourceSubscriptions": ["invoices://7"]}}})
    .to_string();
    let mut stream = TcpStream::connect(door.addr("mcp")).unwrap();
    let mut request = format!("POST /mcp HTTP/1.1\r\nhost: {}\r\ncontent-length: {}\r\n", door.addr("mcp"), body.len());
    for (name, value) in headers_2026("subscriptions/listen") {
        request.push_str(name);
        request.push_str(": ");
        request.push_str(value);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request.push_str(&body);
    stream.write_all(request.as_bytes()).unwrap();
    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    while Instant::now() < deadline && !String::from_utf8_lossy(&seen).contains(until) {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
            Err(_) => {}
        }
    }
    (String::from_utf8_lossy(&seen).into_owned(), stream)
}

/// The JSON-RPC messages in a (chunked) SSE answer: every `data:` line.
fn messages(text: &str) -> Vec<Value> {
    text.lines().filter_map(|l| l.strip_prefix("data: ")).filter_map(|d| serde_json::from_str(d).ok()).collect()
}

#[test]
fn listen_notifications_pass_the_response_phase_and_the_stream_closes_with_the_client() {
    let dir = temp_dir("mcp-listen-raw");
    let upstream = RawServer::start();
    // A short upstream timeout: it bounds the answer's headers, never the open stream.
    let door = door(&dir, &upstream, 300);
    let (text, stream) = open_listen(&door, "notifications/tools/list_changed");
    // Idle for longer than the upstream timeout: the stream stays open.
    std::thread::sleep(Duration::from_millis(600));
    assert!(!upstream.listen_closed.load(Ordering::SeqCst), "the door ended an idle listen stream");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.to_ascii_lowercase().contains("content-type: text/event-stream"), "{text}");
    let got = messages(&text);
    let methods: Vec<&str> = got.iter().filter_map(|m| m["method"].as_str()).collect();
    // The acknowledgment and the allowed notifications pass, in order; the refused one and
    // the server request (forbidden on a listen stream) do not.
    assert_eq!(
        methods,
        [
            "notifications/subscriptions/acknowledged",
            "notifications/resources/updated",
            "notifications/tools/list_changed"
        ],
        "{text}"
    );
    // tool-guard's `results` removed the title; the uri and the subscription id are kept.
    let updated = &got[1]["params"];
    assert_eq!(updated["uri"], "invoices://7", "{text}");
    assert!(updated.get("title").is_none(), "the title passed unredacted: {text}");
    assert!(!text.contains("ada@example.com"), "{text}");
    assert_eq!(updated["_meta"]["io.modelcontextprotocol/subscriptionId"], 41, "{text}");

    // The client goes away: the door closes the server's stream too.
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !upstream.listen_closed.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the server's listen stream stayed open after the client left");
        std::thread::sleep(Duration::from_millis(20));
    }

    // Audit: the listen call (request phase), each notification (response phase), all
    // with the generation the door established.
    let listen = wait_audit(&dir, |r| r["operation"] == "subscriptions/listen" && r["phase"] == "request");
    assert_eq!(listen["decision"], "allow", "{listen}");
    assert_eq!(listen["door_facts"]["mcp_generation"], "2026-07-28", "{listen}");
    assert_eq!(listen["door_facts"]["mcp_protocol_version"], "2026-07-28", "{listen}");
    let redacted = wait_audit(&dir, |r| r["operation"] == "notifications/resources/updated");
    assert_eq!((redacted["phase"].as_str(), redacted["decision"].as_str()), (Some("response"), Some("redact")));
    assert_eq!(redacted["redacted"], json!(["json:/title"]), "{redacted}");
    assert_eq!(redacted["request_id"], listen["request_id"], "{redacted}");
    assert_eq!(redacted["principal"]["id"], "invoice-bot", "{redacted}");
    assert_eq!(redacted["door_facts"]["mcp_generation"], "2026-07-28", "{redacted}");
    let refused = wait_audit(&dir, |r| r["operation"] == "notifications/prompts/list_changed");
    assert_eq!(refused["decision"], "deny", "{refused}");
    assert_eq!(refused["route"], "refused-notifications", "{refused}");
    assert_eq!(refused["door_facts"]["mcp_generation"], "2026-07-28", "{refused}");
    let log = door.stop();
    assert!(log.contains("dropped a notification on a subscriptions/listen stream"), "{log}");
    assert!(log.contains("notifications/prompts/list_changed"), "{log}");
    assert!(log.contains("dropped a server request on a subscriptions/listen stream"), "{log}");
}

#[test]
fn a_listen_streams_graceful_end_settles_as_an_answer() {
    let dir = temp_dir("mcp-listen-end");
    let upstream = RawServer::start();
    let door = door(&dir, &upstream, 5_000);
    let body = json!({"jsonrpc": "2.0", "id": "l-1", "method": "subscriptions/listen", "params": {
        "_meta": meta_2026(), "notifications": {"resourceSubscriptions": ["invoices://1"]}}});
    let answer =
        send("POST", &door.url("mcp", "/mcp"), &headers_2026("subscriptions/listen"), body.to_string().as_bytes());
    assert_eq!(answer.status, 200);
    let text = String::from_utf8_lossy(&answer.body);
    let got = messages(&text);
    assert_eq!(got.len(), 2, "{text}");
    assert_eq!(got[0]["method"], "notifications/subscriptions/acknowledged", "{text}");
    assert_eq!((got[1]["id"].as_str(), got[1]["result"]["resultType"].as_str()), (Some("l-1"), Some("complete")));
    // The answer passed the listen call's own response phase.
    let end = wait_audit(&dir, |r| r["operation"] == "subscriptions/listen" && r["phase"] == "response");
    assert_eq!((end["decision"].as_str(), end["status"].as_u64()), (Some("allow"), Some(200)), "{end}");
}

#[test]
fn tools_with_an_invalid_x_mcp_header_are_hidden_and_their_calls_refused() {
    let dir = temp_dir("mcp-listen-invalid-header");
    let upstream = RawServer::start();
    let door = door(&dir, &upstream, 5_000);
    let url = door.url("mcp", "/mcp");
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta_2026()}});
    let answer = send("POST", &url, &headers_2026("tools/list"), list.to_string().as_bytes());
    assert_eq!(answer.status, 200);
    let names: Vec<String> = answer.json()["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["get_invoice"], "{names:?}");
    // A call of a hidden tool is refused by the header check (its definition is invalid).
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "bad_header", "arguments": {"q": "x"}, "_meta": meta_2026()}});
    let mut headers = headers_2026("tools/call");
    headers.push(("mcp-name", "bad_header"));
    let refused = send("POST", &url, &headers, call.to_string().as_bytes());
    assert_eq!(refused.status, 400, "{}", String::from_utf8_lossy(&refused.body));
    assert_eq!(refused.json()["error"]["code"], -32020);
    // Listed twice, warned once per tool.
    send("POST", &url, &headers_2026("tools/list"), list.to_string().as_bytes());
    let log = door.stop();
    let warnings = |tool: &str| {
        log.lines().filter(|l| l.contains("hid a tool from tools/list") && l.contains(&format!("tool={tool}"))).count()
    };
    assert_eq!((warnings("bad_header"), warnings("bad_reach")), (1, 1), "{log}");
}

#[test]
fn the_audit_record_names_each_exchanges_protocol_generation() {
    let dir = temp_dir("mcp-listen-generation");
    let upstream = RawServer::start();
    let door = door(&dir, &upstream, 5_000);
    let url = door.url("mcp", "/mcp");
    // A 2025 client: no Mcp-Method, its version in the header only.
    let legacy = [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("x-api-key", AGENT_KEY),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": "get_invoice", "arguments": {"region": "eu"}}});
    let answer = send("POST", &url, &legacy, call.to_string().as_bytes());
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    let record = wait_audit(&dir, |r| r["request_id"] == answer.header("x-request-id").unwrap_or("?"));
    assert_eq!(record["door_facts"], json!({"mcp_generation": "2025", "mcp_protocol_version": "2025-06-18"}));
    // A refusal carries it too: a tool the agent may not call, 2026.
    let call = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {
        "name": "drop_tables", "arguments": {}, "_meta": meta_2026()}});
    let mut headers = headers_2026("tools/call");
    headers.push(("mcp-name", "drop_tables"));
    let refused = send("POST", &url, &headers, call.to_string().as_bytes());
    let refused_record = wait_audit(&dir, |r| r["operation"] == "drop_tables");
    assert_eq!(refused_record["decision"], "deny", "{}", String::from_utf8_lossy(&refused.body));
    assert_eq!(refused_record["door_facts"]["mcp_generation"], "2026-07-28", "{refused_record}");
    // A client cannot choose the value: an unknown version is refused before any record.
    let mut forged = headers_2026("tools/list");
    forged[3] = ("mcp-protocol-version", "2099-01-01");
    let list = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list",
                      "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "2099-01-01"}}});
    assert_eq!(send("POST", &url, &forged, list.to_string().as_bytes()).status, 400);
    assert!(audit(&dir).iter().all(|r| r["door_facts"]["mcp_protocol_version"] != "2099-01-01"));
    // Every MCP record names its generation.
    assert!(audit(&dir).iter().all(|r| r["door_facts"]["mcp_generation"].is_string()), "{:#?}", audit(&dir));
}

/// The door in front of an SDK's server, as tests/common/mcp_sdk.rs's `Door` but with a route
/// that refuses `notifications/prompts/list_changed` in the response phase (tried first) and
/// tool-guard masking the `uri` of `notifications/resources/updated`.
fn sdk_door(dir: &Path, upstream: &SdkServer) -> Door {
    let tool_guard = common::component("tool-guard").display().to_string();
    let misbehave = common::component("hostile-misbehave").display().to_string();
    let config = fixture_config(true, "invoices:read")
        + &format!(
            r#"
[[identity.jwt]]
issuer = "https://sso.test"
secret_env = "PORTCULLIS_TEST_JWT_SECRET"
audiences = ["portcullis-mcp"]
kind = "agent"
id_prefix = "sso:"

[policies.tool-guard]
module = "{tool_guard}"

[policies.tool-guard.settings]
mask = "[redacted]"

[policies.tool-guard.settings.tools]
agent = ["get_invoice", "touch_invoice"]

[policies.tool-guard.settings.results]
"notifications/resources/updated" = ["/uri"]

[policies.refuse]
module = "{misbehave}"
settings = {{ on_response = "panic" }}

[[routes]]
name = "refused-notifications"
paths = ["/mcp"]
operations = ["notifications/prompts/list_changed"]
policies = ["refuse"]

[[routes]]
name = "mcp"
paths = ["/mcp"]
policies = ["tool-guard"]

[server.mcp]
listen = "127.0.0.1:0"
upstream = "http://127.0.0.1:{port}/mcp"

[audit]
path = "audit.jsonl"
"#,
            port = upstream.port,
        );
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, config).unwrap();
    Door { server: Server::start(&path, &[("PORTCULLIS_TEST_JWT_SECRET", JWT_SECRET)]) }
}

/// One listen session with `sdk`'s client: the acknowledged filter, and the change
/// notifications it got after its own `touch_invoice` call, as `(method, uri)`.
fn listen_session(door: &Door, sdk: Sdk, invoice: u64) -> (Value, Vec<(String, String)>) {
    let uri = format!("invoices://{invoice}");
    let steps = json!([{"op": "listen", "wait_s": 1.5,
        "filter": {"toolsListChanged": true, "promptsListChanged": true, "resourceSubscriptions": [uri]},
        "trigger": {"tool": "touch_invoice", "args": {"invoice_id": invoice}}}]);
    let (protocol, results, _) = client(door, sdk, "2026-07-28", &steps);
    assert_eq!(protocol, "2026-07-28");
    let step = &results[0];
    // The Python client yields typed events, the TypeScript one the notifications.
    let events = step["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{sdk:?}: {step}"))
        .iter()
        .map(|e| {
            let method = match (e["method"].as_str(), e["type"].as_str()) {
                (Some(method), _) => method.to_owned(),
                (None, Some("ResourceUpdated")) => "notifications/resources/updated".into(),
                (None, Some("PromptsListChanged")) => "notifications/prompts/list_changed".into(),
                (None, Some("ToolsListChanged")) => "notifications/tools/list_changed".into(),
                (None, other) => format!("{other:?}"),
            };
            let uri = e["params"]["uri"].as_str().or(e["uri"].as_str()).unwrap_or("").to_owned();
            (method, uri)
        })
        .collect();
    (step["honored"].clone(), events)
}

#[test]
fn listen_through_the_door_with_both_sdks() {
    for server_sdk in [Sdk::Python, Sdk::TsV2] {
        let dir = temp_dir(&format!("mcp-listen-sdk-{server_sdk:?}"));
        let server = SdkServer::start(&dir, server_sdk);
        let door = sdk_door(&dir, &server);
        for (n, client_sdk) in [(7, Sdk::Python), (8, Sdk::TsV2)] {
            let at = format!("{client_sdk:?} client, {server_sdk:?} server");
            let (honored, events) = listen_session(&door, client_sdk, n);
            assert_eq!(honored["resourceSubscriptions"], json!([format!("invoices://{n}")]), "{at}");
            // The update arrives with its URI masked by tool-guard; the prompts change was
            // refused and dropped; the tools change passes.
            let methods: Vec<&str> = events.iter().map(|(m, _)| m.as_str()).collect();
            assert!(methods.contains(&"notifications/tools/list_changed"), "{at}: {events:?}");
            assert!(!methods.contains(&"notifications/prompts/list_changed"), "{at}: {events:?}");
            let updated: Vec<&str> = events
                .iter()
                .filter(|(m, _)| m == "notifications/resources/updated")
                .map(|(_, u)| u.as_str())
                .collect();
            assert_eq!(updated, ["[redacted]"], "{at}: {events:?}");
        }
        // The server ran both triggers; the audit log judged each notification.
        let touched = server.ran().iter().filter(|e| e["tool"] == "touch_invoice").count();
        assert_eq!(touched, 2, "{server_sdk:?}: {:#?}", server.ran());
        let records = audit(&dir);
        let of = |operation: &str| -> Vec<&Value> { records.iter().filter(|r| r["operation"] == operation).collect() };
        let redacted = of("notifications/resources/updated");
        assert_eq!(redacted.len(), 2, "{server_sdk:?}: {records:#?}");
        assert!(redacted.iter().all(|r| r["decision"] == "redact" && r["redacted"] == json!(["json:/uri"])));
        let refused = of("notifications/prompts/list_changed");
        assert_eq!(refused.len(), 2, "{server_sdk:?}: {records:#?}");
        assert!(refused.iter().all(|r| r["decision"] == "deny" && r["principal"]["id"] == "sso:bot"), "{refused:#?}");
        assert!(
            records.iter().all(|r| r["door_facts"]["mcp_generation"] == "2026-07-28"),
            "{server_sdk:?}: {records:#?}"
        );

        // A 2025 session through the same door: its records name the 2025 generation.
        let steps = json!([{"op": "call", "tool": "get_invoice", "args": {"invoice_id": 99}}]);
        let (protocol, results, _) = client(&door, Sdk::Python, "legacy", &steps);
        assert_eq!(protocol, "2025-11-25");
        assert!(results[0].get("result").is_some(), "{}", results[0]);
        let records = audit(&dir);
        let legacy: Vec<&Value> = records.iter().filter(|r| r["operation"] == "get_invoice").collect();
        assert!(!legacy.is_empty(), "{records:#?}");
        for record in legacy {
            assert_eq!(record["door_facts"]["mcp_generation"], "2025", "{record}");
            assert_eq!(record["door_facts"]["mcp_protocol_version"], "2025-11-25", "{record}");
        }
    }
}
