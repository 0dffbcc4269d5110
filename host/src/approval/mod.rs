//! Pending approvals for require-approval decisions, and the store that keeps them.
//!
//! When the combined verdict says `require-approval`, the gate does not forward the request:
//! it stores a pending [`Approval`] bound to *this* request ([`request_digest`]) and *this*
//! caller, and answers with the approval's id. An approver (admin API or `portcullis
//! approvals`) approves or rejects it. The caller then sends the same request again with the
//! id, and the gate [redeems](ApprovalStore::redeem_all) it: allowed once, only for the same
//! request and caller, and only before the approval expires.
//!
//! When several policies ask different approver groups, there is one approval per group
//! and the retry must carry all of them: [`check_redemption`] lets a retry through only when
//! its approvals cover exactly the groups that asked, and the store then uses them all in
//! one atomic step (or none). Stores purge approvals [an hour](RETAIN_AFTER_EXPIRY_MS)
//! after they expire, at most [once a minute](PURGE_EVERY_MS), so they stay bounded.
//!
//! Two stores implement [`ApprovalStore`]: [`MemoryStore`] for embedders and tests (lost on
//! restart), and `SqliteStore` (cargo feature `sqlite`) for servers, so that pending approvals
//! survive a restart and the CLI can decide them while the server runs. Both apply the same
//! rules, which live in this module ([`Approval::state_at`] and the checks behind
//! `approve`, `reject` and `redeem`), so the stores only differ in how they keep records and
//! how they make a check-then-update atomic.
//!
//! Times are passed in (`now_ms`, ms since the Unix epoch) rather than read from the clock,
//! so callers decide one "now" per request and tests can move time forward.

pub mod event;
mod groups;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
pub mod request_state;
#[cfg(feature = "sqlite")]
mod sqlite;
pub mod watch;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::exchange::{Principal, Request};

pub use event::{ApprovalEvent, ApprovalEvents, EventKind, Fanout, MemoryEvents};
pub use groups::{ApproverGroups, GroupConfig, NotAllowed};
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::{POSTGRES_SCHEMA_VERSION, PostgresSettings, PostgresStore};
#[cfg(feature = "sqlite")]
pub use sqlite::{SCHEMA_VERSION, SqliteStore};
pub use watch::{DecisionWatch, Subscription};

// ---------------------------------------------------------------------------------------
// The request digest
// ---------------------------------------------------------------------------------------

/// Tags the encoding, so a future change of what the digest covers can never produce a
/// digest equal to one made under these rules. v1 sorted the query by name *and value*, so
/// `?to=alice&to=mallory` and `?to=mallory&to=alice` shared a digest; v2 keeps the order of
/// repeated names and binds the headers in [`BOUND_HEADERS`].
const DIGEST_DOMAIN: &[u8] = b"portcullis-approval-request/v2";

/// Headers that change what a request *does* without changing its method, path, query or
/// body bytes, so an approval binds them: the method-override headers that many frameworks
/// honour (an approved `POST` must not be redeemed as a `POST` that the backend runs as a
/// `DELETE`), and the headers that say how the body's bytes are to be read.
pub const BOUND_HEADERS: [&str; 5] =
    ["x-http-method-override", "x-http-method", "x-method-override", "content-type", "content-encoding"];

/// The SHA-256 (lower-case hex) of what an approval is bound to: the method (upper-cased),
/// the host (as [`Request::host`] gives it: lower-case, no port), the path, the query
/// parameters, the [`BOUND_HEADERS`] the request carries, and the body bytes.
///
/// Every part is length-prefixed (and the number of query parameters and of bound headers
/// is counted), so no two different requests share an encoding: path `/a` with query `b`
/// and path `/ab` with no query encode differently, as do `?a=bc` and `?ab=c`.
///
/// **The query keeps its order**, except that parameters are stably sorted by name:
/// `?b=2&a=1` and `?a=1&b=2` share a digest (clients and front doors reorder distinct
/// names, and no common backend gives that order a meaning), but `?pay_to=alice&pay_to=mallory`
/// and `?pay_to=mallory&pay_to=alice` do not: many backends take the first or the last of a
/// repeated name, so their order is part of the request's meaning.
///
/// **Most headers are deliberately not covered.** The retry that redeems an approval
/// necessarily differs in headers from the request that was held: it carries the approval
/// header, and usually fresh credentials (a renewed token), a new request id, new tracing
/// headers and a new date. The caller is bound by the principal check in
/// [`redeem`](ApprovalStore::redeem) instead of by its `Authorization` header. Only the
/// [`BOUND_HEADERS`] are covered (names compared without case, values trimmed, sorted by
/// name like the query): a retry that adds, drops or changes one of them is a different request. A policy
/// whose decision depends on another header should not rely on approval alone for it: the
/// retry is evaluated again, and only the require-approval decisions are waived.
///
/// A missing body and an empty body are the same. A body cut at a capture cap is marked as
/// such in the digest, but only the captured bytes are covered.
///
/// The scheme and port are not covered: the same host on another port or scheme is, for the
/// gate, the same upstream API.
pub fn request_digest(request: &Request) -> String {
    fn field(hasher: &mut Sha256, bytes: &[u8]) {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    }
    let mut hasher = Sha256::new();
    field(&mut hasher, DIGEST_DOMAIN);
    field(&mut hasher, request.method.to_ascii_uppercase().as_bytes());
    field(&mut hasher, request.host().as_bytes());
    field(&mut hasher, request.path.as_bytes());
    let mut query: Vec<&(String, String)> = request.query.iter().collect();
    // Stable: repeated names keep the order they were sent in.
    query.sort_by(|a, b| a.0.cmp(&b.0));
    hasher.update((query.len() as u64).to_be_bytes());
    for (name, value) in query {
        field(&mut hasher, name.as_bytes());
        field(&mut hasher, value.as_bytes());
    }
    let mut bound: Vec<(String, &str)> = request
        .headers
        .iter()
        .filter(|(name, _)| BOUND_HEADERS.iter().any(|b| name.trim().eq_ignore_ascii_case(b)))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim()))
        .collect();
    bound.sort_by(|a, b| a.0.cmp(&b.0));
    hasher.update((bound.len() as u64).to_be_bytes());
    for (name, value) in &bound {
        field(&mut hasher, name.as_bytes());
        field(&mut hasher, value.as_bytes());
    }
    let (bytes, truncated) = match &request.body {
        Some(body) => (body.bytes.as_slice(), body.truncated),
        None => (&[][..], false),
    };
    hasher.update([u8::from(truncated)]);
    field(&mut hasher, bytes);
    base16ct::lower::encode_string(&hasher.finalize())
}

