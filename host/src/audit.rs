//! Decision records: one JSON line per decision, never a secret.
//!
//! Every decision the gate takes (and every failed authentication) becomes one
//! [`AuditRecord`], written by an [`AuditSink`] as one compact JSON line. The record is
//! built from the normalised [`Request`] and the [`Verdict`] by picking out fields known to
//! be safe (ids, names, kinds, the path without its query, policies' own reasons and
//! labels), never by copying the request and removing what looks secret: header values,
//! cookies, query values, bodies, claims and redaction replacement values have no field
//! to land in, so a new header or a new credential scheme cannot leak into the log.
//!
//! Writing a record never fails the request: a sink counts its write errors and reports them
//! once per burst, and the gate carries on. The file sink writes from a thread of its own,
//! so the request does not wait on the disk ([`JsonLinesSink`] says what that trades).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::decision::DecisionKind;
use crate::exchange::{PrincipalKind, Request};
use crate::redact::Applied;
use crate::verdict::{Phase, Verdict};

/// The longest fault or authentication-failure text kept in a record, in bytes. Traps can
/// carry long guest messages; the record wants the gist, the host log has the rest.
const MAX_NOTE: usize = 256;

// ---------------------------------------------------------------------------------------
// The record
// ---------------------------------------------------------------------------------------

/// One decision, as written to the audit log.
///
/// Field names are part of the log format (snake_case, stable); optional fields are left
/// out when empty. Nothing in here is a secret: see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When the decision was taken (the request's arrival for the request phase),
    /// RFC 3339 in UTC with milliseconds: `2026-11-28T11:30:00.123Z`.
    pub time: String,
    /// The request's id (the caller's `X-Request-Id` when sane, otherwise the gate's own).
    pub request_id: String,
    /// Which front door took the request: `proxy`, `forward-auth`, `ext-authz`, `replay`, …
    pub front_door: String,
    /// Which phase this record is about.
    pub phase: Phase,
    /// Who called: kind and id only (no scopes, no claims).
    pub principal: AuditPrincipal,
    /// The user an agent or service acts for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
    /// The id of the credential used (an API key's name, a token's `jti`), never the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
    /// The request method (`CALL` for tool calls).
    pub method: String,
    /// The host the request was for, lower-case, without port or userinfo.
    pub host: String,
    /// The path without the query string (query values may carry secrets).
    pub path: String,
    /// The OpenAPI operationId or MCP tool name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// The route that matched, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The combined decision, or `unauthenticated` when no policy ran because the
    /// credential was refused.
    pub decision: AuditOutcome,
    /// Why authentication failed (only for `unauthenticated`), as the host's authenticator
    /// words it; it names what was wrong, never the credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_failure: Option<String>,
    /// The HTTP status the caller was answered with, when known. It can differ from what
    /// the decision suggests: an allow whose redaction could not be applied is answered
    /// with 500, a require-approval with 403.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The policy whose deny or require-approval decided, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// Every evaluated policy's result, in route order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<AuditPolicy>,
    /// What was redacted in the message passed on, as `header:<name>`, `query:<name>` or
    /// `json:<pointer>` (each concrete field changed: `*` resolved to indices). Only what
    /// was applied: a redaction that matched nothing, or one of a refused message, is not
    /// listed. Never the replacement value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redacted: Vec<String>,
    /// The approval this request created or redeemed, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    /// Time from the request's arrival to this decision, in microseconds.
    pub latency_us: u64,
    /// The labels the policies attached, in route order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<AuditLabel>,
    /// Set on the records of an approval's life (not on decision records): what happened
    /// to the approval [`approval_id`](AuditRecord::approval_id) names. The record's
    /// principal, method, host, path and operation are then the held request's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<AuditApproval>,
    /// Facts the front door vouches for about the exchange, beside what the request says:
    /// e.g. the MCP door's `mcp_generation` (`2025` or `2026-07-28`, the protocol
    /// generation the exchange used). Keys are fixed in the door's code (the gate's
    /// `Arrival::with_fact`); a client can choose neither a key nor a value outside what
    /// the door checked.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub door_facts: BTreeMap<String, String>,
}

/// What happened to an approval, in an approval event's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditApproval {
    /// `pending` (a request needed an approval and a new one was stored), `approved`,
    /// `rejected`, `redeemed` (the retry used it) or `expired`.
    pub event: String,
    /// The approver group.
    pub group: String,
    /// The approval's state after the event (for `expired`: the state it expired in,
    /// `pending` or `approved`).
    pub state: String,
    /// The id of the request the approval holds (for `redeemed`, the record's `request_id`
    /// is the retry's).
    pub held_request_id: String,
    /// When the approval expires or expired, RFC 3339.
    pub expires_at: String,
    /// Who approved or rejected it (`approved`, `rejected`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<AuditApprover>,
    /// The approver's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Who decided an approval, in the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditApprover {
    /// The principal's id, `admin-token`, or `cli:<user>`.
    pub id: String,
    /// The principal's kind, when a principal decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The principal's credential id (never the secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
    /// `principal`, `admin-token`, `cli` or `named`.
    pub via: String,
}

/// Who called, as far as the audit log needs to know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPrincipal {
    /// The kind of caller.
    pub kind: PrincipalKind,
    /// Its stable id (empty when anonymous).
    pub id: String,
}

/// The outcome a record is about: a combined decision, or a refused credential.
///
/// Written as `allow`, `deny`, `redact`, `require-approval` (the [`DecisionKind`] words)
/// or `unauthenticated`, so counting by outcome needs only this one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditOutcome {
    /// `allow`
    Allow,
    /// `deny`
    Deny,
    /// `redact`
    Redact,
    /// `require-approval`
    RequireApproval,
    /// `unauthenticated`: the credential was refused, so no policy ran.
    Unauthenticated,
}

