//! The admin listener: `/healthz`, `/readyz`, `/metrics`, and the approvals API that
//! approvers use (`/approvals`, with its own bearer token).
//!
//! Keep it on a private address: it is not a front door and no policy guards it.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use portcullis_host::approval::{ApprovalState, ApprovalStore};
use portcullis_host::audit::AuditSink;
use portcullis_host::config::AdminSection;
use portcullis_host::gate::{Settlement, settle};
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

    fn admits(&self, headers: &http::HeaderMap) -> Result<(), Box<Response<Body>>> {
        let Token::Sha256(expected) = self else {
            return Err(Box::new(problem(
                403,
                "admin-closed",
                "no admin token is configured; set [server.admin] token_env or token_sha256",
                "",
            )));
        };
        let given = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| portcullis_host::sha256_hex(t.trim().as_bytes()));
        match given {
            Some(given) if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) => Ok(()),
            _ => Err(Box::new(problem(
                401,
                "unauthenticated",
                "the approvals API needs `Authorization: Bearer <admin token>`",
                "",
            ))),
        }
    }
}

/// Runs the admin listener until `shutdown`.
pub async fn serve(
    listener: Listener,
    live: Live,
    section: AdminSection,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let token = Arc::new(Token::from_section(&section)?);
    super::http::serve(listener, shutdown, move |req, peer| {
        let live = live.clone();
        let token = token.clone();
        async move { handle(&live, &token, req, peer).await }
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
            let mut response = text(200, &live.metrics.encode());
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            );
            response
        }
        (_, p) if p == "/approvals" || p.starts_with("/approvals/") => {
            if let Err(answer) = token.admits(req.headers()) {
                return *answer;
            }
            let Some(store) = live.keep().approvals.clone() else {
                return problem(404, "approvals-off", "no [approvals] store is configured", "");
            };
            approvals(store, live.keep().audit.clone(), req).await
        }
        _ => problem(
            404,
            "not-found",
            format!("no admin endpoint {path}; try /healthz, /readyz, /metrics or /approvals"),
            "",
        ),
    }
}

/// `GET /approvals[?state=pending]`, `GET /approvals/ID`, `POST /approvals/ID/approve`,
/// `POST /approvals/ID/reject` with `{"by": "...", "note": "..."}`. Decisions are
/// written to the audit log.
async fn approvals(store: Arc<dyn ApprovalStore>, audit: Arc<dyn AuditSink>, req: Request<Incoming>) -> Response<Body> {
    let now = portcullis_host::now_ms();
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
            store.list(state, now).map(|list| json!(list))
        }
        (Method::GET, [id]) => match store.get(id, now) {
            Ok(Some(approval)) => Ok(json!(approval)),
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
            let Some(by) = body.get("by").and_then(Value::as_str).filter(|s| !s.trim().is_empty()) else {
                return problem(400, "bad-request", "say who decides: {\"by\": \"alice@example.com\"}", "");
            };
            let note = body.get("note").and_then(Value::as_str);
            let settlement =
                if *verb == "approve" { Settlement::Approve { by } } else { Settlement::Reject { by, note } };
            let decided = settle(store.as_ref(), Some(audit.as_ref()), id, settlement, "admin", now);
            tracing::info!(approval = id, by, verb = *verb, ok = decided.is_ok(), "approval decided");
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