// ---------------------------------------------------------------------------------------
// Approvals
// ---------------------------------------------------------------------------------------

/// Where an approval is in its life.
///
/// `Expired` is never stored: a pending or approved (not yet used) approval whose expiry has
/// passed is *shown* as expired ([`Approval::state_at`]), so expiry needs no sweeper and
/// every reader sees the same answer for the same `now_ms`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalState {
    /// Waiting for an approver.
    #[default]
    Pending,
    /// Approved; the caller may send the request again with the id, once.
    Approved,
    /// Refused by an approver.
    Rejected,
    /// Approved and redeemed: it allowed its one request.
    Used,
    /// Its time ran out before it was decided or used.
    Expired,
}

impl ApprovalState {
    /// Every state, in life order.
    pub const ALL: [ApprovalState; 5] = [
        ApprovalState::Pending,
        ApprovalState::Approved,
        ApprovalState::Rejected,
        ApprovalState::Used,
        ApprovalState::Expired,
    ];

    /// The state as written in JSON, the store and the CLI: `pending`, `approved`, …
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Rejected => "rejected",
            ApprovalState::Used => "used",
            ApprovalState::Expired => "expired",
        }
    }
}

impl fmt::Display for ApprovalState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ApprovalState {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        ApprovalState::ALL
            .into_iter()
            .find(|state| state.as_str().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| format!("unknown approval state `{text}`; use pending, approved, rejected, used or expired"))
    }
}

