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
    self, Generation, HeaderMismatch, LEGACY_VERSIONS, MODERN_VERSION, MetadataError, PARAM_HEADER_PREFIX, Param,
};
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
}

impl Vouched {
    /// `(header, decoded value)` for the policies: `("mcp-param-region", "us-west1")`.
    pub fn policy_headers(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.params.iter().map(|p| (p.header.clone(), p.value.clone()))
    }
}

/// The first check of every POSTed message: versions, `Mcp-Method`, `Mcp-Name`.
pub(super) fn check(headers: &HeaderMap, message: &Value) -> Result<Generation, MetadataError> {
    mcp_headers::check_request(headers, message, None).map(|m| m.generation)
}

/// The `Mcp-Param-*` values of a 2026 `tools/call`, checked against the tool's listing
/// (`tool`: `None` when the door could not find the tool). Without a schema, a call that
/// carries none passes with none; one that carries some is refused.
pub(super) fn check_params(
    headers: &HeaderMap,
    message: &Value,
    generation: Generation,
    tool: Option<&ToolInfo>,
) -> Result<Vouched, MetadataError> {
    let annotations = tool.map(|t| t.annotations.clone());
    let mut vouched = Vouched { annotations, ..Vouched::default() };
    if generation != Generation::Modern {
        return Ok(vouched);
    }
    match tool.and_then(|t| t.schema.clone()) {
        Some(schema) => {
            let metadata = mcp_headers::check_request(headers, message, Some(&schema))?;
            vouched.params = metadata.params.unwrap_or_default();
            vouched.schema = Some(schema);
        }
        None => {
            if let Some(name) = headers.keys().find(|n| n.as_str().starts_with(PARAM_HEADER_PREFIX)) {
                return Err(HeaderMismatch {
                    detail: format!(
                        "{name} cannot be checked: the door has no definition (inputSchema) for this tool, so it \
                         cannot vouch for the header"
                    ),
                }
                .into());
            }
        }
    }
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
