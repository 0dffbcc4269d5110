//! The canonical request target: the one form of a request's path and query that routing,
//! the policies and the upstream all see.
//!
//! A caller who can make the policies judge one path while the upstream serves another has
//! walked around every policy. Backends read targets differently: most resolve dot segments
//! (`/public/../admin`), many decode `%2F` into a separator, servlet containers strip `;`
//! parameters (`/public/..;/admin`), Windows-based servers treat `\` as `/`, some merge `//`.
//! So every adapter turns the raw target into a [`CanonicalTarget`] with [`canonicalize`],
//! routing and the policies see its decoded path, and a door forwards its
//! [`CanonicalTarget::origin_form`], never the raw target. A door that cannot rewrite what
//! its proxy forwards (forward-auth, ext_authz) refuses a target whose raw form differs
//! from the canonical one ([`require_canonical`]).
//!
//! What is done, in the style of Envoy's `normalize_path`, `merge_slashes` and
//! `path_with_escaped_slashes_action` (the defaults refuse everything ambiguous):
//! - RFC 3986 §6.2.2: percent-escapes of unreserved characters are decoded (`%7E` → `~`,
//!   `%2e` → `.`), the other escapes are written in upper case, characters a path may not
//!   hold raw (space, `"`, `{`, bytes beyond ASCII, …) are percent-encoded.
//! - Dot segments, also encoded ones (`%2e%2e`, `.%2E`), are removed (RFC 3986 §5.2.4) or
//!   refused ([`DotSegments`]).
//! - Encoded slashes and backslashes (`%2F`, `%5C`) and raw `\`: refused, kept encoded, or
//!   decoded into separators ([`EscapedSlashes`]).
//! - `;` path parameters: refused, or kept as ordinary characters ([`PathParameters`]); a
//!   segment that is a dot segment before its `;` (`..;x`) is refused always.
//! - Repeated slashes: refused, or merged ([`RepeatedSlashes`]).
//! - Always refused: a fragment, an invalid percent-escape, NUL and other control bytes raw
//!   or encoded, a path that is not UTF-8 once decoded, a target that is neither a path nor
//!   an absolute `http(s)` URL.
//!
//! The query is forwarded byte for byte as it arrived (only control bytes are refused), and
//! the policies see it split on `&` into decoded pairs, in order.
//!
//! No error repeats the target: it may carry a secret, and it is the attacker's text.

use serde::Deserialize;

use crate::exchange::parse_query;

/// What to do with `.` and `..` segments (also percent-encoded ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum DotSegments {
    /// Resolve them (RFC 3986 §5.2.4): `/a/../b` is `/b`, and `/b` is judged and forwarded.
    #[default]
    Remove,
    /// Refuse the request.
    Reject,
}

/// What to do with `%2F`, `%5C` (any case) and a raw `\` in the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum EscapedSlashes {
    /// Refuse the request.
    #[default]
    Reject,
    /// Keep them encoded inside their segment (a raw `\` is encoded as `%5C`); policies see
    /// `%2F` and `%5C` as written. For backends that never decode them into separators.
    KeepEncoded,
    /// Decode them into `/` separators before dot segments are resolved, and forward the
    /// result. For backends that decode them (most frameworks, static file servers).
    Decode,
}

/// What to do with `;` in the path (`/a;jsessionid=1/b`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum PathParameters {
    /// Refuse the request.
    #[default]
    Reject,
    /// Keep `;` as an ordinary character of its segment. A segment that is `.` or `..` before
    /// its `;` is still refused: servlet containers read `..;x` as `..`.
    Keep,
}

/// What to do with empty segments inside the path (`/a//b`). A trailing slash is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RepeatedSlashes {
    /// Refuse the request.
    #[default]
    Reject,
    /// Merge them (`/a//b` is `/a/b`).
    Merge,
}

