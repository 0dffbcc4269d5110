//! Header and query normalisation of `http` crate requests, and the query decoding it
//! rests on.
//!
//! The bytes are two control bytes and a message in HTTP/1 shape, split into a method, a
//! URI, headers and a body; whatever the `http` crate refuses is skipped. Checks, beyond "never panics":
//! - `request_from_http` fails exactly when a header value is not UTF-8, `Host` repeats, an
//!   absolute-form authority disagrees with `Host`, or the target is refused by the default
//!   canonical-target rules (the same error `canonicalize` gives), and its result is
//!   normalised (upper-case method, lower-case header names, the canonical target's decoded
//!   path, the query as `parse_query` decodes it);
//! - redacting a query key or header on the `http::Request` leaves no trace of it when the
//!   result is normalised again, and does what redacting the normalised request does;
//! - `percent_decode(percent_encode_query(s)) == s`.
#![no_main]

use arbitrary::{Result, Unstructured};
use http::{HeaderName, HeaderValue, Method, Uri};
use libfuzzer_sys::fuzz_target;
use portcullis_host::adapters::http::{AdaptError, FromHttp, apply_to_http_request, request_from_http};
use portcullis_host::decision::{Action, Redaction, Target};
use portcullis_host::exchange::{parse_query, percent_decode, percent_encode_query};
use portcullis_host::redact;
use portcullis_host::target::{TargetError, TargetRules, canonicalize};

fuzz_target!(|data: &[u8]| {
    // Two control bytes, then a message in HTTP/1 shape (`METHOD URI` line, `name: value`
    // lines, a blank line, the body), so seeds can be written from recorded traffic.
    let Some((control, message)) = data.split_first_chunk::<2>() else { return };
    let _ = run(*control, message);
});

/// The message's parts as bytes: whatever the `http` crate refuses is dropped.
fn parse(message: &[u8]) -> (&[u8], &[u8], Vec<(&[u8], &[u8])>, &[u8]) {
    let mut lines = message.split_inclusive(|b| *b == b'\n');
    let strip = |line: &[u8]| -> usize {
        let mut end = line.len();
        while end > 0 && (line[end - 1] == b'\n' || line[end - 1] == b'\r') {
            end -= 1;
        }
        end
    };
    let first = lines.next().unwrap_or_default();
    let mut consumed = first.len();
    let first = &first[..strip(first)];
    let (method, uri) = match first.iter().position(|b| *b == b' ') {
        Some(i) => (&first[..i], &first[i + 1..]),
        None => (&b"GET"[..], first),
    };
    let mut headers = Vec::new();
    let mut body: &[u8] = &[];
    for line in lines.by_ref() {
        consumed += line.len();
        let text = &line[..strip(line)];
        if text.is_empty() {
            body = &message[consumed.min(message.len())..];
            break;
        }
        match text.iter().position(|b| *b == b':') {
            Some(i) => {
                let value = &text[i + 1..];
                let value = value.strip_prefix(b" ").unwrap_or(value);
                headers.push((&text[..i], value));
            }
            None => headers.push((text, &b""[..])),
        }
    }
    (method, uri, headers, body)
}

