//! The Envoy ext_authz front door end to end on loopback: `portcullis serve` as a child
//! process with `[server.ext_authz]`, asked by the generated tonic `AuthorizationClient`
//! exactly as Envoy's HTTP ext_authz filter asks it. Covers allow (with the credential
//! header stripped), deny, require-approval, a body redaction Envoy cannot carry out,
//! failed authentication, a malformed check, and the audit records.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::serve::{AGENT_KEY, READER_KEY, Server, USER_KEY, temp_dir};
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{
    AttributeContext, CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
};
use serde_json::Value;
use tonic::transport::Channel;

/// gRPC status codes Envoy reads.
const OK: i32 = 0;
const PERMISSION_DENIED: i32 = 7;
const UNAUTHENTICATED: i32 = 16;

/// A config with API-key identity (credentials stripped once verified), the reference
/// policies, approvals, an audit log and only the ext_authz door.
fn write_config(dir: &Path) -> PathBuf {
    let text = common::serve::fixture_config(true, "invoices:read")
        + r#"
[[routes]]
name = "invoices"
hosts = ["api.test"]
paths = ["/invoices/**"]
policies = ["scopes", "agent-guard"]

[[routes]]
name = "partner"
hosts = ["*.partner.example"]
policies = ["pii-redact"]

[server.ext_authz]
listen = "127.0.0.1:0"

[approvals]
store = "approvals.sqlite"

[audit]
path = "audit.jsonl"
"#;
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// A check as Envoy's HTTP filter sends it (headers as a map, pseudo-headers included).
fn check(method: &str, host: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> CheckRequest {
    let mut map: HashMap<String, String> = headers.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect();
    map.insert(":authority".into(), host.into());
    map.insert(":path".into(), path.into());
    map.insert(":method".into(), method.into());
    map.insert(":scheme".into(), "http".into());
    if let Some(body) = body {
        map.insert("content-length".into(), body.len().to_string());
        // Envoy's marker when the filter buffered the body (`with_request_body`).
        map.insert("x-envoy-auth-partial-body".into(), "false".into());
    }
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                address: Some(Address {
                    address: Some(address::Address::SocketAddress(SocketAddress {
                        address: "127.0.0.9".into(),
                        ..SocketAddress::default()
                    })),
                }),
                ..Peer::default()
            }),
            request: Some(Request {
                time: None,
                http: Some(HttpRequest {
                    id: "4242".into(),
                    method: method.into(),
                    headers: map,
                    path: path.into(),
                    host: host.into(),
                    scheme: "http".into(),
                    size: body.map_or(0, |b| b.len() as i64),
                    protocol: "HTTP/1.1".into(),
                    body: body.unwrap_or_default().into(),
                    ..HttpRequest::default()
                }),
            }),
            ..AttributeContext::default()
        }),
    }
}

struct Client {
    runtime: tokio::runtime::Runtime,
    inner: AuthorizationClient<Channel>,
}

impl Client {
    fn connect(port: u16) -> Client {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let inner = runtime
            .block_on(AuthorizationClient::connect(format!("http://127.0.0.1:{port}")))
            .expect("connect to the ext_authz service");
        Client { runtime, inner }
    }

    fn check(&mut self, request: CheckRequest) -> CheckResponse {
        let inner = &mut self.inner;
        self.runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(30), inner.check(request)).await })
            .expect("the check timed out")
            .expect("the check is answered (a gRPC error would let Envoy's failure mode decide)")
            .into_inner()
    }
}

fn allowed(response: &CheckResponse) -> &OkHttpResponse {
    assert_eq!(response.status.as_ref().map(|s| s.code), Some(OK), "{response:#?}");
    match &response.http_response {
        Some(HttpResponse::OkResponse(ok)) => ok,
        other => panic!("expected an OkHttpResponse, got {other:#?}"),
    }
}

/// A denied answer: gRPC code, HTTP status, problem body, headers.
struct Denied {
    grpc: i32,
    status: i32,
    problem: Value,
    headers: Vec<(String, String)>,
}

