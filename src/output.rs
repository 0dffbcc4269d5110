//! Printing one passage (both phases of an exchange) for people.

use std::fmt::Write as _;

use portcullis_host::gate::Passage;
use portcullis_host::{Decision, Verdict};

/// `deny 403 missing-scope: …` and friends.
pub fn decision_line(decision: &Decision) -> String {
    match decision {
        Decision::Allow => "allow".into(),
        Decision::Deny(d) => format!("deny {} {}: {}", d.status, d.code, d.reason),
        Decision::Redact { redactions } => {
            let targets: Vec<String> = redactions.iter().map(|r| r.target.to_string()).collect();
            format!("redact ({})", targets.join(", "))
        }
        Decision::RequireApproval(a) => {
            format!("require-approval by {} (ttl {}s): {}", a.approver_group, a.ttl_seconds, a.reason)
        }
    }
}

fn verdict_lines(out: &mut String, phase: &str, verdict: &Verdict, redaction_error: Option<&String>) {
    let by = verdict.decided_by.as_deref().map(|p| format!(" [by {p}]")).unwrap_or_default();
    let _ = writeln!(out, "  {phase:<8} → {}{by}", decision_line(&verdict.decision));
    for p in &verdict.policies {
        let reason = if p.reason.is_empty() { String::new() } else { format!(": {}", p.reason) };
        let _ = writeln!(out, "      {:<14} {:<16} {:>6} µs{reason}", p.policy, p.decision.as_str(), p.elapsed_us);
    }
    if let Some(e) = redaction_error {
        let _ = writeln!(out, "      redaction failed, so the message is refused: {e}");
    }
}

/// A human-readable account of one passage.
pub fn text(passage: &Passage) -> String {
    let mut out = String::new();
    let route = passage.request.as_ref().and_then(|c| c.verdict.route.as_deref()).unwrap_or("(no route)");
    let who = match passage.principal.id.as_str() {
        "" => passage.principal.kind.as_str().to_owned(),
        id => format!("{} {id}", passage.principal.kind.as_str()),
    };
    let _ = writeln!(out, "{}  [route {route}; as {who}]", passage.request_line);
    if let Some(failure) = &passage.auth_failure {
        let _ = writeln!(out, "  request  → deny 401 unauthenticated: {}", failure.reason);
    }
    if let Some(check) = &passage.request {
        verdict_lines(&mut out, "request", &check.verdict, check.redaction_error.as_ref());
        if let Some(applied) = check.applied.as_ref().filter(|a| !a.is_empty()) {
            let _ = writeln!(out, "      redacted: {}", applied.fields().join(", "));
        }
    }
    if let Some(check) = &passage.response {
        verdict_lines(&mut out, "response", &check.verdict, check.redaction_error.as_ref());
        if let Some(applied) = check.applied.as_ref().filter(|a| !a.is_empty()) {
            let _ = writeln!(out, "      redacted: {}", applied.fields().join(", "));
        }
    }
    out
}
