//! The gate as front doors use it: a request arrives, is admitted (or refused) with its
//! approval checked and its decision audited, and later its response is released (or
//! refused) and audited too.
//!
//! Everything a front door must not decide for itself lives here: the 401 for a failed
//! authentication, the approval round trip, the fail-closed answers, and the audit records.
//! A front door only turns its protocol into a [`Request`] and a [`Refusal`] or [`Ticket`]
//! back into its protocol.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::approval::request_digest;
use crate::audit::{AuditContext, AuditRecord};
use crate::decision::Decision;
use crate::exchange::{Request, Response};
use crate::identity::ClientCertificate;
use crate::set::RouteMatch;

use super::approve::Round;
use super::refusal::{APPROVAL_HEADER, REQUEST_ID_HEADER, Refusal};
use super::{Gate, Identity, RequestCheck, ResponseCheck};

/// What a front door knows about an arriving request besides the request itself.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Arrival {
    /// The front door's name in the audit log (`proxy`, `forward-auth`, `ext-authz`, …).
    pub front_door: &'static str,
    /// The approval id the caller sent, if any.
    pub approval_id: Option<String>,
    /// When the request arrived, in ms since the Unix epoch.
    pub now_ms: u64,
    /// When the request arrived, for latency.
    pub started: Instant,
    /// What this door can change in the request it passes on.
    pub reach: Reach,
    /// The request's route, when the door resolved it already ([`Arrival::with_route`]).
    route: Option<RouteMatch>,
    /// The client certificate the connection's TLS handshake verified, if any
    /// ([`Arrival::with_client_certificate`]).
    client_certificate: Option<ClientCertificate>,
    /// What the door vouches for about the exchange, for its audit records
    /// ([`Arrival::with_fact`]).
    facts: Vec<(&'static str, String)>,
}

/// What a front door can change in a request it lets through. A redaction the door cannot
/// carry out refuses the request (403 `redaction-unenforceable`) in the gate, so the
/// caller's answer and the audit record agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reach {
    /// Whether the door can rewrite query parameters.
    pub query: bool,
    /// What the door can do with the body.
    pub body: BodyReach,
}

/// What a front door can do with a request's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyReach {
    /// Rewrite it (the reverse proxy).
    Rewrite,
    /// Read it whole but not change it (ext_authz with the body): a redaction that would
    /// change nothing is fine, one that would is refused.
    ReadOnly,
    /// It never sees the body (forward-auth, ext_authz without the body): any body
    /// redaction is refused, since the door cannot know it would change nothing.
    Unseen,
}

impl Reach {
    /// Headers, query and body: the reverse proxy.
    pub const ALL: Reach = Reach { query: true, body: BodyReach::Rewrite };
    /// Headers only, body unseen: forward-auth.
    pub const HEADERS: Reach = Reach { query: false, body: BodyReach::Unseen };

    /// The first redaction in `check` this door cannot carry out, if any.
    fn unenforceable(&self, check: &RequestCheck) -> Option<String> {
        let redactions = check.verdict.redactions();
        let changed =
            |prefix: &str| check.applied.as_ref().and_then(|a| a.fields().into_iter().find(|f| f.starts_with(prefix)));
        if !self.query
            && let Some(field) = changed("query:")
        {
            return Some(field);
        }
        match self.body {
            BodyReach::Rewrite => None,
            // A detector's change to a text body is reported as `detected:<name>`.
            BodyReach::ReadOnly => changed("json:").or_else(|| changed("detected:")),
            BodyReach::Unseen => redactions.iter().find(|r| r.target.may_change_body()).map(|r| r.target.to_string()),
        }
    }
}