/// One request held for a human's decision, and what became of it.
///
/// This is also the JSON the admin API and `portcullis approvals --format json` show. It
/// carries no secret: the request is identified by its digest and described by its method,
/// host, path and operation (never its query), and its body is kept only as the policies
/// saw it *with the request's redactions applied*, capped at [`MAX_SHOWN_BODY`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// `apr_` and 26 characters of lower-case Crockford base32 (128 random bits): the
    /// caller's proof that an approver approved *its* request, so it must not be guessable.
    pub id: String,
    /// [`request_digest`] of the held request; the retry must have the same.
    pub digest: String,
    /// The caller's kind as written in JSON: `user`, `service`, `agent` or `anonymous`.
    pub principal_kind: String,
    /// The caller's id (empty when anonymous).
    pub principal_id: String,
    /// The user the caller acts for, if any; part of who the approval is for.
    pub on_behalf_of: Option<String>,
    /// The policy that required the approval.
    pub policy: String,
    /// The policy's reason, for the approver.
    pub reason: String,
    /// The approver group the policy named.
    pub group: String,
    /// What the approver sees of the request, e.g. `POST api.example.com /v1/invoices` (no
    /// query: it may hold personal data or secrets).
    pub request_line: String,
    /// When it was created, in ms since the Unix epoch.
    pub created_ms: u64,
    /// Until when it may be decided and used, in ms since the Unix epoch (exclusive).
    pub expires_ms: u64,
    /// Where it is in its life, as of when it was read.
    pub state: ApprovalState,
    /// Who approved or rejected it: the approver principal's id, `admin-token`, or
    /// `cli:<user>` (see [`Decider`]).
    #[serde(default)]
    pub decided_by: Option<String>,
    /// The deciding principal's kind (`user`, `service`, `agent`), when a principal decided.
    #[serde(default)]
    pub decided_by_kind: Option<String>,
    /// The id of the credential the deciding principal used (an API key's name, a token's
    /// `jti`), never the secret.
    #[serde(default)]
    pub decided_by_credential: Option<String>,
    /// How the decider was known: `principal` (authenticated by `[identity]`),
    /// `admin-token`, `cli` or `named` (an embedder's own tool).
    #[serde(default)]
    pub decided_via: Option<String>,
    /// When it was approved or rejected.
    #[serde(default)]
    pub decided_ms: Option<u64>,
    /// The approver's note.
    #[serde(default)]
    pub note: Option<String>,
    /// When it was redeemed.
    #[serde(default)]
    pub used_ms: Option<u64>,
    /// The id of the held request (its `X-Request-Id`), so the audit records of the
    /// request and of the approval's life can be joined.
    #[serde(default)]
    pub request_id: String,
    /// The held request's method.
    #[serde(default)]
    pub method: String,
    /// The held request's host (lower-case, no port).
    #[serde(default)]
    pub host: String,
    /// The held request's path (no query).
    #[serde(default)]
    pub path: String,
    /// The held request's operation (OpenAPI operationId, MCP tool name), when known.
    #[serde(default)]
    pub operation: Option<String>,
    /// The held request's body as the policies saw it, with the request phase's
    /// redactions applied, as text (UTF-8 bodies only), at most [`MAX_SHOWN_BODY`] bytes.
    /// `None`: no body, a body that is not text, or one whose redactions could not be applied.
    #[serde(default)]
    pub body: Option<String>,
    /// Whether [`body`](Approval::body) was cut (at [`MAX_SHOWN_BODY`], or already at the
    /// gate's body cap).
    #[serde(default)]
    pub body_truncated: bool,
    /// The held request's `Content-Type`, when it had a body.
    #[serde(default)]
    pub content_type: Option<String>,
    /// When its expiry was written to the audit log ([`ApprovalStore::sweep_expired`]),
    /// so it is recorded once however many servers share the store.
    #[serde(default)]
    pub expiry_recorded_ms: Option<u64>,
}

/// The most of a held request's body an approval keeps for its approvers, in bytes (16 KiB).
pub const MAX_SHOWN_BODY: usize = 16 * 1024;

/// How the decider of an approval was known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DecidedVia {
    /// A principal the admin API authenticated with the `[identity]` config.
    Principal,
    /// The shared admin token (automation).
    AdminToken,
    /// `portcullis approvals` on the store (the operating-system user).
    Cli,
    /// A name an embedder's own tool gave (not authenticated by Portcullis).
    Named,
}

impl DecidedVia {
    /// As written in the store, the JSON and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            DecidedVia::Principal => "principal",
            DecidedVia::AdminToken => "admin-token",
            DecidedVia::Cli => "cli",
            DecidedVia::Named => "named",
        }
    }
}

/// Who approves or rejects an approval, as recorded with it and in the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decider {
    /// The principal's id, `admin-token`, `cli:<user>`, or the name given.
    pub id: String,
    /// The principal's kind, when a principal decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The principal's credential id, when a principal decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
    /// How the decider was known.
    pub via: DecidedVia,
}

impl Decider {
    /// An authenticated principal.
    pub fn principal(principal: &Principal) -> Decider {
        Decider {
            id: principal.id.clone(),
            kind: Some(principal.kind.as_str().to_owned()),
            credential_id: principal.credential_id.clone(),
            via: DecidedVia::Principal,
        }
    }

    /// The shared admin token.
    pub fn admin_token() -> Decider {
        Decider { id: "admin-token".into(), kind: None, credential_id: None, via: DecidedVia::AdminToken }
    }

    /// `portcullis approvals` run by this operating-system user.
    pub fn cli(user: &str) -> Decider {
        Decider { id: format!("cli:{user}"), kind: None, credential_id: None, via: DecidedVia::Cli }
    }

    /// A name an embedder's tool gives (trimmed).
    pub fn named(name: &str) -> Decider {
        Decider { id: name.trim().to_owned(), kind: None, credential_id: None, via: DecidedVia::Named }
    }
}

impl Approval {
    /// The state as of `now_ms`: a pending or approved approval is expired once `now_ms`
    /// reaches [`expires_ms`](Approval::expires_ms); others keep their stored state.
    pub fn state_at(&self, now_ms: u64) -> ApprovalState {
        match self.state {
            ApprovalState::Pending | ApprovalState::Approved if now_ms >= self.expires_ms => ApprovalState::Expired,
            state => state,
        }
    }

    /// This approval with [`state`](Approval::state) set to [`state_at`](Approval::state_at):
    /// how stores hand records out.
    pub fn as_of(mut self, now_ms: u64) -> Approval {
        self.state = self.state_at(now_ms);
        self
    }

    /// Whether the approval was issued to this caller: same kind, id and on-behalf-of user.
    /// The on-behalf-of user counts because the approver judged "agent X acting for alice",
    /// not agent X acting for anyone.
    pub fn is_for(&self, principal: &Principal) -> bool {
        self.principal_kind == principal.kind.as_str()
            && self.principal_id == principal.id
            && self.on_behalf_of == principal.on_behalf_of
    }

