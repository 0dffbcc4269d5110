//! The combined answer of a policy set for one phase of one exchange, with the record of
//! who decided what, why and how long it took.

use serde::{Deserialize, Serialize};

use crate::decision::{Approval, Decision, DecisionKind, Redaction};
use crate::exchange::{Request, Response};
use crate::policy::Fault;
use crate::redact::{self, Applied, RedactError};

/// Which phase a verdict is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Before the request reaches the upstream.
    Request,
    /// Before the response reaches the caller.
    Response,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Request => "request",
            Phase::Response => "response",
        })
    }
}

/// What one policy decided, as recorded in the verdict and the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyResult {
    /// The policy's configured name.
    pub policy: String,
    /// Its component's SHA-256.
    pub digest: String,
    /// What it decided (a fault counts as `deny`, or `allow` when fail-open).
    pub decision: DecisionKind,
    /// The deny code, if it denied (`policy-error` for a fault).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Why, in words.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The redactions it asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redactions: Vec<Redaction>,
    /// Its audit labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<(String, String)>,
    /// What went wrong, if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
    /// Wall-clock time of the call, including instantiation, in microseconds.
    pub elapsed_us: u64,
    /// What it asked for, when it required an approval: every such policy's group must
    /// approve, not only the one that decided the combined verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
}

/// The combined decision for one phase: the first deny wins; otherwise any
/// require-approval; otherwise the union of all redactions; otherwise allow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The phase.
    pub phase: Phase,
    /// The route that matched, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The combined decision.
    pub decision: Decision,
    /// The policy whose deny or require-approval decided, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// Every evaluated policy's result, in route order. Policies after a deny are not run.
    pub policies: Vec<PolicyResult>,
    /// Total time for the phase, in microseconds.
    pub elapsed_us: u64,
}

impl Verdict {
    /// The combined decision's kind.
    pub fn kind(&self) -> DecisionKind {
        self.decision.kind()
    }

    /// Whether the message may proceed (allow or redact).
    pub fn is_allowed(&self) -> bool {
        matches!(self.decision, Decision::Allow | Decision::Redact { .. })
    }

    /// The redactions to apply (empty unless the decision is `redact`).
    pub fn redactions(&self) -> &[Redaction] {
        match &self.decision {
            Decision::Redact { redactions } => redactions,
            _ => &[],
        }
    }

    /// The approvals this verdict asks for: every policy whose decision was
    /// require-approval, in route order, with what it asked. A require-approval result that
    /// does not say what it asked (a verdict built by hand) takes the combined decision's
    /// approval when it is the policy that decided, and is otherwise left out here, which
    /// leaves it unwaivable by [`Verdict::approved_by`]: such a verdict can never be
    /// approved (fail closed).
    pub fn approvals_asked(&self) -> Vec<(&str, &Approval)> {
        self.policies
            .iter()
            .filter(|p| p.decision == DecisionKind::RequireApproval)
            .filter_map(|p| {
                let asked = p.approval.as_ref().or_else(|| match &self.decision {
                    Decision::RequireApproval(a) if self.decided_by.as_deref() == Some(p.policy.as_str()) => Some(a),
                    _ => None,
                });
                asked.map(|a| (p.policy.as_str(), a))
            })
            .collect()
    }

    /// This verdict once the approver groups in `groups` approved the request: the
    /// require-approval decisions of policies that asked one of those groups count as
    /// allow, so when they were all of them the result is the union of the policies'
    /// redactions, or allow. A require-approval from any other group (or one that does not
    /// say its group) still holds the request, decided by the first such policy. A deny is
    /// never overridden (it would already have won).
    pub fn approved_by(&self, groups: &[String]) -> Verdict {
        let mut verdict = self.clone();
        if !matches!(verdict.decision, Decision::RequireApproval(_)) {
            return verdict;
        }
        let asked = self.approvals_asked();
        let waived = |policy: &PolicyResult| {
            asked.iter().any(|(name, a)| *name == policy.policy && groups.contains(&a.approver_group))
        };
        let still = self.policies.iter().find(|p| p.decision == DecisionKind::RequireApproval && !waived(p));
        if let Some(still) = still {
            let approval = asked.iter().find(|(name, _)| *name == still.policy).map(|(_, a)| (*a).clone());
            if let Some(approval) = approval {
                verdict.decision = Decision::RequireApproval(approval);
            }
            verdict.decided_by = Some(still.policy.clone());
            return verdict;
        }
        let mut redactions: Vec<Redaction> = Vec::new();
        for r in self.policies.iter().flat_map(|p| &p.redactions) {
            if !redactions.contains(r) {
                redactions.push(r.clone());
            }
        }
        verdict.decision = if redactions.is_empty() { Decision::Allow } else { Decision::Redact { redactions } };
        verdict.decided_by = None;
        verdict
    }

