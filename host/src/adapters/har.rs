//! Reads HTTP Archive (HAR 1.2 and 1.3) files into normalised exchanges, one entry at a
//! time.
//!
//! HAR is what browser devtools, mitmproxy, Charles, Fiddler, Postman and many proxies
//! export, and what they write differs from the spec: no `log.version`, `creator` as a
//! string, `"null"` strings, `mimeType: "text"` on JSON, base64 bodies, HTTP/2
//! pseudo-headers, missing optional objects. A reader that refuses those is of no use, so
//! this one reads only the fields it needs and is lenient about everything else:
//!
//! - Every field is read through a lenient slot: a value of the wrong type is
//!   remembered, not fatal to the stream, so one bad entry becomes an [`EntryError`] that
//!   names its field (`log.entries[3].request.url: missing field`) while the other entries
//!   still read. Only broken JSON (or a missing `log.entries`) stops the file.
//! - `log.entries` is streamed: a `serde` visitor hands each entry to the callback as soon
//!   as it is read, straight from the reader, so memory stays at one entry whatever the
//!   file's size. Each string is allocated once and moved into the exchange.
//!
//! The mapping field by field is in `docs/traffic-formats.md`.
//!
//! [`EntryError`]: crate::adapters::traffic::EntryError

use std::fmt;
use std::io::{self, BufRead, BufReader};
use std::marker::PhantomData;
use std::path::Path;

use base64::Engine as _;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::adapters::http::normalise_authority;
use crate::adapters::traffic::{Flow, Format, Locator, Sink, Summary, TrafficError, TrafficItem};
use crate::exchange::{Body, Exchange, Request, Response, percent_encode_query, split_url};

/// Files up to this size are read into memory and parsed from the slice (about twice as
/// fast); larger ones are streamed from a buffered reader.
pub const IN_MEMORY_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Reads the HAR file at `path`, handing each entry to `each` in order (see
/// [`read_har`]).
pub fn read_har_file<R: Flow>(path: &Path, mut each: impl FnMut(TrafficItem) -> R) -> Result<Summary, TrafficError> {
    let open = |source| TrafficError::Open { file: path.into(), source };
    let file = std::fs::File::open(path).map_err(open)?;
    let size = file.metadata().map_or(u64::MAX, |m| m.len());
    if size <= IN_MEMORY_MAX_BYTES {
        let mut bytes = Vec::with_capacity(size as usize);
        io::Read::read_to_end(&mut &file, &mut bytes).map_err(|source| TrafficError::Read {
            file: path.into(),
            items: 0,
            source,
        })?;
        read_har_slice(&bytes, path, &mut each)
    } else {
        read_har(BufReader::with_capacity(256 * 1024, file), path, &mut each)
    }
}

/// Reads a HAR document from `reader`, streaming: each entry of `log.entries` is converted
/// and handed to `each` as soon as it is read. `source` names the file in errors and
/// request ids (`<file stem>#<entry index>`).
///
/// An entry that cannot be converted is handed out as an
/// [`EntryError`](crate::adapters::traffic::EntryError) and reading goes on. Broken JSON,
/// a read failure, or a document without `log.entries` ends the read with a
/// [`TrafficError`]; entries before it have been handed out.
pub fn read_har<R: Flow>(
    mut reader: impl BufRead,
    source: &Path,
    mut each: impl FnMut(TrafficItem) -> R,
) -> Result<Summary, TrafficError> {
    // Windows tools (Fiddler among them) start with a UTF-8 byte order mark. A reader may
    // hand out fewer than its three bytes in one fill (a pipe, a small buffer), so take up
    // to three bytes whatever the fills, and put them back in front unless they are a BOM.
    let mut head = [0u8; 3];
    let mut got = 0;
    while got < head.len() {
        let buffered = match reader.fill_buf() {
            Ok(buffered) => buffered,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(TrafficError::Read { file: source.into(), items: 0, source: err }),
        };
        if buffered.is_empty() {
            break;
        }
        let n = buffered.len().min(head.len() - got);
        head[got..got + n].copy_from_slice(&buffered[..n]);
        reader.consume(n);
        got += n;
    }
    let head = if head == *b"\xEF\xBB\xBF" { &[][..] } else { &head[..got] };
    let mut de = serde_json::Deserializer::from_reader(io::Read::chain(head, reader));
    run(&mut de, source, &mut each)
}

/// [`read_har`] over a document already in memory.
pub fn read_har_slice<R: Flow>(
    bytes: &[u8],
    source: &Path,
    mut each: impl FnMut(TrafficItem) -> R,
) -> Result<Summary, TrafficError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        // Nearly every capture: checked once here, so serde_json need not check each string
        // again (that was 7% of reading a HAR file).
        Ok(text) => run(&mut serde_json::Deserializer::from_str(text), source, &mut each),
        // Otherwise the slice reader finds the invalid string and reports where it is.
        Err(_) => run(&mut serde_json::Deserializer::from_slice(bytes), source, &mut each),
    }
}

fn run<'de, Rd, F, R>(
    de: &mut serde_json::Deserializer<Rd>,
    source: &Path,
    each: &mut F,
) -> Result<Summary, TrafficError>
where
    Rd: serde_json::de::Read<'de>,
    F: FnMut(TrafficItem) -> R,
    R: Flow,
{
    let mut state = State { sink: Sink::new(source, each), problem: None, saw_log: false, saw_entries: false };
    let outcome = RootSeed(&mut state).deserialize(&mut *de).and_then(|()| de.end());
    let file = source.to_path_buf();
    let items = state.sink.items;
    match outcome {
        _ if state.sink.stopped => Ok(state.sink.summary(Format::Har)),
        Err(err) if err.is_io() => {
            let source = io::Error::from(err);
            Err(TrafficError::Read { file, items, source })
        }
        Err(err) if err.is_data() => {
            let reason = state.problem.unwrap_or_else(|| position_free(&err));
            Err(TrafficError::NotHar { file, reason })
        }
        Err(err) => Err(TrafficError::Json {
            file,
            line: err.line(),
            column: err.column(),
            items,
            message: position_free(&err),
        }),
        Ok(()) if !state.saw_log => {
            Err(TrafficError::NotHar { file, reason: "no `log` object at the top level".into() })
        }
        Ok(()) if !state.saw_entries => {
            Err(TrafficError::NotHar { file, reason: "`log` has no `entries` list".into() })
        }
        Ok(()) => Ok(state.sink.summary(Format::Har)),
    }
}

/// serde_json's message without its ` at line L column C` suffix.
pub(crate) fn position_free(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    text.strip_suffix(&suffix).map(str::to_owned).unwrap_or(text)
}

