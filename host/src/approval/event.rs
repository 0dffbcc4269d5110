//! What happens to an approval, as plain data for whoever listens: notifications
//! (`[[approvals.notify]]` webhooks), the audit log, metrics, an embedder's own hooks.
//!
//! The places where an approval changes emit one [`ApprovalEvent`] each into an
//! [`ApprovalEvents`] sink:
//!
//! | kind | emitted by | when |
//! |---|---|---|
//! | [`Pending`](EventKind::Pending) | the gate (`approval_round`) | a request needed an approval and a *new* pending approval was stored (a caller retrying without the id gets the existing one and emits nothing) |
//! | [`Approved`](EventKind::Approved), [`Rejected`](EventKind::Rejected) | whoever settles it (the admin API) | an approver decided |
//! | [`Redeemed`](EventKind::Redeemed) | the gate | the caller's retry used the approval |
//! | [`Expired`](EventKind::Expired) | the server's sweeper ([`ApprovalStore::sweep_expired`](super::ApprovalStore::sweep_expired)) | a pending or approved-but-unused approval ran out of time (once, however many servers share the store) |
//!
//! Emitting never blocks and never fails the caller: a sink that does slow work (an HTTP
//! POST) queues the event and does it elsewhere. Each approval has at most one event of
//! each kind in a process, so `(approval id, kind)` ([`ApprovalEvent::key`]) identifies an
//! event for a receiver that deduplicates (a delivery retried after a lost answer comes twice).

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use super::{Approval, ApprovalState, Decider};

/// What happened to an approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum EventKind {
    /// A request needs an approval: a new pending approval was stored.
    Pending,
    /// An approver approved it.
    Approved,
    /// An approver rejected it.
    Rejected,
    /// Its time ran out while pending, or approved but not used.
    Expired,
    /// The caller's retry used it: the held request went through.
    Redeemed,
}

impl EventKind {
    /// Every kind, in life order.
    pub const ALL: [EventKind; 5] =
        [EventKind::Pending, EventKind::Approved, EventKind::Rejected, EventKind::Expired, EventKind::Redeemed];

    /// The kind as written in JSON and config: `pending`, `approved`, `rejected`, `expired`,
    /// `redeemed`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Pending => "pending",
            EventKind::Approved => "approved",
            EventKind::Rejected => "rejected",
            EventKind::Expired => "expired",
            EventKind::Redeemed => "redeemed",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        EventKind::ALL.into_iter().find(|kind| kind.as_str() == text.trim()).ok_or_else(|| {
            format!("unknown approval event `{text}`; use pending, approved, rejected, expired or redeemed")
        })
    }
}

/// One thing that happened to an approval, with a snapshot of the approval just after.
///
/// Plain data: no secret and no request body (an [`Approval`] carries neither), so it may
/// be sent to a webhook or written to a log as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ApprovalEvent {
    /// What happened.
    pub kind: EventKind,
    /// The approval as it stands after the event; for `expired`, with the state it expired in
    /// (`pending`, or `approved` when it was approved and never used).
    pub approval: Approval,
    /// When it happened, in ms since the Unix epoch (for `expired`, the approval's expiry).
    pub at_ms: u64,
    /// Who decided (approved and rejected events).
    pub by: Option<Decider>,
    /// The approver's note, if they gave one.
    pub note: Option<String>,
    /// The id of the request that caused the event (pending: the held request; redeemed:
    /// the retry), as in the audit log and the `Portcullis-Request-Id` header.
    pub request_id: Option<String>,
}

impl ApprovalEvent {
    /// An event of `kind` about `approval` at `at_ms`, with no decider, note or request.
    pub fn new(kind: EventKind, approval: Approval, at_ms: u64) -> ApprovalEvent {
        ApprovalEvent { kind, approval, at_ms, by: None, note: None, request_id: None }
    }

    /// A new pending approval, stored for the request `request_id`.
    pub fn pending(approval: Approval, request_id: &str, at_ms: u64) -> ApprovalEvent {
        ApprovalEvent::new(EventKind::Pending, approval, at_ms).with_request_id(request_id)
    }

    /// `by`'s decision on `approval` (as the store returned it: its `state` says which), with
    /// the note as stored.
    pub fn decided(approval: Approval, by: Decider, at_ms: u64) -> ApprovalEvent {
        let kind = if approval.state == ApprovalState::Rejected { EventKind::Rejected } else { EventKind::Approved };
        let note = approval.note.clone();
        ApprovalEvent { by: Some(by), note, ..ApprovalEvent::new(kind, approval, at_ms) }
    }

