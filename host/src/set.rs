//! A policy set: loaded policies, routes binding requests to ordered lists of them, and
//! the combining rule that turns their decisions into one [`Verdict`].
//!
//! This is the one place decisions are combined; the CLI, replay and every front door
//! call it, so a rule change here changes them all alike.

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::bindings::Lists;
use crate::decision::{Decision, DecisionKind, Denial, Outcome, Redaction};
use crate::engine::Engine;
use crate::exchange::{Request, Response};
use crate::policy::{Fault, LoadError, Policy, PolicySpec, Shared};
use crate::route::{HostPattern, MAX_PATH_SEGMENTS, Matcher, PathGlob, path_too_long};
use crate::verdict::{Phase, PolicyResult, Verdict};

/// What happens to a request no route covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unmatched {
    /// Deny with 403 `no-route` (the default: nothing passes unreviewed).
    #[default]
    Deny,
    /// Allow without evaluating any policy.
    Allow,
}

/// A route as written in config or code, before its policies are resolved.
#[derive(Debug, Clone, Default)]
pub struct RouteSpec {
    /// The route's name, for verdicts and reports.
    pub name: String,
    /// Host patterns (empty: any host).
    pub hosts: Vec<String>,
    /// Path globs (empty: any path).
    pub paths: Vec<String>,
    /// Methods (empty: any method).
    pub methods: Vec<String>,
    /// Operation names (empty: any operation, or none).
    pub operations: Vec<String>,
    /// The policies to evaluate, in order, by configured name.
    pub policies: Vec<String>,
}

/// A route with its patterns compiled and its policies resolved.
#[derive(Debug, Clone)]
pub struct Route {
    name: String,
    matcher: Matcher,
    policies: Vec<Arc<Policy>>,
}

impl Route {
    /// The route's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its policies in evaluation order.
    pub fn policies(&self) -> &[Arc<Policy>] {
        &self.policies
    }

    /// Whether it covers the request.
    pub fn matches(&self, request: &Request) -> bool {
        self.matcher.matches(request)
    }

    /// Whether any of its policies takes part in `phase`.
    fn runs(&self, phase: Phase) -> bool {
        self.policies.iter().any(|p| match phase {
            Phase::Request => p.metadata().request_phase,
            Phase::Response => p.metadata().response_phase,
        })
    }

    /// Whether any of its policies reads bodies in `phase`.
    fn needs_body(&self, phase: Phase) -> bool {
        self.policies.iter().any(|p| {
            let meta = p.metadata();
            match phase {
                Phase::Request => meta.request_phase && meta.needs_request_body,
                Phase::Response => meta.response_phase && meta.needs_response_body,
            }
        })
    }
}

/// The route a request resolved to ([`PolicySet::route`]), found once per request and
/// carried with it through both phases (the gate keeps it in its `Ticket`): a door asking
/// whether policies run, and both evaluations, use it instead of matching the routes again.
///
/// It holds the route itself (shared), not an index, so it stays right even when handed to
/// another generation of the set.
#[derive(Debug, Clone)]
pub struct RouteMatch(Resolved);

#[derive(Debug, Clone)]
enum Resolved {
    /// The first route covering the request.
    Route(Arc<Route>),
    /// No route covers it.
    Unmatched,
    /// Its path has more than [`MAX_PATH_SEGMENTS`] segments: refused before routing.
    PathTooLong,
}

impl RouteMatch {
    /// The route, when one covers the request.
    pub fn route(&self) -> Option<&Route> {
        match &self.0 {
            Resolved::Route(route) => Some(route),
            Resolved::Unmatched | Resolved::PathTooLong => None,
        }
    }

    /// Whether any policy bound to the route takes part in `phase`. A proxy asks an
    /// upstream for uncompressed responses when one does, since a compressed body cannot be
    /// redacted.
    pub fn runs(&self, phase: Phase) -> bool {
        self.route().is_some_and(|route| route.runs(phase))
    }

    /// Whether a policy bound to the route reads bodies in `phase`. A front door buffers the
    /// body before evaluating only when this is true; otherwise the body can stream (it is
    /// buffered later only if a verdict redacts JSON in it).
    pub fn needs_body(&self, phase: Phase) -> bool {
        self.route().is_some_and(|route| route.needs_body(phase))
    }
}

