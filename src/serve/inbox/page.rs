//! The inbox's HTML: one layout, the pages, and [`escape`], which every interpolated value
//! goes through (no value reaches a page unescaped, whatever it holds: a request path with
//! `<script>`, a note with quotes).

use std::fmt::Write as _;

use portcullis_host::Principal;
use portcullis_host::approval::{Approval, ApprovalState};

/// `text` made safe for HTML text and for a double- or single-quoted attribute value.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Who is signed in, for the header of every page: their id, and the CSRF token of the
/// sign-out form when they signed in with the form (not with headers from a proxy).
pub struct Header<'a> {
    pub principal: &'a Principal,
    pub sign_out_csrf: Option<&'a str>,
}

/// A whole page: the layout around `main` (already HTML).
pub fn layout(title: &str, header: Option<&Header<'_>>, main: &str) -> String {
    let mut nav = String::new();
    if let Some(header) = header {
        let _ = write!(
            nav,
            r#"<nav aria-label="Inbox"><a href="/inbox">Pending</a> <a href="/inbox/history">History</a></nav>
<p class="who">Signed in as <strong>{}</strong>"#,
            escape(&header.principal.id)
        );
        if let Some(csrf) = header.sign_out_csrf {
            let _ = write!(
                nav,
                r#" <form method="post" action="/inbox/sign-out" class="inline"><input type="hidden" name="csrf" value="{}"><button type="submit">Sign out</button></form>"#,
                escape(csrf)
            );
        }
        nav.push_str("</p>");
    }
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Portcullis approvals</title>
<link rel="stylesheet" href="/inbox/static/inbox.css">
</head>
<body>
<header><p class="brand">Portcullis approvals</p>{nav}</header>
<main id="main">
<h1>{title}</h1>
{main}
</main>
</body>
</html>
"#,
        title = escape(title),
    )
}