struct State<'s, F> {
    sink: Sink<'s, F>,
    /// Why the document is not HAR, when a visitor found out.
    problem: Option<String>,
    saw_log: bool,
    saw_entries: bool,
}

impl<F> State<'_, F> {
    fn fail<E: de::Error>(&mut self, reason: String) -> E {
        let err = E::custom(&reason);
        self.problem = Some(reason);
        err
    }
}

/// The document: `{"log": {...}, ...}`.
struct RootSeed<'a, 's, F>(&'a mut State<'s, F>);
/// `log`: `{"entries": [...], ...}`.
struct LogSeed<'a, 's, F>(&'a mut State<'s, F>);
/// `log.entries`.
struct EntriesSeed<'a, 's, F>(&'a mut State<'s, F>);

macro_rules! object_seed {
    ($seed:ident, $what:literal, $key:literal, $inner:ident, $flag:ident) => {
        impl<'de, F, R> DeserializeSeed<'de> for $seed<'_, '_, F>
        where
            F: FnMut(TrafficItem) -> R,
            R: Flow,
        {
            type Value = ();
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
                d.deserialize_any(self)
            }
        }

        impl<'de, F, R> Visitor<'de> for $seed<'_, '_, F>
        where
            F: FnMut(TrafficItem) -> R,
            R: Flow,
        {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!($what, " object"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
                while let Some(key) = map.next_key_seed(KeySeed(&[$key]))? {
                    if key.is_some() {
                        self.0.$flag = true;
                        map.next_value_seed($inner(&mut *self.0))?;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
                Err(self.0.fail(format!(concat!($what, " is a list, not an object with `", $key, "`"))))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
                Err(self.0.fail(format!(concat!($what, " is a string, not an object with `", $key, "`"))))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
                Err(self.0.fail(format!(concat!($what, " is a number, not an object with `", $key, "`"))))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
                Err(self.0.fail(format!(concat!($what, " is a number, not an object with `", $key, "`"))))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
                Err(self.0.fail(format!(concat!($what, " is a number, not an object with `", $key, "`"))))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
                Err(self.0.fail(format!(concat!($what, " is a boolean, not an object with `", $key, "`"))))
            }
            fn visit_unit<E: de::Error>(self) -> Result<(), E> {
                Err(self.0.fail(format!(concat!($what, " is null, not an object with `", $key, "`"))))
            }
        }
    };
}

object_seed!(RootSeed, "the document", "log", LogSeed, saw_log);
object_seed!(LogSeed, "`log`", "entries", EntriesSeed, saw_entries);

impl<'de, F, R> DeserializeSeed<'de> for EntriesSeed<'_, '_, F>
where
    F: FnMut(TrafficItem) -> R,
    R: Flow,
{
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, F, R> Visitor<'de> for EntriesSeed<'_, '_, F>
where
    F: FnMut(TrafficItem) -> R,
    R: Flow,
{
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of entries")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        while let Some(entry) = seq.next_element::<Slot<Entry>>()? {
            let result = entry
                .need()
                .map_err(|message| (String::new(), message))
                .and_then(|entry| convert(entry, index, &self.0.sink.stem));
            if !self.0.sink.emit(Locator::Entry(index), result) {
                return Err(de::Error::custom("stopped by the caller"));
            }
            index += 1;
        }
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(self.0.fail("`log.entries` is an object, not a list".into()))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(self.0.fail("`log.entries` is a string, not a list".into()))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(self.0.fail("`log.entries` is a number, not a list".into()))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(self.0.fail("`log.entries` is a number, not a list".into()))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(self.0.fail("`log.entries` is a number, not a list".into()))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(self.0.fail("`log.entries` is a boolean, not a list".into()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(self.0.fail("`log.entries` is null, not a list".into()))
    }
}

// ---------------------------------------------------------------------------------------
// Lenient slots: a field read without failing the stream
// ---------------------------------------------------------------------------------------

/// One field as found: absent, `null`, a usable value, or a value of the wrong type (which
/// was consumed and is reported only if the field is used).
#[derive(Default)]
enum Slot<T> {
    #[default]
    Missing,
    Null,
    Got(T),
    Wrong {
        found: &'static str,
        expected: &'static str,
    },
}

impl<T> Slot<T> {
    /// The value if there is one; absent and `null` are `None`.
    fn get(self) -> Result<Option<T>, String> {
        match self {
            Slot::Missing | Slot::Null => Ok(None),
            Slot::Got(value) => Ok(Some(value)),
            Slot::Wrong { found, expected } => Err(format!("invalid type: found {found}, expected {expected}")),
        }
    }

    /// The value, which must be there.
    fn need(self) -> Result<T, String> {
        match self {
            Slot::Missing => Err("missing field".into()),
            Slot::Null => Err("missing field (null)".into()),
            Slot::Got(value) => Ok(value),
            Slot::Wrong { found, expected } => Err(format!("invalid type: found {found}, expected {expected}")),
        }
    }
}

impl Slot<String> {
    /// A string that means something: absent, `null`, `""` and `"null"` are all `None`.
    fn meaningful(self) -> Result<Option<String>, String> {
        Ok(self.get()?.filter(|s| !s.is_empty() && s != "null"))
    }
}

/// A JSON number as found.
#[derive(Clone, Copy)]
enum Number {
    U(u64),
    I(i64),
    F(f64),
}

/// A type a [`Slot`] can hold, and which JSON shapes it accepts. Every method must consume
/// what it is given, so that a wrong shape never breaks the stream.
trait Shape: Sized {
    const EXPECTED: &'static str;
    fn text(_: &str) -> Option<Self> {
        None
    }
    fn number(_: Number) -> Option<Self> {
        None
    }
    fn boolean(_: bool) -> Option<Self> {
        None
    }
    fn map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Option<Self>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

/// Text fields also take numbers and booleans, as their JSON text (a header value
/// written as `5`).
impl Shape for String {
    const EXPECTED: &'static str = "a string";
    fn text(s: &str) -> Option<Self> {
        Some(s.to_owned())
    }
    fn number(n: Number) -> Option<Self> {
        Some(match n {
            Number::U(n) => n.to_string(),
            Number::I(n) => n.to_string(),
            Number::F(n) => n.to_string(),
        })
    }
    fn boolean(b: bool) -> Option<Self> {
        Some(b.to_string())
    }
}

/// Integers also come as numeric strings (`"200"`) or integral floats (`200.0`).
impl Shape for i64 {
    const EXPECTED: &'static str = "an integer";
    fn text(s: &str) -> Option<Self> {
        s.trim().parse().ok()
    }
    fn number(n: Number) -> Option<Self> {
        match n {
            Number::U(n) => i64::try_from(n).ok(),
            Number::I(n) => Some(n),
            Number::F(n) if n.fract() == 0.0 && n.abs() < 1e15 => Some(n as i64),
            Number::F(_) => None,
        }
    }
}

impl<T: Shape> Shape for Vec<Slot<T>> {
    const EXPECTED: &'static str = "a list";
    fn seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Option<Self>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element::<Slot<T>>()? {
            out.push(item);
        }
        Ok(Some(out))
    }
}

impl<'de, T: Shape> serde::Deserialize<'de> for Slot<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SlotVisitor(PhantomData))
    }
}

