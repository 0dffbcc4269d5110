//! The normalised model every traffic source converts into, and its JSON form.
//!
//! HTTP requests, HAR entries, ext_authz checks and MCP tool calls all become one
//! [`Request`] (and, where there is one, one [`Response`]), so the policy set, the
//! redaction applier and the audit log only ever see one shape. The serde form of these
//! types is what `portcullis eval` reads; `docs/exchange-format.md` documents it field by
//! field.

use base64::Engine as _;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What kind of caller the host authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// No credential, or none required.
    #[default]
    Anonymous,
    /// A human user.
    User,
    /// A machine client.
    Service,
    /// An AI assistant or other automated agent, usually acting for a user.
    Agent,
}

impl PrincipalKind {
    /// The kind as written everywhere (`anonymous`, `user`, `service`, `agent`): the audit
    /// log, the `X-Portcullis-Principal` header, the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::Anonymous => "anonymous",
            PrincipalKind::User => "user",
            PrincipalKind::Service => "service",
            PrincipalKind::Agent => "agent",
        }
    }
}

/// Who is calling. Carries the credential's id, never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Principal {
    /// The kind of caller.
    pub kind: PrincipalKind,
    /// A stable identifier (JWT `sub`, API key owner). Empty when anonymous.
    pub id: String,
    /// Granted scopes, e.g. `invoices:read`.
    pub scopes: Vec<String>,
    /// Further string claims, in order.
    #[serde(with = "pairs")]
    pub claims: Vec<(String, String)>,
    /// The user an agent or service acts for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
    /// The id of the credential used (never the secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
}

/// A message body. In JSON it is written as one of `json`, `text` or `base64`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Body {
    /// The body's `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The bytes.
    pub bytes: Vec<u8>,
    /// True when the bytes were cut at a cap.
    pub truncated: bool,
}

impl Body {
    /// A JSON body from a value.
    pub fn json(value: &serde_json::Value) -> Self {
        Body {
            content_type: Some("application/json".into()),
            bytes: serde_json::to_vec(value).unwrap_or_default(),
            truncated: false,
        }
    }

    /// Whether the content type says JSON (`application/json`, `application/*+json`, or
    /// `text/json`). Tools often record JSON as `text` or with no type at all, so callers
    /// that must decide whether to parse may also sniff the bytes.
    pub fn is_json(&self) -> bool {
        self.content_type.as_deref().is_some_and(is_json_content_type)
    }

    /// A copy cut to at most `cap` bytes, marked `truncated` if anything was cut.
    pub fn capped(&self, cap: usize) -> Body {
        if self.bytes.len() <= cap {
            return self.clone();
        }
        Body { content_type: self.content_type.clone(), bytes: self.bytes[..cap].to_vec(), truncated: true }
    }
}

/// Whether a `Content-Type` value names JSON.
pub fn is_json_content_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

/// One API request, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The request id used in the audit record.
    pub id: String,
    /// Upper-case method (`CALL` for tool calls).
    pub method: String,
    /// `http` or `https`.
    pub scheme: String,
    /// Host, with the port when not the scheme's default.
    pub authority: String,
    /// Percent-decoded path without the query, starting with `/`.
    pub path: String,
    /// Percent-decoded query parameters in order.
    pub query: Vec<(String, String)>,
    /// Headers in order, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The body, if any.
    pub body: Option<Body>,
    /// Who is calling.
    pub principal: Principal,
    /// OpenAPI operationId or MCP tool name, when known.
    pub operation: Option<String>,
    /// Client address, when known.
    pub client_address: Option<String>,
    /// Receive time in ms since the Unix epoch.
    pub received_at_ms: u64,
}

impl Default for Request {
    fn default() -> Self {
        Request {
            id: String::new(),
            method: "GET".into(),
            scheme: "https".into(),
            authority: String::new(),
            path: "/".into(),
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
            principal: Principal::default(),
            operation: None,
            client_address: None,
            received_at_ms: 0,
        }
    }
}

impl Request {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The host part of the authority, without the port, lower-case.
    pub fn host(&self) -> String {
        host_of(&self.authority)
    }
}

