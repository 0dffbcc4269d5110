//! Holding a caller's request open while an approver decides (`hold` on a route or a
//! policy, docs/approvals.md "Holding the request").
//!
//! When the gate answers approval-required and the request's route (or the policy that
//! asked) has a `hold`, the proxy and MCP doors do not answer at once: they wait, as a
//! future (no thread), until the approval is decided, the hold runs out, the caller goes
//! away or the server stops. A decision made through this process (admin API, inbox) wakes
//! the wait at once through the gate's event sink ([`DecisionWatch`]); one made elsewhere
//! (another replica, `portcullis approvals` on the store) is seen by reading the store every
//! [`POLL`] or so. Once decided, the door runs the gate again as the retry with the approval
//! id would ([`Holding::redeem`]), so the approval is redeemed exactly once and the current
//! policies judge the request again.
//!
//! Held requests are capped (`[approvals] max_held`): past the cap a request gets the usual
//! approval-required answer at once. Each hold is a [`Held`] guard, so the count is given
//! back however the wait ends, a caller that disconnects included.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use portcullis_host::RouteMatch;
use portcullis_host::approval::{Approval, ApprovalState, ApprovalStore, DecisionWatch};
use portcullis_host::config::Holds;
use portcullis_host::exchange::Request;
use portcullis_host::gate::{APPROVAL_HEADER, Admission, Arrival, Gate, Refusal};
use portcullis_host::identity::ClientCertificate;
use tokio::sync::watch;

use super::http::Judge;
use super::metrics::Metrics;

/// How often a held request reads the store for a decision made elsewhere (plus up to as
/// much again of jitter, so many held requests do not read it in step).
pub const POLL: Duration = Duration::from_millis(250);

/// The process's held requests: how many there are, the cap, the holds of the config
/// generation serving, and the watch that wakes them.
pub struct Holding {
    holds: ArcSwap<Holds>,
    max: usize,
    held: AtomicUsize,
    watch: Arc<DecisionWatch>,
    metrics: Arc<Metrics>,
}

/// How a hold ended, as counted in `portcullis_hold_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Approved and forwarded.
    Approved,
    /// Rejected (or expired, or used by another retry): the gate's refusal.
    Rejected,
    /// The hold ran out: the approval-required answer.
    Timeout,
    /// The cap was reached: the approval-required answer at once.
    OverCap,
    /// The server is stopping: the approval-required answer.
    Shutdown,
    /// The caller went away before an answer.
    Gone,
}

impl Outcome {
    /// The metric label and log word.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Approved => "approved",
            Outcome::Rejected => "rejected",
            Outcome::Timeout => "timeout",
            Outcome::OverCap => "over_cap",
            Outcome::Shutdown => "shutdown",
            Outcome::Gone => "gone",
        }
    }
}

/// Why a wait ended.
enum Waited {
    /// The approvals are no longer all pending: run the gate again.
    Decided,
    /// The hold ran out.
    Timeout,
    /// The server is stopping.
    Shutdown,
}

impl Holding {
    /// Holds as `holds` says, at most `max` requests at once.
    pub fn new(holds: Holds, max: usize, metrics: Arc<Metrics>) -> Holding {
        metrics.held(0);
        Holding { holds: ArcSwap::from_pointee(holds), max, held: AtomicUsize::new(0), watch: Arc::default(), metrics }
    }

    /// The event sink that wakes held requests; the gate's events go here too.
    pub fn watch(&self) -> Arc<DecisionWatch> {
        self.watch.clone()
    }

    /// A reload's holds (a request already held keeps its deadline).
    pub fn set_holds(&self, holds: Holds) {
        self.holds.store(Arc::new(holds));
    }

    /// Whether a request on `route` may be held, so the door keeps what its redemption
    /// needs: the request as it arrived, before the gate strips its credentials
    /// (`strip_credentials`) — the redemption authenticates it again.
    pub fn may_hold(&self, route: &RouteMatch) -> bool {
        let holds = self.holds.load();
        !holds.is_empty()
            && route.route().is_some_and(|r| holds.may_hold(r.name(), r.policies().iter().map(|p| p.name())))
    }

