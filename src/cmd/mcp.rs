//! `portcullis mcp pin`: lists an MCP server's tools and writes (or checks) the pin file the
//! MCP door reads in `[server.mcp.pins] mode = "file"` (docs/mcp.md "Pinned tool
//! definitions").
//!
//! The listing speaks the 2026-07-28 revision first (a `tools/list` carrying its protocol
//! version in `_meta` and the `MCP-Protocol-Version` and `Mcp-Method` headers: no session,
//! basic/transports/streamable-http.mdx) and, when the server does not answer that, the 2025
//! handshake (`initialize`, `notifications/initialized`, then `tools/list` in the session,
//! which is ended with `DELETE`). Pages are followed through `nextCursor`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::BodyExt as _;
use portcullis_host::Config;
use portcullis_host::adapters::mcp_pins::{PinMode, PinSet};
use portcullis_host::config::UpstreamTls;
use portcullis_host::config::base_dir;
use serde_json::{Value, json};

use crate::cli::{McpAction, McpArgs, McpPinArgs};
use crate::serve::upstream::UpstreamClient;

/// The revision tried first, and the 2025 one fallen back to.
const MODERN: &str = "2026-07-28";
const LEGACY: &str = "2025-11-25";
/// Pages of `tools/list` followed at most.
const MAX_PAGES: usize = 64;
/// The largest answer read, in bytes.
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// Runs `portcullis mcp …`.
pub fn run(args: &McpArgs) -> Result<ExitCode> {
    match &args.action {
        McpAction::Pin(pin) => run_pin(pin),
    }
}

/// Where to list from and where the pins go, from the arguments and the config.
struct Target {
    url: String,
    tls: UpstreamTls,
    base: PathBuf,
    file: PathBuf,
}

fn target(args: &McpPinArgs) -> Result<Target> {
    let config = match &args.config {
        Some(path) => Some((Config::read(path).with_context(|| format!("reading {}", path.display()))?, path)),
        None => None,
    };
    let section = config.as_ref().and_then(|(config, _)| config.server.mcp.clone());
    let base = config.as_ref().map_or_else(|| PathBuf::from("."), |(_, path)| base_dir(path));
    let url = match (&args.url, &section) {
        (Some(url), _) => url.clone(),
        (None, Some(section)) => section.upstream.clone(),
        (None, None) => bail!("name the MCP server: a URL argument, or --config with a [server.mcp] upstream"),
    };
    let file = match (&args.out, section.as_ref().and_then(|s| s.pins.as_ref()).and_then(|p| p.file.as_ref())) {
        (Some(out), _) => out.clone(),
        (None, Some(file)) => base.join(file),
        (None, None) => bail!("name the pin file: --out PATH, or [server.mcp.pins] file in the --config"),
    };
    let tls = match (&args.url, &section) {
        (None, Some(section)) => section.upstream_tls.clone(),
        _ => UpstreamTls::default(),
    };
    Ok(Target { url, tls, base, file })
}

