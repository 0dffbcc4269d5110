//! Host-side bindings for the `portcullis:policy` world, generated from `wit/`, and the
//! conversions between them and the plain types in [`crate::exchange`] and
//! [`crate::decision`].
//!
//! Two versions of the contract are bound: 0.2 (`wit/policy.wit`, the current one) and 0.1
//! (`wit/v0.1/policy.wit`, kept verbatim). Everything in the host speaks 0.2's types; a
//! component built against 0.1 is called through its own bindings and its values are
//! converted at this boundary (0.2 is a superset of 0.1, so nothing is lost), which keeps
//! such components loading and deciding exactly as before. [`Policy`] and [`PolicyPre`]
//! are the one place that says which bindings a component uses; `crate::contract` decides
//! which version a component speaks.

/// The bindings of the current contract, `portcullis:policy@0.2.0`.
pub(crate) mod v0_2 {
    // Borrowing: what the host passes into a policy (request, response, body) borrows from
    // the host's own exchange instead of being cloned string by string for every
    // evaluation; only the lists are rebuilt, as slices of borrowed pairs (see `Lists`).
    wasmtime::component::bindgen!({
        path: "../wit/policy.wit",
        world: "policy",
        ownership: Borrowing { duplicate_if_necessary: false },
    });
}

/// The bindings of `portcullis:policy@0.1.0`, for components built before 0.2.
pub(crate) mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1/policy.wit",
        world: "policy",
        ownership: Borrowing { duplicate_if_necessary: false },
    });
}

use wasmtime::AsContextMut;
use wasmtime::component::{Instance, InstancePre};

use crate::capability::HostState;
use crate::contract::Contract;
use crate::decision;
use crate::exchange;
use portcullis::policy::types as wit;
use v0_1::portcullis::policy as old_if;
use v0_1::portcullis::policy::types as old;
pub(crate) use v0_2::portcullis;

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
                        wit::Target::JsonName(n) => decision::Target::JsonName(n),
                        wit::Target::Detected(d) => decision::Target::Detected(d),
                    },
                    action: match r.action {
                        wit::Action::Remove => decision::Action::Remove,
                        wit::Action::Replace(s) => decision::Action::Replace(s),
                        wit::Action::Mask(m) => decision::Action::Mask(match m {
                            wit::Mask::KeepLast(n) => decision::Mask::KeepLast(n),
                            wit::Mask::KeepEmailDomain => decision::Mask::KeepEmailDomain,
                            wit::Mask::FixedLength(n) => decision::Mask::FixedLength(n),
                            wit::Mask::Pseudonym => decision::Mask::Pseudonym,
                        }),
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

impl wit::Target {
    /// The bytes of text this target carries (for the bound on what a policy returns).
    pub(crate) fn text_len(&self) -> usize {
        match self {
            wit::Target::Header(s)
            | wit::Target::Query(s)
            | wit::Target::JsonPointer(s)
            | wit::Target::JsonName(s)
            | wit::Target::Detected(s) => s.len(),
        }
    }
}

impl wit::Action {
    /// The bytes of text this action carries.
    pub(crate) fn text_len(&self) -> usize {
        match self {
            wit::Action::Replace(s) => s.len(),
            wit::Action::Remove | wit::Action::Mask(_) => 0,
        }
    }
}

// ---------------------------------------------------------------------------------------
// One component, either version
// ---------------------------------------------------------------------------------------

/// A component's exports, bound through the bindings of the contract it speaks.
pub(crate) enum Policy {
    /// Built against 0.1.x.
    V0_1(v0_1::Policy),
    /// Built against 0.2.x.
    V0_2(v0_2::Policy),
}

/// A linked, not yet instantiated component, of either version.
pub(crate) enum PolicyPre<T: 'static> {
    /// Built against 0.1.x.
    V0_1(v0_1::PolicyPre<T>),
    /// Built against 0.2.x.
    V0_2(v0_2::PolicyPre<T>),
}

impl<T: Send + 'static> PolicyPre<T> {
    /// Binds the exports of a linked component, by the contract its handler export names
    /// (checked before by [`crate::contract::check_component`]).
    pub(crate) fn new(pre: InstancePre<T>) -> wasmtime::Result<Self> {
        let engine = pre.component().engine().clone();
        match crate::contract::speaks(&engine, pre.component()) {
            Some(Contract::V0_1) => v0_1::PolicyPre::new(pre).map(PolicyPre::V0_1),
            _ => v0_2::PolicyPre::new(pre).map(PolicyPre::V0_2),
        }
    }

    /// A new instance in `store`.
    pub(crate) fn instantiate(&self, store: impl AsContextMut<Data = T>) -> wasmtime::Result<Policy> {
        match self {
            PolicyPre::V0_1(pre) => pre.instantiate(store).map(Policy::V0_1),
            PolicyPre::V0_2(pre) => pre.instantiate(store).map(Policy::V0_2),
        }
    }

    /// The contract version the component speaks.
    pub(crate) fn contract(&self) -> Contract {
        match self {
            PolicyPre::V0_1(_) => Contract::V0_1,
            PolicyPre::V0_2(_) => Contract::V0_2,
        }
    }
}

