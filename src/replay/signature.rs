//! What of a passage counts as its decision, for comparing two policy versions and for
//! test expectations: the decision kind, the deny code, the redacted fields and the
//! approver group, per phase. Reasons and timings are shown but not compared.

use portcullis_host::Verdict;
use portcullis_host::decision::{Decision, DecisionKind};
use portcullis_host::gate::Passage;
use serde::Serialize;

/// One phase's decision, reduced to what is compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PhaseSignature {
    /// `allow`, `deny`, `redact` or `require-approval`.
    pub decision: DecisionKind,
    /// The HTTP status of a deny.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The deny code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The redacted targets (`json:/email`, `header:x-api-key`), in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub redacted: Vec<String>,
    /// The approver group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approver_group: Option<String>,
    /// The deciding policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// Why (not compared).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

impl PhaseSignature {
    /// The signature of a verdict.
    pub fn of(verdict: &Verdict) -> PhaseSignature {
        let mut sig = PhaseSignature {
            decision: verdict.kind(),
            status: None,
            code: None,
            redacted: Vec::new(),
            approver_group: None,
            decided_by: verdict.decided_by.clone(),
            reason: verdict.decision.reason(),
        };
        match &verdict.decision {
            Decision::Deny(d) => {
                sig.status = Some(d.status);
                sig.code = Some(d.code.clone());
            }
            Decision::Redact { redactions } => sig.redacted = redactions.iter().map(|r| r.target.to_string()).collect(),
            Decision::RequireApproval(a) => sig.approver_group = Some(a.approver_group.clone()),
            Decision::Allow => {}
        }
        sig
    }

    /// Equal in everything compared (not the reason).
    pub fn same_as(&self, other: &PhaseSignature) -> bool {
        self.decision == other.decision
            && self.status == other.status
            && self.code == other.code
            && self.redacted == other.redacted
            && self.approver_group == other.approver_group
    }

    /// `deny 403 missing-scope`, `redact json:/email`, `require-approval finance`, `allow`.
    pub fn short(&self) -> String {
        match self.decision {
            DecisionKind::Allow => "allow".into(),
            DecisionKind::Deny => format!(
                "deny {} {}",
                self.status.map(|s| s.to_string()).unwrap_or_default(),
                self.code.as_deref().unwrap_or("")
            ),
            DecisionKind::Redact => format!("redact {}", self.redacted.join(",")),
            DecisionKind::RequireApproval => {
                format!("require-approval {}", self.approver_group.as_deref().unwrap_or(""))
            }
        }
    }
}

/// A whole passage reduced to what is compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signature {
    /// The request phase (a 401 `unauthenticated` deny when authentication failed).
    pub request: PhaseSignature,
    /// The response phase, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<PhaseSignature>,
}

impl Signature {
    /// The signature of a passage.
    pub fn of(passage: &Passage) -> Signature {
        let request = match &passage.request {
            Some(check) if passage.auth_failure.is_none() => PhaseSignature::of(&check.verdict),
            // No policy ran: the front door answers 401.
            _ => PhaseSignature {
                decision: DecisionKind::Deny,
                status: Some(401),
                code: Some("unauthenticated".into()),
                redacted: Vec::new(),
                approver_group: None,
                decided_by: None,
                reason: passage.auth_failure.as_ref().map_or("authentication failed".into(), |f| f.reason.clone()),
            },
        };
        Signature { request, response: passage.response.as_ref().map(|c| PhaseSignature::of(&c.verdict)) }
    }

    /// Equal in both phases.
    pub fn same_as(&self, other: &Signature) -> bool {
        self.request.same_as(&other.request)
            && match (&self.response, &other.response) {
                (Some(a), Some(b)) => a.same_as(b),
                (None, None) => true,
                _ => false,
            }
    }

    /// The entry's overall outcome: a deny or approval in either phase, else a redaction
    /// in either phase, else allow.
    pub fn overall(&self) -> DecisionKind {
        let phases = std::iter::once(&self.request).chain(self.response.as_ref());
        let kinds: Vec<DecisionKind> = phases.map(|p| p.decision).collect();
        for kind in [DecisionKind::Deny, DecisionKind::RequireApproval, DecisionKind::Redact] {
            if kinds.contains(&kind) {
                return kind;
            }
        }
        DecisionKind::Allow
    }

    /// `deny 403 missing-scope` for the request phase, with ` / response: …` when the
    /// response phase ran.
    pub fn short(&self) -> String {
        match &self.response {
            Some(r) => format!("{} / response: {}", self.request.short(), r.short()),
            None => self.request.short(),
        }
    }
}