impl AuditOutcome {
    /// The outcome as written in the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Allow => "allow",
            AuditOutcome::Deny => "deny",
            AuditOutcome::Redact => "redact",
            AuditOutcome::RequireApproval => "require-approval",
            AuditOutcome::Unauthenticated => "unauthenticated",
        }
    }

    /// The decision kind, unless the credential was refused.
    pub fn decision_kind(self) -> Option<DecisionKind> {
        match self {
            AuditOutcome::Allow => Some(DecisionKind::Allow),
            AuditOutcome::Deny => Some(DecisionKind::Deny),
            AuditOutcome::Redact => Some(DecisionKind::Redact),
            AuditOutcome::RequireApproval => Some(DecisionKind::RequireApproval),
            AuditOutcome::Unauthenticated => None,
        }
    }
}

impl From<DecisionKind> for AuditOutcome {
    fn from(kind: DecisionKind) -> Self {
        match kind {
            DecisionKind::Allow => AuditOutcome::Allow,
            DecisionKind::Deny => AuditOutcome::Deny,
            DecisionKind::Redact => AuditOutcome::Redact,
            DecisionKind::RequireApproval => AuditOutcome::RequireApproval,
        }
    }
}

impl std::fmt::Display for AuditOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one policy decided, as the audit log keeps it: no redaction values, no labels
/// (those are collected in [`AuditRecord::labels`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPolicy {
    /// The policy's configured name.
    pub policy: String,
    /// Its component's SHA-256, so a record says exactly which build decided.
    pub digest: String,
    /// What it decided (a fault counts as `deny`, or `allow` when fail-open).
    pub decision: DecisionKind,
    /// The deny code, if it denied (`policy-error` for a fault).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Why, in the policy's words (kept as the policy wrote it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Wall-clock time of the call, including instantiation, in microseconds.
    pub elapsed_us: u64,
    /// What went wrong, if the call failed (trap, timeout, memory, invalid return), in short.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
}

/// One audit label a policy attached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditLabel {
    /// The policy that attached it.
    pub policy: String,
    /// The label's key.
    pub key: String,
    /// The label's value.
    pub value: String,
}

/// What the gate knows about a decision besides the request and the verdict.
///
/// The request id is not here: it is the request's own [`Request::id`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditContext {
    /// The front door's name (`proxy`, `forward-auth`, `ext-authz`, `replay`, …).
    pub front_door: String,
    /// When the decision was taken (for the request phase, when the request arrived), in
    /// ms since the Unix epoch.
    pub time_ms: u64,
    /// The approval created or redeemed for this request, if any.
    pub approval_id: Option<String>,
    /// The status the caller was answered with, when known.
    pub status: Option<u16>,
    /// Time from the request's arrival to the decision, in microseconds.
    pub latency_us: u64,
}

impl AuditRecord {
    /// The record of a verdict about `request` (either phase); `applied` is what its
    /// redactions changed in the message passed on (`None` when nothing was passed on).
    pub fn for_verdict(
        ctx: &AuditContext,
        request: &Request,
        verdict: &Verdict,
        applied: Option<&Applied>,
    ) -> AuditRecord {
        let mut record = AuditRecord::base(ctx, request, verdict.phase, verdict.kind().into());
        record.route.clone_from(&verdict.route);
        record.decided_by.clone_from(&verdict.decided_by);
        for result in &verdict.policies {
            record.policies.push(AuditPolicy {
                policy: result.policy.clone(),
                digest: result.digest.clone(),
                decision: result.decision,
                code: result.code.clone(),
                reason: result.reason.clone(),
                elapsed_us: result.elapsed_us,
                fault: result.fault.as_ref().map(|fault| shorten(&fault.to_string())),
            });
            record.labels.extend(result.labels.iter().map(|(key, value)| AuditLabel {
                policy: result.policy.clone(),
                key: key.clone(),
                value: value.clone(),
            }));
        }
        for change in applied.map_or(&[][..], |applied| &applied.changes) {
            // `Target`'s Display is exactly `header:<name>` / `query:<name>` / `json:<ptr>`;
            // the replacement value is deliberately not looked at.
            let field = change.field.to_string();
            if !record.redacted.contains(&field) {
                record.redacted.push(field);
            }
        }
        record
    }

    /// The record of a request refused before any policy ran because its credential was
    /// missing or invalid. `reason` is the authenticator's explanation (it must not quote
    /// the credential; the authenticators' errors do not).
    pub fn for_auth_failure(ctx: &AuditContext, request: &Request, reason: &str) -> AuditRecord {
        let mut record = AuditRecord::base(ctx, request, Phase::Request, AuditOutcome::Unauthenticated);
        record.auth_failure = Some(shorten(reason));
        record
    }

    /// The record of a request a door refused itself, before or instead of the policies
    /// (the MCP door's pinned tool definitions, its Multi Round-Trip `requestState`
    /// checks): `deny`, decided by `by` (not a policy's name: the door's check), with
    /// `labels` under that name and the door's facts about the exchange (`door_facts`).
    /// Labels must name what was checked, never quote what a client or server sent.
    pub fn for_door_refusal(
        ctx: &AuditContext,
        request: &Request,
        by: &str,
        labels: &[(&str, &str)],
        facts: &[(&str, &str)],
    ) -> AuditRecord {
        let mut record = AuditRecord::base(ctx, request, Phase::Request, AuditOutcome::Deny);
        record.decided_by = Some(by.to_owned());
        record.labels = labels
            .iter()
            .map(|(key, value)| AuditLabel {
                policy: by.to_owned(),
                key: (*key).to_owned(),
                value: (*value).to_owned(),
            })
            .collect();
        record.door_facts = facts.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect();
        record
    }

    /// The outcome as written in the log (`allow`, …, `unauthenticated`), e.g. for
    /// metric labels.
    pub fn outcome(&self) -> String {
        self.decision.as_str().to_owned()
    }