/// An error or notice paragraph.
pub fn notice(kind: &str, text: &str) -> String {
    format!(r#"<p class="notice {}" role="alert">{}</p>"#, escape(kind), escape(text))
}

/// The sign-in form.
pub fn sign_in(csrf: &str, error: Option<&str>) -> String {
    let error = error.map(|e| notice("error", e)).unwrap_or_default();
    let main = format!(
        r#"{error}<p>Sign in with your own credential: an API key, or a bearer token (JWT) from your identity provider. It is checked once; this browser then keeps a session cookie, not the credential.</p>
<form method="post" action="/inbox/sign-in" class="card">
<input type="hidden" name="csrf" value="{csrf}">
<label for="credential">API key or bearer token</label>
<input id="credential" name="credential" type="password" autocomplete="off" required autofocus>
<button type="submit">Sign in</button>
</form>"#,
        csrf = escape(csrf),
    );
    layout("Sign in", None, &main)
}

/// How long until `expires_ms`, for people: `9 min 58 s left`, `expired`.
pub fn time_left(expires_ms: u64, now_ms: u64) -> String {
    if now_ms >= expires_ms {
        return "expired".into();
    }
    let s = (expires_ms - now_ms) / 1000;
    match s {
        0..60 => format!("{s} s left"),
        60..3600 => format!("{} min {} s left", s / 60, s % 60),
        _ => format!("{} h {} min left", s / 3600, (s % 3600) / 60),
    }
}

/// A time as RFC 3339 (UTC).
fn at(ms: u64) -> String {
    portcullis_host::audit::rfc3339_ms(ms)
}

/// Who asked: `agent invoice-bot`.
fn asker(a: &Approval) -> String {
    if a.principal_id.is_empty() { "anonymous".into() } else { format!("{} {}", a.principal_kind, a.principal_id) }
}

/// The request in one line: `POST crm.partner.example /v1/invoices`.
fn what(a: &Approval) -> String {
    if a.method.is_empty() { a.request_line.clone() } else { format!("{} {} {}", a.method, a.host, a.path) }
}

/// The pending list.
pub fn pending(list: &[Approval], groups: &[&str], now_ms: u64) -> String {
    let mut main = String::new();
    if groups.is_empty() {
        main.push_str(&notice("info", "You are a member of no approver group: there is nothing for you to decide."));
    } else {
        let _ = write!(main, "<p>Your approver groups: {}.</p>", escape(&groups.join(", ")));
    }
    if list.is_empty() {
        main.push_str(r#"<p class="empty">No request is waiting for you.</p>"#);
    }
    main.push_str(r#"<ul class="approvals">"#);
    for a in list {
        let behalf = a.on_behalf_of.as_deref().map(|u| format!(" on behalf of <strong>{}</strong>", escape(u)));
        let _ = write!(
            main,
            r#"<li class="card approval"><p class="what"><a href="/inbox/approvals/{id}"><code>{what}</code></a></p>
<p><strong>{asker}</strong>{behalf}{operation}</p>
<p class="why">{policy}: {reason}</p>
<p class="meta">{group} · <span class="left">{left}</span></p></li>"#,
            id = escape(&a.id),
            what = escape(&what(a)),
            asker = escape(&asker(a)),
            behalf = behalf.unwrap_or_default(),
            operation =
                a.operation.as_deref().map(|o| format!(" · operation <code>{}</code>", escape(o))).unwrap_or_default(),
            policy = escape(&a.policy),
            reason = escape(&a.reason),
            group = escape(&a.group),
            left = escape(&time_left(a.expires_ms, now_ms)),
        );
    }
    main.push_str("</ul>");
    main
}

/// What the decision form shows: the form (with its CSRF token), or why this approver may
/// not decide.
pub enum DecideForm<'a> {
    Form { csrf: &'a str },
    Refused(String),
    None,
}

/// One approval: what is asked and why, the redacted body, the decision form, then the
/// details (ids and times), so that on a phone the buttons come before the details.
pub fn approval(a: &Approval, now_ms: u64, form: &DecideForm<'_>, message: Option<&str>) -> String {
    let state = a.state_at(now_ms);
    let mut facts: Vec<(&str, String)> = vec![
        ("State", state.as_str().to_owned()),
        ("Request", what(a)),
        ("Who asks", asker(a)),
        ("On behalf of", a.on_behalf_of.clone().unwrap_or_else(|| "—".into())),
        ("Operation", a.operation.clone().unwrap_or_else(|| "—".into())),
        ("Policy", a.policy.clone()),
        ("Why", a.reason.clone()),
        ("Approver group", a.group.clone()),
        // Once decided and used, rejected or expired, nothing is left to wait for.
        (
            "Time left",
            match state {
                ApprovalState::Pending | ApprovalState::Approved => time_left(a.expires_ms, now_ms),
                ApprovalState::Used | ApprovalState::Rejected | ApprovalState::Expired => "—".into(),
            },
        ),
    ];
    if let Some(by) = &a.decided_by {
        let mut who = by.clone();
        for part in [a.decided_by_kind.as_deref(), a.decided_by_credential.as_deref()].into_iter().flatten() {
            let _ = write!(who, " · {part}");
        }
        let _ = write!(who, " · via {}", a.decided_via.as_deref().unwrap_or("?"));
        facts.push(("Decided by", who));
        facts.push(("Decided at", a.decided_ms.map(at).unwrap_or_default()));
        facts.push(("Note", a.note.clone().unwrap_or_else(|| "—".into())));
    }
    let mut main = message.map(|m| notice("info", m)).unwrap_or_default();
    let outcome = match state {
        ApprovalState::Approved => Some(
            "Approved: a held request goes through now; otherwise the caller may send the same request again with this approval, once, before it expires.",
        ),
        ApprovalState::Used => Some("Approved and used: the held request went through."),
        ApprovalState::Rejected => Some("Rejected: the caller's request with this approval is refused."),
        ApprovalState::Expired => Some("Expired: nobody decided in time (or the approval was not used in time)."),
        ApprovalState::Pending => None,
    };
    if let Some(outcome) = outcome {
        let _ = write!(main, r#"<p class="notice outcome {}" role="status">{}</p>"#, state.as_str(), escape(outcome));
    }
    dl(&mut main, &facts);
    main.push_str(r#"<h2 id="body">Request body</h2>"#);
    match &a.body {
        Some(body) => {
            let _ = write!(
                main,
                r#"<p class="meta">{ct}, as the policies saw it with the request's redactions applied{cut}.</p><pre class="body" tabindex="0" aria-labelledby="body">{body}</pre>"#,
                ct = escape(a.content_type.as_deref().unwrap_or("no content type")),
                cut = if a.body_truncated { " (cut: only the start is kept)" } else { "" },
                body = escape(body),
            );
        }
        None => main.push_str(r#"<p class="meta">No body is kept: none was sent, or it was not text.</p>"#),
    }
    match form {
        DecideForm::Form { csrf } => {
            let _ = write!(
                main,
                r#"<h2>Decide</h2><form method="post" action="/inbox/approvals/{id}" class="card decide">
<input type="hidden" name="csrf" value="{csrf}">
<label for="note">Note (kept with the decision and in the audit log)</label>
<textarea id="note" name="note" rows="3" maxlength="2000"></textarea>
<div class="buttons"><button type="submit" name="decision" value="approve" class="approve">Approve</button>
<button type="submit" name="decision" value="reject" class="reject">Reject</button></div>
</form>"#,
                id = escape(&a.id),
                csrf = escape(csrf),
            );
        }
        DecideForm::Refused(why) => main.push_str(&notice("warn", why)),
        DecideForm::None => {}
    }
    main.push_str("<h2>Details</h2>");
    let details = [
        ("Asked at", at(a.created_ms)),
        ("Expires", at(a.expires_ms)),
        ("Request id", a.request_id.clone()),
        ("Approval id", a.id.clone()),
    ];
    dl(&mut main, &details);
    main.push_str(r#"<p><a href="/inbox">Back to the pending list</a></p>"#);
    main
}

/// A definition list of names and values.
fn dl(out: &mut String, rows: &[(&str, String)]) {
    out.push_str(r#"<dl class="card facts">"#);
    for (name, value) in rows {
        let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", escape(name), escape(value));
    }
    out.push_str("</dl>");
}

/// The history of decided approvals, with its filter form.
pub fn history(list: &[Approval], groups: &[&str], state: Option<ApprovalState>, group: Option<&str>) -> String {
    let mut main = String::from(
        r#"<form method="get" action="/inbox/history" class="card filters"><label for="state">State</label><select id="state" name="state"><option value="">any</option>"#,
    );
    for s in [ApprovalState::Approved, ApprovalState::Rejected, ApprovalState::Used, ApprovalState::Expired] {
        let selected = if state == Some(s) { " selected" } else { "" };
        let _ = write!(main, r#"<option value="{0}"{selected}>{0}</option>"#, s.as_str());
    }
    main.push_str(
        r#"</select><label for="group">Group</label><select id="group" name="group"><option value="">any</option>"#,
    );
    for g in groups {
        let selected = if group == Some(*g) { " selected" } else { "" };
        let _ = write!(main, r#"<option value="{0}"{selected}>{0}</option>"#, escape(g));
    }
    main.push_str(r#"</select><button type="submit">Filter</button></form>"#);
    if list.is_empty() {
        main.push_str(r#"<p class="empty">No decided approval matches.</p>"#);
        return main;
    }
    main.push_str(
        r#"<div class="scroll" tabindex="0"><table><caption>Decided approvals, newest first</caption><thead><tr><th scope="col">Request</th><th scope="col">Who asked</th><th scope="col">State</th><th scope="col">Decided by</th><th scope="col">Note</th><th scope="col">Group</th></tr></thead><tbody>"#,
    );
    for a in list {
        let _ = write!(
            main,
            r#"<tr><td><a href="/inbox/approvals/{id}"><code>{what}</code></a></td><td>{asker}</td><td>{state}</td><td>{by}</td><td>{note}</td><td>{group}</td></tr>"#,
            id = escape(&a.id),
            what = escape(&what(a)),
            asker = escape(&asker(a)),
            state = escape(a.state.as_str()),
            by = escape(a.decided_by.as_deref().unwrap_or("—")),
            note = escape(a.note.as_deref().unwrap_or("")),
            group = escape(&a.group),
        );
    }
    main.push_str("</tbody></table></div>");
    main
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_text_and_attributes() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }

    #[test]
    fn every_field_of_an_approval_is_escaped() {
        let evil = "<img src=x onerror=alert(1)>";
        let a = Approval {
            id: evil.into(),
            principal_kind: "agent".into(),
            principal_id: evil.into(),
            on_behalf_of: Some(evil.into()),
            policy: evil.into(),
            reason: evil.into(),
            group: evil.into(),
            method: "POST".into(),
            host: evil.into(),
            path: evil.into(),
            operation: Some(evil.into()),
            body: Some(evil.into()),
            content_type: Some(evil.into()),
            decided_by: Some(evil.into()),
            note: Some(evil.into()),
            request_id: evil.into(),
            expires_ms: 10_000,
            ..Approval::default()
        };
        let pages = [
            approval(&a, 0, &DecideForm::Form { csrf: evil }, Some(evil)),
            pending(std::slice::from_ref(&a), &[evil], 0),
            history(std::slice::from_ref(&a), &[evil], None, Some(evil)),
            sign_in(evil, Some(evil)),
        ];
        for page in pages {
            assert!(!page.contains("<img"), "{page}");
            assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"), "{page}");
        }
    }

    #[test]
    fn time_left_reads_well() {
        assert_eq!(time_left(10_000, 20_000), "expired");
        assert_eq!(time_left(61_000, 0), "1 min 1 s left");
        assert_eq!(time_left(7_200_000, 0), "2 h 0 min left");
    }
}
