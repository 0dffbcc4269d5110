//! The request metadata of MCP's 2026-07-28 revision, checked against the message it mirrors.
//!
//! From 2026-07-28, a Streamable HTTP POST mirrors parts of its JSON-RPC body into headers so
//! that intermediaries can route without parsing the body: `MCP-Protocol-Version` (the body's
//! `params._meta["io.modelcontextprotocol/protocolVersion"]`), `Mcp-Method` (`method`),
//! `Mcp-Name` (`params.name`, or `params.uri` for `resources/read`) and `Mcp-Param-{Name}` (the
//! call arguments a tool's `inputSchema` marks with `x-mcp-header`). A component routing on a
//! header while the server acts on the body is a classic confusion, so the specification makes
//! every server that reads the body refuse a request whose headers disagree with it (`400` and
//! the JSON-RPC error [`HEADER_MISMATCH`], `-32020`). Portcullis reads the body, so it is such a
//! server, and it must also never show a policy a header value the body does not back.
//!
//! [`check_request`] is that check as a pure function of the HTTP headers, the parsed message
//! and (for `tools/call`) the tool's `inputSchema`. It says which protocol generation the
//! exchange uses ([`Generation`]) and hands back the validated, decoded `Mcp-Param-*` values
//! ([`Metadata::params`]): the only mirrored values a policy may see. Older (2025-xx) exchanges
//! carry no mirrored headers the protocol defines, so nothing is validated for them and no
//! parameter is handed back: a header a client sent on its own is never trusted.
//!
//! Header values that are not plain printable ASCII travel in the Base64 sentinel form
//! `=?base64?…?=` ([`decode_value`], [`encode_value`]). Decoding is strict (case-sensitive
//! markers, the standard alphabet with canonical padding, UTF-8), and a value that *looks*
//! encoded must be: a client encodes a literal `=?base64?…?=` too, so a plain one that does not
//! decode is refused rather than compared as text.
//!
//! `x-mcp-header` annotations are read by [`header_params`], which applies the specification's
//! constraints on them; an invalid annotation makes the whole tool definition invalid (a client
//! must drop the tool from `tools/list`, and the door refuses calls to it).

use std::fmt::Write as _;

use base64::Engine as _;
use http::HeaderMap;
use serde_json::{Map, Value, json};

/// JSON-RPC error code of `HeaderMismatch`: the headers disagree with the body, or a required
/// header is missing or malformed (with HTTP `400`).
pub const HEADER_MISMATCH: i64 = -32020;
/// JSON-RPC error code of `UnsupportedProtocolVersionError` (with HTTP `400`).
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
/// The revision that mirrors request metadata into headers.
pub const MODERN_VERSION: &str = "2026-07-28";
/// The earlier revisions this module recognises as the older generation.
pub const LEGACY_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
/// The protocol version header (lower case, as `http` stores names).
pub const PROTOCOL_VERSION_HEADER: &str = "mcp-protocol-version";
/// The header mirroring `method`.
pub const METHOD_HEADER: &str = "mcp-method";
/// The header mirroring `params.name` or `params.uri`.
pub const NAME_HEADER: &str = "mcp-name";
/// The prefix of the headers mirroring `x-mcp-header` arguments.
pub const PARAM_HEADER_PREFIX: &str = "mcp-param-";
/// The `_meta` key carrying the protocol version in a 2026-07-28 body.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// The schema keyword marking a parameter to mirror.
pub const X_MCP_HEADER: &str = "x-mcp-header";
/// The largest integer JavaScript represents exactly (2^53 − 1); the specification allows
/// mirrored integers only within ±this.
pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

const SENTINEL_PREFIX: &str = "=?base64?";
const SENTINEL_SUFFIX: &str = "?=";
/// How much of a value an error message quotes.
const SHOWN_CHARS: usize = 64;

/// Which protocol generation an exchange uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Generation {
    /// 2024-11-05 … 2025-11-25 (or no version at all): sessions, `initialize`, no mirrored
    /// request metadata.
    Legacy,
    /// 2026-07-28: per-request metadata, mirrored into headers and checked here.
    Modern,
}

