//! Contract versions: a component built against `portcullis:policy@0.1.0` still loads and
//! decides exactly as before 0.2 (every decision, labels, a capability import; fresh,
//! pre-initialised and reused instances), a 0.2 component's masks and name targets reach
//! the applier, and other versions are refused naming the two the host speaks.

mod common;

use common::component;
use portcullis_host::decision::{Action, Approval, Decision, Denial, Mask, Target};
use portcullis_host::{
    Body, Capability, ContractError, LoadError, Outcome, Policy, PolicySpec, Redaction, Request, Response, Reuse,
    Shared, Source,
};
use serde_json::{Value, json};

fn legacy(preinit: bool, reuse: bool) -> Policy {
    let mut spec = PolicySpec::new("legacy", Source::File(component("legacy-contract")));
    spec.capabilities = vec![Capability::Log];
    spec.preinit = Some(preinit);
    if reuse {
        spec.reuse = Some(Reuse::default());
    }
    Policy::load(&common::engine(), spec, &Shared::default()).expect("a 0.1 component loads")
}

fn at(path: &str) -> Request {
    common::request(json!({"url": format!("https://api.test{path}?token=t1&page=2"), "method": "POST"}))
}

fn labelled(decision: Decision) -> Outcome {
    Outcome { decision, labels: vec![("contract".into(), "0.1".into())] }
}

fn remove(target: Target) -> Redaction {
    Redaction { target, action: Action::Remove }
}

fn replace(target: Target, text: &str) -> Redaction {
    Redaction { target, action: Action::Replace(text.into()) }
}

#[test]
fn a_0_1_component_loads_and_decides_as_before() {
    for (preinit, reuse) in [(false, false), (true, false), (true, true), (false, true)] {
        let policy = legacy(preinit, reuse);
        let how = format!("preinit {preinit}, reuse {reuse}");
        assert_eq!(policy.contract_version(), "0.1.0", "{how}");
        assert_eq!(policy.preinitialised(), preinit, "{how}");
        assert_eq!(policy.metadata().name, "legacy-contract");
        assert!(policy.metadata().request_phase && policy.metadata().response_phase);
        assert_eq!(policy.imports(), [Capability::Log]);
        // Twice each, so that a reused instance serves a second call.
        for _ in 0..2 {
            assert_eq!(policy.evaluate_request(&at("/allow")).unwrap(), labelled(Decision::Allow), "{how}");
            assert_eq!(
                policy.evaluate_request(&at("/deny")).unwrap(),
                labelled(Decision::Deny(Denial {
                    status: 403,
                    code: "legacy-deny".into(),
                    reason: "denied by a 0.1 policy".into()
                })),
                "{how}"
            );
            assert_eq!(
                policy.evaluate_request(&at("/redact")).unwrap(),
                labelled(Decision::Redact {
                    redactions: vec![
                        remove(Target::Header("x-api-key".into())),
                        replace(Target::Query("token".into()), "***"),
                        remove(Target::JsonPointer("/card/cvc".into())),
                        replace(Target::JsonPointer("/card/number".into()), "****"),
                    ]
                }),
                "{how}"
            );
            assert_eq!(
                policy.evaluate_request(&at("/approve")).unwrap(),
                labelled(Decision::RequireApproval(Approval {
                    reason: "a 0.1 policy asks".into(),
                    approver_group: "finance".into(),
                    ttl_seconds: 600
                })),
                "{how}"
            );
            let response = Response { status: 200, headers: Vec::new(), body: None };
            assert_eq!(
                policy.evaluate_response(&at("/allow"), &response).unwrap(),
                labelled(Decision::Redact {
                    redactions: vec![replace(Target::JsonPointer("/email".into()), "[hidden]")]
                }),
                "{how}"
            );
        }
    }
}

#[test]
fn a_0_1_redaction_applies_as_before() {
    let policy = legacy(true, false);
    let mut request = at("/redact");
    request.headers = vec![("x-api-key".into(), "k".into()), ("content-type".into(), "application/json".into())];
    request.body = Some(Body::json(&json!({"card": {"number": "4111111111111111", "cvc": "123"}, "amount": 5})));
    let outcome = policy.evaluate_request(&request).unwrap();
    let Decision::Redact { redactions } = &outcome.decision else { panic!("{outcome:?}") };
    let applied = portcullis_host::redact::apply_to_request(&mut request, redactions).unwrap();
    let body: Value = serde_json::from_slice(&request.body.as_ref().unwrap().bytes).unwrap();
    assert_eq!(body, json!({"card": {"number": "****"}, "amount": 5}));
    assert_eq!(request.query, [("token".to_owned(), "***".to_owned()), ("page".to_owned(), "2".to_owned())]);
    assert!(request.headers.iter().all(|(n, _)| n != "x-api-key"));
    assert_eq!(
        applied.fields(),
        ["header:x-api-key", "query:token", "json:/card/cvc", "json:/card/number"],
        "the audit names the same fields as before"
    );
}

