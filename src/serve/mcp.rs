//! The MCP front door: a Streamable HTTP proxy between MCP clients (AI agents) and one MCP
//! server, enforcing every decision on tool calls, resource reads and prompts.
//!
//! - Every message is parsed strictly (a repeated key is refused) and the server gets the
//!   parsed value written out again, never the client's bytes: what the policies judged is
//!   what the server reads.
//! - `POST` with a JSON-RPC request: normalised by `adapters::mcp` (the tool's name is the
//!   operation, its arguments the body), admitted by the gate, forwarded with redacted
//!   arguments; the server's answer (a JSON body or an SSE stream) passes the response
//!   phase with the `result` as its body before the client sees it (each notification on
//!   its stream too, as an event of its own: `mcp_listen.rs`). A refusal is a JSON-RPC
//!   error with the same id. Before a `tools/call`, the door knows the tool's annotations:
//!   from a recent `tools/list` answer for that caller and session, or by listing the tools
//!   itself; a tool it cannot find carries MCP's defaults (destructive). `tools/list`
//!   answers are filtered to the tools the caller's policies would not deny.
//! - `POST` with a `notifications/…` notification or with the client's answer to a server
//!   request: the credential is checked, nothing is evaluated (they carry no call). Any
//!   other method without an `id` (a `tools/call` sent as a notification) is refused.
//! - `GET` (the server's event stream) and `DELETE` (end of session): the credential is
//!   checked and they pass; on a `GET` stream, answers to requests are dropped (the door
//!   cannot evaluate them out of their call), notifications and server requests pass.
//! - Headers only the host sets (`mcp-method`, `mcp-name`, `mcp-param-*`,
//!   `mcp-annotation-*`, `mcp-probe`, `X-Portcullis-*`, the approval header) never come
//!   from a client; the 2026 routing headers the server gets are derived from the message.
//!
//! Fail closed: a message that is not JSON-RPC, a batch, an answer that is not the one
//! expected, an answer larger than the cap, or a redaction that cannot be written back is
//! never passed on.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use bytes::{Bytes, BytesMut};
use http::header::{ACCEPT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt as _;
use hyper::body::{Frame, Incoming};
use portcullis_host::adapters::forward::{set_derived_headers, take_incoming};
use portcullis_host::adapters::http::{FromHttp, request_from_http};
use portcullis_host::adapters::mcp::{
    self, Annotations, Call, ERROR_DENIED, ERROR_INVALID_REQUEST, Message, PROBE_HEADER, is_reserved_header,
};
use portcullis_host::config::McpSection;
use portcullis_host::decision::{Action, Decision, Target};
use portcullis_host::exchange::Request as Normal;
use portcullis_host::gate::{APPROVAL_HEADER, Admission, Arrival, BodyReach, Gate, Identity, Reach, Release, Ticket};
use portcullis_host::target::canonicalize;
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, watch};

use super::http::{
    Body, BoxError, Judge, Listener, ReadError, client_certificate, content_length, full, read_capped,
    strip_hop_by_hop, with_request_id,
};
use super::live::Live;
use super::upstream::{DoorUpstream, UpstreamClient};

#[path = "mcp_listen.rs"]
mod listen;
#[path = "mcp_meta.rs"]
mod meta;
#[path = "mcp_mrtr.rs"]
pub mod mrtr;
#[path = "mcp_oauth.rs"]
mod oauth;
#[path = "mcp_pin.rs"]
mod pin;
use meta::{ToolInfo, Vouched};

/// The header carrying the MCP session id, passed through both ways.
const SESSION_HEADER: &str = "mcp-session-id";

/// Tool lists remembered at once (one per principal and session); past this the oldest
/// goes first.
const MAX_LISTS: usize = 4_096;

/// How long a remembered tool list is believed; after this the door lists the tools again
/// before a call (a server's tools can change, `notifications/tools/list_changed`).
const LIST_TTL: Duration = Duration::from_secs(300);

/// A tool missing from a remembered list makes the door list the tools again, at most this
/// often per list (the tool may have been added since).
const LIST_REFRESH: Duration = Duration::from_secs(10);

/// What the MCP door can change in a call it passes on: arguments (the body) and headers,
/// not the endpoint's query.
const MCP_REACH: Reach = Reach { query: false, body: BodyReach::Rewrite };

/// Pages of `tools/list` the door follows (`nextCursor`) when it lists the tools itself.
const MAX_LIST_PAGES: usize = 16;

/// Runs the MCP front door on `listener` until `shutdown`.
pub async fn serve(
    listener: Listener,
    live: Live,
    section: McpSection,
    upstream: DoorUpstream,
    shutdown: watch::Receiver<bool>,
    mrtr: mrtr::Mrtr,
) -> Result<()> {
    if !section.path.starts_with('/') {
        bail!("[server.mcp] path `{}` must start with /", section.path);
    }
    section.check_origins().map_err(anyhow::Error::msg)?;
    let DoorUpstream { uri: upstream, client } = upstream;
    let judge = Judge::for_live(&live);
    // Pinned tool definitions ([server.mcp.pins]): the pin file is read before the door serves.
    let pins = pin::DoorPins::open(&section, &live)?;
    let annotations = Arc::new(Cache { pins: Some(Arc::new(pins)), ..Cache::default() });
    let oauth = oauth::ResourceServer::for_door(&section, &live)?;
    let door =
        Arc::new(Door { live, section, upstream, client, annotations, judge, shutdown: shutdown.clone(), mrtr, oauth });
    super::http::serve(listener, shutdown, move |req, peer| {
        let door = door.clone();
        async move { door.handle(req, peer).await }
    })
    .await;
    Ok(())
}

struct Door {
    live: Live,
    section: McpSection,
    upstream: Uri,
    client: UpstreamClient,
    /// Tool annotations from `tools/list` answers, by principal and session.
    annotations: Arc<Cache>,
    /// Where the gate's work runs ([`Judge`]).
    judge: Judge,
    /// Held calls end with the approval-required answer when this turns true.
    shutdown: watch::Receiver<bool>,
    /// Approvals asked of 2026-07-28 clients as Multi Round-Trip Requests.
    mrtr: mrtr::Mrtr,
    /// `[server.mcp.oauth]`: the door as an OAuth resource server.
    oauth: Option<oauth::ResourceServer>,
}

/// Whose tool list an entry is: the authenticated principal (never something the client
/// merely claims) and the MCP session (`""` without one). A server's tool list can differ
/// per session (tools added or removed during it) and per caller (a server that
/// authorises by the forwarded credential), so one upstream has many lists; the session
/// id alone is the client's choice, so the principal is part of the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ListKey {
    principal: String,
    session: String,
}

impl ListKey {
    fn of(principal: &portcullis_host::exchange::Principal, session: &str) -> ListKey {
        let on_behalf_of = principal.on_behalf_of.as_deref().unwrap_or("");
        let principal = format!("{}:{}>{on_behalf_of}", principal.kind.as_str(), principal.id);
        ListKey { principal, session: session.to_owned() }
    }
}

/// One remembered tool list.
struct Listed {
    tools: HashMap<String, ToolInfo>,
    at: Instant,
}

