//! `tool-guard`: what AI agents (and other callers) may do through the MCP front door.
//!
//! The MCP door normalises every JSON-RPC request to method `CALL` with the tool's name as
//! the operation (`resources/read:URI`, `prompts/get:NAME`, or the method itself for the
//! rest) and the header `mcp-method` carrying the JSON-RPC method. For those requests:
//!
//! - protocol methods (`initialize`, `ping`, `tools/list`, … see `protocol`) pass;
//! - any other operation must be on the allow-list of the caller's kind (`tools.agent`,
//!   `tools.user`, `tools.service`, `tools.anonymous`; `*` for any, `prefix*` for a
//!   prefix), else deny 403 `tool-not-allowed`;
//! - an allowed tool listed in `writes` requires approval by `approver_group`; with
//!   `destructive_needs_approval`, so does a `tools/call` of a tool that may be destructive:
//!   annotated `destructiveHint: true`, or without the hint (MCP's default is true, unless
//!   the tool is `readOnlyHint: true`), so a call whose annotations the host did not know
//!   is held too. Annotations are the server's hints: they can only make this policy
//!   stricter, never let a call through;
//! - otherwise the pointers in `arguments[operation]` (and `arguments["*"]`) are removed
//!   (or masked with `mask`) from the arguments before the server sees them, and in the
//!   response phase the pointers in `results[operation]` (and `results["*"]`) from the
//!   result (`/structuredContent/email`, `/content`) before the caller sees it.
//!
//! - a `tools/call` (and its `tools/list` probe) of a tool whose listed definition has a
//!   finding named in `refuse_findings` is denied 403 `tool-finding`, whoever calls: the host
//!   scans each listed tool's description and input schema with its content heuristics and
//!   passes the findings in the reserved header `mcp-tool-finding`
//!   (`instruction-tag,secret-parameter`; docs/mcp.md "Pinned tool definitions" lists them);
//!   the policy only compares names, so the heuristics have one implementation.
//!
//! A request without `mcp-method` is not an MCP call: deny 403 `not-an-mcp-call`. Probe
//! requests (header `mcp-probe`, sent to filter `tools/list`) get the allow-list answer
//! only. The policy reads no body: it names fields and the host removes them.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

use alloc::collections::BTreeMap;

use portcullis_guest::RedactBuilder;
use portcullis_guest::prelude::*;
use serde::Deserialize;

/// The policy's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Allowed operations per kind of caller (`agent`, `user`, `service`, `anonymous`):
    /// tool names, `resources/read:URI`, `prompts/get:NAME`; `*` allows any, a trailing
    /// `*` any with that prefix. A kind not listed may call nothing.
    #[serde(default)]
    pub tools: BTreeMap<String, Vec<String>>,
    /// Operations that change things: they require approval, whoever calls.
    #[serde(default)]
    pub writes: Vec<String>,
    /// The group that approves writes. Required when `writes` is not empty or
    /// `destructive_needs_approval` is set.
    #[serde(default)]
    pub approver_group: String,
    /// How long an approval stays valid, in seconds (default 900).
    #[serde(default = "default_ttl_seconds")]
    pub ttl_seconds: u32,
    /// Also require approval for tool calls that may be destructive: annotated
    /// `destructiveHint: true`, or with no `destructiveHint` and no `readOnlyHint: true`
    /// (MCP's defaults) (default false).
    #[serde(default)]
    pub destructive_needs_approval: bool,
    /// JSON-RPC methods every caller may use (default: the lifecycle and listing methods).
    #[serde(default = "default_protocol")]
    pub protocol: Vec<String>,
    /// JSON pointers removed from the arguments, by operation (`*` for every operation).
    #[serde(default)]
    pub arguments: BTreeMap<String, Vec<String>>,
    /// JSON pointers removed from the result, by operation (`*` for every operation).
    #[serde(default)]
    pub results: BTreeMap<String, Vec<String>>,
    /// Replace minimised fields with this text instead of removing them.
    #[serde(default)]
    pub mask: Option<String>,
    /// Refuse the tools whose listed definition has any of these findings of the host's
    /// content heuristics (see [`FINDINGS`]; `instruction-like` stands for every finding
    /// but `secret-parameter`). Default: none.
    #[serde(default)]
    pub refuse_findings: Vec<String>,
}

/// The findings the host's heuristics report (`mcp_pins::scan::Rule::name` in the host).
pub const FINDINGS: [&str; 8] = [
    "ignore-instructions",
    "conceal-from-user",
    "instruction-tag",
    "sensitive-path",
    "secret-access",
    "pre-call-directive",
    "hidden-characters",
    "secret-parameter",
];

