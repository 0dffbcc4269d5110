//! Converts Model Context Protocol (MCP) JSON-RPC messages into the normalised request and
//! response, and the verdict's effects back into JSON-RPC (conversions only).
//!
//! An AI agent's tool call becomes one [`Request`] the same policies decide on as an HTTP
//! call ([`request_for_call`]):
//!
//! | JSON-RPC request | `method` | `operation` | body (JSON) |
//! |---|---|---|---|
//! | `tools/call` `{name, arguments}` | `CALL` | the tool's name | `arguments` (`{}` when absent) |
//! | `resources/read` `{uri}` | `CALL` | `resources/read:URI` | `{"uri": URI}` |
//! | `prompts/get` `{name, arguments}` | `CALL` | `prompts/get:NAME` | `arguments` (`{}` when absent) |
//! | any other method (`initialize`, `tools/list`, `ping`, …) | `CALL` | the method | `params` without `_meta` (none when empty) |
//!
//! Scheme, authority, path, query and headers are those of the HTTP request that carried the
//! message (so routes, identity and client address work as for HTTP), plus two kinds of
//! headers the host adds and a caller can never send itself ([`strip_reserved_headers`]):
//! `mcp-method` (the JSON-RPC method) and, for `tools/call`, the tool's annotations as the
//! server declared them in `tools/list` (`mcp-annotation-readonlyhint: true`, …), every hint
//! the server left out (or all of them, for a tool whose listing is not known) carrying
//! MCP's cautious default ([`Annotations::effective`]). Annotations are **hints from the
//! server**: a policy may use them to be stricter, never to trust a tool. The WIT request
//! has no labels, so headers are how they travel.
//!
//! Messages are parsed strictly ([`parse_json_strict`]): an object with a repeated key is
//! refused, so a door can forward exactly the value it judged, re-serialised.
//!
//! The answer's `result` (for a tool: `content`, `structuredContent`, `isError`) is the
//! response body the response phase sees, with status 200; a JSON-RPC `error` object is the
//! body with status 500 ([`response_of`]). Redactions are applied by the host to those
//! bodies, then written back into the messages ([`with_body`], [`with_result`]).
//!
//! Refusals become JSON-RPC errors ([`refusal_error`]): `-32001` unauthenticated, `-32004`
//! approval required (the approval's id in `error.data.approval.id`), `-32003` any other
//! refusal, with the HTTP-style status, code, policy and request id in `error.data`.
//!
//! Recorded sessions (one JSON-RPC message per line, requests paired with their responses
//! by id, of either protocol generation) are read by [`read_mcp_jsonl`] for `portcullis
//! replay`, in [`super::mcp_session`].

use serde_json::{Map, Value, json};

use crate::exchange::{Body, Request, Response};
use crate::gate::Refusal;

/// The normalised method of every MCP message.
pub(crate) const METHOD_CALL: &str = "CALL";
/// The header carrying the JSON-RPC method (`tools/call`, `resources/read`, …).
pub const MCP_METHOD_HEADER: &str = "mcp-method";
/// The prefix of the headers carrying a tool's annotations (`mcp-annotation-readonlyhint`).
pub(crate) const ANNOTATION_HEADER_PREFIX: &str = "mcp-annotation-";
/// The 2026 protocol's header mirroring a call's name (tool, prompt or resource URI).
pub(crate) const MCP_NAME_HEADER: &str = "mcp-name";
/// The prefix of the 2026 protocol's headers mirroring arguments (`Mcp-Param-Region`).
pub(crate) const MCP_PARAM_HEADER_PREFIX: &str = "mcp-param-";
/// Set on a `tools/call` (to `server` or `default`): whether the annotation headers are the
/// hints the server listed for the tool (with MCP's defaults for the ones it did not
/// declare), or only MCP's defaults because the tool's listing is not known.
pub(crate) const ANNOTATION_SOURCE_HEADER: &str = "mcp-annotation-source";
/// Set (to `tools/list`) on the requests the front door evaluates to filter a tool list:
/// they ask "may this principal call this tool?" and are never forwarded.
pub const PROBE_HEADER: &str = "mcp-probe";
/// Set on a `tools/call` and its `tools/list` probe when the tool's listed definition has
/// findings of the content heuristics (`mcp_pins::scan`): their names, comma-separated
/// (`instruction-tag,secret-parameter`). Policies (tool-guard's `refuse_findings`) read it.
pub const TOOL_FINDING_HEADER: &str = "mcp-tool-finding";
/// The `params._meta` key a client may carry an approval id in instead of the
/// `Portcullis-Approval` header (MCP clients often cannot set a header per call).
pub const APPROVAL_META_KEY: &str = "portcullis/approval";

/// JSON-RPC error code: the credential was refused (with HTTP 401).
pub const ERROR_UNAUTHENTICATED: i64 = -32001;
/// JSON-RPC error code: a policy (or the gate, failing closed) refused.
pub const ERROR_DENIED: i64 = -32003;
/// JSON-RPC error code: a human must approve first; the id is in `data.approval.id`.
pub(crate) const ERROR_APPROVAL_REQUIRED: i64 = -32004;
/// JSON-RPC error code: the message is not valid JSON.
pub(crate) const ERROR_PARSE: i64 = -32700;
/// JSON-RPC error code: the message is not a valid JSON-RPC request.
pub const ERROR_INVALID_REQUEST: i64 = -32600;
/// JSON-RPC error code: the parameters are invalid.
pub(crate) const ERROR_INVALID_PARAMS: i64 = -32602;