/// What the door knows about a tool before a call.
enum Known {
    /// A fresh list names it (with these annotations and input schema).
    Listed(ToolInfo),
    /// A fresh list does not name it, and was refreshed recently.
    Unlisted,
    /// No fresh list, or one that does not name it and may be stale: list the tools again.
    Unknown,
}

/// Tool lists from `tools/list` answers (the client's, passing through, and the door's
/// own), bounded in number ([`MAX_LISTS`]) and age ([`LIST_TTL`]).
#[derive(Default)]
struct Cache {
    lists: Mutex<HashMap<ListKey, Listed>>,
    /// The door's pinned tool definitions and the listed tools' scan findings (per door,
    /// not per caller).
    pins: Option<Arc<pin::DoorPins>>,
}

impl Cache {
    fn lookup(&self, key: &ListKey, tool: &str) -> Known {
        let Ok(lists) = self.lists.lock() else { return Known::Unknown };
        match lists.get(key) {
            Some(listed) if listed.at.elapsed() < LIST_TTL => match listed.tools.get(tool) {
                Some(tool) => Known::Listed(tool.clone()),
                None if listed.at.elapsed() < LIST_REFRESH => Known::Unlisted,
                None => Known::Unknown,
            },
            _ => Known::Unknown,
        }
    }

    /// Remembers `tools` for `key`: replacing what was there (a whole list, or a first
    /// page), or adding to it (a later page).
    fn remember(&self, key: ListKey, tools: HashMap<String, ToolInfo>, replace: bool) {
        let Ok(mut lists) = self.lists.lock() else { return };
        if lists.len() >= MAX_LISTS && !lists.contains_key(&key) {
            lists.retain(|_, listed| listed.at.elapsed() < LIST_TTL);
            if lists.len() >= MAX_LISTS
                && let Some(oldest) = lists.iter().min_by_key(|(_, listed)| listed.at).map(|(key, _)| key.clone())
            {
                lists.remove(&oldest);
            }
        }
        let now = Instant::now();
        match lists.get_mut(&key) {
            Some(listed) if !replace && listed.at.elapsed() < LIST_TTL => {
                listed.tools.extend(tools);
                listed.at = now;
            }
            _ => {
                lists.insert(key, Listed { tools, at: now });
            }
        }
    }

    fn forget(&self, key: &ListKey) {
        if let Ok(mut lists) = self.lists.lock() {
            lists.remove(key);
        }
    }

    fn forget_session(&self, session: &str) {
        if let Ok(mut lists) = self.lists.lock() {
            lists.retain(|key, _| key.session != session);
        }
    }
}

/// A JSON-RPC answer from the door itself.
fn rpc(status: u16, message: &Value, request_id: &str) -> Response<Body> {
    let mut bytes = serde_json::to_vec(message).unwrap_or_default();
    bytes.push(b'\n');
    let mut response = Response::new(full(bytes));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if status == 401 {
        response
            .headers_mut()
            .insert(http::header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"portcullis\""));
    }
    with_request_id(response, request_id)
}

/// A JSON-RPC error from the door for request `id`.
fn rpc_error(status: u16, id: &Value, code: i64, text: &str, request_id: &str) -> Response<Body> {
    let data = (!request_id.is_empty()).then(|| json!({ "request_id": request_id }));
    rpc(status, &mcp::error_message(id, code, text, data), request_id)
}

