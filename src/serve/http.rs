//! What the HTTP front doors share: the body type, answers built from a refusal, capped
//! body reading, hop-by-hop header removal and the accept loop (TLS, HTTP/1.1 and HTTP/2)
//! with graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use portcullis_host::gate::{REQUEST_ID_HEADER, Refusal};
use portcullis_host::identity::ClientCertificate;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::tls::Acceptor;

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
        scope: None,
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

/// How a door runs the gate's synchronous work (authentication, the policies, the audit
/// record) for a request: on the runtime worker that serves the request.
///
/// A hand-off to tokio's blocking pool (`spawn_blocking`) costs two thread wake-ups per
/// phase, tens of microseconds each on a busy machine, for policy calls of a few
/// microseconds: it was most of the proxy's added latency (BENCHMARKS.md, issue 18). Running
/// inline is safe because every policy call is bounded by its `timeout_ms` (epoch
/// interruption): a policy that runs long holds this worker for at most that long, as it
/// held a blocking thread before, and the runtime's other workers take over this one's
/// queued tasks meanwhile. What is not bounded by a policy's timeout is waiting on another
/// server: rate-limit counters on Redis and a networked approval store (each with its own
/// timeout), so with one of those configured the work runs in
/// [`tokio::task::block_in_place`], which hands this worker's other tasks to a new thread
/// before blocking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judge {
    /// On the worker: nothing in the gate waits on another server.
    Inline,
    /// In [`tokio::task::block_in_place`]: the gate may wait on a state backend.
    BlockInPlace,
}

impl Judge {
    /// How to run `live`'s gate: in place of the worker when a state backend (Redis rate-limit
    /// counters, an approval store) is configured, inline otherwise. These survive reloads,
    /// so this is decided once per door.
    pub fn for_live(live: &super::live::Live) -> Judge {
        let networked = live.state_health().iter().any(|health| health.backend != "memory");
        if networked || live.keep().approvals.is_some() { Judge::BlockInPlace } else { Judge::Inline }
    }

    /// Runs `work` as this judge says. Only on the multi-threaded runtime `serve` builds.
    pub fn run<T>(self, work: impl FnOnce() -> T) -> T {
        match self {
            Judge::Inline => work(),
            Judge::BlockInPlace => tokio::task::block_in_place(work),
        }
    }
}

/// A door's listening socket and how it speaks there.
pub struct Listener {
    /// The bound socket.
    pub tcp: TcpListener,
    /// TLS, when the door's section has `[server.<door>.tls]`: HTTP/2 then when the client
    /// picks `h2` among the protocols the acceptor offers (ALPN), HTTP/1.1 otherwise.
    pub tls: Option<Arc<Acceptor>>,
    /// On a plaintext listener, also accept HTTP/2 with prior knowledge (h2c) beside
    /// HTTP/1.1.
    pub h2c: bool,
}

/// What a request's connection established, put in every request's extensions by
/// [`serve`] for the door to read.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The client certificate the TLS handshake verified against the listener's client CA.
    pub client_certificate: Option<ClientCertificate>,
}

/// The verified client certificate of the connection `extensions` came with (a request's
/// parts), for [`portcullis_host::gate::Arrival::with_client_certificate`].
pub fn client_certificate(extensions: &http::Extensions) -> Option<ClientCertificate> {
    extensions.get::<Connection>().and_then(|c| c.client_certificate.clone())
}

/// How long a client has to send a request's headers (HTTP/1.1), or its first bytes (h2c).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Which HTTP a connection speaks.
#[derive(Debug, Clone, Copy)]
enum Speaks {
    Http1,
    Http2,
    /// Either, told apart by the HTTP/2 preface (h2c with prior knowledge).
    Either,
}

/// Accepts connections on `listener` (TLS handshakes on their own tasks, within a deadline)
/// and answers each request with `handle`, until `shutdown` turns true; then stops
/// accepting and waits (up to 10 s) for the requests in flight to finish.
///
/// Each request carries its [`Connection`] in its extensions. On a TLS connection its
/// scheme is `https`: a URI that names another one (an HTTP/2 `:scheme`, an HTTP/1.1
/// absolute-form target) is given `https` before the door sees it, so policies judge the
/// scheme the caller really used.
pub async fn serve<F, Fut>(listener: Listener, mut shutdown: watch::Receiver<bool>, handle: F)
where
    F: Fn(hyper::Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let Listener { tcp, tls, h2c } = listener;
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = tcp.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let (handle, tls, watcher) = (handle.clone(), tls.clone(), graceful.watcher());
                tokio::spawn(async move {
                    let Some(acceptor) = tls else {
                        let speaks = if h2c { Speaks::Either } else { Speaks::Http1 };
                        // Telling HTTP/2 from HTTP/1.1 waits for the first bytes, before
                        // HTTP/1.1's header timeout starts: a client that sends nothing is
                        // closed after the same 30 s.
                        if h2c && tokio::time::timeout(HEADER_READ_TIMEOUT, stream.peek(&mut [0u8; 1])).await.is_err() {
                            return;
                        }
                        return connection(TokioIo::new(stream), Connection::default(), speaks, peer, handle, watcher).await;
                    };
                    match acceptor.accept(stream).await {
                        Ok((stream, client_certificate)) => {
                            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
                            let speaks = if h2 { Speaks::Http2 } else { Speaks::Http1 };
                            let conn = Connection { tls: true, client_certificate };
                            connection(TokioIo::new(stream), conn, speaks, peer, handle, watcher).await;
                        }
                        Err(e) => tracing::debug!(error = %format!("{e:#}"), %peer, door = acceptor.section(), "TLS connection refused"),
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(tcp);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await.is_err() {
        tracing::warn!("requests still in flight after 10 s; closing them");
    }
}

/// Serves one connection until it closes (or, on shutdown, until its requests in flight
/// are answered).
async fn connection<I, F, Fut>(io: I, conn: Connection, speaks: Speaks, peer: SocketAddr, handle: F, watcher: Watcher)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    F: Fn(hyper::Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let service = service_fn(move |mut req: hyper::Request<Incoming>| {
        let handle = handle.clone();
        if conn.tls {
            force_https(&mut req);
        }
        req.extensions_mut().insert(conn.clone());
        async move { Ok::<_, Infallible>(handle(req, peer).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    // HTTP/2 pings a quiet connection and closes it when the peer stops answering.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    let builder = match speaks {
        Speaks::Http1 => builder.http1_only(),
        Speaks::Http2 => builder.http2_only(),
        Speaks::Either => builder,
    };
    if let Err(e) = watcher.watch(builder.serve_connection(io, service)).await {
        tracing::debug!(error = %e, %peer, "connection ended with an error");
    }
}

/// Gives a URI that names a scheme the scheme `https` (a request on a TLS connection).
fn force_https(req: &mut hyper::Request<Incoming>) {
    if req.uri().scheme().is_none_or(|scheme| *scheme == http::uri::Scheme::HTTPS) {
        return;
    }
    let mut parts = req.uri().clone().into_parts();
    parts.scheme = Some(http::uri::Scheme::HTTPS);
    if let Ok(uri) = http::Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
}
