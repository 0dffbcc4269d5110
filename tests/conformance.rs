//! Cross-language conformance: the Rust, Python and JavaScript versions of `agent-guard`,
//! `pii-redact` and `minimise` give identical verdicts (decision, code, reason, redacted fields, the
//! deciding policy, labels) over every entry of ../shared/traffic/ and every example
//! request, for seven callers, in both phases.
//!
//! The Python and JavaScript components are built by `scripts/build-python-policies.sh`
//! and `scripts/build-js-policies.sh` (which the test command runs first; they install
//! componentize-py and componentize-js).

mod common;

use std::path::PathBuf;

use common::component;
use portcullis_host::adapters::traffic::read_traffic;
use portcullis_host::{
    DecisionKind, Exchange, PolicySet, PolicySpec, Principal, PrincipalKind, RouteSpec, Source, Verdict,
};
use serde_json::{Value, json};

/// A guest language other than Rust, with the component prefix and build script its
/// policies have.
#[derive(Debug, Clone, Copy)]
enum Lang {
    Python,
    Js,
}

impl Lang {
    /// The component as the language's build script names it (`target/policies/LANG-NAME.wasm`).
    fn component(self, name: &str) -> PathBuf {
        let (prefix, script) = match self {
            Lang::Python => ("python", "build-python-policies.sh"),
            Lang::Js => ("js", "build-js-policies.sh"),
        };
        let path = common::root().join("target/policies").join(format!("{prefix}-{name}.wasm"));
        assert!(path.exists(), "{} is missing: run scripts/{script}", path.display());
        path
    }
}

/// One policy on a route that covers every request.
fn single(name: &str, module: PathBuf, settings: &Value) -> PolicySet {
    let engine = common::engine();
    let mut spec = PolicySpec::new(name, Source::File(module));
    spec.settings = settings.clone();
    // Generous: the test build of the host is unoptimised, and CPython's or the JS engine's
    // start-up in a fresh instance is far slower there than in a release build
    // (docs/writing-policies-python.md).
    spec.limits.timeout_ms = 10_000;
    spec.limits.memory_mb = 64;
    PolicySet::builder(&engine)
        .policy(spec)
        .unwrap_or_else(|e| panic!("{e}"))
        .route(RouteSpec { name: "all".into(), policies: vec![name.into()], ..RouteSpec::default() })
        .build()
        .unwrap()
}

fn principal(kind: PrincipalKind, id: &str, on_behalf_of: Option<&str>) -> Principal {
    Principal {
        kind,
        id: id.into(),
        scopes: vec!["pets:read".into()],
        on_behalf_of: on_behalf_of.map(Into::into),
        ..Principal::default()
    }
}

/// Every exchange of the shared captures and the example requests.
fn exchanges() -> Vec<Exchange> {
    let mut all = Vec::new();
    for file in common::shared_captures() {
        read_traffic(&file, |item| all.push(item.result.unwrap_or_else(|e| panic!("{e}")))).unwrap();
    }
    let mut examples: Vec<PathBuf> =
        std::fs::read_dir(common::root().join("examples/requests")).unwrap().map(|e| e.unwrap().path()).collect();
    examples.sort();
    for file in examples {
        all.push(serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap());
    }
    all
}

/// Each policy's labels, in order.
fn labels(verdict: &Verdict) -> Vec<Vec<(String, String)>> {
    verdict.policies.iter().map(|p| p.labels.clone()).collect()
}

