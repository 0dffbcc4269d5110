//! `portcullis replay` and `portcullis test` over the real shared captures, as a user
//! runs them.

mod common;

use std::process::Output;

use common::{TempDir, root, traffic_dir};
use serde_json::Value;

fn portcullis(args: &[&str]) -> Output {
    common::portcullis_cli(args, &[])
}

fn portcullis_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    common::portcullis_cli(args, env)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn captures() -> Vec<String> {
    let files: Vec<String> = common::shared_captures().iter().map(|p| p.display().to_string()).collect();
    assert_eq!(files.len(), 3, "{files:?}");
    files
}

const AGENT: [&str; 14] = [
    "--as",
    "agent:support-bot",
    "--on-behalf-of",
    "alice",
    "--scope",
    "pets:read",
    "--scope",
    "library:read",
    "--scope",
    "fleet:write",
    "--scope",
    "pastries:read",
    "--config",
    "policy-tests/portcullis.toml",
];

fn replay(extra: &[&str]) -> Output {
    let files = captures();
    let mut args = vec!["replay"];
    args.extend(AGENT);
    args.extend(extra);
    args.extend(files.iter().map(String::as_str));
    portcullis(&args)
}

#[test]
fn every_entry_of_the_shared_captures_is_read_and_decided() {
    let out = replay(&["--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let entries = &report["summary"]["entries"];
    assert_eq!(entries["total"], 96, "81 + 6 + 9 entries: {entries}");
    assert_eq!(entries["errors"], 0);
    assert_eq!(entries["require_approval"], 54, "the agent's 54 car POSTs wait for approval");
    assert_eq!(report["entries"].as_array().unwrap().len(), 96);
    assert_eq!(report["summary"]["routes"]["library"]["total"], 81);
}

#[test]
fn the_table_groups_denied_and_held_entries() {
    let out = replay(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Replayed 96 entries from 3 file(s)"), "{text}");
    assert!(text.contains("54× akto_restapi_81.har#0"), "{text}");
    assert!(text.contains("deny 403 no-route"), "{text}");
    assert!(text.contains("policy agent-guard"), "{text}");
}

/// `(source, index, signature)` of every entry, in output order.
fn decided(extra: &[&str]) -> Vec<(String, usize, Value)> {
    let mut args = vec!["--format", "jsonl"];
    args.extend(extra);
    let out = replay(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["source"].as_str().unwrap().to_owned(), v["index"].as_u64().unwrap() as usize, v["signature"].clone())
        })
        .collect()
}

#[test]
fn parallel_jobs_keep_the_input_order_and_the_decisions() {
    let lines = |jobs: &str| decided(&["--jobs", jobs]);
    let one = lines("1");
    let many = lines("3");
    assert_eq!(one.len(), 96);
    assert_eq!(one, many);
    let akto: Vec<usize> = one.iter().filter(|(s, ..)| s.contains("akto")).map(|(_, i, _)| *i).collect();
    assert_eq!(akto, (0..81).collect::<Vec<_>>());
}

#[test]
fn reusing_instances_keeps_every_decision() {
    // The reference policies keep no state between calls, so warm instances must decide
    // exactly as fresh ones, on one thread and on several.
    let fresh = decided(&[]);
    assert_eq!(fresh.len(), 96);
    assert_eq!(decided(&["--reuse-instances"]), fresh);
    assert_eq!(decided(&["--reuse-instances", "--jobs", "2"]), fresh);
    let signatures: std::collections::BTreeSet<String> = fresh.iter().map(|(_, _, s)| s.to_string()).collect();
    assert!(signatures.len() >= 3, "allow, deny and approval are all compared: {signatures:?}");
}

#[test]
fn junit_has_a_case_per_entry() {
    let out = replay(&["--format", "junit"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let xml = stdout(&out);
    assert_eq!(xml.matches("<testcase ").count(), 96);
    assert_eq!(xml.matches("<testsuite ").count(), 3);
    assert!(xml.starts_with("<?xml") && xml.trim_end().ends_with("</testsuites>"));
}

#[test]
fn show_redactions_prints_body_diffs() {
    let out = replay(&["--show-redactions"]);
    let text = stdout(&out);
    assert!(text.contains("response body (after redaction)"), "{text}");
    assert!(text.contains("-    \"name\": \"doggie\",") && text.contains("+    \"name\": \"[redacted]\","), "{text}");
}

#[test]
fn a_baseline_lists_what_changed_and_can_fail_the_run() {
    let dir = TempDir::new("baseline");
    let config = std::fs::read_to_string(root().join("policy-tests/portcullis.toml"))
        .unwrap()
        .replace("../target/policies", &root().join("target/policies").display().to_string())
        .replace("approver_group = \"api-owners\"", "approver_group = \"fleet-managers\"");
    let old = dir.write("old.toml", config);
    let old = old.to_str().unwrap();

    let out = replay(&["--baseline", old]);
    assert!(out.status.success(), "changes alone do not fail the run: {}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Changed from the baseline (54)"), "{text}");
    assert!(text.contains("require-approval → require-approval (changed)"), "{text}");
    assert!(
        text.contains("before: require-approval fleet-managers")
            && text.contains("after:  require-approval api-owners"),
        "{text}"
    );

    let out = replay(&["--baseline", old, "--fail-on-change"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("54 decision(s) changed"), "{}", stderr(&out));

    // The same component as baseline for one policy: nothing changes.
    let same = root().join("target/policies/pii-redact.wasm");
    let out = replay(&["--baseline", &format!("pii-redact={}", same.display()), "--fail-on-change"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("No decision changed from the baseline."));
}

#[test]
fn a_broken_entry_is_reported_and_the_others_still_run() {
    let dir = TempDir::new("broken");
    let har = dir.write(
        "broken.har",
        r#"{"log": {"entries": [
            {"request": {"method": "GET", "url": "http://localhost:8000/api/books", "headers": []}, "response": {"status": 200}},
            {"request": {"method": "GET", "headers": []}},
            {"request": {"method": "POST", "url": "http://localhost:8000/api/cars", "headers": []}}
        ]}}"#,
    );
    let har = har.to_str().unwrap();
    let out = portcullis(&["replay", "--config", "policy-tests/portcullis.toml", "--format", "json", har]);
    assert_eq!(out.status.code(), Some(3), "an unreadable entry is unreadable input (exit 3)");
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["summary"]["entries"]["total"], 3);
    assert_eq!(report["summary"]["entries"]["errors"], 1);
    let error = report["entries"][1]["error"].as_str().unwrap();
    assert!(error.contains("broken.har") && error.contains("1") && error.contains("url"), "{error}");
    assert_eq!(report["entries"][2]["decision"], "deny", "the entry after the broken one still ran");

    let out = portcullis(&["replay", "--config", "policy-tests/portcullis.toml", "--strict", "--format", "jsonl", har]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stdout(&out).lines().count(), 2, "--strict stops at the broken entry");
    assert!(stderr(&out).contains("--strict"), "{}", stderr(&out));
}

