//! `portcullis replay --approve-as` and `--approvals`: the approver's side in replay, over
//! the shared captures with the real agent-guard component. An agent acting for alice
//! writes (54 car POSTs, one pastry PATCH, one pet-store order POST): each waits for the
//! `finance` group, is answered as scripted, and is retried with its approval.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{TempDir, component};
use serde_json::Value;

/// An agent-guard config: agents' writes wait for `finance` (carol, dave and alice may
/// decide; four eyes on).
fn config(tmp: &TempDir, groups: bool) -> PathBuf {
    let store = tmp.path().join("approvals.sqlite");
    let groups = if groups { "[approvals.groups.finance]\nids = [\"carol\", \"dave\", \"alice\"]\n" } else { "" };
    tmp.write(
        "portcullis.toml",
        format!(
            "[policies.agent-guard]\nmodule = \"{}\"\nsettings = {{ approver_group = \"finance\", ttl_seconds = 600 \
             }}\n\n[[routes]]\nname = \"all\"\npaths = [\"/**\"]\npolicies = [\"agent-guard\"]\n\n[approvals]\nstore \
             = \"{}\"\n{groups}",
            component("agent-guard").display(),
            store.display()
        ),
    )
}

fn replay(config: &Path, extra: &[&str]) -> Output {
    let files: Vec<String> = common::shared_captures().iter().map(|p| p.display().to_string()).collect();
    assert_eq!(files.len(), 3, "{files:?}");
    let config = config.display().to_string();
    let mut args = vec!["replay", "--config", &config, "--as", "agent:support-bot", "--on-behalf-of", "alice"];
    args.extend(extra);
    args.extend(files.iter().map(String::as_str));
    common::portcullis_cli(&args, &[])
}

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

