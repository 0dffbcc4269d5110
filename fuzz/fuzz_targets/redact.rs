//! The redaction applier over arbitrary bodies and a small arbitrary list of redactions.
//!
//! Input: one byte `n`, then `n` bytes that choose the redactions and the message's
//! framing, then the body. JSON pointers are mostly built from paths that exist in the
//! body (with `*` and odd segments mixed in), so they hit something.
//!
//! Checks, beyond "never panics":
//! - a JSON body (as serde_json reads it) stays valid JSON when the applier says Ok, and
//!   equals what an independent model of the documented rules (on `serde_json::Value`)
//!   gives: removal beats replacement, an outer value beats inner ones, the last
//!   replacement wins, array elements move up, `""` is the whole document;
//! - a body is rewritten only if `body_changed`, and `content-length` follows it;
//! - a pointer redaction on a body it cannot read must fail (never Ok with the field
//!   possibly still there): bytes that are not JSON, a truncated body;
//! - the request and response appliers, and the `http` crate applier, agree.
#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use portcullis_host::decision::{Action, Redaction, Target};
use portcullis_host::redact::{self, MAX_POINTER_SEGMENTS};
use portcullis_host::{Body, Request, Response};
use serde_json::Value;

const CONTENT_TYPES: &[Option<&str>] = &[
    None,
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    Some("application/problem+json"),
    Some("text/plain"),
    Some("text"),
    Some(""),
    Some("text/html"),
    Some("application/octet-stream"),
];
const HEADERS: &[&str] = &["authorization", "x-api-key", "cookie", "content-length", "content-type", "X-Api-Key"];

struct Case {
    content_type: Option<String>,
    encoding: Option<&'static str>,
    truncated: bool,
    content_length: bool,
    redactions: Vec<Redaction>,
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else { return };
    let (control, body) = rest.split_at(usize::from(n).min(rest.len()));
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let mut paths = Vec::new();
    if let Some(value) = &parsed {
        collect_paths(value, &mut Vec::new(), &mut paths);
    }
    let Ok(case) = build(&mut Unstructured::new(control), &paths) else { return };
    check(&case, body, parsed.as_ref());
});

fn build(u: &mut Unstructured, paths: &[Vec<String>]) -> Result<Case> {
    let content_type = match u.int_in_range(0..=CONTENT_TYPES.len())? {
        i if i < CONTENT_TYPES.len() => CONTENT_TYPES[i].map(str::to_owned),
        _ => Some(u.arbitrary::<String>()?),
    };
    let encoding = match u.int_in_range(0..=7u8)? {
        0 => Some("gzip"),
        1 => Some("identity"),
        _ => None,
    };
    let truncated = u.ratio(1, 8)?;
    let content_length = u.arbitrary()?;
    let mut redactions = Vec::new();
    for _ in 0..u.int_in_range(0..=6)? {
        let target = match u.int_in_range(0..=9u8)? {
            0 => Target::Header(HEADERS[u.choose_index(HEADERS.len())?].to_owned()),
            1 => Target::Header(u.arbitrary()?),
            2 => Target::Query(u.arbitrary()?),
            3 => Target::JsonPointer(u.arbitrary()?),
            4 => Target::JsonPointer(String::new()),
            _ if paths.is_empty() => Target::JsonPointer(u.arbitrary()?),
            _ => {
                let path = &paths[u.choose_index(paths.len())?];
                let mut pointer = String::new();
                for segment in path {
                    pointer.push('/');
                    match u.int_in_range(0..=15u8)? {
                        0 | 1 => pointer.push('*'),
                        2 => pointer.push('-'),
                        3 => pointer.push_str("01"),
                        _ => pointer.push_str(&segment.replace('~', "~0").replace('/', "~1")),
                    }
                }
                if u.ratio(1, 16)? {
                    pointer.push_str("/*");
                }
                Target::JsonPointer(pointer)
            }
        };
        let action = if u.ratio(1, 2)? { Action::Remove } else { Action::Replace(u.arbitrary()?) };
        redactions.push(Redaction { target, action });
    }
    Ok(Case { content_type, encoding, truncated, content_length, redactions })
}

