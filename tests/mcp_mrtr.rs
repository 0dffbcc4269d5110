//! Require-approval as a Multi Round-Trip Request (MCP 2026-07-28), through `portcullis
//! serve`'s MCP door in front of the Python SDK's server, with the official SDK clients and
//! raw HTTP for what an SDK will not send:
//!
//! - a 2026 client that declares URL elicitation (Python `mcp` 2.x, TypeScript 2.x) calling a
//!   destructive tool gets an `InputRequiredResult` with one URL elicitation pointing at the
//!   approval; the test approves through the admin API (and opens the URL it was given), the
//!   client's retry completes, and the server ran the tool once; a declined elicitation ends
//!   the call, nothing sent, the approval left pending;
//! - the door's `requestState`: a retry while undecided is asked again for the same approval;
//!   altered, sealed with another key, presented by another caller or on another call, it is
//!   refused (audited, never forwarded); redeemed once, its replay is refused; it never
//!   reaches the server, while a server's own state passes untouched;
//! - `resources/read` and `prompts/get` that need approval are asked the same way;
//! - 2025 clients (Python `legacy`, TypeScript 1.x) and 2026 clients without URL elicitation
//!   keep the -32004 answer.
//! - with a `hold`, the door holds first and asks by URL when the hold ends undecided;
//! - `portcullis check` warns about an ephemeral key and names unreadable keys and an
//!   approval page it cannot tell.

mod common;

use common::mcp_sdk::{
    Door, JWT_SECRET, Sdk, SdkServer, answer_message, client, client_with_approver, error_code, token,
};
use common::serve::{ADMIN_TOKEN, Answer, send, temp_dir};
use portcullis_host::approval::request_state::{Key, KeyRing, StatePayload, StatePrincipal, call_digest};
use portcullis_host::exchange::PrincipalKind;
use serde_json::{Value, json};

/// The server never got the door's state or the answers to its elicitations.
fn assert_nothing_of_the_door_reached(server: &SdkServer) {
    for h in server.http() {
        let body = h["body"].to_string();
        assert!(!body.contains("pcs1."), "the door's requestState reached the server: {h}");
        assert!(!body.contains("portcullis/approval:"), "the door's inputResponses reached the server: {h}");
    }
}

fn ran(server: &SdkServer, tool: &str, n: u64) -> usize {
    server.ran().iter().filter(|e| e["tool"] == tool && e["arguments"]["invoice_id"] == n).count()
}

#[test]
fn sdk_clients_are_asked_by_url_the_human_approves_and_the_retry_completes_once() {
    common::policies_dir();
    let dir = temp_dir("mcp-mrtr-sdks");
    let server = SdkServer::start(&dir, Sdk::Python);
    let door = Door::start(&dir, &server);
    let admin = door.server.url("admin", "");

    for (sdk, n) in [(Sdk::Python, 401), (Sdk::TsV2, 402)] {
        let wait = dir.join(format!("decided-{n}"));
        let steps = json!([{"op": "call", "tool": "delete_invoice", "args": {"invoice_id": n},
            "wait_file": wait.display().to_string()}]);
        let ((protocol, r, elicitations), approval) = client_with_approver(&door, sdk, &steps, &wait);
        let at = format!("{sdk:?}");
        assert_eq!(protocol, "2026-07-28", "{at}");
        assert_eq!(elicitations.len(), 1, "{at}: {elicitations:#?}");
        let asked = &elicitations[0]["elicitation"];
        assert_eq!(asked["mode"], "url", "{at}: {asked}");
        assert_eq!(asked["url"], format!("{admin}/approvals/{approval}"), "{at}: {asked}");
        let message = asked["message"].as_str().unwrap();
        assert!(message.contains("billing-approvers") && message.contains("delete_invoice"), "{at}: {message}");
        assert_eq!(r[0]["result"]["content"][0]["text"], format!("deleted {n}"), "{at}: {r:#?}");
        assert_eq!(ran(&server, "delete_invoice", n), 1, "{at}: the server ran the tool once");

        if sdk == Sdk::Python {
            // The URL the person was given shows the approval (now used by the retry).
            let url = asked["url"].as_str().unwrap();
            let opened = send("GET", url, &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))], b"");
            assert_eq!(opened.status, 200, "{}", String::from_utf8_lossy(&opened.body));
            assert_eq!(opened.json()["id"], approval.as_str());
            assert_eq!(opened.json()["state"], "used", "{}", opened.json());
        }

        // Declined: a clear error, nothing sent, the approval left pending.
        let m = n + 10;
        let steps = json!([{"op": "call", "tool": "delete_invoice", "args": {"invoice_id": m}, "elicit": "decline"}]);
        let (_, r, elicitations) = client(&door, sdk, "2026-07-28", &steps);
        assert_eq!(elicitations.len(), 1, "{at}: {elicitations:#?}");
        assert_eq!(error_code(&r[0]), (-32003, "approval-decline".into()), "{at}: {r:#?}");
        let id = r[0]["error"]["data"]["approval"]["id"].as_str().unwrap().to_owned();
        assert_eq!(ran(&server, "delete_invoice", m), 0, "{at}");
        let left = send(
            "GET",
            &format!("{admin}/approvals/{id}"),
            &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
            b"",
        );
        assert_eq!(left.json()["state"], "pending", "{at}: {}", left.json());
    }
    assert_nothing_of_the_door_reached(&server);
}

