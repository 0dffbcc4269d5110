//! What a door passes on: one place turns an arriving HTTP request into what the policies
//! judge, and an admitted request into what the upstream gets, so that every door forwards
//! exactly what was judged.
//!
//! - [`take_incoming`] runs first, on the headers as they arrived: framing two parsers could
//!   read differently is refused, a `Connection` header may name only hop-by-hop headers
//!   (`Connection: authorization` would have a proxy drop a header after the policies
//!   judged it), method overrides are refused (the policies judge the method the upstream
//!   acts on), hop-by-hop headers go, and client copies of the headers only the host sets
//!   (`Forwarded`, `X-Forwarded-*`, `X-Real-IP`, `X-Portcullis-*`) are dropped, so no
//!   policy judges them and no upstream trusts them.
//! - [`upstream_request`] then builds the request the upstream gets: the judged method,
//!   the canonical target ([`crate::target`]) with the verdict's query redactions, the
//!   headers exactly as the policies saw them after the gate's changes (removed
//!   credentials, the approval header, header redactions), and the headers the host derives
//!   from what was judged: `X-Forwarded-Host`/`-Proto`/`-For`, `X-Portcullis-Principal`,
//!   `X-Portcullis-On-Behalf-Of`, `X-Request-Id`. When a response policy will run, `Range`
//!   and `If-Range` are dropped (a slice of a body cannot be redacted) and so is
//!   `Accept-Encoding` (a compressed body cannot be).
//! - [`header_edits`] says which of the caller's headers a door that cannot rewrite the
//!   request (forward-auth) must have its proxy remove or replace.
//! - [`downstream_response`] applies a response verdict's redactions.

use http::header::{ACCEPT_ENCODING, CONTENT_LENGTH, HeaderMap, HeaderName, HeaderValue, TRANSFER_ENCODING};

use crate::decision::{Redaction, Target};
use crate::exchange::Request;
use crate::redact::{Applied, RedactError};
use crate::target::CanonicalTarget;

use super::http::{apply_to_http_request, apply_to_http_response};

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus the
/// non-standard `Proxy-Connection`.
pub(crate) const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Headers only the host sets, from what it judged; a client's copies are dropped.
pub(crate) const HOST_SET: [&str; 9] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-real-ip",
    "x-original-forwarded-for",
];

/// The prefix of the headers Portcullis itself sends upstream (`X-Portcullis-Principal`,
/// …); a client's copies are dropped.
pub(crate) const HOST_SET_PREFIX: &str = "x-portcullis-";

/// Headers that ask a backend to act as another method than the request line's.
pub(crate) const METHOD_OVERRIDES: [&str; 3] = ["x-http-method-override", "x-http-method", "x-method-override"];

/// The principal header the host sets: `<kind>:<id>`.
pub const PRINCIPAL_HEADER: &str = "x-portcullis-principal";
/// The on-behalf-of header the host sets (empty when nobody).
pub const ON_BEHALF_OF_HEADER: &str = "x-portcullis-on-behalf-of";

/// Why an arriving request's framing or headers are refused (400 `bad-request`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IncomingError {
    /// `Connection` names a header that is not hop-by-hop.
    #[error(
        "the `Connection` header names `{header}`, which is not a hop-by-hop header: a proxy would drop it after \
         the policies judged it; send `Connection` with only `close`, `keep-alive`, `upgrade` or `te`"
    )]
    ConnectionNamesEndToEnd {
        /// The header named.
        header: String,
    },
    /// `Transfer-Encoding` and `Content-Length` together (a request smuggling shape).
    #[error("the request has both `Transfer-Encoding` and `Content-Length`; send one of them")]
    LengthAndEncoding,
    /// More than one `Content-Length`.
    #[error("the request has {count} `Content-Length` headers; exactly one is allowed")]
    RepeatedContentLength {
        /// How many there were.
        count: usize,
    },
    /// A method-override header.
    #[error(
        "the request has `{header}`, which asks the upstream to act as another method than the one the policies \
         judge; send the real method instead"
    )]
    MethodOverride {
        /// The header's name.
        header: &'static str,
    },
}