fn collect_paths(value: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    if out.len() >= 256 {
        return;
    }
    out.push(at.clone());
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                at.push(i.to_string());
                collect_paths(item, at, out);
                at.pop();
            }
        }
        Value::Object(members) => {
            for (key, item) in members {
                at.push(key.clone());
                collect_paths(item, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn check(case: &Case, body: &[u8], parsed: Option<&Value>) {
    let mut headers = vec![("authorization".to_owned(), "Bearer secret".to_owned())];
    if case.content_length {
        headers.push(("content-length".into(), body.len().to_string()));
    }
    if let Some(encoding) = case.encoding {
        headers.push(("content-encoding".into(), encoding.into()));
    }
    // The header too, as every front door's normalised request has it (the `http`
    // applier below sees it as a header, so a redaction of it must match in both).
    if let Some(content_type) = &case.content_type {
        headers.push(("content-type".into(), content_type.clone()));
    }
    let message_body = (!body.is_empty()).then(|| Body {
        content_type: case.content_type.clone(),
        bytes: body.to_vec(),
        truncated: case.truncated,
    });
    let original = Request {
        headers: headers.clone(),
        query: vec![("token".into(), "t".into())],
        body: message_body.clone(),
        ..Request::default()
    };
    let mut request = original.clone();
    let result = redact::apply_to_request(&mut request, &case.redactions);

    // The response applier does the same to the body and headers.
    let mut response = Response { status: 200, headers, body: message_body };
    let from_response = redact::apply_to_response(&mut response, &case.redactions);
    match (&result, &from_response) {
        (Ok(_), Ok(_)) => {
            assert_eq!(request.body, response.body);
            assert_eq!(request.headers, response.headers);
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("request applier {result:?}, response applier {from_response:?}"),
    }

    // The `http` crate applier (the reverse proxy's) does the same to the same message.
    if !case.truncated {
        let mut builder = http::Request::builder().uri("https://api.example.com/?token=t");
        // A content type the `http` crate cannot carry never reaches its applier.
        let representable =
            case.content_type.as_deref().is_none_or(|ct| http::HeaderValue::from_str(ct).is_ok());
        for (name, value) in &original.headers {
            builder = builder.header(name, value);
        }
        if representable {
            let mut http_request = builder.body(body.to_vec()).expect("valid request");
            let from_http = portcullis_host::adapters::http::apply_to_http_request(&mut http_request, &case.redactions);
            match (&result, &from_http) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a, b, "the http applier reports differently");
                    let out = request.body.as_ref().map(|b| b.bytes.as_slice()).unwrap_or_default();
                    assert_eq!(http_request.body().as_slice(), out, "the http applier wrote a different body");
                }
                (Err(a), Err(b)) => assert_eq!(a, b),
                _ => panic!("normalised applier {result:?}, http applier {from_http:?}"),
            }
        }
    }

    let pointers: Vec<(usize, Vec<Seg>)> = case
        .redactions
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match &r.target {
            Target::JsonPointer(p) => Some((i, parse_pointer(p))),
            _ => None,
        })
        .map(|(i, p)| p.map(|p| (i, p)))
        .collect::<Option<_>>()
        .unwrap_or_else(|| {
            // Refused, though not necessarily for the pointer: the applier checks every
            // redaction first, and an earlier bad header value is reported before it.
            assert!(result.is_err(), "an invalid pointer was accepted: {result:?}");
            Vec::new()
        });

    let applied = match result {
        Ok(applied) => applied,
        Err(_) => {
            assert_eq!(request, original, "a failed redaction changed the request");
            return;
        }
    };
    let out = request.body.as_ref().map(|b| b.bytes.as_slice()).unwrap_or_default();
    // Bytes that changed are always reported; a replacement by the very same text (`""`
    // masked as `""`) is reported as a change too, which only costs a rewrite.
    assert!(applied.body_changed || out == body, "the body changed but body_changed is false");
    // Unless a redaction itself removed or replaced `content-length` (the policy's word
    // on that header stands; the front doors re-frame the body anyway).
    let framed_by_policy = case.redactions.iter().any(|r| matches!(&r.target, Target::Header(h) if h.eq_ignore_ascii_case("content-length")));
    if case.content_length && applied.body_changed && !framed_by_policy {
        assert_eq!(request.header("content-length"), Some(out.len().to_string().as_str()));
    }
    // A body of only whitespace carries no field: by design it is treated as empty, unless
    // it was truncated (then the rest is unknown, and the truncation check below refuses).
    // (An empty body is no body at all here, truncated or not.)
    let blank = body.is_empty() || (body.iter().all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) && !case.truncated);
    if pointers.is_empty() || blank {
        assert!(!applied.body_changed);
        return;
    }
    // A pointer redaction was applied to a non-empty body: the body must have been
    // readable JSON.
    assert!(!case.truncated, "a pointer redaction passed a truncated body");
    // A `content-encoding` is not refused as such (the applier only names it in its
    // error): real gzip or deflate bytes are never JSON text, so they fail below.
    let Some(parsed) = parsed else {
        // serde_json refuses lone surrogate escapes, nesting past 128 and numbers beyond
        // f64 (`8e7778`, valid JSON text by RFC 8259), which the applier accepts by design;
        // anything else it took must be JSON.
        let text = std::str::from_utf8(body).expect("a pointer redaction passed a non-UTF-8 body");
        let out_of_range = serde_json::from_slice::<Value>(body)
            .err()
            .is_some_and(|e| e.to_string().contains("number out of range"));
        assert!(
            text.contains("\\u") || text.matches(['[', '{']).count() > 100 || out_of_range,
            "a pointer redaction passed a body that is not JSON: {text:?}"
        );
        return;
    };
    let output: Value = match serde_json::from_slice(out) {
        Ok(v) => v,
        Err(err) => panic!("redacted body is not valid JSON ({err}): {:?}", String::from_utf8_lossy(out)),
    };
    let active: Vec<(usize, &[Seg])> = pointers.iter().map(|(i, p)| (*i, p.as_slice())).collect();
    let mut expected = parsed.clone();
    match model(&mut expected, &active, &case.redactions) {
        Edit::Keep => {}
        Edit::Remove => expected = Value::Null,
        Edit::Replace(text) => expected = Value::String(text),
    }
    assert_eq!(output, expected, "redacted body differs from the documented rules");
}

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Any,
    Key(String),
}

