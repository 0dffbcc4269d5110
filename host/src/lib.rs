//! # portcullis-host
//!
//! Embed sandboxed WebAssembly API policies: load policy components through the
//! `portcullis:policy` WIT contract, route requests to them, evaluate both phases in fresh
//! isolated instances, combine their decisions into a verdict and apply redactions.
//!
//! A policy set in ten lines: one [`Engine`] per process, a [`PolicySet`] built from
//! [`PolicySpec`]s and [`RouteSpec`]s (or from a `portcullis.toml` with
//! [`PolicySet::from_config_file`]), and a [`Verdict`] per [`Request`]:
//!
//! ```
//! use portcullis_host::{DecisionKind, Engine, EngineConfig, PolicySet, PolicySpec, Principal, Request, RouteSpec, Source};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::new(&EngineConfig::default())?;
//! let component = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/policies/scopes.wasm");
//! let mut scopes = PolicySpec::new("scopes", Source::File(component.into()));
//! scopes.settings = serde_json::json!({"rules": [{"path": "/invoices/**", "scopes": ["invoices:read"]}]});
//! let route = RouteSpec { name: "api".into(), policies: vec!["scopes".into()], ..RouteSpec::default() };
//! let set = PolicySet::builder(&engine).policy(scopes)?.route(route).build()?;
//!
//! let mut request = Request { path: "/invoices/7".into(), ..Request::default() };
//! assert_eq!(set.evaluate_request(&request).kind(), DecisionKind::Deny); // no scope yet
//! request.principal = Principal { scopes: vec!["invoices:read".into()], ..Principal::default() };
//! assert_eq!(set.evaluate_request(&request).kind(), DecisionKind::Allow);
//! # Ok(())
//! # }
//! ```
//!
//! A front door (a proxy, an authorisation callback) runs the whole pipeline through one
//! [`gate::Gate`]: authenticate ([`identity`]), route, evaluate, settle approvals
//! ([`approval`]), audit ([`audit`]); it converts its protocol with [`adapters`] and routes on
//! the canonical request target ([`target`]).
//!
//! The public surface: the items at this root (engine, policies, the set, verdicts, the
//! model's core types) and the modules below. Everything else (the generated bindings, the
//! host functions, instance reuse, pre-initialisation, the contract checks) is internal.
#![warn(missing_docs)]

pub mod adapters;
pub mod approval;
pub mod audit;
mod bindings;
mod capability;
pub mod config;
mod contract;
pub mod decision;
pub mod detect;
mod engine;
pub mod exchange;
pub mod gate;
pub mod identity;
pub mod mask;
mod policy;
mod preinit;
pub mod redact;
pub mod route;
mod set;
pub mod state;
pub mod target;
mod verdict;
mod warm;

pub use capability::{Capability, DataError, RateLimiter, now_ms};
pub use config::{Config, ConfigError};
pub use contract::{ACCEPTED as WIT_ACCEPTED, Contract, ContractError, PACKAGE as WIT_PACKAGE, VERSION as WIT_VERSION};
pub use decision::{Decision, DecisionKind, Outcome, Redaction};
pub use engine::{Engine, EngineConfig, EngineError, sha256_hex};
pub use exchange::{Body, Exchange, Principal, PrincipalKind, Request, Response};
pub use policy::{
    Fault, LimitError, Limits, LoadError, Metadata, Policy, PolicySpec, ReusableInstance, Shared, Source,
};
pub use preinit::PreinitError;
pub use set::{PolicySet, PolicySetBuilder, Route, RouteMatch, RouteSpec, SetError, Unmatched};
pub use target::{CanonicalTarget, TargetError, TargetRules};
pub use verdict::{Phase, PolicyResult, Verdict};
pub use warm::Reuse;
