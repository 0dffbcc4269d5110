//! `pii-redact`: removes or masks personal data in responses, and in requests bound for
//! third parties.
//!
//! - Response phase: every configured JSON pointer is redacted in the response body, and
//!   every configured header is removed from the response.
//! - Request phase: when the request's host is one of `third_party_hosts`, the same pointers
//!   are redacted in the request body before it leaves.
//!
//! The policy never reads a body: it names the fields and the host applies the redactions
//! (a pointer that matches nothing is not an error). So its metadata asks for no bodies, and
//! the host never copies them into it.
#![cfg_attr(not(test), no_std)]

use portcullis_guest::RedactBuilder;
use portcullis_guest::glob::host_matches;
use portcullis_guest::prelude::*;
use serde::Deserialize;

/// The policy's settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// JSON pointers (RFC 6901) of the fields to redact; a `*` segment stands for every
    /// array element or object member, e.g. `/customers/*/email`.
    #[serde(default)]
    pub fields: Vec<String>,
    /// Replace redacted fields with this text; when absent they are removed.
    #[serde(default)]
    pub mask: Option<String>,
    /// Hosts whose request bodies are redacted too (case-insensitive, without port);
    /// `*.example.com` covers every subdomain of `example.com`, and `*` every host.
    #[serde(default)]
    pub third_party_hosts: Vec<String>,
    /// Response headers to remove (case-insensitive), e.g. `x-internal-user-email`.
    #[serde(default)]
    pub headers: Vec<String>,
}

/// The `pii-redact` policy.
pub struct PiiRedact;

impl Policy for PiiRedact {
    type Settings = Settings;

    fn metadata() -> Metadata {
        Metadata::new("pii-redact", env!("CARGO_PKG_VERSION")).both_phases()
    }

    fn validate(settings: &Settings) -> Result<(), SettingsError> {
        if settings.fields.is_empty() && settings.headers.is_empty() {
            return Err(SettingsError::new("fields", "name at least one field (or a header) to redact"));
        }
        for (i, pointer) in settings.fields.iter().enumerate() {
            if let Err(message) = check_pointer(pointer) {
                return Err(SettingsError::new(format!("fields[{i}]"), message));
            }
        }
        for (i, host) in settings.third_party_hosts.iter().enumerate() {
            if host == "*" {
                continue;
            }
            let name = host.strip_prefix("*.").unwrap_or(host);
            if name.is_empty() || name.contains(['/', ':', '*', ' ']) {
                return Err(SettingsError::new(
                    format!("third_party_hosts[{i}]"),
                    format!("`{host}` must be a host name such as api.example.com or *.example.com"),
                ));
            }
        }
        if let Some(i) = settings.headers.iter().position(|h| h.trim().is_empty()) {
            return Err(SettingsError::new(format!("headers[{i}]"), "must not be empty"));
        }
        Ok(())
    }

    fn on_request(settings: &Settings, req: &Request) -> Outcome {
        let host = req.host();
        if !settings.third_party_hosts.iter().any(|pattern| host_matches(pattern, &host)) {
            return allow();
        }
        body_fields(settings).label("rule", "third-party-request").label("host", host).into()
    }

    fn on_response(settings: &Settings, _req: &Request, _resp: &Response) -> Outcome {
        let mut redaction = body_fields(settings);
        for header in &settings.headers {
            redaction = redaction.header(header);
        }
        redaction.label("rule", "response").into()
    }
}

/// One redaction per configured pointer: masked when a mask is set, else removed.
fn body_fields(settings: &Settings) -> RedactBuilder {
    settings.fields.iter().fold(redact(), |redaction, pointer| match &settings.mask {
        Some(mask) => redaction.json_mask(pointer, mask),
        None => redaction.json(pointer),
    })
}

/// Why `pointer` is not a JSON pointer to a field, if it is not.
fn check_pointer(pointer: &str) -> Result<(), String> {
    if !pointer.starts_with('/') {
        return Err(format!("`{pointer}` must be a JSON pointer starting with /, e.g. /customer/email"));
    }
    // RFC 6901: `~` only as `~0` (for `~`) or `~1` (for `/`).
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(format!("`{pointer}`: `~` must be escaped as ~0 (and `/` inside a name as ~1)"));
        }
    }
    Ok(())
}

