//! The MCP door as an OAuth 2.1 resource server (`[server.mcp.oauth]`, MCP 2026-07-28
//! basic/authorization), on loopback in front of the Python SDK's server: the RFC 9728
//! metadata document, the 401 challenge, the audience check (RFC 8707), the step-up 403
//! `insufficient_scope`, the Python SDK's own OAuth client through the whole flow against a
//! small loopback authorization server (tests/mcp_sdk/py_oauth.py), and, in every case, the
//! caller's token never reaching the MCP server, with or without `[[identity.jwt]]`.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::mcp_sdk::{JWT_SECRET, Sdk, SdkServer, python};
use common::serve::{AGENT_KEY, Answer, Server, send, temp_dir};
use serde_json::{Value, json};

const CLIENT_ID: &str = "invoice-agent";
const CLIENT_SECRET: &str = "invoice-agent-secret-0123456789";
const DOOR_ID: &str = "portcullis-door";
const DOOR_SECRET: &str = "portcullis-door-secret-0123456789";

/// A port to listen on, free a moment ago: the resource URI names the door's own port, so
/// it must be known before the config is written.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// tests/mcp_sdk/py_oauth.py's authorization server; killed on drop.
struct AuthServer {
    child: Child,
    issuer: String,
    log: std::path::PathBuf,
}

impl AuthServer {
    fn start(dir: &Path) -> AuthServer {
        AuthServer::start_with(dir, &[])
    }

    /// With `extra` arguments: the door's client id and secret, for token exchange.
    fn start_with(dir: &Path, extra: &[&str]) -> AuthServer {
        let port_file = dir.join("as.port");
        let log = dir.join("as.jsonl");
        let mut child = Command::new(python())
            .arg(common::root().join("tests/mcp_sdk/py_oauth.py"))
            .args(["as", &port_file.display().to_string(), &log.display().to_string()])
            .args([CLIENT_ID, CLIENT_SECRET, JWT_SECRET])
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .expect("start the authorization server");
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                break text.trim().parse::<u16>().unwrap();
            }
            assert!(child.try_wait().unwrap().is_none(), "the authorization server exited");
            assert!(Instant::now() < deadline, "the authorization server never listened");
            std::thread::sleep(Duration::from_millis(20));
        };
        AuthServer { child, issuer: format!("http://127.0.0.1:{port}"), log }
    }

    fn token_requests(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `portcullis serve`: the MCP door in front of `upstream` on `port`, tool-guard and scopes
/// (`invoices:read` for every call, `invoices:delete` for `delete_invoice`), agents from
/// JWTs of `issuers`, an agent API key, `strip_credentials = false` (the door strips
/// anyway), and `oauth` appended (a `[server.mcp.oauth]` section, or nothing).
fn door(dir: &Path, upstream: &SdkServer, port: u16, issuers: &[&str], oauth: &str) -> Server {
    let module = |name: &str| common::component(name).display().to_string();
    let jwt: String = issuers
        .iter()
        .enumerate()
        .map(|(n, issuer)| {
            format!(
                "[[identity.jwt]]\nissuer = \"{issuer}\"\nsecret_env = \"PORTCULLIS_TEST_JWT_SECRET\"\n\
                 kind = \"agent\"\nid_prefix = \"i{n}:\"\n\n"
            )
        })
        .collect();
    let config = format!(
        r#"
[identity]
strip_credentials = false

[[identity.api_keys]]
name = "bot-key"
sha256 = "{agent_key}"
kind = "agent"
id = "invoice-bot"
scopes = ["invoices:read"]

{jwt}
[policies.tool-guard]
module = "{tool_guard}"
[policies.tool-guard.settings]
tools = {{ agent = ["get_invoice", "delete_invoice", "invoices_in_region"] }}

[policies.scopes]
module = "{scopes}"
[policies.scopes.settings]
rules = [
  {{ path = "/mcp", operations = ["delete_invoice"], scopes = ["invoices:read", "invoices:delete"] }},
  {{ path = "/mcp", operations = ["get_invoice", "invoices_in_region"], scopes = ["invoices:read"] }},
  {{ path = "/mcp", scopes = [] }},
]

[[routes]]
name = "mcp"
paths = ["/mcp"]
policies = ["tool-guard", "scopes"]

[server.mcp]
listen = "127.0.0.1:{port}"
upstream = "http://127.0.0.1:{upstream}/mcp"
filter_tools = false

[audit]
path = "audit.jsonl"
{oauth}"#,
        agent_key = portcullis_host::sha256_hex(AGENT_KEY.as_bytes()),
        tool_guard = module("tool-guard"),
        scopes = module("scopes"),
        upstream = upstream.port,
    );
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, config).unwrap();
    Server::start(&path, &[("PORTCULLIS_TEST_JWT_SECRET", JWT_SECRET), ("PORTCULLIS_TEST_DOOR_SECRET", DOOR_SECRET)])
}