impl Arrival {
    /// Takes what the gate needs out of a freshly normalised request: removes the approval
    /// header (neither policies nor the upstream should see it), sets the request id (the
    /// caller's `X-Request-Id` when it is short and printable, otherwise a new one) and the
    /// receive time. `reach` says what the door can change in the request it passes on:
    /// there is no default, since a door that claims more than it can enforce would pass
    /// a redaction unapplied.
    pub fn take(front_door: &'static str, reach: Reach, request: &mut Request) -> Arrival {
        let now_ms = crate::capability::now_ms();
        let mut approval_id = None;
        request.headers.retain(|(name, value)| {
            if name.eq_ignore_ascii_case(APPROVAL_HEADER) {
                approval_id = Some(value.trim().to_owned());
                false
            } else {
                true
            }
        });
        if request.id.is_empty() {
            request.id = request
                .headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(REQUEST_ID_HEADER))
                .map(|(_, value)| value.trim())
                .filter(|id| !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()))
                .map_or_else(|| new_request_id(now_ms), str::to_owned);
        }
        if request.received_at_ms == 0 {
            request.received_at_ms = now_ms;
        }
        Arrival {
            front_door,
            approval_id,
            now_ms,
            started: Instant::now(),
            reach,
            route: None,
            client_certificate: None,
            facts: Vec::new(),
        }
    }

    /// Hands the gate the request's route, resolved by the door with [`Gate::route`] (to
    /// ask what runs before reading a body), so it is not looked up again. It must be the
    /// route of the request given to [`Gate::admit`].
    #[must_use]
    pub fn with_route(mut self, route: RouteMatch) -> Arrival {
        self.route = Some(route);
        self
    }

    /// The client certificate the request's connection presented and the door's TLS
    /// listener verified against its client CA. With `[[identity.client_certs]]` configured
    /// it is a credential ([`crate::identity::Authenticator::authenticate_connection`]).
    /// Only a door that verified the chain itself may pass one: its names are taken as
    /// proven. `None`: no certificate (a plaintext connection, or a TLS one without a
    /// client certificate).
    #[must_use]
    pub fn with_client_certificate(mut self, certificate: Option<ClientCertificate>) -> Arrival {
        self.client_certificate = certificate;
        self
    }

    /// A fact the door established about the exchange (not one the request claims), for
    /// every audit record of it, both phases ([`crate::audit::AuditRecord::door_facts`]):
    /// e.g. `("mcp_generation", "2026-07-28")`. The key is fixed in the door's code; the
    /// value must be one the door checked, never a caller's text passed on. A key given
    /// twice keeps the last value.
    #[must_use]
    pub fn with_fact(mut self, key: &'static str, value: impl Into<String>) -> Arrival {
        self.facts.retain(|(k, _)| *k != key);
        self.facts.push((key, value.into()));
        self
    }
}

/// A request id unique within this process and unlikely to repeat across restarts: the
/// arrival time and a counter.
fn new_request_id(now_ms: u64) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!("{now_ms:x}-{:06x}", COUNTER.fetch_add(1, Ordering::Relaxed) & 0xff_ffff)
}

/// The gate's answer to an arriving request.
#[derive(Debug)]
pub enum Admission {
    /// Forward the request (already redacted in place); keep the ticket for the response.
    Forward(Box<Ticket>),
    /// Do not forward; answer the caller with this.
    Refuse(Refusal),
}

