//! Converts `http` crate messages into the normalised model, and applies redactions to
//! them in place through the same applier as the normalised model ([`crate::redact`]).
//!
//! This is what the embedding API and the HTTP front doors use: a request arrives as an
//! `http::Request`, becomes a [`Request`] for the policies, and the verdict's redactions are
//! written back into the `http::Request` (or `http::Response`) that is passed on.
//!
//! Header values that are not UTF-8 are refused ([`AdaptError::HeaderNotUtf8`]) rather than
//! converted lossily: a policy that matches a header's value must see the value the
//! upstream will see, and U+FFFD in its place could make a deny rule miss. Valid UTF-8
//! beyond ASCII (which `HeaderValue::to_str` would refuse) is accepted.

use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue, Uri};

use crate::decision::Redaction;
use crate::exchange::{Body, Request, Response, percent_decode, percent_encode_query};
use crate::redact::{Applied, BodyView, Direction, Fields, Plan, RedactError, ValueEdit};
use crate::target::{CanonicalTarget, TargetError, TargetRules, canonicalize, require_canonical};

/// What an `http::Request` does not say, for [`request_from_http`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromHttp {
    /// Scheme when the URI has none (origin-form targets, as servers receive them):
    /// `https` by default; a front door without TLS sets `http`.
    pub default_scheme: String,
    /// Authority when neither the URI nor a `Host` header gives one.
    pub authority: Option<String>,
    /// The request id for the audit record.
    pub id: String,
    /// The client's address, when known.
    pub client_address: Option<String>,
    /// Receive time in ms since the Unix epoch.
    pub received_at_ms: u64,
    /// How the request target is canonicalised (`[request_target]`).
    pub target_rules: TargetRules,
    /// Whether the door forwards the target exactly as it arrived (forward-auth, ext_authz:
    /// the proxy in front forwards it, not Portcullis). Then a target that is not already
    /// canonical is refused ([`TargetError::NotCanonical`]) instead of judged in a form the
    /// upstream will not get.
    pub forwards_raw_target: bool,
}

impl Default for FromHttp {
    fn default() -> Self {
        FromHttp {
            default_scheme: "https".into(),
            authority: None,
            id: String::new(),
            client_address: None,
            received_at_ms: 0,
            target_rules: TargetRules::default(),
            forwards_raw_target: false,
        }
    }
}

/// Why an `http` message could not be normalised. The front door answers 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdaptError {
    /// A header value is not valid UTF-8 (the value itself is not repeated: it may be a
    /// secret).
    #[error(
        "header `{name}` has a value that is not valid UTF-8; refusing the message, since \
         policies could not see its true value"
    )]
    HeaderNotUtf8 {
        /// The header's name.
        name: String,
    },
    /// More than one `Host` header, which HTTP/1.1 forbids (RFC 9112 §3.2) and which
    /// could make the policy and the upstream disagree about the target.
    #[error("the request has {count} `Host` headers; exactly one is allowed")]
    AmbiguousHost {
        /// How many there were.
        count: usize,
    },
    /// The request target is refused by a canonicalisation rule ([`crate::target`]).
    #[error(transparent)]
    Target(#[from] TargetError),
}

/// Normalises an `http::Request`: upper-case method; scheme from the URI or
/// `opts.default_scheme`; authority from the URI, else the `Host` header, else
/// `opts.authority` (without userinfo, and without the scheme's default port); the path
/// and query of the canonical request target ([`crate::target`]); headers in order with
/// lower-case names; the body, if not empty, with the `Content-Type` header's value as its
/// content type.
pub fn request_from_http<B: AsRef<[u8]>>(req: &http::Request<B>, opts: &FromHttp) -> Result<Request, AdaptError> {
    canonical_request_from_http(req, opts).map(|(request, _)| request)
}

