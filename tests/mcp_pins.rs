//! Pinned tool definitions at the MCP door (issue 21 item 4), with the official SDKs on
//! loopback: the Python SDK's server and client (`mcp` 2.x) and the TypeScript 2.x ones, in
//! the 2026-07-28 generation.
//!
//! - A tool definition changed mid-test (the servers' `rug_pull` tool replaces
//!   `get_invoice`'s description) is hidden from `tools/list` and its call refused before the
//!   server runs it, audited once per new digest: in learn mode (the default) and in file mode.
//! - `portcullis mcp pin` writes the pin file from the live server, `--check` names the
//!   change and exits 1, re-pinning plus a reload lets the tool back.
//! - tool-guard's `refuse_findings` refuses `export_report` (an `<IMPORTANT>` block asking
//!   for `~/.ssh/id_rsa`, a parameter `api_key`) from the host's scan findings.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::mcp_sdk::{Door, Sdk, SdkServer, client, error_code};
use common::serve::temp_dir;
use serde_json::{Value, json};

const NEW_DESCRIPTION: &str = "An invoice, with its payment details.";

/// The route's policy for these tests: tool-guard letting agents call every tool, with
/// `settings` added; plus `pins` (a `[server.mcp.pins]` table body, or nothing).
fn door(dir: &Path, server: &SdkServer, settings: &str, pins: Option<&str>) -> Door {
    let tool_guard = common::component("tool-guard").display().to_string();
    let pins = pins.map(|pins| format!("\n[server.mcp.pins]\n{pins}\n")).unwrap_or_default();
    let extra = format!(
        r#"
[policies.pin-guard]
module = "{tool_guard}"

[policies.pin-guard.settings]
{settings}

[policies.pin-guard.settings.tools]
agent = ["*"]
{pins}"#
    );
    Door::start_with(dir, server, r#""pin-guard""#, &extra)
}

fn list() -> Value {
    json!({"op": "list_tools"})
}

fn call(tool: &str, args: Value) -> Value {
    json!({"op": "call", "tool": tool, "args": args})
}

fn names(step: &Value) -> Vec<String> {
    step["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("not a listing: {step}"))
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect()
}

/// The audit records the pins wrote (`decided_by: mcp-pins`): one per changed definition
/// (with the digests: `changes`), one per refused call (`!changes`).
fn pins_audit(dir: &Path, changes: bool) -> Vec<Value> {
    let has_digest = |r: &Value| r["labels"].as_array().is_some_and(|l| l.iter().any(|l| l["key"] == "listed"));
    std::fs::read_to_string(dir.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["decided_by"] == "mcp-pins" && has_digest(r) == changes)
        .collect()
}

/// The audit records of changed definitions.
fn pin_records(dir: &Path) -> Vec<Value> {
    pins_audit(dir, true)
}

/// Waits (the audit sink writes from a thread of its own) until `n` pin records are there.
fn wait_for_pin_records(dir: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let records = pin_records(dir);
        if records.len() >= n || Instant::now() > deadline {
            return records;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ran(server: &SdkServer, tool: &str) -> usize {
    server.ran().iter().filter(|e| e["tool"] == tool).count()
}

/// The rug pull, through one SDK's client against the same SDK's server: listed, changed,
/// hidden, refused, audited once.
fn rug_pull_is_hidden_and_refused(sdk: Sdk, tag: &str) {
    let dir = temp_dir(tag);
    let server = SdkServer::start(&dir, sdk);
    let door = door(&dir, &server, "", None);
    let steps = json!([
        list(),
        call("get_invoice", json!({"invoice_id": 1})),
        call("rug_pull", json!({"description": NEW_DESCRIPTION})),
        list(),
        call("get_invoice", json!({"invoice_id": 2})),
        list(),
        call("get_invoice", json!({"invoice_id": 3})),
    ]);
    let (protocol, r, _) = client(&door, sdk, "2026-07-28", &steps);
    assert_eq!(protocol, "2026-07-28");
    let at = format!("{sdk:?}");
    assert!(names(&r[0]).contains(&"get_invoice".to_owned()), "{at}: {}", r[0]);
    assert!(r[1].get("result").is_some(), "{at}: {}", r[1]);
    assert!(r[2].get("result").is_some(), "{at}: {}", r[2]);
    for listing in [&r[3], &r[5]] {
        let listed = names(listing);
        assert!(!listed.contains(&"get_invoice".to_owned()), "{at}: a changed tool is hidden: {listing}");
        assert!(listed.contains(&"delete_invoice".to_owned()), "{at}: the others stay: {listing}");
    }
    for refused in [&r[4], &r[6]] {
        let (code, data_code) = error_code(refused);
        assert_eq!((code, data_code.as_str()), (-32003, "tool-definition-changed"), "{at}: {refused}");
        let message = refused["error"]["message"].as_str().unwrap();
        assert!(message.contains("get_invoice") && message.contains("portcullis mcp pin"), "{at}: {message}");
    }
    // The server ran the first call only.
    assert_eq!(ran(&server, "get_invoice"), 1, "{at}: {:?}", server.ran());
    // Audited once for this (tool, digest), however often it was listed and called since.
    let records = wait_for_pin_records(&dir, 1);
    std::thread::sleep(Duration::from_millis(300));
    let records = if records.len() == 1 { pin_records(&dir) } else { records };
    assert_eq!(records.len(), 1, "{at}: {records:#?}");
    let record = &records[0];
    assert_eq!((record["decision"].as_str(), record["operation"].as_str()), (Some("deny"), Some("get_invoice")));
    let labels: Vec<(String, String)> = record["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["key"].as_str().unwrap().to_owned(), l["value"].as_str().unwrap().to_owned()))
        .collect();
    assert!(labels.contains(&("rule".into(), "tool-definition-changed".into())), "{labels:?}");
    let digest = |key: &str| labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap();
    assert!(digest("pinned").starts_with("sha256:") && digest("listed").starts_with("sha256:"));
    assert_ne!(digest("pinned"), digest("listed"));
    assert!(!record.to_string().contains(NEW_DESCRIPTION), "digests only, never the description");
    assert!(door.server.log().contains("differs from its pin"), "logged too");
    // Each refused call has its own record: the caller, the tool, the protocol generation.
    let calls = pins_audit(&dir, false);
    assert_eq!(calls.len(), 2, "{at}: {calls:#?}");
    for call in &calls {
        assert_eq!(call["principal"]["id"], "sso:bot", "{at}: {call}");
        assert_eq!(call["operation"], "get_invoice", "{at}: {call}");
        assert_eq!(call["door_facts"]["mcp_generation"], "2026-07-28", "{at}: {call}");
    }
}

#[test]
fn a_rug_pull_is_hidden_and_refused_with_the_python_sdk() {
    rug_pull_is_hidden_and_refused(Sdk::Python, "mcp-pins-rug-py");
}

#[test]
fn a_rug_pull_is_hidden_and_refused_with_the_typescript_sdk() {
    rug_pull_is_hidden_and_refused(Sdk::TsV2, "mcp-pins-rug-ts");
}

fn pin_cli(args: &[&str]) -> (i32, String) {
    let output = common::portcullis_cli(args, &[]);
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

/// File mode with `portcullis mcp pin`: the file written from the live server, a tool not in
/// it hidden, the rug pull detected by `--check` and refused by the door, re-pinned and
/// reloaded.
fn file_mode(sdk: Sdk, tag: &str) {
    let dir = temp_dir(tag);
    let server = SdkServer::start(&dir, sdk);
    let url = format!("http://127.0.0.1:{}/mcp", server.port);
    let pins = dir.join("pins.json");
    let pins_arg = pins.display().to_string();
    let (status, out) = pin_cli(&["mcp", "pin", &url, "--out", &pins_arg]);
    assert_eq!(status, 0, "{out}");
    assert!(out.contains("(2026-07-28)"), "{out}");
    let mut document: Value = serde_json::from_str(&std::fs::read_to_string(&pins).unwrap()).unwrap();
    assert_eq!(document["version"], 1);
    assert_eq!(document["server"], url.as_str());
    assert!(document["tools"]["get_invoice"].as_str().unwrap().starts_with("sha256:"), "{document}");
    let (status, out) = pin_cli(&["mcp", "pin", &url, "--out", &pins_arg, "--check"]);
    assert_eq!(status, 0, "{out}");
    // delete_invoice taken out of the file: not pinned, so hidden and refused.
    document["tools"].as_object_mut().unwrap().remove("delete_invoice");
    std::fs::write(&pins, serde_json::to_string_pretty(&document).unwrap()).unwrap();
    let door = door(&dir, &server, "", Some("mode = \"file\"\nfile = \"pins.json\""));
    let config = dir.join("portcullis.toml").display().to_string();
    let steps = json!([
        list(),
        call("delete_invoice", json!({"invoice_id": 1})),
        call("rug_pull", json!({"description": NEW_DESCRIPTION})),
        list(),
        call("get_invoice", json!({"invoice_id": 2})),
    ]);
    let (_, r, _) = client(&door, sdk, "2026-07-28", &steps);
    let at = format!("{sdk:?}");
    assert!(names(&r[0]).contains(&"get_invoice".to_owned()), "{at}: {}", r[0]);
    assert!(!names(&r[0]).contains(&"delete_invoice".to_owned()), "{at}: not in the file: {}", r[0]);
    assert_eq!(error_code(&r[1]).1, "tool-definition-changed", "{at}: {}", r[1]);
    assert!(r[1]["error"]["message"].as_str().unwrap().contains("is not pinned"), "{at}: {}", r[1]);
    assert!(!names(&r[3]).contains(&"get_invoice".to_owned()), "{at}: {}", r[3]);
    assert_eq!(error_code(&r[4]).1, "tool-definition-changed", "{at}: {}", r[4]);
    assert_eq!(ran(&server, "get_invoice") + ran(&server, "delete_invoice"), 0, "{at}: {:?}", server.ran());
    // --check with the door's config names each difference and exits 1.
    let (status, out) = pin_cli(&["mcp", "pin", "--config", &config, "--check"]);
    assert_eq!(status, 1, "{out}");
    assert!(out.contains("changed  get_invoice"), "{out}");
    assert!(out.contains("new      delete_invoice"), "{out}");
    // Re-pinned after review, and reloaded: both tools are back.
    let (status, out) = pin_cli(&["mcp", "pin", "--config", &config]);
    assert_eq!(status, 0, "{out}");
    door.server.hangup();
    let deadline = Instant::now() + Duration::from_secs(15);
    let r = loop {
        let (_, r, _) = client(&door, sdk, "2026-07-28", &json!([list()]));
        let listed = names(&r[0]);
        if listed.contains(&"get_invoice".to_owned()) && listed.contains(&"delete_invoice".to_owned()) {
            break r;
        }
        assert!(Instant::now() < deadline, "{at}: still hidden after the reload: {}", r[0]);
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(!r.is_empty());
    let (_, r, _) = client(&door, sdk, "2026-07-28", &json!([call("get_invoice", json!({"invoice_id": 4}))]));
    assert!(r[0].get("result").is_some(), "{at}: {}", r[0]);
    assert_eq!(ran(&server, "get_invoice"), 1);
}

#[test]
fn file_mode_and_mcp_pin_with_the_python_sdk() {
    file_mode(Sdk::Python, "mcp-pins-file-py");
}

#[test]
fn file_mode_and_mcp_pin_with_the_typescript_sdk() {
    file_mode(Sdk::TsV2, "mcp-pins-file-ts");
}

/// tool-guard's `refuse_findings` refuses `export_report` by the host's findings: hidden
/// from the listing, its call denied, the server never runs it; other tools are untouched.
fn findings_refused(sdk: Sdk, tag: &str, refuse: &str, finding: &str) {
    let dir = temp_dir(tag);
    let server = SdkServer::start(&dir, sdk);
    let door = door(&dir, &server, &format!("refuse_findings = [{refuse:?}]"), None);
    let steps = json!([
        list(),
        call("export_report", json!({"api_key": "k-123", "notes": "x"})),
        call("get_invoice", json!({"invoice_id": 1})),
    ]);
    let (_, r, _) = client(&door, sdk, "2026-07-28", &steps);
    let at = format!("{sdk:?} refusing {refuse}");
    let listed = names(&r[0]);
    assert!(!listed.contains(&"export_report".to_owned()), "{at}: {}", r[0]);
    assert!(listed.contains(&"get_invoice".to_owned()), "{at}: {}", r[0]);
    assert_eq!(error_code(&r[1]), (-32003, "tool-finding".to_owned()), "{at}: {}", r[1]);
    assert!(r[1]["error"]["message"].as_str().unwrap().contains(finding), "{at}: {}", r[1]);
    assert!(r[2].get("result").is_some(), "{at}: {}", r[2]);
    assert_eq!(ran(&server, "export_report"), 0, "{at}");
}

#[test]
fn a_poisoned_description_is_refused_by_tool_guard_with_the_python_sdk() {
    findings_refused(Sdk::Python, "mcp-pins-finding-py", "instruction-tag", "instruction-tag");
}

#[test]
fn a_secret_asking_schema_is_refused_by_tool_guard_with_the_typescript_sdk() {
    findings_refused(Sdk::TsV2, "mcp-pins-finding-ts", "secret-parameter", "secret-parameter");
}

#[test]
fn instruction_like_refuses_the_poisoned_description_with_the_typescript_sdk() {
    findings_refused(Sdk::TsV2, "mcp-pins-finding-ts-like", "instruction-like", "sensitive-path");
}

#[test]
fn mcp_pin_help_teaches_and_bad_input_names_what_is_missing() {
    let (status, out) = pin_cli(&["mcp", "pin", "--help"]);
    assert_eq!(status, 0, "{out}");
    for needle in ["--check", "[server.mcp.pins]", "re-pin", "2026-07-28", "Exit status"] {
        assert!(out.to_lowercase().contains(&needle.to_lowercase()), "{needle}: {out}");
    }
    let (status, out) = pin_cli(&["mcp", "pin", "http://127.0.0.1:9/mcp"]);
    assert_eq!(status, 2, "{out}");
    assert!(out.contains("--out"), "{out}");
    // A server that is not there: exit 2, named.
    let dir = temp_dir("mcp-pins-cli-down");
    let out_file = dir.join("p.json").display().to_string();
    let (status, out) = pin_cli(&["mcp", "pin", "http://127.0.0.1:9/mcp", "--out", &out_file, "--timeout-ms", "2000"]);
    assert_eq!(status, 2, "{out}");
    assert!(out.contains("127.0.0.1:9"), "{out}");
}

/// tool-guard's `refuse_findings` accepts exactly the host's finding names (the heuristics
/// live in the host; the policy compares names), and refuses others naming the setting.
#[test]
fn tool_guard_knows_every_finding_the_host_reports() {
    use portcullis_host::adapters::mcp_pins::scan::Rule;
    let dir = temp_dir("mcp-pins-finding-names");
    let tool_guard = common::component("tool-guard").display().to_string();
    let config = |findings: &[&str]| {
        let path = dir.join("portcullis.toml");
        let text = format!(
            "[policies.tool-guard]\nmodule = \"{tool_guard}\"\n\n[policies.tool-guard.settings]\nrefuse_findings = {findings:?}\n\n[[routes]]\nname = \"mcp\"\npaths = [\"/mcp\"]\npolicies = [\"tool-guard\"]\n\n[server.mcp]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:9/mcp\"\n"
        );
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let mut names: Vec<&str> = Rule::ALL.iter().map(|r| r.name()).collect();
    names.push("instruction-like");
    let path = config(&names);
    let (status, out) = pin_cli(&["check", "--config", &path]);
    assert_eq!(status, 0, "{out}");
    let path = config(&["instruction-tag", "prompt-injection"]);
    let (status, out) = pin_cli(&["check", "--config", &path]);
    assert_ne!(status, 0, "{out}");
    assert!(out.contains("refuse_findings[1]") && out.contains("prompt-injection"), "{out}");
}

/// `mcp pin` against a server that speaks only the 2025 handshake (the TypeScript SDK 1.x):
/// it falls back to `initialize` and lists in the session; the door in file mode then serves
/// a 2025 client (SSE answers, sessions) from that file and hides the changed tool.
#[test]
fn mcp_pin_falls_back_to_the_2025_handshake_and_file_mode_serves_2025_clients() {
    let dir = temp_dir("mcp-pins-legacy");
    let server = SdkServer::start(&dir, Sdk::TsV1);
    let url = format!("http://127.0.0.1:{}/mcp", server.port);
    let pins = dir.join("pins.json").display().to_string();
    let (status, out) = pin_cli(&["mcp", "pin", &url, "--out", &pins]);
    assert_eq!(status, 0, "{out}");
    assert!(out.contains("(2025-11-25)") && out.contains("get_invoice"), "{out}");
    let door = door(&dir, &server, "", Some("mode = \"file\"\nfile = \"pins.json\""));
    let steps = json!([
        list(),
        call("rug_pull", json!({"description": NEW_DESCRIPTION})),
        list(),
        call("get_invoice", json!({"invoice_id": 1})),
    ]);
    let (protocol, r, _) = client(&door, Sdk::TsV1, "legacy", &steps);
    assert_eq!(protocol, "2025-11-25");
    assert!(names(&r[0]).contains(&"get_invoice".to_owned()), "{}", r[0]);
    assert!(!names(&r[2]).contains(&"get_invoice".to_owned()), "{}", r[2]);
    assert_eq!(error_code(&r[3]).1, "tool-definition-changed", "{}", r[3]);
    assert_eq!(ran(&server, "get_invoice"), 0);
    let (status, out) = pin_cli(&["mcp", "pin", &url, "--out", &pins, "--check"]);
    assert_eq!(status, 1, "{out}");
    assert!(out.contains("changed  get_invoice"), "{out}");
}

/// `mcp-tool-finding` is the host's alone: a client that sends it (hoping to confuse a policy,
/// or to learn how findings are spelt) has it removed before policies and the server.
#[test]
fn a_client_cannot_send_findings() {
    let dir = temp_dir("mcp-pins-reserved");
    let server = SdkServer::start(&dir, Sdk::TsV2);
    let door = door(&dir, &server, r#"refuse_findings = ["instruction-tag"]"#, None);
    let answer = common::mcp_sdk::call_2026(
        &door,
        "get_invoice",
        &json!({"invoice_id": 9}),
        &[("mcp-tool-finding", "instruction-tag")],
    );
    let message = common::mcp_sdk::answer_message(&answer);
    assert!(message.get("result").is_some(), "the client's header was not taken: {message}");
    let reached: Vec<Value> = server.http().into_iter().filter(|h| h["body"]["method"] == "tools/call").collect();
    assert_eq!(reached.len(), 1, "{reached:?}");
    assert!(reached[0]["headers"].get("mcp-tool-finding").is_none(), "{}", reached[0]);
}

/// `portcullis check` and `serve` read the pin file in file mode: a missing one is an error
/// naming the key and the file.
#[test]
fn file_mode_without_its_file_is_refused_at_check_and_start() {
    let dir = temp_dir("mcp-pins-missing-file");
    let tool_guard = common::component("tool-guard").display().to_string();
    let path = dir.join("portcullis.toml");
    std::fs::write(
        &path,
        format!(
            "[policies.tool-guard]\nmodule = \"{tool_guard}\"\n\n[[routes]]\nname = \"mcp\"\npaths = [\"/mcp\"]\npolicies = [\"tool-guard\"]\n\n[server.mcp]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:9/mcp\"\n\n[server.mcp.pins]\nmode = \"file\"\nfile = \"nowhere.json\"\n"
        ),
    )
    .unwrap();
    let path = path.display().to_string();
    let (status, out) = pin_cli(&["check", "--config", &path]);
    assert_ne!(status, 0, "{out}");
    assert!(out.contains("[server.mcp.pins] file") && out.contains("nowhere.json"), "{out}");
    std::fs::write(
        dir.join("portcullis.toml"),
        std::fs::read_to_string(&path).unwrap().replace("file = \"nowhere.json\"\n", ""),
    )
    .unwrap();
    let (status, out) = pin_cli(&["check", "--config", &path]);
    assert_ne!(status, 0, "{out}");
    assert!(out.contains("mode = \"file\" needs `file`"), "{out}");
}

/// Learn mode with a `file`: the door writes what it learnt, and `portcullis mcp pin --check`
/// agrees with it (the door and the command digest a definition alike).
#[test]
fn learn_mode_persists_what_it_learnt_and_mcp_pin_agrees() {
    let dir = temp_dir("mcp-pins-learn-file");
    let server = SdkServer::start(&dir, Sdk::Python);
    let door = door(&dir, &server, "", Some("mode = \"learn\"\nfile = \"learnt.json\""));
    let (_, r, _) = client(&door, Sdk::Python, "2026-07-28", &json!([list()]));
    assert!(names(&r[0]).contains(&"get_invoice".to_owned()), "{}", r[0]);
    let learnt: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("learnt.json")).unwrap()).unwrap();
    assert!(learnt["tools"]["get_invoice"].as_str().unwrap().starts_with("sha256:"), "{learnt}");
    let config = dir.join("portcullis.toml").display().to_string();
    let (status, out) = pin_cli(&["mcp", "pin", "--config", &config, "--check"]);
    assert_eq!(status, 0, "{out}");
}
