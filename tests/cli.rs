//! The `portcullis` command as a user runs it: eval, inspect, and its errors.

mod common;

use std::process::Output;

use common::{TempDir, component};

fn portcullis(args: &[&str]) -> Output {
    common::portcullis_cli(args, &[])
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn eval_with_config_prints_both_phases_as_json() {
    let out = portcullis(&[
        "eval",
        "--config",
        "examples/portcullis.toml",
        "--request",
        "examples/requests/06-user-lists-customers.json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON output");
    assert_eq!(report["request"]["verdict"]["decision"]["decision"], "allow");
    assert_eq!(report["response"]["verdict"]["decision"]["decision"], "redact");
    assert_eq!(report["principal"]["id"], "bob");
    let body = &report["returned_response"]["body"]["json"];
    assert_eq!(body["customers"][1]["email"], "***", "{report:#}");
}

#[test]
fn eval_single_policy_with_settings_and_separate_response() {
    let dir = TempDir::new("cli");
    let request = dir.write(
        "req.json",
        r#"{"method": "DELETE", "url": "https://a.test/x/1",
        "principal": {"kind": "agent", "id": "bot", "on_behalf_of": "u"}}"#,
    );
    let response = dir.write("resp.json", r#"{"status": 204}"#);
    let policy = component("agent-guard");
    let out = portcullis(&[
        "eval",
        "--policy",
        policy.to_str().unwrap(),
        "--settings",
        r#"{"approver_group": "ops"}"#,
        "--request",
        request.to_str().unwrap(),
        "--response",
        response.to_str().unwrap(),
        "--format",
        "text",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("deny 403 agent-delete-forbidden"), "{text}");
    assert!(text.contains("[by agent-guard]"), "{text}");
}

#[test]
fn eval_reports_bad_input_with_the_file_and_field() {
    let dir = TempDir::new("cli");
    let request = dir.write("req.json", r#"{"method": "GET", "heders": {}}"#);
    let out = portcullis(&["eval", "--config", "examples/portcullis.toml", "--request", request.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("req.json") && err.contains("heders"), "{err}");

    let out = portcullis(&["eval", "--policy", "nope.wasm", "--request", request.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nope.wasm"), "{}", stderr(&out));
}

#[test]
fn eval_reports_a_broken_config_with_its_line() {
    let dir = TempDir::new("cli");
    let config = dir.write(
        "portcullis.toml",
        "[policies.a]\nmodule = \"a.wasm\"\n\n[[routes]]\npolicies = [\"a\"]\nmethod = [\"GET\"]\n",
    );
    let out = portcullis(&[
        "eval",
        "--config",
        config.to_str().unwrap(),
        "--request",
        "examples/requests/01-user-reads-invoice.json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("portcullis.toml") && err.contains("line 6") && err.contains("method"), "{err}");
}

#[test]
fn inspect_prints_what_the_component_says() {
    let path = component("pii-redact");
    let out = portcullis(&["inspect", path.to_str().unwrap(), "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(info["name"], "pii-redact");
    assert_eq!(info["contract"], "portcullis:policy@0.2.0");
    assert_eq!(info["phases"], serde_json::json!(["request", "response"]));
    assert_eq!(info["needs_response_body"], false);
    let digest = portcullis_host::sha256_hex(&std::fs::read(&path).unwrap());
    assert_eq!(info["sha256"], digest);

    let out = portcullis(&["inspect", component("rate-limit").to_str().unwrap()]);
    assert!(stdout(&out).contains("capabilities used    rate-limit"), "{}", stdout(&out));
}

#[test]
fn help_teaches_by_example() {
    let out = portcullis(&["eval", "--help"]);
    let text = stdout(&out);
    assert!(text.contains("portcullis eval --config") && text.contains("exchange-format.md"), "{text}");
}
