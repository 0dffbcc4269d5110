//! Envoy external authorization (`envoy.service.auth.v3.Authorization/Check`): a
//! `CheckRequest` into the normalised [`Request`], and the gate's [`Admission`] back into a
//! `CheckResponse`. Conversions only (feature `ext-authz`); `portcullis serve` runs the
//! gRPC service.
//!
//! # What Envoy sends
//!
//! - method, scheme, host (`:authority`) and path from `attributes.request.http`; the path
//!   carries the query, which is split off and percent-decoded here. Pseudo-headers
//!   (`:authority`, `:path`, …) are not headers of the request and are dropped (they only
//!   stand in when the `http` fields are empty).
//! - headers: in order, repeats kept, from `header_map` when Envoy is configured with
//!   `encode_raw_headers: true` (recommended: a value that is not UTF-8 is then refused rather
//!   than seen with `!` in place of its bad bytes); otherwise from the `headers` map, where
//!   Envoy has already joined repeated headers with `,` and the order is lost (names are
//!   sorted).
//! - the body only when the filter has `with_request_body` (use `pack_as_bytes: true` for
//!   binary bodies). A body Envoy cut at `max_request_bytes` is marked truncated.
//! - the client's IP from `attributes.source.address.socket_address`.
//!
//! # What Envoy can enforce
//!
//! An allowed request's header changes become `OkHttpResponse.headers` (set, not appended)
//! and `headers_to_remove`; query changes become `query_parameters_to_set` and
//! `query_parameters_to_remove`. The answer is worked out by comparing the request as Envoy
//! sent it with the request as the gate forwards it, so everything the gate changed is
//! enforced: policy redactions, credentials the identity settings strip
//! (`strip_credentials`), and the approval header.
//!
//! Envoy does not let an authorization service rewrite the body. So a JSON-body redaction
//! is enforceable only when it changes nothing, and Portcullis can tell: the request has no
//! body, or Envoy sent the whole body and none of the redacted fields is in it. Otherwise
//! the request is refused (403, code `redaction-unenforceable`) rather than forwarded
//! unredacted; use the reverse proxy for routes whose policies redact request bodies.
//!
//! Every refusal is a `DeniedHttpResponse` (never an `error_response`, which Envoy's
//! `failure_mode_allow` could turn into an allow) with the refusal's status, its RFC 9457
//! problem body and headers; the gRPC status is `UNAUTHENTICATED` for a 401 and
//! `PERMISSION_DENIED` otherwise.
//!
//! Only the request phase exists: Envoy does not show responses to an authorization
//! service, so response-phase policies do not run behind this door.

pub use envoy_types::pb::envoy::service::auth::v3::{CheckRequest, CheckResponse};

use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption, QueryParameter, address};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{DeniedHttpResponse, OkHttpResponse};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::google::protobuf::BoolValue;
use envoy_types::pb::google::rpc::Status;

use crate::adapters::forward::{HOST_SET_PREFIX, METHOD_OVERRIDES, ON_BEHALF_OF_HEADER, PRINCIPAL_HEADER};
use crate::adapters::http::normalise_authority;
use crate::decision::Target;
use crate::exchange::{Body, Request, percent_decode, percent_encode_query};
use crate::gate::{Admission, REQUEST_ID_HEADER, Refusal, RequestCheck};
use crate::target::{TargetError, TargetRules, require_canonical};

/// gRPC `OK`: Envoy lets the request through.
pub const GRPC_OK: i32 = 0;
/// gRPC `PERMISSION_DENIED`: every refusal but a failed authentication.
pub(crate) const GRPC_PERMISSION_DENIED: i32 = 7;
/// gRPC `UNAUTHENTICATED`: a refusal with HTTP status 401.
pub(crate) const GRPC_UNAUTHENTICATED: i32 = 16;

/// The header Envoy adds to a check request when it buffered the body: `true` when it cut
/// the body at `max_request_bytes`.
const PARTIAL_BODY_HEADER: &str = "x-envoy-auth-partial-body";

/// The refusal code when a redaction cannot be carried out through ext_authz.
pub const UNENFORCEABLE: &str = "redaction-unenforceable";

/// What a `CheckRequest` does not say, for [`request_from_check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromCheck {
    /// Scheme when Envoy sends none (default `http`).
    pub default_scheme: String,
    /// Receive time in ms since the Unix epoch (0: let [`crate::gate::Arrival::take`] set it).
    pub received_at_ms: u64,
    /// How the request target is checked (`[request_target]`). Envoy forwards the path it
    /// has, so a path that is not already canonical is refused: set Envoy's
    /// `normalize_path`, `merge_slashes` and `path_with_escaped_slashes_action` so that it
    /// never sends one (docs/front-doors.md).
    pub target_rules: TargetRules,
}

impl Default for FromCheck {
    fn default() -> Self {
        FromCheck { default_scheme: "http".into(), received_at_ms: 0, target_rules: TargetRules::default() }
    }
}

/// How much of the request's body Portcullis saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodySeen {
    /// The request has no body (`content-length: 0`, an HTTP/1 request without
    /// `content-length` or `transfer-encoding`, or Envoy buffered an empty body).
    Absent,
    /// Envoy sent the whole body.
    Whole,
    /// Envoy cut the body at its `max_request_bytes` (the request's body is marked truncated).
    Partial,
    /// Envoy sent no body, and the request may have one (`with_request_body` is not set).
    Unknown,
}

impl BodySeen {
    /// Whether Portcullis knows the whole body (or that there is none).
    pub fn is_complete(self) -> bool {
        matches!(self, BodySeen::Absent | BodySeen::Whole)
    }
}

