//! [`MemoryStore`]: approvals in a map behind a mutex, for embedders and tests.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::{
    Approval, ApprovalError, ApprovalState, ApprovalStore, Decider, NewApproval, RedeemError, Redemption, SWEEP_BATCH,
    Verb, check_redemption, purge_due,
};

/// Approvals kept in this process only: lost on restart, invisible to other processes (so
/// not to `portcullis approvals` either). For embedders with their own approval flow, and
/// for tests. Every operation holds one lock, which makes each check-then-update atomic.
///
/// Records are indexed by id and by request digest, so `create` looks only at the records
/// for its own request; expired records are purged from `create` at most once a minute.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Approvals by id, each with its insertion number (to order equal creation times).
    approvals: HashMap<String, (u64, Approval)>,
    /// Ids by request digest.
    by_digest: HashMap<String, Vec<String>>,
    next: u64,
    /// When the last purge ran (ms since the Unix epoch; 0: never).
    last_purge_ms: u64,
}

impl Inner {
    /// Removes every purgeable record; returns how many.
    fn purge(&mut self, now_ms: u64) -> usize {
        self.last_purge_ms = now_ms;
        let before = self.approvals.len();
        self.approvals.retain(|_, (_, a)| !a.is_purgeable(now_ms));
        let approvals = &self.approvals;
        self.by_digest.retain(|_, ids| {
            ids.retain(|id| approvals.contains_key(id));
            !ids.is_empty()
        });
        before - self.approvals.len()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// How many approvals the store holds, whatever their state.
    pub fn len(&self) -> usize {
        self.lock().approvals.len()
    }

    /// Whether the store holds no approval.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The lock. A panic in another thread cannot leave a record half-updated (each update
    /// is a few assignments after its check), so a poisoned lock is taken over rather than
    /// failing every later request.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn decide(
        &self,
        id: &str,
        verb: Verb,
        by: &Decider,
        note: Option<&str>,
        now_ms: u64,
    ) -> Result<Approval, ApprovalError> {
        let mut inner = self.lock();
        let (_, approval) = inner.approvals.get_mut(id).ok_or_else(|| ApprovalError::Unknown { id: id.to_owned() })?;
        approval.check_decidable(by, verb, now_ms)?;
        approval.decide(verb, by, note, now_ms);
        Ok(approval.clone().as_of(now_ms))
    }
}

impl ApprovalStore for MemoryStore {
    fn create(&self, new: NewApproval) -> Result<Approval, ApprovalError> {
        let now_ms = new.now_ms;
        let mut inner = self.lock();
        if purge_due(inner.last_purge_ms, now_ms) {
            inner.purge(now_ms);
        }
        let existing = inner
            .by_digest
            .get(&new.digest)
            .into_iter()
            .flatten()
            .filter_map(|id| inner.approvals.get(id))
            .filter(|(_, a)| a.state_at(now_ms) == ApprovalState::Pending && a.same_ask(&new))
            .max_by_key(|(seq, a)| (a.created_ms, *seq));
        if let Some((_, approval)) = existing {
            return Ok(approval.clone().as_of(now_ms));
        }
        let approval = new.into_pending()?;
        let seq = inner.next;
        inner.next += 1;
        inner.by_digest.entry(approval.digest.clone()).or_default().push(approval.id.clone());
        inner.approvals.insert(approval.id.clone(), (seq, approval.clone()));
        Ok(approval.as_of(now_ms))
    }

    fn get(&self, id: &str, now_ms: u64) -> Result<Option<Approval>, ApprovalError> {
        Ok(self.lock().approvals.get(id).map(|(_, a)| a.clone().as_of(now_ms)))
    }

    fn list(&self, state: Option<ApprovalState>, now_ms: u64) -> Result<Vec<Approval>, ApprovalError> {
        let inner = self.lock();
        let mut found: Vec<&(u64, Approval)> =
            inner.approvals.values().filter(|(_, a)| state.is_none_or(|s| a.state_at(now_ms) == s)).collect();
        found.sort_by_key(|(seq, a)| std::cmp::Reverse((a.created_ms, *seq)));
        Ok(found.into_iter().map(|(_, a)| a.clone().as_of(now_ms)).collect())
    }

    fn approve_as(&self, id: &str, by: &Decider, note: Option<&str>, now_ms: u64) -> Result<Approval, ApprovalError> {
        self.decide(id, Verb::Approve, by, note, now_ms)
    }

    fn reject_as(&self, id: &str, by: &Decider, note: Option<&str>, now_ms: u64) -> Result<Approval, ApprovalError> {
        self.decide(id, Verb::Reject, by, note, now_ms)
    }

    fn sweep_expired(&self, now_ms: u64) -> Result<Vec<Approval>, ApprovalError> {
        let mut inner = self.lock();
        let mut swept: Vec<&mut (u64, Approval)> =
            inner.approvals.values_mut().filter(|(_, a)| a.expired_unrecorded(now_ms)).collect();
        swept.sort_by_key(|(seq, a)| (a.expires_ms, *seq));
        Ok(swept
            .into_iter()
            .take(SWEEP_BATCH)
            .map(|(_, approval)| {
                approval.expiry_recorded_ms = Some(now_ms);
                approval.clone()
            })
            .collect())
    }

    fn redeem_all(&self, redemption: &Redemption<'_>, now_ms: u64) -> Result<Vec<Approval>, RedeemError> {
        let mut inner = self.lock();
        let found: Vec<Option<Approval>> =
            redemption.ids.iter().map(|id| inner.approvals.get(id).map(|(_, a)| a.clone())).collect();
        check_redemption(redemption, &found, now_ms)?;
        let mut used = Vec::with_capacity(found.len());
        for id in redemption.ids {
            if let Some((_, approval)) = inner.approvals.get_mut(id) {
                approval.mark_used(now_ms);
                used.push(approval.clone());
            }
        }
        Ok(used)
    }

    fn purge(&self, now_ms: u64) -> Result<usize, ApprovalError> {
        Ok(self.lock().purge(now_ms))
    }
}
