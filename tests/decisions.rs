//! Every decision kind, both phases, routing and combining, end to end through real
//! components built from `policies/rust/` and the example config.

mod common;

use common::{component, request};
use portcullis_host::decision::{Action, Target};
use portcullis_host::{
    Decision, DecisionKind, Exchange, LoadError, PolicySet, PolicySpec, Response, RouteSpec, Source,
};
use serde_json::json;

/// The example config the demo uses, with its policies built.
fn example_set() -> PolicySet {
    common::policies_dir();
    PolicySet::from_config(
        &portcullis_host::Config::read(&common::root().join("examples/portcullis.toml")).unwrap(),
        &common::root().join("examples/portcullis.toml"),
        &common::engine(),
    )
    .expect("the example config loads")
}

fn example(name: &str) -> Exchange {
    let path = common::root().join("examples/requests").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn spec(name: &str, component_name: &str, settings: serde_json::Value) -> PolicySpec {
    let mut spec = PolicySpec::new(name, Source::File(component(component_name)));
    spec.settings = settings;
    spec
}

#[test]
fn allow_user_with_scope_runs_every_policy_on_the_route() {
    let set = example_set();
    let verdict = set.evaluate_request(&example("01-user-reads-invoice.json").request);
    assert_eq!(verdict.decision, Decision::Allow);
    assert_eq!(verdict.route.as_deref(), Some("invoices"));
    let names: Vec<&str> = verdict.policies.iter().map(|p| p.policy.as_str()).collect();
    assert_eq!(names, ["rate-limit", "scopes", "agent-guard"]);
    for p in &verdict.policies {
        assert_eq!(p.decision, DecisionKind::Allow, "{p:?}");
        assert_eq!(p.digest.len(), 64, "every result records the component digest");
        assert!(p.fault.is_none());
    }
}

#[test]
fn deny_agent_delete_names_the_deciding_policy() {
    let verdict = example_set().evaluate_request(&example("04-agent-deletes-invoice.json").request);
    let Decision::Deny(denial) = &verdict.decision else { panic!("expected deny, got {verdict:?}") };
    assert_eq!(denial.status, 403);
    assert_eq!(denial.code, "agent-delete-forbidden");
    assert_eq!(verdict.decided_by.as_deref(), Some("agent-guard"));
    assert!(!verdict.is_allowed());
}

#[test]
fn first_deny_wins_and_stops_evaluation() {
    let verdict = example_set().evaluate_request(&example("05-service-lacks-scope.json").request);
    let Decision::Deny(denial) = &verdict.decision else { panic!("expected deny, got {verdict:?}") };
    assert_eq!(denial.code, "missing-scope");
    assert!(denial.reason.contains("invoices:write"), "{}", denial.reason);
    assert_eq!(verdict.decided_by.as_deref(), Some("scopes"));
    let names: Vec<&str> = verdict.policies.iter().map(|p| p.policy.as_str()).collect();
    assert_eq!(names, ["rate-limit", "scopes"], "agent-guard must not run after a deny");
}

#[test]
fn require_approval_for_agent_writes() {
    let verdict = example_set().evaluate_request(&example("03-agent-creates-invoice.json").request);
    let Decision::RequireApproval(approval) = &verdict.decision else { panic!("expected approval, got {verdict:?}") };
    assert_eq!(approval.approver_group, "finance-approvers");
    assert_eq!(approval.ttl_seconds, 900);
    assert_eq!(verdict.decided_by.as_deref(), Some("agent-guard"));
    assert!(!verdict.is_allowed());
}

#[test]
fn response_phase_redacts_nested_arrays_and_headers() {
    let set = example_set();
    let Exchange { request, response } = example("06-user-lists-customers.json");
    let mut response = response.expect("the example has a response");
    let request_verdict = set.evaluate_request(&request);
    assert_eq!(request_verdict.decision, Decision::Allow);

    let verdict = set.evaluate_response(&request, &response);
    assert_eq!(verdict.kind(), DecisionKind::Redact);
    assert!(verdict.redactions().iter().any(|r| r.target == Target::JsonPointer("/customers/*/email".into())));
    let applied = verdict.apply_to_response(&mut response).expect("JSON body redacts");
    assert!(!applied.is_empty());

    let body: serde_json::Value = serde_json::from_slice(&response.body.as_ref().unwrap().bytes).unwrap();
    for customer in body["customers"].as_array().unwrap() {
        assert_eq!(customer["email"], "***");
        assert_eq!(customer["phone"], "***");
        assert_ne!(customer["name"], "***", "fields not configured are kept");
    }
    assert_eq!(response.header("x-internal-user"), None, "configured header removed");
    assert_eq!(response.header("content-type"), Some("application/json"));
}

#[test]
fn request_phase_redacts_bodies_bound_for_third_parties() {
    let set = example_set();
    let Exchange { mut request, .. } = example("07-agent-posts-to-partner.json");
    let verdict = set.evaluate_request(&request);
    assert_eq!(verdict.kind(), DecisionKind::Redact, "{verdict:?}");
    verdict.apply_to_request(&mut request).unwrap();
    let body: serde_json::Value = serde_json::from_slice(&request.body.as_ref().unwrap().bytes).unwrap();
    assert_eq!(body, json!({"email": "***", "phone": "***", "company": "Acme"}));
}

#[test]
fn requests_no_route_covers_are_denied_by_default() {
    let verdict = example_set().evaluate_request(&example("08-unrouted.json").request);
    let Decision::Deny(denial) = &verdict.decision else { panic!("expected deny, got {verdict:?}") };
    assert_eq!((denial.status, denial.code.as_str()), (403, "no-route"));
    assert!(verdict.route.is_none());
    assert!(verdict.policies.is_empty());
}

#[test]
fn approval_beats_redaction_and_redactions_are_united() {
    let engine = common::engine();
    let set = PolicySet::builder(&engine)
        .policy(spec("mask-email", "pii-redact", json!({"fields": ["/email"], "third_party_hosts": ["x.test"]})))
        .unwrap()
        .policy(spec(
            "drop-phone",
            "pii-redact",
            json!({"fields": ["/phone", "/email"], "third_party_hosts": ["x.test"]}),
        ))
        .unwrap()
        .policy(spec("agent-guard", "agent-guard", json!({"approver_group": "ops"})))
        .unwrap()
        .route(RouteSpec {
            name: "all".into(),
            policies: vec!["mask-email".into(), "drop-phone".into(), "agent-guard".into()],
            ..RouteSpec::default()
        })
        .build()
        .unwrap();

    let user = request(json!({"method": "POST", "url": "https://x.test/a", "principal": {"kind": "user", "id": "u"}}));
    let verdict = set.evaluate_request(&user);
    let Decision::Redact { redactions } = &verdict.decision else { panic!("expected redact, got {verdict:?}") };
    let pointers: Vec<String> = redactions.iter().map(|r| r.target.to_string()).collect();
    assert_eq!(pointers, ["json:/email", "json:/phone"], "union without duplicates, in policy order");
    assert!(redactions.iter().all(|r| r.action == Action::Remove));

    let agent = request(json!({"method": "POST", "url": "https://x.test/a",
        "principal": {"kind": "agent", "id": "bot", "on_behalf_of": "u"}}));
    let verdict = set.evaluate_request(&agent);
    assert_eq!(verdict.kind(), DecisionKind::RequireApproval, "{verdict:?}");
    assert_eq!(verdict.policies.len(), 3, "approval does not stop evaluation; only deny does");
    assert_eq!(verdict.policies[0].decision, DecisionKind::Redact);
}

#[test]
fn first_matching_route_wins() {
    let engine = common::engine();
    let set = PolicySet::builder(&engine)
        .policy(spec("guard", "agent-guard", json!({"approver_group": "ops"})))
        .unwrap()
        .policy(spec("open", "scopes", json!({"default": "allow"})))
        .unwrap()
        .route(RouteSpec {
            name: "admin".into(),
            hosts: vec!["*.example.com".into()],
            paths: vec!["/admin/**".into()],
            methods: vec!["post".into()],
            policies: vec!["guard".into()],
            ..RouteSpec::default()
        })
        .route(RouteSpec { name: "rest".into(), policies: vec!["open".into()], ..RouteSpec::default() })
        .build()
        .unwrap();
    let route =
        |method: &str, url: &str| set.evaluate_request(&request(json!({"method": method, "url": url}))).route.unwrap();
    assert_eq!(route("POST", "https://api.example.com/admin/users/1"), "admin");
    assert_eq!(route("GET", "https://api.example.com/admin/users/1"), "rest", "method must match");
    assert_eq!(route("POST", "https://example.com/admin/users"), "rest", "*.example.com excludes the apex");
    assert_eq!(route("POST", "https://api.example.com/adminx"), "rest");
}

#[test]
fn routes_naming_unknown_policies_are_refused() {
    let engine = common::engine();
    let err = PolicySet::builder(&engine)
        .policy(spec("guard", "agent-guard", json!({"approver_group": "ops"})))
        .unwrap()
        .route(RouteSpec { name: "r".into(), policies: vec!["gaurd".into()], ..RouteSpec::default() })
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("route `r`") && err.contains("`gaurd`") && err.contains("guard"), "{err}");
}

