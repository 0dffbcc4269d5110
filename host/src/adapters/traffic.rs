//! One front for reading recorded traffic files (HAR, JSONL) into normalised exchanges.
//!
//! Users replay what they recorded with browser devtools, mitmproxy, Charles, Postman or a
//! proxy to see what their policies decide. Recorded files are large and imperfect, so the
//! readers here:
//!
//! - **stream**: each item is handed to a callback as soon as it is read, and only one
//!   entry is held at a time (a HAR file is never held as a `serde_json::Value` tree);
//! - **separate file errors from entry errors**: a file that cannot be opened, is not JSON
//!   or has no `log.entries` is a [`TrafficError`]; one bad entry is an [`EntryError`] that
//!   names the file, the entry (or line) and the field, and the other entries still read.
//!   Turning the first entry error into a failure (`--strict`) is the caller's choice;
//! - **tolerate what real tools write** (see [`super::har`] and `docs/traffic-formats.md`).
//!
//! ```no_run
//! use portcullis_host::adapters::traffic::{read_traffic, TrafficItem};
//! let summary = read_traffic("capture.har".as_ref(), |item: TrafficItem| match item.result {
//!     Ok(exchange) => println!("{} {}", exchange.request.method, exchange.request.path),
//!     Err(err) => eprintln!("{err}"),
//! })?;
//! println!("{} entries, {} unreadable", summary.items, summary.errors);
//! # Ok::<(), portcullis_host::adapters::traffic::TrafficError>(())
//! ```

use std::fmt;
use std::io::{self, Read};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::exchange::Exchange;

/// A traffic file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// HTTP Archive 1.2 / 1.3 (`{"log": {"entries": [...]}}`).
    Har,
    /// One exchange (or bare request) as JSON per line.
    Jsonl,
    /// A recorded MCP session: one JSON-RPC message per line ([`super::mcp::read_mcp_jsonl`]).
    Mcp,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Har => "HAR",
            Format::Jsonl => "JSONL",
            Format::Mcp => "MCP session (JSONL)",
        })
    }
}

/// How many bytes [`Format::detect`] reads to sniff a file without a known extension.
pub const SNIFF_BYTES: usize = 64 * 1024;

impl Format {
    /// The format named by the file's extension: `.har` → HAR; `.jsonl`, `.ndjson` → JSONL
    /// (case-insensitive). `None` for anything else, including `.json`.
    pub fn from_extension(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "har" => Some(Format::Har),
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            _ => None,
        }
    }

    /// Guesses the format from the start of a file (a UTF-8 BOM and whitespace skipped): an
    /// object whose top level has a `log` key is HAR; a first line that is a complete JSON
    /// object, or a `#` comment, is JSONL; an object whose first key is an exchange or
    /// request field (`request`, `method`, `url`, ...) on a first line longer than `prefix`
    /// is JSONL too. JSONL whose first line (after `#` comments) is a JSON-RPC message or
    /// an `mcp_endpoint` line is a recorded MCP session. Anything else is `None`.
    pub fn sniff(prefix: &[u8]) -> Option<Format> {
        match Format::sniff_har_or_jsonl(prefix) {
            Some(Format::Jsonl) if first_line_is_mcp(prefix) => Some(Format::Mcp),
            other => other,
        }
    }

    fn sniff_har_or_jsonl(prefix: &[u8]) -> Option<Format> {
        let text = prefix.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(prefix);
        let start = text.iter().position(|b| !b.is_ascii_whitespace())?;
        let text = &text[start..];
        match text[0] {
            b'#' => return Some(Format::Jsonl),
            b'{' => {}
            _ => return None,
        }
        if first_key(text).as_deref() == Some("log") {
            return Some(Format::Har);
        }
        match text.iter().position(|b| *b == b'\n') {
            Some(end) => match crate::adapters::jsonl::top_level_keys(&text[..end]) {
                Ok(keys) if keys.has_log => Some(Format::Har),
                Ok(_) => Some(Format::Jsonl),
                Err(_) => None,
            },
            // The whole prefix is one unfinished line: a long JSONL line or a minified HAR
            // file whose first key is not `log`. Only a known exchange field says JSONL.
            None if prefix.len() >= SNIFF_BYTES => match first_key(text) {
                Some(key) if crate::adapters::jsonl::EXCHANGE_KEYS.contains(&key.as_str()) => Some(Format::Jsonl),
                _ => None,
            },
            None => match crate::adapters::jsonl::top_level_keys(text) {
                Ok(keys) if keys.has_log => Some(Format::Har),
                Ok(_) => Some(Format::Jsonl),
                Err(_) => None,
            },
        }
    }

    /// The file's format: by extension, else by sniffing its first [`SNIFF_BYTES`]. A
    /// `.jsonl`/`.ndjson` file whose first line is a JSON-RPC message is an MCP session.
    pub fn detect(path: &Path) -> Result<Format, TrafficError> {
        let by_extension = Format::from_extension(path);
        if by_extension == Some(Format::Har) {
            return Ok(Format::Har);
        }
        let file = std::fs::File::open(path).map_err(|source| TrafficError::Open { file: path.into(), source })?;
        let mut prefix = Vec::with_capacity(SNIFF_BYTES);
        file.take(SNIFF_BYTES as u64).read_to_end(&mut prefix).map_err(|source| TrafficError::Read {
            file: path.into(),
            items: 0,
            source,
        })?;
        if by_extension == Some(Format::Jsonl) {
            return Ok(if first_line_is_mcp(&prefix) { Format::Mcp } else { Format::Jsonl });
        }
        Format::sniff(&prefix).ok_or_else(|| TrafficError::UnknownFormat {
            file: path.into(),
            reason: if prefix.iter().all(u8::is_ascii_whitespace) {
                "the file is empty".into()
            } else {
                "it is neither a HAR document nor one JSON object per line".into()
            },
        })
    }
}

