//! The two rules as plain Rust functions over the host's request: the baseline.

use portcullis_host::{Outcome, PrincipalKind, Request};

use crate::{GuardSettings, ScopeSettings, Variant, acting_for, allow, approval, deny, missing_scopes, segments};

/// `agent-guard`, natively.
pub struct NativeGuard(pub GuardSettings);

impl Variant for NativeGuard {
    fn name(&self) -> &'static str {
        "native"
    }
    fn decide(&mut self, req: &Request) -> Outcome {
        let settings = &self.0;
        if req.principal.kind != PrincipalKind::Agent {
            return allow("not-an-agent");
        }
        let agent = &req.principal.id;
        let user = match acting_for(&req.principal) {
            Some(user) => user,
            None if settings.deny_without_on_behalf_of => {
                return deny(
                    "agent-without-user",
                    format!("agent {agent} must act on behalf of a user"),
                    "agent-without-user",
                    None,
                );
            }
            None => "no user",
        };
        let method = req.method.to_ascii_uppercase();
        match method.as_str() {
            "GET" | "HEAD" | "OPTIONS" => allow("agent-read-only"),
            "DELETE" => deny(
                "agent-delete-forbidden",
                format!("agents may not delete: DELETE {}", req.path),
                "agent-delete-forbidden",
                None,
            ),
            _ => approval(
                format!("agent {agent} acting for {user} wants to {method} {}", req.path),
                &settings.approver_group,
                settings.ttl_seconds,
                "agent-write-needs-approval",
            ),
        }
    }
}

/// `scopes`, natively.
pub struct NativeScopes(pub ScopeSettings);

impl Variant for NativeScopes {
    fn name(&self) -> &'static str {
        "native"
    }
    fn decide(&mut self, req: &Request) -> Outcome {
        let settings = &self.0;
        let found = settings.rules.iter().enumerate().find(|(_, rule)| {
            (rule.methods.is_empty() || rule.methods.iter().any(|m| m == "*" || m.eq_ignore_ascii_case(&req.method)))
                && glob_matches(&rule.path, &req.path)
        });
        let Some((index, rule)) = found else {
            return if settings.default == "allow" {
                allow("default")
            } else {
                deny("no-scope-rule", format!("no scope rule covers {} {}", req.method, req.path), "default", None)
            };
        };
        let label = format!("rules[{index}]");
        let missing: Vec<&str> =
            rule.scopes.iter().map(String::as_str).filter(|s| !req.principal.scopes.iter().any(|h| h == s)).collect();
        if missing.is_empty() {
            return allow(&label);
        }
        missing_scopes(&missing, req, &label)
    }
}

/// Whether `path` matches `glob` (`*` one segment, `**` any number), as the policy does.
pub fn glob_matches(glob: &str, path: &str) -> bool {
    let glob: Vec<&str> = segments(glob).collect();
    let path: Vec<&str> = segments(path).collect();
    matches_from(&glob, &path)
}

fn matches_from(glob: &[&str], path: &[&str]) -> bool {
    match glob.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) => (0..=path.len()).any(|skip| matches_from(rest, &path[skip..])),
        Some((segment, rest)) => match path.split_first() {
            Some((first, path_rest)) => (*segment == "*" || segment == first) && matches_from(rest, path_rest),
            None => false,
        },
    }
}