    /// This record as one compact JSON line, `\n` included.
    pub fn to_json_line(&self) -> serde_json::Result<Vec<u8>> {
        let mut line = serde_json::to_vec(self)?;
        line.push(b'\n');
        Ok(line)
    }

    /// The fields every record shares, taken one by one from the request so that nothing
    /// else of it can reach the log.
    fn base(ctx: &AuditContext, request: &Request, phase: Phase, decision: AuditOutcome) -> AuditRecord {
        let principal = &request.principal;
        AuditRecord {
            time: rfc3339_ms(ctx.time_ms),
            request_id: request.id.clone(),
            front_door: ctx.front_door.clone(),
            phase,
            principal: AuditPrincipal { kind: principal.kind, id: principal.id.clone() },
            on_behalf_of: principal.on_behalf_of.clone(),
            credential_id: principal.credential_id.clone(),
            method: request.method.clone(),
            host: request.host(),
            path: path_only(&request.path).to_owned(),
            operation: request.operation.clone(),
            route: None,
            decision,
            auth_failure: None,
            status: ctx.status,
            decided_by: None,
            policies: Vec::new(),
            redacted: Vec::new(),
            approval_id: ctx.approval_id.clone(),
            latency_us: ctx.latency_us,
            labels: Vec::new(),
            approval: None,
            door_facts: BTreeMap::new(),
        }
    }
}

/// The path up to any `?`. A normalised request's path never has its query attached, but
/// an embedder that filled `path` with a raw request target would otherwise leak query
/// values into the log; losing a decoded `%3F` from the log is the lesser harm.
fn path_only(path: &str) -> &str {
    path.split_once('?').map_or(path, |(path, _)| path)
}