/// The upstream's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Headers in order, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The body, if any.
    pub body: Option<Body>,
}

impl Default for Response {
    fn default() -> Self {
        Response { status: 200, headers: Vec::new(), body: None }
    }
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// A request and, where recorded or received, its response.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exchange {
    /// The request.
    pub request: Request,
    /// The response, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Response>,
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// The host of an authority (`api.example.com:8443` → `api.example.com`), lower-case.
/// Bracketed IPv6 literals keep their brackets.
pub(crate) fn host_of(authority: &str) -> String {
    let without_userinfo = authority.rsplit('@').next().unwrap_or(authority);
    let host = if without_userinfo.starts_with('[') {
        match without_userinfo.find(']') {
            Some(end) => &without_userinfo[..=end],
            None => without_userinfo,
        }
    } else {
        without_userinfo.split(':').next().unwrap_or(without_userinfo)
    };
    host.to_ascii_lowercase()
}

/// Lower-cases header names, which HTTP treats case-insensitively; values are kept.
pub(crate) fn normalise_headers(headers: &mut [(String, String)]) {
    for (name, _) in headers.iter_mut() {
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            *name = name.to_ascii_lowercase();
        }
    }
}

// ---------------------------------------------------------------------------------------
// JSON form
// ---------------------------------------------------------------------------------------

/// Name/value pairs, written as a JSON object (`{"a": "1"}`, or `{"a": ["1", "2"]}` for a
/// repeated name) or as a list of `[name, value]` pairs. Always written as the list, which
/// keeps order and repeats.
mod pairs {
    use super::*;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        List(Vec<(String, String)>),
        Map(serde_json::Map<String, serde_json::Value>),
    }

    pub fn serialize<S: Serializer>(pairs: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
        pairs.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
        match Form::deserialize(d)? {
            Form::List(list) => Ok(list),
            Form::Map(map) => {
                let mut out = Vec::with_capacity(map.len());
                for (name, value) in map {
                    match OneOrMany::deserialize(value) {
                        Ok(OneOrMany::One(v)) => out.push((name, v)),
                        Ok(OneOrMany::Many(vs)) => out.extend(vs.into_iter().map(|v| (name.clone(), v))),
                        Err(_) => {
                            return Err(D::Error::custom(format!("`{name}`: expected a string or a list of strings")));
                        }
                    }
                }
                Ok(out)
            }
        }
    }
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BodyForm {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    json: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    base64: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
}

impl Serialize for Body {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut form =
            BodyForm { content_type: self.content_type.clone(), truncated: self.truncated, ..BodyForm::default() };
        let json = if self.is_json() && !self.truncated {
            serde_json::from_slice::<serde_json::Value>(&self.bytes).ok()
        } else {
            None
        };
        if let Some(json) = json {
            form.json = Some(json);
        } else if let Ok(text) = std::str::from_utf8(&self.bytes) {
            form.text = Some(text.to_owned());
        } else {
            form.base64 = Some(base64::engine::general_purpose::STANDARD.encode(&self.bytes));
        }
        form.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Body {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let form = BodyForm::deserialize(d)?;
        let given = [form.json.is_some(), form.text.is_some(), form.base64.is_some()];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(D::Error::custom(
                "a body needs exactly one of `json` (a JSON value), `text` (a string) or `base64`",
            ));
        }
        let (bytes, default_type) = if let Some(json) = form.json {
            (serde_json::to_vec(&json).map_err(D::Error::custom)?, Some("application/json"))
        } else if let Some(text) = form.text {
            (text.into_bytes(), None)
        } else {
            let encoded = form.base64.unwrap_or_default();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|e| D::Error::custom(format!("`base64`: not valid base64: {e}")))?;
            (bytes, None)
        };
        Ok(Body {
            content_type: form.content_type.or(default_type.map(str::to_owned)),
            bytes,
            truncated: form.truncated,
        })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestForm {
    #[serde(default)]
    id: String,
    #[serde(default = "default_method")]
    method: String,
    /// `https://host/path?query` as a shorthand for the next four fields.
    #[serde(default, skip_serializing)]
    url: Option<String>,
    #[serde(default)]
    scheme: Option<String>,
    #[serde(default)]
    authority: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default, with = "pairs")]
    query: Vec<(String, String)>,
    #[serde(default, with = "pairs")]
    headers: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<Body>,
    #[serde(default)]
    principal: Principal,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    operation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_address: Option<String>,
    #[serde(default)]
    received_at_ms: u64,
}

