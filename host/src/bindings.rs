//! Host-side bindings for the `portcullis:policy` world, generated from `wit/`, and the
//! conversions between them and the plain types in [`crate::exchange`] and
//! [`crate::decision`].

wasmtime::component::bindgen!({
    path: "../wit",
    world: "policy",
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

fn principal(p: &exchange::Principal) -> wit::Principal {
    wit::Principal {
        kind: p.kind.into(),
        id: p.id.clone(),
        scopes: p.scopes.clone(),
        claims: p.claims.clone(),
        on_behalf_of: p.on_behalf_of.clone(),
        credential_id: p.credential_id.clone(),
    }
}

fn body(b: &exchange::Body, cap: usize) -> wit::Body {
    let truncated = b.truncated || b.bytes.len() > cap;
    wit::Body {
        content_type: b.content_type.clone(),
        bytes: b.bytes[..b.bytes.len().min(cap)].to_vec(),
        truncated,
    }
}

/// The request as a policy sees it, without a body. Built once per evaluation and shared
/// by every policy that does not ask for the body.
pub(crate) fn request(r: &exchange::Request) -> wit::Request {
    wit::Request {
        id: r.id.clone(),
        method: r.method.clone(),
        scheme: r.scheme.clone(),
        authority: r.authority.clone(),
        path: r.path.clone(),
        query: r.query.clone(),
        headers: r.headers.clone(),
        body: None,
        principal: principal(&r.principal),
        operation: r.operation.clone(),
        client_address: r.client_address.clone(),
        received_at_ms: r.received_at_ms,
    }
}

/// `base` with the body attached, cut at `cap` bytes.
pub(crate) fn with_request_body(base: &wit::Request, r: &exchange::Request, cap: usize) -> wit::Request {
    wit::Request { body: r.body.as_ref().map(|b| body(b, cap)), ..base.clone() }
}

/// The response as a policy sees it; the body only when `body_cap` is given.
pub(crate) fn response(r: &exchange::Response, body_cap: Option<usize>) -> wit::Response {
    wit::Response {
        status: r.status,
        headers: r.headers.clone(),
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