#[test]
fn recorded_credentials_become_principals_through_the_identity_config() {
    let dir = TempDir::new("identity");
    let secret = "0123456789abcdef0123456789abcdef-test-secret";
    let token = |sub: &str, exp: u64, act: Option<&str>| {
        let mut claims =
            serde_json::json!({"iss": "https://idp.test", "sub": sub, "exp": exp, "scope": "library:read fleet:write"});
        if let Some(agent) = act {
            claims["act"] = serde_json::json!({"sub": agent});
        }
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    // Recorded on 2024-01-01; the tokens expired an hour later.
    let recorded_ms = 1_704_067_200_000u64;
    let exp = recorded_ms / 1000 + 3600;
    let entry = |auth: String| {
        serde_json::json!({"request": {"method": "POST", "url": "http://localhost:8000/api/cars",
            "headers": {"authorization": format!("Bearer {auth}")}, "received_at_ms": recorded_ms}})
        .to_string()
    };
    let traffic = dir.write(
        "calls.jsonl",
        [
            entry(token("alice", exp, None)),
            entry(token("alice", exp, Some("support-bot"))),
            entry("not.a.token".into()),
        ]
        .join("\n"),
    );
    let config = std::fs::read_to_string(root().join("policy-tests/portcullis.toml"))
        .unwrap()
        .replace("../target/policies", &root().join("target/policies").display().to_string())
        + "\n[[identity.jwt]]\nissuer = \"https://idp.test\"\nalgorithm = \"HS256\"\nsecret_env = \"TEST_JWT_SECRET\"\n";
    let config = dir.write("portcullis.toml", config);
    let run = |at: &str| {
        portcullis_env(
            &[
                "replay",
                "--config",
                config.to_str().unwrap(),
                "--format",
                "jsonl",
                "--at",
                at,
                traffic.to_str().unwrap(),
            ],
            &[("TEST_JWT_SECRET", secret)],
        )
    };
    let out = run("recorded");
    let lines: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "{}", stderr(&out));
    assert_eq!(lines[0]["passage"]["principal"]["id"], "alice");
    assert_eq!(lines[0]["decision"], "allow", "a user with fleet:write creates cars");
    assert_eq!(lines[1]["passage"]["principal"]["kind"], "agent");
    assert_eq!(lines[1]["passage"]["principal"]["on_behalf_of"], "alice");
    assert_eq!(lines[1]["decision"], "require-approval", "an agent acting for alice waits");
    assert_eq!(lines[2]["signature"]["request"]["code"], "unauthenticated");
    assert!(!stdout(&out).contains(secret));

    let out = run("now");
    let lines: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["signature"]["request"]["code"], "unauthenticated", "checked now, the token has expired");
}

#[test]
fn the_reference_policy_tests_pass() {
    let out = portcullis(&["test", "policy-tests/"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    let last = text.lines().last().unwrap();
    assert!(last.ends_with(" passed, 0 failed"), "{last}");
    assert!(text.lines().filter(|l| l.starts_with("ok ")).count() >= 10, "{text}");
}

#[test]
fn a_failing_expectation_names_the_entry_and_what_was_decided() {
    let dir = TempDir::new("tests");
    let file = dir.write(
        "wrong.toml",
        format!(
            r#"config = "{}"
traffic = ["{}"]
principal = {{ kind = "agent", id = "bot", on_behalf_of = "alice", scopes = ["fleet:write"] }}

[[case]]
name = "cars are created freely"
select = {{ method = "POST" }}
expect = {{ decision = "allow" }}

[[case]]
name = "a typo selects nothing"
select = {{ method = "PSOT" }}
expect = {{ decision = "allow" }}
"#,
            root().join("policy-tests/portcullis.toml").display(),
            traffic_dir().join("akto_restapi_81.har").display()
        ),
    );
    let out = portcullis(&["test", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("FAIL") && text.contains("54 of 54 selected entries differ"), "{text}");
    assert!(
        text.contains("akto_restapi_81.har#0 POST /api/cars: expected allow, got require-approval api-owners"),
        "{text}"
    );
    assert!(text.contains("selects no entry"), "{text}");
    assert_eq!(text.lines().last(), Some("0 passed, 2 failed"));
}