/// `resources/read` and `prompts/get` are asked the same way as `tools/call` (mrtr.mdx
/// "Supported Requests"): a second tool-guard makes reading an invoice and getting the
/// summary prompt writes that need approval; each SDK client is asked by URL, the approver
/// approves, and its retry gets the resource and the prompt.
#[test]
fn reads_and_prompts_needing_approval_are_asked_by_url_too() {
    common::policies_dir();
    let dir = temp_dir("mcp-mrtr-reads");
    let server = SdkServer::start(&dir, Sdk::Python);
    let tool_guard = common::component("tool-guard").display().to_string();
    let read_guard = format!(
        r#"
[policies.read-guard]
module = "{tool_guard}"

[policies.read-guard.settings]
approver_group = "billing-approvers"
ttl_seconds = 600
writes = ["resources/read:invoices://*", "prompts/get:summarise_invoice"]

[policies.read-guard.settings.tools]
agent = ["resources/read:invoices://*", "prompts/get:summarise_invoice"]
"#
    );
    let door = Door::start_with(&dir, &server, r#""tool-guard", "read-guard""#, &read_guard);
    let admin = door.server.url("admin", "");
    for (sdk, n) in [(Sdk::Python, 801), (Sdk::TsV2, 802)] {
        let at = format!("{sdk:?}");
        let steps = [
            json!({"op": "read", "uri": format!("invoices://{n}")}),
            json!({"op": "prompt", "name": "summarise_invoice", "args": {"invoice_id": n.to_string()}}),
        ];
        for (i, step) in steps.into_iter().enumerate() {
            let wait = dir.join(format!("decided-{n}-{i}"));
            let mut step = step;
            step["wait_file"] = json!(wait.display().to_string());
            let ((protocol, r, elicitations), approval) = client_with_approver(&door, sdk, &json!([step]), &wait);
            assert_eq!(protocol, "2026-07-28", "{at}");
            assert_eq!(elicitations.len(), 1, "{at} step {i}: {elicitations:#?}");
            let asked = &elicitations[0]["elicitation"];
            assert_eq!(asked["url"], format!("{admin}/approvals/{approval}"), "{at} step {i}: {asked}");
            let result = r[0].get("result").unwrap_or_else(|| panic!("{at} step {i}: {r:#?}"));
            let text = if i == 0 { &result["contents"][0]["text"] } else { &result["messages"][0]["content"]["text"] };
            assert!(text.as_str().is_some_and(|t| t.contains(&n.to_string())), "{at} step {i}: {result}");
        }
        let kinds: Vec<Value> = server
            .ran()
            .into_iter()
            .filter(|e| e.to_string().contains(&n.to_string()))
            .map(|e| if e.get("resource").is_some() { json!("resource") } else { json!("prompt") })
            .collect();
        assert_eq!(kinds, [json!("resource"), json!("prompt")], "{at}: each ran once, after approval");
    }
    assert_nothing_of_the_door_reached(&server);
}

#[test]
fn clients_of_2025_and_clients_without_url_elicitation_keep_the_approval_error() {
    common::policies_dir();
    let dir = temp_dir("mcp-mrtr-legacy");
    let server = SdkServer::start(&dir, Sdk::Python);
    let door = Door::start(&dir, &server);
    for (sdk, n) in [(Sdk::Python, 601), (Sdk::TsV1, 602)] {
        let steps = json!([{"op": "call", "tool": "delete_invoice", "args": {"invoice_id": n}}]);
        let (protocol, r, elicitations) = client(&door, sdk, "legacy", &steps);
        assert_eq!(protocol, "2025-11-25");
        assert!(elicitations.is_empty(), "{sdk:?}: {elicitations:#?}");
        assert_eq!(error_code(&r[0]), (-32004, "approval-required".into()), "{sdk:?}: {r:#?}");
    }
    // A 2026 client that declares form elicitation only (an empty object means form).
    for capabilities in [json!({}), json!({"elicitation": {}}), json!({"elicitation": {"form": {}}})] {
        let message = answer_message(&raw(&door, 603, &capabilities, None, &token()));
        assert_eq!(message["error"]["code"], -32004, "{capabilities}: {message}");
    }
    assert_eq!(ran(&server, "delete_invoice", 603), 0);
}

/// A raw 2026-07-28 `delete_invoice` call: `capabilities` declared, `extra` merged into the
/// params (a `requestState`, `inputResponses`), as the caller with `bearer`.
fn raw(door: &Door, n: u64, capabilities: &Value, extra: Option<&Value>, bearer: &str) -> Answer {
    let mut params = json!({"name": "delete_invoice", "arguments": {"invoice_id": n}, "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": capabilities}});
    if let Some(Value::Object(extra)) = extra {
        for (k, v) in extra {
            params[k] = v.clone();
        }
    }
    let body = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": params});
    let bearer = format!("Bearer {bearer}");
    let headers = [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("authorization", bearer.as_str()),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "delete_invoice"),
    ];
    send("POST", &door.server.url("mcp", "/mcp"), &headers, body.to_string().as_bytes())
}

