//! `hostile-wasi-user`: a `std` policy that reads an environment variable and a file, for
//! the host's tests only.
//!
//! On `wasm32-wasip2`, `std` makes the component import `wasi:*` interfaces
//! (`wasi:cli/environment`, `wasi:filesystem/*` and the rest). The host grants no WASI
//! capability to a policy, so it must refuse this component at load, naming an import it
//! does not provide. Were it ever loaded, `on-request` would deny whenever it could read the
//! environment or the file.
//!
//! It binds the real contract (`/wit`) with wit-bindgen directly rather than through the
//! SDK: see `Cargo.toml`.
// Natively (`cargo test` over the workspace) nothing is exported, so nothing is used.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

extern crate alloc;

wit_bindgen::generate!({
    world: "policy",
    path: "../../../wit",
});

use exports::portcullis::policy::handler::Guest;
use portcullis::policy::types::{Decision, Denial, Outcome, Phases, PolicyMetadata, Request, Response, SettingsError};

struct WasiUser;

impl Guest for WasiUser {
    fn metadata() -> PolicyMetadata {
        PolicyMetadata {
            name: "hostile-wasi-user".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            phases: Phases::REQUEST,
            needs_request_body: false,
            needs_response_body: false,
        }
    }

    fn init(_settings: String) -> Result<(), SettingsError> {
        Ok(())
    }

    fn on_request(_request: Request) -> Outcome {
        let home = std::env::var("HOME").ok();
        let passwd = std::fs::read_to_string("/etc/passwd").ok();
        if home.is_none() && passwd.is_none() {
            return Outcome { decision: Decision::Allow, labels: Vec::new() };
        }
        Outcome {
            decision: Decision::Deny(Denial {
                status: 403,
                code: "wasi-escape".to_string(),
                reason: "the policy could read the host's environment or files".to_string(),
            }),
            labels: vec![
                ("env-home-set".to_string(), home.is_some().to_string()),
                ("passwd-bytes".to_string(), passwd.map_or(0, |p| p.len()).to_string()),
            ],
        }
    }

    fn on_response(_request: Request, _response: Response) -> Outcome {
        Outcome { decision: Decision::Allow, labels: Vec::new() }
    }
}

export!(WasiUser);