#[test]
fn rate_limit_counts_across_fresh_instances() {
    let engine = common::engine();
    let mut limited = spec("rl", "rate-limit", json!({"limit": 3, "window_seconds": 60}));
    limited.capabilities = vec![portcullis_host::Capability::RateLimit];
    let set = PolicySet::builder(&engine)
        .policy(limited)
        .unwrap()
        .route(RouteSpec { name: "all".into(), policies: vec!["rl".into()], ..RouteSpec::default() })
        .build()
        .unwrap();
    let req = request(json!({"url": "https://x.test/a", "principal": {"kind": "user", "id": "alice"}}));
    let kinds: Vec<DecisionKind> = (0..5).map(|_| set.evaluate_request(&req).kind()).collect();
    assert_eq!(kinds[..3], [DecisionKind::Allow; 3]);
    let verdict = set.evaluate_request(&req);
    let Decision::Deny(denial) = &verdict.decision else { panic!("expected 429, got {verdict:?}") };
    assert_eq!((denial.status, denial.code.as_str()), (429, "rate-limited"));
    let other = request(json!({"url": "https://x.test/a", "principal": {"kind": "user", "id": "bob"}}));
    assert_eq!(set.evaluate_request(&other).kind(), DecisionKind::Allow, "counters are per principal");
}

