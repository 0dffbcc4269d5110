//! The MCP door with both official SDKs, both protocol generations, on loopback: servers
//! and clients built with the Python SDK (`mcp` 2.x) and the TypeScript SDKs
//! (`@modelcontextprotocol/sdk` 1.x, which speaks up to 2025-11-25, and
//! `@modelcontextprotocol/client`/`server` 2.x, which speak 2026-07-28 too), the programs in
//! `tests/mcp_sdk/`. Each test puts `portcullis serve` (tool-guard, a JWT identity) in front
//! of one SDK's server and runs every client that speaks a generation that server speaks, in
//! each such generation, through the same door: list tools, a read-only call (allowed), a
//! destructive call (held for approval: -32004 for 2025 clients, approve, the retry passes
//! once; a URL elicitation for 2026 clients, which the test approves before the client's
//! retry completes, tests/mcp_mrtr.rs for the rest), a
//! resource, a prompt, and a tool whose argument the 2026 protocol mirrors into a header
//! (`Mcp-Param-Region`, checked by the door and sent on). What the server received is checked line by line: the calls
//! allowed, nothing held, the routing headers of each generation, and never the caller's
//! bearer token.
//!
//! The SDKs are installed by `scripts/install-mcp.sh` (Python, `target/mcp-venv`) and
//! `scripts/install-mcp-node.sh` (TypeScript, `target/mcp-node`, from the lock file in
//! `tests/mcp_sdk/`).

mod common;

use common::mcp_sdk::{
    Door, Sdk, SdkServer, answer_message, call_2026, client, client_with_approver, error_code, token,
};
use common::serve::{ADMIN_TOKEN, temp_dir};
use serde_json::{Value, json};