/// Why a message could not be converted. A front door answers with a JSON-RPC error and
/// forwards nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum McpError {
    /// Not JSON at all.
    #[error("not valid JSON: {message}")]
    NotJson {
        /// serde_json's description.
        message: String,
    },
    /// A JSON array: a JSON-RPC batch, which MCP 2025-06-18 and later do not allow.
    #[error("JSON-RPC batches are not supported (MCP removed them in 2025-06-18); send one message per request")]
    Batch,
    /// An object with the same key twice (at any depth, after unescaping). Parsers disagree
    /// on which one counts (serde_json and Python keep the last, others the first), so the
    /// policies could judge one meaning while the server acts on the other.
    #[error(
        "the message has the key `{key}` twice in one object; parsers disagree on which one counts, so a message \
         must have exactly one meaning"
    )]
    DuplicateKey {
        /// The repeated key (at most 64 characters of it).
        key: String,
    },
    /// A notification (no `id`) whose method is not a `notifications/…` one, e.g. a
    /// `tools/call` without an `id`: a call must be a request, so that it is decided,
    /// audited and answered ([`check_notification`]).
    #[error(
        "`{method}` was sent without an `id`: only `notifications/…` methods may be notifications; a call must be \
         a request, so that it is decided, audited and answered"
    )]
    NotificationNotAllowed {
        /// The JSON-RPC method.
        method: String,
    },
    /// JSON, but not a JSON-RPC 2.0 message.
    #[error("not a JSON-RPC 2.0 message: {reason}")]
    NotJsonRpc {
        /// What is missing or wrong.
        reason: String,
    },
    /// A known method with parameters it cannot be decided on.
    #[error("`{method}`: {reason}")]
    BadParams {
        /// The JSON-RPC method.
        method: String,
        /// What is wrong, e.g. `params.name must be a string`.
        reason: String,
    },
    /// A body after redaction that is not what the message needs (e.g. the arguments
    /// became a string).
    #[error("cannot write the redacted {what} back into the message: {reason}")]
    Rewrite {
        /// `arguments`, `result`, ….
        what: String,
        /// Why.
        reason: String,
    },
}

impl McpError {
    /// The JSON-RPC error code to answer this with.
    pub fn code(&self) -> i64 {
        match self {
            McpError::NotJson { .. } => ERROR_PARSE,
            McpError::Batch
            | McpError::NotJsonRpc { .. }
            | McpError::DuplicateKey { .. }
            | McpError::NotificationNotAllowed { .. } => ERROR_INVALID_REQUEST,
            McpError::BadParams { .. } => ERROR_INVALID_PARAMS,
            McpError::Rewrite { .. } => ERROR_DENIED,
        }
    }
}

/// One JSON-RPC message, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A request: it has a `method` and an `id` and expects an answer.
    Request {
        /// The id (a string or a number), echoed in the answer.
        id: Value,
        /// The method.
        method: String,
        /// The parameters, if any.
        params: Option<Value>,
    },
    /// A notification: a `method` without an `id`.
    Notification {
        /// The method.
        method: String,
    },
    /// An answer: an `id` with a `result` or an `error`.
    Response {
        /// The id of the request it answers.
        id: Value,
    },
}

/// Parses one JSON-RPC message (the body of a Streamable HTTP POST, or one `data:` of an
/// SSE event) into its JSON value and its kind. A batch (a JSON array) and an object with a
/// repeated key ([`parse_json_strict`]) are refused.
pub fn parse_message(bytes: &[u8]) -> Result<(Value, Message), McpError> {
    let value = parse_json_strict(bytes)?;
    let message = classify(&value)?;
    Ok((value, message))
}

/// Parses JSON, refusing an object that has the same key twice at any depth (keys compared
/// after unescaping, so `"name"` and `"n\u0061me"` are the same key). A door forwards the
/// value parsed here, re-serialised, so what the policies judged and what the server reads
/// cannot differ by parser.
pub fn parse_json_strict(bytes: &[u8]) -> Result<Value, McpError> {
    use serde::de::DeserializeSeed as _;
    let duplicate = std::cell::RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed =
        strict::Strict { duplicate: &duplicate }.deserialize(&mut de).and_then(|value| de.end().map(|()| value));
    match (parsed, duplicate.into_inner()) {
        (_, Some(key)) => Err(McpError::DuplicateKey { key }),
        (Ok(value), None) => Ok(value),
        (Err(e), None) => Err(McpError::NotJson { message: e.to_string() }),
    }
}

/// A JSON value built by serde, refusing repeated keys in objects.
mod strict {
    use std::cell::RefCell;
    use std::fmt;

    use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Number, Value};

    /// Deserialises one value; a repeated key is recorded in `duplicate` and fails the parse.
    #[derive(Clone, Copy)]
    pub(super) struct Strict<'a> {
        pub(super) duplicate: &'a RefCell<Option<String>>,
    }

    impl<'de> DeserializeSeed<'de> for Strict<'_> {
        type Value = Value;

        fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
            deserializer.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Strict<'_> {
        type Value = Value;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(Value::Number(v.into()))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(Value::Number(v.into()))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
            Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("a number that is not finite"))
        }
        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_owned()))
        }
        fn visit_string<E>(self, v: String) -> Result<Value, E> {
            Ok(Value::String(v))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_none<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element_seed(self)? {
                items.push(item);
            }
            Ok(Value::Array(items))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut object = Map::new();
            while let Some(key) = map.next_key::<String>()? {
                if object.contains_key(&key) {
                    let shown: String = key.chars().take(64).collect();
                    *self.duplicate.borrow_mut() = Some(shown);
                    return Err(A::Error::custom("a repeated key"));
                }
                let value = map.next_value_seed(self)?;
                object.insert(key, value);
            }
            Ok(Value::Object(object))
        }
    }
}

/// Accepts a client's notification only when its method is a `notifications/…` one (every
/// notification MCP defines is): anything else without an `id` (a `tools/call`, a
/// `resources/read`, any request method) would reach the server undecided and unaudited,
/// and a lenient server might act on it.
pub fn check_notification(method: &str) -> Result<(), McpError> {
    if method.starts_with("notifications/") {
        Ok(())
    } else {
        Err(McpError::NotificationNotAllowed { method: method.chars().take(64).collect() })
    }
}

