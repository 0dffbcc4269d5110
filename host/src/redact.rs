//! Applies redactions to a request or response: headers, query parameters and JSON bodies,
//! and reports which fields changed (never their values) for the audit log.
//!
//! Policies only *name* the fields to remove or mask; the host applies them here, so a
//! policy in any language stays small and every front door redacts the same way.
//! [`apply_to_request`] and [`apply_to_response`] work on the normalised model;
//! `adapters::http` drives the same compiled plan over `http` crate messages.
//!
//! # Rules
//!
//! - **Headers**: every header with the target's name, compared case-insensitively, is
//!   removed, or has its value replaced (repeats stay repeats).
//! - **Query parameters** (requests only): every pair whose decoded key equals the
//!   target's name exactly. In a response a query target is ignored and reported as such.
//! - **JSON pointers** (RFC 6901, `~0` for `~` and `~1` for `/`): a segment that is exactly
//!   `*` matches every element of an array or every member of an object, at any depth
//!   (`/data/*/items/*/card/number`). A numeric segment also matches the member of that name
//!   in an object; `-` matches nothing. A pointer that matches nothing is not an error.
//!   - Removing an object member deletes the member; removing an array element deletes
//!     the element, and the elements after it move up, keeping their order.
//!   - Replacing writes the text as a JSON string.
//!   - The empty pointer `""` is the whole document: replacing makes the body that JSON
//!     string; removing makes it `null`, which keeps the body valid for its JSON content
//!     type (an empty body would not be) and carries nothing.
//!   - Because `*` is always a wildcard, a member literally named `*` cannot be targeted
//!     on its own: `/a/*` covers it, along with its siblings. That errs towards removing
//!     too much, never too little.
//!   - Where redactions overlap, removal beats replacement, a redaction of a value beats
//!     those of fields inside it (the inner ones are reported as matching nothing), and of
//!     two replacements of the same value the one listed last wins. Duplicate member names
//!     are all redacted, whichever one a later parser would keep.
//!
//! # Failing closed
//!
//! A JSON pointer redaction on a body that is not JSON (its content type says otherwise,
//! it does not parse, is truncated, or is not UTF-8) is an error,
//! [`RedactError::BodyNotJson`]: the host cannot promise the field is gone, so it must deny
//! rather than pass the body on. A missing or empty body has nothing to redact and is fine.
//! A body whose content type is missing, `text/plain`, or not a `type/subtype` media type
//! at all is parsed to find out: HAR captures record JSON bodies with `mimeType` `text`,
//! `null` or empty.
//!
//! # JSON bodies are edited in place
//!
//! The body is not parsed into a `serde_json::Value` and written back. That would reorder
//! keys (this crate builds `serde_json` without `preserve_order`), round large integers,
//! rewrite escapes and number forms, and drop formatting, changing fields no policy asked
//! to change. Instead one validating pass over the bytes (the strict RFC 8259 grammar
//! `serde_json` enforces; like JavaScript it lets lone UTF-16 surrogate escapes through,
//! and it accepts numbers of any size, passing them on as written) finds the byte ranges of the targeted values, descending only into
//! containers a pointer can still match and skipping everything else without recursion or
//! allocation; the output is then written once, splicing the ranges. Every byte outside a
//! redacted value is kept, and when nothing matches the body is left untouched.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::Serialize;

use crate::decision::{Action, Mask, Redaction, Target};
use crate::detect::{Detector, DetectorSet, Finding};
use crate::exchange::{Request, Response, is_json_content_type};
use crate::mask::{self, PseudonymKey};

/// The most segments a JSON pointer may have. Deeper pointers are refused: the walk that
/// follows a pointer recurses once per segment.
pub const MAX_POINTER_SEGMENTS: usize = 128;

/// How deep the walk descends for `json-name` and `detected` targets, which look at every
/// value. A body nested deeper is refused (as `serde_json` refuses it by default): the walk
/// recurses once per level, and a value it did not look at cannot be shown to be clean.
pub const MAX_SCAN_DEPTH: usize = 128;

/// Why redactions could not be applied. Any of these must make the host deny: the fields
/// may still be there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedactError {
    /// A JSON pointer is malformed.
    #[error("JSON pointer `{pointer}` is invalid: {reason}")]
    InvalidPointer {
        /// The pointer as the policy wrote it.
        pointer: String,
        /// What is wrong and how to write it.
        reason: String,
    },
    /// A header replacement cannot be written into a header value.
    #[error("cannot replace header `{name}`: {reason}")]
    InvalidHeaderValue {
        /// The header's name.
        name: String,
        /// What is wrong with the replacement (never the value itself).
        reason: String,
    },
    /// A JSON pointer redaction targets a body that is not JSON.
    #[error(
        "cannot apply JSON pointer redaction `{pointer}`: {reason}; refusing to pass the body \
         on, since the field cannot be shown to be removed"
    )]
    BodyNotJson {
        /// The first JSON pointer among the redactions.
        pointer: String,
        /// Why the body is not usable JSON.
        reason: String,
    },
    /// A `detected` target on a body that cannot be scanned as text.
    #[error(
        "cannot scan the body for `{target}`: {reason}; refusing to pass the body on, since a \
         detected value cannot be shown to be removed"
    )]
    BodyNotText {
        /// The first `detected` target among the redactions.
        target: String,
        /// Why the body cannot be scanned.
        reason: String,
    },
    /// A `detected` target names no detector.
    #[error("`{name}` is not a detector (expected one of: card-number, iban, email, phone, jwt, secret)")]
    UnknownDetector {
        /// The name as the policy wrote it.
        name: String,
    },
    /// A pseudonym mask was asked for, and no key is configured.
    #[error(
        "a redaction of `{target}` asks for a pseudonym mask, but no pseudonym key is configured; set \
         `[redaction] pseudonym_key_env` (or `pseudonym_key_file`) to a key of at least 16 bytes"
    )]
    NoPseudonymKey {
        /// The redaction's target.
        target: String,
    },
    /// The request URI could not be rebuilt after redacting its query.
    #[error("cannot rebuild the request URI after redacting its query: {reason}")]
    Uri {
        /// The `http` crate's complaint.
        reason: String,
    },
}

/// What applying a set of redactions did, for the audit log. Holds field paths, never
/// values.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Applied {
    /// Each field changed: headers, then query parameters, then body paths in document
    /// order.
    pub changes: Vec<Change>,
    /// Each redaction that changed nothing, with why.
    pub ignored: Vec<Ignored>,
    /// Whether the body's bytes were rewritten.
    pub body_changed: bool,
}

impl Applied {
    /// Whether nothing was changed.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The changed fields as written in the audit log: `header:x-api-key`, `query:token`,
    /// `json:/customers/0/phone`.
    pub fn fields(&self) -> Vec<String> {
        self.changes.iter().map(|c| c.field.to_string()).collect()
    }
}

/// One field that was changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The concrete field: a header name (lower-case), a query key, or a JSON pointer with
    /// every `*` resolved (`/customers/0/phone`; array indices as in the original body); a
    /// `json-name` target is reported by the pointers it changed. A detector's finding in a
    /// text (non-JSON) body is reported as `detected:<name>`, since text has no fields.
    pub field: Target,
    /// Whether it was removed or replaced.
    pub effect: Effect,
    /// The index, in the slice given, of the redaction that did it.
    pub redaction: usize,
}

/// What happened to a changed field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// The field is gone (for the whole JSON document: it is now `null`).
    Removed,
    /// The field's value was replaced.
    Replaced,
    /// The field's value was masked (or, for a detector, the spans it found in it).
    Masked,
}

/// A redaction that changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ignored {
    /// Its index in the slice given.
    pub redaction: usize,
    /// Its target, as given.
    pub target: Target,
    /// Why it changed nothing.
    pub reason: IgnoreReason,
}

/// Why a redaction changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IgnoreReason {
    /// No field matched, or only fields inside a value another redaction removed or
    /// replaced.
    NoMatch,
    /// A JSON pointer, and the message has no body (or an empty one).
    NoBody,
    /// A query parameter target on a response, which has no query.
    QueryInResponse,
}

/// Applies `redactions` to `request` in place: headers, query pairs and a JSON body, then
/// fixes `content-length` if the body changed. On error the request is left as it was.
pub fn apply_to_request(request: &mut Request, redactions: &[Redaction]) -> Result<Applied, RedactError> {
    let plan = Plan::compile(redactions, Direction::Request)?;
    let mut tally = plan.tally();
    let body = plan.body(request.body.as_ref().map(|b| BodyView::of(b, &request.headers)), &mut tally)?;
    plan.headers(&mut Pairs::headers(&mut request.headers), &mut tally)?;
    plan.query(&mut Pairs::query(&mut request.query), &mut tally)?;
    if let (Some(bytes), Some(current)) = (body, request.body.as_mut()) {
        fix_content_length(&mut request.headers, bytes.len());
        current.bytes = bytes;
    }
    Ok(plan.finish(tally))
}

/// Applies `redactions` to `response` in place: headers and a JSON body (query targets are
/// reported as ignored), then fixes `content-length` if the body changed. On error the
/// response is left as it was.
pub fn apply_to_response(response: &mut Response, redactions: &[Redaction]) -> Result<Applied, RedactError> {
    let plan = Plan::compile(redactions, Direction::Response)?;
    let mut tally = plan.tally();
    let body = plan.body(response.body.as_ref().map(|b| BodyView::of(b, &response.headers)), &mut tally)?;
    plan.headers(&mut Pairs::headers(&mut response.headers), &mut tally)?;
    if let (Some(bytes), Some(current)) = (body, response.body.as_mut()) {
        fix_content_length(&mut response.headers, bytes.len());
        current.bytes = bytes;
    }
    Ok(plan.finish(tally))
}

/// Sets the first `content-length` header to `len` and drops any others (differing
/// repeats are a request-smuggling vector). Adds none if there was none.
fn fix_content_length(headers: &mut Vec<(String, String)>, len: usize) {
    let mut seen = false;
    headers.retain_mut(|(name, value)| {
        if !name.eq_ignore_ascii_case("content-length") {
            return true;
        }
        if seen {
            return false;
        }
        seen = true;
        *value = len.to_string();
        true
    });
}

// ---------------------------------------------------------------------------------------
// The plan: redactions validated and grouped once, then applied to any representation.
// ---------------------------------------------------------------------------------------

/// Which message the redactions apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Request,
    Response,
}

/// Name/value fields (headers or query pairs) in whatever form a message holds them. The
/// plan decides what to do; implementations only find and edit.
pub(crate) trait Fields {
    /// Removes every field named `name`; whether any was there.
    fn remove_all(&mut self, name: &str) -> bool;
    /// Sets every field named `name` to `value`, keeping repeats; whether any was there.
    fn replace_all(&mut self, name: &str, value: &str) -> Result<bool, RedactError>;
    /// Visits every field in order, with its name and (decoded) value; `edit` says whether
    /// to keep, remove or rewrite it. For masks and detectors, which depend on the value.
    fn edit_each(
        &mut self,
        edit: &mut dyn FnMut(&str, &str) -> Result<ValueEdit, RedactError>,
    ) -> Result<(), RedactError>;
}

/// What [`Fields::edit_each`] does with one field.
pub(crate) enum ValueEdit {
    /// Leave it.
    Keep,
    /// Remove the field.
    Remove,
    /// Give it this value.
    Set(String),
}

/// What a redaction does, borrowed from it.
#[derive(Debug, Clone, Copy)]
enum Op<'r> {
    Remove,
    Replace(&'r str),
    Mask(Mask),
}

