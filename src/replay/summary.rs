//! Counting a replay: entries by overall decision, per route and per policy, and errors.

use std::collections::BTreeMap;

use portcullis_host::decision::DecisionKind;
use serde::Serialize;

use super::approve::{ApprovalRound, GroupDecision, Outcome};
use super::mcp::McpCounts;
use super::signature::Signature;
use super::{EntryOutcome, EntryResult};

/// Counts by decision: of entries, each counted once however many policies and phases
/// ran on it (for a policy, the entries it ran on, by the policy's own strongest decision
/// over both phases).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Entries counted.
    pub total: usize,
    /// Policy calls made for these entries, over both phases (a policy that decides the
    /// request and the response of an entry is called twice).
    pub calls: usize,
    /// Allowed unchanged.
    pub allow: usize,
    /// Denied (including 401 for failed authentication).
    pub deny: usize,
    /// Allowed with redactions.
    pub redact: usize,
    /// Held for approval.
    pub require_approval: usize,
    /// Entries that could not be read, policies that failed, redactions that could not be
    /// applied.
    pub errors: usize,
}

impl Counts {
    fn add(&mut self, kind: DecisionKind) {
        self.total += 1;
        match kind {
            DecisionKind::Allow => self.allow += 1,
            DecisionKind::Deny => self.deny += 1,
            DecisionKind::Redact => self.redact += 1,
            DecisionKind::RequireApproval => self.require_approval += 1,
        }
    }
}

/// The whole run's counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Every entry.
    pub entries: Counts,
    /// By route (`(no route)` for unrouted entries; `(unauthenticated)` when no policy ran).
    pub routes: BTreeMap<String, Counts>,
    /// By policy: the entries it ran on (its calls in `calls`).
    pub policies: BTreeMap<String, Counts>,
    /// Entries whose decision differs from the baseline's.
    pub changed: usize,
    /// Entries that could not be read (also counted in `entries.errors`).
    pub unreadable: usize,
    /// With scripted approvals (`--approve-as`, `--approvals`): what became of the held
    /// entries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approvals: Option<ApprovalSummary>,
    /// Recorded MCP calls by protocol generation, and their Multi Round-Trip retries.
    #[serde(skip_serializing_if = "McpCounts::is_empty")]
    pub mcp: McpCounts,
}

/// Held entries by what became of them once the script answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApprovalCounts {
    /// Entries held for approval in the request phase.
    pub held: usize,
    /// Approved by every group asked, and forwarded.
    pub forwarded: usize,
    /// Rejected by an approver.
    pub rejected: usize,
    /// The scripted approver may not decide (not a member, four eyes).
    pub not_allowed: usize,
    /// Nobody answered: still waiting.
    pub no_decider: usize,
    /// Approved and still refused.
    pub refused: usize,
}

impl ApprovalCounts {
    fn add(&mut self, outcome: Outcome) {
        self.held += 1;
        match outcome {
            Outcome::Forwarded => self.forwarded += 1,
            Outcome::Rejected => self.rejected += 1,
            Outcome::NotAllowed => self.not_allowed += 1,
            Outcome::NoDecider => self.no_decider += 1,
            Outcome::Refused => self.refused += 1,
        }
    }
}

/// One approver group's approvals in a replay with scripted approvals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GroupCounts {
    /// Entries that waited for it.
    pub waited: usize,
    /// Approved.
    pub approved: usize,
    /// Rejected.
    pub rejected: usize,
    /// The scripted approver may not decide.
    pub not_allowed: usize,
    /// Nobody answered.
    pub no_decider: usize,
    /// Decisions (and refused attempts) per scripted approver, `KIND:ID`.
    pub by: BTreeMap<String, usize>,
}

/// What became of the held entries.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApprovalSummary {
    /// Every held entry.
    pub entries: ApprovalCounts,
    /// By route.
    pub routes: BTreeMap<String, ApprovalCounts>,
    /// By approver group.
    pub groups: BTreeMap<String, GroupCounts>,
}

impl ApprovalSummary {
    fn add(&mut self, route: &str, round: &ApprovalRound) {
        self.entries.add(round.outcome);
        self.routes.entry(route.to_owned()).or_default().add(round.outcome);
        for answer in &round.groups {
            let counts = self.groups.entry(answer.group.clone()).or_default();
            counts.waited += 1;
            match answer.decision {
                GroupDecision::Approved => counts.approved += 1,
                GroupDecision::Rejected => counts.rejected += 1,
                GroupDecision::NotAllowed { .. } => counts.not_allowed += 1,
                GroupDecision::NoDecider => counts.no_decider += 1,
            }
            if let Some(by) = &answer.by {
                *counts.by.entry(by.clone()).or_default() += 1;
            }
        }
    }
}

/// Which of a policy's two decisions on one entry its row counts: a denial over a hold,
/// a hold over a redaction, a redaction over an allow.
fn strength(kind: DecisionKind) -> u8 {
    match kind {
        DecisionKind::Allow => 0,
        DecisionKind::Redact => 1,
        DecisionKind::RequireApproval => 2,
        DecisionKind::Deny => 3,
    }
}

impl Summary {
    /// Adds one entry.
    pub fn add(&mut self, entry: &EntryResult) {
        let EntryOutcome::Evaluated { passage, baseline } = &entry.outcome else {
            self.entries.total += 1;
            self.entries.errors += 1;
            self.unreadable += 1;
            return;
        };
        if let Some(mcp) = &entry.mcp {
            self.mcp.add(mcp);
        }
        let signature = Signature::of(passage);
        let overall = signature.overall();
        self.entries.add(overall);
        let route = match &passage.request {
            Some(check) => check.verdict.route.clone().unwrap_or_else(|| "(no route)".into()),
            None => "(unauthenticated)".into(),
        };
        if let (Some(approvals), Some(round)) = (&mut self.approvals, &entry.approval) {
            approvals.add(&route, round);
        }
        let route_counts = self.routes.entry(route).or_default();
        route_counts.add(overall);
        let mut errored = false;
        let phases = passage
            .request
            .iter()
            .map(|c| (&c.verdict, &c.redaction_error))
            .chain(passage.response.iter().map(|c| (&c.verdict, &c.redaction_error)));
        // Per policy, over both phases: its strongest decision, its calls, whether it failed.
        let mut by_policy: BTreeMap<&str, (DecisionKind, usize, bool)> = BTreeMap::new();
        for (verdict, redaction_error) in phases {
            errored |= redaction_error.is_some();
            for result in &verdict.policies {
                let seen = by_policy.entry(&result.policy).or_insert((result.decision, 0, false));
                if strength(result.decision) > strength(seen.0) {
                    seen.0 = result.decision;
                }
                seen.1 += 1;
                seen.2 |= result.fault.is_some();
                errored |= result.fault.is_some();
            }
        }
        let calls: usize = by_policy.values().map(|(_, calls, _)| calls).sum();
        self.entries.calls += calls;
        route_counts.calls += calls;
        for (policy, (decision, calls, faulted)) in by_policy {
            let counts = self.policies.entry(policy.to_owned()).or_default();
            counts.add(decision);
            counts.calls += calls;
            counts.errors += usize::from(faulted);
        }
        if errored {
            self.entries.errors += 1;
            route_counts.errors += 1;
        }
        if let Some(baseline) = baseline
            && !Signature::of(baseline).same_as(&signature)
        {
            self.changed += 1;
        }
    }
}
