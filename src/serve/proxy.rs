//! The reverse proxy: every request passes the gate before the upstream sees it, and
//! every response passes it again before the caller does.
//!
//! What the upstream gets is built by the library from what the policies judged
//! (`adapters::forward`): the canonical target, the headers as the gate left them, the
//! headers the host derives. A body is read (up to the cap) when a policy runs in its phase,
//! so the gate redacts exactly what is passed on, and the audit records exactly what was
//! redacted; with no policy in a phase, the body streams through untouched. A redaction
//! that cannot be guaranteed refuses the message rather than passing it unredacted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use portcullis_host::adapters::forward::{downstream_response, strip_hop_by_hop, take_incoming, upstream_request};
use portcullis_host::adapters::http::{FromHttp, canonical_request_from_http, response_from_http};
use portcullis_host::config::ProxySection;
use portcullis_host::exchange::Body as ExchangeBody;
use portcullis_host::gate::{Admission, Arrival, Gate, Reach, Refusal, Release, Ticket};
use portcullis_host::identity::ClientCertificate;
use portcullis_host::{CanonicalTarget, Phase, Redaction};
use tokio::sync::watch;

use super::http::{
    Body, Judge, Listener, ReadError, client_certificate, content_length, full, problem, read_capped, refusal_response,
    streamed, with_request_id,
};
use super::live::Live;
use super::upstream::{DoorUpstream, UpstreamClient, UpstreamError};

/// Where allowed requests go: `http://` or `https://` (checked by [`DoorUpstream::new`]).
#[derive(Debug, Clone)]
struct Upstream {
    scheme: Scheme,
    authority: Authority,
    /// A path prefix put in front of every request's path ("" for none).
    base_path: String,
}

impl Upstream {
    fn of(uri: &Uri) -> Upstream {
        Upstream {
            scheme: uri.scheme().cloned().unwrap_or(Scheme::HTTP),
            authority: uri.authority().cloned().unwrap_or_else(|| Authority::from_static("localhost")),
            base_path: uri.path().trim_end_matches('/').to_owned(),
        }
    }

    /// The upstream URI for a request's path and query.
    fn uri(&self, original: &Uri) -> Result<Uri, http::Error> {
        let path_and_query = original.path_and_query().map_or("/", PathAndQuery::as_str);
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(format!("{}{}", self.base_path, path_and_query))
            .build()
    }
}

/// The proxy's state shared by every connection.
struct Proxy {
    live: Live,
    section: ProxySection,
    upstream: Upstream,
    client: UpstreamClient,
    /// Where the gate's work runs ([`Judge`]).
    judge: Judge,
    /// Held requests end with the approval-required answer when this turns true.
    shutdown: watch::Receiver<bool>,
}

/// A request or response body: still streaming, or read whole.
enum Payload {
    Streaming(Incoming),
    Buffered(Bytes),
}

impl Payload {
    /// Reads the body whole if it is still streaming.
    async fn buffer(self, cap: usize) -> Result<Bytes, ReadError> {
        match self {
            Payload::Buffered(bytes) => Ok(bytes),
            Payload::Streaming(body) => read_capped(body, cap).await,
        }
    }

    fn into_body(self) -> Body {
        match self {
            Payload::Buffered(bytes) => full(bytes),
            Payload::Streaming(body) => streamed(body),
        }
    }

    /// As [`Payload::into_body`], with a streamed body cut off past `cap` bytes: the
    /// upstream sees the request fail rather than more than the cap (a chunked request
    /// declares no length to refuse up front).
    fn into_capped_body(self, cap: usize) -> Body {
        match self {
            Payload::Buffered(bytes) => full(bytes),
            Payload::Streaming(body) => http_body_util::Limited::new(body, cap).boxed(),
        }
    }
}

/// Runs the reverse proxy on `listener` until `shutdown`, forwarding to `upstream` (built
/// from the section before the door listens).
pub async fn serve(
    listener: Listener,
    live: Live,
    section: ProxySection,
    upstream: DoorUpstream,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let client = upstream.client;
    let upstream = Upstream::of(&upstream.uri);
    let judge = Judge::for_live(&live);
    let proxy = Arc::new(Proxy { live, section, upstream, client, judge, shutdown: shutdown.clone() });
    super::http::serve(listener, shutdown, move |req, peer| {
        let proxy = proxy.clone();
        async move { proxy.handle(req, peer).await }
    })
    .await;
    Ok(())
}