/// A `CheckRequest` as the gate takes it, with what answering it needs: the request as
/// Envoy sent it, to compare with the request the gate forwards.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The normalised request: hand it to [`crate::gate::Arrival::take`] and
    /// [`crate::gate::Gate::admit`].
    pub request: Request,
    /// How much of the body was seen.
    pub body: BodySeen,
    /// The headers as Envoy sent them (before the gate removed or changed any).
    sent_headers: Vec<(String, String)>,
    /// The query as Envoy sent it, with each pair's key as written in the path.
    sent_query: Vec<RawPair>,
}

/// One query pair: the key as written (still encoded), and decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RawPair {
    raw_key: String,
    key: String,
    value: String,
}

/// Why a `CheckRequest` could not be normalised. The service answers 400 (`bad-request`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtAuthzError {
    /// No `attributes.request.http`: not an HTTP check (the network filter's TCP checks are
    /// not supported).
    #[error(
        "the CheckRequest has no `attributes.request.http`; Portcullis authorises HTTP requests \
         (Envoy's HTTP ext_authz filter), not TCP connections"
    )]
    NotHttp,
    /// Neither `method` nor a `:method` header.
    #[error("the CheckRequest names no method (`attributes.request.http.method`)")]
    MissingMethod,
    /// Neither `path` nor a `:path` header.
    #[error("the CheckRequest names no path (`attributes.request.http.path`)")]
    MissingPath,
    /// A path that is neither origin-form (`/a?b`) nor absolute (`https://h/a`).
    #[error("the request target `{path}` is not a path starting with `/` or an absolute URL")]
    BadPath {
        /// The path as sent (cut to 64 characters).
        path: String,
    },
    /// A raw header value that is not UTF-8 (the value is not repeated: it may be a secret).
    #[error(
        "header `{name}` has a value that is not valid UTF-8; refusing the request, since \
         policies could not see its true value"
    )]
    HeaderNotUtf8 {
        /// The header's name.
        name: String,
    },
    /// The path is refused by a canonicalisation rule, or is not canonical ([`crate::target`]).
    #[error(transparent)]
    Target(#[from] TargetError),
    /// A method-override header: the upstream could act as another method than the one
    /// judged.
    #[error(
        "the request has `{header}`, which asks the upstream to act as another method than the one the policies \
         judge; send the real method instead"
    )]
    MethodOverride {
        /// The header's name.
        header: &'static str,
    },
}

/// Normalises a `CheckRequest`: upper-case method; scheme (or `opts.default_scheme`);
/// authority from `host` (else `:authority`), without userinfo or the scheme's default
/// port; the path split into a percent-decoded path and query pairs; headers with
/// lower-case names, pseudo-headers and Envoy's partial-body marker dropped; the body (from
/// `raw_body`, else `body`) with the `content-type` header as its type; the client's IP.
/// The request id stays empty: [`crate::gate::Arrival::take`] takes `x-request-id` (which
/// Envoy sets) or makes one, and removes the approval header.
pub fn request_from_check(check: &CheckRequest, opts: &FromCheck) -> Result<Checked, ExtAuthzError> {
    let attributes = check.attributes.as_ref();
    let http =
        attributes.and_then(|a| a.request.as_ref()).and_then(|r| r.http.as_ref()).ok_or(ExtAuthzError::NotHttp)?;
    let all = headers_of(http)?;
    let pseudo = |name: &str| all.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str());
    let or_pseudo = |field: &str, name: &str| if field.is_empty() { pseudo(name).to_owned() } else { field.to_owned() };

    let method = or_pseudo(&http.method, ":method").to_ascii_uppercase();
    if method.is_empty() {
        return Err(ExtAuthzError::MissingMethod);
    }
    let mut scheme = or_pseudo(&http.scheme, ":scheme").to_ascii_lowercase();
    if scheme.is_empty() {
        scheme = opts.default_scheme.to_ascii_lowercase();
    }
    let mut authority = or_pseudo(&http.host, ":authority");
    if authority.is_empty() {
        pseudo("host").clone_into(&mut authority);
    }
    let target = or_pseudo(&http.path, ":path");
    if target.is_empty() {
        return Err(ExtAuthzError::MissingPath);
    }
    let (raw_path, raw_query) = split_target(&target)?;
    let path = if raw_path.is_empty() { "/" } else { raw_path };
    let origin = if raw_query.is_empty() { path.to_owned() } else { format!("{path}?{raw_query}") };
    // Envoy forwards the path it has: one that is not canonical would reach the upstream in
    // another form than the policies judge, so it is refused.
    let canonical = require_canonical(&origin, &opts.target_rules)?;
    let sent_query = parse_raw_query(raw_query);

    if let Some(header) = METHOD_OVERRIDES.into_iter().find(|name| all.iter().any(|(n, _)| n == name)) {
        return Err(ExtAuthzError::MethodOverride { header });
    }
    let partial = all.iter().any(|(n, v)| n == PARTIAL_BODY_HEADER && v.trim().eq_ignore_ascii_case("true"));
    let buffered = all.iter().any(|(n, _)| n == PARTIAL_BODY_HEADER);
    let headers: Vec<(String, String)> =
        all.into_iter().filter(|(name, _)| !name.starts_with(':') && name != PARTIAL_BODY_HEADER).collect();
    let first = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.trim());

    let bytes: &[u8] = if !http.raw_body.is_empty() { &http.raw_body } else { http.body.as_bytes() };
    let body_seen = if !bytes.is_empty() {
        if partial || usize::try_from(http.size).is_ok_and(|size| size > bytes.len()) {
            BodySeen::Partial
        } else {
            BodySeen::Whole
        }
    } else if buffered
        || first("content-length") == Some("0")
        || (http.protocol.starts_with("HTTP/1")
            && first("content-length").is_none()
            && first("transfer-encoding").is_none())
    {
        // Envoy buffered an empty body, or the request says it has none.
        BodySeen::Absent
    } else {
        BodySeen::Unknown
    };
    let body = (!bytes.is_empty()).then(|| Body {
        content_type: first("content-type").map(str::to_owned),
        bytes: bytes.to_vec(),
        truncated: body_seen == BodySeen::Partial,
    });

    let client_address =
        attributes.and_then(|a| a.source.as_ref()).and_then(|peer| peer.address.as_ref()).and_then(|a| {
            match &a.address {
                Some(address::Address::SocketAddress(socket)) if !socket.address.is_empty() => {
                    Some(socket.address.clone())
                }
                _ => None,
            }
        });

    let request = Request {
        id: String::new(),
        method,
        authority: normalise_authority(&authority, &scheme),
        scheme,
        path: canonical.decoded_path().to_owned(),
        query: sent_query.iter().map(|p| (p.key.clone(), p.value.clone())).collect(),
        headers: headers.clone(),
        body,
        client_address,
        received_at_ms: opts.received_at_ms,
        ..Request::default()
    };
    let mut request = request;
    // A client's `X-Portcullis-*` is never judged, and never reaches the upstream: the
    // answer sets those headers from what was judged.
    request.headers.retain(|(name, _)| !name.starts_with(HOST_SET_PREFIX));
    Ok(Checked { request, body: body_seen, sent_headers: headers, sent_query })
}