/// The header the host passes the findings of a tool's listed definition in.
const FINDING_HEADER: &str = "mcp-tool-finding";

/// The shorthand for every finding about instruction-like text (all but `secret-parameter`).
const INSTRUCTION_LIKE: &str = "instruction-like";

fn default_ttl_seconds() -> u32 {
    900
}

fn default_protocol() -> Vec<String> {
    [
        "initialize",
        "ping",
        "server/discover",
        "tools/list",
        "resources/list",
        "resources/templates/list",
        "prompts/list",
        "completion/complete",
        "logging/setLevel",
        // 2026-07-28: carries change notifications, calls nothing; the notifications it
        // streams pass the response phase like any result.
        "subscriptions/listen",
    ]
    .iter()
    .map(|m| (*m).into())
    .collect()
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            tools: BTreeMap::new(),
            writes: Vec::new(),
            approver_group: String::new(),
            ttl_seconds: default_ttl_seconds(),
            destructive_needs_approval: false,
            protocol: default_protocol(),
            arguments: BTreeMap::new(),
            results: BTreeMap::new(),
            mask: None,
            refuse_findings: Vec::new(),
        }
    }
}

/// The `tool-guard` policy.
pub struct ToolGuard;

impl Policy for ToolGuard {
    type Settings = Settings;

    fn metadata() -> Metadata {
        Metadata::new("tool-guard", env!("CARGO_PKG_VERSION")).both_phases()
    }