/// An admitted request, carried to its response.
#[derive(Debug, Clone)]
pub struct Ticket {
    /// The request as forwarded (after redactions), as the response phase sees it.
    pub request: Request,
    /// The request phase's result: its verdict's redactions are what a front door applies
    /// to its own form of the request.
    pub check: RequestCheck,
    /// The approval redeemed for this request, if any.
    pub approval_id: Option<String>,
    route: RouteMatch,
    front_door: &'static str,
    started: Instant,
    facts: Vec<(&'static str, String)>,
}

impl Ticket {
    /// The request's route, resolved once when it arrived: ask it what runs in the response
    /// phase ([`RouteMatch::runs`]) rather than routing the request again.
    pub fn route(&self) -> &RouteMatch {
        &self.route
    }
}

/// What the request phase decided at a front door, before the audit record is written.
struct Decided {
    /// The request phase's result (with approvals waived when they were redeemed).
    check: RequestCheck,
    /// The approval ids redeemed, or named in the answer.
    approval_id: Option<String>,
    /// Whether the verdict asked for an approval.
    needed_approval: bool,
    /// The answer instead of forwarding, if the request is not forwarded.
    refusal: Option<Refusal>,
}

/// The scopes a `missing-scope` denial says the caller needs: the deciding policy's
/// `missing-scopes` label (space-separated), the convention by which a policy asks for an
/// OAuth step-up without a contract change (docs/writing-policies-rust.md, "Decisions").
fn missing_scopes(verdict: &crate::verdict::Verdict, code: &str) -> Option<String> {
    if code != "missing-scope" {
        return None;
    }
    let decided_by = verdict.decided_by.as_deref()?;
    let result = verdict.policies.iter().find(|p| p.policy == decided_by)?;
    let (_, scopes) = result.labels.iter().find(|(name, _)| name == "missing-scopes")?;
    let scopes = scopes.split_whitespace().collect::<Vec<_>>().join(" ");
    (!scopes.is_empty()).then_some(scopes)
}

/// The gate's answer to a response.
#[derive(Debug)]
pub enum Release {
    /// Return the response (already redacted in place); apply the check's redactions to
    /// the front door's own form of it.
    Return(ResponseCheck),
    /// Do not return it; answer the caller with this instead.
    Refuse(Refusal),
}

impl Gate {
    /// The request phase at a front door: authenticate (401 on failure), evaluate, settle
    /// approvals, apply redactions to `request`, and audit the decision.
    pub fn admit(&self, request: &mut Request, mut arrival: Arrival) -> Admission {
        let identity = Identity::Credentials { now_unix_s: arrival.now_ms / 1000 };
        if let Err(failure) = self.identify_connection(request, &identity, arrival.client_certificate.as_ref()) {
            let refusal = self.refusal(request, 401, "unauthenticated", failure.reason.clone(), None);
            self.audit(|ctx| AuditRecord::for_auth_failure(ctx, request, &failure.reason), &arrival, Some(401));
            return Admission::Refuse(refusal);
        }
        let route = arrival.route.take().unwrap_or_else(|| self.set.route(request));
        let Decided { check, approval_id, needed_approval, mut refusal } = self.decide(&route, request, &arrival);
        if refusal.is_none() {
            refusal = self.unenforceable(request, &check, &arrival);
        }
        let status = refusal.as_ref().map(|r| r.status);
        // Only a request passed on had its redactions applied.
        let applied = check.applied.as_ref().filter(|_| refusal.is_none());
        self.audit(
            |ctx| AuditRecord::for_verdict(ctx, request, &check.verdict, applied),
            &arrival_with(&arrival, approval_id.as_ref(), needed_approval),
            status,
        );
        match refusal {
            Some(refusal) => Admission::Refuse(refusal),
            None => Admission::Forward(Box::new(Ticket {
                request: request.clone(),
                check,
                approval_id,
                route,
                front_door: arrival.front_door,
                started: arrival.started,
                facts: arrival.facts.clone(),
            })),
        }
    }

    /// Evaluates an authenticated request on its route and settles what the verdict asks:
    /// the approval round for require-approval, the refusal for a deny or a redaction that
    /// failed.
    fn decide(&self, route: &RouteMatch, request: &mut Request, arrival: &Arrival) -> Decided {
        // The approval binds to the request as the caller sent it, before redactions.
        let digest = self.approvals.as_ref().map(|_| request_digest(request));
        let check = self.check_request_on(route, request);
        let mut decided = Decided { check, approval_id: None, needed_approval: false, refusal: None };
        match &decided.check.verdict.decision {
            Decision::RequireApproval(_) => {
                decided.needed_approval = true;
                // Every group that asked must approve; see `approve.rs`.
                match self.approval_round(request, &decided.check.verdict, digest, arrival) {
                    Round::Approved { check, ids } => {
                        decided.check = check;
                        decided.approval_id = Some(ids);
                    }
                    Round::Refused { refusal, ids } => {
                        decided.approval_id = ids;
                        decided.refusal = Some(refusal);
                    }
                }
            }
            Decision::Deny(denial) => {
                let policy = decided.check.verdict.decided_by.clone();
                let mut refusal = self.refusal(request, denial.status, &denial.code, denial.reason.clone(), policy);
                refusal.scope = missing_scopes(&decided.check.verdict, &denial.code);
                decided.refusal = Some(refusal);
            }
            Decision::Allow | Decision::Redact { .. } => {
                if let Some(error) = &decided.check.redaction_error {
                    decided.refusal =
                        Some(self.refusal(request, 500, "redaction-failed", redaction_failed(error), None));
                }
            }
        }
        decided
    }

    /// The refusal (403 `redaction-unenforceable`) when `check` redacts something the
    /// arriving door cannot change, naming the policy that asked for it.
    fn unenforceable(&self, request: &Request, check: &RequestCheck, arrival: &Arrival) -> Option<Refusal> {
        let field = arrival.reach.unenforceable(check)?;
        let json = field.starts_with("json:") || field.starts_with("detected:");
        let policy = check
            .verdict
            .policies
            .iter()
            .find(|p| {
                p.redactions.iter().any(|r| if json { r.target.may_change_body() } else { r.target.may_change_query() })
            })
            .map(|p| p.policy.clone());
        let reason = format!(
            "a policy asked to redact {field}, which the {} front door cannot change; refusing rather than passing it \
             unredacted (the reverse proxy can enforce it)",
            arrival.front_door
        );
        Some(self.refusal(request, 403, "redaction-unenforceable", reason, policy))
    }

