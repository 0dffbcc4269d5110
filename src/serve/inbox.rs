//! The approval inbox (`/inbox` on the admin listener): server-rendered pages where
//! approvers sign in, see the pending approvals of their groups, read one (with the held
//! request's redacted body) and approve or reject it with a note, and look back at the
//! decided ones (docs/approvals.md#the-inbox).
//!
//! **Who is looking.** The same `[identity]` as the admin API: a request that carries a
//! credential `[identity]` accepts (trusted headers from an SSO proxy in front, a client
//! certificate on a TLS admin listener) is signed in as it is, with no form. Otherwise the
//! approver pastes an API key or bearer token into the sign-in form; it is verified once and
//! a server-side session is kept (a random 128-bit id in an `HttpOnly`, `SameSite=Strict`,
//! `Path=/inbox` cookie, `Secure` on TLS; idle and absolute expiry; a bounded table). The
//! shared admin token cannot sign in: it is for automation.
//!
//! **Deciding** goes through the admin API's checks and [`settle`]: membership and four eyes
//! ([`portcullis_host::approval::ApproverGroups::may_decide`]), the decider recorded from the
//! principal, one audit record and one notification event.
//!
//! **Defences.** Every form carries a CSRF token (per session, or derived from the
//! principal for header sign-in) compared in constant time; state changes are POST only;
//! every answer carries a strict Content-Security-Policy, `nosniff`, `no-referrer` and
//! `no-store`; every value on a page goes through [`page::escape`].

mod page;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, HeaderValue, LOCATION, SET_COOKIE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use portcullis_host::Principal;
use portcullis_host::approval::{Approval, ApprovalState, ApprovalStore};
use portcullis_host::exchange::PrincipalKind;
use portcullis_host::gate::{Identity, Settlement, settle};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use self::page::{DecideForm, Header};
use super::http::{Body, Connection, full, read_capped};
use super::live::Live;

/// The session cookie.
const COOKIE_NAME: &str = "portcullis_inbox";
/// The sign-in form's own CSRF cookie (double submit), before there is a session.
const SIGN_IN_COOKIE: &str = "portcullis_inbox_signin";
/// A session ends after this long without a request…
const IDLE_MS: u64 = 30 * 60 * 1000;
/// …and this long after sign-in, whatever happens.
const ABSOLUTE_MS: u64 = 8 * 60 * 60 * 1000;
/// At most this many sessions are kept; when full, expired ones go, then the least
/// recently used.
const MAX_SESSIONS: usize = 10_000;
/// The largest form body read.
const MAX_FORM: usize = 16 * 1024;
/// The longest note kept, in characters.
const MAX_NOTE: usize = 2000;

const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";
const CSS: &str = include_str!("inbox/inbox.css");

/// The inbox's state: the session table and the key that derives CSRF tokens for
/// approvers signed in by headers.
pub struct Inbox {
    sessions: Mutex<HashMap<String, Session>>,
    csrf_key: [u8; 32],
}

struct Session {
    principal: Principal,
    csrf: String,
    created_ms: u64,
    seen_ms: u64,
}

/// Who is looking at a page.
struct Viewer {
    principal: Principal,
    /// The token every form of this viewer carries.
    csrf: String,
    /// The session id, when signed in with the form.
    session: Option<String>,
}

impl Viewer {
    fn header(&self) -> Header<'_> {
        Header { principal: &self.principal, sign_out_csrf: self.session.as_ref().map(|_| self.csrf.as_str()) }
    }
}

impl Inbox {
    pub fn new() -> anyhow::Result<Inbox> {
        let mut csrf_key = [0u8; 32];
        getrandom::getrandom(&mut csrf_key).map_err(|e| anyhow::anyhow!("no randomness for the inbox: {e}"))?;
        Ok(Inbox { sessions: Mutex::new(HashMap::new()), csrf_key })
    }

