//! Read helpers on the boundary types: headers, query parameters, the principal, bodies.
//!
//! The generated records are plain data; these methods answer the questions policies ask
//! most often without each policy re-implementing case-insensitive lookups or JSON sniffing.

use serde_json::Value;

use crate::{Body, Principal, PrincipalKind, Request, Response};

/// The value of the first `(name, value)` pair whose name equals `name`, ignoring ASCII case.
fn find<'a>(pairs: &'a [(alloc::string::String, alloc::string::String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

impl Principal {
    /// Whether the credential carries `scope` (exact, case-sensitive match).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// The value of the claim `name`, if the host passed it on.
    pub fn claim(&self, name: &str) -> Option<&str> {
        self.claims.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Whether no credential was presented.
    pub fn is_anonymous(&self) -> bool {
        self.kind == PrincipalKind::Anonymous
    }

    /// Whether the caller is a human user.
    pub fn is_user(&self) -> bool {
        self.kind == PrincipalKind::User
    }

    /// Whether the caller is a machine client (a service).
    pub fn is_service(&self) -> bool {
        self.kind == PrincipalKind::Service
    }

    /// Whether the caller is an AI agent.
    pub fn is_agent(&self) -> bool {
        self.kind == PrincipalKind::Agent
    }

    /// The user this caller acts for, if any (an empty string counts as none).
    pub fn acting_for(&self) -> Option<&str> {
        self.on_behalf_of.as_deref().filter(|user| !user.is_empty())
    }
}

impl PrincipalKind {
    /// The kind's name as the WIT spells it: `anonymous`, `user`, `service` or `agent`.
    pub fn as_str(&self) -> &'static str {
        match self {
            PrincipalKind::Anonymous => "anonymous",
            PrincipalKind::User => "user",
            PrincipalKind::Service => "service",
            PrincipalKind::Agent => "agent",
        }
    }
}

impl Body {
    /// Whether the content type says JSON: `application/json`, `text/json` or any `+json`
    /// type, ignoring parameters and case.
    pub fn has_json_content_type(&self) -> bool {
        let Some(content_type) = self.content_type.as_deref() else {
            return false;
        };
        let essence = content_type.split(';').next().unwrap_or("").trim();
        essence.eq_ignore_ascii_case("application/json")
            || essence.eq_ignore_ascii_case("text/json")
            || essence
                .len()
                .checked_sub(5)
                .and_then(|start| essence.get(start..))
                .is_some_and(|suffix| suffix.eq_ignore_ascii_case("+json"))
    }

    /// Whether the bytes start (after whitespace) like a JSON object or array. Recorded
    /// traffic often labels JSON as `text/plain` or not at all.
    pub fn looks_like_json(&self) -> bool {
        self.bytes.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|b| *b == b'{' || *b == b'[')
    }

    /// The body parsed as JSON, when its content type is JSON-ish or its bytes look like
    /// JSON, and they parse. A truncated body does not parse: check [`Body::truncated`] when
    /// the policy must see everything.
    pub fn json(&self) -> Option<Value> {
        if self.has_json_content_type() || self.looks_like_json() {
            serde_json::from_slice(&self.bytes).ok()
        } else {
            None
        }
    }
}

/// The value at an RFC 6901 pointer into an optional body (no `*` wildcards here).
fn pointer(body: Option<&Body>, pointer: &str) -> Option<Value> {
    let mut json = body?.json()?;
    json.pointer_mut(pointer).map(Value::take)
}

impl Request {
    /// The first header called `name`, ignoring case.
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }

    /// Every value of the headers called `name`, ignoring case, in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The first query parameter called `name` (exact match: query keys are case-sensitive).
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The target host without the port, lower-cased as hosts compare: `api.example.com`
    /// for `API.example.com:8443`, `::1` for `[::1]:8080`.
    pub fn host(&self) -> alloc::string::String {
        host_of(&self.authority).to_ascii_lowercase()
    }

    /// Whether the method is `method`, ignoring case.
    pub fn is_method(&self, method: &str) -> bool {
        self.method.eq_ignore_ascii_case(method)
    }

    /// Whether the principal's credential carries `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.principal.has_scope(scope)
    }

    /// Whether the caller is anonymous.
    pub fn is_anonymous(&self) -> bool {
        self.principal.is_anonymous()
    }

    /// Whether the caller is a human user.
    pub fn is_user(&self) -> bool {
        self.principal.is_user()
    }

    /// Whether the caller is a service.
    pub fn is_service(&self) -> bool {
        self.principal.is_service()
    }

    /// Whether the caller is an AI agent.
    pub fn is_agent(&self) -> bool {
        self.principal.is_agent()
    }

    /// The request body parsed as JSON; see [`Body::json`]. Needs `needs_request_body` in
    /// the metadata, else the host never sends a body.
    pub fn json_body(&self) -> Option<Value> {
        self.body.as_ref()?.json()
    }

    /// The value at a JSON pointer (RFC 6901) into the request body. Each call parses the
    /// body: for several lookups, call [`Request::json_body`] once and use `Value::pointer`.
    pub fn json_pointer(&self, pointer_: &str) -> Option<Value> {
        pointer(self.body.as_ref(), pointer_)
    }
}

