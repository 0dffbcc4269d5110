//! Recorded MCP sessions, read for `portcullis replay` and `portcullis test`: one JSON-RPC
//! message per line, requests paired with their answers by id, of either protocol generation.
//!
//! # Lines
//!
//! - A bare JSON-RPC message (`{"jsonrpc": "2.0", …}`): a request, an answer or a
//!   notification, as sent. A 2025 session (`initialize`, then calls) is only such lines.
//! - A request with the HTTP headers it was sent with: `{"headers": {"mcp-method": …},
//!   "message": {…}}`. A 2026-07-28 client mirrors its request metadata into headers
//!   (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`; transports/streamable-http
//!   "Request Metadata Headers"), and the door checks them against the body before any policy
//!   runs. Replay runs the door's own check ([`mcp_headers::check_call`], with the tool's
//!   `inputSchema` from a recorded `tools/list`): a mismatch is an entry error naming the line
//!   and the specification's error (`HeaderMismatch`, -32020), as the door answers it with 400
//!   and forwards nothing. So is a call carrying `Mcp-Param-*` headers for a tool no recorded
//!   `tools/list` defined with an `inputSchema`: nothing can vouch for them, and the door
//!   refuses them too. The checked, decoded `Mcp-Param-*` values are the request headers
//!   policies see (`mcp-param-region: us-west1`), as at the door.
//! - The endpoint line `{"mcp_endpoint": "https://host/path", "headers": {…}}`: the URL and the
//!   HTTP headers (credentials, say) of the requests after it (default [`DEFAULT_ENDPOINT`]).
//!   A request's own `headers` are added to these, replacing ones of the same name.
//!
//! A 2026-07-28 message without recorded headers (a log of messages only) is read with its
//! generation from `params._meta["io.modelcontextprotocol/protocolVersion"]`: the policies
//! see `mcp-protocol-version: 2026-07-28`, as the door shows them, but no `mcp-param-*`
//! header, since nothing recorded them to check.
//!
//! # Multi Round-Trip Requests
//!
//! In 2026-07-28 a server (or the door) may answer a call with an `InputRequiredResult`
//! (`resultType: "input_required"`, `inputRequests`, `requestState`; basic/patterns/mrtr), and
//! the client retries the call, a new request, with `requestState` and `inputResponses` in its
//! params. Replay pairs the retry with the call whose answer carried that state, and names the
//! retry's entry `<file stem>:<line> retry-of:<line of the call>` ([`recorded_retry`]):
//!
//! - A state starting `pcs1.` is the door's approval state (an approval was required, the
//!   door answered with an elicitation pointing at it; approval/request_state). The door
//!   never forwarded that call, so its entry has no response, and the retry is replayed as the
//!   retry it was: a call carrying that approval's id (the `portcullis-approval` header, as the
//!   door hands it to the gate). The id is read from the state's payload, which is signed, not
//!   encrypted: replay needs no key, so a recording made with the door's default per-process
//!   key replays as well as one made with configured keys. The state binds the call's digest
//!   ([`Call::digest`], the door's own mapping): a retry that is another call (other
//!   arguments, say) is an entry error naming the retry's line and the held call's, as the
//!   door refuses it (`other-call`). Replay does not verify the state's MAC, expiry or
//!   principal (a recording is replayed later, with `--as` perhaps naming another caller);
//!   the approval itself is decided again (`--approve-as`), never taken from the file.
//! - Any other state is the upstream server's own: its `InputRequiredResult` is the server's
//!   answer (the response phase sees it) and the retry is replayed as an ordinary call.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};

use super::mcp::{
    Annotations, Call, METHOD_CALL, Message, call_of, check_notification, classify, parse_json_strict,
    request_for_call, response_of, tools_of,
};
use super::mcp_headers::{
    self, Generation, LEGACY_VERSIONS, META_PROTOCOL_VERSION, MODERN_VERSION, MetadataError, PROTOCOL_VERSION_HEADER,
};
use crate::adapters::jsonl::{Lines, read_error};
use crate::adapters::traffic::{Flow, Format, Locator, Sink, Summary, TrafficError, TrafficItem};
use crate::approval::request_state::StatePayload;
use crate::exchange::{Exchange, Request, split_url};
use crate::gate::APPROVAL_HEADER;

