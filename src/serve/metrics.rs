//! Prometheus metrics for `/metrics`, counted from the audit records themselves, so what
//! the metrics say and what the audit log says can never disagree.

use std::sync::Arc;

use portcullis_host::audit::{AuditRecord, AuditSink};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    door: String,
    phase: String,
    route: String,
    decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    policy: String,
    phase: String,
    decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyOnly {
    policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DoorLabels {
    door: String,
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuerResult {
    issuer: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    role: String,
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuerLabels {
    issuer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotifyLabels {
    target: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApprovalEventLabels {
    event: String,
    group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    group: String,
}

/// The service's metrics.
pub struct Metrics {
    registry: Registry,
    approval_events: Family<ApprovalEventLabels, Counter>,
    approvals_pending: Family<GroupLabels, Gauge>,
    decisions: Family<DecisionLabels, Counter>,
    policy_decisions: Family<PolicyLabels, Counter>,
    policy_errors: Family<PolicyOnly, Counter>,
    latency: Family<DoorLabels, Histogram>,
    policy_latency: Family<PolicyOnly, Histogram>,
    reloads: Family<ResultLabels, Counter>,
    jwks_fetches: Family<IssuerResult, Counter>,
    jwks_age: Family<IssuerLabels, Gauge>,
    jwks_keys: Family<IssuerLabels, Gauge>,
    state_up: Family<StateLabels, Gauge>,
    state_errors: Family<StateLabels, Gauge>,
    state_fallbacks: Family<StateLabels, Gauge>,
    notifications: Family<NotifyLabels, Counter>,
    held_requests: Gauge,
    holds: Family<ResultLabels, Counter>,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("portcullis");
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register("decisions", "Combined decisions by front door, phase, route and kind", decisions.clone());
        let policy_decisions = Family::<PolicyLabels, Counter>::default();
        registry.register("policy_decisions", "Each policy's decisions by phase and kind", policy_decisions.clone());
        let policy_errors = Family::<PolicyOnly, Counter>::default();
        registry.register(
            "policy_errors",
            "Policy calls that trapped, timed out, ran out of memory or returned something invalid",
            policy_errors.clone(),
        );
        // 10 µs .. ~10 s.
        let latency = Family::<DoorLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_01, 2.0, 21))
        });
        registry.register(
            "decision_seconds",
            "Time from arrival to decision, by front door and phase",
            latency.clone(),
        );
        let policy_latency = Family::<PolicyOnly, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_001, 2.0, 21))
        });
        registry.register("policy_seconds", "Time of one policy call, instantiation included", policy_latency.clone());
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register("reloads", "Config reloads by result (ok or error)", reloads.clone());
        let jwks_fetches = Family::<IssuerResult, Counter>::default();
        registry.register(
            "jwks_fetch",
            "Fetches of JWT keys from issuers (jwks_url, discovery) by issuer and result (ok or error)",
            jwks_fetches.clone(),
        );
        let jwks_age = Family::<IssuerLabels, Gauge>::default();
        registry.register(
            "jwks_age_seconds",
            "Age of the JWT keys held for each issuer that publishes them (-1: none loaded yet)",
            jwks_age.clone(),
        );
        let jwks_keys = Family::<IssuerLabels, Gauge>::default();
        registry.register("jwks_keys", "JWT keys held for each issuer that publishes them", jwks_keys.clone());
        let state_up = Family::<StateLabels, Gauge>::default();
        registry.register(
            "state_up",
            "Whether a state backend's last operation succeeded (1) or failed (0)",
            state_up.clone(),
        );
        let state_errors = Family::<StateLabels, Gauge>::default();
        registry.register(
            "state_errors",
            "State backend operations that failed or timed out since start",
            state_errors.clone(),
        );
        let state_fallbacks = Family::<StateLabels, Gauge>::default();
        registry.register(
            "state_fallbacks",
            "Requests let through (on_error = allow) or counted locally (on_error = local) since start because a state backend failed",
            state_fallbacks.clone(),
        );
        let notifications = Family::<NotifyLabels, Counter>::default();
        registry.register(
            "notifications",
            "Approval notifications by [[approvals.notify]] target and result: sent, failed (every attempt failed) or \
             dropped (the target's queue was full)",
            notifications.clone(),
        );
        let approval_events = Family::<ApprovalEventLabels, Counter>::default();
        registry.register(
            "approval_events",
            "Approval events written to the audit log, by event (pending, approved, rejected, redeemed, expired) and \
             approver group",
            approval_events.clone(),
        );
        let approvals_pending = Family::<GroupLabels, Gauge>::default();
        registry.register(
            "approvals_pending",
            "Approvals waiting for an approver now, by approver group (read from the store at each scrape)",
            approvals_pending.clone(),
        );
        let (held_requests, holds) = register_holds(&mut registry);
        Metrics {
            registry,
            held_requests,
            holds,
            approval_events,
            approvals_pending,
            decisions,
            policy_decisions,
            policy_errors,
            latency,
            policy_latency,
            reloads,
            jwks_fetches,
            jwks_age,
            jwks_keys,
            state_up,
            state_errors,
            state_fallbacks,
            notifications,
        }
    }

    /// Shows `target`'s notification counters at zero, before anything is sent.
    pub fn notify_target(&self, target: &str) {
        for result in ["sent", "failed", "dropped"] {
            let _ =
                self.notifications.get_or_create(&NotifyLabels { target: target.to_owned(), result: result.into() });
        }
    }

    /// Counts one notification for `target`: `sent`, `failed` or `dropped`.
    pub fn notified(&self, target: &str, result: &str) {
        self.notifications.get_or_create(&NotifyLabels { target: target.to_owned(), result: result.to_owned() }).inc();
    }

    /// Sets the state backends' gauges (rate-limit counters, approval store).
    pub fn state(&self, backends: &[portcullis_host::state::Health]) {
        for health in backends {
            let labels = StateLabels { role: health.role.to_owned(), backend: health.backend.to_owned() };
            self.state_up.get_or_create(&labels).set(i64::from(health.up));
            self.state_errors.get_or_create(&labels).set(i64::try_from(health.errors).unwrap_or(i64::MAX));
            self.state_fallbacks.get_or_create(&labels).set(i64::try_from(health.fallbacks).unwrap_or(i64::MAX));
        }
    }

    /// Counts a fetch of an issuer's keys.
    pub fn jwks_fetched(&self, issuer: &str, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.jwks_fetches.get_or_create(&IssuerResult { issuer: issuer.to_owned(), result: result.into() }).inc();
    }

    /// Sets an issuer's key-set gauges: the age of the keys held (none: -1) and their count.
    pub fn jwks_state(&self, issuer: &str, age_s: Option<u64>, keys: usize) {
        let labels = IssuerLabels { issuer: issuer.to_owned() };
        self.jwks_age.get_or_create(&labels).set(age_s.map_or(-1, |a| i64::try_from(a).unwrap_or(i64::MAX)));
        self.jwks_keys.get_or_create(&labels).set(i64::try_from(keys).unwrap_or(i64::MAX));
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }

    /// Sets how many requests are held now.
    pub fn held(&self, count: usize) {
        self.held_requests.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Counts a hold that ended with `result` (`approved`, `rejected`, `timeout`, `over_cap`,
    /// `shutdown`, `gone`).
    pub fn hold_ended(&self, result: &str) {
        self.holds.get_or_create(&ResultLabels { result: result.to_owned() }).inc();
    }

    /// Counts a reload attempt.
    pub fn reloaded(&self, ok: bool) {
        self.reloads.get_or_create(&ResultLabels { result: if ok { "ok" } else { "error" }.into() }).inc();
    }

    /// Sets the pending-approvals gauge from the store's counts by group (groups no longer
    /// pending drop out).
    pub fn approvals_pending(&self, counts: &[(String, u64)]) {
        self.approvals_pending.clear();
        for (group, count) in counts {
            self.approvals_pending
                .get_or_create(&GroupLabels { group: group.clone() })
                .set(i64::try_from(*count).unwrap_or(i64::MAX));
        }
    }

    /// Counts one decision record, or one approval event's record.
    pub fn observe(&self, record: &AuditRecord) {
        if let Some(approval) = &record.approval {
            self.approval_events
                .get_or_create(&ApprovalEventLabels { event: approval.event.clone(), group: approval.group.clone() })
                .inc();
            return;
        }
        let phase = record.phase.to_string();
        self.decisions
            .get_or_create(&DecisionLabels {
                door: record.front_door.clone(),
                phase: phase.clone(),
                route: record.route.clone().unwrap_or_default(),
                decision: record.outcome(),
            })
            .inc();
        self.latency
            .get_or_create(&DoorLabels { door: record.front_door.clone(), phase: phase.clone() })
            .observe(record.latency_us as f64 / 1e6);
        for policy in &record.policies {
            self.policy_decisions
                .get_or_create(&PolicyLabels {
                    policy: policy.policy.clone(),
                    phase: phase.clone(),
                    decision: policy.decision.to_string(),
                })
                .inc();
            self.policy_latency
                .get_or_create(&PolicyOnly { policy: policy.policy.clone() })
                .observe(policy.elapsed_us as f64 / 1e6);
            if policy.fault.is_some() {
                self.policy_errors.get_or_create(&PolicyOnly { policy: policy.policy.clone() }).inc();
            }
        }
    }
}

/// The held requests' gauge and outcome counter (`hold` on routes and policies).
fn register_holds(registry: &mut Registry) -> (Gauge, Family<ResultLabels, Counter>) {
    let held_requests = Gauge::default();
    registry.register(
        "held_requests",
        "Requests held open now while an approver decides (`hold`), at most [approvals] max_held",
        held_requests.clone(),
    );
    let holds = Family::<ResultLabels, Counter>::default();
    registry.register(
        "hold",
        "Held requests by how the hold ended: approved (forwarded), rejected, timeout, over_cap (not held: the cap \
         was reached), shutdown, gone (the caller went away)",
        holds.clone(),
    );
    (held_requests, holds)
}

/// An audit sink that counts every record in the metrics and passes it on to the
/// configured sink, if any.
pub struct Observed {
    /// The configured audit sink.
    pub inner: Option<Arc<dyn AuditSink>>,
    /// Where counts go.
    pub metrics: Arc<Metrics>,
}

impl AuditSink for Observed {
    fn record(&self, record: &AuditRecord) {
        self.metrics.observe(record);
        if let Some(inner) = &self.inner {
            inner.record(record);
        }
    }

    fn flush(&self) -> std::io::Result<()> {
        match &self.inner {
            Some(inner) => inner.flush(),
            None => Ok(()),
        }
    }
}