/// A JWT for the agent `sub`, as the door's identity verifies it.
fn token_for(sub: &str) -> String {
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"iss": "https://sso.test", "aud": "portcullis-mcp", "sub": sub, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

fn refused_state(answer: &Answer, reason: &str) {
    let message = answer_message(answer);
    assert_eq!(message["error"]["code"], -32003, "{reason}: {message}");
    assert_eq!(message["error"]["data"]["code"], "request-state-invalid", "{reason}: {message}");
    assert_eq!(message["error"]["data"]["reason"], reason, "{message}");
}

#[test]
fn the_door_s_request_state_is_bound_checked_and_redeemed_once() {
    common::policies_dir();
    let dir = temp_dir("mcp-mrtr-state");
    // The TypeScript 2.x server: its `confirm_invoice` is a Multi Round-Trip Request of its own.
    let server = SdkServer::start(&dir, Sdk::TsV2);
    let door = Door::start(&dir, &server);
    let url = json!({"elicitation": {"form": {}, "url": {}}});
    let n = 501;

    // The first call: an InputRequiredResult, one URL elicitation, the sealed state.
    let first = answer_message(&raw(&door, n, &url, None, &token()));
    let result = &first["result"];
    assert_eq!(result["resultType"], "input_required", "{first}");
    let approval = result["_meta"]["portcullis/approval"]["id"].as_str().unwrap().to_owned();
    let asked = &result["inputRequests"][format!("portcullis/approval:{approval}")];
    assert_eq!(asked["method"], "elicitation/create", "{first}");
    assert_eq!(asked["params"]["url"], door.server.url("admin", &format!("/approvals/{approval}")), "{first}");
    let state = result["requestState"].as_str().unwrap().to_owned();
    assert!(state.starts_with("pcs1.ephemeral."), "{state}");
    let accept = |state: &str| json!({"requestState": state, "inputResponses": {format!("portcullis/approval:{approval}"): {"action": "accept"}}});

    // The retry before anyone decided: asked again, for the same approval.
    let again = answer_message(&raw(&door, n, &url, Some(&accept(&state)), &token()));
    assert_eq!(again["result"]["resultType"], "input_required", "{again}");
    assert_eq!(again["result"]["_meta"]["portcullis/approval"]["id"], approval.as_str(), "{again}");

    // Altered: one character of the payload changed.
    let mut parts: Vec<String> = state.split('.').map(str::to_owned).collect();
    let flipped: String =
        parts[2].char_indices().map(|(i, c)| if i == 5 { if c == 'A' { 'B' } else { 'A' } } else { c }).collect();
    parts[2] = flipped;
    refused_state(&raw(&door, n, &url, Some(&accept(&parts.join("."))), &token()), "altered");
    // Sealed with a key the door does not hold, and with one of the same id but other bytes.
    let payload = StatePayload {
        approval_id: approval.clone(),
        principal: StatePrincipal { kind: PrincipalKind::Agent, id: "sso:bot".into(), on_behalf_of: None },
        digest: call_digest("tools/call", "delete_invoice", Some(&json!({"invoice_id": n}))),
        expires_ms: u64::MAX,
        inner: None,
    };
    let foreign = KeyRing::new(vec![Key::new("other", vec![7; 32]).unwrap()]).unwrap().seal(&payload).unwrap();
    refused_state(&raw(&door, n, &url, Some(&accept(&foreign)), &token()), "unknown-key");
    let forged = KeyRing::new(vec![Key::new("ephemeral", vec![7; 32]).unwrap()]).unwrap().seal(&payload).unwrap();
    refused_state(&raw(&door, n, &url, Some(&accept(&forged)), &token()), "altered");
    // Presented by another agent, and on another call.
    refused_state(&raw(&door, n, &url, Some(&accept(&state)), &token_for("eve")), "other-principal");
    refused_state(&raw(&door, n + 1, &url, Some(&accept(&state)), &token()), "other-call");
    assert_eq!(ran(&server, "delete_invoice", n) + ran(&server, "delete_invoice", n + 1), 0);

    // Approved: the retry runs once; its replay is refused by the approval store.
    assert_eq!(common::mcp_sdk::approve_next(&door, 0).as_deref(), Some(approval.as_str()));
    let retried = answer_message(&raw(&door, n, &url, Some(&accept(&state)), &token()));
    assert_eq!(retried["result"]["content"][0]["text"], format!("deleted {n}"), "{retried}");
    let replay = answer_message(&raw(&door, n, &url, Some(&accept(&state)), &token()));
    assert_eq!(replay["error"]["data"]["code"], "approval-invalid", "{replay}");
    assert_eq!(ran(&server, "delete_invoice", n), 1);

    // Each refused state is in the audit log, named, the state itself never.
    let audit = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    let refused: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["decided_by"] == "request-state")
        .collect();
    let reasons: Vec<&str> = refused.iter().filter_map(|r| r["labels"][0]["value"].as_str()).collect();
    assert_eq!(reasons, ["altered", "unknown-key", "altered", "other-principal", "other-call"], "{refused:#?}");
    assert!(refused.iter().all(|r| r["decision"] == "deny" && r["operation"] == "delete_invoice"), "{refused:#?}");
    assert!(refused.iter().all(|r| r["door_facts"]["mcp_generation"] == "2026-07-28"), "{refused:#?}");
    assert!(!audit.contains("pcs1."), "a state was written to the audit log");
    assert_nothing_of_the_door_reached(&server);

    // A state that is not the door's is the server's own: it passes untouched.
    let own = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": "confirm_invoice", "arguments": {"invoice_id": 77}, "requestState": "confirm:77",
        "inputResponses": {"confirm": {"action": "accept"}}, "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": url}}});
    let bearer = format!("Bearer {}", token());
    let headers = [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("authorization", bearer.as_str()),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "confirm_invoice"),
    ];
    let answer = send("POST", &door.server.url("mcp", "/mcp"), &headers, own.to_string().as_bytes());
    assert_eq!(answer_message(&answer)["result"]["content"][0]["text"], "confirmed 77");
    let rounds: Vec<Value> = server.ran().into_iter().filter(|e| e["tool"] == "confirm_invoice").collect();
    assert_eq!(rounds[0]["requestState"], "confirm:77", "{rounds:#?}");
}