#[test]
fn settings_errors_name_the_policy_and_the_setting() {
    let engine = common::engine();
    let shared = portcullis_host::Shared::default();
    let err = portcullis_host::Policy::load(&engine, spec("guard", "agent-guard", json!({})), &shared).unwrap_err();
    match &err {
        LoadError::Settings { policy, setting, .. } => {
            assert_eq!(policy, "guard");
            assert_eq!(setting, "approver_group");
        }
        other => panic!("expected a settings error, got {other}"),
    }

    let err = portcullis_host::Policy::load(
        &engine,
        spec("guard", "agent-guard", json!({"approver_group": "ops", "ttl": 5})),
        &shared,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("guard") && err.contains("ttl"), "unknown settings are named: {err}");

    let err = portcullis_host::Policy::load(
        &engine,
        spec("scopes", "scopes", json!({"rules": [{"path": "invoices", "scopes": ["a"]}]})),
        &shared,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("rules[0]"), "the bad rule is named: {err}");
}

#[test]
fn response_phase_skips_policies_without_it() {
    let set = example_set();
    let Exchange { request, .. } = example("01-user-reads-invoice.json");
    let response = Response { status: 200, ..Response::default() };
    let verdict = set.evaluate_response(&request, &response);
    assert_eq!(verdict.decision, Decision::Allow);
    assert!(verdict.policies.is_empty(), "no policy on the invoices route handles responses: {verdict:?}");
}

/// Regression (issue 16): a path over the segment cap is refused before routing, so it can
/// neither cost a glob much nor skip a guarded route and fall through to a later one or to
/// `unmatched = "allow"`.
#[test]
fn over_long_paths_are_refused_before_routing() {
    let engine = common::engine();
    let set = PolicySet::builder(&engine)
        .policy(spec("guard", "agent-guard", json!({"approver_group": "ops"})))
        .unwrap()
        .policy(spec("open", "scopes", json!({"default": "allow"})))
        .unwrap()
        .route(RouteSpec {
            name: "admin".into(),
            paths: vec!["/admin/**/**/x".into(), "/admin/**".into()],
            policies: vec!["guard".into()],
            ..RouteSpec::default()
        })
        .route(RouteSpec { name: "rest".into(), policies: vec!["open".into()], ..RouteSpec::default() })
        .unmatched(portcullis_host::Unmatched::Allow)
        .build()
        .unwrap();
    let cap = portcullis_host::route::MAX_PATH_SEGMENTS;
    let at_cap = format!("https://api.test/admin{}", "/a".repeat(cap - 1));
    assert_eq!(set.evaluate_request(&request(json!({"method": "GET", "url": at_cap}))).route.as_deref(), Some("admin"));
    let over = format!("https://api.test/admin{}", "/a".repeat(16_000));
    let verdict = set.evaluate_request(&request(json!({"method": "GET", "url": over})));
    let Decision::Deny(denial) = &verdict.decision else { panic!("expected deny, got {verdict:?}") };
    assert_eq!((denial.status, denial.code.as_str()), (414, "path-too-long"));
    assert!(verdict.route.is_none() && verdict.policies.is_empty());
}