fn text(out: &Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The held entries: `(file name#index, approval)`.
fn held(report: &Value) -> Vec<(String, Value)> {
    report["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e.get("approval").is_some())
        .map(|e| {
            let file = e["source"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
            (format!("{file}#{}", e["index"]), e["approval"].clone())
        })
        .collect()
}

#[test]
fn approving_as_a_member_forwards_every_held_entry() {
    let tmp = TempDir::new("replay-approve");
    let config = config(&tmp, true);
    let report = json(&replay(&config, &["--approve-as", "finance=user:carol", "--format", "json"]));
    let summary = &report["summary"];
    assert_eq!(summary["entries"]["total"], 96);
    assert_eq!(summary["entries"]["require_approval"], 56, "the verdicts themselves are unchanged: {summary}");
    let approvals = &summary["approvals"];
    assert_eq!(approvals["entries"]["held"], 56, "{approvals}");
    assert_eq!(approvals["entries"]["forwarded"], 56, "{approvals}");
    assert_eq!(approvals["groups"]["finance"]["approved"], 56);
    assert_eq!(approvals["groups"]["finance"]["by"]["user:carol"], 56);
    let held = held(&report);
    assert_eq!(held.len(), 56);
    for (id, approval) in &held {
        assert_eq!(approval["outcome"], "forwarded", "{id}: {approval}");
        assert_eq!(approval["decision"], "allow", "{id}: the approved retry is allowed: {approval}");
        assert_eq!(approval["groups"][0]["group"], "finance");
        assert_eq!(approval["groups"][0]["decision"], "approved");
        assert_eq!(approval["groups"][0]["by"], "user:carol");
    }
    assert!(held.iter().any(|(id, _)| id == "microcks_api-pastries-0.0.1.har#5"));
    assert!(held.iter().any(|(id, _)| id == "optic_petstore.swagger.io.har#7"));
    assert!(!tmp.path().join("approvals.sqlite").exists(), "replay must not touch the config's approval store");

    // The text report says who each request waited for and what became of it.
    let table = text(&replay(&config, &["--approve-as", "finance=user:carol"]));
    assert!(table.contains("forwarded  rejected  waiting"), "{table}");
    assert!(table.contains("Held for approval, answered as scripted (56):"), "{table}");
    assert!(table.contains("finance: 56 waited, 56 approved"), "{table}");
    assert!(table.contains("finance: approved by user:carol → forwarded"), "{table}");
    assert!(table.contains("54× akto_restapi_81.har#0"), "{table}");
}

#[test]
fn without_the_flags_replay_is_as_before() {
    let tmp = TempDir::new("replay-approve-none");
    let config = config(&tmp, true);
    let report = json(&replay(&config, &["--format", "json"]));
    assert!(report["summary"].get("approvals").is_none(), "{}", report["summary"]);
    assert!(held(&report).is_empty());
    let table = text(&replay(&config, &[]));
    assert!(!table.contains("forwarded"), "{table}");
    assert!(!table.contains("answered as scripted"), "{table}");
}

#[test]
fn an_approver_who_may_not_decide_is_reported_not_applied() {
    let tmp = TempDir::new("replay-approve-four-eyes");
    let config = config(&tmp, true);
    // alice is a finance member, but the agent acts for her: four eyes.
    let report = json(&replay(&config, &["--approve-as", "finance=user:alice", "--format", "json"]));
    let approvals = &report["summary"]["approvals"];
    assert_eq!(approvals["entries"]["not_allowed"], 56, "{approvals}");
    assert_eq!(approvals["entries"]["forwarded"], 0, "{approvals}");
    for (id, approval) in held(&report) {
        assert_eq!(approval["outcome"], "not-allowed", "{id}: {approval}");
        assert_eq!(approval["groups"][0]["code"], "four-eyes", "{id}: {approval}");
        assert!(approval["groups"][0]["reason"].as_str().unwrap().contains("four eyes"), "{approval}");
        assert!(approval.get("decision").is_none(), "{id}: no retry without an approval: {approval}");
    }
    let table = text(&replay(&config, &["--approve-as", "finance=user:alice"]));
    assert!(table.contains("finance: user:alice may not decide (four-eyes) → not-allowed"), "{table}");

    // bob is no member at all.
    let report = json(&replay(&config, &["--approve-as", "finance=user:bob", "--format", "json"]));
    let held = held(&report);
    assert_eq!(held.len(), 56);
    assert!(held.iter().all(|(_, a)| a["groups"][0]["code"] == "not-an-approver"), "{:?}", held[0]);
}

#[test]
fn a_decisions_file_rejects_one_selector_and_approves_the_rest() {
    let tmp = TempDir::new("replay-approve-file");
    let config = config(&tmp, true);
    let decisions = tmp.write(
        "decisions.toml",
        r#"
[groups.finance]
approve = "user:carol"
note = "checked"

[[decision]]
select = { file = "microcks_api-pastries-0.0.1.har", method = "PATCH" }
reject = "user:dave"
note = "no pastry changes this week"
"#,
    );
    let decisions = decisions.display().to_string();
    let report = json(&replay(&config, &["--approvals", &decisions, "--format", "json"]));
    let approvals = &report["summary"]["approvals"];
    assert_eq!(approvals["entries"]["held"], 56, "{approvals}");
    assert_eq!(approvals["entries"]["forwarded"], 55, "{approvals}");
    assert_eq!(approvals["entries"]["rejected"], 1, "{approvals}");
    assert_eq!(approvals["groups"]["finance"]["by"]["user:dave"], 1, "{approvals}");
    for (id, approval) in held(&report) {
        if id == "microcks_api-pastries-0.0.1.har#5" {
            assert_eq!(approval["outcome"], "rejected", "{approval}");
            assert_eq!(approval["groups"][0]["by"], "user:dave");
            assert_eq!(approval["groups"][0]["note"], "no pastry changes this week");
        } else {
            assert_eq!(approval["outcome"], "forwarded", "{id}: {approval}");
            assert_eq!(approval["groups"][0]["note"], "checked");
        }
    }

    // The same in JSON, with nobody answering the pet-store order; `--approve-as` replaces
    // the file's answer for its group.
    let decisions = tmp.write(
        "decisions.json",
        r#"{"groups": {"finance": {"reject": "user:carol"}},
            "decision": [{"select": {"path": "/v2/store/**"}, "wait": true}]}"#,
    );
    let decisions = decisions.display().to_string();
    let args = ["--approvals", &decisions, "--approve-as", "finance=user:dave", "--format", "json", "--jobs", "3"];
    let report = json(&replay(&config, &args));
    let approvals = &report["summary"]["approvals"];
    assert_eq!(approvals["entries"]["forwarded"], 55, "{approvals}");
    assert_eq!(approvals["entries"]["no_decider"], 1, "{approvals}");
    let order = held(&report).into_iter().find(|(id, _)| id == "optic_petstore.swagger.io.har#7").unwrap().1;
    assert_eq!(order["outcome"], "no-decider", "{order}");

    // JUnit carries each held entry's answer.
    let junit = text(&replay(&config, &["--approve-as", "finance=user:carol", "--format", "junit"]));
    assert!(junit.contains("approval: finance: approved by user:carol → forwarded"), "{junit}");
}

#[test]
fn scripted_approvals_need_approver_groups_and_well_formed_approvers() {
    let tmp = TempDir::new("replay-approve-bad");
    let without = config(&tmp, false);
    let out = replay(&without, &["--approve-as", "finance=user:carol"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("has no [approvals.groups]"), "{stderr}");

    let config = config(&tmp, true);
    for (flag, expected) in [
        ("finance=carol", "expected KIND:ID"),
        ("finance=robot:x", "unknown kind `robot`"),
        ("user:carol", "expected GROUP=KIND:ID"),
    ] {
        let out = replay(&config, &["--approve-as", flag]);
        assert_eq!(out.status.code(), Some(2), "{flag}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{flag}: {stderr}");
    }
    let bad = tmp.write("bad.toml", "[groups.finance]\napprove = \"user:carol\"\nreject = \"user:dave\"\n");
    let out = replay(&config, &["--approvals", &bad.display().to_string()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("[groups.finance]: give exactly one of"), "{stderr}");
}

#[test]
fn test_files_assert_what_becomes_of_held_entries() {
    let tmp = TempDir::new("replay-approve-testfile");
    config(&tmp, true);
    tmp.write(
        "decisions.toml",
        "[[decision]]\nselect = { method = \"PATCH\" }\nreject = \"user:dave\"\nnote = \"not this week\"\n",
    );
    let traffic = common::traffic_dir();
    let traffic: Vec<String> = ["akto_restapi_81.har", "microcks_api-pastries-0.0.1.har"]
        .iter()
        .map(|f| format!("{:?}", traffic.join(f).display().to_string()))
        .collect();
    let head = format!(
        "config = \"portcullis.toml\"\ntraffic = [{}]\napprove_as = [\"finance=user:carol\"]\napprovals = \
         \"decisions.toml\"\n\n[principal]\nkind = \"agent\"\nid = \"support-bot\"\non_behalf_of = \"alice\"\n",
        traffic.join(", ")
    );
    let passing = tmp.write(
        "approvals.toml",
        format!(
            "{head}
[[case]]
name = \"car writes wait for finance, and carol lets them through\"
select = {{ method = \"POST\", path = \"/api/cars\" }}
expect = {{ decision = \"require-approval\", approver_group = \"finance\", approval = \"forwarded\", approved_by = \"user:carol\" }}

[[case]]
name = \"dave rejects the pastry change\"
select = {{ method = \"PATCH\" }}
expect = {{ decision = \"require-approval\", approval = \"rejected\", approved_by = \"user:dave\" }}
"
        ),
    );
    let out = common::portcullis_cli(&["test", &passing.display().to_string()], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("ok    ") && stdout.contains("(54 entries)"), "{stdout}");
    assert!(stdout.ends_with("2 passed, 0 failed\n"), "{stdout}");

    let failing = tmp.write(
        "wrong.toml",
        format!(
            "{head}
[[case]]
name = \"the pastry change goes through\"
select = {{ method = \"PATCH\" }}
expect = {{ decision = \"require-approval\", approval = \"forwarded\" }}

[[case]]
name = \"reads wait for nobody\"
select = {{ method = \"GET\", index = 1 }}
expect = {{ decision = \"allow\", approval = \"forwarded\" }}
"
        ),
    );
    let out = common::portcullis_cli(&["test", &failing.display().to_string()], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("expected approval forwarded, got finance: rejected by user:dave → rejected"), "{stdout}");
    assert!(stdout.contains("the entry was not held for approval"), "{stdout}");
    assert!(stdout.ends_with("0 passed, 2 failed\n"), "{stdout}");
}
