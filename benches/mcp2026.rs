//! What the MCP door's 2026-07-28 work costs per message, against a baseline measured in the
//! same run: strictly parsing the same `tools/call` message (`adapters::mcp::parse_message`,
//! what the door does to every message anyway). Measured: checking the 2026 request headers
//! against the body with an `x-mcp-header` schema (`mcp_headers::check_call`); trimming what
//! the server gets to what the policies judged (`keep_known_params`); sealing and opening
//! the approval `requestState` (HMAC-SHA256); and, per `tools/list` answer of 20 tools,
//! digesting each definition for its pin, and running the content heuristics on each, beside
//! parsing that answer. After criterion finishes, the medians are printed as ratios to the parse.
//!
//!   cargo bench --bench mcp2026

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;

use criterion::Criterion;
use http::{HeaderMap, HeaderName, HeaderValue};
use portcullis_host::adapters::mcp::{self, Message};
use portcullis_host::adapters::mcp_headers::check_call;
use portcullis_host::adapters::mcp_pins::{scan, tool_digest};
use portcullis_host::approval::request_state::{KeyRing, StatePayload, StatePrincipal};
use portcullis_host::exchange::PrincipalKind;
use serde_json::{Value, json};

const GROUP: &str = "mcp2026";

/// A 2026-07-28 `tools/call` as the TypeScript and Python SDKs send it.
fn call_message() -> String {
    json!({"jsonrpc": "2.0", "id": 42, "method": "tools/call", "params": {
        "name": "invoices_in_region", "arguments": {"region": "eu-west", "status": "open", "limit": 50},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"url": {}}},
                  "io.modelcontextprotocol/clientInfo": {"name": "agent", "version": "2.4.0"},
                  "progressToken": 7}}})
    .to_string()
}

/// The tool's input schema, `region` mirrored into `Mcp-Param-Region`.
fn schema() -> Value {
    json!({"type": "object", "properties": {
        "region": {"type": "string", "x-mcp-header": "Region"},
        "status": {"type": "string"}, "limit": {"type": "integer"}}, "required": ["region"]})
}

fn headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "invoices_in_region"),
        ("mcp-param-region", "eu-west"),
    ] {
        headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    headers
}

/// A `tools/list` result of 20 tools with descriptions, schemas and annotations.
fn listing() -> String {
    let tools: Vec<Value> = (0..20)
        .map(|i| {
            json!({"name": format!("tool_{i}"),
                   "description": format!("Returns the invoices of customer number {i}, newest first, at most `limit` of them."),
                   "inputSchema": {"type": "object", "properties": {
                       "customer_id": {"type": "integer", "description": "The customer."},
                       "limit": {"type": "integer", "minimum": 1, "maximum": 100}}, "required": ["customer_id"]},
                   "annotations": {"readOnlyHint": i % 3 != 0, "destructiveHint": i % 3 == 0}})
        })
        .collect();
    json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": tools, "ttlMs": 60000, "cacheScope": "private"}}).to_string()
}

fn benches(c: &mut Criterion) {
    let text = call_message();
    let (message, kind) = mcp::parse_message(text.as_bytes()).unwrap();
    let Message::Request { method, params, .. } = kind else { panic!("a request") };
    let call = mcp::call_of(&method, params.as_ref()).unwrap();
    let (schema, headers) = (schema(), headers());
    let ring = KeyRing::ephemeral().unwrap();
    let principal =
        StatePrincipal { kind: PrincipalKind::Agent, id: "sso:bot".into(), on_behalf_of: Some("ada".into()) };
    let payload = StatePayload {
        approval_id: "apr_c3j3c6628a6mqhdbnk4y47sqv7".into(),
        principal: principal.clone(),
        digest: call.digest(),
        expires_ms: u64::MAX / 2,
        inner: None,
    };
    let sealed = ring.seal(&payload).unwrap();
    let listed = listing();
    let (list, _) = mcp::parse_message(listed.as_bytes()).unwrap();

    let mut group = c.benchmark_group(GROUP);
    group.bench_function("parse_call", |b| b.iter(|| mcp::parse_message(black_box(text.as_bytes())).unwrap()));
    group.bench_function("check_call_headers", |b| {
        b.iter(|| check_call(black_box(&headers), black_box(&message), Some(&schema)).unwrap());
    });
    group.bench_function("keep_known_params", |b| {
        b.iter_batched(
            || message.clone(),
            |mut m| mcp::keep_known_params(&mut m, &call, &[]),
            criterion::BatchSize::SmallInput,
        );
    });
    group.bench_function("seal_state", |b| b.iter(|| ring.seal(black_box(&payload)).unwrap()));
    group.bench_function("open_state", |b| {
        b.iter(|| ring.open(black_box(&sealed), &principal, &payload.digest, 0).unwrap());
    });
    group.bench_function("parse_listing_20", |b| b.iter(|| mcp::parse_message(black_box(listed.as_bytes())).unwrap()));
    let tools = list["result"]["tools"].as_array().unwrap();
    group.bench_function("pin_digest_20", |b| b.iter(|| tools.iter().map(tool_digest).collect::<Vec<_>>()));
    group.bench_function("scan_20", |b| b.iter(|| tools.iter().map(|t| scan::scan_tool(t).len()).sum::<usize>()));
    group.finish();
}

fn print_ratios() {
    let Some(base) = common::criterion_median_ns(GROUP, "parse_call") else { return };
    println!("\n{GROUP}: medians of this run, as ratios to parsing the same tools/call ({base:.1} ns)");
    for id in [
        "parse_call",
        "check_call_headers",
        "keep_known_params",
        "seal_state",
        "open_state",
        "parse_listing_20",
        "pin_digest_20",
        "scan_20",
    ] {
        if let Some(ns) = common::criterion_median_ns(GROUP, id) {
            println!("  {id:<20} {ns:>10.1} ns  {:>7.2}×", ns / base);
        }
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    benches(&mut criterion);
    criterion.final_summary();
    // In `cargo test --benches` mode each function ran once and there is nothing to compare.
    if !std::env::args().any(|a| a == "--test") {
        print_ratios();
    }
}