impl Denied {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

fn denied(response: &CheckResponse) -> Denied {
    let grpc = response.status.as_ref().map(|s| s.code).unwrap_or_default();
    let Some(HttpResponse::DeniedResponse(DeniedHttpResponse { status, headers, body })) = &response.http_response
    else {
        panic!("expected a DeniedHttpResponse, got {response:#?}");
    };
    Denied {
        grpc,
        status: status.as_ref().map(|s| s.code).unwrap_or_default(),
        problem: serde_json::from_str(body).unwrap_or_else(|e| panic!("problem body is not JSON ({e}): {body}")),
        headers: headers.iter().filter_map(|o| o.header.as_ref()).map(|h| (h.key.clone(), h.value.clone())).collect(),
    }
}

#[test]
fn ext_authz_answers_every_decision_as_envoy_expects() {
    common::policies_dir();
    let dir = temp_dir("ext-authz");
    let config = write_config(&dir);
    let server = Server::start(&config, &[]);
    let mut client = Client::connect(server.port("ext_authz"));

    // Allow: the verified API key is stripped before the upstream sees it, and the caller
    // gets the request id.
    let answer = client.check(check(
        "GET",
        "api.test",
        "/invoices/7?expand=lines",
        &[("x-api-key", USER_KEY), ("x-request-id", "ea-allow-1"), ("accept", "application/json")],
        None,
    ));
    let ok = allowed(&answer);
    assert_eq!(ok.headers_to_remove, ["x-api-key"], "{ok:#?}");
    assert!(ok.query_parameters_to_set.is_empty() && ok.query_parameters_to_remove.is_empty(), "{ok:#?}");
    let request_id: Vec<_> = ok
        .response_headers_to_add
        .iter()
        .filter_map(|o| o.header.as_ref())
        .filter(|h| h.key == "x-request-id")
        .map(|h| h.value.as_str())
        .collect();
    assert_eq!(request_id, ["ea-allow-1"]);

    // Deny: the policy's status, code and name reach the caller.
    let answer = client.check(check("DELETE", "api.test", "/invoices/7", &[("x-api-key", READER_KEY)], None));
    let deny = denied(&answer);
    assert_eq!((deny.grpc, deny.status), (PERMISSION_DENIED, 403), "{:#}", deny.problem);
    assert_eq!(deny.problem["code"], "missing-scope");
    assert_eq!(deny.problem["policy"], "scopes");
    assert_eq!(deny.header("content-type"), Some("application/problem+json"));

    // Require-approval: an agent's write waits for a human; the caller learns the id.
    let answer = client.check(check(
        "POST",
        "api.test",
        "/invoices",
        &[("x-api-key", AGENT_KEY), ("content-type", "application/json")],
        Some(r#"{"amount": 12}"#),
    ));
    let approval = denied(&answer);
    assert_eq!((approval.grpc, approval.status), (PERMISSION_DENIED, 403), "{:#}", approval.problem);
    assert_eq!(approval.problem["code"], "approval-required");
    assert_eq!(approval.problem["policy"], "agent-guard");
    let id = approval.problem["approval"]["id"].as_str().expect("an approval id").to_owned();
    assert_eq!(approval.header("portcullis-approval"), Some(id.as_str()));

    // A partner-bound request: pii-redact masks personal fields in the body, which Envoy
    // cannot rewrite. Without a body there is nothing to redact; a body without the fields
    // passes; a body with them is refused rather than sent unredacted.
    let answer = client.check(check("GET", "files.partner.example", "/share/1", &[], None));
    allowed(&answer);
    let answer = client.check(check(
        "POST",
        "files.partner.example",
        "/share",
        &[("content-type", "application/json")],
        Some(r#"{"note": "hello"}"#),
    ));
    allowed(&answer);
    let answer = client.check(check(
        "POST",
        "files.partner.example",
        "/share",
        &[("content-type", "application/json")],
        Some(r#"{"email": "ada@example.com", "note": "hello"}"#),
    ));
    let unenforceable = denied(&answer);
    assert_eq!(unenforceable.status, 403, "{:#}", unenforceable.problem);
    assert_eq!(unenforceable.problem["code"], "redaction-unenforceable");
    assert_eq!(unenforceable.problem["policy"], "pii-redact");

    // A credential that does not verify: 401 before any policy runs.
    let answer = client.check(check("GET", "api.test", "/invoices/7", &[("x-api-key", "not-a-key-we-know")], None));
    let unauthenticated = denied(&answer);
    assert_eq!((unauthenticated.grpc, unauthenticated.status), (UNAUTHENTICATED, 401));
    assert_eq!(unauthenticated.problem["code"], "unauthenticated");
    assert!(unauthenticated.header("www-authenticate").is_some());
    assert!(!format!("{answer:?}").contains("not-a-key-we-know"), "the key is never echoed");

    // A check that is not an HTTP request is refused, never allowed.
    let answer = client.check(CheckRequest::default());
    let bad = denied(&answer);
    assert_eq!((bad.grpc, bad.status), (PERMISSION_DENIED, 400));
    assert_eq!(bad.problem["code"], "bad-request");

    // Every admitted or refused request is in the audit log, named by this door. The
    // client hangs up first, as Envoy would on its own shutdown.
    drop(client);
    let log = server.stop();
    let audit = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap_or_else(|e| panic!("audit log: {e}\n{log}"));
    let records: Vec<Value> = audit.lines().map(|l| serde_json::from_str(l).expect("audit line is JSON")).collect();
    // One decision record per converted check, and the approval's own `pending` event
    // record beside the require-approval decision (docs/approvals.md).
    let decisions = records.iter().filter(|r| r.get("approval").is_none()).count();
    assert_eq!(decisions, 7, "one record per converted check:\n{audit}");
    let events: Vec<&Value> = records.iter().filter(|r| r.get("approval").is_some()).collect();
    assert_eq!(events.len(), 1, "{audit}");
    assert_eq!(events[0]["approval"]["event"], "pending", "{audit}");
    assert!(records.iter().all(|r| r["front_door"] == "ext-authz"), "{audit}");
    assert!(audit.contains("ea-allow-1"), "{audit}");
    assert!(!audit.contains(USER_KEY) && !audit.contains("ada@example.com"), "no secrets or bodies: {audit}");
    let _ = std::fs::remove_dir_all(&dir);
}