/// Why a door cannot build what it forwards. Fail closed: the door refuses (500/502).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    /// A header the policies saw cannot be written back (a replacement that is not a valid
    /// header value); the request is refused rather than forwarded without it.
    #[error("the header `{name}` cannot be forwarded as the policies left it: {reason}")]
    Header {
        /// The header's name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// A redaction could not be applied.
    #[error(transparent)]
    Redaction(#[from] RedactError),
    /// The target could not be rebuilt into a URI.
    #[error("the request target cannot be forwarded: {reason}")]
    Target {
        /// Why.
        reason: String,
    },
}

/// Checks and cleans the headers of a request as it arrived, before it is normalised.
/// See the module documentation.
pub fn take_incoming(headers: &mut HeaderMap) -> Result<(), IncomingError> {
    let lengths = headers.get_all(CONTENT_LENGTH).iter().count();
    if lengths > 1 {
        return Err(IncomingError::RepeatedContentLength { count: lengths });
    }
    if lengths == 1 && headers.contains_key(TRANSFER_ENCODING) {
        return Err(IncomingError::LengthAndEncoding);
    }
    if let Some(header) = METHOD_OVERRIDES.into_iter().find(|name| headers.contains_key(*name)) {
        return Err(IncomingError::MethodOverride { header });
    }
    for value in headers.get_all(http::header::CONNECTION) {
        for name in String::from_utf8_lossy(value.as_bytes()).split(',') {
            let name = name.trim().to_ascii_lowercase();
            let allowed =
                name.is_empty() || name == "close" || name == "http2-settings" || HOP_BY_HOP.contains(&name.as_str());
            if !allowed {
                return Err(IncomingError::ConnectionNamesEndToEnd { header: shorten(&name) });
            }
        }
    }
    for name in HOP_BY_HOP.into_iter().chain(HOST_SET) {
        headers.remove(name);
    }
    let ours: Vec<HeaderName> =
        headers.keys().filter(|name| name.as_str().starts_with(HOST_SET_PREFIX)).cloned().collect();
    for name in ours {
        headers.remove(name);
    }
    Ok(())
}

/// Removes hop-by-hop headers from a message coming back from an upstream (RFC 9110
/// §7.6.1), including those its `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The request an upstream gets for an admitted request: `judged` is the request as the
/// gate let it through (the ticket's), `target` its canonical target, `redactions` the
/// request verdict's. The body is left for the door to attach (the judged body, already
/// redacted by the gate, when it was buffered). `response_phase` says whether a response
/// policy will run. The URI is origin-form; the door sets the upstream's scheme, authority
/// and `Host`.
pub fn upstream_request(
    judged: &Request,
    target: &CanonicalTarget,
    redactions: &[Redaction],
    response_phase: bool,
) -> Result<http::Request<Vec<u8>>, ForwardError> {
    let mut request = http::Request::builder()
        .method(judged.method.as_str())
        .uri(target.origin_form())
        .body(Vec::new())
        .map_err(|e| ForwardError::Target { reason: e.to_string() })?;
    let query: Vec<Redaction> = redactions.iter().filter(|r| matches!(r.target, Target::Query(_))).cloned().collect();
    if !query.is_empty() {
        apply_to_http_request(&mut request, &query)?;
    }
    let headers = request.headers_mut();
    for (name, value) in &judged.headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ForwardError::Header { name: name.clone(), reason: "not a valid header name" })?;
        let value = HeaderValue::from_bytes(value.as_bytes())
            .map_err(|_| ForwardError::Header { name: name.clone(), reason: "not a valid header value" })?;
        headers.append(header, value);
    }
    if response_phase {
        for name in [http::header::RANGE, http::header::IF_RANGE, ACCEPT_ENCODING] {
            headers.remove(name);
        }
    }
    set_derived_headers(headers, judged)?;
    Ok(request)
}

