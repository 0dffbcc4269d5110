//! `{{name}}`: AI agents may read; anything else they try is refused.
//!
//! Principals of kind `agent` may use the methods in `agent_methods` (default `GET`,
//! `HEAD`, `OPTIONS`); any other method is denied with 403 `agent-read-only`. Everyone
//! else passes. Change `on_request` to your rules, then `portcullis build` and
//! `portcullis test tests/`.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;

use portcullis_guest::prelude::*;
use serde::Deserialize;

/// The settings, from `[policies.{{name}}] settings = { ... }` in portcullis.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Methods agents may use; empty means `GET`, `HEAD` and `OPTIONS`.
    #[serde(default)]
    pub agent_methods: Vec<String>,
}

/// The policy.
pub struct {{type}};

impl Policy for {{type}} {
    type Settings = Settings;

    fn metadata() -> Metadata {
        Metadata::new("{{name}}", env!("CARGO_PKG_VERSION"))
    }

    fn on_request(settings: &Settings, req: &Request) -> Outcome {
        if !req.is_agent() {
            return allow();
        }
        let allowed = if settings.agent_methods.is_empty() {
            ["GET", "HEAD", "OPTIONS"].iter().any(|m| req.method.eq_ignore_ascii_case(m))
        } else {
            settings.agent_methods.iter().any(|m| req.method.eq_ignore_ascii_case(m))
        };
        if allowed {
            allow()
        } else {
            deny(403, "agent-read-only", alloc::format!("agents may not {} {}", req.method, req.path))
        }
    }
}

export_policy!({{type}});

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(method: &str) -> Request {
        Request::new(method, "/notes/1").with_principal(Principal::agent("bot").acting_for_user("alice"))
    }

    #[test]
    fn agents_read_but_do_not_write() {
        let settings = Settings::default();
        assert!({{type}}::on_request(&settings, &agent("GET")).is_allow());
        assert!(!{{type}}::on_request(&settings, &agent("DELETE")).is_allow());
    }
}