impl Generation {
    /// The name written in audit records: `2025` or `2026-07-28`.
    pub fn as_str(self) -> &'static str {
        match self {
            Generation::Legacy => "2025",
            Generation::Modern => MODERN_VERSION,
        }
    }
}

/// What [`check_request`] established about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// The generation.
    pub generation: Generation,
    /// The protocol version the request names (header, or body `_meta`), if any. `None` on an
    /// old client that sends neither (the specification lets a server treat it as 2025-03-26).
    pub protocol_version: Option<String>,
    /// The `Mcp-Param-*` values checked against the body, decoded, in schema order: what a
    /// policy may see. `None` when nothing was checked (not a 2026 `tools/call`, or no
    /// `inputSchema` was given); then no `Mcp-Param-*` header may be trusted.
    pub params: Option<Vec<Param>>,
}

/// One validated `Mcp-Param-*` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// The header's name in lower case, e.g. `mcp-param-region`.
    pub header: String,
    /// The `x-mcp-header` value as the schema declares it, e.g. `Region`.
    pub name: String,
    /// The value, decoded (the body's value as the header carries it: `42`, `true`, text).
    pub value: String,
}

/// A `HeaderMismatch` refusal (`-32020`, HTTP 400). Its message is safe to show the client:
/// it quotes only what the client itself sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Header mismatch: {detail}")]
pub struct HeaderMismatch {
    /// What disagrees, e.g. `Mcp-Name header value 'foo' does not match body value 'bar'`.
    pub detail: String,
}

impl HeaderMismatch {
    fn new(detail: impl Into<String>) -> HeaderMismatch {
        HeaderMismatch { detail: detail.into() }
    }

    /// The JSON-RPC error response (`id` omitted when the request's id is unknown).
    pub fn to_response(&self, id: Option<&Value>) -> Value {
        error_response(id, json!({ "code": HEADER_MISMATCH, "message": self.to_string() }))
    }
}

/// Why [`check_request`] refused a request. Both answers are HTTP `400`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// The headers disagree with the body, or one is missing or malformed.
    #[error(transparent)]
    Mismatch(#[from] HeaderMismatch),
    /// The request names a protocol version this module does not know the rules of (a
    /// future one included): its headers cannot be validated, so it is refused.
    #[error("Unsupported protocol version: '{}'", shown(requested))]
    UnsupportedVersion {
        /// The version the request named.
        requested: String,
    },
}

impl MetadataError {
    /// The JSON-RPC error code.
    pub fn code(&self) -> i64 {
        match self {
            MetadataError::Mismatch(_) => HEADER_MISMATCH,
            MetadataError::UnsupportedVersion { .. } => UNSUPPORTED_PROTOCOL_VERSION,
        }
    }

    /// The JSON-RPC error response; `supported` lists the versions the door accepts.
    pub fn to_response(&self, id: Option<&Value>, supported: &[&str]) -> Value {
        match self {
            MetadataError::Mismatch(m) => m.to_response(id),
            MetadataError::UnsupportedVersion { requested } => unsupported_version_response(id, requested, supported),
        }
    }
}

/// The `UnsupportedProtocolVersionError` response, as the schema defines it:
/// `{"code": -32022, "message": "Unsupported protocol version", "data": {"supported": [...],
/// "requested": "..."}}`. A 2026 client retries with one of `supported`; an older one falls
/// back to `initialize` only when the body is not such a recognised error.
pub fn unsupported_version_response(id: Option<&Value>, requested: &str, supported: &[&str]) -> Value {
    error_response(
        id,
        json!({
            "code": UNSUPPORTED_PROTOCOL_VERSION,
            "message": "Unsupported protocol version",
            "data": { "supported": supported, "requested": requested },
        }),
    )
}

fn error_response(id: Option<&Value>, error: Value) -> Value {
    let mut response = Map::new();
    response.insert("jsonrpc".into(), "2.0".into());
    if let Some(id) = id {
        response.insert("id".into(), id.clone());
    }
    response.insert("error".into(), error);
    Value::Object(response)
}