/// Whether the first line that is neither blank nor a `#` comment is an MCP session line.
fn first_line_is_mcp(prefix: &[u8]) -> bool {
    let text = prefix.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(prefix);
    text.split(|b| *b == b'\n')
        .map(<[u8]>::trim_ascii)
        .find(|line| !line.is_empty() && !line.starts_with(b"#"))
        .is_some_and(crate::adapters::mcp::is_session_line)
}

/// The first key of the JSON object `text` starts with, if it can be read.
fn first_key(text: &[u8]) -> Option<String> {
    let rest = text.strip_prefix(b"{")?;
    let start = rest.iter().position(|b| !b.is_ascii_whitespace())?;
    let rest = &rest[start..];
    if rest.first() != Some(&b'"') {
        return None;
    }
    let mut escaped = false;
    for (i, b) in rest.iter().enumerate().skip(1) {
        match b {
            b'\\' if !escaped => escaped = true,
            b'"' if !escaped => return serde_json::from_slice(&rest[..=i]).ok(),
            _ => escaped = false,
        }
    }
    None
}

/// Where an item sits in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Locator {
    /// A HAR entry: its index in `log.entries`, counting from 0.
    Entry(usize),
    /// A JSONL line number, counting from 1.
    Line(usize),
}

impl fmt::Display for Locator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Locator::Entry(index) => write!(f, "entry index {index} (0-based)"),
            Locator::Line(line) => write!(f, "line {line}"),
        }
    }
}

/// One entry (HAR) or line (JSONL) that could not be read. The other entries still are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct EntryError {
    /// The file it is in.
    pub file: Arc<Path>,
    /// The entry index or line number.
    pub at: Locator,
    /// The field, relative to the entry or line: `request.url`, `request.headers[2].name`;
    /// empty when the entry as a whole is wrong (not an object, not JSON).
    pub field: String,
    /// What is wrong: `missing field`, `invalid type: ...`.
    pub message: String,
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file.display())?;
        match self.at {
            Locator::Entry(index) => {
                write!(f, "log.entries[{index}]")?;
                if !self.field.is_empty() {
                    write!(f, ".{}", self.field)?;
                }
                write!(f, ": {} (entry index {index}, 0-based)", self.message)
            }
            Locator::Line(line) => {
                write!(f, "line {line}: ")?;
                if !self.field.is_empty() {
                    write!(f, "{}: ", self.field)?;
                }
                f.write_str(&self.message)
            }
        }
    }
}