export_policy!(PiiRedact);

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_guest::check_settings;

    fn settings(json: &str) -> Settings {
        check_settings::<PiiRedact>(json).unwrap()
    }

    fn pointers(out: &Outcome) -> Vec<(String, Option<String>)> {
        out.redactions()
            .iter()
            .map(|r| match (&r.target, &r.action) {
                (Target::JsonPointer(p), Action::Remove) => (p.clone(), None),
                (Target::JsonPointer(p), Action::Replace(m)) => (p.clone(), Some(m.clone())),
                (Target::Header(h), _) => (format!("header:{h}"), None),
                (Target::Query(q), _) => (format!("query:{q}"), None),
                (other, _) => (format!("{other:?}"), None),
            })
            .collect()
    }

    #[test]
    fn metadata_takes_both_phases_without_bodies() {
        let m = PiiRedact::metadata().build();
        assert_eq!(m.phases, Phases::REQUEST | Phases::RESPONSE);
        assert!(!m.needs_request_body && !m.needs_response_body);
    }

    #[test]
    fn response_fields_are_removed_and_headers_stripped() {
        let s = settings(r#"{"fields": ["/email", "/customers/*/phone"], "headers": ["X-User-Email"]}"#);
        let out = PiiRedact::on_response(&s, &Request::new("GET", "/c"), &Response::new(200));
        assert_eq!(
            pointers(&out),
            [("/email".into(), None), ("/customers/*/phone".into(), None), ("header:X-User-Email".into(), None)]
        );
        assert_eq!(out.label_value("rule"), Some("response"));
    }

    #[test]
    fn mask_replaces_instead_of_removing() {
        let s = settings(r#"{"fields": ["/email"], "mask": "***"}"#);
        let out = PiiRedact::on_response(&s, &Request::new("GET", "/c"), &Response::new(200));
        assert_eq!(pointers(&out), [("/email".into(), Some("***".into()))]);
    }

    #[test]
    fn requests_to_third_parties_are_redacted_others_pass() {
        let s = settings(r#"{"fields": ["/email"], "third_party_hosts": ["crm.partner.io", "*.analytics.example"]}"#);
        for authority in ["crm.partner.io", "CRM.Partner.io:8443", "eu.analytics.example"] {
            let out = PiiRedact::on_request(&s, &Request::new("POST", "/x").with_authority(authority));
            assert_eq!(pointers(&out), [("/email".into(), None)], "{authority}");
            assert_eq!(out.label_value("rule"), Some("third-party-request"));
        }
        for authority in ["api.example.com", "analytics.example", "evilcrm.partner.io", "xanalytics.example"] {
            let out = PiiRedact::on_request(&s, &Request::new("POST", "/x").with_authority(authority));
            assert!(out.is_allow(), "{authority}");
        }
    }

    #[test]
    fn star_covers_every_host() {
        let s = settings(r#"{"fields": ["/email"], "third_party_hosts": ["*"]}"#);
        let out = PiiRedact::on_request(&s, &Request::new("POST", "/").with_authority("x.test"));
        assert_eq!(pointers(&out), [("/email".into(), None)]);
    }

    #[test]
    fn headers_only_settings_allow_requests_to_third_parties_unchanged() {
        let s = settings(r#"{"headers": ["x-email"], "third_party_hosts": ["p.io"]}"#);
        assert!(PiiRedact::on_request(&s, &Request::new("POST", "/").with_authority("p.io")).is_allow());
    }

    #[test]
    fn bad_settings_name_the_setting() {
        for (json, setting) in [
            ("{}", "fields"),
            (r#"{"fields": ["/ok", "email"]}"#, "fields[1]"),
            (r#"{"fields": ["/a~2b"]}"#, "fields[0]"),
            (r#"{"fields": ["/a"], "third_party_hosts": ["https://x.io"]}"#, "third_party_hosts[0]"),
            (r#"{"fields": ["/a"], "headers": [""]}"#, "headers[0]"),
            (r#"{"fields": ["/a"], "mask": 3}"#, "mask"),
            (r#"{"field": ["/a"]}"#, "field"),
        ] {
            assert_eq!(check_settings::<PiiRedact>(json).unwrap_err().setting, setting, "{json}");
        }
    }
}
