//! Write Portcullis policies in Rust.
//!
//! A policy is a WebAssembly component that the Portcullis host instantiates fresh for every
//! evaluation. This crate gives a policy everything it needs to be one, without the standard
//! library (a `std` guest on `wasm32-wasip2` imports 13 WASI interfaces it never uses, and the
//! host grants none of them):
//!
//! - the bindings for the `portcullis:policy` WIT world ([`bindings`]),
//! - the [`Policy`] trait and the [`export_policy!`] macro that turns an implementation into
//!   the component's `handler` export,
//! - decision builders ([`allow`], [`deny`], [`redact`], [`require_approval`]) and helpers on
//!   the request and response types ([`Request::header`], [`Request::has_scope`], …),
//! - thin wrappers for the host capabilities ([`log`], [`clock`], [`rate_limit`], [`data`]),
//! - on `wasm32`, a bump allocator, a trapping panic handler and the few C symbols a `no_std`
//!   component needs.
//!
//! ```ignore
//! #![cfg_attr(not(test), no_std)]
//! use portcullis_guest::prelude::*;
//!
//! struct ReadOnly;
//!
//! impl Policy for ReadOnly {
//!     type Settings = ();
//!     fn metadata() -> Metadata {
//!         Metadata::new("read-only", env!("CARGO_PKG_VERSION"))
//!     }
//!     fn on_request(_: &(), req: &Request) -> Outcome {
//!         match req.method.as_str() {
//!             "GET" | "HEAD" => allow(),
//!             _ => deny(405, "read-only", "this API is read-only"),
//!         }
//!     }
//! }
//!
//! export_policy!(ReadOnly);
//! ```
//!
//! The crate also builds natively, so a policy's logic can be unit-tested with plain
//! `cargo test`: the trait takes the settings as a parameter, the boundary types have
//! constructors ([`Request::new`], [`Principal::agent`], …) and the capabilities are backed
//! by an in-process stand-in (`testing`, native builds only).
#![no_std]
#![warn(missing_docs)]

extern crate alloc;
// Natively the crate links `std`: it supplies the allocator and panic handler that a native
// `cdylib` build of a policy needs, and the in-process stand-ins for the host capabilities.
#[cfg(not(target_arch = "wasm32"))]
extern crate std;

// The allocator itself is wasm32-only; its bump logic is plain code, unit-tested natively.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod arena;
pub mod bindings;
pub mod capabilities;
mod construct;
mod decision;
#[doc(hidden)]
pub mod export;
pub mod glob;
mod message;
mod policy;
#[cfg(target_arch = "wasm32")]
mod runtime;
pub mod settings;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

pub use bindings::portcullis::policy::types::{
    Action, Approval, Body, Decision, Denial, Mask, Outcome, Phases, Principal, PrincipalKind, Redaction, Request,
    Response, SettingsError, Target,
};
pub use capabilities::{clock, data, log, rate_limit};
pub use decision::{
    ApprovalBuilder, DEFAULT_APPROVAL_TTL_SECONDS, RedactBuilder, allow, deny, detectors, redact, require_approval,
};
pub use policy::{Metadata, Policy};
pub use settings::check_settings;

// Re-exported so that policies agree with the SDK on their versions and features
// (`alloc` only: enabling `std` in either would pull WASI imports into the component).
pub use serde;
pub use serde_json;

/// Everything a typical policy uses, for `use portcullis_guest::prelude::*;`.
///
/// Besides the SDK's own items it brings the `alloc` types a `no_std` crate would otherwise
/// have to import one by one.
pub mod prelude {
    pub use crate::{
        Action, Approval, Body, Decision, Denial, Mask, Metadata, Outcome, Phases, Policy, Principal, PrincipalKind,
        Redaction, Request, Response, SettingsError, Target, allow, clock, data, deny, detectors, export_policy, log,
        rate_limit, redact, require_approval,
    };
    pub use alloc::borrow::ToOwned;
    pub use alloc::boxed::Box;
    pub use alloc::string::{String, ToString};
    pub use alloc::vec::Vec;
    pub use alloc::{format, vec};
    pub use serde_json::Value;
}

/// Exports a [`Policy`] implementation as the component's `portcullis:policy/handler`.
///
/// Use it once, at the root of the policy crate: `export_policy!(MyPolicy);`. It implements
/// the generated `Guest` trait through [`export::Export`], so that:
///
/// - `metadata` returns [`Policy::metadata`],
/// - `init` parses the settings JSON into [`Policy::Settings`] (a parse error names the
///   setting it concerns) and runs [`Policy::validate`],
/// - `on-request` / `on-response` read the settings through the `settings` import, parse
///   them and call [`Policy::on_request`] / [`Policy::on_response`]; should they fail to
///   parse at call time (they passed `init`, so they should not), the outcome is a 500
///   `policy-settings` deny.
///
/// The export exists only on `wasm32`: native builds (unit tests) contain no export symbols.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __PortcullisExport = $crate::export::Export<$policy>;
    $crate::bindings::export!(__PortcullisExport with_types_in $crate::bindings);
        };
    };
}