impl<'r> Op<'r> {
    fn of(action: &'r Action) -> Self {
        match action {
            Action::Remove => Op::Remove,
            Action::Replace(text) => Op::Replace(text),
            Action::Mask(mask) => Op::Mask(*mask),
        }
    }

    fn effect(self) -> Effect {
        match self {
            Op::Remove => Effect::Removed,
            Op::Replace(_) => Effect::Replaced,
            Op::Mask(_) => Effect::Masked,
        }
    }
}

/// A body as the applier needs to see it.
pub(crate) struct BodyView<'a> {
    pub bytes: &'a [u8],
    pub content_type: Option<&'a str>,
    pub content_encoding: Option<&'a str>,
    pub truncated: bool,
}

impl<'a> BodyView<'a> {
    fn of(body: &'a crate::exchange::Body, headers: &'a [(String, String)]) -> Self {
        let header = |name: &str| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
        BodyView {
            bytes: &body.bytes,
            content_type: body.content_type.as_deref().or_else(|| header("content-type")),
            content_encoding: header("content-encoding"),
            truncated: body.truncated,
        }
    }
}

/// The final action on one header name or query key, after merging every redaction of it.
struct FieldOp<'r> {
    name: &'r str,
    op: Op<'r>,
    winner: usize,
    all: Vec<usize>,
}

/// The `detected` targets: which detectors run, and what each does with its findings.
#[derive(Default)]
struct Detect<'r> {
    set: DetectorSet,
    /// By position in [`Detector::ALL`]: the merged op (removal beats, else the last wins).
    ops: [Option<FieldOp<'r>>; 6],
    /// The first `detected` target, for errors.
    first: &'r str,
}

/// What rewriting one value's findings came to.
enum Rewritten {
    /// The value is nothing but one finding whose detector removes: remove the field.
    RemoveWhole,
    /// The value with its findings replaced, removed or masked.
    Text(String),
}

impl<'r> Detect<'r> {
    fn add(&mut self, detector: Detector, op: Op<'r>, index: usize, name: &'r str) {
        if self.set.is_empty() {
            self.first = name;
        }
        self.set.insert(detector);
        let at = Detector::ALL.iter().position(|d| *d == detector).unwrap_or(0);
        match &mut self.ops[at] {
            Some(existing) => {
                existing.all.push(index);
                if !matches!(existing.op, Op::Remove) {
                    existing.op = op;
                    existing.winner = index;
                }
            }
            slot @ None => *slot = Some(FieldOp { name, op, winner: index, all: vec![index] }),
        }
    }

    fn op(&self, detector: Detector) -> Option<&FieldOp<'r>> {
        let at = Detector::ALL.iter().position(|d| *d == detector)?;
        self.ops[at].as_ref()
    }

    /// Applies the ops of `findings` (sorted, non-overlapping) to `value`, marking their
    /// redactions used and calling `report` once per distinct redaction that changed it.
    /// `whole` allows removing the whole field when one removing finding is all of it.
    fn rewrite(
        &self,
        value: &str,
        findings: &[Finding],
        key: Option<&PseudonymKey>,
        whole: bool,
        used: &mut [bool],
        mut report: impl FnMut(usize, Effect),
    ) -> Rewritten {
        let mut reported: [bool; 6] = [false; 6];
        let mut mark = |op: &FieldOp<'_>, detector: Detector, effect: Effect| {
            let at = Detector::ALL.iter().position(|d| *d == detector).unwrap_or(0);
            if !reported[at] {
                reported[at] = true;
                for &index in &op.all {
                    used[index] = true;
                }
                report(op.winner, effect);
            }
        };
        if let [only] = findings
            && whole
            && only.start == 0
            && only.end == value.len()
            && let Some(op) = self.op(only.detector)
            && matches!(op.op, Op::Remove)
        {
            mark(op, only.detector, Effect::Removed);
            return Rewritten::RemoveWhole;
        }
        let mut out = String::with_capacity(value.len());
        let mut at = 0;
        for finding in findings {
            let Some(op) = self.op(finding.detector) else { continue };
            let (Some(before), Some(span)) = (value.get(at..finding.start), value.get(finding.start..finding.end))
            else {
                continue;
            };
            out.push_str(before);
            match op.op {
                Op::Remove => {}
                Op::Replace(text) => out.push_str(text),
                Op::Mask(m) => out.push_str(&mask::apply(span, m, key)),
            }
            at = finding.end;
            mark(op, finding.detector, op.op.effect());
        }
        out.push_str(&value[at..]);
        Rewritten::Text(out)
    }
}

/// Redactions checked and grouped, ready to apply.
pub(crate) struct Plan<'r> {
    redactions: &'r [Redaction],
    direction: Direction,
    headers: Vec<FieldOp<'r>>,
    query: Vec<FieldOp<'r>>,
    json: Option<Node>,
    /// The `json-name` targets: a node whose literals match member names at any depth.
    names: Option<Node>,
    detect: Option<Detect<'r>>,
    /// The pseudonym key, when a redaction asks for a pseudonym.
    key: Option<PseudonymKey>,
    first_pointer: Option<String>,
}

/// What has been done so far.
pub(crate) struct Tally {
    used: Vec<bool>,
    no_body: bool,
    headers: Vec<Change>,
    query: Vec<Change>,
    body: Vec<Change>,
}

impl<'r> Plan<'r> {
    /// Validates every redaction (pointers, header replacements) and groups them.
    pub(crate) fn compile(redactions: &'r [Redaction], direction: Direction) -> Result<Self, RedactError> {
        let mut plan = Plan {
            redactions,
            direction,
            headers: Vec::new(),
            query: Vec::new(),
            json: None,
            names: None,
            detect: None,
            key: None,
            first_pointer: None,
        };
        for (index, redaction) in redactions.iter().enumerate() {
            let op = Op::of(&redaction.action);
            if matches!(op, Op::Mask(Mask::Pseudonym)) && plan.key.is_none() {
                plan.key = Some(
                    mask::pseudonym_key()
                        .ok_or_else(|| RedactError::NoPseudonymKey { target: redaction.target.to_string() })?,
                );
            }
            match &redaction.target {
                Target::Header(name) => {
                    if let Op::Replace(value) = op {
                        check_header_value(name, value)?;
                    }
                    merge_field(&mut plan.headers, name, op, index, true);
                }
                Target::Query(name) => {
                    if direction == Direction::Request {
                        merge_field(&mut plan.query, name, op, index, false);
                    }
                }
                Target::JsonPointer(pointer) => {
                    let segments = parse_pointer(pointer)?;
                    plan.first_pointer.get_or_insert_with(|| pointer.clone());
                    plan.json.get_or_insert_with(Node::default).insert(&segments, op, index);
                }
                Target::JsonName(name) => {
                    plan.first_pointer.get_or_insert_with(|| format!("..{name}"));
                    plan.names.get_or_insert_with(Node::default).insert_name(name, op, index);
                }
                Target::Detected(name) => {
                    let detector =
                        Detector::from_name(name).ok_or_else(|| RedactError::UnknownDetector { name: name.clone() })?;
                    // The text may land in a header value.
                    if let Op::Replace(value) = op {
                        check_header_value(&redaction.target.to_string(), value)?;
                    }
                    plan.detect.get_or_insert_with(Detect::default).add(detector, op, index, name);
                }
            }
        }
        Ok(plan)
    }

    /// A fresh record of what was done.
    pub(crate) fn tally(&self) -> Tally {
        Tally {
            used: vec![false; self.redactions.len()],
            no_body: false,
            headers: Vec::new(),
            query: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Whether any redaction targets the query (detectors scan query values in requests).
    pub(crate) fn has_query(&self) -> bool {
        !self.query.is_empty() || (self.detect.is_some() && self.direction == Direction::Request)
    }

    /// Applies the header redactions, then the detectors to the header values left.
    pub(crate) fn headers(&self, fields: &mut impl Fields, tally: &mut Tally) -> Result<(), RedactError> {
        let key = self.key.as_ref();
        let target = |name: &str| Target::Header(name.to_ascii_lowercase());
        apply_fields(&self.headers, fields, tally, true, key, target, |t| &mut t.headers)?;
        match &self.detect {
            Some(detect) => detect_fields(detect, fields, tally, key, target, |t| &mut t.headers),
            None => Ok(()),
        }
    }

    /// Applies the query redactions, then the detectors to the query values left (none in a
    /// response plan).
    pub(crate) fn query(&self, fields: &mut impl Fields, tally: &mut Tally) -> Result<(), RedactError> {
        let key = self.key.as_ref();
        let target = |name: &str| Target::Query(name.to_owned());
        apply_fields(&self.query, fields, tally, false, key, target, |t| &mut t.query)?;
        match &self.detect {
            Some(detect) if self.direction == Direction::Request => {
                detect_fields(detect, fields, tally, key, target, |t| &mut t.query)
            }
            _ => Ok(()),
        }
    }

    /// Applies the JSON pointer redactions to a body; the new bytes if anything changed.
    /// Errors when there are JSON redactions and the body is not JSON.
    pub(crate) fn body(&self, body: Option<BodyView<'_>>, tally: &mut Tally) -> Result<Option<Vec<u8>>, RedactError> {
        if self.json.is_none() && self.names.is_none() {
            return match &self.detect {
                Some(detect) => self.scan_body(detect, body, tally),
                None => Ok(None),
            };
        }
        let root = self.json.as_ref().unwrap_or(&EMPTY);
        // Only whitespace carries no field; but a truncated body's rest is unknown, so it
        // goes on to the truncation check below (found by fuzz/fuzz_targets/redact.rs).
        let Some(body) = body.filter(|b| b.truncated || !b.bytes.iter().all(|c| is_ws(*c))) else {
            tally.no_body = true;
            return Ok(None);
        };
        let fail = |reason: String| RedactError::BodyNotJson {
            pointer: self.first_pointer.clone().unwrap_or_default(),
            reason,
        };
        if body.truncated {
            return Err(fail(
                "the body was truncated at the host's size cap, so the rest of it cannot be checked".into(),
            ));
        }
        let described = match body.content_type {
            Some(ct) if !is_json_content_type(ct) && !is_vague_content_type(ct) => {
                return Err(fail(format!("the body's content type is `{ct}`, not JSON")));
            }
            Some(ct) => format!("content type `{ct}`"),
            None => "no content type".to_owned(),
        };
        let hint = match body.content_encoding {
            Some(enc) if !enc.trim().eq_ignore_ascii_case("identity") => {
                format!("; it is content-encoded (`{enc}`) and must be decoded before redaction")
            }
            _ => String::new(),
        };
        let text = std::str::from_utf8(body.bytes)
            .map_err(|e| fail(format!("the body ({described}) is not UTF-8 at byte {}{hint}", e.valid_up_to())))?;
        let mut walker = self.walker(text, &mut tally.used, &mut tally.body);
        let edits = walker
            .document(root)
            .map_err(|bad| fail(format!("the body ({described}) is not valid JSON: {bad}{hint}")))?;
        Ok(splice(text.as_bytes(), &edits))
    }

    /// A walker over `text` with this plan's name and detector targets.
    fn walker<'b, 't>(
        &'b self,
        text: &'b str,
        used: &'t mut [bool],
        changes: &'t mut Vec<Change>,
    ) -> Walker<'b, 'b, 't> {
        let mut walker = Walker::new(text, used, changes);
        walker.names = self.names.as_ref();
        walker.detect = self.detect.as_ref();
        walker.key = self.key.as_ref();
        walker.everywhere = self.names.is_some() || self.detect.is_some();
        walker
    }

    /// Runs the detectors over a body when no JSON target asks for JSON: a JSON body (by its
    /// content type, or a vague one that parses) is scanned value by value, any other UTF-8
    /// body as text. A body that is truncated, content-encoded or not UTF-8 is refused.
    fn scan_body(
        &self,
        detect: &Detect<'_>,
        body: Option<BodyView<'_>>,
        tally: &mut Tally,
    ) -> Result<Option<Vec<u8>>, RedactError> {
        // As for pointers: only whitespace carries nothing, unless the rest was cut off.
        let Some(body) = body.filter(|b| b.truncated || !b.bytes.iter().all(|c| is_ws(*c))) else {
            tally.no_body = true;
            return Ok(None);
        };
        let fail = |reason: String| RedactError::BodyNotText { target: format!("detected:{}", detect.first), reason };
        if body.truncated {
            return Err(fail(
                "the body was truncated at the host's size cap, so the rest of it cannot be checked".into(),
            ));
        }
        if let Some(enc) = body.content_encoding.filter(|enc| !enc.trim().eq_ignore_ascii_case("identity")) {
            return Err(fail(format!("it is content-encoded (`{enc}`) and must be decoded before scanning")));
        }
        let text = std::str::from_utf8(body.bytes)
            .map_err(|e| fail(format!("the body is not UTF-8 text (at byte {})", e.valid_up_to())))?;
        let json = body.content_type.is_some_and(is_json_content_type);
        if json || body.content_type.is_none_or(is_vague_content_type) {
            let mut used = tally.used.clone();
            let mut changes = Vec::new();
            let mut walker = self.walker(text, &mut used, &mut changes);
            match walker.document(&EMPTY) {
                Ok(edits) => {
                    let out = splice(text.as_bytes(), &edits);
                    tally.used = used;
                    tally.body.extend(changes);
                    return Ok(out);
                }
                Err(bad) if json => return Err(fail(format!("the body is not valid JSON: {bad}"))),
                Err(_) => {}
            }
        }
        let findings = crate::detect::find(text, detect.set);
        if findings.is_empty() {
            return Ok(None);
        }
        let changes = &mut tally.body;
        let rewritten = detect.rewrite(text, &findings, self.key.as_ref(), false, &mut tally.used, |winner, effect| {
            let field = match &self.redactions[winner].target {
                Target::Detected(name) => Target::Detected(name.clone()),
                other => other.clone(),
            };
            changes.push(Change { field, effect, redaction: winner });
        });
        match rewritten {
            Rewritten::Text(out) => Ok(Some(out.into_bytes())),
            Rewritten::RemoveWhole => Ok(Some(Vec::new())),
        }
    }

    /// The report: changes in order, and every redaction that changed nothing.
    pub(crate) fn finish(&self, tally: Tally) -> Applied {
        let ignored = self
            .redactions
            .iter()
            .enumerate()
            .filter(|(index, _)| !tally.used[*index])
            .map(|(index, redaction)| Ignored {
                redaction: index,
                target: redaction.target.clone(),
                reason: match redaction.target {
                    Target::Query(_) if self.query.iter().all(|op| !op.all.contains(&index)) => {
                        IgnoreReason::QueryInResponse
                    }
                    Target::JsonPointer(_) | Target::JsonName(_) if tally.no_body => IgnoreReason::NoBody,
                    _ => IgnoreReason::NoMatch,
                },
            })
            .collect();
        let body_changed = !tally.body.is_empty();
        let mut changes = tally.headers;
        changes.extend(tally.query);
        changes.extend(tally.body);
        Applied { changes, ignored, body_changed }
    }
}

/// Folds one header or query redaction into the per-name ops: removal beats replacement,
/// and a later replacement beats an earlier one.
fn merge_field<'r>(ops: &mut Vec<FieldOp<'r>>, name: &'r str, new: Op<'r>, index: usize, ignore_case: bool) {
    let same = |op: &FieldOp<'_>| if ignore_case { op.name.eq_ignore_ascii_case(name) } else { op.name == name };
    match ops.iter_mut().find(|op| same(op)) {
        Some(op) => {
            op.all.push(index);
            if !matches!(op.op, Op::Remove) {
                op.op = new;
                op.winner = index;
            }
        }
        None => ops.push(FieldOp { name, op: new, winner: index, all: vec![index] }),
    }
}

