//! The two rules in Cedar (`cedar-policy`): `rules/agent_guard.cedar`, and `scopes`
//! generated from its settings (one permit and one forbid per rule, each excluding the
//! rules before it, so the first rule that covers a request decides, as in the policy).
//!
//! Per call the glue builds the principal (`Agent::"support-bot"`, `User::"alice"`, …)
//! and a context (`method` upper-cased, `path` with empty segments dropped, `has_user`,
//! `scopes`), asks `is_authorized`, and turns the determining policy's `@id` into the
//! outcome: the reason text (and for `scopes` the missing scopes) is written here, since a
//! Cedar policy cannot return data.

use std::collections::HashMap;
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Entities, EntityId, EntityTypeName, EntityUid, PolicyId, PolicySet, Request as CedarRequest,
    RestrictedExpression,
};
use portcullis_host::{Outcome, PrincipalKind, Request};

use crate::{GuardSettings, ScopeSettings, Variant, acting_for, allow, approval, deny, missing_scopes, segments};

/// What every Cedar variant shares: the policies, their ids' meaning, the fixed entities.
struct Base<M> {
    policies: PolicySet,
    meaning: HashMap<PolicyId, M>,
    authorizer: Authorizer,
    entities: Entities,
    action: EntityUid,
    resource: EntityUid,
    kinds: [EntityTypeName; 4],
}

impl<M: Clone> Base<M> {
    fn new(text: &str, mut meaning_of: impl FnMut(&cedar_policy::Policy) -> M) -> Self {
        let policies = PolicySet::from_str(text).unwrap_or_else(|e| panic!("Cedar policies: {e:?}\n{text}"));
        let meaning = policies.policies().map(|p| (p.id().clone(), meaning_of(p))).collect();
        let uid = |ty: &str, id: &str| {
            EntityUid::from_type_name_and_id(EntityTypeName::from_str(ty).unwrap(), EntityId::new(id))
        };
        Base {
            policies,
            meaning,
            authorizer: Authorizer::new(),
            entities: Entities::empty(),
            action: uid("Action", "request"),
            resource: uid("Api", "api"),
            kinds: ["Anonymous", "User", "Service", "Agent"].map(|k| EntityTypeName::from_str(k).unwrap()),
        }
    }

    /// Asks Cedar; returns whether it allowed and the meaning of the determining policy.
    fn authorize(&self, req: &Request) -> (bool, Option<M>) {
        let kind = match req.principal.kind {
            PrincipalKind::Anonymous => 0,
            PrincipalKind::User => 1,
            PrincipalKind::Service => 2,
            PrincipalKind::Agent => 3,
        };
        let principal = EntityUid::from_type_name_and_id(self.kinds[kind].clone(), EntityId::new(&req.principal.id));
        let mut path = String::with_capacity(req.path.len());
        for s in segments(&req.path) {
            path.push('/');
            path.push_str(s);
        }
        if path.is_empty() {
            path.push('/');
        }
        let context = Context::from_pairs([
            ("method".to_owned(), RestrictedExpression::new_string(req.method.to_ascii_uppercase())),
            ("path".to_owned(), RestrictedExpression::new_string(path)),
            ("has_user".to_owned(), RestrictedExpression::new_bool(acting_for(&req.principal).is_some())),
            (
                "scopes".to_owned(),
                RestrictedExpression::new_set(
                    req.principal.scopes.iter().map(|s| RestrictedExpression::new_string(s.clone())),
                ),
            ),
        ])
        .expect("context");
        let request = CedarRequest::new(principal, self.action.clone(), self.resource.clone(), context, None)
            .expect("Cedar request");
        let response = self.authorizer.is_authorized(&request, &self.policies, &self.entities);
        debug_assert!(response.diagnostics().errors().next().is_none(), "Cedar evaluation errors");
        let allowed = response.decision() == cedar_policy::Decision::Allow;
        let meaning = response.diagnostics().reason().next().and_then(|id| self.meaning.get(id).cloned());
        (allowed, meaning)
    }
}

/// `agent-guard` in Cedar (`rules/agent_guard.cedar`).
pub struct CedarGuard {
    base: Base<String>,
    settings: GuardSettings,
}

impl CedarGuard {
    /// Parses the policies; the file encodes `deny_without_on_behalf_of = true`.
    pub fn new(settings: GuardSettings) -> Self {
        assert!(settings.deny_without_on_behalf_of, "rules/agent_guard.cedar encodes deny_without_on_behalf_of = true");
        let text = include_str!("../rules/agent_guard.cedar");
        let base = Base::new(text, |p| p.annotation("id").expect("every policy has an @id").to_owned());
        CedarGuard { base, settings }
    }
}