/// With a `hold` on the route, the door holds first: a hold that ends undecided gives the
/// 2026 client the `InputRequiredResult`; its retry while the approval is pending is held
/// again, and completes as soon as the approver approves.
#[test]
fn a_hold_holds_first_and_its_end_undecided_asks_by_url() {
    common::policies_dir();
    let dir = temp_dir("mcp-mrtr-hold");
    let server = SdkServer::start(&dir, Sdk::Python);
    // The route's `hold`, written after its policies (the harness's config has one route).
    let door = Door::start_with(&dir, &server, "\"tool-guard\"]\nhold = \"1s\" #", "");
    let url = json!({"elicitation": {"url": {}}});
    let n = 701;
    let started = std::time::Instant::now();
    let first = answer_message(&raw(&door, n, &url, None, &token()));
    assert!(started.elapsed() >= std::time::Duration::from_millis(900), "not held: {:?}", started.elapsed());
    assert_eq!(first["result"]["resultType"], "input_required", "{first}");
    let approval = first["result"]["_meta"]["portcullis/approval"]["id"].as_str().unwrap().to_owned();
    let state = first["result"]["requestState"].as_str().unwrap().to_owned();
    let retry = json!({"requestState": state,
        "inputResponses": {format!("portcullis/approval:{approval}"): {"action": "accept"}}});
    let since = 0;
    let (answer, approved) = std::thread::scope(|scope| {
        let held = scope.spawn(|| answer_message(&raw(&door, n, &url, Some(&retry), &token())));
        std::thread::sleep(std::time::Duration::from_millis(300));
        let approved = common::mcp_sdk::approve_next(&door, since);
        (held.join().unwrap(), approved)
    });
    assert_eq!(approved.as_deref(), Some(approval.as_str()));
    assert_eq!(answer["result"]["content"][0]["text"], format!("deleted {n}"), "{answer}");
    assert_eq!(ran(&server, "delete_invoice", n), 1);
}