fn apply_fields(
    ops: &[FieldOp<'_>],
    fields: &mut impl Fields,
    tally: &mut Tally,
    ignore_case: bool,
    key: Option<&PseudonymKey>,
    target: impl Fn(&str) -> Target,
    changes: impl Fn(&mut Tally) -> &mut Vec<Change>,
) -> Result<(), RedactError> {
    for op in ops {
        let hit = match op.op {
            Op::Remove => fields.remove_all(op.name),
            Op::Replace(value) => fields.replace_all(op.name, value)?,
            Op::Mask(m) => {
                let mut hit = false;
                fields.edit_each(&mut |name, value| {
                    let same = if ignore_case { name.eq_ignore_ascii_case(op.name) } else { name == op.name };
                    if !same {
                        return Ok(ValueEdit::Keep);
                    }
                    hit = true;
                    Ok(ValueEdit::Set(mask::apply(value, m, key)))
                })?;
                hit
            }
        };
        if hit {
            for &index in &op.all {
                tally.used[index] = true;
            }
            changes(tally).push(Change { field: target(op.name), effect: op.op.effect(), redaction: op.winner });
        }
    }
    Ok(())
}

/// Runs the detectors over every value of `fields`, rewriting what they find; a value that
/// is nothing but one finding of a removing detector loses its field.
fn detect_fields(
    detect: &Detect<'_>,
    fields: &mut impl Fields,
    tally: &mut Tally,
    key: Option<&PseudonymKey>,
    target: impl Fn(&str) -> Target,
    changes: impl Fn(&mut Tally) -> &mut Vec<Change>,
) -> Result<(), RedactError> {
    let mut findings = Vec::new();
    let mut found: Vec<Change> = Vec::new();
    let used = &mut tally.used;
    fields.edit_each(&mut |name, value| {
        crate::detect::find_into(value, detect.set, &mut findings);
        if findings.is_empty() {
            return Ok(ValueEdit::Keep);
        }
        let rewritten = detect.rewrite(value, &findings, key, true, used, |winner, effect| {
            let field = target(name);
            if !found.iter().any(|c| c.field == field && c.redaction == winner) {
                found.push(Change { field, effect, redaction: winner });
            }
        });
        Ok(match rewritten {
            Rewritten::RemoveWhole => ValueEdit::Remove,
            Rewritten::Text(text) => ValueEdit::Set(text),
        })
    })?;
    changes(tally).extend(found);
    Ok(())
}

/// Refuses replacements that are not valid header values (CR/LF would split the header).
fn check_header_value(name: &str, value: &str) -> Result<(), RedactError> {
    match value.bytes().position(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        None => Ok(()),
        Some(at) => Err(RedactError::InvalidHeaderValue {
            name: name.to_owned(),
            reason: format!(
                "the replacement has a control character at byte {at}; header values may not contain \
                 CR, LF or other controls"
            ),
        }),
    }
}

/// Whether a content type leaves the body's format open, so the bytes decide: `text/plain`,
/// or a value that is not a `type/subtype` media type at all (HAR captures record `text`,
/// `null` or nothing for JSON bodies).
fn is_vague_content_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    !essence.contains('/') || essence.eq_ignore_ascii_case("text/plain")
}

/// Header (case-insensitive) or query (exact) pairs of the normalised model.
struct Pairs<'a> {
    pairs: &'a mut Vec<(String, String)>,
    ignore_case: bool,
}

impl<'a> Pairs<'a> {
    fn headers(pairs: &'a mut Vec<(String, String)>) -> Self {
        Pairs { pairs, ignore_case: true }
    }
    fn query(pairs: &'a mut Vec<(String, String)>) -> Self {
        Pairs { pairs, ignore_case: false }
    }
    fn is(&self, have: &str, want: &str) -> bool {
        if self.ignore_case { have.eq_ignore_ascii_case(want) } else { have == want }
    }
}

impl Fields for Pairs<'_> {
    fn remove_all(&mut self, name: &str) -> bool {
        let before = self.pairs.len();
        let ignore_case = self.ignore_case;
        self.pairs.retain(|(n, _)| if ignore_case { !n.eq_ignore_ascii_case(name) } else { n != name });
        self.pairs.len() != before
    }

    fn replace_all(&mut self, name: &str, value: &str) -> Result<bool, RedactError> {
        let mut hit = false;
        for i in 0..self.pairs.len() {
            if self.is(&self.pairs[i].0, name) {
                value.clone_into(&mut self.pairs[i].1);
                hit = true;
            }
        }
        Ok(hit)
    }

    fn edit_each(
        &mut self,
        edit: &mut dyn FnMut(&str, &str) -> Result<ValueEdit, RedactError>,
    ) -> Result<(), RedactError> {
        let mut i = 0;
        while i < self.pairs.len() {
            let (name, value) = &self.pairs[i];
            match edit(name, value)? {
                ValueEdit::Keep => i += 1,
                ValueEdit::Remove => {
                    self.pairs.remove(i);
                }
                ValueEdit::Set(value) => {
                    self.pairs[i].1 = value;
                    i += 1;
                }
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// JSON pointers: a trie of segments
// ---------------------------------------------------------------------------------------

/// One pointer segment, unescaped.
#[derive(Debug, PartialEq, Eq)]
enum Segment {
    /// `*`: every element or member.
    Any,
    /// A member name, or an array index when it is one.
    Key(String),
}

/// Splits and unescapes a pointer, refusing malformed ones with a reason that says how to
/// write it.
fn parse_pointer(pointer: &str) -> Result<Vec<Segment>, RedactError> {
    let invalid = |reason: String| RedactError::InvalidPointer { pointer: pointer.to_owned(), reason };
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        let suggestion = format!("/{}", pointer.trim_start_matches(['$', '.']).replace('.', "/"));
        return Err(invalid(format!(
            "a JSON pointer starts with `/` (did you mean `{suggestion}`?), or is empty for the whole body"
        )));
    };
    let mut segments = Vec::new();
    for raw in rest.split('/') {
        if segments.len() == MAX_POINTER_SEGMENTS {
            return Err(invalid(format!("it has more than {MAX_POINTER_SEGMENTS} segments")));
        }
        if raw == "*" {
            segments.push(Segment::Any);
            continue;
        }
        let mut key = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c != '~' {
                key.push(c);
                continue;
            }
            match chars.next() {
                Some('0') => key.push('~'),
                Some('1') => key.push('/'),
                _ => {
                    return Err(invalid(format!(
                        "segment `{raw}` has a `~` not followed by `0` or `1`; write `~0` for a literal `~` \
                         and `~1` for `/`"
                    )));
                }
            }
        }
        segments.push(Segment::Key(key));
    }
    Ok(segments)
}

/// The array index a segment names: `0` or digits without a leading zero (RFC 6901).
fn array_index(key: &str) -> Option<usize> {
    let digits = key.bytes().all(|b| b.is_ascii_digit());
    if key.is_empty() || !digits || (key.len() > 1 && key.starts_with('0')) {
        return None;
    }
    key.parse().ok()
}

/// What to do with a value a pointer ends at.
#[derive(Debug)]
struct JsonAction {
    /// Remove it (the whole document becomes `null`).
    remove: bool,
    /// For a replacement, the text as a JSON string literal.
    text: String,
    /// For a mask, the mask (then `text` is unused).
    mask: Option<Mask>,
    /// The redaction that decided it.
    winner: usize,
}

/// A node of the pointer trie: the action of pointers that end here, and the segments that
/// continue.
#[derive(Debug, Default)]
struct Node {
    action: Option<JsonAction>,
    /// Every redaction whose pointer ends here.
    ends: Vec<usize>,
    literals: Vec<Literal>,
    wildcard: Option<Box<Node>>,
}

#[derive(Debug)]
struct Literal {
    key: String,
    index: Option<usize>,
    node: Node,
}

/// Placeholder for unused slots of [`Matches`].
static EMPTY: Node = Node { action: None, ends: Vec::new(), literals: Vec::new(), wildcard: None };

impl Node {
    /// Adds a `json-name` target: a literal that never matches an array index.
    fn insert_name(&mut self, name: &str, op: Op<'_>, index: usize) {
        if !self.literals.iter().any(|l| l.key == name) {
            self.literals.push(Literal { key: name.to_owned(), index: None, node: Node::default() });
        }
        self.insert(&[Segment::Key(name.to_owned())], op, index);
    }

    fn insert(&mut self, segments: &[Segment], op: Op<'_>, index: usize) {
        let mut node = self;
        for segment in segments {
            node = match segment {
                Segment::Any => node.wildcard.get_or_insert_with(Box::default),
                Segment::Key(key) => {
                    let at = if let Some(at) = node.literals.iter().position(|l| l.key == *key) {
                        at
                    } else {
                        let index = array_index(key);
                        node.literals.push(Literal { key: key.clone(), index, node: Node::default() });
                        node.literals.len() - 1
                    };
                    &mut node.literals[at].node
                }
            };
        }
        node.ends.push(index);
        let removing = node.action.as_ref().is_some_and(|a| a.remove);
        if !removing {
            node.action = Some(match op {
                Op::Remove => JsonAction { remove: true, text: String::new(), mask: None, winner: index },
                Op::Replace(text) => JsonAction {
                    remove: false,
                    text: serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into()),
                    mask: None,
                    winner: index,
                },
                Op::Mask(mask) => JsonAction { remove: false, text: String::new(), mask: Some(mask), winner: index },
            });
        }
    }

    fn has_children(&self) -> bool {
        !self.literals.is_empty() || self.wildcard.is_some()
    }
}

