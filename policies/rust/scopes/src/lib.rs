//! `scopes`: requires OAuth-style scopes per method and path.
//!
//! The rules are tried in order; the first whose methods, path and operations match the
//! request decides: the principal must hold all of its scopes, else the request is denied 403
//! `missing-scope`, with the missing scopes in the `missing-scopes` label (space-separated):
//! the convention by which the MCP door answers an OAuth step-up (403 `insufficient_scope`).
//! When no rule matches, `default` decides (`deny` unless configured otherwise: fail closed).
//!
//! Paths are globs over `/`-separated segments: `*` matches exactly one segment, `**` any
//! number of segments (including none); other segments match literally. Empty segments are
//! ignored, so `/invoices/` and `/invoices` are the same path.
#![cfg_attr(not(test), no_std)]

use portcullis_guest::glob::{check_glob, glob_matches};
use portcullis_guest::prelude::*;
use serde::Deserialize;

/// The policy's settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The rules, tried in order.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// What happens when no rule matches (default `deny`).
    #[serde(default)]
    pub default: Fallback,
}

/// One rule: which requests it covers and the scopes they need.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The methods the rule covers, case-insensitive; empty (the default) or `*` for any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// The path glob the rule covers, e.g. `/invoices/*` or `/admin/**`.
    pub path: String,
    /// The operations the rule covers (an OpenAPI operationId, an MCP tool name such as
    /// `delete_invoice`, `resources/read:URI`): exact, or `prefix*`; empty (the default) for
    /// any, including requests without an operation.
    #[serde(default)]
    pub operations: Vec<String>,
    /// The scopes a caller must all hold. Required; `[]` makes the path public.
    pub scopes: Vec<String>,
}

/// The decision when no rule matches a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fallback {
    /// Let it through.
    Allow,
    /// Refuse it with 403 `no-scope-rule`.
    #[default]
    Deny,
}

/// The `scopes` policy.
pub struct Scopes;

impl Policy for Scopes {
    type Settings = Settings;

    fn metadata() -> Metadata {
        Metadata::new("scopes", env!("CARGO_PKG_VERSION"))
    }

    fn validate(settings: &Settings) -> Result<(), SettingsError> {
        for (i, rule) in settings.rules.iter().enumerate() {
            if let Err(message) = check_glob(&rule.path) {
                return Err(SettingsError::new(format!("rules[{i}].path"), message));
            }
            if let Some(j) = rule.methods.iter().position(|m| !is_method(m)) {
                return Err(SettingsError::new(
                    format!("rules[{i}].methods[{j}]"),
                    "must be an HTTP method such as GET, or * for any",
                ));
            }
            if let Some(j) = rule.operations.iter().position(|o| o.trim().is_empty() || o.trim() == "*") {
                return Err(SettingsError::new(
                    format!("rules[{i}].operations[{j}]"),
                    "must name an operation (or `prefix*`); leave the list out for any",
                ));
            }
            if let Some(j) = rule.scopes.iter().position(|s| s.trim().is_empty()) {
                return Err(SettingsError::new(format!("rules[{i}].scopes[{j}]"), "must not be empty"));
            }
        }
        Ok(())
    }

    fn on_request(settings: &Settings, req: &Request) -> Outcome {
        let Some((index, rule)) = settings.rules.iter().enumerate().find(|(_, rule)| {
            covers_method(rule, &req.method)
                && glob_matches(&rule.path, &req.path)
                && covers_operation(rule, req.operation.as_deref())
        }) else {
            return match settings.default {
                Fallback::Allow => allow().label("rule", "default"),
                Fallback::Deny => {
                    deny(403, "no-scope-rule", format!("no scope rule covers {} {}", req.method, req.path))
                        .label("rule", "default")
                }
            };
        };
        let rule_label = format!("rules[{index}]");
        let missing: Vec<&str> = rule.scopes.iter().map(String::as_str).filter(|scope| !req.has_scope(scope)).collect();
        if missing.is_empty() {
            return allow().label("rule", rule_label);
        }
        let reason = match missing.as_slice() {
            [one] => format!("scope {one} is required for {} {}", req.method, req.path),
            many => format!("scopes {} are required for {} {}", many.join(", "), req.method, req.path),
        };
        deny(403, "missing-scope", reason).label("rule", rule_label).label("missing-scopes", missing.join(" "))
    }
}

fn covers_method(rule: &Rule, method: &str) -> bool {
    rule.methods.is_empty() || rule.methods.iter().any(|m| m == "*" || m.eq_ignore_ascii_case(method))
}

fn covers_operation(rule: &Rule, operation: Option<&str>) -> bool {
    rule.operations.is_empty()
        || operation.is_some_and(|op| {
            rule.operations.iter().any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => op.starts_with(prefix),
                None => pattern == op,
            })
        })
}

/// An HTTP method token (or `*`): letters only, as methods in practice are.
fn is_method(method: &str) -> bool {
    method == "*" || (!method.is_empty() && method.bytes().all(|b| b.is_ascii_alphabetic()))
}

