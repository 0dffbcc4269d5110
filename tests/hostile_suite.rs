//! The whole hostile suite in one process, on one engine and one policy set: every
//! misbehaving policy (in both phases) fails closed naming itself and its fault, every
//! refused component is refused at load, and a well-behaved route keeps answering
//! normally between each, and after all of them, under concurrent load.

mod common;

use common::{component, request};
use portcullis_host::{Decision, Fault, Policy, PolicySet, PolicySpec, Response, RouteSpec, Shared, Source};
use serde_json::json;

/// Every fault mode the hostile component has, with the fault it must produce.
const MODES: [(&str, &str); 10] = [
    ("panic", "trap"),
    ("unreachable", "trap"),
    ("loop", "timeout"),
    ("recurse", "trap"),
    ("oom", "memory_exhausted"),
    ("huge-string", "invalid_return"),
    // A million redactions do not fit in 24 MiB: the guest runs out before returning.
    ("many-redactions", "memory_exhausted"),
    ("bad-status", "invalid_return"),
    ("bad-pointer", "invalid_return"),
    ("empty-group", "invalid_return"),
];

fn fault_kind(fault: &Fault) -> &'static str {
    match fault {
        Fault::Trap(_) => "trap",
        Fault::Timeout(_) => "timeout",
        Fault::MemoryExhausted(_) => "memory_exhausted",
        Fault::InvalidReturn(_) => "invalid_return",
        Fault::Instantiate(_) => "instantiate",
        other => panic!("a fault kind this suite does not know: {other:?}"),
    }
}

fn set() -> PolicySet {
    let engine = common::engine();
    let mut builder = PolicySet::builder(&engine);
    for (mode, _) in MODES {
        let mut spec = PolicySpec::new(mode, Source::File(component("hostile-misbehave")));
        spec.settings = json!({"on_request": mode, "on_response": mode});
        // Short only where the timeout is the fault under test: the memory-heavy modes must
        // end in their own fault even on a busy machine.
        spec.limits.timeout_ms = if mode == "loop" { 50 } else { 2_000 };
        spec.limits.memory_mb = 24;
        builder = builder.policy(spec).unwrap().route(RouteSpec {
            name: mode.into(),
            paths: vec![format!("/{mode}")],
            policies: vec![mode.into()],
            ..RouteSpec::default()
        });
    }
    let mut guard = PolicySpec::new("agent-guard", Source::File(component("agent-guard")));
    guard.settings = json!({"approver_group": "ops"});
    builder
        .policy(guard)
        .unwrap()
        .route(RouteSpec {
            name: "good".into(),
            paths: vec!["/good".into()],
            policies: vec!["agent-guard".into()],
            ..RouteSpec::default()
        })
        .build()
        .unwrap()
}

fn req(path: &str, method: &str) -> portcullis_host::Request {
    request(json!({"method": method, "url": format!("https://api.test{path}"),
        "principal": {"kind": "agent", "id": "bot", "on_behalf_of": "alice"}}))
}

fn assert_good(set: &PolicySet, after: &str) {
    assert_eq!(set.evaluate_request(&req("/good", "GET")).decision, Decision::Allow, "after {after}");
    let held = set.evaluate_request(&req("/good", "POST"));
    assert!(matches!(held.decision, Decision::RequireApproval(_)), "after {after}: {held:?}");
}

#[test]
fn the_host_survives_every_hostile_policy_in_one_process() {
    let set = set();
    for (mode, expected) in MODES {
        for phase in ["request", "response"] {
            let request = req(&format!("/{mode}"), "GET");
            let verdict = if phase == "request" {
                set.evaluate_request(&request)
            } else {
                set.evaluate_response(&request, &Response::default())
            };
            let Decision::Deny(denial) = &verdict.decision else { panic!("{mode} {phase}: {verdict:?}") };
            assert_eq!(denial.code, "policy-error", "{mode} {phase}");
            assert!(denial.reason.contains(&format!("policy `{mode}`")), "{mode} {phase}: {}", denial.reason);
            let fault = verdict.policies[0].fault.as_ref().expect("fault recorded");
            assert_eq!(fault_kind(fault), expected, "{mode} {phase}: {fault:?}");
            assert_good(&set, mode);
        }
    }

    // Components refused at load, on the same engine, leave it serving.
    let engine = set.engine().clone();
    for name in ["hostile-wasi-user", "hostile-other-world", "hostile-future-contract"] {
        let err = Policy::load(&engine, PolicySpec::new(name, Source::File(component(name))), &Shared::default())
            .err()
            .unwrap_or_else(|| panic!("{name} loaded"));
        assert!(err.to_string().contains(name), "{name}: {err}");
        assert_good(&set, name);
    }
    for (export, mode) in
        [("metadata", "panic"), ("metadata", "loop"), ("init", "panic"), ("init", "loop"), ("init", "reject")]
    {
        let mut spec = PolicySpec::new("m", Source::File(component("hostile-misbehave")));
        spec.settings = json!({ export: mode });
        spec.limits.timeout_ms = 50;
        assert!(Policy::load(&engine, spec, &Shared::default()).is_err(), "{export}={mode} loaded");
        assert_good(&set, &format!("{export}={mode}"));
    }

    // Hostile and good requests at once from several threads: every answer is right.
    std::thread::scope(|scope| {
        for t in 0..4 {
            let set = &set;
            scope.spawn(move || {
                for i in 0..20 {
                    let (mode, expected) = MODES[(t * 20 + i) % MODES.len()];
                    let verdict = set.evaluate_request(&req(&format!("/{mode}"), "GET"));
                    let fault = verdict.policies[0].fault.as_ref().expect("fault");
                    assert_eq!(fault_kind(fault), expected, "{mode} under load");
                    assert_good(set, mode);
                }
            });
        }
    });
}
