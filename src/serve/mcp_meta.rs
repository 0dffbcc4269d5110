//! The MCP door's side of the 2026-07-28 request metadata: the mirrored headers
//! (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`) checked against the
//! message before any policy runs, the checked `Mcp-Param-*` values handed to policies, the
//! values the server gets mirrored again from the message it gets, and the `Origin` check.
//!
//! The check itself is `portcullis_host::adapters::mcp_headers::check_request`; this module
//! decides what the door does with its answer:
//!
//! - A mismatch is `400` with the `-32020` error (the request's id), an unknown protocol
//!   version `400` with `-32022`; the server sees nothing.
//! - `Mcp-Param-*` values reach policies (as `mcp-param-region: us-west1`, decoded) only when
//!   the door checked them against the tool's `inputSchema`, from a `tools/list` answer. A
//!   2026 call carrying `Mcp-Param-*` for a tool whose definition the door cannot get (after
//!   listing the tools once) is refused with `-32020`: the specification lets intermediaries
//!   forward headers they do not recognise, but a header the policies did not judge must not
//!   reach the server with a meaning they did not see.
//! - The server's `Mcp-Param-*` headers are written from the message it is sent (after any
//!   redaction), never copied from the client, so headers and body always agree.

use std::collections::HashMap;
use std::sync::Arc;

use http::header::{HeaderName, HeaderValue, ORIGIN};
use http::{HeaderMap, Response};
use portcullis_host::adapters::mcp::{self, Annotations};
use portcullis_host::adapters::mcp_headers::{
    self, Generation, LEGACY_VERSIONS, MODERN_VERSION, MetadataError, PARAM_HEADER_PREFIX, Param,
};
use portcullis_host::gate::Arrival;
use serde_json::{Value, json};

use super::Body;

/// What the door knows of a listed tool: its annotations, and its `inputSchema` (`None`
/// when the listing has none, which makes its `Mcp-Param-*` headers uncheckable).
#[derive(Debug, Clone, Default)]
pub(super) struct ToolInfo {
    pub annotations: Annotations,
    pub schema: Option<Arc<Value>>,
}

/// Every tool in a `tools/list` result with its annotations and input schema, by name.
pub(super) fn listed_tools(result: &Value) -> HashMap<String, ToolInfo> {
    let schemas: HashMap<&str, &Value> = result
        .get("tools")
        .and_then(Value::as_array)
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| Some((t.get("name")?.as_str()?, t.get("inputSchema").filter(|s| s.is_object())?)))
                .collect()
        })
        .unwrap_or_default();
    mcp::tools_of(result)
        .into_iter()
        .map(|(name, annotations)| {
            // A schema without `x-mcp-header` mirrors nothing: keep an empty one, not its text.
            let schema = schemas.get(name.as_str()).map(|s| {
                if s.to_string().contains(mcp_headers::X_MCP_HEADER) { Arc::new((*s).clone()) } else { empty() }
            });
            (name, ToolInfo { annotations, schema })
        })
        .collect()
}

fn empty() -> Arc<Value> {
    static EMPTY: std::sync::OnceLock<Arc<Value>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| Arc::new(json!({"type": "object"}))).clone()
}

/// The headers the metadata check reads, copied before the door strips the client's
/// `Mcp-*` headers (they never pass as they came).
pub(super) fn client_metadata(headers: &HeaderMap) -> HeaderMap {
    let mut kept = HeaderMap::new();
    for (name, value) in headers {
        let n = name.as_str();
        if n == mcp_headers::PROTOCOL_VERSION_HEADER
            || n == mcp_headers::METHOD_HEADER
            || n == mcp_headers::NAME_HEADER
            || n.starts_with(PARAM_HEADER_PREFIX)
        {
            kept.append(name.clone(), value.clone());
        }
    }
    kept
}

/// What the door vouches for in a call, beside the message: the tool's annotations (when
/// listed), the checked `Mcp-Param-*` values and the schema they were checked with.
#[derive(Debug, Default)]
pub(super) struct Vouched {
    pub annotations: Option<Annotations>,
    pub params: Vec<Param>,
    pub schema: Option<Arc<Value>>,
    /// The protocol the exchange used, for its audit records ([`protocol_facts`]).
    pub facts: Vec<(&'static str, &'static str)>,
}

impl Vouched {
    /// `arrival` with the door's facts about this exchange attached (its audit records'
    /// `door_facts`).
    pub fn attach_facts(&self, arrival: Arrival) -> Arrival {
        self.facts.iter().fold(arrival, |arrival, (key, value)| arrival.with_fact(key, *value))
    }

    /// `(header, decoded value)` for the policies: `("mcp-param-region", "us-west1")`.
    pub fn policy_headers(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.params.iter().map(|p| (p.header.clone(), p.value.clone()))
    }
}

