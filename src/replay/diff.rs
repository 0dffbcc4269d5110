//! What changed between the baseline and the policies under test, entry by entry.

use std::collections::BTreeMap;

use serde::Serialize;

use super::signature::Signature;
use super::{EntryOutcome, EntryResult};

/// One entry whose decision changed.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// The file.
    pub source: String,
    /// The entry's index in it.
    pub index: usize,
    /// The entry's name in reports (`capture.har#3`, `calls.jsonl:7`, a JSONL `id`).
    pub name: String,
    /// `METHOD path`.
    pub request_line: String,
    /// With the baseline.
    pub before: Signature,
    /// With the policies under test.
    pub after: Signature,
}

impl Change {
    /// The kind of change: `allow → deny`, or `deny → deny (changed)` when the kind stayed
    /// but the code, fields or group changed.
    pub fn kind(&self) -> String {
        let (before, after) = (self.before.overall(), self.after.overall());
        if before == after { format!("{before} → {after} (changed)") } else { format!("{before} → {after}") }
    }
}

/// The change for one entry, if its decision differs from the baseline's.
pub fn change_of(entry: &EntryResult) -> Option<Change> {
    let EntryOutcome::Evaluated { passage, baseline: Some(baseline) } = &entry.outcome else {
        return None;
    };
    let (before, after) = (Signature::of(baseline), Signature::of(passage));
    (!before.same_as(&after)).then(|| Change {
        source: entry.source.to_string(),
        index: entry.index,
        name: entry.name.clone(),
        request_line: passage.request_line.clone(),
        before,
        after,
    })
}

/// Changes counted by kind.
pub fn count_by_kind(changes: &[Change]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for change in changes {
        *counts.entry(change.kind()).or_insert(0) += 1;
    }
    counts
}
