//! An approval's life in the audit log, and an approver's decision.
//!
//! Every event of an approval ([`ApprovalEvent`]: pending, approved, rejected, redeemed,
//! expired) becomes one audit record ([`event_record`]) carrying the approval's id, the held
//! request's id and its request line, and is then handed to the event sink (notifications),
//! whichever way it happens: the gate (pending, redeemed), the admin API or the `approvals`
//! command or an embedder's own tool ([`settle`]: approved, rejected), a server's sweeper
//! ([`sweep_expired`]: expired).

use crate::approval::{Approval, ApprovalError, ApprovalEvent, ApprovalEvents, ApprovalStore, Decider, EventKind};
use crate::audit::{AuditApproval, AuditApprover, AuditOutcome, AuditPrincipal, AuditRecord, AuditSink, rfc3339_ms};
use crate::exchange::PrincipalKind;
use crate::verdict::Phase;

/// What the approver decided.
#[derive(Debug, Clone, Copy)]
pub enum Settlement<'a> {
    /// Let the held request through, once.
    Approve {
        /// Who approves.
        by: &'a Decider,
        /// A note, for the record.
        note: Option<&'a str>,
    },
    /// Refuse it.
    Reject {
        /// Who rejects.
        by: &'a Decider,
        /// Why, for the record.
        note: Option<&'a str>,
    },
}

/// Approves or rejects `id` in `store` and, when it worked, records it: one audit record
/// in `audit` (the `approved` or `rejected` event, with who decided, how they were known,
/// and the note), and the event in `events`. `front_door` says where the decision came
/// from (`admin`, `cli`, …).
///
/// Who may decide is the caller's to check ([`crate::approval::ApproverGroups::may_decide`]):
/// the store records whoever it is given.
pub fn settle(
    store: &dyn ApprovalStore,
    audit: Option<&dyn AuditSink>,
    events: Option<&dyn ApprovalEvents>,
    id: &str,
    settlement: Settlement<'_>,
    front_door: &str,
    now_ms: u64,
) -> Result<Approval, ApprovalError> {
    let (approval, by) = match settlement {
        Settlement::Approve { by, note } => (store.approve_as(id, by, note, now_ms)?, by),
        Settlement::Reject { by, note } => (store.reject_as(id, by, note, now_ms)?, by),
    };
    record_event(audit, events, &ApprovalEvent::decided(approval.clone(), by.clone(), now_ms), front_door);
    Ok(approval)
}

/// Writes `event` to the audit log and hands it to the event sink.
pub fn record_event(
    audit: Option<&dyn AuditSink>,
    events: Option<&dyn ApprovalEvents>,
    event: &ApprovalEvent,
    front_door: &str,
) {
    if let Some(audit) = audit {
        audit.record(&event_record(event, front_door));
    }
    if let Some(events) = events {
        events.emit(event);
    }
}

/// Records every approval in `store` that expired unused since the last sweep (by any
/// server sharing the store: [`ApprovalStore::sweep_expired`] hands each one out once) as
/// an `expired` event; returns how many. A server calls it every few seconds.
pub fn sweep_expired(
    store: &dyn ApprovalStore,
    audit: Option<&dyn AuditSink>,
    events: Option<&dyn ApprovalEvents>,
    now_ms: u64,
) -> Result<usize, ApprovalError> {
    let expired = store.sweep_expired(now_ms)?;
    for approval in &expired {
        record_event(audit, events, &ApprovalEvent::expired(approval.clone()), "sweeper");
    }
    Ok(expired.len())
}