    /// Answers a request under `/inbox`. `is_admin_token` tells whether headers carry the
    /// shared admin token (which may not sign in).
    pub async fn handle(
        &self,
        live: &Live,
        is_admin_token: &(dyn Fn(&HeaderMap) -> bool + Sync),
        req: Request<Incoming>,
    ) -> Response<Body> {
        let mut response = self.route(live, is_admin_token, req).await;
        let headers = response.headers_mut();
        headers.insert("content-security-policy", HeaderValue::from_static(CSP));
        headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
        headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
        headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }

    async fn route(
        &self,
        live: &Live,
        is_admin_token: &(dyn Fn(&HeaderMap) -> bool + Sync),
        req: Request<Incoming>,
    ) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let tls = req.extensions().get::<Connection>().is_some_and(|c| c.tls);
        match (&method, path.as_str()) {
            (&Method::GET, "/inbox/static/inbox.css") => {
                let mut response = Response::new(full(CSS));
                response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
                return response;
            }
            (&Method::GET, "/inbox/sign-in") => {
                if self.viewer(live, &req).await.is_some() {
                    return redirect("/inbox", None);
                }
                return sign_in_form(tls, None, 200);
            }
            (&Method::POST, "/inbox/sign-in") => return self.sign_in(live, is_admin_token, req, tls).await,
            _ => {}
        }
        let Some(viewer) = self.viewer(live, &req).await else {
            return if method == Method::GET { redirect("/inbox/sign-in", None) } else { sign_in_form(tls, None, 401) };
        };
        if (&method, path.as_str()) == (&Method::POST, "/inbox/sign-out") {
            return self.sign_out(&viewer, req, tls).await;
        }
        let Some(store) = live.keep().approvals.clone() else {
            return html(
                404,
                &page::layout(
                    "No approvals",
                    Some(&viewer.header()),
                    &page::notice("error", "no [approvals] store is configured"),
                ),
            );
        };
        let id = path.strip_prefix("/inbox/approvals/").map(str::to_owned);
        match (method, path.as_str(), id) {
            (Method::GET, "/inbox" | "/inbox/", _) => pending(live, store.as_ref(), &viewer),
            (Method::GET, "/inbox/history", _) => {
                history(live, store.as_ref(), &viewer, req.uri().query().unwrap_or(""))
            }
            (Method::GET, _, Some(id)) => approval_page(live, store.as_ref(), &viewer, &id, None, 200),
            (Method::POST, _, Some(id)) => {
                let form = match read_form(req).await {
                    Ok(form) => form,
                    Err(answer) => return *answer,
                };
                decide(live, store.as_ref(), &viewer, &id, &form)
            }
            (Method::POST | Method::PUT | Method::DELETE | Method::PATCH, _, _) => {
                html(405, &page::layout("Not allowed", Some(&viewer.header()), &page::notice("error", "not here")))
            }
            _ => html(
                404,
                &page::layout(
                    "Not found",
                    Some(&viewer.header()),
                    &page::notice("error", &format!("no inbox page {path}")),
                ),
            ),
        }
    }

    /// Who is looking: signed in by the request's own credentials (trusted headers, a client
    /// certificate), or by a live session cookie.
    async fn viewer(&self, live: &Live, req: &Request<Incoming>) -> Option<Viewer> {
        let gate = live.gate();
        if gate.authenticator().is_some_and(|a| a.is_configured()) {
            let headers = req
                .headers()
                .iter()
                .filter(|(name, _)| *name != COOKIE)
                .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
                .collect();
            let certificate = super::http::client_certificate(req.extensions());
            if let Ok(principal) = identify(live, headers, certificate.as_ref()).await {
                let csrf = self.derived_csrf(&principal);
                return Some(Viewer { principal, csrf, session: None });
            }
        }
        let id = cookie(req.headers(), COOKIE_NAME)?;
        let now = portcullis_host::now_ms();
        let mut sessions = self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let session = sessions.get_mut(&id)?;
        if expired(session, now) {
            sessions.remove(&id);
            return None;
        }
        session.seen_ms = now;
        Some(Viewer { principal: session.principal.clone(), csrf: session.csrf.clone(), session: Some(id) })
    }

    /// The CSRF token of an approver signed in by headers: an HMAC of who they are under a
    /// key made at start (so it survives no restart, and needs no table).
    fn derived_csrf(&self, principal: &Principal) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.csrf_key).expect("HMAC takes any key length");
        for part in [principal.kind.as_str(), &principal.id, principal.credential_id.as_deref().unwrap_or("")] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        hex(&mac.finalize().into_bytes())
    }

    /// `POST /inbox/sign-in`: checks the form's CSRF cookie, refuses the admin token,
    /// verifies the credential with `[identity]` and opens a session.
    async fn sign_in(
        &self,
        live: &Live,
        is_admin_token: &(dyn Fn(&HeaderMap) -> bool + Sync),
        req: Request<Incoming>,
        tls: bool,
    ) -> Response<Body> {
        let expected = cookie(req.headers(), SIGN_IN_COOKIE).unwrap_or_default();
        let form = match read_form(req).await {
            Ok(form) => form,
            Err(answer) => return *answer,
        };
        if !same_token(&expected, field(&form, "csrf")) {
            return sign_in_form(tls, Some("The sign-in form was stale; try again."), 403);
        }
        let credential = field(&form, "credential").trim();
        if credential.is_empty() || credential.contains(['\r', '\n']) {
            return sign_in_form(tls, Some("Paste an API key or a bearer token."), 400);
        }
        let mut as_bearer = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(&format!("Bearer {credential}")) {
            as_bearer.insert(http::header::AUTHORIZATION, value);
        }
        if is_admin_token(&as_bearer) {
            tracing::warn!("inbox sign-in with the admin token refused");
            return sign_in_form(
                tls,
                Some(
                    "The admin token is for automation and cannot sign in to the inbox; sign in with your own credential.",
                ),
                403,
            );
        }
        // A JWT goes as a bearer token, anything else as an API key.
        let scheme = if credential.split('.').count() == 3 { "Bearer" } else { "ApiKey" };
        let headers = vec![("authorization".to_owned(), format!("{scheme} {credential}"))];
        let principal = match identify(live, headers, None).await {
            Ok(principal) => principal,
            Err(reason) => {
                tracing::info!(reason = %reason, "inbox sign-in refused");
                return sign_in_form(tls, Some(&format!("Sign-in refused: {reason}.")), 401);
            }
        };
        let (Ok(id), Ok(csrf)) = (random_hex(), random_hex()) else {
            return html(500, &page::layout("Error", None, &page::notice("error", "no randomness for a session")));
        };
        tracing::info!(principal = %principal.id, credential = principal.credential_id.as_deref().unwrap_or(""), "inbox sign-in");
        let now = portcullis_host::now_ms();
        self.insert(id.clone(), Session { principal, csrf, created_ms: now, seen_ms: now });
        let mut response = redirect("/inbox", Some(&session_cookie(&id, tls, ABSOLUTE_MS / 1000)));
        if let Ok(clear) = HeaderValue::from_str(&format!(
            "{SIGN_IN_COOKIE}=; Path=/inbox/sign-in; Max-Age=0; HttpOnly; SameSite=Strict"
        )) {
            response.headers_mut().append(SET_COOKIE, clear);
        }
        response
    }

    fn insert(&self, id: String, session: Session) {
        let mut sessions = self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if sessions.len() >= MAX_SESSIONS {
            let now = session.created_ms;
            sessions.retain(|_, s| !expired(s, now));
        }
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.seen_ms).map(|(id, _)| id.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(id, session);
    }

    /// `POST /inbox/sign-out`: ends the session (CSRF-checked).
    async fn sign_out(&self, viewer: &Viewer, req: Request<Incoming>, tls: bool) -> Response<Body> {
        let form = match read_form(req).await {
            Ok(form) => form,
            Err(answer) => return *answer,
        };
        if !same_token(&viewer.csrf, field(&form, "csrf")) {
            return csrf_refused(viewer);
        }
        if let Some(id) = &viewer.session {
            self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(id);
        }
        redirect("/inbox/sign-in", Some(&session_cookie("", tls, 0)))
    }
}

