//! Reads JSONL traffic: one exchange per line, in the JSON form of
//! [`Exchange`] (`docs/exchange-format.md`).
//!
//! JSONL is what Portcullis itself, scripts and log pipelines write, and what a user
//! edits by hand to make a test case, so each line is either an exchange
//! (`{"request": {...}, "response": {...}}`) or, for brevity, a bare request object (a line
//! with neither a `request` nor a `response` key). Blank lines and lines starting with `#`
//! are skipped. The file is streamed line by line; a bad line is an
//! [`EntryError`](crate::adapters::traffic::EntryError) naming its 1-based line number and
//! the field (`line 7: request.headers: invalid type ...`), and the other lines still read.

use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::adapters::har::position_free;
use crate::adapters::traffic::{Flow, Format, Locator, Sink, Summary, TrafficError, TrafficItem};
use crate::exchange::{Exchange, Request};

/// The top-level keys of an exchange or a request in their JSON form. A JSON object whose
/// first key is one of these is taken for JSONL when sniffing.
pub const EXCHANGE_KEYS: &[&str] = &[
    "request",
    "response",
    "id",
    "method",
    "url",
    "scheme",
    "authority",
    "path",
    "query",
    "headers",
    "body",
    "principal",
    "operation",
    "client_address",
    "received_at_ms",
];

/// Reads the JSONL file at `path` (see [`read_jsonl`]).
pub fn read_jsonl_file<R: Flow>(path: &Path, each: impl FnMut(TrafficItem) -> R) -> Result<Summary, TrafficError> {
    let file = std::fs::File::open(path).map_err(|source| TrafficError::Open { file: path.into(), source })?;
    read_jsonl(BufReader::with_capacity(256 * 1024, file), path, each)
}

/// Reads JSONL from `reader` line by line, handing each exchange (or line error) to `each`.
/// `source` names the file in errors; a request without an `id` gets
/// `<file stem>:<line number>`. Only a read failure is a file error.
pub fn read_jsonl<R: Flow>(
    reader: impl BufRead,
    source: &Path,
    mut each: impl FnMut(TrafficItem) -> R,
) -> Result<Summary, TrafficError> {
    let mut sink = Sink::new(source, &mut each);
    let mut lines = Lines::new(reader);
    while let Some((line, text)) = lines.next_line().map_err(|e| read_error(source, sink.items, e))? {
        let result = text.and_then(|text| parse_line(text, &sink.stem, line));
        if !sink.emit(Locator::Line(line), result) {
            break;
        }
    }
    Ok(sink.summary(Format::Jsonl))
}

/// The lines of a JSONL file as every JSONL reader takes them (this module's exchanges and
/// [`mcp_session`](crate::adapters::mcp_session)'s recorded MCP sessions): read one at a
/// time however long the file, a UTF-8 byte order mark on the first line dropped, each line
/// trimmed, blank lines and `#` comments skipped, and numbered from 1 as an editor does, so
/// an entry error names the line a person opens.
pub(crate) struct Lines<R> {
    reader: R,
    /// The current line (its buffer reused for the next one).
    text: String,
    line: usize,
}

impl<R: BufRead> Lines<R> {
    /// Lines read from `reader`.
    pub(crate) fn new(reader: R) -> Lines<R> {
        Lines { reader, text: String::new(), line: 0 }
    }

