//! What one policy decides about one phase: the host-side mirror of the WIT `decision`.
//!
//! These types are plain Rust (no wasmtime types) so embedders, the redaction applier and
//! the audit log can use them without touching the engine. Their JSON form is what
//! `portcullis eval` prints.

use serde::{Deserialize, Serialize};

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Denial {
    /// HTTP status for the caller.
    pub status: u16,
    /// Machine-readable code, e.g. `missing-scope`.
    pub code: String,
    /// Human-readable reason (reaches the caller; never a secret).
    pub reason: String,
}

/// Which part of a message a redaction applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "name")]
pub enum Target {
    /// Every header with this name (case-insensitive).
    Header(String),
    /// Every query parameter with this name (requests only).
    Query(String),
    /// A JSON pointer into the body; a `*` segment matches every array element or member.
    JsonPointer(String),
    /// Every object member with this name, at any depth of a JSON body (contract 0.2).
    JsonName(String),
    /// Values the named detector (`crate::detect::Detector::name`) finds in the body,
    /// header values and query values (contract 0.2).
    Detected(String),
}

impl Target {
    /// Whether applying this target may change the body: a door that cannot rewrite bodies
    /// must refuse when such a target is asked for (or changed something).
    pub fn may_change_body(&self) -> bool {
        matches!(self, Target::JsonPointer(_) | Target::JsonName(_) | Target::Detected(_))
    }

    /// Whether applying this target may change the query.
    pub fn may_change_query(&self) -> bool {
        matches!(self, Target::Query(_) | Target::Detected(_))
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Header(name) => write!(f, "header:{name}"),
            Target::Query(name) => write!(f, "query:{name}"),
            Target::JsonPointer(pointer) => write!(f, "json:{pointer}"),
            Target::JsonName(name) => write!(f, "json:..{name}"),
            Target::Detected(detector) => write!(f, "detected:{detector}"),
        }
    }
}

/// What to do with a targeted value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Remove it.
    Remove,
    /// Replace it with this text (a JSON string in bodies).
    Replace(String),
    /// Rewrite it with a mask (contract 0.2; see [`crate::mask`]).
    Mask(Mask),
}

/// How a mask rewrites a value (the WIT `mask`, contract 0.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mask {
    /// Keep the last N characters, `*` for the others.
    KeepLast(u32),
    /// Keep an e-mail address's `@domain`, `*` for each character of the local part.
    KeepEmailDomain,
    /// Exactly this many `*`.
    FixedLength(u32),
    /// `pn_` and a keyed HMAC-SHA256 of the value (the key from `[redaction]`).
    Pseudonym,
}

/// One field to remove or mask.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Redaction {
    /// Where.
    pub target: Target,
    /// What to do.
    pub action: Action,
}

/// Why a request needs a human's confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// For the approver and the caller.
    pub reason: String,
    /// Who may approve.
    pub approver_group: String,
    /// How long an approval stays valid, in seconds.
    pub ttl_seconds: u32,
}

/// One policy's decision about one phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "decision")]
pub enum Decision {
    /// Let it through.
    Allow,
    /// Refuse it.
    Deny(Denial),
    /// Let it through with these fields removed or masked.
    Redact {
        /// The fields.
        redactions: Vec<Redaction>,
    },
    /// Hold it for an approver.
    RequireApproval(Approval),
}

impl Decision {
    /// The decision's kind as a word: `allow`, `deny`, `redact` or `require-approval`.
    pub fn kind(&self) -> DecisionKind {
        match self {
            Decision::Allow => DecisionKind::Allow,
            Decision::Deny(_) => DecisionKind::Deny,
            Decision::Redact { .. } => DecisionKind::Redact,
            Decision::RequireApproval(_) => DecisionKind::RequireApproval,
        }
    }

    /// A short human-readable reason: the denial's or approval's reason, or the redacted
    /// fields.
    pub fn reason(&self) -> String {
        match self {
            Decision::Allow => String::new(),
            Decision::Deny(d) => d.reason.clone(),
            Decision::Redact { redactions } => {
                let fields: Vec<String> = redactions.iter().map(|r| r.target.to_string()).collect();
                format!("redacts {}", fields.join(", "))
            }
            Decision::RequireApproval(a) => a.reason.clone(),
        }
    }
}

/// The four kinds of decision, for counting and matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DecisionKind {
    /// `allow`
    Allow,
    /// `deny`
    Deny,
    /// `redact`
    Redact,
    /// `require-approval`
    RequireApproval,
}

impl DecisionKind {
    /// The kind as written in configs, reports and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Allow => "allow",
            DecisionKind::Deny => "deny",
            DecisionKind::Redact => "redact",
            DecisionKind::RequireApproval => "require-approval",
        }
    }
}

impl std::fmt::Display for DecisionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decision plus the labels the policy attached for the audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The decision.
    #[serde(flatten)]
    pub decision: Decision,
    /// Audit labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<(String, String)>,
}

impl Outcome {
    /// An outcome with no labels.
    pub fn new(decision: Decision) -> Self {
        Outcome { decision, labels: Vec::new() }
    }
}
