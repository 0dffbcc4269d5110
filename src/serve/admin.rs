//! The admin listener: `/healthz`, `/readyz`, `/metrics`, and the approvals API that
//! approvers use (`/approvals`), and their browser inbox (`/inbox`, [`super::inbox`]).
//!
//! The approvals API knows who calls it: an approver authenticated with the same
//! `[identity]` config as the doors (JWT, API key, trusted headers, a client certificate on
//! a TLS admin listener), who sees and decides only the approvals of the approver groups
//! `[approvals.groups]` puts them in (and, under four eyes, not their own requests); or the
//! shared admin token, for automation, which sees and decides all and is recorded as
//! `admin-token` (docs/approvals.md).
//!
//! Keep it on a private address: it is not a front door and no policy guards it.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use portcullis_host::Principal;
use portcullis_host::approval::{ApprovalState, ApprovalStore, Decider};
use portcullis_host::config::AdminSection;
use portcullis_host::exchange::PrincipalKind;
use portcullis_host::gate::{Gate, Identity, Settlement, settle};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio::sync::watch;

use super::http::{Body, Listener, full, problem, read_capped};
use super::live::Live;

/// How the admin token is checked.
#[derive(Clone)]
enum Token {
    /// No token configured: the approvals API is closed.
    None,
    /// SHA-256 (hex) of the token.
    Sha256(String),
}

impl Token {
    fn from_section(section: &AdminSection) -> anyhow::Result<Token> {
        if let Some(var) = &section.token_env {
            let token = std::env::var(var).map_err(|_| {
                anyhow::anyhow!(
                    "[server.admin] token_env names `{var}`, which is not set; export it or remove token_env"
                )
            })?;
            if token.len() < 16 {
                anyhow::bail!(
                    "[server.admin] the admin token in `{var}` is shorter than 16 characters; use a long random one"
                );
            }
            return Ok(Token::Sha256(portcullis_host::sha256_hex(token.as_bytes())));
        }
        if let Some(hash) = &section.token_sha256 {
            let hash = hash.trim().to_ascii_lowercase();
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                anyhow::bail!("[server.admin] token_sha256 must be 64 hex digits (the SHA-256 of the token)");
            }
            return Ok(Token::Sha256(hash));
        }
        Ok(Token::None)
    }

    /// Whether the request carries the admin token (`Authorization: Bearer <token>`,
    /// compared in constant time through its SHA-256).
    fn presented(&self, headers: &http::HeaderMap) -> bool {
        let Token::Sha256(expected) = self else { return false };
        let given = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| portcullis_host::sha256_hex(t.trim().as_bytes()));
        given.is_some_and(|given| bool::from(given.as_bytes().ct_eq(expected.as_bytes())))
    }
}

/// Who calls the approvals API.
enum Caller {
    /// The shared admin token (automation): sees and decides every approval, recorded as
    /// `admin-token`.
    AdminToken,
    /// An approver authenticated with `[identity]`: sees and decides the approvals of its
    /// groups.
    Approver(Principal),
}

impl Caller {
    fn decider(&self) -> Decider {
        match self {
            Caller::AdminToken => Decider::admin_token(),
            Caller::Approver(principal) => Decider::principal(principal),
        }
    }

    fn name(&self) -> &str {
        match self {
            Caller::AdminToken => "admin-token",
            Caller::Approver(principal) => &principal.id,
        }
    }
}

