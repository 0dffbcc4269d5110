//! The MCP conversions over arbitrary bytes: recorded sessions, and each line as a
//! JSON-RPC message the front door would receive.
//!
//! Must never panic, and an in-memory session read never fails as a whole; reading through
//! a tiny buffer gives the same items. For every request the door would evaluate, writing
//! its (unredacted) body back into the message must work and give the same call again (same
//! method, operation and body, the approval id gone from `_meta`); the normalised request
//! carries no header a caller could have forged (a tool call carries MCP's default
//! annotations, none being known). For every answer, writing its body back
//! gives the same message. The strict parser the door uses agrees with serde_json except
//! that it refuses repeated keys, and its value survives being written out and read again.
#![no_main]

use std::io::{BufReader, Cursor};
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use portcullis_host::adapters::mcp::{
    self, APPROVAL_META_KEY, MCP_METHOD_HEADER, McpError, Message, PROBE_HEADER, call_of, classify, parse_json_strict,
    parse_message, request_for_call,
};
use portcullis_host::adapters::traffic::{Format, TrafficItem};
use portcullis_host::exchange::{Body, Request};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let source = Path::new("fuzz.jsonl");
    let mut items: Vec<TrafficItem> = Vec::new();
    let summary = mcp::read_mcp_jsonl(Cursor::new(data), source, |item| items.push(item)).expect("in-memory read failed");
    assert_eq!(summary.format, Format::Mcp);
    assert_eq!(summary.items, items.len());
    let mut small: Vec<TrafficItem> = Vec::new();
    mcp::read_mcp_jsonl(BufReader::with_capacity(5, Cursor::new(data)), source, |item| small.push(item)).unwrap();
    assert_eq!(items, small);
    for item in &items {
        if let Ok(exchange) = &item.result {
            assert_eq!(exchange.request.method, "CALL");
            assert!(exchange.request.operation.is_some());
        }
    }

    let http = Request {
        path: "/mcp".into(),
        headers: vec![("mcp-annotation-readonlyhint".into(), "true".into()), ("mcp-probe".into(), "x".into())],
        ..Request::default()
    };
    for line in data.split(|b| *b == b'\n') {
        // The strict parser reads what serde_json reads, refusing only repeated keys; what it
        // reads, written out and read again, is the same value (the door forwards that).
        match (parse_json_strict(line), serde_json::from_slice::<Value>(line)) {
            (Ok(strict), Ok(lenient)) => {
                assert_eq!(strict, lenient);
                let again = parse_json_strict(&serde_json::to_vec(&strict).unwrap()).expect("re-serialised JSON reads");
                assert!(close(&again, &strict), "{strict} became {again}");
            }
            (Err(McpError::DuplicateKey { .. }), Ok(_)) | (Err(_), Err(_)) => {}
            (strict, lenient) => panic!("strict {strict:?} but serde_json {lenient:?}"),
        }
        let Ok((mut message, kind)) = parse_message(line) else { continue };
        match kind {
            Message::Request { method, params, .. } => {
                let Ok(call) = call_of(&method, params.as_ref()) else { continue };
                let request = request_for_call(&http, &call, None);
                assert_eq!(request.operation.as_deref(), Some(call.operation.as_str()));
                // Only the host's own headers: the method, and for a tool call the annotations
                // with MCP's defaults (none are known here), never the forged ones.
                let names: Vec<&str> = request.headers.iter().map(|(n, _)| n.as_str()).collect();
                assert_eq!(names.first(), Some(&MCP_METHOD_HEADER), "forged headers must not survive");
                assert_eq!(request.header(PROBE_HEADER), None, "forged headers must not survive");
                if call.method == "tools/call" {
                    assert_eq!(names.len(), 6, "{names:?}");
                    assert_eq!(request.header("mcp-annotation-readonlyhint"), Some("false"));
                    assert_eq!(request.header("mcp-annotation-destructivehint"), Some("true"));
                } else {
                    assert_eq!(names, [MCP_METHOD_HEADER], "forged headers must not survive");
                }
                let body = call.body.as_ref().map(Body::json);
                mcp::with_body(&mut message, &call, body.as_ref()).expect("an unredacted body must go back");
                let Ok(Message::Request { method: again_method, params: again, .. }) = classify(&message) else {
                    panic!("the rewritten message is no longer a request: {message}");
                };
                assert_eq!(again_method, method);
                let again = call_of(&method, again.as_ref()).expect("the rewritten call must read");
                assert_eq!(again.operation, call.operation);
                assert!(again.approval_id.is_none(), "the approval id must not reach the server");
                assert!(same(&again.body, &call.body), "{:?} became {:?}", call.body, again.body);
                assert!(message.pointer(&format!("/params/_meta/{}", APPROVAL_META_KEY.replace('/', "~1"))).is_none());
            }
            Message::Response { .. } => {
                let before = message.clone();
                let response = mcp::response_of(&message);
                if mcp::with_result(&mut message, response.body.as_ref()).is_ok() {
                    assert!(close(&message, &before), "{before} became {message}");
                }
            }
            Message::Notification { .. } => {}
        }
    }
});

fn same(a: &Option<Value>, b: &Option<Value>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => close(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// JSON equality with floats compared to a relative 1e-12 (a value written and read again
/// may differ in its last bits).
fn close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x != y => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| close(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|((kx, vx), (ky, vy))| kx == ky && close(vx, vy))
        }
        _ => a == b,
    }
}
