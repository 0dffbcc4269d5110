//! Counting a replay: entries by overall decision, per route and per policy, and errors.

use std::collections::BTreeMap;

use portcullis_host::decision::DecisionKind;
use serde::Serialize;

use super::signature::Signature;
use super::{EntryOutcome, EntryResult};

/// Counts by decision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Entries (or policy calls) counted.
    pub total: usize,
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
    /// By policy: each evaluated call in either phase.
    pub policies: BTreeMap<String, Counts>,
    /// Entries whose decision differs from the baseline's.
    pub changed: usize,
}

impl Summary {
    /// Adds one entry.
    pub fn add(&mut self, entry: &EntryResult) {
        let EntryOutcome::Evaluated { passage, baseline } = &entry.outcome else {
            self.entries.total += 1;
            self.entries.errors += 1;
            return;
        };
        let signature = Signature::of(passage);
        let overall = signature.overall();
        self.entries.add(overall);
        let route = match &passage.request {
            Some(check) => check.verdict.route.clone().unwrap_or_else(|| "(no route)".into()),
            None => "(unauthenticated)".into(),
        };
        let route_counts = self.routes.entry(route).or_default();
        route_counts.add(overall);
        let mut errored = false;
        let phases = passage
            .request
            .iter()
            .map(|c| (&c.verdict, &c.redaction_error))
            .chain(passage.response.iter().map(|c| (&c.verdict, &c.redaction_error)));
        for (verdict, redaction_error) in phases {
            errored |= redaction_error.is_some();
            for result in &verdict.policies {
                let counts = self.policies.entry(result.policy.clone()).or_default();
                counts.add(result.decision);
                if result.fault.is_some() {
                    counts.errors += 1;
                    errored = true;
                }
            }
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