/// As [`request_from_http`], also returning the canonical target a door must forward
/// (never the raw one: it may hold dot segments or escapes a backend reads differently).
pub fn canonical_request_from_http<B: AsRef<[u8]>>(
    req: &http::Request<B>,
    opts: &FromHttp,
) -> Result<(Request, CanonicalTarget), AdaptError> {
    let uri = req.uri();
    let scheme = uri.scheme_str().unwrap_or(&opts.default_scheme).to_ascii_lowercase();
    let hosts = req.headers().get_all(HOST).iter().count();
    if hosts > 1 {
        return Err(AdaptError::AmbiguousHost { count: hosts });
    }
    let headers = headers_from_http(req.headers())?;
    let host_header = headers.iter().find(|(name, _)| name == "host").map(|(_, value)| value.as_str());
    let authority = match uri.authority() {
        Some(authority) => {
            // An absolute-form target routes on its authority while the upstream gets the
            // `Host` header: they must name the same host.
            let agrees = host_header.is_none_or(|host| {
                normalise_authority(host, &scheme)
                    .eq_ignore_ascii_case(&normalise_authority(authority.as_str(), &scheme))
            });
            if authority.as_str().contains('@') || !agrees {
                return Err(TargetError::AuthorityMismatch.into());
            }
            authority.as_str().to_owned()
        }
        None => host_header.map(str::to_owned).or_else(|| opts.authority.clone()).unwrap_or_default(),
    };
    let target = match uri.path_and_query().map_or("/", |pq| pq.as_str()) {
        "" => "/".to_owned(),
        query if query.starts_with('?') => format!("/{query}"),
        target => target.to_owned(),
    };
    let target = if opts.forwards_raw_target {
        require_canonical(&target, &opts.target_rules)?
    } else {
        canonicalize(&target, &opts.target_rules)?
    };
    let request = Request {
        id: opts.id.clone(),
        method: req.method().as_str().to_ascii_uppercase(),
        authority: normalise_authority(&authority, &scheme),
        scheme,
        path: target.decoded_path().to_owned(),
        query: target.query_pairs(),
        body: body_from_http(req.body().as_ref(), req.headers()),
        headers,
        client_address: opts.client_address.clone(),
        received_at_ms: opts.received_at_ms,
        ..Request::default()
    };
    Ok((request, target))
}

/// Normalises an `http::Response`: status, headers in order with lower-case names, and the
/// body if not empty.
pub fn response_from_http<B: AsRef<[u8]>>(res: &http::Response<B>) -> Result<Response, AdaptError> {
    Ok(Response {
        status: res.status().as_u16(),
        headers: headers_from_http(res.headers())?,
        body: body_from_http(res.body().as_ref(), res.headers()),
    })
}

/// Applies `redactions` to an `http::Request` in place, with the same rules and report as
/// [`crate::redact::apply_to_request`]: headers removed or replaced in the `HeaderMap`,
/// query pairs removed or replaced in the URI (the other pairs keep their exact
/// encoding), a JSON body rewritten and `Content-Length` fixed. On error nothing changes.
pub fn apply_to_http_request(
    req: &mut http::Request<Vec<u8>>,
    redactions: &[Redaction],
) -> Result<Applied, RedactError> {
    let plan = Plan::compile(redactions, Direction::Request)?;
    let mut tally = plan.tally();
    let body = plan.body(Some(body_view(req.body(), req.headers())), &mut tally)?;
    let uri = if plan.has_query() {
        let mut query = RawQuery::parse(req.uri().query().unwrap_or(""));
        plan.query(&mut query, &mut tally)?;
        if query.changed { Some(with_query(req.uri(), &query.join())?) } else { None }
    } else {
        None
    };
    plan.headers(&mut HeaderFields(req.headers_mut()), &mut tally)?;
    if let Some(uri) = uri {
        *req.uri_mut() = uri;
    }
    if let Some(body) = body {
        fix_content_length(req.headers_mut(), body.len());
        *req.body_mut() = body;
    }
    Ok(plan.finish(tally))
}