impl Response {
    /// The first header called `name`, ignoring case.
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }

    /// The response body parsed as JSON; see [`Body::json`]. Needs `needs_response_body`.
    pub fn json_body(&self) -> Option<Value> {
        self.body.as_ref()?.json()
    }

    /// The value at a JSON pointer (RFC 6901) into the response body.
    pub fn json_pointer(&self, pointer_: &str) -> Option<Value> {
        pointer(self.body.as_ref(), pointer_)
    }
}

/// The host part of an authority: without `userinfo@`, without the port, IPv6 brackets
/// removed.
fn host_of(authority: &str) -> &str {
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(host, _)| host);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn headers_are_case_insensitive_query_is_not() {
        let req = Request::new("GET", "/a")
            .with_header("X-Api-Key", "k1")
            .with_header("x-api-key", "k2")
            .with_query("Token", "t");
        assert_eq!(req.header("x-API-key"), Some("k1"));
        assert_eq!(req.header_values("X-API-KEY").collect::<vec::Vec<_>>(), ["k1", "k2"]);
        assert_eq!(req.query("Token"), Some("t"));
        assert_eq!(req.query("token"), None);
    }

    #[test]
    fn principal_checks() {
        let req = Request::new("GET", "/")
            .with_principal(Principal::agent("bot").with_scopes(&["a:read"]).acting_for_user("alice"));
        assert!(req.is_agent() && !req.is_user() && !req.is_service() && !req.is_anonymous());
        assert!(req.has_scope("a:read") && !req.has_scope("a:write"));
        assert_eq!(req.principal.acting_for(), Some("alice"));
        assert_eq!(req.principal.kind.as_str(), "agent");
    }

    #[test]
    fn json_body_by_content_type_or_sniffing() {
        let req = Request::new("POST", "/").with_body(Some("application/vnd.x+json"), b"{\"a\":{\"b\":[1,2]}}");
        assert_eq!(req.json_pointer("/a/b/1"), Some(Value::from(2)));
        let sniffed = Request::new("POST", "/").with_body(Some("text/plain"), b"  [1]");
        assert_eq!(sniffed.json_body(), Some(Value::from(vec![1])));
        let html = Request::new("POST", "/").with_body(Some("text/html"), b"<p>{}</p>");
        assert_eq!(html.json_body(), None);
        let broken = Request::new("POST", "/").with_json_body("{\"a\":");
        assert_eq!(broken.json_body(), None);
        assert_eq!(Request::new("GET", "/").json_body(), None);
    }

    #[test]
    fn response_helpers() {
        let resp =
            Response::new(200).with_header("Content-Type", "application/json").with_json_body(r#"{"email":"a@b"}"#);
        assert_eq!(resp.header("content-type"), Some("application/json"));
        assert_eq!(resp.json_pointer("/email"), Some(Value::from("a@b")));
    }

    #[test]
    fn host_strips_port_userinfo_and_brackets() {
        for (authority, host) in [
            ("API.Example.com:8443", "api.example.com"),
            ("example.com", "example.com"),
            ("[::1]:8080", "::1"),
            ("[::1]", "::1"),
            ("user@host:1", "host"),
        ] {
            assert_eq!(Request::new("GET", "/").with_authority(authority).host(), host);
        }
    }
}