/// One agent session through the door with `sdk`'s client in `mode`, which must negotiate
/// `protocol`; `n` tells this session's calls apart on the shared server.
fn session(door: &Door, server: &SdkServer, sdk: Sdk, mode: &str, protocol: &str, n: u64) {
    let admin = door.server.url("admin", "");
    let modern = protocol == "2026-07-28";
    // A 2026 client (both SDKs declare URL elicitation) is asked to approve as a Multi
    // Round-Trip Request: its elicitation waits for this file while the test approves; a
    // 2025 client gets -32004, approves, retries with the id, and tries a replay.
    let wait = common::root().join("target/test-tmp").join(format!("mcp-sdks-decided-{n}-{}", std::process::id()));
    let _ = std::fs::remove_file(&wait);
    let destructive = if modern {
        json!([{"op": "call", "tool": "delete_invoice", "args": {"invoice_id": n}, "wait_file": wait}])
    } else {
        json!([
            {"op": "call", "tool": "delete_invoice", "args": {"invoice_id": n}},
            {"op": "approve", "admin": admin, "token": ADMIN_TOKEN, "from": 2},
            {"op": "call", "tool": "delete_invoice", "args": {"invoice_id": n}, "approval_from": 2},
            {"op": "call", "tool": "delete_invoice", "args": {"invoice_id": n}, "approval_from": 2},
        ])
    };
    let mut steps =
        vec![json!({"op": "list_tools"}), json!({"op": "call", "tool": "get_invoice", "args": {"invoice_id": n}})];
    steps.extend(destructive.as_array().unwrap().iter().cloned());
    steps.extend([
        json!({"op": "read", "uri": format!("invoices://{n}")}),
        json!({"op": "prompt", "name": "summarise_invoice", "args": {"invoice_id": n.to_string()}}),
        // 2026 clients mirror `region` into `Mcp-Param-Region`: checked, and sent on.
        json!({"op": "call", "tool": "invoices_in_region", "args": {"region": "eu-west", "status": format!("s{n}")}}),
    ]);
    let steps = Value::Array(steps);
    let at = format!("{sdk:?} client in mode {mode}");
    let (negotiated, r, elicitations) = if modern {
        let ((negotiated, r, elicitations), approval) = client_with_approver(door, sdk, &steps, &wait);
        assert_eq!(elicitations.len(), 1, "{at}: {elicitations:#?}");
        assert_eq!(elicitations[0]["elicitation"]["mode"], "url", "{at}: {elicitations:#?}");
        assert_eq!(elicitations[0]["elicitation"]["url"], format!("{admin}/approvals/{approval}"), "{at}");
        (negotiated, r, Vec::new())
    } else {
        client(door, sdk, mode, &steps)
    };
    assert!(elicitations.is_empty(), "{elicitations:#?}");
    assert_eq!(negotiated, protocol, "{at}");
    // Where the resource, prompt and region steps are.
    let k = if modern { 3 } else { 6 };

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
    if modern {
        assert_eq!(r[2]["result"]["content"][0]["text"], format!("deleted {n}"), "{at}: {}", r[2]);
    } else {
        assert_eq!(error_code(&r[2]), (-32004, "approval-required".into()), "{at}: {}", r[2]);
        assert!(r[2]["error"]["message"].as_str().unwrap().contains("agent sso:bot"), "{at}: {}", r[2]);
        assert_eq!(r[2]["error"]["data"]["approval"]["approver_group"], "billing-approvers", "{at}");
        assert_eq!(r[3]["status"], 200, "{at}: {}", r[3]);
        assert_eq!(r[4]["result"]["content"][0]["text"], format!("deleted {n}"), "{at}: {}", r[4]);
        assert_eq!(error_code(&r[5]), (-32003, "approval-invalid".into()), "{at}: {}", r[5]);
    }
    assert_eq!(r[k]["result"]["contents"][0]["uri"], format!("invoices://{n}"), "{at}: {}", r[k]);
    let prompt = &r[k + 1]["result"]["messages"][0]["content"]["text"];
    assert_eq!(*prompt, format!("Summarise invoice {n}."), "{at}: {}", r[k + 1]);
    let region = &r[k + 2]["result"]["content"][0]["text"];
    assert_eq!(*region, format!("2 s{n} invoices in eu-west"), "{at}: {}", r[k + 2]);

    // What the server ran: the allowed calls, the destructive one once (after approval).
    let ran = server.ran();
    let ran_tool = |tool: &str| ran.iter().filter(|e| e["tool"] == tool && e["arguments"]["invoice_id"] == n).count();
    assert_eq!(ran_tool("get_invoice"), 1, "{at}: {ran:#?}");
    assert_eq!(ran_tool("delete_invoice"), 1, "{at}: {ran:#?}");
    assert!(ran.iter().any(|e| e["resource"] == format!("invoices://{n}")), "{at}: {ran:#?}");
    let region_ran =
        ran.iter().any(|e| e["tool"] == "invoices_in_region" && e["arguments"]["status"] == format!("s{n}"));
    assert!(region_ran, "{at}: {ran:#?}");

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
    // The region call: a 2026 server gets `Mcp-Param-Region` from the door, a 2025 one none.
    let region_call = http
        .iter()
        .find(|h| h["body"]["method"] == "tools/call" && h["body"]["params"]["arguments"]["status"] == format!("s{n}"))
        .unwrap_or_else(|| panic!("{at}: the region call never reached the server"));
    let param = &region_call["headers"]["mcp-param-region"];
    assert_eq!(*param, if modern { json!("eu-west") } else { Value::Null }, "{at}: {region_call}");
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

/// The 2026-07-28 request headers are checked against the body before any policy runs:
/// a mismatch is `400` with `-32020` (the request's id) and the server sees nothing; an
/// unknown version is `-32022`; `Mcp-Param-*` values reach policies (one header more for
/// `test-probe`) and the server only when checked; a browser `Origin` passes only when listed.
#[test]
fn the_2026_request_headers_are_checked_against_the_body_before_any_policy() {
    common::policies_dir();
    let dir = temp_dir("mcp-sdks-headers");
    let server = SdkServer::start(&dir, Sdk::Python);
    let probe = common::component("test-probe").display().to_string();
    let extra = format!("\n[policies.test-probe]\nmodule = \"{probe}\"\n");
    let door = Door::start_with(&dir, &server, r#""tool-guard", "test-probe""#, &extra);
    let calls_seen = || server.http().iter().filter(|h| h["body"]["method"] == "tools/call").count();
    let region = |r: &str| json!({"region": r, "status": "open"});

    // Agreeing headers: the call runs, and the server gets the header the door wrote.
    let ok = call_2026(&door, "invoices_in_region", &region("us-west1"), &[("mcp-param-region", "us-west1")]);
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    assert_eq!(answer_message(&ok)["result"]["content"][0]["text"], "2 open invoices in us-west1");
    let http = server.http();
    let sent = http.iter().rfind(|h| h["body"]["method"] == "tools/call").unwrap();
    assert_eq!(sent["headers"]["mcp-param-region"], "us-west1", "{sent}");
    // Non-ASCII travels in the Base64 sentinel both ways.
    let zurich =
        call_2026(&door, "invoices_in_region", &region("Zürich"), &[("mcp-param-region", "=?base64?WsO8cmljaA==?=")]);
    assert_eq!(zurich.status, 200, "{}", String::from_utf8_lossy(&zurich.body));
    let http = server.http();
    let sent = http.iter().rfind(|h| h["body"]["method"] == "tools/call").unwrap();
    assert_eq!(sent["headers"]["mcp-param-region"], "=?base64?WsO8cmljaA==?=", "{sent}");
    // Policies see the checked value as a header: the same call without the argument (so
    // without the header) shows test-probe one header fewer.
    let none = call_2026(&door, "invoices_in_region", &json!({"region": null, "status": "open"}), &[]);
    assert_eq!(none.status, 200, "{}", String::from_utf8_lossy(&none.body));
    let audit = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap_or_default();
    let counts: Vec<u64> = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["operation"] == "invoices_in_region" && r["phase"] == "request")
        .filter_map(|r| {
            let labels = r["labels"].as_array()?.clone();
            let count = labels.iter().find(|l| l["policy"] == "test-probe" && l["key"] == "headers")?;
            count["value"].as_str()?.parse().ok()
        })
        .collect();
    assert_eq!(counts.len(), 3, "{audit}");
    assert_eq!(counts[0], counts[2] + 1, "mcp-param-region reached the policies: {counts:?}");
    let before = calls_seen();

    let refused = |answer: &common::serve::Answer, code: i64, text: &str| {
        let body = String::from_utf8_lossy(&answer.body);
        assert_eq!(answer.status, 400, "{body}");
        let message = answer_message(answer);
        assert_eq!(message["error"]["code"], code, "{body}");
        assert_eq!(message["id"], 7, "{body}");
        assert!(message["error"]["message"].as_str().unwrap().contains(text), "{body}");
    };
    // Mcp-Name names another tool than the body.
    let a = call_2026(&door, "get_invoice", &json!({"invoice_id": 1}), &[("mcp-name", "delete_invoice")]);
    refused(&a, -32020, "Mcp-Name header value 'delete_invoice' does not match body value 'get_invoice'");
    // The protocol version header disagrees with _meta.
    let a = call_2026(&door, "get_invoice", &json!({"invoice_id": 1}), &[("mcp-protocol-version", "2025-11-25")]);
    refused(&a, -32020, "MCP-Protocol-Version");
    // An Mcp-Param value that is not the argument's, and a missing one.
    let a = call_2026(&door, "invoices_in_region", &region("us-west1"), &[("mcp-param-region", "eu-west1")]);
    refused(&a, -32020, "Mcp-Param-Region header value 'eu-west1' does not match body value 'us-west1'");
    let a = call_2026(&door, "invoices_in_region", &region("us-west1"), &[]);
    refused(&a, -32020, "Mcp-Param-Region header is missing");
    // A param for a tool the door has no definition of.
    let a = call_2026(&door, "no_such_tool", &json!({"x": 1}), &[("mcp-param-x", "1")]);
    refused(&a, -32020, "cannot be checked");
    // A version the door does not know.
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "get_invoice",
        "arguments": {"invoice_id": 1}, "_meta": {"io.modelcontextprotocol/protocolVersion": "2027-01-01"}}});
    let bearer = format!("Bearer {}", token());
    let headers = [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("authorization", bearer.as_str()),
        ("mcp-protocol-version", "2027-01-01"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "get_invoice"),
    ];
    let a = common::serve::send("POST", &door.server.url("mcp", "/mcp"), &headers, body.to_string().as_bytes());
    refused(&a, -32022, "Unsupported protocol version");
    assert_eq!(answer_message(&a)["error"]["data"]["supported"][0], "2026-07-28");
    assert_eq!(calls_seen(), before, "a refused call never reached the server");
    // No policy ran for them: only the two calls that passed were audited as tools/call.
    let audit = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap_or_default();
    let audited =
        audit.lines().filter(|l| l.contains("\"invoices_in_region\"") && l.contains("\"phase\":\"request\"")).count();
    assert_eq!(audited, 3, "{audit}");

    // Origin: a listed one passes the door (and goes on: the SDK's server, with its own
    // DNS-rebinding guard, may still refuse it), any other is refused 403 before anything.
    let listed = call_2026(&door, "get_invoice", &json!({"invoice_id": 5}), &[("origin", "https://app.example.com")]);
    let reached = server.http().into_iter().any(|h| {
        h["body"]["params"]["arguments"]["invoice_id"] == 5 && h["headers"]["origin"] == "https://app.example.com"
    });
    assert!(reached, "a listed origin passes the door: {}", String::from_utf8_lossy(&listed.body));
    let other = call_2026(&door, "get_invoice", &json!({"invoice_id": 6}), &[("origin", "https://evil.example")]);
    assert_eq!(other.status, 403, "{}", String::from_utf8_lossy(&other.body));
    let message = answer_message(&other);
    assert!(message.get("id").is_none(), "{message}");
    assert!(message["error"]["message"].as_str().unwrap().contains("allowed_origins"), "{message}");
    assert!(!server.ran().iter().any(|e| e["arguments"]["invoice_id"] == 6), "the refused call never ran");
}