/// Applies `redactions` to an `http::Response` in place, with the same rules and report as
/// [`crate::redact::apply_to_response`]. On error nothing changes.
pub fn apply_to_http_response(
    res: &mut http::Response<Vec<u8>>,
    redactions: &[Redaction],
) -> Result<Applied, RedactError> {
    let plan = Plan::compile(redactions, Direction::Response)?;
    let mut tally = plan.tally();
    let body = plan.body(Some(body_view(res.body(), res.headers())), &mut tally)?;
    plan.headers(&mut HeaderFields(res.headers_mut()), &mut tally)?;
    if let Some(body) = body {
        fix_content_length(res.headers_mut(), body.len());
        *res.body_mut() = body;
    }
    Ok(plan.finish(tally))
}

fn headers_from_http(map: &HeaderMap) -> Result<Vec<(String, String)>, AdaptError> {
    map.iter()
        .map(|(name, value)| match std::str::from_utf8(value.as_bytes()) {
            Ok(text) => Ok((name.as_str().to_owned(), text.to_owned())),
            Err(_) => Err(AdaptError::HeaderNotUtf8 { name: name.as_str().to_owned() }),
        })
        .collect()
}

fn body_from_http(bytes: &[u8], headers: &HeaderMap) -> Option<Body> {
    if bytes.is_empty() {
        return None;
    }
    Some(Body {
        content_type: header_text(headers, &CONTENT_TYPE).map(str::to_owned),
        bytes: bytes.to_vec(),
        truncated: false,
    })
}

/// A header's first value as text; a non-UTF-8 value counts as absent (for the body's
/// content type that means "not a JSON type": the bytes are sniffed, and fail closed).
fn header_text<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
}

fn body_view<'a>(bytes: &'a [u8], headers: &'a HeaderMap) -> BodyView<'a> {
    BodyView {
        bytes,
        content_type: header_text(headers, &CONTENT_TYPE),
        content_encoding: header_text(headers, &CONTENT_ENCODING),
        truncated: false,
    }
}

/// Drops userinfo (credentials must not reach policies or the audit log) and the scheme's
/// default port. Shared with the HAR reader so recorded and live requests name hosts alike.
pub(crate) fn normalise_authority(authority: &str, scheme: &str) -> String {
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let default_port = match scheme {
        "http" => "80",
        "https" => "443",
        _ => return host.to_owned(),
    };
    match host.rsplit_once(':') {
        // A colon inside an IPv6 literal (`[::1]`) is not a port separator.
        Some((name, port)) if port == default_port && (!name.contains(':') || name.ends_with(']')) => name.to_owned(),
        _ => host.to_owned(),
    }
}

/// Sets `Content-Length` to `len` (one value) if the message had one.
fn fix_content_length(headers: &mut HeaderMap, len: usize) {
    if headers.contains_key(CONTENT_LENGTH) {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    }
}

/// `uri` with its query replaced (dropped when empty).
fn with_query(uri: &Uri, query: &str) -> Result<Uri, RedactError> {
    let path_and_query = if query.is_empty() { uri.path().to_owned() } else { format!("{}?{query}", uri.path()) };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query =
        Some(PathAndQuery::try_from(path_and_query).map_err(|e| RedactError::Uri { reason: e.to_string() })?);
    Uri::from_parts(parts).map_err(|e| RedactError::Uri { reason: e.to_string() })
}

/// A `HeaderMap` as fields for the applier.
struct HeaderFields<'a>(&'a mut HeaderMap);

