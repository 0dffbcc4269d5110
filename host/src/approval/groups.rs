//! Who may decide an approval: the approver groups of `[approvals.groups.NAME]`, and the
//! four-eyes rule.
//!
//! A policy's require-approval names an approver group (`finance-approvers`). The config
//! says who belongs to it, by what the principal's credential proves:
//!
//! ```toml
//! [approvals.groups.finance-approvers]
//! ids = ["corp:fiona", "corp:frank"]   # principal ids, exactly (with any id_prefix)
//! scopes = ["approvals:finance"]       # any of these scopes
//! claims = { groups = "finance" }      # a claim equal to the value, or listing it
//! kinds = ["user"]                     # and only principals of these kinds
//! four_eyes = true                     # the default
//! ```
//!
//! **Membership**: a principal is a member when it matches *any* of `ids`, `scopes` and
//! `claims` (one id, one scope or one claim is enough) **and**, when `kinds` is set, its
//! kind is among them. A group with only `kinds` admits every principal of those kinds. An
//! anonymous principal is never a member, and neither is a principal acting for someone
//! else (`on_behalf_of` set: an agent holding a user's delegated token carries that user's
//! claims, but a human decides an approval, not something acting for one).
//!
//! **Four eyes** (on unless `four_eyes = false`): a member may not decide an approval the
//! request of which it made itself or that was made on its behalf: its id may be neither
//! the approval's `principal_id` nor its `on_behalf_of`. Ids are compared exactly, as the
//! identity config builds them (with an issuer's `id_prefix`): one person with two
//! identities (`alice` by API key, `corp:alice` by token) is two principals, so give
//! approvers one identity.
//!
//! A group no `[approvals.groups]` entry names can only be decided with the admin token
//! (and by `portcullis approvals` on the store).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::exchange::{Principal, PrincipalKind};

use super::Approval;

/// `[approvals.groups.NAME]`: who may decide the approvals of one approver group.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct GroupConfig {
    /// Principal ids that are members (compared exactly, `id_prefix` included).
    #[serde(default)]
    pub ids: Vec<String>,
    /// When set, only principals of these kinds are members.
    #[serde(default)]
    pub kinds: Vec<PrincipalKind>,
    /// A principal holding any of these scopes is a member.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// A principal whose claim (by name) equals the value, or lists it (a JSON array of
    /// strings, or words separated by spaces or commas), is a member. Any one claim is enough.
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
    /// Whether a member is barred from deciding its own requests and those made on its
    /// behalf (default true).
    #[serde(default = "yes")]
    pub four_eyes: bool,
}

fn yes() -> bool {
    true
}

impl GroupConfig {
    /// A group of these ids (for tests and embedders); four eyes on.
    pub fn of_ids(ids: &[&str]) -> GroupConfig {
        GroupConfig {
            ids: ids.iter().map(|s| (*s).to_owned()).collect(),
            kinds: Vec::new(),
            scopes: Vec::new(),
            claims: BTreeMap::new(),
            four_eyes: true,
        }
    }

    /// This group with `four_eyes` set.
    #[must_use]
    pub fn with_four_eyes(mut self, on: bool) -> GroupConfig {
        self.four_eyes = on;
        self
    }

    /// Whether `principal` belongs to this group (see the module documentation).
    pub fn admits(&self, principal: &Principal) -> bool {
        if principal.kind == PrincipalKind::Anonymous || principal.id.is_empty() || principal.on_behalf_of.is_some() {
            return false;
        }
        if !self.kinds.is_empty() && !self.kinds.contains(&principal.kind) {
            return false;
        }
        let named = !self.ids.is_empty() || !self.scopes.is_empty() || !self.claims.is_empty();
        if !named {
            // Only `kinds`: every principal of those kinds.
            return !self.kinds.is_empty();
        }
        self.ids.contains(&principal.id)
            || self.scopes.iter().any(|scope| principal.scopes.contains(scope))
            || self.claims.iter().any(|(name, wanted)| {
                principal.claims.iter().any(|(claim, value)| claim == name && claim_contains(value, wanted))
            })
    }

    /// Checks the entry when the config is read: it must name someone.
    pub fn check(&self, name: &str) -> Result<(), String> {
        if self.ids.is_empty() && self.kinds.is_empty() && self.scopes.is_empty() && self.claims.is_empty() {
            return Err(format!(
                "[approvals.groups.{name}] names no one: set `ids`, `scopes`, `claims` or `kinds` (or remove the \
                 table, and only the admin token may decide this group)"
            ));
        }
        if self.ids.iter().any(|id| id.trim().is_empty()) {
            return Err(format!("[approvals.groups.{name}] ids: an id is empty"));
        }
        if self.kinds.contains(&PrincipalKind::Anonymous) {
            return Err(format!("[approvals.groups.{name}] kinds: `anonymous` can never decide an approval"));
        }
        if self.claims.iter().any(|(claim, value)| claim.trim().is_empty() || value.trim().is_empty()) {
            return Err(format!("[approvals.groups.{name}] claims: a claim name or value is empty"));
        }
        Ok(())
    }
}

