//! Trusted headers: identity asserted by an authenticating proxy in front of Portcullis
//! (oauth2-proxy, an API gateway, a service mesh). Only meaningful when that proxy removes
//! the same headers from what clients send.

use super::{
    AuthError, IdentityConfigError, TrustedHeadersConfig, check_kind, dedup_scopes, is_header_name, quoted, values,
};
use crate::exchange::{Principal, PrincipalKind};

/// The credential id when no credential-id header is configured or sent.
const DEFAULT_CREDENTIAL_ID: &str = "trusted-headers";

/// The configured header names, lower-case.
#[derive(Debug, Clone)]
pub(crate) struct TrustedHeaders {
    id: String,
    kind: Option<String>,
    default_kind: PrincipalKind,
    scopes: Option<String>,
    on_behalf_of: Option<String>,
    credential_id: Option<String>,
}

impl TrustedHeaders {
    pub(crate) fn new(config: &TrustedHeadersConfig) -> Result<TrustedHeaders, IdentityConfigError> {
        let name = |value: &str, key: &str| -> Result<String, IdentityConfigError> {
            let lower = value.trim().to_ascii_lowercase();
            if !is_header_name(&lower) {
                return Err(IdentityConfigError::new(
                    format!("identity.trusted_headers.{key}"),
                    format!("{value:?} is not a valid header name"),
                ));
            }
            Ok(lower)
        };
        let optional = |value: &Option<String>, key: &str| value.as_deref().map(|v| name(v, key)).transpose();
        check_kind(config.default_kind, "identity.trusted_headers.default_kind")?;
        let headers = TrustedHeaders {
            id: name(&config.id, "id")?,
            kind: optional(&config.kind, "kind")?,
            default_kind: config.default_kind,
            scopes: optional(&config.scopes, "scopes")?,
            on_behalf_of: optional(&config.on_behalf_of, "on_behalf_of")?,
            credential_id: optional(&config.credential_id, "credential_id")?,
        };
        let names = headers.names();
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return Err(IdentityConfigError::new(
                    "identity.trusted_headers",
                    format!("header `{n}` is configured for two fields"),
                ));
            }
        }
        Ok(headers)
    }

    /// Every configured header name.
    pub(crate) fn names(&self) -> Vec<&str> {
        let mut names = vec![self.id.as_str()];
        for name in [&self.kind, &self.scopes, &self.on_behalf_of, &self.credential_id].into_iter().flatten() {
            names.push(name.as_str());
        }
        names
    }

    /// Whether any configured header is on the request.
    pub(crate) fn present(&self, headers: &[(String, String)]) -> bool {
        self.names().iter().any(|name| !values(headers, name).is_empty())
    }

    /// The principal the headers assert.
    pub(crate) fn principal(&self, headers: &[(String, String)]) -> Result<Principal, AuthError> {
        let one = |name: &str| -> Result<Option<&str>, AuthError> {
            match values(headers, name).as_slice() {
                [] => Ok(None),
                [value] => Ok(Some(value.trim())),
                _ => Err(AuthError::TrustedHeaders(format!("more than one {name} header"))),
            }
        };
        let id = match one(&self.id)? {
            Some(id) if !id.is_empty() => id.to_owned(),
            Some(_) => return Err(AuthError::TrustedHeaders(format!("empty {} header", self.id))),
            None => {
                return Err(AuthError::TrustedHeaders(format!("identity headers were sent without {}", self.id)));
            }
        };
        let kind = match self.kind.as_deref().map(one).transpose()?.flatten() {
            None | Some("") => self.default_kind,
            Some(value) => match value.to_ascii_lowercase().as_str() {
                "user" => PrincipalKind::User,
                "service" => PrincipalKind::Service,
                "agent" => PrincipalKind::Agent,
                _ => {
                    return Err(AuthError::TrustedHeaders(format!(
                        "{} is {}; expected user, service or agent",
                        self.kind.as_deref().unwrap_or_default(),
                        quoted(value)
                    )));
                }
            },
        };
        // One scopes header, like every other: a second one may be a client's, appended
        // behind the proxy's, and must not widen what the proxy granted.
        let mut scopes = Vec::new();
        if let Some(value) = self.scopes.as_deref().map(one).transpose()?.flatten() {
            scopes.extend(value.split([' ', ',', '\t']).map(|s| s.trim().to_owned()));
        }
        let text = |name: &Option<String>| -> Result<Option<String>, AuthError> {
            Ok(name.as_deref().map(one).transpose()?.flatten().filter(|v| !v.is_empty()).map(str::to_owned))
        };
        Ok(Principal {
            kind,
            id,
            scopes: dedup_scopes(scopes),
            claims: Vec::new(),
            on_behalf_of: text(&self.on_behalf_of)?,
            credential_id: Some(text(&self.credential_id)?.unwrap_or_else(|| DEFAULT_CREDENTIAL_ID.to_owned())),
        })
    }
}