    /// How long to hold `request`, refused with `refusal`: only an `approval-required`
    /// answer that names approvals, on a route or for a policy with a `hold`.
    pub fn hold_for(&self, gate: &Gate, request: &Request, refusal: &Refusal) -> Option<Duration> {
        if refusal.code != "approval-required" || refusal.approval.is_none() || gate.approvals().is_none() {
            return None;
        }
        let route = gate.route(request);
        self.holds.load().hold(route.route()?.name(), refusal.policy.as_deref())
    }

    /// Takes one of the `max_held` places, or counts `over_cap` and gives `None`.
    fn take(self: &Arc<Self>) -> Option<Held> {
        let taken = self.held.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1));
        if let Ok(n) = taken {
            self.metrics.held(n + 1);
            Some(Held { holding: self.clone(), since: Instant::now(), outcome: None })
        } else {
            self.metrics.hold_ended(Outcome::OverCap.as_str());
            None
        }
    }

    /// Holds `request` (as it arrived, before the gate; refused with `refusal`, whose
    /// approvals it waits on) for up to `hold`, then: approved, the door's `arrive` (its
    /// `Arrival::take` with what it knows of the exchange, e.g. the MCP door's facts) and the gate's admission of it as the retry with the approval id
    /// (`Ok`: forward it, with the gate that admitted it); anything else, the answer to give
    /// (`Err`): the gate's refusal once decided otherwise, or `refusal` itself when the
    /// hold runs out, the cap is reached or the server stops. Dropping the future (the
    /// caller went away) stops waiting; the approval stays pending for a later retry.
    #[allow(clippy::too_many_arguments)]
    pub async fn redeem(
        self: &Arc<Self>,
        live: &super::live::Live,
        judge: Judge,
        (front_door, arrive): (&'static str, impl FnOnce(&mut Request) -> Arrival),
        mut request: Request,
        certificate: Option<ClientCertificate>,
        refusal: Refusal,
        hold: Duration,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Arc<Gate>, Box<portcullis_host::gate::Ticket>), Refusal> {
        let (Some(store), Some(notice)) = (live.keep().approvals.clone(), refusal.approval.clone()) else {
            return Err(refusal);
        };
        let Some(mut held) = self.take() else { return Err(refusal) };
        let ids: Vec<String> = notice.ids().into_iter().map(str::to_owned).collect();
        let waited = held.wait(&self.watch, store, &ids, hold, shutdown).await;
        let request_id = request.id.clone();
        let (outcome, answer) = match waited {
            Waited::Timeout => (Outcome::Timeout, Err(refusal)),
            Waited::Shutdown => (Outcome::Shutdown, Err(refusal)),
            Waited::Decided => {
                // The retry the caller would send, judged by the policies serving now.
                let gate = live.gate();
                request.headers.push((APPROVAL_HEADER.to_owned(), notice.id.clone()));
                let arrival = arrive(&mut request);
                let route = gate.route(&request);
                let arrival = arrival.with_route(route).with_client_certificate(certificate);
                match judge.run(|| gate.admit(&mut request, arrival)) {
                    Admission::Forward(ticket) => (Outcome::Approved, Ok((gate, ticket))),
                    Admission::Refuse(refused) => (Outcome::Rejected, Err(refused)),
                }
            }
        };
        held.end(outcome, &request_id, front_door);
        answer
    }
}

/// One held request's place among the `max_held`: given back when dropped, counted `gone`
/// when dropped before an outcome was set (the caller went away).
pub struct Held {
    holding: Arc<Holding>,
    since: Instant,
    outcome: Option<Outcome>,
}

