//! # portcullis-host
//!
//! Embed sandboxed WebAssembly API policies: load policy components through the
//! `portcullis:policy` WIT contract, route requests to them, evaluate both phases in fresh
//! isolated instances, combine their decisions into a verdict and apply redactions.

pub mod adapters;
pub mod approval;
pub mod audit;
pub mod bindings;
pub mod capability;
pub mod config;
pub mod contract;
pub mod decision;
pub mod engine;
pub mod exchange;
pub mod gate;
pub mod identity;
pub mod policy;
pub mod preinit;
pub mod redact;
pub mod route;
pub mod set;
pub mod target;
pub mod verdict;
pub mod warm;

pub use config::{Config, ConfigError};
pub use decision::{Decision, DecisionKind, Outcome, Redaction};
pub use engine::{Engine, EngineConfig};
pub use exchange::{Body, Exchange, Principal, PrincipalKind, Request, Response};
pub use policy::{Fault, Limits, LoadError, Policy, PolicySpec, Source};
pub use set::{PolicySet, RouteSpec, Unmatched};
pub use target::{CanonicalTarget, TargetError, TargetRules};
pub use verdict::{Phase, PolicyResult, Verdict};
pub use warm::Reuse;
