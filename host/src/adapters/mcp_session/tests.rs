use std::path::Path;

use serde_json::json;

use super::*;

fn read(lines: &[&str]) -> (Summary, Vec<TrafficItem>) {
    let text = lines.join("\n");
    let mut items = Vec::new();
    let summary = read_mcp_jsonl(text.as_bytes(), Path::new("rec/s.jsonl"), |item| items.push(item)).unwrap();
    (summary, items)
}

fn errors(items: &[TrafficItem]) -> Vec<String> {
    items.iter().filter_map(|i| i.result.as_ref().err()).map(ToString::to_string).collect()
}

fn exchanges(items: &[TrafficItem]) -> Vec<&Exchange> {
    items.iter().filter_map(|i| i.result.as_ref().ok()).collect()
}

const LIST: &str = r#"{"headers":{"mcp-protocol-version":"2026-07-28","mcp-method":"tools/list"},"message":{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}}"#;
const LISTED: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"in_region","annotations":{"readOnlyHint":true},"inputSchema":{"type":"object","properties":{"region":{"type":"string","x-mcp-header":"Region"}}}},{"name":"del","annotations":{"destructiveHint":true}}]}}"#;

fn modern_call(id: u32, tool: &str, arguments: &Value, headers: &Value, extra: &Value) -> String {
    let mut params = json!({"name": tool, "arguments": arguments,
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}});
    for (k, v) in extra.as_object().unwrap() {
        params[k] = v.clone();
    }
    let mut all = json!({"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": tool});
    for (k, v) in headers.as_object().unwrap() {
        all[k] = v.clone();
    }
    json!({"headers": all, "message": {"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}})
        .to_string()
}

#[test]
fn a_2026_line_is_checked_and_policies_see_the_checked_params() {
    let call = modern_call(
        2,
        "in_region",
        &json!({"region": "us-west1"}),
        &json!({"mcp-param-region": "us-west1"}),
        &json!({}),
    );
    let answer = r#"{"jsonrpc":"2.0","id":2,"result":{"content":[],"resultType":"complete"}}"#;
    let wrong = modern_call(
        3,
        "in_region",
        &json!({"region": "us-west1"}),
        &json!({"mcp-param-region": "eu-west1"}),
        &json!({}),
    );
    let renamed = modern_call(
        4,
        "in_region",
        &json!({"region": "us-west1"}),
        &json!({"mcp-name": "del", "mcp-param-region": "us-west1"}),
        &json!({}),
    );
    let (summary, items) = read(&[LIST, LISTED, &call, answer, &wrong, &renamed]);
    assert_eq!((summary.items, summary.errors), (4, 2));
    let ok = exchanges(&items);
    let request = &ok[1].request;
    assert_eq!(request.operation.as_deref(), Some("in_region"));
    assert_eq!(request.header("mcp-param-region"), Some("us-west1"));
    assert_eq!(request.header("mcp-name"), None, "the host sets only mcp-method");
    assert_eq!(request.header("mcp-annotation-readonlyhint"), Some("true"));
    assert_eq!(recorded_generation(request), Some(Generation::Modern));
    assert_eq!(recorded_generation(&ok[0].request), Some(Generation::Modern));
    let errors = errors(&items);
    assert!(
        errors[0].contains("line 5: headers: Header mismatch: Mcp-Param-Region header value 'eu-west1'"),
        "{}",
        errors[0]
    );
    assert!(errors[0].contains("HeaderMismatch, JSON-RPC -32020"), "{}", errors[0]);
    assert!(errors[1].contains("line 6: headers: Header mismatch: Mcp-Name"), "{}", errors[1]);
}

#[test]
fn a_2026_message_without_headers_takes_its_generation_from_meta() {
    let bare = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
    let future = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"t","_meta":{"io.modelcontextprotocol/protocolVersion":"2099-01-01"}}}"#;
    let forged = r#"{"headers":{"mcp-param-region":"x"},"message":{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"t"}}}"#;
    let (_, items) = read(&[bare, future, forged]);
    let ok = exchanges(&items);
    assert_eq!(ok[0].request.header("mcp-protocol-version"), Some("2026-07-28"));
    assert_eq!(recorded_generation(&ok[0].request), Some(Generation::Modern));
    // A 2025 line with a header of its own: never shown to policies.
    assert_eq!(ok[1].request.header("mcp-param-region"), None);
    assert_eq!(recorded_generation(&ok[1].request), Some(Generation::Legacy));
    let errors = errors(&items);
    assert!(errors[0].contains("line 2: params._meta: Unsupported protocol version: '2099-01-01'"), "{}", errors[0]);
}

/// The door's state for approval `apr_7` on a call of `del` with `arguments` (MAC not real:
/// replay does not verify it; expired and for another principal than any replay's `--as`).
fn door_state(arguments: &Value) -> String {
    let digest = call_of("tools/call", Some(&json!({"name": "del", "arguments": arguments}))).unwrap().digest();
    let payload = json!({"approval_id": "apr_7", "principal": {"kind": "agent", "id": "b"}, "digest": digest,
        "expires_ms": 1});
    format!("pcs1.k1.{}.bWFj", URL_SAFE_NO_PAD.encode(payload.to_string()))
}