fn run_pin(args: &McpPinArgs) -> Result<ExitCode> {
    let target = target(args)?;
    let uri: Uri = target.url.parse().with_context(|| format!("{:?} is not a URL", target.url))?;
    let headers = request_headers(args)?;
    let client = UpstreamClient::new(&target.tls, &target.base, false, "[server.mcp] upstream_tls")?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let timeout = Duration::from_millis(args.timeout_ms);
    let lister = Lister { client, uri, headers, timeout };
    let (tools, protocol) = runtime.block_on(lister.list())?;
    let server = args.server.clone().unwrap_or_else(|| target.url.clone());
    let mut listed = PinSet::new(server, portcullis_host::now_ms(), PinMode::Learn);
    for tool in &tools {
        if tool.get("name").and_then(Value::as_str).is_none() {
            bail!("the server lists a tool without a string `name`: {}", shorten(&tool.to_string()));
        }
        listed.decide(tool);
    }
    if args.check {
        return check(&target.file, &listed, protocol);
    }
    listed.save(&target.file)?;
    println!("pinned {} tools of {} ({protocol}) in {}", listed.tools().len(), target.url, target.file.display());
    for (name, digest) in listed.tools() {
        println!("  {name}  {digest}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `--check`: every listed tool against the file; exit 1 naming each change.
fn check(file: &Path, listed: &PinSet, protocol: &str) -> Result<ExitCode> {
    let pinned = PinSet::load(file)?;
    let names: BTreeSet<&String> = listed.tools().keys().chain(pinned.tools().keys()).collect();
    let mut differences = 0;
    for name in names {
        match (pinned.tools().get(name), listed.tools().get(name)) {
            (Some(old), Some(new)) if old == new => {}
            (Some(old), Some(new)) => println!("changed  {name}  {old} -> {new}"),
            (None, Some(new)) => println!("new      {name}  {new} (not pinned)"),
            (Some(old), None) => println!("removed  {name}  {old} (pinned, no longer listed)"),
            (None, None) => continue,
        }
        differences += usize::from(pinned.tools().get(name) != listed.tools().get(name));
    }
    if differences == 0 {
        println!("{} tools match {} ({protocol})", listed.tools().len(), file.display());
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{differences} tool definition(s) differ from {}: review them, then re-pin with `portcullis mcp pin` (without --check)",
        file.display()
    );
    Ok(ExitCode::from(1))
}

/// `--header NAME:VALUE` and `--bearer-env VAR`, checked.
fn request_headers(args: &McpPinArgs) -> Result<Vec<(HeaderName, HeaderValue)>> {
    let mut headers = Vec::new();
    for header in &args.header {
        let (name, value) =
            header.split_once(':').ok_or_else(|| anyhow!("--header {header:?}: write it as NAME:VALUE"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| anyhow!("--header {:?}: not a header name", name.trim()))?;
        let mut value =
            HeaderValue::from_str(value.trim()).map_err(|_| anyhow!("--header {}: not a header value", name))?;
        value.set_sensitive(true);
        headers.push((name, value));
    }
    if let Some(var) = &args.bearer_env {
        let token = std::env::var(var).map_err(|_| anyhow!("--bearer-env {var}: the variable is not set"))?;
        let mut value = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .map_err(|_| anyhow!("--bearer-env {var}: the token cannot be sent in a header"))?;
        value.set_sensitive(true);
        headers.push((AUTHORIZATION, value));
    }
    Ok(headers)
}

/// Lists one server's tools.
struct Lister {
    client: UpstreamClient,
    uri: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
}

impl Lister {
    /// Every tool definition, and the revision that listed them.
    async fn list(&self) -> Result<(Vec<Value>, &'static str)> {
        match self.pages(MODERN, None).await {
            Ok(tools) => Ok((tools, MODERN)),
            Err(modern) => {
                let session = self.initialize().await.map_err(|legacy| {
                    anyhow!(
                        "{}: the server answered neither {MODERN} ({modern:#}) nor the {LEGACY} handshake ({legacy:#})",
                        self.uri
                    )
                })?;
                let tools = self.pages(LEGACY, session.as_deref()).await;
                if let Some(session) = &session {
                    let _ = self.send(Method::DELETE, None, LEGACY, Some(session), None).await;
                }
                Ok((tools?, LEGACY))
            }
        }
    }

    /// `initialize` and `notifications/initialized`; the session id, if the server gave one.
    async fn initialize(&self) -> Result<Option<String>> {
        let message = json!({"jsonrpc": "2.0", "id": "pin-initialize", "method": "initialize", "params": {
            "protocolVersion": LEGACY, "capabilities": {},
            "clientInfo": {"name": "portcullis-mcp-pin", "version": env!("CARGO_PKG_VERSION")}}});
        let (answer, session) = self.send(Method::POST, Some(&message), LEGACY, None, Some("initialize")).await?;
        result_of(answer.as_ref(), "initialize")?;
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        self.send(Method::POST, Some(&initialized), LEGACY, session.as_deref(), None).await?;
        Ok(session)
    }

    async fn pages(&self, protocol: &str, session: Option<&str>) -> Result<Vec<Value>> {
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        for page in 0..MAX_PAGES {
            let mut params = serde_json::Map::new();
            if let Some(cursor) = &cursor {
                params.insert("cursor".into(), json!(cursor));
            }
            if protocol == MODERN {
                params.insert("_meta".into(), json!({
                    "io.modelcontextprotocol/protocolVersion": MODERN,
                    "io.modelcontextprotocol/clientInfo": {"name": "portcullis-mcp-pin", "version": env!("CARGO_PKG_VERSION")},
                    "io.modelcontextprotocol/clientCapabilities": {}}));
            }
            let id = format!("pin-tools-list-{page}");
            let message = json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": params});
            let (answer, _) = self.send(Method::POST, Some(&message), protocol, session, Some("tools/list")).await?;
            let result = result_of(answer.as_ref(), "tools/list")?;
            let listed = result
                .get("tools")
                .and_then(Value::as_array)
                .ok_or_else(|| anyhow!("the tools/list result has no `tools` array"))?;
            tools.extend(listed.iter().cloned());
            match result.get("nextCursor").and_then(Value::as_str) {
                Some(next) => cursor = Some(next.to_owned()),
                None => return Ok(tools),
            }
        }
        bail!("the server's tools/list has more than {MAX_PAGES} pages")
    }

    /// One HTTP exchange: the JSON-RPC answer (from a JSON body or an SSE stream), if one
    /// came, and the session id header.
    async fn send(
        &self,
        method: Method,
        message: Option<&Value>,
        protocol: &str,
        session: Option<&str>,
        rpc_method: Option<&str>,
    ) -> Result<(Option<Value>, Option<String>)> {
        let body = message.map(|m| Bytes::from(serde_json::to_vec(m).unwrap_or_default())).unwrap_or_default();
        let mut request = Request::builder().method(method).uri(self.uri.clone());
        let headers = request.headers_mut().ok_or_else(|| anyhow!("bad request"))?;
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(ACCEPT, HeaderValue::from_static("application/json, text/event-stream"));
        if !(protocol == LEGACY && rpc_method == Some("initialize")) {
            headers.insert("mcp-protocol-version", HeaderValue::from_str(protocol)?);
        }
        if protocol == MODERN
            && let Some(rpc_method) = rpc_method
        {
            headers.insert("mcp-method", HeaderValue::from_str(rpc_method)?);
        }
        if let Some(session) = session {
            headers.insert("mcp-session-id", HeaderValue::from_str(session)?);
        }
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        let request = request.body(crate::serve::http::full(body))?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| anyhow!("{e}"))?;
            let status = response.status();
            let session = response.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let bytes = http_body_util::Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| anyhow!("reading the answer: {e}"))?
                .to_bytes();
            Ok::<_, anyhow::Error>((status, session, bytes))
        };
        let (status, session, bytes) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| anyhow!("{} did not answer within {:?}", self.uri, self.timeout))??;
        if !status.is_success() {
            bail!("{} answered HTTP {}: {}", self.uri, status.as_u16(), shorten(&String::from_utf8_lossy(&bytes)));
        }
        let id = message.and_then(|m| m.get("id"));
        let answer = id.and_then(|id| find_answer(&bytes, id));
        if id.is_some() && answer.is_none() {
            bail!("{} answered HTTP {} without the JSON-RPC answer", self.uri, status.as_u16());
        }
        Ok((answer, session))
    }
}