/// The principal `[identity]` proves from these headers (and certificate): anonymous and
/// refused credentials are errors.
async fn identify(
    live: &Live,
    headers: Vec<(String, String)>,
    certificate: Option<&portcullis_host::identity::ClientCertificate>,
) -> Result<Principal, String> {
    let gate = live.gate();
    if !gate.authenticator().is_some_and(|a| a.is_configured()) {
        return Err("no [identity] is configured, so no approver can sign in".into());
    }
    let mut request = portcullis_host::Request {
        method: "GET".into(),
        path: "/inbox".into(),
        headers,
        ..portcullis_host::Request::default()
    };
    live.refresh_keys(&gate, &request).await;
    let now_unix_s = portcullis_host::now_ms() / 1000;
    gate.identify_connection(&mut request, &Identity::Credentials { now_unix_s }, certificate)
        .map_err(|failure| failure.reason)?;
    if request.principal.kind == PrincipalKind::Anonymous || request.principal.id.is_empty() {
        return Err("no credential [identity] accepts".into());
    }
    Ok(request.principal)
}

fn expired(session: &Session, now: u64) -> bool {
    now.saturating_sub(session.seen_ms) >= IDLE_MS || now.saturating_sub(session.created_ms) >= ABSOLUTE_MS
}

/// The pending approvals of the viewer's groups, soonest to expire first.
fn pending(live: &Live, store: &dyn ApprovalStore, viewer: &Viewer) -> Response<Body> {
    let now = portcullis_host::now_ms();
    let gate = live.gate();
    let approvers = gate.approvers();
    let mut list = match store.list(Some(ApprovalState::Pending), now) {
        Ok(list) => list,
        Err(e) => return store_error(viewer, &e),
    };
    list.retain(|a| approvers.may_see(&viewer.principal, a));
    list.sort_by_key(|a| a.expires_ms);
    let groups = approvers.member_of(&viewer.principal);
    html(200, &page::layout("Waiting for you", Some(&viewer.header()), &page::pending(&list, &groups, now)))
}