/// Whether a claim's value is `wanted`, or lists it: a JSON array of strings (how a JWT's
/// array claim is carried), or words separated by spaces or commas.
fn claim_contains(value: &str, wanted: &str) -> bool {
    let value = value.trim();
    if value == wanted {
        return true;
    }
    if value.starts_with('[')
        && let Ok(items) = serde_json::from_str::<Vec<serde_json::Value>>(value)
    {
        return items.iter().any(|item| item.as_str() == Some(wanted));
    }
    value.split(|c: char| c.is_whitespace() || c == ',').any(|word| !word.is_empty() && word == wanted)
}

/// Every `[approvals.groups]` entry: who may decide which approvals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApproverGroups {
    groups: BTreeMap<String, GroupConfig>,
}

/// Why a principal may not decide an approval.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotAllowed {
    /// The approval's group has no `[approvals.groups]` entry: only the admin token decides it.
    #[error(
        "approver group `{group}` has no [approvals.groups.{group}] entry, so only the admin token may decide its \
         approvals"
    )]
    UnconfiguredGroup {
        /// The group.
        group: String,
    },
    /// The principal is not a member of the approval's group.
    #[error("`{id}` is not a member of approver group `{group}`")]
    NotMember {
        /// The principal.
        id: String,
        /// The group.
        group: String,
    },
    /// Four eyes: the principal made the request, or it was made on its behalf.
    #[error(
        "four eyes: `{id}` may not decide approval `{approval}`, which holds a request made by it or on its behalf; \
         another member of `{group}` must"
    )]
    OwnRequest {
        /// The principal.
        id: String,
        /// The approval.
        approval: String,
        /// The group.
        group: String,
    },
}

impl NotAllowed {
    /// The problem code the admin API answers with.
    pub fn code(&self) -> &'static str {
        match self {
            NotAllowed::UnconfiguredGroup { .. } | NotAllowed::NotMember { .. } => "not-an-approver",
            NotAllowed::OwnRequest { .. } => "four-eyes",
        }
    }
}

impl ApproverGroups {
    /// The groups of a config's `[approvals.groups]`.
    pub fn new(groups: BTreeMap<String, GroupConfig>) -> ApproverGroups {
        ApproverGroups { groups }
    }

    /// The entry for `group`, if configured.
    pub fn get(&self, group: &str) -> Option<&GroupConfig> {
        self.groups.get(group)
    }

    /// Whether `group` has an entry.
    pub fn is_configured(&self, group: &str) -> bool {
        self.groups.contains_key(group)
    }

    /// Whether no group is configured.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The configured groups `principal` belongs to.
    pub fn member_of(&self, principal: &Principal) -> Vec<&str> {
        self.groups.iter().filter(|(_, g)| g.admits(principal)).map(|(name, _)| name.as_str()).collect()
    }

    /// Whether `principal` may see `approval` (it is a member of its group; four eyes does
    /// not hide a request from its maker's view).
    pub fn may_see(&self, principal: &Principal, approval: &Approval) -> bool {
        self.get(&approval.group).is_some_and(|g| g.admits(principal))
    }