impl Variant for CedarGuard {
    fn name(&self) -> &'static str {
        "cedar"
    }
    fn decide(&mut self, req: &Request) -> Outcome {
        let (allowed, rule) = self.base.authorize(req);
        let rule = rule.unwrap_or_default();
        let agent = &req.principal.id;
        match (allowed, rule.as_str()) {
            (true, rule) => allow(rule),
            (false, "agent-without-user") => {
                deny(&rule, format!("agent {agent} must act on behalf of a user"), &rule, None)
            }
            (false, "agent-delete-forbidden") => {
                deny(&rule, format!("agents may not delete: DELETE {}", req.path), &rule, None)
            }
            (false, "agent-write-needs-approval") => approval(
                format!(
                    "agent {agent} acting for {} wants to {} {}",
                    acting_for(&req.principal).unwrap_or("no user"),
                    req.method.to_ascii_uppercase(),
                    req.path
                ),
                &self.settings.approver_group,
                self.settings.ttl_seconds,
                &rule,
            ),
            (false, other) => deny("cedar-default-deny", format!("no Cedar policy applied ({other})"), "none", None),
        }
    }
}

/// `scopes` in Cedar, generated from the settings by [`scopes_policies`].
pub struct CedarScopes {
    base: Base<Option<usize>>,
    settings: ScopeSettings,
}

impl CedarScopes {
    /// Generates and parses the policies.
    pub fn new(settings: ScopeSettings) -> Self {
        let text = scopes_policies(&settings);
        let base = Base::new(&text, |p| {
            let id = p.annotation("id").expect("@id");
            id.strip_prefix("rules[").and_then(|s| s.strip_suffix(']')).map(|n| n.parse().expect("rule index"))
        });
        CedarScopes { base, settings }
    }
}

impl Variant for CedarScopes {
    fn name(&self) -> &'static str {
        "cedar"
    }
    fn decide(&mut self, req: &Request) -> Outcome {
        match self.base.authorize(req) {
            (true, Some(Some(i))) => allow(&format!("rules[{i}]")),
            (true, _) => allow("default"),
            (false, Some(Some(i))) => {
                let missing: Vec<&str> = self.settings.rules[i]
                    .scopes
                    .iter()
                    .map(String::as_str)
                    .filter(|s| !req.principal.scopes.iter().any(|h| h == s))
                    .collect();
                missing_scopes(&missing, req, &format!("rules[{i}]"))
            }
            (false, _) => {
                deny("no-scope-rule", format!("no scope rule covers {} {}", req.method, req.path), "default", None)
            }
        }
    }
}

/// Cedar text for `scopes` settings. Globs are literal segments with at most a trailing
/// `**` (Cedar's `like` cannot say "one segment"); anything else is refused.
pub fn scopes_policies(settings: &ScopeSettings) -> String {
    let quote = |s: &str| format!("{s:?}");
    let covers: Vec<String> = settings
        .rules
        .iter()
        .map(|rule| {
            let methods = if rule.methods.is_empty() || rule.methods.iter().any(|m| m == "*") {
                "true".to_owned()
            } else {
                let list: Vec<String> = rule.methods.iter().map(|m| quote(&m.to_ascii_uppercase())).collect();
                format!("[{}].contains(context.method)", list.join(", "))
            };
            let segs: Vec<&str> = segments(&rule.path).collect();
            let (literal, tail) = match segs.split_last() {
                Some((&"**", rest)) => (rest, true),
                _ => (&segs[..], false),
            };
            assert!(
                literal.iter().all(|s| !s.contains('*')),
                "scopes glob {} cannot be written with Cedar's `like`",
                rule.path
            );
            let prefix = format!("/{}", literal.join("/"));
            let path = match (tail, literal.is_empty()) {
                (true, true) => "true".to_owned(),
                (true, false) => format!(
                    "(context.path == {} || context.path like {})",
                    quote(&prefix),
                    quote(&format!("{prefix}/*"))
                ),
                (false, _) => format!("context.path == {}", quote(&prefix)),
            };
            format!("({methods} && {path})")
        })
        .collect();
    let mut text = String::new();
    for (i, rule) in settings.rules.iter().enumerate() {
        let mut when = covers[i].clone();
        for earlier in &covers[..i] {
            when.push_str(&format!(" && !{earlier}"));
        }
        let scopes: Vec<String> = rule.scopes.iter().map(|s| quote(s)).collect();
        let holds = format!("context.scopes.containsAll([{}])", scopes.join(", "));
        text.push_str(&format!(
            "@id(\"rules[{i}]\")\npermit (principal, action, resource)\nwhen {{ {when} && {holds} }};\n\n"
        ));
        text.push_str(&format!(
            "@id(\"rules[{i}]\")\nforbid (principal, action, resource)\nwhen {{ {when} && !{holds} }};\n\n"
        ));
    }
    let none: Vec<String> = covers.iter().map(|c| format!("!{c}")).collect();
    let effect = if settings.default == "allow" { "permit" } else { "forbid" };
    text.push_str(&format!(
        "@id(\"default\")\n{effect} (principal, action, resource)\nwhen {{ {} }};\n",
        if none.is_empty() { "true".to_owned() } else { none.join(" && ") }
    ));
    text
}
