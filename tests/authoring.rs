//! The rough edges a policy author meets (issue 22, item 5), each as the author meets it:
//! `--help` naming files that exist, `portcullis test` with globs, empty files and
//! unreadable entries, `replay` exit statuses that tell a bad capture from a changed
//! decision, file errors said once, summary columns that count entries, JSONL entries
//! named by id or line, settings errors said once.

mod common;

use std::process::Output;

use common::{TempDir, root};
use serde_json::Value;

fn portcullis(args: &[&str]) -> Output {
    common::portcullis_cli(args, &[])
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A config in `dir` routing everything through agent-guard (its approver group given)
/// and pii-redact (which decides both phases).
fn config(dir: &TempDir, name: &str, approver_group: &str) -> String {
    let policies = root().join("target/policies");
    let text = format!(
        r#"[policies.agent-guard]
module = "{policies}/agent-guard.wasm"
settings = {{ approver_group = "{approver_group}" }}

[policies.pii-redact]
module = "{policies}/pii-redact.wasm"
settings = {{ fields = ["/email"] }}

[[routes]]
name = "all"
policies = ["agent-guard", "pii-redact"]
"#,
        policies = policies.display()
    );
    dir.write(name, text).display().to_string()
}

const AGENT: &str = r#""principal": {"kind": "agent", "id": "bot", "on_behalf_of": "alice"}"#;

fn line(method: &str, path: &str) -> String {
    format!(r#"{{"method": "{method}", "url": "https://api.example.com{path}", {AGENT}}}"#)
}

#[test]
fn every_path_named_in_help_exists() {
    let commands = ["eval", "replay", "test", "inspect", "serve", "check", "approvals", "new", "build", "bench"];
    let mut named = 0;
    for command in [None].into_iter().chain(commands.into_iter().map(Some)) {
        let args: Vec<&str> = command.into_iter().chain(["--help"]).collect();
        let out = portcullis(&args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        for word in stdout(&out).split_whitespace() {
            let word = word.trim_matches(|c: char| "`'\"()[],;:".contains(c)).trim_end_matches('.');
            let in_repo = ["examples/", "docs/", "policy-tests/", "policies/", "scripts/", "templates/"];
            if in_repo.iter().any(|p| word.starts_with(p)) && !word.contains('*') {
                named += 1;
                assert!(
                    root().join(word).exists(),
                    "`portcullis {}` --help names {word}, which does not exist",
                    command.unwrap_or("")
                );
            }
        }
    }
    assert!(named >= 5, "the help texts name only {named} repository paths; is the extraction broken?");
}

#[test]
fn test_takes_globs_and_reports_empty_files_and_unreadable_entries() {
    let dir = TempDir::new("authoring-test");
    config(&dir, "portcullis.toml", "ops");
    std::fs::create_dir_all(dir.path().join("traffic")).unwrap();
    dir.write("traffic/a.jsonl", format!("{}\n{}\n", line("GET", "/notes/1"), line("DELETE", "/notes/1")));
    dir.write("traffic/b.jsonl", format!("{}\n{{\"method\": \"GET\", \"url\":\n", line("GET", "/notes/2")));
    dir.write("traffic/c.jsonl", "# nothing recorded yet\n");
    dir.write("traffic/empty.har", "");
    let test = dir.write(
        "policy.test.toml",
        r#"config = "portcullis.toml"
traffic = ["traffic/*.jsonl", "traffic/empty.har"]

[[case]]
name = "agents read"
select = { method = "GET" }
expect = { decision = "allow" }

[[case]]
name = "agents may not delete"
select = { method = "DELETE" }
expect = { decision = "deny", code = "agent-delete-forbidden" }
"#,
    );
    let out = portcullis(&["test", test.to_str().unwrap()]);
    let text = stdout(&out);
    assert!(out.status.success(), "an empty file and an unreadable entry fail nothing:\n{text}{}", stderr(&out));
    assert!(
        text.contains("ok    ") && text.contains("agents read (2 entries)"),
        "the glob read a.jsonl and b.jsonl:\n{text}"
    );
    assert!(text.contains("traffic/empty.har is empty (no entries)"), "{text}");
    assert!(text.contains("traffic/c.jsonl has no entries"), "{text}");
    assert!(text.contains("note") && text.contains("1 entry could not be read"), "{text}");
    assert!(text.contains("b.jsonl: line 2"), "the unreadable entry is named with its line:\n{text}");
    assert_eq!(text.lines().last(), Some("2 passed, 0 failed"), "{text}");

    // A pattern that matches nothing is an error naming it; so is a file cut short.
    let body = std::fs::read_to_string(&test).unwrap();
    std::fs::write(&test, body.replace("traffic/*.jsonl", "traffic/*.hra")).unwrap();
    let out = portcullis(&["test", test.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("`traffic/*.hra` matches no file"), "{}", stdout(&out));

    dir.write("traffic/cut.har", r#"{"log": {"entries": [{"request": {"method": "GET", "url": "https://api.example.com/a", "headers": []}}, {"req"#);
    std::fs::write(&test, body.replace("traffic/empty.har", "traffic/cut.har")).unwrap();
    let out = portcullis(&["test", test.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("traffic") && text.contains("cut.har could not be read to its end"), "{text}");
    assert!(text.contains("agents read (3 entries)"), "the entry read before the break still counts:\n{text}");
    assert_eq!(text.lines().last(), Some("2 passed, 1 failed"), "{text}");
}

#[test]
fn replay_exit_status_tells_a_bad_capture_from_a_changed_decision() {
    let dir = TempDir::new("authoring-replay");
    let new = config(&dir, "new.toml", "ops");
    let old = config(&dir, "old.toml", "finance");
    let good = dir.write("good.jsonl", format!("{}\n{}\n", line("GET", "/a"), line("POST", "/a")));
    let broken = dir.write("broken.jsonl", format!("{}\nnot json\n", line("GET", "/b")));
    let cut = dir.write(
        "cut.har",
        r#"{"log": {"entries": [{"request": {"method": "GET", "url": "https://api.example.com/a", "headers": []}}, {"#,
    );
    let (good, broken, cut) = (good.to_str().unwrap(), broken.to_str().unwrap(), cut.to_str().unwrap());

    let out = portcullis(&["replay", "--config", &new, good]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // A changed decision alone: 1.
    let out = portcullis(&["replay", "--config", &new, "--baseline", &old, "--fail-on-change", good]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("1 decision(s) changed"), "{}", stderr(&out));

    // An unreadable entry: 3, said as unreadable, not as "could not be evaluated".
    let out = portcullis(&["replay", "--config", &new, broken]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("1 entry could not be read") && err.contains("line 2"), "{err}");
    assert!(!err.contains("could not be evaluated"), "{err}");

    // Both: 3, and both reasons said.
    let out = portcullis(&["replay", "--config", &new, "--baseline", &old, "--fail-on-change", good, broken]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("could not be read") && stderr(&out).contains("changed"), "{}", stderr(&out));

    // A file cut short: 3, its error said once with its path once, and no "0 entries".
    let out = portcullis(&["replay", "--config", &new, cut]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(all.matches("cut.har").count(), 1, "the path once:\n{all}");
    assert_eq!(all.matches("not valid JSON").count(), 1, "the error once:\n{all}");
    assert!(!all.contains("0 entries could not be evaluated"), "{all}");

    // A policy that fails: 4.
    let misbehave = dir.write(
        "misbehave.toml",
        format!(
            "[policies.m]\nmodule = \"{}\"\nsettings = {{ on_request = \"panic\" }}\n\n[[routes]]\nname = \"all\"\npolicies = [\"m\"]\n",
            root().join("target/policies/hostile-misbehave.wasm").display()
        ),
    );
    let out = portcullis(&["replay", "--config", misbehave.to_str().unwrap(), good]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("2 entries could not be evaluated"), "{}", stderr(&out));
}

#[test]
fn replay_names_jsonl_entries_by_id_or_line_and_counts_each_entry_once() {
    let dir = TempDir::new("authoring-names");
    let config = config(&dir, "portcullis.toml", "ops");
    let traffic = dir.write(
        "calls.jsonl",
        format!(
            "# a comment line counts as a line\n{}\n{}\n",
            r#"{"request": {"id": "refund-42", "method": "GET", "url": "https://api.example.com/r"}, "response": {"status": 200, "body": {"json": {"email": "a@example.com"}}}}"#,
            r#"{"request": {"method": "GET", "url": "https://api.example.com/s"}, "response": {"status": 200, "body": {"json": {"email": "b@example.com"}}}}"#,
        ),
    );
    let traffic = traffic.to_str().unwrap();
    let out = portcullis(&["replay", "--config", &config, "--format", "jsonl", traffic]);
    assert!(out.status.success(), "{}", stderr(&out));
    let entries: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let names: Vec<(&str, u64, u64)> = entries
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["line"].as_u64().unwrap(), e["index"].as_u64().unwrap()))
        .collect();
    assert_eq!(names, [("refund-42", 2, 0), ("calls.jsonl:3", 3, 1)]);

    // agent-guard decides requests only, pii-redact both phases: 2 entries each, 2 and 4
    // calls; 6 calls in all.
    let out = portcullis(&["replay", "--config", &config, traffic]);
    let text = stdout(&out);
    let row = |label: &str| -> Vec<String> {
        let line = text.lines().find(|l| l.trim_start().starts_with(label)).unwrap_or_else(|| panic!("{text}"));
        line[label.len() + 2..].split_whitespace().map(str::to_owned).collect()
    };
    assert!(text.contains("entries   calls"), "{text}");
    assert_eq!(row("all entries")[..2], ["2", "6"], "{text}");
    assert_eq!(row("policy agent-guard")[..2], ["2", "2"], "{text}");
    assert_eq!(row("policy pii-redact")[..3], ["2", "4", "0"], "pii-redact redacted both entries:\n{text}");

    let out = portcullis(&["replay", "--config", &config, "--format", "json", traffic]);
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["summary"]["policies"]["pii-redact"]["total"], 2);
    assert_eq!(report["summary"]["policies"]["pii-redact"]["calls"], 4);
    assert_eq!(report["summary"]["policies"]["pii-redact"]["redact"], 2);
}

#[test]
fn a_settings_error_is_said_once() {
    let dir = TempDir::new("authoring-settings");
    let config = dir.write(
        "portcullis.toml",
        format!(
            "[policies.agent-guard]\nmodule = \"{}\"\nsettings = {{}}\n\n[[routes]]\nname = \"all\"\npolicies = [\"agent-guard\"]\n",
            root().join("target/policies/agent-guard.wasm").display()
        ),
    );
    let traffic = dir.write("t.jsonl", format!("{}\n", line("GET", "/a")));
    let out = portcullis(&["replay", "--config", config.to_str().unwrap(), traffic.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.matches("missing field `approver_group`").count(), 1, "{err}");
    assert_eq!(err.matches("setting `approver_group`").count(), 1, "{err}");
}