    /// Whether `new` asks for the same thing as this approval: same request, caller, group
    /// and policies. A still-pending match is returned by `create` instead of a new approval.
    fn same_ask(&self, new: &NewApproval) -> bool {
        self.digest == new.digest && self.group == new.group && self.policy == new.policy && self.is_for(&new.principal)
    }

    /// Whether a store may forget this approval at `now_ms`: its expiry passed more than
    /// [`RETAIN_AFTER_EXPIRY_MS`] ago. By then it can neither be decided nor redeemed
    /// whatever its state (a used or rejected one stays refused: an unknown id is refused
    /// too), and the audit log keeps the record of what happened.
    pub fn is_purgeable(&self, now_ms: u64) -> bool {
        self.expires_ms.saturating_add(RETAIN_AFTER_EXPIRY_MS) <= now_ms
    }

    /// The check behind `approve` and `reject`: only a pending, unexpired approval can be
    /// decided.
    fn check_decidable(&self, by: &Decider, verb: Verb, now_ms: u64) -> Result<(), ApprovalError> {
        if by.id.trim().is_empty() {
            return Err(ApprovalError::NoDecider { id: self.id.clone() });
        }
        match self.state_at(now_ms) {
            ApprovalState::Pending => Ok(()),
            state => Err(ApprovalError::NotPending {
                id: self.id.clone(),
                state,
                verb,
                decided_by: self.decided_by.clone(),
                expires_ms: self.expires_ms,
            }),
        }
    }

    /// The first half of the check behind `redeem`: whether this approval belongs to this
    /// caller and this request. The principal is checked first, so a caller holding someone
    /// else's id learns nothing about that approval (not its state, its group nor its request).
    fn check_owner(&self, digest: &str, principal: &Principal) -> Result<(), RedeemError> {
        let id = self.id.clone();
        if !self.is_for(principal) {
            return Err(RedeemError::DifferentPrincipal { id });
        }
        if self.digest != digest {
            return Err(RedeemError::DifferentRequest { id });
        }
        Ok(())
    }

    /// The second half: whether it is approved and unused as of `now_ms`.
    fn check_state(&self, now_ms: u64) -> Result<(), RedeemError> {
        let id = self.id.clone();
        match self.state_at(now_ms) {
            ApprovalState::Approved => Ok(()),
            ApprovalState::Pending => Err(RedeemError::Pending { id }),
            ApprovalState::Rejected => Err(RedeemError::Rejected { id }),
            ApprovalState::Used => Err(RedeemError::AlreadyUsed { id }),
            ApprovalState::Expired => Err(RedeemError::Expired { id }),
        }
    }

    /// Whether it expired unused at `now_ms` (pending or approved, its expiry reached) and
    /// that was not yet recorded: what [`ApprovalStore::sweep_expired`] returns.
    pub fn expired_unrecorded(&self, now_ms: u64) -> bool {
        matches!(self.state, ApprovalState::Pending | ApprovalState::Approved)
            && now_ms >= self.expires_ms
            && self.expiry_recorded_ms.is_none()
    }

    /// Marks it used (after [`check_redemption`] passed).
    fn mark_used(&mut self, now_ms: u64) {
        self.state = ApprovalState::Used;
        self.used_ms = Some(now_ms);
    }

    /// Marks an approval approved or rejected.
    fn decide(&mut self, verb: Verb, by: &Decider, note: Option<&str>, now_ms: u64) {
        self.state = match verb {
            Verb::Approve => ApprovalState::Approved,
            Verb::Reject => ApprovalState::Rejected,
        };
        self.decided_by = Some(by.id.trim().to_owned());
        self.decided_by_kind.clone_from(&by.kind);
        self.decided_by_credential.clone_from(&by.credential_id);
        self.decided_via = Some(by.via.as_str().to_owned());
        self.decided_ms = Some(now_ms);
        self.note = note.map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned);
    }
}

/// What the gate knows when a request needs an approval: everything [`ApprovalStore::create`]
/// needs to store a pending [`Approval`].
#[derive(Debug, Clone)]
pub struct NewApproval {
    /// [`request_digest`] of the held request.
    pub digest: String,
    /// The caller (only its kind, id and on-behalf-of user are kept).
    pub principal: Principal,
    /// The policy that required the approval.
    pub policy: String,
    /// The policy's reason.
    pub reason: String,
    /// The approver group the policy named.
    pub group: String,
    /// `METHOD host /path`, for the approver.
    pub request_line: String,
    /// What the approver is shown of the request besides its request line.
    pub shown: Shown,
    /// How long the approval stays valid from now (for the decision and the retry together).
    pub ttl_ms: u64,
    /// Now, in ms since the Unix epoch.
    pub now_ms: u64,
}

