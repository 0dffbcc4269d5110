//! The MCP door with both official SDKs, both protocol generations, on loopback: servers
//! and clients built with the Python SDK (`mcp` 2.x) and the TypeScript SDKs
//! (`@modelcontextprotocol/sdk` 1.x, which speaks up to 2025-11-25, and
//! `@modelcontextprotocol/client`/`server` 2.x, which speak 2026-07-28 too), the programs in
//! `tests/mcp_sdk/`. Each test puts `portcullis serve` (tool-guard, a JWT identity) in front
//! of one SDK's server and runs every client that speaks a generation that server speaks, in
//! each such generation, through the same door: list tools, a read-only call (allowed), a
//! destructive call (held for approval: -32004), approve, the retry (passes once), a
//! resource, a prompt, and for the 2025 generation a tool whose argument the 2026 protocol
//! mirrors into a header. What the server received is checked line by line: the calls
//! allowed, nothing held, the routing headers of each generation, and never the caller's
//! bearer token.
//!
//! The SDKs are installed by `scripts/install-mcp.sh` (Python, `target/mcp-venv`) and
//! `scripts/install-mcp-node.sh` (TypeScript, `target/mcp-node`, from the lock file in
//! `tests/mcp_sdk/`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::serve::{ADMIN_TOKEN, Server, temp_dir};
use serde_json::{Value, json};

const JWT_SECRET: &str = "test-mcp-sdks-jwt-secret-0123456789abcdef";

/// Runs an install script once per test run and returns what it printed (a path).
fn install(script: &str, cell: &'static OnceLock<PathBuf>) -> &'static Path {
    cell.get_or_init(|| {
        let script = common::root().join(script);
        let output = Command::new("bash").arg(&script).output().expect("run an install script");
        assert!(
            output.status.success(),
            "{} failed (it needs network access to its registry once):\n{}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
    })
}

/// The venv's python with the Python SDK.
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    install("scripts/install-mcp.sh", &PYTHON)
}

/// The node_modules folder with the TypeScript SDKs (the programs are CommonJS: NODE_PATH).
fn node_modules() -> &'static Path {
    static MODULES: OnceLock<PathBuf> = OnceLock::new();
    install("scripts/install-mcp-node.sh", &MODULES)
}

/// An SDK line: which program in `tests/mcp_sdk/` plays a client or a server.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Sdk {
    /// `mcp` 2.x: the 2025 handshake (`legacy`) and 2026-07-28.
    Python,
    /// `@modelcontextprotocol/sdk` 1.x: the 2025 handshake only.
    TsV1,
    /// `@modelcontextprotocol/client` / `server` 2.x: the 2025 handshake and 2026-07-28.
    TsV2,
}

impl Sdk {
    /// The command running this SDK's `role` (`client` or `server`) program; the caller
    /// appends its arguments, then `sdk_flags`.
    fn command(self, role: &str) -> Command {
        let dir = common::root().join("tests/mcp_sdk");
        if self == Sdk::Python {
            let mut command = Command::new(python());
            command.arg(dir.join(format!("py_{role}.py")));
            command
        } else {
            let mut command = Command::new("node");
            command.env("NODE_PATH", node_modules()).arg(dir.join(format!("ts_{role}.cjs")));
            command
        }
    }

    fn sdk_flags(self) -> &'static [&'static str] {
        match self {
            Sdk::Python => &[],
            Sdk::TsV1 => &["--sdk", "v1"],
            Sdk::TsV2 => &["--sdk", "v2"],
        }
    }
}

/// An SDK's server on loopback (`127.0.0.1:0`, its port written to a file); killed on drop.
struct SdkServer {
    child: Child,
    port: u16,
    seen: PathBuf,
}