/// Where a recorded session's requests are taken to have gone when the file does not say:
/// `http://localhost/mcp`.
pub const DEFAULT_ENDPOINT: &str = "http://localhost/mcp";

/// What a retry's request id carries after `<file stem>:<line>`: ` retry-of:<line>` (the line
/// of the call whose `InputRequiredResult` it answers, or `?` when that was not recorded).
pub const RETRY_MARK: &str = " retry-of:";

/// The prefix of the door's own `requestState` (approval/request_state's format tag).
const DOOR_STATE_PREFIX: &str = "pcs1.";

/// Whether one line (a JSONL file's first object) is an MCP session line: a JSON-RPC
/// message (`"jsonrpc"` key), a request with its headers (`{"message": {"jsonrpc": …}}`) or
/// the endpoint line (`{"mcp_endpoint": …}`).
pub(crate) fn is_session_line(line: &[u8]) -> bool {
    match serde_json::from_slice::<Value>(line) {
        Ok(Value::Object(object)) => {
            object.contains_key("jsonrpc")
                || object.contains_key("mcp_endpoint")
                || object.get("message").is_some_and(|m| m.get("jsonrpc").is_some())
        }
        _ => false,
    }
}

/// A request waiting for its answer while a session file is read: the request the policies
/// see, built when it was sent (with the annotations and schemas known then, as at the door).
struct Pending {
    line: usize,
    id: Value,
    request: Request,
    /// The JSON-RPC method (a `tools/list` answer teaches annotations and schemas).
    method: String,
}

/// What a session has taught the reader so far.
struct Known {
    base: Request,
    annotations: HashMap<String, Annotations>,
    /// Each listed tool's `inputSchema`, for its `Mcp-Param-*` check.
    schemas: HashMap<String, Value>,
    /// `requestState` of each recorded `InputRequiredResult` → the line of the call it answered.
    states: HashMap<String, usize>,
}

/// Reads a recorded MCP session at `path` (see [`read_mcp_jsonl`]).
pub(crate) fn read_mcp_jsonl_file<R: Flow>(
    path: &Path,
    each: impl FnMut(TrafficItem) -> R,
) -> Result<Summary, TrafficError> {
    let file = std::fs::File::open(path).map_err(|source| TrafficError::Open { file: path.into(), source })?;
    read_mcp_jsonl(BufReader::new(file), path, each)
}

/// Reads a recorded MCP session (see the module's documentation for the lines): client
/// requests and server answers interleaved as they were sent (blank lines and `#` comments
/// skipped). Each request is paired with the answer carrying its id and handed out as one
/// exchange when the answer arrives (at the end of the file for requests never answered,
/// without a response). Notifications are skipped. Annotations and input schemas from a
/// recorded `tools/list` answer apply to later calls of those tools, as at the front door.
/// The request id is `<file stem>:<line of the request>` (with [`RETRY_MARK`] for a retry);
/// a bad line is an entry error naming it.
pub fn read_mcp_jsonl<R: Flow>(
    reader: impl BufRead,
    source: &Path,
    mut each: impl FnMut(TrafficItem) -> R,
) -> Result<Summary, TrafficError> {
    let mut sink = Sink::new(source, &mut each);
    let mut known = Known {
        base: endpoint_request(DEFAULT_ENDPOINT, None).unwrap_or_default(),
        annotations: HashMap::new(),
        schemas: HashMap::new(),
        states: HashMap::new(),
    };
    let mut pending: Vec<Pending> = Vec::new();
    let mut lines = Lines::new(reader);
    while let Some((line, text)) = lines.next_line().map_err(|e| read_error(source, sink.items, e))? {
        let outcome = match text {
            Ok(text) => match parse_json_strict(text.as_bytes()) {
                Ok(value) => one_line(&mut known, &mut pending, line, value, &sink.stem),
                Err(e) => Some((Locator::Line(line), Err((String::new(), e.to_string())))),
            },
            Err(error) => Some((Locator::Line(line), Err(error))),
        };
        if let Some((at, result)) = outcome
            && !sink.emit(at, result)
        {
            return Ok(sink.summary(Format::Mcp));
        }
    }
    for asked in std::mem::take(&mut pending) {
        if !sink.emit(Locator::Line(asked.line), Ok(Exchange { request: asked.request, response: None })) {
            break;
        }
    }
    Ok(sink.summary(Format::Mcp))
}

