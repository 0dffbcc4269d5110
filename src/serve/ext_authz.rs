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
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use envoy_types::ext_authz::v3::pb::{Authorization, AuthorizationServer};
use portcullis_host::adapters::ext_authz::{
    CheckRequest, CheckResponse, FromCheck, bad_request, check_response, request_from_check,
};
use portcullis_host::gate::{Arrival, BodyReach, Reach};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};

use super::http::Judge;
use super::live::Live;
use super::tls::Acceptor;

/// The front door's name in the audit log.
const FRONT_DOOR: &str = "ext-authz";

/// The `Authorization` service over the live gate.
#[derive(Clone)]
pub struct ExtAuthz {
    live: Live,
    /// Where the gate's work runs ([`Judge`]).
    judge: Judge,
}

impl ExtAuthz {
    /// A service answering with whatever gate is live when each check arrives.
    pub fn new(live: Live) -> ExtAuthz {
        let judge = Judge::for_live(&live);
        ExtAuthz { live, judge }
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
        // The gate runs on this check's worker, as on the proxy and forward-auth doors
        // (see [`Judge`]): no hand-off to the blocking pool for microseconds of policy work.
        let admission = self.judge.run(|| gate.admit(&mut checked.request, arrival));
        check_response(&checked, &admission)
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
/// checks in flight finish. With `tls`, over TLS (ALPN `h2`): each handshake runs on its
/// own task within a deadline, and a connection that fails it never reaches the service.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<Acceptor>>,
    live: Live,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let server = tonic::transport::Server::builder();
    let service = AuthorizationServer::new(ExtAuthz::new(live));
    let served = match tls {
        None => server.serve_with_incoming_shutdown(service, TcpListenerStream::new(listener), shutdown).await,
        Some(acceptor) => {
            server.serve_with_incoming_shutdown(service, tls_incoming(listener, acceptor), shutdown).await
        }
    };
    served.map_err(|e| anyhow::anyhow!("the ext_authz service failed: {e}"))
}

/// The connections that completed their TLS handshake, as a stream for tonic. The accept
/// loop ends when tonic drops the stream (on shutdown).
fn tls_incoming(listener: TcpListener, acceptor: Arc<Acceptor>) -> ReceiverStream<std::io::Result<TlsConnection>> {
    let (sender, receiver) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = sender.closed() => return,
            };
            let _ = stream.set_nodelay(true);
            let (acceptor, sender) = (acceptor.clone(), sender.clone());
            tokio::spawn(async move {
                match acceptor.accept(stream).await {
                    Ok((stream, _)) => {
                        let _ = sender.send(Ok(TlsConnection(stream))).await;
                    }
                    Err(e) => {
                        tracing::debug!(error = %format!("{e:#}"), %peer, door = "ext_authz", "TLS connection refused");
                    }
                }
            });
        }
    });
    ReceiverStream::new(receiver)
}

/// A TLS connection as tonic serves it. Envoy's certificate (on a mutual-TLS listener) only
/// admits the connection: the principal of each check comes from the request Envoy
/// describes, never from the proxy that asks.
pub struct TlsConnection(tokio_rustls::server::TlsStream<TcpStream>);

impl tonic::transport::server::Connected for TlsConnection {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.get_ref().0.connect_info()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}
