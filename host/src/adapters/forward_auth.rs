//! Forward-auth mapping: rebuilds the request a proxy is asking about from the headers of
//! its sub-request (nginx `auth_request`, Traefik `ForwardAuth`, Caddy `forward_auth`).
//!
//! nginx sends `X-Original-Method` and `X-Original-URI` (set in its config); Traefik and
//! Caddy send `X-Forwarded-Method`, `-Proto`, `-Host`, `-Uri` and `-For`. The other
//! headers are the original request's own. A door reads the one family its proxy sends
//! ([`HeaderFamily`], `[server.forward_auth] proxy`), and refuses a sub-request carrying
//! the other family's method or URI header: behind Traefik a client could otherwise add its
//! own `X-Original-Method: GET` and have a `DELETE` judged as a `GET`.
//!
//! Each part is checked on its own before the URI is put together (scheme `http` or
//! `https`, a host with no path, query or userinfo in it, a path starting with `/`), so a
//! value chosen by the caller (the `Host` a proxy copies into `X-Forwarded-Host`) cannot
//! move the path or the host the policies see: `X-Forwarded-Host: a.example/admin?` would
//! otherwise turn `/x` into `/admin`.

use std::str::FromStr;

use http::header::{HOST, HeaderMap};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Uri};

/// Headers the proxies use to describe the original request; not part of it.
pub const FORWARDING: [&str; 7] = [
    "x-original-uri",
    "x-original-method",
    "x-forwarded-method",
    "x-forwarded-uri",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-for",
];

/// Which proxy asks, and so which headers name the original method and URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum HeaderFamily {
    /// nginx `auth_request`: `X-Original-Method`, `X-Original-URI`.
    #[default]
    Nginx,
    /// Traefik `ForwardAuth`: `X-Forwarded-Method`, `X-Forwarded-Uri`.
    Traefik,
    /// Caddy `forward_auth`: the same headers as Traefik.
    Caddy,
}

impl HeaderFamily {
    /// The headers naming the method and the URI in this family, then in the other one.
    fn headers(self) -> ([&'static str; 2], [&'static str; 2]) {
        let nginx = ["x-original-method", "x-original-uri"];
        let forwarded = ["x-forwarded-method", "x-forwarded-uri"];
        match self {
            HeaderFamily::Nginx => (nginx, forwarded),
            HeaderFamily::Traefik | HeaderFamily::Caddy => (forwarded, nginx),
        }
    }

    /// The proxy's name, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            HeaderFamily::Nginx => "nginx",
            HeaderFamily::Traefik => "traefik",
            HeaderFamily::Caddy => "caddy",
        }
    }
}

/// Why the forwarding headers do not describe a request. The endpoint answers 400 with
/// this message, which names the header and points at the set-up guide.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardAuthError {
    /// Neither header naming the method or the URI was sent (or it was empty or not text).
    #[error("the proxy sent no {nginx} (nginx) or {other} (Traefik, Caddy); see docs/front-doors.md")]
    Missing {
        /// The nginx header.
        nginx: &'static str,
        /// The Traefik / Caddy header.
        other: &'static str,
    },
    /// A forwarding header's value is not a valid part of a request.
    #[error("the forwarding header `{header}` is not usable: {reason}")]
    Invalid {
        /// The header's name.
        header: &'static str,
        /// What is wrong with it (the value is not repeated: it may carry a secret).
        reason: &'static str,
    },
    /// The sub-request carries the other proxy family's method or URI header.
    #[error(
        "the request carries `{header}`, which {family} does not send: a client may have added it to choose the \
         method or path that is judged; refused (set `[server.forward_auth] proxy` to the proxy in front)"
    )]
    OtherFamily {
        /// The header that should not be there.
        header: &'static str,
        /// The configured family.
        family: &'static str,
    },
    /// The original request's own headers do not make a valid `http` request.
    #[error("the forwarded request is not valid HTTP: {0}")]
    Http(String),
}