impl NewApproval {
    /// The pending approval this asks for, with a fresh id.
    fn into_pending(self) -> Result<Approval, ApprovalError> {
        Ok(Approval {
            id: new_id()?,
            principal_kind: self.principal.kind.as_str().to_owned(),
            principal_id: self.principal.id,
            on_behalf_of: self.principal.on_behalf_of,
            digest: self.digest,
            policy: self.policy,
            reason: self.reason,
            group: self.group,
            request_line: self.request_line,
            created_ms: self.now_ms,
            expires_ms: self.now_ms.saturating_add(self.ttl_ms),
            state: ApprovalState::Pending,
            request_id: self.shown.request_id,
            method: self.shown.method,
            host: self.shown.host,
            path: self.shown.path,
            operation: self.shown.operation,
            body: self.shown.body,
            body_truncated: self.shown.body_truncated,
            content_type: self.shown.content_type,
            ..Approval::default()
        })
    }
}

/// What an approver is shown of a held request besides its request line (the inbox's
/// fields), and the request's id for the audit trail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shown {
    /// The request's id.
    pub request_id: String,
    /// Its method.
    pub method: String,
    /// Its host (lower-case, no port).
    pub host: String,
    /// Its path (no query).
    pub path: String,
    /// Its operation, when known.
    pub operation: Option<String>,
    /// Its body with the request's redactions applied, as text, capped (see [`Shown::of`]).
    pub body: Option<String>,
    /// Whether the body was cut.
    pub body_truncated: bool,
    /// Its `Content-Type`.
    pub content_type: Option<String>,
}

impl Shown {
    /// What to show of `request`, whose body must already have the request phase's
    /// redactions applied (`redacted`: `false` when they could not be, and then no body is
    /// kept). A body that is not UTF-8 is not kept; a text body is cut at
    /// [`MAX_SHOWN_BODY`] bytes (on a character boundary) and marked truncated.
    pub fn of(request: &Request, redacted: bool) -> Shown {
        let mut shown = Shown {
            request_id: request.id.clone(),
            method: request.method.clone(),
            host: request.host(),
            path: request.path.split_once('?').map_or(request.path.as_str(), |(path, _)| path).to_owned(),
            operation: request.operation.clone(),
            ..Shown::default()
        };
        if let Some(body) = request.body.as_ref().filter(|b| !b.bytes.is_empty()) {
            shown.content_type.clone_from(&body.content_type);
            if redacted {
                let (bytes, cut) = if body.bytes.len() > MAX_SHOWN_BODY {
                    (&body.bytes[..MAX_SHOWN_BODY], true)
                } else {
                    (&body.bytes[..], false)
                };
                let text = match std::str::from_utf8(bytes) {
                    Ok(text) => Some(text),
                    // Cut inside a character: keep the whole ones.
                    Err(e) if cut && e.error_len().is_none() => std::str::from_utf8(&bytes[..e.valid_up_to()]).ok(),
                    Err(_) => None,
                };
                if let Some(text) = text {
                    shown.body = Some(text.to_owned());
                    shown.body_truncated = cut || body.truncated;
                }
            }
        }
        shown
    }
}

/// How long a store keeps an approval after it expired, in ms (an hour): long enough for
/// an approver to see in `portcullis approvals list` what expired and what was used, short
/// enough that the store stays bounded by the rate of new requests, not by uptime.
pub const RETAIN_AFTER_EXPIRY_MS: u64 = 60 * 60 * 1000;

/// How often a store looks for approvals to purge, in ms (a minute). The purge runs inside
/// `create`, at most this often, so no call pays for a full scan every time.
pub const PURGE_EVERY_MS: u64 = 60 * 1000;

/// Whether a store that last purged at `last_ms` should purge at `now_ms`: once
/// [`PURGE_EVERY_MS`] has passed, or when the clock went back by more than that (otherwise
/// a clock set back would stop purging until it caught up). Requests a few ms out of order
/// do not trigger it.
pub fn purge_due(last_ms: u64, now_ms: u64) -> bool {
    now_ms >= last_ms.saturating_add(PURGE_EVERY_MS) || now_ms.saturating_add(PURGE_EVERY_MS) < last_ms
}

/// The most expired approvals one [`ApprovalStore::sweep_expired`] returns; the rest come
/// at the next sweep.
pub const SWEEP_BATCH: usize = 500;

/// The most approval ids one retry may carry: one per approver group that asked, and no
/// route has more policies than this asking for approval.
pub const MAX_IDS: usize = 16;

/// A caller's retry, redeeming the approvals it was given: what
/// [`ApprovalStore::redeem_all`] checks and, when every check passes, uses up together.
#[derive(Debug, Clone, Copy)]
pub struct Redemption<'a> {
    /// The ids the caller sent, in its order (each at most once).
    pub ids: &'a [String],
    /// [`request_digest`] of the retry.
    pub digest: &'a str,
    /// The retry's caller.
    pub principal: &'a Principal,
    /// The approver groups whose approval the retry needs (every group whose policy said
    /// require-approval this time). When given, each id must be for one of them, no two ids
    /// for the same one, and every one must be covered. `None` redeems the ids whatever
    /// their groups (for embedders running their own approval flow).
    pub groups: Option<&'a [String]>,
}