impl Fields for HeaderFields<'_> {
    fn remove_all(&mut self, name: &str) -> bool {
        // A name that is not a valid header name cannot be present.
        HeaderName::from_bytes(name.as_bytes()).is_ok_and(|name| self.0.remove(&name).is_some())
    }

    fn replace_all(&mut self, name: &str, value: &str) -> Result<bool, RedactError> {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else { return Ok(false) };
        let count = self.0.get_all(&name).iter().count();
        if count == 0 {
            return Ok(false);
        }
        let value = HeaderValue::from_str(value).map_err(|_| RedactError::InvalidHeaderValue {
            name: name.as_str().to_owned(),
            reason: "the replacement is not a valid header value".into(),
        })?;
        self.0.insert(name.clone(), value.clone());
        for _ in 1..count {
            self.0.append(name.clone(), value.clone());
        }
        Ok(true)
    }

    fn edit_each(
        &mut self,
        edit: &mut dyn FnMut(&str, &str) -> Result<ValueEdit, RedactError>,
    ) -> Result<(), RedactError> {
        let names: Vec<HeaderName> = self.0.keys().cloned().collect();
        for name in names {
            let mut values = Vec::new();
            let mut changed = false;
            for value in self.0.get_all(&name) {
                let text = String::from_utf8_lossy(value.as_bytes());
                match edit(name.as_str(), &text)? {
                    ValueEdit::Keep => values.push(value.clone()),
                    ValueEdit::Remove => changed = true,
                    ValueEdit::Set(new) => {
                        changed = true;
                        values.push(HeaderValue::from_str(&new).map_err(|_| RedactError::InvalidHeaderValue {
                            name: name.as_str().to_owned(),
                            reason: "the masked value is not a valid header value".into(),
                        })?);
                    }
                }
            }
            if changed {
                // `insert` keeps the name's place among the headers; `remove` only when none
                // is left.
                let mut values = values.into_iter();
                match values.next() {
                    Some(first) => {
                        self.0.insert(name.clone(), first);
                        for value in values {
                            self.0.append(name.clone(), value);
                        }
                    }
                    None => {
                        self.0.remove(&name);
                    }
                }
            }
        }
        Ok(())
    }
}

/// A URI query as its raw `key=value` segments, so pairs that are not redacted keep their
/// exact encoding. Keys are matched decoded, as the policies saw them.
struct RawQuery<'a> {
    segments: Vec<(String, std::borrow::Cow<'a, str>)>,
    changed: bool,
}

impl<'a> RawQuery<'a> {
    fn parse(query: &'a str) -> Self {
        let segments = query
            .split('&')
            .filter(|segment| !segment.is_empty())
            .map(|segment| {
                let raw_key = segment.split_once('=').map_or(segment, |(key, _)| key);
                (percent_decode(raw_key, true), std::borrow::Cow::Borrowed(segment))
            })
            .collect();
        RawQuery { segments, changed: false }
    }

    fn join(&self) -> String {
        let parts: Vec<&str> = self.segments.iter().map(|(_, raw)| raw.as_ref()).collect();
        parts.join("&")
    }
}

