//! The forward-auth mapping: `original_request` over the headers of an arbitrary
//! sub-request (nginx `X-Original-*`, Traefik and Caddy `X-Forwarded-*`), then the same
//! normalisation the endpoint does.
//!
//! The bytes are one control byte and `name: value` lines; lines the `http` crate refuses
//! are skipped. Checks, beyond "never panics":
//! - the path and query the policies see are exactly those of the URI header (nothing the
//!   caller put in `X-Forwarded-Host` or `-Proto` can move them);
//! - the host the policies see is the forwarded host (or the sub-request's `Host`), as
//!   a whole, and the scheme is `http` or `https`;
//! - no forwarding header reaches the policies, and `Host` appears at most once;
//! - the client address is the last `X-Forwarded-For` entry, never an earlier one.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use portcullis_host::adapters::forward_auth::{FORWARDING, client_address, original_request};
use portcullis_host::adapters::http::{FromHttp, request_from_http};
use portcullis_host::exchange::{parse_query, percent_decode};

fuzz_target!(|data: &[u8]| {
    let Some((control, lines)) = data.split_first() else { return };
    let mut headers = HeaderMap::new();
    for line in lines.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let value = &line[colon + 1..];
        let value = value.strip_prefix(b" ").unwrap_or(value);
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(value)) else {
            continue;
        };
        headers.append(name, value);
    }
    let default_scheme = if control & 1 == 0 { "https" } else { "http" };

    if let Some(address) = client_address(&headers) {
        let last = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).last().unwrap();
        assert!(last.trim_end().ends_with(address.as_str()), "{address:?} is not the end of {last:?}");
        assert!(!address.contains(','));
    }

    let Ok(original) = original_request(&headers, default_scheme) else { return };
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    let uri = text("x-original-uri").or_else(|| text("x-forwarded-uri")).expect("a URI header was there");
    assert!(original.headers().get_all("host").iter().count() <= 1);
    for name in FORWARDING {
        assert!(original.headers().get(name).is_none(), "{name} reached the request");
    }
    let Ok(request) = request_from_http(&original, &FromHttp { default_scheme: default_scheme.into(), ..FromHttp::default() })
    else {
        return;
    };
    let (path, query) = match uri.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (uri, None),
    };
    assert_eq!(request.path, percent_decode(path, false), "the path moved");
    assert_eq!(request.query, query.map(parse_query).unwrap_or_default(), "the query moved");
    assert!(request.scheme == "http" || request.scheme == "https", "scheme {:?}", request.scheme);
    if let Some(host) = text("x-forwarded-host").or_else(|| text("host")) {
        let host = host.to_ascii_lowercase();
        // Host names compare case-insensitively (routing lower-cases them too).
        let seen = &request.authority.to_ascii_lowercase();
        assert!(host == *seen || host.starts_with(&format!("{seen}:")), "host {host:?} became {seen:?}");
    }
});