/// Decided approvals of the viewer's groups, filtered by `state` and `group`.
fn history(live: &Live, store: &dyn ApprovalStore, viewer: &Viewer, query: &str) -> Response<Body> {
    let now = portcullis_host::now_ms();
    let gate = live.gate();
    let approvers = gate.approvers();
    let query = parse_form(query.as_bytes());
    let state = field(&query, "state").parse::<ApprovalState>().ok();
    let group = Some(field(&query, "group")).filter(|g| !g.is_empty());
    let mut list = match store.list(state, now) {
        Ok(list) => list,
        Err(e) => return store_error(viewer, &e),
    };
    list.retain(|a| {
        a.state != ApprovalState::Pending
            && approvers.may_see(&viewer.principal, a)
            && group.is_none_or(|g| a.group == g)
    });
    list.sort_by_key(|a| std::cmp::Reverse(a.decided_ms.unwrap_or(a.expires_ms)));
    let groups = approvers.member_of(&viewer.principal);
    html(200, &page::layout("History", Some(&viewer.header()), &page::history(&list, &groups, state, group)))
}

/// One approval, with the decision form when the viewer may decide it.
fn approval_page(
    live: &Live,
    store: &dyn ApprovalStore,
    viewer: &Viewer,
    id: &str,
    message: Option<&str>,
    status: u16,
) -> Response<Body> {
    let now = portcullis_host::now_ms();
    let gate = live.gate();
    let approvers = gate.approvers();
    let approval = match store.get(id, now) {
        Ok(Some(approval)) if approvers.may_see(&viewer.principal, &approval) => approval,
        Ok(_) => return unknown(viewer, id),
        Err(e) => return store_error(viewer, &e),
    };
    let form = if approval.state_at(now) != ApprovalState::Pending {
        DecideForm::None
    } else {
        match approvers.may_decide(&viewer.principal, &approval) {
            Ok(()) => DecideForm::Form { csrf: &viewer.csrf },
            Err(refused) => DecideForm::Refused(refused.to_string()),
        }
    };
    let title = format!("Approval for {} {}", approval.method, approval.path);
    html(status, &page::layout(&title, Some(&viewer.header()), &page::approval(&approval, now, &form, message)))
}