/// The first check of every POSTed message: versions, `Mcp-Method`, `Mcp-Name`.
pub(super) fn check(headers: &HeaderMap, message: &Value) -> Result<Generation, MetadataError> {
    mcp_headers::check_request(headers, message, None).map(|m| m.generation)
}

/// The audit facts of a message [`check`] passed: `mcp_generation` (`2025` or
/// `2026-07-28`) always, and `mcp_protocol_version` when the message names a version the
/// door knows (the `MCP-Protocol-Version` header, the 2026 body `_meta`, or an
/// `initialize`'s `protocolVersion`). Values come from the door's own list, never the
/// client's text: a client picks which supported version it speaks, nothing else.
pub(super) fn protocol_facts(
    headers: &HeaderMap,
    message: &Value,
    generation: Generation,
) -> Vec<(&'static str, &'static str)> {
    let params = message.get("params");
    let named = headers
        .get(mcp_headers::PROTOCOL_VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .or_else(|| params?.get("_meta")?.get(mcp_headers::META_PROTOCOL_VERSION)?.as_str())
        .or_else(|| {
            let initialize = message.get("method").and_then(Value::as_str) == Some("initialize");
            if initialize { params?.get("protocolVersion")?.as_str() } else { None }
        });
    let known = std::iter::once(MODERN_VERSION).chain(LEGACY_VERSIONS).find(|v| Some(*v) == named);
    let mut facts = vec![(GENERATION_FACT, generation.as_str())];
    if let Some(version) = known {
        facts.push((VERSION_FACT, version));
    }
    facts
}

/// The audit fact naming the protocol generation of an MCP exchange.
pub(super) const GENERATION_FACT: &str = "mcp_generation";
/// The audit fact naming the protocol version an MCP exchange named.
pub(super) const VERSION_FACT: &str = "mcp_protocol_version";

/// Removes from a `tools/list` result every tool whose `inputSchema` has an invalid
/// `x-mcp-header` annotation (empty, not a token, repeated, on a non-primitive or a
/// `number`, not statically reachable: `mcp_headers::header_params`). The 2026 revision
/// (basic/transports/streamable-http, "Schema Extension") says a client "MUST exclude the
/// invalid tool from the result of `tools/list`" and "SHOULD log a warning ... including
/// the tool name and the reason": the door does both for its clients, the warning once per
/// tool name (of the first few hundred), so a list asked often does not flood the log.
/// Their calls are refused by the header check (`-32020`).
pub(super) fn hide_invalid_header_tools(result: &mut Value) -> usize {
    let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut) else { return 0 };
    let before = tools.len();
    tools.retain(|tool| {
        let Some(schema) = tool.get("inputSchema") else { return true };
        // Only a schema that mentions the keyword can carry the annotation.
        if !schema.to_string().contains(mcp_headers::X_MCP_HEADER) {
            return true;
        }
        let Err(reason) = mcp_headers::header_params(schema) else { return true };
        let name = tool.get("name").and_then(Value::as_str).unwrap_or("");
        if warn_once(name) {
            let name: String = name.chars().take(100).collect();
            tracing::warn!(
                tool = %name,
                reason = %reason,
                "hid a tool from tools/list: its inputSchema has an invalid x-mcp-header annotation"
            );
        }
        false
    });
    before - tools.len()
}

/// Whether `tool` was not warned about yet (remembers up to 512 names).
fn warn_once(tool: &str) -> bool {
    static WARNED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let Ok(mut warned) = WARNED.lock() else { return true };
    if warned.iter().any(|w| w == tool) {
        return false;
    }
    if warned.len() < 512 {
        warned.push(tool.to_owned());
    }
    true
}

/// The `Mcp-Param-*` values of a 2026 `tools/call`, checked against the tool's listing
/// (`tool`: `None` when the door could not find the tool). Without a schema, a call that
/// carries none passes with none; one that carries some is refused
/// (`mcp_headers::check_call`, the rule replay applies too).
pub(super) fn check_params(
    headers: &HeaderMap,
    message: &Value,
    generation: Generation,
    tool: Option<&ToolInfo>,
) -> Result<Vouched, MetadataError> {
    let annotations = tool.map(|t| t.annotations.clone());
    let facts = protocol_facts(headers, message, generation);
    let mut vouched = Vouched { annotations, facts, ..Vouched::default() };
    if generation != Generation::Modern {
        return Ok(vouched);
    }
    // One rule for the door and for replay: without a schema, a call carrying Mcp-Param-*
    // headers is refused (`mcp_headers::check_call`).
    let schema = tool.and_then(|t| t.schema.clone());
    let metadata = mcp_headers::check_call(headers, message, schema.as_deref())?;
    vouched.params = metadata.params.unwrap_or_default();
    vouched.schema = schema;
    Ok(vouched)
}