fn run(control: [u8; 2], message: &[u8]) -> Result<()> {
    let (method, uri, headers, body) = parse(message);
    let mut u = Unstructured::new(&control);
    let plus: bool = u.arbitrary()?;

    // The decoding helpers on the URI's text.
    if let Ok(text) = std::str::from_utf8(uri) {
        let _ = parse_query(text);
        let decoded = percent_decode(text, plus);
        if !text.contains('%') && !(plus && text.contains('+')) {
            assert_eq!(decoded, text);
        }
        assert_eq!(percent_decode(&percent_encode_query(text), true), text);
        assert_eq!(percent_decode(&percent_encode_query(text), false), text);
    }

    // A request.
    let method = Method::from_bytes(method).unwrap_or(Method::GET);
    let Ok(uri) = Uri::try_from(uri) else { return Ok(()) };
    let mut builder = http::Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) else { continue };
        builder = builder.header(name, value);
    }
    let Ok(mut req) = builder.body(body.to_vec()) else { return Ok(()) };
    let opts = FromHttp {
        default_scheme: if u.arbitrary()? { "http".into() } else { "HTTPS".into() },
        authority: if u.arbitrary()? { Some("fallback.example:443".into()) } else { None },
        ..FromHttp::default()
    };

    let hosts = req.headers().get_all(http::header::HOST).iter().count();
    let utf8 = req.headers().values().all(|v| std::str::from_utf8(v.as_bytes()).is_ok());
    // What the door judges: the canonical form of the origin-form target.
    let target = match req.uri().path_and_query().map_or("/", |pq| pq.as_str()) {
        "" => "/".to_owned(),
        query if query.starts_with('?') => format!("/{query}"),
        target => target.to_owned(),
    };
    let canonical = canonicalize(&target, &TargetRules::default());
    let normalised = match request_from_http(&req, &opts) {
        Ok(normalised) => {
            assert!(hosts <= 1 && utf8);
            let canonical = canonical.expect("an accepted target is canonical");
            assert_eq!(normalised.path, canonical.decoded_path(), "the path is not the canonical one");
            assert_eq!(normalised.query, canonical.query_pairs());
            normalised
        }
        Err(AdaptError::AmbiguousHost { count }) => {
            assert_eq!(count, hosts);
            return Ok(());
        }
        Err(AdaptError::HeaderNotUtf8 { .. }) => {
            assert!(!utf8 && hosts <= 1);
            return Ok(());
        }
        Err(AdaptError::Target(TargetError::AuthorityMismatch)) => {
            assert!(hosts <= 1 && utf8 && req.uri().authority().is_some());
            return Ok(());
        }
        // Refused by the canonical target's rules (fuzz target `target` checks those).
        Err(AdaptError::Target(e)) => {
            assert!(hosts <= 1 && utf8);
            assert_eq!(canonical.err(), Some(e), "refused for another reason than the rules give");
            return Ok(());
        }
        Err(e) => panic!("a refusal this target does not know: {e}"),
    };
    assert_eq!(normalised.method, normalised.method.to_ascii_uppercase());
    assert!(normalised.path.starts_with('/'), "path {:?}", normalised.path);
    assert_eq!(normalised.headers.len(), req.headers().len());
    assert!(normalised.headers.iter().all(|(n, _)| !n.bytes().any(|b| b.is_ascii_uppercase())));
    assert_eq!(normalised.query, req.uri().query().map(parse_query).unwrap_or_default());
    assert!(!normalised.authority.contains('@'), "userinfo kept: {:?}", normalised.authority);

    // Redact a query key and a header that are there (or arbitrary ones).
    let mut state = u32::from(control[0]) << 8 | u32::from(control[1]) | 1;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state as usize % n.max(1)
    };
    let mut redactions = Vec::new();
    for _ in 0..=next(3) {
        let target = if next(2) == 0 {
            match normalised.query.len() {
                0 => Target::Query("token".into()),
                n => Target::Query(normalised.query[next(n)].0.clone()),
            }
        } else {
            match normalised.headers.len() {
                0 => Target::Header("authorization".into()),
                n => Target::Header(normalised.headers[next(n)].0.clone()),
            }
        };
        let action = match next(3) {
            0 => Action::Replace("x y&z=%".into()),
            1 => Action::Replace("[redacted]".into()),
            _ => Action::Remove,
        };
        redactions.push(Redaction { target, action });
    }
    let mut expected = normalised.clone();
    let by_model = redact::apply_to_request(&mut expected, &redactions);
    let by_http = apply_to_http_request(&mut req, &redactions);
    match (&by_model, &by_http) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "the http applier reports differently"),
        (Err(a), Err(b)) => {
            assert_eq!(a, b);
            return Ok(());
        }
        _ => panic!("normalised applier {by_model:?}, http applier {by_http:?}"),
    }
    let again = match request_from_http(&req, &opts) {
        Ok(again) => again,
        // A redaction that rewrites `Host` under an absolute-form target makes the two disagree.
        Err(AdaptError::Target(TargetError::AuthorityMismatch))
            if req.uri().authority().is_some()
                && redactions.iter().any(|r| matches!(&r.target, Target::Header(name) if name == "host")) =>
        {
            return Ok(());
        }
        Err(e) => panic!("a redacted request no longer normalises: {e}"),
    };
    for redaction in &redactions {
        let (Target::Query(name), Action::Remove) = (&redaction.target, &redaction.action) else { continue };
        assert!(!again.query.iter().any(|(k, _)| k == name), "query `{name}` survived its removal");
    }
    for redaction in &redactions {
        let (Target::Header(name), Action::Remove) = (&redaction.target, &redaction.action) else { continue };
        assert!(again.header(name).is_none(), "header `{name}` survived its removal");
    }
    assert_eq!(again.query, expected.query, "the http applier and the model disagree on the query");
    // A `HeaderMap` moves its last name into a removed one's place; the order of
    // different names carries no meaning in HTTP (RFC 9110 §5.3), the order of one name's
    // values does.
    let by_name = |headers: &[(String, String)]| {
        let mut sorted = headers.to_vec();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        sorted
    };
    assert_eq!(by_name(&again.headers), by_name(&expected.headers), "the http applier and the model disagree on the headers");
    Ok(())
}
