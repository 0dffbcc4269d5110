//! `portcullis replay` and `portcullis test` on MCP 2026-07-28 sessions (tests/data/mcp2026/):
//! one recorded through the door with the Python SDK client, and hand-edited variants with
//! Multi Round-Trip retries (one presenting the door's state for another call), a header that
//! disagrees with its body, and one no recorded listing vouches for. The reference
//! tool-guard decides, as the door in front of the recording did.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{TempDir, component, root};
use serde_json::Value;

fn data(name: &str) -> String {
    root().join("tests/data/mcp2026").join(name).display().to_string()
}

/// tool-guard as in the recording's door: agents may call the three tools, destructive
/// ones wait for `billing-approvers` (fiona may decide).
fn config(tmp: &TempDir) -> PathBuf {
    tmp.write(
        "portcullis.toml",
        format!(
            r#"[policies.tool-guard]
module = "{}"

[policies.tool-guard.settings]
approver_group = "billing-approvers"
ttl_seconds = 600
destructive_needs_approval = true

[policies.tool-guard.settings.tools]
agent = ["get_invoice", "delete_invoice", "invoices_in_region"]

[[routes]]
name = "mcp"
paths = ["/mcp"]
policies = ["tool-guard"]

[approvals]
store = "{}"

[approvals.groups.billing-approvers]
ids = ["fiona"]
"#,
            component("tool-guard").display(),
            tmp.path().join("approvals.sqlite").display()
        ),
    )
}

fn replay(config: &Path, files: &[&str], extra: &[&str]) -> Output {
    let config = config.display().to_string();
    let files: Vec<String> = files.iter().map(|f| data(f)).collect();
    let mut args = vec!["replay", "--config", &config, "--as", "agent:invoice-bot", "--on-behalf-of", "alice"];
    args.extend(extra);
    args.extend(files.iter().map(String::as_str));
    common::portcullis_cli(&args, &[])
}

fn report(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    })
}

/// `(name, decision, mcp)` per entry.
fn entries(report: &Value) -> Vec<(String, String, Value)> {
    report["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let decision = e["decision"].as_str().map_or_else(|| format!("error: {}", e["error"]), str::to_owned);
            (e["name"].as_str().unwrap().to_owned(), decision, e.get("mcp").cloned().unwrap_or(Value::Null))
        })
        .collect()
}

