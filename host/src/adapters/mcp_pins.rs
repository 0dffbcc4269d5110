//! Pinned tool definitions: a tool whose definition changed after it was trusted is hidden and
//! refused until someone looks at it again.
//!
//! An MCP server describes its tools in `tools/list`, and the model reads those descriptions
//! as instructions. A server that is benign when a user connects it can later change a tool's
//! description or schema (a "rug pull"), for example to tell the model to read `~/.ssh` and
//! pass it as an argument. So the door remembers a digest of each tool's definition
//! ([`tool_digest`]: its `name`, `description`, `inputSchema` and `annotations`) and compares
//! every later listing with it ([`PinSet::decide`]):
//!
//! | seen before? | digest | [`PinMode::Learn`] | [`PinMode::Authoritative`] |
//! |---|---|---|---|
//! | no | — | pinned now, allowed ([`PinDecision::Pinned`]) | refused ([`PinDecision::Unpinned`]) |
//! | yes | same | allowed ([`PinDecision::Same`]) | allowed |
//! | yes | different | refused ([`PinDecision::Changed`]) | refused |
//!
//! A changed tool stays pinned to its old digest (it is not learnt again) until an operator
//! re-pins it ([`PinSet::repin`], or `portcullis mcp pin` rewriting the file).
//!
//! Pins live in one JSON document per server ([`PinSet::load`], [`PinSet::save`]):
//!
//! ```json
//! {"version": 1, "server": "github", "pinned_at": "2026-12-03T16:41:00Z",
//!  "tools": {"create_issue": "sha256:…64 hex…"}}
//! ```
//!
//! The heuristics that judge a definition's *content* (instruction-like text, parameters
//! that ask for secrets) are in [`scan`].

pub mod scan;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::adapters::mcp::parse_json_strict;
use crate::approval::request_state::canonical_digest;

/// The pin document's format version.
pub const PIN_FILE_VERSION: u64 = 1;
/// The parts of a tool definition a pin covers.
pub const PINNED_FIELDS: [&str; 4] = ["name", "description", "inputSchema", "annotations"];

/// `sha256:<hex>` of a tool's [`PINNED_FIELDS`] in canonical JSON (sorted keys, no
/// whitespace). A field the tool leaves out is left out (so it differs from `null`); other
/// fields (`title`, `outputSchema`, `_meta`, …) do not change the digest.
pub fn tool_digest(tool: &Value) -> String {
    let mut pinned = Map::new();
    for field in PINNED_FIELDS {
        if let Some(value) = tool.get(field) {
            pinned.insert(field.to_owned(), value.clone());
        }
    }
    canonical_digest(&Value::Object(pinned))
}

/// Whether an unknown tool is learnt or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinMode {
    /// Trust on first use: a tool never seen is pinned as it is now.
    Learn,
    /// Only the pins given count: a tool never seen is refused.
    Authoritative,
}

/// What [`PinSet::decide`] concluded about one tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinDecision {
    /// First seen while learning: pinned to this digest now. Allowed (and worth an audit line).
    Pinned {
        /// The digest pinned.
        digest: String,
    },
    /// As pinned. Allowed.
    Same,
    /// Different from its pin: hidden from `tools/list` and its calls refused until re-pinned.
    Changed {
        /// The pinned digest.
        old: String,
        /// The digest of the definition now listed.
        new: String,
    },
    /// Not pinned, and the pins are authoritative: hidden and refused.
    Unpinned {
        /// The digest of the definition listed.
        digest: String,
    },
    /// A definition without a string `name`: it cannot be keyed, so it is refused.
    Unnamed,
}

impl PinDecision {
    /// Whether the tool may be listed and called.
    pub fn allowed(&self) -> bool {
        matches!(self, PinDecision::Pinned { .. } | PinDecision::Same)
    }
}

/// Why a pin document could not be read or written. Messages name the file and the field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PinError {
    /// The file could not be read.
    #[error("cannot read the pin file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not JSON (or an object with a repeated key).
    #[error("the pin file {} is not valid JSON: {message}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's description.
        message: String,
    },
    /// A field is missing or wrong.
    #[error("the pin file {}: `{field}` {reason}", path.display())]
    Field {
        /// The file.
        path: PathBuf,
        /// The field, e.g. `version` or `tools.create_issue`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The file could not be written.
    #[error("cannot write the pin file {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// `[server.mcp.pins]`: how the MCP door pins the tool definitions of its server.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PinsSection {
    /// `learn` (default), `file` or `off`.
    #[serde(default)]
    pub mode: PinsMode,
    /// The pin file: written as tools are learnt (`learn`), or the only pins that count
    /// (`file`, required then). Relative to the config file's folder.
    #[serde(default)]
    pub file: Option<PathBuf>,
}