/// A request read and normalised at the proxy, ready for the gate: its arrival carries the
/// route found for it, so the gate does not look it up again.
struct Arrived {
    request: portcullis_host::exchange::Request,
    target: CanonicalTarget,
    arrival: Arrival,
    payload: Payload,
    /// The request before the gate and its connection's client certificate, kept when it
    /// may be held: its redemption authenticates it again.
    kept: Option<Kept>,
}

/// What a held request's redemption starts from.
struct Kept {
    request: portcullis_host::exchange::Request,
    certificate: Option<ClientCertificate>,
}

impl Proxy {
    /// One request, phase by phase: read and normalise it, admit it, forward it, and
    /// release the upstream's response to the caller.
    async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let gate = self.live.gate();
        let Arrived { mut request, target, arrival, payload, kept } = match self.arrive(&gate, req, peer).await {
            Ok(arrived) => arrived,
            Err(answer) => return *answer,
        };
        // A token with an unknown `kid` may be signed by the issuer's new key.
        self.live.refresh_keys(&gate, &request).await;
        let admission = self.judge.run(|| gate.admit(&mut request, arrival));
        let (gate, ticket) = match admission {
            Admission::Forward(ticket) => (gate, ticket),
            Admission::Refuse(refusal) => match self.hold(&gate, &request, kept, refusal).await {
                Ok(admitted) => admitted,
                Err(refusal) => return refusal_response(&refusal),
            },
        };
        let response = match self.forward(&ticket, &target, payload).await {
            Ok(response) => response,
            Err(answer) => return *answer,
        };
        self.release(gate, ticket, response).await
    }

    /// A request refused as approval-required on a route with a `hold`: kept open until an
    /// approver decides, then admitted as its retry with the approval id would be (the body
    /// the policies judged, already read, is the one forwarded). Otherwise, or when the hold
    /// ends undecided, the refusal.
    async fn hold(
        &self,
        gate: &Gate,
        judged: &portcullis_host::exchange::Request,
        kept: Option<Kept>,
        refusal: Refusal,
    ) -> Result<(Arc<Gate>, Box<Ticket>), Refusal> {
        let holding = &self.live.keep().holding;
        let (Some(kept), Some(hold)) = (kept, holding.hold_for(gate, judged, &refusal)) else { return Err(refusal) };
        let Kept { request, certificate } = kept;
        let shutdown = self.shutdown.clone();
        let arrive = |request: &mut portcullis_host::exchange::Request| Arrival::take("proxy", Reach::ALL, request);
        holding.redeem(&self.live, self.judge, ("proxy", arrive), request, certificate, refusal, hold, shutdown).await
    }

    /// Reads and normalises an arriving request (the canonical target, the caller's
    /// framing and host-set headers refused or dropped), finds its route, and takes what the
    /// gate needs from it ([`Arrival::take`]). When a request
    /// policy runs, the gate gets the body, so the redactions it applies and records are the
    /// ones the upstream gets. With approvals on, the body is read too: an approval is bound
    /// to the request's digest, body included.
    async fn arrive(
        &self,
        gate: &Gate,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<Arrived, Box<Response<Body>>> {
        let cap = self.section.max_request_bytes;
        let (mut parts, body) = req.into_parts();
        if content_length(&parts.headers).is_some_and(|len| len > cap as u64) {
            let text = format!("the request body is larger than {cap} bytes");
            return Err(Box::new(problem(413, "request-too-large", text, "")));
        }
        if let Err(e) = take_incoming(&mut parts.headers) {
            return Err(Box::new(problem(400, "bad-request", e.to_string(), "")));
        }
        let head = Request::from_parts(parts, Vec::new());
        let opts = FromHttp {
            default_scheme: self.section.scheme.clone(),
            client_address: Some(peer.ip().to_string()),
            received_at_ms: portcullis_host::now_ms(),
            target_rules: gate.target_rules(),
            ..FromHttp::default()
        };
        let (mut request, target) = canonical_request_from_http(&head, &opts)
            .map_err(|e| Box::new(problem(400, "bad-request", e.to_string(), "")))?;
        // The door's scheme (https on TLS, else `scheme`), never one the caller names in an
        // absolute-form target or an h2c `:scheme`: a plaintext caller cannot claim https.
        request.scheme.clone_from(&self.section.scheme);
        let (parts, _) = head.into_parts();
        let route = gate.route(&request);
        let mut payload = Payload::Streaming(body);
        if route.runs(Phase::Request) || gate.approvals().is_some() {
            let bytes = payload.buffer(cap).await.map_err(|e| Box::new(body_error(e, cap, Which::Request, "")))?;
            request.body = body_of(&bytes, &parts.headers);
            payload = Payload::Buffered(bytes);
        }
        let certificate = client_certificate(&parts.extensions);
        let may_hold = self.live.keep().holding.may_hold(&route);
        let arrival = Arrival::take("proxy", Reach::ALL, &mut request).with_route(route);
        let kept = may_hold.then(|| Kept { request: request.clone(), certificate: certificate.clone() });
        let arrival = arrival.with_client_certificate(certificate);
        Ok(Arrived { request, target, arrival, payload, kept })
    }

    /// Sends an admitted request to the upstream; the door's answer when it cannot be
    /// reached or does not answer in time.
    async fn forward(
        &self,
        ticket: &Ticket,
        target: &CanonicalTarget,
        payload: Payload,
    ) -> Result<Response<Incoming>, Box<Response<Body>>> {
        let request_id = &ticket.request.id;
        let upstream_request = self.upstream_request(ticket, target, payload)?;
        let timeout = Duration::from_millis(self.section.upstream_timeout_ms);
        match tokio::time::timeout(timeout, self.client.request(upstream_request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => {
                // The cause (refused, TLS: unknown issuer, wrong name, expired…) is in the log;
                // the caller learns only that the upstream could not be reached.
                log_unreachable(&e, &self.section.upstream, request_id);
                Err(Box::new(problem(502, "upstream-unavailable", "the upstream could not be reached", request_id)))
            }
            Err(_) => {
                let text = format!("the upstream did not answer within {timeout:?}");
                Err(Box::new(problem(504, "upstream-timeout", text, request_id)))
            }
        }
    }

    /// The response phase: the upstream's response normalised (its body read when a
    /// response policy runs), released by the gate, and redacted as the gate redacted it.
    async fn release(&self, gate: Arc<Gate>, ticket: Box<Ticket>, response: Response<Incoming>) -> Response<Body> {
        let request_id = ticket.request.id.clone();
        let (mut rparts, rbody) = response.into_parts();
        strip_hop_by_hop(&mut rparts.headers);
        rparts.version = http::Version::HTTP_11;
        let head = Response::from_parts(rparts, Vec::new());
        let mut normal = match response_from_http(&head) {
            Ok(normal) => normal,
            Err(e) => return problem(502, "bad-upstream-response", e.to_string(), &request_id),
        };
        let (rparts, _) = head.into_parts();
        let rcap = self.section.max_response_bytes;
        let mut rpayload = Payload::Streaming(rbody);
        if ticket.route().runs(Phase::Response) {
            let bytes = match rpayload.buffer(rcap).await {
                Ok(bytes) => bytes,
                Err(e) => return body_error(e, rcap, Which::Response, &request_id),
            };
            normal.body = body_of(&bytes, &rparts.headers);
            rpayload = Payload::Buffered(bytes);
        }
        let release = self.judge.run(|| gate.release(&ticket, &mut normal));
        match release {
            Release::Refuse(refusal) => refusal_response(&refusal),
            Release::Return(check) => downstream(rparts, rpayload, check.verdict.redactions(), &request_id),
        }
    }

    /// The request the upstream gets for an admitted one: built by the library from what the
    /// policies judged ([`upstream_request`]), sent to the upstream's address, with the body
    /// as the gate left it (read whenever a request policy ran, so a redacted body is the
    /// gate's; streamed untouched otherwise).
    fn upstream_request(
        &self,
        ticket: &Ticket,
        target: &CanonicalTarget,
        payload: Payload,
    ) -> Result<Request<Body>, Box<Response<Body>>> {
        let request_id = &ticket.request.id;
        let redactions = ticket.check.verdict.redactions();
        let response_phase = ticket.route().runs(Phase::Response);
        let mut upstream = upstream_request(&ticket.request, target, redactions, response_phase).map_err(|e| {
            Box::new(problem(500, "redaction-failed", format!("the request cannot be forwarded: {e}"), request_id))
        })?;
        let payload = match payload {
            Payload::Buffered(_) => Payload::Buffered(
                ticket.request.body.as_ref().map(|b| Bytes::from(b.bytes.clone())).unwrap_or_default(),
            ),
            streaming @ Payload::Streaming(_) => streaming,
        };
        *upstream.uri_mut() = self.upstream.uri(upstream.uri()).map_err(|e| {
            Box::new(problem(400, "bad-request", format!("cannot build the upstream URL: {e}"), request_id))
        })?;
        // The connection decides the version (ALPN or h2c), whatever the caller spoke; the
        // client names the upstream from the URI: `Host` over HTTP/1.1, `:authority` over
        // HTTP/2 (no `Host` beside it to disagree), and SNI from the host or `server_name`.
        *upstream.version_mut() = http::Version::HTTP_11;
        let headers = upstream.headers_mut();
        headers.remove(HOST);
        if let Payload::Buffered(bytes) = &payload {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        }
        let (parts, _) = upstream.into_parts();
        Ok(Request::from_parts(parts, payload.into_capped_body(self.section.max_request_bytes)))
    }
}

/// The log line for an upstream that could not be reached, with its cause.
fn log_unreachable(error: &UpstreamError, upstream: &str, request_id: &str) {
    tracing::warn!(error = %error, upstream, request_id, "upstream request failed");
}

/// The normalised body for buffered bytes (none when empty).
fn body_of(bytes: &Bytes, headers: &http::HeaderMap) -> Option<ExchangeBody> {
    (!bytes.is_empty()).then(|| ExchangeBody {
        content_type: headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned),
        bytes: bytes.to_vec(),
        truncated: false,
    })
}

