//! Builders for the [`Outcome`] a policy returns, and accessors for inspecting one in tests.
//!
//! `allow()` and `deny(..)` are complete outcomes; `redact()` and `require_approval(..)`
//! return builders that turn into an [`Outcome`] with `.into()` (or `.build()`). All of them,
//! and [`Outcome`] itself, take audit labels with `.label(key, value)`.

use alloc::string::String;
use alloc::vec::Vec;

use crate::{Action, Approval, Decision, Denial, Mask, Outcome, Redaction, Target};

/// The names of the host's detectors, for [`Target::detected`] (contract 0.2): the host
/// recognises these values by their shape and check digits (docs/minimisation.md).
pub mod detectors {
    /// Payment card numbers (Luhn).
    pub const CARD_NUMBER: &str = "card-number";
    /// International bank account numbers (mod-97).
    pub const IBAN: &str = "iban";
    /// E-mail addresses.
    pub const EMAIL: &str = "email";
    /// Phone numbers.
    pub const PHONE: &str = "phone";
    /// JSON Web Tokens.
    pub const JWT: &str = "jwt";
    /// Cloud, payment-provider and VCS keys, private-key blocks.
    pub const SECRET: &str = "secret";
}

impl Target {
    /// Every header with this name (case-insensitive).
    pub fn header(name: &str) -> Target {
        Target::Header(name.into())
    }

    /// Every query parameter with this name (request phase only).
    pub fn query(name: &str) -> Target {
        Target::Query(name.into())
    }

    /// The body value at this JSON pointer, `*` for every element or member.
    pub fn json_pointer(pointer: &str) -> Target {
        Target::JsonPointer(pointer.into())
    }

    /// Every object member with this name, at any depth of a JSON body (contract 0.2).
    pub fn json_name(name: &str) -> Target {
        Target::JsonName(name.into())
    }

    /// What the host's detector of this name ([`detectors`]) finds in the body, headers
    /// and query (contract 0.2).
    pub fn detected(detector: &str) -> Target {
        Target::Detected(detector.into())
    }
}

impl Redaction {
    /// Remove the targeted values.
    pub fn remove(target: Target) -> Redaction {
        Redaction { target, action: Action::Remove }
    }

    /// Replace the targeted values with `text`.
    pub fn replace(target: Target, text: &str) -> Redaction {
        Redaction { target, action: Action::Replace(text.into()) }
    }

    /// Mask the targeted values (contract 0.2):
    /// `Redaction::mask(Target::json_name("card_number"), Mask::KeepLast(4))`.
    pub fn mask(target: Target, mask: Mask) -> Redaction {
        Redaction { target, action: Action::Mask(mask) }
    }
}

/// The time-to-live of an approval when [`ApprovalBuilder::ttl`] is not called: 15 minutes.
pub const DEFAULT_APPROVAL_TTL_SECONDS: u32 = 900;

/// Let the message through unchanged.
pub fn allow() -> Outcome {
    Outcome { decision: Decision::Allow, labels: Vec::new() }
}

/// Refuse the message with HTTP `status`, a machine-readable `code` (e.g. `missing-scope`)
/// and a `reason` for humans. The reason reaches the caller: never put secrets in it.
pub fn deny(status: u16, code: &str, reason: impl Into<String>) -> Outcome {
    Outcome {
        decision: Decision::Deny(Denial { status, code: code.into(), reason: reason.into() }),
        labels: Vec::new(),
    }
}

/// Let the message through with fields removed or masked, which the host applies:
/// `redact().json("/email").json_mask("/phone", "***").header("x-api-key").into()`.
///
/// A redaction that ends up with no targets becomes [`allow`].
pub fn redact() -> RedactBuilder {
    RedactBuilder { redactions: Vec::new(), labels: Vec::new() }
}

/// Hold the request until a member of `approver_group` confirms it:
/// `require_approval("agents may not refund", "finance").ttl(3600).into()`.
pub fn require_approval(reason: impl Into<String>, approver_group: &str) -> ApprovalBuilder {
    ApprovalBuilder {
        approval: Approval {
            reason: reason.into(),
            approver_group: approver_group.into(),
            ttl_seconds: DEFAULT_APPROVAL_TTL_SECONDS,
        },
        labels: Vec::new(),
    }
}

fn push_label(labels: &mut Vec<(String, String)>, key: &str, value: impl Into<String>) {
    labels.push((key.into(), value.into()));
}

