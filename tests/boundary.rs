//! What crosses into a policy: bodies only when its metadata asks for them, cut at its
//! cap; the principal and headers as normalised. Checked with `test-probe`, a component
//! that reports what it received as audit labels.

mod common;

use common::{component, request};
use portcullis_host::{Outcome, Policy, PolicySpec, Response, Shared, Source};
use serde_json::json;

fn probe(settings: serde_json::Value, max_body_bytes: usize) -> Policy {
    let mut spec = PolicySpec::new("probe", Source::File(component("test-probe")));
    spec.settings = settings;
    spec.limits.max_body_bytes = max_body_bytes;
    Policy::load(&common::engine(), spec, &Shared::default()).expect("probe loads")
}

fn label<'a>(outcome: &'a Outcome, key: &str) -> &'a str {
    outcome
        .labels
        .iter()
        .find(|(k, _)| k == key)
        .map_or_else(|| panic!("no label {key}: {outcome:?}"), |(_, v)| v.as_str())
}

fn with_body() -> portcullis_host::Request {
    request(json!({
        "method": "POST", "url": "https://api.test/items?a=1&b=2",
        "headers": {"content-type": "application/json", "x-one": "1"},
        "body": {"json": {"text": "0123456789012345678901234567890123456789"}},
        "principal": {"kind": "agent", "id": "bot", "on_behalf_of": "alice"}
    }))
}

#[test]
fn bodies_are_not_copied_unless_asked_for() {
    let outcome = probe(json!({}), 1 << 20).evaluate_request(&with_body()).unwrap();
    assert_eq!(label(&outcome, "request-body"), "none");
    assert_eq!(label(&outcome, "headers"), "2");
    assert_eq!(label(&outcome, "query"), "2");
    assert_eq!(label(&outcome, "principal"), "PrincipalKind::Agent:bot");
    assert_eq!(label(&outcome, "on-behalf-of"), "alice");
}

#[test]
fn request_bodies_are_copied_when_asked_for_and_cut_at_the_cap() {
    let full = with_body().body.unwrap().bytes.len();
    let outcome = probe(json!({"request_body": true}), 1 << 20).evaluate_request(&with_body()).unwrap();
    assert_eq!(label(&outcome, "request-body"), full.to_string());
    assert_eq!(label(&outcome, "request-truncated"), "false");
    assert_eq!(label(&outcome, "request-content-type"), "application/json");

    let outcome = probe(json!({"request_body": true}), 10).evaluate_request(&with_body()).unwrap();
    assert_eq!(label(&outcome, "request-body"), "10");
    assert_eq!(label(&outcome, "request-truncated"), "true");
}

#[test]
fn response_bodies_follow_their_own_flag() {
    let response: Response = serde_json::from_value(json!({"status": 201, "body": {"text": "created!"}})).unwrap();
    let outcome = probe(json!({"response_body": true}), 4).evaluate_response(&with_body(), &response).unwrap();
    assert_eq!(label(&outcome, "status"), "201");
    assert_eq!(label(&outcome, "response-body"), "4");
    assert_eq!(label(&outcome, "response-truncated"), "true");
    assert_eq!(label(&outcome, "request-body"), "none", "the request body has its own flag");

    let outcome = probe(json!({}), 1 << 20).evaluate_response(&with_body(), &response).unwrap();
    assert_eq!(label(&outcome, "response-body"), "none");
}