/// The trie nodes a value matches. Almost always one, so the first few live inline and
/// matching a member allocates nothing.
struct Matches<'n> {
    few: [&'n Node; 4],
    len: usize,
    more: Vec<&'n Node>,
}

impl<'n> Matches<'n> {
    fn new() -> Self {
        Matches { few: [&EMPTY; 4], len: 0, more: Vec::new() }
    }
    fn push(&mut self, node: &'n Node) {
        if self.len < self.few.len() {
            self.few[self.len] = node;
        } else {
            if self.more.is_empty() {
                self.more.extend_from_slice(&self.few);
            }
            self.more.push(node);
        }
        self.len += 1;
    }
    fn as_slice(&self) -> &[&'n Node] {
        if self.len <= self.few.len() { &self.few[..self.len] } else { &self.more }
    }
}

// ---------------------------------------------------------------------------------------
// JSON: one validating pass that records the byte ranges to change
// ---------------------------------------------------------------------------------------

/// Where and why the bytes are not JSON.
#[derive(Debug)]
struct Bad {
    at: usize,
    what: &'static str,
}

impl std::fmt::Display for Bad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

/// Replace bytes `start..end` with `text` (empty to delete).
#[derive(Debug)]
struct Edit<'n> {
    start: usize,
    end: usize,
    text: Cow<'n, str>,
}

/// One step of the path to the current value, for the report.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// A member name: its bytes between the quotes, and whether it has escapes.
    Key {
        start: usize,
        end: usize,
        escaped: bool,
    },
    Index(usize),
}

/// What became of one element of a container.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    Kept,
    Removed,
}

/// Tracks removals in one object or array so commas stay right: a removed element takes
/// the separator after it, unless it is last, when it takes the one before it.
struct Container {
    /// Start of a removed element whose deletion waits for the next element's start.
    pending: Option<usize>,
    /// In the trailing run of removed elements: where the run starts, and how many edits
    /// existed when it started (deletions inside the run are merged at the close).
    run: Option<(usize, usize)>,
    last_kept_end: Option<usize>,
    last_end: usize,
}

impl Container {
    fn new() -> Self {
        Container { pending: None, run: None, last_kept_end: None, last_end: 0 }
    }

    fn begin(&mut self, start: usize, edits: &mut Vec<Edit<'_>>) {
        if let Some(pending) = self.pending.take() {
            edits.push(Edit { start: pending, end: start, text: Cow::Borrowed("") });
        }
    }

    fn end(&mut self, fate: Fate, start: usize, end: usize, edits: &[Edit<'_>]) {
        match fate {
            Fate::Removed => {
                self.run.get_or_insert((start, edits.len()));
                self.pending = Some(start);
                self.last_end = end;
            }
            Fate::Kept => {
                self.run = None;
                self.last_kept_end = Some(end);
            }
        }
    }

    fn close(self, edits: &mut Vec<Edit<'_>>) {
        if self.pending.is_none() {
            return;
        }
        if let Some((run_start, mark)) = self.run {
            edits.truncate(mark);
            let start = self.last_kept_end.unwrap_or(run_start);
            edits.push(Edit { start, end: self.last_end, text: Cow::Borrowed("") });
        }
    }
}

/// Bytes that end the fast scan of a string: the quote, backslash and control characters.
static STRING_STOP: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        table[i] = true;
        i += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

/// The pass over one document.
struct Walker<'b, 'n, 't> {
    text: &'b str,
    b: &'b [u8],
    i: usize,
    /// Closing brackets of the containers being skipped.
    stack: Vec<u8>,
    edits: Vec<Edit<'n>>,
    path: Vec<Step>,
    used: &'t mut [bool],
    changes: &'t mut Vec<Change>,
    /// The `json-name` targets, matched in every object.
    names: Option<&'n Node>,
    /// The detectors, run over every string (and number, for card numbers).
    detect: Option<&'n Detect<'n>>,
    /// The pseudonym key, when a redaction asks for pseudonyms.
    key: Option<&'n PseudonymKey>,
    /// Whether to look at every value (for names or detectors), not only where pointers go.
    everywhere: bool,
    /// A reused buffer of detector findings.
    findings: Vec<Finding>,
}

impl<'b, 'n, 't> Walker<'b, 'n, 't> {
    fn new(text: &'b str, used: &'t mut [bool], changes: &'t mut Vec<Change>) -> Self {
        Walker {
            text,
            b: text.as_bytes(),
            i: 0,
            stack: Vec::new(),
            edits: Vec::new(),
            path: Vec::new(),
            used,
            changes,
            names: None,
            detect: None,
            key: None,
            everywhere: false,
            findings: Vec::new(),
        }
    }

    fn bad(&self, what: &'static str) -> Bad {
        Bad { at: self.i, what }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while self.i < self.b.len() && is_ws(self.b[self.i]) {
            self.i += 1;
        }
    }