struct SlotVisitor<T>(PhantomData<T>);

impl<T: Shape> SlotVisitor<T> {
    fn found(value: Option<T>, found: &'static str) -> Slot<T> {
        match value {
            Some(value) => Slot::Got(value),
            None => Slot::Wrong { found, expected: T::EXPECTED },
        }
    }
}

impl<'de, T: Shape> Visitor<'de> for SlotVisitor<T> {
    type Value = Slot<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTED)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Slot<T>, E> {
        Ok(Self::found(T::text(v), "a string"))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Slot<T>, E> {
        Ok(Self::found(T::number(Number::U(v)), "a number"))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Slot<T>, E> {
        Ok(Self::found(T::number(Number::I(v)), "a number"))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Slot<T>, E> {
        Ok(Self::found(T::number(Number::F(v)), "a number"))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Slot<T>, E> {
        Ok(Self::found(T::boolean(v), "a boolean"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Slot<T>, E> {
        Ok(Slot::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Slot<T>, E> {
        Ok(Slot::Null)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Slot<T>, A::Error> {
        Ok(Self::found(T::map(map)?, "an object"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Slot<T>, A::Error> {
        Ok(Self::found(T::seq(seq)?, "a list"))
    }
}

/// Reads an object key as one of `keys` (without allocating), or `None` for any other.
struct KeySeed(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Option<&'static str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Option<&'static str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().find(|key| **key == v).copied())
    }
}

/// A HAR object read leniently: the listed keys into slots, every other key skipped.
macro_rules! har_object {
    ($(#[$meta:meta])* struct $name:ident { $($field:ident: $ty:ty = $key:literal,)* }) => {
        $(#[$meta])*
        #[derive(Default)]
        struct $name {
            $($field: Slot<$ty>,)*
        }

        impl Shape for $name {
            const EXPECTED: &'static str = "an object";
            fn map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
                let mut out = Self::default();
                while let Some(key) = map.next_key_seed(KeySeed(&[$($key),*]))? {
                    match key {
                        $(Some($key) => out.$field = map.next_value()?,)*
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Some(out))
            }
        }
    };
}

har_object! {
    /// `log.entries[i]`.
    struct Entry {
        started: String = "startedDateTime",
        request: HarRequest = "request",
        response: HarResponse = "response",
    }
}

har_object! {
    /// `request`.
    struct HarRequest {
        method: String = "method",
        url: String = "url",
        headers: Vec<Slot<Pair>> = "headers",
        query: Vec<Slot<Pair>> = "queryString",
        post: PostData = "postData",
    }
}

har_object! {
    /// A header, query parameter or form field: `{"name": ..., "value": ...}`.
    struct Pair {
        name: String = "name",
        value: String = "value",
    }
}

har_object! {
    /// `request.postData`. `encoding` is not in HAR 1.2 but some tools write it.
    struct PostData {
        mime: String = "mimeType",
        text: String = "text",
        encoding: String = "encoding",
        params: Vec<Slot<Pair>> = "params",
    }
}

har_object! {
    /// `response`.
    struct HarResponse {
        status: i64 = "status",
        headers: Vec<Slot<Pair>> = "headers",
        content: Content = "content",
    }
}

har_object! {
    /// `response.content`.
    struct Content {
        mime: String = "mimeType",
        text: String = "text",
        encoding: String = "encoding",
    }
}

// ---------------------------------------------------------------------------------------
// Entry → Exchange
// ---------------------------------------------------------------------------------------

/// A field path and what is wrong there.
type Problem = (String, String);

fn at(field: &str) -> impl FnOnce(String) -> Problem + '_ {
    move |message| (field.to_owned(), message)
}

/// HTTP/2 pseudo-headers of a request, taken out of the header list.
#[derive(Default)]
struct Pseudo {
    authority: Option<String>,
    method: Option<String>,
    path: Option<String>,
    scheme: Option<String>,
}

fn convert(entry: Entry, index: usize, stem: &str) -> Result<Exchange, Problem> {
    let received_at_ms = match entry.started.meaningful().map_err(at("startedDateTime"))? {
        Some(text) => parse_timestamp_ms(&text).map_err(at("startedDateTime"))?,
        None => 0,
    };
    let req = entry.request.need().map_err(at("request"))?;
    let mut pseudo = Pseudo::default();
    let headers = header_list(req.headers, "request.headers", Some(&mut pseudo))?;

    let method = match req.method.meaningful().map_err(at("request.method"))? {
        Some(method) => method,
        None => pseudo.method.take().ok_or_else(|| at("request.method")("missing field".into()))?,
    };
    let url = match req.url.meaningful().map_err(at("request.url"))? {
        Some(url) => url,
        // Some HTTP/2 captures carry the target only in pseudo-headers.
        None => pseudo.path.take().ok_or_else(|| at("request.url")("missing field".into()))?,
    };
    let url = url.trim();
    let mut parts = split_url(url).map_err(at("request.url"))?;
    if !url.contains("://")
        && let Some(scheme) = pseudo.scheme.take()
    {
        parts.scheme = scheme.to_ascii_lowercase();
    }
    if parts.authority.is_empty() {
        parts.authority = pseudo
            .authority
            .take()
            .or_else(|| headers.iter().find(|(name, _)| name == "host").map(|(_, value)| value.clone()))
            .unwrap_or_default();
    }
    // The URL's query is what the server received; `queryString` is a copy whose encoding
    // differs between tools. It is used only when the URL has no query.
    if !url.contains('?')
        && let Some(list) = req.query.get().map_err(at("request.queryString"))?
    {
        parts.query = pairs(list, "request.queryString")?;
    }
    let body = match req.post.get().map_err(at("request.postData"))? {
        Some(post) => request_body(post, &headers)?,
        None => None,
    };
    let response = match entry.response.get().map_err(at("response"))? {
        Some(res) => convert_response(res)?,
        None => None,
    };
    let request = Request {
        id: format!("{stem}#{index}"),
        method: method.to_ascii_uppercase(),
        authority: normalise_authority(&parts.authority, &parts.scheme),
        scheme: parts.scheme,
        path: parts.path,
        query: parts.query,
        headers,
        body,
        received_at_ms,
        ..Request::default()
    };
    Ok(Exchange { request, response })
}

/// Headers with lower-case names, in order. Pseudo-headers (`:authority`, ...) are left
/// out; a request's are kept in `pseudo`.
fn header_list(
    list: Slot<Vec<Slot<Pair>>>,
    field: &str,
    mut pseudo: Option<&mut Pseudo>,
) -> Result<Vec<(String, String)>, Problem> {
    let Some(list) = list.get().map_err(at(field))? else {
        return Ok(Vec::new());
    };
    let mut headers = pairs(list, field)?;
    headers.retain_mut(|(name, value)| {
        name.make_ascii_lowercase();
        if !name.starts_with(':') {
            return true;
        }
        if let Some(pseudo) = pseudo.as_deref_mut() {
            let slot = match name.as_str() {
                ":authority" => &mut pseudo.authority,
                ":method" => &mut pseudo.method,
                ":path" => &mut pseudo.path,
                ":scheme" => &mut pseudo.scheme,
                _ => return false,
            };
            if slot.is_none() {
                *slot = Some(std::mem::take(value));
            }
        }
        false
    });
    Ok(headers)
}

/// Name/value pairs in order. A `null` element is skipped; a missing name is an error; a
/// missing value is empty.
fn pairs(list: Vec<Slot<Pair>>, field: &str) -> Result<Vec<(String, String)>, Problem> {
    let mut out = Vec::with_capacity(list.len());
    for (i, pair) in list.into_iter().enumerate() {
        let Some(pair) = pair.get().map_err(|m| (format!("{field}[{i}]"), m))? else {
            continue;
        };
        let name = pair.name.need().map_err(|m| (format!("{field}[{i}].name"), m))?;
        let value = pair.value.get().map_err(|m| (format!("{field}[{i}].value"), m))?.unwrap_or_default();
        out.push((name, value));
    }
    Ok(out)
}

fn request_body(post: PostData, headers: &[(String, String)]) -> Result<Option<Body>, Problem> {
    let mime = media_type(post.mime.meaningful().map_err(at("request.postData.mimeType"))?, headers);
    let base64 = is_base64(post.encoding.meaningful().map_err(at("request.postData.encoding"))?);
    if let Some(text) = post.text.get().map_err(at("request.postData.text"))?.filter(|t| !t.is_empty()) {
        let bytes = if base64 { decode_base64(&text).map_err(at("request.postData.text"))? } else { text.into_bytes() };
        return Ok(Some(Body { content_type: mime, bytes, truncated: false }));
    }
    // No text: rebuild an urlencoded form from `params` (multipart files cannot be
    // rebuilt, so the body's type says what the bytes are).
    let Some(params) = post.params.get().map_err(at("request.postData.params"))? else {
        return Ok(None);
    };
    let params = pairs(params, "request.postData.params")?;
    if params.is_empty() {
        return Ok(None);
    }
    let form: Vec<String> = params
        .iter()
        .map(|(name, value)| format!("{}={}", percent_encode_query(name), percent_encode_query(value)))
        .collect();
    Ok(Some(Body {
        content_type: Some("application/x-www-form-urlencoded".into()),
        bytes: form.join("&").into_bytes(),
        truncated: false,
    }))
}

/// `None` when no response was recorded (absent, `null`, or status 0 as Chrome writes for
/// failed and blocked requests).
fn convert_response(res: HarResponse) -> Result<Option<Response>, Problem> {
    let status = res.status.need().map_err(at("response.status"))?;
    if status == 0 {
        return Ok(None);
    }
    let status = u16::try_from(status)
        .ok()
        .filter(|s| (100..=999).contains(s))
        .ok_or_else(|| at("response.status")(format!("`{status}` is not an HTTP status")))?;
    let headers = header_list(res.headers, "response.headers", None)?;
    let body = match res.content.get().map_err(at("response.content"))? {
        Some(content) => {
            let mime = media_type(content.mime.meaningful().map_err(at("response.content.mimeType"))?, &headers);
            let base64 = is_base64(content.encoding.meaningful().map_err(at("response.content.encoding"))?);
            match content.text.get().map_err(at("response.content.text"))?.filter(|t| !t.is_empty()) {
                Some(text) => {
                    let bytes = if base64 {
                        decode_base64(&text).map_err(at("response.content.text"))?
                    } else {
                        text.into_bytes()
                    };
                    (!bytes.is_empty()).then_some(Body { content_type: mime, bytes, truncated: false })
                }
                None => None,
            }
        }
        None => None,
    };
    Ok(Some(Response { status, headers, body }))
}

/// The body's content type: the recorded `content-type` header, which is what the other
/// side saw and what [`crate::adapters::http`] uses for live traffic (so a replay decides
/// as the live gate would); without one, the recorded `mimeType` when it is a media type
/// (`type/subtype`; not `"text"`, `""` or `"null"`).
fn media_type(recorded: Option<String>, headers: &[(String, String)]) -> Option<String> {
    headers
        .iter()
        .find(|(name, _)| name == "content-type")
        .map(|(_, value)| value.clone())
        .or_else(|| recorded.filter(|m| m.contains('/')))
}

fn is_base64(encoding: Option<String>) -> bool {
    encoding.is_some_and(|e| e.trim().eq_ignore_ascii_case("base64"))
}

/// Standard base64, padded or not, with any line breaks some tools insert.
fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let result = if text.bytes().any(|b| b.is_ascii_whitespace()) {
        let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        LENIENT.decode(compact)
    } else {
        LENIENT.decode(text)
    };
    result.map_err(|e| format!("`encoding` is base64 but the text is not valid base64: {e}"))
}

/// Parses an RFC 3339 timestamp into milliseconds since the Unix epoch (fractions below a
/// millisecond are cut). Also accepts what recording tools write beside the RFC: a
/// lower-case `t`/`z`, a space for the `T`, and an offset without its colon (`+0530`) or
/// minutes (`+05`). Times before 1970 are refused.
///
/// The shape is checked here, so that an error says what was expected, and the offset
/// written as the RFC wants it; the `time` crate checks the values and does the calendar.
pub fn parse_timestamp_ms(text: &str) -> Result<u64, String> {
    let bad = |why: &str| format!("`{text}` is not an RFC 3339 timestamp ({why})");
    let trimmed = text.trim();
    let b = trimmed.as_bytes();
    let shaped = |range: std::ops::Range<usize>, pattern: &[u8]| {
        b.get(range).is_some_and(|part| {
            part.iter().zip(pattern).all(|(c, p)| if *p == b'd' { c.is_ascii_digit() } else { c == p })
        })
    };
    if !shaped(0..10, b"dddd-dd-dd") {
        return Err(bad("expected YYYY-MM-DD"));
    }
    if !(b.get(10).is_some_and(|c| b"Tt ".contains(c)) && shaped(11..19, b"dd:dd:dd")) {
        return Err(bad("expected YYYY-MM-DDTHH:MM:SS"));
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return Err(bad("no digits after the decimal point"));
        }
    }
    let (date_time, offset) = trimmed.split_at(i);
    let digits = |part: &[u8]| part.iter().all(u8::is_ascii_digit);
    let offset = match offset.as_bytes() {
        [] => return Err(bad("no time zone offset (`Z` or `+HH:MM`)")),
        [b'Z' | b'z'] => offset.to_owned(),
        [b'+' | b'-', h @ .., b':', m1, m2] if h.len() == 2 && digits(h) && digits(&[*m1, *m2]) => offset.to_owned(),
        [sign @ (b'+' | b'-'), hm @ ..] if hm.len() == 4 && digits(hm) => {
            format!("{}{}:{}", char::from(*sign), &offset[1..3], &offset[3..5])
        }
        [sign @ (b'+' | b'-'), h @ ..] if h.len() == 2 && digits(h) => {
            format!("{}{}:00", char::from(*sign), &offset[1..])
        }
        [b'+' | b'-', ..] => return Err(bad("expected an offset such as +02:00")),
        _ => return Err(bad("unexpected text after the time")),
    };
    let at = OffsetDateTime::parse(&format!("{date_time}{offset}"), &Rfc3339).map_err(|e| bad(out_of_range(&e)))?;
    let ms = at.unix_timestamp_nanos().div_euclid(1_000_000);
    u64::try_from(ms).map_err(|_| bad("before 1970"))
}

/// What a value `time` refused is, for [`parse_timestamp_ms`]'s errors (the shape was
/// checked before, so only values are left).
fn out_of_range(error: &time::error::Parse) -> &'static str {
    use time::error::{Parse, ParseFromDescription, TryFromParsed};
    let component = match error {
        Parse::ParseFromDescription(ParseFromDescription::InvalidComponent(name)) => *name,
        Parse::TryFromParsed(TryFromParsed::ComponentRange(range)) => range.name(),
        _ => "",
    };
    match component {
        "year" | "month" | "day" => "no such date",
        "hour" | "minute" | "second" | "subsecond" => "no such time",
        name if name.starts_with("offset") => "no such offset",
        _ => "no such date or time",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::traffic::{EntryError, TrafficItem};
    use std::path::PathBuf;

    fn shared(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/traffic").join(name)
    }

    /// Reads a whole file, keeping every item.
    fn read_all(path: &Path) -> (Vec<TrafficItem>, Result<Summary, TrafficError>) {
        let mut items = Vec::new();
        let summary = read_har_file(path, |item| items.push(item));
        (items, summary)
    }

    fn exchanges(path: &Path) -> Vec<Exchange> {
        let (items, summary) = read_all(path);
        let summary = summary.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(summary.errors, 0, "{:?}", items.iter().filter_map(|i| i.result.as_ref().err()).collect::<Vec<_>>());
        items.into_iter().map(|item| item.result.unwrap()).collect()
    }

    /// Reads a document given as text through both the slice and the streaming reader,
    /// checks they agree, and returns the items and the outcome.
    fn read_text(text: &str) -> (Vec<Result<Exchange, EntryError>>, Result<Summary, TrafficError>) {
        let source = Path::new("t/cap.har");
        let mut from_slice = Vec::new();
        let slice_summary = read_har_slice(text.as_bytes(), source, |item| from_slice.push(item.result));
        let mut streamed = Vec::new();
        let stream_summary = read_har(text.as_bytes(), source, |item| streamed.push(item.result));
        assert_eq!(from_slice, streamed);
        assert_eq!(format!("{slice_summary:?}"), format!("{stream_summary:?}"));
        (from_slice, slice_summary)
    }

    fn one(text: &str) -> Exchange {
        let (mut items, summary) = read_text(text);
        summary.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(items.len(), 1);
        items.remove(0).unwrap_or_else(|e| panic!("{e}"))
    }

    fn count(exchanges: &[Exchange], method: &str) -> usize {
        exchanges.iter().filter(|e| e.request.method == method).count()
    }

    fn json_of(body: Option<&Body>) -> serde_json::Value {
        serde_json::from_slice(&body.expect("a body").bytes).expect("JSON")
    }

    #[test]
    fn optic_petstore_reads_fully() {
        let all = exchanges(&shared("optic_petstore.swagger.io.har"));
        assert_eq!((all.len(), count(&all, "GET"), count(&all, "POST")), (9, 8, 1));
        for (i, exchange) in all.iter().enumerate() {
            let req = &exchange.request;
            assert_eq!(req.id, format!("optic_petstore.swagger.io#{i}"));
            assert_eq!((req.scheme.as_str(), req.authority.as_str()), ("https", "petstore.swagger.io"));
            assert!(req.headers.iter().all(|(n, _)| !n.starts_with(':') && n.to_ascii_lowercase() == *n), "{req:?}");
            assert!(exchange.response.is_some());
            assert_eq!(req.principal, crate::exchange::Principal::default());
            assert_eq!(req.client_address, None);
        }
        assert_eq!(all[0].request.received_at_ms, 1_652_269_612_286, "2022-05-11T11:46:52.286Z");

        let post = all.iter().find(|e| e.request.method == "POST").unwrap();
        assert_eq!(post.request.path, "/v2/store/order");
        let body = post.request.body.as_ref().unwrap();
        assert_eq!(body.content_type.as_deref(), Some("application/json"));
        assert!(json_of(post.request.body.as_ref()).get("petId").is_some());

        let not_found: Vec<_> = all.iter().filter(|e| e.response.as_ref().unwrap().status == 404).collect();
        assert_eq!(not_found.len(), 2);
        assert_eq!(not_found[0].request.path, "/v2/user/user1");
        assert!(json_of(not_found[0].response.as_ref().unwrap().body.as_ref()).is_object());

        let biggest = all.iter().filter_map(|e| e.response.as_ref()?.body.as_ref()).map(|b| b.bytes.len()).max();
        assert_eq!(biggest, Some(74_285), "the 74 KB list, in bytes (`content.size`)");
        let list =
            all.iter().find(|e| e.response.as_ref().unwrap().body.as_ref().unwrap().bytes.len() == 74_285).unwrap();
        assert!(json_of(list.response.as_ref().unwrap().body.as_ref()).is_array());
        assert!(list.request.query.iter().any(|(k, v)| k == "status" && v == "available"), "{:?}", list.request);
    }

    #[test]
    fn akto_reads_fully() {
        let all = exchanges(&shared("akto_restapi_81.har"));
        assert_eq!((all.len(), count(&all, "POST"), count(&all, "GET")), (81, 54, 27));
        let first = &all[0];
        assert_eq!((first.request.scheme.as_str(), first.request.authority.as_str()), ("http", "localhost:8000"));
        assert_eq!((first.request.path.as_str(), first.request.id.as_str()), ("/api/cars", "akto_restapi_81#0"));
        assert_eq!(first.request.query, [("p".into(), "1".into()), ("q".into(), "2".into())]);
        // 2022-02-04T09:34:35.225+0530: an offset without its colon.
        assert_eq!(first.request.received_at_ms, 1_643_947_475_225);
        for exchange in &all {
            let res = exchange.response.as_ref().unwrap();
            assert_eq!(res.status, 201);
            let body = res.body.as_ref().unwrap();
            // `mimeType: "text"` loses to the content-type header.
            assert_eq!(body.content_type.as_deref(), Some("application/json"));
            assert!(body.is_json());
            serde_json::from_slice::<serde_json::Value>(&body.bytes).unwrap();
            if exchange.request.method == "POST" {
                // postData.mimeType is "application/json", "text/plain" or "null"; the
                // request's content-type header says JSON, and wins.
                assert!(exchange.request.body.as_ref().unwrap().is_json(), "{:?}", exchange.request);
            }
        }
        let book = json_of(all[1].response.as_ref().unwrap().body.as_ref());
        assert_eq!(book["author"]["firstname"], "Avneesh");
    }

    #[test]
    fn microcks_reads_fully() {
        let all = exchanges(&shared("microcks_api-pastries-0.0.1.har"));
        assert_eq!((all.len(), count(&all, "GET"), count(&all, "PATCH")), (6, 5, 1));
        let first = &all[0].request;
        assert_eq!(first.path, "/rest/API+Pastries/0.0.1/pastries", "`+` in a path is not a space");
        assert_eq!(first.query, [("size".into(), "L".into())]);
        let patch = all.iter().find(|e| e.request.method == "PATCH").unwrap();
        assert_eq!(patch.request.path, "/rest/API+Pastries/0.0.1/pastries/Eclair+Cafe");
        assert_eq!(json_of(patch.request.body.as_ref()), serde_json::json!({"price": 2.6}), "text wins over params");
        // Its response is recorded in base64.
        let res = patch.response.as_ref().unwrap();
        let body = json_of(res.body.as_ref());
        assert_eq!(body["price"], serde_json::json!(2.6), "{body}");
        assert_eq!(res.body.as_ref().unwrap().content_type.as_deref(), Some("application/json;charset=UTF-8"));
        assert_eq!(patch.request.received_at_ms, 1_692_263_153_434, "2023-08-17T11:05:53.434+02:00");
    }

    #[test]
    fn tolerates_what_real_tools_write() {
        // No log.version, creator as a string, "null" strings, mimeType "text", a base64
        // body, a number where a string belongs, unknown fields everywhere.
        let exchange = one(r#"{"log": {"creator": "some proxy", "_x": 1, "entries": [{
                "startedDateTime": "2024-02-29t23:59:59.5z",
                "_resourceType": "fetch",
                "request": {"method": "post", "url": "https://user:pw@Api.Test:443/a%20b/c?x=1%202&y=a+b&z",
                    "httpVersion": "null", "cookies": [{"name": "s", "value": "1"}],
                    "headers": [{"name": "Cookie", "value": "s=1"}, {"name": "X-Count", "value": 5}, null],
                    "queryString": [{"name": "ignored", "value": "because the URL has a query"}],
                    "postData": {"mimeType": "null", "text": "{\"a\": 1}"}},
                "response": {"status": "200", "statusText": null, "redirectURL": "null",
                    "headers": [{"name": "Content-Type", "value": "application/json"}],
                    "content": {"size": 8, "mimeType": "text", "encoding": "base64", "text": "eyJvayI6dHJ1ZX0"}}
            }]}}"#);
        let req = &exchange.request;
        assert_eq!(req.method, "POST");
        assert_eq!(req.authority, "Api.Test", "userinfo and default port dropped");
        assert_eq!(req.path, "/a b/c");
        assert_eq!(req.query, [("x", "1 2"), ("y", "a b"), ("z", "")].map(|(k, v)| (k.to_owned(), v.to_owned())));
        assert_eq!(req.headers, [("cookie", "s=1"), ("x-count", "5")].map(|(k, v)| (k.to_owned(), v.to_owned())));
        assert_eq!(req.body.as_ref().unwrap().content_type, None, "mimeType \"null\" and no content-type header");
        assert_eq!(req.received_at_ms, 1_709_251_199_500);
        let res = exchange.response.unwrap();
        assert_eq!(res.status, 200);
        let body = res.body.unwrap();
        assert_eq!(body.bytes, br#"{"ok":true}"#, "unpadded base64");
        assert_eq!(body.content_type.as_deref(), Some("application/json"));
    }

    #[test]
    fn the_documented_example_reads_as_documented() {
        // docs/traffic-formats.md, without its comments.
        let text = r#"{"log": {"creator": "some proxy",
          "entries": [{
            "startedDateTime": "2022-02-04T09:34:35.225+0530",
            "request": {"method": "post", "url": "http://localhost:8000/api/cars?p=1",
              "headers": [{"name": ":authority", "value": "localhost:8000"},
                          {"name": "Content-Type", "value": "application/json"}],
              "postData": {"mimeType": "null", "text": "{\"make\": \"VW\"}"}},
            "response": {"status": 201, "redirectURL": "null",
              "headers": [{"name": "Content-Type", "value": "application/json"}],
              "content": {"mimeType": "text", "encoding": "base64", "text": "eyJpZCI6MX0="}}
          }]}}"#;
        let mut got = Vec::new();
        read_har_slice(text.as_bytes(), Path::new("cars.har"), |item| got.push(item.result.unwrap())).unwrap();
        let expected: Exchange = serde_json::from_str(
            r#"{"request": {"id": "cars#0", "method": "POST", "scheme": "http", "authority": "localhost:8000",
               "path": "/api/cars", "query": [["p", "1"]], "headers": [["content-type", "application/json"]],
               "body": {"content_type": "application/json", "json": {"make": "VW"}},
               "received_at_ms": 1643947475225},
             "response": {"status": 201, "headers": [["content-type", "application/json"]],
               "body": {"content_type": "application/json", "json": {"id": 1}}}}"#,
        )
        .unwrap();
        assert_eq!(serde_json::to_value(&got).unwrap(), serde_json::to_value([expected]).unwrap());
    }

    #[test]
    fn http2_pseudo_headers_give_the_target_and_are_dropped() {
        let exchange = one(r#"{"log": {"version": "1.3", "entries": [{
                "request": {"url": "/items?q=1", "headers": [
                    {"name": ":method", "value": "DELETE"}, {"name": ":authority", "value": "h2.test:8443"},
                    {"name": ":scheme", "value": "http"}, {"name": ":path", "value": "/items?q=1"},
                    {"name": "accept", "value": "*/*"}]},
                "response": {"status": 204, "headers": [{"name": ":status", "value": "204"}]}
            }]}}"#);
        let req = &exchange.request;
        assert_eq!(
            (req.method.as_str(), req.scheme.as_str(), req.authority.as_str(), req.path.as_str()),
            ("DELETE", "http", "h2.test:8443", "/items")
        );
        assert_eq!(req.query, [("q".to_owned(), "1".to_owned())]);
        assert_eq!(req.headers, [("accept".to_owned(), "*/*".to_owned())]);
        let res = exchange.response.unwrap();
        assert_eq!((res.status, res.headers.len(), res.body), (204, 0, None));

        // An absolute URL wins over :authority; the target may come from :path alone.
        let exchange = one(r#"{"log": {"entries": [{"request": {"method": "GET", "url": "https://url.test/a",
                "headers": [{"name": ":authority", "value": "other.test"}]}}]}}"#);
        assert_eq!(exchange.request.authority, "url.test");
        let exchange = one(r#"{"log": {"entries": [{"request": {"headers": [{"name": ":method", "value": "get"},
                {"name": ":path", "value": "/p"}, {"name": "Host", "value": "host.test"}]}}]}}"#);
        assert_eq!((exchange.request.method.as_str(), exchange.request.authority.as_str()), ("GET", "host.test"));
        assert_eq!(exchange.request.path, "/p");
    }

    #[test]
    fn missing_optional_parts_are_absent() {
        let exchange =
            one(r#"{"log": {"entries": [{"request": {"method": "GET", "url": "http://x.test:80/a?b=1"}}]}}"#);
        assert_eq!(exchange.response, None, "no response recorded");
        let req = exchange.request;
        assert_eq!((req.authority.as_str(), req.headers.len(), req.body, req.received_at_ms), ("x.test", 0, None, 0));

        // Chrome's status 0 (blocked or failed) is no response; no content.text, no body.
        let (items, summary) = read_text(
            r#"{"log": {"entries": [
                {"request": {"method": "GET", "url": "http://x.test/"}, "response": {"status": 0, "_error": "net::ERR_BLOCKED"}},
                {"request": {"method": "GET", "url": "http://x.test/"}, "response": {"status": 304, "content": {"size": 0, "mimeType": "x-unknown"}}},
                {"request": {"method": "GET", "url": "http://x.test/"}, "response": null},
                {"request": {"method": "GET", "url": "http://x.test/", "queryString": [{"name": "k", "value": "v w"}]}}
            ]}}"#,
        );
        assert_eq!(summary.unwrap().errors, 0);
        let items: Vec<Exchange> = items.into_iter().map(Result::unwrap).collect();
        assert_eq!(items[0].response, None);
        assert_eq!(items[1].response.as_ref().map(|r| (r.status, r.body.is_none())), Some((304, true)));
        assert_eq!(items[2].response, None);
        assert_eq!(items[3].request.query, [("k".to_owned(), "v w".to_owned())], "queryString when the URL has none");
    }

    #[test]
    fn form_params_become_an_urlencoded_body() {
        let exchange = one(r#"{"log": {"entries": [{"request": {"method": "POST", "url": "https://x.test/login",
                "postData": {"mimeType": "application/x-www-form-urlencoded", "params": [
                    {"name": "user", "value": "a b"}, {"name": "pw", "value": "p&q="}, {"name": "empty"}]}}}]}}"#);
        let body = exchange.request.body.unwrap();
        assert_eq!(body.bytes, b"user=a%20b&pw=p%26q%3D&empty=");
        assert_eq!(body.content_type.as_deref(), Some("application/x-www-form-urlencoded"));
        let exchange = one(r#"{"log": {"entries": [{"request": {"method": "POST", "url": "https://x.test/up",
                "headers": [{"name": "content-type", "value": "application/octet-stream"}],
                "postData": {"encoding": "base64", "text": "AAEC/w=="}}}]}}"#);
        let body = exchange.request.body.unwrap();
        assert_eq!((body.bytes, body.content_type.as_deref()), (vec![0, 1, 2, 255], Some("application/octet-stream")));
    }

    #[test]
    fn a_bad_entry_is_an_entry_error_and_the_others_read() {
        let (items, summary) = read_text(
            r#"{"log": {"entries": [
                {"request": {"method": "GET", "url": "https://x.test/0"}},
                {"request": {"method": "GET", "url": "ftp://x.test/1"}},
                {"request": {"method": "GET"}},
                {"request": {"method": "GET", "url": "https://x.test/3", "headers": [{"name": "a", "value": "1"}, {"value": "2"}]}},
                {"request": {"method": "GET", "url": "https://x.test/4", "headers": {"a": "1"}}},
                {"request": {"method": "GET", "url": "https://x.test/5"}, "response": {"status": 200, "content": {"encoding": "base64", "text": "%%%"}}},
                {"request": {"method": "GET", "url": "https://x.test/6"}, "response": {"status": 70000}},
                {"request": {"method": "GET", "url": "https://x.test/7"}, "startedDateTime": "yesterday"},
                "not an entry",
                {"request": {"method": "GET", "url": "https://x.test/9"}}
            ]}}"#,
        );
        let summary = summary.unwrap();
        assert_eq!((summary.items, summary.errors), (10, 8));
        assert_eq!(items[0].as_ref().unwrap().request.path, "/0");
        assert_eq!(items[9].as_ref().unwrap().request.id, "cap#9");
        let errors: Vec<_> = items.iter().filter_map(|r| r.as_ref().err()).collect();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "request.url",
                "request.url",
                "request.headers[1].name",
                "request.headers",
                "response.content.text",
                "response.status",
                "startedDateTime",
                ""
            ]
        );
        assert_eq!(errors[0].at, Locator::Entry(1));
        assert!(errors[0].message.contains("only http and https"), "{}", errors[0]);
        assert_eq!(
            errors[1].to_string(),
            "t/cap.har: log.entries[2].request.url: missing field (entry index 2, 0-based)"
        );
        assert_eq!(errors[3].message, "invalid type: found an object, expected a list");
        assert_eq!(
            errors[7].to_string(),
            "t/cap.har: log.entries[8]: invalid type: found a string, expected an object (entry index 8, 0-based)"
        );
    }

    #[test]
    fn truncated_file_yields_earlier_entries_then_a_file_error() {
        let text = std::fs::read_to_string(shared("optic_petstore.swagger.io.har")).unwrap();
        // Cut inside the fourth entry's (index 3) big response body.
        let cut = text.find("\"status\":\"available\"").unwrap_or(text.len() / 2);
        let (items, summary) = read_text(&text[..cut]);
        assert_eq!(items.len(), 3);
        assert!(items.iter().all(Result::is_ok));
        match summary.unwrap_err() {
            TrafficError::Json { line, column, items, message, .. } => {
                assert_eq!(items, 3);
                assert!(line > 1 && column > 0);
                assert!(message.contains("EOF"), "{message}");
            }
            other => panic!("{other}"),
        }
        // Broken JSON in the middle names its position.
        let (items, summary) = read_text(
            "{\"log\": {\"entries\": [\n{\"request\": {\"url\": \"/a\", \"method\": \"GET\"}},\n{\"request\": {\"url\": }}]}}",
        );
        assert_eq!(items.len(), 1);
        let err = summary.unwrap_err();
        assert!(matches!(err, TrafficError::Json { line: 3, column: 21, items: 1, .. }), "{err:?}");
        assert!(
            err.to_string().starts_with("t/cap.har: not valid JSON at line 3, column 21 (after 1 entries were read)"),
            "{err}"
        );
        // Trailing garbage after a complete document.
        let (items, summary) = read_text("{\"log\": {\"entries\": [{\"request\": {\"url\": \"/a\"}}]}} x");
        assert_eq!(items.len(), 1);
        assert!(matches!(summary.unwrap_err(), TrafficError::Json { .. }));
    }

    #[test]
    fn documents_that_are_not_har_are_file_errors() {
        for (text, reason) in [
            ("[]", "the document is a list, not an object with `log`"),
            ("{}", "no `log` object at the top level"),
            ("{\"log\": {\"version\": \"1.2\"}}", "`log` has no `entries` list"),
            ("{\"log\": \"x\"}", "`log` is a string, not an object with `entries`"),
            ("{\"log\": {\"entries\": {}}}", "`log.entries` is an object, not a list"),
            ("{\"log\": {\"entries\": null}}", "`log.entries` is null, not a list"),
        ] {
            let (items, summary) = read_text(text);
            assert!(items.is_empty());
            match summary.unwrap_err() {
                TrafficError::NotHar { reason: got, .. } => assert_eq!(got, reason, "{text}"),
                other => panic!("{text}: {other}"),
            }
        }
        let (_, summary) = read_text("");
        assert!(matches!(summary.unwrap_err(), TrafficError::Json { .. }));
        let missing = read_har_file(Path::new("/nonexistent/x.har"), |_| ());
        assert!(matches!(missing, Err(TrafficError::Open { .. })));
    }

    #[test]
    fn bom_and_empty_entries_are_fine() {
        let (items, summary) = read_text("\u{feff}{\"log\": {\"version\": \"1.2\", \"entries\": []}}");
        assert!(items.is_empty());
        assert_eq!(summary.unwrap().items, 0);
    }

    /// Found by `fuzz/fuzz_targets/har.rs`: a byte order mark split across the reader's
    /// fills was not stripped, so the streaming reader refused a document the slice reader
    /// read.
    #[test]
    fn a_bom_split_across_reader_fills_is_stripped() {
        let text = "\u{feff}{\"log\": {\"entries\": [{\"request\": {\"method\": \"GET\", \"url\": \"https://a.example/x\"}}]}}";
        let source = Path::new("t/cap.har");
        let mut from_slice = Vec::new();
        let expected = read_har_slice(text.as_bytes(), source, |item| from_slice.push(item.result)).unwrap();
        for capacity in 1..=4 {
            let mut streamed = Vec::new();
            let reader = BufReader::with_capacity(capacity, text.as_bytes());
            let summary = read_har(reader, source, |item| streamed.push(item.result))
                .unwrap_or_else(|e| panic!("buffer of {capacity}: {e}"));
            assert_eq!((summary, &streamed), (expected, &from_slice), "buffer of {capacity}");
        }
        // Short documents, with and without the mark, still end in the same errors.
        for text in ["", "\u{feff}", "{", "\u{feff}{", "\u{ef}"] {
            let slice = read_har_slice(text.as_bytes(), source, |_| ()).map_err(|e| e.to_string());
            let streamed =
                read_har(BufReader::with_capacity(1, text.as_bytes()), source, |_| ()).map_err(|e| e.to_string());
            assert_eq!(slice, streamed, "{text:?}");
        }
    }

    #[test]
    fn the_callback_can_stop_the_read() {
        let mut seen = 0;
        let summary = read_har_file(&shared("akto_restapi_81.har"), |_| {
            seen += 1;
            if seen == 5 { std::ops::ControlFlow::Break(()) } else { std::ops::ControlFlow::Continue(()) }
        })
        .unwrap();
        assert_eq!((seen, summary.items, summary.stopped), (5, 5, true));
    }

    #[test]
    fn streaming_and_in_memory_reads_agree_on_the_captures() {
        for name in ["optic_petstore.swagger.io.har", "akto_restapi_81.har", "microcks_api-pastries-0.0.1.har"] {
            let path = shared(name);
            let mut streamed = Vec::new();
            let file = std::fs::File::open(&path).unwrap();
            read_har(BufReader::new(file), &path, |item| streamed.push(item)).unwrap();
            let (in_memory, _) = read_all(&path);
            assert_eq!(streamed, in_memory, "{name}");
        }
    }

    #[test]
    fn timestamps() {
        for (text, ms) in [
            ("1970-01-01T00:00:00Z", 0),
            ("2022-05-11T11:46:52.286Z", 1_652_269_612_286),
            ("2022-05-11T13:46:52.286123+02:00", 1_652_269_612_286),
            ("2022-05-11T06:16:52.2861-0530", 1_652_269_612_286),
            ("2022-05-11 11:46:52.2+00", 1_652_269_612_200),
            ("2000-02-29T00:00:00Z", 951_782_400_000),
            ("2100-03-01T00:00:00Z", 4_107_542_400_000),
        ] {
            assert_eq!(parse_timestamp_ms(text), Ok(ms), "{text}");
        }
        for (text, why) in [
            ("2022-05-11T11:46:52", "no time zone offset"),
            ("2022-05-11", "expected YYYY-MM-DDTHH:MM:SS"),
            ("2023-02-29T00:00:00Z", "no such date"),
            ("2022-13-01T00:00:00Z", "no such date"),
            ("2022-05-11T24:00:00Z", "no such time"),
            ("2022-05-11T11:46:52.Z", "no digits after the decimal point"),
            ("2022-05-11T11:46:52+2:00", "expected an offset"),
            ("2022-05-11T11:46:52Zjunk", "unexpected text"),
            ("1969-12-31T23:59:59Z", "before 1970"),
            ("1652269612286", "expected YYYY-MM-DD"),
        ] {
            let err = parse_timestamp_ms(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }
}