/// Sets the headers the host derives from what was judged, replacing any copies:
/// `X-Forwarded-Host` (the authority routed on), `X-Forwarded-Proto`, `X-Forwarded-For` (the
/// client's address), `X-Portcullis-Principal` (`<kind>:<id>`), `X-Portcullis-On-Behalf-Of`
/// (empty when nobody) and `X-Request-Id`. `Forwarded` and `X-Real-IP` are removed. For a
/// door that builds its upstream request itself (the MCP door); [`upstream_request`] calls
/// it.
pub fn set_derived_headers(headers: &mut HeaderMap, judged: &Request) -> Result<(), ForwardError> {
    let principal = &judged.principal;
    let derived = [
        ("x-forwarded-host", judged.authority.clone()),
        ("x-forwarded-proto", judged.scheme.clone()),
        ("x-forwarded-for", judged.client_address.clone().unwrap_or_default()),
        (PRINCIPAL_HEADER, format!("{}:{}", principal.kind.as_str(), principal.id)),
        (ON_BEHALF_OF_HEADER, principal.on_behalf_of.clone().unwrap_or_default()),
        (crate::gate::REQUEST_ID_HEADER, judged.id.clone()),
    ];
    for name in ["forwarded", "x-real-ip"] {
        headers.remove(name);
    }
    for (name, value) in derived {
        let header = HeaderName::from_static(name);
        if value.is_empty() && name != ON_BEHALF_OF_HEADER {
            headers.remove(header);
            continue;
        }
        let value = HeaderValue::from_str(&value)
            .map_err(|_| ForwardError::Header { name: name.to_owned(), reason: "not a valid header value" })?;
        headers.insert(header, value);
    }
    Ok(())
}

/// What a door that cannot rewrite the request must have its proxy do to one header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderEdit {
    /// Remove every value of the header.
    Remove(String),
    /// Replace every value of the header with this one.
    Set(String, String),
}

/// The edits that turn the caller's headers (`sent`, as normalised) into the headers the
/// gate let through (`judged`, e.g. the ticket's): a header the gate removed (a credential,
/// the approval header, a redaction) is removed; one whose values changed is set. Only
/// headers the caller sent are named: nothing is added.
pub fn header_edits(sent: &[(String, String)], judged: &[(String, String)]) -> Vec<HeaderEdit> {
    let mut edits = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (name, _) in sent {
        if seen.contains(&name.as_str()) {
            continue;
        }
        seen.push(name);
        let before: Vec<&str> = sent.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect();
        let after: Vec<&str> = judged.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect();
        match after.first() {
            None => edits.push(HeaderEdit::Remove(name.clone())),
            Some(first) if before != after => edits.push(HeaderEdit::Set(name.clone(), (*first).to_owned())),
            Some(_) => {}
        }
    }
    edits
}

/// Applies a response verdict's redactions to the response a door returns (headers and
/// body; `Content-Length` fixed). On error nothing changes and the door refuses (502).
pub fn downstream_response(
    response: &mut http::Response<Vec<u8>>,
    redactions: &[Redaction],
) -> Result<Applied, ForwardError> {
    Ok(apply_to_http_response(response, redactions)?)
}