    /// Walks the whole document; the edits to make, in order.
    fn document(&mut self, root: &'n Node) -> Result<Vec<Edit<'n>>, Bad> {
        self.ws();
        let start = self.i;
        if self.element(&[root])? == Fate::Removed {
            self.edits.push(Edit { start, end: self.i, text: Cow::Borrowed("null") });
        }
        self.ws();
        if self.i != self.b.len() {
            return Err(self.bad("unexpected characters after the JSON value"));
        }
        Ok(std::mem::take(&mut self.edits))
    }

    /// Handles one value (the cursor at its first byte) that `nodes` match: applies the
    /// strongest action, or descends into it if a pointer continues, or skips it.
    fn element(&mut self, nodes: &[&'n Node]) -> Result<Fate, Bad> {
        let mut action: Option<&'n JsonAction> = None;
        let mut descend = false;
        for node in nodes {
            if let Some(a) = &node.action {
                action = Some(match action {
                    Some(b) if b.remove || (!a.remove && b.winner > a.winner) => b,
                    _ => a,
                });
            }
            descend |= node.has_children();
        }
        if let Some(action) = action {
            for node in nodes.iter().filter(|n| n.action.is_some()) {
                for &index in &node.ends {
                    self.used[index] = true;
                }
            }
            let start = self.i;
            let text = if let Some(mask) = action.mask {
                Cow::Owned(self.masked_value(mask)?)
            } else {
                self.skip_value()?;
                Cow::Borrowed(action.text.as_str())
            };
            let field = Target::JsonPointer(self.pointer());
            let effect = match (action.remove, action.mask) {
                (true, _) => Effect::Removed,
                (false, Some(_)) => Effect::Masked,
                (false, None) => Effect::Replaced,
            };
            self.changes.push(Change { field, effect, redaction: action.winner });
            if action.remove {
                return Ok(Fate::Removed);
            }
            self.edits.push(Edit { start, end: self.i, text });
            return Ok(Fate::Kept);
        }
        let everywhere = self.everywhere;
        if everywhere && matches!(self.peek(), Some(b'{' | b'[')) && self.path.len() >= MAX_SCAN_DEPTH {
            return Err(self.bad("nested deeper than 128 levels, too deep to scan for names or detected values"));
        }
        match self.peek() {
            Some(b'{') if descend || everywhere => self.object(nodes)?,
            Some(b'[') if descend || everywhere => self.array(nodes)?,
            Some(b'"') if self.detect.is_some() => return self.detect_string(),
            Some(b'-' | b'0'..=b'9') if self.detect.is_some_and(|d| d.set.contains(Detector::CardNumber)) => {
                return self.detect_number();
            }
            _ => self.skip_value()?,
        }
        Ok(Fate::Kept)
    }

    /// The value at the cursor under `mask`, as a JSON string literal; the cursor moves past
    /// it. Strings are masked decoded, numbers as written; other values become `"****"` (a
    /// fixed-length mask's own run of `*`, or the pseudonym of their JSON text).
    fn masked_value(&mut self, mask: Mask) -> Result<String, Bad> {
        let key = self.key;
        let start = self.i;
        let text = self.text;
        let masked = match self.peek() {
            Some(b'"') => {
                let escaped = self.string()?;
                let raw = &text[start + 1..self.i - 1];
                let value: Cow<'_, str> = if escaped { Cow::Owned(unescape(raw)) } else { Cow::Borrowed(raw) };
                mask::apply(&value, mask, key)
            }
            Some(b'-' | b'0'..=b'9') => {
                self.number()?;
                mask::apply(&text[start..self.i], mask, key)
            }
            _ => {
                self.skip_value()?;
                match mask {
                    Mask::Pseudonym => mask::apply(&text[start..self.i], mask, key),
                    Mask::FixedLength(_) => mask::apply("", mask, key),
                    Mask::KeepLast(_) | Mask::KeepEmailDomain => mask::NON_SCALAR.to_owned(),
                }
            }
        };
        Ok(serde_json::to_string(&masked).unwrap_or_else(|_| "\"****\"".into()))
    }

    /// Runs the detectors over the string at the cursor; the cursor moves past it.
    fn detect_string(&mut self) -> Result<Fate, Bad> {
        let start = self.i;
        let escaped = self.string()?;
        let text = self.text;
        let raw = &text[start + 1..self.i - 1];
        let value: Cow<'_, str> = if escaped { Cow::Owned(unescape(raw)) } else { Cow::Borrowed(raw) };
        Ok(self.rewrite_found(&value, start, None))
    }

    /// Runs the card-number detector over the number at the cursor.
    fn detect_number(&mut self) -> Result<Fate, Bad> {
        let start = self.i;
        self.number()?;
        let text = self.text;
        Ok(self.rewrite_found(&text[start..self.i], start, Some(DetectorSet::of(&[Detector::CardNumber]))))
    }

    /// Rewrites the value `value` (bytes `start..self.i` of the body) by the detectors'
    /// findings in it.
    fn rewrite_found(&mut self, value: &str, start: usize, only: Option<DetectorSet>) -> Fate {
        let (Some(detect), key) = (self.detect, self.key) else { return Fate::Kept };
        let mut findings = std::mem::take(&mut self.findings);
        crate::detect::find_into(value, only.unwrap_or(detect.set), &mut findings);
        if findings.is_empty() {
            self.findings = findings;
            return Fate::Kept;
        }
        let mut winners: Vec<(usize, Effect)> = Vec::new();
        let rewritten =
            detect.rewrite(value, &findings, key, true, self.used, |winner, effect| winners.push((winner, effect)));
        self.findings = findings;
        if winners.is_empty() {
            return Fate::Kept;
        }
        let pointer = self.pointer();
        for (winner, effect) in winners {
            self.changes.push(Change { field: Target::JsonPointer(pointer.clone()), effect, redaction: winner });
        }
        match rewritten {
            Rewritten::RemoveWhole => Fate::Removed,
            Rewritten::Text(text) => {
                let literal = serde_json::to_string(&text).unwrap_or_else(|_| "\"****\"".into());
                self.edits.push(Edit { start, end: self.i, text: Cow::Owned(literal) });
                Fate::Kept
            }
        }
    }

    fn object(&mut self, nodes: &[&'n Node]) -> Result<(), Bad> {
        self.i += 1;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        let mut container = Container::new();
        let mut decoded = String::new();
        loop {
            let start = self.i;
            if self.peek() != Some(b'"') {
                return Err(self.bad("expected a member name in double quotes"));
            }
            let escaped = self.string()?;
            let (key_start, key_end) = (start + 1, self.i - 1);
            self.colon()?;
            self.ws();
            if escaped {
                decoded = unescape(&self.text[key_start..key_end]);
            }
            let key: &[u8] = if escaped { decoded.as_bytes() } else { &self.b[key_start..key_end] };
            let mut matches = Matches::new();
            for node in nodes {
                if let Some(lit) = node.literals.iter().find(|l| l.key.as_bytes() == key) {
                    matches.push(&lit.node);
                }
                if let Some(any) = &node.wildcard {
                    matches.push(any);
                }
            }
            if let Some(lit) = self.names.and_then(|names| names.literals.iter().find(|l| l.key.as_bytes() == key)) {
                matches.push(&lit.node);
            }
            container.begin(start, &mut self.edits);
            let fate = if matches.len == 0 && !self.everywhere {
                self.skip_value()?;
                Fate::Kept
            } else {
                self.path.push(Step::Key { start: key_start, end: key_end, escaped });
                let fate = self.element(matches.as_slice())?;
                self.path.pop();
                fate
            };
            container.end(fate, start, self.i, &self.edits);
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                }
                Some(b'}') => {
                    self.i += 1;
                    break;
                }
                _ => return Err(self.bad("expected `,` or `}` after an object member")),
            }
        }
        container.close(&mut self.edits);
        Ok(())
    }

    fn array(&mut self, nodes: &[&'n Node]) -> Result<(), Bad> {
        self.i += 1;
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(());
        }
        let mut container = Container::new();
        let mut index = 0;
        loop {
            let start = self.i;
            let mut matches = Matches::new();
            for node in nodes {
                if let Some(lit) = node.literals.iter().find(|l| l.index == Some(index)) {
                    matches.push(&lit.node);
                }
                if let Some(any) = &node.wildcard {
                    matches.push(any);
                }
            }
            container.begin(start, &mut self.edits);
            let fate = if matches.len == 0 && !self.everywhere {
                self.skip_value()?;
                Fate::Kept
            } else {
                self.path.push(Step::Index(index));
                let fate = self.element(matches.as_slice())?;
                self.path.pop();
                fate
            };
            container.end(fate, start, self.i, &self.edits);
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                    index += 1;
                }
                Some(b']') => {
                    self.i += 1;
                    break;
                }
                _ => return Err(self.bad("expected `,` or `]` after an array element")),
            }
        }
        container.close(&mut self.edits);
        Ok(())
    }

    /// The pointer to the current value, escaped (`~0`, `~1`). Only built for a match.
    fn pointer(&self) -> String {
        let mut out = String::with_capacity(self.path.len() * 8);
        for step in &self.path {
            out.push('/');
            match *step {
                Step::Index(index) => {
                    let _ = write!(out, "{index}");
                }
                Step::Key { start, end, escaped } => {
                    let raw = &self.text[start..end];
                    let key: Cow<'_, str> = if escaped { Cow::Owned(unescape(raw)) } else { Cow::Borrowed(raw) };
                    if key.bytes().any(|b| b == b'~' || b == b'/') {
                        out.push_str(&key.replace('~', "~0").replace('/', "~1"));
                    } else {
                        out.push_str(&key);
                    }
                }
            }
        }
        out
    }

    fn colon(&mut self) -> Result<(), Bad> {
        self.ws();
        if self.peek() != Some(b':') {
            return Err(self.bad("expected `:` after a member name"));
        }
        self.i += 1;
        Ok(())
    }

    /// Skips and validates one value without recursion, whatever its depth.
    fn skip_value(&mut self) -> Result<(), Bad> {
        let base = self.stack.len();
        'value: loop {
            self.ws();
            match self.peek() {
                Some(b'{') => {
                    self.i += 1;
                    self.ws();
                    if self.peek() == Some(b'}') {
                        self.i += 1;
                    } else {
                        self.stack.push(b'}');
                        self.member_name()?;
                        continue 'value;
                    }
                }
                Some(b'[') => {
                    self.i += 1;
                    self.ws();
                    if self.peek() == Some(b']') {
                        self.i += 1;
                    } else {
                        self.stack.push(b']');
                        continue 'value;
                    }
                }
                Some(b'"') => {
                    self.string()?;
                }
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(_) => return Err(self.bad("expected a JSON value")),
                None => return Err(self.bad("unexpected end of the body where a value was expected")),
            }
            // After a value: close containers until one continues with a comma.
            while let Some(&close) = self.stack.get(base..).and_then(|s| s.last()) {
                self.ws();
                match self.peek() {
                    Some(b',') => {
                        self.i += 1;
                        if close == b'}' {
                            self.ws();
                            self.member_name()?;
                        }
                        continue 'value;
                    }
                    Some(c) if c == close => {
                        self.i += 1;
                        self.stack.pop();
                    }
                    _ if close == b'}' => return Err(self.bad("expected `,` or `}` after an object member")),
                    _ => return Err(self.bad("expected `,` or `]` after an array element")),
                }
            }
            return Ok(());
        }
    }

    /// A member name and its colon.
    fn member_name(&mut self) -> Result<(), Bad> {
        if self.peek() != Some(b'"') {
            return Err(self.bad("expected a member name in double quotes"));
        }
        self.string()?;
        self.colon()
    }

    /// Skips a string (cursor on its opening quote); whether it has escapes.
    fn string(&mut self) -> Result<bool, Bad> {
        let b = self.b;
        let mut i = self.i + 1;
        let mut escaped = false;
        loop {
            while i < b.len() && !STRING_STOP[b[i] as usize] {
                i += 1;
            }
            match b.get(i) {
                Some(b'"') => {
                    self.i = i + 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    match b.get(i + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                        Some(b'u') if b.get(i + 2..i + 6).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) => {
                            i += 6;
                        }
                        _ => return Err(Bad { at: i, what: "invalid escape in a string" }),
                    }
                }
                Some(_) => return Err(Bad { at: i, what: "unescaped control character in a string" }),
                None => return Err(Bad { at: self.i, what: "unterminated string" }),
            }
        }
    }

    /// Skips a number: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Result<(), Bad> {
        let b = self.b;
        let mut i = self.i;
        let digits = |mut i: usize| {
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            i
        };
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = digits(i + 1),
            _ => return Err(Bad { at: i, what: "invalid number" }),
        }
        if b.get(i) == Some(&b'.') {
            if !b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                return Err(Bad { at: i + 1, what: "expected a digit after the decimal point" });
            }
            i = digits(i + 1);
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if !b.get(i).is_some_and(u8::is_ascii_digit) {
                return Err(Bad { at: i, what: "expected a digit in the exponent" });
            }
            i = digits(i);
        }
        self.i = i;
        Ok(())
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), Bad> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.bad("invalid literal (expected `true`, `false` or `null`)"))
        }
    }
}

/// Decodes the escapes of a string the walker has validated. A lone surrogate becomes
/// U+FFFD (it cannot equal any pointer segment, which is UTF-8).
fn unescape(raw: &str) -> String {
    let b = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut run = 0;
    let mut i = 0;
    let hex = |at: usize| raw.get(at..at + 4).and_then(|h| u32::from_str_radix(h, 16).ok());
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        out.push_str(&raw[run..i]);
        let c = match b.get(i + 1) {
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                let high = hex(i + 2).unwrap_or(0xFFFD);
                i += 4;
                if (0xD800..0xDC00).contains(&high) && b.get(i + 2..i + 4) == Some(b"\\u") {
                    match hex(i + 4) {
                        Some(low) if (0xDC00..0xE000).contains(&low) => {
                            i += 6;
                            char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)).unwrap_or('\u{FFFD}')
                        }
                        _ => '\u{FFFD}',
                    }
                } else {
                    char::from_u32(high).unwrap_or('\u{FFFD}')
                }
            }
            Some(&other) => other as char,
            None => break,
        };
        out.push(c);
        i += 2;
        run = i;
    }
    out.push_str(raw.get(run..).unwrap_or(""));
    out
}

