//! The official MCP SDKs' programs (`tests/mcp_sdk/`) as test parts: install them once,
//! start an SDK's server, put `portcullis serve`'s MCP door (tool-guard, a JWT identity) in
//! front of it, and run an SDK's client with JSON steps through the door. Shared by
//! tests/mcp_sdks.rs and the MCP tests of each 2026 feature (approvals, authorization, pins,
//! subscriptions).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::serve::{ADMIN_TOKEN, Server};

pub const JWT_SECRET: &str = "test-mcp-sdks-jwt-secret-0123456789abcdef";

/// Runs an install script once per test run and returns what it printed (a path).
fn install(script: &str, cell: &'static OnceLock<PathBuf>) -> &'static Path {
    cell.get_or_init(|| {
        let script = super::root().join(script);
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
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    install("scripts/install-mcp.sh", &PYTHON)
}

/// The node_modules folder with the TypeScript SDKs (the programs are CommonJS: NODE_PATH).
pub fn node_modules() -> &'static Path {
    static MODULES: OnceLock<PathBuf> = OnceLock::new();
    install("scripts/install-mcp-node.sh", &MODULES)
}

/// An SDK line: which program in `tests/mcp_sdk/` plays a client or a server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sdk {
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
    pub fn command(self, role: &str) -> Command {
        let dir = super::root().join("tests/mcp_sdk");
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

    pub fn sdk_flags(self) -> &'static [&'static str] {
        match self {
            Sdk::Python => &[],
            Sdk::TsV1 => &["--sdk", "v1"],
            Sdk::TsV2 => &["--sdk", "v2"],
        }
    }
}

/// An SDK's server on loopback (`127.0.0.1:0`, its port written to a file); killed on drop.
pub struct SdkServer {
    child: Child,
    pub port: u16,
    pub seen: PathBuf,
}

impl SdkServer {
    pub fn start(dir: &Path, sdk: Sdk) -> SdkServer {
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

    pub fn seen(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.seen)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("seen line {l}: {e}")))
            .collect()
    }

    /// What the SDK ran: `{"tool": …, "arguments": …}`, `{"resource": …}`, `{"prompt": …}`.
    pub fn ran(&self) -> Vec<Value> {
        self.seen().into_iter().filter(|e| e.get("http").is_none()).collect()
    }

    /// Every HTTP request that reached the server: `{method, path, headers, body}`.
    pub fn http(&self) -> Vec<Value> {
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
pub struct Door {
    pub server: Server,
}

impl Door {
    pub fn start(dir: &Path, upstream: &SdkServer) -> Door {
        Door::start_with(dir, upstream, r#""tool-guard""#, "")
    }

    /// The door with the route's `policies` list and `extra` appended to the config.
    pub fn start_with(dir: &Path, upstream: &SdkServer, policies: &str, extra: &str) -> Door {
        let tool_guard = super::component("tool-guard").display().to_string();
        let config = super::serve::fixture_config(true, "invoices:read")
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
policies = [{policies}]

[server.mcp]
listen = "127.0.0.1:0"
upstream = "http://127.0.0.1:{port}/mcp"
allowed_origins = ["https://app.example.com"]

[server.admin]
listen = "127.0.0.1:0"
token_env = "PORTCULLIS_TEST_ADMIN_TOKEN"

[approvals]
store = "approvals.sqlite"

[audit]
path = "audit.jsonl"
{extra}"#,
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
pub fn token() -> String {
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
pub fn client(door: &Door, sdk: Sdk, mode: &str, steps: &Value) -> (String, Vec<Value>, Vec<Value>) {
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

pub fn error_code(result: &Value) -> (i64, String) {
    let error = result.get("error").unwrap_or_else(|| panic!("expected a JSON-RPC error: {result}"));
    (error["code"].as_i64().unwrap_or(0), error["data"]["code"].as_str().unwrap_or("").to_owned())
}

/// A raw 2026-07-28 `tools/call` of `tool` to the door, as the agent: the message with
/// `arguments` and the protocol version in `_meta`, the headers a 2026 client mirrors from
/// it, then `extra` (which replace them by name).
pub fn call_2026(door: &Door, tool: &str, arguments: &Value, extra: &[(&str, &str)]) -> super::serve::Answer {
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": tool, "arguments": arguments, "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {}}}});
    let bearer = format!("Bearer {}", token());
    let mut headers: Vec<(&str, &str)> = vec![
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("authorization", &bearer),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", tool),
    ];
    headers.retain(|(name, _)| !extra.iter().any(|(n, _)| n == name));
    headers.extend(extra.iter().filter(|(_, v)| !v.is_empty()));
    super::serve::send("POST", &door.server.url("mcp", "/mcp"), &headers, body.to_string().as_bytes())
}

/// The JSON-RPC message of an answer: a JSON body, or the last `data:` line of an SSE one.
pub fn answer_message(answer: &super::serve::Answer) -> Value {
    let text = String::from_utf8_lossy(&answer.body);
    let data = text.lines().filter_map(|l| l.strip_prefix("data:")).next_back().unwrap_or(&text);
    serde_json::from_str(data.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Runs `sdk`'s 2026 client with `steps` (one of which waits on `wait_file` before answering
/// its elicitation) while this thread plays the approver: the first approval created from
/// now on, still pending, is approved through the admin API, then `accept` is written to
/// `wait_file` (`cancel` when none came, so the client never hangs). The client's output
/// ([`client`]) and the approval's id.
pub fn client_with_approver(
    door: &Door,
    sdk: Sdk,
    steps: &Value,
    wait_file: &Path,
) -> ((String, Vec<Value>, Vec<Value>), String) {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    std::thread::scope(|scope| {
        let run = scope.spawn(|| client(door, sdk, "2026-07-28", steps));
        let approved = approve_next(door, since);
        std::fs::write(wait_file, if approved.is_some() { "accept" } else { "cancel" }).unwrap();
        let out = run.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        (out, approved.unwrap_or_else(|| panic!("{sdk:?}: no approval was asked for within 60 s")))
    })
}

/// Approves, through the admin API, the first approval created at or after `since_ms`
/// while it is pending; `None` when none appears within 60 s.
pub fn approve_next(door: &Door, since_ms: u64) -> Option<String> {
    let admin = door.server.url("admin", "");
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let list =
            super::serve::send("GET", &format!("{admin}/approvals?state=pending"), &[("authorization", &auth)], b"");
        let found = list
            .json()
            .as_array()
            .and_then(|list| list.iter().find(|a| a["created_ms"].as_u64().is_some_and(|c| c >= since_ms)).cloned());
        if let Some(approval) = found {
            let id = approval["id"].as_str().unwrap().to_owned();
            let url = format!("{admin}/approvals/{id}/approve");
            let answer =
                super::serve::send("POST", &url, &[("authorization", &auth)], br#"{"by": "fiona@example.com"}"#);
            assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
            return Some(id);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}