/// The original request (with an empty body: these proxies do not send it), rebuilt from
/// the sub-request's `headers`. `default_scheme` is used when no `X-Forwarded-Proto` says.
/// The forwarding headers and the sub-request's `Host` are dropped; the original host
/// (`X-Forwarded-Host`, else the sub-request's `Host`) becomes the URI's authority and
/// the `Host` header.
pub fn original_request(
    headers: &HeaderMap,
    default_scheme: &str,
    family: HeaderFamily,
) -> Result<Request<Vec<u8>>, ForwardAuthError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    // The first of `names` that is present, with the name it came from (for errors).
    let first_of = |names: [&'static str; 2]| names.into_iter().find_map(|name| header(name).map(|v| (v, name)));
    let ([method_name, uri_name], other) = family.headers();
    if let Some(header) = other.into_iter().find(|name| headers.contains_key(*name)) {
        return Err(ForwardAuthError::OtherFamily { header, family: family.as_str() });
    }
    let method = header(method_name)
        .ok_or(ForwardAuthError::Missing { nginx: "X-Original-Method", other: "X-Forwarded-Method" })?;
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| ForwardAuthError::Invalid { header: method_name, reason: "not an HTTP method token" })?;
    let (uri, uri_header) = (
        header(uri_name).ok_or(ForwardAuthError::Missing { nginx: "X-Original-URI", other: "X-Forwarded-Uri" })?,
        uri_name,
    );
    if !uri.starts_with('/') {
        return Err(ForwardAuthError::Invalid { header: uri_header, reason: "the original URI must start with `/`" });
    }
    // `PathAndQuery` drops a fragment silently; a request target never has one (RFC 9112
    // §3.2), and the policies must see the path the upstream gets, so refuse it.
    if uri.contains('#') {
        return Err(ForwardAuthError::Invalid { header: uri_header, reason: "a request target has no fragment (`#`)" });
    }
    let path_and_query = PathAndQuery::from_str(uri).map_err(|_| ForwardAuthError::Invalid {
        header: uri_header,
        reason: "not a valid path and query (spaces, controls or `#` in it?)",
    })?;
    let authority = first_of(["x-forwarded-host", "host"])
        .map(|(host, host_header)| {
            let invalid = |reason| ForwardAuthError::Invalid { header: host_header, reason };
            if host.contains('@') {
                return Err(invalid("a host may not carry userinfo (`@`)"));
            }
            let authority = Authority::from_str(host).map_err(|_| invalid("not a host[:port]"))?;
            // `Authority` takes anything up to a `/`, `?` or `#` it then refuses; be sure
            // the whole value was the host, so nothing of it can leak into the path.
            if authority.as_str() != host {
                return Err(invalid("not a host[:port]"));
            }
            Ok(authority)
        })
        .transpose()?;
    let scheme = match header("x-forwarded-proto") {
        Some(proto) if proto.eq_ignore_ascii_case("http") => Scheme::HTTP,
        Some(proto) if proto.eq_ignore_ascii_case("https") => Scheme::HTTPS,
        Some(_) => {
            return Err(ForwardAuthError::Invalid { header: "x-forwarded-proto", reason: "must be `http` or `https`" });
        }
        None if default_scheme.eq_ignore_ascii_case("http") => Scheme::HTTP,
        None => Scheme::HTTPS,
    };
    let mut parts = http::uri::Parts::default();
    if let Some(authority) = &authority {
        parts.scheme = Some(scheme);
        parts.authority = Some(authority.clone());
    }
    parts.path_and_query = Some(path_and_query);
    let uri = Uri::from_parts(parts).map_err(|e| ForwardAuthError::Http(e.to_string()))?;
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        if FORWARDING.contains(&name.as_str()) || name == HOST {
            continue;
        }
        builder = builder.header(name, value);
    }
    if let Some(authority) = &authority {
        builder = builder.header(HOST, authority.as_str());
    }
    builder.body(Vec::new()).map_err(|e| ForwardAuthError::Http(e.to_string()))
}

