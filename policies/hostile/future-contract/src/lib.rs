//! `hostile-future-contract`: an allow-everything policy built against
//! `portcullis:policy@0.3.0`, for the host's tests only.
//!
//! `wit/policy.wit` is the real contract with only its package version changed (see
//! `README.md`), so the component is a correct policy in every respect but its version: the
//! host must refuse it with an "incompatible version" error that names both versions.
#![cfg_attr(target_arch = "wasm32", no_std)]
// Natively (`cargo test` over the workspace) nothing is exported, so nothing is used.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

extern crate alloc;

#[cfg(target_arch = "wasm32")]
// Shared by the hostile no_std crates that cannot use the SDK (another world, another
// contract version): allocator, panic handler, `cabi_realloc`.
#[path = "../../no_std_runtime.rs"]
mod runtime;

use alloc::string::{String, ToString};
use alloc::vec::Vec;

// Makes cargo rebuild this crate when the WIT changes (the macro alone does not tell it).
const _: &str = include_str!("../wit/policy.wit");

wit_bindgen::generate!({
    world: "policy",
    path: "wit",
});

use exports::portcullis::policy::handler::Guest;
use portcullis::policy::types::{Decision, Outcome, Phases, PolicyMetadata, Request, Response, SettingsError};

struct FutureContract;

fn allow() -> Outcome {
    Outcome { decision: Decision::Allow, labels: Vec::new() }
}

impl Guest for FutureContract {
    fn metadata() -> PolicyMetadata {
        PolicyMetadata {
            name: "hostile-future-contract".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            phases: Phases::REQUEST | Phases::RESPONSE,
            needs_request_body: false,
            needs_response_body: false,
        }
    }

    fn init(_settings: String) -> Result<(), SettingsError> {
        Ok(())
    }

    fn on_request(_request: Request) -> Outcome {
        allow()
    }

    fn on_response(_request: Request, _response: Response) -> Outcome {
        allow()
    }
}

export!(FutureContract);