fn oauth_section(port: u16, issuer: &str) -> String {
    format!(
        r#"
[server.mcp.oauth]
resource = "http://127.0.0.1:{port}/mcp"
authorization_servers = ["{issuer}"]
scopes_supported = ["invoices:read"]
resource_name = "Invoices"
"#
    )
}

fn jwt(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A raw 2026-07-28 `tools/call` of `tool` with `headers` (the hostile cases an SDK will not send).
fn call(server: &Server, tool: &str, headers: &[(&str, &str)]) -> Answer {
    let body = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": tool, "arguments": {"invoice_id": 7}, "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {}}}});
    let mut all = vec![
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", tool),
    ];
    all.extend_from_slice(headers);
    send("POST", &server.url("mcp", "/mcp"), &all, body.to_string().as_bytes())
}

fn www_authenticate(answer: &Answer) -> String {
    answer.headers.get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

/// Every HTTP request the SDK's server got carried no credential of the caller's.
fn assert_no_credential_reached(server: &SdkServer) {
    let http = server.http();
    assert!(!http.is_empty(), "nothing reached the server");
    for request in http {
        let headers = request["headers"].as_object().unwrap();
        for name in headers.keys() {
            let name = name.to_ascii_lowercase();
            assert!(name != "authorization" && name != "x-api-key", "{name} reached the MCP server: {request}");
        }
    }
}

#[test]
fn the_door_publishes_metadata_challenges_and_checks_audience_and_scope() {
    let dir = temp_dir("mcp-oauth-raw");
    let upstream = SdkServer::start(&dir, Sdk::Python);
    let issuer = "https://as.test";
    let port = free_port();
    let server = door(&dir, &upstream, port, &[issuer, "https://sso.test"], &oauth_section(port, issuer));
    let resource = format!("http://127.0.0.1:{port}/mcp");
    let metadata_url = format!("http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp");

    // RFC 9728 metadata at the endpoint's well-known URI and at the root, GET only.
    for path in ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"] {
        let answer = send("GET", &server.url("mcp", path), &[], b"");
        assert_eq!(answer.status, 200, "{path}: {}", server.log());
        assert_eq!(answer.headers.get("content-type").unwrap(), "application/json");
        let document: Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(document["resource"], resource.as_str(), "{document}");
        assert_eq!(document["authorization_servers"], json!([issuer]));
        assert_eq!(document["scopes_supported"], json!(["invoices:read"]));
        assert_eq!(document["bearer_methods_supported"], json!(["header"]));
        assert_eq!(document["resource_name"], "Invoices");
    }
    assert_eq!(send("POST", &server.url("mcp", "/.well-known/oauth-protected-resource/mcp"), &[], b"").status, 405);
    assert_eq!(send("GET", &server.url("mcp", "/.well-known/oauth-protected-resource/other"), &[], b"").status, 404);

    // No token (nor an API key instead of one): 401 with the challenge, no error.
    let challenge = format!("Bearer resource_metadata=\"{metadata_url}\", scope=\"invoices:read\"");
    for headers in [vec![], vec![("x-api-key", AGENT_KEY)]] {
        let answer = call(&server, "get_invoice", &headers);
        assert_eq!(answer.status, 401, "{headers:?}");
        assert_eq!(www_authenticate(&answer), challenge);
    }

    // A token for another audience: 401 invalid_token, audited with the reason.
    let other = jwt(
        &json!({"iss": "https://sso.test", "aud": "portcullis-mcp", "sub": "bot", "exp": now() + 600,
        "scope": "invoices:read"}),
        JWT_SECRET,
    );
    let answer = call(&server, "get_invoice", &[("authorization", &format!("Bearer {other}"))]);
    assert_eq!(answer.status, 401);
    let header = www_authenticate(&answer);
    assert!(header.starts_with(&format!("{challenge}, error=\"invalid_token\"")), "{header}");
    assert!(header.contains("audience"), "{header}");
    let audit = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap_or_default();
    assert!(
        audit.lines().any(|l| l.contains("unauthenticated") && l.contains("does not include this resource")),
        "{audit}"
    );
    assert!(!audit.contains(&other), "the token was written to the audit log");

    // The right audience but a bad signature, or expired: the gate refuses, 401 invalid_token.
    let claims =
        |exp: u64, scope: &str| json!({"iss": issuer, "aud": resource, "sub": "bot", "exp": exp, "scope": scope});
    for (token, case) in [
        (jwt(&claims(now() + 600, "invoices:read"), "another-secret-0123456789abcdef-xyz"), "bad signature"),
        (jwt(&claims(now() - 3600, "invoices:read"), JWT_SECRET), "expired"),
    ] {
        let answer = call(&server, "get_invoice", &[("authorization", &format!("Bearer {token}"))]);
        assert_eq!(answer.status, 401, "{case}");
        assert!(www_authenticate(&answer).contains("error=\"invalid_token\""), "{case}: {}", www_authenticate(&answer));
    }

    // Step-up: a token without the scope a call needs gets 403 insufficient_scope naming it.
    let bare = jwt(&claims(now() + 600, ""), JWT_SECRET);
    let answer = call(&server, "get_invoice", &[("authorization", &format!("Bearer {bare}"))]);
    assert_eq!(answer.status, 403, "{}", String::from_utf8_lossy(&answer.body));
    let header = www_authenticate(&answer);
    assert!(
        header.starts_with(&format!(
            "Bearer error=\"insufficient_scope\", scope=\"invoices:read\", resource_metadata=\"{metadata_url}\""
        )),
        "{header}"
    );
    let body: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(body["error"]["data"]["code"], "missing-scope", "{body}");

    let read = jwt(&claims(now() + 600, "invoices:read"), JWT_SECRET);
    let answer = call(&server, "get_invoice", &[("authorization", &format!("Bearer {read}"))]);
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    assert!(String::from_utf8_lossy(&answer.body).contains("120.5"), "{}", String::from_utf8_lossy(&answer.body));
    let answer = call(&server, "delete_invoice", &[("authorization", &format!("Bearer {read}"))]);
    assert_eq!(answer.status, 403);
    assert!(www_authenticate(&answer).contains("scope=\"invoices:delete\""), "{}", www_authenticate(&answer));

    // A token audience with the resource among others is accepted.
    let both = jwt(
        &json!({"iss": issuer, "aud": ["https://other.test", resource.to_uppercase().replace("/MCP", "/mcp")],
        "sub": "bot", "exp": now() + 600, "scope": "invoices:read"}),
        JWT_SECRET,
    );
    let answer = call(&server, "get_invoice", &[("authorization", &format!("Bearer {both}"))]);
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));

    assert_no_credential_reached(&upstream);
}