/// An error building a policy set in code or from config.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetError {
    /// A policy failed to load.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Two policies share a name.
    #[error("policy `{0}` is defined twice; policy names must be unique")]
    DuplicatePolicy(String),
    /// A route is invalid.
    #[error("route `{route}`: {message}")]
    Route {
        /// The route.
        route: String,
        /// What is wrong.
        message: String,
    },
}

/// Builds a [`PolicySet`] in code.
///
/// ```no_run
/// use portcullis_host::{Engine, EngineConfig, PolicySet, PolicySpec, RouteSpec, Source};
/// let engine = Engine::new(&EngineConfig::default())?;
/// let set = PolicySet::builder(&engine)
///     .policy(PolicySpec::new("agent-guard", Source::File("agent-guard.wasm".into())))?
///     .route(RouteSpec { name: "all".into(), policies: vec!["agent-guard".into()], ..Default::default() })
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PolicySetBuilder {
    engine: Engine,
    shared: Shared,
    policies: BTreeMap<String, Arc<Policy>>,
    routes: Vec<RouteSpec>,
    unmatched: Unmatched,
}

impl PolicySetBuilder {
    /// Replaces the shared state (rate-limit counters, data sets) given to policies loaded
    /// after this call.
    pub(crate) fn shared(mut self, shared: Shared) -> Self {
        self.shared = shared;
        self
    }

    /// Loads a policy and adds it under its spec's name.
    pub fn policy(mut self, spec: PolicySpec) -> Result<Self, SetError> {
        if self.policies.contains_key(&spec.name) {
            return Err(SetError::DuplicatePolicy(spec.name));
        }
        let policy = Policy::load(&self.engine, spec, &self.shared)?;
        self.policies.insert(policy.name().to_owned(), Arc::new(policy));
        Ok(self)
    }

    /// Adds an already loaded policy (e.g. one shared between sets).
    pub fn loaded_policy(mut self, policy: Arc<Policy>) -> Result<Self, SetError> {
        if self.policies.contains_key(policy.name()) {
            return Err(SetError::DuplicatePolicy(policy.name().to_owned()));
        }
        self.policies.insert(policy.name().to_owned(), policy);
        Ok(self)
    }

    /// Adds a route after the existing ones; the first route that matches a request wins.
    pub fn route(mut self, route: RouteSpec) -> Self {
        self.routes.push(route);
        self
    }

    /// Sets what happens to requests no route covers.
    pub fn unmatched(mut self, unmatched: Unmatched) -> Self {
        self.unmatched = unmatched;
        self
    }

    /// Compiles the routes and resolves their policies.
    pub fn build(self) -> Result<PolicySet, SetError> {
        let mut routes = Vec::with_capacity(self.routes.len());
        for (i, spec) in self.routes.into_iter().enumerate() {
            let name = if spec.name.is_empty() { format!("routes[{i}]") } else { spec.name.clone() };
            let err = |message: String| SetError::Route { route: name.clone(), message };
            let hosts = spec.hosts.iter().map(|h| HostPattern::new(h)).collect::<Result<_, _>>().map_err(err)?;
            let paths = spec.paths.iter().map(|p| PathGlob::new(p)).collect::<Result<_, _>>().map_err(err)?;
            let methods = spec.methods.iter().map(|m| m.to_ascii_uppercase()).collect();
            if spec.policies.is_empty() {
                return Err(err("lists no policies; give at least one in `policies`".into()));
            }
            let mut policies = Vec::with_capacity(spec.policies.len());
            for policy in &spec.policies {
                if let Some(p) = self.policies.get(policy) {
                    policies.push(p.clone());
                } else {
                    let known: Vec<&str> = self.policies.keys().map(String::as_str).collect();
                    return Err(err(format!(
                        "names policy `{policy}`, which is not defined (defined: {})",
                        if known.is_empty() { "none".into() } else { known.join(", ") }
                    )));
                }
            }
            routes.push(Arc::new(Route {
                name,
                matcher: Matcher { hosts, paths, methods, operations: spec.operations.clone() },
                policies,
            }));
        }
        Ok(PolicySet { engine: self.engine, policies: self.policies, routes, unmatched: self.unmatched })
    }
}