/// What one line gives: an entry (an error, or an answered request), or nothing yet.
type Outcome = Option<(Locator, Result<Exchange, (String, String)>)>;

fn one_line(known: &mut Known, pending: &mut Vec<Pending>, line: usize, value: Value, stem: &str) -> Outcome {
    let error = |field: &str, message: String| Some((Locator::Line(line), Err((field.to_owned(), message))));
    if let Some(endpoint) = value.get("mcp_endpoint") {
        let result = endpoint
            .as_str()
            .ok_or_else(|| "expected a URL string".to_owned())
            .and_then(|url| endpoint_request(url, value.get("headers")));
        return match result {
            Ok(request) => {
                known.base = request;
                None
            }
            Err(message) => error("mcp_endpoint", message),
        };
    }
    let (value, headers) = match value {
        Value::Object(mut wrapper) if wrapper.contains_key("message") => {
            let message = wrapper.remove("message").unwrap_or_default();
            if let Some(key) = wrapper.keys().find(|k| *k != "headers") {
                return error(
                    key,
                    "unknown key: a line is a JSON-RPC message or {\"headers\": {…}, \"message\": {…}}".into(),
                );
            }
            match header_pairs(wrapper.get("headers").unwrap_or(&Value::Object(Map::new()))) {
                Ok(headers) => (message, Some(headers)),
                Err(message) => return error("headers", message),
            }
        }
        value => (value, None),
    };
    match classify(&value) {
        Ok(Message::Request { id, method, params }) => {
            let call = match call_of(&method, params.as_ref()) {
                Ok(call) => call,
                Err(e) => return error("params", e.to_string()),
            };
            match known.request(line, stem, &value, &call, params.as_ref(), headers.as_deref()) {
                Ok(request) => {
                    pending.push(Pending { line, id, request, method });
                    None
                }
                Err((field, message)) => error(field, message),
            }
        }
        // A call sent as a notification is refused by the door; here it is an entry error.
        Ok(Message::Notification { method }) => {
            check_notification(&method).err().and_then(|e| error("", e.to_string()))
        }
        Ok(Message::Response { id }) => {
            // An answer to a request from the server (2025 sampling, elicitation) or one whose
            // request was not recorded: nothing for the policies.
            let asked = pending.remove(pending.iter().position(|p| p.id == id)?);
            let result = value.get("result");
            if let (true, Some(result)) = (asked.method == "tools/list", result) {
                known.listed(result);
            }
            let mut response = Some(response_of(&value));
            let state = result.filter(|r| is_input_required(r)).and_then(|r| r.get("requestState"));
            if let Some(state) = state.and_then(Value::as_str) {
                known.states.insert(state.to_owned(), asked.line);
                if state.starts_with(DOOR_STATE_PREFIX) {
                    // The door's answer (approval required): the server never saw the call.
                    response = None;
                }
            }
            Some((Locator::Line(asked.line), Ok(Exchange { request: asked.request, response })))
        }
        Err(e) => error("", e.to_string()),
    }
}

impl Known {
    /// A `tools/list` answer: each tool's annotations and input schema.
    fn listed(&mut self, result: &Value) {
        self.annotations.extend(tools_of(result));
        for tool in result.get("tools").and_then(Value::as_array).into_iter().flatten() {
            if let (Some(name), Some(schema)) = (tool.get("name").and_then(Value::as_str), tool.get("inputSchema")) {
                self.schemas.insert(name.to_owned(), schema.clone());
            }
        }
    }

