//! `portcullis bench` over the shared recorded traffic: the report's structure (never its
//! timings, which depend on the machine).

mod common;

use std::process::Output;

fn portcullis(args: &[&str]) -> Output {
    common::portcullis_cli(args, &[])
}

fn traffic() -> Vec<String> {
    common::shared_captures().iter().map(|p| p.display().to_string()).collect()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn json_report_has_every_policy_and_phase_of_the_config() {
    let files = traffic();
    let mut args = vec![
        "bench",
        "--config",
        "policy-tests/portcullis.toml",
        "--as",
        "agent:support-bot",
        "--on-behalf-of",
        "alice",
        "--scope",
        "pets:read",
        "--scope",
        "library:read",
        "--rounds",
        "2",
        "--format",
        "json",
    ];
    args.extend(files.iter().map(String::as_str));
    let out = portcullis(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON report");

    assert_eq!(report["files"], files.len());
    assert_eq!(report["rounds"], 2);
    assert_eq!(report["unreadable"], 0);
    let entries = report["entries"].as_u64().unwrap();
    assert!(entries > 0);
    assert!(report["load_ms"].as_f64().unwrap() > 0.0);

    let gate = &report["gate"];
    assert_eq!(gate["calls"].as_u64(), Some(entries * 2), "every entry once per round");
    for key in ["p50_us", "p99_us", "mean_us", "per_second"] {
        assert!(gate[key].as_f64().unwrap() > 0.0, "gate.{key}: {gate}");
    }
    assert!(gate["p50_us"].as_f64() <= gate["p99_us"].as_f64());

    // scopes and agent-guard handle requests; pii-redact handles responses (and requests).
    let policies = report["policies"].as_array().unwrap();
    let has = |name: &str, phase: &str| policies.iter().any(|p| p["policy"] == name && p["phase"] == phase);
    assert!(
        has("scopes", "request") && has("agent-guard", "request") && has("pii-redact", "response"),
        "{policies:#?}"
    );
    for p in policies {
        let calls = p["calls"].as_u64().unwrap();
        assert!(calls > 0 && calls % 2 == 0, "{p}");
        assert_eq!(p["faults"], 0, "{p}");
        assert!(p["p50_us"].as_f64() <= p["p99_us"].as_f64(), "{p}");
        // The reference policies are small Rust components: pre-initialised by default.
        assert_eq!(p["instances"], "fresh, pre-initialised", "{p}");
    }
}

#[test]
fn text_report_names_the_columns_policies_and_throughput() {
    let files = traffic();
    let mut args = vec!["bench", "--config", "policy-tests/portcullis.toml", "--rounds", "1"];
    args.extend(files.iter().map(String::as_str));
    let out = portcullis(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = stdout(&out);
    assert!(text.starts_with("Benchmarked "), "{text}");
    assert!(text.contains(&format!("from {} file(s), 1 round(s) each", files.len())), "{text}");
    for needle in [
        "calls",
        "p50",
        "p99",
        "instances",
        "gate, whole entry",
        "policy scopes (request)",
        "Decisions per second through the gate: ",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
}

#[test]
fn refuses_a_missing_traffic_file_and_scope_without_as() {
    let out = portcullis(&["bench", "--config", "policy-tests/portcullis.toml", "no-such-file.har"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-file.har"));

    let files = traffic();
    let out = portcullis(&["bench", "--config", "policy-tests/portcullis.toml", "--scope", "x", &files[0]]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("add --as"));
}