/// The headers Envoy sent, names lower-case: `header_map` in order when present, else the
/// `headers` map sorted by name.
fn headers_of(http: &HttpRequest) -> Result<Vec<(String, String)>, ExtAuthzError> {
    match &http.header_map {
        Some(map) if !map.headers.is_empty() => map
            .headers
            .iter()
            .map(|h| {
                let name = h.key.to_ascii_lowercase();
                let value = if h.raw_value.is_empty() {
                    h.value.clone()
                } else {
                    String::from_utf8(h.raw_value.clone())
                        .map_err(|_| ExtAuthzError::HeaderNotUtf8 { name: name.clone() })?
                };
                Ok((name, value))
            })
            .collect(),
        _ => {
            let mut headers: Vec<(String, String)> =
                http.headers.iter().map(|(n, v)| (n.to_ascii_lowercase(), v.clone())).collect();
            headers.sort();
            Ok(headers)
        }
    }
}

/// The raw path and raw query of a request target (origin-form or absolute), fragment
/// dropped.
fn split_target(target: &str) -> Result<(&str, &str), ExtAuthzError> {
    let target = target.split('#').next().unwrap_or(target);
    let origin = if target.starts_with('/') {
        target
    } else if let Some((_, rest)) = target.split_once("://") {
        match rest.find(['/', '?']) {
            Some(i) => &rest[i..],
            None => "",
        }
    } else {
        return Err(ExtAuthzError::BadPath { path: target.chars().take(64).collect() });
    };
    Ok(origin.split_once('?').unwrap_or((origin, "")))
}

fn parse_raw_query(query: &str) -> Vec<RawPair> {
    query
        .split('&')
        .filter(|segment| !segment.is_empty())
        .map(|segment| {
            let (raw_key, raw_value) = segment.split_once('=').unwrap_or((segment, ""));
            RawPair {
                raw_key: raw_key.to_owned(),
                key: percent_decode(raw_key, true),
                value: percent_decode(raw_value, true),
            }
        })
        .collect()
}

/// The answer to Envoy for the gate's admission of `checked.request`.
///
/// `Forward`: `OK`, with the header and query changes the gate made (see the module docs),
/// and `x-request-id` on the caller's response. When the gate changed (or may need to
/// change) the body, a refusal instead: 403 `redaction-unenforceable`.
/// `Refuse`: the refusal, as [`refusal_response`].
pub fn check_response(checked: &Checked, admission: &Admission) -> CheckResponse {
    match admission {
        Admission::Refuse(refusal) => refusal_response(refusal),
        Admission::Forward(ticket) => forward_response(checked, &ticket.request, &ticket.check),
    }
}

/// The answer for a request the gate forwards as `forwarded` after `check` (a ticket's
/// `request` and `check`): `OK` with the changes, or 403 `redaction-unenforceable`.
pub fn forward_response(checked: &Checked, forwarded: &Request, check: &RequestCheck) -> CheckResponse {
    match unenforceable(checked, forwarded, check) {
        Some(refusal) => refusal_response(&refusal),
        None => ok_response(checked, forwarded),
    }
}

/// A refusal when the check's body redactions cannot be carried out through Envoy.
fn unenforceable(checked: &Checked, forwarded: &Request, check: &RequestCheck) -> Option<Refusal> {
    let pointer = check.verdict.redactions().iter().find(|r| r.target.may_change_body()).map(|r| match &r.target {
        Target::JsonPointer(pointer) => pointer.clone(),
        other => other.to_string(),
    })?;
    let changed = check.applied.as_ref().is_some_and(|a| a.body_changed);
    let reason = if changed {
        format!(
            "a policy asked to redact `{pointer}` in the request body, and Envoy's ext_authz cannot \
             rewrite bodies; use the reverse proxy for this route"
        )
    } else if !checked.body.is_complete() {
        format!(
            "a policy asked to redact `{pointer}` in the request body, and Envoy did not send the \
             whole body, so Portcullis cannot tell whether it is there (configure the ext_authz \
             filter's `with_request_body`, or use the reverse proxy for this route)"
        )
    } else {
        return None;
    };
    Some(Refusal {
        status: 403,
        code: UNENFORCEABLE.into(),
        reason,
        policy: check
            .verdict
            .policies
            .iter()
            .find(|p| p.redactions.iter().any(|r| r.target.may_change_body()))
            .map(|p| p.policy.clone()),
        request_id: forwarded.id.clone(),
        approval: None,
        scope: None,
    })
}

