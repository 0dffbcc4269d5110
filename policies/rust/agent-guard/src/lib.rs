//! `agent-guard`: AI agents may read, but a human approves what they change.
//!
//! For principals of kind `agent`:
//! - no `on-behalf-of` user → deny 403 `agent-without-user` (unless
//!   `deny_without_on_behalf_of` is false),
//! - `GET`, `HEAD`, `OPTIONS` → allow,
//! - `DELETE` → deny 403 `agent-delete-forbidden`,
//! - any other method (including MCP `CALL`) → require approval by `approver_group`.
//!
//! Users, services and anonymous callers pass. Every outcome carries a `rule` label.
#![cfg_attr(not(test), no_std)]

use portcullis_guest::prelude::*;
use serde::Deserialize;

/// The policy's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The group whose members approve agents' writes. Required, non-empty.
    pub approver_group: String,
    /// How long an approval stays valid, in seconds (default 900).
    #[serde(default = "default_ttl_seconds")]
    pub ttl_seconds: u32,
    /// Deny agents that act for no user (default true).
    #[serde(default = "default_true")]
    pub deny_without_on_behalf_of: bool,
}

fn default_ttl_seconds() -> u32 {
    900
}

fn default_true() -> bool {
    true
}

impl Default for Settings {
    /// Only used for a blank document, which `validate` then refuses (no approver group).
    fn default() -> Self {
        Settings { approver_group: String::new(), ttl_seconds: default_ttl_seconds(), deny_without_on_behalf_of: true }
    }
}

/// The `agent-guard` policy.
pub struct AgentGuard;

impl Policy for AgentGuard {
    type Settings = Settings;

    fn metadata() -> Metadata {
        Metadata::new("agent-guard", env!("CARGO_PKG_VERSION"))
    }

    fn validate(settings: &Settings) -> Result<(), SettingsError> {
        if settings.approver_group.trim().is_empty() {
            return Err(SettingsError::new("approver_group", "must name the group that approves agents' writes"));
        }
        if settings.ttl_seconds == 0 {
            return Err(SettingsError::new("ttl_seconds", "must be at least 1 second"));
        }
        Ok(())
    }

    fn on_request(settings: &Settings, req: &Request) -> Outcome {
        if !req.is_agent() {
            return allow().label("rule", "not-an-agent");
        }
        let agent = &req.principal.id;
        let Some(user) = req.principal.acting_for() else {
            if settings.deny_without_on_behalf_of {
                return deny(403, "agent-without-user", format!("agent {agent} must act on behalf of a user"))
                    .label("rule", "agent-without-user");
            }
            return decide(settings, req, agent, "no user");
        };
        decide(settings, req, agent, user)
    }
}

/// The decision by method for an agent acting for `user`.
fn decide(settings: &Settings, req: &Request, agent: &str, user: &str) -> Outcome {
    let method = req.method.to_ascii_uppercase();
    match method.as_str() {
        "GET" | "HEAD" | "OPTIONS" => allow().label("rule", "agent-read-only"),
        "DELETE" => deny(403, "agent-delete-forbidden", format!("agents may not delete: DELETE {}", req.path))
            .label("rule", "agent-delete-forbidden"),
        _ => require_approval(
            format!("agent {agent} acting for {user} wants to {method} {}", req.path),
            &settings.approver_group,
        )
        .ttl(settings.ttl_seconds)
        .label("rule", "agent-write-needs-approval")
        .into(),
    }
}

export_policy!(AgentGuard);

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_guest::check_settings;

    fn settings() -> Settings {
        check_settings::<AgentGuard>(r#"{"approver_group": "ops"}"#).unwrap()
    }

    fn agent_request(method: &str) -> Request {
        Request::new(method, "/invoices/7").with_principal(Principal::agent("copilot").acting_for_user("alice"))
    }

    #[test]
    fn settings_defaults() {
        let s = settings();
        assert_eq!((s.ttl_seconds, s.deny_without_on_behalf_of), (900, true));
    }

    #[test]
    fn settings_errors_name_the_setting() {
        assert_eq!(check_settings::<AgentGuard>("{}").unwrap_err().setting, "approver_group");
        assert_eq!(check_settings::<AgentGuard>(r#"{"approver_group": " "}"#).unwrap_err().setting, "approver_group");
        assert_eq!(
            check_settings::<AgentGuard>(r#"{"approver_group": "ops", "ttl_seconds": 0}"#).unwrap_err().setting,
            "ttl_seconds"
        );
        assert_eq!(
            check_settings::<AgentGuard>(r#"{"approver_group": "ops", "approvers": "x"}"#).unwrap_err().setting,
            "approvers"
        );
    }

    #[test]
    fn agents_may_read() {
        for method in ["GET", "HEAD", "OPTIONS", "get"] {
            let out = AgentGuard::on_request(&settings(), &agent_request(method));
            assert!(out.is_allow(), "{method}: {out:?}");
            assert_eq!(out.label_value("rule"), Some("agent-read-only"));
        }
    }

    #[test]
    fn agent_writes_need_approval() {
        for method in ["POST", "PUT", "PATCH", "CALL"] {
            let out = AgentGuard::on_request(&settings(), &agent_request(method));
            let approval = out.approval().unwrap_or_else(|| panic!("{method}: {out:?}"));
            assert_eq!((approval.approver_group.as_str(), approval.ttl_seconds), ("ops", 900));
            assert!(approval.reason.contains("copilot") && approval.reason.contains("alice"), "{}", approval.reason);
            assert!(approval.reason.contains(&format!("{method} /invoices/7")), "{}", approval.reason);
        }
    }

    #[test]
    fn agent_delete_is_denied() {
        let out = AgentGuard::on_request(&settings(), &agent_request("DELETE"));
        let denial = out.denial().unwrap();
        assert_eq!((denial.status, denial.code.as_str()), (403, "agent-delete-forbidden"));
    }

    #[test]
    fn agent_without_user_is_denied_unless_allowed_by_settings() {
        let req = Request::new("GET", "/").with_principal(Principal::agent("bot"));
        let out = AgentGuard::on_request(&settings(), &req);
        assert_eq!(out.denial().unwrap().code, "agent-without-user");

        let lenient =
            check_settings::<AgentGuard>(r#"{"approver_group": "ops", "deny_without_on_behalf_of": false}"#).unwrap();
        assert!(AgentGuard::on_request(&lenient, &req).is_allow());
        assert!(
            AgentGuard::on_request(&lenient, &Request::new("POST", "/").with_principal(Principal::agent("bot")))
                .approval()
                .is_some()
        );
    }

    #[test]
    fn other_principals_pass() {
        for principal in [Principal::user("alice"), Principal::service("crm"), Principal::anonymous()] {
            let out = AgentGuard::on_request(&settings(), &Request::new("DELETE", "/x").with_principal(principal));
            assert!(out.is_allow());
        }
    }
}