#[test]
fn a_0_1_component_still_needs_its_capabilities_granted() {
    let spec = PolicySpec::new("legacy", Source::File(component("legacy-contract")));
    let err = Policy::load(&common::engine(), spec, &Shared::default()).unwrap_err();
    let LoadError::Contract { error: ContractError::NotGranted { capability, import }, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(*capability, Capability::Log);
    assert_eq!(import, "portcullis:policy/log@0.1.0");
}

#[test]
fn a_0_2_component_speaks_0_2_and_its_masks_reach_the_applier() {
    let mut spec = PolicySpec::new("m", Source::File(component("hostile-misbehave")));
    spec.settings = json!({"on_response": "mask-0-2"});
    let policy = Policy::load(&common::engine(), spec, &Shared::default()).unwrap();
    assert_eq!(policy.contract_version(), "0.2.0");
    let mut response = Response {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: Some(Body::json(&json!({
            "card_number": "4111111111111111",
            "payer": {"card_number": "5500005555555559", "note": "receipt to alice@example.com"}
        }))),
    };
    let outcome = policy.evaluate_response(&at("/allow"), &response).unwrap();
    let Decision::Redact { redactions } = &outcome.decision else { panic!("{outcome:?}") };
    assert_eq!(redactions[0].action, Action::Mask(Mask::KeepLast(4)));
    let applied = portcullis_host::redact::apply_to_response(&mut response, redactions).unwrap();
    let body: Value = serde_json::from_slice(&response.body.as_ref().unwrap().bytes).unwrap();
    assert_eq!(
        body,
        json!({
            "card_number": "************1111",
            "payer": {"card_number": "************5559", "note": "receipt to *****@example.com"}
        })
    );
    assert_eq!(applied.fields(), ["json:/card_number", "json:/payer/card_number", "json:/payer/note"]);
}

#[test]
fn an_unknown_detector_fails_closed() {
    let mut spec = PolicySpec::new("m", Source::File(component("hostile-misbehave")));
    spec.settings = json!({"on_request": "bad-detector"});
    let policy = Policy::load(&common::engine(), spec, &Shared::default()).unwrap();
    let fault = policy.evaluate_request(&at("/x")).unwrap_err().to_string();
    assert!(fault.contains("`ssn` is not a detector") && fault.contains("card-number"), "{fault}");
}

#[test]
fn other_versions_are_refused_naming_both_accepted_versions() {
    let spec = PolicySpec::new("f", Source::File(component("hostile-future-contract")));
    let err = Policy::load(&common::engine(), spec, &Shared::default()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, LoadError::Contract { error: ContractError::IncompatibleVersion { .. }, .. }), "{text}");
    assert!(text.contains("portcullis:policy@0.3.0"), "{text}");
    assert!(text.contains("portcullis:policy@0.2.0") && text.contains("portcullis:policy@0.1.0"), "{text}");
}

#[test]
fn inspect_shows_the_contract_a_component_speaks() {
    for (name, version) in [("legacy-contract", "0.1.0"), ("agent-guard", "0.2.0")] {
        let path = component(name);
        let out = common::portcullis_cli(&["inspect", path.to_str().unwrap()], &[]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let line = text.lines().find(|l| l.starts_with("contract")).unwrap_or_default();
        assert!(line.contains(&format!("portcullis:policy@{version}")), "{name}: {text}");
    }
}

/// Through `portcullis serve`'s proxy: a 0.2 policy's masks reach the caller, and a
/// pseudonym without a `[redaction]` key is refused rather than passed on.
#[test]
fn the_proxy_applies_masks_and_refuses_pseudonyms_without_a_key() {
    use common::serve::{Server, Upstream, send};
    let upstream = Upstream::start();
    let tmp = common::TempDir::new("contract-02-serve");
    let policy = component("hostile-misbehave");
    let config = |redaction: &str| {
        format!(
            r#"{redaction}
[policies.m]
module = "{module}"
settings = {{ on_response = "pseudonym-0-2" }}

[[routes]]
paths = ["/customers/**"]
policies = ["m"]

[server.proxy]
listen = "127.0.0.1:0"
upstream = "http://{upstream}"
"#,
            module = policy.display(),
            upstream = upstream.addr,
        )
    };

    let without = tmp.write("without.toml", config(""));
    let server = Server::start(&without, &[]);
    let answer = send("GET", &server.url("proxy", "/customers/42"), &[], b"");
    let text = String::from_utf8_lossy(&answer.body);
    assert_ne!(answer.status, 200, "{text}");
    assert!(!text.contains("+44 20 7946 0000") && !text.contains("ada@example.com"), "nothing leaks: {text}");
    drop(server);

    let with = tmp.write("with.toml", config("[redaction]\npseudonym_key_env = \"PORTCULLIS_TEST_PSEUDONYM_KEY\"\n"));
    let server = Server::start(&with, &[("PORTCULLIS_TEST_PSEUDONYM_KEY", "a pseudonym key of 16+ bytes")]);
    let body = |answer: common::serve::Answer| -> Value {
        assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
        serde_json::from_slice(&answer.body).unwrap()
    };
    let first = body(send("GET", &server.url("proxy", "/customers/42"), &[], b""));
    let second = body(send("GET", &server.url("proxy", "/customers/42"), &[], b""));
    assert_eq!(first["email"], "***@example.com");
    let phone = first["phone"].as_str().unwrap();
    assert!(phone.starts_with("pn_") && phone.len() == 29, "{phone}");
    assert_eq!(second["phone"], phone, "the same value, the same pseudonym");
    assert_eq!(first["name"], "Ada", "untouched fields are kept");
}
