//! Constructors for the boundary types, for native unit tests (and tools) that need a
//! request, response or principal without a host.
//!
//! They cost nothing in a component: code a policy does not call is not linked in.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::{Body, Principal, PrincipalKind, Request, Response};

impl Principal {
    fn of_kind(kind: PrincipalKind, id: &str) -> Self {
        Principal {
            kind,
            id: id.into(),
            scopes: Vec::new(),
            claims: Vec::new(),
            on_behalf_of: None,
            credential_id: None,
        }
    }

    /// A caller that presented no credential.
    pub fn anonymous() -> Self {
        Self::of_kind(PrincipalKind::Anonymous, "")
    }

    /// A human user.
    pub fn user(id: &str) -> Self {
        Self::of_kind(PrincipalKind::User, id)
    }

    /// A machine client.
    pub fn service(id: &str) -> Self {
        Self::of_kind(PrincipalKind::Service, id)
    }

    /// An AI agent.
    pub fn agent(id: &str) -> Self {
        Self::of_kind(PrincipalKind::Agent, id)
    }

    /// With these scopes added.
    pub fn with_scopes(mut self, scopes: &[&str]) -> Self {
        self.scopes.extend(scopes.iter().map(|s| s.to_string()));
        self
    }

    /// With this claim added.
    pub fn with_claim(mut self, name: &str, value: &str) -> Self {
        self.claims.push((name.into(), value.into()));
        self
    }

    /// Acting on behalf of `user`.
    pub fn acting_for_user(mut self, user: &str) -> Self {
        self.on_behalf_of = Some(user.into());
        self
    }

    /// With this credential id.
    pub fn with_credential_id(mut self, id: &str) -> Self {
        self.credential_id = Some(id.into());
        self
    }
}

fn body(content_type: Option<&str>, bytes: &[u8]) -> Body {
    Body { content_type: content_type.map(String::from), bytes: bytes.to_vec(), truncated: false }
}

impl Request {
    /// A request `method path` to `https://api.example.com` from an anonymous caller, with no
    /// headers, query or body. `path` may carry a query string, which is split into `query`.
    pub fn new(method: &str, path: &str) -> Self {
        let (path, query) = match path.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path, None),
        };
        let query = query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|pair| !pair.is_empty())
            .map(|pair| match pair.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (pair.to_string(), String::new()),
            })
            .collect();
        Request {
            id: "test-request".into(),
            method: method.into(),
            scheme: "https".into(),
            authority: "api.example.com".into(),
            path: path.into(),
            query,
            headers: Vec::new(),
            body: None,
            principal: Principal::anonymous(),
            operation: None,
            client_address: None,
            received_at_ms: 0,
        }
    }

    /// With this principal.
    pub fn with_principal(mut self, principal: Principal) -> Self {
        self.principal = principal;
        self
    }

    /// With this header added (the name lower-cased, as the host passes them).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// With this query parameter added.
    pub fn with_query(mut self, name: &str, value: &str) -> Self {
        self.query.push((name.into(), value.into()));
        self
    }

    /// With this target host (and port).
    pub fn with_authority(mut self, authority: &str) -> Self {
        self.authority = authority.into();
        self
    }

    /// With this client address (`ip` or `ip:port`).
    pub fn with_client_address(mut self, address: &str) -> Self {
        self.client_address = Some(address.into());
        self
    }

    /// With this operation (OpenAPI operationId or MCP tool name).
    pub fn with_operation(mut self, operation: &str) -> Self {
        self.operation = Some(operation.into());
        self
    }

    /// With this body.
    pub fn with_body(mut self, content_type: Option<&str>, bytes: &[u8]) -> Self {
        self.body = Some(body(content_type, bytes));
        self
    }

    /// With this JSON text as an `application/json` body.
    pub fn with_json_body(self, json: &str) -> Self {
        self.with_body(Some("application/json"), json.as_bytes())
    }
}

impl Response {
    /// A response with this status and no headers or body.
    pub fn new(status: u16) -> Self {
        Response { status, headers: Vec::new(), body: None }
    }

    /// With this header added (the name lower-cased).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// With this body.
    pub fn with_body(mut self, content_type: Option<&str>, bytes: &[u8]) -> Self {
        self.body = Some(body(content_type, bytes));
        self
    }

    /// With this JSON text as an `application/json` body.
    pub fn with_json_body(self, json: &str) -> Self {
        self.with_body(Some("application/json"), json.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_new_splits_the_query() {
        let req = Request::new("GET", "/search?q=rust&flag&=x");
        assert_eq!(req.path, "/search");
        assert_eq!(req.query("q"), Some("rust"));
        assert_eq!(req.query("flag"), Some(""));
        assert_eq!(req.query.len(), 3);
    }
}
