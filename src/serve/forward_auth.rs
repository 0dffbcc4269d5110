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
use portcullis_host::adapters::forward::{
    HeaderEdit, ON_BEHALF_OF_HEADER, PRINCIPAL_HEADER, header_edits, take_incoming,
};
use portcullis_host::adapters::forward_auth::{HeaderFamily, client_address, original_request};
use portcullis_host::adapters::http::{FromHttp, request_from_http};
use portcullis_host::config::ForwardAuthSection;
use portcullis_host::gate::{Admission, Arrival, Reach, Refusal};
use tokio::sync::watch;

use super::http::{Body, Judge, Listener, full, refusal_response, with_request_id};
use super::live::Live;

/// The header listing the header names the proxy must blank before passing the request on.
pub const REMOVE_HEADERS: &str = "x-portcullis-remove-headers";

/// Runs the forward-auth endpoint on `listener` until `shutdown`.
pub async fn serve(listener: Listener, live: Live, section: ForwardAuthSection, shutdown: watch::Receiver<bool>) {
    let judge = Judge::for_live(&live);
    let section = std::sync::Arc::new(section);
    super::http::serve(listener, shutdown, move |req, peer| {
        let live = live.clone();
        let section = section.clone();
        async move { handle(&live, &section, judge, req, peer).await }
    })
    .await;
}

async fn handle(
    live: &Live,
    section: &ForwardAuthSection,
    judge: Judge,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let (parts, _body) = req.into_parts();
    let nginx = section.proxy == HeaderFamily::Nginx;
    let original = match original_request(&parts.headers, &section.scheme, section.proxy) {
        Ok(original) => original,
        Err(e) => return bad_request(&e, nginx),
    };
    // What the proxy will forward: the original request's own headers, as sent.
    let sent = match request_from_http(&original, &FromHttp { forwards_raw_target: true, ..FromHttp::default() }) {
        Ok(sent) => sent.headers,
        Err(e) => return bad_request(&e, nginx),
    };
    let (mut original_parts, body) = original.into_parts();
    if let Err(e) = take_incoming(&mut original_parts.headers) {
        return bad_request(&e, nginx);
    }
    let gate = live.gate();
    // The proxy forwards the target as the client sent it, so a target that is not
    // canonical is refused rather than judged in a form the upstream will not get.
    let mut request = match request_from_http(
        &Request::from_parts(original_parts, body),
        &FromHttp {
            default_scheme: section.scheme.clone(),
            client_address: client_address(&parts.headers).or_else(|| Some(peer.ip().to_string())),
            received_at_ms: portcullis_host::now_ms(),
            target_rules: gate.target_rules(),
            forwards_raw_target: true,
            ..FromHttp::default()
        },
    ) {
        Ok(request) => request,
        Err(e) => return bad_request(&e, nginx),
    };
    let arrival = Arrival::take("forward-auth", Reach::HEADERS, &mut request);
    // A token with an unknown `kid` may be signed by the issuer's new key.
    live.refresh_keys(&gate, &request).await;
    let request_id = request.id.clone();
    let admission = judge.run(|| gate.admit(&mut request, arrival));
    match admission {
        Admission::Refuse(refusal) => refuse(&refusal, nginx),
        Admission::Forward(ticket) => allowed(&ticket.request, &sent, &request_id),
    }
}

/// The 2xx answer: who was judged, and what the proxy must change in the headers it
/// forwards (the gate's removals and replacements, computed by the library).
fn allowed(judged: &portcullis_host::Request, sent: &[(String, String)], request_id: &str) -> Response<Body> {
    let mut response = Response::new(full(Vec::new()));
    let headers = response.headers_mut();
    let principal = &judged.principal;
    let ours = [PRINCIPAL_HEADER, ON_BEHALF_OF_HEADER];
    let who = format!("{}:{}", principal.kind.as_str(), principal.id);
    // Always sent (empty when nobody), so proxies that copy them never pass a stale or
    // client-chosen value.
    for (name, value) in ours.into_iter().zip([who.as_str(), principal.on_behalf_of.as_deref().unwrap_or("")]) {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    let mut removed: Vec<&str> = Vec::new();
    let edits = header_edits(sent, &judged.headers);
    for edit in &edits {
        let (name, value) = match edit {
            HeaderEdit::Remove(name) => (name, ""),
            HeaderEdit::Set(name, value) => (name, value.as_str()),
        };
        if ours.contains(&name.as_str()) {
            continue;
        }
        let (Ok(header), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) else {
            continue;
        };
        headers.insert(header, value);
        if matches!(edit, HeaderEdit::Remove(_)) {
            removed.push(name);
        }
    }
    if !removed.is_empty()
        && let Ok(value) = HeaderValue::from_str(&removed.join(", "))
    {
        headers.insert(HeaderName::from_static(REMOVE_HEADERS), value);
    }
    with_request_id(response, request_id)
}

/// The door's own 400 `bad-request` (the ask does not describe a request the upstream
/// would get as judged), mapped for nginx like every refusal.
fn bad_request(error: &dyn std::fmt::Display, nginx: bool) -> Response<Body> {
    let refusal = Refusal {
        status: 400,
        code: "bad-request".into(),
        reason: error.to_string(),
        policy: None,
        request_id: String::new(),
        approval: None,
        scope: None,
    };
    refuse(&refusal, nginx)
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