// ---------------------------------------------------------------------------------------
// The check
// ---------------------------------------------------------------------------------------

/// Checks a request's mirrored headers against its JSON-RPC `message` (a request or a
/// notification; a response passes with its generation only).
///
/// - Generation: 2026-07-28 when `MCP-Protocol-Version` or the body's `_meta` names it, the
///   older generation when they name a 2024/2025 version or neither is present. Both present
///   and different is a mismatch, and so is a body naming a version without the header. Any
///   other version is [`MetadataError::UnsupportedVersion`].
/// - 2026-07-28 requests must carry the version in `_meta` too (the schema makes it required).
/// - `Mcp-Method` is required on every 2026 message with a `method`, and must equal it.
/// - `Mcp-Name` is required on `tools/call`, `prompts/get` (`params.name`) and
///   `resources/read` (`params.uri`), and must equal it after decoding; on any other method it
///   may only be present when it matches `params.name` or `params.uri`.
/// - For a 2026 `tools/call` with `input_schema`, every `x-mcp-header` argument present (and
///   not `null`) in `params.arguments` needs its `Mcp-Param-{Name}` header with the same value
///   (integers compared numerically, booleans as `true`/`false`), and an absent or `null`
///   argument must have no header. A schema with an invalid annotation refuses the call.
///
/// A header given twice, or with characters outside visible ASCII, space and tab, is a
/// mismatch: two components could read different copies.
pub fn check_request(
    headers: &HeaderMap,
    message: &Value,
    input_schema: Option<&Value>,
) -> Result<Metadata, MetadataError> {
    let params = message.get("params");
    let meta_version = match params.and_then(|p| p.get("_meta")).and_then(|m| m.get(META_PROTOCOL_VERSION)) {
        None => None,
        Some(Value::String(v)) => Some(v.as_str()),
        Some(_) => {
            return Err(HeaderMismatch::new(format!("body _meta {META_PROTOCOL_VERSION} must be a string")).into());
        }
    };
    let header_version = single(headers, PROTOCOL_VERSION_HEADER, "MCP-Protocol-Version")?;
    let version = match (header_version, meta_version) {
        (Some(h), Some(b)) if h != b => return Err(mismatch("MCP-Protocol-Version", h, b).into()),
        (None, Some(b)) => {
            return Err(HeaderMismatch::new(format!(
                "MCP-Protocol-Version header is missing (body value '{}')",
                shown(b)
            ))
            .into());
        }
        (h, b) => h.or(b),
    };
    let generation = match version {
        None => Generation::Legacy,
        Some(v) if v == MODERN_VERSION => Generation::Modern,
        Some(v) if LEGACY_VERSIONS.contains(&v) => Generation::Legacy,
        Some(v) => return Err(MetadataError::UnsupportedVersion { requested: v.to_owned() }),
    };
    let mut metadata = Metadata { generation, protocol_version: version.map(str::to_owned), params: None };
    if generation == Generation::Legacy {
        return Ok(metadata);
    }
    let Some(method) = message.get("method") else { return Ok(metadata) };
    let method = method.as_str().ok_or_else(|| HeaderMismatch::new("body method must be a string"))?;
    let is_request = message.get("id").is_some();
    if is_request && meta_version.is_none() {
        return Err(HeaderMismatch::new(format!(
            "MCP-Protocol-Version header value '{MODERN_VERSION}' has no body value (params._meta.{META_PROTOCOL_VERSION})"
        ))
        .into());
    }
    match single(headers, METHOD_HEADER, "Mcp-Method")? {
        None => return Err(HeaderMismatch::new("Mcp-Method header is missing").into()),
        Some(h) if h != method => return Err(mismatch("Mcp-Method", h, method).into()),
        Some(_) => {}
    }
    check_name(headers, method, params)?;
    if method == "tools/call"
        && let Some(schema) = input_schema
    {
        let arguments = params.and_then(|p| p.get("arguments"));
        metadata.params = Some(check_params(headers, schema, arguments)?);
    }
    Ok(metadata)
}