    /// The response phase at a front door: evaluate, apply redactions to `response`, and
    /// audit the decision. A deny or an unenforceable redaction replaces the response.
    pub fn release(&self, ticket: &Ticket, response: &mut Response) -> Release {
        let check = self.check_response_on(&ticket.route, &ticket.request, response);
        let refusal = if let Decision::Deny(denial) = &check.verdict.decision {
            Some(self.refusal(
                &ticket.request,
                denial.status,
                &denial.code,
                denial.reason.clone(),
                check.verdict.decided_by.clone(),
            ))
        } else {
            check
                .redaction_error
                .as_ref()
                .map(|error| self.refusal(&ticket.request, 502, "redaction-failed", redaction_failed(error), None))
        };
        let status = refusal.as_ref().map_or(response.status, |r| r.status);
        let arrival = Arrival {
            front_door: ticket.front_door,
            approval_id: ticket.approval_id.clone(),
            now_ms: crate::capability::now_ms(),
            started: ticket.started,
            reach: Reach::ALL,
            route: None,
            client_certificate: None,
            facts: ticket.facts.clone(),
        };
        let applied = check.applied.as_ref().filter(|_| refusal.is_none());
        self.audit(
            |ctx| AuditRecord::for_verdict(ctx, &ticket.request, &check.verdict, applied),
            &arrival,
            Some(status),
        );
        match refusal {
            Some(refusal) => Release::Refuse(refusal),
            None => Release::Return(check),
        }
    }

    /// The response phase for a message on `ticket`'s response that is not its answer: a
    /// notification on a long-lived stream (MCP's `subscriptions/listen`). `request` is the
    /// event's own normalised form (its operation, its body), for the ticket's principal
    /// (set here, whatever `request` says); it is routed anew, so routes can name event
    /// kinds by operation. Each event is audited as a response-phase record of its own, with
    /// the ticket's request id and door facts, its latency from the event's arrival.
    pub fn release_event(&self, ticket: &Ticket, mut request: Request, response: &mut Response) -> Release {
        request.principal = ticket.request.principal.clone();
        request.id.clone_from(&ticket.request.id);
        let route = self.set.route(&request);
        let event = Ticket {
            request,
            check: ticket.check.clone(),
            approval_id: None,
            route,
            front_door: ticket.front_door,
            started: Instant::now(),
            facts: ticket.facts.clone(),
        };
        self.release(&event, response)
    }

    pub(super) fn refusal(
        &self,
        request: &Request,
        status: u16,
        code: &str,
        reason: String,
        policy: Option<String>,
    ) -> Refusal {
        Refusal {
            status,
            code: code.to_owned(),
            reason,
            policy,
            request_id: request.id.clone(),
            approval: None,
            scope: None,
        }
    }

    /// Writes one audit record, when an audit sink is configured.
    fn audit(&self, record: impl FnOnce(&AuditContext) -> AuditRecord, arrival: &Arrival, status: Option<u16>) {
        let Some(sink) = &self.audit else { return };
        let ctx = AuditContext {
            front_door: arrival.front_door.to_owned(),
            time_ms: arrival.now_ms,
            approval_id: arrival.approval_id.clone(),
            status,
            latency_us: arrival.started.elapsed().as_micros() as u64,
        };
        let mut record = record(&ctx);
        record.door_facts.extend(arrival.facts.iter().map(|(key, value)| ((*key).to_owned(), value.clone())));
        sink.record(&record);
    }
}

/// The arrival with the approval id the gate settled on (redeemed or newly created), or
/// the one the caller offered when it was refused. An id sent with a request that needed
/// no approval is not recorded: nothing was redeemed.
fn arrival_with(arrival: &Arrival, approval_id: Option<&String>, needed_approval: bool) -> Arrival {
    let offered = arrival.approval_id.clone().filter(|_| needed_approval);
    Arrival { approval_id: approval_id.cloned().or(offered), route: None, client_certificate: None, ..arrival.clone() }
}

pub(super) fn redaction_failed(error: &str) -> String {
    format!(
        "a policy asked for a redaction that could not be guaranteed ({error}); refusing rather than passing it unredacted"
    )
}
