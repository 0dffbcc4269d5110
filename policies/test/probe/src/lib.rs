//! `test-probe`: allows everything and reports, as audit labels, what the host handed it,
//! so the host's tests can check what crosses the boundary (bodies only when asked for,
//! cut at the cap, principals, headers).
//!
//! It also counts the calls its instance has served (label `instance-calls`): always 1 with
//! a fresh instance per call, 1, 2, 3… when the host reuses the instance; and how often
//! `init` has run in the state the instance started from (label `init-runs`): 1 when the
//! host snapshots the instance after `init` (pre-initialisation) or calls `init` on an
//! instance it will reuse, 0 in a fresh instance of the component as shipped.
//!
//! Settings: `{"request_body": bool, "response_body": bool}` (both default false) become the
//! metadata's `needs-request-body` / `needs-response-body`. Like `hostile-misbehave`, it
//! implements the generated `Guest` trait directly because the SDK's `metadata()` cannot
//! depend on settings.
#![cfg_attr(not(test), no_std)]
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use portcullis_guest::bindings::exports::portcullis::policy::handler::Guest;
use portcullis_guest::bindings::portcullis::policy::types::{Body, PolicyMetadata};
use portcullis_guest::{Decision, Outcome, Phases, Request, Response, SettingsError};
use serde_json::Value;

fn flag(name: &str) -> bool {
    let settings = portcullis_guest::bindings::portcullis::policy::settings::get();
    serde_json::from_str::<Value>(&settings).ok().and_then(|v| v.get(name).and_then(Value::as_bool)).unwrap_or(false)
}

fn body_labels(prefix: &str, body: &Option<Body>, labels: &mut Vec<(String, String)>) {
    match body {
        None => labels.push((format!("{prefix}-body"), "none".to_string())),
        Some(b) => {
            labels.push((format!("{prefix}-body"), b.bytes.len().to_string()));
            labels.push((format!("{prefix}-truncated"), b.truncated.to_string()));
            labels.push((format!("{prefix}-content-type"), b.content_type.clone().unwrap_or_default()));
        }
    }
}

/// Calls served by this instance: state that survives between calls only when the host
/// reuses the instance.
static CALLS: AtomicU32 = AtomicU32::new(0);

/// Runs of `init` in this instance's history (see the crate docs).
static INIT_RUNS: AtomicU32 = AtomicU32::new(0);

fn request_labels(req: &Request) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
    labels.push(("instance-calls".to_string(), calls.to_string()));
    labels.push(("init-runs".to_string(), INIT_RUNS.load(Ordering::Relaxed).to_string()));
    labels.push(("method".to_string(), req.method.clone()));
    labels.push(("path".to_string(), req.path.clone()));
    labels.push(("headers".to_string(), req.headers.len().to_string()));
    labels.push(("query".to_string(), req.query.len().to_string()));
    labels.push(("principal".to_string(), format!("{:?}:{}", req.principal.kind, req.principal.id)));
    labels.push(("on-behalf-of".to_string(), req.principal.on_behalf_of.clone().unwrap_or_default()));
    body_labels("request", &req.body, &mut labels);
    labels
}

struct Probe;

impl Guest for Probe {
    fn metadata() -> PolicyMetadata {
        PolicyMetadata {
            name: "test-probe".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            phases: Phases::REQUEST | Phases::RESPONSE,
            needs_request_body: flag("request_body"),
            needs_response_body: flag("response_body"),
        }
    }

    fn init(settings: String) -> Result<(), SettingsError> {
        match serde_json::from_str::<Value>(&settings) {
            Ok(Value::Object(_)) => {
                INIT_RUNS.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            _ => Err(SettingsError { setting: String::new(), message: "expected a JSON object".to_string() }),
        }
    }

    fn on_request(request: Request) -> Outcome {
        Outcome { decision: Decision::Allow, labels: request_labels(&request) }
    }

    fn on_response(request: Request, response: Response) -> Outcome {
        let mut labels = request_labels(&request);
        labels.push(("status".to_string(), response.status.to_string()));
        body_labels("response", &response.body, &mut labels);
        Outcome { decision: Decision::Allow, labels }
    }
}

#[cfg(target_arch = "wasm32")]
portcullis_guest::bindings::export!(Probe with_types_in portcullis_guest::bindings);