/// Loaded policies and the routes that bind them to requests. Share it behind an `Arc`;
/// evaluation takes `&self` and runs each policy in a fresh instance.
pub struct PolicySet {
    engine: Engine,
    policies: BTreeMap<String, Arc<Policy>>,
    routes: Vec<Arc<Route>>,
    unmatched: Unmatched,
}

impl std::fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySet")
            .field("policies", &self.policies.keys().collect::<Vec<_>>())
            .field("routes", &self.routes.iter().map(|r| r.name()).collect::<Vec<_>>())
            .finish()
    }
}

impl PolicySet {
    /// Starts building a set in code.
    pub fn builder(engine: &Engine) -> PolicySetBuilder {
        PolicySetBuilder {
            engine: engine.clone(),
            shared: Shared::default(),
            policies: BTreeMap::new(),
            routes: Vec::new(),
            unmatched: Unmatched::default(),
        }
    }

    /// The engine the policies run on.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// A loaded policy by name.
    pub fn policy(&self, name: &str) -> Option<&Arc<Policy>> {
        self.policies.get(name)
    }

    /// Every loaded policy, by name.
    pub fn policies(&self) -> impl Iterator<Item = &Arc<Policy>> {
        self.policies.values()
    }

    /// The routes in match order.
    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// Finds the request's route: the first that covers it. Resolve it once per request and
    /// pass it to [`PolicySet::evaluate_request_on`] and [`PolicySet::evaluate_response_on`]
    /// (the gate does). A path over [`MAX_PATH_SEGMENTS`] segments is covered by none,
    /// whatever the routes say (evaluation refuses it).
    pub fn route(&self, request: &Request) -> RouteMatch {
        if path_too_long(&request.path) {
            return RouteMatch(Resolved::PathTooLong);
        }
        // The lower-cased host, made at most once however many routes name hosts.
        let host = OnceCell::new();
        match self.routes.iter().find(|r| r.matcher.covers(request, &host)) {
            Some(route) => RouteMatch(Resolved::Route(route.clone())),
            None => RouteMatch(Resolved::Unmatched),
        }
    }

    /// Decides about a request (the request phase), finding its route first. A caller that
    /// also evaluates the response, or asks what runs, resolves the route once with
    /// [`PolicySet::route`] and uses [`PolicySet::evaluate_request_on`].
    pub fn evaluate_request(&self, request: &Request) -> Verdict {
        self.evaluate_request_on(&self.route(request), request)
    }

    /// Decides about a response (the response phase), finding the request's route first.
    /// `request` is the request as it was forwarded (after request-phase redactions).
    pub fn evaluate_response(&self, request: &Request, response: &Response) -> Verdict {
        self.evaluate_response_on(&self.route(request), request, response)
    }

    /// Decides about a request whose route was resolved with [`PolicySet::route`].
    pub fn evaluate_request_on(&self, route: &RouteMatch, request: &Request) -> Verdict {
        self.evaluate(Phase::Request, route, request, None)
    }

    /// Decides about a response to a request whose route was resolved with
    /// [`PolicySet::route`]; `request` is the request as it was forwarded.
    pub fn evaluate_response_on(&self, route: &RouteMatch, request: &Request, response: &Response) -> Verdict {
        self.evaluate(Phase::Response, route, request, Some(response))
    }

    fn evaluate(&self, phase: Phase, route: &RouteMatch, request: &Request, response: Option<&Response>) -> Verdict {
        let start = Instant::now();
        let route = match &route.0 {
            Resolved::Route(route) => route,
            unrouted => return self.unrouted(phase, unrouted, request, start),
        };
        let mut combiner = Combiner::default();
        // The exchange's lists as policies see them, built once and shared by every policy.
        let mut lists = None;
        for policy in &route.policies {
            let meta = policy.metadata();
            let takes_part = match phase {
                Phase::Request => meta.request_phase,
                Phase::Response => meta.response_phase,
            };
            if !takes_part {
                continue;
            }
            let lists = lists.get_or_insert_with(|| Lists::new(request, response));
            let call_start = Instant::now();
            let result = match response {
                None => policy.on_request(lists, request),
                Some(response) => policy.on_response(lists, request, response),
            };
            let elapsed_us = call_start.elapsed().as_micros() as u64;
            if combiner.add(policy, result, elapsed_us) {
                break;
            }
        }
        combiner.finish(phase, route.name.clone(), start.elapsed().as_micros() as u64)
    }