/// [`check_request`] for a request about to be judged (by the door, or by replay), where
/// `input_schema` is the called tool's `inputSchema` when one is known: a 2026-07-28 request
/// that carries an `Mcp-Param-*` header while no schema is known is refused as a
/// [`HeaderMismatch`]. The specification lets an intermediary forward headers it does not
/// recognise (transports/streamable-http, "Request Metadata Headers"), but nothing can vouch
/// that such a header agrees with the body, and a header the policies did not judge must not
/// reach a server with a meaning they did not see. Without `Mcp-Param-*` headers, or with a
/// schema, this is [`check_request`]. The door and replay both call this one function, so a
/// recording replays the door's answer.
pub fn check_call(
    headers: &HeaderMap,
    message: &Value,
    input_schema: Option<&Value>,
) -> Result<Metadata, MetadataError> {
    let metadata = check_request(headers, message, input_schema)?;
    if metadata.generation == Generation::Modern
        && input_schema.is_none()
        && let Some(name) = headers.keys().find(|n| n.as_str().starts_with(PARAM_HEADER_PREFIX))
    {
        return Err(HeaderMismatch::new(format!(
            "{name} cannot be checked: the door has no definition (inputSchema) for this tool, so it cannot vouch \
             for the header"
        ))
        .into());
    }
    Ok(metadata)
}

/// `Mcp-Name` against `params.name` / `params.uri`.
fn check_name(headers: &HeaderMap, method: &str, params: Option<&Value>) -> Result<(), HeaderMismatch> {
    let field = |name: &str| params.and_then(|p| p.get(name)).and_then(Value::as_str);
    let header = single(headers, NAME_HEADER, "Mcp-Name")?.map(|raw| decode_for("Mcp-Name", raw)).transpose()?;
    let (source, required) = match method {
        "tools/call" | "prompts/get" => (field("name"), true),
        "resources/read" => (field("uri"), true),
        _ => (field("name").or_else(|| field("uri")), false),
    };
    match (header, source) {
        (Some(h), Some(b)) if h != b => Err(mismatch("Mcp-Name", &h, b)),
        (Some(_), Some(_)) => Ok(()),
        (None, _) if !required => Ok(()),
        (None, _) => Err(HeaderMismatch::new(format!("Mcp-Name header is missing (required for {method})"))),
        (Some(h), None) => Err(HeaderMismatch::new(format!("Mcp-Name header value '{}' has no body value", shown(&h)))),
    }
}

/// Every annotated argument against its `Mcp-Param-*` header.
fn check_params(headers: &HeaderMap, schema: &Value, arguments: Option<&Value>) -> Result<Vec<Param>, HeaderMismatch> {
    let declared =
        header_params(schema).map_err(|e| HeaderMismatch::new(format!("the tool's definition is invalid: {e}")))?;
    let mut checked = Vec::new();
    for param in declared {
        let label = format!("Mcp-Param-{}", param.name);
        let header = single(headers, &param.header, &label)?.map(|raw| decode_for(&label, raw)).transpose()?;
        let body = param.path.iter().try_fold(arguments, |at, key| Some(at?.as_object()?.get(key))).flatten();
        match (header, body) {
            (None, None | Some(Value::Null)) => {}
            (Some(h), None | Some(Value::Null)) => {
                return Err(HeaderMismatch::new(format!(
                    "{label} header value '{}' has no body value (the argument is absent or null)",
                    shown(&h)
                )));
            }
            (None, Some(b)) => {
                return Err(HeaderMismatch::new(format!(
                    "{label} header is missing (body value '{}')",
                    shown(&body_text(b))
                )));
            }
            (Some(h), Some(b)) => {
                check_param_value(&label, &h, b)?;
                checked.push(Param { header: param.header, name: param.name, value: h });
            }
        }
    }
    Ok(checked)
}