/// Why a traffic file could not be read (or could not be read to its end). Entries read
/// before the error have already been handed to the callback.
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    /// The file could not be opened.
    #[error("{}: cannot open: {source}", file.display())]
    Open {
        /// The file.
        file: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Reading failed part way.
    #[error("{}: read failed after {items} entries: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// How many items were handed out before.
        items: usize,
        /// Why.
        source: io::Error,
    },
    /// The HAR document is not valid JSON (a syntax error, or the file ends early).
    #[error(
        "{}: not valid JSON at line {line}, column {column} (after {items} entries were read): {message}",
        file.display()
    )]
    Json {
        /// The file.
        file: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// How many entries were handed out before.
        items: usize,
        /// serde_json's description, without its position.
        message: String,
    },
    /// Valid JSON, but not a HAR document.
    #[error("{}: not a HAR file: {reason}", file.display())]
    NotHar {
        /// The file.
        file: PathBuf,
        /// What is missing: `no \`log\` object`, `\`log.entries\` is not a list`.
        reason: String,
    },
    /// The format could not be told from the extension or the content.
    #[error("{}: cannot tell the traffic format: {reason}; name it .har, .jsonl or .ndjson", file.display())]
    UnknownFormat {
        /// The file.
        file: PathBuf,
        /// Why.
        reason: String,
    },
}

/// One item read from a traffic file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficItem {
    /// Position among the file's items, counting from 0 (for HAR, the entry index; for
    /// JSONL, skipped blank and `#` lines do not count).
    pub index: usize,
    /// Where it is in the file.
    pub at: Locator,
    /// The file (shared by every item of one file).
    pub source: Arc<Path>,
    /// The exchange, or why this entry could not be read.
    pub result: Result<Exchange, EntryError>,
}

/// What a read did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// The format read.
    pub format: Format,
    /// Items handed to the callback.
    pub items: usize,
    /// How many of them were entry errors.
    pub errors: usize,
    /// True when the callback stopped the read early.
    pub stopped: bool,
}

/// What a callback returns: `()` to read on, or a [`ControlFlow`] to stop early
/// (`ControlFlow::Break(())`, e.g. on the first entry error under `--strict`).
pub trait Flow {
    /// Whether to read the next item.
    fn proceed(self) -> bool;
}

impl Flow for () {
    fn proceed(self) -> bool {
        true
    }
}

impl Flow for ControlFlow<()> {
    fn proceed(self) -> bool {
        self.is_continue()
    }
}

/// Reads a traffic file of either format (see [`Format::detect`]) and hands each item to
/// `each`, in file order. Returns a file-level error if the file cannot be opened or read
/// to its end; items read before that have already been handed out.
pub fn read_traffic<R: Flow>(path: &Path, each: impl FnMut(TrafficItem) -> R) -> Result<Summary, TrafficError> {
    read_traffic_as(path, Format::detect(path)?, each)
}

/// [`read_traffic`] with the format given.
pub(crate) fn read_traffic_as<R: Flow>(
    path: &Path,
    format: Format,
    each: impl FnMut(TrafficItem) -> R,
) -> Result<Summary, TrafficError> {
    match format {
        Format::Har => crate::adapters::har::read_har_file(path, each),
        Format::Jsonl => crate::adapters::jsonl::read_jsonl_file(path, each),
        Format::Mcp => crate::adapters::mcp::read_mcp_jsonl_file(path, each),
    }
}

/// The file's stem, for request ids (`petstore.har` → `petstore`).
pub(crate) fn stem_of(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Counts items and errors, and asks the callback whether to go on.
pub(crate) struct Sink<'f, F> {
    pub source: Arc<Path>,
    pub stem: String,
    pub each: &'f mut F,
    pub items: usize,
    pub errors: usize,
    pub stopped: bool,
}