/// RFC 6901 with `*` as a wildcard segment, as documented in `redact`.
fn parse_pointer(pointer: &str) -> Option<Vec<Seg>> {
    if pointer.is_empty() {
        return Some(Vec::new());
    }
    let rest = pointer.strip_prefix('/')?;
    let raw: Vec<&str> = rest.split('/').collect();
    if raw.len() > MAX_POINTER_SEGMENTS {
        return None;
    }
    raw.into_iter()
        .map(|s| {
            if s == "*" {
                return Some(Seg::Any);
            }
            let mut key = String::new();
            let mut chars = s.chars();
            while let Some(c) = chars.next() {
                match c {
                    '~' => match chars.next()? {
                        '0' => key.push('~'),
                        '1' => key.push('/'),
                        _ => return None,
                    },
                    c => key.push(c),
                }
            }
            Some(Seg::Key(key))
        })
        .collect()
}

enum Edit {
    Keep,
    Remove,
    Replace(String),
}

/// The documented rules on a parsed document: `active` are the pointers (with their
/// redaction index) still to match at `value`.
fn model(value: &mut Value, active: &[(usize, &[Seg])], redactions: &[Redaction]) -> Edit {
    if active.is_empty() {
        return Edit::Keep;
    }
    let ending: Vec<usize> = active.iter().filter(|(_, p)| p.is_empty()).map(|(i, _)| *i).collect();
    if !ending.is_empty() {
        if ending.iter().any(|i| redactions[*i].action == Action::Remove) {
            return Edit::Remove;
        }
        let last = ending.iter().max().unwrap();
        let Action::Replace(text) = &redactions[*last].action else { unreachable!() };
        return Edit::Replace(text.clone());
    }
    let next = |matches: &dyn Fn(&str) -> bool| -> Vec<(usize, &[Seg])> {
        active
            .iter()
            .filter(|(_, p)| match &p[0] {
                Seg::Any => true,
                Seg::Key(k) => matches(k),
            })
            .map(|(i, p)| (*i, &p[1..]))
            .collect()
    };
    match value {
        Value::Object(members) => {
            let mut gone = Vec::new();
            for (key, child) in members.iter_mut() {
                match model(child, &next(&|k| k == key), redactions) {
                    Edit::Keep => {}
                    Edit::Remove => gone.push(key.clone()),
                    Edit::Replace(text) => *child = Value::String(text),
                }
            }
            for key in gone {
                members.remove(&key);
            }
        }
        Value::Array(items) => {
            let mut gone = Vec::new();
            for (i, child) in items.iter_mut().enumerate() {
                match model(child, &next(&|k| array_index(k) == Some(i)), redactions) {
                    Edit::Keep => {}
                    Edit::Remove => gone.push(i),
                    Edit::Replace(text) => *child = Value::String(text),
                }
            }
            for i in gone.into_iter().rev() {
                items.remove(i);
            }
        }
        _ => {}
    }
    Edit::Keep
}

fn array_index(key: &str) -> Option<usize> {
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_digit()) || (key.len() > 1 && key.starts_with('0')) {
        return None;
    }
    key.parse().ok()
}