impl SdkServer {
    fn start(dir: &Path, sdk: Sdk) -> SdkServer {
        let port_file = dir.join("server.port");
        let seen = dir.join("seen.jsonl");
        let log_path = dir.join("server.log");
        let log = std::fs::File::create(&log_path).expect("server log");
        let mut child = sdk
            .command("server")
            .arg(&port_file)
            .arg(&seen)
            .args(sdk.sdk_flags())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the SDK's server");
        let deadline = Instant::now() + Duration::from_secs(60);
        // Written aside and renamed once the socket listens: a file that exists is whole.
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                break text.trim().parse::<u16>().unwrap_or_else(|e| panic!("port file {text:?}: {e}"));
            }
            let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the {sdk:?} server exited with {status}: {}", log());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                panic!("the {sdk:?} server never listened: {}", log());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        SdkServer { child, port, seen }
    }

    fn seen(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.seen)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("seen line {l}: {e}")))
            .collect()
    }

    /// What the SDK ran: `{"tool": …, "arguments": …}`, `{"resource": …}`, `{"prompt": …}`.
    fn ran(&self) -> Vec<Value> {
        self.seen().into_iter().filter(|e| e.get("http").is_none()).collect()
    }

    /// Every HTTP request that reached the server: `{method, path, headers, body}`.
    fn http(&self) -> Vec<Value> {
        self.seen().into_iter().filter_map(|e| e.get("http").cloned()).collect()
    }
}

impl Drop for SdkServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `portcullis serve` with the MCP door in front of `server`: tool-guard lets agents call
/// the three tools, the resource and the prompt, and holds destructive tools for approval;
/// agents authenticate with a JWT, which the door strips before the server.
struct Door {
    server: Server,
}

impl Door {
    fn start(dir: &Path, upstream: &SdkServer) -> Door {
        let tool_guard = common::component("tool-guard").display().to_string();
        let config = common::serve::fixture_config(true, "invoices:read")
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
approver_group = "billing-approvers"
ttl_seconds = 600
destructive_needs_approval = true

[policies.tool-guard.settings.tools]
agent = [
  "get_invoice", "delete_invoice", "invoices_in_region", "confirm_invoice",
  "resources/read:invoices://*", "prompts/get:summarise_invoice",
]

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
                port = upstream.port,
            );
        let path = dir.join("portcullis.toml");
        std::fs::write(&path, config).unwrap();
        let server = Server::start(
            &path,
            &[("PORTCULLIS_TEST_ADMIN_TOKEN", ADMIN_TOKEN), ("PORTCULLIS_TEST_JWT_SECRET", JWT_SECRET)],
        );
        Door { server }
    }
}