/// The original client: the last address in `X-Forwarded-For`, the one the proxy in front
/// appended itself. Earlier entries come from the caller and could be forged (a caller
/// could otherwise pick its own rate-limit key).
pub fn client_address(headers: &HeaderMap) -> Option<String> {
    let value = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).next_back()?;
    value.rsplit(',').next().map(|a| a.trim().to_owned()).filter(|a| !a.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
        }
        map
    }

    #[test]
    fn nginx_headers_rebuild_the_request() {
        let h = headers(&[
            ("host", "api.example.com"),
            ("x-original-method", "POST"),
            ("x-original-uri", "/v1/items?a=1"),
            ("x-api-key", "k"),
        ]);
        let req = original_request(&h, "http", HeaderFamily::Nginx).unwrap();
        assert_eq!(req.method(), "POST");
        assert_eq!(req.uri().to_string(), "http://api.example.com/v1/items?a=1");
        assert_eq!(req.headers()["host"], "api.example.com");
        assert_eq!(req.headers()["x-api-key"], "k");
        assert!(req.headers().get("x-original-uri").is_none());
    }

    #[test]
    fn traefik_headers_win_over_the_sub_requests_host() {
        let h = headers(&[
            ("host", "portcullis.internal:8081"),
            ("x-forwarded-method", "GET"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "shop.example"),
            ("x-forwarded-uri", "/cart"),
            ("x-forwarded-for", "10.0.0.9, 192.0.2.1"),
        ]);
        let req = original_request(&h, "http", HeaderFamily::Traefik).unwrap();
        assert_eq!(req.uri().to_string(), "https://shop.example/cart");
        assert_eq!(req.headers().get_all("host").iter().count(), 1);
        assert_eq!(client_address(&h).as_deref(), Some("192.0.2.1"));
    }

    /// A caller-chosen host must not move the path or the host the policies see.
    #[test]
    fn a_host_with_a_path_query_or_userinfo_is_refused() {
        for host in ["a.example/admin?", "a.example?x=", "a.example#f", "user@a.example", "a b", "a.example/"] {
            let h = headers(&[("x-forwarded-method", "GET"), ("x-forwarded-uri", "/x"), ("x-forwarded-host", host)]);
            let err = original_request(&h, "https", HeaderFamily::Caddy).unwrap_err();
            assert!(matches!(err, ForwardAuthError::Invalid { header: "x-forwarded-host", .. }), "{host}: {err}");
        }
    }

    #[test]
    fn missing_or_bad_parts_name_the_header() {
        let err = original_request(&headers(&[("x-original-uri", "/x")]), "https", HeaderFamily::Nginx).unwrap_err();
        assert!(err.to_string().contains("X-Original-Method"), "{err}");
        let err =
            original_request(&headers(&[("x-original-method", "GET")]), "https", HeaderFamily::Nginx).unwrap_err();
        assert!(err.to_string().contains("X-Original-URI"), "{err}");
        for uri in ["x", "/a#/admin", "/a b"] {
            let err = original_request(
                &headers(&[("x-original-method", "GET"), ("x-original-uri", uri)]),
                "https",
                HeaderFamily::Nginx,
            )
            .unwrap_err();
            assert!(err.to_string().contains("x-original-uri"), "{uri}: {err}");
        }
        let h = headers(&[("x-original-method", "GET"), ("x-original-uri", "/x"), ("x-forwarded-proto", "gopher")]);
        assert!(
            original_request(&h, "https", HeaderFamily::Nginx).unwrap_err().to_string().contains("x-forwarded-proto")
        );
        let h = headers(&[("x-original-method", "G(T"), ("x-original-uri", "/x")]);
        assert!(
            original_request(&h, "https", HeaderFamily::Nginx).unwrap_err().to_string().contains("x-original-method")
        );
    }

    /// Behind Traefik a client adding `X-Original-*` must not choose what is judged, and
    /// behind nginx a client adding `X-Forwarded-Method`/`-Uri` neither.
    #[test]
    fn the_other_familys_headers_are_refused() {
        let h = headers(&[
            ("x-forwarded-method", "DELETE"),
            ("x-forwarded-uri", "/invoices/1"),
            ("x-original-method", "GET"),
            ("x-original-uri", "/invoices/1"),
        ]);
        for (family, other) in [
            (HeaderFamily::Traefik, "x-original-method"),
            (HeaderFamily::Caddy, "x-original-method"),
            (HeaderFamily::Nginx, "x-forwarded-method"),
        ] {
            let err = original_request(&h, "https", family).unwrap_err();
            assert_eq!(err, ForwardAuthError::OtherFamily { header: other, family: family.as_str() }, "{family:?}");
        }
        let only_uri =
            headers(&[("x-forwarded-method", "DELETE"), ("x-forwarded-uri", "/x"), ("x-original-uri", "/y")]);
        assert!(matches!(
            original_request(&only_uri, "https", HeaderFamily::Traefik),
            Err(ForwardAuthError::OtherFamily { header: "x-original-uri", .. })
        ));
        let traefik = headers(&[("x-forwarded-method", "DELETE"), ("x-forwarded-uri", "/invoices/1")]);
        assert_eq!(original_request(&traefik, "https", HeaderFamily::Traefik).unwrap().method(), "DELETE");
    }

    #[test]
    fn no_host_gives_an_origin_form_request() {
        let h = headers(&[("x-original-method", "GET"), ("x-original-uri", "/x")]);
        let req = original_request(&h, "https", HeaderFamily::Nginx).unwrap();
        assert_eq!(req.uri().to_string(), "/x");
        assert!(req.headers().get("host").is_none());
    }
}