    /// The verdict for a request no route covers: no policy runs.
    fn unrouted(&self, phase: Phase, resolved: &Resolved, request: &Request, start: Instant) -> Verdict {
        let decision = match (resolved, self.unmatched) {
            // Refused before routing: an over-long path must not fall through to a later
            // route, or to `unmatched = "allow"`, because a glob could not cover it.
            (Resolved::PathTooLong, _) => Decision::Deny(Denial {
                status: 414,
                code: "path-too-long".into(),
                reason: format!("the path has more than {MAX_PATH_SEGMENTS} segments"),
            }),
            (_, Unmatched::Allow) => Decision::Allow,
            (_, Unmatched::Deny) => Decision::Deny(Denial {
                status: 403,
                code: "no-route".into(),
                reason: format!("no route covers {} {}", request.method, request.path),
            }),
        };
        Verdict {
            phase,
            route: None,
            decision,
            decided_by: None,
            policies: Vec::new(),
            elapsed_us: start.elapsed().as_micros() as u64,
        }
    }
}

/// Applies the combining rule as results come in.
#[derive(Default)]
struct Combiner {
    results: Vec<PolicyResult>,
    deny: Option<(String, Denial)>,
    approval: Option<(String, crate::decision::Approval)>,
    redactions: Vec<Redaction>,
}

impl Combiner {
    /// Records one policy's result; returns true when evaluation should stop (a deny).
    fn add(&mut self, policy: &Policy, result: Result<Outcome, Fault>, elapsed_us: u64) -> bool {
        let mut record = PolicyResult {
            policy: policy.name().to_owned(),
            digest: policy.digest().to_owned(),
            decision: DecisionKind::Allow,
            code: None,
            reason: String::new(),
            redactions: Vec::new(),
            labels: Vec::new(),
            fault: None,
            elapsed_us,
            approval: None,
        };
        let decision = match result {
            Ok(outcome) => {
                record.labels = outcome.labels;
                outcome.decision
            }
            Err(fault) => {
                record.reason = format!("policy `{}` {fault}", policy.name());
                record.fault = Some(fault.clone());
                if policy.fail_open() {
                    record.reason.push_str(" (fail-open: counted as allow)");
                    tracing::warn!(policy = policy.name(), %fault, "policy failed; fail-open allows");
                    Decision::Allow
                } else {
                    tracing::warn!(policy = policy.name(), %fault, "policy failed; denying (fail-closed)");
                    Decision::Deny(Denial {
                        status: fault.status(),
                        code: "policy-error".into(),
                        reason: record.reason.clone(),
                    })
                }
            }
        };
        record.decision = decision.kind();
        let stop = match decision {
            Decision::Allow => false,
            Decision::Deny(denial) => {
                record.code = Some(denial.code.clone());
                record.reason.clone_from(&denial.reason);
                self.deny = Some((policy.name().to_owned(), denial));
                true
            }
            Decision::Redact { redactions } => {
                for r in &redactions {
                    if !self.redactions.contains(r) {
                        self.redactions.push(r.clone());
                    }
                }
                record.reason = Decision::Redact { redactions: redactions.clone() }.reason();
                record.redactions = redactions;
                false
            }
            Decision::RequireApproval(approval) => {
                record.reason.clone_from(&approval.reason);
                record.approval = Some(approval.clone());
                if self.approval.is_none() {
                    self.approval = Some((policy.name().to_owned(), approval));
                }
                false
            }
        };
        self.results.push(record);
        stop
    }

    fn finish(self, phase: Phase, route: String, elapsed_us: u64) -> Verdict {
        let (decision, decided_by) = if let Some((by, denial)) = self.deny {
            (Decision::Deny(denial), Some(by))
        } else if let Some((by, approval)) = self.approval {
            (Decision::RequireApproval(approval), Some(by))
        } else if !self.redactions.is_empty() {
            (Decision::Redact { redactions: self.redactions }, None)
        } else {
            (Decision::Allow, None)
        };
        Verdict { phase, route: Some(route), decision, decided_by, policies: self.results, elapsed_us }
    }
}