fn ok_response(checked: &Checked, forwarded: &Request) -> CheckResponse {
    let mut ok = OkHttpResponse::default();

    // Headers: compare per name, in the order first seen.
    let mut names: Vec<&str> = Vec::new();
    for (name, _) in checked.sent_headers.iter().chain(&forwarded.headers) {
        if !names.contains(&name.as_str()) {
            names.push(name);
        }
    }
    for name in names {
        if name.starts_with(HOST_SET_PREFIX) {
            continue;
        }
        let before = values(&checked.sent_headers, name);
        let after = values(&forwarded.headers, name);
        if before == after {
            continue;
        }
        if after.is_empty() {
            ok.headers_to_remove.push(name.to_owned());
            continue;
        }
        for (i, value) in after.iter().enumerate() {
            ok.headers.push(header_option(name, value, i > 0));
        }
    }
    // Set from what was judged, replacing whatever the caller sent under these names.
    let principal = &forwarded.principal;
    let who = format!("{}:{}", principal.kind.as_str(), principal.id);
    ok.headers.push(header_option(PRINCIPAL_HEADER, &who, false));
    ok.headers.push(header_option(ON_BEHALF_OF_HEADER, principal.on_behalf_of.as_deref().unwrap_or(""), false));
    let forged: Vec<&str> = checked
        .sent_headers
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| name.starts_with(HOST_SET_PREFIX) && *name != PRINCIPAL_HEADER && *name != ON_BEHALF_OF_HEADER)
        .collect();
    for name in forged {
        if !ok.headers_to_remove.iter().any(|n| n == name) {
            ok.headers_to_remove.push(name.to_owned());
        }
    }
    // The caller's request had no id: give the upstream the one the audit log uses.
    if !forwarded.id.is_empty() && values(&forwarded.headers, REQUEST_ID_HEADER).is_empty() {
        ok.headers.push(header_option(REQUEST_ID_HEADER, &forwarded.id, false));
    }

    // Query: compare per decoded key; Envoy edits the raw query, so name keys as written.
    let mut keys: Vec<&str> = Vec::new();
    for pair in &checked.sent_query {
        if !keys.contains(&pair.key.as_str()) {
            keys.push(&pair.key);
        }
    }
    for key in keys {
        let before: Vec<&str> = checked.sent_query.iter().filter(|p| p.key == key).map(|p| p.value.as_str()).collect();
        let after = values(&forwarded.query, key);
        if before == after {
            continue;
        }
        let mut raw_keys: Vec<&str> = Vec::new();
        for pair in checked.sent_query.iter().filter(|p| p.key == key) {
            if !raw_keys.contains(&pair.raw_key.as_str()) {
                raw_keys.push(&pair.raw_key);
            }
        }
        match after.first() {
            // Envoy sets one value per key; the gate's replacement gives every repeat the
            // same value.
            Some(value) => ok.query_parameters_to_set.extend(
                raw_keys
                    .iter()
                    .map(|raw| QueryParameter { key: (*raw).to_owned(), value: percent_encode_query(value) }),
            ),
            None => ok.query_parameters_to_remove.extend(raw_keys.iter().map(|raw| (*raw).to_owned())),
        }
    }
    // Query pairs the gate added (it does not today), so nothing is silently lost.
    for (key, value) in &forwarded.query {
        if !checked.sent_query.iter().any(|p| &p.key == key) {
            ok.query_parameters_to_set
                .push(QueryParameter { key: percent_encode_query(key), value: percent_encode_query(value) });
        }
    }

    if !forwarded.id.is_empty() {
        ok.response_headers_to_add.push(header_option(REQUEST_ID_HEADER, &forwarded.id, false));
    }
    CheckResponse {
        status: Some(Status { code: GRPC_OK, message: String::new(), details: Vec::new() }),
        dynamic_metadata: None,
        http_response: Some(HttpResponse::OkResponse(ok)),
    }
}

/// Every value of `name` in `pairs`, in order.
fn values<'a>(pairs: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    pairs.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
}

/// A header to set (`append` false: replaces every value) or to append. Both the
/// deprecated `append` flag (which Envoy's gRPC client reads for request headers) and
/// `append_action` (which newer Envoys read where `append` is unset) say the same.
fn header_option(name: &str, value: &str, append: bool) -> HeaderValueOption {
    #[allow(deprecated)]
    HeaderValueOption {
        header: Some(HeaderValue { key: name.to_owned(), value: value.to_owned(), raw_value: Vec::new() }),
        append: Some(BoolValue { value: append }),
        append_action: if append {
            HeaderAppendAction::AppendIfExistsOrAdd as i32
        } else {
            HeaderAppendAction::OverwriteIfExistsOrAdd as i32
        },
        keep_empty_value: false,
    }
}

/// A refusal as Envoy's denied answer: `DeniedHttpResponse` with the refusal's status, its
/// problem body (`application/problem+json`) and headers; gRPC `UNAUTHENTICATED` for a 401,
/// `PERMISSION_DENIED` otherwise.
pub fn refusal_response(refusal: &Refusal) -> CheckResponse {
    let mut headers = vec![header_option("content-type", "application/problem+json", false)];
    headers.extend(
        refusal
            .headers()
            .iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(name, value)| header_option(name, value, false)),
    );
    let code = if refusal.status == 401 { GRPC_UNAUTHENTICATED } else { GRPC_PERMISSION_DENIED };
    CheckResponse {
        status: Some(Status { code, message: format!("{}: {}", refusal.code, refusal.reason), details: Vec::new() }),
        dynamic_metadata: None,
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus { code: i32::from(refusal.status) }),
            headers,
            body: String::from_utf8_lossy(&refusal.problem_body()).into_owned(),
        })),
    }
}