/// The kind of a JSON-RPC message already parsed.
pub fn classify(value: &Value) -> Result<Message, McpError> {
    let object = match value {
        Value::Object(object) => object,
        Value::Array(_) => return Err(McpError::Batch),
        _ => return Err(McpError::NotJsonRpc { reason: "expected a JSON object".into() }),
    };
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(McpError::NotJsonRpc { reason: "`jsonrpc` must be \"2.0\"".into() });
    }
    let id = match object.get("id") {
        None => None,
        Some(id @ (Value::String(_) | Value::Number(_))) => Some(id.clone()),
        Some(Value::Null) if !object.contains_key("method") => Some(Value::Null),
        Some(_) => return Err(McpError::NotJsonRpc { reason: "`id` must be a string or a number".into() }),
    };
    match (object.get("method"), id) {
        (Some(Value::String(method)), Some(id)) => {
            let params = object.get("params").cloned();
            if params.as_ref().is_some_and(|p| !p.is_object() && !p.is_array()) {
                return Err(McpError::NotJsonRpc { reason: "`params` must be an object or an array".into() });
            }
            Ok(Message::Request { id, method: method.clone(), params })
        }
        (Some(Value::String(method)), None) => Ok(Message::Notification { method: method.clone() }),
        (Some(_), _) => Err(McpError::NotJsonRpc { reason: "`method` must be a string".into() }),
        (None, Some(id)) if object.contains_key("result") || object.contains_key("error") => {
            Ok(Message::Response { id })
        }
        (None, _) => Err(McpError::NotJsonRpc { reason: "neither a request, a notification nor a response".into() }),
    }
}

/// What a JSON-RPC request asks, as the policies see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The JSON-RPC method.
    pub method: String,
    /// The normalised operation (see the module's table).
    pub operation: String,
    /// The tool's name, for `tools/call`.
    pub tool: Option<String>,
    /// The JSON body the policies see (see the module's table).
    pub body: Option<Value>,
    /// An approval id carried in `params._meta["portcullis/approval"]`.
    pub approval_id: Option<String>,
}

impl Call {
    /// The [`call_digest`](crate::approval::request_state::call_digest) a door's
    /// `requestState` binds this call by: the method, the tool or prompt name (or the
    /// resource URI) and the arguments as judged. One mapping for the door, which seals and
    /// opens states with it, and for replay, which checks that a recorded retry is the call
    /// its state was issued for.
    pub fn digest(&self) -> String {
        use crate::approval::request_state::call_digest;
        match self.method.as_str() {
            "resources/read" => {
                let uri = self.body.as_ref().and_then(|b| b.get("uri")).and_then(Value::as_str).unwrap_or_default();
                call_digest(&self.method, uri, None)
            }
            "prompts/get" => {
                let name = self.operation.strip_prefix("prompts/get:").unwrap_or(&self.operation);
                call_digest(&self.method, name, self.body.as_ref())
            }
            _ => call_digest(&self.method, self.tool.as_deref().unwrap_or(&self.operation), self.body.as_ref()),
        }
    }
}

/// Reads what a request asks from its method and parameters.
pub fn call_of(method: &str, params: Option<&Value>) -> Result<Call, McpError> {
    let bad = |reason: &str| McpError::BadParams { method: method.to_owned(), reason: reason.to_owned() };
    let object = match params {
        None => None,
        Some(Value::Object(object)) => Some(object),
        Some(_) => return Err(bad("params must be an object")),
    };
    let field = |name: &str| object.and_then(|o| o.get(name));
    let approval_id = field("_meta")
        .and_then(|meta| meta.get(APPROVAL_META_KEY))
        .and_then(Value::as_str)
        .map(|id| id.trim().to_owned());
    let arguments = |name: &str| -> Result<Value, McpError> {
        match field(name) {
            None | Some(Value::Null) => Ok(Value::Object(Map::new())),
            Some(value @ Value::Object(_)) => Ok(value.clone()),
            Some(_) => Err(bad(&format!("params.{name} must be an object"))),
        }
    };
    let call = match method {
        "tools/call" => {
            let name = field("name").and_then(Value::as_str).ok_or_else(|| bad("params.name must be a string"))?;
            Call {
                method: method.to_owned(),
                operation: name.to_owned(),
                tool: Some(name.to_owned()),
                body: Some(arguments("arguments")?),
                approval_id,
            }
        }
        "resources/read" => {
            let uri = field("uri").and_then(Value::as_str).ok_or_else(|| bad("params.uri must be a string"))?;
            Call {
                method: method.to_owned(),
                operation: format!("resources/read:{uri}"),
                tool: None,
                body: Some(json!({ "uri": uri })),
                approval_id,
            }
        }
        "prompts/get" => {
            let name = field("name").and_then(Value::as_str).ok_or_else(|| bad("params.name must be a string"))?;
            Call {
                method: method.to_owned(),
                operation: format!("prompts/get:{name}"),
                tool: None,
                body: Some(arguments("arguments")?),
                approval_id,
            }
        }
        _ => {
            let body = object.map(|o| {
                let mut o = o.clone();
                o.remove("_meta");
                o
            });
            Call {
                method: method.to_owned(),
                operation: method.to_owned(),
                tool: None,
                body: body.filter(|o| !o.is_empty()).map(Value::Object),
                approval_id,
            }
        }
    };
    Ok(call)
}

/// A tool's annotations as the server declared them in `tools/list`. Hints only: a server
/// may declare anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Annotations {
    /// `readOnlyHint`.
    pub read_only: Option<bool>,
    /// `destructiveHint`.
    pub destructive: Option<bool>,
    /// `idempotentHint`.
    pub idempotent: Option<bool>,
    /// `openWorldHint`.
    pub open_world: Option<bool>,
}