/// `[server.mcp.pins] mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PinsMode {
    /// Trust on first use: each tool is pinned as the door first sees it listed.
    #[default]
    Learn,
    /// Only the pins in `file` count: a tool not in it is treated as changed.
    File,
    /// No pinning (a server whose descriptions change by design).
    Off,
}

impl PinsSection {
    /// Checks the section; the error names the key.
    pub fn check(&self) -> Result<(), String> {
        if self.mode == PinsMode::File && self.file.is_none() {
            return Err(
                "[server.mcp.pins] mode = \"file\" needs `file`, the pin file `portcullis mcp pin` writes".into()
            );
        }
        if self.mode == PinsMode::Off && self.file.is_some() {
            return Err("[server.mcp.pins] file is set but mode is \"off\": nothing would read it".into());
        }
        Ok(())
    }
}

/// The pinned tool digests of one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinSet {
    server: String,
    pinned_at: String,
    tools: BTreeMap<String, String>,
    mode: PinMode,
}

impl PinSet {
    /// An empty set for `server`, created at `now_ms` (ms since the Unix epoch).
    pub fn new(server: impl Into<String>, now_ms: u64, mode: PinMode) -> PinSet {
        PinSet { server: server.into(), pinned_at: rfc3339(now_ms), tools: BTreeMap::new(), mode }
    }

    /// Reads a pin document. Pins read from a file are [authoritative](PinMode::Authoritative)
    /// unless [`with_mode`](PinSet::with_mode) says otherwise.
    pub fn load(path: &Path) -> Result<PinSet, PinError> {
        let bytes = std::fs::read(path).map_err(|source| PinError::Read { path: path.to_owned(), source })?;
        let document =
            parse_json_strict(&bytes).map_err(|e| PinError::Json { path: path.to_owned(), message: e.to_string() })?;
        PinSet::from_document(&document).map_err(|(field, reason)| PinError::Field {
            path: path.to_owned(),
            field,
            reason,
        })
    }

    /// The set with another mode.
    #[must_use]
    pub fn with_mode(mut self, mode: PinMode) -> PinSet {
        self.mode = mode;
        self
    }