/// `POST /inbox/approvals/ID`: approve or reject, as the admin API does.
fn decide(
    live: &Live,
    store: &dyn ApprovalStore,
    viewer: &Viewer,
    id: &str,
    form: &[(String, String)],
) -> Response<Body> {
    if !same_token(&viewer.csrf, field(form, "csrf")) {
        tracing::warn!(approval = id, by = %viewer.principal.id, "inbox decision without a valid CSRF token refused");
        return csrf_refused(viewer);
    }
    let verb = field(form, "decision");
    if verb != "approve" && verb != "reject" {
        return approval_page(live, store, viewer, id, Some("Choose Approve or Reject."), 400);
    }
    let now = portcullis_host::now_ms();
    let gate = live.gate();
    let approval: Approval = match store.get(id, now) {
        Ok(Some(approval)) if gate.approvers().may_see(&viewer.principal, &approval) => approval,
        Ok(_) => return unknown(viewer, id),
        Err(e) => return store_error(viewer, &e),
    };
    if let Err(refused) = gate.approvers().may_decide(&viewer.principal, &approval) {
        tracing::warn!(approval = id, by = %viewer.principal.id, verb, reason = %refused, "approval decision refused");
        return approval_page(live, store, viewer, id, Some(&refused.to_string()), 403);
    }
    let note: String = field(form, "note").trim().chars().take(MAX_NOTE).collect();
    let note = Some(note.as_str()).filter(|n| !n.is_empty());
    let by = portcullis_host::approval::Decider::principal(&viewer.principal);
    let settlement =
        if verb == "approve" { Settlement::Approve { by: &by, note } } else { Settlement::Reject { by: &by, note } };
    let audit = live.keep().audit.clone();
    let decided = settle(store, Some(audit.as_ref()), gate.events().map(|e| &**e), id, settlement, "inbox", now);
    tracing::info!(approval = id, by = %viewer.principal.id, verb, ok = decided.is_ok(), "approval decided in the inbox");
    match decided {
        Ok(_) => redirect(&format!("/inbox/approvals/{id}"), None),
        Err(e) => approval_page(live, store, viewer, id, Some(&e.to_string()), 409),
    }
}

fn unknown(viewer: &Viewer, id: &str) -> Response<Body> {
    // The same answer for an approval that does not exist and one of another group.
    let text = format!("No approval `{id}` for you: it does not exist, or belongs to a group you are not in.");
    html(404, &page::layout("Not found", Some(&viewer.header()), &page::notice("error", &text)))
}

fn store_error(viewer: &Viewer, e: &dyn std::fmt::Display) -> Response<Body> {
    tracing::warn!(error = %e, "inbox cannot read the approval store");
    let text = format!("The approval store cannot be read: {e}");
    html(500, &page::layout("Error", Some(&viewer.header()), &page::notice("error", &text)))
}

fn csrf_refused(viewer: &Viewer) -> Response<Body> {
    let text = "This form's security token is missing or stale (was the page open in another session?). Reload the page and try again.";
    html(403, &page::layout("Refused", Some(&viewer.header()), &page::notice("error", text)))
}