impl Door {
    async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let gate = self.live.gate();
        // The endpoint is matched on the canonical target, as every door routes; what is
        // refused there (encoded slashes, `;`, controls, …) is refused here too. The server
        // always gets its own endpoint URL, whatever the caller's target.
        match canonicalize(req.uri().path_and_query().map_or("/", |p| p.as_str()), &gate.target_rules()) {
            Ok(target) if target.path() == self.section.path => {}
            // RFC 9728 protected-resource metadata, public.
            Ok(target) if self.oauth.as_ref().is_some_and(|o| o.serves(target.path())) => {
                return self.oauth.as_ref().map(|o| o.metadata(req.method())).expect("checked");
            }
            Ok(target) => {
                return rpc_error(
                    404,
                    &Value::Null,
                    ERROR_INVALID_REQUEST,
                    &format!("no MCP endpoint at {}; this door serves {}", target.path(), self.section.path),
                    "",
                );
            }
            Err(e) => return rpc_error(400, &Value::Null, ERROR_INVALID_REQUEST, &e.to_string(), ""),
        }
        // A browser origin not listed: refused before anything else (DNS rebinding).
        if let Some(refusal) = meta::refuse_origin(req.headers(), &self.section.allowed_origins) {
            return refusal;
        }
        // One session and one protocol version per message: the door keys what it knows by
        // the session it reads, and the server must not read another one.
        for name in [SESSION_HEADER, "mcp-protocol-version"] {
            if req.headers().get_all(name).iter().count() > 1 {
                let text = format!("`{name}` appears more than once");
                return rpc_error(400, &Value::Null, ERROR_INVALID_REQUEST, &text, "");
            }
        }
        let (mut parts, body) = req.into_parts();
        // A 2026 client sends the routing headers (`Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`):
        // kept aside to be checked against the message; the door sends them on, set from the
        // message it judged.
        let client_meta = meta::client_metadata(&parts.headers);
        // Framing and the headers only the host sets, as at every door (`X-Forwarded-*`,
        // `Forwarded`, `X-Portcullis-*`), then the MCP ones: never from a caller.
        if let Err(e) = take_incoming(&mut parts.headers) {
            return rpc_error(400, &Value::Null, ERROR_INVALID_REQUEST, &e.to_string(), "");
        }
        let reserved: Vec<HeaderName> =
            parts.headers.keys().filter(|n| is_reserved_header(n.as_str())).cloned().collect();
        for name in reserved {
            parts.headers.remove(name);
        }
        let head = Request::from_parts(parts, Vec::new());
        let opts = FromHttp {
            default_scheme: self.section.scheme.clone(),
            client_address: Some(peer.ip().to_string()),
            received_at_ms: portcullis_host::now_ms(),
            target_rules: gate.target_rules(),
            ..FromHttp::default()
        };
        let mut normal = match request_from_http(&head, &opts) {
            Ok(normal) => normal,
            Err(e) => return rpc_error(400, &Value::Null, ERROR_INVALID_REQUEST, &e.to_string(), ""),
        };
        // The door's scheme (https on TLS, else `scheme`), never one the caller names in an
        // absolute-form target or an h2c `:scheme`: a plaintext caller cannot claim https.
        normal.scheme.clone_from(&self.section.scheme);
        let (parts, _) = head.into_parts();
        // A token with an unknown `kid` may be signed by the issuer's new key.
        self.live.refresh_keys(&gate, &normal).await;
        // An OAuth resource server: a bearer token for this resource, or 401 with the challenge.
        if let Some(oauth) = &self.oauth
            && let Err(answer) = oauth.check_token(&gate, &normal)
        {
            return *answer;
        }
        let mut answer = match parts.method {
            Method::POST => self.post(gate, parts, body, normal, client_meta).await,
            Method::GET | Method::DELETE => self.pass(gate, parts, normal).await,
            _ => rpc_error(405, &Value::Null, ERROR_INVALID_REQUEST, "the MCP endpoint takes POST, GET and DELETE", ""),
        };
        if let Some(oauth) = &self.oauth {
            oauth.on_answer(&mut answer);
        }
        answer
    }

    /// Checks the credential of a message that is not evaluated; the refusal when it fails.
    fn authenticate(gate: &Gate, normal: &mut Normal, parts: &http::request::Parts) -> Option<Response<Body>> {
        let now = portcullis_host::now_ms() / 1000;
        let certificate = client_certificate(&parts.extensions);
        match gate.identify_connection(normal, &Identity::Credentials { now_unix_s: now }, certificate.as_ref()) {
            Ok(()) => None,
            Err(failure) => Some(rpc_error(
                401,
                &Value::Null,
                mcp::ERROR_UNAUTHENTICATED,
                &format!("unauthenticated: {}", failure.reason),
                "",
            )),
        }
    }

    /// GET and DELETE: authenticated, then passed (a GET stream filtered).
    async fn pass(&self, gate: Arc<Gate>, parts: http::request::Parts, mut normal: Normal) -> Response<Body> {
        if let Some(refusal) = Self::authenticate(&gate, &mut normal, &parts) {
            return refusal;
        }
        let session = header_text(&parts.headers, SESSION_HEADER);
        if parts.method == Method::DELETE
            && let Some(session) = &session
        {
            self.annotations.forget_session(session);
        }
        let list_key = ListKey::of(&normal.principal, session.as_deref().unwrap_or_default());
        let outgoing = self.outgoing(parts, &normal, &[], Bytes::new());
        let response = match self.send(outgoing, &Value::Null).await {
            Ok(response) => response,
            Err(answer) => return answer,
        };
        let (mut rparts, rbody) = response.into_parts();
        strip_hop_by_hop(&mut rparts.headers);
        if is_event_stream(&rparts.headers) {
            rparts.headers.remove(CONTENT_LENGTH);
            let body = self.filter_stream(rbody, None, list_key);
            return Response::from_parts(rparts, body);
        }
        // Anything else carries no JSON-RPC answer (202, 204, 405, a 404 for an ended
        // session): its status passes, its body does not.
        self.status_only(rparts, "")
    }

    /// An upstream answer reduced to its status and headers, with a JSON-RPC error body
    /// when it is not a success: the door passes no body it has not read.
    fn status_only(&self, mut rparts: http::response::Parts, request_id: &str) -> Response<Body> {
        rparts.headers.remove(CONTENT_LENGTH);
        rparts.headers.remove(CONTENT_TYPE);
        let status = rparts.status;
        if status.is_success() {
            return Response::from_parts(rparts, full(Bytes::new()));
        }
        let error = mcp::error_message(
            &Value::Null,
            ERROR_INVALID_REQUEST,
            &format!("the MCP server answered HTTP {}", status.as_u16()),
            None,
        );
        let mut answer = rpc(status.as_u16(), &error, request_id);
        for name in [SESSION_HEADER, "mcp-protocol-version"] {
            if let Some(value) = rparts.headers.get(name) {
                answer.headers_mut().insert(HeaderName::from_static(name), value.clone());
            }
        }
        answer
    }

    /// A POSTed message, phase by phase: read and parse it; a notification or an answer to
    /// the server passes authenticated; a request is admitted as a call, forwarded, and its
    /// answer released.
    async fn post(
        &self,
        gate: Arc<Gate>,
        parts: http::request::Parts,
        body: Incoming,
        normal: Normal,
        client_meta: HeaderMap,
    ) -> Response<Body> {
        let (message, kind) = match self.read_message(&parts, body).await {
            Ok(parsed) => parsed,
            Err(answer) => return *answer,
        };
        let routing = client_meta.contains_key(mcp::MCP_METHOD_HEADER);
        // The 2026 headers against the body, before any policy runs.
        let generation = match meta::check(&client_meta, &message) {
            Ok(generation) => generation,
            Err(e) => return meta::refusal(&e, message.get("id"), ""),
        };
        let (id, method, params) = match kind {
            Message::Request { id, method, params } => (id, method, params),
            Message::Notification { method } => {
                return self.pass_uncalled(&gate, parts, normal, &message, Some(method), routing).await;
            }
            // "The client MUST NOT send JSON-RPC responses" (2026-07-28, streamable-http): none to pass.
            Message::Response { .. } if generation == portcullis_host::adapters::mcp_headers::Generation::Modern => {
                let text = "a 2026-07-28 client sends no JSON-RPC responses (the server sends it no requests)";
                return rpc_error(400, &Value::Null, ERROR_INVALID_REQUEST, text, "");
            }
            Message::Response { .. } => return self.pass_uncalled(&gate, parts, normal, &message, None, routing).await,
        };
        let call = match mcp::call_of(&method, params.as_ref()) {
            Ok(call) => call,
            Err(e) => return rpc_error(200, &id, e.code(), &e.to_string(), ""),
        };
        // The retry of an approval asked as a Multi Round-Trip Request: the door's
        // `requestState` opened (or refused) and taken out of the message.
        let (mut call, mut message) = (call, message);
        let elicits = mrtr::elicits_urls(params.as_ref());
        if mrtr::carries_state(&message) {
            let mut probe = normal.clone();
            let principal = Self::authenticate(&gate, &mut probe, &parts).is_none().then_some(probe.principal);
            let facts = meta::protocol_facts(&client_meta, &message, generation);
            let prepared =
                self.mrtr.prepare(&gate, &normal, principal.as_ref(), (&mut call, &mut message), (&id, &facts)).await;
            if let Err(error) = prepared {
                return rpc(200, &error, "");
            }
        }
        let session = header_text(&parts.headers, SESSION_HEADER).unwrap_or_default();
        let tool = match &call.tool {
            Some(tool) => self.annotations_for(&gate, &normal, &parts, &session, tool, params.as_ref(), routing).await,
            None => None,
        };
        let vouched = match meta::check_params(&client_meta, &message, generation, tool.as_ref()) {
            Ok(vouched) => vouched,
            Err(e) => return meta::refusal(&e, Some(&id), ""),
        };
        // A tool whose definition changed since pinned: refused before any policy or the server.
        if let (Some(pins), Some(tool)) = (&self.annotations.pins, &call.tool)
            && let Err(refusal) = pins.admit(tool, &id)
        {
            // The caller first: an unauthenticated one learns nothing of the pins.
            let mut caller = normal.clone();
            if let Some(answer) = Self::authenticate(&gate, &mut caller, &parts) {
                return answer;
            }
            pins.record_refused_call(&mcp::request_for_call(&caller, &call, None), &vouched.facts);
            return rpc(200, &refusal, "");
        }
        let certificate = client_certificate(&parts.extensions);
        let admitted = self.admit_call(gate, &normal, &call, &vouched, (&id, elicits), certificate).await;
        let (gate, ticket) = match admitted {
            Ok(admitted) => admitted,
            Err(answer) => return *answer,
        };
        let response = match self.forward_call(parts, message, (&call, &vouched), &ticket, &id, routing).await {
            Ok(response) => response,
            Err(answer) => return *answer,
        };
        let answering = Answering {
            gate,
            list_key: ListKey::of(&ticket.request.principal, &session),
            request_id: ticket.request.id.clone(),
            ticket: Arc::new(*ticket),
            call: Arc::new(call),
            id,
            cache: self.annotations.clone(),
            filter_tools: self.section.filter_tools,
            judge: self.judge,
            modern: generation == portcullis_host::adapters::mcp_headers::Generation::Modern,
        };
        self.answer(answering, response).await
    }

    /// Reads a POSTed message whole (up to the cap) and parses it strictly.
    async fn read_message(
        &self,
        parts: &http::request::Parts,
        body: Incoming,
    ) -> Result<(Value, Message), Box<Response<Body>>> {
        let cap = self.section.max_request_bytes;
        let refuse = |status: u16, code: i64, text: &str| Box::new(rpc_error(status, &Value::Null, code, text, ""));
        let too_large = format!("the message is larger than {cap} bytes");
        if content_length(&parts.headers).is_some_and(|len| len > cap as u64) {
            return Err(refuse(413, ERROR_INVALID_REQUEST, &too_large));
        }
        let bytes = match read_capped(body, cap).await {
            Ok(bytes) => bytes,
            Err(ReadError::TooLarge) => return Err(refuse(413, ERROR_INVALID_REQUEST, &too_large)),
            Err(ReadError::Io(e)) => {
                return Err(refuse(400, ERROR_INVALID_REQUEST, &format!("reading the message failed: {e}")));
            }
        };
        mcp::parse_message(&bytes).map_err(|e| refuse(400, e.code(), &e.to_string()))
    }

    /// A message that carries no call: a lifecycle notification (`notified`, its method) or
    /// the client's answer to one of the server's requests. Authenticated, not evaluated. A
    /// call sent as a notification (a `tools/call` without an `id`) is refused: it would
    /// run undecided and unaudited on a lenient server.
    async fn pass_uncalled(
        &self,
        gate: &Gate,
        parts: http::request::Parts,
        mut normal: Normal,
        message: &Value,
        notified: Option<String>,
        routing: bool,
    ) -> Response<Body> {
        if let Some(method) = &notified
            && let Err(e) = mcp::check_notification(method)
        {
            tracing::warn!(error = %e, "refused a call sent as a notification");
            return rpc_error(400, &Value::Null, e.code(), &e.to_string(), "");
        }
        if let Some(refusal) = Self::authenticate(gate, &mut normal, &parts) {
            return refusal;
        }
        // The message as parsed, re-serialised: never the client's bytes.
        let forwarded = Bytes::from(serde_json::to_vec(message).unwrap_or_default());
        let mut outgoing = self.outgoing(parts, &normal, &[], forwarded);
        if routing && let Some(method) = &notified {
            set_header(outgoing.headers_mut(), mcp::MCP_METHOD_HEADER, method);
        }
        match self.send(outgoing, &Value::Null).await {
            Ok(response) => {
                let (mut rparts, _) = response.into_parts();
                strip_hop_by_hop(&mut rparts.headers);
                self.status_only(rparts, "")
            }
            Err(answer) => answer,
        }
    }

    /// The request phase for `call`: its normalised request (with the approval id the
    /// call's `_meta` carries, when the header does not) through the gate; the JSON-RPC
    /// answer for request `id` when it is refused. A call refused as approval-required on a
    /// route with a `hold` is kept open until an approver decides, then admitted as its
    /// retry with the approval id would be.
    async fn admit_call(
        &self,
        gate: Arc<Gate>,
        normal: &Normal,
        call: &Call,
        vouched: &Vouched,
        (id, elicits): (&Value, bool),
        certificate: Option<portcullis_host::identity::ClientCertificate>,
    ) -> Result<(Arc<Gate>, Box<Ticket>), Box<Response<Body>>> {
        let mut request = mcp::request_for_call(normal, call, vouched.annotations.as_ref());
        // The `Mcp-Param-*` values checked against the arguments, decoded: the only ones a
        // policy sees.
        request.headers.extend(vouched.policy_headers());
        // The content heuristics' findings on the tool's listed definition (`mcp-tool-finding`).
        request.headers.extend(call.tool.as_deref().and_then(|t| self.annotations.pins.as_ref()?.finding_header(t)));
        if let (Some(approval), None) = (&call.approval_id, request.header(APPROVAL_HEADER)) {
            request.headers.push((APPROVAL_HEADER.into(), approval.clone()));
        }
        // Arguments and results are rewritten here; the endpoint's query is not.
        let holding = &self.live.keep().holding;
        let arrival = vouched.attach_facts(Arrival::take("mcp", MCP_REACH, &mut request));
        // What a held call's redemption starts from (it authenticates the call again).
        let kept = holding.may_hold(&gate.route(&request)).then(|| (request.clone(), certificate.clone()));
        let arrival = arrival.with_client_certificate(certificate);
        let request_id = request.id.clone();
        let admission = self.judge.run(|| gate.admit(&mut request, arrival));
        let admitted = match admission {
            Admission::Forward(ticket) => Ok((gate, ticket)),
            Admission::Refuse(refusal) => match (kept, holding.hold_for(&gate, &request, &refusal)) {
                (Some((request, certificate)), Some(hold)) => {
                    let shutdown = self.shutdown.clone();
                    let arrive = |request: &mut Normal| vouched.attach_facts(Arrival::take("mcp", MCP_REACH, request));
                    let door = ("mcp", arrive);
                    holding.redeem(&self.live, self.judge, door, request, certificate, refusal, hold, shutdown).await
                }
                _ => Err(refusal),
            },
        };
        match admitted {
            Ok(admitted) => Ok(admitted),
            Err(refusal) => {
                // A 2026 client that elicits URLs is asked as a Multi Round-Trip Request.
                if let Some(asked) = self.mrtr.input_required(elicits, call, &refusal, &request.principal, id) {
                    return Err(Box::new(rpc(200, &asked, &request_id)));
                }
                let status = if refusal.status == 401 { 401 } else { 200 };
                let mut answer = rpc(status, &mcp::refusal_error(id, &refusal), &request_id);
                // Step-up: 403 `insufficient_scope` naming the scopes the policy needs.
                if let Some(challenge) = self.oauth.as_ref().and_then(|o| o.step_up(&refusal)) {
                    *answer.status_mut() = StatusCode::FORBIDDEN;
                    answer.headers_mut().insert(http::header::WWW_AUTHENTICATE, challenge);
                }
                if let Some(approval) = &refusal.approval
                    && let Ok(value) = HeaderValue::from_str(&approval.id)
                {
                    answer.headers_mut().insert(HeaderName::from_static(APPROVAL_HEADER), value);
                }
                Err(Box::new(answer))
            }
        }
    }

    /// Sends an admitted call to the server: the value the policies judged (never the
    /// client's bytes), with the redacted body written back and no approval id.
    async fn forward_call(
        &self,
        parts: http::request::Parts,
        mut message: Value,
        (call, vouched): (&Call, &Vouched),
        ticket: &Ticket,
        id: &Value,
        routing: bool,
    ) -> Result<Response<Incoming>, Box<Response<Body>>> {
        let request_id = &ticket.request.id;
        if let Err(e) = mcp::with_body(&mut message, call, ticket.request.body.as_ref()) {
            let text = format!("redaction-failed: {e}; refusing rather than passing it unredacted");
            return Err(Box::new(rpc_error(200, id, ERROR_DENIED, &text, request_id)));
        }
        // Only what the policies judged, `_meta`'s protocol keys and a server's own MRTR fields.
        let removed = mcp::keep_known_params(&mut message, call, &self.section.pass_meta);
        if !removed.is_empty() {
            tracing::debug!(request_id = %request_id, removed = ?removed, "removed params no policy judged");
        }
        let forwarded = Bytes::from(serde_json::to_vec(&message).unwrap_or_default());
        let mut outgoing = self.outgoing(parts, &ticket.request, ticket.check.verdict.redactions(), forwarded);
        if routing {
            for (name, value) in mcp::routing_headers(call) {
                set_header(outgoing.headers_mut(), name, &value);
            }
        }
        // `Mcp-Param-*` mirrored from the arguments the server gets (after redaction).
        if let Some(schema) = &vouched.schema {
            let arguments = message.get("params").and_then(|p| p.get("arguments"));
            for (name, value) in meta::mirrored(schema, arguments) {
                outgoing.headers_mut().insert(name, value);
            }
        }
        if let Ok(value) = HeaderValue::from_str(request_id) {
            outgoing.headers_mut().insert(HeaderName::from_static("x-request-id"), value);
        }
        self.send(outgoing, id).await.map_err(|answer| Box::new(with_request_id(answer, request_id)))
    }

    /// The server's answer to an admitted call, as the client gets it: an SSE stream
    /// filtered event by event, a JSON answer settled whole, anything else reduced to its
    /// status.
    async fn answer(&self, answering: Answering, response: Response<Incoming>) -> Response<Body> {
        let request_id = answering.request_id.clone();
        let (mut rparts, rbody) = response.into_parts();
        strip_hop_by_hop(&mut rparts.headers);
        if is_event_stream(&rparts.headers) {
            rparts.headers.remove(CONTENT_LENGTH);
            let list_key = answering.list_key.clone();
            let body = self.filter_stream(rbody, Some(answering), list_key);
            return with_request_id(Response::from_parts(rparts, body), &request_id);
        }
        let json = rparts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(portcullis_host::exchange::is_json_content_type);
        if !json {
            return self.status_only(rparts, &request_id);
        }
        let rcap = self.section.max_response_bytes;
        let Ok(bytes) = read_capped(rbody, rcap).await else {
            return rpc_error(
                502,
                &answering.id,
                ERROR_DENIED,
                &format!("the MCP server's answer could not be read whole (at most {rcap} bytes are)"),
                &request_id,
            );
        };
        let answer = self.settle(answering, &bytes).await;
        let mut out = serde_json::to_vec(&answer).unwrap_or_default();
        out.push(b'\n');
        rparts.headers.insert(CONTENT_LENGTH, HeaderValue::from(out.len()));
        with_request_id(Response::from_parts(rparts, full(out)), &request_id)
    }

    /// The request to the MCP server: the caller's headers that the gate kept (credentials
    /// stripped under `strip_credentials`, no approval header), header redactions applied,
    /// identity encoding asked for (a compressed answer cannot be read).
    fn outgoing(
        &self,
        mut parts: http::request::Parts,
        judged: &Normal,
        redactions: &[portcullis_host::Redaction],
        body: Bytes,
    ) -> Request<Body> {
        oauth::keep_caller_token(&mut parts);
        let kept = &judged.headers;
        let dropped: Vec<HeaderName> = parts
            .headers
            .keys()
            .filter(|name| {
                let name = name.as_str();
                // The length is the forwarded body's, set below; never the client's.
                name == "content-length" || (name != "content-type" && !kept.iter().any(|(n, _)| n == name))
            })
            .cloned()
            .collect();
        for name in dropped {
            parts.headers.remove(name);
        }
        parts.headers.remove(APPROVAL_HEADER);
        for redaction in redactions {
            let Target::Header(name) = &redaction.target else { continue };
            let Ok(name) = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) else { continue };
            match &redaction.action {
                Action::Remove => {
                    parts.headers.remove(&name);
                }
                Action::Replace(value) => {
                    if parts.headers.contains_key(&name) {
                        if let Ok(value) = HeaderValue::from_str(value) {
                            parts.headers.insert(name, value);
                        } else {
                            parts.headers.remove(&name);
                        }
                    }
                }
                // The gate masked the judged request's copy: send that one, or none.
                Action::Mask(_) => {
                    let masked = kept.iter().find(|(n, _)| n.eq_ignore_ascii_case(name.as_str()));
                    match masked.and_then(|(_, v)| HeaderValue::from_str(v).ok()) {
                        Some(value) if parts.headers.contains_key(&name) => {
                            parts.headers.insert(name, value);
                        }
                        _ => {
                            parts.headers.remove(&name);
                        }
                    }
                }
            }
        }
        strip_hop_by_hop(&mut parts.headers);
        // No token passthrough: the caller's credentials stay at the door.
        oauth::strip_credentials(&mut parts.headers, &self.live.gate());
        parts.headers.remove(ACCEPT_ENCODING);
        // The client names the server from the URI: `Host` over HTTP/1.1, `:authority` over
        // HTTP/2, SNI from its host (or `server_name`).
        parts.headers.remove(HOST);
        // `X-Forwarded-*`, `X-Portcullis-*` and `X-Request-Id` from what was judged, as at
        // the proxy. A value that cannot be a header (it comes from a verified credential)
        // leaves the header out rather than the caller's copy in.
        if let Err(e) = set_derived_headers(&mut parts.headers, judged) {
            tracing::warn!(error = %e, "a header derived from the judged request cannot be sent");
        }
        // The body is always JSON the door wrote itself, never in the client's encoding.
        parts.headers.remove(http::header::CONTENT_ENCODING);
        if parts.method == Method::POST {
            parts.headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        parts.uri = self.upstream.clone();
        parts.version = http::Version::HTTP_11;
        Request::from_parts(parts, full(body))
    }

    /// The annotations of `tool` for this caller and session, known before its call: from
    /// a fresh remembered list, else from a `tools/list` the door sends the server itself
    /// (in the caller's session, with the headers the caller's call would carry). `None`
    /// when the tool is not listed or the list cannot be had: the call then carries MCP's
    /// cautious defaults (destructive). A caller whose credential fails gets no listing
    /// (the gate refuses the call and audits it).
    #[expect(clippy::too_many_arguments, reason = "the parts of one arriving call, borrowed")]
    async fn annotations_for(
        &self,
        gate: &Gate,
        normal: &Normal,
        parts: &http::request::Parts,
        session: &str,
        tool: &str,
        params: Option<&Value>,
        routing: bool,
    ) -> Option<ToolInfo> {
        let mut caller = normal.clone();
        let now = portcullis_host::now_ms() / 1000;
        let certificate = client_certificate(&parts.extensions);
        gate.identify_connection(&mut caller, &Identity::Credentials { now_unix_s: now }, certificate.as_ref()).ok()?;
        let key = ListKey::of(&caller.principal, session);
        match self.annotations.lookup(&key, tool) {
            Known::Listed(tool) => return Some(tool),
            Known::Unlisted => return None,
            Known::Unknown => {}
        }
        // The 2026 protocol's per-request envelope (protocol version, client capabilities)
        // goes with the door's own request, as the server requires it.
        let envelope: Option<Map<String, Value>> = params
            .and_then(|p| p.get("_meta"))
            .and_then(Value::as_object)
            .map(|meta| {
                meta.iter()
                    .filter(|(key, _)| key.starts_with("io.modelcontextprotocol/"))
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect::<Map<String, Value>>()
            })
            .filter(|meta| !meta.is_empty());
        let Some(tools) = self.fetch_tools(parts, &caller, envelope, routing).await else {
            tracing::warn!(tool, "could not list the MCP server's tools; the call carries MCP's default annotations");
            return None;
        };
        let found = tools.get(tool).cloned();
        self.annotations.remember(key, tools, true);
        found
    }

    /// The server's whole tool list (following `nextCursor` for up to [`MAX_LIST_PAGES`]
    /// pages), asked by the door; `None` when the server cannot be reached, answers an
    /// error, or answers anything but the answer to this request.
    async fn fetch_tools(
        &self,
        parts: &http::request::Parts,
        caller: &Normal,
        envelope: Option<Map<String, Value>>,
        routing: bool,
    ) -> Option<HashMap<String, ToolInfo>> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let deadline = Instant::now() + Duration::from_millis(self.section.upstream_timeout_ms);
        let mut tools = HashMap::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let id = json!(format!("portcullis-tools-list-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
            let mut params = Map::new();
            if let Some(cursor) = &cursor {
                params.insert("cursor".into(), Value::String(cursor.clone()));
            }
            if let Some(envelope) = &envelope {
                params.insert("_meta".into(), Value::Object(envelope.clone()));
            }
            let mut message = json!({ "jsonrpc": "2.0", "id": id, "method": "tools/list" });
            if !params.is_empty() {
                message["params"] = Value::Object(params);
            }
            let (mut head, ()) = Request::new(()).into_parts();
            head.method = Method::POST;
            head.headers = parts.headers.clone();
            let body = Bytes::from(serde_json::to_vec(&message).ok()?);
            let mut outgoing = self.outgoing(head, caller, &[], body);
            let headers = outgoing.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(http::header::ACCEPT, HeaderValue::from_static("application/json, text/event-stream"));
            if routing {
                set_header(headers, mcp::MCP_METHOD_HEADER, "tools/list");
            }
            if let Some(oauth) = &self.oauth {
                oauth.authorize_upstream(&mut outgoing).await.ok()?;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let response = tokio::time::timeout(left, self.client.request(outgoing)).await.ok()?.ok()?;
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = tokio::time::timeout(left, self.read_answer(response, &id)).await.ok()??;
            let result = answer.get("result")?;
            if let Some(pins) = &self.annotations.pins {
                pins.judge_listing(result, caller);
            }
            tools.extend(meta::listed_tools(result));
            match result.get("nextCursor").and_then(Value::as_str) {
                Some(next) => cursor = Some(next.to_owned()),
                None => return Some(tools),
            }
        }
        Some(tools)
    }

    /// The answer to the door's own request `id` in a server response (JSON, or the event
    /// carrying it in an SSE stream), read up to `max_response_bytes`.
    async fn read_answer(&self, response: Response<Incoming>, id: &Value) -> Option<Value> {
        if !response.status().is_success() {
            return None;
        }
        let cap = self.section.max_response_bytes;
        let answer_to = |bytes: &[u8]| match mcp::parse_message(bytes) {
            Ok((message, Message::Response { id: answered })) if answered == *id => Some(message),
            _ => None,
        };
        if !is_event_stream(response.headers()) {
            let bytes = read_capped(response.into_body(), cap).await.ok()?;
            return answer_to(&bytes);
        }
        let mut body = response.into_body();
        let mut buffer = BytesMut::new();
        let mut read = 0usize;
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.ok()?.into_data() else { continue };
            read += data.len();
            if read > cap {
                return None;
            }
            buffer.extend_from_slice(&data);
            while let Some((event, rest)) = split_event(&buffer) {
                let (_, data) = parse_event(event);
                let found = answer_to(data.as_bytes());
                buffer = BytesMut::from(&buffer[rest..]);
                if found.is_some() {
                    return found;
                }
            }
        }
        None
    }

    /// Sends to the MCP server; the JSON-RPC error for request `id` when it cannot be reached.
    async fn send(&self, mut request: Request<Body>, id: &Value) -> Result<Response<Incoming>, Response<Body>> {
        // `[server.mcp.oauth.exchange]`: the server's own token for this caller, or no request.
        if let Some(oauth) = &self.oauth
            && let Err(e) = oauth.authorize_upstream(&mut request).await
        {
            return Err(rpc_error(e.status, id, ERROR_DENIED, &e.reason, ""));
        }
        let timeout = Duration::from_millis(self.section.upstream_timeout_ms);
        match tokio::time::timeout(timeout, self.client.request(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => {
                // The cause (refused, TLS: unknown issuer, wrong name…) is in the log only.
                tracing::warn!(error = %e, upstream = %self.section.upstream, "MCP server request failed");
                Err(rpc_error(502, id, ERROR_DENIED, "upstream-unavailable: the MCP server could not be reached", ""))
            }
            Err(_) => Err(rpc_error(
                504,
                id,
                ERROR_DENIED,
                &format!("upstream-timeout: the MCP server did not answer within {timeout:?}"),
                "",
            )),
        }
    }

    /// The answer to an admitted request, as the client gets it: the response phase run
    /// on its `result` (a `tools/list` filtered first), or a JSON-RPC error.
    async fn settle(&self, answering: Answering, bytes: &[u8]) -> Value {
        let id = answering.id.clone();
        let request_id = answering.request_id.clone();
        let refuse =
            |text: String| mcp::error_message(&id, ERROR_DENIED, &text, Some(json!({ "request_id": request_id })));
        let message = match mcp::parse_message(bytes) {
            Ok((message, Message::Response { id: answered })) if answered == answering.id => message,
            Ok(_) => {
                return refuse(
                    "bad-upstream-response: the MCP server's answer is not the answer to this request".into(),
                );
            }
            Err(e) => return refuse(format!("bad-upstream-response: {e}")),
        };
        let judge = answering.judge;
        judge.run(move || answering.release(message))
    }

    /// An SSE stream from the server, passed event by event: the answer to `answering`'s
    /// request settled before it goes on; notifications and server requests as they are;
    /// anything else (an answer to another request, an event that is not JSON-RPC, an
    /// event over the cap) dropped. A `notifications/tools/list_changed` makes the door
    /// forget the tool list of `list_key` (the caller and session the stream is for).
    fn filter_stream(&self, body: Incoming, answering: Option<Answering>, list_key: ListKey) -> Body {
        let (tx, rx) = mpsc::channel::<Result<Bytes, BoxError>>(16);
        let door_cap = self.section.max_response_bytes;
        let cache = self.annotations.clone();
        // A call's stream (`subscriptions/listen`'s or another's): its notifications pass the response phase.
        let listening = answering.as_ref().map(|a| listen::Listening::of(&a.call.method, &a.gate, &a.ticket, a.judge));
        // A 2026-07-28 call's stream: no server requests, no change notifications on it.
        let modern = answering.as_ref().is_some_and(|a| a.modern);
        tokio::spawn(async move {
            let mut body = body;
            let mut buffer = BytesMut::new();
            let mut answering = answering;
            loop {
                // A client that goes away ends the server's stream too (cancellation).
                let next = tokio::select! {
                    next = body.frame() => next,
                    () = tx.closed() => return,
                };
                let frame = match next {
                    Some(Ok(frame)) => frame,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "MCP server stream ended with an error");
                        break;
                    }
                    None => break,
                };
                let Ok(data) = frame.into_data() else { continue };
                buffer.extend_from_slice(&data);
                // An event over the cap is refused even when it arrived whole in one read.
                let mut over = false;
                while let Some((event, rest)) = split_event(&buffer) {
                    if event.len() > door_cap {
                        over = true;
                        break;
                    }
                    let event = event.to_vec();
                    buffer = BytesMut::from(&buffer[rest..]);
                    let passed = pass_event(&event, &mut answering, (listening.as_ref(), modern), &cache, &list_key);
                    let Some(out) = passed.await else {
                        continue;
                    };
                    if tx.send(Ok(Bytes::from(out))).await.is_err() {
                        return;
                    }
                }
                if over || buffer.len() > door_cap {
                    tracing::warn!(
                        cap = door_cap,
                        "an SSE event from the MCP server is over the cap; ending the stream"
                    );
                    if let Some(answering) = answering.take() {
                        let error = mcp::error_message(
                            &answering.id,
                            ERROR_DENIED,
                            &format!("response-too-large: the MCP server's answer is larger than {door_cap} bytes"),
                            None,
                        );
                        let _ = tx.send(Ok(Bytes::from(sse_event(&[], &error)))).await;
                    }
                    break;
                }
            }
        });
        ChannelBody(rx).boxed()
    }
}

