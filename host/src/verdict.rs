//! The combined answer of a policy set for one phase of one exchange, with the record of
//! who decided what, why and how long it took.

use serde::{Deserialize, Serialize};

use crate::decision::{Decision, DecisionKind, Redaction};
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

    /// This verdict once a human approved the request: require-approval decisions count
    /// as allow, so the result is the union of the other policies' redactions, or allow.
    /// A deny is never overridden (it would already have won).
    pub fn approved(&self) -> Verdict {
        let mut verdict = self.clone();
        if matches!(verdict.decision, Decision::RequireApproval(_)) {
            let mut redactions: Vec<Redaction> = Vec::new();
            for r in self.policies.iter().flat_map(|p| &p.redactions) {
                if !redactions.contains(r) {
                    redactions.push(r.clone());
                }
            }
            verdict.decision = if redactions.is_empty() { Decision::Allow } else { Decision::Redact { redactions } };
            verdict.decided_by = None;
        }
        verdict
    }

    /// Applies this verdict's redactions to a normalised request. An error means the
    /// redaction could not be guaranteed (e.g. the body is not JSON): the caller must not
    /// forward the request.
    pub fn apply_to_request(&self, request: &mut Request) -> Result<Applied, RedactError> {
        redact::apply_to_request(request, self.redactions())
    }

    /// Applies this verdict's redactions to a normalised response.
    pub fn apply_to_response(&self, response: &mut Response) -> Result<Applied, RedactError> {
        redact::apply_to_response(response, self.redactions())
    }

    /// Applies this verdict's redactions to an `http::Request` with a buffered body.
    pub fn apply_to_http_request(&self, request: &mut http::Request<Vec<u8>>) -> Result<Applied, RedactError> {
        crate::adapters::http::apply_to_http_request(request, self.redactions())
    }

    /// Applies this verdict's redactions to an `http::Response` with a buffered body.
    pub fn apply_to_http_response(&self, response: &mut http::Response<Vec<u8>>) -> Result<Applied, RedactError> {
        crate::adapters::http::apply_to_http_response(response, self.redactions())
    }
}
