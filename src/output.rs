//! Evaluating an exchange through both phases, and printing the result for people.

use std::fmt::Write as _;

use portcullis_host::{Decision, Exchange, PolicySet, Request, Response, Verdict};
use serde::Serialize;

/// Both phases of one exchange and what the redactions made of it.
#[derive(Debug, Serialize)]
pub struct Report {
    /// `METHOD path` of the request, for headings.
    pub request_line: String,
    /// The request-phase verdict.
    pub request: Verdict,
    /// The request as forwarded, when redactions changed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarded_request: Option<Request>,
    /// The response-phase verdict, when there was a response and the request passed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<Verdict>,
    /// The response as returned, when redactions changed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub returned_response: Option<Response>,
    /// A redaction that could not be applied (the message would be refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redaction_error: Option<String>,
}

/// Runs the request phase, applies its redactions, then (if the request passed and there
/// is a response) the response phase and its redactions.
pub fn evaluate(set: &PolicySet, exchange: Exchange) -> Report {
    let Exchange { mut request, response } = exchange;
    let request_line = format!("{} {}", request.method, request.path);
    let verdict = set.evaluate_request(&request);
    let mut report = Report {
        request_line,
        request: verdict,
        forwarded_request: None,
        response: None,
        returned_response: None,
        redaction_error: None,
    };
    if !report.request.is_allowed() {
        return report;
    }
    if !report.request.redactions().is_empty() {
        match report.request.apply_to_request(&mut request) {
            Ok(_) => report.forwarded_request = Some(request.clone()),
            Err(e) => {
                report.redaction_error = Some(e.to_string());
                return report;
            }
        }
    }
    if let Some(mut response) = response {
        let verdict = set.evaluate_response(&request, &response);
        if verdict.is_allowed() && !verdict.redactions().is_empty() {
            match verdict.apply_to_response(&mut response) {
                Ok(_) => report.returned_response = Some(response),
                Err(e) => report.redaction_error = Some(e.to_string()),
            }
        }
        report.response = Some(verdict);
    }
    report
}

/// `deny 403 missing-scope: …` and friends.
pub fn decision_line(decision: &Decision) -> String {
    match decision {
        Decision::Allow => "allow".into(),
        Decision::Deny(d) => format!("deny {} {}: {}", d.status, d.code, d.reason),
        Decision::Redact { .. } => format!("redact ({})", decision.reason().trim_start_matches("redacts ")),
        Decision::RequireApproval(a) => {
            format!("require-approval by {} (ttl {}s): {}", a.approver_group, a.ttl_seconds, a.reason)
        }
    }
}

fn verdict_lines(out: &mut String, phase: &str, verdict: &Verdict) {
    let by = verdict.decided_by.as_deref().map(|p| format!(" [by {p}]")).unwrap_or_default();
    let _ = writeln!(out, "  {phase:<8} → {}{by}", decision_line(&verdict.decision));
    for p in &verdict.policies {
        let reason = if p.reason.is_empty() { String::new() } else { format!(": {}", p.reason) };
        let _ = writeln!(out, "      {:<14} {:<16} {:>6} µs{reason}", p.policy, p.decision.as_str(), p.elapsed_us);
    }
}

/// A human-readable report.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    let route = report.request.route.as_deref().unwrap_or("(no route)");
    let _ = writeln!(out, "{}  [route {route}]", report.request_line);
    verdict_lines(&mut out, "request", &report.request);
    if let Some(response) = &report.response {
        verdict_lines(&mut out, "response", response);
    }
    if let Some(e) = &report.redaction_error {
        let _ = writeln!(out, "  redaction failed, message refused: {e}");
    }
    out
}