/// One event of a stream, passed or settled; `None` drops it.
async fn pass_event(
    event: &[u8],
    answering: &mut Option<Answering>,
    (listening, modern): (Option<&listen::Listening>, bool),
    cache: &Cache,
    list_key: &ListKey,
) -> Option<Vec<u8>> {
    let (fields, data) = parse_event(event);
    if data.is_empty() {
        // A priming event (an id for resumption, no data) or a comment.
        return Some(with_blank_line(event));
    }
    let (message, kind) = match mcp::parse_message(data.as_bytes()) {
        Ok(parsed) => parsed,
        Err(e) => {
            tracing::warn!(error = %e, "dropping an SSE event from the MCP server that is not a JSON-RPC message");
            return None;
        }
    };
    match kind {
        Message::Notification { method } => {
            if method == "notifications/tools/list_changed" {
                cache.forget(list_key);
            }
            if let Some(listening) = listening {
                if !listening.is_listen() && !listen::passes_call_notification(&method, modern) {
                    return None;
                }
                return listening.release(message, &method).map(|passed| sse_event(&fields, &passed));
            }
            // A `GET` stream (2025): no call to judge it with.
            Some(with_blank_line(event))
        }
        Message::Request { .. } => listen::passes_server_request(listening, modern).then(|| with_blank_line(event)),
        Message::Response { id } => {
            let Some(waiting) = answering.as_ref() else {
                tracing::warn!(
                    "dropping an answer on the MCP server's event stream: it cannot be evaluated outside its call"
                );
                return None;
            };
            if id != waiting.id {
                tracing::warn!("dropping an answer to another request on the MCP server's event stream");
                return None;
            }
            let waiting = answering.take()?;
            let judge = waiting.judge;
            let answer = judge.run(move || waiting.release(message));
            Some(sse_event(&fields, &answer))
        }
    }
}