/// The response as the caller gets it. A response policy ran when the body was read, so
/// the gate redacted exactly it; the same redactions are applied to the response as sent.
fn downstream(
    mut rparts: http::response::Parts,
    mut rpayload: Payload,
    redactions: &[Redaction],
    request_id: &str,
) -> Response<Body> {
    if let (false, Payload::Buffered(bytes)) = (redactions.is_empty(), &rpayload) {
        let mut redacted = Response::from_parts(rparts, bytes.to_vec());
        if let Err(e) = downstream_response(&mut redacted, redactions) {
            let text = format!("a redaction could not be guaranteed: {e}");
            return problem(502, "redaction-failed", text, request_id);
        }
        let (redacted_parts, bytes) = redacted.into_parts();
        rparts = redacted_parts;
        rpayload = Payload::Buffered(Bytes::from(bytes));
    }
    if let Payload::Buffered(bytes) = &rpayload {
        rparts.headers.insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    }
    with_request_id(Response::from_parts(rparts, rpayload.into_body()), request_id)
}

/// Which message a body belongs to: the door's answer when it cannot be read differs (the
/// caller's fault for a request, the upstream's for a response).
#[derive(Debug, Clone, Copy)]
enum Which {
    Request,
    Response,
}

/// The answer when a body cannot be read: 413 for a request over the cap, 502 for a
/// response over it, 400/502 when the connection failed.
fn body_error(error: ReadError, cap: usize, which: Which, request_id: &str) -> Response<Body> {
    match (error, which) {
        (ReadError::TooLarge, Which::Request) => {
            problem(413, "request-too-large", format!("the request body is larger than {cap} bytes"), request_id)
        }
        (ReadError::TooLarge, Which::Response) => problem(
            502,
            "response-too-large",
            format!("the upstream's response body is larger than {cap} bytes, the most a policy may inspect"),
            request_id,
        ),
        (ReadError::Io(e), Which::Request) => {
            problem(400, "bad-request", format!("reading the request body failed: {e}"), request_id)
        }
        (ReadError::Io(e), Which::Response) => {
            problem(502, "bad-upstream-response", format!("reading the upstream's response failed: {e}"), request_id)
        }
    }
}
