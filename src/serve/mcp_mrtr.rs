//! Require-approval as a Multi Round-Trip Request (MCP 2026-07-28, basic/patterns/mrtr.mdx):
//! the MCP door's answer to a 2026 client that declared URL-mode elicitation, instead of
//! the `-32004` error every other client gets.
//!
//! - The first call, refused `approval-required`: an `InputRequiredResult` whose
//!   `inputRequests` hold one URL-mode `elicitation/create` per approval (client/
//!   elicitation.mdx "URL Mode Elicitation Requests": a person opens the page where the
//!   approval is decided, nothing passes through the client) and whose `requestState` is
//!   sealed by [`KeyRing`]: the principal, the call's [`Call::digest`], the approval id and
//!   the approval's expiry (mrtr.mdx "Server Requirements" 4 and 5: attacker-controlled
//!   input that influences authorisation, integrity-protected and bound).
//! - The retry carrying that state (`pcs1.…`): opened, or refused with a JSON-RPC error
//!   naming why (altered, another key, expired, another caller, another call), audited and
//!   never forwarded. An opened state makes the call the retry with its approval id, so the
//!   gate redeems the approval once and the current policies judge the call again (the
//!   state alone is not single-use, mrtr.mdx's warning; the approval store is). Still
//!   undecided: the call goes to the gate without the id, which finds the same pending
//!   approval, and the door holds it (a `hold`) or asks again. A declined or cancelled
//!   elicitation ends the call with an error; the approval is left as it is.
//! - The door's `requestState` and `inputResponses` never reach the server; a state that
//!   is not the door's (a server's own MRTR) passes untouched.

use std::net::SocketAddr;
use std::path::Path;

use portcullis_host::adapters::mcp::Call;
use portcullis_host::approval::ApprovalState;
use portcullis_host::approval::request_state::{FORMAT, KeyRing, KeySource, StateError, StatePayload, StatePrincipal};
use portcullis_host::audit::{AuditContext, AuditRecord};
use portcullis_host::config::{AdminSection, ApprovalsSection, McpSection, inbox_link};
use portcullis_host::exchange::{Principal, Request as Normal};
use portcullis_host::gate::{Gate, Refusal};
use serde_json::{Value, json};

/// The door's facts about an exchange (its protocol generation), for audit records.
type Facts<'a> = &'a [(&'static str, &'static str)];

/// The key of the door's elicitations in `inputRequests` (and of their answers in
/// `inputResponses`): this, then the approval's id.
pub const INPUT_KEY: &str = "portcullis/approval:";

/// The methods that may be answered with an `InputRequiredResult` (mrtr.mdx "Supported
/// Requests").
const MRTR_METHODS: [&str; 3] = ["tools/call", "resources/read", "prompts/get"];

/// The JSON-RPC code of the door's refusals about a state or a declined elicitation
/// (the code every other policy refusal has).
const ERROR_DENIED: i64 = portcullis_host::adapters::mcp::ERROR_DENIED;

/// What the door needs to answer approvals as Multi Round-Trip Requests.
pub struct Mrtr {
    ring: KeyRing,
    /// Where a person decides approval `{id}`; `None`: every client gets `-32004`.
    url: Option<String>,
}

/// The key ring `[[server.mcp.request_state_keys]]` names (files relative to `base`), or an
/// ephemeral one when none is configured.
pub fn key_ring(section: &McpSection, base: &Path) -> Result<KeyRing, String> {
    if section.request_state_keys.is_empty() {
        return KeyRing::ephemeral().map_err(|e| format!("[server.mcp] request_state_keys: {e}"));
    }
    let mut sources = Vec::with_capacity(section.request_state_keys.len());
    for (i, key) in section.request_state_keys.iter().enumerate() {
        let at = format!("[[server.mcp.request_state_keys]] #{} (`{}`)", i + 1, key.id);
        let source = match (&key.env, &key.file) {
            (Some(var), None) => KeySource::Env { id: key.id.clone(), var: var.clone() },
            (None, Some(file)) => KeySource::File { id: key.id.clone(), path: base.join(file) },
            _ => return Err(format!("{at}: set exactly one of `env` and `file`")),
        };
        sources.push(source);
    }
    KeyRing::from_config(&sources).map_err(|e| format!("[server.mcp] request_state_keys: {e}"))
}