impl Policy {
    /// Binds an instance's exports: those of 0.2 if it has them, else those of 0.1.
    pub(crate) fn new(mut store: impl AsContextMut, instance: &Instance) -> wasmtime::Result<Self> {
        match v0_2::Policy::new(&mut store, instance) {
            Ok(policy) => Ok(Policy::V0_2(policy)),
            Err(error) => v0_1::Policy::new(&mut store, instance).map(Policy::V0_1).map_err(|_| error),
        }
    }

    /// The handler export (named as the generated bindings name it, so callers read the
    /// same for either version).
    pub(crate) fn portcullis_policy_handler(&self) -> Handler<'_> {
        match self {
            Policy::V0_1(p) => Handler::V0_1(p.portcullis_policy_handler()),
            Policy::V0_2(p) => Handler::V0_2(p.portcullis_policy_handler()),
        }
    }
}

/// The `handler` export of either version; every call takes and returns 0.2's types.
pub(crate) enum Handler<'a> {
    V0_1(&'a v0_1::exports::portcullis::policy::handler::Guest),
    V0_2(&'a v0_2::exports::portcullis::policy::handler::Guest),
}

impl Handler<'_> {
    /// Calls `metadata`.
    pub(crate) fn call_metadata<S: AsContextMut>(&self, store: S) -> wasmtime::Result<wit::PolicyMetadata>
    where
        S::Data: Send,
    {
        match self {
            Handler::V0_2(h) => h.call_metadata(store),
            Handler::V0_1(h) => h.call_metadata(store).map(|m| {
                let mut phases = wit::Phases::empty();
                if m.phases.contains(old::Phases::REQUEST) {
                    phases |= wit::Phases::REQUEST;
                }
                if m.phases.contains(old::Phases::RESPONSE) {
                    phases |= wit::Phases::RESPONSE;
                }
                wit::PolicyMetadata {
                    name: m.name,
                    version: m.version,
                    phases,
                    needs_request_body: m.needs_request_body,
                    needs_response_body: m.needs_response_body,
                }
            }),
        }
    }

    /// Calls `init`.
    pub(crate) fn call_init<S: AsContextMut>(
        &self,
        store: S,
        settings: &str,
    ) -> wasmtime::Result<Result<(), wit::SettingsError>>
    where
        S::Data: Send,
    {
        match self {
            Handler::V0_2(h) => h.call_init(store, settings),
            Handler::V0_1(h) => h
                .call_init(store, settings)
                .map(|r| r.map_err(|e| wit::SettingsError { setting: e.setting, message: e.message })),
        }
    }

    /// Calls `on-request`.
    pub(crate) fn call_on_request<S: AsContextMut>(
        &self,
        store: S,
        request: wit::Request<'_>,
    ) -> wasmtime::Result<wit::Outcome>
    where
        S::Data: Send,
    {
        match self {
            Handler::V0_2(h) => h.call_on_request(store, request),
            Handler::V0_1(h) => h.call_on_request(store, old_request(request)).map(new_outcome),
        }
    }

    /// Calls `on-response`.
    pub(crate) fn call_on_response<S: AsContextMut>(
        &self,
        store: S,
        request: wit::Request<'_>,
        response: wit::Response<'_>,
    ) -> wasmtime::Result<wit::Outcome>
    where
        S::Data: Send,
    {
        match self {
            Handler::V0_2(h) => h.call_on_response(store, request, response),
            Handler::V0_1(h) => h
                .call_on_response(
                    store,
                    old_request(request),
                    old::Response {
                        status: response.status,
                        headers: response.headers,
                        body: response.body.map(old_body),
                    },
                )
                .map(new_outcome),
        }
    }
}

