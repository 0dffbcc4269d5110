//! Printing a replay: the human table, JSON, JSON Lines and JUnit XML, and redaction
//! diffs.

use std::fmt::Write as _;

use portcullis_host::Exchange;
use portcullis_host::decision::DecisionKind;
use serde_json::{Value, json};

use super::diff::{Change, count_by_kind};
use super::signature::Signature;
use super::summary::{ApprovalCounts, Counts, Summary};
use super::{EntryOutcome, EntryResult, FileError};

/// `file.har#3` (HAR entry index, 0-based), a JSONL line's `id`, or `calls.jsonl:7` (JSONL
/// line, 1-based): see [`super::entry_name`].
pub fn entry_id(entry: &EntryResult) -> String {
    entry.name.clone()
}

/// The JSON fields that place an entry: `name`, and `line` (1-based) for JSONL.
fn place(entry: &EntryResult, value: &mut Value) {
    value["name"] = json!(entry.name);
    if let portcullis_host::adapters::traffic::Locator::Line(line) = entry.at {
        value["line"] = json!(line);
    }
}

/// One entry as JSON (for `--format json` and `jsonl`).
pub fn entry_json(entry: &EntryResult) -> Value {
    match &entry.outcome {
        EntryOutcome::ReadError(message) => {
            let mut value = json!({"source": &*entry.source, "index": entry.index, "error": message});
            place(entry, &mut value);
            value
        }
        EntryOutcome::Evaluated { passage, baseline } => {
            let signature = Signature::of(passage);
            let mut value = json!({
                "source": &*entry.source,
                "index": entry.index,
                "request_line": passage.request_line,
                "decision": signature.overall(),
                "signature": signature,
                "passage": passage,
            });
            place(entry, &mut value);
            if let Some(mcp) = &entry.mcp {
                value["mcp"] = json!(mcp);
            }
            if let Some(baseline) = baseline {
                let before = Signature::of(baseline);
                value["baseline"] = json!(before);
                value["changed"] = json!(!before.same_as(&Signature::of(passage)));
            }
            if let Some(round) = &entry.approval {
                let mut approval = json!(round);
                if let Some(after) = &round.passage {
                    let after = Signature::of(after);
                    approval["decision"] = json!(after.overall());
                    approval["signature"] = json!(after);
                }
                value["approval"] = approval;
            }
            value
        }
    }
}

fn counts_row(out: &mut String, label: &str, c: &Counts, approvals: Option<&ApprovalCounts>) {
    let _ = write!(
        out,
        "  {label:<32} {:>8} {:>7} {:>7} {:>6} {:>7} {:>9} {:>7}",
        c.total, c.calls, c.allow, c.deny, c.redact, c.require_approval, c.errors
    );
    if let Some(a) = approvals {
        let _ = write!(out, " {:>10} {:>9} {:>8}", a.forwarded, a.rejected, a.no_decider + a.not_allowed + a.refused);
    }
    out.push('\n');
}

/// Lines `(id, request line, what)` grouped by request line and what, each group once with
/// up to three of its ids.
fn grouped(out: &mut String, lines: &[(String, String, String)]) {
    let mut groups: Vec<(&str, &str, Vec<&str>)> = Vec::new();
    for (id, line, what) in lines {
        match groups.iter_mut().find(|(l, w, _)| l == line && w == what) {
            Some((_, _, ids)) => ids.push(id),
            None => groups.push((line, what, vec![id])),
        }
    }
    for (line, what, ids) in groups {
        let shown = ids.iter().take(3).copied().collect::<Vec<_>>().join(", ");
        let ids = match ids.len() {
            1 => shown,
            n if n <= 3 => format!("{n}× {shown}"),
            n => format!("{n}× {shown}, …"),
        };
        let _ = writeln!(out, "  {line:<36} {what}\n      {ids}");
    }
}

/// The human-readable report.
pub struct Table<'a> {
    /// Counts.
    pub summary: &'a Summary,
    /// Denied, held and failed entries: `(id, request line, what)`.
    pub notable: &'a [(String, String, String)],
    /// Changes from the baseline.
    pub changes: &'a [Change],
    /// Files that could not be read to the end.
    pub file_errors: &'a [FileError],
    /// Files replayed.
    pub files: usize,
    /// Seconds taken.
    pub seconds: f64,
    /// Worker threads.
    pub jobs: usize,
    /// Whether a baseline was given.
    pub has_baseline: bool,
    /// With scripted approvals: each held entry, `(id, request line, what became of it)`.
    pub approvals: &'a [(String, String, String)],
}