/// The warning for an ephemeral ring, said at start and by `portcullis check`.
pub const EPHEMERAL_WARNING: &str = "[server.mcp] request_state_keys is not set: approvals asked of 2026-07-28 clients \
     are sealed with a random key of this process, so a restart or another replica cannot open them (the client must \
     send its call again); set request_state_keys for replicas and restarts";

/// Where a person decides approval `{id}`, as a template: `[approvals] inbox_url`, else
/// `[server.mcp] approval_url`, else the admin listener's approvals API at `admin` (its
/// bound address and whether it speaks TLS) when that address names a host (not `0.0.0.0`
/// or `::`: the door cannot tell which name reaches it, so that is an error naming the
/// keys to set). `None` without an admin listener: 2026 clients get `-32004` too.
pub fn url_template(
    section: &McpSection,
    approvals: Option<&ApprovalsSection>,
    admin: Option<(SocketAddr, bool)>,
) -> Result<Option<String>, String> {
    if let Some(inbox) = approvals.and_then(|a| a.inbox_url.clone()) {
        return Ok(Some(inbox));
    }
    if let Some(url) = &section.approval_url {
        let parsed: http::Uri = url.replace("{id}", "ID").parse().map_err(|_| bad_url(url, "it is not a URL"))?;
        if !matches!(parsed.scheme_str(), Some("http" | "https")) || parsed.host().is_none() {
            return Err(bad_url(url, "it must be an absolute http or https URL"));
        }
        return Ok(Some(url.clone()));
    }
    let Some((addr, tls)) = admin else { return Ok(None) };
    if approvals.is_none() {
        return Ok(None);
    }
    if addr.ip().is_unspecified() {
        return Err(format!(
            "[server.mcp] approval_url is not set, [approvals] inbox_url neither, and [server.admin] listens on {addr}, \
             which names no host a person can open: set approval_url (e.g. \"https://portcullis-admin.internal/approvals/\
             {{id}}\") so 2026-07-28 clients are pointed at a page that exists"
        ));
    }
    let scheme = if tls { "https" } else { "http" };
    Ok(Some(format!("{scheme}://{addr}/approvals/{{id}}")))
}

fn bad_url(url: &str, why: &str) -> String {
    format!("[server.mcp] approval_url {url:?}: {why} (e.g. \"https://portcullis-admin.internal/approvals/{{id}}\")")
}

/// `portcullis check`'s view: the keys read and the URL decided as `serve` would (the
/// admin listener's configured address standing for its bound one); the warnings to print.
pub fn preflight(
    section: &McpSection,
    approvals: Option<&ApprovalsSection>,
    admin: Option<&AdminSection>,
    base: &Path,
) -> Result<Vec<String>, String> {
    let ring = key_ring(section, base)?;
    let url = url_template(section, approvals, admin.map(|a| (a.listen, a.tls.is_some())))?;
    let mut warnings = Vec::new();
    if ring.is_ephemeral() && approvals.is_some() {
        warnings.push(EPHEMERAL_WARNING.to_owned());
    }
    if url.is_none() && approvals.is_some() {
        warnings.push(
            "[server.mcp]: no approval page is known ([approvals] inbox_url, [server.mcp] approval_url or \
             [server.admin]): 2026-07-28 clients get the -32004 approval-required error, as 2025 clients do"
                .to_owned(),
        );
    }
    Ok(warnings)
}

impl Mrtr {
    /// The door's, at start: the keys read ([`key_ring`], files relative to `base`; an
    /// ephemeral key is warned about) and the approval page decided ([`url_template`], with
    /// the admin listener's bound address). Errors name the key to fix.
    pub fn start(
        section: &McpSection,
        approvals: Option<&ApprovalsSection>,
        admin: Option<(SocketAddr, bool)>,
        base: &Path,
    ) -> Result<Mrtr, String> {
        let ring = key_ring(section, base)?;
        let url = url_template(section, approvals, admin)?;
        if approvals.is_some() {
            if ring.is_ephemeral() {
                eprintln!("portcullis: warning: {EPHEMERAL_WARNING}");
                tracing::warn!("{EPHEMERAL_WARNING}");
            }
            match &url {
                Some(url) => eprintln!("portcullis: mcp approvals for 2026-07-28 clients point at {url}"),
                None => eprintln!(
                    "portcullis: warning: [server.mcp]: no approval page is known; 2026-07-28 clients get the -32004 \
                     error"
                ),
            }
        }
        Ok(Mrtr { ring, url })
    }

