//! The gate: the one pipeline every caller runs (authenticate → route → evaluate →
//! enforce), so the CLI, replay and every front door decide exactly alike.
//!
//! A front door translates its protocol into a [`Request`] and calls
//! [`Gate::check_request`]; when the upstream answers, [`Gate::check_response`]. Replay and
//! `eval` call [`Gate::pass`], which runs both phases of a recorded exchange. Approvals and
//! the audit log join this pipeline here, not in the front doors ([`Gate::admit`] and
//! [`Gate::release`]).

mod approve;
mod door;
mod refusal;
mod settle;

use std::sync::Arc;

use serde::Serialize;

use crate::approval::ApprovalStore;
use crate::audit::AuditSink;
use crate::exchange::{Exchange, Principal, Request, Response};
use crate::identity::{Authenticator, ClientCertificate};
use crate::redact::Applied;
use crate::set::{PolicySet, RouteMatch};
use crate::target::TargetRules;
use crate::verdict::Verdict;

pub use door::{Admission, Arrival, BodyReach, Reach, Release, Ticket};
pub use refusal::{APPROVAL_HEADER, ApprovalNotice, REQUEST_ID_HEADER, Refusal};
pub use settle::{Settlement, event_record, record_event, settle, sweep_expired};

/// Where the principal of a request comes from.
#[derive(Debug, Clone)]
pub enum Identity {
    /// Authenticate the request's credentials with the configured identity settings,
    /// checking token lifetimes at this time (seconds since the Unix epoch). Without an
    /// authenticator, every request is anonymous.
    Credentials {
        /// The time tokens are checked at.
        now_unix_s: u64,
    },
    /// Use this principal, whatever the request carries ("replay as agent X for user Y").
    Fixed(Principal),
    /// Keep the principal already on the request (e.g. recorded in a JSONL file); when it
    /// is anonymous, authenticate as with `Credentials`.
    Recorded {
        /// The time tokens are checked at.
        now_unix_s: u64,
    },
}

/// A request that failed authentication: answer 401 before any policy runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AuthFailure {
    /// Why, without the secret.
    pub reason: String,
}

/// The request phase's result.
#[derive(Debug, Clone, Serialize)]
pub struct RequestCheck {
    /// The combined verdict.
    pub verdict: Verdict,
    /// What the redactions changed (when the verdict allowed with redactions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<Applied>,
    /// A redaction that could not be guaranteed: the request must not be forwarded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redaction_error: Option<String>,
}

impl RequestCheck {
    /// The check for `verdict`, its redactions applied to `request` in place when it allows.
    pub(crate) fn applying(verdict: Verdict, request: &mut Request) -> RequestCheck {
        let mut check = RequestCheck { verdict, applied: None, redaction_error: None };
        if check.verdict.is_allowed() && !check.verdict.redactions().is_empty() {
            match check.verdict.apply_to_request(request) {
                Ok(applied) => check.applied = Some(applied),
                Err(e) => check.redaction_error = Some(e.to_string()),
            }
        }
        check
    }

    /// Whether the request may be forwarded (allowed, and every redaction applied).
    pub fn may_forward(&self) -> bool {
        self.verdict.is_allowed() && self.redaction_error.is_none()
    }
}

/// The response phase's result.
#[derive(Debug, Clone, Serialize)]
pub struct ResponseCheck {
    /// The combined verdict.
    pub verdict: Verdict,
    /// What the redactions changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<Applied>,
    /// A redaction that could not be guaranteed: the response must not be returned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redaction_error: Option<String>,
}

impl ResponseCheck {
    /// Whether the response may be returned to the caller.
    pub fn may_return(&self) -> bool {
        self.verdict.is_allowed() && self.redaction_error.is_none()
    }
}

/// Both phases of one exchange, as replay and `eval` report them.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Passage {
    /// `METHOD path`, then the operation when one is known (`CALL /mcp get_customer`).
    pub request_line: String,
    /// The request's host (no port).
    pub host: String,
    /// The request's operation, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Who the request was evaluated as.
    pub principal: Principal,
    /// Set when authentication failed; then no policy ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_failure: Option<AuthFailure>,
    /// The request phase (absent when authentication failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestCheck>,
    /// The request as forwarded, when redactions changed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarded_request: Option<Request>,
    /// The response phase, when there was a response and the request was forwarded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<ResponseCheck>,
    /// The response as returned, when redactions changed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub returned_response: Option<Response>,
}