    /// The next line that holds something: its number and its trimmed text, or the entry
    /// error `("", "not valid UTF-8 at byte N")` for a line that is not UTF-8 (the lines
    /// after it still read). `Ok(None)` at the end; `Err` when reading failed.
    #[expect(clippy::type_complexity, reason = "a line's number, then its text or its entry error")]
    pub(crate) fn next_line(&mut self) -> std::io::Result<Option<(usize, Result<&str, (String, String)>)>> {
        loop {
            let mut bytes = std::mem::take(&mut self.text).into_bytes();
            bytes.clear();
            if self.reader.read_until(b'\n', &mut bytes)? == 0 {
                return Ok(None);
            }
            self.line += 1;
            if self.line == 1 && bytes.starts_with(b"\xEF\xBB\xBF") {
                bytes.drain(..3);
            }
            match String::from_utf8(bytes) {
                Ok(text) => {
                    self.text = text;
                    let trimmed = self.text.trim();
                    if !trimmed.is_empty() && !trimmed.starts_with('#') {
                        return Ok(Some((self.line, Ok(self.text.trim()))));
                    }
                }
                Err(err) => {
                    let message = format!("not valid UTF-8 at byte {}", err.utf8_error().valid_up_to());
                    let mut bytes = err.into_bytes();
                    bytes.clear();
                    self.text = String::from_utf8(bytes).unwrap_or_default();
                    return Ok(Some((self.line, Err((String::new(), message)))));
                }
            }
        }
    }
}

/// A failed read of `source` after `items` entries, as the file error readers return.
pub(crate) fn read_error(source: &Path, items: usize, source_error: std::io::Error) -> TrafficError {
    TrafficError::Read { file: source.into(), items, source: source_error }
}

/// One line: an exchange, or a bare request. The error is (field path, message).
fn parse_line(text: &str, stem: &str, line: usize) -> Result<Exchange, (String, String)> {
    let keys = top_level_keys(text.as_bytes()).map_err(|message| (String::new(), message))?;
    let problem = |err: serde_path_to_error::Error<serde_json::Error>| {
        let path = err.path().to_string();
        (if path == "." { String::new() } else { path }, position_free(err.inner()))
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let mut exchange = if keys.has_request || keys.has_response {
        serde_path_to_error::deserialize::<_, Exchange>(&mut de).map_err(problem)?
    } else {
        Exchange { request: serde_path_to_error::deserialize::<_, Request>(&mut de).map_err(problem)?, response: None }
    };
    if exchange.request.id.is_empty() {
        exchange.request.id = format!("{stem}:{line}");
    }
    Ok(exchange)
}

/// Which telling keys a JSON object has at its top level.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TopKeys {
    pub has_log: bool,
    pub has_request: bool,
    pub has_response: bool,
}

/// Scans one JSON document (without building it) for its top-level keys. An error when it
/// is not JSON, not an object, or is followed by more text.
pub(crate) fn top_level_keys(text: &[u8]) -> Result<TopKeys, String> {
    let mut de = serde_json::Deserializer::from_slice(text);
    let outcome = de.deserialize_any(KeysVisitor).and_then(|keys| de.end().map(|()| keys));
    outcome.map_err(|err| match err.classify() {
        serde_json::error::Category::Data => position_free(&err),
        _ => format!("not valid JSON at column {}: {}", err.column(), position_free(&err)),
    })
}

struct KeysVisitor;

