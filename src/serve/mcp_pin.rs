//! The MCP door's pinned tool definitions (`[server.mcp.pins]`, docs/mcp.md "Pinned tool
//! definitions"): every `tools/list` answer from the server is compared with the pins
//! (`portcullis_host::adapters::mcp_pins`), a tool whose definition changed is hidden from the
//! answer and its calls are refused before any policy or the server sees them, and the content
//! heuristics' findings of each listed tool are handed to policies on its calls.
//!
//! Pins are per door (one upstream server), not per caller: the definition a model reads is
//! the server's, whoever asked. The door keeps, per tool name, the digest of the definition
//! it saw listed last (by any caller) and decides each call by it:
//!
//! - `learn` (the default): a tool is pinned when first listed; a later listing with another
//!   digest is a change. A tool never listed passes (no model saw a definition through the
//!   door, so none can have changed); it carries MCP's default annotations.
//! - `file`: only the pins in the file count; a listed tool not in it is treated as changed,
//!   and a call of a tool the server does not list (so it cannot be compared) is refused.
//! - `off`: nothing is pinned; findings are still handed to policies.
//!
//! Each change is audited once per (tool, new digest) and logged. A reload of `serve`
//! re-reads the pin file, so re-pinning is: `portcullis mcp pin`, then a reload.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use portcullis_host::adapters::mcp::{ERROR_DENIED, TOOL_FINDING_HEADER};
use portcullis_host::adapters::mcp_pins::{PinDecision, PinMode, PinSet, PinsMode, scan, tool_digest};
use portcullis_host::audit::{AuditContext, AuditRecord, AuditSink};
use portcullis_host::config::McpSection;
use portcullis_host::exchange::Request as Normal;
use serde_json::{Value, json};

use super::super::live::Live;

/// The JSON-RPC error's `data.code` for a call of a tool whose definition changed.
pub(super) const CHANGED_CODE: &str = "tool-definition-changed";

/// Who decides in the audit records of pinned definitions (`decided_by`, the labels' policy).
const PINS: &str = "mcp-pins";

/// Tool names the door keeps track of; a server listing more gets the rest hidden (a
/// hostile server cannot grow the door's memory without bound).
const MAX_TOOLS: usize = 10_000;

/// The door's pins and what it saw listed last.
pub(super) struct DoorPins {
    mode: PinsMode,
    file: Option<PathBuf>,
    /// The server the pins are for (the upstream URL), as written into a learnt file.
    server: String,
    /// Where changes are audited.
    audit: Arc<dyn AuditSink>,
    /// The serving generation, read to notice reloads.
    live: Live,
    state: Mutex<State>,
}

struct State {
    pins: PinSet,
    /// The generation whose reload last read the file.
    generation: u64,
    /// Per tool name: what the door saw listed last.
    listed: HashMap<String, Listed>,
    /// The (tool, digest) changes already audited.
    audited: HashSet<(String, String)>,
}

struct Listed {
    digest: String,
    decision: PinDecision,
    /// The heuristics' findings (rule names, each once, in rule order).
    findings: Vec<&'static str>,
}

impl DoorPins {
    /// The door's pins for `section` (its `[server.mcp.pins]`, learn mode when absent); the
    /// pin file (made relative to the config's folder by `serve`) is read now: a `file` mode
    /// whose file cannot be read stops the start.
    pub(super) fn open(section: &McpSection, live: &Live) -> Result<DoorPins> {
        let pins_section = section.pins.clone().unwrap_or_default();
        pins_section.check().map_err(anyhow::Error::msg)?;
        let file = pins_section.file.clone();
        let server = section.upstream.clone();
        let pins = read_pins(pins_section.mode, file.as_deref(), &server)?;
        let generation = live.generation();
        let state = State { pins, generation, listed: HashMap::new(), audited: HashSet::new() };
        Ok(DoorPins {
            mode: pins_section.mode,
            file,
            server,
            audit: live.keep().audit.clone(),
            live: live.clone(),
            state: Mutex::new(state),
        })
    }