impl Annotations {
    /// Reads a tool's `annotations` object (absent or non-boolean hints stay `None`).
    pub fn from_tool(tool: &Value) -> Annotations {
        let hint = |name: &str| tool.get("annotations").and_then(|a| a.get(name)).and_then(Value::as_bool);
        Annotations {
            read_only: hint("readOnlyHint"),
            destructive: hint("destructiveHint"),
            idempotent: hint("idempotentHint"),
            open_world: hint("openWorldHint"),
        }
    }

    /// The hints with the MCP defaults filled in for those the server did not declare
    /// (`annotations` `None`: the tool is not known at all). MCP's defaults are the
    /// cautious ones: `readOnlyHint` false, `destructiveHint` true, `idempotentHint` false,
    /// `openWorldHint` true. `destructiveHint` means something only for a tool that is not
    /// read-only, so an undeclared one is false for a tool declared `readOnlyHint: true`.
    pub fn effective(annotations: Option<&Annotations>) -> Annotations {
        let declared = annotations.cloned().unwrap_or_default();
        let read_only = declared.read_only.unwrap_or(false);
        Annotations {
            read_only: Some(read_only),
            destructive: Some(declared.destructive.unwrap_or(!read_only)),
            idempotent: Some(declared.idempotent.unwrap_or(false)),
            open_world: Some(declared.open_world.unwrap_or(true)),
        }
    }

    /// The headers that carry them to policies, e.g. `("mcp-annotation-readonlyhint", "true")`.
    pub fn headers(&self) -> Vec<(String, String)> {
        [
            ("readonlyhint", self.read_only),
            ("destructivehint", self.destructive),
            ("idempotenthint", self.idempotent),
            ("openworldhint", self.open_world),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (format!("{ANNOTATION_HEADER_PREFIX}{name}"), v.to_string())))
        .collect()
    }
}

/// Every tool in a `tools/list` result with its annotations, by name.
pub fn tools_of(result: &Value) -> Vec<(String, Annotations)> {
    result
        .get("tools")
        .and_then(Value::as_array)
        .map(|tools| {
            tools
                .iter()
                .filter_map(|tool| Some((tool.get("name")?.as_str()?.to_owned(), Annotations::from_tool(tool))))
                .collect()
        })
        .unwrap_or_default()
}

/// Removes the tools `keep` refuses from a `tools/list` result; returns how many.
pub fn filter_tools(result: &mut Value, mut keep: impl FnMut(&str) -> bool) -> usize {
    let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut) else { return 0 };
    let before = tools.len();
    tools.retain(|tool| tool.get("name").and_then(Value::as_str).is_some_and(&mut keep));
    before - tools.len()
}

/// Whether a header is one only the host may set: `mcp-method`, `mcp-probe`,
/// `mcp-annotation-*`, and the 2026 protocol's routing headers `mcp-name` and
/// `mcp-param-*`. The routing headers mirror the message's method, name and arguments; a
/// client's copies could disagree with the message the policies judge (or carry an argument
/// a redaction removed), so a door drops them and sets `mcp-method`/`mcp-name` itself from
/// the judged message ([`routing_headers`]). The MCP door first checks a 2026 client's copies
/// against the message (`mcp_headers::check_request`) and shows policies only the
/// `mcp-param-*` values it checked.
pub fn is_reserved_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == MCP_METHOD_HEADER
        || name == PROBE_HEADER
        || name == MCP_NAME_HEADER
        || name == TOOL_FINDING_HEADER
        || name.starts_with(ANNOTATION_HEADER_PREFIX)
        || name.starts_with(MCP_PARAM_HEADER_PREFIX)
}

/// The 2026 protocol's routing headers for the judged `call`, as a server expects them:
/// `mcp-method`, and `mcp-name` (the tool or prompt name, or the resource URI) for
/// `tools/call`, `prompts/get` and `resources/read`. A value that is not plain printable
/// ASCII is sent as `=?base64?…?=` (UTF-8), the protocol's encoding.
pub fn routing_headers(call: &Call) -> Vec<(&'static str, String)> {
    let mut headers = vec![(MCP_METHOD_HEADER, call.method.clone())];
    let name = match call.method.as_str() {
        "tools/call" => call.tool.clone(),
        "prompts/get" => call.operation.strip_prefix("prompts/get:").map(str::to_owned),
        "resources/read" => call.operation.strip_prefix("resources/read:").map(str::to_owned),
        _ => None,
    };
    if let Some(name) = name {
        headers.push((MCP_NAME_HEADER, crate::adapters::mcp_headers::encode_value(&name)));
    }
    headers
}

/// Removes the headers only the host may set, so a caller cannot forge a tool's annotations.
pub fn strip_reserved_headers(headers: &mut Vec<(String, String)>) {
    headers.retain(|(name, _)| !is_reserved_header(name));
}

/// The normalised request for `call`, from the request that carried it over HTTP (`http`:
/// its scheme, authority, path, query, headers, principal and client address are kept).
pub fn request_for_call(http: &Request, call: &Call, annotations: Option<&Annotations>) -> Request {
    let mut request = http.clone();
    strip_reserved_headers(&mut request.headers);
    request.headers.retain(|(name, _)| name != "content-length" && name != "content-type");
    request.method = METHOD_CALL.into();
    request.operation = Some(call.operation.clone());
    request.headers.push((MCP_METHOD_HEADER.into(), call.method.clone()));
    if call.method == "tools/call" {
        // Every hint, always: a tool the door knows nothing about gets MCP's cautious
        // defaults (destructive, not read-only), so a policy that reads only
        // `destructivehint` cannot mistake "unknown" for "harmless".
        request.headers.extend(Annotations::effective(annotations).headers());
        let source = if annotations.is_some() { "server" } else { "default" };
        request.headers.push((ANNOTATION_SOURCE_HEADER.into(), source.into()));
    }
    request.body = call.body.as_ref().map(Body::json);
    request
}