/// `[request_target]` in `portcullis.toml`: how every door canonicalises request targets.
/// The defaults refuse everything that backends read differently; relax a rule only to
/// match what the backend behind the door does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TargetRules {
    /// `dot_segments = "remove" | "reject"` (default `remove`).
    pub dot_segments: DotSegments,
    /// `escaped_slashes = "reject" | "keep-encoded" | "decode"` (default `reject`).
    pub escaped_slashes: EscapedSlashes,
    /// `path_parameters = "reject" | "keep"` (default `reject`).
    pub path_parameters: PathParameters,
    /// `repeated_slashes = "reject" | "merge"` (default `reject`).
    pub repeated_slashes: RepeatedSlashes,
}

impl TargetRules {
    /// The rules with every option at its default (refuse what is ambiguous).
    pub const STRICT: TargetRules = TargetRules {
        dot_segments: DotSegments::Remove,
        escaped_slashes: EscapedSlashes::Reject,
        path_parameters: PathParameters::Reject,
        repeated_slashes: RepeatedSlashes::Reject,
    };

    /// These rules with `escaped_slashes` set.
    pub fn with_escaped_slashes(mut self, action: EscapedSlashes) -> TargetRules {
        self.escaped_slashes = action;
        self
    }

    /// These rules with `dot_segments` set.
    pub fn with_dot_segments(mut self, action: DotSegments) -> TargetRules {
        self.dot_segments = action;
        self
    }

    /// These rules with `path_parameters` set.
    pub fn with_path_parameters(mut self, action: PathParameters) -> TargetRules {
        self.path_parameters = action;
        self
    }

    /// These rules with `repeated_slashes` set.
    pub fn with_repeated_slashes(mut self, action: RepeatedSlashes) -> TargetRules {
        self.repeated_slashes = action;
        self
    }
}

/// Why a request target was refused. Front doors answer 400 `bad-request` with this
/// message, which names the rule and never the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// Not a path starting with `/` nor an absolute `http(s)` URL (e.g. `*`, `host:443`).
    #[error("the request target must be a path starting with `/` or an absolute http(s) URL")]
    NotOriginForm,
    /// A `#` fragment: a request target has none (RFC 9112 §3.2).
    #[error("the request target has a fragment (`#`), which a request target never has")]
    Fragment,
    /// A `%` not followed by two hex digits.
    #[error("the request target has an invalid percent-escape (`%` not followed by two hex digits)")]
    InvalidEscape,
    /// NUL or another control byte, raw or percent-encoded.
    #[error("the request target has a NUL or control character (raw or percent-encoded)")]
    ControlCharacter,
    /// The decoded path is not UTF-8.
    #[error("the request path is not UTF-8 once percent-decoded")]
    NotUtf8,
    /// `%2F` in the path under `escaped_slashes = "reject"`.
    #[error(
        "the request path has an encoded slash (`%2F`), which backends read differently; refused by \
         `[request_target] escaped_slashes = \"reject\"` (the default; see SECURITY.md for the other settings)"
    )]
    EncodedSlash,
    /// `%5C` or a raw `\` in the path under `escaped_slashes = "reject"`.
    #[error(
        "the request path has a backslash (`\\` or `%5C`), which some backends read as `/`; refused by \
         `[request_target] escaped_slashes = \"reject\"` (the default; see SECURITY.md for the other settings)"
    )]
    Backslash,
    /// A `.` or `..` segment under `dot_segments = "reject"`.
    #[error(
        "the request path has a `.` or `..` segment (perhaps percent-encoded); refused by \
         `[request_target] dot_segments = \"reject\"`"
    )]
    DotSegment,
    /// A segment that is `.` or `..` before a `;` (`..;x`), refused whatever the settings.
    #[error("the request path has a dot segment with `;` parameters (`..;`), which servlet containers read as `..`")]
    DotSegmentWithParameters,
    /// `;` in the path under `path_parameters = "reject"`.
    #[error(
        "the request path has `;` parameters, which some backends strip before routing; refused by \
         `[request_target] path_parameters = \"reject\"` (the default; `keep` treats `;` as a character)"
    )]
    PathParameters,
    /// An empty segment (`//`) under `repeated_slashes = "reject"`.
    #[error(
        "the request path has repeated slashes (`//`), which some backends merge; refused by \
         `[request_target] repeated_slashes = \"reject\"` (the default; `merge` merges them)"
    )]
    RepeatedSlash,
    /// An absolute-form target whose authority is not the `Host` header's, or carries
    /// userinfo.
    #[error(
        "the absolute-form request target names another host than the `Host` header (or carries userinfo); \
         the host routed on and the host the upstream sees must agree"
    )]
    AuthorityMismatch,
    /// A door that cannot rewrite what its proxy forwards was asked about a target that is
    /// not canonical.
    #[error(
        "the proxy in front forwards the request target as sent, and it is not in canonical form (dot segments, \
         lower-case or needless percent-escapes, …), so the upstream would not get the path the policies judge; \
         make the proxy normalise paths (see docs/front-doors.md)"
    )]
    NotCanonical,
}