/// A header name from the caller, cut short for an error message.
fn shorten(name: &str) -> String {
    name.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::Action;
    use crate::exchange::{Principal, PrincipalKind};
    use crate::target::{TargetRules, canonicalize};

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn connection_may_name_only_hop_by_hop_headers() {
        for named in ["authorization", "x-api-key", "host", "Keep-Alive, X-API-Key", "cookie"] {
            let mut headers = map(&[("connection", named), ("authorization", "Bearer t"), ("x-api-key", "k")]);
            let err = take_incoming(&mut headers).unwrap_err();
            assert!(matches!(err, IncomingError::ConnectionNamesEndToEnd { .. }), "{named}: {err}");
        }
        let mut headers = map(&[("connection", "keep-alive, Upgrade, TE"), ("keep-alive", "5"), ("te", "trailers")]);
        take_incoming(&mut headers).unwrap();
        assert!(headers.is_empty(), "{headers:?}");
    }

    #[test]
    fn ambiguous_framing_and_method_overrides_are_refused() {
        let mut both = map(&[("content-length", "5"), ("transfer-encoding", "chunked")]);
        assert_eq!(take_incoming(&mut both), Err(IncomingError::LengthAndEncoding));
        let mut two = map(&[("content-length", "5"), ("content-length", "6")]);
        assert_eq!(take_incoming(&mut two), Err(IncomingError::RepeatedContentLength { count: 2 }));
        for header in METHOD_OVERRIDES {
            let mut headers = map(&[(header, "DELETE")]);
            assert_eq!(take_incoming(&mut headers), Err(IncomingError::MethodOverride { header }));
        }
    }

    #[test]
    fn client_copies_of_host_set_headers_are_dropped() {
        let mut headers = map(&[
            ("forwarded", "for=1.2.3.4;host=evil"),
            ("x-forwarded-host", "evil.test"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
            ("x-portcullis-principal", "user:admin"),
            ("X-Portcullis-On-Behalf-Of", "admin"),
            ("x-api-key", "k"),
        ]);
        take_incoming(&mut headers).unwrap();
        assert_eq!(headers.keys().map(HeaderName::as_str).collect::<Vec<_>>(), ["x-api-key"]);
    }

    fn judged() -> Request {
        Request {
            id: "req-1".into(),
            method: "POST".into(),
            scheme: "https".into(),
            authority: "api.test".into(),
            path: "/admin/users".into(),
            headers: vec![
                ("host".into(), "api.test".into()),
                ("cookie".into(), "a".into()),
                ("cookie".into(), "b".into()),
                ("range".into(), "bytes=0-5".into()),
                ("x-name".into(), "José".into()),
            ],
            principal: Principal {
                kind: PrincipalKind::Agent,
                id: "bot".into(),
                on_behalf_of: Some("alice".into()),
                ..Principal::default()
            },
            client_address: Some("10.0.0.7".into()),
            ..Request::default()
        }
    }

    #[test]
    fn the_upstream_gets_the_judged_request_and_derived_headers() {
        let target = canonicalize("/public/../admin/users?token=1&keep=a+b", &TargetRules::default()).unwrap();
        let redactions = [Redaction { target: Target::Query("token".into()), action: Action::Remove }];
        let req = upstream_request(&judged(), &target, &redactions, true).unwrap();
        assert_eq!(req.method(), "POST");
        assert_eq!(req.uri().to_string(), "/admin/users?keep=a+b");
        let h = req.headers();
        assert_eq!(h.get_all("cookie").iter().collect::<Vec<_>>(), ["a", "b"]);
        assert!(h.get("range").is_none(), "Range is dropped when a response policy runs");
        assert_eq!(h["x-name"].as_bytes(), "José".as_bytes());
        assert_eq!(h["x-forwarded-host"], "api.test");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-for"], "10.0.0.7");
        assert_eq!(h[PRINCIPAL_HEADER], "agent:bot");
        assert_eq!(h[ON_BEHALF_OF_HEADER], "alice");
        assert_eq!(h["x-request-id"], "req-1");

        let req = upstream_request(&judged(), &target, &[], false).unwrap();
        assert_eq!(req.headers()["range"], "bytes=0-5", "kept when no response policy runs");
    }

    #[test]
    fn a_header_that_cannot_be_written_back_refuses() {
        let mut request = judged();
        request.headers.push(("x-bad".into(), "a\nb".into()));
        let target = canonicalize("/a", &TargetRules::default()).unwrap();
        let err = upstream_request(&request, &target, &[], false).unwrap_err();
        assert!(matches!(err, ForwardError::Header { ref name, .. } if name == "x-bad"), "{err}");
    }

    #[test]
    fn header_edits_remove_and_replace_only_what_was_sent() {
        let pairs = |p: &[(&str, &str)]| p.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect::<Vec<_>>();
        let sent = pairs(&[("authorization", "Bearer t"), ("cookie", "a"), ("cookie", "b"), ("x-keep", "1")]);
        let judged = pairs(&[("cookie", "[redacted]"), ("cookie", "[redacted]"), ("x-keep", "1")]);
        assert_eq!(
            header_edits(&sent, &judged),
            [HeaderEdit::Remove("authorization".into()), HeaderEdit::Set("cookie".into(), "[redacted]".into())]
        );
    }
}