/// Writes the document with the edits applied; `None` if there are none.
fn splice(input: &[u8], edits: &[Edit<'_>]) -> Option<Vec<u8>> {
    if edits.is_empty() {
        return None;
    }
    let removed: usize = edits.iter().map(|e| e.end - e.start).sum();
    let added: usize = edits.iter().map(|e| e.text.len()).sum();
    let mut out = Vec::with_capacity(input.len() - removed + added);
    let mut at = 0;
    for edit in edits {
        debug_assert!(edit.start >= at, "edits overlap or are out of order");
        out.extend_from_slice(&input[at..edit.start]);
        out.extend_from_slice(edit.text.as_bytes());
        at = edit.end;
    }
    out.extend_from_slice(&input[at..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::Body;
    use serde_json::{Value, json};

    fn remove(target: Target) -> Redaction {
        Redaction { target, action: Action::Remove }
    }
    fn replace(target: Target, text: &str) -> Redaction {
        Redaction { target, action: Action::Replace(text.into()) }
    }
    fn ptr(p: &str) -> Target {
        Target::JsonPointer(p.into())
    }
    fn json_response(text: &str) -> Response {
        Response {
            status: 200,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("content-length".into(), text.len().to_string()),
            ],
            body: Some(Body {
                content_type: Some("application/json".into()),
                bytes: text.as_bytes().to_vec(),
                truncated: false,
            }),
        }
    }
    fn body_text(response: &Response) -> &str {
        std::str::from_utf8(&response.body.as_ref().unwrap().bytes).unwrap()
    }
    /// Redacts `text` and returns the new body and the changed field paths.
    fn redact_text(text: &str, redactions: &[Redaction]) -> (String, Vec<String>) {
        let mut response = json_response(text);
        let applied = apply_to_response(&mut response, redactions).unwrap();
        (body_text(&response).to_owned(), applied.fields())
    }
    fn redact_value(value: Value, redactions: &[Redaction]) -> (Value, Vec<String>) {
        let (text, fields) = redact_text(&value.to_string(), redactions);
        (serde_json::from_str(&text).unwrap(), fields)
    }

    #[test]
    fn nested_arrays_with_wildcards() {
        let (out, fields) = redact_value(
            json!({"a": [{"b": [{"c": 1, "d": 2}, {"c": 3}]}, {"b": []}, {"x": 1}, {"b": [{"d": 4}, {"c": 5}]}]}),
            &[remove(ptr("/a/*/b/*/c"))],
        );
        assert_eq!(out, json!({"a": [{"b": [{"d": 2}, {}]}, {"b": []}, {"x": 1}, {"b": [{"d": 4}, {}]}]}));
        assert_eq!(fields, ["json:/a/0/b/0/c", "json:/a/0/b/1/c", "json:/a/3/b/1/c"]);
    }

    #[test]
    fn deep_card_numbers_are_replaced() {
        let (out, fields) = redact_value(
            json!({"data": [{"items": [{"card": {"number": "4111", "exp": "12/30"}}]}, {"items": [{"card": {"number": "5500"}}, {"sku": 1}]}]}),
            &[replace(ptr("/data/*/items/*/card/number"), "****")],
        );
        assert_eq!(
            out,
            json!({"data": [{"items": [{"card": {"number": "****", "exp": "12/30"}}]}, {"items": [{"card": {"number": "****"}}, {"sku": 1}]}]})
        );
        assert_eq!(fields, ["json:/data/0/items/0/card/number", "json:/data/1/items/0/card/number"]);
    }

    #[test]
    fn wildcard_over_object_members() {
        let (out, fields) = redact_value(
            json!({"customers": {"alice": {"phone": "1", "name": "A"}, "bob": {"name": "B"}, "carol": {"phone": "3"}}}),
            &[remove(ptr("/customers/*/phone"))],
        );
        assert_eq!(out, json!({"customers": {"alice": {"name": "A"}, "bob": {"name": "B"}, "carol": {}}}));
        assert_eq!(fields, ["json:/customers/alice/phone", "json:/customers/carol/phone"]);
    }

    #[test]
    fn wildcard_removes_every_member_and_element() {
        let (out, _) =
            redact_value(json!({"o": {"a": 1, "b": 2}, "l": [1, 2, 3]}), &[remove(ptr("/o/*")), remove(ptr("/l/*"))]);
        assert_eq!(out, json!({"o": {}, "l": []}));
    }

    #[test]
    fn pointer_escapes_match_slash_and_tilde_keys() {
        let (out, fields) = redact_value(
            json!({"a/b": 1, "m~n": 2, "keep": 3, "~1": 4}),
            &[remove(ptr("/a~1b")), remove(ptr("/m~0n")), remove(ptr("/~01"))],
        );
        assert_eq!(out, json!({"keep": 3}));
        assert_eq!(fields, ["json:/a~1b", "json:/m~0n", "json:/~01"]);
    }

    #[test]
    fn escaped_member_names_in_the_body_still_match() {
        // `\u0070hone` is `phone`: a parser downstream sees `phone`, so it must be redacted.
        let (out, fields) =
            redact_text(r#"{"\u0070hone": "555", "a\/b": 1, "ok": 2}"#, &[remove(ptr("/phone")), remove(ptr("/a~1b"))]);
        assert_eq!(out, r#"{"ok": 2}"#);
        assert_eq!(fields, ["json:/phone", "json:/a~1b"]);
    }

    #[test]
    fn duplicate_member_names_are_all_redacted() {
        let (out, _) = redact_text(r#"{"ssn": "1", "x": 0, "ssn": "2"}"#, &[replace(ptr("/ssn"), "x")]);
        assert_eq!(out, r#"{"ssn": "x", "x": 0, "ssn": "x"}"#);
    }

    #[test]
    fn removing_array_elements_keeps_the_rest_in_order() {
        let list = json!([0, 1, 2, 3, 4, 5]);
        for (remove_at, expected) in [
            (vec!["/0"], json!([1, 2, 3, 4, 5])),
            (vec!["/5"], json!([0, 1, 2, 3, 4])),
            (vec!["/1", "/3"], json!([0, 2, 4, 5])),
            (vec!["/4", "/5"], json!([0, 1, 2, 3])),
            (vec!["/0", "/1", "/5"], json!([2, 3, 4])),
            (vec!["/0", "/1", "/2", "/3", "/4", "/5"], json!([])),
            (vec!["/6", "/-", "/01"], json!([0, 1, 2, 3, 4, 5])),
        ] {
            let redactions: Vec<_> = remove_at.iter().map(|p| remove(ptr(p))).collect();
            let (out, _) = redact_value(list.clone(), &redactions);
            assert_eq!(out, expected, "removing {remove_at:?}");
        }
    }

    #[test]
    fn removal_keeps_formatting_and_commas_valid() {
        let text = "{\n  \"a\": 1,\n  \"b\": [\n    1,\n    2\n  ],\n  \"c\": 3\n}";
        let (out, _) = redact_text(text, &[remove(ptr("/c")), remove(ptr("/b/0"))]);
        assert_eq!(out, "{\n  \"a\": 1,\n  \"b\": [\n    2\n  ]\n}");
        let (out, _) = redact_text(text, &[remove(ptr("/a")), remove(ptr("/b/1"))]);
        assert_eq!(out, "{\n  \"b\": [\n    1\n  ],\n  \"c\": 3\n}");
    }

    #[test]
    fn removal_of_array_elements_inside_removed_and_kept_neighbours() {
        // Kept element with its own nested edit, followed by a trailing run of removals.
        let (out, fields) = redact_value(
            json!([{"s": 1, "k": 1}, {"drop": true}, {"drop": true}]),
            &[remove(ptr("/0/s")), remove(ptr("/1")), remove(ptr("/2"))],
        );
        assert_eq!(out, json!([{"k": 1}]));
        assert_eq!(fields, ["json:/0/s", "json:/1", "json:/2"]);
    }

    #[test]
    fn replace_writes_a_json_string() {
        let (out, _) = redact_value(
            json!({"n": 1, "o": {"x": [1]}, "s": "old", "q": "x"}),
            &[replace(ptr("/n"), "a\"b\\c\n"), replace(ptr("/o"), "[hidden]"), replace(ptr("/s"), "")],
        );
        assert_eq!(out, json!({"n": "a\"b\\c\n", "o": "[hidden]", "s": "", "q": "x"}));
    }

    #[test]
    fn numeric_segments_name_object_members_too() {
        let (out, _) = redact_value(json!({"0": "zero", "1": "one"}), &[remove(ptr("/0"))]);
        assert_eq!(out, json!({"1": "one"}));
    }

    #[test]
    fn literal_star_key_is_covered_by_the_wildcard() {
        let (out, _) = redact_value(json!({"a": {"*": 1, "b": 2}}), &[remove(ptr("/a/*"))]);
        assert_eq!(out, json!({"a": {}}));
    }

    #[test]
    fn overlapping_redactions_outer_and_removal_win() {
        let redactions = [
            replace(ptr("/a/b"), "inner"),
            replace(ptr("/a"), "outer"),
            replace(ptr("/c"), "first"),
            remove(ptr("/c")),
            replace(ptr("/d"), "first"),
            replace(ptr("/d"), "last"),
            replace(ptr("/e/*"), "any"),
            remove(ptr("/e/x")),
        ];
        let mut response = json_response(&json!({"a": {"b": 1}, "c": 1, "d": 1, "e": {"x": 1, "y": 2}}).to_string());
        let applied = apply_to_response(&mut response, &redactions).unwrap();
        let out: Value = serde_json::from_slice(&response.body.unwrap().bytes).unwrap();
        assert_eq!(out, json!({"a": "outer", "d": "last", "e": {"y": "any"}}));
        let winners: Vec<(String, Effect, usize)> =
            applied.changes.iter().map(|c| (c.field.to_string(), c.effect, c.redaction)).collect();
        assert_eq!(
            winners,
            [
                ("json:/a".into(), Effect::Replaced, 1),
                ("json:/c".into(), Effect::Removed, 3),
                ("json:/d".into(), Effect::Replaced, 5),
                ("json:/e/x".into(), Effect::Removed, 7),
                ("json:/e/y".into(), Effect::Replaced, 6),
            ]
        );
        // Only the inner `/a/b` never applied.
        assert_eq!(applied.ignored.iter().map(|i| i.redaction).collect::<Vec<_>>(), [0]);
    }

    #[test]
    fn whole_document_pointer() {
        let (out, fields) = redact_text(" {\"a\": 1} ", &[remove(ptr(""))]);
        assert_eq!(out, " null ");
        assert_eq!(fields, ["json:"]);
        let (out, _) = redact_text("[1, 2]", &[replace(ptr(""), "gone")]);
        assert_eq!(out, "\"gone\"");
    }

    #[test]
    fn no_match_leaves_the_body_bytes_unchanged() {
        let text = "{ \"a\" : 1.50e+3 , \"big\": 123456789012345678901234567890, \"u\": \"\\u00e9\", \"z\": 0 }";
        let mut response = json_response(text);
        let applied = apply_to_response(&mut response, &[remove(ptr("/missing/*/x")), remove(ptr("/a/b"))]).unwrap();
        assert_eq!(body_text(&response), text);
        assert!(applied.is_empty() && !applied.body_changed);
        assert!(applied.ignored.iter().all(|i| i.reason == IgnoreReason::NoMatch));
        assert_eq!(applied.ignored.len(), 2);
    }

    #[test]
    fn untouched_fields_keep_their_exact_bytes() {
        let text = r#"{"z": 1.0, "big": 123456789012345678901234567890, "u": "\u00e9", "secret": "s", "a": [ 1 ,2 ]}"#;
        let (out, _) = redact_text(text, &[remove(ptr("/secret"))]);
        assert_eq!(out, r#"{"z": 1.0, "big": 123456789012345678901234567890, "u": "\u00e9", "a": [ 1 ,2 ]}"#);
    }

    #[test]
    fn content_length_is_fixed_after_a_body_change() {
        let mut response = json_response(r#"{"token": "abcdef", "ok": true}"#);
        response.headers.push(("Content-Length".into(), "999".into()));
        let applied = apply_to_response(&mut response, &[remove(ptr("/token"))]).unwrap();
        assert!(applied.body_changed);
        assert_eq!(body_text(&response), r#"{"ok": true}"#);
        let lengths: Vec<&str> = response
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(lengths, ["12"]);
    }

    #[test]
    fn content_length_is_not_added_when_absent() {
        let mut response = json_response(r#"{"token": "abcdef"}"#);
        response.headers.retain(|(n, _)| n != "content-length");
        apply_to_response(&mut response, &[remove(ptr("/token"))]).unwrap();
        assert!(response.header("content-length").is_none());
    }

    #[test]
    fn non_json_body_with_a_pointer_fails_closed() {
        for (content_type, bytes, expect) in [
            (Some("text/html"), "<p>hi</p>", "`text/html`, not JSON"),
            (Some("application/json"), "{\"a\": 1,}", "not valid JSON"),
            (None, "card=4111", "not valid JSON"),
            (Some("text/plain"), "hello", "not valid JSON"),
            (Some("application/json"), "{\"a\": \"\u{1}\"}", "control character"),
            (Some("application/json"), "{\"a\": 01}", "not valid JSON"),
        ] {
            let mut response = Response {
                headers: content_type.map(|ct| ("content-type".to_owned(), ct.to_owned())).into_iter().collect(),
                body: Some(Body {
                    content_type: content_type.map(Into::into),
                    bytes: bytes.as_bytes().to_vec(),
                    truncated: false,
                }),
                ..Response::default()
            };
            let before = response.clone();
            let err =
                apply_to_response(&mut response, &[remove(Target::Header("x".into())), remove(ptr("/a"))]).unwrap_err();
            assert!(matches!(&err, RedactError::BodyNotJson { pointer, .. } if pointer == "/a"), "{err}");
            assert!(err.to_string().contains(expect), "{content_type:?}: {err}");
            assert_eq!(response, before, "left untouched on error");
        }
    }

    #[test]
    fn invalid_utf8_truncated_and_encoded_bodies_fail_closed() {
        let mut response = json_response("{}");
        response.body.as_mut().unwrap().bytes = vec![b'"', 0xff, b'"'];
        let err = apply_to_response(&mut response, &[remove(ptr("/a"))]).unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");

        let mut response = json_response(r#"{"a": 1}"#);
        response.body.as_mut().unwrap().truncated = true;
        let err = apply_to_response(&mut response, &[remove(ptr("/a"))]).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");

        // Found by fuzz/fuzz_targets/redact.rs: a truncated body that so far is only
        // whitespace was taken for an empty one, though its unseen rest could hold the field.
        let mut response = json_response("{}");
        let body = response.body.as_mut().unwrap();
        (body.bytes, body.truncated) = (b" \n\t ".to_vec(), true);
        let err = apply_to_response(&mut response, &[remove(ptr("/a"))]).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");

        let mut response = json_response("{}");
        response.body.as_mut().unwrap().bytes = vec![0x1f, 0x8b, 8, 0];
        response.headers.push(("content-encoding".into(), "gzip".into()));
        let err = apply_to_response(&mut response, &[remove(ptr("/a"))]).unwrap_err();
        assert!(err.to_string().contains("content-encoded (`gzip`)"), "{err}");
    }

    #[test]
    fn non_json_body_without_pointer_redactions_is_fine() {
        let mut response = Response {
            headers: vec![("x-secret".into(), "s".into())],
            body: Some(Body { content_type: Some("text/html".into()), bytes: b"<p>".to_vec(), truncated: false }),
            ..Response::default()
        };
        let applied = apply_to_response(&mut response, &[remove(Target::Header("X-Secret".into()))]).unwrap();
        assert_eq!(applied.fields(), ["header:x-secret"]);
        assert_eq!(response.body.unwrap().bytes, b"<p>");
    }

    #[test]
    fn missing_or_empty_body_with_pointers_is_fine() {
        let mut response = Response::default();
        let applied = apply_to_response(&mut response, &[remove(ptr("/a"))]).unwrap();
        assert_eq!(applied.ignored[0].reason, IgnoreReason::NoBody);
        let mut response = json_response("  ");
        let applied = apply_to_response(&mut response, &[remove(ptr("/a"))]).unwrap();
        assert_eq!(applied.ignored[0].reason, IgnoreReason::NoBody);
    }

    #[test]
    fn json_recorded_as_text_is_sniffed() {
        for content_type in [Some("text/plain; charset=utf-8"), Some("text"), Some("null"), Some(""), None] {
            let mut response = json_response(r#"{"email": "a@b.c", "id": 1}"#);
            response.body.as_mut().unwrap().content_type = content_type.map(Into::into);
            response.headers.retain(|(n, _)| n != "content-type");
            apply_to_response(&mut response, &[replace(ptr("/email"), "[redacted]")]).unwrap();
            assert_eq!(body_text(&response), r#"{"email": "[redacted]", "id": 1}"#);
        }
    }

    #[test]
    fn content_type_header_is_used_when_the_body_has_none() {
        let mut response = json_response("<html>");
        response.body.as_mut().unwrap().content_type = None;
        response.headers[0].1 = "text/html".into();
        let err = apply_to_response(&mut response, &[remove(ptr("/a"))]).unwrap_err();
        assert!(err.to_string().contains("`text/html`"), "{err}");
    }

    fn request() -> Request {
        Request {
            method: "POST".into(),
            path: "/pay".into(),
            query: vec![
                ("token".into(), "t1".into()),
                ("page".into(), "2".into()),
                ("token".into(), "t2".into()),
                ("Token".into(), "keep".into()),
            ],
            headers: vec![
                ("x-api-key".into(), "k1".into()),
                ("accept".into(), "*/*".into()),
                ("x-api-key".into(), "k2".into()),
                ("cookie".into(), "a=1".into()),
                ("cookie".into(), "b=2".into()),
                ("content-type".into(), "application/json".into()),
                ("content-length".into(), "40".into()),
            ],
            body: Some(Body::json(&json!({"card": {"number": "4111111111111111", "cvc": "123"}, "amount": 5}))),
            ..Request::default()
        }
    }

    #[test]
    fn header_remove_and_replace_cover_repeats() {
        let mut req = request();
        let applied = apply_to_request(
            &mut req,
            &[remove(Target::Header("X-API-Key".into())), replace(Target::Header("cookie".into()), "[redacted]")],
        )
        .unwrap();
        assert!(req.headers.iter().all(|(n, _)| n != "x-api-key"));
        let cookies: Vec<&str> = req.headers.iter().filter(|(n, _)| n == "cookie").map(|(_, v)| v.as_str()).collect();
        assert_eq!(cookies, ["[redacted]", "[redacted]"]);
        assert_eq!(applied.fields(), ["header:x-api-key", "header:cookie"]);
        assert!(applied.ignored.is_empty());
    }

    #[test]
    fn query_remove_and_replace_cover_repeats_and_are_case_sensitive() {
        let mut req = request();
        apply_to_request(&mut req, &[remove(Target::Query("token".into()))]).unwrap();
        assert_eq!(req.query, vec![("page".to_owned(), "2".to_owned()), ("Token".into(), "keep".into())]);
        let mut req = request();
        let applied = apply_to_request(&mut req, &[replace(Target::Query("token".into()), "x")]).unwrap();
        assert_eq!(req.query[0].1, "x");
        assert_eq!(req.query[2].1, "x");
        assert_eq!(req.query[3].1, "keep");
        assert_eq!(applied.fields(), ["query:token"]);
    }

    #[test]
    fn request_report_orders_headers_query_body_and_lists_ignored() {
        let mut req = request();
        let applied = apply_to_request(
            &mut req,
            &[
                replace(ptr("/card/number"), "****"),
                remove(ptr("/card/cvc")),
                remove(Target::Query("token".into())),
                remove(Target::Header("authorization".into())),
                remove(Target::Header("x-api-key".into())),
            ],
        )
        .unwrap();
        // Body paths come in document order (`Body::json` writes keys sorted).
        assert_eq!(applied.fields(), ["header:x-api-key", "query:token", "json:/card/cvc", "json:/card/number"]);
        assert_eq!(applied.ignored.len(), 1);
        assert_eq!(applied.ignored[0].redaction, 3);
        assert_eq!(applied.ignored[0].reason, IgnoreReason::NoMatch);
        let body: Value = serde_json::from_slice(&req.body.as_ref().unwrap().bytes).unwrap();
        assert_eq!(body, json!({"card": {"number": "****"}, "amount": 5}));
        let len = req.body.as_ref().unwrap().bytes.len().to_string();
        assert_eq!(req.header("content-length"), Some(len.as_str()));
        // The report never carries values.
        let report = serde_json::to_string(&applied).unwrap();
        assert!(!report.contains("****") && !report.contains("4111"), "{report}");
    }

    #[test]
    fn query_targets_on_responses_are_ignored_not_errors() {
        let mut response = json_response("{}");
        let applied = apply_to_response(&mut response, &[remove(Target::Query("token".into()))]).unwrap();
        assert!(applied.is_empty());
        assert_eq!(applied.ignored[0].reason, IgnoreReason::QueryInResponse);
    }

    #[test]
    fn invalid_pointers_are_named_with_the_fix() {
        for (pointer, expect) in [
            ("customers.phone", "did you mean `/customers/phone`"),
            ("$.a.b", "did you mean `/a/b`"),
            ("/a~2b", "`~0`"),
            ("/a~", "`~1`"),
        ] {
            let err = apply_to_response(&mut json_response("{}"), &[remove(ptr(pointer))]).unwrap_err();
            assert!(matches!(&err, RedactError::InvalidPointer { pointer: p, .. } if p == pointer), "{err}");
            assert!(err.to_string().contains(expect), "{pointer}: {err}");
        }
        let deep = "/a".repeat(MAX_POINTER_SEGMENTS + 1);
        let err = apply_to_response(&mut json_response("{}"), &[remove(ptr(&deep))]).unwrap_err();
        assert!(err.to_string().contains("segments"), "{err}");
        // An invalid pointer is refused even without a body, and before anything changes.
        let mut req = request();
        let before = req.clone();
        let err = apply_to_request(&mut req, &[remove(Target::Header("cookie".into())), remove(ptr("a"))]).unwrap_err();
        assert!(matches!(err, RedactError::InvalidPointer { .. }));
        assert_eq!(req, before);
    }

    #[test]
    fn header_replacements_with_control_characters_are_refused() {
        let err =
            apply_to_request(&mut request(), &[replace(Target::Header("x-a".into()), "ok\r\nx-evil: 1")]).unwrap_err();
        assert!(matches!(&err, RedactError::InvalidHeaderValue { name, .. } if name == "x-a"), "{err}");
        assert!(!err.to_string().contains("evil"), "the value stays out of the message: {err}");
    }

    #[test]
    fn lone_surrogate_keys_and_deep_documents() {
        // Lone surrogates are accepted (as JavaScript does); wildcard paths render them as U+FFFD.
        let (out, fields) = redact_text(r#"{"\ud800": 1, "k": 2}"#, &[remove(ptr("/*"))]);
        assert_eq!(out, "{}");
        assert_eq!(fields, ["json:/\u{fffd}", "json:/k"]);
        // Nesting far deeper than the pointer is skipped without recursion.
        let deep = format!("{{\"a\": 1, \"d\": {}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        let (out, _) = redact_text(&deep, &[remove(ptr("/a"))]);
        assert_eq!(out, format!("{{\"d\": {}{}}}", "[".repeat(100_000), "]".repeat(100_000)));
    }

    #[test]
    fn validation_agrees_with_serde_json() {
        let cases = [
            "{}",
            "[]",
            "1",
            "-0",
            "-0.5e-3",
            "1E+2",
            "\"\\u00e9\\n\"",
            "true",
            "null",
            " [1 , {\"a\" :[]}] ",
            "",
            "{",
            "}",
            "[1,]",
            "[,1]",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{a:1}",
            "01",
            "1.",
            ".5",
            "+1",
            "-",
            "1e",
            "1e+",
            "tru",
            "nul",
            "\"abc",
            "\"\\x\"",
            "\"\\u12g4\"",
            "[1 2]",
            "{\"a\":1 \"b\":2}",
            "1 2",
            "[\"\t\"]",
            "{\"a\":1}}",
            "[[]]]",
            "\u{feff}{}",
            "NaN",
            "[-]",
            "{\"a\" 1}",
            "[true false]",
            "1e400",
            "[\"\\ud800\"]",
            "123456789012345678901234567890",
        ];
        for case in cases {
            let ours = Walker::new(case, &mut [], &mut Vec::new()).document(&Node::default()).is_ok();
            let theirs = serde_json::from_str::<serde::de::IgnoredAny>(case).is_ok();
            assert_eq!(ours, theirs, "{case:?}");
        }
    }

    #[test]
    fn generated_documents_match_a_value_based_reference() {
        // A small deterministic generator: random documents, redacted with a wildcard
        // pointer, compared with the same removal done on a serde_json::Value.
        fn generate(next: &mut dyn FnMut() -> u64, depth: u32) -> Value {
            match next() % if depth > 3 { 3 } else { 6 } {
                0 => json!(next() % 100),
                1 => json!(format!("s{}", next() % 10)),
                2 => Value::Null,
                3 | 4 => Value::Array((0..next() % 5).map(|_| generate(next, depth + 1)).collect()),
                _ => Value::Object(
                    (0..next() % 5).map(|_| (format!("k{}", next() % 4), generate(next, depth + 1))).collect(),
                ),
            }
        }
        fn reference(value: &mut Value, segments: &[&str]) {
            let Some((first, rest)) = segments.split_first() else { return };
            let last = rest.is_empty();
            match value {
                Value::Object(map) => {
                    if last {
                        if *first == "*" {
                            map.clear();
                        } else {
                            map.remove(*first);
                        }
                    } else {
                        for (k, v) in map.iter_mut() {
                            if *first == "*" || k == first {
                                reference(v, rest);
                            }
                        }
                    }
                }
                Value::Array(list) => {
                    if last {
                        match *first {
                            "*" => list.clear(),
                            index => {
                                if let Ok(i) = index.parse::<usize>()
                                    && i < list.len()
                                {
                                    list.remove(i);
                                }
                            }
                        }
                    } else {
                        for (i, v) in list.iter_mut().enumerate() {
                            if *first == "*" || first.parse() == Ok(i) {
                                reference(v, rest);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        let mut seed = 0x2545F4914F6CDD1Du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let pointers = ["/k1", "/*/k0", "/*/*", "/k2/*/k1", "/0", "/*/1", "/k3/*/*/k2"];
        for round in 0..2000 {
            let doc = generate(&mut next, 0);
            let pointer = pointers[round % pointers.len()];
            let pretty = round % 2 == 0;
            let text = if pretty { serde_json::to_string_pretty(&doc).unwrap() } else { doc.to_string() };
            let (out, _) = redact_text(&text, &[remove(ptr(pointer))]);
            let mut expected = doc.clone();
            let segments: Vec<&str> = pointer[1..].split('/').collect();
            reference(&mut expected, &segments);
            let got: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\nfrom {text}"));
            assert_eq!(got, expected, "pointer {pointer} on {text}");
        }
    }

    // -----------------------------------------------------------------------------------
    // Contract 0.2: json-name targets, masks, detected targets
    // -----------------------------------------------------------------------------------

    fn mask(target: Target, m: Mask) -> Redaction {
        Redaction { target, action: Action::Mask(m) }
    }
    fn name(n: &str) -> Target {
        Target::JsonName(n.into())
    }
    fn detected(d: &str) -> Target {
        Target::Detected(d.into())
    }

    #[test]
    fn json_name_masks_members_at_every_depth_and_reports_pointers() {
        let text = r#"{"card_number": "4111111111111111", "orders": [{"card_number": "5500005555555559", "n": 1},
  {"x": {"card_number": 4111111111111111}}], "card_numbers": ["keep"], "a~b/c": {"card_number": "ünïcødé1234"}}"#;
        let (out, fields) = redact_text(text, &[mask(name("card_number"), Mask::KeepLast(4))]);
        let value: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["card_number"], "************1111");
        assert_eq!(value["orders"][0]["card_number"], "************5559");
        assert_eq!(value["orders"][1]["x"]["card_number"], "************1111", "a number masked becomes a string");
        assert_eq!(value["a~b/c"]["card_number"], "*******1234", "characters, not bytes");
        assert_eq!(value["card_numbers"], json!(["keep"]), "only the exact name");
        assert_eq!(
            fields,
            [
                "json:/card_number",
                "json:/orders/0/card_number",
                "json:/orders/1/x/card_number",
                "json:/a~0b~1c/card_number"
            ]
        );
        // Every byte outside the masked values is kept (the line break, the spacing).
        assert!(out.contains("\"n\": 1},\n  {\"x\""), "{out}");
    }

    #[test]
    fn json_name_removes_and_combines_with_pointers() {
        let (out, fields) = redact_value(
            json!({"cvc": "1", "items": [{"cvc": "2", "sku": "a"}, {"sku": "b"}], "meta": {"cvc": {"inner": "3"}}}),
            &[remove(name("cvc")), replace(ptr("/items/1/sku"), "x")],
        );
        assert_eq!(out, json!({"items": [{"sku": "a"}, {"sku": "x"}], "meta": {}}));
        assert_eq!(fields, ["json:/cvc", "json:/items/0/cvc", "json:/items/1/sku", "json:/meta/cvc"]);
        // An array index is not a name.
        let (out, fields) = redact_value(json!({"a": ["x", "y"]}), &[remove(name("0"))]);
        assert_eq!((out, fields.len()), (json!({"a": ["x", "y"]}), 0));
    }

    #[test]
    fn masks_of_other_values_and_the_email_domain() {
        let (out, _) = redact_value(
            json!({"email": "alice@example.com", "obj": {"a": 1}, "flag": true, "n": null}),
            &[
                mask(ptr("/email"), Mask::KeepEmailDomain),
                mask(ptr("/obj"), Mask::KeepLast(2)),
                mask(ptr("/flag"), Mask::FixedLength(3)),
                mask(ptr("/n"), Mask::KeepLast(1)),
            ],
        );
        assert_eq!(out, json!({"email": "*****@example.com", "obj": "****", "flag": "***", "n": "****"}));
    }

    #[test]
    fn masks_on_headers_and_query_values() {
        let mut r = request();
        r.query.push(("email".into(), "bob@example.org".into()));
        let applied = apply_to_request(
            &mut r,
            &[
                mask(Target::Header("X-Api-Key".into()), Mask::KeepLast(1)),
                mask(Target::Query("email".into()), Mask::KeepEmailDomain),
            ],
        )
        .unwrap();
        let headers: Vec<&str> = r.headers.iter().filter(|(n, _)| n == "x-api-key").map(|(_, v)| v.as_str()).collect();
        assert_eq!(headers, ["*1", "*2"]);
        assert_eq!(r.query.last().unwrap().1, "***@example.org");
        assert_eq!(applied.fields(), ["header:x-api-key", "query:email"]);
        assert!(applied.changes.iter().all(|c| c.effect == Effect::Masked));
    }

    /// The only test that installs a pseudonym key (the key is process-wide).
    #[test]
    fn pseudonyms_need_a_key_and_are_stable() {
        mask::set_pseudonym_key(None);
        let redactions = [mask(name("customer_id"), Mask::Pseudonym)];
        let err = redact_value_err(json!({"customer_id": "c-1"}), &redactions);
        assert!(matches!(err, RedactError::NoPseudonymKey { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("pseudonym_key_env") && message.contains("[redaction]"), "{message}");
        mask::set_pseudonym_key(PseudonymKey::new(b"a test key of 16+ bytes"));
        let (out, _) = redact_value(
            json!({"customer_id": "c-1", "x": [{"customer_id": "c-1"}, {"customer_id": "c-2"}]}),
            &redactions,
        );
        mask::set_pseudonym_key(None);
        let a = out["customer_id"].as_str().unwrap();
        assert!(a.starts_with("pn_") && a.len() == 29, "{a}");
        assert_eq!(out["x"][0]["customer_id"], a, "same input, same pseudonym");
        assert_ne!(out["x"][1]["customer_id"], a);
    }

    fn redact_value_err(value: Value, redactions: &[Redaction]) -> RedactError {
        let mut response = json_response(&value.to_string());
        let before = response.clone();
        let err = apply_to_response(&mut response, redactions).unwrap_err();
        assert_eq!(response, before, "nothing changes on error");
        err
    }

    #[test]
    fn detectors_mask_spans_in_json_strings_numbers_and_whole_values() {
        let text = r#"{"note": "card 4111 1111 1111 1111, mail alice@example.com", "pan": 4111111111111111,
 "order": "1234567812345678", "contact": "bob@example.org", "id": 7}"#;
        let (out, fields) =
            redact_text(text, &[mask(detected("card-number"), Mask::KeepLast(4)), remove(detected("email"))]);
        let value: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["note"], "card ***************1111, mail ", "spans only; removal cuts the span");
        assert_eq!(value["pan"], "************1111", "card numbers are found in JSON numbers");
        assert_eq!(value["order"], "1234567812345678", "fails Luhn: not a card number");
        assert!(value.get("contact").is_none(), "a value that is only a removed finding is removed");
        assert_eq!(value["id"], 7);
        assert_eq!(fields, ["json:/note", "json:/note", "json:/pan", "json:/contact"]);
    }

    #[test]
    fn detectors_scan_text_bodies_headers_and_query() {
        let mut r = request();
        r.headers.push(("x-note".into(), "call alice@example.com".into()));
        r.query.push(("to".into(), "alice@example.com".into()));
        r.body = Some(Body {
            content_type: Some("text/plain".into()),
            bytes: b"pay with 4111111111111111 please".to_vec(),
            truncated: false,
        });
        let applied = apply_to_request(
            &mut r,
            &[mask(detected("email"), Mask::KeepEmailDomain), mask(detected("card-number"), Mask::FixedLength(4))],
        )
        .unwrap();
        assert_eq!(r.body.as_ref().unwrap().bytes, b"pay with **** please");
        assert!(r.headers.contains(&("x-note".into(), "call *****@example.com".into())));
        assert!(r.query.contains(&("to".into(), "*****@example.com".into())));
        assert_eq!(applied.fields(), ["header:x-note", "query:to", "detected:card-number"]);
        assert!(applied.body_changed);
    }

    #[test]
    fn detectors_fail_closed_on_bodies_they_cannot_read() {
        let mut r = json_response("{}");
        r.body = Some(Body {
            content_type: Some("application/octet-stream".into()),
            bytes: vec![0xff, 0xfe],
            truncated: false,
        });
        let err = apply_to_response(&mut r, &[remove(detected("email"))]).unwrap_err();
        assert!(matches!(err, RedactError::BodyNotText { .. }), "{err:?}");
        assert!(err.to_string().contains("detected:email"), "{err}");
        let mut r = json_response("{\"a\": \"alice@example.com\"");
        let err = apply_to_response(&mut r, &[remove(detected("email"))]).unwrap_err();
        assert!(matches!(err, RedactError::BodyNotText { .. }), "invalid JSON with a JSON type: {err:?}");
        let err = apply_to_response(&mut json_response("{}"), &[remove(detected("ssn"))]).unwrap_err();
        assert!(matches!(err, RedactError::UnknownDetector { .. }), "{err:?}");
    }

    #[test]
    fn scanning_every_value_refuses_documents_nested_too_deep() {
        let deep = format!("{}{}", "[".repeat(MAX_SCAN_DEPTH + 1), "]".repeat(MAX_SCAN_DEPTH + 1));
        let mut r = json_response(&deep);
        let err = apply_to_response(&mut r, &[remove(name("x"))]).unwrap_err();
        assert!(err.to_string().contains("nested deeper than 128"), "{err}");
        let ok = format!("{}{}", "[".repeat(MAX_SCAN_DEPTH), "]".repeat(MAX_SCAN_DEPTH));
        assert!(apply_to_response(&mut json_response(&ok), &[remove(name("x"))]).is_ok());
        // Plain pointers never recurse past their own length.
        assert!(apply_to_response(&mut json_response(&deep), &[remove(ptr("/x"))]).is_ok());
    }
}