impl Outcome {
    /// Adds a key/value label for the audit record, e.g. `("rule", "agents-read-only")`.
    /// Never put secrets in labels.
    pub fn label(mut self, key: &str, value: impl Into<String>) -> Self {
        push_label(&mut self.labels, key, value);
        self
    }

    /// Whether the decision is `allow`.
    pub fn is_allow(&self) -> bool {
        matches!(self.decision, Decision::Allow)
    }

    /// The denial, if the decision is `deny`.
    pub fn denial(&self) -> Option<&Denial> {
        match &self.decision {
            Decision::Deny(denial) => Some(denial),
            _ => None,
        }
    }

    /// The redactions, if the decision is `redact` (empty otherwise).
    pub fn redactions(&self) -> &[Redaction] {
        match &self.decision {
            Decision::Redact(redactions) => redactions,
            _ => &[],
        }
    }

    /// The approval request, if the decision is `require-approval`.
    pub fn approval(&self) -> Option<&Approval> {
        match &self.decision {
            Decision::RequireApproval(approval) => Some(approval),
            _ => None,
        }
    }

    /// The value of the first label named `key`.
    pub fn label_value(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Collects redactions; see [`redact`].
#[derive(Debug, Clone, PartialEq)]
#[must_use = "a redaction does nothing until it is turned into an Outcome with `.into()`"]
pub struct RedactBuilder {
    redactions: Vec<Redaction>,
    labels: Vec<(String, String)>,
}

impl RedactBuilder {
    fn push(mut self, target: Target, action: Action) -> Self {
        self.redactions.push(Redaction { target, action });
        self
    }

    /// Removes the body member or array element at this JSON pointer (RFC 6901, with `*`
    /// for every array element or object member), e.g. `/customers/*/email`.
    pub fn json(self, pointer: &str) -> Self {
        self.push(Target::JsonPointer(pointer.into()), Action::Remove)
    }

    /// Replaces the body value at this JSON pointer with the JSON string `mask`.
    pub fn json_mask(self, pointer: &str, mask: &str) -> Self {
        self.push(Target::JsonPointer(pointer.into()), Action::Replace(mask.into()))
    }

    /// Removes every header with this name (case-insensitive).
    pub fn header(self, name: &str) -> Self {
        self.push(Target::Header(name.into()), Action::Remove)
    }

    /// Replaces the value of every header with this name with `mask`.
    pub fn header_mask(self, name: &str, mask: &str) -> Self {
        self.push(Target::Header(name.into()), Action::Replace(mask.into()))
    }

    /// Removes every query parameter with this name (request phase only).
    pub fn query(self, name: &str) -> Self {
        self.push(Target::Query(name.into()), Action::Remove)
    }

    /// Replaces the value of every query parameter with this name with `mask`.
    pub fn query_mask(self, name: &str, mask: &str) -> Self {
        self.push(Target::Query(name.into()), Action::Replace(mask.into()))
    }

    /// Removes every body member with this name, at any depth (contract 0.2).
    pub fn json_name(self, name: &str) -> Self {
        self.push(Target::JsonName(name.into()), Action::Remove)
    }

    /// Masks the values `target` names (contract 0.2), e.g.
    /// `redact().mask(Target::json_name("card_number"), Mask::KeepLast(4))`.
    pub fn mask(self, target: Target, mask: Mask) -> Self {
        self.push(target, Action::Mask(mask))
    }

    /// Masks what the detector named `detector` ([`detectors`]) finds, e.g.
    /// `redact().detected(detectors::EMAIL, Mask::KeepEmailDomain)` (contract 0.2).
    pub fn detected(self, detector: &str, mask: Mask) -> Self {
        self.push(Target::Detected(detector.into()), Action::Mask(mask))
    }

    /// Adds a redaction built elsewhere.
    pub fn redaction(mut self, redaction: Redaction) -> Self {
        self.redactions.push(redaction);
        self
    }

    /// Adds a label for the audit record.
    pub fn label(mut self, key: &str, value: impl Into<String>) -> Self {
        push_label(&mut self.labels, key, value);
        self
    }

    /// Whether no redaction has been added yet.
    pub fn is_empty(&self) -> bool {
        self.redactions.is_empty()
    }

    /// The outcome: `redact` with the collected redactions, or `allow` when there are none.
    pub fn build(self) -> Outcome {
        let decision = if self.redactions.is_empty() { Decision::Allow } else { Decision::Redact(self.redactions) };
        Outcome { decision, labels: self.labels }
    }
}

impl From<RedactBuilder> for Outcome {
    fn from(builder: RedactBuilder) -> Self {
        builder.build()
    }
}

/// Describes an approval; see [`require_approval`].
#[derive(Debug, Clone, PartialEq)]
#[must_use = "an approval does nothing until it is turned into an Outcome with `.into()`"]
pub struct ApprovalBuilder {
    approval: Approval,
    labels: Vec<(String, String)>,
}

impl ApprovalBuilder {
    /// How long the approval, once given, stays valid (default
    /// [`DEFAULT_APPROVAL_TTL_SECONDS`]).
    pub fn ttl(mut self, seconds: u32) -> Self {
        self.approval.ttl_seconds = seconds;
        self
    }

    /// Adds a label for the audit record.
    pub fn label(mut self, key: &str, value: impl Into<String>) -> Self {
        push_label(&mut self.labels, key, value);
        self
    }

    /// The `require-approval` outcome.
    pub fn build(self) -> Outcome {
        Outcome { decision: Decision::RequireApproval(self.approval), labels: self.labels }
    }
}

impl From<ApprovalBuilder> for Outcome {
    fn from(builder: ApprovalBuilder) -> Self {
        builder.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_carries_status_code_reason_and_labels() {
        let out = deny(403, "missing-scope", "scope a is required").label("rule", "r1");
        let denial = out.denial().unwrap();
        assert_eq!((denial.status, denial.code.as_str()), (403, "missing-scope"));
        assert_eq!(out.label_value("rule"), Some("r1"));
        assert!(!out.is_allow());
    }

    #[test]
    fn redact_collects_targets_in_order() {
        let out: Outcome = redact()
            .json("/email")
            .json_mask("/phone", "***")
            .header("x-api-key")
            .query("token")
            .label("fields", "4")
            .into();
        assert_eq!(
            out.redactions(),
            &[
                Redaction { target: Target::JsonPointer("/email".into()), action: Action::Remove },
                Redaction { target: Target::JsonPointer("/phone".into()), action: Action::Replace("***".into()) },
                Redaction { target: Target::Header("x-api-key".into()), action: Action::Remove },
                Redaction { target: Target::Query("token".into()), action: Action::Remove },
            ]
        );
        assert_eq!(out.label_value("fields"), Some("4"));
    }

    #[test]
    fn names_masks_and_detectors_build_0_2_redactions() {
        let out: Outcome = redact()
            .mask(Target::json_name("card_number"), Mask::KeepLast(4))
            .json_name("cvc")
            .detected(detectors::EMAIL, Mask::KeepEmailDomain)
            .redaction(Redaction::mask(Target::header("x-customer"), Mask::Pseudonym))
            .redaction(Redaction::replace(Target::detected(detectors::JWT), "[jwt]"))
            .into();
        assert_eq!(
            out.redactions(),
            &[
                Redaction { target: Target::JsonName("card_number".into()), action: Action::Mask(Mask::KeepLast(4)) },
                Redaction { target: Target::JsonName("cvc".into()), action: Action::Remove },
                Redaction { target: Target::Detected("email".into()), action: Action::Mask(Mask::KeepEmailDomain) },
                Redaction { target: Target::Header("x-customer".into()), action: Action::Mask(Mask::Pseudonym) },
                Redaction { target: Target::Detected("jwt".into()), action: Action::Replace("[jwt]".into()) },
            ]
        );
    }

    #[test]
    fn empty_redaction_is_an_allow() {
        let out: Outcome = redact().label("k", "v").into();
        assert!(out.is_allow());
        assert_eq!(out.label_value("k"), Some("v"));
    }

    #[test]
    fn approval_defaults_and_ttl() {
        let out: Outcome = require_approval("why", "finance").into();
        assert_eq!(out.approval().unwrap().ttl_seconds, DEFAULT_APPROVAL_TTL_SECONDS);
        let out: Outcome = require_approval("why", "finance").ttl(3600).label("a", "b").into();
        let approval = out.approval().unwrap();
        assert_eq!((approval.approver_group.as_str(), approval.ttl_seconds), ("finance", 3600));
        assert_eq!(out.label_value("a"), Some("b"));
    }
}
