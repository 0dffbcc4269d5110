//! An approver's decision on a pending approval: applied to the store and written to the
//! audit log, whichever way it arrives (the admin API, the `approvals` command, an
//! embedder's own tool), so the log shows who approved what beside what the gate decided.

use crate::approval::{Approval, ApprovalError, ApprovalStore};
use crate::audit::{AuditLabel, AuditOutcome, AuditPrincipal, AuditRecord, AuditSink, rfc3339_ms};
use crate::exchange::PrincipalKind;
use crate::verdict::Phase;

/// What the approver decided.
#[derive(Debug, Clone, Copy)]
pub enum Settlement<'a> {
    /// Let the held request through, once.
    Approve {
        /// Who approves.
        by: &'a str,
    },
    /// Refuse it.
    Reject {
        /// Who rejects.
        by: &'a str,
        /// Why, for the record.
        note: Option<&'a str>,
    },
}

/// Approves or rejects `id` in `store` and, when it worked, records it in `audit`: the
/// approver as the principal, `APPROVE`/`REJECT` as the method, the held request's host
/// and path, the approval's id, and who asked in the labels.
pub fn settle(
    store: &dyn ApprovalStore,
    audit: Option<&dyn AuditSink>,
    id: &str,
    settlement: Settlement<'_>,
    front_door: &str,
    now_ms: u64,
) -> Result<Approval, ApprovalError> {
    let (approval, by, verb, decision) = match settlement {
        Settlement::Approve { by } => (store.approve(id, by, now_ms)?, by, "APPROVE", AuditOutcome::Allow),
        Settlement::Reject { by, note } => (store.reject(id, by, note, now_ms)?, by, "REJECT", AuditOutcome::Deny),
    };
    if let Some(audit) = audit {
        audit.record(&record(&approval, by, verb, decision, front_door, now_ms));
    }
    Ok(approval)
}

fn record(
    approval: &Approval,
    by: &str,
    verb: &str,
    decision: AuditOutcome,
    front_door: &str,
    now_ms: u64,
) -> AuditRecord {
    // `request_line` is `METHOD host path`.
    let mut parts = approval.request_line.splitn(3, ' ');
    let (method, host, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let requested_by = match &approval.on_behalf_of {
        Some(user) => format!("{}:{} for {user}", approval.principal_kind, approval.principal_id),
        None => format!("{}:{}", approval.principal_kind, approval.principal_id),
    };
    let label = |key: &str, value: String| AuditLabel { policy: approval.policy.clone(), key: key.into(), value };
    AuditRecord {
        time: rfc3339_ms(now_ms),
        request_id: approval.id.clone(),
        front_door: front_door.into(),
        phase: Phase::Request,
        principal: AuditPrincipal { kind: PrincipalKind::User, id: by.into() },
        on_behalf_of: None,
        credential_id: None,
        method: verb.into(),
        host: host.into(),
        path: path.into(),
        operation: None,
        route: None,
        decision,
        auth_failure: None,
        status: None,
        decided_by: Some(approval.policy.clone()),
        policies: Vec::new(),
        redacted: Vec::new(),
        approval_id: Some(approval.id.clone()),
        latency_us: 0,
        labels: vec![
            label("held_method", method.into()),
            label("requested_by", requested_by),
            label("approver_group", approval.group.clone()),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approval::{MemoryStore, NewApproval};
    use crate::audit::MemorySink;
    use crate::exchange::Principal;

    #[test]
    fn approving_is_recorded_with_the_approver_and_the_held_request() {
        let store = MemoryStore::new();
        let principal = Principal {
            kind: PrincipalKind::Agent,
            id: "bot".into(),
            on_behalf_of: Some("alice".into()),
            ..Principal::default()
        };
        let pending = store
            .create(NewApproval {
                digest: "d".into(),
                principal,
                policy: "agent-guard".into(),
                reason: "agent writes".into(),
                group: "finance".into(),
                request_line: "POST api.test /invoices/7".into(),
                ttl_ms: 60_000,
                now_ms: 1_000,
            })
            .unwrap();
        let sink = MemorySink::new();
        let approved =
            settle(&store, Some(&sink), &pending.id, Settlement::Approve { by: "fiona" }, "admin", 2_000).unwrap();
        assert_eq!(approved.decided_by.as_deref(), Some("fiona"));
        let records = sink.records();
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!((r.method.as_str(), r.host.as_str(), r.path.as_str()), ("APPROVE", "api.test", "/invoices/7"));
        assert_eq!(r.principal.id, "fiona");
        assert_eq!(r.approval_id.as_deref(), Some(pending.id.as_str()));
        assert!(r.labels.iter().any(|l| l.key == "requested_by" && l.value == "agent:bot for alice"));
        // A second decision fails and records nothing.
        assert!(
            settle(&store, Some(&sink), &pending.id, Settlement::Reject { by: "x", note: None }, "admin", 3_000)
                .is_err()
        );
        assert_eq!(sink.records().len(), 1);
    }
}