impl Fields for RawQuery<'_> {
    fn remove_all(&mut self, name: &str) -> bool {
        let before = self.segments.len();
        self.segments.retain(|(key, _)| key != name);
        let hit = self.segments.len() != before;
        self.changed |= hit;
        hit
    }

    fn replace_all(&mut self, name: &str, value: &str) -> Result<bool, RedactError> {
        let encoded = percent_encode_query(value);
        let mut hit = false;
        for (_, raw) in self.segments.iter_mut().filter(|(key, _)| key == name) {
            let raw_key = raw.split_once('=').map_or(raw.as_ref(), |(key, _)| key);
            *raw = std::borrow::Cow::Owned(format!("{raw_key}={encoded}"));
            hit = true;
        }
        self.changed |= hit;
        Ok(hit)
    }

    fn edit_each(
        &mut self,
        edit: &mut dyn FnMut(&str, &str) -> Result<ValueEdit, RedactError>,
    ) -> Result<(), RedactError> {
        let mut kept = Vec::with_capacity(self.segments.len());
        for (key, raw) in std::mem::take(&mut self.segments) {
            let value = raw.split_once('=').map_or(String::new(), |(_, value)| percent_decode(value, true));
            match edit(&key, &value)? {
                ValueEdit::Keep => kept.push((key, raw)),
                ValueEdit::Remove => self.changed = true,
                ValueEdit::Set(new) => {
                    self.changed = true;
                    let raw_key = raw.split_once('=').map_or(raw.as_ref(), |(k, _)| k).to_owned();
                    kept.push((key, std::borrow::Cow::Owned(format!("{raw_key}={}", percent_encode_query(&new)))));
                }
            }
        }
        self.segments = kept;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{Action, Target};
    use crate::redact::{IgnoreReason, apply_to_request, apply_to_response};
    use serde_json::{Value, json};

    fn remove(target: Target) -> Redaction {
        Redaction { target, action: Action::Remove }
    }
    fn replace(target: Target, text: &str) -> Redaction {
        Redaction { target, action: Action::Replace(text.into()) }
    }

    fn payment() -> http::Request<Vec<u8>> {
        let body = br#"{"card": {"number": "4111111111111111", "cvc": "123"}, "amount": 5}"#.to_vec();
        http::Request::builder()
            .method("post")
            .uri("/pay/caf%C3%A9/x?token=t%201&page=2&token=t2&a%20b=c+d&flag")
            .header("Host", "api.example.com:443")
            .header("X-API-Key", "k1")
            .header("x-api-key", "k2")
            .header("content-type", "application/json")
            .header("content-length", body.len())
            .body(body)
            .unwrap()
    }

    #[test]
    fn request_is_normalised() {
        let opts = FromHttp {
            id: "r1".into(),
            client_address: Some("10.0.0.1".into()),
            received_at_ms: 7,
            ..FromHttp::default()
        };
        let req = request_from_http(&payment(), &opts).unwrap();
        assert_eq!(req.id, "r1");
        assert_eq!(req.method, "POST");
        assert_eq!(req.scheme, "https");
        assert_eq!(req.authority, "api.example.com", "default port dropped");
        assert_eq!(req.path, "/pay/café/x");
        assert_eq!(
            req.query,
            [("token", "t 1"), ("page", "2"), ("token", "t2"), ("a b", "c d"), ("flag", "")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert_eq!(req.headers.iter().filter(|(n, _)| n == "x-api-key").count(), 2);
        assert!(req.headers.iter().all(|(n, _)| n.chars().all(|c| !c.is_ascii_uppercase())));
        let body = req.body.unwrap();
        assert_eq!(body.content_type.as_deref(), Some("application/json"));
        assert!(body.bytes.starts_with(b"{\"card\""));
        assert_eq!((req.client_address.as_deref(), req.received_at_ms), (Some("10.0.0.1"), 7));
    }

    #[test]
    fn authority_comes_from_uri_then_host_then_fallback() {
        let absolute = http::Request::get("http://Api.Example.com:80/a")
            .header("host", "api.example.com")
            .body(Vec::<u8>::new())
            .unwrap();
        let req = request_from_http(&absolute, &FromHttp::default()).unwrap();
        assert_eq!((req.scheme.as_str(), req.authority.as_str()), ("http", "Api.Example.com"));

        let with_port = http::Request::get("/a").header("host", "api.test:8443").body(Vec::<u8>::new()).unwrap();
        assert_eq!(request_from_http(&with_port, &FromHttp::default()).unwrap().authority, "api.test:8443");

        let bare = http::Request::get("/a").body(Vec::<u8>::new()).unwrap();
        let opts =
            FromHttp { default_scheme: "http".into(), authority: Some("fallback.test".into()), ..FromHttp::default() };
        let req = request_from_http(&bare, &opts).unwrap();
        assert_eq!((req.scheme.as_str(), req.authority.as_str(), req.body), ("http", "fallback.test", None));
        assert_eq!(request_from_http(&bare, &FromHttp::default()).unwrap().authority, "");

        for (scheme, authority, expected) in [
            ("https", "a.test:4443", "a.test:4443"),
            ("https", "a.test:443", "a.test"),
            ("http", "a.test:443", "a.test:443"),
            ("http", "[::1]:80", "[::1]"),
            ("https", "[::443]", "[::443]"),
        ] {
            assert_eq!(normalise_authority(authority, scheme), expected, "{scheme} {authority}");
        }
    }

    /// An absolute-form target routes on its authority while the upstream gets `Host`:
    /// they must agree, and userinfo is refused.
    #[test]
    fn absolute_form_authority_must_agree_with_host() {
        for (uri, host) in [
            ("http://api.test/public/../admin", Some("evil.test")),
            ("http://user:secret@api.test/a", Some("api.test")),
            ("http://user:secret@api.test/a", None),
            ("http://api.test:8080/a", Some("api.test")),
        ] {
            let mut builder = http::Request::get(uri);
            if let Some(host) = host {
                builder = builder.header("host", host);
            }
            let err = request_from_http(&builder.body(Vec::<u8>::new()).unwrap(), &FromHttp::default()).unwrap_err();
            assert_eq!(err, AdaptError::Target(TargetError::AuthorityMismatch), "{uri} {host:?}");
            assert!(!err.to_string().contains("secret"));
        }
        let req = http::Request::get("http://API.test:80/public/../admin?x")
            .header("host", "api.test")
            .body(Vec::<u8>::new());
        let (req, target) = canonical_request_from_http(&req.unwrap(), &FromHttp::default()).unwrap();
        assert_eq!((req.authority.as_str(), req.path.as_str()), ("API.test", "/admin"));
        assert_eq!(target.origin_form(), "/admin?x");
    }

    #[test]
    fn the_target_is_canonical_and_raw_forwarding_doors_refuse_others() {
        let get = |uri: &str| http::Request::get(uri).body(Vec::<u8>::new()).unwrap();
        let (req, target) =
            canonical_request_from_http(&get("/public/%2e%2e/admin/users"), &FromHttp::default()).unwrap();
        assert_eq!((req.path.as_str(), target.origin_form()), ("/admin/users", "/admin/users".to_owned()));
        let err = request_from_http(&get("/public/..%2fadmin"), &FromHttp::default()).unwrap_err();
        assert_eq!(err, AdaptError::Target(TargetError::EncodedSlash));
        let raw = FromHttp { forwards_raw_target: true, ..FromHttp::default() };
        let err = request_from_http(&get("/public/../admin"), &raw).unwrap_err();
        assert_eq!(err, AdaptError::Target(TargetError::NotCanonical));
        assert_eq!(request_from_http(&get("/public/a?x=1"), &raw).unwrap().path, "/public/a");
    }

    #[test]
    fn two_host_headers_are_refused() {
        let req =
            http::Request::get("/").header("host", "a.test").header("host", "b.test").body(Vec::<u8>::new()).unwrap();
        assert_eq!(request_from_http(&req, &FromHttp::default()), Err(AdaptError::AmbiguousHost { count: 2 }));
    }

    #[test]
    fn non_utf8_header_values_are_refused_by_name() {
        let mut req = http::Request::get("/").body(Vec::<u8>::new()).unwrap();
        req.headers_mut().insert("x-role", HeaderValue::from_bytes(b"adm\xffin").unwrap());
        let err = request_from_http(&req, &FromHttp::default()).unwrap_err();
        assert_eq!(err, AdaptError::HeaderNotUtf8 { name: "x-role".into() });
        assert!(err.to_string().contains("`x-role`"));

        let mut res = http::Response::new(Vec::<u8>::new());
        res.headers_mut().insert("set-cookie", HeaderValue::from_bytes(b"\xe9").unwrap());
        assert!(matches!(response_from_http(&res), Err(AdaptError::HeaderNotUtf8 { name }) if name == "set-cookie"));
    }

    #[test]
    fn utf8_header_values_beyond_ascii_are_kept() {
        let mut req = http::Request::get("/").body(Vec::<u8>::new()).unwrap();
        req.headers_mut().insert("x-name", HeaderValue::from_bytes("José".as_bytes()).unwrap());
        assert_eq!(request_from_http(&req, &FromHttp::default()).unwrap().header("x-name"), Some("José"));
    }

    #[test]
    fn response_is_normalised() {
        let res = http::Response::builder()
            .status(201)
            .header("Content-Type", "application/json")
            .header("set-cookie", "a=1")
            .header("set-cookie", "b=2")
            .body(b"{\"id\": 1}".to_vec())
            .unwrap();
        let out = response_from_http(&res).unwrap();
        assert_eq!(out.status, 201);
        assert_eq!(out.headers.iter().filter(|(n, _)| n == "set-cookie").count(), 2);
        assert_eq!(out.body.unwrap().bytes, b"{\"id\": 1}");
        assert_eq!(response_from_http(&http::Response::new(Vec::<u8>::new())).unwrap().body, None);
    }

    #[test]
    fn request_redaction_edits_headers_query_and_body() {
        let mut req = payment();
        let applied = apply_to_http_request(
            &mut req,
            &[
                remove(Target::Header("x-api-key".into())),
                remove(Target::Query("token".into())),
                replace(Target::Query("a b".into()), "x&y=z"),
                replace(Target::JsonPointer("/card/number".into()), "****"),
                remove(Target::JsonPointer("/card/cvc".into())),
            ],
        )
        .unwrap();
        assert_eq!(
            applied.fields(),
            ["header:x-api-key", "query:token", "query:a b", "json:/card/number", "json:/card/cvc"]
        );
        assert!(req.headers().get("x-api-key").is_none());
        // Untouched pairs keep their exact encoding; the replacement is encoded.
        assert_eq!(req.uri().to_string(), "/pay/caf%C3%A9/x?page=2&a%20b=x%26y%3Dz&flag");
        assert_eq!(req.body(), br#"{"card": {"number": "****"}, "amount": 5}"#);
        assert_eq!(req.headers()[CONTENT_LENGTH], req.body().len().to_string().as_str());
    }

    #[test]
    fn header_replacement_keeps_repeats_and_query_can_empty() {
        let mut req = http::Request::get("https://api.test/a?token=1")
            .header("cookie", "a")
            .header("cookie", "b")
            .body(Vec::new())
            .unwrap();
        apply_to_http_request(
            &mut req,
            &[replace(Target::Header("Cookie".into()), "[redacted]"), remove(Target::Query("token".into()))],
        )
        .unwrap();
        let cookies: Vec<_> = req.headers().get_all("cookie").iter().collect();
        assert_eq!(cookies, ["[redacted]", "[redacted]"]);
        assert_eq!(req.uri().to_string(), "https://api.test/a");
    }

    #[test]
    fn unchanged_uri_and_body_are_left_alone() {
        let mut req = payment();
        let before = (req.uri().clone(), req.body().clone());
        let applied = apply_to_http_request(
            &mut req,
            &[remove(Target::Query("nothing".into())), remove(Target::JsonPointer("/nothing".into()))],
        )
        .unwrap();
        assert!(applied.is_empty());
        assert_eq!((req.uri().clone(), req.body().clone()), before);
    }

    #[test]
    fn request_redaction_fails_closed_on_non_json_body() {
        let mut req = http::Request::post("/upload?token=1")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-secret", "s")
            .body(b"card=4111".to_vec())
            .unwrap();
        let err = apply_to_http_request(
            &mut req,
            &[
                remove(Target::Header("x-secret".into())),
                remove(Target::Query("token".into())),
                remove(Target::JsonPointer("/card".into())),
            ],
        )
        .unwrap_err();
        assert!(matches!(err, RedactError::BodyNotJson { .. }), "{err}");
        assert!(req.headers().contains_key("x-secret"), "nothing changes on error");
        assert_eq!(req.uri().query(), Some("token=1"));
    }

    #[test]
    fn response_redaction_edits_headers_and_body_and_ignores_query() {
        let mut res = http::Response::builder()
            .header("content-type", "text/plain")
            .header("content-length", "999")
            .header("content-length", "999")
            .header("x-internal", "1")
            .body(br#"{"users": [{"id": 1, "ssn": "a"}, {"id": 2, "ssn": "b"}]}"#.to_vec())
            .unwrap();
        let applied = apply_to_http_response(
            &mut res,
            &[
                remove(Target::JsonPointer("/users/*/ssn".into())),
                remove(Target::Header("X-Internal".into())),
                remove(Target::Query("token".into())),
            ],
        )
        .unwrap();
        assert_eq!(res.body(), br#"{"users": [{"id": 1}, {"id": 2}]}"#);
        let lengths: Vec<_> = res.headers().get_all(CONTENT_LENGTH).iter().collect();
        assert_eq!(lengths, [res.body().len().to_string().as_str()]);
        assert!(!res.headers().contains_key("x-internal"));
        assert_eq!(applied.fields(), ["header:x-internal", "json:/users/0/ssn", "json:/users/1/ssn"]);
        assert_eq!(applied.ignored[0].reason, IgnoreReason::QueryInResponse);
    }

    #[test]
    fn http_and_normalised_paths_agree() {
        let redactions = [
            replace(Target::Header("x-api-key".into()), "k"),
            remove(Target::Query("token".into())),
            remove(Target::JsonPointer("/card".into())),
            remove(Target::JsonPointer("/missing".into())),
        ];
        let mut via_http = payment();
        let applied_http = apply_to_http_request(&mut via_http, &redactions).unwrap();
        let mut normalised = request_from_http(&payment(), &FromHttp::default()).unwrap();
        let applied = apply_to_request(&mut normalised, &redactions).unwrap();
        assert_eq!(applied_http, applied);
        assert_eq!(request_from_http(&via_http, &FromHttp::default()).unwrap(), normalised);

        let res = || {
            http::Response::builder()
                .header("content-type", "application/json")
                .body(br#"{"a": 1, "b": 2}"#.to_vec())
                .unwrap()
        };
        let redactions = [remove(Target::JsonPointer("/a".into()))];
        let mut via_http = res();
        let applied_http = apply_to_http_response(&mut via_http, &redactions).unwrap();
        let mut normalised = response_from_http(&res()).unwrap();
        assert_eq!(apply_to_response(&mut normalised, &redactions).unwrap(), applied_http);
        let body: Value = serde_json::from_slice(via_http.body()).unwrap();
        assert_eq!(body, json!({"b": 2}));
        assert_eq!(response_from_http(&via_http).unwrap(), normalised);
    }

    /// Contract 0.2's masks and detectors edit `HeaderMap`s and raw queries as they edit
    /// the normalised model.
    #[test]
    fn masks_and_detectors_agree_between_http_and_normalised() {
        use crate::decision::Mask;
        let mask = |target, m| Redaction { target, action: Action::Mask(m) };
        let make = || {
            let body = br#"{"card": {"number": "4111111111111111"}, "note": "to alice@example.com"}"#.to_vec();
            http::Request::builder()
                .method("post")
                .uri("/pay?token=t%201&to=bob%40example.org&page=2&flag")
                .header("host", "api.example.com")
                .header("x-api-key", "k1")
                .header("x-note", "cc carol@example.net")
                .header("content-type", "application/json")
                .body(body)
                .unwrap()
        };
        let redactions = [
            mask(Target::Header("x-api-key".into()), Mask::KeepLast(1)),
            mask(Target::Query("token".into()), Mask::FixedLength(2)),
            mask(Target::JsonName("number".into()), Mask::KeepLast(4)),
            mask(Target::Detected("email".into()), Mask::KeepEmailDomain),
        ];
        let mut via_http = make();
        let applied_http = apply_to_http_request(&mut via_http, &redactions).unwrap();
        let mut normalised = request_from_http(&make(), &FromHttp::default()).unwrap();
        let applied = apply_to_request(&mut normalised, &redactions).unwrap();
        assert_eq!(applied_http, applied);
        assert_eq!(request_from_http(&via_http, &FromHttp::default()).unwrap(), normalised);
        assert_eq!(via_http.uri().query(), Some("token=%2A%2A&to=%2A%2A%2A%40example.org&page=2&flag"));
        assert_eq!(via_http.headers()["x-api-key"], "*1");
        assert_eq!(via_http.headers()["x-note"], "cc *****@example.net");
        let body: Value = serde_json::from_slice(via_http.body()).unwrap();
        assert_eq!(body, json!({"card": {"number": "************1111"}, "note": "to *****@example.com"}));
    }

    #[test]
    fn invalid_replacement_header_value_is_an_error() {
        let mut res = http::Response::builder().header("x-a", "1").body(Vec::new()).unwrap();
        let err = apply_to_http_response(&mut res, &[replace(Target::Header("x-a".into()), "a\nb")]).unwrap_err();
        assert!(matches!(err, RedactError::InvalidHeaderValue { .. }));
        assert_eq!(res.headers()["x-a"], "1");
    }
}