/// The rules behind [`ApprovalStore::redeem_all`], shared by every store: given the records
/// the ids name (in the same order, `None` for an unknown id), as of `now_ms`, whether they
/// may all be used now. Stores call it under their lock or transaction and mark every
/// record used only when it passes, so a retry uses all of its approvals or none.
///
/// The order of the checks decides what a caller learns, and which failures leave the
/// caller's approvals to be used later: ownership (unknown, another caller's, another
/// request's), then whether each id is for a group that asked and no two for the same, then
/// hard states (rejected, used, expired), then groups that asked but have no id
/// ([`RedeemError::Missing`]: the gate asks them), and last approvals still pending.
pub fn check_redemption(
    redemption: &Redemption<'_>,
    found: &[Option<Approval>],
    now_ms: u64,
) -> Result<(), RedeemError> {
    if redemption.ids.is_empty() {
        return Err(RedeemError::Unknown { id: String::new() });
    }
    if redemption.ids.len() > MAX_IDS {
        return Err(RedeemError::TooMany { count: redemption.ids.len() });
    }
    if found.len() != redemption.ids.len() {
        return Err(RedeemError::Unknown { id: redemption.ids.get(found.len()).cloned().unwrap_or_default() });
    }
    let mut approvals = Vec::with_capacity(found.len());
    for (id, approval) in redemption.ids.iter().zip(found) {
        let approval = approval.as_ref().ok_or_else(|| RedeemError::Unknown { id: id.clone() })?;
        approval.check_owner(redemption.digest, redemption.principal)?;
        approvals.push(approval);
    }
    let mut covered: Vec<&str> = Vec::new();
    for approval in &approvals {
        if covered.contains(&approval.group.as_str()) {
            return Err(RedeemError::Duplicate { id: approval.id.clone(), group: approval.group.clone() });
        }
        if let Some(groups) = redemption.groups
            && !groups.contains(&approval.group)
        {
            return Err(RedeemError::NotAsked { id: approval.id.clone(), group: approval.group.clone() });
        }
        covered.push(&approval.group);
    }
    for approval in &approvals {
        match approval.check_state(now_ms) {
            Err(RedeemError::Pending { .. }) | Ok(()) => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(groups) = redemption.groups {
        let missing: Vec<String> = groups.iter().filter(|g| !covered.contains(&g.as_str())).cloned().collect();
        if !missing.is_empty() {
            return Err(RedeemError::Missing { groups: missing });
        }
    }
    for approval in &approvals {
        approval.check_state(now_ms)?;
    }
    Ok(())
}

/// Lower-case Crockford base32: no `i`, `l`, `o` or `u`, so ids read aloud or retyped by an
/// approver survive.
const ID_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// `apr_` and 26 base32 characters from 128 bits of the operating system's randomness. The
/// id is a bearer token for its one request, so it must be unguessable.
fn new_id() -> Result<String, ApprovalError> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(ApprovalError::Random)?;
    let mut bits = u128::from_be_bytes(bytes);
    let mut id = String::with_capacity(30);
    id.push_str("apr_");
    for _ in 0..26 {
        id.push(ID_ALPHABET[(bits & 31) as usize] as char);
        bits >>= 5;
    }
    Ok(id)
}

// ---------------------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------------------

/// Where pending approvals are kept. Object safe: the gate holds an
/// `Arc<dyn ApprovalStore>`, so embedders may bring their own (a shared database, say).
///
/// Every record a store returns is [as of](Approval::as_of) the `now_ms` given (or the
/// creation time), so an expired approval reads as [`ApprovalState::Expired`].
/// Implementations must make `create`, `approve`, `reject` and above all `redeem` atomic
/// check-then-update operations, also across processes sharing the store, or an approval
/// could allow two requests.
pub trait ApprovalStore: Send + Sync {
    /// Stores a pending approval for `new` and returns it. When a pending, unexpired
    /// approval for the same request, caller and policy exists, returns that one instead: a
    /// caller retrying without the id must not flood the approvers.
    fn create(&self, new: NewApproval) -> Result<Approval, ApprovalError>;

    /// The approval with this id, if any.
    fn get(&self, id: &str, now_ms: u64) -> Result<Option<Approval>, ApprovalError>;

    /// Every approval (in this state, as of `now_ms`, when given), newest first.
    fn list(&self, state: Option<ApprovalState>, now_ms: u64) -> Result<Vec<Approval>, ApprovalError>;

    /// Approves a pending, unexpired approval on behalf of `by` (who, for the audit trail),
    /// with an optional note.
    fn approve_as(&self, id: &str, by: &Decider, note: Option<&str>, now_ms: u64) -> Result<Approval, ApprovalError>;

    /// Rejects a pending, unexpired approval on behalf of `by`, with an optional note.
    fn reject_as(&self, id: &str, by: &Decider, note: Option<&str>, now_ms: u64) -> Result<Approval, ApprovalError>;

    /// [`approve_as`](ApprovalStore::approve_as) by a name an embedder's tool gives
    /// ([`Decider::named`]: not authenticated by Portcullis).
    fn approve(&self, id: &str, by: &str, now_ms: u64) -> Result<Approval, ApprovalError> {
        self.approve_as(id, &Decider::named(by), None, now_ms)
    }

    /// [`reject_as`](ApprovalStore::reject_as) by a name an embedder's tool gives.
    fn reject(&self, id: &str, by: &str, note: Option<&str>, now_ms: u64) -> Result<Approval, ApprovalError> {
        self.reject_as(id, &Decider::named(by), note, now_ms)
    }

    /// Marks every approval that expired unused (pending or approved, `expires_ms` reached
    /// at `now_ms`) and whose expiry was not recorded yet as recorded, and returns them
    /// (with the state they expired in), at most [`SWEEP_BATCH`] at a time: what a server's
    /// sweeper writes to the audit log as `expired`, once, however many servers share the
    /// store (the marking is atomic).
    fn sweep_expired(&self, now_ms: u64) -> Result<Vec<Approval>, ApprovalError>;

    /// How many approvals are pending at `now_ms`, by group (for the `/metrics` gauge).
    fn pending_by_group(&self, now_ms: u64) -> Result<Vec<(String, u64)>, ApprovalError> {
        let mut counts: Vec<(String, u64)> = Vec::new();
        for approval in self.list(Some(ApprovalState::Pending), now_ms)? {
            match counts.iter_mut().find(|(group, _)| *group == approval.group) {
                Some((_, count)) => *count += 1,
                None => counts.push((approval.group, 1)),
            }
        }
        Ok(counts)
    }

    /// Uses the approvals of a caller's retry: succeeds only when [`check_redemption`]
    /// passes for all of them (each approved, for the request with this digest, for this
    /// caller, unexpired, not used yet, and together covering exactly the groups that
    /// asked), and then marks every one used in the same atomic step, so each approval
    /// allows exactly one request and a refused retry uses none. Returns the used approvals.
    fn redeem_all(&self, redemption: &Redemption<'_>, now_ms: u64) -> Result<Vec<Approval>, RedeemError>;

    /// Forgets every approval that [`Approval::is_purgeable`] at `now_ms`; returns how many.
    /// Stores also call this themselves from `create`, at most every [`PURGE_EVERY_MS`].
    fn purge(&self, now_ms: u64) -> Result<usize, ApprovalError>;

    /// What a request that needs an approval meets when this store fails: refused 503
    /// `state-unavailable` (the default), or let through (`on_error = "allow"`, PostgreSQL).
    fn on_error(&self) -> crate::state::OnError {
        crate::state::OnError::Deny
    }

    /// How a networked store is doing, for `/readyz` and `/metrics` (`None`: a local file
    /// or memory, with nothing to report).
    fn health(&self) -> Option<crate::state::Health> {
        None
    }

    /// [`redeem_all`](ApprovalStore::redeem_all) for one id, whatever its group.
    fn redeem(&self, id: &str, digest: &str, principal: &Principal, now_ms: u64) -> Result<Approval, RedeemError> {
        let ids = [id.to_owned()];
        let redemption = Redemption { ids: &ids, digest, principal, groups: None };
        let mut used = self.redeem_all(&redemption, now_ms)?;
        used.pop().ok_or_else(|| RedeemError::Unknown { id: id.to_owned() })
    }
}

/// Whether an approval is being approved or rejected, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// `approve`
    Approve,
    /// `reject`
    Reject,
}

impl Verb {
    fn past(self) -> &'static str {
        match self {
            Verb::Approve => "approved",
            Verb::Reject => "rejected",
        }
    }
}