    /// The `InputRequiredResult` answering request `id` refused with `refusal`, when the
    /// refusal is `approval-required`, the client declared URL elicitation (`elicits`), the
    /// method may be so answered and the door knows the approval page; `None`: the usual
    /// error answer.
    pub fn input_required(
        &self,
        elicits: bool,
        call: &Call,
        refusal: &Refusal,
        principal: &Principal,
        id: &Value,
    ) -> Option<Value> {
        let (Some(template), Some(notice)) = (&self.url, &refusal.approval) else { return None };
        if !elicits || refusal.code != "approval-required" || !MRTR_METHODS.contains(&call.method.as_str()) {
            return None;
        }
        let payload = StatePayload {
            approval_id: notice.id.clone(),
            principal: StatePrincipal::of(principal),
            digest: call.digest(),
            expires_ms: notice.expires_ms,
            inner: None,
        };
        let state = match self.ring.seal(&payload) {
            Ok(state) => state,
            Err(e) => {
                tracing::warn!(error = %e, "sealing a requestState failed; answering with the approval error");
                return None;
            }
        };
        let groups: Vec<&str> = notice.approver_group.split(", ").collect();
        let mut requests = serde_json::Map::new();
        for (i, approval) in notice.ids().into_iter().enumerate() {
            let group = groups.get(i).or(groups.first()).copied().unwrap_or("an approver");
            let message = format!(
                "A member of `{group}` must approve this {what} before it runs ({reason}). Open the link to see \
                 approval {approval}; once it is approved, accept and the call is sent again.",
                what = what(call),
                reason = refusal.reason,
            );
            let url = inbox_link(template, approval);
            requests.insert(
                format!("{INPUT_KEY}{approval}"),
                json!({"method": "elicitation/create", "params": {"mode": "url", "message": message, "url": url}}),
            );
        }
        let result = json!({
            "resultType": "input_required",
            "inputRequests": requests,
            "requestState": state,
            "_meta": {"portcullis/approval": {
                "id": notice.id, "approver_group": notice.approver_group, "expires_ms": notice.expires_ms,
            }},
        });
        Some(json!({"jsonrpc": "2.0", "id": id, "result": result}))
    }