impl TargetError {
    /// A short name of the rule that refused the target, for logs and metrics.
    pub fn rule(&self) -> &'static str {
        match self {
            TargetError::NotOriginForm => "invalid-target",
            TargetError::Fragment => "fragment",
            TargetError::InvalidEscape => "invalid-escape",
            TargetError::ControlCharacter => "control-character",
            TargetError::NotUtf8 => "not-utf8",
            TargetError::EncodedSlash => "escaped_slashes",
            TargetError::Backslash => "escaped_slashes",
            TargetError::DotSegment => "dot_segments",
            TargetError::DotSegmentWithParameters => "dot-segment-parameters",
            TargetError::PathParameters => "path_parameters",
            TargetError::RepeatedSlash => "repeated_slashes",
            TargetError::AuthorityMismatch => "authority-mismatch",
            TargetError::NotCanonical => "not-canonical",
        }
    }
}

/// A request target in canonical form: what routing and the policies see, and what a door
/// forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalTarget {
    path: String,
    query: Option<String>,
    decoded_path: String,
}

impl CanonicalTarget {
    /// The path as it is forwarded: normalised, percent-encoded where needed.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The raw query (without `?`), as it arrived; `None` when there was none or it was
    /// empty.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// The path as the policies see it: percent-decoded (except `%2F`/`%5C` kept under
    /// `escaped_slashes = "keep-encoded"`).
    pub fn decoded_path(&self) -> &str {
        &self.decoded_path
    }

    /// The query's decoded pairs, in order, as the policies see them.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        self.query.as_deref().map(parse_query).unwrap_or_default()
    }

    /// `path?query`: the target to forward.
    pub fn origin_form(&self) -> String {
        match &self.query {
            Some(query) => format!("{}?{query}", self.path),
            None => self.path.clone(),
        }
    }
}

/// One path segment being built: its forwarded form and its decoded bytes.
#[derive(Default)]
struct Segment {
    wire: String,
    decoded: Vec<u8>,
    /// Where the first raw `;` is in `decoded`, if any.
    parameters_at: Option<usize>,
}

impl Segment {
    /// Whether the segment is `.` or `..` (what dot-segment removal acts on).
    fn dots(&self) -> Option<Dots> {
        dots_of(&self.decoded)
    }

    fn push_literal(&mut self, byte: u8) {
        self.wire.push(byte as char);
        self.decoded.push(byte);
    }

    fn push_encoded(&mut self, byte: u8) {
        push_escape(&mut self.wire, byte);
        self.decoded.push(byte);
    }