fn default_method() -> String {
    "GET".into()
}

impl Serialize for Request {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RequestForm {
            id: self.id.clone(),
            method: self.method.clone(),
            url: None,
            scheme: Some(self.scheme.clone()),
            authority: Some(self.authority.clone()),
            path: Some(self.path.clone()),
            query: self.query.clone(),
            headers: self.headers.clone(),
            body: self.body.clone(),
            principal: self.principal.clone(),
            operation: self.operation.clone(),
            client_address: self.client_address.clone(),
            received_at_ms: self.received_at_ms,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Request {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let form = RequestForm::deserialize(d)?;
        let mut request = Request {
            id: form.id,
            method: form.method.to_ascii_uppercase(),
            headers: form.headers,
            body: form.body,
            principal: form.principal,
            operation: form.operation,
            client_address: form.client_address,
            received_at_ms: form.received_at_ms,
            ..Request::default()
        };
        if let Some(url) = form.url {
            let parts = split_url(&url).map_err(D::Error::custom)?;
            request.scheme = parts.scheme;
            request.authority = parts.authority;
            request.path = parts.path;
            request.query = parts.query;
        }
        if let Some(scheme) = form.scheme {
            request.scheme = scheme.to_ascii_lowercase();
        }
        if let Some(authority) = form.authority {
            request.authority = authority;
        }
        if let Some(path) = form.path {
            if !path.starts_with('/') {
                return Err(D::Error::custom(format!("`path`: `{path}` must start with `/`")));
            }
            request.path = path;
        }
        request.query.extend(form.query);
        normalise_headers(&mut request.headers);
        if request.authority.is_empty()
            && let Some(host) = request.header("host")
        {
            request.authority = host.to_owned();
        }
        Ok(request)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseForm {
    #[serde(default = "default_status")]
    status: u16,
    #[serde(default, with = "pairs")]
    headers: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<Body>,
}

fn default_status() -> u16 {
    200
}

impl Serialize for Response {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ResponseForm { status: self.status, headers: self.headers.clone(), body: self.body.clone() }.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Response {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let form = ResponseForm::deserialize(d)?;
        let mut headers = form.headers;
        normalise_headers(&mut headers);
        Ok(Response { status: form.status, headers, body: form.body })
    }
}

/// A URL split into the request's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UrlParts {
    /// `http` or `https`.
    pub scheme: String,
    /// Host and port as written.
    pub authority: String,
    /// Percent-decoded path.
    pub path: String,
    /// Percent-decoded query pairs.
    pub query: Vec<(String, String)>,
}

/// Splits an absolute URL (`https://host/path?q=1`) or an origin-form target (`/path?q=1`)
/// into scheme, authority, the canonical target's decoded path ([`crate::target`], default
/// rules) and decoded query pairs. Fragments are dropped.
pub(crate) fn split_url(url: &str) -> Result<UrlParts, String> {
    let url = url.split('#').next().unwrap_or(url);
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => {
            let scheme = scheme.to_ascii_lowercase();
            if scheme != "http" && scheme != "https" {
                return Err(format!("`{url}`: only http and https URLs are supported"));
            }
            (scheme, rest)
        }
        None if url.starts_with('/') => ("https".to_owned(), url),
        None => return Err(format!("`{url}`: expected an absolute http(s) URL or a path starting with `/`")),
    };
    let (authority, target) = if url.contains("://") {
        match rest.find(['/', '?']) {
            Some(i) => (rest[..i].to_owned(), &rest[i..]),
            None => (rest.to_owned(), "/"),
        }
    } else {
        (String::new(), rest)
    };
    let target = if target.starts_with('?') { format!("/{target}") } else { target.to_owned() };
    // Recorded traffic is judged as a door would judge it: the canonical target, with the
    // default rules (what they refuse, replay reports as an error of that entry).
    let canonical =
        crate::target::canonicalize(&target, &crate::target::TargetRules::default()).map_err(|e| e.to_string())?;
    Ok(UrlParts { scheme, authority, path: canonical.decoded_path().to_owned(), query: canonical.query_pairs() })
}

/// Parses `a=1&b=x%20y&c` into decoded pairs (`+` means space in a query).
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| match part.split_once('=') {
            Some((k, v)) => (percent_decode(k, true), percent_decode(v, true)),
            None => (percent_decode(part, true), String::new()),
        })
        .collect()
}