    /// Judges a `tools/list` result (one page) that `caller` is getting: records each tool's
    /// digest and findings, pins new tools when learning, audits changes; returns the names
    /// of the tools to hide.
    pub(super) fn judge_listing(&self, result: &Value, caller: &Normal) -> HashSet<String> {
        let mut hidden = HashSet::new();
        let Some(tools) = result.get("tools").and_then(Value::as_array) else { return hidden };
        let Ok(mut state) = self.state.lock() else { return hidden };
        self.refresh(&mut state);
        let mut learnt = false;
        for tool in tools {
            let Some(name) = tool.get("name").and_then(Value::as_str) else { continue };
            // A name listed again after a refused entry: the refusal stands (the server has a
            // definition nobody pinned; which one a call would run is the server's choice).
            if hidden.contains(name) {
                continue;
            }
            if state.listed.len() >= MAX_TOOLS && !state.listed.contains_key(name) {
                tracing::warn!(tool = name, "the MCP server lists more than {MAX_TOOLS} tools; hiding the rest");
                hidden.insert(name.to_owned());
                continue;
            }
            let digest = tool_digest(tool);
            let decision = match self.mode {
                PinsMode::Off => PinDecision::Same,
                _ => state.pins.decide_digest(name, &digest),
            };
            learnt |= matches!(decision, PinDecision::Pinned { .. });
            // The heuristics read the definition the digest covers: the same digest, the
            // same findings (a listing repeats mostly unchanged tools; the scan costs about
            // twice the digest, BENCHMARKS.md "MCP 2026-07-28").
            let known = state.listed.get(name).filter(|l| l.digest == digest).map(|l| l.findings.clone());
            let findings = known.unwrap_or_else(|| findings_of(tool));
            if !decision.allowed() {
                hidden.insert(name.to_owned());
                if state.audited.insert((name.to_owned(), digest.clone())) {
                    self.record_change(name, &decision, caller);
                }
            }
            state.listed.insert(name.to_owned(), Listed { digest, decision, findings });
        }
        if learnt
            && let Some(file) = &self.file
            && let Err(e) = state.pins.save(file)
        {
            tracing::error!(error = %e, "[server.mcp.pins] could not persist the learnt pins");
        }
        hidden
    }

    /// Whether a call of `tool` may go on: `Err` with the JSON-RPC error (for request `id`)
    /// when its definition changed since pinned, or cannot be compared in `file` mode.
    pub(super) fn admit(&self, tool: &str, id: &Value) -> Result<(), Box<Value>> {
        if self.mode == PinsMode::Off {
            return Ok(());
        }
        let Ok(mut state) = self.state.lock() else { return Err(self.refusal(id, tool, None, None)) };
        self.refresh(&mut state);
        match state.listed.get(tool) {
            Some(listed) if listed.decision.allowed() => Ok(()),
            Some(listed) => {
                let pinned = state.pins.tools().get(tool).cloned();
                Err(self.refusal(id, tool, pinned.as_deref(), Some(&listed.digest)))
            }
            // Learning, and the server's tools were never seen (it cannot list them): the call
            // goes on with MCP's defaults (destructive). Once they were, a tool it does not
            // list cannot be compared with a pin (a `PAY` beside the changed `pay`, on a
            // server that matches names loosely): refused, as in file mode.
            None if self.mode == PinsMode::Learn && state.listed.is_empty() => Ok(()),
            None => Err(self.refusal(id, tool, state.pins.tools().get(tool).map(String::as_str), None)),
        }
    }

    /// The audit record of a call [`DoorPins::admit`] refused (`call`: the caller's call,
    /// authenticated), with the exchange's `facts`: a `deny` by `mcp-pins`, rule
    /// `tool-definition-changed`.
    pub(super) fn record_refused_call(&self, call: &Normal, facts: &[(&'static str, &'static str)]) {
        let ctx = AuditContext {
            front_door: "mcp".into(),
            time_ms: call.received_at_ms,
            status: Some(200),
            ..AuditContext::default()
        };
        let labels = [("rule", CHANGED_CODE)];
        self.audit.record(&AuditRecord::for_door_refusal(&ctx, call, PINS, &labels, facts));
    }

    /// The findings header for a call or probe of `tool`, when its listing had findings.
    pub(super) fn finding_header(&self, tool: &str) -> Option<(String, String)> {
        let state = self.state.lock().ok()?;
        let listed = state.listed.get(tool)?;
        (!listed.findings.is_empty()).then(|| (TOOL_FINDING_HEADER.to_owned(), listed.findings.join(",")))
    }