fn old_body(b: wit::Body<'_>) -> old::Body<'_> {
    old::Body { content_type: b.content_type, bytes: b.bytes, truncated: b.truncated }
}

/// A 0.2 request as 0.1 bindings take it: the same fields, still borrowed.
fn old_request(r: wit::Request<'_>) -> old::Request<'_> {
    let p = r.principal;
    old::Request {
        id: r.id,
        method: r.method,
        scheme: r.scheme,
        authority: r.authority,
        path: r.path,
        query: r.query,
        headers: r.headers,
        body: r.body.map(old_body),
        principal: old::Principal {
            kind: match p.kind {
                wit::PrincipalKind::Anonymous => old::PrincipalKind::Anonymous,
                wit::PrincipalKind::User => old::PrincipalKind::User,
                wit::PrincipalKind::Service => old::PrincipalKind::Service,
                wit::PrincipalKind::Agent => old::PrincipalKind::Agent,
            },
            id: p.id,
            scopes: p.scopes,
            claims: p.claims,
            on_behalf_of: p.on_behalf_of,
            credential_id: p.credential_id,
        },
        operation: r.operation,
        client_address: r.client_address,
        received_at_ms: r.received_at_ms,
    }
}

/// A 0.1 outcome in 0.2's types (0.1's decisions are a subset of 0.2's).
fn new_outcome(o: old::Outcome) -> wit::Outcome {
    let decision = match o.decision {
        old::Decision::Allow => wit::Decision::Allow,
        old::Decision::Deny(d) => wit::Decision::Deny(wit::Denial { status: d.status, code: d.code, reason: d.reason }),
        old::Decision::Redact(list) => wit::Decision::Redact(
            list.into_iter()
                .map(|r| wit::Redaction {
                    target: match r.target {
                        old::Target::Header(h) => wit::Target::Header(h),
                        old::Target::Query(q) => wit::Target::Query(q),
                        old::Target::JsonPointer(p) => wit::Target::JsonPointer(p),
                    },
                    action: match r.action {
                        old::Action::Remove => wit::Action::Remove,
                        old::Action::Replace(s) => wit::Action::Replace(s),
                    },
                })
                .collect(),
        ),
        old::Decision::RequireApproval(a) => wit::Decision::RequireApproval(wit::Approval {
            reason: a.reason,
            approver_group: a.approver_group,
            ttl_seconds: a.ttl_seconds,
        }),
    };
    wit::Outcome { decision, labels: o.labels }
}

/// Adds 0.1's interfaces (the same host functions as 0.2's, under 0.1's names) to a linker
/// that has 0.2's, for the capabilities in `imports`: a 0.1 component links against them.
pub(crate) fn link_v0_1(
    linker: &mut wasmtime::component::Linker<HostState>,
    imports: &[crate::capability::Capability],
) -> wasmtime::Result<()> {
    use crate::capability::Capability;
    use wasmtime::component::HasSelf;
    old_if::types::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    old_if::settings::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    for capability in imports {
        match capability {
            Capability::Log => old_if::log::add_to_linker::<_, HasSelf<_>>(linker, |s| s),
            Capability::Clock => old_if::clock::add_to_linker::<_, HasSelf<_>>(linker, |s| s),
            Capability::RateLimit => old_if::rate_limit::add_to_linker::<_, HasSelf<_>>(linker, |s| s),
            Capability::Data => old_if::data::add_to_linker::<_, HasSelf<_>>(linker, |s| s),
        }?;
    }
    Ok(())
}

// 0.1's host functions are 0.2's: each delegates, converting the few types they carry.

impl old_if::types::Host for HostState {}

impl old_if::settings::Host for HostState {
    fn get(&mut self) -> String {
        <HostState as portcullis::policy::settings::Host>::get(self)
    }
}

impl old_if::log::Host for HostState {
    fn write(&mut self, level: old_if::log::Level, message: String) {
        use old_if::log::Level as Old;
        use portcullis::policy::log::Level;
        let level = match level {
            Old::Trace => Level::Trace,
            Old::Debug => Level::Debug,
            Old::Info => Level::Info,
            Old::Warn => Level::Warn,
            Old::Error => Level::Error,
        };
        <HostState as portcullis::policy::log::Host>::write(self, level, message);
    }
}

impl old_if::clock::Host for HostState {
    fn now_ms(&mut self) -> u64 {
        <HostState as portcullis::policy::clock::Host>::now_ms(self)
    }
}

impl old_if::rate_limit::Host for HostState {
    fn take(&mut self, key: String, limit: u32, window_ms: u64) -> old_if::rate_limit::Taken {
        let t = <HostState as portcullis::policy::rate_limit::Host>::take(self, key, limit, window_ms);
        old_if::rate_limit::Taken { allowed: t.allowed, remaining: t.remaining, reset_after_ms: t.reset_after_ms }
    }
}

impl old_if::data::Host for HostState {
    fn contains(&mut self, set: String, key: String) -> bool {
        <HostState as portcullis::policy::data::Host>::contains(self, set, key)
    }

    fn get(&mut self, set: String, key: String) -> Option<String> {
        <HostState as portcullis::policy::data::Host>::get(self, set, key)
    }
}