/// One header value against the body's value, by the body value's JSON type.
fn check_param_value(label: &str, header: &str, body: &Value) -> Result<(), HeaderMismatch> {
    let equal = match body {
        Value::String(s) => header == s,
        Value::Bool(b) => header == if *b { "true" } else { "false" },
        Value::Number(n) => {
            let Some(body) = safe_integer(n) else {
                return Err(HeaderMismatch::new(format!(
                    "{label}: body value {n} is not an integer within ±(2^53 − 1), so it cannot be mirrored"
                )));
            };
            parse_integer(header) == Some(body)
        }
        Value::Null | Value::Array(_) | Value::Object(_) => {
            return Err(HeaderMismatch::new(format!(
                "{label}: the body value is not a string, integer or boolean, so it cannot be mirrored"
            )));
        }
    };
    if equal { Ok(()) } else { Err(mismatch(label, header, &body_text(body))) }
}

/// A JSON number as a JavaScript-safe integer (`42` and `42.0` alike).
fn safe_integer(n: &serde_json::Number) -> Option<i64> {
    let v = if let Some(i) = n.as_i64() {
        i
    } else {
        let f = n.as_f64()?;
        if f.fract() != 0.0 || f.abs() > MAX_SAFE_INTEGER as f64 {
            return None;
        }
        // Integral and within ±2^53 (checked just above), so the cast is exact.
        f as i64
    };
    (v.abs() <= MAX_SAFE_INTEGER).then_some(v)
}

/// A header's integer: decimal (`42`, `-7`), or a number with an integral value (`42.0`),
/// compared numerically as the specification asks.
fn parse_integer(header: &str) -> Option<i64> {
    if let Ok(i) = header.parse::<i64>() {
        return (i.abs() <= MAX_SAFE_INTEGER).then_some(i);
    }
    let f: f64 = header.parse().ok()?;
    if !f.is_finite() {
        return None;
    }
    safe_integer(&serde_json::Number::from_f64(f)?)
}

fn body_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn mismatch(label: &str, header: &str, body: &str) -> HeaderMismatch {
    HeaderMismatch::new(format!("{label} header value '{}' does not match body value '{}'", shown(header), shown(body)))
}

/// A value quoted in a message: at most [`SHOWN_CHARS`] characters, control characters escaped,
/// so an error cannot carry a line break or a terminal escape.
fn shown(value: &str) -> String {
    let mut out = String::new();
    for (i, c) in value.chars().enumerate() {
        if i == SHOWN_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            let _ = write!(out, "{}", c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The one value of a header, as text: `None` when absent; a mismatch when it is given twice
/// or holds characters outside visible ASCII, space and horizontal tab.
fn single<'a>(headers: &'a HeaderMap, name: &str, label: &str) -> Result<Option<&'a str>, HeaderMismatch> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(HeaderMismatch::new(format!("{label} header is given more than once")));
    }
    let bytes = value.as_bytes();
    if !bytes.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)) {
        return Err(HeaderMismatch::new(format!("{label} header value contains invalid characters")));
    }
    // Only visible ASCII, space and tab, so always UTF-8; refused rather than ignored if not.
    std::str::from_utf8(bytes)
        .map(Some)
        .map_err(|_| HeaderMismatch::new(format!("{label} header value contains invalid characters")))
}

fn decode_for(label: &str, raw: &str) -> Result<String, HeaderMismatch> {
    decode_value(raw).map_err(|e| HeaderMismatch::new(format!("{label} header value '{}' {e}", shown(raw))))
}

// ---------------------------------------------------------------------------------------
// Value encoding
// ---------------------------------------------------------------------------------------

/// Why a `=?base64?…?=` value could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// It has the markers but nothing valid between them (e.g. `=?base64?=`).
    #[error("is not a complete =?base64?…?= value")]
    Incomplete,
    /// Not standard Base64 with canonical padding.
    #[error("is not valid Base64 between =?base64? and ?=")]
    Base64,
    /// Decodes to bytes that are not UTF-8.
    #[error("does not decode to UTF-8")]
    Utf8,
}