    /// Whether `principal` may approve or reject `approval`: a member of its group, and,
    /// under four eyes, neither the caller whose request it holds nor the user that
    /// caller acted for.
    pub fn may_decide(&self, principal: &Principal, approval: &Approval) -> Result<(), NotAllowed> {
        let group = approval.group.clone();
        let Some(config) = self.get(&group) else {
            return Err(NotAllowed::UnconfiguredGroup { group });
        };
        if !config.admits(principal) {
            return Err(NotAllowed::NotMember { id: principal.id.clone(), group });
        }
        if config.four_eyes {
            let own = approval.principal_id == principal.id || approval.on_behalf_of.as_deref() == Some(&principal.id);
            if own {
                return Err(NotAllowed::OwnRequest { id: principal.id.clone(), approval: approval.id.clone(), group });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approval::ApprovalState;

    fn user(id: &str) -> Principal {
        Principal { kind: PrincipalKind::User, id: id.into(), ..Principal::default() }
    }

    fn approval(principal: &str, on_behalf_of: Option<&str>, group: &str) -> Approval {
        Approval {
            id: "apr_test".into(),
            digest: "d".into(),
            principal_kind: "agent".into(),
            principal_id: principal.into(),
            on_behalf_of: on_behalf_of.map(str::to_owned),
            policy: "p".into(),
            reason: "r".into(),
            group: group.into(),
            request_line: "POST h /x".into(),
            created_ms: 0,
            expires_ms: 1,
            state: ApprovalState::Pending,
            ..Approval::default()
        }
    }

    fn parse(toml_text: &str) -> GroupConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn membership_is_any_of_ids_scopes_claims_within_kinds() {
        let group = parse(
            "ids = [\"corp:fiona\"]\nscopes = [\"approvals:finance\"]\nclaims = { groups = \"finance\" }\nkinds = [\"user\"]\n",
        );
        assert!(group.four_eyes, "four eyes is the default");
        assert!(group.admits(&user("corp:fiona")));
        assert!(!group.admits(&user("fiona")), "ids are exact, prefix included");
        let scoped = Principal { scopes: vec!["approvals:finance".into()], ..user("sam") };
        assert!(group.admits(&scoped));
        for claim in ["finance", "ops finance", "ops,finance", "[\"ops\",\"finance\"]"] {
            let p = Principal { claims: vec![("groups".into(), claim.into())], ..user("carl") };
            assert!(group.admits(&p), "{claim}");
        }
        for claim in ["financer", "fin", "[\"finances\"]", ""] {
            let p = Principal { claims: vec![("groups".into(), claim.into())], ..user("carl") };
            assert!(!group.admits(&p), "{claim}");
        }
        let other_claim = Principal { claims: vec![("team".into(), "finance".into())], ..user("carl") };
        assert!(!group.admits(&other_claim));
        let service = Principal { kind: PrincipalKind::Service, ..user("corp:fiona") };
        assert!(!group.admits(&service), "kinds restricts every match");
        assert!(!group.admits(&Principal::default()), "anonymous never");
    }

    #[test]
    fn someone_acting_for_a_member_is_not_a_member() {
        let group = parse("claims = { groups = \"finance\" }\n");
        let agent = Principal {
            kind: PrincipalKind::Agent,
            id: "bot".into(),
            on_behalf_of: Some("fiona".into()),
            claims: vec![("groups".into(), "finance".into())],
            ..Principal::default()
        };
        assert!(!group.admits(&agent));
        let fiona = Principal { claims: vec![("groups".into(), "finance".into())], ..user("fiona") };
        assert!(group.admits(&fiona));
    }

    #[test]
    fn kinds_alone_admit_every_principal_of_those_kinds() {
        let group = parse("kinds = [\"user\"]\n");
        assert!(group.admits(&user("anyone")));
        assert!(!group.admits(&Principal { kind: PrincipalKind::Service, ..user("svc") }));
    }

    #[test]
    fn a_group_naming_no_one_or_anonymous_is_refused() {
        let empty = parse("four_eyes = false\n");
        assert!(empty.check("ops").unwrap_err().contains("[approvals.groups.ops] names no one"));
        let anon = parse("kinds = [\"anonymous\"]\n");
        assert!(anon.check("ops").unwrap_err().contains("anonymous"));
        assert!(toml::from_str::<GroupConfig>("idz = [\"a\"]\n").is_err(), "unknown keys are refused");
    }

    #[test]
    fn four_eyes_bars_the_requester_and_the_user_it_acted_for() {
        let mut groups = BTreeMap::new();
        groups.insert("finance".to_owned(), GroupConfig::of_ids(&["fiona", "bot", "alice"]));
        groups.insert("relaxed".to_owned(), GroupConfig::of_ids(&["fiona", "alice"]).with_four_eyes(false));
        let groups = ApproverGroups::new(groups);
        let held = approval("bot", Some("alice"), "finance");
        assert_eq!(groups.may_decide(&user("fiona"), &held), Ok(()));
        let by_maker = groups.may_decide(&user("bot"), &held).unwrap_err();
        assert_eq!(by_maker.code(), "four-eyes");
        let for_alice = groups.may_decide(&user("alice"), &held).unwrap_err();
        assert!(matches!(for_alice, NotAllowed::OwnRequest { .. }), "{for_alice}");
        let relaxed = approval("alice", None, "relaxed");
        assert_eq!(groups.may_decide(&user("alice"), &relaxed), Ok(()), "four_eyes = false allows it");
        let stranger = groups.may_decide(&user("mallory"), &held).unwrap_err();
        assert_eq!(stranger.code(), "not-an-approver");
        let unconfigured = groups.may_decide(&user("fiona"), &approval("bot", None, "legal")).unwrap_err();
        assert!(matches!(unconfigured, NotAllowed::UnconfiguredGroup { .. }), "{unconfigured}");
        assert!(groups.may_see(&user("fiona"), &held) && !groups.may_see(&user("mallory"), &held));
        assert_eq!(groups.member_of(&user("alice")), vec!["finance", "relaxed"]);
    }
}