/// The sign-in form with a fresh double-submit CSRF cookie.
fn sign_in_form(tls: bool, error: Option<&str>, status: u16) -> Response<Body> {
    let Ok(token) = random_hex() else {
        return html(500, &page::layout("Error", None, &page::notice("error", "no randomness")));
    };
    let mut response = html(status, &page::sign_in(&token, error));
    let secure = if tls { "; Secure" } else { "" };
    let cookie =
        format!("{SIGN_IN_COOKIE}={token}; Path=/inbox/sign-in; Max-Age=900; HttpOnly; SameSite=Strict{secure}");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

fn session_cookie(id: &str, tls: bool, max_age_s: u64) -> String {
    let secure = if tls { "; Secure" } else { "" };
    format!("{COOKIE_NAME}={id}; Path=/inbox; Max-Age={max_age_s}; HttpOnly; SameSite=Strict{secure}")
}

fn html(status: u16, body: &str) -> Response<Body> {
    let mut response = Response::new(full(body.to_owned()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    response
}

/// 303 See Other to `to` (after a POST, so a reload does not post again).
fn redirect(to: &str, set_cookie: Option<&str>) -> Response<Body> {
    let mut response = Response::new(full(""));
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(location) = HeaderValue::from_str(to) {
        response.headers_mut().insert(LOCATION, location);
    }
    if let Some(cookie) = set_cookie.and_then(|c| HeaderValue::from_str(c).ok()) {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    response
}

/// A cookie's value from the `Cookie` headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

/// Whether a form's token equals the expected one (constant time; an empty one never).
fn same_token(expected: &str, given: &str) -> bool {
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

async fn read_form(req: Request<Incoming>) -> Result<Vec<(String, String)>, Box<Response<Body>>> {
    match read_capped(req.into_body(), MAX_FORM).await {
        Ok(body) => Ok(parse_form(&body)),
        Err(_) => {
            Err(Box::new(html(413, &page::layout("Too large", None, &page::notice("error", "the form is too large")))))
        }
    }
}

/// `application/x-www-form-urlencoded` pairs (also a query string).
fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    body.split(|b| *b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match pair.iter().position(|b| *b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &[][..]),
            };
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

fn percent_decode(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first value of a form field (empty when absent).
fn field<'a>(form: &'a [(String, String)], name: &str) -> &'a str {
    form.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str())
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// 128 random bits as hex.
fn random_hex() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes)?;
    Ok(hex(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_decoded() {
        let form = parse_form(b"csrf=ab12&note=fine+by%20me%21&decision=approve&bad=%zz&end=%4");
        assert_eq!(field(&form, "note"), "fine by me!");
        assert_eq!(field(&form, "decision"), "approve");
        assert_eq!(field(&form, "bad"), "%zz");
        assert_eq!(field(&form, "end"), "%4");
        assert_eq!(field(&form, "missing"), "");
    }

    #[test]
    fn the_session_table_is_bounded_and_sessions_expire() {
        let inbox = Inbox::new().unwrap();
        let session =
            |at: u64| Session { principal: Principal::default(), csrf: "t".into(), created_ms: at, seen_ms: at };
        for i in 0..MAX_SESSIONS as u64 {
            inbox.insert(format!("s{i}"), session(1_000 + i));
        }
        inbox.insert("newest".into(), session(1_000 + MAX_SESSIONS as u64));
        let sessions = inbox.sessions.lock().unwrap();
        assert_eq!(sessions.len(), MAX_SESSIONS);
        assert!(!sessions.contains_key("s0") && sessions.contains_key("s1") && sessions.contains_key("newest"));
        let s = session(0);
        assert!(!expired(&s, IDLE_MS - 1));
        assert!(expired(&s, IDLE_MS));
        let busy = Session { seen_ms: ABSOLUTE_MS - 1, ..session(0) };
        assert!(expired(&busy, ABSOLUTE_MS), "at most ABSOLUTE_MS however busy");
    }

    #[test]
    fn tokens_compare_and_cookies_parse() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("", ""));
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_static("a=1; portcullis_inbox=s3cr3t; b=2"));
        assert_eq!(cookie(&headers, COOKIE_NAME).as_deref(), Some("s3cr3t"));
        assert_eq!(cookie(&headers, "c"), None);
    }
}
