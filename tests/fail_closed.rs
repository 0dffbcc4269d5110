//! A misbehaving policy becomes a deny that names it and the cause, within its limits,
//! and the very next request is evaluated normally.

mod common;

use common::{component, request};
use portcullis_host::{
    Decision, DecisionKind, Fault, LoadError, Policy, PolicySet, PolicySpec, RouteSpec, Shared, Source,
};
use serde_json::json;

/// The time limit of the hostile policies: short where the timeout is what is tested
/// (`loop`), generous for the modes that must end in another fault, so that a busy machine
/// (a cold compile cache compiling in parallel) cannot turn their 24 MiB of work into a
/// timeout.
fn timeout_for(mode: &str) -> u64 {
    if mode == "loop" { 50 } else { 2_000 }
}

fn misbehave(name: &str, settings: serde_json::Value) -> PolicySpec {
    let mode = settings["on_request"].as_str().unwrap_or_default().to_owned();
    let mut spec = PolicySpec::new(name, Source::File(component("hostile-misbehave")));
    spec.settings = settings;
    spec.limits.timeout_ms = timeout_for(&mode);
    // Room for the 8 MiB `huge-string` reason, so it reaches the return-size check.
    spec.limits.memory_mb = 24;
    spec
}

/// A set with one misbehaving policy before a well-behaved one.
fn set_with(mode: &str, fail_open: bool) -> PolicySet {
    let engine = common::engine();
    let mut bad = misbehave("bad", json!({"on_request": mode}));
    bad.fail_open = fail_open;
    let mut good = PolicySpec::new("guard", Source::File(component("agent-guard")));
    good.settings = json!({"approver_group": "ops"});
    PolicySet::builder(&engine)
        .policy(bad)
        .unwrap()
        .policy(good)
        .unwrap()
        .route(RouteSpec { name: "all".into(), policies: vec!["bad".into(), "guard".into()], ..RouteSpec::default() })
        .build()
        .unwrap()
}

fn req() -> portcullis_host::Request {
    request(json!({"method": "GET", "url": "https://api.test/x", "principal": {"kind": "user", "id": "u"}}))
}

/// Evaluates with a misbehaving policy and checks the deny, then checks that the same
/// set still serves: the good policy's own verdict comes through unchanged.
fn assert_fails_closed(mode: &str, expect: impl Fn(&Fault) -> bool, status: u16) {
    let set = set_with(mode, false);
    for round in 0..2 {
        let verdict = set.evaluate_request(&req());
        let Decision::Deny(denial) = &verdict.decision else { panic!("{mode}: expected deny, got {verdict:?}") };
        assert_eq!(denial.code, "policy-error", "{mode}");
        assert_eq!(denial.status, status, "{mode}");
        assert!(denial.reason.contains("policy `bad`"), "{mode}: the reason names the policy: {}", denial.reason);
        let fault = verdict.policies[0].fault.as_ref().expect("the fault is recorded");
        assert!(expect(fault), "{mode} (round {round}): unexpected fault {fault:?}");
        assert_eq!(verdict.policies.len(), 1, "{mode}: nothing runs after the deny");
    }
    // The engine keeps serving: the same component with good behaviour, and other policies.
    let healthy = set_with("allow", false);
    assert_eq!(healthy.evaluate_request(&req()).decision, Decision::Allow, "{mode}: the next request is normal");
}

#[test]
fn a_panic_is_a_trap() {
    assert_fails_closed("panic", |f| matches!(f, Fault::Trap(_)), 500);
}

#[test]
fn unreachable_is_a_trap() {
    assert_fails_closed("unreachable", |f| matches!(f, Fault::Trap(_)), 500);
}

#[test]
fn an_infinite_loop_times_out() {
    let start = std::time::Instant::now();
    assert_fails_closed("loop", |f| *f == Fault::Timeout(50), 503);
    // Two timed-out calls of 50 ms plus set-up; a generous bound that still catches a
    // deadline that never fires.
    assert!(start.elapsed() < std::time::Duration::from_secs(20), "{:?}", start.elapsed());
}

#[test]
fn unbounded_recursion_is_a_trap() {
    assert_fails_closed("recurse", |f| matches!(f, Fault::Trap(_)), 500);
}

#[test]
fn a_memory_bomb_is_memory_exhaustion() {
    assert_fails_closed("oom", |f| *f == Fault::MemoryExhausted(24), 503);
}

#[test]
fn a_giant_string_is_an_invalid_return() {
    assert_fails_closed("huge-string", |f| matches!(f, Fault::InvalidReturn(m) if m.contains("max_return_bytes")), 500);
}

#[test]
fn a_million_redactions_fail_closed() {
    let set = set_with("many-redactions", false);
    let verdict = set.evaluate_request(&req());
    assert_eq!(verdict.kind(), DecisionKind::Deny, "{:?}", verdict.policies);
    assert!(verdict.policies[0].fault.is_some());
}

#[test]
fn invalid_outcomes_are_refused() {
    for mode in ["bad-status", "bad-pointer", "empty-group"] {
        assert_fails_closed(mode, |f| matches!(f, Fault::InvalidReturn(_)), 500);
    }
}

#[test]
fn fail_open_counts_a_fault_as_allow_but_records_it() {
    let set = set_with("panic", true);
    let verdict = set.evaluate_request(&req());
    assert_eq!(verdict.decision, Decision::Allow);
    assert_eq!(verdict.policies.len(), 2, "evaluation went on to the next policy");
    assert!(matches!(verdict.policies[0].fault, Some(Fault::Trap(_))));
    assert!(verdict.policies[0].reason.contains("fail-open"));
}

#[test]
fn faults_at_load_name_the_export() {
    let engine = common::engine();
    let shared = Shared::default();
    let err = Policy::load(&engine, misbehave("m", json!({"metadata": "panic"})), &shared).unwrap_err();
    assert!(matches!(err, LoadError::Fault { export: "metadata", .. }), "{err}");
    let err = Policy::load(&engine, misbehave("m", json!({"init": "panic"})), &shared).unwrap_err();
    assert!(matches!(err, LoadError::Fault { export: "init", .. }), "{err}");
    let err = Policy::load(&engine, misbehave("m", json!({"init": "reject"})), &shared).unwrap_err().to_string();
    assert!(err.contains("policy `m`") && err.contains("setting `init`"), "{err}");
    let err = Policy::load(&engine, misbehave("m", json!({"metadata": "no-phases"})), &shared).unwrap_err().to_string();
    assert!(err.contains("phases"), "{err}");
}

#[test]
fn the_response_phase_fails_closed_too() {
    let engine = common::engine();
    let policy = Policy::load(&engine, misbehave("m", json!({"on_response": "panic"})), &Shared::default()).unwrap();
    let response = portcullis_host::Response::default();
    assert!(matches!(policy.evaluate_response(&req(), &response), Err(Fault::Trap(_))));
    assert!(policy.evaluate_request(&req()).is_ok(), "the request phase is unaffected");
}