/// `portcullis check` (and `serve`, which runs the same code) on the MCP door's approval
/// settings: no keys is a warning, a key that cannot be read or an admin listener on a
/// wildcard address with no page named is an error naming the key to set.
#[test]
fn check_names_the_request_state_keys_and_the_approval_page() {
    common::policies_dir();
    let dir = temp_dir("mcp-mrtr-check");
    let server = SdkServer::start(&dir, Sdk::Python);
    let door = Door::start(&dir, &server);
    let base = std::fs::read_to_string(dir.join("portcullis.toml")).unwrap();
    drop(door);
    let check = |name: &str, text: &str, env: &[(&str, &str)]| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let env: Vec<(&str, &str)> =
            [("PORTCULLIS_TEST_ADMIN_TOKEN", ADMIN_TOKEN), ("PORTCULLIS_TEST_JWT_SECRET", JWT_SECRET)]
                .into_iter()
                .chain(env.iter().copied())
                .collect();
        let out = common::portcullis_cli(&["check", "--quiet", "--config", &path.display().to_string()], &env);
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let with_mcp = |extra: &str| base.replace("allowed_origins = [", &format!("{extra}\nallowed_origins = ["));

    let (ok, stderr) = check("plain.toml", &base, &[]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("request_state_keys is not set"), "{stderr}");

    let keys = "[[server.mcp.request_state_keys]]\nid = \"k2\"\nenv = \"MRTR_KEY_2\"";
    let keyed = format!("{base}\n{keys}\n");
    let (ok, stderr) = check("keyed.toml", &keyed, &[("MRTR_KEY_2", &"ab".repeat(32))]);
    assert!(ok, "{stderr}");
    assert!(!stderr.contains("request_state_keys is not set"), "{stderr}");
    let (ok, stderr) = check("unset.toml", &keyed, &[]);
    assert!(!ok);
    assert!(stderr.contains("request_state_keys") && stderr.contains("MRTR_KEY_2"), "{stderr}");
    let (ok, stderr) = check("short.toml", &keyed, &[("MRTR_KEY_2", "abcd")]);
    assert!(!ok);
    assert!(stderr.contains("k2") && stderr.contains("32"), "{stderr}");
    assert!(!stderr.contains("abcd"), "the key's value is never shown: {stderr}");

    let wildcard =
        base.replacen("[server.admin]\nlisten = \"127.0.0.1:0\"", "[server.admin]\nlisten = \"0.0.0.0:0\"", 1);
    assert_ne!(wildcard, base);
    let (ok, stderr) = check("wildcard.toml", &wildcard, &[]);
    assert!(!ok);
    assert!(stderr.contains("approval_url") && stderr.contains("0.0.0.0"), "{stderr}");
    let named = wildcard.replace(
        "allowed_origins = [",
        "approval_url = \"https://approvals.example/portcullis/{id}\"\nallowed_origins = [",
    );
    let (ok, stderr) = check("named.toml", &named, &[]);
    assert!(ok, "{stderr}");
    let (ok, stderr) = check("bad-url.toml", &with_mcp("approval_url = \"approvals.example\""), &[]);
    assert!(!ok);
    assert!(stderr.contains("[server.mcp] approval_url"), "{stderr}");

    // The plan (without --quiet) says where 2026 clients are sent and with which keys.
    let path = dir.join("named.toml").display().to_string();
    let env = [("PORTCULLIS_TEST_ADMIN_TOKEN", ADMIN_TOKEN), ("PORTCULLIS_TEST_JWT_SECRET", JWT_SECRET)];
    let out = common::portcullis_cli(&["check", "--config", &path], &env);
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        plan.contains("2026 approvals: asked by URL at https://approvals.example/portcullis/{id}; requestState sealed with a per-process key"),
        "{plan}"
    );
    assert!(plan.contains("tool definitions pinned: learnt on first sight"), "{plan}");
}
