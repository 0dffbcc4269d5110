//! Embedding Portcullis in a gateway: build a policy set from config, decide about an
//! `http::Request`, and enforce the verdict on it before forwarding.
//!
//!   scripts/build-policies.sh && cargo run --example embed

use std::path::Path;

use portcullis_host::adapters::http::{FromHttp, apply_to_http_request, request_from_http};
use portcullis_host::{Decision, PolicySet, Principal, PrincipalKind};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Once, at start-up: loads, checks, compiles (or takes from the cache) and initialises
    // every policy. Share the set behind an Arc between your server's threads.
    let set = PolicySet::from_config_file(Path::new("examples/portcullis.toml"))?;

    // Per request: normalise what your server received…
    let mut incoming = http::Request::builder()
        .method("POST")
        .uri("https://crm.partner.example/contacts")
        .header("content-type", "application/json")
        .body(br#"{"email": "ann@example.com", "company": "Acme"}"#.to_vec())?;
    let mut request = request_from_http(&incoming, &FromHttp { id: "req-1".into(), ..FromHttp::default() })?;
    // …with the principal your authentication established (a user here).
    request.principal = Principal { kind: PrincipalKind::User, id: "alice".into(), ..Principal::default() };

    // …decide…
    let verdict = set.evaluate_request(&request);
    match &verdict.decision {
        Decision::Deny(denial) => println!("answer {} {}: {}", denial.status, denial.code, denial.reason),
        Decision::RequireApproval(approval) => println!("hold for {}: {}", approval.approver_group, approval.reason),
        Decision::Allow | Decision::Redact { .. } => {
            // …and enforce: redactions rewrite headers, query and JSON body in place. An
            // error means a redaction could not be guaranteed: do not forward.
            let applied = apply_to_http_request(&mut incoming, verdict.redactions())?;
            println!("forward, redacted {:?}", applied.fields());
            println!("body now {}", String::from_utf8_lossy(incoming.body()));
        }
    }
    // Every policy's decision, reason, time and component digest, for your audit log.
    println!("{}", serde_json::to_string_pretty(&verdict.policies)?);
    Ok(())
}