/// Decodes a header value written in MCP's value encoding: a value that starts with
/// `=?base64?` and ends with `?=` (markers case-sensitive) is the standard Base64 of UTF-8
/// text, strictly (canonical padding, no stray bits); any other value is itself. A value
/// matching the pattern that does not decode is an error, never a literal: clients must
/// encode a literal that looks like the sentinel.
pub fn decode_value(raw: &str) -> Result<String, DecodeError> {
    if !(raw.starts_with(SENTINEL_PREFIX) && raw.ends_with(SENTINEL_SUFFIX)) {
        return Ok(raw.to_owned());
    }
    if raw.len() < SENTINEL_PREFIX.len() + SENTINEL_SUFFIX.len() {
        return Err(DecodeError::Incomplete);
    }
    let inner = &raw[SENTINEL_PREFIX.len()..raw.len() - SENTINEL_SUFFIX.len()];
    let bytes = base64::engine::general_purpose::STANDARD.decode(inner).map_err(|_| DecodeError::Base64)?;
    String::from_utf8(bytes).map_err(|_| DecodeError::Utf8)
}

/// Encodes a value for an `Mcp-Name` or `Mcp-Param-*` header: itself when it is non-empty
/// printable ASCII without leading or trailing whitespace and does not look encoded,
/// otherwise `=?base64?…?=` of its UTF-8.
pub fn encode_value(value: &str) -> String {
    let plain = !value.is_empty()
        && value.bytes().all(|b| (0x20..0x7f).contains(&b))
        && value.trim() == value
        && !(value.starts_with(SENTINEL_PREFIX) && value.ends_with(SENTINEL_SUFFIX));
    if plain {
        value.to_owned()
    } else {
        format!("{SENTINEL_PREFIX}{}{SENTINEL_SUFFIX}", base64::engine::general_purpose::STANDARD.encode(value))
    }
}

// ---------------------------------------------------------------------------------------
// x-mcp-header annotations
// ---------------------------------------------------------------------------------------

/// The primitive types a mirrored parameter may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// `string`: the value as is.
    String,
    /// `integer`: decimal, within ±(2^53 − 1).
    Integer,
    /// `boolean`: `true` or `false`.
    Boolean,
}

/// One `x-mcp-header` annotation of a tool's `inputSchema`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderParam {
    /// The annotation's value as declared, e.g. `Region`.
    pub name: String,
    /// The header it names, in lower case: `mcp-param-region`.
    pub header: String,
    /// The chain of `properties` keys from the schema root to the parameter.
    pub path: Vec<String>,
    /// The parameter's declared type.
    pub kind: ParamType,
}

/// Why a tool's `x-mcp-header` annotations make its definition invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnotationError {
    /// The annotation is not a non-empty string of HTTP token characters.
    #[error("x-mcp-header at {at} must be a non-empty HTTP token (letters, digits, !#$%&'*+-.^_`|~)")]
    NotAToken {
        /// Where, as a JSON pointer into the schema.
        at: String,
    },
    /// Two annotations name the same header, ignoring case.
    #[error("x-mcp-header '{name}' at {at} repeats another annotation (names are compared ignoring case)")]
    Duplicate {
        /// The repeated name.
        name: String,
        /// Where, as a JSON pointer.
        at: String,
    },
    /// The annotated property is not `string`, `integer` or `boolean`.
    #[error("x-mcp-header at {at} is on a property whose type is not string, integer or boolean")]
    NotPrimitive {
        /// Where, as a JSON pointer.
        at: String,
    },
    /// The annotation is not reachable from the root through `properties` alone.
    #[error(
        "x-mcp-header at {at} is not statically reachable (only a chain of `properties` may lead to it, not items, \
         oneOf/anyOf/allOf/not, if/then/else or $ref)"
    )]
    NotReachable {
        /// Where, as a JSON pointer.
        at: String,
    },
}