/// A request admitted by the gate, waiting for its answer.
struct Answering {
    gate: Arc<Gate>,
    ticket: Arc<Ticket>,
    call: Arc<Call>,
    id: Value,
    list_key: ListKey,
    request_id: String,
    cache: Arc<Cache>,
    filter_tools: bool,
    /// Where the response phase runs ([`Judge`]).
    judge: Judge,
    /// A 2026-07-28 exchange (its stream is held to that revision's rules).
    modern: bool,
}

impl Answering {
    /// The response phase for the answer `message` (blocking: policies run here).
    fn release(self, mut message: Value) -> Value {
        let refuse = |text: String| {
            mcp::error_message(&self.id, ERROR_DENIED, &text, Some(json!({ "request_id": self.request_id })))
        };
        // Tools whose definition differs from its pin: hidden (their calls are refused).
        if self.call.method == "tools/list"
            && let (Some(pins), Some(result)) = (&self.cache.pins, message.get_mut("result"))
        {
            let hidden = pins.judge_listing(result, &self.ticket.request);
            mcp::filter_tools(result, |name| !hidden.contains(name));
        }
        if self.call.method == "tools/list"
            && let Some(result) = message.get("result")
        {
            // A first page replaces what was known; a later one (asked with a cursor) adds.
            let later_page = self.call.body.as_ref().is_some_and(|b| b.get("cursor").is_some());
            let tools = meta::listed_tools(result);
            self.cache.remember(self.list_key.clone(), tools, !later_page);
        }
        // Tools whose `x-mcp-header` annotations are invalid: not shown (their calls are refused).
        if self.call.method == "tools/list"
            && let Some(result) = message.get_mut("result")
        {
            meta::hide_invalid_header_tools(result);
        }
        if self.call.method == "tools/list"
            && self.filter_tools
            && let Some(result) = message.get_mut("result")
        {
            let gate = &self.gate;
            let base = &self.ticket.request;
            // Probes carry the annotations this very answer declares.
            let listed: HashMap<String, Annotations> = mcp::tools_of(result).into_iter().collect();
            let removed = mcp::filter_tools(result, |name| {
                let probe_call = Call {
                    method: "tools/call".into(),
                    operation: name.to_owned(),
                    tool: Some(name.to_owned()),
                    body: None,
                    approval_id: None,
                };
                let mut probe = mcp::request_for_call(base, &probe_call, listed.get(name));
                probe.headers.push((PROBE_HEADER.into(), "tools/list".into()));
                probe.headers.extend(self.cache.pins.as_ref().and_then(|pins| pins.finding_header(name)));
                let verdict = gate.policy_set().evaluate_request(&probe);
                !matches!(verdict.decision, Decision::Deny(_))
            });
            if removed > 0 {
                tracing::debug!(removed, principal = %base.principal.id, "tools hidden from tools/list");
            }
        }
        let mut normal = mcp::response_of(&message);
        match self.gate.release(&self.ticket, &mut normal) {
            Release::Refuse(refusal) => mcp::refusal_error(&self.id, &refusal),
            Release::Return(check) => {
                if check.verdict.redactions().is_empty() {
                    return message;
                }
                match mcp::with_result(&mut message, normal.body.as_ref()) {
                    Ok(()) => message,
                    Err(e) => refuse(format!("redaction-failed: {e}; refusing rather than passing it unredacted")),
                }
            }
        }
    }
}

