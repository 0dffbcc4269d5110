//! Host-side bindings for the `portcullis:policy` world, generated from `wit/`, and the
//! conversions between them and the plain types in [`crate::exchange`] and
//! [`crate::decision`].

// Borrowing: what the host passes into a policy (request, response, body) borrows from the
// host's own exchange instead of being cloned string by string for every evaluation; only
// the lists are rebuilt, as slices of borrowed pairs (see `Lists`).
wasmtime::component::bindgen!({
    path: "../wit",
    world: "policy",
    ownership: Borrowing { duplicate_if_necessary: false },
});

use crate::decision;
use crate::exchange;
use portcullis::policy::types as wit;

impl From<exchange::PrincipalKind> for wit::PrincipalKind {
    fn from(kind: exchange::PrincipalKind) -> Self {
        match kind {
            exchange::PrincipalKind::Anonymous => wit::PrincipalKind::Anonymous,
            exchange::PrincipalKind::User => wit::PrincipalKind::User,
            exchange::PrincipalKind::Service => wit::PrincipalKind::Service,
            exchange::PrincipalKind::Agent => wit::PrincipalKind::Agent,
        }
    }
}

/// An exchange's lists (the request's query, headers, scopes and claims, and the response's
/// headers) as slices of borrowed pairs, the shape the generated bindings take. Built once
/// per evaluation and shared by every policy on the route: one allocation per list instead
/// of one per string.
pub(crate) struct Lists<'a> {
    query: Vec<(&'a str, &'a str)>,
    headers: Vec<(&'a str, &'a str)>,
    scopes: Vec<&'a str>,
    claims: Vec<(&'a str, &'a str)>,
    response_headers: Vec<(&'a str, &'a str)>,
}

impl<'a> Lists<'a> {
    /// The lists of `r` and, in the response phase, of its `response`.
    pub(crate) fn new(r: &'a exchange::Request, response: Option<&'a exchange::Response>) -> Self {
        Lists {
            query: pairs(&r.query),
            headers: pairs(&r.headers),
            scopes: r.principal.scopes.iter().map(String::as_str).collect(),
            claims: pairs(&r.principal.claims),
            response_headers: response.map(|resp| pairs(&resp.headers)).unwrap_or_default(),
        }
    }
}

fn pairs(list: &[(String, String)]) -> Vec<(&str, &str)> {
    list.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// The body as a policy sees it: cut at `cap` bytes, borrowed, never copied on the host.
fn body(b: &exchange::Body, cap: usize) -> wit::Body<'_> {
    wit::Body {
        content_type: b.content_type.as_deref(),
        bytes: &b.bytes[..b.bytes.len().min(cap)],
        truncated: b.truncated || b.bytes.len() > cap,
    }
}

/// The request as a policy sees it, borrowing from `r` and `lists`; with the body (cut at
/// the cap) only when `body_cap` is given, i.e. when the policy asked for it.
pub(crate) fn request<'a>(r: &'a exchange::Request, lists: &'a Lists<'a>, body_cap: Option<usize>) -> wit::Request<'a> {
    let p = &r.principal;
    wit::Request {
        id: &r.id,
        method: &r.method,
        scheme: &r.scheme,
        authority: &r.authority,
        path: &r.path,
        query: &lists.query,
        headers: &lists.headers,
        body: match (body_cap, &r.body) {
            (Some(cap), Some(b)) => Some(body(b, cap)),
            _ => None,
        },
        principal: wit::Principal {
            kind: p.kind.into(),
            id: &p.id,
            scopes: &lists.scopes,
            claims: &lists.claims,
            on_behalf_of: p.on_behalf_of.as_deref(),
            credential_id: p.credential_id.as_deref(),
        },
        operation: r.operation.as_deref(),
        client_address: r.client_address.as_deref(),
        received_at_ms: r.received_at_ms,
    }
}

/// The response as a policy sees it, borrowing from `r` and `lists` (built with this
/// response); the body only when `body_cap` is given.
pub(crate) fn response<'a>(
    r: &'a exchange::Response,
    lists: &'a Lists<'a>,
    body_cap: Option<usize>,
) -> wit::Response<'a> {
    wit::Response {
        status: r.status,
        headers: &lists.response_headers,
        body: match (body_cap, &r.body) {
            (Some(cap), Some(b)) => Some(body(b, cap)),
            _ => None,
        },
    }
}

/// Converts a policy's outcome into the host's types. Validation (sizes, status ranges,
/// pointer syntax) happens in [`crate::policy`], which knows the limits.
pub(crate) fn outcome(o: wit::Outcome) -> decision::Outcome {
    let decision = match o.decision {
        wit::Decision::Allow => decision::Decision::Allow,
        wit::Decision::Deny(d) => {
            decision::Decision::Deny(decision::Denial { status: d.status, code: d.code, reason: d.reason })
        }
        wit::Decision::Redact(list) => decision::Decision::Redact {
            redactions: list
                .into_iter()
                .map(|r| decision::Redaction {
                    target: match r.target {
                        wit::Target::Header(h) => decision::Target::Header(h),
                        wit::Target::Query(q) => decision::Target::Query(q),
                        wit::Target::JsonPointer(p) => decision::Target::JsonPointer(p),
                    },
                    action: match r.action {
                        wit::Action::Remove => decision::Action::Remove,
                        wit::Action::Replace(s) => decision::Action::Replace(s),
                    },
                })
                .collect(),
        },
        wit::Decision::RequireApproval(a) => decision::Decision::RequireApproval(decision::Approval {
            reason: a.reason,
            approver_group: a.approver_group,
            ttl_seconds: a.ttl_seconds,
        }),
    };
    decision::Outcome { decision, labels: o.labels }
}