#[test]
fn the_python_sdk_discovers_the_authorization_server_gets_a_token_and_steps_up() {
    let dir = temp_dir("mcp-oauth-python");
    let upstream = SdkServer::start(&dir, Sdk::Python);
    let auth = AuthServer::start(&dir);
    let port = free_port();
    let server = door(&dir, &upstream, port, &[&auth.issuer], &oauth_section(port, &auth.issuer));
    let url = server.url("mcp", "/mcp");
    let steps = json!([
        {"op": "list_tools"},
        {"op": "call", "tool": "get_invoice", "args": {"invoice_id": 11}},
        {"op": "call", "tool": "delete_invoice", "args": {"invoice_id": 11}},
    ]);
    for mode in ["legacy", "2026-07-28"] {
        let output = Command::new(python())
            .arg(common::root().join("tests/mcp_sdk/py_oauth.py"))
            .args(["client", &url, &auth.issuer, CLIENT_ID, CLIENT_SECRET, &steps.to_string(), "--mode", mode])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let context = format!("mode {mode}:\n{stdout}\n{}\n{}", String::from_utf8_lossy(&output.stderr), server.log());
        let lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert!(lines.first().is_some_and(|l| l.get("connected").is_some()), "{context}");
        let results: Vec<&Value> = lines.iter().filter(|l| l.get("step").is_some()).collect();
        assert_eq!(results.len(), 3, "{context}");
        assert!(results[0]["tools"].as_array().unwrap().contains(&json!("get_invoice")), "{context}");
        let text = |r: &Value| r["result"]["content"][0]["text"].as_str().unwrap_or("").to_owned();
        assert!(text(results[1]).contains("120.5"), "{context}");
        assert!(results[2].get("result").is_some(), "the step-up did not complete: {context}");
    }
    // The SDK asked for the challenge's scope for this resource, then stepped up with the
    // union of what it had and what the 403 named.
    let requests = auth.token_requests();
    assert!(requests.len() >= 2, "{requests:?}");
    let resource = format!("http://127.0.0.1:{port}/mcp");
    assert!(requests.iter().all(|r| r["grant_type"] == "client_credentials" && r["resource"] == resource.as_str()));
    assert_eq!(requests[0]["scope"], "invoices:read", "{requests:?}");
    let stepped = requests[1]["scope"].as_str().unwrap_or("");
    assert!(stepped.contains("invoices:read") && stepped.contains("invoices:delete"), "{requests:?}");
    assert!(upstream.ran().iter().any(|r| r["tool"] == "delete_invoice"), "{:?}", upstream.ran());
    assert_no_credential_reached(&upstream);
}