/// The normalised response for a JSON-RPC answer: its `result` with status 200, or its
/// `error` object with status 500.
pub fn response_of(message: &Value) -> Response {
    let (status, body) = match (message.get("result"), message.get("error")) {
        (Some(result), _) => (200, result),
        (None, Some(error)) => (500, error),
        (None, None) => (500, &Value::Null),
    };
    Response { status, headers: vec![("content-type".into(), "application/json".into())], body: Some(Body::json(body)) }
}

/// Parses a (possibly redacted) JSON body back into a value.
fn body_value(body: Option<&Body>, what: &str) -> Result<Option<Value>, McpError> {
    let Some(body) = body else { return Ok(None) };
    if body.truncated {
        return Err(McpError::Rewrite { what: what.into(), reason: "the body was truncated".into() });
    }
    serde_json::from_slice(&body.bytes)
        .map(Some)
        .map_err(|e| McpError::Rewrite { what: what.into(), reason: format!("not JSON: {e}") })
}

/// Writes a (redacted) request body back into the JSON-RPC request `message` for `call`
/// (`params.arguments`, `params.uri`, or the params themselves; `_meta` kept), and removes
/// the approval id from `_meta`: the server has no business with it.
pub fn with_body(message: &mut Value, call: &Call, body: Option<&Body>) -> Result<(), McpError> {
    let body = body_value(body, "arguments")?;
    let Some(object) = message.as_object_mut() else {
        return Err(McpError::Rewrite { what: "arguments".into(), reason: "the message is not an object".into() });
    };
    let params = object.entry("params").or_insert_with(|| Value::Object(Map::new()));
    let Some(params) = params.as_object_mut() else {
        return Err(McpError::Rewrite { what: "arguments".into(), reason: "params is not an object".into() });
    };
    if let Some(Value::Object(meta)) = params.get_mut("_meta") {
        meta.remove(APPROVAL_META_KEY);
        if meta.is_empty() {
            params.remove("_meta");
        }
    }
    let not_object =
        || McpError::Rewrite { what: "arguments".into(), reason: "a redaction replaced the whole object".into() };
    match call.method.as_str() {
        "tools/call" | "prompts/get" => match body {
            Some(Value::Object(arguments)) if !arguments.is_empty() || params.contains_key("arguments") => {
                params.insert("arguments".into(), Value::Object(arguments));
            }
            Some(Value::Object(_)) => {}
            Some(_) => return Err(not_object()),
            None => {}
        },
        "resources/read" => match body.as_ref().and_then(|b| b.get("uri")) {
            Some(uri @ Value::String(_)) => {
                params.insert("uri".into(), uri.clone());
            }
            _ => return Err(McpError::Rewrite { what: "uri".into(), reason: "a redaction removed the URI".into() }),
        },
        _ => match body {
            Some(Value::Object(fields)) => {
                let meta = params.remove("_meta");
                *params = fields;
                if let Some(meta) = meta {
                    params.insert("_meta".into(), meta);
                }
            }
            Some(_) => return Err(not_object()),
            None => params.retain(|key, _| key == "_meta"),
        },
    }
    if params.is_empty() && !matches!(call.method.as_str(), "tools/call" | "resources/read" | "prompts/get") {
        object.remove("params");
    }
    Ok(())
}

/// The `_meta` keys the protocol defines, which pass to the server (besides the ones a door
/// is told to pass): the reserved `io.modelcontextprotocol/` prefix (protocol version,
/// client capabilities and info, log level), `progressToken`, and the OpenTelemetry trace
/// context keys.
fn is_protocol_meta(key: &str) -> bool {
    key.starts_with("io.modelcontextprotocol/")
        || matches!(key, "progressToken" | "traceparent" | "tracestate" | "baggage")
}

/// The `params` fields of a call that a server may get: what the policies judged (the
/// tool's or prompt's `name` and `arguments`, the resource's `uri`), `_meta`, and a server's
/// own Multi Round-Trip fields (`requestState`, `inputResponses`: its state and the answers
/// to what it asked).
const CALL_PARAMS: [&str; 6] = ["name", "arguments", "uri", "_meta", "requestState", "inputResponses"];

/// Trims a request about to be forwarded to what a server may get and the policies did not
/// need to see: `_meta` keeps the protocol's keys and `pass_meta`, nothing else (a key no
/// policy reads cannot smuggle what they would refuse); a `tools/call`, `resources/read` or
/// `prompts/get` keeps `name`, `arguments`, `uri`, `_meta`, `requestState` and
/// `inputResponses` only. The names of removed keys (never values) are returned for the log.
pub fn keep_known_params(message: &mut Value, call: &Call, pass_meta: &[String]) -> Vec<String> {
    let mut removed = Vec::new();
    let Some(params) = message.get_mut("params").and_then(Value::as_object_mut) else { return removed };
    if matches!(call.method.as_str(), "tools/call" | "resources/read" | "prompts/get") {
        params.retain(|key, _| {
            let keep = CALL_PARAMS.contains(&key.as_str());
            if !keep {
                removed.push(format!("params.{key}"));
            }
            keep
        });
    }
    if let Some(Value::Object(meta)) = params.get_mut("_meta") {
        meta.retain(|key, _| {
            let keep = is_protocol_meta(key) || pass_meta.iter().any(|k| k == key);
            if !keep {
                removed.push(format!("params._meta.{key}"));
            }
            keep
        });
        if meta.is_empty() {
            params.remove("_meta");
        }
    }
    removed
}

/// Writes a (redacted) response body back into the JSON-RPC answer `message`: its
/// `result`, or its `error` for an error answer.
pub fn with_result(message: &mut Value, body: Option<&Body>) -> Result<(), McpError> {
    let value = body_value(body, "result")?.unwrap_or(Value::Null);
    let Some(object) = message.as_object_mut() else {
        return Err(McpError::Rewrite { what: "result".into(), reason: "the message is not an object".into() });
    };
    if object.contains_key("result") {
        object.insert("result".into(), value);
    } else if value.is_object() {
        object.insert("error".into(), value);
    } else {
        return Err(McpError::Rewrite { what: "error".into(), reason: "a redaction replaced the whole error".into() });
    }
    Ok(())
}