    /// Applies this verdict's redactions to a normalised request. An error means the
    /// redaction could not be guaranteed (e.g. the body is not JSON): the caller must not
    /// forward the request. A caller holding its protocol's own message applies
    /// [`Verdict::redactions`] with its adapter instead (`adapters::http::apply_to_http_request`):
    /// deciding knows no protocol.
    pub fn apply_to_request(&self, request: &mut Request) -> Result<Applied, RedactError> {
        redact::apply_to_request(request, self.redactions())
    }

    /// Applies this verdict's redactions to a normalised response.
    pub fn apply_to_response(&self, response: &mut Response) -> Result<Applied, RedactError> {
        redact::apply_to_response(response, self.redactions())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{Action, Target};

    fn result(
        policy: &str,
        decision: DecisionKind,
        approval: Option<Approval>,
        redactions: Vec<Redaction>,
    ) -> PolicyResult {
        PolicyResult {
            policy: policy.into(),
            digest: String::new(),
            decision,
            code: None,
            reason: approval.as_ref().map(|a| a.reason.clone()).unwrap_or_default(),
            redactions,
            labels: Vec::new(),
            fault: None,
            elapsed_us: 0,
            approval,
        }
    }

    fn ask(group: &str) -> Approval {
        Approval { reason: format!("{group} must look"), approver_group: group.into(), ttl_seconds: 60 }
    }

    /// Two policies each asking a different group, and one redacting.
    fn held() -> Verdict {
        let mask = Redaction { target: Target::JsonPointer("/email".into()), action: Action::Remove };
        Verdict {
            phase: Phase::Request,
            route: Some("r".into()),
            decision: Decision::RequireApproval(ask("finance")),
            decided_by: Some("finance-guard".into()),
            policies: vec![
                result("finance-guard", DecisionKind::RequireApproval, Some(ask("finance")), Vec::new()),
                result("pii", DecisionKind::Redact, None, vec![mask]),
                result("legal-guard", DecisionKind::RequireApproval, Some(ask("legal")), Vec::new()),
            ],
            elapsed_us: 0,
        }
    }

    fn groups(names: &[&str]) -> Vec<String> {
        names.iter().map(|g| (*g).to_owned()).collect()
    }

    /// Finding: one approval waived every policy's require-approval.
    #[test]
    fn only_the_groups_that_approved_are_waived() {
        let verdict = held();
        let asked: Vec<(&str, &str)> =
            verdict.approvals_asked().into_iter().map(|(p, a)| (p, a.approver_group.as_str())).collect();
        assert_eq!(asked, [("finance-guard", "finance"), ("legal-guard", "legal")]);

        let finance_only = verdict.approved_by(&groups(&["finance"]));
        assert_eq!(finance_only.kind(), DecisionKind::RequireApproval);
        assert_eq!(finance_only.decided_by.as_deref(), Some("legal-guard"));
        assert!(matches!(&finance_only.decision, Decision::RequireApproval(a) if a.approver_group == "legal"));
        assert_eq!(verdict.approved_by(&groups(&["ops"])).decided_by.as_deref(), Some("finance-guard"));

        let both = verdict.approved_by(&groups(&["legal", "finance"]));
        assert_eq!(both.kind(), DecisionKind::Redact, "the other policies' redactions still apply");
        assert_eq!(both.decided_by, None);
    }

    #[test]
    fn a_require_approval_without_its_group_is_never_waived() {
        let mut verdict = held();
        verdict.policies[2].approval = None;
        assert_eq!(verdict.approvals_asked().len(), 1);
        let approved = verdict.approved_by(&groups(&["finance", "legal"]));
        assert_eq!(approved.kind(), DecisionKind::RequireApproval);
        assert_eq!(approved.decided_by.as_deref(), Some("legal-guard"));
        // The deciding policy's own approval is taken from the combined decision.
        let mut verdict = held();
        verdict.policies[0].approval = None;
        assert_eq!(verdict.approvals_asked().len(), 2);
    }
}