/// The pipeline. Cheap to clone; share one per process (or per config generation).
#[derive(Clone)]
pub struct Gate {
    set: Arc<PolicySet>,
    authenticator: Option<Arc<Authenticator>>,
    approvals: Option<Arc<dyn ApprovalStore>>,
    audit: Option<Arc<dyn AuditSink>>,
    events: Option<Arc<dyn crate::approval::ApprovalEvents>>,
    approvers: Arc<crate::approval::ApproverGroups>,
    target_rules: TargetRules,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("set", &self.set)
            .field("authenticates", &self.authenticator.is_some())
            .field("approvals", &self.approvals.is_some())
            .field("audit", &self.audit.is_some())
            .finish()
    }
}

impl Gate {
    /// A gate over a policy set, authenticating with `authenticator` when given. Without
    /// an approval store, require-approval refuses (there is no way to approve); without
    /// an audit sink, nothing is recorded.
    pub fn new(set: Arc<PolicySet>, authenticator: Option<Arc<Authenticator>>) -> Gate {
        Gate {
            set,
            authenticator,
            approvals: None,
            audit: None,
            events: None,
            approvers: Arc::default(),
            target_rules: TargetRules::default(),
        }
    }

    /// Keeps pending approvals in `store`, so require-approval decisions can be approved
    /// and retried.
    pub fn with_approvals(mut self, store: Arc<dyn ApprovalStore>) -> Gate {
        self.approvals = Some(store);
        self
    }

    /// Records every front-door decision in `sink`.
    pub fn with_audit(mut self, sink: Arc<dyn AuditSink>) -> Gate {
        self.audit = Some(sink);
        self
    }

    /// Tells `sink` about approvals the gate stores (pending) and uses (redeemed); see
    /// [`crate::approval::event`].
    pub fn with_events(mut self, sink: Arc<dyn crate::approval::ApprovalEvents>) -> Gate {
        self.events = Some(sink);
        self
    }

    /// Canonicalises request targets with `rules` (`[request_target]`) at every door that
    /// uses this gate.
    pub fn with_target_rules(mut self, rules: TargetRules) -> Gate {
        self.target_rules = rules;
        self
    }

    /// How doors canonicalise request targets for this gate.
    pub fn target_rules(&self) -> TargetRules {
        self.target_rules
    }

    /// The approval store, if any.
    pub fn approvals(&self) -> Option<&Arc<dyn ApprovalStore>> {
        self.approvals.as_ref()
    }

    /// Who may decide which approvals (`[approvals.groups]`); without it, no group is
    /// configured and only the admin token decides.
    pub fn with_approvers(mut self, groups: crate::approval::ApproverGroups) -> Gate {
        self.approvers = Arc::new(groups);
        self
    }

    /// The approver groups.
    pub fn approvers(&self) -> &crate::approval::ApproverGroups {
        &self.approvers
    }

    /// Where approval events go, if anywhere.
    pub fn events(&self) -> Option<&Arc<dyn crate::approval::ApprovalEvents>> {
        self.events.as_ref()
    }

    /// The audit sink, if any.
    pub fn audit_sink(&self) -> Option<&Arc<dyn AuditSink>> {
        self.audit.as_ref()
    }

    /// The policy set.
    pub fn policy_set(&self) -> &Arc<PolicySet> {
        &self.set
    }

    /// The authenticator, if any (a server keeps its fetched JWT keys fresh through it).
    pub fn authenticator(&self) -> Option<&Arc<Authenticator>> {
        self.authenticator.as_ref()
    }

    /// Establishes the principal of `request` (setting it on the request).
    pub fn identify(&self, request: &mut Request, identity: &Identity) -> Result<(), AuthFailure> {
        self.identify_connection(request, identity, None)
    }

    /// [`Gate::identify`] for a request whose connection presented a verified client
    /// certificate (mutual TLS): with `[[identity.client_certs]]` configured it is one of the
    /// request's credentials ([`Authenticator::authenticate_connection`]). A door that
    /// answers without [`Gate::admit`] (an MCP notification, say) identifies with this.
    pub fn identify_connection(
        &self,
        request: &mut Request,
        identity: &Identity,
        certificate: Option<&ClientCertificate>,
    ) -> Result<(), AuthFailure> {
        let now = match identity {
            Identity::Fixed(principal) => {
                request.principal = principal.clone();
                return Ok(());
            }
            Identity::Recorded { now_unix_s } => {
                if request.principal != Principal::default() {
                    return Ok(());
                }
                *now_unix_s
            }
            Identity::Credentials { now_unix_s } => *now_unix_s,
        };
        if let Some(authenticator) = &self.authenticator {
            match authenticator.authenticate_connection(request, certificate, now) {
                Ok(principal) => {
                    request.principal = principal;
                    Ok(())
                }
                Err(e) => Err(AuthFailure { reason: e.to_string() }),
            }
        } else {
            request.principal = Principal::default();
            Ok(())
        }
    }