/// A body fed from a channel (the filtered SSE stream).
struct ChannelBody(mpsc::Receiver<Result<Bytes, BoxError>>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0.poll_recv(cx).map(|next| next.map(|chunk| chunk.map(Frame::data)))
    }
}

/// Sets a header the door derives; a value that cannot be a header value is left out (the
/// server then refuses the message, as it would any without it).
fn set_header(headers: &mut HeaderMap, name: &'static str, value: &str) {
    match HeaderValue::from_str(value) {
        Ok(value) => {
            headers.insert(HeaderName::from_static(name), value);
        }
        Err(_) => {
            headers.remove(name);
        }
    }
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("text/event-stream"))
}

/// The first complete event in `buffer` (up to and excluding its blank line) and where
/// the rest starts. Lines end with LF, CRLF or CR (the SSE grammar).
fn split_event(buffer: &[u8]) -> Option<(&[u8], usize)> {
    let mut i = 0;
    let mut line_start = 0;
    while i < buffer.len() {
        let end = match buffer[i] {
            b'\n' => i + 1,
            b'\r' if buffer.get(i + 1) == Some(&b'\n') => i + 2,
            // A CR at the end of what arrived may be followed by LF in the next chunk.
            b'\r' if i + 1 == buffer.len() => return None,
            b'\r' => i + 1,
            _ => {
                i += 1;
                continue;
            }
        };
        if i == line_start {
            return Some((&buffer[..line_start], end));
        }
        i = end;
        line_start = end;
    }
    None
}