impl Table<'_> {
    /// Renders the report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let s = self.summary;
        let rate = if self.seconds > 0.0 { s.entries.total as f64 / self.seconds } else { 0.0 };
        let _ = writeln!(
            out,
            "Replayed {} entries from {} file(s) in {:.2} s ({:.0} entries/s, {} job(s))\n",
            s.entries.total, self.files, self.seconds, rate, self.jobs
        );
        let _ = write!(
            out,
            "  {:<32} {:>8} {:>7} {:>7} {:>6} {:>7} {:>9} {:>7}",
            "", "entries", "calls", "allow", "deny", "redact", "approval", "errors"
        );
        let approvals = s.approvals.as_ref();
        if approvals.is_some() {
            let _ = write!(out, " {:>10} {:>9} {:>8}", "forwarded", "rejected", "waiting");
        }
        out.push('\n');
        counts_row(&mut out, "all entries", &s.entries, approvals.map(|a| &a.entries));
        let no_approvals = ApprovalCounts::default();
        for (route, counts) in &s.routes {
            let held = approvals.map(|a| a.routes.get(route).unwrap_or(&no_approvals));
            counts_row(&mut out, &format!("route {route}"), counts, held);
        }
        for (policy, counts) in &s.policies {
            counts_row(&mut out, &format!("policy {policy}"), counts, None);
        }
        if !s.mcp.is_empty() {
            let _ = writeln!(out, "\n{}", s.mcp.line());
        }
        if !self.notable.is_empty() {
            let _ = writeln!(out, "\nDenied, held for approval, or failed ({}):", self.notable.len());
            // Entries with the same request line and outcome are listed once, with their ids.
            grouped(&mut out, self.notable);
        }
        if let Some(a) = approvals {
            let _ = writeln!(out, "\nHeld for approval, answered as scripted ({}):", a.entries.held);
            for (group, g) in &a.groups {
                let by: Vec<String> = g.by.iter().map(|(who, n)| format!("{who} {n}")).collect();
                let by = if by.is_empty() { String::new() } else { format!(" (answered by: {})", by.join(", ")) };
                let _ = writeln!(
                    out,
                    "  {group}: {} waited, {} approved, {} rejected, {} not allowed to decide, {} with no decider{by}",
                    g.waited, g.approved, g.rejected, g.not_allowed, g.no_decider
                );
            }
            grouped(&mut out, self.approvals);
        }
        if self.has_baseline {
            if self.changes.is_empty() {
                let _ = writeln!(out, "\nNo decision changed from the baseline.");
            } else {
                let _ = writeln!(out, "\nChanged from the baseline ({}):", self.changes.len());
                for (kind, n) in count_by_kind(self.changes) {
                    let _ = writeln!(out, "  {n:>6}  {kind}");
                }
                for c in self.changes {
                    let _ = writeln!(out, "  {} {}", c.name, c.request_line);
                    let _ = writeln!(out, "      before: {}{}", c.before.short(), reason_suffix(&c.before));
                    let _ = writeln!(out, "      after:  {}{}", c.after.short(), reason_suffix(&c.after));
                }
            }
        }
        if !self.file_errors.is_empty() {
            // The errors themselves go to stderr, once.
            let _ = writeln!(
                out,
                "\n{} file(s) could not be read to the end (see the errors on stderr).",
                self.file_errors.len()
            );
        }
        out
    }
}

fn reason_suffix(sig: &Signature) -> String {
    let phase = match &sig.response {
        Some(response) if sig.request.decision == DecisionKind::Allow => response,
        _ => &sig.request,
    };
    // A redaction's reason only repeats the targets `short()` already lists.
    if phase.reason.is_empty() || phase.decision == DecisionKind::Redact {
        String::new()
    } else {
        format!(" ({})", phase.reason)
    }
}

/// The line for a denied, held or failed entry, if it is one.
pub fn notable(entry: &EntryResult) -> Option<(String, String, String)> {
    let id = entry_id(entry);
    match &entry.outcome {
        EntryOutcome::ReadError(message) => Some((id, String::new(), format!("error: {message}"))),
        EntryOutcome::Evaluated { passage, .. } => {
            let sig = Signature::of(passage);
            let phase = [Some(&sig.request), sig.response.as_ref()]
                .into_iter()
                .flatten()
                .find(|p| matches!(p.decision, DecisionKind::Deny | DecisionKind::RequireApproval))?;
            let by = phase.decided_by.as_deref().map(|p| format!(" [{p}]")).unwrap_or_default();
            Some((id, passage.request_line.clone(), format!("{}: {}{by}", phase.short(), phase.reason)))
        }
    }
}