/// `text` cut to at most [`MAX_NOTE`] bytes on a character boundary, marked with `…`.
fn shorten(text: &str) -> String {
    if text.len() <= MAX_NOTE {
        return text.to_owned();
    }
    let mut end = MAX_NOTE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Formats ms since the Unix epoch as RFC 3339 in UTC with milliseconds:
/// `2026-11-28T11:30:00.123Z`. Times past the year 9999 (no clock reads them; an expiry
/// computed from a huge time-to-live might) are shown as the last millisecond of 9999.
pub fn rfc3339_ms(unix_ms: u64) -> String {
    const FORMAT: &[BorrowedFormatItem<'_>] =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .unwrap_or_else(|_| PrimitiveDateTime::MAX.assume_utc());
    // Formatting a complete UTC date and time with this description cannot fail.
    at.format(FORMAT).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Sinks
// ---------------------------------------------------------------------------------------

/// Where audit records go.
///
/// Recording must never fail or panic the request it records: an implementation counts
/// what it could not write, says so in the host log (once per burst of failures, so a full
/// disk does not flood the log too), and returns. The gate holds an `Arc<dyn AuditSink>`.
pub trait AuditSink: Send + Sync {
    /// Records one decision. Never panics, never fails.
    fn record(&self, record: &AuditRecord);

    /// Pushes what was recorded to durable storage (called at shutdown).
    fn flush(&self) -> io::Result<()>;

    /// How many records could not be written since the sink was created.
    fn write_errors(&self) -> u64 {
        0
    }
}

impl<S: AuditSink + ?Sized> AuditSink for Arc<S> {
    fn record(&self, record: &AuditRecord) {
        (**self).record(record);
    }

    fn flush(&self) -> io::Result<()> {
        (**self).flush()
    }

    fn write_errors(&self) -> u64 {
        (**self).write_errors()
    }
}

impl<S: AuditSink + ?Sized> AuditSink for Box<S> {
    fn record(&self, record: &AuditRecord) {
        (**self).record(record);
    }

    fn flush(&self) -> io::Result<()> {
        (**self).flush()
    }

    fn write_errors(&self) -> u64 {
        (**self).write_errors()
    }
}

/// Why an audit log could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The file could not be opened for appending.
    #[error("audit log `{}`: cannot open it for appending: {error} ({fix})", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        error: io::Error,
        /// What to do about it.
        fix: String,
    },
}

/// How many records may wait for the writer thread (~0.5 KiB each, so about 2 MiB). When the
/// queue is full, recording waits for room: the request that records waits, and no record
/// is dropped.
pub const QUEUE_RECORDS: usize = 4096;

/// How long the writer thread lets lines gather after writing a batch before it writes
/// again. Waking the writer for every record cost more CPU per request than the `write(2)`
/// it saved (~+30 µs per proxied request, measured in BENCHMARKS.md, issue 18); waiting
/// 1 ms after each batch makes the wake-ups at most ~1,000 a second at any rate, and a
/// record reaches the file within about a millisecond.
const LINGER: std::time::Duration = std::time::Duration::from_millis(1);

/// Writes each record as one compact JSON line to standard output or to a file, from a
/// writer thread of its own.
///
/// [`record`](AuditSink::record) serialises the record on the caller's thread. While the
/// writer thread is idle, nothing is queued and no one else is writing, it writes the line
/// itself, so without concurrency (one connection, a test, the CLI) a record is in the file
/// before the request is answered. Once two records meet, it queues the line; the writer
/// thread takes everything queued at once and writes it with a single `write_all`, so a
/// burst of records costs one system call and the requests that record under load do not
/// wait on the disk. A writer that was waiting is woken by the next queued record and
/// writes it at once; after each batch it lets lines gather for 1 ms before the next. Lines
/// keep the order they were recorded in, and each is whole (one writer). The queue holds at
/// most [`QUEUE_RECORDS`]: when the disk falls that far behind, recording **blocks** until
/// the writer catches up, rather than drop a record (a security log must not lose records
/// silently). [`flush`](AuditSink::flush) (at shutdown and on drop) returns once every
/// record recorded before it is written, then syncs the file.
///
/// The trade-off: a queued record is in memory from the moment it is recorded until the
/// writer writes it (at once when the writer was idle, within about a millisecond under
/// load). A graceful stop loses nothing; a crash of the process (a kill with `SIGKILL`, an
/// abort) loses the records still queued, at most [`QUEUE_RECORDS`], where writing on the
/// caller's thread lost at most the one being written. Neither syncs each record to disk,
/// so a power loss loses what the page cache held in both. If the writer thread cannot be
/// started, records are written on the caller's thread as before.
///
/// A file is opened for appending, created with mode 0600 on Unix, since who did what is
/// itself sensitive. Rotation by `copytruncate` works; rotation by renaming needs a
/// restart, as the file is opened once.
pub struct JsonLinesSink {
    out: Arc<Out>,
    /// The writer thread's queue; `None` when the thread could not start.
    queue: Option<Arc<Queue>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Where the lines go, and the accounting of failed writes.
struct Out {
    writer: Mutex<Writer>,
    /// Where the lines go, for messages: a path or `standard output`.
    name: String,
    errors: AtomicU64,
}

/// What the lock guards: the output and the state of the current failure burst.
struct Writer {
    out: Output,
    /// Records lost since the last successful write; non-zero means a burst is ongoing.
    failing: u64,
    /// A write failed, possibly part-way through a line: the next write starts with `\n`
    /// so that its first line is not glued to a fragment (a stray empty line is harmless).
    torn: bool,
}

enum Output {
    Stdout,
    File(File),
}

/// Lines waiting for the writer thread.
struct Queue {
    pending: Mutex<Pending>,
    /// Signalled when a line arrives while the writer waits, and on close.
    arrived: Condvar,
    /// Signalled when the writer has taken a batch (room in the queue) and written one.
    written: Condvar,
    capacity: usize,
}

struct Pending {
    /// Whole lines, in the order they were recorded.
    lines: Vec<u8>,
    /// How many records `lines` holds.
    records: usize,
    /// Records ever queued, and records the writer has finished with (written, or counted
    /// as write errors): a flush waits until the second reaches what the first was.
    queued: u64,
    done: u64,
    /// The writer waits for a line (it is neither writing a batch nor letting lines gather):
    /// the next queued one must wake it.
    idle: bool,
    /// The sink is being dropped: the writer writes what is left and stops.
    closed: bool,
}

impl JsonLinesSink {
    /// A sink writing to the process's standard output.
    pub fn stdout() -> JsonLinesSink {
        JsonLinesSink::with_output(Output::Stdout, "standard output".to_owned())
    }

    /// A sink appending to the file at `path`, created with mode 0600 (on Unix) if missing.
    /// An existing file keeps its permissions; a warning says so when others can read it.
    pub fn open(path: impl AsRef<Path>) -> Result<JsonLinesSink, AuditError> {
        let path = path.as_ref();
        let mut options = OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path).map_err(|error| AuditError::Open {
            fix: fix_for(path, &error),
            path: path.to_owned(),
            error,
        })?;
        #[cfg(unix)]
        if let Ok(metadata) = file.metadata() {
            let mode = std::os::unix::fs::PermissionsExt::mode(&metadata.permissions());
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format_args!("{:o}", mode & 0o777),
                    "the audit log can be read by other users; consider `chmod 600` on it"
                );
            }
        }
        Ok(JsonLinesSink::with_output(Output::File(file), path.display().to_string()))
    }

    fn with_output(out: Output, name: String) -> JsonLinesSink {
        JsonLinesSink::with_capacity(out, name, QUEUE_RECORDS)
    }

    /// The sink with its writer thread and a queue of `capacity` records.
    fn with_capacity(out: Output, name: String, capacity: usize) -> JsonLinesSink {
        let out = Arc::new(Out {
            writer: Mutex::new(Writer { out, failing: 0, torn: false }),
            name,
            errors: AtomicU64::new(0),
        });
        let queue = Arc::new(Queue {
            pending: Mutex::new(Pending {
                lines: Vec::new(),
                records: 0,
                queued: 0,
                done: 0,
                // Not started yet is as good as waiting: it looks at the queue before it waits.
                idle: true,
                closed: false,
            }),
            arrived: Condvar::new(),
            written: Condvar::new(),
            capacity: capacity.max(1),
        });
        let spawned = std::thread::Builder::new().name("audit-writer".into()).spawn({
            let (out, queue) = (out.clone(), queue.clone());
            move || write_queued(&out, &queue)
        });
        match spawned {
            Ok(thread) => JsonLinesSink { out, queue: Some(queue), thread: Some(thread) },
            Err(e) => {
                tracing::warn!(to = %out.name, error = %e, "cannot start the audit writer thread; writing records on the request's thread");
                JsonLinesSink { out, queue: None, thread: None }
            }
        }
    }

    /// Waits until every record recorded so far has been written (or counted as a write
    /// error).
    fn drain(&self) {
        let Some(queue) = &self.queue else { return };
        let mut pending = queue.lock();
        let target = pending.queued;
        while pending.done < target {
            pending = queue.written.wait(pending).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The writer thread: takes every line queued at once and writes them with one write, then
/// lets the next lines gather for [`LINGER`] (records queued meanwhile wake no one), until
/// the sink is dropped and nothing is left.
fn write_queued(out: &Out, queue: &Queue) {
    let mut batch = Vec::new();
    loop {
        let mut pending = queue.lock();
        while pending.records == 0 && !pending.closed {
            pending.idle = true;
            pending = queue.arrived.wait(pending).unwrap_or_else(PoisonError::into_inner);
        }
        pending.idle = false;
        if pending.records == 0 {
            return; // closed, and everything written
        }
        std::mem::swap(&mut pending.lines, &mut batch);
        let records = std::mem::take(&mut pending.records);
        drop(pending);
        // Room in the queue for callers waiting on a full one.
        queue.written.notify_all();
        out.write_lines(&batch, records as u64);
        batch.clear();
        queue.lock().done += records as u64;
        queue.written.notify_all();
        std::thread::sleep(LINGER);
    }
}

impl Out {
    /// The lock, even if a thread panicked while holding it (the writer stays usable:
    /// at worst a line was cut, which `torn` handles).
    fn lock(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lock if no one holds it (a poisoned lock counts as free, as in [`lock`](Out::lock)).
    fn try_lock(&self) -> Option<MutexGuard<'_, Writer>> {
        match self.writer.try_lock() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Writes `records` whole lines with one `write_all`, counting them all as lost if it
    /// fails.
    fn write_lines(&self, lines: &[u8], records: u64) {
        self.write_locked(&mut self.lock(), lines, records);
    }

    /// [`write_lines`](Out::write_lines) with the lock already held.
    fn write_locked(&self, writer: &mut Writer, lines: &[u8], records: u64) {
        let torn = writer.torn;
        let written = match &mut writer.out {
            Output::Stdout => {
                let mut stdout = io::stdout().lock();
                let newline = if torn { stdout.write_all(b"\n") } else { Ok(()) };
                newline.and_then(|()| stdout.write_all(lines)).and_then(|()| stdout.flush())
            }
            Output::File(file) => {
                let newline = if torn { file.write_all(b"\n") } else { Ok(()) };
                newline.and_then(|()| file.write_all(lines))
            }
        };
        match written {
            Ok(()) => {
                writer.torn = false;
                if writer.failing > 0 {
                    tracing::warn!(to = %self.name, lost = writer.failing, "the audit log is writable again");
                    writer.failing = 0;
                }
            }
            Err(e) => {
                self.errors.fetch_add(records, Ordering::Relaxed);
                writer.torn = true;
                if writer.failing == 0 {
                    tracing::error!(
                        to = %self.name,
                        error = %e,
                        "could not write an audit record; requests go on, and further failures are \
                         counted without logging until a write succeeds"
                    );
                }
                writer.failing += records;
            }
        }
    }
}

impl std::fmt::Debug for JsonLinesSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLinesSink")
            .field("to", &self.out.name)
            .field("queued", &self.queue.is_some())
            .field("write_errors", &self.out.errors.load(Ordering::Relaxed))
            .finish()
    }
}

impl AuditSink for JsonLinesSink {
    fn record(&self, record: &AuditRecord) {
        let line = match record.to_json_line() {
            Ok(line) => line,
            Err(e) => {
                // Not expected (the record is strings and numbers), but never a panic.
                self.out.errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(request_id = %record.request_id, error = %e, "could not serialise an audit record");
                return;
            }
        };
        let Some(queue) = &self.queue else {
            self.out.write_lines(&line, 1);
            return;
        };
        let mut pending = queue.lock();
        // The writer idle (not writing a batch, not letting lines gather), nothing queued and
        // the file free: no earlier record can still be on its way, so this one is written
        // here, before the request is answered, in order. The first time two records meet
        // (the file busy), the second is queued and wakes the writer, and records queue for
        // its batches for as long as they keep coming within its 1 ms pauses.
        if pending.idle
            && pending.records == 0
            && let Some(mut writer) = self.out.try_lock()
        {
            drop(pending);
            self.out.write_locked(&mut writer, &line, 1);
            return;
        }
        // A full queue: wait for the writer (block, never drop).
        while pending.records >= queue.capacity && !pending.closed {
            pending = queue.written.wait(pending).unwrap_or_else(PoisonError::into_inner);
        }
        pending.lines.extend_from_slice(&line);
        pending.records += 1;
        pending.queued += 1;
        // Only a waiting writer needs waking: a busy one takes this line with its next batch.
        if std::mem::take(&mut pending.idle) {
            queue.arrived.notify_one();
        }
    }

    fn flush(&self) -> io::Result<()> {
        self.drain();
        let mut writer = self.out.lock();
        match &mut writer.out {
            Output::Stdout => io::stdout().lock().flush(),
            Output::File(file) => file.sync_data(),
        }
    }

    fn write_errors(&self) -> u64 {
        self.out.errors.load(Ordering::Relaxed)
    }
}

impl Drop for JsonLinesSink {
    /// Writes what is still queued, then stops the writer thread.
    fn drop(&mut self) {
        if let Some(queue) = &self.queue {
            queue.lock().closed = true;
            queue.arrived.notify_one();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What to do about a file that would not open, in words for the operator.
fn fix_for(path: &Path, error: &io::Error) -> String {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    match error.kind() {
        io::ErrorKind::NotFound => {
            format!(
                "create the directory `{}` first, or set [audit] path to a file in an existing one",
                parent.display()
            )
        }
        io::ErrorKind::PermissionDenied => format!(
            "make `{}` (or its directory `{}`) writable by this user, or set [audit] path elsewhere",
            path.display(),
            parent.display()
        ),
        io::ErrorKind::IsADirectory => "it is a directory: name a file inside it".to_owned(),
        _ => "set [audit] path to a writable file, or `-` for standard output".to_owned(),
    }
}

/// Keeps records in memory: for tests, and for embedders that ship records elsewhere
/// themselves.
#[derive(Debug, Default)]
pub struct MemorySink {
    records: Mutex<Vec<AuditRecord>>,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> MemorySink {
        MemorySink::default()
    }

    /// A copy of every record so far, in order.
    pub fn records(&self) -> Vec<AuditRecord> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Every record so far, leaving the sink empty.
    pub fn take(&self) -> Vec<AuditRecord> {
        std::mem::take(&mut *self.records.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl AuditSink for MemorySink {
    fn record(&self, record: &AuditRecord) {
        self.records.lock().unwrap_or_else(PoisonError::into_inner).push(record.clone());
    }

    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{Action, Decision, Redaction, Target};
    use crate::exchange::{Body, Principal};
    use crate::policy::Fault;
    use crate::redact::{Change, Effect};
    use crate::verdict::PolicyResult;

    /// A fresh directory under the system's temp dir, removed by the caller.
    fn temp_dir(case: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("portcullis-audit-{case}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A request carrying a secret in every place one can hide.
    fn secret_request() -> Request {
        Request {
            id: "req-42".into(),
            method: "POST".into(),
            authority: "API.Example.com:8443".into(),
            path: "/invoices".into(),
            query: vec![("api_key".into(), "SECRET-C".into()), ("status".into(), "open".into())],
            headers: vec![
                ("authorization".into(), "Bearer SECRET-A".into()),
                ("cookie".into(), "session=SECRET-B".into()),
                ("content-type".into(), "application/json".into()),
            ],
            body: Some(Body::json(&serde_json::json!({"email": "a@example.com", "token": "SECRET-D"}))),
            principal: Principal {
                kind: PrincipalKind::Agent,
                id: "invoice-bot".into(),
                scopes: vec!["invoices:write".into()],
                claims: vec![("tenant".into(), "SECRET-E".into())],
                on_behalf_of: Some("alice".into()),
                credential_id: Some("key-7".into()),
            },
            operation: Some("createInvoice".into()),
            client_address: Some("10.0.0.9".into()),
            received_at_ms: 1_795_865_400_123,
            ..Request::default()
        }
    }

    fn redacting_verdict() -> Verdict {
        let redaction =
            Redaction { target: Target::JsonPointer("/email".into()), action: Action::Replace("SECRET-F".into()) };
        Verdict {
            phase: Phase::Request,
            route: Some("invoices".into()),
            decision: Decision::Redact { redactions: vec![redaction.clone()] },
            decided_by: None,
            policies: vec![
                PolicyResult {
                    policy: "scopes".into(),
                    digest: "sha256-aaa".into(),
                    decision: DecisionKind::Allow,
                    code: None,
                    reason: String::new(),
                    redactions: Vec::new(),
                    labels: Vec::new(),
                    fault: None,
                    elapsed_us: 11,
                    approval: None,
                },
                PolicyResult {
                    policy: "pii".into(),
                    digest: "sha256-bbb".into(),
                    decision: DecisionKind::Redact,
                    code: None,
                    reason: "redacts json:/email".into(),
                    redactions: vec![redaction],
                    labels: vec![("rule".into(), "mask-email".into())],
                    fault: None,
                    elapsed_us: 23,
                    approval: None,
                },
            ],
            elapsed_us: 40,
        }
    }

    fn context() -> AuditContext {
        AuditContext {
            front_door: "proxy".into(),
            time_ms: 1_795_865_400_123,
            approval_id: Some("apr-1".into()),
            status: Some(200),
            latency_us: 345,
        }
    }

    /// What the redacting verdict changed in the message passed on.
    fn email_applied() -> Applied {
        Applied {
            changes: vec![Change {
                field: Target::JsonPointer("/email".into()),
                effect: Effect::Replaced,
                redaction: 0,
            }],
            ..Applied::default()
        }
    }

    fn assert_no_secrets(text: &str) {
        for secret in ["SECRET-A", "SECRET-B", "SECRET-C", "SECRET-D", "SECRET-E", "SECRET-F", "SECRET"] {
            assert!(!text.contains(secret), "`{secret}` leaked into the audit record: {text}");
        }
    }

    #[test]
    fn verdict_record_carries_the_decision_and_no_secret() {
        let record =
            AuditRecord::for_verdict(&context(), &secret_request(), &redacting_verdict(), Some(&email_applied()));
        let line = String::from_utf8(record.to_json_line().unwrap()).unwrap();
        assert_no_secrets(&line);
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1, "{line}");

        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "time": "2026-11-28T11:30:00.123Z",
                "request_id": "req-42",
                "front_door": "proxy",
                "phase": "request",
                "principal": {"kind": "agent", "id": "invoice-bot"},
                "on_behalf_of": "alice",
                "credential_id": "key-7",
                "method": "POST",
                "host": "api.example.com",
                "path": "/invoices",
                "operation": "createInvoice",
                "route": "invoices",
                "decision": "redact",
                "status": 200,
                "policies": [
                    {"policy": "scopes", "digest": "sha256-aaa", "decision": "allow", "elapsed_us": 11},
                    {"policy": "pii", "digest": "sha256-bbb", "decision": "redact", "reason": "redacts json:/email", "elapsed_us": 23},
                ],
                "redacted": ["json:/email"],
                "approval_id": "apr-1",
                "latency_us": 345,
                "labels": [{"policy": "pii", "key": "rule", "value": "mask-email"}],
            })
        );
        let back: AuditRecord = serde_json::from_str(&line).unwrap();
        assert_eq!(back, record);
        assert_eq!(record.outcome(), "redact");
    }

    #[test]
    fn auth_failure_record_names_the_outcome_and_no_secret() {
        let mut ctx = context();
        ctx.approval_id = None;
        ctx.status = Some(401);
        let record = AuditRecord::for_auth_failure(&ctx, &secret_request(), "invalid bearer token: bad signature");
        let line = serde_json::to_string(&record).unwrap();
        assert_no_secrets(&line);
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["decision"], "unauthenticated");
        assert_eq!(value["auth_failure"], "invalid bearer token: bad signature");
        assert_eq!(value["status"], 401);
        assert_eq!(value["phase"], "request");
        assert!(value.get("policies").is_none() && value.get("route").is_none(), "{line}");
        assert_eq!(record.outcome(), "unauthenticated");
        assert_eq!(record.decision.decision_kind(), None);
    }

    #[test]
    fn deny_by_fault_keeps_code_reason_and_short_fault() {
        let mut verdict = redacting_verdict();
        let long_trap = format!("wasm trap: {}", "é".repeat(400));
        verdict.policies[1] = PolicyResult {
            decision: DecisionKind::Deny,
            code: Some("policy-error".into()),
            reason: "policy `pii` trapped".into(),
            redactions: Vec::new(),
            fault: Some(Fault::Trap(long_trap)),
            ..verdict.policies[1].clone()
        };
        verdict.decision = Decision::Deny(crate::decision::Denial {
            status: 500,
            code: "policy-error".into(),
            reason: "policy `pii` trapped".into(),
        });
        verdict.decided_by = Some("pii".into());
        let record = AuditRecord::for_verdict(&context(), &secret_request(), &verdict, None);
        assert_eq!(record.decision, AuditOutcome::Deny);
        assert_eq!(record.decided_by.as_deref(), Some("pii"));
        assert!(record.redacted.is_empty());
        let policy = &record.policies[1];
        assert_eq!(policy.code.as_deref(), Some("policy-error"));
        let fault = policy.fault.as_deref().unwrap();
        assert!(fault.starts_with("trapped: wasm trap: é") && fault.ends_with('…'), "{fault}");
        assert!(fault.len() <= MAX_NOTE + '…'.len_utf8(), "{}", fault.len());
    }

    #[test]
    fn path_never_carries_a_query() {
        let mut request = secret_request();
        request.path = "/invoices?api_key=SECRET-C".into();
        let record = AuditRecord::for_verdict(&context(), &request, &redacting_verdict(), Some(&email_applied()));
        assert_eq!(record.path, "/invoices");
    }

    #[test]
    fn redacted_fields_are_what_was_applied_listed_once_each() {
        let mut verdict = redacting_verdict();
        verdict.decision = Decision::Redact {
            redactions: vec![
                Redaction { target: Target::Header("x-api-key".into()), action: Action::Remove },
                Redaction { target: Target::Query("token".into()), action: Action::Replace("SECRET-F".into()) },
                Redaction { target: Target::JsonPointer("/items/*/card".into()), action: Action::Remove },
                Redaction { target: Target::JsonPointer("/email".into()), action: Action::Remove },
            ],
        };
        let change = |field: Target| Change { field, effect: Effect::Removed, redaction: 0 };
        let applied = Applied {
            changes: vec![
                change(Target::Header("x-api-key".into())),
                change(Target::Header("x-api-key".into())),
                change(Target::Query("token".into())),
                change(Target::JsonPointer("/items/0/card".into())),
                change(Target::JsonPointer("/items/1/card".into())),
            ],
            ..Applied::default()
        };
        let record = AuditRecord::for_verdict(&context(), &secret_request(), &verdict, Some(&applied));
        assert_eq!(record.redacted, ["header:x-api-key", "query:token", "json:/items/0/card", "json:/items/1/card"]);
        assert_no_secrets(&serde_json::to_string(&record).unwrap());
        // Asked but not applied (a `Range` slice without the field, a refused message):
        // not listed.
        assert!(AuditRecord::for_verdict(&context(), &secret_request(), &verdict, None).redacted.is_empty());
        let nothing = Applied::default();
        assert!(AuditRecord::for_verdict(&context(), &secret_request(), &verdict, Some(&nothing)).redacted.is_empty());
    }

    #[test]
    fn time_is_rfc3339_utc_with_milliseconds() {
        for (ms, text) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (1_795_865_400_123, "2026-11-28T11:30:00.123Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (1_709_251_199_999, "2024-02-29T23:59:59.999Z"),
            (1_709_251_200_000, "2024-03-01T00:00:00.000Z"),
            (946_684_799_001, "1999-12-31T23:59:59.001Z"),
            (4_107_542_400_050, "2100-03-01T00:00:00.050Z"),
            (94_651_200_999, "1972-12-31T12:00:00.999Z"),
        ] {
            assert_eq!(rfc3339_ms(ms), text, "{ms}");
        }
    }

    #[test]
    fn file_sink_appends_across_opens_and_lines_parse_back() {
        let dir = temp_dir("append");
        let path = dir.join("audit.jsonl");
        let record =
            AuditRecord::for_verdict(&context(), &secret_request(), &redacting_verdict(), Some(&email_applied()));
        {
            let sink = JsonLinesSink::open(&path).unwrap();
            sink.record(&record);
            sink.record(&record);
            sink.flush().unwrap();
        }
        let sink = JsonLinesSink::open(&path).unwrap();
        let mut third = record.clone();
        third.request_id = "req-43".into();
        sink.record(&third);
        assert_eq!(sink.write_errors(), 0);
        // No flush: dropping the sink writes what is still queued.
        drop(sink);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(text.ends_with('\n'));
        let parsed: Vec<AuditRecord> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(parsed, [record.clone(), record, third]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn file_sink_creates_the_file_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("mode");
        let path = dir.join("audit.jsonl");
        let _sink = JsonLinesSink::open(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unopenable_path_gives_an_error_naming_it_and_the_fix() {
        let dir = temp_dir("unwritable");
        let missing = dir.join("no-such-dir").join("audit.jsonl");
        let err = JsonLinesSink::open(&missing).unwrap_err().to_string();
        assert!(err.contains(&missing.display().to_string()), "{err}");
        assert!(err.contains("create the directory"), "{err}");

        let err = JsonLinesSink::open(&dir).unwrap_err().to_string();
        assert!(err.contains(&dir.display().to_string()), "{err}");
        assert!(err.contains("directory"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn write_errors_are_counted_not_raised() {
        // Every write to /dev/full fails with "no space left on device".
        let sink = JsonLinesSink::open("/dev/full").unwrap();
        let record =
            AuditRecord::for_verdict(&context(), &secret_request(), &redacting_verdict(), Some(&email_applied()));
        for _ in 0..3 {
            sink.record(&record);
        }
        // The writer thread writes; once flushed, every failure is counted.
        let _ = sink.flush();
        assert_eq!(sink.write_errors(), 3);
        let shared: Arc<dyn AuditSink> = Arc::new(sink);
        assert_eq!(shared.write_errors(), 3);
    }

    #[test]
    fn concurrent_records_make_whole_lines_only() {
        const THREADS: usize = 8;
        const EACH: usize = 200;
        let dir = temp_dir("concurrent");
        let path = dir.join("audit.jsonl");
        let sink: Arc<dyn AuditSink> = Arc::new(JsonLinesSink::open(&path).unwrap());
        let mut base =
            AuditRecord::for_verdict(&context(), &secret_request(), &redacting_verdict(), Some(&email_applied()));
        // Long lines (several KiB) make torn writes likely if anything were wrong.
        base.policies[1].reason = "x".repeat(8 * 1024);
        std::thread::scope(|scope| {
            for t in 0..THREADS {
                let sink = sink.clone();
                let base = base.clone();
                scope.spawn(move || {
                    let mut record = base;
                    for i in 0..EACH {
                        record.request_id = format!("t{t}-{i}");
                        sink.record(&record);
                    }
                });
            }
        });
        sink.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut ids: Vec<String> = text
            .lines()
            .map(|line| serde_json::from_str::<AuditRecord>(line).expect("a whole record per line").request_id)
            .collect();
        assert_eq!(ids.len(), THREADS * EACH);
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), THREADS * EACH);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `THREADS` threads record `EACH` records each into a sink whose queue holds only
    /// `capacity`, so they keep finding it full; the ids of the lines written, by thread.
    fn record_through_a_small_queue(case: &str, capacity: usize, flush: bool) -> Vec<Vec<usize>> {
        const THREADS: usize = 4;
        const EACH: usize = 300;
        let dir = temp_dir(case);
        let path = dir.join("audit.jsonl");
        let file = OpenOptions::new().append(true).create(true).open(&path).unwrap();
        let sink = JsonLinesSink::with_capacity(Output::File(file), case.into(), capacity);
        assert!(sink.queue.is_some(), "the writer thread started");
        let base = AuditRecord::for_auth_failure(&context(), &secret_request(), "unknown API key");
        std::thread::scope(|scope| {
            for t in 0..THREADS {
                let (sink, mut record) = (&sink, base.clone());
                scope.spawn(move || {
                    for i in 0..EACH {
                        record.request_id = format!("{t}-{i}");
                        sink.record(&record);
                    }
                });
            }
        });
        if flush {
            sink.flush().unwrap();
            assert_eq!(sink.write_errors(), 0);
        } else {
            drop(sink);
        }
        let mut by_thread = vec![Vec::new(); THREADS];
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let id = serde_json::from_str::<AuditRecord>(line).expect("a whole record per line").request_id;
            let (t, i) = id.split_once('-').unwrap();
            by_thread[t.parse::<usize>().unwrap()].push(i.parse().unwrap());
        }
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(by_thread.iter().all(|ids| ids.len() == EACH), "every record written, none dropped");
        by_thread
    }

    #[test]
    fn a_full_queue_makes_recording_wait_and_loses_no_record() {
        // A queue of one record: nearly every record finds it full.
        let by_thread = record_through_a_small_queue("full-queue", 1, true);
        for ids in by_thread {
            assert_eq!(ids, (0..ids.len()).collect::<Vec<_>>(), "each thread's records in the order recorded");
        }
    }

    #[test]
    fn dropping_the_sink_writes_what_is_queued() {
        let by_thread = record_through_a_small_queue("drop-drains", 64, false);
        assert_eq!(by_thread.iter().map(Vec::len).sum::<usize>(), 4 * 300);
    }

    #[test]
    fn a_flush_returns_once_every_earlier_record_is_in_the_file() {
        let dir = temp_dir("flush-visible");
        let path = dir.join("audit.jsonl");
        let sink = JsonLinesSink::open(&path).unwrap();
        let mut record = AuditRecord::for_auth_failure(&context(), &secret_request(), "unknown API key");
        for round in 1..=20 {
            record.request_id = format!("r{round}");
            sink.record(&record);
            sink.flush().unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(text.lines().count(), round, "{text}");
            assert!(text.contains(&format!("\"request_id\":\"r{round}\"")), "{text}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// With nothing queued and no one writing, the record is written by the caller: it is in
    /// the file when `record` returns, with no flush (tests and one-connection servers read
    /// the log right after the answer).
    #[test]
    fn a_record_with_nothing_queued_is_in_the_file_when_record_returns() {
        let dir = temp_dir("inline-write");
        let path = dir.join("audit.jsonl");
        let sink = JsonLinesSink::open(&path).unwrap();
        let mut record = AuditRecord::for_auth_failure(&context(), &secret_request(), "unknown API key");
        for round in 1..=50 {
            record.request_id = format!("r{round}");
            sink.record(&record);
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(text.lines().count(), round, "{text}");
            assert!(text.contains(&format!("\"request_id\":\"r{round}\"")), "{text}");
        }
        drop(sink);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn memory_sink_keeps_records_behind_a_shared_handle() {
        let memory = Arc::new(MemorySink::new());
        let shared: Arc<dyn AuditSink> = memory.clone();
        let record = AuditRecord::for_auth_failure(&context(), &secret_request(), "unknown API key");
        shared.record(&record);
        shared.flush().unwrap();
        assert_eq!(memory.records(), std::slice::from_ref(&record));
        assert_eq!(memory.take(), [record]);
        assert!(memory.records().is_empty());
        assert_eq!(shared.write_errors(), 0);
    }
}