/// Decodes `%XX` escapes (and `+` as space when `plus_is_space`). Invalid escapes are kept
/// as written; invalid UTF-8 after decoding is replaced with U+FFFD.
pub fn percent_decode(input: &str, plus_is_space: bool) -> String {
    let bytes = input.as_bytes();
    if !bytes.iter().any(|b| *b == b'%' || (plus_is_space && *b == b'+')) {
        return input.to_owned();
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes a query key or value for writing back into a URL.
pub fn percent_encode_query(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for b in input.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 0xf)] as char);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_from_url_shorthand_and_header_map() {
        let req: Request = serde_json::from_value(serde_json::json!({
            "method": "post",
            "url": "https://api.example.com:8443/invoices/a%20b?status=open&tag=x+y",
            "headers": {"Authorization": "Bearer t", "X-Tag": ["1", "2"]},
            "body": {"json": {"amount": 3}},
            "principal": {"kind": "agent", "id": "bot", "scopes": ["invoices:read"], "on_behalf_of": "alice"}
        }))
        .unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.authority, "api.example.com:8443");
        assert_eq!(req.host(), "api.example.com");
        assert_eq!(req.path, "/invoices/a b");
        assert_eq!(req.query, vec![("status".into(), "open".into()), ("tag".into(), "x y".into())]);
        assert_eq!(req.header("authorization"), Some("Bearer t"));
        assert_eq!(req.headers.iter().filter(|(n, _)| n == "x-tag").count(), 2);
        assert_eq!(req.body.as_ref().unwrap().content_type.as_deref(), Some("application/json"));
        assert_eq!(req.principal.kind, PrincipalKind::Agent);
    }

    #[test]
    fn request_round_trips_through_json() {
        let req = Request {
            id: "r1".into(),
            method: "PATCH".into(),
            authority: "x.test".into(),
            path: "/a".into(),
            query: vec![("q".into(), "1".into())],
            headers: vec![("content-type".into(), "application/json".into())],
            body: Some(Body {
                content_type: Some("application/octet-stream".into()),
                bytes: vec![0, 255],
                truncated: false,
            }),
            ..Request::default()
        };
        let text = serde_json::to_string(&req).unwrap();
        let back: Request = serde_json::from_str(&text).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn body_needs_exactly_one_form() {
        let err = serde_json::from_str::<Body>(r#"{"json": 1, "text": "x"}"#).unwrap_err();
        assert!(err.to_string().contains("exactly one"), "{err}");
    }

    #[test]
    fn unknown_fields_are_refused_with_their_name() {
        let err = serde_json::from_str::<Request>(r#"{"path": "/", "heders": {}}"#).unwrap_err();
        assert!(err.to_string().contains("heders"), "{err}");
    }

    #[test]
    fn percent_decoding_keeps_invalid_escapes() {
        assert_eq!(percent_decode("%41%zz%", false), "A%zz%");
        assert_eq!(percent_decode("a+b", false), "a+b");
        assert_eq!(percent_decode("a+b", true), "a b");
    }

    #[test]
    fn host_of_strips_port_and_userinfo() {
        assert_eq!(host_of("User@API.Example.com:80"), "api.example.com");
        assert_eq!(host_of("[::1]:8080"), "[::1]");
    }
}
