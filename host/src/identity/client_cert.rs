//! Client certificates: a TLS client certificate that the listener verified against its
//! client CA (mutual TLS), mapped to a principal by `[[identity.client_certs]]`.
//!
//! The library neither parses X.509 nor verifies chains: the TLS terminator does both
//! (`portcullis serve` with rustls and x509-parser, or an embedder's own terminator) and hands
//! the verified certificate's names over as a [`ClientCertificate`]. An entry matches one
//! name exactly; the certificate is the credential, and the entry's `name` its id.

use std::collections::HashMap;

use super::{AuthError, ClientCertConfig, IdentityConfigError, check_entry, dedup_scopes, quoted};
use crate::exchange::Principal;

/// A verified client certificate's names, as the TLS terminator read them. Only pass a
/// certificate whose chain was verified against a trusted CA: every field is taken as
/// proven.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientCertificate {
    /// The subject's common name (the first `CN`), if it has one.
    pub subject_cn: Option<String>,
    /// The DNS names among the subject alternative names.
    pub dns_names: Vec<String>,
    /// The URIs among the subject alternative names (e.g. SPIFFE ids `spiffe://…`).
    pub uris: Vec<String>,
    /// The e-mail addresses among the subject alternative names (`rfc822Name`).
    pub emails: Vec<String>,
    /// Hex SHA-256 of the certificate's DER encoding (its fingerprint), for logs.
    pub sha256: String,
}

impl ClientCertificate {
    /// A certificate known by its fingerprint (hex SHA-256 of its DER), with no names yet.
    pub fn new(sha256: impl Into<String>) -> ClientCertificate {
        ClientCertificate { sha256: sha256.into(), ..ClientCertificate::default() }
    }

    /// With the subject's common name.
    #[must_use]
    pub fn with_subject_cn(mut self, cn: impl Into<String>) -> ClientCertificate {
        self.subject_cn = Some(cn.into());
        self
    }

    /// With the DNS names of its subject alternative names.
    #[must_use]
    pub fn with_dns_names(mut self, names: Vec<String>) -> ClientCertificate {
        self.dns_names = names;
        self
    }

    /// With the URIs of its subject alternative names.
    #[must_use]
    pub fn with_uris(mut self, uris: Vec<String>) -> ClientCertificate {
        self.uris = uris;
        self
    }

    /// With the e-mail addresses of its subject alternative names.
    #[must_use]
    pub fn with_emails(mut self, emails: Vec<String>) -> ClientCertificate {
        self.emails = emails;
        self
    }
}

/// Which name of a certificate an entry matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Field {
    SubjectCn,
    SanDns,
    SanUri,
    SanEmail,
}

impl Field {
    fn key(self) -> &'static str {
        match self {
            Field::SubjectCn => "subject_cn",
            Field::SanDns => "san_dns",
            Field::SanUri => "san_uri",
            Field::SanEmail => "san_email",
        }
    }

    /// Whether `certificate` carries `value` in this field. DNS names compare without
    /// regard to ASCII case (as DNS does); everything else exactly.
    fn matches(self, certificate: &ClientCertificate, value: &str) -> bool {
        match self {
            Field::SubjectCn => certificate.subject_cn.as_deref() == Some(value),
            Field::SanDns => certificate.dns_names.iter().any(|n| n.eq_ignore_ascii_case(value)),
            Field::SanUri => certificate.uris.iter().any(|u| u == value),
            Field::SanEmail => certificate.emails.iter().any(|e| e == value),
        }
    }
}

/// One configured entry: what it matches and the principal it grants.
#[derive(Debug, Clone)]
struct Entry {
    field: Field,
    value: String,
    principal: Principal,
}

/// The configured `[[identity.client_certs]]` entries.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientCerts {
    entries: Vec<Entry>,
}

