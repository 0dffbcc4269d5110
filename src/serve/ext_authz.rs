//! The Envoy ext_authz front door: the gRPC service `envoy.service.auth.v3.Authorization`
//! that Envoy's HTTP `ext_authz` filter asks before it passes a request on.
//!
//! Each `Check` is converted into the normalised request
//! (`portcullis_host::adapters::ext_authz`), admitted by the live gate (authentication,
//! policies, approvals and the audit record all happen there) and answered: `OK` with the
//! header and query changes Envoy must make, or a denied answer with the refusal's status
//! and problem body. A check that cannot be converted is denied (400 `bad-request`), never
//! allowed. Only the request phase exists: Envoy does not show responses to an
//! authorization service, and it cannot rewrite bodies, so a body redaction that would
//! change the body is refused (403 `redaction-unenforceable`).

use std::future::Future;

use envoy_types::ext_authz::v3::pb::{Authorization, AuthorizationServer};
use portcullis_host::adapters::ext_authz::{
    CheckRequest, CheckResponse, FromCheck, bad_request, check_response, refusal_response, request_from_check,
};
use portcullis_host::gate::{Arrival, BodyReach, Reach, Refusal};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use super::live::Live;

/// The front door's name in the audit log.
const FRONT_DOOR: &str = "ext-authz";

/// The `Authorization` service over the live gate.
#[derive(Clone)]
pub struct ExtAuthz {
    live: Live,
}

impl ExtAuthz {
    /// A service answering with whatever gate is live when each check arrives.
    pub fn new(live: Live) -> ExtAuthz {
        ExtAuthz { live }
    }

    /// Answers one check.
    pub async fn answer(&self, check: CheckRequest) -> CheckResponse {
        // Keep this gate for the whole check, even if a reload swaps in another.
        let gate = self.live.gate();
        let opts = FromCheck {
            received_at_ms: portcullis_host::now_ms(),
            target_rules: gate.target_rules(),
            ..FromCheck::default()
        };
        let mut checked = match request_from_check(&check, &opts) {
            Ok(checked) => checked,
            Err(e) => {
                tracing::debug!(error = %e, "ext_authz check refused as malformed");
                return bad_request(&check, &e);
            }
        };
        // Envoy can change headers and query parameters, never the body; with the whole
        // body in hand a redaction that changes nothing in it can still pass.
        let body = if checked.body.is_complete() { BodyReach::ReadOnly } else { BodyReach::Unseen };
        let arrival = Arrival::take(FRONT_DOOR, Reach { query: true, body }, &mut checked.request);
        // A token with an unknown `kid` may be signed by the issuer's new key.
        self.live.refresh_keys(&gate, &checked.request).await;
        let request_id = checked.request.id.clone();
        // Evaluation is synchronous CPU work: keep it off the async workers.
        let admitted = tokio::task::spawn_blocking(move || {
            let admission = gate.admit(&mut checked.request, arrival);
            (checked, admission)
        })
        .await;
        match admitted {
            Ok((checked, admission)) => check_response(&checked, &admission),
            Err(e) => {
                tracing::error!(error = %e, request_id = %request_id, "ext_authz evaluation stopped unexpectedly");
                refusal_response(&Refusal {
                    status: 500,
                    code: "policy-error".into(),
                    reason: "the evaluation stopped unexpectedly".into(),
                    policy: None,
                    request_id,
                    approval: None,
                })
            }
        }
    }
}

#[tonic::async_trait]
impl Authorization for ExtAuthz {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        Ok(tonic::Response::new(self.answer(request.into_inner()).await))
    }
}

/// Serves the ext_authz gRPC service on `listener` until `shutdown` completes, then lets
/// checks in flight finish.
pub async fn serve(
    listener: TcpListener,
    live: Live,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    tonic::transport::Server::builder()
        .serve_with_incoming_shutdown(
            AuthorizationServer::new(ExtAuthz::new(live)),
            TcpListenerStream::new(listener),
            shutdown,
        )
        .await
        .map_err(|e| anyhow::anyhow!("the ext_authz service failed: {e}"))
}