/// An event's fields other than `data` (kept in order, for `id:`, `event:`, `retry:`), and
/// its data (the `data:` lines joined with LF).
fn parse_event(event: &[u8]) -> (Vec<String>, String) {
    let text = String::from_utf8_lossy(event);
    let mut fields = Vec::new();
    let mut data: Vec<&str> = Vec::new();
    for line in text.split(['\n', '\r']).filter(|l| !l.is_empty()) {
        if let Some(value) = line.strip_prefix("data")
            && (value.is_empty() || value.starts_with(':'))
        {
            let value = value.strip_prefix(':').unwrap_or(value);
            data.push(value.strip_prefix(' ').unwrap_or(value));
            continue;
        }
        fields.push(line.to_owned());
    }
    (fields, data.join("\n"))
}

/// An event written back: its other fields, then the message as one `data:` line.
fn sse_event(fields: &[String], message: &Value) -> Vec<u8> {
    let mut out = String::new();
    for field in fields {
        out.push_str(field);
        out.push('\n');
    }
    out.push_str("data: ");
    out.push_str(&serde_json::to_string(message).unwrap_or_default());
    out.push_str("\n\n");
    out.into_bytes()
}

fn with_blank_line(event: &[u8]) -> Vec<u8> {
    let mut out = event.to_vec();
    out.extend_from_slice(b"\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(principal: &str, session: &str) -> ListKey {
        ListKey { principal: principal.into(), session: session.into() }
    }

    fn tools(names: &[&str]) -> HashMap<String, ToolInfo> {
        let read_only = Annotations { read_only: Some(true), ..Annotations::default() };
        let tool = ToolInfo { annotations: read_only, schema: None };
        names.iter().map(|n| ((*n).to_owned(), tool.clone())).collect()
    }

    #[test]
    fn tool_lists_are_kept_per_caller_and_session_and_bounded() {
        let cache = Cache::default();
        assert!(matches!(cache.lookup(&key("user:bob>", "s1"), "get"), Known::Unknown));
        cache.remember(key("user:bob>", "s1"), tools(&["get"]), true);
        assert!(matches!(cache.lookup(&key("user:bob>", "s1"), "get"), Known::Listed(_)));
        assert!(matches!(cache.lookup(&key("user:bob>", "s1"), "del"), Known::Unlisted));
        // Another caller in the same session id, or another session: not known.
        assert!(matches!(cache.lookup(&key("user:eve>", "s1"), "get"), Known::Unknown));
        assert!(matches!(cache.lookup(&key("user:bob>", "s2"), "get"), Known::Unknown));
        // A later page adds; a first page replaces.
        cache.remember(key("user:bob>", "s1"), tools(&["del"]), false);
        assert!(matches!(cache.lookup(&key("user:bob>", "s1"), "get"), Known::Listed(_)));
        cache.remember(key("user:bob>", "s1"), tools(&["del"]), true);
        assert!(matches!(cache.lookup(&key("user:bob>", "s1"), "get"), Known::Unlisted));
        cache.forget(&key("user:bob>", "s1"));
        assert!(matches!(cache.lookup(&key("user:bob>", "s1"), "del"), Known::Unknown));
        cache.remember(key("user:bob>", "s3"), tools(&["get"]), true);
        cache.forget_session("s3");
        assert!(matches!(cache.lookup(&key("user:bob>", "s3"), "get"), Known::Unknown));
        // Many sessions: the number of lists stays bounded, the newest is kept.
        for i in 0..MAX_LISTS + 10 {
            cache.remember(key("user:bob>", &format!("x{i}")), tools(&["get"]), true);
        }
        assert!(cache.lists.lock().unwrap().len() <= MAX_LISTS);
        let newest = key("user:bob>", &format!("x{}", MAX_LISTS + 9));
        assert!(matches!(cache.lookup(&newest, "get"), Known::Listed(_)));
    }

    #[test]
    fn events_split_on_blank_lines_of_any_ending() {
        let text = b"event: message\ndata: {\"a\":1}\n\nid: 2\r\ndata: x\r\n\r\npartial";
        let (first, rest) = split_event(text).unwrap();
        assert_eq!(first, b"event: message\ndata: {\"a\":1}\n");
        let (second, rest2) = split_event(&text[rest..]).unwrap();
        assert_eq!(second, b"id: 2\r\ndata: x\r\n");
        assert!(split_event(&text[rest + rest2..]).is_none());
        assert!(split_event(b"data: x\r").is_none(), "a CR at the end may be half of CRLF");
    }

    #[test]
    fn events_keep_their_fields_and_join_data_lines() {
        let (fields, data) = parse_event(b"event: message\nid: 7\ndata: {\"a\":\ndata:1}\n");
        assert_eq!(fields, ["event: message", "id: 7"]);
        assert_eq!(data, "{\"a\":\n1}");
        let out = sse_event(&fields, &json!({"b": 2}));
        assert_eq!(out, b"event: message\nid: 7\ndata: {\"b\":2}\n\n");
        assert_eq!(parse_event(b"id: 1\ndata:\n").1, "");
    }
}