impl ClientCerts {
    pub(crate) fn new(configs: &[ClientCertConfig]) -> Result<ClientCerts, IdentityConfigError> {
        let mut entries: Vec<Entry> = Vec::new();
        let mut names = HashMap::new();
        for (i, config) in configs.iter().enumerate() {
            let at = format!("identity.client_certs[{i}]");
            check_entry("client_certs", i, &mut names, (&config.name, &config.id, config.kind))?;
            let (field, value) = matcher(config, &at)?;
            if let Some(j) = entries.iter().position(|e| e.field == field && same_value(field, &e.value, &value)) {
                return Err(IdentityConfigError::new(
                    format!("{at}.{}", field.key()),
                    format!("{} is also matched by identity.client_certs[{j}]", quoted(&value)),
                ));
            }
            let principal = Principal {
                kind: config.kind,
                id: config.id.clone(),
                scopes: dedup_scopes(config.scopes.iter().cloned()),
                claims: config.claims.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                on_behalf_of: config.on_behalf_of.clone(),
                credential_id: Some(config.name.clone()),
            };
            entries.push(Entry { field, value, principal });
        }
        Ok(ClientCerts { entries })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The principal of the one entry `certificate` matches. None matching, or several,
    /// is refused: a verified certificate the configuration does not name is not let in
    /// as anonymous, and which of two entries counts is never guessed.
    pub(crate) fn lookup(&self, certificate: &ClientCertificate) -> Result<Principal, AuthError> {
        let mut matching = self.entries.iter().filter(|e| e.field.matches(certificate, &e.value));
        let Some(first) = matching.next() else {
            return Err(AuthError::UnknownClientCertificate(describe(certificate)));
        };
        if let Some(second) = matching.next() {
            return Err(AuthError::Ambiguous(format!(
                "the client certificate matches identity.client_certs entries {:?} and {:?}; make the entries match \
                 distinct certificates",
                first.principal.credential_id.as_deref().unwrap_or_default(),
                second.principal.credential_id.as_deref().unwrap_or_default(),
            )));
        }
        Ok(first.principal.clone())
    }
}

/// The one matcher an entry sets.
fn matcher(config: &ClientCertConfig, at: &str) -> Result<(Field, String), IdentityConfigError> {
    let set: Vec<(Field, &String)> = [
        (Field::SubjectCn, config.subject_cn.as_ref()),
        (Field::SanDns, config.san_dns.as_ref()),
        (Field::SanUri, config.san_uri.as_ref()),
        (Field::SanEmail, config.san_email.as_ref()),
    ]
    .into_iter()
    .filter_map(|(field, value)| value.map(|v| (field, v)))
    .collect();
    match set.as_slice() {
        [(field, value)] if value.is_empty() => {
            Err(IdentityConfigError::new(format!("{at}.{}", field.key()), "must not be empty"))
        }
        [(field, value)] => Ok((*field, (*value).clone())),
        [] => Err(IdentityConfigError::new(
            at,
            "set exactly one of subject_cn, san_dns, san_uri, san_email (the certificate name this entry matches)",
        )),
        several => Err(IdentityConfigError::new(
            at,
            format!(
                "sets {}; set exactly one matcher (an entry matches one certificate name)",
                several.iter().map(|(f, _)| f.key()).collect::<Vec<_>>().join(" and ")
            ),
        )),
    }
}

fn same_value(field: Field, a: &str, b: &str) -> bool {
    if field == Field::SanDns { a.eq_ignore_ascii_case(b) } else { a == b }
}

/// The certificate's names for an error message: quoted and cut short (they are chosen by
/// whoever the CA issued the certificate to), never more than a few.
fn describe(certificate: &ClientCertificate) -> String {
    let mut parts = Vec::new();
    if let Some(cn) = &certificate.subject_cn {
        parts.push(format!("CN={}", quoted(cn)));
    }
    let sans = [("DNS", &certificate.dns_names), ("URI", &certificate.uris), ("email", &certificate.emails)];
    for (label, values) in sans {
        parts.extend(values.iter().take(3).map(|v| format!("{label}:{}", quoted(v))));
    }
    if parts.is_empty() {
        "a certificate with no subject common name or alternative names".to_owned()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{AuthError, Authenticator, ClientCertificate, IdentityConfig};
    use crate::exchange::{PrincipalKind, Request};

    const NOW: u64 = 1_700_000_000;
    const API_KEY: &str = "svc-key-0123456789";

    fn try_auth(toml_text: &str) -> Result<Authenticator, super::IdentityConfigError> {
        let config: IdentityConfig = toml::from_str(toml_text).expect("config parses");
        Authenticator::build(&config, Path::new("."), &|_| None)
    }

    /// Four entries, one per matcher, and an API key.
    fn cert_auth() -> Authenticator {
        let hash = crate::sha256_hex(API_KEY.as_bytes());
        try_auth(&format!(
            r#"
            [[client_certs]]
            name = "billing-cert"
            subject_cn = "billing-svc"
            id = "billing"
            scopes = ["invoices:read", "invoices:read"]
            claims = {{ team = "finance" }}

            [[client_certs]]
            name = "mesh-cert"
            san_uri = "spiffe://example.org/ns/prod/sa/reports"
            id = "reports"
            kind = "agent"
            on_behalf_of = "alice"

            [[client_certs]]
            name = "host-cert"
            san_dns = "Batch.Internal.Example"
            id = "batch"

            [[client_certs]]
            name = "person-cert"
            san_email = "carol@example.com"
            kind = "user"
            id = "carol"

            [[api_keys]]
            name = "svc-key"
            sha256 = "{hash}"
            id = "svc"
            "#
        ))
        .unwrap()
    }

    fn authenticate(
        auth: &Authenticator,
        headers: &[(&str, &str)],
        certificate: Option<&ClientCertificate>,
    ) -> Result<crate::exchange::Principal, AuthError> {
        let mut request = Request {
            headers: headers.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect(),
            ..Request::default()
        };
        auth.authenticate_connection(&mut request, certificate, NOW)
    }

    #[test]
    fn each_matcher_maps_a_certificate_to_its_principal() {
        let auth = cert_auth();
        assert!(auth.is_configured());
        let cn = ClientCertificate::new("ab").with_subject_cn("billing-svc");
        let principal = authenticate(&auth, &[], Some(&cn)).unwrap();
        assert_eq!((principal.kind, principal.id.as_str()), (PrincipalKind::Service, "billing"));
        assert_eq!(principal.scopes, ["invoices:read"]);
        assert_eq!(principal.claims, [("team".to_owned(), "finance".to_owned())]);
        assert_eq!(principal.credential_id.as_deref(), Some("billing-cert"));

        let uri = ClientCertificate::new("cd")
            .with_subject_cn("whatever")
            .with_uris(vec!["https://x.test".into(), "spiffe://example.org/ns/prod/sa/reports".into()]);
        let principal = authenticate(&auth, &[], Some(&uri)).unwrap();
        assert_eq!((principal.kind, principal.id.as_str()), (PrincipalKind::Agent, "reports"));
        assert_eq!(principal.on_behalf_of.as_deref(), Some("alice"));

        // DNS names compare without regard to case; the rest exactly.
        let dns = ClientCertificate::new("ef").with_dns_names(vec!["batch.internal.example".into()]);
        assert_eq!(authenticate(&auth, &[], Some(&dns)).unwrap().credential_id.as_deref(), Some("host-cert"));
        let email = ClientCertificate::new("01").with_emails(vec!["carol@example.com".into()]);
        assert_eq!(authenticate(&auth, &[], Some(&email)).unwrap().id, "carol");
        let other_case = ClientCertificate::new("02").with_emails(vec!["Carol@example.com".into()]);
        assert!(matches!(authenticate(&auth, &[], Some(&other_case)), Err(AuthError::UnknownClientCertificate(_))));
    }

    #[test]
    fn a_certificate_matching_no_entry_is_refused_not_anonymous() {
        let auth = cert_auth();
        let stranger =
            ClientCertificate::new("ff").with_subject_cn("billing-svc-2").with_dns_names(vec!["evil\n.example".into()]);
        let err = authenticate(&auth, &[], Some(&stranger)).unwrap_err();
        assert!(matches!(err, AuthError::UnknownClientCertificate(_)), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("CN=\"billing-svc-2\"") && text.contains("DNS:\"evil\\n.example\""), "{text}");
        // A CN that only contains an entry's value is not a match.
        let prefix = ClientCertificate::new("ff").with_subject_cn("billing-svc ");
        assert!(authenticate(&auth, &[], Some(&prefix)).is_err());
        // No certificate, no other credential: anonymous.
        assert_eq!(authenticate(&auth, &[], None).unwrap().kind, PrincipalKind::Anonymous);
    }

    #[test]
    fn a_certificate_and_another_credential_are_ambiguous() {
        let auth = cert_auth();
        let cn = ClientCertificate::new("ab").with_subject_cn("billing-svc");
        let err = authenticate(&auth, &[("x-api-key", API_KEY)], Some(&cn)).unwrap_err();
        assert!(matches!(err, AuthError::Ambiguous(_)), "{err:?}");
        assert!(err.to_string().contains("a client certificate and an API key"), "{err}");
        assert!(!err.to_string().contains(API_KEY));
        // The API key alone still works.
        assert_eq!(authenticate(&auth, &[("x-api-key", API_KEY)], None).unwrap().id, "svc");
    }

    #[test]
    fn a_certificate_matching_two_entries_is_refused() {
        let auth = cert_auth();
        let both = ClientCertificate::new("ab")
            .with_subject_cn("billing-svc")
            .with_dns_names(vec!["batch.internal.example".into()]);
        let err = authenticate(&auth, &[], Some(&both)).unwrap_err();
        assert!(matches!(err, AuthError::Ambiguous(_)), "{err:?}");
        assert!(err.to_string().contains("\"billing-cert\" and \"host-cert\""), "{err}");
    }

    #[test]
    fn without_entries_a_certificate_is_not_a_credential() {
        let hash = crate::sha256_hex(API_KEY.as_bytes());
        let auth = try_auth(&format!("[[api_keys]]\nname = \"k\"\nsha256 = \"{hash}\"\nid = \"svc\"")).unwrap();
        let cn = ClientCertificate::new("ab").with_subject_cn("billing-svc");
        assert_eq!(authenticate(&auth, &[], Some(&cn)).unwrap().kind, PrincipalKind::Anonymous);
        assert_eq!(authenticate(&auth, &[("x-api-key", API_KEY)], Some(&cn)).unwrap().id, "svc");
        // And the authenticate/authenticate_and_strip paths never see one.
        let auth = cert_auth();
        let mut request = Request::default();
        assert_eq!(auth.authenticate_and_strip(&mut request, NOW).unwrap().kind, PrincipalKind::Anonymous);
    }

    #[test]
    fn config_errors_name_the_entry_and_key() {
        let cases = [
            ("[[client_certs]]\nname = \"a\"\nid = \"x\"", "identity.client_certs[0]: set exactly one of"),
            (
                "[[client_certs]]\nname = \"a\"\nid = \"x\"\nsubject_cn = \"c\"\nsan_dns = \"d\"",
                "identity.client_certs[0]: sets subject_cn and san_dns",
            ),
            (
                "[[client_certs]]\nname = \"a\"\nid = \"x\"\nsan_uri = \"\"",
                "identity.client_certs[0].san_uri: must not",
            ),
            (
                "[[client_certs]]\nname = \"\"\nid = \"x\"\nsubject_cn = \"c\"",
                "identity.client_certs[0].name: must not",
            ),
            ("[[client_certs]]\nname = \"a\"\nid = \"\"\nsubject_cn = \"c\"", "identity.client_certs[0].id: must not"),
            (
                "[[client_certs]]\nname = \"a\"\nid = \"x\"\nsubject_cn = \"c\"\nkind = \"anonymous\"",
                "identity.client_certs[0].kind",
            ),
            (
                "[[client_certs]]\nname = \"a\"\nid = \"x\"\nsubject_cn = \"c\"\n\
                 [[client_certs]]\nname = \"a\"\nid = \"y\"\nsubject_cn = \"d\"",
                "identity.client_certs[1].name: \"a\" is also the name of identity.client_certs[0]",
            ),
            (
                "[[client_certs]]\nname = \"a\"\nid = \"x\"\nsan_dns = \"h.test\"\n\
                 [[client_certs]]\nname = \"b\"\nid = \"y\"\nsan_dns = \"H.TEST\"",
                "identity.client_certs[1].san_dns: \"H.TEST\" is also matched by identity.client_certs[0]",
            ),
        ];
        for (text, expected) in cases {
            let err = try_auth(text).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{text}\n→ {err}");
        }
        let unknown: Result<IdentityConfig, _> =
            toml::from_str("[[client_certs]]\nname = \"a\"\nid = \"x\"\nsubject = \"c\"");
        assert!(unknown.is_err(), "unknown keys are refused");
    }
}