    /// Prepares a call that may be the retry of one the door answered: with the door's
    /// `requestState` (and any `inputResponses`) removed from `message`, the state opened
    /// for `principal` (the caller as the gate authenticates it; `None` when it cannot:
    /// the gate then refuses the call), and `call` made the retry with the approval id
    /// unless every approval is still pending. `Err`: the JSON-RPC error to answer with.
    /// A call without the door's state is left as it is.
    pub async fn prepare(
        &self,
        gate: &Gate,
        normal: &Normal,
        principal: Option<&Principal>,
        (call, message): (&mut Call, &mut Value),
        (id, facts): (&Value, Facts<'_>),
    ) -> Result<(), Value> {
        let Some(params) = message.get_mut("params").and_then(Value::as_object_mut) else { return Ok(()) };
        let Some(Value::String(state)) = params.get("requestState") else { return Ok(()) };
        if !state.starts_with(&format!("{FORMAT}.")) {
            return Ok(());
        }
        let Some(Value::String(state)) = params.remove("requestState") else { return Ok(()) };
        let responses = params.remove("inputResponses");
        let Some(principal) = principal else { return Ok(()) };
        let now = portcullis_host::now_ms();
        let payload = match self.ring.open(&state, &StatePrincipal::of(principal), &call.digest(), now) {
            Ok(payload) => payload,
            Err(e) => {
                audit_refusal(gate, normal, call, principal, reason_word(&e), facts);
                let data = json!({"code": "request-state-invalid", "reason": reason_word(&e)});
                return Err(error(id, &format!("request-state-invalid: {e}"), data));
            }
        };
        let answer = responses.as_ref().and_then(|r| r.as_object()).and_then(|r| {
            r.iter()
                .filter(|(k, _)| k.starts_with(INPUT_KEY))
                .find_map(|(_, v)| v.get("action").and_then(Value::as_str).filter(|a| *a != "accept"))
        });
        if let Some(action) = answer {
            let text = format!(
                "approval-{action}: the approval link was not accepted ({action}); nothing was sent to the server, and \
                 approval {} is left as it is",
                payload.approval_id
            );
            let data = json!({"code": format!("approval-{action}"), "approval": {"id": payload.approval_id}});
            return Err(error(id, &text, data));
        }
        if !all_pending(gate, &payload.approval_id).await {
            call.approval_id = Some(payload.approval_id);
        }
        Ok(())
    }
}

/// Whether `message` carries a `requestState` in the door's format (`pcs1.`): a state
/// that is not (a server's own) passes to the server untouched.
pub fn carries_state(message: &Value) -> bool {
    message
        .get("params")
        .and_then(|p| p.get("requestState"))
        .and_then(Value::as_str)
        .is_some_and(|s| s.starts_with(&format!("{FORMAT}.")))
}

/// Whether the 2026-07-28 client declared URL-mode elicitation on this request
/// (client/elicitation.mdx "Capabilities": `_meta.io.modelcontextprotocol/clientCapabilities`
/// per request; an empty `elicitation` object means form mode only).
pub fn elicits_urls(params: Option<&Value>) -> bool {
    let Some(meta) = params.and_then(|p| p.get("_meta")) else { return false };
    let modern = meta.get("io.modelcontextprotocol/protocolVersion").and_then(Value::as_str) == Some("2026-07-28");
    let url = meta
        .get("io.modelcontextprotocol/clientCapabilities")
        .and_then(|c| c.get("elicitation"))
        .and_then(|e| e.get("url"))
        .is_some_and(Value::is_object);
    modern && url
}

fn what(call: &Call) -> String {
    match call.method.as_str() {
        "resources/read" => format!("read of `{}`", call.operation.trim_start_matches("resources/read:")),
        "prompts/get" => format!("prompt `{}`", call.operation.trim_start_matches("prompts/get:")),
        _ => format!("call of `{}`", call.operation),
    }
}

/// The word a refused state is named by, in the error's `data.reason` and the audit label.
fn reason_word(e: &StateError) -> &'static str {
    match e {
        StateError::Malformed => "malformed",
        StateError::TooLarge => "too-large",
        StateError::UnsupportedVersion => "unsupported-version",
        StateError::UnknownKey => "unknown-key",
        StateError::BadMac => "altered",
        StateError::Expired => "expired",
        StateError::WrongPrincipal => "other-principal",
        StateError::WrongRequest => "other-call",
        _ => "invalid",
    }
}

fn error(id: &Value, text: &str, data: Value) -> Value {
    portcullis_host::adapters::mcp::error_message(id, ERROR_DENIED, text, Some(data))
}

/// Whether every approval of `ids` (comma-separated) is still pending: then the retry asks
/// again rather than redeeming. A store that cannot be read counts as decided (the gate
/// then answers from the store itself).
async fn all_pending(gate: &Gate, ids: &str) -> bool {
    let Some(store) = gate.approvals().cloned() else { return false };
    let ids: Vec<String> = ids.split(',').map(str::trim).filter(|i| !i.is_empty()).map(str::to_owned).collect();
    let read = tokio::task::spawn_blocking(move || {
        let now = portcullis_host::now_ms();
        ids.iter().map(|id| store.get(id, now)).collect::<Result<Vec<_>, _>>()
    })
    .await;
    match read {
        Ok(Ok(approvals)) => {
            !approvals.is_empty()
                && approvals.iter().all(|a| a.as_ref().is_some_and(|a| a.state == ApprovalState::Pending))
        }
        _ => false,
    }
}