    /// The request the policies see for `call` (line `line`, sent with `headers` when the
    /// recording has them), or why the door would have refused it: `(field, message)`.
    fn request(
        &self,
        line: usize,
        stem: &str,
        message: &Value,
        call: &Call,
        params: Option<&Value>,
        headers: Option<&[(String, String)]>,
    ) -> Result<Request, (&'static str, String)> {
        let mut http = self.base.clone();
        let mut checked = Vec::new();
        let generation = if let Some(headers) = headers {
            for (name, value) in headers {
                http.headers.retain(|(n, _)| n != name);
                http.headers.push((name.clone(), value.clone()));
            }
            let map = header_map(&http.headers).map_err(|m| ("headers", m))?;
            let schema = call.tool.as_ref().and_then(|tool| self.schemas.get(tool));
            let metadata = mcp_headers::check_call(&map, message, schema).map_err(|e| ("headers", refused(&e)))?;
            checked = metadata.params.unwrap_or_default();
            metadata.generation
        } else {
            let generation = generation_of_body(params).map_err(|e| ("params._meta", refused(&e)))?;
            if generation == Generation::Modern && http.headers.iter().all(|(n, _)| n != PROTOCOL_VERSION_HEADER) {
                http.headers.push((PROTOCOL_VERSION_HEADER.into(), MODERN_VERSION.into()));
            }
            generation
        };
        let annotations = call.tool.as_ref().and_then(|tool| self.annotations.get(tool));
        let mut request = request_for_call(&http, call, annotations);
        request.headers.extend(checked.into_iter().map(|p| (p.header, p.value)));
        request.id = format!("{stem}:{line}");
        let mut approval = call.approval_id.clone();
        match params.and_then(|p| p.get("requestState")) {
            None => {}
            Some(Value::String(state)) if generation == Generation::Modern => {
                let of = self.states.get(state).copied();
                let of_text = of.map_or_else(|| "?".to_owned(), |of| of.to_string());
                request.id = format!("{stem}:{line}{RETRY_MARK}{of_text}");
                if state.starts_with(DOOR_STATE_PREFIX) {
                    let payload = door_state(state).map_err(|m| ("params.requestState", m))?;
                    if payload.digest != call.digest() {
                        return Err(("params.requestState", other_call(line, of)));
                    }
                    approval = Some(payload.approval_id);
                }
            }
            Some(Value::String(_)) => {
                return Err(("params.requestState", "a retry with requestState is a 2026-07-28 message".into()));
            }
            Some(_) => return Err(("params.requestState", "must be a string".into())),
        }
        if let Some(id) = approval
            && request.header(APPROVAL_HEADER).is_none()
        {
            request.headers.push((APPROVAL_HEADER.into(), id));
        }
        Ok(request)
    }
}

/// A refused metadata check as an entry error: the specification's message and error.
fn refused(error: &MetadataError) -> String {
    let name = match error {
        MetadataError::Mismatch(_) => "HeaderMismatch",
        MetadataError::UnsupportedVersion { .. } => "UnsupportedProtocolVersionError",
    };
    format!("{error} ({name}, JSON-RPC {}): the door answers 400 and forwards nothing", error.code())
}

/// The generation a message without recorded headers names in its `_meta`.
fn generation_of_body(params: Option<&Value>) -> Result<Generation, MetadataError> {
    match params.and_then(|p| p.get("_meta")).and_then(|m| m.get(META_PROTOCOL_VERSION)) {
        None => Ok(Generation::Legacy),
        Some(Value::String(v)) if v == MODERN_VERSION => Ok(Generation::Modern),
        Some(Value::String(v)) if LEGACY_VERSIONS.contains(&v.as_str()) => Ok(Generation::Legacy),
        Some(Value::String(v)) => Err(MetadataError::UnsupportedVersion { requested: v.clone() }),
        Some(_) => Err(MetadataError::Mismatch(mcp_headers::HeaderMismatch {
            detail: format!("body _meta {META_PROTOCOL_VERSION} must be a string"),
        })),
    }
}

/// Whether a result is an `InputRequiredResult` (basic/patterns/mrtr).
fn is_input_required(result: &Value) -> bool {
    match result.get("resultType").and_then(Value::as_str) {
        Some(kind) => kind == "input_required",
        None => result.get("inputRequests").is_some(),
    }
}