#[test]
fn a_retry_that_is_another_call_than_its_doors_state_is_an_entry_error_naming_both_lines() {
    let state = door_state(&json!({"id": 4}));
    let del = modern_call(2, "del", &json!({"id": 4}), &json!({}), &json!({}));
    let held = json!({"jsonrpc":"2.0","id":2,"result":{"resultType":"input_required","inputRequests":{},"requestState": state}}).to_string();
    let other = modern_call(3, "del", &json!({"id": 5}), &json!({}), &json!({"requestState": state}));
    let same = modern_call(4, "del", &json!({"id": 4}), &json!({}), &json!({"requestState": state}));
    let unrecorded = door_state(&json!({"id": 9}));
    let lost = modern_call(5, "del", &json!({"id": 4}), &json!({}), &json!({"requestState": unrecorded}));
    let (summary, items) = read(&[LIST, LISTED, &del, &held, &other, &same, &lost]);
    assert_eq!((summary.items, summary.errors), (5, 2), "{:?}", errors(&items));
    let errors = errors(&items);
    assert!(
        errors[0].contains(
            "line 5: params.requestState: the retry on line 5 is not the call the door's requestState was issued for \
             (the call on line 3)"
        ),
        "{}",
        errors[0]
    );
    assert!(errors[0].contains("other-call"), "{}", errors[0]);
    assert!(errors[1].contains("line 7: params.requestState: the retry on line 7"), "{}", errors[1]);
    assert!(errors[1].contains("(a call that was not recorded)"), "{}", errors[1]);
    // The same call passes, carrying its approval.
    let ok = exchanges(&items);
    assert_eq!(ok[2].request.id, "s:6 retry-of:3");
    assert_eq!(ok[2].request.header("portcullis-approval"), Some("apr_7"));
}

#[test]
fn a_param_header_no_recorded_schema_vouches_for_is_an_entry_error() {
    let unlisted =
        modern_call(1, "in_region", &json!({"region": "eu"}), &json!({"mcp-param-region": "eu"}), &json!({}));
    let plain = modern_call(2, "in_region", &json!({"region": "eu"}), &json!({}), &json!({}));
    // `del` is listed without an inputSchema.
    let schemaless = modern_call(5, "del", &json!({"id": 1}), &json!({"mcp-param-id": "1"}), &json!({}));
    let (summary, items) = read(&[&unlisted, &plain, LIST, LISTED, &schemaless]);
    assert_eq!((summary.items, summary.errors), (4, 2), "{:?}", errors(&items));
    let errors = errors(&items);
    for (error, line) in errors.iter().zip([1, 5]) {
        assert!(error.contains(&format!("line {line}: headers: Header mismatch: mcp-param-")), "{error}");
        assert!(error.contains("cannot be checked") && error.contains("HeaderMismatch, JSON-RPC -32020"), "{error}");
    }
    let ok = exchanges(&items);
    assert_eq!(ok[1].request.id, "s:2", "a call without the header still reads");
    assert_eq!(ok[1].request.header("mcp-param-region"), None);
}

#[test]
fn a_retry_with_the_doors_state_carries_its_approval_and_a_servers_state_does_not() {
    let door_state = door_state(&json!({"id": 4}));
    let del = modern_call(2, "del", &json!({"id": 4}), &json!({}), &json!({}));
    let held = json!({"jsonrpc":"2.0","id":2,"result":{"resultType":"input_required","inputRequests":{"approval":{"method":"elicitation/create","params":{"mode":"url"}}},"requestState": door_state}}).to_string();
    let retry = modern_call(
        3,
        "del",
        &json!({"id": 4}),
        &json!({}),
        &json!({"requestState": door_state, "inputResponses": {"approval": {"action": "accept"}}}),
    );
    let done = r#"{"jsonrpc":"2.0","id":3,"result":{"content":[],"resultType":"complete"}}"#;
    let ask = modern_call(4, "in_region", &json!({"region": "eu"}), &json!({"mcp-param-region": "eu"}), &json!({}));
    let asked = r#"{"jsonrpc":"2.0","id":4,"result":{"resultType":"input_required","inputRequests":{"q":{"method":"elicitation/create","params":{}}},"requestState":"server-own"}}"#;
    let again = modern_call(
        5,
        "in_region",
        &json!({"region": "eu"}),
        &json!({"mcp-param-region": "eu"}),
        &json!({"requestState": "server-own", "inputResponses": {}}),
    );
    let answered = r#"{"jsonrpc":"2.0","id":5,"result":{"content":[],"resultType":"complete"}}"#;
    let lost = modern_call(6, "del", &json!({"id": 4}), &json!({}), &json!({"requestState": "pcs1.broken"}));
    let (summary, items) = read(&[LIST, LISTED, &del, &held, &retry, done, &ask, asked, &again, answered, &lost]);
    assert_eq!((summary.items, summary.errors), (6, 1), "{:?}", errors(&items));
    let ok = exchanges(&items);
    // The held call: the door answered, so no response; not a retry.
    assert_eq!(ok[1].request.id, "s:3");
    assert!(ok[1].response.is_none());
    assert_eq!(recorded_retry(&ok[1].request), None);
    // Its retry: paired, and carrying the approval.
    assert_eq!(ok[2].request.id, "s:5 retry-of:3");
    assert_eq!(ok[2].request.header("portcullis-approval"), Some("apr_7"));
    assert_eq!(
        recorded_retry(&ok[2].request),
        Some(RecordedRetry { of_line: Some(3), approval: Some("apr_7".into()) })
    );
    assert_eq!(ok[2].response.as_ref().unwrap().status, 200);
    // The server's own state: its answer is the server's, the retry an ordinary call.
    assert!(ok[3].response.is_some());
    assert_eq!(recorded_retry(&ok[4].request), Some(RecordedRetry { of_line: Some(7), approval: None }));
    assert_eq!(ok[4].request.header("portcullis-approval"), None);
    assert_eq!(ok[4].request.header("mcp-param-region"), Some("eu"));
    let errors = errors(&items);
    assert!(errors[0].contains("line 11: params.requestState: the door's requestState"), "{}", errors[0]);
}