/// The audit record of one approval event: the held request's principal, method, host,
/// path and operation, the approval's id, the request id (the held request's; for
/// `redeemed`, the retry's), the policy that asked, and in `approval` what happened, to
/// which group, by whom and with what note. The decision says how it went for the request:
/// `require-approval` (pending), `allow` (approved, redeemed) or `deny` (rejected, expired).
pub fn event_record(event: &ApprovalEvent, front_door: &str) -> AuditRecord {
    let a = &event.approval;
    let decision = match event.kind {
        EventKind::Pending => AuditOutcome::RequireApproval,
        EventKind::Approved | EventKind::Redeemed => AuditOutcome::Allow,
        _ => AuditOutcome::Deny,
    };
    // Approvals stored before the request's parts were kept have only the request line.
    let mut line = a.request_line.splitn(3, ' ');
    let (line_method, line_host, line_path) =
        (line.next().unwrap_or(""), line.next().unwrap_or(""), line.next().unwrap_or(""));
    let or = |field: &str, fallback: &str| if field.is_empty() { fallback.to_owned() } else { field.to_owned() };
    let kind: PrincipalKind = serde_json::from_value(serde_json::json!(a.principal_kind)).unwrap_or_default();
    let by = match event.kind {
        EventKind::Approved | EventKind::Rejected => a.decided_by.clone().map(|id| AuditApprover {
            id,
            kind: a.decided_by_kind.clone(),
            credential_id: a.decided_by_credential.clone(),
            via: a.decided_via.clone().unwrap_or_else(|| "named".into()),
        }),
        _ => None,
    };
    let state = match event.kind {
        // The sweep hands out the state it expired in.
        EventKind::Expired => a.state.as_str(),
        _ => a.state_at(event.at_ms).as_str(),
    };
    AuditRecord {
        time: rfc3339_ms(event.at_ms),
        request_id: event.request_id.clone().unwrap_or_else(|| a.request_id.clone()),
        front_door: front_door.into(),
        phase: Phase::Request,
        principal: AuditPrincipal { kind, id: a.principal_id.clone() },
        on_behalf_of: a.on_behalf_of.clone(),
        credential_id: None,
        method: or(&a.method, line_method),
        host: or(&a.host, line_host),
        path: or(&a.path, line_path),
        operation: a.operation.clone(),
        route: None,
        decision,
        auth_failure: None,
        status: None,
        decided_by: Some(a.policy.clone()),
        policies: Vec::new(),
        redacted: Vec::new(),
        approval_id: Some(a.id.clone()),
        latency_us: 0,
        labels: Vec::new(),
        approval: Some(AuditApproval {
            event: event.kind.as_str().into(),
            group: a.group.clone(),
            state: state.into(),
            held_request_id: a.request_id.clone(),
            expires_at: rfc3339_ms(a.expires_ms),
            by,
            note: match event.kind {
                EventKind::Approved | EventKind::Rejected => a.note.clone(),
                _ => None,
            },
        }),
        door_facts: std::collections::BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approval::event::MemoryEvents;
    use crate::approval::{MemoryStore, NewApproval, Shown};
    use crate::audit::MemorySink;
    use crate::exchange::Principal;

    fn pending(store: &MemoryStore, ttl_ms: u64) -> Approval {
        let principal = Principal {
            kind: PrincipalKind::Agent,
            id: "bot".into(),
            on_behalf_of: Some("alice".into()),
            ..Principal::default()
        };
        store
            .create(NewApproval {
                digest: "d".into(),
                principal,
                policy: "agent-guard".into(),
                reason: "agent writes".into(),
                group: "finance".into(),
                request_line: "POST api.test /invoices/7".into(),
                shown: Shown {
                    request_id: "req-1".into(),
                    method: "POST".into(),
                    host: "api.test".into(),
                    path: "/invoices/7".into(),
                    ..Shown::default()
                },
                ttl_ms,
                now_ms: 1_000,
            })
            .unwrap()
    }

    #[test]
    fn approving_is_recorded_with_the_approver_the_held_request_and_both_ids() {
        let store = MemoryStore::new();
        let pending = pending(&store, 60_000);
        let sink = MemorySink::new();
        let events = MemoryEvents::new();
        let fiona = Principal {
            kind: PrincipalKind::User,
            id: "fiona".into(),
            credential_id: Some("fiona-key".into()),
            ..Principal::default()
        };
        let by = Decider::principal(&fiona);
        let settlement = Settlement::Approve { by: &by, note: Some("fine") };
        let approved = settle(&store, Some(&sink), Some(&events), &pending.id, settlement, "admin", 2_000).unwrap();
        assert_eq!(approved.decided_by.as_deref(), Some("fiona"));
        assert_eq!(approved.decided_via.as_deref(), Some("principal"));
        assert_eq!(approved.decided_by_credential.as_deref(), Some("fiona-key"));
        let records = sink.records();
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!((r.method.as_str(), r.host.as_str(), r.path.as_str()), ("POST", "api.test", "/invoices/7"));
        assert_eq!((r.principal.id.as_str(), r.on_behalf_of.as_deref()), ("bot", Some("alice")));
        assert_eq!(r.request_id, "req-1");
        assert_eq!(r.approval_id.as_deref(), Some(pending.id.as_str()));
        let event = r.approval.as_ref().unwrap();
        assert_eq!(
            (event.event.as_str(), event.group.as_str(), event.state.as_str()),
            ("approved", "finance", "approved")
        );
        let approver = event.by.as_ref().unwrap();
        assert_eq!(
            (approver.id.as_str(), approver.kind.as_deref(), approver.credential_id.as_deref(), approver.via.as_str()),
            ("fiona", Some("user"), Some("fiona-key"), "principal")
        );
        assert_eq!(event.note.as_deref(), Some("fine"));
        assert_eq!(events.events().len(), 1);
        // A second decision fails and records nothing.
        let admin = Decider::admin_token();
        let again = Settlement::Reject { by: &admin, note: None };
        assert!(settle(&store, Some(&sink), Some(&events), &pending.id, again, "admin", 3_000).is_err());
        assert_eq!(sink.records().len(), 1);
        assert_eq!(events.events().len(), 1);
    }

    #[test]
    fn an_expiry_is_recorded_once() {
        let store = MemoryStore::new();
        let held = pending(&store, 1_000); // expires at 2 000
        let sink = MemorySink::new();
        assert_eq!(sweep_expired(&store, Some(&sink), None, 1_999).unwrap(), 0);
        assert_eq!(sweep_expired(&store, Some(&sink), None, 2_000).unwrap(), 1);
        assert_eq!(sweep_expired(&store, Some(&sink), None, 9_000).unwrap(), 0);
        let records = sink.records();
        assert_eq!(records.len(), 1);
        let event = records[0].approval.as_ref().unwrap();
        assert_eq!((event.event.as_str(), event.state.as_str()), ("expired", "pending"));
        assert_eq!(records[0].approval_id.as_deref(), Some(held.id.as_str()));
        assert_eq!(records[0].request_id, "req-1");
        assert_eq!(records[0].decision, AuditOutcome::Deny);
    }
}