/// `--show-redactions`: a unified diff of each redacted body, before and after.
pub fn redaction_diff(entry: &EntryResult, original: &Exchange) -> Option<String> {
    let EntryOutcome::Evaluated { passage, .. } = &entry.outcome else { return None };
    let mut out = String::new();
    let pairs = [
        ("request", original.request.body.as_ref(), passage.forwarded_request.as_ref().and_then(|r| r.body.as_ref())),
        (
            "response",
            original.response.as_ref().and_then(|r| r.body.as_ref()),
            passage.returned_response.as_ref().and_then(|r| r.body.as_ref()),
        ),
    ];
    for (phase, before, after) in pairs {
        let (Some(before), Some(after)) = (before, after) else { continue };
        let (a, b) = (pretty(&before.bytes), pretty(&after.bytes));
        if a == b {
            continue;
        }
        let diff = similar::TextDiff::from_lines(&a, &b);
        let _ = writeln!(out, "--- {} {} {phase} body (recorded)", entry_id(entry), passage.request_line);
        let _ = writeln!(out, "+++ {} {} {phase} body (after redaction)", entry_id(entry), passage.request_line);
        let _ = write!(out, "{}", diff.unified_diff().context_radius(2));
    }
    (!out.is_empty()).then_some(out)
}

/// Pretty JSON when the bytes are JSON, the text otherwise, so diffs show one field a line.
fn pretty(bytes: &[u8]) -> String {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default() + "\n",
        Err(_) => String::from_utf8_lossy(bytes).into_owned() + "\n",
    }
}

/// JUnit XML: a test suite per file, a test case per entry; read errors and failed
/// policies are errors, changes from the baseline are failures.
pub fn junit(entries: &[EntryResult], files: &[String]) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let total = entries.len();
    let errors = entries.iter().filter(|e| entry_error(e).is_some()).count();
    let failures = entries.iter().filter(|e| super::diff::change_of(e).is_some()).count();
    let _ = writeln!(
        out,
        "<testsuites name=\"portcullis replay\" tests=\"{total}\" failures=\"{failures}\" errors=\"{errors}\">"
    );
    for file in files {
        let cases: Vec<&EntryResult> = entries.iter().filter(|e| &*e.source == file.as_str()).collect();
        let errors = cases.iter().filter(|e| entry_error(e).is_some()).count();
        let failures = cases.iter().filter(|e| super::diff::change_of(e).is_some()).count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\">",
            xml(file),
            cases.len()
        );
        for entry in cases {
            let (line, decision, micros) = match &entry.outcome {
                EntryOutcome::Evaluated { passage, .. } => {
                    let micros = passage.request.as_ref().map_or(0, |c| c.verdict.elapsed_us)
                        + passage.response.as_ref().map_or(0, |c| c.verdict.elapsed_us);
                    let mut decision = Signature::of(passage).short();
                    if let Some(round) = &entry.approval {
                        decision = format!("{decision}\napproval: {}", round.line());
                    }
                    (passage.request_line.clone(), decision, micros)
                }
                EntryOutcome::ReadError(_) => (String::new(), String::new(), 0),
            };
            let _ = write!(
                out,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.6}\">",
                xml(file),
                xml(&format!("{} {line}", entry.name)),
                micros as f64 / 1e6
            );
            if let Some(message) = entry_error(entry) {
                let _ = write!(out, "<error message=\"{}\"/>", xml(&message));
            }
            if let Some(change) = super::diff::change_of(entry) {
                let _ = write!(
                    out,
                    "<failure message=\"{}\">before: {}\nafter: {}</failure>",
                    xml(&format!("decision changed: {}", change.kind())),
                    xml(&change.before.short()),
                    xml(&change.after.short())
                );
            }
            let _ = writeln!(out, "<system-out>{}</system-out></testcase>", xml(&decision));
        }
        let _ = writeln!(out, "  </testsuite>");
    }
    out.push_str("</testsuites>\n");
    out
}

/// Why an entry counts as an error: unreadable, a policy failed, or a redaction could not
/// be applied.
pub fn entry_error(entry: &EntryResult) -> Option<String> {
    let passage = match &entry.outcome {
        EntryOutcome::ReadError(message) => return Some(message.clone()),
        EntryOutcome::Evaluated { passage, .. } => passage,
    };
    let phases = passage
        .request
        .iter()
        .map(|c| (&c.verdict, &c.redaction_error))
        .chain(passage.response.iter().map(|c| (&c.verdict, &c.redaction_error)));
    for (verdict, redaction_error) in phases {
        if let Some(e) = redaction_error {
            return Some(format!("redaction failed: {e}"));
        }
        if let Some(p) = verdict.policies.iter().find(|p| p.fault.is_some()) {
            return Some(p.reason.clone());
        }
    }
    None
}

fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}
