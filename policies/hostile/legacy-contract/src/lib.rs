//! `legacy-contract`: a policy built against `portcullis:policy@0.1.0` (`/wit/v0.1`), for the
//! host's tests only: the host must keep loading 0.1 components and deciding exactly as
//! before 0.2. See `README.md` for what it decides.
#![cfg_attr(target_arch = "wasm32", no_std)]
// Natively (`cargo test` over the workspace) nothing is exported, so nothing is used.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

extern crate alloc;

#[cfg(target_arch = "wasm32")]
// Shared by the hostile no_std crates that cannot use the SDK: allocator, panic handler,
// `cabi_realloc`.
#[path = "../../no_std_runtime.rs"]
mod runtime;

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

// Makes cargo rebuild this crate when the WIT changes (the macro alone does not tell it).
const _: &str = include_str!("../../../../wit/v0.1/policy.wit");

wit_bindgen::generate!({
    world: "policy",
    path: "../../../wit/v0.1",
});

use exports::portcullis::policy::handler::Guest;
use portcullis::policy::log::{Level, write};
use portcullis::policy::types::{
    Action, Approval, Decision, Denial, Outcome, Phases, PolicyMetadata, Redaction, Request, Response, SettingsError,
    Target,
};

struct Legacy;

fn outcome(decision: Decision) -> Outcome {
    Outcome { decision, labels: vec![("contract".to_string(), "0.1".to_string())] }
}

fn redaction(target: Target, action: Action) -> Redaction {
    Redaction { target, action }
}

impl Guest for Legacy {
    fn metadata() -> PolicyMetadata {
        PolicyMetadata {
            name: "legacy-contract".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            phases: Phases::REQUEST | Phases::RESPONSE,
            needs_request_body: false,
            needs_response_body: false,
        }
    }

    fn init(_settings: String) -> Result<(), SettingsError> {
        Ok(())
    }

    fn on_request(request: Request) -> Outcome {
        write(Level::Info, &request.path);
        outcome(match request.path.as_str() {
            "/deny" => Decision::Deny(Denial {
                status: 403,
                code: "legacy-deny".to_string(),
                reason: "denied by a 0.1 policy".to_string(),
            }),
            "/redact" => Decision::Redact(Vec::from([
                redaction(Target::Header("x-api-key".to_string()), Action::Remove),
                redaction(Target::Query("token".to_string()), Action::Replace("***".to_string())),
                redaction(Target::JsonPointer("/card/cvc".to_string()), Action::Remove),
                redaction(Target::JsonPointer("/card/number".to_string()), Action::Replace("****".to_string())),
            ])),
            "/approve" => Decision::RequireApproval(Approval {
                reason: "a 0.1 policy asks".to_string(),
                approver_group: "finance".to_string(),
                ttl_seconds: 600,
            }),
            _ => Decision::Allow,
        })
    }

    fn on_response(_request: Request, _response: Response) -> Outcome {
        write(Level::Info, "response");
        outcome(Decision::Redact(Vec::from([redaction(
            Target::JsonPointer("/email".to_string()),
            Action::Replace("[hidden]".to_string()),
        )])))
    }
}

export!(Legacy);
