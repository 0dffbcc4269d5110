//! What a front door answers when the gate refuses a request or a response: one shape for
//! every protocol, with an RFC 9457 problem body for HTTP.
//!
//! Front doors translate a [`Refusal`] into their protocol (an HTTP answer, an ext_authz
//! `DeniedHttpResponse`, a JSON-RPC error); the status, code and wording are decided here,
//! once, so callers see the same answer whichever door they came through.

use serde::Serialize;
use serde_json::{Value, json};

/// The header a caller repeats its request with once an approver approved it.
pub const APPROVAL_HEADER: &str = "portcullis-approval";

/// The header naming the request in the audit log (taken from the caller when sane).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The pending approvals a held request waits for, as the caller is told about them.
///
/// Usually one group asks, and this is one approval. When policies asked several approver
/// groups, each group has its own approval and every one must approve: `id` then holds
/// their ids separated by commas, and the retry sends that whole value back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalNotice {
    /// What to send back in [`APPROVAL_HEADER`] once approved: the approval's id, or the
    /// ids of every group's approval separated by commas (`apr_…,apr_…`).
    pub id: String,
    /// Who may approve: the group, or the groups (in the order of the ids) separated by
    /// `, `.
    pub approver_group: String,
    /// Until when the approvals may be used (the earliest of them), in ms since the Unix
    /// epoch.
    pub expires_ms: u64,
}

impl ApprovalNotice {
    /// The approval ids, one per group that must approve.
    pub fn ids(&self) -> Vec<&str> {
        self.id.split(',').map(str::trim).filter(|id| !id.is_empty()).collect()
    }
}

/// Why the gate refused, and how to answer the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// HTTP status to answer with.
    pub status: u16,
    /// Machine-readable code: a policy's deny code, or one of the gate's own
    /// (`unauthenticated`, `approval-required`, `approval-invalid`, `approval-unavailable`,
    /// `state-unavailable`, `redaction-failed`, `bad-request`).
    pub code: String,
    /// Why, in words (never a secret).
    pub reason: String,
    /// The policy that decided, when one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The request's id in the audit log.
    pub request_id: String,
    /// Set for `approval-required`: what to wait for and how to retry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalNotice>,
    /// Set for a `missing-scope` denial whose policy named the scopes it needs (its
    /// `missing-scopes` label, space-separated): what an OAuth resource server's
    /// `insufficient_scope` challenge asks the client to get (the MCP door's step-up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl Refusal {
    /// The RFC 9457 problem document for this refusal (`application/problem+json`).
    pub fn problem(&self) -> Value {
        let mut problem = json!({
            "type": format!("urn:portcullis:problem:{}", self.code),
            "title": title(self.status),
            "status": self.status,
            "detail": self.reason,
            "code": self.code,
            "request_id": self.request_id,
        });
        if let Some(policy) = &self.policy {
            problem["policy"] = json!(policy);
        }
        if let Some(approval) = &self.approval {
            problem["approval"] = json!({
                "id": approval.id,
                "approver_group": approval.approver_group,
                "expires_at": crate::audit::rfc3339_ms(approval.expires_ms),
                "retry": format!(
                    "once approved, send the same request again with the header `{APPROVAL_HEADER}: {}`",
                    approval.id
                ),
            });
            if approval.ids().len() > 1 {
                problem["approval"]["ids"] = json!(approval.ids());
            }
        }
        problem
    }

    /// The problem document as bytes, ready to send.
    pub fn problem_body(&self) -> Vec<u8> {
        let mut body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        body.push(b'\n');
        body
    }

    /// Headers to send with the answer besides `Content-Type`: `WWW-Authenticate` on 401,
    /// the approval id on `approval-required`, and the request id.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![(REQUEST_ID_HEADER, self.request_id.clone())];
        if self.status == 401 {
            headers.push(("www-authenticate", "Bearer realm=\"portcullis\"".into()));
        }
        if let Some(approval) = &self.approval {
            headers.push((APPROVAL_HEADER, approval.id.clone()));
        }
        headers
    }
}

/// The status's reason phrase, as the problem's title.
fn title(status: u16) -> &'static str {
    http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Refused")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_problem_document_carries_the_code_the_policy_and_how_to_retry() {
        let refusal = Refusal {
            status: 403,
            code: "approval-required".into(),
            reason: "agents' writes need a human".into(),
            policy: Some("agent-guard".into()),
            request_id: "r1".into(),
            approval: Some(ApprovalNotice { id: "apr_1".into(), approver_group: "finance".into(), expires_ms: 0 }),
            scope: None,
        };
        let problem = refusal.problem();
        assert_eq!(problem["type"], "urn:portcullis:problem:approval-required");
        assert_eq!(problem["title"], "Forbidden");
        assert_eq!(problem["status"], 403);
        assert_eq!(problem["policy"], "agent-guard");
        assert_eq!(problem["approval"]["id"], "apr_1");
        assert_eq!(problem["approval"]["expires_at"], "1970-01-01T00:00:00.000Z");
        assert!(problem["approval"]["retry"].as_str().unwrap().contains("portcullis-approval: apr_1"));
        assert!(refusal.headers().contains(&(APPROVAL_HEADER, "apr_1".to_owned())));
    }

    #[test]
    fn several_groups_are_one_header_value_and_a_list_of_ids() {
        let refusal = Refusal {
            status: 403,
            code: "approval-required".into(),
            reason: "two groups".into(),
            policy: Some("finance-guard".into()),
            request_id: "r3".into(),
            approval: Some(ApprovalNotice {
                id: "apr_1,apr_2".into(),
                approver_group: "finance, legal".into(),
                expires_ms: 0,
            }),
            scope: None,
        };
        let problem = refusal.problem();
        assert_eq!(problem["approval"]["ids"], serde_json::json!(["apr_1", "apr_2"]));
        assert!(problem["approval"]["retry"].as_str().unwrap().contains("portcullis-approval: apr_1,apr_2"));
        assert!(refusal.headers().contains(&(APPROVAL_HEADER, "apr_1,apr_2".to_owned())));
    }

    #[test]
    fn unauthenticated_answers_say_how_to_authenticate() {
        let refusal = Refusal {
            status: 401,
            code: "unauthenticated".into(),
            reason: "token expired".into(),
            policy: None,
            request_id: "r2".into(),
            approval: None,
            scope: None,
        };
        assert!(refusal.headers().iter().any(|(name, _)| *name == "www-authenticate"));
        assert!(refusal.problem().get("policy").is_none());
        assert!(refusal.problem_body().ends_with(b"}\n"));
    }
}