    /// After a reload: the pin file read again (a file that cannot be read keeps the pins
    /// held, with an error logged), and what was listed decided again against it.
    fn refresh(&self, state: &mut State) {
        let generation = self.live.generation();
        if generation == state.generation {
            return;
        }
        state.generation = generation;
        let Some(file) = &self.file else { return };
        match read_pins(self.mode, Some(file), &self.server) {
            Ok(pins) => {
                state.pins = pins;
                let State { pins, listed, .. } = state;
                for (name, entry) in listed.iter_mut() {
                    entry.decision = pins.decide_digest(name, &entry.digest);
                }
                tracing::info!(file = %file.display(), pins = state.pins.tools().len(), "[server.mcp.pins] file read again");
            }
            Err(e) => tracing::error!(error = %format!("{e:#}"), "[server.mcp.pins] keeping the pins held"),
        }
    }

    fn refusal(&self, id: &Value, tool: &str, pinned: Option<&str>, listed: Option<&str>) -> Box<Value> {
        let how = match (&self.file, self.mode) {
            (Some(file), _) => format!(
                "review the server's new definition, then re-pin: `portcullis mcp pin --config <config>` rewrites {} \
                 and a reload of `portcullis serve` reads it",
                file.display()
            ),
            (None, _) => "review the server's new definition, then restart `portcullis serve` (learn mode without a \
                          pin file) or pin it with `portcullis mcp pin` and `[server.mcp.pins] file`"
                .to_owned(),
        };
        let what = match (pinned, listed) {
            (Some(_), Some(_)) => "changed since it was pinned",
            (None, Some(_)) => "is not pinned ([server.mcp.pins] mode = \"file\")",
            _ => "cannot be compared with its pin: the server does not list it",
        };
        let text = format!("{CHANGED_CODE}: the definition of tool `{tool}` {what}; {how}");
        let data = json!({ "code": CHANGED_CODE, "tool": tool, "pinned": pinned, "listed": listed });
        Box::new(portcullis_host::adapters::mcp::error_message(id, ERROR_DENIED, &text, Some(data)))
    }

    /// One audit record (and one log line) for a tool whose listed definition differs from
    /// its pin: a `deny` by `mcp-pins` with the tool as the operation and the digests as
    /// labels (digests only: never the description, which may hold anything).
    fn record_change(&self, tool: &str, decision: &PinDecision, caller: &Normal) {
        let (rule, pinned, listed) = match decision {
            PinDecision::Changed { old, new } => ("tool-definition-changed", Some(old.as_str()), new.as_str()),
            PinDecision::Unpinned { digest } => ("tool-not-pinned", None, digest.as_str()),
            _ => return,
        };
        tracing::warn!(
            tool,
            rule,
            pinned = pinned.unwrap_or("-"),
            listed,
            server = %self.server,
            "an MCP tool's definition differs from its pin: hidden from tools/list and its calls refused"
        );
        let ctx =
            AuditContext { front_door: "mcp".into(), time_ms: portcullis_host::now_ms(), ..AuditContext::default() };
        let mut listing = caller.clone();
        listing.method = "CALL".into();
        listing.operation = Some(tool.to_owned());
        let mut labels = vec![("rule", rule)];
        labels.extend(pinned.map(|pinned| ("pinned", pinned)));
        labels.push(("listed", listed));
        let record = AuditRecord::for_door_refusal(&ctx, &listing, PINS, &labels, &[]);
        self.audit.record(&record);
    }
}

/// The content heuristics' findings on a listed tool: each rule once, in the scan's order.
fn findings_of(tool: &Value) -> Vec<&'static str> {
    let mut findings: Vec<&'static str> = Vec::new();
    for finding in scan::scan_tool(tool) {
        if !findings.contains(&finding.rule.name()) {
            findings.push(finding.rule.name());
        }
    }
    findings.sort_by_key(|f| scan::Rule::ALL.iter().position(|r| r.name() == *f));
    findings
}

/// The pins a mode starts from: the file's (authoritative in `file` mode; in `learn` mode
/// learnt on top of, and an absent file is an empty start).
fn read_pins(mode: PinsMode, file: Option<&Path>, server: &str) -> Result<PinSet> {
    let now = portcullis_host::now_ms();
    match (mode, file) {
        (PinsMode::File, Some(file)) => PinSet::load(file)
            .with_context(|| "[server.mcp.pins] file (write it with `portcullis mcp pin --config <config>`)"),
        (PinsMode::Learn, Some(file)) if file.exists() => {
            Ok(PinSet::load(file).context("[server.mcp.pins] file")?.with_mode(PinMode::Learn))
        }
        (PinsMode::File, None) => Ok(PinSet::new(server, now, PinMode::Authoritative)),
        _ => Ok(PinSet::new(server, now, PinMode::Learn)),
    }
}