/// The agent's bearer token: a JWT the door verifies (`agent`, id `sso:bot`).
fn token() -> String {
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"iss": "https://sso.test", "aud": "portcullis-mcp", "sub": "bot", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

/// Runs an SDK's client through the door: the protocol it negotiated, each step's result,
/// and the elicitations it was asked for (`{"step": I, "elicitation": {…}}`).
fn client(door: &Door, sdk: Sdk, mode: &str, steps: &Value) -> (String, Vec<Value>, Vec<Value>) {
    let output = sdk
        .command("client")
        .arg(door.server.url("mcp", "/mcp"))
        .arg(steps.to_string())
        .args(["--mode", mode, "--bearer", &token()])
        .args(sdk.sdk_flags())
        .output()
        .expect("run the SDK's client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let context = format!("{sdk:?} client, mode {mode}:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{context}");
    let lines: Vec<Value> =
        stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {context}"))).collect();
    let protocol = lines
        .first()
        .and_then(|l| l["connected"]["protocol"].as_str())
        .unwrap_or_else(|| panic!("{context}"))
        .to_owned();
    let (elicitations, results): (Vec<Value>, Vec<Value>) =
        lines.into_iter().filter(|l| l.get("step").is_some()).partition(|l| l.get("elicitation").is_some());
    assert_eq!(results.len(), steps.as_array().unwrap().len(), "{context}");
    (protocol, results, elicitations)
}

fn error_code(result: &Value) -> (i64, String) {
    let error = result.get("error").unwrap_or_else(|| panic!("expected a JSON-RPC error: {result}"));
    (error["code"].as_i64().unwrap_or(0), error["data"]["code"].as_str().unwrap_or("").to_owned())
}

/// One agent session through the door with `sdk`'s client in `mode`, which must negotiate
/// `protocol`; `n` tells this session's calls apart on the shared server.
fn session(door: &Door, server: &SdkServer, sdk: Sdk, mode: &str, protocol: &str, n: u64) {
    let admin = door.server.url("admin", "");
    let modern = protocol == "2026-07-28";
    let mut steps = json!([
        {"op": "list_tools"},
        {"op": "call", "tool": "get_invoice", "args": {"invoice_id": n}},
        {"op": "call", "tool": "delete_invoice", "args": {"invoice_id": n}},
        {"op": "approve", "admin": admin, "token": ADMIN_TOKEN, "from": 2},
        {"op": "call", "tool": "delete_invoice", "args": {"invoice_id": n}, "approval_from": 2},
        {"op": "call", "tool": "delete_invoice", "args": {"invoice_id": n}, "approval_from": 2},
        {"op": "read", "uri": format!("invoices://{n}")},
        {"op": "prompt", "name": "summarise_invoice", "args": {"invoice_id": n.to_string()}},
    ]);
    if !modern {
        // 2026 clients mirror `region` into `Mcp-Param-Region`, which the door drops today.
        let region = json!({"op": "call", "tool": "invoices_in_region", "args": {"region": "eu-west", "status": format!("s{n}")}});
        steps.as_array_mut().unwrap().push(region);
    }
    let (negotiated, r, elicitations) = client(door, sdk, mode, &steps);
    assert!(elicitations.is_empty(), "{elicitations:#?}");
    let at = format!("{sdk:?} client in mode {mode}");
    assert_eq!(negotiated, protocol, "{at}");

    // tools/list: every tool the agent may call, with the server's annotations.
    for tool in ["get_invoice", "delete_invoice", "invoices_in_region"] {
        assert!(r[0]["tools"].as_array().unwrap().contains(&json!(tool)), "{at}: {tool} not listed: {}", r[0]);
    }
    assert_eq!(r[0]["annotations"]["delete_invoice"]["destructiveHint"], true, "{at}: {}", r[0]);
    assert_eq!(r[0]["annotations"]["get_invoice"]["readOnlyHint"], true, "{at}: {}", r[0]);
    assert_eq!(r[0]["schemas"]["invoices_in_region"]["properties"]["region"]["x-mcp-header"], "Region", "{at}");

    // The read-only tool is allowed; the destructive one is held (the agent named as the
    // door verified it from the JWT), approved, and its retry passes once.
    assert!(r[1]["result"]["content"][0]["text"].as_str().unwrap_or("").contains("120.5"), "{at}: {}", r[1]);
    assert_eq!(error_code(&r[2]), (-32004, "approval-required".into()), "{at}: {}", r[2]);
    assert!(r[2]["error"]["message"].as_str().unwrap().contains("agent sso:bot"), "{at}: {}", r[2]);
    assert_eq!(r[2]["error"]["data"]["approval"]["approver_group"], "billing-approvers", "{at}");
    assert_eq!(r[3]["status"], 200, "{at}: {}", r[3]);
    assert_eq!(r[4]["result"]["content"][0]["text"], format!("deleted {n}"), "{at}: {}", r[4]);
    assert_eq!(error_code(&r[5]), (-32003, "approval-invalid".into()), "{at}: {}", r[5]);
    assert_eq!(r[6]["result"]["contents"][0]["uri"], format!("invoices://{n}"), "{at}: {}", r[6]);
    assert_eq!(r[7]["result"]["messages"][0]["content"]["text"], format!("Summarise invoice {n}."), "{at}: {}", r[7]);
    if !modern {
        assert_eq!(r[8]["result"]["content"][0]["text"], format!("2 s{n} invoices in eu-west"), "{at}: {}", r[8]);
    }

    // What the server ran: the allowed calls, the destructive one once (after approval).
    let ran = server.ran();
    let ran_tool = |tool: &str| ran.iter().filter(|e| e["tool"] == tool && e["arguments"]["invoice_id"] == n).count();
    assert_eq!(ran_tool("get_invoice"), 1, "{at}: {ran:#?}");
    assert_eq!(ran_tool("delete_invoice"), 1, "{at}: {ran:#?}");
    assert!(ran.iter().any(|e| e["resource"] == format!("invoices://{n}")), "{at}: {ran:#?}");
    let region_ran =
        ran.iter().any(|e| e["tool"] == "invoices_in_region" && e["arguments"]["status"] == format!("s{n}"));
    assert_eq!(region_ran, !modern, "{at}: {ran:#?}");

    // What reached the server over HTTP for this session's calls: the generation's headers,
    // the principal the door verified, never the caller's token nor the approval id.
    let http = server.http();
    let calls: Vec<&Value> = http
        .iter()
        .filter(|h| h["body"]["method"] == "tools/call" && h["body"]["params"]["arguments"]["invoice_id"] == n)
        .collect();
    assert_eq!(calls.len(), 2, "{at}: get_invoice and the approved delete_invoice: {calls:#?}");
    for call in &calls {
        let headers = &call["headers"];
        assert_eq!(headers["mcp-protocol-version"], protocol, "{at}: {call}");
        assert_eq!(headers["x-portcullis-principal"], "agent:sso:bot", "{at}: {call}");
        assert!(call["body"]["params"]["_meta"].get("portcullis/approval").is_none(), "{at}: {call}");
        if modern {
            assert_eq!(headers["mcp-method"], "tools/call", "{at}: {call}");
            assert_eq!(headers["mcp-name"], call["body"]["params"]["name"], "{at}: {call}");
            assert_eq!(call["body"]["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"], protocol, "{at}");
        } else {
            assert!(headers.get("mcp-method").is_none(), "{at}: a 2025 call gets no 2026 headers: {call}");
        }
    }
    // (A client pinned to 2026-07-28 may skip `server/discover`: the Python SDK does.)
    if !modern {
        assert!(http.iter().any(|h| h["body"]["method"] == "initialize"), "{at}: no initialize reached the server");
    }
    let leaked: Vec<&Value> = http.iter().filter(|h| h["headers"].get("authorization").is_some()).collect();
    assert!(leaked.is_empty(), "{at}: the bearer token reached the server: {leaked:#?}");
}

/// The Python SDK's server (both generations) with every client, in every generation it
/// shares with the server.
#[test]
fn the_python_sdk_server_behind_the_door_with_every_sdk_client() {
    common::policies_dir();
    let dir = temp_dir("mcp-sdks-python");
    let server = SdkServer::start(&dir, Sdk::Python);
    let door = Door::start(&dir, &server);
    session(&door, &server, Sdk::Python, "legacy", "2025-11-25", 101);
    session(&door, &server, Sdk::Python, "2026-07-28", "2026-07-28", 102);
    session(&door, &server, Sdk::TsV1, "legacy", "2025-11-25", 103);
    session(&door, &server, Sdk::TsV2, "legacy", "2025-11-25", 104);
    session(&door, &server, Sdk::TsV2, "2026-07-28", "2026-07-28", 105);
}

/// The TypeScript SDK 1.x server (sessions, 2025 only): every client in the 2025 handshake,
/// and the 2.x client's `auto` probe falling back to it.
#[test]
fn the_typescript_v1_server_behind_the_door_with_every_sdk_client() {
    common::policies_dir();
    let dir = temp_dir("mcp-sdks-ts-v1");
    let server = SdkServer::start(&dir, Sdk::TsV1);
    let door = Door::start(&dir, &server);
    session(&door, &server, Sdk::Python, "legacy", "2025-11-25", 201);
    session(&door, &server, Sdk::TsV1, "legacy", "2025-11-25", 202);
    session(&door, &server, Sdk::TsV2, "legacy", "2025-11-25", 203);
    session(&door, &server, Sdk::TsV2, "auto", "2025-11-25", 204);
}

/// The TypeScript SDK 2.x server (`createMcpHandler`: 2026-07-28 per request, 2025 through
/// its stateless fallback) with every client, in both generations.
#[test]
fn the_typescript_v2_server_behind_the_door_with_every_sdk_client() {
    common::policies_dir();
    let dir = temp_dir("mcp-sdks-ts-v2");
    let server = SdkServer::start(&dir, Sdk::TsV2);
    let door = Door::start(&dir, &server);
    session(&door, &server, Sdk::Python, "legacy", "2025-11-25", 301);
    session(&door, &server, Sdk::Python, "2026-07-28", "2026-07-28", 302);
    session(&door, &server, Sdk::TsV1, "legacy", "2025-11-25", 303);
    session(&door, &server, Sdk::TsV2, "legacy", "2025-11-25", 304);
    session(&door, &server, Sdk::TsV2, "auto", "2026-07-28", 305);
    multi_round_trip(&door, &server, Sdk::Python, 310);
    multi_round_trip(&door, &server, Sdk::TsV2, 320);
}

/// A 2026 Multi Round-Trip Request the server makes (`confirm_invoice`: an
/// `InputRequiredResult` with a URL elicitation and a `requestState`) passes the door both
/// ways: the client sees the elicitation, answers it, and retries with the state echoed; a
/// declined one completes as declined; a client that does not retry gets the result itself.
fn multi_round_trip(door: &Door, server: &SdkServer, sdk: Sdk, n: u64) {
    let call = |id: u64| json!({"op": "call", "tool": "confirm_invoice", "args": {"invoice_id": id}});
    let mut declined = call(n + 1);
    declined["elicit"] = json!("decline");
    let (protocol, r, elicitations) = client(door, sdk, "2026-07-28", &json!([call(n), declined]));
    assert_eq!(protocol, "2026-07-28");
    assert_eq!(elicitations.len(), 2, "{sdk:?}: {elicitations:#?}");
    assert_eq!(elicitations[0]["elicitation"]["mode"], "url", "{sdk:?}: {elicitations:#?}");
    assert_eq!(elicitations[0]["elicitation"]["url"], format!("https://billing.example/invoices/{n}/confirm"));
    assert_eq!(r[0]["result"]["content"][0]["text"], format!("confirmed {n}"), "{sdk:?}: {r:#?}");
    assert_eq!(r[1]["result"]["content"][0]["text"], format!("not confirmed (decline)"), "{sdk:?}: {r:#?}");

    let mut manual = call(n + 2);
    manual["retry"] = json!(false);
    let (_, r, elicitations) = client(door, sdk, "2026-07-28", &json!([manual]));
    assert!(elicitations.is_empty(), "{sdk:?}: {elicitations:#?}");
    let input = &r[0]["input_required"];
    assert_eq!(input["resultType"], "input_required", "{sdk:?}: {r:#?}");
    assert_eq!(input["requestState"], format!("confirm:{}", n + 2), "{sdk:?}: {r:#?}");
    let elicitation = &input["inputRequests"]["confirm"];
    assert_eq!(elicitation["method"], "elicitation/create", "{sdk:?}: {r:#?}");
    assert_eq!(elicitation["params"]["mode"], "url", "{sdk:?}: {r:#?}");
    assert_eq!(elicitation["params"]["url"], format!("https://billing.example/invoices/{}/confirm", n + 2));

    // The server got each first round without state and each retry with it, answered.
    let rounds = |id: u64| -> Vec<Value> {
        server
            .ran()
            .into_iter()
            .filter(|e| e["tool"] == "confirm_invoice" && e["arguments"]["invoice_id"] == id)
            .collect()
    };
    let accepted = rounds(n);
    assert_eq!(accepted.len(), 2, "{sdk:?}: {accepted:#?}");
    assert_eq!(accepted[0]["requestState"], Value::Null);
    assert_eq!(accepted[1]["requestState"], format!("confirm:{n}"));
    assert_eq!(accepted[1]["answer"], json!({"kind": "elicit", "action": "accept"}), "{sdk:?}");
    assert_eq!(rounds(n + 1)[1]["answer"]["action"], "decline", "{sdk:?}");
    assert_eq!(rounds(n + 2).len(), 1, "{sdk:?}: a client that does not retry sends one round");
}