#[test]
fn a_recorded_session_pairs_requests_with_answers() {
    let text = [
        r#"{"mcp_endpoint": "https://crm.test/mcp", "headers": {"X-Api-Key": "k"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25"}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        "# the agent lists the tools",
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
        r#"{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"del","annotations":{"destructiveHint":true}}]}}"#,
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"del","arguments":{"id":4}}}"#,
        r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"never-answered"}}"#,
        r#"{"jsonrpc":"2.0","id":3,"result":{"content":[],"isError":false}}"#,
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{}}"#,
        "not json",
    ]
    .join("\n");
    let mut items = Vec::new();
    let summary = read_mcp_jsonl(text.as_bytes(), Path::new("rec/session.jsonl"), |item| items.push(item)).unwrap();
    assert_eq!(summary.format, Format::Mcp);
    assert_eq!((summary.items, summary.errors), (6, 2));
    let ok: Vec<&Exchange> = items.iter().filter_map(|i| i.result.as_ref().ok()).collect();
    let ops: Vec<&str> = ok.iter().map(|e| e.request.operation.as_deref().unwrap()).collect();
    assert_eq!(ops, ["initialize", "tools/list", "del", "never-answered"]);
    let del = ok[2];
    assert_eq!(
        (del.request.method.as_str(), del.request.authority.as_str(), del.request.path.as_str()),
        ("CALL", "crm.test", "/mcp")
    );
    assert_eq!(del.request.id, "session:8");
    assert_eq!(del.request.header("x-api-key"), Some("k"));
    assert_eq!(del.request.header("mcp-annotation-destructivehint"), Some("true"));
    assert_eq!(del.response.as_ref().unwrap().status, 200);
    assert!(ok[3].response.is_none());
    let errors: Vec<String> = items.iter().filter_map(|i| i.result.as_ref().err()).map(ToString::to_string).collect();
    assert!(errors[0].contains("line 11: params: `tools/call`: params.name must be a string"), "{}", errors[0]);
    assert!(errors[1].contains("line 12: not valid JSON"), "{}", errors[1]);
}

#[test]
fn a_recorded_call_without_an_id_or_with_a_repeated_key_is_an_entry_error() {
    let text = [
        r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"del","arguments":{"id":4}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"del","name":"get"}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    ]
    .join("\n");
    let mut items = Vec::new();
    let summary = read_mcp_jsonl(text.as_bytes(), Path::new("s.jsonl"), |item| items.push(item)).unwrap();
    assert_eq!((summary.items, summary.errors), (2, 2));
    let errors: Vec<String> = items.iter().filter_map(|i| i.result.as_ref().err()).map(ToString::to_string).collect();
    assert!(errors[0].contains("line 1") && errors[0].contains("without an `id`"), "{}", errors[0]);
    assert!(errors[1].contains("line 2") && errors[1].contains("`name` twice"), "{}", errors[1]);
}

#[test]
fn session_lines_are_recognised() {
    assert!(is_session_line(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#));
    assert!(is_session_line(br#"{"mcp_endpoint":"http://x/mcp"}"#));
    assert!(is_session_line(br#"{"headers":{},"message":{"jsonrpc":"2.0","id":1,"method":"ping"}}"#));
    assert!(!is_session_line(br#"{"message":"hello"}"#));
    assert!(!is_session_line(br#"{"request":{"url":"/a"}}"#));
    assert!(!is_session_line(b"{"));
}