impl Held {
    /// Waits until one of `ids` is decided (seen through the watch, or in the store), the
    /// hold runs out, or the server stops.
    async fn wait(
        &self,
        watch: &Arc<DecisionWatch>,
        store: Arc<dyn ApprovalStore>,
        ids: &[String],
        hold: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) -> Waited {
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let subscription = watch.subscribe(&refs);
        let deadline = tokio::time::Instant::from_std(self.since + hold);
        loop {
            if *shutdown.borrow() {
                return Waited::Shutdown;
            }
            tokio::select! {
                () = subscription.changed() => {}
                () = tokio::time::sleep(POLL + jitter()) => {}
                () = tokio::time::sleep_until(deadline) => return Waited::Timeout,
                _ = shutdown.changed() => return Waited::Shutdown,
            }
            if decided(&store, ids).await {
                return Waited::Decided;
            }
        }
    }

    /// Sets how the hold ended, counts it and logs it.
    fn end(&mut self, outcome: Outcome, request_id: &str, front_door: &str) {
        self.outcome = Some(outcome);
        let waited_ms = self.since.elapsed().as_millis() as u64;
        self.holding.metrics.hold_ended(outcome.as_str());
        tracing::info!(request_id, front_door, waited_ms, result = outcome.as_str(), "held request answered");
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let left = self.holding.held.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
        self.holding.metrics.held(left);
        if self.outcome.is_none() {
            self.holding.metrics.hold_ended(Outcome::Gone.as_str());
            let waited_ms = self.since.elapsed().as_millis() as u64;
            tracing::info!(waited_ms, result = "gone", "held request's caller went away; the approval stays pending");
        }
    }
}

/// Whether the approvals `ids` are no longer all pending: all approved (redeem them), or one
/// rejected, used, expired or gone (the gate says which). A store that fails is asked again
/// at the next poll.
async fn decided(store: &Arc<dyn ApprovalStore>, ids: &[String]) -> bool {
    let (store, ids) = (store.clone(), ids.to_vec());
    let read = tokio::task::spawn_blocking(move || {
        let now = portcullis_host::now_ms();
        ids.iter().map(|id| store.get(id, now)).collect::<Result<Vec<_>, _>>()
    })
    .await;
    match read {
        Ok(Ok(approvals)) => settled(&approvals),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "reading a held request's approvals failed; trying again");
            false
        }
        Err(_) => false,
    }
}

/// All approved, or one that can no longer be (rejected, used, expired, unknown).
fn settled(approvals: &[Option<Approval>]) -> bool {
    let state = |a: &Option<Approval>| a.as_ref().map(|a| a.state);
    approvals.iter().all(|a| state(a) == Some(ApprovalState::Approved))
        || approvals.iter().any(|a| !matches!(state(a), Some(ApprovalState::Pending | ApprovalState::Approved)))
}

/// Up to [`POLL`] more, different for each call.
fn jitter() -> Duration {
    static NEXT: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
    let mut x = NEXT.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    Duration::from_millis(x % (POLL.as_millis() as u64 + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approval(state: ApprovalState) -> Approval {
        Approval { state, ..Approval::default() }
    }

    #[test]
    fn a_hold_ends_when_every_approval_is_approved_or_one_can_no_longer_be() {
        use ApprovalState::{Approved, Expired, Pending, Rejected, Used};
        let some = |state| Some(approval(state));
        assert!(settled(&[some(Approved)]));
        assert!(settled(&[some(Approved), some(Approved)]));
        assert!(!settled(&[some(Pending)]));
        // Two groups asked: one approved is not enough.
        assert!(!settled(&[some(Approved), some(Pending)]));
        for over in [some(Rejected), some(Used), some(Expired), None] {
            assert!(settled(&[some(Pending), over.clone()]), "{over:?}");
        }
    }

    #[test]
    fn the_poll_is_jittered_within_one_more_period() {
        let waits: Vec<Duration> = (0..64).map(|_| jitter()).collect();
        assert!(waits.iter().all(|w| *w <= POLL));
        assert!(waits.iter().any(|w| *w != waits[0]), "not all the same");
    }
}