/// Who calls: the admin token when the request carries it, otherwise the principal its
/// credentials prove with the gate's `[identity]` (401 when none or a bad one; 403
/// `admin-closed` when neither an admin token nor any identity is configured).
async fn caller(live: &Live, token: &Token, req: &Request<Incoming>) -> Result<Caller, Box<Response<Body>>> {
    if token.presented(req.headers()) {
        return Ok(Caller::AdminToken);
    }
    let gate = live.gate();
    let identity_configured = gate.authenticator().is_some_and(|a| a.is_configured());
    if matches!(token, Token::None) && !identity_configured {
        return Err(Box::new(problem(
            403,
            "admin-closed",
            "no admin token and no [identity] is configured; set [server.admin] token_env or token_sha256, or \
             configure [identity] and [approvals.groups] for approvers",
            "",
        )));
    }
    let needs = "the approvals API needs an approver's credential (as configured in [identity]) or \
                 `Authorization: Bearer <admin token>`";
    if !identity_configured {
        return Err(Box::new(problem(401, "unauthenticated", needs, "")));
    }
    let mut request = portcullis_host::Request {
        method: req.method().as_str().to_owned(),
        path: req.uri().path().to_owned(),
        headers: req
            .headers()
            .iter()
            .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
            .collect(),
        ..portcullis_host::Request::default()
    };
    live.refresh_keys(&gate, &request).await;
    let now_unix_s = portcullis_host::now_ms() / 1000;
    let certificate = super::http::client_certificate(req.extensions());
    if let Err(failure) =
        gate.identify_connection(&mut request, &Identity::Credentials { now_unix_s }, certificate.as_ref())
    {
        return Err(Box::new(problem(401, "unauthenticated", format!("{}; {needs}", failure.reason), "")));
    }
    if request.principal.kind == PrincipalKind::Anonymous || request.principal.id.is_empty() {
        return Err(Box::new(problem(401, "unauthenticated", needs, "")));
    }
    Ok(Caller::Approver(request.principal))
}

/// Runs the admin listener until `shutdown`.
pub async fn serve(
    listener: Listener,
    live: Live,
    section: AdminSection,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let token = Arc::new(Token::from_section(&section)?);
    let inbox = Arc::new(super::inbox::Inbox::new()?);
    super::http::serve(listener, shutdown, move |req, peer| {
        let live = live.clone();
        let token = token.clone();
        let inbox = inbox.clone();
        async move {
            let path = req.uri().path();
            if path == "/inbox" || path.starts_with("/inbox/") {
                return inbox.handle(&live, &|headers| token.presented(headers), req).await;
            }
            handle(&live, &token, req, peer).await
        }
    })
    .await;
    Ok(())
}

async fn handle(live: &Live, token: &Token, req: Request<Incoming>, _peer: SocketAddr) -> Response<Body> {
    let path = req.uri().path().to_owned();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/healthz") => text(200, "ok\n"),
        (Method::GET, "/readyz") => {
            let state = live.state();
            let gate = live.gate();
            // Not ready while an issuer's fetched keys were never loaded (its tokens get 401);
            // still ready, with the cause shown, when a refresh failed and older keys serve.
            let jwks = live.jwks().statuses();
            let unloaded: Vec<&str> = jwks.iter().filter(|s| !s.loaded).map(|s| s.issuer.as_str()).collect();
            let ready = unloaded.is_empty();
            let jwks: Vec<Value> = jwks
                .iter()
                .map(|s| {
                    let health = match (s.loaded, &s.last_error) {
                        (false, _) => "not-loaded",
                        (true, Some(_)) => "stale",
                        (true, None) => "ok",
                    };
                    let mut entry = json!(s);
                    entry["state"] = json!(health);
                    entry
                })
                .collect();
            let mut body = json!({
                "ready": ready,
                "generation": state.generation,
                "last_reload_error": state.last_error,
                "policies": gate.policy_set().policies().map(|p| json!({"name": p.name(), "digest": p.digest()})).collect::<Vec<_>>(),
            });
            if !jwks.is_empty() {
                body["jwks"] = json!(jwks);
            }
            // Shared state (docs/replicas.md): shown, and named when down; readiness does not
            // depend on it (every replica shares the backend, and `on_error` decides).
            let state = live.state_health();
            let degraded: Vec<String> =
                state.iter().filter(|h| !h.up).map(|h| format!("{} ({})", h.role, h.backend)).collect();
            body["state"] = json!(state);
            if !degraded.is_empty() {
                body["degraded"] = json!(degraded);
            }
            if !ready {
                body["not_ready"] = json!(format!("JWT keys not loaded yet for issuer(s): {}", unloaded.join(", ")));
            }
            json_response(if ready { 200 } else { 503 }, &body)
        }
        (Method::GET, "/metrics") => {
            live.jwks().observe();
            live.metrics.state(&live.state_health());
            if let Some(store) = &live.keep().approvals {
                match store.pending_by_group(portcullis_host::now_ms()) {
                    Ok(counts) => live.metrics.approvals_pending(&counts),
                    Err(e) => tracing::warn!(error = %e, "cannot count pending approvals for /metrics"),
                }
            }
            let mut response = text(200, &live.metrics.encode());
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            );
            response
        }
        (_, p) if p == "/approvals" || p.starts_with("/approvals/") => {
            let caller = match caller(live, token, &req).await {
                Ok(caller) => caller,
                Err(answer) => return *answer,
            };
            let Some(store) = live.keep().approvals.clone() else {
                return problem(404, "approvals-off", "no [approvals] store is configured", "");
            };
            approvals(live, store, &caller, req).await
        }
        _ => problem(
            404,
            "not-found",
            format!("no admin endpoint {path}; try /healthz, /readyz, /metrics, /approvals or /inbox"),
            "",
        ),
    }
}

