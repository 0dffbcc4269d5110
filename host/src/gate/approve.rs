//! The approval round trip inside [`Gate::admit`]: a request whose verdict says
//! require-approval is held until **every approver group that asked** has approved it, and
//! its retry uses up exactly those approvals.
//!
//! One pending [`Approval`] is stored per (request, group): two policies asking `finance`
//! share one, a policy asking `finance` and another asking `legal` make two. The caller is
//! told all of them at once, in one [`ApprovalNotice`] whose `id` is what to send back in
//! the `Portcullis-Approval` header: one id, or, when several groups must approve, their
//! ids separated by commas (`apr_…,apr_…`), so a client that echoes the header it got
//! works unchanged. The retry passes only when the ids cover every group that asked this
//! time, no id is for a group that did not, and every one is approved, unexpired, unused
//! and for this caller and request; then all of them are used in one atomic step. Anything
//! less uses none of them: a group that has not yet been asked is asked (and the caller is
//! told the full list again), any other failure is refused with why.

use crate::approval::{Approval, ApprovalEvent, ApprovalStore, MAX_IDS, NewApproval, RedeemError, Redemption, Shown};
use crate::decision::DecisionKind;
use crate::exchange::Request;
use crate::verdict::Verdict;

use super::door::Arrival;
use super::refusal::{ApprovalNotice, Refusal};
use super::{Gate, RequestCheck};

/// What a caller is told when the approval store cannot answer (no internals).
const UNAVAILABLE: &str = "this request needs an approval, and the approval store is unavailable; try again shortly";

/// How a held request's approval round ended.
pub(super) enum Round {
    /// Every group that asked approved and the approvals were used: forward with this
    /// check (the other policies' redactions applied to the request).
    Approved {
        /// The request phase with the approvals waived.
        check: RequestCheck,
        /// The ids used, separated by commas, for the audit record.
        ids: String,
    },
    /// Not (yet): answer with this refusal.
    Refused {
        /// The answer.
        refusal: Refusal,
        /// The approval ids the answer names (for the audit record), if it names any.
        ids: Option<String>,
    },
}

/// One approver group that asked, with the policies that asked it.
struct Ask<'a> {
    group: &'a str,
    policies: Vec<&'a str>,
    reasons: Vec<&'a str>,
    ttl_seconds: u32,
}