export_policy!(Scopes);

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_guest::check_settings;

    const SETTINGS: &str = r#"{
        "rules": [
            {"methods": ["GET"], "path": "/invoices/**", "scopes": ["invoices:read"]},
            {"methods": ["POST", "put"], "path": "/invoices/*", "scopes": ["invoices:write", "invoices:read"]},
            {"path": "/health", "scopes": []}
        ]
    }"#;

    fn settings() -> Settings {
        check_settings::<Scopes>(SETTINGS).unwrap()
    }

    fn call(method: &str, path: &str, scopes: &[&str]) -> Outcome {
        let req = Request::new(method, path).with_principal(Principal::user("alice").with_scopes(scopes));
        Scopes::on_request(&settings(), &req)
    }

    #[test]
    fn globs() {
        for (glob, path, expected) in [
            ("/invoices/*", "/invoices/7", true),
            ("/invoices/*", "/invoices/7/lines", false),
            ("/invoices/*", "/invoices", false),
            ("/invoices/**", "/invoices", true),
            ("/invoices/**", "/invoices/7/lines", true),
            ("/**/lines", "/invoices/7/lines", true),
            ("/**", "/", true),
            ("/", "/", true),
            ("/", "/x", false),
            ("/a/*/c", "/a/b/c/", true),
            ("/a/b", "/a/bb", false),
        ] {
            assert_eq!(glob_matches(glob, path), expected, "{glob} vs {path}");
        }
    }

    #[test]
    fn held_scopes_allow_with_the_rule_label() {
        let out = call("GET", "/invoices/7", &["invoices:read"]);
        assert!(out.is_allow());
        assert_eq!(out.label_value("rule"), Some("rules[0]"));
    }

    #[test]
    fn missing_scope_is_denied_naming_scope_method_and_path() {
        let out = call("POST", "/invoices/7", &["invoices:read"]);
        let denial = out.denial().unwrap();
        assert_eq!((denial.status, denial.code.as_str()), (403, "missing-scope"));
        assert_eq!(denial.reason, "scope invoices:write is required for POST /invoices/7");
        assert_eq!(out.label_value("rule"), Some("rules[1]"));

        let out = call("PUT", "/invoices/7", &[]);
        assert_eq!(
            out.denial().unwrap().reason,
            "scopes invoices:write, invoices:read are required for PUT /invoices/7"
        );
    }

    #[test]
    fn first_matching_rule_decides_and_methods_are_case_insensitive() {
        assert!(call("put", "/invoices/7", &["invoices:write", "invoices:read"]).is_allow());
        // DELETE matches no rule: the default denies.
        let out = call("DELETE", "/invoices/7", &["invoices:write", "invoices:read"]);
        assert_eq!(out.denial().unwrap().code, "no-scope-rule");
        assert_eq!(out.label_value("rule"), Some("default"));
    }

    #[test]
    fn operations_narrow_a_rule_to_tools() {
        let settings = check_settings::<Scopes>(
            r#"{"rules": [
                {"path": "/mcp", "operations": ["delete_*", "resources/read:secret://*"], "scopes": ["mcp:write"]},
                {"path": "/mcp", "scopes": ["mcp:read"]}
            ]}"#,
        )
        .unwrap();
        let call = |operation: &str, scopes: &[&str]| {
            let req = Request::new("CALL", "/mcp")
                .with_operation(operation)
                .with_principal(Principal::agent("bot").with_scopes(scopes));
            Scopes::on_request(&settings, &req)
        };
        assert!(call("get_invoice", &["mcp:read"]).is_allow());
        let denial = call("delete_invoice", &["mcp:read"]);
        let denial = denial.denial().unwrap();
        assert_eq!((denial.status, denial.code.as_str()), (403, "missing-scope"));
        assert!(call("delete_invoice", &["mcp:write"]).is_allow());
        assert!(call("resources/read:secret://k", &["mcp:read"]).denial().is_some());
        let out = call("delete_invoice", &[]);
        assert_eq!(out.label_value("missing-scopes"), Some("mcp:write"));
        assert!(check_settings::<Scopes>(r#"{"rules": [{"path": "/a", "operations": ["*"], "scopes": []}]}"#).is_err());
    }

    #[test]
    fn rule_without_scopes_is_public() {
        let req = Request::new("GET", "/health");
        assert!(Scopes::on_request(&settings(), &req).is_allow());
    }

    #[test]
    fn default_allow_lets_unmatched_requests_through() {
        let settings = check_settings::<Scopes>(r#"{"default": "allow"}"#).unwrap();
        assert!(Scopes::on_request(&settings, &Request::new("GET", "/anything")).is_allow());
        let empty = check_settings::<Scopes>("{}").unwrap();
        assert_eq!(Scopes::on_request(&empty, &Request::new("GET", "/")).denial().unwrap().status, 403);
    }

    #[test]
    fn bad_settings_name_the_setting() {
        for (json, setting) in [
            (r#"{"rules": [{"path": "/a", "scopes": []}, {"path": "b", "scopes": []}]}"#, "rules[1].path"),
            (r#"{"rules": [{"path": "/a*", "scopes": []}]}"#, "rules[0].path"),
            (r#"{"rules": [{"path": "/a", "scopes": ["x", " "]}]}"#, "rules[0].scopes[1]"),
            (r#"{"rules": [{"path": "/a", "methods": ["GET", ""], "scopes": []}]}"#, "rules[0].methods[1]"),
            (r#"{"rules": [{"path": "/a"}]}"#, "rules[0].scopes"),
            (r#"{"rules": [{"path": "/a", "scope": []}]}"#, "rules[0].scope"),
            (r#"{"default": "maybe"}"#, "default"),
        ] {
            assert_eq!(check_settings::<Scopes>(json).unwrap_err().setting, setting, "{json}");
        }
    }
}