/// The payload of the door's `requestState` (`pcs1.<kid>.<payload>.<mac>`): base64url JSON,
/// signed but not encrypted, so it is read without the key. Neither the MAC nor the expiry
/// nor the principal is checked: a recording is replayed later, maybe with another key, and
/// `--as` may name another caller; the approval is decided again, never taken from the file.
fn door_state(state: &str) -> Result<StatePayload, String> {
    let unreadable = || "the door's requestState (pcs1.…) does not carry a readable approval id".to_owned();
    let mut parts = state.split('.');
    let (Some(_), Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(unreadable());
    };
    let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| unreadable())?;
    let payload: StatePayload = serde_json::from_slice(&json).map_err(|_| unreadable())?;
    if payload.approval_id.is_empty() {
        return Err(unreadable());
    }
    Ok(payload)
}

/// The entry error of a retry whose door state was issued for another call: the door binds
/// its state to the call's method, name and arguments ([`Call::digest`]) and refuses any
/// other call presenting it (`request-state-invalid`, `other-call`), forwarding nothing.
fn other_call(line: usize, of: Option<usize>) -> String {
    let issued = match of {
        Some(of) => format!("the call on line {of}"),
        None => "a call that was not recorded".to_owned(),
    };
    format!(
        "the retry on line {line} is not the call the door's requestState was issued for ({issued}): its method, name \
         or arguments differ, so the door refuses it (request-state-invalid: other-call) and forwards nothing"
    )
}

/// A line's `headers` object as lower-case `(name, value)` pairs.
fn header_pairs(headers: &Value) -> Result<Vec<(String, String)>, String> {
    let Value::Object(map) = headers else { return Err("`headers` must be an object of strings".into()) };
    map.iter()
        .map(|(name, value)| match value {
            Value::String(value) => Ok((name.to_ascii_lowercase(), value.clone())),
            _ => Err(format!("`headers.{name}` must be a string")),
        })
        .collect()
}

fn header_map(headers: &[(String, String)]) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("`{name}` is not a header name"))?;
        let value = HeaderValue::from_str(value).map_err(|_| format!("the value of `{name}` is not a header value"))?;
        map.append(header, value);
    }
    Ok(map)
}

/// The request a session's calls are built on: the endpoint's URL and the given headers.
fn endpoint_request(url: &str, headers: Option<&Value>) -> Result<Request, String> {
    let parts = split_url(url)?;
    let mut request = Request {
        method: METHOD_CALL.into(),
        authority: crate::adapters::http::normalise_authority(&parts.authority, &parts.scheme),
        scheme: parts.scheme,
        path: parts.path,
        query: parts.query,
        ..Request::default()
    };
    if let Some(headers) = headers {
        request.headers = header_pairs(headers)?;
    }
    Ok(request)
}

// ---------------------------------------------------------------------------------------
// What a replayed entry was
// ---------------------------------------------------------------------------------------

/// The generation of a recorded MCP call (its request as [`read_mcp_jsonl`] built it):
/// `None` for a request that is not an MCP call. 2026-07-28 when the request carries
/// `mcp-protocol-version: 2026-07-28` (checked against the body, or set from it), else 2025.
pub fn recorded_generation(request: &Request) -> Option<Generation> {
    request.header(super::mcp::MCP_METHOD_HEADER)?;
    Some(if request.header(PROTOCOL_VERSION_HEADER) == Some(MODERN_VERSION) {
        Generation::Modern
    } else {
        Generation::Legacy
    })
}

/// A recorded Multi Round-Trip retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRetry {
    /// The line of the call whose `InputRequiredResult` carried the state (`None`: not
    /// recorded).
    pub of_line: Option<usize>,
    /// The approval id of the door's state (`None`: the server's own state).
    pub approval: Option<String>,
}

/// Whether a recorded request is a Multi Round-Trip retry (its id carries [`RETRY_MARK`]).
pub fn recorded_retry(request: &Request) -> Option<RecordedRetry> {
    let (_, of) = request.id.split_once(RETRY_MARK)?;
    recorded_generation(request)?;
    Some(RecordedRetry { of_line: of.parse().ok(), approval: request.header(APPROVAL_HEADER).map(str::to_owned) })
}

#[cfg(test)]
mod tests;
