//! Conversions from the protocols and files that carry requests into the normalised
//! exchange (and back). Conversions only: no evaluation, identity or audit here.
#[cfg(feature = "ext-authz")]
pub mod ext_authz;
pub mod forward;
pub mod forward_auth;
pub mod har;
pub mod http;
pub mod jsonl;
pub mod mcp;
pub mod mcp_headers;
pub mod mcp_pins;
pub mod mcp_session;
pub mod traffic;