    /// `%2F`/`%5C` kept encoded in both forms.
    fn push_kept_escape(&mut self, byte: u8) {
        push_escape(&mut self.wire, byte);
        self.decoded.extend_from_slice(&[b'%', HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]]);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dots {
    One,
    Two,
}

fn dots_of(bytes: &[u8]) -> Option<Dots> {
    match bytes {
        b"." => Some(Dots::One),
        b".." => Some(Dots::Two),
        _ => None,
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_escape(out: &mut String, byte: u8) {
    out.push('%');
    out.push(HEX[usize::from(byte >> 4)] as char);
    out.push(HEX[usize::from(byte & 0xf)] as char);
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Characters a path segment may hold raw besides unreserved ones (RFC 3986 `pchar`:
/// sub-delims, `:` and `@`); `;` is handled apart.
fn is_raw_pchar(byte: u8) -> bool {
    matches!(byte, b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':' | b'@')
}

fn is_control(byte: u8) -> bool {
    byte < 0x20 || byte == 0x7f
}

/// Canonicalises an origin-form target (`/path?query`) under `rules`. See the module
/// documentation for what is normalised and what is refused.
pub fn canonicalize(target: &str, rules: &TargetRules) -> Result<CanonicalTarget, TargetError> {
    if target.contains('#') {
        return Err(TargetError::Fragment);
    }
    let (raw_path, raw_query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    if !raw_path.starts_with('/') {
        return Err(TargetError::NotOriginForm);
    }
    if let Some(query) = raw_query {
        if query.bytes().any(is_control) {
            return Err(TargetError::ControlCharacter);
        }
        check_escapes(query.as_bytes())?;
    }
    let segments = split_segments(&raw_path.as_bytes()[1..], rules)?;
    let segments = merge_or_refuse_empty(segments, rules.repeated_slashes)?;
    let (segments, trailing_slash) = resolve_dots(segments, rules.dot_segments)?;

    let mut path = String::with_capacity(raw_path.len());
    let mut decoded = Vec::with_capacity(raw_path.len());
    for segment in &segments {
        path.push('/');
        path.push_str(&segment.wire);
        decoded.push(b'/');
        decoded.extend_from_slice(&segment.decoded);
    }
    if segments.is_empty() || trailing_slash {
        path.push('/');
        decoded.push(b'/');
    }
    let decoded_path = String::from_utf8(decoded).map_err(|_| TargetError::NotUtf8)?;
    Ok(CanonicalTarget { path, query: raw_query.filter(|q| !q.is_empty()).map(str::to_owned), decoded_path })
}

/// Refuses a target that [`canonicalize`] would change, for doors that cannot rewrite what
/// their proxy forwards: what the policies judge must be what the upstream receives.
pub fn require_canonical(target: &str, rules: &TargetRules) -> Result<CanonicalTarget, TargetError> {
    let canonical = canonicalize(target, rules)?;
    let sent_query = target.split_once('?').map(|(_, query)| query);
    let path_differs = target.split(['?']).next() != Some(canonical.path());
    // `/a?` forwards an empty query; the policies see none either way.
    let query_differs = sent_query.filter(|q| !q.is_empty()) != canonical.query();
    if path_differs || query_differs {
        return Err(TargetError::NotCanonical);
    }
    Ok(canonical)
}

/// Every `%` in `bytes` must start a valid escape.
fn check_escapes(bytes: &[u8]) -> Result<(), TargetError> {
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let value = escape_at(bytes, i)?;
            if is_control(value) {
                return Err(TargetError::ControlCharacter);
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// The byte the escape at `bytes[at]` (a `%`) stands for.
fn escape_at(bytes: &[u8], at: usize) -> Result<u8, TargetError> {
    match (bytes.get(at + 1).copied().and_then(hex_value), bytes.get(at + 2).copied().and_then(hex_value)) {
        (Some(high), Some(low)) => Ok(high << 4 | low),
        _ => Err(TargetError::InvalidEscape),
    }
}

/// Splits the path after its leading `/` into segments, decoding as it goes.
fn split_segments(path: &[u8], rules: &TargetRules) -> Result<Vec<Segment>, TargetError> {
    let mut segments = Vec::with_capacity(8);
    let mut current = Segment::default();
    let mut i = 0;
    while i < path.len() {
        let byte = path[i];
        i += 1;
        match byte {
            b'/' => segments.push(std::mem::take(&mut current)),
            b'%' => {
                let value = escape_at(path, i - 1)?;
                i += 2;
                match value {
                    b'/' | b'\\' => {
                        let refused = if value == b'/' { TargetError::EncodedSlash } else { TargetError::Backslash };
                        match rules.escaped_slashes {
                            EscapedSlashes::Reject => return Err(refused),
                            EscapedSlashes::KeepEncoded => current.push_kept_escape(value),
                            EscapedSlashes::Decode => segments.push(std::mem::take(&mut current)),
                        }
                    }
                    value if is_control(value) => return Err(TargetError::ControlCharacter),
                    value if is_unreserved(value) => current.push_literal(value),
                    value => current.push_encoded(value),
                }
            }
            b'\\' => match rules.escaped_slashes {
                EscapedSlashes::Reject => return Err(TargetError::Backslash),
                EscapedSlashes::KeepEncoded => current.push_kept_escape(b'\\'),
                EscapedSlashes::Decode => segments.push(std::mem::take(&mut current)),
            },
            b';' => match rules.path_parameters {
                PathParameters::Reject => return Err(TargetError::PathParameters),
                PathParameters::Keep => {
                    current.parameters_at.get_or_insert(current.decoded.len());
                    current.push_literal(b';');
                }
            },
            byte if is_control(byte) => return Err(TargetError::ControlCharacter),
            byte if is_unreserved(byte) || is_raw_pchar(byte) => current.push_literal(byte),
            byte => current.push_encoded(byte),
        }
    }
    segments.push(current);
    for segment in &segments {
        if let Some(at) = segment.parameters_at
            && dots_of(&segment.decoded[..at]).is_some()
        {
            return Err(TargetError::DotSegmentWithParameters);
        }
    }
    Ok(segments)
}

/// Empty segments other than the last one (a trailing slash) are repeated slashes.
fn merge_or_refuse_empty(mut segments: Vec<Segment>, rule: RepeatedSlashes) -> Result<Vec<Segment>, TargetError> {
    let last = segments.len().saturating_sub(1);
    let interior_empty = segments.iter().enumerate().any(|(i, s)| i < last && s.decoded.is_empty());
    if !interior_empty {
        return Ok(segments);
    }
    match rule {
        RepeatedSlashes::Reject => Err(TargetError::RepeatedSlash),
        RepeatedSlashes::Merge => {
            let mut index = 0;
            segments.retain(|s| {
                let keep = index == last || !s.decoded.is_empty();
                index += 1;
                keep
            });
            Ok(segments)
        }
    }
}

/// RFC 3986 §5.2.4 over whole segments. Returns the segments left (without the empty last
/// one of a trailing slash) and whether the path ends with `/`. `..` above the root stays
/// at the root, as the RFC says.
fn resolve_dots(segments: Vec<Segment>, rule: DotSegments) -> Result<(Vec<Segment>, bool), TargetError> {
    let count = segments.len();
    let mut out: Vec<Segment> = Vec::with_capacity(count);
    let mut trailing_slash = false;
    for (i, segment) in segments.into_iter().enumerate() {
        let last = i + 1 == count;
        match segment.dots() {
            Some(dots) => {
                if rule == DotSegments::Reject {
                    return Err(TargetError::DotSegment);
                }
                if dots == Dots::Two {
                    out.pop();
                }
                // `/a/..` and `/a/.` name the folder: `/` and `/a/`.
                trailing_slash = last;
            }
            None if last && segment.decoded.is_empty() => trailing_slash = !out.is_empty(),
            None => out.push(segment),
        }
    }
    Ok((out, trailing_slash))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(target: &str) -> Result<String, TargetError> {
        canonicalize(target, &TargetRules::default()).map(|t| t.origin_form())
    }

    fn canon_with(target: &str, rules: TargetRules) -> Result<String, TargetError> {
        canonicalize(target, &rules).map(|t| t.origin_form())
    }

    #[test]
    fn plain_targets_are_unchanged() {
        for target in ["/", "/a", "/a/", "/invoices/inv-1001?expand=lines&x=1", "/a:b@c!$&'()*+,=", "/~user/a.b_c-d"] {
            assert_eq!(canon(target).as_deref(), Ok(target), "{target}");
        }
    }

    #[test]
    fn dot_segments_are_removed_also_encoded() {
        for (target, expected) in [
            ("/public/../admin/users", "/admin/users"),
            ("/public/%2e%2e/admin/users", "/admin/users"),
            ("/public/.%2E/admin/users", "/admin/users"),
            ("/public/%2E./admin", "/admin"),
            ("/a/./b", "/a/b"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/..", "/"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/a/..", "/"),
            ("/./", "/"),
            ("/a/.../b", "/a/.../b"),
        ] {
            assert_eq!(canon(target).as_deref(), Ok(expected), "{target}");
        }
        let reject = TargetRules::default().with_dot_segments(DotSegments::Reject);
        assert_eq!(canon_with("/a/%2e%2e/b", reject), Err(TargetError::DotSegment));
        assert_eq!(canon_with("/a/b", reject).as_deref(), Ok("/a/b"));
    }

    #[test]
    fn escapes_are_normalised() {
        assert_eq!(canon("/%7euser/%41%62").as_deref(), Ok("/~user/Ab"));
        assert_eq!(canon("/caf%c3%a9").as_deref(), Ok("/caf%C3%A9"));
        let target = canonicalize("/caf%c3%a9/a%20b", &TargetRules::default()).unwrap();
        assert_eq!(target.decoded_path(), "/café/a b");
        assert_eq!(canon("/a b/{x}").as_deref(), Ok("/a%20b/%7Bx%7D"));
        assert_eq!(canon("/café").as_deref(), Ok("/caf%C3%A9"));
        assert_eq!(canon("/a%25b").as_deref(), Ok("/a%25b"));
        assert_eq!(canonicalize("/a%25b", &TargetRules::default()).unwrap().decoded_path(), "/a%b");
    }

    #[test]
    fn ambiguous_targets_are_refused_by_default() {
        for (target, error) in [
            ("/public/..%2fadmin/users", TargetError::EncodedSlash),
            ("/public%2F..%2Fadmin", TargetError::EncodedSlash),
            ("/public/..\\admin/users", TargetError::Backslash),
            ("/public/..%5cadmin", TargetError::Backslash),
            ("/public/..;/admin/users", TargetError::PathParameters),
            ("/a;jsessionid=1/b", TargetError::PathParameters),
            ("/public//admin", TargetError::RepeatedSlash),
            ("//admin", TargetError::RepeatedSlash),
            ("/a#frag", TargetError::Fragment),
            ("/a%zz", TargetError::InvalidEscape),
            ("/a%2", TargetError::InvalidEscape),
            ("/a%00b", TargetError::ControlCharacter),
            ("/a%0d%0aX-Injected:1", TargetError::ControlCharacter),
            ("/a\u{7f}", TargetError::ControlCharacter),
            ("/a?x=%00", TargetError::ControlCharacter),
            ("/a?x=%g1", TargetError::InvalidEscape),
            ("/%ff%fe", TargetError::NotUtf8),
            ("*", TargetError::NotOriginForm),
            ("admin", TargetError::NotOriginForm),
            ("", TargetError::NotOriginForm),
        ] {
            assert_eq!(canon(target), Err(error), "{target:?}");
        }
    }

    #[test]
    fn the_message_names_the_rule_and_not_the_target() {
        let err = canon("/secret-token-123/%2f").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("escaped_slashes"), "{message}");
        assert!(!message.contains("secret-token"), "{message}");
        assert_eq!(err.rule(), "escaped_slashes");
    }

    #[test]
    fn escaped_slash_settings() {
        let keep = TargetRules::default().with_escaped_slashes(EscapedSlashes::KeepEncoded);
        let target = canonicalize("/files/a%2fb/..", &keep).unwrap();
        assert_eq!(target.origin_form(), "/files/");
        let target = canonicalize("/files/a%2fb\\c", &keep).unwrap();
        assert_eq!(target.path(), "/files/a%2Fb%5Cc");
        assert_eq!(target.decoded_path(), "/files/a%2Fb%5Cc");
        // `..%2f` kept encoded is one segment named `..%2F`, not a dot segment.
        assert_eq!(canon_with("/public/..%2fadmin", keep).as_deref(), Ok("/public/..%2Fadmin"));

        let decode = TargetRules::default().with_escaped_slashes(EscapedSlashes::Decode);
        assert_eq!(canon_with("/public/..%2fadmin/users", decode).as_deref(), Ok("/admin/users"));
        assert_eq!(canon_with("/public/..\\admin", decode).as_deref(), Ok("/admin"));
        assert_eq!(canon_with("/public/..%5Cadmin", decode).as_deref(), Ok("/admin"));
        assert_eq!(canon_with("/a%2f%2fb", decode), Err(TargetError::RepeatedSlash));
    }

    #[test]
    fn path_parameter_and_slash_settings() {
        let keep = TargetRules::default().with_path_parameters(PathParameters::Keep);
        assert_eq!(canon_with("/a;v=1/b", keep).as_deref(), Ok("/a;v=1/b"));
        for target in ["/public/..;/admin", "/public/.;x/admin", "/public/%2e%2e;/admin"] {
            assert_eq!(canon_with(target, keep), Err(TargetError::DotSegmentWithParameters), "{target}");
        }
        let merge = TargetRules::default().with_repeated_slashes(RepeatedSlashes::Merge);
        assert_eq!(canon_with("//a///b//", merge).as_deref(), Ok("/a/b/"));
        assert_eq!(canon_with("/public//../admin", merge).as_deref(), Ok("/admin"));
    }

    #[test]
    fn query_is_kept_as_sent() {
        let target = canonicalize("/a?b=%2f&c=x+y&b=2", &TargetRules::default()).unwrap();
        assert_eq!(target.query(), Some("b=%2f&c=x+y&b=2"));
        assert_eq!(target.query_pairs()[0], ("b".to_owned(), "/".to_owned()));
        assert_eq!(canon("/a?").as_deref(), Ok("/a"));
    }

    #[test]
    fn require_canonical_refuses_what_would_change() {
        let rules = TargetRules::default();
        assert!(require_canonical("/a/b?x=1", &rules).is_ok());
        assert!(require_canonical("/a?", &rules).is_ok());
        for target in ["/a/../b", "/%7Ea", "/caf%c3%a9", "/a b", "/a/./"] {
            assert_eq!(require_canonical(target, &rules), Err(TargetError::NotCanonical), "{target}");
        }
        assert_eq!(require_canonical("/a%2fb", &rules), Err(TargetError::EncodedSlash));
    }

    #[test]
    fn canonical_targets_are_fixed_points() {
        let all = [
            TargetRules::default(),
            TargetRules::default().with_escaped_slashes(EscapedSlashes::KeepEncoded),
            TargetRules::default()
                .with_escaped_slashes(EscapedSlashes::Decode)
                .with_repeated_slashes(RepeatedSlashes::Merge)
                .with_path_parameters(PathParameters::Keep),
        ];
        let pieces = ["a", ".", "..", "%2e", "%2E%2e", "%2f", "%5C", "\\", ";p", "", "%41", "%c3%a9", "x y", "~"];
        for rules in all {
            for a in pieces {
                for b in pieces {
                    for c in ["", "/", "/z"] {
                        let target = format!("/{a}/{b}{c}");
                        if let Ok(once) = canonicalize(&target, &rules) {
                            let twice = canonicalize(&once.origin_form(), &rules).expect("canonical is valid");
                            assert_eq!(twice, once, "{target} under {rules:?}");
                            let path = once.path();
                            assert!(!path.contains("//"), "{target} -> {path}");
                            assert!(path.split('/').all(|s| s != "." && s != ".."), "{target} -> {path}");
                        }
                    }
                }
            }
        }
    }
}