/// The answer to request `id` in a JSON body or in an SSE stream's `data:` lines.
fn find_answer(bytes: &[u8], id: &Value) -> Option<Value> {
    let matches =
        |value: &Value| value.get("id") == Some(id) && (value.get("result").is_some() || value.get("error").is_some());
    if let Ok(value) = serde_json::from_slice::<Value>(bytes) {
        return matches(&value).then_some(value);
    }
    let text = String::from_utf8_lossy(bytes);
    let mut data = String::new();
    for line in text.lines().chain(std::iter::once("")) {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            if let Ok(value) = serde_json::from_str::<Value>(&data)
                && matches(&value)
            {
                return Some(value);
            }
            data.clear();
        } else if let Some(value) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(value.strip_prefix(' ').unwrap_or(value));
        }
    }
    None
}

fn result_of<'a>(answer: Option<&'a Value>, method: &str) -> Result<&'a Value> {
    let answer = answer.ok_or_else(|| anyhow!("no answer to {method}"))?;
    if let Some(error) = answer.get("error") {
        bail!("{method} was refused: {}", shorten(&error.to_string()));
    }
    answer.get("result").ok_or_else(|| anyhow!("the answer to {method} has no result"))
}

fn shorten(text: &str) -> String {
    let mut end = text.len().min(300);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use portcullis_host::adapters::mcp_pins::tool_digest;

    use super::*;

    #[test]
    fn answers_are_found_in_json_and_in_sse() {
        let id = json!("a");
        let answer = json!({"jsonrpc": "2.0", "id": "a", "result": {"tools": []}});
        assert_eq!(find_answer(answer.to_string().as_bytes(), &id), Some(answer.clone()));
        let sse = format!(
            "event: message\ndata: {}\n\nid: 2\r\ndata: {}\r\n\r\n",
            json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}),
            answer
        );
        assert_eq!(find_answer(sse.as_bytes(), &id), Some(answer));
        assert_eq!(find_answer(br#"{"jsonrpc":"2.0","id":"b","result":{}}"#, &id), None, "another request's answer");
    }

    #[test]
    fn tool_digests_ignore_fields_outside_the_pin() {
        let tool = json!({"name": "t", "description": "d", "inputSchema": {"type": "object"}});
        let titled = json!({"name": "t", "description": "d", "inputSchema": {"type": "object"}, "title": "T"});
        assert_eq!(tool_digest(&tool), tool_digest(&titled));
    }
}