    /// The request's route in this gate's policy set, found once per request: a door that
    /// asks what runs for it ([`RouteMatch::runs`]) before [`Gate::admit`] hands it on with
    /// [`Arrival::with_route`], and the gate carries it in the [`Ticket`] to the response.
    pub fn route(&self, request: &Request) -> RouteMatch {
        self.set.route(request)
    }

    /// The request phase: evaluates, then applies redactions to `request` in place when
    /// the verdict allows with redactions.
    pub fn check_request(&self, request: &mut Request) -> RequestCheck {
        self.check_request_on(&self.set.route(request), request)
    }

    /// The response phase for a forwarded `request`: evaluates, then applies redactions to
    /// `response` in place.
    pub fn check_response(&self, request: &Request, response: &mut Response) -> ResponseCheck {
        self.check_response_on(&self.set.route(request), request, response)
    }

    /// [`Gate::check_request`] on the request's route, already resolved.
    fn check_request_on(&self, route: &RouteMatch, request: &mut Request) -> RequestCheck {
        let verdict = self.set.evaluate_request_on(route, request);
        RequestCheck::applying(verdict, request)
    }

    /// [`Gate::check_response`] on the request's route, already resolved.
    fn check_response_on(&self, route: &RouteMatch, request: &Request, response: &mut Response) -> ResponseCheck {
        let verdict = self.set.evaluate_response_on(route, request, response);
        let mut check = ResponseCheck { verdict, applied: None, redaction_error: None };
        if check.verdict.is_allowed() && !check.verdict.redactions().is_empty() && response.status == 206 {
            // A slice of a body (`Range`) has none of the fields a redaction names, yet it
            // carries their values: it cannot be redacted, so it is not returned.
            check.redaction_error = Some(
                "the response is a partial one (206, a `Range` slice of the body), and a slice cannot be redacted"
                    .into(),
            );
        } else if check.verdict.is_allowed() && !check.verdict.redactions().is_empty() {
            match check.verdict.apply_to_response(response) {
                Ok(applied) => check.applied = Some(applied),
                Err(e) => check.redaction_error = Some(e.to_string()),
            }
        }
        check
    }

    /// Both phases of a recorded exchange: identify, check the request, and when it would
    /// have been forwarded and a response was recorded, check the response.
    pub fn pass(&self, exchange: Exchange, identity: &Identity) -> Passage {
        let Exchange { mut request, response } = exchange;
        let request_line = request_line(&request);
        let mut passage = Passage {
            request_line,
            host: request.host(),
            operation: request.operation.clone(),
            principal: Principal::default(),
            auth_failure: None,
            request: None,
            forwarded_request: None,
            response: None,
            returned_response: None,
        };
        if let Err(failure) = self.identify(&mut request, identity) {
            passage.auth_failure = Some(failure);
            return passage;
        }
        passage.principal = request.principal.clone();
        let route = self.set.route(&request);
        let check = self.check_request_on(&route, &mut request);
        let forward = check.may_forward();
        if check.applied.as_ref().is_some_and(|a| !a.is_empty()) {
            passage.forwarded_request = Some(request.clone());
        }
        passage.request = Some(check);
        if forward && let Some(mut response) = response {
            let check = self.check_response_on(&route, &request, &mut response);
            if check.applied.as_ref().is_some_and(|a| !a.is_empty()) {
                passage.returned_response = Some(response);
            }
            passage.response = Some(check);
        }
        passage
    }
}

/// `METHOD path`, then the operation when the request names one: the path alone does not
/// say what was called when many operations share an endpoint (every MCP tool is called at
/// the MCP endpoint). Built from the normalised request only; no protocol is named here.
fn request_line(request: &Request) -> String {
    match &request.operation {
        Some(operation) => format!("{} {} {operation}", request.method, request.path),
        None => format!("{} {}", request.method, request.path),
    }
}