/// A refused state in the audit log: a `deny` of the call, decided by `request-state`,
/// labelled with why. The state itself is never written.
fn audit_refusal(gate: &Gate, normal: &Normal, call: &Call, principal: &Principal, why: &str, facts: Facts<'_>) {
    let Some(sink) = gate.audit_sink() else { return };
    let mut request = portcullis_host::adapters::mcp::request_for_call(normal, call, None);
    request.principal = principal.clone();
    let ctx = AuditContext {
        front_door: "mcp".into(),
        time_ms: portcullis_host::now_ms(),
        status: Some(403),
        ..AuditContext::default()
    };
    sink.record(&AuditRecord::for_door_refusal(&ctx, &request, "request-state", &[("refused", why)], facts));
    tracing::warn!(request_id = %request.id, reason = why, "refused a requestState");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(extra: &str) -> McpSection {
        toml::from_str(&format!("listen = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:9/mcp\"\n{extra}")).unwrap()
    }

    fn approvals(extra: &str) -> ApprovalsSection {
        toml::from_str(&format!("store = \"a.sqlite\"\n{extra}")).unwrap()
    }

    #[test]
    fn only_a_2026_client_declaring_url_elicitation_is_asked_by_url() {
        let params = |version: &str, capabilities: Value| {
            json!({"_meta": {"io.modelcontextprotocol/protocolVersion": version,
                "io.modelcontextprotocol/clientCapabilities": capabilities}})
        };
        assert!(elicits_urls(Some(&params("2026-07-28", json!({"elicitation": {"url": {}}})))));
        assert!(elicits_urls(Some(&params("2026-07-28", json!({"elicitation": {"form": {}, "url": {}}})))));
        assert!(!elicits_urls(Some(&params("2026-07-28", json!({"elicitation": {}})))), "form only");
        assert!(!elicits_urls(Some(&params("2026-07-28", json!({"elicitation": {"form": {}}})))));
        assert!(!elicits_urls(Some(&params("2026-07-28", json!({})))));
        assert!(!elicits_urls(Some(&params("2025-11-25", json!({"elicitation": {"url": {}}})))));
        assert!(!elicits_urls(Some(&json!({"name": "t"}))));
        assert!(!elicits_urls(None));
    }

    #[test]
    fn the_approval_page_is_the_inbox_then_approval_url_then_a_named_admin_listener() {
        let admin: SocketAddr = "10.0.0.5:9090".parse().unwrap();
        let inbox = approvals("inbox_url = \"https://inbox.example/a/{id}\"");
        let named = section("approval_url = \"https://admin.example/approvals\"");
        let url = |s: &McpSection, a: Option<&ApprovalsSection>, admin| url_template(s, a, admin).unwrap();
        assert_eq!(url(&named, Some(&inbox), Some((admin, false))).as_deref(), Some("https://inbox.example/a/{id}"));
        assert_eq!(url(&named, Some(&approvals("")), None).as_deref(), Some("https://admin.example/approvals"));
        let plain = section("");
        assert_eq!(
            url(&plain, Some(&approvals("")), Some((admin, true))).as_deref(),
            Some("https://10.0.0.5:9090/approvals/{id}")
        );
        assert_eq!(url(&plain, Some(&approvals("")), None), None);
        assert_eq!(url(&plain, None, Some((admin, false))), None, "no approvals, nothing to point at");
        let wildcard: SocketAddr = "0.0.0.0:9090".parse().unwrap();
        let e = url_template(&plain, Some(&approvals("")), Some((wildcard, false))).unwrap_err();
        assert!(e.contains("approval_url") && e.contains("0.0.0.0:9090"), "{e}");
        for bad in ["approvals.example/{id}", "ftp://approvals.example/{id}", "/approvals/{id}"] {
            let e = url_template(&section(&format!("approval_url = {bad:?}")), None, None).unwrap_err();
            assert!(e.contains("[server.mcp] approval_url"), "{bad}: {e}");
        }
    }

    #[test]
    fn keys_come_from_exactly_one_source_each() {
        let both = section("[[request_state_keys]]\nid = \"a\"\nenv = \"X\"\nfile = \"k\"");
        assert!(key_ring(&both, Path::new(".")).unwrap_err().contains("exactly one of `env` and `file`"));
        let none = section("[[request_state_keys]]\nid = \"a\"");
        assert!(key_ring(&none, Path::new(".")).is_err());
        assert!(key_ring(&section(""), Path::new(".")).unwrap().is_ephemeral());
    }
}