/// The `Mcp-Param-*` headers for the server, mirrored from the arguments it is sent (after
/// redaction) by the schema the client's headers were checked with: what the server reads
/// in the headers is what it reads in the body.
pub(super) fn mirrored(schema: &Value, arguments: Option<&Value>) -> Vec<(HeaderName, HeaderValue)> {
    let Ok(declared) = mcp_headers::header_params(schema) else { return Vec::new() };
    declared
        .into_iter()
        .filter_map(|param| {
            let value = param.path.iter().try_fold(arguments, |at, key| Some(at?.as_object()?.get(key))).flatten()?;
            let text = match value {
                Value::Null => return None,
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let name = HeaderName::from_bytes(param.header.as_bytes()).ok()?;
            Some((name, HeaderValue::from_str(&mcp_headers::encode_value(&text)).ok()?))
        })
        .collect()
}

/// The door's answer to a refused check: `400` with the JSON-RPC error for `id`.
pub(super) fn refusal(error: &MetadataError, id: Option<&Value>, request_id: &str) -> Response<Body> {
    let supported: Vec<&str> = std::iter::once(MODERN_VERSION).chain(LEGACY_VERSIONS).collect();
    // The log names the header, not the values: a mirrored argument may be sensitive.
    let header = match error {
        MetadataError::Mismatch(m) => m.detail.split([' ', ':']).next().unwrap_or_default(),
        MetadataError::UnsupportedVersion { .. } => "MCP-Protocol-Version",
    };
    tracing::warn!(code = error.code(), header, "refused an MCP request whose headers disagree with its body");
    super::rpc(400, &error.to_response(id, &supported), request_id)
}

/// The `Origin` check: `None` when the request carries no `Origin` or a listed one; else
/// the `403` answer (a JSON-RPC error without id).
pub(super) fn refuse_origin(headers: &HeaderMap, allowed: &[String]) -> Option<Response<Body>> {
    let mut origins = headers.get_all(ORIGIN).iter();
    let first = origins.next()?;
    let text = first.to_str().unwrap_or("");
    if origins.next().is_none() && allowed.iter().any(|a| a == text) {
        return None;
    }
    let shown: String = text.chars().take(100).collect();
    tracing::warn!(origin = %shown, "refused an MCP request from a browser origin not in [server.mcp] allowed_origins");
    let message = format!("Origin {shown:?} is not allowed at this MCP endpoint ([server.mcp] allowed_origins)");
    let error = json!({"jsonrpc": "2.0", "error": {"code": mcp::ERROR_INVALID_REQUEST, "message": message}});
    Some(super::rpc(403, &error, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn listing() -> Value {
        json!({"tools": [
            {"name": "in_region", "annotations": {"readOnlyHint": true}, "inputSchema": {"type": "object",
              "properties": {"region": {"type": "string", "x-mcp-header": "Region"}, "n": {"type": "integer"}}}},
            {"name": "plain", "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}}}},
            {"name": "bare"},
        ]})
    }

    fn call(tool: &str, arguments: &Value) -> Value {
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": arguments,
               "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}})
    }

    fn modern(tool: &str, extra: &[(&str, &str)]) -> HeaderMap {
        let mut pairs = vec![("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call"), ("mcp-name", tool)];
        pairs.extend_from_slice(extra);
        headers(&pairs)
    }

    #[test]
    fn listed_tools_keep_schemas_only_when_they_mirror_something() {
        let tools = listed_tools(&listing());
        assert_eq!(tools["in_region"].annotations.read_only, Some(true));
        assert!(tools["in_region"].schema.as_ref().unwrap().to_string().contains("Region"));
        assert_eq!(**tools["plain"].schema.as_ref().unwrap(), json!({"type": "object"}));
        assert!(tools["bare"].schema.is_none());
    }

    #[test]
    fn checked_params_reach_policies_decoded_and_unchecked_ones_are_refused() {
        let tools = listed_tools(&listing());
        let message = call("in_region", &json!({"region": "us-west1", "n": 2}));
        let sent = modern("in_region", &[("mcp-param-region", "us-west1")]);
        let vouched = check_params(&sent, &message, Generation::Modern, tools.get("in_region")).unwrap();
        assert_eq!(vouched.policy_headers().collect::<Vec<_>>(), [("mcp-param-region".into(), "us-west1".into())]);
        // A value that disagrees with the body, or a missing header: -32020.
        let wrong = modern("in_region", &[("mcp-param-region", "eu-west1")]);
        let e = check_params(&wrong, &message, Generation::Modern, tools.get("in_region")).unwrap_err();
        assert_eq!(e.code(), mcp_headers::HEADER_MISMATCH);
        let missing = modern("in_region", &[]);
        assert!(check_params(&missing, &message, Generation::Modern, tools.get("in_region")).is_err());
        // The tool's definition is not known: no param may pass, none shown.
        let e = check_params(&sent, &message, Generation::Modern, None).unwrap_err();
        assert!(e.to_string().contains("mcp-param-region cannot be checked"), "{e}");
        assert!(check_params(&sent, &message, Generation::Modern, tools.get("bare")).is_err());
        let vouched = check_params(&modern("in_region", &[]), &message, Generation::Modern, None).unwrap();
        assert!(vouched.params.is_empty());
        // The 2025 generation: nothing is checked and nothing shown.
        let vouched = check_params(&sent, &message, Generation::Legacy, tools.get("in_region")).unwrap();
        assert!(vouched.params.is_empty());
    }

    #[test]
    fn the_server_gets_params_mirrored_from_the_body_it_gets() {
        let tools = listed_tools(&listing());
        let schema = tools["in_region"].schema.clone().unwrap();
        let mirrored = mirrored(&schema, Some(&json!({"region": "Zürich", "n": 1})));
        assert_eq!(mirrored.len(), 1);
        assert_eq!(mirrored[0].0, "mcp-param-region");
        assert_eq!(mirrored[0].1, "=?base64?WsO8cmljaA==?=");
        assert!(super::mirrored(&schema, Some(&json!({"region": null}))).is_empty());
        assert!(super::mirrored(&schema, None).is_empty());
    }

    #[test]
    fn protocol_facts_name_only_versions_the_door_knows() {
        let modern = protocol_facts(&modern("in_region", &[]), &call("in_region", &json!({})), Generation::Modern);
        assert_eq!(modern, [(GENERATION_FACT, "2026-07-28"), (VERSION_FACT, "2026-07-28")]);
        let legacy = headers(&[("mcp-protocol-version", "2025-06-18")]);
        let message = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
        assert_eq!(
            protocol_facts(&legacy, &message, Generation::Legacy),
            [(GENERATION_FACT, "2025"), (VERSION_FACT, "2025-06-18")]
        );
        let init =
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}});
        assert_eq!(protocol_facts(&headers(&[]), &init, Generation::Legacy)[1], (VERSION_FACT, "2025-11-25"));
        // A version the door does not know is not written (and `check` refuses it anyway).
        let odd = headers(&[("mcp-protocol-version", "2025-13-99; drop")]);
        assert_eq!(protocol_facts(&odd, &message, Generation::Legacy), [(GENERATION_FACT, "2025")]);
        let named =
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"protocolVersion": "2025-11-25"}});
        assert_eq!(
            protocol_facts(&headers(&[]), &named, Generation::Legacy).len(),
            1,
            "only initialize names one there"
        );
    }

    #[test]
    fn tools_with_invalid_header_annotations_are_hidden() {
        let mut result = listing();
        let tools = result["tools"].as_array_mut().unwrap();
        tools.push(json!({"name": "spaced", "inputSchema": {"type": "object",
            "properties": {"q": {"type": "string", "x-mcp-header": "Not A Token"}}}}));
        tools.push(json!({"name": "twice", "inputSchema": {"type": "object", "properties": {
            "a": {"type": "string", "x-mcp-header": "Same"}, "b": {"type": "string", "x-mcp-header": "same"}}}}));
        tools.push(json!({"name": "float", "inputSchema": {"type": "object",
            "properties": {"n": {"type": "number", "x-mcp-header": "N"}}}}));
        tools.push(json!({"name": "mentions", "description": "x-mcp-header", "inputSchema": {"type": "object",
            "properties": {"q": {"type": "string", "description": "see x-mcp-header"}}}}));
        assert_eq!(hide_invalid_header_tools(&mut result), 3);
        let names: Vec<&str> =
            result["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["in_region", "plain", "bare", "mentions"]);
        assert_eq!(hide_invalid_header_tools(&mut json!({"nextCursor": "x"})), 0);
    }

    #[test]
    fn origins_pass_only_when_listed_or_absent() {
        let allowed = vec!["https://app.example.com".to_owned()];
        assert!(refuse_origin(&headers(&[]), &allowed).is_none());
        assert!(refuse_origin(&headers(&[("origin", "https://app.example.com")]), &allowed).is_none());
        let refused = refuse_origin(&headers(&[("origin", "https://evil.example")]), &allowed).unwrap();
        assert_eq!(refused.status(), 403);
        assert!(refuse_origin(&headers(&[("origin", "https://app.example.com")]), &[]).is_some());
        let twice = headers(&[("origin", "https://app.example.com"), ("origin", "https://evil.example")]);
        assert!(refuse_origin(&twice, &allowed).is_some());
        assert!(refuse_origin(&headers(&[("origin", "null")]), &allowed).is_some());
    }
}