/// The answer to a `CheckRequest` that could not be normalised: 400 `bad-request`, with the
/// caller's `x-request-id` when it sent one. Never an allow.
pub fn bad_request(check: &CheckRequest, error: &ExtAuthzError) -> CheckResponse {
    let request_id = check
        .attributes
        .as_ref()
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref())
        .and_then(|http| {
            let from_map = http.headers.get(REQUEST_ID_HEADER).cloned();
            from_map.or_else(|| {
                let map = http.header_map.as_ref()?;
                let h = map.headers.iter().find(|h| h.key.eq_ignore_ascii_case(REQUEST_ID_HEADER))?;
                Some(if h.raw_value.is_empty() {
                    h.value.clone()
                } else {
                    String::from_utf8_lossy(&h.raw_value).into_owned()
                })
            })
        })
        .map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or_default();
    refusal_response(&Refusal {
        status: 400,
        code: "bad-request".into(),
        reason: error.to_string(),
        policy: None,
        request_id,
        approval: None,
        scope: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{Action, Decision, Redaction};
    use crate::exchange::Principal;
    use crate::gate::{ApprovalNotice, RequestCheck};
    use crate::redact::apply_to_request;
    use crate::verdict::{Phase, Verdict};
    use envoy_types::pb::envoy::config::core::v3::{Address, HeaderMap, SocketAddress};
    use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::{Peer, Request as AttrRequest};
    use serde_json::Value;
    use std::collections::HashMap;

    fn header_map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
    }

    fn check(http: HttpRequest) -> CheckRequest {
        CheckRequest {
            attributes: Some(AttributeContext {
                source: Some(Peer {
                    address: Some(Address {
                        address: Some(address::Address::SocketAddress(SocketAddress {
                            address: "10.1.2.3".into(),
                            ..SocketAddress::default()
                        })),
                    }),
                    ..Peer::default()
                }),
                request: Some(AttrRequest { time: None, http: Some(http) }),
                ..AttributeContext::default()
            }),
        }
    }

    fn http(method: &str, host: &str, path: &str, headers: &[(&str, &str)]) -> HttpRequest {
        HttpRequest {
            id: "12345".into(),
            method: method.into(),
            host: host.into(),
            path: path.into(),
            scheme: "https".into(),
            protocol: "HTTP/1.1".into(),
            headers: header_map(headers),
            ..HttpRequest::default()
        }
    }

    fn convert(http: HttpRequest) -> Checked {
        request_from_check(&check(http), &FromCheck::default()).expect("converts")
    }

    /// The answer when the gate forwards `checked.request` with `redactions` applied (and
    /// the approval header taken, as `Arrival::take` does).
    fn forward(checked: &Checked, redactions: Vec<Redaction>) -> CheckResponse {
        let mut request = checked.request.clone();
        request.headers.retain(|(n, _)| n != "portcullis-approval");
        request.id = "req-1".into();
        let verdict = verdict(Decision::Redact { redactions: redactions.clone() });
        let applied = apply_to_request(&mut request, &redactions);
        let (applied, redaction_error) = match applied {
            Ok(applied) => (Some(applied), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let check = RequestCheck { verdict, applied, redaction_error };
        forward_response(checked, &request, &check)
    }

    fn verdict(decision: Decision) -> Verdict {
        Verdict { phase: Phase::Request, route: None, decision, decided_by: None, policies: Vec::new(), elapsed_us: 0 }
    }

    fn ok(response: &CheckResponse) -> &OkHttpResponse {
        assert_eq!(response.status.as_ref().map(|s| s.code), Some(GRPC_OK), "{response:?}");
        match &response.http_response {
            Some(HttpResponse::OkResponse(ok)) => ok,
            other => panic!("expected an OK response, got {other:?}"),
        }
    }

    fn denied(response: &CheckResponse) -> (i32, u16, Value, Vec<(String, String)>) {
        let code = response.status.as_ref().map(|s| s.code).unwrap_or_default();
        match &response.http_response {
            Some(HttpResponse::DeniedResponse(denied)) => {
                let status = denied.status.as_ref().map(|s| s.code).unwrap_or_default() as u16;
                let body: Value = serde_json::from_str(&denied.body).expect("problem body is JSON");
                let headers = denied
                    .headers
                    .iter()
                    .filter_map(|h| h.header.as_ref())
                    .map(|h| (h.key.clone(), h.value.clone()))
                    .collect();
                (code, status, body, headers)
            }
            other => panic!("expected a denied response, got {other:?}"),
        }
    }

    /// The headers the answer sets, without the `X-Portcullis-*` ones every answer sets
    /// (checked in `host_set_headers_come_from_the_judgement_and_overrides_are_refused`).
    fn set_headers(ok: &OkHttpResponse) -> Vec<(String, String, bool)> {
        #[allow(deprecated)]
        ok.headers
            .iter()
            .filter(|o| o.header.as_ref().is_none_or(|h| !h.key.starts_with("x-portcullis-")))
            .map(|o| {
                let h = o.header.clone().unwrap_or_default();
                (h.key, h.value, o.append.as_ref().is_some_and(|a| a.value))
            })
            .collect()
    }

    fn remove(target: Target) -> Redaction {
        Redaction { target, action: Action::Remove }
    }

    fn replace(target: Target, text: &str) -> Redaction {
        Redaction { target, action: Action::Replace(text.into()) }
    }

    #[test]
    fn the_path_carries_the_query_which_is_split_and_decoded() {
        let checked = convert(http("get", "API.example.com:443", "/invoices/a%20b?status=open&tag=x+y&flag#frag", &[]));
        let req = &checked.request;
        assert_eq!(req.method, "GET");
        assert_eq!(req.scheme, "https");
        assert_eq!(req.authority, "API.example.com", "default port dropped");
        assert_eq!(req.host(), "api.example.com");
        assert_eq!(req.path, "/invoices/a b");
        assert_eq!(
            req.query,
            [("status", "open"), ("tag", "x y"), ("flag", "")].map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert_eq!(req.client_address.as_deref(), Some("10.1.2.3"));
        assert_eq!(req.id, "", "the request id is left to Arrival::take");
        assert_eq!(req.body, None);
        assert_eq!(checked.body, BodySeen::Absent, "HTTP/1.1 without content-length has no body");
    }

    #[test]
    fn an_absolute_target_and_a_bare_path_are_accepted_and_junk_is_refused() {
        let checked = convert(http("GET", "a.test", "https://a.test/x?y=1", &[]));
        assert_eq!((checked.request.path.as_str(), checked.request.query.len()), ("/x", 1));
        let checked = convert(http("GET", "a.test", "https://a.test?y=1", &[]));
        assert_eq!(checked.request.path, "/");
        let err = request_from_check(&check(http("OPTIONS", "a.test", "*", &[])), &FromCheck::default()).unwrap_err();
        assert_eq!(err, ExtAuthzError::BadPath { path: "*".into() });
    }

    /// A client's `X-Portcullis-*` is neither judged nor passed on: the answer sets the
    /// principal headers from what was judged and removes the others; a method override is
    /// refused.
    #[test]
    fn host_set_headers_come_from_the_judgement_and_overrides_are_refused() {
        let checked = convert(http(
            "GET",
            "a.test",
            "/x",
            &[("x-portcullis-principal", "user:admin"), ("x-portcullis-extra", "1"), ("x-keep", "1")],
        ));
        assert!(checked.request.headers.iter().all(|(n, _)| !n.starts_with("x-portcullis-")));
        let answer = forward(&checked, Vec::new());
        let Some(HttpResponse::OkResponse(ok)) = &answer.http_response else { panic!("{answer:?}") };
        let set: Vec<(&str, &str)> =
            ok.headers.iter().filter_map(|h| h.header.as_ref()).map(|h| (h.key.as_str(), h.value.as_str())).collect();
        assert!(set.contains(&("x-portcullis-principal", "anonymous:")), "{set:?}");
        assert!(set.contains(&("x-portcullis-on-behalf-of", "")), "{set:?}");
        assert_eq!(ok.headers_to_remove, ["x-portcullis-extra"]);
        let err = request_from_check(
            &check(http("POST", "a.test", "/x", &[("x-http-method-override", "DELETE")])),
            &FromCheck::default(),
        );
        assert_eq!(err.unwrap_err(), ExtAuthzError::MethodOverride { header: "x-http-method-override" });
    }

    /// Envoy forwards the path it has: a path that is not canonical is refused, not judged
    /// in a form the upstream will not get.
    #[test]
    fn a_path_that_is_not_canonical_is_refused() {
        for (path, error) in [
            ("/public/../admin/users", TargetError::NotCanonical),
            ("/public/%2e%2e/admin/users", TargetError::NotCanonical),
            ("/public/..%2fadmin/users", TargetError::EncodedSlash),
            ("/public/..;/admin/users", TargetError::PathParameters),
            ("/public//admin", TargetError::RepeatedSlash),
            ("https://a.test/public/../admin", TargetError::NotCanonical),
        ] {
            let err = request_from_check(&check(http("GET", "a.test", path, &[])), &FromCheck::default()).unwrap_err();
            assert_eq!(err, ExtAuthzError::Target(error), "{path}");
        }
    }

    #[test]
    fn pseudo_headers_are_dropped_and_stand_in_for_missing_fields() {
        let headers = [
            (":authority", "api.test:8443"),
            (":path", "/a?b=1"),
            (":method", "post"),
            (":scheme", "http"),
            ("X-Tag", "1"),
            ("authorization", "Bearer t"),
        ];
        let mut bare = http("", "", "", &headers);
        bare.scheme.clear();
        let checked = convert(bare);
        let req = &checked.request;
        assert_eq!((req.method.as_str(), req.scheme.as_str()), ("POST", "http"));
        assert_eq!((req.authority.as_str(), req.path.as_str()), ("api.test:8443", "/a"));
        assert_eq!(req.query, [("b".to_owned(), "1".to_owned())]);
        assert!(req.headers.iter().all(|(n, _)| !n.starts_with(':')), "{:?}", req.headers);
        assert_eq!(req.header("x-tag"), Some("1"), "names are lower-cased");
        assert_eq!(req.headers.len(), 2);
    }

    #[test]
    fn raw_header_map_keeps_order_and_repeats_and_refuses_non_utf8() {
        let mut h = http("GET", "a.test", "/", &[]);
        let entry = |k: &str, v: &[u8]| HeaderValue { key: k.into(), value: String::new(), raw_value: v.to_vec() };
        h.header_map = Some(HeaderMap {
            headers: vec![entry(":path", b"/"), entry("x-b", b"2"), entry("X-A", b"1"), entry("x-b", b"3")],
        });
        let checked = convert(h.clone());
        assert_eq!(
            checked.request.headers,
            [("x-b", "2"), ("x-a", "1"), ("x-b", "3")].map(|(n, v)| (n.to_owned(), v.to_owned()))
        );
        h.header_map.as_mut().unwrap().headers.push(entry("x-role", b"adm\xffin"));
        let err = request_from_check(&check(h), &FromCheck::default()).unwrap_err();
        assert_eq!(err, ExtAuthzError::HeaderNotUtf8 { name: "x-role".into() });
        assert!(!err.to_string().contains("adm"), "the value is never repeated");
    }

    #[test]
    fn a_check_without_http_attributes_is_a_clear_error() {
        let err = request_from_check(&CheckRequest::default(), &FromCheck::default()).unwrap_err();
        assert_eq!(err, ExtAuthzError::NotHttp);
        assert!(err.to_string().contains("attributes.request.http"), "{err}");
        let answer = bad_request(&CheckRequest::default(), &err);
        let (code, status, body, headers) = denied(&answer);
        assert_eq!((code, status), (GRPC_PERMISSION_DENIED, 400));
        assert_eq!(body["code"], "bad-request");
        assert!(headers.contains(&("content-type".into(), "application/problem+json".into())));
        assert!(!headers.iter().any(|(n, _)| n == "x-request-id"), "no empty request id header");
        let missing = request_from_check(&check(http("GET", "a.test", "", &[])), &FromCheck::default());
        assert_eq!(missing.unwrap_err(), ExtAuthzError::MissingPath);
        let missing = request_from_check(&check(http("", "a.test", "/", &[])), &FromCheck::default());
        assert_eq!(missing.unwrap_err(), ExtAuthzError::MissingMethod);
    }

    #[test]
    fn the_body_comes_from_raw_body_or_body_with_its_content_type() {
        let mut h = http("POST", "a.test", "/pay", &[("content-type", "application/json"), ("content-length", "12")]);
        h.body = r#"{"amount":5}"#.into();
        h.size = 12;
        h.headers.insert(PARTIAL_BODY_HEADER.into(), "false".into());
        let checked = convert(h.clone());
        let body = checked.request.body.clone().expect("a body");
        assert_eq!(body.bytes, br#"{"amount":5}"#);
        assert_eq!(body.content_type.as_deref(), Some("application/json"));
        assert!(!body.truncated);
        assert_eq!(checked.body, BodySeen::Whole);
        assert!(checked.request.header(PARTIAL_BODY_HEADER).is_none(), "Envoy's marker is not a request header");

        h.raw_body = vec![0, 159, 146, 150];
        h.body.clear();
        h.headers.insert(PARTIAL_BODY_HEADER.into(), "true".into());
        let checked = convert(h);
        let body = checked.request.body.clone().expect("a body");
        assert_eq!(body.bytes, [0, 159, 146, 150]);
        assert!(body.truncated, "Envoy cut it");
        assert_eq!(checked.body, BodySeen::Partial);

        let unknown = convert(http("POST", "a.test", "/pay", &[("content-length", "12")]));
        assert_eq!((unknown.request.body.clone(), unknown.body), (None, BodySeen::Unknown));
        let mut h2 = http("GET", "a.test", "/", &[]);
        h2.protocol = "HTTP/2".into();
        assert_eq!(convert(h2).body, BodySeen::Unknown, "an HTTP/2 request may have a body without a length");
    }

    #[test]
    fn allow_answers_ok_with_the_request_id_for_the_caller() {
        let checked = convert(http("GET", "a.test", "/a?x=1", &[("x-request-id", "req-1")]));
        let answer = forward(&checked, vec![]);
        let ok = ok(&answer);
        assert!(set_headers(ok).is_empty() && ok.headers_to_remove.is_empty(), "{ok:?}");
        assert!(ok.query_parameters_to_set.is_empty() && ok.query_parameters_to_remove.is_empty());
        let added: Vec<_> = ok.response_headers_to_add.iter().filter_map(|o| o.header.clone()).collect();
        assert_eq!(added, [HeaderValue { key: "x-request-id".into(), value: "req-1".into(), raw_value: vec![] }]);
    }

    #[test]
    fn the_upstream_gets_the_request_id_when_the_caller_sent_none() {
        let checked = convert(http("GET", "a.test", "/", &[]));
        let answer = forward(&checked, vec![]);
        assert_eq!(set_headers(ok(&answer)), [("x-request-id".into(), "req-1".into(), false)]);
    }

    #[test]
    fn header_redactions_become_removals_and_overwrites() {
        let checked = convert(http(
            "GET",
            "a.test",
            "/",
            &[("x-request-id", "req-1"), ("x-api-key", "k"), ("x-user", "ada"), ("portcullis-approval", "apr_1")],
        ));
        let answer = forward(
            &checked,
            vec![
                remove(Target::Header("X-API-Key".into())),
                replace(Target::Header("x-user".into()), "***"),
                remove(Target::Header("x-absent".into())),
            ],
        );
        let ok = ok(&answer);
        let mut removed = ok.headers_to_remove.clone();
        removed.sort();
        assert_eq!(removed, ["portcullis-approval", "x-api-key"], "the approval header never reaches the upstream");
        assert_eq!(set_headers(ok), [("x-user".into(), "***".into(), false)]);
        #[allow(deprecated)]
        let option = &ok.headers[0];
        assert_eq!(option.append_action, HeaderAppendAction::OverwriteIfExistsOrAdd as i32);
    }

    #[test]
    fn repeated_headers_are_replaced_by_a_set_then_appends() {
        let mut h = http("GET", "a.test", "/", &[]);
        let entry = |k: &str, v: &str| HeaderValue { key: k.into(), value: v.into(), raw_value: vec![] };
        h.header_map = Some(HeaderMap {
            headers: vec![entry("x-request-id", "req-1"), entry("cookie", "a=1"), entry("cookie", "b=2")],
        });
        let checked = convert(h);
        let answer = forward(&checked, vec![replace(Target::Header("cookie".into()), "x")]);
        assert_eq!(
            set_headers(ok(&answer)),
            [("cookie".into(), "x".into(), false), ("cookie".into(), "x".into(), true)]
        );
    }

    #[test]
    fn query_redactions_name_keys_as_envoy_sees_them() {
        let checked = convert(http(
            "GET",
            "a.test",
            "/s?token=t1&page=2&a%20b=1&token=t2&card=4111",
            &[("x-request-id", "req-1")],
        ));
        let answer = forward(
            &checked,
            vec![
                remove(Target::Query("token".into())),
                replace(Target::Query("a b".into()), "x&y"),
                replace(Target::Query("card".into()), "****"),
                remove(Target::Query("absent".into())),
            ],
        );
        let ok = ok(&answer);
        assert_eq!(ok.query_parameters_to_remove, ["token"]);
        let set: Vec<_> = ok.query_parameters_to_set.iter().map(|q| (q.key.as_str(), q.value.as_str())).collect();
        assert_eq!(set, [("a%20b", "x%26y"), ("card", "%2A%2A%2A%2A")]);
        assert!(set_headers(ok).is_empty() && ok.headers_to_remove.is_empty());
    }

    #[test]
    fn a_json_redaction_that_changes_the_body_is_refused_as_unenforceable() {
        let mut h = http(
            "POST",
            "x.partner.example",
            "/share",
            &[("content-type", "application/json"), ("x-request-id", "req-1")],
        );
        h.body = r#"{"email":"ada@example.com","n":1}"#.into();
        let checked = convert(h);
        let answer = forward(&checked, vec![replace(Target::JsonPointer("/email".into()), "***")]);
        let (code, status, body, headers) = denied(&answer);
        assert_eq!((code, status), (GRPC_PERMISSION_DENIED, 403));
        assert_eq!(body["code"], UNENFORCEABLE);
        assert!(body["detail"].as_str().unwrap().contains("/email"), "{body}");
        assert!(headers.contains(&("x-request-id".into(), "req-1".into())));
    }

    #[test]
    fn a_json_redaction_of_an_unseen_body_is_refused_and_of_a_known_one_that_lacks_it_allowed() {
        let unseen = convert(http("POST", "x.partner.example", "/share", &[("content-length", "40")]));
        let answer = forward(&unseen, vec![remove(Target::JsonPointer("/email".into()))]);
        let (_, status, body, _) = denied(&answer);
        assert_eq!((status, body["code"].as_str()), (403, Some(UNENFORCEABLE)));
        assert!(body["detail"].as_str().unwrap().contains("with_request_body"), "{body}");

        let none = convert(http("GET", "x.partner.example", "/share", &[]));
        let answer = forward(&none, vec![remove(Target::JsonPointer("/email".into()))]);
        ok(&answer);

        let mut h = http("POST", "x.partner.example", "/share", &[("content-type", "application/json")]);
        h.body = r#"{"n":1}"#.into();
        let without = convert(h);
        let answer = forward(&without, vec![remove(Target::JsonPointer("/email".into()))]);
        ok(&answer);
    }

    fn refusal(status: u16, code: &str) -> Refusal {
        Refusal {
            status,
            code: code.into(),
            reason: "because".into(),
            policy: Some("scopes".into()),
            request_id: "req-9".into(),
            approval: None,
            scope: None,
        }
    }

    #[test]
    fn refusals_keep_their_status_body_and_headers() {
        let (code, status, body, headers) = denied(&refusal_response(&refusal(403, "missing-scope")));
        assert_eq!((code, status), (GRPC_PERMISSION_DENIED, 403));
        assert_eq!((body["code"].as_str(), body["policy"].as_str()), (Some("missing-scope"), Some("scopes")));
        assert_eq!(body["request_id"], "req-9");
        assert_eq!(headers[0], ("content-type".into(), "application/problem+json".into()));
        assert!(headers.contains(&("x-request-id".into(), "req-9".into())));

        let (code, status, _, headers) = denied(&refusal_response(&refusal(401, "unauthenticated")));
        assert_eq!((code, status), (GRPC_UNAUTHENTICATED, 401));
        assert!(headers.iter().any(|(n, _)| n == "www-authenticate"));

        let (code, status, _, _) = denied(&refusal_response(&refusal(429, "rate-limited")));
        assert_eq!((code, status), (GRPC_PERMISSION_DENIED, 429));
        let (_, status, _, _) = denied(&refusal_response(&refusal(503, "approval-unavailable")));
        assert_eq!(status, 503);
    }

    #[test]
    fn approval_required_carries_the_approval_id() {
        let mut r = refusal(403, "approval-required");
        r.approval = Some(ApprovalNotice { id: "apr_7".into(), approver_group: "finance".into(), expires_ms: 0 });
        let checked = convert(http("POST", "a.test", "/invoices", &[]));
        let (code, status, body, headers) = denied(&check_response(&checked, &Admission::Refuse(r)));
        assert_eq!((code, status), (GRPC_PERMISSION_DENIED, 403));
        assert_eq!(body["approval"]["id"], "apr_7");
        assert!(headers.contains(&("portcullis-approval".into(), "apr_7".into())));
    }

    #[test]
    fn the_principal_is_not_part_of_the_conversion() {
        let checked = convert(http("GET", "a.test", "/", &[("authorization", "Bearer t")]));
        assert_eq!(checked.request.principal, Principal::default());
    }
}