/// Why a store operation failed. These messages are for operators and approvers (CLI,
/// admin API, logs), so they name the file, the id and the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApprovalError {
    /// No approval has this id.
    #[error("no approval `{id}` in the store; `portcullis approvals list` shows the ids there are")]
    Unknown {
        /// The id asked for.
        id: String,
    },
    /// Only a pending, unexpired approval can be approved or rejected.
    #[error("{}", not_pending(id, *state, *verb, decided_by.as_deref(), *expires_ms))]
    NotPending {
        /// The approval.
        id: String,
        /// Its state now.
        state: ApprovalState,
        /// What was attempted.
        verb: Verb,
        /// Who decided it, if anyone.
        decided_by: Option<String>,
        /// When it expires or expired.
        expires_ms: u64,
    },
    /// `approve` or `reject` without saying who decides.
    #[error("approval `{id}`: say who decides (an approver's name or address), for the audit trail")]
    NoDecider {
        /// The approval.
        id: String,
    },
    /// The store file is missing its directory, is not an SQLite file, or cannot be opened.
    #[error("{}: cannot open the approval store: {source}{}", path.display(), open_hint(path))]
    Open {
        /// The store file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The store file was written by a newer portcullis.
    #[error(
        "{}: the approval store has schema version {found}, newer than the {supported} this portcullis understands; \
         upgrade portcullis, or point `[approvals] store` at another file",
        path.display()
    )]
    NewerSchema {
        /// The store file.
        path: PathBuf,
        /// The file's `PRAGMA user_version`.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// Reading or writing the store failed.
    #[error("{}: approval store{}: {source}", path.display(), id.as_ref().map(|id| format!(" (approval `{id}`)")).unwrap_or_default())]
    Storage {
        /// The store file.
        path: PathBuf,
        /// The approval concerned, if one.
        id: Option<String>,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The operating system's random number generator failed, so no id could be made.
    #[error("could not make an approval id: the operating system's random number generator failed: {0}")]
    Random(#[source] getrandom::Error),
}

fn not_pending(id: &str, state: ApprovalState, verb: Verb, decided_by: Option<&str>, expires_ms: u64) -> String {
    let verb = verb.past();
    match state {
        ApprovalState::Expired => format!(
            "approval `{id}` expired at {}, so it cannot be {verb}; the caller must send the request again to ask for a new approval",
            crate::audit::rfc3339_ms(expires_ms)
        ),
        ApprovalState::Used => format!("approval `{id}` was already approved and used, so it cannot be {verb}"),
        state => match decided_by {
            Some(by) => format!("approval `{id}` is already {state} (by {by}), so it cannot be {verb}"),
            None => format!("approval `{id}` is {state}, not pending, so it cannot be {verb}"),
        },
    }
}

fn open_hint(path: &std::path::Path) -> &'static str {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => {
            " (its directory does not exist; create it or point `[approvals] store` elsewhere)"
        }
        _ => "",
    }
}