impl Gate {
    /// Settles the approvals a require-approval `verdict` asks for. `digest` is the
    /// request's [`request_digest`](crate::approval::request_digest), taken before any
    /// redaction; `request` is redacted in place only when the round ends approved.
    pub(super) fn approval_round(
        &self,
        request: &mut Request,
        verdict: &Verdict,
        digest: Option<String>,
        arrival: &Arrival,
    ) -> Round {
        let policy = verdict.decided_by.clone();
        let refused = |refusal: Refusal| Round::Refused { refusal, ids: None };
        let asked = verdict.approvals_asked();
        let holding = verdict.policies.iter().filter(|p| p.decision == DecisionKind::RequireApproval).count();
        let reason = reasons(&asked);
        let (Some(store), Some(digest)) = (&self.approvals, digest) else {
            return refused(self.refusal(
                request,
                403,
                "approval-unavailable",
                format!("{reason} (no approval store is configured, so it cannot be approved here)"),
                policy,
            ));
        };
        if asked.is_empty() || asked.len() != holding {
            // A require-approval that does not say which group may approve it cannot be
            // waived by any approval.
            return refused(self.refusal(
                request,
                403,
                "approval-unavailable",
                format!("{reason} (a policy asked for an approval without naming its group)"),
                policy,
            ));
        }
        let asks = group_asks(&asked);
        let groups: Vec<String> = asks.iter().map(|a| a.group.to_owned()).collect();

        let Some(offered) = &arrival.approval_id else {
            return match self.ask(
                store.as_ref(),
                request,
                &digest,
                &asks,
                Vec::new(),
                &reason,
                policy.clone(),
                verdict,
                arrival,
            ) {
                Ok(round) => round,
                Err(e) => self.store_failed(store.as_ref(), request, verdict, &groups, &e, policy),
            };
        };
        let ids: Vec<String> =
            offered.split(',').map(str::trim).filter(|id| !id.is_empty()).map(str::to_owned).collect();
        if ids.len() > MAX_IDS {
            let e = RedeemError::TooMany { count: ids.len() };
            return refused(self.refusal(request, 403, "approval-invalid", e.to_string(), policy));
        }

        // What the approved request would be, worked out before any approval is used, so a
        // redaction that fails (or a hold that remains) uses none of them.
        let mut approved_request = request.clone();
        let check = self.check_approved(&mut approved_request, verdict, &groups);
        if !check.verdict.is_allowed() {
            return refused(self.refusal(
                request,
                403,
                "approval-unavailable",
                format!("{reason} (an approval this request needs cannot be given)"),
                check.verdict.decided_by.clone(),
            ));
        }
        if let Some(error) = &check.redaction_error {
            return refused(self.refusal(request, 500, "redaction-failed", super::door::redaction_failed(error), None));
        }

        let redemption =
            Redemption { ids: &ids, digest: &digest, principal: &request.principal, groups: Some(&groups) };
        match store.redeem_all(&redemption, arrival.now_ms) {
            Ok(used) => {
                self.redeemed(used, request, arrival);
                *request = approved_request;
                Round::Approved { check, ids: ids.join(",") }
            }
            Err(RedeemError::Missing { groups: missing }) => {
                // The ids sent are the caller's, for this request and for groups that
                // asked (checked before `Missing`): keep them in the list it is told.
                let mut kept = Vec::with_capacity(ids.len());
                for id in &ids {
                    if let Ok(Some(approval)) = store.get(id, arrival.now_ms) {
                        kept.push(approval);
                    } else {
                        let e = RedeemError::Unknown { id: id.clone() };
                        return refused(self.refusal(request, 403, "approval-invalid", e.to_string(), policy));
                    }
                }
                let missing: Vec<Ask<'_>> = asks.into_iter().filter(|a| missing.iter().any(|m| m == a.group)).collect();
                match self.ask(
                    store.as_ref(),
                    request,
                    &digest,
                    &missing,
                    kept,
                    &reason,
                    policy.clone(),
                    verdict,
                    arrival,
                ) {
                    Ok(round) => round,
                    Err(e) => self.store_failed(store.as_ref(), request, verdict, &groups, &e, policy),
                }
            }
            Err(RedeemError::Store(source)) => {
                self.store_failed(store.as_ref(), request, verdict, &groups, &source, policy)
            }
            Err(e) => refused(self.refusal(request, 403, "approval-invalid", e.to_string(), policy)),
        }
    }