    fn validate(settings: &Settings) -> Result<(), SettingsError> {
        for kind in settings.tools.keys() {
            if !matches!(kind.as_str(), "agent" | "user" | "service" | "anonymous") {
                return Err(SettingsError::new(
                    format!("tools.{kind}"),
                    "the kinds of caller are agent, user, service and anonymous",
                ));
            }
        }
        let needs_group = !settings.writes.is_empty() || settings.destructive_needs_approval;
        if needs_group && settings.approver_group.trim().is_empty() {
            return Err(SettingsError::new("approver_group", "must name the group that approves writes"));
        }
        if settings.ttl_seconds == 0 {
            return Err(SettingsError::new("ttl_seconds", "must be at least 1 second"));
        }
        for (i, finding) in settings.refuse_findings.iter().enumerate() {
            if finding != INSTRUCTION_LIKE && !FINDINGS.contains(&finding.as_str()) {
                return Err(SettingsError::new(
                    format!("refuse_findings[{i}]"),
                    format!("`{finding}` is not a finding; they are {INSTRUCTION_LIKE}, {}", FINDINGS.join(", ")),
                ));
            }
        }
        for (name, map) in [("arguments", &settings.arguments), ("results", &settings.results)] {
            for (operation, pointers) in map {
                for (i, pointer) in pointers.iter().enumerate() {
                    if !pointer.starts_with('/') {
                        return Err(SettingsError::new(
                            format!("{name}.{operation}[{i}]"),
                            format!("`{pointer}` must be a JSON pointer starting with /"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn on_request(settings: &Settings, req: &Request) -> Outcome {
        let Some(method) = req.header("mcp-method") else {
            return deny(403, "not-an-mcp-call", "tool-guard decides MCP calls only; route other requests elsewhere")
                .label("rule", "not-an-mcp-call");
        };
        if settings.protocol.iter().any(|m| m == method) {
            return allow().label("rule", "protocol");
        }
        let operation = req.operation.as_deref().unwrap_or(method);
        if method == "tools/call"
            && let Some(found) = refused_findings(settings, req)
        {
            return deny(
                403,
                "tool-finding",
                format!(
                    "tool {operation} is refused: its listed definition has {found} (the host's content \
                     heuristics); a person should review the MCP server's tool"
                ),
            )
            .label("rule", "tool-finding")
            .label("finding", found)
            .label("operation", operation);
        }
        let kind = req.principal.kind.as_str();
        let allowed =
            settings.tools.get(kind).is_some_and(|list| list.iter().any(|pattern| matches(pattern, operation)));
        if !allowed {
            return deny(
                403,
                "tool-not-allowed",
                format!("{kind} {} may not call {operation}", who(&req.principal.id)),
            )
            .label("rule", "tool-not-allowed")
            .label("operation", operation);
        }
        if req.header("mcp-probe").is_some() {
            return allow().label("rule", "listed");
        }
        let write = settings.writes.iter().any(|w| matches(w, operation));
        let destructive = settings.destructive_needs_approval && method == "tools/call" && destructive(req);
        if write || destructive {
            let acting = match req.principal.acting_for() {
                Some(user) => format!(" acting for {user}"),
                None => String::new(),
            };
            return require_approval(
                format!("{kind} {}{acting} wants to call {operation}", who(&req.principal.id)),
                &settings.approver_group,
            )
            .ttl(settings.ttl_seconds)
            .label("rule", if write { "write-needs-approval" } else { "destructive-needs-approval" })
            .label("operation", operation)
            .into();
        }
        minimise(settings, &settings.arguments, operation)
            .map(|r| r.label("rule", "minimise-arguments").into())
            .unwrap_or_else(|| allow().label("rule", "allowed"))
            .label("operation", operation)
    }

    fn on_response(settings: &Settings, req: &Request, _resp: &Response) -> Outcome {
        let Some(method) = req.header("mcp-method") else {
            return allow();
        };
        let operation = req.operation.as_deref().unwrap_or(method);
        minimise(settings, &settings.results, operation)
            .map(|r| r.label("rule", "minimise-result").into())
            .unwrap_or_else(allow)
    }
}

/// The findings of the tool's definition (the host's `mcp-tool-finding` header) that the
/// settings refuse, comma-separated; `None` when there are none.
fn refused_findings(settings: &Settings, req: &Request) -> Option<String> {
    if settings.refuse_findings.is_empty() {
        return None;
    }
    let refused = |finding: &str| {
        settings.refuse_findings.iter().any(|r| {
            r == finding || (r == INSTRUCTION_LIKE && finding != "secret-parameter" && FINDINGS.contains(&finding))
        })
    };
    let found: Vec<&str> =
        req.header(FINDING_HEADER)?.split(',').map(str::trim).filter(|f| !f.is_empty() && refused(f)).collect();
    (!found.is_empty()).then(|| found.join(","))
}

/// The redactions for `operation` in `map` (its own pointers and those under `*`).
fn minimise(settings: &Settings, map: &BTreeMap<String, Vec<String>>, operation: &str) -> Option<RedactBuilder> {
    let pointers: Vec<&String> = [map.get(operation), map.get("*")].into_iter().flatten().flatten().collect();
    if pointers.is_empty() {
        return None;
    }
    Some(pointers.into_iter().fold(redact(), |r, pointer| match &settings.mask {
        Some(mask) => r.json_mask(pointer, mask),
        None => r.json(pointer),
    }))
}

/// Whether a tool call may be destructive, by the server's hints as the host passed them.
/// MCP's defaults are the cautious ones: an undeclared `destructiveHint` is true unless the
/// tool is declared `readOnlyHint: true`. So a call whose hints are missing (a host that
/// did not know the tool's listing, a recorded session without `tools/list`) counts as
/// destructive, and so does one whose hint is not `true` or `false`.
fn destructive(req: &Request) -> bool {
    match req.header("mcp-annotation-destructivehint") {
        Some("false") => false,
        Some(_) => true,
        None => req.header("mcp-annotation-readonlyhint") != Some("true"),
    }
}

/// Whether `operation` matches `pattern`: `*`, a prefix ending in `*`, or the exact name.
fn matches(pattern: &str, operation: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => operation.starts_with(prefix),
        None => pattern == operation,
    }
}

/// How a caller is named in reasons: its id, or `caller` when it has none.
fn who(id: &str) -> &str {
    if id.is_empty() { "caller" } else { id }
}

export_policy!(ToolGuard);

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_guest::check_settings;

    const SETTINGS: &str = r#"{
        "tools": {"agent": ["search_customers", "get_customer", "create_invoice", "resources/read:crm://*"], "user": ["*"]},
        "writes": ["create_invoice"],
        "approver_group": "ops",
        "destructive_needs_approval": true,
        "arguments": {"search_customers": ["/ssn"]},
        "results": {"get_customer": ["/structuredContent/email", "/content"]}
    }"#;

    fn settings() -> Settings {
        check_settings::<ToolGuard>(SETTINGS).unwrap()
    }

    fn call(kind: Principal, method: &str, operation: &str) -> Request {
        Request::new("CALL", "/mcp").with_principal(kind).with_header("mcp-method", method).with_operation(operation)
    }

    fn tool(kind: Principal, name: &str) -> Request {
        call(kind, "tools/call", name)
    }

    fn agent() -> Principal {
        Principal::agent("crm-bot").acting_for_user("alice")
    }

    #[test]
    fn protocol_methods_pass_for_everyone() {
        for method in ["initialize", "tools/list", "ping"] {
            let out = ToolGuard::on_request(&settings(), &call(Principal::anonymous(), method, method));
            assert!(out.is_allow(), "{method}");
            assert_eq!(out.label_value("rule"), Some("protocol"));
        }
    }

    #[test]
    fn subscriptions_listen_passes_and_its_notifications_pass_the_response_phase() {
        let listen = call(agent(), "subscriptions/listen", "subscriptions/listen");
        let out = ToolGuard::on_request(&settings(), &listen);
        assert!(out.is_allow());
        assert_eq!(out.label_value("rule"), Some("protocol"));
        assert!(ToolGuard::on_response(&settings(), &listen, &Response::new(200)).is_allow());
        // Only by default: a deployment that lists its own protocol methods decides.
        let strict = check_settings::<ToolGuard>(r#"{"protocol": ["initialize"]}"#).unwrap();
        assert!(ToolGuard::on_request(&strict, &listen).denial().is_some());
    }

    #[test]
    fn tools_off_the_kinds_list_are_denied() {
        let out = ToolGuard::on_request(&settings(), &tool(agent(), "delete_customer"));
        let denial = out.denial().unwrap();
        assert_eq!((denial.status, denial.code.as_str()), (403, "tool-not-allowed"));
        assert_eq!(denial.reason, "agent crm-bot may not call delete_customer");
        let out = ToolGuard::on_request(&settings(), &tool(Principal::service("etl"), "get_customer"));
        assert!(out.denial().is_some(), "a kind not listed may call nothing");
        let harmless =
            tool(Principal::user("bob"), "delete_customer").with_header("mcp-annotation-destructivehint", "false");
        assert!(ToolGuard::on_request(&settings(), &harmless).is_allow());
    }

    #[test]
    fn prefixes_cover_resources() {
        let s = settings();
        assert!(
            ToolGuard::on_request(&s, &call(agent(), "resources/read", "resources/read:crm://customers/4")).is_allow()
        );
        assert!(
            ToolGuard::on_request(&s, &call(agent(), "resources/read", "resources/read:file:///etc/passwd"))
                .denial()
                .is_some()
        );
    }

    #[test]
    fn writes_need_approval_and_probes_only_ask_the_list() {
        let out = ToolGuard::on_request(&settings(), &tool(agent(), "create_invoice"));
        let approval = out.approval().unwrap();
        assert_eq!(approval.approver_group, "ops");
        assert_eq!(approval.reason, "agent crm-bot acting for alice wants to call create_invoice");
        assert_eq!(out.label_value("rule"), Some("write-needs-approval"));
        let probe = tool(agent(), "create_invoice").with_header("mcp-probe", "tools/list");
        assert!(ToolGuard::on_request(&settings(), &probe).is_allow());
    }

    #[test]
    fn a_destructive_annotation_only_tightens() {
        let marked =
            tool(Principal::user("bob"), "delete_customer").with_header("mcp-annotation-destructivehint", "true");
        assert!(ToolGuard::on_request(&settings(), &marked).approval().is_some());
        // A "harmless" annotation on a tool off the list lets nothing through.
        let lying = tool(agent(), "delete_customer")
            .with_header("mcp-annotation-readonlyhint", "true")
            .with_header("mcp-annotation-destructivehint", "false");
        assert!(ToolGuard::on_request(&settings(), &lying).denial().is_some());
    }

    #[test]
    fn a_tool_without_annotations_counts_as_destructive() {
        // No hints at all: the host did not know the tool's listing (MCP's defaults).
        let unknown = tool(Principal::user("bob"), "delete_customer");
        let out = ToolGuard::on_request(&settings(), &unknown);
        assert!(out.approval().is_some(), "a missing destructiveHint is destructive");
        assert_eq!(out.label_value("rule"), Some("destructive-needs-approval"));
        // readOnlyHint: false alone, or a hint that is not a boolean: still destructive.
        for (name, value) in [("mcp-annotation-readonlyhint", "false"), ("mcp-annotation-destructivehint", "yes")] {
            let req = tool(Principal::user("bob"), "delete_customer").with_header(name, value);
            assert!(ToolGuard::on_request(&settings(), &req).approval().is_some(), "{name}: {value}");
        }
        // Declared read-only, or declared not destructive: not held.
        for (name, value) in [("mcp-annotation-readonlyhint", "true"), ("mcp-annotation-destructivehint", "false")] {
            let req = tool(Principal::user("bob"), "get_customer").with_header(name, value);
            assert!(ToolGuard::on_request(&settings(), &req).is_allow(), "{name}: {value}");
        }
        // Resources and prompts carry no annotations and are not tools: not held.
        let read = call(Principal::user("bob"), "resources/read", "resources/read:crm://c/1");
        assert!(ToolGuard::on_request(&settings(), &read).is_allow());
        let prompt = call(Principal::user("bob"), "prompts/get", "prompts/get:summary");
        assert!(ToolGuard::on_request(&settings(), &prompt).is_allow());
    }

    #[test]
    fn arguments_and_results_are_minimised_by_pointer() {
        let read_only = tool(agent(), "search_customers").with_header("mcp-annotation-readonlyhint", "true");
        let out = ToolGuard::on_request(&settings(), &read_only);
        assert_eq!(out.redactions().len(), 1);
        assert!(matches!(&out.redactions()[0].target, Target::JsonPointer(p) if p == "/ssn"));
        let out = ToolGuard::on_response(&settings(), &tool(agent(), "get_customer"), &Response::new(200));
        let pointers: Vec<&str> = out
            .redactions()
            .iter()
            .filter_map(|r| match &r.target {
                Target::JsonPointer(p) => Some(p.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(pointers, ["/structuredContent/email", "/content"]);
        assert!(
            ToolGuard::on_response(&settings(), &tool(agent(), "search_customers"), &Response::new(200)).is_allow()
        );
    }

    #[test]
    fn tools_with_refused_findings_are_denied_for_every_caller_and_in_probes() {
        let s = check_settings::<ToolGuard>(
            r#"{"tools": {"agent": ["*"], "user": ["*"]}, "refuse_findings": ["instruction-tag", "secret-parameter"]}"#,
        )
        .unwrap();
        let poisoned = |kind: Principal| {
            tool(kind, "export_report")
                .with_header("mcp-annotation-readonlyhint", "true")
                .with_header("mcp-tool-finding", "sensitive-path,instruction-tag")
        };
        for kind in [agent(), Principal::user("bob")] {
            let out = ToolGuard::on_request(&s, &poisoned(kind));
            let denial = out.denial().unwrap();
            assert_eq!((denial.status, denial.code.as_str()), (403, "tool-finding"));
            assert!(denial.reason.contains("export_report") && denial.reason.contains("instruction-tag"));
            assert_eq!(out.label_value("finding"), Some("instruction-tag"), "only the refused ones are named");
        }
        let probe = poisoned(agent()).with_header("mcp-probe", "tools/list");
        assert!(ToolGuard::on_request(&s, &probe).denial().is_some(), "hidden from tools/list too");
        let secret = tool(agent(), "connect").with_header("mcp-tool-finding", "secret-parameter");
        assert_eq!(ToolGuard::on_request(&s, &secret).label_value("rule"), Some("tool-finding"));
        // A finding not refused, or none: decided as before.
        for header in ["sensitive-path", ""] {
            let req = tool(agent(), "export_report")
                .with_header("mcp-annotation-readonlyhint", "true")
                .with_header("mcp-tool-finding", header);
            assert!(ToolGuard::on_request(&s, &req).is_allow(), "{header}");
        }
        // Without refuse_findings, findings change nothing.
        let lenient = check_settings::<ToolGuard>(r#"{"tools": {"agent": ["*"]}}"#).unwrap();
        assert!(ToolGuard::on_request(&lenient, &poisoned(agent())).is_allow());
    }

    #[test]
    fn instruction_like_stands_for_every_text_finding() {
        let s = check_settings::<ToolGuard>(r#"{"tools": {"agent": ["*"]}, "refuse_findings": ["instruction-like"]}"#)
            .unwrap();
        for finding in FINDINGS {
            let req = tool(agent(), "t")
                .with_header("mcp-annotation-readonlyhint", "true")
                .with_header("mcp-tool-finding", finding);
            let refused = ToolGuard::on_request(&s, &req).denial().is_some();
            assert_eq!(refused, finding != "secret-parameter", "{finding}");
        }
    }

    #[test]
    fn requests_that_are_not_mcp_calls_are_denied() {
        let out = ToolGuard::on_request(&settings(), &Request::new("GET", "/invoices"));
        assert_eq!(out.denial().unwrap().code, "not-an-mcp-call");
    }

    #[test]
    fn bad_settings_name_the_setting() {
        for (json, setting) in [
            (r#"{"tools": {"robot": []}}"#, "tools.robot"),
            (r#"{"writes": ["x"]}"#, "approver_group"),
            (r#"{"arguments": {"t": ["ssn"]}}"#, "arguments.t[0]"),
            (r#"{"ttl_seconds": 0}"#, "ttl_seconds"),
            (r#"{"tool": {}}"#, "tool"),
            (r#"{"refuse_findings": ["instruction-tag", "poison"]}"#, "refuse_findings[1]"),
        ] {
            assert_eq!(check_settings::<ToolGuard>(json).unwrap_err().setting, setting, "{json}");
        }
    }
}
