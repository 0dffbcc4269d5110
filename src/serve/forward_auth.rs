//! Forward-auth: the endpoint nginx `auth_request`, Traefik `ForwardAuth` and Caddy
//! `forward_auth` ask before they pass a request on.
//!
//! The proxy sends the original request's headers plus where it was going
//! (`X-Original-Method`/`X-Original-URI` from nginx; `X-Forwarded-Method`, `-Proto`,
//! `-Host`, `-Uri`, `-For` from Traefik and Caddy). The answer is 2xx to let it through,
//! or the refusal. Only the request phase exists here: these proxies cannot show a
//! response to an auth service, so response-phase policies do not run, and only header
//! redactions can be enforced (by the proxy copying the answer's headers). A query or
//! JSON-body redaction cannot be, so it refuses (403 `redaction-unenforceable`).

use std::net::SocketAddr;

use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use portcullis_host::adapters::forward_auth::{client_address, original_request};
use portcullis_host::adapters::http::{FromHttp, request_from_http};
use portcullis_host::config::ForwardAuthSection;
use portcullis_host::decision::{Action, Target};
use portcullis_host::gate::{Admission, Arrival, Reach, Refusal};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::http::{Body, full, problem, refusal_response, with_request_id};
use super::live::Live;

/// The header listing the header names the proxy must blank before passing the request on.
pub const REMOVE_HEADERS: &str = "x-portcullis-remove-headers";

/// Runs the forward-auth endpoint on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, live: Live, section: ForwardAuthSection, shutdown: watch::Receiver<bool>) {
    super::http::serve(listener, shutdown, move |req, peer| {
        let live = live.clone();
        let section = section.clone();
        async move { handle(&live, &section, req, peer).await }
    })
    .await;
}

async fn handle(live: &Live, section: &ForwardAuthSection, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let (parts, _body) = req.into_parts();
    let nginx = parts.headers.contains_key("x-original-uri");
    let original = match original_request(&parts.headers, &section.scheme) {
        Ok(original) => original,
        Err(e) => return problem(400, "bad-request", e.to_string(), ""),
    };
    let mut request = match request_from_http(&original, &FromHttp {
        default_scheme: section.scheme.clone(),
        client_address: client_address(&parts.headers).or_else(|| Some(peer.ip().to_string())),
        received_at_ms: portcullis_host::capability::now_ms(),
        ..FromHttp::default()
    }) {
        Ok(request) => request,
        Err(e) => return problem(400, "bad-request", e.to_string(), ""),
    };
    let gate = live.gate();
    let sent: Vec<String> = request.headers.iter().map(|(name, _)| name.clone()).collect();
    let mut arrival = Arrival::take("forward-auth", &mut request);
    arrival.reach = Reach::HEADERS;
    let request_id = request.id.clone();
    let admission = match tokio::task::spawn_blocking(move || gate.admit(&mut request, arrival)).await {
        Ok(admission) => admission,
        Err(_) => return problem(500, "policy-error", "the evaluation stopped unexpectedly", &request_id),
    };
    match admission {
        Admission::Refuse(refusal) => refuse(&refusal, nginx),
        Admission::Forward(ticket) => {
            let redactions = ticket.check.verdict.redactions();
            let mut response = Response::new(full(Vec::new()));
            let headers = response.headers_mut();
            let principal = &ticket.request.principal;
            let who = format!("{}:{}", serde_json::to_value(principal.kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(), principal.id);
            if let Ok(value) = HeaderValue::from_str(&who) {
                headers.insert(HeaderName::from_static("x-portcullis-principal"), value);
            }
            // Always sent (empty when nobody), so proxies that copy it never pass a stale value.
            let on_behalf_of = principal.on_behalf_of.as_deref().unwrap_or("");
            if let Ok(value) = HeaderValue::from_str(on_behalf_of) {
                headers.insert(HeaderName::from_static("x-portcullis-on-behalf-of"), value);
            }
            // Headers the gate took out (stripped credentials, the approval header) must not
            // reach the upstream either.
            let mut removed: Vec<String> = Vec::new();
            for name in &sent {
                let kept = ticket.request.headers.iter().any(|(n, _)| n == name);
                if !kept && !removed.contains(name) {
                    if let Ok(header) = HeaderName::from_bytes(name.as_bytes()) {
                        headers.insert(header, HeaderValue::from_static(""));
                        removed.push(name.clone());
                    }
                }
            }
            for redaction in redactions {
                let Target::Header(name) = &redaction.target else { continue };
                let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else { continue };
                match &redaction.action {
                    Action::Remove => {
                        headers.insert(header, HeaderValue::from_static(""));
                        if !removed.contains(&name.to_ascii_lowercase()) {
                            removed.push(name.to_ascii_lowercase());
                        }
                    }
                    Action::Replace(value) => {
                        if let Ok(value) = HeaderValue::from_str(value) {
                            headers.insert(header, value);
                        }
                    }
                }
            }
            if !removed.is_empty() {
                if let Ok(value) = HeaderValue::from_str(&removed.join(", ")) {
                    headers.insert(HeaderName::from_static(REMOVE_HEADERS), value);
                }
            }
            with_request_id(response, &request_id)
        }
    }
}

/// The refusal as the proxy needs it. nginx's `auth_request` understands only 401 and 403
/// (anything else becomes a 500), so for nginx other statuses are sent as 403 with the
/// real one in `X-Portcullis-Status`.
fn refuse(refusal: &Refusal, nginx: bool) -> Response<Body> {
    let mut response = refusal_response(refusal);
    response.headers_mut().insert(HeaderName::from_static("x-portcullis-status"), HeaderValue::from(refusal.status));
    if nginx && refusal.status != 401 && refusal.status != 403 {
        *response.status_mut() = StatusCode::FORBIDDEN;
    }
    response
}