/// The `x-mcp-header` annotations of a tool's `inputSchema`, in document order, checked
/// against the specification's constraints (token syntax, case-insensitive uniqueness, a
/// primitive type, static reachability through `properties` only). Values of `const`,
/// `default`, `enum` and `examples` are data, not schemas, and are not searched.
pub fn header_params(input_schema: &Value) -> Result<Vec<HeaderParam>, AnnotationError> {
    let mut found = Vec::new();
    walk(input_schema, Some(&mut Vec::new()), &mut String::new(), &mut found)?;
    let mut seen: Vec<String> = Vec::new();
    for param in &found {
        let lower = param.name.to_ascii_lowercase();
        if seen.contains(&lower) {
            return Err(AnnotationError::Duplicate { name: param.name.clone(), at: pointer_of(&param.path) });
        }
        seen.push(lower);
    }
    Ok(found)
}

/// Walks a schema value. `path` is `Some` while the position is statically reachable.
fn walk(
    value: &Value,
    path: Option<&mut Vec<String>>,
    at: &mut String,
    found: &mut Vec<HeaderParam>,
) -> Result<(), AnnotationError> {
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = at.len();
                let _ = write!(at, "/{i}");
                walk(item, None, at, found)?;
                at.truncate(len);
            }
            Ok(())
        }
        Value::Object(object) => {
            let mut path = path;
            if let Some(annotation) = object.get(X_MCP_HEADER) {
                let Some(path) = path.as_deref() else {
                    return Err(AnnotationError::NotReachable { at: at.clone() });
                };
                found.push(annotation_at(object, annotation, path, at)?);
            }
            for (key, child) in object {
                if matches!(key.as_str(), X_MCP_HEADER | "const" | "default" | "enum" | "examples") {
                    continue;
                }
                let len = at.len();
                at.push('/');
                at.push_str(&key.replace('~', "~0").replace('/', "~1"));
                if key == "properties"
                    && let Value::Object(properties) = child
                {
                    for (name, schema) in properties {
                        let len = at.len();
                        at.push('/');
                        at.push_str(&name.replace('~', "~0").replace('/', "~1"));
                        match path.as_deref_mut() {
                            Some(path) => {
                                path.push(name.clone());
                                walk(schema, Some(path), at, found)?;
                                path.pop();
                            }
                            None => walk(schema, None, at, found)?,
                        }
                        at.truncate(len);
                    }
                } else {
                    walk(child, None, at, found)?;
                }
                at.truncate(len);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn annotation_at(
    object: &Map<String, Value>,
    annotation: &Value,
    path: &[String],
    at: &str,
) -> Result<HeaderParam, AnnotationError> {
    let at_annotation = format!("{at}/{X_MCP_HEADER}");
    let name = annotation
        .as_str()
        .filter(|n| !n.is_empty() && n.bytes().all(is_tchar))
        .ok_or_else(|| AnnotationError::NotAToken { at: at_annotation.clone() })?;
    let kind = param_type(object.get("type")).ok_or(AnnotationError::NotPrimitive { at: at_annotation })?;
    if path.is_empty() {
        // The root is the arguments object itself, never a primitive.
        return Err(AnnotationError::NotPrimitive { at: at.to_owned() });
    }
    Ok(HeaderParam {
        name: name.to_owned(),
        header: format!("{PARAM_HEADER_PREFIX}{}", name.to_ascii_lowercase()),
        path: path.to_vec(),
        kind,
    })
}

/// `"string"`, `"integer"`, `"boolean"`, or one of them with `"null"` in a type array (a
/// `null` value is simply not mirrored).
fn param_type(declared: Option<&Value>) -> Option<ParamType> {
    let one = |t: &str| match t {
        "string" => Some(ParamType::String),
        "integer" => Some(ParamType::Integer),
        "boolean" => Some(ParamType::Boolean),
        _ => None,
    };
    match declared? {
        Value::String(t) => one(t),
        Value::Array(types) => {
            let mut kinds = types.iter().filter(|t| t.as_str() != Some("null"));
            let kind = one(kinds.next()?.as_str()?)?;
            kinds.next().is_none().then_some(kind)
        }
        _ => None,
    }
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn pointer_of(path: &[String]) -> String {
    path.iter().fold(String::new(), |mut out, key| {
        let _ = write!(out, "/properties/{}", key.replace('~', "~0").replace('/', "~1"));
        out
    })
}

#[cfg(test)]
mod tests;