    /// Stores (or finds) a pending approval for each of `asks` and answers
    /// `approval-required` naming them after the `kept` ones the caller already holds.
    #[allow(clippy::too_many_arguments)]
    fn ask(
        &self,
        store: &dyn ApprovalStore,
        request: &Request,
        digest: &str,
        asks: &[Ask<'_>],
        kept: Vec<Approval>,
        reason: &str,
        policy: Option<String>,
        verdict: &Verdict,
        arrival: &Arrival,
    ) -> Result<Round, crate::approval::ApprovalError> {
        let now_ms = arrival.now_ms;
        let shown = self.shown(request, verdict);
        let mut approvals = kept;
        for ask in asks {
            let new = NewApproval {
                digest: digest.to_owned(),
                principal: request.principal.clone(),
                policy: ask.policies.join(", "),
                reason: ask.reasons.join("; "),
                group: ask.group.to_owned(),
                request_line: format!("{} {} {}", request.method, request.host(), request.path),
                shown: shown.clone(),
                ttl_ms: u64::from(ask.ttl_seconds) * 1000,
                now_ms,
            };
            let approval = store.create(new)?;
            // A caller retrying without the id gets the pending approval it already has
            // (made earlier): only a new one is news for the approvers.
            if approval.created_ms == now_ms && approval.request_id == request.id {
                self.approval_event(&ApprovalEvent::pending(approval.clone(), &request.id, now_ms), arrival);
            }
            approvals.push(approval);
        }
        let notice = notice(&approvals);
        let reason = if approvals.len() > 1 {
            format!("{reason} (each of these approver groups must approve: {})", notice.approver_group)
        } else {
            reason.to_owned()
        };
        let mut refusal = self.refusal(request, 403, "approval-required", reason, policy);
        let ids = notice.id.clone();
        refusal.approval = Some(notice);
        Ok(Round::Refused { refusal, ids: Some(ids) })
    }

    /// The store failed while a request needed an approval: refused 503
    /// `state-unavailable`, or, under `on_error = "allow"`, let through as if `groups` had
    /// approved (logged).
    fn store_failed(
        &self,
        store: &dyn ApprovalStore,
        request: &mut Request,
        verdict: &Verdict,
        groups: &[String],
        error: &dyn std::fmt::Display,
        policy: Option<String>,
    ) -> Round {
        if store.on_error() == crate::state::OnError::Allow {
            let mut approved_request = request.clone();
            let check = self.check_approved(&mut approved_request, verdict, groups);
            if check.verdict.is_allowed() && check.redaction_error.is_none() {
                tracing::warn!(error = %error, "approval store unavailable; letting the request through (on_error = allow)");
                *request = approved_request;
                return Round::Approved { check, ids: String::new() };
            }
        }
        tracing::error!(error = %error, "approval store unavailable; refusing the request");
        let refusal = self.refusal(request, 503, crate::state::STATE_UNAVAILABLE, UNAVAILABLE.into(), policy);
        Round::Refused { refusal, ids: None }
    }

    /// What the approvers are shown of a held request: its parts, and its body as the
    /// policies saw it with the redactions it would be forwarded with once every group
    /// that asked approves (none kept when those cannot be applied).
    fn shown(&self, request: &Request, verdict: &Verdict) -> Shown {
        let groups: Vec<String> = verdict.approvals_asked().iter().map(|(_, a)| a.approver_group.clone()).collect();
        let mut redacted = request.clone();
        let check = self.check_approved(&mut redacted, verdict, &groups);
        Shown::of(&redacted, check.may_forward())
    }

    /// Records that the retry `request` used these approvals.
    fn redeemed(&self, used: Vec<Approval>, request: &Request, arrival: &Arrival) {
        for approval in used {
            self.approval_event(&ApprovalEvent::redeemed(approval, &request.id, arrival.now_ms), arrival);
        }
    }

    /// Writes an approval event to the audit log and hands it to the event sink
    /// (notifications).
    fn approval_event(&self, event: &ApprovalEvent, arrival: &Arrival) {
        super::settle::record_event(self.audit.as_deref(), self.events.as_deref(), event, arrival.front_door);
    }

    /// The request phase again for an approved request: the require-approval decisions of
    /// the policies that asked `groups` are waived; redactions from the other policies
    /// still apply.
    pub(super) fn check_approved(&self, request: &mut Request, verdict: &Verdict, groups: &[String]) -> RequestCheck {
        RequestCheck::applying(verdict.approved_by(groups), request)
    }
}

/// The asks grouped by approver group, in the order the groups first asked; a group's
/// approval lives as long as the shortest time-to-live any of its policies gave.
fn group_asks<'a>(asked: &[(&'a str, &'a crate::decision::Approval)]) -> Vec<Ask<'a>> {
    let mut asks: Vec<Ask<'a>> = Vec::new();
    for (policy, approval) in asked {
        let group = approval.approver_group.as_str();
        match asks.iter_mut().find(|a| a.group == group) {
            Some(ask) => {
                ask.policies.push(policy);
                if !ask.reasons.contains(&approval.reason.as_str()) {
                    ask.reasons.push(&approval.reason);
                }
                ask.ttl_seconds = ask.ttl_seconds.min(approval.ttl_seconds);
            }
            None => asks.push(Ask {
                group,
                policies: vec![policy],
                reasons: vec![&approval.reason],
                ttl_seconds: approval.ttl_seconds,
            }),
        }
    }
    asks
}

/// The policies' reasons, each once, for the caller.
fn reasons(asked: &[(&str, &crate::decision::Approval)]) -> String {
    let mut reasons: Vec<&str> = Vec::new();
    for (_, approval) in asked {
        if !reasons.contains(&approval.reason.as_str()) {
            reasons.push(&approval.reason);
        }
    }
    if reasons.is_empty() { "this request needs an approval".to_owned() } else { reasons.join("; ") }
}

/// What the caller is told: the ids to send back (separated by commas when several), the
/// groups in the same order, and the earliest expiry (after it, the retry cannot pass).
fn notice(approvals: &[Approval]) -> ApprovalNotice {
    ApprovalNotice {
        id: approvals.iter().map(|a| a.id.as_str()).collect::<Vec<_>>().join(","),
        approver_group: approvals.iter().map(|a| a.group.as_str()).collect::<Vec<_>>().join(", "),
        expires_ms: approvals.iter().map(|a| a.expires_ms).min().unwrap_or(0),
    }
}