/// Why a caller's retry with an approval id was refused. The message goes back to the API
/// caller, so it says only what that caller may know: never another caller's principal,
/// request or approval state, and never store internals.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedeemError {
    /// No approval has this id.
    #[error("approval {} is not known; send the request without it to ask for an approval", shown(id))]
    Unknown {
        /// The id sent.
        id: String,
    },
    /// Not decided yet.
    #[error("approval `{id}` has not been approved yet; send the request again with it once an approver has")]
    Pending {
        /// The id sent.
        id: String,
    },
    /// An approver refused it.
    #[error("approval `{id}` was rejected")]
    Rejected {
        /// The id sent.
        id: String,
    },
    /// Its time ran out.
    #[error("approval `{id}` has expired; send the request without it to ask for a new approval")]
    Expired {
        /// The id sent.
        id: String,
    },
    /// It already allowed its one request.
    #[error("approval `{id}` was already used; an approval allows one request only")]
    AlreadyUsed {
        /// The id sent.
        id: String,
    },
    /// The retry is not the request that was approved.
    #[error(
        "approval `{id}` was given for a different request; the method, host, path, query (repeated names in their \
         order), body and the method-override and content headers must be exactly those of the approved request"
    )]
    DifferentRequest {
        /// The id sent.
        id: String,
    },
    /// The retry comes from another caller than the one the approval was issued to.
    #[error("approval `{id}` was not issued to this caller")]
    DifferentPrincipal {
        /// The id sent.
        id: String,
    },
    /// The retry carries an approval for a group that did not ask for one this time.
    #[error(
        "approval `{id}` is for approver group `{group}`, which this request does not need; send only the ids \
         it asked for"
    )]
    NotAsked {
        /// The id sent.
        id: String,
        /// Its group.
        group: String,
    },
    /// The retry carries two approvals (or one twice) for the same group.
    #[error("approval `{id}` is a second approval for approver group `{group}`; send one id per group")]
    Duplicate {
        /// The id sent.
        id: String,
        /// Its group.
        group: String,
    },
    /// Groups that asked for an approval have none among the ids sent. None of the ids
    /// sent was used: the gate asks the missing groups and the caller retries with all.
    #[error("this request also needs an approval from {}", quoted_list(groups))]
    Missing {
        /// The groups without an approval, in the order their policies asked.
        groups: Vec<String>,
    },
    /// More ids than any request can need.
    #[error("the retry carries {count} approval ids; at most {MAX_IDS} are accepted")]
    TooMany {
        /// How many were sent.
        count: usize,
    },
    /// The store failed; the caller is told only that. The source says why, for the logs.
    #[error("the approval store is unavailable; try again later")]
    Store(#[source] ApprovalError),
}

/// `a`, `b` as "`a`, `b`".
fn quoted_list(groups: &[String]) -> String {
    groups.iter().map(|g| format!("`{g}`")).collect::<Vec<_>>().join(", ")
}

/// The caller-sent id for a message: as sent when it looks like an id, otherwise not echoed
/// (it comes from a header and could be anything).
fn shown(id: &str) -> String {
    if !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        format!("`{id}`")
    } else {
        "id sent".to_owned()
    }
}

#[cfg(test)]
mod tests;