    /// The approval was used by the retry `request_id`.
    pub fn redeemed(approval: Approval, request_id: &str, at_ms: u64) -> ApprovalEvent {
        ApprovalEvent::new(EventKind::Redeemed, approval, at_ms).with_request_id(request_id)
    }

    /// The approval ran out of time, at its expiry.
    pub fn expired(approval: Approval) -> ApprovalEvent {
        let at_ms = approval.expires_ms;
        ApprovalEvent::new(EventKind::Expired, approval, at_ms)
    }

    /// This event with who decided.
    #[must_use]
    pub fn with_by(mut self, by: Decider) -> ApprovalEvent {
        self.by = Some(by);
        self
    }

    /// This event with a note.
    #[must_use]
    pub fn with_note(mut self, note: impl Into<String>) -> ApprovalEvent {
        self.note = Some(note.into());
        self
    }

    /// This event with the request that caused it.
    #[must_use]
    pub fn with_request_id(mut self, request_id: impl Into<String>) -> ApprovalEvent {
        self.request_id = Some(request_id.into());
        self
    }

    /// `APPROVAL_ID.KIND`, e.g. `apr_….pending`: unique per event, the same for the same
    /// event seen by several replicas, so a receiver can deduplicate on it.
    pub fn key(&self) -> String {
        format!("{}.{}", self.approval.id, self.kind)
    }
}

/// Where approval events go. Object safe; implementations must return quickly, never
/// block on I/O and never panic: emitting happens on the request path and in the admin
/// API, and a listener's trouble must not become the caller's.
pub trait ApprovalEvents: Send + Sync {
    /// Takes one event (queues it, counts it, writes it: whatever this sink does).
    fn emit(&self, event: &ApprovalEvent);
}

/// Hands every event to each of several sinks, in order.
#[derive(Default, Clone)]
pub struct Fanout(pub Vec<Arc<dyn ApprovalEvents>>);

impl ApprovalEvents for Fanout {
    fn emit(&self, event: &ApprovalEvent) {
        for sink in &self.0 {
            sink.emit(event);
        }
    }
}

/// Keeps every event in memory, for tests and embedders that poll.
#[derive(Default)]
pub struct MemoryEvents {
    events: Mutex<Vec<ApprovalEvent>>,
}

impl MemoryEvents {
    /// An empty sink.
    pub fn new() -> MemoryEvents {
        MemoryEvents::default()
    }

    /// The events so far, oldest first.
    pub fn events(&self) -> Vec<ApprovalEvent> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl ApprovalEvents for MemoryEvents {
    fn emit(&self, event: &ApprovalEvent) {
        self.events.lock().unwrap_or_else(PoisonError::into_inner).push(event.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approval(id: &str) -> Approval {
        Approval { id: id.into(), group: "finance".into(), expires_ms: 60_000, ..Approval::default() }
    }

    #[test]
    fn kinds_read_and_write_the_same_words() {
        for kind in EventKind::ALL {
            assert_eq!(kind.as_str().parse::<EventKind>().unwrap(), kind);
            assert_eq!(serde_json::to_value(kind).unwrap(), serde_json::json!(kind.as_str()));
        }
        assert!("used".parse::<EventKind>().unwrap_err().contains("pending, approved"));
    }

    #[test]
    fn a_decision_event_carries_who_and_the_note() {
        let mut rejected = approval("apr_1");
        rejected.state = ApprovalState::Rejected;
        rejected.note = Some("not this month".into());
        let event = ApprovalEvent::decided(rejected, Decider::named("fiona"), 2_000);
        assert_eq!(event.kind, EventKind::Rejected);
        assert_eq!(event.by.as_ref().map(|d| d.id.as_str()), Some("fiona"));
        assert_eq!(event.note.as_deref(), Some("not this month"));
        assert_eq!(event.key(), "apr_1.rejected");
        let expired = ApprovalEvent::expired(approval("apr_2"));
        assert_eq!((expired.kind, expired.at_ms), (EventKind::Expired, 60_000));
    }

    #[test]
    fn fanout_reaches_every_sink() {
        let (a, b) = (Arc::new(MemoryEvents::new()), Arc::new(MemoryEvents::new()));
        let fanout = Fanout(vec![a.clone(), b.clone()]);
        fanout.emit(&ApprovalEvent::pending(approval("apr_1"), "req_1", 0));
        assert_eq!(a.events().len(), 1);
        assert_eq!(b.events()[0].request_id.as_deref(), Some("req_1"));
    }
}