/// A JSON-RPC error answer.
pub fn error_message(id: &Value, code: i64, message: &str, data: Option<Value>) -> Value {
    let mut error = json!({ "code": code, "message": message });
    if let Some(data) = data {
        error["data"] = data;
    }
    json!({ "jsonrpc": "2.0", "id": id, "error": error })
}

/// The JSON-RPC error for a refusal: `-32001` unauthenticated, `-32004` approval required,
/// `-32003` otherwise; `data` is the refusal's RFC 9457 problem document (status, code,
/// policy, request id and, for approvals, `approval.id` and how to retry).
pub fn refusal_error(id: &Value, refusal: &Refusal) -> Value {
    let code = match refusal.code.as_str() {
        "unauthenticated" => ERROR_UNAUTHENTICATED,
        "approval-required" => ERROR_APPROVAL_REQUIRED,
        _ => ERROR_DENIED,
    };
    let mut data = refusal.problem();
    if let Some(approval) = data.get_mut("approval") {
        approval["retry"] = json!(format!(
            "once approved, send the same call again with `_meta: {{\"{APPROVAL_META_KEY}\": \"{id}\"}}` in its params \
             or the header `portcullis-approval: {id}`",
            id = refusal.approval.as_ref().map_or("", |a| a.id.as_str())
        ));
    }
    let message = format!("{}: {}", refusal.code, refusal.reason);
    error_message(id, code, &message, Some(data))
}

// ---------------------------------------------------------------------------------------
// Recorded sessions (read in mcp_session; re-exported here, where callers found them)
// ---------------------------------------------------------------------------------------