/// Compares `name` in `lang` with the Rust original over every exchange and caller; returns
/// the decisions seen, so a test can check the comparison covered what it should.
fn conform(lang: Lang, name: &str, settings: Value) -> Vec<DecisionKind> {
    common::policies_dir();
    let rust = single(name, component(name), &settings);
    let other = single(name, lang.component(name), &settings);
    let callers = [
        Principal::default(),
        principal(PrincipalKind::User, "alice", None),
        principal(PrincipalKind::Service, "billing", None),
        principal(PrincipalKind::Agent, "support-bot", Some("alice")),
        principal(PrincipalKind::Agent, "lonely-bot", None),
        principal(PrincipalKind::Agent, "copilot", Some("bob")),
    ];
    let mut seen = Vec::new();
    let mut other_us = Vec::new();
    let exchanges = exchanges();
    assert!(exchanges.len() > 50, "only {} exchanges", exchanges.len());
    for exchange in &exchanges {
        let recorded = exchange.request.principal.clone();
        for caller in callers.iter().chain([&recorded]) {
            let mut request = exchange.request.clone();
            request.principal = caller.clone();
            let at = format!("{} {} as {:?} {}", request.method, request.path, caller.kind, caller.id);
            let (a, b) = (rust.evaluate_request(&request), other.evaluate_request(&request));
            other_us.push(b.elapsed_us);
            assert!(a.policies.iter().all(|p| p.fault.is_none()), "{at}: rust faulted: {a:?}");
            assert_eq!(
                (&a.decision, &a.decided_by),
                (&b.decision, &b.decided_by),
                "{lang:?} {name}, request phase, {at}"
            );
            assert_eq!(labels(&a), labels(&b), "{lang:?} {name}, request phase labels, {at}");
            seen.push(a.kind());
            if let Some(response) = &exchange.response {
                let (a, b) = (rust.evaluate_response(&request, response), other.evaluate_response(&request, response));
                assert!(a.policies.iter().all(|p| p.fault.is_none()), "{at}: rust faulted: {a:?}");
                assert_eq!(
                    (&a.decision, &a.decided_by),
                    (&b.decision, &b.decided_by),
                    "{lang:?} {name}, response phase, {at}"
                );
                assert_eq!(labels(&a), labels(&b), "{lang:?} {name}, response phase labels, {at}");
                seen.push(a.kind());
            }
        }
    }
    other_us.sort_unstable();
    eprintln!("{lang:?} {name}: {} request-phase calls, p50 {} us", other_us.len(), other_us[other_us.len() / 2]);
    seen
}

fn agent_guard_settings() -> Value {
    json!({"approver_group": "api-owners", "ttl_seconds": 600})
}

fn pii_redact_settings() -> Value {
    json!({
        "fields": ["/author/firstname", "/author/lastname", "/*/name", "/*/photoUrls", "/email", "/phone", "/customers/*/email"],
        "mask": "[redacted]",
        "third_party_hosts": ["*.partner.example", "petstore.swagger.io"],
        "headers": ["x-internal-user", "user-agent"],
    })
}

/// Every selector and mask of `minimise`, with the defaults: rules that match some of the
/// shared traffic's hosts, paths and callers and miss others.
fn minimise_settings() -> Value {
    json!({
        "defaults": true,
        "first_party_hosts": ["localhost", "*.example.com"],
        "rules": [
            {"name": "pets", "fields": ["name", "photoUrls"], "mask": "pseudonym", "paths": ["/v2/pet/**"]},
            {"name": "agents", "fields": ["email", "phone"], "detect": ["email"], "mask": "replace:[agent]",
             "principals": ["agent"], "direction": "both"},
            {"fields": ["id"], "mask": "keep-last:2", "hosts": ["petstore.swagger.io"], "direction": "request"},
            {"name": "cars", "fields": ["owner"], "mask": "fixed:6", "paths": ["/api/cars/*"], "principals": ["user", "service"]},
            {"name": "partners", "detect": ["jwt"], "mask": "remove", "third_party": true, "direction": "both"}
        ],
    })
}

/// Fails unless the comparison met every kind of decision it is meant to compare.
fn assert_saw(seen: &[DecisionKind], kinds: &[DecisionKind]) {
    for kind in kinds {
        assert!(seen.contains(kind), "no {kind:?} among {} verdicts: the comparison proves too little", seen.len());
    }
}

#[test]
fn agent_guard_is_the_same_in_rust_and_python() {
    let seen = conform(Lang::Python, "agent-guard", agent_guard_settings());
    assert_saw(&seen, &[DecisionKind::Allow, DecisionKind::Deny, DecisionKind::RequireApproval]);
}

#[test]
fn agent_guard_is_the_same_in_rust_and_javascript() {
    let seen = conform(Lang::Js, "agent-guard", agent_guard_settings());
    assert_saw(&seen, &[DecisionKind::Allow, DecisionKind::Deny, DecisionKind::RequireApproval]);
}

#[test]
fn pii_redact_is_the_same_in_rust_and_python() {
    let seen = conform(Lang::Python, "pii-redact", pii_redact_settings());
    assert_saw(&seen, &[DecisionKind::Allow, DecisionKind::Redact]);
}

#[test]
fn pii_redact_is_the_same_in_rust_and_javascript() {
    let seen = conform(Lang::Js, "pii-redact", pii_redact_settings());
    assert_saw(&seen, &[DecisionKind::Allow, DecisionKind::Redact]);
}

#[test]
fn minimise_is_the_same_in_rust_and_python() {
    let seen = conform(Lang::Python, "minimise", minimise_settings());
    assert_saw(&seen, &[DecisionKind::Allow, DecisionKind::Redact]);
}

#[test]
fn minimise_is_the_same_in_rust_and_javascript() {
    let seen = conform(Lang::Js, "minimise", minimise_settings());
    assert_saw(&seen, &[DecisionKind::Allow, DecisionKind::Redact]);
}
