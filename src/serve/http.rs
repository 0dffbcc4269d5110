//! What the HTTP front doors share: the body type, answers built from a refusal, capped
//! body reading, hop-by-hop header removal and the accept loop with graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use portcullis_host::gate::{REQUEST_ID_HEADER, Refusal};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Errors a streamed body can carry.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type every front door answers with: buffered or streamed through.
pub type Body = BoxBody<Bytes, BoxError>;

/// A buffered body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never: Infallible| match never {}).boxed()
}

/// A body streamed from hyper as it arrives.
pub fn streamed(body: Incoming) -> Body {
    body.map_err(|e| Box::new(e) as BoxError).boxed()
}

// The client doors forward to upstreams with is `super::upstream::UpstreamClient`.

/// The HTTP answer for a refusal: its status, an RFC 9457 problem body and its headers.
pub fn refusal_response(refusal: &Refusal) -> Response<Body> {
    let body = refusal.problem_body();
    let mut response = Response::new(full(body));
    *response.status_mut() = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::FORBIDDEN);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    for (name, value) in refusal.headers() {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.append(HeaderName::from_static(name), value);
        }
    }
    response
}

/// An answer the front door gives on its own (bad request, body too large, upstream down):
/// the same problem shape as a policy's refusal.
pub fn problem(status: u16, code: &str, reason: impl Into<String>, request_id: &str) -> Response<Body> {
    refusal_response(&Refusal {
        status,
        code: code.into(),
        reason: reason.into(),
        policy: None,
        request_id: request_id.into(),
        approval: None,
    })
}

/// Why a body could not be read whole.
#[derive(Debug)]
pub enum ReadError {
    /// It is larger than the cap.
    TooLarge,
    /// The connection failed while reading it.
    Io(BoxError),
}

/// Reads a body whole, refusing past `cap` bytes without reading further.
pub async fn read_capped<B>(body: B, cap: usize) -> Result<Bytes, ReadError>
where
    B: hyper::body::Body + Send,
    B::Error: Into<BoxError>,
{
    match Limited::new(body, cap).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ReadError::TooLarge),
        Err(e) => Err(ReadError::Io(e)),
    }
}

/// The `Content-Length` a message declares, if one valid value.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// Hop-by-hop header removal, from the library (one definition for every door).
pub use portcullis_host::adapters::forward::strip_hop_by_hop;

/// Sets the request id on an answer.
pub fn with_request_id(mut response: Response<Body>, request_id: &str) -> Response<Body> {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    response
}

/// Accepts HTTP/1.1 connections on `listener` and answers each request with `handle`,
/// until `shutdown` turns true; then stops accepting and waits (up to 10 s) for the
/// requests in flight to finish.
pub async fn serve<F, Fut>(listener: TcpListener, mut shutdown: watch::Receiver<bool>, handle: F)
where
    F: Fn(hyper::Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let handle = handle.clone();
                let service = service_fn(move |req| {
                    let handle = handle.clone();
                    async move { Ok::<_, Infallible>(handle(req, peer).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(30))
                    .serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await.is_err() {
        tracing::warn!("requests still in flight after 10 s; closing them");
    }
}