/// `GET /approvals[?state=pending]`, `GET /approvals/ID`, `POST /approvals/ID/approve`,
/// `POST /approvals/ID/reject` with `{"note": "..."}`. An approver sees and decides only
/// its groups' approvals (four eyes: not its own requests); the admin token all. Every
/// decision is written to the audit log as the caller (a `by` in the body is ignored).
async fn approvals(
    live: &Live,
    store: Arc<dyn ApprovalStore>,
    caller: &Caller,
    req: Request<Incoming>,
) -> Response<Body> {
    let now = portcullis_host::now_ms();
    let gate = live.gate();
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let segments: Vec<&str> = path.split('/').skip(2).collect();
    let result = match (method, segments.as_slice()) {
        (Method::GET, []) => {
            let state = query.split('&').find_map(|pair| pair.strip_prefix("state="));
            let state = match state.map(parse_state).transpose() {
                Ok(state) => state,
                Err(answer) => return *answer,
            };
            store.list(state, now).map(|list| match caller {
                Caller::AdminToken => json!(list),
                Caller::Approver(principal) => {
                    let approvers = gate.approvers();
                    json!(list.into_iter().filter(|a| approvers.may_see(principal, a)).collect::<Vec<_>>())
                }
            })
        }
        (Method::GET, [id]) => match store.get(id, now) {
            Ok(Some(approval)) => {
                if let Caller::Approver(principal) = caller
                    && !gate.approvers().may_see(principal, &approval)
                {
                    return not_yours(&gate, principal, &approval);
                }
                Ok(json!(approval))
            }
            Ok(None) => return problem(404, "unknown-approval", format!("no approval `{id}`"), ""),
            Err(e) => Err(e),
        },
        (Method::POST, [id, verb @ ("approve" | "reject")]) => {
            if several(id) {
                return problem(400, "bad-request", SEVERAL, "");
            }
            let Ok(body) = read_capped(req.into_body(), 64 * 1024).await else {
                return problem(400, "bad-request", "the body must be JSON of at most 64 KiB", "");
            };
            let body: Value = if body.is_empty() {
                json!({})
            } else {
                match serde_json::from_slice(&body) {
                    Ok(value) => value,
                    Err(e) => return problem(400, "bad-request", format!("the body is not JSON: {e}"), ""),
                }
            };
            if let Caller::Approver(principal) = caller {
                match store.get(id, now) {
                    Ok(Some(approval)) => {
                        if let Err(refused) = gate.approvers().may_decide(principal, &approval) {
                            tracing::warn!(approval = id, by = %principal.id, verb = *verb, reason = %refused, "approval decision refused");
                            return problem(403, refused.code(), refused.to_string(), "");
                        }
                    }
                    Ok(None) => return problem(404, "unknown-approval", format!("no approval `{id}`"), ""),
                    Err(e) => return problem(500, "approval-store", e.to_string(), ""),
                }
            }
            let note = body.get("note").and_then(Value::as_str);
            let by = caller.decider();
            let settlement = if *verb == "approve" {
                Settlement::Approve { by: &by, note }
            } else {
                Settlement::Reject { by: &by, note }
            };
            let audit = live.keep().audit.clone();
            let decided =
                settle(store.as_ref(), Some(audit.as_ref()), gate.events().map(|e| &**e), id, settlement, "admin", now);
            tracing::info!(approval = id, by = caller.name(), verb = *verb, ok = decided.is_ok(), "approval decided");
            match decided {
                Ok(approval) => Ok(json!(approval)),
                Err(e) => return problem(409, "approval-not-pending", e.to_string(), ""),
            }
        }
        _ => return problem(404, "not-found", format!("no approvals endpoint {path}"), ""),
    };
    match result {
        Ok(value) => json_response(200, &value),
        Err(e) => problem(500, "approval-store", e.to_string(), ""),
    }
}

