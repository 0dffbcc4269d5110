//! The forward-auth mapping: `original_request` over the headers of an arbitrary
//! sub-request (nginx `X-Original-*`, Traefik and Caddy `X-Forwarded-*`), then the same
//! normalisation the endpoint does.
//!
//! The bytes are one control byte and `name: value` lines; lines the `http` crate refuses
//! are skipped. Checks, beyond "never panics":
//! - the configured header family is the one read: a sub-request carrying the other
//!   family's method or URI header is refused;
//! - the path and query the policies see are exactly those of the URI header (nothing the
//!   caller put in `X-Forwarded-Host` or `-Proto` can move them), and the URI header was
//!   already canonical: the proxy forwards it as sent, so a target the canonicalisation
//!   would change is refused, never judged in another form;
//! - the host the policies see is the forwarded host (or the sub-request's `Host`), as
//!   a whole, and the scheme is `http` or `https`;
//! - no forwarding header reaches the policies, and `Host` appears at most once;
//! - the client address is the last `X-Forwarded-For` entry, never an earlier one.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use portcullis_host::adapters::forward_auth::{FORWARDING, HeaderFamily, client_address, original_request};
use portcullis_host::adapters::http::{FromHttp, request_from_http};
use portcullis_host::exchange::parse_query;
use portcullis_host::target::{TargetRules, canonicalize};

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

    let family = if control & 2 == 0 { HeaderFamily::Nginx } else { HeaderFamily::Traefik };
    let (own, other) = match family {
        HeaderFamily::Nginx => ("x-original-uri", ["x-forwarded-method", "x-forwarded-uri"]),
        _ => ("x-forwarded-uri", ["x-original-method", "x-original-uri"]),
    };
    let Ok(original) = original_request(&headers, default_scheme, family) else { return };
    assert!(other.iter().all(|name| !headers.contains_key(*name)), "the other family's header was read past");
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    let uri = text(own).expect("the family's URI header was there");
    assert!(original.headers().get_all("host").iter().count() <= 1);
    for name in FORWARDING {
        assert!(original.headers().get(name).is_none(), "{name} reached the request");
    }
    let opts = FromHttp { default_scheme: default_scheme.into(), forwards_raw_target: true, ..FromHttp::default() };
    let Ok(request) = request_from_http(&original, &opts) else {
        return;
    };
    let (_, query) = match uri.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (uri, None),
    };
    let canonical = canonicalize(uri, &TargetRules::default()).expect("an accepted target is canonical");
    // `/a?` is forwarded as `/a`: an empty query is none (but `/a??` has the query `?`).
    let form = canonical.origin_form();
    let unchanged = form == uri || (canonical.query().is_none() && uri.strip_suffix('?') == Some(form.as_str()));
    assert!(unchanged, "a target that is not canonical was judged: {uri:?}, canonical {form:?}");
    assert_eq!(request.path, canonical.decoded_path(), "the path moved");
    assert_eq!(request.query, query.map(parse_query).unwrap_or_default(), "the query moved");
    assert!(request.scheme == "http" || request.scheme == "https", "scheme {:?}", request.scheme);
    if let Some(host) = text("x-forwarded-host").or_else(|| text("host")) {
        let host = host.to_ascii_lowercase();
        // Host names compare case-insensitively (routing lower-cases them too).
        let seen = &request.authority.to_ascii_lowercase();
        assert!(host == *seen || host.starts_with(&format!("{seen}:")), "host {host:?} became {seen:?}");
    }
});