pub use super::mcp_session::{DEFAULT_ENDPOINT, read_mcp_jsonl};
pub(crate) use super::mcp_session::{is_session_line, read_mcp_jsonl_file};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::ApprovalNotice;

    fn call(text: &str) -> (Value, Call) {
        let (value, message) = parse_message(text.as_bytes()).unwrap();
        let Message::Request { method, params, .. } = message else { panic!("not a request: {text}") };
        let call = call_of(&method, params.as_ref()).unwrap();
        (value, call)
    }

    #[test]
    fn only_judged_params_and_the_protocols_meta_reach_the_server() {
        let (mut message, tool) = call(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"pay","arguments":{"to":"x"},
            "smuggled":{"iban":"DE00"},"requestState":"s","inputResponses":{},
            "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","progressToken":3,
            "traceparent":"00-ab-cd-01","vendor/extra":"x","iban":"DE00"}}}"#,
        );
        let removed = keep_known_params(&mut message, &tool, &["vendor/extra".to_owned()]);
        assert_eq!(removed, ["params.smuggled", "params._meta.iban"]);
        let params = &message["params"];
        let keys: Vec<&str> = params.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["_meta", "arguments", "inputResponses", "name", "requestState"]);
        let meta: Vec<&str> = params["_meta"].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(meta, ["io.modelcontextprotocol/protocolVersion", "progressToken", "traceparent", "vendor/extra"]);
        // A `_meta` left empty goes; other methods keep their params (they are the body).
        let (mut message, list) =
            call(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"cursor":"c","_meta":{"x":1}}}"#);
        assert_eq!(keep_known_params(&mut message, &list, &[]), ["params._meta.x"]);
        assert_eq!(message["params"], serde_json::json!({"cursor": "c"}));
    }

    #[test]
    fn messages_are_classified_and_batches_refused() {
        let kind = |text: &str| parse_message(text.as_bytes()).map(|(_, m)| m);
        assert!(matches!(kind(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#), Ok(Message::Request { .. })));
        assert!(matches!(
            kind(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Ok(Message::Notification { .. })
        ));
        assert!(matches!(kind(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#), Ok(Message::Response { .. })));
        assert!(matches!(kind(r#"{"jsonrpc":"2.0","id":null,"error":{"code":1}}"#), Ok(Message::Response { .. })));
        assert_eq!(kind(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#), Err(McpError::Batch));
        assert!(matches!(kind("{"), Err(McpError::NotJson { .. })));
        for bad in [
            r#"{"id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":5}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":"s"}"#,
            "3",
        ] {
            assert!(matches!(kind(bad), Err(McpError::NotJsonRpc { .. })), "{bad}");
        }
        assert_eq!(McpError::Batch.code(), ERROR_INVALID_REQUEST);
    }

    #[test]
    fn a_message_with_a_repeated_key_is_refused_at_any_depth() {
        for text in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_customer","name":"get_customer"}}"#,
            // The same key once escaped: one key to any parser that unescapes.
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_customer","n\u0061me":"get_customer"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"a":[{"x":1,"x":2}]}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#,
        ] {
            let error = parse_message(text.as_bytes()).unwrap_err();
            assert!(matches!(error, McpError::DuplicateKey { .. }), "{text}: {error:?}");
            assert_eq!(error.code(), ERROR_INVALID_REQUEST);
        }
        let error =
            parse_message(br#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"name":1,"name":2}}"#).unwrap_err();
        assert_eq!(error, McpError::DuplicateKey { key: "name".into() });
        // The same key in different objects is fine, and so is anything serde_json reads.
        let (value, _) = parse_message(
            br#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":{"k":1},"b":{"k":[1.5,null,true,"s"]}}}"#,
        )
        .unwrap();
        assert_eq!(value["params"]["b"]["k"], json!([1.5, null, true, "s"]));
        assert!(matches!(parse_message(br#"{"jsonrpc":"2.0","id":1,"method":"x"} x"#), Err(McpError::NotJson { .. })));
        assert!(matches!(parse_json_strict(br#"{"a":"\ud800"}"#), Err(McpError::NotJson { .. })), "a lone surrogate");
    }

    #[test]
    fn only_notifications_may_be_sent_without_an_id() {
        for method in ["notifications/initialized", "notifications/cancelled", "notifications/roots/list_changed"] {
            assert_eq!(check_notification(method), Ok(()), "{method}");
        }
        for method in ["tools/call", "resources/read", "prompts/get", "tools/list", "initialize", "Notifications/x"] {
            let error = check_notification(method).unwrap_err();
            assert_eq!(error.code(), ERROR_INVALID_REQUEST, "{method}");
            assert!(error.to_string().contains(method), "{error}");
        }
    }

    #[test]
    fn a_tool_whose_annotations_are_unknown_carries_the_cautious_defaults() {
        let (_, c) = call(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"delete_customer"}}"#);
        let http = Request {
            path: "/mcp".into(),
            headers: vec![("mcp-annotation-destructivehint".into(), "false".into())],
            ..Request::default()
        };
        let request = request_for_call(&http, &c, None);
        assert_eq!(request.header("mcp-annotation-destructivehint"), Some("true"), "MCP's default, not the forgery");
        assert_eq!(request.header("mcp-annotation-readonlyhint"), Some("false"));
        assert_eq!(request.header("mcp-annotation-idempotenthint"), Some("false"));
        assert_eq!(request.header("mcp-annotation-openworldhint"), Some("true"));
        assert_eq!(request.header(ANNOTATION_SOURCE_HEADER), Some("default"));
        // Listed without hints: the same defaults, from the server.
        let listed = request_for_call(&http, &c, Some(&Annotations::default()));
        assert_eq!(listed.header("mcp-annotation-destructivehint"), Some("true"));
        assert_eq!(listed.header(ANNOTATION_SOURCE_HEADER), Some("server"));
        // Read-only: an undeclared destructiveHint means nothing, so it is false.
        let read_only = Annotations { read_only: Some(true), ..Annotations::default() };
        assert_eq!(Annotations::effective(Some(&read_only)).destructive, Some(false));
        // A declared hint always wins, even a contradictory one.
        let both = Annotations { read_only: Some(true), destructive: Some(true), ..Annotations::default() };
        assert_eq!(Annotations::effective(Some(&both)).destructive, Some(true));
        // Only tool calls carry annotations.
        let (_, r) = call(r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"crm://c/4"}}"#);
        assert_eq!(request_for_call(&http, &r, None).header("mcp-annotation-destructivehint"), None);
    }

    #[test]
    fn routing_headers_are_derived_from_the_judged_call() {
        let (_, c) = call(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get_customer"}}"#);
        let expected = [("mcp-method", "tools/call".to_owned()), ("mcp-name", "get_customer".to_owned())];
        assert_eq!(routing_headers(&c), expected);
        let (_, c) = call(r#"{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"crm://c/é"}}"#);
        assert_eq!(routing_headers(&c)[1], ("mcp-name", "=?base64?Y3JtOi8vYy/DqQ==?=".to_owned()));
        let (_, c) = call(r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#);
        assert_eq!(routing_headers(&c), [("mcp-method", "tools/list".to_owned())]);
    }

    #[test]
    fn a_tool_call_is_the_tool_name_with_its_arguments_as_the_body() {
        let (_, c) = call(
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get_customer","arguments":{"customer_id":7},"_meta":{"portcullis/approval":" apr_1 "}}}"#,
        );
        assert_eq!((c.operation.as_str(), c.tool.as_deref()), ("get_customer", Some("get_customer")));
        assert_eq!(c.body, Some(json!({"customer_id": 7})));
        assert_eq!(c.approval_id.as_deref(), Some("apr_1"));
        let http = Request {
            path: "/mcp".into(),
            authority: "crm.test".into(),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("mcp-annotation-readonlyhint".into(), "true".into()),
                ("x-api-key".into(), "k".into()),
            ],
            ..Request::default()
        };
        let annotations = Annotations { read_only: Some(false), destructive: Some(true), ..Annotations::default() };
        let request = request_for_call(&http, &c, Some(&annotations));
        assert_eq!(request.method, "CALL");
        assert_eq!(request.operation.as_deref(), Some("get_customer"));
        assert_eq!(request.path, "/mcp");
        assert_eq!(request.header("mcp-method"), Some("tools/call"));
        assert_eq!(request.header("x-api-key"), Some("k"));
        // The caller's forged annotation is gone; the server's are there.
        assert_eq!(request.header("mcp-annotation-readonlyhint"), Some("false"));
        assert_eq!(request.header("mcp-annotation-destructivehint"), Some("true"));
        assert_eq!(request.header("content-type"), None);
        let body = request.body.unwrap();
        assert!(body.is_json());
        assert_eq!(serde_json::from_slice::<Value>(&body.bytes).unwrap(), json!({"customer_id": 7}));
    }

    #[test]
    fn other_methods_have_their_own_operations() {
        let (_, c) = call(r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"crm://c/4"}}"#);
        assert_eq!((c.operation.as_str(), c.body), ("resources/read:crm://c/4", Some(json!({"uri": "crm://c/4"}))));
        let (_, c) = call(r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"s"}}"#);
        assert_eq!((c.operation.as_str(), c.body), ("prompts/get:s", Some(json!({}))));
        let (_, c) = call(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"x":1}}}"#);
        assert_eq!((c.operation.as_str(), c.body), ("tools/list", None));
        let (_, c) =
            call(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}"#);
        assert_eq!(c.body, Some(json!({"protocolVersion": "2025-11-25"})));
        for (method, params) in [
            ("tools/call", json!({"arguments": {}})),
            ("tools/call", json!({"name": "t", "arguments": [1]})),
            ("resources/read", json!({})),
            ("prompts/get", json!({"name": 1})),
            ("tools/call", json!([1])),
        ] {
            assert!(matches!(call_of(method, Some(&params)), Err(McpError::BadParams { .. })), "{method} {params}");
        }
    }

    #[test]
    fn redacted_arguments_go_back_into_the_message_without_the_approval_id() {
        let (mut message, c) = call(
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"s","arguments":{"q":"x","ssn":"1"},"_meta":{"portcullis/approval":"apr_1","progressToken":5}}}"#,
        );
        let redacted = Body::json(&json!({"q": "x", "ssn": "***"}));
        with_body(&mut message, &c, Some(&redacted)).unwrap();
        assert_eq!(
            message,
            json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"s","arguments":{"q":"x","ssn":"***"},"_meta":{"progressToken":5}}})
        );
        let whole = Body::json(&json!("***"));
        assert!(matches!(with_body(&mut message, &c, Some(&whole)), Err(McpError::Rewrite { .. })));
    }

    #[test]
    fn results_and_errors_are_the_response_body() {
        let answer = json!({"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"hi"}],"structuredContent":{"email":"a@b"},"isError":false}});
        let response = response_of(&answer);
        assert_eq!(response.status, 200);
        let body: Value = serde_json::from_slice(&response.body.as_ref().unwrap().bytes).unwrap();
        assert_eq!(body["structuredContent"]["email"], "a@b");
        let mut redacted = answer.clone();
        with_result(&mut redacted, Some(&Body::json(&json!({"content": [], "isError": false})))).unwrap();
        assert_eq!(redacted["result"], json!({"content": [], "isError": false}));
        assert_eq!(redacted["id"], 3);
        let error = json!({"jsonrpc":"2.0","id":4,"error":{"code":-32602,"message":"bad"}});
        assert_eq!(response_of(&error).status, 500);
    }

    #[test]
    fn tool_lists_give_annotations_and_can_be_filtered() {
        let mut result = json!({"tools": [
            {"name": "a", "annotations": {"readOnlyHint": true}},
            {"name": "b", "annotations": {"destructiveHint": true, "readOnlyHint": false, "openWorldHint": "yes"}},
            {"name": "c"},
            {"nameless": true}
        ]});
        let tools = tools_of(&result);
        assert_eq!(tools.len(), 3);
        assert_eq!(tools[0].1.headers(), [("mcp-annotation-readonlyhint".to_owned(), "true".to_owned())]);
        assert_eq!(
            tools[1].1,
            Annotations { read_only: Some(false), destructive: Some(true), ..Annotations::default() }
        );
        assert!(tools[2].1.headers().is_empty());
        assert_eq!(filter_tools(&mut result, |name| name != "b"), 2, "b and the nameless entry");
        assert_eq!(tools_of(&result).iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["a", "c"]);
    }

    #[test]
    fn refusals_become_json_rpc_errors_with_the_approval_id() {
        let refusal = Refusal {
            status: 403,
            code: "approval-required".into(),
            reason: "writes need a human".into(),
            policy: Some("tool-guard".into()),
            request_id: "r1".into(),
            approval: Some(ApprovalNotice { id: "apr_9".into(), approver_group: "ops".into(), expires_ms: 0 }),
            scope: None,
        };
        let error = refusal_error(&json!(7), &refusal);
        assert_eq!(error["id"], 7);
        assert_eq!(error["error"]["code"], ERROR_APPROVAL_REQUIRED);
        assert_eq!(error["error"]["data"]["approval"]["id"], "apr_9");
        assert_eq!(error["error"]["data"]["policy"], "tool-guard");
        assert!(error["error"]["data"]["approval"]["retry"].as_str().unwrap().contains("portcullis/approval"));
        let denied = Refusal { code: "tool-not-allowed".into(), approval: None, ..refusal.clone() };
        assert_eq!(refusal_error(&json!("x"), &denied)["error"]["code"], ERROR_DENIED);
        let unauthenticated = Refusal { status: 401, code: "unauthenticated".into(), approval: None, ..refusal };
        assert_eq!(refusal_error(&json!(1), &unauthenticated)["error"]["code"], ERROR_UNAUTHENTICATED);
    }

    #[test]
    fn reserved_headers_are_recognised() {
        let names =
            ["mcp-method", "MCP-Probe", "mcp-annotation-readonlyhint", "Mcp-Annotation-X", "Mcp-Name", "mcp-param-x"];
        for name in names {
            assert!(is_reserved_header(name), "{name}");
        }
        for name in ["mcp-session-id", "mcp-protocol-version", "authorization"] {
            assert!(!is_reserved_header(name), "{name}");
        }
    }

    #[test]
    fn digests_tell_methods_names_and_arguments_apart() {
        let digest = |method: &str, params: Value| call_of(method, Some(&params)).unwrap().digest();
        let a = digest("tools/call", json!({"name": "t", "arguments": {"x": 1, "y": 2}}));
        assert_eq!(a, digest("tools/call", json!({"name": "t", "arguments": {"y": 2, "x": 1}})));
        assert_ne!(a, digest("tools/call", json!({"name": "t", "arguments": {"x": 2, "y": 2}})));
        assert_ne!(a, digest("tools/call", json!({"name": "u", "arguments": {"x": 1, "y": 2}})));
        assert_ne!(a, digest("prompts/get", json!({"name": "t", "arguments": {"x": 1, "y": 2}})));
        // What the retry adds beside the arguments is not the call.
        let retry = json!({"name": "t", "arguments": {"x": 1, "y": 2}, "requestState": "pcs1.s",
            "inputResponses": {}, "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}});
        assert_eq!(a, digest("tools/call", retry));
        let r = digest("resources/read", json!({"uri": "invoices://1"}));
        assert_ne!(r, digest("resources/read", json!({"uri": "invoices://2"})));
        // The door's states hold exactly this (approval/request_state's call_digest).
        let expected = crate::approval::request_state::call_digest("tools/call", "t", Some(&json!({"x": 1, "y": 2})));
        assert_eq!(a, expected);
    }
}
