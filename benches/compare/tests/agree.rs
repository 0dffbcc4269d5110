//! The comparison is meaningful only if every variant decides alike: native Rust, Cedar,
//! Rego (interpreter and VM) and the Wasm components (fresh and reused instances) must
//! give the same outcome, field by field, on every benchmarked request.
//!
//!   bash scripts/build-policies.sh && (cd benches/compare && cargo test --release)

use portcullis_compare::cedar::{CedarGuard, CedarScopes};
use portcullis_compare::native::{NativeGuard, NativeScopes};
use portcullis_compare::rego::{RegoInterpreter, RegoVm, Rules};
use portcullis_compare::*;

#[test]
fn agent_guard_variants_agree_on_every_request() {
    let engine = engine();
    let policy = load_wasm(&engine, "agent-guard", AGENT_GUARD_SETTINGS);
    let rules = Rules::agent_guard(&guard_settings());
    let requests = corpus();
    let compared = check_agreement(
        &mut [
            &mut NativeGuard(guard_settings()),
            &mut WasmFresh(&policy),
            &mut WasmReused(policy.reusable_instance().unwrap()),
            &mut CedarGuard::new(guard_settings()),
            &mut RegoInterpreter::new(&rules),
            &mut RegoVm::new(&rules),
        ],
        &requests,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(compared, requests.len() * 5);
}

#[test]
fn scopes_variants_agree_on_every_request() {
    let engine = engine();
    let policy = load_wasm(&engine, "scopes", SCOPES_SETTINGS);
    let rules = Rules::scopes(&scope_settings());
    let requests = corpus();
    let compared = check_agreement(
        &mut [
            &mut NativeScopes(scope_settings()),
            &mut WasmFresh(&policy),
            &mut WasmReused(policy.reusable_instance().unwrap()),
            &mut CedarScopes::new(scope_settings()),
            &mut RegoInterpreter::new(&rules),
            &mut RegoVm::new(&rules),
        ],
        &requests,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(compared, requests.len() * 5);
}

#[test]
fn the_corpus_reaches_every_outcome() {
    let requests = corpus();
    let mut guard = NativeGuard(guard_settings());
    let mut scopes = NativeScopes(scope_settings());
    let mut kinds = std::collections::BTreeSet::new();
    for r in &requests {
        let g = guard.decide(r);
        let s = scopes.decide(r);
        kinds.insert(("agent-guard", g.labels[0].1.clone()));
        kinds.insert(("scopes", if s.labels.len() > 1 { "missing".into() } else { s.labels[0].1.clone() }));
    }
    for rule in [
        "not-an-agent",
        "agent-without-user",
        "agent-read-only",
        "agent-delete-forbidden",
        "agent-write-needs-approval",
    ] {
        assert!(kinds.contains(&("agent-guard", rule.to_owned())), "no request reaches agent-guard's {rule}");
    }
    for rule in ["default", "missing", "rules[0]", "rules[2]", "rules[8]"] {
        assert!(kinds.contains(&("scopes", rule.to_owned())), "no request reaches scopes' {rule}");
    }
}