impl<'de> Visitor<'de> for KeysVisitor {
    type Value = TopKeys;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object (an exchange or a request)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopKeys, A::Error> {
        let mut keys = TopKeys::default();
        while let Some(key) = map.next_key_seed(KeyName)? {
            match key {
                Some("log") => keys.has_log = true,
                Some("request") => keys.has_request = true,
                Some("response") => keys.has_response = true,
                _ => {}
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(keys)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<TopKeys, A::Error> {
        Err(de::Error::custom("expected a JSON object (an exchange or a request), found a list"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<TopKeys, E> {
        Err(E::custom("expected a JSON object (an exchange or a request), found a string"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<TopKeys, E> {
        Err(E::custom("expected a JSON object (an exchange or a request), found a number"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<TopKeys, E> {
        Err(E::custom("expected a JSON object (an exchange or a request), found a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<TopKeys, E> {
        Err(E::custom("expected a JSON object (an exchange or a request), found a number"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<TopKeys, E> {
        Err(E::custom("expected a JSON object (an exchange or a request), found a boolean"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<TopKeys, E> {
        Err(E::custom("expected a JSON object (an exchange or a request), found null"))
    }
}

/// A key, as one of the few that matter (without allocating).
struct KeyName;

impl<'de> DeserializeSeed<'de> for KeyName {
    type Value = Option<&'static str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyName {
    type Value = Option<&'static str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(["log", "request", "response"].into_iter().find(|key| *key == v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::traffic::{EntryError, read_traffic};
    use crate::exchange::PrincipalKind;
    use std::ops::ControlFlow;

    type Items = Vec<(usize, Locator, Result<Exchange, EntryError>)>;

    /// Every line [`Lines`] hands out, as `(number, text or error message)`.
    fn lines(bytes: &[u8]) -> Vec<(usize, Result<String, String>)> {
        let mut lines = Lines::new(bytes);
        let mut out = Vec::new();
        while let Some((line, text)) = lines.next_line().unwrap() {
            out.push((line, text.map(str::to_owned).map_err(|(_, message)| message)));
        }
        out
    }

    #[test]
    fn lines_drop_a_leading_bom_skip_blanks_and_comments_and_name_bad_utf8() {
        let text =
            b"\xEF\xBB\xBF{\"a\":1}\r\n\n  # a comment\n\t{\"b\":2}  \n\xEF\xBB\xBF{}\n{\"c\xFF\"}\n   \n{\"d\":4}";
        assert_eq!(
            lines(text),
            [
                (1, Ok("{\"a\":1}".to_owned())),
                (4, Ok("{\"b\":2}".to_owned())),
                (5, Ok("\u{feff}{}".to_owned())),
                (6, Err("not valid UTF-8 at byte 3".to_owned())),
                (8, Ok("{\"d\":4}".to_owned())),
            ],
            "a BOM only opens the file; the lines after a bad one still read; no final newline needed"
        );
        assert!(lines(b"").is_empty());
        assert!(lines(b"\n# only\n\n").is_empty());
    }

    fn read(text: &str) -> (Items, Summary) {
        let mut items = Vec::new();
        let summary = read_jsonl(text.as_bytes(), Path::new("rec/calls.jsonl"), |item| {
            items.push((item.index, item.at, item.result));
        })
        .unwrap();
        (items, summary)
    }

    #[test]
    fn exchanges_and_bare_requests_with_comments_and_blank_lines() {
        let text = "\u{feff}# recorded by hand\n\
            {\"request\": {\"method\": \"post\", \"url\": \"https://api.test/a?x=1\", \"body\": {\"json\": {\"k\": 1}}}, \"response\": {\"status\": 404}}\n\
            \n   \n\
            {\"id\": \"mine\", \"url\": \"/b\", \"headers\": {\"Host\": \"h.test\"}, \"principal\": {\"kind\": \"user\", \"id\": \"alice\"}}\r\n\
            {\"request\": {\"url\": \"/c\"}}";
        let (items, summary) = read(text);
        assert_eq!((summary.items, summary.errors, summary.format), (3, 0, Format::Jsonl));
        let at: Vec<_> = items.iter().map(|(i, at, _)| (*i, *at)).collect();
        assert_eq!(at, [(0, Locator::Line(2)), (1, Locator::Line(5)), (2, Locator::Line(6))]);
        let first = items[0].2.as_ref().unwrap();
        assert_eq!((first.request.method.as_str(), first.request.id.as_str()), ("POST", "calls:2"));
        assert_eq!(first.request.query, [("x".to_owned(), "1".to_owned())]);
        assert_eq!(first.response.as_ref().unwrap().status, 404);
        let bare = items[1].2.as_ref().unwrap();
        assert_eq!((bare.request.id.as_str(), bare.request.authority.as_str()), ("mine", "h.test"));
        assert_eq!(bare.request.principal.kind, PrincipalKind::User);
        assert_eq!(bare.response, None);
        assert_eq!(items[2].2.as_ref().unwrap().request.path, "/c");
    }

    #[test]
    fn a_bad_line_names_its_line_and_field_and_the_rest_read() {
        let text = [
            r#"{"request": {"url": "/ok"}}"#,
            r#"{"request": {"url": "/a", "headers": 5}}"#,
            r#"{"request": {"url": "/a"}, "response": {"status": "x"}}"#,
            r#"{"url": "/a", "heders": {}}"#,
            r#"{"request": {"url": "/a"}"#,
            r"[1, 2]",
            r#"{"request": {"url": "/a"}} {"x": 1}"#,
            r#"{"response": {"status": 200}}"#,
            r#"{"request": {"url": "ftp://a"}}"#,
            "",
            r#"{"request": {"url": "/last"}}"#,
        ]
        .join("\n");
        let (items, summary) = read(&text);
        assert_eq!((summary.items, summary.errors), (10, 8));
        assert_eq!(items[9].2.as_ref().unwrap().request.path, "/last");
        assert_eq!(items[9].1, Locator::Line(11), "blank line 10 skipped");
        let errors: Vec<(String, String)> =
            items.iter().filter_map(|(_, _, r)| r.as_ref().err()).map(|e| (e.to_string(), e.field.clone())).collect();
        let fields: Vec<&str> = errors.iter().map(|(_, f)| f.as_str()).collect();
        assert_eq!(fields, ["request.headers", "response.status", "heders", "", "", "", "", "request"]);
        assert!(errors[0].0.starts_with("rec/calls.jsonl: line 2: request.headers: "), "{}", errors[0].0);
        assert!(errors[1].0.starts_with("rec/calls.jsonl: line 3: response.status: invalid type"), "{}", errors[1].0);
        assert!(errors[2].0.contains("unknown field `heders`"), "{}", errors[2].0);
        assert!(errors[3].0.contains("line 5: not valid JSON at column"), "{}", errors[3].0);
        assert!(errors[4].0.ends_with("line 6: expected a JSON object (an exchange or a request), found a list"));
        assert!(errors[5].0.contains("trailing characters"), "{}", errors[5].0);
        assert!(errors[6].0.contains("missing field `request`"), "{}", errors[6].0);
        assert!(errors[7].0.contains("only http and https"), "{}", errors[7].0);
    }

    #[test]
    fn non_utf8_line_is_a_line_error() {
        let mut bytes = b"{\"url\": \"/a\"}\n{\"url\": \"/\xff\"}\n".to_vec();
        bytes.extend_from_slice(b"{\"url\": \"/c\"}");
        let mut results = Vec::new();
        read_jsonl(&bytes[..], Path::new("x.jsonl"), |item| results.push(item.result)).unwrap();
        assert_eq!(results.len(), 3);
        assert_eq!(results[1].as_ref().unwrap_err().message, "not valid UTF-8 at byte 10");
    }

    #[test]
    fn round_trip_and_stop_through_the_common_front() {
        let dir = std::env::temp_dir().join(format!("portcullis-jsonl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let har = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/traffic/microcks_api-pastries-0.0.1.har");
        let mut recorded = Vec::new();
        read_traffic(&har, |item| recorded.push(item.result.unwrap())).unwrap();
        let lines: Vec<String> = recorded.iter().map(|e| serde_json::to_string(e).unwrap()).collect();
        // No extension: sniffed as JSONL.
        let path = dir.join("replay");
        std::fs::write(&path, lines.join("\n")).unwrap();
        let mut back = Vec::new();
        let summary = read_traffic(&path, |item| back.push(item.result.unwrap())).unwrap();
        assert_eq!(summary.format, Format::Jsonl);
        // JSON bodies come back as the same JSON, not always the same bytes (key order).
        let as_json = |all: &[Exchange]| serde_json::to_value(all).unwrap();
        assert_eq!(as_json(&back), as_json(&recorded));
        assert_eq!(back.len(), 6);

        let mut seen = 0;
        let summary = read_traffic(&path, |_| {
            seen += 1;
            ControlFlow::Break(())
        })
        .unwrap();
        assert_eq!((seen, summary.items, summary.stopped), (1, 1, true));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