impl<'f, F, R> Sink<'f, F>
where
    F: FnMut(TrafficItem) -> R,
    R: Flow,
{
    pub fn new(source: &Path, each: &'f mut F) -> Self {
        Sink { source: source.into(), stem: stem_of(source), each, items: 0, errors: 0, stopped: false }
    }

    /// Hands one item out; false when the callback asked to stop.
    pub fn emit(&mut self, at: Locator, result: Result<Exchange, (String, String)>) -> bool {
        let result = result.map_err(|(field, message)| EntryError { file: self.source.clone(), at, field, message });
        self.errors += usize::from(result.is_err());
        let item = TrafficItem { index: self.items, at, source: self.source.clone(), result };
        self.items += 1;
        if (self.each)(item).proceed() {
            true
        } else {
            self.stopped = true;
            false
        }
    }

    pub fn summary(&self, format: Format) -> Summary {
        Summary { format, items: self.items, errors: self.errors, stopped: self.stopped }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_decides_first() {
        assert_eq!(Format::from_extension("a/b.HAR".as_ref()), Some(Format::Har));
        assert_eq!(Format::from_extension("x.jsonl".as_ref()), Some(Format::Jsonl));
        assert_eq!(Format::from_extension("x.ndjson".as_ref()), Some(Format::Jsonl));
        assert_eq!(Format::from_extension("x.json".as_ref()), None);
        assert_eq!(Format::from_extension("har".as_ref()), None);
    }

    #[test]
    fn sniffing_tells_har_from_jsonl() {
        assert_eq!(Format::sniff(b"\xEF\xBB\xBF  {\n  \"log\": {\n \"entries\": []}}"), Some(Format::Har));
        assert_eq!(Format::sniff(b"{\"comment\": \"x\", \"log\": {\"entries\": []}}"), Some(Format::Har));
        assert_eq!(Format::sniff(b"{\"request\": {\"url\": \"/a\"}}\n{\"url\": \"/b\"}\n"), Some(Format::Jsonl));
        assert_eq!(Format::sniff(b"{\"method\": \"GET\", \"url\": \"/a\"}"), Some(Format::Jsonl));
        assert_eq!(Format::sniff(b"# recorded\n{\"url\": \"/a\"}"), Some(Format::Jsonl));
        assert_eq!(Format::sniff(b"{\n  \"request\": {}\n}"), None, "one pretty-printed object is not JSONL");
        assert_eq!(Format::sniff(b"[1, 2]"), None);
        assert_eq!(Format::sniff(b"  \n"), None);
        let mut long = b"{\"request\": {\"body\": {\"text\": \"".to_vec();
        long.resize(SNIFF_BYTES, b'a');
        assert_eq!(Format::sniff(&long), Some(Format::Jsonl), "a first line longer than the prefix");
    }

    #[test]
    fn mcp_sessions_are_told_from_exchange_jsonl() {
        assert_eq!(Format::sniff(b"# s\n{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n"), Some(Format::Mcp));
        assert_eq!(Format::sniff(b"{\"mcp_endpoint\":\"http://x/mcp\"}\n"), Some(Format::Mcp));
        assert_eq!(Format::sniff(b"{\"url\":\"/a\"}\n"), Some(Format::Jsonl));
        let dir = std::env::temp_dir().join(format!("portcullis-traffic-mcp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let session = dir.join("session.jsonl");
        std::fs::write(&session, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n").unwrap();
        assert_eq!(Format::detect(&session).unwrap(), Format::Mcp);
        let plain = dir.join("plain.jsonl");
        std::fs::write(&plain, "{\"url\":\"/a\"}\n").unwrap();
        assert_eq!(Format::detect(&plain).unwrap(), Format::Jsonl);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn detect_sniffs_files_without_a_known_extension() {
        let dir = std::env::temp_dir().join(format!("portcullis-traffic-detect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let har = dir.join("capture.json");
        std::fs::write(&har, "{\"log\": {\"entries\": []}}").unwrap();
        assert_eq!(Format::detect(&har).unwrap(), Format::Har);
        let empty = dir.join("empty.txt");
        std::fs::write(&empty, "").unwrap();
        let err = Format::detect(&empty).unwrap_err();
        assert!(err.to_string().contains("the file is empty"), "{err}");
        let missing = dir.join("missing.json");
        assert!(matches!(Format::detect(&missing), Err(TrafficError::Open { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn entry_errors_name_file_entry_and_field() {
        let err = EntryError {
            file: Path::new("t/x.har").into(),
            at: Locator::Entry(3),
            field: "request.url".into(),
            message: "missing field".into(),
        };
        assert_eq!(err.to_string(), "t/x.har: log.entries[3].request.url: missing field (entry index 3, 0-based)");
        let err = EntryError { at: Locator::Line(7), field: "request.headers".into(), ..err };
        assert_eq!(err.to_string(), "t/x.har: line 7: request.headers: missing field");
        let err = EntryError { field: String::new(), ..err };
        assert_eq!(err.to_string(), "t/x.har: line 7: missing field");
    }
}
