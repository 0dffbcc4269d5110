//! One realistic request through `agent-guard`: a fresh isolated instance (what the policy
//! set does for every request), a reused instance, the whole routed policy set, and the
//! same rule written as a native Rust function, measured in one run. After criterion
//! finishes, the medians are printed as ratios to the native baseline.
//!
//!   cargo bench --bench agent_guard

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;

use criterion::Criterion;
use portcullis_host::decision::{Approval, Denial, Outcome};
use portcullis_host::{Decision, Policy, PolicySet, PolicySpec, Request, RouteSpec, Shared, Source};
use serde_json::json;

const GROUP: &str = "agent_guard";

/// An agent's write with 8 headers and a 200-byte JSON body, as a CRM integration sends it.
fn realistic_request() -> Request {
    common::request(json!({
        "id": "req-7f3a",
        "method": "POST",
        "url": "https://api.example.com/invoices?draft=true",
        "headers": {
            "host": "api.example.com",
            "content-type": "application/json",
            "accept": "application/json",
            "user-agent": "crm-sync/4.2 (+https://crm.example)",
            "x-request-id": "req-7f3a",
            "x-forwarded-for": "203.0.113.9",
            "accept-encoding": "gzip, br",
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        },
        "body": {"json": {"customer": "c-17", "lines": [{"sku": "A-100", "qty": 3, "price": 120.5},
            {"sku": "B-220", "qty": 1, "price": 99}], "currency": "EUR", "due": "2026-12-31",
            "note": "drafted by the support assistant"}},
        "principal": {"kind": "agent", "id": "support-bot", "scopes": ["invoices:read", "invoices:write"],
            "on_behalf_of": "alice", "credential_id": "key-7"}
    }))
}

/// The same rule as `policies/rust/agent-guard`, natively: the baseline.
fn native_agent_guard(req: &Request) -> Outcome {
    use portcullis_host::PrincipalKind;
    let label = |rule: &str| vec![("rule".to_owned(), rule.to_owned())];
    if req.principal.kind != PrincipalKind::Agent {
        return Outcome { decision: Decision::Allow, labels: label("not-an-agent") };
    }
    let Some(user) = &req.principal.on_behalf_of else {
        let denial = Denial {
            status: 403,
            code: "agent-without-user".into(),
            reason: format!("agent {} must act on behalf of a user", req.principal.id),
        };
        return Outcome { decision: Decision::Deny(denial), labels: label("agent-without-user") };
    };
    match req.method.as_str() {
        "GET" | "HEAD" | "OPTIONS" => Outcome { decision: Decision::Allow, labels: label("agent-read-only") },
        "DELETE" => {
            let denial = Denial {
                status: 403,
                code: "agent-delete-forbidden".into(),
                reason: format!("agents may not delete: DELETE {}", req.path),
            };
            Outcome { decision: Decision::Deny(denial), labels: label("agent-delete-forbidden") }
        }
        method => Outcome {
            decision: Decision::RequireApproval(Approval {
                reason: format!("agent {} acting for {user} wants to {method} {}", req.principal.id, req.path),
                approver_group: "finance-approvers".into(),
                ttl_seconds: 900,
            }),
            labels: label("agent-write-needs-approval"),
        },
    }
}

fn spec() -> PolicySpec {
    let mut spec = PolicySpec::new("agent-guard", Source::File(common::component("agent-guard")));
    spec.settings = json!({"approver_group": "finance-approvers"});
    spec
}

fn benches(c: &mut Criterion) {
    let engine = common::engine();
    let policy = Policy::load(&engine, spec(), &Shared::default()).expect("agent-guard loads");
    let set = PolicySet::builder(&engine)
        .policy(spec())
        .unwrap()
        .route(RouteSpec { name: "all".into(), policies: vec!["agent-guard".into()], ..RouteSpec::default() })
        .build()
        .unwrap();
    let req = realistic_request();

    // All four must agree before any is timed.
    let native = native_agent_guard(&req);
    assert_eq!(policy.evaluate_request(&req).expect("fresh call"), native);
    let mut reused = policy.reusable_instance().expect("instance");
    assert_eq!(reused.evaluate_request(&req).expect("reused call"), native);
    assert_eq!(set.evaluate_request(&req).decision, native.decision);

    let mut group = c.benchmark_group(GROUP);
    group.bench_function("native", |b| b.iter(|| native_agent_guard(black_box(&req))));
    group.bench_function("reused_instance", |b| b.iter(|| reused.evaluate_request(black_box(&req)).unwrap()));
    group.bench_function("fresh_instance", |b| b.iter(|| policy.evaluate_request(black_box(&req)).unwrap()));
    group.bench_function("policy_set", |b| b.iter(|| set.evaluate_request(black_box(&req))));
    group.finish();
}

/// Criterion's median estimate (ns) for one benchmark of this run.
fn median_ns(id: &str) -> Option<f64> {
    common::criterion_median_ns(GROUP, id)
}

fn print_ratios() {
    let Some(base) = median_ns("native") else { return };
    println!("\n{GROUP}: medians of this run, as ratios to the native baseline ({base:.1} ns)");
    for id in ["native", "reused_instance", "fresh_instance", "policy_set"] {
        if let Some(ns) = median_ns(id) {
            println!("  {id:<16} {:>10.2} µs  {:>8.1}×", ns / 1000.0, ns / base);
        }
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    benches(&mut criterion);
    criterion.final_summary();
    // In `cargo test --benches` mode each function ran once and there is nothing to compare.
    if !std::env::args().any(|a| a == "--test") {
        print_ratios();
    }
}