    fn from_document(document: &Value) -> Result<PinSet, (String, String)> {
        let field = |name: &str, reason: &str| (name.to_owned(), reason.to_owned());
        let object = document.as_object().ok_or_else(|| field("(document)", "must be a JSON object"))?;
        for key in object.keys() {
            if !["version", "server", "pinned_at", "tools"].contains(&key.as_str()) {
                return Err(field(key, "is not a known field (version, server, pinned_at, tools)"));
            }
        }
        match object.get("version") {
            None => return Err(field("version", "is missing")),
            Some(v) if v.as_u64() == Some(PIN_FILE_VERSION) => {}
            Some(v) => {
                return Err(field("version", &format!("is {v}; this Portcullis reads version {PIN_FILE_VERSION}")));
            }
        }
        let server = match object.get("server") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            None => return Err(field("server", "is missing")),
            Some(_) => return Err(field("server", "must be a non-empty string")),
        };
        let pinned_at = match object.get("pinned_at") {
            Some(Value::String(s)) if OffsetDateTime::parse(s, &Rfc3339).is_ok() => s.clone(),
            None => return Err(field("pinned_at", "is missing")),
            Some(_) => return Err(field("pinned_at", "must be an RFC 3339 time, e.g. \"2026-12-03T16:41:00Z\"")),
        };
        let listed = match object.get("tools") {
            Some(Value::Object(tools)) => tools,
            None => return Err(field("tools", "is missing")),
            Some(_) => return Err(field("tools", "must be an object of tool name to \"sha256:…\" digest")),
        };
        let mut tools = BTreeMap::new();
        for (name, digest) in listed {
            let at = format!("tools.{name}");
            if name.is_empty() {
                return Err(field(&at, "has an empty tool name"));
            }
            match digest.as_str() {
                Some(d) if is_digest(d) => tools.insert(name.clone(), d.to_owned()),
                _ => return Err(field(&at, "must be \"sha256:\" and 64 lower-case hex digits")),
            };
        }
        Ok(PinSet { server, pinned_at, tools, mode: PinMode::Authoritative })
    }

    /// The document [`save`](PinSet::save) writes.
    pub fn to_document(&self) -> Value {
        json!({
            "version": PIN_FILE_VERSION,
            "server": self.server,
            "pinned_at": self.pinned_at,
            "tools": self.tools,
        })
    }

    /// Writes the document (pretty, keys sorted) to a temporary file beside `path` and renames
    /// it over `path`, so a reader never sees half a file.
    pub fn save(&self, path: &Path) -> Result<(), PinError> {
        let write_error = |source| PinError::Write { path: path.to_owned(), source };
        let mut text = serde_json::to_string_pretty(&self.to_document()).map_err(|e| write_error(e.into()))?;
        text.push('\n');
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(format!(".tmp-{}", std::process::id()));
        let temporary = PathBuf::from(temporary);
        std::fs::write(&temporary, text).map_err(write_error)?;
        std::fs::rename(&temporary, path).map_err(|e| {
            let _ = std::fs::remove_file(&temporary);
            write_error(e)
        })
    }

    /// The server the pins are for.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// When the set was created (RFC 3339).
    pub fn pinned_at(&self) -> &str {
        &self.pinned_at
    }

    /// The pins, by tool name.
    pub fn tools(&self) -> &BTreeMap<String, String> {
        &self.tools
    }

    /// The mode.
    pub fn mode(&self) -> PinMode {
        self.mode
    }

    /// Decides on one tool definition from `tools/list` (learning it when the mode says so).
    pub fn decide(&mut self, tool: &Value) -> PinDecision {
        match tool.get("name").and_then(Value::as_str) {
            Some(name) => self.decide_digest(name, &tool_digest(tool)),
            None => PinDecision::Unnamed,
        }
    }

    /// Decides on a tool by its name and [`tool_digest`].
    pub fn decide_digest(&mut self, name: &str, digest: &str) -> PinDecision {
        match (self.tools.get(name), self.mode) {
            (Some(pinned), _) if pinned == digest => PinDecision::Same,
            (Some(pinned), _) => PinDecision::Changed { old: pinned.clone(), new: digest.to_owned() },
            (None, PinMode::Learn) => {
                self.tools.insert(name.to_owned(), digest.to_owned());
                PinDecision::Pinned { digest: digest.to_owned() }
            }
            (None, PinMode::Authoritative) => PinDecision::Unpinned { digest: digest.to_owned() },
        }
    }

    /// Pins `name` to `digest`, replacing its pin: what an operator does after reviewing a
    /// changed definition.
    pub fn repin(&mut self, name: &str, digest: &str) {
        self.tools.insert(name.to_owned(), digest.to_owned());
    }

    /// Removes a pin; returns whether there was one.
    pub fn unpin(&mut self, name: &str) -> bool {
        self.tools.remove(name).is_some()
    }
}

/// Pin sets keyed by server: the door's view of every upstream's tools.
#[derive(Debug, Clone)]
pub struct Pins {
    sets: BTreeMap<String, PinSet>,
    mode: PinMode,
}

impl Pins {
    /// No pins; servers not yet seen are learnt or refused by `mode`.
    pub fn new(mode: PinMode) -> Pins {
        Pins { sets: BTreeMap::new(), mode }
    }

    /// Adds (or replaces) one server's set.
    pub fn insert(&mut self, set: PinSet) {
        self.sets.insert(set.server.clone(), set);
    }

    /// One server's set.
    pub fn get(&self, server: &str) -> Option<&PinSet> {
        self.sets.get(server)
    }

    /// Decides on a tool of `server` at `now_ms`; a server without a set gets one when
    /// learning, and has every tool refused when the pins are authoritative.
    pub fn decide(&mut self, server: &str, tool: &Value, now_ms: u64) -> PinDecision {
        if !self.sets.contains_key(server) {
            if self.mode == PinMode::Authoritative {
                return match tool.get("name").and_then(Value::as_str) {
                    Some(_) => PinDecision::Unpinned { digest: tool_digest(tool) },
                    None => PinDecision::Unnamed,
                };
            }
            self.insert(PinSet::new(server, now_ms, PinMode::Learn));
        }
        self.sets.get_mut(server).map_or(PinDecision::Unnamed, |set| set.decide(tool))
    }
}

fn is_digest(text: &str) -> bool {
    text.strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

fn rfc3339(unix_ms: u64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .ok()
        .and_then(|at| at.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

#[cfg(test)]
mod tests;