/// 403 `not-an-approver` for an approval outside the caller's groups.
fn not_yours(gate: &Gate, principal: &Principal, approval: &portcullis_host::approval::Approval) -> Response<Body> {
    let refused = match gate.approvers().may_decide(principal, approval) {
        Err(refused) => refused.to_string(),
        Ok(()) => format!("`{}` is not a member of approver group `{}`", principal.id, approval.group),
    };
    problem(403, "not-an-approver", refused, "")
}

/// Every few seconds, records the approvals that expired unused as `expired` audit records
/// and events ([`portcullis_host::gate::sweep_expired`]; each once, however many servers
/// share the store), until `shutdown`.
pub async fn sweep_approvals(live: Live, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let Some(store) = live.keep().approvals.clone() else {
        // Spawned only with a store; a task that ends would stop the server.
        let _ = shutdown.changed().await;
        return Ok(());
    };
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return Ok(()),
        }
        let (store, live) = (store.clone(), live.clone());
        let swept = tokio::task::spawn_blocking(move || {
            let gate = live.gate();
            let audit = live.keep().audit.clone();
            portcullis_host::gate::sweep_expired(
                store.as_ref(),
                Some(audit.as_ref()),
                gate.events().map(|e| &**e),
                portcullis_host::now_ms(),
            )
        })
        .await;
        match swept {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "approval expiry sweep failed; retrying"),
            Err(e) => tracing::warn!(error = %e, "approval expiry sweep panicked; retrying"),
        }
    }
}

/// How often [`sweep_approvals`] looks for expired approvals.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Warns, at load, about approver groups the policies' settings name (`approver_group`)
/// that have no `[approvals.groups]` entry: only the admin token can decide them.
pub fn warn_unconfigured_groups(config: &portcullis_host::Config) {
    let Some(section) = &config.approvals else { return };
    let mut named = std::collections::BTreeSet::new();
    for policy in config.policies.values() {
        if let Some(settings) = &policy.settings {
            approver_groups_in(settings, &mut named);
        }
    }
    for group in named {
        if !section.groups.contains_key(&group) {
            tracing::warn!(
                group = %group,
                "approver group `{group}` (named in a policy's settings) has no [approvals.groups.{group}] entry: \
                 only the admin token can decide its approvals"
            );
        }
    }
}

fn approver_groups_in(value: &toml::Value, found: &mut std::collections::BTreeSet<String>) {
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table {
                match value {
                    toml::Value::String(group) if key == "approver_group" => {
                        found.insert(group.clone());
                    }
                    other => approver_groups_in(other, found),
                }
            }
        }
        toml::Value::Array(items) => items.iter().for_each(|item| approver_groups_in(item, found)),
        _ => {}
    }
}

/// Why a comma-separated list of ids (what a caller held by several approver groups was
/// given) is not decided at once: each group's approvers decide their own id.
pub(crate) const SEVERAL: &str = "decide one approval at a time: a request held for several approver groups has one \
                                  approval per group (the caller's header lists them separated by commas), and each \
                                  group's approvers decide their own";

/// Whether a path segment or argument is several ids (`apr_a,apr_b`, also `%2C`-encoded).
pub(crate) fn several(id: &str) -> bool {
    id.contains(',') || id.to_ascii_lowercase().contains("%2c")
}

fn parse_state(text: &str) -> Result<ApprovalState, Box<Response<Body>>> {
    serde_json::from_value(json!(text)).map_err(|_| {
        Box::new(problem(
            400,
            "bad-request",
            format!("unknown state `{text}`; use pending, approved, rejected, used or expired"),
            "",
        ))
    })
}

fn text(status: u16, body: &str) -> Response<Body> {
    let mut response = Response::new(full(body.to_owned()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

fn json_response(status: u16, value: &Value) -> Response<Body> {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    let mut response = Response::new(full(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