#[test]
fn a_recorded_2026_session_replays_with_its_generation() {
    let tmp = TempDir::new("replay-mcp2026");
    let out = replay(&config(&tmp), &["session-2026.jsonl"], &["--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = report(&out);
    let got: Vec<(String, String, String)> = entries(&report)
        .into_iter()
        .map(|(name, decision, mcp)| (name, decision, mcp["generation"].as_str().unwrap_or("none").to_owned()))
        .collect();
    let want = [
        ("session-2026.jsonl:2", "allow"),
        ("session-2026.jsonl:4", "allow"),
        ("session-2026.jsonl:6", "allow"),
        ("session-2026.jsonl:8", "require-approval"),
    ];
    let want: Vec<(String, String, String)> =
        want.iter().map(|(n, d)| ((*n).to_owned(), (*d).to_owned(), "2026-07-28".to_owned())).collect();
    assert_eq!(got, want);
    assert_eq!(report["summary"]["mcp"]["generations"], serde_json::json!({"2026-07-28": 4}));
    assert_eq!(report["summary"]["mcp"]["mrtr_retries"], 0);
    // The text report says it too.
    let text = replay(&config(&tmp), &["session-2026.jsonl"], &[]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("MCP: entries by protocol generation: 4 2026-07-28; 0 Multi Round-Trip retries"), "{text}");
}

#[test]
fn a_2025_session_is_counted_as_the_older_generation() {
    let tmp = TempDir::new("replay-mcp2025");
    let session = tmp.write(
        "session-2025.jsonl",
        [
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25"}}"#,
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get_invoice","arguments":{"invoice_id":7}}}"#,
            r#"{"jsonrpc":"2.0","id":2,"result":{"content":[],"isError":false}}"#,
        ]
        .join("\n"),
    );
    let config = config(&tmp).display().to_string();
    let session = session.display().to_string();
    let out = common::portcullis_cli(
        &["replay", "--config", &config, "--as", "agent:invoice-bot", "--format", "json", &session],
        &[],
    );
    let report = report(&out);
    let got: Vec<(String, String)> = entries(&report)
        .into_iter()
        .map(|(_, d, mcp)| (d, mcp["generation"].as_str().unwrap_or("none").to_owned()))
        .collect();
    // No tools/list was recorded: the call carries MCP's cautious defaults (destructive).
    assert_eq!(got, [("allow".to_owned(), "2025".to_owned()), ("require-approval".to_owned(), "2025".to_owned())]);
    assert_eq!(report["summary"]["mcp"]["generations"], serde_json::json!({"2025": 2}));
}

#[test]
fn multi_round_trip_retries_are_paired_and_the_doors_carries_its_approval() {
    let tmp = TempDir::new("replay-mcp2026-mrtr");
    let config = config(&tmp);
    let out = replay(
        &config,
        &["session-2026-mrtr.jsonl"],
        &["--approve-as", "billing-approvers=user:fiona", "--format", "json"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = report(&out);
    let entries = entries(&report);
    let names: Vec<&str> = entries.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "session-2026-mrtr.jsonl:4",
            "session-2026-mrtr.jsonl:6",
            "session-2026-mrtr.jsonl:8",
            "session-2026-mrtr.jsonl:10",
            "session-2026-mrtr:12 retry-of:10",
            "session-2026-mrtr.jsonl:14",
            "session-2026-mrtr:16 retry-of:14",
        ]
    );
    // The held call and its retry: the retry carries the approval the door's state named,
    // and is decided as the door decides a retry before redeeming it (held again, answered
    // by the script, forwarded).
    let (_, decision, mcp) = &entries[4];
    assert_eq!(decision, "require-approval");
    assert_eq!(
        mcp["retry"],
        serde_json::json!({"of_line": 10, "state": "door", "approval": "apr_0mct7cts3gsxrh247fgs6z72w0"})
    );
    let all = report["entries"].as_array().unwrap();
    assert_eq!(all[4]["approval"]["outcome"], "forwarded", "{}", all[4]);
    assert!(all[3].get("mcp").unwrap().get("retry").is_none());
    // The server's own state: an ordinary call, its InputRequiredResult the server's answer.
    assert_eq!(entries[6].1, "allow");
    assert_eq!(entries[6].2["retry"], serde_json::json!({"of_line": 14, "state": "server"}));
    assert!(!all[5]["passage"]["response"].is_null(), "{}", all[5]["passage"]);
    let mcp = &report["summary"]["mcp"];
    assert_eq!((mcp["mrtr_retries"].as_u64(), mcp["approval_retries"].as_u64()), (Some(2), Some(1)), "{mcp}");
    assert_eq!(mcp["generations"], serde_json::json!({"2026-07-28": 7}));
}

#[test]
fn a_header_that_disagrees_with_its_body_is_an_entry_error_naming_its_line() {
    let tmp = TempDir::new("replay-mcp2026-mismatch");
    let out = replay(&config(&tmp), &["session-2026-mismatch.jsonl"], &["--format", "json"]);
    assert_eq!(out.status.code(), Some(3), "an unreadable entry: {}", String::from_utf8_lossy(&out.stderr));
    let report = report(&out);
    let entries = entries(&report);
    assert_eq!(entries.len(), 3, "{entries:?}");
    let (name, error, _) = &entries[1];
    assert_eq!(name, "session-2026-mismatch.jsonl:6");
    for part in [
        "line 6: headers: Header mismatch: Mcp-Param-Region header value 'eu-west1' does not match body value 'us-west1'",
        "HeaderMismatch, JSON-RPC -32020",
    ] {
        assert!(error.contains(part), "{error}");
    }
    assert_eq!(entries[2].1, "allow", "the next call still replays");
}

#[test]
fn a_param_header_no_recorded_listing_vouches_for_is_an_entry_error_naming_its_line() {
    let tmp = TempDir::new("replay-mcp2026-unlisted");
    let out = replay(&config(&tmp), &["session-2026-unlisted.jsonl"], &["--format", "json"]);
    assert_eq!(out.status.code(), Some(3), "an unreadable entry: {}", String::from_utf8_lossy(&out.stderr));
    let entries = entries(&report(&out));
    assert_eq!(entries.len(), 2, "{entries:?}");
    let (name, error, _) = &entries[0];
    assert_eq!(name, "session-2026-unlisted.jsonl:4");
    for part in [
        "line 4: headers: Header mismatch: mcp-param-region cannot be checked: the door has no definition (inputSchema) \
         for this tool",
        "HeaderMismatch, JSON-RPC -32020",
    ] {
        assert!(error.contains(part), "{error}");
    }
    // The call without such a header replays (its tool unlisted: MCP's cautious defaults).
    assert_eq!((entries[1].0.as_str(), entries[1].1.as_str()), ("session-2026-unlisted.jsonl:6", "require-approval"));
}

#[test]
fn a_retry_presenting_the_doors_state_for_another_call_is_an_entry_error_naming_both_lines() {
    let tmp = TempDir::new("replay-mcp2026-other");
    let out = replay(
        &config(&tmp),
        &["session-2026-mrtr-other.jsonl"],
        &["--approve-as", "billing-approvers=user:fiona", "--format", "json"],
    );
    assert_eq!(out.status.code(), Some(3), "an unreadable entry: {}", String::from_utf8_lossy(&out.stderr));
    let entries = entries(&report(&out));
    let names: Vec<&str> = entries.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names.len(), 7, "{names:?}");
    let (name, error, _) = &entries[4];
    assert_eq!(name, "session-2026-mrtr-other.jsonl:12");
    for part in [
        "line 12: params.requestState: the retry on line 12 is not the call the door's requestState was issued for \
         (the call on line 10)",
        "request-state-invalid: other-call",
    ] {
        assert!(error.contains(part), "{error}");
    }
    // The held call itself, and the server's own retry after it, still replay.
    assert_eq!(entries[3].1, "require-approval");
    assert_eq!(entries[6].1, "allow");
}

#[test]
fn a_test_file_asserts_the_decisions_of_a_2026_session() {
    let tmp = TempDir::new("replay-mcp2026-test");
    config(&tmp);
    let head = format!(
        "config = \"portcullis.toml\"\ntraffic = [{:?}]\napprove_as = [\"billing-approvers=user:fiona\"]\n\n[principal]\nkind \
         = \"agent\"\nid = \"invoice-bot\"\non_behalf_of = \"alice\"\n",
        data("session-2026-mrtr.jsonl")
    );
    let cases = format!(
        "{head}
[[case]]
name = \"reads are allowed\"
select = {{ operation = \"get_invoice\" }}
expect = {{ decision = \"allow\" }}

[[case]]
name = \"the delete and its MRTR retry wait for billing, and fiona lets them through\"
select = {{ operation = \"delete_invoice\" }}
expect = {{ decision = \"require-approval\", approver_group = \"billing-approvers\", approval = \"forwarded\", approved_by = \"user:fiona\" }}
"
    );
    let file = tmp.write("mcp2026.toml", cases);
    let out = common::portcullis_cli(&["test", &file.display().to_string()], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("(2 entries)"), "the held call and its retry: {stdout}");
    assert!(stdout.ends_with("2 passed, 0 failed\n"), "{stdout}");
}