#[test]
fn the_typescript_sdk_parses_the_challenge_discovers_and_steps_up() {
    let dir = temp_dir("mcp-oauth-typescript");
    let upstream = SdkServer::start(&dir, Sdk::Python);
    let auth = AuthServer::start(&dir);
    let port = free_port();
    let server = door(&dir, &upstream, port, &[&auth.issuer], &oauth_section(port, &auth.issuer));
    let url = server.url("mcp", "/mcp");
    let resource = format!("http://127.0.0.1:{port}/mcp");
    let other =
        jwt(&json!({"iss": auth.issuer, "aud": "https://other.test/mcp", "sub": "x", "exp": now() + 600}), JWT_SECRET);
    let steps = json!([
        {"op": "list_tools"},
        {"op": "call", "tool": "get_invoice", "args": {"invoice_id": 12}},
        {"op": "call", "tool": "delete_invoice", "args": {"invoice_id": 12}},
    ]);
    let output = Command::new("node")
        .env("NODE_PATH", common::mcp_sdk::node_modules())
        .arg(common::root().join("tests/mcp_sdk/ts_oauth.cjs"))
        .args([&url, &auth.issuer, CLIENT_ID, CLIENT_SECRET, &other, &steps.to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let context = format!("{stdout}\n{}\n{}", String::from_utf8_lossy(&output.stderr), server.log());
    let lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let line = |key: &str| lines.iter().find_map(|l| l.get(key)).unwrap_or_else(|| panic!("no {key}: {context}"));

    // The SDK's own parsing of the 401 and its RFC 9728 discovery from the URL it names.
    let challenge = line("challenge");
    assert_eq!(challenge["status"], 401, "{context}");
    assert_eq!(
        challenge["resourceMetadataUrl"],
        format!("http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp"),
        "{context}"
    );
    assert_eq!(challenge["scope"], "invoices:read", "{context}");
    assert_eq!(challenge["metadata"]["resource"], resource.as_str(), "{context}");
    assert_eq!(challenge["metadata"]["authorization_servers"], json!([auth.issuer]), "{context}");
    let other_audience = line("other_audience");
    assert_eq!(
        (other_audience["status"].as_u64(), other_audience["error"].as_str()),
        (Some(401), Some("invalid_token"))
    );

    // Its ClientCredentialsProvider through the whole flow, step-up included.
    assert!(lines.iter().any(|l| l.get("connected").is_some()), "{context}");
    let results: Vec<&Value> = lines.iter().filter(|l| l.get("step").is_some()).collect();
    assert_eq!(results.len(), 3, "{context}");
    assert!(results[0]["tools"].as_array().is_some_and(|t| t.contains(&json!("delete_invoice"))), "{context}");
    let text = |r: &Value| r["result"]["content"][0]["text"].as_str().unwrap_or("").to_owned();
    assert!(text(results[1]).contains("120.5"), "{context}");
    assert!(results[2].get("result").is_some(), "the step-up did not complete: {context}");
    let requests = auth.token_requests();
    assert!(requests.iter().all(|r| r["resource"] == resource.as_str()), "{requests:?}");
    assert!(
        requests.iter().any(|r| r["scope"].as_str().is_some_and(|s| s.contains("invoices:delete"))),
        "{requests:?}"
    );
    assert_no_credential_reached(&upstream);
}

/// The claims of a JWT, read without verifying it.
fn claims_of(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[test]
fn the_server_gets_a_token_exchanged_for_the_callers_and_never_the_callers() {
    let dir = temp_dir("mcp-oauth-exchange");
    let upstream = SdkServer::start(&dir, Sdk::Python);
    let auth = AuthServer::start_with(&dir, &[DOOR_ID, DOOR_SECRET]);
    let port = free_port();
    let exchange = format!(
        r#"
[server.mcp.oauth.exchange]
token_endpoint = "{issuer}/token"
client_id = "{DOOR_ID}"
client_secret_env = "PORTCULLIS_TEST_DOOR_SECRET"
audience = "https://invoices.internal"
scope = "invoices:read"
"#,
        issuer = auth.issuer
    );
    let server = door(&dir, &upstream, port, &[&auth.issuer], &(oauth_section(port, &auth.issuer) + &exchange));
    let resource = format!("http://127.0.0.1:{port}/mcp");
    let issuer = auth.issuer.clone();
    let caller = |sub: &str| {
        let claims = json!({"iss": issuer, "aud": resource, "sub": sub, "scope": "invoices:read", "exp": now() + 600});
        jwt(&claims, JWT_SECRET)
    };
    let exchanges = |auth: &AuthServer| {
        auth.token_requests()
            .into_iter()
            .filter(|r| r["grant_type"].as_str().is_some_and(|g| g.ends_with("token-exchange")))
            .count()
    };

    // Two calls with one caller token: exchanged once (cached), the server gets the new token.
    let alice = caller("alice-agent");
    for _ in 0..2 {
        let answer = call(&server, "get_invoice", &[("authorization", &format!("Bearer {alice}"))]);
        assert_eq!(answer.status, 200, "{}\n{}", String::from_utf8_lossy(&answer.body), server.log());
    }
    assert_eq!(exchanges(&auth), 1, "{:?}", auth.token_requests());
    let logged = auth.token_requests();
    let asked = logged.iter().find(|r| r["subject_sub"] == "alice-agent").unwrap();
    assert_eq!(
        (asked["audience"].as_str(), asked["scope"].as_str()),
        (Some("https://invoices.internal"), Some("invoices:read"))
    );
    let http = upstream.http();
    assert!(!http.is_empty());
    for request in &http {
        let authorization =
            request["headers"]["authorization"].as_str().unwrap_or_else(|| panic!("no token: {request}"));
        let token = authorization.strip_prefix("Bearer ").unwrap();
        assert_ne!(token, alice, "the caller's token reached the server");
        let claims = claims_of(token);
        assert_eq!(claims["sub"], "alice-agent", "{claims}");
        assert_eq!(claims["act"]["sub"], DOOR_ID, "{claims}");
        assert_eq!(claims["aud"], "https://invoices.internal", "{claims}");
    }

    // The authorization server refuses the caller's token: 401, nothing sent.
    let before = upstream.http().len();
    let answer = call(&server, "get_invoice", &[("authorization", &format!("Bearer {}", caller("blocked")))]);
    assert_eq!(answer.status, 401, "{}", String::from_utf8_lossy(&answer.body));
    assert!(www_authenticate(&answer).contains("error=\"invalid_token\""), "{}", www_authenticate(&answer));
    assert!(String::from_utf8_lossy(&answer.body).contains("token-exchange-refused"));
    // …or cannot be reached: 502, nothing sent, never the caller's token instead.
    drop(auth);
    let answer = call(&server, "get_invoice", &[("authorization", &format!("Bearer {}", caller("carol")))]);
    assert_eq!(answer.status, 502, "{}", String::from_utf8_lossy(&answer.body));
    assert!(String::from_utf8_lossy(&answer.body).contains("token-exchange-failed"));
    assert_eq!(upstream.http().len(), before, "a request reached the server without an exchanged token");
    // A cached exchange still serves its caller.
    let answer = call(&server, "get_invoice", &[("authorization", &format!("Bearer {alice}"))]);
    assert_eq!(answer.status, 200);
}

#[test]
fn the_token_never_reaches_the_server_even_without_a_jwt_identity() {
    let dir = temp_dir("mcp-oauth-passthrough");
    let upstream = SdkServer::start(&dir, Sdk::Python);
    // No [[identity.jwt]], no [server.mcp.oauth], strip_credentials off: the bearer token is
    // nobody's credential at the door, and still not the server's.
    let server = door(&dir, &upstream, free_port(), &[], "");
    let token = jwt(&json!({"iss": "https://elsewhere.test", "aud": "upstream", "sub": "x", "exp": now() + 600}), "k");
    let steps = json!([{"op": "call", "tool": "get_invoice", "args": {"invoice_id": 5}}]);
    for sdk in [Sdk::Python, Sdk::TsV2] {
        let output = sdk
            .command("client")
            .arg(server.url("mcp", "/mcp"))
            .arg(steps.to_string())
            .args(["--bearer", &token, "--header", &format!("x-api-key:{AGENT_KEY}")])
            .args(sdk.sdk_flags())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("120.5"), "{sdk:?}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    }
    assert_no_credential_reached(&upstream);
    // …and a bearer-only caller is anonymous, refused by tool-guard, nothing forwarded.
    let before = upstream.http().len();
    let answer = call(&server, "get_invoice", &[("authorization", &format!("Bearer {token}"))]);
    let body: Value = serde_json::from_slice(&answer.body).unwrap();
    assert!(body.get("error").is_some(), "{body}");
    let after: Vec<Value> = upstream.http().into_iter().skip(before).collect();
    assert!(after.iter().all(|r| r["body"].as_str().is_none_or(|b| !b.contains("tools/call"))), "{after:?}");
    assert_no_credential_reached(&upstream);
}

#[test]
fn check_names_the_key_and_the_file() {
    let dir = temp_dir("mcp-oauth-check");
    let write = |oauth: &str, jwt: bool| {
        let identity = if jwt { "[[identity.jwt]]\nissuer = \"https://as.test\"\nsecret_env = \"X\"\n" } else { "" };
        let scopes = common::component("scopes").display().to_string();
        let text = format!(
            "{identity}\n[policies.scopes]\nmodule = \"{scopes}\"\n\n[[routes]]\nname = \"mcp\"\npaths = [\"/mcp\"]\npolicies = [\"scopes\"]\n\n[server.mcp]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:9/mcp\"\n\n[server.mcp.oauth]\n{oauth}"
        );
        let path = dir.join("portcullis.toml");
        std::fs::write(&path, text).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["check", "--config", &path.display().to_string()])
            .env("X", "0123456789abcdef0123456789abcdef")
            .output()
            .unwrap();
        (
            output.status.success(),
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
        )
    };
    let good = "resource = \"https://mcp.example.com/mcp\"\nauthorization_servers = [\"https://as.test\"]\n";
    let (ok, out) = write(good, true);
    assert!(ok, "{out}");
    for (oauth, jwt, expected) in [
        (
            "resource = \"http://mcp.example.com/mcp\"\nauthorization_servers = [\"https://as.test\"]\n",
            true,
            "[server.mcp.oauth] resource: ",
        ),
        (
            "resource = \"https://mcp.example.com/mcp\"\nauthorization_servers = []\n",
            true,
            "[server.mcp.oauth] authorization_servers: ",
        ),
        (good, false, "[server.mcp.oauth] needs an [[identity.jwt]] issuer"),
    ] {
        let (ok, out) = write(oauth, jwt);
        assert!(!ok, "{oauth}: {out}");
        assert!(out.contains(expected) && out.contains("portcullis.toml"), "{out}");
    }
}
